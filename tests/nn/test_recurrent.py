"""Recurrent layers: RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU.

Forward values against a NumPy transcription of PyTorch's equations, gradients against
finite differences (float64), the sequence modules against the cells looped by hand,
and (when torch is importable) everything against torch.nn.
"""
import math
import warnings

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import Linear
from neuronika.nn.recurrent import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell
from neuronika.testing import oracle, check_grad


def rng(seed=0):
    return np.random.default_rng(seed)


def randn(*shape, seed=0):
    return rng(seed).standard_normal(shape)


# ---- NumPy references: PyTorch's equations, gate by gate ---------------------------------------

def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def ref_rnn_cell(x, h, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh"):
    pre = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    return np.tanh(pre) if nonlinearity == "tanh" else np.maximum(pre, 0)


def ref_lstm_cell(x, h, c, w_ih, w_hh, b_ih, b_hh):
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(gates, 4, axis=1)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c = f * c + i * g
    return o * np.tanh(c), c


def ref_gru_cell(x, h, w_ih, w_hh, b_ih, b_hh):
    w_ir, w_iz, w_in = np.split(w_ih, 3)
    w_hr, w_hz, w_hn = np.split(w_hh, 3)
    b_ir, b_iz, b_in = np.split(b_ih, 3)
    b_hr, b_hz, b_hn = np.split(b_hh, 3)
    r = sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
    z = sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
    n = np.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
    return (1 - z) * n + z * h


def cell_params(cell):
    """(w_ih, w_hh, b_ih, b_hh) as arrays; zero biases for bias=False."""
    rows = cell.weight_ih.shape[0]
    zeros = np.zeros(rows)
    b_ih = cell.bias_ih.data if cell.bias_ih is not None else zeros
    b_hh = cell.bias_hh.data if cell.bias_hh is not None else zeros
    return cell.weight_ih.data, cell.weight_hh.data, b_ih, b_hh


def bind(module, arrays_or_vars):
    """Swap the module's parameters (in named_parameters order) for the given values."""
    owners = [(m, name) for m in module.modules() for name in m._parameters]
    for (m, name), v in zip(owners, arrays_or_vars):
        object.__setattr__(m, name, v)


def param_arrays(module):
    return [p.data.copy() for p in module.parameters()]


# ---- construction: names, shapes, init ---------------------------------------------------------------

@pytest.mark.parametrize("cls, gates", [(RNNCell, 1), (LSTMCell, 4), (GRUCell, 3)])
def test_cell_parameter_names_shapes_and_init(cls, gates):
    nk.manual_seed(0)
    cell = cls(10, 20)
    shapes = {name: p.shape for name, p in cell.named_parameters()}
    assert shapes == {"weight_ih": (gates * 20, 10), "weight_hh": (gates * 20, 20),
                      "bias_ih": (gates * 20,), "bias_hh": (gates * 20,)}
    assert list(cell.state_dict()) == ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    bound = 1 / math.sqrt(20)
    for p in cell.parameters():
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.8 * bound
    no_bias = cls(10, 20, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih", "weight_hh"]
    assert no_bias.bias is False and cell.bias is True


def test_init_is_reproducible_under_manual_seed():
    nk.manual_seed(3)
    a = param_arrays(LSTM(3, 4, num_layers=2))
    nk.manual_seed(3)
    b = param_arrays(LSTM(3, 4, num_layers=2))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("cls, gates", [(RNN, 1), (LSTM, 4), (GRU, 3)])
def test_sequence_parameter_names_and_shapes(cls, gates):
    module = cls(5, 6, num_layers=3, dtype=np.float64)
    expected = {}
    for k in range(3):
        fan_in = 5 if k == 0 else 6
        expected.update({f"weight_ih_l{k}": (gates * 6, fan_in), f"weight_hh_l{k}": (gates * 6, 6),
                         f"bias_ih_l{k}": (gates * 6,), f"bias_hh_l{k}": (gates * 6,)})
    assert list(module.state_dict()) == list(expected)
    assert {n: v.shape for n, v in module.state_dict().items()} == expected
    assert all(p.dtype == np.float64 for p in module.parameters())
    bound = 1 / math.sqrt(6)
    assert all(np.abs(p.data).max() <= bound for p in module.parameters())
    assert [len(ws) for ws in module.all_weights] == [4, 4, 4]
    no_bias = cls(5, 6, num_layers=2, bias=False)
    assert list(no_bias.state_dict()) == ["weight_ih_l0", "weight_hh_l0", "weight_ih_l1", "weight_hh_l1"]


def test_reprs():
    assert repr(LSTM(3, 4)) == "LSTM(3, 4)"
    assert repr(GRU(3, 4, num_layers=2, batch_first=True, dropout=0.5)) == \
        "GRU(3, 4, num_layers=2, batch_first=True, dropout=0.5)"
    assert repr(RNN(3, 4, nonlinearity="relu", bias=False)) == "RNN(3, 4, nonlinearity='relu', bias=False)"
    assert repr(RNNCell(3, 4, nonlinearity="relu")) == "RNNCell(3, 4, nonlinearity='relu')"
    assert repr(LSTMCell(3, 4, bias=False)) == "LSTMCell(3, 4, bias=False)"


# ---- cells: values ----------------------------------------------------------------------------------------

CELLS = [
    pytest.param(lambda b: RNNCell(3, 4, bias=b, dtype=np.float64), "rnn_tanh", id="rnn-tanh"),
    pytest.param(lambda b: RNNCell(3, 4, bias=b, nonlinearity="relu", dtype=np.float64), "rnn_relu",
                 id="rnn-relu"),
    pytest.param(lambda b: LSTMCell(3, 4, bias=b, dtype=np.float64), "lstm", id="lstm"),
    pytest.param(lambda b: GRUCell(3, 4, bias=b, dtype=np.float64), "gru", id="gru"),
]


def reference_cell(kind, cell, x, h, c=None):
    params = cell_params(cell)
    if kind == "lstm":
        return ref_lstm_cell(x, h, c, *params)
    if kind == "gru":
        return ref_gru_cell(x, h, *params)
    return ref_rnn_cell(x, h, *params, nonlinearity="tanh" if kind == "rnn_tanh" else "relu")


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("make, kind", CELLS)
def test_cell_forward_matches_reference(make, kind, bias):
    nk.manual_seed(1)
    cell = make(bias)
    x, h, c = randn(5, 3, seed=1), randn(5, 4, seed=2), randn(5, 4, seed=3)
    zeros = np.zeros((5, 4))
    if kind == "lstm":
        for state, (h_ref, c_ref) in [((h, c), reference_cell(kind, cell, x, h, c)),
                                      (None, reference_cell(kind, cell, x, zeros, zeros))]:
            got_h, got_c = cell(x, state) if state is not None else cell(x)
            np.testing.assert_allclose(got_h.data, h_ref, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(got_c.data, c_ref, rtol=1e-12, atol=1e-14)
    else:
        np.testing.assert_allclose(cell(x, h).data, reference_cell(kind, cell, x, h), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(cell(x).data, reference_cell(kind, cell, x, zeros), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make, kind", CELLS)
def test_cell_unbatched_equals_batch_of_one(make, kind):
    cell = make(True)
    x, h = randn(3, seed=4), randn(4, seed=5)
    if kind == "lstm":
        got = cell(x, (h, h))
        want = cell(x[None], (h[None], h[None]))
        assert got[0].shape == got[1].shape == (4,)
        np.testing.assert_allclose(got[0].data, want[0].data[0], rtol=1e-14)
        np.testing.assert_allclose(got[1].data, want[1].data[0], rtol=1e-14)
    else:
        got = cell(x, h)
        assert got.shape == (4,)
        np.testing.assert_allclose(got.data, cell(x[None], h[None]).data[0], rtol=1e-14)


def test_cells_keep_float32():
    x = nk.rand((2, 3))
    assert RNNCell(3, 4)(x).dtype == np.float32
    assert all(v.dtype == np.float32 for v in LSTMCell(3, 4)(x))
    assert GRUCell(3, 4)(x, nk.zeros((2, 4))).dtype == np.float32


# ---- cells: gradients -------------------------------------------------------------------------------------

@pytest.mark.parametrize("with_state", [True, False])
@pytest.mark.parametrize("make, kind", CELLS)
def test_cell_gradients(make, kind, with_state):
    """d/d(x, h (and c), every parameter) against finite differences."""
    nk.manual_seed(2)
    cell = make(True)
    params = param_arrays(cell)
    x = randn(2, 3, seed=6)
    # relu: keep the pre-activations away from the kink
    h, c = randn(2, 4, seed=7), randn(2, 4, seed=8)
    n_params = len(params)

    if kind == "lstm":
        def fn(xv, *rest):
            bind(cell, rest[:n_params])
            state = tuple(rest[n_params:]) if with_state else None
            h_out, c_out = cell(xv, state)
            return nk.stack([h_out, c_out])         # both outputs checked at once
        states = (h, c) if with_state else ()
    else:
        def fn(xv, *rest):
            bind(cell, rest[:n_params])
            return cell(xv, rest[n_params] if with_state else None)
        states = (h,) if with_state else ()
    check_grad(fn, x, *params, *states)


# ---- sequence modules: against the cells looped by hand ------------------------------------------------

SEQUENCES = [
    pytest.param(lambda **kw: RNN(3, 4, dtype=np.float64, **kw), RNNCell, {}, id="rnn-tanh"),
    pytest.param(lambda **kw: RNN(3, 4, nonlinearity="relu", dtype=np.float64, **kw), RNNCell,
                 {"nonlinearity": "relu"}, id="rnn-relu"),
    pytest.param(lambda **kw: LSTM(3, 4, dtype=np.float64, **kw), LSTMCell, {}, id="lstm"),
    pytest.param(lambda **kw: GRU(3, 4, dtype=np.float64, **kw), GRUCell, {}, id="gru"),
]


def cells_of(module, cell_cls, extra):
    """Cells carrying the sequence module's parameters, one per layer."""
    cells = []
    for k in range(module.num_layers):
        fan_in = module.input_size if k == 0 else module.hidden_size
        cell = cell_cls(fan_in, module.hidden_size, bias=module.bias, dtype=np.float64, **extra)
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            if getattr(cell, name) is not None:
                getattr(cell, name).data = getattr(module, f"{name}_l{k}").data
        cells.append(cell)
    return cells


def flat(out, final):
    """The output and the final state(s) as one vector: one root, one program."""
    finals = final if isinstance(final, tuple) else (final,)
    return nk.concatenate([v.reshape(-1) for v in (out,) + finals]).data


def loop_by_hand(cells, x, state, lstm):
    """x (L, N, I); state per layer (h or (h, c)) or None; returns (outputs (L, N, H), finals)."""
    inputs = [x[t] for t in range(x.shape[0])]
    finals = []
    for k, cell in enumerate(cells):
        s = None if state is None else ((state[0][k], state[1][k]) if lstm else state[k])
        outputs = []
        for x_t in inputs:
            # each step on the arrays of the last: one small graph, compiled once
            s = tuple(v.data for v in cell(x_t, s)) if lstm else cell(x_t, s).data
            outputs.append(s[0] if lstm else s)
        finals.append(s)
        inputs = outputs
    return np.stack(inputs), finals


@pytest.mark.parametrize("num_layers, given_state, batch_first", [
    (1, False, False), (1, True, True), (2, True, False), (2, False, True)])
@pytest.mark.parametrize("make, cell_cls, extra", SEQUENCES)
def test_sequence_matches_cells_looped_by_hand(make, cell_cls, extra, num_layers, batch_first, given_state):
    nk.manual_seed(4)
    module = make(num_layers=num_layers, batch_first=batch_first)
    lstm = cell_cls is LSTMCell
    L, N = 5, 2
    x = randn(L, N, 3, seed=9)
    state = None
    if given_state:
        h0, c0 = randn(num_layers, N, 4, seed=10), randn(num_layers, N, 4, seed=11)
        state = (h0, c0) if lstm else h0
    out, final = module(x.transpose(1, 0, 2) if batch_first else x, state)
    want_out, want_finals = loop_by_hand(cells_of(module, cell_cls, extra), x, state, lstm)
    if batch_first:
        want_out = want_out.transpose(1, 0, 2)
    assert out.shape == want_out.shape == ((N, L, 4) if batch_first else (L, N, 4))
    finals = final if lstm else (final,)
    assert all(f.shape == (num_layers, N, 4) for f in finals)
    want_finals = [np.stack([f[i] for f in want_finals]) for i in range(2)] if lstm else [np.stack(want_finals)]
    want = np.concatenate([want_out.reshape(-1)] + [f.reshape(-1) for f in want_finals])
    got = flat(out, final)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    # the last layer's last output is its final state (the output is batch first or not)
    got_out = got[:out.size].reshape(out.shape)
    last = got_out[:, -1] if batch_first else got_out[-1]
    got_h_n = got[out.size:out.size + num_layers * N * 4].reshape(num_layers, N, 4)
    np.testing.assert_array_equal(last, got_h_n[-1])


@pytest.mark.parametrize("make, cell_cls, extra", SEQUENCES)
def test_sequence_without_bias(make, cell_cls, extra):
    module = make(num_layers=2, bias=False)
    x = randn(4, 3, 3, seed=12)
    out, _ = module(x)
    want, _ = loop_by_hand(cells_of(module, cell_cls, extra), x, None, cell_cls is LSTMCell)
    np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("make, cell_cls, extra", SEQUENCES)
def test_sequence_unbatched_equals_batch_of_one(make, cell_cls, extra):
    lstm = cell_cls is LSTMCell
    for batch_first in (False, True):
        module = make(num_layers=2, batch_first=batch_first)
        x, h0 = randn(3, 3, seed=13), randn(2, 4, seed=14)
        state = (h0, h0) if lstm else h0
        out, final = module(x, state)
        assert out.shape == (3, 4)
        assert all(f.shape == (2, 4) for f in (final if lstm else (final,)))
        batched_x = x[None] if batch_first else x[:, None]
        batched_state = (h0[:, None], h0[:, None]) if lstm else h0[:, None]
        np.testing.assert_allclose(flat(out, final), flat(*module(batched_x, batched_state)), rtol=1e-14)


def test_sequence_float32_and_variable_inputs():
    lstm = LSTM(3, 4, num_layers=2)
    out, (h_n, c_n) = lstm(nk.rand((5, 2, 3)), (nk.zeros((2, 2, 4)), nk.zeros((2, 2, 4))))
    assert out.dtype == h_n.dtype == c_n.dtype == np.float32
    assert out.shape == (5, 2, 4)


# ---- sequence modules: gradients ----------------------------------------------------------------------------

@pytest.mark.parametrize("cls, extra, batch_first", [
    (RNN, {}, False), (RNN, {"nonlinearity": "relu"}, True), (LSTM, {}, True), (GRU, {}, False),
    (GRU, {}, True)])
def test_sequence_gradients(cls, extra, batch_first):
    """Two layers, an initial state: d/d(x, h_0 (c_0), every parameter) of (output, final state)."""
    nk.manual_seed(5)
    module = cls(2, 2, num_layers=2, batch_first=batch_first, dtype=np.float64, **extra)
    lstm = cls is LSTM
    params = param_arrays(module)
    n_params = len(params)
    L, N = 3, 2
    x = randn(N, L, 2, seed=15) if batch_first else randn(L, N, 2, seed=15)
    states = (randn(2, N, 2, seed=16),) + ((randn(2, N, 2, seed=17),) if lstm else ())

    def fn(xv, *rest):
        bind(module, rest[:n_params])
        state = tuple(rest[n_params:]) if lstm else rest[n_params]
        out, final = module(xv, state)
        finals = list(final) if lstm else [final]
        # every output checked: the output and the final state(s), flattened together
        return nk.concatenate([out.reshape(-1)] + [f.reshape(-1) for f in finals])

    check_grad(fn, x, *params, *states)


def test_lstm_gradients_from_zero_state():
    """The products with a zero state are left out of the graph; the gradients are the same."""
    nk.manual_seed(6)
    module = LSTM(2, 3, dtype=np.float64)
    params = param_arrays(module)
    x = randn(3, 2, 2, seed=18)

    def fn(xv, *ps):
        bind(module, ps)
        out, (h_n, c_n) = module(xv)
        return nk.concatenate([out.reshape(-1), c_n.reshape(-1)])

    check_grad(fn, x, *params)


def test_backward_through_a_model_reaches_every_parameter():
    nk.manual_seed(7)
    gru = GRU(3, 5, num_layers=2)
    head = Linear(5, 1)
    out, h_n = gru(nk.rand((6, 4, 3)))
    loss = (head(out[-1]) ** 2).mean() + (h_n * h_n).mean()
    loss.backward()
    for name, p in gru.named_parameters():
        assert p.grad.shape == p.shape and np.abs(p.grad).sum() > 0, name


# ---- dropout between layers ----------------------------------------------------------------------------------

def test_dropout_acts_between_layers_only_while_training():
    nk.manual_seed(8)
    x = randn(4, 2, 3, seed=19)
    plain = GRU(3, 4, num_layers=2, dtype=np.float64)
    dropped = GRU(3, 4, num_layers=2, dropout=1.0, dtype=np.float64)
    dropped.load_state_dict(plain.state_dict())
    # p = 1 zeroes every output of layer 0: layer 1 then sees zeros, and its own output is kept
    out, h_n = dropped(x)
    cells = cells_of(dropped, GRUCell, {})
    want, _ = loop_by_hand(cells[1:], np.zeros((4, 2, 4)), None, False)
    np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-14)
    assert np.abs(out.data).min() > 0
    # the final state of layer 0 is not dropped
    np.testing.assert_allclose(h_n.data[0], plain(x)[1].data[0], rtol=1e-14)
    dropped.eval()
    np.testing.assert_allclose(dropped(x)[0].data, plain(x)[0].data, rtol=1e-14)


def test_dropout_with_one_layer_warns():
    with pytest.warns(UserWarning, match="num_layers=1"):
        LSTM(3, 4, dropout=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LSTM(3, 4, num_layers=2, dropout=0.5)


# ---- errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, bad", [
    (RNNCell(3, 4), (2, 5)), (LSTMCell(3, 4), (2, 2, 3)), (GRUCell(3, 4), ()),
    (RNN(3, 4), (5, 2, 2)), (LSTM(3, 4), (5, 2, 3, 1)), (GRU(3, 4, batch_first=True), (2, 5)),
    (LSTM(3, 4), (0, 2, 3)), (GRU(3, 4, batch_first=True), (2, 0, 3))])
def test_wrong_input_names_layer_and_shapes(module, bad):
    with pytest.raises(nk.ShapeError) as info:
        module(nk.zeros(bad))
    message = str(info.value)
    assert message.startswith(type(module).__name__ + "(3, 4")
    assert str(bad) in message and "3)" in message


def test_wrong_hidden_shapes_name_layer_expected_and_received():
    x = nk.zeros((5, 2, 3))
    with pytest.raises(nk.ShapeError, match=r"GRU\(3, 4, num_layers=2\).*\(2, 2, 4\).*\(1, 2, 4\)"):
        GRU(3, 4, num_layers=2)(x, nk.zeros((1, 2, 4)))
    with pytest.raises(nk.ShapeError, match=r"c_0 of shape \(1, 2, 4\), got \(1, 3, 4\)"):
        LSTM(3, 4)(x, (nk.zeros((1, 2, 4)), nk.zeros((1, 3, 4))))
    with pytest.raises(nk.ShapeError, match=r"h_0 of shape \(1, 5, 4\), got \(1, 2, 4\)"):
        RNN(3, 4, batch_first=True)(x, nk.zeros((1, 2, 4)))       # batch_first: N = 5
    with pytest.raises(nk.ShapeError, match=r"RNNCell\(3, 4\).*\(2, 4\), got \(2, 5\)"):
        RNNCell(3, 4)(nk.zeros((2, 3)), nk.zeros((2, 5)))
    with pytest.raises(nk.ShapeError, match=r"cell state c of shape \(2, 4\), got \(4,\)"):
        LSTMCell(3, 4)(nk.zeros((2, 3)), (nk.zeros((2, 4)), nk.zeros(4)))
    with pytest.raises(nk.ShapeError, match=r"\(4,\), got \(1, 4\)"):
        GRUCell(3, 4)(nk.zeros(3), nk.zeros((1, 4)))
    with pytest.raises(TypeError, match="pair"):
        LSTM(3, 4)(x, nk.zeros((1, 2, 4)))
    with pytest.raises(TypeError, match="pair"):
        LSTMCell(3, 4)(nk.zeros((2, 3)), nk.zeros((2, 4)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="nonlinearity"):
        RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="nonlinearity"):
        RNNCell(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match="hidden_size"):
        LSTM(3, 0)
    with pytest.raises(ValueError, match="num_layers"):
        GRU(3, 4, num_layers=0)
    with pytest.raises(ValueError, match="dropout"):
        GRU(3, 4, num_layers=2, dropout=1.5)
    with pytest.raises(ValueError, match="input_size"):
        LSTMCell(2.5, 4)


# ---- state dicts -----------------------------------------------------------------------------------------------

def test_state_dict_round_trip(tmp_path):
    nk.manual_seed(9)
    source = LSTM(3, 4, num_layers=2)
    nk.manual_seed(10)
    target = LSTM(3, 4, num_layers=2)
    x = nk.rand((5, 2, 3))
    assert not np.allclose(source(x)[0].data, target(x)[0].data)
    source.save(tmp_path / "lstm.npz")
    from neuronika.nn.module import load
    target.load_state_dict(load(tmp_path / "lstm.npz"))
    np.testing.assert_array_equal(source(x)[0].data, target(x)[0].data)


# ---- PyTorch ------------------------------------------------------------------------------------------------------

def to_torch(module, torch_module, torch):
    """Copy our parameters into torch's (the names line up)."""
    state = {name: torch.from_numpy(value) for name, value in module.state_dict().items()}
    torch_module.load_state_dict(state)


TORCH_SEQUENCES = [
    pytest.param("RNN", {"nonlinearity": "tanh"}, id="rnn-tanh"),
    pytest.param("RNN", {"nonlinearity": "relu"}, id="rnn-relu"),
    pytest.param("LSTM", {}, id="lstm"),
    pytest.param("GRU", {}, id="gru"),
]
OURS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU, "RNNCell": RNNCell, "LSTMCell": LSTMCell, "GRUCell": GRUCell}


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("name, extra", TORCH_SEQUENCES)
def test_sequence_matches_torch_values_and_gradients(name, extra, batch_first):
    torch = oracle("torch")
    nk.manual_seed(11)
    ours = OURS[name](3, 5, num_layers=2, batch_first=batch_first, dtype=np.float64, **extra)
    theirs = getattr(torch.nn, name)(3, 5, num_layers=2, batch_first=batch_first, **extra).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    to_torch(ours, theirs, torch)
    lstm = name == "LSTM"
    N, L = 2, 4
    x = randn(N, L, 3, seed=20) if batch_first else randn(L, N, 3, seed=20)
    h0, c0 = randn(2, N, 5, seed=21), randn(2, N, 5, seed=22)

    xv = nk.from_ndarray(x.copy()).requires_grad()
    hv, cv = nk.from_ndarray(h0.copy()).requires_grad(), nk.from_ndarray(c0.copy()).requires_grad()
    out, final = ours(xv, (hv, cv) if lstm else hv)
    xt = torch.tensor(x, requires_grad=True)
    ht, ct = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    out_t, final_t = theirs(xt, (ht, ct) if lstm else ht)
    finals = final if lstm else (final,)
    finals_t = final_t if lstm else (final_t,)
    np.testing.assert_allclose(flat(out, final), torch.cat([v.detach().reshape(-1) for v in (out_t,) + finals_t]),
                               rtol=1e-10, atol=1e-12)

    seeds = [randn(*out.shape, seed=23)] + [randn(*f.shape, seed=24 + i) for i, f in enumerate(finals)]
    loss = sum((v * s).sum() for v, s in zip((out,) + tuple(finals), seeds))
    loss.backward()
    loss_t = sum((v * torch.from_numpy(s)).sum() for v, s in zip((out_t,) + tuple(finals_t), seeds))
    loss_t.backward()
    np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(hv.grad, ht.grad.numpy(), rtol=1e-9, atol=1e-12)
    if lstm:
        np.testing.assert_allclose(cv.grad, ct.grad.numpy(), rtol=1e-9, atol=1e-12)
    torch_params = dict(theirs.named_parameters())
    for pname, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[pname].grad.numpy(), rtol=1e-9, atol=1e-12,
                                   err_msg=pname)


@pytest.mark.parametrize("name, extra", [("RNNCell", {}), ("RNNCell", {"nonlinearity": "relu"}),
                                         ("LSTMCell", {}), ("GRUCell", {})])
def test_cells_match_torch_values_and_gradients(name, extra):
    torch = oracle("torch")
    nk.manual_seed(12)
    ours = OURS[name](3, 5, dtype=np.float64, **extra)
    theirs = getattr(torch.nn, name)(3, 5, **extra).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    to_torch(ours, theirs, torch)
    lstm = name == "LSTMCell"
    x, h, c = randn(4, 3, seed=25), randn(4, 5, seed=26), randn(4, 5, seed=27)
    xv, hv, cv = (nk.from_ndarray(a.copy()).requires_grad() for a in (x, h, c))
    xt, ht, ct = (torch.tensor(a, requires_grad=True) for a in (x, h, c))
    outs = ours(xv, (hv, cv)) if lstm else (ours(xv, hv),)
    outs_t = theirs(xt, (ht, ct)) if lstm else (theirs(xt, ht),)
    seeds = [randn(4, 5, seed=28 + i) for i in range(len(outs))]
    for got, want in zip(outs, outs_t):
        np.testing.assert_allclose(got.data, want.detach().numpy(), rtol=1e-10, atol=1e-12)
    sum((v * s).sum() for v, s in zip(outs, seeds)).backward()
    sum((v * torch.from_numpy(s)).sum() for v, s in zip(outs_t, seeds)).backward()
    pairs = [(xv, xt), (hv, ht)] + ([(cv, ct)] if lstm else [])
    for ours_leaf, torch_leaf in pairs:
        np.testing.assert_allclose(ours_leaf.grad, torch_leaf.grad.numpy(), rtol=1e-9, atol=1e-12)
    torch_params = dict(theirs.named_parameters())
    for pname, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[pname].grad.numpy(), rtol=1e-9, atol=1e-12)


def test_torch_state_dict_loads_into_ours():
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
    ours = LSTM(3, 4, num_layers=2, batch_first=True)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    x = randn(2, 5, 3, seed=30).astype(np.float32)
    out, (h_n, c_n) = ours(x)
    out_t, (h_t, c_t) = theirs(torch.from_numpy(x))
    np.testing.assert_allclose(out.data, out_t.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c_n.data, c_t.detach().numpy(), rtol=1e-5, atol=1e-6)
