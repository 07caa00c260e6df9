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
    if any(np.iscomplexobj(a) for a in arrays):           # complex: check_grads' convention
        return check_grads(fn, *arrays, order=1, wrt=wrt, rtol=rtol, atol=atol, eps=eps, seed=seed)
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


def _numerical_gradient(objective, arrays, wrt, eps):
    """d objective / d arrays[i] for i in ``wrt`` by central differences; for a complex
    array, HIPS autograd's convention: d/d(real part) - 1j * d/d(imaginary part)."""
    grads = []
    for i in wrt:
        array = arrays[i]
        grad = np.zeros_like(array)
        flat, gflat = array.reshape(-1), grad.reshape(-1)
        steps = (eps, 1j * eps) if array.dtype.kind == "c" else (eps,)
        for k in range(flat.size):
            keep = flat[k]
            for step in steps:
                flat[k] = keep + step
                up = objective(arrays)
                flat[k] = keep - step
                down = objective(arrays)
                flat[k] = keep
                slope = (up - down) / (2 * eps)
                gflat[k] += slope if step == eps else -1j * slope
        grads.append(grad)
    return grads


def _random_like(rng, shape, dtype):
    value = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        value = value + 1j * rng.standard_normal(shape)
    return value


def check_grads(fn, *arrays, order=2, wrt=None, rtol=1e-6, atol=1e-7, eps=1e-6, seed=0,
                imperative=True):
    """Assert that the gradients of ``fn`` match central finite differences, up to ``order``.

    ``fn`` maps variables to a variable (any shape; a non-scalar output is contracted
    with a fixed random cotangent). Checked, for the arguments in ``wrt`` (default all):

    - order 1: ``neuronika.grad`` (compiled code) and, with ``imperative``,
      ``backward()`` on leaves, against differences of the function's value;
    - order 2: the gradient of ``<grad(f)(x), v>`` for a random direction ``v`` (the
      gradient built as a graph and compiled again) against differences of the
      compiled first-order gradient.

    Float arrays are converted to float64, complex ones to complex128; integer and boolean
    arrays (indices, masks) are data and stay as they are. Complex inputs follow
    HIPS autograd's convention: the gradient is d/d(re) - 1j * d/d(im) of the real objective.

    >>> import numpy as np
    >>> from neuronika.testing import check_grads
    >>> check_grads(lambda x: x ** 3, np.array([1.0, -2.0]))
    """
    from . import functional, numpy as nnp
    arrays = [_as_checked(a) for a in arrays]
    wrt = list(range(len(arrays))) if wrt is None else list(wrt)
    rng = np.random.default_rng(seed)
    out_value = np.asarray(fn(*[from_ndarray(a.copy()) for a in arrays]).data)
    cotangent = _random_like(rng, out_value.shape, out_value.dtype)

    def objective(*xs):
        value = nnp.sum(fn(*xs) * cotangent)
        return nnp.real(value) if value.dtype.kind == "c" else value

    def objective_value(values):
        return float(objective(*[from_ndarray(v) for v in values]).data)

    first = functional.grad(objective, argnums=tuple(wrt))
    got = first(*[a.copy() for a in arrays])
    want = _numerical_gradient(objective_value, [a.copy() for a in arrays], wrt, eps)
    for i, g, w in zip(wrt, got, want):
        _compare(g, w, arrays[i], rtol, atol, f"first-order gradient of input {i} (neuronika.grad)")

    if imperative:
        leaves = [from_ndarray(a.copy()) for a in arrays]
        leaves = [v.requires_grad() if i in wrt else v for i, v in enumerate(leaves)]
        out = fn(*leaves)
        out.backward(cotangent if out.shape else cotangent.item())
        for i, w in zip(wrt, want):
            _compare(leaves[i].grad, w, arrays[i], rtol, atol,
                     f"first-order gradient of input {i} (backward)")

    if order < 2:
        return
    directions = [_random_like(rng, arrays[i].shape, arrays[i].dtype) for i in wrt]

    def projected(*xs):
        grads = first(*xs)
        total = 0.0
        for g, d in zip(grads, directions):
            total = total + nnp.sum(nnp.real(g * np.conj(d)) if np.iscomplexobj(d) else g * d)
        return total

    def projected_value(values):
        grads = first(*[v.copy() for v in values])
        return float(sum(np.sum(np.real(g * np.conj(d))) for g, d in zip(grads, directions)))

    second = functional.grad(projected, argnums=tuple(wrt))(*[a.copy() for a in arrays])
    want = _numerical_gradient(projected_value, [a.copy() for a in arrays], wrt, eps)
    for i, g, w in zip(wrt, second, want):
        _compare(g, w, arrays[i], 10 * rtol, 10 * atol, f"second-order gradient of input {i}")


def _as_checked(a):
    a = np.asarray(a)
    if a.dtype.kind == "c":
        return a.astype(np.complex128)
    if a.dtype.kind in "biu":
        return a.copy()
    return a.astype(np.float64)


def _compare(got, want, array, rtol, atol, what):
    got = np.asarray(got)
    assert got.shape == array.shape, f"{what}: shape {got.shape}, input {array.shape}"
    assert got.dtype == array.dtype, f"{what}: dtype {got.dtype}, input {array.dtype}"
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"{what} differs from finite differences")


def oracle(name):
    """Import ``name``, a library the test suite compares against (the ``test-oracles`` extra:
    PyTorch's CPU build, scikit-learn). A missing oracle fails the test: it never skips, so a
    run that lacks one cannot pass unnoticed.

    >>> oracle("numpy").__name__
    'numpy'
    """
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"this test compares against {name}, which is not installed; install the "
                          f"oracles: pip install -e \".[test,test-oracles]\"") from None
