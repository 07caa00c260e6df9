"""Cells: the body of a loop (``neuronika.scan``), compiled once whatever the number of steps;
and ``roll``, which finds an unrolled recurrence in a graph and makes it a scan.

A ``Cell`` is a small graph whose leaves are the loop's inputs at one step (carries,
one step of each x, the constants it closes over) and whose root is the tuple of its
outputs (new carries, then one step of each y). It is the attribute of a ``scan``
node (``ops/control.py``), whose generated code loops over ``cell.program(n)``: its
compiled program (``codegen.build``), or an interpreter plan (``interpret.build``)
while ``neuronika.config`` says so. Cells are kept by graph signature (``cell_for``):
a cell traced again, for another length or another call, is the same object, so a
scan node's key does not change with the length and the cell's program is built once.
"""
from __future__ import annotations

import contextlib
import math
import threading
from collections import OrderedDict

import gast
import numpy as np

from ..graph import COMPILE, GRAD_ENABLED, apply, leaf_key, like_leaf, linearize
from ..ops import OPS, Ctx, Grad
from . import batching, codegen, interpret
from .templates import TemplateError, expression, parse

#: the adjoint of a scan as a graph (second derivatives), set by ``neuronika.loops``: a
#: rolled cell has none of its own
SYMBOLIC_ADJOINT = None
#: signature of a cell's graph (and the roles of its leaves) -> Cell, least recently used first
_CELLS = OrderedDict()
_CELLS_MAX = 256
_lock = threading.Lock()
#: a cell is compiled (mode "auto") on its second run, or once it has run this many nodes
#: (steps times its size) interpreted
COMPILE_WORK = 4096
#: how many cell programs were compiled (tests and benchmarks read it)
stats = {"compiled": 0, "interpreted": 0}


class Cell:
    """One loop body: see the module docstring. ``in_shapes``/``in_dtypes``: carries, one
    step of each x, constants; ``out_shapes``/``out_dtypes``: new carries, then one step of
    each y; ``args``: the input positions its program reads, in its leaves' order;
    ``grads``: the input positions its backward returns gradients for, in order."""

    __name__ = "cell"

    def __init__(self, order, leaves, positions, n_carry, n_x, n_const, in_specs, out_specs):
        self.order = order
        self.leaves = leaves
        self.n_carry, self.n_x, self.n_const = n_carry, n_x, n_const
        self.in_shapes = tuple(s for s, _ in in_specs)
        self.in_dtypes = tuple(d for _, d in in_specs)
        self.out_shapes = tuple(s for s, _ in out_specs)
        self.out_dtypes = tuple(d for _, d in out_specs)
        self.args = tuple(positions)
        self.differentiable = order[-1].requires_grad
        # codegen returns the gradients of the differentiable leaves in graph order
        index = {node: i for i, node in enumerate(order)}
        ranked = sorted(range(len(leaves)), key=lambda k: index[leaves[k]])
        self.grads = tuple(positions[k] for k in ranked if leaves[k].requires_grad) \
            if self.differentiable else ()
        self.runs = 0
        self.work = 0
        self._compiled = None
        self._interpreted = None
        self._lock = threading.Lock()
        self.symbolic_adjoint = None        # set by neuronika.loops: the adjoint as a graph
        self._deferral = _UNKNOWN

    def __call__(self, *args):
        return self.program(1).forward(*args)

    def __repr__(self):
        return (f"<cell: {self.n_carry} carries, {self.n_x} xs, {self.n_const} constants, "
                f"{len(self.order)} nodes>")

    def program(self, steps):
        """What runs ``steps`` steps now: the compiled program, or an interpreter plan while
        the compile mode says so (``"never"``; ``"auto"`` before ``compile_after`` steps)."""
        compiled = self._compiled
        if compiled is not None and COMPILE.get()[0] != "never":
            return compiled
        mode, after = COMPILE.get()
        with self._lock:
            self.runs += 1
            self.work += steps * len(self.order)
            # compiled once the loop runs again, or at once for a long one (the interpreter's
            # cost per node and step outgrows compiling so small a program)
            if mode == "always" or (mode == "auto" and (self.runs >= after or self.work >= COMPILE_WORK)):
                if self._compiled is None:
                    self._compiled = self._build(codegen.build)
                    stats["compiled"] += 1
                return self._compiled
            if self._interpreted is None:
                self._interpreted = self._build(interpret.build)
                stats["interpreted"] += 1
            return self._interpreted

    def _build(self, build):
        # the loop reads the gradients the cell returns, never adds into them in place
        program = build(self.order, self.leaves, shared_grads=True) if build is codegen.build \
            else build(self.order, self.leaves)
        position = {k: p for k, p in enumerate(self.args)}
        got = tuple(position[k] for k in program.grad_leaves)
        if got != self.grads:
            raise AssertionError(f"scan: the cell's program returns gradients for inputs {got}, "
                                 f"expected {self.grads}")
        return program

    def source(self) -> str:
        """The cell's generated forward and backward (compiled now if need be); for a cell whose
        weight gradients a scan defers, the variant it runs."""
        deferral = self.deferral()
        if deferral is not None:
            return ("# (the variant that runs: it also returns each deferred product's left operand, "
                    "and the weights' gradients are one product after the loop)\n" + deferral.cell.source())
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = self._build(codegen.build)
                    stats["compiled"] += 1
        return self._compiled.source()

    def batched(self, flags, size):
        """The cell over a batch (``vmap``): ``flags`` says which inputs (by position) hold a
        batch on axis 0 of each step's value. Returns ``(cell, in_flags, out_flags)``: a carry
        that a batched input reaches is batched from the start (its initial value broadcast by
        the caller), so ``in_flags`` may have more than ``flags``; every new carry has its
        input's flag."""
        flags = list(flags)
        root = self.order[-1]
        while True:
            given, leaves = {}, []
            for leaf_node, position in zip(self.leaves, self.args):
                if flags[position]:
                    given[leaf_node] = new = _leaf_shaped(leaf_node, (size,) + tuple(leaf_node.shape))
                    leaves.append(new)
                else:
                    leaves.append(leaf_node)
            outs = batching.batched(list(root.inputs), given, size)
            grown = [k for k in range(self.n_carry) if outs[k][1] and not flags[k]]
            if not grown:
                break
            for k in grown:
                flags[k] = True
        nodes = []
        for k, (node, is_batched) in enumerate(outs):
            if k < self.n_carry and flags[k] and not is_batched:
                node = apply(OPS["broadcast_to"], (node,), ((size,) + tuple(node.shape),))
            nodes.append(node)
        out_flags = [flags[k] if k < self.n_carry else f for k, (_, f) in enumerate(outs)]
        new_root = apply(OPS["pack"], tuple(nodes), root.attrs)
        widened = [((size,) + tuple(s), d) if f else (tuple(s), d)
                   for s, d, f in zip(self.in_shapes, self.in_dtypes, flags)]
        out_specs = [spec(n) for n in nodes]
        cell = cell_for(new_root, leaves, list(self.args), self.n_carry, self.n_x, self.n_const,
                        widened, out_specs)
        if cell.symbolic_adjoint is None:
            cell.symbolic_adjoint = self.symbolic_adjoint
        return cell, flags, out_flags

    def deferral(self):
        """The ``Deferral`` of this cell's weight gradients (``deferred_products``), or None."""
        found = self._deferral
        if found is _UNKNOWN:
            found = self._deferral = deferred_products(self) if DEFER else None
        return found

    def symbolic(self, ctx, build, bindings):
        adjoint = self.symbolic_adjoint or SYMBOLIC_ADJOINT
        if adjoint is None:
            raise NotImplementedError("scan: no symbolic adjoint registered (import neuronika.loops)")
        return adjoint(self, ctx, build, bindings)


# ---- weight gradients after the backward loop -------------------------------------------------
#
# A cell's product ``a @ W`` with a weight W it closes over (an RNN's ``h @ Wh``) has the
# gradient ``a_t.T @ dy_t`` in W at each step: a small product and an addition per step of
# the backward loop. Summed over the steps it is one product, ``A.T @ DY`` over every
# step's rows stacked. The scan runs a variant of the cell that treats W as no variable and
# also returns a_t at each step, stacks the a_t, and after the backward loop makes W's
# gradient one product. dy_t is the gradient of the x the product is added to where its only
# reader adds it to one step of an x that nothing else reads (``x_t + h @ Wh``: what
# hoisting leaves of ``x_t @ Wx + h @ Wh + b``; the loop stacks that gradient anyway), else
# the variant's backward returns it (the product a retained node) and the loop stacks it.

