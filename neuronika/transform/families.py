"""Shape families: one program for graphs that differ only in sizes its code does not read.

A graph's *family key* is its signature with every size abstracted to its class: 0, 1 (an
axis that broadcasts) or "at least 2". Ranks, dtypes, attributes, flags and build options
stay as they are, and so does each value's memory class in a long graph (which values
``codegen`` frees in batches). Within a family, a graph's *pattern* says which of its sizes
are equal (a label per distinct size, over the shapes of all its nodes, in order of first
appearance) and its *sizes* give each label's value.

A compiled program joins its family at once, serving at first only graphs of its own
pattern and sizes. Another member has its source generated (not compiled) and compared:
when text and globals are the same, the program is that member's, exactly what compiling
it would give. The sizes that differed between the two are then *free* for that pattern
(a label is free when every place it stands for changed): a member of a known pattern
that differs only in free sizes gets the program with no generation at all, because the
code did not name those sizes when they moved. A pattern seen for the first time (the
batch happened to equal a feature count, say) is compared once. A graph seen once costs
only its family key (one pass over its nodes); a family whose comparisons keep failing
is not compared again (``GIVE_UP``).

The passes that read sizes (in-place results, kept buffers, small products) decide by limits.
A member is written with the program's sizes, so a short last batch takes the long batches'
program. A member with a value past a limit (``codegen.size_classes``) that the program's
sizes stayed below is written with its own sizes instead (the products pass still reads the
program's: its choice is worth a few percent, not a compile): a small first batch's program,
which keeps no buffers, would otherwise run every later large batch without them. Where its
code differs, it gets a program of its own (not counted as a failed comparison).

``find`` and ``register`` serve any cache of programs (``cache.ProgramCache``,
``cache.SharedPrograms``); the registry holds programs weakly, so an entry lives as long
as a cache (or a trace) keeps its program.
"""
from __future__ import annotations

import operator
import threading
import weakref
from collections import OrderedDict

from ..graph import collector_paused

#: Graphs with at least this many nodes have their values' memory class (``codegen``'s
#: TINY / SMALL: which values a long body frees in batches) in the family key.
_MEMORY_CLASSES = 128

_lock = threading.Lock()
#: family key -> [Entry], the newest first
_REGISTRY = {}
#: hash of a family key -> failed comparisons (the keys themselves are not kept)
_FAILED = OrderedDict()
_FAILED_MAX = 4096
#: comparisons that failed in a family before it is no longer compared
GIVE_UP = 2
#: programs kept per family (the newest), patterns per program
_PER_FAMILY = 8
_PATTERNS = 8
STATS = {"hits": 0, "registered": 0, "compared": 0, "widened": 0}


class Member:
    """A graph on the way into a cache: what finding its family and registering a program
    for it take. ``options``: ``codegen.build``'s keyword arguments (``wrt`` as nodes of
    ``order``); ``extra``: what else the cache key holds (hashable)."""

    __slots__ = ("order", "leaves", "signature", "options", "extra", "_made")

    def __init__(self, order, leaves, signature, options, extra=()):
        self.order = order
        self.leaves = leaves
        self.signature = signature
        self.options = options
        self.extra = extra
        self._made = None

    def key(self):
        """(family key, pattern, sizes by label); the key is None where it is not hashable."""
        if self._made is None:
            # one pass making a tuple per node: the collector, which would walk the whole
            # graph again, waits (no garbage cycles are made here)
            with collector_paused:
                self._made = _family_key(self.order, self.signature, self.extra, self.options)
        return self._made


class Entry:
    """A program (held weakly) and, per pattern it is known to serve, the sizes it needs
    (``(label, size), ...``; the other labels are free); ``classes``: per value and gradient,
    the highest size class (``codegen.size_classes``) its code is known to be written for
    (None: no pass of its program reads sizes)."""

    __slots__ = ("program", "patterns", "first", "classes", "__weakref__")

    def __init__(self, pattern, sizes, classes=None):
        self.program = None
        self.patterns = {pattern: tuple(enumerate(sizes))}
        self.first = (pattern, tuple(sizes))
        self.classes = classes


