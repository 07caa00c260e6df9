"""Small matrix products through ``np.dot``: a pass over the ``Line``s of one generated NumPy
function, the last before it is compiled (after ``buffers``).

A statement ``t = a @ b`` whose operands are names (or a name's ``.T``) of one or two
dimensions and a BLAS dtype (float32, float64, complex64, complex128), with at most
``MAX_WORK`` multiply-adds, becomes ``t = xp.dot(a, b)``: for such operands NumPy's dot and
matmul compute the same thing (one BLAS call), and dot skips matmul's ufunc dispatch,
0.15-0.25 µs a call: a third of a (4, 8) x (8, 8) product, a tenth of an RNN step's
(16, 64) x (64, 64). A large product gains nothing (dot calls BLAS with its operands the
other way round for some shapes: 7% slower at (784, 64) x (64, 256)), so only small ones
are written so; and functions of more than ``MAX_LINES`` statements are left as they are.

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

import math
import re

import numpy as np

# inplace's limit: a function that long is dominated by its compile, which writing its
# products again lengthens (an unrolled 10,000-node RNN: 10%)
from .inplace import MAX_LINES
from .passes import Line

#: Multiply-adds above which a product stays ``a @ b`` (measured: dot's saving is a fixed
#: fraction of a microsecond; at 2^21 and above the two are within a few percent either way).
MAX_WORK = 1 << 20
_BLAS = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))
# ``t = a @ b`` over names, either one transposed: matched, not parsed (an unrolled program
# has thousands of products)
_PRODUCT = re.compile(r"(\w+) = (\w+)(\.T)? @ (\w+)(\.T)?")


def _operand(name, known, order):
    """Whether a name (a value in ``known``, or the gradient ``g<i>`` of node i of ``order``)
    has one or two dimensions and a BLAS dtype."""
    found = known.get(name)
    if found is not None:
        shape, dtype = found
    elif name[0] == "g" and name[1:].isdigit() and int(name[1:]) < len(order):
        node = order[int(name[1:])]
        shape, dtype = node.shape, node.dtype
    else:
        return False
    return 1 <= len(shape) <= 2 and dtype in _BLAS


def small_products(lines, known, sizes, order):
    """``lines`` with each small product ``t = a @ b`` written ``t = xp.dot(a, b)`` (see
    the module docstring); ``known``: name -> (shape, dtype) of the values; ``order``: the
    graph's nodes (a gradient ``g<i>`` has node i's rank and dtype); ``sizes``: name ->
    elements, as the other passes read them."""
    if len(lines) > MAX_LINES:
        return lines
    out = None
    for k, line in enumerate(lines):
        if line.aug or " @ " not in line.text:
            continue
        found = _PRODUCT.fullmatch(line.text)
        if found is None:
            continue
        target, a, a_t, b, b_t = found.groups()
        if (target != line.target or target not in sizes or a not in sizes or b not in sizes
                or not _operand(a, known, order) or not _operand(b, known, order)
                or math.sqrt(sizes[a] * sizes[b] * sizes[target]) > MAX_WORK):
            continue
        if out is None:
            out = list(lines)
        out[k] = Line(f"{target} = xp.dot({a}{a_t or ''}, {b}{b_t or ''})", line.loads, line.stores, target)
    return lines if out is None else out
