"""``neuronika.numpy.linalg``: NumPy's linear algebra on variables, batched over
leading axes as in NumPy 2. Functions not implemented here are NumPy's own (they
refuse a variable that needs a gradient)."""
from __future__ import annotations

import numpy as _numpy

__all__ = []


def __getattr__(name):
    try:
        return getattr(_numpy.linalg, name)
    except AttributeError:
        raise AttributeError(f"module 'neuronika.numpy.linalg' has no attribute {name!r}") from None
