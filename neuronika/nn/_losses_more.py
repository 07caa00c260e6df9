"""The remaining PyTorch losses (issue 15): margin and embedding losses, soft margins, and the
Poisson and Gaussian negative log-likelihoods, CTC, reachable as ``nn.functional.<name>``.
Each is a composition of catalogue ops, so gradients of every order come from the engine.
Arguments that PyTorch places after its deprecated ``size_average`` are keyword-only here.

>>> import numpy as np
>>> from neuronika.nn import functional as F
>>> float(F.margin_ranking_loss(np.array([1.0, 2.0]), np.array([2.0, 0.0]), np.array([1.0, 1.0])).data)
0.5
"""
from __future__ import annotations

import math

import numpy as np

from ..creation import from_ndarray
from ..graph import apply, modes
from ..numpy import concatenate, logaddexp, minimum, take_along_axis, where
from ..ops.checks import CHECK_CLASS_INDEX
from ..variable import Var, _located, _wrap, stop_gradient
from .functional import (_broadcast_weight, _check_reduction, _data, _float_input, _option, _pair, _reduce,
                         one_hot)
from .normalization import _p_argument, pairwise_distance

__all__ = ["triplet_margin_loss", "margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss",
           "poisson_nll_loss", "gaussian_nll_loss", "soft_margin_loss", "multilabel_soft_margin_loss",
           "multi_margin_loss", "ctc_loss"]


def _floats(name, *values):
    """Float inputs as variables of one dtype (NumPy's promotion of theirs)."""
    vs = [_float_input(name, v) for v in values]
    dtype = np.result_type(*(v.dtype for v in vs))
    return [v if v.dtype == dtype else v.astype(dtype) for v in vs]


