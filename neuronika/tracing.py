"""Tracing a Python function of arrays into one cached program (the functional face).

A traced function is called once per *signature*: the structure of its
arguments (nested dicts, lists and tuples), each array's shape and dtype, and
the value of every static argument (bools, strings, None, other hashable
objects, and whatever ``static_argnums`` / ``static_argnames`` mark). Python
ints, floats and complex numbers are values, like arrays: weakly typed scalars
of the program. The call runs the user's function on leaves over the real
arrays, so the graph it builds is the IR; the engine compiles it into one
program that computes the outputs and gradients. Later calls with the same
signature only flatten the arguments, look the signature up and call that
program. By default a trace runs first through the interpreter
(``transform.interpret``: the same templates, the same bits, no code generation)
and is compiled on its ``compile_after``-th run (``neuronika.config``); until then
it keeps its graph (not its arguments' arrays) to compile from. A new static value traces again, but a trace that builds the same
graph reuses the compiled program.

Python control flow on a traced value (``if loss > 0``, ``float(x)``,
``x.item()``, ``range(n)``, a ``while`` on a value) is guarded: the trace records
each value the function read, and a different value makes the function be
traced again (kept beside the first trace, so both branches stay compiled). A
value computed from the data is checked by the program when it computes it; one
computed from Python-number arguments only (``range(n)``, ``if i % 10 == 0``,
a slice ``data[i * b:(i + 1) * b]``) is checked before the program runs, and is
not part of the program's key: traces that differ only there share one program.
"""
from __future__ import annotations

import functools

import numpy as np

from . import backend
from .errors import ArgnumsError, BatchingError, GradientError
from .graph import (ANOMALY, COMPILE, Constant, collector_paused, format_where, leaf, linearize, modes, serial_now,
                    user_line, walk, weak_key, weak_leaf)
from .transform import codegen, families, interpret, loops, run
from .transform.run import constant_value
from .transform.cache import TRACED, program_bytes
from .transform.codegen import Anomaly, Retrace
from .variable import Var, _wrap

_anomaly_now = ANOMALY.get

WEAK = "w"          # signature entry of a Python float argument
WEAK_COMPLEX = "wc"  # signature entry of a Python complex argument
WEAK_INT = "wi"     # signature entry of a Python int argument
SCALARS = (WEAK, WEAK_COMPLEX, WEAK_INT)


def flatten(obj, values, where):
    """Signature entry of one argument; its arrays are appended to ``values``.

    ``where`` locates the argument for an error message (a position, then dict
    keys): it is only formatted, by the caller, if ``Unhashable`` is raised.
    """
    cls = obj.__class__
    if cls is np.ndarray:
        values.append(obj)
        return (obj.shape, obj.dtype)
    if cls is tuple or cls is list:
        return ("t" if cls is tuple else "l",) + tuple(flatten(o, values, where) for o in obj)
    if cls is dict:
        keys = tuple(obj)
        return ("d", keys) + tuple(flatten(obj[k], values, (where, k)) for k in keys)
    entry = _number_entry(obj, cls, values)
    if entry is not None:
        return entry
    if hasattr(obj, "_node"):                       # a Var: its value
        data = obj.data
        values.append(data)
        space = obj._node.space
        return (data.shape, data.dtype) if space is None else (data.shape, obj._node.dtype, space)
    if isinstance(obj, (np.floating, np.complexfloating, np.integer)):
        data = np.asarray(obj)
        values.append(data)
        return (data.shape, data.dtype)
    if backend.foreign(obj):
        # another array library's array: its space keys the program (NumPy's is None, left out)
        space = backend.space_of(obj)
        values.append(obj)
        return (tuple(obj.shape), space.numpy_dtype(obj.dtype), space)
    return static_entry(obj, where)


class NotPlain(Exception):
    """An argument ``flatten_plain`` leaves to ``flatten``."""


def flatten_plain(obj, values):
    """``flatten`` of an argument made of NumPy arrays and Python numbers in lists, tuples and
    dicts only (the same entry); ``NotPlain`` for anything else (a variable, a NumPy scalar,
    another library's array, a static value). ``jit``'s hot path: no variable is ever read."""
    cls = obj.__class__
    if cls is np.ndarray:
        values.append(obj)
        return (obj.shape, obj.dtype)
    # (a container's arrays without a call each: a third less time for a parameter list)
    if cls is list or cls is tuple or cls is dict:
        if cls is dict:
            entries, items = ["d", tuple(obj)], obj.values()
        else:
            entries, items = ["t" if cls is tuple else "l"], obj
        for o in items:
            if o.__class__ is np.ndarray:
                values.append(o)
                entries.append((o.shape, o.dtype))
            else:
                entries.append(flatten_plain(o, values))
        return tuple(entries)
    entry = _number_entry(obj, cls, values)
    if entry is None:
        raise NotPlain
    return entry


def _number_entry(obj, cls, values):
    """The entry of a Python number (a value: appended to ``values``), or None."""
    if cls is float:
        entry = WEAK
    elif cls is int and -2 ** 63 <= obj < 2 ** 63:
        entry = WEAK_INT
    elif cls is complex:
        entry = WEAK_COMPLEX
    else:
        return None
    values.append(obj)
    return entry


def static_entry(obj, where, marked=False):
    """The signature entry of a static argument: its value and its type (``1``, ``1.0`` and
    ``True`` are equal in Python but not to a traced function). ``marked``: the user made it
    static (``static_argnums`` / ``static_argnames``)."""
    try:
        hash(obj)
    except TypeError:
        raise Unhashable(where, obj, marked) from None
    return ("s", obj, _typed(obj))


def _typed(obj):
    cls = obj.__class__
    if cls is tuple:
        return (tuple,) + tuple(_typed(o) for o in obj)
    return cls


class Unhashable(TypeError):
    """A static argument that cannot be part of a signature."""

    def __init__(self, where, obj, marked=False):
        super().__init__(where, obj)
        self.where, self.obj, self.marked = where, obj, marked

    def message(self, name):
        path = self.where
        keys = []
        while isinstance(path, tuple):
            path, key = path
            keys.append(f"[{key!r}]")
        place = f"argument {path}" if isinstance(path, int) else f"argument {path!r}"
        if self.marked:
            return (f"{name}: {place}{''.join(reversed(keys))} is marked static (static_argnums / "
                    f"static_argnames) but is a {type(self.obj).__name__}, which is not hashable; a "
                    f"static argument is part of the cache key: pass a hashable value (a tuple instead "
                    f"of a list), or do not mark it static (arrays and numbers are values)")
        return (f"{name}: {place}{''.join(reversed(keys))} is a {type(self.obj).__name__}, which is "
                f"neither an array (or a dict/list/tuple of arrays) nor hashable, so it cannot be a "
                f"static argument of a traced function; pass arrays, or make it hashable (a tuple "
                f"instead of a list of numbers, say)")


def is_dynamic(entry):
    return (entry.__class__ is str
            or (entry.__class__ is tuple and entry and entry[0].__class__ is tuple))


