"""Convolution and pooling.

``conv`` is one op for 1-, 2- and 3-D convolution (cross-correlation, as in
PyTorch): input (N, C_in, *size), kernel (C_out, C_in / groups, *k), attributes
``stride``, ``dilation`` (one int per spatial axis) and ``groups``. Padding is
not part of it (the pad op runs before, in any of its modes) and neither is
the bias (a broadcasting add after). The kernels (``ops/kernels.py``) compute it
as im2col + GEMM, a few samples at a time: the windows of those samples are
copied into columns (from a strided view of the input) in a buffer that stays
in cache, and a matrix product per group writes the output in (N, C_out, *out)
layout (``conv_forward``). The kernel's adjoint copies the columns again and
multiplies them by the output's gradient (``conv_weight_grad``): recomputing
them costs less than keeping an array prod(k) times the input's size alive
until the backward. The input's adjoint multiplies the gradient by the
kernel's transpose and adds the columns back onto the windows
(``conv_input_grad``). For a 3x3 kernel with stride 1, no dilation and one group,
wide layers (``kernels.WINOGRAD_MIN_CHANNELS``, measured per kernel and dtype) take
Winograd F(2x2, 3x3) instead, for all three kernels: 16 GEMMs over channels on
transformed 4x4 input tiles, in float32 within a few ulps of the direct result.

The two adjoints are ops too, ``conv_transpose`` (the transposed convolution,
linear in the gradient and the kernel) and ``conv_weight_grad``; each of the
three is the others' adjoint, so gradients through a convolution can be
differentiated again.

Pooling (``max_pool``, ``avg_pool``) works on the trailing ``len(kernel)``
axes, with any leading axes; padding again comes before (``-inf`` for max,
zeros for average: the window size is always the divisor, PyTorch's default
``count_include_pad=True``). Max pooling sends each window's gradient to the
first maximal element in row-major order within the window, as PyTorch does.
Their adjoints are ops (``max_pool_grad`` / ``max_pool_gather``,
``avg_pool_grad``) for the same reason.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import batching, declare
from .elementwise import float_dtype

def output_size(size, kernel, stride=1, dilation=1):
    """PyTorch's output length of a convolution or pooling along one (padded) axis."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _check_geometry(spatial, values):
    for label, value in values.items():
        if len(value) != spatial or any(not isinstance(v, int) or v < 1 for v in value):
            raise ShapeError(f"{label} must be {spatial} positive int(s), one per spatial axis, "
                             f"got {value}")


def _conv_shape(x, w, stride, dilation, groups):
    if len(x) < 3 or len(x) > 5 or len(w) != len(x):
        raise ShapeError(f"expected an input (N, C_in, *size) and a kernel (C_out, C_in / groups, "
                         f"*k) with 1 to 3 spatial axes each, got shapes {x} and {w}")
    spatial = len(x) - 2
    _check_geometry(spatial, {"stride": stride, "dilation": dilation})
    if not isinstance(groups, int) or groups < 1 or x[1] % groups or w[0] % groups:
        raise ShapeError(f"groups = {groups} must divide the input channels ({x[1]}) and the output "
                         f"channels ({w[0]})")
    if x[1] != w[1] * groups:
        raise ShapeError(f"input of shape {x} has {x[1]} channels, the kernel of shape {w} expects "
                         f"{w[1] * groups} ({w[1]} per group x {groups} groups)")
    out = []
    for axis, (size, k, s, d) in enumerate(zip(x[2:], w[2:], stride, dilation)):
        if size < d * (k - 1) + 1:
            raise ShapeError(f"input of shape {x} is smaller than the kernel along spatial axis "
                             f"{axis}: size {size}, kernel {k} with dilation {d} spans {d * (k - 1) + 1}")
        out.append(output_size(size, k, s, d))
    return (x[0], w[0]) + tuple(out)


