"""Products and linear algebra: values against NumPy, NumPy's dispatch, gradients of
first and second order, batched where NumPy batches; einsum against NumPy over many
subscripts; closed forms; errors."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika.errors import ShapeError
from neuronika.graph import walk

from .cases import Case, away, rng, spd, uniform


def cuniform(shape, lo=-2.0, hi=2.0, seed=0):
    return uniform(shape, lo, hi, seed) + 1j * uniform(shape, lo, hi, seed + 100)


# ---- inputs -----------------------------------------------------------------------------------

def dominant(n, batch=(), seed=0):
    """Diagonally dominant (well-conditioned, invertible) matrices, not symmetric."""
    return uniform(batch + (n, n), -1.0, 1.0, seed) + 2.0 * n * np.eye(n)


def orthogonal(n, batch=(), seed=0):
    q, r = np.linalg.qr(rng(seed).standard_normal(batch + (n, n)))
    return q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


def separated(n, batch=(), seed=0, gap=1.5, symmetric=True):
    """Symmetric matrices with eigenvalues at least ``gap`` apart (not symmetric when
    ``symmetric=False``: the other triangle is noise that eigh must ignore)."""
    w = (np.arange(n) - n / 2.0) * gap + 0.2
    q = orthogonal(n, batch, seed)
    a = (q * w) @ np.swapaxes(q, -1, -2)
    if not symmetric:
        a = a + np.triu(uniform(batch + (n, n), seed=seed + 7), 1)
    return a


def singular_separated(m, n, batch=(), seed=0):
    """(m, n) matrices with singular values k, k - 1, ..., 1 (times 1.3)."""
    k = min(m, n)
    u = orthogonal(m, batch, seed)[..., :, :k]
    v = orthogonal(n, batch, seed + 1)[..., :, :k]
    s = 1.3 * np.arange(k, 0, -1.0)
    return (u * s) @ np.swapaxes(v, -1, -2)


def unitary(n, batch=(), seed=0):
    z = rng(seed).standard_normal(batch + (n, n)) + 1j * rng(seed + 1).standard_normal(batch + (n, n))
    q, r = np.linalg.qr(z)
    d = np.diagonal(r, axis1=-2, axis2=-1)
    return q * (d / np.abs(d))[..., None, :]


def hermitian_separated(n, batch=(), seed=0, gap=1.5, hermitian=True):
    """Hermitian matrices with eigenvalues ``gap`` apart (with noise in the upper triangle, which
    eigh must ignore, when ``hermitian=False``)."""
    w = (np.arange(n) - n / 2.0) * gap + 0.2
    q = unitary(n, batch, seed)
    a = (q * w) @ np.conj(np.swapaxes(q, -1, -2))
    if not hermitian:
        a = a + np.triu(uniform(batch + (n, n), seed=seed + 7) + 1j * uniform(batch + (n, n), seed=seed + 8), 1)
    return a


def csingular_separated(m, n, batch=(), seed=0):
    """Complex (m, n) matrices with singular values k, k - 1, ..., 1 (times 1.3)."""
    k = min(m, n)
    u = unitary(m, batch, seed)[..., :, :k]
    v = unitary(n, batch, seed + 2)[..., :, :k]
    return (u * (1.3 * np.arange(k, 0, -1.0))) @ np.conj(np.swapaxes(v, -1, -2))


def real_eigen(n, batch=(), seed=0):
    """Non-symmetric real matrices with distinct real eigenvalues."""
    p = dominant(n, batch, seed) / n
    w = (np.arange(n) - n / 2.0) * 1.5 + 0.2
    return (p * w) @ np.linalg.inv(p)


def rotation_pair(seed=0):
    """A real 3 x 3 matrix with a complex-conjugate pair of eigenvalues (and one real one)."""
    p = dominant(3, seed=seed) / 3
    block = np.array([[0.5, -1.2, 0.0], [1.2, 0.5, 0.0], [0.0, 0.0, 2.0]])
    return p @ block @ np.linalg.inv(p)


def full_rank(m, n, seed=0):
    return uniform((m, n), seed=seed) + 2.0 * np.eye(m, n)


def sym(np_, a):
    return (a + np_.swapaxes(a, -1, -2)) / 2


def quiet(fn, *args, **kwargs):
    """``fn`` with NumPy 2's deprecation warning for 2-vectors in cross silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args, **kwargs)


# ---- products -------------------------------------------------------------------------------

