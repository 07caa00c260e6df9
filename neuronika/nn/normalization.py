"""Normalisation: BatchNorm1d on (N, C) or (N, C, L), BatchNorm2d on (N, C, H, W); GroupNorm,
InstanceNorm1d/2d and RMSNorm; the functions ``group_norm``, ``instance_norm``, ``rms_norm``
and ``normalize`` (reachable as ``nn.functional.<name>``) that those modules call.

PyTorch's definitions. While training, each channel is normalised with the batch's
mean and biased variance, and the running statistics are updated with the batch's
mean and unbiased variance: ``running = (1 - momentum) * running + momentum * batch``
(``momentum=None``: the cumulative average over the batches seen). In evaluation
the running statistics are used. ``running_mean``, ``running_var`` and
``num_batches_tracked`` are buffers: in the state dict, not trained.

>>> import neuronika
>>> from neuronika.nn.normalization import BatchNorm1d
>>> bn = BatchNorm1d(3)
>>> bn(neuronika.rand((8, 3))).shape
(8, 3)
>>> int(bn.num_batches_tracked), list(bn.state_dict())
(1, ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked'])

The layers call ``nn.functional.batch_norm``'s implementation. The running statistics
are computed from the input's value when the layer is called, so the input is evaluated
then (a graph behind it is evaluated again when the output is; with dropout behind it, the
statistics see another mask).
Inside a function given to ``neuronika.grad`` the update would happen once, at
tracing time, so a layer that tracks running statistics refuses to run there in
training mode: call ``eval()`` (or use ``track_running_stats=False``) for such a function.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from ..errors import ShapeError
from ..graph import apply, format_where, user_line
from ..numpy import where as _where
from ..ops.reduce import NORMALIZE
from ..variable import Var, _located, _wrap, stop_gradient
from ._checks import float_dtype, number, positive_int
from .functional import (_check_batch_norm_arguments, _data, _layer_input, _normalise_running, _option,
                         _update_running,
                         _normalise_batch)
from .layers import as_var, check_input
from .module import Module, parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "RMSNorm",
           "group_norm", "instance_norm", "rms_norm", "normalize"]


class _BatchNorm(Module):
    _ranks = ()

    def __init__(self, num_features, eps, momentum, affine, track_running_stats, dtype):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, numbers.Integral) or isinstance(num_features, bool) or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        self.num_features = int(num_features)
        self.eps = number(name, "eps", eps, 0.0, open_lo=True)
        self.momentum = None if momentum is None else number(name, "momentum (or None)", momentum, 0.0, 1.0)
        dtype = float_dtype(name, dtype)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = parameter(np.ones(self.num_features, dtype))
            self.bias = parameter(np.zeros(self.num_features, dtype))
        else:
            self.weight = self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                object.__setattr__(self, name, None)

    def reset_running_stats(self) -> None:
        """Running mean 0, running variance 1, no batches tracked."""
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _expected(self):
        raise NotImplementedError

    def forward(self, x) -> Var:
        x = as_var(x, self)
        check_input(self, x, x.ndim in self._ranks and x.shape[1] == self.num_features, self._expected())
        training = self.training or not self.track_running_stats
        tracking = self.training and self.track_running_stats
        if tracking and self.momentum is None:          # the cumulative average over the batches
            factor = 1.0 / (int(self.num_batches_tracked) + 1)
        else:
            factor = 0.0 if self.momentum is None else self.momentum
        stats = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        y = _normalise_batch(self, x, *stats, self.weight, self.bias, training, factor, self.eps)
        if tracking:
            tracked = self.num_batches_tracked
            tracked += 1                # in place: the buffer itself (no Module.__setattr__)
        return y

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L): per channel C, statistics over N (and L).

    >>> import neuronika
    >>> from neuronika.nn.normalization import BatchNorm1d
    >>> bn = BatchNorm1d(4)
    >>> y = bn(neuronika.randn((16, 4, 5)))
    >>> bool(abs(y.data.mean()) < 1e-5)
    True
    >>> bn.eval()(neuronika.randn((2, 4))).shape
    (2, 4)
    """

    _ranks = (2, 3)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def _expected(self):
        return f"(N, {self.num_features}) or (N, {self.num_features}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W): per channel C, statistics over N, H and W.

    >>> import neuronika
    >>> from neuronika.nn.normalization import BatchNorm2d
    >>> BatchNorm2d(3)(neuronika.randn((4, 3, 5, 5))).shape
    (4, 3, 5, 5)
    """

    _ranks = (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def _expected(self):
        return f"(N, {self.num_features}, H, W)"


# ---- functions ------------------------------------------------------------------------------------

def _float_layer_input(name, value) -> Var:
    """The input as a variable; integers and booleans become float64, as ``np.mean`` promotes
    them (and as ``layer_norm`` and ``batch_norm`` take them)."""
    x = _layer_input(name, value)
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _affine(name, x, weight, bias, channels, shape):
    """``x * weight + bias`` with weight and bias (optional) of shape ``channels``, reshaped to
    ``shape`` to broadcast; arrays take the input's dtype, variables stay as they are."""
    for what, value in (("weight", weight), ("bias", bias)):
        given = None if value is None else tuple(getattr(value, "shape", np.shape(value)))
        if given is not None and given != channels:
            raise _located(f"{name}: {what} must have the shape {channels} for an input of shape "
                           f"{x.shape}, got {given}")
    if weight is not None:
        x = x * (weight if isinstance(weight, Var) else _data(weight, x.dtype)).reshape(shape)
    if bias is not None:
        x = x + (bias if isinstance(bias, Var) else _data(bias, x.dtype)).reshape(shape)
    return x


