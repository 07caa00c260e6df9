"""``neuronika.scan``: a loop whose body is traced and compiled once, whatever its length.

``scan(f, init, xs)`` has the semantics of JAX's ``lax.scan``. ``f`` is called once, on
placeholders for one step (the carry, and one step of each x), and what it builds is
the *cell* (``transform.loops.Cell``): a small graph whose inputs are those
placeholders and every value it reads from outside (closed-over variables, constants),
which get gradients like any input. The graph of the caller holds one ``scan`` node
(``ops/control.py``), whose generated code loops over the cell's program; so a new
length changes only the shapes of that node's inputs, and the cell is compiled once.

``checkpoint(f)`` makes a cell of ``f`` the same way (every input a constant of the cell)
and one ``checkpoint`` node, which keeps only the cell's inputs for the backward: it runs
the cell again there (rematerialisation).
"""
from __future__ import annotations

import functools

import numpy as np

from . import backend, symbolic
from .errors import GradientError, ShapeError
from .graph import GRAD_ENABLED, Node, apply, leaf, leaf_key, like_leaf, modes, serial_now, walk
from .numpy._core import node_of
from .ops import OPS
from .ops import control as _control
from .tracing import Tracer
from .transform import loops, run
from .variable import Var, _wrap

_PACK, _SCAN, _PART, _COTANGENT_PART = OPS["pack"], OPS["scan"], OPS["part"], OPS["cotangent_part"]
_CHECKPOINT = OPS["checkpoint"]


