"""Control flow: ``scan``, a loop over one cell, and the tuple ops it needs.

A scan node runs a *cell* (a small graph of its own, compiled or interpreted once,
whatever the number of steps) in a loop written into the generated code::

    for t in range(n):
        (c0, y0), res[t] = cell_fwd(c0, xs0[t, ...], k0)
        ys0[t, ...] = y0

and its adjoint runs the cell's backward in the opposite order, adding up the
gradients of the values the cell closes over. The cell is the node's attribute (an
object made above the catalogue, ``neuronika.transform.loops.Cell``); the templates
read only its structure: ``n_carry``, ``n_x``, ``n_const``, ``in_shapes`` /
``in_dtypes`` (carries, one step of each x, constants), ``out_shapes`` /
``out_dtypes`` (new carries, then one step of each y), ``args`` (the inputs its
program reads, in order), ``grads`` (the inputs its backward returns a gradient
for, in order), ``differentiable``, ``program(n)`` (what runs: ``forward``,
``backward``), ``deferral()`` (None, or the variant of the cell a scan runs to make
weight gradients one product after the backward loop: ``loops.deferred_products``) and
``symbolic(build, bindings)`` (the adjoint as a graph, for second derivatives: another
scan, over the cell's vector-Jacobian product).

A ``checkpoint`` node (``neuronika.checkpoint``) runs a cell once, keeping only its outputs;
its adjoint runs the cell's forward again, keeping what the cell's backward reads this time,
then that backward (a cell that draws random numbers replays the generator's state its
forward saw).

One op has one output, so a scan takes its inputs as one tuple (``pack``) and gives
its results as one tuple, whose parts ``part`` takes out. The gradient of a tuple is
a ``Cotangents`` (part -> array, missing parts zero), added part by part.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from .. import random as _random
from ..errors import GradientError
from . import Grad, batching, declare, pool

_OBJECT = np.dtype(object)


class Cotangents(dict):
    """The gradient of a tuple value: part index -> array; a part missing is zero."""

    __slots__ = ()

    def __missing__(self, key):
        return None

    def __iadd__(self, other):
        for k, v in other.items():
            current = dict.get(self, k)
            self[k] = v if current is None else current + v
        return self

    def __add__(self, other):
        result = Cotangents(self)
        result += other
        return result

    __radd__ = __add__

    def astype(self, dtype, copy=True):
        return self

    @property
    def real(self):
        return self


def cotangent(dy, k):
    """The gradient of a tuple whose part ``k`` has gradient ``dy``."""
    return Cotangents({k: dy})


def cotangent_part(d, k, shape, dtype):
    """Part ``k`` of a tuple's gradient (a tuple or a Cotangents), zeros where it has none (in
    the library of its other parts)."""
    value = d[k]
    if value is not None:
        if tuple(value.shape) != tuple(shape):
            # a part that broadcasts (under vmap: one that is the same for every example)
            xp = backend.space_of(value).xp if backend.foreign(value) else np
            return xp.broadcast_to(value, tuple(shape))
        return value
    for other in (d.values() if isinstance(d, dict) else d):
        if backend.foreign(other):
            space = backend.space_of(other)
            if isinstance(dtype, (np.dtype, type)):
                dtype = space.dtype(dtype)
            return space.xp.zeros(shape, dtype=dtype, device=space.device)
    return np.zeros(shape, dtype)


_STATICS = {"cotangent": cotangent, "cotangent_part": cotangent_part, "pooled_empty": pool.pooled_empty}


def _tuple_statics(ctx):
    return _STATICS


def _object_dtype(inputs, attrs):
    return _OBJECT


def _pack_forward(ctx):
    value = "(" + "".join(f"{name}, " for name in ctx.names) + ")"
    if ctx.whole:
        return value
    # the inputs' shapes, read at run time for a missing gradient's zeros: the program does
    # not name the sizes of a loop's sequences (a Python number's is ())
    return f"y = {value}\n" + "\n".join(f"s{i} = {'()' if name in ctx.weak else name + '.shape'}"
                                         for i, name in enumerate(ctx.names))


def _pack_grad(ctx):
    name = ctx.names[ctx.slot]
    if ctx.whole:                 # a cell's outputs: the loop passes a gradient for each
        return Grad(f"dy[{ctx.slot}]", view=True)
    return Grad(f"cotangent_part(dy, {ctx.slot}, s{ctx.slot}, {name}_dtype)", view=True)


def _pack_symbolic(ctx, build, bindings):
    name = ctx.names[ctx.slot]
    return build(PART, (bindings["dy"],), (ctx.slot, ctx.shapes[name], ctx.dtypes[name]))


PACK = declare("pack", (), _pack_forward, {"x": _pack_grad}, variadic="x", attrs=("whole",),
               shape=lambda *rest: (), dtype=_object_dtype, statics=_tuple_statics,
               symbolic={"x": _pack_symbolic},
               batch=batching.stacked, takes_numbers=True,
               doc="its inputs as one tuple (a scan's inputs; whole: a cell's outputs, whose "
                   "gradient has every part)")


def _part_symbolic(ctx, build, bindings):
    return build(COTANGENT, (bindings["dy"],), (ctx.k,))


PART = declare("part", ("x",), "x[k]", {"x": Grad("cotangent(dy, k)")},
               attrs=("k", "part_shape", "part_dtype"), shape=lambda s, k, shape, dtype: shape,
               dtype=lambda inputs, attrs: attrs[2], statics=_tuple_statics, shape_attr="part_shape",
               symbolic={"x": _part_symbolic}, batch=batching.part, doc="part k of a tuple (a result of a scan)")


def _cotangent_symbolic(ctx, build, bindings):
    return build(COTANGENT_PART, (bindings["dy"],), (ctx.k, ctx.shapes["x"], ctx.dtypes["x"]))


COTANGENT = declare("cotangent", ("x",), "cotangent(x, k)",
                    {"x": Grad("cotangent_part(dy, k, x_shape, x_dtype)", view=True)},
                    attrs=("k",), shape=lambda s, k: (), dtype=_object_dtype, statics=_tuple_statics,
                    symbolic={"x": _cotangent_symbolic},
                    batch=batching.cotangent, doc="the gradient of a tuple whose part k has gradient x (second derivatives)")


def _cotangent_part_symbolic(ctx, build, bindings):
    return build(COTANGENT, (bindings["dy"],), (ctx.k,))


COTANGENT_PART = declare("cotangent_part", ("x",), "cotangent_part(x, k, part_shape, part_dtype)",
                         {"x": Grad("cotangent(dy, k)")}, attrs=("k", "part_shape", "part_dtype"),
                         shape=lambda s, k, shape, dtype: shape, dtype=lambda inputs, attrs: attrs[2],
                         statics=_tuple_statics, symbolic={"x": _cotangent_part_symbolic},
                         shape_attr="part_shape",
                         batch=batching.part, doc="part k of a tuple's gradient, zeros where it has none (second derivatives)")


# ---- scan -------------------------------------------------------------------------------------

def _names(cell):
    """Template names of the cell's inputs: carries, xs (whole sequences), constants."""
    return ([f"c{i}" for i in range(cell.n_carry)] + [f"xs{i}" for i in range(cell.n_x)]
            + [f"k{i}" for i in range(cell.n_const)])


