"""MaxPool1d/2d/3d and AvgPool1d/2d/3d (and the functions max_pool / avg_pool): output
shapes by PyTorch's formula, forward against naive loops, padding (-inf for max, counted
zeros for average), gradients against finite differences, ties (the first maximum gets
the gradient), errors naming the layer, and (when torch is installed) agreement with
torch.nn's pooling layers."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn.conv import Conv2d
from neuronika.nn.module import Sequential
from neuronika.nn.pooling import (AvgPool1d, AvgPool2d, AvgPool3d, MaxPool1d, MaxPool2d, MaxPool3d, avg_pool,
                                  max_pool)
from neuronika.testing import oracle, check_grad

LAYERS = {("max", 1): MaxPool1d, ("max", 2): MaxPool2d, ("max", 3): MaxPool3d,
          ("avg", 1): AvgPool1d, ("avg", 2): AvgPool2d, ("avg", 3): AvgPool3d}


def distinct(shape, seed=0):
    n = int(np.prod(shape))
    return np.random.default_rng(seed).permutation(np.arange(n) * 0.1 - n * 0.05).reshape(shape)


def out_size(size, k, stride, padding):
    return (size + 2 * padding - k) // stride + 1


def ref_pool(x, kernel, stride, padding, kind):
    """Loops over windows of the padded input (-inf padding for max, zeros for average,
    the full window size as divisor)."""
    n = len(kernel)
    pad = ((0, 0),) * (x.ndim - n) + tuple((p, p) for p in padding)
    padded = np.pad(x, pad, constant_values=-np.inf if kind == "max" else 0.0)
    out = [out_size(s, k, t, p) for s, k, t, p in zip(x.shape[-n:], kernel, stride, padding)]
    y = np.zeros(x.shape[:-n] + tuple(out))
    for pos in np.ndindex(*out):
        window = padded[(Ellipsis,) + tuple(slice(q * t, q * t + k) for q, t, k in zip(pos, stride, kernel))]
        flat = window.reshape(window.shape[:-n] + (-1,))
        y[(Ellipsis,) + pos] = flat.max(axis=-1) if kind == "max" else flat.mean(axis=-1)
    return y


def triple(v, n):
    return (v,) * n if isinstance(v, int) else tuple(v)


# (dims, kernel, stride, padding, input shape)
GEOMETRIES = [
    (1, 2, None, 0, (2, 3, 8)),
    (1, 3, 2, 1, (2, 3, 9)),
    (1, 4, 1, 2, (1, 2, 6)),
    (2, 2, None, 0, (2, 3, 6, 6)),
    (2, 3, 2, 1, (1, 2, 7, 8)),
    (2, (3, 2), (1, 2), (1, 1), (2, 2, 5, 7)),
    (2, 2, 2, 0, (3, 5, 7)),                      # unbatched (C, H, W), odd sizes drop the edge
    (3, 2, None, 0, (1, 2, 4, 4, 6)),
    (3, (3, 2, 2), (2, 1, 2), (1, 0, 1), (1, 1, 5, 4, 5)),
]


def geometry_id(g):
    return f"{g[0]}d-k{g[1]}-s{g[2]}-p{g[3]}-x{g[4]}"


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=geometry_id)
def test_shape_and_forward(g, kind):
    dims, k, s, p, shape = g
    layer = LAYERS[kind, dims](k, stride=s, padding=p)
    kernel = triple(k, dims)
    stride = kernel if s is None else triple(s, dims)
    padding = triple(p, dims)
    x = distinct(shape, seed=1)
    y = layer(x)
    want = shape[:-dims] + tuple(out_size(n, kk, ss, pp) for n, kk, ss, pp
                                 in zip(shape[-dims:], kernel, stride, padding))
    assert y.shape == want == layer.output_shape(shape)
    np.testing.assert_allclose(y.data, ref_pool(x, kernel, stride, padding, kind), rtol=1e-12)
    x32 = x.astype(np.float32)
    assert layer(x32).dtype == np.float32


@pytest.mark.parametrize("g", GEOMETRIES, ids=geometry_id)
def test_gradients(g):
    dims, k, s, p, shape = g
    x = distinct(shape, seed=2)
    for kind in ("max", "avg"):
        layer = LAYERS[kind, dims](k, stride=s, padding=p)
        check_grad(lambda v: layer(v), x)


def test_max_padding_is_never_picked():
    x = -1.0 - distinct((1, 1, 4, 4), seed=3) ** 2         # all negative: a zero pad would win
    v = nk.from_ndarray(x).requires_grad()
    y = MaxPool2d(3, stride=2, padding=1)(v)
    assert (y.data < 0).all()
    y.sum().backward()
    assert v.grad.sum() == y.size                          # every window's gradient lands in x


def test_avg_padding_counts_in_the_mean():
    y = AvgPool1d(3, stride=1, padding=1)(nk.ones((1, 1, 4)))
    np.testing.assert_allclose(y.data, [[[2 / 3, 1, 1, 2 / 3]]], rtol=1e-6)


def test_ties_send_the_gradient_to_the_first_maximum():
    v = nk.from_ndarray(np.zeros((1, 1, 4, 4))).requires_grad()
    MaxPool2d(2)(v).sum().backward()
    np.testing.assert_array_equal(v.grad[0, 0], [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])


def test_functions():
    x = distinct((2, 3, 6, 7), seed=4)
    np.testing.assert_allclose(max_pool(x, 2).data, ref_pool(x, (2, 2), (2, 2), (0, 0), "max"))
    np.testing.assert_allclose(avg_pool(x, (3,), 2, 1).data, ref_pool(x, (3,), (2,), (1,), "avg"))
    np.testing.assert_allclose(max_pool(x, (2, 3), (1, 2), (1, 1)).data,
                               ref_pool(x, (2, 3), (1, 2), (1, 1), "max"))


def test_integer_input():
    x = np.arange(16, dtype=np.int64).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(MaxPool2d(2, padding=1)(x).data[0, 0], [[0, 2, 3], [8, 10, 11], [12, 14, 15]])
    assert AvgPool2d(2)(x).dtype == np.float64


def test_errors_name_the_layer():
    with pytest.raises(nk.ShapeError) as excinfo:
        MaxPool2d(2)(nk.zeros((4, 4)))
    message = str(excinfo.value)
    assert "MaxPool2d(kernel_size=(2, 2)" in message and "(N, C, H, W) or (C, H, W)" in message
    assert "(4, 4)" in message
    with pytest.raises(nk.ShapeError) as excinfo:
        AvgPool1d(5)(nk.zeros((1, 2, 3)))
    assert "AvgPool1d" in str(excinfo.value) and "(1, 2, 3)" in str(excinfo.value)
    with pytest.raises(ValueError, match="half"):
        MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="kernel_size"):
        AvgPool2d((2, 2, 2))
    with pytest.raises(ValueError, match="stride"):
        MaxPool1d(2, stride=0)


def test_repr():
    assert repr(MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1))"


def test_in_a_network():
    nk.manual_seed(0)
    model = Sequential(Conv2d(1, 4, 3, padding=1), nk.nn.ReLU(), MaxPool2d(2), Conv2d(4, 2, 3),
                       AvgPool2d(2), nk.nn.Flatten())
    x = np.random.default_rng(5).standard_normal((3, 1, 10, 10)).astype(np.float32)
    y = model(x)
    assert y.shape == (3, 2)
    (y * y).sum().backward()
    assert all(np.abs(p.grad).sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("g", GEOMETRIES, ids=geometry_id)
def test_against_torch(g):
    torch = oracle("torch")
    dims, k, s, p, shape = g
    x = np.round(np.random.default_rng(6).uniform(-1, 1, shape), 1)       # ties included
    for kind, cls in (("max", f"MaxPool{dims}d"), ("avg", f"AvgPool{dims}d")):
        layer = LAYERS[kind, dims](k, stride=s, padding=p)
        ref = getattr(torch.nn, cls)(k, stride=s, padding=p)
        xv = nk.from_ndarray(x).requires_grad()
        y = layer(xv)
        c = np.random.default_rng(7).standard_normal(y.shape)
        y.backward(c)
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        yt.backward(torch.tensor(c))
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_pool_modules_take_pytorchs_options(n):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, 3) + (7,) * n)
    t = torch.from_numpy(x)
    cases = [("MaxPool", dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
             ("MaxPool", dict(kernel_size=2, stride=2, ceil_mode=True)),
             ("AvgPool", dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False))]
    if n > 1:
        cases.append(("AvgPool", dict(kernel_size=2, stride=2, divisor_override=3)))
    for kind, options in cases:
        ours = getattr(nk.nn, f"{kind}{n}d")(**options)
        theirs = getattr(torch.nn, f"{kind}{n}d")(**options)
        y = ours(x)
        expected = theirs(t).numpy()
        np.testing.assert_allclose(y.data, expected, rtol=1e-13, err_msg=f"{kind}{n}d {options}")
        assert ours.output_shape(x.shape) == expected.shape
    values, indices = getattr(nk.nn, f"MaxPool{n}d")(2, return_indices=True)(x)
    t_values, t_indices = getattr(torch.nn, f"MaxPool{n}d")(2, return_indices=True)(t)
    np.testing.assert_array_equal(values.data, t_values.numpy())
    np.testing.assert_array_equal(np.asarray(indices.data if hasattr(indices, "data") else indices), t_indices.numpy())
    assert "ceil_mode=True" in repr(getattr(nk.nn, f"MaxPool{n}d")(2, ceil_mode=True))
    if n == 1:
        with pytest.raises(TypeError, match="divisor_override"):
            nk.nn.AvgPool1d(2, divisor_override=2)
