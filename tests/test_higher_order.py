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


# ---- nested differentiation: each level differentiates its own argument (issue 11) ----------------
# An inner grad whose function reads a value of the enclosing trace (a closure) is taken with
# respect to its own argument only, while the outer value stays a variable of the outer level:
# the perturbation-confusion problem (Siskind & Pearlmutter, "Perturbation confusion and
# referential transparency", 2005).

def test_inner_grad_closing_over_the_outer_variable():
    # d/dx [x * d/dy (x y)] = d/dx x ** 2 = 2 x
    g = nk.grad(lambda x: x * nk.grad(lambda y: x * y)(2.0))(1.0)
    assert type(g) is float and g == pytest.approx(2.0, rel=1e-12)
    g = nk.grad(lambda x: x * nk.grad(lambda y: x * y)(np.array(2.0)))(np.array(3.0))
    assert g.shape == () and float(g) == pytest.approx(6.0, rel=1e-12)


@pytest.mark.parametrize("x", [1.0, -0.5, 2.5])
def test_siskind_pearlmutter_examples(x):
    # their example: d/dx [x * (d/dy (x + y))(1)] = d/dx [x * 1] = 1 (confusion gives 2)
    assert nk.grad(lambda x: x * nk.grad(lambda y: x + y)(1.0))(x) == pytest.approx(1.0)
    # d/dx [x * (d/dy (x * y ** 2))(3)] = d/dx [6 x ** 2] = 12 x
    assert nk.grad(lambda x: x * nk.grad(lambda y: x * y ** 2)(3.0))(x) == pytest.approx(12 * x)
    # the inner argument is the outer variable: d/dx [(d/dy (x y))(x)] = d/dx x = 1
    assert nk.grad(lambda x: nk.grad(lambda y: x * y)(x))(x) == pytest.approx(1.0)
    # d/dx [x * (d/dy sin(x y))(x)] = d/dx [x ** 2 cos(x ** 2)] = 2x cos(x^2) - 2 x ** 3 sin(x^2)
    want = 2 * x * np.cos(x * x) - 2 * x ** 3 * np.sin(x * x)
    assert nk.grad(lambda x: x * nk.grad(lambda y: nk.numpy.sin(x * y))(x))(x) == pytest.approx(want)


def test_three_levels_of_closures():
    # innermost d/dz (x y z) = x y; middle d/dy [x y * y] = 2 x y, at y = 1: 2 x; outer d/dx 2 x ** 2
    def middle(x):
        return nk.grad(lambda y: nk.grad(lambda z: x * y * z)(1.0) * y)(1.0)

    assert nk.grad(lambda x: middle(x) * x)(2.0) == pytest.approx(8.0)


def test_closures_through_value_and_grad_vjp_jacobian_hessian_hvp():
    x = np.array([0.5, -1.0, 2.0])
    v = np.array([1.0, 2.0, -1.0])
    # value_and_grad: d/da [sum(a * y)] at y = v is sum(v); the value sum(a v) has gradient v
    g = nk.grad(lambda a: nk.value_and_grad(lambda y: (a * y).sum())(v)[0])(x)
    np.testing.assert_allclose(g, v)
    g = nk.grad(lambda a: (nk.value_and_grad(lambda y: (a * y * y).sum())(v)[1] * a).sum())(x)
    np.testing.assert_allclose(g, 4 * x * v)                  # d/da sum(2 a ** 2 v)
    # vjp: the pullback of y -> a * y at v is a * ct
    g = nk.grad(lambda a: (nk.vjp(lambda y: a * y, v)[1](v)[0] ** 2).sum())(x)
    np.testing.assert_allclose(g, 2 * x * v ** 2)
    # jacobian of y -> a * y ** 2 at v: diag(2 a v)
    g = nk.grad(lambda a: (nk.jacobian(lambda y: a * y ** 2)(v) ** 2).sum())(x)
    np.testing.assert_allclose(g, 8 * x * v ** 2)
    # hessian of y -> sum(a y ** 3) at v: diag(6 a v)
    h = nk.jacobian(lambda a: nk.hessian(lambda y: (a * y ** 3).sum())(v))(x)
    assert h.shape == (3, 3, 3)
    want = np.zeros((3, 3, 3))
    for i in range(3):
        want[i, i, i] = 6 * v[i]
    np.testing.assert_allclose(h, want)
    # hvp of y -> sum(a y ** 3) at v along v: 6 a v ** 2
    g = nk.grad(lambda a: nk.hvp(lambda y: (a * y ** 3).sum(), v, v).sum())(x)
    np.testing.assert_allclose(g, 6 * v ** 2)


