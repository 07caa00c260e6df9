"""Indexing: ``v[key]`` as NumPy reads it, ``take``, ``take_along_axis``, and JAX's
index update without mutation, ``v.at[key].set(u)``.

The index is split into its static layout (slices, None, ``...``, ints written
into the code inside a trace) and its data (integer arrays and ints outside a
trace, passed to the program at run time, so a loop over ``i`` reuses one
program). A boolean mask selects what its ``nonzero()`` integer arrays select.
Repeated indices add up in the gradient.

``v.at[key]`` has ``get()``, ``set(u)``, ``add(u)``, ``subtract(u)``, ``multiply(u)``,
``min(u)`` and ``max(u)``; each returns a new variable, ``u`` broadcasting to the
shape of ``v[key]`` (and converted to ``v``'s dtype), with gradients to both ``v``
and ``u``. Where an index repeats, ``add`` and ``multiply`` apply every write (as
``numpy.add.at`` and ``numpy.multiply.at``), ``min`` and ``max`` keep the extreme
(the gradient is shared evenly among the values that reach it, as in JAX), and
``set`` keeps the last write (as NumPy's assignment does): only that write gets a
gradient.

>>> import numpy, neuronika
>>> x = neuronika.from_ndarray(numpy.arange(4.0)).requires_grad()
>>> x[numpy.array([0, 0, 3])].sum().backward()
>>> x.grad
array([2., 0., 0., 1.])
>>> u = neuronika.from_ndarray(numpy.array([10.0, 20.0])).requires_grad()
>>> y = x.at[numpy.array([1, 1])].set(u)          # the last write wins
>>> y
VarDiff([ 0., 20.,  2.,  3.], dtype=float64)
>>> (y * numpy.array([1.0, 5.0, 1.0, 1.0])).sum().backward()
>>> u.grad
array([0., 5.])
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..errors import GradientError, IndexingError, ShapeError
from ..graph import Node, apply, leaf, modes
from ..ops.shape import basic_shape
from ..variable import Var, _wrap
from ._core import OPS, axis_, build, constant_value, function, located, node_of, refuse

__all__ = ["take", "take_along_axis"]

_INDEX = OPS["index"]
_INDEX_UPDATE = OPS["index_update"]
_AN_INT = ((("k", 0),),)            # the attributes of x[i]: an int given at run time


def _parse(x, key, name="index", what=None):
    """``key`` for a value of ``x``'s shape as (layout, index data): see ``ops/shape.py``.
    ``what`` describes the value indexed in an error message."""
    if not isinstance(key, tuple):
        key = (key,)
    parts = []
    index_nodes = {}        # position in parts -> the Var's node, kept as the index input
    for position, part in enumerate(key):
        if isinstance(part, Var):
            if part.dtype.kind in "iu":
                index_nodes[position] = part._node
            elif part.dtype == bool and modes.tracer is not None and modes.tracer.depends(part._node):
                raise located(f"{name}: a boolean mask computed from a traced argument selects a "
                              f"data-dependent number of elements; multiply by the mask instead",
                              GradientError)
            part = part.data
        if isinstance(part, slice):
            if any(isinstance(v, Var) for v in (part.start, part.stop, part.step)):
                # an int variable as a bound (x[:n] on an int argument): read, so guarded
                part = slice(*[v.__index__() if isinstance(v, Var) else v
                               for v in (part.start, part.stop, part.step)])
            if not all(v is None or isinstance(v, numbers.Integral) for v in (part.start, part.stop, part.step)):
                raise located(f"{name}: slice bounds must be ints, got {part}")
            if part.step == 0:
                raise located(f"{name}: slice step cannot be zero")
        elif part is not None and part is not Ellipsis and not (
                isinstance(part, numbers.Integral) and not isinstance(part, (bool, np.bool_))):
            # checked on the host (another library's index arrays are copied there explicitly)
            array = backend.to_numpy(part) if backend.foreign(part) else np.asarray(part)
            if array.size == 0 and array.dtype.kind == "f":
                array = array.astype(np.intp)          # x[[]], as in NumPy
            if array.dtype != bool and array.dtype.kind not in "iu":
                raise located(f"{name}: an index must be an int, a slice, None, ... or an integer "
                              f"array, got {part!r}")
            if array.dtype == bool and array.ndim == 0:
                raise located(f"{name}: a 0-dim boolean index is not supported")
            part = array
        parts.append(part)
    # Out-of-range indices and masks of the wrong shape are caught here, with the real values
    # (by NumPy, on a dummy array, unless the key is basic and in range).
    if basic_shape(tuple(x.shape), [int(p) if isinstance(p, numbers.Integral) else p for p in parts]) is None:
        try:
            np.broadcast_to(np.empty((), np.int8), x.shape)[tuple(parts)]
        except IndexError as error:
            what = what or f"a value of shape {x.shape}"
            raise located(f"{name}: {error} (indexing {what})", IndexingError) from None
    layout, data = [], []
    for position, part in enumerate(parts):
        if position in index_nodes:
            layout.append(("k", len(data)))
            data.append(index_nodes[position])
        elif isinstance(part, slice):
            layout.append(("s",) + tuple(None if v is None else int(v) for v in (part.start, part.stop, part.step)))
        elif part is None:
            layout.append(("n",))
        elif part is Ellipsis:
            layout.append(("e",))
        elif isinstance(part, np.ndarray):
            # A mask selects by position: the same as its nonzero() integer arrays.
            for array in np.nonzero(part) if part.dtype == bool else (part.astype(np.intp, copy=False),):
                layout.append(("k", len(data)))
                data.append(array)
        elif modes.tracer is not None:
            layout.append(("i", int(part)))
        else:
            layout.append(("k", len(data)))
            data.append(np.intp(part))
    # index arrays go where the indexed value lives (checked above, on the host: as CuPy takes
    # NumPy index arrays)
    space = getattr(getattr(x, "_node", None), "space", None)
    return tuple(layout), tuple(d if isinstance(d, Node) else leaf(d[()] if not np.ndim(d)   # a number
                                                                   else d if space is None
                                                                   else backend.move(d, space))
                                for d in data)


def _sliced(shape, key):
    """The layout ``_parse`` makes of a key of slices (int or None bounds, a step other than
    0), None and ``...`` that fits ``shape`` (``x[:, :64]``, as an LSTM takes its gates), or
    None for any other key: what ``_parse`` does, without its general checks."""
    parts = key if key.__class__ is tuple else (key,)
    layout = []
    for part in parts:
        if part.__class__ is slice:
            start, stop, step = part.start, part.stop, part.step
            if not ((start is None or start.__class__ is int) and (stop is None or stop.__class__ is int)
                    and (step is None or step.__class__ is int and step != 0)):
                return None
            layout.append(("s", start, stop, step))
        elif part is None:
            layout.append(("n",))
        elif part is Ellipsis:
            layout.append(("e",))
        else:
            return None
    return tuple(layout) if basic_shape(tuple(shape), parts) is not None else None


def getitem(x, key):
    """``x[key]`` with ints, slices, None, ``...``, integer arrays (repeated indices add up in
    the gradient) and boolean masks (as their ``nonzero()`` integer arrays)."""
    if key.__class__ is int and modes.tracer is None:
        # x[i] in range, outside a trace (a loop over steps): what _parse makes of it, unparsed
        node = x._node
        if node.shape and -node.shape[0] <= key < node.shape[0]:
            return _wrap(apply(_INDEX, (node, leaf(np.intp(key))), _AN_INT))
    layout = _sliced(x._node.shape, key)
    if layout is not None:
        return _wrap(apply(_INDEX, (x._node,), (layout,)))
    layout, data = _parse(x, key)
    return _wrap(apply(_INDEX, (x._node,) + data, (layout,)))


# ---- v.at[key] -------------------------------------------------------------------------------------

class At:
    """``v.at``: ``v.at[key]`` is the place an update (or ``get``) applies to."""

    __slots__ = ("_var",)

    def __init__(self, var):
        self._var = var

    def __getitem__(self, key):
        return Place(self._var, key)

    def __repr__(self):
        return f"_IndexUpdateHelper({self._var!r})"


def _options(name, mode, extra=None):
    """JAX's keyword options: ``indices_are_sorted`` and ``unique_indices`` are hints (ignored);
    out-of-range indices always raise, so only ``mode=None`` / 'promise_in_bounds' fit."""
    if mode not in (None, "promise_in_bounds"):
        raise located(f"at[...].{name}: mode={mode!r} is not supported on variables; an index out "
                      f"of range raises an IndexError", TypeError)
    if extra:
        raise located(f"at[...].{name}: unexpected keyword argument(s) {', '.join(sorted(extra))}",
                      TypeError)


class Place:
    """``v.at[key]``: the methods return the updated value as a new variable."""

    __slots__ = ("_var", "_key")

    def __init__(self, var, key):
        self._var = var
        self._key = key

    def __repr__(self):
        return f"_IndexUpdateRef({self._var!r}, {self._key!r})"

    def get(self, *, indices_are_sorted=False, unique_indices=False, mode=None, fill_value=None, **kwargs):
        """``v[key]``."""
        _options("get", mode, kwargs)
        refuse("at[...].get", "fill_value", fill_value)
        return getitem(self._var, self._key)

    def set(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None, **kwargs):
        """``v`` with ``v[key] = values``; where an index repeats the last write wins, and only
        that write gets a gradient."""
        _options("set", mode, kwargs)
        return self._update(values, "set")

    def add(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None, **kwargs):
        """``v`` with ``values`` added at ``key`` (repeated indices add up, as ``numpy.add.at``)."""
        _options("add", mode, kwargs)
        return self._update(values, "add")

    def subtract(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None, **kwargs):
        """``v`` with ``values`` subtracted at ``key`` (repeated indices add up)."""
        _options("subtract", mode, kwargs)
        return self._update(values, "add", negate=True)

    def multiply(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None, **kwargs):
        """``v`` with ``v[key]`` multiplied by ``values`` (repeated indices multiply, as
        ``numpy.multiply.at``)."""
        _options("multiply", mode, kwargs)
        return self._update(values, "multiply")

    def min(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None, **kwargs):
        """``v`` with ``v[key] = minimum(v[key], values)``, every write of a repeated index
        included; the gradient is shared evenly among the values equal to the minimum."""
        _options("min", mode, kwargs)
        return self._update(values, "min")

    def max(self, values, *, indices_are_sorted=False, unique_indices=False, mode=None, **kwargs):
        """``v`` with ``v[key] = maximum(v[key], values)``, every write of a repeated index
        included; the gradient is shared evenly among the values equal to the maximum."""
        _options("max", mode, kwargs)
        return self._update(values, "max")

    def _update(self, values, mode, negate=False):
        x = self._var
        name = f"at[...].{'subtract' if negate else mode}"
        layout, data = _parse(x, self._key, name)
        u = _values(values, x, name)
        if negate:
            u = -u
        try:
            return _wrap(apply(_INDEX_UPDATE, (x._node, u._node) + data, (layout, mode)))
        except ShapeError as error:
            raise ShapeError(str(error).replace("index_update:", f"{name}:", 1)) from None


def _values(values, x, name):
    """The update as a variable of ``x``'s dtype: a Python number as NumPy's assignment converts
    it; a variable or array only where NumPy's 'same_kind' rule allows."""
    if isinstance(values, (bool, int, float, complex)):
        if isinstance(values, complex) and x.dtype.kind != "c":
            raise located(f"{name}: cannot write the complex number {values!r} into a value of dtype "
                          f"{x.dtype}", TypeError)
        return _wrap(leaf(np.asarray(values).astype(x.dtype)[()]))
    u = values if isinstance(values, Var) else _wrap(node_of(values, x._node, name))
    if u.dtype != x.dtype:
        if not np.can_cast(u.dtype, x.dtype, "same_kind"):
            raise located(f"{name}: cannot write values of dtype {u.dtype} into a value of dtype "
                          f"{x.dtype} (NumPy's 'same_kind' rule)", TypeError)
        u = build("cast", (u,), (x.dtype,))
    return u


