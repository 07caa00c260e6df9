"""Optimizers, penalties and gradient clipping.

Every trajectory is checked against a NumPy reference written here from PyTorch's
documented update rules, and against torch.optim itself when torch is importable.
"""
import math

import numpy as np
import pytest

import neuronika as nk
from neuronika.optim.optimizers import SGD, Adagrad, Adam, AdamW, AMSGrad, RMSprop, Adamax
from neuronika.optim.penalty import L1, L2, ElasticNet
from neuronika.optim.clip import clip_grad_norm_, clip_grad_value_
from neuronika.testing import oracle

W0 = np.array([[1.0, -2.0, 0.5], [-0.3, 1.5, -1.0]], dtype=np.float32)
B0 = np.array([0.2, -0.7, 1.1], dtype=np.float32)
C = np.array([[1.0, 0.5, 2.0], [3.0, 0.25, 1.5]], dtype=np.float32)
D = np.array([0.3, -1.2, 0.8], dtype=np.float32)
STEPS = 5


# ---- the problem: loss = sum(C * w * w) + sum(D * b); grads 2 C w and D -------------------------

def make(w0=W0, b0=B0):
    return (nk.from_ndarray(np.array(w0, copy=True)).requires_grad(),
            nk.from_ndarray(np.array(b0, copy=True)).requires_grad())


def backward(w, b):
    loss = (w * w * nk.from_ndarray(C)).sum() + (b * nk.from_ndarray(D)).sum()
    loss.backward()


def run(opt, w, b, steps=STEPS):
    for _ in range(steps):
        opt.zero_grad()
        backward(w, b)
        opt.step()
    return w.data.copy(), b.data.copy()


def ref_grad(i, x):
    return 2.0 * C.astype(np.float64) * x if i == 0 else D.astype(np.float64)


# ---- hand-written references (float64), from the documented formulas ------------------------------
# Each takes one parameter x, its gradient g, its state dict st, the hyper-parameters h and
# the step number t (from 1), and returns the new x.

def ref_sgd(x, g, st, h, t):
    g = g + h.get("weight_decay", 0) * x
    mu, damp = h.get("momentum", 0), h.get("dampening", 0)
    if mu:
        st["b"] = g.copy() if t == 1 else mu * st["b"] + (1 - damp) * g
        g = g + mu * st["b"] if h.get("nesterov") else st["b"]
    return x - h["lr"] * g


def ref_adagrad(x, g, st, h, t):
    lr, decay, eps = h.get("lr", 1e-2), h.get("lr_decay", 0), h.get("eps", 1e-10)
    g = g + h.get("weight_decay", 0) * x
    st.setdefault("s", np.full(x.shape, h.get("initial_accumulator_value", 0.0)))
    st["s"] = st["s"] + g * g
    clr = lr / (1 + (t - 1) * decay)
    return x - clr * g / (np.sqrt(st["s"]) + eps)


def ref_adam(x, g, st, h, t, decoupled=False):
    lr, (b1, b2), eps = h.get("lr", 1e-3), h.get("betas", (0.9, 0.999)), h.get("eps", 1e-8)
    wd = h.get("weight_decay", 1e-2 if decoupled else 0)
    if decoupled:
        x = x * (1 - lr * wd)
    else:
        g = g + wd * x
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    v = st["v"]
    if h.get("amsgrad"):
        st["vmax"] = np.maximum(st.get("vmax", 0.0), v)
        v = st["vmax"]
    mhat = st["m"] / (1 - b1 ** t)
    return x - lr * mhat / (np.sqrt(v) / math.sqrt(1 - b2 ** t) + eps)


def ref_adamw(x, g, st, h, t):
    return ref_adam(x, g, st, h, t, decoupled=True)


def ref_amsgrad(x, g, st, h, t):
    return ref_adam(x, g, st, {**h, "amsgrad": True}, t)


def ref_rmsprop(x, g, st, h, t):
    lr, alpha, eps, mu = h.get("lr", 1e-2), h.get("alpha", 0.99), h.get("eps", 1e-8), h.get("momentum", 0)
    g = g + h.get("weight_decay", 0) * x
    st["s"] = alpha * st.get("s", 0.0) + (1 - alpha) * g * g
    if h.get("centered"):
        st["a"] = alpha * st.get("a", 0.0) + (1 - alpha) * g
        denom = np.sqrt(st["s"] - st["a"] ** 2) + eps
    else:
        denom = np.sqrt(st["s"]) + eps
    if mu > 0:
        st["buf"] = mu * st.get("buf", 0.0) + g / denom
        return x - lr * st["buf"]
    return x - lr * g / denom