PRODUCTS = [
    Case("matmul", lambda np_, a, b: np_.matmul(a, b), uniform((2, 3)), uniform((3, 4), seed=1)),
    Case("matmul", lambda np_, a, b: np_.matmul(a, b), uniform((2, 2, 3)), uniform((3,), seed=1),
         id="matmul-batched-vector"),
    Case("matmul", lambda np_, a, b: a @ b, uniform((3,)), uniform((2, 3, 4), seed=1), id="matmul-operator"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((2, 3)), uniform((3,), seed=1)),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((2, 3, 4)), uniform((5, 4, 2), seed=1),
         id="dot-nd"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform(()), uniform((3,), seed=1), id="dot-scalar"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((2, 3, 4)), uniform((4,), seed=1), id="dot-nd-vector"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((4,)), uniform((2, 4, 3), seed=1), id="dot-vector-nd"),
    Case("dot", lambda np_, a, b: np_.dot(a, b), uniform((3,)), uniform((3,), seed=1), id="dot-vv"),
    Case("dot", lambda np_, a, b: a.dot(b), uniform((2, 3)), uniform((3, 2), seed=1), id="dot-method"),
    Case("vdot", lambda np_, a, b: np_.vdot(a, b), uniform((2, 3)), uniform((3, 2), seed=1)),
    Case("vdot", lambda np_, a, b: np_.vdot(a, b), uniform((4,)), uniform((4,), seed=1)),
    Case("vdot", lambda np_, a, b: np_.vdot(a, b), uniform((2,)) + 1j * uniform((2,), seed=2),
         uniform((2,), seed=1) - 1j * uniform((2,), seed=3), id="vdot-complex"),
    Case("inner", lambda np_, a, b: np_.inner(a, b), uniform((3,)), uniform((3,), seed=1)),
    Case("inner", lambda np_, a, b: np_.inner(a, b), uniform((2, 3)), uniform((4, 3), seed=1)),
    Case("inner", lambda np_, a, b: np_.inner(a, b), uniform((2, 2, 3)), uniform((3,), seed=1)),
    Case("inner", lambda np_, a, b: np_.inner(a, b), uniform(()), uniform((2, 3), seed=1), id="inner-scalar"),
    Case("outer", lambda np_, a, b: np_.outer(a, b), uniform((3,)), uniform((4,), seed=1)),
    Case("outer", lambda np_, a, b: np_.outer(a, b), uniform((2, 2)), uniform((3,), seed=1)),
    Case("tensordot", lambda np_, a, b: np_.tensordot(a, b), uniform((2, 3, 4)), uniform((3, 4, 2), seed=1)),
    Case("tensordot", lambda np_, a, b: np_.tensordot(a, b, axes=1), uniform((2, 3)), uniform((3, 4), seed=1)),
    Case("tensordot", lambda np_, a, b: np_.tensordot(a, b, axes=0), uniform((2,)), uniform((3, 2), seed=1),
         id="tensordot-outer"),
    Case("tensordot", lambda np_, a, b: np_.tensordot(a, b, axes=([1, 0], [0, 2])),
         uniform((3, 4, 2)), uniform((4, 5, 3), seed=1), id="tensordot-pairs"),
    Case("tensordot", lambda np_, a, b: np_.tensordot(a, b, axes=(2, 0)), uniform((2, 3, 4)),
         uniform((4, 2), seed=1), id="tensordot-int-pair"),
    Case("kron", lambda np_, a, b: np_.kron(a, b), uniform((2, 3)), uniform((2, 2), seed=1)),
    Case("kron", lambda np_, a, b: np_.kron(a, b), uniform((3,)), uniform((2, 2), seed=1)),
    Case("kron", lambda np_, a, b: np_.kron(a, b), uniform((2, 1, 2)), uniform((3,), seed=1)),
    Case("kron", lambda np_, a, b: np_.kron(a, b), uniform(()), uniform((2,), seed=1)),
    Case("cross", lambda np_, a, b: np_.cross(a, b), uniform((3,)), uniform((3,), seed=1)),
    Case("cross", lambda np_, a, b: np_.cross(a, b), uniform((4, 3)), uniform((3,), seed=1)),
    Case("cross", lambda np_, a, b: np_.cross(a, b, axisa=0, axisb=1, axisc=0), uniform((3, 2)),
         uniform((2, 3), seed=1), id="cross-axes"),
    Case("cross", lambda np_, a, b: np_.cross(a, b, axis=0), uniform((3, 2)), uniform((3, 1), seed=1),
         id="cross-axis"),
    Case("cross", lambda np_, a, b: quiet(np_.cross, a, b), uniform((2, 2)), uniform((2, 2), seed=1), id="cross-2d"),
    Case("cross", lambda np_, a, b: quiet(np_.cross, a, b), uniform((2,)), uniform((2, 3), seed=1), id="cross-2-3"),
    Case("cross", lambda np_, a, b: quiet(np_.cross, a, b), uniform((3,)), uniform((2,), seed=1), id="cross-3-2"),
    Case("vecdot", lambda np_, a, b: np_.vecdot(a, b), uniform((2, 3)), uniform((3,), seed=1)),
    Case("vecdot", lambda np_, a, b: np_.vecdot(a, b, axis=0), uniform((3, 2)), uniform((3,), seed=1)),
    Case("vecdot", lambda np_, a, b: np_.vecdot(a, b, axis=1, keepdims=True), uniform((2, 3, 2)),
         uniform((2, 3, 1), seed=1)),
    Case("vecdot", lambda np_, a, b: np_.vecdot(a, b), uniform((2,)) + 1j * uniform((2,), seed=2),
         uniform((3, 2), seed=1), id="vecdot-complex"),
    Case("matvec", lambda np_, a, b: np_.matvec(a, b), uniform((2, 3, 4)), uniform((4,), seed=1)),
    Case("matvec", lambda np_, a, b: np_.matvec(a, b), uniform((3, 4)), uniform((2, 4), seed=1)),
    Case("vecmat", lambda np_, a, b: np_.vecmat(a, b), uniform((3,)), uniform((2, 3, 4), seed=1)),
    Case("vecmat", lambda np_, a, b: np_.vecmat(a, b), uniform((2, 3)) + 1j * uniform((2, 3), seed=3),
         uniform((3, 4), seed=1), id="vecmat-complex"),
    # zero-size operands
    Case("matmul", lambda np_, a, b: np_.matmul(a, b), uniform((0, 3)), uniform((3, 4), seed=1)),
    Case("tensordot", lambda np_, a, b: np_.tensordot(a, b), uniform((0, 3)), uniform((0, 3), seed=1)),
]

#: einsum subscripts against NumPy: (subscripts, operand shapes)
EINSUM = [
    ("ij,jk->ik", (2, 3), (3, 4)),                 # matrix product (matmul)
    ("ij,jk", (2, 3), (3, 4)),                     # implicit output
    ("bij,bjk->bik", (2, 3, 4), (2, 4, 5)),        # batched (matmul)
    ("bij,bkj->bik", (2, 3, 4), (2, 5, 4)),        # batched, transposed operand
    ("ij,kj->ki", (2, 3), (4, 3)),                 # transposed result
    ("ii", (3, 3)),                                # trace
    ("ii->i", (3, 3)),                             # diagonal
    ("ij->ji", (2, 3)),                            # transpose
    ("ij->", (2, 3)),                              # sum
    ("ij->j", (2, 3)),
    ("i,j->ij", (2,), (3,)),                       # outer
    ("i,i", (3,), (3,)),
    ("ij,ij->ij", (2, 3), (2, 3)),                 # elementwise
    ("ij,ij->", (2, 3), (2, 3)),
    ("ij,k->ik", (2, 3), (4,)),                    # j only in a, k only in b
    ("ij,jk->i", (2, 3), (3, 4)),                  # k summed over b alone
    ("iij->j", (3, 3, 2)),                         # diagonal of a 3-d operand
    ("iji->j", (2, 3, 2)),
    ("iii->i", (2, 2, 2)),
    ("ii,jk->", (3, 3), (3, 4)),
    ("ii,ij->j", (3, 3), (3, 2)),
    ("...ij,...jk->...ik", (2, 1, 3, 4), (5, 4, 2)),     # broadcast batch
    ("...ij,...jk", (2, 3, 4), (4, 2)),
    ("...i,...i", (2, 3), (3,)),
    ("i...->...", (3, 2, 2)),
    ("...ii->...i", (2, 3, 3)),
    ("ij,ij->ij", (1, 3), (2, 3)),                 # size-1 broadcasting of a named index
    ("ba,aC", (2, 3), (3, 4)),                     # implicit output in ASCII order
    ("ijk,jl->ikl", (2, 3, 4), (3, 5)),
    ("abcd,cdef->abef", (2, 3, 4, 5), (4, 5, 3, 2)),
    ("ij,jk,kl->il", (2, 3), (3, 4), (4, 5)),      # three operands
    ("ij,jk,kl,lm->im", (2, 3), (3, 6), (6, 2), (2, 4)),   # four
    ("i,ij,j->", (3,), (3, 4), (4,)),
    ("bi,bij,bj->b", (2, 3), (2, 3, 4), (2, 4)),
    ("ij,jk,ki->", (3, 3), (3, 3), (3, 3)),
    ("ii,i,j->j", (3, 3), (3,), (2,)),
]