# ---- take, take_along_axis ---------------------------------------------------------------------------

def _index_array(name, indices):
    """Integer indices: a variable (kept in the graph) or an integer array."""
    if isinstance(indices, Var):
        if indices.dtype.kind not in "iu":
            raise located(f"{name}: indices must be integers, got dtype {indices.dtype}", IndexingError)
        return indices
    array = np.asarray(indices)
    if array.size == 0 and array.dtype.kind == "f":
        array = array.astype(np.intp)
    if array.dtype.kind not in "iu":
        raise located(f"{name}: indices must be integers, got dtype {array.dtype}", IndexingError)
    return array


def _wrapped(indices, size, mode):
    """Indices brought into range(size) as ``mode`` ('wrap' or 'clip') says."""
    if isinstance(indices, Var):
        if mode == "clip":
            from ._ufuncs import where
            low = where(indices < 0, 0, indices)
            return where(low > size - 1, size - 1, low)
        if "remainder" in OPS:
            return build("remainder", (indices, node_of(size, indices._node)))
        return np.asarray(constant_value("take", indices, "indices with mode='wrap'"))
    return np.clip(indices, 0, size - 1) if mode == "clip" else np.mod(indices, size)


@function(np.take)
def take(a, indices, axis=None, out=None, mode="raise"):
    """``numpy.take``: elements along ``axis`` (of the flattened value when None); repeated
    indices add up in the gradient. ``mode``: 'raise', 'wrap' or 'clip'."""
    from ._shape import as_var, ravel
    refuse("take", "out", out)
    a = as_var(a, "take")
    if mode not in ("raise", "wrap", "clip"):
        raise located(f"take: clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})", ValueError)
    what = None
    if axis is None:
        what = f"the flattened value of shape {a.shape}"
        a, axis = ravel(a), 0
    axis = axis_("take", axis, a.ndim)
    indices = _index_array("take", indices)
    if mode != "raise":
        size = a.shape[axis]
        if size == 0 and np.size(indices):
            raise located(f"take: cannot do a non-empty take from an empty axis (value of shape "
                          f"{a.shape})", IndexingError)
        if size:
            indices = _wrapped(indices, size, mode)
    layout, data = _parse(a, (slice(None),) * axis + (indices,), "take", what)
    return _wrap(apply(_INDEX, (a._node,) + data, (layout,)))


