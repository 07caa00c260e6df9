"""The methods and operators of variables, installed on ``Var`` by ``neuronika.numpy``.

Every one calls a ``neuronika.numpy`` function (or one of ``neuronika``'s free
functions), so a method, an operator, a ``neuronika.numpy`` call and NumPy's own
function on a variable all build the same graph: there is one implementation.

- NumPy's ndarray methods and properties, with NumPy's signatures:
  ``v.sum(axis=0)``, ``v.reshape(2, 3)``, ``v.T``, ``v.astype(np.float64)``, ...
- the operators, ``+ - * / // % ** @``, unary ``- + abs``, comparisons (boolean,
  no gradient) and ``& | ^ ~`` on booleans;
- the Rust crate's names: ``mm mv vm vv mm_t t ln pow clamp relu leaky_relu
  softplus sigmoid tanh ... unsqueeze chunks split pad dropout``, and ``gelu erf``.

>>> import numpy, neuronika
>>> v = neuronika.from_ndarray(numpy.array([[1.0, 2.0], [3.0, 4.0]]))
>>> v.mean(axis=0), v.T.shape, format(v.sum(), ".1f")
(Var([2., 3.], dtype=float64), (2, 2), '10.0')
"""
from __future__ import annotations

import numbers

import numpy as np

from .. import backend
from ..graph import apply
from ..variable import Var, _wrap
from . import _core, _dispatch, _indexing, _products, _reductions, _shape, _special, _ufuncs
from ._core import located

_MATMUL = _core.OPS["matmul"]
_OPERANDS = (Var, np.ndarray, np.generic, int, float, complex, bool, list, tuple)

#: ndarray methods that are the neuronika.numpy function of the same name, ``self`` first.
NUMPY_METHODS = (
    "prod", "std", "var", "argmax", "argmin", "cumsum", "cumprod",
    "clip", "round", "ravel", "swapaxes", "repeat", "conj", "conjugate", "all", "any", "nonzero",
    "argsort", "argpartition", "trace", "diagonal", "take", "dot", "squeeze", "ptp",
)


def _namespace():
    import neuronika.numpy
    return neuronika.numpy


def _forward(name, fn):
    fn = getattr(fn, "implementation", fn)

    def method(self, *args, **kwargs):
        return fn(self, *args, **kwargs)
    method.__name__ = name
    method.__doc__ = f"``neuronika.numpy.{name}(self, ...)``, as NumPy's ``ndarray.{name}``."
    return method


def _impl(fn):
    """The implementation behind a public neuronika.numpy function (no check for variables:
    a method's ``self`` is one)."""
    return getattr(fn, "implementation", fn)


def _operator(fn, name, reverse=False):
    fn = _impl(fn)
    if reverse:
        def method(self, other):
            if not isinstance(other, _OPERANDS) and not backend.foreign(other):
                return NotImplemented
            return fn(other, self)
    else:
        def method(self, other):
            if not isinstance(other, _OPERANDS) and not backend.foreign(other):
                return NotImplemented
            return fn(self, other)
    method.__name__ = name
    return method


