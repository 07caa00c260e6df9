"""Conv1d, Conv2d, Conv3d: parameters and their PyTorch initialisation, output shapes by
PyTorch's formula, forward against a naive loop, gradients against finite differences
through every padding mode, shape errors naming the layer, training, state dicts, and
(when torch is installed) outputs and gradients equal to torch.nn's layers."""
from __future__ import annotations

import math

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn.conv import Conv1d, Conv2d, Conv3d
from neuronika.nn.module import Sequential
from neuronika.testing import oracle, check_grad

LAYERS = {1: Conv1d, 2: Conv2d, 3: Conv3d}


def rand(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape)


def out_size(size, k, stride, padding, dilation):
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def ref_conv(x, w, b, stride, dilation, groups):
    """Naive loops over output positions and channels (x already padded)."""
    n, c = x.shape[:2]
    co, kernel = w.shape[0], w.shape[2:]
    out = [out_size(s, k, t, 0, d) for s, k, t, d in zip(x.shape[2:], kernel, stride, dilation)]
    y = np.zeros((n, co) + tuple(out))
    per_in, per_out = c // groups, co // groups
    for pos in np.ndindex(*out):
        window = tuple(slice(p * t, p * t + d * (k - 1) + 1, d) for p, t, d, k in zip(pos, stride, dilation, kernel))
        for o in range(co):
            g = o // per_out
            patch = x[(slice(None), slice(g * per_in, (g + 1) * per_in)) + window]
            y[(slice(None), o) + pos] = (patch * w[o]).reshape(n, -1).sum(axis=1) + (0 if b is None else b[o])
    return y


# (dims, in, out, kernel, stride, padding, dilation, groups, size)
GEOMETRIES = [
    (1, 3, 4, 3, 1, 0, 1, 1, (10,)),
    (1, 4, 6, 5, 2, 2, 1, 2, (11,)),
    (1, 2, 2, 2, 3, 1, 2, 2, (9,)),
    (2, 3, 8, 3, 1, 1, 1, 1, (7, 6)),
    (2, 4, 4, (3, 2), (2, 1), (1, 0), (1, 2), 4, (9, 8)),
    (2, 2, 6, 1, 2, 0, 1, 2, (5, 5)),
    (2, 6, 3, (2, 3), 3, 2, 2, 3, (8, 10)),
    (3, 2, 4, 2, 1, 1, 1, 1, (4, 3, 5)),
    (3, 4, 2, (1, 3, 2), (2, 1, 1), (0, 1, 1), (1, 1, 2), 2, (3, 5, 6)),
]


def geometry_id(g):
    return f"{g[0]}d-in{g[1]}-out{g[2]}-k{g[3]}-s{g[4]}-p{g[5]}-d{g[6]}-g{g[7]}"


def make(g, **kwargs):
    dims, c_in, c_out, k, s, p, d, groups, size = g
    return LAYERS[dims](c_in, c_out, k, stride=s, padding=p, dilation=d, groups=groups, **kwargs)


def triple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


@pytest.mark.parametrize("g", GEOMETRIES, ids=geometry_id)
def test_output_shape_follows_pytorch(g):
    dims, c_in, c_out, k, s, p, d, groups, size = g
    layer = make(g)
    want = (2, c_out) + tuple(out_size(n, kk, ss, pp, dd) for n, kk, ss, pp, dd
                              in zip(size, triple(k, dims), triple(s, dims), triple(p, dims), triple(d, dims)))
    y = layer(nk.zeros((2, c_in) + size))
    assert y.shape == want == layer.output_shape((2, c_in) + size)
    assert y.dtype == np.float32


@pytest.mark.parametrize("g", GEOMETRIES, ids=geometry_id)
def test_forward_against_loops(g):
    dims, c_in, c_out, k, s, p, d, groups, size = g
    layer = make(g, dtype=np.float64)
    x = rand((2, c_in) + size, seed=1)
    padded = np.pad(x, ((0, 0), (0, 0)) + tuple((q, q) for q in triple(p, dims)))
    want = ref_conv(padded, layer.weight.data, layer.bias.data, triple(s, dims), triple(d, dims), groups)
    np.testing.assert_allclose(layer(x).data, want, rtol=1e-12, atol=1e-12)


