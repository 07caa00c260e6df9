"""Convolution layers: Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,
ConvTranspose3d, and the functions they call: ``conv`` and ``nn.functional``'s conv1d,
conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d.

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
_CONV_TRANSPOSE = OPS["conv_transpose"]
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
    return _conv("conv", x, w, stride, padding, dilation, groups, padding_mode, padding_value)


def _conv(name, x, w, stride, padding, dilation, groups, padding_mode="zeros", padding_value=0.0,
          check_size=True):
    x, w = as_var(x), as_var(w)
    spatial = w.ndim - 2
    if not 1 <= spatial <= 3:
        raise _located(f"{name}: the kernel must be (C_out, C_in / groups, *k) with 1 to 3 spatial "
                       f"axes, got shape {w.shape}")
    unbatched = x.ndim == spatial + 1
    if unbatched:
        x = x.unsqueeze(0)
    if x.ndim != spatial + 2:
        raise _located(f"{name}: a kernel of shape {w.shape} needs an input (N, C_in, *size) or "
                       f"(C_in, *size) with {spatial} spatial axes, got shape {x.shape}")
    stride = ntuple(stride, spatial, f"{name}: stride")
    dilation = ntuple(dilation, spatial, f"{name}: dilation")
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise _located(f"{name}: groups must be a positive int, got {groups!r}", ValueError)
    pairs = padding_pairs(padding, w.shape[2:], dilation, stride, name)
    if padding_mode not in PADDING_MODES:
        raise _located(f"{name}: padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, "
                       f"got {padding_mode!r}", ValueError)
    if check_size:                 # (the layers check it before, naming themselves)
        sizes = tuple(s + b + a for s, (b, a) in zip(x.shape[2:], pairs))
        extent = tuple(d * (k - 1) + 1 for k, d in zip(w.shape[2:], dilation))
        if any(s < e for s, e in zip(sizes, extent)):
            padded = f" ({sizes} after padding)" if any(b or a for b, a in pairs) else ""
            raise _located(f"{name}: an input of shape {x.shape}{padded} is smaller than the kernel of "
                           f"shape {w.shape} with dilation {dilation} (it spans {extent})")
    if any(b or a for b, a in pairs):
        value = padding_value if padding_mode == "constant" else 0.0
        x = x.pad(((0, 0), (0, 0)) + pairs, mode=PADDING_MODES[padding_mode], value=value)
    y = _wrap(apply(_CONV, (x._node, w._node), (stride, dilation, int(groups))))
    return y.squeeze(0) if unbatched else y


# ---- nn.functional: conv1d/2d/3d and conv_transpose1d/2d/3d -------------------------------------

def _positive_groups(name, groups):
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise _located(f"{name}: groups must be a positive int, got {groups!r}", ValueError)
    return int(groups)


def _operands(name, spatial, x, w, b, layout):
    """The input, kernel and bias as variables, checked against each other; ``layout`` names
    the kernel's axes for the messages."""
    x, w = as_var(x, name), as_var(w, name)
    for label, v in (("input", x), ("weight", w)):
        if v.dtype.kind != "f":
            raise _located(f"{name}: the {label} must be floating point, got dtype {v.dtype}", TypeError)
    if w.ndim != spatial + 2:
        raise _located(f"{name}: the weight must be {layout} ({spatial + 2}-D), got shape {w.shape}")
    if x.ndim not in (spatial + 1, spatial + 2):
        raise _located(f"{name}: expected an input (N, C, *size) or (C, *size) with {spatial} spatial "
                       f"axes, got shape {x.shape}")
    if b is not None:
        b = as_var(b, name)
        if b.dtype.kind != "f":
            raise _located(f"{name}: the bias must be floating point, got dtype {b.dtype}", TypeError)
    return x, w, b


def _bias(y, b, channels, spatial, name):
    if b is None:
        return y
    if b.shape != (channels,):
        raise _located(f"{name}: the bias must have shape ({channels},) (the output channels), got "
                       f"shape {b.shape}")
    return y + b.reshape((channels,) + (1,) * spatial)


def _conv_nd(name, spatial, x, w, b, stride, padding, dilation, groups, padding_mode="zeros",
             padding_value=0.0):
    """F.conv1d/2d/3d: the arguments checked, then ``_convolve``."""
    x, w, b = _operands(name, spatial, x, w, b, "(C_out, C_in / groups, *k)")
    groups = _positive_groups(name, groups)
    channels = x.shape[-spatial - 1]
    if w.shape[0] % groups or channels != w.shape[1] * groups:
        raise _located(f"{name}: an input of shape {x.shape} has {channels} channels; a weight of shape "
                       f"{w.shape} with groups={groups} needs {w.shape[1] * groups} "
                       f"({w.shape[1]} per group) and out channels ({w.shape[0]}) divisible by groups")
    return _convolve(name, spatial, x, w, b, stride, padding, dilation, groups, padding_mode,
                     padding_value)