def scan(f, init, xs=None, length=None, reverse=False):
    """Loop ``f(carry, x) -> (carry, y)`` over the leading axis of ``xs``; returns
    ``(final_carry, ys)``, the ys stacked along a new leading axis (JAX's ``lax.scan``).

    ``init``, ``xs`` and the results may be arrays, variables, or (nested) tuples, lists
    and dicts of them; ``xs`` may be None with ``length`` steps. The carry must keep its
    structure, shapes and dtypes from step to step. ``reverse=True`` runs from the last
    step to the first (ys keep their positions). ``f`` is traced once: it may not branch
    on the values it gets (use ``neuronika.numpy.where``). Variables it reads from outside
    (a model's parameters) get gradients, on ``backward()`` and under ``neuronika.grad``
    alike. With no variable involved, the results are NumPy arrays.

    >>> import numpy as np, neuronika
    >>> w = neuronika.from_ndarray(np.array(0.5)).requires_grad()
    >>> final, ys = neuronika.scan(lambda h, x: (h * w + x, h), np.array(0.0), np.ones(3))
    >>> final.data, ys.data
    (array(1.75), array([0. , 1. , 1.5]))
    >>> final.backward(); w.grad
    array(2.)
    """
    carry_tree, carry_in = _flatten(init, "init")
    xs_tree, xs_in = _flatten(xs, "xs") if xs is not None else (None, [])
    init_nodes = [_node(v, "init") for v in carry_in]
    xs_nodes = [_node(v, "xs") for v in xs_in]
    steps = _length(xs_nodes, length)

    placeholders = [_placeholder(n.shape, n.dtype, n.space) for n in init_nodes]
    placeholders += [_placeholder(n.shape[1:], n.dtype, n.space) for n in xs_nodes]
    start = placeholders[0].serial if placeholders else None
    carry_vars = [_wrap(p) for p in placeholders[:len(init_nodes)]]
    x_vars = [_wrap(p) for p in placeholders[len(init_nodes):]]
    out = _call(f, _unflatten(carry_tree, iter(carry_vars)),
                _unflatten(xs_tree, iter(x_vars)) if xs_tree is not None else None, placeholders)
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TypeError(f"scan: f must return a pair (carry, y), got {type(out).__name__}"
                        f"{f' of length {len(out)}' if isinstance(out, tuple) else ''}")
    new_tree, new_carry = _flatten(out[0], "the carry f returned")
    y_tree, ys = _flatten(out[1], "the y f returned")
    if new_tree != carry_tree:
        raise TypeError(f"scan: the carry changes structure from step 0 to step 1: init is "
                        f"{_describe(carry_tree)} but f returned {_describe(new_tree)}")
    like = placeholders[0] if placeholders else None
    out_nodes = [_output(v, like) for v in new_carry + ys]
    for k, (before, after) in enumerate(zip(init_nodes, out_nodes)):
        if before.shape != after.shape or before.dtype != after.dtype:
            raise ShapeError(f"scan: the carry changes from step 0 to step 1: part {k} goes in with "
                             f"shape {before.shape} and dtype {before.dtype} and f returns it with "
                             f"shape {after.shape} and dtype {after.dtype}; the carry must keep its "
                             f"shapes and dtypes (cast with .astype)")
    if not out_nodes:
        return _unflatten(carry_tree, iter([])), _unflatten(y_tree, iter([]))

    consts = _constants(out_nodes, set(placeholders), start)
    grad_on = GRAD_ENABLED.get()
    outer = init_nodes + xs_nodes + consts
    saves = grad_on and any(n.requires_grad for n in outer)
    leaves, mapping = [], {}
    for k, node in enumerate(placeholders + consts):
        if k < len(init_nodes):
            flag = saves and node.dtype.kind in "fc"
        elif k < len(placeholders):
            flag = grad_on and xs_nodes[k - len(init_nodes)].requires_grad and node.dtype.kind in "fc"
        else:
            flag = grad_on and node.requires_grad
        new = like_leaf(node, flag)
        leaves.append(new)
        mapping[node] = new
    root = apply(_PACK, tuple(_replay_nodes(out_nodes, mapping, start)), (True,))
    in_specs = [loops.spec(n) for n in init_nodes] + [(tuple(n.shape[1:]), n.dtype) for n in xs_nodes]
    in_specs += [loops.spec(n) for n in consts]
    out_specs = [loops.spec(n) for n in out_nodes]
    n_x, n_const = len(xs_nodes), len(consts)
    moved = loops.hoisted(root, leaves, in_specs, len(init_nodes), n_x, outer, steps) if loops.HOIST else None
    if moved is not None:
        root, leaves, in_specs, n_x, n_const, outer, _ = moved
    plan = loops.sunk(root, leaves, in_specs, len(init_nodes), n_x, outer, steps) if loops.HOIST else None
    n_carry = len(init_nodes)
    if plan is not None:
        root, leaves, in_specs, outer = plan.root, plan.leaves, plan.in_specs, plan.outer
        n_carry, n_x, n_const = plan.n_carry, plan.n_x, plan.n_const
    cell = loops.cell_for(root, leaves, list(range(len(leaves))), n_carry, n_x, n_const,
                          in_specs, plan.out_specs if plan is not None else out_specs)
    if cell.symbolic_adjoint is None:
        cell.symbolic_adjoint = _symbolic_adjoint

    bundle = apply(_PACK, tuple(outer), (False,))
    node = apply(_SCAN, (bundle,), (cell, None if n_x else steps, bool(reverse)))
    c = len(init_nodes)
    if plan is not None:
        parts = plan.outputs(lambda k, shape, dtype: apply(_PART, (node,), (k, shape, dtype)))
    else:
        parts = [apply(_PART, (node,), (k, shape if k < c else (steps,) + shape, dtype))
                 for k, (shape, dtype) in enumerate(out_specs)]
    if not any(isinstance(v, Var) for v in carry_in + xs_in) and all(n.op is None for n in consts) \
            and not any(n.requires_grad for n in consts):
        whole = node if plan is None else apply(_PACK, tuple(parts), (False,))
        value = run.evaluate(whole)         # plain data in, plain arrays out
        results = [value[k] if node.space is not None else np.asarray(value[k]) for k in range(len(parts))]
    else:
        results = [_wrap(p) for p in parts]
    return (_unflatten(carry_tree, iter(results[:c])),
            _unflatten(y_tree, iter(results[c:])) if y_tree is not None else None)


# ---- pieces -------------------------------------------------------------------------------------

def _flatten(obj, what):
    """(structure, values) of a (nested) tuple / list / dict; None is an empty structure."""
    parts = []
    return _tree(obj, parts), parts


def _tree(obj, parts):
    if obj is None:
        return ("n",)
    cls = obj.__class__
    if cls is tuple or cls is list:
        return ("t" if cls is tuple else "l", tuple(_tree(o, parts) for o in obj))
    if cls is dict:
        return ("d", tuple(obj), tuple(_tree(obj[k], parts) for k in obj))
    parts.append(obj)
    return ("a",)