def test_a_closure_over_an_argument_that_is_not_differentiated_is_not_frozen():
    """The outer trace is reused with new values: the inner gradient must follow them."""
    f = nk.grad(lambda x, c: x * nk.grad(lambda y: c * y)(2.0))
    assert f(1.0, 3.0) == pytest.approx(3.0)
    assert f(1.0, 5.0) == pytest.approx(5.0)
    h = nk.grad(lambda x, c: (x * nk.grad(lambda y: (c * y).sum())(np.ones(2))).sum())
    np.testing.assert_allclose(h(np.ones(2), np.array([1.0, 2.0])), [1.0, 2.0])
    np.testing.assert_allclose(h(np.ones(2), np.array([3.0, 4.0])), [3.0, 4.0])


def test_an_outer_value_read_as_a_number_by_an_inner_trace_is_guarded():
    f = nk.grad(lambda x, c: x * nk.grad(lambda y: y * float(c))(2.0))
    assert f(1.0, 3.0) == pytest.approx(3.0)
    assert f(1.0, 5.0) == pytest.approx(5.0)
    b = nk.grad(lambda x: nk.grad(lambda y: y * (2.0 if x > 0 else -3.0))(1.0) * x)
    assert b(1.0) == pytest.approx(2.0) and b(-1.0) == pytest.approx(-3.0)


def test_an_outer_value_converted_to_numpy_by_an_inner_function_raises():
    with pytest.raises(nk.GradientError, match="converted to a NumPy array"):
        nk.grad(lambda x: nk.grad(lambda y: y * np.asarray(x))(2.0) * x)(1.0)


def test_an_inner_function_reading_no_outer_value_is_still_compiled():
    """No closure over the outer level: the inner gradient is the compiled one, a plain array
    (custom_vjp has no second derivative, so this would fail if built as a graph)."""
    @nk.custom_vjp
    def twice(y):
        return 2 * y

    twice.defvjp(lambda y: (2 * y, None), lambda r, g: (2 * g,))
    seen = []

    def outer(x):
        g = nk.grad(lambda y: twice(y).sum())(np.ones(2))
        seen.append(type(g))
        return (x * g).sum()

    np.testing.assert_allclose(nk.grad(outer)(np.array([1.0, 2.0])), [2.0, 2.0])
    assert seen == [np.ndarray]


def test_backward_on_a_gradient_built_as_a_graph():
    """The imperative level: grad on variables builds the gradient as a graph, and backward
    through it differentiates the closed-over variable too."""
    x = nk.from_ndarray(np.array(1.5)).requires_grad()
    g = nk.grad(lambda y: x * y)(nk.from_ndarray(np.array(2.0)))     # = x
    (x * g).backward()                                                 # d/dx x ** 2
    assert float(x.grad) == pytest.approx(3.0)
    w = nk.from_ndarray(np.array([0.5, -1.0])).requires_grad()
    g = nk.grad(lambda y: (w * y ** 2).sum())(w)                       # 2 w * w
    (g * w).sum().backward()                                           # d/dw sum(2 w ** 3)
    np.testing.assert_allclose(w.grad, 6 * w.data ** 2)