def _convolve(name, spatial, x, w, b, stride, padding, dilation, groups, padding_mode="zeros",
              padding_value=0.0, check_size=True):
    """The body F.conv*d and the Conv*d layers (which check their input first) share: the
    padding, the convolution op, then the bias broadcast over the spatial axes."""
    y = _conv(name, x, w, stride, padding, dilation, groups, padding_mode, padding_value, check_size)
    return _bias(y, b, w.shape[0], spatial, name)


def _conv_transpose_nd(name, spatial, x, w, b, stride, padding, output_padding, groups, dilation):
    x, w, b = _operands(name, spatial, x, w, b, "(C_in, C_out / groups, *k)")
    groups = _positive_groups(name, groups)
    channels = x.shape[-spatial - 1]
    if channels != w.shape[0] or w.shape[0] % groups:
        raise _located(f"{name}: an input of shape {x.shape} has {channels} channels; a weight of shape "
                       f"{w.shape} (C_in, C_out / groups, *k) with groups={groups} needs {w.shape[0]}, "
                       f"divisible by groups")
    if isinstance(padding, str):
        raise _located(f"{name}: padding must be an int or {spatial} ints, got {padding!r}", ValueError)
    stride = ntuple(stride, spatial, f"{name}: stride")
    dilation = ntuple(dilation, spatial, f"{name}: dilation")
    padding = ntuple(padding, spatial, f"{name}: padding", 0)
    output_padding = ntuple(output_padding, spatial, f"{name}: output_padding", 0)
    if any(o >= max(s, d) for o, s, d in zip(output_padding, stride, dilation)):
        raise _located(f"{name}: output_padding {output_padding} must be smaller than the stride "
                       f"{stride} or the dilation {dilation} along each axis", ValueError)
    unbatched = x.ndim == spatial + 1
    if unbatched:
        x = x.unsqueeze(0)
    sizes, full, crops = x.shape[2:], [], []
    for axis, (n, k, s, p, o, d) in enumerate(zip(sizes, w.shape[2:], stride, padding, output_padding,
                                                   dilation)):
        base = (n - 1) * s + d * (k - 1) + 1       # the positions the windows reach
        if base - 2 * p + o < 1:
            raise _located(f"{name}: an input of shape {x.shape} with a weight of shape {w.shape}, "
                           f"stride {stride}, padding {padding}, output_padding {output_padding} and "
                           f"dilation {dilation} gives no output along spatial axis {axis} "
                           f"(size {base - 2 * p + o})")
        # the op is the adjoint of a conv: its size must give back n positions, so an
        # output_padding >= stride (allowed when below the dilation) is added as zeros after
        full.append(base + (o if o < s else 0))
        crops.append((p, base + o - p))
    y = _wrap(apply(_CONV_TRANSPOSE, (x._node, w._node), (tuple(full), stride, dilation, groups)))
    if any(p or end != size for (p, end), size in zip(crops, full)):
        y = y[(slice(None), slice(None)) + tuple(slice(p, min(end, size)) for (p, end), size
                                                  in zip(crops, full))]
        extra = tuple(max(0, end - size) for (p, end), size in zip(crops, full))
        if any(extra):
            y = y.pad(((0, 0), (0, 0)) + tuple((0, e) for e in extra))
    if unbatched:
        y = y.squeeze(0)
    return _bias(y, b, w.shape[1] * groups, spatial, name)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Var:
    """1-D convolution (cross-correlation) of ``input`` (N, C_in, L) or (C_in, L) with
    ``weight`` (C_out, C_in / groups, k), plus ``bias`` (C_out,); ``padding`` an int, a
    1-tuple, 'valid' or 'same'. As ``torch.nn.functional.conv1d``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.conv1d(np.arange(5.0).reshape(1, 1, 5), np.ones((1, 1, 2)), np.array([10.0])).data
    array([[[11., 13., 15., 17.]]])
    """
    return _conv_nd("conv1d", 1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Var:
    """2-D convolution of ``input`` (N, C_in, H, W) or (C_in, H, W) with ``weight``
    (C_out, C_in / groups, kh, kw), plus ``bias`` (C_out,); ``stride``, ``padding``,
    ``dilation`` an int or a pair (``padding`` also 'valid' or 'same'). As
    ``torch.nn.functional.conv2d``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.conv2d(np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), padding="same").shape
    (2, 4, 5, 5)
    """
    return _conv_nd("conv2d", 2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1) -> Var:
    """3-D convolution of ``input`` (N, C_in, D, H, W) or (C_in, D, H, W) with ``weight``
    (C_out, C_in / groups, kd, kh, kw); as ``conv2d`` with triples.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.conv3d(np.ones((1, 2, 4, 4, 4)), np.ones((6, 1, 3, 3, 3)), stride=2, groups=2).shape
    (1, 6, 1, 1, 1)
    """
    return _conv_nd("conv3d", 3, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Var:
    """1-D transposed convolution (the gradient of conv1d with respect to its input) of
    ``input`` (N, C_in, L) or (C_in, L) with ``weight`` (C_in, C_out / groups, k), plus
    ``bias`` (C_out,). The output length is (L - 1) * stride - 2 * padding
    + dilation * (k - 1) + output_padding + 1; ``output_padding`` must be smaller than the
    stride or the dilation. As ``torch.nn.functional.conv_transpose1d``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.conv_transpose1d(np.array([[[1.0, 2.0]]]), np.ones((1, 1, 3)), stride=2).data
    array([[[1., 1., 3., 2., 2.]]])
    """
    return _conv_transpose_nd("conv_transpose1d", 1, input, weight, bias, stride, padding, output_padding,
                              groups, dilation)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Var:
    """2-D transposed convolution of ``input`` (N, C_in, H, W) or (C_in, H, W) with
    ``weight`` (C_in, C_out / groups, kh, kw), plus ``bias`` (C_out,); each output size is
    (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1. As
    ``torch.nn.functional.conv_transpose2d``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.conv_transpose2d(np.ones((2, 4, 5, 5)), np.ones((4, 3, 3, 3)), stride=2, padding=1,
    ...                    output_padding=1).shape
    (2, 3, 10, 10)
    """
    return _conv_transpose_nd("conv_transpose2d", 2, input, weight, bias, stride, padding, output_padding,
                              groups, dilation)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups: int = 1,
                     dilation=1) -> Var:
    """3-D transposed convolution of ``input`` (N, C_in, D, H, W) or (C_in, D, H, W) with
    ``weight`` (C_in, C_out / groups, kd, kh, kw); as ``conv_transpose2d`` with triples.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.conv_transpose3d(np.ones((1, 2, 2, 3, 3)), np.ones((2, 1, 2, 2, 2)), groups=2).shape
    (1, 2, 3, 4, 4)
    """
    return _conv_transpose_nd("conv_transpose3d", 3, input, weight, bias, stride, padding, output_padding,
                              groups, dilation)


def _layer_repr(layer, geometry):
    """A convolution's repr options: channels, kernel and stride, then each of ``geometry``
    (per-axis tuples) away from its default (0, or 1 for dilation), groups and bias."""
    n = layer.spatial
    text = f"{layer.in_channels}, {layer.out_channels}, kernel_size={layer.kernel_size}, stride={layer.stride}"
    for name in geometry:
        value = getattr(layer, name)
        if value != ((1,) if name == "dilation" else (0,)) * n:
            text += f", {name}={value!r}"
    if layer.groups != 1:
        text += f", groups={layer.groups}"
    if layer.bias is None:
        text += ", bias=False"
    return text


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
        return _convolve(f"conv{n}d", n, x, self.weight, self.bias, self.stride, self.padding,
                         self.dilation, self.groups, self.padding_mode, self.padding_value, False)

    def output_shape(self, shape) -> tuple:
        """The output shape for an input of ``shape`` (PyTorch's formula)."""
        shape = tuple(shape)
        sizes = [s + b + a for s, (b, a) in zip(shape[-self.spatial:], self._pairs)]
        out = tuple(output_size(s, k, t, d) for s, k, t, d
                    in zip(sizes, self.kernel_size, self.stride, self.dilation))
        return shape[:-self.spatial - 1] + (self.out_channels,) + out

    def extra_repr(self):
        text = _layer_repr(self, ("padding", "dilation"))
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


class _ConvTransposeNd(Module):
    """The transposed layers' shared body; subclasses set ``spatial``."""

    spatial = 0

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        n = self.spatial
        for label, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: {label} must be a positive int, got {value!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups = {groups} must divide in_channels = {in_channels} and "
                             f"out_channels = {out_channels}")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported (as in PyTorch), got "
                             f"{padding_mode!r}")
        if isinstance(padding, str):
            raise ValueError(f"{name}: padding must be an int or {n} ints, got {padding!r}")
        dtype = float_dtype(name, dtype)
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size = ntuple(kernel_size, n, f"{name}: kernel_size")
        self.stride = ntuple(stride, n, f"{name}: stride")
        self.padding = ntuple(padding, n, f"{name}: padding", 0)
        self.output_padding = ntuple(output_padding, n, f"{name}: output_padding", 0)
        self.dilation = ntuple(dilation, n, f"{name}: dilation")
        if any(o >= max(s, d) for o, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"{name}: output_padding {self.output_padding} must be smaller than the "
                             f"stride {self.stride} or the dilation {self.dilation} along each axis")
        self.padding_mode = padding_mode
        # PyTorch's layout and fans: the kernel's axis 1 (out_channels / groups) is its fan_in
        shape = (in_channels, out_channels // groups) + self.kernel_size
        self.weight = parameter(np.empty(shape, dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            bound = 1 / math.sqrt(out_channels // groups * math.prod(self.kernel_size))
            self.bias = parameter(np.empty(out_channels, dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def _sizes(self, sizes):
        return tuple((L - 1) * s - 2 * p + d * (k - 1) + 1 for L, s, p, d, k
                     in zip(sizes, self.stride, self.padding, self.dilation, self.kernel_size))

    def forward(self, x, output_size=None):
        """``output_size`` (the spatial sizes, or the whole shape) picks the output_padding
        that gives that size, as in PyTorch (each within stride - 1 of the smallest)."""
        x = as_var(x, self)
        n = self.spatial
        dims = ("L", "H, W", "D, H, W")[n - 1]
        expected = f"(N, {self.in_channels}, {dims}) or ({self.in_channels}, {dims})"
        check_input(self, x, x.ndim in (n + 1, n + 2), expected)
        check_input(self, x, x.shape[-n - 1] == self.in_channels, expected)
        output_padding = self.output_padding
        if output_size is not None:
            output_padding = self._output_padding(x, output_size)
        return _conv_transpose_nd(f"conv_transpose{n}d", n, x, self.weight, self.bias, self.stride,
                                  self.padding, output_padding, self.groups, self.dilation)

    def _output_padding(self, x, output_size):
        n = self.spatial
        try:
            want = tuple(int(v) for v in output_size)
        except TypeError:
            want = ()
        if len(want) in (n + 1, n + 2) and len(want) != n:
            want = want[-n:]
        if len(want) != n:
            raise _located(f"{self!r}: output_size must give {n} spatial sizes (or the whole output "
                           f"shape), got {output_size!r}", ValueError)
        smallest = self._sizes(x.shape[-n:])
        for axis, (size, low, s) in enumerate(zip(want, smallest, self.stride)):
            if not low <= size <= low + s - 1:
                raise _located(f"{self!r}: output_size {want} cannot be reached from an input of shape "
                               f"{x.shape}: along spatial axis {axis} the size must be in "
                               f"[{low}, {low + s - 1}], got {size}", ValueError)
        return tuple(size - low for size, low in zip(want, smallest))

    def output_shape(self, shape) -> tuple:
        """The output shape for an input of ``shape`` (PyTorch's formula)."""
        shape = tuple(shape)
        sizes = tuple(size + o for size, o in zip(self._sizes(shape[-self.spatial:]), self.output_padding))
        return shape[:-self.spatial - 1] + (self.out_channels,) + sizes

    def extra_repr(self):
        return _layer_repr(self, ("padding", "output_padding", "dilation"))


class ConvTranspose1d(_ConvTransposeNd):
    """1-D transposed convolution over (N, C_in, L) (or (C_in, L)), kernel
    (C_in, C_out / groups, k): L_out = (L - 1) * stride - 2 * padding + dilation * (k - 1)
    + output_padding + 1 (``F.conv_transpose1d``).

    Initialised as PyTorch does: kaiming_uniform_(a=sqrt(5)) for the kernel, the bias
    uniform in +-1/sqrt(fan_in), fan_in = C_out / groups * k.

    >>> import neuronika
    >>> from neuronika.nn.conv import ConvTranspose1d
    >>> ConvTranspose1d(4, 6, 3, stride=2)(neuronika.rand((2, 4, 5))).shape
    (2, 6, 11)
    """

    spatial = 1


class ConvTranspose2d(_ConvTransposeNd):
    """2-D transposed convolution over (N, C_in, H, W) (or (C_in, H, W)), kernel
    (C_in, C_out / groups, kh, kw) (``F.conv_transpose2d``); ``forward(x, output_size=...)``
    picks the output_padding, as in PyTorch. Initialised as PyTorch does.

    >>> import neuronika
    >>> from neuronika.nn.conv import ConvTranspose2d
    >>> up = ConvTranspose2d(8, 4, 3, stride=2, padding=1)
    >>> up(neuronika.rand((1, 8, 7, 7)), output_size=(14, 14)).shape
    (1, 4, 14, 14)
    """

    spatial = 2


class ConvTranspose3d(_ConvTransposeNd):
    """3-D transposed convolution over (N, C_in, D, H, W) (or (C_in, D, H, W)); as
    ConvTranspose2d with triples.

    >>> import neuronika
    >>> from neuronika.nn.conv import ConvTranspose3d
    >>> ConvTranspose3d(2, 4, 2, stride=2)(neuronika.rand((1, 2, 2, 3, 3))).shape
    (1, 4, 4, 6, 6)
    """

    spatial = 3