#: whether scans make such weight gradients one product after the backward loop
DEFER = True
_UNKNOWN = object()
_BLAS = (np.dtype(np.float32), np.dtype(np.float64))


class Deferral:
    """How a scan runs a cell whose weight gradients it defers: ``cell``, the variant it
    runs (the weights are no variables there; it returns each deferred product's other
    operand after the cell's own outputs, and its backward the retained products' gradients
    after the leaves'); ``items``: a ``DeferredWeight`` per weight; ``retained``: (shape,
    dtype) of each retained product's gradient the variant's backward returns, in order."""

    __slots__ = ("cell", "items", "retained")

    def __init__(self, cell, items, retained):
        self.cell, self.items, self.retained = cell, items, retained


class DeferredWeight:
    """One weight whose gradient a scan makes after its backward loop. ``position``: its
    input position in the cell; ``operand``: its product's other operand's index among the
    variant's extra outputs; ``x_at``: the x whose gradient is the product's, or None;
    ``retained``: else the index of the product's gradient among the retained ones;
    ``other_columns`` and ``dy_columns``: the last axis of the other operand and of the
    product (every axis before it folds into rows)."""

    __slots__ = ("position", "operand", "x_at", "retained", "other_columns", "dy_columns",
                 "_adjoint", "_other")

    def __init__(self, position, operand, x_at, retained, other_columns, dy_columns, adjoint, other):
        self.position, self.operand, self.x_at, self.retained = position, operand, x_at, retained
        self.other_columns, self.dy_columns = other_columns, dy_columns
        self._adjoint, self._other = adjoint, other

    def gradient(self, other, dy):
        """Source of the weight's gradient over every step: the op's own adjoint of the
        weight (``summed_over_rows``) with the source texts ``other`` and ``dy``, the steps'
        rows stacked, for its other operand and its output's gradient."""
        bindings = {self._other: gast.parse(other).body[0].value, "dy": gast.parse(dy).body[0].value}
        value, _ = expression(self._adjoint, bindings, "a deferred weight gradient")
        return codegen._render(gast.Expr(value))


def _row_summed(product, weight):
    """(``product``'s other input, its template name, the parsed adjoint of ``weight``) where
    ``product``'s op declares the weight's input ``summed_over_rows`` and that adjoint, for
    2-D operands, is one expression of the other input and ``dy``; else None."""
    op, inputs = product.op, product.inputs
    if len(inputs) != 2 or (inputs[0] is weight) == (inputs[1] is weight):
        return None
    slot = 0 if inputs[0] is weight else 1
    names = op.input_names(2)
    if names[slot] not in op.summed_over_rows:
        return None
    other = inputs[1 - slot]
    rows = math.prod(other.shape[:-1])           # (the rows of one step: every axis but the last)
    gshape = (rows, product.shape[-1])
    shapes = {names[slot]: weight.shape, names[1 - slot]: (rows, other.shape[-1])}
    dtypes = {names[slot]: weight.dtype, names[1 - slot]: other.dtype}
    ctx = Ctx(op, names, shapes, dtypes, gshape, product.dtype, dict(zip(op.attrs, product.attrs)),
              gshape, slot)
    grad = codegen._resolve(op.grad_template(slot), ctx)
    template = parse(grad.src if isinstance(grad, Grad) else grad)
    if template.expr is None:
        return None
    probe = {names[1 - slot]: gast.Name("a", gast.Load(), None, None), "dy": gast.Name("d", gast.Load(), None, None)}
    try:
        expression(template, probe, "a deferred weight gradient")
    except TemplateError:                # it reads the weight, y or a static: not a sum over rows
        return None
    return other, names[1 - slot], template


def deferred_products(cell):
    """The ``Deferral`` of ``cell``, or None where no weight gradient qualifies. A weight
    qualifies when it is a float32 / float64 matrix the cell closes over and differentiates,
    and its one reader is an op that declares the weight's input ``summed_over_rows`` (``a @
    W``, ``a @ W.T``: its adjoint ``a.T @ dy`` sums over rows, so over the steps' rows stacked
    it is the sum over the steps), with the other operand differentiable and of W's dtype.
    The product's gradient at each step (dy_t) is read from the gradient of the x it is added
    to, where its one reader adds it to one step of an x of its shape and dtype that nothing
    else reads (the backward loop stacks that gradient anyway); otherwise the variant's
    backward returns it (the product is a retained node there) and the loop stacks it (a
    GRU's ``h @ W_hh.T + b_hh``, whose parts r scales)."""
    if not cell.differentiable:
        return None
    order, root = cell.order, cell.order[-1]
    readers = _readers(order)
    position = dict(zip(cell.leaves, cell.args))
    first_x, first_const = cell.n_carry, cell.n_carry + cell.n_x

    def one_reader(node):
        found = readers.get(node, ())
        return found[0] if len(found) == 1 and found[0] is not root else None

    def summed_x(product):
        """The position of the x whose gradient is ``product``'s, or None."""
        total = one_reader(product)
        if total is None or total.op.name != "add" or len(total.inputs) != 2:
            return None
        x = total.inputs[1] if total.inputs[0] is product else total.inputs[0]
        x_at = position.get(x)
        if (x_at is None or not first_x <= x_at < first_const or not x.requires_grad
                or one_reader(x) is not total or x.shape != product.shape or x.dtype != product.dtype):
            return None
        return x_at

    picked = []
    for leaf_node, p in zip(cell.leaves, cell.args):
        if (p < first_const or not leaf_node.requires_grad or len(leaf_node.shape) != 2
                or leaf_node.dtype not in _BLAS):
            continue
        product = one_reader(leaf_node)
        found = None if product is None else _row_summed(product, leaf_node)
        if found is None:
            continue
        a = found[0]
        if not a.requires_grad or a.dtype != leaf_node.dtype or product.dtype != leaf_node.dtype:
            continue
        picked.append((leaf_node, p, a, product, summed_x(product), found))
    if not picked:
        return None
    with _flags_from_inputs():
        substitute = {w: like_leaf(w, False) for w, _, _, _, _, _ in picked}
        _rebuilt_over(order, substitute, retain={product for _, _, _, product, x_at, _ in picked if x_at is None})
        outs = [substitute.get(i, i) for i in root.inputs]
        # (returned as values only: no gradient flows back through these outputs)
        extra = [apply(OPS["stop_gradient"], (substitute.get(a, a),)) for _, _, a, _, _, _ in picked]
        new_root = apply(OPS["pack"], tuple(outs + extra), root.attrs)
    leaves = [substitute.get(n, n) for n in cell.leaves]
    in_specs = list(zip(cell.in_shapes, cell.in_dtypes))
    out_specs = list(zip(cell.out_shapes, cell.out_dtypes)) + [spec(a) for a in extra]
    variant = cell_for(new_root, leaves, list(cell.args), cell.n_carry, cell.n_x, cell.n_const,
                       in_specs, out_specs)
    if variant.symbolic_adjoint is None:
        variant.symbolic_adjoint = cell.symbolic_adjoint
    # the variant's backward returns the retained products' gradients after the leaves', in
    # graph order (``cell_for``'s cell, maybe one made before, has this graph's order)
    returned = [node for node in linearize(new_root)[0] if node.op is not None and node.retain]
    rank = {node: k for k, node in enumerate(returned)}
    items = tuple(DeferredWeight(p, j, x_at, None if x_at is not None else rank[substitute[product]],
                                 a.shape[-1], product.shape[-1], adjoint, other)
                  for j, (_, p, a, product, x_at, (_, other, adjoint)) in enumerate(picked))
    return Deferral(variant, items, tuple(spec(node) for node in returned))


# ---- work moved out of a loop ------------------------------------------------------------------
#
# A cell's nodes that depend on no carry (only on one step's xs and on constants) are computed
# for every step at once before the loop: a step's x @ W of an RNN becomes one product over
# every step's rows (the batching rules, ``transform.batching``), and its gradient in W one
# product after the backward loop, in place of a small product and an addition per step. The
# cell reads the results as new xs (or, for work on constants alone, as new constants).