# ---- a zero gradient is a zero array of the input's shape and dtype, at every order ---------------

def _shared_floor(a):
    f = nk.numpy.floor(a)                     # one node read twice: its gradient is added up,
    return (f * f).sum()                      # then dropped (floor's adjoint is zero)


ZERO_FIRST = {                                # d/dx is identically zero
    "shared_floor": _shared_floor,
    "sign": lambda a: (nk.numpy.sign(a) * 3.0).sum(),
    "round": lambda a: nk.numpy.round(a).sum(),
    "stop_gradient": lambda a: (nk.stop_gradient(a) * nk.stop_gradient(a)).sum(),
    "constant": lambda a: nk.numpy.sum(np.ones(3)),
    "where": lambda a: nk.numpy.where(a > 0, 1.0, 2.0).sum(),
}
ZERO_SECOND = {                               # d2/dx2 is identically zero
    **ZERO_FIRST,
    "linear": lambda a: (a * 2.0).sum(),
    "linear_indexed": lambda a: (a[0] + a[1:].sum()) * 2.0,
    "ceil_times_x": lambda a: (nk.numpy.ceil(a) * a).sum(),
    "shared_floor_times_x": lambda a: (_shared_floor(a) * a).sum(),
    "clip": lambda a: nk.numpy.clip(a, -1.0, 1.0).sum(),
    "abs": lambda a: nk.numpy.abs(a).sum(),
}


def _second(f):
    """y -> <grad f(y), u> for a fixed direction u: its gradient is the Hessian times u."""
    return lambda y: (nk.grad(f)(y) * np.array([1.0, -2.0, 0.5], y.dtype)).sum()


PATHS = {      # name -> (how to take it, the shape of the result for x of shape (3,))
    "grad": (lambda f, x: nk.grad(f)(x), (3,)),
    "value_and_grad": (lambda f, x: nk.value_and_grad(f)(x)[1], (3,)),
    "grad_dict": (lambda f, x: nk.grad(lambda p: f(p["a"]))({"a": x})["a"], (3,)),
    "vjp": (lambda f, x: nk.vjp(lambda y: f(y) * 1.0, x)[1](np.array(1.0, x.dtype))[0], (3,)),
    "jacobian": (lambda f, x: nk.jacobian(f)(x), (3,)),
    "backward": (lambda f, x: _backward(f, x), (3,)),
    "grad_on_a_variable": (lambda f, x: nk.grad(f)(nk.from_ndarray(x.copy()).requires_grad()).data, (3,)),
}
SECOND_PATHS = {
    "grad_grad": (lambda f, x: nk.grad(_second(f))(x), (3,)),
    "grad_grad_grad": (lambda f, x: nk.grad(_second(_second(f)))(x), (3,)),
    "hessian": (lambda f, x: nk.hessian(f)(x), (3, 3)),
    "jacobian_hessian": (lambda f, x: nk.jacobian(nk.hessian(f))(x), (3, 3, 3)),
    "hvp": (lambda f, x: nk.hvp(f, x, x), (3,)),
    "vjp_grad": (lambda f, x: nk.vjp(nk.grad(f), x)[1](x)[0], (3,)),
    "jacobian_grad": (lambda f, x: nk.jacobian(nk.grad(f))(x), (3, 3)),
    "value_and_grad_grad": (lambda f, x: nk.value_and_grad(_second(f))(x)[1], (3,)),
    "closure": (lambda f, x: nk.grad(lambda a: _second(lambda y: f(a + y))(np.zeros_like(x)))(x), (3,)),
    "hessian_on_a_variable": (lambda f, x: nk.hessian(f)(nk.from_ndarray(x.copy()).requires_grad()).data,
                              (3, 3)),
    "backward_of_grad": (lambda f, x: _backward(_second(f), x), (3,)),
}


def _backward(f, x):
    v = nk.from_ndarray(x.copy()).requires_grad()
    out = f(v)
    if out.__class__.__name__ == "VarDiff":
        out.backward()
    return v.grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("name", sorted(ZERO_FIRST))
