"""Small matrix products written ``xp.dot(a, b)`` (``np.dot``) in generated NumPy code
(``transform/products.py``): which products, the same values as ``a @ b``, gradients to second
order, and one program across a size threshold."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuronika as nk
from neuronika.testing import check_grads
from neuronika.transform import products

RNG = np.random.default_rng(3)


pytestmark = pytest.mark.usefixtures("cleared_caches")      # (conftest.py)


def _source(fn, *args):
    with nk.config(compile="always"):
        value = fn(*args)
        return value, fn.source(*args)


def _without_pass(fn, *args, monkeypatch):
    """``fn(*args)`` from a program the pass left as it was (caches emptied around it)."""
    nk.transform.cache_clear()
    monkeypatch.setattr(products, "MAX_WORK", -1)
    try:
        with nk.config(compile="always"):
            return fn(*args)
    finally:
        monkeypatch.setattr(products, "MAX_WORK", 1 << 20)
        nk.transform.cache_clear()


def _leaves(tree):
    return [x for part in tree for x in _leaves(part)] if isinstance(tree, (tuple, list)) else [tree]


def _same(got, want):
    got, want = _leaves(got), _leaves(want)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert np.asarray(g).dtype == np.asarray(w).dtype and np.shape(g) == np.shape(w)
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-14)


def mlp(w1, b1, w2, x):
    return ((x @ w1 + b1).tanh() @ w2).sin().sum()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_the_products_of_a_small_layer_forward_and_backward(dtype, monkeypatch):
    w1, b1, w2, x = (RNG.standard_normal(s).astype(dtype) for s in ((8, 6), (6,), (6, 3), (4, 8)))
    if dtype is np.complex128:
        w1 = w1 + 0.5j * RNG.standard_normal(w1.shape)
    f = nk.value_and_grad(lambda *a: mlp(*a).real if dtype is np.complex128 else mlp(*a), argnums=(0, 1, 2))
    got, source = _source(f, w1, b1, w2, x)
    # two products forward, one per operand backward (x needs no gradient): all small
    assert source.count("xp.dot(") == 5 and " @ " not in source
    assert "xp.dot(x3.T, " in source
    _same(got, _without_pass(f, w1, b1, w2, x, monkeypatch=monkeypatch))


@pytest.mark.parametrize("case", ["vector-matrix", "matrix-vector", "inner"])
def test_one_dimensional_operands(case, monkeypatch):
    a = RNG.standard_normal((5,) if case != "matrix-vector" else (4, 5))
    b = RNG.standard_normal((5, 3) if case == "vector-matrix" else (5,))
    f = nk.value_and_grad(lambda a, b: ((a @ b) ** 2).sum(), argnums=(0, 1))
    got, source = _source(f, a, b)
    _same(got, _without_pass(f, a, b, monkeypatch=monkeypatch))
    check_grads(lambda a, b: ((a @ b) ** 2).sum(), a, b, order=2)


@pytest.mark.parametrize("case", ["batched", "float16", "integer", "large"])
def test_what_stays_a_matmul(case, monkeypatch):
    shapes = {"batched": ((2, 4, 5), (5, 3)), "large": ((128, 128), (128, 128))}.get(case, ((4, 5), (5, 3)))
    dtype = {"float16": np.float16, "integer": np.int64}.get(case, np.float64)
    a, b = (RNG.standard_normal(s).astype(dtype) for s in shapes)
    if case == "integer":
        with nk.config(compile="always"):
            fn = nk.jit(lambda a, b: a @ b)
            got = fn(a, b)
            assert "xp.dot" not in fn.source(a, b)
        np.testing.assert_array_equal(got, a @ b)
        return
    f = nk.value_and_grad(lambda a, b: (a @ b).sum(), argnums=(0, 1))
    got, source = _source(f, a, b)
    assert "xp.dot" not in source and "@" in source
    _same(got, _without_pass(f, a, b, monkeypatch=monkeypatch))


def test_second_order_through_small_products():
    w, x = RNG.standard_normal((3, 4)), RNG.standard_normal((2, 3))
    check_grads(lambda w: ((x @ w).tanh() @ w.T).sum(), w, order=2)


def test_a_batch_across_the_threshold_runs_the_family_s_program(monkeypatch):
    # the pass reads the sizes the other passes read: a batch small enough for xp.dot
    # takes the program of the large batches (products written with @) instead of its own
    monkeypatch.setattr(products, "MAX_WORK", 4096)
    w = RNG.standard_normal((16, 16))
    f = nk.value_and_grad(lambda w, x: (x @ w).tanh().sum())
    batches = [RNG.standard_normal((n, 16)) for n in (64, 2, 64)]      # 16k and 512 multiply-adds
    compiled = []
    real = nk.transform.codegen._compile

    def counted(name, params, body, returned, top, program, state):
        if not state.dry:
            compiled.append(name)
        return real(name, params, body, returned, top, program, state)

    monkeypatch.setattr(nk.transform.codegen, "_compile", counted)
    with nk.config(compile="always"):
        for x in batches:
            value, grad = f(w, x)
            np.testing.assert_allclose(value, np.tanh(x @ w).sum(), rtol=1e-13)
            np.testing.assert_allclose(grad, x.T @ (1 - np.tanh(x @ w) ** 2), rtol=1e-12)
    assert len(compiled) == 1


@pytest.mark.filterwarnings("ignore:value_and_grad.*has been traced")    # (a shape per example)
@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 24), k=st.integers(1, 24), n=st.integers(1, 24),
       layout=st.sampled_from(["NN", "TN", "NT", "TT"]), dtype=st.sampled_from([np.float32, np.float64]),
       seed=st.integers(0, 2 ** 16))
def test_random_small_products_give_the_matmul_s_values_and_gradients(m, k, n, layout, dtype, seed):
    # operands as they come (a transposed array is an F-ordered one): dot and @ agree, forward
    # and in both gradients, with the pass on and off
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if layout[0] == "T" else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if layout[1] == "T" else (k, n)).astype(dtype)
    a, b = (a.T if layout[0] == "T" else a), (b.T if layout[1] == "T" else b)
    f = nk.value_and_grad(lambda a, b: ((a @ b).tanh() @ b.T).sum(), argnums=(0, 1))
    with nk.config(compile="always"):
        got = f(a, b)
        assert "xp.dot(" in f.source(a, b)
    y = np.tanh(a @ b)
    d = 1 - y * y
    want_a = (d * (np.ones((m, k), dtype) @ b)) @ b.T
    want_b = a.T @ (d * (np.ones((m, k), dtype) @ b)) + np.ones((k, m), dtype) @ y
    tol = dict(rtol=2e-4, atol=2e-4) if dtype is np.float32 else dict(rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(got[0], (y @ b.T).sum(), **tol)
    np.testing.assert_allclose(got[1][0], want_a, **tol)
    np.testing.assert_allclose(got[1][1], want_b, **tol)


def test_functions_longer_than_the_limit_keep_their_products(monkeypatch):
    monkeypatch.setattr(products, "MAX_LINES", 2)
    w, x = RNG.standard_normal((3, 4)), RNG.standard_normal((2, 3))
    f = nk.value_and_grad(lambda w, x: (x @ w).tanh().sum())
    _, source = _source(f, w, x)
    assert "xp.dot" not in source and " @ " in source