@function(np.take_along_axis)
def take_along_axis(arr, indices, axis=-1):
    """``numpy.take_along_axis``: ``arr`` indexed along ``axis`` by ``indices`` of the same number
    of dimensions (the other axes broadcast); repeated indices add up in the gradient."""
    from ._shape import as_var, ravel
    arr = as_var(arr, "take_along_axis")
    indices = _index_array("take_along_axis", indices)
    what = None
    if axis is None:
        if np.ndim(indices) != 1:
            raise located("take_along_axis: when axis=None, `indices` must have a single dimension.",
                          ValueError)
        what = f"the flattened value of shape {arr.shape}"
        arr, axis = ravel(arr), 0
    if np.ndim(indices) != arr.ndim:
        raise located(f"take_along_axis: `indices` and `arr` must have the same number of dimensions "
                      f"(shapes {np.shape(indices)} and {arr.shape})", ValueError)
    axis = axis_("take_along_axis", axis, arr.ndim)
    key = []
    for d, size in enumerate(arr.shape):
        if d == axis:
            key.append(indices)
        else:
            shape = [1] * arr.ndim
            shape[d] = size
            key.append(np.arange(size).reshape(shape))
    layout, data = _parse(arr, tuple(key), "take_along_axis", what)
    return _wrap(apply(_INDEX, (arr._node,) + data, (layout,)))


