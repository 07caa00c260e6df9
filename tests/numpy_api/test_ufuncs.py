"""Elementwise functions: values against NumPy, NumPy's dispatch, gradients of first
and second order against finite differences, over plain, broadcast, 0-d and
zero-size shapes; the zero-gradient functions give exact zeros; maximum and
friends split the gradient evenly at ties; dtypes follow NumPy 2 (integers to
float functions, float32 kept, Python numbers weak), in gradients too; the
operators ``// % divmod | ^ ~ round abs``.
"""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp

from .cases import (BINARY_SHAPES, UNARY_SHAPES, Case, away, rng, uniform)


def within(lo, hi):
    return lambda s, seed=0: uniform(s, lo, hi, seed)


def fractional(shape, seed=0, scale=1.0):
    """Values whose fractional part is in [0.1, 0.4] or [0.6, 0.9] (times ``scale``): away
    from the jumps of floor, ceil, trunc and round."""
    r = rng(seed)
    whole = r.integers(-3, 3, size=shape)
    frac = r.uniform(0.1, 0.4, size=shape) + 0.5 * (r.random(size=shape) < 0.5)
    return (whole + frac) * scale


def quotient_pair(shape_a, shape_b, seed=0):
    """a (any sign) and b (away from 0) with a / b at least 0.01 from an integer, so that
    floor_divide, remainder and fmod are smooth around them."""
    for s in range(seed, seed + 100):
        a, b = uniform(shape_a, seed=s), away(shape_b, seed=s + 1000)
        q = a / b
        if q.size == 0 or np.min(np.abs(q - np.round(q))) > 0.01:
            return a, b
    raise AssertionError("no smooth sample")


#: name -> (domain sampler) for one-input functions with a gradient.
UNARY = {
    "negative": uniform, "positive": uniform, "sqrt": within(0.3, 2.0), "cbrt": away,
    "exp": uniform, "exp2": uniform, "expm1": uniform,
    "log": within(0.3, 2.0), "log2": within(0.3, 2.0), "log10": within(0.3, 2.0),
    "log1p": within(-0.7, 2.0), "absolute": away, "abs": away, "fabs": away,
    "square": uniform, "reciprocal": away,
    "sin": uniform, "cos": uniform, "tan": within(-1.2, 1.2),
    "arcsin": within(-0.9, 0.9), "arccos": within(-0.9, 0.9), "arctan": uniform,
    "sinh": uniform, "cosh": uniform, "tanh": uniform,
    "arcsinh": uniform, "arccosh": within(1.2, 3.0), "arctanh": within(-0.9, 0.9),
    "deg2rad": uniform, "radians": uniform, "rad2deg": uniform, "degrees": uniform,
    "sinc": uniform,
}

#: one-input functions whose gradient is zero (inputs away from their jumps).
ZERO_UNARY = {
    "sign": away, "floor": fractional, "ceil": fractional, "trunc": fractional, "rint": fractional,
    "fix": fractional, "round": fractional, "around": fractional,
}

#: name -> samplers of the two operands (or one sampler of both, for a pair).
BINARY = {
    "add": (uniform, uniform), "subtract": (uniform, uniform), "multiply": (uniform, uniform),
    "divide": (uniform, away), "true_divide": (uniform, away),
    "power": (within(0.5, 2.0), uniform), "float_power": (within(0.5, 2.0), uniform),
    "mod": quotient_pair, "remainder": quotient_pair, "fmod": quotient_pair,
    "arctan2": (away, away), "hypot": (away, away),
    "logaddexp": (uniform, uniform), "logaddexp2": (uniform, uniform),
    "maximum": (uniform, uniform), "minimum": (uniform, uniform),
    "fmax": (uniform, uniform), "fmin": (uniform, uniform),
    "copysign": (away, away),
    # zero gradient
    "floor_divide": quotient_pair, "heaviside": (away, uniform), "divmod": quotient_pair,
}

ZERO_BINARY = ("floor_divide", "heaviside", "divmod")

#: boolean and integer results: values and dispatch only.
PREDICATES = {"greater": 2, "greater_equal": 2, "less": 2, "less_equal": 2, "equal": 2, "not_equal": 2,
              "logical_and": 2, "logical_or": 2, "logical_xor": 2, "logical_not": 1,
              "isfinite": 1, "isnan": 1, "isinf": 1, "signbit": 1}
