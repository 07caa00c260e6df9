"""Elementwise ops. Adjoints are written in the output's space; the engine
reduces them to each input's (broadcast) shape."""
from __future__ import annotations

import functools
import re

import numpy as np

from ..graph import result_dtype
from . import ZERO, Grad, batching, declare, broadcast_shapes



# NumPy functions the standard does not have are kernels (ops/kernels.py): NumPy's own ufunc in
# the NumPy family, the same function from the standard's operations in the generic one.


@functools.lru_cache(maxsize=None)
def _loop_dtype(ufunc, dtype, nin):
    with np.errstate(all="ignore"):              # arctanh(1 + 0j) and friends warn
        return ufunc(*[np.ones((1,), dtype)] * nin).dtype


def ufunc_dtype(ufunc, keep_float=False):
    """A dtype rule: what ``ufunc`` gives for the inputs' promoted dtype (Python numbers
    weak, as in NumPy 2), so ``exp`` of integers is float64 and ``hypot`` of int8 float16;
    with ``keep_float`` a float dtype is kept without asking NumPy. A dtype with no loop
    raises NumPy's TypeError when the graph is built."""
    nin = getattr(ufunc, "nin", 1)          # np.sum, np.mean: the first input's dtype

    def rule(inputs, attrs):
        dtype = inputs[0].dtype if nin == 1 else result_dtype(inputs[:nin])
        if keep_float and dtype.kind == "f":
            return dtype
        return _loop_dtype(ufunc, dtype, nin)
    return rule


def float_dtype(ufunc):
    """A dtype rule: float inputs keep their (promoted) dtype; others get what ``ufunc`` gives."""
    return ufunc_dtype(ufunc, keep_float=True)


def _inexact_inputs(forward, names, operator=False):
    """``forward`` with integer and boolean inputs converted to the result's float dtype first,
    where the result is inexact: NumPy's float functions convert inside, the standard's take
    floats only. An ``operator`` takes Python numbers as they are (``n / 3`` of a Python int
    argument is a Python float, weakly typed, as in NumPy)."""
    pattern = re.compile(r"\b(" + "|".join(names) + r")\b")

    def kept(ctx, name):
        return ctx.dtypes[name].kind in "fc" or operator and name in ctx.weak

    def template(ctx):
        if ctx.dtype.kind not in "fc" or all(kept(ctx, n) for n in names):
            return forward
        return pattern.sub(lambda m: m.group(1) if kept(ctx, m.group(1))
                           else f"xp.astype({m.group(1)}, dtype)", forward)
    return template


def _binary(name, forward, da, db, doc, dtype=None, **kwargs):
    if dtype is not None and isinstance(forward, str) and (forward.startswith("xp.") or forward == "a / b"):
        forward = _inexact_inputs(forward, ("a", "b"), operator=forward == "a / b")
    return declare(name, ("a", "b"), forward, {"a": da, "b": db},
                   shape=broadcast_shapes, elementwise=True, doc=doc, dtype=dtype, **kwargs)


def _on_numbers(operator, function, kinds="biufc"):
    """A forward that is Python's ``operator`` where every input is a Python number and the
    result is of one of ``kinds`` (what NumPy code computes for ``n // 2`` or ``abs(s)``: a
    Python number, weakly typed; NumPy's functions would give a NumPy scalar), ``function``
    otherwise."""
    return lambda ctx: (operator if len(ctx.weak) == len(ctx.names) and ctx.dtype.kind in kinds
                        else function)


def inexact_dtype(inputs, attrs):
    """The promoted dtype, float64 where that would be an integer or boolean (true division)."""
    dtype = result_dtype(inputs)
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _unary(name, forward, dx, doc, ufunc=None, dtype=None, **kwargs):
    dtype = float_dtype(ufunc) if ufunc is not None else dtype
    if ufunc is not None and isinstance(forward, str) and forward.startswith("xp."):
        forward = _inexact_inputs(forward, ("x",))
    return declare(name, ("x",), forward, {"x": dx}, elementwise=True, dtype=dtype, doc=doc, **kwargs)