class _Dims:
    """Static facts of one convolution, x (n, c, *size) by w (co, c / groups, *kernel),
    and the kernel calls that compute it and its adjoints."""

    def __init__(self, x_shape, w_shape, stride, dilation, groups):
        self.x_shape, self.w_shape = tuple(x_shape), tuple(w_shape)
        self.kernel = tuple(w_shape[2:])
        self.geometry = f"{tuple(stride)}, {tuple(dilation)}, {groups}"

    def forward(self, x, w):
        """conv(x, w)."""
        return f"conv_forward({x}, {w}, {self.geometry})"

    def transpose(self, g, w):
        """d<g, conv(x, w)>/dx."""
        # the batch as -1 (the kernel takes g's): the program names no size that may vary
        return f"conv_input_grad({g}, {w}, {(-1,) + self.x_shape[1:]}, {self.geometry})"

    def weight(self, g, x):
        """d<g, conv(x, w)>/dw."""
        return f"conv_weight_grad({g}, {x}, {self.kernel}, {self.geometry})"


# ---- conv --------------------------------------------------------------------------------------

def _conv_dims(ctx):
    return _Dims(ctx.shapes["x"], ctx.shapes["w"], ctx.stride, ctx.dilation, ctx.groups)


CONV = declare(
    "conv", ("x", "w"), lambda ctx: _conv_dims(ctx).forward("x", "w"),
    {"x": lambda ctx: _conv_dims(ctx).transpose("dy", "w"),
     "w": lambda ctx: _conv_dims(ctx).weight("dy", "x")},
    symbolic={"x": lambda ctx, build, b: build(CONV_TRANSPOSE, (b["dy"], b["w"]),
                                             (ctx.shapes["x"][2:], ctx.stride, ctx.dilation, ctx.groups)),
              "w": lambda ctx, build, b: build(CONV_WEIGHT_GRAD, (b["dy"], b["x"]),
                                             (ctx.shapes["w"][2:], ctx.stride, ctx.dilation, ctx.groups))},
    attrs=("stride", "dilation", "groups"), shape=_conv_shape,
    batch=batching.conv, doc="N-d convolution (cross-correlation) of (N, C_in, *size) with a (C_out, C_in / groups, *k) "
        "kernel, by im2col and a product per group (Winograd F(2x2, 3x3) for wide 3x3 layers); no "
        "padding, no bias")


# ---- conv_transpose: the adjoint of conv in its input ------------------------------------------

def _conv_transpose_shape(g, w, size, stride, dilation, groups):
    if len(g) < 3 or len(g) > 5 or len(w) != len(g) or len(size) != len(g) - 2:
        raise ShapeError(f"expected a gradient (N, C_out, *out), a kernel (C_out, C_in / groups, *k) "
                         f"and an output size with 1 to 3 spatial axes, got shapes {g} and {w} and "
                         f"size {size}")
    x = (g[0], w[1] * groups) + tuple(size)
    y = _conv_shape(x, w, stride, dilation, groups)
    if y != tuple(g):
        raise ShapeError(f"a gradient of shape {g} does not fit a convolution of an input of shape "
                         f"{x} with a kernel of shape {w} (its output has shape {y})")
    return x


def _transpose_dims(ctx):
    g, w = ctx.shapes["g"], ctx.shapes["w"]
    return _Dims((g[0], w[1] * ctx.groups) + tuple(ctx.size), w, ctx.stride, ctx.dilation, ctx.groups)


CONV_TRANSPOSE = declare(
    "conv_transpose", ("g", "w"), lambda ctx: _transpose_dims(ctx).transpose("g", "w"),
    {"g": lambda ctx: _transpose_dims(ctx).forward("dy", "w"),
     "w": lambda ctx: _transpose_dims(ctx).weight("g", "dy")},
    symbolic={"g": lambda ctx, build, b: build(CONV, (b["dy"], b["w"]),
                                             (ctx.stride, ctx.dilation, ctx.groups)),
              "w": lambda ctx, build, b: build(CONV_WEIGHT_GRAD, (b["g"], b["dy"]),
                                             (ctx.shapes["w"][2:], ctx.stride, ctx.dilation, ctx.groups))},
    attrs=("size", "stride", "dilation", "groups"), shape=_conv_transpose_shape,
    batch=batching.conv, doc="transposed convolution: the gradient of conv with respect to its input, for an input "
        "of spatial size ``size``")


