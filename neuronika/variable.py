"""Var, VarDiff and Param: thin handles over graph nodes.

This module holds what a handle is: its value, its gradient, evaluation and
backward, conversion to Python values. The operators and the NumPy-like
methods are ``neuronika.numpy`` functions, which that package installs on
``Var`` when it is imported (it builds variables, so it sits above this module).

Building with these computes shapes and dtypes only; values come from
``forward()`` (or from reading ``.data``), gradients from ``backward()``.
"""
from __future__ import annotations

import contextlib
import itertools
import math
import operator
import os
import sys
import weakref

import numpy as np

from . import backend
from .errors import GradientError, ShapeError
from .graph import (ANOMALY, GRAD_ENABLED, NUMPY, USER, apply, differentiable_leaves, format_where, leaf,
                    modes, origin, user_line, walk)
from .ops import OPS
from .transform import run


def _located(message, kind=ShapeError):
    """An exception whose message ends with the user's file and line."""
    return kind(f"{message} (at {format_where(user_line())})")


def _wrap(node):
    handle = object.__new__(VarDiff if node.requires_grad else Var)
    handle._node = node
    return handle


class Var:
    """A value in the graph that needs no gradient.

    >>> import neuronika
    >>> x = neuronika.ones((2, 2))
    >>> y = (x + 1) * 3
    >>> y.data
    array([[6., 6.],
           [6., 6.]], dtype=float32)
    """

    __slots__ = ("_node", "__weakref__")

    # ---- value and metadata ---------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        """The value as an array (NumPy's, or that of the library the variable lives in:
        ``device``); on a leaf, assigning copies the new values in place.

        On a result, the value its last ``forward()`` or ``backward()`` computed (a node
        never evaluated is evaluated when read). The values inside a graph are not kept,
        so reading an intermediate evaluates it again from the current leaf values: with
        dropout behind it, with a new mask.
        """
        node = self._node
        tracer = modes.tracer
        if tracer is not None and origin(sys._getframe(1).f_code.co_filename) == USER and tracer.depends(node):
            raise GradientError(
                f"v.data of a traced variable (at {format_where(user_line())}): its value would become a "
                f"constant of the compiled program, the first call's for every later one; use "
                f"neuronika's operations on the variable (float(v) / int(v) give a Python number "
                f"that is checked on each call; neuronika.stop_gradient(v) or v.detach() a value "
                f"without gradient)")
        value = node.value
        if value is None:
            value = run.evaluate(node)
        if value.__class__ is not np.ndarray and node.space is None:
            # Generated code may leave a NumPy scalar (x.sum() gives one); users get arrays.
            value = node.value = np.asarray(value)
        return value

    @data.setter
    def data(self, value):
        node = self._node
        if node.op is not None:
            raise GradientError("data: only a leaf's data can be assigned; this variable is "
                                f"the result of {node.op.name}")
        value = np.asarray(value) if node.space is None else backend.move(value, node.space)
        if tuple(value.shape) != node.shape:
            raise ShapeError(f"data: cannot assign an array of shape {value.shape} to a leaf of "
                             f"shape {node.shape}")
        if node.space is None:
            np.copyto(node.value, value, casting="same_kind")
        else:
            node.value[...] = value

    @property
    def shape(self) -> tuple:
        return self._node.shape

    @property
    def ndim(self) -> int:
        return len(self._node.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._node.dtype

    @property
    def size(self) -> int:
        return math.prod(self._node.shape)

    @property
    def device(self):
        """Where the value lives: ``"cpu"`` for NumPy, else its array library's device.

        >>> import neuronika
        >>> neuronika.ones(2).device
        'cpu'
        """
        space = self._node.space
        return "cpu" if space is None else space.device

    def to(self, device=None, dtype=None) -> "Var":
        """The variable on ``device`` (``"cpu"``: NumPy; ``"cuda"`` / ``"cuda:N"``: CuPy; or an
        array-API namespace such as ``array_api_strict``) and/or in ``dtype``: a new leaf over a
        copy (itself when nothing changes). A differentiable leaf gives a differentiable leaf
        (its own gradient); a computed value needing a gradient cannot move (no op copies
        between devices): move the leaves it is computed from.

        >>> import neuronika, numpy as np
        >>> x = neuronika.ones(2)
        >>> x.to("cpu") is x
        True
        >>> x.to(dtype=np.float64).dtype
        dtype('float64')
        """
        node = self._node
        target = node.space if device is None else backend.resolve(device)
        dtype = node.dtype if dtype is None else np.dtype(dtype)
        if target is node.space and dtype == node.dtype:
            return self
        if node.op is not None and node.requires_grad:
            raise GradientError(f"to: this variable is the result of {node.op.name} and needs a gradient, "
                                f"which cannot flow between devices; move the leaves it is computed "
                                f"from (or detach() it first)")
        value = self.data
        if dtype != node.dtype:
            value = (value.astype(dtype) if node.space is None
                     else node.space.xp.astype(value, node.space.dtype(dtype)))
        value = backend.move(value, target)
        return _wrap(leaf(value, requires_grad=node.requires_grad))

    @property
    def is_leaf(self) -> bool:
        return self._node.op is None

    def __len__(self):
        if not self._node.shape:
            raise TypeError("len() of a 0-dim variable")
        return self._node.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def _observe(self, kind):
        """A Python-level value read from the graph; inside a trace, it is guarded."""
        data = self.data
        space = self._node.space
        if space is not None and math.prod(data.shape) == 1:
            data = space.xp.reshape(data, ())       # (the standard converts 0-d arrays only)
        value = {"bool": bool, "float": float, "int": int, "complex": complex}[kind](
            data.item() if space is None and data.size == 1 else data)
        if modes.tracer is not None:
            modes.tracer.observe(self._node, kind, value)
        return value

    def item(self):
        """The value of a one-element variable as a Python number."""
        kind = self.dtype.kind
        if modes.tracer is not None or self._node.space is not None:
            value = self._observe("int" if kind in "iu" else "bool" if kind == "b" else
                                  "complex" if kind == "c" else "float")
            return value
        return self.data.item()

    def __float__(self):
        return self._observe("float")

    def __int__(self):
        return self._observe("int")

    def __complex__(self):
        return self._observe("complex")

    def __index__(self):
        if self.dtype.kind not in "iu":
            raise TypeError(f"only integer variables can be used as an index, not {self.dtype}")
        return self._observe("int")

    def __bool__(self):
        return self._observe("bool")

    def __array__(self, dtype=None, copy=None):
        tracer = modes.tracer
        if tracer is not None and tracer.depends(self._node):
            raise GradientError(
                "a traced variable was converted to a NumPy array (np.asarray, np.int64(v), a NumPy "
                "function, ...), which would make its value a constant of the trace; use neuronika's "
                "operations on it inside a function given to neuronika.grad (to change the dtype, "
                "v.astype(np.int64))")
        if self._node.requires_grad:
            caller = sys._getframe(1).f_code
            if origin(caller.co_filename) == NUMPY:
                # NumPy's own Python code (numpy.r_, ...) converting the variable: the user did
                # not ask to leave the graph, and the gradient would be lost without a word.
                raise TypeError(
                    f"NumPy's {caller.co_name} (in {os.path.basename(caller.co_filename)}) converted "
                    f"a variable that needs a gradient to an array, which would lose the gradient; use "
                    f"the neuronika.numpy function of the same name, or numpy.asarray(v) to leave the "
                    f"graph on purpose (at {format_where(user_line())})")
        data = self.data
        if self._node.space is not None:
            data = backend.to_numpy(data, self._node.space)
        return data if dtype is None else data.astype(dtype)

    def __repr__(self):
        name = type(self).__name__
        space = self._node.space
        body = np.array2string(backend.to_numpy(self.data, space), separator=", ", prefix=name + "(")
        dtype = "" if self.dtype == np.float32 else f", dtype={self.dtype}"
        device = "" if space is None else f", space={space.name}"
        return f"{name}({body}{dtype}{device})"

    # ---- in-place operators -------------------------------------------------------------
    def __iadd__(self, other):
        return _in_place(self, other, np.add, "+")

    def __isub__(self, other):
        return _in_place(self, other, np.subtract, "-")

    def __imul__(self, other):
        return _in_place(self, other, np.multiply, "*")

    def __itruediv__(self, other):
        return _in_place(self, other, np.true_divide, "/")

    def __ifloordiv__(self, other):
        return _in_place(self, other, np.floor_divide, "//")

    def __imod__(self, other):
        return _in_place(self, other, np.remainder, "%")

    def __ipow__(self, other):
        return _in_place(self, other, np.power, "**")

    # ---- evaluation ---------------------------------------------------------------------
    def forward(self) -> None:
        """Evaluate this node and everything behind it from the current leaf values."""
        run.evaluate(self._node)

    def backward(self, seed=1.0) -> None:
        """Refused: a Var needs no gradient (the error says how to get a VarDiff)."""
        run.backpropagate(self._node, seed)

    def requires_grad(self) -> "VarDiff":
        """A differentiable leaf over the same data.

        >>> import neuronika
        >>> w = neuronika.ones(3).requires_grad()
        >>> type(w).__name__
        'VarDiff'
        """
        node = self._node
        if node.op is not None:
            raise GradientError(f"requires_grad: only a leaf can be made differentiable; this "
                                f"variable is the result of {node.op.name} (use detach() first "
                                f"to get a leaf over its value)")
        if node.dtype.kind not in "fc":
            raise GradientError(f"requires_grad: a leaf of dtype {node.dtype} cannot be "
                                f"differentiable; convert it to a float (or complex) dtype first")
        return _wrap(leaf(node.value, requires_grad=True))

    def detach(self) -> "Var":
        """A non-differentiable leaf over the same value (the value is computed if needed);
        inside a traced function, ``stop_gradient`` of it (its value is computed on each call)."""
        tracer = modes.tracer
        if tracer is not None and tracer.depends(self._node):
            return stop_gradient(self)
        return _wrap(leaf(self.data))

    def source(self) -> str:
        """The generated forward (and backward) Python that evaluates this graph."""
        return run.source(self._node)

    def train(self) -> None:
        """Set every dropout behind this variable to training status (masks are drawn)."""
        _set_training(self._node, True)

    def eval(self) -> None:
        """Set every dropout behind this variable to evaluation status (the identity)."""
        _set_training(self._node, False)


class VarDiff(Var):
    """A value in the graph that needs a gradient: a differentiable leaf, or
    anything computed from one.

    >>> import neuronika
    >>> w = neuronika.full((2,), 3.0).requires_grad()
    >>> loss = (w * w).sum()
    >>> loss.backward()
    >>> w.grad
    array([6., 6.], dtype=float32)
    """

    __slots__ = ()

    @property
    def grad(self) -> np.ndarray:
        """The gradient (of the node's shape); zeros until a backward reaches it."""
        node = self._node
        if node.op is not None and not node.retain:
            raise GradientError(f"grad: this variable is the result of {node.op.name}, not a leaf; "
                                f"its gradient is not kept unless you call .retain_grad() before "
                                f"backward()")
        if _pending:
            _settle(node)
        if node.grad is None:
            node.grad = backend.zeros(node.shape, node.dtype, node.space)
        return node.grad

    @grad.setter
    def grad(self, value):
        """Set the gradient (an array of the node's shape); ``None`` resets it, as
        ``zero_grad()``: the next backward assigns a fresh array."""
        _set_grad(self._node, value)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (reads as zeros until the next backward)."""
        if _pending:
            _settle(self._node)
        self._node.grad = None

    def retain_grad(self) -> None:
        """Keep this non-leaf's gradient on each backward (replaced, not accumulated)."""
        node = self._node
        if node.op is not None and not node.retain:
            node.retain = True
            node.rekey()

    def backward(self, seed=1.0) -> None:
        """Add the gradient of ``seed . self`` into every differentiable leaf behind it.

        ``seed`` is a number (broadcast over the value) or an array of its shape.
        Evaluates first if this variable was never evaluated.
        """
        if _pending:                     # it may add into a gradient still being completed
            wait_grads()
        run.backpropagate(self._node, seed)
        if _hooks_registered[0]:
            _run_post_accumulate_hooks(self._node)

    def register_post_accumulate_grad_hook(self, hook) -> "HookHandle":
        """Call ``hook(param)`` (``param``: this leaf as a ``Param``) after every ``backward()``
        that wrote this leaf's gradient, once per backward; ``.remove()`` on the returned
        handle unregisters it. All the leaf gradients of one backward are written by one
        generated program, so they become final together: the hooks run after it, in the
        leaves' creation order (DistributedDataParallel starts its all-reduces here).

        >>> import neuronika
        >>> w = neuronika.ones(2).requires_grad()
        >>> handle = w.register_post_accumulate_grad_hook(lambda p: print("ready", p.grad))
        >>> (w * 3).sum().backward()
        ready [3. 3.]
        >>> handle.remove()
        """
        node = self._node
        if node.op is not None:
            raise GradientError(f"register_post_accumulate_grad_hook: this variable is the result of "
                                f"{node.op.name}, not a leaf; only leaves accumulate a gradient")
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                            f"{type(hook).__name__}")
        handle = HookHandle(node)
        _post_accumulate_hooks.setdefault(node, {})[handle.key] = hook
        _hooks_registered[0] += 1
        return handle

    def parameters(self) -> list:
        """The differentiable leaves behind this variable, each once, in creation order."""
        return [Param(node) for node in differentiable_leaves(self._node)]


