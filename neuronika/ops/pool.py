"""Large arrays that outlive the call that made them: loops' stacked values
(``pooled_empty``), zeros a gradient is scattered into (``pooled_zeros``), and values that
escape a generated function (``unused``, for ``transform.buffers``).

A scan stacks every step's outputs, saved values and gradients into arrays made at each
call (``xp.empty((n, ...))``). Fresh arrays of a few hundred kB cost page faults every
call once glibc has given the last call's memory back to the system (blocks above its
mmap threshold are unmapped when freed, smaller ones trimmed from the heap's top), and
whether it has depends on the process's history: the same GRU step took 4.7 or 5.8 ms.
``pooled_empty`` hands out an array of the pool instead when one of that shape and dtype is
referenced by nothing else: the caller's last user dropped it (a view of it holds a
reference to it, so a live view keeps it busy). The pool keeps ``PER_KEY`` arrays per
(shape, dtype) and ``MAX_BYTES`` in all, the least recently used first out; an array
handed out stays valid after it leaves the pool (the caller holds its own reference).

>>> import numpy as np
>>> from neuronika.ops import pool
>>> a = pool.pooled_empty(np, (64, 1024), np.float32)
>>> b = pool.pooled_empty(np, (64, 1024), np.float32)      # a is still referenced: another array
>>> a is b
False
>>> address = a.ctypes.data
>>> del a
>>> pool.pooled_empty(np, (64, 1024), np.float32).ctypes.data == address      # a's memory again
True
>>> pool.clear()
"""
from __future__ import annotations

import math
import sys
import threading
from collections import OrderedDict

import numpy as np

from .. import backend

#: arrays smaller than this are made fresh (glibc serves them from its heap without faults)
MIN_BYTES = 1 << 16
#: arrays kept per (shape, dtype): a loop's stacks of one shape, a split program's saved
#: ones still held for their backward, another thread's
PER_KEY = 4
#: bytes kept in all
MAX_BYTES = 64 << 20

_arrays = OrderedDict()         # (shape, dtype) -> [arrays]
_lock = threading.Lock()
_kept = [0]                     # bytes in the pool


def _references(arrays, k):
    return sys.getrefcount(arrays[k])


def _calibrated():
    """How many references ``_references`` counts for an array only the pool holds, or None
    where an extra reference does not show (the interpreter borrows references): no pool."""
    probe = [np.empty(1)]
    alone = _references(probe, 0)
    held = probe[0]
    shown = _references(probe, 0) == alone + 1
    del held
    return alone if shown else None


_ALONE = _calibrated()


def _pooled(xp, shape, dtype):
    """The pool's key for an array of ``shape`` and ``dtype`` of namespace ``xp``, or None where
    it is made fresh (another library's, smaller than ``MIN_BYTES``, no pool)."""
    if (xp is not np and xp is not backend.NUMPY_XP) or _ALONE is None:
        return None
    dtype = np.dtype(dtype)
    return (tuple(shape), dtype) if math.prod(shape) * dtype.itemsize >= MIN_BYTES else None


def pooled_empty(xp, shape, dtype):
    """``xp.empty(shape, dtype=dtype)``; for NumPy arrays of at least ``MIN_BYTES``, an array of
    the pool that nothing references (its values are left over), kept for later calls."""
    key = _pooled(xp, shape, dtype)
    return xp.empty(shape, dtype=dtype) if key is None else _free_array(key)


def pooled_zeros(xp, shape, dtype):
    """``xp.zeros(shape, dtype=dtype)``, from the pool as ``pooled_empty`` (filled with zeros:
    a memset, where fresh memory costs a page fault per 4 kB)."""
    key = _pooled(xp, shape, dtype)
    if key is None:
        return xp.zeros(shape, dtype=dtype)
    array = _free_array(key)
    array.fill(0)
    return array


def _free_array(key):
    """An array of the pool for ``key`` that nothing references, or a new one kept there."""
    with _lock:
        arrays = _arrays.get(key)
        if arrays is None:
            arrays = _arrays[key] = []
        else:
            _arrays.move_to_end(key)
            for k in range(len(arrays)):
                if _references(arrays, k) == _ALONE:
                    return arrays[k]
        made = np.empty(*key)
        if len(arrays) >= PER_KEY:
            _kept[0] -= arrays.pop(0).nbytes       # still valid where it is used
        arrays.append(made)
        _kept[0] += made.nbytes
        while _kept[0] > MAX_BYTES and _arrays:
            _, dropped = _arrays.popitem(last=False)
            _kept[0] -= sum(a.nbytes for a in dropped)
        return made


def unused(arrays, k):
    """``arrays[k]`` or ``arrays[k + 1]`` where nothing but ``arrays`` references it (moved to
    ``k``), else None, ``arrays[k]`` moved to ``k + 1`` (the caller stores its new array at
    ``k``): the two last arrays a statement made, one handed out again once it is free
    (``transform.buffers``: values that escape a generated function)."""
    if arrays[k] is None:
        return None
    if _ALONE is not None:
        if _references(arrays, k) == _ALONE:
            return arrays[k]
        if arrays[k + 1] is not None and _references(arrays, k + 1) == _ALONE:
            arrays[k], arrays[k + 1] = arrays[k + 1], arrays[k]
            return arrays[k]
    arrays[k + 1] = arrays[k]
    return None


def clear():
    """Forget the pool's arrays (those in use stay valid)."""
    with _lock:
        _arrays.clear()
        _kept[0] = 0
