"""Transformer layers with PyTorch's names, signatures and submodules (``self_attn``,
``multihead_attn``, ``linear1``, ``dropout``, ``linear2``, ``norm1``..., ``dropout1``...), so a
PyTorch state dict loads and gives the same outputs: TransformerEncoderLayer,
TransformerEncoder, TransformerDecoderLayer, TransformerDecoder and Transformer.

Inputs are (S, N, E) ((N, S, E) with ``batch_first``; (S, E) unbatched). Masks follow
``nn.MultiheadAttention``: a boolean ``*_mask`` or ``*_key_padding_mask`` marks with True what
is left out, a float one is added to the scores. ``*_is_causal`` are hints that the mask given
is the causal one (``Transformer.generate_square_subsequent_mask``); they need that mask.

>>> import neuronika
>>> from neuronika import nn
>>> layer = nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
>>> encoder = nn.TransformerEncoder(layer, num_layers=2)
>>> encoder(neuronika.randn((3, 5, 8))).shape
(3, 5, 8)
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend
from ..variable import Var, _located
from . import init
from ._checks import float_dtype, number, positive_int
from .attention import MultiheadAttention
from .functional import _layer_input, gelu
from .layers import Dropout, LayerNorm, Linear
from .module import Module, ModuleList

__all__ = ["TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer", "TransformerDecoder",
           "Transformer"]


def _relu(x) -> Var:
    return _layer_input("relu", x).relu()


def _activation(name, activation):
    if isinstance(activation, str):
        if activation == "relu":
            return _relu
        if activation == "gelu":
            return gelu
        raise ValueError(f"{name}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")
    if not callable(activation):
        raise TypeError(f"{name}: activation must be 'relu', 'gelu' or a callable, got "
                        f"{type(activation).__name__}")
    return activation


def _norm(d_model, eps, bias, dtype):
    return LayerNorm(d_model, eps=eps, bias=bias, dtype=dtype)


class _Layer(Module):
    """What the encoder and decoder layers share: the checks, the feed-forward block."""

    def _common(self, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, bias,
                dtype):
        name = type(self).__name__
        d_model = positive_int(name, "d_model", d_model)
        dim_feedforward = positive_int(name, "dim_feedforward", dim_feedforward)
        dropout = number(name, "dropout", dropout, 0.0, 1.0)
        eps = number(name, "layer_norm_eps", layer_norm_eps, 0.0, open_lo=True)
        dtype = float_dtype(name, dtype)
        act = _activation(name, activation)
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first,
                                            dtype=dtype)
        return d_model, dim_feedforward, dropout, eps, dtype, act

    def _feed_forward_parts(self, d_model, dim_feedforward, dropout, bias, dtype):
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias, dtype=dtype)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias, dtype=dtype)

    def _ff_block(self, x, last_dropout):
        return last_dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))

    def _input(self, label, x):
        x = _layer_input(type(self).__name__, x)
        d = self.self_attn.embed_dim
        if x.ndim not in (2, 3) or x.shape[-1] != d:
            raise _located(f"{type(self).__name__}: {label} must have shape (S, N, {d}) ((N, S, {d}) with "
                           f"batch_first, (S, {d}) unbatched), got {x.shape}")
        return x


class TransformerEncoderLayer(_Layer):
    """Self-attention and a feed-forward block, each with a residual connection and layer
    normalisation (after it, or before it with ``norm_first``), as PyTorch's.

    >>> import neuronika
    >>> from neuronika import nn
    >>> layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16)
    >>> layer(neuronika.randn((5, 3, 8))).shape
    (5, 3, 8)
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype=np.float32):
        super().__init__()
        d_model, dim_feedforward, dropout, eps, dtype, act = self._common(
            d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, bias, dtype)
        self._feed_forward_parts(d_model, dim_feedforward, dropout, bias, dtype)
        self.norm_first = bool(norm_first)
        self.norm1 = _norm(d_model, eps, bias, dtype)
        self.norm2 = _norm(d_model, eps, bias, dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = act

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal: bool = False) -> Var:
        x = self._input("src", src)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            return x + self._ff_block(self.norm2(x), self.dropout2)
        x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
        return self.norm2(x + self._ff_block(x, self.dropout2))

    def _sa_block(self, x, mask, key_padding_mask, is_causal):
        out = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=key_padding_mask, need_weights=False,
                             is_causal=is_causal)[0]
        return self.dropout1(out)