EINSUM_CASES = [
    Case("einsum", lambda np_, *xs, spec=spec: np_.einsum(spec, *xs),
         *[uniform(s, seed=k) for k, s in enumerate(shapes)], id=f"einsum-{spec}")
    for spec, *shapes in EINSUM
] + [
    Case("einsum", lambda np_, a, b: np_.einsum(a, [0, 1], b, [1, 2], [0, 2]), uniform((2, 3)),
         uniform((3, 4), seed=1), id="einsum-interleaved"),
    Case("einsum", lambda np_, a, b: np_.einsum(a, [Ellipsis, 0], b, [Ellipsis, 0]), uniform((2, 3)),
         uniform((3,), seed=1), id="einsum-interleaved-ellipsis"),
    Case("einsum", lambda np_, a, b, c: np_.einsum("ij,jk,kl->il", a, b, c, optimize=True),
         uniform((2, 3)), uniform((3, 4), seed=1), uniform((4, 5), seed=2), id="einsum-optimize"),
    Case("einsum", lambda np_, a, b: np_.einsum("ij,jk->ik", a, b), uniform((40, 30)),
         uniform((30, 20), seed=1), order=1, id="einsum-large-matmul"),
    Case("einsum", lambda np_, a, b: np_.einsum("aij,jka->ik", a, b), uniform((4, 6, 7)),
         uniform((7, 5, 4), seed=1), order=1, id="einsum-large"),
    # work >= BLAS_WORK: the einsum op contracts with one matmul (batch b, lonely l, two summed)
    Case("einsum", lambda np_, a, b: np_.einsum("bijlm,jkbm->kib", a, b), uniform((4, 5, 3, 2, 2)),
         uniform((3, 7, 4, 2), seed=1), id="einsum-blas"),
    Case("einsum", lambda np_, a: np_.einsum("ii->i", a), np.arange(9).reshape(3, 3), id="einsum-int"),
    Case("einsum", lambda np_, a, b: np_.einsum("ij,jk->ik", a, b, dtype=np.float64),
         uniform((2, 3)).astype(np.float32), uniform((3, 4), seed=1).astype(np.float32), id="einsum-dtype"),
    Case("einsum", lambda np_, a, b: np_.einsum("i,j->ij", a, b), uniform((0,)), uniform((3,), seed=1),
         id="einsum-empty"),
    Case("einsum", lambda np_, a: np_.einsum("ii", a), uniform((0, 0)), id="einsum-empty-trace"),
    Case("einsum", lambda np_, a, b: np_.einsum("ij,jk->ik", a, b), uniform((2, 0)), uniform((0, 4), seed=1),
         id="einsum-empty-sum"),
]

# ---- linalg ----------------------------------------------------------------------------------


def _dominant_pair(n, k=None, batch=(), seed=0):
    b = uniform(batch + ((n,) if k is None else (n, k)), seed=seed + 1)
    return dominant(n, batch, seed), b


