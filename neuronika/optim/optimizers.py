"""Optimizers with PyTorch's update rules and keyword defaults.

Each updates ``p.data`` in place in ``step()``, reading ``self.gradient(p, group)``
(the stored gradient plus the group's ``penalty``, a copy). Parameters whose
gradient was never set (no backward reached them since ``zero_grad()``) are
skipped, as PyTorch skips parameters whose ``.grad`` is None.

``weight_decay`` follows PyTorch: it adds ``weight_decay * w`` to the gradient (the
gradient of ``(weight_decay / 2) * sum(w ** 2)``), except in ``AdamW`` where it is
decoupled (``w *= 1 - lr * weight_decay``). A ``penalty`` (``L1``, ``L2``,
``ElasticNet`` of ``neuronika.optim``) adds its own gradient; ``L2(lambda_)`` adds
``2 * lambda_ * w``. Every option is part of each parameter group, so groups may
override any of them.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from ..ops import pool
from ..transform.run import refuse_inside_trace
from ..graph import TRACER
from ..variable import _pending, _settle, grad_or_none
from .optimizer import Optimizer
from .penalty import Penalty

__all__ = ["SGD", "Adagrad", "Adam", "AdamW", "AMSGrad", "RMSprop", "Adamax"]


# ---- arrays of the parameter's library (NumPy's, or another array-API library's) -------------------

def _xp(p):
    space = p._node.space
    return np if space is None else space.xp


def _zeros(p):
    return backend.zeros(p.shape, p.dtype, p._node.space)


def _copy(p, array):
    space = p._node.space
    return array.copy() if space is None else space.xp.asarray(array, copy=True)


def _large(array):
    return array.__class__ is np.ndarray and array.nbytes >= pool.MIN_BYTES


def _into_pool(ufunc, array, *operands):
    return ufunc(array, *operands, out=pool.pooled_empty(np, array.shape, array.dtype))


def _times(factor, array):
    """``factor * array`` for a Python number ``factor``. A large NumPy result is written into
    an array of ``ops.pool`` (NumPy's multiply, the same bits): a temporary of a layer's size
    made fresh at every step is faulted in again once the C library has given its memory
    back (an MLP's SGD step took 200 µs instead of 40 in such a process); the pool's array is
    reused once nothing references it. ``_squared``, ``_sqrt`` and ``_abs`` alike."""
    if _large(array) and (factor.__class__ is float or factor.__class__ is int):
        return _into_pool(np.multiply, array, factor)
    return factor * array


def _scaled_square(factor, array):
    """``factor * array * array`` in NumPy's order (``(factor * array) * array``), from the pool
    as ``_times``."""
    squared = _times(factor, array)
    squared *= array
    return squared


def _squared(array):
    return _into_pool(np.multiply, array, array) if _large(array) else array * array


def _minus(array, other):
    return _into_pool(np.subtract, array, other) if _large(array) else array - other


def _sqrt(p, array):
    """``sqrt(array)`` in the parameter's library (a large NumPy one into the pool)."""
    return _into_pool(np.sqrt, array) if _large(array) else _xp(p).sqrt(array)


def _abs(p, array):
    return _into_pool(np.absolute, array) if _large(array) else _xp(p).abs(array)


def _maximum_into(p, target, a, b):
    """``target[...] = maximum(a, b)``, in place (NumPy's ``out=``; the standard has none)."""
    if p._node.space is None:
        np.maximum(a, b, out=target)
    else:
        target[...] = p._node.space.xp.maximum(a, b)


# ---- validation ----------------------------------------------------------------------------------

def _number(name, label, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name}: {label} must be a finite number, got {value!r}")
    return value


def _nonneg(name, label, value):
    _number(name, label, value)
    if value < 0:
        raise ValueError(f"{name}: invalid {label} {value!r} (must be >= 0)")


def _betas(name, value):
    try:
        b1, b2 = value
    except (TypeError, ValueError):
        raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {value!r}") from None
    for i, b in enumerate((b1, b2)):
        _number(name, f"beta{i + 1}", b)
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name}: invalid beta{i + 1} {b!r} in betas (must be in [0, 1))")


def _penalty(name, value):
    if value is not None and not (isinstance(value, Penalty) or callable(getattr(value, "gradient", None))):
        raise ValueError(f"{name}: penalty must be None or a penalty (L1, L2, ElasticNet), "
                         f"got {value!r}")


class _Base(Optimizer):
    """Validates every group's options after the base builds the groups."""

    def __init__(self, params, defaults):
        super().__init__(params, defaults)
        for group in self.param_groups:
            self._validate(group)

    def _validate(self, group):
        name = type(self).__name__
        for key in ("lr", "weight_decay", "eps"):
            if key in group:
                _nonneg(name, {"lr": "learning rate"}.get(key, key), group[key])
        if "betas" in group:
            _betas(name, group["betas"])
        _penalty(name, group.get("penalty"))

    def _adds_into_gradient(self, group):
        """Whether ``_update`` adds into the gradient it is given (L2 weight decay)."""
        return group.get("weight_decay", 0) != 0 and not getattr(self, "_decoupled", False)

    def gradient(self, p, group):
        # an update that only reads the gradient reads p's own (no copy); one that adds into
        # it (weight decay, a penalty, Nesterov) gets a copy, so p.grad stays what backward gave
        if group.get("penalty") is None and not self._adds_into_gradient(group):
            return p.grad
        return super().gradient(p, group)

    def step(self) -> None:
        refuse_inside_trace(f"{type(self).__name__}.step()")
        for group in self.param_groups:
            # (decided once per group: per parameter it was a third of a small model's step)
            reads_only = group.get("penalty") is None and not self._adds_into_gradient(group)
            update = self._update
            for p in group["params"]:
                grad = grad_or_none(p)
                if grad is not None:
                    update(p, group, grad if reads_only else self.gradient(p, group))

    def _update(self, p, group, grad):
        raise NotImplementedError


# ---- SGD -----------------------------------------------------------------------------------------

class SGD(_Base):
    """Stochastic gradient descent, optionally with (Nesterov) momentum, as torch.optim.SGD::

        g = grad + weight_decay * w
        if momentum:  b = g (first step) else momentum * b + (1 - dampening) * g
                      g = g + momentum * b if nesterov else b
        w -= lr * g
    """

    def __init__(self, params, lr=None, momentum=0, dampening=0, nesterov=False,
                 weight_decay=0, penalty=None):
        if lr is None:
            raise TypeError("SGD: the learning rate lr is required, e.g. SGD(params, lr=0.01)")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay, penalty=penalty))

    def _validate(self, group):
        super()._validate(group)
        _nonneg("SGD", "momentum", group["momentum"])
        _number("SGD", "dampening", group["dampening"])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: Nesterov momentum requires a momentum > 0 and zero dampening, "
                             f"got momentum={group['momentum']!r}, dampening={group['dampening']!r}")

    def _adds_into_gradient(self, group):
        return super()._adds_into_gradient(group) or group["nesterov"]

    def step(self) -> None:
        # plain SGD (no momentum, decay or penalty): w -= lr * g inline on the leaves' nodes,
        # no call per parameter (they were half of a small model's update)
        groups = self.param_groups
        for group in groups:
            if group["momentum"] != 0 or group["weight_decay"] != 0 or group.get("penalty") is not None:
                return super().step()
        if TRACER.get() is not None:
            refuse_inside_trace(f"{type(self).__name__}.step()")
        for group in groups:
            lr = group["lr"]
            for p in group["params"]:
                node = p._node
                if _pending:
                    _settle(node)
                grad = node.grad
                if grad is not None:
                    data = node.value
                    # (the size is tested here as well: a small model pays no call per parameter)
                    data -= _times(lr, grad) if grad.nbytes >= pool.MIN_BYTES else lr * grad

    def _update(self, p, group, grad):
        if group["weight_decay"] != 0:
            grad += _times(group["weight_decay"], p.data)
        momentum = group["momentum"]
        if momentum != 0:
            state = self.state.setdefault(p, {})
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = _copy(p, grad)
            else:
                buf *= momentum
                buf += _times(1 - group["dampening"], grad)
            if group["nesterov"]:
                grad += _times(momentum, buf)
            else:
                grad = buf
        data = p.data
        data -= _times(group["lr"], grad)