#: whether loops (rolled and ``neuronika.scan``) move such work out of their cells
HOIST = True
#: ops that only view or re-type their input: moving them out of a loop gains nothing
_VIEWS = frozenset(("index", "reshape", "transpose", "broadcast_to", "part", "astype"))
#: ops that stay in the cell whatever they read (loops within loops, calls)
_STAYS = frozenset(("scan", "checkpoint", "call", "pack"))


def _stays(node, stepwise):
    op = node.op
    if op.name in _STAYS or op.random or op.per_example or node.dtype.kind == "O":
        return True
    # per step, an op without a batching rule would run one step at a time: no gain
    return stepwise and op.batch is None and not op.elementwise


def _roles(root, leaves, n_carry, n_x):
    """The cell's nodes in order, those that stay in the loop (they read a carry, or
    ``_stays``) and those that read one step of an x."""
    order, _, _ = linearize(root)
    staying = set(leaves[:n_carry])
    stepwise = set(leaves[n_carry:n_carry + n_x])
    for node in order:
        if node.op is None or node is root:
            continue
        reads_x = any(i in stepwise for i in node.inputs)
        if reads_x:
            stepwise.add(node)
        if any(i in staying for i in node.inputs) or _stays(node, reads_x):
            staying.add(node)
    return order, staying, stepwise


def _regrouped(root, order, staying):
    """The cell with each sum of terms (a chain of float additions of one dtype whose inner
    sums nothing else reads) that adds two or more terms independent of the carries apart
    from each other, regrouped to add those first: ``x_t @ Wx + h @ Wh + b`` becomes
    ``(x_t @ Wx + b) + h @ Wh``, whose first sum then moves out of the loop with the rest of
    the carry-free work (one addition per step fewer, and b's gradient one sum after the
    loop instead of a sum and an addition per step). The terms keep their order within each
    group; the regrouped sum rounds differently, as hoisting's batched products do.
    ``root`` itself where no sum gains."""
    readers = _readers(order)

    def inner(node, dtype):         # an addition that dissolves into its reader's sum
        return (node.op is not None and node.op.name == "add" and node.dtype == dtype
                and len(readers.get(node, ())) == 1 and readers[node][0].op.name == "add"
                and readers[node][0].dtype == dtype)

    plans = {}
    for node in order:
        if (node.op is None or node.op.name != "add" or node not in staying
                or node.dtype.kind not in "fc" or inner(node, node.dtype)):
            continue
        terms, sums, stack = [], [], [node]
        while stack:
            n = stack.pop()
            if n is node or inner(n, node.dtype):
                sums.append(n)
                stack.extend(reversed(n.inputs))
            else:
                terms.append(n)
        free = [t for t in terms if t not in staying]
        if (len(free) < 2 or any(t.dtype != node.dtype for t in terms)
                or sum(1 for n in sums if n not in staying) >= len(free) - 1):
            continue
        plans[node] = (free, [t for t in terms if t in staying])
    if not plans:
        return root
    new = {}
    for node in order:
        if node in plans:
            free, bound = plans[node]
            total = new.get(free[0], free[0])
            for term in free[1:] + bound:
                total = _made(OPS["add"], (total, new.get(term, term)))
            if tuple(total.shape) != tuple(node.shape):
                return root
            total.where = node.where        # (detect_anomaly names the user's line of the sum)
            new[node] = total
        elif node.op is not None and any(i in new for i in node.inputs):
            inputs = tuple(new.get(i, i) for i in node.inputs)
            new[node] = _clone(node, inputs) if node is not root else apply(OPS["pack"], inputs, root.attrs)
    return new[root]


def hoisted(root, leaves, in_specs, n_carry, n_x, outer, steps):
    """The cell's graph with the work that depends on no carry moved out of the loop (see
    above): ``root`` (the pack of its outputs) over ``leaves`` (carries, one step of each x,
    constants; ``in_specs`` theirs), whose values are ``outer`` (the loop's inputs: initial
    carries, whole xs of ``steps`` steps, constants). Returns ``(root, leaves, in_specs, n_x,
    n_const, outer, made)``, ``made`` the new nodes outside the loop in creation order; or
    None where nothing is worth moving."""
    order, staying, stepwise = _roles(root, leaves, n_carry, n_x)
    regrouped = _regrouped(root, order, staying)
    if regrouped is not root:
        root = regrouped
        order, staying, stepwise = _roles(root, leaves, n_carry, n_x)
    # what the cell keeps reading: values it can compute before the loop, with real work in
    # them (a view of an x alone is already the cheapest read)
    worth = {}
    for node in order:
        if node.op is not None and node not in staying:
            worth[node] = node.op.name not in _VIEWS or any(worth.get(i, False) for i in node.inputs)
    moved = []
    for node in order:
        if node in staying or node is root:
            for i in node.inputs:
                if worth.get(i) and i not in moved:
                    moved.append(i)
    if not moved:
        return None

    # the moved values over the loop's inputs: constants substituted, xs batched over the steps
    outside = _rebuilt_over([node for node in order if node in worth],
                            dict(zip(leaves[n_carry + n_x:], outer[n_carry + n_x:])))
    given = dict(zip(leaves[n_carry:n_carry + n_x], outer[n_carry:n_carry + n_x]))
    try:
        built = batching.batched([outside.get(node, node) for node in moved], given, steps)
    except Exception:       # noqa: BLE001 - a rule that cannot batch it: the loop computes it
        return None
    new_x, new_const = [], []
    for node, (value, is_batched) in zip(moved, built):
        # (flags differ where a loop is rolled under no_grad: the cell keeps its work)
        if is_batched != (node in stepwise) or value.requires_grad != node.requires_grad:
            return None
        (new_x if is_batched else new_const).append((node, value))

    # the cell over the old leaves it still reads and the new ones
    replaced = {node: like_leaf(node, node.requires_grad) for node, _ in new_x + new_const}
    rebuilt = dict(replaced)
    for node in order:
        if node.op is None or node in rebuilt:
            continue
        if any(i in rebuilt for i in node.inputs):
            inputs = tuple(rebuilt.get(i, i) for i in node.inputs)
            rebuilt[node] = _clone(node, inputs) if node is not root else apply(OPS["pack"], inputs, root.attrs)
    new_root = rebuilt.get(root, root)
    still = _still_read(order, new_root, leaves)
    keep = [k for k in range(n_carry, len(leaves)) if still[k]]
    xs_kept = [k for k in keep if k < n_carry + n_x]
    consts_kept = [k for k in keep if k >= n_carry + n_x]
    positions = list(range(n_carry)) + xs_kept
    new_leaves = [leaves[k] for k in positions] + [replaced[n] for n, _ in new_x] + \
        [leaves[k] for k in consts_kept] + [replaced[n] for n, _ in new_const]
    new_specs = [in_specs[k] for k in positions] + [spec(n) for n, _ in new_x] + \
        [in_specs[k] for k in consts_kept] + [spec(n) for n, _ in new_const]
    new_outer = [outer[k] for k in positions] + [v for _, v in new_x] + \
        [outer[k] for k in consts_kept] + [v for _, v in new_const]
    made = _made_after([v for _, v in new_x + new_const], set(outer))     # inputs first
    return (new_root, new_leaves, new_specs, len(xs_kept) + len(new_x),
            len(consts_kept) + len(new_const), new_outer, made)


class Sunk:
    """What ``sunk`` moved after a loop: ``root``, ``leaves``, ``in_specs``, ``out_specs``,
    ``n_carry``, ``n_x``, ``n_const`` and ``outer`` describe the cell and the loop's inputs now
    (its carries, the ys it still makes, then the values the moved work reads, one per step);
    ``outputs(part)`` gives, for each of the loop's original outputs, its node outside, where
    ``part(k, shape, dtype)`` makes the new loop's output k."""

    def outputs(self, part):
        parts = []
        for k, (shape, dtype) in enumerate(self.out_specs):
            parts.append(part(k, shape if k < self.n_carry else (self.steps,) + tuple(shape), dtype))
        given = dict(self.given)
        for node, k in self.exported.items():
            given[node] = parts[k]
        outside = _rebuilt_over(self.moved, dict(self.substitute))
        roots = [outside.get(value, value) for kind, value, _ in self.results if kind == "moved"]
        built = iter(batching.batched(roots, given, self.steps))
        out = []
        for kind, value, accumulated in self.results:
            node = parts[value] if kind == "part" else next(built)[0]
            if accumulated is not None:     # a carry that adds a term per step: start + the sum
                op, start = accumulated
                node = apply(OPS[op], (start, apply(OPS["sum"], (node,), ((0,), False))))
            out.append(node)
        return out