LINALG = [
    # det, slogdet, inv
    Case("linalg.det", lambda np_, a: np_.linalg.det(a), dominant(3)),
    Case("linalg.det", lambda np_, a: np_.linalg.det(a), dominant(3, (2,))),
    Case("linalg.det", lambda np_, a: np_.linalg.det(a), dominant(1)),
    Case("linalg.slogdet", lambda np_, a: np_.linalg.slogdet(a), spd(3)),
    Case("linalg.slogdet", lambda np_, a: np_.linalg.slogdet(a), dominant(3, (2,)) * [[-1.0], [1.0], [1.0]]),
    Case("linalg.slogdet", lambda np_, a: np_.linalg.slogdet(a).logabsdet, spd(2, (2, 2)), id="slogdet-batch"),
    Case("linalg.inv", lambda np_, a: np_.linalg.inv(a), dominant(3)),
    Case("linalg.inv", lambda np_, a: np_.linalg.inv(a), dominant(3, (2,))),
    Case("linalg.inv", lambda np_, a: np_.linalg.inv(a), dominant(2, (2, 1))),
    Case("linalg.inv", lambda np_, a: np_.linalg.inv(a), dominant(2) + 1j * uniform((2, 2), seed=3),
         id="inv-complex"),
    # solve: b (M,) or (..., M, K), batches broadcasting
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), *_dominant_pair(3)),
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), *_dominant_pair(3, 2)),
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), dominant(3, (2,)), uniform((3,), seed=1),
         id="solve-batched-vector"),
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), *_dominant_pair(3, 2, batch=(2,))),
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), dominant(3, (2, 1)),
         uniform((3, 3, 2), seed=4), id="solve-broadcast"),
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), dominant(3), uniform((2, 3, 1), seed=4),
         id="solve-batched-b"),
    # cholesky: reads the lower (upper) triangle only; symmetrised too
    Case("linalg.cholesky", lambda np_, a: np_.linalg.cholesky(a), spd(3) + np.triu(uniform((3, 3)), 1)),
    Case("linalg.cholesky", lambda np_, a: np_.linalg.cholesky(a, upper=True), spd(3) + np.tril(uniform((3, 3)), -1),
         id="cholesky-upper"),
    Case("linalg.cholesky", lambda np_, a: np_.linalg.cholesky(sym(np_, a)), spd(3, (2,)), id="cholesky-sym"),
    Case("linalg.cholesky", lambda np_, a: np_.linalg.cholesky(a), spd(2, (2, 1))),
    # qr
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a), full_rank(4, 3)),
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a), full_rank(3, 3)),
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a), full_rank(2, 4), id="qr-wide"),
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a), np.stack([full_rank(4, 2), full_rank(4, 2, 1)])),
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a, mode="r"), full_rank(4, 3), id="qr-r"),
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a, mode="complete"), full_rank(2, 3), id="qr-complete-wide"),
    # eigh: functions of the eigenvectors that do not depend on their signs
    Case("linalg.eigh", lambda np_, a: np_.linalg.eigh(a).eigenvalues, separated(3)),
    Case("linalg.eigh", lambda np_, a: np_.linalg.eigh(a)[0], separated(3, symmetric=False),
         id="eigh-lower-triangle"),
    Case("linalg.eigh", lambda np_, a: (lambda w, v: (w, v * v))(*np_.linalg.eigh(a)), separated(3),
         id="eigh-vectors"),
    Case("linalg.eigh", lambda np_, a: (lambda w, v: (v * w[..., None, :]) @ np_.swapaxes(v, -1, -2))(
        *np_.linalg.eigh(a, UPLO="U")), separated(3, (2,), symmetric=False), id="eigh-upper-rebuilt"),
    Case("linalg.eigh", lambda np_, a: np_.linalg.eigh(a)[1] ** 2, separated(4, (2,), seed=2),
         id="eigh-vectors-batch"),
    Case("linalg.eigvalsh", lambda np_, a: np_.linalg.eigvalsh(a), separated(3, symmetric=False)),
    Case("linalg.eigvalsh", lambda np_, a: np_.linalg.eigvalsh(a, UPLO="U"), separated(3, (2,), symmetric=False)),
    # svd: s, and U * U, Vh * Vh, U @ Vh (sign invariant)
    Case("linalg.svd", lambda np_, a: np_.linalg.svd(a, compute_uv=False), singular_separated(4, 3)),
    Case("linalg.svd", lambda np_, a: (lambda u, s, vh: (u * u, s, vh * vh, u @ vh))(
        *np_.linalg.svd(a, full_matrices=False)), singular_separated(4, 3), id="svd-tall"),
    Case("linalg.svd", lambda np_, a: (lambda u, s, vh: (u * u, s, vh * vh, u @ vh))(
        *np_.linalg.svd(a, full_matrices=False)), singular_separated(2, 4), id="svd-wide"),
    Case("linalg.svd", lambda np_, a: (lambda u, s, vh: (u * u, s, u @ vh))(*np_.linalg.svd(a)),
         singular_separated(3, 3, (2,)), id="svd-square-batch"),
    Case("linalg.svd", lambda np_, a: (lambda r: (r.U ** 2, r.S))(np_.linalg.svd(a, full_matrices=False)),
         singular_separated(3, 2, (2,)), id="svd-batch-tall"),
    Case("linalg.svdvals", lambda np_, a: np_.linalg.svdvals(a), singular_separated(2, 3, (2,))),
    # complex: eigh of Hermitian matrices, svd; functions that ignore the vectors' phases
    Case("linalg.eigh", lambda np_, a: (lambda w, v: (w, np_.abs(v)))(*np_.linalg.eigh(a)),
         hermitian_separated(3), id="eigh-complex"),
    Case("linalg.eigh", lambda np_, a: (lambda w, v: (w, np_.abs(v) ** 2))(*np_.linalg.eigh(a, "U")),
         hermitian_separated(3, (2,), seed=3, hermitian=False), id="eigh-complex-upper-triangle"),
    Case("linalg.eigh", lambda np_, a: (lambda w, v: (v * w[..., None, :]) @ np_.conj(np_.swapaxes(v, -1, -2)))(
        *np_.linalg.eigh(a)), hermitian_separated(3, seed=4, hermitian=False), id="eigh-complex-rebuilt"),
    Case("linalg.eigvalsh", lambda np_, a: np_.linalg.eigvalsh(a), hermitian_separated(3, hermitian=False),
         id="eigvalsh-complex"),
    Case("linalg.eigvalsh", lambda np_, a: np_.linalg.eigvalsh(a, UPLO="U"),
         hermitian_separated(2, (2,), seed=5, hermitian=False), id="eigvalsh-complex-upper"),
    Case("linalg.svd", lambda np_, a: (lambda u, s, vh: (np_.abs(u), s, np_.abs(vh), u @ vh))(
        *np_.linalg.svd(a, full_matrices=False)), csingular_separated(4, 3), id="svd-complex-tall"),
    Case("linalg.svd", lambda np_, a: (lambda u, s, vh: (np_.abs(u), s, np_.abs(vh), u @ vh))(
        *np_.linalg.svd(a, full_matrices=False)), csingular_separated(2, 3, (2,), seed=1), id="svd-complex-wide"),
    Case("linalg.svd", lambda np_, a: (lambda r: (np_.abs(r.U) ** 2, r.S))(np_.linalg.svd(a)),
         csingular_separated(3, 3, seed=2), id="svd-complex-square"),
    Case("linalg.svd", lambda np_, a: np_.linalg.svd(a, compute_uv=False), csingular_separated(3, 2, (2,)),
         id="svd-complex-values"),
    Case("linalg.svdvals", lambda np_, a: np_.linalg.svdvals(a), csingular_separated(2, 3), id="svdvals-complex"),
    # eig: real matrices with real eigenvalues (real results, as NumPy), with a complex pair, complex
    Case("linalg.eig", lambda np_, a: np_.linalg.eig(a), real_eigen(3), id="eig-real"),
    Case("linalg.eig", lambda np_, a: (lambda w, v: (w, np_.abs(v)))(*np_.linalg.eig(a)), rotation_pair(),
         id="eig-complex-pair"),
    Case("linalg.eig", lambda np_, a: (lambda r: (r.eigenvalues, np_.abs(r.eigenvectors)))(np_.linalg.eig(a)),
         cuniform((2, 3, 3), seed=4), id="eig-complex-batch"),
    Case("linalg.eig", lambda np_, a: (lambda w, v: (v * w[..., None, :]) @ np_.linalg.inv(v))(*np_.linalg.eig(a)),
         cuniform((3, 3), seed=6), id="eig-rebuilt"),
    Case("linalg.eigvals", lambda np_, a: np_.linalg.eigvals(a), real_eigen(3, (2,), seed=1)),
    Case("linalg.eigvals", lambda np_, a: np_.linalg.eigvals(a), rotation_pair(seed=2), id="eigvals-complex-pair"),
    Case("linalg.eigvals", lambda np_, a: np_.linalg.eigvals(a), cuniform((3, 3), seed=5), id="eigvals-complex"),
    # pinv, lstsq
    Case("linalg.pinv", lambda np_, a: np_.linalg.pinv(a), full_rank(4, 3)),
    Case("linalg.pinv", lambda np_, a: np_.linalg.pinv(a), full_rank(2, 3)),
    Case("linalg.pinv", lambda np_, a: np_.linalg.pinv(a), np.stack([full_rank(3, 2), full_rank(3, 2, 1)])),
    Case("linalg.pinv", lambda np_, a: np_.linalg.pinv(a, hermitian=True), separated(3, symmetric=False),
         id="pinv-hermitian", value_rtol=1e-10, value_atol=1e-12),
    Case("linalg.lstsq", lambda np_, a, b: np_.linalg.lstsq(a, b), full_rank(4, 3), uniform((4,), seed=1),
         value_rtol=1e-9, value_atol=1e-12),
    Case("linalg.lstsq", lambda np_, a, b: np_.linalg.lstsq(a, b), full_rank(4, 2), uniform((4, 2), seed=1),
         value_rtol=1e-9, value_atol=1e-12),
    Case("linalg.lstsq", lambda np_, a, b: np_.linalg.lstsq(a, b), full_rank(2, 3), uniform((2,), seed=1),
         value_rtol=1e-9, value_atol=1e-12, id="lstsq-wide"),
    Case("linalg.lstsq", lambda np_, a, b: np_.linalg.lstsq(a, b)[0], full_rank(3, 3), uniform((3, 2), seed=1),
         id="lstsq-square", value_rtol=1e-9, value_atol=1e-12),
    Case("linalg.matrix_rank", lambda np_, a: np_.linalg.matrix_rank(a), full_rank(3, 2), wrt=()),
    Case("linalg.matrix_rank", lambda np_, a: np_.linalg.matrix_rank(a), np.ones((2, 3, 3)), wrt=()),
    # powers and chains
    *[Case("linalg.matrix_power", lambda np_, a, n=n: np_.linalg.matrix_power(a, n), dominant(3) / 6,
           id=f"matrix_power-{n}") for n in (0, 1, 2, 3, 5, -2)],
    Case("linalg.matrix_power", lambda np_, a: np_.linalg.matrix_power(a, 4), dominant(2, (2,)) / 4,
         id="matrix_power-batch"),
    Case("linalg.multi_dot", lambda np_, a, b, c: np_.linalg.multi_dot([a, b, c]), uniform((2, 3)),
         uniform((3, 4), seed=1), uniform((4, 2), seed=2)),
    Case("linalg.multi_dot", lambda np_, a, b, c, d: np_.linalg.multi_dot([a, b, c, d]), uniform((3,)),
         uniform((3, 5), seed=1), uniform((5, 2), seed=2), uniform((2,), seed=3)),
    Case("linalg.multi_dot", lambda np_, a, b: np_.linalg.multi_dot([a, b]), uniform((2, 3)),
         uniform((3,), seed=1)),
    Case("linalg.matrix_transpose", lambda np_, a: np_.linalg.matrix_transpose(a), uniform((2, 3, 4))),
    Case("linalg.vecdot", lambda np_, a, b: np_.linalg.vecdot(a, b), uniform((2, 3)), uniform((3,), seed=1)),
    Case("linalg.vecdot", lambda np_, a, b: np_.linalg.vecdot(a, b, axis=0), uniform((3, 2)),
         uniform((3, 1), seed=1)),
    Case("linalg.outer", lambda np_, a, b: np_.linalg.outer(a, b), uniform((2,)), uniform((3,), seed=1)),
    Case("linalg.matmul", lambda np_, a, b: np_.linalg.matmul(a, b), uniform((2, 2, 3)), uniform((3, 2), seed=1)),
    Case("linalg.tensordot", lambda np_, a, b: np_.linalg.tensordot(a, b, axes=1), uniform((2, 3)),
         uniform((3, 2), seed=1)),
    Case("linalg.cross", lambda np_, a, b: np_.linalg.cross(a, b), uniform((2, 3)), uniform((3,), seed=1)),
    Case("linalg.diagonal", lambda np_, a: np_.linalg.diagonal(a), uniform((2, 3, 3))),
    Case("linalg.diagonal", lambda np_, a: np_.linalg.diagonal(a, offset=1), uniform((3, 4))),
    Case("linalg.diagonal", lambda np_, a: np_.linalg.diagonal(a, offset=-2), uniform((2, 4, 3))),
    Case("linalg.trace", lambda np_, a: np_.linalg.trace(a), uniform((2, 3, 3))),
    Case("linalg.trace", lambda np_, a: np_.linalg.trace(a, offset=1), uniform((3, 4))),
    Case("linalg.trace", lambda np_, a: np_.linalg.trace(a), np.arange(9, dtype=np.int32).reshape(3, 3)),
    Case("linalg.tensorinv", lambda np_, a: np_.linalg.tensorinv(a, ind=1),
         dominant(6).reshape(6, 2, 3)),
    Case("linalg.tensorsolve", lambda np_, a, b: np_.linalg.tensorsolve(a, b),
         dominant(6).reshape(2, 3, 6), uniform((2, 3), seed=1)),
    # zero-size batches
    Case("linalg.inv", lambda np_, a: np_.linalg.inv(a), np.ones((0, 3, 3))),
    Case("linalg.det", lambda np_, a: np_.linalg.det(a), np.ones((0, 2, 2))),
    Case("linalg.solve", lambda np_, a, b: np_.linalg.solve(a, b), np.ones((0, 3, 3)), np.ones((0, 3, 2))),
    Case("linalg.eigh", lambda np_, a: np_.linalg.eigh(a), np.ones((0, 3, 3))),
    Case("linalg.svd", lambda np_, a: np_.linalg.svd(a, full_matrices=False), np.ones((0, 3, 2))),
    Case("linalg.qr", lambda np_, a: np_.linalg.qr(a), np.ones((0, 3, 2))),
    Case("linalg.cholesky", lambda np_, a: np_.linalg.cholesky(a), np.ones((0, 3, 3))),
    Case("linalg.eig", lambda np_, a: np_.linalg.eig(a), np.ones((0, 3, 3))),
    # norms
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x), uniform((3,)) + 1j * uniform((3,), seed=1),
         id="norm-complex"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, axis=1), uniform((0, 3)), id="norm-empty"),
    *[Case("linalg.norm", lambda np_, x, o=o: np_.linalg.norm(x, o), csingular_separated(3, 2, seed=3),
           id=f"norm-complex-matrix-{o}") for o in ("nuc", 2, -2, "fro")],
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, "nuc", axis=(0, 2)),
         csingular_separated(3, 3, (2,), seed=4).transpose(1, 0, 2), id="norm-complex-nuc-axes"),
    *[Case("linalg.norm", lambda np_, x, o=o: np_.linalg.norm(x, o), away((4,)), id=f"norm-vector-{o}")
      for o in (None, 2, 1, np.inf, -np.inf, 3, 0.5, -1)],
    *[Case("linalg.norm", lambda np_, x, o=o: np_.linalg.norm(x, o), singular_separated(3, 2) + 0.05,
           id=f"norm-matrix-{o}") for o in (None, "fro", "nuc", 1, -1, 2, -2, np.inf, -np.inf)],
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x), away((2, 3, 2)), id="norm-all"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, keepdims=True), away((2, 3)), id="norm-keepdims"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, axis=1), away((2, 3))),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, 3, axis=0, keepdims=True), away((2, 3)),
         id="norm-p-axis"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, 0, axis=-1), np.array([[0.0, 1.0, 2.0]]),
         wrt=(), id="norm-zero"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, "fro", axis=(2, 0)), away((2, 3, 4)),
         id="norm-fro-axes"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, 2, axis=(0, 2), keepdims=True),
         singular_separated(3, 3, (2,)).transpose(1, 0, 2), id="norm-2-axes"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, 1, axis=(1, 0)), away((3, 4)),
         id="norm-1-swapped"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x, np.inf, axis=(-1, -2)), away((2, 3, 4), seed=3),
         id="norm-inf-swapped"),
    Case("linalg.norm", lambda np_, x: np_.linalg.norm(x), np.arange(1, 5), wrt=(), id="norm-int"),
    Case("linalg.vector_norm", lambda np_, x: np_.linalg.vector_norm(x), away((2, 3))),
    Case("linalg.vector_norm", lambda np_, x: np_.linalg.vector_norm(x, axis=(0, 2), keepdims=True, ord=1),
         away((2, 3, 2))),
    Case("linalg.vector_norm", lambda np_, x: np_.linalg.vector_norm(x, axis=1, ord=np.inf), away((2, 3))),
    Case("linalg.matrix_norm", lambda np_, x: np_.linalg.matrix_norm(x), away((2, 3, 2))),
    Case("linalg.matrix_norm", lambda np_, x: np_.linalg.matrix_norm(x, ord="nuc", keepdims=True),
         singular_separated(3, 2, (2,))),
    Case("linalg.cond", lambda np_, x: np_.linalg.cond(x), singular_separated(3, 3)),
    Case("linalg.cond", lambda np_, x: np_.linalg.cond(x, -2), singular_separated(3, 2, (2,))),
    Case("linalg.cond", lambda np_, x: np_.linalg.cond(x, "fro"), dominant(3)),
    Case("linalg.cond", lambda np_, x: np_.linalg.cond(x, 1), dominant(3, (2,), seed=4)),
]


