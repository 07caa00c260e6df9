"""Convolution and pooling ops: conv (1-, 2- and 3-D, stride, dilation, groups), its
adjoint ops conv_transpose and conv_weight_grad, max_pool (with max_pool_grad and
max_pool_gather) and avg_pool (with avg_pool_grad).

Output shapes by PyTorch's formula; forward against naive NumPy loops in float32 and
float64; gradients (input and kernel, any mix of Var and VarDiff) against float64
finite differences, also through every padding mode and on non-contiguous inputs;
second derivatives through each op; shape errors; the generated code; and, when
torch is installed, forward and gradients against torch.nn.functional.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuronika as nk
from neuronika.graph import apply
from neuronika.nn.conv import conv
from neuronika.ops import OPS
from neuronika.testing import oracle, check_grad, check_grads, numerical_jacobian
from neuronika.variable import _wrap

from .conftest import LAYOUTS, assert_located, check_grad_views, const, diff, distinct, non_contiguous, uniform

FILE = "test_conv.py"
FAST = settings(max_examples=25, deadline=None)


def op(name, *inputs, attrs=()):
    return _wrap(apply(OPS[name], tuple(v._node for v in inputs), attrs))


def raw_conv(x, w, stride=None, dilation=None, groups=1):
    n = w.ndim - 2
    return op("conv", x, w, attrs=(stride or (1,) * n, dilation or (1,) * n, groups))


def out_size(size, k, stride=1, padding=0, dilation=1):
    """PyTorch's formula (Conv and pooling docs)."""
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


# ---- naive references ------------------------------------------------------------------------------

def ref_conv(x, w, stride, dilation, groups):
    """A loop over output positions and output channels; x already padded."""
    n, c = x.shape[:2]
    co, kernel = w.shape[0], w.shape[2:]
    out = [out_size(s, k, t, 0, d) for s, k, t, d in zip(x.shape[2:], kernel, stride, dilation)]
    y = np.zeros((n, co) + tuple(out), np.result_type(x, w))
    per_in, per_out = c // groups, co // groups
    for pos in np.ndindex(*out):
        window = tuple(slice(p * t, p * t + d * (k - 1) + 1, d)
                       for p, t, d, k in zip(pos, stride, dilation, kernel))
        for o in range(co):
            g = o // per_out
            patch = x[(slice(None), slice(g * per_in, (g + 1) * per_in)) + window]
            y[(slice(None), o) + pos] = (patch * w[o]).reshape(n, -1).sum(axis=1)
    return y


def ref_pool(x, kernel, stride, reduce):
    lead = x.ndim - len(kernel)
    out = [out_size(s, k, t) for s, k, t in zip(x.shape[lead:], kernel, stride)]
    y = np.zeros(x.shape[:lead] + tuple(out), x.dtype if x.dtype.kind == "f" else np.float64)
    for pos in np.ndindex(*out):
        window = tuple(slice(p * t, p * t + k) for p, t, k in zip(pos, stride, kernel))
        patch = x[(Ellipsis,) + window].reshape(x.shape[:lead] + (-1,))
        y[(Ellipsis,) + pos] = reduce(patch, axis=-1)
    return y


# ---- conv: shapes and forward ---------------------------------------------------------------------------

# (x shape, w shape, stride, dilation, groups)
CONVS = [
    ((2, 3, 9), (4, 3, 3), (1,), (1,), 1),
    ((2, 4, 10), (6, 2, 4), (3,), (2,), 2),
    ((1, 2, 7), (3, 2, 7), (1,), (1,), 1),                   # kernel as wide as the input
    ((2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1), 1),
    ((2, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 2), 2),
    ((1, 6, 8, 7), (6, 1, 2, 3), (2, 3), (3, 1), 6),         # depthwise
    ((3, 2, 5, 5), (5, 2, 1, 1), (1, 1), (1, 1), 1),         # 1x1: no copy, no col2im loop
    ((2, 2, 6, 7), (3, 2, 1, 1), (2, 3), (1, 1), 1),         # 1x1 with stride
    ((1, 2, 4, 5, 6), (3, 2, 2, 3, 2), (1, 2, 1), (2, 1, 2), 1),
    ((2, 4, 5, 4, 4), (2, 2, 3, 2, 2), (2, 1, 2), (1, 1, 1), 2),
]


def conv_id(case):
    x, w, s, d, g = case
    return f"x{x}-w{w}-s{s}-d{d}-g{g}"


