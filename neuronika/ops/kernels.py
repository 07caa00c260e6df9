"""NumPy kernels that op templates call where one NumPy expression will not do.

They are globals of every generated function, so generated code reads
``pad_fold(g5, ((1, 1), (0, 0)), 'reflect')``. Each is a pure function of
arrays and constants.
"""
from __future__ import annotations

import numpy as np

from .. import random as _random

__all__ = ["dropout_mask", "pad_fold", "log_where_nonzero"]


def dropout_mask(shape, p, dtype):
    """Keep each element with probability 1 - p, scaled by 1 / (1 - p) so the mean is kept."""
    if p >= 1.0:
        return np.zeros(shape, dtype)
    dtype = np.dtype(dtype)
    uniform = _random.generator().random(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    return (uniform >= p) * dtype.type(1.0 / (1.0 - p))


def log_where_nonzero(a):
    """log(a) where a != 0, and 0 where a == 0 (d(a ** b)/db at a == 0, b > 0, is 0)."""
    a = np.asarray(a)
    return np.log(a, out=np.zeros_like(a), where=a != 0)


def _along(ndim, axis, index):
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def pad_fold(dy, widths, mode):
    """The adjoint of ``reflect`` / ``edge`` padding: border gradients added back
    onto the elements they were copied from."""
    grad = np.array(dy, copy=True)
    for axis, (before, after) in enumerate(widths):
        if not before and not after:
            continue
        size = grad.shape[axis] - before - after
        core = grad[_along(grad.ndim, axis, slice(before, before + size))].copy()
        if mode == "edge":
            if before:
                core[_along(core.ndim, axis, slice(0, 1))] += grad[_along(grad.ndim, axis, slice(0, before))].sum(axis, keepdims=True)
            if after:
                core[_along(core.ndim, axis, slice(size - 1, size))] += grad[_along(grad.ndim, axis, slice(before + size, None))].sum(axis, keepdims=True)
        else:  # reflect: padded[before - j] = x[j] for j in 1..before, padded[before + size - 1 + j] = x[size - 1 - j]
            if before:
                core[_along(core.ndim, axis, slice(1, before + 1))] += np.flip(grad[_along(grad.ndim, axis, slice(0, before))], axis)
            if after:
                core[_along(core.ndim, axis, slice(size - 1 - after, size - 1))] += np.flip(grad[_along(grad.ndim, axis, slice(before + size, None))], axis)
        grad = core
    return grad
