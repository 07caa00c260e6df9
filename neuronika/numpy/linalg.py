"""``neuronika.numpy.linalg``: NumPy's linear algebra on variables, batched over leading
axes as in NumPy 2, with the same signatures, dtypes and result tuples
(``EigResult``, ``EighResult``, ``SVDResult``, ``SlogdetResult``, ``QRResult``). Values are NumPy's
own; gradients are closed forms (see ``neuronika/ops/decomp.py``) written in
differentiable functions, so they differentiate again.

Where a gradient exists only under a condition, it is documented and assumed:

- ``eig``, ``eigvals``, ``eigh``, ``eigvalsh``: distinct eigenvalues; ``svd`` (and ``svdvals``, ``norm`` with
  ord 2, -2, 'nuc', ``cond``): distinct nonzero singular values. Eigenvectors and
  singular vectors are unique up to sign (a phase, when complex) only: differentiate
  functions that do not depend on it (``U * U``, ``abs(U)``, ``U @ diag(s) @ Vh``,
  ``V @ diag(w) @ V.T``).
- ``cholesky`` and ``eigh`` read one triangle of the matrix (``upper``, ``UPLO``), as
  NumPy does: the gradient is that of the function NumPy computes, nonzero on that
  triangle only. For a symmetric gradient, pass ``(a + a.T) / 2``.
- ``qr``: a full-rank matrix; ``pinv``, ``lstsq``, ``matrix_rank``: a rank that does not
  change around the point; ``det``, ``slogdet``: an invertible matrix.
- ``svd(full_matrices=True)`` of a non-square matrix and ``qr(mode='complete')`` of a
  tall one have no gradient (the extra columns are not unique): they refuse a variable
  that needs one. Complex matrices: ``inv``, ``det``, ``solve``, ``eig``, ``eigvals``,
  ``eigh``, ``eigvalsh`` (Hermitian), ``svd``, ``svdvals``, ``norm``, ``matrix_power``,
  ``multi_dot`` and the products; gradients follow HIPS autograd's convention (see
  ``neuronika.numpy._complex``).

Functions not implemented here are NumPy's own: they compute on values, and refuse a
variable that needs a gradient.

>>> import numpy, neuronika, neuronika.numpy as nnp
>>> a = numpy.array([[2.0, 1.0], [1.0, 3.0]])
>>> neuronika.grad(lambda a: nnp.linalg.slogdet(a).logabsdet)(a)     # inv(a).T
array([[ 0.6, -0.2],
       [-0.2,  0.4]])
>>> w, v = nnp.linalg.eigh(neuronika.from_ndarray(a))
>>> w
Var([1.38196601, 3.61803399], dtype=float64)
"""
from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

import numpy as _numpy

from ..errors import LinAlgShapeError
from ..variable import Var, _wrap
from ._core import NON_DIFFERENTIABLE, axis_, build, function, located, needs_grad, node_of, var_of
from . import _products

__all__ = ["norm", "det", "slogdet", "inv", "pinv", "solve", "cholesky", "qr", "eig", "eigvals", "eigh",
           "eigvalsh",
           "svd", "svdvals", "lstsq", "matrix_power", "multi_dot", "matrix_transpose", "vecdot",
           "outer", "matmul", "tensordot", "cross", "diagonal", "trace", "matrix_norm", "vector_norm",
           "cond", "matrix_rank", "tensorinv", "tensorsolve"]

LinAlgError = _numpy.linalg.LinAlgError


class EigResult(NamedTuple):
    eigenvalues: Any
    eigenvectors: Any


class EighResult(NamedTuple):
    eigenvalues: Any
    eigenvectors: Any


class SVDResult(NamedTuple):
    U: Any
    S: Any
    Vh: Any


class SlogdetResult(NamedTuple):
    sign: Any
    logabsdet: Any


class QRResult(NamedTuple):
    Q: Any
    R: Any


# ---- helpers -----------------------------------------------------------------------------------

def _float(x, name, complex_ok=True):
    """``x`` as a variable with an inexact dtype (integers become float64, as in NumPy)."""
    x = var_of(x, name=name)
    if x.dtype.kind == "c" and not complex_ok:
        raise located(f"{name}: complex matrices are not supported on variables", TypeError)
    if x.dtype.kind not in "fc":
        from ._ufuncs import astype
        x = astype(x, _numpy.float64)
    return x


