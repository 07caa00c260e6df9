"""Products and linear algebra: values against NumPy, NumPy's dispatch, gradients of
first and second order, batched where NumPy batches."""
from __future__ import annotations

import numpy as np
import pytest

from .cases import Case, check_dispatch, check_gradients, check_values, params, uniform

CASES = [
    Case("matmul", lambda np_, a, b: np_.matmul(a, b), uniform((2, 3)), uniform((3, 4), seed=1)),
    Case("matmul", lambda np_, a, b: np_.matmul(a, b), uniform((2, 2, 3)), uniform((3,), seed=1),
         id="matmul-batched-vector"),
    Case("matmul", lambda np_, a, b: a @ b, uniform((3,)), uniform((2, 3, 4), seed=1), id="matmul-operator"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((2, 3)), uniform((3,), seed=1)),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((2, 3, 4)), uniform((5, 4, 2), seed=1),
         id="dot-nd"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform(()), uniform((3,), seed=1), id="dot-scalar"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_values(case):
    check_values(case)


@pytest.mark.parametrize("case", params([c for c in CASES if c.dispatch]))
def test_dispatch(case):
    check_dispatch(case)


@pytest.mark.parametrize("case", params([c for c in CASES if c.wrt]))
def test_gradients(case):
    check_gradients(case)