def _in_place(var, other, ufunc, symbol):
    """``var <symbol>= other``, PyTorch's way: a leaf's data is updated in place under
    ``no_grad()`` (or when it needs no gradient); anything that would lose a gradient
    or change a value a graph computed is refused."""
    node = var._node
    if node.op is not None:
        raise GradientError(
            f"in-place {symbol}= on the result of {node.op.name}: a computed variable cannot be "
            f"changed in place; write y = y {symbol} ... to build a new variable (at "
            f"{format_where(user_line())})")
    if modes.tracer is not None:
        raise GradientError(
            f"in-place {symbol}= inside a function traced by neuronika's transformations: the "
            f"update would not be part of the compiled program; write x = x {symbol} ... (at "
            f"{format_where(user_line())})")
    grad_enabled = GRAD_ENABLED.get()
    if node.requires_grad and grad_enabled:
        raise GradientError(
            f"a leaf Variable that requires grad is being used in an in-place operation "
            f"({symbol}=); update it inside `with neuronika.no_grad():`, or write "
            f"w = w {symbol} ... to build a new variable (at {format_where(user_line())})")
    if isinstance(other, Var):
        if other._node.requires_grad and grad_enabled:
            raise GradientError(
                f"in-place {symbol}= of a variable that needs a gradient into a leaf would lose "
                f"that gradient; write x = x {symbol} ... to build a new variable, or update "
                f"inside `with neuronika.no_grad():` (at {format_where(user_line())})")
        other = other.data
    target = node.value
    if node.space is not None:
        return _in_place_on(var, node, target, other, symbol)
    if not target.flags.writeable:
        raise ValueError(f"in-place {symbol}=: this leaf's data is a read-only array (at "
                         f"{format_where(user_line())})")
    try:
        ufunc(target, other, out=target, casting="same_kind")
    except TypeError as error:
        raise TypeError(f"in-place {symbol}= on a leaf of dtype {node.dtype}: {error} (at "
                        f"{format_where(user_line())})") from None
    except ValueError as error:
        raise ShapeError(f"in-place {symbol}=: an operand of shape {np.shape(other)} does not fit "
                         f"a leaf of shape {node.shape} ({error}) (at {format_where(user_line())})") from None
    return var


