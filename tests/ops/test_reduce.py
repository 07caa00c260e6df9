"""Reductions (sum, mean, max, min) and the softmax family.

Forward against NumPy in float32 and float64 for axis None / int / negative /
tuple with and without keepdims; gradients against float64 finite differences
(on tie-free values for max and min); closed forms: tie splitting, softmax
values, stability at |x| = 1000; axis errors.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import neuronika as nk
from neuronika.testing import check_grad

from .conftest import (LAYOUTS, assert_located, check_grad_views, const, diff, distinct, grads_of,
                       non_contiguous, uniform)

FILE = "test_reduce.py"
FAST = settings(max_examples=25, deadline=None)

REDUCTIONS = {
    "sum": np.sum,
    "mean": np.mean,
    "max": np.max,
    "min": np.min,
}


def reduce(name, x, axis, keepdims):
    return getattr(x, name)(axis=axis, keepdims=keepdims)


def tol(dtype):
    return dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)


AXES_3D = [None, 0, 1, 2, -1, -2, -3, (0,), (0, 2), (2, 0), (-1, 0), (0, 1, 2), [1, 2], ()]
CASES = ([((2, 3, 4), axis) for axis in AXES_3D]
         + [((5,), None), ((5,), 0), ((5,), -1), ((5,), (0,)), ((), None), ((3, 4), 1), ((3, 4), -2),
            ((1, 4), 0), ((3, 1), (0, 1))])


def case_id(case):
    shape, axis = case
    return f"{shape}-axis={axis}"


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_forward_matches_numpy(name, case, dtype, keepdims):
    shape, axis = case
    a = distinct(shape, seed=1, dtype=dtype)
    np_axis = tuple(axis) if isinstance(axis, list) else axis
    want = REDUCTIONS[name](a, axis=np_axis, keepdims=keepdims)
    for wrap in (const, diff):
        out = reduce(name, wrap(a), axis, keepdims)
        assert out.shape == np.shape(want)
        assert out.dtype == dtype
        data = out.data
        assert isinstance(data, np.ndarray) and data.dtype == dtype
        np.testing.assert_allclose(data, want, **tol(dtype))


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_grad(name, case, keepdims):
    shape, axis = case
    check_grad(lambda x: reduce(name, x, axis, keepdims), distinct(shape, seed=2))


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_default_arguments(name):
    a = distinct((3, 4), seed=3)
    out = getattr(diff(a), name)()
    assert out.shape == ()
    np.testing.assert_allclose(out.data, REDUCTIONS[name](a), rtol=1e-14)
    check_grad(lambda x: getattr(x, name)(), a)
    check_grad(lambda x: getattr(x, name)(1), a)
    check_grad(lambda x: getattr(x, name)(0, True), a)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)], ids=str)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_non_contiguous(name, axis, layout):
    a = non_contiguous(distinct((3, 4, 2), seed=4), layout)
    np.testing.assert_allclose(reduce(name, const(a), axis, False).data,
                               REDUCTIONS[name](np.array(a), axis=axis), rtol=1e-13)
    check_grad_views(lambda x: reduce(name, x, axis, False), a)
    check_grad_views(lambda x: reduce(name, x, axis, True), a)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_in_a_chain_with_broadcasting(name):
    """The reduced value broadcast back against the input (as in x - x.mean(axis))."""
    a = distinct((4, 3), seed=5)
    check_grad(lambda x: (x - reduce(name, x, 1, True)) * reduce(name, x, 0, False), a)
    check_grad(lambda x: reduce(name, x * x, -1, False).tanh(), a)


@st.composite
def reduction_case(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4))
    ndim = len(shape)
    if ndim == 0 or draw(st.booleans()):
        axis = None
    else:
        chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        negative = draw(st.lists(st.booleans(), min_size=len(chosen), max_size=len(chosen)))
        axis = tuple(a - ndim if n else a for a, n in zip(chosen, negative))
        if len(axis) == 1 and draw(st.booleans()):
            axis = axis[0]
    return shape, axis, draw(st.booleans()), draw(st.sampled_from(sorted(REDUCTIONS)))


@FAST
@given(case=reduction_case(), seed=st.integers(0, 1000))
def test_reduction_property(case, seed):
    shape, axis, keepdims, name = case
    a = distinct(shape, seed=seed)
    out = reduce(name, const(a), axis, keepdims)
    np.testing.assert_allclose(out.data, REDUCTIONS[name](a, axis=axis, keepdims=keepdims), rtol=1e-13)
    check_grad(lambda x: reduce(name, x, axis, keepdims), a)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_float32_gradient(name):
    a = distinct((3, 4), seed=6)
    for axis, keepdims in [(None, False), (1, False), (0, True), ((0, 1), True)]:
        _, (g64,) = grads_of(lambda x: reduce(name, x, axis, keepdims), a)
        out, (g32,) = grads_of(lambda x: reduce(name, x, axis, keepdims), a.astype(np.float32))
        assert out.dtype == np.float32 and g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-6, atol=1e-7)


def test_sum_and_mean_closed_form_gradients():
    x = diff(np.arange(6.0).reshape(2, 3))
    x.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))
    x.zero_grad()
    x.mean().backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 1 / 6), rtol=1e-15)
    x.zero_grad()
    x.mean(axis=0).backward(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(x.grad, [[0.5, 1.0, 1.5], [0.5, 1.0, 1.5]], rtol=1e-15)
    x.zero_grad()
    x.sum(axis=1, keepdims=True).backward(np.array([[2.0], [-1.0]]))
    np.testing.assert_array_equal(x.grad, [[2, 2, 2], [-1, -1, -1]])


# ---- ties ----------------------------------------------------------------------------------------

def test_max_with_ties_splits_the_gradient_evenly():
    x = diff(np.array([1.0, 3.0, 3.0]))
    y = x.max()
    assert y.item() == 3.0
    y.backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.5, 0.5])


def test_min_with_ties_splits_the_gradient_evenly():
    x = diff(np.array([2.0, -1.0, 5.0, -1.0, -1.0]))
    y = x.min()
    assert y.item() == -1.0
    y.backward()
    np.testing.assert_allclose(x.grad, [0.0, 1 / 3, 0.0, 1 / 3, 1 / 3], rtol=1e-15)


@pytest.mark.parametrize("keepdims", [False, True])
def test_max_min_ties_along_an_axis(keepdims):
    a = np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0], [4.0, 4.0, 4.0]])
    x = diff(a.copy())
    y = x.max(axis=1, keepdims=keepdims)
    np.testing.assert_array_equal(y.data.reshape(-1), [3.0, 2.0, 4.0])
    seed = np.array([1.0, 2.0, 3.0]).reshape(y.shape)
    y.backward(seed)
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [2, 0, 0], [1, 1, 1]], rtol=1e-15)

    b = np.array([[1.0, 0.0, 2.0], [1.0, 5.0, 2.0], [3.0, 0.0, 2.0]])
    x = diff(b.copy())
    y = x.min(axis=0, keepdims=keepdims)
    np.testing.assert_array_equal(y.data.reshape(-1), [1.0, 0.0, 2.0])
    y.backward(np.array([6.0, 2.0, 3.0]).reshape(y.shape))
    np.testing.assert_allclose(x.grad, [[3, 1, 1], [3, 0, 1], [0, 1, 1]], rtol=1e-15)


def test_max_ties_over_all_axes_of_a_matrix():
    x = diff(np.array([[5.0, 1.0], [5.0, 5.0]], np.float32))
    x.max().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [[1 / 3, 0], [1 / 3, 1 / 3]], rtol=1e-6)


# ---- softmax and log_softmax ---------------------------------------------------------------------

def np_softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(a, axis):
    return np.log(np_softmax(a, axis))


SOFTMAX = {"softmax": np_softmax, "log_softmax": np_log_softmax}
SOFTMAX_CASES = [((5,), -1), ((5,), 0), ((3, 4), 0), ((3, 4), 1), ((3, 4), -1), ((3, 4), -2),
                 ((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), 2), ((2, 3, 4), -1), ((1, 4), 0)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=case_id)
@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_forward_matches_numpy(name, case, dtype):
    shape, axis = case
    a = uniform(shape, -3.0, 3.0, seed=1).astype(dtype)
    want = SOFTMAX[name](a.astype(np.float64), axis)
    for wrap in (const, diff):
        out = getattr(wrap(a), name)(axis)
        assert out.shape == shape and out.dtype == dtype and out.data.dtype == dtype
        np.testing.assert_allclose(out.data, want, **tol(dtype))
    probabilities = diff(a).softmax(axis=axis).data
    np.testing.assert_allclose(probabilities.sum(axis=axis), 1.0, rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=case_id)
@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_grad(name, case):
    shape, axis = case
    a = uniform(shape, -3.0, 3.0, seed=2)
    check_grad(lambda x: getattr(x, name)(axis), a)
    check_grad(lambda x: getattr(x, name)(axis=axis), a)


@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_default_axis_is_last(name):
    a = uniform((3, 4), seed=3)
    np.testing.assert_allclose(getattr(diff(a), name)().data, SOFTMAX[name](a, -1), rtol=1e-13)
    check_grad(lambda x: getattr(x, name)(), a)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_non_contiguous(name, axis, layout):
    a = non_contiguous(uniform((3, 4, 2), seed=4), layout)
    np.testing.assert_allclose(getattr(const(a), name)(axis).data, SOFTMAX[name](np.array(a), axis),
                               rtol=1e-13, atol=1e-15)
    check_grad_views(lambda x: getattr(x, name)(axis), a)


@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_in_a_chain(name):
    a = uniform((4, 3), seed=5)
    w = uniform((3,), seed=6)
    check_grad(lambda x, v: (getattr(x * v, name)(1) * x).sum(axis=0), a, w)


@FAST
@given(a=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=4),
                    elements=st.floats(-5.0, 5.0)),
       data=st.data(), name=st.sampled_from(sorted(SOFTMAX)))
def test_softmax_property(a, data, name):
    axis = data.draw(st.integers(-a.ndim, a.ndim - 1))
    np.testing.assert_allclose(getattr(const(a), name)(axis).data, SOFTMAX[name](a, axis),
                               rtol=1e-12, atol=1e-14)
    check_grad(lambda x: getattr(x, name)(axis), a)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_closed_form(dtype):
    a = np.array([[-4.0, -3.0, -2.0], [-1.0, 0.0, 1.0], [2.0, 3.0, 4.0]], dtype)
    y = diff(a).softmax(axis=1)
    want = np.array([0.09003057, 0.24472847, 0.66524096])
    np.testing.assert_allclose(y.data, np.tile(want, (3, 1)), rtol=1e-6, atol=0)
    np.testing.assert_allclose(y.data, np.tile([0.090031, 0.244728, 0.665241], (3, 1)), atol=5e-7)
    log = diff(a).log_softmax(axis=1)
    np.testing.assert_allclose(log.data, np.tile(np.log(want), (3, 1)), rtol=1e-6)
    # along axis 0 of the transpose: each column is the same distribution
    np.testing.assert_allclose(diff(np.ascontiguousarray(a.T)).softmax(0).data,
                               np.tile(want[:, None], (1, 3)), rtol=1e-6)


def test_softmax_gradient_closed_form():
    """d softmax_i / d x_j = s_i (delta_ij - s_j); with seed e_k the gradient is s_k (e_k - s)."""
    a = np.array([0.5, -1.0, 2.0])
    s = np_softmax(a, 0)
    for k in range(3):
        x = diff(a.copy())
        seed = np.eye(3)[k]
        x.softmax().backward(seed)
        np.testing.assert_allclose(x.grad, s[k] * (seed - s), rtol=1e-13, atol=1e-16)
        x = diff(a.copy())
        x.log_softmax().backward(seed)
        np.testing.assert_allclose(x.grad, seed - s, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_family_stable_at_large_magnitude(dtype):
    a = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0], [1000.0, 1000.0, -1000.0]], dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        x = diff(a.copy())
        log = x.log_softmax(axis=1)
        data = log.data
        assert data.dtype == dtype and np.isfinite(data).all()
        np.testing.assert_allclose(data[0], [0.0, -2000.0, -1000.0], rtol=1e-6)
        np.testing.assert_allclose(data[1], np.full(3, -np.log(3.0)), rtol=1e-6)
        np.testing.assert_allclose(data[2], [-np.log(2.0), -np.log(2.0), -2000.0 - np.log(2.0)], rtol=1e-6)
        log.backward(np.ones((3, 3), dtype))
        assert x.grad.dtype == dtype and np.isfinite(x.grad).all()
        np.testing.assert_allclose(x.grad, [[-2, 1, 1], [0, 0, 0], [-0.5, -0.5, 1]], atol=1e-6)

        x = diff(a.copy())
        soft = x.softmax(axis=1)
        data = soft.data
        assert data.dtype == dtype and np.isfinite(data).all()
        np.testing.assert_allclose(data, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], atol=1e-7)
        soft.backward(np.array([[1.0, 0, 0], [1, 0, 0], [1, 0, 0]], dtype))
        assert np.isfinite(x.grad).all()
        np.testing.assert_allclose(x.grad, [[0, 0, 0], [2 / 9, -1 / 9, -1 / 9], [0.25, -0.25, 0]], atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [1, 10, 32, 33])
@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_over_a_short_last_axis_of_a_batch(name, classes, dtype):
    # up to 32 classes a 2-D batch is reduced in a transposed copy (kernels.softmax_along): the
    # values of the plain formula, first and second derivatives by finite differences
    a = uniform((70, classes), -6.0, 6.0, seed=9)
    a[3] += 500.0                           # a row far from the others: shifted by its own maximum
    given = a.astype(dtype)
    for axis in (1, -1):
        got = getattr(const(given), name)(axis).data
        assert got.dtype == dtype
        np.testing.assert_allclose(got, SOFTMAX[name](given.astype(np.float64), axis), **tol(dtype))
    nk.testing.check_grads(lambda x: getattr(x, name)(1), a[:6], order=2)


@pytest.mark.parametrize("shape", [(2, 3), (2, 40), (5,)])
@pytest.mark.parametrize("name", SOFTMAX)
def test_softmax_of_integers_is_float64(name, shape):
    a = np.arange(int(np.prod(shape))).reshape(shape) % 7
    got = getattr(const(a), name)(-1).data
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, SOFTMAX[name](a.astype(np.float64), -1), rtol=1e-13)


def test_log_softmax_is_log_of_softmax():
    a = uniform((4, 5), -4.0, 4.0, seed=8)
    np.testing.assert_allclose(diff(a).log_softmax(1).data, np.log(diff(a).softmax(1).data), rtol=1e-12)
    check_grad(lambda x: x.softmax(1).ln(), a)


# ---- errors ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [*REDUCTIONS, "softmax", "log_softmax"])
def test_axis_out_of_range(name):
    x = diff(np.ones((2, 3)))
    for axis in (2, -3, 5):
        with pytest.raises(nk.ShapeError) as excinfo:
            getattr(x, name)(axis=axis)
        assert isinstance(excinfo.value, ValueError)
        assert_located(excinfo, name, f"axis {axis}", file=FILE)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_axis_tuple_errors(name):
    x = diff(np.ones((2, 3)))
    with pytest.raises(nk.ShapeError) as excinfo:
        getattr(x, name)(axis=(0, 2))
    assert_located(excinfo, name, "axis 2", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        getattr(x, name)(axis=(1, -1))
    assert_located(excinfo, name, "repeats", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        getattr(x, name)(axis=1.0)
    assert_located(excinfo, name, "axis", file=FILE)


def test_reduction_of_a_0dim_value_over_an_axis():
    x = diff(np.array(2.0))
    with pytest.raises(nk.ShapeError) as excinfo:
        x.sum(axis=0)
    assert_located(excinfo, "sum", "axis 0", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.softmax()
    assert_located(excinfo, "softmax", file=FILE)
