"""Free functions beyond NumPy that every model reaches for: ``logsumexp``,
``softmax``, ``log_softmax``, ``sigmoid`` (``expit``), ``logit`` and the
activations. They are exported as ``neuronika.<name>`` and are also methods of
variables (``v.softmax(axis=-1)``). Each is stable for extreme inputs. Like the
``neuronika.numpy`` functions, given a variable they return one; given only plain
data, a plain array (or NumPy scalar).

>>> import numpy, neuronika
>>> x = numpy.array([1000.0, 1000.0])
>>> float(neuronika.logsumexp(x))
1000.6931471805599
>>> neuronika.softmax(x)
array([0.5, 0.5])
>>> neuronika.softmax(neuronika.from_ndarray(x))
Var([0.5, 0.5], dtype=float64)
"""
from __future__ import annotations

import functools

from ..variable import Var, _wrap
from ._core import any_var, axes, axis_, build, located, node_of

__all__ = ["logsumexp", "softmax", "log_softmax", "sigmoid", "expit", "logit", "relu", "leaky_relu",
           "softplus", "gelu", "erf"]


def _plain_for_plain(fn):
    """Given no variable, the value computed, as NumPy would return it."""
    @functools.wraps(fn)
    def public(*args, **kwargs):
        result = fn(*args, **kwargs)
        if any_var(args, kwargs):
            return result
        value = result.data
        return value[()] if value.ndim == 0 else value
    public.implementation = fn
    return public


def _var(x, name) -> Var:
    return x if isinstance(x, Var) else _wrap(node_of(x, name=name))


@_plain_for_plain
def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False) -> Var:
    """log(sum(b * exp(a))) over ``axis`` (scipy.special's signature), shifted by the
    maximum so it neither overflows nor underflows; the gradient is the softmax."""
    from ._reductions import max as max_, sum as sum_
    from ._ufuncs import exp, log, where
    a = _var(a, "logsumexp")
    if return_sign:
        raise located("logsumexp: return_sign=True is not supported", TypeError)
    reduced = axes("logsumexp", axis, a.ndim)
    shift = build("stop_gradient", (max_(a, axis=reduced, keepdims=True),))
    from ._ufuncs import isfinite
    shift = where(isfinite(shift), shift, 0.0)
    terms = exp(a - shift)
    if b is not None:
        terms = terms * b
    out = log(sum_(terms, axis=reduced, keepdims=True)) + shift
    if not keepdims:
        from ._shape import reshape
        kept = range(a.ndim) if reduced is None else reduced
        out = reshape(out, tuple(d for i, d in enumerate(out.shape) if i not in kept))
    return out


@_plain_for_plain
def softmax(x, axis=-1) -> Var:
    """exp(x) / sum(exp(x)) along ``axis`` (one axis), without overflow."""
    x = _var(x, "softmax")
    return build("softmax", (x,), (axis_("softmax", axis, x.ndim),))


@_plain_for_plain
def log_softmax(x, axis=-1) -> Var:
    """x - logsumexp(x) along ``axis`` (one axis), without overflow."""
    x = _var(x, "log_softmax")
    return build("log_softmax", (x,), (axis_("log_softmax", axis, x.ndim),))


@_plain_for_plain
def sigmoid(x) -> Var:
    """1 / (1 + exp(-x)), without overflow (``expit`` is the same function)."""
    return build("sigmoid", (_var(x, "sigmoid"),))


expit = sigmoid


@_plain_for_plain
def logit(p) -> Var:
    """log(p / (1 - p)), the inverse of ``sigmoid``."""
    from ._ufuncs import log
    p = _var(p, "logit")
    return log(p) - log(1 - p)


@_plain_for_plain
def relu(x) -> Var:
    """max(x, 0); the gradient is 1 where x > 0 and 0 elsewhere."""
    return build("relu", (_var(x, "relu"),))


@_plain_for_plain
def leaky_relu(x, slope: float = 0.01) -> Var:
    """x where x > 0, slope * x elsewhere."""
    return build("leaky_relu", (_var(x, "leaky_relu"),), (float(slope),))


@_plain_for_plain
def softplus(x) -> Var:
    """log(1 + exp(x)), without overflow."""
    return build("softplus", (_var(x, "softplus"),))


@_plain_for_plain
def gelu(x, approximate: str = "none") -> Var:
    """x * Phi(x), Phi the standard normal CDF; with ``approximate='tanh'``,
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x ** 3))) (PyTorch's two forms).

    >>> import numpy, neuronika
    >>> from neuronika.numpy._special import gelu
    >>> gelu(numpy.array([-1.0, 2.0])).round(4)
    array([-0.1587,  1.9545])
    """
    if approximate not in ("none", "tanh"):
        raise located(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}", ValueError)
    return build("gelu", (_var(x, "gelu"),), (approximate,))


@_plain_for_plain
def erf(x) -> Var:
    """The error function (scipy.special.erf): 2 / sqrt(pi) * integral of exp(-t ** 2) from 0 to x.

    >>> import numpy
    >>> from neuronika.numpy._special import erf
    >>> erf(numpy.array([0.0, 1.0])).round(6)
    array([0.      , 0.842701])
    """
    return build("erf", (_var(x, "erf"),))
