"""Functional optimizers (optax's shape): the state is a tree of arrays, ``update`` returns
the updates and the new state, and nothing is changed in place.

``opt.update`` is written with operators and ``neuronika.numpy`` functions only, so the
same code runs eagerly on NumPy arrays and, inside ``neuronika.jit``, on variables: a whole
training step (forward, backward, update) is then one compiled program. The step count is
an array of the state, so Adam's bias correction does not trace again as it grows.

The learning rate is a Python number (a constant of the program), an array or a traced
value (an argument of the jitted step: a new value does not trace again), or a schedule:
a function of the step count (1 at the first update) evaluated inside the program.

The rules are the imperative optimizers' (``optim.SGD``, ``Adam``, ``AdamW``, PyTorch's),
written in the same order of operations, so the two agree to rounding.

>>> import numpy as np
>>> from neuronika import optim
>>> params = {"w": np.array([1.0, 2.0])}
>>> opt = optim.sgd(lr=0.1)
>>> state = opt.init(params)
>>> updates, state = opt.update({"w": np.array([1.0, -1.0])}, state, params)
>>> optim.apply_updates(params, updates)
{'w': array([0.9, 2.1])}
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import backend
from .. import numpy as nnp
from ..tracing import rebuild_tree, same_structure, tree_of
from ..variable import Var

__all__ = ["FunctionalOptimizer", "sgd", "adam", "adamw", "apply_updates"]


def _flat(tree, what, like=None, where="update", against="the gradients"):
    """The arrays of a tree (dicts, lists, tuples, nested) and its structure; with ``like``
    (a structure), checked to have it."""
    parts = []
    structure = tree_of(tree, parts)
    if like is not None and not same_structure(structure, like):
        raise ValueError(f"{where}: {what} does not have the structure of {against} (the same "
                         f"nesting of dicts, lists and tuples, with the same keys)")
    return parts, structure


def _is_array(p):
    return hasattr(p, "shape") and hasattr(p, "dtype")


def _zeros(p):
    if not _is_array(p):
        return None              # a leaf that is no array (a name, None): no state, no update
    if backend.foreign(p):
        return backend.zeros(tuple(p.shape), backend.space_of(p).numpy_dtype(p.dtype), backend.space_of(p))
    return np.zeros(np.shape(p), p.dtype)


def _xp(x):
    """The functions for ``x``: neuronika.numpy for a variable (inside jit), NumPy for NumPy's
    arrays, the array's own namespace for another library's (eagerly)."""
    if isinstance(x, Var):
        return nnp
    return backend.space_of(x).xp if backend.foreign(x) else np


class _InDtype:
    """Hyper-parameters in the dtype of the arrays they scale: a Python number as it is (weakly
    typed), an array or variable converted (once per dtype), so a float64 count never makes
    float32 updates float64."""

    def __init__(self, **values):
        self.values = values
        self.converted = {}

    def __call__(self, name, like):
        value = self.values[name]
        if value.__class__ in (int, float) or value.dtype == like.dtype:
            return value
        key = (name, like.dtype)
        found = self.converted.get(key)
        if found is None:
            found = self.converted[key] = _astype(value, like.dtype)
        return found


def _astype(x, dtype):
    if isinstance(x, (np.ndarray, np.generic, Var)):
        return x.astype(dtype)
    space = backend.space_of(x)     # another library's array: its dtype, or NumPy's named there
    return space.xp.astype(x, space.dtype(dtype) if isinstance(dtype, (np.dtype, type)) else dtype)


def _number(name, label, value, low=0.0, high=math.inf):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name}: {label} must be a finite number, got {value!r}")
    if not low <= value < high:
        raise ValueError(f"{name}: invalid {label} {value!r} (must be in [{low}, {high}))")
    return value


def _learning_rate(name, lr):
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        return _number(name, "learning rate", lr)
    if callable(lr) or hasattr(lr, "dtype"):
        return lr            # a schedule, or a value (an array; a variable inside jit)
    raise TypeError(f"{name}: lr must be a number, an array or a schedule (a function of the step "
                    f"count), got {type(lr).__name__}")


class FunctionalOptimizer:
    """An optimizer as two functions: ``init(params) -> state`` and
    ``update(grads, state, params) -> (updates, state)``; ``apply_updates(params, updates)``
    adds the updates. Immutable: its options are constants of a jitted program. Leaves of
    the parameters that are not arrays (a name, None) get no state, and a None gradient
    (what ``grad`` gives for them) no update."""

    __slots__ = ("name", "lr", "options")

    def __init__(self, name, lr, options):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "lr", _learning_rate(name, lr))
        object.__setattr__(self, "options", options)

    def __setattr__(self, key, value):
        raise AttributeError(f"{self.name}: a functional optimizer is immutable (a jitted step keeps its "
                             f"options as constants); make a new one, or pass the learning rate as a "
                             f"value or a schedule")

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"optim.{self.name}(lr={self.lr!r}, {options})"

    def _rate(self, count):
        return self.lr(count) if callable(self.lr) else self.lr

    def init(self, params):
        """The state for ``params`` (a tree of arrays): the step count and the moments."""
        parts, structure = _flat(params, "params")
        arrays = [p for p in parts if _is_array(p)]
        # the count lives with the parameters (another array library's, or NumPy)
        space = backend.space_of(arrays[0]) if arrays and backend.foreign(arrays[0]) else None
        state = {"count": backend.zeros((), np.int64, space)}
        for slot in self._slots():
            state[slot] = rebuild_tree(structure, iter([_zeros(p) for p in parts]))
        return state

    def update(self, grads, state, params=None):
        """``(updates, new_state)`` for gradients ``grads`` (a tree shaped like the parameters);
        ``params`` is needed for weight decay."""
        where = f"{self.name}.update"
        g_parts, structure = _flat(grads, "grads")
        if not isinstance(state, dict) or "count" not in state:
            raise TypeError(f"{where}: state must be the dict that init() made (with a 'count'), "
                            f"got {type(state).__name__}")
        if params is None:
            if self.options.get("weight_decay"):
                raise TypeError(f"{where}: weight_decay needs the parameters: update(grads, state, params)")
            p_parts = [None] * len(g_parts)
        else:
            p_parts, _ = _flat(params, "params", structure, where)
        slots = {slot: _flat(state[slot], f"state[{slot!r}]", structure, where)[0] for slot in self._slots()}
        count = state["count"] + 1
        updates, new = self._rule(count, g_parts, p_parts, slots)
        new_state = {"count": count}
        for slot in self._slots():
            new_state[slot] = rebuild_tree(structure, iter(new[slot]))
        return rebuild_tree(structure, iter(updates)), new_state


class _SGD(FunctionalOptimizer):
    __slots__ = ()

    def _slots(self):
        return ("trace",) if self.options["momentum"] else ()

    def _rule(self, count, grads, params, slots):
        momentum, nesterov = self.options["momentum"], self.options["nesterov"]
        wd = self.options["weight_decay"]
        typed = _InDtype(rate=-self._rate(count))     # negated once: -(lr * g) == (-lr) * g exactly
        updates, traces = [], []
        for k, (g, p) in enumerate(zip(grads, params)):
            if g is None:
                updates.append(None)
                traces.append(slots["trace"][k] if momentum else None)
                continue
            if wd:
                g = g + wd * p
            if momentum:
                b = momentum * slots["trace"][k] + g      # from zeros: g at the first step
                traces.append(b)
                g = g + momentum * b if nesterov else b
            updates.append(typed("rate", g) * g)
        return updates, {"trace": traces}


class _Adam(FunctionalOptimizer):
    __slots__ = ()

    def _slots(self):
        return ("mu", "nu")

    def _rule(self, count, grads, params, slots):
        (b1, b2), eps = self.options["betas"], self.options["eps"]
        wd, decoupled = self.options["weight_decay"], self.name == "adamw"
        lr = self._rate(count)
        t = _astype(count, np.float64)       # a float ** an int array: not in every array library
        typed = _InDtype(step_size=-(lr / (1 - b1 ** t)), root=_xp(t).sqrt(1 - b2 ** t), decay=lr * wd)
        updates, mus, nus = [], [], []
        for g, p, m, v in zip(grads, params, slots["mu"], slots["nu"]):
            if g is None:
                updates.append(None)
                mus.append(m)
                nus.append(v)
                continue
            if wd and not decoupled:
                g = g + wd * p
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            mus.append(m)
            nus.append(v)
            u = typed("step_size", g) * m / (_xp(v).sqrt(v) / typed("root", g) + eps)
            if wd and decoupled:
                u = u - typed("decay", p) * p
            updates.append(u)
        return updates, {"mu": mus, "nu": nus}


def sgd(lr, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> FunctionalOptimizer:
    """SGD, as ``optim.SGD``: ``g += weight_decay * w``; with momentum ``b = momentum * b + g``
    and ``g = b`` (Nesterov: ``g + momentum * b``); the update is ``-lr * g``.

    >>> import numpy as np
    >>> from neuronika import optim
    >>> opt = optim.sgd(lr=0.5, momentum=0.9)
    >>> w = np.array([1.0]); state = opt.init(w)
    >>> for _ in range(2):
    ...     updates, state = opt.update(np.array([1.0]), state, w)
    ...     w = optim.apply_updates(w, updates)
    >>> w
    array([-0.45])
    """
    _number("sgd", "momentum", momentum)
    _number("sgd", "weight_decay", weight_decay)
    if nesterov and momentum <= 0:
        raise ValueError(f"sgd: Nesterov momentum requires a momentum > 0, got momentum={momentum!r}")
    return _SGD("sgd", lr, dict(momentum=momentum, nesterov=bool(nesterov), weight_decay=weight_decay))


def _adam_options(name, betas, eps, weight_decay):
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{name}: betas must be a pair (beta1, beta2), got {betas!r}") from None
    _number(name, "beta1", b1, high=1.0)
    _number(name, "beta2", b2, high=1.0)
    _number(name, "eps", eps)
    _number(name, "weight_decay", weight_decay)
    return dict(betas=(b1, b2), eps=eps, weight_decay=weight_decay)


def adam(lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0) -> FunctionalOptimizer:
    """Adam, as ``optim.Adam`` (``weight_decay`` added to the gradient, L2 style)::

        m = b1 * m + (1 - b1) * g;   v = b2 * v + (1 - b2) * g * g
        update = -lr / (1 - b1 ** t) * m / (sqrt(v) / sqrt(1 - b2 ** t) + eps)

    >>> import numpy as np
    >>> from neuronika import optim
    >>> opt = optim.adam(lr=0.1)
    >>> w = np.array([1.0]); state = opt.init(w)
    >>> updates, state = opt.update(np.array([3.0]), state, w)
    >>> updates.round(6), int(state["count"])
    (array([-0.1]), 1)
    """
    return _Adam("adam", lr, _adam_options("adam", betas, eps, weight_decay))


def adamw(lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2) -> FunctionalOptimizer:
    """AdamW, as ``optim.AdamW``: Adam with decoupled weight decay (the update also holds
    ``-lr * weight_decay * w``; the gradient is not decayed).

    >>> import numpy as np
    >>> from neuronika import optim
    >>> opt = optim.adamw(lr=0.1, weight_decay=0.5)
    >>> w = np.array([1.0]); state = opt.init(w)
    >>> updates, state = opt.update(np.array([3.0]), state, w)
    >>> updates.round(6)
    array([-0.15])
    """
    return _Adam("adamw", lr, _adam_options("adamw", betas, eps, weight_decay))


def apply_updates(params, updates):
    """``params + updates``, leaf by leaf, for trees of the same structure (a None update
    leaves its parameter as it is).

    >>> import numpy as np
    >>> from neuronika import optim
    >>> optim.apply_updates([np.array([1.0])], [np.array([0.5])])
    [array([1.5])]
    """
    p_parts, structure = _flat(params, "params", where="apply_updates")
    u_parts, _ = _flat(updates, "updates", structure, "apply_updates", "params")
    return rebuild_tree(structure, iter([p if u is None else p + u for p, u in zip(p_parts, u_parts)]))
