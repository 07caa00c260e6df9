"""Attention: ``scaled_dot_product_attention`` (reachable as ``nn.functional``'s) and
``MultiheadAttention``, with PyTorch's signatures, parameter names and mask conventions.

Both are compositions of catalogue ops (matmul, softmax, where, dropout), so gradients and
second derivatives come from the engine.

Masks. ``scaled_dot_product_attention`` takes a boolean mask whose True entries *take part*
or a float mask added to the scores. ``MultiheadAttention`` follows PyTorch's module: a
boolean ``attn_mask`` or ``key_padding_mask`` marks with True the entries that do *not* take
part; a float mask is added. A query whose keys are all masked out gets zeros from
``scaled_dot_product_attention`` (and from ``MultiheadAttention`` with ``need_weights=False``),
with a zero gradient; ``MultiheadAttention`` with ``need_weights=True`` gives NaN there, as
PyTorch does (it computes the weights with a plain softmax).

>>> import numpy as np
>>> from neuronika.nn import functional as F
>>> q = np.ones((2, 3, 4)); kv = np.arange(2 * 5 * 4.0).reshape(2, 5, 4)
>>> F.scaled_dot_product_attention(q, kv, kv).shape
(2, 3, 4)
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, numpy as _np
from ..creation import from_ndarray
from ..variable import Var, _located
from . import init
from ._checks import float_dtype, number, positive_int
from .functional import _layer_input, _option
from .layers import Linear
from .module import Module, parameter

__all__ = ["scaled_dot_product_attention", "MultiheadAttention"]


# ---- helpers -----------------------------------------------------------------------------------------

def _operand(name, label, value) -> Var:
    x = _layer_input(name, value)
    if x.dtype.kind != "f":
        raise _located(f"{name}: {label} must be floating point, got dtype {x.dtype}", TypeError)
    return x


def _mask_of(name, label, mask):
    """A mask as a variable, or as a copy of the array given (read when the function is called;
    its preparation then stays in NumPy), checked to hold booleans or floats."""
    if not isinstance(mask, Var):
        mask = from_ndarray(mask) if backend.foreign(mask) else np.array(mask)
    if mask.dtype.kind not in "bf":
        raise _located(f"{name}: {label} must hold booleans or floats, got dtype {mask.dtype}", TypeError)
    return mask


def _additive(mask, dtype, true_takes_part):
    """A float mask in ``dtype`` added to the scores: a boolean mask becomes 0 where an entry
    takes part and -inf elsewhere."""
    if mask.dtype.kind == "b":
        zero, minus_inf = dtype.type(0), dtype.type(-np.inf)
        return _np.where(mask, zero, minus_inf) if true_takes_part else _np.where(mask, minus_inf, zero)
    return mask if mask.dtype == dtype else mask.astype(dtype)


def _safe(additive, dtype):
    """(the additive mask with its fully masked rows made 0, a 0/1 factor per query that zeroes
    those rows' outputs). Without it such a row's softmax is 0/0: NaN in the output and, through
    the key gradient, in every other row's gradient too."""
    full = (additive == -np.inf).all(-1, keepdims=True)
    if isinstance(full, np.ndarray) and not full.any():
        return additive, None
    return _np.where(full, dtype.type(0), additive), _np.logical_not(full).astype(dtype)


def _shape_of(x):
    return tuple(x.shape)


def _here(value, like):
    """A NumPy constant (a mask, zeros) moved to the array library ``like`` lives in."""
    space = like._node.space
    return backend.move(value, space) if space is not None and isinstance(value, np.ndarray) else value


def _attend(q, k, v, additive, keep, dropout_p, scale):
    """softmax((q * scale) @ k^T + additive) (with dropout) @ v, times ``keep``; and the weights."""
    additive, keep = _here(additive, q), _here(keep, q)
    scores = (q * scale) @ k.swapaxes(-1, -2)
    if additive is not None:
        scores = scores + additive
    weights = scores.softmax(-1)
    if dropout_p > 0:
        weights = weights.dropout(dropout_p)
    out = weights @ v
    return (out if keep is None else out * keep), weights


def _causal(L, S, dtype):
    """The additive causal mask: query i sees keys 0..i (top-left aligned, as PyTorch's)."""
    return np.where(np.tri(L, S, dtype=bool), dtype.type(0), dtype.type(-np.inf))


# ---- scaled dot-product attention ---------------------------------------------------------------------

def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Var:
    """softmax(query @ key^T * scale + mask) @ value, as PyTorch's: query (..., L, E), key
    (..., S, E), value (..., S, Ev) (batch axes broadcast) give (..., L, Ev). ``scale`` defaults
    to 1 / sqrt(E).

    ``attn_mask`` broadcasts to (..., L, S): booleans (True: the key takes part) or floats
    (added to the scores). ``is_causal`` lets query i see keys 0..i (it refuses an explicit
    mask). A query that sees no key gets zeros (and a zero gradient), as in PyTorch.
    ``dropout_p`` > 0 drops attention weights whenever it is called (PyTorch's rule: pass
    ``dropout_p=0`` in evaluation). ``enable_gqa`` shares each key/value head among
    Hq / Hk query heads (axis -3).

    >>> import numpy as np
    >>> from neuronika.nn import functional as F
    >>> q = k = v = np.eye(3)
    >>> F.scaled_dot_product_attention(q, k, v, is_causal=True).data.round(3)
    array([[1.   , 0.   , 0.   ],
           [0.36 , 0.64 , 0.   ],
           [0.264, 0.264, 0.471]])
    """
    name = "scaled_dot_product_attention"
    q, k, v = (_operand(name, label, x) for label, x in (("query", query), ("key", key), ("value", value)))
    if not q.dtype == k.dtype == v.dtype:
        raise _located(f"{name}: query, key and value must have the same dtype, got {q.dtype}, {k.dtype} "
                       f"and {v.dtype}", TypeError)
    if min(q.ndim, k.ndim, v.ndim) < 2:
        raise _located(f"{name}: query, key and value need at least 2 dimensions ((..., L, E), (..., S, E), "
                       f"(..., S, Ev)), got shapes {q.shape}, {k.shape} and {v.shape}")
    if k.shape[-1] != q.shape[-1] or v.shape[-2] != k.shape[-2]:
        raise _located(f"{name}: expected query (..., L, E), key (..., S, E) and value (..., S, Ev), got "
                       f"query {q.shape}, key {k.shape} and value {v.shape}")
    dropout_p = _option(name, "dropout_p", dropout_p, 0.0, 1.0)
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1]) if q.shape[-1] else 1.0
    else:
        scale = _option(name, "scale", scale)
    if enable_gqa:
        k, v = _grouped(name, q, k, v)
    try:
        batch = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except ValueError:
        raise _located(f"{name}: the batch axes of query {q.shape}, key {k.shape} and value {v.shape} do "
                       f"not broadcast") from None
    L, S = q.shape[-2], k.shape[-2]
    additive = keep = None
    if attn_mask is not None:
        if is_causal:
            raise _located(f"{name}: an explicit attn_mask cannot be given with is_causal=True (PyTorch "
                           f"refuses it too): give one or the other", ValueError)
        mask = _mask_of(name, "attn_mask", attn_mask)
        try:
            fits = np.broadcast_shapes(_shape_of(mask), batch + (L, S)) == batch + (L, S)
        except ValueError:
            fits = False
        if not fits:
            raise _located(f"{name}: attn_mask of shape {_shape_of(mask)} does not broadcast to the scores' "
                           f"shape {batch + (L, S)} (..., L, S) for query {q.shape} and key {k.shape}")
        additive, keep = _safe(_additive(mask, q.dtype, True), q.dtype)
    elif is_causal:
        additive = _causal(L, S, q.dtype)          # every query sees key 0: no row is fully masked
    return _attend(q, k, v, additive, keep, dropout_p, scale)[0]