def group_norm(input, num_groups: int, weight=None, bias=None, eps: float = 1e-5) -> Var:
    """Group normalisation of an (N, C, *) input, as PyTorch's: the C channels are split into
    ``num_groups`` groups of consecutive channels, each (sample, group) is normalised with its
    own mean and biased variance, (x - mean) / sqrt(var + eps), then times ``weight`` plus
    ``bias`` (each (C,), optional). The normalisation is one op, ``normalize``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.group_norm(np.array([[1.0, 3.0, 10.0, 30.0]]), 2).data.round(4)
    array([[-1.,  1., -1.,  1.]])
    """
    name = "group_norm"
    eps = _option(name, "eps", eps, 0.0, open_lo=True)
    x = _float_layer_input(name, input)
    if x.ndim < 2:
        raise _located(f"{name}: an input of shape (N, C, *) is expected, got {x.shape}")
    if not isinstance(num_groups, numbers.Integral) or isinstance(num_groups, bool) or num_groups < 1:
        raise _located(f"{name}: num_groups must be a positive int, got {num_groups!r}", ValueError)
    n, c = x.shape[:2]
    if c % num_groups:
        raise _located(f"{name}: the input's {c} channels (shape {x.shape}) do not split into "
                       f"num_groups = {num_groups} groups of equal size", ValueError)
    if (n * c // num_groups) * int(np.prod(x.shape[2:], dtype=np.int64)) == 1:
        raise _located(f"{name}: expected more than 1 value per group, got an input of shape {x.shape} "
                       f"with num_groups = {num_groups}", ValueError)
    if x.size:
        grouped = x.reshape((n, int(num_groups), -1))
        y = _wrap(apply(NORMALIZE, (grouped._node,), ((2,), eps))).reshape(x.shape)
    else:                                       # an empty batch: nothing to normalise
        y = x
    return _affine(name, y, weight, bias, (c,), (1, c) + (1,) * (x.ndim - 2))


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> Var:
    """Instance normalisation of an (N, C, *) input, as PyTorch's: with ``use_input_stats``
    each (sample, channel) is normalised over its spatial axes with its own mean and biased
    variance, and ``running_mean`` / ``running_var`` (arrays of shape (C,), or None) are updated
    in place with the mean over the batch of each instance's mean and unbiased variance,
    ``running = (1 - momentum) * running + momentum * batch``; without, the running statistics
    are used. Then times ``weight`` plus ``bias`` (each (C,), optional).

    As for ``batch_norm``, an update of running statistics reads the input's value, so it
    refuses to run inside a function traced by ``neuronika.grad``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.instance_norm(np.array([[[1.0, 3.0], [10.0, 30.0]]])).data.round(4)
    array([[[-1.,  1.],
            [-1.,  1.]]])
    """
    name = "instance_norm"
    momentum = _option(name, "momentum", momentum, 0.0, 1.0)
    eps = _option(name, "eps", eps, 0.0, open_lo=True)
    x = _float_layer_input(name, input)
    if x.ndim < 2:
        raise _located(f"{name}: an input of shape (N, C, *) is expected, got {x.shape}")
    channels = (x.shape[1],)
    training = bool(use_input_stats)
    _check_batch_norm_arguments(name, x, channels, running_mean, running_var, weight, bias, training)
    shape = (1,) + channels + (1,) * (x.ndim - 2)
    if not training:
        if running_mean is None:
            raise _located(f"{name}: running_mean and running_var are needed when use_input_stats=False",
                           ValueError)
        w = None if weight is None else (weight if isinstance(weight, Var) else _data(weight, x.dtype))
        b = None if bias is None else (bias if isinstance(bias, Var) else _data(bias, x.dtype))
        return _normalise_running(x, running_mean, running_var, None if w is None else w.reshape(shape),
                                  None if b is None else b.reshape(shape), shape, eps)
    if int(np.prod(x.shape[2:], dtype=np.int64)) <= 1:
        raise _located(f"{name}: expected more than 1 spatial element when use_input_stats=True, got an "
                       f"input of shape {x.shape}", ValueError)
    axes = tuple(range(2, x.ndim))
    if running_mean is not None:
        _update_running(name, x, running_mean, running_var, axes, momentum, per_instance=True)
    y = _wrap(apply(NORMALIZE, (x._node,), (axes, eps)))
    return _affine(name, y, weight, bias, channels, shape)


def _shape_argument(name, normalized_shape):
    shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else normalized_shape
    try:
        shape = tuple(shape)
    except TypeError:
        shape = None
    if (not shape or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1
                             for d in shape)):
        raise _located(f"{name}: normalized_shape must be a positive int or a non-empty tuple of positive "
                       f"ints, got {normalized_shape!r}", ValueError)
    return tuple(int(d) for d in shape)


