"""The functional face over arrays of another library (array-api-strict): grad, value_and_grad,
vjp, jacobian, hessian and hvp take and return that library's arrays, give NumPy's numbers,
and loops over variable lengths roll into one program as on NumPy (both faces)."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
import neuronika.numpy as nnp
from neuronika import backend, nn
from neuronika.backend import NamespaceError
from neuronika.transform import codegen, loops

xs = pytest.importorskip("array_api_strict")
ARRAY = xs._array_object.Array

RNG = np.random.default_rng(11)
W, B, X = RNG.standard_normal((3, 4)), RNG.standard_normal(4), RNG.standard_normal((5, 3))


def _loss(p, x):
    h = nnp.tanh(x @ p["W"] + p["b"])
    return (h * h).mean()


def _flat(result):
    if isinstance(result, dict):
        return [a for k in sorted(result) for a in _flat(result[k])]
    if isinstance(result, (list, tuple)):
        return [a for part in result for a in _flat(part)]
    return [result]


CALLS = {
    "grad of a tree": lambda p, x: nk.grad(_loss)(p, x),
    "value_and_grad, two argnums": lambda p, x: nk.value_and_grad(_loss, argnums=(0, 1))(p, x),
    "has_aux": lambda p, x: nk.grad(lambda p, x: (_loss(p, x), p["b"] * 2.0), has_aux=True)(p, x),
    "a gradient that does not reach": lambda p, x: nk.grad(lambda p, x: (x * 2.0).sum(), argnums=(0, 1))(p, x),
    "vjp": lambda p, x: nk.vjp(lambda w: nnp.tanh(nnp.matmul(x, w)), p["W"])[1](np.ones((5, 4))),
    "jacobian": lambda p, x: nk.jacobian(lambda b: nnp.tanh(b * 2.0))(p["b"]),
    "hessian": lambda p, x: nk.hessian(lambda b: (nnp.tanh(b) ** 3).sum())(p["b"]),
    "hvp": lambda p, x: nk.hvp(lambda b: (nnp.sin(b) * b).sum(), p["b"], p["b"] * 0.5),
}


@pytest.mark.parametrize("mode", ["never", "always"])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_functional_transformations_take_and_give_the_arrays_library(name, mode):
    call = CALLS[name]
    with nk.config(compile=mode):
        want = _flat(call({"W": W, "b": B}, X))
        for _ in range(2):                             # the trace, then the cached program
            got = _flat(call({"W": xs.asarray(W), "b": xs.asarray(B)}, xs.asarray(X)))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert isinstance(g, ARRAY), type(g)
        np.testing.assert_allclose(backend.to_numpy(g), w, rtol=1e-13, atol=1e-15)


def test_numpy_and_strict_arguments_of_one_signature_do_not_share_a_program():
    f = nk.grad(lambda x: (nnp.cos(x) * x).sum())
    a = RNG.standard_normal(6)
    assert isinstance(f(a), np.ndarray)
    assert isinstance(f(xs.asarray(a)), ARRAY)
    assert isinstance(f(a), np.ndarray)


def test_mixing_libraries_in_a_traced_function_names_both():
    with pytest.raises(NamespaceError, match="numpy and array_api_strict"):
        nk.grad(lambda a, b: (a * b).sum())(np.ones(3), xs.asarray(np.ones(3)))


def test_a_rebound_global_array_of_another_library_retraces():
    global _SCALE
    _SCALE = xs.asarray(np.full(3, 2.0))
    f = nk.grad(lambda x: (x * _SCALE).sum())
    x = xs.asarray(np.ones(3))
    assert backend.to_numpy(f(x)).tolist() == [2.0, 2.0, 2.0]
    _SCALE = xs.asarray(np.full(3, 5.0))
    assert backend.to_numpy(f(x)).tolist() == [5.0, 5.0, 5.0]


def _counting_builds(monkeypatch):
    real = codegen.build
    built = []

    def counting(order, leaves, **options):
        if not options.get("dry") and any(leaf.space is not None for leaf in leaves):
            built.append(len(order))            # programs over the other library's arrays
        return real(order, leaves, **options)

    monkeypatch.setattr(codegen, "build", counting)
    return built


def _rnn(w, seq):
    h = seq[0, ...] * 0.0
    for t in range(seq.shape[0]):
        h = nnp.tanh(seq[t, ...] @ w + h * 0.5)
    return (h * h).sum()


def test_a_traced_recurrence_rolls_over_lengths_on_another_library(monkeypatch):
    w = RNG.standard_normal((4, 4)) * 0.4
    grad = nk.grad(_rnn)
    nk.transform.cache_clear()
    built = _counting_builds(monkeypatch)
    with nk.config(compile="always"):
        for n in (9, 14, 30, 9, 47):
            seq = RNG.standard_normal((n, 2, 4))
            got = grad(xs.asarray(w), xs.asarray(seq))
            assert isinstance(got, ARRAY)
            with monkeypatch.context() as m:
                m.setattr(loops, "AUTO", False)
                want = nk.grad(_rnn)(w, seq)
            np.testing.assert_allclose(backend.to_numpy(got), want, rtol=1e-12, atol=1e-14)
    source = grad.source(xs.asarray(w), xs.asarray(RNG.standard_normal((12, 2, 4))))
    assert ".program(" in source                  # a loop, not straight-line code
    nk.transform.cache_clear()
    assert len(built) <= 2, built                 # the loop and its cell, for every length


@pytest.mark.parametrize("mode", ["always", "auto"])
def test_imperative_recurrences_over_lengths_on_another_library(monkeypatch, mode):
    def run(space):
        nk.manual_seed(1)
        rnn = nn.GRU(3, 5, batch_first=True)
        if space is not None:
            rnn = rnn.to(space)
        out = []
        with nk.config(compile=mode):
            for n in (6, 11, 23, 11, 37):
                data = np.random.default_rng(n).standard_normal((2, n, 3))
                x = nk.from_ndarray(data if space is None else xs.asarray(data))
                y, _ = rnn(x)
                loss = (y * y).sum()
                loss.backward()
                out.append([backend.to_numpy(p.grad) for p in rnn.parameters()])
                rnn.zero_grad()
                # a hand-written loop over per-step arrays (stacked into one argument)
                w0 = np.eye(3) * 0.5
                w = nk.from_ndarray(w0 if space is None else xs.asarray(w0)).requires_grad()
                h = x[:, 0] * 0.0
                for t in range(n):
                    step = data[:, t] if space is None else xs.asarray(data[:, t])
                    h = (nk.from_ndarray(step) @ w + h * 0.5).tanh()
                h.sum().backward()
                out.append([backend.to_numpy(w.grad)])
        return out

    want = run(None)
    nk.transform.cache_clear()
    built = _counting_builds(monkeypatch)
    got = run(xs)
    for a, b in zip(got, want):
        for g, w in zip(a, b):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)     # float32
    nk.transform.cache_clear()
    if mode == "always":
        assert len(built) <= 4, built        # 4 lengths, 2 loops: each a loop and its cell


@pytest.mark.parametrize("mode", ["never", "always"])
def test_scan_first_and_second_order_on_another_library(mode):
    def f(w, seq):
        final, ys = nk.scan(lambda h, x: (nnp.sin(h * w) + x, h), w * 0.0, seq)
        return (final * final).sum() + (ys * ys).sum()

    w, seq = np.array([0.5, 0.3]), RNG.standard_normal((6, 2))
    with nk.config(compile=mode):
        for transform in (nk.grad, nk.hessian):
            got = transform(f)(xs.asarray(w), xs.asarray(seq))
            assert isinstance(got, ARRAY)
            np.testing.assert_allclose(backend.to_numpy(got), transform(f)(w, seq), rtol=1e-12, atol=1e-14)
        final, ys = nk.scan(lambda h, x: (h * 0.5 + x, h), xs.asarray(np.zeros(2)), xs.asarray(seq))
    assert isinstance(final, ARRAY) and isinstance(ys, ARRAY)