@pytest.mark.parametrize("case", CONVS, ids=conv_id)
def test_conv_shape_follows_pytorch(case):
    x_shape, w_shape, stride, dilation, groups = case
    y = raw_conv(const(np.zeros(x_shape)), const(np.zeros(w_shape)), stride, dilation, groups)
    want = (x_shape[0], w_shape[0]) + tuple(out_size(s, k, t, 0, d) for s, k, t, d
                                              in zip(x_shape[2:], w_shape[2:], stride, dilation))
    assert y.shape == want


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONVS, ids=conv_id)
def test_conv_forward_against_loops(case, dtype):
    x_shape, w_shape, stride, dilation, groups = case
    x, w = uniform(x_shape, seed=1).astype(dtype), uniform(w_shape, seed=2).astype(dtype)
    want = ref_conv(x, w, stride, dilation, groups)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for wrap_x, wrap_w in [(const, const), (diff, const), (const, diff), (diff, diff)]:
        y = raw_conv(wrap_x(x), wrap_w(w), stride, dilation, groups)
        assert y.dtype == dtype and y.data.dtype == dtype
        np.testing.assert_allclose(y.data, want, **tol)


@FAST
@given(st.data())
def test_conv_forward_random_geometry(data):
    dims = data.draw(st.integers(1, 3))
    groups = data.draw(st.sampled_from([1, 2]))
    c_in, c_out = groups * data.draw(st.integers(1, 2)), groups * data.draw(st.integers(1, 2))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(dims))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(dims))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(dims))
    sizes = tuple(d * (k - 1) + 1 + data.draw(st.integers(0, 3)) for k, d in zip(kernel, dilation))
    x = uniform((data.draw(st.integers(1, 2)), c_in) + sizes, seed=3)
    w = uniform((c_out, c_in // groups) + kernel, seed=4)
    y = raw_conv(const(x), const(w), stride, dilation, groups)
    np.testing.assert_allclose(y.data, ref_conv(x, w, stride, dilation, groups), rtol=1e-12, atol=1e-12)


def test_conv_mixed_dtypes_and_integer_data():
    x = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(1, 2, 3, 5)
    w = uniform((2, 2, 2, 2), seed=5).astype(np.float32)
    y = raw_conv(const(x), diff(w))
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.data, ref_conv(x.astype(np.float64), w, (1, 1), (1, 1), 1), rtol=1e-5)
    wv = diff(w)
    (raw_conv(const(x), wv) * 1.0).sum().backward()
    assert wv.grad.dtype == np.float32
    x32, w64 = diff(uniform((1, 2, 4, 4), seed=6).astype(np.float32)), diff(uniform((1, 2, 3, 3), seed=7))
    y = raw_conv(x32, w64)
    assert y.dtype == np.float64
    y.sum().backward()
    assert x32.grad.dtype == np.float32 and w64.grad.dtype == np.float64


def test_conv_zero_batch():
    x, w = diff(np.zeros((0, 2, 5, 5))), diff(uniform((3, 2, 3, 3)))
    y = raw_conv(x, w)
    assert y.shape == (0, 3, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(w.grad, np.zeros((3, 2, 3, 3)))


# ---- conv: gradients -------------------------------------------------------------------------------------

GRAD_CONVS = [
    ((2, 2, 7), (3, 2, 3), (2,), (1,), 1),
    ((1, 4, 9), (4, 2, 2), (1,), (3,), 2),
    ((2, 2, 5, 6), (3, 2, 3, 2), (1, 1), (1, 1), 1),
    ((1, 4, 7, 6), (4, 2, 2, 3), (2, 1), (2, 1), 2),          # groups, stride, dilation together
    ((1, 4, 6, 7), (4, 2, 2, 3), (1, 1), (2, 2), 2),          # stride 1: the wide-column adjoint
    ((1, 2, 4, 3, 5), (2, 2, 2, 1, 2), (1, 1, 1), (1, 1, 2), 1),
    ((1, 3, 6, 5), (3, 1, 3, 2), (1, 2), (1, 2), 3),          # depthwise
    ((2, 2, 4, 3), (2, 2, 1, 1), (2, 1), (1, 1), 1),          # 1x1 with stride: uncovered input rows
    ((2, 4, 3, 3), (6, 2, 1, 1), (1, 1), (1, 1), 2),          # 1x1, stride 1: the input is the columns
    ((1, 2, 4, 4, 3), (2, 1, 2, 2, 2), (1, 2, 1), (2, 1, 1), 2),
]


@pytest.mark.parametrize("case", GRAD_CONVS, ids=conv_id)
def test_conv_grad(case):
    x_shape, w_shape, stride, dilation, groups = case
    x, w = uniform(x_shape, seed=8), uniform(w_shape, seed=9)

    def f(x, w):
        return raw_conv(x, w, stride, dilation, groups)

    check_grad(f, x, w)
    check_grad(f, x, w, wrt=[0])
    check_grad(f, x, w, wrt=[1])
    # the gradient flows on through what comes before and after
    check_grad(lambda x, w: raw_conv(x.tanh(), w * w, stride, dilation, groups).sin(), x, w)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv_grad_non_contiguous(layout):
    x = non_contiguous(uniform((2, 3, 5, 4), seed=10), layout)
    w = non_contiguous(uniform((2, 3, 2, 3), seed=11), layout)
    check_grad_views(lambda x, w: raw_conv(x, w, (2, 1), (1, 1), 1), x, w)


PADDINGS = [("zeros", 0.0), ("constant", 0.7), ("reflect", 0.0), ("replicate", 0.0)]


@pytest.mark.parametrize("mode, value", PADDINGS)
def test_conv_grad_through_every_padding_mode(mode, value):
    x, w = uniform((1, 2, 5, 4), seed=12), uniform((4, 1, 3, 2), seed=13)

    def f(x, w):
        return conv(x, w, stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=2,
                    padding_mode=mode, padding_value=value)

    check_grad(f, x, w)
    check_grad(lambda x, w: conv(x, w, padding=1, padding_mode=mode, padding_value=value),
               uniform((2, 3, 4), seed=14), uniform((2, 3, 3), seed=15))


def test_reflect_and_replicate_fold_the_border_back():
    """A 1x1 all-ones kernel: d sum(conv(pad(x))) / dx counts how often each element
    is copied into the padded input."""
    x = diff(np.zeros((1, 1, 4)))
    conv(x, const(np.ones((1, 1, 1))), padding=2, padding_mode="reflect").sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [1, 3, 3, 1])
    x = diff(np.zeros((1, 1, 4)))
    conv(x, const(np.ones((1, 1, 1))), padding=2, padding_mode="replicate").sum().backward()
    np.testing.assert_array_equal(x.grad[0, 0], [3, 1, 1, 3])


def test_conv_same_and_valid_padding():
    x, w = uniform((1, 2, 6, 5), seed=16), uniform((3, 2, 4, 3), seed=17)
    y = conv(const(x), const(w), padding="same", dilation=(1, 2))
    assert y.shape == (1, 3, 6, 5)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 2), (2, 2)))       # total d * (k - 1), the extra after
    np.testing.assert_allclose(y.data, ref_conv(padded, w, (1, 1), (1, 2), 1), rtol=1e-12)
    assert conv(const(x), const(w), padding="valid").shape == (1, 3, 3, 3)