def rms_norm(input, normalized_shape, weight=None, eps: float | None = None) -> Var:
    """Root-mean-square normalisation over the trailing ``normalized_shape`` axes, as PyTorch's:
    x / sqrt(mean(x ** 2) + eps), times ``weight`` (of ``normalized_shape``, optional).
    ``eps=None`` is the machine epsilon of the input's dtype.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.rms_norm(np.array([[3.0, 4.0], [1.0, -1.0]]), 2, eps=0.0).data.round(4)
    array([[ 0.8485,  1.1314],
           [ 1.    , -1.    ]])
    """
    name = "rms_norm"
    shape = _shape_argument(name, normalized_shape)
    x = _float_layer_input(name, input)
    eps = float(np.finfo(x.dtype).eps) if eps is None else _option(name, "eps", eps, 0.0)
    n = len(shape)
    if x.ndim < n or x.shape[x.ndim - n:] != shape:
        raise _located(f"{name}: an input of shape (*, {', '.join(map(str, shape))}) is expected "
                       f"(normalized_shape {shape}), got {x.shape}")
    axes = tuple(range(x.ndim - n, x.ndim))
    y = x / ((x * x).mean(axis=axes, keepdims=True) + eps).sqrt()
    return _affine(name, y, weight, None, shape, shape)


def _vector_norm(x, p, axis, keepdims):
    """The p-norm of ``x`` over ``axis`` with PyTorch's gradient where the norm is 0: zero (the
    root is taken of 1 there and its gradient masked, so no 0 * inf appears)."""
    if p == 0:
        return (x != 0).astype(x.dtype).sum(axis=axis, keepdims=keepdims)
    if p == 1:
        return x.abs().sum(axis=axis, keepdims=keepdims)
    if p == np.inf:
        return x.abs().max(axis=axis, keepdims=keepdims)
    if p == -np.inf:
        return x.abs().min(axis=axis, keepdims=keepdims)
    total = (x * x if p == 2 else x.abs() ** p).sum(axis=axis, keepdims=keepdims)
    positive = total > 0
    safe = _where(positive, total, 1.0)
    root = safe.sqrt() if p == 2 else safe ** (1.0 / p)
    return _where(positive, root, 0.0)


def _p_argument(name, p):
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or np.isnan(p):
        raise _located(f"{name}: p must be a number, got {p!r}", ValueError)
    return float(p)