def ref_adamax(x, g, st, h, t):
    lr, (b1, b2), eps = h.get("lr", 2e-3), h.get("betas", (0.9, 0.999)), h.get("eps", 1e-8)
    g = g + h.get("weight_decay", 0) * x
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["u"] = np.maximum(b2 * st.get("u", 0.0), np.abs(g) + eps)
    return x - lr / (1 - b1 ** t) * st["m"] / st["u"]


REFS = {SGD: ref_sgd, Adagrad: ref_adagrad, Adam: ref_adam, AdamW: ref_adamw,
        AMSGrad: ref_amsgrad, RMSprop: ref_rmsprop, Adamax: ref_adamax}

CASES = [
    (SGD, dict(lr=0.05)),
    (SGD, dict(lr=0.05, momentum=0.9)),
    (SGD, dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.1)),
    (SGD, dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.05)),
    (Adagrad, dict()),
    (Adagrad, dict(lr=0.1, lr_decay=0.05, weight_decay=0.1, initial_accumulator_value=0.2)),
    (Adam, dict()),
    (Adam, dict(lr=0.01, betas=(0.8, 0.95), weight_decay=0.1)),
    (Adam, dict(lr=0.01, amsgrad=True)),
    (AdamW, dict()),
    (AdamW, dict(lr=0.02, weight_decay=0.3, amsgrad=True)),
    (AMSGrad, dict(lr=0.01, weight_decay=0.05)),
    (RMSprop, dict()),
    (RMSprop, dict(lr=0.01, momentum=0.9, weight_decay=0.1)),
    (RMSprop, dict(lr=0.005, alpha=0.9, centered=True, momentum=0.5)),
    (Adamax, dict()),
    (Adamax, dict(lr=0.01, betas=(0.7, 0.9), weight_decay=0.2)),
]
IDS = [f"{cls.__name__}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'defaults'}"
       for cls, kw in CASES]


def reference(cls, kw, steps=STEPS, group_lrs=None):
    """The reference trajectory of (w, b); group_lrs gives each parameter its own lr."""
    xs = [W0.astype(np.float64), B0.astype(np.float64)]
    hs = [kw, kw] if group_lrs is None else [{**kw, "lr": lr} for lr in group_lrs]
    states = [{}, {}]
    for t in range(1, steps + 1):
        xs = [REFS[cls](x, ref_grad(i, x), st, h, t)
              for i, (x, st, h) in enumerate(zip(xs, states, hs))]
    return xs


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_trajectory_matches_reference(cls, kw):
    w, b = make()
    opt = cls([w, b], **kw)
    got = run(opt, w, b)
    want = reference(cls, kw)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-6)
    assert w.data.dtype == np.float32


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_trajectory_matches_torch(cls, kw):
    torch = oracle("torch")
    w, b = make()
    got = run(cls([w, b], **kw), w, b)
    tw = torch.tensor(W0, requires_grad=True)
    tb = torch.tensor(B0, requires_grad=True)
    tkw = dict(kw)
    tcls = getattr(torch.optim, cls.__name__, None)
    if cls is AMSGrad:
        tcls, tkw["amsgrad"] = torch.optim.Adam, True
    topt = tcls([tw, tb], **tkw)
    for _ in range(STEPS):
        topt.zero_grad()
        ((tw * tw * torch.tensor(C)).sum() + (tb * torch.tensor(D)).sum()).backward()
        topt.step()
    np.testing.assert_allclose(got[0], tw.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got[1], tb.detach().numpy(), rtol=1e-5, atol=1e-6)


GROUP_CASES = [(SGD, dict(lr=0.05, momentum=0.9)), (SGD, dict(lr=0.05)), (Adam, dict()), (RMSprop, dict(centered=True)),
               (Adagrad, dict(lr_decay=0.1)), (AdamW, dict()), (Adamax, dict())]


@pytest.mark.parametrize("cls,kw", GROUP_CASES, ids=[c.__name__ for c, _ in GROUP_CASES])
def test_param_groups_with_their_own_lr(cls, kw):
    w, b = make()
    default_lr = kw.get("lr", cls([make()[0]], **({"lr": 0.05} if cls is SGD else {})).lr)
    opt = cls([{"params": [w], "lr": 0.1}, {"params": b}], **kw)
    assert opt.param_groups[0]["lr"] == 0.1 and opt.param_groups[1]["lr"] == default_lr
    got = run(opt, w, b)
    want = reference(cls, kw, group_lrs=[0.1, default_lr])
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=2e-5, atol=2e-6)


