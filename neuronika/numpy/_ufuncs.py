"""Elementwise functions: NumPy's ufuncs on variables, with broadcasting and
NumPy 2's dtype promotion. Each is one catalogue op (``neuronika/ops``), or an
exact composition of them.

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> x = neuronika.from_ndarray(numpy.array([0.0, 1.0])).requires_grad()
>>> y = nnp.sum(nnp.exp(x) * 2.0)
>>> y.backward()
>>> x.grad
array([2.        , 5.43656366])
>>> numpy.exp(x) * 2.0                  # NumPy's own function builds the same graph
VarDiff([2.        , 5.43656366], dtype=float64)

Options that make no sense for an immutable value (``out=``, ``where=`` masks)
raise a TypeError naming the function; ``dtype=`` converts the inputs first.
"""
from __future__ import annotations

import numpy as np

from ..graph import apply
from ..variable import Var, _wrap
from ._core import OPS, build, function, located, node_of, nodes_of, refuse

__all__ = []


def _register(fn):
    __all__.append(fn.__name__)
    return fn


def _with_options(name, values, out, kwargs):
    """The inputs after NumPy's ufunc keyword options: ``dtype`` converts them,
    ``out`` and ``where`` are refused, the layout options are accepted and ignored."""
    refuse(name, "out", out)
    kwargs = dict(kwargs)
    dtype = kwargs.pop("dtype", None)
    refuse(name, "where", kwargs.pop("where", True), True)
    for ignored, default in (("casting", "same_kind"), ("order", "K"), ("subok", True),
                             ("signature", None)):
        refuse(name, ignored, kwargs.pop(ignored, default), default)
    if kwargs:
        raise located(f"{name}: unexpected keyword argument(s) {', '.join(sorted(kwargs))}", TypeError)
    if dtype is None:
        return values
    dtype = np.dtype(dtype)
    return tuple(astype(v, dtype) if isinstance(v, Var) else np.asarray(v, dtype) for v in values)


def unary(ufunc, op_name, name=None, doc=None):
    """A one-input ufunc over catalogue op ``op_name``."""
    op = OPS[op_name]
    name = name or ufunc.__name__

    def fn(x, out=None, **kwargs):
        if out is not None or kwargs:
            x, = _with_options(name, (x,), out, kwargs)
        node = x._node if isinstance(x, Var) else node_of(x, name=name)
        return _wrap(apply(op, (node,)))

    fn.__name__ = name
    fn.__doc__ = doc or f"``numpy.{ufunc.__name__}`` on variables ({op.doc})."
    return _register(function(ufunc, name=name)(fn))


def binary(ufunc, op_name, name=None, doc=None):
    """A two-input ufunc over catalogue op ``op_name``, broadcasting."""
    op = OPS[op_name]
    name = name or ufunc.__name__

    def fn(x1, x2, out=None, **kwargs):
        if out is not None or kwargs:
            x1, x2 = _with_options(name, (x1, x2), out, kwargs)
        return _wrap(apply(op, nodes_of((x1, x2), name)))

    fn.__name__ = name
    fn.__doc__ = doc or f"``numpy.{ufunc.__name__}`` on variables ({op.doc})."
    return _register(function(ufunc, name=name)(fn))


def astype(x, dtype, copy=True) -> Var:
    """``x`` converted to ``dtype``; the gradient is converted back."""
    dtype = np.dtype(dtype)
    x = x if isinstance(x, Var) else _wrap(node_of(x, name="astype"))
    if dtype == x.dtype:
        return x
    return build("cast", (x,), (dtype,))


# ---- arithmetic ------------------------------------------------------------------------------

add = binary(np.add, "add")
subtract = binary(np.subtract, "sub")
multiply = binary(np.multiply, "mul")
divide = binary(np.divide, "div")
true_divide = divide
negative = unary(np.negative, "neg")


@_register
@function(np.positive)
def positive(x, out=None, **kwargs):
    """``numpy.positive``: the value itself (variables are immutable, so no copy is needed)."""
    if out is not None or kwargs:
        x, = _with_options("positive", (x,), out, kwargs)
    return x if isinstance(x, Var) else _wrap(node_of(x, name="positive"))


_POWER = OPS["power"]


