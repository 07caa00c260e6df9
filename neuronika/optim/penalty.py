"""Regularisation penalties, passed as ``penalty=`` to any optimizer.

A penalty adds the gradient of a regulariser to the gradient an optimizer reads
(a copy: the stored ``p.grad`` is never modified). Conventions:

* ``L1(lambda_)``   penalises ``lambda_ * sum(|w|)``,      gradient ``lambda_ * sign(w)``;
* ``L2(lambda_)``   penalises ``lambda_ * sum(w ** 2)``,   gradient ``2 * lambda_ * w``;
* ``ElasticNet(l1, l2)`` penalises both,                    gradient ``l1 * sign(w) + 2 * l2 * w``.

Note the factor 2 of ``L2``: an optimizer's ``weight_decay`` (PyTorch's convention)
adds ``weight_decay * w``, the gradient of ``(weight_decay / 2) * sum(w ** 2)``, so
``L2(lambda_)`` acts like ``weight_decay = 2 * lambda_``.
"""
from __future__ import annotations

import numbers

import numpy as np


def _namespace(data):
    """(namespace, data): NumPy's for NumPy arrays and anything else NumPy reads, else the
    array's own (an array-API library's)."""
    if isinstance(data, (np.ndarray, np.generic)) or not hasattr(data, "__array_namespace__"):
        return np, np.asarray(data)
    return data.__array_namespace__(), data


def _astype(xp, value, dtype):
    return value.astype(dtype, copy=False) if xp is np else xp.astype(value, dtype, copy=False)


def _check(name, label, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name}: {label} must be a finite number >= 0, got {value!r}")
    return float(value)


class Penalty:
    """Base class: ``gradient(data)`` returns the penalty's gradient at ``data``."""

    def gradient(self, data: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, data) -> float:
        """The value of the penalty at ``data``."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self):
        return hash((type(self).__name__,) + tuple(sorted(vars(self).items())))


class L1(Penalty):
    """``lambda_ * sum(|w|)``; gradient ``lambda_ * sign(w)``."""

    def __init__(self, lambda_: float):
        self.lambda_ = _check("L1", "lambda_", lambda_)

    def gradient(self, data):
        xp, data = _namespace(data)
        return _astype(xp, self.lambda_ * xp.sign(data), data.dtype)

    def __call__(self, data):
        return self.lambda_ * float(np.abs(np.asarray(data)).sum())

    def __repr__(self):
        return f"L1(lambda_={self.lambda_})"


class L2(Penalty):
    """``lambda_ * sum(w ** 2)``; gradient ``2 * lambda_ * w`` (see the module docstring)."""

    def __init__(self, lambda_: float):
        self.lambda_ = _check("L2", "lambda_", lambda_)

    def gradient(self, data):
        xp, data = _namespace(data)
        return _astype(xp, 2.0 * self.lambda_ * data, data.dtype)

    def __call__(self, data):
        return self.lambda_ * float(np.square(np.asarray(data)).sum())

    def __repr__(self):
        return f"L2(lambda_={self.lambda_})"


class ElasticNet(Penalty):
    """``l1 * sum(|w|) + l2 * sum(w ** 2)``; gradient ``l1 * sign(w) + 2 * l2 * w``."""

    def __init__(self, l1: float, l2: float):
        self.l1 = _check("ElasticNet", "l1", l1)
        self.l2 = _check("ElasticNet", "l2", l2)

    def gradient(self, data):
        xp, data = _namespace(data)
        return _astype(xp, self.l1 * xp.sign(data) + 2.0 * self.l2 * data, data.dtype)

    def __call__(self, data):
        data = np.asarray(data)
        return self.l1 * float(np.abs(data).sum()) + self.l2 * float(np.square(data).sum())

    def __repr__(self):
        return f"ElasticNet(l1={self.l1}, l2={self.l2})"
