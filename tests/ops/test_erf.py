"""erf without SciPy (``kernels._erf_numpy``: W. J. Cody's rational approximations, vectorised,
and math.erf per element for small arrays) against math.erf on dense grids, tails, zeros, signed
zeros, infinities, nan and subnormals, in float32 and float64; and the GELU and erf ops with and
without SciPy (its import made to fail).

Measured bounds, asserted below: at most 3 ulp from math.erf in float64 (SciPy's erf is at most 3
ulp off on the same grid); in float32 equal to math.erf rounded to float32; erfc of the tail
within 8 ulp relative on [0.5, 6] (7 measured)."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import functional as F
from neuronika.numpy._special import erf
from neuronika.ops import kernels
from neuronika.testing import check_grads

MAX_ULP_F64 = 3


@pytest.fixture
def no_scipy(monkeypatch):
    """The kernels as they run where SciPy is not installed."""
    monkeypatch.setitem(sys.modules, "scipy.special", None)       # the import fails
    monkeypatch.setattr(kernels, "_ERF", [])
    yield
    kernels._ERF.clear()


@pytest.fixture
def vectorised(monkeypatch):
    """Cody's vectorised path at every size (math.erf per element is used below 1024 elements)."""
    monkeypatch.setattr(kernels, "_ERF_PER_ELEMENT", 0)


def ulps(got, want, dtype):
    """|got - want| in units of the last place of want rounded to dtype (subnormal spacing at 0)."""
    want = np.asarray(want, np.float64)
    unit = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    return np.abs(np.asarray(got, np.float64) - want) / unit


def grid():
    tiny = np.geomspace(5e-324, 1e-300, 2001)
    return np.concatenate([
        np.linspace(-7, 7, 280_001),                      # step 5e-5 through every region
        np.linspace(0.45, 0.55, 20_001), np.linspace(3.95, 4.05, 20_001),   # the switches
        np.geomspace(1e-300, 8, 50_001), -np.geomspace(1e-300, 8, 50_001),
        tiny, -tiny,                                      # subnormals and the smallest normals
        [0.5, np.nextafter(0.5, 0), np.nextafter(0.5, 1), 4.0, np.nextafter(4.0, 5), 5.9, 6.0,
         6.5, 27.0, 1e10, 1e300, np.finfo(np.float64).max, np.finfo(np.float64).tiny],
    ])


def test_float64_within_3_ulp_of_math_erf():
    x = grid()
    want = np.array([math.erf(t) for t in x])
    got = kernels._erf_numpy(x)
    assert got.dtype == np.float64 and got.shape == x.shape
    assert ulps(got, want, np.float64).max() <= MAX_ULP_F64
    odd = kernels._erf_numpy(-x)
    np.testing.assert_array_equal(odd, -got)


def test_float32_is_math_erf_rounded():
    x = grid()
    x32 = np.concatenate([x[np.abs(x) < 3e38].astype(np.float32),
                          np.float32([1e-45, -1e-45, 1e-40, 1.1754944e-38, 3e38, -3e38])])
    got = kernels._erf_numpy(x32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.array([math.erf(float(t)) for t in x32]).astype(np.float32))


@pytest.mark.parametrize("size", [8, 4096], ids=["per-element", "vectorised"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(size, dtype):
    tiny = np.finfo(dtype).smallest_subnormal
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, tiny, -tiny], dtype)
    x = np.concatenate([special, np.full(size - special.size, 0.25, dtype)])
    y = kernels._erf_numpy(x)
    assert y.dtype == dtype
    assert y[0] == 0 and not np.signbit(y[0])
    assert y[1] == 0 and np.signbit(y[1])
    assert y[2] == 1 and y[3] == -1
    assert np.isnan(y[4])
    # erf(x) = 2 x / sqrt(pi) near 0: a subnormal x gives the subnormal nearest to it
    want = np.array(2 / math.sqrt(math.pi) * float(tiny), np.float64).astype(dtype)
    assert y[5] == want and y[6] == -want
    assert y[7] == np.asarray(math.erf(0.25), dtype)


@pytest.mark.parametrize("size", [1, 5, 1023, 1024, 5000])
def test_sizes_shapes_and_dtypes(size):
    x = np.linspace(-5, 5, size).reshape(-1, 1) if size > 1 else np.array(0.75)
    y = kernels._erf_numpy(x)
    assert y.shape == x.shape and y.dtype == np.float64
    want = np.vectorize(math.erf)(x)
    assert ulps(y, want, np.float64).max() <= MAX_ULP_F64
    if size < kernels._ERF_PER_ELEMENT:
        np.testing.assert_array_equal(y, want)          # math.erf itself
    assert kernels._erf_numpy(x.astype(np.float16)).dtype == np.float16
    ints = kernels._erf_numpy(np.arange(-3, size - 3).reshape(x.shape) if size > 1 else np.array(1))
    assert ints.dtype == np.float64


@pytest.mark.parametrize("per_element", [1024, 0])
def test_zero_d_gives_a_scalar(per_element, monkeypatch):
    monkeypatch.setattr(kernels, "_ERF_PER_ELEMENT", per_element)
    y = kernels._erf_numpy(np.float32(0.5))
    assert isinstance(y, np.float32) and y == np.float32(math.erf(0.5))