ADD = _binary("add", "a + b", "dy", "dy", "a + b with broadcasting", weak=True)
SUB = _binary("sub", "a - b", "dy", "-dy", "a - b with broadcasting", weak=True)
MUL = _binary("mul", "a * b", "dy * b", "dy * a", "a * b with broadcasting", weak=True)
DIV = _binary("div", "a / b", "dy / b", "-dy * y / b", "a / b with broadcasting", inexact_dtype, weak=True)
# Where b == 0 the base gradient is 0, even at a == 0: the exponent there is
# taken as 1 so that a ** (b - 1) never divides by zero.
def real_power(a, b):
    """``a ** b`` of Python numbers whose result the trace declares real: a negative float to a
    fractional power is nan, as in NumPy's float arrays and JAX, not Python's complex number."""
    y = a ** b
    return float("nan") if y.__class__ is complex else y


_REAL_POWER = {"real_power": real_power}


def _ints(inputs, attrs):
    """An int to an int power, over Python numbers: an int, or a float where the exponent is
    negative (Python's rule; the trace declares an int)."""
    return all(i.dtype.kind in "iub" for i in inputs)


POWER = _binary("power", _on_numbers("real_power(a, b)", "a ** b", "f"), "dy * b * a ** power_exponent(b)",
                "dy * y * log_where_nonzero(a)", "a ** b with a variable exponent", weak=True,
                typed_by_value=_ints, statics=lambda ctx: _REAL_POWER)
# b - 1, and 0 where b == 0 (then the base gradient b * a ** (b - 1) is 0 even at a == 0): a
# kernel, as NumPy's b - 1 + (b == 0) keeps a Python float b weak and the standard has no
# arithmetic on booleans. Its derivative is 1 (almost everywhere).
POWER_EXPONENT = _unary("power_exponent", "power_exponent(x)", "dy",
                        "b - 1, 0 where b == 0: the exponent of power's base gradient", weak=True)

NEG = _unary("neg", "-x", "-dy", "-x", weak=True)
def _pow_grad(ctx):
    if ctx.p == 0:
        return "xp.zeros_like(x)"
    return "dy * p * x" if ctx.p == 2 else "dy * p * x ** pm1"


POW = _unary("pow", _on_numbers("real_power(x, p)", "x ** p", "f"), _pow_grad,
             "x ** p for a constant exponent p", attrs=("p",),
             statics=lambda ctx: {"pm1": ctx.p - 1, **_REAL_POWER}, weak=True,
             typed_by_value=lambda inputs, attrs: inputs[0].dtype.kind in "iub" and attrs[0] < 0)
SQRT = _unary("sqrt", "xp.sqrt(x)", "0.5 * dy / y", "square root", np.sqrt)
EXP = _unary("exp", "xp.exp(x)", "dy * y", "e ** x", np.exp)
LOG = _unary("log", "xp.log(x)", "dy / x", "natural logarithm", np.log)


def _abs_grad(ctx):
    # complex x (HIPS autograd's convention): dy * conj(x) / |x|, 0 at 0; written without
    # sign, whose (zero) adjoint does not hold for complex x, so that it differentiates again
    if ctx.dtypes["x"].kind == "c":
        return "dy * xp.conj(x) / xp.where(x == 0, 1, y)"
    return "dy * xp.sign(x)"


_PYTHON_ABS = {"abs": abs}
ABS = _unary("abs", _on_numbers("abs(x)", "xp.abs(x)"), _abs_grad, "|x| (a real value for complex x)",
             dtype=ufunc_dtype(np.abs), weak=True, statics=lambda ctx: _PYTHON_ABS)


def real_only(name, rule):
    """A dtype rule that refuses complex inputs (an op whose form is for real values only)."""
    def checked(inputs, attrs):
        if any(n.dtype.kind == "c" for n in inputs):
            raise TypeError(f"complex values are not supported: {name} is defined for real values")
        return rule(inputs, attrs)
    return checked


def _same_dtype(inputs, attrs):
    return inputs[0].dtype