def test_a_zero_first_order_gradient_is_a_zero_array(name, path, dtype):
    x = np.array([0.5, -1.25, 2.5], dtype)
    take, shape = PATHS[path]
    g = take(ZERO_FIRST[name], x)
    assert isinstance(g, np.ndarray) and g.shape == shape and g.dtype == dtype
    assert not g.any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("path", sorted(SECOND_PATHS))
@pytest.mark.parametrize("name", sorted(ZERO_SECOND))
def test_a_zero_higher_order_gradient_is_a_zero_array(name, path, dtype):
    x = np.array([0.5, -1.25, 2.5], dtype)
    take, shape = SECOND_PATHS[path]
    f = ZERO_SECOND[name]
    g = take(f, x)
    assert isinstance(g, np.ndarray) and g.shape == shape and g.dtype == dtype
    assert not g.any()


def test_a_zero_gradient_of_a_python_float_is_the_float_zero():
    for f in (lambda s: nk.numpy.floor(s) * nk.numpy.floor(s), lambda s: s * 2.0, lambda s: 1.0):
        g = nk.grad(nk.grad(f))(1.5)
        assert type(g) is float and g == 0.0


def test_the_gradient_of_clip_has_the_inputs_dtype_not_bool():
    for dtype in (np.float64, np.float32):
        g = nk.grad(lambda a: nk.numpy.clip(a, -1.0, 1.0).sum())(np.array([0.5, -2.0, 3.0], dtype))
        assert g.dtype == dtype
        np.testing.assert_array_equal(g, [1.0, 0.0, 0.0])


# ---- to third order through indexing, reshapes and batched products --------------------------------
A223 = np.random.default_rng(5).standard_normal((2, 2, 3))
V34 = np.random.default_rng(6).standard_normal((3, 4))
U34 = np.random.default_rng(7).standard_normal((3, 4))

INDEXED = {
    "int": lambda v: nk.numpy.sin(v[1]).sum() * v[0, 0],
    "two_ints": lambda v: v[1, 2] ** 4 + v[0, 1] * v[2, 3] ** 2,
    "negative": lambda v: (v[-1] ** 3).sum(),
    "slices": lambda v: (nk.numpy.sin(v[1:, ::2]) * v[:2, 1::2]).sum(),
    "reversed": lambda v: (v[::-1] * v ** 2).sum(),
    "fancy_repeated": lambda v: (v[[0, 0, 2]] ** 3).sum(),
    "fancy_pairs": lambda v: (v[[0, 2, 2], [1, 3, 3]] ** 3).sum(),
    "mask": lambda v: (v[np.array([True, False, True])] ** 3).sum(),
    "newaxis_ellipsis": lambda v: (v[None, 1, :, None] ** 3).sum() + (v[..., 1] ** 3).sum(),
    "reshape": lambda v: (nk.numpy.sin(v.reshape(2, 6)) ** 2).sum(),
    "ravel_slice": lambda v: (nk.numpy.ravel(v)[3:7] ** 3).sum(),
    "transpose_row": lambda v: (v.T[1] ** 3).sum(),
    "rows": lambda v: sum((r ** 3).sum() for r in v),
    "matmul_223_by_3": lambda v: (nk.numpy.tanh(A223 @ v[:, 1]) ** 2).sum(),
    "matmul_223_reshaped": lambda v: (nk.numpy.sin(v.reshape(2, 2, 3) @ v[0, :3])
                                      * v.reshape(2, 2, 3)[..., 0]).sum(),
    "matmul_223_variable_by_3": lambda v: nk.numpy.sin(v.reshape(2, 2, 3) @ np.array([0.3, -0.2, 0.5])).sum(),
}


def _along(f, u):
    return lambda y: (nk.grad(f)(y) * u).sum()


