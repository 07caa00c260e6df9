"""Batching rules: how an op applied to one example is applied to a batch of them (``vmap``).

``transform.batching`` rewrites a graph traced on one example into the graph of the whole
batch, node by node: a node none of whose inputs is batched stays as it is; any other is
rebuilt by its op's rule, and its result carries the batch on axis 0. A rule takes a
``Batch`` (the original node, its rebuilt inputs, which of them are batched, the batch size)
and returns the rebuilt node. Rules are declared beside their op (``declare(...,
batch=...)``) or derived:

- elementwise ops (``Op.elementwise``): broadcasting does the work once every batched input
  has its batch axis in front of as many axes as the result has (``elementwise``);
- ops over one axis (``over_axis``), reductions (``reduction``), ops whose axis 0 is already
  a batch of independent items (``leading``: convolutions, pooling), ops that map over leading
  axes (``stacked``: linear algebra);
- any other op, one example at a time: each batched input indexed at each position, the op
  applied, the results stacked (``one_at_a_time``). Correct for every op, but B nodes where a
  rule makes one: a rule beside the op is the fast path.

Rules build nodes with ``graph.apply``: they read shapes only, never values.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import move
from ..errors import ShapeError
from ..graph import apply, leaf
from . import OPS, broadcast_shapes


class Batch:
    """What a rule sees: the node on one example, its inputs rebuilt (``inputs``), which of
    them are batched (their axis 0 is the batch), the batch size."""

    __slots__ = ("node", "op", "attrs", "inputs", "batched", "size", "_done")

    def __init__(self, node, inputs, batched, size, done=None):
        self.node = node
        self.op = node.op
        self.attrs = node.attrs
        self.inputs = inputs
        self.batched = batched
        self.size = size
        self._done = done or {}

    def find(self, node):
        """(the rebuilt node, whether it is batched) for any node of the example's graph: a
        rule over a tuple reads the tuple's parts."""
        found = self._done.get(node)
        return (node, False) if found is None else (found, True)

    def build(self, op, inputs, attrs=()):
        return apply(OPS[op] if isinstance(op, str) else op, tuple(inputs), tuple(attrs))

    def again(self, inputs, attrs=None):
        """The node's own op over ``inputs``, with its attributes or ``attrs``."""
        return self.build(self.op, inputs, self.attrs if attrs is None else attrs)

    def aligned(self, k, rank):
        """Input ``k`` with its example axes right-aligned to ``rank`` axes: a batched one
        reshaped to (B, 1, ..., 1, *shape); an unbatched one as it is (it broadcasts)."""
        node = self.inputs[k]
        if not self.batched[k] or node.dtype.kind == "O":
            return node             # (a tuple's parts have the batch first or broadcast as they are)
        missing = rank + 1 - len(node.shape)
        return self.reshape(node, node.shape[:1] + (1,) * missing + node.shape[1:]) if missing > 0 else node

    def full(self, k):
        """Input ``k`` batched: an unbatched one broadcast along a new axis 0 (a view)."""
        node = self.inputs[k]
        if self.batched[k] or node.dtype.kind == "O":
            return node
        return self.broadcast(node, (self.size,) + node.shape)

    def reshape(self, node, shape):
        shape = tuple(shape)
        return node if node.shape == shape else self.build("reshape", (node,), (shape,))

    def broadcast(self, node, shape):
        shape = tuple(shape)
        return node if node.shape == shape else self.build("broadcast_to", (node,), (shape,))

    def permute(self, node, axes):
        axes = tuple(axes)
        return node if axes == tuple(range(len(axes))) else self.build("transpose", (node,), (axes,))

    def move_to_front(self, node, axis):
        """``node`` with its ``axis`` moved to 0."""
        order = (axis,) + tuple(a for a in range(len(node.shape)) if a != axis)
        return self.permute(node, order)

    def merged(self, node):
        """(B, N, ...) -> (B * N, ...)."""
        return self.reshape(node, (node.shape[0] * node.shape[1],) + node.shape[2:])


def shifted(axis):
    """An axis attribute of one example, on the batch (an int, a tuple of ints, None: all)."""
    if isinstance(axis, tuple):
        return tuple(a + 1 for a in axis)
    return axis + 1


# ---- derived rules ---------------------------------------------------------------------------