def test_group_overrides_other_options():
    w, b = make()
    opt = SGD([{"params": [w], "momentum": 0.9, "weight_decay": 0.1}, {"params": [b]}], lr=0.05)
    opt.zero_grad()
    backward(w, b)
    opt.step()
    np.testing.assert_allclose(w.data, W0 - 0.05 * (2 * C * W0 + 0.1 * W0), rtol=1e-6)
    np.testing.assert_allclose(b.data, B0 - 0.05 * D, rtol=1e-6)
    assert set(opt.state) == {opt.param_groups[0]["params"][0]}


def test_plain_sgd_beside_a_group_with_momentum():
    # plain SGD runs its own loop (no momentum, decay or penalty in any group); a group with
    # momentum sends every group through the general update, with the same numbers
    for momentum in (0.0, 0.9):
        w, b = make()
        opt = SGD([{"params": [w], "lr": 0.1}, {"params": [b], "momentum": momentum}], lr=0.05)
        arrays = [w.data, b.data]
        for _ in range(2):
            opt.zero_grad()
            backward(w, b)
            opt.step()
        assert w.data is arrays[0] and b.data is arrays[1]          # in place
        w1 = W0 - 0.1 * 2 * C * W0
        np.testing.assert_allclose(w.data, w1 - 0.1 * 2 * C * w1, rtol=1e-6)
        np.testing.assert_allclose(b.data, B0 - 0.05 * D - 0.05 * (1 + momentum) * D, rtol=1e-6)


def test_model_parameters_and_in_place():
    w, b = make()
    loss = (w * w * nk.from_ndarray(C)).sum() + (b * nk.from_ndarray(D)).sum()
    params = loss.parameters()
    arrays = [p.data for p in params]
    opt = Adam(params, lr=0.1)
    loss.backward()
    opt.step()
    assert all(p.data is a for p, a in zip(params, arrays))     # updated in place
    assert not np.array_equal(w.data, W0) and not np.array_equal(b.data, B0)


@pytest.mark.parametrize("cls,kw", [(SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.1)), (SGD, dict(lr=0.1)),
                                    (Adam, dict(weight_decay=0.1)), (AdamW, dict()),
                                    (RMSprop, dict(weight_decay=0.1)), (Adagrad, dict(weight_decay=0.1)),
                                    (Adamax, dict(weight_decay=0.1))],
                         ids=lambda v: v.__name__ if isinstance(v, type) else "")
def test_parameters_without_gradient_are_skipped(cls, kw):
    w, b = make()
    extra = nk.from_ndarray(np.array([1.0, -1.0], dtype=np.float32)).requires_grad()
    opt = cls([w, b, extra], **kw)
    run(opt, w, b, steps=2)
    np.testing.assert_array_equal(extra.data, [1.0, -1.0])
    assert all(p._node is not extra._node for p in opt.state)


# ---- state dicts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_state_dict_round_trip_resumes_exactly(cls, kw):
    w, b = make()
    opt = cls([{"params": [w]}, {"params": [b], "lr": 0.02}], **kw)
    run(opt, w, b, steps=3)
    saved = opt.state_dict()
    saved_w, saved_b = w.data.copy(), b.data.copy()
    a = run(opt, w, b, steps=1)

    w2, b2 = make(saved_w, saved_b)
    fresh_kw = dict(kw, lr=0.5) if "lr" in kw or cls is SGD else kw   # load must restore the lr
    opt2 = cls([{"params": [w2]}, {"params": [b2]}], **fresh_kw)
    opt2.load_state_dict(saved)
    assert opt2.param_groups[1]["lr"] == 0.02
    again = run(opt2, w2, b2, steps=1)
    np.testing.assert_array_equal(a[0], again[0])
    np.testing.assert_array_equal(a[1], again[1])


def test_state_dict_is_a_copy():
    w, b = make()
    opt = Adam([w, b])
    run(opt, w, b, steps=2)
    saved = opt.state_dict()
    before = saved["state"][0]["exp_avg"].copy()
    run(opt, w, b, steps=1)
    np.testing.assert_array_equal(saved["state"][0]["exp_avg"], before)
    assert saved["state"][0]["step"] == 2


# ---- penalties -----------------------------------------------------------------------------------