@pytest.mark.parametrize("name", sorted(INDEXED))
def test_third_order_through_indexing_matches_finite_differences(name):
    f = INDEXED[name]
    second = _along(_along(f, U34), U34)        # <d2f(v) u, u>
    third = nk.grad(second)(V34)                # d3f(v)[u, u, .]
    assert third.shape == V34.shape and third.dtype == V34.dtype
    np.testing.assert_allclose(third, numerical_jacobian(second, V34), rtol=1e-5, atol=1e-6)
    h = nk.hessian(f)(V34)
    assert h.shape == V34.shape * 2
    np.testing.assert_allclose(h, numerical_jacobian(nk.grad(f), V34), rtol=1e-5, atol=1e-6)
    t = nk.jacobian(nk.hessian(f))(V34)
    assert t.shape == V34.shape * 3
    np.testing.assert_allclose(np.tensordot(np.tensordot(t, U34, 2), U34, 2), third, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", sorted(INDEXED))
def test_third_order_through_indexing_with_backward(name):
    """The imperative level: the second-order gradient built as a graph on a VarDiff (indices
    passed at run time), then backward through it."""
    f = INDEXED[name]
    v = nk.from_ndarray(V34.copy()).requires_grad()
    second = nk.grad(_along(f, U34))(v)
    assert second.shape == V34.shape
    (second * U34).sum().backward()
    assert v.grad.shape == V34.shape
    np.testing.assert_allclose(v.grad, nk.grad(_along(_along(f, U34), U34))(V34), rtol=1e-8, atol=1e-10)


def test_third_derivative_of_a_223_by_3_product_against_the_closed_form():
    b = np.array([0.4, -0.7, 0.2])
    # f(b) = sum(sin(A b)): d3f = -sum_k cos(A b)_k A_ki A_kj A_kl
    t = nk.jacobian(nk.hessian(lambda b: nk.numpy.sin(A223 @ b).sum()))(b)
    c = np.cos(A223 @ b)
    np.testing.assert_allclose(t, -np.einsum("pq,pqi,pqj,pql->ijl", c, A223, A223, A223), rtol=1e-10,
                               atol=1e-12)
    s = nk.grad(nk.grad(nk.grad(lambda s: nk.numpy.sin(A223 @ (b * s)).sum())))(0.5)
    np.testing.assert_allclose(s, -np.sum(np.cos(A223 @ b * 0.5) * (A223 @ b) ** 3), rtol=1e-10)


def test_nested_closures_when_the_outer_gradient_is_built_as_a_graph():
    """grad on variables (the imperative level, or hessian on a VarDiff) is a level of its
    own too: an inner grad reading its argument keeps it live."""
    g = nk.grad(lambda y: y * nk.grad(lambda z: y * z)(2.0))(nk.from_ndarray(np.array(1.5)))
    assert float(g.data) == pytest.approx(3.0)                        # d/dy y ** 2
    x = nk.from_ndarray(np.array(1.5)).requires_grad()
    g = nk.grad(lambda y: y * nk.grad(lambda z: y * z)(2.0))(x)       # 2 x, as a graph
    g.backward()
    assert float(x.grad) == pytest.approx(2.0)
    h = nk.hessian(lambda y: (y * nk.grad(lambda z: (y * z).sum())(np.ones(2))).sum())(
        nk.from_ndarray(np.array([1.0, -2.0])))
    np.testing.assert_allclose(h.data, 2 * np.eye(2))


def test_a_variable_differentiated_as_a_graph_is_not_frozen_by_numpy():
    """A NumPy function with no gradient here refuses an argument of grad called on variables,
    as it does in a compiled trace, instead of reading it as a constant."""
    f = nk.grad(lambda y: (np.fft.fft(y).real * y).sum())
    with pytest.raises(TypeError, match="fft"):
        f(np.ones(3))
    with pytest.raises(TypeError, match="fft"):
        f(nk.from_ndarray(np.ones(3)))