_IN_PLACE = {"+": operator.iadd, "-": operator.isub, "*": operator.imul, "/": operator.itruediv,
             "//": operator.ifloordiv, "%": operator.imod, "**": operator.ipow}


def _in_place_on(var, node, target, other, symbol):
    """``_in_place`` for a leaf over another library's array: its in-place operator."""
    if not isinstance(other, (int, float, complex)):
        other = backend.move(other, node.space)
    try:
        result = _IN_PLACE[symbol](target, other)
    except (TypeError, ValueError) as error:
        raise TypeError(f"in-place {symbol}= on a leaf of {backend.name(node.space)}, dtype {node.dtype}: "
                        f"{error} (at {format_where(user_line())})") from None
    if result is not target:
        raise TypeError(f"in-place {symbol}=: {backend.name(node.space)} did not update the array in place")
    return var


def _set_grad(node, value):
    if _pending:
        _settle(node)
    if value is None:
        node.grad = None
        return
    if node.space is None:
        value = np.array(value, dtype=node.dtype)
    else:
        value = node.space.xp.astype(backend.move(value, node.space), node.space.dtype(node.dtype), copy=True)
    if tuple(value.shape) != node.shape:
        raise ShapeError(f"grad: cannot set a gradient of shape {value.shape} on a value of "
                         f"shape {node.shape}")
    node.grad = value


