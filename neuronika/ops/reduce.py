"""Reductions and the softmax family. ``axis`` is None (all axes) or a sorted
tuple of axes, normalised when the node is built."""
from __future__ import annotations

import math

import numpy as np

from . import Grad, declare
from .elementwise import float_dtype


def reduced_shape(shape, axis, keepdims):
    if axis is None:
        return (1,) * len(shape) if keepdims else ()
    axes = axis
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def call_args(axis, keepdims):
    """``axis=..., keepdims=...`` as written by hand: defaults left out."""
    parts = []
    if axis is not None:
        parts.append(f"axis={axis[0] if len(axis) == 1 else axis}")
    if keepdims:
        parts.append("keepdims=True")
    return ", ".join(parts)


def kept_shape(ctx, shape):
    """``shape`` (a gradient's, of the reduced output) with the reduced axes put back as 1s,
    leading 1s dropped: the shape that broadcasts against the input."""
    if ctx.keepdims or ctx.axis is None:
        padded = shape
    else:
        padded = (1,) * (len(ctx.shape) - len(shape)) + tuple(shape)
        for axis in ctx.axis:
            padded = padded[:axis] + (1,) + padded[axis:]
    while padded and padded[0] == 1:
        padded = padded[1:]
    return tuple(padded)


def _expand(ctx, name, shape):
    """Source that gives ``name`` (of ``shape``) the input's rank, and the resulting shape."""
    target = kept_shape(ctx, shape)
    stripped = tuple(shape)
    while stripped and stripped[0] == 1:
        stripped = stripped[1:]
    if target == stripped and len(shape) <= len(ctx.shapes["x"]):
        return name, tuple(shape)
    return f"{name}.reshape({target})", target


def _count(ctx):
    shape = ctx.shapes["x"]
    axes = range(len(shape)) if ctx.axis is None else ctx.axis
    return math.prod(shape[a] for a in axes)


def _sum_grad(ctx):
    src, shape = _expand(ctx, "dy", ctx.gshape)
    return Grad(src, shape=shape, view=True)


def _mean_grad(ctx):
    src, shape = _expand(ctx, "dy", ctx.gshape)
    return Grad(f"{src} / {_count(ctx)}", shape=shape)


def _extreme_grad(ctx):
    """Even split among the maxima (minima): the gradient of amax, as PyTorch takes it."""
    dy, _ = _expand(ctx, "dy", ctx.gshape)
    y, _ = _expand(ctx, "y", ctx.shape)
    args = call_args(ctx.axis, True)
    return (f"hit = x == {y}\n"
            f"dx = {dy} * hit / hit.sum({args}, dtype=dtype)")


def _reduction(name, method, grad, doc, dtype):
    return declare(name, ("x",), lambda ctx: f"x.{method}({call_args(ctx.axis, ctx.keepdims)})",
                   {"x": grad}, attrs=("axis", "keepdims"), shape=reduced_shape,
                   implicit_dy=True, dtype=dtype, doc=doc)


SUM = _reduction("sum", "sum", _sum_grad, "sum over axis (all axes when None)",
                 float_dtype(np.sum))
MEAN = _reduction("mean", "mean", _mean_grad, "mean over axis (all axes when None)",
                  float_dtype(np.mean))
MAX = _reduction("max", "max", _extreme_grad, "maximum over axis; ties share the gradient", None)
MIN = _reduction("min", "min", _extreme_grad, "minimum over axis; ties share the gradient", None)

SOFTMAX = declare(
    "softmax", ("x",),
    "e = xp.exp(x - x.max(axis=axis, keepdims=True))\n"
    "y = e / e.sum(axis=axis, keepdims=True)",
    {"x": "y * (dy - (dy * y).sum(axis=axis, keepdims=True))"},
    attrs=("axis",), implicit_dy=True, dtype=float_dtype(np.exp),
    doc="exp(x) / sum(exp(x)) along axis, shifted by the maximum so it cannot overflow")

LOG_SOFTMAX = declare(
    "log_softmax", ("x",),
    "z = x - x.max(axis=axis, keepdims=True)\n"
    "y = z - xp.log(xp.exp(z).sum(axis=axis, keepdims=True))",
    {"x": "dy - xp.exp(y) * dy.sum(axis=axis, keepdims=True)"},
    attrs=("axis",), dtype=float_dtype(np.exp),
    doc="x - log(sum(exp(x))) along axis, computed without overflow")