def _broadcast(name, labels, shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        listed = ", ".join(f"{label} {shape}" for label, shape in zip(labels, shapes))
        raise _located(f"{name}: the shapes do not broadcast: {listed}") from None


def _same_ndim(name, labels, values):
    if len({v.ndim for v in values}) > 1:
        listed = ", ".join(f"{label} {v.shape}" for label, v in zip(labels, values))
        raise _located(f"{name}: {', '.join(labels)} must have the same number of dimensions, got {listed}")


def _mask(condition, dtype) -> Var:
    return condition.astype(dtype)


# ---- margins on distances and scores ------------------------------------------------------------

def triplet_margin_loss(anchor, positive, negative, margin: float = 1.0, p: float = 2, eps: float = 1e-6,
                        swap: bool = False, *, reduction: str = "mean") -> Var:
    """max(d(a, p) - d(a, n) + margin, 0), with d the ``p``-norm distance of
    ``pairwise_distance`` (eps added to the difference) along the last axis. Inputs are (N, D)
    or (D,), all with the same number of dimensions (they broadcast). ``swap=True`` uses
    min(d(a, n), d(p, n)) as the negative distance. ``margin`` must be positive, as in PyTorch.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> a, pos, neg = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), np.array([[0.0, 1.0]])
    >>> float(F.triplet_margin_loss(a, pos, neg, eps=0.0).data)
    5.0
    """
    name = "triplet_margin_loss"
    _check_reduction(name, reduction)
    margin = _option(name, "margin", margin, 0.0, open_lo=True)
    p = _p_argument(name, p)
    if p < 0:
        raise _located(f"{name}: p must not be negative, got {p!r}", ValueError)
    eps = _option(name, "eps", eps)
    a, pos, neg = _floats(name, anchor, positive, negative)
    labels = ("anchor", "positive", "negative")
    _same_ndim(name, labels, (a, pos, neg))
    if a.ndim not in (1, 2):
        raise _located(f"{name}: the inputs must be (N, D) or (D,), got anchor {a.shape}, positive "
                       f"{pos.shape} and negative {neg.shape}")
    _broadcast(name, labels, (a.shape, pos.shape, neg.shape))
    d_pos = pairwise_distance(a, pos, p, eps)
    d_neg = pairwise_distance(a, neg, p, eps)
    if swap:
        d_neg = minimum(d_neg, pairwise_distance(pos, neg, p, eps))
    return _reduce((d_pos - d_neg + float(margin)).clamp(lo=0.0), reduction)


def margin_ranking_loss(input1, input2, target, margin: float = 0, *, reduction: str = "mean") -> Var:
    """max(-target * (input1 - input2) + margin, 0): target 1 asks input1 to rank above input2
    by ``margin``, -1 below. The three have the same number of dimensions and broadcast.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.margin_ranking_loss(np.array([1.0, 2.0]), np.array([2.0, 0.0]), np.array([1.0, -1.0]),
    ...                       reduction="none").data
    array([1., 2.])
    """
    name = "margin_ranking_loss"
    _check_reduction(name, reduction)
    margin = _option(name, "margin", margin)
    x1, x2 = _floats(name, input1, input2)
    y = _data(target, x1.dtype)
    labels = ("input1", "input2", "target")
    _same_ndim(name, labels, (x1, x2, y))
    _broadcast(name, labels, (x1.shape, x2.shape, y.shape))
    return _reduce((-y * (x1 - x2) + float(margin)).clamp(lo=0.0), reduction)


def hinge_embedding_loss(input, target, margin: float = 1.0, *, reduction: str = "mean") -> Var:
    """``input`` where target = 1, max(margin - input, 0) where target = -1 (the input is
    usually a distance); as PyTorch, a target that is neither adds both terms.
    ``input`` and ``target`` have the same shape.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.hinge_embedding_loss(np.array([0.3, 0.4]), np.array([1.0, -1.0]), reduction="none").data
    array([0.3, 0.6])
    """
    name = "hinge_embedding_loss"
    _check_reduction(name, reduction)
    margin = _option(name, "margin", margin)
    x, y = _pair(name, input, target)
    loss = _mask(y != 1, x.dtype) * (float(margin) - x).clamp(lo=0.0) + _mask(y != -1, x.dtype) * x
    return _reduce(loss, reduction)


def cosine_embedding_loss(input1, input2, target, margin: float = 0, *, reduction: str = "mean") -> Var:
    """1 - cos(x1, x2) where target = 1, max(cos(x1, x2) - margin, 0) where target = -1 (0
    for other targets), the cosine along the last axis computed as PyTorch's:
    sum(x1 x2) / sqrt((sum(x1^2) + 1e-12) (sum(x2^2) + 1e-12)), so a zero vector has cosine 0.
    Inputs (N, D) with a target (N,), or (D,) with a target ().

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> x1, x2 = np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    >>> F.cosine_embedding_loss(x1, x2, np.array([1.0, -1.0]), margin=0.5, reduction="none").data.round(4)
    array([0.2929, 0.5   ])
    """
    name = "cosine_embedding_loss"
    _check_reduction(name, reduction)
    margin = _option(name, "margin", margin)
    x1, x2 = _floats(name, input1, input2)
    y = _data(target, x1.dtype)
    if y.ndim > 1:
        raise _located(f"{name}: the target must be 0-D or 1-D (one label per pair), got target {y.shape}")
    if x1.shape != x2.shape or x1.ndim != y.ndim + 1 or x1.shape[:-1] != y.shape:
        expected = "(N, D) with a target (N,)" if y.ndim else "(D,) with a target ()"
        raise _located(f"{name}: the inputs must both be {expected}, got input1 {x1.shape}, input2 "
                       f"{x2.shape} and target {y.shape}")
    axis = x1.ndim - 1
    tiny = 1e-12
    product = (x1 * x2).sum(axis=axis)
    cos = product / (((x1 * x1).sum(axis=axis) + tiny) * ((x2 * x2).sum(axis=axis) + tiny)).sqrt()
    loss = _mask(y == 1, x1.dtype) * (1.0 - cos) + _mask(y == -1, x1.dtype) * (cos - float(margin)).clamp(lo=0.0)
    return _reduce(loss, reduction)


def soft_margin_loss(input, target, *, reduction: str = "mean") -> Var:
    """log(1 + exp(-target * input)) (targets are 1 or -1), computed without overflow.
    ``input`` and ``target`` have the same shape.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.soft_margin_loss(np.array([0.0, 1000.0]), np.array([1.0, 1.0]), reduction="none").data.round(4)
    array([0.6931, 0.    ])
    """
    name = "soft_margin_loss"
    _check_reduction(name, reduction)
    x, y = _pair(name, input, target)
    return _reduce((-(y * x)).softplus(), reduction)


def multilabel_soft_margin_loss(input, target, weight=None, *, reduction: str = "mean") -> Var:
    """The binary cross-entropy of logits ``input`` ((N, C) or (C,)) against the 0/1 labels
    ``target`` (same shape), times ``weight`` (broadcast to the input), averaged over the
    classes: one loss per sample, then reduced.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> round(float(F.multilabel_soft_margin_loss(np.array([[2.0, -1.0]]), np.array([[1.0, 0.0]])).data), 4)
    0.2201
    """
    name = "multilabel_soft_margin_loss"
    _check_reduction(name, reduction)
    x, y = _pair(name, input, target)
    if x.ndim == 0:
        raise _located(f"{name}: the input needs a class axis: (C,) or (N, C), got shape ()")
    loss = y * (-x).softplus() + (1.0 - y) * x.softplus()
    if weight is not None:
        loss = loss * _broadcast_weight(name, "weight", weight, x)
    classes = x.shape[-1]
    return _reduce(loss.sum(axis=x.ndim - 1) * (1.0 / classes), reduction)


def multi_margin_loss(input, target, p: int = 1, margin: float = 1.0, weight=None, *,
                      reduction: str = "mean") -> Var:
    """The multi-class hinge loss of scores ``input`` ((N, C) or (C,)) at the integer class
    indices ``target`` ((N,) or ()): sum over i != y of weight[y] * max(margin - x[y] + x[i], 0) ** p,
    divided by C. ``p`` is 1 or 2.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> round(float(F.multi_margin_loss(np.array([[0.1, 0.2, 0.4, 0.8]]), np.array([3])).data), 4)
    0.325
    """
    name = "multi_margin_loss"
    _check_reduction(name, reduction)
    if isinstance(p, bool) or p not in (1, 2):
        raise _located(f"{name}: only p = 1 and p = 2 are supported, got p = {p!r}", ValueError)
    margin = _option(name, "margin", margin)
    x = _float_input(name, input)
    if x.ndim not in (1, 2):
        raise _located(f"{name}: the input must be (N, C) or (C,), got shape {x.shape}")
    t = target if isinstance(target, Var) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: the target must hold integer class indices, got dtype {t.dtype} "
                        f"(convert it with .astype(int))")
    if t.shape != x.shape[:-1]:
        raise _located(f"{name}: for an input of shape {x.shape} the target must have shape {x.shape[:-1]}, "
                       f"got target {t.shape}")
    classes = x.shape[-1]
    axis = x.ndim - 1
    hot = one_hot(t, classes).astype(x.dtype)          # checks 0 <= t < C, now and each run
    picked = (x * hot).sum(axis=axis, keepdims=True)
    z = (x - picked + float(margin)).clamp(lo=0.0)      # clamp_min, as PyTorch: gradient 1 at 0
    if p == 2:
        z = z * z
    loss = (z * (1.0 - hot)).sum(axis=axis)
    if weight is not None:
        w = _data(weight, x.dtype)
        if w.shape != (classes,):
            raise _located(f"{name}: weight must have shape ({classes},), one per class of the input of "
                           f"shape {x.shape}, got weight {w.shape}")
        loss = loss * (hot * w).sum(axis=axis)
    return _reduce(loss * (1.0 / classes), reduction)


