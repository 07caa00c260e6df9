"""Kept buffers (``transform/buffers.py``) on random programs: a pool of large values grown by
random ops (arithmetic, ufuncs, products, views, reductions, relu, softmax), some of them
returned as they are or as views. Every call gives what the interpreter gives, and nothing a
call returned changes when the program runs again on other inputs."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import neuronika as nk
from neuronika import numpy as nnp
from neuronika.nn import functional as F
from neuronika.transform import buffers

N = 96                  # a (96, 96) float64 value is 72 kB: every value may be kept

UNARY = [lambda v: nnp.tanh(v), lambda v: v * 0.5, lambda v: F.relu(v), lambda v: v.T,
         lambda v: nnp.reshape(v, (N * N // 2, 2))[:N * N // 2].reshape(N, N), lambda v: v[::-1],
         lambda v: F.sigmoid(v), lambda v: v - nnp.sum(v, axis=0, keepdims=True) * 0.01,
         lambda v: F.softmax(v, 1), lambda v: -v, lambda v: nnp.exp(v * 0.1)]
BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: (a @ b) * (1.0 / N),
          lambda a, b: a - b.T, lambda a, b: nnp.where(a > 0, a, b)]


def build(recipe, returned):
    def fn(w, x):
        pool = [x @ w * (1.0 / N), x, w]
        for kind, k, i, j in recipe:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            pool.append(UNARY[k % len(UNARY)](a) if kind == "u" else BINARY[k % len(BINARY)](a, b))
        # (the first value keeps the loss a function of w whatever the recipe)
        loss = nnp.sum(pool[-1] * pool[-1]) + nnp.sum(nnp.tanh(pool[-2])) + nnp.sum(pool[0]) * 0.1
        return loss, [pool[r % len(pool)] for r in returned]
    return fn


def _copies(tree):
    return [np.array(a, copy=True) for a in tree]


steps = st.lists(st.tuples(st.sampled_from("ub"), st.integers(0, 40), st.integers(0, 40),
                           st.integers(0, 40)), min_size=2, max_size=9)


@settings(max_examples=60, deadline=None)
# a product's buffer returned through each kind of view (transposed, reshaped, sliced)
@example(recipe=[("u", 3, 0, 0), ("u", 0, 3, 0)], returned=[3], seed=0, face="value_and_grad")
@example(recipe=[("u", 4, 0, 0), ("u", 0, 3, 0)], returned=[3], seed=1, face="jit")
@example(recipe=[("u", 5, 0, 0), ("u", 0, 3, 0)], returned=[3], seed=2, face="value_and_grad")
@example(recipe=[("u", 0, 1, 0), ("u", 0, 1, 0)], returned=[0], seed=0, face="imperative")
@given(recipe=steps, returned=st.lists(st.integers(0, 40), min_size=1, max_size=4), seed=st.integers(0, 2 ** 16),
       face=st.sampled_from(["value_and_grad", "jit", "imperative"]))
def test_random_programs_with_kept_buffers(recipe, returned, seed, face):
    assert buffers.KEEP
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((N, N)) * 0.3
    xs = [rng.standard_normal((N, N)) for _ in range(3)]
    fn = build(recipe, returned)
    if face == "jit":
        run = nk.jit(nk.value_and_grad(fn, has_aux=True))
    elif face == "value_and_grad":
        run = nk.value_and_grad(fn, has_aux=True)
    else:
        def run(w, x):                  # backward() on the rebuilt graph: its backward program
            wv = nk.from_ndarray(w).requires_grad()
            loss, _ = fn(wv, nk.from_ndarray(x))
            loss.backward()
            return (loss.data, []), wv.grad
    nk.transform.cache_clear()
    try:
        with nk.config(compile="never"):
            expected = [run(w, x) for x in xs]
        with nk.config(compile="always"):
            got = [run(w, x) for x in xs]
            first = [_copies([g[0][0], *g[0][1], g[1]]) for g in got]
            for x in xs:                      # the programs run again: what they returned stays
                run(w, x)
    finally:
        nk.transform.cache_clear()
    for (value_aux, grad), want, kept in zip(got, expected, first):
        (value, aux), (want_value, want_aux) = value_aux, want[0]
        now = [value, *aux, grad]
        for a, b, c in zip(now, [want_value, *want_aux, want[1]], kept):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(a, c)


def test_the_random_programs_keep_buffers():
    # the generator does reach the pass: a product and an activation, one of them returned
    fn = build([("u", 0, 0, 0), ("b", 2, 3, 1)], [3])
    w, x = np.ones((N, N)), np.ones((N, N))
    with nk.config(compile="always"):
        text = nk.value_and_grad(fn, has_aux=True).source(w, x)
    assert "out=_B[" in text


@pytest.fixture(autouse=True)
def _fresh_cache():
    nk.transform.cache_clear()
    yield
    nk.transform.cache_clear()