# ---- Adagrad -------------------------------------------------------------------------------------

class Adagrad(_Base):
    """Adagrad, as torch.optim.Adagrad::

        t += 1;  g = grad + weight_decay * w
        clr = lr / (1 + (t - 1) * lr_decay)
        s += g * g                       (s starts at initial_accumulator_value)
        w -= clr * g / (sqrt(s) + eps)
    """

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0,
                 eps=1e-10, penalty=None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value,
                                      eps=eps, penalty=penalty))

    def _validate(self, group):
        super()._validate(group)
        _nonneg("Adagrad", "lr_decay", group["lr_decay"])
        _nonneg("Adagrad", "initial_accumulator_value", group["initial_accumulator_value"])

    def _update(self, p, group, grad):
        state = self.state.setdefault(p, {})
        if not state:
            state["step"] = 0
            state["sum"] = _zeros(p)
            state["sum"] += group["initial_accumulator_value"]
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad += _times(group["weight_decay"], p.data)
        clr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += _squared(grad)
        data = p.data
        step = _times(clr, grad)        # (each temporary updated in place: NumPy's order, its bits)
        denom = _sqrt(p, state["sum"])
        denom += group["eps"]
        step /= denom
        data -= step


# ---- Adam family ---------------------------------------------------------------------------------