# ---- conv_weight_grad: the adjoint of conv in its kernel -----------------------------------------

def _weight_grad_shape(g, x, kernel, stride, dilation, groups):
    if len(x) < 3 or len(x) > 5 or len(g) != len(x) or len(kernel) != len(x) - 2:
        raise ShapeError(f"expected a gradient (N, C_out, *out), an input (N, C_in, *size) and a "
                         f"kernel size with 1 to 3 spatial axes, got shapes {g} and {x} and kernel "
                         f"{kernel}")
    if not isinstance(groups, int) or groups < 1 or x[1] % groups or g[1] % groups:
        raise ShapeError(f"groups = {groups} must divide the input channels ({x[1]}) and the output "
                         f"channels ({g[1]})")
    w = (g[1], x[1] // groups) + tuple(kernel)
    y = _conv_shape(x, w, stride, dilation, groups)
    if y != tuple(g):
        raise ShapeError(f"a gradient of shape {g} does not fit a convolution of an input of shape "
                         f"{x} with a kernel of shape {w} (its output has shape {y})")
    return w


def _weight_dims(ctx):
    g, x = ctx.shapes["g"], ctx.shapes["x"]
    w = (g[1], x[1] // ctx.groups) + tuple(ctx.kernel)
    return _Dims(x, w, ctx.stride, ctx.dilation, ctx.groups)


CONV_WEIGHT_GRAD = declare(
    "conv_weight_grad", ("g", "x"), lambda ctx: _weight_dims(ctx).weight("g", "x"),
    {"g": lambda ctx: _weight_dims(ctx).forward("x", "dy"),
     "x": lambda ctx: _weight_dims(ctx).transpose("g", "dy")},
    symbolic={"g": lambda ctx, build, b: build(CONV, (b["x"], b["dy"]),
                                             (ctx.stride, ctx.dilation, ctx.groups)),
              "x": lambda ctx, build, b: build(CONV_TRANSPOSE, (b["g"], b["dy"]),
                                             (ctx.shapes["x"][2:], ctx.stride, ctx.dilation, ctx.groups))},
    attrs=("kernel", "stride", "dilation", "groups"), shape=_weight_grad_shape,
    batch=batching.conv_weight_grad, doc="the gradient of conv with respect to its kernel (of spatial size ``kernel``)")


# ---- pooling -------------------------------------------------------------------------------------

def _pool_shape(x, kernel, stride):
    spatial = len(kernel)
    if not 1 <= spatial <= len(x):
        raise ShapeError(f"a {spatial}-d window does not fit a value of shape {x}")
    _check_geometry(spatial, {"kernel": kernel, "stride": stride})
    lead, sizes = x[:len(x) - spatial], x[len(x) - spatial:]
    for axis, (size, k) in enumerate(zip(sizes, kernel)):
        if size < k:
            raise ShapeError(f"a window of size {tuple(kernel)} does not fit a value of shape {x} "
                             f"(size {size} < {k} along spatial axis {axis})")
    return tuple(lead) + tuple(output_size(s, k, t) for s, k, t in zip(sizes, kernel, stride))


def _pool_grad_shape(g, x, pooled, kernel, stride):
    want = _pool_shape(x, kernel, stride)
    if tuple(g) != want or tuple(pooled) != want:
        raise ShapeError(f"pooling a value of shape {x} gives shape {want}, got a gradient of shape "
                         f"{g} and an output of shape {pooled}")
    return x


def _gather_shape(z, x, pooled, kernel, stride):
    want = _pool_shape(x, kernel, stride)
    if tuple(z) != tuple(x) or tuple(pooled) != want:
        raise ShapeError(f"expected a value and an input of shape {x} and an output of shape "
                         f"{want}, got {z}, {x} and {pooled}")
    return want


def _first_dtype(inputs, attrs):
    return inputs[0].dtype


MAX_POOL = declare(
    "max_pool", ("x",), "max_pool(x, kernel, stride)",
    {"x": "max_pool_grad(dy, x, y, kernel, stride)"},
    symbolic={"x": lambda ctx, build, b: build(MAX_POOL_GRAD, (b["dy"], b["x"], b["y"]),
                                             (ctx.kernel, ctx.stride))},
    attrs=("kernel", "stride"), shape=_pool_shape,
    batch=batching.stacked, doc="maximum over windows of the trailing axes; the gradient goes to the first maximum of "
        "each window (row-major), as in PyTorch")

MAX_POOL_GRAD = declare(
    "max_pool_grad", ("g", "x", "pooled"), "max_pool_grad(g, x, pooled, kernel, stride)",
    {"g": "max_pool_gather(dy, x, pooled, kernel, stride)"},
    symbolic={"g": lambda ctx, build, b: build(MAX_POOL_GATHER, (b["dy"], b["x"], b["pooled"]),
                                             (ctx.kernel, ctx.stride))},
    attrs=("kernel", "stride"), shape=_pool_grad_shape, n_differentiable=1, dtype=_first_dtype,
    batch=batching.stacked, doc="g (a max_pool output's gradient) sent to the first maximum of each window of x: the "
        "adjoint of max_pool, as an op so it can be differentiated again")

MAX_POOL_GATHER = declare(
    "max_pool_gather", ("z", "x", "pooled"), "max_pool_gather(z, x, pooled, kernel, stride)",
    {"z": "max_pool_grad(dy, x, pooled, kernel, stride)"},
    symbolic={"z": lambda ctx, build, b: build(MAX_POOL_GRAD, (b["dy"], b["x"], b["pooled"]),
                                             (ctx.kernel, ctx.stride))},
    attrs=("kernel", "stride"), shape=_gather_shape, n_differentiable=1, dtype=_first_dtype,
    batch=batching.stacked, doc="z read at the first maximum of each window of x: the adjoint of max_pool_grad")

AVG_POOL = declare(
    "avg_pool", ("x",), "avg_pool(x, kernel, stride)",
    {"x": "avg_pool_grad(dy, x_shape, kernel, stride)"},
    symbolic={"x": lambda ctx, build, b: build(AVG_POOL_GRAD, (b["dy"],),
                                             (ctx.shapes["x"], ctx.kernel, ctx.stride))},
    attrs=("kernel", "stride"), shape=_pool_shape, dtype=float_dtype(np.mean),
    batch=batching.stacked, doc="mean over windows of the trailing axes (the window size is the divisor)")


def _avg_grad_shape(g, shape, kernel, stride):
    want = _pool_shape(tuple(shape), kernel, stride)
    if tuple(g) != want:
        raise ShapeError(f"average pooling a value of shape {tuple(shape)} gives shape {want}, got "
                         f"a gradient of shape {g}")
    return tuple(shape)


AVG_POOL_GRAD = declare(
    "avg_pool_grad", ("g",), "avg_pool_grad(g, shape, kernel, stride)",
    {"g": "avg_pool(dy, kernel, stride)"},
    symbolic={"g": lambda ctx, build, b: build(AVG_POOL, (b["dy"],), (ctx.kernel, ctx.stride))},
    attrs=("shape", "kernel", "stride"), shape=_avg_grad_shape, dtype=float_dtype(np.mean),
    batch=batching.stacked, doc="g spread evenly over the windows of a value of ``shape``: the adjoint of avg_pool")
