"""Indexing: ``v[key]`` as NumPy reads it.

The index is split into its static layout (slices, None, ``...``, ints written
into the code inside a trace) and its data (integer arrays and ints outside a
trace, passed to the program at run time, so a loop over ``i`` reuses one
program). A boolean mask selects what its ``nonzero()`` integer arrays select.

>>> import numpy, neuronika
>>> x = neuronika.from_ndarray(numpy.arange(4.0)).requires_grad()
>>> x[numpy.array([0, 0, 3])].sum().backward()
>>> x.grad
array([2., 0., 0., 1.])
"""
from __future__ import annotations

import numbers

import numpy as np

from ..errors import GradientError
from ..graph import Node, apply, leaf, modes
from ..variable import Var, _wrap
from ._core import OPS, located

__all__ = []

_INDEX = OPS["index"]


def getitem(x, key):
    """``x[key]`` with ints, slices, None, ``...``, integer arrays (repeated indices add up in
    the gradient) and boolean masks (as their ``nonzero()`` integer arrays)."""
    if not isinstance(key, tuple):
        key = (key,)
    parts = []
    index_nodes = {}        # position in parts -> the Var's node, kept as the index input
    for position, part in enumerate(key):
        if isinstance(part, Var):
            if part.dtype.kind in "iu":
                index_nodes[position] = part._node
            elif part.dtype == bool and modes.tracer is not None and modes.tracer.depends(part._node):
                raise located("index: a boolean mask computed from a traced argument selects a "
                               "data-dependent number of elements; multiply by the mask instead",
                               GradientError)
            part = part.data
        if isinstance(part, slice):
            if not all(v is None or isinstance(v, numbers.Integral) for v in (part.start, part.stop, part.step)):
                raise located(f"index: slice bounds must be ints, got {part}")
            if part.step == 0:
                raise located("index: slice step cannot be zero")
        elif part is not None and part is not Ellipsis and not (
                isinstance(part, numbers.Integral) and not isinstance(part, (bool, np.bool_))):
            array = np.asarray(part)
            if array.size == 0 and array.dtype.kind == "f":
                array = array.astype(np.intp)          # x[[]], as in NumPy
            if array.dtype != bool and array.dtype.kind not in "iu":
                raise located(f"index: an index must be an int, a slice, None, ... or an integer "
                               f"array, got {part!r}")
            if array.dtype == bool and array.ndim == 0:
                raise located("index: a 0-dim boolean index is not supported")
            part = array
        parts.append(part)
    # Out-of-range indices and masks of the wrong shape are caught here, with the real values.
    try:
        np.broadcast_to(np.empty((), np.int8), x.shape)[tuple(parts)]
    except IndexError as error:
        raise located(f"index: {error} (indexing a value of shape {x.shape})") from None
    layout, data = [], []
    for position, part in enumerate(parts):
        if position in index_nodes:
            layout.append(("k", len(data)))
            data.append(index_nodes[position])
        elif isinstance(part, slice):
            layout.append(("s",) + tuple(None if v is None else int(v) for v in (part.start, part.stop, part.step)))
        elif part is None:
            layout.append(("n",))
        elif part is Ellipsis:
            layout.append(("e",))
        elif isinstance(part, np.ndarray):
            # A mask selects by position: the same as its nonzero() integer arrays.
            for array in np.nonzero(part) if part.dtype == bool else (part.astype(np.intp, copy=False),):
                layout.append(("k", len(data)))
                data.append(array)
        elif modes.tracer is not None:
            layout.append(("i", int(part)))
        else:
            layout.append(("k", len(data)))
            data.append(np.intp(part))
    nodes = (x._node,) + tuple(d if isinstance(d, Node) else leaf(d) for d in data)
    return _wrap(apply(_INDEX, nodes, (tuple(layout),)))
