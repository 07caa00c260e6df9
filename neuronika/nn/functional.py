"""PyTorch's ``torch.nn.functional``: the losses, and the stateless functions the layers call
(activations, ``linear``, ``bilinear``, ``dropout``, ``embedding``, ``one_hot``, ``layer_norm``,
``batch_norm``), with PyTorch's names, signatures, defaults and definitions. The layers call
these (``nn.Linear`` calls ``linear``, ``nn.ReLU`` ``relu``, ...): one implementation. Only the
names in ``__all__`` are public.

The activations take variables or arrays and return variables; ``inplace=`` is accepted and
ignored (variables are immutable). Their gradients at kinks are PyTorch's.

>>> import numpy as np
>>> from neuronika.nn import functional as F
>>> F.relu6(np.array([-1.0, 3.0, 9.0])).data
array([0., 3., 6.])

Every loss takes ``input`` and ``target`` as variables or NumPy arrays and a
``reduction``: ``'mean'`` (the default), ``'sum'`` or ``'none'`` (the loss of
each element, shaped like the target). Each is built from neuronika ops, so
gradients (and gradients of gradients) come from the engine, and a loss built
every iteration of a training loop runs cached generated code.

>>> import numpy as np
>>> from neuronika.nn import functional as F
>>> x = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
>>> round(float(F.cross_entropy(x, np.array([0, 2])).data), 4)
0.1755

Targets are data: a gradient reaches a target only if it is a ``VarDiff``, and
only where PyTorch defines one (not through class indices).

Errors, raised while the graph is built:

- ``neuronika.ShapeError`` when the target's shape does not fit the input (the
  message names the loss and both shapes). Elementwise losses need equal shapes:
  unlike PyTorch, they never broadcast (a (N, 1) input against a (N,) target is
  almost always a bug).
- ``TypeError`` for class-index targets that are not integers, and for
  non-float inputs.
- ``IndexError`` for a class index outside [0, C) that is not ``ignore_index``
  (the message names the loss, the value and C): when the loss is built if the
  target's values are known then, and in any case each time the graph runs, so a
  compiled ``neuronika.grad`` function called with new targets, or a target changed
  in place, is checked again. Indices never wrap around.
- ``ValueError`` for ``bce_loss`` inputs outside [0, 1] (NaN included), checked
  the same way.
- ``ValueError`` for an unknown ``reduction`` or an option out of range.
"""
import functools as _functools

import numpy as _np

from .. import backend as _backend
from ..creation import from_ndarray as _from_ndarray
from ..graph import apply as _apply, leaf as _leaf, modes as _modes
from ..errors import ShapeError as _ShapeError
from ..ops import OPS as _OPS, broadcast_shapes as _broadcast_shapes
from ..ops.checks import CHECK_CLASS_INDEX as _CHECK_CLASS_INDEX, CHECK_PROBABILITY as _CHECK_PROBABILITY
from ..ops.elementwise import BCE_WITH_LOGITS as _BCE_WITH_LOGITS, GELU as _GELU
from ..ops.reduce import (BATCH_NORM as _BATCH_NORM, NORMALIZE as _NORMALIZE,
                          SOFTMAX_CROSS_ENTROPY as _SOFTMAX_CROSS_ENTROPY, CLASS_NLL as _CLASS_NLL)
from ..ops.kernels import check_class_index as _check_class_index, check_probability as _check_probability
from ..variable import Var as _Var, _located, _wrap
from ._checks import integer as _integer, number as _number

__all__ = ["mse_loss", "l1_loss", "mae_loss", "bce_loss", "binary_cross_entropy", "bce_with_logits_loss",
           "binary_cross_entropy_with_logits", "nll_loss", "cross_entropy", "kl_div_loss", "kl_div",
           "huber_loss", "smooth_l1_loss", "layer_norm", "gelu", "batch_norm",
           "relu", "relu6", "leaky_relu", "elu", "selu", "celu", "silu", "mish", "softplus", "softsign",
           "hardtanh", "hardsigmoid", "hardswish", "sigmoid", "tanh", "logsigmoid", "softmax", "log_softmax",
           "linear", "bilinear", "dropout", "embedding", "one_hot"]

_REDUCTIONS = ("mean", "sum", "none")


# ---- helpers ----------------------------------------------------------------------------------

def _check_reduction(name, reduction, allowed=_REDUCTIONS):
    if reduction not in allowed:
        choices = ", ".join(repr(r) for r in allowed)
        raise ValueError(f"{name}: reduction must be one of {choices}, got {reduction!r}")


def _option(name, label, value, lo=None, hi=None, open_lo=False) -> float:
    try:
        return _number(name, label, value, lo, hi, open_lo=open_lo)
    except ValueError as error:
        raise _located(str(error), ValueError) from None


def _ignore_index(name, value) -> int:
    try:
        return _integer(name, "ignore_index", value)
    except ValueError as error:
        raise _located(str(error), ValueError) from None


def _float_input(name, value) -> _Var:
    """The loss input as a variable; it must hold floats. Another array library's array
    stays in its library."""
    if not isinstance(value, _Var):
        value = _from_ndarray(value if _backend.foreign(value) else _np.asarray(value))
    if value.dtype.kind != "f":
        raise TypeError(f"{name}: the input must be floating point, got dtype {value.dtype}")
    return value


def _data(value, dtype) -> _Var:
    """A weight or target as a variable of ``dtype`` (arrays are converted; variables cast)."""
    if isinstance(value, _Var):
        return value if value.dtype == dtype else value.astype(dtype)
    if _backend.foreign(value):
        value = _from_ndarray(value)               # another array library's: it stays there
        return value if value.dtype == dtype else value.astype(dtype)
    return _from_ndarray(_np.asarray(value, dtype=dtype))


def _pair(name, input, target):
    """Input and target of an elementwise loss: same shape, the target in the input's dtype."""
    x = _float_input(name, input)
    y = _data(target, x.dtype)
    if y.shape != x.shape:
        raise _located(f"{name}: input and target must have the same shape, got input {x.shape} "
                       f"and target {y.shape}")
    return x, y


def _probabilities(name, x) -> _Var:
    """``x`` through a ``check_probability`` node (checked now too, if its values are known)."""
    if x._node.value is not None:
        try:
            _check_probability(_backend.to_numpy(x._node.value, x._node.space), name)
        except ValueError as error:
            raise _located(str(error), ValueError) from None
    return _wrap(_apply(_CHECK_PROBABILITY, (x._node,), (name,)))


def _broadcast_weight(name, what, weight, x) -> _Var:
    w = _data(weight, x.dtype)
    if not _fits(w.shape, x.shape):
        raise _located(f"{name}: {what} of shape {w.shape} does not broadcast to the input's shape {x.shape}")
    return w