def unflatten(entry, items, statics=True):
    """Rebuild an argument of signature ``entry`` from an iterator over its arrays;
    its static parts come back as they were (or as None, for a gradient's structure,
    where a Python float's gradient is a Python float, a Python complex's a complex)."""
    if is_dynamic(entry):
        item = next(items)
        if statics or entry.__class__ is tuple:
            return item
        return float(item) if entry == WEAK else complex(item) if entry == WEAK_COMPLEX else None
    tag = entry[0]
    if tag == "s":
        return entry[1] if statics else None
    if tag == "t":
        return tuple(unflatten(e, items, statics) for e in entry[1:])
    if tag == "l":
        return [unflatten(e, items, statics) for e in entry[1:]]
    return {k: unflatten(e, items, statics) for k, e in zip(entry[1], entry[2:])}


def count_arrays(entry):
    if is_dynamic(entry):
        return 1
    if entry[0] == "s":
        return 0
    return sum(count_arrays(e) for e in (entry[2:] if entry[0] == "d" else entry[1:]))


class Tracer:
    """Collects the guards of the trace in progress.

    ``parent`` is the trace this one runs inside (a ``grad`` called within a function
    being traced): each trace is one differentiation level, and its arguments are that
    level's variables. A value of an enclosing level read by this trace must stay a
    variable of that level, so ``trace`` refuses to compile it (``ReadsOuter``).

    A level differentiated as a graph (``compiled=False``: ``grad`` called on variables)
    runs the function on every call, so it keeps no guards: a value it reads that
    depends on an enclosing level is that level's to guard.
    """

    def __init__(self, inputs, parent=None, compiled=True):
        self.inputs = inputs
        self.parent = parent
        self.traced = inputs if parent is None else inputs | parent.traced
        self.guards = []
        self.reads_outer = False
        self.compiled = compiled
        self.whole = False          # a jit's trace: nothing differentiates what it builds

    def depends(self, node):
        """Whether ``node`` depends on an argument of the traced function, or of one it
        runs inside."""
        traced = self.traced
        return any(n in traced for n in walk(node))

    def observe(self, node, kind, value):
        inputs, traced = self.inputs, self.traced
        own = []
        outer = False
        for n in walk(node):
            if n in inputs:
                own.append(n)
            elif n in traced:
                outer = True
        if not self.compiled:
            if outer:
                self.parent.observe(node, kind, value)
            return
        self.reads_outer = self.reads_outer or outer
        if own:
            self.guards.append((node, kind, value, user_line(), own))


class level:
    """Runs a function differentiated as a graph with respect to ``wrt`` as a level of
    its own: converting those variables to NumPy arrays refuses (their gradient would be
    lost), and a ``grad`` inside that reads them builds its result as a graph too."""

    def __init__(self, wrt):
        self.nodes = {w._node for w in wrt}

    def __enter__(self):
        self.previous = modes.tracer
        modes.tracer = Tracer(self.nodes, self.previous, compiled=False)
        return self

    def __exit__(self, *exc):
        modes.tracer = self.previous
        return False


class batch_level(level):
    """Runs a function on one example of a batch (``vmap``): its arguments are placeholders
    without values of their own, so reading a value that depends on them (a Python ``if``,
    ``float(v)``) refuses; a ``grad`` inside builds its result as a graph (which is batched
    after)."""

    def __init__(self, placeholders, name="vmap"):
        self.nodes = set(placeholders)
        self.name = name

    def __enter__(self):
        self.previous = modes.tracer
        modes.tracer = _BatchTracer(self.nodes, self.previous, self.name)
        return self


class _BatchTracer(Tracer):
    def __init__(self, inputs, parent, name):
        super().__init__(inputs, parent, compiled=False)
        self.name = name

    def observe(self, node, kind, value):
        if any(n in self.inputs for n in walk(node)):
            raise BatchingError(
                f"{self.name}: the function reads the value of a batched variable ({kind}() of "
                f"{node.op.name if node.op is not None else 'an argument'}, at "
                f"{format_where(user_line())}); every example has its own value, so Python code "
                f"cannot branch on it: use neuronika.numpy.where, or pass the value with in_axes None")
        super().observe(node, kind, value)


class ReadsOuter(Exception):
    """A function traced inside another trace read a value of the outer one: its results
    must be built as graph nodes of the outer level, not compiled as constants."""


class Trace:
    """One compiled trace: the program and how to call it and read its results.

    ``pins`` and ``precheck`` check, before the program runs, the values the function
    read from its Python-number arguments (``range(n)``, ``if i % 10 == 0``): ``pins``
    (position among the values, kind, value) those read straight off an argument,
    ``precheck`` (program, plan, [(kind, value)]) those computed from such arguments.
    ``reads`` describes every value read, for ``explain``; ``fast``: a call with plain
    array arguments can run the program directly."""

    __slots__ = ("program", "plan", "direct", "grad_slots", "n_outputs", "aux", "closure",
                 "split", "fused", "out_shape", "out_dtype", "zeros", "prefix", "plain", "want_value",
                 "out_tree", "pins", "precheck", "reads", "fast", "nbytes", "pending",
                 "runs", "fast_later", "sites", "program_size", "held_by", "plain_arguments", "binding",
                 "output_specs", "rebuild", "anomaly", "__weakref__")

    def anomaly_error(self, anomaly):
        """The ``AnomalyError`` for an ``Anomaly`` the program raised (``detect_anomaly``):
        it names the op and the user's line that built it."""
        name, where = self.sites[anomaly.index]
        return run.anomaly_error(name, where, anomaly)

    def promote(self):
        """Before a cached run of an interpreted trace (``pending``: what compiles it): count
        the run, and compile when the compile mode says so (``neuronika.config``)."""
        mode, after = COMPILE.get()
        if mode == "never":
            return
        self.runs += 1
        if mode == "always" or self.runs >= after:
            self.compile()

    def compile(self):
        """Swap the interpreted plan for the compiled program (the same results, bit for bit)."""
        pending = self.pending
        if pending is None:
            return
        compile_main, compile_precheck = pending
        program = compile_main()
        if program.__class__ is tuple:       # rolled as it compiled: its leaves are the rolled graph's
            program, leaves = program
            _bind(self, program, leaves, *self.binding)
        elif tuple(program.grad_leaves) != tuple(self.program.grad_leaves):
            raise AssertionError("the compiled program returns other gradients than the interpreted plan")
        if compile_precheck is not None:
            _, plan, expected = self.precheck
            self.precheck = (compile_precheck(), plan, expected)
        self.program = program
        self.pending = None
        self.binding = None
        self.fast = self.fast_later
        # the cache counted the interpreted plan by its graph: count what it compiled to
        size = program_bytes(program)
        delta, self.program_size = size - self.program_size, size
        self.nbytes += delta
        if self.held_by is not None:
            cache, key = self.held_by
            cache = cache()
            if cache is not None:
                cache.resize(key, self, delta)

    def stale(self):
        """True when a name the function read from outside was rebound since the trace."""
        for holder, name, obj, _ in self.closure:
            current = holder.cell_contents if name is None else holder.get(name)
            if current is not obj:
                return True
        return False

    def rebound(self):
        """The name (text) of the first outside name rebound since the trace, or None."""
        for holder, name, obj, label in self.closure:
            try:
                current = holder.cell_contents if name is None else holder.get(name)
            except ValueError:
                current = None
            if current is not obj:
                return label
        return None

    def arguments(self, values):
        if self.direct is not None:
            return list(values) + self.direct if self.direct else values
        return [values[p] if p >= 0 else c if p == -1 else constant_value(c) for p, c in self.plan]

    def check(self, values):
        """Raise ``Retrace`` when a value read from a Python-number argument differs now."""
        for k, kind, expected in self.pins:
            if _CONVERT[kind](values[k]) != expected:
                raise Retrace
        if self.precheck is not None:
            if self.precheck_values(values) != self.precheck[2]:
                raise Retrace

    def precheck_values(self, values):
        program, plan, expected = self.precheck
        try:
            out = program.forward(*[values[p] if p >= 0 else c if p == -1 else constant_value(c)
                                    for p, c in plan])
        except Exception:            # noqa: BLE001 - a value the trace never met: trace again
            return None
        if len(expected) == 1:
            out = (out,)
        return [(kind, _CONVERT[kind](v)) for (kind, _), v in zip(expected, out)]

    def run(self, values):
        """(outputs, gradients): one call of a fused program; for a split program, (its
        forward's outputs, the program: ``program.backward`` takes what it saved)."""
        if self.anomaly is not _anomaly_now():
            raise Retrace           # made in the other detect_anomaly mode: each has its own trace
        if self.pins or self.precheck is not None:
            self.check(values)
        if self.pending is not None:
            self.promote()
        try:
            if self.fused:
                if self.direct is not None:
                    return self.program.forward(*self.prefix, *values, *self.direct)
                return self.program.forward(*self.prefix, *self.arguments(values))
            program = self.program      # the one that ran: its backward reads what it saved
            return program.forward(*self.arguments(values)), program if self.split else ()
        except Anomaly as anomaly:
            raise self.anomaly_error(anomaly) from None