def elementwise(b):
    """Broadcasting ops: batched inputs aligned to the result's rank, behind the batch axis."""
    rank = len(b.node.shape)
    return b.again([b.aligned(k, rank) for k in range(len(b.inputs))])


def drawn_elementwise(b):
    """An elementwise op that draws (dropout): every input batched first, so each example gets
    its own draw (``Op.per_example``)."""
    rank = len(b.node.shape)
    return b.again([b.aligned(k, rank) if b.batched[k] else b.full(k) for k in range(len(b.inputs))])


def draw(b):
    """Random numbers of a shape: the batch's shape, one draw per example."""
    kind, shape = b.attrs
    return b.again(b.inputs, (kind, (b.size,) + tuple(shape)))


def one_at_a_time(b):
    """Any op: applied to each example in turn, the results stacked. A tuple-valued input (a
    scan's) or result cannot be indexed: refused by name."""
    if b.node.dtype.kind == "O" or any(n.dtype.kind == "O" for n in b.inputs):
        raise ShapeError("it has no batching rule and works on tuples of values (it cannot be "
                         "applied one example at a time); call it outside vmap")
    rows = []
    for i in range(b.size):
        rows.append(b.again([b.build("index", (n,), (((("i", i),),))) if batched else n
                             for n, batched in zip(b.inputs, b.batched)]))
    return b.build("stack", rows, (0,))


def rule_for(op):
    if op.batch is not None:
        return op.batch
    if op.elementwise:
        return elementwise
    return one_at_a_time


# ---- rules that ops declare --------------------------------------------------------------------

def over_axis(name="axis"):
    """Ops along one axis (or a tuple of axes) named by attribute ``name``, every other axis
    independent (softmax, cumsum, sort, concatenate, stack, ...): every input batched, the
    axis shifted past the batch."""
    def rule(b):
        position = b.op.attrs.index(name)
        attrs = list(b.attrs)
        axis = attrs[position]
        # None: every axis of one example (an op that takes a tuple of axes)
        attrs[position] = tuple(range(1, len(b.node.inputs[0].shape) + 1)) if axis is None else shifted(axis)
        return b.again([b.full(k) for k in range(len(b.inputs))], attrs)
    rule.__name__ = f"over_axis_{name}"
    return rule


def reduction(b):
    """Reductions with attributes (axis, keepdims, ...): axis None (all axes of one example)
    becomes every axis but the batch's."""
    axis = b.attrs[0]
    rank = len(b.inputs[0].shape) - 1
    axis = tuple(range(1, rank + 1)) if axis is None else shifted(axis)
    return b.again([b.full(k) for k in range(len(b.inputs))], (axis,) + b.attrs[1:])


def arg_reduction(b):
    """argmax / argmin: axis None counts in the flattened example, so each example is
    flattened first."""
    axis, keepdims = b.attrs[0], b.attrs[1]
    x = b.full(0)
    if axis is not None:
        return b.again([x], (shifted(axis), keepdims))
    flat = b.reshape(x, (b.size, math.prod(x.shape[1:])))
    found = b.again([flat], (1, False))
    return b.reshape(found, (b.size,) + b.node.shape)


def leading(b):
    """Ops whose axis 0 is already a batch of independent items (N in NCHW): the vmap batch
    merged into it, every input batched, and split again after. An attribute named ``shape``
    (a result or input shape) gains the batch in its first size.

    An input may broadcast instead of starting with N: the seed ``g`` of
    ``softmax_cross_entropy_grad``, a scalar for one example under a mean or a sum. A scalar is
    spread over N with the rank of the lowest-rank input that starts with N (the class indices
    it stands beside), so that it merges like them; any other input that does not start with N
    (a seed that broadcasts along trailing axes) leaves the op to ``one_at_a_time``, and so
    does one whose first size is N's by chance (the merged shapes then do not fit: the op's
    shape rule refuses them)."""
    full = [b.full(k) for k in range(len(b.inputs))]
    n = full[0].shape[1]
    if any(len(node.shape) > 1 and node.shape[1] != n for node in full):
        return one_at_a_time(b)
    rank = min(len(node.shape) - 1 for node in full if len(node.shape) > 1)
    merged = []
    for node in full:
        if len(node.shape) == 1:
            node = b.broadcast(b.reshape(node, (b.size,) + (1,) * rank), (b.size, n) + (1,) * (rank - 1))
        merged.append(b.merged(node))
    attrs = tuple((b.size * a[0],) + tuple(a[1:]) if name == "shape" else a
                  for name, a in zip(b.op.attrs, b.attrs))
    try:
        out = b.again(merged, attrs)
    except ShapeError:
        return one_at_a_time(b)
    return b.reshape(out, (b.size,) + b.node.shape)