def _reduce(loss, reduction):
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _clamped_log(p, tiny_inputs=False):
    """log(p) limited to >= -100, as PyTorch's BCE, with a finite gradient. p = 0 gives
    -100 (through the smallest subnormal, whose log is below -100 in float32 and float64)
    with a zero gradient: the clamps pass no gradient there, so no 0 * inf appears.

    With ``tiny_inputs`` (p may be below the smallest normal number, where 1 / p
    overflows) the gradient there is 0. In float64 the clamp at -100 already sees to it;
    in float32 (whose smallest normal is e ** -87.3) the value there is taken through
    stop_gradient. (1 - x for x in [0, 1] is 0 or at least 2 ** -53 (2 ** -24 in float32):
    never that small.)"""
    info = _np.finfo(p.dtype)
    log = p.clamp(lo=float(info.smallest_subnormal)).ln().clamp(lo=-100.0)
    if not tiny_inputs or _np.log(info.tiny) < -100:
        return log
    normal = _wrap(_apply(_OPS["greater_equal"], (p._node, _leaf(info.tiny))))
    return _wrap(_apply(_OPS["where"], (normal._node, log._node, _apply(_OPS["stop_gradient"], (log._node,)))))


# ---- elementwise regression losses -------------------------------------------------------------

def mse_loss(input, target, *, reduction: str = "mean") -> _Var:
    """Mean squared error: (input - target) ** 2, reduced.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> float(F.mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0])).data)
    5.0
    """
    _check_reduction("mse_loss", reduction)
    x, y = _pair("mse_loss", input, target)
    d = x - y
    return _reduce(d * d, reduction)


def l1_loss(input, target, *, reduction: str = "mean") -> _Var:
    """Mean absolute error: |input - target|, reduced (the gradient at 0 is 0).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> float(F.l1_loss(np.array([1.0, -3.0]), np.array([0.0, 0.0])).data)
    2.0
    """
    _check_reduction("l1_loss", reduction)
    x, y = _pair("l1_loss", input, target)
    return _reduce((x - y).abs(), reduction)


mae_loss = l1_loss


def _huber(d, delta):
    # 0.5 d^2 for |d| < delta, delta (|d| - delta / 2) otherwise, written without a
    # branch: with c = min(|d|, delta), both are c (|d| - c / 2).
    a = d.abs()
    c = a.clamp(hi=delta)
    return c * (a - 0.5 * c)


def huber_loss(input, target, *, reduction: str = "mean", delta: float = 1.0) -> _Var:
    """Huber loss: 0.5 d^2 where |d| < delta, delta * (|d| - 0.5 delta) elsewhere (d = input - target).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.huber_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none").data
    array([0.125, 2.5  ])
    """
    _check_reduction("huber_loss", reduction)
    delta = _option("huber_loss", "delta", delta, 0.0, open_lo=True)
    x, y = _pair("huber_loss", input, target)
    return _reduce(_huber(x - y, float(delta)), reduction)


def smooth_l1_loss(input, target, *, reduction: str = "mean", beta: float = 1.0) -> _Var:
    """Smooth L1: 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere; beta = 0 is L1.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.smooth_l1_loss(np.array([0.5, 3.0]), np.array([0.0, 0.0]), reduction="none", beta=2.0).data
    array([0.0625, 2.    ])
    """
    _check_reduction("smooth_l1_loss", reduction)
    beta = _option("smooth_l1_loss", "beta", beta, 0.0)
    x, y = _pair("smooth_l1_loss", input, target)
    d = x - y
    if beta == 0:
        return _reduce(d.abs(), reduction)
    beta = float(beta)
    return _reduce(_huber(d, beta) * (1.0 / beta), reduction)


# ---- binary classification ---------------------------------------------------------------------

def bce_loss(input, target, weight=None, *, reduction: str = "mean") -> _Var:
    """Binary cross-entropy on probabilities:
    -weight * (target * log(input) + (1 - target) * log(1 - input)), each log limited to >= -100.

    ``weight`` broadcasts to the input's shape. Inputs outside [0, 1] (NaN
    included) raise ValueError, as in PyTorch: when the loss is built if the values
    are known then, and each time the graph runs. The gradient is the derivative of
    the clamped formula: 0 where a log is clamped, so finite at input 0 and 1, and 0
    where 1 / input would overflow (below float32's smallest normal number); PyTorch
    instead divides by max(x (1 - x), 1e-12) everywhere; the two agree wherever no
    log is clamped. The clamp at -100 is exact in float32 and float64.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> round(float(F.bce_loss(np.array([0.9, 0.2]), np.array([1.0, 0.0])).data), 4)
    0.1643
    """
    _check_reduction("bce_loss", reduction)
    x, y = _pair("bce_loss", input, target)
    x = _probabilities("bce_loss", x)
    gain = y * _clamped_log(x, tiny_inputs=True) + (1.0 - y) * _clamped_log(1.0 - x)     # the loss is -gain
    if weight is not None:
        gain = gain * _broadcast_weight("bce_loss", "weight", weight, x)
    return -_reduce(gain, reduction)


def bce_with_logits_loss(input, target, weight=None, *, reduction: str = "mean", pos_weight=None) -> _Var:
    """Binary cross-entropy on logits, without overflow:
    weight * ((1 - target) * x + (1 + (pos_weight - 1) * target) * softplus(-x)),
    which is max(x, 0) - x * target + log(1 + exp(-|x|)) without pos_weight: one op,
    ``bce_with_logits``, whose gradient is sigmoid(x) - target (pos_weight adds
    (pos_weight - 1) * target * softplus(-x)).

    ``weight`` and ``pos_weight`` broadcast to the input's shape (pos_weight: one
    per class, along the last axis).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> float(F.bce_with_logits_loss(np.array([1e4, -1e4]), np.array([1.0, 0.0])).data)
    0.0
    """
    _check_reduction("bce_with_logits_loss", reduction)
    x, y = _pair("bce_with_logits_loss", input, target)
    loss = _wrap(_apply(_BCE_WITH_LOGITS, (x._node, y._node), ()))     # (1 - y) * x + softplus(-x)
    if pos_weight is not None:
        pw = _broadcast_weight("bce_with_logits_loss", "pos_weight", pos_weight, x)
        loss = loss + ((pw - 1.0) * y) * (-x).softplus()
    if weight is not None:
        loss = loss * _broadcast_weight("bce_with_logits_loss", "weight", weight, x)
    return _reduce(loss, reduction)


binary_cross_entropy = bce_loss
binary_cross_entropy_with_logits = bce_with_logits_loss


# ---- classification with class indices -----------------------------------------------------------

def _class_axis(name, x):
    if x.ndim == 0:
        raise _located(f"{name}: the input needs a class axis: (C,), (N, C) or (N, C, d1, ...), got shape ()")
    return 0 if x.ndim == 1 else 1


