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
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups = []
        seen = set()
        for group in groups:
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{name}: unknown option(s) {sorted(unknown)} in a parameter group")
            members = group["params"]
            members = [members] if isinstance(members, (Param, VarDiff)) else list(members)
            members = [_as_param(p, name) for p in members]
            for p in members:
                if p in seen:
                    raise ValueError(f"{name}: a parameter appears in more than one group")
                seen.add(p)
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
        grad = np.array(p.grad, copy=True)
        penalty = group.get("penalty")
        if penalty is not None:
            grad += penalty.gradient(p.data)
        return grad

    def step(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define step()")

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
        """Load what ``state_dict()`` returned; checked first, unchanged on error."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                len(g["params"]) != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError(f"{name}.load_state_dict: the saved groups do not match this "
                             f"optimizer's groups (numbers of groups or of parameters differ)")
        params = self.parameters()
        for i, entries in state_dict["state"].items():
            p = params[int(i)]
            for key, value in entries.items():
                if isinstance(value, np.ndarray) and value.shape != p.shape:
                    raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {i} has "
                                     f"shape {value.shape}, the parameter {p.shape}")
        for mine, saved in zip(self.param_groups, groups):
            for key, value in saved.items():
                if key != "params":
                    mine[key] = copy.deepcopy(value)
        self.state = {params[int(i)]: {k: copy.deepcopy(v) for k, v in entries.items()}
                      for i, entries in state_dict["state"].items()}

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            options = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} parameters, {options}")
        return "\n".join(lines) + "\n)"