@_register
@function(np.power)
def power(x1, x2, out=None, **kwargs):
    """``numpy.power``. A constant number exponent is part of the op (``x ** 2`` is
    compiled as such); a variable or array exponent is differentiated too."""
    if out is not None or kwargs:
        x1, x2 = _with_options("power", (x1, x2), out, kwargs)
    if isinstance(x1, Var) and not isinstance(x2, (Var, np.ndarray, list, tuple)) and np.ndim(x2) == 0:
        p = x2.item() if isinstance(x2, np.generic) else x2
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            if isinstance(x2, np.generic) and np.result_type(x1.dtype, x2) != x1.dtype:
                x1 = astype(x1, np.result_type(x1.dtype, x2))
            return build("pow", (x1,), (p,))
    return _wrap(apply(_POWER, nodes_of((x1, x2), "power")))


# ---- unary functions -------------------------------------------------------------------------

sqrt = unary(np.sqrt, "sqrt")
exp = unary(np.exp, "exp")
log = unary(np.log, "log")
absolute = unary(np.absolute, "abs")
abs = absolute                           # noqa: A001  (NumPy's name)
__all__.append("abs")
tanh = unary(np.tanh, "tanh")
sin = unary(np.sin, "sin")
cos = unary(np.cos, "cos")
sign = unary(np.sign, "sign")


# ---- comparisons and logic: boolean results, no gradient ---------------------------------------

def _boolean(ufunc, op_name):
    fn = binary(ufunc, op_name)
    from ._core import NON_DIFFERENTIABLE
    NON_DIFFERENTIABLE[fn.__name__] = "a boolean result"
    return fn


greater = _boolean(np.greater, "greater")
greater_equal = _boolean(np.greater_equal, "greater_equal")
less = _boolean(np.less, "less")
less_equal = _boolean(np.less_equal, "less_equal")
equal = _boolean(np.equal, "equal")
not_equal = _boolean(np.not_equal, "not_equal")
logical_and = _boolean(np.logical_and, "logical_and")


def _predicate(ufunc):
    fn = unary(ufunc, ufunc.__name__)
    from ._core import NON_DIFFERENTIABLE
    NON_DIFFERENTIABLE[fn.__name__] = "a boolean result"
    return fn


isfinite = _predicate(np.isfinite)
isnan = _predicate(np.isnan)
isinf = _predicate(np.isinf)


# ---- selection ---------------------------------------------------------------------------------

@_register
@function(np.where)
def where(condition, x=None, y=None):
    """``numpy.where(condition, x, y)``: x where the condition holds, y elsewhere; the
    gradient flows to x and y (the condition has none). The one-argument form
    (indices of nonzero elements) has no gradient."""
    if x is None and y is None:
        from ._core import constant_value
        return np.nonzero(constant_value("where", condition, "a one-argument where's condition"))
    if x is None or y is None:
        raise located("where: give both x and y, or neither", ValueError)
    nodes = nodes_of((x, y), "where")
    c = node_of(condition, name="where")
    if c.dtype != np.bool_:
        c = build("not_equal", (c, node_of(0, like=c)))._node
    return _wrap(apply(OPS["where"], (c,) + nodes))


@_register
@function(np.clip)
def clip(a, a_min=np._NoValue, a_max=np._NoValue, out=None, *, min=np._NoValue, max=np._NoValue,
         **kwargs):
    """``numpy.clip``: the gradient passes where a_min <= a <= a_max (to ``a``), and to the
    bound that was taken elsewhere when the bounds are variables."""
    lo = a_min if a_min is not np._NoValue else min
    hi = a_max if a_max is not np._NoValue else max
    lo = None if lo is np._NoValue else lo
    hi = None if hi is np._NoValue else hi
    if out is not None or kwargs:
        a, = _with_options("clip", (a,), out, kwargs)
    a = a if isinstance(a, Var) else _wrap(node_of(a, name="clip"))
    constant = all(b is None or (not isinstance(b, (Var, np.ndarray, list, tuple)) and np.ndim(b) == 0)
                   for b in (lo, hi))
    if constant:
        if lo is None and hi is None:
            return a
        if lo is not None and hi is not None and lo > hi:
            return _clip_composed(a, lo, hi)          # NumPy gives a_max everywhere
        return build("clamp", (a,), (None if lo is None else float(lo), None if hi is None else float(hi)))
    return _clip_composed(a, lo, hi)


def _clip_composed(a, lo, hi):
    """clip as NumPy defines it, minimum(maximum(a, lo), hi), with the gradient going to
    whichever of a, lo and hi was taken."""
    result = a
    if lo is not None:
        result = where(less(result, lo), lo, result)
    if hi is not None:
        result = where(greater(result, hi), hi, result)
    return result