def _index_target(name, x, target, ignore_index):
    """The class-index target as an integer variable, checked against the input: now where
    its values are known (an error names the user's line), and by a ``check_class_index``
    node each time the graph runs (a compiled ``neuronika.grad`` called with new targets,
    a target changed in place)."""
    t = target if isinstance(target, _Var) else _np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: the target must hold integer class indices, got dtype {t.dtype} "
                        f"(convert it with .astype(int))")
    low, high = _integer_range(t.dtype)
    if not low <= ignore_index <= high:                # uint8 labels with ignore_index = -100, say
        t = t.astype(_np.int64)
    expected = x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()
    if t.shape != expected:
        raise _located(f"{name}: for an input of shape {x.shape} the target must have shape {expected}, "
                       f"got target {t.shape}")
    classes = x.shape[0 if x.ndim == 1 else 1]
    values = t._node.value if isinstance(t, _Var) else t
    if values is not None:
        try:
            _check_class_index(values, classes, ignore_index, name)
        except IndexError as error:
            raise _located(str(error), IndexError) from None
    t = t if isinstance(t, _Var) else _from_ndarray(t)
    return _wrap(_apply(_CHECK_CLASS_INDEX, (t._node,), (classes, int(ignore_index), name)))


@_functools.lru_cache(maxsize=None)
def _integer_range(dtype):
    """(the least, the largest) value of an integer dtype (``np.iinfo`` takes ~0.5 µs a call)."""
    info = _np.iinfo(dtype)
    return int(info.min), int(info.max)


def _gather(x, t):
    """x[n, t[n, d...], d...]: the entries of x along its class axis picked by t.

    Integer-array indexing (a gather, whose gradient scatter-adds) was faster than a
    one-hot product: at N = 512, C = 10, float32, 120 us against 135 us for a
    compiled ``value_and_grad`` of the NLL, 12.7 us against 28 us for the kernels alone.
    """
    if x.ndim == 1:
        return x[t]
    k = t.ndim
    space = x._node.space                    # the positions in the library x lives in
    index = [_backend.move(_np.arange(x.shape[0]).reshape((-1,) + (1,) * (k - 1)), space), t]
    for i, size in enumerate(x.shape[2:], start=1):
        index.append(_backend.move(_np.arange(size).reshape((1,) * i + (-1,) + (1,) * (k - 1 - i)), space))
    return x[tuple(index)]


def _class_weight(name, weight, x, classes) -> _Var:
    w = _data(weight, x.dtype)
    if w.shape != (classes,):
        raise _located(f"{name}: weight must have shape ({classes},), one per class of the input "
                       f"of shape {x.shape}, got weight {w.shape}")
    return w


def _picked(name, logp, target, weight, ignore_index):
    """(log-probability of each target class, the target's weight, the class weights
    or None, 1 where the target is kept and 0 where it equals ignore_index); all but
    the class weights are shaped like the target, and zero where it is ignored."""
    t = _index_target(name, logp, target, ignore_index)
    keep = t != ignore_index
    safe = t * keep.astype(t.dtype)          # ignored entries pick class 0, then weigh 0
    picked = _gather(logp, safe)
    kept = keep.astype(logp.dtype)
    if weight is None:
        return picked, kept, None, kept
    w = _class_weight(name, weight, logp, logp.shape[_class_axis(name, logp)])
    return picked, w[safe] * kept, w, kept


def _negated_reduce(gain, weights, reduction):
    """-gain reduced; ``'mean'`` divides by the sum of ``weights``. The sign is applied
    after the sum, on one number instead of every element."""
    if reduction == "mean":
        return -(gain.sum() / weights.sum())
    if reduction == "sum":
        return -gain.sum()
    return -gain


def nll_loss(input, target, weight=None, *, ignore_index: int = -100, reduction: str = "mean") -> _Var:
    """Negative log-likelihood of log-probabilities ``input`` ((C,), (N, C) or
    (N, C, d1, ...)) at the integer class indices ``target`` (shape (), (N,) or
    (N, d1, ...)): -weight[t] * input[n, t, d...].

    Targets equal to ``ignore_index`` contribute 0. ``'mean'`` divides the sum by
    the sum of the weights of the targets not ignored (their count without
    ``weight``), as PyTorch: NaN if every target is ignored.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> logp = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    >>> round(float(F.nll_loss(logp, np.array([0, 1])).data), 4)
    0.4581
    """
    _check_reduction("nll_loss", reduction)
    ignore_index = _ignore_index("nll_loss", ignore_index)
    x = _float_input("nll_loss", input)
    _class_axis("nll_loss", x)
    if weight is None and x.ndim > 1:           # one op: its gradient needs no scatter
        t = _index_target("nll_loss", x, target, ignore_index)
        return _wrap(_apply(_CLASS_NLL, (x._node, t._node), (ignore_index, reduction)))
    picked, weights, _, _ = _picked("nll_loss", x, target, weight, ignore_index)
    return _negated_reduce(picked * weights, weights, reduction)


