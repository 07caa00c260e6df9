"""Reductions, scans, sorting and statistics: NumPy's signatures (``axis`` an int, a tuple
or None; ``keepdims``; ``dtype``; ``ddof``), each one catalogue op or an exact
composition of them.

- ``max``/``min`` share the gradient evenly among ties. ``prod``'s first and second
  derivatives and ``cumprod``'s first are exact where elements are zero; the next
  order of each divides by the elements, so it is exact away from zeros only.
- ``sort`` is ``argsort`` and a gather, whose adjoint puts each gradient back where its
  element came from; ``partition`` gathers the same way, by the permutation that gives
  NumPy's own result; ``median``, ``quantile`` and ``percentile`` sort and interpolate
  linearly between the two neighbours, as NumPy's default method does.
- ``diff`` and ``gradient`` (finite differences) are slices and their differences.
- ``argmax``, ``argsort``, ``all``, ``count_nonzero``, ``nonzero``, ... have integer or
  boolean results and no gradient.

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> x = neuronika.from_ndarray(numpy.array([[1.0, 5.0], [3.0, 2.0]])).requires_grad()
>>> m = nnp.max(x, axis=1)
>>> m
VarDiff([5., 3.], dtype=float64)
>>> nnp.sum(m).backward()
>>> x.grad
array([[0., 1.],
       [1., 0.]])
>>> nnp.median(numpy.array([3.0, 1.0, 2.0, 4.0]))
np.float64(2.5)
"""
from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from ..errors import GradientError
from ..graph import apply, leaf, modes
from ..variable import Var, _wrap
from ._core import OPS, axes, axis_, build, constant_value, function, in_space_of, located, node_of, refuse, var_of
from ._ufuncs import astype

__all__ = ["sum", "mean", "max", "min", "amax", "amin", "prod", "average", "var", "std", "ptp",
           "cumsum", "cumprod", "median", "quantile", "percentile", "sort", "argsort", "argmax",
           "argmin", "all", "any", "count_nonzero", "nonzero", "flatnonzero", "searchsorted",
           "nansum", "nanmean", "nanmax", "nanmin", "diff", "gradient", "partition", "argpartition"]

_SUM = OPS["sum"]
_NO_VALUE = np._NoValue


def as_var(x, name) -> Var:
    return x if isinstance(x, Var) else _wrap(node_of(x, name=name))


def reduce(op_name, x, axis, keepdims, name):
    """Catalogue reduction ``op_name`` of ``x`` over ``axis`` (checked and normalised)."""
    return build(op_name, (x,), (axes(name, axis, x.ndim), bool(keepdims)))


def _no_where(name, where):
    refuse(name, "where", where, True) if where is not _NO_VALUE else None


def _keep(keepdims):
    return False if keepdims is _NO_VALUE else bool(keepdims)


def _count(shape, reduced):
    """How many elements each reduction over ``reduced`` (None: all axes) takes."""
    return math.prod(shape) if reduced is None else math.prod(shape[a] for a in reduced)


# ---- sums, products, means ------------------------------------------------------------------------

@function(np.sum)
def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=_NO_VALUE, where=_NO_VALUE):  # noqa: A001
    """``numpy.sum``; the gradient is the output's gradient spread back over the summed axes."""
    if not isinstance(a, Var):
        a = as_var(a, "sum")
    if out is not None or where is not _NO_VALUE:
        refuse("sum", "out", out)
        _no_where("sum", where)
    if dtype is not None:
        a = astype(a, dtype)
    elif a.dtype == np.bool_:
        a = astype(a, np.int_)              # NumPy counts; the standard sums numbers only
    if axis is None and not keepdims:
        result = _wrap(apply(_SUM, (a._node,), (None, False)))
    else:
        result = reduce("sum", a, axis, _keep(keepdims), "sum")
    if initial is not _NO_VALUE and initial is not None:
        result = result + initial
    return result


@function(np.prod)
def prod(a, axis=None, dtype=None, out=None, keepdims=_NO_VALUE, initial=_NO_VALUE, where=_NO_VALUE):
    """``numpy.prod``: the gradient of each element is the product of the others. First and
    second derivatives are exact with zeros; third derivatives, away from zeros."""
    a = as_var(a, "prod")
    refuse("prod", "out", out)
    _no_where("prod", where)
    if dtype is not None:
        a = astype(a, dtype)
    elif a.dtype == np.bool_:
        a = astype(a, np.int_)              # as NumPy (the standard multiplies numbers only)
    result = reduce("prod", a, axis, _keep(keepdims), "prod")
    if initial is not _NO_VALUE and initial is not None:
        result = result * initial
    return result


