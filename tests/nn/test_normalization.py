"""Batch normalisation: values in training and evaluation, running statistics,
gradients, buffers in the state dict, errors, and (when importable) PyTorch."""
import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import Module
from neuronika.nn.module import load
from neuronika.nn.normalization import BatchNorm1d, BatchNorm2d
from neuronika.testing import oracle, check_grad


def randn(*shape, seed=0, loc=0.0, scale=1.0):
    return loc + scale * np.random.default_rng(seed).standard_normal(shape)


LAYOUTS = [
    pytest.param(BatchNorm1d, (6, 3), (0,), id="1d-NC"),
    pytest.param(BatchNorm1d, (4, 3, 5), (0, 2), id="1d-NCL"),
    pytest.param(BatchNorm2d, (4, 3, 2, 3), (0, 2, 3), id="2d"),
]


def channel(values, ndim):
    """A per-channel (C,) array shaped to broadcast over an input of ``ndim`` axes."""
    return values.reshape((1, -1) + (1,) * (ndim - 2))


def reference_train(x, axes, weight, bias, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)          # biased, as PyTorch normalises
    return (x - mean) / np.sqrt(var + eps) * channel(weight, x.ndim) + channel(bias, x.ndim)


def reference_eval(x, running_mean, running_var, weight, bias, eps=1e-5):
    shaped = lambda v: channel(v, x.ndim)
    return (x - shaped(running_mean)) / np.sqrt(shaped(running_var) + eps) * shaped(weight) + shaped(bias)


def with_affine(layer, seed=0):
    """Random weight and bias (the defaults are ones and zeros)."""
    c = layer.num_features
    layer.weight.data = randn(c, seed=seed + 100)
    layer.bias.data = randn(c, seed=seed + 200)
    return layer


# ---- construction ----------------------------------------------------------------------------------------

def test_defaults_parameters_and_buffers():
    bn = BatchNorm1d(4)
    np.testing.assert_array_equal(bn.weight.data, np.ones(4, np.float32))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(4, np.float32))
    assert bn.weight.dtype == np.float32 and bn.running_mean.dtype == np.float32
    np.testing.assert_array_equal(bn.running_mean, np.zeros(4))
    np.testing.assert_array_equal(bn.running_var, np.ones(4))
    assert bn.num_batches_tracked.shape == () and bn.num_batches_tracked.dtype == np.int64
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert repr(BatchNorm2d(3)) == \
        "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"


def test_no_affine_and_no_running_stats_have_nothing_to_keep():
    bn = BatchNorm2d(3, affine=False, track_running_stats=False)
    assert bn.parameters() == [] and list(bn.state_dict()) == []
    assert bn.weight is None and bn.running_mean is None
    assert list(BatchNorm1d(3, affine=False).state_dict()) == ["running_mean", "running_var",
                                                              "num_batches_tracked"]


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm1d(0)
    with pytest.raises(ValueError, match="eps"):
        BatchNorm1d(3, eps=0.0)
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=1.5)


# ---- training: values and running statistics --------------------------------------------------------------

@pytest.mark.parametrize("cls, shape, axes", LAYOUTS)
def test_training_normalises_with_batch_statistics(cls, shape, axes):
    bn = with_affine(cls(3, dtype=np.float64))
    x = randn(*shape, seed=1, loc=2.0, scale=3.0)
    y = bn(x)
    assert y.shape == shape and y.dtype == np.float64
    np.testing.assert_allclose(y.data, reference_train(x, axes, bn.weight.data, bn.bias.data), rtol=1e-10,
                               atol=1e-12)
    # with the default affine, every channel has mean 0 and (biased) variance 1
    plain = cls(3, dtype=np.float64)(x).data
    np.testing.assert_allclose(plain.mean(axis=axes), 0, atol=1e-12)
    np.testing.assert_allclose(plain.var(axis=axes), 1, rtol=1e-4)


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("cls, shape, axes", LAYOUTS)
def test_running_statistics_follow_pytorchs_formula(cls, shape, axes, momentum):
    bn = cls(3, momentum=momentum, dtype=np.float64)
    mean, var = np.zeros(3), np.ones(3)
    for k in range(1, 5):
        x = randn(*shape, seed=k, loc=k, scale=k)
        bn(x)
        factor = 1 / k if momentum is None else momentum        # None: cumulative average
        mean = (1 - factor) * mean + factor * x.mean(axis=axes)
        var = (1 - factor) * var + factor * x.var(axis=axes, ddof=1)      # unbiased
        np.testing.assert_allclose(bn.running_mean, mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, var, rtol=1e-12)
        assert int(bn.num_batches_tracked) == k