class Param(VarDiff):
    """A differentiable leaf as an optimizer sees it: a VarDiff in every respect
    (operators, methods, ``.data`` and ``.grad`` as the live arrays, updated in place),
    compared and hashed by the leaf it stands for, so that optimizers can key state on it.

    >>> import neuronika
    >>> w = neuronika.ones(2).requires_grad()
    >>> (w * 2).sum().backward()
    >>> for p in (w * 2).sum().parameters():
    ...     with neuronika.no_grad():
    ...         p -= 0.1 * p.grad
    >>> w.data
    array([0.8, 0.8], dtype=float32)
    """

    __slots__ = ()

    def __init__(self, node):
        self._node = node

    @property
    def var(self) -> VarDiff:
        """The leaf as a plain VarDiff."""
        return _wrap(self._node)

    def __eq__(self, other):
        return isinstance(other, Param) and other._node is self._node

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return id(self._node)


def stop_gradient(x) -> Var:
    """The value of ``x`` as a Var: no gradient flows back through it.

    >>> import neuronika
    >>> w = neuronika.full(2, 3.0).requires_grad()
    >>> loss = (w * neuronika.stop_gradient(w)).sum()
    >>> loss.backward()
    >>> w.grad
    array([3., 3.], dtype=float32)
    """
    if not isinstance(x, Var):
        return _wrap(leaf(np.asarray(x)))
    return _wrap(apply(OPS["stop_gradient"], (x._node,)))