@function(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=_NO_VALUE):
    """``numpy.mean``: integer inputs give float64, as in NumPy."""
    a = as_var(a, "mean")
    refuse("mean", "out", out)
    _no_where("mean", where)
    if dtype is not None:
        a = astype(a, dtype)
    elif a.dtype.kind in "biu":
        a = astype(a, np.float64)           # as NumPy averages them (the standard's mean takes floats)
    return reduce("mean", a, axis, _keep(keepdims), "mean")


def _user_axes(name, axis, ndim):
    """The axes as the user ordered them, each checked (for weights laid out that way)."""
    listed = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    result = tuple(axis_(name, ax, ndim) for ax in listed)
    if len(set(result)) != len(result):
        raise located(f"{name}: axis {axis!r} repeats an axis")
    return result


@function(np.average)
def average(a, axis=None, weights=None, returned=False, *, keepdims=_NO_VALUE):
    """``numpy.average``: ``sum(a * weights) / sum(weights)`` over ``axis``, with gradients
    to both; ``returned=True`` also gives the sum of the weights. (Weights summing to zero
    give inf / nan rather than NumPy's ZeroDivisionError when they are a variable.)"""
    from ._shape import broadcast_to, reshape, transpose
    a = as_var(a, "average")
    keepdims = _keep(keepdims)
    if weights is None:
        avg = mean(a, axis, keepdims=keepdims)
        if not returned:
            return avg
        scale = avg.dtype.type(a.size / builtins.max(avg.size, 1))
        return avg, np.full(avg.shape, scale, avg.dtype)[()]
    w = _wrap(in_space_of(var_of(weights, name="average")._node, a._node))
    if w.shape != a.shape:
        if axis is None:
            raise located("average: axis must be specified when shapes of a and weights differ",
                          TypeError)
        order = _user_axes("average", axis, a.ndim)
        if w.shape != tuple(a.shape[ax] for ax in order):
            raise located(f"average: shape of weights {w.shape} must be consistent with shape of "
                          f"a {a.shape} along axis {axis}", ValueError)
        if list(order) != sorted(order):
            w = transpose(w, tuple(int(i) for i in np.argsort(order)))
        w = reshape(w, tuple(s if i in order else 1 for i, s in enumerate(a.shape)))
    if a.dtype.kind in "biu":
        dtype = np.result_type(a.dtype, w.dtype, np.float64)
    else:
        dtype = np.result_type(a.dtype, w.dtype)
    a, w = astype(a, dtype), astype(w, dtype)
    if not isinstance(weights, Var):
        given = np.asarray(weights)
        totals = given.sum(axis) if given.shape == a.shape else given.sum()
        if np.any(totals == 0):
            raise located("average: weights sum to zero, can't be normalized", ZeroDivisionError)
    scale = sum(w, axis, keepdims=keepdims)
    avg = sum(a * w, axis, keepdims=keepdims) / scale
    if not returned:
        return avg
    if scale.shape != avg.shape:
        scale = broadcast_to(scale, avg.shape)
    return avg, scale


def _variance(name, a, axis, dtype, out, ddof, keepdims, where, mean_, correction, root=False):
    if correction is not _NO_VALUE:
        if ddof != 0:
            raise located(f"{name}: ddof and correction can't be provided simultaneously.", ValueError)
        ddof = correction
    a = as_var(a, name)
    refuse(name, "out", out)
    _no_where(name, where)
    if dtype is not None:
        a = astype(a, dtype)
    elif a.dtype.kind in "biu":
        a = astype(a, np.float64)           # as NumPy computes it (the standard does not mix kinds)
    reduced = axes(name, axis, a.ndim)
    m = mean(a, reduced, keepdims=True) if mean_ is _NO_VALUE else mean_
    d = a - m
    if d.dtype.kind == "c":
        from . import _complex
        squares = _complex.real(d * _complex.conjugate(d))
    else:
        squares = d * d
    total = sum(squares, reduced, keepdims=_keep(keepdims))
    count = _count(a.shape, reduced)
    variance = total / builtins.max(count - ddof, 0)
    if not root or (count == 1 and mean_ is _NO_VALUE):
        # (std of one element per lane: its deviation from the mean is exactly 0, so the variance
        # is 0, or NaN for ddof = 1, and equals its square root, whose gradient at 0 would be
        # infinite; the variance's own gradient there is exactly 0, as it should be.)
        return variance
    from ._ufuncs import sqrt
    return sqrt(variance)


