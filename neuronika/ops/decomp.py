"""Matrix functions and decompositions, batched over leading axes as in NumPy 2.

Every forward is the array-API standard's ``linalg`` function (NumPy's own for NumPy
arrays, so values are NumPy's to the bit); where NumPy reads the other triangle than the
standard does (cholesky ``upper=True``, eigh ``UPLO='U'``, pinv ``hermitian=True``) the
matrix is transposed first. ``eig``, ``eigvals`` and ``lstsq``, which the standard does not
have, run on NumPy's API only. Every adjoint is written in ``neuronika.numpy`` functions
(matmul, ``matrix_transpose``, ``linalg.solve`` / ``inv``, ``where`` with constant masks,
index), so gradients can be differentiated again. The closed forms:

- inv: ``-Y^T dY Y^T``; det: ``dy det(A) A^-T``; slogdet: ``dy A^-T``; solve:
  ``db = A^-T dY``, ``dA = -db Y^T`` (Giles 2008).
- cholesky: Murray 2016, ``S = L^-T Phi(L^T dL) L^-1`` (Phi: the lower triangle, its
  diagonal halved).
- eigh: Giles 2008, ``S = V (diag(dw) + F o (V^T dV)) V^T``, ``F_ij = 1 / (w_j - w_i)``;
  the eigenvalues must be distinct (F is infinite otherwise).
- svd: Townsend 2016 (thin SVD, distinct nonzero singular values).
- qr: Walter & Lehmann 2018 / Seeger et al. 2017, ``dA = (dQ + Q copyltu(M)) R^-T``,
  ``M = R dR^T - dQ^T Q``; a wide matrix splits as ``[X | Y]``, ``X = Q R1``.
- pinv: Golub & Pereyra 1973, valid where the rank does not change; lstsq through it.

cholesky and eigh read one triangle only (NumPy's ``UPLO`` / ``upper``): their
gradients are those of the function NumPy computes, so they live on that triangle
(the off-diagonal entries count twice, for the mirrored element). Differentiate
``cholesky((a + a.T) / 2)`` for a symmetric gradient.

Several outputs. An op has one output here, so a decomposition whose parts are
all needed by its adjoint packs them into one array and the ``neuronika.numpy``
function takes the parts out with index ops (views):

- ``eigh`` (..., n + 1, n): the eigenvalues as row 0, the eigenvectors below;
- ``svd`` (..., m + 1 + n, k): U (m rows), the singular values (one row), V (n rows);
- ``qr`` of an (m, n) matrix: ``[Q; R]`` (m + n, n) when m >= n, ``[Q | R]`` (m, m + n)
  when m < n.

The adjoint reads the packed output and the packed gradient (zero where a part was
not used). Where only part of a result is wanted, a separate op computes just that
(``eigvalsh``, ``svdvals``, slogdet's sign and log-determinant) and its adjoint
recomputes the factors it needs: the cheap forward is the common case.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..backend import NUMPY_API
from . import Grad, batching, broadcast_shapes, declare

#: where these ops run: NumPy's API (NumPy, CuPy); another library's arrays are refused by name
_NUMPY_API_ONLY = dict(families=NUMPY_API,
                       needs="numpy.linalg's eig, eigvals and lstsq are not in the array-API standard's "
                             "linalg extension")


def _inexact(inputs, attrs):
    """NumPy's linalg result dtype: float and complex inputs keep theirs, others give float64."""
    dtype = np.result_type(*[n.dtype for n in inputs])
    return dtype if dtype.kind in "fc" else np.dtype(np.float64)


def _square(shape, *attrs):
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ShapeError(f"expected square matrices (..., n, n), got shape {shape}")
    return shape


def _matrix(shape, *attrs):
    if len(shape) < 2:
        raise ShapeError(f"expected matrices (..., m, n), got shape {shape}")
    return shape


def _mt(name, ndim):
    """Source for ``name`` with its last two axes swapped (a view)."""
    return f"{name}.T" if ndim == 2 else f"xp.matrix_transpose({name})"


def _lower(upper, s, n, ndim):
    """Source of the gradient of a function of the symmetric matrix NumPy reads from one
    triangle of ``x``, given ``s`` (the adjoint with respect to that symmetric matrix):
    ``tril(S) + tril(S^T, -1)`` (``triu`` for the upper triangle)."""
    incl, strict = f"xp.tril(xp.ones(({n}, {n}), dtype=dtype))", f"xp.tril(xp.ones(({n}, {n}), dtype=dtype), k=-1)"
    if upper:
        incl, strict = f"{incl}.T", f"{strict}.T"
    return f"{s} * {incl} + {_mt(s, ndim)} * {strict}"


