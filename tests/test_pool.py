"""The pool of loops' stacked arrays (``neuronika.ops.pool``): an array is handed out again only
once nothing references it (not its user, not a view of it), results kept across calls stay
as they were, and every face of a scan gives the same numbers with the pool as with fresh
arrays (threads: ``tests/test_threads.py``)."""
from __future__ import annotations

import math

import numpy as np
import pytest

import neuronika as nk
import neuronika.numpy as nnp
from neuronika.ops import pool


@pytest.fixture
def small_pool():
    """Every stack from the pool, whatever its size."""
    before = pool.MIN_BYTES
    pool.MIN_BYTES = 0
    pool.clear()
    nk.transform.cache_clear()
    yield
    pool.MIN_BYTES = before
    pool.clear()
    nk.transform.cache_clear()


def test_an_array_in_use_is_not_handed_out_again(small_pool):
    a = pool.pooled_empty(np, (4, 5), np.float64)
    address = a.ctypes.data
    view = a[1:]
    del a
    b = pool.pooled_empty(np, (4, 5), np.float64)
    assert not np.shares_memory(b, view)            # the view keeps a busy
    del view
    c = pool.pooled_empty(np, (4, 5), np.float64)    # a is free again: handed out
    assert c.ctypes.data == address
    assert pool.pooled_empty(np, (4, 5), np.float64).ctypes.data not in (b.ctypes.data, c.ctypes.data)


def test_at_most_per_key_arrays_are_kept_and_those_dropped_stay_valid(small_pool):
    held = [pool.pooled_empty(np, (3,), np.float32) for _ in range(pool.PER_KEY + 2)]
    for k, a in enumerate(held):
        a[...] = k
    assert len({id(a) for a in held}) == len(held)              # each busy: a new one
    kept = pool._arrays[((3,), np.dtype(np.float32))]
    assert len(kept) == pool.PER_KEY and all(a is b for a, b in zip(kept, held[2:]))   # the newest
    for k, a in enumerate(held):                                # dropped from the pool, still theirs
        assert (a == k).all()
    del a, held
    zeros = pool.pooled_zeros(np, (3,), np.float32)             # a kept one, free again: zeroed
    assert any(zeros is b for b in kept) and (zeros == 0).all()


def test_other_libraries_get_their_own_empty():
    class Space:
        def empty(self, shape, dtype):
            return ("empty", shape, dtype)
    assert pool.pooled_empty(Space(), (2,), np.float32) == ("empty", (2,), np.float32)


def rnn(W, X):
    def cell(h, x):
        h = nnp.tanh(x + h @ W)
        return h, h * 2.0
    hT, ys = nk.scan(cell, nnp.zeros((X.shape[1], W.shape[0]), dtype=X.dtype), X)
    return ys


def test_results_kept_across_calls_stay_as_they_were(small_pool):
    f = nk.jit(rnn)
    rng = np.random.default_rng(0)
    W, X1, X2 = rng.standard_normal((4, 4)) * 0.5, rng.standard_normal((6, 3, 4)), rng.standard_normal((6, 3, 4))
    first = f(W, X1)
    kept = first.copy()
    part = f(W, X2)[2:]                 # a view of the second call's stack
    kept_part = part.copy()
    for _ in range(3):
        f(W, X2 * 0.5)
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_array_equal(part, kept_part)


def test_a_dropped_result_gives_its_memory_to_the_next_call(small_pool):
    f = nk.jit(rnn)
    rng = np.random.default_rng(1)
    W, X = rng.standard_normal((4, 4)) * 0.5, rng.standard_normal((6, 3, 4))
    address = f(W, X).ctypes.data
    assert f(W, X).ctypes.data == address


def loss(W, X):
    ys = rnn(W, X)
    return (ys * ys).mean()