@function(np.var)
def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NO_VALUE, *, where=_NO_VALUE,
        mean=_NO_VALUE, correction=_NO_VALUE):
    """``numpy.var``: ``sum(|a - mean(a)| ** 2) / (n - ddof)`` over ``axis``."""
    return _variance("var", a, axis, dtype, out, ddof, keepdims, where, mean, correction)


@function(np.std)
def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=_NO_VALUE, *, where=_NO_VALUE,
        mean=_NO_VALUE, correction=_NO_VALUE):
    """``numpy.std``: the square root of ``var``."""
    return _variance("std", a, axis, dtype, out, ddof, keepdims, where, mean, correction, root=True)


# ---- extremes -----------------------------------------------------------------------------------

def _extreme(op_name, name, a, axis, out, keepdims, initial, where):
    a = as_var(a, name)
    refuse(name, "out", out)
    _no_where(name, where)
    if a.size == 0 and initial is _NO_VALUE:
        reduced = range(a.ndim) if axis is None else axes(name, axis, a.ndim)
        if builtins.any(a.shape[i] == 0 for i in reduced):
            raise located(f"{name}: zero-size array to reduction operation {name} which has no "
                          f"identity (shape {a.shape}, axis {axis})", ValueError)
    if a.dtype == np.bool_:                 # the standard's max and min take numbers
        result = astype(reduce(op_name, astype(a, np.int8), axis, _keep(keepdims), name), np.bool_)
    else:
        result = reduce(op_name, a, axis, _keep(keepdims), name)
    if initial is not _NO_VALUE:
        from ._ufuncs import where as where_
        from ._ufuncs import greater, less
        compare = greater if op_name == "max" else less
        result = where_(compare(result, initial), result, initial)
    return result


@function(np.max, np.amax)
def max(a, axis=None, out=None, keepdims=False, initial=_NO_VALUE, where=_NO_VALUE):  # noqa: A001
    """``numpy.max``: ties share the gradient evenly."""
    return _extreme("max", "max", a, axis, out, keepdims, initial, where)


@function(np.min, np.amin)
def min(a, axis=None, out=None, keepdims=False, initial=_NO_VALUE, where=_NO_VALUE):  # noqa: A001
    """``numpy.min``: ties share the gradient evenly."""
    return _extreme("min", "min", a, axis, out, keepdims, initial, where)


amax = max
amin = min


@function(np.ptp)
def ptp(a, axis=None, out=None, keepdims=_NO_VALUE):
    """``numpy.ptp``: ``max - min`` over ``axis``."""
    a = as_var(a, "ptp")
    if a.dtype == np.bool_:
        raise located("ptp: numpy boolean subtract, the `-` operator, is not supported", TypeError)
    return max(a, axis, out, _keep(keepdims)) - min(a, axis, out, _keep(keepdims))


# ---- scans ----------------------------------------------------------------------------------------

def _scan(op_name, name, a, axis, dtype, out):
    from ._shape import ravel
    a = as_var(a, name)
    refuse(name, "out", out)
    if dtype is not None:
        a = astype(a, dtype)
    elif a.dtype == np.bool_:
        a = astype(a, np.int_)
    if axis is None:
        a, axis = ravel(a), 0
    attrs = (axis_(name, axis, a.ndim),) + ((False,) if op_name == "cumsum" else ())
    return build(op_name, (a,), attrs)


@function(np.cumsum)
def cumsum(a, axis=None, dtype=None, out=None):
    """``numpy.cumsum``: the gradient is the running sum from the other end."""
    return _scan("cumsum", "cumsum", a, axis, dtype, out)


@function(np.cumprod)
def cumprod(a, axis=None, dtype=None, out=None):
    """``numpy.cumprod``: the gradient is exact with zeros; second derivatives are exact
    away from zeros."""
    return _scan("cumprod", "cumprod", a, axis, dtype, out)


# ---- differences ----------------------------------------------------------------------------------

def _along(ndim, axis, part):
    return (slice(None),) * axis + (part,) + (slice(None),) * (ndim - axis - 1)


