"""Tracing a Python function of arrays into one cached program (the functional face).

A traced function is called once per *signature*: the structure of its
arguments (nested dicts, lists and tuples), each array's shape and dtype, and
the value of every static argument (ints, bools, strings, ...). The call runs
the user's function on leaves over the real arrays, so the graph it builds is
the IR; the engine compiles it into one program that computes the outputs and
gradients. Later calls with the same signature only flatten the arguments, look
the signature up and call that program. A new static value (an iteration number)
traces again, but a trace that builds the same graph reuses the compiled program.

Python control flow on a traced value (``if loss > 0``, ``float(x)``,
``x.item()``, a ``while`` on a value) is guarded: the trace records each value
the function read, the program checks it when it computes it, and a different
value makes the function be traced again (kept beside the first trace, so both
branches stay compiled).
"""
from __future__ import annotations


import numpy as np

from .errors import ArgnumsError, GradientError
from .graph import leaf, linearize, modes, walk, weak_leaf
from .transform import codegen
from .transform.cache import TRACED
from .variable import Var, _wrap

WEAK = "w"          # signature entry of a Python float argument
WEAK_COMPLEX = "wc"  # signature entry of a Python complex argument


def flatten(obj, values, where):
    """Signature entry of one argument; its arrays are appended to ``values``.

    ``where`` locates the argument for an error message (a position, then dict
    keys): it is only formatted, by the caller, if ``Unhashable`` is raised.
    """
    cls = obj.__class__
    if cls is np.ndarray:
        values.append(obj)
        return (obj.shape, obj.dtype)
    if cls is float:
        values.append(obj)
        return WEAK
    if cls is complex:
        values.append(obj)
        return WEAK_COMPLEX
    if cls is tuple or cls is list:
        return ("t" if cls is tuple else "l",) + tuple(flatten(o, values, where) for o in obj)
    if cls is dict:
        keys = tuple(obj)
        return ("d", keys) + tuple(flatten(obj[k], values, (where, k)) for k in keys)
    if hasattr(obj, "_node"):                       # a Var: its value
        data = obj.data
        values.append(data)
        return (data.shape, data.dtype)
    if isinstance(obj, (np.floating, np.complexfloating)):
        data = np.asarray(obj)
        values.append(data)
        return (data.shape, data.dtype)
    try:
        hash(obj)
    except TypeError:
        raise Unhashable(where, obj) from None
    return ("s", obj)


class Unhashable(TypeError):
    """A static argument that cannot be part of a signature."""

    def __init__(self, where, obj):
        super().__init__(where, obj)
        self.where, self.obj = where, obj

    def message(self, name):
        path = self.where
        keys = []
        while isinstance(path, tuple):
            path, key = path
            keys.append(f"[{key!r}]")
        place = f"argument {path}" if isinstance(path, int) else f"argument {path!r}"
        return (f"{name}: {place}{''.join(reversed(keys))} is a {type(self.obj).__name__}, which is "
                f"neither an array (or a dict/list/tuple of arrays) nor hashable, so it cannot be a "
                f"static argument of a traced function; pass arrays, or make it hashable (a tuple "
                f"instead of a list of numbers, say)")


def is_dynamic(entry):
    return (entry == WEAK or entry == WEAK_COMPLEX
            or (entry.__class__ is tuple and entry and entry[0].__class__ is tuple))


def unflatten(entry, items, statics=True):
    """Rebuild an argument of signature ``entry`` from an iterator over its arrays;
    its static parts come back as they were (or as None, for a gradient's structure,
    where a Python float's gradient is a Python float, a Python complex's a complex)."""
    if is_dynamic(entry):
        item = next(items)
        if statics or entry.__class__ is tuple:
            return item
        return float(item) if entry == WEAK else complex(item)
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

    def depends(self, node):
        """Whether ``node`` depends on an argument of the traced function, or of one it
        runs inside."""
        traced = self.traced
        return any(n in traced for n in walk(node))

    def observe(self, node, kind, value):
        inputs, traced = self.inputs, self.traced
        own = outer = False
        for n in walk(node):
            if n in inputs:
                own = True
            elif n in traced:
                outer = True
        if not self.compiled:
            if outer:
                self.parent.observe(node, kind, value)
            return
        self.reads_outer = self.reads_outer or outer
        if own:
            self.guards.append((node, kind, value))


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


class ReadsOuter(Exception):
    """A function traced inside another trace read a value of the outer one: its results
    must be built as graph nodes of the outer level, not compiled as constants."""


