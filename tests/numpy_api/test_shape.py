"""Shape functions and indexing: values against NumPy, NumPy's dispatch, gradients
of first and second order (they only move elements, so gradients move them back)."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika

from .cases import Case, check_dispatch, check_gradients, check_values, params, uniform

X = uniform((2, 3, 4))

CASES = [
    Case("reshape", lambda np_, x: np_.reshape(x, (4, -1)), X),
    Case("reshape", lambda np_, x: np_.reshape(x, (3, 0)), uniform((0, 3)), id="reshape-zero-size"),
    Case("ravel", lambda np_, x: np_.ravel(x), X),
    Case("transpose", lambda np_, x: np_.transpose(x), X),
    Case("transpose", lambda np_, x: np_.transpose(x, (1, 0, 2)), X, id="transpose-axes"),
    Case("swapaxes", lambda np_, x: np_.swapaxes(x, 0, -1), X),
    Case("moveaxis", lambda np_, x: np_.moveaxis(x, 0, -1), X),
    Case("moveaxis", lambda np_, x: np_.moveaxis(x, [0, 1], [-1, 0]), X, id="moveaxis-several"),
    Case("expand_dims", lambda np_, x: np_.expand_dims(x, (0, 3)), X),
    Case("squeeze", lambda np_, x: np_.squeeze(x), uniform((1, 3, 1))),
    Case("squeeze", lambda np_, x: np_.squeeze(x, axis=2), uniform((1, 3, 1)), id="squeeze-axis"),
    Case("broadcast_to", lambda np_, x: np_.broadcast_to(x, (2, 3, 4)), uniform((3, 1))),
    Case("concatenate", lambda np_, a, b: np_.concatenate([a, b], axis=1), uniform((2, 3)),
         uniform((2, 2), seed=1)),
    Case("concatenate", lambda np_, a, b: np_.concatenate([a, b], axis=None), uniform((2, 3)),
         uniform((4,), seed=1), id="concatenate-flat"),
    Case("stack", lambda np_, a, b: np_.stack([a, b], axis=-1), uniform((2, 3)), uniform((2, 3), seed=1)),
    Case("pad", lambda np_, x: np_.pad(x, ((1, 2), (0, 1))), uniform((2, 3))),
    Case("pad", lambda np_, x: np_.pad(x, 1, mode="edge"), uniform((2, 3)), id="pad-edge"),
    Case("pad", lambda np_, x: np_.pad(x, ((1, 1), (2, 0)), mode="reflect"), uniform((3, 3)),
         id="pad-reflect"),
    Case("pad", lambda np_, x: np_.pad(x, 1, constant_values=2.5), uniform((2,)), id="pad-value"),
    Case("copy", lambda np_, x: np_.copy(x), X),
    Case("getitem", lambda np_, x: x[1, :, ::2], X, dispatch=False),
    Case("getitem", lambda np_, x: x[np.array([0, 2, 2, 1])], uniform((3, 2)), dispatch=False,
         id="getitem-repeated"),
    Case("getitem", lambda np_, x: x[np.array([[True, False], [False, False], [True, True]])],
         uniform((3, 2)), dispatch=False, id="getitem-mask"),
    Case("getitem", lambda np_, x: x[None, ..., 1], X, dispatch=False, id="getitem-none-ellipsis"),
    Case("array", lambda np_, a, b: np_.array([a, b]), uniform((3,)), uniform((3,), seed=1),
         dispatch=False),
    Case("asarray", lambda np_, a: np_.asarray([[a, a], [a, a]]), uniform((2,)), dispatch=False),
    Case("shape", lambda np_, x: np_.shape(x), X, wrt=()),
    Case("ndim", lambda np_, x: np_.ndim(x), X, wrt=()),
    Case("size", lambda np_, x: np_.size(x), X, wrt=()),
    Case("zeros_like", lambda np_, x: np_.zeros_like(x), X, wrt=()),
    Case("ones_like", lambda np_, x: np_.ones_like(x), X, wrt=()),
    Case("full_like", lambda np_, x: np_.full_like(x, 3.0), X, wrt=()),
    Case("empty_like", lambda np_, x: np_.empty_like(x).shape, X, wrt=()),
    Case("result_type", lambda np_, x: np_.result_type(x, np.float32), X, wrt=()),
    Case("iscomplexobj", lambda np_, x: np_.iscomplexobj(x), X, wrt=()),
    Case("isrealobj", lambda np_, x: np_.isrealobj(x), X, wrt=()),
]


def _constant_result(case):
    return case.name in ("shape", "ndim", "size", "zeros_like", "ones_like", "full_like", "empty_like",
                         "result_type", "iscomplexobj", "isrealobj")


@pytest.mark.parametrize("case", params(CASES))
def test_values(case):
    check_values(case)


@pytest.mark.parametrize("case", params([c for c in CASES if c.dispatch and not _constant_result(c)]))
def test_dispatch(case):
    check_dispatch(case)


@pytest.mark.parametrize("case", params([c for c in CASES if c.wrt]))
def test_gradients(case):
    check_gradients(case)


@pytest.mark.parametrize("case", params([c for c in CASES if _constant_result(c)]))
def test_shape_queries_accept_differentiable_variables(case):
    # They read only the shape and dtype: no gradient can be lost, so nothing is refused.
    result = case.call(np, *case.variables())
    assert not isinstance(result, neuronika.Var)


def test_assignment_into_a_variable_points_to_at():
    v = neuronika.from_ndarray(np.zeros(3))
    with pytest.raises(TypeError, match=r"\.at\[idx\]\.set"):
        v[0] = 1.0