@function(np.diff)
def diff(a, n=1, axis=-1, prepend=_NO_VALUE, append=_NO_VALUE):
    """``numpy.diff``: the ``n``-th differences along ``axis`` (``a[1:] - a[:-1]``, ``n`` times),
    after joining ``prepend`` and ``append`` (a number is one slice of them) to ``a``."""
    from ._shape import _slices, broadcast_to, concatenate
    from ._ufuncs import not_equal
    a = as_var(a, "diff")
    n = operator.index(n)
    if n == 0:
        return a
    if n < 0:
        raise located(f"diff: order must be non-negative but got {n!r}", ValueError)
    if a.ndim == 0:
        raise located("diff: diff requires input that is at least one dimensional", ValueError)
    axis = axis_("diff", axis, a.ndim)
    parts = []
    for extra in (prepend, a, append):
        if extra is a:
            parts.append(a)
        elif extra is not _NO_VALUE:
            extra = _wrap(in_space_of(as_var(extra, "diff")._node, a._node))
            if extra.ndim == 0:
                extra = broadcast_to(extra, a.shape[:axis] + (1,) + a.shape[axis + 1:])
            parts.append(extra)
    if len(parts) > 1:
        a = concatenate(parts, axis)
    step = not_equal if a.dtype == np.bool_ else (lambda x, y: x - y)
    for _ in range(n):
        # an empty axis stays empty (without a slice past its end, which the standard leaves open)
        later, earlier = (slice(1, None), slice(None, -1)) if a.shape[axis] else (slice(0, 0),) * 2
        a = step(_slices(a, _along(a.ndim, axis, later)), _slices(a, _along(a.ndim, axis, earlier)))
    return a


def _spacings(varargs, shape, chosen):
    """``numpy.gradient``'s spacing arguments: per axis, a number, or the differences of a
    coordinate array (a number when they are all equal), as NumPy reads them."""
    n = len(varargs)
    if n == 0:
        return [1.0] * len(chosen)
    varargs = [constant_value("gradient", v, "a spacing") for v in varargs]
    if n == 1 and np.ndim(varargs[0]) == 0:
        return varargs * len(chosen)
    if n != len(chosen):
        raise located("gradient: invalid number of arguments", TypeError)
    spacings = []
    for given, ax in zip(varargs, chosen):
        distances = np.asanyarray(given)
        if distances.ndim == 0:
            spacings.append(given)
            continue
        if distances.ndim != 1:
            raise located("gradient: distances must be either scalars or 1d", ValueError)
        if len(distances) != shape[ax]:
            raise located("gradient: when 1d, distances must match the length of the corresponding "
                          "dimension", ValueError)
        if np.issubdtype(distances.dtype, np.integer):
            distances = distances.astype(np.float64)
        steps = np.diff(distances)
        spacings.append(steps[0] if (steps == steps[0]).all() else steps)
    return spacings


def _weighted(terms, shape, axis):
    """``sum(w * f)`` over (weight, value) pairs; an array of weights lies along ``axis``."""
    total = None
    for w, f in terms:
        if np.ndim(w):
            w = w.reshape(tuple(-1 if d == axis else 1 for d in range(len(shape))))
            w = _wrap(in_space_of(node_of(w), f._node))
        total = w * f if total is None else total + w * f
    return total