CASES = PRODUCTS + EINSUM_CASES + LINALG


def test_cross_of_2_vectors_warns_as_numpy():
    a, b = (neuronika.from_ndarray(uniform((2,), seed=k)) for k in (0, 1))
    with pytest.warns(DeprecationWarning, match="2-dimensional vectors"):
        nnp.cross(a, b)


# ---- closed forms ------------------------------------------------------------------------------

def test_det_gradient_is_det_times_inverse_transpose():
    a = dominant(3, (2,), seed=5)
    got = neuronika.grad(lambda a: nnp.sum(nnp.linalg.det(a)))(a)
    want = np.linalg.det(a)[:, None, None] * np.swapaxes(np.linalg.inv(a), -1, -2)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_logdet_gradient_is_inverse_transpose():
    a = spd(4, seed=2)
    got = neuronika.grad(lambda a: nnp.linalg.slogdet(a)[1])(a)
    np.testing.assert_allclose(got, np.linalg.inv(a).T, rtol=1e-12)


def test_logdet_through_cholesky_matches_slogdet():
    """2 sum(log(diag(L))) = log det A; on a symmetrised input both gradients are inv(A)."""
    a = spd(3, seed=4)

    def via_cholesky(a):
        chol = nnp.linalg.cholesky((a + a.T) / 2)
        return 2 * nnp.sum(nnp.log(nnp.einsum("ii->i", chol)))

    np.testing.assert_allclose(neuronika.grad(via_cholesky)(a), np.linalg.inv(a), rtol=1e-10)


