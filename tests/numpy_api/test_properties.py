"""Properties over generated shapes (hypothesis): broadcasting binary functions and
reductions over any axis agree with NumPy in value and dtype, and their gradients
with finite differences."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import neuronika
import neuronika.numpy as nnp
from neuronika.testing import check_grads

SETTINGS = settings(max_examples=30, deadline=None)

BINARY = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "arctan2", "hypot",
          "logaddexp", "power"]
REDUCTIONS = ["sum", "mean", "prod", "max", "min", "std", "var", "cumsum"]


def _values(shape, seed, lo=0.5, hi=2.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(lo, hi, shape) * np.where(rng.random(shape) < 0.5, -1.0, 1.0)


@SETTINGS
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
       name=st.sampled_from(BINARY), seed=st.integers(0, 2 ** 16))
def test_binary_functions_broadcast_like_numpy(shapes, name, seed):
    shape_a, shape_b = shapes.input_shapes
    a, b = _values(shape_a, seed), _values(shape_b, seed + 1)
    if name == "power":
        a = np.abs(a)                       # a real power needs a positive base
    fn = getattr(nnp, name)
    want = getattr(np, name)(a, b)
    got = fn(neuronika.from_ndarray(a), neuronika.from_ndarray(b)).data
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
    if name not in ("maximum", "minimum"):  # kinks where the operands tie; tested elsewhere
        check_grads(fn, a, b, order=1, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), data=st.data(),
       name=st.sampled_from(REDUCTIONS), seed=st.integers(0, 2 ** 16))
def test_reductions_over_any_axes_match_numpy(shape, data, name, seed):
    ndim = len(shape)
    if name == "cumsum":
        axis = data.draw(st.integers(-ndim, ndim - 1))
        keep = {}
    else:
        axes = data.draw(st.lists(st.integers(0, ndim - 1), unique=True, max_size=ndim))
        axis = None if not axes else tuple(axes) if len(axes) > 1 else axes[0]
        keep = {"keepdims": data.draw(st.booleans())}
    n = int(np.prod(shape))
    x = np.random.default_rng(seed).permutation(np.arange(1, n + 1) * 0.37 - n * 0.2).reshape(shape)
    fn = getattr(nnp, name)
    want = getattr(np, name)(x, axis=axis, **keep)
    got = fn(neuronika.from_ndarray(x), axis=axis, **keep).data
    assert got.shape == np.shape(want) and got.dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    reduced = [shape[a] for a in (range(ndim) if axis is None else np.atleast_1d(axis))]
    if name == "std" and np.prod(reduced) == 1:
        return                              # std of one element is 0: sqrt's kink, no gradient
    check_grads(lambda v: fn(v, axis=axis, **keep), x, order=1, rtol=1e-5, atol=1e-6)