def _hermitian_part(upper, s, n, ndim, complex_):
    """``_lower`` for a real matrix; for a complex one, the gradient (HIPS autograd's
    convention) of a function of the Hermitian matrix NumPy reads from one triangle, given
    ``s``, the adjoint with respect to that Hermitian matrix in the conjugate convention:
    ``conj(S_ij) + S_ji`` on the strict triangle, ``Re(S_ii)`` on the diagonal (whose
    imaginary part NumPy ignores)."""
    if not complex_:
        return _lower(upper, s, n, ndim)
    strict = f"xp.tril(xp.ones(({n}, {n}), dtype=dtype), k=-1)" + (".T" if upper else "")
    return (f"(xp.conj({s}) + {_mt(s, ndim)}) * {strict} "
            f"+ xp.eye({n}, dtype=dtype) * xp.real({s})")


# ---- inverse, determinants, solve ---------------------------------------------------------------

def _inv_grad(ctx):
    yt = _mt("y", len(ctx.shape))
    return f"-({yt} @ dy @ {yt})"


INV = declare("inv", ("x",), "xp.linalg.inv(x)", {"x": _inv_grad}, shape=_square, dtype=_inexact,
              batch=batching.stacked, doc="matrix inverse; raises NumPy's LinAlgError on a singular matrix")


def _det_grad(ctx):
    inv_t = _mt("xp.linalg.inv(x)", len(ctx.shapes["x"]))
    if not ctx.shape:
        return f"dy * y * {inv_t}"
    return f"(dy * y)[..., None, None] * {inv_t}"


DET = declare("det", ("x",), "xp.linalg.det(x)", {"x": _det_grad},
              shape=lambda s: _square(s)[:-2], dtype=_inexact,
              batch=batching.stacked, doc="determinant; its gradient det(A) A^-T needs A invertible")

def _logabsdet_grad(ctx):
    dy = "dy[..., None, None]" if ctx.shape else "dy"
    return f"{dy} * {_mt('xp.linalg.inv(x)', len(ctx.shapes['x']))}"


def _real_inexact(inputs, attrs):
    """A real result of a possibly complex matrix: float64 for complex128, float32 for complex64."""
    return np.dtype(_inexact(inputs, attrs).char.lower())


LOGABSDET = declare("logabsdet", ("x",), "xp.linalg.slogdet(x)[1]",
                    {"x": _logabsdet_grad},
                    shape=lambda s: _square(s)[:-2],
                    dtype=_real_inexact,
                    batch=batching.stacked, doc="log |det A| (slogdet's second result); gradient A^-T")

SLOGDET_SIGN = declare("slogdet_sign", ("x",), "xp.linalg.slogdet(x)[0]", {}, n_differentiable=0,
                       shape=lambda s: _square(s)[:-2], dtype=_inexact,
                       batch=batching.stacked, doc="the sign of det A (slogdet's first result): no gradient")


def _solve_shape(a, b):
    _square(a)
    m = a[-1]
    if len(b) == 1:
        if b[0] != m:
            raise ShapeError(f"a of shape {a} and b of shape {b} do not fit: b needs {m} rows")
        return a[:-1]
    if len(b) < 2 or b[-2] != m:
        raise ShapeError(f"a of shape {a} and b of shape {b} do not fit: b must be (M,) or "
                         f"(..., M, K) with M = {m}")
    try:
        batch = broadcast_shapes(a[:-2], b[:-2])
    except ShapeError:
        raise ShapeError(f"the batch dimensions of a {a} and b {b} do not broadcast together") from None
    return batch + b[-2:]


def _solve_db(ctx):
    """Source of b's adjoint ``solve(a^T, dy)``, of the output's shape (batch axes unreduced)."""
    a, b = ctx.shapes["a"], ctx.shapes["b"]
    at = _mt("a", len(a))
    if len(b) == 1 and len(a) > 2:
        return f"xp.linalg.solve({at}, dy[..., None])[..., 0]"
    return f"xp.linalg.solve({at}, dy)"


def _solve_grad_b(ctx):
    return Grad(_solve_db(ctx), shape=ctx.shape)


