"""The functional face: grad, value_and_grad, vjp, jacobian, custom_vjp, stop_gradient.

Gradients are checked against closed forms where they exist, otherwise against
float64 central finite differences of a plain-NumPy twin of the same function
(``fd_grad`` below), so the reference never goes through neuronika.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuronika
from neuronika import GradientError, transform
from neuronika.testing import numerical_jacobian

RTOL, ATOL = 1e-6, 1e-8


@pytest.fixture(autouse=True)
def fresh_cache():
    transform.cache_clear()
    yield
    transform.cache_clear()


# ---- helpers ------------------------------------------------------------------------------------

def rng(seed=0):
    return np.random.default_rng(seed)


def normal(*shape, seed=0, scale=1.0):
    return rng(seed).standard_normal(shape) * scale


def fd_grad(f, x, eps=1e-6):
    """d f / d x by float64 central differences; f maps a float64 array to a Python float."""
    x = np.array(x, dtype=np.float64)
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + eps
        up = float(f(x))
        flat[k] = keep - eps
        down = float(f(x))
        flat[k] = keep
        gflat[k] = (up - down) / (2 * eps)
    return g


def fd_grads(f, args, argnums, eps=1e-6):
    """One finite-difference gradient per position in ``argnums`` for f(*args) -> float."""
    out = []
    for n in argnums:
        def partial(v, n=n):
            call = list(args)
            call[n] = v
            return f(*call)
        out.append(fd_grad(partial, args[n], eps))
    return out


def fresh(arrays):
    """Copies: the call cannot change the arrays the expected values were computed from."""
    return [a.copy() for a in arrays]


def close(got, want, rtol=RTOL, atol=ATOL):
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def sigmoid_np(z):
    return 1.0 / (1.0 + np.exp(-z))


def log_softmax_np(z, axis=-1):
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def info():
    i = transform.cache_info()
    return i.hits, i.misses


# ---- 1. gradients of real functions --------------------------------------------------------------

def test_logistic_regression_closed_form():
    X = normal(16, 4, seed=1)
    y = (rng(2).random(16) < 0.5).astype(np.float64)
    w = normal(4, seed=3)

    def loss(w, X, y):
        z = X.mm(w.reshape(4, 1)).reshape(16)
        # -[y log s + (1-y) log(1-s)] = softplus(z) - y z
        return (z.softplus() - y * z).mean()

    g = neuronika.grad(loss)(w, X, y)
    want = X.T @ (sigmoid_np(X @ w) - y) / len(y)
    assert g.dtype == np.float64
    close(g, want, rtol=1e-12, atol=1e-14)
    # same function through value_and_grad gives the loss too
    value, g2 = neuronika.value_and_grad(loss)(w, X, y)
    z = X @ w
    close(value, np.mean(np.logaddexp(0, z) - y * z), rtol=1e-12)
    close(g2, want, rtol=1e-12, atol=1e-14)


def test_logistic_regression_with_sigmoid_and_log():
    X = normal(10, 3, seed=4)
    y = (rng(5).random(10) < 0.5).astype(np.float64)

    def loss(w):
        s = (X @ w).reshape(10).sigmoid()
        return -(y * s.log() + (1 - y) * (1 - s).log()).mean()

    w = normal(3, 1, seed=6) * 0.3
    close(neuronika.grad(loss)(w), (X.T @ (sigmoid_np(X @ w).reshape(10) - y) / 10).reshape(3, 1),
          rtol=1e-10, atol=1e-12)


def mlp_params(seed=0):
    r = rng(seed)
    return {"w1": r.standard_normal((3, 5)) * 0.5, "b1": r.standard_normal(5) * 0.1,
            "w2": r.standard_normal((5, 2)) * 0.5, "b2": r.standard_normal(2) * 0.1}


def mlp_loss(params, x, t):
    h = (x.mm(params["w1"]) + params["b1"]).tanh()
    out = h.mm(params["w2"]) + params["b2"]
    return ((out - t) ** 2).mean()


def mlp_loss_np(params, x, t):
    h = np.tanh(x @ params["w1"] + params["b1"])
    out = h @ params["w2"] + params["b2"]
    return np.mean((out - t) ** 2)


def test_mlp_dict_of_params():
    params = mlp_params()
    x, t = normal(4, 3, seed=7), normal(4, 2, seed=8)
    g = neuronika.grad(mlp_loss)(params, x, t)
    assert isinstance(g, dict) and list(g) == list(params)
    # closed form backprop
    a1 = x @ params["w1"] + params["b1"]
    h = np.tanh(a1)
    out = h @ params["w2"] + params["b2"]
    dout = 2 * (out - t) / out.size
    dh = dout @ params["w2"].T
    da1 = dh * (1 - h ** 2)
    want = {"w1": x.T @ da1, "b1": da1.sum(0), "w2": h.T @ dout, "b2": dout.sum(0)}
    for k in params:
        assert g[k].shape == params[k].shape
        close(g[k], want[k], rtol=1e-12, atol=1e-14)


def test_mlp_dict_of_params_against_finite_differences():
    params = mlp_params(1)
    x, t = normal(4, 3, seed=9), normal(4, 2, seed=10)
    g = neuronika.grad(mlp_loss)(params, x, t)
    for k in params:
        def f(v, k=k):
            p = dict(params)
            p[k] = v
            return mlp_loss_np(p, x, t)
        close(g[k], fd_grad(f, params[k]), rtol=1e-6, atol=1e-9)


def rnn_loss(params, xs, h0):
    h = h0
    for t in range(xs.shape[0]):
        h = (xs[t].mm(params["wx"]) + h.mm(params["wh"]) + params["b"]).tanh()
    return (h * h).sum()


def rnn_loss_np(params, xs, h0):
    h = h0
    for t in range(xs.shape[0]):
        h = np.tanh(xs[t] @ params["wx"] + h @ params["wh"] + params["b"])
    return np.sum(h * h)


def test_tanh_rnn_20_steps():
    r = rng(11)
    params = {"wx": r.standard_normal((3, 5)) * 0.4, "wh": r.standard_normal((5, 5)) * 0.4,
              "b": r.standard_normal(5) * 0.1}
    xs = r.standard_normal((20, 2, 3))
    h0 = r.standard_normal((2, 5)) * 0.1
    g, gh0 = neuronika.grad(rnn_loss, argnums=(0, 2))(params, xs, h0)
    for k in params:
        def f(v, k=k):
            p = dict(params)
            p[k] = v
            return rnn_loss_np(p, xs, h0)
        close(g[k], fd_grad(f, params[k]), rtol=1e-6, atol=1e-9)
    close(gh0, fd_grad(lambda v: rnn_loss_np(params, xs, v), h0), rtol=1e-6, atol=1e-9)
    # the inputs too (through xs[t] indexing)
    gx = neuronika.grad(rnn_loss, argnums=1)(params, xs, h0)
    close(gx, fd_grad(lambda v: rnn_loss_np(params, v, h0), xs), rtol=1e-6, atol=1e-9)


def test_softmax_cross_entropy_one_hot_and_integer_indexing():
    logits = normal(6, 4, seed=12)
    labels = np.array([0, 3, 1, 1, 2, 3])
    onehot = np.eye(4)[labels]
    n = len(labels)
    want = (np.exp(log_softmax_np(logits)) - onehot) / n

    def ce_onehot(z, onehot):
        return -(z.log_softmax(axis=1) * onehot).sum() / n

    def ce_index(z, labels):
        return -z.log_softmax(axis=1)[np.arange(n), labels].mean()

    close(neuronika.grad(ce_onehot)(logits, onehot), want, rtol=1e-12, atol=1e-14)
    close(neuronika.grad(ce_index)(logits, labels), want, rtol=1e-12, atol=1e-14)
    value, _ = neuronika.value_and_grad(ce_index)(logits, labels)
    close(value, -log_softmax_np(logits)[np.arange(n), labels].mean(), rtol=1e-12)


def test_fan_out_one_input_used_many_times():
    x = normal(5, seed=13)

    def f(x):
        y = x * x               # x twice
        z = y * x + x.sin() * x - x   # x four more times
        return (z * y).sum() + x.sum()

    def f_np(x):
        y = x * x
        z = y * x + np.sin(x) * x - x
        return np.sum(z * y) + np.sum(x)

    # closed form: f = x^5 + x^3 sin x - x^3 + x  elementwise
    want = 5 * x ** 4 + 3 * x ** 2 * np.sin(x) + x ** 3 * np.cos(x) - 3 * x ** 2 + 1
    close(neuronika.grad(f)(x), want, rtol=1e-12, atol=1e-12)
    close(neuronika.grad(f)(x), fd_grad(f_np, x), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("expr,closed", [
    (lambda x: (x * x).sum(), lambda x: 2 * x),
    (lambda x: (x + x).sum(), lambda x: 2 * np.ones_like(x)),
    (lambda x: (x * x * x).sum(), lambda x: 3 * x * x),
    (lambda x: (x - x * 2 + x * x).sum(), lambda x: -1 + 2 * x),
    (lambda x: (x / (x * x + 1)).sum(), lambda x: (1 - x * x) / (x * x + 1) ** 2),
], ids=["x*x", "x+x", "x*x*x", "mixed", "quotient"])
def test_fan_out_closed_forms(expr, closed):
    x = normal(4, seed=14)
    want = closed(x)
    close(neuronika.grad(expr)(x), want, rtol=1e-12, atol=1e-14)


def test_gradient_does_not_modify_the_argument():
    x = np.array([1.0, 2.0, 3.0])
    keep = x.copy()
    f = neuronika.grad(lambda x: (x * x).sum())
    g1 = f(x)
    np.testing.assert_array_equal(x, keep)
    g2 = f(x)
    np.testing.assert_array_equal(x, keep)
    close(g1, 2 * keep)
    close(g2, 2 * keep)


def test_gradient_does_not_modify_arguments_of_sum_of_arguments():
    a, b = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    ka, kb = a.copy(), b.copy()
    g = neuronika.grad(lambda a, b: ((a + b) * (a + b)).sum() + (a * b).sum(), argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(a, ka)
    np.testing.assert_array_equal(b, kb)
    close(g[0], 2 * (ka + kb) + kb)
    close(g[1], 2 * (ka + kb) + ka)


def test_returned_gradients_do_not_alias_the_arguments():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    keep_x, keep_y = x.copy(), y.copy()
    gx, gy = neuronika.grad(lambda x, y: (x * y).sum(), argnums=(0, 1))(x, y)
    close(gx, keep_y)
    close(gy, keep_x)
    for g in (gx, gy):
        assert not np.shares_memory(g, x) and not np.shares_memory(g, y)
    gx += 100.0                       # writing into a gradient must not change an argument
    np.testing.assert_array_equal(y, keep_y)
    # the same array passed twice: two gradients, neither of them the argument
    g1, g2 = neuronika.grad(lambda a, b: (a * b).sum(), argnums=(0, 1))(x, x)
    assert g1 is not g2 and g1 is not x and g2 is not x
    close(g1, keep_x)
    close(g2, keep_x)


def test_returned_gradients_are_independent_arrays():
    # each call gives fresh arrays: a later call does not overwrite an earlier result
    f = neuronika.grad(lambda x: (x * 3.0).sum())
    g1 = f(np.ones(3))
    g1_copy = g1.copy()
    f(np.ones(3) * 5)
    np.testing.assert_array_equal(g1, g1_copy)


def test_broadcasting():
    x = normal(4, 3, seed=15)
    b = normal(3, seed=16)
    c = normal(4, 1, seed=17)
    s = np.float64(0.7)

    def f(x, b, c):
        return ((x + b) * c - b * s).tanh().sum()

    def f_np(x, b, c):
        return np.tanh((x + b) * c - b * s).sum()

    gx, gb, gc = neuronika.grad(f, argnums=(0, 1, 2))(x, b, c)
    assert (gx.shape, gb.shape, gc.shape) == ((4, 3), (3,), (4, 1))
    for got, want in zip((gx, gb, gc), fd_grads(f_np, (x, b, c), (0, 1, 2))):
        close(got, want, rtol=1e-6, atol=1e-9)
    # closed form
    u = 1 - np.tanh((x + b) * c - b * s) ** 2
    close(gx, u * c, rtol=1e-12)
    close(gb, (u * (c - s)).sum(0), rtol=1e-12)
    close(gc, (u * (x + b)).sum(1, keepdims=True), rtol=1e-12)


def test_broadcast_scalar_array_argument():
    x = normal(3, 2, seed=18)
    a = np.array(1.5)
    ga = neuronika.grad(lambda a, x: (a * x).sum())(a, x)
    assert ga.shape == ()
    close(ga, x.sum(), rtol=1e-12)


def test_indexing_slices_and_repeated_integer_indices():
    x = normal(5, 4, seed=19)
    idx = np.array([0, 2, 2, 4, 0, 0])
    wts = normal(6, 4, seed=20)

    def f(x):
        return (x[idx] * wts).sum() + (x[1:3, ::2] ** 2).sum() + x[-1, 1] * 3.0

    def f_np(x):
        return (x[idx] * wts).sum() + (x[1:3, ::2] ** 2).sum() + x[-1, 1] * 3.0

    want = np.zeros_like(x)
    np.add.at(want, idx, wts)
    want[1:3, ::2] += 2 * x[1:3, ::2]
    want[-1, 1] += 3.0
    g = neuronika.grad(f)(x)
    close(g, want, rtol=1e-12, atol=1e-14)
    close(g, fd_grad(f_np, x), rtol=1e-6, atol=1e-8)


def test_indexing_repeated_indices_in_both_axes():
    x = normal(3, 3, seed=21)
    rows, cols = np.array([0, 0, 1, 0]), np.array([2, 2, 1, 2])
    g = neuronika.grad(lambda x: x[rows, cols].sum())(x)
    want = np.zeros((3, 3))
    want[0, 2] = 3
    want[1, 1] = 1
    close(g, want)


def test_indexing_with_integer_array_argument():
    # an integer array passed as data (not differentiated) used as an index
    x = normal(6, seed=22)
    f = neuronika.grad(lambda x, i: (x[i] ** 2).sum())
    for i in (np.array([1, 1, 1]), np.array([5, 0, 5])):
        want = np.zeros(6)
        np.add.at(want, i, 2 * x[i])
        close(f(x, i), want)


def test_boolean_mask_indexing():
    x = normal(6, seed=23)
    mask = x > 0
    g = neuronika.grad(lambda x: (x[mask] * 2.0).sum())(x)
    close(g, np.where(mask, 2.0, 0.0))


def test_nested_lists_and_tuples_of_arrays():
    a, b, c, d = normal(3, seed=24), normal(2, 3, seed=25), normal(3, seed=26), normal(1, seed=27)

    def f(tree):
        (a, [b, c]), d = tree
        return (a * b).sum() + (c * c).sum() * d.sum() + (a * c).sum()

    want = ((b.sum(0) + c, [np.broadcast_to(a, (2, 3)), 2 * c * d.sum() + a]), np.full(1, (c * c).sum()))
    tree = ((a, [b, c]), d)
    g = neuronika.grad(f)(tree)
    assert isinstance(g, tuple) and len(g) == 2
    assert isinstance(g[0], tuple) and isinstance(g[0][1], list)
    (ga, [gb, gc]), gd = g
    close(ga, want[0][0])
    close(gb, want[0][1][0])
    close(gc, want[0][1][1])
    close(gd, want[1])


def test_dict_inside_list_inside_dict():
    params = {"layers": [{"w": normal(2, 2, seed=28)}, {"w": normal(2, 2, seed=29)}], "scale": normal(2, seed=30)}
    x = normal(3, 2, seed=31)

    def f(p, x):
        h = x
        for layer in p["layers"]:
            h = h.mm(layer["w"]).tanh()
        return (h * p["scale"]).sum()

    def f_np(p, x):
        h = x
        for layer in p["layers"]:
            h = np.tanh(h @ layer["w"])
        return np.sum(h * p["scale"])

    g = neuronika.grad(f)(params, x)
    assert set(g) == {"layers", "scale"} and len(g["layers"]) == 2
    for i in range(2):
        def fi(v, i=i):
            p = {"layers": [dict(l) for l in params["layers"]], "scale": params["scale"]}
            p["layers"][i]["w"] = v
            return f_np(p, x)
        close(g["layers"][i]["w"], fd_grad(fi, params["layers"][i]["w"]), rtol=1e-6, atol=1e-9)
    close(g["scale"], fd_grad(lambda v: f_np({"layers": params["layers"], "scale": v}, x), params["scale"]),
          rtol=1e-6, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=1, max_size=6))
def test_property_polynomial_gradient(values):
    x = np.array(values)
    g = neuronika.grad(lambda x: (x * x * x - x * 2.0).sum() + (x * x).sum())(x)
    close(g, 3 * x * x - 2 + 2 * x, rtol=1e-12, atol=1e-12)


# ---- 2. conventions ---------------------------------------------------------------------------------

def three(x, y, z):
    return (x * 2.0).sum() + (y * y).sum() + (z * x.sum()).sum()


def three_args():
    x, y, z = normal(2, seed=1), normal(3, seed=2), normal(4, seed=3)
    # d/dx, d/dy, d/dz
    return (x, y, z), (np.full(2, 2 + z.sum()), 2 * y, np.full(4, x.sum()))


def test_argnums_int_and_default():
    args, want = three_args()
    close(neuronika.grad(three)(*fresh(args)), want[0])
    close(neuronika.grad(three, argnums=1)(*fresh(args)), want[1])
    close(neuronika.grad(three, argnums=2)(*fresh(args)), want[2])


def test_argnums_tuple_keeps_the_order_given():
    args, want = three_args()
    g = neuronika.grad(three, argnums=(2, 0))(*fresh(args))
    assert isinstance(g, tuple) and len(g) == 2
    close(g[0], want[2])
    close(g[1], want[0])
    g = neuronika.grad(three, argnums=(0, 1, 2))(*fresh(args))
    for got, w in zip(g, want):
        close(got, w)
    g = neuronika.grad(three, argnums=(1, 2, 0))(*fresh(args))
    for got, w in zip(g, (want[1], want[2], want[0])):
        close(got, w)
    # a one-element tuple still returns a tuple
    g = neuronika.grad(three, argnums=(1,))(*fresh(args))
    assert isinstance(g, tuple) and len(g) == 1
    close(g[0], want[1])


def test_negative_argnums():
    args, want = three_args()
    close(neuronika.grad(three, argnums=-1)(*fresh(args)), want[2])
    g = neuronika.grad(three, argnums=(-2, 0))(*fresh(args))
    close(g[0], want[1])
    close(g[1], want[0])
    g = neuronika.grad(three, argnums=(-3, -1))(*fresh(args))
    close(g[0], want[0])
    close(g[1], want[2])


def test_has_aux_grad():
    x = normal(3, seed=4)

    def f(x):
        loss = (x * x).sum()
        return loss, {"pred": x * 2.0, "loss": loss, "step": 7, "name": "mse", "none": None}

    x0 = x.copy()
    g, aux = neuronika.grad(f, has_aux=True)(x)
    x = x0
    close(g, 2 * x)
    assert set(aux) == {"pred", "loss", "step", "name", "none"}
    assert isinstance(aux["pred"], np.ndarray)
    close(aux["pred"], 2 * x)
    assert isinstance(aux["loss"], np.ndarray) and aux["loss"].shape == ()
    close(aux["loss"], np.sum(x * x))
    assert aux["step"] == 7 and aux["name"] == "mse" and aux["none"] is None


def test_has_aux_value_and_grad():
    x = normal(3, seed=5)

    def f(x):
        return (x.exp()).sum(), (x.tanh(), [3, "k"])

    (value, aux), g = neuronika.value_and_grad(f, has_aux=True)(x)
    close(value, np.exp(x).sum())
    close(g, np.exp(x))
    assert isinstance(aux, tuple) and isinstance(aux[0], np.ndarray)
    close(aux[0], np.tanh(x))
    assert aux[1] == [3, "k"]
    # a second call (cached) returns the new aux values
    x2 = x + 1
    (value, aux), g = neuronika.value_and_grad(f, has_aux=True)(x2)
    close(value, np.exp(x2).sum())
    close(aux[0], np.tanh(x2))


@pytest.mark.parametrize("aux", ["tag", 3, None, {"epoch": 2, "name": "a"}, (1, "b")],
                         ids=["str", "int", "None", "dict", "tuple"])
def test_has_aux_without_variables(aux):
    # aux holding no variable at all is returned as is
    x = np.array([1.0, 2.0])
    f = lambda x: ((x * 3.0).sum(), aux)
    g, got = neuronika.grad(f, has_aux=True)(x)
    close(g, [3.0, 3.0])
    assert got == aux
    (value, got), g = neuronika.value_and_grad(f, has_aux=True)(x)
    close(value, 9.0)
    close(g, [3.0, 3.0])
    assert got == aux


def test_has_aux_values_update_on_cached_calls():
    f = neuronika.grad(lambda x: ((x * x).sum(), x * 3.0), has_aux=True)
    for k in range(3):
        x = normal(4, seed=k)
        g, aux = f(x.copy())
        close(g, 2 * x)
        close(aux, 3 * x)


def test_value_and_grad_value():
    x = normal(3, 2, seed=6)
    value, g = neuronika.value_and_grad(lambda x: (x.sin() * x).sum())(x)
    assert np.ndim(value) == 0
    close(value, np.sum(np.sin(x) * x), rtol=1e-12)
    close(g, np.sin(x) + x * np.cos(x), rtol=1e-12)
    value, (gx, gy) = neuronika.value_and_grad(lambda x, y: (x * y).sum(), argnums=(0, 1))(x, x + 1)
    close(value, np.sum(x * (x + 1)))
    close(gx, x + 1)
    close(gy, x)


def test_unused_argument_gets_zeros_of_its_shape():
    x, y = normal(3, seed=7), normal(2, 5, seed=8).astype(np.float32)
    gx, gy = neuronika.grad(lambda x, y: (x * x).sum(), argnums=(0, 1))(x.copy(), y)
    close(gx, 2 * x)
    assert gy.shape == (2, 5) and gy.dtype == np.float32
    assert not gy.any()
    g = neuronika.grad(lambda x, y: (x * x).sum(), argnums=1)(x, y)
    assert g.shape == (2, 5) and not g.any()


def test_function_independent_of_all_inputs():
    g = neuronika.grad(lambda x: neuronika.from_ndarray(np.ones(2)).sum())(normal(3))
    assert g.shape == (3,) and not g.any()


def test_unused_leaf_inside_a_dict_gets_zeros():
    params = {"used": normal(3), "unused": normal(2, 2)}
    g = neuronika.grad(lambda p: (p["used"] ** 2).sum())(params)
    close(g["used"], 2 * params["used"])
    assert g["unused"].shape == (2, 2) and not g["unused"].any()


def test_python_float_argument():
    g = neuronika.grad(lambda x: x * x * 3.0)(2.0)
    assert np.ndim(g) == 0
    close(g, 12.0)
    g = neuronika.grad(lambda a, x: (x * a).sum(), argnums=(0, 1))(0.5, np.array([1.0, 2.0]))
    assert np.ndim(g[0]) == 0
    close(g[0], 3.0)
    close(g[1], [0.5, 0.5])


def test_python_float_argument_value_changes_without_retracing():
    f = neuronika.grad(lambda w, lr: (w * w * lr).sum())
    w = normal(3)
    f(w, 0.5)
    hits, misses = info()
    close(f(w, 0.25), 0.5 * w)
    close(f(w, 2.0), 4 * w)
    assert info() == (hits + 2, misses)


@pytest.mark.parametrize("fn", [
    lambda w, lr: (w * lr).sum(),
    lambda w, lr: (w * w * lr).sum(),
    lambda w, lr: (w / lr).sum(),
    lambda w, lr: ((w + lr) * w).sum(),
    lambda w, lr: (w - lr).tanh().sum(),
], ids=["w*lr", "w*w*lr", "w/lr", "(w+lr)*w", "tanh(w-lr)"])
def test_float32_stays_float32_with_a_python_float_argument(fn):
    w = normal(3).astype(np.float32)
    g = neuronika.grad(fn)(w, 0.5)
    assert g.dtype == np.float32, fn
    value, g = neuronika.value_and_grad(fn)(w, 0.5)
    assert g.dtype == np.float32
    assert np.asarray(value).dtype == np.float32


def test_float32_stays_float32_with_python_float_literals():
    w = normal(3).astype(np.float32)
    g = neuronika.grad(lambda w: (w * 0.5 + 1.0).tanh().sum())(w)
    assert g.dtype == np.float32
    close(g, 0.5 * (1 - np.tanh(w.astype(np.float64) * 0.5 + 1) ** 2), rtol=1e-5, atol=1e-6)


def test_float64_stays_float64():
    w = normal(3)
    g = neuronika.grad(lambda w, lr: (w * lr).sum())(w, 0.5)
    assert g.dtype == np.float64
    value, g = neuronika.value_and_grad(lambda w: (w.tanh() * w).sum())(w)
    assert g.dtype == np.float64 and np.asarray(value).dtype == np.float64
    w32 = w.astype(np.float32)
    g32 = neuronika.grad(lambda w: (w.tanh() * w).sum())(w32)
    assert g32.dtype == np.float32


def test_decorator_forms():
    @neuronika.grad
    def f(x):
        return (x ** 3).sum()

    close(f(np.array([1.0, 2.0])), [3.0, 12.0])
    assert f.__name__ == "f"

    @neuronika.grad(argnums=1)
    def g(x, y):
        return (x * y).sum()

    close(g(np.array([1.0, 2.0]), np.array([3.0, 4.0])), [1.0, 2.0])

    @neuronika.value_and_grad(has_aux=True)
    def h(x):
        return (x * x).sum(), "aux"

    (value, aux), gr = h(np.array([3.0]))
    close(value, 9.0)
    assert aux == "aux"
    close(gr, [6.0])


def test_kwargs_are_data_or_static_like_positionals():
    def f(x, *, scale, power, offset=None):
        y = (x * scale) ** power
        if offset is not None:
            y = y + offset
        return y.sum()

    x = np.array([1.0, 2.0])
    f_grad = neuronika.grad(f)
    close(f_grad(x, scale=np.array([2.0, 3.0]), power=2), 2 * x * np.array([4.0, 9.0]))
    # array kwarg is data: new values, same trace
    _, misses = info()
    close(f_grad(x, scale=np.array([1.0, 1.0]), power=2), 2 * x)
    assert info()[1] == misses
    # an int kwarg is data too: a new value, the same trace
    close(f_grad(x, scale=np.array([1.0, 1.0]), power=3), 3 * x * x)
    assert info()[1] == misses
    # float kwarg is data: a new kind of argument traces once, a new value does not
    close(f_grad(x, scale=2.0, power=2), 8 * x)
    assert info()[1] == misses + 1
    close(f_grad(x, scale=3.0, power=2), 18 * x)
    assert info()[1] == misses + 1
    close(f_grad(x, scale=3.0, power=2, offset=np.array([5.0, 5.0])), 18 * x)
    assert info()[1] == misses + 2
    # marked static by name: a new value traces again
    s_grad = neuronika.grad(f, static_argnames="power")
    close(s_grad(x, scale=np.array([1.0, 1.0]), power=2), 2 * x)
    close(s_grad(x, scale=np.array([1.0, 1.0]), power=3), 3 * x * x)
    assert info()[1] == misses + 4


def test_positional_float_data_and_keyword_data_not_differentiated():
    # argnums only counts positionals; a keyword argument never gets a gradient
    g = neuronika.grad(lambda x, y=None: (x * y).sum())(np.array([1.0, 2.0]), y=np.array([3.0, 4.0]))
    close(g, [3.0, 4.0])


def test_var_argument():
    # a Var argument may come back as an array or (for higher order) as a variable: same values
    x = neuronika.from_ndarray(np.array([1.0, 2.0]))
    g = neuronika.grad(lambda x: (x * x).sum())(x)
    close(getattr(g, "data", g), [2.0, 4.0])
    np.testing.assert_array_equal(x.data, [1.0, 2.0])


# ---- 3. vjp and jacobian --------------------------------------------------------------------------

def test_vjp_value_and_pullback():
    A = normal(3, 4, seed=40)
    x = normal(4, seed=41)
    value, pullback = neuronika.vjp(lambda A, x: A.mv(x).tanh(), A, x)
    y = np.tanh(A @ x)
    close(value, y, rtol=1e-12)
    for seed in range(3):
        ct = normal(3, seed=seed)
        grads = pullback(ct)
        assert isinstance(grads, tuple) and len(grads) == 2
        u = ct * (1 - y ** 2)
        close(grads[0], np.outer(u, x), rtol=1e-12, atol=1e-14)
        close(grads[1], A.T @ u, rtol=1e-12, atol=1e-14)


def test_vjp_single_argument_and_matrix_output():
    x = normal(2, 3, seed=42)
    value, pullback = neuronika.vjp(lambda x: x * x, x)
    close(value, x * x)
    ct = normal(2, 3, seed=43)
    (g,) = pullback(ct)
    close(g, 2 * x * ct)


def test_vjp_pullback_does_not_alias_the_cotangent():
    x = normal(3, seed=44)
    _, pullback = neuronika.vjp(lambda x: x + 0.0, x)
    ct = np.ones(3)
    (g,) = pullback(ct)
    close(g, np.ones(3))
    g += 1
    np.testing.assert_array_equal(ct, np.ones(3))


def test_vjp_value_for_second_call_with_new_values():
    f = lambda x: x.exp() * 2.0
    for seed in range(2):
        x = normal(3, seed=seed)
        value, pullback = neuronika.vjp(f, x)
        close(value, 2 * np.exp(x))
        close(pullback(np.ones(3))[0], 2 * np.exp(x))


def test_vjp_pullback_can_be_called_after_another_vjp():
    f = lambda x: x.sin()
    x1, x2 = normal(3, seed=1), normal(3, seed=2)
    _, pb1 = neuronika.vjp(f, x1)
    _, pb2 = neuronika.vjp(f, x2)
    close(pb1(np.ones(3))[0], np.cos(x1))
    close(pb2(np.ones(3))[0], np.cos(x2))


def test_vjp_scalar_output_and_unused_argument():
    x, y = normal(3, seed=45), normal(2, seed=46)
    value, pullback = neuronika.vjp(lambda x, y: (x * x).sum(), x, y)
    close(value, np.sum(x * x))
    gx, gy = pullback(np.array(2.0))
    close(gx, 4 * x)
    assert gy.shape == (2,) and not gy.any()


@pytest.mark.parametrize("bad", [np.ones(4), np.ones((3, 1)), np.ones(()), np.ones((1, 3))])
def test_vjp_cotangent_of_the_wrong_shape_raises(bad):
    value, pullback = neuronika.vjp(lambda x: x * 2.0, np.ones(3))
    with pytest.raises(GradientError, match=r"cotangent.*shape"):
        pullback(bad)


def test_jacobian_vector_to_vector():
    def f(x):
        return (x * x.sum()).tanh() + x.sin()

    def f_np(x):
        return np.tanh(x * x.sum()) + np.sin(x)

    x = normal(4, seed=47) * 0.5
    J = neuronika.jacobian(f)(x)
    assert J.shape == (4, 4)
    close(J, numerical_jacobian(f_np, x), rtol=1e-6, atol=1e-9)
    # closed form for the elementwise one
    close(neuronika.jacobian(lambda x: x * x)(x), np.diag(2 * x))


def test_jacobian_matrix_to_vector():
    v = normal(3, seed=48)

    def f(M):
        return M.mv(v).tanh()

    M = normal(2, 3, seed=49)
    J = neuronika.jacobian(f)(M)
    assert J.shape == (2, 2, 3)
    close(J, numerical_jacobian(lambda M: np.tanh(M @ v), M), rtol=1e-6, atol=1e-9)
    # closed form: dy_i/dM_jk = delta_ij (1 - y_i^2) v_k
    y = np.tanh(M @ v)
    want = np.einsum("ij,k->ijk", np.diag(1 - y ** 2), v)
    close(J, want, rtol=1e-12, atol=1e-14)


def test_jacobian_argnums_tuple():
    def f(M, v):
        return M.mv(v).sin()

    M, v = normal(2, 3, seed=50), normal(3, seed=51)
    JM, Jv = neuronika.jacobian(f, argnums=(0, 1))(M, v)
    assert JM.shape == (2, 2, 3) and Jv.shape == (2, 3)
    close(JM, numerical_jacobian(lambda M: np.sin(M @ v), M), rtol=1e-6, atol=1e-9)
    close(Jv, numerical_jacobian(lambda v: np.sin(M @ v), v), rtol=1e-6, atol=1e-9)
    Jv2, JM2 = neuronika.jacobian(f, argnums=(1, 0))(M, v)
    close(Jv2, Jv)
    close(JM2, JM)
    close(neuronika.jacobian(f, argnums=1)(M, v), Jv)


def test_jacobian_keeps_float32():
    x = normal(3, seed=54).astype(np.float32)
    J = neuronika.jacobian(lambda x: x.tanh() * 2.0)(x)
    assert J.dtype == np.float32 and J.shape == (3, 3)
    close(J, np.diag(2 * (1 - np.tanh(x.astype(np.float64)) ** 2)), rtol=1e-5, atol=1e-6)


def test_jacobian_of_scalar_output():
    x = normal(3, seed=52)
    J = neuronika.jacobian(lambda x: (x * x).sum())(x)
    assert J.shape == (3,)
    close(J, 2 * x)


def test_jacobian_matrix_output():
    x = normal(3, seed=53)
    J = neuronika.jacobian(lambda x: x.reshape(3, 1) * x.reshape(1, 3))(x)
    assert J.shape == (3, 3, 3)
    close(J, numerical_jacobian(lambda x: np.outer(x, x), x), rtol=1e-6, atol=1e-9)


def test_vjp_of_a_tuple_list_dict_result():
    """A structured result: the value and the cotangent have its structure; each part's
    cotangent reaches the argument (a stacked constant would give zeros)."""
    x = normal(3, seed=60)
    value, pullback = neuronika.vjp(lambda x: (x * 2.0, {"s": x.sum(), "l": [x.sin()]}), x)
    assert isinstance(value, tuple) and isinstance(value[1], dict) and isinstance(value[1]["l"], list)
    close(value[0], 2 * x)
    assert value[1]["s"].shape == () and value[1]["s"] == pytest.approx(x.sum())
    close(value[1]["l"][0], np.sin(x))
    a, c = normal(3, seed=61), normal(3, seed=62)
    (g,) = pullback((a, {"s": np.array(3.0), "l": [c]}))
    close(g, 2 * a + 3.0 + np.cos(x) * c, rtol=1e-12)


def test_vjp_of_a_structured_result_keeps_each_parts_dtype():
    x = normal(2, seed=63)
    value, pullback = neuronika.vjp(lambda x: [x.astype(np.float32), x * 1j], x)
    assert value[0].dtype == np.float32 and value[1].dtype == np.complex128
    (g,) = pullback([np.ones(2, np.float32), np.full(2, 1j)])
    close(g, np.ones(2) - 1.0)       # Re(1j * 1j) = -1 from the second part
    with pytest.raises(GradientError, match="complex cotangent"):
        pullback([np.full(2, 1j), np.ones(2)])


def test_vjp_of_a_named_tuple_result():
    """eigh's EighResult comes back as an EighResult; a plain tuple serves as its cotangent.
    d sum(eigenvalues) / dA = I (the trace)."""
    import neuronika.numpy as nnp
    a = np.array([[2.0, 1.0], [1.0, 3.0]])
    value, pullback = neuronika.vjp(nnp.linalg.eigh, a)
    assert type(value).__name__ == "EighResult"
    close(value.eigenvalues, np.linalg.eigvalsh(a), rtol=1e-12)
    (g,) = pullback((np.ones(2), np.zeros((2, 2))))
    close(g, np.eye(2), atol=1e-12)


@pytest.mark.parametrize("bad", [(np.ones(3),), [np.ones(3), np.ones(3)], (np.ones(2), np.ones(3))])
def test_vjp_cotangent_of_the_wrong_structure_raises(bad):
    _, pullback = neuronika.vjp(lambda x: (x, x * 2.0), np.ones(3))
    with pytest.raises(GradientError, match="cotangent"):
        pullback(bad)


def test_vjp_of_a_structured_result_differentiates_again():
    """grad of a function that calls vjp on a tuple-valued function (the pullback built as
    a graph): d/dx sum(vjp(f, x)(x, 1)) for f(x) = (x ** 2, sum(x ** 3))."""
    def f(x):
        return x ** 2, (x ** 3).sum()

    def outer(x):
        _, pullback = neuronika.vjp(f, x)
        (g,) = pullback((x, np.array(1.0)))
        return g.sum()                       # sum(2 x * x + 3 x ** 2) = 5 sum(x ** 2)

    x = normal(3, seed=64)
    close(neuronika.grad(outer)(x), 10 * x, rtol=1e-12)


def test_jacobian_of_a_structured_result_is_refused():
    with pytest.raises(TypeError, match="jacobian: the function returned a tuple"):
        neuronika.jacobian(lambda x: (x, x))(np.ones(2))


def test_jacobian_of_jacobian():
    """jacobian inside a trace: the rows are variables, stacked as a graph."""
    def f(x):
        return x * x.sum()                   # J_ij = delta_ij sum(x) + x_i

    x = normal(3, seed=65)
    H = neuronika.jacobian(neuronika.jacobian(f))(x)
    assert H.shape == (3, 3, 3)
    eye = np.eye(3)
    # d J_ij / d x_k = delta_ij + delta_ik
    close(H, eye[:, :, None] + eye[:, None, :], atol=1e-12)
    close(neuronika.grad(lambda x: neuronika.jacobian(f)(x).sum())(x), np.full(3, 6.0), rtol=1e-12)


def test_nested_grad_is_with_respect_to_the_inner_argument_only():
    """No perturbation confusion: the inner gradient is with respect to its own argument, not
    to other uses of the same variable (read from outside, or passed twice)."""
    inner = lambda x: neuronika.grad(lambda y: y * x)(x)           # d/dy (y x) = x
    assert neuronika.grad(inner)(3.0) == pytest.approx(1.0)
    twice = lambda x: neuronika.grad(lambda p: p[0] * p[1])((x, x))   # (x, x)
    assert neuronika.grad(lambda x: twice(x)[0] + 10 * twice(x)[1])(2.0) == pytest.approx(11.0)
    pair = lambda x: neuronika.vjp(lambda a, b: a * b, x, x)[1](np.ones(2))
    close(neuronika.grad(lambda x: pair(x)[0].sum())(np.ones(2)), np.ones(2))


@pytest.mark.parametrize("fn", [lambda x: x.sum() > 0, lambda x: True, lambda x: x.argmax(), lambda x: 1])
def test_grad_of_a_boolean_or_integer_result_raises(fn):
    with pytest.raises(TypeError, match="no gradient"):
        neuronika.grad(fn)(np.ones(2))


def test_grad_of_a_list_holding_a_variable_stacks_it():
    g = neuronika.grad(lambda x: [(x * x).sum()])(np.array([1.0, 2.0]))
    close(g, [2.0, 4.0])


def test_a_new_static_argument_that_builds_the_same_graph_reuses_the_program(monkeypatch):
    """An int read as a Python number (``float(i)``) traces again for each new value, but the
    graph is the same, so the compiled program is reused; an int used as a value (an
    exponent) is one trace and one program; a static argument that changes the graph gets
    its own program."""
    from neuronika import tracing
    built = []
    real_build = tracing.codegen.build
    monkeypatch.setattr(tracing.codegen, "build", lambda *a, **k: built.append(1) or real_build(*a, **k))
    f = neuronika.grad(lambda x, i: (x * x * 3.25).sum() + (x * float(i)).sum())
    x = normal(3, seed=66)
    for i in range(5):
        close(f(x, i), 6.5 * x + i)            # the constant is the new one, not the first's
    assert len(built) == 1
    g = neuronika.grad(lambda x, k: (x ** k * 1.75).sum())
    for k in (2, 3, 2):
        close(g(x, k), 1.75 * k * x ** (k - 1), rtol=1e-12)
    assert len(built) == 2
    h = neuronika.grad(lambda x, k: (x ** k * 1.75).sum(), static_argnums=1)
    for k in (2, 3, 2, 3):                 # each compiled when it repeats (the first run interprets)
        close(h(x, k), 1.75 * k * x ** (k - 1), rtol=1e-12)
    assert len(built) == 4


# ---- 4. stop_gradient and custom_vjp --------------------------------------------------------------

def test_stop_gradient_blocks_the_gradient():
    x = normal(3, seed=60)
    g = neuronika.grad(lambda x: (x * neuronika.stop_gradient(x)).sum())(x)
    close(g, x)
    g = neuronika.grad(lambda x: neuronika.stop_gradient(x * x).sum() + x.sum())(x)
    close(g, np.ones(3))
    g = neuronika.grad(lambda x: neuronika.stop_gradient(x).tanh().sum())(x)
    assert g.shape == (3,) and not g.any()


def test_stop_gradient_value_is_unchanged():
    x = normal(3, seed=61)
    value, g = neuronika.value_and_grad(lambda x: (neuronika.stop_gradient(x) * 2.0 + x).sum())(x)
    close(value, 3 * x.sum())
    close(g, np.ones(3))


@neuronika.custom_vjp
def log1pexp(x):
    return np.logaddexp(0, x)


def _log1pexp_fwd(x):
    return np.logaddexp(0, x), x


def _log1pexp_bwd(x, g):
    return (g * sigmoid_np(x),)


log1pexp.defvjp(_log1pexp_fwd, _log1pexp_bwd)


def test_custom_vjp_is_exact_at_extremes():
    x = np.array([1000.0, -1000.0, 0.0])
    with np.errstate(over="ignore"):
        g = neuronika.grad(lambda x: log1pexp(x).sum())(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g, [1.0, 0.0, 0.5])
    value, _ = neuronika.value_and_grad(lambda x: log1pexp(x).sum())(np.array([1000.0]))
    close(value, 1000.0)


def test_custom_vjp_matches_finite_differences_elsewhere():
    x = normal(6, seed=62) * 3

    def f(x):
        return (log1pexp(x) * x).sum()

    g = neuronika.grad(f)(x)
    close(g, fd_grad(lambda x: np.sum(np.logaddexp(0, x) * x), x), rtol=1e-6, atol=1e-9)
    close(g, np.logaddexp(0, x) + x * sigmoid_np(x), rtol=1e-12)


def test_custom_vjp_composed_and_in_vjp():
    x = normal(4, seed=63)
    value, pullback = neuronika.vjp(lambda x: log1pexp(x * 2.0), x)
    close(value, np.logaddexp(0, 2 * x))
    ct = normal(4, seed=64)
    close(pullback(ct)[0], 2 * ct * sigmoid_np(2 * x), rtol=1e-12)


def test_custom_vjp_on_plain_arrays_is_the_plain_function():
    x = np.array([-2.0, 0.0, 3.0])
    out = log1pexp(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.logaddexp(0, x))

    @neuronika.custom_vjp
    def nodef(x):
        return x * 2

    np.testing.assert_array_equal(nodef(x), x * 2)


def test_custom_vjp_before_defvjp_raises_on_variables():
    @neuronika.custom_vjp
    def undefined(x):
        return np.sin(x)

    with pytest.raises(GradientError, match="defvjp"):
        neuronika.grad(lambda x: undefined(x).sum())(np.ones(3))


def test_custom_vjp_two_arguments():
    @neuronika.custom_vjp
    def mul(a, b):
        return a * b

    mul.defvjp(lambda a, b: (a * b, (a, b)), lambda r, g: (g * r[1], g * r[0]))
    a, b = normal(3, seed=65), normal(3, seed=66)
    ga, gb = neuronika.grad(lambda a, b: mul(a, b).sin().sum(), argnums=(0, 1))(a, b)
    close(ga, np.cos(a * b) * b)
    close(gb, np.cos(a * b) * a)


def test_custom_vjp_on_a_lambda():
    double = neuronika.custom_vjp(lambda x: x * 2)
    double.defvjp(lambda x: (x * 2, None), lambda r, g: (2 * g,))
    x = normal(3, seed=67)
    close(neuronika.grad(lambda x: (double(x) * x).sum())(x), 4 * x)
    scale = neuronika.custom_vjp(lambda x: x * 3)
    scale.defvjp(lambda x: (x * 3, None), lambda r, g: 3 * g)          # one gradient, no tuple
    value, g = neuronika.value_and_grad(lambda x: scale(x).sum())(x)
    close(value, 3 * x.sum())
    close(g, np.full(3, 3.0))


@pytest.mark.parametrize("filename", ["<ipython-input-7-0c1d2e3f>", "<string>", "/tmp/cell.py"])
def test_custom_vjp_on_functions_defined_by_exec(filename):
    """As in a notebook cell: the functions' source cannot be read back."""
    source = (
        "@neuronika.custom_vjp\n"
        "def cube(x):\n"
        "    return x ** 3\n"
        "def cube_fwd(x):\n"
        "    return x ** 3, x\n"
        "def cube_bwd(x, g):\n"
        "    return (3 * x * x * g,)\n"
        "cube.defvjp(cube_fwd, cube_bwd)\n"
        "step = neuronika.custom_vjp(lambda x: -x)\n"
        "step.defvjp(lambda x: (-x, None), lambda r, g: (-g,))\n")
    namespace = {"neuronika": neuronika}
    exec(compile(source, filename, "exec"), namespace)
    cube, step = namespace["cube"], namespace["step"]
    x = normal(4, seed=68)
    close(neuronika.grad(lambda x: (cube(x) + step(x)).sum())(x), 3 * x * x - 1)
    _, pullback = neuronika.vjp(lambda x: cube(step(x)), x)
    close(pullback(np.ones(4))[0], -3 * x * x)
    v = neuronika.from_ndarray(x.copy()).requires_grad()
    cube(v).sum().backward()
    close(v.grad, 3 * x * x)


