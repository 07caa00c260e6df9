"""Elementwise ops: + - * / and unary -, pow and ** (constant and variable
exponent), the unary functions, clamp and dropout.

Every op: forward against NumPy in float32 and float64, gradients against
float64 central finite differences over plain, broadcast, 0-dim, scalar-operand
and non-contiguous inputs; dtypes; error messages; closed-form values.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import neuronika as nk
from neuronika.testing import check_grad

from .conftest import (LAYOUTS, assert_located, away, check_grad_views, const, diff, grads_of,
                       non_contiguous, uniform)

FILE = "test_elementwise.py"
FAST = settings(max_examples=25, deadline=None)


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)


# ---- binary arithmetic ---------------------------------------------------------------------

BINARY = {
    "add": (lambda a, b: a + b),
    "sub": (lambda a, b: a - b),
    "mul": (lambda a, b: a * b),
    "div": (lambda a, b: a / b),
    "power": (lambda a, b: a ** b),
}

BROADCAST_PAIRS = [
    ((4, 3), (4, 3)),
    ((4, 3), (3,)),
    ((3,), (4, 3)),
    ((4, 1), (1, 3)),
    ((2, 4, 3), (4, 3)),
    ((4, 3), (2, 4, 3)),
    ((2, 1, 3), (4, 1)),
    ((1,), (2, 3)),
    ((), (3,)),
    ((2, 3), ()),
    ((), ()),
]


def binary_operands(name, shape_a, shape_b, seed=0, dtype=np.float64):
    """Operands in the op's smooth domain: a positive base for power, a
    denominator away from 0 for div."""
    if name == "power":
        a = uniform(shape_a, 0.5, 2.0, seed=seed)
        b = uniform(shape_b, -2.0, 2.0, seed=seed + 1)
    elif name == "div":
        a = uniform(shape_a, seed=seed)
        b = away(shape_b, 0.5, 2.0, seed=seed + 1)
    else:
        a = uniform(shape_a, seed=seed)
        b = uniform(shape_b, seed=seed + 1)
    return np.asarray(a, dtype), np.asarray(b, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_forward_matches_numpy(name, shapes, dtype):
    fn = BINARY[name]
    a, b = binary_operands(name, *shapes, dtype=dtype)
    want = fn(a, b)
    for wrap_a, wrap_b in [(const, const), (diff, const), (const, diff), (diff, diff)]:
        out = fn(wrap_a(a), wrap_b(b))
        assert out.shape == np.shape(want)
        assert out.dtype == dtype
        assert out.data.dtype == dtype
        np.testing.assert_allclose(out.data, want, **tol(dtype))
        expected_type = nk.VarDiff if (wrap_a is diff or wrap_b is diff) else nk.Var
        assert type(out) is expected_type


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_grad(name, shapes):
    a, b = binary_operands(name, *shapes)
    check_grad(BINARY[name], a, b)
    check_grad(BINARY[name], a, b, wrt=[0])
    check_grad(BINARY[name], a, b, wrt=[1])


@pytest.mark.parametrize("name", BINARY)
def test_binary_same_operand_twice(name):
    a, _ = binary_operands(name, (3, 2), (3, 2))
    check_grad(lambda x: BINARY[name](x, x), a)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shapes", [((4, 3), (4, 3)), ((4, 3), (3,)), ((3, 4, 2), (4, 2))], ids=str)
@pytest.mark.parametrize("name", BINARY)
def test_binary_non_contiguous(name, shapes, layout):
    a, b = binary_operands(name, *shapes)
    a_view, b_view = non_contiguous(a, layout), non_contiguous(b, layout)
    out = BINARY[name](const(a_view), const(b_view))
    np.testing.assert_allclose(out.data, BINARY[name](a, b), rtol=1e-12)
    check_grad_views(BINARY[name], a_view, b_view)


@FAST
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       name=st.sampled_from(sorted(BINARY)), seed=st.integers(0, 2 ** 16))
def test_binary_grad_broadcast_property(shapes, name, seed):
    a, b = binary_operands(name, *shapes.input_shapes, seed=seed)
    out = BINARY[name](const(a), const(b))
    assert out.shape == shapes.result_shape
    np.testing.assert_allclose(out.data, BINARY[name](a, b), rtol=1e-12)
    check_grad(BINARY[name], a, b)


# ---- Python numbers and NumPy arrays as operands ------------------------------------------------

SCALAR_EXPRESSIONS = {
    "2 * x": (lambda x: 2 * x),
    "x * 2": (lambda x: x * 2),
    "x * 0.5": (lambda x: x * 0.5),
    "x - 1.0": (lambda x: x - 1.0),
    "1.0 - x": (lambda x: 1.0 - x),
    "x + 3": (lambda x: x + 3),
    "3 + x": (lambda x: 3 + x),
    "x / 4.0": (lambda x: x / 4.0),
    "4.0 / x": (lambda x: 4.0 / x),
    "-x": (lambda x: -x),
    "-(-x)": (lambda x: -(-x)),
    "np.float64(1.5) * x": (lambda x: np.float64(1.5) * x),
    "x + np.float32(2)": (lambda x: x + np.float32(2)),
    "x * np.int64(3)": (lambda x: x * np.int64(3)),
    "True * x": (lambda x: True * x),
    "(x - 1) * 2 / 3 + 1": (lambda x: (x - 1) * 2 / 3 + 1),
}


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)], ids=str)
@pytest.mark.parametrize("expr", SCALAR_EXPRESSIONS)
def test_scalar_operand(expr, shape):
    fn = SCALAR_EXPRESSIONS[expr]
    a = away(shape, 0.5, 2.0)
    for dtype in (np.float32, np.float64):
        x = a.astype(dtype)
        out = fn(diff(x))
        want = np.asarray(fn(x))
        assert type(out) is nk.VarDiff
        # NumPy 2's promotion: Python numbers are weak (float32 stays), NumPy scalars are not
        assert out.dtype == want.dtype and out.data.dtype == want.dtype
        assert out.shape == shape
        np.testing.assert_allclose(out.data, want, **tol(want.dtype))
    check_grad(fn, a)


ARRAY_LEFT = {
    "arr + x": (lambda arr, x: arr + x),
    "arr - x": (lambda arr, x: arr - x),
    "arr * x": (lambda arr, x: arr * x),
    "arr / x": (lambda arr, x: arr / x),
    "x - arr": (lambda arr, x: x - arr),
    "x / arr": (lambda arr, x: x / arr),
    "arr ** x": (lambda arr, x: np.abs(arr) ** x),
    "x ** arr": (lambda arr, x: x.abs() ** arr if isinstance(x, nk.Var) else np.abs(x) ** arr),
}


@pytest.mark.parametrize("shapes", [((4, 3), (4, 3)), ((4, 3), (3,)), ((3,), (4, 3)),
                                    ((4, 1), (1, 3)), ((), (2, 3)), ((2, 3), ())], ids=str)
@pytest.mark.parametrize("expr", ARRAY_LEFT)
def test_numpy_array_operand(expr, shapes):
    fn = ARRAY_LEFT[expr]
    arr = away(shapes[0], 0.5, 2.0, seed=3)
    x = away(shapes[1], 0.5, 2.0, seed=4)
    out = fn(arr, diff(x))
    assert type(out) is nk.VarDiff, "NumPy must defer to the variable's reflected operator"
    np.testing.assert_allclose(out.data, fn(arr, x), rtol=1e-12)
    check_grad(lambda v: fn(arr, v), x)
    # float32 on both sides stays float32
    out32 = fn(arr.astype(np.float32), diff(x.astype(np.float32)))
    assert out32.dtype == np.float32 and out32.data.dtype == np.float32


def test_var_and_vardiff_mix_only_vardiff_gets_grad():
    a = uniform((3, 2), seed=1)
    b = uniform((2,), seed=2)
    xa, xb = diff(a.copy()), const(b.copy())
    out = (xa * xb + xb).sum()
    out.backward()
    np.testing.assert_allclose(xa.grad, np.broadcast_to(b, (3, 2)))
    with pytest.raises(AttributeError):
        xb.grad  # noqa: B018  (a Var has no gradient)


# ---- pow with a constant exponent ----------------------------------------------------------------

POW_CASES = {
    "x ** 0.5": (lambda x: x ** 0.5, "pos"),
    "x.pow(0.5)": (lambda x: x.pow(0.5), "pos"),
    "x ** 2": (lambda x: x ** 2, "any"),
    "x.pow(2)": (lambda x: x.pow(2), "any"),
    "x ** 2.0": (lambda x: x ** 2.0, "any"),
    "x ** 3": (lambda x: x ** 3, "any"),
    "x.pow(3)": (lambda x: x.pow(3), "any"),
    "x ** -1": (lambda x: x ** -1, "away"),
    "x.pow(-1)": (lambda x: x.pow(-1), "away"),
    "x ** -0.5": (lambda x: x ** -0.5, "pos"),
    "x ** 1.7": (lambda x: x ** 1.7, "pos"),
    "x ** np.int64(3)": (lambda x: x ** np.int64(3), "any"),
    "x ** np.float32(0.5)": (lambda x: x ** np.float32(0.5), "pos"),
}


def sample(domain, shape, seed=0):
    if domain == "pos":
        return uniform(shape, 0.3, 2.5, seed=seed)
    if domain == "away":
        return away(shape, 0.3, 2.0, seed=seed)
    return uniform(shape, -2.0, 2.0, seed=seed)


def pow_reference(expr, a):
    p = {"0.5": 0.5, "2": 2, "2.0": 2.0, "3": 3, "-1": -1, "-0.5": -0.5, "1.7": 1.7,
         "np.int64(3)": np.int64(3), "np.float32(0.5)": np.float32(0.5)}
    exponent = expr.split("**")[-1].strip() if "**" in expr else expr[len("x.pow("):-1]
    return a ** p[exponent]


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 2)], ids=str)
@pytest.mark.parametrize("expr", POW_CASES)
def test_pow_constant_exponent(expr, shape):
    fn, domain = POW_CASES[expr]
    a = sample(domain, shape)
    for dtype in (np.float32, np.float64):
        x = a.astype(dtype)
        out = fn(diff(x))
        want = np.asarray(pow_reference(expr, x))      # NumPy 2's dtype (a NumPy scalar exponent counts)
        assert out.dtype == want.dtype and out.data.dtype == want.dtype
        np.testing.assert_allclose(out.data, want, **tol(want.dtype))
        _, (g,) = grads_of(lambda v: fn(v).sum(), x)
        assert g.dtype == dtype
    check_grad(fn, a)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("expr", ["x ** 0.5", "x ** 3", "x ** -1"])
def test_pow_non_contiguous(expr, layout):
    fn, domain = POW_CASES[expr]
    check_grad_views(fn, non_contiguous(sample(domain, (3, 4)), layout))


def test_cube_derivative_at_two_is_twelve():
    for fn in (lambda x: x ** 3, lambda x: x.pow(3), lambda x: x ** 3.0,
               lambda x: x ** const(np.array(3.0)), lambda x: x * x * x):
        x = diff(np.array(2.0))
        y = fn(x)
        assert y.data == pytest.approx(8.0, abs=1e-12)
        y.backward()
        assert x.grad == pytest.approx(12.0, abs=1e-12)


def test_pow_rejects_a_variable_through_the_method():
    x = diff(np.ones(3))
    with pytest.raises(TypeError, match="pow"):
        x.pow(diff(np.ones(3)))


# ---- ** with a variable exponent --------------------------------------------------------------

def test_power_both_sides_differentiable_closed_form():
    a = np.array([0.5, 1.5, 2.0, 3.0])
    b = np.array([2.0, -1.0, 0.5, 1.3])
    xa, xb = diff(a.copy()), diff(b.copy())
    y = xa ** xb
    np.testing.assert_allclose(y.data, a ** b, rtol=1e-14)
    y.backward(np.ones(4))
    np.testing.assert_allclose(xa.grad, b * a ** (b - 1), rtol=1e-13)
    np.testing.assert_allclose(xb.grad, a ** b * np.log(a), rtol=1e-13)


@pytest.mark.parametrize("base", [2, 2.0, np.e, np.float64(3.0)], ids=repr)
def test_number_to_the_power_of_a_variable(base):
    b = uniform((2, 3), -2.0, 2.0)
    x = diff(b.copy())
    y = base ** x
    assert type(y) is nk.VarDiff
    np.testing.assert_allclose(y.data, float(base) ** b, rtol=1e-13)
    y.backward(np.ones((2, 3)))
    np.testing.assert_allclose(x.grad, float(base) ** b * np.log(float(base)), rtol=1e-13)
    check_grad(lambda v: base ** v, b)


def test_two_to_the_x_float32_stays_float32():
    x = diff(np.array([0.5, 1.0, 2.0], np.float32))
    y = 2.0 ** x
    assert y.dtype == np.float32 and y.data.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, 2.0 ** x.data * np.log(2.0), rtol=1e-6)


def test_power_gradient_wrt_exponent_at_zero_base_is_zero():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = diff(np.array(0.0))
        b = diff(np.array(2.0))
        y = a ** b
        assert y.data == 0.0
        y.backward()
        assert b.grad == 0.0 and not np.isnan(b.grad)
        assert a.grad == 0.0 and not np.isnan(a.grad)
        # the same inside a vector, next to ordinary entries
        av = diff(np.array([0.0, 2.0, 0.0]))
        bv = diff(np.array([2.0, 3.0, 1.5]))
        (av ** bv).sum().backward()
        np.testing.assert_allclose(bv.grad, [0.0, 8.0 * np.log(2.0), 0.0], rtol=1e-14)
        np.testing.assert_allclose(av.grad, [0.0, 12.0, 0.0], rtol=1e-14)
        assert np.isfinite(bv.grad).all() and np.isfinite(av.grad).all()


def test_zero_exponent_gradient_at_zero_base_is_zero():
    """x ** 0 is the constant 1 (NumPy: 0 ** 0 == 1), so its derivative is 0
    everywhere, x == 0 included; not 0 * 0 ** -1 = NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (lambda x: x ** 0, lambda x: x.pow(0), lambda x: x ** 0.0,
                   lambda x: x ** const(np.zeros(3))):
            x = diff(np.array([0.0, 2.0, -1.5]))
            y = fn(x)
            np.testing.assert_array_equal(y.data, [1.0, 1.0, 1.0])
            y.sum().backward()
            np.testing.assert_array_equal(x.grad, [0.0, 0.0, 0.0])


