"""The bounded (LRU) caches of compiled programs, safe to share between threads.

Each cache guards its ordered dict with a lock (a look-up that hits is one locked
get and move); programs are compiled outside the lock. A cache holds programs
only, never arrays; a program's generated source stays in ``linecache`` exactly as
long as the program lives (``codegen``), so eviction, ``cache_clear()`` and a traced
function going away free all of it.
"""
from __future__ import annotations

import threading
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
        self.lock = threading.Lock()

    def lookup(self, key, order, leaves):
        """The program for a graph (``key`` from ``graph.linearize``), compiled on a miss."""
        with self.lock:
            program = self.programs.get(key)
            if program is not None:
                self.hits += 1
                self.programs.move_to_end(key)
                return program
            self.misses += 1
        return self._insert(key, codegen.build(order, leaves, anomaly=key[-1]))

    def get_or_build(self, key, build):
        """The program cached under ``key``, or ``build()``'s, cached (least recently used go
        first when full)."""
        with self.lock:
            program = self.programs.get(key)
            if program is not None:
                self.hits += 1
                self.programs.move_to_end(key)
                return program
            self.misses += 1
        return self._insert(key, build())

    def _insert(self, key, program):
        evicted = []        # dropped after the lock is released (dropping may run finalizers)
        with self.lock:
            found = self.programs.get(key)
            if found is not None:                 # another thread compiled it meanwhile
                self.programs.move_to_end(key)
                return found
            self.programs[key] = program
            self._evict(evicted)
        return program

    def _evict(self, into):
        programs = self.programs
        while len(programs) > self.maxsize:
            into.append(programs.popitem(last=False))

    def resize(self, maxsize):
        evicted = []
        with self.lock:
            self.maxsize = maxsize
            self._evict(evicted)

    def info(self):
        with self.lock:
            return CacheInfo(self.hits, self.misses, self.maxsize, len(self.programs))

    def clear(self):
        with self.lock:
            programs, self.programs = self.programs, OrderedDict()
            self.hits = self.misses = 0
        programs.clear()


CACHE = ProgramCache()
#: Programs of traced functions by graph signature: a function traced again (for a new
#: static argument, say) that builds the same graph reuses the compiled program.
TRACED = ProgramCache(maxsize=256)

_trace_caches = weakref.WeakSet()     # live per-function trace caches, for cache_info / cache_clear
_trace_caches_lock = threading.Lock()


def _live_trace_caches():
    with _trace_caches_lock:
        return list(_trace_caches)


class TraceCache:
    """A traced function's programs: signature -> list of traces (one per guarded
    branch, newest first), LRU-bounded."""

    def __init__(self, maxsize=64, per_signature=8):
        self.traces = OrderedDict()
        self.maxsize = maxsize
        self.per_signature = per_signature
        self.lock = threading.Lock()
        with _trace_caches_lock:
            _trace_caches.add(self)

    def get(self, key):
        """The traces under ``key``, newest first (a snapshot), or None."""
        with self.lock:
            found = self.traces.get(key)
            if found is None:
                return None
            self.traces.move_to_end(key)
            return tuple(found)

    def add(self, key, trace):
        evicted = []
        with self.lock:
            found = self.traces.get(key)
            if found is None:
                found = self.traces[key] = []
            else:
                self.traces.move_to_end(key)
            found.insert(0, trace)
            evicted.append(found[self.per_signature:])
            del found[self.per_signature:]
            while len(self.traces) > self.maxsize:
                evicted.append(self.traces.popitem(last=False))

    def clear(self):
        with self.lock:
            traces, self.traces = self.traces, OrderedDict()
        traces.clear()

    def __len__(self):
        with self.lock:
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
    return info._replace(currsize=info.currsize + sum(len(c) for c in _live_trace_caches()))


def cache_clear() -> None:
    """Empty the program cache (graphs' programs and functions' traces) and reset its counters;
    the programs, and their generated source in ``linecache``, are freed with it."""
    CACHE.clear()
    TRACED.clear()
    for cache in _live_trace_caches():
        cache.clear()


def set_cache_size(maxsize: int) -> None:
    """Bound the cache to ``maxsize`` programs (least recently used go first)."""
    if maxsize < 1:
        raise ValueError(f"set_cache_size: maxsize must be at least 1, got {maxsize}")
    CACHE.resize(maxsize)