def test_custom_vjp_on_a_partial():
    import functools

    def power(x, k):
        return x ** k

    square = neuronika.custom_vjp(functools.partial(power, k=2))
    square.defvjp(lambda x: (x ** 2, x), lambda x, g: (2 * x * g,))
    x = normal(3, seed=69)
    close(neuronika.grad(lambda x: square(x).sum())(x), 2 * x)


def _mul_with(bwd):
    @neuronika.custom_vjp
    def scaled_product(a, b):
        return a * b

    scaled_product.defvjp(lambda a, b: (a * b, (a, b)), bwd)
    return scaled_product


@pytest.mark.parametrize("bwd, argument, shapes", [
    (lambda r, g: (g * r[1], np.ones(5)), "1 ('b')", ("(5,)", "(3,)")),
    (lambda r, g: (np.sum(g * r[1]), g * r[0]), "0 ('a')", ("()", "(3,)")),
    (lambda r, g: ((g * r[1])[None], g * r[0]), "0 ('a')", ("(1, 3)", "(3,)")),
])
def test_custom_vjp_gradient_of_the_wrong_shape_raises(bwd, argument, shapes):
    mul = _mul_with(bwd)
    a, b = normal(3, seed=70), normal(3, seed=71)
    with pytest.raises(GradientError) as info:
        neuronika.grad(lambda a, b: mul(a, b).sum(), argnums=(0, 1))(a, b)
    message = str(info.value)
    assert "scaled_product" in message and f"argument {argument}" in message
    assert f"shape {shapes[0]}" in message and f"shape {shapes[1]}" in message