# (a mask as a number: NumPy's dy * mask is ~1.5x faster than xp.where(mask, dy, 0))
RELU = _unary("relu", "xp.maximum(x, 0)", "dy * xp.astype(y > 0, dtype)", "max(x, 0)", dtype=real_only("relu", _same_dtype))
LEAKY_RELU = _unary("leaky_relu", "xp.where(x > 0, x, slope * x)", "xp.where(x > 0, dy, slope * dy)",
                    "x for x > 0, slope * x otherwise", attrs=("slope",),
                    dtype=real_only("leaky_relu", _same_dtype))


# Both are written so that exp never sees a positive argument (no overflow at
# |x| = 1000) while the tails keep their relative precision; NumPy's logaddexp
# would do the same at several times the cost.
SOFTPLUS = _unary("softplus", "xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))", "dy * xp.exp(x - y)",
                  "log(1 + e ** x), computed without overflow",
                  dtype=real_only("softplus", float_dtype(np.exp)))
SIGMOID = _unary("sigmoid", "sigmoid(x, dtype)", "dy * y * (1 - y)",
                 "1 / (1 + e ** -x) (a kernel: without overflow warnings, and float16 computed in float32)",
                 dtype=real_only("sigmoid", float_dtype(np.exp)))
TANH = _unary("tanh", "xp.tanh(x)", "dy * (1 - y * y)", "hyperbolic tangent", np.tanh)
SIN = _unary("sin", "xp.sin(x)", "dy * xp.cos(x)", "sine", np.sin)
COS = _unary("cos", "xp.cos(x)", "-dy * xp.sin(x)", "cosine", np.cos)


def _clamp_grad(ctx):
    if ctx.lo is None:
        return "dy * xp.astype(x <= hi, dtype)"
    if ctx.hi is None:
        return "dy * xp.astype(x >= lo, dtype)"
    return "dy * xp.astype((x >= lo) & (x <= hi), dtype)"


CLAMP = _unary("clamp", "xp.clip(x, lo, hi)", _clamp_grad,
               "x limited to [lo, hi]; the gradient passes where lo <= x <= hi",
               attrs=("lo", "hi"), dtype=real_only("clamp", _same_dtype))


def _dropout_forward(ctx):
    if ctx.training and ctx.p > 0:
        return "mask = dropout_mask(x.shape, p, dtype)\ny = x * mask"     # no size named: a batch may vary
    return "x"


def _dropout_grad(ctx):
    return "dy * mask" if ctx.training and ctx.p > 0 else "dy"


DROPOUT = _unary("dropout", _dropout_forward, _dropout_grad,
                 "zeroes each element with probability p and scales the rest by 1 / (1 - p) "
                 "while training; the identity in eval",
                 attrs=("p", "training"), random=True, per_example=True, batch=batching.drawn_elementwise)

RANDOM = declare("random", ("like",), "random_draw(kind, shape, dtype)", {}, attrs=("kind", "shape"),
                 shape=lambda like, kind, shape: tuple(shape), n_differentiable=0,
                 dtype=lambda inputs, attrs: inputs[0].dtype, random=True, per_example=True,
                 batch=batching.draw,
                 doc="fresh random numbers of ``shape`` on every run (kind 'uniform': on [0, 1); "
                     "'normal': standard normal); ``like``, a 0-d constant, gives the dtype and the "
                     "array library: neuronika.rand / randn inside a traced function")


def _compare(name, symbol):
    return declare(name, ("a", "b"), f"a {symbol} b", {}, shape=broadcast_shapes, elementwise=True,
                   n_differentiable=0, dtype=lambda inputs, attrs: np.dtype(bool),
                   doc=f"a {symbol} b elementwise: a boolean value, with no gradient")


GREATER = _compare("greater", ">")
GREATER_EQUAL = _compare("greater_equal", ">=")
LESS = _compare("less", "<")
LESS_EQUAL = _compare("less_equal", "<=")
EQUAL = _compare("equal", "==")
NOT_EQUAL = _compare("not_equal", "!=")

def _where_shape(c, a, b):
    return broadcast_shapes(broadcast_shapes(c, a), b)