def test_penalty_gradients():
    x = np.array([-2.0, 0.0, 3.0], dtype=np.float32)
    np.testing.assert_allclose(L1(0.5).gradient(x), [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(L2(0.5).gradient(x), [-2.0, 0.0, 3.0])
    np.testing.assert_allclose(ElasticNet(0.5, 0.25).gradient(x), [-1.5, 0.0, 2.0])
    assert L2(0.5).gradient(x).dtype == np.float32
    assert L1(0.5)(x) == pytest.approx(2.5) and L2(0.5)(x) == pytest.approx(6.5)
    for bad in (-1, float("nan"), "a"):
        with pytest.raises(ValueError, match="L1"):
            L1(bad)
    with pytest.raises(ValueError, match="ElasticNet.*l2"):
        ElasticNet(0.1, -0.1)


@pytest.mark.parametrize("penalty", [L1(0.3), L2(0.2), ElasticNet(0.3, 0.2)], ids=repr)
def test_penalty_changes_update_not_grad(penalty):
    w, b = make()
    opt = SGD([w, b], lr=0.1, penalty=penalty)
    backward(w, b)
    grads = [w.grad.copy(), b.grad.copy()]
    opt.step()
    np.testing.assert_array_equal(w.grad, grads[0])        # the stored gradient is untouched
    np.testing.assert_array_equal(b.grad, grads[1])
    np.testing.assert_allclose(w.data, W0 - 0.1 * (grads[0] + penalty.gradient(W0)), rtol=1e-6)
    np.testing.assert_allclose(b.data, B0 - 0.1 * (grads[1] + penalty.gradient(B0)), rtol=1e-6)


@pytest.mark.parametrize("cls", [Adam, RMSprop, Adagrad, Adamax, SGD])
def test_l2_penalty_equals_twice_weight_decay(cls):
    lr = {"lr": 0.05} if cls is SGD else {}
    w, b = make()
    p_run = run(cls([w, b], penalty=L2(0.1), **lr), w, b)
    w, b = make()
    wd_run = run(cls([w, b], weight_decay=0.2, **lr), w, b)
    for x, y in zip(p_run, wd_run):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_penalty_per_group():
    w, b = make()
    opt = SGD([{"params": [w], "penalty": L1(1.0)}, {"params": [b]}], lr=0.1)
    backward(w, b)
    opt.step()
    np.testing.assert_allclose(w.data, W0 - 0.1 * (2 * C * W0 + np.sign(W0)), rtol=1e-6)
    np.testing.assert_allclose(b.data, B0 - 0.1 * D, rtol=1e-6)


# ---- errors and the lr property ------------------------------------------------------------------

BAD = [
    (SGD, dict(lr=-0.1), "SGD.*-0.1"),
    (SGD, dict(lr=0.1, momentum=-0.5), "SGD.*momentum.*-0.5"),
    (SGD, dict(lr=0.1, weight_decay=-1), "SGD.*weight_decay.*-1"),
    (SGD, dict(lr=0.1, nesterov=True), "SGD.*Nesterov"),
    (SGD, dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "SGD.*Nesterov"),
    (SGD, dict(lr=0.1, penalty="l2"), "SGD.*penalty"),
    (Adagrad, dict(lr_decay=-1), "Adagrad.*lr_decay.*-1"),
    (Adagrad, dict(initial_accumulator_value=-0.5), "Adagrad.*initial_accumulator_value"),
    (Adagrad, dict(eps=-1e-3), "Adagrad.*eps"),
    (Adam, dict(lr=-1e-3), "Adam.*learning rate.*-0.001"),
    (Adam, dict(betas=(1.0, 0.999)), "Adam.*beta1.*1.0"),
    (Adam, dict(betas=(0.9, -0.1)), "Adam.*beta2.*-0.1"),
    (Adam, dict(betas=0.9), "Adam.*betas"),
    (Adam, dict(eps=-1.0), "Adam.*eps"),
    (Adam, dict(weight_decay=-0.1), "Adam.*weight_decay"),
    (AdamW, dict(weight_decay=-0.1), "AdamW.*weight_decay"),
    (AMSGrad, dict(lr=-1), "AMSGrad.*-1"),
    (RMSprop, dict(alpha=-0.5), "RMSprop.*alpha.*-0.5"),
    (RMSprop, dict(momentum=-0.5), "RMSprop.*momentum"),
    (Adamax, dict(betas=(0.9, 1.5)), "Adamax.*beta2.*1.5"),
    (Adamax, dict(lr=float("nan")), "Adamax"),
]


@pytest.mark.parametrize("cls,kw,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_hyper_parameters(cls, kw, match):
    w, _ = make()
    with pytest.raises(ValueError, match=match):
        cls([w], **kw)


def test_bad_group_values_and_missing_lr():
    w, b = make()
    with pytest.raises(ValueError, match="Adam.*-0.5"):
        Adam([{"params": [w], "lr": -0.5}, {"params": [b]}])
    with pytest.raises(TypeError, match="SGD.*lr"):
        SGD([w])
    with pytest.raises(ValueError, match="unknown"):
        Adam([{"params": [w], "momentum": 0.9}])


def test_lr_property():
    w, b = make()
    opt = Adam([{"params": [w], "lr": 0.1}, {"params": [b]}])
    assert opt.lr == 0.1
    opt.lr = 0.5
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    backward(w, b)
    opt.step()       # first Adam step moves each entry by about lr
    np.testing.assert_allclose(np.abs(b.data - B0), 0.5, rtol=1e-4)


def test_defaults_match_pytorch():
    w, _ = make()
    assert Adam([w]).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                      amsgrad=False, penalty=None)
    assert AdamW([w]).defaults["weight_decay"] == 1e-2
    assert AMSGrad([w]).defaults["amsgrad"] is True and isinstance(AMSGrad([w]), Adam)
    assert Adagrad([w]).defaults == dict(lr=1e-2, lr_decay=0, weight_decay=0,
                                         initial_accumulator_value=0, eps=1e-10, penalty=None)
    assert RMSprop([w]).defaults == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0,
                                         momentum=0, centered=False, penalty=None)
    assert Adamax([w]).defaults == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0,
                                        penalty=None)
    assert SGD([w], lr=0.1).defaults == dict(lr=0.1, momentum=0, dampening=0, nesterov=False,
                                             weight_decay=0, penalty=None)


