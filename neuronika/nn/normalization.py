"""Batch normalisation: BatchNorm1d on (N, C) or (N, C, L), BatchNorm2d on (N, C, H, W).

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

import numpy as np

from ..variable import Var
from ._checks import float_dtype, number
from .functional import normalise_batch
from .layers import as_var, check_input
from .module import Module, parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


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
        y = normalise_batch(self, x, *stats, self.weight, self.bias, training, factor, self.eps)
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