WHERE = declare("where", ("c", "a", "b"), "xp.where(c, a, b)",
                {"a": "xp.where(c, dy, 0)", "b": "xp.where(c, 0, dy)"},
                shape=_where_shape, elementwise=True,
                dtype=lambda inputs, attrs: result_dtype(inputs[1:]),
                doc="a where c is true, b elsewhere (c is a boolean value with no gradient)")
SIGN = _unary("sign", "xp.sign(x)", ZERO, "-1, 0 or 1: the sign of real x (zero gradient)")
# For complex x, sign(x) = x / |x| is not piecewise constant. In HIPS autograd's
# convention its adjoint is (dy - Re(dy * y) * conj(y)) / |x|; 0 at x = 0.
SIGN_COMPLEX = _unary("sign_complex", "xp.sign(x)",
                      "r = xp.abs(x)\n"
                      "dx = xp.where(r == 0, 0, (dy - xp.real(dy * y) * xp.conj(y)) / xp.where(r == 0, 1, r))",
                      "x / |x| for complex x, 0 at 0")
def _logical(function):
    """A logical template: the standard's logical functions take booleans, NumPy's any number
    (nonzero is true)."""
    def forward(ctx):
        args = [name if ctx.dtypes[name] == np.bool_ else f"({name} != 0)" for name in ctx.names]
        return f"xp.{function}({', '.join(args)})"
    return forward


LOGICAL_AND = declare("logical_and", ("a", "b"), _logical("logical_and"), {}, shape=broadcast_shapes, elementwise=True,
                      n_differentiable=0, dtype=lambda inputs, attrs: np.dtype(bool),
                      doc="a and b elementwise, for boolean values")
# The engine converts an adjoint to its input's dtype (the real part for a real input).
# to its own dtype: the input itself (a weak Python number, shape (), still becomes an array)
CAST = _unary("cast", lambda ctx: "x" if ctx.dtypes["x"] == ctx.dtype and ctx.shape != () else "xp.astype(x, dtype)",
              "dy", "x converted to another dtype",
              attrs=("dtype",), dtype=lambda inputs, attrs: attrs[0])
LOG_WHERE_NONZERO = _unary("log_where_nonzero", "log_where_nonzero(x)",
                           "xp.where(x == 0, 0, dy / xp.where(x == 0, 1, x))",
                           "log(x) where x != 0, 0 where x == 0 (the power op's exponent gradient)")

def _predicate(name, doc):
    return declare(name, ("x",), f"xp.{name}(x)", {}, elementwise=True, n_differentiable=0,
                   dtype=lambda inputs, attrs: np.dtype(bool), doc=doc)


ISFINITE = _predicate("isfinite", "whether x is neither infinite nor NaN (no gradient)")
ISNAN = _predicate("isnan", "whether x is NaN (no gradient)")
ISINF = _predicate("isinf", "whether x is +inf or -inf (no gradient)")

STOP_GRADIENT = _unary("stop_gradient", "x", None, "the value of x, through which no gradient flows",
                       n_differentiable=0)


def _custom_forward(ctx):
    args = ", ".join(ctx.names)
    return f"result = fwd({args})\ny = result[0]"


def _custom_grad(ctx):
    # the wrapper (neuronika.custom_vjp.defvjp) checks the user's gradient against these
    name = ctx.names[ctx.slot]
    return Grad(f"bwd(result[1], dy, {ctx.slot}, {name}_shape, {name}_dtype)", view=True)


CUSTOM_VJP = declare("custom_vjp", (), _custom_forward, {"x": _custom_grad},
                     attrs=("fwd", "bwd", "out_shape", "out_dtype"), variadic="x",
                     shape=lambda *rest: rest[-2], dtype=lambda inputs, attrs: attrs[3],
                     doc="a user function with its own gradient (see neuronika.custom_vjp)")


# ---- NumPy's elementwise functions -------------------------------------------------------------
# Constants are Python floats (weak: float32 stays float32). Integer inputs get
# NumPy's float result through ``float_dtype``.