def _grouped(name, q, k, v):
    """Key and value heads repeated so that query head h reads key head h // (Hq / Hk)."""
    if min(q.ndim, k.ndim, v.ndim) < 3 or k.shape[-3] != v.shape[-3] or q.shape[-3] % k.shape[-3]:
        raise _located(f"{name}: enable_gqa needs query (..., Hq, L, E), key (..., Hk, S, E) and value "
                       f"(..., Hk, S, Ev) with Hq a multiple of Hk, got {q.shape}, {k.shape} and {v.shape}")
    group = q.shape[-3] // k.shape[-3]
    if group == 1:
        return k, v
    return k.repeat(group, axis=-3), v.repeat(group, axis=-3)


# ---- MultiheadAttention -------------------------------------------------------------------------------

class MultiheadAttention(Module):
    """Attention over ``num_heads`` heads of ``embed_dim // num_heads`` features, as PyTorch's
    ``nn.MultiheadAttention``: the same parameters (``in_proj_weight`` (3E, E) and
    ``in_proj_bias`` (3E,), or ``q_proj_weight``, ``k_proj_weight``, ``v_proj_weight`` when
    ``kdim`` or ``vdim`` differs from ``embed_dim``; ``out_proj``; ``bias_k`` and ``bias_v``
    with ``add_bias_kv``), so a PyTorch state dict loads.

    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` takes (L, N, E) query and (S, N, kdim) /
    (S, N, vdim) key and value ((N, L, E), ... with ``batch_first``; (L, E), ... unbatched)
    and returns (output, weights): the weights are (N, L, S) averaged over the heads, (N,
    num_heads, L, S) with ``average_attn_weights=False``, None with ``need_weights=False``.
    ``key_padding_mask`` is (N, S) ((S,) unbatched); ``attn_mask`` (L, S) or (N * num_heads,
    L, S); for both, True marks what is left out, and floats are added to the scores.
    ``is_causal`` is a hint that ``attn_mask`` is the causal mask (it needs one, as PyTorch).
    Dropout applies to the weights while training.

    >>> import neuronika
    >>> from neuronika import nn
    >>> mha = nn.MultiheadAttention(8, 2, batch_first=True)
    >>> x = neuronika.randn((3, 5, 8))
    >>> out, weights = mha(x, x, x)
    >>> out.shape, weights.shape
    ((3, 5, 8), (3, 5, 5))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                 vdim: int | None = None, batch_first: bool = False, dtype=np.float32):
        super().__init__()
        name = "MultiheadAttention"
        self.embed_dim = positive_int(name, "embed_dim", embed_dim)
        self.num_heads = positive_int(name, "num_heads", num_heads)
        if self.embed_dim % self.num_heads:
            raise ValueError(f"{name}: embed_dim ({self.embed_dim}) must be divisible by num_heads "
                             f"({self.num_heads})")
        self.kdim = self.embed_dim if kdim is None else positive_int(name, "kdim", kdim)
        self.vdim = self.embed_dim if vdim is None else positive_int(name, "vdim", vdim)
        self._qkv_same_embed_dim = self.kdim == self.embed_dim and self.vdim == self.embed_dim
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = number(name, "dropout", dropout, 0.0, 1.0)
        self.batch_first = bool(batch_first)
        self.add_zero_attn = bool(add_zero_attn)
        dtype = float_dtype(name, dtype)
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = parameter(np.empty((3 * E, E), dtype))
            init.xavier_uniform_(self.in_proj_weight)
            self.q_proj_weight = self.k_proj_weight = self.v_proj_weight = None
        else:
            self.q_proj_weight = parameter(np.empty((E, E), dtype))
            self.k_proj_weight = parameter(np.empty((E, self.kdim), dtype))
            self.v_proj_weight = parameter(np.empty((E, self.vdim), dtype))
            for weight in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(weight)
            self.in_proj_weight = None
        self.in_proj_bias = parameter(np.zeros(3 * E, dtype)) if bias else None
        self.out_proj = Linear(E, E, bias=bias, dtype=dtype)
        if bias:
            self.out_proj.bias.data[...] = 0
        if add_bias_kv:
            self.bias_k = parameter(np.empty((1, 1, E), dtype))
            self.bias_v = parameter(np.empty((1, 1, E), dtype))
            init.xavier_normal_(self.bias_k)
            init.xavier_normal_(self.bias_v)
        else:
            self.bias_k = self.bias_v = None

    def extra_repr(self):
        parts = [f"embed_dim={self.embed_dim}", f"num_heads={self.num_heads}"]
        if self.dropout:
            parts.append(f"dropout={self.dropout}")
        if not self._qkv_same_embed_dim:
            parts.append(f"kdim={self.kdim}, vdim={self.vdim}")
        if self.batch_first:
            parts.append("batch_first=True")
        return ", ".join(parts)

    @property
    def _name(self):
        return f"MultiheadAttention({self.extra_repr()})"

    def _projections(self):
        E = self.embed_dim
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            weights = (w[:E], w[E:2 * E], w[2 * E:])
        else:
            weights = (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight)
        b = self.in_proj_bias
        biases = (None,) * 3 if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        return weights, biases

    def _project(self, q, k, v):
        """The three input projections; one product where query, key and value are one input."""
        (wq, wk, wv), (bq, bk, bv) = self._projections()
        if q is k and k is v and self._qkv_same_embed_dim:
            both = q @ self.in_proj_weight.T
            if self.in_proj_bias is not None:
                both = both + self.in_proj_bias
            E = self.embed_dim
            return both[..., :E], both[..., E:2 * E], both[..., 2 * E:]
        out = []
        for x, w, b in ((q, wq, bq), (k, wk, bk), (v, wv, bv)):
            y = x @ w.T
            out.append(y if b is None else y + b)
        return out

    def _check(self, q, k, v, key_padding_mask, attn_mask):
        """Shapes as PyTorch checks them; returns (batched, mask shapes are fine)."""
        E, H = self.embed_dim, self.num_heads
        batched = q.ndim == 3
        if q.ndim not in (2, 3) or k.ndim != q.ndim or v.ndim != q.ndim:
            raise _located(f"{self._name}: expected query, key and value all 3-D (batched) or all 2-D "
                           f"(unbatched), got shapes {q.shape}, {k.shape} and {v.shape}")
        if q.shape[-1] != E or k.shape[-1] != self.kdim or v.shape[-1] != self.vdim:
            raise _located(f"{self._name}: expected query, key and value with {E}, {self.kdim} and {self.vdim} "
                           f"features, got shapes {q.shape}, {k.shape} and {v.shape}")
        if k.shape[:-1] != v.shape[:-1]:
            raise _located(f"{self._name}: key {k.shape} and value {v.shape} must agree but in their last axis")
        if batched:
            nb = 0 if self.batch_first else 1
            if q.shape[nb] != k.shape[nb]:
                raise _located(f"{self._name}: query {q.shape} and key {k.shape} hold different batch sizes "
                               f"(batch_first={self.batch_first})")
            N = q.shape[nb]
            L, S = q.shape[1 - nb], k.shape[1 - nb]
        else:
            N, L, S = 1, q.shape[0], k.shape[0]
        if key_padding_mask is not None:
            want = (N, S) if batched else (S,)
            if _shape_of(key_padding_mask) != want:
                raise _located(f"{self._name}: key_padding_mask must have shape {want} for key {k.shape}, got "
                               f"{_shape_of(key_padding_mask)}")
        if attn_mask is not None:
            shape = _shape_of(attn_mask)
            wants = [(L, S), (N * H, L, S)]
            if shape not in wants:
                raise _located(f"{self._name}: attn_mask must have shape {wants[0]} or {wants[1]} "
                               f"((N * num_heads, L, S)) for query {q.shape} and key {k.shape}, got {shape}")
        return batched, N, L, S

    def forward(self, query, key, value, key_padding_mask=None, need_weights: bool = True, attn_mask=None,
                average_attn_weights: bool = True, is_causal: bool = False):
        """(output, attention weights or None); see the class."""
        name = self._name
        same_kv = key is value
        same_qkv = same_kv and query is key
        q = _operand(name, "query", query)
        k = q if same_qkv else _operand(name, "key", key)
        v = k if same_kv else _operand(name, "value", value)
        kpm = None if key_padding_mask is None else _mask_of(name, "key_padding_mask", key_padding_mask)
        am = None if attn_mask is None else _mask_of(name, "attn_mask", attn_mask)
        batched, N, L, S = self._check(q, k, v, kpm, am)
        if is_causal and am is None:
            raise _located(f"{name}: is_causal=True is a hint that attn_mask is the causal mask and needs "
                           f"one (as in PyTorch); make it with nn.Transformer.generate_square_subsequent_mask",
                           ValueError)
        # batch first inside: (N, L, E)
        if not batched:
            q, k, v = (x.unsqueeze(0) for x in (q, k, v))
            if kpm is not None:
                kpm = kpm.reshape((1, S))
        elif not self.batch_first:
            q, k, v = (x.swapaxes(0, 1) for x in (q, k, v))
        if same_qkv:
            k = v = q
        elif same_kv:
            v = k
        q, k, v = self._project(q, k, v)
        E, H, hd = self.embed_dim, self.num_heads, self.head_dim
        dtype = q.dtype
        pad = 0                                    # keys appended (bias_k, zero attention)
        zeros = _here(np.zeros((N, 1, E), dtype), k) if self.bias_k is not None or self.add_zero_attn else None
        if self.bias_k is not None:
            k = _np.concatenate([k, self.bias_k + zeros], axis=1)
            v = _np.concatenate([v, self.bias_v + zeros], axis=1)
            pad += 1
        if self.add_zero_attn:
            k = _np.concatenate([k, zeros], axis=1)
            v = _np.concatenate([v, zeros], axis=1)
            pad += 1
        S += pad
        q = q.reshape((N, L, H, hd)).transpose((0, 2, 1, 3))
        k = k.reshape((N, S, H, hd)).transpose((0, 2, 1, 3))
        v = v.reshape((N, S, H, hd)).transpose((0, 2, 1, 3))

        additive = None                            # (N or 1, H or 1, L or 1, S)
        causal_only = is_causal and kpm is None and not need_weights
        if causal_only:                            # PyTorch uses the causal mask and not attn_mask here
            additive = _causal(L, S, np.dtype(dtype))
        else:
            if am is not None:
                a = _additive(am, np.dtype(dtype), False)
                a = a.reshape((1, 1, L, S - pad)) if a.ndim == 2 else a.reshape((N, H, L, S - pad))
                additive = _pad_keys(a, pad, dtype)
            if kpm is not None:
                a = _pad_keys(_additive(kpm, np.dtype(dtype), False).reshape((N, 1, 1, S - pad)), pad, dtype)
                additive = a if additive is None else additive + a
        keep = None
        if additive is not None and not need_weights and not causal_only:
            additive, keep = _safe(additive, np.dtype(dtype))
        dropout_p = self.dropout if self.training else 0.0
        out, weights = _attend(q, k, v, additive, keep, dropout_p, 1.0 / math.sqrt(hd))
        out = self.out_proj(out.transpose((0, 2, 1, 3)).reshape((N, L, E)))
        if not batched:
            out = out.reshape((L, E))
        elif not self.batch_first:
            out = out.swapaxes(0, 1)
        if not need_weights:
            return out, None
        if average_attn_weights:
            weights = weights.mean(axis=1)
        if not batched:
            weights = weights.reshape(weights.shape[1:])
        return out, weights


def _pad_keys(additive, pad, dtype):
    """The mask widened by ``pad`` keys that take part (bias_k, zero attention): zeros."""
    if not pad:
        return additive
    zeros = np.zeros(_shape_of(additive)[:-1] + (pad,), dtype)
    if isinstance(additive, Var):
        zeros = _here(zeros, additive)
    return _np.concatenate([additive, zeros], axis=-1)
