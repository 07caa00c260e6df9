"""The caches of compiled programs and traces, under one limit, safe to share between threads.

Two kinds of cache hold what compiling costs: ``CACHE`` (graph signature -> program, for
``forward()`` / ``backward()``) and one ``TraceCache`` per traced function (signature ->
traces, each holding its program; ``TRACED`` finds a live program by graph signature so
that traces building the same graph share it, and holds none). One limit covers them all,
in entries and in bytes (``set_cache_size``): when either is exceeded, the least recently
used entries go, whichever cache holds them. A program's size is estimated from its
generated source; a trace's from its program and the constant arrays it keeps.

On a miss, a graph's *shape family* (``families``: the same graph but for sizes its code
does not read, such as a batch) may already have a program: ``CACHE`` keeps it under the
new signature too (an alias, counted as an entry with the bytes of its key; the program
counts once, and goes with all its signatures), ``TRACED`` hands it to the trace that holds
it. A program compiled is registered for its family.

Each cache guards its dicts with a lock (a look-up that hits is one locked get);
programs are compiled outside any lock. A program's generated source stays in
``linecache`` exactly as long as the program lives (``codegen``), so eviction and
``cache_clear()`` free all of it.

Traced functions share their caches by what they are, not by the wrapper object:
``grad(loss)`` made again on every call finds the traces of the first (``functions``,
keyed by ``functional`` on the code object, closure, defaults and globals read).
"""
from __future__ import annotations

import collections
import itertools
import threading
import weakref
from collections import OrderedDict, namedtuple

from .. import graph
from ..ops import pool
from . import codegen, families

CacheInfo = namedtuple("CacheInfo", ["hits", "misses", "maxsize", "currsize"])
CacheLimits = namedtuple("CacheLimits", ["entries", "bytes", "used_entries", "used_bytes"])

#: Recency: every hit and insertion takes the next tick; the smallest ticks go first.
tick = itertools.count(1).__next__

_PROGRAM_OVERHEAD = 2048
_BYTES_PER_CHARACTER = 20      # code object, linecache lines and source, per source character
_TRACE_OVERHEAD = 1024


def program_bytes(program) -> int:
    """Estimated memory of a compiled program: its generated source and what it compiles to."""
    length = 0
    for attr in ("forward_source", "backward_source"):
        source = getattr(program, attr, None)
        if source:
            length += len(source)
    return _PROGRAM_OVERHEAD + _BYTES_PER_CHARACTER * length


class _Budget:
    """The one limit over every cache. What they hold is summed over the live caches when
    needed (each keeps its own count), so a cache that goes away takes its share with it."""

    def __init__(self, entries=512, nbytes=512 * 2 ** 20):
        self.entries = entries
        self.bytes = nbytes
        self.evicting = threading.Lock()        # one eviction scan at a time
        self.caches = weakref.WeakSet()
        self.caches_lock = threading.Lock()

    def register(self, cache):
        with self.caches_lock:
            self.caches.add(cache)

    def live(self):
        with self.caches_lock:
            return list(self.caches)

    def used(self):
        """(entries, bytes) held by all the caches now."""
        entries = nbytes = 0
        for cache in self.live():
            entries += cache.held_entries
            nbytes += cache.held_bytes
        return entries, nbytes

    def admit(self, protect=None):
        """Evict least recently used entries until both limits hold again (down to 90% of
        each, so that a full cache does not scan on every insertion). ``protect``
        (cache, token) is the entry just inserted: it stays even if it alone is too big."""
        entries, nbytes = self.used()
        if entries <= self.entries and nbytes <= self.bytes:
            return
        dropped = []             # freed after the locks are released (finalizers run then)
        with self.evicting:
            candidates = []
            for cache in self.live():
                for used, token, size in cache.candidates():
                    candidates.append((used, id(cache), cache, token, size))
            entries = sum(c[4][0] for c in candidates)
            nbytes = sum(c[4][1] for c in candidates)
            candidates.sort(key=lambda c: (c[0], c[1]))
            target = self.entries - self.entries // 10
            target_bytes = self.bytes - self.bytes // 10
            for _, _, cache, token, (n, b) in candidates:
                if entries <= target and nbytes <= target_bytes:
                    break
                if protect is not None and protect[0] is cache and protect[1] == token:
                    continue
                found = cache.drop(token)
                if found is not None:
                    dropped.append(found)
                    entries -= n
                    nbytes -= b
        dropped.clear()