@function(np.gradient)
def gradient(f, *varargs, axis=None, edge_order=1):
    """``numpy.gradient``: central differences inside, one-sided ones (first or second order,
    ``edge_order``) at the ends, along each axis in ``axis`` (all by default), with unit
    spacing, one spacing, or a spacing or coordinate array per axis. One axis gives one
    value, several a tuple. The gradient flows back through the differences."""
    from ._shape import _slices, concatenate
    f = as_var(f, "gradient")
    ndim = f.ndim
    try:
        chosen = tuple(range(ndim)) if axis is None else np.lib.array_utils.normalize_axis_tuple(axis, ndim)
    except (ValueError, TypeError) as error:
        raise located(f"gradient: {error}", type(error)) from None
    spacings = _spacings(varargs, f.shape, chosen)
    if edge_order > 2:
        raise located("gradient: 'edge_order' greater than 2 not supported", ValueError)
    otype = f.dtype
    if otype.kind not in "fc":
        otype = np.dtype(np.float64)
        f = astype(f, otype)
    results = []
    for ax, dx in zip(chosen, spacings):
        if f.shape[ax] < edge_order + 1:
            raise located("gradient: Shape of array too small to calculate a numerical gradient, at "
                          "least (edge_order + 1) elements are required.", ValueError)

        def at(start, stop=_NO_VALUE):
            """f[start:stop] along the axis; one element (kept as an axis) without ``stop``."""
            if stop is _NO_VALUE:
                stop = start + 1 if start != -1 else None
            return _slices(f, _along(ndim, ax, slice(start, stop)))
        uniform = np.ndim(dx) == 0
        if uniform:
            inside = (at(2, None) - at(0, -2)) / (2. * dx)
        else:
            dx1, dx2 = dx[:-1], dx[1:]
            inside = _weighted(((-dx2 / (dx1 * (dx1 + dx2)), at(0, -2)),
                                ((dx2 - dx1) / (dx1 * dx2), at(1, -1)),
                                (dx1 / (dx2 * (dx1 + dx2)), at(2, None))), f.shape, ax)
        if edge_order == 1:
            first = (at(1) - at(0)) / (dx if uniform else dx[0])
            last = (at(-1) - at(-2)) / (dx if uniform else dx[-1])
        else:
            if uniform:
                a, b, c = -1.5 / dx, 2. / dx, -0.5 / dx
            else:
                dx1, dx2 = dx[0], dx[1]
                a = -(2. * dx1 + dx2) / (dx1 * (dx1 + dx2))
                b = (dx1 + dx2) / (dx1 * dx2)
                c = -dx1 / (dx2 * (dx1 + dx2))
            first = a * at(0) + b * at(1) + c * at(2)
            if uniform:
                a, b, c = 0.5 / dx, -2. / dx, 1.5 / dx
            else:
                dx1, dx2 = dx[-2], dx[-1]
                a = dx2 / (dx1 * (dx1 + dx2))
                b = -(dx2 + dx1) / (dx1 * dx2)
                c = (2. * dx2 + dx1) / (dx2 * (dx1 + dx2))
            last = a * at(-3) + b * at(-2) + c * at(-1)
        parts = [astype(p, otype) for p in (first, inside, last)]
        results.append(concatenate(parts, axis=ax))
    return results[0] if len(results) == 1 else tuple(results)


# ---- sorting --------------------------------------------------------------------------------------

def _kind(name, kind, order, stable):
    refuse(name, "order", order)
    if stable is not None:
        if kind is not None:
            raise located(f"{name}: `kind` and `stable` parameters can't both be specified.",
                          ValueError)
        return "stable" if stable else None
    return kind


def _argsort(a, axis, kind):
    return build("argsort", (a,), (axis, kind))


@function(np.sort)
def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """``numpy.sort``: ``argsort`` and a gather along ``axis``; the gradient of each element
    goes back to the position it came from (a sorted copy: variables are immutable)."""
    from ._shape import ravel
    a = as_var(a, "sort")
    kind = _kind("sort", kind, order, stable)
    if axis is None:
        a, axis = ravel(a), 0
    axis = axis_("sort", axis, a.ndim)
    return build("permute_along_axis", (a, _argsort(a, axis, kind)), (axis,))


@function(np.argsort, differentiable=False, why="integer indices")
def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """``numpy.argsort``: the indices that sort ``a`` along ``axis`` (no gradient)."""
    from ._shape import ravel
    a = as_var(a, "argsort")
    kind = _kind("argsort", kind, order, stable)
    if axis is None:
        a, axis = ravel(a), 0
    return _argsort(a, axis_("argsort", axis, a.ndim), kind)


def _kth(name, kth, a, axis):
    """``kth`` checked as NumPy checks it (an int or a sequence of ints, each within the axis)."""
    if isinstance(kth, Var):
        kth = constant_value(name, kth, "kth")
    if a.size:
        np.argpartition(np.zeros(a.shape[axis], np.int8), kth)    # NumPy's own errors
    k = np.asarray(kth)
    return int(k) if k.ndim == 0 else tuple(int(i) for i in k)


def _partition_args(name, a, kth, axis, kind, order):
    from ._shape import ravel
    a = as_var(a, name)
    refuse(name, "order", order)
    if kind != "introselect":
        raise located(f"{name}: select kind must be 'introselect' (got {kind!r})", ValueError)
    if axis is None:
        a, axis = ravel(a), 0
    axis = axis_(name, axis, a.ndim)
    try:
        kth = _kth(name, kth, a, axis)
    except (ValueError, TypeError) as error:
        raise located(f"{name}: {error}", type(error)) from None
    return a, kth, axis


