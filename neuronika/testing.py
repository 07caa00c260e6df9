"""Gradient checking against central finite differences (float64).

>>> import numpy as np
>>> from neuronika.testing import check_grad
>>> check_grad(lambda x: (x * x).sum(), np.array([1.0, 2.0]))
"""
from __future__ import annotations

import numpy as np

from .creation import from_ndarray


def numerical_grads(fn, arrays, cotangent, eps=1e-6, wrt=None):
    """d(sum(cotangent * fn(*arrays)))/d(arrays[i]) by central differences."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    wrt = range(len(arrays)) if wrt is None else wrt

    def value():
        out = fn(*[from_ndarray(a) for a in arrays]).data
        return float(np.sum(cotangent * out))

    grads = []
    for i in wrt:
        array = arrays[i]
        grad = np.zeros_like(array)
        flat, gflat = array.reshape(-1), grad.reshape(-1)
        for k in range(flat.size):
            keep = flat[k]
            flat[k] = keep + eps
            up = value()
            flat[k] = keep - eps
            down = value()
            flat[k] = keep
            gflat[k] = (up - down) / (2 * eps)
        grads.append(grad)
    return grads


def numerical_jacobian(fn, x, eps=1e-6):
    """d fn(x) / d x by central differences, shaped ``fn(x).shape + x.shape``;
    ``fn`` maps a float64 NumPy array to an array (or number).

    >>> import numpy as np
    >>> numerical_jacobian(lambda v: v * v, np.array([1.0, 2.0])).round(6)
    array([[2., 0.],
           [0., 4.]])
    """
    x = np.array(x, dtype=np.float64)
    base = np.asarray(fn(x))
    jacobian = np.zeros(base.shape + x.shape)
    flat = x.reshape(-1)
    for k in range(flat.size):
        keep = flat[k]
        flat[k] = keep + eps
        up = np.asarray(fn(x))
        flat[k] = keep - eps
        down = np.asarray(fn(x))
        flat[k] = keep
        jacobian[(Ellipsis,) + np.unravel_index(k, x.shape)] = (up - down) / (2 * eps)
    return jacobian


def check_grad(fn, *arrays, rtol=1e-6, atol=1e-7, eps=1e-6, seed=0, wrt=None, scalar_seed=False):
    """Assert that neuronika's gradients of ``fn`` match finite differences.

    ``fn`` maps Vars to a Var; each array becomes a float64 differentiable leaf
    (those listed in ``wrt``, default all). A non-scalar output is contracted with
    a random cotangent passed as the backward seed (or seeded with 1.0 when
    ``scalar_seed``), so every output element is checked.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    leaves = [from_ndarray(a.copy()) for a in arrays]
    leaves = [v.requires_grad() if i in wrt else v for i, v in enumerate(leaves)]
    out = fn(*leaves)
    if scalar_seed or out.shape == ():
        cotangent = np.ones(out.shape)
        out.backward(1.0)
    else:
        cotangent = np.random.default_rng(seed).standard_normal(out.shape)
        out.backward(cotangent)
    expected = numerical_grads(fn, arrays, cotangent, eps=eps, wrt=wrt)
    for i, want in zip(wrt, expected):
        got = leaves[i].grad
        assert got.shape == arrays[i].shape, f"gradient {i}: shape {got.shape}, input {arrays[i].shape}"
        assert got.dtype == np.float64, f"gradient {i}: dtype {got.dtype}"
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i} differs from finite differences")
