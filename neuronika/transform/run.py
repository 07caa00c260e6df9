"""Running programs on a graph: the hot path of ``forward()`` and ``backward()``.

On a cache hit this is: linearise the graph (order + signature), one dict
look-up, one call of the generated forward, and for backward one call of the
generated backward plus a loop that adds each gradient into its leaf.
"""
from __future__ import annotations

import numpy as np

from ..errors import AnomalyError, GradientError
from ..graph import format_where, linearize, modes
from .cache import CACHE
from .codegen import Anomaly

_ndarray = np.ndarray


def program_for(root):
    order, leaves, key = linearize(root)
    return CACHE.lookup(key, order, leaves), order, leaves


def evaluate(root):
    """Compute ``root``'s value from the current leaf values; keep what backward needs."""
    if root.op is None:
        return root.value
    order, leaves, key = linearize(root)
    program = CACHE.lookup(key, order, leaves)
    try:
        out = program.forward(*[leaf.value for leaf in leaves])
    except Anomaly as anomaly:
        raise _anomaly_error(order, anomaly) from None
    if program.backward is not None:
        value, root.saved = out
        root.leaves = leaves
        root.program = program
        if program.retained:
            root.retained = [order[i] for i in program.retained]
    else:
        value = out
    root.value = value
    return value


_UNIT_SEEDS = {}


def _seed_array(root, seed):
    if root.shape == () and seed.__class__ is float and seed == 1.0:
        # The common call, loss.backward(): one shared read-only 1.0 per dtype
        # (generated code never writes into the seed).
        unit = _UNIT_SEEDS.get(root.dtype)
        if unit is None:
            unit = _UNIT_SEEDS[root.dtype] = np.ones((), root.dtype)
            unit.flags.writeable = False
        return unit
    if root.dtype.kind != "c" and np.iscomplexobj(seed):
        raise GradientError(f"backward: a complex seed for a root of dtype {root.dtype}; the gradient "
                            f"is that of Re(sum(seed * root)), which would drop the seed's imaginary "
                            f"part: pass a real seed (its real part)")
    if root.shape == ():
        if np.ndim(seed) != 0:
            raise GradientError(f"backward: the seed has shape {np.shape(seed)} but the root is a "
                                f"scalar; pass a number or a 0-dim array")
        return np.asarray(seed, dtype=root.dtype)
    if np.ndim(seed) == 0:
        return np.full(root.shape, seed, dtype=root.dtype)
    seed = np.asarray(seed)
    if seed.shape != root.shape:
        raise GradientError(f"backward: the seed has shape {seed.shape} but the root has shape "
                            f"{root.shape}; pass a number (broadcast over the root) or an array "
                            f"of the root's shape")
    return seed.astype(root.dtype, copy=False)


def backpropagate(root, seed=1.0):
    """Add d(seed . root)/d(leaf) into the ``grad`` of every differentiable leaf behind ``root``."""
    if not root.requires_grad:
        if any_differentiable_leaf(root):
            why = "it was built inside no_grad(), which records nothing for a backward"
        else:
            why = ("it depends on no differentiable leaf; make the leaves you want gradients "
                   "for differentiable with .requires_grad()")
        raise GradientError(f"backward: this is a Var, not a VarDiff: {why}")
    seed = _seed_array(root, seed)
    if root.op is None:
        _add_grad(root, seed.copy())
        return
    if root.saved is None:
        evaluate(root)
    program = root.program
    try:
        grads = program.backward(seed, *root.saved)
    except Anomaly as anomaly:
        order, _, _ = linearize(root)
        raise _anomaly_error(order, anomaly) from None
    leaves = root.leaves
    for position, grad in zip(program.grad_leaves, grads):
        leaf = leaves[position]
        current = leaf.grad
        if current is None:
            leaf.grad = grad if grad.__class__ is _ndarray else np.array(grad, dtype=leaf.dtype)
        else:
            current += grad
    if program.retained:
        for node, grad in zip(root.retained, grads[len(program.grad_leaves):]):
            node.grad = grad if grad.__class__ is _ndarray else np.asarray(grad)


def _add_grad(leaf, grad):
    current = leaf.grad
    if current is None:
        leaf.grad = grad if grad.__class__ is _ndarray else np.array(grad, dtype=leaf.dtype)
    else:
        current += grad


def any_differentiable_leaf(root):
    from ..graph import walk
    return any(n.op is None and n.requires_grad for n in walk(root))


def _anomaly_error(order, anomaly):
    node = order[anomaly.index]
    what = "its output" if anomaly.phase == "forward" else "the gradient it passed back"
    return AnomalyError(f"detect_anomaly: op {node.op.name} produced NaN or Inf in {what} "
                        f"({anomaly.phase} pass); it was built at {format_where(node.where)}")


def source(root) -> str:
    """The generated forward (and backward) Python source for the graph behind ``root``.

    >>> import neuronika
    >>> x = neuronika.ones((4, 3))
    >>> w = neuronika.ones((3, 2)).requires_grad()
    >>> print(neuronika.transform.source(x.mm(w).tanh().sum()))
    def forward(x0, p1):
        v2 = x0 @ p1
        v3 = xp.tanh(v2)
        del v2
        v4 = v3.sum()
        return v4, (v3, x0)
    <BLANKLINE>
    def backward(seed, v3, x0):
        g2 = seed * (1 - v3 * v3)
        g1 = x0.T @ g2
        del g2
        return g1,
    <BLANKLINE>
    """
    program, _, _ = program_for(getattr(root, "_node", root))
    return program.source()


__all__ = ["evaluate", "backpropagate", "source", "modes"]
