"""Module: the base of every layer and model.

Assigning a differentiable leaf (a parameter), a Module, or a ModuleList /
ModuleDict as an attribute registers it, in assignment order, so models with a
variable number of layers need no bookkeeping:

>>> import neuronika
>>> from neuronika import nn
>>> class MLP(nn.Module):
...     def __init__(self, sizes):
...         super().__init__()
...         self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
...     def forward(self, x):
...         for layer in self.layers[:-1]:
...             x = layer(x).relu()
...         return self.layers[-1](x)
>>> model = MLP([4, 8, 8, 2])
>>> [name for name, _ in model.named_parameters()][:2]
['layers.0.weight', 'layers.0.bias']
>>> model(neuronika.rand((3, 4))).shape
(3, 2)
"""
from __future__ import annotations

import os
from collections import OrderedDict

import numpy as np

from ..errors import ShapeError
from ..graph import leaf
from ..variable import Param, VarDiff, _wrap


def parameter(array) -> VarDiff:
    """A differentiable leaf over ``array``: what a layer registers as a parameter."""
    return _wrap(leaf(np.asarray(array), requires_grad=True))


def _is_parameter(value):
    return isinstance(value, VarDiff) and value.is_leaf


class Module:
    """Base class of layers and models: subclasses set attributes in ``__init__``
    and define ``forward``; calling the module calls ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", [])
        object.__setattr__(self, "_buffers", [])
        object.__setattr__(self, "_modules", [])
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                 f"attributes")
        if name in self._buffers and (value is None or isinstance(value, np.ndarray)):
            object.__setattr__(self, name, value)       # a buffer stays a buffer (as in PyTorch)
            return
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                registry.remove(name)
        if _is_parameter(value):
            self._parameters.append(name)
        elif isinstance(value, Module):
            self._modules.append(name)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                registry.remove(name)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array) -> None:
        """Keep ``array`` (not trained: running statistics, say) in the state dict."""
        object.__setattr__(self, name, np.asarray(array))
        if name not in self._buffers:
            self._buffers.append(name)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- traversal ---------------------------------------------------------------------------
    def children(self):
        """The direct sub-modules, in assignment order."""
        return [getattr(self, name) for name in self._modules]

    def named_modules(self, prefix=""):
        yield prefix, self
        for name in self._modules:
            yield from getattr(self, name).named_modules(f"{prefix}{name}.")

    def modules(self):
        return [m for _, m in self.named_modules()]

    def _named_leaves(self, prefix=""):
        for name in self._parameters:
            yield prefix + name, getattr(self, name)
        for name in self._modules:
            yield from getattr(self, name)._named_leaves(f"{prefix}{name}.")

    def named_parameters(self):
        """(dotted name, Param) for every parameter, each once, in registration order."""
        seen = set()
        result = []
        for name, var in self._named_leaves():
            if var._node not in seen:
                seen.add(var._node)
                result.append((name, Param(var._node)))
        return result

    def parameters(self):
        """Every parameter once, as Param (``.data`` and ``.grad`` are live arrays)."""
        return [p for _, p in self.named_parameters()]

    def _named_buffers(self, prefix=""):
        for name in self._buffers:
            yield prefix + name, self, name
        for name in self._modules:
            yield from getattr(self, name)._named_buffers(f"{prefix}{name}.")

    # ---- modes ------------------------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Training status (dropout active, batch statistics) for this module and all inside."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    def to(self, dtype):
        """Convert every parameter and buffer to ``dtype`` (float32 or float64)."""
        dtype = np.dtype(dtype)
        for module in self.modules():
            for name in module._parameters:
                object.__setattr__(module, name, parameter(getattr(module, name).data.astype(dtype)))
            for name in module._buffers:
                value = getattr(module, name)
                if value.dtype.kind == "f":
                    object.__setattr__(module, name, value.astype(dtype))
        return self

    # ---- state ---------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer under its dotted name."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.data.copy()
        for name, module, attr in self._named_buffers():
            state[name] = np.array(getattr(module, attr), copy=True)
        return state

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy ``state`` into the parameters and buffers. Every key and shape is
        checked first: on an error nothing is changed."""
        targets = {}
        for name, p in self.named_parameters():
            targets[name] = ("parameter", p)
        for name, module, attr in self._named_buffers():
            targets[name] = ("buffer", (module, attr))
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"load_state_dict({type(self).__name__}): {' and '.join(parts)}; nothing "
                           f"was loaded (strict=False loads the keys that match)")
        updates = []
        for name, (kind, target) in targets.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            current = target.data if kind == "parameter" else getattr(*target)
            if value.shape != current.shape:
                raise ShapeError(f"load_state_dict({type(self).__name__}): {name} has shape "
                                 f"{value.shape} in the state but {current.shape} in the model; "
                                 f"nothing was loaded")
            updates.append((kind, target, value))
        for kind, target, value in updates:
            if kind == "parameter":
                np.copyto(target.data, value, casting="same_kind")
            else:
                module, attr = target
                object.__setattr__(module, attr, value.astype(getattr(module, attr).dtype, copy=True))

    def save(self, path) -> None:
        """Write the state dict to ``path`` as .npz (no pickle)."""
        np.savez(path, **self.state_dict())

    # ---- display ------------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name in self._modules:
            child = repr(getattr(self, name)).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        count = sum(p.data.size for p in self.parameters())
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + f"\n)  # {count:,} parameters"


def load(path) -> "OrderedDict[str, np.ndarray]":
    """Read a state dict written by ``Module.save`` (``.npz``, no pickle)."""
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    with np.load(path, allow_pickle=False) as archive:
        return OrderedDict((name, archive[name]) for name in archive.files)


class ModuleList(Module):
    """A list of modules, registered as ``0``, ``1``, ..."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds modules, not {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        items = self.children()
        if isinstance(index, slice):
            return ModuleList(items[index])
        return items[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self.children())


class ModuleDict(Module):
    """A dict of modules, registered under their keys."""

    def __init__(self, modules=None):
        super().__init__()
        for key, module in (modules or {}).items():
            self[key] = module

    def __setitem__(self, key, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict holds modules, not {type(module).__name__}")
        setattr(self, key, module)

    def __getitem__(self, key):
        if key not in self._modules:
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key):
        return key in self._modules

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return list(self._modules)

    def values(self):
        return self.children()

    def items(self):
        return list(zip(self._modules, self.children()))


class Sequential(Module):
    """Modules applied in order.

    >>> import neuronika
    >>> from neuronika import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    >>> model(neuronika.rand((2, 3))).shape
    (2, 1)
    """

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self.children():
            x = module(x)
        return x

    def __getitem__(self, index):
        return self.children()[index]

    def __len__(self):
        return len(self._modules)