# ---- unary functions -------------------------------------------------------------------------------

def clamp_values(shape, seed=0, lo=-0.5, hi=0.5):
    """Uniform on [-2, 2) moved at least 0.1 away from the clamp bounds."""
    v = uniform(shape, seed=seed)
    for bound in (lo, hi):
        near = np.abs(v - bound) < 0.1
        v[near] += np.where(v[near] >= bound, 0.15, -0.15)
    return v


def _sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


UNARY = {
    # name: (fn over a variable, NumPy reference, domain)
    "neg": (lambda x: -x, lambda a: -a, "any"),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, "pos"),
    "exp": (lambda x: x.exp(), np.exp, "any"),
    "ln": (lambda x: x.ln(), np.log, "pos"),
    "log": (lambda x: x.log(), np.log, "pos"),
    "abs": (lambda x: x.abs(), np.abs, "away"),
    "relu": (lambda x: x.relu(), lambda a: np.maximum(a, 0), "away"),
    "leaky_relu": (lambda x: x.leaky_relu(), lambda a: np.where(a > 0, a, 0.01 * a), "away"),
    "leaky_relu(0.2)": (lambda x: x.leaky_relu(0.2), lambda a: np.where(a > 0, a, 0.2 * a), "away"),
    "leaky_relu(slope=1.5)": (lambda x: x.leaky_relu(slope=1.5),
                              lambda a: np.where(a > 0, a, 1.5 * a), "away"),
    "softplus": (lambda x: x.softplus(), lambda a: np.log1p(np.exp(a)), "any"),
    "sigmoid": (lambda x: x.sigmoid(), _sigmoid, "any"),
    "tanh": (lambda x: x.tanh(), np.tanh, "any"),
    "sin": (lambda x: x.sin(), np.sin, "any"),
    "cos": (lambda x: x.cos(), np.cos, "any"),
    "clamp(lo)": (lambda x: x.clamp(-0.5), lambda a: np.maximum(a, -0.5), "clamp"),
    "clamp(lo=)": (lambda x: x.clamp(lo=-0.5), lambda a: np.maximum(a, -0.5), "clamp"),
    "clamp(hi=)": (lambda x: x.clamp(hi=0.5), lambda a: np.minimum(a, 0.5), "clamp"),
    "clamp(None, hi)": (lambda x: x.clamp(None, 0.5), lambda a: np.minimum(a, 0.5), "clamp"),
    "clamp(lo, hi)": (lambda x: x.clamp(-0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5), "clamp"),
}


