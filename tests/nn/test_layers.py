"""Basic layers and initialisers: shapes, values, gradients, errors."""
import math

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika.nn import init
from neuronika.testing import check_grad


def grads_through(module, x):
    """check_grad over the input and every parameter of a float64 module: the
    module's parameter attributes are swapped for check_grad's leaves."""
    owners = [(m, name) for m in module.modules() for name in m._parameters]
    originals = [getattr(m, name).data.copy() for m, name in owners]

    def fn(xv, *ps):
        for (m, name), v in zip(owners, ps):
            object.__setattr__(m, name, v)
        return module(xv)

    check_grad(fn, x, *originals)


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3), (3,)])
def test_linear_forward_and_gradients(shape):
    nk.manual_seed(0)
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal(shape)
    np.testing.assert_allclose(layer(x).data, x @ layer.weight.data.T + layer.bias.data, rtol=1e-12)
    grads_through(layer, x)


def test_linear_without_bias_and_float32_default():
    layer = nn.Linear(4, 2, bias=False)
    assert layer.bias is None and len(layer.parameters()) == 1
    assert layer.weight.dtype == np.float32
    assert layer(nk.ones((1, 4))).dtype == np.float32


def test_linear_default_init_matches_pytorch_bounds():
    nk.manual_seed(0)
    layer = nn.Linear(100, 50)
    bound = 1 / math.sqrt(100)
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.9 * bound


@pytest.mark.parametrize("shape", [(5, 4), (5,), (2, 5, 4, 1)])
def test_linear_wrong_input_names_layer_and_shapes(shape):
    with pytest.raises(nk.ShapeError) as info:
        nn.Linear(3, 2)(nk.ones(shape))
    assert "Linear(in_features=3" in str(info.value) and str(shape) in str(info.value)


def test_dropout_train_and_eval():
    nk.manual_seed(0)
    layer = nn.Dropout(0.25)
    x = nk.ones((100, 100))
    y = layer(x).data
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.75)}
    assert abs((y == 0).mean() - 0.25) < 0.02
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)
    with pytest.raises(ValueError, match="p must be"):
        nn.Dropout(2.0)


def test_embedding_gathers_rows_and_scatters_gradients():
    nk.manual_seed(0)
    emb = nn.Embedding(5, 3, dtype=np.float64)
    idx = np.array([[0, 2], [2, 4]])
    out = emb(idx)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    out.sum().backward()
    np.testing.assert_array_equal(emb.weight.grad[:, 0], [1, 0, 2, 0, 1])
    with pytest.raises(IndexError, match="5"):
        emb(np.array([5]))
    with pytest.raises(TypeError, match="integers"):
        emb(np.array([0.5]))


def test_layer_norm_matches_numpy_and_gradients():
    nk.manual_seed(0)
    ln = nn.LayerNorm(4, dtype=np.float64)
    ln.weight.data[...] = np.arange(1.0, 5.0)
    ln.bias.data[...] = 0.5
    x = np.random.default_rng(1).standard_normal((3, 4))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(x).data, (x - mean) / np.sqrt(var + 1e-5) * np.arange(1.0, 5.0) + 0.5, rtol=1e-10)
    grads_through(ln, x)
    with pytest.raises(nk.ShapeError, match="LayerNorm"):
        ln(np.ones((3, 5)))