class TransformerDecoderLayer(_Layer):
    """Self-attention, attention over the encoder's output (``memory``) and a feed-forward
    block, each with a residual connection and layer normalisation, as PyTorch's.

    >>> import neuronika
    >>> from neuronika import nn
    >>> layer = nn.TransformerDecoderLayer(8, 2, dim_feedforward=16, batch_first=True)
    >>> layer(neuronika.randn((3, 4, 8)), neuronika.randn((3, 6, 8))).shape
    (3, 4, 8)
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
                 norm_first: bool = False, bias: bool = True, dtype=np.float32):
        super().__init__()
        d_model, dim_feedforward, dropout, eps, dtype, act = self._common(
            d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, bias, dtype)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias,
                                                 batch_first=batch_first, dtype=dtype)
        self._feed_forward_parts(d_model, dim_feedforward, dropout, bias, dtype)
        self.norm_first = bool(norm_first)
        self.norm1 = _norm(d_model, eps, bias, dtype)
        self.norm2 = _norm(d_model, eps, bias, dtype)
        self.norm3 = _norm(d_model, eps, bias, dtype)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = act

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool = False, memory_is_causal: bool = False) -> Var:
        x = self._input("tgt", tgt)
        memory = self._input("memory", memory)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal)
            x = x + self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                    memory_is_causal)
            return x + self._ff_block(self.norm3(x), self.dropout3)
        x = self.norm1(x + self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal))
        x = self.norm2(x + self._mha_block(x, memory, memory_mask, memory_key_padding_mask, memory_is_causal))
        return self.norm3(x + self._ff_block(x, self.dropout3))

    def _sa_block(self, x, mask, key_padding_mask, is_causal):
        out = self.self_attn(x, x, x, attn_mask=mask, key_padding_mask=key_padding_mask, need_weights=False,
                             is_causal=is_causal)[0]
        return self.dropout1(out)

    def _mha_block(self, x, memory, mask, key_padding_mask, is_causal):
        out = self.multihead_attn(x, memory, memory, attn_mask=mask, key_padding_mask=key_padding_mask,
                                  need_weights=False, is_causal=is_causal)[0]
        return self.dropout2(out)


def _clones(name, layer, kind, num_layers):
    if not isinstance(layer, kind):
        raise TypeError(f"{name}: expected a {kind.__name__}, got {type(layer).__name__}")
    num_layers = positive_int(name, "num_layers", num_layers)
    return ModuleList(copy.deepcopy(layer) for _ in range(num_layers))


def _optional_norm(name, norm):
    if norm is not None and not callable(norm):
        raise TypeError(f"{name}: norm must be a module (a LayerNorm, say) or None, got {type(norm).__name__}")
    return norm


class TransformerEncoder(Module):
    """``num_layers`` copies of ``encoder_layer`` (each with its own parameters, all starting
    from the layer's), then ``norm`` if given, as PyTorch's. ``enable_nested_tensor`` and
    ``mask_check`` (PyTorch's speed options) are accepted and change nothing.

    >>> import neuronika
    >>> from neuronika import nn
    >>> encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16), 2, norm=nn.LayerNorm(8))
    >>> [name for name, _ in encoder.named_parameters()][-2:]
    ['norm.weight', 'norm.bias']
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer, num_layers: int, norm: Module | None = None,
                 enable_nested_tensor: bool = True, mask_check: bool = True):
        super().__init__()
        self.layers = _clones("TransformerEncoder", encoder_layer, TransformerEncoderLayer, num_layers)
        self.num_layers = len(self.layers)
        self.norm = _optional_norm("TransformerEncoder", norm)

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal: bool | None = None) -> Var:
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return self.norm(x) if self.norm is not None else x


