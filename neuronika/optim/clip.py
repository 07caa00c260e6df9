"""Gradient clipping, in place, with PyTorch's semantics.

Both helpers take Params (``model.parameters()``), differentiable leaves, or a
single one of those; parameters whose gradient was never set are skipped.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..variable import Param, VarDiff, grad_or_none
from .optimizer import _as_param


def _grads(parameters, name):
    if isinstance(parameters, (Param, VarDiff)):
        parameters = [parameters]
    grads = []
    for p in parameters:
        p = _as_param(p, name)
        grad = grad_or_none(p)
        if grad is not None:
            grads.append(grad)
    return grads


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> float:
    """Scale the gradients in place so that their total norm (the ``norm_type``-norm
    of all gradients taken as one vector; ``inf`` for the largest absolute entry) is
    at most ``max_norm``; returns the total norm before clipping, as a float.

    As PyTorch, the scale is ``min(1, max_norm / (total + 1e-6))``.
    """
    name = "clip_grad_norm_"
    if not isinstance(max_norm, numbers.Real) or math.isnan(max_norm) or max_norm < 0:
        raise ValueError(f"{name}: max_norm must be a number >= 0, got {max_norm!r}")
    if isinstance(norm_type, str) and norm_type.lower() in ("inf", "infinity"):
        norm_type = math.inf
    if not isinstance(norm_type, numbers.Real) or math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"{name}: norm_type must be a number > 0 or inf, got {norm_type!r}")
    grads = _grads(parameters, name)
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    # the norm is computed on the host (another library's gradients are copied there)
    host = [g if g.__class__ is np.ndarray else backend.to_numpy(g) for g in grads]
    if math.isinf(norm_type):
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in host)
    else:
        norms = np.array([np.linalg.norm(np.ravel(g).astype(np.float64), ord=norm_type)
                          if g.size else 0.0 for g in host])
        total = float(np.linalg.norm(norms, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{name}: the total norm of order {norm_type} of the gradients is "
                           f"{total}; pass error_if_nonfinite=False to clip anyway")
    coef = min(float(max_norm) / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef
    return total


def clip_grad_value_(parameters, clip_value: float) -> None:
    """Clip every gradient entry in place to ``[-clip_value, clip_value]``."""
    name = "clip_grad_value_"
    if not isinstance(clip_value, numbers.Real) or math.isnan(clip_value) or clip_value < 0:
        raise ValueError(f"{name}: clip_value must be a number >= 0, got {clip_value!r}")
    for g in _grads(parameters, name):
        if g.__class__ is np.ndarray:
            np.clip(g, -clip_value, clip_value, out=g)
        else:                                   # another library's array: its own clip
            g[...] = g.__array_namespace__().clip(g, -clip_value, clip_value)