def _solve_grad_a(ctx):
    src = _solve_db(ctx)
    if len(ctx.shapes["b"]) == 1:
        return Grad(f"-({src})[..., :, None] * y[..., None, :]", shape=ctx.shape + ctx.shape[-1:])
    return Grad(f"-({src} @ {_mt('y', len(ctx.shape))})", shape=ctx.shape[:-1] + ctx.shape[-2:-1])


SOLVE = declare("solve", ("a", "b"), "xp.linalg.solve(a, b)", {"a": _solve_grad_a, "b": _solve_grad_b},
                shape=_solve_shape, dtype=_inexact,
                doc="the solution of a x = b (b of shape (M,) or (..., M, K), as NumPy 2)")


# ---- cholesky ---------------------------------------------------------------------------------

def _cholesky_forward(ctx):
    if not ctx.upper:
        return "xp.linalg.cholesky(x)"
    # U = L^H for the L of the matrix read from x's upper triangle (NumPy's upper=True; the
    # standard's reads the lower one, whatever upper says)
    ndim = len(ctx.shapes["x"])
    if ctx.dtypes["x"].kind == "c":
        return f"xp.conj({_mt(f'xp.linalg.cholesky(xp.conj({_mt(chr(120), ndim)}))', ndim)})"
    return _mt(f"xp.linalg.cholesky({_mt('x', ndim)})", ndim)


def _cholesky_grad(ctx):
    n, ndim = ctx.shape[-1], len(ctx.shape)
    if ctx.upper:        # U = L^T: dL = dU^T, L^-1 = (U^-1)^T
        lines = [f"p = (y @ {_mt('dy', ndim)}) * (xp.tril(xp.ones(({n}, {n}), dtype=dtype)) - 0.5 * xp.eye({n}, dtype=dtype))",
                 "u = xp.linalg.inv(y)",
                 f"s = u @ p @ {_mt('u', ndim)}"]
    else:
        lines = [f"p = ({_mt('y', ndim)} @ dy) * (xp.tril(xp.ones(({n}, {n}), dtype=dtype)) - 0.5 * xp.eye({n}, dtype=dtype))",
                 "u = xp.linalg.inv(y)",
                 f"s = {_mt('u', ndim)} @ p @ u"]
    lines.append(f"dx = {_lower(ctx.upper, 's', n, ndim)}")
    return "\n".join(lines)


CHOLESKY = declare("cholesky", ("x",), _cholesky_forward, {"x": _cholesky_grad}, attrs=("upper",),
                   shape=_square, dtype=_inexact,
                   batch=batching.stacked, doc="Cholesky factor (lower, or upper with upper=True) of a positive definite "
                       "matrix; reads one triangle, as NumPy")


# ---- QR ---------------------------------------------------------------------------------------

def _qr_shape(s, *attrs):
    _matrix(s)
    m, n = s[-2:]
    return s[:-2] + ((m + n, n) if m >= n else (m, m + n))


def _qr_forward(ctx):
    m, n = ctx.shapes["x"][-2:]
    return f"qq, rr = xp.linalg.qr(x)\ny = xp.concat((qq, rr), axis={-2 if m >= n else -1})"


def _copyltu(m, k, ndim):
    """Source of the symmetric matrix with ``m``'s lower triangle."""
    return f"{m} * xp.tril(xp.ones(({k}, {k}), dtype=dtype)) + " + _mt(f"({m} * xp.tril(xp.ones(({k}, {k}), dtype=dtype), k=-1))", ndim)


def _qr_square_grad(q, r, dq, dr, k, ndim):
    """Statements for ``g``, the adjoint of A = QR with R square (k x k)."""
    return [f"mm = {r} @ {_mt(dr, ndim)} - {_mt(dq, ndim)} @ {q}",
            f"bb = {dq} + {q} @ ({_copyltu('mm', k, ndim)})",
            "g = " + _mt(f"xp.linalg.solve({r}, {_mt('bb', ndim)})", ndim)]