@function(np.partition)
def partition(a, kth, axis=-1, kind="introselect", order=None):
    """``numpy.partition``: each kth element where it would be in the sorted lane, smaller ones
    before it and larger ones after (NumPy's own result, element for element); the gradient of
    each element goes back to the position it came from."""
    a, kth, axis = _partition_args("partition", a, kth, axis, kind, order)
    return build("permute_along_axis", (a, build("partition_order", (a,), (kth, axis))), (axis,))


@function(np.argpartition, differentiable=False, why="integer indices")
def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """``numpy.argpartition``: the indices that would partition ``a`` (no gradient)."""
    a, kth, axis = _partition_args("argpartition", a, kth, axis, kind, order)
    return build("argpartition", (a,), (kth, axis))


def _sorted_lanes(name, a, axis):
    """``a`` with the axes in ``axis`` merged into one last axis and sorted along it; the
    reduced axes, and the shape the lanes were kept in."""
    from ._shape import reshape, transpose
    ndim = a.ndim
    reduced = axes(name, axis, ndim)
    reduced = tuple(range(ndim)) if reduced is None else reduced
    kept = tuple(i for i in range(ndim) if i not in reduced)
    kept_shape = tuple(a.shape[i] for i in kept)
    if kept + reduced != tuple(range(ndim)):
        a = transpose(a, kept + reduced)
    if len(reduced) != 1:
        a = reshape(a, kept_shape + (_count(a.shape[len(kept):], None),))
    return sort(a, axis=-1), reduced, kept_shape


def _kept_dims(result, reduced, shape, lead=()):
    """``result`` (of shape ``lead + kept``) with the reduced axes put back as 1s."""
    from ._shape import reshape
    return reshape(result, lead + tuple(1 if i in reduced else s for i, s in enumerate(shape)))


@function(np.median)
def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """``numpy.median``: the middle of the sorted values (the mean of the two middle ones for
    an even count); the gradient goes to them."""
    a = as_var(a, "median")
    refuse("median", "out", out)
    s, reduced, kept_shape = _sorted_lanes("median", a, axis)
    n = s.shape[-1]
    half = n // 2
    if n % 2 and s.dtype.kind in "fc":
        result = s[..., half]
    else:
        result = mean(s[..., half - 1 + n % 2:half + 1] if n else s[..., 0:0], axis=-1)   # empty: nan
    return _kept_dims(result, reduced, a.shape) if keepdims else result


def _quantile(name, a, q, weak, axis, out, method, keepdims, weights, message):
    a = as_var(a, name)
    refuse(name, "out", out)
    refuse(name, "weights", weights)
    if method != "linear":
        raise located(f"{name}: method={method!r} is not supported on variables (only 'linear')",
                      TypeError)
    if a.dtype.kind == "c":
        raise located(f"{name}: a must be an array of real numbers", TypeError)
    if q.size and not (np.all(q >= 0) and np.all(q <= 1)):
        raise located(f"{name}: {message}", ValueError)
    exact = q.dtype.kind in "biu"            # q of 0 and 1: elements taken, no interpolation
    if not exact:
        if a.dtype == np.bool_:
            raise located(f"{name}: numpy boolean subtract, the `-` operator, is not supported "
                          f"(interpolating between boolean values)", TypeError)
        dtype = np.result_type(a.dtype, 0.0 if weak else q.dtype)
        if dtype != a.dtype:
            a = astype(a, dtype)
    s, reduced, kept_shape = _sorted_lanes(name, a, axis)
    n = s.shape[-1]
    if n == 0:
        raise located(f"{name}: index -1 is out of bounds for axis 0 with size 0", IndexError)
    position = np.asarray((n - 1) * q)
    lower = np.minimum(np.floor(position), n - 1).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    t = position - lower
    if q.ndim == 0:
        lower, upper = int(lower), int(upper)
    result = s[..., lower]
    if not exact and np.any(t != 0):
        t = float(t) if weak else t.astype(s.dtype)
        if not weak:            # a number, or weights in the sorted values' library
            t = t[()] if t.ndim == 0 else _wrap(in_space_of(node_of(t), s._node))
        result = result + (s[..., upper] - result) * t
    if q.ndim and kept_shape:
        from ._shape import moveaxis
        k = len(kept_shape)
        result = moveaxis(result, tuple(range(k, k + q.ndim)), tuple(range(q.ndim)))
    return _kept_dims(result, reduced, a.shape, q.shape) if keepdims else result