def test_running_statistics_keep_their_dtype_and_array():
    bn = BatchNorm1d(3)
    buffer = bn.running_var
    bn(randn(5, 3, seed=2))                 # a float64 input into a float32 layer
    assert bn.running_mean.dtype == bn.running_var.dtype == np.float32
    assert bn.running_var is buffer         # updated in place
    assert "running_var" in bn.state_dict()


def test_without_running_statistics_batch_statistics_always():
    bn = with_affine(BatchNorm1d(3, track_running_stats=False, dtype=np.float64))
    x = randn(6, 3, seed=3, loc=1.0)
    want = reference_train(x, (0,), bn.weight.data, bn.bias.data)
    np.testing.assert_allclose(bn(x).data, want, rtol=1e-10)
    bn.eval()
    np.testing.assert_allclose(bn(x).data, want, rtol=1e-10)


# ---- evaluation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, shape, axes", LAYOUTS)
def test_eval_uses_running_statistics_and_updates_nothing(cls, shape, axes):
    bn = with_affine(cls(3, dtype=np.float64))
    for k in range(3):
        bn(randn(*shape, seed=10 + k, loc=1.0, scale=2.0))
    state = bn.state_dict()
    bn.eval()
    x = randn(*shape, seed=20)
    y = bn(x)
    np.testing.assert_allclose(y.data, reference_eval(x, bn.running_mean, bn.running_var, bn.weight.data,
                                                      bn.bias.data), rtol=1e-10, atol=1e-12)
    assert not np.allclose(y.data, reference_train(x, axes, bn.weight.data, bn.bias.data))
    for name, value in bn.state_dict().items():
        np.testing.assert_array_equal(value, state[name])
    # one sample per channel is fine in evaluation
    assert bn(x[:1].reshape((1, 3) + shape[2:])).shape == (1, 3) + shape[2:]


def test_eval_without_affine():
    bn = BatchNorm1d(3, affine=False, dtype=np.float64)
    bn(randn(8, 3, seed=4, loc=3.0))
    bn.eval()
    x = randn(2, 3, seed=5)
    want = (x - bn.running_mean) / np.sqrt(bn.running_var + 1e-5)
    np.testing.assert_allclose(bn(x).data, want, rtol=1e-12)


def test_train_eval_switch_through_a_container():
    from neuronika.nn import Linear, Sequential
    model = Sequential(Linear(4, 3, dtype=np.float64), BatchNorm1d(3, dtype=np.float64))
    x = randn(6, 4, seed=6)
    model.eval()
    a = model(x).data
    assert int(model[1].num_batches_tracked) == 0
    model.train()
    model(x)
    assert int(model[1].num_batches_tracked) == 1
    model.eval()
    assert not np.allclose(model(x).data, a)


# ---- gradients -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls, shape, axes", LAYOUTS)
def test_gradients_in_training_mode(cls, shape, axes):
    bn = cls(3, dtype=np.float64)
    w, b = randn(3, seed=7), randn(3, seed=8)

    def fn(x, weight, bias):
        object.__setattr__(bn, "weight", weight)
        object.__setattr__(bn, "bias", bias)
        return bn(x)

    check_grad(fn, randn(*shape, seed=9, loc=1.0, scale=2.0), w, b)


def test_gradients_in_training_mode_without_affine():
    check_grad(BatchNorm2d(2, affine=False, dtype=np.float64), randn(3, 2, 2, 2, seed=10))


@pytest.mark.parametrize("cls, shape, axes", LAYOUTS)
def test_gradients_in_eval_mode(cls, shape, axes):
    bn = cls(3, dtype=np.float64)
    for k in range(2):
        bn(randn(*shape, seed=11 + k, loc=1.0))
    bn.eval()

    def fn(x, weight, bias):
        object.__setattr__(bn, "weight", weight)
        object.__setattr__(bn, "bias", bias)
        return bn(x)

    check_grad(fn, randn(*shape, seed=13), randn(3, seed=14), randn(3, seed=15))


# ---- state dict ----------------------------------------------------------------------------------------------

def test_state_dict_round_trip_with_buffers(tmp_path):
    source = with_affine(BatchNorm2d(3))
    for k in range(3):
        source(randn(4, 3, 2, 2, seed=30 + k, loc=2.0))
    source.save(tmp_path / "bn.npz")
    target = BatchNorm2d(3)
    target.load_state_dict(load(tmp_path / "bn.npz"))
    for name, value in source.state_dict().items():
        np.testing.assert_array_equal(target.state_dict()[name], value)
        assert target.state_dict()[name].dtype == value.dtype
    assert int(target.num_batches_tracked) == 3
    x = randn(2, 3, 2, 2, seed=40).astype(np.float32)
    np.testing.assert_array_equal(source.eval()(x).data, target.eval()(x).data)
    # the loaded buffers go on updating
    target.train()(randn(4, 3, 2, 2, seed=41))
    assert int(target.num_batches_tracked) == 4 and "running_mean" in target.state_dict()