def stacked(b):
    """Ops that map over the leading axes of their inputs (``xp.linalg`` functions on stacks
    of matrices, pooling over trailing axes): the batch is one more leading axis, every input
    batched; an attribute named ``shape`` gains it too."""
    attrs = tuple((b.size,) + tuple(a) if name == "shape" else a for name, a in zip(b.op.attrs, b.attrs))
    return b.again([b.full(k) for k in range(len(b.inputs))], attrs)


def transpose(b):
    return b.again(b.inputs, ((0,) + tuple(a + 1 for a in b.attrs[0]),))


def reshape(b):
    return b.reshape(b.inputs[0], (b.size,) + b.node.shape)


def broadcast_to(b):
    rank = len(b.node.shape)
    return b.broadcast(b.aligned(0, rank), (b.size,) + b.node.shape)


def pad(b):
    widths = ((0, 0),) + tuple(b.attrs[0])
    return b.again(b.inputs, (widths,) + b.attrs[1:])


def _loop_results(b, node, cell, out_flags, steps):
    """A tuple op's result made a tuple of batched parts: part k of ``node`` (``cell``'s output
    k; a scan's ys stacked over ``steps`` before the batch) with the batch moved to axis 0, or
    broadcast there where the part is the same for every example."""
    parts = []
    for k, (shape, dtype, is_batched) in enumerate(zip(cell.out_shapes, cell.out_dtypes, out_flags)):
        stacked = steps is not None and k >= cell.n_carry
        p = b.build("part", (node,), (k, ((steps,) if stacked else ()) + tuple(shape), dtype))
        if not is_batched:
            p = b.broadcast(p, (b.size,) + p.shape)
        elif stacked:
            p = b.move_to_front(p, 1)
        parts.append(p)
    return b.build("pack", parts, (False,))


def scan(b):
    """A loop over the batched cell (``Cell.batched``): xs stepped along their own axis (the
    batch moved behind it), carries that the batch reaches batched from the start; the result
    a tuple whose parts have the batch first."""
    cell, length, reverse = b.attrs
    found = [b.find(n) for n in b.node.inputs[0].inputs]
    new_cell, in_flags, out_flags = cell.batched([f for _, f in found], b.size)
    c, n_x = cell.n_carry, cell.n_x
    inputs = []
    for k, ((node, is_batched), wanted) in enumerate(zip(found, in_flags)):
        if wanted and not is_batched:
            node = b.broadcast(node, (b.size,) + node.shape)
        if wanted and c <= k < c + n_x:
            node = b.move_to_front(node, 1)             # (B, T, ...) -> (T, B, ...)
        inputs.append(node)
    steps = length if n_x == 0 else inputs[c].shape[0]
    loop = b.build("scan", (b.build("pack", inputs, (False,)),), (new_cell, length, reverse))
    return _loop_results(b, loop, new_cell, out_flags, steps)


def checkpoint(b):
    """A checkpoint of the batched cell over the inputs as they are; the result's parts batched."""
    (cell,) = b.attrs
    found = [b.find(n) for n in b.node.inputs[0].inputs]
    new_cell, _, out_flags = cell.batched([f for _, f in found], b.size)
    loop = b.build("checkpoint", (b.build("pack", [n for n, _ in found], (False,)),), (new_cell,))
    return _loop_results(b, loop, new_cell, out_flags, None)


def cotangent(b):
    """A tuple's gradient with part k from a batched array: a batched tuple (every part it has
    batch-first)."""
    return b.again(b.inputs)


def part(b):
    """Part k of a batched tuple: its shape gains the batch."""
    k, shape, dtype = b.attrs
    return b.again(b.inputs, (k, (b.size,) + tuple(shape), dtype))


