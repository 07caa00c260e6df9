"""Buffers kept between calls: a pass over the ``Line``s of one generated NumPy function,
after ``inplace.reuse_buffers``.

A large temporary (``MIN_BYTES`` or more) made by an arithmetic operator, ``@``, a ufunc
call or a kernel that takes ``out=`` (``kernels.writes_out``), which nothing returns and
nothing may keep a view of, is written into a buffer the function keeps for its next call::

    _B[0] = v17 = xp.matmul(v16, p4, out=_B[0])

On the first call ``_B[0]`` is None, so NumPy allocates the array as it would have, and the
statement keeps it. Afterwards the same memory is written again: no allocation, and no page
faults, which are what a fresh array of a few hundred kB costs when the C library has given
the memory of the last one back to the system (a CNN's step in a process of its own: 4.5
to 2.7 ms with the library told to keep it). Temporaries whose lives do not overlap share a
buffer when they have the same shape, dtype and maker (an array made by ``@`` is never
written by a ufunc that laid it out otherwise).

A set of buffers belongs to one call at a time: ``_B = _take(key)`` takes a free set of this
function's for the arguments' shapes (``key``: the shapes of its array arguments, which
fix every temporary's shape; a program serving a family of sizes keeps a set per size, the
newest ``KEYS``) or makes an empty one, and ``_give(_B)`` hands it back before the return.
Two threads, or a call inside a call, take two sets; a call that raises drops its set.

A value that escapes the call (returned, or a view of one, or a value written into its
buffer; or read by a statement this pass does not know to make a new array: a call of
anything else, a tuple, a loop, whose result might be the value itself) may still be
alive when the function runs again: a split forward's saved values until their backward,
a gradient in ``p.grad`` until ``zero_grad()``, a jitted step's new parameters until the
next step has read them. Such a value gets two buffers of its own, and is written into
one of them only if nothing references it any more (``ops.pool``'s reference count)::

    _B[2] = g0 = xp.matmul(v6.T, g9, out=_unused(_B, 2))

``_unused`` hands out ``_B[2]`` or ``_B[3]`` where nothing else holds it (moved to
``_B[2]``), else None (NumPy allocates; the last call's array moves to ``_B[3]``, the one
before is dropped): a step's new parameters alternate between two arrays, and a value
someone still holds is never written. Values are followed through names (``a = b``),
views (``.T``, ``xp.reshape``, subscripts) and ``out=``.

``KEEP`` switches the pass off (False); programs compiled before keep their buffers.
"""
from __future__ import annotations

import ast

from ..ops.pool import unused
from .inplace import _BINARY, _Types, _ufunc, _xp_call

#: Results of at least this many bytes are kept: below it an allocation comes from the C
#: library's free lists, and costs less than what the buffer's bookkeeping does.
MIN_BYTES = 1 << 16
#: Argument shapes (sizes of one family program) whose buffer sets a function keeps.
KEYS = 2
#: Off: no function compiled from now on keeps buffers.
KEEP = True

#: calls whose result is a view of their first argument
_VIEW_CALLS = frozenset({"reshape", "transpose", "permute_dims", "expand_dims", "squeeze", "broadcast_to",
                         "moveaxis", "swapaxes", "asarray", "ravel", "flip", "diagonal", "real", "imag"})
#: calls of ``xp`` that make a new array (besides ufuncs)
_FRESH_CALLS = frozenset({"sum", "max", "min", "mean", "prod", "argmax", "argmin", "var", "std", "where",
                          "astype", "matmul", "cumsum", "any", "all", "zeros_like", "ones_like", "empty_like",
                          "concatenate", "stack"})


class _Group:
    """The values that live in one kept buffer (the one made at line ``start``, views of it,
    values written into it): ``end``, the last line reading any of them; ``kind``, what may
    share its buffer; ``slot``, the buffer's number."""

    __slots__ = ("start", "end", "escaped", "kind", "slot")

    def __init__(self, start, kind):
        self.start = self.end = start
        self.escaped = False
        self.kind = kind
        self.slot = None


