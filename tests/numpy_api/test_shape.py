"""Shape functions and indexing: values against NumPy, NumPy's dispatch, gradients
of first and second order (they only move elements, so gradients move them back)."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika

from .cases import Case, params, uniform

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
    Case("pad", lambda np_, x: np_.pad(x, ((1, 2), (2, 1)), mode="symmetric"), uniform((2, 3)),
         id="pad-symmetric"),
    Case("pad", lambda np_, x: np_.pad(x, ((1, 2), (3, 1)), mode="wrap"), uniform((2, 3)), id="pad-wrap"),
    Case("pad", lambda np_, x: np_.pad(x, (4, 7), mode="symmetric"), uniform((3,)), id="pad-symmetric-wide"),
    Case("pad", lambda np_, x: np_.pad(x, ((5, 8), (0, 0)), mode="wrap"), uniform((3, 2)), id="pad-wrap-wide"),
    Case("pad", lambda np_, x: np_.pad(x, ((0, 0), (6, 3)), mode="reflect"), uniform((2, 3)),
         id="pad-reflect-wide"),
    Case("pad", lambda np_, x: np_.pad(x, 2, mode="reflect"), uniform((1, 2)), id="pad-reflect-size-1"),
    Case("pad", lambda np_, x: np_.pad(x, {-1: (1, 2)}, mode="edge"), uniform((2, 3)), id="pad-dict"),
    Case("pad", lambda np_, x: np_.pad(x, ((1, 0), (0, 0))), uniform((0, 3)), id="pad-zero-size"),
    Case("pad", lambda np_, x: np_.pad(x, ((1, 0), (0, 0)), mode="wrap"), uniform((2, 0)),
         id="pad-wrap-zero-size"),
    Case("pad", lambda np_, x: np_.pad(x, 0, mode="symmetric"), uniform((2, 3)), id="pad-none"),
]

# ---- at least n dimensions, broadcasting, joining ------------------------------------------------------
for _name, _shapes in [("atleast_1d", [(), (3,), (2, 3)]), ("atleast_2d", [(), (3,), (2, 3, 4)]),
                       ("atleast_3d", [(), (3,), (2, 3), (2, 3, 4), (0, 2)])]:
    for _shape in _shapes:
        CASES.append(Case(_name, lambda np_, x, f=_name: getattr(np_, f)(x), uniform(_shape),
                          id=f"{_name}-{_shape}"))
    CASES.append(Case(_name, lambda np_, a, b, f=_name: getattr(np_, f)(a, b), uniform(()), uniform((2,), seed=1),
                      id=f"{_name}-several"))
CASES += [
    Case("broadcast_arrays", lambda np_, a, b: np_.broadcast_arrays(a, b), uniform((2, 1)), uniform((3,), seed=1)),
    Case("broadcast_arrays", lambda np_, a, b, c: np_.broadcast_arrays(a, b, c), uniform(()),
         uniform((2, 3), seed=1), uniform((1, 3), seed=2), id="broadcast_arrays-three"),
    Case("broadcast_arrays", lambda np_, a, b: np_.broadcast_arrays(a, b), uniform((0, 3)), uniform((3,), seed=1),
         id="broadcast_arrays-zero-size"),
    Case("hstack", lambda np_, a, b: np_.hstack([a, b]), uniform((2, 3)), uniform((2, 1), seed=1)),
    Case("hstack", lambda np_, a, b: np_.hstack((a, b)), uniform((3,)), uniform((2,), seed=1), id="hstack-1d"),
    Case("hstack", lambda np_, a, b: np_.hstack([a, b]), uniform(()), uniform(()), id="hstack-0d"),
    Case("hstack", lambda np_, a, b: np_.hstack([a, b]), uniform((2, 0, 2)), uniform((2, 3, 2), seed=1),
         id="hstack-zero-size"),
    Case("vstack", lambda np_, a, b: np_.vstack([a, b]), uniform((3,)), uniform((3,), seed=1)),
    Case("vstack", lambda np_, a, b: np_.vstack([a, b]), uniform((2, 3)), uniform((1, 3), seed=1), id="vstack-2d"),
    Case("vstack", lambda np_, a, b: np_.vstack([a, b]), uniform(()), uniform((1,), seed=1), id="vstack-0d"),
    Case("dstack", lambda np_, a, b: np_.dstack([a, b]), uniform((3,)), uniform((3,), seed=1)),
    Case("dstack", lambda np_, a, b: np_.dstack([a, b]), uniform((2, 3)), uniform((2, 3, 2), seed=1),
         id="dstack-mixed"),
    Case("column_stack", lambda np_, a, b: np_.column_stack([a, b]), uniform((3,)), uniform((3, 2), seed=1)),
    Case("column_stack", lambda np_, a, b: np_.column_stack((a, b)), uniform((0,)), uniform((0,), seed=1),
         id="column_stack-zero-size"),
    Case("append", lambda np_, a, b: np_.append(a, b), uniform((2, 3)), uniform((2,), seed=1)),
    Case("append", lambda np_, a, b: np_.append(a, b, axis=-1), uniform((2, 3)), uniform((2, 1), seed=1),
         id="append-axis"),
    Case("append", lambda np_, a: np_.append(a, 2.5), uniform(()), id="append-number"),
    Case("unstack", lambda np_, x: np_.unstack(x), X),
    Case("unstack", lambda np_, x: np_.unstack(x, axis=-1), X, id="unstack-last"),
]

# ---- splitting ---------------------------------------------------------------------------------------------
CASES += [
    Case("split", lambda np_, x: np_.split(x, 2, axis=2), X),
    Case("split", lambda np_, x: np_.split(x, [1, -1, 7], axis=-1), X, id="split-indices"),
    Case("split", lambda np_, x: np_.split(x, [2, 1]), uniform((3, 2)), id="split-decreasing"),
    Case("split", lambda np_, x: np_.split(x, 3, axis=1), uniform((2, 0)), id="split-zero-size"),
    Case("array_split", lambda np_, x: np_.array_split(x, 3), uniform((7,))),
    Case("array_split", lambda np_, x: np_.array_split(x, 5, axis=-2), uniform((3, 2)), id="array_split-more"),
    Case("array_split", lambda np_, x: np_.array_split(x, [1], axis=1), X, id="array_split-indices"),
    Case("hsplit", lambda np_, x: np_.hsplit(x, 3), X),
    Case("hsplit", lambda np_, x: np_.hsplit(x, [1]), uniform((4,)), id="hsplit-1d"),
    Case("vsplit", lambda np_, x: np_.vsplit(x, 2), X),
    Case("dsplit", lambda np_, x: np_.dsplit(x, [1, 3]), X),
]

# ---- repeating ---------------------------------------------------------------------------------------------
CASES += [
    Case("tile", lambda np_, x: np_.tile(x, 2), uniform((2, 3))),
    Case("tile", lambda np_, x: np_.tile(x, (2, 1, 3)), uniform((2, 3)), id="tile-more-reps"),
    Case("tile", lambda np_, x: np_.tile(x, (2, 1)), X, id="tile-fewer-reps"),
    Case("tile", lambda np_, x: np_.tile(x, (3, 2)), uniform(()), id="tile-0d"),
    Case("tile", lambda np_, x: np_.tile(x, (2, 1)), uniform((1, 3)), id="tile-unit-axis"),
    Case("tile", lambda np_, x: np_.tile(x, (0, 2)), uniform((2, 3)), id="tile-zero"),
    Case("repeat", lambda np_, x: np_.repeat(x, 2), uniform((2, 3))),
    Case("repeat", lambda np_, x: np_.repeat(x, 3, axis=-1), uniform((2, 3)), id="repeat-axis"),
    Case("repeat", lambda np_, x: np_.repeat(x, [2, 0, 1], axis=1), uniform((2, 3)), id="repeat-each"),
    Case("repeat", lambda np_, x: np_.repeat(x, [1, 2]), uniform((2,)), id="repeat-each-flat"),
    Case("repeat", lambda np_, x: np_.repeat(x, 0, axis=0), uniform((2, 3)), id="repeat-zero"),
    Case("repeat", lambda np_, x: np_.repeat(x, 4), uniform(()), id="repeat-0d"),
    Case("repeat", lambda np_, x: x.repeat(2, axis=0), uniform((2, 3)), dispatch=False, id="repeat-method"),
]

# ---- reordering ----------------------------------------------------------------------------------------------
CASES += [
    Case("flip", lambda np_, x: np_.flip(x), X),
    Case("flip", lambda np_, x: np_.flip(x, 1), X, id="flip-axis"),
    Case("flip", lambda np_, x: np_.flip(x, (0, -1)), X, id="flip-axes"),
    Case("flip", lambda np_, x: np_.flip(x, 0), uniform((0, 2)), id="flip-zero-size"),
    Case("flip", lambda np_, x: np_.flip(x), uniform(()), id="flip-0d"),
    Case("fliplr", lambda np_, x: np_.fliplr(x), X),
    Case("flipud", lambda np_, x: np_.flipud(x), uniform((3,))),
    Case("flipud", lambda np_, x: np_.flipud(x), X, id="flipud-3d"),
    Case("roll", lambda np_, x: np_.roll(x, 2), X),
    Case("roll", lambda np_, x: np_.roll(x, -1, axis=1), X, id="roll-axis"),
    Case("roll", lambda np_, x: np_.roll(x, (1, -5), axis=(0, -1)), X, id="roll-axes"),
    Case("roll", lambda np_, x: np_.roll(x, (1, 2), axis=(1, 1)), X, id="roll-same-axis"),
    Case("roll", lambda np_, x: np_.roll(x, 3, axis=0), uniform((3, 2)), id="roll-full-turn"),
    Case("roll", lambda np_, x: np_.roll(x, 1, axis=0), uniform((0, 2)), id="roll-zero-size"),
    Case("roll", lambda np_, x: np_.roll(x, 1), uniform(()), id="roll-0d"),
    Case("rot90", lambda np_, x: np_.rot90(x), uniform((2, 3))),
    Case("rot90", lambda np_, x: np_.rot90(x, 2), uniform((2, 3)), id="rot90-2"),
    Case("rot90", lambda np_, x: np_.rot90(x, 3, axes=(1, 2)), X, id="rot90-3-axes"),
    Case("rot90", lambda np_, x: np_.rot90(x, -1, axes=(-1, 0)), X, id="rot90-negative"),
    Case("rot90", lambda np_, x: np_.rot90(x, 4), uniform((2, 3)), id="rot90-4"),
    Case("rollaxis", lambda np_, x: np_.rollaxis(x, 2), X),
    Case("rollaxis", lambda np_, x: np_.rollaxis(x, 0, 3), X, id="rollaxis-start"),
    Case("matrix_transpose", lambda np_, x: np_.matrix_transpose(x), X),
]

# ---- diagonals and triangles ----------------------------------------------------------------------------------
CASES += [
    Case("triu", lambda np_, x: np_.triu(x), uniform((3, 4))),
    Case("triu", lambda np_, x: np_.triu(x, 1), X, id="triu-batch"),
    Case("triu", lambda np_, x: np_.triu(x, -1), uniform((3,)), id="triu-1d"),
    Case("triu", lambda np_, x: np_.triu(x, 2), uniform((0, 3)), id="triu-zero-size"),
    Case("tril", lambda np_, x: np_.tril(x), uniform((4, 3))),
    Case("tril", lambda np_, x: np_.tril(x, -1), X, id="tril-batch"),
    Case("tril", lambda np_, x: np_.tril(x, 1), uniform((3,)), id="tril-1d"),
    Case("diagonal", lambda np_, x: np_.diagonal(x), uniform((3, 4))),
    Case("diagonal", lambda np_, x: np_.diagonal(x, 1), uniform((3, 4)), id="diagonal-above"),
    Case("diagonal", lambda np_, x: np_.diagonal(x, -2), uniform((3, 4)), id="diagonal-below"),
    Case("diagonal", lambda np_, x: np_.diagonal(x, 1, axis1=2, axis2=0), X, id="diagonal-axes"),
    Case("diagonal", lambda np_, x: np_.diagonal(x, -1, -1, -2), X, id="diagonal-negative-axes"),
    Case("diagonal", lambda np_, x: np_.diagonal(x, 5), uniform((3, 4)), id="diagonal-empty"),
    Case("diagonal", lambda np_, x: x.diagonal(), uniform((2, 2)), dispatch=False, id="diagonal-method"),
    Case("diag", lambda np_, x: np_.diag(x), uniform((3,))),
    Case("diag", lambda np_, x: np_.diag(x, 2), uniform((3,)), id="diag-above"),
    Case("diag", lambda np_, x: np_.diag(x, -1), uniform((3,)), id="diag-below"),
    Case("diag", lambda np_, x: np_.diag(x, 1), uniform((0,)), id="diag-empty"),
    Case("diag", lambda np_, x: np_.diag(x, -1), uniform((3, 4)), id="diag-2d"),
    Case("trace", lambda np_, x: np_.trace(x), uniform((3, 4))),
    Case("trace", lambda np_, x: np_.trace(x, 1, 2, 1), X, id="trace-axes"),
    Case("trace", lambda np_, x: np_.trace(x, -1, dtype=np.float32), uniform((3, 3)), order=0, id="trace-dtype"),
    Case("trace", lambda np_, x: x.trace(offset=1), uniform((3, 3)), dispatch=False, id="trace-method"),
]

# ---- insert and delete ---------------------------------------------------------------------------------------
CASES += [
    Case("delete", lambda np_, x: np_.delete(x, [0, 2], axis=2), X),
    Case("delete", lambda np_, x: np_.delete(x, slice(1, None, 2)), uniform((2, 3)), id="delete-flat"),
    Case("delete", lambda np_, x: np_.delete(x, -1, axis=0), uniform((2, 3)), id="delete-negative"),
    Case("delete", lambda np_, x: np_.delete(x, [], axis=0), uniform((2, 3)), id="delete-nothing"),
    Case("insert", lambda np_, x: np_.insert(x, 1, 5.0, axis=1), uniform((2, 3))),
    Case("insert", lambda np_, x, v: np_.insert(x, [1, 3], v, axis=-1), uniform((2, 3)), uniform((2, 1), seed=1),
         id="insert-broadcast"),
    Case("insert", lambda np_, x, v: np_.insert(x, 2, v), uniform((2, 3)), uniform((2,), seed=1),
         id="insert-flat"),
    Case("insert", lambda np_, x, v: np_.insert(x, [0, 0], v, axis=0), uniform((2, 2)), uniform((2,), seed=1),
         id="insert-repeated"),
]
CASES += [
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


# ---- r_, c_ and linspace --------------------------------------------------------------------------------
_COLUMN = uniform((3,), seed=5)
CASES += [
    Case("r_", lambda np_, x: np_.r_[x], uniform((3, 2)), dispatch=False),
    Case("r_", lambda np_, x: np_.r_[x, 2.5, x], uniform((3,)), dispatch=False, id="r_-number"),
    Case("r_", lambda np_, x: np_.r_[x, _COLUMN, 1:4, -1:1:3j], uniform((2,)), dispatch=False,
         id="r_-constants-and-slices"),
    Case("r_", lambda np_, a, b: np_.r_[a, b], uniform((3, 2)), uniform((1, 2), seed=1), dispatch=False,
         id="r_-two"),
    Case("r_", lambda np_, a, b: np_.r_["-1", a, b], uniform((2, 2)), uniform((2, 3), seed=1),
         dispatch=False, id="r_-axis-directive"),
    Case("r_", lambda np_, a, b: np_.r_["0,2,0", a, b], uniform((3,)), uniform((3,), seed=1),
         dispatch=False, id="r_-ndmin-directive"),
    Case("r_", lambda np_, a: np_.r_["1,3,1", a, a], uniform((2, 3)), dispatch=False,
         id="r_-trans1d-directive"),
    Case("r_", lambda np_, a: np_.r_[a, np.arange(2)], uniform((3,)), dispatch=False, id="r_-promotes"),
    Case("c_", lambda np_, x: np_.c_[x, _COLUMN, x], uniform((3,)), dispatch=False),
    Case("c_", lambda np_, a, b: np_.c_[a, b], uniform((3, 2)), uniform((3,), seed=1), dispatch=False,
         id="c_-matrix-and-column"),
    Case("c_", lambda np_, a: np_.c_[a, 0.5], uniform((1,)), dispatch=False, id="c_-number"),
]
CASES += [
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 5), uniform(()), uniform((), seed=1)),
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 4, endpoint=False), uniform(()),
         uniform((), seed=1), id="linspace-no-endpoint"),
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 1), uniform(()), uniform((), seed=1),
         id="linspace-one"),
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 0), uniform(()), uniform((), seed=1),
         id="linspace-none"),
    Case("linspace", lambda np_, a: np_.linspace(a, a, 3), uniform(()), id="linspace-equal-ends"),
    Case("linspace", lambda np_, a: np_.linspace(1.5, a, 6), uniform(()), id="linspace-number-start"),
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 3, axis=-1), uniform((2, 1)),
         uniform((3,), seed=1), id="linspace-arrays-axis"),
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 4, retstep=True), uniform((2,)),
         uniform((2,), seed=1), id="linspace-retstep"),
    Case("linspace", lambda np_, a: np_.linspace(a, 9.0, 5, dtype=int), uniform(()), wrt=(),
         id="linspace-int-dtype"),
    Case("linspace", lambda np_, a: np_.linspace(a, 3.0, 5), uniform((2,)).astype(np.float32), wrt=(),
         id="linspace-float32"),
    Case("linspace", lambda np_, a, b: np_.linspace(a, b, 3), uniform(()) + 1j, uniform((), seed=1),
         id="linspace-complex"),
]


def _constant_result(case):
    return case.name in ("shape", "ndim", "size", "zeros_like", "ones_like", "full_like", "empty_like",
                         "result_type", "iscomplexobj", "isrealobj")


@pytest.mark.parametrize("case", params([c for c in CASES if _constant_result(c)]))
def test_shape_queries_accept_differentiable_variables(case):
    # They read only the shape and dtype: no gradient can be lost, so nothing is refused.
    result = case.call(np, *case.variables())
    assert not isinstance(result, neuronika.Var)


def test_assignment_into_a_variable_points_to_at():
    v = neuronika.from_ndarray(np.zeros(3))
    with pytest.raises(TypeError, match=r"\.at\[idx\]\.set"):
        v[0] = 1.0


@pytest.mark.parametrize("join", [
    lambda np_, a: np_.stack([a, 1.5]),
    lambda np_, a: np_.stack([a, 2], axis=-1),
    lambda np_, a: np_.stack([1.5j, a]),
    lambda np_, a: np_.concatenate([np_.reshape(a, (1,)), [2.5]]),
], ids=["stack-float", "stack-int", "stack-complex", "concatenate-list"])
@pytest.mark.parametrize("dtype", [np.float32, np.int8])
def test_joins_make_python_numbers_arrays_as_numpy_does(join, dtype):
    # NumPy's joins convert each element on its own: a Python float is float64 there, not
    # typed weakly by its neighbour (stack([x32, 1.5]) was float32)
    a = np.ones((), dtype)
    want = join(np, a)
    got = join(neuronika.numpy, neuronika.from_ndarray(a))
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got.data, want)