def _item(value):
    return value.item() if hasattr(value, "item") and getattr(value, "size", 1) == 1 else value


_CONVERT = {"bool": lambda v: bool(_item(v)), "int": lambda v: int(_item(v)),
            "float": lambda v: float(_item(v)), "complex": lambda v: complex(_item(v))}


def _watched(obj):
    """Whether a trace keeps ``obj`` (read by name from outside) as a constant: arrays of any
    library, numbers and variables."""
    return isinstance(obj, (np.ndarray, int, float, complex)) or hasattr(obj, "_node") or backend.foreign(obj)


def _closure_snapshot(fn):
    """The arrays and numbers ``fn`` reads by name from closures and globals:
    (holder, name or None for a cell, object, label)."""
    watched = []
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            obj = cell.cell_contents
        except ValueError:
            continue
        if _watched(obj):
            watched.append((cell, None, obj, f"the closure variable {name!r}"))
    for name in code.co_names:
        obj = fn.__globals__.get(name)
        if _watched(obj):
            watched.append((fn.__globals__, name, obj, f"the global {name!r}"))
    return tuple(watched)


def check_differentiable(entry, obj, position, where):
    """Refuse an argument selected by argnums that holds an int or a bool (JAX's rule)."""
    if entry == WEAK_INT or (entry.__class__ is tuple and entry and entry[0] == "s"):
        value = obj if entry == WEAK_INT else entry[1]
        if isinstance(value, (int, np.integer, bool, np.bool_)):
            raise ArgnumsError(
                f"{where}: argnums selects argument {position}, which holds the {type(value).__name__} "
                f"{value!r}; only floating-point values can be differentiated: pass {float(value)!r}, "
                f"or leave it out of argnums")
        return
    if entry.__class__ is not tuple or not entry or entry[0].__class__ is tuple:
        return
    tag = entry[0]
    if tag == "d":
        for key, e in zip(entry[1], entry[2:]):
            check_differentiable(e, obj[key], position, where)
    else:
        for e, o in zip(entry[1:], obj):
            check_differentiable(e, o, position, where)


def _dynamic_kinds(entry):
    if is_dynamic(entry):
        yield entry
    elif entry[0] != "s":
        for e in (entry[2:] if entry[0] == "d" else entry[1:]):
            yield from _dynamic_kinds(e)


def _leaves_for(values, entries, differentiate, where):
    """Leaf nodes over the flattened argument values."""
    nodes = []
    k = 0
    for i, entry in enumerate(entries):
        for _ in range(count_arrays(entry)):
            value = values[k]
            k += 1
            if i in differentiate:
                array = np.asarray(value) if value.__class__ in (float, complex, int) else value
                dtype = numpy_dtype(array)
                if dtype.kind not in "fc":
                    raise ArgnumsError(f"{where}: argnums selects argument {i}, which holds an array of "
                                       f"dtype {dtype}; only floating-point arrays can be "
                                       f"differentiated (leave integer arrays out of argnums)")
                if value.__class__ is float or value.__class__ is complex:
                    # a Python number stays one, weakly typed (``s * x32`` is float32, as in
                    # NumPy and JAX); its gradient comes back as a Python number
                    nodes.append(weak_leaf(value, requires_grad=True))
                else:
                    nodes.append(leaf(array, requires_grad=True))
            elif value.__class__ is float or value.__class__ is complex or value.__class__ is int:
                nodes.append(weak_leaf(value))
            else:
                nodes.append(leaf(value))
    return nodes


def numpy_dtype(array):
    """The NumPy dtype of an array of any library."""
    dtype = array.dtype
    return dtype if isinstance(dtype, np.dtype) else backend.space_of(array).numpy_dtype(dtype)


def to_space(value, space):
    """``value`` (a cotangent the user passed: an array of any library, a list, a number) as
    an array of ``space``."""
    return backend.move(value if backend.foreign(value) else np.asarray(value), space)


_INT_KEY = weak_key("i", False)


class IntArgument(Var):
    """The variable a Python int argument becomes. Where Python or NumPy need the int itself
    (a hash: ``d[i]``, ``i in some_set``; text: ``f"w{i}"``; a NumPy function that converts
    its arguments: ``np.arange(i)``, ``np.full(3, i)``), it reads the value, so a new value
    traces again (a guard), as for ``range(i)``."""

    __slots__ = ()

    def __hash__(self):
        return hash(self.__index__())

    def __str__(self):
        return str(self.__index__())

    def __format__(self, spec):
        return format(self.__index__(), spec)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.__index__(), dtype=dtype)


def _int_argument(node):
    handle = object.__new__(IntArgument)
    handle._node = node
    return handle