def matmul(b):
    """NumPy's matmul rules: a 1-D operand is made a matrix (a row on the left, a column on the
    right), the batch axis leads both operands' stacks (the shorter stack aligned by ones),
    and the axis added for a 1-D operand is taken out again."""
    a, c = b.inputs
    ra, rc = len(a.shape) - b.batched[0], len(c.shape) - b.batched[1]
    # the common cases as one product (a GEMM), not a stack of small ones: a batch against a
    # matrix shared by every example (NumPy's matmul runs one GEMM per matrix of a stack: the
    # rows of every example are one matrix; its adjoint for c is then one GEMM too)
    if not b.batched[1] and rc == 2:
        if len(a.shape) > 2 and a.shape[-1] and math.prod(b.node.shape):   # (B, ..., n, k) @ (k, m)
            # -1 for the batch: a loop's steps moved out of it (``hoisted``) serve every length
            rows = b.build("reshape", (a,), ((-1, a.shape[-1]),))
            return b.build("reshape", (b.build("matmul", (rows, c)),), ((-1,) + b.node.shape,))
        return b.build("matmul", (a, c))            # (B, k) @ (k, m)
    if not b.batched[0] and ra == 2 and rc == 1:
        return b.build("matmul", (c, b.permute(a, (1, 0))))     # (B, k) @ a.T
    if ra == 1:
        a = b.reshape(a, a.shape[:-1] + (1, a.shape[-1]))
    if rc == 1:
        c = b.reshape(c, c.shape + (1,))
    stack = max(max(ra, 2), max(rc, 2)) - 2
    operands = []
    for node, batched in ((a, b.batched[0]), (c, b.batched[1])):
        if batched:
            missing = stack + 3 - len(node.shape)
            if missing > 0:
                node = b.reshape(node, node.shape[:1] + (1,) * missing + node.shape[1:])
        operands.append(node)
    out = b.build("matmul", operands)
    return b.reshape(out, (b.size,) + b.node.shape)


def mm_t(b):
    a, c = b.full(0), b.full(1)
    return b.build("matmul", (a, b.permute(c, (0, 2, 1))))


def einsum(b):
    """A letter for the batch, leading every batched operand and the result."""
    from .linalg import LETTERS, split_spec
    inputs, out = split_spec(b.attrs[0])
    letter = next(c for c in LETTERS if c not in b.attrs[0])
    specs = [letter + s if batched else s for s, batched in zip(inputs, b.batched)]
    return b.again(b.inputs, (",".join(specs) + "->" + letter + out,))


# ---- convolutions ----------------------------------------------------------------------------
# A batch of kernels is a grouped convolution: the examples' channels side by side, one group
# (or ``groups`` groups) per example. A batch of inputs alone merges into N.

def _side_by_side(b, node):
    """(B, N, C, *s) -> (N, B * C, *s)."""
    rest = tuple(range(3, len(node.shape)))
    node = b.permute(node, (1, 0, 2) + rest)
    return b.reshape(node, (node.shape[0], node.shape[1] * node.shape[2]) + node.shape[3:])