_LN2 = 0.6931471805599453
_LN10 = 2.302585092994046
EXP2 = _unary("exp2", "exp2(x)", f"dy * y * {_LN2!r}", "2 ** x", np.exp2)
EXPM1 = _unary("expm1", "xp.expm1(x)", "dy * (y + 1)", "e ** x - 1, exact for small x", np.expm1)
LOG2 = _unary("log2", "xp.log2(x)", f"dy / (x * {_LN2!r})", "base-2 logarithm", np.log2)
LOG10 = _unary("log10", "xp.log10(x)", f"dy / (x * {_LN10!r})", "base-10 logarithm", np.log10)
LOG1P = _unary("log1p", "xp.log1p(x)", "dy / (x + 1)", "log(1 + x), exact for small x", np.log1p)
CBRT = _unary("cbrt", "cbrt(x)", "dy / (3 * y * y)", "cube root", np.cbrt)
SQUARE = _unary("square", "xp.square(x)", "dy * (x + x)", "x * x", dtype=ufunc_dtype(np.square))
RECIPROCAL = _unary("reciprocal", "xp.reciprocal(x)", "-dy * y * y", "1 / x",
                    dtype=ufunc_dtype(np.reciprocal))
FABS = _unary("fabs", "fabs(x)", "dy * xp.sign(x)", "|x| for real x, as a float", np.fabs)
TAN = _unary("tan", "xp.tan(x)", "dy * (1 + y * y)", "tangent", np.tan)
ARCSIN = _unary("arcsin", "xp.asin(x)", "dy / xp.sqrt(1 - x * x)", "inverse sine", np.arcsin)
ARCCOS = _unary("arccos", "xp.acos(x)", "-dy / xp.sqrt(1 - x * x)", "inverse cosine", np.arccos)
ARCTAN = _unary("arctan", "xp.atan(x)", "dy / (1 + x * x)", "inverse tangent", np.arctan)
SINH = _unary("sinh", "xp.sinh(x)", "dy * xp.cosh(x)", "hyperbolic sine", np.sinh)
COSH = _unary("cosh", "xp.cosh(x)", "dy * xp.sinh(x)", "hyperbolic cosine", np.cosh)
ARCSINH = _unary("arcsinh", "xp.asinh(x)", "dy / xp.sqrt(x * x + 1)", "inverse hyperbolic sine",
                 np.arcsinh)
ARCCOSH = _unary("arccosh", "xp.acosh(x)", "dy / xp.sqrt((x - 1) * (x + 1))",
                 "inverse hyperbolic cosine", np.arccosh)
ARCTANH = _unary("arctanh", "xp.atanh(x)", "dy / (1 - x * x)", "inverse hyperbolic tangent",
                 np.arctanh)
DEG2RAD = _unary("deg2rad", "deg2rad(x)", f"dy * {np.pi / 180!r}", "degrees to radians", np.deg2rad)
RAD2DEG = _unary("rad2deg", "rad2deg(x)", f"dy * {180 / np.pi!r}", "radians to degrees", np.rad2deg)
# d sinc / dx = (cos(pi x) - sinc(x)) / x, whose numerator is 0 at x = 0, where the
# denominator is taken as 1: the gradient there is 0, as it should be.
SINC = _unary("sinc", "sinc(x)", f"dy * (xp.cos({np.pi!r} * x) - y) / xp.where(x == 0, 1, x)",
              "sin(pi x) / (pi x), 1 at 0", np.sinc)


def _rounding(name, ufunc, doc, forward=None, **kwargs):
    return _unary(name, _inexact_inputs(forward or f"xp.{name}(x)", ("x",)), ZERO, f"{doc} (zero gradient)",
                  dtype=ufunc_dtype(ufunc), **kwargs)


FLOOR = _rounding("floor", np.floor, "the largest integer <= x")
CEIL = _rounding("ceil", np.ceil, "the smallest integer >= x")
TRUNC = _rounding("trunc", np.trunc, "x rounded towards zero")
RINT = _rounding("rint", np.rint, "x rounded to the nearest integer, ties to even", forward="xp.round(x)")
ROUND = _unary("round", "round_decimals(x, decimals)", ZERO,
               "x rounded to ``decimals`` decimals, ties to even (zero gradient)", attrs=("decimals",))