def _unflatten(tree, items):
    tag = tree[0]
    if tag == "n":
        return None
    if tag == "a":
        return next(items)
    if tag == "d":
        return {k: _unflatten(t, items) for k, t in zip(tree[1], tree[2])}
    values = [_unflatten(t, items) for t in tree[1]]
    return tuple(values) if tag == "t" else values


def _describe(tree):
    tag = tree[0]
    if tag == "n":
        return "None"
    if tag == "a":
        return "an array"
    if tag == "d":
        return "a dict with keys " + repr(list(tree[1]))
    return f"a {'tuple' if tag == 't' else 'list'} of {len(tree[1])}"


def _node(value, what):
    if isinstance(value, Var):
        return value._node
    if backend.foreign(value):
        return leaf(value)                          # another array library's: its space kept
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"scan: {what} holds a {type(value).__name__}, which is not an array")
    return leaf(array)


def _output(value, like):
    if isinstance(value, Var):
        return value._node
    return node_of(value, like, "a result of f")


def _length(xs_nodes, length):
    if length is not None and (isinstance(length, bool) or not isinstance(length, (int, np.integer))
                               or length < 0):
        raise ValueError(f"scan: length must be a non-negative int, got {length!r}")
    lengths = set()
    for node in xs_nodes:
        if not node.shape:
            raise ShapeError("scan: every array in xs needs a leading axis to scan over, got a 0-dim one")
        lengths.add(node.shape[0])
    if len(lengths) > 1:
        shapes = [n.shape for n in xs_nodes]
        raise ShapeError(f"scan: the arrays in xs have different leading lengths: shapes {shapes}")
    if lengths:
        found = lengths.pop()
        if length is not None and int(length) != found:
            raise ShapeError(f"scan: length={length} but xs has leading length {found}")
        return found
    if length is None:
        raise ValueError("scan: with xs None (or holding no arrays), give length")
    return int(length)


def _placeholder(shape, dtype, space=None):
    node = Node(None, (), (), tuple(shape), np.dtype(dtype), False, None)
    node.value = backend.zeros(shape, dtype, space)
    node.space = space
    node.key = leaf_key(node.shape, node.dtype, space, False)
    return node




class _CellTracer(Tracer):
    """Refuses a Python-level read of a value that depends on a step's placeholders."""

    def __init__(self, inputs, parent, refuse=None):
        super().__init__(inputs, parent, compiled=False)
        self.refuse = refuse or _refuse_in_scan

    def observe(self, node, kind, value):
        if any(n in self.inputs for n in walk(node)):
            raise GradientError(self.refuse(kind))
        if self.parent is not None:
            self.parent.observe(node, kind, value)


def _refuse_in_scan(kind):
    return (f"scan: f read a value of the loop as a Python {kind} (if, float(), .item(), ...); "
            f"f is traced once for every step, so it cannot branch on the carry or on xs: use "
            f"neuronika.numpy.where, or a Python loop")


def _call(f, carry, x, placeholders):
    previous = modes.tracer
    modes.tracer = _CellTracer(set(placeholders), previous)
    try:
        return f(carry, x)
    finally:
        modes.tracer = previous


def _constants(out_nodes, placeholders, start):
    """What the cell reads besides its placeholders: nodes made before the trace and leaves
    made during it (constants), in creation order."""
    found = set()
    seen = set()
    stack = list(out_nodes)
    while stack:
        node = stack.pop()
        if node in seen or node in placeholders:
            continue
        seen.add(node)
        if start is None or node.serial < start or node.op is None:
            found.add(node)
            continue
        stack.extend(node.inputs)
    return sorted(found, key=lambda n: n.serial)


def _replay_nodes(out_nodes, mapping, start):
    """The cell's outputs rebuilt over its own leaves (``mapping``: node -> leaf)."""
    inside = []
    seen = set(mapping)
    stack = [n for n in out_nodes if n not in seen]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        inside.append(node)
        stack.extend(i for i in node.inputs if i not in seen)
    for node in sorted(inside, key=lambda n: n.serial):
        mapping[node] = apply(node.op, tuple(mapping[i] for i in node.inputs), node.attrs)
    return [mapping[n] for n in out_nodes]