def _accumulators(root, leaves, n_carry, readers):
    """{carry k: (the term it adds per step, "add" or "sub")} for the carries whose new value is
    the old one plus (or minus) a term, and that nothing else reads (a loss summed over steps)."""
    found = {}
    for k in range(n_carry):
        leaf, out = leaves[k], root.inputs[k]
        if (out.op is None or out.op.name not in ("add", "sub") or out.dtype.kind not in "fc"
                or readers.get(leaf) != [out] or readers.get(out) != [root]
                or root.inputs.count(out) != 1):
            continue
        a, b = out.inputs
        if a is leaf and b is not leaf:
            term = b
        elif b is leaf and a is not leaf and out.op.name == "add":
            term = a
        else:
            continue
        if term.dtype == out.dtype and term.op is not None:
            found[k] = (term, out.op.name)
    return found


def sunk(root, leaves, in_specs, n_carry, n_x, outer, steps):
    """The cell's graph with the work that only its ys read (nothing that a carry needs)
    moved after the loop, for every step at once: the cell gives the values that work reads
    as new ys (see ``Sunk``); a per-step output layer ``h @ Wo`` becomes one product over every
    step's rows, and Wo's gradient one product. A carry that only adds a term per step (a loss
    summed in the loop) becomes a y, summed after the loop, so its term moves too. None where
    nothing is worth moving."""
    if not GRAD_ENABLED.get():
        return None         # (the moved nodes' flags would say no gradient where the cell's do)
    order, _, _ = linearize(root)
    readers = _readers(order)
    accumulated = _accumulators(root, leaves, n_carry, readers)
    carries = [k for k in range(n_carry) if k not in accumulated]
    carry_outs = [root.inputs[k] for k in carries]
    y_outs = list(root.inputs[n_carry:]) + [term for term, _ in accumulated.values()]
    needed = set()                          # what the carries need (stays in the cell)
    stack = list(carry_outs)
    while stack:
        node = stack.pop()
        if node not in needed:
            needed.add(node)
            stack.extend(node.inputs)
    per_step = set(leaves[:n_carry + n_x])  # what depends on a carry or an x
    for node in order:
        if node.op is not None and node is not root and any(i in per_step for i in node.inputs):
            per_step.add(node)
    dropped = {root.inputs[k] for k in accumulated}     # the carries' additions: gone
    movable = {node for node in order if node.op is not None and node is not root
               and node not in needed and node not in dropped and node in per_step
               and not _stays(node, True)}
    # a node stays where something that stays reads it
    for node in reversed(order):
        if node in movable and any(r not in movable and r is not root and r not in dropped
                                   for r in readers.get(node, ())):
            movable.discard(node)
    moved_ys = [y for y in y_outs if y in movable]
    if len(set(moved_ys)) != len(moved_ys):
        return None
    worth = {}
    for node in order:
        if node in movable:
            worth[node] = node.op.name not in _VIEWS or any(worth.get(i, False) for i in node.inputs)
    if not any(worth[y] for y in moved_ys):
        return None
    # what the moved work reads from the cell: per-step values become ys; constants alone are
    # rebuilt outside over the loop's constants
    substitute = dict(zip(leaves[n_carry + n_x:], outer[n_carry + n_x:]))
    given = dict(zip(leaves[n_carry:n_carry + n_x], outer[n_carry:n_carry + n_x]))
    exported, exports, constants = {}, [], []
    for node in order:
        if node not in movable:
            continue
        for i in node.inputs:
            if i in movable or i in exported or i in substitute or i in given:
                continue
            if i in per_step:               # a carry entering the step, or a value of the step
                exported[i] = None
                exports.append(i)
            else:
                constants.append(i)
    _rebuilt_over(_made_after(constants, set(substitute)), substitute)
    kept_ys = [y for y in y_outs if y not in movable]
    outs = carry_outs + kept_ys + exports
    n_new = len(carries)
    for k, node in enumerate(exports):
        exported[node] = n_new + len(kept_ys) + k
    position = {y: n_new + k for k, y in enumerate(kept_ys)}
    results = []
    for k in range(len(root.inputs)):
        if k in accumulated:
            term, op = accumulated[k]
            kind = "moved" if term in movable else "part"
            results.append((kind, term if term in movable else position[term], (op, outer[k])))
        elif k < n_carry:
            results.append(("part", carries.index(k), None))
        else:
            y = root.inputs[k]
            results.append(("moved", y, None) if y in movable else ("part", position[y], None))
    plan = Sunk()
    plan.root = apply(OPS["pack"], tuple(outs), root.attrs)
    plan.out_specs = [spec(node) for node in outs]
    plan.results, plan.exported, plan.moved = results, exported, [n for n in order if n in movable]
    plan.substitute, plan.given, plan.steps, plan.n_carry = substitute, given, steps, n_new
    # the inputs only the moved work read, and the accumulated carries, leave the loop
    still = _still_read(order, plan.root, leaves)
    keep = [k for k in range(len(leaves)) if k in carries or k >= n_carry and still[k]]
    plan.leaves = [leaves[k] for k in keep]
    plan.in_specs = [in_specs[k] for k in keep]
    plan.outer = [outer[k] for k in keep]
    plan.n_x = sum(1 for k in keep if n_carry <= k < n_carry + n_x)
    plan.n_const = len(keep) - n_new - plan.n_x
    if n_x and not plan.n_x:
        return None         # (every x read only by the moved work: the loop needs one for its length)
    return plan


@contextlib.contextmanager
def _flags_from_inputs():
    """Nodes built inside get their gradient flags from their inputs whatever the mode, as the
    rolled graph's do (``_made``): the imperative path rolls inside backward(), under no_grad."""
    token = GRAD_ENABLED.set(True)
    try:
        yield
    finally:
        GRAD_ENABLED.reset(token)


def _made_after(roots, known):
    """The nodes behind ``roots`` that are not ``known``, inputs first."""
    made, seen = [], set()
    stack = [(node, False) for node in reversed(roots)]
    while stack:
        node, expanded = stack.pop()
        if node in known or node in seen:
            continue
        if expanded:
            seen.add(node)
            made.append(node)
            continue
        stack.append((node, True))
        stack.extend((i, False) for i in reversed(node.inputs) if i not in known and i not in seen)
    return made


def _readers(order):
    """node -> the nodes of ``order`` that read it, in order (once per input slot)."""
    readers = {}
    for node in order:
        for i in node.inputs:
            readers.setdefault(i, []).append(node)
    return readers


def _rebuilt_over(nodes, substitute, retain=()):
    """``substitute`` (cell node -> node outside the loop) extended to each of ``nodes`` (inputs
    first) that reads a substituted node: rebuilt over the substitutes; those in ``retain``
    rebuilt as retained nodes (a program returns their gradients)."""
    for node in nodes:
        if node.op is not None and node not in substitute and any(i in substitute for i in node.inputs):
            new = substitute[node] = _clone(node, tuple(substitute.get(i, i) for i in node.inputs))
            if node in retain:
                new.retain = True
                new.key = (new.op, new.attrs, new.requires_grad, True)
    return substitute


def _still_read(order, new_root, leaves):
    """For each leaf of the cell ``order``, whether the cell behind ``new_root`` still needs it as
    an input: it reads it, or the old cell never read it either (an x read by nothing still gives
    the loop's length); one whose every read moved out of the loop is dropped."""
    read = {i for node in linearize(new_root)[0] for i in node.inputs}
    was_read = {i for node in order for i in node.inputs}
    return [leaf in read or leaf not in was_read for leaf in leaves]


def _leaf_shaped(node, shape):
    """A leaf like ``node`` (dtype, space, whether it needs a gradient) of another shape."""
    new = like_leaf(node, node.requires_grad)
    new.shape = shape
    if new.key[0] != "weak":
        new.key = leaf_key(shape, node.dtype, node.space, node.requires_grad)
    new.sig = hash(new.key)
    return new


