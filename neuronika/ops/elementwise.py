"""Elementwise ops. Adjoints are written in the output's space; the engine
reduces them to each input's (broadcast) shape."""
from __future__ import annotations

import numpy as np

from ..graph import result_dtype
from . import ZERO, Grad, declare, broadcast_shapes


def float_dtype(ufunc):
    """A dtype rule: float inputs keep their dtype; others get what ``ufunc`` gives."""
    def rule(inputs, attrs):
        dtype = inputs[0].dtype
        if dtype.kind == "f":
            return dtype
        return ufunc(np.ones((1,), dtype)).dtype
    return rule


def _binary(name, forward, da, db, doc, dtype=None):
    return declare(name, ("a", "b"), forward, {"a": da, "b": db},
                   shape=broadcast_shapes, elementwise=True, doc=doc, dtype=dtype)


def inexact_dtype(inputs, attrs):
    """The promoted dtype, float64 where that would be an integer or boolean (true division)."""
    dtype = result_dtype(inputs)
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _unary(name, forward, dx, doc, ufunc=None, dtype=None, **kwargs):
    dtype = float_dtype(ufunc) if ufunc is not None else dtype
    return declare(name, ("x",), forward, {"x": dx}, elementwise=True, dtype=dtype, doc=doc, **kwargs)


ADD = _binary("add", "a + b", "dy", "dy", "a + b with broadcasting")
SUB = _binary("sub", "a - b", "dy", "-dy", "a - b with broadcasting")
MUL = _binary("mul", "a * b", "dy * b", "dy * a", "a * b with broadcasting")
DIV = _binary("div", "a / b", "dy / b", "-dy * y / b", "a / b with broadcasting", inexact_dtype)
# Where b == 0 the base gradient is 0, even at a == 0: the exponent there is
# taken as 1 so that a ** (b - 1) never divides by zero.
POWER = _binary("power", "a ** b", "dy * b * a ** (xp.where(b == 0, 1, b) - 1)",
                "dy * y * log_where_nonzero(a)", "a ** b with a variable exponent")

NEG = _unary("neg", "-x", "-dy", "-x")
def _pow_grad(ctx):
    if ctx.p == 0:
        return "xp.zeros_like(x)"
    return "dy * p * x" if ctx.p == 2 else "dy * p * x ** pm1"


POW = _unary("pow", "x ** p", _pow_grad,
             "x ** p for a constant exponent p", attrs=("p",), statics=lambda ctx: {"pm1": ctx.p - 1})
SQRT = _unary("sqrt", "xp.sqrt(x)", "0.5 * dy / y", "square root", np.sqrt)
EXP = _unary("exp", "xp.exp(x)", "dy * y", "e ** x", np.exp)
LOG = _unary("log", "xp.log(x)", "dy / x", "natural logarithm", np.log)
ABS = _unary("abs", "xp.abs(x)", "dy * xp.sign(x)", "|x|")
RELU = _unary("relu", "xp.maximum(x, 0)", "dy * (x > 0)", "max(x, 0)")
LEAKY_RELU = _unary("leaky_relu", "xp.where(x > 0, x, slope * x)", "xp.where(x > 0, dy, slope * dy)",
                    "x for x > 0, slope * x otherwise", attrs=("slope",))
# Both are written so that exp never sees a positive argument (no overflow at
# |x| = 1000) while the tails keep their relative precision; NumPy's logaddexp
# would do the same at several times the cost.
SOFTPLUS = _unary("softplus", "xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))", "dy * xp.exp(x - y)",
                  "log(1 + e ** x), computed without overflow", np.exp)
SIGMOID = _unary("sigmoid",
                 "e = xp.exp(-xp.abs(x))\n"
                 "r = 1 / (1 + e)\n"
                 "y = xp.where(x >= 0, r, e * r)",
                 "dy * y * (1 - y)", "1 / (1 + e ** -x), computed without overflow", np.exp)
TANH = _unary("tanh", "xp.tanh(x)", "dy * (1 - y * y)", "hyperbolic tangent", np.tanh)
SIN = _unary("sin", "xp.sin(x)", "dy * xp.cos(x)", "sine", np.sin)
COS = _unary("cos", "xp.cos(x)", "-dy * xp.sin(x)", "cosine", np.cos)


def _clamp_grad(ctx):
    if ctx.lo is None:
        return "dy * (x <= hi)"
    if ctx.hi is None:
        return "dy * (x >= lo)"
    return "dy * ((x >= lo) & (x <= hi))"


CLAMP = _unary("clamp", "xp.clip(x, lo, hi)", _clamp_grad,
               "x limited to [lo, hi]; the gradient passes where lo <= x <= hi",
               attrs=("lo", "hi"))


def _dropout_forward(ctx):
    if ctx.training and ctx.p > 0:
        return "mask = dropout_mask(x_shape, p, dtype)\ny = x * mask"
    return "x"


def _dropout_grad(ctx):
    return "dy * mask" if ctx.training and ctx.p > 0 else "dy"


DROPOUT = _unary("dropout", _dropout_forward, _dropout_grad,
                 "zeroes each element with probability p and scales the rest by 1 / (1 - p) "
                 "while training; the identity in eval",
                 attrs=("p", "training"))

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
SIGN = _unary("sign", "xp.sign(x)", ZERO, "-1, 0 or 1: the sign of x (zero gradient)")
LOGICAL_AND = declare("logical_and", ("a", "b"), "xp.logical_and(a, b)", {}, shape=broadcast_shapes, elementwise=True,
                      n_differentiable=0, dtype=lambda inputs, attrs: np.dtype(bool),
                      doc="a and b elementwise, for boolean values")
CAST = _unary("cast", "x.astype(dtype)", "dy.astype(x_dtype)", "x converted to another dtype",
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
    return Grad(f"bwd(result[1], dy)[{ctx.slot}]", view=True)


CUSTOM_VJP = declare("custom_vjp", (), _custom_forward, {"x": _custom_grad},
                     attrs=("fwd", "bwd", "out_shape", "out_dtype"), variadic="x",
                     shape=lambda *rest: rest[-2], dtype=lambda inputs, attrs: attrs[3],
                     doc="a user function with its own gradient (see neuronika.custom_vjp)")

__all__ = [name for name, value in dict(globals()).items() if name.isupper()]