def _program(order, leaves, signature, outputs, loss, split, guards, wanted, reaches=None, fold=None):
    """(program, compile): the program for a trace, shared with any earlier trace that built
    the same graph (``transform.cache.TRACED``); ``compile`` is None, or when the compile mode
    says to interpret (``run.compiled_or_interpreted``) the program is an interpreted plan
    and ``compile()`` makes (or finds) the compiled one."""
    leaf_index = {node: k for k, node in enumerate(leaves)}
    mode, after = COMPILE.get()
    interpreting = mode == "never" or mode == "auto" and after > 1
    found = loops.rolled(order, leaves, modes.anomaly, outputs, loss, guards, fold, known_only=interpreting)
    if found is loops.DEFERRED:
        return _deferred(order, leaves, signature, outputs, loss, split, guards, wanted, reaches, fold)
    if found is not None and all(n in leaf_index for n in wanted):
        # an unrolled recurrence, keyed and built as the loop it becomes: a program (and its
        # shape family) that serves every length (a trace retains no gradient by position);
        # constants made at each step are one stacked constant (the leaves change)
        order, outputs, loss, guards, _ = found
        if order.leaves is not None:
            leaves = order.leaves
            leaf_index = {node: k for k, node in enumerate(leaves)}
        signature, reaches = loops.signature(order), None
    elif found is None:
        order = loops.looked_at(order)      # the build does not look for a recurrence again
    options = dict(anomaly=modes.anomaly, outputs=outputs, loss=loss, fused=not split,
                   unit_seed=not split, guards=guards, wrt=wanted)
    key = (signature, tuple(outputs), loss, split, tuple(guards),
           tuple(leaf_index[n] for n in wanted if n in leaf_index))
    return _compiled_or_interpreted(key, order, leaves, options,
                                    families.Member(order, leaves, signature, options, key[1:]),
                                    reaches) + (leaves,)


def _deferred(order, leaves, signature, outputs, loss, split, guards, wanted, reaches, fold):
    """(plan, compile, leaves) for a graph holding a recurrence of a kind never rolled: it runs
    unrolled through the interpreter; ``compile()`` rolls it and gives (program, the rolled
    graph's leaves), which the trace is bound to anew (``Trace.compile``)."""
    plan = interpret.build(loops.looked_at(order), leaves, anomaly=modes.anomaly, outputs=outputs, loss=loss,
                           fused=not split, unit_seed=not split, guards=guards, wrt=wanted, reaches=reaches)

    def compile_rolled():
        token = COMPILE.set(("always", COMPILE.get()[1]))
        try:
            program, _, rolled_leaves = _program(order, leaves, signature, outputs, loss, split, guards,
                                                 wanted, None, fold)
        finally:
            COMPILE.reset(token)
        return program, rolled_leaves

    return plan, compile_rolled, leaves


def _compiled_or_interpreted(key, order, leaves, options, member=None, reaches=None):
    def build():
        return codegen.build(order, leaves, **options)

    def interpreted():
        # ``reaches``: what the tracer worked out already (``codegen._reaching``)
        return interpret.build(order, leaves, reaches=reaches, **options)

    try:
        hash(key)
    except TypeError:                       # an unhashable guard value: no reuse
        mode, after = COMPILE.get()
        if mode == "always" or mode == "auto" and after == 1:
            return build(), None
        return interpreted(), build
    program = run.compiled_or_interpreted(TRACED, key, build, interpreted, member)
    if isinstance(program, interpret.Plan):
        return program, functools.partial(TRACED.get_or_build, key, build, member)
    return program, None


def trace(fn, values, entries, kw_items, differentiate, has_aux, split, where, want_value=True,
          labels=None, external=(), whole=False):
    """Run ``fn`` on leaves over ``values`` and compile what it computed.

    ``entries`` are the positional arguments' signature entries, ``kw_items``
    (name, entry) pairs for the keyword arguments, ``differentiate`` the
    positions of the arguments whose gradients are wanted; ``labels`` names each
    value (``value_labels``) in messages, and constant arrays whose id is in
    ``external`` (the function's closure and globals) do not count in the trace's size.
    ``whole`` (``jit``): no loss; every variable in the function's result (a tree) is an
    output of the program (``flatten_outputs``, read back by ``output_builder``).
    """
    # Building a graph makes many small objects and no garbage cycles: the collector, which
    # would walk the graph again and again, waits until the trace is done (as codegen.build).
    with collector_paused:
        return _trace(fn, values, entries, kw_items, differentiate, has_aux, split, where, want_value,
                      labels, external, whole)