class Trace:
    """One compiled trace: the program and how to call it and read its results."""

    __slots__ = ("program", "plan", "direct", "grad_slots", "n_outputs", "aux", "closure",
                 "split", "fused", "out_shape", "out_dtype", "zeros", "prefix", "plain", "want_value",
                 "floats", "out_tree")

    def stale(self):
        """True when a name the function read from outside was rebound since the trace."""
        for holder, name, obj in self.closure:
            current = holder.cell_contents if name is None else holder.get(name)
            if current is not obj:
                return True
        return False

    def arguments(self, values):
        if self.direct is not None:
            return list(values) + self.direct if self.direct else values
        return [values[p] if p >= 0 else c for p, c in self.plan]

    def run(self, values):
        """(outputs, gradients): one call of a fused program, or a split program's forward."""
        if self.floats:
            values = list(values)
            for k in self.floats:
                values[k] = np.asarray(values[k])     # float64 (complex128 for a complex)
        if self.fused:
            if self.direct is not None:
                return self.program.forward(*self.prefix, *values, *self.direct)
            return self.program.forward(*self.prefix, *self.arguments(values))
        return self.program.forward(*self.arguments(values)), ()


def _closure_snapshot(fn):
    """The arrays and numbers ``fn`` reads by name from closures and globals."""
    watched = []
    code = getattr(fn, "__code__", None)
    if code is None:
        return ()
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            obj = cell.cell_contents
        except ValueError:
            continue
        if isinstance(obj, (np.ndarray, int, float, complex)) or hasattr(obj, "_node"):
            watched.append((cell, None, obj))
    for name in code.co_names:
        obj = fn.__globals__.get(name)
        if isinstance(obj, (np.ndarray, int, float, complex)) or hasattr(obj, "_node"):
            watched.append((fn.__globals__, name, obj))
    return tuple(watched)


def check_differentiable(entry, position, where):
    """Refuse an argument selected by argnums that holds an int or a bool (JAX's rule)."""
    if entry.__class__ is not tuple or not entry or entry[0].__class__ is tuple or entry == WEAK:
        return
    tag = entry[0]
    if tag == "s":
        value = entry[1]
        if isinstance(value, (int, np.integer, bool, np.bool_)):
            raise ArgnumsError(
                f"{where}: argnums selects argument {position}, which holds the {type(value).__name__} "
                f"{value!r}; only floating-point values can be differentiated: pass {float(value)!r}, "
                f"or leave it out of argnums")
        return
    for e in (entry[2:] if tag == "d" else entry[1:]):
        check_differentiable(e, position, where)


def float_positions(entries, differentiate):
    """Positions, among the flattened values, of the Python floats (and complex numbers) being
    differentiated (passed to the program as 0-d float64 / complex128 arrays)."""
    positions = []
    k = 0
    for i, entry in enumerate(entries):
        for kind in _dynamic_kinds(entry):
            if (kind == WEAK or kind == WEAK_COMPLEX) and i in differentiate:
                positions.append(k)
            k += 1
    return positions


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
                array = np.asarray(value) if value.__class__ in (float, complex) else value
                if array.dtype.kind not in "fc":
                    raise ArgnumsError(f"{where}: argnums selects argument {i}, which holds an array of "
                                       f"dtype {array.dtype}; only floating-point arrays can be "
                                       f"differentiated (leave integer arrays out of argnums)")
                nodes.append(leaf(array, requires_grad=True))
            elif value.__class__ is float:
                nodes.append(weak_leaf(value))
            elif value.__class__ is complex:
                nodes.append(_weak_complex_leaf(value))
            else:
                nodes.append(leaf(value))
    return nodes


def _weak_complex_leaf(value):
    """A Python complex argument, typed weakly like a Python float (``weak_leaf``):
    ``x32 * 1j`` is complex64."""
    node = leaf(np.complex128(value))
    node.value = value
    node.key = ("weak", "complex")
    return node


def _program(order, leaves, signature, outputs, loss, split, guards, wanted):
    """The compiled program for a trace, shared with any earlier trace that built the same
    graph (``transform.cache.TRACED``)."""
    def build():
        return codegen.build(order, leaves, anomaly=modes.anomaly, outputs=outputs, loss=loss,
                             fused=not split, unit_seed=not split, guards=guards, wrt=wanted)

    leaf_index = {node: k for k, node in enumerate(leaves)}
    key = (signature, tuple(outputs), loss, split, tuple(guards),
           tuple(leaf_index[n] for n in wanted if n in leaf_index))
    try:
        hash(key)
    except TypeError:                       # an unhashable guard value: no reuse
        return build()
    return TRACED.get_or_build(key, build)


