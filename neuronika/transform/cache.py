"""The bounded (LRU) cache of compiled programs, keyed by graph signature."""
from __future__ import annotations

import weakref
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
        return self.get_or_build(key, lambda: codegen.build(order, leaves, anomaly=key[-1]))

    def get_or_build(self, key, build):
        """The program cached under ``key``, or ``build()``'s, cached (least recently used go
        first when full)."""
        programs = self.programs
        program = programs.get(key)
        if program is not None:
            self.hits += 1
            programs.move_to_end(key)
            return program
        self.misses += 1
        program = build()
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
#: Programs of traced functions by graph signature: a function traced again (for a new
#: static argument, say) that builds the same graph reuses the compiled program.
TRACED = ProgramCache(maxsize=256)

_trace_caches = weakref.WeakSet()     # live per-function trace caches, for cache_info / cache_clear


class TraceCache:
    """A traced function's programs: signature -> list of traces (one per guarded
    branch, newest first), LRU-bounded."""

    def __init__(self, maxsize=64, per_signature=8):
        self.traces = OrderedDict()
        self.maxsize = maxsize
        self.per_signature = per_signature
        _trace_caches.add(self)

    def get(self, key):
        found = self.traces.get(key)
        if found is not None:
            self.traces.move_to_end(key)
        return found

    def add(self, key, trace):
        found = self.traces.setdefault(key, [])
        found.insert(0, trace)
        del found[self.per_signature:]
        while len(self.traces) > self.maxsize:
            self.traces.popitem(last=False)

    def clear(self):
        self.traces.clear()

    def __len__(self):
        return sum(len(v) for v in self.traces.values())


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
    info = CACHE.info()
    return info._replace(currsize=info.currsize + sum(len(c) for c in list(_trace_caches)))


def cache_clear() -> None:
    """Empty the program cache (graphs' programs and functions' traces) and reset its counters."""
    CACHE.clear()
    TRACED.clear()
    for cache in list(_trace_caches):
        cache.clear()


def set_cache_size(maxsize: int) -> None:
    """Bound the cache to ``maxsize`` programs (least recently used go first)."""
    if maxsize < 1:
        raise ValueError(f"set_cache_size: maxsize must be at least 1, got {maxsize}")
    CACHE.maxsize = maxsize
    while len(CACHE.programs) > maxsize:
        _, evicted = CACHE.programs.popitem(last=False)
        codegen.forget(evicted)