# ---- likelihoods --------------------------------------------------------------------------------

def poisson_nll_loss(input, target, log_input: bool = True, full: bool = False, *, eps: float = 1e-8,
                     reduction: str = "mean") -> Var:
    """The negative log-likelihood of ``target`` under Poisson(rate): exp(input) - target * input
    with ``log_input`` (input is the log-rate), input - target * log(input + eps) without.
    ``full`` adds Stirling's term target log(target) - target + 0.5 log(2 pi target) where
    target > 1. ``input`` and ``target`` have the same shape.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.poisson_nll_loss(np.array([0.0, 1.0]), np.array([1.0, 2.0]), reduction="none").data.round(4)
    array([1.    , 0.7183])
    """
    name = "poisson_nll_loss"
    _check_reduction(name, reduction)
    eps = _option(name, "eps", eps)
    x, y = _pair(name, input, target)
    if log_input:
        loss = x.exp() - y * x
    else:
        loss = x - y * (x + float(eps)).ln()
    if full:
        above = y > 1
        safe = where(above, y, 2.0)                    # no log(0) in a term that is masked anyway
        stirling = safe * safe.ln() - safe + 0.5 * (safe * (2 * math.pi)).ln()
        loss = loss + _mask(above, x.dtype) * stirling
    return _reduce(loss, reduction)