def test_custom_vjp_gradient_of_the_wrong_dtype_raises():
    mul = _mul_with(lambda r, g: (g * r[1], (g * r[0]).astype(np.float64)))
    a, b = normal(3, seed=72).astype(np.float32), normal(3, seed=73).astype(np.float32)
    wrong = r"scaled_product.*dtype float64 for argument 1 \('b'\).*dtype float32"
    with pytest.raises(GradientError, match=wrong):
        neuronika.grad(lambda a, b: mul(a, b).sum(), argnums=(0, 1))(a, b)
    complex_grad = _mul_with(lambda r, g: (g * r[1] + 0j, g * r[0]))
    with pytest.raises(GradientError, match="complex128"):
        neuronika.grad(lambda a, b: complex_grad(a, b).sum())(a.astype(np.float64), b.astype(np.float64))


def test_custom_vjp_gradient_count_and_imperative_backward_are_checked():
    too_few = _mul_with(lambda r, g: (g * r[1],))
    with pytest.raises(GradientError, match="scaled_product.*1 gradient.*argument 1 \\('b'\\)"):
        neuronika.grad(lambda a, b: too_few(a, b).sum(), argnums=1)(np.ones(2), np.ones(2))
    bad = _mul_with(lambda r, g: (np.ones(7), g * r[0]))
    a = neuronika.from_ndarray(np.ones(2)).requires_grad()
    with pytest.raises(GradientError, match="shape \\(7,\\)"):
        bad(a, np.ones(2)).sum().backward()


