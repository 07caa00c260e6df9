"""Spatial functions of ``nn.functional``, as PyTorch's: ``pad``, ``pixel_shuffle`` /
``pixel_unshuffle``, ``interpolate`` (nearest, nearest-exact, area, linear, bilinear,
bicubic, trilinear), ``unfold`` / ``fold`` (im2col and its inverse), and the modules that call them
(``PixelShuffle``, ``PixelUnshuffle``, ``Upsample``, ``Unfold``, ``Fold``). Each is built from
catalogue ops (pad, reshape, transpose, gathers and scatter-adds), so first and second
derivatives come from the engine.

>>> import numpy as np
>>> from neuronika.nn import functional as F
>>> F.pad(np.ones((1, 2)), (1, 2), value=0.0).data
array([[0., 1., 1., 0., 0.]])
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..creation import from_ndarray
from ..numpy import pad as _np_pad, take as _take
from ..variable import Var, _located
from .conv import ntuple
from .functional import _layer_input
from .module import Module
from .pooling import _adaptive_avg, _calling

__all__ = ["pad", "pixel_shuffle", "pixel_unshuffle", "interpolate", "unfold", "fold",
           "PixelShuffle", "PixelUnshuffle", "Upsample", "Unfold", "Fold"]

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _int(name, label, value, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise _located(f"{name}: {label} must be an int of at least {minimum}, got {value!r}", ValueError)
    return int(value)


# ---- pad --------------------------------------------------------------------------------------------

def pad(input, pad, mode: str = "constant", value: float | None = None) -> Var:
    """Pads the last ``len(pad) // 2`` axes, as PyTorch's: ``pad`` is (before, after) for the last
    axis, then for the one before it, ...; ``mode`` 'constant' (``value``, default 0; negative
    widths crop), 'reflect' (widths below the axis' size), 'replicate' or 'circular' (widths up to
    the axis' size). The gradient of a copied element goes back to where it was copied from.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.pad(np.array([[1.0, 2.0, 3.0]]), (2, 1), mode="reflect").data
    array([[3., 2., 1., 2., 3., 2.]])
    """
    name = "pad"
    if mode not in _PAD_MODES:
        raise _located(f"{name}: mode must be one of {', '.join(map(repr, _PAD_MODES))}, got {mode!r}",
                       ValueError)
    try:
        widths = tuple(pad)
    except TypeError:
        widths = None
    if (widths is None or len(widths) % 2
            or not all(isinstance(w, numbers.Integral) and not isinstance(w, bool) for w in widths)):
        raise _located(f"{name}: pad must be a sequence of ints of even length ((before, after) per axis, "
                       f"the last axis first), got {pad!r}", ValueError)
    x = _layer_input(name, input)
    n = len(widths) // 2
    if n > x.ndim:
        raise _located(f"{name}: pad {widths} names {n} axes, more than the input of shape {x.shape} has")
    if mode != "constant":
        if value not in (None, 0):
            raise _located(f"{name}: value is only used by mode 'constant', got value={value!r} with "
                           f"mode {mode!r}", ValueError)
        if n > 3 or not n + 1 <= x.ndim <= n + 2:
            raise _located(f"{name}: mode {mode!r} pads the last 1, 2 or 3 axes of a batched (N, C, *) or "
                           f"unbatched (C, *) input, got pad {widths} for an input of shape {x.shape}")
    pairs = [(0, 0)] * x.ndim
    for i in range(n):
        axis = x.ndim - 1 - i
        before, after = int(widths[2 * i]), int(widths[2 * i + 1])
        size = x.shape[axis]
        if mode == "constant":
            if size + before + after < 0 or (size + min(before, 0) + min(after, 0) < 0):
                raise _located(f"{name}: pad ({before}, {after}) crops more than the size {size} of axis "
                               f"{axis} (input of shape {x.shape})")
        elif before < 0 or after < 0:
            raise _located(f"{name}: negative widths crop only in mode 'constant', got pad ({before}, {after}) "
                           f"with mode {mode!r}", ValueError)
        elif mode == "reflect" and (before >= size or after >= size):
            raise _located(f"{name}: mode 'reflect' needs widths below the size of their axis, got pad "
                           f"({before}, {after}) for axis {axis} of size {size} (input of shape {x.shape})")
        elif mode in ("replicate", "circular") and size == 0 and (before or after):
            raise _located(f"{name}: mode {mode!r} cannot pad the empty axis {axis} (input of shape {x.shape})")
        elif mode == "circular" and (before > size or after > size):
            raise _located(f"{name}: mode 'circular' needs widths of at most the size of their axis, got pad "
                           f"({before}, {after}) for axis {axis} of size {size} (input of shape {x.shape})")
        pairs[axis] = (before, after)
    crop = tuple(slice(-b if b < 0 else None, a if a < 0 else None) for b, a in pairs)
    if any(s.start is not None or s.stop is not None for s in crop):
        x = x[crop]
        pairs = [(max(b, 0), max(a, 0)) for b, a in pairs]
    if not any(b or a for b, a in pairs):
        return x
    if mode == "constant":
        return _np_pad(x, pairs, mode="constant", constant_values=0.0 if value is None else value)
    return _np_pad(x, pairs, mode=_PAD_MODES[mode])


# ---- pixel shuffle ------------------------------------------------------------------------------------

def pixel_shuffle(input, upscale_factor: int) -> Var:
    """(*, C r^2, H, W) to (*, C, H r, W r), as PyTorch's: channel c r^2 + i r + j of pixel (h, w)
    goes to pixel (h r + i, w r + j) of channel c.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.pixel_shuffle(np.arange(4.0).reshape(1, 4, 1, 1), 2).data
    array([[[[0., 1.],
             [2., 3.]]]])
    """
    name = "pixel_shuffle"
    r = _int(name, "upscale_factor", upscale_factor)
    x = _layer_input(name, input)
    if x.ndim < 3 or x.shape[-3] % (r * r):
        raise _located(f"{name}: expected an input of shape (*, C * {r * r}, H, W) (channels divisible by "
                       f"upscale_factor ** 2 = {r * r}), got {x.shape}")
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    k = len(lead)
    y = x.reshape(lead + (c // (r * r), r, r, h, w))
    y = y.transpose(tuple(range(k)) + tuple(k + a for a in (0, 3, 1, 4, 2)))
    return y.reshape(lead + (c // (r * r), h * r, w * r))


def pixel_unshuffle(input, downscale_factor: int) -> Var:
    """(*, C, H r, W r) to (*, C r^2, H, W), the inverse of ``pixel_shuffle``, as PyTorch's.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.pixel_unshuffle(np.arange(4.0).reshape(1, 1, 2, 2), 2).data.ravel()
    array([0., 1., 2., 3.])
    """
    name = "pixel_unshuffle"
    r = _int(name, "downscale_factor", downscale_factor)
    x = _layer_input(name, input)
    if x.ndim < 3 or x.shape[-2] % r or x.shape[-1] % r:
        raise _located(f"{name}: expected an input of shape (*, C, H * {r}, W * {r}) (height and width "
                       f"divisible by downscale_factor = {r}), got {x.shape}")
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    k = len(lead)
    y = x.reshape(lead + (c, h // r, r, w // r, r))
    y = y.transpose(tuple(range(k)) + tuple(k + a for a in (0, 2, 4, 1, 3)))
    return y.reshape(lead + (c * r * r, h // r, w // r))


# ---- interpolate --------------------------------------------------------------------------------------

_LINEAR = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_MODES = ("nearest", "nearest-exact", "area") + tuple(_LINEAR)


def _sizes(name, value, n, label, kind):
    values = (value,) * n if isinstance(value, numbers.Real) and not isinstance(value, bool) else value
    try:
        values = tuple(values)
    except TypeError:
        values = ()
    ok = len(values) == n and all(isinstance(v, kind) and not isinstance(v, bool) and v > 0 for v in values)
    if not ok:
        what = "positive ints" if kind is numbers.Integral else "positive numbers"
        raise _located(f"{name}: {label} must be one or {n} {what} for an input with {n} spatial axes, got "
                       f"{value!r}", ValueError)
    return tuple(int(v) if kind is numbers.Integral else float(v) for v in values)


def interpolate(input, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                recompute_scale_factor: bool | None = None, antialias: bool = False) -> Var:
    """Resizes the spatial axes of (N, C, L), (N, C, H, W) or (N, C, D, H, W) to ``size`` or by
    ``scale_factor`` (one of them), as PyTorch's: ``mode`` 'nearest', 'nearest-exact', 'area'
    (adaptive average pooling), or 'linear' / 'bilinear' / 'trilinear' (for 1, 2, 3 spatial
    axes) and 'bicubic' (2 axes, PyTorch's A = -0.75, borders repeated) with ``align_corners``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.interpolate(np.array([[[1.0, 3.0]]]), scale_factor=2, mode="linear").data
    array([[[1. , 1.5, 2.5, 3. ]]])
    """
    name = "interpolate"
    if mode not in _MODES:
        raise _located(f"{name}: mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}", ValueError)
    if antialias:
        raise _located(f"{name}: antialias=True is not supported", ValueError)
    x = _layer_input(name, input)
    if x.dtype.kind != "f":                   # integers and booleans interpolate as float64
        x = x.astype(np.float64)
    n = x.ndim - 2
    if not 1 <= n <= 3:
        raise _located(f"{name}: expected an input of shape (N, C, L), (N, C, H, W) or (N, C, D, H, W), "
                       f"got {x.shape}")
    if mode in _LINEAR and _LINEAR[mode] != n:
        raise _located(f"{name}: mode {mode!r} needs a {_LINEAR[mode] + 2}-D input, got a {x.ndim}-D input "
                       f"of shape {x.shape}")
    if mode not in _LINEAR and align_corners is not None:
        raise _located(f"{name}: align_corners can only be set with the linear modes, got mode {mode!r}",
                       ValueError)
    if (size is None) == (scale_factor is None):
        raise _located(f"{name}: give exactly one of size and scale_factor", ValueError)
    inputs = x.shape[2:]
    if size is not None:
        outs = _sizes(name, size, n, "size", numbers.Integral)
        scales = (None,) * n
    else:
        scales = _sizes(name, scale_factor, n, "scale_factor", numbers.Real)
        outs = tuple(math.floor(float(s) * f) for s, f in zip(inputs, scales))
        if any(o < 1 for o in outs):
            raise _located(f"{name}: scale_factor {scale_factor!r} gives the empty output size {outs} for "
                           f"an input of shape {x.shape}", ValueError)
        if recompute_scale_factor:
            scales = (None,) * n
    if mode == "area":
        return _adaptive_avg(name, x, outs, n)
    y = x
    for i, (size_in, size_out, scale) in enumerate(zip(inputs, outs, scales)):
        axis = 2 + i
        if mode == "bicubic":
            y = _cubic_axis(y, axis, size_in, size_out, scale, bool(align_corners))
        elif mode in _LINEAR:
            y = _linear_axis(y, axis, size_in, size_out, scale, bool(align_corners))
        else:
            y = _take(y, _nearest(size_in, size_out, scale, mode == "nearest-exact"), axis=axis)
    return y


def _nearest(size_in, size_out, scale, exact):
    """PyTorch's source index per output index, its float32 arithmetic included."""
    dst = np.arange(size_out)
    if size_out == size_in:
        return dst
    if size_out == 2 * size_in and not exact:
        return dst >> 1
    ratio = np.float32(1.0 / scale) if scale is not None and scale > 0 else np.float32(size_in) / np.float32(size_out)
    position = (dst.astype(np.float32) + np.float32(0.5)) * ratio if exact else dst.astype(np.float32) * ratio
    return np.minimum(np.floor(position).astype(np.int64), size_in - 1)


def _linear_axis(x, axis, size_in, size_out, scale, align_corners):
    """Linear interpolation along ``axis``: two gathers, weighted."""
    if size_out == size_in:
        return x
    dst = np.arange(size_out, dtype=np.float64)
    if align_corners:
        ratio = (size_in - 1) / (size_out - 1) if size_out > 1 else 0.0
        src = dst * ratio
    else:
        ratio = 1.0 / scale if scale is not None and scale > 0 else size_in / size_out
        src = np.maximum((dst + 0.5) * ratio - 0.5, 0.0)
    low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    weight = np.clip(src - low, 0.0, 1.0)
    high = low + (low < size_in - 1)
    shape = (size_out,) + (1,) * (x.ndim - 1 - axis)
    space = x._node.space                    # the weights in the library x lives in
    w_high = backend.move(weight.astype(x.dtype).reshape(shape), space)
    w_low = backend.move((1.0 - weight).astype(x.dtype).reshape(shape), space)
    return _take(x, low, axis=axis) * w_low + _take(x, high, axis=axis) * w_high


def _cubic_axis(x, axis, size_in, size_out, scale, align_corners):
    """Cubic convolution along ``axis`` (A = -0.75, indices clamped to the axis): four gathers,
    weighted."""
    if size_out == size_in:
        return x
    dst = np.arange(size_out, dtype=np.float64)
    if align_corners:
        src = dst * ((size_in - 1) / (size_out - 1) if size_out > 1 else 0.0)
    else:
        src = (dst + 0.5) * (1.0 / scale if scale is not None and scale > 0 else size_in / size_out) - 0.5
    low = np.minimum(np.floor(src).astype(np.int64), size_in - 1)
    t = np.clip(src - low, 0.0, 1.0)
    a = -0.75

    def near(d):                              # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):                               # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    shape = (size_out,) + (1,) * (x.ndim - 1 - axis)
    space = x._node.space
    y = None
    for k, weight in enumerate((far(t + 1), near(t), near(1 - t), far(2 - t))):
        term = _take(x, np.clip(low - 1 + k, 0, size_in - 1), axis=axis)
        term = term * backend.move(weight.astype(x.dtype).reshape(shape), space)
        y = term if y is None else y + term
    return y


# ---- unfold and fold ----------------------------------------------------------------------------------

def _blocks(name, spatial, kernel_size, dilation, padding, stride):
    kernel = ntuple(kernel_size, 2, f"{name}: kernel_size")
    dilation = ntuple(dilation, 2, f"{name}: dilation")
    padding = ntuple(padding, 2, f"{name}: padding", minimum=0)
    stride = ntuple(stride, 2, f"{name}: stride")
    outs = tuple((s + 2 * p - d * (k - 1) - 1) // t + 1
                 for s, k, d, p, t in zip(spatial, kernel, dilation, padding, stride))
    if any(o < 1 for o in outs):
        raise _located(f"{name}: the spatial size {tuple(spatial)} (padding {padding}) is too small for the "
                       f"kernel {kernel} with dilation {dilation}")
    # positions in the padded input: (kh, 1, Oh, 1) and (1, kw, 1, Ow)
    rows = (np.arange(kernel[0]) * dilation[0])[:, None, None, None] + (np.arange(outs[0]) * stride[0])[None, None, :, None]
    cols = (np.arange(kernel[1]) * dilation[1])[None, :, None, None] + (np.arange(outs[1]) * stride[1])[None, None, None, :]
    return kernel, padding, outs, rows, cols


def unfold(input, kernel_size, dilation=1, padding=0, stride=1) -> Var:
    """im2col, as PyTorch's: the sliding blocks of (N, C, H, W) (or (C, H, W)) as columns,
    (N, C kh kw, L) with L blocks in row-major order. One gather: its gradient adds up.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.unfold(np.arange(9.0).reshape(1, 1, 3, 3), 2).data
    array([[[0., 1., 3., 4.],
            [1., 2., 4., 5.],
            [3., 4., 6., 7.],
            [4., 5., 7., 8.]]])
    """
    name = "unfold"
    x = _layer_input(name, input)
    if x.ndim not in (3, 4):
        raise _located(f"{name}: expected an input of shape (N, C, H, W) or (C, H, W), got {x.shape}")
    kernel, padding, outs, rows, cols = _blocks(name, x.shape[-2:], kernel_size, dilation, padding, stride)
    if any(padding):
        x = _np_pad(x, ((0, 0),) * (x.ndim - 2) + tuple((p, p) for p in padding), mode="constant")
    patches = x[..., rows, cols]                         # (*, C, kh, kw, Oh, Ow)
    lead = x.shape[:-2]
    return patches.reshape(lead[:-1] + (lead[-1] * math.prod(kernel), math.prod(outs)))


def fold(input, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Var:
    """col2im, as PyTorch's: the columns (N, C kh kw, L) (or (C kh kw, L)) of blocks summed back
    into (N, C, *output_size); overlapping blocks add up. ``fold(unfold(x))`` is x times the
    number of blocks that cover each pixel.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.fold(np.ones((1, 4, 4)), (3, 3), 2).data[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    name = "fold"
    x = _layer_input(name, input)
    if x.ndim not in (2, 3):
        raise _located(f"{name}: expected an input of shape (N, C * kh * kw, L) or (C * kh * kw, L), got {x.shape}")
    size = ntuple(output_size, 2, f"{name}: output_size")
    kernel, padding, outs, rows, cols = _blocks(name, size, kernel_size, dilation, padding, stride)
    k = math.prod(kernel)
    if x.shape[-2] % k or x.shape[-1] != math.prod(outs):
        raise _located(f"{name}: for output_size {size}, kernel {kernel} the input must have shape "
                       f"(N, C * {k}, {math.prod(outs)}) ({outs[0]} x {outs[1]} blocks), got {x.shape}")
    if x.dtype.kind == "b":                     # booleans add up as integers, as in a NumPy sum
        x = x.astype(np.int64)
    lead = x.shape[:-2] + (x.shape[-2] // k,)
    patches = x.reshape(lead + kernel + outs)
    padded = size[0] + 2 * padding[0], size[1] + 2 * padding[1]
    zeros = backend.move(np.zeros(lead + padded, x.dtype), x._node.space)
    y = from_ndarray(zeros).at[..., rows, cols].add(patches)
    if any(padding):
        y = y[..., padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]
    return y


# ---- modules ------------------------------------------------------------------------------------------


class PixelShuffle(Module):
    """``pixel_shuffle`` as a layer.

    >>> import neuronika
    >>> from neuronika.nn import PixelShuffle
    >>> PixelShuffle(3)(neuronika.rand((1, 9, 4, 4))).shape
    (1, 1, 12, 12)
    """

    def __init__(self, upscale_factor: int):
        super().__init__()
        self.upscale_factor = upscale_factor

    def forward(self, x):
        return _calling(self, pixel_shuffle, x, self.upscale_factor)

    def extra_repr(self):
        return f"upscale_factor={self.upscale_factor}"


class PixelUnshuffle(Module):
    """``pixel_unshuffle`` as a layer.

    >>> import neuronika
    >>> from neuronika.nn import PixelUnshuffle
    >>> PixelUnshuffle(2)(neuronika.rand((1, 1, 4, 4))).shape
    (1, 4, 2, 2)
    """

    def __init__(self, downscale_factor: int):
        super().__init__()
        self.downscale_factor = downscale_factor

    def forward(self, x):
        return _calling(self, pixel_unshuffle, x, self.downscale_factor)

    def extra_repr(self):
        return f"downscale_factor={self.downscale_factor}"


class Upsample(Module):
    """``interpolate`` as a layer.

    >>> import neuronika
    >>> from neuronika.nn import Upsample
    >>> Upsample(scale_factor=2, mode="bilinear")(neuronika.rand((1, 3, 4, 5))).shape
    (1, 3, 8, 10)
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest", align_corners: bool | None = None,
                 recompute_scale_factor: bool | None = None):
        super().__init__()
        if isinstance(scale_factor, numbers.Real) and not isinstance(scale_factor, bool):
            scale_factor = float(scale_factor)           # as PyTorch keeps it
        self.size, self.scale_factor, self.mode = size, scale_factor, mode
        self.align_corners, self.recompute_scale_factor = align_corners, recompute_scale_factor

    def forward(self, x):
        return _calling(self, interpolate, x, self.size, self.scale_factor, self.mode, self.align_corners,
                        self.recompute_scale_factor)

    def extra_repr(self):
        where = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        return f"{where}, mode={self.mode!r}"


class Unfold(Module):
    """``unfold`` (im2col) as a layer.

    >>> import neuronika
    >>> from neuronika.nn import Unfold
    >>> Unfold(3, padding=1)(neuronika.rand((2, 4, 5, 5))).shape
    (2, 36, 25)
    """

    def __init__(self, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.kernel_size, self.dilation, self.padding, self.stride = kernel_size, dilation, padding, stride

    def forward(self, x):
        return _calling(self, unfold, x, self.kernel_size, self.dilation, self.padding, self.stride)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, dilation={self.dilation}, padding={self.padding}, "
                f"stride={self.stride}")


class Fold(Module):
    """``fold`` (col2im) as a layer.

    >>> import neuronika
    >>> from neuronika.nn import Fold
    >>> Fold((5, 5), 3, padding=1)(neuronika.rand((2, 36, 25))).shape
    (2, 4, 5, 5)
    """

    def __init__(self, output_size, kernel_size, dilation=1, padding=0, stride=1):
        super().__init__()
        self.output_size, self.kernel_size = output_size, kernel_size
        self.dilation, self.padding, self.stride = dilation, padding, stride

    def forward(self, x):
        return _calling(self, fold, x, self.output_size, self.kernel_size, self.dilation, self.padding,
                        self.stride)

    def extra_repr(self):
        return (f"output_size={self.output_size}, kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}, stride={self.stride}")
