"""Learning-rate schedulers: exact values, hand-computed formulas, PyTorch parity,
chaining, parameter groups, state dicts, ReduceLROnPlateau and argument errors."""
import math
import pickle

import numpy as np
import pytest

import neuronika as nk
from neuronika.optim import Optimizer
from neuronika.optim.lr_scheduler import (CosineAnnealingLR, ExponentialLR, LambdaLR, LRScheduler,
                                          MultiplicativeLR, MultiStepLR, OneCycleLR,
                                          ReduceLROnPlateau, StepLR)
from neuronika.testing import oracle


def make_opt(*lrs, **extra):
    """A base Optimizer with one group per lr (each with one small parameter)."""
    lrs = lrs or (1.0,)
    groups = [{"params": [nk.zeros(2).requires_grad()], "lr": lr, **extra} for lr in lrs]
    return Optimizer(groups, {"lr": lrs[0], **extra})


def run(sched, steps):
    """The lr vectors after construction and after each of ``steps`` steps."""
    out = [sched.get_last_lr()]
    for _ in range(steps):
        sched.step()
        out.append(sched.get_last_lr())
    return out


# ---- known exact values ---------------------------------------------------------------------------------
def test_steplr_doubles_exactly():
    opt = make_opt(1.0)
    sched = StepLR(opt, step_size=1, gamma=2)
    assert sched.get_last_lr() == [1.0] and sched.last_epoch == 0
    for epoch in range(1, 6):
        sched.step()
        assert sched.last_epoch == epoch
        assert sched.get_last_lr() == [2.0 ** epoch]
        assert opt.lr == 2.0 ** epoch


def test_exponential_exact():
    opt = make_opt(1.0)
    sched = ExponentialLR(opt, gamma=5)
    for _ in range(5):
        sched.step()
    assert opt.lr == 5 ** 5 and sched.get_last_lr() == [3125.0]


def test_multiplicative_exact():
    opt = make_opt(1.0)
    sched = MultiplicativeLR(opt, lambda t: t)
    for _ in range(5):
        sched.step()
    assert opt.lr == 120 and sched.get_last_lr() == [120]