def faces(W, X):
    """value_and_grad (interpreted and compiled), jit of it, and backward() on variables."""
    out = []
    f = nk.value_and_grad(loss)
    for mode in ("never", "always"):
        with nk.config(compile=mode):
            out.append(f(W, X))
    out.append(nk.jit(nk.value_and_grad(loss))(W, X))
    w = nk.from_ndarray(W.copy()).requires_grad()
    for _ in range(3):
        w.zero_grad()
        value = loss(w, nk.from_ndarray(X))
        value.backward()
    out.append((value.data.copy(), w.grad.copy()))
    return out


def test_every_face_matches_fresh_arrays(small_pool):
    rng = np.random.default_rng(2)
    W, X = rng.standard_normal((5, 5)) * 0.5, rng.standard_normal((9, 2, 5))
    got = faces(W, X)
    pool.MIN_BYTES = 1 << 60
    nk.transform.cache_clear()
    want = faces(W, X)
    for (gv, gg), (wv, wg) in zip(got, want):
        np.testing.assert_array_equal(gv, wv)
        np.testing.assert_array_equal(gg, wg)


def test_a_scattered_gradient_starts_from_zeros_in_reused_memory(small_pool):
    """The gradient of a slice is scattered into zeros from the pool (``scratch_zeros``): memory
    handed out again is zeroed, and a gradient the caller holds is never written."""
    f = nk.jit(nk.grad(lambda x, k: (x[k:] * x[k:]).sum()), static_argnums=1)
    x = np.random.default_rng(4).standard_normal((40, 30))
    held = f(x, 5)
    kept = held.copy()
    np.testing.assert_array_equal(held[:5], 0.0)
    np.testing.assert_array_equal(held[5:], 2 * x[5:])
    for k in (5, 5, 20):
        got = f(x * 3.0, k)
        np.testing.assert_array_equal(got[:k], 0.0)
        np.testing.assert_array_equal(got[k:], 6 * x[k:])
        del got
    np.testing.assert_array_equal(held, kept)


@pytest.mark.parametrize("make", [
    lambda ps: nk.optim.SGD(ps, lr=0.05), lambda ps: nk.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=0.01),
    lambda ps: nk.optim.Adam(ps, lr=1e-2), lambda ps: nk.optim.Adam(ps, lr=1e-2, amsgrad=True),
    lambda ps: nk.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    lambda ps: nk.optim.Adagrad(ps, lr=1e-2, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
    lambda ps: nk.optim.RMSprop(ps, lr=1e-2, weight_decay=0.01),
    lambda ps: nk.optim.RMSprop(ps, lr=1e-2, centered=True, momentum=0.9),
    lambda ps: nk.optim.Adamax(ps, lr=1e-2, weight_decay=0.01)])
def test_optimizers_temporaries_from_the_pool_give_the_same_bits(make):
    """The optimizers' temporaries (``lr * g``, ``sqrt(v)``, ...) written into pool arrays: the
    parameters bit for bit as with fresh temporaries, and p.grad left as backward gave it."""
    rng = np.random.default_rng(5)
    w0, x = rng.standard_normal((40, 30)).astype(np.float32), rng.standard_normal((8, 40)).astype(np.float32)

    def train(min_bytes):
        before, pool.MIN_BYTES = pool.MIN_BYTES, min_bytes
        try:
            w = nk.from_ndarray(w0.copy()).requires_grad()
            opt = make([w])
            for _ in range(4):
                (nk.from_ndarray(x).mm(w).tanh() ** 2).sum().backward()
                grad = w.grad.copy()
                opt.step()
                np.testing.assert_array_equal(w.grad, grad)
                opt.zero_grad()
            return w.data.copy()
        finally:
            pool.MIN_BYTES = before
            pool.clear()

    np.testing.assert_array_equal(train(0), train(1 << 60))


def _sgd(w, g, st, t, lr=1e-2, momentum=0.9, dampening=0.1, wd=0.01, nesterov=False):
    g = g + wd * w
    if "b" not in st:
        st["b"] = g.copy()
    else:
        st["b"] *= momentum
        st["b"] += (1 - dampening) * g
    g = g + momentum * st["b"] if nesterov else st["b"]
    w -= lr * g