FLOOR_DIVIDE = _binary("floor_divide", _on_numbers("a // b", "xp.floor_divide(a, b)"), ZERO, ZERO,
                       "floor(a / b) (zero gradient)", weak=True)
# a = b * floor_divide(a, b) + remainder(a, b): the quotient is piecewise constant.
REMAINDER = _binary("remainder", _on_numbers("a % b", "xp.remainder(a, b)"), "dy",
                    "-dy * xp.floor_divide(a, b)", "a - b * floor(a / b), with the sign of b", weak=True)
FMOD = _binary("fmod", "fmod(a, b)", "dy", "-dy * xp.trunc(a / b)",
               "a - b * trunc(a / b), with the sign of a (C's fmod)")
ARCTAN2 = _binary("arctan2", "xp.atan2(a, b)", "dy * b / (a * a + b * b)", "-dy * a / (a * a + b * b)",
                  "the angle of the point (b, a)", float_dtype(np.arctan2))
HYPOT = _binary("hypot", "xp.hypot(a, b)", "dy * a / y", "dy * b / y", "sqrt(a * a + b * b)",
                float_dtype(np.hypot))
LOGADDEXP = _binary("logaddexp", "xp.logaddexp(a, b)", "dy * xp.exp(a - y)", "dy * xp.exp(b - y)",
                    "log(e ** a + e ** b), without overflow", float_dtype(np.logaddexp))
LOGADDEXP2 = _binary("logaddexp2", "logaddexp2(a, b)", "dy * exp2(a - y)", "dy * exp2(b - y)",
                     "log2(2 ** a + 2 ** b), without overflow", float_dtype(np.logaddexp2))
COPYSIGN = _binary("copysign", "xp.copysign(a, b)", "dy * xp.copysign(1, a) * xp.copysign(1, b)", ZERO,
                   "|a| with the sign of b", float_dtype(np.copysign))
# heaviside(a, b) is b exactly where a == 0
HEAVISIDE = _binary("heaviside", "heaviside(a, b)", ZERO, "xp.where(a == 0, dy, 0)",
                    "0 where a < 0, b where a == 0, 1 where a > 0", float_dtype(np.heaviside))


def _extremum(name, doc, forward=None, **kwargs):
    # The gradient goes to the input equal to the result, split evenly at ties (HIPS
    # autograd's rule); a NaN that fmax / fmin skip gets none. Written with where so
    # that float32 stays float32.
    return _binary(name, forward or f"xp.{name}(a, b)", "xp.where(a == b, 0.5 * dy, xp.where(a == y, dy, 0))",
                   "xp.where(a == b, 0.5 * dy, xp.where(b == y, dy, 0))", doc, **kwargs)


MAXIMUM = _extremum("maximum", "the larger of a and b (NaN if either is)")
MINIMUM = _extremum("minimum", "the smaller of a and b (NaN if either is)")
FMAX = _extremum("fmax", "the larger of a and b, ignoring a NaN", "fmax(a, b)")
FMIN = _extremum("fmin", "the smaller of a and b, ignoring a NaN", "fmin(a, b)")


def _no_gradient(name, forward, doc, arity, dtype):
    return declare(name, ("a", "b") if arity == 2 else ("x",), forward, {},
                   shape=broadcast_shapes if arity == 2 else None, elementwise=True,
                   n_differentiable=0, dtype=dtype, doc=doc)


def _boolean_result(inputs, attrs):
    return np.dtype(bool)


SIGNBIT = _no_gradient("signbit", "xp.signbit(x)", "whether the sign bit of x is set (no gradient)",
                       1, _boolean_result)
LOGICAL_NOT = _no_gradient("logical_not", _logical("logical_not"), "not x elementwise (no gradient)",
                           1, _boolean_result)
LOGICAL_OR = _no_gradient("logical_or", _logical("logical_or"), "a or b elementwise (no gradient)",
                          2, _boolean_result)