def _trace(fn, values, entries, kw_items, differentiate, has_aux, split, where, want_value, labels,
           external, whole=False):
    all_entries = list(entries) + [e for _, e in kw_items]
    start = serial_now()           # what the function reads that was computed before is a constant
    nodes = _leaves_for(values, all_entries, differentiate, where)
    handles = iter([_int_argument(n) if n.key == _INT_KEY else _wrap(n) for n in nodes])
    args = [unflatten(e, handles) for e in entries]
    kwargs = {name: unflatten(e, handles) for name, e in kw_items}
    tracer = Tracer(set(nodes), modes.tracer)
    tracer.whole = whole
    previous = (modes.tracer, modes.grad_enabled)
    modes.tracer, modes.grad_enabled = tracer, True
    try:
        out = fn(*args, **kwargs)
    except Exception as error:
        _note_int_arguments(error, all_entries, labels, where)
        raise
    finally:
        modes.tracer, modes.grad_enabled = previous

    aux_nodes = []
    aux_entry = None
    out_tree = None
    if whole:
        aux_entry = flatten_outputs(out, aux_nodes, where)
        out = None
    else:
        out, aux_value = split_aux(out, has_aux, where)
        if split:
            out, out_tree = flat_output(out)
        else:
            out = scalar_output(out, where)
        if has_aux:
            aux_values = []
            aux_entry = flatten_aux(aux_value, aux_nodes, aux_values)
    index_of_input = {node: k for k, node in enumerate(nodes)}
    if labels is None:
        labels = [f"value {k}" for k in range(len(nodes))]
    # Values read from Python-number arguments only are checked before the program runs
    # (``Trace.check``); those read from the data, by the program.
    scalar_inputs = {n for n, kind in zip(nodes, _flat_kinds(all_entries))
                     if kind in SCALARS and not n.requires_grad}
    data_guards, pins, computed, reads = [], [], [], []
    for node, kind, value, line, depends in tracer.guards:
        reads.append((kind, value, format_where(line), tuple(labels[index_of_input[n]] for n in depends)))
        if not node.requires_grad and all(n in scalar_inputs for n in depends):
            if node in index_of_input:
                pins.append((index_of_input[node], kind, value))
            else:
                computed.append((node, kind, value))
        else:
            data_guards.append((node, kind, value))
    roots = [] if out is None else [out._node]
    order, leaves, signature = linearize(*roots, *aux_nodes, *[g[0] for g in data_guards], cut=start)
    if tracer.parent is not None:
        outer = tracer.parent.traced
        if tracer.reads_outer or any(n in outer for n in order):
            raise ReadsOuter
    position = {node: i for i, node in enumerate(order)}
    loss = None if out is None else position[out._node]
    outputs = ([loss] if want_value and out is not None else []) + [position[n] for n in aux_nodes]
    differentiable = out is not None and out._node.requires_grad
    guards = [(position[node], kind, value) for node, kind, value in data_guards]
    # Differentiable leaves the function did not get as arguments (a module's
    # parameters it closes over) are constants here: gradients only for arguments.
    wanted = [n for n in nodes if n.requires_grad]
    reaches = codegen._reaching(order, wanted) if differentiable else None
    differentiable = differentiable and out._node in reaches
    program, compile_main, leaves = _program(order, leaves, signature, outputs,
                                             loss if differentiable else None, split, guards, wanted,
                                             reaches, functools.partial(_foldable, index_of_input))

    result = Trace()
    result.program = program
    # where each op was built, to name it when the program finds a NaN (detect_anomaly)
    result.anomaly = modes.anomaly
    result.sites = [(n.op.name if n.op is not None else None, n.where) for n in order] if result.anomaly else None
    result.split = split
    result.fused = not split and differentiable
    result.n_outputs = len(outputs)
    result.output_specs = [(order[p].shape, order[p].dtype) for p in outputs]
    result.rebuild = None               # jit's builder of its results (``output_builder``), made once
    result.want_value = want_value
    result.aux = aux_entry
    result.closure = _closure_snapshot(fn)
    result.out_shape, result.out_dtype = (None, None) if out is None else (out.shape, out.dtype)
    result.out_tree = out_tree
    result.pins = pins
    compile_precheck = None
    if computed:
        result.precheck, compile_precheck = _precheck(computed, index_of_input)
    else:
        result.precheck = None
    # Interpreted (a first run): ``promote`` compiles it when the signature repeats.
    result.pending = None
    if compile_main is not None or compile_precheck is not None:
        result.pending = (compile_main or _compiled(program), compile_precheck)
        # it keeps the graph until it compiles, not the arguments' arrays (the program's
        # code depends on their shapes and dtypes only)
        for node in nodes:
            if node.value.__class__ is np.ndarray:
                node.value = None
    result.runs = 0
    result.fast_later = False
    result.reads = reads
    diff_inputs = [k for k, n in enumerate(nodes) if n.requires_grad]
    result.zeros = [(nodes[k].shape, nodes[k].dtype, nodes[k].space) for k in diff_inputs]
    result.plain_arguments = True
    result.fast = False
    # what a compile that rolls binds anew (kept while pending: the nodes hold no arrays then)
    result.binding = (nodes, index_of_input) if result.pending is not None else None
    _bind(result, program, leaves, nodes, index_of_input)
    if result.fused:
        space = out._node.space
        if space is None:
            unit = np.ones((), out.dtype)
            unit.flags.writeable = False
        else:
            unit = space.asarray(1, out.dtype)
        result.prefix = (unit,)
    else:
        result.prefix = ()
    program_size = program_bytes(program)
    if compile_main is not None:          # counted as what it compiles to (about, by node)
        program_size += _BYTES_PER_NODE * len(order)
    result.nbytes = _TRACE_BYTES + program_size + _constant_bytes(result.plan, external)
    result.program_size = program_size
    result.held_by = None        # (cache, key), set by the cache that keeps it
    return result


#: a compiled program's estimated bytes per node of its graph (``program_bytes`` of the source)
_BYTES_PER_NODE = 1200


def _compiled(program):
    return lambda: program


_TRACE_BYTES = 1024


def _foldable(index_of_input, node):
    """Whether a leaf is a constant of the trace (not an argument, nor computed from outside
    variables): rolling a loop may stack such numbers, one per step, into one constant, and
    make one leaf of an array read at every step."""
    return (node not in index_of_input and not node.requires_grad
            and node.const.__class__ is not Constant and node.value is not None)


def _bind(result, program, leaves, nodes, index_of_input):
    """Set what a call of trace ``result`` passes to ``program`` (a graph over ``leaves``) and
    where each differentiated argument's gradient comes from in what it returns."""
    result.plan = [_plan_entry(n, index_of_input) for n in leaves]
    inputs_first = [p for p, _ in result.plan[:len(nodes)]]
    if inputs_first == list(range(len(nodes))) and all(p == -1 for p, _ in result.plan[len(nodes):]):
        result.direct = [c for _, c in result.plan[len(nodes):]]
    else:
        result.direct = None
    # Where each differentiated input's gradient comes from (None: it does not reach the output).
    from_program = {index_of_input[leaves[p]]: k for k, p in enumerate(program.grad_leaves)}
    diff_inputs = [k for k, n in enumerate(nodes) if n.requires_grad]
    result.grad_slots = [from_program.get(k) for k in diff_inputs]
    # Every wanted gradient comes straight from the program, in order: no re-packing.
    result.plain = result.grad_slots == list(range(len(diff_inputs))) and result.plain_arguments
    fast = (result.plain and not result.closure and result.direct is not None
            and not result.pins and result.precheck is None)
    if result.pending is None:
        result.fast = fast
    else:
        result.fast_later = fast


def _plan_entry(node, index_of_input):
    """Where a leaf's value comes from on each call: an argument (its position), a constant
    array (-1, the array), or a constant computed from outside variables (-2, its leaf:
    checked on each call, computed again if the variables behind it changed)."""
    if node in index_of_input:
        return index_of_input[node], None
    if node.const.__class__ is Constant:
        return -2, node
    return -1, node.value


def _constant_bytes(plan, external):
    """Bytes of the constant arrays a trace keeps that its function does not hold anyway."""
    total = 0
    for p, c in plan:
        if p < 0 and c.__class__ is np.ndarray:
            base = c
            while base is not None and id(base) not in external:
                base = getattr(base, "base", None)
            if base is None:
                total += c.nbytes
    return total


def _precheck(computed, index_of_input):
    """(program, plan, [(kind, value)]): the values read that were computed from Python-number
    arguments, computed again from the new ones before the trace's program runs."""
    roots = [node for node, _, _ in computed]
    order, leaves, signature = linearize(*roots)
    position = {node: i for i, node in enumerate(order)}
    outputs = [position[n] for n in roots]

    program, compile_ = _compiled_or_interpreted(("precheck", signature, tuple(outputs)), order, leaves,
                                                 dict(anomaly=False, outputs=outputs))
    plan = [_plan_entry(n, index_of_input) for n in leaves]
    return (program, plan, [(kind, value) for _, kind, value in computed]), compile_


def _flat_kinds(entries):
    kinds = []
    for entry in entries:
        kinds.extend(_dynamic_kinds(entry))
    return kinds


def value_labels(entries, kw_items, params=()):
    """A name for each flattened value, for messages: ``argument 1 ('i')``,
    ``argument 0 ('params')['w']``, ``argument 'scale'``."""
    labels = []
    for i, entry in enumerate(entries):
        name = f"argument {i} ({params[i]!r})" if i < len(params) else f"argument {i}"
        _labels(entry, name, labels)
    for key, entry in kw_items:
        _labels(entry, f"argument {key!r}", labels)
    return labels


