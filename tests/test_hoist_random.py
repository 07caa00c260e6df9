"""Work moved out of loops, on random cells: every cell built from a pool of ops over random
choices of carries, xs and constants gives the same values and gradients (and, rolled from
a Python loop, the same as the loop unrolled) with moving on and off.

The pool mixes what moves before a loop (work on xs and constants), what moves after it
(work only ys need, a carry that sums a term), and what stays (draws, work a carry needs).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuronika as nk
from neuronika.transform import loops

B, H = 3, 4

UNARY = [lambda v: v.tanh(), lambda v: v.sin(), lambda v: v * 0.5, lambda v: v.sigmoid(),
         lambda v: v * (v * v).sum(axis=1, keepdims=True) * 0.1, lambda v: v.T.T,
         lambda v: v.softmax(1), lambda v: v[:, ::-1]]
BINARY = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b * 0.5,
          lambda a, b: (a @ b.T).tanh() @ b * 0.1,
          lambda a, b: a + b + (a * 0.3).sin()]      # a sum regrouped where a is carry-free


def build_cell(recipe, W):
    """A cell (carry (h, total), x) -> ((h, total), y) from ``recipe``: a list of (unary or
    binary, which op, operand choices) over a pool of (B, H) values that starts with h, x and
    two products of x with W."""
    V, U = W.T * 0.5, W * 0.3          # made before the loop from W: constants of the cell

    def cell(carry, x):
        h, total = carry
        pool = [h, x, x @ W, W.sum(axis=0) * x]
        for kind, k, i, j in recipe:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            if kind == "r":                 # a recurrence: V's gradient may be deferred
                pool.append(x @ U + a @ V)
                continue
            pool.append(UNARY[k % len(UNARY)](a) if kind == "u" else BINARY[k % len(BINARY)](a, b))
        new_h = (pool[-1] + h * 0.5).tanh()
        term = (pool[-2] * pool[-2]).sum() * 0.01
        return (new_h, total + term), (pool[-3] @ W).cos()
    return cell


def scan_loss(recipe, W, X, h0):
    (h, total), ys = nk.scan(build_cell(recipe, W), (h0, np.array(0.0)), X)
    return (h * h).sum() + total + (ys * ys).sum()


def loop_loss(recipe, W, X, h0):
    cell = build_cell(recipe, W)
    carry, ys = (nk.from_ndarray(h0), 0.0), []
    for t in range(X.shape[0]):
        carry, y = cell(carry, X[t])
        ys.append(y)
    h, total = carry
    return (h * h).sum() + total + (nk.numpy.stack(ys) ** 2).sum()


def both(fn, args):
    out = []
    for moving in (False, True):            # nothing moved nor deferred, then both
        loops.HOIST = loops.DEFER = moving
        nk.transform.cache_clear()
        try:
            with nk.config(compile="always"):
                out.append(nk.value_and_grad(fn, argnums=(0, 1))(*args))
        finally:
            loops.HOIST = loops.DEFER = True
            nk.transform.cache_clear()
    return out


steps = st.lists(st.tuples(st.sampled_from("ubr"), st.integers(0, 20), st.integers(0, 20),
                           st.integers(0, 20)), min_size=3, max_size=7)


@settings(max_examples=40, deadline=None)
@given(recipe=steps, seed=st.integers(0, 2 ** 16), face=st.sampled_from(["scan", "loop"]))
def test_random_cells_give_the_same_values_and_gradients_moved_or_not(recipe, seed, face):
    rng = np.random.default_rng(seed)
    W, X, h0 = rng.standard_normal((H, H)) * 0.4, rng.standard_normal((30, B, H)), rng.standard_normal((B, H)) * 0.3
    fn = (lambda w, x: scan_loss(recipe, w, x, h0)) if face == "scan" else (lambda w, x: loop_loss(recipe, w, x, h0))
    (v0, g0), (v1, g1) = both(fn, (W, X))
    np.testing.assert_allclose(v1, v0, rtol=1e-10, atol=1e-12)
    for a, c in zip(g1, g0):
        assert a.shape == c.shape
        np.testing.assert_allclose(a, c, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("seed", range(3))
def test_random_cells_move_something(seed):
    # the pool does move work: x @ W before, (pool[-3] @ W).cos() and the summed term after
    rng = np.random.default_rng(seed)
    recipe = [("u", 0, 2, 0), ("b", 1, 4, 0), ("u", 2, 5, 1)]
    W, X, h0 = rng.standard_normal((H, H)) * 0.4, rng.standard_normal((30, B, H)), rng.standard_normal((B, H))
    f = nk.value_and_grad(lambda w, x: scan_loss(recipe, w, x, h0), argnums=(0, 1))
    with nk.config(compile="always"):
        f(W, X)
        cell = f.source(W, X).split("# cell_0")[1].split("def backward")[0]
    assert "cos" not in cell


def test_a_random_cells_recurrence_defers_its_weight_gradient():
    rng = np.random.default_rng(4)
    recipe = [("r", 0, 0, 0), ("u", 0, 4, 0), ("b", 1, 5, 1)]
    W, X, h0 = rng.standard_normal((H, H)) * 0.4, rng.standard_normal((30, B, H)), rng.standard_normal((B, H))
    f = nk.value_and_grad(lambda w, x: scan_loss(recipe, w, x, h0), argnums=(0, 1))
    with nk.config(compile="always"):
        f(W, X)
        outer = f.source(W, X).split("# cell_0")[0]
    assert "_as0 = pooled_empty" in outer        # the recurrence's left operands, stacked
