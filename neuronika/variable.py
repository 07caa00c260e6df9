"""Var, VarDiff and Param: thin handles over graph nodes, and the operators.

Building with these computes shapes and dtypes only; values come from
``forward()`` (or from reading ``.data``), gradients from ``backward()``.
"""
from __future__ import annotations

import contextlib
import math
import numbers

import numpy as np

from . import graph
from .errors import GradientError, ShapeError
from .graph import apply, differentiable_leaves, format_where, leaf, modes, user_line, walk
from .ops import OPS, normalize_axes, normalize_axis
from .transform import run

_ADD, _SUB, _MUL, _DIV, _POWER, _SUM = (OPS[n] for n in ("add", "sub", "mul", "div", "power", "sum"))
_NUMBER = (int, float, bool, np.number, np.bool_)
_COMPARE = {">": OPS["greater"], ">=": OPS["greater_equal"], "<": OPS["less"],
            "<=": OPS["less_equal"], "==": OPS["equal"], "!=": OPS["not_equal"]}


def _located(message, kind=ShapeError):
    """An exception whose message ends with the user's file and line."""
    return kind(f"{message} (at {format_where(user_line())})")


def _wrap(node):
    handle = object.__new__(VarDiff if node.requires_grad else Var)
    handle._node = node
    return handle


def _operand(value, other):
    """The node for an operand of a binary op whose other operand is the node ``other``."""
    if isinstance(value, Var):
        return value._node
    if isinstance(value, _NUMBER):
        if isinstance(value, np.generic):
            value = value.item()
        dtype = np.result_type(other.dtype, value)
        return leaf(dtype.type(value))
    if isinstance(value, np.ndarray):
        return leaf(_checked_array(value, "operand"))
    if isinstance(value, (list, tuple)):
        return leaf(_checked_array(np.asarray(value), "operand"))
    return None


def _checked_array(array, name):
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name}: arrays of dtype {array.dtype} cannot be used as data; "
                        f"convert to a numeric dtype first")
    return array


def _binary(op, a, b):
    node_a = _operand(a, b._node) if not isinstance(a, Var) else a._node
    node_b = _operand(b, a._node) if not isinstance(b, Var) else b._node
    if node_a is None or node_b is None:
        return NotImplemented
    return _wrap(apply(op, (node_a, node_b)))


def _unary(name, x, attrs=()):
    return _wrap(apply(OPS[name], (x._node,), attrs))


def _axes(name, axis, ndim):
    try:
        return normalize_axes(name, axis, ndim)
    except ShapeError as error:
        raise _located(str(error)) from None


