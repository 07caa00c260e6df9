"""Second derivatives: adjoint templates evaluated on variables, then compiled again."""
import numpy as np
import pytest

import neuronika as nk
from neuronika.testing import numerical_jacobian


@pytest.mark.parametrize("f, d2", [
    (lambda x: x.sin(), lambda x: -np.sin(x)),
    (lambda x: x.cos(), lambda x: -np.cos(x)),
    (lambda x: x.exp(), np.exp),
    (lambda x: x ** 3, lambda x: 6 * x),
    (lambda x: x.pow(4), lambda x: 12 * x ** 2),
    (lambda x: x.tanh(), lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    (lambda x: x.ln(), lambda x: -1 / x ** 2),
    (lambda x: x.sqrt(), lambda x: -0.25 * x ** -1.5),
    (lambda x: x.sigmoid(), lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
    (lambda x: 1 / x, lambda x: 2 / x ** 3),
])
@pytest.mark.parametrize("x", [0.7, 1.9])
def test_grad_of_grad_closed_forms(f, d2, x):
    np.testing.assert_allclose(nk.grad(nk.grad(f))(x), d2(x), rtol=1e-10)


def test_third_derivative():
    np.testing.assert_allclose(nk.grad(nk.grad(nk.grad(lambda x: x.sin())))(0.3), -np.cos(0.3), rtol=1e-10)


def test_hessian_of_sum_tanh_wx_matches_closed_form():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 4))
    x = rng.standard_normal(4)
    h = nk.hessian(lambda v: (nk.from_ndarray(w) @ v).tanh().sum())(x)
    t = np.tanh(w @ x)
    np.testing.assert_allclose(h, w.T @ np.diag(-2 * t * (1 - t ** 2)) @ w, rtol=1e-10, atol=1e-12)


def test_hessian_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 4))

    def f(x):
        return ((nk.from_ndarray(a) @ x).sigmoid() * x).sum() + (x * x).sum().sqrt()

    x = rng.standard_normal(4)
    gradient = nk.grad(f)
    expected = numerical_jacobian(gradient, x)
    np.testing.assert_allclose(nk.hessian(f)(x), expected, rtol=1e-6, atol=1e-8)


def test_hvp_equals_hessian_times_vector():
    rng = np.random.default_rng(2)
    x, v = rng.standard_normal(5), rng.standard_normal(5)

    def f(z):
        return (z.exp() * z.sin()).sum() + (z.sum()) ** 2

    np.testing.assert_allclose(nk.hvp(f, x, v), nk.hessian(f)(x) @ v, rtol=1e-10)
    assert nk.hvp(f, x, v).shape == x.shape


def test_hvp_is_cached_per_signature():
    f = lambda z: (z ** 3).sum()
    nk.transform.cache_clear()
    for k in range(3):
        nk.hvp(f, np.full(3, float(k + 1)), np.ones(3))
    info = nk.transform.cache_info()
    assert info.misses == 1 and info.hits == 2


# Second derivatives through every differentiable op: the Hessian of
# sum(c * op(x)) must match finite differences of the compiled first derivative.
RNG = np.random.default_rng(3)
POS = np.abs(RNG.standard_normal((3, 4))) + 0.5
ANY = RNG.standard_normal((3, 4))
M = RNG.standard_normal((4, 2))
B = RNG.standard_normal(4)

OPS = {
    "add_broadcast": (lambda x: (x + nk.from_ndarray(B)) * x, ANY),
    "sub": (lambda x: (x - x.exp()) * x, ANY),
    "mul": (lambda x: x * x * x, ANY),
    "div": (lambda x: x / (x * x + 1), ANY),
    "power": (lambda x: x ** x, POS),
    "pow": (lambda x: x.pow(3), ANY),
    "neg": (lambda x: -(x * x), ANY),
    "sqrt": (lambda x: x.sqrt(), POS),
    "exp": (lambda x: x.exp(), ANY),
    "log": (lambda x: x.ln(), POS),
    "abs": (lambda x: x.abs() * x, ANY),
    "relu": (lambda x: x.relu() * x, ANY),
    "leaky_relu": (lambda x: x.leaky_relu(0.1) * x, ANY),
    "softplus": (lambda x: x.softplus(), ANY),
    "sigmoid": (lambda x: x.sigmoid(), ANY),
    "tanh": (lambda x: x.tanh(), ANY),
    "sin": (lambda x: x.sin(), ANY),
    "cos": (lambda x: x.cos(), ANY),
    "clamp": (lambda x: x.clamp(-0.5, 0.5) * x, ANY),
    "sum_axis": (lambda x: x.sum(axis=1) ** 2, ANY),
    "mean": (lambda x: x.mean(axis=0, keepdims=True) * x, ANY),
    "max": (lambda x: x.max(axis=1) * x.sum(axis=1), ANY),
    "min": (lambda x: x.min() * x, ANY),
    "softmax": (lambda x: x.softmax(1), ANY),
    "log_softmax": (lambda x: x.log_softmax(0) * x, ANY),
    "matmul": (lambda x: (x @ nk.from_ndarray(M)).tanh(), ANY),
    "mm_t": (lambda x: x.mm_t(x).tanh(), ANY),
    "mv": (lambda x: x.mv(nk.from_ndarray(B)) ** 2, ANY),
    "transpose": (lambda x: x.T.tanh() * x.T, ANY),
    "reshape": (lambda x: x.reshape(2, 6).softmax(1), ANY),
    "index": (lambda x: x[np.array([0, 2, 0]), 1:3] ** 2, ANY),
    "pad_constant": (lambda x: x.pad(((1, 0), (0, 2))).tanh(), ANY),
    "pad_reflect": (lambda x: x.pad(((1, 1), (2, 0)), mode="reflect") ** 2, ANY),
    "pad_replicate": (lambda x: x.pad(((0, 2), (1, 1)), mode="replicate") ** 2, ANY),
    "concatenate": (lambda x: nk.concatenate([x, x * x], axis=1) ** 2, ANY),
    "stack": (lambda x: nk.stack([x, x.sin()], axis=0) ** 2, ANY),
    "where_via_clamp_lo": (lambda x: x.clamp(lo=0.0) ** 2, ANY),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_second_derivatives_through_every_op(name):
    op, x = OPS[name]
    c = np.random.default_rng(4).standard_normal(op(nk.from_ndarray(x)).shape)

    def f(v):
        return (op(v) * nk.from_ndarray(c)).sum()

    gradient = nk.grad(f)
    expected = numerical_jacobian(gradient, x)
    np.testing.assert_allclose(nk.hessian(f)(x), expected, rtol=1e-5, atol=1e-6)


def test_second_derivatives_through_dropout_say_so():
    with pytest.raises(nk.GradientError, match="dropout"):
        nk.hessian(lambda x: x.dropout(0.5).sum())(np.ones(3))