def unary_sample(domain, shape, seed=0):
    if domain == "clamp":
        return clamp_values(shape, seed)
    return sample(domain, shape, seed)


UNARY_SHAPES = [(), (5,), (3, 4), (2, 3, 4)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", UNARY)
def test_unary_forward_matches_numpy(name, shape, dtype):
    fn, ref, domain = UNARY[name]
    a = unary_sample(domain, shape).astype(dtype)
    for wrap in (const, diff):
        out = fn(wrap(a))
        assert out.shape == shape
        assert out.dtype == dtype and out.data.dtype == dtype
        np.testing.assert_allclose(out.data, ref(a.astype(np.float64)), **tol(dtype))


@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=str)
@pytest.mark.parametrize("name", UNARY)
def test_unary_grad(name, shape):
    fn, _, domain = UNARY[name]
    check_grad(fn, unary_sample(domain, shape))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", UNARY)
def test_unary_non_contiguous(name, layout):
    fn, ref, domain = UNARY[name]
    a = non_contiguous(unary_sample(domain, (4, 3), seed=5), layout)
    np.testing.assert_allclose(fn(const(a)).data, ref(np.array(a)), rtol=1e-12, atol=1e-14)
    check_grad_views(fn, a)


@pytest.mark.parametrize("name", UNARY)
def test_unary_float32_gradient(name):
    fn, _, domain = UNARY[name]
    a = unary_sample(domain, (3, 4), seed=7)
    _, (g64,) = grads_of(fn, a)
    _, (g32,) = grads_of(fn, a.astype(np.float32))
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", UNARY)
def test_unary_in_a_chain(name):
    """The op after and before others: the adjoint composes with broadcasting."""
    fn, _, domain = UNARY[name]
    a = unary_sample(domain, (4, 3), seed=9)
    w = uniform((3,), seed=10)
    check_grad(lambda x, v: fn(x) * v + fn(x), a, w)


