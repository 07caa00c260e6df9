"""Products: matmul (NumPy's ``@``, with 1-D operands and broadcast batch axes) and dot.

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> w = neuronika.from_ndarray(numpy.eye(2)).requires_grad()
>>> x = numpy.array([[1.0, 2.0]])
>>> nnp.sum(nnp.matmul(x, w)).backward()
>>> w.grad
array([[1., 1.],
       [2., 2.]])
"""
from __future__ import annotations

import numpy as np

from ..graph import apply
from ..variable import Var, _wrap
from ._core import OPS, function, located, nodes_of, refuse

__all__ = ["matmul", "dot"]

_MATMUL = OPS["matmul"]


@function(np.matmul)
def matmul(x1, x2, /, out=None, **kwargs):
    """``numpy.matmul``: matrix product with NumPy's rules for 1-D operands and batch axes."""
    refuse("matmul", "out", out)
    if kwargs:
        from ._ufuncs import _with_options
        x1, x2 = _with_options("matmul", (x1, x2), None, kwargs)
    a, b = nodes_of((x1, x2), "matmul")
    return _wrap(apply(_MATMUL, (a, b)))


@function(np.dot)
def dot(a, b, out=None):
    """``numpy.dot``: a product for 0-d operands, ``matmul`` for 1-D and 2-D ones, and for
    N-D ones a sum over the last axis of ``a`` and the second-to-last of ``b``."""
    refuse("dot", "out", out)
    a, b = (v if isinstance(v, Var) else _wrap(n) for v, n in zip((a, b), nodes_of((a, b), "dot")))
    if a.ndim == 0 or b.ndim == 0:
        from ._ufuncs import multiply
        return multiply(a, b)
    if a.ndim <= 2 and b.ndim <= 2:
        return matmul(a, b)
    from ._shape import moveaxis, reshape
    k = a.shape[-1]
    inner = b.shape[-2] if b.ndim > 1 else b.shape[0]
    if k != inner:
        raise located(f"dot: shapes {a.shape} and {b.shape} are not aligned: {k} (last axis of a) != "
                      f"{inner} (second-to-last axis of b)")
    rows = reshape(a, (-1, k))
    columns = reshape(moveaxis(b, -2, 0), (k, -1)) if b.ndim > 1 else reshape(b, (k, 1))
    return reshape(matmul(rows, columns), a.shape[:-1] + b.shape[:-2] + b.shape[-1:])
