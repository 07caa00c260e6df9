"""cross_entropy with class indices along axis 1 runs as one op, softmax_cross_entropy: its
values and gradients equal the composed path's (nll_loss of log_softmax), and its first and
second derivatives match central finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import functional as F
from neuronika.testing import check_grads

SHAPES = [(5, 4), (1, 3), (3, 4, 2), (2, 3, 2, 2)]
MODES = ["never", "always"]
REDUCTIONS = ["mean", "sum", "none"]


def _case(shape, seed=0, ignored=True):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 2
    t = rng.integers(0, shape[1], shape[:1] + shape[2:])
    if ignored and t.size > 1:
        t.reshape(-1)[::3] = -100             # some ignored entries, never all
    w = rng.random(shape[1]) + 0.5
    return x, t, w


def _composed(x, t, weight=None, reduction="mean", ignore_index=-100):
    logp = (x if isinstance(x, nk.Var) else nk.from_ndarray(x)).log_softmax(1)
    return F.nll_loss(logp, t, weight, ignore_index=ignore_index, reduction=reduction)


def test_the_fused_op_replaces_log_softmax_and_the_scatter():
    x, t, _ = _case((6, 4))
    source = nk.value_and_grad(lambda v: F.cross_entropy(v, t)).source(x)
    assert "class_nll_grad" in source
    assert "add_at" not in source and "xp.zeros" not in source


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_fused_equals_composed(shape, weighted, reduction, mode):
    x, t, w = _case(shape)
    w = w if weighted else None
    with nk.config(compile=mode):
        for _ in range(2):                    # "never": interpreted twice; "always": compiled
            fused, g_fused = nk.value_and_grad(lambda v: F.cross_entropy(v, t, w, reduction=reduction).sum())(x)
            composed, g_composed = nk.value_and_grad(lambda v: _composed(v, t, w, reduction).sum())(x)
            np.testing.assert_allclose(fused, composed, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(g_fused, g_composed, rtol=1e-12, atol=1e-15)
    values = F.cross_entropy(x, t, w, reduction=reduction).data
    np.testing.assert_allclose(values, _composed(x, t, w, reduction).data, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_equals_composed_imperative_and_keeps_the_dtype(dtype):
    x, t, w = _case((8, 5), seed=1)
    x = x.astype(dtype)
    tolerance = 1e-5 if dtype == np.float32 else 1e-13
    for weight in (None, w.astype(dtype)):
        a = nk.from_ndarray(x.copy()).requires_grad()
        b = nk.from_ndarray(x.copy()).requires_grad()
        la, lb = F.cross_entropy(a, t, weight), _composed(b, t, weight)
        la.backward()
        lb.backward()
        assert la.dtype == dtype and a.grad.dtype == dtype
        np.testing.assert_allclose(la.data, lb.data, rtol=tolerance)
        np.testing.assert_allclose(a.grad, b.grad, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", [(4, 3), (1, 4), (2, 3, 3)])
def test_first_and_second_derivatives_match_finite_differences(shape, mode):
    x, t, w = _case(shape, seed=2)
    with nk.config(compile=mode):
        check_grads(lambda v: F.cross_entropy(v, t), x, rtol=1e-6, atol=1e-8)
        check_grads(lambda v: F.cross_entropy(v, t, w, reduction="sum"), x, rtol=1e-6, atol=1e-8)
        check_grads(lambda v: F.cross_entropy(v, t, w, reduction="none"), x, rtol=1e-6, atol=1e-8)


def test_weight_gradient_matches_finite_differences():
    x, t, w = _case((5, 4), seed=3)
    check_grads(lambda v, u: F.cross_entropy(v, t, u), x, w, rtol=1e-6, atol=1e-8)


def test_hessian_is_the_softmax_jacobian_and_zero_for_ignored_rows():
    x = np.random.default_rng(4).standard_normal((3, 4))
    t = np.array([1, -100, 0])
    h = nk.hessian(lambda v: F.cross_entropy(v, t, reduction="sum"))(x)
    p = np.exp(x - x.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    for n in (0, 2):
        np.testing.assert_allclose(h[n, :, n, :], np.diag(p[n]) - np.outer(p[n], p[n]), atol=1e-12)
    assert not h[1].any() and not h[:, :, 1].any()
    np.testing.assert_allclose(h, nk.hessian(lambda v: _composed(v, t, reduction="sum"))(x), atol=1e-12)


def test_ignored_rows_masked_logits_and_all_ignored():
    x = np.array([[-np.inf, 1.0, 2.0], [-np.inf, 0.5, 0.0], [3.0, -np.inf, 1.0]])
    t = np.array([2, -100, 0])
    loss, g = nk.value_and_grad(lambda v: F.cross_entropy(v, t, reduction="sum"))(x)
    assert np.isfinite(loss) and np.isfinite(g).all()
    assert not g[1].any()
    assert F.cross_entropy(x, t, reduction="none").data[1] == 0
    with np.errstate(invalid="ignore"):
        assert np.isnan(F.cross_entropy(x, np.full(3, -100)).data)       # 0 / 0, as PyTorch


def test_out_of_range_targets_raise_when_built_and_when_run():
    x, t, _ = _case((4, 3), ignored=False)
    with pytest.raises(IndexError, match=r"cross_entropy: target 3 is out of range for 3 classes"):
        F.cross_entropy(x, np.array([0, 1, 3, 2]))
    vg = nk.value_and_grad(lambda v, u: F.cross_entropy(v, u))
    with nk.config(compile="always"):
        vg(x, t)
        with pytest.raises(IndexError, match=r"cross_entropy: target -1 is out of range"):
            vg(x, np.array([0, -1, 1, 2]))


def test_other_ignore_index_and_narrow_integer_targets():
    x, _, w = _case((6, 4), seed=5)
    t = np.array([0, 3, 3, 1, 2, 3], dtype=np.uint8)
    for weight in (None, w):
        np.testing.assert_allclose(F.cross_entropy(x, t, weight, ignore_index=3).data,
                                   _composed(x, t, weight, ignore_index=3).data, rtol=1e-13)
        g = nk.grad(lambda v: F.cross_entropy(v, t, weight, ignore_index=3))(x)
        assert not g[[1, 2, 5]].any()
    x = np.random.default_rng(6).standard_normal((2, 200, 3))       # flat offsets beyond uint8
    t = np.array([[199, 7, 255], [0, 255, 198]], dtype=np.uint8)
    for reduction in REDUCTIONS:
        np.testing.assert_allclose(F.cross_entropy(x, t, ignore_index=255, reduction=reduction).data,
                                   _composed(x, t, reduction=reduction, ignore_index=255).data, rtol=1e-13)
        g = nk.grad(lambda v: F.cross_entropy(v, t, ignore_index=255, reduction=reduction).sum())(x)
        gc = nk.grad(lambda v: _composed(v, t, reduction=reduction, ignore_index=255).sum())(x)
        np.testing.assert_allclose(g, gc, rtol=1e-12, atol=1e-15)


def test_a_new_batch_size_reuses_nothing_it_should_not():
    vg = nk.value_and_grad(lambda v, u: F.cross_entropy(v, u))
    for n in (7, 3, 1, 7):
        x, t, _ = _case((n, 5), seed=n)
        value, g = vg(x, t)
        composed, gc = nk.value_and_grad(lambda v: _composed(v, t))(x)
        np.testing.assert_allclose(value, composed, rtol=1e-13)
        np.testing.assert_allclose(g, gc, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 2)])
def test_array_api_strict_gives_the_numpy_results(shape):
    xs = pytest.importorskip("array_api_strict")
    x, t, w = _case(shape, seed=6)
    for weight in (None, w):
        want, g_want = nk.value_and_grad(lambda v: F.cross_entropy(v, t, weight))(x)
        xw = None if weight is None else nk.from_ndarray(xs.asarray(weight))
        value, g = nk.value_and_grad(lambda v, u: F.cross_entropy(v, u, xw))(xs.asarray(x), xs.asarray(t))
        np.testing.assert_allclose(float(value), want, rtol=1e-13)
        np.testing.assert_allclose(np.asarray(g), g_want, rtol=1e-12, atol=1e-15)


def test_array_api_strict_second_derivatives_on_another_device():
    xs = pytest.importorskip("array_api_strict")
    from neuronika.backend import to_numpy
    device = xs.Device("device1")
    x, t, _ = _case((2, 3, 2), seed=7)
    u = nk.from_ndarray(xs.asarray(t, device=device))
    h = nk.hessian(lambda v: F.cross_entropy(v, u, reduction="sum"))(xs.asarray(x, device=device))
    assert h.device == device
    want = nk.hessian(lambda v: F.cross_entropy(v, t, reduction="sum"))(x)
    np.testing.assert_allclose(to_numpy(h), want, rtol=1e-12, atol=1e-15)


def test_non_contiguous_logits():
    base = np.random.default_rng(8).standard_normal((3, 2, 4))
    x = base.transpose(0, 2, 1)                 # (3, 4, 2), not C-contiguous
    t = np.array([[0, 3], [-100, 1], [2, 2]])
    for reduction in REDUCTIONS:
        value, g = nk.value_and_grad(lambda v: F.cross_entropy(v, t, reduction=reduction).sum())(x)
        want, gw = nk.value_and_grad(lambda v: _composed(v, t, reduction=reduction).sum())(np.ascontiguousarray(x))
        np.testing.assert_allclose(value, want, rtol=1e-13)
        np.testing.assert_allclose(g, gw, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_reduction_runs_inside_the_op(reduction):
    # one kernel call each way: no separate sum, count of kept targets or division by it
    x, t, _ = _case((6, 4))
    source = nk.value_and_grad(lambda v: F.cross_entropy(v, t, reduction=reduction)).source(x)
    assert "class_nll(" in source and f"'{reduction}')" in source
    assert "xp.sum" not in source and "astype" not in source and "/" not in source


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_batch_of_reduced_losses_is_one_op_with_every_target_ignored_somewhere(reduction):
    # vmap of a reduced loss: the loss of every target of every example in one op, reduced per
    # example; an example whose targets are all ignored has a mean of NaN (0 / 0), as alone
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((4, 5, 3)), rng.integers(0, 3, (4, 5))     # 4 examples of 5 rows
    t[1] = -100
    t[2, ::2] = -100
    fn = nk.jit(nk.vmap(lambda v, u: F.cross_entropy(v, u, reduction=reduction)))
    with np.errstate(invalid="ignore"):
        got = fn(x, t)
        want = np.array([F.cross_entropy(x[i], t[i], reduction=reduction).data for i in range(4)])
        assert fn.source(x, t).count("class_nll(") == 1
    np.testing.assert_allclose(got, want, rtol=1e-13, equal_nan=True)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint64])
def test_targets_of_every_integer_dtype_are_checked_in_the_compiled_program(dtype):
    x = np.random.default_rng(10).standard_normal((4, 3))
    vg = nk.value_and_grad(lambda v, u: F.cross_entropy(v, u))
    with nk.config(compile="always"):
        value, _ = vg(x, np.array([0, 1, 2, 1], dtype))
        np.testing.assert_allclose(value, _composed(x, np.array([0, 1, 2, 1])).data, rtol=1e-13)
        for bad in ([0, 3, 1, 1], [0, 1, 2, 127]) + (([0, -1, 1, 1],) if np.dtype(dtype).kind == "i" else ()):
            with pytest.raises(IndexError, match=rf"cross_entropy: target {bad[1] if bad[1] != 1 else bad[3]}"):
                vg(x, np.array(bad, dtype))


# ---- nll_loss without class weights: one op, class_nll ------------------------------------------

def _nll_composed(logp, t, reduction="mean", ignore_index=-100):
    # class weights of 1 take the composed path (a gather, whose gradient scatters): the same loss
    return F.nll_loss(logp, t, np.ones(logp.shape[1]), ignore_index=ignore_index, reduction=reduction)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", SHAPES)
def test_nll_loss_is_one_op_equal_to_the_composed_path(shape, reduction, mode):
    x, t, _ = _case(shape, seed=11)
    with nk.config(compile=mode):
        for _ in range(2):
            fused, g_fused = nk.value_and_grad(lambda v: F.nll_loss(v.log_softmax(1), t, reduction=reduction).sum())(x)
            composed, g_composed = nk.value_and_grad(
                lambda v: _nll_composed(v.log_softmax(1), t, reduction).sum())(x)
            np.testing.assert_allclose(fused, composed, rtol=1e-13, atol=1e-15)
            np.testing.assert_allclose(g_fused, g_composed, rtol=1e-12, atol=1e-15)
    source = nk.value_and_grad(lambda v: F.nll_loss(v, t, reduction=reduction).sum()).source(x)
    assert "class_nll_input_grad" in source and "add_at" not in source


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2)])
def test_nll_loss_first_and_second_derivatives(shape):
    x, t, _ = _case(shape, seed=12)
    for reduction in REDUCTIONS:
        check_grads(lambda v: F.nll_loss(v.log_softmax(1), t, reduction=reduction), x, order=2,
                    rtol=1e-6, atol=1e-8)
        check_grads(lambda v: F.nll_loss(v * v, t, reduction=reduction), x, order=2, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss_under_vmap_and_array_api_strict(reduction):
    rng = np.random.default_rng(13)
    x, t = rng.standard_normal((3, 5, 4)), rng.integers(0, 4, (3, 5))
    t[0, 1] = -100
    fn = lambda v, u: F.nll_loss(v, u, reduction=reduction)      # noqa: E731
    got = nk.vmap(fn)(x, t)
    want = np.stack([np.asarray(fn(x[i], t[i]).data) for i in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-13)
    g = nk.vmap(nk.grad(lambda v, u: fn(v, u).sum()))(x, t)
    g_want = np.stack([nk.grad(lambda v: fn(v, t[i]).sum())(x[i]) for i in range(3)])
    np.testing.assert_allclose(g, g_want, rtol=1e-13)
    xs = pytest.importorskip("array_api_strict")
    value, g = nk.value_and_grad(lambda v, u: fn(v, u).sum())(xs.asarray(x[0]), xs.asarray(t[0]))
    want, g_want = nk.value_and_grad(lambda v: fn(v, t[0]).sum())(x[0])
    np.testing.assert_allclose(float(value), want, rtol=1e-13)
    np.testing.assert_allclose(np.asarray(g), g_want, rtol=1e-13)


def test_the_class_kernels_reuse_the_checked_scan_only_for_those_targets():
    from neuronika.ops import kernels
    logits = np.zeros((3, 3))
    t = np.array([0, 1, 2])
    kernels.check_class_index(t, 3, -100, "cross_entropy")
    other = np.array([0, -100, 2])                  # not the targets checked: scanned
    keep, _, _ = kernels._class_positions(logits, other, -100)
    assert keep is not None and keep.tolist() == [True, False, True]
    assert kernels._class_positions(logits, t, -100)[0] is None
    t[1] = -100                                     # changed, and checked again by the next program
    kernels.check_class_index(t, 3, -100, "cross_entropy")
    keep, _, _ = kernels._class_positions(logits, t, -100)
    assert keep is not None and keep.tolist() == [True, False, True]