def cell_for(root, leaves, positions, n_carry, n_x, n_const, in_specs, out_specs):
    """The Cell for the graph behind ``root`` (a tuple of outputs) whose leaves ``leaves`` are
    the inputs at ``positions``: an existing one when the same graph was seen before."""
    order, found, signature = linearize(root)
    where = {node: k for k, node in enumerate(leaves)}
    ranked = [where[node] for node in found]
    key = (signature, tuple(positions[k] for k in ranked), n_carry, n_x, n_const, tuple(in_specs),
           tuple(out_specs))
    with _lock:
        cell = _CELLS.get(key)
        if cell is not None:
            _CELLS.move_to_end(key)
            return cell
    cell = Cell(order, found, [positions[k] for k in ranked], n_carry, n_x, n_const, in_specs, out_specs)
    with _lock:
        cell = _CELLS.setdefault(key, cell)
        while len(_CELLS) > _CELLS_MAX:
            _CELLS.popitem(last=False)
    return cell


def cells_clear():
    """Forget the cells kept by signature (a scan traced again makes its cell anew), and the
    kinds of recurrence rolled so far."""
    with _lock:
        _CELLS.clear()
        _KNOWN.clear()


#: The kinds of recurrence rolled so far (``_kind``). A graph whose recurrence is of a kind
#: never rolled runs unrolled through the interpreter on its first calls (``rolled``'s
#: ``known_only``: interpreting the unrolled graph costs less than rolling it and running the
#: loop), and is rolled when it compiles; from then on graphs of that kind roll at once, to
#: share the rolled program (every length of a sequence).
_KNOWN = OrderedDict()
_KNOWN_MAX = 1024
#: ``rolled``'s answer where it holds a recurrence of a kind never rolled, and ``known_only``.
DEFERRED = "deferred"
#: ``known_only`` holds for graphs of fewer nodes than this: a larger graph runs faster rolled
#: from its first call (the interpreter's plan of an unrolled graph grows with it; a loop's
#: does not), measured on benchmarks/compile_scaling.py's chain and RNN
DEFER_NODES = 2048


def _kind(order, lo, period):
    """A recurrence's kind: its period and the ops of one period, whatever the phase."""
    return (period, tuple(sorted(node.op.name if node.op is not None else "" for node in order[lo:lo + period])))


def spec(node):
    return (tuple(node.shape), np.dtype(node.dtype))


# ---- rolling an unrolled recurrence into a scan (automatic detection) -------------------------
#
# A graph built by a Python loop repeats a block of nodes: the same keys, with inputs in
# the same block, in the previous block (the carry), fixed nodes before the loop
# (constants), or values made anew at each step outside the loop's dependencies. ``roll``
# finds candidate stretches on one int per node (the op), vectorised (``_candidates``: a
# graph with no recurrence costs about a tenth of its linearisation), confirms the longest
# run by structural hashing over that stretch only, checks every block against the first
# (``_classify``) and rewrites the run into one scan node whose cell is the first block.
# A value made per step enters the loop as: a view (``xs[n0 + d*t]`` over one array: the
# scan reads ``xs[n0::d]``, no size named, so one program serves every length), one array
# (a trace's Python number per step, folded into a stacked constant; an array the trace
# read at every step, one leaf), or a stack of per-step arguments (the costly way, only in
# large graphs: ``STACK_THRESHOLD``). A trace rolls before its program is looked up
# (``tracing._program``), so the cache key and the shape family are the rolled graph's.

#: graphs with at least this many nodes are looked at (on a cache miss only)
THRESHOLD = 32
#: whether traces, codegen.build and interpret.build roll recurrences
AUTO = True
#: at least this many blocks, and this many nodes in all, for a run to be rolled
MIN_BLOCKS = 4
MIN_RUN = 24
#: a run whose steps take arguments of their own (stacked on every call: the imperative
#: path's per-step constants and indices) is rolled only in graphs this large, where
#: compiling less outweighs the stacking
STACK_THRESHOLD = 1024
_NEAR = 512


def _candidates(order):
    """[(lo, hi, P)]: stretches of ``order`` whose ops repeat with period P over at least
    MIN_BLOCKS periods and MIN_RUN nodes, the longest first (at most two). Vectorised over
    one int per node, so that a graph with no recurrence costs little more than a walk."""
    n = len(order)
    codes = np.fromiter(map(id, map(_op_of, order)), np.int64, n)
    _, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    periods = set()
    for k in np.argsort(counts)[::-1][:3]:
        if counts[k] < MIN_BLOCKS:
            break
        at = np.flatnonzero(inverse == k)
        for skip in (1, 2, 3, 4):             # (an op that comes k times a period: skip k)
            gaps = at[skip:] - at[:-skip]
            if len(gaps):
                periods.add(int(np.bincount(gaps).argmax()))
    found = []
    for P in sorted(periods):
        if P < 1 or P * MIN_BLOCKS > n:
            continue
        same = np.concatenate(([0], (codes[P:] == codes[:-P]).view(np.int8), [0]))
        edges = np.diff(same)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if not len(starts):
            continue
        k = int(np.argmax(ends - starts))
        lo, hi = int(starts[k]), int(ends[k]) + P
        if hi - lo >= max(MIN_BLOCKS * P, MIN_RUN) and not any(
                P % Q == 0 and a <= lo + P and b >= hi - P for _, a, b, Q in found):
            found.append((hi - lo, lo, hi, P))     # (a multiple of a shorter period: the same run)
    found.sort(reverse=True)
    return [(lo, hi, P) for _, lo, hi, P in found[:2]]


def _op_of(node):
    return node.op


def _hashes(order, position, lo=0, hi=None):
    """A structural hash per node of ``order[lo:hi]``: its key, and per input the leaf's key,
    the distance back to a recent node, or the position of a far one (a constant)."""
    out = []
    blanked = {}                # node key -> the key with its ints blanked (few distinct keys)
    for i in range(lo, len(order) if hi is None else hi):
        node = order[i]
        if node.op is None:
            out.append(hash(("leaf", node.key)))
            continue
        key = node.key
        try:
            head = blanked.get(key)
            if head is None:
                head = blanked[key] = _without_ints(key)
        except TypeError:
            head = _without_ints(key)
        parts = [head]
        for inp in node.inputs:
            if inp.op is None:
                parts.append(("l", inp.key))
            else:
                p = position[inp]
                # a node before the stretch is a constant of it, or the carry into its first
                # block (``roll`` tries that block too)
                parts.append(("d", i - p) if lo <= p and i - p <= _NEAR else ("a", p))
        try:
            out.append(hash(tuple(parts)))
        except TypeError:
            out.append(("unhashable", i))
    return out


def _period(hashes):
    """The most common distance between equal hashes (a candidate block length)."""
    last, counts = {}, {}
    for i, h in enumerate(hashes):
        j = last.get(h)
        if j is not None:
            d = i - j
            counts[d] = counts.get(d, 0) + 1
        last[h] = i
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return [d for d, c in ranked[:3] if c >= MIN_BLOCKS]


def _longest_run(hashes, period):
    """(start, blocks) of the longest stretch where each hash equals the one a period back."""
    best = (0, 0)
    start = None
    n = len(hashes)
    for i in range(period, n + 1):
        if i < n and hashes[i] == hashes[i - period]:
            if start is None:
                start = i - period
            continue
        if start is not None:
            blocks = (i - start) // period
            if blocks > best[1]:
                best = (start, blocks)
            start = None
    return best


class _NoRoll(Exception):
    pass


class _MovedLeaves(Exception):
    """Work moved out of the loop made a leaf (a batching rule's constant) that the caller, which
    keeps the graph's leaves (no ``fold``), cannot give: roll without moving work."""


def _without_ints(value):
    """Attributes with their integer literals blanked (``xs[t]`` at every t alike)."""
    if value.__class__ is tuple:
        return tuple(_without_ints(v) for v in value)
    if value.__class__ is int or isinstance(value, np.integer):
        return "#"
    return value