# ---- gradient hooks and pending gradients -----------------------------------------------------------
# Both are empty unless something (such as DistributedDataParallel) registers; the hot paths test
# plain containers (a WeakKeyDictionary's truth test costs ~0.1 us). With hooks registered, a
# backward walks its graph once to find the hooked leaves. Pending entries are short-lived (popped
# when the gradient is next read, or by the next backward), so a plain dict holds them.

_post_accumulate_hooks = weakref.WeakKeyDictionary()    # leaf node -> {handle key: hook}
_hooks_registered = [0]                                 # handles not removed, of living leaves
_pending = {}                                           # leaf node -> settle(), completes its gradient
_hook_keys = itertools.count()


class HookHandle:
    """What ``register_post_accumulate_grad_hook`` returns: ``remove()`` unregisters the hook
    (as does the leaf's end)."""

    __slots__ = ("_node", "key", "_finalizer")

    def __init__(self, node):
        self._node = weakref.ref(node)
        self.key = next(_hook_keys)
        self._finalizer = weakref.finalize(node, HookHandle._forget, self)

    def _forget(self):
        if self.key is not None:
            self.key = None
            _hooks_registered[0] -= 1

    def remove(self) -> None:
        key = self.key
        self._finalizer.detach()
        self._forget()
        node = self._node()
        hooks = None if node is None or key is None else _post_accumulate_hooks.get(node)
        if hooks is not None:
            hooks.pop(key, None)
            if not hooks:
                del _post_accumulate_hooks[node]