class Adam(_Base):
    """Adam, as torch.optim.Adam (``weight_decay`` is added to the gradient, L2 style)::

        t += 1;  g = grad + weight_decay * w
        m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g * g
        (amsgrad: vmax = max(vmax, v), used instead of v)
        w -= lr / (1 - beta1 ** t) * m / (sqrt(v) / sqrt(1 - beta2 ** t) + eps)
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 amsgrad=False, penalty=None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                                      eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      penalty=penalty))

    def _update(self, p, group, grad):
        state = self.state.setdefault(p, {})
        if not state:
            state["step"] = 0
            state["exp_avg"] = _zeros(p)
            state["exp_avg_sq"] = _zeros(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = _zeros(p)
        beta1, beta2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        data = p.data
        state["step"] += 1
        t = state["step"]
        if wd != 0:
            if self._decoupled:
                data *= 1 - lr * wd
            else:
                grad += _times(wd, data)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += _times(1 - beta1, grad)
        v *= beta2
        v += _scaled_square(1 - beta2, grad)
        if group["amsgrad"]:
            vmax = state.get("max_exp_avg_sq")
            if vmax is None:            # amsgrad switched on mid-training
                vmax = state["max_exp_avg_sq"] = _zeros(p)
            _maximum_into(p, vmax, vmax, v)
            v = vmax
        step_size = lr / (1 - beta1 ** t)
        denom = _sqrt(p, v)
        denom /= math.sqrt(1 - beta2 ** t)
        denom += group["eps"]
        step = _times(step_size, m)
        step /= denom
        data -= step


class AdamW(Adam):
    """AdamW, as torch.optim.AdamW: Adam with decoupled weight decay
    (``w *= 1 - lr * weight_decay`` before the Adam update; the gradient is not decayed)."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, penalty=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, penalty=penalty)


class AMSGrad(Adam):
    """Adam with ``amsgrad=True``: the running maximum of the second moment is used."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 penalty=None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=True, penalty=penalty)


# ---- RMSprop -------------------------------------------------------------------------------------

class RMSprop(_Base):
    """RMSprop, as torch.optim.RMSprop::

        g = grad + weight_decay * w
        s = alpha * s + (1 - alpha) * g * g
        centered: a = alpha * a + (1 - alpha) * g;   d = sqrt(s - a * a) + eps
        else:                                         d = sqrt(s) + eps
        momentum > 0: b = momentum * b + g / d;  w -= lr * b
        else:                                    w -= lr * g / d
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0,
                 centered=False, penalty=None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered, penalty=penalty))

    def _validate(self, group):
        super()._validate(group)
        _nonneg("RMSprop", "momentum", group["momentum"])
        _nonneg("RMSprop", "alpha", group["alpha"])

    def _update(self, p, group, grad):
        state = self.state.setdefault(p, {})
        if not state:
            state["step"] = 0
            state["square_avg"] = _zeros(p)
        alpha, momentum = group["alpha"], group["momentum"]
        data = p.data
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad += _times(group["weight_decay"], data)
        s = state["square_avg"]
        s *= alpha
        s += _scaled_square(1 - alpha, grad)
        if group["centered"]:
            a = state.get("grad_avg")
            if a is None:
                a = state["grad_avg"] = _zeros(p)
            a *= alpha
            a += _times(1 - alpha, grad)
            avg = _sqrt(p, _minus(s, _squared(a)))
        else:
            avg = _sqrt(p, s)
        avg += group["eps"]
        if momentum > 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = _zeros(p)
            buf *= momentum
            buf += grad / avg
            data -= _times(group["lr"], buf)
        else:
            step = _times(group["lr"], grad)
            step /= avg
            data -= step


# ---- Adamax --------------------------------------------------------------------------------------

class Adamax(_Base):
    """Adamax, as torch.optim.Adamax::

        t += 1;  g = grad + weight_decay * w
        m = beta1 * m + (1 - beta1) * g;   u = max(beta2 * u, |g| + eps)
        w -= lr / (1 - beta1 ** t) * m / u
    """

    def __init__(self, params, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                 penalty=None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas) if isinstance(betas, list) else betas,
                                      eps=eps, weight_decay=weight_decay, penalty=penalty))

    def _update(self, p, group, grad):
        state = self.state.setdefault(p, {})
        if not state:
            state["step"] = 0
            state["exp_avg"] = _zeros(p)
            state["exp_inf"] = _zeros(p)
        beta1, beta2 = group["betas"]
        data = p.data
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad += _times(group["weight_decay"], data)
        m, u = state["exp_avg"], state["exp_inf"]
        m *= beta1
        m += _times(1 - beta1, grad)
        bound = _abs(p, grad)           # (each temporary updated in place: NumPy's order, its bits)
        bound += group["eps"]
        _maximum_into(p, u, _times(beta2, u), bound)
        step = _times(group["lr"] / (1 - beta1 ** state["step"]), m)
        step /= u
        data -= step
