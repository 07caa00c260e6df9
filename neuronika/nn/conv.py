"""Convolution layers: Conv1d, Conv2d, Conv3d, and the function ``conv`` they call.

>>> import neuronika
>>> from neuronika.nn.conv import Conv2d
>>> layer = Conv2d(1, 8, kernel_size=3, padding=1)
>>> layer(neuronika.rand((4, 1, 28, 28))).shape
(4, 8, 28, 28)
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import ShapeError
from ..graph import apply, format_where, user_line
from ..ops import OPS
from ..ops.conv import output_size
from ..variable import Var, _wrap
from . import init
from ._checks import float_dtype
from .layers import as_var, check_input
from .module import Module, parameter

_CONV = OPS["conv"]
PADDING_MODES = {"zeros": "constant", "constant": "constant", "reflect": "reflect",
                 "replicate": "replicate"}


def _located(message, kind=ShapeError):
    return kind(f"{message} (at {format_where(user_line())})")


def ntuple(value, n: int, name: str, minimum: int = 1) -> tuple:
    """An int repeated ``n`` times, or a sequence of ``n`` ints, each at least ``minimum``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        values = (int(value),) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            values = None
        if (values is None or len(values) != n
                or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)):
            raise _located(f"{name} must be an int or {n} ints, got {value!r}", ValueError)
        values = tuple(int(v) for v in values)
    if any(v < minimum for v in values):
        raise _located(f"{name} must be at least {minimum}, got {value!r}", ValueError)
    return values


