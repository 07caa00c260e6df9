"""Initialisers, PyTorch's definitions: each fills a parameter (a VarDiff, a Param or
an array) in place and returns it. Reproducible under ``neuronika.manual_seed``.

Fan-in and fan-out multiply the receptive field: a conv weight (out, in, *k) has
fan_in = in * prod(k) and fan_out = out * prod(k).
"""
from __future__ import annotations

import math

import numpy as np

from .. import random as _random

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_", "eye_",
           "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "orthogonal_", "trunc_normal_"]


def _array(tensor):
    array = tensor.data if hasattr(tensor, "data") and not isinstance(tensor, np.ndarray) else tensor
    if not isinstance(array, np.ndarray):
        raise TypeError(f"init: expected a parameter or an array, got {type(tensor).__name__}")
    return array


def _fill(tensor, values):
    array = _array(tensor)
    array[...] = values
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid", "identity")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def fans(shape):
    """(fan_in, fan_out) of a weight of ``shape``."""
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def uniform_(tensor, a: float = 0.0, b: float = 1.0):
    array = _array(tensor)
    return _fill(tensor, _random.generator().uniform(a, b, array.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    array = _array(tensor)
    return _fill(tensor, _random.generator().normal(mean, std, array.shape))


def constant_(tensor, value: float):
    return _fill(tensor, value)


def zeros_(tensor):
    return _fill(tensor, 0.0)


def ones_(tensor):
    return _fill(tensor, 1.0)


def eye_(tensor):
    array = _array(tensor)
    if array.ndim != 2:
        raise ValueError(f"eye_: needs a 2-D parameter, got shape {array.shape}")
    return _fill(tensor, np.eye(*array.shape))


def dirac_(tensor, groups: int = 1):
    """Conv weights (out, in, *k) that pass input channel i to output channel i."""
    array = _array(tensor)
    if array.ndim not in (3, 4, 5):
        raise ValueError(f"dirac_: needs a 3-, 4- or 5-D conv weight, got shape {array.shape}")
    out_per_group = array.shape[0] // groups
    values = np.zeros(array.shape)
    centre = tuple(k // 2 for k in array.shape[2:])
    for g in range(groups):
        for i in range(min(out_per_group, array.shape[1])):
            values[(g * out_per_group + i, i) + centre] = 1.0
    return _fill(tensor, values)


def xavier_uniform_(tensor, gain: float = 1.0):
    fan_in, fan_out = fans(_array(tensor).shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    fan_in, fan_out = fans(_array(tensor).shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor, a, mode, nonlinearity):
    fan_in, fan_out = fans(_array(tensor).shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))


def orthogonal_(tensor, gain: float = 1.0):
    """Rows (or columns) orthonormal, times ``gain``; trailing axes are flattened."""
    array = _array(tensor)
    if array.ndim < 2:
        raise ValueError(f"orthogonal_: needs at least 2 dimensions, got shape {array.shape}")
    rows = array.shape[0]
    cols = array.size // rows
    flat = _random.generator().standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return _fill(tensor, gain * q.reshape(array.shape))


def trunc_normal_(tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0):
    """Normal(mean, std) restricted to [a, b] (redrawn until inside)."""
    array = _array(tensor)
    if not a < b:
        raise ValueError(f"trunc_normal_: needs a < b, got a={a}, b={b}")
    gen = _random.generator()
    values = gen.normal(mean, std, array.shape)
    outside = (values < a) | (values > b)
    while outside.any():
        values[outside] = gen.normal(mean, std, int(outside.sum()))
        outside = (values < a) | (values > b)
    return _fill(tensor, values)
