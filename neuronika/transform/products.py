"""Small matrix products through ``np.dot``: a pass over the ``Line``s of one generated NumPy
function, the last before it is compiled (after ``buffers``).

A statement ``t = a @ b`` whose operands are names (or a name's ``.T``) of one or two
dimensions and a BLAS dtype (float32, float64, complex64, complex128), with at most
``MAX_WORK`` multiply-adds, becomes ``t = xp.dot(a, b)``: for such operands NumPy's dot and
matmul compute the same thing (one BLAS call), and dot skips matmul's ufunc dispatch,
0.15-0.25 µs a call. That is a third of a (4, 8) x (8, 8)
product and a tenth of an RNN step's (16, 64) x (64, 64); a large product gains nothing
(dot calls BLAS with its operands the other way round for some shapes: 7% slower at
(784, 64) x (64, 256)), so only small ones are written so.

The sizes are those the passes read (``state.sizes``: a family program's, see ``families``):
the product's work is sqrt(size(a) size(b) size(t)). Ranks and dtypes are the graph nodes'
(a gradient ``g<i>`` has node i's; a matmul's adjoint receives it at the node's full shape).

>>> import numpy as np, neuronika
>>> w = neuronika.from_ndarray(np.ones((8, 3))).requires_grad()
>>> x = neuronika.from_ndarray(np.ones((4, 8)))
>>> with neuronika.config(compile="always"):
...     source = neuronika.transform.source((x.mm(w)).tanh().sum())
>>> "v2 = xp.dot(x1, p0)" in source and "@" not in source
True
>>> neuronika.transform.cache_clear()
"""
from __future__ import annotations

import ast
import math

import numpy as np

from .passes import Line

#: Multiply-adds above which a product stays ``a @ b`` (measured: dot's saving is a fixed
#: fraction of a microsecond; at 2^21 and above the two are within a few percent either way).
MAX_WORK = 1 << 20
_BLAS = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))


def _operand(node, types):
    """The name an operand reads (a name or its ``.T``) if it has one or two dimensions and a
    BLAS dtype, else None."""
    if node.__class__ is ast.Attribute and node.attr == "T":
        node = node.value
    if node.__class__ is not ast.Name:
        return None
    found = types.get(node.id)
    if found is None or not 1 <= len(found[0]) <= 2 or found[1] not in _BLAS:
        return None
    return node.id


def small_products(lines, types, sizes):
    """``lines`` with each small product ``t = a @ b`` written ``t = xp.dot(a, b)`` (see
    the module docstring); ``types``: name -> (shape, dtype) of values and gradients;
    ``sizes``: name -> elements, as the other passes read them."""
    out = None
    for k, line in enumerate(lines):
        text = line.text
        target = line.target
        if target is None or line.aug or " @ " not in text or "\n" in text or not text.startswith(target + " = "):
            continue
        try:
            expr = ast.parse(text).body[0].value
        except SyntaxError:
            continue
        if expr.__class__ is not ast.BinOp or expr.op.__class__ is not ast.MatMult:
            continue
        a, b = _operand(expr.left, types), _operand(expr.right, types)
        if a is None or b is None or target not in sizes or a not in sizes or b not in sizes:
            continue
        if math.sqrt(sizes[a] * sizes[b] * sizes[target]) > MAX_WORK:
            continue
        left = text[expr.left.col_offset:expr.left.end_col_offset]
        right = text[expr.right.col_offset:expr.right.end_col_offset]
        if out is None:
            out = list(lines)
        out[k] = Line(f"{target} = xp.dot({left}, {right})", line.loads, line.stores, target)
    return lines if out is None else out