# ---- choosing among values --------------------------------------------------------------------------

def _operand_dtype(value):
    if isinstance(value, Var):
        return value.dtype
    if isinstance(value, (bool, int, float, complex)):
        return value                      # weak, as NumPy 2 types a Python number
    return np.asarray(value).dtype


def _typed(value, dtype, name):
    """``value`` as a variable of ``dtype``."""
    from ._ufuncs import astype
    if isinstance(value, Var):
        return astype(value, dtype)
    return _wrap(leaf(np.asarray(value, dtype=dtype)[()] if np.ndim(value) == 0 else np.asarray(value, dtype=dtype)))


@function(np.select)
def select(condlist, choicelist, default=0):
    """``numpy.select``: where the first true condition says, its choice; ``default`` where none
    is (nested ``where``: each choice gets the gradient where it is chosen)."""
    from ._ufuncs import where
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist):
        raise located("select: list of cases must be same length as list of conditions", ValueError)
    if not condlist:
        raise located("select: select with an empty condition list is not possible", ValueError)
    for i, cond in enumerate(condlist):
        if (cond.dtype if isinstance(cond, Var) else np.asarray(cond).dtype) != bool:
            raise located(f"select: invalid entry {i} in condlist: should be boolean ndarray", TypeError)
    dtype = np.result_type(*[_operand_dtype(c) for c in choicelist], _operand_dtype(default))
    result = _typed(default, dtype, "select")
    for cond, choice in zip(reversed(condlist), reversed(choicelist)):
        result = where(cond, _typed(choice, dtype, "select"), result)
    return result