# ---- formulas ------------------------------------------------------------------------------------------
def test_lambdalr_formula_and_list_of_lambdas():
    opt = make_opt(1.0, 0.5)
    sched = LambdaLR(opt, [lambda t: 0.9 ** t, lambda t: 1.0 / (t + 1)])
    got = run(sched, 12)
    want = [[0.9 ** t, 0.5 / (t + 1)] for t in range(13)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_multiplicative_formula():
    opt = make_opt(2.0)
    sched = MultiplicativeLR(opt, lambda t: 0.95)
    got = run(sched, 15)
    np.testing.assert_allclose(got, [[2.0 * 0.95 ** t] for t in range(16)], rtol=1e-12)


def test_steplr_formula():
    opt = make_opt(0.1, 1.0)
    got = run(StepLR(opt, step_size=3, gamma=0.5), 15)
    want = [[b * 0.5 ** (t // 3) for b in (0.1, 1.0)] for t in range(16)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_multisteplr_formula_with_repeated_milestone():
    opt = make_opt(1.0)
    got = run(MultiStepLR(opt, milestones=[8, 3, 8], gamma=0.1), 12)
    want = [[0.1 ** ((t >= 3) + 2 * (t >= 8))] for t in range(13)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_exponential_formula():
    opt = make_opt(0.3, 3.0)
    got = run(ExponentialLR(opt, gamma=0.8), 15)
    np.testing.assert_allclose(got, [[0.3 * 0.8 ** t, 3.0 * 0.8 ** t] for t in range(16)], rtol=1e-12)


def test_cosine_formula_including_periodic_restart():
    base, eta, T = 1.0, 0.1, 5
    opt = make_opt(base, 2.0)
    got = run(CosineAnnealingLR(opt, T_max=T, eta_min=eta), 18)
    want = [[eta + (b - eta) * (1 + math.cos(math.pi * t / T)) / 2 for b in (base, 2.0)]
            for t in range(19)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    assert got[T][0] == pytest.approx(eta)


def onecycle_reference(t, total, max_lr, pct, div, final_div, strategy="cos", three_phase=False):
    init = max_lr / div
    low = init / final_div
    def anneal(a, b, p):
        if strategy == "cos":
            return b + (a - b) / 2 * (math.cos(math.pi * p) + 1)
        return a + (b - a) * p
    e1 = pct * total - 1
    if not three_phase:
        if t <= e1:
            return anneal(init, max_lr, t / e1)
        return anneal(max_lr, low, (t - e1) / (total - 1 - e1))
    e2 = 2 * pct * total - 2
    if t <= e1:
        return anneal(init, max_lr, t / e1)
    if t <= e2:
        return anneal(max_lr, init, (t - e1) / (e2 - e1))
    return anneal(init, low, (t - e2) / (total - 1 - e2))


@pytest.mark.parametrize("strategy", ["cos", "linear"])
@pytest.mark.parametrize("three_phase", [False, True])
def test_onecycle_formula(strategy, three_phase):
    total = 20
    opt = make_opt(123.0)                               # the starting lr is overwritten
    sched = OneCycleLR(opt, max_lr=2.0, total_steps=total, pct_start=0.3, anneal_strategy=strategy,
                       div_factor=25, final_div_factor=1e4, three_phase=three_phase)
    got = [v[0] for v in run(sched, total - 1)]
    want = [onecycle_reference(t, total, 2.0, 0.3, 25, 1e4, strategy, three_phase)
            for t in range(total)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(2.0 / 25)
    assert got[-1] == pytest.approx(2.0 / 25 / 1e4)
    assert max(got) == pytest.approx(2.0)
    sched.step()                                        # step == total_steps is still allowed
    with pytest.raises(ValueError, match="total_steps"):
        sched.step()


def test_onecycle_epochs_times_steps_and_per_group_max_lr():
    opt = make_opt(1.0, 1.0)
    sched = OneCycleLR(opt, max_lr=[1.0, 4.0], epochs=2, steps_per_epoch=5)
    assert sched.total_steps == 10
    got = np.array(run(sched, 9))
    np.testing.assert_allclose(got[:, 1], 4 * got[:, 0], rtol=1e-12)


def test_onecycle_cycles_momentum_when_the_optimizer_has_it():
    opt = make_opt(1.0, momentum=0.9)
    sched = OneCycleLR(opt, max_lr=1.0, total_steps=10)
    moms = [opt.param_groups[0]["momentum"]]
    for _ in range(9):
        sched.step()
        moms.append(opt.param_groups[0]["momentum"])
    assert moms[0] == pytest.approx(0.95)
    assert min(moms) == pytest.approx(0.85)
    assert moms[-1] == pytest.approx(0.95)
    # without momentum options nothing is cycled and nothing fails
    plain = make_opt(1.0)
    OneCycleLR(plain, max_lr=1.0, total_steps=10).step()
    assert "momentum" not in plain.param_groups[0]


# ---- chaining, groups, generic optimizer subclass -------------------------------------------------------
def test_chaining_two_schedulers_multiplies():
    opt = make_opt(1.0)
    s1 = ExponentialLR(opt, gamma=0.9)
    s2 = StepLR(opt, step_size=3, gamma=0.1)
    lrs = [opt.lr]
    for _ in range(10):
        s1.step()
        s2.step()
        lrs.append(opt.lr)
    want = [0.9 ** t * 0.1 ** (t // 3) for t in range(11)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)
    assert s2.get_last_lr() == [lrs[-1]]
    assert s1.base_lrs == s2.base_lrs == [1.0]


def test_chaining_with_cosine():
    opt = make_opt(1.0)
    s1 = CosineAnnealingLR(opt, T_max=10)
    s2 = MultiStepLR(opt, milestones=[4], gamma=0.5)
    lrs = [opt.lr]
    for _ in range(8):
        s1.step()
        s2.step()
        lrs.append(opt.lr)
    want = [(1 + math.cos(math.pi * t / 10)) / 2 * (0.5 if t >= 4 else 1.0) for t in range(9)]
    np.testing.assert_allclose(lrs, want, rtol=1e-9)


class TinySGD(Optimizer):
    def __init__(self, params, lr=0.1):
        super().__init__(params, {"lr": lr})

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.data = p.data - group["lr"] * self.gradient(p, group)


def test_works_with_an_optimizer_subclass_and_initial_lr_recorded():
    opt = TinySGD([nk.zeros(3).requires_grad()], lr=0.5)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.5
    for _ in range(4):
        opt.step()
        sched.step()
    assert opt.lr == pytest.approx(0.125)


def test_groups_keep_their_own_base_lrs():
    opt = make_opt(1.0, 0.01, 100.0)
    sched = StepLR(opt, step_size=2, gamma=0.1)
    assert sched.base_lrs == [1.0, 0.01, 100.0]
    for _ in range(4):
        sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), [0.01, 0.0001, 1.0], rtol=1e-12)
    assert [g["lr"] for g in opt.param_groups] == sched.get_last_lr()


def test_get_last_lr_returns_a_copy():
    opt = make_opt(1.0)
    sched = ExponentialLR(opt, gamma=0.5)
    sched.get_last_lr().append(99)
    assert sched.get_last_lr() == [1.0]


# ---- state dicts -------------------------------------------------------------------------------------
def _lambda_sched(opt):
    return LambdaLR(opt, lambda t: 0.5 ** t)


class Warmup:                                           # a callable object: its attributes are saved
    def __init__(self, n):
        self.n = n

    def __call__(self, t):
        return min(1.0, (t + 1) / self.n)


SCHEDULERS = {
    "lambda": _lambda_sched,
    "multiplicative": lambda opt: MultiplicativeLR(opt, lambda t: 0.9),
    "step": lambda opt: StepLR(opt, step_size=3, gamma=0.5),
    "multistep": lambda opt: MultiStepLR(opt, milestones=[2, 5, 9], gamma=0.3),
    "exponential": lambda opt: ExponentialLR(opt, gamma=0.9),
    "cosine": lambda opt: CosineAnnealingLR(opt, T_max=6, eta_min=0.01),
    "onecycle": lambda opt: OneCycleLR(opt, max_lr=1.0, total_steps=20),
}


@pytest.mark.parametrize("kind", sorted(SCHEDULERS))
def test_state_dict_round_trip_resumes_identically(kind):
    make = SCHEDULERS[kind]
    opt = make_opt(1.0, 0.2)
    sched = make(opt)
    for _ in range(7):
        sched.step()
    saved_sched = pickle.loads(pickle.dumps(sched.state_dict()))
    saved_opt = opt.state_dict()
    sched.step()
    sched.step()
    expected = sched.get_last_lr()

    opt2 = make_opt(5.0, 5.0)
    sched2 = make(opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    assert sched2.last_epoch == 7
    sched2.step()
    sched2.step()
    assert sched2.get_last_lr() == expected
    assert "optimizer" not in saved_sched


def test_state_dict_saves_callable_objects_not_functions():
    opt = make_opt(1.0, 1.0)
    sched = LambdaLR(opt, [Warmup(4), lambda t: 1.0])
    sched.lr_lambdas[0].n = 8
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{"n": 8}, None]
    sched2 = LambdaLR(make_opt(1.0, 1.0), [Warmup(4), lambda t: 1.0])
    sched2.load_state_dict(state)
    assert sched2.lr_lambdas[0].n == 8
    assert "lr_lambdas" in state                        # the given dict is left intact


def test_resume_with_last_epoch():
    # as in PyTorch, the constructor's step leaves ExponentialLR's rate where it is ...
    opt = make_opt(1.0)
    sched = ExponentialLR(opt, gamma=0.5)
    for _ in range(3):
        sched.step()
    resumed = ExponentialLR(opt, gamma=0.5, last_epoch=sched.last_epoch)
    assert resumed.get_last_lr() == [0.125] and resumed.last_epoch == 4
    resumed.step()
    assert resumed.get_last_lr() == [0.0625]
    # ... while StepLR's lands on epoch last_epoch + 1 (here a multiple of step_size)
    opt = make_opt(1.0)
    sched = StepLR(opt, step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    assert sched.get_last_lr() == [0.5]
    resumed = StepLR(opt, step_size=2, gamma=0.5, last_epoch=sched.last_epoch)
    assert resumed.get_last_lr() == [0.25] and resumed.base_lrs == [1.0]
    with pytest.raises(KeyError, match="initial_lr"):
        StepLR(make_opt(1.0), step_size=2, last_epoch=3)


# ---- ReduceLROnPlateau -------------------------------------------------------------------------------
def test_plateau_patience():
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=2, factor=0.5)
    for metric in [1.0, 0.9, 0.8]:                     # improving
        sched.step(metric)
    assert opt.lr == 1.0
    sched.step(0.8)
    sched.step(0.8)
    assert opt.lr == 1.0 and sched.num_bad_epochs == 2
    sched.step(0.8)                                     # third bad epoch > patience
    assert opt.lr == 0.5 and sched.num_bad_epochs == 0
    assert sched.get_last_lr() == [0.5] and sched.last_epoch == 6


def test_plateau_threshold_rel_and_abs_and_max_mode():
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=0, threshold=0.1, threshold_mode="rel")
    sched.step(1.0)
    sched.step(0.95)                                    # not 10% better: bad
    assert opt.lr == pytest.approx(0.1)

    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=0, threshold=0.1, threshold_mode="abs")
    sched.step(1.0)
    sched.step(0.85)                                    # 0.15 better: good
    assert opt.lr == 1.0 and sched.best == 0.85

    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, mode="max", patience=1)
    for metric in [0.1, 0.2, 0.3]:
        sched.step(metric)
    assert opt.lr == 1.0
    sched.step(0.3)
    sched.step(0.1)
    assert opt.lr == pytest.approx(0.1)


def test_plateau_cooldown_and_min_lr():
    opt = make_opt(1.0, 0.02)
    sched = ReduceLROnPlateau(opt, patience=0, cooldown=2, factor=0.1, min_lr=[0.001, 0.01])
    sched.step(1.0)
    lrs = []
    for _ in range(8):
        sched.step(2.0)                                 # always bad
        lrs.append(sched.get_last_lr())
    # reduce, cooldown 2 steps, reduce, cooldown 2, reduce (clamped) ...
    want = [[0.1, 0.01], [0.1, 0.01], [0.1, 0.01], [0.01, 0.01],
            [0.01, 0.01], [0.01, 0.01], [0.001, 0.01], [0.001, 0.01]]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)


def test_plateau_eps_skips_tiny_changes_and_accepts_arrays():
    opt = make_opt(1e-9)
    sched = ReduceLROnPlateau(opt, patience=0, eps=1e-8)
    sched.step(np.float64(1.0))
    sched.step(np.array([2.0]).reshape(()))
    sched.step(nk.ones(()) * 3.0)                       # a 0-d Var
    assert opt.lr == 1e-9 and sched.num_bad_epochs == 0 and sched.last_epoch == 3


def test_plateau_state_dict_round_trip():
    opt = make_opt(1.0)
    sched = ReduceLROnPlateau(opt, patience=1, cooldown=1)
    for m in [1.0, 1.0, 1.0, 1.0]:
        sched.step(m)
    state = sched.state_dict()
    opt2 = make_opt(1.0)
    opt2.load_state_dict(opt.state_dict())
    sched2 = ReduceLROnPlateau(opt2)
    sched2.load_state_dict(state)
    for m in [1.0, 1.0, 1.0]:
        sched.step(m)
        sched2.step(m)
        assert sched2.get_last_lr() == sched.get_last_lr()
    assert sched2.best == 1.0 and sched2.patience == 1


# ---- errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, exc, match", [
    (lambda o: StepLR("not an optimizer", 1), TypeError, "Optimizer"),
    (lambda o: StepLR(o, 0), ValueError, "step_size"),
    (lambda o: StepLR(o, 1.5), ValueError, "step_size"),
    (lambda o: StepLR(o, 2, gamma="x"), ValueError, "gamma"),
    (lambda o: MultiStepLR(o, [1, -2]), ValueError, "milestones"),
    (lambda o: MultiStepLR(o, 3), TypeError, "milestones"),
    (lambda o: ExponentialLR(o, gamma=float("nan")), ValueError, "gamma"),
    (lambda o: CosineAnnealingLR(o, T_max=0), ValueError, "T_max"),
    (lambda o: LambdaLR(o, 3.0), TypeError, "callable"),
    (lambda o: LambdaLR(o, [lambda t: 1, lambda t: 1, lambda t: 1]), ValueError, "lr_lambdas"),
    (lambda o: MultiplicativeLR(o, [None, None]), TypeError, "callable"),
    (lambda o: StepLR(o, 1, last_epoch=-2), ValueError, "last_epoch"),
    (lambda o: OneCycleLR(o, max_lr=1.0), ValueError, "total_steps"),
    (lambda o: OneCycleLR(o, max_lr=1.0, total_steps=0), ValueError, "total_steps"),
    (lambda o: OneCycleLR(o, max_lr=1.0, epochs=2, steps_per_epoch=0), ValueError, "steps_per_epoch"),
    (lambda o: OneCycleLR(o, max_lr=1.0, total_steps=10, pct_start=1.5), ValueError, "pct_start"),
    (lambda o: OneCycleLR(o, max_lr=1.0, total_steps=10, anneal_strategy="exp"), ValueError, "anneal"),
    (lambda o: OneCycleLR(o, max_lr=[1.0], total_steps=10), ValueError, "max_lr"),
    (lambda o: ReduceLROnPlateau(o, factor=1.0), ValueError, "factor"),
    (lambda o: ReduceLROnPlateau(o, mode="up"), ValueError, "mode"),
    (lambda o: ReduceLROnPlateau(o, threshold_mode="pct"), ValueError, "threshold_mode"),
    (lambda o: ReduceLROnPlateau(o, patience=-1), ValueError, "patience"),
    (lambda o: ReduceLROnPlateau(o, min_lr=[0.0]), ValueError, "min_lr"),
    (lambda o: ReduceLROnPlateau(o).step("bad"), TypeError, "metrics"),
    (lambda o: StepLR(o, 1).load_state_dict({"x": 1}), ValueError, "state_dict"),
])
def test_bad_arguments(build, exc, match):
    with pytest.raises(exc, match=match):
        build(make_opt(1.0, 0.5))


def test_base_class_needs_get_lr():
    with pytest.raises(NotImplementedError, match="get_lr"):
        LRScheduler(make_opt(1.0))


# ---- parity with PyTorch -----------------------------------------------------------------------------
TORCH_CASES = {
    "lambda": (lambda m, o: m.LambdaLR(o, [lambda t: 0.9 ** t, lambda t: 1 / (t + 1)]), 15),
    "multiplicative": (lambda m, o: m.MultiplicativeLR(o, lambda t: 0.95 if t % 2 else 1.1), 15),
    "step": (lambda m, o: m.StepLR(o, step_size=4, gamma=0.3), 15),
    "multistep": (lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 12], gamma=0.5), 15),
    "exponential": (lambda m, o: m.ExponentialLR(o, gamma=0.85), 15),
    "cosine": (lambda m, o: m.CosineAnnealingLR(o, T_max=6, eta_min=0.05), 20),
    "onecycle": (lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 3.0], total_steps=18, cycle_momentum=False), 18),
    "onecycle3": (lambda m, o: m.OneCycleLR(o, max_lr=2.0, epochs=4, steps_per_epoch=5, pct_start=0.25,
                                            anneal_strategy="linear", three_phase=True,
                                            div_factor=10, final_div_factor=100,
                                            cycle_momentum=False), 20),
}


