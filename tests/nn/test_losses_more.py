"""The remaining losses (neuronika/nn/_losses_more.py) and their modules: values and gradients
of every float input against PyTorch (float64, every reduction), finite differences of the
first and second order away from kinks, edge values (margins, zero vectors, var clamping,
Stirling's term), float32 kept, and the errors.
"""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.nn import functional as F
from neuronika.nn import loss as L
from neuronika.testing import check_grads, oracle

REDUCTIONS = ("mean", "sum", "none")


def rng(seed=0):
    return np.random.default_rng(seed)


def signs(shape, seed=1):
    return np.where(rng(seed).random(shape) < 0.5, -1.0, 1.0)


# ---- cases: name -> list of (arrays, indices of the float inputs to differentiate, options) ------

def _cases():
    r = rng(0)
    n = r.standard_normal
    cases = {
        "triplet_margin_loss": [
            ((n((5, 4)), n((5, 4)), n((5, 4))), (0, 1, 2), {}),
            ((n((5, 4)), n((5, 4)), n((5, 4))), (0, 1, 2), dict(margin=0.5, p=1, swap=True)),
            ((n((5, 4)), n((5, 4)), n((5, 4))), (0, 1, 2), dict(margin=2.0, p=3, eps=1e-3, swap=True)),
            ((n(4), n(4), n(4)), (0, 1, 2), dict(margin=3.0)),
            ((n((1, 4)), n((5, 4)), n((5, 1))), (0, 1, 2), dict(margin=2.0)),
        ],
        "margin_ranking_loss": [
            ((n(6), n(6), signs(6)), (0, 1), {}),
            ((n((3, 1)), n((1, 4)), signs((3, 4))), (0, 1), dict(margin=0.3)),
            ((n((3, 4)), n((3, 4)), signs((3, 4), 2)), (0, 1, 2), dict(margin=-0.2)),
        ],
        "hinge_embedding_loss": [
            ((np.abs(n((4, 5))) * 1.5, signs((4, 5))), (0,), {}),
            ((n(7), np.array([1.0, -1.0, 0.0, 2.0, -1.0, 1.0, -1.0])), (0,), dict(margin=0.5)),
        ],
        "cosine_embedding_loss": [
            ((n((5, 3)), n((5, 3)), signs(5)), (0, 1), {}),
            ((n((5, 3)), n((5, 3)), signs(5, 3)), (0, 1), dict(margin=-0.3)),
            ((n(3), n(3), np.array(-1.0)), (0, 1), dict(margin=-0.5)),
        ],
        "poisson_nll_loss": [
            ((n((4, 5)), r.poisson(2.0, (4, 5)).astype(float)), (0, 1), {}),
            ((n((4, 5)), r.poisson(2.0, (4, 5)).astype(float) + 0.3), (0, 1), dict(full=True)),
            ((r.random((4, 5)) + 0.1, r.poisson(2.0, (4, 5)).astype(float)), (0, 1), dict(log_input=False)),
            ((r.random(6) + 0.1, np.array([0.0, 0.5, 1.0, 1.5, 2.0, 7.0])), (0,),
             dict(log_input=False, full=True, eps=1e-3)),
        ],
        "gaussian_nll_loss": [
            ((n((4, 3)), n((4, 3)), r.random((4, 3)) + 0.1), (0, 1, 2), {}),
            ((n((4, 3)), n((4, 3)), r.random(4) + 0.1), (0, 1, 2), dict(full=True)),
            ((n((4, 3)), n((4, 3)), r.random((4, 1)) + 0.1), (0, 1, 2), {}),
            ((n((2, 3, 4)), n((2, 3, 4)), r.random((2, 1, 4)) + 0.1), (0, 1, 2), dict(eps=1e-3)),
            ((n((4, 3)), n((1, 3)), r.random((4, 3)) + 0.1), (0, 1, 2), {}),
        ],
        "soft_margin_loss": [
            ((n((4, 5)) * 2, signs((4, 5))), (0,), {}),
            ((n(6), n(6)), (0, 1), {}),
        ],
        "multilabel_soft_margin_loss": [
            ((n((4, 5)) * 2, (r.random((4, 5)) < 0.5).astype(float)), (0,), {}),
            ((n((4, 5)), r.random((4, 5))), (0, 1, 2), dict(weight=r.random(5) + 0.5)),
            ((n(5), (r.random(5) < 0.5).astype(float)), (0,), {}),
        ],
        "multi_margin_loss": [
            ((n((4, 5)), r.integers(0, 5, 4)), (0,), {}),
            ((n((4, 5)), r.integers(0, 5, 4)), (0, 2), dict(p=2, margin=0.5, weight=r.random(5) + 0.5)),
            ((n(5), np.array(2)), (0,), dict(margin=2.0)),
        ],
    }
    return cases