def test_custom_vjp_none_is_a_zero_gradient_and_numbers_take_the_dtype():
    first_only = _mul_with(lambda r, g: (g * r[1], None))
    a, b = np.array([1.0, 2.0], np.float32), np.array([3.0, 4.0], np.float32)
    ga, gb = neuronika.grad(lambda a, b: first_only(a, b).sum(), argnums=(0, 1))(a, b)
    close(ga, b)
    assert gb.dtype == np.float32 and gb.shape == (2,) and not gb.any()
    half = neuronika.custom_vjp(lambda x: x / 2)
    half.defvjp(lambda x: (x / 2, None), lambda r, g: (0.5,))         # a Python float for a 0-d input
    g = neuronika.grad(lambda x: half(x))(np.float32(3.0).reshape(()))
    assert g.dtype == np.float32 and float(g) == 0.5


# ---- 5. caching and retracing ---------------------------------------------------------------------

def test_same_shapes_one_miss_then_hits():
    f = neuronika.grad(lambda x, w: (x.mm(w)).tanh().sum(), argnums=1)
    transform.cache_clear()
    for k in range(5):
        w = normal(3, 2, seed=k)
        x = normal(4, 3, seed=k + 10)
        close(f(x, w), x.T @ (1 - np.tanh(x @ w) ** 2))
    assert info() == (4, 1)