class _Mine:                                            # our module under torch's names
    LambdaLR = LambdaLR
    MultiplicativeLR = MultiplicativeLR
    StepLR = StepLR
    MultiStepLR = MultiStepLR
    ExponentialLR = ExponentialLR
    CosineAnnealingLR = CosineAnnealingLR

    @staticmethod
    def OneCycleLR(*args, cycle_momentum=True, **kwargs):
        return OneCycleLR(*args, cycle_momentum=cycle_momentum, **kwargs)


@pytest.mark.parametrize("kind", sorted(TORCH_CASES))
def test_matches_torch(kind):
    torch = oracle("torch")
    import warnings
    build, steps = TORCH_CASES[kind]
    lrs = (0.5, 0.1)
    w = torch.zeros(2, requires_grad=True)
    v = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [w], "lr": lrs[0]}, {"params": [v], "lr": lrs[1]}], lr=lrs[0])
    tsched = build(torch.optim.lr_scheduler, topt)
    sched = build(_Mine, make_opt(*lrs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps - (kind.startswith("onecycle"))):
            np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12, atol=0)
            topt.step()
            tsched.step()
            sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), tsched.get_last_lr(), rtol=1e-12, atol=0)


def test_chained_matches_torch():
    torch = oracle("torch")
    import warnings
    w = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([w], lr=1.0)
    ts = [torch.optim.lr_scheduler.CosineAnnealingLR(topt, T_max=5, eta_min=0.1),
          torch.optim.lr_scheduler.ExponentialLR(topt, gamma=0.9)]
    opt = make_opt(1.0)
    ms = [CosineAnnealingLR(opt, T_max=5, eta_min=0.1), ExponentialLR(opt, gamma=0.9)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(15):
            topt.step()
            for s in ts + ms:
                s.step()
            assert opt.lr == pytest.approx(topt.param_groups[0]["lr"], rel=1e-12)


def test_onecycle_momentum_matches_torch():
    torch = oracle("torch")
    import warnings
    w = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([w], lr=1.0, momentum=0.9)
    ts = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=1.0, total_steps=12, base_momentum=0.8)
    opt = make_opt(1.0, momentum=0.9)
    ms = OneCycleLR(opt, max_lr=1.0, total_steps=12, base_momentum=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(11):
            assert opt.param_groups[0]["momentum"] == pytest.approx(topt.param_groups[0]["momentum"],
                                                                    rel=1e-12)
            assert ms.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
            topt.step()
            ts.step()
            ms.step()


def test_plateau_matches_torch():
    torch = oracle("torch")
    w = torch.zeros(2, requires_grad=True)
    topt = torch.optim.SGD([{"params": [w], "lr": 1.0}, {"params": [torch.zeros(1, requires_grad=True)],
                                                          "lr": 0.3}], lr=1.0)
    kwargs = dict(mode="min", factor=0.5, patience=2, threshold=0.01, cooldown=1, min_lr=[0.05, 0.01])
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kwargs)
    ms = ReduceLROnPlateau(make_opt(1.0, 0.3), **kwargs)
    rng = np.random.default_rng(0)
    metrics = np.concatenate([np.linspace(1, 0.5, 5), 0.5 + 0.01 * rng.standard_normal(25)])
    for m in metrics:
        ts.step(float(m))
        ms.step(float(m))
        assert ms.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12)
    assert ms.get_last_lr() != [1.0, 0.3]