def _q_value(name, q):
    q = constant_value(name, q, "q")
    return np.asarray(q), type(q) in (int, float)      # Python numbers are typed weakly


@function(np.quantile)
def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *,
             weights=None):
    """``numpy.quantile`` with the default 'linear' method: the sorted values interpolated
    linearly at ``q * (n - 1)``; the gradient goes to the two neighbours with the
    interpolation weights. ``q`` is a constant (a number or an array)."""
    q, weak = _q_value("quantile", q)
    return _quantile("quantile", a, q, weak, axis, out, method, keepdims, weights,
                     "Quantiles must be in the range [0, 1]")


@function(np.percentile)
def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False, *,
               weights=None):
    """``numpy.percentile``: ``quantile`` at ``q / 100``."""
    q, weak = _q_value("percentile", q)
    return _quantile("percentile", a, np.true_divide(q, 100), weak, axis, out, method, keepdims,
                     weights, "Percentiles must be in the range [0, 100]")


# ---- NaN-ignoring forms -------------------------------------------------------------------------

def _nan_masked(a, fill):
    from ._ufuncs import isnan, where as where_
    if a.dtype.kind not in "fc":
        return a, None
    nan = isnan(a)
    return where_(nan, a.dtype.type(fill), a), nan


@function(np.nansum)
def nansum(a, axis=None, dtype=None, out=None, keepdims=_NO_VALUE, initial=_NO_VALUE, where=_NO_VALUE):
    """``numpy.nansum``: ``sum`` with NaNs taken as zero (they get no gradient)."""
    a, _ = _nan_masked(as_var(a, "nansum"), 0)
    return sum(a, axis, dtype, out, _keep(keepdims), initial, where)


@function(np.nanmean)
def nanmean(a, axis=None, dtype=None, out=None, keepdims=_NO_VALUE, *, where=_NO_VALUE):
    """``numpy.nanmean``: the mean of the elements that are not NaN."""
    a = as_var(a, "nanmean")
    if a.dtype.kind not in "fc":
        return mean(a, axis, dtype, out, _keep(keepdims), where=where)
    refuse("nanmean", "out", out)
    _no_where("nanmean", where)
    if dtype is not None:
        a = astype(a, dtype)
    masked, nan = _nan_masked(a, 0)
    from ._ufuncs import where as where_
    real = np.empty(0, a.dtype).real.dtype.type
    count = sum(where_(nan, real(0), real(1)), axis, keepdims=_keep(keepdims))
    return sum(masked, axis, keepdims=_keep(keepdims)) / count


def _nan_extreme(name, extreme, fill, a, axis, out, keepdims, initial, where):
    a = as_var(a, name)
    masked, nan = _nan_masked(a, fill)
    result = extreme(masked, axis, out, _keep(keepdims), initial, where)
    if nan is None:
        return result
    from ._ufuncs import where as where_
    return where_(all(nan, axis, keepdims=_keep(keepdims)), a.dtype.type(np.nan), result)


@function(np.nanmax)
def nanmax(a, axis=None, out=None, keepdims=_NO_VALUE, initial=_NO_VALUE, where=_NO_VALUE):
    """``numpy.nanmax``: ``max`` ignoring NaNs (NaN where a lane has nothing else)."""
    return _nan_extreme("nanmax", max, -np.inf, a, axis, out, keepdims, initial, where)


@function(np.nanmin)
def nanmin(a, axis=None, out=None, keepdims=_NO_VALUE, initial=_NO_VALUE, where=_NO_VALUE):
    """``numpy.nanmin``: ``min`` ignoring NaNs (NaN where a lane has nothing else)."""
    return _nan_extreme("nanmin", min, np.inf, a, axis, out, keepdims, initial, where)


# ---- integer and boolean results: no gradient -------------------------------------------------------

def _arg_extreme(name, a, axis, out, keepdims):
    a = as_var(a, name)
    refuse(name, "out", out)
    axis = None if axis is None else axis_(name, axis, a.ndim)
    if (a.size == 0 if axis is None else a.shape[axis] == 0):
        raise located(f"{name}: attempt to get {name} of an empty sequence", ValueError)
    return build(name, (a,), (axis, _keep(keepdims)))


@function(np.argmax, differentiable=False, why="integer indices")
def argmax(a, axis=None, out=None, *, keepdims=_NO_VALUE):
    """``numpy.argmax``: the index of the first maximum (flat when ``axis`` is None)."""
    return _arg_extreme("argmax", a, axis, out, keepdims)


