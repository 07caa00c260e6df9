"""Products: matmul, dot, vdot, inner, outer, tensordot, einsum, kron and cross, with
NumPy 2's shapes, broadcasting and dtypes.

einsum takes any subscripts (implicit or explicit output, ``...``, repeated indices
within an operand, indices only one operand has, NumPy's interleaved form). It is
rewritten into letters with no ``...`` and no size-1 broadcasting, then contracted
two operands at a time in the order ``numpy.einsum_path(..., optimize="greedy")``
chooses. A contraction that is a matrix product (batched or not) is the ``matmul``
op; any other is the ``einsum`` op over one or two operands, whose adjoints are
einsums again, so every order differentiates. tensordot, inner and dot are einsums.

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> w = neuronika.from_ndarray(numpy.eye(2)).requires_grad()
>>> x = numpy.array([[1.0, 2.0]])
>>> nnp.sum(nnp.matmul(x, w)).backward()
>>> w.grad
array([[1., 1.],
       [2., 2.]])
>>> a = neuronika.from_ndarray(numpy.arange(9.0).reshape(3, 3)).requires_grad()
>>> nnp.einsum("ii", a)                    # the trace
VarDiff(12., dtype=float64)
>>> neuronika.grad(lambda a: nnp.einsum("ij,jk,ki->", a, a, a))(numpy.eye(2))
array([[3., 0.],
       [0., 3.]])
"""
from __future__ import annotations

import operator
import warnings

import numpy as np

from ..graph import apply
from ..variable import Var, _wrap
from ..ops.linalg import LETTERS
from ._core import OPS, UFUNC_OPS, axis_, build, function, located, nodes_of, refuse

__all__ = ["matmul", "dot", "vdot", "inner", "outer", "tensordot", "einsum", "kron", "cross", "vecdot",
           "matvec", "vecmat"]

_MATMUL = UFUNC_OPS[np.matmul] = OPS["matmul"]


@function(np.matmul)
def matmul(x1, x2, /, out=None, **kwargs):
    """``numpy.matmul``: matrix product with NumPy's rules for 1-D operands and batch axes."""
    if out is not None or kwargs:
        from ._ufuncs import _with_options
        x1, x2 = _with_options("matmul", (x1, x2), out, kwargs)
    if isinstance(x1, Var) and isinstance(x2, Var):
        return _wrap(apply(_MATMUL, (x1._node, x2._node)))
    return _wrap(apply(_MATMUL, nodes_of((x1, x2), "matmul")))



def _vars(values, name):
    """Variables for several operands typed together (Python numbers weakly)."""
    return [v if isinstance(v, Var) else _wrap(n) for v, n in zip(values, nodes_of(values, name))]


def _reshape(x, shape):
    from ._shape import reshape
    return reshape(x, shape)


def _swap(x):
    from ._shape import swapaxes
    return swapaxes(x, -1, -2)


@function(np.dot)
def dot(a, b, out=None):
    """``numpy.dot``: a product for 0-d operands, ``matmul`` for 1-D and 2-D ones (and an N-D
    ``a`` with a vector), otherwise a sum over the last axis of ``a`` and the second-to-last
    of ``b`` (the result has ``a``'s other axes, then ``b``'s)."""
    refuse("dot", "out", out)
    a, b = _vars((a, b), "dot")
    if a.ndim == 0 or b.ndim == 0:
        from ._ufuncs import multiply
        return multiply(a, b)
    inner_axis = 0 if b.ndim == 1 else b.ndim - 2
    if a.shape[-1] != b.shape[inner_axis]:
        raise located(f"dot: shapes {a.shape} and {b.shape} not aligned: {a.shape[-1]} (dim {a.ndim - 1}) "
                      f"!= {b.shape[inner_axis]} (dim {inner_axis})")
    if b.ndim == 1 or (a.ndim <= 2 and b.ndim <= 2):
        return matmul(a, b)
    return _tensordot(a, b, [a.ndim - 1], [b.ndim - 2])


