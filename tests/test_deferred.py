"""Weight gradients after the backward loop (``transform.loops.deferred_products``): a cell's
``a @ W``, W a matrix the loop closes over, has W's gradient as one product over every
step's rows (``A.T @ DY``) after the backward loop instead of a product and an addition per
step. DY is the gradient of the x the product is added to (``x_t + a @ W``: the loop stacks
it anyway), or else the product's own gradient, which the cell's backward returns (a
retained node) and the loop stacks. Checked: which cells defer and how (the generated
source), values and gradients against the same loops with deferring off on every face
(scan interpreted and compiled, rolled Python loops, jit, backward(), modules), vmap,
reversed loops, float32, and central finite differences to second order; cells that must
not defer give the same numbers as before.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import neuronika as nk
import neuronika.numpy as nnp
from neuronika.testing import check_grads
from neuronika.transform import loops


@pytest.fixture(autouse=True)
def fresh():
    nk.transform.cache_clear()
    yield
    loops.DEFER = True
    nk.transform.cache_clear()


def undeferred(fn, *args):
    """``fn(*args)`` with deferring off (caches emptied around it)."""
    nk.transform.cache_clear()
    loops.DEFER = False
    try:
        return fn(*args)
    finally:
        loops.DEFER = True
        nk.transform.cache_clear()


def close(got, want, rtol=1e-12, atol=1e-13):
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        if isinstance(g, tuple):
            close(g, w, rtol, atol)
        else:
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=rtol, atol=atol)


def deferred_source(f, *args):
    """The outer program's deferred products (one line each) and the cells' backward sources."""
    with nk.config(compile="always"):
        f(*args)
        source = f.source(*args)
    outer = re.split(r"\n# cell_\d+: ", source)[0]
    cells = re.findall(r"\ndef backward\(.*?(?=\n# |\Z)", source, flags=re.S)
    return [line.strip() for line in outer.splitlines() if re.search(r"_gw\d+ = ", line)], cells


RNG = np.random.default_rng(11)


def rnn_args(T=9, B=3, D=4, H=5, dtype=np.float64):
    return (RNG.standard_normal((D, H)).astype(dtype) * 0.5, RNG.standard_normal((H, H)).astype(dtype) * 0.5,
            RNG.standard_normal(H).astype(dtype) * 0.1, RNG.standard_normal((T, B, D)).astype(dtype))


def scan_rnn(Wx, Wh, b, X, reverse=False):
    def cell(h, x):
        h = nnp.tanh(x @ Wx + h @ Wh + b)
        return h, h.sum(axis=-1)
    h0 = nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype)
    hT, ys = nk.scan(cell, h0, X, reverse=reverse)
    return (hT * hT).mean() + (ys * ys).mean()


def loop_rnn(Wx, Wh, b, X):
    h = nnp.tanh(X[0] @ Wx + b)
    for t in range(1, X.shape[0]):
        h = nnp.tanh(X[t] @ Wx + h @ Wh + b)
    return (h * h).mean()


def test_an_rnns_recurrent_weight_gradient_is_one_product_after_the_loop():
    args = rnn_args()
    f = nk.value_and_grad(scan_rnn, argnums=(0, 1, 2, 3))
    products, cells = deferred_source(f, *args)
    assert len(products) == 1 and ".T @ " in products[0] and "xp.reshape(" in products[0]
    # the step's backward: dh's product only (x @ Wx's gradient moved out with the product)
    assert len(cells) == 1 and cells[0].count("xp.dot(") + cells[0].count("@") == 1
    with nk.config(compile="always"):
        got = f(*args)
    close(got, undeferred(f, *args))


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_values_and_gradients_match_deferring_off(reverse):
    args = rnn_args(T=12)
    f = nk.value_and_grad(lambda *a: scan_rnn(*a, reverse=reverse), argnums=(0, 1, 2, 3))
    for mode in ("never", "always"):            # interpreted and compiled: the same templates
        with nk.config(compile=mode):
            close(f(*args), undeferred(f, *args))


def test_a_rolled_python_loop_defers_at_any_length():
    args = rnn_args(T=30)
    f = nk.value_and_grad(loop_rnn, argnums=(0, 1, 2))
    products, _ = deferred_source(f, *args)
    assert len(products) == 1
    for T in (30, 17):
        short = args[:3] + (args[3][:T],)
        with nk.config(compile="always"):
            close(f(*short), undeferred(f, *short))


def test_float32():
    args = rnn_args(T=20, dtype=np.float32)
    f = nk.value_and_grad(loop_rnn, argnums=(0, 1, 2))
    with nk.config(compile="always"):
        got = f(*args)
    want = undeferred(f, *args)
    assert got[1][1].dtype == np.float32
    close(got, want, rtol=2e-5, atol=1e-6)


def test_backward_on_variables_matches_deferring_off():
    args = rnn_args(T=25)

    def grads():
        leaves = [nk.from_ndarray(a.copy()).requires_grad() for a in args[:3]]
        for _ in range(3):                      # rolled and compiled once the graph repeats
            for v in leaves:
                v.zero_grad()
            loss = loop_rnn(*leaves, nk.from_ndarray(args[3]))
            loss.backward()
        return tuple(v.grad.copy() for v in leaves)

    close(grads(), undeferred(grads))


def test_a_jitted_training_step_matches_deferring_off():
    opt = nk.optim.sgd(0.1)

    @nk.jit
    def step(params, state, X):
        value, g = nk.value_and_grad(lambda p: loop_rnn(*p, X))(params)
        updates, state = opt.update(g, state, params)
        return nk.optim.apply_updates(params, updates), state, value

    def train(*args):
        params, state = list(args[:3]), opt.init(list(args[:3]))
        for _ in range(5):
            params, state, value = step(params, state, args[3])
        return (value, *params)

    args = rnn_args(T=15)
    close(train(*args), undeferred(train, *args), rtol=1e-11)


@pytest.mark.parametrize("fn", [scan_rnn, lambda *a: not_added(*a)])
def test_vmap_of_a_deferring_scan(fn):
    Wx, Wh, b, X = rnn_args(T=6)
    Xs = np.stack([X, X * 0.5, -X])
    f = nk.vmap(nk.grad(fn, argnums=1), in_axes=(None, None, None, 0))
    got = f(Wx, Wh, b, Xs)
    for k in range(3):
        close(got[k], nk.grad(fn, argnums=1)(Wx, Wh, b, Xs[k]))


def test_finite_differences_to_second_order():
    Wx, Wh, b, X = rnn_args(T=4, B=2, D=3, H=3)
    # (X an argument too: with no variable among a scan's inputs, its results are arrays)
    check_grads(scan_rnn, Wx, Wh, b, X, order=2, rtol=1e-5, atol=1e-7, wrt=(0, 1, 2))
    check_grads(lambda wh, x: loop_rnn(Wx, wh, b, x), Wh, X, order=2, rtol=1e-5, atol=1e-7, wrt=(0,))


def lstm(Wx, Wh, b, X):
    n = Wh.shape[0] // 4                  # the state's size; the gates are 4 n wide
    U = Wh[:n]

    def cell(carry, x):
        h, c = carry
        gates = x @ Wx + h @ U + b
        i, f, g, o = (nnp.tanh(gates[:, k * n:(k + 1) * n]) for k in range(4))
        c = f * c + i * g
        h = o * nnp.tanh(c)
        return (h, c), h.sum()
    zeros = nnp.zeros((X.shape[1], n), dtype=X.dtype)
    (h, c), ys = nk.scan(cell, (zeros, zeros), X)
    return (h * h).sum() + ys.sum()


def two_layers(Wx, Wh, b, X):
    U, V = Wh * 0.7, Wh.T * 0.5           # (made before the loop: constants of the cell)

    def cell(carry, x):
        h1, h2 = carry
        h1 = nnp.tanh(x @ Wx + h1 @ Wh + b)          # Wh defers (dy: the x's gradient)
        h2 = nnp.tanh(h1 @ U + h2 @ V)               # their sum adds no x: the cell returns dy
        return (h1, h2), None
    zeros = nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype)
    (h1, h2), _ = nk.scan(cell, (zeros, zeros), X)
    return (h1 * h2).sum()


def vector_state(Wx, Wh, b, X):
    def cell(h, x):
        return nnp.tanh(x @ Wx + h @ Wh + b), None
    hT, _ = nk.scan(cell, nnp.zeros(Wh.shape[0], dtype=X.dtype), X[:, 0])
    return (hT * hT).sum()


def stacked_state(Wx, Wh, b, X):
    def cell(h, x):
        return nnp.tanh(x @ Wx + h @ Wh + b), None
    h0 = nnp.zeros((2,) + (X.shape[1], Wh.shape[0]), dtype=X.dtype)
    hT, _ = nk.scan(cell, h0, nnp.stack([X, X * 0.5], axis=1))
    return (hT * hT).sum()


def transposed_weight(Wx, Wh, b, X):
    """``x_t + h @ W.T`` as ``nn.RNN`` writes it (``mm_t``): W's gradient is DX.T @ H."""
    def cell(h, x):
        return nnp.tanh(x @ Wx + h.mm_t(Wh) + b), None
    hT, _ = nk.scan(cell, nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype), X)
    return (hT * hT).sum()