@function(np.argmin, differentiable=False, why="integer indices")
def argmin(a, axis=None, out=None, *, keepdims=_NO_VALUE):
    """``numpy.argmin``: the index of the first minimum (flat when ``axis`` is None)."""
    return _arg_extreme("argmin", a, axis, out, keepdims)


def _logical(name, a, axis, out, keepdims, where):
    a = as_var(a, name)
    refuse(name, "out", out)
    _no_where(name, where)
    return reduce(name, a, axis, _keep(keepdims), name)


@function(np.all, differentiable=False, why="a boolean result")
def all(a, axis=None, out=None, keepdims=_NO_VALUE, *, where=_NO_VALUE):  # noqa: A001
    """``numpy.all``: whether every element over ``axis`` is nonzero."""
    return _logical("all", a, axis, out, keepdims, where)


@function(np.any, differentiable=False, why="a boolean result")
def any(a, axis=None, out=None, keepdims=_NO_VALUE, *, where=_NO_VALUE):  # noqa: A001
    """``numpy.any``: whether some element over ``axis`` is nonzero."""
    return _logical("any", a, axis, out, keepdims, where)


@function(np.count_nonzero, differentiable=False, why="an integer count")
def count_nonzero(a, axis=None, *, keepdims=False):
    """``numpy.count_nonzero``: how many elements over ``axis`` are nonzero."""
    return reduce("count_nonzero", as_var(a, "count_nonzero"), axis, keepdims, "count_nonzero")


def _value(name, a):
    """The value of ``a``, for functions whose result's shape depends on it. Inside a trace
    that would freeze a traced value into the program, so it is refused."""
    if modes.tracer is not None and modes.tracer.depends(a._node):
        raise located(f"{name}: its result's shape depends on the values of a traced argument; "
                      f"use a mask (multiply, or where(condition, x, y)) instead", GradientError)
    return a.data


@function(np.nonzero, differentiable=False, why="integer indices")
def nonzero(a):
    """``numpy.nonzero``: a tuple of index arrays (constants: their number depends on the
    values, so this reads ``a``'s value, and is refused on a traced argument)."""
    a = as_var(a, "nonzero")
    return tuple(_wrap(leaf(i)) for i in np.nonzero(_value("nonzero", a)))


@function(np.flatnonzero, differentiable=False, why="integer indices")
def flatnonzero(a):
    """``numpy.flatnonzero``: the indices of the nonzero elements of the flattened value."""
    a = as_var(a, "flatnonzero")
    return _wrap(leaf(np.flatnonzero(_value("flatnonzero", a))))


@function(np.searchsorted, differentiable=False, why="integer indices")
def searchsorted(a, v, side="left", sorter=None):
    """``numpy.searchsorted``: where the elements of ``v`` would go in the sorted 1-D ``a``."""
    a = as_var(a, "searchsorted")
    if a.ndim != 1:
        raise located(f"searchsorted: a must be 1-D, got shape {a.shape}", ValueError)
    if side not in ("left", "right"):
        raise located(f"searchsorted: side must be 'left' or 'right', got {side!r}", ValueError)
    if sorter is not None:
        a = a[np.asarray(constant_value("searchsorted", sorter, "sorter"), np.intp)]
    return build("searchsorted", (a, node_of(v, a._node, "searchsorted")), (side,))



@function(np.allclose, differentiable=False, why="a boolean result")
def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``numpy.allclose``: a Python bool, ``all(isclose(...))``; inside neuronika.grad the
    answer is guarded (a different one traces again), like ``if x > 0``."""
    from ._ufuncs import isclose
    return bool(all(isclose.implementation(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)))


@function(np.array_equal, differentiable=False, why="a boolean result")
def array_equal(a1, a2, equal_nan=False):
    """``numpy.array_equal``: the same shape and elements (a Python bool, guarded in traces)."""
    from ._ufuncs import equal, isnan, logical_and, logical_or
    a1, a2 = var_of(a1, name="array_equal"), var_of(a2, name="array_equal")
    if a1.shape != a2.shape:
        return False
    same = equal.implementation(a1, a2)
    if equal_nan:
        same = logical_or.implementation(same, logical_and.implementation(isnan(a1), isnan(a2)))
    return bool(all(same))


__all__ += ["allclose", "array_equal"]