def test_same_shapes_hit_with_dict_arguments():
    f = neuronika.grad(mlp_loss)
    x, t = normal(4, 3), normal(4, 2)
    for k in range(4):
        f(mlp_params(k), x, t)
    assert info() == (3, 1)


def test_new_shape_new_dtype_new_static_value_miss():
    f = neuronika.grad(lambda x, p: (x ** p).sum(), static_argnums=1)
    f(np.ones(3), 2)
    assert info() == (0, 1)
    f(np.ones(3) * 2, 2)
    assert info() == (1, 1)
    f(np.ones(4), 2)                       # new shape
    assert info() == (1, 2)
    f(np.ones(4, np.float32), 2)           # new dtype
    assert info() == (1, 3)
    g = f(np.full(4, 2.0), 3)              # new static value
    assert info() == (1, 4)
    close(g, np.full(4, 12.0))
    close(f(np.full(3, 3.0), 2), np.full(3, 6.0))   # back to the first: a hit
    assert info() == (2, 4)


def test_new_structure_misses():
    f = neuronika.grad(lambda p: sum(((v * v).sum() for v in p.values()), 0.0))
    f({"a": np.ones(2)})
    f({"a": np.ones(2), "b": np.ones(2)})
    f({"b": np.ones(2)})
    assert info() == (0, 3)
    g = f({"a": np.ones(2) * 3, "b": np.ones(2)})
    assert info() == (1, 3)
    close(g["a"], np.full(2, 6.0))


