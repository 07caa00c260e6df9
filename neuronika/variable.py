"""Var, VarDiff and Param: thin handles over graph nodes.

This module holds what a handle is: its value, its gradient, evaluation and
backward, conversion to Python values. The operators and the NumPy-like
methods are ``neuronika.numpy`` functions, which that package installs on
``Var`` when it is imported (it builds variables, so it sits above this module).

Building with these computes shapes and dtypes only; values come from
``forward()`` (or from reading ``.data``), gradients from ``backward()``.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys

import numpy as np

from .errors import GradientError, ShapeError
from .graph import apply, differentiable_leaves, format_where, leaf, modes, user_line, walk
from .ops import OPS
from .transform import run


_NUMPY_DIR = os.path.dirname(np.__file__) + os.sep


def _located(message, kind=ShapeError):
    """An exception whose message ends with the user's file and line."""
    return kind(f"{message} (at {format_where(user_line())})")


def _wrap(node):
    handle = object.__new__(VarDiff if node.requires_grad else Var)
    handle._node = node
    return handle


class Var:
    """A value in the graph that needs no gradient.

    >>> import neuronika
    >>> x = neuronika.ones((2, 2))
    >>> y = (x + 1) * 3
    >>> y.data
    array([[6., 6.],
           [6., 6.]], dtype=float32)
    """

    __slots__ = ("_node",)

    # ---- value and metadata ---------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The value as a NumPy array; on a leaf, assigning copies the new values in place.

        A node never evaluated is evaluated when read. The values inside a graph are
        not kept after ``forward()`` (only what the backward needs is), so reading an
        intermediate evaluates it again: with dropout behind it, with a new mask.
        """
        node = self._node
        value = node.value
        if value is None:
            value = run.evaluate(node)
        if value.__class__ is not np.ndarray:
            # Generated code may leave a NumPy scalar (x.sum() gives one); users get arrays.
            value = node.value = np.asarray(value)
        return value

    @data.setter
    def data(self, value):
        node = self._node
        if node.op is not None:
            raise GradientError("data: only a leaf's data can be assigned; this variable is "
                                f"the result of {node.op.name}")
        value = np.asarray(value)
        if value.shape != node.shape:
            raise ShapeError(f"data: cannot assign an array of shape {value.shape} to a leaf of "
                             f"shape {node.shape}")
        np.copyto(node.value, value, casting="same_kind")

    @property
    def shape(self) -> tuple:
        return self._node.shape

    @property
    def ndim(self) -> int:
        return len(self._node.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._node.dtype

    @property
    def size(self) -> int:
        return math.prod(self._node.shape)

    @property
    def is_leaf(self) -> bool:
        return self._node.op is None

    def __len__(self):
        if not self._node.shape:
            raise TypeError("len() of a 0-dim variable")
        return self._node.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _observe(self, kind):
        """A Python-level value read from the graph; inside a trace, it is guarded."""
        data = self.data
        value = {"bool": bool, "float": float, "int": int, "complex": complex}[kind](
            data.item() if data.size == 1 else data)
        if modes.tracer is not None:
            modes.tracer.observe(self._node, kind, value)
        return value

    def item(self):
        """The value of a one-element variable as a Python number."""
        if modes.tracer is not None:
            kind = self.dtype.kind
            return self._observe("int" if kind in "biu" else "complex" if kind == "c" else "float")
        return self.data.item()

    def __float__(self):
        return self._observe("float")

    def __int__(self):
        return self._observe("int")

    def __complex__(self):
        return self._observe("complex")

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer variables can be used as an index, not {self.dtype}")
        return self._observe("int")

    def __bool__(self):
        return self._observe("bool")

    def __array__(self, dtype=None, copy=None):
        tracer = modes.tracer
        if tracer is not None and tracer.depends(self._node):
            raise GradientError(
                "a traced variable was converted to a NumPy array (np.asarray, np.int64(v), a NumPy "
                "function, ...), which would make its value a constant of the trace; use neuronika's "
                "operations on it inside a function given to neuronika.grad (to change the dtype, "
                "v.astype(np.int64))")
        if self._node.requires_grad:
            caller = sys._getframe(1).f_code
            if caller.co_filename.startswith(_NUMPY_DIR):
                # NumPy's own Python code (numpy.r_, ...) converting the variable: the user did
                # not ask to leave the graph, and the gradient would be lost without a word.
                raise TypeError(
                    f"NumPy's {caller.co_name} (in {os.path.basename(caller.co_filename)}) converted "
                    f"a variable that needs a gradient to an array, which would lose the gradient; use "
                    f"the neuronika.numpy function of the same name, or numpy.asarray(v) to leave the "
                    f"graph on purpose (at {format_where(user_line())})")
        data = self.data
        return data if dtype is None else data.astype(dtype)

    def __repr__(self):
        name = type(self).__name__
        body = np.array2string(self.data, separator=", ", prefix=name + "(")
        dtype = "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        return f"{name}({body}{dtype})"

    # ---- evaluation ---------------------------------------------------------------------
    def forward(self) -> None:
        """Evaluate this node and everything behind it from the current leaf values."""
        run.evaluate(self._node)

    def backward(self, seed=1.0) -> None:
        """Refused: a Var needs no gradient (the error says how to get a VarDiff)."""
        run.backpropagate(self._node, seed)

    def requires_grad(self) -> "VarDiff":
        """A differentiable leaf over the same data.

        >>> import neuronika
        >>> w = neuronika.ones(3).requires_grad()
        >>> type(w).__name__
        'VarDiff'
        """
        node = self._node
        if node.op is not None:
            raise GradientError(f"requires_grad: only a leaf can be made differentiable; this "
                                f"variable is the result of {node.op.name} (use detach() first "
                                f"to get a leaf over its value)")
        if node.dtype.kind not in "fc":
            raise GradientError(f"requires_grad: a leaf of dtype {node.dtype} cannot be "
                                f"differentiable; convert it to a float (or complex) dtype first")
        return _wrap(leaf(node.value, requires_grad=True))

    def detach(self) -> "Var":
        """A non-differentiable leaf over the same value (the value is computed if needed)."""
        return _wrap(leaf(self.data))

    def source(self) -> str:
        """The generated forward (and backward) Python that evaluates this graph."""
        return run.source(self._node)

    def train(self) -> None:
        """Set every dropout behind this variable to training status (masks are drawn)."""
        _set_training(self._node, True)

    def eval(self) -> None:
        """Set every dropout behind this variable to evaluation status (the identity)."""
        _set_training(self._node, False)


class VarDiff(Var):
    """A value in the graph that needs a gradient: a differentiable leaf, or
    anything computed from one.

    >>> import neuronika
    >>> w = neuronika.full((2,), 3.0).requires_grad()
    >>> loss = (w * w).sum()
    >>> loss.backward()
    >>> w.grad
    array([6., 6.], dtype=float32)
    """

    __slots__ = ()

    @property
    def grad(self) -> np.ndarray:
        """The gradient (of the node's shape); zeros until a backward reaches it."""
        node = self._node
        if node.op is not None and not node.retain:
            raise GradientError(f"grad: this variable is the result of {node.op.name}, not a leaf; "
                                f"its gradient is not kept unless you call .retain_grad() before "
                                f"backward()")
        if node.grad is None:
            node.grad = np.zeros(node.shape, node.dtype)
        return node.grad

    @grad.setter
    def grad(self, value):
        _set_grad(self._node, value)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (reads as zeros until the next backward)."""
        self._node.grad = None

    def retain_grad(self) -> None:
        """Keep this non-leaf's gradient on each backward (replaced, not accumulated)."""
        node = self._node
        if node.op is not None and not node.retain:
            node.retain = True
            node.rekey()
            node.saved = None

    def backward(self, seed=1.0) -> None:
        """Add the gradient of ``seed . self`` into every differentiable leaf behind it.

        ``seed`` is a number (broadcast over the value) or an array of its shape.
        Evaluates first if this variable was never evaluated.
        """
        run.backpropagate(self._node, seed)

    def parameters(self) -> list:
        """The differentiable leaves behind this variable, each once, in creation order."""
        return [Param(node) for node in differentiable_leaves(self._node)]


def _set_grad(node, value):
    value = np.array(value, dtype=node.dtype)
    if value.shape != node.shape:
        raise ShapeError(f"grad: cannot set a gradient of shape {value.shape} on a value of "
                         f"shape {node.shape}")
    node.grad = value


class Param:
    """A differentiable leaf as an optimizer sees it: ``.data`` and ``.grad`` are the
    live arrays, to be updated in place.

    >>> import neuronika
    >>> w = neuronika.ones(2).requires_grad()
    >>> (w * 2).sum().backward()
    >>> for p in (w * 2).sum().parameters():
    ...     p.data -= 0.1 * p.grad
    >>> w.data
    array([0.8, 0.8], dtype=float32)
    """

    __slots__ = ("_node",)

    def __init__(self, node):
        self._node = node

    @property
    def data(self) -> np.ndarray:
        return self._node.value

    @data.setter
    def data(self, value):
        np.copyto(self._node.value, value, casting="same_kind")

    @property
    def grad(self) -> np.ndarray:
        node = self._node
        if node.grad is None:
            node.grad = np.zeros(node.shape, node.dtype)
        return node.grad

    @grad.setter
    def grad(self, value):
        _set_grad(self._node, value)

    @property
    def shape(self):
        return self._node.shape

    @property
    def dtype(self):
        return self._node.dtype

    @property
    def var(self) -> VarDiff:
        """The leaf as a VarDiff, to build graphs with."""
        return _wrap(self._node)

    def zero_grad(self) -> None:
        self._node.grad = None

    def __eq__(self, other):
        return isinstance(other, Param) and other._node is self._node

    def __hash__(self):
        return id(self._node)

    def __repr__(self):
        return f"Param(shape={self.shape}, dtype={self.dtype})"


def stop_gradient(x) -> Var:
    """The value of ``x`` as a Var: no gradient flows back through it.

    >>> import neuronika
    >>> w = neuronika.full(2, 3.0).requires_grad()
    >>> loss = (w * neuronika.stop_gradient(w)).sum()
    >>> loss.backward()
    >>> w.grad
    array([3., 3.], dtype=float32)
    """
    if not isinstance(x, Var):
        return _wrap(leaf(np.asarray(x)))
    return _wrap(apply(OPS["stop_gradient"], (x._node,)))


# ---- modes ----------------------------------------------------------------------------------------

def _set_training(root, training):
    for node in walk(root):
        if node.op is not None and node.op.name == "dropout" and node.attrs[1] != training:
            node.attrs = (node.attrs[0], training)
            node.rekey()


class no_grad(contextlib.ContextDecorator):
    """Inside, operations build only Vars: nothing is recorded for a backward.

    >>> import neuronika
    >>> w = neuronika.ones(2).requires_grad()
    >>> with neuronika.no_grad():
    ...     y = w * 2
    >>> type(y).__name__
    'Var'
    """

    def __enter__(self):
        self._previous = modes.grad_enabled
        modes.grad_enabled = False
        return self

    def __exit__(self, *exc):
        modes.grad_enabled = self._previous
        return False


class detect_anomaly(contextlib.ContextDecorator):
    """Inside, generated code checks every op's output (and gradient) for NaN and Inf
    and raises ``AnomalyError`` naming the first op that made one. Programs compiled
    this way are separate cache entries, so normal runs pay nothing."""

    def __enter__(self):
        self._previous = modes.anomaly
        modes.anomaly = True
        return self

    def __exit__(self, *exc):
        modes.anomaly = self._previous
        return False


__all__ = ["Var", "VarDiff", "Param", "no_grad", "detect_anomaly", "stop_gradient"]
