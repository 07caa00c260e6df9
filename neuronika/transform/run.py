"""Running programs on a graph: the hot path of ``forward()`` and ``backward()``.

On a cache hit this is: linearise the graph (order + signature), one dict
look-up, one call of the generated forward, and for backward one call of the
generated backward plus a loop that adds each gradient into its leaf.

``backward()`` differentiates the values the last evaluation computed when one came
since the previous backward (``forward()``, or reading the value: the loss printed
and its gradient belong together, dropout masks included); such an evaluation keeps
copies of what the backward reads from the leaves' memory, so data changed in place
afterwards cannot mix into it. Otherwise ``backward()`` runs the forward itself,
from the current leaf values.
"""
from __future__ import annotations

import numpy as np

from .. import graph
from ..errors import AnomalyError, GradientError
from ..graph import format_where, linearize, modes
from .cache import CACHE
from .codegen import Anomaly

_ndarray = np.ndarray


def program_for(root):
    order, leaves, key = linearize(root)
    return CACHE.lookup(key, order, leaves), order, leaves


def evaluate(root):
    """Compute ``root``'s value from the current leaf values (and keep it on ``root``);
    a root that needs a gradient keeps what its next backward reads (a snapshot)."""
    if root.op is None:
        return root.value
    order, leaves, key = linearize(root)
    program = CACHE.lookup(key, order, leaves)
    flags = graph.flags_changed
    if program.backward is None:
        out = _forward(program, order, [leaf.value for leaf in leaves])
        root.value = out
        return out
    values = [leaf.value for leaf in leaves]
    value, saved = _forward(program, order, values)
    # What the backward reads from the leaves' own memory (a leaf, a view of one) is
    # copied: data changed in place later must not mix into this evaluation.
    owners = set()
    for v in values:
        while v is not None:                 # the leaf and what its memory belongs to
            owners.add(id(v))
            v = getattr(v, "base", None)
    kept = []
    for v in saved:
        if v.__class__ is _ndarray:
            base = v
            while base is not None:
                if id(base) in owners:
                    v = v.copy()
                    break
                base = getattr(base, "base", None)
        kept.append(v)
    saved = tuple(kept)
    retained = ()
    if program.retained:                      # the root itself as None: no cycle through it
        last = len(order) - 1
        retained = [None if i == last else order[i] for i in program.retained]
    root.snapshot = (program, leaves, saved, retained, flags)
    root.value = value
    return value


def _forward(program, order, values):
    try:
        out = program.forward(*values)
    except Anomaly as anomaly:
        raise _anomaly_error(order, anomaly) from None
    for node in order:
        # Values cached on the graph's other nodes (read through .data) may predate the
        # current leaf values: dropped, a later read evaluates them again.
        if node.value is not None and node.inputs:
            node.value = None
    return out


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
    snapshot = root.snapshot
    if snapshot is not None:
        root.snapshot = None
        if snapshot[4] != graph.flags_changed:        # retain_grad(), train()/eval() since
            snapshot = None
    if snapshot is None:
        order, leaves, key = linearize(root)
        program = CACHE.lookup(key, order, leaves)
        root.value, saved = _forward(program, order, [leaf.value for leaf in leaves])
        retained = program.retained
    else:
        order = None
        program, leaves, saved, retained, _ = snapshot
        del snapshot
    try:
        grads = program.backward(seed, *saved)
    except Anomaly as anomaly:
        raise _anomaly_error(order or linearize(root)[0], anomaly) from None
    del saved
    for position, grad in zip(program.grad_leaves, grads):
        leaf = leaves[position]
        current = leaf.grad
        if current is None:
            leaf.grad = grad if grad.__class__ is _ndarray else np.array(grad, dtype=leaf.dtype)
        else:
            current += grad
    if retained:
        for node, grad in zip(retained, grads[len(program.grad_leaves):]):
            if order is not None:
                node = order[node]
            elif node is None:
                node = root
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