def cross_entropy(input, target, weight=None, *, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> _Var:
    """Cross-entropy of logits ``input`` ((C,), (N, C) or (N, C, d1, ...)): log_softmax
    along the class axis (1, or 0 for a 1-D input), then the NLL.

    ``target`` is either integer class indices (shape (), (N,) or (N, d1, ...); as
    ``nll_loss``, with ``weight`` and ``ignore_index``) or, with the input's shape,
    class probabilities (float), as in PyTorch: -sum_c weight_c target_c log p_c,
    whose ``'mean'`` divides by the number of rows (input.size / C).

    ``label_smoothing`` = e mixes the target with the uniform distribution, as
    PyTorch defines it: with class indices the loss is
    (1 - e) * nll + (e / C) * smooth, where smooth = -sum_c weight_c log p_c (zero for
    ignored targets), each reduced the same way (under ``'mean'`` both divide by the
    sum of the target weights); with probabilities the target becomes
    target * (1 - e) + e / C.

    Class indices along axis 1 without label smoothing make one op,
    ``softmax_cross_entropy``, whose gradient is (softmax - onehot(target)) * dy.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    >>> round(float(F.cross_entropy(logits, np.array([0, 2]), label_smoothing=0.1).data), 4)
    0.3455
    """
    name = "cross_entropy"
    _check_reduction(name, reduction)
    label_smoothing = _option(name, "label_smoothing", label_smoothing, 0.0, 1.0)
    ignore_index = _ignore_index(name, ignore_index)
    x = _float_input(name, input)
    axis = _class_axis(name, x)
    classes = x.shape[axis]
    eps = float(label_smoothing)
    weight_shape = (classes,) + (1,) * (x.ndim - 2) if x.ndim > 1 else (classes,)

    target_shape = target.shape if hasattr(target, "shape") else _np.shape(target)
    if tuple(target_shape) == x.shape:
        return _cross_entropy_probabilities(x, x.log_softmax(axis), target, weight, ignore_index, reduction,
                                            eps, weight_shape)
    if x.ndim > 1 and eps == 0:
        return _softmax_cross_entropy(x, target, weight, ignore_index, reduction)

    logp = x.log_softmax(axis)
    picked, weights, w, kept = _picked(name, logp, target, weight, ignore_index)
    gain = picked * weights                  # the loss is -gain
    if eps > 0:
        smooth = (logp * w.reshape(weight_shape) if w is not None else logp).sum(axis)
        gain = (1.0 - eps) * gain + (eps / classes) * (smooth * kept)
    return _negated_reduce(gain, weights, reduction)


def _softmax_cross_entropy(x, target, weight, ignore_index, reduction):
    """Class indices along axis 1, without label smoothing: one ``softmax_cross_entropy`` op
    (its gradient is softmax - onehot, with no scatter), reduced inside it, or the weights
    applied after it."""
    name = "cross_entropy"
    t = _index_target(name, x, target, ignore_index)
    if weight is None:
        return _wrap(_apply(_SOFTMAX_CROSS_ENTROPY, (x._node, t._node), (ignore_index, reduction)))
    loss = _wrap(_apply(_SOFTMAX_CROSS_ENTROPY, (x._node, t._node), (ignore_index, "none")))
    w = _class_weight(name, weight, x, x.shape[1])
    keep = t != ignore_index
    picked = w[t * keep.astype(t.dtype)]        # ignored targets pick class 0: their loss is 0
    if reduction == "mean":
        weights = picked * keep.astype(x.dtype)
        return (loss * weights).sum() / weights.sum()
    return _reduce(loss * picked, reduction)


def _cross_entropy_probabilities(x, logp, target, weight, ignore_index, reduction, eps, weight_shape):
    name = "cross_entropy"
    target_dtype = target.dtype if isinstance(target, _Var) else _np.asarray(target).dtype
    if target_dtype.kind != "f":
        raise TypeError(f"{name}: a target of the input's shape {x.shape} holds class probabilities and "
                        f"must be floating point, got dtype {target_dtype}; class indices have shape "
                        f"{x.shape[:1] + x.shape[2:] if x.ndim > 1 else ()}")
    if ignore_index >= 0:
        raise _located(f"{name}: ignore_index is not supported with class-probability targets, got "
                       f"ignore_index = {ignore_index}", ValueError)
    axis = 0 if x.ndim == 1 else 1
    classes = x.shape[axis]
    y = _data(target, x.dtype)
    if eps > 0:
        y = y * (1.0 - eps) + eps / classes
    product = logp * y
    if weight is not None:
        product = product * _class_weight(name, weight, x, classes).reshape(weight_shape)
    gain = product.sum(axis)
    if reduction == "mean":
        return -(gain.sum() / float(x.size // classes))
    return -_reduce(gain, reduction)


# ---- distributions ------------------------------------------------------------------------------

def kl_div_loss(input, target, *, reduction: str = "mean", log_target: bool = False) -> _Var:
    """Kullback-Leibler divergence, PyTorch's ``kl_div``: ``input`` holds
    log-probabilities, ``target`` probabilities (or log-probabilities with
    ``log_target=True``); pointwise target * (log(target) - input), 0 where target = 0.

    ``reduction='batchmean'`` divides the sum by the batch size (input.shape[0]):
    the true KL divergence per sample. ``'mean'`` divides by the number of elements,
    as PyTorch (which warns about it).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> p, q = np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]])
    >>> round(float(F.kl_div_loss(np.log(q), p, reduction="batchmean").data), 4)
    0.5108
    """
    _check_reduction("kl_div_loss", reduction, _REDUCTIONS + ("batchmean",))
    x, y = _pair("kl_div_loss", input, target)
    if log_target:
        loss = y.exp() * (y - x)
    else:
        # target * log(target), 0 at target = 0 (xlogy): log of 1 there, no 0 * -inf
        zero = (y == 0).astype(x.dtype)
        loss = y * (y + zero).ln() - y * x
    if reduction == "batchmean":
        total = loss.sum()
        return total / float(x.shape[0]) if x.ndim else total
    return _reduce(loss, reduction)


kl_div = kl_div_loss


# ---- activations and normalisation --------------------------------------------------------------

def gelu(input, approximate: str = "none") -> _Var:
    """The Gaussian error linear unit, x * Phi(x) with Phi the standard normal CDF
    (``approximate='none'``), or PyTorch's tanh approximation (``approximate='tanh'``):
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x ** 3))). One op, ``gelu``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.gelu(np.array([-1.0, 0.0, 2.0])).data.round(4)
    array([-0.1587,  0.    ,  1.9545])
    >>> F.gelu(np.array([-1.0, 0.0, 2.0]), approximate="tanh").data.round(4)
    array([-0.1588,  0.    ,  1.9546])
    """
    if approximate not in ("none", "tanh"):
        raise _located(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}", ValueError)
    x = _float_layer_input("gelu", input)
    return _wrap(_apply(_GELU, (x._node,), (approximate,)))


def _layer_input(name, value) -> _Var:
    """A variable over ``value``; another array library's array stays in its library."""
    if isinstance(value, _Var):
        x = value
    else:
        x = _from_ndarray(value if _backend.foreign(value) else _np.asarray(value))
    if x.dtype.kind == "c":
        raise TypeError(f"{name}: complex inputs are not supported (got dtype {x.dtype})")
    return x


def layer_norm(input, normalized_shape, weight=None, bias=None, eps: float = 1e-5) -> _Var:
    """(x - mean) / sqrt(var + eps) over the trailing ``normalized_shape`` axes (biased
    variance), times ``weight`` plus ``bias`` (each of ``normalized_shape``, optional), as
    PyTorch's. The normalisation is one op, ``normalize``; weight and bias are a product and
    a sum after it.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.layer_norm(np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 5.0]]), 3).data.round(4)
    array([[-1.2247,  0.    ,  1.2247],
           [-0.7071, -0.7071,  1.4142]])
    """
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, _np.integer)) else normalized_shape
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise _located(f"layer_norm: normalized_shape must be an int or a tuple of ints, got "
                       f"{normalized_shape!r}", ValueError) from None
    eps = _option("layer_norm", "eps", eps, 0.0, open_lo=True)
    x = _layer_input("layer_norm", input)
    n = len(shape)
    if not shape or x.ndim < n or x.shape[x.ndim - n:] != shape:
        raise _located(f"layer_norm: an input of shape (*, {', '.join(map(str, shape))}) is expected "
                       f"(normalized_shape {shape}), got {x.shape}")
    for name, value in (("weight", weight), ("bias", bias)):
        given = None if value is None else tuple(value.shape if hasattr(value, "shape") else _np.shape(value))
        if given is not None and given != shape:
            raise _located(f"layer_norm: {name} must have the shape {shape}, got {given}")
    y = _wrap(_apply(_NORMALIZE, (x._node,), (tuple(range(x.ndim - n, x.ndim)), eps)))
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> _Var:
    """Batch normalisation of an (N, C, *) input per channel C, as PyTorch's: in training,
    (x - mean) / sqrt(var + eps) with the batch's mean and biased variance over every axis
    but C, and ``running_mean`` / ``running_var`` (arrays of shape (C,), or None) updated in
    place with the batch's mean and unbiased variance,
    ``running = (1 - momentum) * running + momentum * batch``; in evaluation the running
    statistics are used. Then times ``weight`` plus ``bias`` (each (C,), optional). In
    training with both weight and bias it is one op, ``batch_norm``. ``nn.BatchNorm1d`` and
    ``nn.BatchNorm2d`` call it.

    The statistics are computed from the input's value when it is called (the input is
    evaluated then); inside a function given to ``neuronika.grad`` that would happen once, at
    tracing time, so an update of running statistics refuses to run there.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]])
    >>> mean, var = np.zeros(2), np.ones(2)
    >>> F.batch_norm(x, mean, var, training=True).data.round(4)
    array([[-1., -1.],
           [ 1.,  1.]])
    >>> mean, var
    (array([0.2, 2. ]), array([ 1.1, 20.9]))
    >>> F.batch_norm(x, mean, var).data.round(4)
    array([[0.7628, 1.7499],
           [2.6697, 6.1247]])
    """
    momentum = _option("batch_norm", "momentum", momentum, 0.0, 1.0)
    eps = _option("batch_norm", "eps", eps, 0.0, open_lo=True)
    x = _layer_input("batch_norm", input)
    if x.ndim < 2:
        raise _located(f"batch_norm: an input of shape (N, C, *) is expected, got {x.shape}")
    return _normalise_batch("batch_norm", x, running_mean, running_var, weight, bias, bool(training),
                           momentum, eps)


def _normalise_batch(name, x, running_mean, running_var, weight, bias, training, momentum, eps):
    """``batch_norm`` on the variable ``x`` of shape (N, C, *), its errors naming ``name`` (the
    function's name, or the layer that calls it: formatted only for a message). A layer's own
    parameters and buffers were shaped when it was made: they are not checked again."""
    channels = (x.shape[1],)
    if type(name) is str:
        _check_batch_norm_arguments(name, x, channels, running_mean, running_var, weight, bias, training)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1,) + channels + (1,) * (x.ndim - 2)       # a channel's values broadcast
    # variables as they are (a layer's parameters keep their dtype); arrays in the input's dtype
    if weight is not None:
        weight = (weight if isinstance(weight, _Var) else _data(weight, x.dtype)).reshape(shape)
    if bias is not None:
        bias = (bias if isinstance(bias, _Var) else _data(bias, x.dtype)).reshape(shape)
    if not training:
        if running_mean is None:
            raise _located(f"{name}: running_mean and running_var are needed in evaluation "
                           f"(training=False)", ValueError)
        return _normalise_running(x, running_mean, running_var, weight, bias, shape, eps)
    count = x.size // channels[0]
    if count <= 1:
        raise _located(f"{name}: expected more than 1 value per channel when training, got an input "
                       f"of shape {x.shape}", ValueError)
    if running_mean is not None:
        _update_running(name, x, running_mean, running_var, axes, momentum)
    if weight is not None and bias is not None:     # one op: its adjoint needs no composition
        return _wrap(_apply(_BATCH_NORM, (x._node, weight._node, bias._node), (axes, eps)))
    centred = x - x.mean(axis=axes, keepdims=True)
    variance = (centred * centred).mean(axis=axes, keepdims=True)
    y = centred / (variance + eps).sqrt()
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def _check_batch_norm_arguments(name, x, channels, running_mean, running_var, weight, bias, training):
    for what, value in (("running_mean", running_mean), ("running_var", running_var),
                        ("weight", weight), ("bias", bias)):
        if value is not None and getattr(value, "shape", None) != channels and _np.shape(value) != channels:
            raise _located(f"{name}: {what} must have the shape {channels} for an input of shape "
                           f"{x.shape}, got {tuple(_np.shape(value))}")
    if (running_mean is None) != (running_var is None):
        raise _located(f"{name}: give both running_mean and running_var, or neither", ValueError)
    if not training or running_mean is None:
        return
    for what, buffer in (("running_mean", running_mean), ("running_var", running_var)):
        if isinstance(buffer, _np.ndarray):
            floats = buffer.dtype.kind == "f"
        else:
            floats = _backend.foreign(buffer) and _backend.space_of(buffer).xp.isdtype(buffer.dtype, "real floating")
        if not floats:
            raise _located(f"{name}: {what} must be an array of floats, updated in place while "
                           f"training, got {type(buffer).__name__}"
                           + (f" of dtype {buffer.dtype}" if hasattr(buffer, "dtype") else ""), TypeError)


