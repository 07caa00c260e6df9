"""The graph IR: nodes, build-time modes, topological order and signature.

A ``Node`` is immutable once built except for what evaluation caches on it
(``value``: a leaf's data, or the last value computed for a node evaluated as a
root; on such a root, ``snapshot``: what its next backward reads) and the
gradient. Nodes point at their inputs only, so dropping the last handle on a
result frees its graph and leaves the leaves.
"""
from __future__ import annotations

import contextlib
import contextvars
import gc
import itertools
import operator
import os
import sys
import threading

import numpy as np

from . import backend
from .errors import ShapeError

_serial = itertools.count()

#: The switches, one ContextVar each: every thread and every asyncio task sees its own.
GRAD_ENABLED = contextvars.ContextVar("neuronika.grad_enabled", default=True)
ANOMALY = contextvars.ContextVar("neuronika.anomaly", default=False)
TRACER = contextvars.ContextVar("neuronika.tracer", default=None)
#: (mode, compile_after): when a graph signature is compiled rather than interpreted.
COMPILE = contextvars.ContextVar("neuronika.compile", default=("auto", 2))
COMPILE_MODES = ("auto", "always", "never")
_grad_enabled = GRAD_ENABLED.get
_anomaly = ANOMALY.get


class _Modes:
    """The switches read while a graph is built or compiled, as attributes: reading or
    setting ``modes.grad_enabled``, ``modes.anomaly`` or ``modes.tracer`` reads or sets
    the ContextVar of the current thread (or asyncio task), never another's.

    ``tracer`` is the functional trace in progress (it records the Python-level
    values a traced function reads, to guard them), or None. ``compile`` is
    "auto" (a signature is interpreted until its ``compile_after``-th run, then
    compiled), "always" or "never" (``neuronika.config`` sets both).
    """

    __slots__ = ()

    @property
    def grad_enabled(self) -> bool:
        return GRAD_ENABLED.get()

    @grad_enabled.setter
    def grad_enabled(self, value):
        GRAD_ENABLED.set(bool(value))

    @property
    def anomaly(self) -> bool:
        return ANOMALY.get()

    @anomaly.setter
    def anomaly(self, value):
        ANOMALY.set(bool(value))

    @property
    def tracer(self):
        return TRACER.get()

    @tracer.setter
    def tracer(self, value):
        TRACER.set(value)

    @property
    def compile(self) -> str:
        return COMPILE.get()[0]

    @compile.setter
    def compile(self, value):
        COMPILE.set((check_compile_mode(value), COMPILE.get()[1]))

    @property
    def compile_after(self) -> int:
        return COMPILE.get()[1]

    @compile_after.setter
    def compile_after(self, value):
        COMPILE.set((COMPILE.get()[0], check_compile_after(value)))


def check_compile_mode(value):
    if not isinstance(value, str) or value not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(map(repr, COMPILE_MODES))}, got {value!r}")
    return value


def check_compile_after(value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"compile_after must be an int of at least 1 (the run on which a signature "
                         f"is compiled), got {value!r}")
    return int(value)


modes = _Modes()


class Node:
    """One value in the graph: a leaf (``op is None``) or an op application.

    ``key`` is the node's part of the graph signature: for a leaf its kind,
    shape, dtype and whether it needs a gradient (and its space, for arrays of
    another library than NumPy); for an op the op, its attributes and flags.
    Values never enter a key. ``sig``: a hash of the key and the inputs' ``sig``, made
    with the node (the graph behind it hashed incrementally); a graph built the same way
    again has the same root ``sig``, by which its program is found without linearising it
    (``match``). Only a hint: a match is verified node by node. ``space``: the array
    library and device of its value (``backend``; None for NumPy), an op's that of its inputs. ``dtype`` is always a
    NumPy dtype.
    """

    __slots__ = (
        "op", "inputs", "attrs", "shape", "dtype", "requires_grad", "key",
        "value", "grad", "where", "serial", "retain", "snapshot", "const", "space", "sig", "__weakref__",
    )

    def __init__(self, op, inputs, attrs, shape, dtype, requires_grad, where):
        self.serial = next(_serial)
        self.op = op
        self.inputs = inputs
        self.attrs = attrs
        self.shape = shape
        self.dtype = dtype
        self.requires_grad = requires_grad
        self.where = where
        self.value = None
        self.grad = None
        self.retain = False
        self.snapshot = None
        self.const = None
        self.space = None
        self.key = key = (op, attrs, requires_grad, False)
        try:                        # (``_sig`` inlined for one and two inputs: this runs for every node)
            if len(inputs) == 2:
                self.sig = hash((key, inputs[0].sig, inputs[1].sig))
            elif len(inputs) == 1:
                self.sig = hash((key, inputs[0].sig))
            else:
                self.sig = _sig(key, inputs) if inputs else 0
        except TypeError:           # unhashable attributes: no fast look-up
            self.sig = 0

    def rekey(self):
        """After a change of flags (retain, training): a new key, and every snapshot taken
        before is out of date (``flags_changed`` counts such changes)."""
        global flags_changed
        self.key = (self.op, self.attrs, self.requires_grad, self.retain)
        self.sig = _sig(self.key, self.inputs)
        flags_changed += 1


