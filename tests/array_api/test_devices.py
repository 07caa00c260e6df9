"""Arrays on a device other than their library's default (a second GPU, here array-api-strict's
"device1", which like CuPy refuses implicit copies to the host): everything generated code,
kernels, optimizers and the functional face make lands on that device, and training there
equals training on NumPy."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import backend, nn, optim
from neuronika.backend import NamespaceError
from neuronika.nn import functional as F

xs = pytest.importorskip("array_api_strict")
DEVICE = xs.Device("device1")


def _on(a):
    return xs.asarray(a, device=DEVICE)


def test_a_device_object_names_its_space():
    space = backend.resolve(DEVICE)
    assert space.device == DEVICE and space.name == "array_api_strict on device1"
    assert backend.resolve(xs) is not space
    x = nk.from_ndarray(np.arange(3.0)).to(DEVICE)
    assert x.device == DEVICE
    np.testing.assert_array_equal(backend.to_numpy(x.data), [0.0, 1.0, 2.0])


def _cnn():
    nk.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(12, 3))


@pytest.mark.parametrize("mode", ["never", "always"])
def test_training_on_another_device_equals_numpy(mode):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((5, 1, 4, 4))
    labels = np.array([0, 2, 1, 1, 0])

    def train(device):
        model = _cnn().to(np.float64)
        if device is not None:
            model.to(device)
        opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
        x = nk.from_ndarray(data if device is None else _on(data))
        t = nk.from_ndarray(labels if device is None else _on(labels))
        losses = []
        with nk.config(compile=mode):
            for _ in range(3):
                loss = F.cross_entropy(model(x), t)
                loss.backward()
                optim.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad()
                losses.append(float(backend.to_numpy(loss.data)))
        if device is not None:
            assert all(p.data.device == DEVICE for p in model.parameters())
        return losses, [backend.to_numpy(p.data) for p in model.parameters()]

    got, want = train(DEVICE), train(None)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-12)
    for g, w in zip(got[1], want[1]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_the_functional_face_on_another_device(mode):
    w = np.array([[0.5, -0.2], [0.1, 0.3]])
    seq = np.random.default_rng(1).standard_normal((12, 3, 2))

    def loss(w, seq):
        h = seq[0, ...] * 0.0
        for t in range(seq.shape[0]):
            # (an array-API array's operators refuse variables: matmul, not seq[t] @ w)
            h = nk.numpy.tanh(nk.numpy.matmul(seq[t, ...], w) + h)
        return (h * h).sum()

    with nk.config(compile=mode):
        got = nk.grad(loss)(_on(w), _on(seq))
        hess = nk.hessian(lambda w: loss(w, _on(seq)))(_on(w))
    assert got.device == DEVICE and hess.device == DEVICE
    np.testing.assert_allclose(backend.to_numpy(got), nk.grad(loss)(w, seq), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(hess), nk.hessian(lambda w: loss(w, seq))(w), rtol=1e-10)


def test_two_devices_in_one_op_name_both():
    a = nk.from_ndarray(_on(np.ones(3)))
    b = nk.from_ndarray(xs.asarray(np.ones(3)))
    with pytest.raises(NamespaceError, match="device1.*CPU_DEVICE|CPU_DEVICE.*device1"):
        a + b
