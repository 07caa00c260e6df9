"""Reductions: NumPy's signatures (``axis`` an int, a tuple or None; ``keepdims``;
``dtype``), each one catalogue op or an exact composition of them.

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> x = neuronika.from_ndarray(numpy.array([[1.0, 5.0], [3.0, 2.0]])).requires_grad()
>>> m = nnp.max(x, axis=1)
>>> m
VarDiff([5., 3.], dtype=float64)
>>> nnp.sum(m).backward()
>>> x.grad
array([[0., 1.],
       [1., 0.]])
"""
from __future__ import annotations

import numpy as np

from ..graph import apply
from ..variable import Var, _wrap
from ._core import OPS, axes, build, function, located, node_of, refuse
from ._ufuncs import astype

__all__ = ["sum", "mean", "max", "min", "amax", "amin"]

_SUM = OPS["sum"]
_NO_VALUE = np._NoValue


def as_var(x, name) -> Var:
    return x if isinstance(x, Var) else _wrap(node_of(x, name=name))


def reduce(op_name, x, axis, keepdims, name):
    """Catalogue reduction ``op_name`` of ``x`` over ``axis`` (checked and normalised)."""
    return build(op_name, (x,), (axes(name, axis, x.ndim), bool(keepdims)))


def _no_where(name, where):
    refuse(name, "where", where, True) if where is not _NO_VALUE else None


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
    if axis is None and not keepdims:
        result = _wrap(apply(_SUM, (a._node,), (None, False)))
    else:
        result = reduce("sum", a, axis, keepdims, "sum")
    if initial is not _NO_VALUE and initial is not None:
        result = result + initial
    return result


@function(np.mean)
def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=_NO_VALUE):
    """``numpy.mean``: integer inputs give float64, as in NumPy."""
    a = as_var(a, "mean")
    refuse("mean", "out", out)
    _no_where("mean", where)
    if dtype is not None:
        a = astype(a, dtype)
    return reduce("mean", a, axis, keepdims, "mean")


def _extreme(op_name, name, a, axis, out, keepdims, initial, where):
    a = as_var(a, name)
    refuse(name, "out", out)
    _no_where(name, where)
    if a.size == 0 and initial is _NO_VALUE:
        reduced = range(a.ndim) if axis is None else axes(name, axis, a.ndim)
        if any(a.shape[i] == 0 for i in reduced):
            raise located(f"{name}: zero-size array to reduction operation {name} which has no "
                          f"identity (shape {a.shape}, axis {axis})", ValueError)
    result = reduce(op_name, a, axis, keepdims, name)
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