class Methods:
    """The methods installed on ``Var`` (see the module docstring)."""

    # ---- operators ---------------------------------------------------------------------------
    __add__ = _operator(_ufuncs.add, "__add__")
    __radd__ = _operator(_ufuncs.add, "__radd__", reverse=True)
    __sub__ = _operator(_ufuncs.subtract, "__sub__")
    __rsub__ = _operator(_ufuncs.subtract, "__rsub__", reverse=True)
    __mul__ = _operator(_ufuncs.multiply, "__mul__")
    __rmul__ = _operator(_ufuncs.multiply, "__rmul__", reverse=True)
    __truediv__ = _operator(_ufuncs.divide, "__truediv__")
    __rtruediv__ = _operator(_ufuncs.divide, "__rtruediv__", reverse=True)
    __matmul__ = _operator(_products.matmul, "__matmul__")
    __rmatmul__ = _operator(_products.matmul, "__rmatmul__", reverse=True)
    __pow__ = _operator(_ufuncs.power, "__pow__")
    __rpow__ = _operator(_ufuncs.power, "__rpow__", reverse=True)
    __gt__ = _operator(_ufuncs.greater, "__gt__")
    __ge__ = _operator(_ufuncs.greater_equal, "__ge__")
    __lt__ = _operator(_ufuncs.less, "__lt__")
    __le__ = _operator(_ufuncs.less_equal, "__le__")
    __eq__ = _operator(_ufuncs.equal, "__eq__")
    __ne__ = _operator(_ufuncs.not_equal, "__ne__")
    __and__ = _operator(_ufuncs.bitwise_and, "__and__")
    __rand__ = _operator(_ufuncs.bitwise_and, "__rand__", reverse=True)
    __floordiv__ = _operator(_ufuncs.floor_divide, "__floordiv__")
    __rfloordiv__ = _operator(_ufuncs.floor_divide, "__rfloordiv__", reverse=True)
    __mod__ = _operator(_ufuncs.remainder, "__mod__")
    __rmod__ = _operator(_ufuncs.remainder, "__rmod__", reverse=True)
    __divmod__ = _operator(_ufuncs.divmod, "__divmod__")
    __rdivmod__ = _operator(_ufuncs.divmod, "__rdivmod__", reverse=True)
    __or__ = _operator(_ufuncs.bitwise_or, "__or__")
    __ror__ = _operator(_ufuncs.bitwise_or, "__ror__", reverse=True)
    __xor__ = _operator(_ufuncs.bitwise_xor, "__xor__")
    __rxor__ = _operator(_ufuncs.bitwise_xor, "__rxor__", reverse=True)

    def __invert__(self):
        return _impl(_ufuncs.invert)(self)

    def __round__(self, ndigits=None):
        """``round(v)`` / ``round(v, n)``: ``numpy.round`` (a variable, not an int)."""
        return _impl(_ufuncs.round)(self, 0 if ndigits is None else ndigits)

    def __neg__(self):
        return _impl(_ufuncs.negative)(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return _impl(_ufuncs.absolute)(self)

    def __getitem__(self, key):
        return _indexing.getitem(self, key)

    def __setitem__(self, key, value):
        raise located("variables are immutable: v[idx] = u cannot change one; write "
                      "v = v.at[idx].set(u), which returns the updated value (as in JAX)", TypeError)

    def __format__(self, spec):
        if not spec:
            return str(self)
        if self.size != 1:
            raise TypeError(f"unsupported format string {spec!r} for a variable of shape {self.shape}; "
                            f"format a one-element variable, or v.data")
        return format(self.item(), spec)

    # ---- NumPy's methods with their own signatures -----------------------------------------------
    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        """The value converted to ``dtype`` (the gradient is converted back)."""
        return _ufuncs.astype(self, dtype)

    def reshape(self, *shape, order="C", copy=None):
        """Same elements, new shape (``v.reshape(2, 3)`` or ``v.reshape((2, 3))``); one dimension may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _shape.reshape(self, shape, order)

    def transpose(self, *axes):
        """Permute the axes (``v.transpose(1, 0)`` or ``v.transpose((1, 0))``); no arguments reverses them."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return _shape.transpose(self, axes or None)

    @property
    def T(self):
        """The axes reversed."""
        return _shape.transpose(self)

    @property
    def at(self):
        """JAX's index update without mutation: ``v.at[idx].set(u)``, ``.add(u)``,
        ``.multiply(u)``, ``.min(u)``, ``.max(u)`` return the updated value."""
        return _indexing.At(self)

    @property
    def real(self):
        """The real part (the value itself for a real variable)."""
        return _namespace().real(self)

    @property
    def imag(self):
        """The imaginary part (zeros for a real variable)."""
        return _namespace().imag(self)

    def copy(self, order="C"):
        """The same value (a variable is immutable, so no copy is needed)."""
        return self

    def flatten(self, start_axis: int = 0):
        """The elements as a 1-D value (NumPy's ``flatten()``); ``flatten(k)`` merges the
        axes from ``k`` on, as the crate's ``flatten`` does."""
        if isinstance(start_axis, str):           # NumPy's order argument
            return _shape.ravel(self, start_axis)
        if self.ndim == 0:
            return _shape.reshape(self, (1,))
        start = _core.axis_("flatten", start_axis, self.ndim)
        return _shape.reshape(self, self.shape[:start] + (-1,))

    def sort(self, axis=-1, kind=None, order=None):
        raise located("v.sort() sorts an ndarray in place, and variables are immutable; use "
                      "neuronika.numpy.sort(v) (numpy.sort(v)), which returns the sorted value", TypeError)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        """``numpy.sum`` as a method (``v.sum(0, True)`` reads as axis and keepdims)."""
        if dtype is not None:
            dtype, keepdims = _legacy_keepdims(dtype, keepdims)
        return _sum(self, axis, dtype, out, keepdims, **kwargs)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        """``numpy.mean`` as a method (``v.mean(0, True)`` reads as axis and keepdims)."""
        dtype, keepdims = _legacy_keepdims(dtype, keepdims)
        return _impl(_reductions.mean)(self, axis, dtype, out, keepdims, **kwargs)

    def max(self, axis=None, out=None, keepdims=False, **kwargs):
        """``numpy.max`` as a method (``v.max(0, True)`` reads as axis and keepdims)."""
        out, keepdims = _legacy_keepdims(out, keepdims)
        return _impl(_reductions.max)(self, axis, out, keepdims, **kwargs)

    def min(self, axis=None, out=None, keepdims=False, **kwargs):
        """``numpy.min`` as a method (``v.min(0, True)`` reads as axis and keepdims)."""
        out, keepdims = _legacy_keepdims(out, keepdims)
        return _impl(_reductions.min)(self, axis, out, keepdims, **kwargs)

    def tolist(self):
        """The value as nested Python lists (leaving the graph)."""
        return np.asarray(self).tolist()

    # ---- the crate's names -------------------------------------------------------------------------
    def mm(self, other):
        """Matrix product of two 2-D values."""
        return _product(self, other, "mm", (2, 2))

    def mv(self, other):
        """Matrix (2-D) times vector (1-D)."""
        return _product(self, other, "mv", (2, 1))

    def vm(self, other):
        """Vector (1-D) times matrix (2-D)."""
        return _product(self, other, "vm", (1, 2))

    def vv(self, other):
        """Dot product of two vectors; a 0-dim result."""
        return _product(self, other, "vv", (1, 1))

    def matmul(self, other):
        """NumPy's ``@``: 1-D operands and batch dimensions broadcast."""
        return _products.matmul(self, other)

    def mm_t(self, other):
        """self @ other.T for 2-D values, without copying other."""
        return _core.build("mm_t", (self, _core.node_of(other, self._node, "mm_t")))

    def t(self):
        """All axes reversed (the transpose of a matrix)."""
        return _shape.transpose(self)

    def sqrt(self):
        return _impl(_ufuncs.sqrt)(self)

    def exp(self):
        return _impl(_ufuncs.exp)(self)

    def ln(self):
        """Natural logarithm (alias: ``log``)."""
        return _impl(_ufuncs.log)(self)

    log = ln

    def abs(self):
        return _impl(_ufuncs.absolute)(self)

    def tanh(self):
        return _impl(_ufuncs.tanh)(self)

    def sin(self):
        return _impl(_ufuncs.sin)(self)

    def cos(self):
        return _impl(_ufuncs.cos)(self)

    def relu(self):
        return _impl(_special.relu)(self)

    def leaky_relu(self, slope: float = 0.01):
        return _impl(_special.leaky_relu)(self, slope)

    def softplus(self):
        return _impl(_special.softplus)(self)

    def gelu(self, approximate: str = "none"):
        """x * Phi(x), or with ``approximate='tanh'`` PyTorch's tanh form (``neuronika.gelu``)."""
        return _impl(_special.gelu)(self, approximate)

    def erf(self):
        """The error function (``neuronika.erf``)."""
        return _impl(_special.erf)(self)

    def sigmoid(self):
        return _impl(_special.sigmoid)(self)

    def softmax(self, axis: int = -1):
        return _impl(_special.softmax)(self, axis)

    def log_softmax(self, axis: int = -1):
        return _impl(_special.log_softmax)(self, axis)

    def logsumexp(self, axis=None, keepdims=False):
        return _impl(_special.logsumexp)(self, axis, keepdims=keepdims)

    def pow(self, p):
        """x ** p for a constant exponent p."""
        if not isinstance(p, (int, float, np.integer, np.floating)) or isinstance(p, bool):
            raise TypeError(f"pow: the exponent must be a number, got {type(p).__name__}; "
                            f"use x ** y for a variable exponent")
        return _core.build("pow", (self,), (p.item() if isinstance(p, np.generic) else p,))

    def clamp(self, lo=None, hi=None):
        """Limit to [lo, hi] (either may be None); the gradient passes where lo <= x <= hi."""
        if lo is None and hi is None:
            raise located("clamp: give at least one of lo and hi", ValueError)
        if lo is not None and hi is not None and lo > hi:
            raise located(f"clamp: lo = {lo} is above hi = {hi}", ValueError)
        return _core.build("clamp", (self,), (None if lo is None else float(lo),
                                              None if hi is None else float(hi)))

    def dropout(self, p: float = 0.5):
        """Zero each element with probability p (scaling the rest by 1/(1-p)) while training."""
        if not 0.0 <= p <= 1.0:
            raise located(f"dropout: p must be in [0, 1], got {p}", ValueError)
        return _core.build("dropout", (self,), (float(p), True))

    def unsqueeze(self, axis: int):
        """Insert an axis of size 1 at ``axis``."""
        return _shape.expand_dims(self, _core.axis_("unsqueeze", axis, self.ndim + 1))

    def chunks(self, chunk_shape):
        """Tiles of ``chunk_shape`` in row-major order; the last tile along an axis may be smaller."""
        chunk_shape = (chunk_shape,) if isinstance(chunk_shape, int) else tuple(chunk_shape)
        if len(chunk_shape) != self.ndim or any(c < 1 for c in chunk_shape):
            raise located(f"chunks: chunk shape {chunk_shape} does not fit a value of shape {self.shape}")
        tiles = []
        for corner in np.ndindex(*[len(range(0, size, step)) for size, step in zip(self.shape, chunk_shape)]):
            key = tuple(slice(i * c, min(i * c + c, size)) for i, c, size in zip(corner, chunk_shape, self.shape))
            tiles.append(self[key])
        return tiles

    def split(self, sizes, axis: int = 0):
        """Sections along ``axis``: of ``sizes`` each (the last may be smaller), or of the sizes listed."""
        axis = _core.axis_("split", axis, self.ndim)
        length = self.shape[axis]
        if isinstance(sizes, numbers.Integral):
            if sizes < 1:
                raise located(f"split: section size must be positive, got {sizes}")
            sizes = [min(sizes, length - s) for s in range(0, length, sizes)]
        sizes = list(sizes)
        if sum(sizes) != length or any(s < 0 for s in sizes):
            raise located(f"split: sections {sizes} do not add up to the size {length} of axis {axis} "
                          f"(shape {self.shape})")
        parts, start = [], 0
        for size in sizes:
            parts.append(self[(slice(None),) * axis + (slice(start, start + size),)])
            start += size
        return parts

    def pad(self, widths, mode: str = "constant", value: float = 0.0):
        """Pad with NumPy's widths (an int, a (before, after) pair, or one pair per axis).

        ``mode``: 'constant' (with ``value``), 'reflect', or 'replicate' (the edge value).
        """
        modes = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "edge": "edge"}
        if mode not in modes:
            raise located(f"pad: mode must be 'constant', 'reflect' or 'replicate', got {mode!r}", ValueError)
        return _shape.pad_op(self, widths, modes[mode], value)