class WeakNode(Node):
    """A Python number when the program runs, typed weakly (NumPy 2, NEP 50): a Python-number
    argument of a traced function (key ``("weak", ...)``), a number written beside one
    (``n * 2``), or an op whose forward is a Python operator (``Op.weak``) over such values
    alone (``s * c``). Its dtype is what NumPy makes of the number on its own (float64,
    int64, complex128); beside an array it takes the array's (``(s * c) * x32`` is float32,
    ``(n + 1) + i8`` int8), as in NumPy."""

    __slots__ = ()


#: a weakly typed number of each kind, for ``np.result_type`` (only the kind counts)
_WEAK_OPERANDS = {"b": False, "i": 0, "f": 0.0, "c": 0j}
_WEAK_KEYS = {"b": ("weak", "bool"), "i": ("weak", "int"), "f": ("weak",), "c": ("weak", "complex")}
#: the dtype NumPy gives a Python number of each class on its own
_WEAK_TYPES = {bool: np.bool_, int: np.int64, float: np.float64, complex: np.complex128}


def _sig(key, inputs):
    """A node's ``sig``: its key and its inputs' ``sig`` hashed (0 where the key cannot be)."""
    try:
        return hash((key, *[i.sig for i in inputs]))
    except TypeError:
        return 0


flags_changed = 0


def serial_now():
    """A serial number between those of the nodes built before and after this call."""
    return next(_serial)


def leaf(value, requires_grad=False):
    """A leaf node over an array (or a NumPy scalar: a number used as an operand); an array
    of another library than NumPy records its space, which enters the key."""
    node = Node(None, (), (), value.shape, value.dtype, requires_grad, None)
    node.value = value
    if value.__class__ is np.ndarray or isinstance(value, _NUMPY_VALUES):
        node.key = key = ("leaf", value.shape, value.dtype, requires_grad)
        node.sig = hash(key)
        return node
    space = backend.space_of(value)
    node.space = space
    node.shape = tuple(value.shape)
    node.dtype = space.numpy_dtype(value.dtype)
    # the space beside the dtype (what the values are), where every reader of keys keeps it
    node.key = ("leaf", node.shape, (node.dtype, space), requires_grad)
    node.sig = hash(node.key)
    return node


_NUMPY_VALUES = (np.ndarray, np.generic)


def leaf_key(shape, dtype, space, requires_grad):
    """The key of a leaf of ``space`` (None: NumPy), as ``leaf`` makes it."""
    return ("leaf", shape, dtype if space is None else (dtype, space), requires_grad)


def like_leaf(node, requires_grad):
    """A leaf without a value that stands for ``node`` (an input of a loop's cell): its shape,
    dtype and space; a weak number stays weak."""
    new = Node(None, (), (), node.shape, node.dtype, requires_grad, None)
    new.space = node.space
    if node.__class__ is WeakNode:       # a weak argument or result: a weak leaf in the cell
        new.__class__ = WeakNode
        new.key = weak_key(node.dtype.kind, requires_grad)
    else:
        new.key = leaf_key(node.shape, node.dtype, node.space, requires_grad)
    new.sig = hash(new.key)
    return new


def weak_key(kind, requires_grad):
    """The key of a weak leaf of dtype kind ``kind`` ("b", "i", "f", "c")."""
    return _WEAK_KEYS[kind] + ("grad",) if requires_grad else _WEAK_KEYS[kind]