def keep_buffers(lines, keep, known, sizes, params, namespace):
    """(``lines`` with kept buffers, the number of buffers); see the module docstring.
    ``params``: the function's arguments; ``namespace``: its globals (kernels by name)."""
    if not KEEP:
        return lines, 0
    stores = {}
    for line in lines:
        for name in line.stores:
            stores[name] = stores.get(name, 0) + 1
    typed = dict(known)
    for name, found in known.items():       # a gradient g<i> has the shape and dtype of value <i>
        if name[1:].isdigit():
            typed.setdefault("g" + name[1:], found)
    types = _Types(typed)
    group_of = {}                       # name -> _Group
    groups = []
    made = {}                           # line index -> (group, expression, kind)
    least = MIN_BYTES // 16             # elements: no dtype is wider than 16 bytes
    for index, line in enumerate(lines):
        target, text = line.target, line.text
        read = [group_of[n] for n in line.loads if n in group_of]
        simple = (target is not None and not line.aug and "\n" not in text
                  and text.startswith(target + " = "))
        candidate = simple and stores.get(target) == 1 and sizes.get(target, 0) >= least
        if not read and not candidate:
            continue
        expr = None
        if simple or line.aug and "\n" not in text:
            try:
                expr = ast.parse(text).body[0].value
            except SyntaxError:
                pass
        for group in read:
            group.end = index
        if line.aug and expr is not None:
            continue                        # ``a += ...`` writes into a: what it reads is only read
        if expr is None:
            for group in read:
                group.escaped = True
            continue
        if read:
            aliased = _aliases(expr, group_of, namespace)
            if aliased is None:             # a statement that may keep what it reads
                for group in read:
                    group.escaped = True
                continue
            if aliased:
                if stores.get(target) != 1 or len(aliased) > 1:
                    for group in aliased:
                        group.escaped = True
                else:
                    (group,) = aliased
                    group_of[target] = group
                continue
        if not candidate:
            continue
        kind = _maker(expr, namespace)
        if kind is None:
            continue
        types.seen.clear()
        own = types.known.get(target)
        if kind[0] != "kernel":
            if own is None or types.of(expr) != own:
                continue                    # NumPy's result might not be the node's
        if own is not None and own[1].__class__ is not type:
            if sizes[target] * own[1].itemsize < MIN_BYTES:
                continue
            # products, elementwise results and kernels share among themselves (alike in layout)
            maker = "matmul" if kind[-1] == "matmul" else "kernel" if kind[0] == "kernel" else "elementwise"
            shared = (maker,) + tuple(own)
        elif sizes[target] * 4 < MIN_BYTES:
            continue
        else:
            shared = (index,)               # a kernel's result of unknown type: its own buffer
        group = _Group(index, shared)
        group_of[target] = group
        groups.append(group)
        made[index] = (group, expr, kind)
    for name in keep:
        group = group_of.get(name)
        if group is not None:
            group.escaped = True
    count = _assign(groups)
    if not count:
        return lines, 0
    from .passes import Line
    out = []
    for index, line in enumerate(lines):
        found = made.get(index)
        if found is None or found[0].slot is None:
            out.append(line)
            continue
        group, expr, kind = found
        buffer = f"_B[{group.slot}]"
        into = f"_unused(_B, {group.slot})" if group.escaped else buffer
        out.append(Line(f"{buffer} = {line.target} = {_written(expr, line.text, kind, into)}",
                        tuple(line.loads) + ("_B",), line.stores, line.target))
    arrays = [p for p in params if p in known and known[p][0]]
    key = "(" + "".join(f"{p}.shape, " for p in arrays) + ")"
    return [Line(f"_B = _take({key})", tuple(arrays), ("_B",))] + out + [Line("_give(_B)", ("_B",), ())], count


def _assign(groups):
    """Give each group a buffer number: one that escaped two buffers of its own (``_unused``);
    the others share between groups of one kind whose lines do not overlap. The number of
    buffers."""
    free = {}                           # kind -> [(end, slot)]
    count = 0
    for group in groups:                # in order of their first line
        if group.escaped:
            group.slot = count
            count += 2
            continue
        kind = group.kind
        pool = free.setdefault(kind, [])
        for k, (end, slot) in enumerate(pool):
            if end < group.start:
                group.slot = slot
                pool[k] = (group.end, slot)
                break
        else:
            group.slot = count
            pool.append((group.end, count))
            count += 1
    return count