def gaussian_nll_loss(input, target, var, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> Var:
    """The negative log-likelihood of ``target`` under N(input, var):
    0.5 (log(max(var, eps)) + (input - target) ** 2 / max(var, eps)) (+ 0.5 log(2 pi) with
    ``full``). As PyTorch, the clamp passes the gradient through unchanged.

    ``target`` broadcasts to the input's shape. ``var`` is a number, has the input's shape, the
    input's shape without its last axis, or the input's shape with one axis of size 1 where the
    input's is not. A negative ``var`` raises ValueError when its values are known as the loss
    is built (inside a traced function: on the call that traces it, not on later calls).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> round(float(F.gaussian_nll_loss(np.array([1.0]), np.array([3.0]), np.array([2.0])).data), 4)
    1.3466
    """
    name = "gaussian_nll_loss"
    _check_reduction(name, reduction)
    eps = _option(name, "eps", eps)
    x = _float_input(name, input)
    y = _data(target, x.dtype)
    if _broadcast(name, ("input", "target"), (x.shape, y.shape)) != x.shape:
        raise _located(f"{name}: target of shape {y.shape} does not broadcast to the input's shape {x.shape}")
    if isinstance(var, (int, float)) and not isinstance(var, bool):
        if var < 0:
            raise _located(f"{name}: var must not be negative, got {var}", ValueError)
        v = _data(np.full(x.shape, float(var)), x.dtype)
    else:
        v = _data(var, x.dtype)
        values = v._node.value
        if values is not None and bool(np.any(np.asarray(values) < 0)):
            raise _located(f"{name}: var has negative entries (min {float(np.min(values))})", ValueError)
        if v.shape != x.shape:
            if v.shape == x.shape[:-1]:
                v = v.reshape(v.shape + (1,))
            elif not (v.ndim == x.ndim and sum(b for a, b in zip(x.shape, v.shape) if a != b) == 1):
                raise _located(f"{name}: var of shape {v.shape} does not fit the input of shape {x.shape}: it "
                               f"must have the input's shape, that shape without its last axis, or one "
                               f"axis of size 1 where the input's is not")
    v = v + stop_gradient(v.clamp(lo=float(eps)) - v)     # the value max(var, eps), var's gradient
    d = x - y
    loss = 0.5 * (v.ln() + d * d / v)
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)



# ---- connectionist temporal classification -----------------------------------------------------

_IMPOSSIBLE = -1e30      # log of a probability 0, finite so that no inf - inf (NaN) reaches a gradient


def _known(name, label, value):
    """``value`` as a NumPy array of its values, which must be known now: the lattice's size
    and masks are built from them, so a traced function's argument is refused."""
    if not isinstance(value, Var):
        return np.asarray(value)
    tracer = modes.tracer
    if value._node.value is None or (tracer is not None and tracer.depends(value._node)):
        raise _located(f"{name}: {label} must be known when the loss is built (arrays or lists); inside a "
                       f"traced function (neuronika.grad, jit) they cannot be arguments: close over them",
                       TypeError)
    return np.asarray(value.data)