BUDGET = _Budget()


class ProgramCache:
    """Signature -> Program. Holds code and shapes only, never arrays.

    A program of a shape family (``families``) may be cached under several signatures
    (graphs that differ only in sizes its code does not read): it counts once, and each
    further signature (an alias, at most ``ALIASES`` per program, the oldest dropped first)
    as an entry of its own with the estimated bytes of its key. Eviction takes a program
    with all its signatures.

    Bounded by the global limit (``set_cache_size``) and, when ``maxsize`` is set, by
    ``maxsize`` programs of its own (least recently used go first)."""

    ALIASES = 32
    LAYOUTS = 8
    MET = 4096

    def __init__(self, maxsize=None, budgeted=False):
        self.maxsize = maxsize
        self.programs = OrderedDict()
        self.used = {}          # id(program) -> last use (tick)
        self.sizes = {}         # id(program) -> estimated bytes (the program and its aliases)
        self.keys_of = {}       # id(program) -> its signatures, the first one first
        self.bases = {}         # id(program) -> estimated bytes of the program alone
        self.layouts = {}       # a root's sig -> graph.Layouts of graphs with that root sig
        self.layouts_of = {}    # id(program) -> its Layouts
        self.met = {}           # root sigs seen once by ``remember`` (at most MET)
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()
        self.budgeted = budgeted
        self.held_bytes = 0
        if budgeted:
            BUDGET.register(self)

    @property
    def held_entries(self):
        return len(self.programs)

    def _hit(self, key):
        """The program cached under ``key`` (now the most recently used), or None (a miss,
        counted)."""
        with self.lock:
            program = self.programs.get(key)
            if program is None:
                self.misses += 1
                return None
            self.hits += 1
            if self.maxsize is not None:
                self.programs.move_to_end(key)
            self.used[id(program)] = tick()      # an int key: no second hash of ``key``
            return program

    def layouts_for(self, sig):
        """The ``graph.Layout``s of cached programs whose graph's root had ``sig`` (a tuple;
        possibly empty): ``graph.match`` tells whether one is the graph at hand."""
        return self.layouts.get(sig, ())

    def _layout_hit(self, layout):
        """Count a hit of ``layout``'s program (found by ``graph.match``: no key hashed)."""
        with self.lock:
            self.hits += 1
            program = layout.program
            if self.maxsize is not None:
                if self.programs.get(layout.key) is not program:
                    return
                self.programs.move_to_end(layout.key)
            self.used[id(program)] = tick()

    def remember(self, root, order, key, program):
        """After ``linearize(root, cut="seen")`` gave ``order`` and ``key`` and ``program`` ran
        it: while ``program`` is cached under ``key``, keep the graph's ``graph.Layout`` under
        the root's ``sig``, so the graph built the same way again finds the program by ``sig``
        and ``graph.match`` (at most ``LAYOUTS`` per root sig, and per program twice the
        signatures a program may have; the oldest dropped first). Only from the second time
        a root of that ``sig`` comes here (``met``)."""
        sig = root.sig
        if not order or order[-1] is not root or not sig:
            return
        if sig not in self.met:
            # the first time: only noted (a graph run once, a first call, pays no layout)
            if len(self.met) >= self.MET:
                self.met.clear()
            self.met[sig] = None
            return
        with self.lock:
            if self.programs.get(key) is not program:
                return
        layout = graph.Layout(order, key, program)
        with self.lock:
            if self.programs.get(key) is not program:
                return
            pid = id(program)
            mine = self.layouts_of.setdefault(pid, [])
            if len(mine) >= 2 * (self.ALIASES + 1):       # (a layout per signature, and as many again)
                self._unlayout(mine.pop(0))
            mine.append(layout)
            found = self.layouts.get(sig, ())
            if len(found) >= self.LAYOUTS:
                old = found[0]
                self.layouts[sig] = found = found[1:]
                theirs = self.layouts_of.get(id(old.program), [])
                if old in theirs:
                    theirs.remove(old)
                    if id(old.program) in self.sizes:
                        self._resize(id(old.program))
            self.layouts[sig] = found + (layout,)
            layout.sig = sig
            self._resize(pid)           # a layout's bytes count in the cache's byte limit
        if self.budgeted:
            BUDGET.admit((self, pid))

    def _unlayout(self, layout):
        """Forget a layout in ``layouts`` (under the lock; the caller keeps ``layouts_of``)."""
        found = self.layouts.get(layout.sig, ())
        if layout in found:
            rest = tuple([x for x in found if x is not layout])
            if rest:
                self.layouts[layout.sig] = rest
            else:
                del self.layouts[layout.sig]

    def _unlayout_key(self, pid, key):
        """Forget the layouts of a program that run it under ``key`` (under the lock): that
        signature of it went."""
        mine = self.layouts_of.get(pid)
        if mine:
            gone = [layout for layout in mine if layout.key is key or layout.key == key]
            for layout in gone:
                mine.remove(layout)
                self._unlayout(layout)

    def _unlayout_program(self, pid):
        """Forget every layout of a program (under the lock): it went."""
        for layout in self.layouts_of.pop(pid, ()):
            self._unlayout(layout)

    def lookup(self, key, order, leaves):
        """The program for a graph (``key`` from ``graph.linearize``), compiled on a miss
        (unless its shape family has it)."""
        program = self._hit(key)
        if program is not None:
            return program
        return self._miss(key, _member(key, order, leaves), lambda: codegen.build(order, leaves, anomaly=key[-1]))

    def get_or_build(self, key, build, member=None):
        """The program cached under ``key``, or ``build()``'s, cached (least recently used go
        first when full). ``member`` (a ``families.Member``): its family's program, when it
        has one, is used before ``build`` is called, and a program built is registered."""
        program = self._hit(key)
        return program if program is not None else self._miss(key, member, build)

    def get_or_build_graph(self, key, order, leaves, build):
        """``get_or_build`` for the graph in ``order`` (``key`` from ``graph.linearize``): on a
        miss its shape family's program, else ``build()``'s (registered for the family)."""
        program = self._hit(key)
        return program if program is not None else self._miss(key, _member(key, order, leaves), build)

    def _miss(self, key, member, build):
        """On a miss: the shape family's program (kept under ``key`` too), else ``build()``'s,
        registered for its family."""
        if member is not None:
            program = families.find(member)
            if program is not None:
                return self._insert(key, program)
        program = build()
        found = self._insert(key, program)
        if member is not None and found is program:
            families.register(member, program)
        return found

    def _insert(self, key, program):
        nbytes = program_bytes(program)
        evicted = []        # dropped after the lock is released (dropping may run finalizers)
        with self.lock:
            found = self.programs.get(key)
            if found is not None:                 # another thread compiled it meanwhile
                self.used[id(found)] = tick()
                return found
            pid = id(program)
            keys = self.keys_of.get(pid)
            if keys is None:
                self.keys_of[pid] = [key]
                self.bases[pid] = self.sizes[pid] = nbytes
                self.held_bytes += nbytes
            else:                                 # a family's program under a new signature
                # at most ALIASES, and few enough that a program fits the entry limit
                most = min(self.ALIASES, (BUDGET.entries - 1) // 2) if self.budgeted else self.ALIASES
                if most < 1:                      # no room: its family finds it again
                    self.used[pid] = tick()
                    return program
                keys.append(key)
                while len(keys) > most + 1:
                    gone = keys.pop(1)
                    self.programs.pop(gone, None)
                    self._unlayout_key(pid, gone)
                self._resize(pid)
            self.programs[key] = program
            self.used[pid] = tick()
            self._evict(evicted)
        if self.budgeted:
            BUDGET.admit((self, id(program)))
        return program

    def _resize(self, pid):
        """Recount a program's bytes after its signatures changed (under the lock)."""
        size = self.bases[pid] + sum(_alias_bytes(k) for k in self.keys_of[pid][1:]) + \
            sum(_layout_bytes(layout) for layout in self.layouts_of.get(pid, ()))
        self.held_bytes += size - self.sizes[pid]
        self.sizes[pid] = size

    def _forget(self, pid):
        """Drop a program's accounting, its signatures already gone (under the lock)."""
        self._unlayout_program(pid)
        self.used.pop(pid, None)
        self.keys_of.pop(pid, None)
        self.bases.pop(pid, None)
        self.held_bytes -= self.sizes.pop(pid, 0)

    def _evict(self, into):
        """Down to ``maxsize`` programs (under the lock)."""
        if self.maxsize is None:
            return
        programs = self.programs
        while len(self.keys_of) > self.maxsize and programs:
            key, program = programs.popitem(last=False)
            pid = id(program)
            keys = self.keys_of.get(pid)
            if keys is not None:
                keys.remove(key)
                self._unlayout_key(pid, key)
                if keys:
                    self._resize(pid)
                    continue
            self._forget(pid)
            into.append(program)

    def candidates(self):
        """(last use, program id, (entries, bytes)) of each program, for the global eviction."""
        with self.lock:
            return [(self.used.get(pid, 0), pid, (len(keys), self.sizes.get(pid, 0)))
                    for pid, keys in self.keys_of.items()]

    def drop(self, pid):
        """Evict a program with all its signatures (if still there); returns it, to be freed
        by the caller."""
        with self.lock:
            keys = self.keys_of.get(pid)
            if not keys:
                return None
            program = None
            for key in keys:
                program = self.programs.pop(key, None) or program
            self._forget(pid)
        return program

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
            self.used, self.sizes, self.keys_of, self.bases = {}, {}, {}, {}
            self.layouts, self.layouts_of, self.met = {}, {}, {}
            self.held_bytes = 0
            self.hits = self.misses = 0
        programs.clear()


_ALIAS_OVERHEAD = 256
_BYTES_PER_KEY_ITEM = 64


def _member(key, order, leaves):
    """The graph in ``order`` as a member of its shape family (``key`` from ``graph.linearize``,
    whose last entry is the anomaly flag)."""
    return families.Member(order, leaves, key, {"anomaly": key[-1]})


#: Estimated bytes per node of a kept ``graph.Layout`` (its keys, counts and edges).
_LAYOUT_NODE_BYTES = 160


def _layout_bytes(layout):
    return _LAYOUT_NODE_BYTES * len(layout.keys)


def _alias_bytes(key):
    """Estimated memory of one more signature of a program: its key (a tuple per node)."""
    try:
        return _ALIAS_OVERHEAD + _BYTES_PER_KEY_ITEM * len(key)
    except TypeError:
        return _ALIAS_OVERHEAD


class SharedPrograms:
    """Programs of traced functions by graph signature, held weakly: a program lives as long
    as a trace that runs it (and counts in that trace's size, under the global limit), and
    a function traced again that builds the same graph meanwhile (a new static value, a
    guarded branch, ``grad(f)`` of a new closure) reuses it."""

    maxsize = None

    def __init__(self):
        self.programs = weakref.WeakValueDictionary()
        self.hits = 0
        self.misses = 0
        self.lock = threading.Lock()

    def get_or_build(self, key, build, member=None):
        """The live program under ``key``, or ``build()``'s, shared from now on. ``member`` (a
        ``families.Member``): its shape family's program, when it has one, is used before
        ``build`` is called (not kept under ``key``: a trace holds it), and a program built
        is registered for the family."""
        with self.lock:
            program = self.programs.get(key)
            if program is not None:
                self.hits += 1
                return program
            self.misses += 1
        if member is not None:
            program = families.find(member)
            if program is not None:
                return program
        program = build()
        with self.lock:
            found = self.programs.get(key)        # another thread built it meanwhile
            if found is not None:
                return found
            try:
                self.programs[key] = program
            except TypeError:                     # not weakly referable: not shared
                return program
        if member is not None:
            families.register(member, program)
        return program

    def info(self):
        with self.lock:
            return CacheInfo(self.hits, self.misses, None, len(self.programs))

    def clear(self):
        with self.lock:
            self.programs = weakref.WeakValueDictionary()
            self.hits = self.misses = 0


CACHE = ProgramCache(budgeted=True)
#: Programs of traced functions by graph signature (see ``SharedPrograms``).
TRACED = SharedPrograms()


class _Group(list):
    """The traces of one signature, newest first, with their sizes and last use."""

    __slots__ = ("used", "sizes")


class TraceCache:
    """A traced function's traces: signature -> traces (one per guarded branch, newest
    first, at most ``per_signature``), under the global limit (and ``maxsize`` signatures
    of its own when set).

    It also keeps the signatures evicted lately (``explain`` says so of a miss on one)."""

    def __init__(self, maxsize=None, per_signature=8, key=None):
        self.traces = OrderedDict()
        self.maxsize = maxsize
        self.per_signature = per_signature
        self.lock = threading.Lock()
        self.key = key                  # the key in ``functions``, or None
        self.registered = False
        self.evicted = collections.deque(maxlen=32)
        self.entries = {}               # signature -> (jit's generated entry, group), and
        self.entry = None               # the one the last hot call took (``functional._Jit``)
        self.held_entries = 0
        self.held_bytes = 0
        BUDGET.register(self)

    def get(self, key):
        """The traces under ``key``, newest first (a snapshot), or None."""
        with self.lock:
            found = self.traces.get(key)
            if found is None:
                return None
            if self.maxsize is not None:
                self.traces.move_to_end(key)
            found.used = tick()
            return tuple(found)

    def add(self, key, trace, nbytes=_TRACE_OVERHEAD):
        evicted = []
        freed_entries = freed_bytes = 0
        with self.lock:
            found = self.traces.get(key)
            if found is None:
                found = self.traces[key] = _Group()
                found.sizes = []
            else:
                self.traces.move_to_end(key)
            found.used = tick()
            self._forget_entry(key)
            found.insert(0, trace)
            found.sizes.insert(0, nbytes)
            if hasattr(trace, "held_by"):
                trace.held_by = (weakref.ref(self), key)
            if len(found) > self.per_signature:
                evicted.append(found[self.per_signature:])
                freed_entries += len(found) - self.per_signature
                freed_bytes += sum(found.sizes[self.per_signature:])
                del found[self.per_signature:]
                del found.sizes[self.per_signature:]
            while self.maxsize is not None and len(self.traces) > self.maxsize:
                old_key, group = self.traces.popitem(last=False)
                self._forget_entry(old_key)
                self.evicted.append(old_key)
                evicted.append(group)
                freed_entries += len(group)
                freed_bytes += sum(group.sizes)
            self.held_entries += 1 - freed_entries
            self.held_bytes += nbytes - freed_bytes
        if not self.registered and self.key is not None:
            functions.register(self)
        BUDGET.admit((self, key))

    def resize(self, key, trace, delta):
        """``trace`` (under ``key``) now holds ``delta`` more bytes (compiled after running
        interpreted); the limits are enforced again."""
        with self.lock:
            group = self.traces.get(key)
            if group is None:
                return
            for k, held in enumerate(group):
                if held is trace:
                    group.sizes[k] += delta
                    self.held_bytes += delta
                    break
            else:
                return
        if delta > 0:
            BUDGET.admit((self, key))

    def candidates(self):
        """(last use, signature, (entries, bytes)) of each signature, for the global eviction."""
        with self.lock:
            return [(group.used, key, (len(group), sum(group.sizes))) for key, group in self.traces.items()]

    def drop(self, key):
        with self.lock:
            group = self.traces.pop(key, None)
            if group is None:
                return None
            self._forget_entry(key)
            self.evicted.append(key)
            self.held_entries -= len(group)
            self.held_bytes -= sum(group.sizes)
            empty = not self.traces
        if empty:
            functions.unregister(self)
        return group

    def clear(self):
        with self.lock:
            traces, self.traces = self.traces, OrderedDict()
            self.entries, self.entry = {}, None
            self.evicted.clear()
            self.held_entries = self.held_bytes = 0
        functions.unregister(self)
        traces.clear()

    def _forget_entry(self, key):
        """The signature's traces change: its generated entry (a newer trace comes first, or
        none is left) goes. (Under the lock.)"""
        if self.entries.pop(key, None) is not None:
            self.entry = None

    def recent(self, n):
        """The ``n`` most recently used signatures, the most recent last."""
        with self.lock:
            groups = sorted(self.traces.items(), key=lambda kv: kv[1].used)
        return [key for key, _ in groups[-n:]]

    def __len__(self):
        with self.lock:
            return sum(len(v) for v in self.traces.values())


class FunctionStats:
    """What one function (a *family*: the same code, whatever arrays and numbers its closure
    and globals hold) has cost: traces made, the last miss (text), whether the retrace
    warning was given. ``remake(fn)`` makes a traced function of the same kind (``explain``)."""

    __slots__ = ("name", "code", "traced", "warned", "last_miss", "remake", "parts", "used")

    def __init__(self, name, code, remake):
        self.name, self.code, self.remake = name, code, remake
        self.traced = 0
        self.warned = False
        self.last_miss = None           # (text, hint), possibly worked out lazily
        self.parts = None               # the closure, globals and defaults of the last trace
        self.used = tick()

    def describe(self):
        if not self.traced:
            return f"{self.name} has not been traced yet"
        times = "once" if self.traced == 1 else f"{self.traced} times"
        miss = self.last_miss
        text = miss if isinstance(miss, str) else next(iter(miss))     # (text, hint)
        return f"{self.name} was traced {times}; the last time because {text}"


class _Functions:
    """Trace caches shared by every traced function with the same key (see ``functional``).
    Only caches holding traces are kept here: an emptied one is let go (its key may hold a
    closure's arrays), and joins again when it holds a trace. Also each family's
    ``FunctionStats`` (the most recently used 4096)."""

    def __init__(self):
        self.caches = {}
        self.stats = OrderedDict()
        self.lock = threading.Lock()

    def stats_for(self, family, name, code, remake):
        with self.lock:
            found = self.stats.get(family)
            if found is None:
                found = self.stats[family] = FunctionStats(name, code, remake)
                if len(self.stats) > 4096:
                    self.stats.popitem(last=False)
            else:
                self.stats.move_to_end(family)
            return found

    def stats_of(self, code):
        """The stats of the families with this code object, most recently used first."""
        with self.lock:
            found = [s for s in self.stats.values() if s.code is code]
        return sorted(found, key=lambda s: -s.used)

    def forget_stats(self):
        with self.lock:
            stats = list(self.stats.values())
        for found in stats:                   # the counts start again; the families stay
            found.traced = 0
            found.warned = False
            found.last_miss = found.parts = None

    def cache_for(self, key, per_signature=8):
        """The trace cache for ``key``: the registered one, or a new one (registered when it
        first holds a trace)."""
        with self.lock:
            found = self.caches.get(key)
        if found is not None:
            return found
        return TraceCache(per_signature=per_signature, key=key)

    def register(self, cache):
        with self.lock:
            if cache.key not in self.caches:
                self.caches[cache.key] = cache
                cache.registered = True

    def unregister(self, cache):
        with self.lock:
            if cache.registered and self.caches.get(cache.key) is cache:
                del self.caches[cache.key]
            cache.registered = False

    def matching(self, predicate):
        """The registered caches whose key satisfies ``predicate``."""
        with self.lock:
            return [c for k, c in self.caches.items() if predicate(k)]

    def __len__(self):
        with self.lock:
            return len(self.caches)


functions = _Functions()


def _live_trace_caches():
    return [c for c in BUDGET.live() if isinstance(c, TraceCache)]


def cache_info() -> CacheInfo:
    """Hits, misses, maximum and current size of the caches, like functools'.

    Counts the programs of graphs (``backward()``), the traces of functions
    (``neuronika.grad``) and their programs; ``maxsize`` is the one entry limit over
    all of them (``set_cache_size``).

    >>> import neuronika
    >>> neuronika.transform.cache_clear()
    >>> x = neuronika.ones(3).requires_grad()
    >>> for _ in range(3):
    ...     (x * x).sum().backward()
    >>> info = neuronika.transform.cache_info()
    >>> info.hits + info.misses, info.maxsize, info.currsize
    (3, 512, 1)
    """
    return CacheInfo(CACHE.hits, CACHE.misses, BUDGET.entries, BUDGET.used()[0])


def cache_limits() -> CacheLimits:
    """The limits (``set_cache_size``) and what all the caches hold now, in entries and
    estimated bytes.

    >>> import neuronika
    >>> neuronika.transform.cache_limits().entries
    512
    """
    return CacheLimits(BUDGET.entries, BUDGET.bytes, *BUDGET.used())


def cache_clear() -> None:
    """Empty every cache (graphs' programs, functions' traces and their programs) and reset
    the counters (retraces counted for the warning too); the programs, and their generated
    source in ``linecache``, are freed."""
    CACHE.clear()
    TRACED.clear()
    families.clear()
    for cache in _live_trace_caches():
        cache.clear()
    functions.forget_stats()
    codegen.patterns_clear()                  # template patterns and families (code only)
    from . import loops, run                  # below: they import this module
    run.forget_interpreted()                  # runs counted toward compiling, interpreter kinds
    loops.cells_clear()                       # scan cells (and their programs)
    pool.clear()                              # loops' kept stacks


def explain(f, *args, **kwargs) -> str:
    """Why the last call of traced function ``f`` missed the cache, in words; given
    arguments, whether a call with them would hit, and if not why (that may trace ``f``).

    ``f`` is what ``neuronika.grad`` (``value_and_grad``, ...) returned, or the function
    given to it (then the most recently used traced function of that code answers).

    >>> import numpy as np, neuronika
    >>> f = neuronika.grad(lambda x: (x * x).sum())
    >>> _ = f(np.ones(3)); _ = f(np.ones(4))
    >>> print(neuronika.transform.explain(f))
    grad(<lambda>) was traced 2 times; the last time because argument 0 ('x'): shape (3,) -> (4,)
    >>> print(neuronika.transform.explain(f, np.zeros(4)))
    grad(<lambda>): a call with these arguments hits the cache
    """
    if isinstance(getattr(f, "stats", None), FunctionStats) and hasattr(f, "explain"):
        return f.explain(*args, **kwargs)
    target = getattr(f, "__func__", f)
    code = getattr(target, "__code__", None)
    found = functions.stats_of(code) if code is not None else []
    name = getattr(f, "__qualname__", None) or getattr(f, "__name__", None) or repr(f)
    if not found:
        return (f"{name}: no traced function of it has been called (neuronika.grad(f) and the "
                f"like trace f when they are called; explain what they returned, or f)")
    stats = found[0]
    if args or kwargs:
        return stats.remake(f).explain(*args, **kwargs)
    return stats.describe()


def set_cache_size(entries: int | None = None, bytes: int | None = None) -> None:   # noqa: A002
    """Bound all the caches together: at most ``entries`` programs and traces, and at most
    ``bytes`` of them (estimated: generated source, constant arrays a trace keeps); the
    least recently used go first. None leaves a limit as it is. Defaults: 512 entries,
    512 MiB.

    >>> import neuronika
    >>> neuronika.transform.set_cache_size(entries=1024, bytes=2 ** 30)
    >>> neuronika.transform.set_cache_size(512, 512 * 2 ** 20)
    """
    for name, value in (("entries", entries), ("bytes", bytes)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"set_cache_size: {name} must be a positive int or None, got {value!r}")
    if entries is not None:
        BUDGET.entries = entries
    if bytes is not None:
        BUDGET.bytes = bytes
    BUDGET.admit()


#: After this many traces of one function beyond the first, a RetraceWarning (once).
RETRACE_WARNING = [8]


def set_retrace_warning(after: int | None = 8) -> None:
    """Warn (``neuronika.RetraceWarning``, once per function) when a traced function has been
    traced again more than ``after`` times; None never warns.

    >>> import neuronika
    >>> neuronika.transform.set_retrace_warning(20)
    >>> neuronika.transform.set_retrace_warning(8)
    """
    if after is not None and (not isinstance(after, int) or isinstance(after, bool) or after < 0):
        raise ValueError(f"set_retrace_warning: after must be a non-negative int or None, got {after!r}")
    RETRACE_WARNING[0] = after
