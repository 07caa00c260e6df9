"""Loss functions (neuronika.nn.functional) and their modules (neuronika.nn.loss).

Every loss and reduction: values against hand-written NumPy references of
PyTorch's formulas (and against torch.nn.functional where torch imports),
gradients against float64 finite differences (weights, ignore_index, label
smoothing, gradients to targets), known values, extreme logits, second
derivatives, traced (compiled) use with changing targets, error messages, and
the module forms.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import functional as F
from neuronika.nn import loss as L
from neuronika.testing import oracle, check_grad

REDUCTIONS = ("mean", "sum", "none")
DTYPES = (np.float32, np.float64)


def rng(seed=0):
    return np.random.default_rng(seed)


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)


# ---- NumPy references: PyTorch's formulas, written out ----------------------------------------

def reduce_ref(loss, reduction):
    return loss.mean() if reduction == "mean" else loss.sum() if reduction == "sum" else loss


def mse_ref(x, y, reduction="mean"):
    return reduce_ref((x - y) ** 2, reduction)


def l1_ref(x, y, reduction="mean"):
    return reduce_ref(np.abs(x - y), reduction)


def huber_ref(x, y, reduction="mean", delta=1.0):
    d = np.abs(x - y)
    return reduce_ref(np.where(d < delta, 0.5 * d * d, delta * (d - 0.5 * delta)), reduction)


def smooth_l1_ref(x, y, reduction="mean", beta=1.0):
    d = np.abs(x - y)
    if beta == 0:
        return reduce_ref(d, reduction)
    return reduce_ref(np.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta), reduction)


def bce_ref(x, y, weight=None, reduction="mean"):
    with np.errstate(divide="ignore"):
        loss = -(y * np.maximum(np.log(x), -100) + (1 - y) * np.maximum(np.log(1 - x), -100))
    return reduce_ref(loss if weight is None else loss * weight, reduction)


def bce_logits_ref(x, y, weight=None, reduction="mean", pos_weight=None):
    log_sigmoid = -np.logaddexp(0, -x)
    log_one_minus = -np.logaddexp(0, x)
    p = 1.0 if pos_weight is None else pos_weight
    loss = -(p * y * log_sigmoid + (1 - y) * log_one_minus)
    return reduce_ref(loss if weight is None else loss * weight, reduction)


def nll_ref(logp, t, weight=None, ignore_index=-100, reduction="mean"):
    """Loops over every (n, d...) position, as PyTorch's reference implementation."""
    classes = logp.shape[0 if logp.ndim == 1 else 1]
    w = np.ones(classes) if weight is None else weight
    loss = np.zeros(t.shape)
    wsum = 0.0
    for pos in np.ndindex(t.shape):
        c = t[pos]
        if c == ignore_index:
            continue
        at = (c,) if logp.ndim == 1 else (pos[0], c) + pos[1:]
        loss[pos] = -w[c] * logp[at]
        wsum += w[c]
    if reduction == "mean":
        return loss.sum() / wsum
    return loss.sum() if reduction == "sum" else loss


