"""``import neuronika.numpy as np``: NumPy, differentiable.

The same names, signatures, defaults, broadcasting and dtype promotion as
NumPy 2. Given variables (or inside a function traced by ``neuronika.grad``,
where the arguments are variables) a function builds graph nodes and returns a
variable; given only plain data it runs NumPy's own function and returns
exactly what NumPy returns. Everything here that NumPy has is also reachable
through NumPy itself: ``numpy.tanh(v)`` builds the same graph as
``neuronika.numpy.tanh(v)``.

Constants, dtypes, ``newaxis``, ``random``, ``fft`` and the array constructors
(``zeros``, ``arange``, ``eye``, ...) are NumPy's own. ``array`` and ``asarray``
keep variables in the graph (a list holding variables is stacked), and
``linspace``, ``r_`` and ``c_`` are differentiable in the variables they are given.

>>> import neuronika
>>> import neuronika.numpy as np
>>> def loss(w, x):
...     return np.sum(np.tanh(np.dot(x, w)) ** 2)
>>> w, x = np.ones(3), np.arange(6.0).reshape(2, 3)
>>> neuronika.grad(loss)(w, x).round(6)
array([0.      , 0.019634, 0.039269])

``__all__`` lists the functions implemented on variables; ``NON_DIFFERENTIABLE``
says which of them have no gradient, and why.
"""
from __future__ import annotations

import sys as _sys

import numpy as _numpy

from ._core import NON_DIFFERENTIABLE
from ._complex import *  # noqa: F401,F403
from ._indexing import *  # noqa: F401,F403
from ._products import *  # noqa: F401,F403
from ._reductions import *  # noqa: F401,F403
from ._shape import *  # noqa: F401,F403
from ._ufuncs import *  # noqa: F401,F403
from . import _complex, _indexing, _methods, _products, _reductions, _shape, _ufuncs, linalg

__all__ = sorted(set(_complex.__all__ + _indexing.__all__ + _products.__all__ + _reductions.__all__
                     + _shape.__all__ + _ufuncs.__all__))

_methods.install(_sys.modules[__name__])

# The array-API standard's names of functions above: the catalogue's templates are written
# in them (``ops/__init__.py``), and for second derivatives an adjoint template is evaluated
# with this module as ``xp`` (``neuronika.symbolic``).
astype = _ufuncs.astype
asin, acos, atan, asinh, acosh, atanh, atan2 = arcsin, arccos, arctan, arcsinh, arccosh, arctanh, arctan2  # noqa: F405


def permute_dims(x, /, axes):
    """``transpose(x, axes)`` under the array-API standard's name."""
    return transpose(x, axes)  # noqa: F405


def cumulative_sum(x, /, *, axis=None, dtype=None, include_initial=False):
    """``cumsum(x, axis, dtype)`` under the array-API standard's name (no ``include_initial``)."""
    if include_initial:
        raise NotImplementedError("cumulative_sum: include_initial=True is not supported")
    return cumsum(x, axis, dtype)  # noqa: F405


def __getattr__(name):
    """Everything else is NumPy's: constants, dtypes, constructors, ``random``, and
    functions with no gradient here (which refuse a variable that needs one)."""
    try:
        return getattr(_numpy, name)
    except AttributeError:
        raise AttributeError(f"module 'neuronika.numpy' has no attribute {name!r}") from None


def __dir__():
    return sorted(set(globals()) | set(dir(_numpy)))