def test_erfc_of_the_tail_keeps_relative_accuracy():
    z = np.linspace(0.5, 6.0, 100_001)
    want = np.array([math.erfc(t) for t in z])
    got = kernels._erfc_into(z.copy(), np.empty_like(z), np.empty_like(z), np.empty_like(z))
    assert (np.abs(got - want) / np.spacing(want)).max() <= 8


def test_erf_kernel_without_scipy_uses_cody(no_scipy):
    assert kernels._erf_ufunc() is kernels._erf_numpy
    x = np.linspace(-6, 6, 3001)
    y = kernels.erf(x)
    assert ulps(y, [math.erf(t) for t in x], np.float64).max() <= MAX_ULP_F64
    assert kernels.erf(x.astype(np.float32)).dtype == np.float32


def test_erf_op_values_and_derivatives_without_scipy(no_scipy, vectorised):
    x = np.array([-4.5, -2.5, -0.49, -0.3, 0.0, 0.51, 0.7, 4.0, 5.5])
    np.testing.assert_allclose(erf(x), [math.erf(t) for t in x], rtol=4e-16, atol=0)
    check_grads(lambda v: erf(v), x, rtol=1e-6, atol=1e-8)
    g = nk.grad(lambda v: erf(v).sum())(x)
    np.testing.assert_allclose(g, 2 / math.sqrt(math.pi) * np.exp(-x * x), rtol=1e-15)


def test_erf_op_broadcast_derivatives_without_scipy(no_scipy, vectorised):
    a = np.random.default_rng(3).standard_normal((3, 4)) * 2
    b = np.random.default_rng(4).standard_normal(4)
    check_grads(lambda u, v: erf(u * v), a, b, rtol=1e-6, atol=1e-8)


def gelu_values_and_grads(x, approximate="none"):
    return nk.value_and_grad(lambda v: (F.gelu(v, approximate) * np.cos(np.arange(v.size)).reshape(v.shape)).sum())(x)


@pytest.mark.parametrize("shape", [(7,), (40, 64)], ids=["per-element", "vectorised"])
def test_gelu_is_the_same_with_and_without_scipy(shape, monkeypatch):
    pytest.importorskip("scipy.special")
    x = np.random.default_rng(7).standard_normal(shape) * 3
    x.flat[:4] = [-9.0, -0.0, 0.5, 9.0]
    with_scipy = gelu_values_and_grads(x)
    kernels._ERF.clear()
    monkeypatch.setitem(sys.modules, "scipy.special", None)
    try:
        assert kernels._erf_ufunc() is kernels._erf_numpy
        without = gelu_values_and_grads(x)
        y_without = F.gelu(x).data
    finally:
        kernels._ERF.clear()
    monkeypatch.undo()
    assert kernels._erf_ufunc() is not kernels._erf_numpy
    np.testing.assert_allclose(without[0], with_scipy[0], rtol=1e-13)
    # Phi(x) = (1 + erf(x / sqrt(2))) / 2 cancels for x < 0: each erf's few ulp are absolute errors
    np.testing.assert_allclose(without[1], with_scipy[1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(y_without, F.gelu(x).data, rtol=1e-14, atol=1e-15)


def test_gelu_without_scipy_closed_forms_and_derivatives(no_scipy, vectorised):
    phi = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)     # noqa: E731
    cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))           # noqa: E731
    x = np.array([-30.0, -3.0, -1.0, -0.0, 0.5, 1.0, 3.0, 30.0])
    y = F.gelu(x).data
    # 1 + erf(x / sqrt(2)) cancels for x < 0 (as in PyTorch and with SciPy): erf's few ulp,
    # relative to Phi(x), are the error
    np.testing.assert_allclose(y, [t * cdf(t) for t in x], rtol=1e-12, atol=1e-300)
    g = nk.grad(lambda v: F.gelu(v).sum())(x)
    np.testing.assert_allclose(g, [cdf(t) + t * phi(t) for t in x], rtol=1e-12, atol=1e-300)
    xs = np.random.default_rng(12).standard_normal((2, 3)) * 2
    check_grads(lambda v: F.gelu(v), xs, rtol=1e-6, atol=1e-8)
    check_grads(lambda v, w: F.gelu(v * w), xs, np.array([0.5, -1.0, 2.0]), rtol=1e-6, atol=1e-8)


def test_gelu_and_erf_methods_are_the_functions():
    x = np.random.default_rng(13).standard_normal((3, 4)) * 2
    v = nk.from_ndarray(x)
    np.testing.assert_array_equal(v.erf().data, nk.erf(x).data)
    np.testing.assert_array_equal(v.gelu().data, F.gelu(x).data)
    np.testing.assert_array_equal(v.gelu("tanh").data, F.gelu(x, "tanh").data)
    with pytest.raises(ValueError, match="gelu: approximate must be 'none' or 'tanh'"):
        v.gelu("exact")
    check_grads(lambda u: u.gelu() + u.erf() * u.gelu("tanh"), x, rtol=1e-6, atol=1e-8)