def log_softmax_ref(x, axis):
    z = x - x.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def ce_ref(x, t, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    axis = 0 if x.ndim == 1 else 1
    classes = x.shape[axis]
    logp = log_softmax_ref(x, axis)
    nll = nll_ref(logp, t, weight, ignore_index, reduction)
    if label_smoothing == 0:
        return nll
    w = np.ones(classes) if weight is None else weight
    shape = (classes,) + (1,) * (x.ndim - 2) if x.ndim > 1 else (classes,)
    smooth = -(logp * w.reshape(shape)).sum(axis) * (t != ignore_index)
    if reduction == "mean":
        smooth = smooth.sum() / w[t[t != ignore_index]].sum()
    elif reduction == "sum":
        smooth = smooth.sum()
    return (1 - label_smoothing) * nll + label_smoothing / classes * smooth


def ce_prob_ref(x, y, weight=None, reduction="mean", label_smoothing=0.0):
    axis = 0 if x.ndim == 1 else 1
    classes = x.shape[axis]
    y = y * (1 - label_smoothing) + label_smoothing / classes
    w = np.ones(classes) if weight is None else weight
    shape = (classes,) + (1,) * (x.ndim - 2) if x.ndim > 1 else (classes,)
    loss = -(log_softmax_ref(x, axis) * y * w.reshape(shape)).sum(axis)
    if reduction == "mean":
        return loss.sum() / (x.size / classes)
    return reduce_ref(loss, reduction)


def kl_ref(x, y, reduction="mean", log_target=False):
    if log_target:
        loss = np.exp(y) * (y - x)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = np.where(y > 0, y * np.log(y), 0.0) - y * x
    if reduction == "batchmean":
        return loss.sum() / x.shape[0]
    return reduce_ref(loss, reduction)


# ---- test cases: (functional, reference, torch name, arrays, options) --------------------------

def probs(shape, seed):
    return rng(seed).uniform(0.05, 0.95, shape)


def class_targets(shape, classes, seed, ignore=None):
    t = rng(seed).integers(0, classes, shape)
    if ignore is not None:
        t.flat[1] = ignore
    return t


def distributions(shape, axis, seed):
    p = rng(seed).uniform(0.1, 1.0, shape)
    return p / p.sum(axis=axis, keepdims=True)


X = rng(1).standard_normal((4, 5))
Y = X + rng(2).choice([-1, 1], (4, 5)) * rng(3).uniform(0.1, 2.5, (4, 5))   # |d| away from 0
W5 = rng(4).uniform(0.5, 2.0, 5)
X3D = rng(5).standard_normal((3, 4, 2, 2))
T3D = class_targets((3, 2, 2), 4, 6, ignore=-100)
W4 = rng(7).uniform(0.5, 2.0, 4)
T = class_targets(4, 5, 8)
T_IGN = class_targets(4, 5, 8, ignore=-100)
T_IGN3 = class_targets(4, 5, 9, ignore=3)

# name -> (functional, reference, torch function name, input, target, options)
CASES = {
    "mse": (F.mse_loss, mse_ref, "mse_loss", X, Y, {}),
    "l1": (F.l1_loss, l1_ref, "l1_loss", X, Y, {}),
    "mae": (F.mae_loss, l1_ref, "l1_loss", X, Y, {}),
    "huber": (F.huber_loss, huber_ref, "huber_loss", X, Y, {}),
    "huber_delta": (F.huber_loss, huber_ref, "huber_loss", X, Y, {"delta": 0.7}),
    "smooth_l1": (F.smooth_l1_loss, smooth_l1_ref, "smooth_l1_loss", X, Y, {}),
    "smooth_l1_beta": (F.smooth_l1_loss, smooth_l1_ref, "smooth_l1_loss", X, Y, {"beta": 0.6}),
    "smooth_l1_beta0": (F.smooth_l1_loss, smooth_l1_ref, "smooth_l1_loss", X, Y, {"beta": 0.0}),
    "bce": (F.bce_loss, bce_ref, "binary_cross_entropy", probs((4, 5), 10),
            (rng(11).random((4, 5)) < 0.5).astype(float), {}),
    "bce_soft_weight": (F.bce_loss, bce_ref, "binary_cross_entropy", probs((4, 5), 12), probs((4, 5), 13),
                        {"weight": W5}),
    "bce_logits": (F.bce_with_logits_loss, bce_logits_ref, "binary_cross_entropy_with_logits", 3 * X,
                   (rng(14).random((4, 5)) < 0.5).astype(float), {}),
    "bce_logits_weights": (F.bce_with_logits_loss, bce_logits_ref, "binary_cross_entropy_with_logits", 3 * X,
                           probs((4, 5), 15), {"weight": rng(16).uniform(0.5, 2, (4, 1)), "pos_weight": W5}),
    "nll": (F.nll_loss, nll_ref, "nll_loss", log_softmax_ref(X, 1), T, {}),
    "nll_weight_ignore": (F.nll_loss, nll_ref, "nll_loss", log_softmax_ref(X, 1), T_IGN, {"weight": W5}),
    "nll_ignore_class": (F.nll_loss, nll_ref, "nll_loss", log_softmax_ref(X, 1), T_IGN3,
                         {"weight": W5, "ignore_index": 3}),
    "nll_4d": (F.nll_loss, nll_ref, "nll_loss", log_softmax_ref(X3D, 1), T3D, {"weight": W4}),
    "nll_unbatched": (F.nll_loss, nll_ref, "nll_loss", log_softmax_ref(X[0], 0), np.array(2), {}),
    "ce": (F.cross_entropy, ce_ref, "cross_entropy", X, T, {}),
    "ce_weight_ignore": (F.cross_entropy, ce_ref, "cross_entropy", X, T_IGN, {"weight": W5}),
    "ce_smooth": (F.cross_entropy, ce_ref, "cross_entropy", X, T_IGN, {"label_smoothing": 0.2}),
    "ce_smooth_weight": (F.cross_entropy, ce_ref, "cross_entropy", X, T_IGN3,
                         {"weight": W5, "label_smoothing": 0.3, "ignore_index": 3}),
    "ce_4d_smooth_weight": (F.cross_entropy, ce_ref, "cross_entropy", X3D, T3D,
                            {"weight": W4, "label_smoothing": 0.25}),
    "ce_unbatched": (F.cross_entropy, ce_ref, "cross_entropy", X[1], np.array(4), {"label_smoothing": 0.1}),
    "ce_probs": (F.cross_entropy, ce_prob_ref, "cross_entropy", X, distributions((4, 5), 1, 17), {}),
    "ce_probs_weight_smooth": (F.cross_entropy, ce_prob_ref, "cross_entropy", X3D,
                               distributions((3, 4, 2, 2), 1, 18), {"weight": W4, "label_smoothing": 0.2}),
    "kl": (F.kl_div_loss, kl_ref, "kl_div", log_softmax_ref(X, 1), distributions((4, 5), 1, 19), {}),
    "kl_zero_target": (F.kl_div_loss, kl_ref, "kl_div", log_softmax_ref(X, 1),
                       distributions((4, 5), 1, 20) * (rng(21).random((4, 5)) < 0.7), {}),
    "kl_log_target": (F.kl_div_loss, kl_ref, "kl_div", log_softmax_ref(X, 1),
                      log_softmax_ref(Y, 1), {"log_target": True}),
}
CLASS_INDEX = {name for name, case in CASES.items() if case[4].dtype.kind in "iu"}


def reductions_for(name):
    return REDUCTIONS + (("batchmean",) if name.startswith("kl") else ())


ALL = [(name, r) for name in CASES for r in reductions_for(name)]


def options(case, reduction, dtype=np.float64):
    opts = dict(case[5], reduction=reduction)
    for key in ("weight", "pos_weight"):
        if key in opts:
            opts[key] = opts[key].astype(dtype)
    return opts


def run(name, reduction, dtype, wrap=np.asarray):
    fn, _, _, x, t, _ = CASES[name]
    target = t if t.dtype.kind in "iu" else wrap(t.astype(dtype))
    return fn(wrap(x.astype(dtype)), target, **options(CASES[name], reduction, dtype))


# ---- values -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("name,reduction", ALL)
def test_value_matches_numpy_reference(name, reduction, dtype):
    fn, ref, _, x, t, _ = CASES[name]
    out = run(name, reduction, dtype)
    want = ref(x, t, **options(CASES[name], reduction))
    assert out.dtype == dtype
    assert out.shape == np.shape(want)
    np.testing.assert_allclose(out.data, want, **tol(dtype))


@pytest.mark.parametrize("name,reduction", ALL)
def test_value_matches_torch(name, reduction):
    torch = oracle("torch")
    _, _, torch_name, x, t, _ = CASES[name]
    opts = {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v
            for k, v in options(CASES[name], reduction).items()}
    got = run(name, reduction, np.float64).data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)        # kl_div's note on 'mean'
        want = getattr(torch.nn.functional, torch_name)(torch.as_tensor(x), torch.as_tensor(t), **opts).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_module_forms_equal_functional_forms():
    modules = {
        "mse": L.MSELoss, "l1": L.L1Loss, "mae": L.MAELoss, "huber_delta": L.HuberLoss,
        "smooth_l1_beta": L.SmoothL1Loss, "bce_soft_weight": L.BCELoss,
        "bce_logits_weights": L.BCEWithLogitsLoss, "nll_weight_ignore": L.NLLLoss, "nll_ignore_class": L.NLLLoss,
        "ce_smooth_weight": L.CrossEntropyLoss, "ce_probs_weight_smooth": L.CrossEntropyLoss,
        "kl_log_target": L.KLDivLoss,
    }
    for name, cls in modules.items():
        fn, _, _, x, t, opts = CASES[name]
        for reduction in reductions_for(name):
            module = cls(**dict(opts, reduction=reduction))
            got = module(x, t).data
            np.testing.assert_array_equal(got, fn(x, t, **dict(opts, reduction=reduction)).data, err_msg=name)
    assert set(L.CrossEntropyLoss(W5).state_dict()) == {"weight"}
    assert L.CrossEntropyLoss(W5).to(np.float32).weight.dtype == np.float32
    assert "label_smoothing=0.1" in repr(L.CrossEntropyLoss(label_smoothing=0.1))
    with pytest.raises(ValueError, match="KLDivLoss.*reduction.*'batch'"):
        L.KLDivLoss(reduction="batch")
    with pytest.raises(ValueError, match="MSELoss.*reduction"):
        L.MSELoss(reduction="batchmean")
    with pytest.raises(ValueError, match="label_smoothing"):
        L.CrossEntropyLoss(label_smoothing=1.5)


