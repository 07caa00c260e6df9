"""Basic layers: Linear, Bilinear, Dropout, Embedding, LayerNorm, Flatten, Unflatten, Identity
and the activation modules. Every layer with parameters takes ``dtype=`` (float32 by default);
each forward calls its ``nn.functional`` function (one implementation)."""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..creation import from_ndarray
from ..errors import ShapeError
from ..graph import format_where, user_line
from ..variable import Var
from . import functional as F, init
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
    """y = x W^T + b, with W of shape (out_features, in_features), on (N, in) or (N, *, in)
    (``F.linear``).

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
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Bilinear(Module):
    """y = x1^T W_k x2 + b_k for each output k, with W of shape (out_features, in1_features,
    in2_features) and b of shape (out_features,), on inputs (N, *, in1) and (N, *, in2)
    (``F.bilinear``). Initialised as PyTorch does: W and b uniform in +-1/sqrt(in1_features).

    >>> import neuronika
    >>> from neuronika.nn import Bilinear
    >>> layer = Bilinear(3, 2, 4)
    >>> layer.weight.shape, layer(neuronika.ones((5, 3)), neuronika.ones((5, 2))).shape
    ((4, 3, 2), (5, 4))
    """

    def __init__(self, in1_features: int, in2_features: int, out_features: int, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        self.in1_features = positive_int("Bilinear", "in1_features", in1_features)
        self.in2_features = positive_int("Bilinear", "in2_features", in2_features)
        self.out_features = positive_int("Bilinear", "out_features", out_features)
        dtype = float_dtype("Bilinear", dtype)
        bound = 1 / math.sqrt(self.in1_features)
        self.weight = parameter(np.empty((self.out_features, self.in1_features, self.in2_features), dtype))
        init.uniform_(self.weight, -bound, bound)
        if bias:
            self.bias = parameter(np.empty(self.out_features, dtype))
            init.uniform_(self.bias, -bound, bound)
        else:
            self.bias = None

    def forward(self, input1, input2):
        x1, x2 = as_var(input1, self), as_var(input2, self)
        if not (x1.ndim >= 1 and x1.shape[-1] == self.in1_features and x2.ndim >= 1
                and x2.shape[-1] == self.in2_features and x1.shape[:-1] == x2.shape[:-1]):
            raise ShapeError(f"{self!r}: expected inputs of shapes (*, {self.in1_features}) and "
                             f"(*, {self.in2_features}) with the same leading shape, got {x1.shape} and "
                             f"{x2.shape} (at {format_where(user_line())})")
        return F.bilinear(x1, x2, self.weight, self.bias)

    def extra_repr(self):
        return (f"in1_features={self.in1_features}, in2_features={self.in2_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")


class Dropout(Module):
    """Zeroes elements with probability p (scaling the rest by 1/(1-p)) while training
    (``F.dropout``). ``inplace=`` is accepted, as PyTorch's, and ignored."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p = number("Dropout", "p", p, 0.0, 1.0)
        self.inplace = bool(inplace)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table, picked by integer indices
    (``F.embedding``). Repeated indices add up in the gradient. The row at ``padding_idx``
    (if given; negative counts from the end) starts at zero and receives no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings = positive_int("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = positive_int("Embedding", "embedding_dim", embedding_dim)
        dtype = float_dtype("Embedding", dtype)
        if padding_idx is not None:
            if (not isinstance(padding_idx, numbers.Integral) or isinstance(padding_idx, bool)
                    or not -self.num_embeddings <= padding_idx < self.num_embeddings):
                raise ValueError(f"Embedding: padding_idx must be an int in [{-self.num_embeddings}, "
                                 f"{self.num_embeddings}), got {padding_idx!r}")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype))
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.data[padding_idx] = 0

    def forward(self, indices):
        return F._embedding(self, indices, self.weight, self.padding_idx)

    def extra_repr(self):
        padding = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{padding}"


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` axes (one op, ``normalize``), then
    scales and shifts (``F.layer_norm``); ``bias=False`` scales only (PyTorch's option).

    >>> import neuronika
    >>> from neuronika.nn import LayerNorm
    >>> y = LayerNorm(4)(neuronika.randn((2, 3, 4)))
    >>> y.shape, bool(abs(y.data.mean(-1)).max() < 1e-5)
    ((2, 3, 4), True)
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=np.float32):
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
            self.bias = parameter(np.zeros(shape, dtype)) if bias else None
        else:
            self.weight = self.bias = None

    def forward(self, x):
        x = as_var(x, self)
        n = len(self.normalized_shape)
        check_input(self, x, x.shape[x.ndim - n:] == self.normalized_shape and x.ndim >= n,
                    f"(*, {', '.join(map(str, self.normalized_shape))})")
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}"


def _int_option(layer, label, value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValueError(f"{layer}: {label} must be an int, got {value!r}")
    return int(value)


_UNSET = object()


class Flatten(Module):
    """Merges the axes from ``start_dim`` to ``end_dim`` (both included; by default all but the
    batch axis) into one, as PyTorch's. ``start_axis=`` is the earlier name of ``start_dim``.

    >>> import neuronika
    >>> from neuronika.nn import Flatten
    >>> Flatten()(neuronika.ones((2, 3, 4))).shape, Flatten(0, 1)(neuronika.ones((2, 3, 4))).shape
    ((2, 12), (6, 4))
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1, *, start_axis=_UNSET):
        super().__init__()
        if start_axis is not _UNSET:
            start_dim = start_axis
        self.start_dim = _int_option("Flatten", "start_dim", start_dim)
        self.end_dim = _int_option("Flatten", "end_dim", end_dim)

    @property
    def start_axis(self) -> int:
        return self.start_dim

    def forward(self, x):
        x = as_var(x)
        start, end = self.start_dim, self.end_dim
        needed = max(start + 1 if start >= 0 else -start, end + 1 if end >= 0 else -end)
        check_input(self, x, -x.ndim <= start < x.ndim and -x.ndim <= end < x.ndim,
                    f"at least {needed} dimensions")
        start, end = start % x.ndim, end % x.ndim
        if start > end:
            raise ShapeError(f"{self!r}: start_dim comes after end_dim for an input of shape {x.shape} "
                             f"(at {format_where(user_line())})")
        shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
        # the batch as -1 (one program for every batch size) where that is unambiguous
        if start >= 1 and math.prod(shape[1:]) > 0:
            shape = (-1,) + shape[1:]
        return x.reshape(shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Splits axis ``dim`` into ``unflattened_size`` (one entry may be -1: inferred), as
    PyTorch's.

    >>> import neuronika
    >>> from neuronika.nn import Unflatten
    >>> Unflatten(1, (2, -1))(neuronika.ones((5, 6))).shape
    (5, 2, 3)
    """

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim = _int_option("Unflatten", "dim", dim)
        try:
            sizes = tuple(unflattened_size)
        except TypeError:
            sizes = None
        if (not sizes or any(not isinstance(d, numbers.Integral) or isinstance(d, bool) or (d < 1 and d != -1)
                             for d in sizes) or sizes.count(-1) > 1):
            raise ValueError(f"Unflatten: unflattened_size must be a non-empty tuple of positive ints, one of "
                             f"which may be -1, got {unflattened_size!r}")
        self.unflattened_size = tuple(int(d) for d in sizes)

    def forward(self, x):
        x = as_var(x)
        dim = self.dim
        check_input(self, x, -x.ndim <= dim < x.ndim, f"at least {dim + 1 if dim >= 0 else -dim} dimensions")
        dim %= x.ndim
        sizes, size = self.unflattened_size, x.shape[dim]
        known = math.prod(d for d in sizes if d != -1)
        if -1 in sizes:
            ok = known > 0 and size % known == 0
            sizes = tuple(size // known if d == -1 else d for d in sizes) if ok else sizes
        else:
            ok = known == size
        if not ok:
            raise ShapeError(f"{self!r}: the sizes {self.unflattened_size} do not multiply up to the size "
                             f"{size} of axis {dim} of the input of shape {x.shape} "
                             f"(at {format_where(user_line())})")
        shape = x.shape[:dim] + sizes + x.shape[dim + 1:]
        if dim >= 1 and math.prod(shape[1:]) > 0:        # the batch as -1, as Flatten
            shape = (-1,) + shape[1:]
        return x.reshape(shape)

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class Identity(Module):
    def forward(self, x):
        return as_var(x)


class _Activation(Module):
    """An elementwise activation: ``forward`` calls the ``nn.functional`` function of the same
    name. ``inplace=`` is accepted, as PyTorch's, and ignored: variables are immutable."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = bool(inplace)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class ReLU(_Activation):
    """max(x, 0) (``F.relu``)."""

    def forward(self, x):
        return F.relu(x)


class ReLU6(_Activation):
    """min(max(x, 0), 6) (``F.relu6``).

    >>> import numpy as np
    >>> from neuronika.nn import ReLU6
    >>> ReLU6()(np.array([-1.0, 7.0])).data
    array([0., 6.])
    """

    def forward(self, x):
        return F.relu6(x)


class LeakyReLU(_Activation):
    """x where x > 0, negative_slope * x elsewhere (``F.leaky_relu``)."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__(inplace)
        self.negative_slope = number("LeakyReLU", "negative_slope", negative_slope)

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(_Activation):
    """x where x > 0, alpha * (exp(x) - 1) elsewhere (``F.elu``).

    >>> import numpy as np
    >>> from neuronika.nn import ELU
    >>> ELU()(np.array([-1.0, 2.0])).data.round(4)
    array([-0.6321,  2.    ])
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.alpha = number("ELU", "alpha", alpha)

    def forward(self, x):
        return F.elu(x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class CELU(ELU):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) (``F.celu``); alpha must not be 0.

    >>> import numpy as np
    >>> from neuronika.nn import CELU
    >>> CELU(2.0)(np.array([-1.0, 2.0])).data.round(4)
    array([-0.7869,  2.    ])
    """

    def __init__(self, alpha: float = 1.0, inplace: bool = False):
        super().__init__(number("CELU", "alpha", alpha), inplace)
        if self.alpha == 0:
            raise ValueError("CELU: alpha must not be 0 (the input is divided by it)")

    def forward(self, x):
        return F.celu(x, self.alpha)


class SELU(_Activation):
    """scale * elu(x, alpha) with PyTorch's constants (``F.selu``).

    >>> import numpy as np
    >>> from neuronika.nn import SELU
    >>> SELU()(np.array([-1.0, 2.0])).data.round(4)
    array([-1.1113,  2.1014])
    """

    def forward(self, x):
        return F.selu(x)


class GELU(Module):
    """x * Phi(x), Phi the standard normal CDF; ``approximate='tanh'`` for PyTorch's tanh form
    (``F.gelu``). Integer inputs become float64.

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
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class SiLU(_Activation):
    """x * sigmoid(x) (``F.silu``).

    >>> import numpy as np
    >>> from neuronika.nn import SiLU
    >>> SiLU()(np.array([-1.0, 2.0])).data.round(4)
    array([-0.2689,  1.7616])
    """

    def forward(self, x):
        return F.silu(x)


class Mish(_Activation):
    """x * tanh(softplus(x)) (``F.mish``).

    >>> import numpy as np
    >>> from neuronika.nn import Mish
    >>> Mish()(np.array([-1.0, 2.0])).data.round(4)
    array([-0.3034,  1.944 ])
    """

    def forward(self, x):
        return F.mish(x)


class Hardtanh(_Activation):
    """x limited to [min_val, max_val] (``F.hardtanh``).

    >>> import numpy as np
    >>> from neuronika.nn import Hardtanh
    >>> Hardtanh(-2.0, 2.0)(np.array([-3.0, 1.0, 3.0])).data
    array([-2.,  1.,  2.])
    """

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__(inplace)
        self.min_val = number("Hardtanh", "min_val", min_val)
        self.max_val = number("Hardtanh", "max_val", max_val)
        if self.min_val > self.max_val:
            raise ValueError(f"Hardtanh: min_val cannot be greater than max_val, got min_val = {min_val} "
                             f"and max_val = {max_val}")

    def forward(self, x):
        return F.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self):
        return f"min_val={self.min_val}, max_val={self.max_val}" + (", inplace=True" if self.inplace else "")


class Hardsigmoid(_Activation):
    """0 where x <= -3, 1 where x >= 3, x / 6 + 1/2 between (``F.hardsigmoid``).

    >>> import numpy as np
    >>> from neuronika.nn import Hardsigmoid
    >>> Hardsigmoid()(np.array([-4.0, 1.5])).data
    array([0.  , 0.75])
    """

    def forward(self, x):
        return F.hardsigmoid(x)


class Hardswish(_Activation):
    """x * hardsigmoid(x) (``F.hardswish``).

    >>> import numpy as np
    >>> from neuronika.nn import Hardswish
    >>> Hardswish()(np.array([1.5, 4.0])).data
    array([1.125, 4.   ])
    """

    def forward(self, x):
        return F.hardswish(x)


class Tanh(Module):
    """The hyperbolic tangent (``F.tanh``)."""

    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + exp(-x)) (``F.sigmoid``)."""

    def forward(self, x):
        return F.sigmoid(x)


class LogSigmoid(Module):
    """log(sigmoid(x)) = -softplus(-x) (``F.logsigmoid``).

    >>> import numpy as np
    >>> from neuronika.nn import LogSigmoid
    >>> LogSigmoid()(np.array([-100.0, 0.0])).data.round(4)
    array([-100.    ,   -0.6931])
    """

    def forward(self, x):
        return F.logsigmoid(x)


class Softsign(Module):
    """x / (1 + |x|) (``F.softsign``).

    >>> import numpy as np
    >>> from neuronika.nn import Softsign
    >>> Softsign()(np.array([-1.0, 3.0])).data
    array([-0.5 ,  0.75])
    """

    def forward(self, x):
        return F.softsign(x)


class Softplus(Module):
    """log(1 + exp(beta * x)) / beta, and x where beta * x > threshold (``F.softplus``)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0):
        super().__init__()
        self.beta = number("Softplus", "beta", beta)
        self.threshold = number("Softplus", "threshold", threshold)
        if self.beta == 0:
            raise ValueError("Softplus: beta must not be 0 (the result is divided by it)")

    def forward(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``dim`` (``F.softmax``; -1, the last axis, by default).
    ``axis=`` is the earlier name of ``dim``."""

    def __init__(self, dim: int = -1, *, axis=_UNSET):
        super().__init__()
        name = type(self).__name__
        if axis is not _UNSET:
            dim = axis
        if dim is None:
            raise ValueError(f"{name}: give dim, the axis to normalise over (PyTorch's implicit choice for "
                             f"dim=None is not supported)")
        self.dim = _int_option(name, "dim", dim)

    @property
    def axis(self) -> int:
        return self.dim

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """x - logsumexp(x) along ``dim`` (``F.log_softmax``)."""

    def forward(self, x):
        return F.log_softmax(x, self.dim)
