"""Checks of the options that layers and losses take: each returns the value (converted)
or raises an error that names the layer or the loss."""
from __future__ import annotations

import math
import numbers

import numpy as np


def positive_int(layer, label, value, minimum=1):
    """``value`` as an int, at least ``minimum``; ValueError naming the layer otherwise."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        kind = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{layer}: {label} must be {kind}, got {value!r}")
    return int(value)


def number(layer, label, value, lo=None, hi=None, *, open_lo=False):
    """``value`` as a finite float in [lo, hi] (or (lo, hi] with ``open_lo``); ValueError otherwise."""
    cls = value.__class__
    if cls is float or cls is int:            # (the common case, without the ABC's isinstance)
        ok = math.isfinite(value)
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if open_lo else value >= lo
    if ok and hi is not None:
        ok = value <= hi
    if not ok:
        if lo is not None and hi is not None:
            rule = f"be in {'(' if open_lo else '['}{lo:g}, {hi:g}]"
        elif lo == 0:
            rule = "be positive" if open_lo else "not be negative"
        elif lo is not None:
            rule = f"be {'>' if open_lo else '>='} {lo:g}"
        else:
            rule = "be a finite number"
        raise ValueError(f"{layer}: {label} must {rule}, got {value!r}")
    return float(value)


def float_dtype(layer, dtype):
    """``dtype`` as a floating-point NumPy dtype (what parameters hold)."""
    try:
        result = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{layer}: {dtype!r} is not a dtype") from None
    if result.kind != "f":
        raise TypeError(f"{layer}: parameters are floating point; got dtype {result} "
                        f"(give float32 or float64)")
    return result


def integer(layer, label, value):
    """``value`` as an int (any int, negative ones included); ValueError otherwise."""
    if value.__class__ is int:
        return value
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{layer}: {label} must be an int, got {value!r}")
    return int(value)