@function(np.choose)
def choose(a, choices, out=None, mode="raise"):
    """``numpy.choose``: ``choices[a[i]][i]`` (all broadcast together); each choice gets the
    gradient where it is chosen. ``mode``: 'raise', 'wrap' or 'clip'."""
    from ._ufuncs import where
    refuse("choose", "out", out)
    choices = [choices[i] for i in range(len(choices))] if isinstance(choices, Var) else list(choices)
    n = len(choices)
    if mode not in ("raise", "wrap", "clip"):
        raise located(f"choose: clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})", ValueError)
    a = _index_array("choose", a)
    if n == 0:
        raise located("choose: need at least one choice", ValueError)
    if mode == "raise":
        values = backend.to_numpy(a.data) if isinstance(a, Var) else a
        if values.size and (values.min() < 0 or values.max() >= n):
            raise located(f"choose: invalid entry in choice array (values of a must be in [0, {n}))",
                          ValueError)
    else:
        a = _wrapped(a, n, mode)
    dtype = np.result_type(*[_operand_dtype(c) for c in choices])
    result = _typed(choices[-1], dtype, "choose")
    if n == 1:
        from ._shape import broadcast_to
        return broadcast_to(result, np.broadcast_shapes(np.shape(a), result.shape))
    for j in range(n - 2, -1, -1):
        result = where(a == j, _typed(choices[j], dtype, "choose"), result)
    return result


@function(np.compress)
def compress(condition, a, axis=None, out=None):
    """``numpy.compress``: the slices along ``axis`` (of the flattened value when None) where
    ``condition`` is true."""
    refuse("compress", "out", out)
    condition = np.asarray(constant_value("compress", condition, "condition"))
    if condition.ndim != 1:
        raise located(f"compress: condition must be a 1-d array, got shape {condition.shape}", ValueError)
    return take(a, np.nonzero(condition)[0], axis=axis)


@function(np.extract)
def extract(condition, arr):
    """``numpy.extract``: the elements of ``arr`` where ``condition`` is true, flattened."""
    from ._shape import as_var, ravel
    condition = np.asarray(constant_value("extract", condition, "condition"))
    return take(ravel(as_var(arr, "extract")), np.nonzero(np.ravel(condition))[0])


def _immutable(numpy_fn, hint):
    """NumPy's in-place writers: a variable to write into is refused (variables are immutable);
    a variable elsewhere among the arguments is read as NumPy's dispatch reads it."""
    name = f"numpy.{numpy_fn.__name__}"

    def write(a, *args, **kwargs):
        if isinstance(a, Var):
            raise located(f"{name}: variables are immutable, so {name} cannot write into one; {hint}",
                          TypeError)
        from ._dispatch import no_gradient
        return no_gradient(name, (a,) + args, kwargs, numpy_fn)
    write.__doc__ = f"``{name}`` refuses to write into a variable; {hint}."
    function(numpy_fn, name=numpy_fn.__name__)(write)


_immutable(np.put, "write v = v.ravel().at[ind].set(values).reshape(v.shape)")
_immutable(np.put_along_axis, "index v.at[...] with take_along_axis's index arrays, or use where")
_immutable(np.place, "write v = numpy.where(mask, u, v) (or v.at[mask].set(u))")
_immutable(np.putmask, "write v = numpy.where(mask, u, v)")
_immutable(np.fill_diagonal, "add or multiply by a matrix, or use v.at[i, i].set(u)")
_immutable(np.copyto, "use the value itself (variables need no copy), or numpy.where(mask, u, v)")

__all__ += ["select", "choose", "compress", "extract"]