def _update_running(name, x, running_mean, running_var, axes, momentum, per_instance=False):
    """Move the running statistics towards the batch's mean and unbiased variance over
    ``axes``; ``per_instance`` (instance_norm): each instance's, averaged over the batch."""
    tracer = _modes.tracer
    if tracer is not None and tracer.depends(x._node):
        option = "use_input_stats=False" if per_instance else "training=False"
        raise RuntimeError(
            f"{name}: running statistics cannot be updated inside a traced function "
            f"(neuronika.grad and friends trace once, so they would be updated once); in such a "
            f"function use the running statistics ({option}; .eval() on a layer) or track none "
            f"(running_mean = running_var = None; track_running_stats=False for a layer)")
    data = x.data
    if isinstance(data, _np.ndarray):
        batch_mean = data.mean(axis=axes)
        batch_var = data.var(axis=axes, ddof=1)
        if per_instance:
            batch_mean, batch_var = batch_mean.mean(axis=0), batch_var.mean(axis=0)
    else:
        xp = _backend.space_of(data).xp
        batch_mean = xp.mean(data, axis=axes)
        batch_var = xp.var(data, axis=axes, correction=1)
        if per_instance:
            batch_mean, batch_var = xp.mean(batch_mean, axis=0), xp.mean(batch_var, axis=0)
    for buffer, value in ((running_mean, batch_mean), (running_var, batch_var)):
        buffer *= 1.0 - momentum
        if isinstance(buffer, _np.ndarray):
            value = value if isinstance(value, _np.ndarray) else _backend.to_numpy(value)
            buffer += (momentum * value).astype(buffer.dtype, copy=False)
        else:
            space = _backend.space_of(buffer)
            buffer += space.xp.astype(_backend.move(momentum * value, space), buffer.dtype)


def _normalise_running(x, running_mean, running_var, weight, bias, shape, eps):
    # Leaves over the arrays themselves: a graph built now sees later updates.
    mean, var = (value if isinstance(value, _Var) else _from_ndarray(value if _backend.foreign(value)
                                                                   else _np.asarray(value))
                 for value in (running_mean, running_var))
    mean = mean.reshape(shape)
    inv_std = 1.0 / (var.reshape(shape) + eps).sqrt()
    if weight is None and bias is None:
        return (x - mean) * inv_std
    scale = inv_std if weight is None else weight * inv_std
    return x * scale + (-(mean * scale) if bias is None else bias - mean * scale)


# ---- activations, linear maps, dropout and look-ups (PyTorch's nn.functional) ------------------
#
# Each is composed of catalogue ops, so first and second derivatives come from the engine.
# Where an activation has a kink, the gradient there is PyTorch's (relu6, hardtanh and
# hardsigmoid pass none at their corners, elu passes alpha at 0, ...): the comparisons are
# chosen for it. ``inplace=`` is accepted and ignored: variables are immutable, the result is
# always a new variable.

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _float_layer_input(name, value) -> _Var:
    """``value`` as a variable that must hold floats (TypeError naming ``name`` otherwise)."""
    x = _layer_input(name, value)
    if x.dtype.kind != "f":
        raise _located(f"{name}: the input must be floating point, got dtype {x.dtype} "
                       f"(convert it with .astype(numpy.float32))", TypeError)
    return x