def test_zero_grad():
    w, b = make()
    opt = SGD([w, b], lr=0.1)
    backward(w, b)
    opt.zero_grad()
    assert w._node.grad is None and b._node.grad is None
    opt.step()                          # nothing has a gradient: nothing moves
    np.testing.assert_array_equal(w.data, W0)


# ---- clipping ------------------------------------------------------------------------------------

def grads_345():
    a = nk.from_ndarray(np.zeros(2, dtype=np.float32)).requires_grad()
    c = nk.from_ndarray(np.zeros(1, dtype=np.float32)).requires_grad()
    a.grad = [3.0, -4.0]
    c.grad = [12.0]
    return a, c


def test_clip_grad_norm_l2():
    a, c = grads_345()
    total = clip_grad_norm_([a, c], 6.5)
    assert isinstance(total, float) and total == pytest.approx(13.0)
    scale = 6.5 / (13.0 + 1e-6)
    np.testing.assert_allclose(a.grad, [3 * scale, -4 * scale], rtol=1e-6)
    np.testing.assert_allclose(c.grad, [12 * scale], rtol=1e-6)


def test_clip_grad_norm_other_norms_and_no_op():
    a, c = grads_345()
    assert clip_grad_norm_([a, c], 100.0) == pytest.approx(13.0)
    np.testing.assert_array_equal(a.grad, [3.0, -4.0])          # under the limit: unchanged
    assert clip_grad_norm_([a, c], 6.0, norm_type=float("inf")) == pytest.approx(12.0)
    np.testing.assert_allclose(c.grad, [12 * 6.0 / (12.0 + 1e-6)], rtol=1e-6)
    a, c = grads_345()
    assert clip_grad_norm_([a, c], 1.0, norm_type=1) == pytest.approx(19.0)
    np.testing.assert_allclose(a.grad, np.array([3.0, -4.0]) / (19.0 + 1e-6), rtol=1e-6)
    a, c = grads_345()
    assert clip_grad_norm_(a, 1.0, norm_type="inf") == pytest.approx(4.0)   # a single parameter


def test_clip_skips_missing_gradients_and_checks_arguments():
    a, _ = grads_345()
    fresh = nk.from_ndarray(np.ones(3, dtype=np.float32)).requires_grad()
    assert clip_grad_norm_([fresh], 1.0) == 0.0
    assert fresh._node.grad is None
    assert clip_grad_norm_([a, fresh], 100.0) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="max_norm"):
        clip_grad_norm_([a], -1.0)
    with pytest.raises(ValueError, match="norm_type"):
        clip_grad_norm_([a], 1.0, norm_type=0)
    with pytest.raises(ValueError, match="clip_value"):
        clip_grad_value_([a], -1.0)
    a.grad = [np.inf, 1.0]
    with pytest.raises(RuntimeError, match="non|inf"):
        clip_grad_norm_([a], 1.0, error_if_nonfinite=True)