def _qr_grad(ctx):
    m, n = ctx.shapes["x"][-2:]
    ndim = len(ctx.shape)
    if m >= n:
        lines = _qr_square_grad(f"y[..., :{m}, :]", f"y[..., {m}:, :]", f"dy[..., :{m}, :]",
                                f"dy[..., {m}:, :]", n, ndim)
        return "\n".join(lines + ["dx = g"])
    # A = [X | Y] with X = Q R1 (m x m), Y = Q R2
    lines = [f"q = y[..., :, :{m}]",
             f"dr2 = dy[..., :, {2 * m}:]",
             f"dq = dy[..., :, :{m}] + x[..., :, {m}:] @ {_mt('dr2', ndim)}"]
    lines += _qr_square_grad("q", f"y[..., :, {m}:{2 * m}]", "dq", f"dy[..., :, {m}:{2 * m}]", m, ndim)
    lines.append("dx = xp.concat((g, q @ dr2), axis=-1)")
    return "\n".join(lines)


QR = declare("qr", ("x",), _qr_forward, {"x": _qr_grad}, shape=_qr_shape, dtype=_inexact,
             batch=batching.stacked, doc="reduced QR packed as [Q; R] (m >= n) or [Q | R] (m < n); needs full rank")


# ---- symmetric eigendecomposition ------------------------------------------------------------

def _uplo(ctx):
    """The matrix the standard's eigh (which reads the lower triangle) is given for NumPy's
    ``UPLO``: for 'U', the conjugate transpose, whose lower triangle is the upper one of x."""
    if ctx.UPLO != "U":
        return "x"
    xt = _mt("x", len(ctx.shapes["x"]))
    return f"xp.conj({xt})" if ctx.dtypes["x"].kind == "c" else xt


def _eigh_forward(ctx):
    return (f"ew, ev = xp.linalg.eigh({_uplo(ctx)})\n"
            f"y = xp.concat((ew[..., None, :], ev), axis=-2)")


def _eigh_grad(ctx):
    n, ndim = ctx.shapes["x"][-1], len(ctx.shape)
    if ctx.dtype.kind != "c":
        return "\n".join([
            "w = y[..., 0, :]",
            "v = y[..., 1:, :]",
            f"e = xp.eye({n}, dtype=xp.bool)",
            "f = xp.where(e, 0, 1 / xp.where(e, 1, w[..., None, :] - w[..., :, None]))",
            f"inner = f * ({_mt('v', ndim)} @ dy[..., 1:, :]) + dy[..., 0:1, :] * xp.eye({n}, dtype=dtype)",
            f"s = v @ inner @ {_mt('v', ndim)}",
            f"dx = {_lower(ctx.UPLO == 'U', 's', n, ndim)}"])
    # Hermitian: S = V (diag(dw) + F o (V^H conj(dV))) V^H in the conjugate convention; the
    # phase of each eigenvector is free, so the gradient assumes a loss that ignores it.
    return "\n".join([
        "w = xp.real(y[..., 0, :])",
        "v = y[..., 1:, :]",
        f"vh = xp.conj({_mt('v', ndim)})",
        f"e = xp.eye({n}, dtype=xp.bool)",
        "f = xp.where(e, 0, 1 / xp.where(e, 1, w[..., None, :] - w[..., :, None]))",
        f"inner = f * (vh @ xp.conj(dy[..., 1:, :])) + xp.real(dy[..., 0:1, :]) * xp.eye({n}, dtype=dtype)",
        "s = v @ inner @ vh",
        f"dx = {_hermitian_part(ctx.UPLO == 'U', 's', n, ndim, True)}"])


EIGH = declare("eigh", ("x",), _eigh_forward, {"x": _eigh_grad}, attrs=("UPLO",),
               shape=lambda s, *_: _square(s)[:-2] + (s[-1] + 1, s[-1]), dtype=_inexact,
               batch=batching.stacked, doc="eigenvalues (row 0) and eigenvectors (rows 1..n) of a symmetric matrix, packed; "
                   "the gradient needs distinct eigenvalues")


def _eigvalsh_grad(ctx):
    n, ndim = ctx.shapes["x"][-1], len(ctx.shapes["x"])
    complex_ = ctx.dtypes["x"].kind == "c"
    vh = f"xp.conj({_mt('v', ndim)})" if complex_ else _mt("v", ndim)
    return "\n".join([
        f"v = xp.linalg.eigh({_uplo(ctx)})[1]",
        f"s = (v * dy[..., None, :]) @ {vh}",
        f"dx = {_hermitian_part(ctx.UPLO == 'U', 's', n, ndim, complex_)}"])