def test_static_string_and_bool_arguments():
    def f(x, mode, square):
        y = x * x if square else x
        return y.sum() if mode == "sum" else y.mean()

    g = neuronika.grad(f)
    x = np.array([1.0, 2.0])
    close(g(x.copy(), "sum", True), 2 * x)
    close(g(x.copy(), "mean", True), x)
    close(g(x.copy(), "mean", False), [0.5, 0.5])
    close(g(x.copy(), "sum", True), 2 * x)
    assert info() == (1, 3)


def test_argnums_is_part_of_the_identity_of_the_function():
    x, y = normal(3, seed=1), normal(3, seed=2)
    f = lambda x, y: (x * y * y).sum()
    close(neuronika.grad(f, argnums=0)(x, y), y * y)
    close(neuronika.grad(f, argnums=1)(x, y), 2 * x * y)
    close(neuronika.grad(f, argnums=(0, 1))(x, y)[1], 2 * x * y)


class NoHash:
    __hash__ = None


@pytest.mark.parametrize("static,kind", [
    ({1, 2}, "set"),
    ({"sizes": {1, 2}}, "set"),
    ((1, [2, {3}]), "set"),
    (NoHash(), "NoHash"),
    (bytearray(b"ab"), "bytearray"),
], ids=["set", "set-in-dict", "set-in-tuple", "unhashable-object", "bytearray"])
def test_unhashable_static_argument_raises_type_error(static, kind):
    f = neuronika.grad(lambda x, s: (x * 3.0).sum())
    with pytest.raises(TypeError) as error:
        f(np.ones(2), static)
    message = str(error.value)
    assert "argument 1" in message          # names the argument
    assert kind in message                  # and what it is
    assert "hashable" in message
    assert "tuple" in message               # says how to fix it


