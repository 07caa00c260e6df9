"""Shape functions: reshape, transpose, joining, splitting, repeating, flipping and
rolling, padding, diagonals and triangles, insert and delete, and building an array
from a (nested) list of variables (``array``, ``r_``, ``c_``). They move elements
without changing them, so each gradient moves them back: each is a composition of
reshape, transpose, broadcast_to, concatenate, index (slices, or integer arrays whose
repeats add up) and where, or the pad op. (``linspace`` between variable ends is here
too: evenly spaced values, with gradients to both ends.)

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> a = neuronika.from_ndarray(numpy.array([1.0, 2.0])).requires_grad()
>>> b = nnp.array([a, 2 * a])          # a list holding variables is stacked, differentiably
>>> b.shape
(2, 2)
>>> nnp.sum(nnp.transpose(b) * numpy.array([1.0, 3.0])).backward()
>>> a.grad
array([7., 7.])
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..graph import apply
from ..variable import Var, _wrap
from ._core import OPS, axis_, build, function, holds_var, in_space_of, located, node_of, nodes_of

__all__ = ["array", "asarray", "reshape", "ravel", "transpose", "swapaxes", "moveaxis", "expand_dims",
           "squeeze", "broadcast_to", "concatenate", "stack", "pad"]


def as_var(x, name="operand") -> Var:
    return x if isinstance(x, Var) else _wrap(node_of(x, name=name))


def _stack_nested(obj, dtype):
    """A nested list or tuple holding variables, stacked along new leading axes."""
    if isinstance(obj, (list, tuple)):
        parts = [_stack_nested(o, dtype) for o in obj]
        if not parts:
            raise located("array: an empty list cannot be stacked with variables", ValueError)
        return stack(parts)
    return as_var(obj if isinstance(obj, Var) else np.asarray(obj, dtype), "array")


def array(object, dtype=None, *, copy=True, order="K", subok=False, ndmin=0, like=None):  # noqa: A002
    """``numpy.array``: a variable stays in the graph (converted to ``dtype`` if given); a
    list holding variables is stacked, differentiably; anything else is NumPy's own array.

    >>> import numpy, neuronika, neuronika.numpy as nnp
    >>> nnp.array([1.0, 2.0])
    array([1., 2.])
    """
    if isinstance(object, Var):
        result = object
    elif isinstance(object, (list, tuple)) and holds_var(object, depth=32):
        result = _stack_nested(object, dtype)
    else:
        return np.array(object, dtype=dtype, copy=copy, order=order, subok=subok, ndmin=ndmin)
    if dtype is not None and np.dtype(dtype) != result.dtype:
        from ._ufuncs import astype
        result = astype(result, dtype)
    if ndmin > result.ndim:
        result = reshape(result, (1,) * (ndmin - result.ndim) + result.shape)
    return result


def asarray(a, dtype=None, order=None, *, copy=None, like=None):
    """``numpy.asarray``: like ``array``, never copying a plain array."""
    if isinstance(a, Var) or (isinstance(a, (list, tuple)) and holds_var(a, depth=32)):
        return array(a, dtype)
    return np.asarray(a, dtype=dtype, order=order)


_RESHAPE = OPS["reshape"]


def _new_shape(x, shape, name="reshape"):
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(operator.index(d) for d in shape)
    size = x.size
    if shape.count(-1) > 1:
        raise located(f"{name}: only one dimension can be -1, got {shape}")
    if -1 in shape:
        known = math.prod(d for d in shape if d != -1)
        if known == 0 or size % known:
            raise located(f"{name}: cannot reshape {x.shape} ({size} elements) to {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    if math.prod(shape) != size or any(d < 0 for d in shape):
        raise located(f"{name}: cannot reshape {x.shape} ({size} elements) to {shape}")
    return shape


@function(np.reshape)
def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    """``numpy.reshape``; one dimension may be -1. Only C order."""
    if order != "C":
        raise located(f"reshape: only order='C' is supported on variables, got {order!r}", TypeError)
    a = as_var(a, "reshape")
    given = newshape if shape is None else shape
    shape = _new_shape(a, given)
    if shape == a.shape:
        return a
    given = (given,) if isinstance(given, (int, np.integer)) else tuple(given)
    if -1 in given:                     # kept as written: see ops.shape.RESHAPE
        shape = tuple(operator.index(d) for d in given)
    return _wrap(apply(_RESHAPE, (a._node,), (shape,)))


@function(np.ravel)
def ravel(a, order="C"):
    """``numpy.ravel``: the elements as a 1-D value."""
    a = as_var(a, "ravel")
    return reshape(a, (a.size,), order)


@function(np.transpose)
def transpose(a, axes=None):
    """``numpy.transpose``: the axes reversed, or permuted as ``axes`` says."""
    a = as_var(a, "transpose")
    ndim = a.ndim
    if axes is None:
        axes = tuple(range(ndim - 1, -1, -1))
    else:
        axes = tuple(axes)
        if len(axes) != ndim:
            raise located(f"transpose: axes {axes} do not match the {ndim} axes of shape {a.shape}")
        axes = tuple(axis_("transpose", x, ndim) for x in axes)
        if sorted(axes) != list(range(ndim)):
            raise located(f"transpose: {axes} is not a permutation of the {ndim} axes of shape {a.shape}")
    if axes == tuple(range(ndim)):
        return a
    return build("transpose", (a,), (axes,))


@function(np.swapaxes)
def swapaxes(a, axis1, axis2):
    """``numpy.swapaxes``."""
    a = as_var(a, "swapaxes")
    order = list(range(a.ndim))
    i, j = axis_("swapaxes", axis1, a.ndim), axis_("swapaxes", axis2, a.ndim)
    order[i], order[j] = order[j], order[i]
    return transpose(a, order)


@function(np.moveaxis)
def moveaxis(a, source, destination):
    """``numpy.moveaxis``: axes moved to new positions, the others keeping their order."""
    a = as_var(a, "moveaxis")
    source = [source] if isinstance(source, (int, np.integer)) else list(source)
    destination = [destination] if isinstance(destination, (int, np.integer)) else list(destination)
    if len(source) != len(destination):
        raise located(f"moveaxis: source {source} and destination {destination} must have the same "
                      f"number of elements", ValueError)
    source = [axis_("moveaxis", s, a.ndim) for s in source]
    destination = [axis_("moveaxis", d, a.ndim) for d in destination]
    order = [n for n in range(a.ndim) if n not in source]
    for dest, src in sorted(zip(destination, source)):
        order.insert(dest, src)
    return transpose(a, order)


@function(np.expand_dims)
def expand_dims(a, axis):
    """``numpy.expand_dims``: new axes of size 1 at the positions ``axis`` names."""
    a = as_var(a, "expand_dims")
    positions = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    ndim = a.ndim + len(positions)
    positions = sorted(axis_("expand_dims", p, ndim) for p in positions)
    if len(set(positions)) != len(positions):
        raise located(f"expand_dims: axis {axis} repeats an axis")
    shape = list(a.shape)
    for p in positions:
        shape.insert(p, 1)
    return reshape(a, tuple(shape))


@function(np.squeeze)
def squeeze(a, axis=None):
    """``numpy.squeeze``: axes of size 1 removed (all, or those named, which must be 1)."""
    a = as_var(a, "squeeze")
    if axis is None:
        return reshape(a, tuple(d for d in a.shape if d != 1))
    positions = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    positions = {axis_("squeeze", p, a.ndim) for p in positions}
    for p in positions:
        if a.shape[p] != 1:
            raise located(f"squeeze: cannot select an axis to squeeze out which has size not equal to "
                          f"one: axis {p} of shape {a.shape} has size {a.shape[p]}")
    return reshape(a, tuple(d for i, d in enumerate(a.shape) if i not in positions))


@function(np.broadcast_to)
def broadcast_to(array, shape, subok=False):
    """``numpy.broadcast_to``: the gradient sums over the broadcast axes."""
    array = as_var(array, "broadcast_to")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(d) for d in shape)
    if shape == array.shape:
        return array
    return build("broadcast_to", (array,), (shape,))


def _joined(name, arrays):
    arrays = list(arrays) if not isinstance(arrays, Var) else [arrays[i] for i in range(len(arrays))]
    if not arrays:
        raise located(f"{name}: need at least one array to join", ValueError)
    # each made an array on its own, as NumPy's joins do: stack([x32, 1.5]) is float64
    nodes = tuple(node_of(a, None, name) for a in arrays)
    like = next((n for n in nodes if n.space is not None), None)
    return nodes if like is None else tuple(in_space_of(n, like) for n in nodes)


@function(np.concatenate)
def concatenate(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """``numpy.concatenate``: join along an existing axis (``axis=None`` flattens first)."""
    from ._core import refuse
    refuse("concatenate", "out", out)
    nodes = _joined("concatenate", arrays)
    if axis is None:
        nodes = tuple(reshape(_wrap(n), (-1,))._node for n in nodes)
        axis = 0
    if any(len(n.shape) == 0 for n in nodes):
        raise located("concatenate: zero-dimensional arrays cannot be concatenated", ValueError)
    axis = axis_("concatenate", axis, len(nodes[0].shape))
    result = _wrap(apply(OPS["concatenate"], nodes, (axis,)))
    if dtype is not None:
        from ._ufuncs import astype
        result = astype(result, dtype)
    return result


@function(np.stack)
def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """``numpy.stack``: join along a new axis."""
    from ._core import refuse
    refuse("stack", "out", out)
    nodes = _joined("stack", arrays)
    axis = axis_("stack", axis, len(nodes[0].shape) + 1)
    result = _wrap(apply(OPS["stack"], nodes, (axis,)))
    if dtype is not None:
        from ._ufuncs import astype
        result = astype(result, dtype)
    return result


_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _pad_pairs(pad_width, shape):
    """NumPy's ``pad_width``: an int, a pair, one pair per axis, or a dict {axis: width or pair}."""
    ndim = len(shape)
    if isinstance(pad_width, dict):
        pairs = [(0, 0)] * ndim
        for axis, width in pad_width.items():
            pairs[axis_("pad", axis, ndim)] = tuple(np.broadcast_to(np.asarray(width, dtype=np.int64), (2,)))
        pad_width = pairs
    try:
        pairs = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (ndim, 2))
    except (ValueError, TypeError):
        raise located(f"pad: pad_width {pad_width!r} does not give a (before, after) pair for each of "
                      f"the {ndim} axes of shape {shape}") from None
    if (pairs < 0).any():
        raise located(f"pad: widths must not be negative, got {pad_width!r}")
    return tuple((int(b), int(a)) for b, a in pairs)