def _lengths(name, label, value, count):
    value = _known(name, label, value)
    array = np.asarray(value)
    if array.dtype.kind not in "iu" or array.shape not in ((count,), ()) or (array.shape == () and count != 1):
        raise _located(f"{name}: {label} must be {count} integer(s), one per sequence, got {array.dtype} of shape "
                       f"{array.shape}", ValueError)
    return array.reshape(count).astype(np.int64)


def _ctc_targets(name, targets, target_lengths, batch, blank, classes):
    """The targets as an (N, S) integer variable, padded with the blank past each length. Its
    values are checked now where they are known (each in [0, C), never the blank), and by a
    ``check_class_index`` node each time the graph runs (a compiled function called with new
    targets: the range only)."""
    t = targets if isinstance(targets, Var) else from_ndarray(np.asarray(targets))
    tracer = modes.tracer
    known = t._node.value is not None and not (tracer is not None and tracer.depends(t._node))
    values = np.asarray(t.data) if known else None
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: targets must hold integer class indices, got dtype {t.dtype}")
    longest = int(target_lengths.max(initial=0))
    if t.ndim == 2 and t.shape[0] == batch or t.ndim == 1 and batch == 1:    # padded, or one target (S,)
        t = t if t.ndim == 2 else t.reshape((1, t.shape[0]))
        values = values.reshape(t.shape) if known else None
        if longest > t.shape[1]:
            raise _located(f"{name}: a target length ({longest}) exceeds the targets' length {t.shape[1]}",
                           ValueError)
    elif t.ndim == 1:                                                         # concatenated
        if t.shape[0] != target_lengths.sum():
            raise _located(f"{name}: concatenated targets hold {t.shape[0]} labels but target_lengths sum to "
                           f"{target_lengths.sum()}", ValueError)
        starts = np.concatenate([[0], np.cumsum(target_lengths)[:-1]]).astype(np.int64)
        positions = starts[:, None] + np.arange(longest)
        picks = np.where(np.arange(longest) < target_lengths[:, None], positions, 0)
        t = t[picks]
        values = values[picks] if known else None
    else:
        raise _located(f"{name}: targets must be (N, S) padded or 1-D concatenated for a batch of {batch}, got "
                       f"shape {t.shape}")
    used = np.arange(t.shape[1]) < target_lengths[:, None]
    t = where(used, t, blank).astype(np.int64)
    if known:
        labels = values[used]
        bad = labels[(labels < 0) | (labels >= classes) | (labels == blank)]
        if bad.size:
            raise _located(f"{name}: target labels must be in [0, {classes}) and not the blank ({blank}), got "
                           f"{bad[0]}", IndexError)
    return _wrap(apply(CHECK_CLASS_INDEX, (t._node,), (classes, blank, name))), used