def test_frobenius_norm_gradient():
    a = uniform((3, 4), seed=3)
    got = neuronika.grad(lambda a: nnp.linalg.norm(a))(a)
    np.testing.assert_allclose(got, a / np.linalg.norm(a), rtol=1e-12)


def test_nuclear_norm_gradient_is_u_vh():
    a = singular_separated(4, 3, seed=2)
    u, _, vh = np.linalg.svd(a, full_matrices=False)
    got = neuronika.grad(lambda a: nnp.linalg.norm(a, "nuc"))(a)
    np.testing.assert_allclose(got, u @ vh, rtol=1e-10, atol=1e-12)


def test_eigenvalue_gradients_are_outer_products_of_eigenvectors():
    a = separated(3, seed=4)
    w, v = np.linalg.eigh(a)
    for i in range(3):
        got = neuronika.grad(lambda a: nnp.linalg.eigvalsh(a)[i])(a)
        outer = np.outer(v[:, i], v[:, i])
        np.testing.assert_allclose(got, np.tril(2 * outer, -1) + np.diag(np.diag(outer)), atol=1e-12)


def test_eigenvalue_gradient_of_a_general_matrix_is_left_times_right_eigenvector():
    """d w_i / dA = u_i v_i^T / (u_i . v_i), u_i the left eigenvector (row i of inv(V)): for a
    real matrix, and for a complex one (w_i is holomorphic in A, so HIPS autograd's convention
    gives the complex derivative itself)."""
    for a in (real_eigen(3, seed=2), cuniform((3, 3), seed=7)):
        w, v = np.linalg.eig(a)
        left = np.linalg.inv(v)
        for i in range(3):
            if a.dtype.kind == "c":
                got = neuronika.grad(lambda a: nnp.real(nnp.linalg.eigvals(a)[i]))(a)
            else:
                got = neuronika.grad(lambda a: nnp.linalg.eig(a).eigenvalues[i])(a)
            np.testing.assert_allclose(got, np.outer(left[i], v[:, i]), rtol=1e-9, atol=1e-12)


