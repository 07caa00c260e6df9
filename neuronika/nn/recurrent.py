"""Recurrent layers: RNNCell, LSTMCell, GRUCell and the sequence modules RNN, LSTM, GRU.

Gate order, equations, parameter names and shapes, and the default initialisation
(every weight and bias uniform in +-1/sqrt(hidden_size)) are PyTorch's, so a
state dict moves between the two unchanged.

>>> import neuronika
>>> from neuronika.nn.recurrent import LSTM
>>> lstm = LSTM(8, 16, num_layers=2)
>>> out, (h_n, c_n) = lstm(neuronika.rand((5, 3, 8)))      # (L, N, input_size)
>>> out.shape, h_n.shape, c_n.shape
((5, 3, 16), (2, 3, 16), (2, 3, 16))
>>> [name for name, _ in lstm.named_parameters()][:4]
['weight_ih_l0', 'weight_hh_l0', 'bias_ih_l0', 'bias_hh_l0']

A state the caller does not give starts at zeros; the products with it are left out
of the graph (they would add nothing).
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ..creation import stack
from ..errors import ShapeError
from ..variable import Var
from . import init
from ._checks import float_dtype
from .layers import as_var, check_input
from .module import Module, parameter

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def _positive(layer, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return int(value)


def _activation(layer, nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"{layer}: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    return nonlinearity


def _shape_text(shape):
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _check_state(layer, what, value, expected):
    """``value`` (a state given by the caller) as a Var of shape ``expected``."""
    value = as_var(value, layer)
    if value.shape != tuple(expected):
        raise ShapeError(f"{layer!r}: expected {what} of shape {_shape_text(expected)}, got {value.shape}")
    return value


# ---- one step of each cell, shared by the cells and the sequence modules -------------------------
# ``gx`` is the input's contribution x W_ih^T (+ biases, see each function), (N, gates * H);
# ``h`` (and ``c``) is None for a zero state.

def _rnn_step(gx, h, w_hh, relu):
    """act(gx + h W_hh^T), with both biases already in gx."""
    pre = gx if h is None else gx + h.mm_t(w_hh)
    return pre.relu() if relu else pre.tanh()


def _lstm_step(gx, h, c, w_hh, hidden):
    """(h', c') with gates i, f, g, o; both biases already in gx."""
    gates = gx if h is None else gx + h.mm_t(w_hh)
    sig = gates.sigmoid()       # one call for i, f and o (the g columns are not read)
    i = sig[:, :hidden]
    o = sig[:, 3 * hidden:]
    g = gates[:, 2 * hidden:3 * hidden].tanh()
    if c is None:
        c_next = i * g
    else:
        c_next = sig[:, hidden:2 * hidden] * c + i * g
    return o * c_next.tanh(), c_next


def _gru_step(gx, h, w_hh, b_hh, hidden):
    """h' with gates r, z, n; gx holds b_ih, ``b_hh`` (or None) is added to h W_hh^T here
    because its n part is scaled by r."""
    two = 2 * hidden
    if h is None:
        gh = b_hh       # h W_hh^T is zero; b_hh (1-D) broadcasts, or is None without bias
    else:
        gh = h.mm_t(w_hh)
        if b_hh is not None:
            gh = gh + b_hh
    if gh is None:
        rz = gx[:, :two].sigmoid()
        n = gx[:, two:].tanh()
    else:
        rz = (gx[:, :two] + gh[..., :two]).sigmoid()
        n = (gx[:, two:] + rz[:, :hidden] * gh[..., two:]).tanh()
    z = rz[:, hidden:]
    # (1 - z) * n + z * h, with one product fewer
    return n - z * n if h is None else n + z * (h - n)


# ---- cells -------------------------------------------------------------------------------------------

class _CellBase(Module):
    _gates = 1

    def __init__(self, input_size, hidden_size, bias, dtype):
        super().__init__()
        name = type(self).__name__
        self.input_size = _positive(name, "input_size", input_size)
        self.hidden_size = _positive(name, "hidden_size", hidden_size)
        dtype = float_dtype(name, dtype)
        rows = self._gates * self.hidden_size
        self.weight_ih = parameter(np.empty((rows, self.input_size), dtype))
        self.weight_hh = parameter(np.empty((rows, self.hidden_size), dtype))
        if bias:
            self.bias_ih = parameter(np.empty(rows, dtype))
            self.bias_hh = parameter(np.empty(rows, dtype))
        else:
            self.bias_ih = self.bias_hh = None
        self.reset_parameters()

    @property
    def bias(self) -> bool:
        return self.bias_ih is not None

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in +-1/sqrt(hidden_size), as PyTorch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _input(self, x):
        """(x as a 2-D Var, whether the call is unbatched)."""
        x = as_var(x, self)
        check_input(self, x, x.ndim in (1, 2) and x.shape[-1] == self.input_size,
                    f"(N, {self.input_size}) or ({self.input_size},)")
        if x.ndim == 1:
            return x.reshape(1, self.input_size), True
        return x, False

    def _state(self, value, what, x, unbatched):
        if value is None:
            return None
        expected = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
        value = _check_state(self, what, value, expected)
        return value.reshape(1, self.hidden_size) if unbatched else value

    def _gx(self, x, fold_hh=True):
        gx = x.mm_t(self.weight_ih)
        if self.bias_ih is None:
            return gx
        return gx + (self.bias_ih + self.bias_hh) if fold_hh else gx + self.bias_ih

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.bias_ih is None:
            text += ", bias=False"
        return text


class RNNCell(_CellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu.

    Input (N, input_size) or (input_size,), state (N, hidden_size) or (hidden_size,);
    ``cell(x)`` starts from zeros.

    >>> import neuronika
    >>> from neuronika.nn.recurrent import RNNCell
    >>> cell = RNNCell(3, 4)
    >>> h = cell(neuronika.rand((2, 3)))
    >>> cell(neuronika.rand((2, 3)), h).shape
    (2, 4)
    """

    _gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", dtype=np.float32):
        _activation("RNNCell", nonlinearity)
        super().__init__(input_size, hidden_size, bias, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, x, hx=None) -> Var:
        x, unbatched = self._input(x)
        h = self._state(hx, "a hidden state", x, unbatched)
        out = _rnn_step(self._gx(x), h, self.weight_hh, self.nonlinearity == "relu")
        return out.reshape(self.hidden_size) if unbatched else out

    def extra_repr(self):
        text = super().extra_repr()
        return text + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTMCell(_CellBase):
    """One LSTM step, gates i, f, g, o (the rows of weight_ih / weight_hh in that order):

    i, f, o = sigmoid(.), g = tanh(.) of x W_ih^T + b_ih + h W_hh^T + b_hh;
    c' = f * c + i * g; h' = o * tanh(c').

    ``cell(x, (h, c))`` or ``cell(x)`` (zeros); returns ``(h', c')``.

    >>> import neuronika
    >>> from neuronika.nn.recurrent import LSTMCell
    >>> cell = LSTMCell(3, 4)
    >>> h, c = cell(neuronika.rand((2, 3)))
    >>> h, c = cell(neuronika.rand((2, 3)), (h, c))
    >>> h.shape, c.shape
    ((2, 4), (2, 4))
    """

    _gates = 4

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, dtype)

    def forward(self, x, hx=None):
        x, unbatched = self._input(x)
        if hx is None:
            h = c = None
        else:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{self!r}: the state must be a pair (h, c), got {type(hx).__name__}")
            h = self._state(hx[0], "a hidden state h", x, unbatched)
            c = self._state(hx[1], "a cell state c", x, unbatched)
        h, c = _lstm_step(self._gx(x), h, c, self.weight_hh, self.hidden_size)
        if unbatched:
            return h.reshape(self.hidden_size), c.reshape(self.hidden_size)
        return h, c


