"""Passes over generated code: reducing a gradient to its input's shape, dropping
assignments nothing reads, and freeing values after their last use.

The code generator works on ``Line``s (a statement's source text with the program
variables it reads and writes); the same passes exist over gast statements for the
interpreter. Each pass is one sweep: linear in the number of statements.
"""
from __future__ import annotations

import itertools

import gast
import numpy as np


def reduce_plan(shape, target, extent):
    """How to turn a gradient array of ``shape`` into one for an input of ``target`` shape.

    The array stands for a gradient of shape ``extent`` (it may be smaller and
    broadcast). Along an axis where the input was broadcast (target 1 or
    missing, extent > 1) the gradient is summed; where the array itself is
    only broadcast there, the sum is ``extent`` times its value. Returns the
    axes to sum (in ``extent``'s numbering), that factor, and the shape the
    result has with the summed axes kept as 1s.
    """
    ndim = len(extent)
    padded = (1,) * (ndim - len(shape)) + tuple(shape)
    padded_target = (1,) * (ndim - len(target)) + tuple(target)
    summed = []
    factor = 1
    for axis in range(ndim):
        if padded_target[axis] == extent[axis] or extent[axis] == 1:
            continue
        if padded[axis] == 1:
            factor *= extent[axis]
        else:
            summed.append(axis)
    kept = tuple(1 if axis in summed else padded[axis] for axis in range(ndim))
    return summed, factor, kept


def _strip(shape):
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _call(function, args=(), keywords=()):
    """``xp.function(*args, **keywords)`` (the array-API standard's function forms)."""
    func = gast.Attribute(gast.Name("xp", gast.Load(), None, None), function, gast.Load())
    return gast.Call(func, list(args), [gast.keyword(k, v) for k, v in keywords])


def _const(value):
    from .templates import constant
    return constant(value)


def unbroadcast(expr, shape, target, extent, fresh):
    """``expr`` (a gradient array of ``shape``) reduced for an input of ``target`` shape.

    Returns the new expression, its shape, and whether it is a new array.
    Emits nothing where nothing is needed.
    """
    summed, factor, kept = reduce_plan(shape, target, extent)
    result = _strip(kept)
    offset = len(extent) - len(shape)
    if summed:
        axes = [a - offset for a in summed]
        axis = _const(axes[0] if len(axes) == 1 else tuple(axes))
        dropped = tuple(d for i, d in enumerate(shape) if i not in axes)
        if _strip(dropped) == result and len(dropped) <= len(target):
            expr, shape = _call("sum", [expr], keywords=[("axis", axis)]), dropped
        else:
            expr = _call("sum", [expr], keywords=[("axis", axis), ("keepdims", gast.Constant(True, None))])
            shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
        fresh = True
    if len(shape) > len(target):
        expr, shape = _call("reshape", [expr, _const(result)]), result
    if factor != 1:
        expr, fresh = gast.BinOp(expr, gast.Mult(), _const(factor)), True
    return expr, tuple(shape), fresh


def broadcast(*shapes):
    return tuple(np.broadcast_shapes(*shapes))


def outputs_and_loss(order, outputs, loss):
    """The output positions and the differentiated one of a program over ``order``: by default
    (``backward()`` on a root) the root, differentiated if it can be; else what the functional
    face says (``outputs``, ``loss``), never inferred."""
    if outputs is None:
        root = len(order) - 1
        return [root], (root if loss is None and order[root].requires_grad else loss)
    return list(outputs), loss


def _names(stmt):
    loads, stores = set(), set()
    for node in gast.walk(stmt):
        if isinstance(node, gast.Name):
            (stores if isinstance(node.ctx, gast.Store) else loads).add(node.id)
    return loads, stores


def free_after_last_use(stmts, keep):
    """Insert ``del`` for every name assigned in ``stmts`` right after its last use,
    except the names in ``keep`` (returned values). Over gast statements."""
    last = {}
    assigned = set()
    for index, stmt in enumerate(stmts):
        loads, stores = _names(stmt)
        assigned |= stores
        for name in loads | stores:
            last[name] = index
    dead = {}
    for name in assigned - set(keep):
        dead.setdefault(last[name], []).append(name)
    result = []
    for index, stmt in enumerate(stmts):
        result.append(stmt)
        if index in dead:
            targets = [gast.Name(n, gast.Del(), None, None) for n in sorted(dead[index])]
            result.append(gast.Delete(targets))
    return result


class Line:
    """One statement of generated code: its source (no indentation; the lines of a
    compound statement after the first indented relative to it), the program
    variables it reads and writes, and for ``name = ...`` or ``name += ...`` the
    name (``target``; ``aug`` for the second), which is what may be dropped as dead."""

    __slots__ = ("text", "loads", "stores", "target", "aug")

    def __init__(self, text, loads, stores, target=None, aug=False):
        self.text = text
        self.loads = loads
        self.stores = stores
        self.target = target
        self.aug = aug

    def __repr__(self):
        return f"Line({self.text!r})"


def reads_and_writes(lines, keep):
    """(uses, stores): how many statements of ``lines`` read each name (a name in ``keep``,
    read after the last line, counts two more) and how many assign it."""
    uses, stores = dict.fromkeys(keep, 2), {}
    for line in lines:
        for name in line.loads:
            uses[name] = uses.get(name, 0) + 1
        for name in line.stores:
            stores[name] = stores.get(name, 0) + 1
    return uses, stores