def test_layer_norm_over_two_axes():
    ln = nn.LayerNorm((2, 3), elementwise_affine=False, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((4, 2, 3))
    y = ln(x).data
    np.testing.assert_allclose(y.reshape(4, -1).mean(1), 0, atol=1e-12)
    assert ln.parameters() == []


@pytest.mark.parametrize("module, fn", [
    (nn.ReLU(), lambda x: np.maximum(x, 0)),
    (nn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (nn.Tanh(), np.tanh),
    (nn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (nn.Softplus(), lambda x: np.log1p(np.exp(x))),
    (nn.Softmax(1), lambda x: np.exp(x) / np.exp(x).sum(1, keepdims=True)),
    (nn.LogSoftmax(1), lambda x: x - np.log(np.exp(x).sum(1, keepdims=True))),
    (nn.Flatten(), lambda x: x.reshape(len(x), -1)),
    (nn.Identity(), lambda x: x),
])
def test_activation_modules(module, fn):
    x = np.random.default_rng(3).standard_normal((4, 3))
    np.testing.assert_allclose(module(x).data, fn(x), rtol=1e-12)


def test_flatten_keeps_the_batch_axis():
    assert nn.Flatten()(nk.ones((2, 3, 4, 5))).shape == (2, 60)
    assert nn.Flatten(2)(nk.ones((2, 3, 4, 5))).shape == (2, 3, 20)


# ---- init ---------------------------------------------------------------------------------------

def test_calculate_gain_table():
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("sigmoid") == 1
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="unknown"):
        init.calculate_gain("swish")


def test_fans_use_the_receptive_field():
    assert init.fans((16, 8, 3, 3)) == (72, 144)
    assert init.fans((10, 4)) == (4, 10)


@pytest.mark.parametrize("fill, check", [
    (lambda w: init.uniform_(w, -2, 3), lambda a: a.min() >= -2 and a.max() <= 3 and a.std() > 1),
    (lambda w: init.normal_(w, 5, 0.1), lambda a: abs(a.mean() - 5) < 0.01 and abs(a.std() - 0.1) < 0.01),
    (lambda w: init.constant_(w, 0.3), lambda a: np.all(a == np.float32(0.3))),
    (init.zeros_, lambda a: np.all(a == 0)),
    (init.ones_, lambda a: np.all(a == 1)),
    (init.xavier_uniform_, lambda a: np.abs(a).max() <= math.sqrt(6 / (200 + 300)) + 1e-7),
    (init.xavier_normal_, lambda a: abs(a.std() - math.sqrt(2 / 500)) < 0.003),
    (lambda w: init.kaiming_uniform_(w, nonlinearity="relu"), lambda a: np.abs(a).max() <= math.sqrt(6 / 200) + 1e-7),
    (lambda w: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu"), lambda a: abs(a.std() - math.sqrt(2 / 300)) < 0.003),
    (lambda w: init.trunc_normal_(w, 0, 1, -0.5, 0.5), lambda a: a.min() >= -0.5 and a.max() <= 0.5),
])
def test_initialisers_fill_in_place(fill, check):
    nk.manual_seed(0)
    w = nn.parameter(np.empty((300, 200), np.float32))
    data = w.data
    assert fill(w) is w
    assert w.data is data and check(data)


def test_eye_orthogonal_and_dirac():
    w = np.empty((3, 5))
    init.eye_(w)
    np.testing.assert_array_equal(w, np.eye(3, 5))
    nk.manual_seed(0)
    q = init.orthogonal_(np.empty((4, 6)), gain=2.0)
    np.testing.assert_allclose(q @ q.T, 4 * np.eye(4), atol=1e-12)
    d = init.dirac_(np.empty((2, 2, 3, 3)))
    assert d[0, 0, 1, 1] == 1 and d[1, 1, 1, 1] == 1 and d.sum() == 2


def test_initialisers_are_reproducible():
    nk.manual_seed(7)
    a = nn.Linear(5, 5).weight.data.copy()
    nk.manual_seed(7)
    np.testing.assert_array_equal(a, nn.Linear(5, 5).weight.data)


LAYERS = {
    "Linear": lambda: nn.Linear(3, 2),
    "Embedding": lambda: nn.Embedding(4, 2),
    "LayerNorm": lambda: nn.LayerNorm(3),
    "BatchNorm1d": lambda: nn.BatchNorm1d(3),
    "BatchNorm2d": lambda: nn.BatchNorm2d(3),
    "RNNCell": lambda: nn.RNNCell(3, 2),
    "LSTMCell": lambda: nn.LSTMCell(3, 2),
    "GRUCell": lambda: nn.GRUCell(3, 2),
    "LSTM": lambda: nn.LSTM(3, 2, num_layers=2),
    "GRU": lambda: nn.GRU(3, 2),
    "RNN": lambda: nn.RNN(3, 2),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_layer_round_trips_its_state(name, tmp_path):
    nk.manual_seed(0)
    a = LAYERS[name]()
    nk.manual_seed(1)
    b = LAYERS[name]()
    state = a.state_dict()
    assert state, name
    for value in state.values():
        if value.dtype.kind == "f":
            value += 0.5          # differ from b's values and from defaults
    a.load_state_dict(state)
    a.save(tmp_path / "layer.npz")
    b.load_state_dict(nn.load(tmp_path / "layer.npz"))
    for key, value in a.state_dict().items():
        np.testing.assert_array_equal(b.state_dict()[key], value, err_msg=f"{name}.{key}")


# ---- clear messages for bad sizes and options (issue 11) -------------------------------------------

@pytest.mark.parametrize("make, words", [
    (lambda: nn.Linear(0, 3), ["Linear", "in_features", "positive int", "0"]),
    (lambda: nn.Linear(3, -1), ["Linear", "out_features", "-1"]),
    (lambda: nn.Linear(2.5, 3), ["Linear", "in_features", "2.5"]),
    (lambda: nn.Embedding(0, 4), ["Embedding", "num_embeddings"]),
    (lambda: nn.LayerNorm((3, 0)), ["LayerNorm", "normalized_shape"]),
    (lambda: nn.LayerNorm(3, eps=0.0), ["LayerNorm", "eps"]),
    (lambda: nn.Dropout("half"), ["Dropout", "p", "'half'"]),
    (lambda: nn.Dropout(float("nan")), ["Dropout", "p", "nan"]),
    (lambda: nn.Linear(2, 3, dtype=np.int32), ["Linear", "floating point", "int32"]),
])
def test_bad_sizes_and_options_raise_naming_the_layer(make, words):
    with pytest.raises((ValueError, TypeError)) as info:
        make()
    for word in words:
        assert word in str(info.value), str(info.value)


def test_layer_norm_without_bias_matches_pytorch():
    torch = pytest.importorskip("torch")
    from neuronika.nn import LayerNorm
    layer = LayerNorm((3, 4), bias=False, dtype=np.float64)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    reference = torch.nn.LayerNorm((3, 4), bias=False, dtype=torch.float64)
    with torch.no_grad():
        reference.weight.copy_(torch.linspace(0.5, 2.0, 12, dtype=torch.float64).reshape(3, 4))
    layer.load_state_dict({k: v.detach().numpy() for k, v in reference.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    np.testing.assert_allclose(layer(x).data, reference(torch.from_numpy(x)).detach().numpy(), rtol=1e-13)
