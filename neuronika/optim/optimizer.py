"""The optimizer base: parameter groups, penalties, zero_grad, state dicts.

An optimizer takes a model's ``parameters()``, a list of Params or VarDiff
leaves, or a list of parameter groups ``[{"params": ..., "lr": ...}, ...]`` whose
keys override the defaults. Subclasses implement ``step()`` by reading
``self.gradient(p, group)``: a copy of ``p.grad`` with the group's penalty added,
so the stored gradient is never modified.
"""
from __future__ import annotations

import copy

import numpy as np

from .. import backend
from ..ops.kernels import checked_cast
from ..variable import Param, VarDiff


def _as_param(p, name):
    if isinstance(p, (Param, VarDiff)) and p.dtype.kind == "c":
        # A complex gradient here is d/d(re) - 1j d/d(im) (HIPS autograd's convention), and
        # the optimizers' rules (momentum, second moments) are written for real values.
        raise TypeError(f"{name}: complex parameters are not supported (shape {p.shape}, dtype "
                        f"{p.dtype}); optimize the real and imaginary parts as two float parameters")
    if isinstance(p, Param):
        return p
    if isinstance(p, VarDiff) and p.is_leaf:
        return Param(p._node)
    raise TypeError(f"{name}: parameters must be Params (model.parameters()) or differentiable "
                    f"leaves, got {type(p).__name__}")


class Optimizer:
    """Base class; see the module docstring."""

    def __init__(self, params, defaults: dict):
        name = type(self).__name__
        if isinstance(params, (Param, VarDiff)):
            raise TypeError(f"{name}: params must be an iterable of parameters (model.parameters()), "
                            f"got a single {type(params).__name__}; pass [p]")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"{name}: params must be an iterable of parameters (model.parameters()) "
                            f"or of parameter groups, got {type(params).__name__}") from None
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        seen = {}                                       # node -> the group it is in
        for number, group in enumerate(groups):
            if not isinstance(group, dict):
                raise TypeError(f"{name}: either every entry of params is a parameter group (a dict) "
                                f"or none is; entry {number} is a {type(group).__name__}")
            if "params" not in group:
                raise ValueError(f"{name}: parameter group {number} has no 'params' entry")
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in a parameter group")
            members = group["params"]
            members = [members] if isinstance(members, (Param, VarDiff)) else list(members)
            members = [_as_param(p, name) for p in members]
            for position, p in enumerate(members):
                if p._node in seen:
                    other = seen[p._node]
                    where = (f"twice in parameter group {number}" if other == number else
                             f"in parameter groups {other} and {number}")
                    raise ValueError(f"{name}: a parameter (shape {p.shape}) appears {where}; each "
                                     f"parameter must be given once")
                seen[p._node] = number
            self.param_groups.append({**self.defaults, **group, "params": members})
        self.state = {}                                 # Param -> dict of arrays / numbers

    # ---- learning rate -----------------------------------------------------------------------------
    @property
    def lr(self) -> float:
        """The learning rate of the first group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.param_groups:
            group["lr"] = value

    # ---- steps ---------------------------------------------------------------------------------------
    def parameters(self):
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def gradient(self, p: Param, group: dict) -> np.ndarray:
        """A copy of p's gradient with the group's penalty (if any) added."""
        space = p._node.space
        grad = np.array(p.grad, copy=True) if space is None else space.xp.asarray(p.grad, copy=True)
        penalty = group.get("penalty")
        if penalty is not None:
            grad += penalty.gradient(p.data)
        return grad

    def step(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define step()")

    def _validate(self, group: dict) -> None:
        """Check a group's options (subclasses raise ValueError naming the bad one)."""

    # ---- state -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Hyper-parameters of each group and the per-parameter state (copies), with
        parameters numbered in group order, so training resumes exactly."""
        index = {p: i for i, p in enumerate(self.parameters())}
        groups = []
        for group in self.param_groups:
            saved = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            saved["params"] = [index[p] for p in group["params"]]
            groups.append(saved)
        state = {index[p]: {k: copy.deepcopy(v) for k, v in s.items()} for p, s in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load what ``state_dict()`` returned. Every entry is checked first (the groups and
        their options, each parameter's state: names, shapes, dtypes); on an error, which
        names the entry, nothing is changed."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{where}: expected the dict that state_dict() returns, got "
                            f"{type(state_dict).__name__}")
        missing = [key for key in ("state", "param_groups") if key not in state_dict]
        if missing:
            raise ValueError(f"{where}: the state dict has no {' and no '.join(map(repr, missing))} "
                             f"entry; pass what optimizer.state_dict() returned")
        unexpected = sorted(set(state_dict) - {"state", "param_groups"}, key=str)
        if unexpected:
            raise ValueError(f"{where}: unexpected entries {unexpected} in the state dict")
        groups, states = state_dict["param_groups"], state_dict["state"]
        if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
            raise TypeError(f"{where}: 'param_groups' must be a list of dicts, got {groups!r:.80}")
        if not isinstance(states, dict):
            raise TypeError(f"{where}: 'state' must be a dict (parameter number -> its state), got "
                            f"{type(states).__name__}")
        counts = [len(g.get("params", ())) for g in groups]
        mine = [len(g["params"]) for g in self.param_groups]
        if counts != mine:
            raise ValueError(f"{where}: the saved groups do not match this optimizer's groups "
                             f"(parameters per group: saved {counts}, this optimizer {mine})")
        params = self.parameters()
        options = []
        for number, (current, saved) in enumerate(zip(self.param_groups, groups)):
            merged = {**current, **{k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}}
            try:
                self._validate(merged)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{where}: saved parameter group {number}: {error}") from None
            options.append(merged)
        new_state = {}
        for i, entries in states.items():
            if isinstance(i, str) and i.isdigit():      # keys that went through JSON
                i = int(i)
            if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < len(params):
                raise ValueError(f"{where}: state of parameter {i!r}: parameters are numbered 0 to "
                                 f"{len(params) - 1}")
            if not isinstance(entries, dict):
                raise TypeError(f"{where}: state of parameter {i} must be a dict, got "
                                f"{type(entries).__name__}")
            p = params[int(i)]
            loaded = {}
            for key, value in entries.items():
                if isinstance(value, np.ndarray):
                    if value.shape != p.shape:
                        raise ValueError(f"{where}: state {key!r} of parameter {i} has shape {value.shape}, "
                                         f"the parameter {p.shape}")
                    if not np.can_cast(value.dtype, p.dtype, "same_kind"):
                        raise TypeError(f"{where}: state {key!r} of parameter {i} has dtype {value.dtype}, "
                                        f"which does not convert to the parameter's {p.dtype}")
                    try:
                        value = np.array(checked_cast(value, p.dtype, f"{where}: state {key!r} of "
                                                                      f"parameter {i}"), copy=True)
                    except OverflowError as error:
                        raise ValueError(str(error)) from None
                elif key == "step" and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                                        or value < 0):
                    raise ValueError(f"{where}: state 'step' of parameter {i} must be an int >= 0, got "
                                     f"{value!r}")
                else:
                    value = copy.deepcopy(value)
                if p._node.space is not None and hasattr(value, "shape"):
                    value = backend.move(value, p._node.space)    # the parameter's library
                loaded[key] = value
            new_state[p] = loaded
        for current, merged in zip(self.param_groups, options):   # every entry checked: now assign
            current.update(merged)
        self.state = new_state

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {options}")
        return "\n".join(lines) + "\n)"
