"""nn.functional.batch_norm (PyTorch's F.batch_norm: values, gradients, running statistics
updated in place), the layers that call it, finite differences to second order, its errors; and
bce_with_logits_loss on array-api-strict arrays given directly."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import BatchNorm1d, BatchNorm2d
from neuronika.nn import functional as F
from neuronika.testing import check_grads, oracle

SHAPES = [(6, 3), (4, 3, 5), (2, 3, 4, 3)]


def randn(*shape, seed=0, loc=0.0, scale=1.0):
    return np.random.default_rng(seed).standard_normal(shape) * scale + loc


def affine(which, seed=1):
    w = randn(3, seed=seed, loc=1.0) if "w" in which else None
    b = randn(3, seed=seed + 1) if "b" in which else None
    return w, b


@pytest.mark.parametrize("which", ["wb", "w", "b", ""])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_matches_torch(shape, training, which):
    torch = oracle("torch")
    w, b = affine(which)
    mean, var = randn(3, seed=5), randn(3, seed=6) ** 2 + 0.5
    tmean, tvar = torch.tensor(mean), torch.tensor(var)
    for k in range(2):                  # twice: the second call sees the first's running stats
        x = randn(*shape, seed=10 + k, loc=k, scale=1 + k)
        seed = randn(*shape, seed=20 + k)
        leaves = [nk.from_ndarray(a).requires_grad() for a in (x, *(a for a in (w, b) if a is not None))]
        params = iter(leaves[1:])
        wv = next(params) if w is not None else None
        bv = next(params) if b is not None else None
        y = F.batch_norm(leaves[0], mean, var, wv, bv, training=training, momentum=0.3, eps=1e-4)
        (y * seed).sum().backward()
        tleaves = [torch.tensor(a, requires_grad=True) for a in (x, *(a for a in (w, b) if a is not None))]
        tparams = iter(tleaves[1:])
        tw = next(tparams) if w is not None else None
        tb = next(tparams) if b is not None else None
        yt = torch.nn.functional.batch_norm(tleaves[0], tmean, tvar, tw, tb, training=training,
                                            momentum=0.3, eps=1e-4)
        (yt * torch.from_numpy(seed)).sum().backward()
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        for ours, theirs in zip(leaves, tleaves):
            np.testing.assert_allclose(ours.grad, theirs.grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(mean, tmean.numpy(), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(var, tvar.numpy(), rtol=1e-13, atol=1e-15)


def test_running_statistics_in_place_and_in_their_dtype():
    x = randn(8, 3, seed=2, loc=3.0, scale=2.0)
    mean, var = np.zeros(3, np.float32), np.ones(3, np.float32)
    ids = id(mean), id(var)
    F.batch_norm(x, mean, var, training=True, momentum=0.25)
    assert (id(mean), id(var)) == ids and mean.dtype == var.dtype == np.float32
    np.testing.assert_allclose(mean, 0.25 * x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(var, 0.75 + 0.25 * x.var(axis=0, ddof=1), rtol=1e-6)
    before = mean.copy(), var.copy()
    F.batch_norm(x, mean, var, training=False)                 # evaluation: untouched
    np.testing.assert_array_equal(mean, before[0])
    np.testing.assert_array_equal(var, before[1])
    y = F.batch_norm(x, None, None, training=True)             # no statistics to track
    np.testing.assert_allclose(y.data, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5), rtol=1e-12)


def test_evaluation_reads_the_arrays_when_it_runs():
    mean, var = np.zeros(3), np.ones(3)
    y = F.batch_norm(nk.from_ndarray(randn(4, 3, seed=3)), mean, var)
    mean += 1.0
    y.forward()
    np.testing.assert_allclose(y.data, (randn(4, 3, seed=3) - 1.0) / np.sqrt(1 + 1e-5), rtol=1e-12)


@pytest.mark.parametrize("which", ["wb", ""])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_finite_differences_training(shape, which):
    x = randn(*shape, seed=30, loc=0.5, scale=1.5)
    if which:
        w, b = affine(which, seed=31)
        check_grads(lambda v, wv, bv: F.batch_norm(v, None, None, wv, bv, training=True, eps=1e-3),
                    x, w, b, rtol=1e-5, atol=1e-7)
    else:
        check_grads(lambda v: F.batch_norm(v, None, None, training=True, eps=1e-3), x, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_finite_differences_evaluation(shape):
    x = randn(*shape, seed=32)
    w, b = affine("wb", seed=33)
    mean, var = randn(3, seed=34), randn(3, seed=35) ** 2 + 0.5
    check_grads(lambda v, wv, bv: F.batch_norm(v, mean, var, wv, bv) ** 2, x, w, b, rtol=1e-6, atol=1e-8)
    check_grads(lambda v, wv: F.batch_norm(v, mean, var, wv), x, w, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("cls, shape", [(BatchNorm1d, (6, 3)), (BatchNorm1d, (4, 3, 5)), (BatchNorm2d, (2, 3, 4, 3))])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_layers_are_the_function(cls, shape, momentum):
    layer = cls(3, momentum=momentum, dtype=np.float64)
    layer.weight.data[...] = randn(3, seed=40, loc=1.0)
    layer.bias.data[...] = randn(3, seed=41)
    mean, var = np.zeros(3), np.ones(3)
    for k in range(3):
        x = randn(*shape, seed=42 + k, loc=k)
        factor = 1.0 / (k + 1) if momentum is None else momentum
        want = F.batch_norm(x, mean, var, layer.weight, layer.bias, training=True, momentum=factor)
        np.testing.assert_array_equal(layer(x).data, want.data)
        np.testing.assert_array_equal(layer.running_mean, mean)
        np.testing.assert_array_equal(layer.running_var, var)
    assert int(layer.num_batches_tracked) == 3
    layer.eval()
    x = randn(*shape, seed=50)
    np.testing.assert_array_equal(layer(x).data, F.batch_norm(x, mean, var, layer.weight, layer.bias).data)


def test_errors_name_the_function_and_shapes():
    x = randn(4, 3)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean and running_var are needed"):
        F.batch_norm(x, None, None)
    with pytest.raises(nk.ShapeError, match=r"batch_norm: running_var must have the shape \(3,\).*\(4, 3\).*\(2,\)"):
        F.batch_norm(x, np.zeros(3), np.ones(2))
    with pytest.raises(nk.ShapeError, match=r"batch_norm: weight must have the shape \(3,\)"):
        F.batch_norm(x, None, None, np.ones(4), training=True)
    with pytest.raises(nk.ShapeError, match=r"batch_norm: an input of shape \(N, C, \*\) is expected, got \(3,\)"):
        F.batch_norm(np.ones(3), None, None, training=True)
    with pytest.raises(ValueError, match="batch_norm: expected more than 1 value per channel when training"):
        F.batch_norm(np.ones((1, 3)), None, None, training=True)
    with pytest.raises(ValueError, match="give both running_mean and running_var"):
        F.batch_norm(x, np.zeros(3), None, training=True)
    with pytest.raises(TypeError, match="batch_norm: running_mean must be an array of floats"):
        F.batch_norm(x, nk.zeros((3,)), nk.ones((3,)), training=True)
    with pytest.raises(ValueError, match="momentum"):
        F.batch_norm(x, None, None, training=True, momentum=1.5)


def test_running_statistics_refuse_a_trace():
    mean, var = np.zeros(3), np.ones(3)
    f = nk.grad(lambda v: F.batch_norm(v, mean, var, training=True).sum())
    with pytest.raises(RuntimeError, match="batch_norm: running statistics cannot be updated inside a traced"):
        f(randn(4, 3))
    np.testing.assert_array_equal(mean, 0)
    g = nk.grad(lambda v: (F.batch_norm(v, mean, var) ** 2).sum())(randn(4, 3))     # evaluation: fine
    np.testing.assert_allclose(g, 2 * randn(4, 3) / (1 + 1e-5), rtol=1e-12)


def test_array_api_strict_input_and_statistics_stay_in_their_library():
    xs = pytest.importorskip("array_api_strict")
    x = randn(5, 3, seed=60)
    w, b = affine("wb", seed=61)
    mean, var = xs.asarray(np.zeros(3)), xs.asarray(np.ones(3))
    y = F.batch_norm(xs.asarray(x), mean, var, xs.asarray(w), xs.asarray(b), training=True)
    assert not isinstance(y.data, np.ndarray)
    want_mean, want_var = np.zeros(3), np.ones(3)
    want = F.batch_norm(x, want_mean, want_var, w, b, training=True)
    np.testing.assert_allclose(np.asarray(y.data), want.data, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(mean), want_mean, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(var), want_var, rtol=1e-13)


# ---- bce_with_logits_loss on another library's arrays -------------------------------------------

def test_bce_with_logits_strict_arrays_stay_in_their_library():
    xs = pytest.importorskip("array_api_strict")
    x = randn(4, 3, seed=70) * 3
    t = (randn(4, 3, seed=71) > 0).astype(np.float64)
    w, pw = np.abs(randn(4, 3, seed=72)), np.abs(randn(3, seed=73)) + 0.5
    for kwargs, strict_kwargs in [({}, {}), ({"weight": w, "pos_weight": pw},
                                             {"weight": xs.asarray(w), "pos_weight": xs.asarray(pw)})]:
        for reduction in ("mean", "none"):
            got = F.bce_with_logits_loss(xs.asarray(x), xs.asarray(t), reduction=reduction, **strict_kwargs)
            assert not isinstance(got.data, np.ndarray)
            want = F.bce_with_logits_loss(x, t, reduction=reduction, **kwargs)
            np.testing.assert_allclose(np.asarray(got.data), want.data, rtol=1e-13)
        value, g = nk.value_and_grad(lambda v: F.bce_with_logits_loss(v, xs.asarray(t), **strict_kwargs))(xs.asarray(x))
        want, g_want = nk.value_and_grad(lambda v: F.bce_with_logits_loss(v, t, **kwargs))(x)
        assert not isinstance(g, np.ndarray)
        np.testing.assert_allclose(float(value), want, rtol=1e-13)
        np.testing.assert_allclose(np.asarray(g), g_want, rtol=1e-12, atol=1e-15)
    for loss in (F.mse_loss, F.l1_loss, F.bce_loss):
        p = xs.asarray(np.clip(np.abs(x) / 10, 0.01, 0.99))
        assert not isinstance(loss(p, xs.asarray(t)).data, np.ndarray)
    with pytest.raises(TypeError, match="bce_with_logits_loss: the input must be floating point"):
        F.bce_with_logits_loss(xs.asarray(np.arange(3)), xs.asarray(np.ones(3)))