def padding_pairs(padding, kernel, dilation, stride, name="conv"):
    """(before, after) per spatial axis: from an int, one int per axis, 'valid' or 'same'."""
    n = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * n
        if padding == "same":
            if any(s != 1 for s in stride):
                raise _located(f"{name}: padding='same' needs stride 1, got stride {stride}", ValueError)
            pairs = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pairs.append((total // 2, total - total // 2))
            return tuple(pairs)
        raise _located(f"{name}: padding must be an int, a tuple of ints, 'valid' or 'same', got "
                       f"{padding!r}", ValueError)
    return tuple((p, p) for p in ntuple(padding, n, f"{name}: padding", minimum=0))


def conv(x, w, stride=1, padding=0, dilation=1, groups: int = 1, padding_mode: str = "zeros",
         padding_value: float = 0.0) -> Var:
    """Convolution (cross-correlation, as in PyTorch) of ``x`` (N, C_in, *size) with the
    kernel ``w`` (C_out, C_in / groups, *k); 1, 2 or 3 spatial axes (``w.ndim - 2``).

    ``stride``, ``padding`` and ``dilation`` are an int or one int per spatial axis;
    ``padding`` may also be 'valid' (none) or 'same' (stride 1: the output keeps the
    size). ``padding_mode``: 'zeros', 'constant' (with ``padding_value``), 'reflect' or
    'replicate'. An unbatched ``x`` (C_in, *size) gives an unbatched result. No bias:
    add it after (``y + b.reshape(C_out, 1, ...)``).

    >>> import numpy as np
    >>> import neuronika
    >>> from neuronika.nn.conv import conv
    >>> x = neuronika.ones((1, 1, 4, 4))
    >>> w = neuronika.ones((2, 1, 3, 3))
    >>> conv(x, w, padding=1).data[0, 0]
    array([[4., 6., 6., 4.],
           [6., 9., 9., 6.],
           [6., 9., 9., 6.],
           [4., 6., 6., 4.]], dtype=float32)
    """
    x, w = as_var(x), as_var(w)
    spatial = w.ndim - 2
    if not 1 <= spatial <= 3:
        raise _located(f"conv: the kernel must be (C_out, C_in / groups, *k) with 1 to 3 spatial "
                       f"axes, got shape {w.shape}")
    unbatched = x.ndim == spatial + 1
    if unbatched:
        x = x.unsqueeze(0)
    if x.ndim != spatial + 2:
        raise _located(f"conv: a kernel of shape {w.shape} needs an input (N, C_in, *size) or "
                       f"(C_in, *size) with {spatial} spatial axes, got shape {x.shape}")
    stride = ntuple(stride, spatial, "conv: stride")
    dilation = ntuple(dilation, spatial, "conv: dilation")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise _located(f"conv: groups must be a positive int, got {groups!r}", ValueError)
    pairs = padding_pairs(padding, w.shape[2:], dilation, stride)
    if padding_mode not in PADDING_MODES:
        raise _located(f"conv: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                       f"got {padding_mode!r}", ValueError)
    if any(b or a for b, a in pairs):
        value = padding_value if padding_mode == "constant" else 0.0
        x = x.pad(((0, 0), (0, 0)) + pairs, mode=PADDING_MODES[padding_mode], value=value)
    y = _wrap(apply(_CONV, (x._node, w._node), (stride, dilation, int(groups))))
    return y.squeeze(0) if unbatched else y


class _ConvNd(Module):
    """The layers' shared body; subclasses set ``spatial``."""

    spatial = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 padding_value: float = 0.0, dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        n = self.spatial
        for label, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {label} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups = {groups} must divide in_channels = {in_channels} and "
                             f"out_channels = {out_channels}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{name}: padding_mode must be one of "
                             f"{', '.join(map(repr, PADDING_MODES))}, got {padding_mode!r}")
        dtype = float_dtype(name, dtype)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = ntuple(kernel_size, n, f"{name}: kernel_size")
        self.stride = ntuple(stride, n, f"{name}: stride")
        self.dilation = ntuple(dilation, n, f"{name}: dilation")
        self.padding = padding if isinstance(padding, str) else ntuple(padding, n, f"{name}: padding", 0)
        self._pairs = padding_pairs(padding, self.kernel_size, self.dilation, self.stride, name)
        self.padding_mode, self.padding_value = padding_mode, float(padding_value)
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = parameter(np.empty(shape, dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            fan_in = in_channels // groups * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in)
            self.bias = parameter(np.empty(out_channels, dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def forward(self, x):
        x = as_var(x, self)
        n = self.spatial
        dims = ("L", "H, W", "D, H, W")[n - 1]
        expected = f"(N, {self.in_channels}, {dims}) or ({self.in_channels}, {dims})"
        hint = ""
        if x.ndim == n:
            hint = ("; it has no channel axis: add one with x.reshape((1,) + x.shape)" if self.in_channels == 1
                    else ", which has no channel axis")
        check_input(self, x, x.ndim in (n + 1, n + 2), expected, hint)
        check_input(self, x, x.shape[-n - 1] == self.in_channels, expected)
        sizes = tuple(s + b + a for s, (b, a) in zip(x.shape[-n:], self._pairs))
        extent = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        if any(s < e for s, e in zip(sizes, extent)):
            padded = f" ({sizes} after padding)" if any(b or a for b, a in self._pairs) else ""
            raise ShapeError(f"{self!r}: the input of shape {x.shape} is smaller{padded} than the "
                             f"dilated kernel {extent}")
        y = conv(x, self.weight, self.stride, self.padding, self.dilation, self.groups,
                 self.padding_mode, self.padding_value)
        if self.bias is not None:
            y = y + self.bias.reshape((self.out_channels,) + (1,) * n)
        return y

    def output_shape(self, shape) -> tuple:
        """The output shape for an input of ``shape`` (PyTorch's formula)."""
        shape = tuple(shape)
        sizes = [s + b + a for s, (b, a) in zip(shape[-self.spatial:], self._pairs)]
        out = tuple(output_size(s, k, t, d) for s, k, t, d
                    in zip(sizes, self.kernel_size, self.stride, self.dilation))
        return shape[:-self.spatial - 1] + (self.out_channels,) + out

    def extra_repr(self):
        n = self.spatial
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * n:
            text += f", padding={self.padding!r}"
        if self.dilation != (1,) * n:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode!r}"
            if self.padding_mode == "constant":
                text += f", padding_value={self.padding_value}"
        return text


class Conv1d(_ConvNd):
    """1-D convolution over (N, C_in, L) (or (C_in, L)), kernel (C_out, C_in / groups, k).

    Initialised as PyTorch does: kaiming_uniform_(a=sqrt(5)) for the kernel, the bias
    uniform in +-1/sqrt(fan_in), fan_in = C_in / groups * k.

    >>> import neuronika
    >>> from neuronika.nn.conv import Conv1d
    >>> Conv1d(4, 6, 3, stride=2)(neuronika.rand((2, 4, 11))).shape
    (2, 6, 5)
    """

    spatial = 1


class Conv2d(_ConvNd):
    """2-D convolution over (N, C_in, H, W) (or (C_in, H, W)), kernel (C_out, C_in / groups, kh, kw).

    ``stride``, ``padding``, ``dilation``: an int or a pair; ``padding`` also 'valid' or
    'same'. ``padding_mode``: 'zeros', 'constant' (``padding_value``), 'reflect',
    'replicate'. Initialised as PyTorch does (kaiming_uniform_(a=sqrt(5)); bias uniform
    in +-1/sqrt(fan_in), fan_in = C_in / groups * kh * kw).

    >>> import neuronika
    >>> from neuronika.nn.conv import Conv2d
    >>> Conv2d(3, 8, 3, padding=1, padding_mode="reflect")(neuronika.rand((2, 3, 8, 8))).shape
    (2, 8, 8, 8)
    """

    spatial = 2


class Conv3d(_ConvNd):
    """3-D convolution over (N, C_in, D, H, W) (or (C_in, D, H, W)); as Conv2d with triples.

    >>> import neuronika
    >>> from neuronika.nn.conv import Conv3d
    >>> Conv3d(2, 4, (1, 3, 3))(neuronika.rand((1, 2, 4, 6, 6))).shape
    (1, 4, 4, 4, 4)
    """

    spatial = 3