def _abstract(shape, labels, sizes):
    out = []
    for d in shape:
        if d < 2:
            out.append(d)
        else:
            c = labels.get(d)
            if c is None:
                c = labels[d] = len(sizes)
                sizes.append(d)
            out.append(-1 - c)
    return tuple(out)


def _options_key(options):
    items = []
    for name in sorted(options):
        value = options[name]
        if isinstance(value, list):
            value = tuple(value)
        items.append((name, value))
    return tuple(items)


def _family_key(order, signature, extra, options):
    labels, sizes = {}, []
    known = {}                  # shape -> (pattern, class): most nodes share a few shapes
    parts = list(signature)
    pattern, coarse = [], []
    for i, node in enumerate(order):
        shape = node.shape
        found = known.get(shape)
        if found is None:
            found = known[shape] = (_abstract(shape, labels, sizes), tuple([d if d < 2 else 2 for d in shape]))
        pattern.append(found[0])
        coarse.append(found[1])
        if node.op is None:
            k = node.key
            if k[0] == "leaf":
                parts[i] = ("leaf", k[2], k[3])      # the shape is in ``coarse``
        elif node.op.shape_attr is not None:        # an attribute that is the node's shape
            (op, attrs, *flags), inputs = parts[i]
            a = op.shape_attr
            attrs = attrs[:a] + (found[1],) + attrs[a + 1:]
            parts[i] = ((op, attrs, *flags), inputs)
    memory = _memory_classes(order) if len(order) >= _MEMORY_CLASSES else None
    if options.get("wrt") is not None:
        position = {n: i for i, n in enumerate(order)}
        options = dict(options, wrt=tuple(position.get(n) for n in options["wrt"]))
    key = (tuple(parts), tuple(coarse), memory, extra, _options_key(options))
    pattern = tuple(pattern)
    try:
        hash(key)
        hash(pattern)
    except TypeError:
        return None, pattern, sizes
    return key, pattern, sizes


def _memory_classes(order):
    """Per node, whether its value is tiny, small or neither (``codegen.TINY``, ``SMALL``)."""
    from .codegen import SMALL, TINY
    known = {}
    out = []
    for node in order:
        kind = (node.shape, node.dtype)
        found = known.get(kind)
        if found is None:
            size = node.dtype.itemsize
            for d in node.shape:
                size *= d
            found = known[kind] = 0 if size < TINY else 1 if size < SMALL else 2
        out.append(found)
    return tuple(out)


def find(member):
    """A live program of ``member``'s family whose code is ``member``'s own, or None: one
    that serves its pattern and sizes, or one whose code, generated again for ``member``
    and compared, is the same (see the module docstring)."""
    if not _REGISTRY:
        return None
    key, pattern, sizes = member.key()
    if key is None:
        return None
    from . import codegen
    classes = _Classes(member.order)
    with _lock:
        entries = _REGISTRY.get(key)
        if not entries:
            return None
        candidates = []
        for entry in entries:
            program = entry.program()
            if program is None:
                continue
            fixed = entry.patterns.get(pattern)
            if fixed is not None and all(sizes[c] == v for c, v in fixed) and not classes.above(entry):
                STATS["hits"] += 1
                return program
            candidates.append((entry, program))
        if not candidates or _FAILED.get(hash(key), 0) >= GIVE_UP:
            return None
        STATS["compared"] += 1
    made_for = {}
    failed = False
    for entry, program in candidates:
        # Written with the program's sizes where its passes read sizes (thresholds): a member
        # below a threshold the program's sizes crossed still gets that program (a short last
        # batch). A member above one the program's did not cross is written with its own
        # sizes: it gets the program only where that changes nothing (a small first batch's
        # program would run larger ones without their buffers).
        above = classes.above(entry)
        counts = getattr(program, "sizes", None)
        found = made_for.get((above, id(counts)))
        if found is None:
            sizes_read = dict(sizes=None, product_sizes=counts) if above else dict(sizes=counts)
            try:
                found = made_for[above, id(counts)] = codegen.build(member.order, member.leaves, dry=True,
                                                                    **sizes_read, **member.options)
            except Exception:    # noqa: BLE001 - compiled the usual way, which raises it again
                return None
        made, extra = found
        if _same(program, made, extra):
            with _lock:
                fixed = entry.patterns.get(pattern)
                if fixed is not None:
                    entry.patterns[pattern] = tuple((c, v) for c, v in fixed if sizes[c] == v)
                elif len(entry.patterns) < _PATTERNS:
                    entry.patterns[pattern] = _fixed_against(entry.first, pattern, sizes)
                if above:
                    entry.classes = tuple(map(max, entry.classes, classes.get()))
                STATS["hits"] += 1
                STATS["widened"] += 1
            return program
        failed = failed or not above
    if failed:                  # (a member that outgrew a program is no sign the family fails)
        with _lock:
            h = hash(key)
            _FAILED[h] = _FAILED.pop(h, 0) + 1
            if len(_FAILED) > _FAILED_MAX:
                _FAILED.popitem(last=False)
    return None


