"""Results written into the buffers of dead temporaries: a pass over the ``Line``s of one
generated NumPy function, just before it is compiled (after the numexpr pass).

A value is *owned* when the statement that assigns it made a new array (NumPy arithmetic,
``@``, a ufunc call, ``-x``), wrote into an owned value's buffer, or is a view (``xp.reshape``,
``.T``) of an owned value that nothing else reads (a flattened layer's gradient reshaped). A statement
``name = a op b`` (``+ - * /``), ``name = xp.ufunc(...)`` or ``name = -a`` that reads an owned
value ``t`` for the last time (no other statement reads it, the function does not return it),
where ``t`` and the result have the same shape and dtype, becomes ``xp.op(..., out=t)``: the
bias add lands in the product's buffer, an activation in its input's, a gradient's product in
the gradient. Results of fewer than ``MIN_ELEMENTS`` elements, and functions of more than
``MAX_LINES`` statements, are left as they are (what the pass saves there is less than what
it costs). Same ufunc, same loop, same operands: the values are NumPy's bit for bit; only
the allocation is gone.

Shapes and dtypes are those of the graph's nodes (exact), and of statements whose operands'
are known (``g`` names, the seed), worked out here by NumPy's rules; anything else is left as
it is. Assigned-once names only: an argument or a name assigned twice is never owned.

>>> import numpy as np, neuronika
>>> x = neuronika.from_ndarray(np.ones((64, 30)))
>>> w = neuronika.from_ndarray(np.ones((30, 40))).requires_grad()
>>> b = neuronika.from_ndarray(np.zeros(40)).requires_grad()
>>> with neuronika.config(compile="always"):
...     source = neuronika.transform.source((x.mm(w) + b).tanh().sum())
>>> "xp.add(v3, p2, out=v3)" in source and "xp.tanh(v4, out=v4)" in source
True
>>> neuronika.transform.cache_clear()
"""
from __future__ import annotations

import ast
import re

import numpy as np

from .. import backend

_BINARY = {ast.Add: "add", ast.Sub: "subtract", ast.Mult: "multiply", ast.Div: "divide"}
_FRESH = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.MatMult)


_REDUCTIONS = frozenset({"sum", "max", "min", "mean"})