def test_to_float64_converts_buffers():
    bn = BatchNorm1d(3).to(np.float64)
    assert bn.running_mean.dtype == bn.running_var.dtype == bn.weight.dtype == np.float64
    assert bn.num_batches_tracked.dtype == np.int64
    bn(randn(4, 3, seed=42))
    assert int(bn.num_batches_tracked) == 1


# ---- errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("layer, bad, expected", [
    (BatchNorm1d(3), (4,), "(N, 3) or (N, 3, L)"), (BatchNorm1d(3), (4, 2), "(N, 3) or (N, 3, L)"),
    (BatchNorm1d(3), (4, 3, 2, 2), "(N, 3) or (N, 3, L)"), (BatchNorm2d(3), (4, 3, 5), "(N, 3, H, W)"),
    (BatchNorm2d(3), (4, 2, 5, 5), "(N, 3, H, W)")])
def test_wrong_input_names_layer_and_shapes(layer, bad, expected):
    with pytest.raises(nk.ShapeError) as info:
        layer(nk.zeros(bad))
    message = str(info.value)
    assert message.startswith(type(layer).__name__ + "(3") and expected in message and str(bad) in message


def test_one_value_per_channel_refused_in_training():
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm1d(3)(nk.zeros((1, 3)))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        BatchNorm2d(3)(nk.zeros((1, 3, 1, 1)))
    assert BatchNorm1d(3)(nk.zeros((1, 3, 2))).shape == (1, 3, 2)      # N * L = 2 values


# ---- functional tracing ----------------------------------------------------------------------------------------

def test_running_statistics_refuse_a_trace():
    bn = BatchNorm1d(3, dtype=np.float64)
    f = nk.grad(lambda x: (bn(x) * bn(x)).sum())
    with pytest.raises(RuntimeError, match="traced function"):
        f(randn(4, 3, seed=50))
    assert int(bn.num_batches_tracked) == 0


# ---- PyTorch -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("cls, shape, axes", LAYOUTS)
def test_matches_torch_training_and_eval(cls, shape, axes, momentum):
    torch = oracle("torch")
    ours = with_affine(cls(3, momentum=momentum, dtype=np.float64))
    theirs = getattr(torch.nn, cls.__name__)(3, momentum=momentum).double()
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    for k in range(3):
        x = randn(*shape, seed=60 + k, loc=k, scale=1 + k)
        xv = nk.from_ndarray(x.copy()).requires_grad()
        xt = torch.tensor(x, requires_grad=True)
        y, yt = ours(xv), theirs(xt)
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        seed = randn(*shape, seed=70 + k)
        (y * seed).sum().backward()
        (yt * torch.from_numpy(seed)).sum().backward()
        np.testing.assert_allclose(xv.grad, xt.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-8, atol=1e-10)
    for name, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[name], value.numpy(), rtol=1e-12, err_msg=name)
    ours.eval()
    theirs.eval()
    x = randn(*shape, seed=80)
    np.testing.assert_allclose(ours(x).data, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_torch_state_dict_loads_into_ours():
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs = torch.nn.BatchNorm1d(3)
    for _ in range(2):
        theirs(torch.randn(8, 3, 4) * 2 + 1)
    theirs.eval()
    ours = BatchNorm1d(3)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    ours.eval()
    x = randn(2, 3, 4, seed=90).astype(np.float32)
    np.testing.assert_allclose(ours(x).data, theirs(torch.from_numpy(x)).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


# ---- regressions: engine / module bugs found while writing these layers ------------------------------------------

def test_grad_of_a_function_closing_over_a_module():
    bn = BatchNorm1d(3, dtype=np.float64).eval()
    f = nk.grad(lambda x: (bn(x) * bn(x)).sum())
    x = randn(4, 3, seed=91)
    xv = nk.from_ndarray(x.copy()).requires_grad()
    (bn(xv) * bn(xv)).sum().backward()
    np.testing.assert_allclose(f(x), xv.grad, rtol=1e-12)


def test_assigning_a_buffer_keeps_it_a_buffer():
    class Holder(Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("stat", np.zeros(2))

    holder = Holder()
    holder.stat = np.ones(2)
    assert "stat" in holder.state_dict()