def test_eig_of_a_real_matrix_is_real_when_numpys_is():
    for a in (real_eigen(3), rotation_pair()):
        got = nnp.linalg.eig(neuronika.from_ndarray(a))
        want = np.linalg.eig(a)
        assert got.eigenvalues.dtype == want.eigenvalues.dtype
        assert got.eigenvectors.dtype == want.eigenvectors.dtype
        assert nnp.linalg.eigvals(neuronika.from_ndarray(a)).dtype == np.linalg.eigvals(a).dtype


def test_eig_realness_is_guarded_inside_a_trace():
    """Real or complex results depend on the values: a traced function is traced again when
    the answer changes, and gives each matrix its own."""
    f = neuronika.grad(lambda a: nnp.sum(nnp.abs(nnp.linalg.eigvals(a))))
    for a in (real_eigen(3), rotation_pair(), real_eigen(3, seed=1)):
        w, v = np.linalg.eig(a)
        want = np.real(np.linalg.inv(v).T @ np.diag(np.conj(w) / np.abs(w)) @ v.T)
        np.testing.assert_allclose(f(a), want, rtol=1e-9, atol=1e-12)


def test_complex_eigenvalue_gradient_of_a_hermitian_matrix():
    """S = v_i v_i^H; NumPy reads the lower triangle: the gradient is 2 conj(S) below the
    diagonal, Re(S) on it (HIPS autograd's convention)."""
    a = hermitian_separated(3, seed=8, hermitian=False)
    w, v = np.linalg.eigh(a)
    for i in range(3):
        got = neuronika.grad(lambda a: nnp.linalg.eigvalsh(a)[i])(a)
        outer = np.outer(v[:, i], np.conj(v[:, i]))
        want = np.tril(2 * np.conj(outer), -1) + np.diag(np.real(np.diag(outer)))
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_complex_nuclear_norm_gradient_is_conj_u_vh():
    a = csingular_separated(4, 3, seed=2)
    u, _, vh = np.linalg.svd(a, full_matrices=False)
    got = neuronika.grad(lambda a: nnp.linalg.norm(a, "nuc"))(a)
    np.testing.assert_allclose(got, np.conj(u @ vh), rtol=1e-10, atol=1e-12)


def test_inverse_hessian_vector_product():
    """d/dA <B, inv(A)> = -inv(A).T B inv(A).T, then differentiated again (hvp)."""
    a, b = dominant(3, seed=1), uniform((3, 3), seed=2)
    inv = np.linalg.inv(a)
    got = neuronika.grad(lambda a: nnp.sum(b * nnp.linalg.inv(a)))(a)
    np.testing.assert_allclose(got, -inv.T @ b @ inv.T, rtol=1e-12)


# ---- einsum: the graph it builds ---------------------------------------------------------------

def _ops(var):
    return sorted(n.op.name for n in walk(var._node) if n.op is not None)


@pytest.mark.parametrize("spec, shapes, ops", [
    ("ij,jk->ik", [(2, 3), (3, 4)], ["matmul"]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)], ["matmul"]),
    ("bij,jk->bik", [(2, 3, 4), (4, 5)], ["matmul"]),
    ("i,i->", [(3,), (3,)], ["matmul"]),
    ("ij,j->i", [(2, 3), (3,)], ["matmul"]),
    ("ij,kj->ik", [(2, 3), (4, 3)], ["matmul", "transpose"]),
    ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)], ["matmul", "matmul"]),
    ("ii", [(3, 3)], ["einsum"]),
    ("i,j->ij", [(2,), (3,)], ["einsum"]),
    ("ij,ij->", [(2, 3), (2, 3)], ["einsum"]),
    ("ij->ij", [(2, 3)], []),
])
def test_einsum_builds_matmul_for_matrix_products(spec, shapes, ops):
    xs = [neuronika.from_ndarray(uniform(s, seed=k)) for k, s in enumerate(shapes)]
    assert _ops(nnp.einsum(spec, *xs)) == ops


def test_einsum_contracts_pairwise_in_numpys_greedy_order():
    shapes = [(2, 3), (3, 40), (40, 5), (5, 6)]
    arrays = [uniform(s, seed=k) for k, s in enumerate(shapes)]
    path = np.einsum_path("ij,jk,kl,lm->im", *arrays, optimize="greedy")[0][1:]
    y = nnp.einsum("ij,jk,kl,lm->im", *[neuronika.from_ndarray(a) for a in arrays])
    products = [n for n in walk(y._node) if n.op is not None and n.op.name == "matmul"]
    assert len(products) == len(path) == 3
    # the greedy path contracts the 40-wide pair first: no intermediate is 40 wide on both sides
    assert all(40 not in n.shape for n in products)
    np.testing.assert_allclose(y.data, np.einsum("ij,jk,kl,lm->im", *arrays), rtol=1e-12)


def test_einsum_adjoints_are_einsums():
    """The gradient graph of an einsum (built for second order) is einsums again."""
    a = uniform((3, 3, 2), seed=1)
    b = uniform((2, 4), seed=2)

    def f(a):
        return nnp.sum(nnp.einsum("iij,jk->ik", a, b) ** 2)

    x = neuronika.from_ndarray(a).requires_grad()
    (g,) = neuronika.symbolic.gradients(f(x), [x])
    assert "einsum" in _ops(g)
    np.testing.assert_allclose(g.data, neuronika.grad(f)(a), rtol=1e-12)


def test_einsum_keeps_float32():
    a, b = uniform((2, 3)).astype(np.float32), uniform((3, 3), seed=1).astype(np.float32)
    y = nnp.einsum("ij,jj->i", neuronika.from_ndarray(a).requires_grad(), b)
    assert y.dtype == np.float32
    nnp.sum(y).backward()


@pytest.mark.parametrize("name, call", [
    ("det", lambda np_, a: np_.linalg.det(a)),
    ("inv", lambda np_, a: np_.linalg.inv(a)),
    ("eigh", lambda np_, a: np_.linalg.eigh(a)[1]),
    ("eig", lambda np_, a: np_.linalg.eig(a)[1]),
    ("eigvals", lambda np_, a: np_.linalg.eigvals(a)),
    ("svd", lambda np_, a: np_.linalg.svd(a)[0]),
    ("cholesky", lambda np_, a: np_.linalg.cholesky(a)),
    ("qr", lambda np_, a: np_.linalg.qr(a)[1]),
    ("norm", lambda np_, a: np_.linalg.norm(a, 2)),
])
def test_linalg_keeps_float32(name, call):
    a = spd(3, seed=1).astype(np.float32)
    x = neuronika.from_ndarray(a).requires_grad()
    y = call(nnp, x)
    assert y.dtype == call(np, a).dtype == np.float32
    nnp.sum(y).backward()
    assert x.grad.dtype == np.float32



