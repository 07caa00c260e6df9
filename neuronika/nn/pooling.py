"""Pooling layers: MaxPool1d/2d/3d, AvgPool1d/2d/3d, AdaptiveAvgPool1d/2d, AdaptiveMaxPool1d/2d,
and the functions they call (``nn.functional.max_pool2d``, ``adaptive_avg_pool2d``, ...).

Windows slide over the trailing spatial axes of (N, C, *size) or (C, *size).
``stride`` defaults to ``kernel_size``; ``padding`` (at most half the kernel, as
in PyTorch) pads with -inf for max pooling and with zeros for average pooling,
where the padding counts in the mean (PyTorch's default ``count_include_pad=True``).
Max pooling sends each window's gradient to its first maximal element (row-major
within the window), as PyTorch does.

>>> import neuronika
>>> from neuronika.nn.pooling import MaxPool2d
>>> MaxPool2d(2)(neuronika.rand((4, 8, 28, 28))).shape
(4, 8, 14, 14)
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..creation import from_ndarray
from ..errors import ShapeError
from ..graph import apply
from ..numpy import argmax as _argmax, take_along_axis as _take_along_axis
from ..ops import OPS
from ..variable import Var, _wrap
from .conv import _located, ntuple
from .functional import _layer_input
from .layers import as_var, check_input
from .module import Module

_OPS = {"max": OPS["max_pool"], "avg": OPS["avg_pool"]}


def _geometry(kernel_size, stride, padding, spatial, name):
    kernel = ntuple(kernel_size, spatial, f"{name}: kernel_size")
    stride = kernel if stride is None else ntuple(stride, spatial, f"{name}: stride")
    padding = ntuple(padding, spatial, f"{name}: padding", minimum=0)
    if any(2 * p > k for p, k in zip(padding, kernel)):
        raise _located(f"{name}: padding {padding} must be at most half the kernel size {kernel}",
                       ValueError)
    return kernel, stride, padding


def _pool(kind, x, kernel, stride, padding):
    spatial = len(kernel)
    if any(padding):
        if kind == "max":
            value = -np.inf if x.dtype.kind == "f" else float(np.iinfo(x.dtype).min)
        else:
            value = 0.0
        pairs = ((0, 0),) * (x.ndim - spatial) + tuple((p, p) for p in padding)
        x = x.pad(pairs, mode="constant", value=value)
    return _wrap(apply(_OPS[kind], (x._node,), (kernel, stride)))


def _spatial(kernel_size, x):
    if isinstance(kernel_size, (tuple, list)):
        return len(kernel_size)
    return max(1, min(3, x.ndim - 2))


def max_pool(x, kernel_size, stride=None, padding=0) -> Var:
    """Maximum over windows of the trailing axes: ``len(kernel_size)`` of them, or for an
    int ``kernel_size`` all axes after the first two (N, C).

    >>> import numpy as np
    >>> import neuronika
    >>> from neuronika.nn.pooling import max_pool
    >>> x = neuronika.from_ndarray(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> max_pool(x, 2).data[0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    x = as_var(x, "max_pool")
    kernel, stride, padding = _geometry(kernel_size, stride, padding, _spatial(kernel_size, x), "max_pool")
    return _pool("max", x, kernel, stride, padding)


def avg_pool(x, kernel_size, stride=None, padding=0) -> Var:
    """Mean over windows of the trailing axes (as ``max_pool`` picks them); zero padding
    counts in the mean.

    >>> import numpy as np
    >>> import neuronika
    >>> from neuronika.nn.pooling import avg_pool
    >>> x = neuronika.from_ndarray(np.arange(16.0).reshape(1, 1, 4, 4))
    >>> avg_pool(x, 2).data[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    x = as_var(x, "avg_pool")
    kernel, stride, padding = _geometry(kernel_size, stride, padding, _spatial(kernel_size, x), "avg_pool")
    return _pool("avg", x, kernel, stride, padding)


class _PoolNd(Module):
    spatial = 0
    kind = ""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _geometry(kernel_size, stride, padding, self.spatial,
                                                                type(self).__name__)
        self.dilation, self.ceil_mode = (1,) * self.spatial, False

    def forward(self, x):
        x = as_var(x, self)
        n = self.spatial
        dims = ("L", "H, W", "D, H, W")[n - 1]
        check_input(self, x, x.ndim in (n + 1, n + 2), f"(N, C, {dims}) or (C, {dims})")
        sizes = tuple(s + 2 * p for s, p in zip(x.shape[-n:], self.padding))
        window = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        if any(s < w for s, w in zip(sizes, window)):
            padded = f" ({sizes} after padding)" if any(self.padding) else ""
            raise ShapeError(f"{self!r}: the input of shape {x.shape} is smaller{padded} than the "
                             f"window {window}")
        return _FUNCTIONS[self.kind, n](x, self.kernel_size, self.stride, self.padding, *self._options())

    def output_shape(self, shape) -> tuple:
        """The output shape for an input of ``shape`` (PyTorch's formula)."""
        shape = tuple(shape)
        n = self.spatial
        outs = _outputs(type(self).__name__, _Shaped(shape), self.kernel_size, self.stride, self.padding,
                        self.dilation, self.ceil_mode)
        return shape[:-n] + outs

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        for name, default in self._defaults:
            value = getattr(self, name)
            if value != default and not (name == "dilation" and value == (1,) * self.spatial):
                text += f", {name}={value}"
        return text


class _Shaped:
    """Something with a shape (what ``_outputs`` reads of an input)."""

    def __init__(self, shape):
        self.shape = shape


class _MaxPoolNd(_PoolNd):
    kind = "max"
    _defaults = (("dilation", 1), ("return_indices", False), ("ceil_mode", False))

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False,
                 ceil_mode: bool = False):
        super().__init__(kernel_size, stride, padding)
        name = type(self).__name__
        self.dilation = ntuple(dilation, self.spatial, f"{name}: dilation")
        if any(d < 1 for d in self.dilation):
            raise ValueError(f"{name}: dilation must be at least 1, got {dilation!r}")
        self.return_indices, self.ceil_mode = bool(return_indices), bool(ceil_mode)

    def _options(self):
        return self.dilation, self.ceil_mode, self.return_indices


class _AvgPoolNd(_PoolNd):
    kind = "avg"
    _defaults = (("ceil_mode", False), ("count_include_pad", True), ("divisor_override", None))

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None):
        super().__init__(kernel_size, stride, padding)
        if divisor_override is not None and self.spatial == 1:
            raise TypeError("AvgPool1d: divisor_override is not an option of 1-D average pooling "
                            "(as in PyTorch)")
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        self.divisor_override = divisor_override

    def _options(self):
        options = (self.ceil_mode, self.count_include_pad)
        return options if self.spatial == 1 else options + (self.divisor_override,)


class MaxPool1d(_MaxPoolNd):
    """Max over windows of the last axis of (N, C, L) or (C, L).

    >>> import neuronika
    >>> from neuronika.nn.pooling import MaxPool1d
    >>> MaxPool1d(3, stride=2)(neuronika.rand((2, 4, 11))).shape
    (2, 4, 5)
    """

    spatial = 1


class MaxPool2d(_MaxPoolNd):
    """Max over windows of the last two axes of (N, C, H, W) or (C, H, W); padding with -inf.
    The gradient goes to the first maximum of each window, as in PyTorch.

    >>> import neuronika
    >>> from neuronika.nn.pooling import MaxPool2d
    >>> MaxPool2d(3, stride=2, padding=1)(neuronika.rand((2, 4, 9, 9))).shape
    (2, 4, 5, 5)
    """

    spatial = 2


class MaxPool3d(_MaxPoolNd):
    """Max over windows of the last three axes of (N, C, D, H, W) or (C, D, H, W)."""

    spatial = 3


class AvgPool1d(_AvgPoolNd):
    """Mean over windows of the last axis of (N, C, L) or (C, L); zero padding counts.

    >>> import neuronika
    >>> from neuronika.nn.pooling import AvgPool1d
    >>> AvgPool1d(2)(neuronika.rand((2, 4, 11))).shape
    (2, 4, 5)
    """

    spatial = 1


class AvgPool2d(_AvgPoolNd):
    """Mean over windows of the last two axes of (N, C, H, W) or (C, H, W); zero padding
    counts in the mean (PyTorch's default count_include_pad=True).

    >>> import neuronika
    >>> from neuronika.nn.pooling import AvgPool2d
    >>> AvgPool2d(2, padding=1)(neuronika.rand((2, 4, 8, 8))).shape
    (2, 4, 5, 5)
    """

    spatial = 2


class AvgPool3d(_AvgPoolNd):
    """Mean over windows of the last three axes of (N, C, D, H, W) or (C, D, H, W)."""

    spatial = 3


# ---- the functions of nn.functional ---------------------------------------------------------------

_DIMS = ("L", "H, W", "D, H, W")


def _pool_input(name, input, n) -> Var:
    x = _layer_input(name, input)              # another array library's array stays there
    if x.ndim not in (n + 1, n + 2):
        raise _located(f"{name}: expected an input of shape (N, C, {_DIMS[n - 1]}) or (C, {_DIMS[n - 1]}), "
                       f"got a {x.ndim}-D input of shape {x.shape}")
    return x


def _outputs(name, x, kernel, stride, padding, dilation, ceil_mode):
    """PyTorch's output sizes (pooling_output_shape), checked to be at least 1."""
    n = len(kernel)
    sizes = []
    for size, k, s, p, d in zip(x.shape[-n:], kernel, stride, padding, dilation):
        span = size + 2 * p - d * (k - 1) - 1
        out = (span + (s - 1 if ceil_mode else 0)) // s + 1
        if ceil_mode and (out - 1) * s >= size + p:      # the last window starts in the right padding
            out -= 1
        sizes.append(out)
    if small := [i for i, o in enumerate(sizes) if o < 1]:
        raise _located(f"{name}: the input of shape {x.shape} is too small for the window {kernel} "
                       f"(dilation {dilation}, padding {padding}) along spatial axis {small[0]}")
    return tuple(sizes)


def _padded(x, before, after, value):
    if not any(before) and not any(after):
        return x
    n = len(before)
    pairs = ((0, 0),) * (x.ndim - n) + tuple(zip(before, after))
    return x.pad(pairs, mode="constant", value=value)


def _window_max(x, windows, sizes, offsets, return_indices):
    """The maximum over windows given as index arrays: ``windows[i]`` (O_i, K_i) holds the
    positions along spatial axis i of ``x`` (repeating a position is harmless). The gradient
    goes to the first maximum of each window in row-major order, as in PyTorch; the indices
    are flat positions in the input's spatial axes, ``offsets`` (the padding) taken off."""
    n = len(windows)
    key = [Ellipsis]
    for i, index in enumerate(windows):
        shape = [1] * (2 * n)
        shape[2 * i:2 * i + 2] = index.shape
        key.append(index.reshape(shape))
    gathered = x[tuple(key)]                           # lead + (O1, K1, ..., On, Kn)
    lead = x.ndim - n
    order = tuple(range(lead)) + tuple(lead + 2 * i for i in range(n)) + tuple(lead + 2 * i + 1 for i in range(n))
    outs = tuple(w.shape[0] for w in windows)
    flat = gathered.transpose(order).reshape(x.shape[:lead] + outs + (-1,))
    k = _argmax(flat, axis=-1, keepdims=True)
    y = _take_along_axis(flat, k, axis=-1).reshape(x.shape[:lead] + outs)
    if not return_indices:
        return y
    table = np.zeros(outs + tuple(w.shape[1] for w in windows), np.int64)
    for i, (index, size, offset) in enumerate(zip(windows, sizes, offsets)):
        shape = [1] * (2 * n)
        shape[i], shape[n + i] = index.shape
        table = table + (index - offset).reshape(shape) * math.prod(sizes[i + 1:])
    table = table.reshape((1,) * lead + outs + (-1,))
    table = from_ndarray(backend.move(table, x._node.space))
    return y, _take_along_axis(table, k, axis=-1).reshape(x.shape[:lead] + outs)


def _lowest(dtype):
    """What max pooling pads with: below every value of ``dtype``."""
    if dtype.kind == "f":
        return -np.inf
    return 0.0 if dtype.kind == "b" else float(np.iinfo(dtype).min)


def _max_pool_nd(n, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices):
    name = f"max_pool{n}d"
    x = _pool_input(name, input, n)
    kernel, stride, padding = _geometry(kernel_size, stride if stride not in ((), []) else None, padding, n, name)
    dilation = ntuple(dilation, n, f"{name}: dilation")
    outs = _outputs(name, x, kernel, stride, padding, dilation, ceil_mode)
    # the right padding that the last (ceil_mode) window reads
    after = tuple(max(p, (o - 1) * s + d * (k - 1) + 1 - size - p)
                  for o, s, d, k, size, p in zip(outs, stride, dilation, kernel, x.shape[-n:], padding))
    padded = _padded(x, padding, after, _lowest(x.dtype)) if any(padding) or any(after) else x
    if all(d == 1 for d in dilation) and not return_indices:
        y = _wrap(apply(_OPS["max"], (padded._node,), (kernel, stride)))
        extra = tuple(o for o in y.shape[-n:])
        return y if extra == outs else y[(Ellipsis,) + tuple(slice(0, o) for o in outs)]
    windows = [np.arange(o)[:, None] * s + np.arange(k)[None, :] * d
               for o, s, k, d in zip(outs, stride, kernel, dilation)]
    return _window_max(padded, windows, x.shape[-n:], padding, bool(return_indices))


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max pooling over the last axis of (N, C, L) or (C, L), as PyTorch's ``max_pool1d`` (with
    ``return_indices``, also the flat position of each maximum along L). Without dilation or
    indices it is one ``max_pool`` op; otherwise the windows are gathered (memory: the output's
    times the window's size) and their first maxima taken, for every ``max_pool*d``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.max_pool1d(np.array([[[1.0, 3.0, 2.0, 5.0, 4.0]]]), 2, ceil_mode=True).data
    array([[[3., 5., 4.]]])
    """
    return _max_pool_nd(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max pooling over the last two axes of (N, C, H, W) or (C, H, W), as PyTorch's
    ``max_pool2d``; ``MaxPool2d`` calls it.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> y, i = F.max_pool2d(np.arange(16.0).reshape(1, 4, 4), 2, return_indices=True)
    >>> y.data, i.data
    (array([[[ 5.,  7.],
            [13., 15.]]]), array([[[ 5,  7],
            [13, 15]]]))
    """
    return _max_pool_nd(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
               return_indices: bool = False):
    """Max pooling over the last three axes of (N, C, D, H, W) or (C, D, H, W), as PyTorch's.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.max_pool3d(np.arange(8.0).reshape(1, 2, 2, 2), 2).data.ravel()
    array([7.])
    """
    return _max_pool_nd(3, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices)


def _avg_pool_nd(n, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    name = f"avg_pool{n}d"
    x = _pool_input(name, input, n)
    kernel, stride, padding = _geometry(kernel_size, stride if stride not in ((), []) else None, padding, n, name)
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer))
                                         or isinstance(divisor_override, bool) or divisor_override == 0):
        raise _located(f"{name}: divisor_override must be a nonzero int or None, got {divisor_override!r}",
                       ValueError)
    ones = (1,) * n
    outs = _outputs(name, x, kernel, stride, padding, ones, ceil_mode)
    after = tuple(max(p, (o - 1) * s + k - size - p)
                  for o, s, k, size, p in zip(outs, stride, kernel, x.shape[-n:], padding))
    y = _wrap(apply(_OPS["avg"], (_padded(x, padding, after, 0.0)._node,), (kernel, stride)))
    if y.shape[-n:] != outs:
        y = y[(Ellipsis,) + tuple(slice(0, o) for o in outs)]
    # y holds window sums / prod(kernel); PyTorch divides by the window clipped to the padded
    # input (count_include_pad) or to the input itself, or by divisor_override
    if divisor_override is not None:
        divisor = np.full(outs, float(divisor_override))
    else:
        divisor = np.ones(outs)
        for i, (o, s, k, size, p) in enumerate(zip(outs, stride, kernel, x.shape[-n:], padding)):
            start = np.arange(o) * s - p
            end = np.minimum(start + k, size + p)
            if not count_include_pad:
                start, end = np.maximum(start, 0), np.minimum(end, size)
            shape = [1] * n
            shape[i] = o
            divisor = divisor * (end - start).reshape(shape)
    factor = math.prod(kernel) / divisor
    return y if np.all(factor == 1) else y * backend.move(factor.astype(y.dtype), y._node.space)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True):
    """Average pooling over the last axis of (N, C, L) or (C, L), as PyTorch's ``avg_pool1d``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.avg_pool1d(np.array([[[1.0, 3.0, 2.0, 6.0]]]), 2, padding=1, count_include_pad=False).data
    array([[[1. , 2.5, 6. ]]])
    """
    return _avg_pool_nd(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad, None)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    """Average pooling over the last two axes of (N, C, H, W) or (C, H, W), as PyTorch's
    ``avg_pool2d``; ``AvgPool2d`` calls it.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.avg_pool2d(np.arange(16.0).reshape(1, 4, 4), 2).data
    array([[[ 2.5,  4.5],
            [10.5, 12.5]]])
    """
    return _avg_pool_nd(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override=None):
    """Average pooling over the last three axes of (N, C, D, H, W) or (C, D, H, W), as PyTorch's.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.avg_pool3d(np.arange(8.0).reshape(1, 2, 2, 2), 2).data.ravel()
    array([3.5])
    """
    return _avg_pool_nd(3, input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


_FUNCTIONS = {("max", 1): max_pool1d, ("max", 2): max_pool2d, ("max", 3): max_pool3d,
              ("avg", 1): avg_pool1d, ("avg", 2): avg_pool2d, ("avg", 3): avg_pool3d}


def _output_size(name, output_size, x, n):
    if isinstance(output_size, (int, np.integer)) or output_size is None:
        sizes = (output_size,) * n
    else:
        try:
            sizes = tuple(output_size)
        except TypeError:
            sizes = ()
    if len(sizes) != n or not all(s is None or (isinstance(s, (int, np.integer)) and not isinstance(s, bool)
                                                and s >= 1) for s in sizes):
        raise _located(f"{name}: output_size must be a positive int or {n} positive ints (or None: the "
                       f"input's size), got {output_size!r}", ValueError)
    return tuple(size if s is None else int(s) for s, size in zip(sizes, x.shape[-n:]))


def _bounds(size, out):
    """PyTorch's adaptive windows: [floor(i * size / out), ceil((i + 1) * size / out))."""
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _adaptive_avg(name, input, output_size, n):
    x = _pool_input(name, input, n)
    if x.dtype.kind != "f":                 # integers average to float64, as avg_pool's
        x = x.astype(np.float64)
    outs = _output_size(name, output_size, x, n)
    sizes = x.shape[-n:]
    if any(s == 0 for s in sizes):
        raise _located(f"{name}: the input of shape {x.shape} has an empty spatial axis")
    if all(s % o == 0 for s, o in zip(sizes, outs)):
        kernel = tuple(s // o for s, o in zip(sizes, outs))
        return x if all(k == 1 for k in kernel) else _wrap(apply(_OPS["avg"], (x._node,), (kernel, kernel)))
    y = x
    for axis, (size, out) in enumerate(zip(sizes, outs)):       # one product per axis: a mean per window
        start, end = _bounds(size, out)
        positions = np.arange(size)[:, None]
        means = ((positions >= start) & (positions < end)) / (end - start).astype(np.float64)
        means = backend.move(means.astype(x.dtype), x._node.space)    # (size, out)
        if axis == n - 1:
            y = y @ means
        else:
            moved = y.swapaxes(x.ndim - n + axis, -1)
            y = (moved @ means).swapaxes(x.ndim - n + axis, -1)
    return y


def adaptive_avg_pool1d(input, output_size):
    """The mean over ``output_size`` windows of the last axis of (N, C, L) or (C, L), window i
    covering [floor(i L / out), ceil((i + 1) L / out)), as PyTorch's.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.adaptive_avg_pool1d(np.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]), 2).data
    array([[[2., 4.]]])
    """
    return _adaptive_avg("adaptive_avg_pool1d", input, output_size, 1)


def adaptive_avg_pool2d(input, output_size):
    """The mean over an ``output_size`` grid of windows of the last two axes of (N, C, H, W) or
    (C, H, W), as PyTorch's (an int or an (H, W) pair; None keeps the input's size).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.adaptive_avg_pool2d(np.arange(16.0).reshape(1, 4, 4), 1).data
    array([[[7.5]]])
    """
    return _adaptive_avg("adaptive_avg_pool2d", input, output_size, 2)


def _adaptive_max(name, input, output_size, n, return_indices):
    x = _pool_input(name, input, n)
    outs = _output_size(name, output_size, x, n)
    sizes = x.shape[-n:]
    if any(s == 0 for s in sizes):
        raise _located(f"{name}: the input of shape {x.shape} has an empty spatial axis")
    windows = []
    for size, out in zip(sizes, outs):
        start, end = _bounds(size, out)
        width = int((end - start).max())
        index = start[:, None] + np.arange(width)[None, :]
        windows.append(np.where(index < end[:, None], index, start[:, None]))   # short windows repeat their start
    return _window_max(x, windows, sizes, (0,) * n, bool(return_indices))


def adaptive_max_pool1d(input, output_size, return_indices: bool = False):
    """The maximum over ``output_size`` windows of the last axis of (N, C, L) or (C, L), as
    PyTorch's (windows as ``adaptive_avg_pool1d``'s); with ``return_indices`` also where each
    maximum is.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.adaptive_max_pool1d(np.array([[[1.0, 5.0, 3.0, 4.0, 2.0]]]), 2).data
    array([[[5., 4.]]])
    """
    return _adaptive_max("adaptive_max_pool1d", input, output_size, 1, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices: bool = False):
    """The maximum over an ``output_size`` grid of windows of the last two axes of (N, C, H, W)
    or (C, H, W), as PyTorch's; with ``return_indices`` also the flat position (h * W + w) of
    each maximum. The gradient goes to the first maximum of each window.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> y, i = F.adaptive_max_pool2d(np.arange(9.0).reshape(1, 3, 3), 2, return_indices=True)
    >>> y.data[0], i.data[0]
    (array([[4., 5.],
           [7., 8.]]), array([[4, 5],
           [7, 8]]))
    """
    return _adaptive_max("adaptive_max_pool2d", input, output_size, 2, return_indices)


def _calling(layer, fn, *args):
    """``fn(*args)`` for a layer that has no checks of its own: its errors name the layer too."""
    try:
        return fn(*args)
    except (ValueError, TypeError) as error:
        raise type(error)(f"{layer!r}: {error}") from None


class _AdaptivePool(Module):
    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveAvgPool1d(_AdaptivePool):
    """``adaptive_avg_pool1d`` as a layer.

    >>> import neuronika
    >>> from neuronika.nn import AdaptiveAvgPool1d
    >>> AdaptiveAvgPool1d(3)(neuronika.rand((2, 4, 10))).shape
    (2, 4, 3)
    """

    def forward(self, x):
        return _calling(self, adaptive_avg_pool1d, x, self.output_size)


class AdaptiveAvgPool2d(_AdaptivePool):
    """``adaptive_avg_pool2d`` as a layer (``AdaptiveAvgPool2d(1)``: global average pooling).

    >>> import neuronika
    >>> from neuronika.nn import AdaptiveAvgPool2d
    >>> AdaptiveAvgPool2d((1, 1))(neuronika.rand((2, 4, 7, 7))).shape
    (2, 4, 1, 1)
    """

    def forward(self, x):
        return _calling(self, adaptive_avg_pool2d, x, self.output_size)


class AdaptiveMaxPool1d(_AdaptivePool):
    """``adaptive_max_pool1d`` as a layer.

    >>> import neuronika
    >>> from neuronika.nn import AdaptiveMaxPool1d
    >>> AdaptiveMaxPool1d(3)(neuronika.rand((2, 4, 10))).shape
    (2, 4, 3)
    """

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        return _calling(self, adaptive_max_pool1d, x, self.output_size, self.return_indices)


class AdaptiveMaxPool2d(_AdaptivePool):
    """``adaptive_max_pool2d`` as a layer.

    >>> import neuronika
    >>> from neuronika.nn import AdaptiveMaxPool2d
    >>> AdaptiveMaxPool2d(2)(neuronika.rand((2, 4, 5, 5))).shape
    (2, 4, 2, 2)
    """

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__(output_size)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        return _calling(self, adaptive_max_pool2d, x, self.output_size, self.return_indices)
