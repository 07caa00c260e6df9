"""Constants stay computed: a value that needs no gradient, computed before a loop from
leaves that do not change, is evaluated once and read by every later graph as a leaf;
any change to those leaves (through any path, a raw array write included) computes it
again, and random ops never become constants."""
import numpy as np
import pytest

import neuronika as nk
from neuronika import graph
from neuronika.transform import run


@pytest.fixture(autouse=True)
def every_constant(monkeypatch):
    """Small values become constants too (by default only those worth keeping do)."""
    monkeypatch.setattr(run, "CONSTANT_MIN_WORK", 0)


def _loss(w, y):
    w.zero_grad()
    loss = (w * y).sum()
    loss.backward()
    return loss


def _steps(w, y, n=3):
    for _ in range(n):
        loss = _loss(w, y)
    return loss


def test_a_constant_is_computed_once_and_read_as_a_leaf():
    a = np.linspace(-2, 2, 7).astype(np.float32)
    x = nk.from_ndarray(a)
    y = x.sin().exp()
    w = nk.ones(7).requires_grad()
    loss = _steps(w, y)
    assert isinstance(y._node.const, graph.Constant)
    assert "sin" not in loss.source() and "exp" not in loss.source()
    np.testing.assert_array_equal(w.grad, np.exp(np.sin(a)))
    # computed once: the constant's value object stays the same while x does
    value = y._node.const.proxy.value
    _steps(w, y)
    assert y._node.const.proxy.value is value


@pytest.mark.parametrize("change", ["user array", "data[...]", "data =", "in place", "optimizer-like"])
def test_every_change_to_a_leaf_computes_the_constant_again(change):
    a = np.linspace(-2, 2, 7).astype(np.float32)
    x = nk.from_ndarray(a)
    y = x.sin().exp()
    w = nk.ones(7).requires_grad()
    _steps(w, y)
    new = np.arange(7, dtype=np.float32)
    if change == "user array":
        a[:] = new
    elif change == "data[...]":
        x.data[...] = new
    elif change == "data =":
        x.data = new
    elif change == "in place":
        x += new - a
    else:
        data = x.data
        data -= a - new
    for _ in range(3):
        _loss(w, y)
        np.testing.assert_array_equal(w.grad, np.exp(np.sin(new)))
    np.testing.assert_array_equal(y.data, np.exp(np.sin(new)))


def test_a_change_of_one_element_and_of_the_sign_of_zero_is_seen():
    a = np.zeros(1000, np.float32)
    x = nk.from_ndarray(a)
    y = x.sin()
    w = nk.ones(1000).requires_grad()
    _steps(w, y)
    a[999] = -0.0                        # the same number, other bits: sin(-0.0) = -0.0
    loss = _loss(w, y)
    assert np.signbit(run.constant_value(y._node.const.proxy)[999])
    a[500] = np.nan
    loss = _loss(w, y)
    assert np.isnan(w.grad[500]) and np.isnan(loss.data)
    _loss(w, y)                          # NaN is itself: the constant stays valid
    assert y._node.const.__class__ is graph.Constant


def test_constants_of_constants_and_shared_leaves():
    a = np.linspace(0, 1, 5)
    x = nk.from_ndarray(a)
    y = x.exp()
    z = (y * 2 + x).tanh()
    w = nk.ones(5, dtype=np.float64).requires_grad()
    for k in range(4):
        for target in (y, z, y + z):
            w.zero_grad()
            (w * target).sum().backward()
        np.testing.assert_array_equal(w.grad, np.exp(a) + np.tanh(np.exp(a) * 2 + a))
        a += 0.5 if k == 1 else 0.0


def test_values_that_change_every_step_stop_being_constants():
    buffer = np.zeros(4, np.float32)
    x = nk.from_ndarray(buffer)
    y = x.cos()
    w = nk.ones(4).requires_grad()
    for k in range(8):
        buffer[:] = k
        _loss(w, y)
        np.testing.assert_array_equal(w.grad, np.cos(np.full(4, k, np.float32)))
    assert y._node.const is graph.VOLATILE


def test_a_differentiable_leaf_read_under_no_grad_is_never_a_constant():
    w = nk.full(3, 2.0).requires_grad()
    with nk.no_grad():
        scale = w * 3
    opt = nk.optim.SGD([w], lr=0.1)
    for _ in range(4):
        opt.zero_grad()
        loss = (w * scale).sum()
        loss.backward()
        np.testing.assert_allclose(w.grad, 3 * w.data)
        opt.step()
    assert scale._node.const is graph.VOLATILE


def test_dropout_is_never_a_constant_in_training_or_eval():
    nk.manual_seed(0)
    x = nk.ones(1000)
    noisy = x.dropout(0.5) * 2
    w = nk.ones(1000).requires_grad()
    grads = []
    for _ in range(4):
        _loss(w, noisy)
        grads.append(w.grad.copy())
    assert noisy._node.const is graph.VOLATILE
    assert not np.array_equal(grads[-1], grads[-2])
    assert "dropout" in (w * noisy).sum().source()
    noisy.eval()
    for _ in range(3):
        _loss(w, noisy)
        np.testing.assert_array_equal(w.grad, np.full(1000, 2.0, np.float32))
    noisy.train()
    _loss(w, noisy)
    assert set(np.unique(w.grad)) == {0.0, 4.0}


