"""The fused ops: ``normalize`` (layer_norm, nn.LayerNorm), ``batch_norm`` (BatchNorm1d/2d in
training, affine), ``gelu`` (both forms, and ``erf``) and ``bce_with_logits``
(nn.functional.bce_with_logits_loss). Each against the unfused
composition of catalogue ops (same values to float tolerance, same gradients), against central
finite differences in float64 to second order, on closed forms, and under array-api-strict."""
from __future__ import annotations

import math

import numpy as np
import pytest

import neuronika as nk
from neuronika.graph import apply
from neuronika.nn import GELU, BatchNorm1d, BatchNorm2d, LayerNorm
from neuronika.nn import functional as F
from neuronika.numpy._special import erf, gelu
from neuronika.ops import OPS
from neuronika.testing import check_grads
from neuronika.variable import _wrap

MODES = ["never", "always"]
SQRT_HALF = math.sqrt(0.5)


def rng(seed=0):
    return np.random.default_rng(seed)


def var(a):
    return a if isinstance(a, nk.Var) else nk.from_ndarray(np.asarray(a))


def value_and_grads(fn, *arrays):
    return nk.value_and_grad(fn, argnums=tuple(range(len(arrays))))(*arrays)


def assert_same(fused, composed, rtol=1e-12, atol=1e-13):
    (value, grads), (value_c, grads_c) = fused, composed
    np.testing.assert_allclose(value, value_c, rtol=rtol, atol=atol)
    for g, gc in zip(grads, grads_c):
        np.testing.assert_allclose(g, gc, rtol=rtol, atol=atol)


# ---- normalize: layer_norm and LayerNorm ---------------------------------------------------------

def composed_layer_norm(x, shape, w=None, b=None, eps=1e-5):
    x = var(x)
    axes = tuple(range(x.ndim - len(shape), x.ndim))
    centred = x - x.mean(axis=axes, keepdims=True)
    y = centred / ((centred * centred).mean(axis=axes, keepdims=True) + eps).sqrt()
    y = y if w is None else y * w
    return y if b is None else y + b


LN_CASES = [((5, 4), (4,)), ((3, 4, 2), (2,)), ((3, 4, 2), (4, 2)), ((2, 3, 2, 3), (3, 2, 3)),
            ((1, 1), (1,)), ((6,), (6,)), ((2, 1, 3), (1, 3))]


def _ln_case(x_shape, shape, seed=0):
    r = rng(seed)
    return r.standard_normal(x_shape) * 3 + 1, r.standard_normal(shape), r.standard_normal(shape)