def transposed_wide_weight(Wx, Wh, b, X):
    """A (4 n, n) weight read as ``h @ W.T`` (an LSTM's recurrent weight): not square."""
    n = Wh.shape[0] // 4
    U = Wh[:, :n] * 1.0                    # (4 n, n), made before the loop

    def cell(h, x):
        gates = x @ Wx + h.mm_t(U) + b
        return nnp.tanh(gates[:, :n]) * nnp.tanh(gates[:, n:2 * n]), None
    hT, _ = nk.scan(cell, nnp.zeros((X.shape[1], n), dtype=X.dtype), X)
    return (hT * hT).sum()


# (the weight read twice or on the left must not defer; the product added to an x read twice,
# not added to an x, added to an x that is data, or made the new carry itself defers with the
# product's gradient returned by the cell)
def weight_read_twice(Wx, Wh, b, X):
    def cell(h, x):
        return nnp.tanh(x @ Wx + h @ Wh + b) + (h @ Wh.T) * 0.1, None
    hT, _ = nk.scan(cell, nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype), X)
    return (hT * hT).sum()


def weight_on_the_left(Wx, Wh, b, X):
    def cell(h, x):
        return nnp.tanh((x @ Wx + b).T + Wh @ h.T).T, None
    hT, _ = nk.scan(cell, nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype), X)
    return (hT * hT).sum()