def _run_post_accumulate_hooks(root):
    """Call the hooks of the leaves that the backward from ``root`` wrote: the differentiable
    leaves reached through nodes that need a gradient (a gradient stops where none is needed)."""
    found = []
    seen = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node in seen or not node.requires_grad:
            continue
        seen.add(node)
        if node.op is None:
            if node in _post_accumulate_hooks:
                found.append(node)
        else:
            stack.extend(node.inputs)
    found.sort(key=lambda node: node.serial)
    for node in found:
        for hook in list(_post_accumulate_hooks.get(node, {}).values()):
            hook(Param(node))


def defer_grad(var: VarDiff, settle) -> None:
    """Mark the gradient of the leaf ``var`` as incomplete until ``settle()`` has run (an
    all-reduce in flight, say). Whatever reads the gradient (``.grad``, ``grad_or_none``,
    the optimizers, gradient clipping), replaces it (``zero_grad()``, ``.grad = ...``) or adds
    into it (the next ``backward()``) first calls ``settle()``, once; ``settle`` leaves the
    final gradient in place and may be called for several leaves (make it idempotent).
    Registering again replaces the previous callable.

    >>> import neuronika
    >>> from neuronika.variable import defer_grad
    >>> w = neuronika.ones(2).requires_grad()
    >>> (w * 3).sum().backward()
    >>> defer_grad(w, lambda: print("settled"))
    >>> w.grad
    settled
    array([3., 3.], dtype=float32)
    """
    node = var._node
    if node.op is not None or not node.requires_grad:
        raise GradientError("defer_grad: only a differentiable leaf has a gradient to complete")
    if not callable(settle):
        raise TypeError(f"defer_grad: settle must be callable, got {type(settle).__name__}")
    _pending[node] = settle


def _settle(node):
    settle = _pending.pop(node, None)
    if settle is not None:
        settle()


def wait_grads(variables=None) -> None:
    """Complete the pending gradients (``defer_grad``) of ``variables``, or of every leaf."""
    nodes = list(_pending) if variables is None else [v._node for v in variables]
    for node in nodes:
        _settle(node)


def grad_or_none(var: VarDiff):
    """The leaf's gradient once complete, or None if no backward wrote one since it was
    zeroed (unlike ``.grad``, which reads as zeros then). What optimizers read."""
    node = var._node
    if _pending:
        _settle(node)
    return node.grad


# ---- modes ----------------------------------------------------------------------------------------

def _set_training(root, training):
    for node in walk(root):
        if node.op is not None and node.op.name == "dropout" and node.attrs[1] != training:
            node.attrs = (node.attrs[0], training)
            node.rekey()


class _Switch(contextlib.ContextDecorator):
    """Sets a mode's ContextVar for the ``with`` block (or the decorated call) and resets
    it with its token on the way out, exceptions included; per thread and asyncio task."""

    _var = None
    _value = None

    def __init__(self):
        self._tokens = []

    def _recreate_cm(self):
        return type(self)()              # one instance per decorated call: reentrant, thread-safe

    def __enter__(self):
        var = self._var
        self._tokens.append((var.get(), var.set(self._value)))
        return self

    def __exit__(self, *exc):
        previous, token = self._tokens.pop()
        try:
            self._var.reset(token)
        except ValueError:               # entered in another context (one instance shared)
            self._var.set(previous)
        return False


class no_grad(_Switch):
    """Inside, operations build only Vars: nothing is recorded for a backward.
    The switch is the current thread's (and asyncio task's) only.

    >>> import neuronika
    >>> w = neuronika.ones(2).requires_grad()
    >>> with neuronika.no_grad():
    ...     y = w * 2
    >>> type(y).__name__
    'Var'
    """

    _var = GRAD_ENABLED
    _value = False


class detect_anomaly(_Switch):
    """Inside, generated code checks every op's output (and gradient) for NaN and Inf
    and raises ``AnomalyError`` naming the first op that made one. Programs compiled
    this way are separate cache entries, so normal runs pay nothing. The switch is
    the current thread's (and asyncio task's) only."""

    _var = ANOMALY
    _value = True


__all__ = ["Var", "VarDiff", "Param", "no_grad", "detect_anomaly", "stop_gradient", "HookHandle", "defer_grad",
           "wait_grads", "grad_or_none"]