def _classify(order, position, s, P, R, fold=None):
    """(kinds, steps): per (offset, input slot) of the block, ("in", q) internal, ("carry", q,
    init) the previous block's node at offset q (init: what block 0 reads), ("const", node),
    ("step", q) a value made anew at each step outside the loop's dependencies (a leaf, an
    ``xs[t]``), which is scanned over; ``steps``: those offsets; ``progressions``: the steps
    that are ``xs[n0 + d*t]`` (``_progression``). Raises _NoRoll where the blocks differ
    otherwise."""
    block0 = order[s:s + P]
    steps = set()
    progressions = {}
    for q, node in enumerate(block0):
        instances = [order[s + r * P + q] for r in range(R)]
        if any(i.shape != node.shape or i.dtype != node.dtype or i.retain or
               len(i.inputs) != len(node.inputs) for i in instances):
            raise _NoRoll
        if node.op is None:
            # a weak Python number stacked would be a NumPy scalar in the loop: typed otherwise
            # (one written at each step, ``h * 0.5`` beside a number argument, is one constant)
            if (node.key[0] == "weak" and not _equal_numbers(instances)
                    or any(i.op is not None or i.key != node.key for i in instances)):
                raise _NoRoll
            steps.add(q)
            continue
        outside = all(position[inp] < s for i in instances for inp in i.inputs)
        if any(i.key != node.key for i in instances):
            if not outside or any(i.op is not node.op or _without_ints(i.key) != _without_ints(node.key)
                                  for i in instances):
                raise _NoRoll
            steps.add(q)
            found = _progression(instances)
            if found is not None:
                progressions[q] = found
        elif outside and any(i.inputs != node.inputs for i in instances):
            steps.add(q)
        elif fold is not None and len(node.inputs) == 2 and position[node.inputs[0]] < s:
            found = _progression(instances, fold)       # xs[t] over an int leaf per step
            if found is not None:
                steps.add(q)
                progressions[q] = found
    kinds = {}
    for q, node in enumerate(block0):
        if q in steps:
            continue
        for k, inp in enumerate(node.inputs):
            p0 = position[inp]
            found = None
            if s <= p0 < s + P:
                found = ("step", p0 - s) if p0 - s in steps else ("in", p0 - s)
            else:
                p1 = position[order[s + P + q].inputs[k]]
                if s <= p1 < s + P and p0 < s and p1 - s not in steps:
                    found = ("carry", p1 - s, inp)
                elif p1 == p0 and p0 < s:
                    found = ("const", inp)
            if found is None:
                raise _NoRoll
            for r in range(1, R):
                pr = position[order[s + r * P + q].inputs[k]]
                base = s + r * P
                if found[0] in ("in", "step"):
                    ok = pr == base + found[1]
                elif found[0] == "carry":
                    ok = pr == base - P + found[1]
                else:
                    ok = pr == p0
                if not ok:
                    raise _NoRoll
            kinds[(q, k)] = found
    return kinds, steps, progressions


def _progression(instances, fold=None):
    """(array, n0, d, axis) where the nodes are ``array[..., n0 + d * r]`` (r = 0, 1, ...: an
    int index over ``axis``, full slices before it, the rest of the index alike, d != 0),
    else None. The int is written into the index (a trace's ``xs[t]``) or is a 0-dim
    integer leaf per step (the imperative ``xs[t]``) that ``fold`` allows to bake in."""
    first = instances[0]
    if first.op.name != "index":
        return None
    source = first.inputs[0]
    layout = first.attrs[0]
    axis = 0
    while axis < len(layout) and layout[axis] == _FULL:
        axis += 1
    if axis >= len(layout) or axis >= len(source.shape):
        return None
    entry = layout[axis]
    if entry[0] == "i" and len(first.inputs) == 1:
        at = [node.attrs[0][axis][1] for node in instances]
    elif (entry == ("k", 0) and len(first.inputs) == 2 and fold is not None
          and not any(e[0] == "k" for e in layout[axis + 1:])):
        at = []
        for node in instances:
            index = node.inputs[1]
            if not _int_leaf(index) or not fold(index):
                return None
            at.append(int(index.value))
    else:
        return None
    n0 = at[0]
    d = at[1] - n0 if len(at) > 1 else 1
    if n0 < 0 or d == 0 or n0 + d * (len(at) - 1) < 0:
        return None
    rest = layout[axis + 1:]
    for r, node in enumerate(instances):
        got = node.attrs[0]
        if (node.inputs[0] is not source or at[r] != n0 + d * r or got[:axis] != layout[:axis]
                or got[axis + 1:] != rest):
            return None
    return source, n0, d, axis


_FULL = ("s", None, None, None)


def _int_leaf(node):
    return (node.op is None and not node.shape and node.value is not None and node.key[0] != "weak"
            and np.dtype(node.dtype).kind in "iu")


def _equal_numbers(nodes):
    """Whether ``nodes`` are 0-dim leaves holding one value (a constant written at each step)."""
    first = nodes[0].value
    if nodes[0].shape or first is None:
        return False
    try:
        return all(n.value is first or (n.value is not None and bool(n.value == first)) for n in nodes)
    except (TypeError, ValueError):
        return False


def roll(order, leaves, outputs, loss, guards, fold=None, make_leaves=True, gather=None, known_only=False):
    """The graph with its longest unrolled recurrence as a scan node, or None (``DEFERRED``
    with ``known_only``, where the recurrences found are of kinds never rolled).

    Returns (order, outputs, loss, guards, old_position) for the new graph: the same leaves,
    positions mapped, and ``old_position`` (new node -> its position in ``order``) for what a
    caller reports by position (retained gradients)."""
    regions = _candidates(order)
    if not regions:
        return None
    kinds = [_kind(order, lo, period) for lo, _, period in regions]
    deferring = False
    if known_only:
        with _lock:
            known = [(region, kind) for region, kind in zip(regions, kinds) if kind in _KNOWN]
        if known:
            regions, kinds = [r for r, _ in known], [k for _, k in known]
        else:
            # deferred, unless the loop would move work out of its cell: its results then
            # differ from the unrolled graph's in the last bits (a product over every step
            # sums in another order), and a first call must give the later calls' bits
            deferring = True
    position = {node: i for i, node in enumerate(order)}
    best = None
    for (lo, hi, period), kind in zip(regions, kinds):
        # leaves made at each step are arguments to stack on every call unless folded: where
        # they would outweigh the loop, the run is not looked at further (as in _rewrite)
        made = sum(1 for node in order[lo:lo + period]
                   if node.op is None and (fold is None or not fold(node))
                   and (gather is None or not gather(node)))
        if 4 * made > period or made and len(order) < STACK_THRESHOLD:
            continue
        hashes = _hashes(order, position, lo, hi)
        for P in (period, 2 * period):
            s, R = _longest_run(hashes, P)
            if R + 1 >= MIN_BLOCKS and (R + 1) * P >= MIN_RUN and (best is None or R * P > best[1] * best[2]):
                best = (s + lo, R, P, kind)
    if best is None:
        return DEFERRED if deferring else None
    s, R, P, kind = best
    # the run as found, one block earlier, then its other phases: where a step's input is
    # made at the end of the step before (an x_t indexed before the product that reads the
    # carry), only a block that starts there reads each step's values within itself
    starts = ((s - P, R + 1), (s, R)) if s >= P else ((s, R),)
    for start, blocks in starts + tuple((s + d, R - 1) for d in range(1, P)):
        if blocks < MIN_BLOCKS or blocks * P < MIN_RUN:
            continue
        try:
            try:
                result = _rewrite(order, leaves, outputs, loss, guards, position, start, P, blocks, fold,
                                  make_leaves, gather)
            except _MovedLeaves:
                result = _rewrite(order, leaves, outputs, loss, guards, position, start, P, blocks, fold,
                                  make_leaves, gather, move=False)
        except _NoRoll:
            continue
        if deferring and not result[0].hoisted:
            return DEFERRED
        with _lock:
            _KNOWN[kind] = True
            while len(_KNOWN) > _KNOWN_MAX:
                _KNOWN.popitem(last=False)
        return result
    return DEFERRED if deferring else None