def test_unhashable_static_argument_message_names_keyword_and_key():
    f = neuronika.grad(lambda x, cfg: (x * 3.0).sum())
    with pytest.raises(TypeError, match=r"argument 'cfg'\['sizes'\] is a set"):
        f(np.ones(2), cfg={"sizes": {1, 2}})


def test_lists_and_dicts_of_ints_are_static_structure():
    # containers are walked: ints inside them are static (hashable) leaves of the signature
    def f(x, cfg):
        y = x
        for p in cfg["powers"]:
            y = y * x ** p
        return y.sum()

    g = neuronika.grad(f)
    x = np.array([1.5, 0.5])
    close(g(x, {"powers": [1, 2]}), 4 * x ** 3)
    _, misses = info()
    close(g(x, {"powers": [1, 2]}), 4 * x ** 3)
    assert info()[1] == misses              # same static value: a hit
    close(g(x, {"powers": [1]}), 2 * x)
    assert info()[1] > misses               # new static value: traced again


def test_list_of_arrays_is_data_not_static():
    f = neuronika.grad(lambda xs: sum((x * x).sum() for x in xs))
    g = f([np.ones(2), np.ones(3)])
    assert isinstance(g, list)
    close(g[0], np.full(2, 2.0))
    g = f([np.full(2, 2.0), np.full(3, 3.0)])
    close(g[1], np.full(3, 6.0))
    assert info() == (1, 1)


def test_cache_clear_resets_counters_and_retraces():
    f = neuronika.grad(lambda x: (x * 2.0).sum())
    f(np.ones(2))
    f(np.ones(2))
    assert info() == (1, 1)
    transform.cache_clear()
    assert info() == (0, 0)
    close(f(np.ones(2)), [2.0, 2.0])
    assert info() == (0, 1)


# ---- 6. control flow (guards) ----------------------------------------------------------------------

def branchy(x):
    if x.sum() > 0:
        return (x * x * 1.0).sum()
    else:
        return (x.sin() * 3.0).sum()


def test_if_on_a_traced_value_both_branches_alternating():
    f = neuronika.grad(branchy)
    pos, neg = np.array([1.0, 2.0, -0.5]), np.array([-1.0, 0.3, -2.0])
    close(f(pos), 2 * pos)
    close(f(neg), 3 * np.cos(neg))
    assert len(f.cache) == 2                 # one trace per branch, both kept
    hits, misses = info()
    for k in range(1, 7):
        if k % 2 == 0:
            close(f(pos + 0.1 * k), 2 * (pos + 0.1 * k))
        else:
            close(f(neg - 0.1 * k), 3 * np.cos(neg - 0.1 * k))
    assert info() == (hits + 6, misses)      # compiled code for both branches: no retrace
    assert len(f.cache) == 2


def test_if_on_a_traced_value_value_and_grad():
    f = neuronika.value_and_grad(branchy)
    xs = (np.array([1.0, 2.0]), np.array([-1.0, -2.0]), np.array([3.0, 0.0]), np.array([-0.5, 0.1]),
          np.array([2.0, 2.0]), np.array([-4.0, 0.0]))
    for k, x in enumerate(xs):
        if k == 2:
            _, misses = info()
        value, g = f(x)
        if x.sum() > 0:
            close(value, np.sum(x * x))
            close(g, 2 * x)
        else:
            close(value, np.sum(3 * np.sin(x)))
            close(g, 3 * np.cos(x))
    assert info()[1] == misses
    assert len(f.cache) == 2


def test_if_on_a_traced_value_with_argnums_and_dict():
    def f(p, x):
        s = (p["w"] * x).sum()
        if s > 0:
            return s * s
        return -s

    g = neuronika.grad(f)
    x = np.array([1.0, 2.0])
    ws = (np.array([1.0, 1.0]), np.array([-1.0, -1.0]), np.array([2.0, 0.0]), np.array([0.0, -3.0]))
    for k, w in enumerate(ws):
        if k == 2:
            hits, misses = info()
        s = np.sum(w * x)
        want = 2 * s * x if s > 0 else -x
        close(g({"w": w}, x)["w"], want)
    assert info() == (hits + 2, misses)


def test_vjp_and_jacobian_follow_branches():
    def f(x):
        if x.sum() > 0:
            return x * x
        return x.sin()

    for x in (np.array([1.0, 2.0]), np.array([-1.0, -2.0]), np.array([1.0, 3.0]), np.array([-2.0, -1.0])):
        value, pullback = neuronika.vjp(f, x)
        ct = np.array([0.5, -2.0])
        if x.sum() > 0:
            close(value, x * x)
            close(pullback(ct)[0], 2 * x * ct)
            close(neuronika.jacobian(f)(x), np.diag(2 * x))
        else:
            close(value, np.sin(x))
            close(pullback(ct)[0], np.cos(x) * ct)
            close(neuronika.jacobian(f)(x), np.diag(np.cos(x)))


def halve_until_small(x):
    while x.sum() >= 1:
        x = x * 0.5
    return (x * x).sum()


def test_data_dependent_while_loop():
    f = neuronika.grad(halve_until_small)
    for scale in (0.5, 3.0, 0.3, 10.0, 1.5, 100.0, 3.0):
        x = np.array([0.25, 0.25, 0.5]) * scale
        n = 0
        while x.sum() * 0.5 ** n >= 1:
            n += 1
        c = 0.5 ** n
        close(f(x.copy()), 2 * c * c * x, rtol=1e-12)
    # sum 8 -> 4 -> 2 -> 1 -> 0.5: four halvings, x / 16 = [0.25, 0.25]
    value, g = neuronika.value_and_grad(halve_until_small)(np.array([4.0, 4.0]))
    close(value, 0.125)
    close(g, [1 / 32, 1 / 32])


def test_while_loop_traces_stay_cached():
    f = neuronika.grad(halve_until_small)
    xs = [np.array([0.1, 0.2]), np.array([1.0, 2.0]), np.array([10.0, 20.0])]
    for x in xs:
        f(x.copy())
    assert len(f.cache) == 3                 # 0, 2 and 5 halvings: three traces
    hits, misses = info()
    for x in xs * 2:
        n = 0
        while x.sum() * 0.5 ** n >= 1:
            n += 1
        close(f(x.copy()), 2 * 0.25 ** n * x)
    assert info() == (hits + 6, misses)


def test_float_of_a_traced_value_in_a_branch():
    def f(x):
        s = float(x.sum())
        if s > 1.0:
            return (x * x).sum()
        return (x * 5.0).sum()

    g = neuronika.grad(f)
    for x in (np.array([1.0, 2.0]), np.array([0.1, 0.2]), np.array([3.0, 1.0]), np.array([-1.0, 0.5])):
        want = 2 * x if x.sum() > 1 else np.full(2, 5.0)
        close(g(x), want)


def test_float_of_a_traced_value_used_as_a_number():
    # float() makes the value a constant of the trace: its gradient is not followed,
    # but a new value must still give the right result.
    def f(x):
        s = float(x.sum())
        return (x * s).sum()

    g = neuronika.grad(f)
    for x in (np.array([1.0, 2.0]), np.array([4.0, -1.0]), np.array([1.0, 2.0])):
        close(g(x), np.full(2, x.sum()))


def test_a_value_read_straight_off_an_argument_is_guarded():
    """float(c), int(n), bool(x) on an argument itself (no op in between) are checked too."""
    f = neuronika.grad(lambda x, c: x * float(c))
    assert [f(1.0, c) for c in (3.0, 5.0, 3.0)] == [3.0, 5.0, 3.0]
    g = neuronika.grad(lambda x, n: (x * int(n)).sum())
    for n in (2, 7, 2):
        close(g(np.ones(2), np.array(n)), np.full(2, float(n)))
    h = neuronika.grad(lambda x: x * (1.0 if x else -2.0))
    assert [float(h(np.array(v))) for v in (1.0, 0.0, 3.0)] == [1.0, -2.0, 1.0]
    i = neuronika.grad(lambda x, c: (x * c.item()).sum())
    for c in (2.0, -1.0):
        close(i(np.ones(2), np.array(c)), np.full(2, c))


def test_item_of_a_traced_value_in_a_branch():
    def f(x):
        m = x.max().item()
        if m > 2:
            return (x * m).sum()
        return x.exp().sum()

    g = neuronika.grad(f)
    for x in (np.array([3.0, 1.0]), np.array([0.0, 1.0]), np.array([5.0, 1.0]), np.array([1.5, -1.0])):
        m = x.max()
        want = np.full(2, m) if m > 2 else np.exp(x)
        close(g(x), want)


def test_int_of_a_traced_value_as_a_loop_count():
    def f(x, n):
        k = int(n.sum())
        y = x
        for _ in range(k):
            y = y * x
        return y.sum()

    g = neuronika.grad(f)
    x = np.array([1.5, 0.5])
    for k in (1, 3, 2, 3):
        close(g(x.copy(), np.array([k, 0])), (k + 1) * x ** k)