def test_module_gradient_reaches_model_parameters():
    model = nk.nn.Linear(5, 3, dtype=np.float64)
    criterion = L.CrossEntropyLoss(label_smoothing=0.1)
    x, t = rng(30).standard_normal((6, 5)), rng(31).integers(0, 3, 6)
    criterion(model(x), t).backward()
    w = model.weight.data
    p = np.exp(log_softmax_ref(x @ w.T + model.bias.data, 1))
    target = np.full((6, 3), 0.1 / 3) + 0.9 * np.eye(3)[t]
    np.testing.assert_allclose(model.weight.grad, (p - target).T @ x / 6, rtol=1e-10)


# ---- gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,reduction", ALL)
def test_gradient_matches_finite_differences(name, reduction):
    fn, _, _, x, t, _ = CASES[name]
    opts = options(CASES[name], reduction)
    if name in CLASS_INDEX or name == "kl_zero_target":      # (no finite differences at target 0)
        check_grad(lambda v: fn(v, t, **opts), x, rtol=1e-6, atol=1e-8)
    else:
        # with respect to both the input and the target (a VarDiff target gets a gradient)
        check_grad(lambda v, u: fn(v, u, **opts), x, t, rtol=1e-6, atol=1e-8)


def test_data_targets_get_no_gradient_and_class_indices_stay_data():
    x = nk.from_ndarray(X.copy()).requires_grad()
    y = nk.from_ndarray(Y.copy())
    out = F.mse_loss(x, y)
    assert isinstance(out, nk.VarDiff)
    assert [p.shape for p in out.parameters()] == [(4, 5)]
    assert type(F.mse_loss(X, Y)) is nk.Var          # arrays in: nothing to differentiate
    assert type(F.cross_entropy(X, T)) is nk.Var


