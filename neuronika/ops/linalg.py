"""Matrix products and transposition."""
from __future__ import annotations

from ..errors import ShapeError
from . import Grad, broadcast_shapes, declare


def _matmul_shape(a, b):
    if len(a) == 2 and len(b) == 2 and a[1] == b[0]:
        return (a[0], b[1])
    if not a or not b:
        raise ShapeError(f"operands must have at least one dimension, got shapes {a} and {b}")
    k_a = a[-1]
    k_b = b[0] if len(b) == 1 else b[-2]
    if k_a != k_b:
        raise ShapeError(f"shapes {a} and {b} do not fit: the inner dimensions "
                         f"{k_a} and {k_b} differ")
    if len(a) == 1 and len(b) == 1:
        return ()
    if len(a) == 1:
        return b[:-2] + b[-1:]
    if len(b) == 1:
        return a[:-1]
    try:
        batch = broadcast_shapes(a[:-2], b[:-2])
    except ShapeError:
        raise ShapeError(f"shapes {a} and {b} do not fit: the batch dimensions {a[:-2]} and "
                         f"{b[:-2]} do not broadcast together") from None
    return batch + (a[-2], b[-1])


def _swap(name, ndim):
    return f"{name}.T" if ndim == 2 else f"xp.swapaxes({name}, -1, -2)"


def _matmul_grad_a(ctx):
    a, b = ctx.shapes["a"], ctx.shapes["b"]
    if len(a) == 1 and len(b) == 1:          # vv: () result
        return Grad("dy * b", shape=b)
    if len(a) == 1:                          # vm and batched: (k,) @ (..., k, m)
        if len(b) == 2:
            return "b @ dy"
        return Grad("(dy[..., None, :] @ xp.swapaxes(b, -1, -2))[..., 0, :]", shape=ctx.shape[:-1] + a)
    if len(b) == 1:                          # mv and batched: (..., n, k) @ (k,)
        return Grad("dy[..., None] * b", shape=ctx.shape + b)
    return Grad(f"dy @ {_swap('b', len(b))}", shape=ctx.shape[:-1] + a[-1:])


def _matmul_grad_b(ctx):
    a, b = ctx.shapes["a"], ctx.shapes["b"]
    if len(a) == 1 and len(b) == 1:
        return Grad("dy * a", shape=a)
    if len(a) == 1:
        return Grad("a[:, None] * dy[..., None, :]", shape=ctx.shape[:-1] + a + ctx.shape[-1:])
    if len(b) == 1:
        if len(a) == 2:
            return "dy @ a"
        return Grad("(dy[..., None, :] @ a)[..., 0, :]", shape=ctx.shape[:-1] + b)
    return Grad(f"{_swap('a', len(a))} @ dy", shape=ctx.shape[:-2] + b[-2:])


MATMUL = declare("matmul", ("a", "b"), "a @ b", {"a": _matmul_grad_a, "b": _matmul_grad_b},
                 shape=_matmul_shape,
                 doc="matrix product with NumPy's rules: 1-D operands and batch dimensions")


def _mm_t_shape(a, b):
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"both operands must be 2-D, got shapes {a} and {b}")
    if a[1] != b[1]:
        raise ShapeError(f"shapes {a} and {b} do not fit: a has {a[1]} columns, b has {b[1]}")
    return (a[0], b[0])


MM_T = declare("mm_t", ("a", "b"), "a @ b.T", {"a": "dy @ b", "b": "dy.T @ a"}, shape=_mm_t_shape,
               doc="a @ b.T without copying b")


def _inverse(axes):
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return tuple(inverse)


def _is_reversal(axes):
    return axes == tuple(range(len(axes) - 1, -1, -1))


def _transpose_forward(ctx):
    return "x.T" if _is_reversal(ctx.axes) else "xp.transpose(x, axes)"


def _transpose_grad(ctx):
    if _is_reversal(ctx.axes):
        return Grad("dy.T", view=True)
    return Grad(f"xp.transpose(dy, {_inverse(ctx.axes)})", view=True)


TRANSPOSE = declare("transpose", ("x",), _transpose_forward, {"x": _transpose_grad},
                    attrs=("axes",), shape=lambda s, axes: tuple(s[a] for a in axes),
                    doc="permutes the axes (a view)")