@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("name, call", [
    ("eigvalsh", lambda np_, a: np_.linalg.eigvalsh(a)),
    ("eigh values", lambda np_, a: np_.linalg.eigh(a)[0]),
    ("eigh vectors", lambda np_, a: np_.linalg.eigh(a)[1]),
    ("svd values", lambda np_, a: np_.linalg.svd(a)[1]),
    ("svdvals", lambda np_, a: np_.linalg.svdvals(a)),
    ("det", lambda np_, a: np_.linalg.det(a)),
    ("norm", lambda np_, a: np_.linalg.norm(a)),
    ("inv", lambda np_, a: np_.linalg.inv(a)),
])
def test_complex_linalg_results_have_numpys_dtype(name, call, dtype):
    # a variable's dtype is what its values are: eigvalsh of a Hermitian matrix is real
    # (it said complex while its data was real: generated code that trusts the dtype could
    # write a real result into a complex buffer)
    a = hermitian_separated(3, seed=2).astype(dtype)
    y = call(nnp, neuronika.from_ndarray(a).requires_grad())
    assert y.dtype == y.data.dtype == call(np, a).dtype, name


# ---- errors ----------------------------------------------------------------------------------

def test_singular_matrices_raise_numpys_error_on_values():
    singular = neuronika.from_ndarray(np.ones((3, 3))).requires_grad()
    with pytest.raises(np.linalg.LinAlgError):
        nnp.linalg.inv(singular).data
    with pytest.raises(np.linalg.LinAlgError):
        nnp.linalg.solve(singular, np.ones(3)).data
    with pytest.raises(np.linalg.LinAlgError):
        neuronika.grad(lambda a: nnp.sum(nnp.linalg.inv(a)))(np.zeros((2, 2)))


@pytest.mark.parametrize("call, shapes", [
    (lambda a: nnp.linalg.inv(a), "(2, 3)"),
    (lambda a: nnp.linalg.det(a), "(2, 3)"),
    (lambda a: nnp.linalg.cholesky(a), "(2, 3)"),
    (lambda a: nnp.linalg.solve(a, np.ones(3)), "(2, 3)"),
    (lambda a: nnp.linalg.solve(np.eye(3), a), "(2, 3)"),
    (lambda a: nnp.matmul(a, np.ones((2, 2))), "(2, 3)"),
    (lambda a: nnp.dot(a, np.ones(2)), "(2, 3)"),
    (lambda a: nnp.einsum("ij,jk", a, np.ones((2, 2))), "(2, 3)"),
    (lambda a: nnp.tensordot(a, np.ones((2, 2)), axes=1), "(2, 3)"),
    (lambda a: nnp.inner(a, np.ones(2)), "(2, 3)"),
    (lambda a: nnp.linalg.lstsq(a, np.ones(3)), "(2, 3)"),
])
def test_shape_mismatch_raises_a_shape_error_naming_the_shapes(call, shapes):
    a = neuronika.from_ndarray(np.ones((2, 3))).requires_grad()
    with pytest.raises(ShapeError, match=shapes.replace("(", r"\(").replace(")", r"\)")):
        call(a)


def test_non_square_raises_numpys_linalg_error_too():
    with pytest.raises(np.linalg.LinAlgError):
        nnp.linalg.inv(neuronika.from_ndarray(np.ones((2, 3))))


def test_einsum_errors():
    a = neuronika.from_ndarray(np.ones((2, 3)))
    with pytest.raises(ValueError, match="never appears"):
        nnp.einsum("ij->k", a)
    with pytest.raises(ValueError, match="ellipsis"):
        nnp.einsum("...i->i", neuronika.from_ndarray(np.ones((2, 3))))
    with pytest.raises(ValueError, match="2 operands"):
        nnp.einsum("ij,jk", a)
    with pytest.raises(ShapeError, match="don't match"):
        nnp.einsum("ii", a)


def test_options_without_a_gradient_refuse_a_variable_that_needs_one():
    a = neuronika.from_ndarray(full_rank(4, 3)).requires_grad()
    with pytest.raises(TypeError, match="full_matrices"):
        nnp.linalg.svd(a)
    with pytest.raises(TypeError, match="complete"):
        nnp.linalg.qr(a, mode="complete")
    with pytest.raises(TypeError, match="complex"):
        nnp.linalg.cholesky(neuronika.from_ndarray(spd(2) + 0j).requires_grad())
    constant = neuronika.from_ndarray(full_rank(4, 3))         # no gradient needed: NumPy's values
    u, s, vh = nnp.linalg.svd(constant)
    np.testing.assert_allclose(u.data, np.linalg.svd(full_rank(4, 3))[0])


def test_out_is_refused():
    a = neuronika.from_ndarray(np.ones((2, 2))).requires_grad()
    with pytest.raises(TypeError, match="out="):
        nnp.einsum("ij,jk", a, a, out=np.empty((2, 2)))
    with pytest.raises(TypeError, match="out="):
        nnp.dot(a, a, out=np.empty((2, 2)))


def test_lstsq_of_a_rank_deficient_matrix_has_no_residuals():
    a = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    b = np.array([1.0, 0.0, 1.0])
    x, residuals, rank, s = nnp.linalg.lstsq(neuronika.from_ndarray(a).requires_grad(), b)
    want = np.linalg.lstsq(a, b)
    assert rank == want[2] == 1 and residuals.shape == want[1].shape == (0,)
    np.testing.assert_allclose(x.data, want[0], rtol=1e-10)


def test_lstsq_rank_is_guarded_inside_a_trace():
    """The residuals exist only at full rank: a trace reads the rank as a guarded value, so a
    rank-deficient input is traced again rather than given the full-rank program."""
    b = np.array([1.0, 0.0, 1.0])

    def loss(a):
        x, residuals, rank, s = nnp.linalg.lstsq(a, b)
        return nnp.sum(x) + nnp.sum(residuals) + rank

    full, deficient = full_rank(3, 2), np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 6.0]])
    f = neuronika.value_and_grad(loss)
    value_full, _ = f(full)
    value_deficient, _ = f(deficient)
    assert value_full == pytest.approx(float(loss(neuronika.from_ndarray(full)).data))
    assert value_deficient == pytest.approx(float(loss(neuronika.from_ndarray(deficient)).data))
    x, residuals, rank, _ = np.linalg.lstsq(deficient, b)
    assert value_deficient == pytest.approx(x.sum() + rank)
