"""Sorting: argsort, and the permutation it gives applied along an axis (a gather whose
adjoint is the inverse permutation, itself an op, so sorting differentiates to any order).
Partitioning gathers the same way, by the permutation that ``partition_order`` gives."""
from __future__ import annotations

import numpy as np

from . import batching, declare


def _argsort_forward(ctx):
    # NumPy's kinds as the standard's stable flag (NumPy's default, quicksort, is not stable)
    if ctx.kind in (None, "quicksort"):
        return f"xp.argsort(x, axis={ctx.axis}, stable=False)"
    if ctx.kind in ("stable", "mergesort"):
        return f"xp.argsort(x, axis={ctx.axis}, stable=True)"
    return f"xp.argsort(x, axis={ctx.axis}, kind={ctx.kind!r})"     # heapsort: NumPy's only


ARGSORT = declare("argsort", ("x",), _argsort_forward, {}, attrs=("axis", "kind"), batch=batching.over_axis(),
                  n_differentiable=0, dtype=lambda inputs, attrs: np.dtype(np.intp),
                  doc="the indices that sort x along axis (no gradient)")


def _permute_symbolic(ctx, build, bindings):
    return build(PERMUTE_ALONG_AXIS, (bindings["dy"], bindings["perm"]), (ctx.axis,))


PERMUTE_ALONG_AXIS = declare(
    "permute_along_axis", ("x", "perm"), "xp.take_along_axis(x, perm, axis=axis)",
    {"x": "unpermute_along_axis(dy, perm, axis)"}, attrs=("axis",), n_differentiable=1, batch=batching.over_axis(),
    dtype=lambda inputs, attrs: inputs[0].dtype,
    doc="x reordered along axis by perm, a permutation of each lane (argsort's result): "
        "sort(x) is x permuted by argsort(x)")

UNPERMUTE_ALONG_AXIS = declare(
    "unpermute_along_axis", ("g", "perm"), "unpermute_along_axis(g, perm, axis)",
    {"g": "xp.take_along_axis(dy, perm, axis=axis)"}, symbolic={"g": _permute_symbolic},
    attrs=("axis",), n_differentiable=1, dtype=lambda inputs, attrs: inputs[0].dtype,
    batch=batching.over_axis(),
    doc="g put back in the order perm took it from: the adjoint of permute_along_axis, as an "
        "op so it can be differentiated again")

SEARCHSORTED = declare("searchsorted", ("a", "v"), "xp.searchsorted(a, v, side=side)", {},
                       attrs=("side",), shape=lambda a, v, side: v, n_differentiable=0,
                       dtype=lambda inputs, attrs: np.dtype(np.intp),
                       doc="where v's elements would be inserted into the sorted a (no gradient)")

ARGPARTITION = declare("argpartition", ("x",), "argpartition_indices(x, kth, axis)", {},
                       attrs=("kth", "axis"), n_differentiable=0, batch=batching.over_axis(),
                       dtype=lambda inputs, attrs: np.dtype(np.intp),
                       doc="indices that partition x along axis around the kth elements (no gradient)")

PARTITION_ORDER = declare("partition_order", ("x",), "partition_order(x, kth, axis)", {},
                          attrs=("kth", "axis"), n_differentiable=0, batch=batching.over_axis(),
                          dtype=lambda inputs, attrs: np.dtype(np.intp),
                          doc="the permutation of each lane that gives numpy.partition's result: "
                              "partition(x) is x permuted by it (no gradient)")
