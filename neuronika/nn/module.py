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
import zipfile
from collections import OrderedDict

import numpy as np

from .. import backend
from ..errors import ShapeError
from ..graph import leaf
from ..ops.kernels import checked_cast
from ..variable import Param, Var, VarDiff, _wrap
from ._checks import float_dtype


def parameter(array) -> VarDiff:
    """A differentiable leaf over ``array``: what a layer registers as a parameter."""
    if backend.space_of(array) is None:
        array = np.asarray(array)
    return _wrap(leaf(array, requires_grad=True))


def _is_device(value):
    """Whether an argument of ``Module.to`` names a device rather than a dtype."""
    if isinstance(value, str):
        return value.strip().lower().partition(":")[0] in ("cpu", "cuda", "gpu", "numpy")
    return (isinstance(value, backend.Space) or (hasattr(value, "__name__") and hasattr(value, "asarray")
                                                 and not isinstance(value, type))
            or type(value).__name__ == "Device")      # a library's device object (cupy.cuda.Device(1))


def _converted(value, dtype, device, target, label):
    """``value`` in ``dtype`` (None: its own) on ``target`` (when ``device`` is given)."""
    space = backend.space_of(value)
    if dtype is not None:
        if space is None:
            value = checked_cast(value, dtype, label)
        elif space.numpy_dtype(value.dtype) != dtype:
            value = space.xp.astype(value, space.dtype(dtype))
    if device is not None:
        value = backend.move(value, target)
    return value


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

    def to(self, *args, device=None, dtype=None):
        """Convert every parameter and buffer to ``dtype`` (float32 or float64) and/or move it
        to ``device`` (``"cpu"``: NumPy; ``"cuda"`` / ``"cuda:N"``: CuPy; an array-API
        namespace module such as ``array_api_strict``, or a library's device object such as
        ``cupy.cuda.Device(1)``): ``to(dtype)``, ``to(device)``,
        ``to(device, dtype)`` or keywords. Parameters become new leaves (make the optimizer
        after). A value that the conversion would change out of recognition (1e39 to float32
        becomes inf) raises OverflowError naming it, and then nothing is converted.

        >>> import numpy as np
        >>> from neuronika import nn
        >>> nn.Linear(2, 1).to("cpu", np.float64).weight.dtype
        dtype('float64')
        """
        name = f"{type(self).__name__}.to"
        for arg in args:
            if _is_device(arg):
                if device is not None:
                    raise TypeError(f"{name}: two devices given")
                device = arg
            elif dtype is None:
                dtype = arg
            else:
                raise TypeError(f"{name}: expected a device and/or a dtype, got {args}")
        target = backend.resolve(device) if device is not None else None
        dtype = float_dtype(name, dtype) if dtype is not None else None
        changes = []
        for prefix, module in self.named_modules():
            for attr in module._parameters:
                value = getattr(module, attr).data
                changes.append((module, attr, True, _converted(value, dtype, device, target,
                                                               f"{name}({dtype}): {prefix}{attr}")))
            for attr in module._buffers:
                value = getattr(module, attr)
                if value is not None and value.dtype.kind == "f":
                    changes.append((module, attr, False, _converted(value, dtype, device, target,
                                                                    f"{name}({dtype}): {prefix}{attr}")))
        for module, attr, is_parameter, value in changes:      # every value converted: now assign
            object.__setattr__(module, attr, parameter(value) if is_parameter else value)
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
        """Copy ``state`` into the parameters and buffers. Every entry is checked first (its
        name, its shape, that its dtype converts to the model's and that its values fit):
        on an error, which names the entry (and the file, for a state from ``nn.load``),
        nothing is changed."""
        where = f"load_state_dict({type(self).__name__})"
        source = getattr(state, "path", None)
        if source is not None:
            where += f" from {source}"
        if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
            raise TypeError(f"{where}: expected a dict of arrays (a state_dict() or nn.load(path)), "
                            f"got {type(state).__name__}")
        targets = {}
        for name, p in self.named_parameters():
            targets[name] = ("parameter", p)
        for name, module, attr in self._named_buffers():
            targets[name] = ("buffer", (module, attr))
        keys = list(state.keys())
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in keys if k not in targets]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys {missing}")
            if unexpected:
                parts.append(f"unexpected keys {unexpected}")
            raise KeyError(f"{where}: {' and '.join(parts)}; nothing "
                           f"was loaded (strict=False loads the keys that match)")
        updates = []
        for name, (kind, target) in targets.items():
            if name not in state:
                continue
            current = target.data if kind == "parameter" else getattr(*target)
            updates.append((kind, target, _loadable(where, name, state[name], current)))
        for kind, target, value in updates:                 # every entry checked: now copy
            if kind == "parameter":
                np.copyto(target.data, value)
            else:
                module, attr = target
                object.__setattr__(module, attr, value)

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