def _maker(expr, namespace):
    """How ``expr`` makes its array when it can take ``out=``: ('binary', ufunc),
    ('negative',), ('ufunc', name), ('kernel', name); else None."""
    cls = expr.__class__
    if cls is ast.BinOp:
        if expr.op.__class__ in _BINARY:
            return "binary", _BINARY[expr.op.__class__]
        if expr.op.__class__ is ast.MatMult:
            return "binary", "matmul"
        return None
    if cls is ast.UnaryOp:
        return ("negative",) if expr.op.__class__ is ast.USub else None
    if cls is ast.Call:
        name = _xp_call(expr)
        if name is not None:
            return ("ufunc", name) if _ufunc(name) else None
        func = expr.func
        if (func.__class__ is ast.Name and not any(k.arg == "out" for k in expr.keywords)
                and getattr(namespace.get(func.id), "writes_out", False)):
            return "kernel", func.id
    return None


def _written(expr, text, kind, buffer):
    """The text of ``expr`` computed into ``buffer``."""
    def part(node):
        return text[node.col_offset:node.end_col_offset]

    if kind[0] == "binary":
        return f"xp.{kind[1]}({part(expr.left)}, {part(expr.right)}, out={buffer})"
    if kind[0] == "negative":
        return f"xp.negative({part(expr.operand)}, out={buffer})"
    call = part(expr)
    return f"{call[:-1]}, out={buffer})"


def _aliases(expr, group_of, namespace):
    """The groups whose buffer ``expr``'s value may be (a view of), or None where that is not
    known (every group it reads may then be kept by it)."""
    cls = expr.__class__
    if cls is ast.Name:
        group = group_of.get(expr.id)
        return {group} if group is not None else set()
    if cls is ast.Attribute:
        if expr.attr in ("shape", "ndim", "size", "dtype"):
            return set()                # (no array)
        return _aliases(expr.value, group_of, namespace) if expr.attr in ("T", "mT", "real", "imag") else None
    if cls is ast.Subscript:
        return _aliases(expr.value, group_of, namespace)
    if cls in (ast.BinOp, ast.UnaryOp, ast.Compare, ast.Constant):
        return set()                    # (an operator's result is a new array)
    if cls is ast.Call:
        func = expr.func
        for keyword in expr.keywords:
            if keyword.arg == "out":
                return _aliases(keyword.value, group_of, namespace)
        name = _xp_call_name(func)
        if name is not None:
            if name == "astype" and any(k.arg == "copy" for k in expr.keywords):
                return None                 # (copy=False may hand back its argument)
            if name == "asarray":
                copies = any(k.arg == "copy" and isinstance(k.value, ast.Constant) and k.value.value is True
                             for k in expr.keywords)
                if copies:
                    return set()
            if name in _VIEW_CALLS:
                return _aliases(expr.args[0], group_of, namespace) if expr.args else None
            if name in _FRESH_CALLS or _ufunc(name):
                return set()
            return None
        if func.__class__ is ast.Attribute and func.attr in ("reshape", "transpose", "view", "ravel",
                                                             "squeeze", "swapaxes"):
            return _aliases(func.value, group_of, namespace)
        if func.__class__ is ast.Attribute and func.attr in ("copy", "sum", "max", "min", "mean"):
            return set()
        if func.__class__ is ast.Name and getattr(namespace.get(func.id), "fresh", False):
            return set()
    return None


def _xp_call_name(func):
    if func.__class__ is ast.Attribute and func.value.__class__ is ast.Name and func.value.id == "xp":
        return func.attr
    return None


def pool(count):
    """``(_take, _give)`` of one function with ``count`` buffers (see the module docstring)."""
    sets = {}                           # key -> free buffer sets (lists; the key last)

    def take(key):
        free = sets.get(key)
        if free:
            try:
                return free.pop()
            except IndexError:          # (another thread took the last one)
                pass
        return [None] * count + [key]

    def give(buffers):
        key = buffers[-1]
        free = sets.get(key)
        if free is None:
            if len(sets) >= KEYS:
                try:
                    del sets[next(iter(sets))]     # the oldest size's sets
                except (RuntimeError, KeyError, StopIteration):
                    pass
            free = sets.setdefault(key, [])
        free.append(buffers)

    return take, give


__all__ = ["keep_buffers", "pool", "unused", "MIN_BYTES", "KEEP", "KEYS"]
