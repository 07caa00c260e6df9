"""Gradients written with less work: two equal contributions added as ``t += t``
(``passes.doubled_terms``: the adjoint of ``x * x`` is one product and a doubling, the same bits
as the two products), and, in fused programs, a gradient passed through as it is (``p - y``)
taking the buffer of the gradient it is (no copy)."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.testing import check_grads
from neuronika.transform import passes


pytestmark = pytest.mark.usefixtures("cleared_caches")      # (conftest.py)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
@pytest.mark.parametrize("shape", [(3,), (64, 64)])      # (64, 64): the in-place pass's size too
def test_a_square_written_as_a_product(dtype, shape, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    if dtype is np.complex128:
        x = x + 1j * rng.standard_normal(shape)

    def loss(x):
        y = (x * x * 0.5).mean()
        return y.real if dtype is np.complex128 else y

    f = nk.value_and_grad(loss)
    with nk.config(compile="always"):
        got = f(x)
        source = f.source(x)
    assert source.count("g0 = ") == 1 and "g0 += g0" in source       # one product back, doubled
    nk.transform.cache_clear()
    monkeypatch.setattr(passes, "doubled_terms", lambda lines: lines)
    with nk.config(compile="always"):
        want = f(x)
    np.testing.assert_array_equal(got[1], want[1])          # bit for bit
    np.testing.assert_array_equal(got[0], want[0])


def test_imperative_jit_and_second_order():
    x = np.linspace(-2.0, 2.0, 7)
    check_grads(lambda x: (x * x * x).sum() + (x.sin() * x.sin()).sum(), x, order=2)
    v = nk.from_ndarray(x.copy()).requires_grad()
    for _ in range(3):
        v.zero_grad()
        (v * v).sum().backward()
        np.testing.assert_array_equal(v.grad, 2 * x)
    step = nk.jit(nk.grad(lambda w: (w * w).sum()))
    np.testing.assert_array_equal(step(x), 2 * x)


def test_a_gradient_passed_through_as_it_is_takes_the_buffer_in_a_fused_program():
    # (p - y): p's gradient is the difference's own; value_and_grad returns that array without
    # a copy, and a second contribution is added into it in place; the numbers are the same
    rng = np.random.default_rng(1)
    p, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    cases = {
        "alone": (lambda p, y: ((p - y) ** 2).mean(), lambda p, y: 2 * (p - y) / p.size),
        "and more": (lambda p, y: ((p - y) ** 2).mean() + (p * 3.0).sum(), lambda p, y: 2 * (p - y) / p.size + 3.0),
        "both sides": (lambda p, y: ((p - p * y) ** 2).sum(), lambda p, y: 2 * (p - p * y) * (1 - y)),
    }
    for name, (loss, want) in cases.items():
        f = nk.value_and_grad(loss)
        with nk.config(compile="always"):
            value, grad = f(p, y)
            source = f.source(p, y)
        np.testing.assert_allclose(grad, want(p, y), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(value, loss(nk.from_ndarray(p), nk.from_ndarray(y)).data, rtol=1e-14)
        if name == "alone":
            assert "copy=True" not in source
        again = f(p, y)[1]                  # a new array each call
        assert again is not grad
        np.testing.assert_array_equal(again, grad)
    w = nk.from_ndarray(p.copy()).requires_grad()       # backward() keeps its copy
    for _ in range(3):
        w.zero_grad()
        ((w - nk.from_ndarray(y)) ** 2).mean().backward()
        np.testing.assert_allclose(w.grad, 2 * (p - y) / p.size, rtol=1e-13)
