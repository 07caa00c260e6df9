"""The transformer: graph -> generated forward/backward Python -> compiled, cached program.

Public here: ``source(root)``, ``cache_info()``, ``cache_clear()``, ``set_cache_size(n)``.
"""
from .cache import CacheInfo, cache_clear, cache_info, set_cache_size
from .run import source

__all__ = ["CacheInfo", "cache_clear", "cache_info", "set_cache_size", "source"]