BITWISE = {"bitwise_and": 2, "bitwise_or": 2, "bitwise_xor": 2, "invert": 1}


def _call(name):
    return lambda np_, *xs: getattr(np_, name)(*xs)


def _unary_cases():
    out = []
    for name, sample in {**UNARY, **ZERO_UNARY}.items():
        for shape in UNARY_SHAPES:
            out.append(Case(name, _call(name), sample(shape)))
    return out


def _operands(samplers, shape_a, shape_b):
    if callable(samplers):
        return samplers(shape_a, shape_b, seed=1)
    sa, sb = samplers
    return sa(shape_a, seed=1), sb(shape_b, seed=2)


def _binary_cases():
    out = []
    for name, samplers in BINARY.items():
        for shape_a, shape_b in BINARY_SHAPES:
            out.append(Case(name, _call(name), *_operands(samplers, shape_a, shape_b)))
    return out


def _predicate_cases():
    out = []
    values = [np.array([1.0, np.inf, -2.0, np.nan, 0.0, -0.0]), np.array([1.0, 0.0, -3.0, 1.0, 0.0, 2.0])]
    for name, arity in PREDICATES.items():
        out.append(Case(name, _call(name), *values[:arity], wrt=()))
        out.append(Case(name, _call(name), *[np.broadcast_to(v[:3], (2, 3)) for v in values[:arity - 1]],
                        values[arity - 1][:3], wrt=(), id=f"{name}-broadcast"))
    ints = [np.array([[0, 1, 6], [12, -3, 7]]), np.array([5, 3, 2])]
    bools = [np.array([[True, False, True], [False, False, True]]), np.array([True, False, False])]
    for name, arity in BITWISE.items():
        out.append(Case(name, _call(name), *ints[:arity], wrt=(), id=f"{name}-int"))
        out.append(Case(name, _call(name), *bools[:arity], wrt=(), id=f"{name}-bool"))
    return out


def _dtype_cases():
    """Values only (dtype included): integer inputs, float32 kept, Python numbers weak."""
    out = []
    ints = np.array([[1, 2, 3], [4, 5, 6]])
    for name in ("exp", "exp2", "expm1", "log", "log2", "log10", "log1p", "sqrt", "cbrt", "sin", "tan",
                 "arctan", "sinh", "arcsinh", "deg2rad", "rad2deg", "sinc", "fabs", "rint",
                 "floor", "ceil", "trunc", "fix", "round", "square", "reciprocal", "negative",
                 "absolute", "sign"):
        out.append(Case(name, _call(name), ints, wrt=(), id=f"{name}-int64"))
    out.append(Case("sqrt", _call("sqrt"), ints.astype(np.int8), wrt=(), id="sqrt-int8"))
    out.append(Case("floor", _call("floor"), np.array([True, False]), wrt=(), id="floor-bool"))
    f32 = uniform((2, 3), 0.3, 0.9).astype(np.float32)
    for name in list(UNARY) + list(ZERO_UNARY):
        x = f32 + 1 if name == "arccosh" else f32
        out.append(Case(name, _call(name), x, wrt=(), id=f"{name}-float32"))
    for name in BINARY:
        out.append(Case(name, _call(name), f32, f32[0] + 0.5, wrt=(), id=f"{name}-float32"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, 2.0), f32, wrt=(),
                        id=f"{name}-float32-python-float"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(3, x), f32, wrt=(),
                        id=f"{name}-python-int-float32"))
        out.append(Case(name, _call(name), ints, np.array([2, 3, 4]), wrt=(), id=f"{name}-int64"))
        out.append(Case(name, _call(name), ints.astype(np.int8), np.array([2, 3, 4], np.int8), wrt=(),
                        id=f"{name}-int8"))
        out.append(Case(name, _call(name), f32, np.array([2.0, 3.0, 4.0]), wrt=(),
                        id=f"{name}-float32-float64"))
    out += [
        Case("arctan2", _call("arctan2"), ints, np.float32(2.0) * np.ones(3, np.float32), wrt=(),
             id="arctan2-int64-float32"),
        Case("float_power", _call("float_power"), np.array([1.0 + 1.0j, 2.0 - 0.5j]), np.array([2.0, 0.5]),
             wrt=(), id="float_power-complex"),
        Case("float_power", lambda np_, x: np_.float_power(x, 2), f32, wrt=(), id="float_power-constant"),
        Case("divide", _call("divide"), ints, np.array([2, 4, 5]), wrt=(), id="divide-int-true-division"),
        Case("power", lambda np_, x: np_.power(x, 2.5), ints, wrt=(), id="power-int-python-float"),
        Case("power", lambda np_, x: np_.power(x, 2), ints > 2, wrt=(), id="power-bool-python-int"),
        Case("power", lambda np_, x: np_.power(x, np.int64(3)), f32, wrt=(), id="power-float32-int64-scalar"),
        Case("clip", lambda np_, x: np_.clip(x, 1.5, 4.5), ints, wrt=(), id="clip-int-float-bounds"),
        Case("clip", lambda np_, x: np_.clip(x, 2, 4), ints, wrt=(), id="clip-int-int-bounds"),
        Case("clip", lambda np_, x: np_.clip(x, np.float64(0.4), 0.8), f32, wrt=(), id="clip-float64-bound"),
        Case("clip", lambda np_, x: np_.clip(x, 0.4, 0.8), f32, wrt=(), id="clip-float32"),
        Case("round", lambda np_, x: np_.round(x, -1), ints * 7, wrt=(), id="round-int-decimals"),
        Case("absolute", _call("absolute"), np.array([3.0 + 4.0j, -1.0j, 0.0]), wrt=(), id="absolute-complex"),
    ]
    return out