def test_a_constant_view_of_a_leaf_leaves_the_leaf_writeable():
    a = np.arange(6.0)
    x = nk.from_ndarray(a)
    y = x.reshape((2, 3))
    w = nk.ones((2, 3), dtype=np.float64).requires_grad()
    _steps(w, y)
    assert a.flags.writeable and x.data.flags.writeable
    a[0] = 10.0
    _loss(w, y)
    assert w.grad[0, 0] == 10.0
    value = run.constant_value(y._node.const.proxy)
    with pytest.raises(ValueError):
        value[0, 0] = 1.0                # a constant's value is read-only


def test_scalar_and_boolean_constants():
    a = np.array([1.0, -2.0, 3.0], np.float32)
    x = nk.from_ndarray(a)
    total = x.sum()
    mask = x > 0
    w = nk.ones(3).requires_grad()
    for k in range(3):
        w.zero_grad()
        (w * total * mask).sum().backward()
        np.testing.assert_array_equal(w.grad, a.sum() * (a > 0))
        a[1] = 5.0 if k == 1 else a[1]


def test_reading_a_constant_after_its_leaf_changed_is_fresh():
    a = np.ones(3)
    x = nk.from_ndarray(a)
    y = x * 5
    w = nk.ones(3, dtype=np.float64).requires_grad()
    _steps(w, y)
    a[:] = 2
    np.testing.assert_array_equal(y.data, [10.0, 10.0, 10.0])
    np.testing.assert_array_equal((y + 1).data, [11.0, 11.0, 11.0])


def test_evaluating_the_same_graph_again_does_not_cut_it():
    a = np.ones(3)
    x = nk.from_ndarray(a)
    y = (x * 2).exp().sum()
    for k in range(3):
        a[:] = k
        np.testing.assert_allclose(y.data if k == 0 else (y.forward(), y.data)[1], 3 * np.exp(2.0 * k))
    assert "exp" in y.source()


def test_the_functional_face_reads_outside_values_as_constants():
    a = np.linspace(-1, 1, 6).astype(np.float32)
    x = nk.from_ndarray(a)
    y = x.sin().exp()

    def f(w):
        return (w * y).sum()

    g = nk.grad(f)
    w = np.ones(6, np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(g(w), np.exp(np.sin(a)))
    assert "sin" not in g.source(w)
    a[2] = 7.0
    np.testing.assert_array_equal(g(w), np.exp(np.sin(a)))
    x.data[...] = 0.0
    np.testing.assert_array_equal(g(w), np.ones(6, np.float32))
    vg = nk.value_and_grad(f)
    value, grad = vg(w)
    assert value == pytest.approx(6.0)


def test_the_functional_face_never_freezes_its_own_arguments():
    a = np.linspace(0, 1, 4)
    x = nk.from_ndarray(a)

    def f(w, batch):
        return (w * batch.exp() * x.cos()).sum()

    g = nk.grad(f)
    w = np.ones(4)
    for k in range(4):
        batch = np.full(4, float(k))
        np.testing.assert_allclose(g(w, batch), np.exp(batch) * np.cos(a))


def test_a_constant_inside_nested_gradients():
    a = np.array([0.3, 0.7])
    c = nk.from_ndarray(a).sin()

    def inner(v):
        return (v * v * c).sum()

    def outer(v):
        return nk.grad(inner)(v).sum()

    v = np.array([1.0, 2.0])
    for _ in range(3):
        np.testing.assert_allclose(nk.grad(outer)(v), 2 * np.sin(a))
    a[0] = 1.0
    np.testing.assert_allclose(nk.grad(outer)(v), 2 * np.sin(a))


def test_constants_across_compile_modes():
    for mode in ("never", "auto", "always"):
        with nk.config(compile=mode):
            a = np.linspace(0, 1, 4).astype(np.float32)
            x = nk.from_ndarray(a)
            y = x.exp()
            w = nk.ones(4).requires_grad()
            for k in range(4):
                _loss(w, y)
                np.testing.assert_array_equal(w.grad, np.exp(a))
                a[k] = 3.0


def test_by_default_only_values_worth_keeping_become_constants(monkeypatch):
    monkeypatch.setattr(run, "CONSTANT_MIN_WORK", 16384)
    small, big = nk.ones(8).sin(), nk.ones(20000).sin()
    ws, wb = nk.ones(8).requires_grad(), nk.ones(20000).requires_grad()
    _steps(ws, small)
    _steps(wb, big)
    assert small._node.const is graph.VOLATILE and "sin" in (ws * small).sum().source()
    assert isinstance(big._node.const, graph.Constant) and "sin" not in (wb * big).sum().source()


def test_read_only_data_is_trusted_without_a_copy_and_changes_when_made_writeable():
    a = np.arange(6.0) / 5               # owns its memory (np.linspace's result is a view)
    a.flags.writeable = False
    x = nk.from_ndarray(a)
    y = x.exp()
    w = nk.ones(6, dtype=np.float64).requires_grad()
    _steps(w, y)
    witness = x._node.const
    assert witness.copy is None and witness.frozen is a
    a.flags.writeable = True             # writeable again: compared from now on
    a[0] = 5.0
    _loss(w, y)
    np.testing.assert_array_equal(w.grad, np.exp(a))
    assert x._node.const.copy is not None
    view = np.arange(4.0)
    ro = view[:]
    ro.flags.writeable = False           # a read-only view of writeable memory: not trusted
    xv = nk.from_ndarray(ro)
    yv = xv * 3
    wv = nk.ones(4, dtype=np.float64).requires_grad()
    _steps(wv, yv)
    view[1] = 7.0
    _loss(wv, yv)
    np.testing.assert_array_equal(wv.grad, 3 * view)