EIGVALSH = declare("eigvalsh", ("x",), lambda ctx: f"xp.linalg.eigvalsh({_uplo(ctx)})",
                   {"x": _eigvalsh_grad}, attrs=("UPLO",), shape=lambda s, *_: _square(s)[:-1],
                   dtype=_real_inexact, batch=batching.stacked,
                   doc="eigenvalues of a symmetric (Hermitian) matrix, ascending: real")


# ---- general eigendecomposition ----------------------------------------------------------------

def _complex_dtype(inputs, attrs):
    """eig's result: complex, of the input's precision (float32 -> complex64)."""
    return np.result_type(_inexact(inputs, attrs), np.complex64)


def _eig_grad(ctx):
    """A V = V W, columns of V of unit norm (NumPy's). In the conjugate convention, with
    ``Gw = conj(dw)``, ``Gv = conj(dV)``, ``M = V^H Gv`` and ``F_ij = 1 / (w_j - w_i)``:
    ``G = V^-H (diag(Gw) + conj(F) o (M - V^H V diag(M))) V^H``; the result is ``conj(G)``
    (its real part, for a real matrix). The phases of the eigenvectors are free: the gradient
    assumes a loss that ignores them, and distinct eigenvalues."""
    n, ndim = ctx.shapes["x"][-1], len(ctx.shape)
    return "\n".join([
        "w = y[..., 0, :]",
        "v = y[..., 1:, :]",
        f"vh = xp.conj({_mt('v', ndim)})",
        f"e = xp.eye({n}, dtype=xp.bool)",
        "f = xp.where(e, 0, 1 / xp.where(e, 1, w[..., None, :] - w[..., :, None]))",
        "mm = vh @ xp.conj(dy[..., 1:, :])",
        f"z = xp.conj(f) * (mm - (vh @ v) @ xp.where(e, mm, 0)) "
        f"+ xp.conj(dy[..., 0:1, :]) * xp.eye({n}, dtype=dtype)",
        "dx = xp.conj(xp.linalg.solve(vh, z @ vh))"])


EIG = declare("eig", ("x",), "ew, ev = xp.linalg.eig(x)\n"
                             "y = xp.concatenate((ew[..., None, :], ev), axis=-2, dtype=dtype)",
              {"x": _eig_grad}, shape=lambda s: _square(s)[:-2] + (s[-1] + 1, s[-1]),
              dtype=_complex_dtype,
              batch=batching.stacked, doc="eigenvalues (row 0) and unit eigenvectors (rows 1..n) of a square matrix, packed, "
                  "complex; the gradient needs distinct eigenvalues", **_NUMPY_API_ONLY)


def _eigvals_grad(ctx):
    ndim = len(ctx.shapes["x"])
    return "\n".join([
        "v = xp.linalg.eig(x)[1]",
        f"vh = xp.conj({_mt('v', ndim)})",
        "dx = xp.conj(xp.linalg.solve(vh, xp.conj(dy[..., :, None]) * vh))"])


EIGVALS = declare("eigvals", ("x",), "xp.asarray(xp.linalg.eigvals(x), dtype=dtype)",
                  {"x": _eigvals_grad}, shape=lambda s: _square(s)[:-1], dtype=_complex_dtype,
                  batch=batching.stacked, doc="eigenvalues of a square matrix, complex; the gradient V^-H diag(conj(dw)) V^H "
                      "(conjugated) needs them distinct", **_NUMPY_API_ONLY)


# ---- singular value decomposition -----------------------------------------------------------

def _svd_shape(s, *attrs):
    _matrix(s)
    m, n = s[-2:]
    return s[:-2] + (m + 1 + n, min(m, n))


def _svd_grad(ctx):
    m, n = ctx.shapes["x"][-2:]
    k, ndim = min(m, n), len(ctx.shape)
    if ctx.dtype.kind == "c":
        return _svd_grad_complex(m, n, k, ndim)
    lines = [f"u = y[..., :{m}, :]", f"s = y[..., {m}, :]", f"v = y[..., {m + 1}:, :]",
             f"du = dy[..., :{m}, :]", f"dv = dy[..., {m + 1}:, :]",
             f"e = xp.eye({k}, dtype=xp.bool)",
             "s2 = s * s",
             "f = xp.where(e, 0, 1 / xp.where(e, 1, s2[..., None, :] - s2[..., :, None]))",
             f"uu = {_mt('u', ndim)} @ du",
             f"vv = {_mt('v', ndim)} @ dv",
             f"j = f * (uu - {_mt('uu', ndim)})",
             f"kk = f * (vv - {_mt('vv', ndim)})",
             f"inner = j * s[..., None, :] + dy[..., {m}:{m + 1}, :] * xp.eye({k}, dtype=dtype) "
             f"+ s[..., :, None] * kk",
             "left = u @ inner"]
    if m > k:
        lines.append("left = left + (du - u @ uu) / s[..., None, :]")
    lines.append(f"dx = left @ {_mt('v', ndim)}")
    if n > k:
        dvt = _mt("dv", ndim)
        lines.append(f"dx = dx + (u / s[..., None, :]) @ ({dvt} - ({dvt} @ v) @ {_mt('v', ndim)})")
    return "\n".join(lines)