def _operand(value) -> _Var:
    """A weight or bias as a variable, in its own dtype (plain arrays become leaves)."""
    if isinstance(value, _Var):
        return value
    return _from_ndarray(value if _backend.foreign(value) else _np.asarray(value))


def _where(condition, a, b) -> _Var:
    from ..numpy import where
    return where(condition, a, b)


def _numeric(x) -> _Var:
    """Booleans as float64 (what NumPy makes of integers here), since x - max(x) needs numbers."""
    return x.astype(_np.float64) if x.dtype.kind == "b" else x


def relu(input, inplace: bool = False) -> _Var:
    """max(x, 0); the gradient at 0 is 0.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.relu(np.array([-1.0, 0.0, 2.0])).data
    array([0., 0., 2.])
    """
    return _layer_input("relu", input).relu()


def relu6(input, inplace: bool = False) -> _Var:
    """min(max(x, 0), 6); no gradient at 0 and 6, as PyTorch's.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.relu6(np.array([-1.0, 3.0, 8.0])).data
    array([0., 3., 6.])
    """
    x = _float_layer_input("relu6", input)
    return _where(x >= 6, 6.0, x.relu())


def leaky_relu(input, negative_slope: float = 0.01, inplace: bool = False) -> _Var:
    """x where x > 0, negative_slope * x elsewhere (the gradient at 0 is negative_slope).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.leaky_relu(np.array([-2.0, 3.0]), 0.1).data
    array([-0.2,  3. ])
    """
    negative_slope = _option("leaky_relu", "negative_slope", negative_slope)
    return _layer_input("leaky_relu", input).leaky_relu(negative_slope)


def _elu(x, alpha, input_scale=1.0):
    # relu(x) + alpha * (exp(min(x, 0)) - 1): exp never sees a positive argument, x > 0 comes
    # out exactly, and the gradient at 0 is alpha * input_scale (the clamp passes it there)
    negative = x.clamp(hi=0.0)
    if input_scale != 1.0:
        negative = negative * input_scale
    from ..numpy import expm1
    tail = expm1(negative)
    return x.relu() + (tail if alpha == 1.0 else alpha * tail)


def elu(input, alpha: float = 1.0, inplace: bool = False) -> _Var:
    """x where x > 0, alpha * (exp(x) - 1) elsewhere (the gradient at 0 is alpha).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.elu(np.array([-1.0, 2.0])).data.round(4)
    array([-0.6321,  2.    ])
    """
    alpha = _option("elu", "alpha", alpha)
    return _elu(_float_layer_input("elu", input), alpha)


def selu(input, inplace: bool = False) -> _Var:
    """scale * elu(x, alpha) with PyTorch's constants (alpha = 1.6733, scale = 1.0507).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.selu(np.array([-1.0, 2.0])).data.round(4)
    array([-1.1113,  2.1014])
    """
    return _SELU_SCALE * _elu(_float_layer_input("selu", input), _SELU_ALPHA)