LOGICAL_XOR = _no_gradient("logical_xor", _logical("logical_xor"), "a xor b elementwise (no gradient)",
                           2, _boolean_result)
BITWISE_AND = _no_gradient("bitwise_and", "a & b", "a & b for integers and booleans (no gradient)",
                           2, ufunc_dtype(np.bitwise_and))
BITWISE_OR = _no_gradient("bitwise_or", "a | b", "a | b for integers and booleans (no gradient)",
                          2, ufunc_dtype(np.bitwise_or))
BITWISE_XOR = _no_gradient("bitwise_xor", "a ^ b", "a ^ b for integers and booleans (no gradient)",
                           2, ufunc_dtype(np.bitwise_xor))
INVERT = _no_gradient("invert", "~x", "~x: bitwise not for integers, not for booleans (no gradient)",
                      1, ufunc_dtype(np.invert))

# ---- fused activations and losses (kernels in ops/kernels.py) ---------------------------------------
# Each forward kernel returns the value and what the adjoint kernel reads; the symbolic adjoints
# (second derivatives) are the same formulas in catalogue ops.

_TWO_OVER_SQRT_PI = 2 / np.sqrt(np.pi)
_SQRT_HALF = np.sqrt(0.5)
_INV_SQRT_2PI = 1 / np.sqrt(2 * np.pi)
_SQRT_2_OVER_PI = np.sqrt(2 / np.pi)
_GELU_CUBIC = 0.044715

ERF = _unary("erf", "erf(x)", f"dy * xp.exp(-x * x) * {float(_TWO_OVER_SQRT_PI)!r}",
             "the error function (SciPy's where installed, else Cody's rational approximations in NumPy)",
             dtype=real_only("erf", float_dtype(np.exp)))


def _gelu_forward(ctx):
    return "y, cdf = gelu_erf(x)" if ctx.approximate == "none" else "y, t = gelu_tanh(x)"


def _gelu_grad(ctx):
    return "gelu_erf_grad(x, cdf, dy)" if ctx.approximate == "none" else "gelu_tanh_grad(x, t, dy)"


def _gelu_symbolic(ctx, build, bindings):
    x, dy = bindings["x"], bindings["dy"]
    if ctx.approximate == "none":
        cdf = 0.5 * (1 + build(ERF, (x * float(_SQRT_HALF),), ()))
        return dy * (cdf + x * build(EXP, (-0.5 * x * x,), ()) * float(_INV_SQRT_2PI))
    t = build(TANH, (float(_SQRT_2_OVER_PI) * x * (1 + _GELU_CUBIC * x * x),), ())
    du = float(_SQRT_2_OVER_PI) * (1 + 3 * _GELU_CUBIC * x * x)
    return 0.5 * dy * (1 + t + x * (1 - t * t) * du)


GELU = _unary("gelu", _gelu_forward, _gelu_grad,
              "x * Phi(x), Phi the standard normal CDF (approximate 'none'), or "
              "0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x ** 3))) (approximate 'tanh')",
              attrs=("approximate",), symbolic={"x": _gelu_symbolic},
              dtype=real_only("gelu", float_dtype(np.exp)))


def _bce_with_logits_symbolic(ctx, build, bindings):
    return bindings["dy"] * (build(SIGMOID, (bindings["x"],), ()) - bindings["t"])


BCE_WITH_LOGITS = declare(
    "bce_with_logits", ("x", "t"), "y, e = bce_logits(x, t)",
    {"x": "bce_logits_grad(x, t, e, dy)", "t": "-dy * x"},
    symbolic={"x": _bce_with_logits_symbolic}, shape=broadcast_shapes, elementwise=True,
    dtype=real_only("bce_with_logits", float_dtype(np.logaddexp)),
    doc="(1 - t) * x + log(1 + exp(-x)): binary cross-entropy of sigmoid(x) against t, without "
        "overflow; the gradient in x is sigmoid(x) - t")


__all__ = [name for name, value in dict(globals()).items() if name.isupper()]
