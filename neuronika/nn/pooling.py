"""Pooling layers: MaxPool1d/2d/3d, AvgPool1d/2d/3d, and the functions they call.

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

import numpy as np

from ..errors import ShapeError
from ..graph import apply
from ..ops import OPS
from ..ops.conv import output_size
from ..variable import Var, _wrap
from .conv import _located, ntuple
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

    def forward(self, x):
        x = as_var(x, self)
        n = self.spatial
        dims = ("L", "H, W", "D, H, W")[n - 1]
        check_input(self, x, x.ndim in (n + 1, n + 2), f"(N, C, {dims}) or (C, {dims})")
        sizes = tuple(s + 2 * p for s, p in zip(x.shape[-n:], self.padding))
        if any(s < k for s, k in zip(sizes, self.kernel_size)):
            padded = f" ({sizes} after padding)" if any(self.padding) else ""
            raise ShapeError(f"{self!r}: the input of shape {x.shape} is smaller{padded} than the "
                             f"window {self.kernel_size}")
        return _pool(self.kind, x, self.kernel_size, self.stride, self.padding)

    def output_shape(self, shape) -> tuple:
        """The output shape for an input of ``shape`` (PyTorch's formula, ceil_mode=False)."""
        shape = tuple(shape)
        n = self.spatial
        out = tuple(output_size(s + 2 * p, k, t)
                    for s, k, t, p in zip(shape[-n:], self.kernel_size, self.stride, self.padding))
        return shape[:-n] + out

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool1d(_PoolNd):
    """Max over windows of the last axis of (N, C, L) or (C, L).

    >>> import neuronika
    >>> from neuronika.nn.pooling import MaxPool1d
    >>> MaxPool1d(3, stride=2)(neuronika.rand((2, 4, 11))).shape
    (2, 4, 5)
    """

    spatial, kind = 1, "max"


class MaxPool2d(_PoolNd):
    """Max over windows of the last two axes of (N, C, H, W) or (C, H, W); padding with -inf.
    The gradient goes to the first maximum of each window, as in PyTorch.

    >>> import neuronika
    >>> from neuronika.nn.pooling import MaxPool2d
    >>> MaxPool2d(3, stride=2, padding=1)(neuronika.rand((2, 4, 9, 9))).shape
    (2, 4, 5, 5)
    """

    spatial, kind = 2, "max"


class MaxPool3d(_PoolNd):
    """Max over windows of the last three axes of (N, C, D, H, W) or (C, D, H, W)."""

    spatial, kind = 3, "max"


class AvgPool1d(_PoolNd):
    """Mean over windows of the last axis of (N, C, L) or (C, L); zero padding counts.

    >>> import neuronika
    >>> from neuronika.nn.pooling import AvgPool1d
    >>> AvgPool1d(2)(neuronika.rand((2, 4, 11))).shape
    (2, 4, 5)
    """

    spatial, kind = 1, "avg"


class AvgPool2d(_PoolNd):
    """Mean over windows of the last two axes of (N, C, H, W) or (C, H, W); zero padding
    counts in the mean (PyTorch's default count_include_pad=True).

    >>> import neuronika
    >>> from neuronika.nn.pooling import AvgPool2d
    >>> AvgPool2d(2, padding=1)(neuronika.rand((2, 4, 8, 8))).shape
    (2, 4, 5, 5)
    """

    spatial, kind = 2, "avg"


class AvgPool3d(_PoolNd):
    """Mean over windows of the last three axes of (N, C, D, H, W) or (C, D, H, W)."""

    spatial, kind = 3, "avg"
