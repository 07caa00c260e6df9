"""Adjacent views merged in generated code (``transform/views.py``): which chains collapse, the
values and gradients against the same programs with the pass off, to second order, and what
must stay (a view read twice, by another op or by two views; a retained gradient)."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.testing import check_grads
from neuronika.transform import views

RNG = np.random.default_rng(11)


pytestmark = pytest.mark.usefixtures("cleared_caches")      # (conftest.py)


def _unmerged(fn, *args, monkeypatch):
    nk.transform.cache_clear()
    monkeypatch.setattr(views, "merged_views", lambda lines, keep: lines)
    try:
        with nk.config(compile="always"):
            return fn(*args)
    finally:
        monkeypatch.undo()
        nk.transform.cache_clear()


CHAINS = {
    "transpose twice": (lambda x: x.T.T * 2.0, (3, 4)),
    "three reshapes": (lambda x: x.reshape(12).reshape(2, 6).reshape(4, 3).sin(), (3, 4)),
    "permutes that compose": (lambda x: x.transpose(1, 0, 2).transpose(2, 1, 0).tanh(), (2, 3, 4)),
    "permutes that undo each other": (lambda x: x.transpose(2, 0, 1).transpose(1, 2, 0) * 3.0, (2, 3, 4)),
    "a transpose then a reshape (no merge)": (lambda x: x.T.reshape(12).cos(), (3, 4)),
    "a view read twice (no merge)": (lambda x: (lambda t: t.T * t.T.sum())(x.T), (3, 4)),
    "a view two views read (no merge)": (lambda x: (lambda t: t.reshape(12) * t.reshape(12).cos())(x.reshape(4, 3)),
                                         (3, 4)),
}


@pytest.mark.parametrize("name", list(CHAINS))
def test_chains_of_views_give_the_values_and_gradients_of_the_unmerged_program(name, monkeypatch):
    chain, shape = CHAINS[name]
    x = RNG.standard_normal(shape)
    weights = RNG.standard_normal(np.shape(chain(nk.from_ndarray(x)).data))
    f = nk.value_and_grad(lambda x: (chain(x) * weights).sum())
    want = _unmerged(f, x, monkeypatch=monkeypatch)
    with nk.config(compile="always"):
        got = f(x)
        source = f.source(x)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-14)
    np.testing.assert_array_equal(got[1], want[1])
    forward, backward = source.split("def backward") if "def backward" in source else (source, "")
    if name == "transpose twice":
        assert ".T" not in source
    if name == "three reshapes":
        assert source.count("xp.reshape(") == 2                     # one forward, one backward
    if name == "permutes that compose":
        assert source.count("xp.permute_dims(") == 2
    if name == "permutes that undo each other":
        assert "permute_dims" not in source
    check_grads(lambda x: (chain(x) * weights).sum(), x, order=2)


def test_imperative_graphs_and_a_retained_intermediate():
    x = nk.from_ndarray(RNG.standard_normal((3, 4))).requires_grad()
    t = x.reshape(12)
    t.retain_grad()
    y = (t.reshape(4, 3).reshape(2, 6) ** 2).sum()
    for _ in range(3):                          # interpreted, then compiled
        x.zero_grad()
        t.zero_grad()
        y.backward()
        np.testing.assert_allclose(x.grad, 2 * x.data, rtol=1e-14)
        np.testing.assert_allclose(t.grad, 2 * x.data.reshape(12), rtol=1e-14)
    assert y.source().count("xp.reshape(") >= 2


def test_another_array_library():
    xs = pytest.importorskip("array_api_strict")
    x = RNG.standard_normal((2, 3, 4))
    f = nk.value_and_grad(lambda x: (x.transpose(1, 0, 2).transpose(2, 1, 0).reshape(24).reshape(6, 4) ** 2).sum())
    with nk.config(compile="always"):
        value, grad = f(xs.asarray(x))
    assert type(grad).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(grad), 2 * x, rtol=1e-14)
    np.testing.assert_allclose(float(value), (x ** 2).sum(), rtol=1e-14)