def weak_leaf(value, requires_grad=False):
    """A leaf for a Python number (float, int or complex): an argument of a traced function,
    or a number written beside one (``n * 2``, ``s - 0.5``). Generated code reads it as the
    Python number, so NumPy types it weakly (``x32 * lr`` stays float32, ``(n * 2) * x32``
    too), and so do the dtype rules (``WeakNode``)."""
    node = leaf(_WEAK_TYPES[value.__class__](value), requires_grad)
    node.__class__ = WeakNode
    node.value = value
    node.key = weak_key(node.dtype.kind, requires_grad)
    node.sig = hash(node.key)
    return node


def _dtype_operand(node):
    # (NumPy 2 types a Python number by its kind alone, whatever its value)
    return _WEAK_OPERANDS[node.dtype.kind] if node.__class__ is WeakNode else node.dtype


def _directory(path):
    return os.path.join(os.path.realpath(path), "")


_PACKAGE_DIR = _directory(os.path.dirname(__file__))
_NUMPY_DIR = _directory(os.path.dirname(np.__file__))
_origins = {}           # a code object's file name -> PACKAGE, NUMPY or USER
USER, PACKAGE, NUMPY = 0, 1, 2


def origin(filename):
    """Whether code from ``filename`` is this package's (generated programs included),
    NumPy's, or the user's. Paths are compared after ``os.path.realpath``, so a checkout
    imported through ``..`` or a symlink is still recognised."""
    found = _origins.get(filename)
    if found is None:
        if filename.startswith("<"):     # <stdin>, <string>, a notebook cell: the user's
            return PACKAGE if filename.startswith("<neuronika ") else USER
        real = os.path.realpath(filename)
        found = PACKAGE if real.startswith(_PACKAGE_DIR) else NUMPY if real.startswith(_NUMPY_DIR) else USER
        _origins[filename] = found
    return found


def user_line():
    """(file, line) of the first frame outside this package and NumPy's: where the user
    built the node (possibly through a NumPy function that dispatched to neuronika)."""
    frame = sys._getframe(1)
    while frame is not None and origin(frame.f_code.co_filename):
        frame = frame.f_back
    if frame is None:
        return None
    return frame.f_code.co_filename, frame.f_lineno


def format_where(where):
    if where is None:
        return "an unknown line"
    return f"{where[0]}:{where[1]}"


def result_dtype(nodes):
    first = nodes[0].dtype
    for node in nodes:
        if node.dtype is not first:
            return np.result_type(*[_dtype_operand(n) for n in nodes])
    return first


def converted_result_dtype(nodes):
    """The promoted dtype where a Python number is made an array first (NumPy's ``stack``,
    ``concatenate``): typed by itself, not weakly (``stack([x32, 1.5])`` is float64)."""
    return np.result_type(*[n.dtype for n in nodes])


def apply(op, inputs, attrs=()):
    """Build the node for ``op`` over ``inputs``: shapes and dtypes only, no data.

    The user's line is recorded only under ``detect_anomaly`` (errors raised
    here find it on the stack when they happen).
    """
    first = inputs[0]
    space = first.space
    n = len(inputs)
    # (the cases of one and two inputs without a loop or a list: this runs for every node built)
    if n > 1 and (inputs[1].space is not space or n > 2 and any(i.space is not space for i in inputs)):
        inputs, space = _join(op, inputs)
        first = inputs[0]
    if space is not None and space.family not in op.families:
        raise backend.refused(op, space)
    try:
        if op.keeps_shape:
            shape = first.shape
        elif n == 1:
            shape = op.shape(first.shape, *attrs)
        elif n == 2:
            shape = op.shape(first.shape, inputs[1].shape, *attrs)
        else:
            shape = op.shape(*[i.shape for i in inputs], *attrs)
    except ShapeError as error:
        raise ShapeError(f"{op.name}: {error} (at {format_where(user_line())})") from None
    if op.default_dtype:
        dtype = first.dtype
        if n == 2:
            if inputs[1].dtype is not dtype:
                dtype = result_dtype(inputs)
        elif n > 2:
            for node in inputs:
                if node.dtype is not dtype:
                    dtype = result_dtype(inputs)
                    break
    else:
        try:
            dtype = op.dtype(inputs, attrs)
        except TypeError as error:            # no such dtype for this op (complex relu, ...)
            raise TypeError(f"{op.name}: {error} (at {format_where(user_line())})") from None
    requires_grad = False
    if _grad_enabled():
        if n <= 2 and op.n_differentiable is None:
            requires_grad = first.requires_grad or n == 2 and inputs[1].requires_grad
        else:
            for node in inputs[: op.n_differentiable]:
                if node.requires_grad:
                    requires_grad = True
                    break
    # over weakly typed numbers alone, a Python operator gives one (``s * c``)
    weak = first.__class__ is WeakNode and op.weak and (n == 1 or all(i.__class__ is WeakNode for i in inputs))
    node = (WeakNode if weak else Node)(op, inputs, attrs, shape, dtype, requires_grad,
                                        user_line() if _anomaly() else None)
    if space is not None:
        node.space = space
    return node


