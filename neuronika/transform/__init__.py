"""The transformer: graph -> generated forward/backward Python -> compiled, cached program.

Public here: ``source(root)``, ``cache_info()``, ``cache_clear()``, ``set_cache_size(entries,
bytes)``, ``cache_limits()``, ``explain(f, *args)``, ``set_retrace_warning(after)``,
``to_dot(root)`` (a program's graph as Graphviz text).
"""
from .cache import (CacheInfo, CacheLimits, cache_clear, cache_info, cache_limits, explain, set_cache_size,
                    set_retrace_warning)
from .dot import to_dot
from .run import source

__all__ = ["CacheInfo", "CacheLimits", "cache_clear", "cache_info", "cache_limits", "explain",
           "set_cache_size", "set_retrace_warning", "source", "to_dot"]