def _matrices(x, name, square=False, complex_ok=False):
    x = _float(x, name, complex_ok)
    if x.ndim < 2:
        raise located(f"{name}: {x.ndim}-dimensional array given; expected at least two "
                      f"dimensions, got shape {x.shape}", LinAlgShapeError)
    if square and x.shape[-1] != x.shape[-2]:
        raise located(f"{name}: last 2 dimensions of the array must be square, got shape {x.shape}",
                      LinAlgShapeError)
    return x


def _refuse_gradient(name, what, advice, values, compute):
    """NumPy's result on the values of variables that need no gradient (as constants); a
    TypeError for one that needs a gradient, which does not exist here."""
    for v in values:
        if isinstance(v, Var) and needs_grad(v):
            raise located(f"{name}: {what} has no gradient; {advice}", TypeError)
    result = compute(*[v.data if isinstance(v, Var) else v for v in values])
    if isinstance(result, tuple):
        return type(result)(*[_wrap(node_of(_numpy.asarray(r))) for r in result])
    return _wrap(node_of(_numpy.asarray(result)))


def _real(x):
    from ._complex import real
    return real(x)


def _moveaxes(x, source, destination):
    from ._shape import moveaxis
    return moveaxis(x, source, destination)


def _reshape(x, shape):
    from ._shape import reshape
    return reshape(x, shape)


def _swap(x):
    from ._shape import swapaxes
    return swapaxes(x, -1, -2)


# ---- inverse, determinants, solve ----------------------------------------------------------------

@function(_numpy.linalg.inv)
def inv(a):
    """``numpy.linalg.inv``: the inverse of each square matrix; raises ``LinAlgError`` on a
    singular one (when the value is computed). Gradient ``-inv(a).T @ g @ inv(a).T``."""
    return build("inv", (_matrices(a, "inv", square=True, complex_ok=True),))


@function(_numpy.linalg.det)
def det(a):
    """``numpy.linalg.det``: the determinant of each square matrix; gradient
    ``g * det(a) * inv(a).T`` (a must be invertible)."""
    return build("det", (_matrices(a, "det", square=True, complex_ok=True),))


@function(_numpy.linalg.slogdet)
def slogdet(a):
    """``numpy.linalg.slogdet``: ``SlogdetResult(sign, logabsdet)``; the sign has no gradient,
    ``logabsdet`` has ``inv(a).T``."""
    a = _matrices(a, "slogdet", square=True)
    return SlogdetResult(build("slogdet_sign", (a,)), build("logabsdet", (a,)))


@function(_numpy.linalg.solve)
def solve(a, b):
    """``numpy.linalg.solve``: x with ``a @ x == b``; ``b`` is a vector (M,) or a stack of
    matrices (..., M, K), as NumPy 2 defines (batch axes broadcast)."""
    a = _matrices(a, "solve", square=True, complex_ok=True)
    b = _float(b, "solve")
    m = a.shape[-1]
    if b.ndim == 0 or (b.ndim == 1 and b.shape[0] != m) or (b.ndim > 1 and b.shape[-2] != m):
        raise located(f"solve: a of shape {a.shape} and b of shape {b.shape} do not fit: b must be "
                      f"({m},) or (..., {m}, K)")
    if b.ndim > 1:
        try:
            _numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            raise located(f"solve: the batch dimensions of a {a.shape} and b {b.shape} do not "
                          f"broadcast together") from None
    if a.dtype != b.dtype:
        from ._ufuncs import astype
        dtype = _numpy.result_type(a.dtype, b.dtype)
        a, b = astype(a, dtype), astype(b, dtype)
    return build("solve", (a, b))


# ---- decompositions ------------------------------------------------------------------------------

@function(_numpy.linalg.cholesky)
def cholesky(a, /, *, upper=False):
    """``numpy.linalg.cholesky``: the lower (``upper=True``: upper) Cholesky factor. NumPy reads
    the lower (upper) triangle only; so does the gradient."""
    return build("cholesky", (_matrices(a, "cholesky", square=True),), (bool(upper),))