def replay(cell, inputs):
    """The cell's outputs built over ``inputs`` (variables, one per cell input): how a cell
    is differentiated as a graph."""
    mapping = {}
    for leaf_node, position in zip(cell.leaves, cell.args):
        mapping[leaf_node] = inputs[position]._node
    root = cell.order[-1]
    for node in cell.order:
        if node.op is not None and node is not root:
            mapping[node] = apply(node.op, tuple(mapping[i] for i in node.inputs), node.attrs)
    return [_wrap(mapping[n]) for n in root.inputs]


# ---- the adjoint as a graph (second derivatives) -----------------------------------------------

def _zeros(node):
    return _wrap(leaf(backend.zeros(node.shape, node.dtype, node.space)))


def _symbolic_adjoint(cell, ctx, build, bindings):
    """The gradient of a scan's input tuple as graph nodes: a scan that recomputes the carry
    going into each step, then a scan in the opposite direction over the cell's
    vector-Jacobian product, adding up the constants' gradients in its carry."""
    bundle = bindings["x"]._node
    dy = bindings["dy"]
    inputs = [_wrap(n) for n in bundle.inputs]
    c, m = cell.n_carry, cell.n_x
    carries, xs, consts = inputs[:c], inputs[c:c + m], inputs[c + m:]
    steps = xs[0].shape[0] if xs else ctx.length
    floating = [np.dtype(d).kind in "fc" for d in cell.out_dtypes]
    cts = []
    for k, (shape, dtype) in enumerate(zip(cell.out_shapes, cell.out_dtypes)):
        shape = shape if k < c else (steps,) + shape
        cts.append(build(_COTANGENT_PART, (dy,), (k, shape, dtype)) if floating[k] else None)
    # the inputs that lead to what is differentiated (``requires_grad`` is not enough: under
    # jit, which differentiates nothing, grad's variables are built on plain leaves)
    reaches = bindings["wanted"]
    wanted_consts = [k for k, v in enumerate(consts) if v._node in reaches]
    wanted_xs = [j for j, v in enumerate(xs) if v._node in reaches and v.dtype.kind in "fc"]
    float_carries = [i for i in range(c) if floating[i]]

    def step(carry, x):                 # x is None for a scan over a length alone
        return tuple(replay(cell, list(carry) + list(x or ()) + consts)[:c]), tuple(carry)

    _, before = scan(step, tuple(carries), tuple(xs) if xs else None,
                     length=None if xs else steps, reverse=ctx.reverse)

    def vjp_step(state, x):
        ct_carry, acc = state
        x_t, carry_t, ct_y = x
        # each constant through a node of its own, whose gradient is the partial one: a
        # constant made from another (U = W * 0.7 beside W) must not pass its part into the
        # other's, which the chain rule outside the loop adds again
        own = [_wrap(apply(OPS["reshape"], (k._node,), (tuple(k.shape),))) for k in consts]
        outs = replay(cell, list(carry_t) + list(x_t) + own)
        seeds = [ct_carry[float_carries.index(k)] if k < c else ct_y[k - c]
                 for k in range(len(outs)) if floating[k]]
        total = None
        for out, seed in zip([o for k, o in enumerate(outs) if floating[k]], seeds):
            term = (out * seed).sum()
            total = term if total is None else total + term
        wrt = [carry_t[i] for i in float_carries] + [x_t[j] for j in wanted_xs] + \
              [own[k] for k in wanted_consts]
        if total is None:
            grads = [_zeros(w._node) for w in wrt]
        else:
            grads = symbolic.gradients(total, wrt)
        nc, nx = len(float_carries), len(wanted_xs)
        new_acc = tuple(a + g for a, g in zip(acc, grads[nc + nx:]))
        return (tuple(grads[:nc]), new_acc), tuple(grads[nc:nc + nx])

    ct_final = tuple(cts[i] for i in float_carries)
    acc0 = tuple(_zeros(consts[k]._node) for k in wanted_consts)
    ct_ys = tuple(cts[c + j] if floating[c + j] else _zeros_seq(steps, cell, c + j, bundle.space)
                  for j in range(len(cell.out_shapes) - c))
    (ct_init, acc), g_xs = scan(vjp_step, (ct_final, acc0), (tuple(xs), tuple(before), ct_ys),
                                length=steps, reverse=not ctx.reverse)
    grads = [None] * len(inputs)
    for n, i in enumerate(float_carries):
        grads[i] = ct_init[n]
    for n, j in enumerate(wanted_xs):
        grads[c + j] = g_xs[n]
    for n, k in enumerate(wanted_consts):
        grads[c + m + k] = acc[n]
    nodes = [(g._node if g is not None else _zeros(v._node)._node) for g, v in zip(grads, inputs)]
    return _wrap(apply(_PACK, tuple(nodes), (False,)))