CASES = _cases()
# inputs torch refuses to differentiate (ours are checked by finite differences only)
TORCH_NO_GRAD = {"soft_margin_loss": (1,), "multi_margin_loss": (2,)}
IDS = [(name, i) for name, cases in CASES.items() for i in range(len(cases))]


def _split(name, arrays, opts):
    """(positional arrays, keyword arrays): a weight is an array passed by keyword."""
    opts = dict(opts)
    weight = opts.pop("weight", None)
    arrays = list(arrays) + ([weight] if weight is not None else [])
    return arrays, opts, weight is not None


def _nk(name, arrays, opts, with_weight):
    def fn(*vs):
        if with_weight:
            return getattr(F, name)(*vs[:-1], weight=vs[-1], **opts)
        return getattr(F, name)(*vs, **opts)
    return fn


def _wrt(arrays, wrt, with_weight):
    """The indices to differentiate (a weight, passed last, is one where listed)."""
    return [i for i in wrt if i < len(arrays)]


def _run_nk(fn, arrays, wrt, seed):
    vs = [nk.from_ndarray(a).requires_grad() if i in wrt else a for i, a in enumerate(arrays)]
    out = fn(*vs)
    out.forward()
    out.backward(seed)
    return np.asarray(out.data), [np.asarray(vs[i].grad) for i in wrt]