def x_read_twice(Wx, Wh, b, X):
    def cell(h, x):
        z = x @ Wx + b
        return nnp.tanh(z + h @ Wh) * z, None
    hT, _ = nk.scan(cell, nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype), X)
    return (hT * hT).sum()


def not_added(Wx, Wh, b, X):
    def cell(h, x):
        return nnp.tanh(x @ Wx + b) * nnp.tanh(h @ Wh), None
    hT, _ = nk.scan(cell, nnp.ones((X.shape[1], Wh.shape[0]), dtype=X.dtype), X)
    return (hT * hT).sum()


def x_is_data(Wx, Wh, b, X):
    P = X @ np.ones((X.shape[-1], Wh.shape[0]))          # data: no gradient, no dx to read

    def cell(h, p):
        return nnp.tanh(p + h @ Wh), None
    hT, _ = nk.scan(cell, nnp.zeros((X.shape[1], Wh.shape[0]), dtype=X.dtype) + b, P)
    return (hT * hT).sum()


def linear_carry(Wx, Wh, b, X):
    def cell(h, x):
        return h @ (Wh * 0.5), nnp.tanh(x @ Wx + h)        # the product is the new carry
    hT, ys = nk.scan(cell, nnp.ones((X.shape[1], Wh.shape[0]), dtype=X.dtype) + b, X)
    return (hT * hT).sum() + (ys * ys).sum()