@function(_numpy.linalg.qr)
def qr(a, mode="reduced"):
    """``numpy.linalg.qr``: ``QRResult(Q, R)`` for ``mode='reduced'`` (the default) and
    ``'complete'``, R alone for ``'r'``. A tall matrix's complete Q and ``mode='raw'`` have
    no gradient."""
    a = _matrices(a, "qr")
    m, n = a.shape[-2:]
    if mode not in ("reduced", "complete", "r", "raw"):
        raise located(f"qr: unrecognized mode {mode!r}", ValueError)
    if mode == "raw" or (mode == "complete" and m > n):
        what = "mode='raw'" if mode == "raw" else "mode='complete' of a tall matrix (its extra columns are not unique)"
        return _refuse_gradient("qr", what, "use mode='reduced' on variables that need one", [a],
                                lambda v: _numpy.linalg.qr(v, mode=mode))
    packed = build("qr", (a,))
    if m >= n:
        q, r = packed[..., :m, :], packed[..., m:, :]
    else:
        q, r = packed[..., :, :m], packed[..., :, m:]
    return r if mode == "r" else QRResult(q, r)


def _uplo(name, UPLO):
    uplo = str(UPLO).upper()
    if uplo not in ("L", "U"):
        raise located(f"{name}: UPLO argument must be 'L' or 'U', got {UPLO!r}", ValueError)
    return uplo


@function(_numpy.linalg.eigh)
def eigh(a, UPLO="L"):
    """``numpy.linalg.eigh``: ``EighResult(eigenvalues, eigenvectors)`` of symmetric matrices,
    ascending; reads the ``UPLO`` triangle. The gradient assumes distinct eigenvalues."""
    a = _matrices(a, "eigh", square=True, complex_ok=True)
    packed = build("eigh", (a,), (_uplo("eigh", UPLO),))
    w = packed[..., 0, :]
    return EighResult(_real(w) if a.dtype.kind == "c" else w, packed[..., 1:, :])


@function(_numpy.linalg.eigvalsh)
def eigvalsh(a, UPLO="L"):
    """``numpy.linalg.eigvalsh``: the eigenvalues of symmetric matrices, ascending (distinct,
    for the gradient)."""
    a = _matrices(a, "eigvalsh", square=True, complex_ok=True)
    return build("eigvalsh", (a,), (_uplo("eigvalsh", UPLO),))


def _real_if_all_real(a, values, parts):
    """NumPy's rule for eig and eigvals of a real matrix: real results when every eigenvalue
    is real (an exact test on the values; guarded inside neuronika.grad, so a matrix whose
    answer differs traces again)."""
    if a.dtype.kind == "c":
        return parts
    from ._complex import imag
    from ._reductions import all as all_
    from ._ufuncs import equal
    if a.size == 0 or all_(equal(imag(values), 0)):
        return tuple(_real(p) for p in parts)
    return parts


@function(_numpy.linalg.eig)
def eig(a):
    """``numpy.linalg.eig``: ``EigResult(eigenvalues, eigenvectors)`` of square matrices, the
    eigenvectors of unit norm; complex, or real for a real matrix whose eigenvalues are all real
    (NumPy's rule). The gradient needs distinct eigenvalues and, the eigenvectors' phases being
    free, a function that does not depend on them (``abs(v)``, ``v @ diag(w) @ inv(v)``)."""
    a = _matrices(a, "eig", square=True, complex_ok=True)
    packed = build("eig", (a,))
    w, v = packed[..., 0, :], packed[..., 1:, :]
    return EigResult(*_real_if_all_real(a, w, (w, v)))


@function(_numpy.linalg.eigvals)
def eigvals(a):
    """``numpy.linalg.eigvals``: the eigenvalues of square matrices (complex, or real when all
    are real for a real matrix, as NumPy); the gradient needs them distinct."""
    a = _matrices(a, "eigvals", square=True, complex_ok=True)
    w = build("eigvals", (a,))
    return _real_if_all_real(a, w, (w,))[0]