def test_layer_norm_is_one_op_in_the_generated_code():
    x, w, b = _ln_case((4, 5), (5,))
    source = nk.value_and_grad(lambda v: (F.layer_norm(v, 5, w, b) ** 2).sum()).source(x)
    assert "normalize(" in source and "normalize_grad(" in source
    assert "xp.mean" not in source and "xp.sqrt" not in source


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("case", LN_CASES, ids=str)
def test_layer_norm_equals_the_composition(case, affine, mode):
    x_shape, shape = case
    x, w, b = _ln_case(x_shape, shape)
    cot = rng(1).standard_normal(x_shape)
    with nk.config(compile=mode):
        for _ in range(2):
            if affine:
                fused = value_and_grads(lambda v, p, q: (F.layer_norm(v, shape, p, q) * cot).sum(), x, w, b)
                composed = value_and_grads(lambda v, p, q: (composed_layer_norm(v, shape, p, q) * cot).sum(), x, w, b)
            else:
                fused = value_and_grads(lambda v: (F.layer_norm(v, shape) * cot).sum(), x)
                composed = value_and_grads(lambda v: (composed_layer_norm(v, shape) * cot).sum(), x)
            assert_same(fused, composed, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", [((4, 3), (3,)), ((2, 3, 2), (3, 2)), ((3, 1, 2), (2,)), ((2, 1), (1,))], ids=str)
def test_layer_norm_first_and_second_derivatives(case, mode):
    x_shape, shape = case
    x, w, b = _ln_case(x_shape, shape, seed=2)
    with nk.config(compile=mode):
        check_grads(lambda v: F.layer_norm(v, shape, eps=1e-3), x, rtol=1e-5, atol=1e-7)
        check_grads(lambda v, p, q: F.layer_norm(v, shape, p, q, eps=1e-3), x, w, b, rtol=1e-5, atol=1e-7)


def test_normalize_over_leading_and_inner_axes_the_batch_norm_axes():
    x = rng(3).standard_normal((4, 3, 2, 2)) * 2
    for axes in [(0,), (0, 2, 3), (1, 3)]:
        def fused(v):
            return _wrap(apply(OPS["normalize"], (v._node,), (axes, 1e-3)))

        def composed(v):
            c = v - v.mean(axis=axes, keepdims=True)
            return c / ((c * c).mean(axis=axes, keepdims=True) + 1e-3).sqrt()
        cot = rng(4).standard_normal(x.shape)
        assert_same(value_and_grads(lambda v: (fused(v) * cot).sum(), x),
                    value_and_grads(lambda v: (composed(v) * cot).sum(), x), rtol=1e-11, atol=1e-12)
        check_grads(fused, x, rtol=1e-5, atol=1e-7)


def test_layer_norm_closed_forms():
    y = F.layer_norm(np.array([[1.0, 2.0, 3.0], [4.0, 4.0, 4.0]]), 3, eps=1e-300).data
    np.testing.assert_allclose(y[0], [-math.sqrt(1.5), 0, math.sqrt(1.5)], rtol=1e-14)
    assert not y[1].any()                       # a constant row: 0, not nan
    # without eps, the gradient of sum(c * y) is orthogonal to the constants and to y itself
    x = rng(5).standard_normal((3, 6))
    cot = rng(6).standard_normal((3, 6))
    g = nk.grad(lambda v: (F.layer_norm(v, 6, eps=1e-300) * cot).sum())(x)
    y = F.layer_norm(x, 6, eps=1e-300).data
    np.testing.assert_allclose(g.sum(1), 0, atol=1e-12)
    np.testing.assert_allclose((g * y).sum(1), 0, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_layer_norm_module_imperative_equals_the_composition_and_keeps_the_dtype(dtype):
    x = (rng(7).standard_normal((4, 3, 5)) * 2).astype(dtype)
    layer = LayerNorm((3, 5), dtype=dtype)
    layer.weight.data[...] = rng(8).standard_normal((3, 5))
    layer.bias.data[...] = rng(9).standard_normal((3, 5))
    tolerance = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    a = nk.from_ndarray(x.copy()).requires_grad()
    out = (layer(a) ** 2).sum()
    out.backward()
    gw, gb = layer.weight.grad.copy(), layer.bias.grad.copy()
    assert out.dtype == dtype and a.grad.dtype == dtype and gw.dtype == dtype
    b = nk.from_ndarray(x.copy()).requires_grad()
    w = nk.from_ndarray(layer.weight.data.copy()).requires_grad()
    c = nk.from_ndarray(layer.bias.data.copy()).requires_grad()
    ref = (composed_layer_norm(b, (3, 5), w, c) ** 2).sum()
    ref.backward()
    np.testing.assert_allclose(out.data, ref.data, **tolerance)
    for got, want in ((a.grad, b.grad), (gw, w.grad), (gb, c.grad)):
        np.testing.assert_allclose(got, want, **tolerance)
    plain = LayerNorm(5, elementwise_affine=False, dtype=dtype)
    np.testing.assert_allclose(plain(x).data, composed_layer_norm(x, (5,)).data, **tolerance)


def test_layer_norm_errors_name_the_function_and_the_shapes():
    x = np.ones((2, 3))
    with pytest.raises(nk.ShapeError, match=r"layer_norm: an input of shape \(\*, 4\) .* got \(2, 3\) "
                                            r"\(at .*test_fused_ops.py"):
        F.layer_norm(x, 4)
    with pytest.raises(nk.ShapeError, match=r"layer_norm: weight must have the shape \(3,\), got \(2,\)"):
        F.layer_norm(x, 3, np.ones(2))
    with pytest.raises(ValueError, match="layer_norm: eps must be positive"):
        F.layer_norm(x, 3, eps=0.0)
    with pytest.raises(TypeError, match="normalize"):
        _wrap(apply(OPS["normalize"], (nk.from_ndarray(np.ones(3, complex))._node,), ((0,), 1e-5)))


# ---- batch_norm: BatchNorm in training -------------------------------------------------------------

def composed_batch_norm(x, w, b, axes, eps=1e-5):
    """BatchNorm's composition before the fused op (w, b of the kept shape)."""
    x = var(x)
    centred = x - x.mean(axis=axes, keepdims=True)
    scale = ((centred * centred).mean(axis=axes, keepdims=True) + eps).sqrt()
    return centred * (var(w) / scale) + var(b)


def fused_batch_norm(x, w, b, axes, eps=1e-5):
    return _wrap(apply(OPS["batch_norm"], (var(x)._node, var(w)._node, var(b)._node), (axes, eps)))


BN_CASES = [((5, 3), (0,)), ((4, 3, 2), (0, 2)), ((3, 2, 2, 3), (0, 2, 3)), ((2, 1, 3), (0, 2)),
            ((3, 4), (1,)), ((2, 3, 4), (1, 2))]


def _bn_case(shape, axes, seed=0):
    r = rng(seed)
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))
    return r.standard_normal(shape) * 2 + 1, r.standard_normal(kept), r.standard_normal(kept)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", BN_CASES, ids=str)