def _dim_argument(name, dim, ndim, shape):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral) or not -max(ndim, 1) <= dim < max(ndim, 1):
        raise _located(f"{name}: dim {dim!r} is out of range for an input of shape {shape}", ValueError)
    return int(dim) % ndim if ndim else 0


def normalize(input, p: float = 2.0, dim: int = 1, eps: float = 1e-12) -> Var:
    """``input`` divided by its ``p``-norm along ``dim``, the norm kept at least ``eps``, as
    PyTorch's: x / max(||x||_p, eps).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.normalize(np.array([[3.0, 4.0], [0.0, 0.0]])).data
    array([[0.6, 0.8],
           [0. , 0. ]])
    """
    name = "normalize"
    p = _p_argument(name, p)
    eps = _option(name, "eps", eps, 0.0)
    x = _float_layer_input(name, input)
    if x.ndim == 0:
        raise _located(f"{name}: the input needs at least one axis, got shape ()")
    axis = _dim_argument(name, dim, x.ndim, x.shape)
    return x / _vector_norm(x, p, axis, True).clamp(lo=eps)


def _broadcast_pair(name, x1, x2):
    a, b = _float_layer_input(name, x1), _float_layer_input(name, x2)
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise _located(f"{name}: the shapes {a.shape} and {b.shape} do not broadcast") from None
    dtype = np.result_type(a.dtype, b.dtype)
    a, b = (v if v.dtype == dtype else v.astype(dtype) for v in (a, b))
    from ..numpy import broadcast_to
    return [v if v.shape == shape else broadcast_to(v, shape) for v in (a, b)], shape


def cosine_similarity(x1, x2, dim: int = 1, eps: float = 1e-8) -> Var:
    """The cosine of the angle between ``x1`` and ``x2`` along ``dim`` (they broadcast), as
    PyTorch computes it: sum((x1 / max(||x1||, eps)) * (x2 / max(||x2||, eps))). Like
    PyTorch's, the gradient passes through each norm as if it were not limited by ``eps``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.cosine_similarity(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[2.0, 0.0], [-1.0, 1.0]])).data
    array([1., 0.])
    """
    name = "cosine_similarity"
    eps = _option(name, "eps", eps, 0.0)
    (a, b), shape = _broadcast_pair(name, x1, x2)
    if not shape:
        raise _located(f"{name}: the inputs need at least one axis, got shapes {a.shape} and {b.shape}")
    axis = _dim_argument(name, dim, len(shape), shape)
    total = None
    for v in (a, b):
        norm = _vector_norm(v, 2.0, axis, True)
        # the value max(norm, eps), the gradient that of norm
        scaled = v / (norm + stop_gradient(norm.clamp(lo=eps) - norm))
        total = scaled if total is None else total * scaled
    return total.sum(axis=axis)