def test_clip_grad_value():
    a, c = grads_345()
    clip_grad_value_([a, c], 3.5)
    np.testing.assert_array_equal(a.grad, [3.0, -3.5])
    np.testing.assert_array_equal(c.grad, [3.5])


def test_clip_matches_torch():
    torch = oracle("torch")
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal(5).astype(np.float32)]
    for norm_type in (2.0, 1.0, 3.0, float("inf")):
        ps = [nk.from_ndarray(np.zeros_like(g)).requires_grad() for g in arrays]
        ts = [torch.zeros(g.shape, requires_grad=True) for g in arrays]
        for p, t, g in zip(ps, ts, arrays):
            p.grad = g
            t.grad = torch.tensor(g)
        total = clip_grad_norm_(ps, 0.7, norm_type=norm_type)
        ttotal = torch.nn.utils.clip_grad_norm_(ts, 0.7, norm_type=norm_type)
        assert total == pytest.approx(float(ttotal), rel=1e-5)
        for p, t in zip(ps, ts):
            np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-5, atol=1e-7)


# ---- atomic loads and clear errors (issue 11) -----------------------------------------------------

def test_load_state_dict_names_what_is_missing():
    w, b = make()
    opt = SGD([w, b], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD\.load_state_dict: the state dict has no 'state' and no "
                                         r"'param_groups' entry"):
        opt.load_state_dict({})
    with pytest.raises(ValueError, match=r"no 'state' entry"):
        opt.load_state_dict({"param_groups": opt.state_dict()["param_groups"]})


@pytest.mark.parametrize("edit, words", [
    (lambda s: s["state"][1].__setitem__("exp_avg", np.zeros(7, np.float32)), ["exp_avg", "parameter 1", "(7,)"]),
    (lambda s: s["state"][1].__setitem__("exp_avg", np.zeros(3, np.complex64)), ["exp_avg", "complex64"]),
    (lambda s: s["state"].__setitem__(5, {"step": 1}), ["parameter 5", "0 to 1"]),
    (lambda s: s["param_groups"][0].__setitem__("lr", -1.0), ["group 0", "learning rate"]),
    (lambda s: s["state"][0].__setitem__("step", -2), ["step", "parameter 0"]),
])
def test_a_bad_optimizer_state_changes_nothing(edit, words):
    w, b = make()
    opt = Adam([w, b], lr=0.1)
    backward(w, b)
    opt.step()
    before = opt.state_dict()
    saved = opt.state_dict()
    saved["param_groups"][0]["lr"] = 0.5           # a good change before the bad one
    for entries in saved["state"].values():
        entries["exp_avg"] = entries["exp_avg"] + 1
    edit(saved)
    with pytest.raises((ValueError, TypeError)) as info:
        opt.load_state_dict(saved)
    for word in words:
        assert word in str(info.value), str(info.value)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for i, entries in before["state"].items():
        for key, value in entries.items():
            np.testing.assert_array_equal(after["state"][i][key], value)


def test_a_parameter_given_twice_is_named():
    w, b = make()
    with pytest.raises(ValueError, match=r"SGD: a parameter \(shape \(2, 3\)\) appears twice in parameter group 0"):
        SGD([w, w], lr=0.1)
    with pytest.raises(ValueError, match=r"appears in parameter groups 0 and 1"):
        Adam([{"params": [w, b]}, {"params": [b]}])


@pytest.mark.parametrize("name, options", [
    ("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "weight_decay": 0.1}), ("Adam", {"weight_decay": 0.1}), ("AdamW", {}),
    ("Adagrad", {"weight_decay": 0.1}), ("RMSprop", {"weight_decay": 0.1, "momentum": 0.9}),
    ("Adamax", {"weight_decay": 0.1})])
def test_a_step_leaves_the_gradient_as_backward_gave_it(name, options):
    """Updates that only read the gradient read p.grad itself (no copy); those that add into it
    (weight decay, Nesterov) work on a copy: p.grad never changes."""
    w = nk.from_ndarray(np.array([1.0, -2.0, 0.5])).requires_grad()
    opt = getattr(nk.optim, name)([w], **options)
    for _ in range(3):
        opt.zero_grad()
        (w * w * w).sum().backward()
        before = w.grad.copy()
        opt.step()
        np.testing.assert_array_equal(w.grad, before)