def _join(op, inputs):
    """The inputs of an op over arrays of another library than NumPy, and their space: numbers
    (NumPy scalars, 0-d leaves made for an operand) join any space, as leaves of that space;
    arrays of two spaces raise ``backend.NamespaceError`` naming both."""
    spaces = [n.space for n in inputs if n.space is not None]
    space = spaces[0]
    if any(s is not space for s in spaces) or any(n.space is None and not _number(n) for n in inputs):
        raise backend.mixed(f"{op.name} (at {format_where(user_line())})", [n.space for n in inputs])
    return tuple(n if n.space is not None or n.key[0] == "weak" else _moved(n, space) for n in inputs), space


def _number(node):
    """Whether ``node`` is a number that may join arrays of any space: a Python number
    argument, or a leaf over a NumPy scalar."""
    return node.op is None and (node.key[0] == "weak" or isinstance(node.value, np.generic))


def _moved(node, space):
    return leaf(space.asarray(node.value, node.dtype))


def linearize(*roots, cut=None):
    """Topological order of the graph behind ``roots``, its leaves, and its signature.

    Nodes are numbered as they are created, and every input is created before
    its consumers, so creation order is a topological order; a graph built the
    same way again gets the same order and an equal signature.

    ``cut`` says which nodes that need no gradient become constants of this graph
    (``constant_of``): ``"seen"`` those met before in another graph's linearisation
    (the imperative path), an int those created before that serial (a trace: the
    values a function reads from outside), None none. A constant enters the graph as
    a leaf holding its value (its consumers point at that leaf from then on), so the
    program neither computes it nor has it in its key; every linearisation checks that
    the leaves behind it have not changed (``refresh_constants``).
    """
    seen = set(roots)
    stack = list(roots)
    pop, push, add = stack.pop, stack.append, seen.add
    if cut is None:
        while stack:
            for node in pop().inputs:
                if node not in seen:
                    add(node)
                    push(node)
    else:
        _cutting(roots, cut, seen, stack)
    order = sorted(seen, key=_by_serial)
    # a tuple per node and no garbage cycles: for a large graph, the collector would walk
    # it again and again while the signature is built
    proxies = None
    with collector_paused if len(order) >= _LARGE else _NO_PAUSE:
        position = {node: i for i, node in enumerate(order)}
        keys = []
        leaves = []
        for node in order:
            inputs = node.inputs
            if inputs:
                keys.append((node.key, tuple([position[i] for i in inputs])))
            else:
                keys.append(node.key)
                leaves.append(node)
                if node.const is not None and node.const.__class__ is not Witness:
                    if proxies is None:
                        proxies = []
                    proxies.append(node)
        keys.append(_anomaly())
    if proxies is not None:
        refresh_constants(proxies)
    return order, leaves, tuple(keys)


def _cutting(roots, cut, seen, stack):
    """``linearize``'s walk where nodes needing no gradient may become constants."""
    pop, push, add = stack.pop, stack.append, seen.add
    mark = None
    if cut == "seen":
        mark = roots[0].serial
        for root in roots:
            _mark_root(root, mark)
    while stack:
        consumer = pop()
        for node in consumer.inputs:
            if node in seen:
                continue
            if node.requires_grad or not node.inputs:
                add(node)
                push(node)
                continue
            if mark is not None:
                proxy = _seen_cut(node, mark)
            elif node.const.__class__ is Constant:
                proxy = node.const.proxy
            elif node.const is not VOLATILE and node.serial < cut:
                proxy = constant_of(node)
            else:
                proxy = None
            if proxy is None:
                add(node)
                push(node)
                continue
            consumer.inputs = tuple([proxy if i is node else i for i in consumer.inputs])
            add(proxy)


