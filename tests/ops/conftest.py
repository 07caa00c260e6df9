"""Shared helpers for the per-op tests.

The helpers are imported by the test modules (``from .conftest import ...``);
they are plain functions so they work inside hypothesis tests, where
function-scoped fixtures would be reset only once per test.
"""
from __future__ import annotations

import numpy as np

import neuronika as nk
from neuronika.testing import numerical_grads


def rng(seed=0):
    return np.random.default_rng(seed)


def uniform(shape, lo=-2.0, hi=2.0, seed=0, dtype=np.float64):
    """Uniform values on [lo, hi)."""
    return np.asarray(rng(seed).uniform(lo, hi, size=shape), dtype=dtype)


def away(shape, lo=0.2, hi=2.0, seed=0, dtype=np.float64):
    """Values with lo <= |v| < hi and random signs: away from a kink at 0."""
    r = rng(seed)
    magnitude = r.uniform(lo, hi, size=shape)
    sign = np.where(r.random(size=shape) < 0.5, -1.0, 1.0)
    return np.asarray(sign * magnitude, dtype=dtype)


def distinct(shape, seed=0, gap=0.25, dtype=np.float64):
    """Values that are pairwise at least ``gap`` apart (no ties for max/min)."""
    n = int(np.prod(shape, dtype=np.int64))
    values = (np.arange(n) - n / 2.0) * gap
    return np.asarray(rng(seed).permutation(values).reshape(shape), dtype=dtype)


def diff(array):
    """A differentiable leaf over ``array`` (shared, so views stay views)."""
    return nk.from_ndarray(array).requires_grad()


def const(array):
    """A non-differentiable leaf over ``array``."""
    return nk.from_ndarray(array)


def non_contiguous(array, kind):
    """An array equal to ``array`` laid out differently: a Fortran copy, a
    transposed view, or a strided view into a larger buffer."""
    array = np.asarray(array)
    if kind == "fortran":
        out = np.asfortranarray(array)
    elif kind == "transposed":
        out = np.ascontiguousarray(np.swapaxes(array, 0, -1)).swapaxes(0, -1) if array.ndim else array
    elif kind == "strided":
        big = np.zeros(tuple(2 * d for d in array.shape) or (), array.dtype)
        view = big[tuple(slice(None, None, 2) for _ in array.shape)]
        view[...] = array
        out = view
    else:
        raise ValueError(kind)
    np.testing.assert_array_equal(out, array)
    if array.ndim >= 2 and min(array.shape) > 1 or kind == "strided" and array.size > 1:
        assert not out.flags.c_contiguous, kind
    return out


LAYOUTS = ("fortran", "transposed", "strided")


def check_grad_views(fn, *arrays, rtol=1e-6, atol=1e-7, eps=1e-6, seed=0, wrt=None):
    """Like ``neuronika.testing.check_grad`` but the leaves are built over the
    given arrays themselves (not over contiguous copies), so non-contiguous
    layouts reach the generated code. Also checks the inputs are not modified."""
    arrays = [np.asarray(a) for a in arrays]
    for a in arrays:
        assert a.dtype == np.float64
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    before = [a.copy() for a in arrays]
    leaves = [diff(a) if i in wrt else const(a) for i, a in enumerate(arrays)]
    out = fn(*leaves)
    cotangent = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(cotangent if out.shape else 1.0)
    if not out.shape:
        cotangent = np.ones(())
    expected = numerical_grads(fn, [a.copy() for a in arrays], cotangent, eps=eps, wrt=wrt)
    for i, want in zip(wrt, expected):
        got = leaves[i].grad
        assert got.shape == arrays[i].shape
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i} differs from finite differences")
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b, err_msg="an input array was modified")
    return out


def grads_of(fn, *arrays, seed=0, wrt=None):
    """(output value, gradients) with leaves over ``arrays`` (any float dtype),
    backward seeded with a fixed random cotangent (1.0 for a 0-dim output)."""
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    leaves = [diff(a) if i in wrt else const(a) for i, a in enumerate(arrays)]
    out = fn(*leaves)
    if out.shape:
        out.backward(np.random.default_rng(seed).standard_normal(out.shape))
    else:
        out.backward(1.0)
    return out, [leaves[i].grad for i in wrt]


def assert_located(excinfo, *fragments, file):
    """The error message names every fragment and the test file (the user's line)."""
    message = str(excinfo.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert file in message, f"{file!r} not in {message!r}"