@function(np.vdot)
def vdot(a, b, /):
    """``numpy.vdot``: the dot product of the flattened operands, ``a`` conjugated."""
    a, b = _vars((a, b), "vdot")
    if a.size != b.size:
        raise located(f"vdot: vectors have different lengths ({a.size} and {b.size}; shapes {a.shape} "
                      f"and {b.shape})")
    if a.dtype.kind == "c":
        from ._complex import conj
        a = conj(a)
    return matmul(_reshape(a, (a.size,)), _reshape(b, (b.size,)))


@function(np.inner)
def inner(a, b, /):
    """``numpy.inner``: a sum over the last axes; the result has ``a``'s other axes, then ``b``'s."""
    a, b = _vars((a, b), "inner")
    if a.ndim == 0 or b.ndim == 0:
        from ._ufuncs import multiply
        return multiply(a, b)
    if a.shape[-1] != b.shape[-1]:
        raise located(f"inner: shapes {a.shape} and {b.shape} not aligned: {a.shape[-1]} (dim "
                      f"{a.ndim - 1}) != {b.shape[-1]} (dim {b.ndim - 1})")
    return _tensordot(a, b, [a.ndim - 1], [b.ndim - 1])


@function(np.outer)
def outer(a, b, out=None):
    """``numpy.outer``: ``a.ravel()[:, None] * b.ravel()[None, :]``."""
    refuse("outer", "out", out)
    from ._ufuncs import multiply
    a, b = _vars((a, b), "outer")
    return multiply(_reshape(a, (a.size, 1)), _reshape(b, (b.size,)))


def _axes_list(axes):
    try:
        return [operator.index(a) for a in axes]
    except TypeError:
        return [operator.index(axes)]


@function(np.tensordot)
def tensordot(a, b, axes=2):
    """``numpy.tensordot``: ``axes`` an int N (the last N axes of ``a`` with the first N of
    ``b``) or a pair of sequences of axes; the result has ``a``'s free axes, then ``b``'s."""
    a, b = _vars((a, b), "tensordot")
    try:
        axes_a, axes_b = axes
    except TypeError:
        n = operator.index(axes)
        if n < 0 or n > min(a.ndim, b.ndim):
            raise located(f"tensordot: axes={n} does not fit shapes {a.shape} and {b.shape}")
        axes_a, axes_b = list(range(a.ndim - n, a.ndim)), list(range(n))
    axes_a, axes_b = _axes_list(axes_a), _axes_list(axes_b)
    if len(axes_a) != len(axes_b):
        raise located(f"tensordot: shape-mismatch for sum: {len(axes_a)} axes of a, {len(axes_b)} of b")
    axes_a = [axis_("tensordot", x, a.ndim) for x in axes_a]
    axes_b = [axis_("tensordot", x, b.ndim) for x in axes_b]
    return _tensordot(a, b, axes_a, axes_b)


def _tensordot(a, b, axes_a, axes_b):
    if len(set(axes_a)) != len(axes_a) or len(set(axes_b)) != len(axes_b):
        raise located(f"tensordot: repeated axes {axes_a}, {axes_b}")
    for i, j in zip(axes_a, axes_b):
        if a.shape[i] != b.shape[j]:
            raise located(f"tensordot: shape-mismatch for sum: axis {i} of a {a.shape} and axis {j} of "
                          f"b {b.shape} differ")
    letters = iter(LETTERS)
    sa = [next(letters) for _ in range(a.ndim)]
    sb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(axes_a, axes_b):
        sb[j] = sa[i]
    out = [c for i, c in enumerate(sa) if i not in axes_a] + [c for j, c in enumerate(sb) if j not in axes_b]
    return _contract([a, b], ["".join(sa), "".join(sb)], "".join(out))


# ---- einsum ----------------------------------------------------------------------------------

def _sublist(sub, where):
    letters = []
    for s in sub:
        if s is Ellipsis:
            letters.append("...")
            continue
        try:
            s = operator.index(s)
        except TypeError:
            raise located(f"einsum: subscript {s!r} in {where} is not an int in [0, 52) or Ellipsis",
                          TypeError) from None
        if not 0 <= s < len(LETTERS):
            raise located(f"einsum: subscript {s} in {where} is not in [0, 52)", ValueError)
        letters.append(LETTERS[s])
    return "".join(letters)