def _domain_elements(domain):
    if domain == "pos":
        return st.floats(0.3, 2.5)
    if domain == "away":
        return st.one_of(st.floats(0.2, 2.0), st.floats(-2.0, -0.2))
    if domain == "clamp":
        return st.one_of(st.floats(-2.0, -0.6), st.floats(-0.4, 0.4), st.floats(0.6, 2.0))
    return st.floats(-2.0, 2.0)


@st.composite
def unary_case(draw):
    name = draw(st.sampled_from(sorted(UNARY)))
    array = draw(hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                            elements=_domain_elements(UNARY[name][2])))
    return name, array


@FAST
@given(case=unary_case())
def test_unary_property(case):
    name, a = case
    fn, ref, _ = UNARY[name]
    np.testing.assert_allclose(fn(const(a)).data, ref(a), rtol=1e-12, atol=1e-14)
    check_grad(fn, a)


def test_unary_closed_form_gradients():
    cases = [
        (lambda x: x.relu(), [-1.5, -0.25, 0.25, 2.0], [0, 0, 1, 1]),
        (lambda x: x.abs(), [-1.5, -0.25, 0.25, 2.0], [-1, -1, 1, 1]),
        (lambda x: x.leaky_relu(0.1), [-1.5, -0.25, 0.25, 2.0], [0.1, 0.1, 1, 1]),
        (lambda x: x.clamp(-1.0, 1.0), [-1.5, -0.25, 0.25, 2.0], [0, 1, 1, 0]),
        (lambda x: x.clamp(-1.0), [-1.5, -0.25, 0.25, 2.0], [0, 1, 1, 1]),
        (lambda x: x.clamp(hi=1.0), [-1.5, -0.25, 0.25, 2.0], [1, 1, 1, 0]),
        (lambda x: -x, [-1.5, 2.0], [-1, -1]),
        (lambda x: x.exp(), [0.0, 1.0], [1.0, np.e]),
        (lambda x: x.ln(), [0.5, 4.0], [2.0, 0.25]),
        (lambda x: x.sqrt(), [4.0, 0.25], [0.25, 1.0]),
        (lambda x: x.sigmoid(), [0.0], [0.25]),
        (lambda x: x.tanh(), [0.0], [1.0]),
        (lambda x: x.softplus(), [0.0], [0.5]),
        (lambda x: x.sin(), [0.0, np.pi], [1.0, -1.0]),
        (lambda x: x.cos(), [0.0, np.pi / 2], [0.0, -1.0]),
    ]
    for fn, values, want in cases:
        x = diff(np.array(values))
        fn(x).sum().backward()
        np.testing.assert_allclose(x.grad, want, rtol=1e-12, atol=1e-15)