def trace(fn, values, entries, kw_items, differentiate, has_aux, split, where, want_value=True):
    """Run ``fn`` on leaves over ``values`` and compile what it computed.

    ``entries`` are the positional arguments' signature entries, ``kw_items``
    (name, entry) pairs for the keyword arguments, ``differentiate`` the
    positions of the arguments whose gradients are wanted.
    """
    nodes = _leaves_for(values, list(entries) + [e for _, e in kw_items], differentiate, where)
    handles = iter([_wrap(n) for n in nodes])
    args = [unflatten(e, handles) for e in entries]
    kwargs = {name: unflatten(e, handles) for name, e in kw_items}
    tracer = Tracer(set(nodes), modes.tracer)
    previous = (modes.tracer, modes.grad_enabled)
    modes.tracer, modes.grad_enabled = tracer, True
    try:
        out = fn(*args, **kwargs)
    finally:
        modes.tracer, modes.grad_enabled = previous

    out, aux_value = split_aux(out, has_aux, where)
    out_tree = None
    if split:
        out, out_tree = flat_output(out)
    else:
        out = scalar_output(out, where)
    aux_nodes = []
    aux_entry = None
    if has_aux:
        aux_values = []
        aux_entry = flatten_aux(aux_value, aux_nodes, aux_values)
    guard_nodes = [g[0] for g in tracer.guards]
    order, leaves, signature = linearize(out._node, *aux_nodes, *guard_nodes)
    if tracer.parent is not None:
        outer = tracer.parent.traced
        if tracer.reads_outer or any(n in outer for n in order):
            raise ReadsOuter
    position = {node: i for i, node in enumerate(order)}
    loss = position[out._node]
    outputs = ([loss] if want_value else []) + [position[n] for n in aux_nodes]
    differentiable = out._node.requires_grad
    guards = [(position[node], kind, value) for node, kind, value in tracer.guards]
    # Differentiable leaves the function did not get as arguments (a module's
    # parameters it closes over) are constants here: gradients only for arguments.
    wanted = [n for n in nodes if n.requires_grad]
    differentiable = differentiable and bool(codegen._reaching(order, wanted) & {out._node})
    program = _program(order, leaves, signature, outputs, loss if differentiable else None, split,
                       guards, wanted)

    result = Trace()
    result.program = program
    result.split = split
    result.fused = not split and differentiable
    result.n_outputs = len(outputs)
    result.want_value = want_value
    result.aux = aux_entry
    result.closure = _closure_snapshot(fn)
    result.floats = float_positions(list(entries) + [e for _, e in kw_items], differentiate)
    result.out_shape, result.out_dtype = out.shape, out.dtype
    result.out_tree = out_tree
    index_of_input = {node: k for k, node in enumerate(nodes)}
    result.plan = [(index_of_input[n], None) if n in index_of_input else (-1, n.value) for n in leaves]
    inputs_first = [p for p, _ in result.plan[:len(nodes)]]
    if inputs_first == list(range(len(nodes))):
        result.direct = [c for _, c in result.plan[len(nodes):]]
    else:
        result.direct = None
    # Where each differentiated input's gradient comes from (None: it does not reach the output).
    from_program = {index_of_input[leaves[p]]: k for k, p in enumerate(program.grad_leaves)}
    diff_inputs = [k for k, n in enumerate(nodes) if n.requires_grad]
    result.grad_slots = [from_program.get(k) for k in diff_inputs]
    result.zeros = [(nodes[k].shape, nodes[k].dtype) for k in diff_inputs]
    # Every wanted gradient comes straight from the program, in order: no re-packing.
    result.plain = result.grad_slots == list(range(len(diff_inputs)))
    if result.fused:
        unit = np.ones((), out.dtype)
        unit.flags.writeable = False
        result.prefix = (unit,)
    else:
        result.prefix = ()
    return result


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


def rebuild_aux(entry, items):
    tag = entry[0]
    if tag == "v":
        value = next(items)
        return value if value.__class__ is np.ndarray else np.asarray(value)
    if tag == "s":
        return entry[1]
    if tag == "t":
        return tuple(rebuild_aux(e, items) for e in entry[1:])
    if tag == "l":
        return [rebuild_aux(e, items) for e in entry[1:]]
    return {k: rebuild_aux(e, items) for k, e in zip(entry[1], entry[2:])}
