"""Bad inputs to every public constructor, layer, loss, optimizer and loader (issue 11).

Each call either raises a neuronika or built-in exception whose message names the
operation, or gives the right answer; either way the model, the optimizer and the
dataset are left exactly as they were (their state dicts compared before and after).
"""
from __future__ import annotations

import math
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import neuronika as nk
from neuronika import nn, optim
from neuronika.data import DataLoader, Dataset, from_csv, train_test_split
from neuronika.nn import functional as F
from neuronika.optim import lr_scheduler

ALLOWED = (ValueError, TypeError, IndexError, KeyError, OverflowError, RuntimeError, OSError)
# Modest and derandomized: the same examples every run, in a few seconds (the finite tables
# are enumerated in full; the random parts get a sample).
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NAN, INF = float("nan"), float("inf")


def attempt(fn, *names):
    """(True, result), or (False, error) for an allowed error whose message names the operation."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")          # NaN arithmetic, zero-size means, dropout=...
            return True, fn()
    except ALLOWED as error:
        message = str(error)
        assert any(name.lower() in message.lower() for name in names), \
            f"{type(error).__name__}: {message!r} names none of {names}"
        return False, error


def model_state(model):
    return {k: np.array(v, copy=True) for k, v in model.state_dict().items()}


def assert_same_state(before, after):
    assert list(before) == list(after)
    for key, value in before.items():
        assert after[key].dtype == value.dtype, key
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def assert_same_optimizer(before, after):
    assert len(before["param_groups"]) == len(after["param_groups"])
    for a, b in zip(before["param_groups"], after["param_groups"]):
        assert a == b
    assert list(before["state"]) == list(after["state"])
    for i, entries in before["state"].items():
        assert list(entries) == list(after["state"][i])
        for key, value in entries.items():
            np.testing.assert_array_equal(after["state"][i][key], value)


# ---- constructors ---------------------------------------------------------------------------------

BAD_SIZE = [0, -1, -7, 2.5, NAN, "3", None, True]
BAD_PROBABILITY = [-0.1, 1.5, NAN, INF, "0.5", None]
BAD_POSITIVE = [0.0, -1.0, NAN, "x", None]
BAD_DTYPE = [np.int32, bool, "not a dtype", np.complex128]

# (the name the error must carry, the constructor, valid keyword arguments, {argument: bad values})
LAYERS = [
    ("Linear", nn.Linear, dict(in_features=3, out_features=2),
     dict(in_features=BAD_SIZE, out_features=BAD_SIZE, dtype=BAD_DTYPE)),
    ("Conv1d", nn.Conv1d, dict(in_channels=2, out_channels=4, kernel_size=3),
     dict(in_channels=BAD_SIZE, out_channels=BAD_SIZE, kernel_size=BAD_SIZE + [(3, 3)], stride=BAD_SIZE,
          padding=[-1, "full", 2.5], dilation=BAD_SIZE, groups=BAD_SIZE + [3],
          padding_mode=["circular", 3], dtype=BAD_DTYPE)),
    ("Conv2d", nn.Conv2d, dict(in_channels=2, out_channels=4, kernel_size=3),
     dict(in_channels=BAD_SIZE, kernel_size=BAD_SIZE + [(3,), (3, 0)], stride=[(1, 0), -1],
          padding=[(1, -1), "half"], groups=[3, 0], dtype=BAD_DTYPE)),
    ("Conv3d", nn.Conv3d, dict(in_channels=2, out_channels=4, kernel_size=3),
     dict(out_channels=BAD_SIZE, kernel_size=[(3, 3), 0], dilation=[0, (1, 1, -1)])),
    ("MaxPool2d", nn.MaxPool2d, dict(kernel_size=2),
     dict(kernel_size=BAD_SIZE, stride=[0, -1, 2.5, "2", (1, 0)], padding=[-1, 2, 2.5, "same"])),
    ("AvgPool1d", nn.AvgPool1d, dict(kernel_size=2), dict(kernel_size=BAD_SIZE, padding=[-1, 3])),
    ("MaxPool3d", nn.MaxPool3d, dict(kernel_size=2), dict(kernel_size=[(2, 2), 0], stride=[0, (1, 1, 0)])),
    ("BatchNorm1d", nn.BatchNorm1d, dict(num_features=3),
     dict(num_features=BAD_SIZE, eps=BAD_POSITIVE, momentum=[-0.1, 1.5, NAN, "x"], dtype=BAD_DTYPE)),
    ("BatchNorm2d", nn.BatchNorm2d, dict(num_features=3), dict(num_features=BAD_SIZE, eps=BAD_POSITIVE)),
    ("LayerNorm", nn.LayerNorm, dict(normalized_shape=3),
     dict(normalized_shape=BAD_SIZE + [(), (3, 0), (2, -1)], eps=BAD_POSITIVE, dtype=BAD_DTYPE)),
    ("Embedding", nn.Embedding, dict(num_embeddings=5, embedding_dim=2),
     dict(num_embeddings=BAD_SIZE, embedding_dim=BAD_SIZE, dtype=BAD_DTYPE)),
    ("Dropout", nn.Dropout, dict(p=0.5), dict(p=BAD_PROBABILITY)),
    ("LeakyReLU", nn.LeakyReLU, dict(), dict(negative_slope=[NAN, "x", None])),
    ("Softmax", nn.Softmax, dict(), dict(axis=[1.5, "x", None])),
    ("LogSoftmax", nn.LogSoftmax, dict(), dict(axis=[1.5, None])),
    ("Flatten", nn.Flatten, dict(), dict(start_axis=[1.5, "x", None])),
    ("RNN", nn.RNN, dict(input_size=3, hidden_size=4),
     dict(input_size=BAD_SIZE, hidden_size=BAD_SIZE, num_layers=BAD_SIZE, dropout=BAD_PROBABILITY,
          nonlinearity=["sigmoid", None], dtype=BAD_DTYPE)),
    ("LSTM", nn.LSTM, dict(input_size=3, hidden_size=4), dict(hidden_size=BAD_SIZE, num_layers=BAD_SIZE)),
    ("GRU", nn.GRU, dict(input_size=3, hidden_size=4), dict(input_size=BAD_SIZE, dropout=BAD_PROBABILITY)),
    ("RNNCell", nn.RNNCell, dict(input_size=3, hidden_size=4),
     dict(input_size=BAD_SIZE, hidden_size=BAD_SIZE, nonlinearity=["gelu"], dtype=BAD_DTYPE)),
    ("LSTMCell", nn.LSTMCell, dict(input_size=3, hidden_size=4), dict(hidden_size=BAD_SIZE)),
    ("GRUCell", nn.GRUCell, dict(input_size=3, hidden_size=4), dict(input_size=BAD_SIZE)),
    ("MSELoss", nn.MSELoss, dict(), dict(reduction=["avg", None, 3])),
    ("L1Loss", nn.L1Loss, dict(), dict(reduction=["batchmean"])),
    ("BCELoss", nn.BCELoss, dict(), dict(reduction=["avg"], weight=[np.array(["a"]), "x"])),
    ("BCEWithLogitsLoss", nn.BCEWithLogitsLoss, dict(), dict(reduction=["avg"], pos_weight=[np.array(["a"])])),
    ("NLLLoss", nn.NLLLoss, dict(), dict(reduction=["avg"], ignore_index=[1.5, "x", None])),
    ("CrossEntropyLoss", nn.CrossEntropyLoss, dict(),
     dict(label_smoothing=[-0.1, 1.5, NAN, "x"], reduction=["avg"], ignore_index=[1.5, None])),
    ("KLDivLoss", nn.KLDivLoss, dict(), dict(reduction=["avg", None])),
    ("HuberLoss", nn.HuberLoss, dict(), dict(delta=[0.0, -1.0, NAN, "x"])),
    ("SmoothL1Loss", nn.SmoothL1Loss, dict(), dict(beta=[-1.0, NAN, "x"])),
]


def _bad_call(table):
    """(name, constructor, keyword arguments with exactly one bad value)."""
    def one(entry):
        name, make, valid, bad = entry
        return st.sampled_from(sorted(bad)).flatmap(
            lambda key: st.sampled_from(bad[key]).map(lambda value: (name, make, {**valid, key: value})))
    return st.sampled_from(table).flatmap(one)


@SETTINGS
@given(_bad_call(LAYERS))
def test_layer_and_loss_constructors_refuse_bad_options(call):
    name, make, kwargs = call
    made, error = attempt(lambda: make(**kwargs), name)
    assert not made, f"{name}({kwargs}) accepted a bad option"


def _params():
    nk.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    return model, model.parameters()


OPTIMIZERS = [
    ("SGD", optim.SGD, dict(lr=0.1),
     dict(lr=[-1.0, NAN, INF, "0.1", None], momentum=[-0.5, NAN, "x"], dampening=[NAN, "x"],
          weight_decay=[-1.0, NAN], nesterov=[True], penalty=["l2", 3])),
    ("Adam", optim.Adam, dict(),
     dict(lr=[-1.0, NAN, INF], betas=[(1.0, 0.9), (0.9,), "ab", (-0.1, 0.9), (NAN, 0.9), 0.9],
          eps=[-1.0, NAN], weight_decay=[-1.0, "x"])),
    ("AdamW", optim.AdamW, dict(), dict(lr=[-1.0], betas=[(0.9, 1.0)], weight_decay=[-0.1, NAN])),
    ("AMSGrad", optim.AMSGrad, dict(), dict(eps=[-1.0], betas=[(0.9, 2)])),
    ("Adagrad", optim.Adagrad, dict(),
     dict(lr=[-1.0, NAN], lr_decay=[-1.0, NAN], initial_accumulator_value=[-1.0, "x"], eps=[-1.0])),
    ("RMSprop", optim.RMSprop, dict(), dict(alpha=[-1.0, NAN], momentum=[-1.0], eps=[NAN], lr=[INF])),
    ("Adamax", optim.Adamax, dict(), dict(betas=[(1.5, 0.9)], lr=[-1.0], eps=["x"])),
]


@SETTINGS
@given(_bad_call(OPTIMIZERS))
def test_optimizer_constructors_refuse_bad_options_and_leave_the_model_alone(call):
    name, make, kwargs = call
    model, params = _params()
    before = model_state(model)
    made, _ = attempt(lambda: make(params, **kwargs), name)
    assert not made, f"{name}({kwargs}) accepted a bad option"
    assert_same_state(before, model_state(model))


BAD_PARAMS = [[], "abc", 5, None, [np.ones(3)], [nk.ones(3)], [[1.0, 2.0]], [{"lr": 0.1}],
              [{"params": []}, 5], lambda p: [p[0], p[0]], lambda p: [{"params": p[:1]}, {"params": p[:1]}],
              lambda p: [{"params": p, "bogus": 1}], lambda p: p[0]]


@SETTINGS
@given(st.sampled_from(OPTIMIZERS), st.sampled_from(BAD_PARAMS))
def test_optimizers_refuse_bad_parameter_lists(entry, bad):
    name, make, valid, _ = entry
    model, params = _params()
    given_params = bad(params) if callable(bad) else bad
    made, _ = attempt(lambda: make(given_params, **valid), name)
    assert not made, f"{name} accepted params={given_params!r}"


@SETTINGS
@given(st.sampled_from([("L1", optim.L1), ("L2", optim.L2)]), st.sampled_from([-1.0, NAN, INF, "x", None]))
def test_penalties_refuse_bad_strengths(entry, value):
    name, make = entry
    assert not attempt(lambda: make(value), name)[0]
    assert not attempt(lambda: optim.ElasticNet(0.1, value), "ElasticNet")[0]


SCHEDULERS = [
    ("StepLR", lr_scheduler.StepLR, dict(step_size=2), dict(step_size=BAD_SIZE, gamma=[NAN, "x"],
                                                            last_epoch=[-2, 1.5])),
    ("MultiStepLR", lr_scheduler.MultiStepLR, dict(milestones=[2]), dict(milestones=[[-1], 3, ["a"]])),
    ("ExponentialLR", lr_scheduler.ExponentialLR, dict(gamma=0.9), dict(gamma=[NAN, INF, None])),
    ("CosineAnnealingLR", lr_scheduler.CosineAnnealingLR, dict(T_max=5), dict(T_max=BAD_SIZE, eta_min=[NAN])),
    ("OneCycleLR", lr_scheduler.OneCycleLR, dict(max_lr=0.1, total_steps=10),
     dict(total_steps=BAD_SIZE, pct_start=[1.5, NAN], anneal_strategy=["sin"], max_lr=[-1.0, [0.1, 0.2]],
          div_factor=[0.0])),
    ("ReduceLROnPlateau", lr_scheduler.ReduceLROnPlateau, dict(),
     dict(mode=["mid"], factor=[1.5, 0.0, NAN], patience=[-1, 1.5], threshold_mode=["x"], min_lr=[-1.0])),
    ("LambdaLR", lr_scheduler.LambdaLR, dict(lr_lambda=lambda e: 1.0), dict(lr_lambda=[3, [None, None]])),
]


@SETTINGS
@given(_bad_call(SCHEDULERS))
def test_schedulers_refuse_bad_options_and_leave_the_optimizer_alone(call):
    name, make, kwargs = call
    model, params = _params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    before = opt.state_dict()
    made, _ = attempt(lambda: make(opt, **kwargs), name)
    assert not made, f"{name}({kwargs}) accepted a bad option"
    assert_same_optimizer(before, opt.state_dict())


# ---- optimizer state ---------------------------------------------------------------------------------

def _trained_optimizer(make, kwargs):
    model, params = _params()
    opt = make(params, **kwargs)
    for p in params:
        p.grad = np.ones(p.shape, p.dtype)
    opt.step()
    return model, opt


STATE_EDITS = [
    ("drop state", lambda s: s.pop("state")),
    ("drop groups", lambda s: s.pop("param_groups")),
    ("extra entry", lambda s: s.__setitem__("epoch", 3)),
    ("groups not a list", lambda s: s.__setitem__("param_groups", "x")),
    ("one group more", lambda s: s["param_groups"].append(dict(s["param_groups"][0]))),
    ("a parameter less", lambda s: s["param_groups"][0]["params"].pop()),
    ("negative lr", lambda s: s["param_groups"][0].__setitem__("lr", -1.0)),
    ("nan lr", lambda s: s["param_groups"][0].__setitem__("lr", NAN)),
    ("state not a dict", lambda s: s.__setitem__("state", [1, 2])),
    ("unknown parameter", lambda s: s["state"].__setitem__(99, {})),
    ("negative parameter", lambda s: s["state"].__setitem__(-1, {})),
    ("entry not a dict", lambda s: s["state"].__setitem__(0, 3)),
    ("wrong shape", lambda s: [e.__setitem__(k, np.zeros(7)) for e in s["state"].values()
                               for k, v in list(e.items()) if isinstance(v, np.ndarray)]),
    ("complex", lambda s: [e.__setitem__(k, v.astype(np.complex64)) for e in s["state"].values()
                           for k, v in list(e.items()) if isinstance(v, np.ndarray)]),
    ("overflow", lambda s: [e.__setitem__(k, np.full(v.shape, 1e39)) for e in s["state"].values()
                            for k, v in list(e.items()) if isinstance(v, np.ndarray)]),
    ("bad step", lambda s: [e.__setitem__("step", -3) for e in s["state"].values() if "step" in e]),
]


@SETTINGS
@given(st.sampled_from(OPTIMIZERS), st.sampled_from(STATE_EDITS), st.integers(0, 2))
def test_optimizer_load_state_dict_is_atomic(entry, edit, good_changes):
    name, make, valid, _ = entry
    model, opt = _trained_optimizer(make, valid)
    before = opt.state_dict()
    saved = opt.state_dict()
    if good_changes:                               # valid changes that must not land either
        saved["param_groups"][0]["lr"] = 0.5
    if good_changes == 2:
        for entries in saved["state"].values():
            for key, value in entries.items():
                if isinstance(value, np.ndarray):
                    entries[key] = value + 1
    label, change = edit
    change(saved)
    made, _ = attempt(lambda: opt.load_state_dict(saved), f"{name}.load_state_dict")
    if made:
        # a change that is not an error here (an optimizer with no array state, say) loads as given
        after = opt.state_dict()
        assert after["param_groups"][0]["lr"] == saved["param_groups"][0]["lr"], label
    else:
        assert_same_optimizer(before, opt.state_dict())


# ---- layers on bad inputs ------------------------------------------------------------------------------

def _float(x):
    return np.asarray(x, np.float64)


# (name, the layer (in eval mode, float64), a valid input shape, shapes that must be refused)
FORWARD = [
    ("Linear", lambda: nn.Linear(3, 2, dtype=np.float64), (4, 3), [(4, 2), (4, 3, 1), ()]),
    ("Conv1d", lambda: nn.Conv1d(2, 3, 3, dtype=np.float64), (2, 2, 6), [(6,), (2, 3, 6), (2, 2, 2), (2, 2, 2, 6)]),
    ("Conv2d", lambda: nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64), (2, 1, 5, 5),
     [(5, 5), (2, 2, 5, 5), (2, 1, 5), (1, 2, 1, 5, 5)]),
    ("Conv3d", lambda: nn.Conv3d(1, 2, 2, dtype=np.float64), (1, 1, 3, 3, 3), [(3, 3, 3), (1, 1, 1, 3, 3)]),
    ("MaxPool2d", lambda: nn.MaxPool2d(2), (2, 3, 4, 4), [(4,), (2, 3, 1, 1), (1, 2, 3, 4, 4)]),
    ("AvgPool1d", lambda: nn.AvgPool1d(2), (2, 3, 6), [(6,), (2, 3, 1)]),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(3, dtype=np.float64), (4, 3), [(4, 2), (4,), (4, 3, 2, 2)]),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(2, dtype=np.float64), (2, 2, 3, 3), [(2, 3, 3), (2, 3, 3, 3)]),
    ("LayerNorm", lambda: nn.LayerNorm((2, 3), dtype=np.float64), (4, 2, 3), [(4, 3, 2), (3,)]),
    ("RNN", lambda: nn.RNN(3, 4, dtype=np.float64), (5, 2, 3), [(5, 2, 4), (3,), (0, 2, 3), (5, 2, 3, 1)]),
    ("LSTM", lambda: nn.LSTM(3, 4, batch_first=True, dtype=np.float64), (2, 5, 3), [(2, 0, 3), (2, 5, 2)]),
    ("GRUCell", lambda: nn.GRUCell(3, 4, dtype=np.float64), (2, 3), [(2, 4), (2, 3, 1)]),
    ("Softmax", lambda: nn.Softmax(1), (2, 3), [(3,)]),
    ("Flatten", lambda: nn.Flatten(2), (2, 3, 4), [(2, 3)]),
    ("GroupNorm", lambda: nn.GroupNorm(2, 4, dtype=np.float64), (2, 4, 3), [(2, 3, 3), (4,)]),
    ("InstanceNorm1d", lambda: nn.InstanceNorm1d(3, affine=True, dtype=np.float64), (2, 3, 5),
     [(2, 4, 5), (5,), (2, 3, 4, 5)]),
    ("InstanceNorm2d", lambda: nn.InstanceNorm2d(2, track_running_stats=True, dtype=np.float64), (2, 2, 3, 3),
     [(2, 3, 3, 3), (3, 3)]),
    ("RMSNorm", lambda: nn.RMSNorm(3, dtype=np.float64), (4, 3), [(4, 2), ()]),
    ("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 5, 7), [(5,), (1, 2, 3, 5, 7)]),
    ("AdaptiveMaxPool2d", lambda: nn.AdaptiveMaxPool2d(2), (2, 3, 5, 5), [(5, 5), (5,)]),
    ("PixelShuffle", lambda: nn.PixelShuffle(2), (2, 8, 3, 3), [(2, 6, 3, 3), (8, 3)]),
    ("Upsample", lambda: nn.Upsample(scale_factor=2, mode="bilinear"), (2, 3, 4, 4), [(4, 4), (2, 3, 4)]),
    ("Unfold", lambda: nn.Unfold(2), (2, 3, 4, 4), [(4, 4), (2, 3, 1, 1)]),
    ("Fold", lambda: nn.Fold((3, 3), 2), (2, 8, 4), [(2, 8, 5), (2, 7, 4)]),
]


def _forward(layer, x):
    out = layer(x)
    return out[0] if isinstance(out, tuple) else out


@SETTINGS
@given(st.sampled_from(FORWARD), st.data())
def test_layers_refuse_bad_shapes_and_leave_the_model_alone(entry, data):
    name, make, shape, bad_shapes = entry
    layer = make().eval()
    before = model_state(layer)
    x = np.ones(data.draw(st.sampled_from(bad_shapes)))
    made, _ = attempt(lambda: _forward(layer, x).data, name)
    assert not made, f"{name} accepted an input of shape {x.shape}"
    assert_same_state(before, model_state(layer))


@SETTINGS
@given(st.sampled_from(FORWARD), st.sampled_from(["int", "bool", "complex", "nan", "inf", "empty"]),
       st.integers(0, 2 ** 16), st.booleans())
def test_layers_on_bad_values_raise_or_give_the_right_answer(entry, kind, seed, training):
    name, make, shape, _ = entry
    layer = make().train(training and name.startswith("BatchNorm"))
    before = model_state(layer)
    base = np.round(np.random.default_rng(seed).standard_normal(shape) * 3)
    if kind == "int":
        x = base.astype(np.int64)
    elif kind == "bool":
        x = base > 0
    elif kind == "complex":
        x = base.astype(np.complex128)
    elif kind in ("nan", "inf"):
        x = base.copy()
        x.flat[seed % x.size] = NAN if kind == "nan" else INF
    else:
        x = np.zeros((0,) + shape[1:]) if name not in ("RNN",) else np.zeros((shape[0], 0, shape[2]))
    made, out = attempt(lambda: np.asarray(_forward(layer, x).data), name)
    if not made:
        assert_same_state(before, model_state(layer))
        return
    if not layer.training:
        assert_same_state(before, model_state(layer))
    twin = make().train(layer.training)
    twin.load_state_dict(before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        reference = np.asarray(_forward(twin, _float(x.real if kind == "complex" else x)).data)
    if kind in ("int", "bool", "complex"):
        assert out.shape == reference.shape
        np.testing.assert_allclose(out.real if kind == "complex" else out, reference, rtol=1e-6, atol=1e-9)
        if kind == "complex":
            np.testing.assert_allclose(out.imag, 0, atol=1e-12)
    elif kind == "nan":
        assert not np.all(np.isfinite(out)), f"{name}: a NaN input gave a finite output"
    elif kind == "empty":
        assert out.size == 0


@SETTINGS
@given(st.lists(st.integers(-6, 10), max_size=6), st.sampled_from([np.int64, np.uint8, np.float64, bool]))
def test_embedding_on_bad_indices_raises_or_picks_the_rows(indices, dtype):
    layer = nn.Embedding(5, 2, dtype=np.float64)
    before = model_state(layer)
    index = np.array(indices).astype(dtype) if dtype is not np.uint8 else np.array(indices) % 256
    index = index.astype(dtype)
    made, out = attempt(lambda: np.asarray(layer(index).data), "Embedding")
    assert_same_state(before, model_state(layer))
    if index.dtype.kind not in "iu" or np.any(index < 0) or np.any(index >= 5):
        assert not made, f"Embedding accepted {index!r}"
    else:
        assert made
        np.testing.assert_array_equal(out, before["weight"][index])


# ---- losses -----------------------------------------------------------------------------------------

LOSSES = {
    "mse_loss": (F.mse_loss, "same"), "l1_loss": (F.l1_loss, "same"), "huber_loss": (F.huber_loss, "same"),
    "smooth_l1_loss": (F.smooth_l1_loss, "same"), "kl_div_loss": (F.kl_div_loss, "same"),
    "bce_loss": (F.bce_loss, "probabilities"), "bce_with_logits_loss": (F.bce_with_logits_loss, "same"),
    "nll_loss": (F.nll_loss, "classes"), "cross_entropy": (F.cross_entropy, "classes"),
}


def _loss_inputs(kind, target_kind, n, c, rng):
    x = rng.uniform(0.05, 0.95, (n, c))
    if target_kind == "classes":
        t = rng.integers(0, c, n)
    else:
        t = rng.uniform(0.0, 1.0, (n, c))
    bad = None
    if kind == "target shape":
        t = t[:-1] if n > 1 else np.concatenate([t, t])
        bad = "refuse"
    elif kind == "input int":
        x = (x * 10).astype(np.int64)
        bad = "refuse"
    elif kind == "target float classes" and target_kind == "classes":
        t = t.astype(np.float64) + 0.5
        bad = "refuse"
    elif kind == "class out of range" and target_kind == "classes":
        t[rng.integers(0, n)] = rng.choice([-1, c, c + 5])
        bad = "refuse"
    elif kind == "probability out of range" and target_kind == "probabilities":
        x[rng.integers(0, n), 0] = rng.choice([-0.5, 1.5])
        bad = "refuse"
    elif kind == "nan":
        x[0, :] = NAN
        bad = "nan" if target_kind != "probabilities" else "refuse"
    elif kind == "empty":
        x = x[:0]
        t = t[:0]
        bad = "empty"
    elif kind == "scalar input":
        x = np.array(0.5)
        bad = "refuse"
    return x, t, bad


@SETTINGS
@given(st.sampled_from(sorted(LOSSES)), st.sampled_from(["mean", "sum", "none"]),
       st.sampled_from(["target shape", "input int", "target float classes", "class out of range",
                        "probability out of range", "nan", "empty", "scalar input"]),
       st.integers(1, 5), st.integers(2, 4), st.integers(0, 2 ** 16), st.booleans())
def test_losses_on_bad_inputs_raise_or_give_the_right_answer(name, reduction, kind, n, c, seed, compiled):
    fn, target_kind = LOSSES[name]
    x, t, bad = _loss_inputs(kind, target_kind, n, c, np.random.default_rng(seed))
    if bad is None:
        return                                     # the kind does not apply to this loss
    x_before, t_before = x.copy(), t.copy()
    if compiled:
        call = lambda: nk.value_and_grad(lambda a, b: fn(a, b, reduction=reduction).sum())(x, t)[0] \
            if x.dtype.kind == "f" else fn(x, t, reduction=reduction).data
    else:
        call = lambda: np.asarray(fn(x, t, reduction=reduction).data)
    made, out = attempt(call, name)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(t, t_before)
    if bad == "refuse":
        assert not made, f"{name} accepted {kind}"
    elif bad == "nan":
        assert made and np.isnan(np.sum(out)), f"{name}: a NaN input gave {out}"
    elif bad == "empty":
        assert made
        if reduction == "sum":
            assert float(np.sum(out)) == 0.0
        elif reduction == "none" and not compiled:
            assert np.asarray(out).size == 0
        elif reduction == "mean":
            assert np.isnan(out) or name == "kl_div_loss" and out == 0


# ---- datasets and loaders --------------------------------------------------------------------------------

def _dataset():
    return Dataset(np.arange(12.0).reshape(6, 2), np.arange(6))


def _same_dataset(data, records, labels):
    np.testing.assert_array_equal(data.records, records)
    np.testing.assert_array_equal(data.labels, labels)


DATA_CALLS = [
    ("Dataset", lambda d: Dataset(np.array(1.0))),
    ("Dataset", lambda d: Dataset(np.zeros((3, 2)), np.zeros(4))),
    ("Dataset", lambda d: Dataset(np.zeros((3, 2)), np.array(2))),
    ("DataLoader", lambda d: DataLoader(d, batch_size=0)),
    ("DataLoader", lambda d: DataLoader(d, batch_size=-2)),
    ("DataLoader", lambda d: DataLoader(d, batch_size=2.5)),
    ("DataLoader", lambda d: DataLoader(d, batch_size="4")),
    ("DataLoader", lambda d: DataLoader(d, batch_size=None)),
    ("DataLoader", lambda d: DataLoader(d, seed=3)),
    ("DataLoader", lambda d: DataLoader(d.records)),
    ("Dataset", lambda d: d[6]),
    ("Dataset", lambda d: d[-7]),
    ("Dataset", lambda d: d[[0, 9]]),
    ("Dataset", lambda d: d[np.array([True, False])]),
    ("Dataset", lambda d: d[np.array([0.5])]),
    ("Dataset", lambda d: d["a"]),
    ("Dataset", lambda d: d[np.zeros((2, 2), int)]),
    ("split", lambda d: d.split([3, 2])),
    ("split", lambda d: d.split([7, -1])),
    ("split", lambda d: d.split([0.5, 0.6])),
    ("split", lambda d: d.split([NAN, 1.0])),
    ("split", lambda d: d.split([])),
    ("split", lambda d: d.split(5)),
    ("split", lambda d: d.split([3, 3], seed=1, shuffle=False)),
    ("kfold", lambda d: list(d.kfold(1))),
    ("kfold", lambda d: list(d.kfold(7))),
    ("kfold", lambda d: list(d.kfold(2.5))),
    ("train_test_split", lambda d: train_test_split(d, test_size=0)),
    ("train_test_split", lambda d: train_test_split(d, test_size=6)),
    ("train_test_split", lambda d: train_test_split(d, test_size=1.5)),
    ("train_test_split", lambda d: train_test_split(d, test_size=NAN)),
    ("train_test_split", lambda d: train_test_split(d, test_size="x")),
    ("train_test_split", lambda d: train_test_split(d, np.arange(6))),
]


@SETTINGS
@given(st.sampled_from(DATA_CALLS))
def test_datasets_and_loaders_refuse_bad_arguments_and_stay_unchanged(call):
    name, fn = call
    data = _dataset()
    records, labels = data.records.copy(), data.labels.copy()
    made, result = attempt(lambda: fn(data), name)
    assert not made, f"{name}: accepted, giving {result!r}"
    _same_dataset(data, records, labels)


FIELDS = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
    st.sampled_from(["", " ", "abc", "1e39", "-1e39", "99999999999999999999", "nan", "inf", "1,5", "0x10",
                     "\xe9", "\"3\"", "1.5"]),
)


def _expected(rows, dtype):
    """The records a correct from_csv gives for ``rows`` of field texts, or None if it must raise."""
    width = len(rows[0])
    values = []
    for row in rows:
        if len(row) != width:
            return None
        parsed = []
        for text in row:
            try:
                value = float(text.strip())
            except ValueError:
                return None
            if math.isfinite(value) and abs(value) > float(np.finfo(dtype).max):
                return None
            parsed.append(value)
        values.append(parsed)
    return np.array(values, dtype)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.lists(st.lists(FIELDS, min_size=1, max_size=3), min_size=1, max_size=4),
       st.sampled_from([np.float32, np.float64]), st.sampled_from(["utf-8", "latin-1"]))
def test_from_csv_on_bad_fields_raises_naming_the_file_or_reads_them_right(rows, dtype, encoding):
    import csv
    import io
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    text = buffer.getvalue()
    content = text.encode(encoding)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "fuzz.csv")
        with open(path, "wb") as handle:
            handle.write(content)
        made, result = attempt(lambda: from_csv(path, header=False, dtype=dtype), path)
    rows_read = [row for row in csv.reader(io.StringIO(text)) if row and not (len(row) == 1 and not row[0].strip())]
    expected = _expected(rows_read, dtype) if rows_read else None
    if encoding == "latin-1" and "\xe9" in text:
        expected = None                            # not UTF-8
    if expected is None:
        assert not made, f"from_csv read {rows!r} as {result!r}"
        return
    assert made, f"from_csv refused {rows!r}: {result}"
    np.testing.assert_array_equal(result.records, expected)
    assert result.records.dtype == dtype


CREATION = [
    ("zeros", lambda: nk.zeros(-1)), ("zeros", lambda: nk.zeros((2, 2.5))), ("zeros", lambda: nk.zeros(None)),
    ("zeros", lambda: nk.zeros(2, dtype="not a dtype")), ("ones", lambda: nk.ones("x")),
    ("full", lambda: nk.full(-2, 1.0)), ("full", lambda: nk.full(2, "x")), ("full", lambda: nk.full(2, 1e39)),
    ("rand", lambda: nk.rand(-3)), ("randn", lambda: nk.randn((2, -1))), ("eye", lambda: nk.eye(-1)),
    ("eye", lambda: nk.eye(2.5)), ("arange", lambda: nk.arange(0, 5, 0)), ("arange", lambda: nk.arange(0, "x")),
    ("linspace", lambda: nk.linspace(0, 1, -1)), ("linspace", lambda: nk.linspace(0, 1, 2.5)),
    ("logspace", lambda: nk.logspace(0, 1, -2)), ("geomspace", lambda: nk.geomspace(0, 1, 3)),
    ("from_ndarray", lambda: nk.from_ndarray(np.array(["a"]))),
    ("from_ndarray", lambda: nk.from_ndarray(np.array([1e39]), dtype=np.float32)),
    ("from_ndarray", lambda: nk.from_ndarray([1, 2], dtype="not a dtype")),
    ("concatenate", lambda: nk.concatenate([nk.ones(2), nk.ones((2, 2))])), ("concatenate", lambda: nk.concatenate([])),
    ("stack", lambda: nk.stack([nk.ones(2), nk.ones(3)])), ("stack", lambda: nk.stack([])),
]


def test_creation_functions_refuse_bad_arguments():
    wrong = []
    for name, fn in CREATION:
        try:
            made, result = attempt(fn, name)
        except AssertionError as error:
            wrong.append(str(error))
        else:
            if made:
                wrong.append(f"{name} accepted, giving {result!r}")
    assert not wrong, "\n".join(wrong)


def test_from_ndarray_conversion_that_overflows_raises():
    with pytest.raises(OverflowError, match=r"from_ndarray: 1e\+39 overflows float32"):
        nk.from_ndarray(np.array([1.0, 1e39]), dtype=np.float32)
    with pytest.raises(OverflowError, match=r"from_ndarray: 300 does not fit uint8"):
        nk.from_ndarray(np.array([300]), dtype=np.uint8)
    assert nk.from_ndarray(np.array([1.0, np.inf, np.nan]), dtype=np.float32).dtype == np.float32


# ---- saved models ----------------------------------------------------------------------------------

def _saved_model(folder):
    nk.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    path = os.path.join(folder, "model.npz")
    model.save(path)
    with open(path, "rb") as handle:
        return model, path, handle.read()


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.data())
def test_nn_load_on_damaged_files_raises_naming_the_file_or_reads_them_exactly(data):
    with tempfile.TemporaryDirectory() as folder:
        model, path, raw = _saved_model(folder)
        damage = data.draw(st.sampled_from(["cut", "flip", "append"]))
        if damage == "cut":
            content = raw[:data.draw(st.integers(0, len(raw) - 1))]
        elif damage == "flip":
            at = data.draw(st.integers(0, len(raw) - 1))
            content = raw[:at] + bytes([raw[at] ^ data.draw(st.integers(1, 255))]) + raw[at + 1:]
        else:
            content = raw + data.draw(st.binary(min_size=1, max_size=20))
        damaged = os.path.join(folder, "damaged.npz")
        with open(damaged, "wb") as handle:
            handle.write(content)
        made, state = attempt(lambda: nn.load(damaged), damaged)
        if damage == "cut":
            assert not made, "a truncated file loaded"
        if made:
            assert_same_state(model.state_dict(), state)
            before = model_state(model)
            model.load_state_dict(state)
            assert_same_state(before, model_state(model))


STATE_DAMAGE = [
    ("drop", lambda s, k: s.pop(k)),
    ("extra", lambda s, k: s.__setitem__(k + ".extra", np.zeros(1))),
    ("shape", lambda s, k: s.__setitem__(k, np.zeros(s[k].shape + (1,), s[k].dtype))),
    ("complex", lambda s, k: s.__setitem__(k, s[k].astype(np.complex64))),
    ("text", lambda s, k: s.__setitem__(k, np.full(s[k].shape, "x"))),
    ("overflow", lambda s, k: s.__setitem__(k, np.full(s[k].shape, 1e39))),
    ("object", lambda s, k: s.__setitem__(k, object())),
    ("none", lambda s, k: s.__setitem__(k, None)),
]


@SETTINGS
@given(st.sampled_from(STATE_DAMAGE), st.integers(0, 6), st.booleans())
def test_load_state_dict_with_one_bad_entry_changes_nothing(damage, index, strict):
    nk.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    before = model_state(model)
    state = {k: (v + 1).astype(v.dtype) for k, v in before.items()}     # good changes that must not land
    keys = list(state)
    label, change = damage
    key = keys[index % len(keys)]
    change(state, key)
    made, _ = attempt(lambda: model.load_state_dict(state, strict=strict), "load_state_dict")
    if made:
        assert not strict and label in ("drop", "extra")
        assert model.state_dict()[keys[(index + 1) % len(keys)]].tolist() == \
            state[keys[(index + 1) % len(keys)]].tolist()
    else:
        assert_same_state(before, model_state(model))