def test_batch_norm_equals_the_composition(case, mode):
    shape, axes = case
    x, w, b = _bn_case(shape, axes)
    cot = rng(1).standard_normal(shape)
    with nk.config(compile=mode):
        for _ in range(2):
            assert_same(value_and_grads(lambda v, p, q: (fused_batch_norm(v, p, q, axes) * cot).sum(), x, w, b),
                        value_and_grads(lambda v, p, q: (composed_batch_norm(v, p, q, axes) * cot).sum(), x, w, b),
                        rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", BN_CASES[:4], ids=str)
def test_batch_norm_first_and_second_derivatives(case):
    shape, axes = case
    x, w, b = _bn_case(shape, axes, seed=2)
    check_grads(lambda v, p, q: fused_batch_norm(v, p, q, axes, eps=1e-3), x, w, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer, shape", [(BatchNorm1d, (6, 3)), (BatchNorm1d, (4, 3, 5)), (BatchNorm2d, (3, 3, 2, 4))])
def test_batch_norm_layers_in_training_use_the_fused_op(layer, shape, dtype):
    x = (rng(3).standard_normal(shape) * 3 + 2).astype(dtype)
    bn = layer(3, dtype=dtype)
    bn.weight.data[...] = rng(4).standard_normal(3)
    bn.bias.data[...] = rng(5).standard_normal(3)
    axes = (0,) + tuple(range(2, len(shape)))
    kept = (1, 3) + (1,) * (len(shape) - 2)
    cot = rng(6).standard_normal(shape).astype(dtype)
    v = nk.from_ndarray(x.copy()).requires_grad()
    out = (bn(v) * cot).sum()
    out.backward()
    assert out.dtype == dtype and v.grad.dtype == dtype and bn.weight.grad.dtype == dtype
    u = nk.from_ndarray(x.copy()).requires_grad()
    w = nk.from_ndarray(bn.weight.data.copy()).requires_grad()
    b = nk.from_ndarray(bn.bias.data.copy()).requires_grad()
    ref = (composed_batch_norm(u, w.reshape(kept), b.reshape(kept), axes) * cot).sum()
    ref.backward()
    tolerance = dict(rtol=2e-4, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(out.data, ref.data, **tolerance)
    for got, want in ((v.grad, u.grad), (bn.weight.grad, w.grad), (bn.bias.grad, b.grad)):
        np.testing.assert_allclose(got, want, **tolerance)
    y = bn(nk.from_ndarray(x).requires_grad()).sum()
    assert "batch_norm_grad(" in y.source()


def test_batch_norm_promotes_like_the_composition():
    x = rng(7).standard_normal((5, 3)).astype(np.float32)
    w, b = rng(8).standard_normal((1, 3)), rng(9).standard_normal((1, 3))
    y = fused_batch_norm(x, w, b, (0,))
    assert y.dtype == np.float64 == y.data.dtype == composed_batch_norm(x, w, b, (0,)).dtype
    np.testing.assert_allclose(y.data, composed_batch_norm(x, w, b, (0,)).data, rtol=1e-5, atol=1e-6)
    assert fused_batch_norm(x, w.astype(np.float32), b.astype(np.float32), (0,)).data.dtype == np.float32


def test_batch_norm_shape_errors_name_the_shapes():
    with pytest.raises(nk.ShapeError, match=r"batch_norm: an input of shape \(4, 3\) normalised over axes "
                                            r"\(0,\) needs weight and bias of shape \(1, 3\), got \(3,\)"):
        fused_batch_norm(np.ones((4, 3)), np.ones(3), np.ones(3), (0,))


# ---- gelu and erf --------------------------------------------------------------------------------

def composed_gelu(x, approximate):
    x = var(x)
    if approximate == "none":
        return x * (0.5 * (1 + erf(x * SQRT_HALF)))
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)).tanh())


