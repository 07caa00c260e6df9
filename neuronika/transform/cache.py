"""The bounded (LRU) cache of compiled programs, keyed by graph signature."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

from . import codegen

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])


class ProgramCache:
    """Signature -> Program. Holds code and shapes only, never arrays."""

    def __init__(self, maxsize=512):
        self.maxsize = maxsize
        self.programs = OrderedDict()
        self.hits = 0
        self.misses = 0

    def lookup(self, key, order, leaves):
        programs = self.programs
        program = programs.get(key)
        if program is not None:
            self.hits += 1
            programs.move_to_end(key)
            return program
        self.misses += 1
        program = codegen.build(order, leaves, anomaly=key[-1])
        programs[key] = program
        while len(programs) > self.maxsize:
            _, evicted = programs.popitem(last=False)
            codegen.forget(evicted)
        return program

    def info(self):
        return CacheInfo(self.hits, self.misses, self.maxsize, len(self.programs))

    def clear(self):
        for program in self.programs.values():
            codegen.forget(program)
        self.programs.clear()
        self.hits = self.misses = 0


CACHE = ProgramCache()


def cache_info() -> CacheInfo:
    """Hits, misses, maximum and current size of the program cache, like functools'.

    Counts both the programs of graphs (``backward()``) and the traces of
    functions (``neuronika.grad``); ``maxsize`` bounds the first (each traced
    function keeps at most 64 signatures).

    >>> import neuronika
    >>> neuronika.transform.cache_clear()
    >>> x = neuronika.ones(3).requires_grad()
    >>> for _ in range(3):
    ...     (x * x).sum().backward()
    >>> neuronika.transform.cache_info()
    CacheInfo(hits=2, misses=1, maxsize=512, currsize=1)
    """
    from .trace import total_traces
    info = CACHE.info()
    return info._replace(currsize=info.currsize + total_traces())


def cache_clear() -> None:
    """Empty the program cache (graphs' programs and functions' traces) and reset its counters."""
    from .trace import clear_traces
    CACHE.clear()
    clear_traces()


def set_cache_size(maxsize: int) -> None:
    """Bound the cache to ``maxsize`` programs (least recently used go first)."""
    if maxsize < 1:
        raise ValueError(f"set_cache_size: maxsize must be at least 1, got {maxsize}")
    CACHE.maxsize = maxsize
    while len(CACHE.programs) > maxsize:
        _, evicted = CACHE.programs.popitem(last=False)
        codegen.forget(evicted)