def _parse(operands):
    """(subscripts, operands) from NumPy's string form ``einsum("ij,jk", a, b)``."""
    if not operands:
        raise located("einsum: no subscripts given", ValueError)
    return operands[0].replace(" ", ""), list(operands[1:])


def _parse_interleaved(operands):
    """NumPy's interleaved form ``einsum(a, [0, 1], b, [1, 2], [0, 2])``."""
    n = len(operands) // 2
    arrays = list(operands[0:2 * n:2])
    subs = [_sublist(operands[2 * i + 1], f"operand {i}") for i in range(n)]
    spec = ",".join(subs)
    if len(operands) % 2:
        spec += "->" + _sublist(operands[-1], "the output")
    return spec, arrays


def _canonical(spec, shapes):
    """Subscripts rewritten for the einsum op: ``...`` as letters, an explicit output,
    each operand's size-1 axes that broadcast against a larger size dropped.

    Returns the subscripts of each operand, the output's, each operand's kept axes and
    the size of every index.
    """
    inputs, arrow, out = spec.partition("->")
    subs = inputs.split(",")
    if len(subs) != len(shapes):
        raise located(f"einsum: subscripts {spec!r} name {len(subs)} operands, {len(shapes)} given",
                      ValueError)
    for c in spec:
        if c not in LETTERS and c not in ".,->":
            raise located(f"einsum: invalid subscript {c!r} in {spec!r} (letters and '...' only)",
                          ValueError)
    used = set(c for c in spec if c in LETTERS)
    free = [c for c in LETTERS if c not in used]
    widths = []
    for k, (sub, shape) in enumerate(zip(subs, shapes)):
        if "." in sub:
            if sub.count(".") != 3 or "..." not in sub:
                raise located(f"einsum: invalid ellipsis in {sub!r}", ValueError)
            width = len(shape) - (len(sub) - 3)
        else:
            width = 0
            if len(sub) != len(shape):
                raise located(f"einsum: subscripts {sub!r} of operand {k} do not fit its shape {shape}")
        if width < 0:
            raise located(f"einsum: subscripts {sub!r} of operand {k} name more axes than its shape "
                          f"{shape} has")
        widths.append(width)
    ellipsis = "".join(free[:max(widths, default=0)])
    if len(ellipsis) > len(free):
        raise located("einsum: too many axes for the 52 letters", ValueError)
    subs = [sub.replace("...", ellipsis[len(ellipsis) - w:] if w else "") for sub, w in zip(subs, widths)]
    if arrow:
        if "." in out:
            if out.count(".") != 3 or "..." not in out:
                raise located(f"einsum: invalid ellipsis in the output {out!r}", ValueError)
            out = out.replace("...", ellipsis)
        elif ellipsis:
            raise located("einsum: output has more dimensions than subscripts given in einstein sum, "
                          "but no '...' ellipsis provided to broadcast the extra dimensions.", ValueError)
    else:
        counts = {}
        for c in "".join(subs):
            counts[c] = counts.get(c, 0) + 1
        out = ellipsis + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ellipsis))
    sizes = {}
    for k, (sub, shape) in enumerate(zip(subs, shapes)):
        own = {}
        for c, d in zip(sub, shape):
            if own.setdefault(c, d) != d:
                raise located(f"einsum: dimensions in operand {k} (shape {shape}) for collapsing index "
                              f"{c!r} don't match ({own[c]} != {d})")
            if d != 1:
                if sizes.get(c, 1) not in (1, d):
                    raise located(f"einsum: operands could not be broadcast together: index {c!r} has "
                                  f"sizes {sizes[c]} and {d} (shapes "
                                  f"{', '.join(str(tuple(s)) for s in shapes)})")
                sizes[c] = d
            else:
                sizes.setdefault(c, 1)
    for c in out:
        if c not in sizes:
            raise located(f"einsum: output subscript {c!r} never appears in an input", ValueError)
        if out.count(c) > 1:
            raise located(f"einsum: output subscript {c!r} appears more than once", ValueError)
    kept = [tuple(i for i, (c, d) in enumerate(zip(sub, shape)) if d == sizes[c])
            for sub, shape in zip(subs, shapes)]
    subs = ["".join(sub[i] for i in keep) for sub, keep in zip(subs, kept)]
    return subs, out, kept, sizes


