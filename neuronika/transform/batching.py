"""The graph of one example rewritten as the graph of a batch (``neuronika.vmap``).

``batched(roots, given, size)``: ``given`` maps each per-example placeholder leaf to the
node that holds the whole batch (batch on axis 0). Every node between them and ``roots``
that depends on a placeholder is rebuilt by its op's batching rule (``ops.batching``); the
others are kept as they are, shared by every example. One walk, linear in the graph.
"""
from __future__ import annotations

from ..errors import ShapeError
from ..graph import format_where, user_line
from ..ops.batching import Batch, rule_for


def batched(roots, given, size):
    """For each root, (node, whether it is batched)."""
    done = dict(given)              # node -> its batched node (only nodes that depend on the batch)
    kept = set()                    # nodes that do not
    stack = [(root, False) for root in roots]
    while stack:
        node, expanded = stack.pop()
        if node in done or node in kept:
            continue
        if node.op is None:
            kept.add(node)
            continue
        if not expanded:
            stack.append((node, True))
            stack.extend((n, False) for n in node.inputs if n not in done and n not in kept)
            continue
        flags = tuple(n in done for n in node.inputs)
        if not any(flags) and not node.op.per_example:
            kept.add(node)
            continue
        inputs = tuple(done[n] if flag else n for n, flag in zip(node.inputs, flags))
        try:
            new = rule_for(node.op)(Batch(node, inputs, flags, size, done))
        except ShapeError as error:
            where = f"traced at {format_where(node.where)}" if node.where else \
                f"in the function given to vmap, called at {format_where(user_line())}"
            raise ShapeError(f"vmap of {node.op.name}: {error} ({where})") from None
        expected = (size,) + node.shape
        if new.shape != expected and node.dtype.kind != "O":       # a rule's own mistake: never a silent wrong answer
            raise AssertionError(f"batching rule of {node.op.name} gave shape {new.shape}, "
                                 f"expected {expected}")
        done[node] = new
    return [(done[r], True) if r in done else (r, False) for r in roots]
