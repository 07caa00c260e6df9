"""Loss modules: the functions of ``neuronika.nn.functional`` with their options
fixed at construction, as in PyTorch. ``loss(input, target)`` calls
``forward(input, target)``.

Class weights (``weight``, ``pos_weight``) given as arrays are buffers: they are
in the state dict and follow ``to(dtype)``.

>>> import numpy as np
>>> from neuronika.nn.loss import CrossEntropyLoss
>>> criterion = CrossEntropyLoss(label_smoothing=0.1)
>>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
>>> round(float(criterion(logits, np.array([0, 2])).data), 4)
0.3455
"""
from __future__ import annotations

import numpy as np

from ..variable import Var
from . import functional as F
from ._checks import integer, number
from .module import Module

__all__ = ["MSELoss", "L1Loss", "MAELoss", "BCELoss", "BCEWithLogitsLoss", "NLLLoss", "CrossEntropyLoss",
           "KLDivLoss", "HuberLoss", "SmoothL1Loss"]


class _Loss(Module):
    _name = ""
    _reductions = F._REDUCTIONS

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        F._check_reduction(self._name, reduction, self._reductions)
        self.reduction = reduction

    def _keep(self, name, value):
        """A weight: an array becomes a buffer, a variable an attribute, None stays None."""
        if value is None or isinstance(value, Var):
            setattr(self, name, value)
            return
        array = np.asarray(value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{self._name}: {name} must be real numbers (an array or a variable), got "
                            f"{value!r:.60} of dtype {array.dtype}")
        self.register_buffer(name, array)

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """Mean squared error; see ``functional.mse_loss``."""
    _name = "MSELoss"

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error; see ``functional.l1_loss``."""
    _name = "L1Loss"

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


MAELoss = L1Loss


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities; see ``functional.bce_loss``."""
    _name = "BCELoss"

    def __init__(self, weight=None, *, reduction: str = "mean"):
        super().__init__(reduction)
        self._keep("weight", weight)

    def forward(self, input, target):
        return F.bce_loss(input, target, self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, without overflow; see ``functional.bce_with_logits_loss``."""
    _name = "BCEWithLogitsLoss"

    def __init__(self, weight=None, *, reduction: str = "mean", pos_weight=None):
        super().__init__(reduction)
        self._keep("weight", weight)
        self._keep("pos_weight", pos_weight)

    def forward(self, input, target):
        return F.bce_with_logits_loss(input, target, self.weight, reduction=self.reduction,
                                      pos_weight=self.pos_weight)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities at class indices; see ``functional.nll_loss``."""
    _name = "NLLLoss"

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__(reduction)
        self._keep("weight", weight)
        self.ignore_index = integer(self._name, "ignore_index", ignore_index)

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)

    def extra_repr(self):
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Cross-entropy of logits (log_softmax, then NLL); see ``functional.cross_entropy``."""
    _name = "CrossEntropyLoss"

    def __init__(self, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
                 label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.label_smoothing = number(self._name, "label_smoothing", label_smoothing, 0.0, 1.0)
        self._keep("weight", weight)
        self.ignore_index = integer(self._name, "ignore_index", ignore_index)

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)

    def extra_repr(self):
        return (f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
                f"label_smoothing={self.label_smoothing}")


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence (input: log-probabilities); see ``functional.kl_div_loss``.
    ``reduction='batchmean'`` gives the divergence per sample."""
    _name = "KLDivLoss"
    _reductions = F._REDUCTIONS + ("batchmean",)

    def __init__(self, *, reduction: str = "mean", log_target: bool = False):
        super().__init__(reduction)
        self.log_target = log_target

    def forward(self, input, target):
        return F.kl_div_loss(input, target, reduction=self.reduction, log_target=self.log_target)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, log_target={self.log_target}"


class HuberLoss(_Loss):
    """Huber loss; see ``functional.huber_loss``."""
    _name = "HuberLoss"

    def __init__(self, *, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction)
        self.delta = number(self._name, "delta", delta, 0.0, open_lo=True)

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, delta={self.delta}"


class SmoothL1Loss(_Loss):
    """Smooth L1 loss; see ``functional.smooth_l1_loss``."""
    _name = "SmoothL1Loss"

    def __init__(self, *, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = number(self._name, "beta", beta, 0.0)

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)

    def extra_repr(self):
        return f"reduction={self.reduction!r}, beta={self.beta}"