def _dtype(node):
    """The dtype ``xp.float32`` (an attribute of ``xp``) names, or None."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "xp":
        try:
            return np.dtype(node.attr)
        except TypeError:
            return None
    return None


_TOKEN = re.compile(r"[A-Za-z_]\w*")
#: Statements of a function beyond which the pass is not run: parsing each statement again
#: costs about as much as generating it, and a program that long is dominated by its compile.
MAX_LINES = 1000
#: Elements below which a result keeps its own buffer (the statement is not even parsed): an
#: allocation of a few kB costs less than a tenth of a microsecond.
MIN_ELEMENTS = 2048

_BROADCAST = {}


def _broadcast(found):
    """(shape, dtype) of an elementwise operation over operands of types ``found`` by NumPy's
    rules (Python numbers weak), or (None, None); kept by the types (a program repeats few)."""
    result = _BROADCAST.get(found)
    if result is None:
        try:
            shape = tuple(np.broadcast_shapes(*[f[0] for f in found]))
            dtype = np.result_type(*[f[1] if isinstance(f[1], np.dtype) else f[1](0) for f in found])
            result = shape, dtype
        except (ValueError, TypeError):
            result = None, None
        if len(_BROADCAST) > 4096:
            _BROADCAST.clear()
        _BROADCAST[found] = result
    return result


def _ufunc(name):
    """Whether ``xp.<name>`` of NumPy programs is a ufunc (it takes ``out=``)."""
    return isinstance(getattr(backend.NUMPY_XP, name, None), np.ufunc)


def _xp_call(node):
    """The name of ``xp.<name>(positional arguments)``, else None."""
    func = node.func
    if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "xp"
            and not node.keywords and not any(isinstance(a, ast.Starred) for a in node.args)):
        return func.attr
    return None


class _Types:
    """Shape and dtype of an expression's value (None: unknown; a Python number is weak: its
    type, no shape)."""

    def __init__(self, known):
        self.known = known
        self.seen = {}                  # id(ast node) -> its type, within one statement

    def of(self, node):
        key = id(node)
        if key in self.seen:
            return self.seen[key]
        method = getattr(self, "_" + node.__class__.__name__, None)
        found = self.seen[key] = None if method is None else method(node)
        return found

    def _Name(self, node):
        return self.known.get(node.id)

    def _Constant(self, node):
        value = node.value
        return ((), type(value)) if value.__class__ in (int, float) else None

    def _Attribute(self, node):
        if node.attr == "T":
            found = self.of(node.value)
            if found is not None and len(found[0]) == 2:
                return found[0][::-1], found[1]
        return None

    def _UnaryOp(self, node):
        return self.of(node.operand) if isinstance(node.op, ast.USub) else None

    def _combined(self, operands):
        found = [self.of(o) for o in operands]
        if None in found:
            return None
        arrays = [f for f in found if f[1].__class__ is not type]
        if not arrays:
            return None                 # numbers only: a Python number
        shape, dtype = arrays[0]
        if len(arrays) < len(found) or any(f != arrays[0] for f in arrays[1:]):
            shape, dtype = _broadcast(tuple(found))
        return None if shape is None else (shape, dtype)

    def _BinOp(self, node):
        if isinstance(node.op, ast.MatMult):
            a, b = self.of(node.left), self.of(node.right)
            if a is None or b is None or len(a[0]) != 2 or len(b[0]) != 2 or a[0][1] != b[0][0]:
                return None
            return (a[0][0], b[0][1]), np.result_type(a[1], b[1])
        if isinstance(node.op, _FRESH):
            return self._combined([node.left, node.right])
        return None

    def _Compare(self, node):
        if len(node.comparators) != 1:
            return None
        found = self._combined([node.left, node.comparators[0]])
        return None if found is None else (found[0], np.dtype(bool))

    def _Call(self, node):
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "xp"):
            return None
        name = func.attr
        if name in _REDUCTIONS:
            return self._reduction(node)
        if name == "astype" and len(node.args) == 2 and not node.keywords:
            found, dtype = self.of(node.args[0]), _dtype(node.args[1])
            return None if found is None or dtype is None else (found[0], dtype)
        if _xp_call(node) is None or not _ufunc(name):
            return None
        found = self._combined(node.args)
        if found is None:
            return None
        return found if found[1].kind in "fc" else None

    def _reduction(self, node):
        """``xp.sum(x, axis=..., keepdims=...)`` and the like: the shape reduced, the dtype kept
        (float arrays only)."""
        if len(node.args) != 1:
            return None
        found = self.of(node.args[0])
        options = {k.arg: k.value for k in node.keywords}
        if found is None or not isinstance(found[1], np.dtype) or found[1].kind not in "fc" or set(options) - {"axis", "keepdims"}:
            return None
        try:
            axis = ast.literal_eval(options["axis"]) if "axis" in options else None
            keepdims = ast.literal_eval(options["keepdims"]) if "keepdims" in options else False
        except ValueError:
            return None
        shape = found[0]
        axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
        try:
            axes = {a % len(shape) for a in axes}
        except (TypeError, ZeroDivisionError):
            return None
        kept = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keepdims else \
            tuple(d for i, d in enumerate(shape) if i not in axes)
        return kept, found[1]


def reuse_buffers(lines, keep, known, sizes):
    """``lines`` with statements that read an owned value for the last time writing into its
    buffer (see the module docstring); ``keep``: the names read after the last line (returned);
    ``known``: name -> (shape, dtype) of the graph's values and the seed; ``sizes``: name -> at
    most how many elements it holds (values and gradients). Only statements that assign
    ``MIN_ELEMENTS`` or more, and assign a value read once or read one, are parsed."""
    from .passes import Line, reads_and_writes
    if len(lines) > MAX_LINES:
        return lines
    uses, stores = reads_and_writes(lines, keep)
    once = {name for name, count in uses.items() if count == 1 and stores.get(name) == 1}
    types = _Types(dict(known))
    owned = set()
    out = []
    for line in lines:
        target = line.target
        text = line.text
        if (target is None or line.aug or stores.get(target) != 1 or sizes.get(target, 0) < MIN_ELEMENTS
                or not (target in once or any(name in owned and name in once for name in line.loads))
                or "\n" in text or not text.startswith(target + " = ")):
            out.append(line)
            continue
        try:
            expr = ast.parse(text).body[0].value
        except SyntaxError:
            out.append(line)
            continue
        types.seen.clear()
        own = types.known.get(target) or types.of(expr)
        if own is not None and own[1].__class__ is not type:
            types.known.setdefault(target, own)
        written = _in_place(expr, text, line.loads, own, owned, once, types)
        if written is not None:
            out.append(Line(f"{target} = {written}", line.loads, line.stores, target))
            owned.add(target)
            continue
        if (target in once and own is not None and own[0] and own[1].__class__ is not type
                and (_fresh(expr) or _view_of_dead(expr, owned, once))):
            owned.add(target)
        out.append(line)
    return out


#: The views whose result may take a later result in place when their source is owned and
#: read by nothing else: writing into the view writes into a buffer no one reads (where NumPy
#: copies instead, into an array no one else has)
_VIEWS = frozenset({"reshape", "permute_dims", "matrix_transpose"})


def _view_of_dead(expr, owned, once):
    """Whether ``expr`` is a view (``xp.reshape``, ``.T``, ...) of an owned value it alone reads."""
    if expr.__class__ is ast.Attribute and expr.attr in ("T", "mT"):
        source = expr.value
    elif expr.__class__ is ast.Call and expr.args and _xp_call(expr) in _VIEWS:
        source = expr.args[0]
    else:
        return False
    return source.__class__ is ast.Name and source.id in owned and source.id in once


def _ufunc_call(expr):
    """(ufunc name, operands) of an expression that is one ufunc call (``a + b``, ``-a``,
    ``xp.tanh(a)``), else None."""
    if expr.__class__ is ast.BinOp and expr.op.__class__ in _BINARY:
        return _BINARY[expr.op.__class__], [expr.left, expr.right]
    if expr.__class__ is ast.UnaryOp and expr.op.__class__ is ast.USub:
        return "negative", [expr.operand]
    if expr.__class__ is ast.Call:
        name = _xp_call(expr)
        if name is not None and _ufunc(name):
            return name, list(expr.args)
    return None


def _fresh(expr):
    """Whether ``expr`` makes a new array (given that its value has a shape): a ufunc call,
    ``**``, ``@`` or ``xp.where``."""
    if _ufunc_call(expr) is not None:
        return True
    if expr.__class__ is ast.BinOp:
        return isinstance(expr.op, _FRESH)
    return expr.__class__ is ast.Call and _xp_call(expr) == "where"


def _in_place(expr, text, loads, own, owned, once, types):
    """The call that computes ``expr`` (the statement ``text``'s value, which reads ``loads``)
    into the buffer of an owned value it reads for the last time, or None."""
    if own is None or not own[0] or own[1].__class__ is type or own[1].kind not in "fc":
        return None
    tokens = None
    for name in loads:
        # read once, here only, in one place: nothing reads it after the buffer is written
        if name in owned and name in once and types.known.get(name) == own:
            tokens = _TOKEN.findall(text) if tokens is None else tokens
            if tokens.count(name) != 1:
                continue
            written = _into(expr, name, own, types, text)
            if written is not None and written != name:
                return written
    return None


def _into(expr, name, own, types, text):
    """``expr`` computed into ``name``'s buffer, each step of the way from ``name`` to the root
    a ufunc with ``out=`` whose result has ``name``'s shape and dtype (NumPy's rules), or None."""
    if expr.__class__ is ast.Name:
        return name if expr.id == name else None
    found = _ufunc_call(expr)
    if found is None:
        return None
    ufunc, operands = found
    if types._combined(operands) != own:
        return None                     # NumPy's result is not the buffer's shape and dtype
    for k, operand in enumerate(operands):
        inner = _into(operand, name, own, types, text)
        if inner is not None:
            args = [inner if i == k else text[o.col_offset:o.end_col_offset] for i, o in enumerate(operands)]
            return f"xp.{ufunc}({', '.join(args)}, out={name})"
    return None
