"""Functional optimizers (optim.sgd / adam / adamw) against the imperative ones over 20 steps,
eagerly on NumPy arrays and inside neuronika.jit."""
import numpy as np
import pytest

import neuronika as nk
from neuronika import optim
from neuronika.optim.optimizers import SGD, Adam, AdamW

W0 = np.array([[1.0, -2.0, 0.5], [-0.3, 1.5, -1.0]])
B0 = np.array([0.2, -0.7, 1.1])
C = np.array([[1.0, 0.5, 2.0], [3.0, 0.25, 1.5]])
D = np.array([0.3, -1.2, 0.8])


def loss_fn(p):
    return (p["w"] * p["w"] * C).sum() + (p["b"] * D).sum() + (p["b"] ** 4).sum()


PAIRS = {
    "sgd": (dict(lr=0.01), SGD, optim.sgd),
    "sgd-momentum": (dict(lr=0.01, momentum=0.9), SGD, optim.sgd),
    "sgd-nesterov": (dict(lr=0.01, momentum=0.9, nesterov=True, weight_decay=0.1), SGD, optim.sgd),
    "sgd-wd": (dict(lr=0.02, weight_decay=0.3), SGD, optim.sgd),
    "adam": (dict(lr=0.05), Adam, optim.adam),
    "adam-wd": (dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.2), Adam, optim.adam),
    "adamw": (dict(lr=0.05, weight_decay=0.1), AdamW, optim.adamw),
    "adamw-default": (dict(lr=0.05), AdamW, optim.adamw),
}


def imperative(options, cls, steps=20):
    w, b = nk.from_ndarray(W0.copy()).requires_grad(), nk.from_ndarray(B0.copy()).requires_grad()
    opt = cls([w, b], **options)
    for _ in range(steps):
        opt.zero_grad()
        loss = (w * w * nk.from_ndarray(C)).sum() + (b * nk.from_ndarray(D)).sum() + (b ** 4).sum()
        loss.backward()
        opt.step()
    return w.data, b.data


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_functional_matches_imperative(name):
    options, cls, make = PAIRS[name]
    opt = make(**options)
    params = {"w": W0.copy(), "b": B0.copy()}
    state = opt.init(params)
    grad = nk.grad(loss_fn)
    for _ in range(20):
        updates, state = opt.update(grad(params), state, params)
        params = optim.apply_updates(params, updates)
    w, b = imperative(options, cls)
    np.testing.assert_allclose(params["w"], w, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(params["b"], b, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_jitted_matches_imperative(name):
    options, cls, make = PAIRS[name]
    opt = make(**options)

    @nk.jit
    def step(params, state):
        updates, state = opt.update(nk.grad(loss_fn)(params), state, params)
        return optim.apply_updates(params, updates), state

    params = {"w": W0.copy(), "b": B0.copy()}
    state = opt.init(params)
    for _ in range(20):
        params, state = step(params, state)
    w, b = imperative(options, cls)
    np.testing.assert_allclose(params["w"], w, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(params["b"], b, rtol=1e-13, atol=1e-15)
    assert step.stats.traced == 1


def test_state_is_a_tree_of_arrays():
    params = [np.zeros((2, 3)), (np.zeros(3, np.float32),)]
    state = optim.adam().init(params)
    assert sorted(state) == ["count", "mu", "nu"]
    assert state["count"].shape == () and state["count"].dtype == np.int64
    assert isinstance(state["mu"], list) and isinstance(state["mu"][1], tuple)
    assert state["nu"][1][0].dtype == np.float32
    assert sorted(optim.sgd(0.1).init(params)) == ["count"]
    assert sorted(optim.sgd(0.1, momentum=0.5).init(params)) == ["count", "trace"]


def test_float32_updates_stay_float32_eagerly():
    params = {"w": np.ones(3, np.float32)}
    for opt in (optim.sgd(lambda t: 0.1 / t), optim.adam(), optim.adamw(np.float64(0.01))):
        state = opt.init(params)
        updates, state = opt.update({"w": np.ones(3, np.float32)}, state, params)
        assert updates["w"].dtype == np.float32, opt


def test_options_are_checked():
    with pytest.raises(ValueError, match="sgd: invalid learning rate"):
        optim.sgd(-0.1)
    with pytest.raises(TypeError, match="lr must be"):
        optim.sgd("0.1")
    with pytest.raises(ValueError, match="Nesterov"):
        optim.sgd(0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta2"):
        optim.adam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="betas must be a pair"):
        optim.adamw(betas=0.9)
    with pytest.raises(TypeError, match="weight_decay needs the parameters"):
        opt = optim.adam(weight_decay=0.1)
        opt.update([np.ones(2)], opt.init([np.ones(2)]))
    with pytest.raises(TypeError, match="state must be the dict"):
        optim.sgd(0.1).update([np.ones(2)], None)
    with pytest.raises(ValueError, match="apply_updates: updates does not have the structure of params"):
        optim.apply_updates({"a": np.ones(2)}, {"b": np.ones(2)})