_CLOSE = (np.array([1.0, np.inf, np.nan, 2.0, 0.0]), np.array([1.0 + 1e-9, np.inf, np.nan, 2.1, 1e-9]))

CASES = _unary_cases() + _binary_cases() + _predicate_cases() + _dtype_cases() + [
    Case("isclose", lambda np_, a, b: np_.isclose(a, b), *_CLOSE, wrt=()),
    Case("isclose", lambda np_, a, b: np_.isclose(a, b, rtol=0.1, equal_nan=True), *_CLOSE, wrt=(),
         id="isclose-options"),
    Case("power", lambda np_, x: np_.power(x, 3), uniform((2, 3)), id="power-constant-int"),
    Case("power", lambda np_, x: np_.power(x, 0.5), uniform((2, 3), 0.5, 2.0), id="power-constant-float"),
    Case("float_power", lambda np_, x: np_.float_power(x, 3), uniform((2, 3)), id="float_power-constant"),
    Case("where", lambda np_, c, a, b: np_.where(c, a, b), np.array([True, False, True]),
         uniform((2, 3), seed=1), uniform((3,), seed=2)),
    Case("where", lambda np_, a, b: np_.where(a > 0, a, b), uniform((2, 3), seed=1), uniform((), seed=2),
         id="where-computed-condition"),
    Case("clip", lambda np_, x: np_.clip(x, -0.5, 0.7), away((3, 4), 0.05, 2.0)),
    Case("clip", lambda np_, x: np_.clip(x, None, 0.7), away((3, 4), 0.05, 2.0), id="clip-upper"),
    Case("clip", lambda np_, x: np_.clip(x, max=0.7), away((3, 4), 0.05, 2.0), id="clip-upper-keyword"),
    Case("clip", lambda np_, x: np_.clip(x, min=-0.5), away((3, 4), 0.05, 2.0), id="clip-lower-keyword"),
    Case("clip", lambda np_, x: np_.clip(x, 0.7, -0.5), away((3, 4), 0.05, 2.0), id="clip-crossed-bounds"),
    Case("clip", lambda np_, x, lo, hi: np_.clip(x, lo, hi), uniform((2, 4), seed=3),
         uniform((4,), -1.0, -0.2, seed=4), uniform((2, 1), 0.2, 1.0, seed=5), id="clip-variable-bounds"),
    Case("round", lambda np_, x: np_.round(x, 1), fractional((2, 3), scale=0.1), id="round-decimals"),
    Case("around", lambda np_, x: np_.around(x, decimals=2), fractional((4,), scale=0.01),
         id="around-decimals"),
    # the gradient of sinc at 0 is 0 (its second derivative there, -pi^2 / 3, is not given)
    Case("sinc", _call("sinc"), np.array([0.0, 0.5, -1.5, 2.0]), order=1, id="sinc-at-zero"),
    # heaviside(a, b) is b where a == 0: the gradient to b is 1 there
    Case("heaviside", _call("heaviside"), np.array([[0.0, 1.0, -2.0], [0.0, 0.0, 3.0]]), uniform((3,)),
         wrt=(1,), id="heaviside-at-zero"),
    # complex: the gradient is conj(x) / |x| (HIPS autograd's convention), 0 at 0
    Case("absolute", _call("absolute"), np.array([[3.0 + 4.0j, -1.0 - 2.0j, 0.5j], [2.0, -1.5, 1.0 - 1.0j]]),
         id="absolute-complex-gradients"),
    # complex sign is x / |x|, which has a gradient
    Case("sign", _call("sign"), np.array([[3.0 + 4.0j, -1.0 - 2.0j, 0.5j], [2.0, -1.5, 1.0 - 1.0j]]),
         id="sign-complex-gradients"),
    Case("sign", _call("sign"), np.array([0.0j, 1.0 + 1.0j]), wrt=(), id="sign-complex-zero"),
    # nan_to_num: the gradient passes where the value is finite (NaN and infinities come from a
    # constant added inside the call, as a user's data would bring them)
    Case("nan_to_num", lambda np_, x: np_.sin(np_.nan_to_num(x + np.array([0.0, np.nan, np.inf, -np.inf]))),
         uniform((2, 4))),
    Case("nan_to_num", lambda np_, x: np_.nan_to_num(x + np.array([0.0, np.nan, np.inf, -np.inf]), nan=2.0,
                                                      posinf=5.0, neginf=-7.0),
         uniform((4,)), id="nan_to_num-replacements"),
    Case("nan_to_num", lambda np_, x: np_.nan_to_num(x + np.array([complex(np.nan, 1.0), complex(1.0, np.inf),
                                                                    complex(-np.inf, np.nan), 2.0]),
                                                      posinf=3.0, neginf=-3.0),
         uniform((4,)) + 1j * uniform((4,), seed=1), id="nan_to_num-complex"),
    Case("nan_to_num", lambda np_, x: np_.nan_to_num(x), uniform((3,)), id="nan_to_num-finite"),
    Case("nan_to_num", lambda np_, x: np_.nan_to_num(x / 0.0), np.array([1.0, -1.0, 0.0], np.float32),
         wrt=(), id="nan_to_num-float32"),
    Case("nan_to_num", lambda np_, x: np_.nan_to_num(x), np.array([1, -2]), wrt=(), id="nan_to_num-int"),
    # operators, with variables and arrays on either side
    Case("floor_divide", lambda np_, a, b: a // b, *quotient_pair((2, 3), (3,)), id="operator-floordiv"),
    Case("floor_divide", lambda np_, a: 7.0 // a, away((2, 3)), id="operator-rfloordiv"),
    Case("remainder", lambda np_, a, b: a % b, *quotient_pair((2, 3), (3,)), id="operator-mod"),
    Case("remainder", lambda np_, a: 2.5 % a, away((2, 3), 0.7, 2.0), id="operator-rmod"),
    Case("divmod", lambda np_, a, b: divmod(a, b), *quotient_pair((2, 3), (3,), seed=4),
         id="operator-divmod"),
    Case("divmod", lambda np_, a: divmod(2.5, a), away((3,), 0.7, 2.0), id="operator-rdivmod"),
    Case("absolute", lambda np_, a: abs(a), away((2, 3)), id="operator-abs"),
    Case("bitwise_or", lambda np_, a, b: a | b, np.array([[1, 2], [4, 8]]), np.array([3, 1]), wrt=(),
         id="operator-or"),
    Case("bitwise_or", lambda np_, a: True | (a > 0), uniform((3,)), wrt=(), id="operator-ror"),
    Case("bitwise_xor", lambda np_, a, b: a ^ b, np.array([True, False, True]), np.array([True, True, False]),
         wrt=(), id="operator-xor"),
    Case("bitwise_xor", lambda np_, a: 5 ^ a, np.array([1, 2, 3]), wrt=(), id="operator-rxor"),
    Case("invert", lambda np_, a: ~a, np.array([1, -2, 3]), wrt=(), id="operator-invert-int"),
    Case("invert", lambda np_, a: ~(a > 0), uniform((2, 3)), wrt=(), id="operator-invert-bool"),
]


# ---- zero gradients ------------------------------------------------------------------------------

ZERO_CALLS = {
    **{name: _call(name) for name in ZERO_UNARY},
    "round-decimals": lambda np_, x: np_.round(x, 1),
    "floor_divide": lambda np_, x: np_.floor_divide(x, x[::-1] + 3.0),
    "floor_divide-by": lambda np_, x: np_.floor_divide(7.0, x),
    "divmod-quotient": lambda np_, x: np_.divmod(x, 0.7)[0],
    "heaviside": lambda np_, x: np_.heaviside(x, 0.5),
    "copysign-sign": lambda np_, x: np_.copysign(2.0, x),
    "operator-floordiv": lambda np_, x: x // 0.3,
    "operator-round": lambda np_, x: round(x),
}


@pytest.mark.parametrize("name", list(ZERO_CALLS))
def test_zero_gradient_functions_give_exact_zeros(name):
    call = ZERO_CALLS[name]
    x = fractional((2, 3), seed=3) + 0.05
    weights = uniform((2, 3), seed=4)
    v = neuronika.from_ndarray(x.copy()).requires_grad()
    out = call(nnp, v)
    assert out.requires_grad
    nnp.sum(out * weights).backward()
    assert v.grad.shape == x.shape and v.grad.dtype == x.dtype
    assert np.array_equal(v.grad, np.zeros_like(x))
    g = neuronika.grad(lambda v: nnp.sum(call(nnp, v) * weights))(x.copy())
    assert g.dtype == x.dtype and np.array_equal(g, np.zeros_like(x))
    # second order: d/du sum(f(u) * u) = f(u), whose gradient is zero again
    h = neuronika.grad(lambda v: nnp.sum(neuronika.grad(lambda u: nnp.sum(call(nnp, u) * u))(v)))(x.copy())
    assert np.array_equal(h, np.zeros_like(x))


def test_zero_gradient_on_a_scalar_and_through_later_ops():
    x = neuronika.from_ndarray(np.array(1.3)).requires_grad()
    y = nnp.floor(x) * x + nnp.sign(x) * 2.0          # d/dx = floor(x) = 1
    y.backward()
    assert x.grad == 1.0
    assert neuronika.grad(lambda x: nnp.rint(x) * nnp.ceil(x))(1.3) == 0.0


# ---- maximum, minimum, fmax, fmin: ties and NaN ---------------------------------------------------

EXTREMA = {"maximum": np.maximum, "minimum": np.minimum, "fmax": np.fmax, "fmin": np.fmin}


def _split(fn, a, b):
    """The even split at ties: d/da is 1 where a alone is the result, 1/2 where a == b."""
    y = fn(a, b)
    return (a == y) / (1.0 + (a == b)), (b == y) / (1.0 + (a == b))


@pytest.mark.parametrize("name", list(EXTREMA))
def test_extrema_split_the_gradient_evenly_at_ties(name):
    a = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 4.0]])
    b = np.array([[1.0, 0.0, 3.0], [5.0, 0.5, -4.0]])
    want_a, want_b = _split(EXTREMA[name], a, b)
    va, vb = neuronika.from_ndarray(a.copy()).requires_grad(), neuronika.from_ndarray(b.copy()).requires_grad()
    nnp.sum(getattr(nnp, name)(va, vb)).backward()
    np.testing.assert_array_equal(va.grad, want_a)
    np.testing.assert_array_equal(vb.grad, want_b)
    ga, gb = neuronika.grad(lambda a, b: nnp.sum(getattr(nnp, name)(a, b)), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(ga, want_a)
    np.testing.assert_array_equal(gb, want_b)
    # broadcast: the row (3,) against a (2, 3) with ties in both rows
    row = np.array([1.0, 0.5, 3.0])
    ga, gb = neuronika.grad(lambda a, b: nnp.sum(getattr(nnp, name)(a, b)), argnums=(0, 1))(a, row)
    want_a, want_b = _split(EXTREMA[name], a, row)
    np.testing.assert_array_equal(ga, want_a)
    np.testing.assert_array_equal(gb, want_b.sum(axis=0))
    # piecewise linear: the second derivative is zero, ties included
    # second order of sum(max(a, b) ** 2): 2 * w ** 2, w the (piecewise constant) share of a
    h = neuronika.grad(lambda a: nnp.sum(neuronika.grad(
        lambda u: nnp.sum(getattr(nnp, name)(u, b) ** 2))(a)))(a)
    share = _split(EXTREMA[name], a, b)[0]
    np.testing.assert_array_equal(h, 2 * share * share)


def test_fmax_fmin_skip_nan_where_maximum_minimum_propagate_it():
    a = np.array([1.0, np.nan, np.nan, 2.0])
    b = np.array([np.nan, 3.0, np.nan, 1.0])
    for name, numpy_fn in EXTREMA.items():
        va, vb = neuronika.from_ndarray(a.copy()).requires_grad(), neuronika.from_ndarray(b.copy()).requires_grad()
        out = getattr(nnp, name)(va, vb)
        np.testing.assert_array_equal(out.data, numpy_fn(a, b))
        nnp.sum(out).backward()
        if name in ("fmax", "fmin"):
            # the number is taken, and gets the gradient; a NaN gets none
            np.testing.assert_array_equal(va.grad, [1.0, 0.0, 0.0, name == "fmax"])
            np.testing.assert_array_equal(vb.grad, [0.0, 1.0, 0.0, name == "fmin"])
        else:
            # a NaN result is neither input: no gradient to either
            np.testing.assert_array_equal(va.grad, [0.0, 0.0, 0.0, name == "maximum"])
            np.testing.assert_array_equal(vb.grad, [0.0, 0.0, 0.0, name == "minimum"])


# ---- closed forms ----------------------------------------------------------------------------------

def _grads(fn, *arrays):
    return neuronika.grad(lambda *xs: nnp.sum(fn(*xs)), argnums=tuple(range(len(arrays))))(*arrays)


def test_closed_forms():
    a, b = np.array([1.5, -2.5, 0.75]), np.array([0.4, 0.7, -0.3])
    ga, gb = _grads(nnp.mod, a, b)
    np.testing.assert_allclose(ga, 1.0)
    np.testing.assert_allclose(gb, -np.floor(a / b))
    ga, gb = _grads(nnp.fmod, a, b)
    np.testing.assert_allclose(gb, -np.trunc(a / b))
    ga, gb = _grads(nnp.arctan2, a, b)
    np.testing.assert_allclose(ga, b / (a * a + b * b), rtol=1e-14)
    np.testing.assert_allclose(gb, -a / (a * a + b * b), rtol=1e-14)
    ga, gb = _grads(nnp.hypot, a, b)
    np.testing.assert_allclose(ga, a / np.hypot(a, b), rtol=1e-14)
    ga, gb = _grads(nnp.logaddexp, a, b)
    np.testing.assert_allclose(ga, 1 / (1 + np.exp(b - a)), rtol=1e-14)
    np.testing.assert_allclose(ga + gb, 1.0, rtol=1e-14)
    ga, gb = _grads(nnp.logaddexp2, a, b)
    np.testing.assert_allclose(ga, 1 / (1 + 2.0 ** (b - a)), rtol=1e-14)
    ga, gb = _grads(nnp.copysign, a, b)
    np.testing.assert_array_equal(ga, np.sign(a) * np.sign(b))
    np.testing.assert_array_equal(gb, 0.0)
    x = np.array([0.0, 0.5, -1.5])
    g, = _grads(nnp.sinc, x)
    want = np.where(x == 0, 0.0, (np.cos(np.pi * x) - np.sinc(x)) / np.where(x == 0, 1.0, x))
    np.testing.assert_allclose(g, want, rtol=1e-14)
    # large arguments: no overflow in logaddexp's gradient
    ga, gb = _grads(nnp.logaddexp, np.array([1000.0]), np.array([0.0]))
    np.testing.assert_allclose([ga[0], gb[0]], [1.0, 0.0])
    g, = _grads(nnp.abs, np.array([-2.0, 3.0, 0.0]))
    np.testing.assert_array_equal(g, [-1.0, 1.0, 0.0])


def test_float_power_is_float64():
    x = np.array([1.5, 2.0], np.float32)
    v = neuronika.from_ndarray(x)
    assert nnp.float_power(v, 2).dtype == np.float64
    assert nnp.float_power(v, v).dtype == np.float64
    g = neuronika.grad(lambda v: nnp.sum(nnp.float_power(v, v)))(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, (x.astype(np.float64) ** x * (np.log(x) + 1)), rtol=1e-6)


# ---- float32 stays float32 in the gradients too ------------------------------------------------------

@pytest.mark.parametrize("name", list(UNARY) + list(ZERO_UNARY))
def test_unary_gradients_keep_float32(name):
    x = UNARY.get(name, ZERO_UNARY.get(name))((2, 3)).astype(np.float32)
    if name == "arccosh":
        x = np.abs(x) + 1.5
    g = neuronika.grad(lambda v: nnp.sum(getattr(nnp, name)(v)))(x)
    assert g.dtype == np.float32
    v = neuronika.from_ndarray(x).requires_grad()
    nnp.sum(getattr(nnp, name)(v)).backward()
    assert v.grad.dtype == np.float32
    f64 = neuronika.grad(lambda v: nnp.sum(getattr(nnp, name)(v)))(x.astype(np.float64))
    np.testing.assert_allclose(g, f64, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(BINARY))
def test_binary_gradients_keep_float32(name):
    a, b = _operands(BINARY[name], (2, 3), (3,))
    a, b = a.astype(np.float32), b.astype(np.float32)

    def f(a, b):
        out = getattr(nnp, name)(a, b)
        out = out[1] if isinstance(out, tuple) else out
        return nnp.sum(out * 1.5)
    ga, gb = neuronika.grad(f, argnums=(0, 1))(a, b)
    # (float_power computes in float64; its gradient is converted back to the input's float32)
    assert ga.dtype == np.float32 and gb.dtype == np.float32, (ga.dtype, gb.dtype)
    want = neuronika.grad(f, argnums=(0, 1))(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(ga, want[0], rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(gb, want[1], rtol=2e-5, atol=1e-5)


def test_python_numbers_are_weak():
    x32 = neuronika.from_ndarray(np.array([0.5, 1.5], np.float32))
    for fn in (nnp.arctan2, nnp.hypot, nnp.logaddexp, nnp.maximum, nnp.fmod, nnp.copysign, nnp.heaviside,
               nnp.floor_divide, nnp.remainder, nnp.logaddexp2, nnp.fmin):
        assert fn(x32, 2.0).dtype == np.float32, fn
        assert fn(3, x32).dtype == np.float32, fn
        assert fn(x32, np.float64(2.0)).dtype == np.float64, fn
    i = neuronika.from_ndarray(np.array([1, 2]))
    assert nnp.maximum(i, 1).dtype == np.int64
    assert nnp.maximum(i, 1.5).dtype == np.float64
    assert nnp.exp(i).dtype == np.float64
    assert nnp.hypot(i, 2).dtype == np.float64


# ---- options NumPy has that variables refuse ---------------------------------------------------------

def test_out_and_where_are_refused_with_a_clear_type_error():
    v = neuronika.from_ndarray(np.array([0.5, 1.5])).requires_grad()
    with pytest.raises(TypeError, match=r"arctan: out= cannot be used with variables"):
        nnp.arctan(v, out=np.empty(2))
    with pytest.raises(TypeError, match=r"arctan: out= cannot be used"):
        np.arctan(v, out=np.empty(2))
    with pytest.raises(TypeError, match=r"hypot: where=.* is not supported"):
        nnp.hypot(v, 2.0, where=np.array([True, False]))
    with pytest.raises(TypeError, match=r"maximum: where=.* is not supported"):
        np.maximum(v, 2.0, where=np.array([True, False]))
    with pytest.raises(TypeError, match=r"round: out= cannot be used"):
        np.round(v, 1, out=np.empty(2))
    with pytest.raises(TypeError, match=r"fix: out= cannot be used"):
        np.fix(v, out=np.empty(2))
    with pytest.raises(TypeError, match=r"divmod: out= cannot be used"):
        np.divmod(v, 2.0, out=(np.empty(2), np.empty(2)))
    with pytest.raises(TypeError, match=r"float_power: out= cannot be used"):
        nnp.float_power(v, 2.0, out=np.empty(2))
    with pytest.raises(TypeError, match=r"round: decimals must be an integer"):
        nnp.round(v, 1.5)
    # accepted: the defaults, and dtype= (the inputs converted first)
    assert nnp.exp(v, where=True).shape == (2,)
    assert nnp.exp(v, dtype=np.float32).dtype == np.float32
    assert np.divmod(v, 2.0, out=(None, None))[0].shape == (2,)


def test_bitwise_functions_refuse_floats_as_numpy_does():
    v = neuronika.from_ndarray(np.array([0.5, 1.5]))
    with pytest.raises(TypeError):
        v | v
    with pytest.raises(TypeError):
        ~v


# ---- operators ---------------------------------------------------------------------------------------

def test_operators_and_dtype_promotion_follow_numpy():
    x32 = neuronika.from_ndarray(np.ones(3, np.float32))
    assert (x32 * 2.0).dtype == np.float32
    assert (x32 * np.float64(2.0)).dtype == np.float64
    assert (np.ones(3, np.int64) * x32).dtype == np.float64
    assert (x32 / 2).dtype == np.float32
    i = neuronika.from_ndarray(np.arange(3))
    assert (i / 2).dtype == np.float64 and np.allclose((i / 2).data, np.arange(3) / 2)
    assert (x32 // 2).dtype == np.float32 and (x32 % 2).dtype == np.float32
    assert (i // 2).dtype == np.int64 and np.array_equal((i // 2).data, np.arange(3) // 2)


def test_operators_on_either_side():
    a = np.array([[2.5, -3.5, 7.0], [1.25, 4.0, -0.5]])
    b = np.array([0.7, -1.5, 2.0])
    va, vb = neuronika.from_ndarray(a), neuronika.from_ndarray(b)
    for left, right in ((va, vb), (a, vb), (va, b)):
        np.testing.assert_array_equal((left // right).data, a // b)
        np.testing.assert_array_equal((left % right).data, a % b)
        q, r = divmod(left, right)
        np.testing.assert_array_equal(q.data, a // b)
        np.testing.assert_array_equal(r.data, a % b)
    assert isinstance(a // vb, neuronika.Var) and isinstance(divmod(a, vb)[1], neuronika.Var)
    np.testing.assert_array_equal(round(va).data, np.round(a))
    np.testing.assert_array_equal(round(va, 1).data, np.round(a, 1))
    np.testing.assert_array_equal(va.round(1).data, a.round(1))
    np.testing.assert_array_equal(abs(va).data, np.abs(a))
    m, n = np.array([[1, 6], [12, 3]]), np.array([5, 3])
    vm, vn = neuronika.from_ndarray(m), neuronika.from_ndarray(n)
    for left, right in ((vm, vn), (m, vn), (vm, n)):
        np.testing.assert_array_equal((left | right).data, m | n)
        np.testing.assert_array_equal((left ^ right).data, m ^ n)
    np.testing.assert_array_equal((~vm).data, ~m)
    p = neuronika.from_ndarray(np.array([True, False]))
    np.testing.assert_array_equal((~p).data, [False, True])
    np.testing.assert_array_equal((p | np.array([False, False])).data, [True, False])
    np.testing.assert_array_equal((np.array([True, True]) ^ p).data, [False, True])


def test_operator_gradients():
    a = np.array([[2.5, -3.5, 7.0], [1.25, 4.0, -0.5]])
    b = np.array([0.7, -1.5, 2.0])
    ga, gb = neuronika.grad(lambda a, b: nnp.sum(a % b), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, 1.0)
    np.testing.assert_allclose(gb, -np.floor(a / b).sum(axis=0))
    ga, gb = neuronika.grad(lambda a, b: nnp.sum(divmod(a, b)[1] + a // b), argnums=(0, 1))(a, b)
    np.testing.assert_allclose(ga, 1.0)
    np.testing.assert_allclose(gb, -np.floor(a / b).sum(axis=0))
    g = neuronika.grad(lambda a: nnp.sum(round(a) + abs(a)))(a)
    np.testing.assert_array_equal(g, np.sign(a))
    v = neuronika.from_ndarray(a.copy()).requires_grad()
    nnp.sum(10.0 % v + 10.0 // v).backward()
    np.testing.assert_allclose(v.grad, -np.floor(10.0 / a))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.complex64, np.int32])
@pytest.mark.parametrize("number", [3, -2.5, 10 ** 6])
@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "true_divide", "power"])
def test_a_python_number_beside_a_variable_is_weakly_typed_on_either_side(op, number, dtype):
    # the operators' fast path for a number beside a float or complex variable gives NumPy's
    # dtype and values, with the number on the left or on the right
    a = (np.arange(1, 5) * 0.5).astype(dtype)
    for args, var_args in (((a, number), (neuronika.from_ndarray(a), number)),
                           ((number, a), (number, neuronika.from_ndarray(a)))):
        if op == "power" and (args[0] is number or dtype == np.int32 and number < 0):
            continue                        # (a number to a variable's power: another op; ints to
        with np.errstate(all="ignore"):     # a negative power: an error in NumPy)
            want = getattr(np, op)(*args)
            got = getattr(np, op)(*var_args)
            values = got.data                   # (evaluated here: inf where NumPy's is)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(values, want, rtol=1e-6 if np.dtype(dtype).itemsize <= 4 else 1e-12)