SHAPES = [(), (1,), (7,), (3, 4), (2, 1, 3)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gelu_equals_the_composition(shape, approximate, mode):
    x = rng(10).standard_normal(shape) * 3
    cot = rng(11).standard_normal(shape)
    with nk.config(compile=mode):
        for _ in range(2):
            assert_same(value_and_grads(lambda v: (F.gelu(v, approximate) * cot).sum(), x),
                        value_and_grads(lambda v: (composed_gelu(v, approximate) * cot).sum(), x))


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", [(5,), (2, 3), (2, 1, 2)], ids=str)
def test_gelu_first_and_second_derivatives(shape, approximate):
    x = rng(12).standard_normal(shape) * 2
    check_grads(lambda v: F.gelu(v, approximate), x, rtol=1e-6, atol=1e-8)
    check_grads(lambda v: gelu(v, approximate) * v, x, rtol=1e-6, atol=1e-8)


def test_gelu_closed_forms_and_tails():
    phi = lambda t: math.exp(-t * t / 2) / math.sqrt(2 * math.pi)     # noqa: E731
    cdf = lambda t: 0.5 * (1 + math.erf(t / math.sqrt(2)))            # noqa: E731
    x = np.array([-30.0, -3.0, -1.0, 0.0, 0.5, 1.0, 3.0, 30.0])
    y, g = nk.value_and_grad(lambda v: F.gelu(v).sum())(x), nk.grad(lambda v: F.gelu(v).sum())(x)
    np.testing.assert_allclose(F.gelu(x).data, [t * cdf(t) for t in x], rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(g, [cdf(t) + t * phi(t) for t in x], rtol=1e-14, atol=1e-300)
    assert y[0] == pytest.approx(sum(t * cdf(t) for t in x), rel=1e-14)
    c = math.sqrt(2 / math.pi)
    u = [c * (t + 0.044715 * t ** 3) for t in x]
    np.testing.assert_allclose(F.gelu(x, "tanh").data, [0.5 * t * (1 + math.tanh(v)) for t, v in zip(x, u)],
                               rtol=1e-14, atol=1e-300)
    want = [0.5 * (1 + math.tanh(v)) + 0.5 * t * (1 - math.tanh(v) ** 2) * c * (1 + 3 * 0.044715 * t * t)
            for t, v in zip(x, u)]
    np.testing.assert_allclose(nk.grad(lambda v: F.gelu(v, "tanh").sum())(x), want, rtol=1e-13, atol=1e-300)
    # second derivative, exact form: 2 phi(x) - x^2 phi(x)
    h = nk.hessian(lambda v: F.gelu(v).sum())(x[1:-1])
    np.testing.assert_allclose(np.diag(h), [(2 - t * t) * phi(t) for t in x[1:-1]], rtol=1e-12, atol=1e-15)


def test_erf_values_and_derivatives():
    x = np.array([-2.5, -0.3, 0.0, 0.7, 4.0])
    np.testing.assert_allclose(erf(x), [math.erf(t) for t in x], rtol=1e-15)
    assert erf(np.float32(1.0)).dtype == np.float32
    check_grads(lambda v: erf(v), x, rtol=1e-6, atol=1e-8)


def test_erf_without_scipy_is_math_erf_per_element(monkeypatch):
    import sys
    from neuronika.ops import kernels
    monkeypatch.setitem(sys.modules, "scipy.special", None)        # import fails
    monkeypatch.setattr(kernels, "_ERF", [])
    x = np.array([[-3.0, -0.5], [0.0, 2.0]])
    np.testing.assert_array_equal(kernels.erf(x), [[math.erf(t) for t in row] for row in x])
    assert kernels.erf(x.astype(np.float32)).dtype == np.float32
    assert kernels.erf(np.array(0.5)) == math.erf(0.5)
    g = nk.grad(lambda v: F.gelu(v).sum())(x)
    monkeypatch.setattr(kernels, "_ERF", [])
    monkeypatch.undo()
    np.testing.assert_allclose(g, nk.grad(lambda v: F.gelu(v).sum())(x), rtol=1e-15)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_gelu_and_erf_keep_the_float_dtype(dtype):
    x = np.array([-1.5, 0.25, 2.0], dtype)
    for y in (erf(x), gelu(x), gelu(x, "tanh")):
        assert y.dtype == dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_module_keeps_the_dtype_and_refuses_bad_options(dtype):
    x = (rng(13).standard_normal((3, 4))).astype(dtype)
    for approximate in ("none", "tanh"):
        layer = GELU(approximate)
        v = nk.from_ndarray(x).requires_grad()
        out = layer(v).sum()
        out.backward()
        assert out.dtype == dtype and v.grad.dtype == dtype
        np.testing.assert_allclose(layer(x).data, composed_gelu(x, approximate).data, rtol=1e-5)
    with pytest.raises(ValueError, match="GELU: approximate must be 'none' or 'tanh', got 'fast'"):
        GELU("fast")
    with pytest.raises(ValueError, match=r"gelu: approximate must be 'none' or 'tanh', got 'erf' \(at .*test_fused"):
        F.gelu(x, "erf")
    with pytest.raises(TypeError, match="complex"):
        gelu(np.ones(2, complex))


# ---- bce_with_logits ---------------------------------------------------------------------------

def composed_bce(x, t, weight=None, reduction="mean", pos_weight=None):
    """The composition bce_with_logits_loss had before the fused op."""
    x, t = var(x), var(t)
    softplus_neg = (-x).softplus()
    if pos_weight is not None:
        softplus_neg = ((var(pos_weight) - 1.0) * t + 1.0) * softplus_neg
    loss = (1.0 - t) * x + softplus_neg
    if weight is not None:
        loss = loss * var(weight)
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def _bce_case(shape, seed=0):
    r = rng(seed)
    return r.standard_normal(shape) * 3, r.random(shape), r.random(shape[-1:]) + 0.5, r.random(shape[-1:]) * 3


BCE_SHAPES = [(6,), (4, 3), (2, 3, 2), (1, 1)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("options", ["plain", "weight", "pos_weight", "both"])
@pytest.mark.parametrize("shape", BCE_SHAPES, ids=str)
def test_bce_with_logits_equals_the_composition(shape, options, reduction, mode):
    x, t, w, pw = _bce_case(shape)
    w = w if options in ("weight", "both") else None
    pw = pw if options in ("pos_weight", "both") else None
    cot = rng(1).standard_normal(shape if reduction == "none" else ())
    with nk.config(compile=mode):
        for _ in range(2):
            fused = value_and_grads(
                lambda v, u: (F.bce_with_logits_loss(v, u, w, reduction=reduction, pos_weight=pw) * cot).sum(), x, t)
            composed = value_and_grads(
                lambda v, u: (composed_bce(v, u, w, reduction, pw) * cot).sum(), x, t)
            assert_same(fused, composed, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(5,), (3, 2)], ids=str)
def test_bce_with_logits_derivatives_in_logits_targets_and_weights(shape):
    x, t, w, pw = _bce_case(shape, seed=3)
    check_grads(lambda v: F.bce_with_logits_loss(v, t), x, rtol=1e-6, atol=1e-8)
    check_grads(lambda v, u: F.bce_with_logits_loss(v, u, reduction="none"), x, t, rtol=1e-6, atol=1e-8)
    check_grads(lambda v, u, p, q: F.bce_with_logits_loss(v, u, p, reduction="sum", pos_weight=q), x, t, w, pw,
                rtol=1e-6, atol=1e-8)


def test_bce_with_logits_op_broadcasts_its_target():
    x = rng(4).standard_normal((3, 4)) * 2
    t = rng(5).random(4)

    def fused(v, u):
        return _wrap(apply(OPS["bce_with_logits"], (v._node, u._node), ()))
    assert_same(value_and_grads(lambda v, u: fused(v, u).sum(), x, t),
                value_and_grads(lambda v, u: composed_bce(v, u, reduction="sum"), x, t))
    check_grads(fused, x, t, rtol=1e-6, atol=1e-8)


def test_bce_with_logits_extremes_and_the_exact_hessian():
    x = np.array([1e4, -1e4, 40.0, -40.0, 0.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    loss = F.bce_with_logits_loss(x, t, reduction="none").data
    np.testing.assert_allclose(loss, [0.0, 0.0, 40 + math.log1p(math.exp(-40)), 40 + math.log1p(math.exp(-40)),
                                      math.log(2)], rtol=1e-15)
    g = nk.grad(lambda v: F.bce_with_logits_loss(v, t, reduction="sum"))(x)
    with np.errstate(over="ignore"):
        s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(g, s - t, rtol=1e-15, atol=0)     # exact: 4e-18 at -40 too
    assert g[3] == pytest.approx(-1 + 1 / (1 + math.exp(40)), rel=1e-15)
    z = rng(6).standard_normal(4) * 2
    h = nk.hessian(lambda v: F.bce_with_logits_loss(v, np.full(4, 0.3), reduction="sum"))(z)
    sz = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(h, np.diag(sz * (1 - sz)), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_with_logits_imperative_keeps_the_dtype(dtype):
    x, t, w, pw = _bce_case((5, 3), seed=7)
    x, t = x.astype(dtype), t.astype(dtype)
    tolerance = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    a, b = nk.from_ndarray(x.copy()).requires_grad(), nk.from_ndarray(x.copy()).requires_grad()
    la = F.bce_with_logits_loss(a, t, pos_weight=pw.astype(dtype))
    lb = composed_bce(b, t, pos_weight=pw.astype(dtype))
    la.backward()
    lb.backward()
    assert la.dtype == dtype and a.grad.dtype == dtype
    np.testing.assert_allclose(la.data, lb.data, **tolerance)
    np.testing.assert_allclose(a.grad, b.grad, **tolerance)


# ---- other array libraries -----------------------------------------------------------------------

def test_array_api_strict_gives_the_numpy_results():
    xs = pytest.importorskip("array_api_strict")
    x, t, w, pw = _bce_case((4, 3), seed=8)
    ws = nk.from_ndarray(xs.asarray(w))
    cases = [
        (lambda v, u: (F.layer_norm(v, 3) * u).sum(), lambda v, u: (F.layer_norm(v, 3) * u).sum()),
        (lambda v, u: (F.layer_norm(v, (4, 3), eps=1e-3) * u).sum(), lambda v, u: (F.layer_norm(v, (4, 3), eps=1e-3) * u).sum()),
        (lambda v, u: (F.gelu(v) * u).sum(), lambda v, u: (F.gelu(v) * u).sum()),
        (lambda v, u: (F.gelu(v, "tanh") * u).sum(), lambda v, u: (F.gelu(v, "tanh") * u).sum()),
        (lambda v, u: F.bce_with_logits_loss(v, u, w), lambda v, u: F.bce_with_logits_loss(v, u, ws)),
        (lambda v, u: (fused_batch_norm(v, w[None] * v[:1] * 0 + w, w[None], (0,)) * u).sum(),
         lambda v, u: (fused_batch_norm(v, ws[None, :] * v[:1] * 0 + ws, ws[None, :], (0,)) * u).sum()),
    ]
    for numpy_fn, strict_fn in cases:
        want, g_want = nk.value_and_grad(numpy_fn, argnums=(0, 1))(x, t)
        value, g = nk.value_and_grad(strict_fn, argnums=(0, 1))(xs.asarray(x), xs.asarray(t))
        np.testing.assert_allclose(float(value), want, rtol=1e-12)
        for a, b in zip(g, g_want):
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-11, atol=1e-13)


def test_array_api_strict_arrays_given_directly_stay_in_their_library():
    xs = pytest.importorskip("array_api_strict")
    x = np.linspace(-2, 2, 6).reshape(2, 3)
    for fn in (lambda v: F.gelu(v), lambda v: F.gelu(v, "tanh"), lambda v: F.layer_norm(v, 3)):
        got = fn(xs.asarray(x)).data
        assert not isinstance(got, np.ndarray)
        np.testing.assert_allclose(np.asarray(got), fn(x).data, rtol=1e-13, atol=1e-15)


def test_array_api_strict_second_derivatives_on_another_device():
    xs = pytest.importorskip("array_api_strict")
    from neuronika.backend import to_numpy
    device = xs.Device("device1")
    x = rng(9).standard_normal((2, 3))
    for fn in (lambda v: (F.layer_norm(v, 3) ** 3).sum(), lambda v: F.gelu(v).sum(),
               lambda v: F.gelu(v, "tanh").sum(), lambda v: F.bce_with_logits_loss(v, (v * 0 + 0.25)),
               lambda v: (fused_batch_norm(v, v[:1] * v[1:], v[1:] + 1, (0,)) ** 2).sum()):
        h = nk.hessian(fn)(xs.asarray(x, device=device))
        np.testing.assert_allclose(to_numpy(h), nk.hessian(fn)(x), rtol=1e-11, atol=1e-13)