class _Classes:
    """A member's size classes (``codegen.size_classes``), made when first asked for."""

    __slots__ = ("order", "made")

    def __init__(self, order):
        self.order = order
        self.made = None

    def get(self):
        if self.made is None:
            from . import codegen
            self.made = codegen.size_classes(self.order)
        return self.made

    def above(self, entry):
        """Whether some value or gradient of the member is of a higher size class than
        ``entry``'s program is written for."""
        if entry.classes is None:
            return False
        return any(map(operator.gt, self.get(), entry.classes))


def _fixed_against(first, pattern, sizes):
    """The labels of ``pattern`` that must keep their ``sizes``: those standing for some
    place whose size was the same in ``first`` (pattern, sizes) of the same code."""
    first_pattern, first_sizes = first
    moved = [True] * len(sizes)
    for old, new in zip(first_pattern, pattern):
        for a, b in zip(old, new):
            if b < 0 and first_sizes[-1 - a] == sizes[-1 - b]:
                moved[-1 - b] = False
    return tuple((c, v) for c, v in enumerate(sizes) if not moved[c])


def register(member, program):
    """Make ``program`` (just compiled for ``member``) findable by its family: at first for
    members of the same pattern and sizes only (see ``find``)."""
    if getattr(program, "forward_source", None) is None:      # an interpreted plan: no code
        return False
    key, pattern, sizes = member.key()
    if key is None or not sizes:
        return False
    from . import codegen
    entry = Entry(pattern, sizes, codegen.size_classes(member.order) if getattr(program, "sizes", None) else None)
    try:
        entry.program = weakref.ref(program, _dropper(key, entry))
    except TypeError:
        return False
    with _lock:
        entries = _REGISTRY.setdefault(key, [])
        entries.insert(0, entry)
        if len(entries) > _PER_FAMILY:
            del entries[_PER_FAMILY:]
        STATS["registered"] += 1
    return True


def _same(program, made, extra):
    if (program.forward_source != made.forward_source or program.backward_source != made.backward_source
            or tuple(program.grad_leaves) != tuple(made.grad_leaves)
            or tuple(program.retained) != tuple(made.retained)):
        return False
    namespace = program.forward.__globals__
    return all(namespace.get(label, None) is obj for label, obj in extra.items())


def _dropper(key, entry):
    entry_ref = weakref.ref(entry)

    def drop(_):
        found = entry_ref()
        with _lock:
            entries = _REGISTRY.get(key)
            if entries is None or found is None:
                return
            try:
                entries.remove(found)
            except ValueError:
                return
            if not entries:
                del _REGISTRY[key]
    return drop


def clear():
    """Forget every family (``transform.cache_clear``)."""
    with _lock:
        _REGISTRY.clear()
        _FAILED.clear()
        for name in STATS:
            STATS[name] = 0


def count():
    """How many families hold a live program."""
    with _lock:
        return len(_REGISTRY)