def test_branch_on_a_value_not_depending_on_arguments_is_not_guarded():
    c = neuronika.from_ndarray(np.array([1.0]))

    def f(x):
        if c.sum() > 0:
            return (x * 2.0).sum()
        return x.sum()

    g = neuronika.grad(f)
    close(g(np.ones(2)), [2.0, 2.0])
    hits, misses = info()
    close(g(np.full(2, -5.0)), [2.0, 2.0])
    close(g(np.ones(2)), [2.0, 2.0])
    assert info() == (hits + 2, misses)
    assert len(g.cache) == 1


# ---- 7. closures and globals ----------------------------------------------------------------------

def test_closure_array_mutated_in_place():
    w = np.array([1.0, 2.0])

    def f(x):
        return (x * w).sum()

    g = neuronika.grad(f)
    close(g(np.ones(2)), [1.0, 2.0])
    w[:] = [5.0, -1.0]
    close(g(np.ones(2)), [5.0, -1.0])
    w *= 2
    close(g(np.ones(2)), [10.0, -2.0])


def test_closure_variable_rebound():
    w = np.array([1.0, 2.0])

    def f(x):
        return (x * w).sum()

    g = neuronika.grad(f)
    close(g(np.ones(2)), [1.0, 2.0])
    w = np.array([3.0, 4.0])   # noqa: F841 (rebinding the cell f reads)
    close(g(np.ones(2)), [3.0, 4.0])


def test_closure_float_rebound():
    scale = 2.0

    def f(x):
        return (x * scale).sum()

    g = neuronika.grad(f)
    close(g(np.ones(2)), [2.0, 2.0])
    scale = 7.0   # noqa: F841
    close(g(np.ones(2)), [7.0, 7.0])


GLOBAL_W = np.array([1.0, -1.0, 2.0])


def uses_global(x):
    return (x * GLOBAL_W).sum()


def test_global_array_rebound():
    global GLOBAL_W
    keep = GLOBAL_W
    try:
        g = neuronika.grad(uses_global)
        close(g(np.ones(3)), [1.0, -1.0, 2.0])
        GLOBAL_W = np.array([4.0, 5.0, 6.0])
        close(g(np.ones(3)), [4.0, 5.0, 6.0])
        GLOBAL_W[0] = -9.0                       # in place
        close(g(np.ones(3)), [-9.0, 5.0, 6.0])
        GLOBAL_W = keep
        close(g(np.ones(3)), [1.0, -1.0, 2.0])
    finally:
        GLOBAL_W = keep


def test_closure_rebound_through_value_and_grad():
    w = np.array([1.0, 2.0])
    f = neuronika.value_and_grad(lambda x: (x * w).sum())
    value, g = f(np.ones(2))
    close(value, 3.0)
    w = np.array([10.0, 20.0])  # noqa: F841
    value, g = f(np.ones(2))
    close(value, 30.0)
    close(g, [10.0, 20.0])


# ---- 8. errors ------------------------------------------------------------------------------------

def test_non_scalar_output_from_grad():
    with pytest.raises(GradientError, match=r"scalar.*\(3,\).*(vjp|jacobian)"):
        neuronika.grad(lambda x: x * 2.0)(np.ones(3))
    with pytest.raises(GradientError, match="vjp"):
        neuronika.value_and_grad(lambda x: x * 2.0)(np.ones((2, 2)))


def test_one_element_output_is_accepted():
    g = neuronika.grad(lambda x: x.sum(axis=0, keepdims=True) * 2.0)(np.ones(3))
    close(g, np.full(3, 2.0))


@pytest.mark.parametrize("argnums", [2, -3, (0, 5)])
def test_argnums_out_of_range(argnums):
    with pytest.raises(GradientError, match=r"argnums.*out of range"):
        neuronika.grad(lambda x, y: (x * y).sum(), argnums=argnums)(np.ones(2), np.ones(2))


@pytest.mark.parametrize("argnums", ["0", 1.0, (), [0, "a"]])
def test_argnums_of_the_wrong_type(argnums):
    with pytest.raises(TypeError, match="argnums"):
        neuronika.grad(lambda x: x.sum(), argnums=argnums)


def test_integer_array_cannot_be_differentiated():
    with pytest.raises(GradientError, match=r"argument 0.*int64.*(float|argnums)"):
        neuronika.grad(lambda x: (x * 2).sum())(np.arange(3))
    with pytest.raises(GradientError, match="argument 1"):
        neuronika.grad(lambda x, i: (x[i]).sum(), argnums=(0, 1))(np.ones(3), np.array([0, 1]))


def test_has_aux_function_not_returning_a_pair():
    with pytest.raises(GradientError, match=r"has_aux.*pair"):
        neuronika.grad(lambda x: (x * x).sum(), has_aux=True)(np.ones(2))
    with pytest.raises(GradientError, match=r"has_aux.*pair"):
        neuronika.value_and_grad(lambda x: ((x * x).sum(), 1, 2), has_aux=True)(np.ones(2))


@pytest.mark.parametrize("convert", [np.asarray, np.array], ids=["asarray", "array"])
def test_np_asarray_of_a_traced_var_raises(convert):
    with pytest.raises(GradientError, match=r"converted to a NumPy array.*neuronika"):
        neuronika.grad(lambda x: neuronika.from_ndarray(convert(x) * 2).sum())(np.ones(2))


def test_np_asarray_of_a_value_computed_from_a_traced_var_raises():
    with pytest.raises(GradientError, match="NumPy array"):
        neuronika.grad(lambda x: (x * np.asarray(x.tanh())).sum())(np.ones(2))


def test_numpy_ufunc_on_a_traced_var_is_differentiated():
    g = neuronika.grad(lambda x: np.tanh(x).sum())(np.ones(2))
    close(g, 1 - np.tanh(np.ones(2)) ** 2)


def test_np_asarray_of_a_constant_var_is_allowed():
    c = neuronika.from_ndarray(np.array([1.0, 2.0]))
    g = neuronika.grad(lambda x: (x * np.asarray(c)).sum())(np.ones(2))
    close(g, [1.0, 2.0])


def test_error_does_not_poison_the_cache():
    f = neuronika.grad(lambda x: x * 2.0)
    with pytest.raises(GradientError):
        f(np.ones(3))
    with pytest.raises(GradientError):
        f(np.ones(3))
    g = neuronika.grad(lambda x: (x * 2.0).sum())
    close(g(np.ones(3)), np.full(3, 2.0))


# ---- 9. generated source ---------------------------------------------------------------------------

def test_source_is_readable_python():
    f = neuronika.grad(lambda x, w, b: (x.mm(w) + b).tanh().sum(), argnums=(1, 2))
    x, w, b = normal(4, 3), normal(3, 2), normal(2)
    src = f.source(x, w, b)
    assert isinstance(src, str)
    assert "def program" in src
    assert "seed *" not in src and "* seed" not in src
    compile(src, "<program>", "exec")           # valid Python
    assert "tanh" in src
    # source() agrees with the gradient the program computes
    gw, gb = f(x, w, b)
    u = 1 - np.tanh(x @ w + b) ** 2
    close(gw, x.T @ u)
    close(gb, u.sum(0))


def test_source_of_mlp_loss_has_no_seed_multiplications():
    src = neuronika.grad(mlp_loss).source(mlp_params(), normal(4, 3), normal(4, 2))
    assert "def program" in src
    assert "seed *" not in src and "* seed" not in src


def test_source_does_not_change_results_or_count_as_extra_traces():
    f = neuronika.grad(lambda x: (x.exp() * x).sum())
    x = normal(3)
    f.source(x)
    _, misses = info()
    close(f(x), np.exp(x) * (1 + x))
    assert info()[1] == misses


def test_a_trace_leaves_the_collector_as_it_found_it():
    import gc
    f = neuronika.grad(lambda x: (x * x).sum())
    assert gc.isenabled()
    f(np.ones(3))
    assert gc.isenabled()
    gc.disable()
    try:
        f(np.ones(4))
        assert not gc.isenabled()
    finally:
        gc.enable()

    def fails(x):
        assert not gc.isenabled()          # paused while the graph is built
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        neuronika.grad(fails)(np.ones(3))
    assert gc.isenabled()


def test_vjp_hvp_and_jvp_of_a_new_lambda_per_call_keep_nothing_for_ever():
    """Their per-function programs are kept for the most recent functions only: with a weak
    dictionary whose values held their keys, one was kept per lambda for ever."""
    import gc
    import weakref
    x = np.array([1.0, 2.0])
    refs = []
    for k in range(300):
        f = lambda v, k=k: (v ** 3).sum() * (k + 1)                    # noqa: E731
        refs.append(weakref.ref(f))
        neuronika.vjp(f, x)
        neuronika.hvp(f, x, x)
        neuronika.jvp(f, (x,), (x,))
        del f
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= 256 + 1
    assert refs[0]() is None