class GRUCell(_CellBase):
    """One GRU step, gates r, z, n (the rows of weight_ih / weight_hh in that order):

    r = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr), z likewise,
    n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn)), h' = (1 - z) * n + z * h.

    >>> import neuronika
    >>> from neuronika.nn.recurrent import GRUCell
    >>> cell = GRUCell(3, 4)
    >>> cell(neuronika.rand((2, 3)), neuronika.zeros((2, 4))).shape
    (2, 4)
    """

    _gates = 3

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, dtype=np.float32):
        super().__init__(input_size, hidden_size, bias, dtype)

    def forward(self, x, hx=None) -> Var:
        x, unbatched = self._input(x)
        h = self._state(hx, "a hidden state", x, unbatched)
        out = _gru_step(self._gx(x, fold_hh=False), h, self.weight_hh, self.bias_hh, self.hidden_size)
        return out.reshape(self.hidden_size) if unbatched else out


# ---- sequence modules -----------------------------------------------------------------------------------

class _RNNBase(Module):
    def __init__(self, mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype):
        super().__init__()
        name = type(self).__name__
        self.mode = mode
        self.input_size = _positive(name, "input_size", input_size)
        self.hidden_size = _positive(name, "hidden_size", hidden_size)
        self.num_layers = _positive(name, "num_layers", num_layers)
        if not isinstance(dropout, numbers.Real) or isinstance(dropout, bool) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and self.num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} acts between layers, so with num_layers=1 it "
                          f"does nothing", stacklevel=3)
        dtype = float_dtype(name, dtype)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        rows = _GATES[self.mode] * self.hidden_size
        for layer in range(self.num_layers):
            fan_in = self.input_size if layer == 0 else self.hidden_size
            setattr(self, f"weight_ih_l{layer}", parameter(np.empty((rows, fan_in), dtype)))
            setattr(self, f"weight_hh_l{layer}", parameter(np.empty((rows, self.hidden_size), dtype)))
            if self.bias:
                setattr(self, f"bias_ih_l{layer}", parameter(np.empty(rows, dtype)))
                setattr(self, f"bias_hh_l{layer}", parameter(np.empty(rows, dtype)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every weight and bias uniform in +-1/sqrt(hidden_size), as PyTorch."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def _layer_parameters(self, layer):
        w_ih = getattr(self, f"weight_ih_l{layer}")
        w_hh = getattr(self, f"weight_hh_l{layer}")
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, f"bias_ih_l{layer}"), getattr(self, f"bias_hh_l{layer}")

    @property
    def all_weights(self) -> list:
        """Per layer, [weight_ih, weight_hh, bias_ih, bias_hh] (the biases only with bias=True)."""
        return [[p for p in self._layer_parameters(layer) if p is not None]
                for layer in range(self.num_layers)]

    # ---- shapes -------------------------------------------------------------------------------------
    def _input(self, x):
        """(x batched, with the batch axis where batch_first says, whether unbatched)."""
        x = as_var(x, self)
        size = self.input_size
        layout = f"(N, L, {size})" if self.batch_first else f"(L, N, {size})"
        ok = x.ndim in (2, 3) and x.shape[-1] == size
        if ok:      # at least one step
            ok = x.shape[1 if self.batch_first and x.ndim == 3 else 0] > 0
        check_input(self, x, ok, f"{layout} or (L, {size}) unbatched, with L > 0")
        if x.ndim == 2:     # unbatched (L, I): a batch of one
            length = x.shape[0]
            return (x.reshape(1, length, size) if self.batch_first else x.reshape(length, 1, size)), True
        return x, False

    def _state(self, value, what, batch, unbatched):
        if value is None:
            return None
        expected = ((self.num_layers, self.hidden_size) if unbatched
                    else (self.num_layers, batch, self.hidden_size))
        value = _check_state(self, what, value, expected)
        return value.reshape(self.num_layers, 1, self.hidden_size) if unbatched else value

    def _initial(self, hx, batch, unbatched):
        """Per layer, the initial state (None for zeros): h, or (h, c) for LSTM."""
        h0 = self._state(hx, "an initial hidden state h_0", batch, unbatched)
        return [None if h0 is None else h0[layer] for layer in range(self.num_layers)]

    # ---- the loop -------------------------------------------------------------------------------------
    def _run(self, x, initial):
        """Run every layer over ``x`` (batched); returns (output, final states per layer)."""
        time_axis = 1 if self.batch_first else 0
        length, batch = x.shape[time_axis], x.shape[1 - time_axis]
        hidden = self.hidden_size
        finals = []
        out = x
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._layer_parameters(layer)
            # The input projection of every step at once: one product for the layer.
            features = out.shape[-1]
            # -1 for the length: the program serves every length (``transform.families``);
            # an empty batch leaves nothing to infer it from
            steps = -1 if batch else length
            gx = out.reshape(-1 if batch else 0, features).mm_t(w_ih)
            if b_ih is not None:
                gx = gx + (b_ih if self.mode == "GRU" else b_ih + b_hh)
            gx = gx.reshape((batch, steps, gx.shape[-1]) if self.batch_first else (steps, batch, gx.shape[-1]))
            state = initial[layer]
            steps = []
            for t in range(length):
                gx_t = gx[:, t] if self.batch_first else gx[t]
                state = self._step(gx_t, state, w_hh, b_hh, hidden)
                steps.append(state[0] if self.mode == "LSTM" else state)
            finals.append(state)
            out = stack(steps, axis=time_axis)
            if self.training and self.dropout > 0 and layer < self.num_layers - 1:
                out = out.dropout(self.dropout)
        return out, finals

    def _step(self, gx, state, w_hh, b_hh, hidden):
        return _rnn_step(gx, state, w_hh, self.mode == "RNN_RELU")

    def _finish(self, out, finals, unbatched):
        h_n = stack(finals)
        if unbatched:
            return out.reshape(out.shape[0] * out.shape[1], self.hidden_size), \
                h_n.reshape(self.num_layers, self.hidden_size)
        return out, h_n

    def forward(self, x, hx=None):
        x, unbatched = self._input(x)
        batch = x.shape[0 if self.batch_first else 1]
        out, finals = self._run(x, self._initial(hx, batch, unbatched))
        return self._finish(out, finals, unbatched)

    def extra_repr(self):
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        if not self.bias:
            text += ", bias=False"
        if self.batch_first:
            text += ", batch_first=True"
        if self.dropout:
            text += f", dropout={self.dropout}"
        return text


class RNN(_RNNBase):
    """A multi-layer Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_(t-1) W_hh^T + b_hh) per layer,
    act tanh or relu; each layer's outputs are the next one's inputs.

    ``rnn(x, h_0=None)`` with x (L, N, input_size) ((N, L, input_size) with batch_first, or
    (L, input_size) unbatched) and h_0 (num_layers, N, hidden_size) (zeros when left out);
    returns (output (L, N, hidden_size) or batch first: the last layer's h_t for every t,
    h_n (num_layers, N, hidden_size): every layer's last state). ``dropout`` drops the
    outputs of every layer but the last while training.

    >>> import neuronika
    >>> from neuronika.nn.recurrent import RNN
    >>> rnn = RNN(4, 6, num_layers=2, batch_first=True)
    >>> out, h_n = rnn(neuronika.rand((3, 5, 4)))
    >>> out.shape, h_n.shape
    ((3, 5, 6), (2, 3, 6))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, dtype=np.float32):
        mode = {"tanh": "RNN_TANH", "relu": "RNN_RELU"}[_activation("RNN", nonlinearity)]
        super().__init__(mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype)
        self.nonlinearity = nonlinearity


class LSTM(_RNNBase):
    """A multi-layer LSTM (the equations of LSTMCell, gates i, f, g, o, per layer).

    ``lstm(x, (h_0, c_0))`` or ``lstm(x)`` (zeros), x (L, N, input_size) ((N, L, input_size)
    with batch_first, or (L, input_size) unbatched), h_0 and c_0 (num_layers, N, hidden_size);
    returns (output, (h_n, c_n)), output (L, N, hidden_size) (or batch first).

    >>> import neuronika
    >>> from neuronika.nn.recurrent import LSTM
    >>> lstm = LSTM(4, 6)
    >>> out, (h_n, c_n) = lstm(neuronika.rand((5, 3, 4)))
    >>> out.shape, h_n.shape, c_n.shape
    ((5, 3, 6), (1, 3, 6), (1, 3, 6))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, dtype=np.float32):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype)

    def _initial(self, hx, batch, unbatched):
        if hx is None:
            return [None] * self.num_layers
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{self!r}: the initial state must be a pair (h_0, c_0), got "
                            f"{type(hx).__name__}")
        h0 = self._state(hx[0], "an initial hidden state h_0", batch, unbatched)
        c0 = self._state(hx[1], "an initial cell state c_0", batch, unbatched)
        return [(h0[layer], c0[layer]) for layer in range(self.num_layers)]

    def _step(self, gx, state, w_hh, b_hh, hidden):
        h, c = (None, None) if state is None else state
        return _lstm_step(gx, h, c, w_hh, hidden)

    def _finish(self, out, finals, unbatched):
        out, h_n = super()._finish(out, [h for h, _ in finals], unbatched)
        c_n = stack([c for _, c in finals])
        if unbatched:
            c_n = c_n.reshape(self.num_layers, self.hidden_size)
        return out, (h_n, c_n)


class GRU(_RNNBase):
    """A multi-layer GRU (the equations of GRUCell, gates r, z, n, per layer).

    ``gru(x, h_0=None)``: shapes as RNN; returns (output, h_n).

    >>> import neuronika
    >>> from neuronika.nn.recurrent import GRU
    >>> gru = GRU(4, 6, num_layers=2)
    >>> out, h_n = gru(neuronika.rand((5, 3, 4)))
    >>> out.shape, h_n.shape
    ((5, 3, 6), (2, 3, 6))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, dtype=np.float32):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, dtype)

    def _step(self, gx, state, w_hh, b_hh, hidden):
        return _gru_step(gx, state, w_hh, b_hh, hidden)
