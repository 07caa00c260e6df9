"""Learning-rate schedulers, with PyTorch's semantics.

A scheduler wraps an :class:`~neuronika.optim.Optimizer` and rewrites the ``"lr"`` of
each of its parameter groups. Constructing one records each group's starting rate
as ``group["initial_lr"]`` (kept if already there, so chained schedulers share it),
sets ``base_lrs`` from it and performs an initial step that leaves the rates as
they are (``last_epoch`` becomes 0). Each later ``step()`` advances one epoch:

    >>> from neuronika import nn, optim
    >>> opt = optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
    >>> sched = optim.lr_scheduler.StepLR(opt, step_size=30, gamma=0.1)
    >>> for epoch in range(100):
    ...     opt.step()            # after a backward, in a real loop
    ...     sched.step()
    >>> round(sched.get_last_lr()[0], 8)
    0.0001

``get_last_lr()`` returns the list of rates (one per group) after the last step.
The multiplicative schedulers (MultiplicativeLR, StepLR, MultiStepLR, ExponentialLR,
CosineAnnealingLR) update the group's *current* rate, so several of them can be
chained on one optimizer; LambdaLR and OneCycleLR set the rate outright.
``ReduceLROnPlateau`` is stepped with a metric: ``sched.step(val_loss)``.

``state_dict()`` / ``load_state_dict()`` save and restore a scheduler's counters
(save and restore the optimizer too: the rates live in its groups).
"""
from __future__ import annotations

import copy
import math
import numbers
import types
from collections import Counter

from ..variable import Var
from .optimizer import Optimizer

__all__ = ["LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR",
           "ExponentialLR", "CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau"]


# ---- argument checks ----------------------------------------------------------------------------------
def _check_optimizer(name, optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{name}: expected an Optimizer, got {type(optimizer).__name__}")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(name, arg, value):
    if not _is_int(value) or value <= 0:
        raise ValueError(f"{name}: {arg} must be a positive integer, got {value!r}")
    return int(value)


def _non_negative_int(name, arg, value):
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name}: {arg} must be a non-negative integer, got {value!r}")
    return int(value)


def _real(name, arg, value, *, positive=False, non_negative=False):
    if not _is_real(value) or not math.isfinite(value):
        raise ValueError(f"{name}: {arg} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name}: {arg} must be positive, got {value!r}")
    if non_negative and value < 0:
        raise ValueError(f"{name}: {arg} must be non-negative, got {value!r}")
    return float(value)


def _per_group(name, arg, optimizer, value, **checks):
    """One value per group: a scalar broadcast, or a list/tuple of the groups' length."""
    n = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: expected {n} values of {arg} (one per parameter group), "
                             f"got {len(value)}")
        return [_real(name, arg, v, **checks) for v in value]
    return [_real(name, arg, value, **checks)] * n


def _lambdas(name, optimizer, lr_lambda):
    n = len(optimizer.param_groups)
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != n:
            raise ValueError(f"{name}: expected {n} lr_lambdas (one per parameter group), "
                             f"got {len(lr_lambda)}")
        fns = list(lr_lambda)
    else:
        fns = [lr_lambda] * n
    for fn in fns:
        if not callable(fn):
            raise TypeError(f"{name}: lr_lambda must be a callable or a list of callables, "
                            f"got {type(fn).__name__}")
    return fns