@function(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    """``numpy.pad`` with modes 'constant' (``constant_values``), 'edge', 'reflect',
    'symmetric' and 'wrap'; the gradient of the border is added back onto the elements
    it copies."""
    array = as_var(array, "pad")
    if mode not in _PAD_MODES:
        raise located(f"pad: mode {mode!r} is not supported on variables; use one of "
                      f"{', '.join(map(repr, _PAD_MODES))}", ValueError)
    value = kwargs.pop("constant_values", 0) if mode == "constant" else 0
    if mode in ("reflect", "symmetric") and kwargs.pop("reflect_type", "even") != "even":
        raise located("pad: reflect_type='odd' is not supported on variables", TypeError)
    if kwargs:
        raise located(f"pad: unsupported keyword arguments for mode {mode!r}: {', '.join(sorted(kwargs))}",
                      ValueError)
    if np.ndim(value) != 0 or isinstance(value, Var):
        raise located("pad: constant_values must be one number on variables", TypeError)
    pairs = _pad_pairs(pad_width, array.shape)
    if mode != "constant":
        for axis, ((before, after), size) in enumerate(zip(pairs, array.shape)):
            if size == 0 and (before or after):
                raise located(f"pad: can't extend empty axis {axis} using modes other than 'constant' "
                              f"or 'empty' (shape {array.shape})", ValueError)
    if mode in ("symmetric", "wrap") or (mode == "reflect" and any(
            max(p) >= size for p, size in zip(pairs, array.shape))):
        return _pad_by_copies(array, pairs, mode)
    if not any(b or a for b, a in pairs):
        return array
    return build("pad", (array,), (pairs, mode, float(value)))


def pad_op(array, pad_width, mode="constant", value=0.0):
    """One pad op (the crate's ``Var.pad`` and the nn layers): modes 'constant', 'edge' and
    'reflect', whose widths must stay below the size of their axis, as in PyTorch."""
    array = as_var(array, "pad")
    return build("pad", (array,), (_pad_pairs(pad_width, array.shape), mode,
                                   float(value) if mode == "constant" else 0.0))


def _runs(source):
    """``source`` (indices) as runs of consecutive indices: (start, length, step) with step +-1."""
    runs, i, n = [], 0, len(source)
    while i < n:
        j, step = i + 1, 1
        if j < n and abs(int(source[j]) - int(source[i])) == 1:
            step = int(source[j]) - int(source[i])
            while j < n and int(source[j]) - int(source[j - 1]) == step:
                j += 1
        runs.append((int(source[i]), j - i, step))
        i = j
    return runs


def _pad_by_copies(x, pairs, mode):
    """Padding that copies elements (reflect, symmetric, wrap, for any width): along each axis,
    the runs of the index map NumPy's own pad gives, joined. The gradient of each copy goes
    back to where it was copied from."""
    for axis, (before, after) in enumerate(pairs):
        if not before and not after:
            continue
        size = x.shape[axis]
        source = np.pad(np.arange(size), (before, after), mode=mode)
        pieces = []
        for part in (source[:before], None, source[before + size:]):
            if part is None:
                pieces.append(x)
                continue
            for start, length, step in _runs(part):
                stop = start + length if step == 1 else start - length
                pieces.append(_slices(x, (slice(None),) * axis + (
                    slice(start, None if stop < 0 else stop, step),)))
        x = concatenate(pieces, axis=axis)
    return x


def _slices(x, key):
    """``x[key]`` for a key of slices and ``...``, built directly (nothing to validate)."""
    layout = []
    for part in key:
        if part is Ellipsis:
            layout.append(("e",))
        else:
            layout.append(("s",) + tuple(None if v is None else int(v) for v in (part.start, part.stop, part.step)))
    while layout and layout[-1] == ("s", None, None, None):
        layout.pop()
    if not layout:
        return x
    return _wrap(apply(_INDEX, (x._node,), (tuple(layout),)))


_INDEX = OPS["index"]


# ---- what depends only on a variable's shape and dtype: no gradient to lose --------------------

def _metadata(numpy_fn, why):
    def register(fn):
        return function(numpy_fn, differentiable=False, why=why)(fn)
    return register


@_metadata(np.shape, "a shape")
def shape(a):
    """``numpy.shape``: the shape tuple."""
    return a.shape if isinstance(a, Var) else np.shape(a)


@_metadata(np.ndim, "an int")
def ndim(a):
    """``numpy.ndim``: the number of axes."""
    return a.ndim if isinstance(a, Var) else np.ndim(a)


@_metadata(np.size, "an int")
def size(a, axis=None):
    """``numpy.size``: the number of elements (along ``axis``)."""
    if not isinstance(a, Var):
        return np.size(a, axis)
    return a.size if axis is None else a.shape[axis_("size", axis, a.ndim)]


def _like(numpy_fn, name):
    def fn(a, *args, **kwargs):
        if isinstance(a, Var):
            a = np.broadcast_to(np.zeros((), a.dtype), a.shape)
        return numpy_fn(a, *args, **kwargs)
    fn.__name__ = name
    fn.__doc__ = f"``numpy.{name}`` (an array, not a variable: it depends only on the shape and dtype)."
    return function(numpy_fn, name=name, differentiable=False,
                    why="a constant that depends only on the shape and dtype")(fn)


zeros_like = _like(np.zeros_like, "zeros_like")
ones_like = _like(np.ones_like, "ones_like")
empty_like = _like(np.empty_like, "empty_like")
full_like = _like(np.full_like, "full_like")


@_metadata(np.result_type, "a dtype")
def result_type(*arrays_and_dtypes):
    """``numpy.result_type``, a variable standing for its dtype."""
    return np.result_type(*[a.dtype if isinstance(a, Var) else a for a in arrays_and_dtypes])


@_metadata(np.iscomplexobj, "a bool")
def iscomplexobj(x):
    """``numpy.iscomplexobj``."""
    return x.dtype.kind == "c" if isinstance(x, Var) else np.iscomplexobj(x)


@_metadata(np.isrealobj, "a bool")
def isrealobj(x):
    """``numpy.isrealobj``."""
    return x.dtype.kind != "c" if isinstance(x, Var) else np.isrealobj(x)


@function(np.copy)
def copy(a, order="K", subok=False):
    """``numpy.copy``: the value itself (variables are immutable)."""
    return as_var(a, "copy")


__all__ += ["shape", "ndim", "size", "zeros_like", "ones_like", "empty_like", "full_like",
            "result_type", "iscomplexobj", "isrealobj", "copy"]


# ---- at least n dimensions, broadcasting, joining ---------------------------------------------------

def _at_least(name, arys, shaped):
    results = []
    for a in arys:
        a = as_var(a, name)
        results.append(reshape(a, shaped(a.shape)))
    return results[0] if len(results) == 1 else tuple(results)


@function(np.atleast_1d)
def atleast_1d(*arys):
    """``numpy.atleast_1d``: a 0-d value becomes shape (1,) (several arguments: a tuple)."""
    return _at_least("atleast_1d", arys, lambda s: s if len(s) >= 1 else (1,))


@function(np.atleast_2d)
def atleast_2d(*arys):
    """``numpy.atleast_2d``: (n,) becomes (1, n), a 0-d value (1, 1)."""
    return _at_least("atleast_2d", arys, lambda s: s if len(s) >= 2 else (1,) * (2 - len(s)) + s)


@function(np.atleast_3d)
def atleast_3d(*arys):
    """``numpy.atleast_3d``: (n,) becomes (1, n, 1), (m, n) becomes (m, n, 1), 0-d (1, 1, 1)."""
    def shaped(s):
        return {0: (1, 1, 1), 1: (1,) + s + (1,), 2: s + (1,)}.get(len(s), s)
    return _at_least("atleast_3d", arys, shaped)


@function(np.broadcast_arrays)
def broadcast_arrays(*args, subok=False):
    """``numpy.broadcast_arrays``: a tuple of the values broadcast to one shape; each gradient
    is summed back over its broadcast axes."""
    values = [as_var(a, "broadcast_arrays") for a in args]
    try:
        shape = np.broadcast_shapes(*[v.shape for v in values])
    except ValueError as error:
        raise located(f"broadcast_arrays: {error}", ValueError) from None
    return tuple(broadcast_to(v, shape) for v in values)


def _sequence(name, tup):
    if isinstance(tup, Var):
        return [tup[i] for i in range(len(tup))]
    if not isinstance(tup, (list, tuple)):
        raise located(f"{name}: arrays to stack must be passed as a sequence, got "
                      f"{type(tup).__name__}", TypeError)
    return list(tup)


def _as_list(result):
    return list(result) if isinstance(result, tuple) else [result]


@function(np.hstack)
def hstack(tup, *, dtype=None, casting="same_kind"):
    """``numpy.hstack``: join along the second axis (the first for 1-D values)."""
    arrays = _as_list(atleast_1d(*_sequence("hstack", tup)))
    axis = 0 if arrays and arrays[0].ndim == 1 else 1
    return concatenate(arrays, axis=axis, dtype=dtype, casting=casting)


@function(np.vstack)
def vstack(tup, *, dtype=None, casting="same_kind"):
    """``numpy.vstack``: join along the first axis, 1-D values as rows."""
    return concatenate(_as_list(atleast_2d(*_sequence("vstack", tup))), axis=0, dtype=dtype,
                       casting=casting)


@function(np.dstack)
def dstack(tup):
    """``numpy.dstack``: join along the third axis."""
    return concatenate(_as_list(atleast_3d(*_sequence("dstack", tup))), axis=2)


@function(np.column_stack)
def column_stack(tup):
    """``numpy.column_stack``: 1-D values as columns, joined along the second axis."""
    columns = []
    for a in _sequence("column_stack", tup):
        a = as_var(a, "column_stack")
        columns.append(reshape(a, (a.size, 1)) if a.ndim < 2 else a)
    return concatenate(columns, axis=1)


@function(np.append)
def append(arr, values, axis=None):
    """``numpy.append``: ``values`` joined after ``arr`` (both flattened when ``axis`` is None)."""
    arr = as_var(arr, "append")
    values = _wrap(in_space_of(as_var(values, "append")._node, arr._node))
    if axis is None:
        arr, values, axis = ravel(arr), ravel(values), 0
    return concatenate((arr, values), axis=axis)


@function(np.unstack)
def unstack(x, /, *, axis=0):
    """``numpy.unstack``: the tuple of slices along ``axis``."""
    x = as_var(x, "unstack")
    if x.ndim == 0:
        raise located("unstack: Input array must be at least 1-d.", ValueError)
    axis = axis_("unstack", axis, x.ndim)
    from ._indexing import getitem
    return tuple(getitem(x, (slice(None),) * axis + (i,)) for i in range(x.shape[axis]))


# ---- r_, c_ and linspace -----------------------------------------------------------------------------

class AxisJoiner:
    """``numpy.r_`` / ``numpy.c_`` that keep variables in the graph: ``r_[a, b, 1:3]`` joins
    its items along the first axis (``c_``: 1-D items as columns, along the last), with
    NumPy's rules: slices are ``arange`` (or ``linspace`` for a complex step), numbers are
    one element, a leading string ``'axis,ndmin,trans1d'`` sets the layout, and all items
    take one dtype. Without variables it is NumPy's own.

    >>> import numpy, neuronika, neuronika.numpy as nnp
    >>> x = neuronika.from_ndarray(numpy.array([1.0, 2.0])).requires_grad()
    >>> nnp.r_[x, 0.0, 5:7]
    VarDiff([1., 2., 0., 5., 6.], dtype=float64)
    >>> nnp.c_[x, x].shape
    (2, 2)
    """

    __slots__ = ("name", "_numpy", "axis", "ndmin", "trans1d")

    def __init__(self, name, numpy_object, axis, ndmin, trans1d):
        self.name, self._numpy = name, numpy_object
        self.axis, self.ndmin, self.trans1d = axis, ndmin, trans1d

    def __repr__(self):
        return f"neuronika.numpy.{self.name}"

    def __len__(self):
        return 0

    def __getitem__(self, key):
        items = key if isinstance(key, tuple) else (key,)
        if not holds_var(items):
            if isinstance(key, str):                 # the matrix syntax reads the caller's names
                import sys
                frame = sys._getframe(1)
                return np.bmat(key, frame.f_globals, frame.f_locals)
            return self._numpy[key]
        axis, ndmin, trans1d = self.axis, self.ndmin, self.trans1d
        parts, kinds = [], []
        for k, item in enumerate(items):
            if isinstance(item, str):
                if k != 0:
                    raise located(f"{self.name}: special directives must be the first entry.", ValueError)
                if item in ("r", "c"):
                    raise located(f"{self.name}: the matrix directive {item!r} is not supported on "
                                  f"variables", TypeError)
                fields = item.split(",")
                try:
                    if len(fields) == 1:
                        axis = int(item)
                    else:
                        axis, ndmin = int(fields[0]), int(fields[1])
                        if len(fields) == 3:
                            trans1d = int(fields[2])
                except ValueError:
                    raise located(f"{self.name}: unknown special directive {item!r}", ValueError) from None
                continue
            if isinstance(item, slice):
                start = 0 if item.start is None else item.start
                step = 1 if item.step is None else item.step
                if isinstance(step, (complex, np.complexfloating)):
                    part = np.linspace(start, item.stop, num=int(abs(step)))
                else:
                    part = np.arange(start, item.stop, step)
                if ndmin > 1:
                    part = np.array(part, ndmin=ndmin)
                    if trans1d != -1:
                        part = part.swapaxes(-1, trans1d)
                parts.append(part)
                kinds.append(part.dtype)
                continue
            if type(item) in np.ScalarType:
                parts.append(item)
                kinds.append(item)          # a Python number is weak, as in NumPy
                continue
            part = array(item) if isinstance(item, (Var, list, tuple)) else np.asarray(item)
            given = part.ndim
            if given < ndmin:
                part = reshape(part, (1,) * (ndmin - given) + part.shape)
                if trans1d != -1:
                    k2, k1 = ndmin - given, trans1d
                    if k1 < 0:
                        k1 += k2 + 1
                    order = list(range(ndmin))
                    part = transpose(part, order[:k1] + order[k2:] + order[k1:k2])
            parts.append(part)
            kinds.append(part.dtype)
        dtype = np.result_type(*kinds)
        joined = []
        for part in parts:
            if isinstance(part, Var):
                if part.dtype != dtype:
                    from ._ufuncs import astype
                    part = astype(part, dtype)
                if part.ndim < ndmin:
                    part = reshape(part, (1,) * (ndmin - part.ndim) + part.shape)
            else:
                part = np.array(part, ndmin=ndmin, dtype=dtype)
            joined.append(part)
        return concatenate(joined, axis=axis)


r_ = AxisJoiner("r_", np.r_, 0, 1, -1)
c_ = AxisJoiner("c_", np.c_, -1, 2, 0)


@function(np.linspace)
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    """``numpy.linspace`` with ``start`` and ``stop`` variables (numbers or arrays): ``num``
    evenly spaced values, ``start + i * (stop - start) / (num - 1)``, the last exactly
    ``stop`` when ``endpoint``; gradients flow to both ends."""
    from ._core import refuse
    from ._ufuncs import astype, floor
    refuse("linspace", "device", device, "cpu") if device is not None else None
    num = operator.index(num)
    if num < 0:
        raise located(f"linspace: Number of samples, {num}, must be non-negative.", ValueError)
    div = num - 1 if endpoint else num
    ends = nodes_of((start, stop), "linspace")
    like = next((n for n in ends if n.space is not None), None)
    start, stop = (_wrap(in_space_of(n, like)) for n in ends)
    inexact = np.result_type(start.dtype, stop.dtype, 0.0)
    start, stop = astype(start, inexact), astype(stop, inexact)
    delta = stop - start
    steps = _wrap(in_space_of(node_of(np.arange(0, num, dtype=inexact).reshape((-1,) + (1,) * delta.ndim)),
                              delta._node))
    step = delta / div if div > 0 else np.nan
    y = steps * (step if div > 0 else delta) + start
    if endpoint and num > 1:
        last = reshape(broadcast_to(stop, delta.shape), (1,) + delta.shape)
        y = concatenate([_slices(y, (slice(None, -1),)), last], axis=0)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        dtype = np.dtype(dtype)
        if dtype.kind in "iu":
            y = floor(y)
        y = astype(y, dtype)
    return (y, step) if retstep else y


__all__ += ["r_", "c_", "linspace"]


# ---- splitting -----------------------------------------------------------------------------------------

def _split(name, ary, indices_or_sections, axis, equal):
    ary = as_var(ary, name)
    axis = axis_(name, axis, ary.ndim)
    length = ary.shape[axis]
    try:
        points = [operator.index(p) for p in indices_or_sections]
    except TypeError:
        if isinstance(indices_or_sections, Var) or np.ndim(indices_or_sections):
            raise
        sections = int(indices_or_sections)
        if sections <= 0:
            raise located(f"{name}: number sections must be larger than 0.", ValueError) from None
        if equal and length % sections:
            raise located(f"{name}: array split does not result in an equal division: {length} "
                          f"elements along axis {axis} (shape {ary.shape}) into {sections} sections",
                          ValueError) from None
        each, extra = divmod(length, sections)
        sizes = [each + 1] * extra + [each] * (sections - extra)
        points = list(np.cumsum(sizes[:-1])) if sizes else []
    bounds = [0] + [int(p) for p in points] + [length]
    lead = (slice(None),) * axis
    pieces = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        # bounds in range (the standard leaves slices past the end unspecified), as NumPy reads them
        start, stop, _ = slice(start, stop).indices(length)
        stop = max(start, stop)
        pieces.append(_slices(ary, lead + (slice(start, stop),)) if (start, stop) != (0, length) else ary)
    return pieces


@function(np.split)
def split(ary, indices_or_sections, axis=0):
    """``numpy.split``: a list of sections along ``axis``: ``N`` equal ones, or cut at the
    indices listed."""
    return _split("split", ary, indices_or_sections, axis, equal=True)


@function(np.array_split)
def array_split(ary, indices_or_sections, axis=0):
    """``numpy.array_split``: like ``split``, ``N`` sections need not be equal (the first ones
    are one longer)."""
    return _split("array_split", ary, indices_or_sections, axis, equal=False)


def _split_along(name, ary, indices_or_sections, axis, least):
    ary = as_var(ary, name)
    if ary.ndim < least:
        raise located(f"{name} only works on arrays of {least} or more dimensions", ValueError)
    return _split(name, ary, indices_or_sections, axis, equal=True)


@function(np.hsplit)
def hsplit(ary, indices_or_sections):
    """``numpy.hsplit``: ``split`` along the second axis (the first for 1-D values)."""
    ary = as_var(ary, "hsplit")
    return _split_along("hsplit", ary, indices_or_sections, 1 if ary.ndim > 1 else 0, 1)


@function(np.vsplit)
def vsplit(ary, indices_or_sections):
    """``numpy.vsplit``: ``split`` along the first axis."""
    return _split_along("vsplit", ary, indices_or_sections, 0, 2)


@function(np.dsplit)
def dsplit(ary, indices_or_sections):
    """``numpy.dsplit``: ``split`` along the third axis."""
    return _split_along("dsplit", ary, indices_or_sections, 2, 3)


# ---- repeating ------------------------------------------------------------------------------------------

@function(np.tile)
def tile(A, reps):
    """``numpy.tile``: ``A`` repeated ``reps`` times along each axis (a broadcast: the gradient
    sums the copies)."""
    A = as_var(A, "tile")
    from ._core import constant_value
    reps = constant_value("tile", reps, "reps")
    reps = tuple(operator.index(r) for r in np.ravel(reps)) if np.ndim(reps) else (operator.index(reps),)
    if any(r < 0 for r in reps):
        raise located(f"tile: negative dimensions are not allowed (reps {reps})", ValueError)
    if len(reps) > A.ndim:
        A = reshape(A, (1,) * (len(reps) - A.ndim) + A.shape)
    reps = (1,) * (A.ndim - len(reps)) + reps
    if all(r == 1 for r in reps):
        return A
    expanded, target = [], []
    for r, size in zip(reps, A.shape):
        if r != 1 and size != 1:
            expanded.append(1)
            target.append(r)
        expanded.append(size)
        target.append(size * r if size == 1 else size)
    while len(expanded) > A.ndim and expanded[0] == 1:
        expanded.pop(0)                  # broadcast_to puts leading axes in by itself
    x = broadcast_to(reshape(A, tuple(expanded)), tuple(target))
    return reshape(x, tuple(r * size for r, size in zip(reps, A.shape)))


@function(np.repeat)
def repeat(a, repeats, axis=None):
    """``numpy.repeat``: each element repeated ``repeats`` times (one count, or one per element)
    along ``axis`` (of the flattened value when None); the gradient sums the copies."""
    from ._core import constant_value
    a = as_var(a, "repeat")
    repeats = np.asarray(constant_value("repeat", repeats, "repeats"))
    if axis is None:
        a, axis = ravel(a), 0
    axis = axis_("repeat", axis, a.ndim)
    size = a.shape[axis]
    try:
        positions = np.repeat(np.arange(size), repeats)
    except (ValueError, TypeError) as error:
        raise located(f"repeat: {error} ({size} elements along axis {axis} of shape {a.shape})",
                      type(error)) from None
    if repeats.size != 1:
        from ._indexing import getitem
        return getitem(a, (slice(None),) * axis + (positions,))
    count = int(repeats.reshape(-1)[0])
    if count == 1:
        return a
    shape = a.shape
    x = reshape(a, shape[:axis + 1] + (1,) + shape[axis + 1:])
    x = broadcast_to(x, shape[:axis + 1] + (count,) + shape[axis + 1:])
    return reshape(x, shape[:axis] + (size * count,) + shape[axis + 1:])


# ---- reordering -----------------------------------------------------------------------------------------

@function(np.flip)
def flip(m, axis=None):
    """``numpy.flip``: the order of the elements reversed along ``axis`` (all axes when None)."""
    m = as_var(m, "flip")
    from ._core import axes
    flipped = range(m.ndim) if axis is None else axes("flip", axis, m.ndim)
    return _slices(m, tuple(slice(None, None, -1) if d in flipped else slice(None) for d in range(m.ndim)))


@function(np.fliplr)
def fliplr(m):
    """``numpy.fliplr``: columns in reverse order."""
    m = as_var(m, "fliplr")
    if m.ndim < 2:
        raise located(f"fliplr: Input must be >= 2-d (shape {m.shape}).", ValueError)
    return flip(m, 1)


@function(np.flipud)
def flipud(m):
    """``numpy.flipud``: rows in reverse order."""
    m = as_var(m, "flipud")
    if m.ndim < 1:
        raise located("flipud: Input must be >= 1-d.", ValueError)
    return flip(m, 0)


@function(np.roll)
def roll(a, shift, axis=None):
    """``numpy.roll``: elements shifted cyclically along ``axis`` (the flattened value when None);
    ``shift`` and ``axis`` may be tuples."""
    from ._core import constant_value
    a = as_var(a, "roll")
    shift = constant_value("roll", shift, "shift")
    if axis is None:
        return reshape(roll(ravel(a), shift, 0), a.shape)
    try:
        pairs = np.broadcast(shift, axis)
    except ValueError as error:
        raise located(f"roll: {error}", ValueError) from None
    if pairs.ndim > 1:
        raise located("roll: 'shift' and 'axis' should be scalars or 1D sequences", ValueError)
    shifts = {}
    for s, ax in pairs:
        ax = axis_("roll", ax, a.ndim)
        shifts[ax] = shifts.get(ax, 0) + operator.index(s)
    for ax, s in shifts.items():
        size = a.shape[ax]
        if size == 0 or s % size == 0:
            continue
        cut = size - s % size
        lead = (slice(None),) * ax
        a = concatenate([_slices(a, lead + (slice(cut, None),)), _slices(a, lead + (slice(0, cut),))], axis=ax)
    return a


@function(np.rot90)
def rot90(m, k=1, axes=(0, 1)):
    """``numpy.rot90``: rotated by 90 degrees ``k`` times in the plane of ``axes``, from the
    first axis towards the second."""
    m = as_var(m, "rot90")
    axes = tuple(axes)
    if len(axes) != 2:
        raise located("rot90: len(axes) must be 2.", ValueError)
    if axes[0] == axes[1] or abs(axes[0] - axes[1]) == m.ndim:
        raise located("rot90: Axes must be different.", ValueError)
    if not all(-m.ndim <= ax < m.ndim for ax in axes):
        raise located(f"rot90: Axes={axes} out of range for array of ndim={m.ndim}.", ValueError)
    first, second = (ax % m.ndim for ax in axes)
    k = operator.index(k) % 4
    if k == 0:
        return m
    if k == 2:
        return flip(m, (first, second))
    order = list(range(m.ndim))
    order[first], order[second] = order[second], order[first]
    if k == 1:
        return transpose(flip(m, second), order)
    return flip(transpose(m, order), second)


@function(np.rollaxis)
def rollaxis(a, axis, start=0):
    """``numpy.rollaxis``: ``axis`` moved to before position ``start`` (prefer ``moveaxis``)."""
    a = as_var(a, "rollaxis")
    n = a.ndim
    axis = axis_("rollaxis", axis, n)
    if start < 0:
        start += n
    if not 0 <= start < n + 1:
        raise located(f"rollaxis: 'start' arg requires {-n} <= start < {n + 1}, but {start} was passed in")
    if axis < start:
        start -= 1
    order = [d for d in range(n) if d != axis]
    order.insert(start, axis)
    return transpose(a, order)


@function(np.matrix_transpose)
def matrix_transpose(x, /):
    """``numpy.matrix_transpose``: the last two axes swapped."""
    x = as_var(x, "matrix_transpose")
    if x.ndim < 2:
        raise located(f"matrix_transpose: Input array must be at least 2-dimensional (shape {x.shape})",
                      ValueError)
    return swapaxes(x, -1, -2)


# ---- diagonals and triangles ----------------------------------------------------------------------------

def _triangle(name, m, k, upper):
    m = as_var(m, name)
    if m.ndim == 0:
        raise located(f"{name}: a 0-d value has no triangle", TypeError)
    rows, cols = (m.shape[-2], m.shape[-1]) if m.ndim >= 2 else (m.shape[-1], m.shape[-1])
    k = operator.index(k)
    mask = np.tri(rows, cols, k - 1 if upper else k, dtype=bool)
    zero = np.zeros((), m.dtype)[()]
    mask = in_space_of(node_of(mask), m._node)
    if upper:
        return build("where", (mask, node_of(zero), m._node))
    return build("where", (mask, m._node, node_of(zero)))


@function(np.triu)
def triu(m, k=0):
    """``numpy.triu``: zero below the ``k``-th diagonal (over the last two axes; a 1-D value is
    taken as each row of a square matrix)."""
    return _triangle("triu", m, k, upper=True)


@function(np.tril)
def tril(m, k=0):
    """``numpy.tril``: zero above the ``k``-th diagonal (over the last two axes)."""
    return _triangle("tril", m, k, upper=False)


@function(np.diagonal)
def diagonal(a, offset=0, axis1=0, axis2=1):
    """``numpy.diagonal``: the ``offset`` diagonal of the planes of ``axis1`` and ``axis2``, as a
    new last axis (a strided slice of the flattened planes)."""
    a = as_var(a, "diagonal")
    if a.ndim < 2:
        raise located(f"diagonal: diag requires an array of at least two dimensions (shape {a.shape})",
                      ValueError)
    first, second = axis_("diagonal", axis1, a.ndim), axis_("diagonal", axis2, a.ndim)
    if first == second:
        raise located("diagonal: axis1 and axis2 cannot be the same", ValueError)
    offset = operator.index(offset)
    rows, cols = a.shape[first], a.shape[second]
    x = transpose(a, [d for d in range(a.ndim) if d not in (first, second)] + [first, second])
    x = reshape(x, x.shape[:-2] + (rows * cols,))
    if offset >= 0:
        length, start = max(0, min(rows, cols - offset)), offset
    else:
        length, start = max(0, min(rows + offset, cols)), -offset * cols
    key = slice(start, start + (length - 1) * (cols + 1) + 1, cols + 1) if length else slice(0, 0)
    return _slices(x, (Ellipsis, key))


@function(np.diag)
def diag(v, k=0):
    """``numpy.diag``: a 1-D value on the ``k``-th diagonal of a square matrix, or the ``k``-th
    diagonal of a 2-D value."""
    v = as_var(v, "diag")
    k = operator.index(k)
    if v.ndim == 2:
        return diagonal(v, k)
    if v.ndim != 1:
        raise located(f"diag: Input must be 1- or 2-d (shape {v.shape}).", ValueError)
    length = v.shape[0]
    size = length + abs(k)
    start = k if k >= 0 else -k * size
    stop = start + (length - 1) * (size + 1) + 1 if length else start
    flat = build("scatter", (v,), ((("s", start, stop, size + 1),), (size * size,)))
    return reshape(flat, (size, size))


@function(np.trace)
def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """``numpy.trace``: the sum along a diagonal."""
    from ._core import refuse
    from ._reductions import sum as sum_
    refuse("trace", "out", out)
    return getattr(sum_, "implementation", sum_)(diagonal(a, offset, axis1, axis2), axis=-1, dtype=dtype)


# ---- insert and delete ----------------------------------------------------------------------------------

@function(np.delete)
def delete(arr, obj, axis=None):
    """``numpy.delete``: the value without the entries ``obj`` names along ``axis`` (of the
    flattened value when None)."""
    from ._core import constant_value
    from ._indexing import IndexingError, getitem
    arr = as_var(arr, "delete")
    obj = constant_value("delete", obj, "obj")
    if axis is None:
        arr, axis = ravel(arr), 0
    axis = axis_("delete", axis, arr.ndim)
    try:
        kept = np.delete(np.arange(arr.shape[axis]), obj)
    except IndexError as error:
        raise located(f"delete: {error} (value of shape {arr.shape})", IndexingError) from None
    if kept.size == arr.shape[axis]:
        return arr
    return getitem(arr, (slice(None),) * axis + (kept,))


@function(np.insert)
def insert(arr, obj, values, axis=None):
    """``numpy.insert``: ``values`` inserted before the entries ``obj`` names along ``axis`` (of
    the flattened value when None), converted to ``arr``'s dtype. NumPy's own insert, run on
    the elements' positions, says where each element goes; the gradient follows them back."""
    from ._core import constant_value
    from ._indexing import IndexingError, getitem
    arr = as_var(arr, "insert")
    obj = constant_value("insert", obj, "obj")
    if isinstance(values, Var):
        if values.dtype != arr.dtype:
            from ._ufuncs import astype
            values = astype(values, arr.dtype)
    else:
        values = as_var(np.array(values, dtype=arr.dtype), "insert")
    values = _wrap(in_space_of(values._node, arr._node))
    positions = np.arange(arr.size).reshape(arr.shape)
    labels = arr.size + np.arange(values.size).reshape(values.shape)
    try:
        where = np.insert(positions, obj, labels, axis)
    except IndexError as error:
        raise located(f"insert: {error} (value of shape {arr.shape})", IndexingError) from None
    except ValueError as error:
        raise located(f"insert: {error} (value of shape {arr.shape})", ValueError) from None
    return getitem(concatenate([ravel(arr), ravel(values)]), where)


__all__ += ["atleast_1d", "atleast_2d", "atleast_3d", "broadcast_arrays", "hstack", "vstack", "dstack",
            "column_stack", "append", "unstack", "split", "array_split", "hsplit", "vsplit", "dsplit",
            "tile", "repeat", "flip", "fliplr", "flipud", "roll", "rot90", "rollaxis", "matrix_transpose",
            "triu", "tril", "diagonal", "diag", "trace", "delete", "insert"]