def _run_torch(torch, name, arrays, wrt, opts, with_weight, seed):
    ts = [torch.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    f = getattr(torch.nn.functional, name)
    out = f(*ts[:-1], weight=ts[-1], **opts) if with_weight else f(*ts, **opts)
    out.backward(torch.as_tensor(seed))
    return out.detach().numpy(), [ts[i].grad.numpy() for i in wrt]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,k", IDS)
def test_values_and_gradients_match_torch(name, k, reduction):
    torch = oracle("torch")
    arrays, wrt, opts = CASES[name][k]
    arrays, opts, with_weight = _split(name, arrays, opts)
    wrt = [i for i in _wrt(arrays, wrt, with_weight) if i not in TORCH_NO_GRAD.get(name, ())]
    opts = dict(opts, reduction=reduction)
    out = _nk(name, arrays, opts, with_weight)(*arrays)
    seed = rng(7).standard_normal(out.shape) if out.shape else np.array(1.3)
    got, grads = _run_nk(_nk(name, arrays, opts, with_weight), arrays, wrt, seed)
    want, want_grads = _run_torch(torch, name, arrays, wrt, opts, with_weight, seed)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for i, g, w in zip(wrt, grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-11, err_msg=f"{name}: gradient of input {i}")


@pytest.mark.parametrize("name,k", IDS)
def test_finite_differences_first_and_second_order(name, k):
    arrays, wrt, opts = CASES[name][k]
    arrays, opts, with_weight = _split(name, arrays, opts)
    wrt = _wrt(arrays, wrt, with_weight)
    reduction = "none" if k % 2 else "mean"
    check_grads(_nk(name, arrays, dict(opts, reduction=reduction), with_weight), *arrays, order=2, wrt=wrt,
                rtol=1e-5, atol=1e-7, imperative=False)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_stays_float32(name):
    arrays, wrt, opts = CASES[name][0]
    arrays, opts, with_weight = _split(name, arrays, opts)
    arrays = [a.astype(np.float32) if a.dtype.kind == "f" else a for a in arrays]
    wrt = _wrt(arrays, wrt, with_weight)
    for reduction in ("mean", "none"):
        fn = _nk(name, arrays, dict(opts, reduction=reduction), with_weight)
        out = fn(*arrays)
        seed = np.ones(out.shape, np.float32)
        got, grads = _run_nk(fn, arrays, wrt, seed)
        assert got.dtype == np.float32, (name, got.dtype)
        assert all(g.dtype == np.float32 for g in grads)


# ---- edge values ---------------------------------------------------------------------------------

def test_cosine_embedding_zero_vectors_match_torch():
    torch = oracle("torch")
    x1 = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.0, 0.0]])
    x2 = np.array([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    for target in (np.array([1.0, -1.0, 1.0]), np.array([-1.0, 1.0, -1.0])):
        for margin in (0.0, -0.5):
            opts = dict(margin=margin, reduction="none")
            seed = np.array([0.5, -1.0, 2.0])
            got, grads = _run_nk(lambda a, b, t: F.cosine_embedding_loss(a, b, t, **opts), [x1, x2, target],
                                 [0, 1], seed)
            want, want_grads = _run_torch(torch, "cosine_embedding_loss", [x1, x2, target], [0, 1], opts,
                                          False, seed)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            for g, w in zip(grads, want_grads):     # gradients of 1e5 at a zero vector: rounding differs
                np.testing.assert_allclose(g, w, rtol=1e-7)


def test_gaussian_var_clamped_at_eps_with_var_gradient_as_torch():
    torch = oracle("torch")
    x, t = np.array([0.5, -1.0, 2.0, 0.0]), np.array([0.0, 0.0, 1.0, 0.0])
    var = np.array([0.0, 1e-9, 0.5, 1e-3])
    for eps in (1e-6, 1e-2):
        for full in (False, True):
            opts = dict(eps=eps, full=full, reduction="sum")
            got, grads = _run_nk(lambda a, b, v: F.gaussian_nll_loss(a, b, v, **opts), [x, t, var], [0, 1, 2], 1.0)
            want, want_grads = _run_torch(torch, "gaussian_nll_loss", [x, t, var], [0, 1, 2], opts, False, 1.0)
            np.testing.assert_allclose(got, want, rtol=1e-12)
            for g, w in zip(grads, want_grads):
                np.testing.assert_allclose(g, w, rtol=1e-9)
    # a number as var, as torch
    got = F.gaussian_nll_loss(x, t, 0.25, reduction="none").data
    want = torch.nn.functional.gaussian_nll_loss(torch.tensor(x), torch.tensor(t), 0.25, reduction="none")
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)


def test_closed_forms_at_margins():
    # triplet: exactly at the margin the loss is 0 on the far side; the hinge passes its gradient
    a, p, n = np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]), np.array([[0.0, 10.0]])
    assert float(F.triplet_margin_loss(a, p, n, margin=5.0, eps=0.0).data) == 0.0
    assert float(F.triplet_margin_loss(a, p, n, margin=6.0, eps=0.0).data) == 1.0
    # margin ranking: -y (x1 - x2) + margin
    np.testing.assert_array_equal(
        F.margin_ranking_loss(np.array([3.0, 1.0]), np.array([1.0, 3.0]), np.array([1.0, 1.0]), margin=1.0,
                              reduction="none").data, [0.0, 3.0])
    # hinge embedding beyond the margin is 0
    np.testing.assert_array_equal(
        F.hinge_embedding_loss(np.array([2.0, 0.25]), np.array([-1.0, -1.0]), reduction="none").data, [0.0, 0.75])
    # soft margin at 0 is log 2; huge margins give 0 and x without overflow
    np.testing.assert_allclose(F.soft_margin_loss(np.array([0.0, 1e4, -1e4]), np.array([1.0, 1.0, 1.0]),
                                                  reduction="none").data, [np.log(2), 0.0, 1e4])
    # Poisson's Stirling term only where target > 1
    x, t = np.array([0.0, 0.0, 0.0]), np.array([0.0, 1.0, 3.0])
    full = F.poisson_nll_loss(x, t, full=True, reduction="none").data
    plain = F.poisson_nll_loss(x, t, reduction="none").data
    np.testing.assert_allclose(full - plain, [0.0, 0.0, 3 * np.log(3) - 3 + 0.5 * np.log(2 * np.pi * 3)])