def _loadable(where, name, value, current):
    """``value`` (a state entry) as a new array of ``current``'s shape and dtype, or an error
    naming the entry: a shape that differs, a dtype of another kind (complex into float,
    float into int, text), a value that does not fit (1e39 into float32)."""
    nothing = "; nothing was loaded"
    if current is None:
        return None if value is None else np.array(value, copy=True)
    try:
        array = np.asarray(value)
    except Exception as error:
        raise TypeError(f"{where}: {name} is not an array ({type(error).__name__}: {error}){nothing}") from None
    if array.dtype.kind not in "biufc":
        raise TypeError(f"{where}: {name} has dtype {array.dtype} in the state, not numbers{nothing}")
    if array.shape != current.shape:
        raise ShapeError(f"{where}: {name} has shape {array.shape} in the state but {current.shape} in "
                         f"the model{nothing}")
    if not np.can_cast(array.dtype, current.dtype, "same_kind"):
        raise TypeError(f"{where}: {name} has dtype {array.dtype} in the state, which does not convert "
                        f"to the model's {current.dtype}{nothing}")
    try:
        return np.array(checked_cast(array, current.dtype, f"{where}: {name}"), copy=True)
    except OverflowError as error:
        raise OverflowError(f"{error}{nothing}") from None


class StateDict(OrderedDict):
    """The state dict ``load`` returns: an OrderedDict that remembers its file, so that
    ``load_state_dict`` can name it in an error."""

    path = None



def functional_call(module, parameters_and_buffers, args=(), kwargs=None, *, strict=False):
    """``module(*args, **kwargs)`` with the parameters and buffers named in
    ``parameters_and_buffers`` (a dict of dotted name -> array or variable, or a tuple of such
    dicts) in place of its own, for this call only (PyTorch's ``torch.func.functional_call``):
    the way to take ``grad`` or ``vmap`` of a model with respect to its parameters, or to run
    an ensemble of parameter sets. A parameter shared under two names is replaced under both.
    Unknown names raise KeyError; with ``strict``, so does a parameter or buffer left out. The
    module's own values are back when the call returns (or raises); the swap is not
    thread-safe: do not call the same module from two threads meanwhile.

    >>> import numpy as np, neuronika
    >>> from neuronika import nn
    >>> layer = nn.Linear(2, 1)
    >>> params = {"weight": np.array([[1.0, 2.0]]), "bias": np.array([0.5])}
    >>> neuronika.grad(lambda p, x: nn.functional_call(layer, p, (x,)).sum())(params, np.ones((3, 2)))["weight"]
    array([[3., 3.]])
    """
    if isinstance(parameters_and_buffers, (tuple, list)):
        given = {}
        for part in parameters_and_buffers:
            duplicated = set(given) & set(part)
            if duplicated:
                raise ValueError(f"functional_call: {sorted(duplicated)} given twice")
            given.update(part)
    else:
        given = dict(parameters_and_buffers)
    args = args if isinstance(args, tuple) else (args,)
    targets, by_node = {}, {}
    for prefix, owner in module.named_modules():
        for attr in owner._parameters:
            targets[prefix + attr] = (owner, attr)
            by_node.setdefault(getattr(owner, attr)._node, []).append(prefix + attr)
        for attr in owner._buffers:
            targets[prefix + attr] = (owner, attr)
    unknown = sorted(set(given) - set(targets))
    if unknown:
        raise KeyError(f"functional_call({type(module).__name__}): no parameter or buffer named "
                       f"{unknown}; the names are {list(targets)}")
    tied = {}
    for names in by_node.values():
        found = [n for n in names if n in given]
        for name in names:
            if name not in given and found:
                tied[name] = given[found[0]]
    values = {**tied, **given}
    if strict:
        missing = [name for name in targets if name not in values]
        if missing:
            raise KeyError(f"functional_call({type(module).__name__}): strict, but {missing} not given")
    saved = []
    try:
        for name, value in values.items():
            owner, attr = targets[name]
            saved.append((owner, attr, getattr(owner, attr)))
            if attr in owner._parameters and not isinstance(value, Var):
                value = _wrap(leaf(value if backend.space_of(value) is not None else np.asarray(value)))
            object.__setattr__(owner, attr, value)
        return module(*args, **(kwargs or {}))
    finally:
        for owner, attr, value in reversed(saved):
            object.__setattr__(owner, attr, value)