def test_second_derivatives_closed_forms():
    x = rng(40).standard_normal((3, 4))
    t = np.array([1, 3, 0])
    h = nk.hessian(lambda v: F.cross_entropy(v, t))(x)                        # (3, 4, 3, 4)
    p = np.exp(log_softmax_ref(x, 1))
    for n in range(3):
        np.testing.assert_allclose(h[n, :, n, :], (np.diag(p[n]) - np.outer(p[n], p[n])) / 3, atol=1e-12)
    assert np.abs(h[0, :, 1, :]).max() == 0

    z, y = rng(41).standard_normal(5), (rng(42).random(5) < 0.5).astype(float)
    h = nk.hessian(lambda v: F.bce_with_logits_loss(v, y, reduction="sum", pos_weight=np.full(5, 1.0)))(z)
    s = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(h, np.diag(s * (1 - s)), atol=1e-12)

    h = nk.hessian(lambda v: F.huber_loss(v, np.zeros(4), reduction="sum", delta=1.0))(np.array([0.5, -0.2, 2.0, -3.0]))
    np.testing.assert_allclose(h, np.diag([1.0, 1.0, 0.0, 0.0]), atol=1e-12)


def test_hessian_vector_products_match_finite_differences_of_the_gradient():
    x = rng(43).standard_normal((3, 4))
    t = np.array([1, -100, 2])
    w = np.array([0.5, 1.0, 2.0, 1.5])
    v = rng(44).standard_normal((3, 4))

    def loss(a):
        return F.cross_entropy(a, t, w, label_smoothing=0.2)

    g = nk.grad(loss)
    eps = 1e-5
    numeric = (g(x + eps * v) - g(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(nk.hvp(loss, x, v), numeric, rtol=1e-6, atol=1e-9)


# ---- known values -------------------------------------------------------------------------------

def test_mse_known_values():
    x = nk.from_ndarray(np.arange(10.0, 19.0).reshape(3, 3)).requires_grad()
    y = np.arange(1.0, 10.0).reshape(3, 3)
    loss = F.mse_loss(x, y)
    loss.backward()
    assert float(loss.data) == 81.0
    np.testing.assert_array_equal(x.grad, np.full((3, 3), 2.0))
    x.zero_grad()
    loss = F.mse_loss(x, y, reduction="sum")
    loss.backward()
    assert float(loss.data) == 729.0
    np.testing.assert_array_equal(x.grad, np.full((3, 3), 18.0))
    np.testing.assert_array_equal(F.mse_loss(x, y, reduction="none").data, np.full((3, 3), 81.0))
    assert float(L.MSELoss()(np.arange(10.0, 19.0, dtype=np.float32).reshape(3, 3), y).data) == 81.0


def test_nll_known_value():
    logits = np.array([[0, .3, .4, .2, .1], [0, .3, .4, .2, .1], [0, .3, 0, .2, .5]], dtype=np.float32)
    x = nk.from_ndarray(logits).log_softmax(1)
    assert round(float(F.nll_loss(x, np.array([2, 0, 4])).data), 4) == 1.5222
    assert round(float(F.cross_entropy(logits, np.array([2, 0, 4])).data), 4) == 1.5222


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32, np.uint64])
def test_any_integer_target_dtype(dtype):
    t = np.array([0, 4, 2, 1], dtype)
    want = ce_ref(X, t.astype(np.int64), W5)
    np.testing.assert_allclose(F.cross_entropy(X, t, W5).data, want, rtol=1e-12)
    np.testing.assert_allclose(F.cross_entropy(X, nk.from_ndarray(t), W5, ignore_index=300).data, want,
                               rtol=1e-12)