def _svd_grad_complex(m, n, k, ndim):
    """The adjoint of the complex thin SVD. The packed V block is ``w = Vh^T = conj(V)``. In
    the conjugate convention (G = dL/dRe + 1j dL/dIm) with ``Gu = conj(dU)``, ``Gv = dw``,
    ``M = U^H Gu``, ``K = V^H Gv``:
    ``G = U (F o (M - M^H) S + diag(ds) + S F o (K - K^H) + 1j Im(diag M) / S) V^H
    + (I - U U^H) Gu S^-1 V^H + U S^-1 Gv^H (I - V V^H)``; the result is ``conj(G)``. The
    phases of the singular vectors are free: the gradient assumes a loss that ignores them."""
    lines = [f"u = y[..., :{m}, :]", f"s = xp.real(y[..., {m}, :])", f"w = y[..., {m + 1}:, :]",
             f"gu = xp.conj(dy[..., :{m}, :])", f"gv = dy[..., {m + 1}:, :]",
             f"uh = xp.conj({_mt('u', ndim)})",
             f"e = xp.eye({k}, dtype=xp.bool)",
             "s2 = s * s",
             "f = xp.where(e, 0, 1 / xp.where(e, 1, s2[..., None, :] - s2[..., :, None]))",
             "mm = uh @ gu",
             f"kk = {_mt('w', ndim)} @ gv",
             f"inner = (f * (mm - xp.conj({_mt('mm', ndim)}))) * s[..., None, :] "
             f"+ xp.real(dy[..., {m}:{m + 1}, :]) * xp.eye({k}, dtype=dtype) "
             f"+ s[..., :, None] * (f * (kk - xp.conj({_mt('kk', ndim)}))) "
             f"+ 1j * xp.where(e, xp.imag(mm), 0) / s[..., None, :]",
             "left = u @ inner"]
    if m > k:
        lines.append("left = left + (gu - u @ mm) / s[..., None, :]")
    lines.append(f"g = left @ {_mt('w', ndim)}")
    if n > k:
        lines.append(f"gvh = xp.conj({_mt('gv', ndim)})")
        lines.append(f"g = g + (u / s[..., None, :]) @ (gvh - (gvh @ xp.conj(w)) @ {_mt('w', ndim)})")
    lines.append("dx = xp.conj(g)")
    return "\n".join(lines)


SVD = declare("svd", ("x",), "su, ss, svh = xp.linalg.svd(x, full_matrices=False)\n"
                             "y = xp.concat((su, ss[..., None, :], xp.matrix_transpose(svh)), axis=-2)",
              {"x": _svd_grad}, shape=_svd_shape, dtype=_inexact,
              batch=batching.stacked, doc="thin SVD packed as [U; s; V] (V = Vh^T); the gradient needs distinct nonzero "
                  "singular values")

SVDVALS = declare("svdvals", ("x",), "xp.linalg.svdvals(x)",
                  {"x": lambda ctx: "u, s, vh = xp.linalg.svd(x, full_matrices=False)\n" + (
                      "dx = xp.conj((u * dy[..., None, :]) @ vh)" if ctx.dtypes["x"].kind == "c"
                      else "dx = (u * dy[..., None, :]) @ vh")},
                  shape=lambda s: _matrix(s)[:-2] + (min(s[-2:]),),
                  dtype=lambda inputs, attrs: np.dtype(_inexact(inputs, attrs).char.lower()),
                  batch=batching.stacked, doc="singular values, descending; the gradient needs them distinct")


# ---- pseudo-inverse, least squares, rank ------------------------------------------------------