def test_kinks_have_torch_gradients():
    torch = oracle("torch")
    # margin ranking and hinge exactly at their corner: clamp_min passes the gradient there
    x1, x2, y = np.array([1.0, 2.0]), np.array([1.0, 2.0]), np.array([1.0, -1.0])
    got, grads = _run_nk(lambda a, b, t: F.margin_ranking_loss(a, b, t, reduction="sum"), [x1, x2, y], [0, 1], 1.0)
    want, want_grads = _run_torch(torch, "margin_ranking_loss", [x1, x2, y], [0, 1], dict(reduction="sum"),
                                  False, 1.0)
    for g, w in zip(grads, want_grads):
        np.testing.assert_array_equal(g, w)
    x, t = np.array([1.0, 0.5]), np.array([-1.0, -1.0])
    _, (g,) = _run_nk(lambda a, b: F.hinge_embedding_loss(a, b, reduction="sum"), [x, t], [0], 1.0)
    _, (w,) = _run_torch(torch, "hinge_embedding_loss", [x, t], [0], dict(reduction="sum"), False, 1.0)
    np.testing.assert_array_equal(g, w)


# ---- modules -------------------------------------------------------------------------------------

MODULES = [
    ("TripletMarginLoss", dict(margin=0.5, p=1.0, swap=True), "triplet_margin_loss", 1),
    ("MarginRankingLoss", dict(margin=0.2), "margin_ranking_loss", 1),
    ("HingeEmbeddingLoss", dict(margin=0.5), "hinge_embedding_loss", 0),
    ("CosineEmbeddingLoss", dict(margin=-0.3), "cosine_embedding_loss", 1),
    ("PoissonNLLLoss", dict(log_input=False, full=True, eps=1e-3), "poisson_nll_loss", 2),
    ("GaussianNLLLoss", dict(full=True, eps=1e-3), "gaussian_nll_loss", 1),
    ("SoftMarginLoss", {}, "soft_margin_loss", 0),
    ("MultiLabelSoftMarginLoss", {}, "multilabel_soft_margin_loss", 0),
    ("MultiMarginLoss", dict(p=2, margin=0.5), "multi_margin_loss", 0),
]


@pytest.mark.parametrize("cls,opts,name,k", MODULES)
def test_modules_match_torch_modules(cls, opts, name, k):
    torch = oracle("torch")
    arrays, _, _ = CASES[name][k]
    for reduction in REDUCTIONS:
        ours = getattr(L, cls)(**opts, reduction=reduction)
        assert getattr(nk.nn, cls) is type(ours)
        theirs = getattr(torch.nn, cls)(**opts, reduction=reduction)
        got = ours(*arrays).data
        want = theirs(*[torch.tensor(a) for a in arrays]).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    assert repr(ours)


@pytest.mark.parametrize("cls", ["MultiMarginLoss", "MultiLabelSoftMarginLoss"])
def test_weighted_modules_load_a_torch_state_dict(cls):
    torch = oracle("torch")
    weight = np.array([0.5, 1.0, 2.0, 1.5, 0.25])
    theirs = getattr(torch.nn, cls)(weight=torch.tensor(weight))
    ours = getattr(L, cls)(weight=np.ones(5))
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    np.testing.assert_array_equal(ours.state_dict()["weight"], weight)
    name = "multi_margin_loss" if cls == "MultiMarginLoss" else "multilabel_soft_margin_loss"
    arrays = CASES[name][0][0]
    np.testing.assert_allclose(ours(*arrays).data, theirs(*[torch.tensor(a) for a in arrays]).numpy(),
                               rtol=1e-10)