def test_clamp_value_errors():
    x = diff(np.ones(3))
    with pytest.raises(ValueError) as excinfo:
        x.clamp()
    assert_located(excinfo, "clamp", file=FILE)
    with pytest.raises(ValueError) as excinfo:
        x.clamp(1.0, -1.0)
    assert_located(excinfo, "clamp", "1.0", "-1.0", file=FILE)


# ---- numerically delicate values --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_softplus_stable_at_large_magnitude(dtype):
    values = np.array([1000.0, -1000.0, 50.0, -50.0, 0.0], dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        x = diff(values.copy())
        s = x.sigmoid()
        sd = s.data
        assert sd.dtype == dtype
        assert np.isfinite(sd).all()
        assert sd[0] == 1.0 and sd[1] == 0.0 and sd[4] == 0.5
        np.testing.assert_allclose(sd[2:4], _sigmoid(np.array([50.0, -50.0])), rtol=1e-6)
        s.backward(np.ones(5, dtype))
        assert x.grad.dtype == dtype and np.isfinite(x.grad).all()
        np.testing.assert_allclose(x.grad, [0.0, 0.0, 0.0, 0.0, 0.25], atol=1e-20)

        x = diff(values.copy())
        p = x.softplus()
        pd = p.data
        assert pd.dtype == dtype and np.isfinite(pd).all()
        assert pd[0] == 1000.0 and pd[1] == 0.0 and pd[2] == 50.0
        np.testing.assert_allclose(pd[3:], [np.exp(-50.0), np.log(2.0)], rtol=1e-6)
        p.backward(np.ones(5, dtype))
        assert x.grad.dtype == dtype and np.isfinite(x.grad).all()
        np.testing.assert_allclose(x.grad, [1.0, 0.0, 1.0, np.exp(-50.0), 0.5], rtol=1e-6, atol=1e-30)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_sigmoid_keeps_subnormal_results_and_never_warns(dtype):
    # The kernel computes 1 / (1 + exp(-x)) and takes the overflow-free form for a call where
    # exp(-x) overflows: its results there are subnormal (float32: sigmoid(-90) = 8.19e-40).
    # Closed form: sigmoid(x) = exp(x) / (1 + exp(x)), exact in float64 for x <= 0.
    x = np.concatenate([np.linspace(-110, 40, 301), [-np.inf, np.inf, 0.0]]).astype(dtype)
    wide = x.astype(np.float64)
    expected = np.where(wide <= 0, np.exp(np.minimum(wide, 0)) / (1 + np.exp(np.minimum(wide, 0))),
                        1 / (1 + np.exp(-np.maximum(wide, 0)))).astype(dtype)
    tiny = np.finfo(dtype).smallest_subnormal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for got in (nk.jit(lambda v: v.sigmoid())(x), nk.jit(lambda v: v.sigmoid())(x[150:]),
                    nk.from_ndarray(x).sigmoid().data):
            expect = expected[-len(got):]
            assert got.dtype == dtype
            np.testing.assert_allclose(got, expect, rtol=4 * np.finfo(dtype).eps, atol=tiny)
    if dtype == np.float32:
        assert nk.from_ndarray(x).sigmoid().data[np.argmin(np.abs(x + 90))] > 0    # subnormal, kept


def test_repeated_multiplication_by_four():
    x = nk.ones(()).requires_grad()
    y = x
    for _ in range(5):
        y = y * 4
    assert y.data.dtype == np.float32
    assert y.item() == 1024.0
    y.backward()
    assert x.grad == 1024.0
    assert x.grad.dtype == np.float32


def test_gradients_accumulate_across_backward_calls():
    a = uniform((3,), seed=2)
    x = diff(a.copy())
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * a + 3.0, rtol=1e-14)