def test_parameters_and_init_follow_pytorch():
    nk.manual_seed(0)
    layer = Conv2d(6, 8, (3, 2), groups=2)
    names = [n for n, _ in layer.named_parameters()]
    assert names == ["weight", "bias"]
    assert layer.weight.shape == (8, 3, 3, 2) and layer.bias.shape == (8,)
    assert layer.weight.dtype == np.float32
    fan_in = 3 * 3 * 2
    bound = 1 / math.sqrt(fan_in)            # kaiming_uniform_(a=sqrt(5)): gain sqrt(1/3) * sqrt(3 / fan_in)
    for p in (layer.weight, layer.bias):
        assert np.abs(p.data).max() <= bound
    big = Conv1d(4, 256, 5)
    assert np.abs(big.weight.data).max() > 0.9 / math.sqrt(20)
    assert abs(big.weight.data.std() - 1 / math.sqrt(3 * 20)) < 0.01     # uniform: bound / sqrt(3)
    assert Conv3d(2, 2, 1, bias=False).bias is None
    assert [n for n, _ in Conv3d(2, 2, 1, bias=False).named_parameters()] == ["weight"]
    nk.manual_seed(3)
    a = Conv2d(2, 3, 3).weight.data.copy()
    nk.manual_seed(3)
    np.testing.assert_array_equal(Conv2d(2, 3, 3).weight.data, a)


@pytest.mark.parametrize("mode, value", [("zeros", 0.0), ("constant", -0.5), ("reflect", 0.0),
                                         ("replicate", 0.0)])
def test_padding_modes(mode, value):
    layer = Conv2d(2, 3, 3, padding=(2, 1), padding_mode=mode, padding_value=value, dtype=np.float64)
    x = rand((1, 2, 4, 5), seed=2)
    np_mode = {"zeros": "constant", "constant": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    extra = {"constant_values": value} if np_mode == "constant" else {}
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (1, 1)), mode=np_mode, **extra)
    want = ref_conv(padded, layer.weight.data, layer.bias.data, (1, 1), (1, 1), 1)
    np.testing.assert_allclose(layer(x).data, want, rtol=1e-12, atol=1e-12)
    w, b = layer.weight.data.copy(), layer.bias.data.copy()

    def f(x, w, b):
        layer.weight, layer.bias = w, b
        return layer(x)

    check_grad(f, x, w, b)


def test_gradients_through_the_layer():
    for g in (GEOMETRIES[1], GEOMETRIES[4], GEOMETRIES[8]):
        layer = make(g, dtype=np.float64)
        x = rand((1, g[1]) + g[8], seed=3)
        w, b = layer.weight.data.copy(), layer.bias.data.copy()

        def f(x, w, b):
            layer.weight, layer.bias = w, b
            return layer(x).tanh()

        check_grad(f, x, w, b)


def test_same_padding_and_unbatched_input():
    layer = Conv2d(3, 4, (3, 4), padding="same", dilation=2)
    x = rand((3, 7, 6), seed=4).astype(np.float32)
    y = layer(x)
    assert y.shape == (4, 7, 6)
    np.testing.assert_allclose(y.data, layer(x[None]).data[0], rtol=1e-6)
    assert Conv1d(2, 2, 3, padding="valid")(nk.zeros((1, 2, 5))).shape == (1, 2, 3)


def test_shape_errors_name_the_layer_and_shapes():
    layer = Conv2d(3, 4, 3)
    with pytest.raises(nk.ShapeError) as excinfo:
        layer(nk.zeros((2, 3, 5)))                    # unbatched (C, H, W) with 2 channels
    message = str(excinfo.value)
    assert "Conv2d(3, 4" in message and "(N, 3, H, W) or (3, H, W)" in message and "(2, 3, 5)" in message
    with pytest.raises(nk.ShapeError) as excinfo:
        layer(nk.zeros((2, 5, 8, 8)))                  # wrong channel count
    assert "Conv2d(3, 4" in str(excinfo.value) and "(2, 5, 8, 8)" in str(excinfo.value)
    with pytest.raises(nk.ShapeError) as excinfo:
        layer(nk.zeros((2, 3)))
    assert "(2, 3)" in str(excinfo.value)
    with pytest.raises(nk.ShapeError) as excinfo:
        Conv2d(3, 4, 3, dilation=2)(nk.zeros((1, 3, 4, 9)))       # smaller than the dilated kernel
    message = str(excinfo.value)
    assert "Conv2d(3, 4" in message and "(1, 3, 4, 9)" in message and "(5, 5)" in message
    with pytest.raises(nk.ShapeError, match=r"after padding"):
        Conv1d(1, 1, 6, padding=1)(nk.zeros((1, 1, 3)))
    Conv1d(1, 1, 6, padding=1)(nk.zeros((1, 1, 4)))              # fits once padded


