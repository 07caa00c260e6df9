"""Leaf constructors. Every one returns a non-differentiable leaf ``Var``;
``.requires_grad()`` turns it into a differentiable one. ``shape`` may be an int
or a tuple; ``dtype`` defaults to float32."""
from __future__ import annotations

import functools

import numpy as np

from . import backend
from . import random as _random
from .errors import ShapeError
from .graph import apply, leaf, modes
from .numpy._shape import concatenate as _concatenate, stack as _stack
from .ops import OPS
from .ops.kernels import checked_cast
from .variable import Var, _wrap

DEFAULT_DTYPE = np.float32


def _shape(shape, name):
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(not isinstance(d, (int, np.integer)) or d < 0 for d in shape):
        raise ShapeError(f"{name}: a shape is non-negative ints, got {shape}")
    return tuple(int(d) for d in shape)


def _var(array):
    return _wrap(leaf(array))


def _named(fn):
    """A constructor whose errors name it: NumPy's own messages (a negative size, a float
    count, an unknown dtype) get the constructor's name in front."""
    name = fn.__name__

    @functools.wraps(fn)
    def constructor(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (OverflowError, TypeError, ValueError) as error:
            message = str(error)
            if message.startswith(f"{name}:"):
                raise
            kind = next(k for k in (ShapeError, OverflowError, TypeError, ValueError) if isinstance(error, k))
            raise kind(f"{name}: {message}") from None
    return constructor


@_named
def zeros(shape, dtype=DEFAULT_DTYPE) -> Var:
    """A leaf of zeros.

    >>> import neuronika
    >>> neuronika.zeros((2, 3)).shape
    (2, 3)
    """
    return _var(np.zeros(_shape(shape, "zeros"), dtype))


@_named
def ones(shape, dtype=DEFAULT_DTYPE) -> Var:
    """A leaf of ones."""
    return _var(np.ones(_shape(shape, "ones"), dtype))


@_named
def full(shape, value, dtype=DEFAULT_DTYPE) -> Var:
    """A leaf filled with ``value``.

    >>> import neuronika
    >>> neuronika.full(2, 7.0).data
    array([7., 7.], dtype=float32)
    """
    filler = checked_cast(np.asarray(value), np.dtype(dtype), "full")   # 1e39 in float32 raises
    return _var(np.full(_shape(shape, "full"), filler, dtype))


@_named
def rand(shape, dtype=DEFAULT_DTYPE) -> Var:
    """Uniform on [0, 1); reproducible under ``manual_seed``. Inside a traced function
    (``jit``, ``grad``, ...) a ``random`` op: new numbers on every call, not the trace's."""
    if modes.tracer is not None:
        return _drawn("uniform", _shape(shape, "rand"), dtype)
    return _var(_random.generator().random(_shape(shape, "rand")).astype(dtype))


@_named
def randn(shape, dtype=DEFAULT_DTYPE) -> Var:
    """Standard normal; reproducible under ``manual_seed``. Inside a traced function, new
    numbers on every call (as ``rand``)."""
    if modes.tracer is not None:
        return _drawn("normal", _shape(shape, "randn"), dtype)
    return _var(_random.generator().standard_normal(_shape(shape, "randn")).astype(dtype))


def _drawn(kind, shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"a floating-point dtype is needed, got {dtype}")
    return _wrap(apply(OPS["random"], (leaf(np.zeros((), dtype)),), (kind, shape)))


@_named
def eye(n: int, dtype=DEFAULT_DTYPE) -> Var:
    """The n x n identity."""
    return _var(np.eye(n, dtype=dtype))


@_named
def from_ndarray(array, dtype=None) -> Var:
    """A leaf over ``array`` (shared, not copied). Float and complex arrays keep their dtype,
    integer arrays stay integer data (labels, indices); ``dtype`` converts.

    >>> import numpy as np, neuronika
    >>> neuronika.from_ndarray(np.arange(3.0)).dtype
    dtype('float64')

    An array of another array-API library (a CuPy array on a GPU, array-api-strict) makes a
    leaf that lives there: its graphs run with that library (``Var.device``).

    Given a variable, returns it (a traced argument stays traced).
    """
    if isinstance(array, Var):
        if dtype is None or np.dtype(dtype) == array.dtype:
            return array
        raise TypeError(f"from_ndarray: cannot convert a variable of dtype {array.dtype} to "
                        f"{np.dtype(dtype)}; convert the array before making it a variable")
    if _other_library(array):
        return _foreign(array, dtype)
    array = np.asarray(array)
    if array.dtype.kind not in "biufc":
        raise TypeError(f"from_ndarray: arrays of dtype {array.dtype} cannot be data; "
                        f"give numbers (float, complex or integer)")
    if dtype is not None:
        array = checked_cast(array, dtype, "from_ndarray")   # 1e39 -> float32 raises, never inf
    return _var(array)


def _other_library(array):
    """Whether ``array`` is an array of another array-API library than NumPy."""
    cls = type(array)
    return (not isinstance(array, (np.ndarray, np.generic, list, tuple, int, float, complex))
            and (hasattr(cls, "__array_namespace__") or cls.__module__.split(".")[0] == "cupy"))


def _foreign(array, dtype):
    space = backend.space_of(array)
    kind = space.numpy_dtype(array.dtype).kind
    if kind not in "biufc":
        raise TypeError(f"from_ndarray: arrays of dtype {array.dtype} cannot be data; give numbers")
    if dtype is not None and np.dtype(dtype) != space.numpy_dtype(array.dtype):
        array = space.xp.astype(array, space.dtype(dtype))
    return _var(array)


@_named
def arange(start, stop=None, step=1, dtype=DEFAULT_DTYPE) -> Var:
    """start, start + step, ... below stop (stop excluded); ``arange(n)`` counts from 0."""
    if stop is None:
        start, stop = 0, start
    if step == 0:
        raise ValueError("arange: step cannot be zero")
    return _var(np.arange(start, stop, step, dtype=dtype))


@_named
def linspace(start, stop, n: int, dtype=DEFAULT_DTYPE) -> Var:
    """n evenly spaced values from start to stop, both included."""
    return _var(np.linspace(start, stop, n, dtype=dtype))


@_named
def logspace(start, stop, n: int, base: float = 10.0, dtype=DEFAULT_DTYPE) -> Var:
    """base ** linspace(start, stop, n)."""
    return _var(np.logspace(start, stop, n, base=base, dtype=dtype))


@_named
def geomspace(start, stop, n: int, dtype=DEFAULT_DTYPE) -> Var:
    """n values from start to stop in geometric progression; the ends must be nonzero and of one sign."""
    if start == 0 or stop == 0 or (start < 0) != (stop < 0):
        raise ValueError(f"geomspace: the ends must be nonzero and of the same sign, got "
                         f"start={start} and stop={stop}")
    return _var(np.geomspace(start, stop, n, dtype=dtype))


@_named
def concatenate(values, axis: int = 0) -> Var:
    """Join along an existing axis; any mix of Var, VarDiff and arrays (always a variable).

    >>> import neuronika
    >>> neuronika.concatenate([neuronika.ones(2), neuronika.zeros(3)]).shape
    (5,)
    """
    return _concatenate.implementation(values, axis)


@_named
def stack(values, axis: int = 0) -> Var:
    """Join along a new axis; any mix of Var, VarDiff and arrays (always a variable)."""
    return _stack.implementation(values, axis)