@function(np.einsum)
def einsum(*operands, out=None, optimize=False, dtype=None, order="K", casting="safe"):
    """``numpy.einsum``: any subscripts (``...``, repeated indices, implicit output, NumPy's
    interleaved form); more than two operands are contracted pairwise in the order
    ``numpy.einsum_path(..., optimize="greedy")`` gives (an explicit path in ``optimize``
    is followed, ``"optimal"`` asks NumPy for its optimal order). ``order`` is accepted
    (variables have no memory layout)."""
    refuse("einsum", "out", out)
    if operands and not isinstance(operands[0], str):
        spec, arrays = _parse_interleaved(operands)
    else:
        spec, arrays = _parse(operands)
    arrays = _vars(arrays, "einsum")
    if dtype is not None:
        from ._ufuncs import astype
        dtype = np.dtype(dtype)
        for x in arrays:
            if not np.can_cast(x.dtype, dtype, casting):
                raise located(f"einsum: cannot cast an operand from {x.dtype} to {dtype} according "
                              f"to the rule {casting!r}", TypeError)
        arrays = [astype(x, dtype) for x in arrays]
    subs, result, kept, _ = _canonical(spec, [x.shape for x in arrays])
    arrays = [x if len(keep) == x.ndim else _reshape(x, tuple(x.shape[i] for i in keep))
              for x, keep in zip(arrays, kept)]
    return _contract(arrays, subs, result, optimize)


def _path(arrays, subs, out, optimize):
    """Pairs of positions to contract, NumPy's convention: each result goes to the end."""
    if isinstance(optimize, (list, tuple)) and optimize and optimize[0] == "einsum_path":
        return [tuple(step) for step in optimize[1:]]
    strategy = "optimal" if optimize == "optimal" else "greedy"
    dummies = [np.broadcast_to(np.empty((), x.dtype), x.shape) for x in arrays]
    path, _ = np.einsum_path(",".join(subs) + "->" + out, *dummies, optimize=strategy)
    return [tuple(step) for step in path[1:]]


def _contract(arrays, subs, out, optimize=False):
    """Canonical operands contracted into ``out``: pairwise along a path for three or more."""
    if len(arrays) <= 2:
        return _pair(arrays, subs, out)
    arrays, subs = list(arrays), list(subs)
    path = _path(arrays, subs, out, optimize)
    for n, step in enumerate(path):
        parts = [(arrays.pop(i), subs.pop(i)) for i in sorted(step, reverse=True)][::-1]
        if n == len(path) - 1 and not arrays:
            keep = out
        else:
            needed = set(out).union(*[set(s) for s in subs])
            keep = "".join(sorted(set("".join(s for _, s in parts)) & needed))
        while len(parts) > 2:      # an explicit path may name more than two at once
            (x1, s1), (x2, s2) = parts.pop(), parts.pop()
            needed2 = set(keep).union(*[set(s) for _, s in parts])
            s12 = "".join(sorted((set(s1) | set(s2)) & needed2))
            parts.append((_pair([x1, x2], [s1, s2], s12), s12))
        arrays.append(_pair([x for x, _ in parts], [s for _, s in parts], keep))
        subs.append(keep)
    if len(arrays) != 1:
        raise located(f"einsum: the contraction path {path} leaves {len(arrays)} operands", ValueError)
    if subs[0] != out:
        return _pair(arrays, subs, out)
    return arrays[0]