# ---- errors ----------------------------------------------------------------------------------------

def test_bad_reduction_names_the_loss():
    for name, cases in CASES.items():
        arrays, _, opts = cases[0]
        arrays, opts, with_weight = _split(name, arrays, opts)
        with pytest.raises(ValueError, match=f"{name}: reduction must be one of"):
            _nk(name, arrays, dict(opts, reduction="avg"), with_weight)(*arrays)


def test_shape_errors_name_the_shapes_and_the_line():
    z = np.zeros
    with pytest.raises(nk.ShapeError, match=r"triplet_margin_loss: .*same number of dimensions.*test_losses_more"):
        F.triplet_margin_loss(z((3, 2)), z((3, 2)), z(2))
    with pytest.raises(nk.ShapeError, match=r"triplet_margin_loss: the shapes do not broadcast"):
        F.triplet_margin_loss(z((3, 2)), z((4, 2)), z((3, 2)))
    with pytest.raises(nk.ShapeError, match=r"margin_ranking_loss: .*same number of dimensions"):
        F.margin_ranking_loss(z((3, 1)), z(3), z(3))
    with pytest.raises(nk.ShapeError, match=r"hinge_embedding_loss: .*same shape.*\(3,\).*\(4,\)"):
        F.hinge_embedding_loss(z(3), z(4))
    with pytest.raises(nk.ShapeError, match=r"cosine_embedding_loss: the inputs must both be \(N, D\)"):
        F.cosine_embedding_loss(z((3, 2)), z((3, 2)), z(4))
    with pytest.raises(nk.ShapeError, match=r"cosine_embedding_loss: the target must be 0-D or 1-D"):
        F.cosine_embedding_loss(z((3, 2)), z((3, 2)), z((3, 2)))
    with pytest.raises(nk.ShapeError, match=r"poisson_nll_loss: .*same shape"):
        F.poisson_nll_loss(z((2, 3)), z((3, 2)))
    with pytest.raises(nk.ShapeError, match=r"gaussian_nll_loss: var of shape \(3,\) does not fit.*\(4, 3\)"):
        F.gaussian_nll_loss(z((4, 3)), z((4, 3)), np.ones(3))
    with pytest.raises(nk.ShapeError, match=r"gaussian_nll_loss: the shapes do not broadcast: input \(4, 3\), "
                                            r"target \(4, 4\)"):
        F.gaussian_nll_loss(z((4, 3)), z((4, 4)), np.ones((4, 3)))
    with pytest.raises(nk.ShapeError, match=r"gaussian_nll_loss: target of shape \(2, 4, 3\)"):
        F.gaussian_nll_loss(z((4, 3)), z((2, 4, 3)), np.ones((4, 3)))
    with pytest.raises(nk.ShapeError, match=r"multilabel_soft_margin_loss: weight of shape \(3,\)"):
        F.multilabel_soft_margin_loss(z((2, 5)), z((2, 5)), weight=np.ones(3))
    with pytest.raises(nk.ShapeError, match=r"multi_margin_loss: .*target must have shape \(4,\)"):
        F.multi_margin_loss(z((4, 3)), np.zeros(3, int))
    with pytest.raises(nk.ShapeError, match=r"multi_margin_loss: weight must have shape \(3,\)"):
        F.multi_margin_loss(z((4, 3)), np.zeros(4, int), weight=np.ones(4))