def _pinv_forward(ctx):
    if not ctx.hermitian:
        return "xp.linalg.pinv(x, rtol=rcond)"
    # NumPy's hermitian=True reads the lower triangle: that Hermitian matrix, through the SVD
    n, ndim = ctx.shapes["x"][-1], len(ctx.shapes["x"])
    strict = f"(x * xp.tril(xp.ones(({n}, {n}), dtype=dtype), k=-1))"
    mirrored = _mt(strict, ndim)
    if ctx.dtypes["x"].kind == "c":
        mirrored = f"xp.conj({mirrored})"
    return f"xp.linalg.pinv(x * xp.tril(xp.ones(({n}, {n}), dtype=dtype)) + {mirrored}, rtol=rcond)"


def _pinv_grad(ctx):
    n, ndim = ctx.shapes["x"][-1], len(ctx.shape)
    yt, dyt = _mt("y", ndim), _mt("dy", ndim)
    lines, a = [], "x"
    if ctx.hermitian:        # NumPy reads the lower triangle: the symmetric matrix it sees
        lines.append(f"a = {_copyltu('x', n, ndim)}")
        a = "a"
    lines += [f"m2 = {dyt} @ (y @ {yt})",
              f"m3 = ({yt} @ y) @ {dyt}",
              f"s = -({yt} @ dy @ {yt}) + m2 - {a} @ (y @ m2) + m3 - (m3 @ y) @ {a}"]
    lines.append(f"dx = {_lower(False, 's', n, ndim)}" if ctx.hermitian else "dx = s")
    return "\n".join(lines)


PINV = declare("pinv", ("x",), _pinv_forward, {"x": _pinv_grad}, attrs=("rcond", "hermitian"),
               shape=lambda s, *_: _matrix(s)[:-2] + (s[-1], s[-2]), dtype=_inexact,
               batch=batching.stacked, doc="Moore-Penrose pseudo-inverse; the gradient holds where the rank is constant")


def _lstsq_shape(a, b, rcond):
    if len(a) != 2:
        raise ShapeError(f"a must be a 2-D matrix, got shape {a}")
    if len(b) not in (1, 2) or b[0] != a[0]:
        raise ShapeError(f"a of shape {a} and b of shape {b} do not fit: b must be ({a[0]},) or "
                         f"({a[0]}, K)")
    return (a[1],) + b[1:]


def _lstsq_grad(ctx, slot):
    pinv = "xp.linalg.pinv(a)" if ctx.rcond is None else "xp.linalg.pinv(a, rcond=rcond)"
    lines = [f"p = {pinv}", "db = p.T @ dy"]
    if slot == "b":
        return "\n".join(lines + ["dx = db"])
    if len(ctx.shapes["b"]) == 1:
        lines.append("dx = (p @ db) * (b - a @ y)[:, None] + (dy - a.T @ db) * (p.T @ y)[:, None] "
                     "- db[:, None] * y")
    else:
        lines.append("dx = (b - a @ y) @ (p @ db).T + (p.T @ y) @ (dy - a.T @ db).T - db @ y.T")
    return "\n".join(lines)


LSTSQ = declare("lstsq", ("a", "b"), lambda ctx: "xp.linalg.lstsq(a, b, rcond=rcond)[0]",
                {"a": lambda ctx: _lstsq_grad(ctx, "a"), "b": lambda ctx: _lstsq_grad(ctx, "b")},
                attrs=("rcond",), shape=_lstsq_shape, dtype=_inexact,
                doc="the least-squares solution of a x = b; the gradient holds where the rank "
                    "of a is constant", **_NUMPY_API_ONLY)


def _rank_forward(ctx):
    args = "".join(f", {name}={name}" for name in ("tol", "rtol") if getattr(ctx, name) is not None)
    if ctx.hermitian:
        args += ", hermitian=True"
    return f"xp.asarray(xp.linalg.matrix_rank(x{args}))"


MATRIX_RANK = declare("matrix_rank", ("x",), _rank_forward, {}, attrs=("tol", "rtol", "hermitian"),
                      n_differentiable=0, shape=lambda s, *attrs: _matrix(s)[:-2],
                      dtype=lambda inputs, attrs: np.dtype(np.intp),
                      batch=batching.stacked, doc="the number of singular values above the tolerance: an integer, no gradient")

__all__ = [name for name, value in dict(globals()).items() if name.isupper()]