def _pair(arrays, subs, out):
    """One or two canonical operands contracted: a matmul where it is a matrix product,
    else the einsum op."""
    if len(arrays) == 1 and subs[0] == out:
        return arrays[0]
    if len(arrays) == 2:
        plans = [(order,) + p for order, p in ((True, _matmul_plan(subs, out)),
                                               (False, _matmul_plan(subs[::-1], out))) if p is not None]
        if plans:
            plan = min(plans, key=lambda p: sum(p[1:]))
            a, b = arrays if plan[0] else arrays[::-1]
            a = _swap(a) if plan[1] else a
            b = _swap(b) if plan[2] else b
            result = matmul(a, b)
            return _swap(result) if plan[3] else result
    return build("einsum", arrays, (",".join(subs) + "->" + out,))


def _matrix_form(sub, c, left):
    """(batch, free index, swapped) of an operand of a matrix product contracting ``c``:
    a left operand is (..., i, c), a right one (..., c, j); a vector is ('', None, False)."""
    if len(sub) == 1:
        return ("", None, False) if sub == c else None
    if len(sub) < 2 or c not in sub[-2:]:
        return None
    natural = sub[-1] == c if left else sub[-2] == c
    free = sub[-2] if sub[-1] == c else sub[-1]
    return sub[:-2], free, not natural


def _matmul_plan(subs, out):
    """How ``matmul`` computes this contraction of two operands: (swap the first, swap the
    second, swap the result), or None where it is not a matrix product."""
    sa, sb = subs
    if len(set(sa)) != len(sa) or len(set(sb)) != len(sb):
        return None
    shared = [c for c in sa if c in sb and c not in out]
    if len(shared) != 1:
        return None
    c = shared[0]
    fa, fb = _matrix_form(sa, c, True), _matrix_form(sb, c, False)
    if fa is None or fb is None:
        return None
    (batch_a, i, swap_a), (batch_b, j, swap_b) = fa, fb
    if i is None and batch_a or j is None and batch_b:
        return None
    long, short = (batch_a, batch_b) if len(batch_a) >= len(batch_b) else (batch_b, batch_a)
    if long[len(long) - len(short):] != short:
        return None
    if out == long + (i or "") + (j or ""):
        return swap_a, swap_b, False
    if i is not None and j is not None and out == long + j + i:
        return swap_a, swap_b, True
    return None


# ---- NumPy 2's vector gufuncs ----------------------------------------------------------------

def _gufunc_options(name, values, out, kwargs):
    """The operands after a gufunc's keyword options (``axes`` is refused: use moveaxis)."""
    if "axes" in kwargs:
        raise located(f"{name}: axes= is not supported on variables; move the axes with moveaxis",
                      TypeError)
    if out is not None or kwargs:
        from ._ufuncs import _with_options
        values = _with_options(name, values, out, kwargs)
    return _vars(values, name)


def _conj(x):
    if x.dtype.kind != "c":
        return x
    from ._complex import conj
    return conj(x)


@function(np.vecdot)
def vecdot(x1, x2, /, out=None, *, axis=-1, keepdims=False, **kwargs):
    """``numpy.vecdot``: the dot product of vectors along ``axis`` (``x1`` conjugated), other
    axes broadcasting."""
    from ._reductions import sum as total
    from ._shape import moveaxis
    from ._ufuncs import multiply
    x1, x2 = _gufunc_options("vecdot", (x1, x2), out, kwargs)
    if x1.ndim < 1 or x2.ndim < 1:
        raise located(f"vecdot: shapes {x1.shape} and {x2.shape}: vectors are needed")
    x1 = moveaxis(x1, axis_("vecdot", axis, x1.ndim), -1)
    x2 = moveaxis(x2, axis_("vecdot", axis, x2.ndim), -1)
    if x1.shape[-1] != x2.shape[-1]:
        raise located(f"vecdot: vectors of lengths {x1.shape[-1]} and {x2.shape[-1]} along axis {axis}")
    result = total(multiply(_conj(x1), x2), axis=-1, keepdims=keepdims)
    return moveaxis(result, -1, axis_("vecdot", axis, result.ndim)) if keepdims else result