def _labels(entry, name, into):
    if is_dynamic(entry):
        into.append(name)
        return
    tag = entry[0]
    if tag == "s":
        return
    if tag == "d":
        for key, e in zip(entry[1], entry[2:]):
            _labels(e, f"{name}[{key!r}]", into)
        return
    for k, e in enumerate(entry[1:]):
        _labels(e, f"{name}[{k}]", into)


def _note_int_arguments(error, entries, labels, where):
    """An error while tracing a function given Python ints: say that they are values now."""
    about_a_variable = isinstance(error, (TypeError, KeyError, GradientError)) or (
        isinstance(error, (ValueError, IndexError)) and ("Var(" in str(error) or "IntArgument(" in str(error)))
    if isinstance(error, ArgnumsError) or not about_a_variable:
        return
    ints = [label for label, kind in zip(labels or (), _flat_kinds(entries)) if kind == WEAK_INT]
    if not ints or any("static_argnums" in note for note in getattr(error, "__notes__", ())):
        return
    error.add_note(
        f"neuronika: {where} passes Python ints to the function as values (0-dim integer "
        f"variables), as JAX does: {', '.join(ints)}; if the function needs one as a Python int "
        f"(a shape, an axis, a dict key), mark it static: {where}(f, static_argnums=...) or "
        f"static_argnames=...")


# ---- why a call missed: what changed, in words (``explain``, the retrace warning) ---------------

def describe_reads(old, new):
    """(text, hint): the first value read by the function that differs between an earlier
    trace's reads and a new one's (``Trace.reads``)."""
    if new is not None:
        for before, now in zip(old, new):
            if before[1] != now[1] or before[0] != now[0]:
                kind, value, where, depends = now
                return (f"the Python {before[0]} it read at {where} ({_from(depends)}) was "
                        f"{before[1]!r} and is now {value!r}", _read_hint(depends))
        if len(new) != len(old):
            return ("it read other values from its arguments than in the earlier trace "
                    f"({len(old)} then, {len(new)} now)", _read_hint(()))
    return ("a value it read from its arguments (Python control flow, float(), int(), an index) "
            "differs from the earlier traces'", _read_hint(()))


def _from(depends):
    if not depends:
        return "from no argument"
    shown = ", ".join(depends[:3]) + (", ..." if len(depends) > 3 else "")
    return f"computed from {shown}"


def _read_hint(depends):
    return ("each branch of Python control flow on a traced value, and each value read as a Python "
            "number (range(n), a shape, an index into a NumPy array), is a trace of its own: "
            "compare variables instead of Python numbers where you can (a gather x[i] needs no "
            "trace per i), or mark an argument that selects the program static (static_argnums)")


def _split(key):
    if key.__class__ is tuple and len(key) == 3 and key[2] == "kw" and key[1].__class__ is tuple \
            and key[0].__class__ is tuple and all(e.__class__ is tuple and len(e) == 2 for e in key[1]):
        return key[0], key[1]
    return key, ()


def describe_change(keys, key, params=()):
    """(text, hint): how signature ``key`` differs from the closest of ``keys`` (cached
    signatures, most recent last), argument by argument."""
    entries, kw_items = _split(key)
    best = None
    for old in reversed(keys):
        old_entries, old_kw = _split(old)
        changes = []
        if len(old_entries) != len(entries):
            changes.append(f"{len(entries)} positional arguments (was {len(old_entries)})")
        for i, (a, b) in enumerate(zip(old_entries, entries)):
            name = f"argument {i} ({params[i]!r})" if i < len(params) else f"argument {i}"
            _diff(a, b, name, changes)
        old_kw, new_kw = dict(old_kw), dict(kw_items)
        for k in new_kw.keys() - old_kw.keys():
            changes.append(f"keyword argument {k!r} given (it was not)")
        for k in old_kw.keys() - new_kw.keys():
            changes.append(f"keyword argument {k!r} not given (it was)")
        for k in new_kw.keys() & old_kw.keys():
            _diff(old_kw[k], new_kw[k], f"argument {k!r}", changes)
        if best is None or len(changes) < len(best):
            best = changes
    if not best:
        return ("its signature was not in the cache", "")
    text = "; ".join(best[:3]) + (f"; and {len(best) - 3} more changes" if len(best) > 3 else "")
    if any("static" in c for c in best):
        hint = ("a static argument (a bool, a string, or one marked static_argnums) makes one trace "
                "per value: pass a value that changes as an array or a number instead")
    elif any("shape" in c for c in best):
        hint = ("each new shape is a new program: keep shapes fixed (pad, or bucket variable "
                "lengths into a few sizes)")
    else:
        hint = "each new structure, shape or dtype of the arguments is a new trace"
    return text, hint


def _describe(entry):
    if entry == WEAK:
        return "a Python float"
    if entry == WEAK_INT:
        return "a Python int"
    if entry == WEAK_COMPLEX:
        return "a Python complex"
    if entry[0].__class__ is tuple:
        return f"an array of shape {entry[0]} and dtype {entry[1]}"
    tag = entry[0]
    if tag == "s":
        text = repr(entry[1])
        return f"the static value {text if len(text) <= 40 else text[:37] + '...'}"
    if tag == "d":
        return f"a dict with keys {list(entry[1])}"
    return f"a {'tuple' if tag == 't' else 'list'} of {len(entry) - 1}"


def _diff(old, new, name, into):
    if old == new:
        return
    if is_dynamic(old) and is_dynamic(new) and old.__class__ is tuple and new.__class__ is tuple:
        if old[0] != new[0]:
            into.append(f"{name}: shape {old[0]} -> {new[0]}")
        if old[1] != new[1]:
            into.append(f"{name}: dtype {old[1]} -> {new[1]}")
        return
    if old.__class__ is tuple and new.__class__ is tuple and not is_dynamic(old) and not is_dynamic(new):
        if old[0] == new[0] == "s":
            change = f"{old[1]!r} -> {new[1]!r}"
            if old[1] == new[1]:
                change = f"{type(old[1]).__name__} {old[1]!r} -> {type(new[1]).__name__} {new[1]!r}"
            into.append(f"{name}: static value {change if len(change) <= 80 else 'changed'}")
            return
        if old[0] == new[0] and old[0] in "tl" and len(old) == len(new):
            for k, (a, b) in enumerate(zip(old[1:], new[1:])):
                _diff(a, b, f"{name}[{k}]", into)
            return
        if old[0] == new[0] == "d" and old[1] == new[1]:
            for key, a, b in zip(old[1], old[2:], new[2:]):
                _diff(a, b, f"{name}[{key!r}]", into)
            return
    into.append(f"{name}: {_describe(old)} -> {_describe(new)}")


