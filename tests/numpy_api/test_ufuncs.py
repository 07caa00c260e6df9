"""Elementwise functions: values against NumPy, NumPy's dispatch, gradients of first
and second order against finite differences, over plain, broadcast, 0-d and
zero-size shapes."""
from __future__ import annotations

import numpy as np
import pytest

from .cases import (BINARY_SHAPES, UNARY_SHAPES, Case, away, check_dispatch, check_gradients,
                    check_values, params, uniform)

#: name -> (domain sampler) for one-input functions with a gradient.
UNARY = {
    "negative": uniform, "positive": uniform, "sqrt": lambda s, seed=0: uniform(s, 0.3, 2.0, seed),
    "exp": uniform, "log": lambda s, seed=0: uniform(s, 0.3, 2.0, seed), "absolute": away,
    "abs": away, "tanh": uniform, "sin": uniform, "cos": uniform, "sign": away,
}

#: name -> samplers of the two operands.
BINARY = {
    "add": (uniform, uniform), "subtract": (uniform, uniform), "multiply": (uniform, uniform),
    "divide": (uniform, away), "true_divide": (uniform, away),
    "power": (lambda s, seed=0: uniform(s, 0.5, 2.0, seed), uniform),
}

#: boolean results: values and dispatch only.
PREDICATES = {"greater": 2, "greater_equal": 2, "less": 2, "less_equal": 2, "equal": 2, "not_equal": 2,
              "logical_and": 2, "isfinite": 1, "isnan": 1, "isinf": 1}


def _unary_cases():
    out = []
    for name, sample in UNARY.items():
        for shape in UNARY_SHAPES:
            out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x), sample(shape)))
    return out


def _binary_cases():
    out = []
    for name, (sa, sb) in BINARY.items():
        for shape_a, shape_b in BINARY_SHAPES:
            out.append(Case(name, lambda np_, a, b, name=name: getattr(np_, name)(a, b),
                            sa(shape_a, seed=1), sb(shape_b, seed=2)))
    return out


def _predicate_cases():
    out = []
    for name, arity in PREDICATES.items():
        values = [np.array([1.0, np.inf, -2.0, np.nan, 0.0]), np.array([1.0, 0.0, -3.0, 1.0, 0.0])]
        out.append(Case(name, lambda np_, *xs, name=name: getattr(np_, name)(*xs), *values[:arity],
                        wrt=()))
    return out


CASES = _unary_cases() + _binary_cases() + _predicate_cases() + [
    Case("power", lambda np_, x: np_.power(x, 3), uniform((2, 3)), id="power-constant-int"),
    Case("power", lambda np_, x: np_.power(x, 0.5), uniform((2, 3), 0.5, 2.0), id="power-constant-float"),
    Case("where", lambda np_, c, a, b: np_.where(c, a, b), np.array([True, False, True]),
         uniform((2, 3), seed=1), uniform((3,), seed=2)),
    Case("where", lambda np_, a, b: np_.where(a > 0, a, b), uniform((2, 3), seed=1), uniform((), seed=2),
         id="where-computed-condition"),
    Case("clip", lambda np_, x: np_.clip(x, -0.5, 0.7), away((3, 4), 0.05, 2.0)),
    Case("clip", lambda np_, x, lo, hi: np_.clip(x, lo, hi), uniform((2, 4), seed=3),
         uniform((4,), -1.0, -0.2, seed=4), uniform((2, 1), 0.2, 1.0, seed=5), id="clip-variable-bounds"),
]


@pytest.mark.parametrize("case", params(CASES))
def test_values(case):
    check_values(case)


@pytest.mark.parametrize("case", params(CASES))
def test_dispatch(case):
    check_dispatch(case)


@pytest.mark.parametrize("case", params([c for c in CASES if c.wrt]))
def test_gradients(case):
    check_gradients(case)


def test_operators_and_dtype_promotion_follow_numpy():
    import neuronika
    x32 = neuronika.from_ndarray(np.ones(3, np.float32))
    assert (x32 * 2.0).dtype == np.float32
    assert (x32 * np.float64(2.0)).dtype == np.float64
    assert (np.ones(3, np.int64) * x32).dtype == np.float64
    assert (x32 / 2).dtype == np.float32
    i = neuronika.from_ndarray(np.arange(3))
    assert (i / 2).dtype == np.float64 and np.allclose((i / 2).data, np.arange(3) / 2)