def test_value_errors():
    z = np.zeros
    with pytest.raises(ValueError, match=r"gaussian_nll_loss: var has negative entries"):
        F.gaussian_nll_loss(z(3), z(3), np.array([1.0, -0.5, 1.0]))
    with pytest.raises(ValueError, match=r"gaussian_nll_loss: var must not be negative"):
        F.gaussian_nll_loss(z(3), z(3), -1.0)
    with pytest.raises(ValueError, match=r"triplet_margin_loss: margin"):
        F.triplet_margin_loss(z(2), z(2), z(2), margin=0.0)
    with pytest.raises(ValueError, match=r"multi_margin_loss: only p = 1 and p = 2"):
        F.multi_margin_loss(z((2, 3)), np.zeros(2, int), p=3)
    with pytest.raises(IndexError, match=r"one_hot: class values must be in \[0, 3\)"):
        F.multi_margin_loss(z((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match=r"multi_margin_loss: the target must hold integer class indices"):
        F.multi_margin_loss(z((2, 3)), np.zeros(2))
    with pytest.raises(TypeError, match=r"soft_margin_loss: the input must be floating point"):
        F.soft_margin_loss(np.zeros(2, int), z(2))
    with pytest.raises(ValueError, match=r"TripletMarginLoss: margin"):
        L.TripletMarginLoss(margin=-1.0)
    with pytest.raises(ValueError, match=r"MultiMarginLoss: only p = 1 and p = 2"):
        L.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match=r"GaussianNLLLoss: reduction"):
        L.GaussianNLLLoss(reduction="avg")


def test_compiled_gradient_reuses_across_calls():
    # a traced (compiled) gradient of a loss, called again with new data, gives torch's numbers
    torch = oracle("torch")
    g = nk.grad(lambda a, b, v: F.gaussian_nll_loss(a, b, v, full=True), argnums=(0, 2))
    for seed in range(3):
        r = rng(seed)
        x, t, v = r.standard_normal((4, 3)), r.standard_normal((4, 3)), r.random((4, 3)) + 0.1
        gx, gv = g(x, t, v)
        _, (wx, wv) = _run_torch(torch, "gaussian_nll_loss", [x, t, v], [0, 2], dict(full=True), False, 1.0)
        np.testing.assert_allclose(gx, wx, rtol=1e-10)
        np.testing.assert_allclose(gv, wv, rtol=1e-10)


# ---- ctc_loss ------------------------------------------------------------------------------------

def _log_softmax(z):
    return z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)


CTC_CASES = [
    # logits (T, N, C), targets, input_lengths, target_lengths, blank
    (rng(3).standard_normal((8, 3, 5)), np.array([[1, 2, 2], [3, 1, 0], [4, 0, 0]]), [8, 6, 5], [3, 2, 1], 0),
    (rng(4).standard_normal((7, 2, 4)), np.array([3, 3, 1, 2]), [7, 7], [3, 1], 0),      # concatenated
    (rng(5).standard_normal((6, 2, 4)), np.array([[0, 1], [2, 2]]), [6, 4], [2, 0], 3),  # blank 3, empty target
    (rng(6).standard_normal((5, 4)), np.array([1, 2]), 5, 2, 0),                        # unbatched
]


def _ctc_torch(torch, logits, targets, il, tl, blank, reduction, zero_infinity=False):
    z = torch.tensor(logits, requires_grad=True)
    out = torch.nn.functional.ctc_loss(z.log_softmax(-1), torch.tensor(targets), torch.tensor(il), torch.tensor(tl),
                                       blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    out.backward(torch.ones_like(out))
    return out.detach().numpy(), z.grad.numpy()


def _ctc_ours(logits, targets, il, tl, blank, reduction, zero_infinity=False):
    z = nk.from_ndarray(logits).requires_grad()
    out = F.ctc_loss(F.log_softmax(z, -1), targets, il, tl, blank=blank, reduction=reduction,
                     zero_infinity=zero_infinity)
    out.forward()
    out.backward(np.ones(out.shape))
    return np.asarray(out.data), np.asarray(z.grad)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("k", range(len(CTC_CASES)))
def test_ctc_matches_torch_through_log_softmax(k, reduction):
    torch = oracle("torch")
    logits, targets, il, tl, blank = CTC_CASES[k]
    got, grad = _ctc_ours(logits, targets, il, tl, blank, reduction)
    want, want_grad = _ctc_torch(torch, logits, targets, il, tl, blank, reduction)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-12)


