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
           "KLDivLoss", "HuberLoss", "SmoothL1Loss", "TripletMarginLoss", "MarginRankingLoss",
           "HingeEmbeddingLoss", "CosineEmbeddingLoss", "PoissonNLLLoss", "GaussianNLLLoss", "SoftMarginLoss",
           "MultiLabelSoftMarginLoss", "MultiMarginLoss", "CTCLoss"]


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


# ---- the remaining losses (issue 15) ------------------------------------------------------------

class TripletMarginLoss(_Loss):
    """Triplet loss on p-norm distances; see ``functional.triplet_margin_loss``.

    >>> import numpy as np
    >>> from neuronika.nn import TripletMarginLoss
    >>> a, pos, neg = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), np.array([[0.0, 1.0]])
    >>> float(TripletMarginLoss(eps=0.0)(a, pos, neg).data)
    5.0
    """
    _name = "TripletMarginLoss"

    def __init__(self, margin: float = 1.0, p: float = 2.0, eps: float = 1e-6, swap: bool = False, *,
                 reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = number(self._name, "margin", margin, 0.0, open_lo=True)
        self.p = number(self._name, "p", p, 0.0)
        self.eps = number(self._name, "eps", eps)
        self.swap = bool(swap)

    def forward(self, anchor, positive, negative):
        return F.triplet_margin_loss(anchor, positive, negative, self.margin, self.p, self.eps, self.swap,
                                     reduction=self.reduction)

    def extra_repr(self):
        return f"margin={self.margin}, p={self.p}, eps={self.eps}, swap={self.swap}, reduction={self.reduction!r}"


class _MarginLoss(_Loss):
    def __init__(self, margin: float, *, reduction: str = "mean"):
        super().__init__(reduction)
        self.margin = number(self._name, "margin", margin)

    def extra_repr(self):
        return f"margin={self.margin}, reduction={self.reduction!r}"


class MarginRankingLoss(_MarginLoss):
    """Ranking hinge: max(-target * (input1 - input2) + margin, 0); see ``functional.margin_ranking_loss``."""
    _name = "MarginRankingLoss"

    def __init__(self, margin: float = 0.0, *, reduction: str = "mean"):
        super().__init__(margin, reduction=reduction)

    def forward(self, input1, input2, target):
        return F.margin_ranking_loss(input1, input2, target, self.margin, reduction=self.reduction)


class HingeEmbeddingLoss(_MarginLoss):
    """Hinge on distances of similar (1) and dissimilar (-1) pairs; see ``functional.hinge_embedding_loss``."""
    _name = "HingeEmbeddingLoss"

    def __init__(self, margin: float = 1.0, *, reduction: str = "mean"):
        super().__init__(margin, reduction=reduction)

    def forward(self, input, target):
        return F.hinge_embedding_loss(input, target, self.margin, reduction=self.reduction)


class CosineEmbeddingLoss(_MarginLoss):
    """Cosine loss of similar (1) and dissimilar (-1) pairs; see ``functional.cosine_embedding_loss``."""
    _name = "CosineEmbeddingLoss"

    def __init__(self, margin: float = 0.0, *, reduction: str = "mean"):
        super().__init__(margin, reduction=reduction)

    def forward(self, input1, input2, target):
        return F.cosine_embedding_loss(input1, input2, target, self.margin, reduction=self.reduction)


class PoissonNLLLoss(_Loss):
    """Poisson negative log-likelihood; see ``functional.poisson_nll_loss``."""
    _name = "PoissonNLLLoss"

    def __init__(self, log_input: bool = True, full: bool = False, *, eps: float = 1e-8, reduction: str = "mean"):
        super().__init__(reduction)
        self.log_input = bool(log_input)
        self.full = bool(full)
        self.eps = number(self._name, "eps", eps)

    def forward(self, log_input, target):
        return F.poisson_nll_loss(log_input, target, self.log_input, self.full, eps=self.eps,
                                  reduction=self.reduction)

    def extra_repr(self):
        return f"log_input={self.log_input}, full={self.full}, eps={self.eps}, reduction={self.reduction!r}"


class GaussianNLLLoss(_Loss):
    """Gaussian negative log-likelihood, ``loss(input, target, var)``; see ``functional.gaussian_nll_loss``."""
    _name = "GaussianNLLLoss"

    def __init__(self, *, full: bool = False, eps: float = 1e-6, reduction: str = "mean"):
        super().__init__(reduction)
        self.full = bool(full)
        self.eps = number(self._name, "eps", eps)

    def forward(self, input, target, var):
        return F.gaussian_nll_loss(input, target, var, self.full, self.eps, reduction=self.reduction)

    def extra_repr(self):
        return f"full={self.full}, eps={self.eps}, reduction={self.reduction!r}"


class SoftMarginLoss(_Loss):
    """log(1 + exp(-target * input)); see ``functional.soft_margin_loss``."""
    _name = "SoftMarginLoss"

    def __init__(self, *, reduction: str = "mean"):
        super().__init__(reduction)

    def forward(self, input, target):
        return F.soft_margin_loss(input, target, reduction=self.reduction)


class MultiLabelSoftMarginLoss(_Loss):
    """Per-class logistic loss averaged over classes; see ``functional.multilabel_soft_margin_loss``."""
    _name = "MultiLabelSoftMarginLoss"

    def __init__(self, weight=None, *, reduction: str = "mean"):
        super().__init__(reduction)
        self._keep("weight", weight)

    def forward(self, input, target):
        return F.multilabel_soft_margin_loss(input, target, self.weight, reduction=self.reduction)


class MultiMarginLoss(_Loss):
    """Multi-class hinge loss at class indices; see ``functional.multi_margin_loss``."""
    _name = "MultiMarginLoss"

    def __init__(self, p: int = 1, margin: float = 1.0, weight=None, *, reduction: str = "mean"):
        super().__init__(reduction)
        if isinstance(p, bool) or p not in (1, 2):
            raise ValueError(f"{self._name}: only p = 1 and p = 2 are supported, got p = {p!r}")
        self.p = int(p)
        self.margin = number(self._name, "margin", margin)
        self._keep("weight", weight)

    def forward(self, input, target):
        return F.multi_margin_loss(input, target, self.p, self.margin, self.weight, reduction=self.reduction)

    def extra_repr(self):
        return f"p={self.p}, margin={self.margin}, reduction={self.reduction!r}"


class CTCLoss(_Loss):
    """Connectionist temporal classification, ``loss(log_probs, targets, input_lengths,
    target_lengths)``; see ``functional.ctc_loss``."""
    _name = "CTCLoss"

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False):
        super().__init__(reduction)
        self.blank = integer(self._name, "blank", blank)
        self.zero_infinity = bool(zero_infinity)

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return F.ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank, self.reduction,
                          self.zero_infinity)

    def extra_repr(self):
        return f"blank={self.blank}, reduction={self.reduction!r}, zero_infinity={self.zero_infinity}"