def _rewrite(order, leaves, outputs, loss, guards, position, s, P, R, fold=None, make_leaves=True,
             gather=None, move=True):
    from ..ops import OPS
    kinds, steps, progressions = _classify(order, position, s, P, R, fold)
    end = s + R * P
    # what the run gives to the rest of the graph: only the last block's carries
    carry_slots = sorted({kind[1] for kind in kinds.values() if kind[0] == "carry"})
    if not carry_slots:                 # nothing carried from step to step: not a recurrence
        raise _NoRoll
    if any(order[s + q].dtype.kind == "O" for q in carry_slots):
        raise _NoRoll                   # a tuple carried (a scan's or a checkpoint's inputs): no carry
    # a stack after the run of one slot's value at every step (the outputs of an RNN, the
    # carry of each step): the loop's ys
    collected = {}
    for node in order[end:]:
        if node.op is OPS["stack"]:
            found = _collected(node, position, s, P, R, steps)
            if found is not None:
                collected[node] = found
    y_slots = sorted({q for q, _ in collected.values()})
    used_after = set()
    steps_after = set()         # slots of values made per step that the rest of the graph reads
    for node in order[end:]:
        if node in collected:
            continue
        for inp in node.inputs:
            p = position[inp]
            if s <= p < end:
                if (p - s) % P not in steps:
                    used_after.add(p)
                else:
                    steps_after.add((p - s) % P)
    for p in list(outputs) + ([loss] if loss is not None else []) + [g[0] for g in guards]:
        if s <= p < end:
            if (p - s) % P in steps:
                steps_after.add((p - s) % P)
            else:
                used_after.add(p)
    for p in used_after:
        if p < end - P or (p - (end - P)) not in carry_slots:
            raise _NoRoll
    # the carry going into block 0, per slot
    init = {}
    for kind in kinds.values():
        if kind[0] == "carry":
            q, node = kind[1], kind[2]
            if init.setdefault(q, node) is not node:
                raise _NoRoll
    for q in carry_slots:
        out, start = order[s + q], init[q]
        if out.shape != start.shape or out.dtype != start.dtype:
            raise _NoRoll
    consts = []
    for kind in kinds.values():
        if kind[0] == "const" and kind[1] not in consts:
            consts.append(kind[1])
    consts.sort(key=lambda node: position[node])
    leaf_slots = sorted(steps)

    # how each value made per step enters the loop: a view of one array, one folded constant,
    # one leaf gathered from the per-step leaves by the caller, or (the costly way: an
    # argument per step, stacked on every call) a stack
    read = {kind[1] for kind in kinds.values() if kind[0] == "step"}
    how = {}
    for q in leaf_slots:
        steps_q = [order[s + r * P + q] for r in range(R)]
        gathered = (gather is not None and q not in steps_after
                    and all(n.op is None and gather(n) for n in steps_q))
        if q in progressions and q not in steps_after:
            how[q] = "view"
        elif q in progressions and len(order[s + q].inputs) > 1:
            raise _NoRoll               # xs[t] over an int leaf, read after the loop
        elif fold is not None and q not in steps_after and all(n.op is None and fold(n) for n in steps_q):
            first = steps_q[0].value
            if q not in read:
                how[q] = "drop"         # the int of an xs[t] the loop reads as a view
            elif all(n.value is first for n in steps_q) or _equal_numbers(steps_q):
                how[q] = "same"         # one value read at every step (a new leaf per use)
            elif not steps_q[0].shape and make_leaves:
                how[q] = "fold"         # a number per step: one stacked constant
            else:
                how[q] = "gather" if gathered else "stack"
        else:
            how[q] = "gather" if gathered else "stack"
        if order[s + q].key[0] == "weak" and how[q] not in ("same", "drop"):
            raise _NoRoll
    for q in [q for q in leaf_slots if how[q] in ("same", "drop")]:
        if how[q] == "same":
            consts.append(order[s + q])
        leaf_slots.remove(q)
    stacked = sum(1 for v in how.values() if v == "stack")
    if 4 * stacked > P or stacked and len(order) < STACK_THRESHOLD:
        raise _NoRoll                   # more stacking than loop: straight-line code is cheaper
    carry_leaves = {q: like_leaf(order[s + q], order[s + q].requires_grad) for q in carry_slots}
    x_leaves = {q: like_leaf(order[s + q], order[s + q].requires_grad) for q in leaf_slots}
    const_leaves = {node: like_leaf(node, node.requires_grad) for node in consts}
    made = {}
    for q in range(P):
        node = order[s + q]
        if q in steps:
            continue
        inputs = []
        for k in range(len(node.inputs)):
            kind = kinds[(q, k)]
            if kind[0] == "in":
                inputs.append(made[kind[1]])
            elif kind[0] == "step" and how[kind[1]] == "same":
                inputs.append(const_leaves[order[s + kind[1]]])
            elif kind[0] == "step":
                inputs.append(x_leaves[kind[1]])
            elif kind[0] == "carry":
                inputs.append(carry_leaves[kind[1]])
            else:
                inputs.append(const_leaves[kind[1]])
        made[q] = _clone(node, tuple(inputs))
    outs = [made[q] if q in made else x_leaves[q] for q in carry_slots + y_slots]
    root = _made(OPS["pack"], tuple(outs), (True,))
    cell_inputs = [carry_leaves[q] for q in carry_slots] + [x_leaves[q] for q in leaf_slots] + \
        [const_leaves[node] for node in consts]
    in_specs = [spec(init[q]) for q in carry_slots] + [spec(order[s + q]) for q in leaf_slots] + \
        [spec(node) for node in consts]
    out_specs = [spec(node) for node in outs]

    new_order = _Rolled(order[:s])
    gathers = {}
    stacks = []
    new_leaves = False
    for q, kind in how.items():
        if kind == "same":
            new_order.append(order[s + q])
        new_leaves = new_leaves or kind in ("same", "drop")
    for q in leaf_slots:
        if how[q] == "view":
            # xs[n0 + d * t]: a scan over xs, or over a strided view of it (its steps'
            # axis moved first)
            source, n0, d, axis = progressions[q]
            layout = order[s + q].attrs[0]
            if n0 == 0 and d == 1 and R == source.shape[0] and len(layout) == 1:
                stacks.append(source)
                continue
            last, size = n0 + d * (R - 1), source.shape[axis]
            if d > 0:
                start, stop = n0 or None, None if last + d >= size else last + 1
            else:               # the start counted from the end: a reversed loop over a whole
                start = None if n0 == size - 1 else n0 - size       # sequence is xs[::-1]
                stop = None if last + d < 0 else last + d
            view = layout[:axis] + (("s", start, stop, None if d == 1 else d),) + layout[axis + 1:]
            xs = _made(OPS["index"], (source,), (view,))
            if axis:
                new_order.append(xs)
                axes = (axis,) + tuple(k for k in range(len(xs.shape)) if k != axis)
                xs = _made(OPS["transpose"], (xs,), (axes,))
            stacks.append(xs)
        else:
            steps = [order[s + r * P + q] for r in range(R)]
            if how[q] in ("fold", "gather"):
                # constants made anew at each step (a trace's Python numbers): one array; or
                # arrays given at each step: one leaf the caller stacks (``gathers``)
                new_leaves = True
                stacks.append(_folded(steps))
                if how[q] == "gather":
                    gathers[stacks[-1]] = tuple(steps)
                continue
            new_order += steps
            stacks.append(_made(OPS["stack"], tuple(steps), (0,)))
    new_order += [n for n in stacks if n not in position]
    outer = [init[q] for q in carry_slots] + stacks + consts
    n_x, n_const = len(leaf_slots), len(consts)
    n_carry = len(carry_slots)
    move = move and HOIST
    with _flags_from_inputs():
        moved = hoisted(root, cell_inputs, in_specs, n_carry, n_x, outer, R) if move else None
        if moved is not None:
            root, cell_inputs, in_specs, n_x, n_const, outer, made = moved
            new_order += made
            new_order.hoisted = True
        plan = sunk(root, cell_inputs, in_specs, n_carry, n_x, outer, R) if move else None
    if plan is not None:
        root, out_specs, cell_inputs, in_specs = plan.root, plan.out_specs, plan.leaves, plan.in_specs
        n_carry, n_x, n_const, outer = plan.n_carry, plan.n_x, plan.n_const, plan.outer
        new_order.hoisted = True
    cell = cell_for(root, cell_inputs, list(range(len(cell_inputs))), n_carry, n_x,
                    n_const, in_specs, out_specs)
    bundle = _made(OPS["pack"], tuple(outer), (False,))
    scan = _made(OPS["scan"], (bundle,), (cell, None if n_x else R, False))
    new_order += [bundle, scan]

    def part(k, shape, dtype):
        return _made(OPS["part"], (scan,), (k, tuple(shape), dtype))

    if plan is None:
        results = [part(k, order[end - P + q].shape, order[end - P + q].dtype) for k, q in enumerate(carry_slots)]
        results += [part(len(carry_slots) + j, (R,) + tuple(order[s + q].shape), order[s + q].dtype)
                    for j, q in enumerate(y_slots)]
    else:
        with _flags_from_inputs():
            results = plan.outputs(part)
    new_order += _made_after(results, set(new_order))
    mapping = {}
    for k, q in enumerate(carry_slots):
        mapping[order[end - P + q]] = results[k]
    ys_of = {}
    for j, q in enumerate(y_slots):
        ys_of[q] = results[len(carry_slots) + j]
    for node in order[end:]:
        if node in collected:
            # the stack of every step's value: the loop's ys, with the steps' axis where it
            # was, and the values stacked before and after the run's
            q, i0 = collected[node]
            ys = ys_of[q]
            axis = node.attrs[0] % len(node.shape)
            if axis:
                axes = tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, len(node.shape)))
                ys = _made(OPS["transpose"], (ys,), (axes,))
                new_order.append(ys)
            pieces = []
            for others in (node.inputs[:i0], None, node.inputs[i0 + R:]):
                if others is None:
                    pieces.append(ys)
                elif others:
                    pieces.append(_made(OPS["stack"], tuple(mapping.get(n, n) for n in others), (axis,)))
                    new_order.append(pieces[-1])
            if len(pieces) > 1:
                ys = _made(OPS["concatenate"], tuple(pieces), (axis,))
                new_order.append(ys)
            if ys.shape != node.shape or ys.dtype != node.dtype:
                raise _NoRoll
            mapping[node] = ys
            continue
        if any(inp in mapping for inp in node.inputs):
            mapping[node] = _clone(node, tuple(mapping.get(inp, inp) for inp in node.inputs))
        new_order.append(mapping.get(node, node))
    new_position = {node: i for i, node in enumerate(new_order)}

    def moved(p):
        old = order[p]
        return new_position[mapping.get(old, old)]

    old_position = {mapping.get(node, node): i for i, node in enumerate(order)}
    # constants that batching rules made for the moved work (an index rule's positions, say)
    made_leaves = any(node.op is None and node not in position and node not in stacks for node in new_order)
    if made_leaves and fold is None:
        raise _MovedLeaves
    if new_leaves or made_leaves:
        new_order.leaves = [node for node in new_order if node.op is None]
    new_order.gathers = gathers or None
    return (new_order, [moved(p) for p in outputs], None if loss is None else moved(loss),
            [(moved(p), kind, value) for p, kind, value in guards], old_position)