class TransformerDecoder(Module):
    """``num_layers`` copies of ``decoder_layer``, then ``norm`` if given, as PyTorch's.

    >>> import neuronika
    >>> from neuronika import nn
    >>> decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(8, 2, 16), 2)
    >>> decoder(neuronika.randn((4, 3, 8)), neuronika.randn((6, 3, 8))).shape
    (4, 3, 8)
    """

    def __init__(self, decoder_layer: TransformerDecoderLayer, num_layers: int, norm: Module | None = None):
        super().__init__()
        self.layers = _clones("TransformerDecoder", decoder_layer, TransformerDecoderLayer, num_layers)
        self.num_layers = len(self.layers)
        self.norm = _optional_norm("TransformerDecoder", norm)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal: bool | None = None,
                memory_is_causal: bool = False) -> Var:
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                      tgt_key_padding_mask=tgt_key_padding_mask, memory_key_padding_mask=memory_key_padding_mask,
                      tgt_is_causal=bool(tgt_is_causal), memory_is_causal=memory_is_causal)
        return self.norm(x) if self.norm is not None else x


class Transformer(Module):
    """The encoder-decoder model of "Attention is all you need", as PyTorch's ``nn.Transformer``:
    ``encoder`` (``num_encoder_layers`` layers and a final LayerNorm) and ``decoder``; every
    parameter with two or more dimensions is initialised Xavier-uniform.
    ``forward(src, tgt, ...)`` encodes ``src`` and decodes ``tgt`` against it.

    >>> import neuronika
    >>> from neuronika import nn
    >>> model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
    ...                        dim_feedforward=16, batch_first=True)
    >>> tgt_mask = nn.Transformer.generate_square_subsequent_mask(4)
    >>> model(neuronika.randn((2, 6, 8)), neuronika.randn((2, 4, 8)), tgt_mask=tgt_mask).shape
    (2, 4, 8)
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation="relu", custom_encoder: Module | None = None, custom_decoder: Module | None = None,
                 layer_norm_eps: float = 1e-5, batch_first: bool = False, norm_first: bool = False,
                 bias: bool = True, dtype=np.float32):
        super().__init__()
        options = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                       layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first, bias=bias,
                       dtype=dtype)
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(d_model, nhead, **options)
            self.encoder = TransformerEncoder(layer, num_encoder_layers, _norm(layer.self_attn.embed_dim,
                                                                               layer.norm1.eps, bias, dtype))
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(d_model, nhead, **options)
            self.decoder = TransformerDecoder(layer, num_decoder_layers, _norm(layer.self_attn.embed_dim,
                                                                               layer.norm1.eps, bias, dtype))
        for p in self.parameters():
            if p.data.ndim > 1:
                init.xavier_uniform_(p)
        self.d_model = int(d_model)
        self.nhead = int(nhead)
        self.batch_first = bool(batch_first)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal: bool | None = None,
                tgt_is_causal: bool | None = None, memory_is_causal: bool = False) -> Var:
        src, tgt = _layer_input("Transformer", src), _layer_input("Transformer", tgt)
        if src.ndim != tgt.ndim or src.ndim not in (2, 3):
            raise _located(f"Transformer: src and tgt must both be 3-D (batched) or 2-D (unbatched), got "
                           f"{src.shape} and {tgt.shape}")
        axis = 0 if self.batch_first else 1
        if src.ndim == 3 and src.shape[axis] != tgt.shape[axis]:
            raise _located(f"Transformer: the batch number of src and tgt must be equal, got {src.shape} and "
                           f"{tgt.shape} (batch_first={self.batch_first})")
        if src.shape[-1] != self.d_model or tgt.shape[-1] != self.d_model:
            raise _located(f"Transformer: the feature number of src and tgt must be equal to d_model "
                           f"({self.d_model}), got {src.shape} and {tgt.shape}")
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz: int, device=None, dtype=None):
        """The (sz, sz) causal mask: 0 on and below the diagonal, -inf above (a query sees
        itself and the positions before it); float32 unless ``dtype`` says otherwise, a NumPy
        array unless ``device`` names another (as ``Module.to`` does: ``"cuda"``, ...).

        >>> from neuronika import nn
        >>> nn.Transformer.generate_square_subsequent_mask(3)
        array([[  0., -inf, -inf],
               [  0.,   0., -inf],
               [  0.,   0.,   0.]], dtype=float32)
        """
        sz = positive_int("generate_square_subsequent_mask", "sz", sz, minimum=0)
        dtype = float_dtype("generate_square_subsequent_mask", np.float32 if dtype is None else dtype)
        mask = np.where(np.tri(sz, dtype=bool), dtype.type(0), dtype.type(-np.inf))
        return mask if device is None else backend.move(mask, backend.resolve(device))