def _apart(b, node):
    """(N, B * C, *s) -> (B, N, C, *s)."""
    node = b.reshape(node, (node.shape[0], b.size, node.shape[1] // b.size) + node.shape[2:])
    return b.permute(node, (1, 0, 2) + tuple(range(3, len(node.shape))))


def _grouped(b):
    """The op's attributes with its groups (the last) once per example."""
    return b.attrs[:-1] + (b.attrs[-1] * b.size,)


def conv(b):
    """conv(x, w) and conv_transpose(g, w): x (N, C, *s), w (O, C / groups, *k) (for the
    transpose, g (N, O, *o) -> (N, C, *size))."""
    if not b.batched[1]:
        return b.reshape(b.again([b.merged(b.inputs[0]), b.inputs[1]]), (b.size,) + b.node.shape)
    w = b.inputs[1]
    out = b.again([_side_by_side(b, b.full(0)), b.reshape(w, (w.shape[0] * w.shape[1],) + w.shape[2:])],
                  _grouped(b))
    return _apart(b, out)


def conv_weight_grad(b):
    """conv_weight_grad(g, x): g (N, O, *o), x (N, C, *s) -> (O, C / groups, *k), per example."""
    out = b.again([_side_by_side(b, b.full(0)), _side_by_side(b, b.full(1))], _grouped(b))
    return b.reshape(out, (b.size,) + b.node.shape)


# ---- indexing --------------------------------------------------------------------------------

def _key_plan(b, first_index, layout, selected):
    """How a key of one example is written for the batch: (index inputs, layout, order),
    where ``order`` permutes the batched result's axes into (batch, *one example's result).

    Without a batched index array the batch is a leading full slice; with one, an integer
    range over the batch joins the advanced indices (each batched index array aligned behind
    it). NumPy puts the axes of advanced indices that are not adjacent first: the order puts
    them back where one example has them.
    """
    keys = list(b.inputs[first_index:])
    keyed = b.batched[first_index:]
    kinds = [e[0] for e in layout]
    shapes = [n.shape[1:] if batched else n.shape for n, batched in zip(keys, keyed)]
    advanced = [p for p, e in enumerate(layout) if e[0] == "k" or e[0] == "i"]
    arrays = any(shapes[e[1]] for e in layout if e[0] == "k")
    if not any(keyed):
        layout = (("s", None, None, None),) + tuple(layout)
        if not arrays or advanced == list(range(advanced[0], advanced[-1] + 1)):
            return keys, layout, None
        # apart: NumPy gives (advanced..., batch, rest...), one example (advanced..., rest...)
        m = len(_broadcast([shapes[e[1]] for e in layout if e[0] == "k"]))
        return keys, layout, (m,) + tuple(range(m)) + tuple(range(m + 1, len(selected) + 1))
    adv_shape = _broadcast([shapes[e[1]] for e in layout if e[0] == "k"])
    m = len(adv_shape)
    rebuilt = []
    for node, batched in zip(keys, keyed):
        if batched:
            missing = m + 1 - len(node.shape)
            if missing > 0:
                node = b.reshape(node, node.shape[:1] + (1,) * missing + node.shape[1:])
        rebuilt.append(node)
    batch_range = leaf(move(np.arange(b.size, dtype=np.intp).reshape((b.size,) + (1,) * m), b.inputs[0].space))
    rebuilt.append(batch_range)
    layout = (("k", len(rebuilt) - 1),) + tuple(layout)
    # NumPy's result: (batch, *advanced, *the axes of the other entries); one example's: the
    # advanced axes where its first advanced entry stands when they are adjacent, else first
    together = advanced == list(range(advanced[0], advanced[-1] + 1))
    if not together or advanced[0] == 0:
        return rebuilt, layout, None
    before = 0
    ndim = len(b.inputs[0].shape) - b.batched[0]
    given = sum(k not in "ne" for k in kinds)
    for kind in kinds[: advanced[0]]:
        before += 1 if kind in "sn" else ndim - given if kind == "e" else 0
    rest = len(selected) - m
    order = (0,) + tuple(range(1 + m, 1 + m + before)) + tuple(range(1, 1 + m)) + \
        tuple(range(1 + m + before, 1 + m + rest))
    return rebuilt, layout, order


def _broadcast(shapes):
    out = ()
    for s in shapes:
        out = broadcast_shapes(out, tuple(s))
    return out


def index(b):
    """x[key] on a batch: see ``_key_plan``."""
    layout = b.attrs[0]
    keys, layout, order = _key_plan(b, 1, layout, b.node.shape)
    x = b.full(0) if any(b.batched[1:]) else b.inputs[0]
    out = b.build("index", [x] + keys, (layout,))
    return out if order is None else b.permute(out, order)


def _written(b, k, first_key, layout, shape):
    """For an op that writes input ``k`` at [key] into a value of ``shape`` (one example's):
    (that input batched and arranged as the batched key selects, the key's inputs, layout)."""
    from .linalg import _inverse
    from .shape import _index_shape
    selected = tuple(_index_shape(shape, *[n.shape[1:] if batched else n.shape
                                           for n, batched in zip(b.inputs[first_key:], b.batched[first_key:])],
                                  layout))
    keys, new_layout, order = _key_plan(b, first_key, layout, selected)
    value = b.aligned(k, len(selected)) if b.batched[k] else b.inputs[k]
    value = b.broadcast(value, (b.size,) + selected)
    if order is not None:
        value = b.permute(value, _inverse(order))
    return value, keys, new_layout


def scatter(b):
    """zeros(shape) with g added at [key], on a batch."""
    layout, shape = b.attrs
    g, keys, new_layout = _written(b, 0, 1, layout, shape)
    return b.build("scatter", [g] + keys, (new_layout, (b.size,) + tuple(shape)))


def index_update(b):
    """A copy of x with u written at [key], on a batch."""
    layout, mode = b.attrs
    u, keys, new_layout = _written(b, 1, 2, layout, b.node.shape)
    return b.build("index_update", [b.full(0), u] + keys, (new_layout, mode))
