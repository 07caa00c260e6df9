"""Programs built from symbolic gradients (jit steps, second order) carry no work the
first-order backward does not: no-op shape ops are names, not calls (and an alias is never
written into), leading broadcast axes are summed without keepdims and reshape, a seed of
ones is no factor, and softmax_cross_entropy's adjoint is one op, softmax_cross_entropy_grad,
whose own first and second derivatives match finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import optim
from neuronika.graph import apply
from neuronika.nn import functional as F
from neuronika.ops import OPS
from neuronika.testing import check_grads
from neuronika.variable import _wrap

MODES = ["never", "always"]


def op(name, *inputs, attrs=()):
    return _wrap(apply(OPS[name], tuple(v._node for v in inputs), attrs))


def _targets(shape, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, shape[1], shape[:1] + shape[2:])
    if t.size > 1:
        t.reshape(-1)[::3] = -100
    return rng.standard_normal(shape) * 2, t


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape,g_shape", [((5, 4), (5,)), ((5, 4), ()), ((3, 4, 2), (3, 2)),
                                           ((3, 4, 2), (1, 2)), ((1, 3), (1,))])
def test_softmax_cross_entropy_grad_matches_finite_differences(shape, g_shape, mode):
    x, t = _targets(shape)
    g = np.random.default_rng(1).standard_normal(g_shape)
    with nk.config(compile=mode):
        check_grads(lambda a, b, c: op("softmax_cross_entropy_grad", a, b, c, attrs=(-100,)),
                    x, g, t, wrt=(0, 1), rtol=1e-6, atol=1e-8)


def test_softmax_cross_entropy_grad_is_the_closed_form():
    x, t = _targets((6, 5), seed=3)
    g = np.random.default_rng(2).standard_normal(6)
    got = op("softmax_cross_entropy_grad", nk.from_ndarray(x), nk.from_ndarray(g), nk.from_ndarray(t),
             attrs=(-100,)).data
    s = np.exp(x - x.max(1, keepdims=True))
    s /= s.sum(1, keepdims=True)
    hot = (t[:, None] == np.arange(5)).astype(float)
    want = (s - hot) * (g * (t != -100))[:, None]
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_the_third_derivative_of_cross_entropy_matches_finite_differences():
    x, t = _targets((4, 3), seed=4)
    check_grads(lambda v: nk.grad(lambda u: F.cross_entropy(u, t))(v), x, rtol=1e-6, atol=1e-8)


def _step_source():
    rng = np.random.default_rng(0)
    x = rng.random((8, 6)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    params = [rng.standard_normal((6, 5)).astype(np.float32), np.zeros(5, np.float32),
              rng.standard_normal((5, 3)).astype(np.float32), np.zeros(3, np.float32)]

    def loss(params, x, y):
        w1, b1, w2, b2 = params
        return F.cross_entropy((x.mm(w1) + b1).relu().mm(w2) + b2, y)

    opt = optim.sgd(0.1)

    @nk.jit
    def step(params, state, x, y):
        value, g = nk.value_and_grad(loss)(params, x, y)
        u, state = opt.update(g, state, params)
        return optim.apply_updates(params, u), state, value

    state = opt.init(params)
    return step.source(params, state, x, y)


def test_a_jit_step_has_no_no_op_reshape_no_keepdims_and_one_cross_entropy_kernel():
    source = _step_source()
    assert "xp.reshape" not in source
    assert "keepdims" not in source
    assert "class_nll_grad" in source and "xp.exp" not in source


@pytest.mark.parametrize("mode", MODES)
def test_no_op_shape_ops_are_names_and_their_gradients_are_never_written_into(mode):
    a = np.arange(6.0).reshape(2, 3) + 1
    kept = a.copy()

    def f(x):
        same = nk.numpy.reshape(x, (2, 3)) * 1.0
        moved = nk.numpy.permute_dims(nk.numpy.broadcast_to(x, (2, 3)), (0, 1)).astype(np.float64)
        return (same * x).sum() + moved.sum() + (x.reshape(2, 3) ** 3).sum()

    with nk.config(compile=mode):
        for _ in range(2):
            value, g = nk.value_and_grad(f)(a)
            np.testing.assert_allclose(g, 2 * a + 1 + 3 * a ** 2, rtol=1e-14)
            np.testing.assert_array_equal(a, kept)
    source = nk.value_and_grad(f).source(a)
    assert "xp.reshape" not in source and "broadcast_to" not in source
    assert "permute_dims" not in source and "astype" not in source


def test_an_alias_gradient_is_not_added_into_in_place():
    # the reshape's adjoint is dy itself: the second contribution to x must make a new array
    a = np.array([1.0, 2.0, 3.0])

    def f(x):
        return (x.reshape(3) * 2.0).sum() + (x * x).sum()

    check_grads(f, a)
    for _ in range(3):
        np.testing.assert_allclose(nk.grad(f)(a), 2 + 2 * a)