@function(_numpy.linalg.svd)
def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """``numpy.linalg.svd``: ``SVDResult(U, S, Vh)``, or S alone with ``compute_uv=False``.
    Differentiable for square matrices and ``full_matrices=False`` (distinct nonzero
    singular values); the extra columns of a full U or Vh have no gradient."""
    a = _matrices(a, "svd", complex_ok=True)
    m, n = a.shape[-2:]
    if hermitian:
        return _refuse_gradient("svd", "hermitian=True", "use eigh, or hermitian=False", [a],
                                lambda v: _numpy.linalg.svd(v, full_matrices, compute_uv, True))
    if not compute_uv:
        return build("svdvals", (a,))
    if full_matrices and m != n:
        return _refuse_gradient("svd", "full_matrices=True of a non-square matrix (the extra singular "
                                "vectors are not unique)", "use full_matrices=False on variables that "
                                "need one", [a], lambda v: _numpy.linalg.svd(v, True, True))
    packed = build("svd", (a,))
    s = packed[..., m, :]
    return SVDResult(packed[..., :m, :], _real(s) if a.dtype.kind == "c" else s,
                     _swap(packed[..., m + 1:, :]))


@function(_numpy.linalg.svdvals)
def svdvals(x, /):
    """``numpy.linalg.svdvals``: the singular values, descending (distinct, for the gradient)."""
    return build("svdvals", (_matrices(x, "svdvals", complex_ok=True),))


def _scalar(name, parameter, value):
    if value is None:
        return None
    array = _numpy.asarray(value)
    if array.ndim:
        raise located(f"{name}: {parameter} must be a number on variables, got an array of shape "
                      f"{array.shape}", TypeError)
    return float(array)


@function(_numpy.linalg.pinv)
def pinv(a, rcond=None, hermitian=False, *, rtol=_numpy._NoValue):
    """``numpy.linalg.pinv``: the Moore-Penrose pseudo-inverse; the gradient holds where the
    rank (the singular values above the cutoff) does not change."""
    a = _matrices(a, "pinv")
    if rcond is None:
        if rtol is _numpy._NoValue:
            rcond = 1e-15
        elif rtol is None:
            rcond = max(a.shape[-2:]) * _numpy.finfo(a.dtype).eps
        else:
            rcond = rtol
    elif rtol is not _numpy._NoValue:
        raise located("pinv: `rtol` and `rcond` can't be both set.", ValueError)
    return build("pinv", (a,), (_scalar("pinv", "rcond", rcond), bool(hermitian)))


@function(_numpy.linalg.lstsq)
def lstsq(a, b, rcond=None):
    """``numpy.linalg.lstsq``: ``(x, residuals, rank, s)``. The solution, the residuals
    (``sum((b - a @ x) ** 2, axis=0)`` where NumPy gives them: rank N and M > N) and the
    singular values are differentiable; the rank (an int) is not."""
    a = _matrices(a, "lstsq")
    b = _float(b, "lstsq", complex_ok=False)
    if a.ndim != 2:
        raise located(f"lstsq: a must be a 2-D matrix, got shape {a.shape}", LinAlgShapeError)
    if b.ndim not in (1, 2) or b.shape[0] != a.shape[0]:
        raise located(f"lstsq: a of shape {a.shape} and b of shape {b.shape} do not fit: b must be "
                      f"({a.shape[0]},) or ({a.shape[0]}, K)", LinAlgShapeError)
    if a.dtype != b.dtype:
        from ._ufuncs import astype
        dtype = _numpy.result_type(a.dtype, b.dtype)
        a, b = astype(a, dtype), astype(b, dtype)
    rcond = _scalar("lstsq", "rcond", rcond)
    x = build("lstsq", (a, b), (rcond,))
    m, n = a.shape
    rank = int(build("matrix_rank", (a,), (None, rcond, False)))
    if rank == n and m > n:
        from ._reductions import sum as total
        r = b - _products.matmul(a, x)
        residuals = total(r * r, axis=0)
        if b.ndim == 1:
            residuals = _reshape(residuals, (1,))
    else:
        residuals = _wrap(node_of(_numpy.empty((0,), _numpy.dtype(a.dtype.char.lower()))))
    return x, residuals, _numpy.int32(rank), build("svdvals", (a,))


