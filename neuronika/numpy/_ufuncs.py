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

Piecewise-constant functions (``floor``, ``round``, ``sign``, ``floor_divide``, ...)
have a zero gradient, so ``backward()`` through them gives zeros; ``maximum``,
``minimum``, ``fmax`` and ``fmin`` split the gradient evenly at ties:

>>> a = neuronika.from_ndarray(numpy.array([1.0, 2.0])).requires_grad()
>>> nnp.sum(nnp.maximum(a, 1.0) + nnp.floor(a)).backward()
>>> a.grad
array([0.5, 1. ])

Comparisons, ``logical_*``, ``isnan``, ``signbit`` and the bitwise functions give
boolean or integer values, with no gradient. Options that make no sense for an
immutable value (``out=``, ``where=`` masks) raise a TypeError naming the
function; ``dtype=`` converts the inputs first.
"""
from __future__ import annotations

import operator

import numpy as np

from ..graph import WeakNode, apply, leaf, weak_leaf
from ..variable import Var, _wrap
from ._core import NON_DIFFERENTIABLE, OPS, UFUNC_OPS, build, function, in_space_of, located, node_of, nodes_of, refuse

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
    UFUNC_OPS[ufunc] = op
    return _register(function(ufunc, name=name)(fn))


def _number_like(value, node):
    """A Python float or int beside a float or complex variable: a leaf of the variable's dtype
    (what ``nodes_of`` gives, NumPy 2's weak typing, without asking NumPy for the dtype);
    beside a Python number (a weakly typed argument of a traced function), a Python number."""
    if node.__class__ is WeakNode:
        return weak_leaf(value)
    return leaf(node.dtype.type(value))


def binary(ufunc, op_name, name=None, doc=None):
    """A two-input ufunc over catalogue op ``op_name``, broadcasting."""
    op = OPS[op_name]
    name = name or ufunc.__name__

    def fn(x1, x2, out=None, **kwargs):
        if out is not None or kwargs:
            x1, x2 = _with_options(name, (x1, x2), out, kwargs)
        if isinstance(x1, Var):
            if isinstance(x2, Var):
                return _wrap(apply(op, (x1._node, x2._node)))
            if x2.__class__ is float or x2.__class__ is int:
                node = x1._node
                if node.dtype.kind in "fc":
                    return _wrap(apply(op, (node, _number_like(x2, node))))
        elif x1.__class__ is float or x1.__class__ is int:
            if isinstance(x2, Var) and x2._node.dtype.kind in "fc":
                node = x2._node
                return _wrap(apply(op, (_number_like(x1, node), node)))
        return _wrap(apply(op, nodes_of((x1, x2), name)))

    fn.__name__ = name
    fn.__doc__ = doc or f"``numpy.{ufunc.__name__}`` on variables ({op.doc})."
    UFUNC_OPS[ufunc] = op
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
true_divide = divide                     # the same ufunc in NumPy 2
__all__.append("true_divide")
negative = unary(np.negative, "neg")
floor_divide = binary(np.floor_divide, "floor_divide")
remainder = binary(np.remainder, "remainder")
mod = remainder                          # the same ufunc
__all__.append("mod")
fmod = binary(np.fmod, "fmod")
square = unary(np.square, "square")
reciprocal = unary(np.reciprocal, "reciprocal")


@_register
@function(np.positive)
def positive(x, out=None, **kwargs):
    """``numpy.positive``: the value itself (variables are immutable, so no copy is needed)."""
    if out is not None or kwargs:
        x, = _with_options("positive", (x,), out, kwargs)
    return x if isinstance(x, Var) else _wrap(node_of(x, name="positive"))


@_register
@function(np.divmod, name="divmod")
def divmod_(x1, x2, out=None, **kwargs):
    """``numpy.divmod``: the tuple ``(floor_divide(x1, x2), remainder(x1, x2))``."""
    if isinstance(out, tuple) and all(o is None for o in out):
        out = None
    if out is not None or kwargs:
        x1, x2 = _with_options("divmod", (x1, x2), out, kwargs)
    nodes = nodes_of((x1, x2), "divmod")
    return build("floor_divide", nodes), build("remainder", nodes)


divmod = divmod_                         # noqa: A001  (NumPy's name)

_POWER, _POW = OPS["power"], OPS["pow"]


@_register
@function(np.power)
def power(x1, x2, out=None, **kwargs):
    """``numpy.power``. A constant number exponent is part of the op (``x ** 2`` is
    compiled as such); a variable or array exponent is differentiated too."""
    if out is not None or kwargs:
        x1, x2 = _with_options("power", (x1, x2), out, kwargs)
    if (x2.__class__ is int or x2.__class__ is float) and isinstance(x1, Var) and x1._node.dtype.kind in "fc":
        return _wrap(apply(_POW, (x1._node,), (x2,)))      # (the common case: the dtype stays)
    if isinstance(x1, Var) and not isinstance(x2, (Var, np.ndarray, list, tuple)) and np.ndim(x2) == 0:
        p = x2.item() if isinstance(x2, np.generic) else x2
        if isinstance(p, (int, float)) and not isinstance(p, bool):
            dtype = np.result_type(x1.dtype, x2)      # a Python number is weak
            if dtype != x1.dtype:
                x1 = astype(x1, dtype)
            return build("pow", (x1,), (p,))
    return _wrap(apply(_POWER, nodes_of((x1, x2), "power")))


def _kind(value):
    if isinstance(value, Var):
        return value.dtype.kind
    return np.asarray(value).dtype.kind


@_register
@function(np.float_power)
def float_power(x1, x2, out=None, **kwargs):
    """``numpy.float_power``: ``power`` computed in float64 (complex128 for complex inputs)."""
    if out is not None or kwargs:
        x1, x2 = _with_options("float_power", (x1, x2), out, kwargs)
    dtype = np.dtype(np.complex128 if "c" in (_kind(x1), _kind(x2)) else np.float64)

    def converted(x):
        if isinstance(x, Var):
            return astype(x, dtype)
        if type(x) in (int, float, complex):
            return x                     # weak: takes the other operand's float64
        return np.asarray(x, dtype)
    return power(converted(x1), converted(x2))


# ---- unary functions -------------------------------------------------------------------------

sqrt = unary(np.sqrt, "sqrt")
cbrt = unary(np.cbrt, "cbrt")
exp = unary(np.exp, "exp")
exp2 = unary(np.exp2, "exp2")
expm1 = unary(np.expm1, "expm1")
log = unary(np.log, "log")
log2 = unary(np.log2, "log2")
log10 = unary(np.log10, "log10")
log1p = unary(np.log1p, "log1p")
absolute = unary(np.absolute, "abs")
abs = absolute                           # noqa: A001  (NumPy's name)
__all__.append("abs")
fabs = unary(np.fabs, "fabs")
sin = unary(np.sin, "sin")
cos = unary(np.cos, "cos")
tan = unary(np.tan, "tan")
arcsin = unary(np.arcsin, "arcsin")
arccos = unary(np.arccos, "arccos")
arctan = unary(np.arctan, "arctan")
sinh = unary(np.sinh, "sinh")
cosh = unary(np.cosh, "cosh")
tanh = unary(np.tanh, "tanh")
arcsinh = unary(np.arcsinh, "arcsinh")
arccosh = unary(np.arccosh, "arccosh")
arctanh = unary(np.arctanh, "arctanh")
deg2rad = unary(np.deg2rad, "deg2rad")
radians = unary(np.radians, "deg2rad")
rad2deg = unary(np.rad2deg, "rad2deg")
degrees = unary(np.degrees, "rad2deg")


@_register
@function(np.sinc)
def sinc(x):
    """``numpy.sinc``: sin(pi x) / (pi x), 1 at 0; the gradient there is 0."""
    return build("sinc", (x if isinstance(x, Var) else node_of(x, name="sinc"),))


# ---- two-input functions -----------------------------------------------------------------------

arctan2 = binary(np.arctan2, "arctan2")
hypot = binary(np.hypot, "hypot")
logaddexp = binary(np.logaddexp, "logaddexp")
logaddexp2 = binary(np.logaddexp2, "logaddexp2")
maximum = binary(np.maximum, "maximum")
minimum = binary(np.minimum, "minimum")
fmax = binary(np.fmax, "fmax")
fmin = binary(np.fmin, "fmin")
copysign = binary(np.copysign, "copysign")


# ---- piecewise constant: zero gradient ---------------------------------------------------------

_SIGN, _SIGN_COMPLEX = OPS["sign"], OPS["sign_complex"]


@_register
@function(np.sign)
def sign(x, out=None, **kwargs):
    """``numpy.sign``: -1, 0 or 1 for real x (zero gradient); x / |x| for complex x."""
    if out is not None or kwargs:
        x, = _with_options("sign", (x,), out, kwargs)
    node = x._node if isinstance(x, Var) else node_of(x, name="sign")
    return _wrap(apply(_SIGN_COMPLEX if node.dtype.kind == "c" else _SIGN, (node,)))


floor = unary(np.floor, "floor")
ceil = unary(np.ceil, "ceil")
trunc = unary(np.trunc, "trunc")
rint = unary(np.rint, "rint")
heaviside = binary(np.heaviside, "heaviside")


@_register
@function(np.fix)
def fix(x, out=None):
    """``numpy.fix``: rounded towards zero (``trunc``; zero gradient)."""
    refuse("fix", "out", out)
    return build("trunc", (x if isinstance(x, Var) else node_of(x, name="fix"),))


def _rounded(name, a, decimals, out):
    refuse(name, "out", out)
    try:
        decimals = operator.index(decimals)
    except TypeError:
        raise located(f"{name}: decimals must be an integer, got {decimals!r}", TypeError) from None
    return build("round", (a if isinstance(a, Var) else node_of(a, name=name),), (decimals,))


@_register
@function(np.round, name="round")
def round_(a, decimals=0, out=None):
    """``numpy.round``: to ``decimals`` decimals, ties to even (zero gradient)."""
    return _rounded("round", a, decimals, out)


@_register
@function(np.around)
def around(a, decimals=0, out=None):
    """``numpy.around``: the same as ``round``."""
    return _rounded("around", a, decimals, out)


round = round_                           # noqa: A001  (NumPy's name)


# ---- comparisons, logic and bits: boolean or integer results, no gradient ------------------------

def _no_gradient(ufunc, op_name, why="a boolean result"):
    fn = (binary if ufunc.nin == 2 else unary)(ufunc, op_name)
    NON_DIFFERENTIABLE[fn.__name__] = why
    return fn


greater = _no_gradient(np.greater, "greater")
greater_equal = _no_gradient(np.greater_equal, "greater_equal")
less = _no_gradient(np.less, "less")
less_equal = _no_gradient(np.less_equal, "less_equal")
equal = _no_gradient(np.equal, "equal")
not_equal = _no_gradient(np.not_equal, "not_equal")
logical_and = _no_gradient(np.logical_and, "logical_and")
logical_or = _no_gradient(np.logical_or, "logical_or")
logical_xor = _no_gradient(np.logical_xor, "logical_xor")
logical_not = _no_gradient(np.logical_not, "logical_not")
isfinite = _no_gradient(np.isfinite, "isfinite")
isnan = _no_gradient(np.isnan, "isnan")
isinf = _no_gradient(np.isinf, "isinf")
signbit = _no_gradient(np.signbit, "signbit")
bitwise_and = _no_gradient(np.bitwise_and, "bitwise_and", "an integer or boolean result")
bitwise_or = _no_gradient(np.bitwise_or, "bitwise_or", "an integer or boolean result")
bitwise_xor = _no_gradient(np.bitwise_xor, "bitwise_xor", "an integer or boolean result")
invert = _no_gradient(np.invert, "invert", "an integer or boolean result")


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
    a, b = nodes
    like = a if a.space is not None else b if b.space is not None else c if c.space is not None else None
    if like is not None:            # constant conditions and choices join the variables' library
        c = in_space_of(c, like)
        nodes = tuple(in_space_of(n, like) for n in nodes)
    if c.dtype != np.bool_:
        c = build("not_equal", (c, node_of(0, like=c)))._node
    return _wrap(apply(OPS["where"], (c,) + nodes))


def _finite_part(d, nan, posinf, neginf):
    """A real value with NaN and the infinities replaced by numbers of its dtype."""
    kind = d.dtype.type
    fill = where(isnan(d), kind(nan), where(d > 0, kind(posinf), kind(neginf)))
    return where(isfinite(d), d, fill)


@_register
@function(np.nan_to_num)
def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """``numpy.nan_to_num``: NaN replaced by ``nan``, infinities by ``posinf`` and ``neginf``
    (the dtype's largest and smallest values by default), in the real and imaginary parts
    separately; the gradient passes where the value was finite."""
    x = x if isinstance(x, Var) else _wrap(node_of(x, name="nan_to_num"))
    if x.dtype.kind not in "fc":
        return x
    from . import _complex
    real = _complex.real(x) if x.dtype.kind == "c" else x
    info = np.finfo(real.dtype)
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    if x.dtype.kind != "c":
        return _finite_part(x, nan, posinf, neginf)
    return (_finite_part(real, nan, posinf, neginf)
            + _finite_part(_complex.imag(x), nan, posinf, neginf) * 1j)


def _constant_bound(bound, dtype):
    """Whether a clip bound can be an attribute of the clamp op without changing the dtype."""
    if bound is None:
        return True
    if isinstance(bound, (Var, np.ndarray, list, tuple)) or np.ndim(bound) != 0:
        return False
    if isinstance(bound, np.generic):    # np.float64 is a float too, but not weak
        return np.result_type(dtype, bound) == dtype
    return isinstance(bound, (int, float)) and not isinstance(bound, bool)    # weak


@_register
@function(np.clip)
def clip(a, a_min=np._NoValue, a_max=np._NoValue, out=None, *, min=np._NoValue, max=np._NoValue,
         **kwargs):
    """``numpy.clip``, ``minimum(maximum(a, a_min), a_max)``: the gradient passes to ``a``
    where a_min <= a <= a_max, and to the bound taken elsewhere when the bounds are variables."""
    if a_min is np._NoValue and a_max is np._NoValue:
        lo = None if min is np._NoValue else min
        hi = None if max is np._NoValue else max
    elif a_min is np._NoValue or a_max is np._NoValue:       # as NumPy
        missing = "a_min" if a_min is np._NoValue else "a_max"
        raise located(f"clip() missing 1 required positional argument: {missing!r}", TypeError)
    elif min is not np._NoValue or max is not np._NoValue:
        raise located("clip: passing `min` or `max` keyword argument when `a_min` and `a_max` are "
                      "provided is forbidden", ValueError)
    else:
        lo, hi = a_min, a_max
    if out is not None or kwargs:
        a, = _with_options("clip", (a,), out, kwargs)
    a = a if isinstance(a, Var) else _wrap(node_of(a, name="clip"))
    if lo is None and hi is None:
        return a
    bounds = [b.dtype if isinstance(b, (Var, np.ndarray, np.generic)) else b for b in (lo, hi) if b is not None]
    target = np.result_type(a.dtype, *bounds)
    if a.dtype.kind in "biu" and target.kind in "fc":
        a = astype(a, target)               # as NumPy promotes (the standard does not mix kinds)
    if (a.dtype.kind == "f" and _constant_bound(lo, a.dtype) and _constant_bound(hi, a.dtype)
            and (lo is None or hi is None or not lo > hi)):
        return build("clamp", (a,), (None if lo is None else float(lo), None if hi is None else float(hi)))
    result = a if lo is None else maximum(a, lo)
    return result if hi is None else minimum(result, hi)


@_register
@function(np.isclose, differentiable=False, why="a boolean result")
def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """``numpy.isclose``: ``|a - b| <= atol + rtol * |b|`` elementwise; an infinity is close
    only to itself, a NaN to a NaN only with ``equal_nan``."""
    from ._core import var_of
    a, b = var_of(a, name="isclose"), var_of(b, name="isclose")
    if b.dtype.kind not in "fc":                  # as NumPy: b made inexact first
        b = astype(b, np.result_type(b.dtype, 1.0))
    close = less_equal(absolute(subtract(a, b)), add(atol, multiply(rtol, absolute(b))))
    result = logical_or(logical_and(close, isfinite(b)), equal(a, b))
    if equal_nan:
        result = logical_or(result, logical_and(isnan(a), isnan(b)))
    return result