def celu(input, alpha: float = 1.0, inplace: bool = False) -> _Var:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)); alpha must not be 0.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.celu(np.array([-1.0, 2.0]), alpha=2.0).data.round(4)
    array([-0.7869,  2.    ])
    """
    alpha = _option("celu", "alpha", alpha)
    if alpha == 0:
        raise _located("celu: alpha must not be 0 (the input is divided by it)", ValueError)
    return _elu(_float_layer_input("celu", input), alpha, 1.0 / alpha)


def silu(input, inplace: bool = False) -> _Var:
    """x * sigmoid(x) (the swish), without overflow.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.silu(np.array([-1.0, 2.0])).data.round(4)
    array([-0.2689,  1.7616])
    """
    x = _float_layer_input("silu", input)
    return x * x.sigmoid()


def mish(input, inplace: bool = False) -> _Var:
    """x * tanh(softplus(x)), without overflow.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.mish(np.array([-1.0, 2.0])).data.round(4)
    array([-0.3034,  1.944 ])
    """
    x = _float_layer_input("mish", input)
    return x * x.softplus().tanh()


def softplus(input, beta: float = 1.0, threshold: float = 20.0) -> _Var:
    """log(1 + exp(beta * x)) / beta, and x itself where beta * x > threshold (PyTorch's
    switch to the identity, which keeps its gradient exactly 1 there); without overflow.
    Integer inputs become float64.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.softplus(np.array([-1.0, 0.0, 30.0])).data.round(4)
    array([ 0.3133,  0.6931, 30.    ])
    >>> F.softplus(np.array([1.0]), beta=2.0).data.round(4)
    array([1.0635])
    """
    beta = _option("softplus", "beta", beta)
    threshold = _option("softplus", "threshold", threshold)
    if beta == 0:
        raise _located("softplus: beta must not be 0 (the result is divided by it)", ValueError)
    x = _layer_input("softplus", input)
    if x.dtype.kind != "f":
        x = x.astype(_np.float64)
    if beta == 1.0 and threshold >= 20.0 and x.dtype == _np.float32:
        # above 20, log(1 + exp(x)) rounds to x in float32 (exp(-20) < half an ulp of 20) and
        # the op's gradient exp(x - y) to 1: the switch would change no bit, so one op
        return x.softplus()
    scaled = x if beta == 1.0 else x * beta
    smooth = scaled.softplus()
    if beta != 1.0:
        smooth = smooth / beta
    return _where(scaled > threshold, x, smooth)


def softsign(input) -> _Var:
    """x / (1 + |x|).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.softsign(np.array([-1.0, 3.0])).data
    array([-0.5 ,  0.75])
    """
    x = _float_layer_input("softsign", input)
    return x / (x.abs() + 1.0)


def hardtanh(input, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> _Var:
    """x limited to [min_val, max_val]; the gradient is 1 strictly inside, 0 elsewhere (as
    PyTorch's; ``clamp`` passes it at the bounds too).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.hardtanh(np.array([-2.0, 0.5, 2.0])).data
    array([-1. ,  0.5,  1. ])
    """
    lo = _option("hardtanh", "min_val", min_val)
    hi = _option("hardtanh", "max_val", max_val)
    if lo > hi:
        raise _located(f"hardtanh: min_val cannot be greater than max_val, got min_val = {min_val} "
                       f"and max_val = {max_val}", ValueError)
    x = _float_layer_input("hardtanh", input)
    return _where(x <= lo, lo, _where(x >= hi, hi, x))


def hardsigmoid(input, inplace: bool = False) -> _Var:
    """0 where x <= -3, 1 where x >= 3, x / 6 + 1/2 between; no gradient at -3 and 3.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.hardsigmoid(np.array([-4.0, 0.0, 1.5, 4.0])).data
    array([0.  , 0.5 , 0.75, 1.  ])
    """
    x = _float_layer_input("hardsigmoid", input)
    return _where(x <= -3.0, 0.0, _where(x >= 3.0, 1.0, (x + 3.0) / 6.0))


def hardswish(input, inplace: bool = False) -> _Var:
    """x * hardsigmoid(x): 0 where x <= -3, x where x >= 3, x (x + 3) / 6 between (the
    gradient at -3 is 0, at 3 is 1, as PyTorch's).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.hardswish(np.array([-4.0, 1.5, 4.0])).data
    array([0.   , 1.125, 4.   ])
    """
    x = _float_layer_input("hardswish", input)
    return _where(x <= -3.0, 0.0, _where(x >= 3.0, x, x * (x + 3.0) / 6.0))


def sigmoid(input) -> _Var:
    """1 / (1 + exp(-x)), without overflow.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.sigmoid(np.array([0.0, 1000.0, -1000.0])).data
    array([0.5, 1. , 0. ])
    """
    return _layer_input("sigmoid", input).sigmoid()


def tanh(input) -> _Var:
    """The hyperbolic tangent.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.tanh(np.array([0.0, 1.0])).data.round(4)
    array([0.    , 0.7616])
    """
    return _layer_input("tanh", input).tanh()


def logsigmoid(input) -> _Var:
    """log(sigmoid(x)) = -softplus(-x), without overflow or loss of precision in the tails.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.logsigmoid(np.array([-100.0, 0.0])).data.round(4)
    array([-100.    ,   -0.6931])
    """
    return -(-_float_layer_input("logsigmoid", input)).softplus()


def _softmax_dim(name, dim, x):
    if dim is None:
        raise _located(f"{name}: give dim, the axis to normalise over (PyTorch's implicit choice "
                       f"for dim=None is deprecated there and not supported here)", ValueError)
    if not isinstance(dim, (int, _np.integer)) or isinstance(dim, bool):
        raise _located(f"{name}: dim must be an int, got {dim!r}", TypeError)
    n = max(x.ndim, 1)               # a 0-d input has one axis to name: 0 or -1, as in PyTorch
    if not -n <= dim < n:
        raise _located(f"{name}: dim {dim} is out of range for an input of shape {x.shape} "
                       f"(dim must be in [{-n}, {n - 1}])")
    return int(dim) % n


def _softmax(name, input, dim, dtype, log):
    x = _layer_input(name, input)
    if dtype is not None:
        dtype = _np.dtype(dtype)
        if x.dtype != dtype:
            x = x.astype(dtype)
    x = _numeric(x)
    axis = _softmax_dim(name, dim, x)
    if x.ndim == 0:
        y = x.reshape((1,))
        return (y.log_softmax(0) if log else y.softmax(0)).reshape(())
    return x.log_softmax(axis) if log else x.softmax(axis)


def softmax(input, dim=None, _stacklevel: int = 3, dtype=None) -> _Var:
    """exp(x) / sum(exp(x)) along ``dim`` (one op, without overflow); ``dtype`` casts the input
    first. ``dim`` is required (PyTorch's implicit choice for None is refused).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.softmax(np.array([[1000.0, 1000.0], [0.0, np.log(3.0)]]), dim=1).data
    array([[0.5 , 0.5 ],
           [0.25, 0.75]])
    """
    return _softmax("softmax", input, dim, dtype, log=False)


def log_softmax(input, dim=None, _stacklevel: int = 3, dtype=None) -> _Var:
    """x - logsumexp(x) along ``dim`` (one op, without overflow); ``dtype`` casts the input
    first. ``dim`` is required.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.log_softmax(np.array([0.0, np.log(3.0)]), dim=0).data.round(4)
    array([-1.3863, -0.2877])
    """
    return _softmax("log_softmax", input, dim, dtype, log=True)


def linear(input, weight, bias=None) -> _Var:
    """input @ weight.T + bias, for an input (*, in_features), a weight (out_features,
    in_features) (or (in_features,): one output, no axis for it) and a bias broadcasting to
    the result ((out_features,) usually). A 2-D input is one ``mm_t`` op, as ``nn.Linear``.

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.linear(np.ones((2, 3)), np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5])).data
    array([[ 3.5, 11.5],
           [ 3.5, 11.5]])
    """
    x = _layer_input("linear", input)
    w = _operand(weight)
    if w.ndim not in (1, 2) or x.ndim == 0 or x.shape[-1] != w.shape[-1]:
        raise _located(f"linear: an input of shape {x.shape} does not fit a weight of shape {w.shape}: "
                       f"an input (*, in_features) needs a weight (out_features, in_features) or "
                       f"(in_features,)")
    if w.ndim == 1:
        y = x @ w
    else:
        y = x.mm_t(w) if x.ndim == 2 else x @ w.T
    if bias is None:
        return y
    b = _operand(bias)
    if not _fits(b.shape, y.shape):
        raise _located(f"linear: a bias of shape {b.shape} does not broadcast to the output's shape {y.shape} "
                       f"(input {x.shape}, weight {w.shape})")
    return y + b


def _fits(shape, target) -> bool:
    """Whether ``shape`` broadcasts to ``target`` (the catalogue's rule: np.broadcast_shapes
    takes ~1 µs)."""
    try:
        return _broadcast_shapes(shape, target) == target
    except _ShapeError:
        return False


def bilinear(input1, input2, weight, bias=None) -> _Var:
    """y[..., k] = sum over i, j of input1[..., i] * weight[k, i, j] * input2[..., j] + bias[k],
    for inputs (*, in1) and (*, in2) (the same leading shape), a weight (out, in1, in2) and a
    bias (out,).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> w = np.arange(8.0).reshape(2, 2, 2)
    >>> F.bilinear(np.array([[1.0, 2.0]]), np.array([[1.0, 0.0]]), w, np.array([0.0, 1.0])).data
    array([[ 4., 17.]])
    """
    x1, x2 = _layer_input("bilinear", input1), _layer_input("bilinear", input2)
    w = _operand(weight)
    if (w.ndim != 3 or x1.ndim == 0 or x2.ndim == 0 or x1.shape[:-1] != x2.shape[:-1]
            or (x1.shape[-1], x2.shape[-1]) != w.shape[1:]):
        raise _located(f"bilinear: inputs of shapes {x1.shape} and {x2.shape} do not fit a weight of shape "
                       f"{w.shape}: inputs (*, in1_features) and (*, in2_features), with the same leading "
                       f"shape, need a weight (out_features, in1_features, in2_features)")
    out, in1, in2 = w.shape
    lead = x1.shape[:-1]
    n = 1
    for size in lead:
        n *= size
    # x1 times the weight laid out as (in1, out * in2): one matrix product, then a row-wise
    # product with x2 summed over in2
    t = x1.reshape((n, in1)) @ w.transpose((1, 0, 2)).reshape((in1, out * in2))
    y = (t.reshape((n, out, in2)) * x2.reshape((n, 1, in2))).sum(axis=2).reshape(lead + (out,))
    if bias is None:
        return y
    b = _operand(bias)
    if b.shape != (out,):
        raise _located(f"bilinear: bias must have the shape ({out},), one per output feature of the weight "
                       f"of shape {w.shape}, got {b.shape}")
    return y + b


def dropout(input, p: float = 0.5, training: bool = True, inplace: bool = False) -> _Var:
    """Zeroes each element with probability p and scales the rest by 1 / (1 - p) while
    ``training``; the input itself otherwise (and for p = 0).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.dropout(np.ones(3), 0.5, training=False).data
    array([1., 1., 1.])
    >>> set(F.dropout(np.ones(100), 0.5).data.tolist()) <= {0.0, 2.0}
    True
    """
    p = _option("dropout", "p", p, 0.0, 1.0)
    x = _layer_input("dropout", input)
    return x.dropout(p) if training and p > 0 else x


def embedding(input, weight, padding_idx=None, max_norm=None, norm_type: float = 2.0,
              scale_grad_by_freq: bool = False, sparse: bool = False) -> _Var:
    """Rows of ``weight`` (num_embeddings, embedding_dim) picked by the integer indices in
    ``input``; repeated indices add up in the gradient. Rows picked at ``padding_idx`` pass
    no gradient (their values are returned as they are). ``max_norm`` and
    ``scale_grad_by_freq`` are not supported; ``sparse`` is ignored (gradients are dense).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.embedding(np.array([2, 0]), np.arange(6.0).reshape(3, 2)).data
    array([[4., 5.],
           [0., 1.]])
    """
    if max_norm is not None:
        raise _located("embedding: max_norm is not supported (it renormalises rows of the weight in "
                       "place); give max_norm=None", NotImplementedError)
    if scale_grad_by_freq:
        raise _located("embedding: scale_grad_by_freq=True is not supported", NotImplementedError)
    return _embedding("embedding", input, _operand(weight), padding_idx)


def _padding_index(name, padding_idx, rows):
    """``padding_idx`` as an index in [0, rows) (negative ones count from the end), or None."""
    if padding_idx is None:
        return None
    if (not isinstance(padding_idx, (int, _np.integer)) or isinstance(padding_idx, bool)
            or not -rows <= padding_idx < rows):
        raise _located(f"{name}: padding_idx must be an int in [{-rows}, {rows}) (the weight has {rows} "
                       f"rows), got {padding_idx!r}", ValueError)
    return int(padding_idx) % rows


def _embedding(name, indices, weight, padding_idx) -> _Var:
    """The look-up, its errors naming ``name`` (a function's name, or the layer)."""
    if weight.ndim != 2:
        raise _located(f"{name}: the weight must be 2-D (num_embeddings, embedding_dim), got shape {weight.shape}")
    rows = weight.shape[0]
    padding_idx = _padding_index(name, padding_idx, rows)
    data = indices.data if isinstance(indices, _Var) else _np.asarray(indices)
    if data.dtype.kind not in "iu":
        raise _located(f"{name}: indices must be integers, got dtype {data.dtype}", TypeError)
    if data.size and (data.min() < 0 or data.max() >= rows):
        raise _located(f"{name}: indices must be in [0, {rows}), got values from {data.min()} to {data.max()}",
                       IndexError)
    index = indices if isinstance(indices, _Var) else data
    out = weight[index]
    if padding_idx is None:
        return out
    keep = index != padding_idx
    keep = keep.reshape(keep.shape + (1,))
    return _where(keep, out, _wrap(_apply(_OPS["stop_gradient"], (out._node,))))


def one_hot(tensor, num_classes: int = -1) -> _Var:
    """For integer class indices of shape S, an int64 result of shape S + (num_classes,)
    holding 1 at each index and 0 elsewhere; no gradient. ``num_classes=-1`` takes the
    largest index plus one (the values must be known then).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> F.one_hot(np.array([0, 2]), 3).data
    array([[1, 0, 0],
           [0, 0, 1]])
    """
    t = tensor if isinstance(tensor, _Var) else _from_ndarray(
        tensor if _backend.foreign(tensor) else _np.asarray(tensor))
    if t.dtype.kind not in "iu":
        raise _located(f"one_hot: the input must hold integer class indices, got dtype {t.dtype}", TypeError)
    if not isinstance(num_classes, (int, _np.integer)) or isinstance(num_classes, bool) or num_classes < -1:
        raise _located(f"one_hot: num_classes must be a positive int or -1, got {num_classes!r}", ValueError)
    values = t._node.value
    if values is not None:
        values = _backend.to_numpy(values, t._node.space)
    if num_classes == -1:
        tracer = _modes.tracer
        if values is None or (tracer is not None and tracer.depends(t._node)):
            # a traced function runs its program again on new indices: the width must not
            # depend on the values it saw once
            raise _located("one_hot: num_classes=-1 needs the values of the input, unknown inside a traced "
                           "function; give num_classes", ValueError)
        if values.size == 0:
            raise _located("one_hot: cannot infer num_classes from an empty input; give num_classes",
                           ValueError)
        num_classes = int(values.max()) + 1
    num_classes = int(num_classes)
    if values is not None and values.size and (values.min() < 0 or values.max() >= num_classes):
        bad = values[(values < 0) | (values >= num_classes)].flat[0]
        raise _located(f"one_hot: class values must be in [0, {num_classes}), got {bad}", IndexError)
    # checked again each time the graph runs (a compiled function called with new indices);
    # ignore_index = 0 is in range, so it lets nothing else through
    t = _wrap(_apply(_CHECK_CLASS_INDEX, (t._node,), (num_classes, 0, "one_hot")))
    classes = _backend.move(_np.arange(num_classes), t._node.space)
    return (t.reshape(t.shape + (1,)) == classes).astype(_np.int64)


# ---- normalisation, pooling and spatial functions, defined in their modules (issue 15) ----------
from .normalization import (cosine_similarity, group_norm, instance_norm, normalize,  # noqa: E402
                            pairwise_distance, rms_norm)
from .pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d,  # noqa: E402
                      adaptive_max_pool2d, avg_pool1d, avg_pool2d, avg_pool3d, max_pool1d, max_pool2d,
                      max_pool3d)
from .spatial import fold, interpolate, pad, pixel_shuffle, pixel_unshuffle, unfold  # noqa: E402

__all__ += [
    "group_norm", "instance_norm", "rms_norm", "normalize", "cosine_similarity", "pairwise_distance",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "pad", "pixel_shuffle", "pixel_unshuffle", "interpolate", "unfold", "fold"]

# ---- attention, defined in nn/attention.py (issue 15) -------------------------------------------
from .attention import scaled_dot_product_attention  # noqa: E402

__all__ += ["scaled_dot_product_attention"]

# ---- convolutions, defined in nn/conv.py (issue 15) ---------------------------------------------
from .conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d, conv_transpose3d  # noqa: E402

__all__ += ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]

# ---- the remaining losses, defined in nn/_losses_more.py (issue 15) ------------------------------
from ._losses_more import (cosine_embedding_loss, ctc_loss, gaussian_nll_loss, hinge_embedding_loss,  # noqa: E402
                           margin_ranking_loss, multi_margin_loss, multilabel_soft_margin_loss, poisson_nll_loss,
                           soft_margin_loss, triplet_margin_loss)

__all__ += ["triplet_margin_loss", "margin_ranking_loss", "hinge_embedding_loss", "cosine_embedding_loss",
            "poisson_nll_loss", "gaussian_nll_loss", "soft_margin_loss", "multilabel_soft_margin_loss",
            "multi_margin_loss", "ctc_loss"]
