"""Ops that move elements without changing them: reshape, indexing, padding,
concatenation, stacking."""
from __future__ import annotations

import math

import numpy as np

from ..backend import move
from ..errors import ShapeError
from ..graph import converted_result_dtype, leaf
from . import Grad, batching, declare

def _reshape_shape(x, shape):
    """The target shape, its -1 (kept in the attribute as written: the program then does
    not name that size) worked out."""
    size = math.prod(x)
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {x} ({size} elements) to {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    if math.prod(shape) != size:
        raise ShapeError(f"cannot reshape {x} ({size} elements) to {shape}")
    return shape


def _unchanged(ctx):
    """Whether the op hands back its input as it is (same shape and dtype): its forward
    and adjoint are then just names, with no call. A weak Python number (shape ``()``)
    is left to the op: there the call is what makes it an array."""
    return ctx.shapes["x"] == ctx.shape and ctx.shape != () and ctx.dtypes["x"] == ctx.dtype


def _reshape_forward(ctx):
    return "x" if _unchanged(ctx) else "xp.reshape(x, shape)"


def _reshape_grad(ctx):
    if _unchanged(ctx):
        return "dy"
    # the first axis as -1: the same target, without naming a size that may vary (a batch)
    shape = ctx.shapes["x"]
    if len(shape) > 1 and shape[0] > 1 and all(shape[1:]):
        return Grad(f"xp.reshape(dy, {(-1,) + tuple(shape[1:])})", view=True)
    return Grad("xp.reshape(dy, x_shape)", view=True)


RESHAPE = declare("reshape", ("x",), _reshape_forward, {"x": _reshape_grad},
                  attrs=("shape",), shape=_reshape_shape,
                  batch=batching.reshape, doc="same elements, new shape (flatten, squeeze and unsqueeze are reshapes)")


def _broadcast_to_shape(x, shape):
    padded = (1,) * (len(shape) - len(x)) + tuple(x)
    if len(x) > len(shape) or any(a != b and a != 1 for a, b in zip(padded, shape)):
        raise ShapeError(f"cannot broadcast shape {x} to {shape}")
    return shape


BROADCAST_TO = declare("broadcast_to", ("x",),
                       lambda ctx: "x" if _unchanged(ctx) else "xp.broadcast_to(x, shape)", {"x": "dy"},
                       attrs=("shape",), shape=_broadcast_to_shape, elementwise=True,
                       batch=batching.broadcast_to, doc="x repeated along broadcast axes (a read-only view)")


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


def basic_shape(shape, key):
    """The shape of ``x[key]`` for an ``x`` of ``shape`` and a key of ints, slices (int or None
    bounds), None and at most one ``...``, worked out in Python; None for any other key, or
    one NumPy would refuse (an index out of range, too many indices): the caller asks NumPy,
    which says what is wrong. (A dummy array indexed by NumPy costs about 2 µs a key: an
    LSTM step slices its gates four times.)"""
    consumed = 0
    for part in key:
        if part is Ellipsis:
            continue
        if part is not None:
            consumed += 1
    if consumed > len(shape) or sum(1 for part in key if part is Ellipsis) > 1:
        return None
    out, axis = [], 0
    for part in key:
        cls = part.__class__
        if part is None:
            out.append(1)
        elif part is Ellipsis:
            skip = len(shape) - consumed
            out.extend(shape[axis:axis + skip])
            axis += skip
        elif cls is slice:
            out.append(len(range(*part.indices(shape[axis]))))
            axis += 1
        elif cls is int:
            if not -shape[axis] <= part < shape[axis]:
                return None
            axis += 1
        else:
            return None
    out.extend(shape[axis:])
    return tuple(out)


def _index_shape(x, *rest):
    *index_shapes, layout = rest
    if len(layout) <= len(x) and all(e[0] == "k" and not index_shapes[e[1]] for e in layout):
        return x[len(layout):]          # only ints (x[t] in a loop): no dummy array to index
    if all(e[0] in "snei" for e in layout):             # no index given at run time
        shape = basic_shape(x, dummy_key(layout, index_shapes))
        if shape is not None:
            return shape
    dummy = np.broadcast_to(np.empty((), np.int8), x)
    try:
        return dummy[dummy_key(layout, index_shapes)].shape
    except IndexError as error:
        raise ShapeError(f"{error} (value of shape {x})") from None


def _is_advanced(ctx):
    return any(len(ctx.shapes[name]) > 0 for name in ctx.names[1:])


# Generated subscripts follow the array-API standard: a key that leaves axes out ends in
# ``...``; an int passed at run time (a 0-d array on other libraries) is read as an int
# (``index_int``) wherever a slice, ``...`` or an assignment meets it; an integer array is
# taken with ``xp.take`` (in NumPy also much faster than a fancy index) when it is the only
# one; integer arrays and ints that name every axis index directly (the standard's integer
# array indexing, 2024.12); any other key goes through the ``gather`` kernel.

def _entries(layout, kshapes):
    """(kind, text) per layout entry: "a" (an integer array input), "i" (an int: written into
    the code, or a 0-d input), "s", "n", "e"; text as in a subscript."""
    out = []
    for entry in layout:
        kind = entry[0]
        if kind == "k":
            name = f"k{entry[1]}"
            out.append(("a", name) if kshapes[name] else ("k", name))
        elif kind == "i":
            out.append(("i", str(entry[1])))
        elif kind == "s":
            start, stop, step = entry[1:]
            text = f"{'' if start is None else start}:{'' if stop is None else stop}"
            out.append(("s", text if step is None else f"{text}:{step}"))
        elif kind == "n":
            out.append(("n", "None"))
        else:
            out.append(("e", "..."))
    return out


def _subscript(entries, ndim, store=False):
    """A basic key (no integer arrays) in the standard's form."""
    given = sum(kind not in "ne" for kind, _ in entries)
    complete = given == ndim or any(kind == "e" for kind, _ in entries)
    if not store and complete and all(kind in "ik" for kind, _ in entries):
        return ", ".join(text for _, text in entries) or "()"     # x[k0]: a 0-d index is fine
    parts = [f"index_int({text})" if kind == "k" else text for kind, text in entries]
    if not complete:
        parts.append("...")
    return ", ".join(parts) or "()"


def _dims_before(entries, position, ndim):
    """The axes of the result that the entries before ``position`` make (basic indexing)."""
    given = sum(kind not in "ne" for kind, _ in entries)
    return sum(1 if kind in "sna" else ndim - given if kind == "e" else 0
               for kind, _ in entries[:position])


def _getitem(target, layout, kshapes, shape):
    """Source of ``target[key]`` for ``target`` of ``shape``."""
    ndim = len(shape)
    entries = _entries(layout, kshapes)
    arrays = [p for p, (kind, _) in enumerate(entries) if kind == "a"]
    if not arrays:
        return f"{target}[{_subscript(entries, ndim)}]"
    if len(arrays) > 1:
        if len(entries) == ndim and all(kind in "aik" for kind, _ in entries):
            # integer arrays and ints naming every axis: the standard's own (2024.12) indexing
            return f"{target}[{', '.join(text for _, text in entries)}]"
        return f"gather({target}, {_format_index(layout, True)})"
    if any(kind == "n" for kind, _ in entries):
        return f"gather({target}, {_format_index(layout, True)})"
    p = arrays[0]
    name = entries[p][1]
    # ints count as advanced indices beside an array: apart from it, the array's axes go first
    advanced = [q for q, (kind, _) in enumerate(entries) if kind in "aik"]
    together = advanced == list(range(advanced[0], advanced[-1] + 1))
    basic = entries[:p] + [("s", ":")] + entries[p + 1:]
    if all(kind in "se" and text in (":", "...") for kind, text in basic):
        z, z_shape = target, tuple(shape)
    else:
        z = f"{target}[{_subscript(basic, ndim)}]"
        dummy = tuple(slice(None) if kind == "a" else 0 if kind in "ik" else slice(*entry[1:]) if kind == "s"
                      else None if kind == "n" else Ellipsis for (kind, _), entry in zip(entries, layout))
        z_shape = np.broadcast_to(np.empty((), np.int8), shape)[dummy].shape
    axis = _dims_before(entries, p, ndim)
    kshape = tuple(kshapes[name])
    taken = z_shape[:axis] + kshape + z_shape[axis + 1:]
    if len(kshape) == 1:
        src = f"xp.take({z}, {name}, axis={axis})"
    else:
        src = f"xp.reshape(xp.take({z}, xp.reshape({name}, (-1,)), axis={axis}), {taken})"
    if not together and axis:
        m = len(kshape)
        order = tuple(range(axis, axis + m)) + tuple(range(axis)) + tuple(range(axis + m, len(taken)))
        src = f"xp.permute_dims({src}, {order})"
    return src


def _kshapes(ctx):
    return {name: ctx.shapes[name] for name in ctx.names if name.startswith("k") and name[1:].isdigit()}


def _index_forward(ctx):
    # the input's shape, read at run time for the adjoint's zeros: the program does not
    # name sizes that may vary (a batch)
    return f"y = {_getitem('x', ctx.layout, _kshapes(ctx), ctx.shapes['x'])}\ns = x.shape"


def _store(target, sign, value, layout, kshapes, shape, selected):
    """Source of ``target[key] <sign> value`` for a basic key, ``target`` of ``shape`` and
    ``target[key]`` of shape ``selected``: an assignment in the standard takes no None, so
    a key with None drops it and the value is shaped to fit."""
    entries = _entries(layout, kshapes)
    if any(kind == "n" for kind, _ in entries):
        kept = [(e, entry) for e, entry in zip(entries, layout) if e[0] != "n"]
        entries = [e for e, _ in kept]
        dummy = tuple(0 if entry[0] in "ki" else slice(*entry[1:]) if entry[0] == "s" else Ellipsis
                      for _, entry in kept)
        target_shape = np.broadcast_to(np.empty((), np.int8), shape)[dummy].shape
        value = f"xp.reshape(xp.broadcast_to({value}, {tuple(selected)}), {target_shape})"
    return f"{target}[{_subscript(entries, len(shape), store=True)}] {sign} {value}"


def _index_grad(ctx):
    if _is_advanced(ctx):
        return f"dx = scratch_zeros(s, dtype)\nadd_at(dx, {_format_index(ctx.layout, True)}, dy)"
    return "dx = scratch_zeros(s, dtype)\n" + _store("dx", "=", "dy", ctx.layout, _kshapes(ctx),
                                                      ctx.shapes["x"], ctx.shape)


def _index_accumulate(ctx):
    if _is_advanced(ctx):
        return f"add_at(acc, {_format_index(ctx.layout, True)}, dy)"
    return _store("acc", "+=", "dy", ctx.layout, _kshapes(ctx), ctx.shapes["x"], ctx.shape)


def _scatter_forward(ctx):
    if any(len(ctx.shapes[name]) > 0 for name in ctx.names[1:]):
        return f"y = scratch_zeros(shape, dtype)\nadd_at(y, {_format_index(ctx.layout, True)}, g)"
    selected = _index_shape(ctx.shape, *[ctx.shapes[name] for name in ctx.names[1:]], ctx.layout)
    return "y = scratch_zeros(shape, dtype)\n" + _store("y", "=", "g", ctx.layout, _kshapes(ctx),
                                                         ctx.shape, selected)


def _scatter_shape(g, *rest):
    *index_shapes, layout, shape = rest
    return shape


def _scatter_grad(ctx):
    # dy[key] has the shape of x[key], which g (a gradient that may broadcast) need not have:
    # said here, so that the engine sums it down to g's shape
    selected = _index_shape(ctx.shape, *[ctx.shapes[name] for name in ctx.names[1:]], ctx.layout)
    return Grad(_getitem("dy", ctx.layout, _kshapes(ctx), ctx.shape), shape=selected, view=True)


def _scatter_symbolic(ctx, build, bindings):
    inputs = (bindings["dy"],) + tuple(bindings[name] for name in ctx.names[1:])
    return build(INDEX, inputs, (ctx.layout,))


SCATTER = declare("scatter", ("g",), _scatter_forward, {"g": _scatter_grad},
                  symbolic={"g": _scatter_symbolic},
                  attrs=("layout", "shape"), shape=_scatter_shape, variadic="k", n_differentiable=1,
                  implicit_dy=False, dtype=lambda inputs, attrs: inputs[0].dtype,
                  batch=batching.scatter, doc="zeros of shape with g added at [key] (repeated indices add up): the "
                      "adjoint of indexing, as an op so it can be differentiated again")


def _index_symbolic(ctx, build, bindings):
    inputs = (bindings["dy"],) + tuple(bindings[name] for name in ctx.names[1:])
    return build(SCATTER, inputs, (ctx.layout, ctx.shapes["x"]))


INDEX = declare("index", ("x",), _index_forward,
                {"x": _index_grad}, accumulate={"x": _index_accumulate},
                symbolic={"x": _index_symbolic},
                attrs=("layout",), shape=_index_shape, implicit_dy=True, variadic="k",
                n_differentiable=1, dtype=lambda inputs, attrs: inputs[0].dtype,
                batch=batching.index, doc="x[key] with ints, slices, None, ... and integer arrays; repeated "
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


def _pad_grad(ctx):
    if ctx.mode == "constant":
        # the widths only (``before:-after``), not the sizes: the same view for any size
        inner = tuple(slice(before or None, -after if after else None) for before, after in ctx.widths)
        return Grad(f"dy[{_slices(inner)}]", view=True)
    return "pad_fold(dy, widths, mode)"


def _slices(slices):
    return ", ".join(f"{'' if s.start is None else s.start}:{'' if s.stop is None else s.stop}"
                     for s in slices) or "()"


PAD_FOLD = declare("pad_fold", ("x",), "pad_fold(x, widths, mode)", {"x": "pad_array(dy, widths, mode, 0.0)"},
                   attrs=("widths", "mode"),
                   shape=lambda x, widths, mode: tuple(s - b - a for s, (b, a) in zip(x, widths)),
                   implicit_dy=False,
                   batch=batching.pad, doc="border values added back onto the elements reflect / edge padding copied "
                       "them from: the adjoint of pad, as an op so it can be differentiated again")

PAD = declare("pad", ("x",), "pad_array(x, widths, mode, value)", {"x": _pad_grad},
              attrs=("widths", "mode", "value"), shape=_pad_shape,
              batch=batching.pad, doc="pads with a constant, by reflection, or by replicating the edge; the "
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
    sizes = [ctx.shapes[name][axis] for name in ctx.names]
    i = ctx.slot
    start, stop = sum(sizes[:i]), sum(sizes[:i + 1])
    # Counted from the front before the largest part and from the back after it, so the
    # code does not name the largest part's size (a sequence whose length varies): one
    # program serves every length (``transform.families``).
    big = sizes.index(max(sizes))
    after = sum(sizes[i + 1:])
    if i > big and after + sizes[i]:
        start = -(after + sizes[i])
    if i >= big:
        stop = -after if after else None
    key = ", ".join([":"] * axis + [f"{start or ''}:{'' if stop is None else stop}"]
                    + ["..."] * (axis + 1 < len(ctx.shape)))
    return Grad(f"dy[{key}]", view=True)


CONCATENATE = declare("concatenate", (), lambda ctx: f"xp.concat({_operands(ctx)}, axis={ctx.axis})",
                      {"x": _concatenate_grad}, attrs=("axis",), shape=_concatenate_shape,
                      variadic="x", dtype=lambda inputs, attrs: converted_result_dtype(inputs),
                      batch=batching.over_axis(), doc="joins values along an existing axis")


def _stack_shape(*rest):
    *shapes, axis = rest
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"all shapes must be equal, got {' and '.join(map(str, shapes))}")
    return shapes[0][:axis] + (len(shapes),) + shapes[0][axis:]


def _stack_grad(ctx):
    key = ", ".join([":"] * ctx.axis + [str(ctx.slot)] + ["..."] * (ctx.axis + 1 < len(ctx.shape)))
    return Grad(f"dy[{key}]", view=True)


STACK = declare("stack", (), lambda ctx: f"xp.stack({_operands(ctx)}, axis={ctx.axis})",
                {"x": _stack_grad}, attrs=("axis",), shape=_stack_shape, variadic="x",
                dtype=lambda inputs, attrs: converted_result_dtype(inputs),
                batch=batching.over_axis(), doc="joins values along a new axis")


# ---- index update (JAX's ``x.at[key].set(u)`` and friends) -----------------------------------------
# ``index_update(x, u, k0, k1, ...)``: a copy of x with u written at [key] (``layout`` as for index)
# by ``mode``: "set" (the last of repeated writes wins), "add" and "multiply" (repeated writes
# accumulate, as np.add.at / np.multiply.at), "min" and "max" (the extreme of x and every write).
# u broadcasts to the shape of x[key] and has x's dtype. Each adjoint is written twice: as NumPy
# source for compiled code, and (``symbolic``) as a graph of catalogue ops for higher orders.

_UFUNC = {"add": "add", "multiply": "multiply", "min": "minimum", "max": "maximum"}
_AUGMENTED = {"add": "+=", "multiply": "*="}


def _update_advanced(ctx):
    """Whether the key holds an integer array (then a place may be written more than once)."""
    return any(len(ctx.shapes[name]) > 0 for name in ctx.names[2:])


def _selected(ctx):
    """The shape of x[key]."""
    index_shapes = [ctx.shapes[name] for name in ctx.names[2:]]
    return _index_shape(ctx.shapes["x"], *index_shapes, ctx.layout)


def _update_shape(x, u, *rest):
    *index_shapes, layout, mode = rest
    if mode not in ("set", "add", "multiply", "min", "max"):
        raise ShapeError(f"unknown update mode {mode!r}")
    selected = _index_shape(x, *index_shapes, layout)
    padded = (1,) * (len(selected) - len(u)) + tuple(u)
    if len(u) > len(selected) or any(a != b and a != 1 for a, b in zip(padded, selected)):
        raise ShapeError(f"an update of shape {u} does not broadcast to the shape {selected} of "
                         f"x[key] for x of shape {x}")
    return x


def _update_key(ctx):
    return ctx.layout, _kshapes(ctx), ctx.shapes["x"]


def _update_forward(ctx):
    layout, kshapes, shape = _update_key(ctx)
    selected = _selected(ctx)
    if _update_advanced(ctx):
        return (f"y = xp.asarray(x, copy=True)\n"
                f"update_at({_UFUNC.get(ctx.mode, 'set')!r}, y, {_format_index(layout, True)}, u)")
    if ctx.mode in _AUGMENTED:
        return "y = xp.asarray(x, copy=True)\n" + _store("y", _AUGMENTED[ctx.mode], "u", layout, kshapes,
                                                         shape, selected)
    value = "u" if ctx.mode == "set" else f"xp.{_UFUNC[ctx.mode]}({_getitem('y', layout, kshapes, shape)}, u)"
    return "y = xp.asarray(x, copy=True)\n" + _store("y", "=", value, layout, kshapes, shape, selected)


def _counts(ctx, hits):
    """Source for ``c``: how many of x[i] and the writes to i reach the extreme y[i] (>= 1)."""
    layout, kshapes, shape = _update_key(ctx)
    hits = f"xp.astype({hits}, dtype)"
    if _update_advanced(ctx):
        return f"c = xp.astype(x == y, dtype)\nadd_at(c, {_format_index(layout, True)}, {hits})"
    return "c = xp.astype(x == y, dtype)\n" + _store("c", "+=", hits, layout, kshapes, shape, _selected(ctx))


def _update_grad_x(ctx):
    layout, kshapes, shape = _update_key(ctx)
    mode, advanced = ctx.mode, _update_advanced(ctx)
    key = _format_index(layout, True)
    if mode == "add":
        return Grad("dy", view=True)
    if mode in ("set", "multiply"):
        value = "0" if mode == "set" else "u"
        if advanced:
            return f"dx = xp.asarray(dy, copy=True)\nupdate_at({_UFUNC.get(mode, 'set')!r}, dx, {key}, {value})"
        sign = "=" if mode == "set" else "*="
        return "dx = xp.asarray(dy, copy=True)\n" + _store("dx", sign, value, layout, kshapes, shape,
                                                            _selected(ctx))
    return _counts(ctx, f"u == {_getitem('y', layout, kshapes, shape)}") + "\ndx = xp.where(x == y, dy / c, 0)"


def _update_grad_u(ctx):
    layout, kshapes, shape = _update_key(ctx)
    mode, selected = ctx.mode, _selected(ctx)
    advanced = _update_advanced(ctx)

    def at(target):
        return _getitem(target, layout, kshapes, shape)
    if mode == "add" or (mode == "set" and not advanced):
        return Grad(at("dy"), shape=selected, view=True)
    if mode == "set":
        # Only the write that won (the last, as NumPy assigns) gets a gradient: label the
        # writes, assign the labels the same way, and see whose label stayed.
        return Grad(f"label = xp.reshape(xp.arange({math.prod(selected)}), {selected})\n"
                    f"won = xp.zeros(x_shape, dtype=xp.int64)\n"
                    f"update_at('set', won, {_format_index(layout, True)}, label)\n"
                    f"dx = xp.where({at('won')} == label, {at('dy')}, 0)", shape=selected)
    if mode == "multiply":
        if not advanced:
            return Grad(f"{at('dy')} * {at('x')}", shape=selected)
        # d/du_j of x[i] * prod_k u_k (k: the writes to place i) is x[i] times the product of
        # the other writes to i (group_others: exact with zeros, no division).
        places = f"xp.reshape(xp.arange({math.prod(ctx.shapes['x'])}), x_shape)"
        return Grad(f"place = {at(places)}\n"
                    f"others = group_others(xp.reshape(xp.broadcast_to(u, {selected}), (-1,)), "
                    f"xp.reshape(place, (-1,)))\n"
                    f"dx = {at('dy')} * {at('x')} * xp.reshape(others, {selected})", shape=selected)
    return Grad(_counts(ctx, f"u == {at('y')}") + f"\ndx = xp.where(u == {at('y')}, {at('(dy / c)')}, 0)",
                shape=selected)


def _constant(value, bindings):
    """A constant of the gradient graph, in the library (and on the device) of ``dy``."""
    return leaf(move(value, bindings["dy"]._node.space))


def _keys(ctx, bindings):
    return tuple(bindings[name] for name in ctx.names[2:])


def _gather(build, ctx, bindings, g):
    return build(INDEX, (g,) + _keys(ctx, bindings), (ctx.layout,))


def _update(build, ctx, bindings, x, u, mode):
    return build(INDEX_UPDATE, (x, u) + _keys(ctx, bindings), (ctx.layout, mode))


def _scatter_add(build, ctx, bindings, g):
    return build(SCATTER, (g,) + _keys(ctx, bindings), (ctx.layout, ctx.shapes["x"]))


def _where(build, c, a, b):
    return build("where", (c, a, b))


def _zero(dtype, bindings):
    return _constant(np.zeros((), dtype), bindings)


def _symbolic_counts(build, ctx, bindings):
    x, u, y = bindings["x"], bindings["u"], bindings["y"]
    hit_u = build("equal", (u, _gather(build, ctx, bindings, y)))
    hit_x = build("equal", (x, y))
    dtype = ctx.dtype
    c = build("cast", (hit_x,), (dtype,)) + _scatter_add(build, ctx, bindings,
                                                         build("cast", (hit_u,), (dtype,)))
    return hit_x, hit_u, c


def _update_symbolic_x(ctx, build, bindings):
    dy, u, mode = bindings["dy"], bindings["u"], ctx.mode
    if mode == "set":
        return _update(build, ctx, bindings, dy, _zero(ctx.dtype, bindings), "set")
    if mode == "add":
        return dy
    if mode == "multiply":
        return _update(build, ctx, bindings, dy, u, "multiply")
    hit_x, _, c = _symbolic_counts(build, ctx, bindings)
    return _where(build, hit_x, dy / c, _zero(ctx.dtype, bindings))


def _update_symbolic_u(ctx, build, bindings):
    dy, x, mode = bindings["dy"], bindings["x"], ctx.mode
    selected = _selected(ctx)
    advanced = _update_advanced(ctx)
    gathered = _gather(build, ctx, bindings, dy)
    if mode == "add" or (mode == "set" and not advanced):
        return gathered
    zero = _zero(ctx.dtype, bindings)
    if mode == "set":
        label = _constant(np.arange(math.prod(selected)).reshape(selected), bindings)
        won = _update(build, ctx, bindings, _constant(np.zeros(ctx.shapes["x"], np.intp), bindings), label, "set")
        return _where(build, build("equal", (_gather(build, ctx, bindings, won), label)), gathered, zero)
    if mode == "multiply":
        product = gathered * _gather(build, ctx, bindings, x)
        if not advanced or not math.prod(selected):
            return product
        return product * _symbolic_others(build, ctx, bindings, selected)
    _, hit_u, c = _symbolic_counts(build, ctx, bindings)
    return _where(build, hit_u, _gather(build, ctx, bindings, dy / c), zero)


def _symbolic_others(build, ctx, bindings, selected):
    """``group_others`` (see kernels.py) as a graph of catalogue ops, so that it differentiates
    again: the writes sorted by the place they go to, then products along the runs of equal
    places by doubling (log2(n) steps of shifted products), forwards and backwards."""
    n = math.prod(selected)
    u = build("reshape", (build("broadcast_to", (bindings["u"],), (selected,)) if bindings["u"].shape != selected
                          else bindings["u"],), ((n,),))
    places = _constant(np.arange(math.prod(ctx.shapes["x"])).reshape(ctx.shapes["x"]), bindings)
    place = build("reshape", (_gather(build, ctx, bindings, places),), ((n,),))
    order = build("argsort", (place,), (0, "stable"))
    v = build(INDEX, (u, order), ((("k", 0),),))
    g = build(INDEX, (place, order), ((("k", 0),),))
    one = _constant(np.ones((), ctx.dtype), bindings)

    def piece(a, start, stop, step=None):
        return build(INDEX, (a,), ((("s", start, stop, step),),))

    def scan(values, labels):
        d = 1
        while d < n:
            same = build("equal", (piece(labels, d, None), piece(labels, None, -d)))
            tail = _where(build, same, piece(values, d, None) * piece(values, None, -d), piece(values, d, None))
            values = build(CONCATENATE, (piece(values, None, d), tail), (0,))
            d *= 2
        return values

    def shifted(scanned, labels):
        # for each i, the scan at its neighbour (i - 1) where that shares i's run, else 1
        same = build("equal", (piece(labels, 1, None), piece(labels, None, -1)))
        return build(CONCATENATE, (build("reshape", (one,), ((1,),)),
                                   _where(build, same, piece(scanned, None, -1), one)), (0,))

    before = shifted(scan(v, g), g)
    backwards_v, backwards_g = piece(v, None, None, -1), piece(g, None, None, -1)
    after = piece(shifted(scan(backwards_v, backwards_g), backwards_g), None, None, -1)
    others = build(SCATTER, (before * after, order), ((("k", 0),), (n,)))
    return build("reshape", (others,), (selected,))


INDEX_UPDATE = declare("index_update", ("x", "u"), _update_forward,
                       {"x": _update_grad_x, "u": _update_grad_u},
                       symbolic={"x": _update_symbolic_x, "u": _update_symbolic_u},
                       attrs=("layout", "mode"), shape=_update_shape, variadic="k", n_differentiable=2,
                       dtype=lambda inputs, attrs: inputs[0].dtype,
                       batch=batching.index_update, doc="a copy of x with u written at [key]: set (the last of repeated writes "
                           "wins), add / multiply (repeated writes accumulate), min / max")