def _shape_text(shape, lead=None):
    dims = ([lead] if lead is not None else []) + [str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _dtype_text(dtype):
    dtype = np.dtype(dtype)
    if getattr(np, dtype.name, None) is dtype.type:
        return f"xp.{dtype.name}"
    return f"xp.dtype({dtype.str!r})"


def _steps(cell, reverse, backward=False):
    if reverse != backward:
        return "range(n - 1, -1, -1)"
    return "range(n)"


def _step_args(cell, names):
    """The names the cell's program reads at step ``t`` (one step of each x)."""
    out = []
    for i in cell.args:
        name = names[i]
        out.append(f"{name}[t, ...]" if name.startswith("xs") else name)
    return out


def _tuple_text(items):
    return "(" + "".join(f"{i}, " for i in items) + ")" if len(items) != 1 else f"({items[0]},)"


def _deferred(cell):
    """(the cell's ``Deferral`` or None, the cell whose program the scan runs)."""
    deferral = cell.deferral()
    return deferral, cell if deferral is None else deferral.cell


def _scan_forward(ctx):
    cell, reverse = ctx.cell, ctx.reverse
    deferral, runs = _deferred(cell)
    names = _names(cell)
    c, n_y = cell.n_carry, len(cell.out_shapes) - cell.n_carry
    lines = [f"{', '.join(names)}, = x" if names else "_ = x"]
    lines.append("n = xs0.shape[0]" if cell.n_x else f"n = {ctx.length}")
    lines.append("step = cell.program(n)" if deferral is None else "step = cell.deferral().cell.program(n)")
    lines.append("fwd = step.forward")
    for j in range(n_y):
        shape, dtype = cell.out_shapes[c + j], cell.out_dtypes[c + j]
        lines.append(f"ys{j} = pooled_empty(xp, {_shape_text(shape, 'n')}, {_dtype_text(dtype)})")
    n_a = len(runs.out_shapes) - len(cell.out_shapes)        # the deferred products' left operands
    for j in range(n_a):
        shape, dtype = runs.out_shapes[c + n_y + j], runs.out_dtypes[c + n_y + j]
        lines.append(f"as{j} = pooled_empty(xp, {_shape_text(shape, 'n')}, {_dtype_text(dtype)})")
    outs = [f"c{i}" for i in range(c)] + [f"y{j}" for j in range(n_y)] + [f"a{j}" for j in range(n_a)]
    call = f"fwd({', '.join(_step_args(runs, names))})"
    if cell.differentiable:
        lines.append("res = [None] * n")
        head = f"{_tuple_text(outs)}, res[t] = {call}"
    else:
        head = f"{_tuple_text(outs)} = {call}"
    lines.append(f"for t in {_steps(cell, reverse)}:")
    lines.append(f"    {head}")
    for j in range(n_y):
        lines.append(f"    ys{j}[t, ...] = y{j}")
    for j in range(n_a):
        lines.append(f"    as{j}[t, ...] = a{j}")
    results = [f"c{i}" for i in range(c)] + [f"ys{j}" for j in range(n_y)]
    lines.append(f"y = {_tuple_text(results)}")
    return "\n".join(lines)


def _scan_grad(ctx):
    cell, reverse = ctx.cell, ctx.reverse
    deferral, runs = _deferred(cell)
    c, n_y = cell.n_carry, len(cell.out_shapes) - cell.n_carry
    n_in = c + cell.n_x + cell.n_const
    lines, resets = [], []
    grads = {}
    # where each input's gradient is, after the loop; a constant's is a sum over the steps
    for i in range(n_in):
        shape, dtype = cell.in_shapes[i], cell.in_dtypes[i]
        if i not in runs.grads:
            if i < c and np.dtype(dtype).kind in "fc":
                # an input the cell does not read: the carry's gradient is zero before each step
                lines.append(f"zc{i} = xp.zeros({_shape_text(shape)}, dtype={_dtype_text(dtype)})")
                resets.append(f"dc{i} = zc{i}")
                grads[i] = f"dc{i}" if cell.differentiable else f"zc{i}"
            continue
        if i < c:
            grads[i] = f"dc{i}"
        elif i < c + cell.n_x:
            grads[i] = f"gxs{i - c}"
            lines.append(f"gxs{i - c} = pooled_empty(xp, {_shape_text(shape, 'n')}, {_dtype_text(dtype)})")
        else:
            grads[i] = f"gk{i - c - cell.n_x}"
            lines.append(f"gk{i - c - cell.n_x} = xp.zeros({_shape_text(shape)}, dtype={_dtype_text(dtype)})")
    if not cell.differentiable:
        return "\n".join(lines + [f"dx = {_tuple_text([grads.get(i, 'None') for i in range(n_in)])}"])
    head = []
    for i in range(c):
        shape, dtype = cell.out_shapes[i], cell.out_dtypes[i]
        if np.dtype(dtype).kind in "fc":
            head.append(f"dc{i} = cotangent_part(dy, {i}, {_shape_text(shape)}, {_dtype_text(dtype)})")
    for j in range(n_y):
        shape, dtype = cell.out_shapes[c + j], cell.out_dtypes[c + j]
        if np.dtype(dtype).kind in "fc":
            head.append(f"dys{j} = cotangent_part(dy, {c + j}, {_shape_text(shape, 'n')}, {_dtype_text(dtype)})")
    head.append("bwd = step.backward")
    seeds = [f"dc{i}" if np.dtype(cell.out_dtypes[i]).kind in "fc" else "None" for i in range(c)]
    seeds += [f"dys{j}[s, ...]" if np.dtype(cell.out_dtypes[c + j]).kind in "fc" else "None" for j in range(n_y)]
    seeds += ["None"] * (len(runs.out_shapes) - len(cell.out_shapes))     # (values only)
    targets, after = [], []
    for i in runs.grads:
        if i < c:
            targets.append(f"dc{i}")
        elif i < c + cell.n_x:
            targets.append(f"gx{i - c}")
            after.append(f"gxs{i - c}[s, ...] = gx{i - c}")
        else:
            k = i - c - cell.n_x
            targets.append(f"g{k}")
            after.append(f"gk{k} += g{k}")
    # the deferred products' gradients the variant returns (retained), stacked over the steps
    for k, (shape, dtype) in enumerate(deferral.retained if deferral is not None else ()):
        lines.append(f"dys_w{k} = pooled_empty(xp, {_shape_text(shape, 'n')}, {_dtype_text(dtype)})")
        targets.append(f"dy_w{k}")
        after.append(f"dys_w{k}[s, ...] = dy_w{k}")
    loop = [f"for s in {_steps(cell, reverse, backward=True)}:",
            f"    {', '.join(targets)}, = bwd({_tuple_text(seeds)}, *res[s])"]
    loop += [f"    {a}" for a in after + resets]
    # a deferred weight's gradient: every step's a.T @ dy as one product (loops.Deferral)
    products = []
    for item in (deferral.items if deferral is not None else ()):
        j = item.operand
        grads[item.position] = f"gw{j}"
        dys = f"gxs{item.x_at - c}" if item.x_at is not None else f"dys_w{item.retained}"
        products.append(f"gw{j} = " + item.gradient(f"xp.reshape(as{j}, (-1, {item.other_columns}))",
                                                    f"xp.reshape({dys}, (-1, {item.dy_columns}))"))
    result = f"dx = {_tuple_text([grads.get(i, 'None') for i in range(n_in)])}"
    return "\n".join(head + lines + loop + products + [result])


def _scan_symbolic(ctx, build, bindings):
    return ctx.cell.symbolic(ctx, build, bindings)


def _scan_shape(shape, cell, length, reverse):
    return ()


SCAN = declare("scan", ("x",), _scan_forward, {"x": lambda ctx: Grad(_scan_grad(ctx), view=True)},
               attrs=("cell", "length", "reverse"), shape=_scan_shape, dtype=_object_dtype,
               statics=_tuple_statics, symbolic={"x": _scan_symbolic},
               batch=batching.scan, doc="a loop over one cell: (final carries, stacked ys) (see neuronika.scan)")


# ---- call: another traced function's program, as one node ----------------------------------

def _call_not_differentiable(ctx, *rest):
    raise GradientError(f"call: the program of {ctx.call.label} runs inside this one as one step "
                        f"with no gradient of its own; it is only made where nothing "
                        f"differentiates it (a grad inside jit)")


CALL = declare("call", ("x",), "y = call(x)", {"x": _call_not_differentiable}, attrs=("call",),
               shape=lambda shape, call: (), dtype=_object_dtype,
               symbolic={"x": _call_not_differentiable},
               doc="the results of another traced function's program (``call``: made above the "
                   "catalogue, called on the tuple of its inputs), as one tuple: a value_and_grad "
                   "inside jit runs its own compiled forward and backward")


# ---- checkpoint: a cell whose intermediates are recomputed in the backward -----------------

#: the checkpoint's adjoint as a graph (second derivatives), set by ``neuronika.loops``
CHECKPOINT_ADJOINT = None


def _draws(cell):
    """Whether running the cell may draw random numbers (dropout): its backward then replays
    the generator's state of its forward."""
    for node in cell.order:
        op = node.op
        if op is None or not op.random or op is PACK:
            continue
        if op is SCAN or op is CHECKPOINT:          # a loop or a checkpoint: its own cell's
            if _draws(node.attrs[0]):
                return True
            continue
        return True
    return False


def random_state():
    """The random generator's state now (what a checkpoint's backward replays)."""
    return _random.generator().bit_generator.state


def replaying(state, function, *args):
    """``function(*args)`` drawing from a generator in ``state``; the generator in use is
    left as it was."""
    previous = _random._state["generator"]
    replay = np.random.Generator(type(previous.bit_generator)())
    replay.bit_generator.state = state
    _random._state["generator"] = replay
    try:
        return function(*args)
    finally:
        _random._state["generator"] = previous


_CHECKPOINT_STATICS = {**_STATICS, "random_state": random_state, "replaying": replaying}


def _checkpoint_statics(ctx):
    return _CHECKPOINT_STATICS


def _checkpoint_forward(ctx):
    cell = ctx.cell
    call = f"cell.program(1).forward({', '.join(f'x[{i}]' for i in cell.args)})"
    # a differentiable program returns (outputs, what its backward reads): only the outputs
    # are kept, the rest is freed at once and recomputed by the adjoint
    body = f"y = {call}[0]" if cell.differentiable else f"y = {call}"
    return "rng = random_state()\n" + body if _draws(cell) else body


def _checkpoint_grad(ctx):
    cell = ctx.cell
    n_in = cell.n_const
    if not cell.differentiable:
        return Grad(f"dx = {_tuple_text(['None'] * n_in)}", view=True)
    args = ", ".join(f"x[{i}]" for i in cell.args)
    seeds = []
    for k, (shape, dtype) in enumerate(zip(cell.out_shapes, cell.out_dtypes)):
        seeds.append(f"cotangent_part(dy, {k}, {_shape_text(shape)}, {_dtype_text(dtype)})"
                     if np.dtype(dtype).kind in "fc" else "None")
    # the forward run again, keeping what the backward reads this time; nothing of it is
    # named, so it is freed as soon as the cell's backward returns
    again = f"replaying(rng, run.forward, {args})" if _draws(cell) else f"run.forward({args})"
    targets = [f"g{i}" for i in cell.grads]
    lines = ["run = cell.program(1)",
             f"{', '.join(targets)}, = run.backward({_tuple_text(seeds)}, *{again}[1])",
             f"dx = {_tuple_text([f'g{i}' if i in cell.grads else 'None' for i in range(n_in)])}"]
    return Grad("\n".join(lines), view=True)


def _checkpoint_symbolic(ctx, build, bindings):
    if CHECKPOINT_ADJOINT is None:
        raise GradientError("checkpoint: no adjoint as a graph registered (import neuronika.loops)")
    return CHECKPOINT_ADJOINT(ctx.cell, ctx, build, bindings)


CHECKPOINT = declare("checkpoint", ("x",), _checkpoint_forward, {"x": _checkpoint_grad},
                     attrs=("cell",), shape=lambda shape, cell: (), dtype=_object_dtype,
                     statics=_checkpoint_statics, symbolic={"x": _checkpoint_symbolic},
                     batch=batching.checkpoint, doc="a cell run once, its outputs as one tuple; its intermediates are not "
                         "kept but recomputed by its adjoint (see neuronika.checkpoint)")

# A loop's cell may draw random numbers (dropout), and a tuple is no array to keep: neither
# a scan, a call, a checkpoint nor their inputs' tuple is ever made a constant of later graphs.
SCAN.random = PACK.random = CALL.random = CHECKPOINT.random = True