def split_aux(out, has_aux, where):
    """(value, aux) of a function's result; aux is None without has_aux."""
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise GradientError(f"{where}: has_aux=True needs the function to return a pair "
                            f"(value, aux), got {type(out).__name__}")
    return out


def as_output(out):
    """A function's result as a variable (a constant if it computed a plain value; a list
    holding variables is stacked, as ``numpy.asarray`` would)."""
    if isinstance(out, Var):
        return out
    from .numpy._core import holds_var, var_of
    if holds_var(out):
        return var_of(out, name="the function's result")
    return _wrap(leaf(np.asarray(out)))


class OutputTree:
    """Where the parts of a function's structured result (a tuple, list or dict of arrays,
    nested) lie in the one flat vector ``flat_output`` made of them."""

    __slots__ = ("tree", "shapes", "dtypes", "stops", "dtype")

    def __init__(self, tree, shapes, dtypes, dtype):
        self.tree, self.shapes, self.dtypes, self.dtype = tree, shapes, dtypes, dtype
        stops, total = [], 0
        for shape in shapes:
            total += int(np.prod(shape, dtype=np.int64))
            stops.append(total)
        self.stops = stops

    def unflatten(self, flat):
        """The value of the result: the parts of ``flat`` (NumPy), each in its own dtype."""
        parts = np.split(flat, self.stops[:-1]) if self.stops else []
        arrays = []
        for part, shape, dtype in zip(parts, self.shapes, self.dtypes):
            if part.dtype.kind == "c" and dtype.kind != "c":
                part = part.real
            arrays.append(part.reshape(shape).astype(dtype, copy=False))
        return rebuild_tree(self.tree, iter(arrays))

    def flatten(self, cotangent, where):
        """A cotangent with the result's structure as one flat array, checked part by part."""
        parts = []
        if not same_structure(tree_of(cotangent, parts), self.tree):
            raise GradientError(f"{where}: the cotangent's structure does not match the function's "
                                f"result (a {type(cotangent).__name__}, expected the same nesting of "
                                f"tuples, lists and dicts as the result)")
        flat = []
        for k, (part, shape, dtype) in enumerate(zip(parts, self.shapes, self.dtypes)):
            part = np.asarray(part)
            if part.shape != shape:
                raise GradientError(f"{where}: part {k} of the cotangent has shape {part.shape} but "
                                    f"that part of the output has shape {shape}")
            if part.dtype.kind == "c" and dtype.kind != "c":
                raise GradientError(f"{where}: a complex cotangent for part {k} of the output, of "
                                    f"dtype {dtype}; pass a real cotangent")
            flat.append(part.reshape(-1).astype(self.dtype, copy=False))
        return np.concatenate(flat) if flat else np.zeros(0, self.dtype)


def tree_of(obj, parts):
    """The structure of a (nested) tuple, list or dict; its other values are appended to
    ``parts``. A named tuple (``EighResult``, ...) keeps its class, for ``rebuild_tree``."""
    if isinstance(obj, tuple):
        cls = obj.__class__
        return ("t", tuple(tree_of(o, parts) for o in obj), cls if hasattr(cls, "_fields") else None)
    cls = obj.__class__
    if cls is list:
        return ("l", tuple(tree_of(o, parts) for o in obj))
    if cls is dict:
        return ("d", tuple(obj), tuple(tree_of(obj[k], parts) for k in obj))
    parts.append(obj)
    return ("a",)


def same_structure(a, b):
    """Equal structures, a named tuple matching a plain tuple of the same length."""
    if a[0] != b[0]:
        return False
    if a[0] == "a":
        return True
    if a[0] == "d" and a[1] != b[1]:
        return False
    children_a, children_b = (a[2], b[2]) if a[0] == "d" else (a[1], b[1])
    return len(children_a) == len(children_b) and all(map(same_structure, children_a, children_b))


def rebuild_tree(tree, items):
    """The structure ``tree`` with its values taken from ``items`` in order."""
    tag = tree[0]
    if tag == "a":
        return next(items)
    if tag == "d":
        return {k: rebuild_tree(t, items) for k, t in zip(tree[1], tree[2])}
    rebuilt = [rebuild_tree(t, items) for t in tree[1]]
    if tag == "l":
        return rebuilt
    return tree[2](*rebuilt) if tree[2] is not None else tuple(rebuilt)


def is_structured(out):
    return isinstance(out, tuple) or out.__class__ in (list, dict)


def flat_output(out):
    """``(variable, tree)``: a function's result as one variable; a tuple, list or dict of
    arrays (nested) becomes the concatenation of its raveled parts, in their common dtype,
    with ``tree`` (an ``OutputTree``) to take it apart; ``tree`` is None for one array."""
    if not is_structured(out):
        return as_output(out), None
    from .numpy import concatenate, ravel
    from .numpy._core import var_of
    parts = []
    tree = tree_of(out, parts)
    parts = [var_of(p, name="the function's result") for p in parts]
    dtypes = [p.dtype for p in parts]
    dtype = np.result_type(*dtypes) if parts else np.dtype(np.float64)
    flat = [ravel(p) for p in parts]
    flat = [f if f.dtype == dtype else f.astype(dtype) for f in flat]
    if not flat:
        var = _wrap(leaf(np.zeros(0, dtype)))
    else:
        var = flat[0] if len(flat) == 1 else concatenate(flat)
    return var, OutputTree(tree, [p.shape for p in parts], dtypes, dtype)


def scalar_output(out, where):
    """The result of a function to differentiate: one element, as a 0-dim variable."""
    out = as_output(out)
    if out.size != 1:
        raise GradientError(f"{where}: the function must return a scalar (one element) to be "
                            f"differentiated, got shape {out.shape}; use neuronika.vjp or "
                            f"neuronika.jacobian for non-scalar outputs")
    if out.dtype.kind not in "fc":
        raise TypeError(f"{where}: the function returned a value of dtype {out.dtype} (a "
                        f"{'comparison or test' if out.dtype.kind == 'b' else 'count or index'}), "
                        f"which has no gradient; only float and complex outputs can be "
                        f"differentiated (convert with .astype(float) if a zero gradient is meant)")
    return out if out.shape == () else out.reshape(())


def flatten_aux(obj, nodes, values):
    """Signature of the aux output: Vars become outputs of the program, the rest is kept as is."""
    if hasattr(obj, "_node"):
        nodes.append(obj._node)
        return ("v",)
    if isinstance(obj, (tuple, list)):
        return ("t" if isinstance(obj, tuple) else "l",) + tuple(flatten_aux(o, nodes, values) for o in obj)
    if isinstance(obj, dict):
        return ("d", tuple(obj)) + tuple(flatten_aux(obj[k], nodes, values) for k in obj)
    return ("s", obj)