def _axis(name, axis, ndim):
    try:
        return normalize_axis(name, axis, ndim)
    except ShapeError as error:
        raise _located(str(error)) from None


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
    __array_ufunc__ = None      # make NumPy defer: ``array + var`` calls Var.__radd__

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
        value = {"bool": bool, "float": float, "int": int}[kind](data.item() if data.size == 1 else data)
        if modes.tracer is not None:
            modes.tracer.observe(self._node, kind, value)
        return value

    def item(self):
        """The value of a one-element variable as a Python number."""
        if modes.tracer is not None:
            return self._observe("int" if self.dtype.kind in "biu" else "float")
        return self.data.item()

    def __float__(self):
        return self._observe("float")

    def __int__(self):
        return self._observe("int")

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
                "a traced variable was converted to a NumPy array (np.asarray, a NumPy function, "
                "...), which would make its value a constant of the trace; use neuronika's "
                "operations on it inside a function given to neuronika.grad")
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
        if node.dtype.kind != "f":
            raise GradientError(f"requires_grad: a leaf of dtype {node.dtype} cannot be "
                                f"differentiable; convert it to float32 or float64 first")
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

    # ---- arithmetic -------------------------------------------------------------------------
    def __add__(self, other):
        return _binary(_ADD, self, other)

    def __radd__(self, other):
        return _binary(_ADD, other, self)

    def __sub__(self, other):
        return _binary(_SUB, self, other)

    def __rsub__(self, other):
        return _binary(_SUB, other, self)

    def __mul__(self, other):
        return _binary(_MUL, self, other)

    def __rmul__(self, other):
        return _binary(_MUL, other, self)

    def __truediv__(self, other):
        return _binary(_DIV, self, other)

    def __rtruediv__(self, other):
        return _binary(_DIV, other, self)

    def __neg__(self):
        return _unary("neg", self)

    # Comparisons are elementwise (a boolean Var, no gradient), as in NumPy; so
    # Var keeps identity hashing explicitly.
    __hash__ = object.__hash__

    def __gt__(self, other):
        return _binary(_COMPARE[">"], self, other)

    def __ge__(self, other):
        return _binary(_COMPARE[">="], self, other)

    def __lt__(self, other):
        return _binary(_COMPARE["<"], self, other)

    def __le__(self, other):
        return _binary(_COMPARE["<="], self, other)

    def __eq__(self, other):
        return _binary(_COMPARE["=="], self, other)

    def __ne__(self, other):
        return _binary(_COMPARE["!="], self, other)

    def __pow__(self, exponent):
        if isinstance(exponent, _NUMBER):
            return self.pow(exponent)
        return _binary(_POWER, self, exponent)

    def __rpow__(self, base):
        return _binary(_POWER, base, self)

    def __and__(self, other):
        return _binary(OPS["logical_and"], self, other)

    __rand__ = __and__

    def astype(self, dtype) -> "Var":
        """The value converted to ``dtype`` (the gradient is converted back)."""
        dtype = np.dtype(dtype)
        if dtype == self.dtype:
            return self
        return _unary("cast", self, (dtype,))

    def pow(self, p) -> "Var":
        """x ** p for a constant exponent p."""
        if not isinstance(p, _NUMBER):
            raise TypeError(f"pow: the exponent must be a number, got {type(p).__name__}; "
                            f"use x ** y for a variable exponent")
        p = p.item() if isinstance(p, np.generic) else p
        return _unary("pow", self, (p,))

    # ---- elementwise ---------------------------------------------------------------------------
    def sqrt(self):
        return _unary("sqrt", self)

    def exp(self):
        return _unary("exp", self)

    def ln(self):
        """Natural logarithm (alias: ``log``)."""
        return _unary("log", self)

    log = ln

    def abs(self):
        return _unary("abs", self)

    def relu(self):
        return _unary("relu", self)

    def leaky_relu(self, slope: float = 0.01):
        return _unary("leaky_relu", self, (float(slope),))

    def softplus(self):
        return _unary("softplus", self)

    def sigmoid(self):
        return _unary("sigmoid", self)

    def tanh(self):
        return _unary("tanh", self)

    def sin(self):
        return _unary("sin", self)

    def cos(self):
        return _unary("cos", self)

    def clamp(self, lo=None, hi=None):
        """Limit to [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""
        if lo is None and hi is None:
            raise _located("clamp: give at least one of lo and hi", ValueError)
        if lo is not None and hi is not None and lo > hi:
            raise _located(f"clamp: lo = {lo} is above hi = {hi}", ValueError)
        return _unary("clamp", self, (None if lo is None else float(lo), None if hi is None else float(hi)))

    def dropout(self, p: float = 0.5):
        """Zero each element with probability p (scaling the rest by 1/(1-p)) while training."""
        if not 0.0 <= p <= 1.0:
            raise _located(f"dropout: p must be in [0, 1], got {p}", ValueError)
        return _unary("dropout", self, (float(p), True))

    # ---- reductions -------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False, dtype=None):
        if dtype is not None:
            return self.astype(dtype).sum(axis, keepdims)
        if axis is None and not keepdims:
            return _wrap(apply(_SUM, (self._node,), (None, False)))
        return _unary("sum", self, (_axes("sum", axis, self.ndim), bool(keepdims)))

    def mean(self, axis=None, keepdims: bool = False):
        return _unary("mean", self, (_axes("mean", axis, self.ndim), bool(keepdims)))

    def max(self, axis=None, keepdims: bool = False):
        return _unary("max", self, (_axes("max", axis, self.ndim), bool(keepdims)))

    def min(self, axis=None, keepdims: bool = False):
        return _unary("min", self, (_axes("min", axis, self.ndim), bool(keepdims)))

    def softmax(self, axis: int = -1):
        return _unary("softmax", self, (_axis("softmax", axis, self.ndim),))

    def log_softmax(self, axis: int = -1):
        return _unary("log_softmax", self, (_axis("log_softmax", axis, self.ndim),))

    # ---- linear algebra ---------------------------------------------------------------------------
    def _product(self, other, name, ranks):
        other_node = _operand(other, self._node)
        if other_node is None:
            raise TypeError(f"{name}: cannot multiply by a {type(other).__name__}")
        if ranks is not None:
            a, b = self.shape, other_node.shape
            if (len(a), len(b)) != ranks:
                raise _located(f"{name}: needs operands of {ranks[0]} and {ranks[1]} dimensions, got "
                               f"shapes {a} and {b}")
            inner = b[0] if len(b) == 1 else b[-2]
            if a[-1] != inner:
                raise _located(f"{name}: shapes {a} and {b} do not fit: the inner dimensions "
                               f"{a[-1]} and {inner} differ")
        return _wrap(apply(OPS["matmul"], (self._node, other_node)))

    def mm(self, other):
        """Matrix product of two 2-D values."""
        return self._product(other, "mm", (2, 2))

    def mv(self, other):
        """Matrix (2-D) times vector (1-D)."""
        return self._product(other, "mv", (2, 1))

    def vm(self, other):
        """Vector (1-D) times matrix (2-D)."""
        return self._product(other, "vm", (1, 2))

    def vv(self, other):
        """Dot product of two vectors; a 0-dim result."""
        return self._product(other, "vv", (1, 1))

    def matmul(self, other):
        """NumPy's ``@``: 1-D operands and batch dimensions broadcast."""
        return self._product(other, "matmul", None)

    __matmul__ = matmul

    def __rmatmul__(self, other):
        other_node = _operand(other, self._node)
        if other_node is None:
            return NotImplemented
        return _wrap(apply(OPS["matmul"], (other_node, self._node)))

    def mm_t(self, other):
        """self @ other.T for 2-D values, without copying other."""
        other_node = _operand(other, self._node)
        return _wrap(apply(OPS["mm_t"], (self._node, other_node)))

    def t(self):
        """All axes reversed (the transpose of a matrix)."""
        return self.transpose()

    @property
    def T(self):
        return self.transpose()

    def transpose(self, *axes):
        """Permute the axes; no arguments reverses them."""
        ndim = self.ndim
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(range(ndim - 1, -1, -1))
        normalised = tuple(_axis("transpose", a, ndim) for a in axes)
        if sorted(normalised) != list(range(ndim)):
            raise _located(f"transpose: {axes} is not a permutation of the {ndim} axes of shape {self.shape}")
        return _unary("transpose", self, (normalised,))

    # ---- shape ----------------------------------------------------------------------------------
    def reshape(self, *shape):
        """Same elements, new shape; one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(int(d) for d in shape)
        size = self.size
        if shape.count(-1) > 1:
            raise _located(f"reshape: only one dimension can be -1, got {shape}")
        if -1 in shape:
            known = math.prod(d for d in shape if d != -1)
            if known == 0 or size % known:
                raise _located(f"reshape: cannot reshape {self.shape} ({size} elements) to {shape}")
            shape = tuple(size // known if d == -1 else d for d in shape)
        if math.prod(shape) != size or any(d < 0 for d in shape):
            raise _located(f"reshape: cannot reshape {self.shape} ({size} elements) to {shape}")
        if shape == self.shape:
            return self
        return _unary("reshape", self, (shape,))

    def flatten(self, start_axis: int = 0):
        """Merge the axes from ``start_axis`` on into one."""
        if self.ndim == 0:
            return self.reshape(1)
        start = _axis("flatten", start_axis, self.ndim)
        return self.reshape(self.shape[:start] + (math.prod(self.shape[start:]),))

    def unsqueeze(self, axis: int):
        """Insert an axis of size 1 at ``axis``."""
        axis = _axis("unsqueeze", axis, self.ndim + 1)
        return self.reshape(self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, axis=None):
        """Remove axes of size 1 (all of them, or the one given, which must have size 1)."""
        if axis is None:
            return self.reshape(tuple(d for d in self.shape if d != 1))
        axis = _axis("squeeze", axis, self.ndim)
        if self.shape[axis] != 1:
            raise _located(f"squeeze: axis {axis} of shape {self.shape} has size {self.shape[axis]}, not 1")
        return self.reshape(self.shape[:axis] + self.shape[axis + 1:])

    def __getitem__(self, key):
        return _index(self, key)

    def chunks(self, chunk_shape):
        """Tiles of ``chunk_shape`` in row-major order; the last tile along an axis may be smaller."""
        chunk_shape = (chunk_shape,) if isinstance(chunk_shape, int) else tuple(chunk_shape)
        if len(chunk_shape) != self.ndim or any(c < 1 for c in chunk_shape):
            raise _located(f"chunks: chunk shape {chunk_shape} does not fit a value of shape {self.shape}")
        starts = [range(0, size, step) for size, step in zip(self.shape, chunk_shape)]
        tiles = []
        for corner in _product_of(starts):
            key = tuple(slice(s, min(s + c, size)) for s, c, size in zip(corner, chunk_shape, self.shape))
            tiles.append(self[key])
        return tiles

    def split(self, sizes, axis: int = 0):
        """Sections along ``axis``: of ``sizes`` each (the last may be smaller), or of the sizes listed."""
        axis = _axis("split", axis, self.ndim)
        length = self.shape[axis]
        if isinstance(sizes, numbers.Integral):
            if sizes < 1:
                raise _located(f"split: section size must be positive, got {sizes}")
            sizes = [min(sizes, length - s) for s in range(0, length, sizes)]
        sizes = list(sizes)
        if sum(sizes) != length or any(s < 0 for s in sizes):
            raise _located(f"split: sections {sizes} do not add up to the size {length} of axis {axis} "
                           f"(shape {self.shape})")
        parts, start = [], 0
        for size in sizes:
            key = (slice(None),) * axis + (slice(start, start + size),)
            parts.append(self[key])
            start += size
        return parts

    def pad(self, widths, mode: str = "constant", value: float = 0.0):
        """Pad with NumPy's widths (an int, a (before, after) pair, or one pair per axis).

        ``mode``: 'constant' (with ``value``), 'reflect', or 'replicate' (the edge value).
        """
        modes_ = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "edge": "edge"}
        if mode not in modes_:
            raise _located(f"pad: mode must be 'constant', 'reflect' or 'replicate', got {mode!r}", ValueError)
        try:
            pairs = np.broadcast_to(np.asarray(widths, dtype=np.int64), (self.ndim, 2))
        except ValueError:
            raise _located(f"pad: widths {widths!r} do not give a (before, after) pair for each of "
                           f"the {self.ndim} axes of shape {self.shape}") from None
        if (pairs < 0).any():
            raise _located(f"pad: widths must not be negative, got {widths!r}")
        pairs = tuple((int(b), int(a)) for b, a in pairs)
        return _unary("pad", self, (pairs, modes_[mode], float(value)))


def _product_of(ranges):
    if not ranges:
        yield ()
        return
    for first in ranges[0]:
        for rest in _product_of(ranges[1:]):
            yield (first,) + rest


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


# ---- indexing --------------------------------------------------------------------------------

def _index(x, key):
    if not isinstance(key, tuple):
        key = (key,)
    parts = []
    index_nodes = {}        # position in parts -> the Var's node, kept as the index input
    for position, part in enumerate(key):
        if isinstance(part, Var):
            if part.dtype.kind in "iu":
                index_nodes[position] = part._node
            elif part.dtype == bool and modes.tracer is not None and modes.tracer.depends(part._node):
                raise _located("index: a boolean mask computed from a traced argument selects a "
                               "data-dependent number of elements; multiply by the mask instead",
                               GradientError)
            part = part.data
        if isinstance(part, slice):
            if not all(v is None or isinstance(v, numbers.Integral) for v in (part.start, part.stop, part.step)):
                raise _located(f"index: slice bounds must be ints, got {part}")
            if part.step == 0:
                raise _located("index: slice step cannot be zero")
        elif part is not None and part is not Ellipsis and not (
                isinstance(part, numbers.Integral) and not isinstance(part, (bool, np.bool_))):
            array = np.asarray(part)
            if array.size == 0 and array.dtype.kind == "f":
                array = array.astype(np.intp)          # x[[]], as in NumPy
            if array.dtype != bool and array.dtype.kind not in "iu":
                raise _located(f"index: an index must be an int, a slice, None, ... or an integer "
                               f"array, got {part!r}")
            if array.dtype == bool and array.ndim == 0:
                raise _located("index: a 0-dim boolean index is not supported")
            part = array
        parts.append(part)
    # Out-of-range indices and masks of the wrong shape are caught here, with the real values.
    try:
        np.broadcast_to(np.empty((), np.int8), x.shape)[tuple(parts)]
    except IndexError as error:
        raise _located(f"index: {error} (indexing a value of shape {x.shape})") from None
    layout, data = [], []
    for position, part in enumerate(parts):
        if position in index_nodes:
            layout.append(("k", len(data)))
            data.append(index_nodes[position])
        elif isinstance(part, slice):
            layout.append(("s",) + tuple(None if v is None else int(v) for v in (part.start, part.stop, part.step)))
        elif part is None:
            layout.append(("n",))
        elif part is Ellipsis:
            layout.append(("e",))
        elif isinstance(part, np.ndarray):
            # A mask selects by position: the same as its nonzero() integer arrays.
            for array in np.nonzero(part) if part.dtype == bool else (part.astype(np.intp, copy=False),):
                layout.append(("k", len(data)))
                data.append(array)
        elif modes.tracer is not None:
            layout.append(("i", int(part)))
        else:
            layout.append(("k", len(data)))
            data.append(np.intp(part))
    nodes = (x._node,) + tuple(d if isinstance(d, graph.Node) else leaf(d) for d in data)
    return _wrap(apply(OPS["index"], nodes, (tuple(layout),)))


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