_sum = _impl(_reductions.sum)


def _legacy_keepdims(second, keepdims):
    """The crate's ``sum(axis, keepdims)``: a bool in NumPy's second place (dtype / out) is keepdims."""
    if isinstance(second, (bool, np.bool_)):
        return None, bool(second)
    return second, keepdims


def _product(a, b, name, ranks):
    node = a._node
    other = b._node if isinstance(b, Var) else _core.node_of(b, node, name)
    x, y = node.shape, other.shape
    if (len(x), len(y)) != ranks:
        raise located(f"{name}: needs operands of {ranks[0]} and {ranks[1]} dimensions, got "
                      f"shapes {x} and {y}")
    inner = y[0] if len(y) == 1 else y[-2]
    if x[-1] != inner:
        raise located(f"{name}: shapes {x} and {y} do not fit: the inner dimensions "
                      f"{x[-1]} and {inner} differ")
    return _wrap(apply(_MATMUL, (node, other)))


def install(namespace):
    """Put the methods on ``Var``; ``namespace`` is the ``neuronika.numpy`` module, whose
    functions the NumPy-named methods call."""
    for name, value in vars(Methods).items():
        if name not in ("__module__", "__qualname__", "__doc__", "__dict__", "__weakref__"):
            setattr(Var, name, value)
    for name in NUMPY_METHODS:
        if hasattr(namespace, name):
            setattr(Var, name, _forward(name, getattr(namespace, name)))
    Var.__hash__ = object.__hash__        # comparisons are elementwise; identity hashing stays
    Var.__array_ufunc__ = _dispatch.array_ufunc
    Var.__array_function__ = _dispatch.array_function
