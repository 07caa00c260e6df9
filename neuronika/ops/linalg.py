"""Matrix products and transposition."""
from __future__ import annotations

import numpy as np

from ..backend import move
from ..errors import ShapeError
from ..graph import leaf
from . import Grad, batching, broadcast_shapes, declare


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
    return f"{name}.T" if ndim == 2 else f"xp.matrix_transpose({name})"


def _matmul_grad_a(ctx):
    a, b = ctx.shapes["a"], ctx.shapes["b"]
    if len(a) == 1 and len(b) == 1:          # vv: () result
        return Grad("dy * b", shape=b)
    if len(a) == 1:                          # vm and batched: (k,) @ (..., k, m)
        if len(b) == 2:
            return "b @ dy"
        return Grad("(dy[..., None, :] @ xp.matrix_transpose(b))[..., 0, :]", shape=ctx.shape[:-1] + a)
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
                 shape=_matmul_shape, summed_over_rows=("b",),
                 batch=batching.matmul, doc="matrix product with NumPy's rules: 1-D operands and batch dimensions")


def _mm_t_shape(a, b):
    if len(a) != 2 or len(b) != 2:
        raise ShapeError(f"both operands must be 2-D, got shapes {a} and {b}")
    if a[1] != b[1]:
        raise ShapeError(f"shapes {a} and {b} do not fit: a has {a[1]} columns, b has {b[1]}")
    return (a[0], b[0])


MM_T = declare("mm_t", ("a", "b"), "a @ b.T", {"a": "dy @ b", "b": "dy.T @ a"}, shape=_mm_t_shape,
               summed_over_rows=("b",),
               batch=batching.mm_t, doc="a @ b.T without copying b")


def _inverse(axes):
    inverse = [0] * len(axes)
    for i, a in enumerate(axes):
        inverse[a] = i
    return tuple(inverse)


def _transpose_forward(ctx):
    if ctx.axes == tuple(range(len(ctx.axes))) and ctx.axes:    # the identity: the input itself
        return "x"
    return "x.T" if ctx.axes == (1, 0) else "xp.permute_dims(x, axes)"


def _transpose_grad(ctx):
    if ctx.axes == tuple(range(len(ctx.axes))) and ctx.axes:
        return "dy"
    if ctx.axes == (1, 0):
        return Grad("dy.T", view=True)
    return Grad(f"xp.permute_dims(dy, {_inverse(ctx.axes)})", view=True)


TRANSPOSE = declare("transpose", ("x",), _transpose_forward, {"x": _transpose_grad},
                    attrs=("axes",), shape=lambda s, axes: tuple(s[a] for a in axes),
                    batch=batching.transpose, doc="permutes the axes (a view)")


# ---- einsum ------------------------------------------------------------------------------------
# ``spec`` is a canonical subscripts string: letters only, an explicit output, no
# ``...`` and no size-1 broadcasting between operands (neuronika.numpy.einsum
# rewrites any subscripts into this form), one or two operands. An index may
# repeat within an operand (a diagonal) and may belong to one operand only (a sum).

#: Two-operand contractions whose work (the product of all index sizes) reaches this
#: are written as one matmul over transposed, reshaped operands (BLAS); smaller ones
#: as ``xp.einsum`` (one C loop, no temporaries).
BLAS_WORK = 1024

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def split_spec(spec):
    """('ab,bc->ac') -> (('ab', 'bc'), 'ac')."""
    inputs, _, out = spec.partition("->")
    return tuple(inputs.split(",")), out


def _einsum_shape(*rest):
    *shapes, spec = rest
    subs, out = split_spec(spec)
    if len(subs) != len(shapes):
        raise ShapeError(f"subscripts {spec!r} name {len(subs)} operands, got {len(shapes)}")
    sizes = {}
    for sub, shape in zip(subs, shapes):
        if len(sub) != len(shape):
            raise ShapeError(f"subscripts {sub!r} do not fit an operand of shape {shape}")
        for letter, size in zip(sub, shape):
            if sizes.setdefault(letter, size) != size:
                raise ShapeError(f"index {letter!r} of {spec!r} has sizes {sizes[letter]} and {size} "
                                 f"(shapes {', '.join(map(str, shapes))})")
    return tuple(sizes[letter] for letter in out)


def _sizes(subs, shapes):
    sizes = {}
    for sub, shape in zip(subs, shapes):
        sizes.update(zip(sub, shape))
    return sizes


def _prod(values):
    result = 1
    for v in values:
        result *= v
    return result


def _arrange(name, sub, order, sizes, groups):
    """Source for operand ``name`` (indices ``sub``) transposed to ``order`` and reshaped so
    that each group of consecutive indices in ``groups`` (lengths) becomes one axis."""
    if list(sub) != list(order):
        name = f"xp.permute_dims({name}, {tuple(sub.index(c) for c in order)})"
    shape, start = [], 0
    for length in groups:
        shape.append(_prod(sizes[c] for c in order[start:start + length]))
        start += length
    if len(shape) != len(order):
        name = f"xp.reshape({name}, {tuple(shape)})"
    return name