def test_ctc_gradient_is_the_derivative_and_torch_adds_exp_log_probs():
    """PyTorch's gradient w.r.t. log_probs is ours + exp(log_probs) inside each input length."""
    torch = oracle("torch")
    logits, targets, il, tl, blank = CTC_CASES[0]
    lp = _log_softmax(logits)
    got, (grad,) = _run_nk(lambda v: F.ctc_loss(v, targets, il, tl, reduction="sum"), [lp], [0], 1.0)
    x = torch.tensor(lp, requires_grad=True)
    torch.nn.functional.ctc_loss(x, torch.tensor(targets), torch.tensor(il), torch.tensor(tl),
                                 reduction="sum").backward()
    inside = (np.arange(lp.shape[0])[:, None] < np.array(il))[..., None]
    np.testing.assert_allclose(grad + np.exp(lp) * inside, x.grad.numpy(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("k", range(len(CTC_CASES)))
def test_ctc_finite_differences_first_and_second_order(k):
    logits, targets, il, tl, blank = CTC_CASES[k]
    check_grads(lambda v: F.ctc_loss(v, targets, il, tl, blank=blank, reduction="none" if k % 2 else "mean"),
                0.5 * logits, order=2, rtol=1e-5, atol=1e-7, imperative=False)


def test_ctc_closed_form_and_unreachable_targets():
    torch = oracle("torch")
    # two frames of uniform probabilities over {blank, a}: 3 of the 4 paths give "a"
    lp = np.log(np.full((2, 1, 2), 0.5))
    assert float(F.ctc_loss(lp, np.array([[1]]), [2], [1], reduction="sum").data) == pytest.approx(-np.log(0.75))
    # "aa" needs 3 frames (a, blank, a): with 2 it is unreachable: inf, or 0 with zero_infinity
    logits = rng(8).standard_normal((3, 2, 3))
    targets, il, tl = np.array([[1, 1], [2, 1]]), [2, 3], [2, 2]
    for zero_infinity in (False, True):
        for reduction in REDUCTIONS:
            got, grad = _ctc_ours(logits, targets, il, tl, 0, reduction, zero_infinity)
            want, want_grad = _ctc_torch(torch, logits, targets, il, tl, 0, reduction, zero_infinity)
            np.testing.assert_allclose(got, want, rtol=1e-10)
            if zero_infinity:
                np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-12)
            assert np.isfinite(grad).all()


def test_ctc_float32_module_and_errors():
    logits, targets, il, tl, blank = CTC_CASES[0]
    lp = _log_softmax(logits).astype(np.float32)
    got, (grad,) = _run_nk(lambda v: L.CTCLoss()(v, targets, il, tl), [lp], [0], np.float32(1.0))
    assert got.dtype == np.float32 and grad.dtype == np.float32
    assert float(got) == pytest.approx(float(F.ctc_loss(lp.astype(np.float64), targets, il, tl).data), rel=1e-5)
    assert nk.nn.CTCLoss is L.CTCLoss and "zero_infinity=False" in repr(L.CTCLoss())
    with pytest.raises(IndexError, match=r"ctc_loss: target labels must be in \[0, 5\) and not the blank \(0\)"):
        F.ctc_loss(lp, np.array([[1, 0, 2], [3, 1, 0], [4, 0, 0]]), il, tl)
    with pytest.raises(ValueError, match=r"ctc_loss: input_lengths must be in \[0, 8\]"):
        F.ctc_loss(lp, targets, [9, 6, 5], tl)
    with pytest.raises(ValueError, match=r"ctc_loss: target_lengths must be 3 integer"):
        F.ctc_loss(lp, targets, il, [3, 2])
    with pytest.raises(ValueError, match=r"ctc_loss: concatenated targets hold 4 labels"):
        F.ctc_loss(lp, np.array([1, 2, 3, 4]), il, tl)
    with pytest.raises(ValueError, match=r"ctc_loss: blank must be a class index in \[0, 5\)"):
        F.ctc_loss(lp, targets, il, tl, blank=5)
    with pytest.raises(nk.ShapeError, match=r"ctc_loss: log_probs must be \(T, N, C\)"):
        F.ctc_loss(lp[0, 0], targets, il, tl)
    with pytest.raises(ValueError, match="ctc_loss: reduction"):
        F.ctc_loss(lp, targets, il, tl, reduction="batchmean")


def test_ctc_in_a_traced_function():
    # targets closed over (constants of the program) or passed as arguments (new values on
    # each call of one compiled program); lengths must be known: as arguments they are refused
    logits, targets, il, tl, blank = CTC_CASES[0]
    other = np.array([[2, 2, 1], [1, 3, 0], [2, 0, 0]])
    unreachable = np.array([[2, 2, 2], [1, 3, 0], [2, 0, 0]])        # 2 _ 2 _ 2 needs 5 frames: has 8
    g = nk.value_and_grad(lambda v, t: F.ctc_loss(F.log_softmax(v, -1), t, il, tl, reduction="sum"), argnums=0)
    short = nk.value_and_grad(lambda v, t: F.ctc_loss(F.log_softmax(v[:4], -1), t, [4, 4, 4], tl, reduction="sum",
                                                       zero_infinity=True), argnums=0)
    for t in (targets, other, unreachable, targets):
        value, grad = g(logits, t)
        want, want_grad = _ctc_ours(logits, t, il, tl, 0, "sum")
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-14)
        c = nk.value_and_grad(lambda v: F.ctc_loss(F.log_softmax(v, -1), t, il, tl))
        np.testing.assert_allclose(c(logits)[0], _ctc_ours(logits, t, il, tl, 0, "mean")[0], rtol=1e-12)
        # 4 frames: "2 2 2" (needs 5) is unreachable, its loss 0 (zero_infinity) in the same program
        value, grad = short(logits, t)
        want, want_grad = _ctc_ours(logits[:4], t, [4, 4, 4], tl, 0, "none", zero_infinity=True)
        assert (want[0] == 0.0) == (t is unreachable)
        np.testing.assert_allclose(value, want.sum(), rtol=1e-12)
        np.testing.assert_allclose(grad[:4], want_grad, rtol=1e-10, atol=1e-14)
    with pytest.raises(IndexError, match="ctc_loss"):
        g(logits, np.array([[1, 2, 7], [3, 1, 0], [4, 0, 0]]))
    with pytest.raises(TypeError, match="ctc_loss: input_lengths must be known when the loss is built"):
        nk.grad(lambda v, n: F.ctc_loss(v, targets, n, tl), argnums=0)(logits, np.array(il))


@pytest.mark.parametrize("name", ["hinge_embedding_loss", "poisson_nll_loss", "multi_margin_loss",
                                  "cosine_embedding_loss", "margin_ranking_loss"])
def test_traced_targets_are_arguments_not_constants(name):
    """A compiled gradient called with new targets follows them (nothing read once at trace time)."""
    arrays, _, opts = CASES[name][0]
    opts = dict(opts, full=True) if name == "poisson_nll_loss" else opts
    *inputs, target = arrays
    other = np.roll(target, 1) * (2.0 if name == "poisson_nll_loss" else 1)
    f = getattr(F, name)
    g = nk.value_and_grad(lambda *vs: f(*vs, **opts), argnums=0)
    for t in (target, other, target):
        value, grad = g(*inputs, t)
        want, (want_grad,) = _run_nk(lambda *vs: f(*vs, **opts), [*inputs, t], [0], 1.0)
        np.testing.assert_allclose(value, want, rtol=1e-12)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)
