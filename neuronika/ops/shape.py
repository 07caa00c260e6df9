"""Ops that move elements without changing them: reshape, indexing, padding,
concatenation, stacking."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..graph import result_dtype
from . import Grad, declare

RESHAPE = declare("reshape", ("x",), "x.reshape(shape)",
                  {"x": Grad("dy.reshape(x_shape)", view=True)},
                  attrs=("shape",), shape=lambda s, shape: shape,
                  doc="same elements, new shape (flatten, squeeze and unsqueeze are reshapes)")


def _broadcast_to_shape(x, shape):
    padded = (1,) * (len(shape) - len(x)) + tuple(x)
    if len(x) > len(shape) or any(a != b and a != 1 for a, b in zip(padded, shape)):
        raise ShapeError(f"cannot broadcast shape {x} to {shape}")
    return shape


BROADCAST_TO = declare("broadcast_to", ("x",), "xp.broadcast_to(x, shape)", {"x": "dy"},
                       attrs=("shape",), shape=_broadcast_to_shape, elementwise=True,
                       doc="x repeated along broadcast axes (a read-only view)")


# ---- indexing ---------------------------------------------------------------
# ``layout`` is the index with its data pulled out: a tuple whose entries are
# ("k", j) for the j-th index input (an int or an integer array, passed at run
# time so a loop over i does not compile a program per i), ("i", n) for an int
# written into the code (inside a functional trace, where a Python int is a
# constant of the trace anyway), ("s", start, stop, step) for a slice, ("n",)
# for None and ("e",) for Ellipsis.

def _format_index(layout, call=False):
    """The index as written in a subscript, or (``call=True``) as a tuple expression
    that can be passed to a function such as ``xp.add.at``."""
    parts = []
    for entry in layout:
        kind = entry[0]
        if kind == "k":
            parts.append(f"k{entry[1]}")
        elif kind == "i":
            parts.append(str(entry[1]))
        elif kind == "s":
            if call:
                parts.append(f"slice{entry[1:]}")
            else:
                start, stop, step = entry[1:]
                text = f"{'' if start is None else start}:{'' if stop is None else stop}"
                parts.append(text if step is None else f"{text}:{step}")
        elif kind == "n":
            parts.append("None")
        else:
            parts.append("...")
    if call:
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return ", ".join(parts) or "()"


def dummy_key(layout, index_shapes):
    key = []
    for entry in layout:
        kind = entry[0]
        if kind == "k":
            shape = index_shapes[entry[1]]
            key.append(np.zeros(shape, np.intp) if shape else 0)
        elif kind == "i":
            key.append(entry[1])
        elif kind == "s":
            key.append(slice(*entry[1:]))
        elif kind == "n":
            key.append(None)
        else:
            key.append(Ellipsis)
    return tuple(key)


def _index_shape(x, *rest):
    *index_shapes, layout = rest
    dummy = np.broadcast_to(np.empty((), np.int8), x)
    try:
        return dummy[dummy_key(layout, index_shapes)].shape
    except IndexError as error:
        raise ShapeError(f"{error} (value of shape {x})") from None


def _is_advanced(ctx):
    return any(len(ctx.shapes[name]) > 0 for name in ctx.names[1:])


def _index_grad(ctx):
    key = _format_index(ctx.layout)
    if _is_advanced(ctx):
        return f"dx = xp.zeros(x_shape, dtype)\nxp.add.at(dx, {_format_index(ctx.layout, True)}, dy)"
    return f"dx = xp.zeros(x_shape, dtype)\ndx[{key}] = dy"


def _index_accumulate(ctx):
    key = _format_index(ctx.layout)
    if _is_advanced(ctx):
        return f"xp.add.at(acc, {_format_index(ctx.layout, True)}, dy)"
    return f"acc[{key}] += dy"


def _scatter_forward(ctx):
    if any(len(ctx.shapes[name]) > 0 for name in ctx.names[1:]):
        return f"y = xp.zeros(shape, dtype)\nxp.add.at(y, {_format_index(ctx.layout, True)}, g)"
    return f"y = xp.zeros(shape, dtype)\ny[{_format_index(ctx.layout)}] = g"


def _scatter_shape(g, *rest):
    *index_shapes, layout, shape = rest
    return shape


SCATTER = declare("scatter", ("g",), _scatter_forward,
                  {"g": lambda ctx: Grad(f"dy[{_format_index(ctx.layout)}]", view=True)},
                  attrs=("layout", "shape"), shape=_scatter_shape, variadic="k", n_differentiable=1,
                  implicit_dy=False, dtype=lambda inputs, attrs: inputs[0].dtype,
                  doc="zeros of shape with g added at [key] (repeated indices add up): the "
                      "adjoint of indexing, as an op so it can be differentiated again")


def _index_symbolic(ctx, build, bindings):
    inputs = (bindings["dy"],) + tuple(bindings[name] for name in ctx.names[1:])
    return build(SCATTER, inputs, (ctx.layout, ctx.shapes["x"]))


INDEX = declare("index", ("x",), lambda ctx: f"x[{_format_index(ctx.layout)}]",
                {"x": _index_grad}, accumulate={"x": _index_accumulate},
                symbolic={"x": _index_symbolic},
                attrs=("layout",), shape=_index_shape, implicit_dy=True, variadic="k",
                n_differentiable=1, dtype=lambda inputs, attrs: inputs[0].dtype,
                doc="x[key] with ints, slices, None, ... and integer arrays; repeated "
                    "indices add up in the gradient")


# ---- padding -----------------------------------------------------------------

def _pad_shape(x, widths, mode, value):
    if len(widths) != len(x):
        raise ShapeError(f"{len(widths)} (before, after) pairs given for a value of shape {x}")
    if mode == "reflect":
        for axis, ((before, after), size) in enumerate(zip(widths, x)):
            if max(before, after) >= size:
                raise ShapeError(f"reflect padding of ({before}, {after}) on axis {axis} needs "
                                 f"widths below the size {size} of that axis")
    if mode == "edge" and any(w and s == 0 for (w, s) in zip(widths, x)):
        raise ShapeError(f"cannot replicate the edge of an empty axis (shape {x})")
    return tuple(size + before + after for (before, after), size in zip(widths, x))


def _pad_forward(ctx):
    if ctx.mode == "constant":
        return "xp.pad(x, widths, constant_values=value)" if ctx.value else "xp.pad(x, widths)"
    return "xp.pad(x, widths, mode=mode)"


def _pad_grad(ctx):
    if ctx.mode == "constant":
        inner = tuple(slice(before, size + before) for (before, _), size in zip(ctx.widths, ctx.shapes["x"]))
        return Grad(f"dy[{_slices(inner)}]", view=True)
    return "pad_fold(dy, widths, mode)"


def _slices(slices):
    return ", ".join(f"{s.start}:{s.stop}" for s in slices) or "()"


PAD_FOLD = declare("pad_fold", ("x",), "pad_fold(x, widths, mode)", {"x": "xp.pad(dy, widths, mode=mode)"},
                   attrs=("widths", "mode"),
                   shape=lambda x, widths, mode: tuple(s - b - a for s, (b, a) in zip(x, widths)),
                   implicit_dy=False,
                   doc="border values added back onto the elements reflect / edge padding copied "
                       "them from: the adjoint of pad, as an op so it can be differentiated again")

PAD = declare("pad", ("x",), _pad_forward, {"x": _pad_grad},
              attrs=("widths", "mode", "value"), shape=_pad_shape,
              doc="pads with a constant, by reflection, or by replicating the edge; the "
                  "gradient of the border is folded back onto the elements it copied")


# ---- joining ---------------------------------------------------------------------

def _concatenate_shape(*rest):
    *shapes, axis = rest
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first) or any(a != b for i, (a, b) in enumerate(zip(first, other)) if i != axis):
            raise ShapeError(f"shapes {' and '.join(map(str, shapes))} differ "
                             f"outside axis {axis}")
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]


def _operands(ctx):
    names = ctx.names
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def _concatenate_grad(ctx):
    axis = ctx.axis
    start = sum(ctx.shapes[name][axis] for name in ctx.names[:ctx.slot])
    stop = start + ctx.shapes[ctx.names[ctx.slot]][axis]
    key = ", ".join([":"] * axis + [f"{start}:{stop}"])
    return Grad(f"dy[{key}]", view=True)


CONCATENATE = declare("concatenate", (), lambda ctx: f"xp.concatenate({_operands(ctx)}, axis={ctx.axis})",
                      {"x": _concatenate_grad}, attrs=("axis",), shape=_concatenate_shape,
                      variadic="x", dtype=lambda inputs, attrs: result_dtype(inputs),
                      doc="joins values along an existing axis")


def _stack_shape(*rest):
    *shapes, axis = rest
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"all shapes must be equal, got {' and '.join(map(str, shapes))}")
    return shapes[0][:axis] + (len(shapes),) + shapes[0][axis:]


def _stack_grad(ctx):
    key = ", ".join([":"] * ctx.axis + [str(ctx.slot)])
    return Grad(f"dy[{key}]", view=True)


STACK = declare("stack", (), lambda ctx: f"xp.stack({_operands(ctx)}, axis={ctx.axis})",
                {"x": _stack_grad}, attrs=("axis",), shape=_stack_shape, variadic="x",
                dtype=lambda inputs, attrs: result_dtype(inputs),
                doc="joins values along a new axis")