def _matmul_contraction(subs, names, out, sizes):
    """Two operands contracted by one matmul: indices only one operand has are summed
    first; the shared indices kept in the output are batch axes."""
    (sa, sb), (a, b) = subs, names
    operands = []
    for sub, name, other in ((sa, a, sb), (sb, b, sa)):
        lonely = tuple(i for i, c in enumerate(sub) if c not in out and c not in other)
        if lonely:
            name = f"xp.sum({name}, axis={lonely[0] if len(lonely) == 1 else lonely})"
            sub = "".join(c for i, c in enumerate(sub) if i not in lonely)
        operands.append((sub, name))
    (sa, a), (sb, b) = operands
    batch = [c for c in sa if c in sb and c in out]
    contracted = [c for c in sa if c in sb and c not in out]
    left = [c for c in sa if c not in sb]
    right = [c for c in sb if c not in sa]
    ones = [1] * len(batch)
    a = _arrange(a, sa, batch + left + contracted, sizes, ones + [len(left), len(contracted)])
    b = _arrange(b, sb, batch + contracted + right, sizes, ones + [len(contracted), len(right)])
    result = f"{a} @ {b}"
    order = batch + left + right
    if len(left) != 1 or len(right) != 1:
        result = f"xp.reshape({result}, {tuple(sizes[c] for c in order)})"
    if order != list(out):
        result = f"xp.permute_dims({result}, {tuple(order.index(c) for c in out)})"
    return result


def contraction(subs, names, out, sizes):
    """Source of an expression contracting operands ``names`` (indices ``subs``) into ``out``."""
    letters = set("".join(subs))
    if (len(subs) == 2 and all(len(set(s)) == len(s) for s in subs)
            and _prod(sizes[c] for c in letters) >= BLAS_WORK):
        return _matmul_contraction(subs, names, out, sizes)
    return f"einsum_small({','.join(subs) + '->' + out!r}, {', '.join(names)})"


def _einsum_forward(ctx):
    subs, out = split_spec(ctx.spec)
    return contraction(subs, ctx.names, out, _sizes(subs, [ctx.shapes[n] for n in ctx.names]))


def _einsum_grad(ctx):
    """The adjoint of an operand: ``dy`` contracted with the other operands onto the operand's
    distinct indices; a repeated index is put back on the diagonal (times an identity), an
    index only this operand has is a broadcast axis (size 1)."""
    subs, out = split_spec(ctx.spec)
    k = ctx.slot
    sub = subs[k]
    sizes = _sizes(subs, [ctx.shapes[n] for n in ctx.names])
    others = [(s, n) for i, (s, n) in enumerate(zip(subs, ctx.names)) if i != k]
    reached = set(out).union(*[set(s) for s, _ in others])
    target = "".join(dict.fromkeys(c for c in sub if c in reached))
    view = False
    if not others and target == out:
        grad, view = "dy", True
    else:
        grad = contraction([out] + [s for s, _ in others], ["dy"] + [n for _, n in others], target, sizes)
        view = not others      # a one-operand einsum (a transpose) is a view of dy
    free = [c for c in LETTERS if c not in ctx.spec]
    expanded, deltas, seen = [], [], set()
    for c in sub:
        if c in seen:
            fresh = free.pop(0)
            deltas.append(c + fresh)
            expanded.append(fresh)
        elif c in reached or sub.count(c) > 1:
            expanded.append(c)
        seen.add(c)
    if deltas:
        eyes = ", ".join(f"xp.eye({sizes[d[0]]}, dtype=dtype)" for d in deltas)
        grad = f"einsum_small({','.join([target] + deltas) + '->' + ''.join(expanded)!r}, {grad}, {eyes})"
        view = False
    shape = tuple(size if c in reached or sub.count(c) > 1 else 1 for c, size in zip(sub, ctx.shapes[ctx.names[k]]))
    if len(expanded) != len(sub):
        grad = f"xp.reshape({grad}, {shape})"
    return Grad(grad, shape=shape, view=view)


def _einsum_symbolic(ctx, build, bindings):
    """``_einsum_grad`` as a graph of einsum ops of one or two operands (for higher orders):
    the contraction, then one product with an identity per repeated index, then the order
    and shape of the operand."""
    subs, out = split_spec(ctx.spec)
    k = ctx.slot
    sub = subs[k]
    sizes = _sizes(subs, [ctx.shapes[n] for n in ctx.names])
    others = [(s, bindings[n]) for i, (s, n) in enumerate(zip(subs, ctx.names)) if i != k]
    reached = set(out).union(*[set(s) for s, _ in others])
    target = "".join(dict.fromkeys(c for c in sub if c in reached))
    grad = bindings["dy"]
    if others or target != out:
        grad = build(EINSUM, (grad,) + tuple(v for _, v in others),
                     (",".join([out] + [s for s, _ in others]) + "->" + target,))
    free = [c for c in LETTERS if c not in ctx.spec]
    expanded, seen, current = [], set(), target
    for c in sub:
        if c in seen:
            fresh = free.pop(0)
            eye = leaf(move(np.eye(sizes[c], dtype=ctx.dtype), grad._node.space))   # dy's library
            joined = current + "".join(x for x in c + fresh if x not in current)
            grad = build(EINSUM, (grad, eye), (f"{current},{c}{fresh}->{joined}",))
            current = joined
            expanded.append(fresh)
        elif c in reached or sub.count(c) > 1:
            expanded.append(c)
        seen.add(c)
    expanded = "".join(expanded)
    if current != expanded:
        grad = build(EINSUM, (grad,), (f"{current}->{expanded}",))
    if len(expanded) != len(sub):
        shape = tuple(size if c in reached or sub.count(c) > 1 else 1
                      for c, size in zip(sub, ctx.shapes[ctx.names[k]]))
        grad = build("reshape", (grad,), (shape,))
    return grad


EINSUM = declare("einsum", (), _einsum_forward, {"x": _einsum_grad}, attrs=("spec",),
                 symbolic={"x": _einsum_symbolic},
                 shape=_einsum_shape, variadic="x",
                 batch=batching.einsum, doc="Einstein summation over one or two operands (canonical subscripts: letters, "
                     "an explicit output); each adjoint is again an einsum")
