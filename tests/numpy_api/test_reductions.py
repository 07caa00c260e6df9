"""Reductions and scans: values against NumPy, NumPy's dispatch, gradients of first
and second order, over every axis form (None, int, negative, tuple), keepdims,
and ties shared evenly."""
from __future__ import annotations

import numpy as np
import pytest

from .cases import Case, check_dispatch, check_gradients, check_values, distinct, params, uniform

AXES = [None, 0, -1, (0, 2)]


def _cases():
    out = []
    for name in ("sum", "mean", "max", "min", "amax", "amin"):
        sample = distinct if name in ("max", "min", "amax", "amin") else uniform
        for axis in AXES:
            for keepdims in (False, True):
                out.append(Case(name, lambda np_, x, name=name, axis=axis, k=keepdims:
                                getattr(np_, name)(x, axis=axis, keepdims=k), sample((2, 3, 4)),
                                id=f"{name}-axis={axis}-keepdims={keepdims}"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x), sample(()), id=f"{name}-0d"))
    out.append(Case("sum", lambda np_, x: np_.sum(x, axis=1), uniform((2, 0, 3)), id="sum-zero-size"))
    out.append(Case("mean", lambda np_, x: np_.mean(x, axis=0, dtype=np.float32), uniform((3, 2)),
                    value_rtol=1e-6, order=1, eps=1e-2, rtol=1e-4, atol=1e-4, id="mean-dtype"))
    out.append(Case("max", lambda np_, x: np_.max(x, axis=1), np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),
                    order=0, id="max-ties"))          # not differentiable at ties: see the test below
    return out


CASES = _cases()


@pytest.mark.parametrize("case", params(CASES))
def test_values(case):
    check_values(case)


@pytest.mark.parametrize("case", params(CASES))
def test_dispatch(case):
    check_dispatch(case)


@pytest.mark.parametrize("case", params([c for c in CASES if c.wrt]))
def test_gradients(case):
    check_gradients(case)


def test_ties_share_the_gradient_evenly():
    import neuronika
    x = neuronika.from_ndarray(np.array([[1.0, 3.0, 3.0]])).requires_grad()
    np.max(x).backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5]])


def test_empty_reduction_without_identity_raises_like_numpy():
    import neuronika
    with pytest.raises(ValueError, match="zero-size"):
        np.max(neuronika.from_ndarray(np.zeros((0, 3))))