def test_conv_unbatched():
    x, w = uniform((2, 6, 5), seed=18), uniform((3, 2, 3, 3), seed=19)
    y = conv(const(x), const(w), padding=1)
    assert y.shape == (3, 6, 5)
    np.testing.assert_allclose(y.data, conv(const(x[None]), const(w), padding=1).data[0])
    check_grad(lambda x, w: conv(x, w, stride=2), x, w)


# ---- second derivatives: conv, conv_transpose and conv_weight_grad are each other's adjoints ---------

def check_hessian(f, x):
    np.testing.assert_allclose(nk.hessian(f)(x), numerical_jacobian(nk.grad(f), x), rtol=1e-5, atol=1e-6)


SECOND = {"stride": ((2, 1), (1, 1), 1), "dilation_groups": ((1, 1), (2, 1), 2)}


@pytest.mark.parametrize("geometry", sorted(SECOND))
def test_second_derivatives_through_conv(geometry):
    stride, dilation, groups = SECOND[geometry]
    x, w = uniform((1, 2, 5, 4), seed=20), uniform((2, 2 // groups, 2, 3), seed=21)
    c = uniform(raw_conv(const(x), const(w), stride, dilation, groups).shape, seed=22)
    X, W, C = const(x), const(w), const(c)
    check_hessian(lambda v: (raw_conv(v, W, stride, dilation, groups).tanh() * C).sum(), x)
    check_hessian(lambda v: (raw_conv(X, v, stride, dilation, groups) ** 2 * C).sum(), w)

    def mixed(v):                           # the kernel's gradient, differentiated by the input
        gw = nk.grad(lambda k: (raw_conv(v, k, stride, dilation, groups).tanh() * C).sum())(W)
        return (gw * gw).sum()

    np.testing.assert_allclose(nk.grad(mixed)(x), numerical_jacobian(lambda a: mixed(const(a)).data, x),
                               rtol=1e-5, atol=1e-7)


def test_conv_transpose_and_weight_grad_ops():
    """The adjoint ops against finite differences, and against the gradients of conv
    that they are."""
    stride, dilation, groups = (2, 1), (1, 2), 2
    x, w = uniform((2, 4, 6, 7), seed=23), uniform((4, 2, 2, 3), seed=24)
    y_shape = raw_conv(const(x), const(w), stride, dilation, groups).shape
    g = uniform(y_shape, seed=25)
    transpose = (x.shape[2:], stride, dilation, groups)
    kernel = (w.shape[2:], stride, dilation, groups)
    check_grad(lambda g, w: op("conv_transpose", g, w, attrs=transpose), g, w)
    check_grad(lambda g, x: op("conv_weight_grad", g, x, attrs=kernel), g, x)
    xv, wv = diff(x), diff(w)
    raw_conv(xv, wv, stride, dilation, groups).backward(g)
    np.testing.assert_allclose(op("conv_transpose", const(g), const(w), attrs=transpose).data, xv.grad,
                               rtol=1e-12)
    np.testing.assert_allclose(op("conv_weight_grad", const(g), const(x), attrs=kernel).data, wv.grad,
                               rtol=1e-12)


# ---- generated code ---------------------------------------------------------------------------------------

def test_generated_code_calls_the_conv_kernels():
    x, w = diff(uniform((2, 3, 6, 6))), diff(uniform((4, 3, 3, 3)))
    src = (raw_conv(x, w) * 1.0).sum().source()
    assert "conv_forward(" in src and "conv_input_grad(" in src and "conv_weight_grad(" in src
    # no gradient for the input: no transposed convolution, and the kernel is not kept for it
    src = (raw_conv(const(uniform((2, 3, 6, 6))), w) * 1.0).sum().source()
    assert "conv_input_grad(" not in src
    # no gradient for the kernel: no kernel gradient, and the input is not kept for it
    src = (raw_conv(x, const(uniform((4, 3, 3, 3)))) * 1.0).sum().source()
    backward = src[src.index("def backward"):]
    assert "conv_weight_grad(" not in src and "p0" not in backward


@pytest.mark.parametrize("chunk_bytes", [1, 2100, 1 << 30])
def test_conv_kernels_in_batch_chunks(monkeypatch, chunk_bytes):
    """The kernels work through the batch a few samples at a time (one sample, two with a
    shorter last chunk, all at once): the results do not depend on it."""
    from neuronika.ops import kernels
    monkeypatch.setattr(kernels, "CHUNK_BYTES", chunk_bytes)
    for x_shape, w_shape, stride, dilation, groups in [((5, 2, 5, 4), (2, 2, 2, 2), (1, 1), (1, 1), 1),
                                                       ((3, 4, 6, 5), (4, 2, 3, 2), (2, 1), (1, 2), 2),
                                                       ((3, 2, 7), (4, 1, 2), (1,), (2,), 2)]:
        x, w = uniform(x_shape, seed=28), uniform(w_shape, seed=29)
        y = raw_conv(const(x), const(w), stride, dilation, groups)
        np.testing.assert_allclose(y.data, ref_conv(x, w, stride, dilation, groups), rtol=1e-12, atol=1e-12)
        check_grad(lambda x, w: raw_conv(x, w, stride, dilation, groups), x, w)


# ---- Winograd F(2x2, 3x3): the kernels' other path for 3x3, stride-1 convolutions -----------------

@pytest.fixture
def winograd_always(monkeypatch):
    """Every kernel takes Winograd wherever it applies (3x3, stride 1, dilation 1, one group)."""
    from neuronika.ops import kernels
    monkeypatch.setattr(kernels, "WINOGRAD_MIN_CHANNELS",
                        {k: {np.dtype(np.float32): 1, np.dtype(np.float64): 1} for k in kernels.WINOGRAD_MIN_CHANNELS})


# (x shape, w shape): even and odd output sizes (odd ones pad a last tile), one channel
WINOGRAD_CASES = [((2, 3, 6, 6), (4, 3, 3, 3)), ((3, 2, 7, 9), (5, 2, 3, 3)), ((1, 1, 3, 3), (1, 1, 3, 3)),
                  ((2, 4, 4, 5), (3, 4, 3, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape, w_shape", WINOGRAD_CASES)
def test_winograd_forward_against_loops(winograd_always, x_shape, w_shape, dtype):
    x, w = uniform(x_shape, seed=40).astype(dtype), uniform(w_shape, seed=41).astype(dtype)
    y = raw_conv(const(x), const(w))
    assert y.data.dtype == dtype
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y.data, ref_conv(x, w, (1, 1), (1, 1), 1), **tol)


@pytest.mark.parametrize("x_shape, w_shape", WINOGRAD_CASES)
def test_winograd_gradients(winograd_always, x_shape, w_shape):
    """Input and kernel gradients (the transposed convolution and the weight gradient,
    both by Winograd) against finite differences, first and second order."""
    x, w = uniform(x_shape, seed=42), uniform(w_shape, seed=43)
    check_grad(raw_conv, x, w)
    check_grads(lambda x, w: raw_conv(x.tanh(), w * w).sin(), x, w, order=2)
    g = uniform(raw_conv(const(x), const(w)).shape, seed=44)
    check_grads(lambda g, w: op("conv_transpose", g, w, attrs=(x_shape[2:], (1, 1), (1, 1), 1)), g, w, order=2)
    check_grads(lambda g, x: op("conv_weight_grad", g, x, attrs=((3, 3), (1, 1), (1, 1), 1)), g, x, order=2)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_winograd_non_contiguous(winograd_always, layout):
    x = non_contiguous(uniform((2, 3, 5, 6), seed=45), layout)
    w = non_contiguous(uniform((2, 3, 3, 3), seed=46), layout)
    check_grad_views(raw_conv, x, w)


@pytest.mark.parametrize("chunk_bytes", [1, 5000, 1 << 30])
def test_winograd_in_batch_chunks(winograd_always, monkeypatch, chunk_bytes):
    from neuronika.ops import kernels
    monkeypatch.setattr(kernels, "CHUNK_BYTES", chunk_bytes)
    x, w = uniform((5, 2, 7, 6), seed=47), uniform((3, 2, 3, 3), seed=48)
    np.testing.assert_allclose(raw_conv(const(x), const(w)).data, ref_conv(x, w, (1, 1), (1, 1), 1),
                               rtol=1e-12, atol=1e-12)
    check_grad(raw_conv, x, w)


def test_winograd_zero_batch(winograd_always):
    x, w = diff(np.zeros((0, 2, 5, 5))), diff(uniform((3, 2, 3, 3)))
    y = raw_conv(x, w)
    assert y.shape == (0, 3, 3, 3)
    y.sum().backward()
    assert x.grad.shape == (0, 2, 5, 5)
    np.testing.assert_array_equal(w.grad, np.zeros((3, 2, 3, 3)))


def test_winograd_float32_error_against_the_direct_result():
    """Winograd rounds differently from im2col: in float32, over 64 channels, each of the
    three kernels stays within a few float32 ulps of the float64 result, relative to its
    largest entry (measured 3e-7 to 8e-7 up to 256 channels; im2col 2e-7 to 6e-7)."""
    from neuronika.ops import kernels
    x, w = uniform((2, 64, 10, 12), seed=49), uniform((64, 64, 3, 3), seed=50)
    g = uniform((2, 64, 8, 10), seed=51)
    f32 = np.float32
    pairs = [(kernels._winograd_conv(x.astype(f32), w.astype(f32)), ref_conv(x, w, (1, 1), (1, 1), 1)),
             (kernels._winograd_conv(g.astype(f32), w[:, :, ::-1, ::-1].swapaxes(0, 1).astype(f32), pad=2),
              op("conv_transpose", const(g), const(w), attrs=((10, 12), (1, 1), (1, 1), 1)).data),
             (kernels._winograd_weight_grad(g.astype(f32), x.astype(f32)),
              op("conv_weight_grad", const(g), const(x), attrs=((3, 3), (1, 1), (1, 1), 1)).data)]
    for got, want in pairs:
        assert got.dtype == f32 and got.shape == want.shape
        assert np.abs(got - want).max() <= 2e-6 * np.abs(want).max()


def test_winograd_selection_rule():
    from neuronika.ops.kernels import winograd_fits
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert winograd_fits("forward", (3, 3), (1, 1), (1, 1), 1, (64, 64), f32)
    assert winograd_fits("forward", (3, 3), (1, 1), (1, 1), 1, (32, 64), f64)
    assert not winograd_fits("forward", (3, 3), (1, 1), (1, 1), 1, (8, 16), f32)       # few channels
    assert not winograd_fits("forward", (3, 3), (2, 2), (1, 1), 1, (64, 64), f32)      # stride
    assert not winograd_fits("forward", (3, 3), (1, 1), (2, 2), 1, (64, 64), f32)      # dilation
    assert not winograd_fits("forward", (3, 3), (1, 1), (1, 1), 2, (64, 64), f32)      # groups
    assert not winograd_fits("forward", (5, 5), (1, 1), (1, 1), 1, (64, 64), f32)      # kernel
    assert not winograd_fits("forward", (3,), (1,), (1,), 1, (64, 64), f32)            # 1-d
    assert not winograd_fits("forward", (3, 3), (1, 1), (1, 1), 1, (64, 64), np.dtype(np.float16))


def test_winograd_chosen_by_default_for_wide_layers(monkeypatch):
    """At 64 channels the default rule takes Winograd for all three kernels; the results
    are im2col's to float tolerance."""
    from neuronika.ops import kernels
    calls = []
    for name in ("_winograd_conv", "_winograd_weight_grad"):
        def spy(*args, _fn=getattr(kernels, name), _name=name, **kwargs):
            calls.append(_name)
            return _fn(*args, **kwargs)
        monkeypatch.setattr(kernels, name, spy)
    x, w = uniform((2, 64, 6, 6), seed=52), uniform((64, 64, 3, 3), seed=53)
    xv, wv = diff(x), diff(w)
    y = raw_conv(xv, wv)
    g = uniform(y.shape, seed=54)
    y.backward(g)
    assert sorted(calls) == ["_winograd_conv", "_winograd_conv", "_winograd_weight_grad"]
    direct = {k: {} for k in kernels.WINOGRAD_MIN_CHANNELS}
    saved, kernels.WINOGRAD_MIN_CHANNELS = kernels.WINOGRAD_MIN_CHANNELS, direct
    try:
        xd, wd = diff(x), diff(w)
        yd = raw_conv(xd, wd)
        yd.backward(g)
    finally:
        kernels.WINOGRAD_MIN_CHANNELS = saved
    for got, want in [(y.data, yd.data), (xv.grad, xd.grad), (wv.grad, wd.grad)]:
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11 * np.abs(want).max())


def test_functional_path_and_cache():
    w = uniform((4, 3, 3, 3), seed=26)
    x = uniform((2, 3, 6, 6), seed=27)

    def loss(w, x):
        return (conv(x, w, padding=1, padding_mode="reflect").relu() ** 2).mean()

    value, grad = nk.value_and_grad(loss)(w, x)
    wv = diff(w)
    out = loss(wv, const(x))
    out.backward()
    np.testing.assert_allclose(value, out.data, rtol=1e-12)
    np.testing.assert_allclose(grad, wv.grad, rtol=1e-12)


# ---- conv: errors -------------------------------------------------------------------------------------------

def test_conv_shape_errors():
    x = diff(np.ones((2, 4, 5, 5)))
    with pytest.raises(nk.ShapeError) as excinfo:
        raw_conv(x, diff(np.ones((3, 3, 3, 3))))
    assert_located(excinfo, "conv", "4 channels", "(3, 3, 3, 3)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        raw_conv(x, diff(np.ones((3, 4, 3, 3))), dilation=(3, 1))
    assert_located(excinfo, "conv", "smaller than the kernel", "dilation 3", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        raw_conv(x, diff(np.ones((3, 2, 3, 3))), groups=2)
    assert_located(excinfo, "groups = 2", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        raw_conv(x, diff(np.ones((3, 4, 3))))
    assert_located(excinfo, "conv", "(2, 4, 5, 5)", "(3, 4, 3)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        conv(x, diff(np.ones((3, 4, 3))))
    assert_located(excinfo, "conv", "(2, 4, 5, 5)", "(3, 4, 3)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        conv(x, diff(np.ones((3, 4, 3, 3))), padding=(0, 1), dilation=(3, 1))
    assert_located(excinfo, "smaller than the kernel", file=FILE)


def test_conv_argument_errors():
    x, w = const(np.ones((1, 2, 5, 5))), const(np.ones((2, 2, 3, 3)))
    for kwargs, fragment in [(dict(stride=0), "stride"), (dict(stride=(1, 2, 3)), "stride"),
                             (dict(dilation=(1, 0)), "dilation"), (dict(padding=-1), "padding"),
                             (dict(padding="full"), "padding"), (dict(padding="same", stride=2), "same"),
                             (dict(groups=0), "groups"), (dict(padding_mode="circular"), "circular")]:
        with pytest.raises(ValueError) as excinfo:
            conv(x, w, **kwargs)
        assert_located(excinfo, fragment, file=FILE)
    with pytest.raises(nk.ShapeError, match="reflect"):
        conv(x, w, padding=5, padding_mode="reflect")


# ---- pooling ops ----------------------------------------------------------------------------------------------

POOLS = [
    ((2, 3, 8), (2,), (2,)),
    ((2, 2, 9), (3,), (2,)),
    ((2, 3, 6, 6), (2, 2), (2, 2)),
    ((1, 2, 7, 8), (3, 3), (2, 2)),
    ((1, 2, 5, 6), (3, 2), (1, 1)),           # overlapping windows
    ((1, 2, 7, 5), (2, 2), (3, 2)),           # gaps between windows, an edge left over
    ((2, 5, 7), (2, 3), (3, 1)),              # a 2-d window over (C, H, W): any leading axes
    ((1, 1, 4, 5, 6), (2, 2, 3), (2, 1, 3)),
    ((3, 4), (4,), (1,)),
]


def pool_id(case):
    return f"x{case[0]}-k{case[1]}-s{case[2]}"


def pool(kind, x, kernel, stride):
    return op(f"{kind}_pool", x, attrs=(kernel, stride))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", POOLS, ids=pool_id)
def test_pool_forward_against_loops(case, dtype):
    shape, kernel, stride = case
    x = distinct(shape, seed=30).astype(dtype)
    for kind, reduce in (("max", np.max), ("avg", np.mean)):
        for wrap in (const, diff):
            y = pool(kind, wrap(x), kernel, stride)
            lead = len(shape) - len(kernel)
            assert y.shape == shape[:lead] + tuple(out_size(s, k, t) for s, k, t
                                                   in zip(shape[lead:], kernel, stride))
            assert y.dtype == dtype
            np.testing.assert_allclose(y.data, ref_pool(x, kernel, stride, reduce), rtol=1e-6)


@pytest.mark.parametrize("case", POOLS, ids=pool_id)
def test_pool_grad(case):
    shape, kernel, stride = case
    x = distinct(shape, seed=31, gap=0.01)          # no ties: max is differentiable
    check_grad(lambda x: pool("max", x, kernel, stride), x)
    check_grad(lambda x: pool("avg", x, kernel, stride), x)
    check_grad(lambda x: pool("max", x.sin(), kernel, stride) * pool("avg", x, kernel, stride), x)


def test_max_pool_ties_go_to_the_first_maximum():
    x = diff(np.array([[[[1.0, 1.0, 0.0],
                         [1.0, 1.0, 0.0],
                         [0.0, 0.0, 0.0]]]]))
    pool("max", x, (2, 2), (1, 1)).sum().backward()
    # windows at (0, 0), (0, 1), (1, 0), (1, 1): the first 1 of each in row-major order is
    # its top-left element (an even split would give [[.25, .5, 0], [.5, 1, 0], ...])
    np.testing.assert_array_equal(x.grad[0, 0], [[1, 1, 0], [1, 1, 0], [0, 0, 0]])
    x = diff(np.zeros((1, 5)))
    pool("max", x, (2,), (1,)).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 1, 1, 1, 0]])
    x = diff(np.array([[3.0, 1.0, 3.0, 3.0, 2.0]]))
    pool("max", x, (3,), (1,)).backward(np.array([[1.0, 10.0, 100.0]]))
    np.testing.assert_array_equal(x.grad, [[1, 0, 110, 0, 0]])


def test_pool_integer_input():
    x = np.arange(12, dtype=np.int32).reshape(1, 3, 4)
    assert pool("max", const(x), (2, 2), (1, 2)).dtype == np.int32
    y = pool("avg", const(x), (2, 2), (1, 2))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, ref_pool(x, (2, 2), (1, 2), np.mean))


def test_second_derivatives_through_pooling():
    x = distinct((1, 2, 5, 6), seed=32, gap=0.05)
    c = uniform((1, 2, 2, 3), seed=33)
    C = const(c)
    check_hessian(lambda v: (pool("max", v, (2, 2), (2, 2)) ** 2 * C).sum(), x)
    check_hessian(lambda v: (pool("avg", v.sin(), (3, 2), (2, 2)) ** 2 * C).sum(), x)
    # the adjoint ops themselves
    y = pool("max", const(x), (2, 2), (2, 2))
    check_grad(lambda g: op("max_pool_grad", g, const(x), y, attrs=((2, 2), (2, 2))), c)
    check_grad(lambda z: op("max_pool_gather", z, const(x), y, attrs=((2, 2), (2, 2))), x)
    check_grad(lambda g: op("avg_pool_grad", g, attrs=(x.shape, (3, 2), (2, 2))), c)


def test_pool_shape_errors():
    x = diff(np.ones((2, 3, 4)))
    with pytest.raises(nk.ShapeError) as excinfo:
        pool("max", x, (5,), (1,))
    assert_located(excinfo, "max_pool", "(2, 3, 4)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        pool("avg", x, (2, 2, 2, 2), (1, 1, 1, 1))
    assert_located(excinfo, "avg_pool", "4-d window", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        pool("avg", x, (2, 2), (1,))
    assert_located(excinfo, "avg_pool", "stride", file=FILE)


# ---- against PyTorch -------------------------------------------------------------------------------------------

TORCH_CONVS = [
    ((2, 4, 11), (6, 2, 3), 2, 1, 2, 2, "zeros"),
    ((2, 3, 9), (4, 3, 4), 1, 3, 1, 1, "reflect"),
    ((2, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 2), (1, 2), 2, "zeros"),
    ((1, 3, 7, 7), (3, 1, 3, 3), 1, 2, 1, 3, "replicate"),
    ((2, 2, 6, 5), (4, 2, 3, 3), 2, 1, 1, 1, "reflect"),
    ((1, 2, 5, 6, 4), (4, 2, 2, 3, 2), (1, 2, 1), 1, (2, 1, 1), 1, "zeros"),
    ((1, 4, 4, 5, 5), (2, 2, 3, 3, 3), 1, 1, 1, 2, "replicate"),
]


@pytest.mark.parametrize("case", TORCH_CONVS, ids=str)
def test_conv_against_torch(case):
    torch = oracle("torch")
    F = torch.nn.functional
    x_shape, w_shape, stride, padding, dilation, groups, mode = case
    x, w = uniform(x_shape, seed=40), uniform(w_shape, seed=41)
    xv, wv = diff(x), diff(w)
    y = conv(xv, wv, stride, padding, dilation, groups, mode)
    c = uniform(y.shape, seed=42)
    y.backward(c)
    dims = len(w_shape) - 2
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    fn = getattr(F, f"conv{dims}d")
    if mode == "zeros":
        yt = fn(xt, wt, stride=stride, padding=padding, dilation=dilation, groups=groups)
    else:
        p = (padding,) * dims if isinstance(padding, int) else padding
        pads = tuple(v for q in reversed(p) for v in (q, q))
        yt = fn(F.pad(xt, pads, mode=mode), wt, stride=stride, dilation=dilation, groups=groups)
    yt.backward(torch.tensor(c))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(wv.grad, wt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", POOLS[:8], ids=pool_id)
def test_pool_against_torch(case):
    torch = oracle("torch")
    F = torch.nn.functional
    shape, kernel, stride = case
    x = np.round(uniform(shape, seed=43), 1)           # ties included
    dims = len(kernel)
    for kind, fn in (("max", getattr(F, f"max_pool{dims}d")), ("avg", getattr(F, f"avg_pool{dims}d"))):
        xv = diff(x)
        y = pool(kind, xv, kernel, stride)
        c = uniform(y.shape, seed=44)
        y.backward(c)
        xt = torch.tensor(x, requires_grad=True)
        yt = fn(xt, kernel, stride)
        yt.backward(torch.tensor(c))
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-12)
        np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)