# ---- dtypes -------------------------------------------------------------------------------------------

DTYPE_EXPRESSIONS = {
    "x * 0.5": (lambda x: x * 0.5),
    "0.5 * x": (lambda x: 0.5 * x),
    "x / 3.0": (lambda x: x / 3.0),
    "3.0 / x": (lambda x: 3.0 / x),
    "x + 1.5": (lambda x: x + 1.5),
    "x - 1.0": (lambda x: x - 1.0),
    "1.0 - x": (lambda x: 1.0 - x),
    "x * 2": (lambda x: x * 2),
    "x * np.float32(0.5)": (lambda x: x * np.float32(0.5)),
    "x ** 2.0": (lambda x: x ** 2.0),
    "x ** 0.5": (lambda x: x ** 0.5),
    "x.pow(1.5)": (lambda x: x.pow(1.5)),
    "2.0 ** x": (lambda x: 2.0 ** x),
    "x ** x": (lambda x: x ** x),
    "x.clamp(0.2, 0.8)": (lambda x: x.clamp(0.2, 0.8)),
    "x.leaky_relu(0.1)": (lambda x: x.leaky_relu(0.1)),
    "x.softplus()": (lambda x: x.softplus()),
    "x.sigmoid()": (lambda x: x.sigmoid()),
    "x.dropout(0.3)": (lambda x: x.dropout(0.3)),
    "x.sqrt().exp().ln()": (lambda x: x.sqrt().exp().ln()),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("expr", DTYPE_EXPRESSIONS)
def test_dtype_is_kept(expr, dtype):
    fn = DTYPE_EXPRESSIONS[expr]
    nk.manual_seed(0)
    x = diff(uniform((3, 4), 0.1, 1.0).astype(dtype))
    out = fn(x)
    assert out.dtype == dtype
    assert out.data.dtype == dtype
    out.backward(np.ones((3, 4)))          # a float64 seed must not promote either
    assert x.grad.dtype == dtype
    total = fn(x).sum()
    assert total.dtype == dtype and total.data.dtype == dtype


def test_float32_default_creation():
    x = nk.full((2, 3), 0.5).requires_grad()
    assert x.dtype == np.float32
    y = (x * 0.5 + 1.0).tanh()
    assert y.data.dtype == np.float32
    np.testing.assert_allclose(y.data, np.tanh(np.float32(1.25)), rtol=1e-6)
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_mixed_precision_gradients_keep_each_leaf_dtype():
    a32 = diff(uniform((3,), seed=1).astype(np.float32))
    b64 = diff(uniform((2, 3), seed=2))
    out = a32 * b64
    assert out.dtype == np.float64
    out.backward(np.ones((2, 3)))
    assert a32.grad.dtype == np.float32 and b64.grad.dtype == np.float64
    np.testing.assert_allclose(a32.grad, b64.data.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(b64.grad, np.broadcast_to(a32.data.astype(np.float64), (2, 3)), rtol=1e-14)


# ---- errors ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BINARY)
def test_shape_mismatch_names_op_and_shapes(name):
    x = diff(np.ones((4, 3)))
    y = diff(np.ones((4,)))
    with pytest.raises(nk.ShapeError) as excinfo:
        BINARY[name](x, y)
    assert isinstance(excinfo.value, ValueError)
    assert_located(excinfo, name, "(4, 3)", "(4,)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        BINARY[name](np.ones((2, 5)), x)
    assert_located(excinfo, name, "(2, 5)", "(4, 3)", file=FILE)


def test_shape_mismatch_three_dims():
    with pytest.raises(nk.ShapeError) as excinfo:
        diff(np.ones((2, 4, 3))) * diff(np.ones((3, 3)))
    assert_located(excinfo, "mul", "(2, 4, 3)", "(3, 3)", file=FILE)


# ---- dropout ------------------------------------------------------------------------------------------

def _dropout_case(p, shape=(200, 50), seed=0, dtype=np.float64):
    a = away(shape, 0.5, 2.0, seed=seed).astype(dtype)
    x = diff(a.copy())
    return a, x, x.dropout(p)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_training_values_are_zero_or_scaled(p):
    nk.manual_seed(1)
    a, x, y = _dropout_case(p)
    out = y.data
    kept = out != 0
    np.testing.assert_allclose(out[kept], a[kept] / (1 - p), rtol=1e-12)
    assert (out[~kept] == 0).all()
    fraction_dropped = 1 - kept.mean()
    assert kept.any() and (~kept).any()
    assert abs(fraction_dropped - p) < 0.03


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.25, 0.5])
def test_dropout_gradient_uses_the_forward_mask(p, dtype):
    nk.manual_seed(2)
    a, x, y = _dropout_case(p, shape=(30, 20), dtype=dtype)
    out = y.data
    seed = np.random.default_rng(0).standard_normal(a.shape)
    y.backward(seed)
    mask = (out != 0) / (1 - p)
    assert x.grad.dtype == dtype and out.dtype == dtype
    np.testing.assert_allclose(x.grad, (seed * mask).astype(dtype), rtol=1e-6 if dtype == np.float32 else 1e-12)
    assert (x.grad[out == 0] == 0).all()
    assert (x.grad[out != 0] != 0).all()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_dropout_non_contiguous(layout):
    nk.manual_seed(6)
    a = non_contiguous(away((6, 5), 0.5, 2.0, seed=1), layout)
    x = diff(a)
    y = x.dropout(0.4)
    out = y.data
    kept = out != 0
    assert kept.any() and (~kept).any()
    np.testing.assert_allclose(out[kept], np.asarray(a)[kept] / 0.6, rtol=1e-12)
    seed = uniform((6, 5), seed=2)
    y.backward(seed)
    np.testing.assert_allclose(x.grad, seed * kept / 0.6, rtol=1e-12)


def test_dropout_gradient_matches_the_mask_of_the_root_program():
    """Behind a root, the backward uses the mask that root's own forward drew (an
    intermediate read later through ``.data`` is evaluated again, with a new mask,
    so compare through the root's value instead)."""
    nk.manual_seed(3)
    a, x, y = _dropout_case(0.5, shape=(10, 10))
    z = (y * 2.0).sum()
    z.backward()
    kept = x.grad != 0
    assert 0 < kept.sum() < 100
    np.testing.assert_allclose(x.grad[kept], 2.0 / 0.5)
    np.testing.assert_allclose(z.data, (x.grad * a).sum(), rtol=1e-12)


def test_dropout_p_zero_is_identity():
    a, x, y = _dropout_case(0.0, shape=(7, 3))
    np.testing.assert_array_equal(y.data, a)
    seed = uniform((7, 3), seed=4)
    y.backward(seed)
    np.testing.assert_array_equal(x.grad, seed)


def test_dropout_p_one_drops_everything():
    a, x, y = _dropout_case(1.0, shape=(4, 3))
    np.testing.assert_array_equal(y.data, np.zeros((4, 3)))
    y.backward(np.ones((4, 3)))
    np.testing.assert_array_equal(x.grad, np.zeros((4, 3)))


def test_dropout_eval_is_identity_and_train_restores_masks():
    nk.manual_seed(5)
    a, x, y = _dropout_case(0.5, shape=(20, 10))
    z = (y * 3.0).sum()
    z.eval()
    z.forward()
    np.testing.assert_allclose(z.data, 3.0 * a.sum(), rtol=1e-12)
    z.backward()
    np.testing.assert_array_equal(x.grad, np.full((20, 10), 3.0))
    y2 = x.dropout(0.5)
    y2.eval()
    np.testing.assert_array_equal(y2.data, a)
    y2.train()
    y2.forward()
    out = y2.data
    assert (out == 0).any() and (out != 0).any()
    np.testing.assert_allclose(out[out != 0], 2 * a[out != 0], rtol=1e-12)


def test_dropout_reproducible_under_manual_seed():
    a = away((40, 25), 0.5, 2.0)
    nk.manual_seed(123)
    first = diff(a.copy()).dropout(0.5).data.copy()
    nk.manual_seed(123)
    second = diff(a.copy()).dropout(0.5).data.copy()
    nk.manual_seed(124)
    third = diff(a.copy()).dropout(0.5).data.copy()
    np.testing.assert_array_equal(first, second)
    assert (first != third).any()


def test_dropout_p_out_of_range():
    x = diff(np.ones(3))
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError) as excinfo:
            x.dropout(p)
        assert_located(excinfo, "dropout", str(p), file=FILE)