class _Rolled(list):
    """A graph's order after ``roll`` (or ``looked_at``): not looked at again."""

    __slots__ = ("leaves", "gathers", "hoisted")

    def __init__(self, nodes=(), leaves=None):
        list.__init__(self, nodes)
        self.leaves = leaves        # the graph's leaves, where rolling changed them (``fold``)
        self.gathers = None         # a leaf stacked from leaves of the original graph -> those
        self.hoisted = False        # whether the loop's cell had work moved out (``hoisted``)


def looked_at(order):
    """``order`` marked as looked at already: ``rolled`` finds nothing in it."""
    if not AUTO or len(order) < THRESHOLD or order.__class__ is _Rolled:
        return order
    return _Rolled(order)


def signature(order):
    """``graph.linearize``'s signature of a graph in ``order`` (a rolled one)."""
    from ..graph import _anomaly
    position = {node: i for i, node in enumerate(order)}
    keys = [(node.key, tuple([position[i] for i in node.inputs])) if node.inputs else node.key
            for node in order]
    keys.append(_anomaly())
    return tuple(keys)


def rolled(order, leaves, anomaly, outputs, loss, guards, fold=None, make_leaves=True, gather=None,
           known_only=False):
    """``roll``'s result where the build of a graph should use it (``AUTO``, a graph above
    ``THRESHOLD``, not under detect_anomaly, whose checks name nodes by position), else None.

    ``fold(leaf)``: whether a leaf is a constant whose value the rolled graph may hold
    (leaves made anew at each step then become one stacked constant leaf, or one leaf where
    they hold one value, or nothing where they index a view, and the new order's
    ``leaves`` lists the graph's leaves; without ``fold`` the leaves stay);
    ``make_leaves=False``: no new leaf (the rolled graph's leaves are some of ``leaves``)
    but those ``gather(leaf)`` allows: arrays given at each step become one leaf (``gathers``
    on the new order: that leaf -> the leaves the caller stacks into it on every call), and
    the constants that batching rules make for work moved out of the loop (the caller gives
    their values). Without ``fold`` no work that makes such a constant moves.
    ``known_only``: in a graph of fewer than ``DEFER_NODES`` nodes, roll only recurrences of
    kinds rolled before; ``DEFERRED`` where it holds only others (a first call runs it
    unrolled; rolling waits until it compiles)."""
    if not AUTO or anomaly or len(order) < THRESHOLD or order.__class__ is _Rolled:
        return None
    known_only = known_only and len(order) < DEFER_NODES
    outputs = [len(order) - 1] if outputs is None else list(outputs)
    guards = list(guards)
    found = None
    changed = None
    gathers = {}
    for _ in range(8):                  # one run at a time, the longest first
        step = roll(order, leaves, outputs, loss, guards, fold, make_leaves, gather, known_only)
        if step is DEFERRED and found is None:
            return DEFERRED
        if step is None or step is DEFERRED:
            break
        previous = order
        order, outputs, loss, guards, back = step
        if order.leaves is not None:
            leaves = changed = order.leaves
        if order.gathers:
            gathers.update(order.gathers)
        if found is None:
            old = back
        else:
            old = {node: found[4].get(previous[p]) for node, p in back.items()}
        found = (order, outputs, loss, guards, old)
    if found is not None:
        found[0].leaves = changed
        found[0].gathers = gathers or None
    return found


def _collected(node, position, s, P, R, steps):
    """(q, i) when ``node`` (a stack) takes slot q's value of every block of the run, in
    order, as its inputs i, i + 1, ... (and no other value of the run), else None."""
    inputs = node.inputs
    end = s + R * P
    inside = [i for i, inp in enumerate(inputs) if s <= position[inp] < end]
    if len(inside) != R or inside[-1] - inside[0] != R - 1:
        return None
    i0 = inside[0]
    q = position[inputs[i0]] - s
    if not 0 <= q < P or q in steps:
        return None
    for r in range(R):
        if position[inputs[i0 + r]] != s + r * P + q:
            return None
    return q, i0


def _folded(steps):
    """One constant leaf holding the values of ``steps`` (leaves of one shape), stacked."""
    from ..graph import Node
    first = steps[0]
    space = first.space
    if space is None:
        value = np.stack([np.asarray(n.value, first.dtype) for n in steps])
    else:
        value = space.xp.stack([space.asarray(n.value, first.dtype) for n in steps])
    node = Node(None, (), (), tuple(value.shape), first.dtype, False, None)
    node.value = value
    node.space = space
    node.key = leaf_key(node.shape, node.dtype, space, False)
    return node


def _clone(node, inputs):
    """``node`` over other (equivalent) inputs: its flags and key kept, whatever the mode now."""
    from ..graph import Node
    new = Node(node.op, inputs, node.attrs, node.shape, node.dtype, node.requires_grad, node.where)
    new.key, new.retain, new.space = node.key, node.retain, node.space
    return new


def _made(op, inputs, attrs=()):
    """A node of the rolled graph: shapes and dtypes by the op's rules, flags from its inputs."""
    from ..graph import Node, apply
    node = apply(op, inputs, attrs)
    rg = any(i.requires_grad for i in inputs[: op.n_differentiable])
    if node.requires_grad != rg:
        space = node.space
        node = Node(op, inputs, attrs, node.shape, node.dtype, rg, None)
        node.space = space
    return node