def stack_module_state(models):
    """The parameters and buffers of models of the same structure, stacked along a new axis 0:
    ``(params, buffers)``, two dicts of dotted name -> array, for ``vmap`` over an ensemble with
    ``functional_call`` (PyTorch's ``torch.func.stack_module_state``).

    >>> from neuronika import nn
    >>> params, buffers = nn.stack_module_state([nn.Linear(3, 2) for _ in range(4)])
    >>> params["weight"].shape
    (4, 2, 3)
    """
    models = list(models)
    if not models:
        raise ValueError("stack_module_state: no models given")
    names = [[n for n, _ in m.named_parameters()] for m in models]
    if any(n != names[0] for n in names):
        raise ValueError("stack_module_state: the models differ in their parameters' names")
    params = {name: np.stack([dict(m.named_parameters())[name].data for m in models])
              for name in names[0]}
    buffers = {}
    for name, _, _ in models[0]._named_buffers():
        values = [getattr(owner, attr) for m in models for n, owner, attr in m._named_buffers() if n == name]
        if all(v is not None for v in values):
            buffers[name] = np.stack(values)
    return params, buffers


def load(path) -> "OrderedDict[str, np.ndarray]":
    """Read a state dict written by ``Module.save`` (``.npz``, no pickle).

    Every array is read here: a missing, truncated or corrupt file, or one holding
    pickled objects, raises an error naming the file and what is wrong (FileNotFoundError,
    or ValueError), and no partial state is returned.
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    if not os.path.exists(path):
        raise FileNotFoundError(f"nn.load: {path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"nn.load: {path} is a directory, not a .npz file")
    with open(path, "rb") as handle:
        head = handle.read(6)
    if not head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        what = ("an empty file" if not head else
                "a .npy file (one array), not a .npz archive of named arrays" if head == b"\x93NUMPY"
                else "not a .npz archive (it does not start as a zip file: corrupt, or another format)")
        raise ValueError(f"nn.load: {path} is {what}")
    state = StateDict()
    entry = None
    try:
        with np.load(path, allow_pickle=False) as archive:
            expected = _entry_count(path)
            if expected is not None and expected != len(archive.files):
                raise zipfile.BadZipFile(f"its directory lists {expected} entries, {len(archive.files)} "
                                         f"of them readable")
            for entry in archive.files:
                state[entry] = archive[entry]
    except Exception as error:         # whatever a damaged archive makes zipfile or NumPy raise
        text = str(error)
        if "pickle" in text:
            why = "it holds pickled Python objects, which are never loaded (arrays of numbers only)"
        else:
            why = f"the file is truncated or corrupt ({type(error).__name__}: {text})"
        at = f" (entry {entry!r})" if entry is not None else ""
        raise ValueError(f"nn.load: {path} cannot be read{at}: {why}") from None
    state.path = path
    return state


def _entry_count(path):
    """The number of entries a zip file's end record announces (None for zip64 files, whose
    count is elsewhere): zipfile reads the directory without checking it against this."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - (1 << 16) - 22))
        tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        raise zipfile.BadZipFile("it has no end-of-archive record")
    count = int.from_bytes(tail[at + 10:at + 12], "little")
    return None if count == 0xFFFF else count


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
