"""nn.functional_call and nn.stack_module_state: a model as a function of its parameters, for
grad, vmap (per-example gradients, ensembles) and jit."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika.nn import functional as F

RNG = np.random.default_rng(0)


def _model():
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).to(np.float64)


def test_per_example_gradients_of_a_model_match_its_backward():
    model = _model()
    params = {k: p.data.copy() for k, p in model.named_parameters()}
    xs, ys = RNG.standard_normal((6, 5)), RNG.integers(0, 3, 6)

    def loss(p, x, y):
        return F.cross_entropy(nn.functional_call(model, p, (x[None],)), y[None])

    grads = nk.jit(nk.vmap(nk.grad(loss), in_axes=(None, 0, 0)))(params, xs, ys)
    for i in range(6):
        model.zero_grad()
        F.cross_entropy(model(nk.from_ndarray(xs[i:i + 1])), ys[i:i + 1]).backward()
        for name, p in model.named_parameters():
            np.testing.assert_allclose(grads[name][i], p.grad, rtol=1e-12, atol=1e-15)
    # the model's own parameters are back, untouched
    for name, p in model.named_parameters():
        np.testing.assert_array_equal(p.data, params[name])
        assert p.requires_grad


def test_an_ensemble_through_vmap():
    models = [nn.Linear(5, 3).to(np.float64) for _ in range(4)]
    params, buffers = nn.stack_module_state(models)
    assert params["weight"].shape == (4, 3, 5) and buffers == {}
    xs = RNG.standard_normal((6, 5))
    out = nk.vmap(lambda p, x: nn.functional_call(models[0], p, (x,)), in_axes=(0, None))(params, xs)
    want = np.stack([m(nk.from_ndarray(xs)).data for m in models])
    np.testing.assert_allclose(out, want, rtol=1e-14)


def test_buffers_tied_weights_strictness_and_restoration():
    bn = nn.BatchNorm1d(3).to(np.float64).eval()
    x = RNG.standard_normal((4, 3))
    mean, var = np.array([1.0, -1.0, 0.5]), np.array([4.0, 1.0, 0.25])
    out = nn.functional_call(bn, {"running_mean": mean, "running_var": var}, (nk.from_ndarray(x),))
    np.testing.assert_allclose(out.data, (x - mean) / np.sqrt(var + bn.eps), rtol=1e-12)
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3))

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2, bias=False).to(np.float64)
            self.b = nn.Linear(2, 2, bias=False).to(np.float64)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x))

    tied = Tied()
    w = np.array([[2.0, 0.0], [0.0, 3.0]])
    out = nn.functional_call(tied, {"a.weight": w}, (nk.from_ndarray(np.ones((1, 2))),))
    np.testing.assert_allclose(out.data, [[4.0, 9.0]])          # both uses replaced
    with pytest.raises(KeyError, match="no parameter or buffer named \\['c'\\]"):
        nn.functional_call(tied, {"c": w}, (np.ones((1, 2)),))
    with pytest.raises(KeyError, match="strict"):
        nn.functional_call(_model(), {"0.weight": np.ones((8, 5))}, (np.ones((1, 5)),), strict=True)
    model = _model()
    before = model[0].weight
    with pytest.raises(Exception):
        nn.functional_call(model, {"0.weight": np.ones((2, 2))}, (nk.from_ndarray(np.ones((1, 5))),))
    assert model[0].weight is before                            # restored after the error