def test_float32_input_keeps_float32_with_float64_weights_and_targets():
    x = nk.from_ndarray(X.astype(np.float32)).requires_grad()
    for out in (F.cross_entropy(x, T_IGN, W5, label_smoothing=0.1), F.bce_with_logits_loss(x, Y, W5, pos_weight=W5),
                F.kl_div_loss(x, distributions((4, 5), 1, 0), reduction="batchmean"), F.huber_loss(x, Y)):
        x.zero_grad()
        out.backward()
        assert out.dtype == np.float32 and x.grad.dtype == np.float32


def test_all_targets_ignored_gives_nan_under_mean_as_pytorch():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert np.isnan(F.nll_loss(X, np.full(4, -100)).data)
    assert float(F.nll_loss(X, np.full(4, -100), reduction="sum").data) == 0.0


# ---- stability ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_extreme_logits_are_finite(dtype):
    big = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5.0], [0.0, 1e4, -1e4]], dtype=dtype)
    x = nk.from_ndarray(big).requires_grad()
    t = np.array([0, 0, 2])
    loss = F.cross_entropy(x, t, reduction="sum")
    loss.backward()
    assert np.isfinite(loss.data) and np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(loss.data, 0.0 + 2e4 + 2e4, rtol=1e-6)
    np.testing.assert_allclose(x.grad, [[0, 0, 0], [-1, 1, 0], [0, 1, -1]], atol=1e-6)

    x = nk.from_ndarray(big).requires_grad()
    y = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1]], dtype=dtype)
    loss = F.bce_with_logits_loss(x, y, reduction="none", pos_weight=np.full(3, 2.0, dtype))
    loss.backward(np.ones((3, 3), dtype))
    assert np.all(np.isfinite(loss.data)) and np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(loss.data, [[0, 0, 2 * np.log(2)], [2e4, 0, 5 + np.log1p(np.exp(-5))],
                                           [np.log(2), 1e4, 2e4]], rtol=1e-6)
    np.testing.assert_allclose(x.grad, [[0, 0, -1], [-2, 0, 1 / (1 + np.exp(-5))], [0.5, 1, -2]], atol=1e-6)
    for smoothing in (0.0, 0.1):
        v = nk.from_ndarray(big).requires_grad()
        out = F.cross_entropy(v, np.array([1, -100, 2]), np.ones(3, dtype), label_smoothing=smoothing)
        out.backward()
        assert np.isfinite(out.data) and np.all(np.isfinite(v.grad))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_bce_at_zero_and_one_is_clamped_and_finite(dtype):
    x = nk.from_ndarray(np.array([0.0, 1.0, 0.0, 1.0, 0.5], dtype)).requires_grad()
    y = np.array([1.0, 0.0, 0.0, 1.0, 1.0], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no divide-by-zero or invalid warnings
        loss = F.bce_loss(x, y, reduction="none")
        loss.backward(np.ones(5, dtype))
    np.testing.assert_allclose(loss.data, [100, 100, 0, 0, np.log(2)], rtol=1e-6)
    assert np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(x.grad, [0, 0, 1, -1, -2], rtol=1e-6)    # 0 where clamped


def test_kl_zero_targets_give_finite_gradients():
    x = nk.from_ndarray(log_softmax_ref(X, 1)).requires_grad()
    y = nk.from_ndarray(np.where(np.arange(20).reshape(4, 5) % 3 == 0, 0.0, 0.2)).requires_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.kl_div_loss(x, y, reduction="batchmean")
        loss.backward()
    assert np.all(np.isfinite(x.grad)) and np.all(np.isfinite(y.grad))


# ---- traced and compiled use --------------------------------------------------------------------

def test_compiled_function_sees_new_targets_each_call():
    """Targets are arguments of the trace, not constants: ignore_index, weights and
    label smoothing follow the values of each call."""
    w = np.array([0.5, 1.0, 2.0, 1.5, 1.0])

    def loss(x, t):
        return F.cross_entropy(x, t, w, label_smoothing=0.1)

    value_and_grad = nk.value_and_grad(loss)
    x = rng(50).standard_normal((4, 5))
    for seed in range(3):
        t = class_targets(4, 5, 60 + seed, ignore=-100 if seed != 1 else None)
        value, g = value_and_grad(x, t)
        np.testing.assert_allclose(value, ce_ref(x, t, w, label_smoothing=0.1), rtol=1e-12)
        v = nk.from_ndarray(x.copy()).requires_grad()
        loss(v, t).backward()
        np.testing.assert_allclose(g, v.grad, rtol=1e-12)


def test_leaf_data_changed_in_place_is_seen_by_forward():
    t = nk.from_ndarray(np.array([0, 1, 2, 3]))
    x = nk.from_ndarray(X.copy()).requires_grad()
    loss = F.nll_loss(x, t, W5)
    assert np.isclose(float(loss.data), nll_ref(X, t.data.copy(), W5))
    t.data = np.array([4, -100, 1, 1])
    loss.forward()
    np.testing.assert_allclose(loss.data, nll_ref(X, np.array([4, -100, 1, 1]), W5), rtol=1e-12)


# ---- errors -------------------------------------------------------------------------------------------

ELEMENTWISE = [F.mse_loss, F.l1_loss, F.bce_loss, F.bce_with_logits_loss, F.kl_div_loss, F.huber_loss,
               F.smooth_l1_loss]


@pytest.mark.parametrize("fn", ELEMENTWISE, ids=lambda f: f.__name__)
def test_mismatched_shapes_raise_shape_error(fn):
    with pytest.raises(nk.ShapeError) as info:
        fn(np.full((4, 1), 0.5), np.full(4, 0.5))
    message = str(info.value)
    assert fn.__name__ in message and "(4, 1)" in message and "(4,)" in message
    assert "test_loss.py" in message                       # the user's line


@pytest.mark.parametrize("fn", [F.nll_loss, F.cross_entropy], ids=lambda f: f.__name__)
def test_class_index_errors(fn):
    name = fn.__name__
    with pytest.raises(nk.ShapeError, match=rf"{name}.*\(4, 5\).*\(3,\)"):
        fn(X, np.array([0, 1, 2]))
    with pytest.raises(nk.ShapeError, match=rf"{name}.*\(3, 4, 2, 2\).*\(3, 2\)"):
        fn(X3D, np.zeros((3, 2), int))
    with pytest.raises(IndexError, match=rf"{name}: target 5 is out of range for 5 classes"):
        fn(X, np.array([0, 5, 1, 2]))
    with pytest.raises(IndexError, match=rf"{name}: target -1 is out of range for 5 classes"):
        fn(X, np.array([0, -1, 1, 2]))
    with pytest.raises(IndexError, match=rf"{name}: target -100 is out of range for 5 classes.*ignore_index = 0"):
        fn(X, np.array([0, -100, 1, 2]), ignore_index=0)
    with pytest.raises(IndexError, match=rf"{name}: target 4 is out of range for 4 classes"):
        fn(X3D, np.where(T3D == 1, 4, T3D))
    with pytest.raises(TypeError, match=rf"{name}.*integer class indices.*float64"):
        fn(X, np.array([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(TypeError, match=rf"{name}.*integer class indices.*bool"):
        fn(X, np.array([True, False, True, False]))
    with pytest.raises(nk.ShapeError, match=rf"{name}: weight must have shape \(5,\).*\(4,\)"):
        fn(X, T, np.ones(4))
    with pytest.raises(nk.ShapeError, match=rf"{name}.*class axis"):
        fn(np.array(1.0), np.array(0))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
        fn(X, T, reduction="avg")


def test_other_option_errors():
    with pytest.raises(TypeError, match="cross_entropy.*class probabilities.*floating point.*int64"):
        F.cross_entropy(X, np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="ignore_index is not supported with class-probability"):
        F.cross_entropy(X, distributions((4, 5), 1, 0), ignore_index=2)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        F.cross_entropy(X, T, label_smoothing=-0.1)
    with pytest.raises(ValueError, match="huber_loss: delta must be positive"):
        F.huber_loss(X, Y, delta=0.0)
    with pytest.raises(ValueError, match="smooth_l1_loss: beta must not be negative"):
        F.smooth_l1_loss(X, Y, beta=-1.0)
    with pytest.raises(ValueError, match="kl_div_loss: reduction.*'batchmean'"):
        F.kl_div_loss(X, Y, reduction="batch")
    with pytest.raises(ValueError, match="mse_loss: reduction"):
        F.mse_loss(X, Y, reduction="batchmean")
    with pytest.raises(nk.ShapeError, match=r"bce_with_logits_loss: pos_weight of shape \(4,\) does not "
                                            r"broadcast to the input's shape \(4, 5\)"):
        F.bce_with_logits_loss(X, Y, pos_weight=np.ones(4))
    with pytest.raises(nk.ShapeError, match=r"bce_loss: weight of shape \(2, 5\)"):
        F.bce_loss(probs((4, 5), 0), probs((4, 5), 1), np.ones((2, 5)))
    with pytest.raises(TypeError, match="mse_loss: the input must be floating point"):
        F.mse_loss(np.arange(3), np.arange(3))


# ---- checks that compiled code keeps (issue 11) --------------------------------------------------

def test_bce_is_finite_in_float32_where_the_probability_underflows():
    # sigmoid(-90) in float32 is subnormal: 1 / p overflows float32, and the gradient was -inf
    z = nk.from_ndarray(np.array([-80.0, -88.0, -90.0, -100.0, -104.0, -200.0], np.float32)).requires_grad()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = F.bce_loss(z.sigmoid(), np.ones(6, np.float32), reduction="none")
        loss.backward(np.ones(6, np.float32))
    assert loss.dtype == np.float32 and np.all(np.isfinite(z.grad))
    np.testing.assert_allclose(loss.data, [80, 88, 90, 100, 100, 100], rtol=1e-3)   # log clamped at -100
    np.testing.assert_allclose(z.grad[0], -1.0, rtol=1e-6)
    assert np.all(z.grad <= 0) and np.all(z.grad >= -1)


def test_bce_refuses_inputs_outside_zero_one_when_built_and_when_compiled():
    with pytest.raises(ValueError, match=r"bce_loss: .*\[0, 1\], got 1.5.*test_loss.py"):
        F.bce_loss(np.array([0.5, 1.5]), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"bce_loss: .*\[0, 1\], got nan"):
        L.BCELoss()(np.array([0.5, np.nan]), np.array([0.0, 1.0]))
    x = nk.from_ndarray(np.array([0.5, 1.5])).requires_grad()
    loss = F.bce_loss(x * 1.0, np.array([0.0, 1.0]))         # a value not known when built
    with pytest.raises(ValueError, match=r"bce_loss: .*got 1.5"):
        loss.forward()
    grad = nk.grad(lambda p, t: F.bce_loss(p, t))
    np.testing.assert_allclose(grad(np.array([0.5, 0.2]), np.array([0.0, 1.0])), [1.0, -2.5])
    with pytest.raises(ValueError, match=r"bce_loss: .*got -0.2"):
        grad(np.array([0.5, -0.2]), np.array([0.0, 1.0]))


@pytest.mark.parametrize("fn", [F.nll_loss, F.cross_entropy], ids=lambda f: f.__name__)
def test_class_indices_are_checked_on_every_call_of_a_compiled_loss(fn):
    name = fn.__name__
    grad = nk.grad(lambda x, t: fn(x, t))
    x = rng(7).standard_normal((4, 3))
    grad(x, np.array([0, 1, 2, 0]))                       # traced and compiled with good targets
    for bad, value in (([0, 1, -1, 2], -1), ([0, 3, 1, 2], 3)):
        with pytest.raises(IndexError, match=rf"{name}: target {value} is out of range for 3 classes"):
            grad(x, np.array(bad))
    np.testing.assert_array_equal(grad(x, np.array([0, -100, 1, 2]))[1], 0.0)    # ignored: no gradient

    t = nk.from_ndarray(np.array([0, 1, 2, 0]))
    v = nk.from_ndarray(x.copy()).requires_grad()
    loss = fn(v, t)
    loss.backward()
    t.data[1] = 7                                         # the same graph run again
    with pytest.raises(IndexError, match=rf"{name}: target 7 is out of range for 3 classes"):
        loss.forward()