def _zeros_seq(steps, cell, k, space):
    return _wrap(leaf(backend.zeros((steps,) + cell.out_shapes[k], cell.out_dtypes[k], space)))


loops.SYMBOLIC_ADJOINT = _symbolic_adjoint       # for the cells that rolling makes too


# ---- checkpoint: rematerialisation -------------------------------------------------------------

def checkpoint(fun):
    """``fun`` whose intermediates are not kept for the backward pass but recomputed from its
    inputs when the backward reaches them (``jax.checkpoint``, ``torch.utils.checkpoint``):
    the same values and gradients as ``fun``, for less memory and one more forward run of
    ``fun``. Also a decorator.

    The arguments may be arrays, variables, or (nested) tuples, lists and dicts of them;
    anything else (numbers, strings, modules) is passed to ``fun`` as it is. ``fun`` returns
    an array or a tree of them. It is traced on its arguments' shapes (it may not branch on
    their values: use ``neuronika.numpy.where``); variables it reads from outside (a
    module's parameters) get gradients. Where nothing needs a gradient (``no_grad``, or no
    variable that requires one), it gives ``fun``'s results with nothing recomputed (plain
    arrays for plain arrays). Random draws (dropout) are replayed
    in the backward from the state the forward saw, so they match. Second derivatives
    through it are computed.

    >>> import numpy as np, neuronika
    >>> w = neuronika.from_ndarray(np.array([[0.5, -1.0], [2.0, 0.25]])).requires_grad()
    >>> plain = lambda h: h.mm(w).tanh()
    >>> block = neuronika.checkpoint(plain)
    >>> block(block(neuronika.ones((1, 2)))).sum().backward()
    >>> np.round(w.grad, 4)
    array([[ 0.5673,  1.0666],
           [-0.3672,  0.5253]])
    >>> kept = w.grad.copy(); w.zero_grad()
    >>> plain(plain(neuronika.ones((1, 2)))).sum().backward()
    >>> bool((w.grad == kept).all())
    True
    """
    if not callable(fun):
        raise TypeError(f"checkpoint: expected a function, got {type(fun).__name__}")

    @functools.wraps(fun)
    def rematerialised(*args, **kwargs):
        return _checkpointed(fun, args, kwargs)

    return rematerialised


def _checkpointed(fun, args, kwargs):
    if not GRAD_ENABLED.get():
        return fun(*args, **kwargs)
    values = []
    tree = _arguments((args, kwargs), values)
    nodes = [_argument_node(v) for v in values]
    start = serial_now()
    placeholders = [_placeholder(n.shape, n.dtype, n.space) for n in nodes]
    previous = modes.tracer
    modes.tracer = _CellTracer(set(placeholders), previous, _refuse_in_checkpoint)
    try:
        f_args, f_kwargs = _static_unflatten(tree, iter([_wrap(p) for p in placeholders]))
        out = fun(*f_args, **f_kwargs)
    finally:
        modes.tracer = previous
    out_tree, outs = _flatten(out, "the result")
    like = placeholders[0] if placeholders else None
    out_nodes = [_output(v, like) for v in outs]
    if not out_nodes:
        return _unflatten(out_tree, iter([]))
    consts = _constants(out_nodes, set(placeholders), start)
    outer = nodes + consts
    if not any(n.requires_grad for n in outer):
        # nothing to differentiate: f's graph over the arguments themselves
        mapping = dict(zip(placeholders, nodes))
        mapping.update((c, c) for c in consts)
        results = _replay_nodes(out_nodes, mapping, start)
        if (modes.tracer is None and not any(isinstance(v, Var) for v in values)
                and all(c.op is None for c in consts) and results):
            bundle = apply(_PACK, tuple(results), (False,))
            computed = run.evaluate(bundle)      # plain data in, plain arrays out
            return _unflatten(out_tree, iter(computed if bundle.space is not None else
                                             [np.asarray(v) for v in computed]))
        return _unflatten(out_tree, iter([_wrap(n) for n in results]))
    leaves, mapping = [], {}
    for node, standing in zip(placeholders + consts, outer):
        new = like_leaf(node, standing.requires_grad and node.dtype.kind in "fc")
        leaves.append(new)
        mapping[node] = new
    root = apply(_PACK, tuple(_replay_nodes(out_nodes, mapping, start)), (True,))
    in_specs = [loops.spec(n) for n in outer]
    out_specs = [loops.spec(n) for n in out_nodes]
    cell = loops.cell_for(root, leaves, list(range(len(leaves))), 0, 0, len(leaves), in_specs, out_specs)
    bundle = apply(_PACK, tuple(outer), (False,))
    node = apply(_CHECKPOINT, (bundle,), (cell,))
    parts = [_wrap(apply(_PART, (node,), (k, shape, dtype))) for k, (shape, dtype) in enumerate(out_specs)]
    return _unflatten(out_tree, iter(parts))