def pairwise_distance(x1, x2, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Var:
    """The ``p``-norm of ``x1 - x2 + eps`` along the last axis (they broadcast), as PyTorch's.
    ``p = 0`` counts the nonzero differences: a value with no gradient.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.pairwise_distance(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), eps=0.0).data
    array([5.])
    """
    name = "pairwise_distance"
    p = _p_argument(name, p)
    if p < 0:
        raise _located(f"{name}: p must not be negative, got {p!r}", ValueError)
    eps = _option(name, "eps", eps)
    (a, b), shape = _broadcast_pair(name, x1, x2)
    d = a - b + eps
    if not shape:
        return _vector_norm(d.reshape((1,)), p, 0, False).reshape((1,) if keepdim else ())
    return _vector_norm(d, p, len(shape) - 1, bool(keepdim))


# ---- modules --------------------------------------------------------------------------------------

class GroupNorm(Module):
    """Group normalisation of (N, C, *) inputs (``group_norm``): ``num_channels`` channels in
    ``num_groups`` groups, with a per-channel ``weight`` (ones) and ``bias`` (zeros) if ``affine``.

    >>> import neuronika
    >>> from neuronika.nn import GroupNorm
    >>> GroupNorm(2, 6)(neuronika.randn((4, 6, 5))).shape
    (4, 6, 5)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        name = "GroupNorm"
        self.num_groups = positive_int(name, "num_groups", num_groups)
        self.num_channels = positive_int(name, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"{name}: num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.eps = number(name, "eps", eps, 0.0, open_lo=True)
        self.affine = bool(affine)
        dtype = float_dtype(name, dtype)
        if self.affine:
            self.weight = parameter(np.ones(self.num_channels, dtype))
            self.bias = parameter(np.zeros(self.num_channels, dtype))
        else:
            self.weight = self.bias = None

    def reset_parameters(self) -> None:
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def forward(self, x) -> Var:
        x = as_var(x, self)
        check_input(self, x, x.ndim >= 2 and x.shape[1] == self.num_channels, f"(N, {self.num_channels}, *)")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"


class _InstanceNorm(_BatchNorm):
    """PyTorch's _InstanceNorm: parameters and buffers as batch normalisation's (the
    ``num_batches_tracked`` buffer is kept but, as in PyTorch, never counted)."""

    def forward(self, x) -> Var:
        x = as_var(x, self)
        n = self._ranks[0]
        check_input(self, x, x.ndim in (n - 1, n), self._expected())
        if x.shape[-n + 1] != self.num_features:
            if self.affine or self.track_running_stats:
                raise ShapeError(f"{self!r}: expected an input of shape {self._expected()}, got {x.shape} "
                                 f"(at {format_where(user_line())})")
            warnings.warn(f"{type(self).__name__}: the input of shape {x.shape} has "
                          f"{x.shape[-n + 1]} channels, not num_features = {self.num_features}; "
                          f"without affine parameters or running statistics it is normalised anyway",
                          stacklevel=2)
        batched = x if x.ndim == n else x.reshape((1,) + x.shape)
        stats = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        y = instance_norm(batched, *stats, self.weight, self.bias, self.training or not self.track_running_stats,
                          0.0 if self.momentum is None else self.momentum, self.eps)
        return y if x.ndim == n else y.reshape(x.shape)


class InstanceNorm1d(_InstanceNorm):
    """Instance normalisation of (N, C, L) or (C, L) inputs (``instance_norm``): each sample's
    channel normalised over L. No affine parameters and no running statistics by default.

    >>> import neuronika
    >>> from neuronika.nn import InstanceNorm1d
    >>> InstanceNorm1d(3)(neuronika.randn((2, 3, 8))).shape
    (2, 3, 8)
    """

    _ranks = (3,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def _expected(self):
        return f"(N, {self.num_features}, L) or ({self.num_features}, L)"


class InstanceNorm2d(_InstanceNorm):
    """Instance normalisation of (N, C, H, W) or (C, H, W) inputs (``instance_norm``).

    >>> import neuronika
    >>> from neuronika.nn import InstanceNorm2d
    >>> InstanceNorm2d(3, affine=True)(neuronika.randn((2, 3, 4, 4))).shape
    (2, 3, 4, 4)
    """

    _ranks = (4,)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = False, track_running_stats: bool = False, dtype=np.float32):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def _expected(self):
        return f"(N, {self.num_features}, H, W) or ({self.num_features}, H, W)"


class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing ``normalized_shape`` axes (``rms_norm``),
    with a ``weight`` (ones) if ``elementwise_affine``; ``eps=None`` is the input dtype's epsilon.

    >>> import neuronika
    >>> from neuronika.nn import RMSNorm
    >>> RMSNorm(4)(neuronika.randn((2, 3, 4))).shape
    (2, 3, 4)
    """

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        name = "RMSNorm"
        try:
            self.normalized_shape = _shape_argument(name, normalized_shape)
        except ValueError as error:                  # at construction: no user line to add
            raise ValueError(str(error).rsplit(" (at ", 1)[0]) from None
        self.eps = None if eps is None else number(name, "eps", eps, 0.0)
        self.elementwise_affine = bool(elementwise_affine)
        dtype = float_dtype(name, dtype)
        self.weight = parameter(np.ones(self.normalized_shape, dtype)) if self.elementwise_affine else None

    def reset_parameters(self) -> None:
        if self.weight is not None:
            self.weight.data[...] = 1

    def forward(self, x) -> Var:
        x = as_var(x, self)
        n = len(self.normalized_shape)
        check_input(self, x, x.ndim >= n and x.shape[x.ndim - n:] == self.normalized_shape,
                    f"(*, {', '.join(map(str, self.normalized_shape))})")
        return rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