@function(np.matvec)
def matvec(x1, x2, /, out=None, **kwargs):
    """``numpy.matvec``: matrix (..., m, n) times vector (..., n), batches broadcasting."""
    x1, x2 = _gufunc_options("matvec", (x1, x2), out, kwargs)
    if x1.ndim < 2 or x2.ndim < 1:
        raise located(f"matvec: shapes {x1.shape} and {x2.shape}: a matrix and a vector are needed")
    result = matmul(x1, _reshape(x2, x2.shape + (1,)))
    return _reshape(result, result.shape[:-1])


@function(np.vecmat)
def vecmat(x1, x2, /, out=None, **kwargs):
    """``numpy.vecmat``: vector (..., m), conjugated, times matrix (..., m, n)."""
    x1, x2 = _gufunc_options("vecmat", (x1, x2), out, kwargs)
    if x1.ndim < 1 or x2.ndim < 2:
        raise located(f"vecmat: shapes {x1.shape} and {x2.shape}: a vector and a matrix are needed")
    result = matmul(_reshape(_conj(x1), x1.shape[:-1] + (1, x1.shape[-1])), x2)
    return _reshape(result, result.shape[:-2] + result.shape[-1:])


# ---- kron, cross ---------------------------------------------------------------------------------

@function(np.kron)
def kron(a, b):
    """``numpy.kron``: the Kronecker product (blocks ``a[i, j] * b``)."""
    from ._ufuncs import multiply
    a, b = _vars((a, b), "kron")
    if a.ndim == 0 or b.ndim == 0:
        return multiply(a, b)
    nd = max(a.ndim, b.ndim)
    sa = (1,) * (nd - a.ndim) + a.shape
    sb = (1,) * (nd - b.ndim) + b.shape
    a = _reshape(a, tuple(d for n in sa for d in (n, 1)))
    b = _reshape(b, tuple(d for n in sb for d in (1, n)))
    return _reshape(multiply(a, b), tuple(m * n for m, n in zip(sa, sb)))


@function(np.cross)
def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """``numpy.cross``: cross products of 3-vectors (and, deprecated in NumPy 2, of 2-vectors)
    along ``axisa`` / ``axisb``, the result's vectors along ``axisc`` (``axis`` sets all three)."""
    from ._shape import moveaxis, stack
    from ._ufuncs import astype
    if axis is not None:
        axisa = axisb = axisc = axis
    a, b = _vars((a, b), "cross")
    if a.ndim < 1 or b.ndim < 1:
        raise located("cross: at least one array has zero dimension", ValueError)
    a = moveaxis(a, axis_("cross: axisa", axisa, a.ndim), -1)
    b = moveaxis(b, axis_("cross: axisb", axisb, b.ndim), -1)
    na, nb = a.shape[-1], b.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise located(f"cross: incompatible dimensions for cross product (dimension must be 2 or 3), "
                      f"got shapes {a.shape} and {b.shape}", ValueError)
    if na == 2 or nb == 2:
        warnings.warn("Arrays of 2-dimensional vectors are deprecated. Use arrays of 3-dimensional "
                      "vectors instead. (deprecated in NumPy 2.0)", DeprecationWarning, stacklevel=3)
    dtype = np.promote_types(a.dtype, b.dtype)
    a, b = astype(a, dtype), astype(b, dtype)
    a0, a1 = a[..., 0], a[..., 1]
    b0, b1 = b[..., 0], b[..., 1]
    z = a0 * b1 - a1 * b0
    if na == 2 and nb == 2:
        return z
    if na == 2:
        b2 = b[..., 2]
        parts = [a1 * b2, -(a0 * b2), z]
    elif nb == 2:
        a2 = a[..., 2]
        parts = [-(a2 * b1), a2 * b0, z]
    else:
        a2, b2 = a[..., 2], b[..., 2]
        parts = [a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, z]
    out_ndim = len(z.shape) + 1
    return moveaxis(stack(parts, axis=-1), -1, axis_("cross: axisc", axisc, out_ndim))