def _mark_root(root, mark):
    if not root.requires_grad and root.inputs and (root.const is None or root.const.__class__ is int):
        root.const = mark


def _seen_cut(node, mark):
    """The cut "seen" (``linearize``) of ``node``, an op's result that needs no gradient, in the
    graph of root serial ``mark``: the proxy leaf that stands for it (a constant), or None (it
    is computed in this graph, and marked as met in it)."""
    state = node.const
    if state.__class__ is Constant:
        return state.proxy
    if state is VOLATILE:
        return None
    if state is None or state == mark:
        node.const = mark
        return None
    return constant_of(node)


class Layout:
    """What ``linearize(root, cut="seen")`` gave for a graph, unpacked for ``match``, the
    positions counted from the root down (``k`` is position ``len(order) - 1 - k``): for
    each node but the root where its first consumer reads it (``steps``: the consumer's ``k``
    and the input slot), the other edges (``shared``: consumer, slot, node), the keys and
    input counts, the leaves (``leaves``: each with its consumers' edges, in the program's
    order) and the ops that need no gradient (``plain``); the signature itself (``key``)
    with what it runs (``program``), and ``sig``, the root's ``sig`` it is kept under
    (``transform.cache``)."""

    __slots__ = ("steps", "shared", "keys", "counts", "leaves", "plain", "key", "program", "sig")

    def __init__(self, order, key, program):
        n = len(order)
        first, shared, into = {}, [], {}
        for i in range(n - 1, -1, -1):
            if order[i].inputs:
                for j, p in enumerate(key[i][1]):
                    edge = (n - 1 - i, j)
                    into.setdefault(p, []).append(edge)
                    if p in first:
                        shared.append(edge + (n - 1 - p,))
                    else:
                        first[p] = edge
        self.steps = tuple([first[p] for p in range(n - 2, -1, -1)])
        self.shared = tuple(shared)
        self.keys = [node.key for node in reversed(order)]
        self.counts = [len(node.inputs) for node in reversed(order)]
        self.leaves = tuple([(n - 1 - i, tuple(into.get(i, ()))) for i, node in enumerate(order)
                             if not node.inputs])
        self.plain = tuple([n - 1 - i for i, node in enumerate(order[:-1])
                            if node.inputs and not node.requires_grad])
        self.key = key
        self.program = program
        self.sig = None


_key_of = operator.attrgetter("key")
_inputs_of = operator.attrgetter("inputs")


def match(root, layout):
    """The graph behind ``root`` in ``layout``'s order and its leaves, when it is the graph the
    layout was made from up to values (the same keys, the same edges, no node twice), else
    None. What ``linearize(root, cut="seen")`` does besides is done the same way: nodes that
    need no gradient become constants (or are marked as met here), and the constants read are
    brought up to date. One walk that follows the layout's edges and checks in bulk: no
    sorting, no signature built."""
    if layout.key[-1] is not _anomaly():
        return None
    mark = root.serial
    if not root.requires_grad:
        _mark_root(root, mark)
    nodes = [root]
    append = nodes.append
    try:
        for k, j in layout.steps:
            append(nodes[k].inputs[j])
    except IndexError:                          # fewer inputs than in the layout
        return None
    leaves = []
    proxies = None
    for k, edges in layout.leaves:
        node = nodes[k]
        if node.inputs:                         # a leaf there: this one may be a constant
            proxy = None if node.requires_grad else _seen_cut(node, mark)
            if proxy is None:
                return None
            for c, j in edges:
                consumer = nodes[c]
                consumer.inputs = tuple([proxy if i is node else i for i in consumer.inputs])
            nodes[k] = node = proxy
        if node.const is not None and node.const.__class__ is not Witness:
            if proxies is None:
                proxies = []
            proxies.append(node)
        leaves.append(node)
    if list(map(_key_of, nodes)) != layout.keys or list(map(len, map(_inputs_of, nodes))) != layout.counts:
        return None
    for c, j, k in layout.shared:
        if nodes[c].inputs[j] is not nodes[k]:
            return None
    if len(set(nodes)) != len(nodes):           # one node at two positions
        return None
    for k in layout.plain:
        if _seen_cut(nodes[k], mark) is not None:
            return None                         # a constant now: another graph
    if proxies is not None:
        refresh_constants(proxies)
    nodes.reverse()
    return nodes, leaves