def doubled_terms(lines):
    """``lines`` with a gradient's second contribution written ``t += t`` where it repeats the
    first one's text on the next line (``t = g * x`` then ``t += g * x``: the adjoint of
    ``x * x``): the same value to the bit (a number added to itself is exactly twice it, in
    every float and integer type), one elementwise pass and one temporary fewer."""
    out = None
    for k in range(1, len(lines)):
        line, before = lines[k], lines[k - 1]
        target = line.target
        if not line.aug or target is None or before.target != target or before.aug:
            continue
        head = target + " = "
        # (an expression that read the target would not be the same value twice)
        if (not before.text.startswith(head) or "\n" in before.text or target in before.loads
                or line.text != f"{target} += {before.text[len(head):]}"):
            continue
        if out is None:
            out = list(lines)
        out[k] = Line(f"{target} += {target}", [target], [target], target, aug=True)
    return lines if out is None else out


def delete(names):
    """``del a, b`` (sorted), as a Line."""
    if len(names) > 1:
        names = sorted(names)
    return Line("del " + ", ".join(names), (), ())


def drop_dead_lines(lines, keep):
    """``drop_dead_assignments`` over Lines: one backward sweep keeps the names read
    later (``keep``: read after the last line); an assignment or an in-place update
    of a name nothing reads later goes."""
    needed = set(keep)
    kept = []
    for line in reversed(lines):
        target = line.target
        if target is not None:
            if target not in needed:
                continue
            if not line.aug:
                needed.discard(target)
        needed.update(line.loads)
        kept.append(line)
    kept.reverse()
    return kept


def free_lines(lines, keep, deferred=(), kept=(), every=8):
    """``free_after_last_use`` over Lines: ``del`` every name assigned in ``lines`` right
    after its last use, except the names in ``keep``. Names in ``deferred`` (small
    values) may wait: they are freed together, ``every`` at a time (with the next name
    freed at once, and at the end); names in ``kept`` (tiny values) are left to the end
    of the function. Both save statements to compile."""
    assigned = set(itertools.chain.from_iterable([line.stores for line in lines]))
    assigned.difference_update(keep)
    if kept:
        assigned.difference_update(kept)
    if not assigned:
        return list(lines)
    last = {}
    for index, line in enumerate(lines):
        for name in line.loads:
            last[name] = index
        for name in line.stores:
            last[name] = index
    dead = {}
    for name in assigned:
        index = last[name]
        found = dead.get(index)
        if found is None:
            dead[index] = [name]
        else:
            found.append(name)
    if not dead:
        return list(lines)
    result = []
    append = result.append
    pending = []
    for index, line in enumerate(lines):
        append(line)
        names = dead.get(index)
        if names:
            if deferred:
                now = [n for n in names if n not in deferred]
                pending += [n for n in names if n in deferred]
                if now or len(pending) >= every:
                    append(delete(now + pending))
                    pending = []
            else:
                append(delete(names))
    if pending:
        append(delete(pending))
    return result


def _reads_a_value(expr):
    """Whether ``expr`` reads a program variable (so it is an array, not a bare number
    like ``-1j``)."""
    return any(isinstance(n, gast.Name) and n.id != "xp" for n in gast.walk(expr))


# a mask such as ``(x >= lo) & (x <= hi)`` is boolean: the factor 1 gives it the gradient's dtype
_LOGICAL = (gast.BitAnd, gast.BitOr, gast.BitXor, gast.Invert, gast.Not)


def drop_unit_factor(stmts, name):
    """Where ``name`` is known to be 1, drop it as a factor: ``seed * (1 - v * v)``
    becomes ``1 - v * v``. Only where the other factor is arithmetic, so a new
    array either way: ``seed * p0`` stays, or the gradient would alias ``p0`` (and
    the code generator, which saw a new array there, may add into it in place)."""

    class Drop(gast.NodeTransformer):
        def visit_BinOp(self, node):
            self.generic_visit(node)
            if isinstance(node.op, gast.Mult):
                for side, other in (("left", "right"), ("right", "left")):
                    operand, kept = getattr(node, side), getattr(node, other)
                    if (isinstance(operand, gast.Name) and operand.id == name
                            and isinstance(kept, (gast.BinOp, gast.UnaryOp)) and _reads_a_value(kept)
                            and not isinstance(kept.op, _LOGICAL)):
                        return kept
            return node

    return [Drop().visit(s) for s in stmts]


def _droppable(stmt):
    """The name a ``name = ...`` or ``name += ...`` statement assigns, else None."""
    if isinstance(stmt, gast.Assign):
        if len(stmt.targets) == 1 and isinstance(stmt.targets[0], gast.Name):
            return stmt.targets[0].id
    elif isinstance(stmt, gast.AugAssign) and isinstance(stmt.target, gast.Name):
        return stmt.target.id
    return None


def drop_dead_assignments(stmts, keep):
    """Remove ``name = expr`` statements whose value nothing reads: ``grad`` does not
    compute a loss value it does not return. One backward sweep over gast statements
    (liveness): ``g += d`` whose ``g`` nothing reads goes, and with it the ``g = ...``
    before it (a gradient flowing only into a zero adjoint, as floor's)."""
    needed = set(keep)
    kept = []
    for stmt in reversed(stmts):
        target = _droppable(stmt)
        if target is not None:
            if target not in needed:
                continue
            if isinstance(stmt, gast.Assign):
                needed.discard(target)      # the value before is not the one read later
        needed |= _names(stmt)[0]
        if isinstance(stmt, gast.AugAssign):
            needed.add(target)              # ``g += d`` reads ``g``
        kept.append(stmt)
    kept.reverse()
    return kept