def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False) -> Var:
    """The connectionist temporal classification loss: -log of the total probability of every
    alignment of each target to its input, summed over the lattice of the extended target
    (blanks between and around the labels) by the forward recursion, in log space.

    ``log_probs`` is (T, N, C) (or (T, C) unbatched), normally a ``log_softmax`` output;
    ``targets`` is (N, S) padded or the targets concatenated (1-D); ``input_lengths`` and
    ``target_lengths`` are N integers, which must be known when the loss is built (the
    lattice's size and masks are made from them): a traced function closes over them, while
    the targets may be its arguments. ``'mean'`` divides each loss by its target length, then
    averages over the batch. A target that no alignment reaches has loss inf (0 with
    ``zero_infinity``); its gradient is 0. Target labels equal to the blank are refused where
    the targets' values are known when the loss is built; a label out of [0, C) is refused
    each time the graph runs.

    The gradient is the derivative of the loss. PyTorch's differs from it by exp(log_probs)
    at each frame inside the input length; the two agree once taken back through a
    ``log_softmax`` (the usual case).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> lp = np.log(np.full((2, 1, 2), 0.5))
    >>> round(float(F.ctc_loss(lp, np.array([[1]]), [2], [1], reduction="sum").data), 4)    # 3 paths of 4
    0.2877
    """
    name = "ctc_loss"
    _check_reduction(name, reduction)
    x = _float_input(name, log_probs)
    if x.ndim not in (2, 3):
        raise _located(f"{name}: log_probs must be (T, N, C) or (T, C), got shape {x.shape}")
    unbatched = x.ndim == 2
    if unbatched:
        x = x.reshape((x.shape[0], 1, x.shape[1]))
    steps, batch, classes = x.shape
    if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)) or not 0 <= blank < classes:
        raise _located(f"{name}: blank must be a class index in [0, {classes}), got {blank!r}", ValueError)
    lengths_in = _lengths(name, "input_lengths", input_lengths, batch)
    lengths_out = _lengths(name, "target_lengths", target_lengths, batch)
    if (lengths_in < 0).any() or (lengths_in > steps).any() or (lengths_out < 0).any():
        raise _located(f"{name}: input_lengths must be in [0, {steps}] and target_lengths not negative, got "
                       f"{lengths_in.tolist()} and {lengths_out.tolist()}", ValueError)
    blank = int(blank)
    labels, used = _ctc_targets(name, targets, lengths_out, batch, blank, classes)     # (N, S)
    size = labels.shape[1]
    width = 2 * size + 1
    # the extended targets blank, l1, blank, l2, ..., blank: column `size` of [labels | blank]
    order = np.full(width, size)
    order[1::2] = np.arange(size)
    padded = concatenate([labels, np.full((batch, 1), blank, np.int64)], axis=1)
    ext = take_along_axis(padded, np.broadcast_to(order, (batch, width)).copy(), axis=1)
    dtype = x.dtype
    impossible = np.asarray(_IMPOSSIBLE, dtype)
    zero = np.asarray(0.0, dtype)
    if width > 2:              # s - 2 -> s is allowed between two different labels
        jumps = (ext[:, 2:] != blank) & (ext[:, 2:] != ext[:, :-2])
        skip_cost = concatenate([np.full((batch, 2), impossible), where(jumps, zero, impossible)], axis=1)
    emit = x[np.arange(steps).reshape(-1, 1, 1), np.arange(batch).reshape(1, -1, 1), ext.reshape((1, batch, width))]
    start = np.where(np.arange(width) < 2, 0.0, _IMPOSSIBLE).astype(dtype)
    start = np.broadcast_to(start, (batch, width)).copy()
    start[lengths_out == 0, 1:] = _IMPOSSIBLE
    pad1, pad2 = np.full((batch, 1), impossible), np.full((batch, 2), impossible)
    alpha = emit[0] + start                                         # (N, L), log space
    for t in range(1, steps):
        step = concatenate([pad1, alpha[:, :-1]], axis=1)
        new = logaddexp(alpha, step)
        if width > 2:
            new = logaddexp(new, concatenate([pad2, alpha[:, :-2]], axis=1) + skip_cost)
        new = new + emit[t]
        running = (t < lengths_in).reshape(-1, 1)
        alpha = new if running.all() else where(running, new, alpha)
    rows = np.arange(batch)
    last = alpha[rows, 2 * lengths_out]
    before = alpha[rows, np.maximum(2 * lengths_out - 1, 0)] + np.where(lengths_out > 0, 0.0, _IMPOSSIBLE).astype(dtype)
    loss = -logaddexp(last, before)

    # a target is reachable when the frames hold its labels and a blank between each repeat
    empty = lengths_in == 0                                         # no frame: only the empty target, loss 0
    if empty.any():
        loss = where(empty, zero, loss)
    if size > 1:
        repeats = ((labels[:, 1:] == labels[:, :-1]) & used[:, 1:]).astype(np.int64).sum(axis=1)
        reachable = (lengths_in - lengths_out) >= repeats
    else:
        reachable = lengths_in >= lengths_out
    reachable = reachable & ((lengths_in > 0) | (lengths_out == 0))
    fill = np.asarray(0.0 if zero_infinity else np.inf, dtype)
    if isinstance(reachable, Var) or not reachable.all():
        loss = where(reachable, loss, fill)
    if reduction == "mean":
        return (loss / np.maximum(lengths_out, 1).astype(dtype)).mean()
    if unbatched and reduction == "none":
        return loss.reshape(())
    return _reduce(loss, reduction)
