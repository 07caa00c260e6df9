"""Shape functions: reshape, transpose, joining, padding, and building an array
from a (nested) list of variables. They move elements without changing them,
so each gradient moves them back.

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
from ._core import OPS, axis_, build, function, holds_var, located, node_of, nodes_of

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
    shape = _new_shape(a, newshape if shape is None else shape)
    if shape == a.shape:
        return a
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
    return nodes_of(arrays, name)


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


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge"}


@function(np.pad)
def pad(array, pad_width, mode="constant", **kwargs):
    """``numpy.pad`` with modes 'constant' (``constant_values``), 'edge' and 'reflect';
    the gradient of the border is folded back onto the elements it copied."""
    array = as_var(array, "pad")
    if mode not in _PAD_MODES:
        raise located(f"pad: mode {mode!r} is not supported on variables; use one of "
                      f"{', '.join(map(repr, _PAD_MODES))}", ValueError)
    value = kwargs.pop("constant_values", 0)
    if kwargs:
        raise located(f"pad: unsupported keyword argument(s) {', '.join(sorted(kwargs))}", TypeError)
    try:
        pairs = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (array.ndim, 2))
    except ValueError:
        raise located(f"pad: pad_width {pad_width!r} does not give a (before, after) pair for each of "
                      f"the {array.ndim} axes of shape {array.shape}") from None
    if (pairs < 0).any():
        raise located(f"pad: widths must not be negative, got {pad_width!r}")
    if np.ndim(value) != 0:
        raise located("pad: constant_values must be one number on variables", TypeError)
    pairs = tuple((int(b), int(a)) for b, a in pairs)
    return build("pad", (array,), (pairs, _PAD_MODES[mode], float(value)))



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
