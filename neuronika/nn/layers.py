"""Basic layers: Linear, Dropout, Embedding, LayerNorm, Flatten, Identity and the
activation modules (GELU among them). Every layer takes ``dtype=`` (float32 by default)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..creation import from_ndarray
from ..errors import ShapeError
from ..graph import apply, format_where, user_line
from ..ops.elementwise import GELU as _GELU
from ..ops.reduce import NORMALIZE
from ..variable import Var, _wrap
from . import init
from ._checks import float_dtype, number, positive_int
from .module import Module, parameter


def as_var(x, layer=None) -> Var:
    """A layer's input: a variable, or an array made a (non-differentiable) leaf. Given the
    ``layer`` (whose parameters are real), a complex input raises TypeError naming it."""
    x = x if isinstance(x, Var) else from_ndarray(np.asarray(x))
    if layer is not None and x.dtype.kind == "c":
        name = layer if isinstance(layer, str) else repr(layer)
        raise TypeError(f"{name}: complex inputs are not supported (got dtype {x.dtype}); the layer "
                        f"computes on real values (at {format_where(user_line())})")
    return x


def check_input(layer, x, ok, expected, hint=""):
    """A ShapeError naming the layer, the shapes and the user's line unless ``ok``."""
    if not ok:
        raise ShapeError(f"{layer!r}: expected an input of shape {expected}, got a {x.ndim}-D input "
                         f"of shape {x.shape}{hint} (at {format_where(user_line())})")


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features), on (N, in) or (N, *, in).

    Initialised as PyTorch does: W and b uniform in +-1/sqrt(in_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        in_features = positive_int("Linear", "in_features", in_features)
        out_features = positive_int("Linear", "out_features", out_features)
        dtype = float_dtype("Linear", dtype)
        self.in_features, self.out_features = in_features, out_features
        self.weight = parameter(np.empty((out_features, in_features), dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            self.bias = parameter(np.empty(out_features, dtype))
            bound = 1 / math.sqrt(in_features)
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def forward(self, x):
        x = as_var(x, self)
        check_input(self, x, x.ndim >= 1 and x.shape[-1] == self.in_features,
                    f"(N, {self.in_features}) or (N, *, {self.in_features})")
        y = x.mm_t(self.weight) if x.ndim == 2 else x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Dropout(Module):
    """Zeroes elements with probability p (scaling the rest by 1/(1-p)) while training."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = number("Dropout", "p", p, 0.0, 1.0)

    def forward(self, x):
        x = as_var(x)
        return x.dropout(self.p) if self.training and self.p > 0 else x

    def extra_repr(self):
        return f"p={self.p}"


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table, picked by integer indices.
    Repeated indices add up in the gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32):
        super().__init__()
        self.num_embeddings = positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("Embedding", "embedding_dim", embedding_dim)
        dtype = float_dtype("Embedding", dtype)
        self.weight = parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype))
        init.normal_(self.weight)

    def forward(self, indices):
        data = indices.data if isinstance(indices, Var) else np.asarray(indices)
        if data.dtype.kind not in "iu":
            raise TypeError(f"{self!r}: indices must be integers, got dtype {data.dtype}")
        if data.size and (data.min() < 0 or data.max() >= self.num_embeddings):
            raise IndexError(f"{self!r}: indices must be in [0, {self.num_embeddings}), got values "
                             f"from {data.min()} to {data.max()}")
        return self.weight[indices if isinstance(indices, Var) else data]

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` axes (one op, ``normalize``), then
    scales and shifts.

    >>> import neuronika
    >>> from neuronika.nn import LayerNorm
    >>> y = LayerNorm(4)(neuronika.randn((2, 3, 4)))
    >>> y.shape, bool(abs(y.data.mean(-1)).max() < 1e-5)
    ((2, 3, 4), True)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        try:
            shape = tuple(normalized_shape)
        except TypeError:
            raise ValueError(f"LayerNorm: normalized_shape must be an int or a tuple of ints, got "
                             f"{normalized_shape!r}") from None
        if not shape:
            raise ValueError("LayerNorm: normalized_shape must name at least one axis, got ()")
        shape = tuple(positive_int("LayerNorm", "each size of normalized_shape", d) for d in shape)
        self.normalized_shape, self.eps = shape, number("LayerNorm", "eps", eps, 0.0, open_lo=True)
        dtype = float_dtype("LayerNorm", dtype)
        if elementwise_affine:
            self.weight = parameter(np.ones(shape, dtype))
            self.bias = parameter(np.zeros(shape, dtype))
        else:
            self.weight = self.bias = None

    def forward(self, x):
        x = as_var(x, self)
        n = len(self.normalized_shape)
        check_input(self, x, x.shape[x.ndim - n:] == self.normalized_shape and x.ndim >= n,
                    f"(*, {', '.join(map(str, self.normalized_shape))})")
        y = _wrap(apply(NORMALIZE, (x._node,), (tuple(range(x.ndim - n, x.ndim)), self.eps)))
        return y * self.weight + self.bias if self.weight is not None else y

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


class Flatten(Module):
    """Merges the axes from ``start_axis`` (default 1: keep the batch axis) on."""

    def __init__(self, start_axis: int = 1):
        super().__init__()
        if not isinstance(start_axis, numbers.Integral) or isinstance(start_axis, bool):
            raise ValueError(f"Flatten: start_axis must be an int, got {start_axis!r}")
        self.start_axis = int(start_axis)

    def forward(self, x):
        x = as_var(x)
        axis = self.start_axis
        check_input(self, x, -x.ndim <= axis < x.ndim, f"at least {axis + 1 if axis >= 0 else -axis} dimensions")
        axis %= x.ndim
        shape = x.shape[:axis] + (math.prod(x.shape[axis:]),)
        # the batch as -1 (one program for every batch size) where that is unambiguous
        if axis >= 1 and math.prod(shape[1:]) > 0:
            shape = (-1,) + shape[1:]
        return x.reshape(shape)


class Identity(Module):
    def forward(self, x):
        return as_var(x)


class ReLU(Module):
    def forward(self, x):
        return as_var(x).relu()


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = number("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        return as_var(x).leaky_relu(self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class GELU(Module):
    """x * Phi(x), Phi the standard normal CDF; ``approximate='tanh'`` for PyTorch's tanh form.

    >>> import numpy as np
    >>> from neuronika.nn.layers import GELU
    >>> GELU()(np.array([1.0])).data.round(4)
    array([0.8413])
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x):
        x = as_var(x, self)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        return _wrap(apply(_GELU, (x._node,), (self.approximate,)))

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    def forward(self, x):
        return as_var(x).tanh()


class Sigmoid(Module):
    def forward(self, x):
        return as_var(x).sigmoid()


class Softplus(Module):
    def forward(self, x):
        return as_var(x).softplus()


def _numeric(x):
    """Booleans as float64 (what NumPy makes of integers here), since x - max(x) needs numbers."""
    return x.astype(np.float64) if x.dtype.kind == "b" else x


class Softmax(Module):
    def __init__(self, axis: int = -1):
        super().__init__()
        if not isinstance(axis, numbers.Integral) or isinstance(axis, bool):
            raise ValueError(f"{type(self).__name__}: axis must be an int, got {axis!r}")
        self.axis = int(axis)

    def forward(self, x):
        return _numeric(as_var(x)).softmax(self.axis)

    def extra_repr(self):
        return f"axis={self.axis}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return _numeric(as_var(x)).log_softmax(self.axis)