def test_constructor_errors():
    with pytest.raises(ValueError, match="groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(3, 3, 3, padding_mode="circular")
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2d(3, 3, (3, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        Conv1d(3, 3, 3, stride=0)
    with pytest.raises(ValueError, match="same"):
        Conv1d(3, 3, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="in_channels"):
        Conv1d(0, 3, 3)


def test_repr():
    assert repr(Conv2d(1, 8, 3)) == "Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1))"
    assert repr(Conv1d(4, 4, 3, 2, 1, 2, 4, False, "reflect")) == (
        "Conv1d(4, 4, kernel_size=(3,), stride=(2,), padding=(1,), dilation=(2,), groups=4, "
        "bias=False, padding_mode='reflect')")


def test_training_reduces_the_loss_and_state_dict_round_trips(tmp_path):
    nk.manual_seed(1)
    model = Sequential(Conv2d(1, 4, 3, padding=1), nk.nn.ReLU(), Conv2d(4, 1, 3, padding=1))
    x = rand((4, 1, 6, 6), seed=5).astype(np.float32)
    target = np.roll(x, 1, axis=3)
    losses = []
    for _ in range(30):
        loss = ((model(x) - target) ** 2).mean()
        loss.backward()
        losses.append(float(loss.data))
        for p in model.parameters():
            p.data -= 0.1 * p.grad
            p.zero_grad()
    assert losses[-1] < 0.7 * losses[0]
    path = tmp_path / "conv.npz"
    model.save(path)
    other = Sequential(Conv2d(1, 4, 3, padding=1), nk.nn.ReLU(), Conv2d(4, 1, 3, padding=1))
    other.load_state_dict(nk.nn.load(path))
    np.testing.assert_array_equal(other(x).data, model(x).data)


def test_float64_layer_and_functional_path():
    layer = Conv1d(2, 3, 3, padding=1, dtype=np.float64)
    assert layer.weight.dtype == np.float64
    x = rand((2, 2, 5), seed=6)

    def loss(w, b, x):
        layer.weight, layer.bias = w, b
        return (layer(x) ** 2).sum()

    w, b = layer.weight.data.copy(), layer.bias.data.copy()
    value, (gw, gb) = nk.value_and_grad(loss, argnums=(0, 1))(w, b, x)
    wv, bv = nk.from_ndarray(w).requires_grad(), nk.from_ndarray(b).requires_grad()
    out = loss(wv, bv, nk.from_ndarray(x))
    out.backward()
    np.testing.assert_allclose(value, out.data)
    np.testing.assert_allclose(gw, wv.grad)
    np.testing.assert_allclose(gb, bv.grad)


@pytest.mark.parametrize("g", GEOMETRIES, ids=geometry_id)
def test_against_torch(g):
    torch = oracle("torch")
    dims, c_in, c_out, k, s, p, d, groups, size = g
    for mode in ("zeros", "reflect", "replicate"):
        if mode != "zeros" and dims == 3:
            continue
        layer = make(g, padding_mode=mode, dtype=np.float64)
        ref = getattr(torch.nn, f"Conv{dims}d")(c_in, c_out, k, stride=s, padding=p, dilation=d,
                                                groups=groups, padding_mode=mode).double()
        with torch.no_grad():
            ref.weight.copy_(torch.tensor(layer.weight.data))
            ref.bias.copy_(torch.tensor(layer.bias.data))
        x = rand((2, c_in) + size, seed=7)
        xv = nk.from_ndarray(x).requires_grad()
        y = layer(xv)
        c = rand(y.shape, seed=8)
        y.backward(c)
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        yt.backward(torch.tensor(c))
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(layer.bias.grad, ref.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_conv2d_on_a_2d_input_says_it_has_no_channel_axis():
    with pytest.raises(nk.ShapeError) as info:
        Conv2d(1, 4, 3)(np.zeros((8, 8), np.float32))
    message = str(info.value)
    for words in ("Conv2d(1, 4", "(N, 1, H, W) or (1, H, W)", "2-D input of shape (8, 8)",
                  "no channel axis", "x.reshape((1,) + x.shape)", "test_conv.py"):
        assert words in message, message