def rebuild_aux(entry, items, as_is=False):
    """The aux output of signature ``entry`` over its values from ``items``: arrays (NumPy
    scalars made arrays), or ``as_is`` (variables)."""
    tag = entry[0]
    if tag == "v":
        value = next(items)
        if as_is or value.__class__ is np.ndarray or backend.foreign(value):
            return value
        return np.asarray(value)
    if tag == "s":
        return entry[1]
    if tag == "t":
        return tuple(rebuild_aux(e, items, as_is) for e in entry[1:])
    if tag == "l":
        return [rebuild_aux(e, items, as_is) for e in entry[1:]]
    return {k: rebuild_aux(e, items, as_is) for k, e in zip(entry[1], entry[2:])}


def flatten_outputs(obj, nodes, where, path="the result"):
    """Structure of a jitted function's result (``trace(whole=True)``): each variable in it
    becomes an output of the program (appended to ``nodes``); arrays and numbers it computed
    without the arguments are constants of the trace."""
    if hasattr(obj, "_node"):
        nodes.append(obj._node)
        return ("v", obj._node.shape == ())
    cls = obj.__class__
    if isinstance(obj, tuple):
        return ("t", cls if hasattr(cls, "_fields") else None,
                tuple(flatten_outputs(o, nodes, where, f"{path}[{k}]") for k, o in enumerate(obj)))
    if cls is list:
        return ("l", tuple(flatten_outputs(o, nodes, where, f"{path}[{k}]") for k, o in enumerate(obj)))
    if cls is dict:
        return ("d", tuple(obj), tuple(flatten_outputs(v, nodes, where, f"{path}[{k!r}]")
                                      for k, v in obj.items()))
    if cls is np.ndarray:
        return ("c", obj.copy())
    if obj is None or isinstance(obj, (bool, int, float, complex, str, np.generic)) or backend.foreign(obj):
        return ("s", obj)
    raise TypeError(f"{where}: {path} is a {cls.__name__}; a jitted function returns arrays, numbers, "
                    f"strings, None, and tuples, lists and dicts of them")


def output_builder(entry):
    """A function of the program's outputs (a tuple) that rebuilds a jitted function's result
    (``flatten_outputs``' structure), written once per trace as one Python expression: a 0-dim
    output comes back as an array (NumPy's reductions give scalars), a constant array as a copy."""
    constants = []
    text = output_expression(entry, constants)
    return eval(compile(f"lambda o: {text}", "<jit outputs>", "eval"), {"K": constants, "A": _as_array})


def output_expression(entry, constants, single=False):
    """``output_builder``'s expression of the outputs ``o`` (with ``single``: ``o`` is the one
    output itself, not a tuple); constants are appended to ``constants`` (read as ``K``),
    and ``A`` is ``_as_array``."""
    position = [0]

    def constant(obj):
        constants.append(obj)
        return f"K[{len(constants) - 1}]"

    def expression(e):
        tag = e[0]
        if tag == "v":
            k = position[0]
            position[0] += 1
            out = "o" if single else f"o[{k}]"
            return f"A({out})" if e[1] else out
        if tag == "s":
            return constant(e[1])
        if tag == "c":
            return f"{constant(e[1])}.copy()"
        if tag == "d":
            return "{" + ", ".join(f"{constant(k)}: {expression(c)}" for k, c in zip(e[1], e[2])) + "}"
        items = [expression(c) for c in (e[1] if tag == "l" else e[2])]
        if tag == "l":
            return "[" + ", ".join(items) + "]"
        if e[1] is not None:
            return f"{constant(e[1])}(" + ", ".join(items) + ")"
        return "(" + "".join(f"{i}, " for i in items) + ")"

    return expression(entry)


_STATIC_TYPES = (bool, int, float, complex, str, type(None))


def _plain_static(typed):
    """Whether a static value of this ``_typed`` compares by ``==`` as the signature does:
    numbers, strings, None, and tuples of them."""
    if typed.__class__ is tuple:
        return all(_plain_static(t) for t in typed[1:])
    return typed in _STATIC_TYPES


def plain_guard(key, constants):
    """Lines (``return MISS`` on a mismatch) that check a call's arguments ``args`` against
    ``key``, a signature of ``flatten_plain`` entries (and static values: numbers, strings,
    None and tuples of them, compared by type and ``==``), and unpack its values; and the
    names of the values, in ``flatten_plain``'s order. The same acceptance as the signature
    with the key compared, less what ``dtype is not`` refuses (a dtype equal to the key's but
    another object: the caller's general path takes it). ``NotPlain`` for a key with another
    kind of static value."""
    lines, names = [], []
    count = [0]

    def constant(obj):
        constants.append(obj)
        return f"K[{len(constants) - 1}]"

    def fresh():
        count[0] += 1
        return f"a{count[0]}"

    def unpack(parts, source):
        if not parts:
            return
        lines.append(f"{', '.join(parts)}{',' if len(parts) == 1 else ''} = {source}")

    def check(name, entry):
        if entry.__class__ is tuple and entry and entry[0] == "s":     # a static value (static_entry)
            _, value, typed = entry
            if not _plain_static(typed):
                raise NotPlain
            test = f"{name}.__class__ is not {constant(typed)}" if typed.__class__ is type \
                else f"typed({name}) != {constant(typed)}"
            lines.append(f"if {test} or {name} != {constant(value)}: return MISS")
            return
        if entry.__class__ is str:
            if entry == WEAK:
                lines.append(f"if {name}.__class__ is not float: return MISS")
            elif entry == WEAK_COMPLEX:
                lines.append(f"if {name}.__class__ is not complex: return MISS")
            elif entry == WEAK_INT:
                lines.append(f"if {name}.__class__ is not int or not {-2 ** 63} <= {name} < {2 ** 63}: "
                             f"return MISS")
            else:
                raise ValueError(f"no guard for the entry {entry!r}")
            names.append(name)
            return
        tag = entry[0]
        if tag.__class__ is not str:                     # an array: (shape, dtype)
            shape, dtype = entry
            lines.append(f"if {name}.__class__ is not ndarray or {name}.shape != {shape!r} "
                         f"or {name}.dtype is not {constant(dtype)}: return MISS")
            names.append(name)
            return
        if tag == "d":
            keys, items = entry[1], entry[2:]
            lines.append(f"if {name}.__class__ is not dict or tuple({name}) != {constant(keys)}: return MISS")
            parts = [fresh() for _ in items]
            for part, k in zip(parts, keys):
                lines.append(f"{part} = {name}[{constant(k)}]")
        else:
            items = entry[1:]
            kind = "tuple" if tag == "t" else "list"
            lines.append(f"if {name}.__class__ is not {kind} or len({name}) != {len(items)}: return MISS")
            parts = [fresh() for _ in items]
            unpack(parts, name)
        for part, item in zip(parts, items):
            check(part, item)

    lines.append(f"if len(args) != {len(key)}: return MISS")
    top = [fresh() for _ in key]
    unpack(top, "args")
    for name, entry in zip(top, key):
        check(name, entry)
    return lines, names


def _as_array(value):
    cls = value.__class__
    if cls is np.ndarray:
        return value
    if issubclass(cls, np.generic):            # a NumPy scalar: what reductions give
        return np.asarray(value)
    return value if backend.foreign(value) else np.asarray(value)
