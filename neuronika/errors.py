"""Exceptions raised by neuronika. Each message names the op, the shapes or
values involved and, where a graph was being built, the user's file and line."""
import numpy as _numpy


class ShapeError(ValueError):
    """Operand shapes (or ranks, or axes) do not fit the operation."""


class GradientError(RuntimeError):
    """A gradient was asked for where none can be computed."""


class AnomalyError(FloatingPointError):
    """Raised under ``detect_anomaly()`` when an op produces NaN or Inf."""


class ArgnumsError(GradientError, TypeError):
    """An argument that ``argnums`` selects cannot be differentiated: an int, a bool, an
    integer array (JAX's rule: only floating-point and complex values have gradients)."""


class IndexingError(ShapeError, IndexError):
    """An index that does not fit the value it indexes (out of range, too many indices, a
    mask of the wrong shape): a ShapeError, and an IndexError as NumPy raises."""


class LinAlgShapeError(ShapeError, _numpy.linalg.LinAlgError):
    """Operands of the wrong shape for a linear-algebra function: a ShapeError that is also
    NumPy's LinAlgError (which NumPy raises there)."""


class BatchingError(ValueError):
    """``vmap`` cannot batch what the function does: it reads the value of a batched variable
    (a Python ``if`` on it, ``float(v)``), or the batched arguments do not fit ``in_axes``."""


class RetraceWarning(UserWarning):
    """A traced function (``neuronika.grad``, ...) was traced again more often than the
    limit (``neuronika.transform.set_retrace_warning``); the message names the argument or
    the value read that changed. Issued once per function."""