@function(_numpy.linalg.matrix_rank)
def matrix_rank(A, tol=None, hermitian=False, *, rtol=None):
    """``numpy.linalg.matrix_rank``: the number of singular values above the tolerance (an
    integer: no gradient)."""
    A = _float(A, "matrix_rank", complex_ok=False)
    if rtol is not None and tol is not None:
        raise located("matrix_rank: `tol` and `rtol` can't be both set.", ValueError)
    if A.ndim < 2:
        A = _reshape(A, (1, A.size))
    return build("matrix_rank", (A,), (_scalar("matrix_rank", "tol", tol),
                                       _scalar("matrix_rank", "rtol", rtol), bool(hermitian)))


NON_DIFFERENTIABLE["linalg.matrix_rank"] = "an integer result"


# ---- norms ---------------------------------------------------------------------------------------

def _sum(x, axis=None, keepdims=False):
    from ._reductions import sum as total
    return total(x, axis=axis, keepdims=keepdims)


def _amax(x, axis=None, keepdims=False):
    from ._reductions import max as amax
    return amax(x, axis=axis, keepdims=keepdims)


def _amin(x, axis=None, keepdims=False):
    from ._reductions import min as amin
    return amin(x, axis=axis, keepdims=keepdims)


def _abs(x):
    from ._ufuncs import absolute
    return absolute(x)


def _sqrt(x):
    from ._ufuncs import sqrt
    return sqrt(x)


def _square_sum(x, axis=None, keepdims=False):
    if x.dtype.kind == "c":
        from ._complex import conj, real
        return _sum(real(conj(x) * x), axis, keepdims)
    from ._ufuncs import square
    return _sum(square(x), axis, keepdims)


def _svd_norm(x, row, col, reduce):
    return reduce(build("svdvals", (_moveaxes(x, (row, col), (-2, -1)),)), axis=-1)


@function(_numpy.linalg.norm)
def norm(x, ord=None, axis=None, keepdims=False):  # noqa: A002
    """``numpy.linalg.norm``: vector norms (ord None/2, 1, inf, -inf, 0, any p) along one axis,
    matrix norms ('fro', 'nuc', 1, -1, 2, -2, inf, -inf) over a pair of axes; the whole
    array's 2-norm by default. Kinks (|x| = 0, ties in max) have a one-sided gradient."""
    x = _float(x, "norm")
    if axis is None:
        ndim = x.ndim
        if ord is None or (ord in ("f", "fro") and ndim == 2) or (ord == 2 and ndim == 1):
            flat = _reshape(x, (x.size,))
            if flat.dtype.kind == "c":
                result = _sqrt(_square_sum(flat))
            else:
                result = _sqrt(_products.matmul(flat, flat))      # NumPy's x.dot(x)
            return _reshape(result, (1,) * ndim) if keepdims else result
        axis = tuple(range(ndim))
    elif not isinstance(axis, tuple):
        try:
            axis = (operator.index(axis),)
        except TypeError:
            raise located("norm: 'axis' must be None, an integer or a tuple of integers", TypeError) from None
    if len(axis) == 1:
        a = axis_("norm", axis[0], x.ndim)
        if ord == _numpy.inf:
            return _amax(_abs(x), a, keepdims)
        if ord == -_numpy.inf:
            return _amin(_abs(x), a, keepdims)
        if ord == 0:
            from ._ufuncs import astype, not_equal
            return _sum(astype(not_equal(x, 0), x.real.dtype if x.dtype.kind == "c" else x.dtype), a, keepdims)
        if ord == 1:
            return _sum(_abs(x), a, keepdims)
        if ord is None or ord == 2:
            return _sqrt(_square_sum(x, a, keepdims))
        if isinstance(ord, str):
            raise located(f"norm: invalid norm order '{ord}' for vectors", ValueError)
        total = _sum(_abs(x) ** ord, a, keepdims)
        return total ** _numpy.reciprocal(ord, dtype=total.dtype).item()
    if len(axis) == 2:
        row, col = (axis_("norm", v, x.ndim) for v in axis)
        if row == col:
            raise located("norm: duplicate axes given", ValueError)
        if ord == 2:
            result = _svd_norm(x, row, col, _amax)
        elif ord == -2:
            result = _svd_norm(x, row, col, _amin)
        elif ord in (1, -1):
            reduce = _amax if ord == 1 else _amin
            result = reduce(_sum(_abs(x), row), col - 1 if col > row else col)
        elif ord in (_numpy.inf, -_numpy.inf):
            reduce = _amax if ord == _numpy.inf else _amin
            result = reduce(_sum(_abs(x), col), row - 1 if row > col else row)
        elif ord in (None, "fro", "f"):
            result = _sqrt(_square_sum(x, (row, col)))
        elif ord == "nuc":
            result = _svd_norm(x, row, col, _sum)
        else:
            raise located(f"norm: invalid norm order {ord!r} for matrices", ValueError)
        if keepdims:
            shape = list(x.shape)
            shape[row] = shape[col] = 1
            result = _reshape(result, tuple(shape))
        return result
    raise located(f"norm: improper number of dimensions to norm (axis {axis}, shape {x.shape})",
                  ValueError)