class Witness:
    """What a leaf's data was when a constant was computed from it: a private copy of its
    bits (the constant stays valid while the data equals it bit for bit), or, for data
    nothing can write into (a NumPy scalar, an array that is read-only down to its
    memory's owner), the data itself (valid while it stays so: no copy, no comparison).
    ``checked``: the epoch of the last check."""

    __slots__ = ("copy", "frozen", "checked")

    def __init__(self, value):
        if _immutable(value):
            self.frozen, self.copy = value, None
        else:
            self.frozen, self.copy = None, _copy(value)
        self.checked = -1

    def holds(self, value):
        """Whether ``value`` still has the witnessed bits."""
        if self.copy is None:
            return value is self.frozen and _immutable(value)
        return same_bits(value, self.copy)


def _immutable(value):
    if value.__class__ is not np.ndarray:
        return isinstance(value, (np.generic, float, int, complex))
    while value.__class__ is np.ndarray:
        if value.flags.writeable:
            return False
        value = value.base
    return value is None or value.__class__ is bytes


def _copy(value):
    if value.__class__ is np.ndarray:
        return value.copy()
    return np.array(backend.to_numpy(value))      # another library's array: a copy on the host


def same_bits(value, copy):
    """Whether ``value`` holds exactly the bits of ``copy`` (-0.0 is not 0.0; a NaN is itself)."""
    if value.__class__ is not np.ndarray:
        value = backend.to_numpy(value)
    if value.shape != copy.shape or value.dtype != copy.dtype:
        return False
    if value.nbytes % 8 == 0 and value.flags.c_contiguous and copy.flags.c_contiguous and value.size:
        return bool(np.array_equal(value.reshape(-1).view(np.uint64), copy.reshape(-1).view(np.uint64)))
    size = value.dtype.itemsize
    if size in (1, 2, 4, 8) and value.dtype.kind != "V":
        unsigned = _UNSIGNED[size]
        return bool(np.array_equal(value.view(unsigned), copy.view(unsigned)))
    return value.tobytes() == copy.tobytes()


_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


class Constant:
    """What a node that needs no gradient keeps once it is a constant: ``proxy``, the leaf
    that stands for it in later graphs, and what its value was computed from: ``leaves``
    ((leaf, Witness) pairs) and ``inner`` ((proxy, value) pairs: constants it read)."""

    __slots__ = ("node", "proxy", "leaves", "inner", "checked", "misses")

    def __init__(self, node, proxy):
        self.node = node
        self.proxy = proxy
        self.leaves = ()
        self.inner = ()
        self.checked = -1
        self.misses = 0


#: ``Node.const`` of a node that must not become a constant (random, differentiable
#: leaves behind it, or recomputed on every use).
VOLATILE = "volatile"
#: Installed by ``transform.run``: ``constant_of(node)`` -> its proxy leaf, or None (and
#: the node marked VOLATILE); ``refresh_constants(proxies)`` recomputes those out of date.
constant_of = None
refresh_constants = None


_LARGE = 4096
_by_serial = operator.attrgetter("serial")


def differentiable_leaves(root):
    """Leaves behind ``root`` that need a gradient, each once, in creation order."""
    return sorted((n for n in walk(root) if n.op is None and n.requires_grad), key=_by_serial)


def walk(root):
    """Every node behind ``root`` (including it), each once."""
    seen = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        yield node
        stack.extend(node.inputs)


class _CollectorPause:
    """``with collector_paused:``: the garbage collector waits while a graph, a gradient graph
    or a program is built (many small objects, no garbage cycles: the collector would walk them
    again and again). Pauses nest and may overlap across threads: the collector is switched
    off by the first to enter, if it was on, and back on by the last to leave (a check-then-
    disable per caller, interleaved over threads, could leave it off for good)."""

    __slots__ = ()
    _lock = threading.Lock()
    _depth = 0
    _resume = False

    def __enter__(self):
        cls = _CollectorPause
        with cls._lock:
            if cls._depth == 0:
                cls._resume = gc.isenabled()
                gc.disable()
            cls._depth += 1

    def __exit__(self, *exc):
        cls = _CollectorPause
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._resume:
                cls._resume = False
                gc.enable()
        return False


collector_paused = _CollectorPause()
_NO_PAUSE = contextlib.nullcontext()