@pytest.mark.parametrize("fn, from_x, returned", [
    (lstm, 1, 0), (two_layers, 1, 2), (vector_state, 1, 0), (stacked_state, 1, 0), (transposed_weight, 1, 0),
    (transposed_wide_weight, 1, 0), (x_read_twice, 0, 1), (not_added, 0, 1), (x_is_data, 0, 1),
    (linear_carry, 0, 1), (weight_read_twice, 0, 0), (weight_on_the_left, 0, 0)])
def test_which_cells_defer_and_their_numbers(fn, from_x, returned):
    Wx, Wh, b, X = rnn_args(T=7, H=8)
    f = nk.value_and_grad(fn, argnums=(0, 1, 2))
    products, _ = deferred_source(f, Wx, Wh, b, X)
    assert sum("_gxs" in p for p in products) == from_x
    assert sum("_dys_w" in p for p in products) == returned == len(products) - from_x
    want = undeferred(f, Wx, Wh, b, X)
    for mode in ("never", "always"):            # interpreted and compiled: the same templates
        with nk.config(compile=mode):
            close(f(Wx, Wh, b, X), want)
    Wx, Wh, b, X = rnn_args(T=3, B=2, D=3, H=4)
    check_grads(fn, Wx, Wh, b, X, order=2, rtol=1e-5, atol=1e-7, wrt=(0, 1, 2), imperative=False)


def test_complex_weights_do_not_defer():
    Wx, Wh, b, X = rnn_args(T=5)
    f = nk.value_and_grad(scan_rnn, argnums=(0, 1, 2))
    W = Wh + 0.5j * Wh
    products, _ = deferred_source(f, Wx.astype(complex), W, b.astype(complex), X.astype(complex))
    assert products == []


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_modules_match_deferring_off(kind):
    """nn.RNN and nn.LSTM add ``h @ W_hh.T`` to the step's input projection, GRU adds b_hh and
    scales a part by r: W_hh's gradient is deferred in all three, with backward() on the
    module."""
    x = RNG.standard_normal((14, 3, 5))

    def grads():
        nk.manual_seed(3)
        module = getattr(nk.nn, kind)(5, 8).to(np.float64)
        params = list(module.parameters())
        for _ in range(3):                      # rolled and compiled once the graph repeats
            for p in params:
                p.grad = None
            out, _ = module(nk.from_ndarray(x))
            loss = (out * out).mean()
            loss.backward()
        return tuple(p.grad.copy() for p in params), loss.source()

    got, source = grads()
    want, _ = undeferred(grads)
    assert "_gw0 = " in source and ("_dys_w0" in source) == (kind == "GRU")
    close(got, want)


@pytest.mark.parametrize("fn, op, written", [
    (scan_rnn, "matmul", r"_gw0 = xp\.reshape\(\w+_as0, \(-1, 5\)\)\.T @ xp\.reshape\(\w+_gxs\d, \(-1, 5\)\)"),
    (transposed_weight, "mm_t", r"_gw0 = xp\.reshape\(\w+_gxs\d, \(-1, 5\)\)\.T @ xp\.reshape\(\w+_as0, \(-1, 5\)\)")])
def test_the_catalogue_declares_which_products_defer(fn, op, written, monkeypatch):
    """An op defers a weight's gradient because it declares the weight's input
    ``summed_over_rows`` (no op is known by name), and the product written after the loop is
    its own adjoint of that input (``a.T @ dy``; ``dy.T @ a`` for ``a @ W.T``) over the steps'
    rows."""
    Wx, Wh, b, X = rnn_args(T=6)
    f = nk.value_and_grad(fn, argnums=(0, 1, 2))
    products, _ = deferred_source(f, Wx, Wh, b, X)
    assert len(products) == 1 and re.fullmatch(r"\w+" + written, products[0]), products
    want = f(Wx, Wh, b, X)
    nk.transform.cache_clear()
    monkeypatch.setattr(nk.ops.OPS[op], "summed_over_rows", frozenset())
    products, _ = deferred_source(f, Wx, Wh, b, X)
    assert products == []
    close(f(Wx, Wh, b, X), want)