@function(_numpy.linalg.vector_norm)
def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):  # noqa: A002
    """``numpy.linalg.vector_norm``: a vector norm over all axes (default), one, or several
    (taken as one flattened vector)."""
    x = _float(x, "vector_norm")
    shape = list(x.shape)
    if axis is None:
        y, inner = _reshape(x, (x.size,)), 0
    elif isinstance(axis, tuple):
        axes = [axis_("vector_norm", a, x.ndim) for a in axis]
        rest = [i for i in range(x.ndim) if i not in axes]
        from ._shape import transpose
        y = _reshape(transpose(x, axes + rest), (math.prod(x.shape[i] for i in axes),)
                     + tuple(x.shape[i] for i in rest))
        inner = 0
    else:
        y, inner = x, axis
    result = norm(y, ord=ord, axis=inner)
    if keepdims:
        kept = range(len(shape)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
        for i in kept:
            shape[axis_("vector_norm", i, len(shape))] = 1
        result = _reshape(result, tuple(shape))
    return result


@function(_numpy.linalg.matrix_norm)
def matrix_norm(x, /, *, keepdims=False, ord="fro"):  # noqa: A002
    """``numpy.linalg.matrix_norm``: ``norm(x, ord, axis=(-2, -1), keepdims)``."""
    x = _matrices(x, "matrix_norm", complex_ok=True)
    return norm(x, ord=ord, axis=(-2, -1), keepdims=keepdims)


@function(_numpy.linalg.cond)
def cond(x, p=None):
    """``numpy.linalg.cond``: the condition number in norm ``p`` (None and +-2: ratios of
    singular values; others: ``norm(x, p) * norm(inv(x), p)``)."""
    x = _matrices(x, "cond")
    if p is None or p == 2 or p == -2:
        s = build("svdvals", (x,))
        big, small = s[..., 0], s[..., -1]
        return small / big if p == -2 else big / small
    if x.shape[-1] != x.shape[-2]:
        raise located(f"cond: last 2 dimensions of the array must be square, got shape {x.shape}",
                      LinAlgShapeError)
    return norm(x, p, axis=(-2, -1)) * norm(build("inv", (x,)), p, axis=(-2, -1))


# ---- powers, chains, tensors -------------------------------------------------------------------

@function(_numpy.linalg.matrix_power)
def matrix_power(a, n):
    """``numpy.linalg.matrix_power``: ``a`` to the integer power ``n`` by repeated squaring
    (NumPy's order of products); negative powers through ``inv``."""
    a = var_of(a, name="matrix_power")
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise located(f"matrix_power: last 2 dimensions of the array must be square, got shape "
                      f"{a.shape}", LinAlgShapeError)
    try:
        n = operator.index(n)
    except TypeError:
        raise located("matrix_power: exponent must be an integer", TypeError) from None
    if n == 0:
        from ._ufuncs import where
        return where(_numpy.zeros((1, 1), bool), a, _numpy.eye(a.shape[-1], dtype=a.dtype))
    if n < 0:
        a = inv(a)
        n = -n
    matmul = _products.matmul
    if n == 1:
        return a
    if n == 2:
        return matmul(a, a)
    if n == 3:
        return matmul(matmul(a, a), a)
    z = result = None
    while n > 0:
        z = a if z is None else matmul(z, z)
        n, bit = divmod(n, 2)
        if bit:
            result = z if result is None else matmul(result, z)
    return result


def _chain_order(shapes):
    """NumPy's matrix-chain order (the cheapest parenthesisation)."""
    n = len(shapes)
    p = [s[0] for s in shapes] + [shapes[-1][1]]
    cost = [[0.0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = math.inf
            for k in range(i, j):
                q = cost[i][k] + cost[k + 1][j] + p[i] * p[k + 1] * p[j + 1]
                if q < cost[i][j]:
                    cost[i][j], split[i][j] = q, k
    return split


@function(_numpy.linalg.multi_dot)
def multi_dot(arrays, *, out=None):
    """``numpy.linalg.multi_dot``: a chain of matrix products in the cheapest order (NumPy's);
    the first and last operands may be vectors."""
    from ._core import refuse
    refuse("multi_dot", "out", out)
    n = len(arrays)
    if n < 2:
        raise located("multi_dot: expecting at least two arrays", ValueError)
    if n == 2:
        return _products.dot(arrays[0], arrays[1])
    arrays = [var_of(a, name="multi_dot") for a in arrays]
    first, last = arrays[0].ndim, arrays[-1].ndim
    if first == 1:
        arrays[0] = _reshape(arrays[0], (1, arrays[0].size))
    if last == 1:
        arrays[-1] = _reshape(arrays[-1], (arrays[-1].size, 1))
    for k, x in enumerate(arrays):
        if x.ndim != 2:
            raise located(f"multi_dot: operand {k} has {x.ndim} dimensions (shape {x.shape}); matrices "
                          f"must be two-dimensional", LinAlgShapeError)
    dot = _products.dot
    if n == 3:
        (a0, a1), (c0, c1) = arrays[0].shape, arrays[2].shape
        if a0 * c0 * (a1 + c1) < a1 * c1 * (a0 + c0):
            result = dot(dot(arrays[0], arrays[1]), arrays[2])
        else:
            result = dot(arrays[0], dot(arrays[1], arrays[2]))
    else:
        split = _chain_order([x.shape for x in arrays])

        def chain(i, j):
            if i == j:
                return arrays[i]
            return dot(chain(i, split[i][j]), chain(split[i][j] + 1, j))
        result = chain(0, n - 1)
    if first == 1 and last == 1:
        return result[0, 0]
    if first == 1 or last == 1:
        return _reshape(result, (result.size,))
    return result


@function(_numpy.linalg.matrix_transpose)
def matrix_transpose(x, /):
    """``numpy.linalg.matrix_transpose``: the last two axes swapped."""
    x = var_of(x, name="matrix_transpose")
    if x.ndim < 2:
        raise located(f"matrix_transpose: input array must be at least 2-dimensional, got shape "
                      f"{x.shape}", ValueError)
    return _swap(x)


@function(_numpy.linalg.vecdot)
def vecdot(x1, x2, /, *, axis=-1):
    """``numpy.linalg.vecdot``: the dot product of vectors along ``axis`` (``x1`` conjugated),
    broadcasting the other axes."""
    return _products.vecdot(x1, x2, axis=axis)


@function(_numpy.linalg.outer)
def outer(x1, x2, /):
    """``numpy.linalg.outer``: the outer product of two vectors."""
    x1, x2 = _products._vars((x1, x2), "outer")
    if x1.ndim != 1 or x2.ndim != 1:
        raise located(f"outer: input arrays must be one-dimensional, got shapes {x1.shape} and "
                      f"{x2.shape}", ValueError)
    return _products.outer(x1, x2)


@function(_numpy.linalg.matmul)
def matmul(x1, x2, /):
    """``numpy.linalg.matmul``: ``numpy.matmul``."""
    return _products.matmul(x1, x2)


@function(_numpy.linalg.tensordot)
def tensordot(x1, x2, /, *, axes=2):
    """``numpy.linalg.tensordot``: ``numpy.tensordot``."""
    return _products.tensordot(x1, x2, axes)


@function(_numpy.linalg.cross)
def cross(x1, x2, /, *, axis=-1):
    """``numpy.linalg.cross``: cross products of 3-vectors along ``axis``."""
    x1, x2 = _products._vars((x1, x2), "cross")
    if x1.ndim < 1 or x2.ndim < 1 or x1.shape[axis_("cross", axis, x1.ndim)] != 3 \
            or x2.shape[axis_("cross", axis, x2.ndim)] != 3:
        raise located(f"cross: both input arrays must be (arrays of) 3-dimensional vectors, got "
                      f"shapes {x1.shape} and {x2.shape}", ValueError)
    return _products.cross(x1, x2, axis=axis)


def _diagonal_block(x, offset, name):
    """``x[..., rows, cols]``: the square block whose diagonal is the ``offset`` diagonal."""
    x = var_of(x, name=name)
    if x.ndim < 2:
        raise located(f"{name}: expected at least two dimensions, got shape {x.shape}", ValueError)
    offset = operator.index(offset)
    n, m = x.shape[-2:]
    k = max(0, min(n, m - offset) if offset >= 0 else min(n + offset, m))
    r0, c0 = (0, offset) if offset >= 0 else (-offset, 0)
    if (r0, c0, k, k) != (0, 0, n, m):
        x = x[..., r0:r0 + k, c0:c0 + k]
    return x


@function(_numpy.linalg.diagonal)
def diagonal(x, /, *, offset=0):
    """``numpy.linalg.diagonal``: the ``offset`` diagonal of the last two axes."""
    return _products.einsum("...ii->...i", _diagonal_block(x, offset, "diagonal"))


@function(_numpy.linalg.trace)
def trace(x, /, *, offset=0, dtype=None):
    """``numpy.linalg.trace``: the sum of the ``offset`` diagonal of the last two axes (in
    ``dtype``; small integers sum as the platform integer, as NumPy's sum)."""
    from ._ufuncs import astype
    x = _diagonal_block(x, offset, "trace")
    target = _numpy.dtype(dtype) if dtype is not None else _numpy.sum(_numpy.zeros(0, x.dtype)).dtype
    if target != x.dtype:
        x = astype(x, target)
    return _products.einsum("...ii->...", x)


@function(_numpy.linalg.tensorinv)
def tensorinv(a, ind=2):
    """``numpy.linalg.tensorinv``: the inverse of ``a`` seen as a matrix of its first ``ind``
    axes by the others."""
    a = _float(a, "tensorinv")
    if ind <= 0:
        raise located("tensorinv: invalid ind argument", ValueError)
    rows = math.prod(a.shape[ind:])
    inverse = inv(_reshape(a, (rows, -1) if rows else (0, 0)))
    return _reshape(inverse, a.shape[ind:] + a.shape[:ind])


@function(_numpy.linalg.tensorsolve)
def tensorsolve(a, b, axes=None):
    """``numpy.linalg.tensorsolve``: x with ``tensordot(a, x, x.ndim) == b``."""
    a, b = _float(a, "tensorsolve"), _float(b, "tensorsolve")
    if axes is not None:
        order = list(range(a.ndim))
        for k in axes:
            order.remove(k)
            order.insert(a.ndim, k)
        from ._shape import transpose
        a = transpose(a, order)
    old = a.shape[-(a.ndim - b.ndim):]
    size = math.prod(old)
    if a.size != size ** 2:
        raise located(f"tensorsolve: a of shape {a.shape} and b of shape {b.shape} do not satisfy "
                      f"prod(a.shape[b.ndim:]) == prod(a.shape[:b.ndim])", LinAlgShapeError)
    x = solve(_reshape(a, (size, size)), _reshape(b, (b.size,)))
    return _reshape(x, old)


def __getattr__(name):
    """Everything else (``eig``, ``eigvals``, ``LinAlgError`` ...) is NumPy's own."""
    try:
        return getattr(_numpy.linalg, name)
    except AttributeError:
        raise AttributeError(f"module 'neuronika.numpy.linalg' has no attribute {name!r}") from None