# ---- base ------------------------------------------------------------------------------------------------
class LRScheduler:
    """Base class: subclasses implement ``get_lr()``, the rates for ``self.last_epoch``.

    ``last_epoch=-1`` (the default) starts a schedule; a non-negative value resumes
    one, and then every group must already hold ``"initial_lr"``.
    """

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        if not _is_int(last_epoch) or last_epoch < -1:
            raise ValueError(f"{name}: last_epoch must be an integer >= -1, got {last_epoch!r}")
        self.optimizer = optimizer
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{name}: param_groups[{i}] has no 'initial_lr', needed to resume "
                                   f"a schedule with last_epoch={last_epoch} (load the optimizer's "
                                   f"state first, or leave last_epoch at -1)")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = int(last_epoch)
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list:
        raise NotImplementedError(f"{type(self).__name__} does not define get_lr()")

    def step(self) -> None:
        """Advance one epoch and write the new rates into the optimizer's groups."""
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list:
        """The learning rates (one per group) after the last step."""
        return list(self._last_lr)

    def _current(self) -> list:
        return [group["lr"] for group in self.optimizer.param_groups]

    # ---- state ---------------------------------------------------------------------------------------------
    _unsaved = ("optimizer",)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer (copies)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in self._unsaved}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load what ``state_dict()`` returned."""
        if not isinstance(state_dict, dict) or "last_epoch" not in state_dict:
            raise ValueError(f"{type(self).__name__}.load_state_dict: expected a dict returned by "
                             f"state_dict(), got {type(state_dict).__name__}")
        self.__dict__.update({k: copy.deepcopy(v) for k, v in state_dict.items()
                              if k not in self._unsaved})

    def __repr__(self):
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self._last_lr})"


class _LambdaState(LRScheduler):
    """State handling for schedulers holding ``lr_lambdas``: plain functions are not
    saved; callable objects have their ``__dict__`` saved and restored."""

    _unsaved = ("optimizer", "lr_lambdas")

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["lr_lambdas"] = [None if isinstance(fn, types.FunctionType) else copy.deepcopy(fn.__dict__)
                               for fn in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        saved = state_dict.get("lr_lambdas") or []
        if saved and len(saved) != len(self.lr_lambdas):
            raise ValueError(f"{type(self).__name__}.load_state_dict: {len(saved)} saved lr_lambdas, "
                             f"this scheduler has {len(self.lr_lambdas)}")
        for fn, attrs in zip(self.lr_lambdas, saved):
            if attrs is not None:
                fn.__dict__.update(copy.deepcopy(attrs))


# ---- schedulers --------------------------------------------------------------------------------------
class LambdaLR(_LambdaState):
    """``lr = base_lr * lr_lambda(epoch)``; ``lr_lambda`` is a function of the epoch
    or a list of them, one per group."""

    def __init__(self, optimizer: Optimizer, lr_lambda, last_epoch: int = -1):
        _check_optimizer(type(self).__name__, optimizer)
        self.lr_lambdas = _lambdas(type(self).__name__, optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]


class MultiplicativeLR(_LambdaState):
    """Multiply each group's rate by ``lr_lambda(epoch)`` at every step."""

    def __init__(self, optimizer: Optimizer, lr_lambda, last_epoch: int = -1):
        _check_optimizer(type(self).__name__, optimizer)
        self.lr_lambdas = _lambdas(type(self).__name__, optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current()
        return [group["lr"] * fn(self.last_epoch)
                for fn, group in zip(self.lr_lambdas, self.optimizer.param_groups)]


class StepLR(LRScheduler):
    """Multiply the rates by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        name = type(self).__name__
        self.step_size = _positive_int(name, "step_size", step_size)
        self.gamma = _real(name, "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class MultiStepLR(LRScheduler):
    """Multiply the rates by ``gamma`` at each epoch in ``milestones`` (a milestone
    listed k times multiplies by ``gamma**k``)."""

    def __init__(self, optimizer: Optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        name = type(self).__name__
        try:
            milestones = list(milestones)
        except TypeError:
            raise TypeError(f"{name}: milestones must be a list of epochs, got "
                            f"{type(milestones).__name__}") from None
        for m in milestones:
            if not _is_int(m) or m < 0:
                raise ValueError(f"{name}: milestones must be non-negative integers, got {m!r}")
        self.milestones = Counter(int(m) for m in milestones)
        self.gamma = _real(name, "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return self._current()
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [group["lr"] * factor for group in self.optimizer.param_groups]


class ExponentialLR(LRScheduler):
    """Multiply the rates by ``gamma`` every epoch."""

    def __init__(self, optimizer: Optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = _real(type(self).__name__, "gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current()
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` epochs (then back
    up, periodically), in PyTorch's recursive form::

        lr_t = eta_min + (base_lr - eta_min) * (1 + cos(pi * t / T_max)) / 2

    when it is the only scheduler; chained ones scale the current rate instead.
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        name = type(self).__name__
        self.T_max = _positive_int(name, "T_max", T_max)
        self.eta_min = _real(name, "eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, T, eta = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return self._current()
        if (t - 1 - T) % (2 * T) == 0:
            return [group["lr"] + (base - eta) * (1 - math.cos(math.pi / T)) / 2
                    for base, group in zip(self.base_lrs, self.optimizer.param_groups)]
        return [(1 + math.cos(math.pi * t / T)) / (1 + math.cos(math.pi * (t - 1) / T))
                * (group["lr"] - eta) + eta for group in self.optimizer.param_groups]


class OneCycleLR(LRScheduler):
    """The 1cycle policy: warm up from ``max_lr / div_factor`` to ``max_lr`` over the
    first ``pct_start`` of ``total_steps`` (or ``epochs * steps_per_epoch``), then anneal
    to ``max_lr / div_factor / final_div_factor`` (``three_phase``: back to the initial
    rate first, then to the minimum). Step it once per batch; stepping past
    ``total_steps`` raises.

    With ``cycle_momentum`` (default) the groups' ``"momentum"`` (or the first of
    their ``"betas"``) is cycled inversely between ``max_momentum`` and
    ``base_momentum``; for optimizers with neither option it does nothing.
    """

    def __init__(self, optimizer: Optimizer, max_lr, total_steps: int | None = None,
                 epochs: int | None = None, steps_per_epoch: int | None = None,
                 pct_start: float = 0.3, anneal_strategy: str = "cos", cycle_momentum: bool = True,
                 base_momentum=0.85, max_momentum=0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1):
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        if total_steps is not None:
            self.total_steps = _positive_int(name, "total_steps", total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (_positive_int(name, "epochs", epochs)
                                * _positive_int(name, "steps_per_epoch", steps_per_epoch))
        else:
            raise ValueError(f"{name}: give either total_steps or both epochs and steps_per_epoch")
        pct_start = _real(name, "pct_start", pct_start)
        if not 0 <= pct_start <= 1:
            raise ValueError(f"{name}: pct_start must be in [0, 1], got {pct_start}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"{name}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        self.anneal_strategy = anneal_strategy
        div_factor = _real(name, "div_factor", div_factor, positive=True)
        final_div_factor = _real(name, "final_div_factor", final_div_factor, positive=True)
        max_lrs = _per_group(name, "max_lr", optimizer, max_lr, non_negative=True)

        n = self.total_steps
        if three_phase:
            self._schedule_phases = [
                dict(end_step=pct_start * n - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=2 * pct_start * n - 2, start_lr="max_lr", end_lr="initial_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
                dict(end_step=n - 1, start_lr="initial_lr", end_lr="min_lr",
                     start_momentum="max_momentum", end_momentum="max_momentum"),
            ]
        else:
            self._schedule_phases = [
                dict(end_step=pct_start * n - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=n - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
            ]

        if last_epoch == -1:
            for group, top in zip(optimizer.param_groups, max_lrs):
                group["initial_lr"] = top / div_factor
                group["max_lr"] = top
                group["min_lr"] = group["initial_lr"] / final_div_factor

        groups = optimizer.param_groups
        self.use_beta1 = all("betas" in g for g in groups) and not all("momentum" in g for g in groups)
        self.cycle_momentum = bool(cycle_momentum) and (
            all("momentum" in g for g in groups) or self.use_beta1)
        if self.cycle_momentum:
            tops = _per_group(name, "max_momentum", optimizer, max_momentum)
            bases = _per_group(name, "base_momentum", optimizer, base_momentum)
            if last_epoch == -1:
                for group, top, base in zip(groups, tops, bases):
                    if self.use_beta1:
                        group["betas"] = (top, *tuple(group["betas"])[1:])
                    else:
                        group["momentum"] = top
                    group["max_momentum"] = top
                    group["base_momentum"] = base
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"{type(self).__name__}: tried to step {step} times; the schedule has "
                             f"total_steps={self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._schedule_phases):
                end = phase["end_step"]
                if step <= end or i == len(self._schedule_phases) - 1:
                    span = end - start
                    pct = (step - start) / span if span > 0 else 1.0
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        momentum = self._anneal(group[phase["start_momentum"]],
                                                group[phase["end_momentum"]], pct)
                    break
                start = end
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (momentum, *tuple(group["betas"])[1:])
                else:
                    group["momentum"] = momentum
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the rates by ``factor`` when a metric has not improved for more than
    ``patience`` steps; ``step(metric)`` once per evaluation.

    ``mode`` 'min' (lower is better) or 'max'. A value is an improvement when it beats
    the best so far by ``threshold`` (relative: ``best * (1 -/+ threshold)``, or
    absolute: ``best -/+ threshold``). After a reduction, ``cooldown`` steps are
    ignored. Rates never go below ``min_lr`` (a number, or one per group), and changes
    smaller than ``eps`` are skipped.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr=0.0, eps: float = 1e-8):
        name = type(self).__name__
        _check_optimizer(name, optimizer)
        factor = _real(name, "factor", factor)
        if not 0 < factor < 1:
            raise ValueError(f"{name}: factor must be in (0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        self.optimizer = optimizer
        self.factor = factor
        self.mode = mode
        self.threshold = _real(name, "threshold", threshold, non_negative=True)
        self.threshold_mode = threshold_mode
        self.patience = _non_negative_int(name, "patience", patience)
        self.cooldown = _non_negative_int(name, "cooldown", cooldown)
        self.min_lrs = _per_group(name, "min_lr", optimizer, min_lr, non_negative=True)
        self.eps = _real(name, "eps", eps, non_negative=True)
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.last_epoch = 0
        self._is_initial = False
        self._last_lr = self._current()
        self._reset()

    def _reset(self):
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def is_better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < (best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                        else best - self.threshold)
        return a > (best * (1.0 + self.threshold) if self.threshold_mode == "rel"
                    else best + self.threshold)

    def step(self, metrics) -> None:
        """Record one value of the monitored metric (a number or a one-element array/Var)."""
        try:
            current = float(metrics.data if isinstance(metrics, Var) else metrics)
        except (TypeError, ValueError):
            raise TypeError(f"{type(self).__name__}.step: metrics must be a number, got "
                            f"{type(metrics).__name__}") from None
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.in_cooldown:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0                     # bad epochs in cooldown do not count
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self._current()

    def _reduce_lr(self):
        if len(self.min_lrs) != len(self.optimizer.param_groups):
            raise RuntimeError(f"{type(self).__name__}: the optimizer has "
                               f"{len(self.optimizer.param_groups)} parameter groups, min_lr was "
                               f"given for {len(self.min_lrs)}")
        for group, floor in zip(self.optimizer.param_groups, self.min_lrs):
            old = float(group["lr"])
            new = max(old * self.factor, floor)
            if old - new > self.eps:
                group["lr"] = new

    def get_lr(self):
        return self._current()