def _adam(w, g, st, t, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, wd=0.01, amsgrad=False, decoupled=False):
    m, v = st.setdefault("m", np.zeros_like(w)), st.setdefault("v", np.zeros_like(w))
    if decoupled:
        w *= 1 - lr * wd
    else:
        g = g + wd * w
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    if amsgrad:
        vmax = st.setdefault("vmax", np.zeros_like(w))
        np.maximum(vmax, v, out=vmax)
        v = vmax
    denom = np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps
    w -= lr / (1 - b1 ** t) * m / denom


def _adagrad(w, g, st, t, lr=1e-2, lr_decay=0.01, wd=0.01, init=0.1, eps=1e-10):
    s = st.setdefault("sum", np.full_like(w, init))
    g = g + wd * w
    s += g * g
    w -= lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)


def _rmsprop(w, g, st, t, lr=1e-2, alpha=0.99, eps=1e-8, wd=0.01, momentum=0.0, centered=False):
    s = st.setdefault("s", np.zeros_like(w))
    g = g + wd * w
    s *= alpha
    s += (1 - alpha) * g * g
    if centered:
        a = st.setdefault("a", np.zeros_like(w))
        a *= alpha
        a += (1 - alpha) * g
        avg = np.sqrt(s - a * a) + eps
    else:
        avg = np.sqrt(s) + eps
    if momentum:
        b = st.setdefault("b", np.zeros_like(w))
        b *= momentum
        b += g / avg
        w -= lr * b
    else:
        w -= lr * g / avg


def _adamax(w, g, st, t, lr=1e-2, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
    m, u = st.setdefault("m", np.zeros_like(w)), st.setdefault("u", np.zeros_like(w))
    g = g + wd * w
    m *= b1
    m += (1 - b1) * g
    np.maximum(b2 * u, np.abs(g) + eps, out=u)
    w -= lr / (1 - b1 ** t) * m / u


@pytest.mark.parametrize("make, reference", [
    (lambda ps: nk.optim.SGD(ps, lr=1e-2), lambda w, g, st, t: w.__isub__(1e-2 * g)),
    (lambda ps: nk.optim.SGD(ps, lr=1e-2, momentum=0.9, dampening=0.1, weight_decay=0.01), _sgd),
    (lambda ps: nk.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=0.01, nesterov=True),
     lambda *a: _sgd(*a, dampening=0.0, nesterov=True)),
    (lambda ps: nk.optim.Adam(ps, lr=1e-2, weight_decay=0.01), _adam),
    (lambda ps: nk.optim.Adam(ps, lr=1e-2, weight_decay=0.01, amsgrad=True), lambda *a: _adam(*a, amsgrad=True)),
    (lambda ps: nk.optim.AdamW(ps, lr=1e-2, weight_decay=0.01), lambda *a: _adam(*a, decoupled=True)),
    (lambda ps: nk.optim.Adagrad(ps, lr=1e-2, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
     _adagrad),
    (lambda ps: nk.optim.RMSprop(ps, lr=1e-2, weight_decay=0.01), _rmsprop),
    (lambda ps: nk.optim.RMSprop(ps, lr=1e-2, weight_decay=0.01, centered=True, momentum=0.9),
     lambda *a: _rmsprop(*a, centered=True, momentum=0.9)),
    (lambda ps: nk.optim.Adamax(ps, lr=1e-2, weight_decay=0.01), _adamax)])
def test_pooled_optimizers_give_their_formulas_bits(make, reference):
    """Every optimizer whose temporaries come from the pool gives, bit for bit, its update
    written as one NumPy expression per line in torch's order (fresh temporaries)."""
    rng = np.random.default_rng(6)
    w0 = rng.standard_normal((64, 300)).astype(np.float32)          # 75 kB: pooled
    grads = [rng.standard_normal(w0.shape).astype(np.float32) for _ in range(4)]
    w = nk.from_ndarray(w0.copy()).requires_grad()
    opt = make([w])
    want, state = w0.copy(), {}
    for t, g in enumerate(grads, start=1):
        w.grad = g.copy()
        opt.step()
        reference(want, g, state, t)
        np.testing.assert_array_equal(w.data, want)
    pool.clear()