def _refuse_in_checkpoint(kind):
    return (f"checkpoint: the function read a value computed from its arguments as a Python "
            f"{kind} (if, float(), .item(), ...); it is traced on their shapes and run again in "
            f"the backward, so it cannot branch on their values: use neuronika.numpy.where, or "
            f"pass the value as a Python number")


def _arguments(obj, parts):
    """As ``_tree``, but a leaf that is no array (a number, a string, a module) stays in the
    structure as it is (``("s", obj)``)."""
    cls = obj.__class__
    if obj is None:
        return ("n",)
    if cls is tuple or cls is list:
        return ("t" if cls is tuple else "l", tuple(_arguments(o, parts) for o in obj))
    if cls is dict:
        return ("d", tuple(obj), tuple(_arguments(obj[k], parts) for k in obj))
    if isinstance(obj, (Var, np.ndarray, np.generic)) or backend.foreign(obj):
        parts.append(obj)
        return ("a",)
    return ("s", obj)


def _static_unflatten(tree, items):
    if tree[0] == "s":
        return tree[1]
    if tree[0] in "tl":
        values = [_static_unflatten(t, items) for t in tree[1]]
        return tuple(values) if tree[0] == "t" else values
    if tree[0] == "d":
        return {k: _static_unflatten(t, items) for k, t in zip(tree[1], tree[2])}
    return _unflatten(tree, items)


def _argument_node(value):
    if isinstance(value, Var):
        return value._node
    if backend.foreign(value):
        return leaf(value)
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError(f"checkpoint: an argument holds a {type(value).__name__}, which is not an array")
    return leaf(array)


def _checkpoint_adjoint(cell, ctx, build, bindings):
    """The gradient of a checkpoint's input tuple as graph nodes: a checkpoint of the cell's
    vector-Jacobian product, so a second derivative recomputes the cell too."""
    bundle = bindings["x"]._node
    dy = bindings["dy"]
    inputs = [_wrap(n) for n in bundle.inputs]
    floating = [k for k, d in enumerate(cell.out_dtypes) if np.dtype(d).kind in "fc"]
    cts = tuple(build(_COTANGENT_PART, (dy,), (k, cell.out_shapes[k], cell.out_dtypes[k]))
                for k in floating)
    reaches = bindings["wanted"]
    wanted = [k for k, v in enumerate(inputs) if v._node in reaches and v.dtype.kind in "fc"]
    grads = [None] * len(inputs)
    if wanted:
        def vjp(ins, seeds):
            outs = replay(cell, list(ins))
            total = None
            for k, seed in zip(floating, seeds):
                term = (outs[k] * seed).sum()
                total = term if total is None else total + term
            if total is None:
                return tuple(_zeros(ins[k]._node) for k in wanted)
            return tuple(symbolic.gradients(total, [ins[k] for k in wanted]))

        for k, g in zip(wanted, checkpoint(vjp)(tuple(inputs), cts)):
            grads[k] = g
    nodes = [(g._node if g is not None else _zeros(v._node)._node) for g, v in zip(grads, inputs)]
    return _wrap(apply(_PACK, tuple(nodes), (False,)))


_control.CHECKPOINT_ADJOINT = _checkpoint_adjoint
