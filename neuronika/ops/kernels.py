"""Kernels that op templates call where one expression of the array-API standard will not do.

They are globals of every generated function, so generated code reads
``pad_fold(g5, ((1, 1), (0, 0)), 'reflect')``. Each is a pure function of
arrays and constants (``add_at`` and ``update_at`` write into their first array). The
functions here are NumPy's; ``TABLE`` (below) holds each kernel's implementation per
namespace family, the generic ones written in the standard (or, for scatters and
partitions, NumPy's on a host copy).
"""
from __future__ import annotations

import math
import operator
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import backend as _backend
from .. import random as _random
from . import pool as _pool

__all__ = ["dropout_mask", "random_draw", "sigmoid", "power_exponent", "pad_array", "pad_fold", "log_where_nonzero", "conv_forward", "conv_input_grad",
           "conv_weight_grad", "max_pool", "max_pool_grad", "max_pool_gather", "avg_pool", "avg_pool_grad"]


def fresh(kernel):
    """Marks a kernel whose result never shares memory with its arguments (the generated
    code may keep its arguments' buffers between calls: ``transform.buffers``)."""
    kernel.fresh = True
    return kernel


def writes_out(kernel):
    """Marks a fresh kernel that takes ``out=``: an array of its result's shape and dtype it
    writes the result into and returns (or None: a new array)."""
    kernel.fresh = kernel.writes_out = True
    return kernel


def dropout_mask(shape, p, dtype):
    """Keep each element with probability 1 - p, scaled by 1 / (1 - p) so the mean is kept."""
    if p >= 1.0:
        return np.zeros(shape, dtype)
    dtype = np.dtype(dtype)
    uniform = _random.generator().random(shape, dtype=np.float64 if dtype == np.float64 else np.float32)
    return (uniform >= p) * dtype.type(1.0 / (1.0 - p))


def random_draw(kind, shape, dtype):
    """Fresh numbers from ``neuronika.random``'s generator: "uniform" on [0, 1) or "normal"."""
    generator = _random.generator()
    values = generator.random(shape) if kind == "uniform" else generator.standard_normal(shape)
    return values.astype(dtype, copy=False)


@fresh
def sigmoid(x, dtype):
    """1 / (1 + exp(-x)) in ``dtype``, within 2 ulp: three ufunc calls, 2.3x (10,000 elements)
    to 7x (a million) faster than the overflow-free form. Where exp(-x) overflows (x < -88.7
    in float32) the result is subnormal or 0: those calls take the overflow-free form
    e / (1 + e), e = exp(-|x|), which keeps it. float16 (whose exp overflows at -11.1) is
    computed in float32."""
    work = np.float32 if np.dtype(dtype).itemsize < 4 else dtype
    x = np.asarray(x, work)
    try:
        with np.errstate(over="raise"):
            e = np.exp(np.negative(x))
    except FloatingPointError:
        e = np.exp(np.negative(np.abs(x)))
        y = np.maximum(e, x >= 0)           # the numerator: 1 where x >= 0, else e (e <= 1)
        y /= 1 + e
    else:
        if e.__class__ is not np.ndarray:   # 0-d: NumPy gives a scalar
            return np.asarray(1 / (1 + e), dtype)
        e += 1
        y = np.divide(1, e, out=e)
    return y if work is dtype else y.astype(dtype)


def power_exponent(b):
    """b - 1, and 0 where b == 0 (a Python float stays one: NumPy types it weakly)."""
    return b - 1 + (b == 0)


def log_where_nonzero(a):
    """log(a) where a != 0, and 0 where a == 0 (d(a ** b)/db at a == 0, b > 0, is 0)."""
    a = np.asarray(a)
    return np.log(a, out=np.zeros_like(a), where=a != 0)


def _along(ndim, axis, index):
    key = [slice(None)] * ndim
    key[axis] = index
    return tuple(key)


def pad_array(x, widths, mode, value):
    """``x`` padded by ``widths`` ((before, after) per axis): with ``value`` (mode
    "constant"), by reflection ("reflect") or by repeating the edge ("edge")."""
    if mode == "constant":
        return np.pad(x, widths, constant_values=value) if value else np.pad(x, widths)
    return np.pad(x, widths, mode=mode)


def pad_fold(dy, widths, mode):
    """The adjoint of ``reflect`` / ``edge`` padding: border gradients added back
    onto the elements they were copied from."""
    grad = np.array(dy, copy=True)
    for axis, (before, after) in enumerate(widths):
        if not before and not after:
            continue
        size = grad.shape[axis] - before - after
        core = grad[_along(grad.ndim, axis, slice(before, before + size))].copy()
        if mode == "edge":
            if before:
                core[_along(core.ndim, axis, slice(0, 1))] += grad[_along(grad.ndim, axis, slice(0, before))].sum(axis, keepdims=True)
            if after:
                core[_along(core.ndim, axis, slice(size - 1, size))] += grad[_along(grad.ndim, axis, slice(before + size, None))].sum(axis, keepdims=True)
        else:  # reflect: padded[before - j] = x[j] for j in 1..before, padded[before + size - 1 + j] = x[size - 1 - j]
            if before:
                core[_along(core.ndim, axis, slice(1, before + 1))] += np.flip(grad[_along(grad.ndim, axis, slice(0, before))], axis)
            if after:
                core[_along(core.ndim, axis, slice(size - 1 - after, size - 1))] += np.flip(grad[_along(grad.ndim, axis, slice(before + size, None))], axis)
        grad = core
    return grad


# ---- convolution and pooling -----------------------------------------------------------------
# Spatial axes are the trailing ones; ``kernel``, ``stride`` and ``dilation`` hold
# one int per spatial axis. Output sizes follow PyTorch (no padding here: the
# pad op runs before): (size - dilation * (kernel - 1) - 1) // stride + 1.

def _out_sizes(sizes, kernel, stride, dilation=None):
    dilation = dilation or (1,) * len(kernel)
    return tuple((s - d * (k - 1) - 1) // t + 1 for s, k, t, d in zip(sizes, kernel, stride, dilation))


def _offset_keys(kernel, stride, dilation, out, lead):
    """For each kernel offset (row-major), the index of the input elements that
    offset meets across all windows: strided slices over the trailing axes."""
    keys = []
    for offset in np.ndindex(*kernel):
        key = (slice(None),) * lead + tuple(
            slice(o * d, o * d + t * (m - 1) + 1, t) for o, d, t, m in zip(offset, dilation, stride, out))
        keys.append(key)
    return keys


#: Bytes of columns a convolution kernel works on at once: the batch is taken a few
#: samples at a time so that the columns stay in cache and one small buffer is reused,
#: instead of a fresh array as large as the input times the kernel size.
CHUNK_BYTES = 1 << 20


def _chunk(n, per_sample):
    return max(1, min(n, CHUNK_BYTES // max(1, per_sample)))


_SCRATCH = threading.local()


def _scratch(name, shape, dtype):
    """An uninitialised array of ``shape`` kept per thread under ``name`` and reused by the
    next call that asks (a convolution's column buffer): a fresh one would cost page faults
    every call once the C library has returned the last one's memory."""
    kept = getattr(_SCRATCH, "arrays", None)
    if kept is None:
        kept = _SCRATCH.arrays = {}
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    found = kept.get(name)
    if found is None or found.dtype != dtype or found.size < size:
        found = kept[name] = np.empty(size, dtype)
    return found[:size].reshape(shape)


def _into(out, shape, dtype):
    """``out`` where it can hold a result of ``shape`` and ``dtype`` (C-ordered), else a new array."""
    if (out is not None and out.shape == shape and out.dtype == dtype and out.flags.c_contiguous
            and out.flags.writeable):
        return out
    return np.empty(shape, dtype)


def _windows(x, kernel, stride, dilation):
    """A strided view (N, C, *kernel, *out) of ``x`` (N, C, *size): every window, no copy."""
    n, c = x.shape[:2]
    sizes, steps = x.shape[2:], x.strides[2:]
    out = _out_sizes(sizes, kernel, stride, dilation)
    return as_strided(x, (n, c) + tuple(kernel) + out,
                      x.strides[:2] + tuple(s * d for s, d in zip(steps, dilation))
                      + tuple(s * t for s, t in zip(steps, stride)), writeable=False)


def _pointwise(kernel, stride):
    """A 1 x 1 kernel with stride 1: the input is its own columns."""
    return math.prod(kernel) == 1 and all(t == 1 for t in stride)


# ---- Winograd F(2x2, 3x3) -----------------------------------------------------------------------
# Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (2016): a 2x2 tile of
# the output from a 4x4 tile of the input (tiles two apart) is A^T [(G w G^T) * (B^T d B)] A,
# 16 products per tile and channel pair where the direct form needs 36. Over tiles flattened
# row-major the 2-D transforms are Kronecker products of the 1-D ones, so each is one matrix
# product: ``b`` (16, 16) for the input tiles, ``g`` (16, 9) for the kernel, ``a`` (4, 16)
# for the output tiles. The products per tile position then form 16 GEMMs over channels.

_WINOGRAD_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
_WINOGRAD_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)
_WINOGRAD_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)
_WINOGRAD = {}

#: Winograd replaces im2col for a 3x3 kernel with stride 1, dilation 1 and one group when
#: both channel counts (C_in and C_out) reach this, per kernel and dtype; below it im2col
#: wins, its copies and GEMMs staying in cache (NumPy does Winograd's transforms as separate
#: passes over memory, which pay only where the GEMMs dominate). Measured on a shared 2-core
#: AMD EPYC, one OpenBLAS thread, batch 1 to 32, 16x16 to 56x56 (minimum of 7 to 25
#: interleaved runs; a single ratio is good to about 30%): Winograd / im2col time at 8->16
#: channels 1.4 to 2.2 for all three kernels; at 64->64 and 128->128, 0.5 to 0.95 in float32
#: and 0.4 to 0.85 in float64; in between, the weight gradient wins from 32 channels in
#: float32 (0.6 to 0.9) and from 16 in float64, the forward from 32 in float64, and the
#: input gradient (a forward Winograd of the zero-padded gradient with the flipped kernel)
#: only from 64. A dtype not listed never takes Winograd.
WINOGRAD_MIN_CHANNELS = {
    "forward": {np.dtype(np.float32): 64, np.dtype(np.float64): 32},
    "input_grad": {np.dtype(np.float32): 64, np.dtype(np.float64): 64},
    "weight_grad": {np.dtype(np.float32): 32, np.dtype(np.float64): 16},
}


def winograd_fits(which, kernel, stride, dilation, groups, channels, *operands):
    """Whether ``which`` kernel ("forward", "input_grad", "weight_grad") of a convolution
    with ``channels`` (C_in, C_out) takes the Winograd path, for ``operands`` (arrays or
    dtypes): the selection rule (``WINOGRAD_MIN_CHANNELS``).

    >>> winograd_fits("forward", (3, 3), (1, 1), (1, 1), 1, (64, 128), np.float32)
    True
    >>> winograd_fits("forward", (3, 3), (2, 2), (1, 1), 1, (64, 128), np.float32)   # stride 2
    False
    """
    if groups != 1 or tuple(kernel) != (3, 3) or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    table, fewest = WINOGRAD_MIN_CHANNELS[which], min(channels)
    if not table or fewest < min(table.values()):          # too narrow whatever the dtype
        return False
    least = table.get(np.result_type(*operands))
    return least is not None and fewest >= least


def _winograd_matrices(dtype):
    """(b, g, a) in ``dtype``: the input, kernel and output transforms of flattened tiles."""
    if dtype not in _WINOGRAD:
        _WINOGRAD[dtype] = tuple(np.kron(m, m).astype(dtype)
                                 for m in (_WINOGRAD_BT, _WINOGRAD_G, _WINOGRAD_AT))
    return _WINOGRAD[dtype]


def _tile_view(x, th, tw):
    """The 4x4 tiles, two apart, of ``x`` (N, C, 2 th + 2, 2 tw + 2): a view (4, 4, C, N, th, tw)."""
    s = x.strides
    return as_strided(x, (4, 4) + x.shape[1::-1] + (th, tw), (s[2], s[3], s[1], s[0], 2 * s[2], 2 * s[3]),
                      writeable=False)


class _Tiles:
    """The input side of a Winograd pass over ``x`` (N, C, H, W) zero-padded by ``pad`` on
    every side: (th, tw) output tiles per sample and axis (the last ones may overhang the
    output), and per chunk of samples, the transformed tiles (16, C, samples * th * tw)."""

    def __init__(self, x, pad, chunk, dtype):
        n, c, h, w = x.shape
        self.x, self.pad, self.c = x, pad, c
        self.th, self.tw = (h + 2 * pad - 1) // 2, (w + 2 * pad - 1) // 2     # ceil(out / 2)
        self.t = self.th * self.tw
        # padding (or an overhanging tile) goes through a zero-bordered buffer, one chunk at a time
        fits = not pad and (2 * self.th + 2, 2 * self.tw + 2) == (h, w)
        self.padded = None if fits else np.zeros((chunk, c, 2 * self.th + 2, 2 * self.tw + 2), x.dtype)
        self.tiles = np.empty(16 * c * chunk * self.t, dtype)
        self.transformed = np.empty(16 * c * chunk * self.t, dtype)

    def transform(self, first, last, b):
        c, q, x = self.c, (last - first) * self.t, self.x[first:last]
        if self.padded is not None:
            part = self.padded[:last - first]
            part[:, :, self.pad:self.pad + x.shape[2], self.pad:self.pad + x.shape[3]] = x
            x = part
        tile = self.tiles[:16 * c * q].reshape(16, c * q)
        np.copyto(tile.reshape((4, 4, c, last - first, self.th, self.tw)), _tile_view(x, self.th, self.tw))
        return np.matmul(b, tile, out=self.transformed[:16 * c * q].reshape(16, c * q)).reshape(16, c, q)


def _winograd_conv(x, w, pad=0):
    """conv(x, w) for a 3x3 kernel w (C_out, C, 3, 3), stride 1, x zero-padded by ``pad``."""
    n, c = x.shape[:2]
    co = w.shape[0]
    dtype = np.result_type(x, w)
    oh, ow = x.shape[2] + 2 * pad - 2, x.shape[3] + 2 * pad - 2
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    m = _chunk(n, 16 * (c + co) * th * tw * dtype.itemsize)
    tiles = _Tiles(x, pad, m, dtype)
    b, g, a = _winograd_matrices(dtype)
    u = (g @ w.reshape(co * c, 9).T).reshape(16, co, c)
    y = np.empty((n, co, 2 * th, 2 * tw), dtype)
    y_tiles = y.reshape(n, co, th, 2, tw, 2).transpose(3, 5, 1, 0, 2, 4)    # (2, 2, co, n, th, tw)
    prods, out = np.empty(16 * co * m * th * tw, dtype), np.empty(4 * co * m * th * tw, dtype)
    for first in range(0, n, m):
        last = min(n, first + m)
        q = (last - first) * th * tw
        mk = np.matmul(u, tiles.transform(first, last, b), out=prods[:16 * co * q].reshape(16, co, q))
        yk = np.matmul(a, mk.reshape(16, co * q), out=out[:4 * co * q].reshape(4, co * q))
        np.copyto(y_tiles[:, :, :, first:last], yk.reshape(2, 2, co, last - first, th, tw))
    return y if (2 * th, 2 * tw) == (oh, ow) else np.ascontiguousarray(y[:, :, :oh, :ow])


def _winograd_weight_grad(g, x):
    """d<g, conv(x, w)>/dw for a 3x3 kernel, stride 1: the transpose of the Winograd
    forward, G^T [sum over tiles of (A g A^T) * (B^T d B)] G per channel pair; the sum over
    tiles and samples is the inner dimension of 16 GEMMs."""
    n, c = x.shape[:2]
    co, (oh, ow) = g.shape[1], g.shape[2:]
    dtype = np.result_type(g, x)
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    if (2 * th, 2 * tw) != (oh, ow):        # the overhanging tiles' gradient is zero
        g = np.pad(g, ((0, 0), (0, 0), (0, 2 * th - oh), (0, 2 * tw - ow)))
    g_tiles = g.reshape(n, co, th, 2, tw, 2).transpose(3, 5, 1, 0, 2, 4)    # (2, 2, co, n, th, tw)
    m = _chunk(n, 16 * (c + co) * th * tw * dtype.itemsize)
    tiles = _Tiles(x, 0, m, dtype)
    b, gm, a = _winograd_matrices(dtype)
    gd, e = np.empty(4 * co * m * th * tw, dtype), np.empty(16 * co * m * th * tw, dtype)
    total = np.zeros((16, co, c), dtype)
    for first in range(0, n, m):
        last = min(n, first + m)
        q = (last - first) * th * tw
        vk = tiles.transform(first, last, b)
        gk = gd[:4 * co * q].reshape(4, co * q)
        np.copyto(gk.reshape(2, 2, co, last - first, th, tw), g_tiles[:, :, :, first:last])
        ek = np.matmul(a.T, gk, out=e[:16 * co * q].reshape(16, co * q))
        total += ek.reshape(16, co, q) @ vk.swapaxes(1, 2)
    return (gm.T @ total.reshape(16, co * c)).reshape(3, 3, co, c).transpose(2, 3, 0, 1).copy()


@writes_out
def conv_forward(x, w, stride, dilation, groups, out=None):
    """conv(x, w) by im2col + GEMM: x (N, C, *size), w (C_out, C / groups, *k).

    A few samples at a time, the windows are copied into columns (C / groups * prod(k),
    P) per group (P output positions) and multiplied by the kernel as a matrix
    (C_out / groups, C / groups * prod(k)): the output comes out in (N, C_out, *out) layout.
    Wide 3x3 layers with stride 1 take Winograd instead (``winograd_fits``).
    """
    n, c = x.shape[:2]
    co, kernel = w.shape[0], tuple(w.shape[2:])
    if winograd_fits("forward", kernel, stride, dilation, groups, (c, co), x, w):
        return _winograd_conv(x, w)
    rows = c // groups * math.prod(kernel)
    matrix = w.reshape(co, rows) if groups == 1 else w.reshape(groups, co // groups, rows)
    view = _windows(x, kernel, stride, dilation)
    out_sizes = view.shape[2 + len(kernel):]
    p = math.prod(out_sizes)
    inner = (rows, p) if groups == 1 else (groups, rows, p)
    if _pointwise(kernel, stride):
        return (matrix @ x.reshape((n,) + inner)).reshape((n, co) + out_sizes)
    result = _into(out, (n, co) + out_sizes, np.result_type(x, w))
    y = result.reshape((n,) + ((co, p) if groups == 1 else (groups, co // groups, p)))
    chunk = _chunk(n, c * math.prod(kernel) * p * x.itemsize)
    buffer = _scratch("columns", (chunk,) + view.shape[1:], x.dtype)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        cols = buffer[:last - first]
        np.copyto(cols, view[first:last])
        np.matmul(matrix, cols.reshape((last - first,) + inner), out=y[first:last])
    return result


@fresh
def conv_weight_grad(g, x, kernel, stride, dilation, groups):
    """d<g, conv(x, w)>/dw for a kernel of spatial size ``kernel``: per sample, g (as
    (C_out / groups, P) per group) times the columns of x transposed, summed over the batch.
    Wide 3x3 layers with stride 1 take Winograd instead (``winograd_fits``)."""
    n, c = x.shape[:2]
    co, kernel = g.shape[1], tuple(kernel)
    if winograd_fits("weight_grad", kernel, stride, dilation, groups, (c, co), g, x):
        return _winograd_weight_grad(g, x)
    rows = c // groups * math.prod(kernel)
    p = math.prod(g.shape[2:])
    inner = (rows, p) if groups == 1 else (groups, rows, p)
    grads = g.reshape((n, co, p) if groups == 1 else (n, groups, co // groups, p))
    w_shape = (co, c // groups) + kernel
    if _pointwise(kernel, stride):
        return (grads @ x.reshape((n,) + inner).swapaxes(-1, -2)).sum(axis=0).reshape(w_shape)
    view = _windows(x, kernel, stride, dilation)
    total = np.zeros(grads.shape[1:-1] + (rows,), np.result_type(g, x))
    chunk = _chunk(n, c * math.prod(kernel) * p * x.itemsize)
    buffer = _scratch("columns", (chunk,) + view.shape[1:], x.dtype)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        cols = buffer[:last - first]
        np.copyto(cols, view[first:last])
        total += (grads[first:last] @ cols.reshape((last - first,) + inner).swapaxes(-1, -2)).sum(axis=0)
    return total.reshape(w_shape)


@writes_out
def conv_input_grad(g, w, shape, stride, dilation, groups, out=None):
    """d<g, conv(x, w)>/dx for x of ``shape`` (N, C, *size): the transposed convolution.

    Per sample, the kernel's transpose times g gives the columns' gradient, which is
    added back onto the windows (col2im); N is g's (``shape`` may give it as -1). With
    stride 1 and two or three spatial axes
    the columns span the input's full width (g zero-padded to it first): each kernel
    offset then adds one contiguous span per (sample, channel), instead of one short
    row per output row, which is what makes col2im slow on small images. Wide 3x3 layers
    with stride 1 take Winograd instead (``winograd_fits``).
    """
    shape = (g.shape[0],) + tuple(shape[1:])
    n, c = shape[:2]
    co, kernel = w.shape[0], tuple(w.shape[2:])
    if winograd_fits("input_grad", kernel, stride, dilation, groups, (c, co), w, g):
        # stride 1: the full correlation of g with the kernel flipped, channels swapped
        return _winograd_conv(g, w[:, :, ::-1, ::-1].swapaxes(0, 1), pad=2)
    sizes, out_sizes = tuple(shape[2:]), tuple(g.shape[2:])
    rows = c // groups * math.prod(kernel)
    matrix = w.reshape(groups, co // groups, rows).swapaxes(1, 2)
    if groups == 1:
        matrix = matrix[0]
    dtype = np.result_type(w, g)

    def grouped(array, m, span):
        return array.reshape((m, co, span) if groups == 1 else (m, groups, co // groups, span))

    if _pointwise(kernel, stride):
        return (matrix @ grouped(g, n, math.prod(out_sizes))).reshape(shape)
    wide = len(kernel) > 1 and all(t == 1 for t in stride)
    if wide:
        rows_shape = (out_sizes[0],) + sizes[1:]              # output rows over the full input width
        span = math.prod(rows_shape)
        steps = [math.prod(sizes[i + 1:]) for i in range(len(sizes))]   # flat strides of the axes
        tail = sum((k - 1) * d * st for k, d, st in zip(kernel[1:], dilation[1:], steps[1:]))
        length = span - tail                            # the rest of each span is padding
        starts = [sum(o * d * st for o, d, st in zip(offset, dilation, steps))
                  for offset in np.ndindex(*kernel)]
        valid = (slice(None), slice(None)) + tuple(slice(0, m) for m in out_sizes)
    else:
        span = math.prod(out_sizes)
        keys = _offset_keys(kernel, stride, dilation, out_sizes, 2)
        offsets = [(slice(None), slice(None)) + o for o in np.ndindex(*kernel)]
    grad = _into(out, shape, dtype)
    grad[...] = 0
    chunk = _chunk(n, c * math.prod(kernel) * span * dtype.itemsize)
    if wide:
        padded = _scratch("padded", (chunk, co) + rows_shape, g.dtype)
        padded[...] = 0
    buffer = _scratch("columns", (chunk,) + ((rows, span) if groups == 1 else (groups, rows, span)), dtype)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        m = last - first
        if wide:
            padded[valid][:m] = g[first:last]
            cols = np.matmul(matrix, grouped(padded[:m], m, span), out=buffer[:m])
            cols = cols.reshape(m, c, len(starts), span)
            part = grad[first:last].reshape(m, c, -1)
            for i, start in enumerate(starts):
                part[:, :, start:start + length] += cols[:, :, i, :length]
        else:
            cols = np.matmul(matrix, grouped(g[first:last], m, span), out=buffer[:m])
            cols = cols.reshape((m, c) + kernel + out_sizes)
            part = grad[first:last]
            for key, offset in zip(keys, offsets):
                part[key] += cols[offset]
    return grad


def _pool_keys(shape, kernel, stride):
    out = _out_sizes(shape[len(shape) - len(kernel):], kernel, stride)
    return _offset_keys(kernel, stride, (1,) * len(kernel), out, len(shape) - len(kernel))


def _pool_target(shape, kernel, stride, dtype):
    """The array a pooling adjoint fills, and whether its windows are disjoint (then
    each offset's part is assigned rather than added). Zeros unless the windows tile
    the input exactly."""
    disjoint = all(t >= k for t, k in zip(stride, kernel))
    sizes = shape[len(shape) - len(kernel):]
    tiled = disjoint and all(t == k and s % k == 0 for t, k, s in zip(stride, kernel, sizes))
    return (np.empty if tiled else np.zeros)(shape, dtype), disjoint


def max_pool(x, kernel, stride):
    """Maximum over each window of the trailing axes (np.maximum over strided slices,
    one per kernel offset: no copy of the windows)."""
    keys = _pool_keys(x.shape, kernel, stride)
    if len(keys) == 1:
        return x[keys[0]].copy()
    y = np.maximum(x[keys[0]], x[keys[1]])
    for key in keys[2:]:
        np.maximum(y, x[key], out=y)
    return y


def _first_hits(x, y, keys):
    """For each kernel offset, where its element is the first maximum of its window
    (row-major within the window): boolean arrays of the output's shape."""
    taken = None
    last = len(keys) - 1
    for i, key in enumerate(keys):
        hit = x[key] == y
        if taken is None:
            taken = hit.copy() if last else hit
        else:
            hit &= ~taken
            if i < last:
                taken |= hit
        yield key, hit


def max_pool_grad(g, x, y, kernel, stride):
    """The adjoint of ``max_pool``: each window's gradient goes to the first element
    (in row-major order within the window) equal to its maximum, as in PyTorch."""
    keys = _pool_keys(x.shape, kernel, stride)
    grad, disjoint = _pool_target(x.shape, kernel, stride, g.dtype)
    for key, hit in _first_hits(x, y, keys):
        if disjoint:
            np.multiply(g, hit, out=grad[key])
        else:
            grad[key] += g * hit
    return grad


def max_pool_gather(z, x, y, kernel, stride):
    """The adjoint of ``max_pool_grad`` (in its first argument): for each window, ``z``
    at the element ``max_pool_grad`` sends the window's gradient to."""
    result = None
    for key, hit in _first_hits(x, y, _pool_keys(x.shape, kernel, stride)):
        if result is None:
            result = z[key] * hit
        else:
            result += z[key] * hit
    return result


def avg_pool(x, kernel, stride):
    """Mean over each window of the trailing axes (sums of strided slices)."""
    keys = _pool_keys(x.shape, kernel, stride)
    y = x[keys[0]].astype(x.dtype if x.dtype.kind == "f" else np.float64)
    for key in keys[1:]:
        y += x[key]
    y *= y.dtype.type(1.0 / len(keys))
    return y


def avg_pool_grad(g, shape, kernel, stride):
    """The adjoint of ``avg_pool``: each window's gradient spread evenly over the window."""
    keys = _pool_keys(shape, kernel, stride)
    share = g * g.dtype.type(1.0 / len(keys))
    grad, disjoint = _pool_target(shape, kernel, stride, g.dtype)
    for key in keys:
        if disjoint:
            grad[key] = share
        else:
            grad[key] += share
    return grad


# ---- NumPy's elementwise functions beyond the standard (ops/elementwise.py) --------------------------

_UFUNC_KERNELS = ["exp2", "cbrt", "fabs", "deg2rad", "rad2deg", "sinc", "fmod", "logaddexp2", "heaviside",
                  "fmax", "fmin"]
__all__ += _UFUNC_KERNELS + ["round_decimals"]
globals().update({name: getattr(np, name) for name in _UFUNC_KERNELS})


def round_decimals(x, decimals):
    """``numpy.round(x, decimals)``."""
    return np.round(x, decimals)


# ---- reductions, scans and sorting (ops/reduce.py, ops/sort.py) ----------------------------------

__all__ += ["prod_others", "prod_others_grad", "cumprod_grad", "unpermute_along_axis"]


def prod_others(x, axis):
    """For each element, the product of the other elements reduced with it over ``axis``
    (a tuple of axes, or None for all): the gradient of ``prod``. No division, so it is
    exact where elements are zero: the product of the running products from the left
    and from the right, each excluding the element itself."""
    x = np.asarray(x)
    ndim = x.ndim
    axes = tuple(range(ndim)) if axis is None else tuple(axis)
    tail = tuple(range(ndim - len(axes), ndim))
    moved = np.moveaxis(x, axes, tail) if axes != tail else x
    n = math.prod(moved.shape[ndim - len(axes):])
    flat = moved.reshape(moved.shape[:ndim - len(axes)] + (n,))
    out = np.ones(flat.shape, flat.dtype)
    if n > 1:
        np.cumprod(flat[..., :-1], axis=-1, out=out[..., 1:])
        out[..., :-1] *= np.cumprod(flat[..., :0:-1], axis=-1)[..., ::-1]
    out = out.reshape(moved.shape)
    return np.moveaxis(out, tail, axes) if axes != tail else out


def prod_others_grad(x, g, axis):
    """The gradient of ``prod_others(x, axis)`` given ``g`` (prod's second derivative
    applied to ``g``): ``dx[k] = sum(g[i] * prod(x[j] for j not in (i, k)) for i != k)`` over
    each group, exact with zeros. By the number of zeros in a group, with ``p`` the
    product of its nonzero elements: none, ``p / x[k] * (sum(g / x) - g[k] / x[k])``; one,
    at ``z``, ``p * sum(g / x)`` over the others at ``z`` and ``g[z] * p / x[k]`` elsewhere;
    two, each zero gets ``p`` times the other zero's ``g``, the rest 0; more, 0."""
    x = np.asarray(x)
    axes = tuple(range(x.ndim)) if axis is None else tuple(axis)
    zero = x == 0
    if not zero.any():
        u = g / x
        return np.prod(x, axes, keepdims=True) / x * (u.sum(axes, keepdims=True) - u)
    count = zero.sum(axes, keepdims=True)
    safe = np.where(zero, 1, x)
    p = np.prod(safe, axes, keepdims=True)
    u = np.where(zero, 0, g / safe)
    total = u.sum(axes, keepdims=True)
    at_zeros = np.where(zero, g, 0).sum(axes, keepdims=True)
    none = p / safe * (total - u)
    one = np.where(zero, p * total, at_zeros * p / safe)
    two = np.where(zero, p * (at_zeros - g), 0)
    return np.where(count == 0, none, np.where(count == 1, one, np.where(count == 2, two, 0)))


def _reverse_cumsum(a, axis):
    return np.flip(np.cumsum(np.flip(a, axis), axis), axis)


def cumprod_grad(x, g, axis):
    """The gradient of ``cumprod(x, axis)`` given ``g``, its output's gradient:
    ``dx[k] = sum(g[i] * prod(x[j] for j <= i if j != k) for i >= k)``, exact where
    elements are zero. Without zeros it is the reversed cumsum of ``g * cumprod(x)``
    divided by ``x``. Along a lane with zeros, that quotient holds before the first
    zero; at the first zero the gradient is the reversed cumsum of ``g`` times the
    cumprod with that zero taken as 1; after it, every term holds the zero: 0."""
    y = np.cumprod(x, axis)
    zero = x == 0
    if not zero.any():
        return _reverse_cumsum(g * y, axis) / x
    seen = np.cumsum(zero, axis)
    before = seen == 0
    first = zero & (seen == 1)
    a = _reverse_cumsum(g * y, axis) / np.where(before, x, 1)
    b = _reverse_cumsum(g * np.cumprod(np.where(first, 1, x), axis), axis)
    return np.where(before, a, np.where(first, b, 0))


def unpermute_along_axis(g, perm, axis):
    """The inverse of ``take_along_axis(x, perm, axis)`` where ``perm`` permutes each lane
    along ``axis`` (argsort's result): ``out[..., perm[i], ...] = g[..., i, ...]``."""
    out = np.empty(np.shape(perm), np.result_type(g))
    np.put_along_axis(out, perm, g, axis)
    return out


__all__ += ["running_prod"]


def running_prod(x, axis):
    """``numpy.cumprod(x, axis)`` (the standard's cumulative_prod came in 2024.12)."""
    return x.cumprod(axis)


# ---- index update ----------------------------------------------------------------------------

__all__ += ["group_others"]


def _segment_scan(values, groups):
    """Inclusive products along the runs of equal ``groups`` labels (doubling: log2(n) passes,
    no division, so zeros stay exact)."""
    scan = values.copy()
    d, n = 1, len(values)
    while d < n:
        scan[d:] = np.where(groups[d:] == groups[:-d], scan[d:] * scan[:-d], scan[d:])
        d *= 2
    return scan


def group_others(values, groups):
    """For each element of the 1-D ``values``, the product of the other elements with the same
    ``groups`` label (1 where it is alone), without dividing: exact with zeros. The gradient of
    ``numpy.multiply.at`` with repeated indices."""
    if len(values) == 0:
        return values.copy()
    order = np.argsort(groups, kind="stable")
    v, g = values[order], groups[order]
    before = _segment_scan(v, g)
    after = _segment_scan(v[::-1], g[::-1])[::-1]
    neighbour = g[1:] == g[:-1]
    others = np.ones_like(v)
    others[1:] = np.where(neighbour, before[:-1], 1)
    others[:-1] *= np.where(neighbour, after[1:], 1)
    out = np.empty_like(others)
    out[order] = others
    return out


__all__ += ["update_at"]


def update_at(mode, target, key, values):
    """``target[key] = values`` (mode "set": the last of repeated writes wins), or NumPy's
    ``ufunc.at`` for mode "add", "multiply", "minimum", "maximum" (every write applies), in place."""
    if mode == "set":
        target[key] = values
    else:
        getattr(np, mode).at(target, key, values)


# ---- partition ---------------------------------------------------------------------------------

__all__ += ["partition_order"]


def partition_order(x, kth, axis):
    """Indices that reorder each lane of ``x`` along ``axis`` into exactly what
    ``numpy.partition(x, kth, axis)`` gives (``argpartition`` usually does, but NumPy may
    partition values and indices by different algorithms, which can order the elements
    between the kth ones differently). Equal values are matched in order."""
    perm = np.argpartition(x, kth, axis=axis)
    want = np.partition(x, kth, axis=axis)
    if np.array_equal(np.take_along_axis(x, perm, axis), want, equal_nan=x.dtype.kind in "fc"):
        return perm
    # Match the sorted orders: the j-th smallest of x goes where the j-th smallest of want is.
    out = np.empty_like(perm)
    np.put_along_axis(out, np.argsort(want, axis=axis, kind="stable"),
                      np.argsort(x, axis=axis, kind="stable"), axis)
    return out


__all__ += ["argpartition_indices"]


def argpartition_indices(x, kth, axis):
    """``numpy.argpartition(x, kth, axis)``."""
    return np.argpartition(x, kth, axis=axis)


# ---- value checks --------------------------------------------------------------------------------
# The forwards of the ops in ops/checks.py: each returns its input unchanged or raises, so a
# compiled program checks the values of every call, not only those seen when it was traced.

__all__ += ["check_class_index", "check_probability"]


_UNSIGNED = {np.dtype(f"i{n}"): np.dtype(f"u{n}") for n in (1, 2, 4, 8)}


def _largest_unsigned(t):
    """The largest entry of the integer array ``t`` read as unsigned: below a class count
    exactly when every entry is a class index (a negative one reads as a huge number), in one
    reduction where a minimum and a maximum take two."""
    return np.maximum.reduce(t.view(_UNSIGNED.get(t.dtype, t.dtype)), axis=None, initial=0)


#: The targets ``check_class_index`` scanned last in this thread and their largest entry read as
#: unsigned: the class kernels of the same program read it instead of scanning them again.
_CHECKED = threading.local()


def check_class_index(t, classes, ignore_index, loss):
    """``t`` itself, once every entry is a class index in [0, classes) or equals ignore_index."""
    if not isinstance(t, (np.ndarray, np.generic)):      # another library's (called when a loss is built)
        check_class_index(_backend.to_numpy(t), classes, ignore_index, loss)
        return t
    largest = _largest_unsigned(t) if t.size else 0
    _CHECKED.last = (t, largest)
    if largest >= classes:
        t = np.asarray(t)
        bad = ((t < 0) | (t >= classes)) & (t != ignore_index)
        if bad.any():
            raise IndexError(f"{loss}: target {t[bad].flat[0]} is out of range for {classes} classes: "
                             f"class indices must be in [0, {classes}) or equal ignore_index = "
                             f"{ignore_index}")
    return t


def check_probability(x, loss):
    """``x`` itself, once every entry is in [0, 1] (NaN is not)."""
    if x.size and not (x.min() >= 0 and x.max() <= 1):
        a = np.asarray(x)
        value = a[~((a >= 0) & (a <= 1))].flat[0]
        raise ValueError(f"{loss}: the input must hold probabilities in [0, 1], got {value}; "
                         f"for logits use bce_with_logits_loss")
    return x


# ---- softmax cross-entropy with class indices (ops/reduce.py) -------------------------------------
# The class axis is 1: logits (N, C, d1, ...), targets (N, d1, ...) already checked
# (check_class_index): each a class index or ignore_index.

__all__ += ["log_softmax_classes", "log_softmax_along", "softmax_along", "class_nll", "class_nll_grad",
            "class_nll_input_grad"]

#: Up to this many classes a 2-D log_softmax works on a transposed copy: NumPy reduces a short
#: contiguous axis one row at a time (~45 ns a row), a long one at full speed (at C = 10, N = 512:
#: 12 us against 44 us; even at C = 100).
SHORT_CLASS_AXIS = 32


def log_softmax_classes(x):
    """log_softmax along axis 1 (the class axis of logits (N, C, d1, ...))."""
    return log_softmax_along(x, 1)


def _short_last_axis(x, axis):
    """Whether ``x`` is 2-D floats with a short last axis ``axis``: reduced faster in a
    transposed copy (integers take the plain formula, which makes floats of them)."""
    return x.ndim == 2 and axis in (1, -1) and x.shape[1] <= SHORT_CLASS_AXIS and x.dtype.kind == "f"


@fresh
def log_softmax_along(x, axis):
    """log_softmax along ``axis``: z - log(sum(exp(z))) with z = x - max. A short last axis of a
    2-D ``x`` is reduced in a transposed copy, whose transpose (F-ordered) is returned."""
    if _short_last_axis(x, axis):
        z = x.T.copy()
        z -= z.max(axis=0)
        z -= np.log(np.exp(z).sum(axis=0))
        return z.T
    z = x - x.max(axis=axis, keepdims=True)
    log_sum = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    if z.dtype != log_sum.dtype:            # integers: the float result is a new array
        return z - log_sum
    z -= log_sum
    return z


@fresh
def softmax_along(x, axis):
    """exp(x - max) / sum(exp(x - max)) along ``axis``; a short last axis of a 2-D ``x`` as in
    ``log_softmax_along``."""
    if _short_last_axis(x, axis):
        e = x.T.copy()
        e -= e.max(axis=0)
        np.exp(e, out=e)
        e /= e.sum(axis=0)
        return e.T
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e


_POSITIONS = {}


def _kept(key, make):
    """``make()``, read-only, kept by ``key`` for the few shapes a program meets (a batch size)."""
    found = _POSITIONS.get(key)
    if found is None:
        if len(_POSITIONS) >= 64:
            _POSITIONS.clear()
        found = _POSITIONS[key] = make()
        found.flags.writeable = False
    return found


def _positions(n):
    return _kept(n, lambda: np.arange(n))


def _largest_checked(t):
    """``_largest_unsigned(t)``, from ``check_class_index``'s scan where it scanned this array."""
    last = getattr(_CHECKED, "last", None)
    return last[1] if last is not None and last[0] is t else _largest_unsigned(t)


def _class_positions(a, t, ignore_index):
    """Whether each target is kept (None: every one), a view of ``a`` (N, C, d1, ...) and the
    index into it of the entries the targets pick along axis 1 (an ignored target picks class 0). Beyond two
    dimensions a C-contiguous ``a`` is indexed flat: one offset array, ~6x faster than
    NumPy's indexing with an integer array per axis."""
    keep = None                         # (the common case: every target a class, nothing to mask)
    if 0 <= ignore_index < a.shape[1] or _largest_checked(t) >= a.shape[1]:
        keep = t != ignore_index
        keep = None if keep.all() else keep
    safe = t if keep is None else t * keep
    if t.ndim == 1:
        return keep, a, (_positions(t.shape[0]), safe)
    if a.flags.c_contiguous:
        n, c, rest = a.shape[0], a.shape[1], math.prod(a.shape[2:])
        base = _kept(a.shape, lambda: (np.arange(n)[:, None] * (c * rest) + np.arange(rest)).reshape(t.shape))
        return keep, a.reshape(-1), np.multiply(safe, rest, dtype=np.intp) + base    # uint8 targets too
    k = t.ndim
    index = [_positions(t.shape[0]).reshape((-1,) + (1,) * (k - 1)), safe]
    for i, size in enumerate(t.shape[1:], start=1):
        index.append(_positions(size).reshape((1,) * i + (-1,) + (1,) * (k - 1 - i)))
    return keep, a, tuple(index)


def _kept_count(t, keep):
    """How many targets a mean divides by: all of them, or those ``keep`` marks."""
    return t.size if keep is None else int(np.count_nonzero(keep))


def class_nll(logp, t, ignore_index, reduction="none"):
    """-logp[n, t[n, d...], d...], and 0 where t == ignore_index; ``reduction`` 'sum' adds
    them up, 'mean' divides that sum by the number of targets kept (NaN if none is)."""
    keep, view, index = _class_positions(logp, t, ignore_index)
    picked = view[index]                # (a gather: a new array)
    if reduction != "none":
        total = np.negative(picked.sum() if keep is None else picked.sum(where=keep))
        return total if reduction == "sum" else total / _kept_count(t, keep)
    if keep is None:
        return np.negative(picked, out=picked)
    return np.negative(picked, out=np.zeros_like(picked), where=keep)


@fresh
def class_nll_grad(logp, t, dy, ignore_index, reduction="none"):
    """(exp(logp) - onehot(t)) * dy, and 0 where t == ignore_index: the gradient of
    ``class_nll(log_softmax(x), t, ignore_index, reduction)`` in x. dy may broadcast (a 0-d
    array for a reduced loss); the one-hot part is one indexed subtraction (each position
    once: no scatter-add)."""
    dx = np.exp(logp)
    keep, view, index = _class_positions(dx, t, ignore_index)
    if reduction == "mean":
        dy = dy / _kept_count(t, keep)
    if keep is None and reduction != "none":        # one number for every target
        dx *= dy
        view[index] -= dy
        return dx
    dk = dy * keep if keep is not None else np.broadcast_to(dy, t.shape)
    dx *= dk[:, None]
    view[index] -= dk
    return dx


@fresh
def class_nll_input_grad(logp, t, dy, ignore_index, reduction="none"):
    """-onehot(t) * dy, and 0 where t == ignore_index: the gradient of ``class_nll(logp, t,
    ignore_index, reduction)`` in logp (under a mean, dy over the count of kept targets). One
    indexed assignment into zeros: each target picks its own position."""
    dx = np.zeros(logp.shape, logp.dtype)
    keep, view, index = _class_positions(dx, t, ignore_index)
    if reduction == "mean":
        dy = dy / _kept_count(t, keep)
    view[index] = np.negative(dy if keep is None else dy * keep)
    return dx


def checked_cast(array, dtype, name):
    """``array`` converted to ``dtype``, refusing a conversion that changes a value out of
    recognition: a finite float that becomes inf, a NaN, inf or out-of-range float made an
    integer, an integer out of the range of a narrower integer dtype (which would wrap)."""
    array = np.asarray(array)
    dtype = np.dtype(dtype)
    if array.dtype == dtype:
        return array
    if dtype.kind in "iu" and array.dtype.kind in "iub":
        info = np.iinfo(dtype)
        if array.size and array.dtype.kind != "b" and (array.min() < info.min or array.max() > info.max):
            value = array[(array < info.min) | (array > info.max)].flat[0]
            raise OverflowError(f"{name}: {value} does not fit {dtype} (range [{info.min}, {info.max}]); "
                                f"converting would wrap it around")
        return array.astype(dtype, copy=False)
    try:
        with np.errstate(over="raise", invalid="raise"):
            return array.astype(dtype, copy=False)
    except FloatingPointError:
        pass
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        ok = np.isfinite(array) & (array >= info.min) & (array <= info.max)
        value = array[~ok].flat[0]
        raise OverflowError(f"{name}: {value} cannot be converted to {dtype} (range [{info.min}, "
                            f"{info.max}])")
    limit = np.finfo(dtype).max
    finite = np.isfinite(array)
    value = array[finite & (np.abs(array) > limit)].flat[0]
    raise OverflowError(f"{name}: {value} overflows {dtype} (largest finite value {float(limit):.8g}); "
                        f"converting would make it inf")


# ---- scatter-add -----------------------------------------------------------------------------------

__all__ += ["add_at"]


#: ``target[key] += values`` with repeated indices adding up, in place (bound directly: no
#: Python frame of its own in every gather's backward)
add_at = np.add.at


# ---- indexing in the array-API standard (ops/shape.py) -------------------------------------------

__all__ += ["index_int", "gather"]

#: An int index passed at run time, as an int: NumPy's intp as it is; elsewhere a 0-d array, which
#: the standard does not let a key mix with slices, ``...`` or an assignment.
index_int = operator.index


def gather(x, key):
    """``x[key]`` for a key with several integer arrays (or with None beside one)."""
    return x[key]


# ---- scratch zeros (ops/shape.py: a gradient scattered into zeros) --------------------------------

__all__ += ["scratch_zeros"]


def scratch_zeros(shape, dtype):
    """``np.zeros(shape, dtype)``; a large one is an array of ``ops.pool`` filled with zeros, not
    fresh memory faulted in again at every call."""
    return _pool.pooled_zeros(np, shape, dtype)


# ---- small contractions (ops/linalg.py: einsum) -----------------------------------------------------

__all__ += ["einsum_small"]

#: ``einsum_small(spec, *operands)``: a contraction too small for BLAS to pay (one C loop).
einsum_small = np.einsum


# ---- one implementation per namespace family -----------------------------------------------------

#: kernel name -> {family: implementation} (``backend.FAMILIES``). The "numpy" ones are the
#: functions above; the others take the arrays' ``backend.Space`` first (``fn(space, ...)``) and
#: are bound to it by ``transform.templates.globals_for``. A family without its own falls back
#: to "generic" (the array-API standard only); a kernel with neither refuses to run there, and
#: the ops that call it say so when they are built (``families``, ``needs``).
TABLE = {name: {"numpy": globals()[name]} for name in __all__}


def register(name, family):
    """Add ``family``'s implementation of kernel ``name`` to ``TABLE`` (a decorator)."""
    def add(fn):
        TABLE[name][family] = fn
        return fn
    return add


@register("add_at", "cupy")
def _add_at_cupy(space, target, key, values):
    import cupyx
    cupyx.scatter_add(target, key, values)


@register("scratch_zeros", "generic")
def _scratch_zeros_generic(space, shape, dtype):
    return space.xp.zeros(shape, dtype=dtype, device=space.device)


@register("add_at", "generic")
def _add_at_generic(space, target, key, values):
    """The standard has no scatter-add: NumPy's on a host copy, written back (a full copy each
    way; a library with its own scatter-add registers it here)."""
    host = space.to_numpy(target)
    key = tuple(space.to_numpy(k) if hasattr(k, "shape") else k for k in key)
    np.add.at(host, key, space.to_numpy(values) if hasattr(values, "shape") else values)
    target[...] = space.asarray(host)


@register("dropout_mask", "generic")
def _dropout_mask_generic(space, shape, p, dtype):
    """The NumPy mask (the same numbers from ``neuronika.random``), moved to the space."""
    return space.asarray(dropout_mask(shape, p, space.numpy_dtype(dtype)))


@register("random_draw", "generic")
def _random_draw_generic(space, kind, shape, dtype):
    """The NumPy draw (the same numbers from ``neuronika.random``), moved to the space."""
    return space.asarray(random_draw(kind, shape, space.numpy_dtype(dtype)))


@register("sigmoid", "generic")
def _sigmoid_generic(space, x, dtype):
    xp = space.xp
    work = xp.float32 if dtype == getattr(xp, "float16", None) else dtype     # (the standard has no float16)
    if x.dtype != work:
        x = xp.astype(x, work)
    y = 1 / (1 + xp.exp(-x))
    return y if work == dtype else xp.astype(y, dtype)


@register("log_where_nonzero", "generic")
def _log_where_nonzero_generic(space, a):
    xp = space.xp
    nonzero = a != 0
    return xp.where(nonzero, xp.log(xp.where(nonzero, a, xp.ones_like(a))), xp.zeros_like(a))


@register("check_class_index", "generic")
def _check_class_index_generic(space, t, classes, ignore_index, loss):
    xp = space.xp
    if t.size and bool(xp.any((t < 0) | (t >= classes))):
        check_class_index(space.to_numpy(t), classes, ignore_index, loss)     # raises, naming a value
    return t


@register("check_probability", "generic")
def _check_probability_generic(space, x, loss):
    xp = space.xp
    if x.size and not bool(xp.all((x >= 0) & (x <= 1))):
        check_probability(space.to_numpy(x), loss)
    return x


@register("log_softmax_classes", "generic")
def _log_softmax_classes_generic(space, x):
    return _log_softmax_along_generic(space, x, 1)


@register("log_softmax_along", "generic")
def _log_softmax_along_generic(space, x, axis):
    xp = space.xp
    z = x - xp.max(x, axis=axis, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))


@register("softmax_along", "generic")
def _softmax_along_generic(space, x, axis):
    xp = space.xp
    e = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return e / xp.sum(e, axis=axis, keepdims=True)


def _one_hot_generic(xp, t, classes):
    """t == c along a new axis 1 (booleans): all False where t is ignore_index."""
    dtype = t.dtype if classes - 1 <= xp.iinfo(t.dtype).max else None     # uint8 labels, C > 256
    positions = xp.reshape(xp.arange(classes, dtype=dtype, device=t.device), (-1,) + (1,) * (t.ndim - 1))
    return xp.expand_dims(t, axis=1) == positions


@register("class_nll", "generic")
def _class_nll_generic(space, logp, t, ignore_index, reduction="none"):
    xp = space.xp
    hot = _one_hot_generic(xp, t, logp.shape[1])
    nll = xp.sum(xp.where(hot, -logp, xp.zeros_like(logp)), axis=1)
    if reduction == "none":
        return nll
    total = xp.sum(nll)
    return total if reduction == "sum" else total / xp.sum(xp.astype(t != ignore_index, logp.dtype))


def _hot_and_seed_generic(xp, logp, t, dy, ignore_index, reduction):
    """(onehot(t) in logp's dtype, dy per target along a new class axis: 0 where the target is
    ignored, over the count of kept targets under a mean)."""
    kept = xp.astype(t != ignore_index, logp.dtype)
    if reduction == "mean":
        dy = dy / xp.sum(kept)
    hot = xp.astype(_one_hot_generic(xp, t, logp.shape[1]), logp.dtype)
    return hot, xp.expand_dims(dy * kept, axis=1)


@register("class_nll_grad", "generic")
def _class_nll_grad_generic(space, logp, t, dy, ignore_index, reduction="none"):
    xp = space.xp
    hot, dk = _hot_and_seed_generic(xp, logp, t, dy, ignore_index, reduction)
    return (xp.exp(logp) - hot) * dk


@register("class_nll_input_grad", "generic")
def _class_nll_input_grad_generic(space, logp, t, dy, ignore_index, reduction="none"):
    hot, dk = _hot_and_seed_generic(space.xp, logp, t, dy, ignore_index, reduction)
    return -(hot * dk)


# ---- convolution in the array-API standard: windows by slicing ------------------------------------
# One strided slice of the input per kernel offset (``_offset_keys``), stacked into columns:
# no strided view, which the standard does not have. The columns of the whole batch are made
# at once (NumPy's kernels above work a few samples at a time in a reused buffer).

def _columns(xp, x, kernel, stride, dilation, out, groups):
    """(N, groups, C / groups * prod(kernel), P): the windows of ``x`` as columns."""
    n, c = x.shape[:2]
    cols = xp.stack([x[key] for key in _offset_keys(kernel, stride, dilation, out, 2)], axis=2)
    return xp.reshape(cols, (n, groups, c // groups * math.prod(kernel), math.prod(out)))


@register("conv_forward", "generic")
def _conv_forward_generic(space, x, w, stride, dilation, groups):
    xp = space.xp
    n, co, kernel = x.shape[0], w.shape[0], tuple(w.shape[2:])
    out = _out_sizes(x.shape[2:], kernel, stride, dilation)
    matrix = xp.reshape(w, (groups, co // groups, -1))
    return xp.reshape(matrix @ _columns(xp, x, kernel, stride, dilation, out, groups), (n, co) + out)


@register("conv_weight_grad", "generic")
def _conv_weight_grad_generic(space, g, x, kernel, stride, dilation, groups):
    xp = space.xp
    n, c, co, kernel, out = x.shape[0], x.shape[1], g.shape[1], tuple(kernel), tuple(g.shape[2:])
    cols = _columns(xp, x, kernel, stride, dilation, out, groups)
    grads = xp.reshape(g, (n, groups, co // groups, math.prod(out)))
    return xp.reshape(xp.sum(grads @ xp.matrix_transpose(cols), axis=0), (co, c // groups) + kernel)


@register("conv_input_grad", "generic")
def _conv_input_grad_generic(space, g, w, shape, stride, dilation, groups):
    xp = space.xp
    shape = (g.shape[0],) + tuple(shape[1:])
    n, c, co, kernel, out = shape[0], shape[1], w.shape[0], tuple(w.shape[2:]), tuple(g.shape[2:])
    matrix = xp.reshape(w, (groups, co // groups, -1))
    cols = xp.matrix_transpose(matrix) @ xp.reshape(g, (n, groups, co // groups, math.prod(out)))
    cols = xp.reshape(cols, (n, c, math.prod(kernel)) + out)
    grad = xp.zeros(shape, dtype=cols.dtype, device=cols.device)
    for i, key in enumerate(_offset_keys(kernel, stride, dilation, out, 2)):
        grad[key] += cols[:, :, i, ...]
    return grad


# ---- pooling in the array-API standard: the same strided slices, the standard's operations -------

def _first_hits_generic(xp, x, y, keys):
    taken = None
    for key in keys:
        hit = x[key] == y
        if taken is None:
            taken = hit
        else:
            hit = hit & ~taken
            taken = taken | hit
        yield key, hit


@register("max_pool", "generic")
def _max_pool_generic(space, x, kernel, stride):
    xp = space.xp
    keys = _pool_keys(x.shape, kernel, stride)
    y = xp.asarray(x[keys[0]], copy=True)
    for key in keys[1:]:
        y = xp.maximum(y, x[key])
    return y


@register("max_pool_grad", "generic")
def _max_pool_grad_generic(space, g, x, y, kernel, stride):
    xp = space.xp
    grad = xp.zeros(x.shape, dtype=g.dtype, device=g.device)
    for key, hit in _first_hits_generic(xp, x, y, _pool_keys(x.shape, kernel, stride)):
        grad[key] += g * xp.astype(hit, g.dtype)
    return grad


@register("max_pool_gather", "generic")
def _max_pool_gather_generic(space, z, x, y, kernel, stride):
    xp = space.xp
    result = None
    for key, hit in _first_hits_generic(xp, x, y, _pool_keys(x.shape, kernel, stride)):
        part = z[key] * xp.astype(hit, z.dtype)
        result = part if result is None else result + part
    return result


@register("avg_pool", "generic")
def _avg_pool_generic(space, x, kernel, stride):
    xp = space.xp
    keys = _pool_keys(x.shape, kernel, stride)
    dtype = x.dtype if xp.isdtype(x.dtype, "real floating") else xp.float64
    y = xp.astype(x[keys[0]], dtype)
    for key in keys[1:]:
        y = y + x[key]
    return y * (1.0 / len(keys))


@register("avg_pool_grad", "generic")
def _avg_pool_grad_generic(space, g, shape, kernel, stride):
    xp = space.xp
    keys = _pool_keys(shape, kernel, stride)
    share = g * (1.0 / len(keys))
    grad = xp.zeros(tuple(shape), dtype=g.dtype, device=g.device)
    for key in keys:
        grad[key] += share
    return grad


# ---- padding in the array-API standard: concatenated slices --------------------------------------

@register("pad_array", "generic")
def _pad_array_generic(space, x, widths, mode, value):
    xp = space.xp
    if mode == "constant":
        shape = tuple(s + b + a for s, (b, a) in zip(x.shape, widths))
        out = xp.full(shape, value, dtype=x.dtype, device=x.device)
        out[tuple(slice(b, b + s) for s, (b, _) in zip(x.shape, widths))] = x
        return out
    for axis, (before, after) in enumerate(widths):
        size = x.shape[axis]
        pieces = []
        if before:
            pieces.append(xp.flip(x[_along(x.ndim, axis, slice(1, before + 1))], axis=axis)
                          if mode == "reflect"
                          else xp.concat([x[_along(x.ndim, axis, slice(0, 1))]] * before, axis=axis))
        pieces.append(x)
        if after:
            pieces.append(xp.flip(x[_along(x.ndim, axis, slice(size - 1 - after, size - 1))], axis=axis)
                          if mode == "reflect"
                          else xp.concat([x[_along(x.ndim, axis, slice(size - 1, size))]] * after, axis=axis))
        if len(pieces) > 1:
            x = xp.concat(pieces, axis=axis)
    return x


@register("pad_fold", "generic")
def _pad_fold_generic(space, dy, widths, mode):
    xp = space.xp
    grad = dy
    for axis, (before, after) in enumerate(widths):
        if not before and not after:
            continue
        size = grad.shape[axis] - before - after
        core = xp.asarray(grad[_along(grad.ndim, axis, slice(before, before + size))], copy=True)
        head = grad[_along(grad.ndim, axis, slice(0, before))]
        tail = grad[_along(grad.ndim, axis, slice(before + size, None))]
        if mode == "edge":
            if before:
                core[_along(core.ndim, axis, slice(0, 1))] += xp.sum(head, axis=axis, keepdims=True)
            if after:
                core[_along(core.ndim, axis, slice(size - 1, size))] += xp.sum(tail, axis=axis, keepdims=True)
        else:
            if before:
                core[_along(core.ndim, axis, slice(1, before + 1))] += xp.flip(head, axis=axis)
            if after:
                core[_along(core.ndim, axis, slice(size - 1 - after, size - 1))] += xp.flip(tail, axis=axis)
        grad = core
    return grad if grad is not dy else xp.asarray(dy, copy=True)


# ---- indexing in the array-API standard: integer arrays through xp.take ---------------------------

@register("index_int", "generic")
def _index_int_generic(space, k):
    return operator.index(k)


def _is_index_array(part):
    return hasattr(part, "shape") and len(part.shape) > 0


@register("gather", "generic")
def _gather_generic(space, x, key):
    """NumPy's advanced indexing from the standard's operations: the basic part of the key
    applied first, the advanced axes (integer arrays, and ints beside them) moved to the
    front and flattened into one, one ``xp.take`` of the broadcast flat indices, and the
    result's axes put where NumPy puts them."""
    xp = space.xp
    key = list(key)
    given = sum(part is not None and part is not Ellipsis for part in key)
    spread = [slice(None)] * (x.ndim - given)
    dots = [i for i, part in enumerate(key) if part is Ellipsis]
    if dots:
        key[dots[0]:dots[0] + 1] = spread
    else:
        key += spread
    advanced = [i for i, part in enumerate(key) if part is not None and not isinstance(part, slice)]
    together = advanced == list(range(advanced[0], advanced[-1] + 1))
    z = x[tuple(slice(None) if i in advanced else part for i, part in enumerate(key))]
    axes, made = [], 0
    for i, part in enumerate(key):
        if i in advanced:
            axes.append(made)
        made += 1
    first = axes[0]
    rest = [a for a in range(z.ndim) if a not in axes]
    z = xp.permute_dims(z, tuple(axes) + tuple(rest))
    sizes = z.shape[:len(axes)]
    index = [xp.asarray(key[i], dtype=xp.int64, device=x.device) if not _is_index_array(key[i])
             else xp.astype(key[i], xp.int64) for i in advanced]
    index = xp.broadcast_arrays(*index)
    flat = None
    for part, size in zip(index, sizes):
        part = xp.where(part < 0, part + size, part)
        flat = part if flat is None else flat * size + part
    shape = tuple(flat.shape)
    z = xp.reshape(z, (math.prod(sizes),) + tuple(z.shape[len(axes):]))
    out = xp.reshape(xp.take(z, xp.reshape(flat, (-1,)), axis=0), shape + tuple(z.shape[1:]))
    if together and first:
        m = len(shape)
        out = xp.permute_dims(out, tuple(range(m, m + first)) + tuple(range(m)) + tuple(range(m + first, out.ndim)))
    return out


# ---- einsum in the array-API standard: diagonals, then one broadcast product and a sum ------------

@register("einsum_small", "cupy")
def _einsum_small_cupy(space, spec, *operands):
    import cupy
    return cupy.einsum(spec, *operands)


@register("einsum_small", "generic")
def _einsum_small_generic(space, spec, *operands):
    """``spec``: letters, an explicit output of distinct letters. Repeated letters in an operand
    are its diagonal (``xp.linalg.diagonal``); then every operand is laid out over the output's
    letters followed by the summed ones (size 1 where it lacks one), multiplied, and summed."""
    xp = space.xp
    inputs, _, out = spec.partition("->")
    prepared, sizes = [], {}
    for sub, x in zip(inputs.split(","), operands):
        sizes.update(zip(sub, x.shape))
        while len(set(sub)) < len(sub):
            c = next(c for c in sub if sub.count(c) > 1)
            i = sub.index(c)
            j = sub.index(c, i + 1)
            rest = [a for a in range(len(sub)) if a not in (i, j)]
            x = xp.linalg.diagonal(xp.permute_dims(x, tuple(rest) + (i, j)))
            sub = "".join(sub[a] for a in rest) + c
        prepared.append((sub, x))
    letters = list(out) + [c for c in dict.fromkeys("".join(s for s, _ in prepared)) if c not in out]
    total = None
    for sub, x in prepared:
        present = [c for c in letters if c in sub]
        if list(sub) != present:
            x = xp.permute_dims(x, tuple(sub.index(c) for c in present))
        x = xp.reshape(x, tuple(sizes[c] if c in sub else 1 for c in letters))
        total = x if total is None else total * x
    summed = tuple(range(len(out), len(letters)))
    if summed:
        total = xp.sum(total, axis=summed, dtype=total.dtype)
    return total


# ---- sorting and partitioning in the array-API standard --------------------------------------------

@register("unpermute_along_axis", "generic")
def _unpermute_along_axis_generic(space, g, perm, axis):
    xp = space.xp
    return xp.take_along_axis(g, xp.argsort(perm, axis=axis), axis=axis)     # the inverse permutation


def _on_host(kernel):
    """A kernel that NumPy runs on a host copy of integer-valued work (partitions: NumPy's own
    arrangement, which the standard has no function for), its result moved back."""
    def run(space, x, *args):
        return space.asarray(kernel(space.to_numpy(x), *args))
    run.__doc__ = f"{kernel.__name__} on a host copy (NumPy's own result)."
    return run


register("partition_order", "generic")(_on_host(partition_order))
register("argpartition_indices", "generic")(_on_host(argpartition_indices))


# ---- products and scans in the array-API standard ---------------------------------------------------

def _cumprod_generic(xp, x, axis):
    if hasattr(xp, "cumulative_prod"):
        return xp.cumulative_prod(x, axis=axis)
    n = x.shape[axis]            # before 2024.12: products of runs of doubling length
    d = 1
    while d < n:
        x = xp.concat([x[_along(x.ndim, axis, slice(0, d))],
                       x[_along(x.ndim, axis, slice(d, None))] * x[_along(x.ndim, axis, slice(0, n - d))]],
                      axis=axis)
        d *= 2
    return x


@register("running_prod", "generic")
def _running_prod_generic(space, x, axis):
    return _cumprod_generic(space.xp, x, axis)


def _reverse_cumsum_generic(xp, a, axis):
    return xp.flip(xp.cumulative_sum(xp.flip(a, axis=axis), axis=axis), axis=axis)


@register("prod_others", "generic")
def _prod_others_generic(space, x, axis):
    xp = space.xp
    ndim = x.ndim
    axes = tuple(range(ndim)) if axis is None else tuple(axis)
    order = tuple(a for a in range(ndim) if a not in axes) + axes
    moved = xp.permute_dims(x, order) if order != tuple(range(ndim)) else x
    lead = tuple(moved.shape[:ndim - len(axes)])
    n = math.prod(moved.shape[ndim - len(axes):])
    flat = xp.reshape(moved, lead + (n,))
    if n > 1:
        one = xp.ones(lead + (1,), dtype=x.dtype, device=x.device)
        left = xp.concat([one, _cumprod_generic(xp, flat[..., :-1], -1)], axis=-1)
        right = xp.concat([one, _cumprod_generic(xp, xp.flip(flat[..., 1:], axis=-1), -1)], axis=-1)
        out = left * xp.flip(right, axis=-1)
    else:
        out = xp.ones(flat.shape, dtype=x.dtype, device=x.device)
    out = xp.reshape(out, moved.shape)
    if order == tuple(range(ndim)):
        return out
    return xp.permute_dims(out, tuple(order.index(a) for a in range(ndim)))


@register("prod_others_grad", "generic")
def _prod_others_grad_generic(space, x, g, axis):
    xp = space.xp
    axes = tuple(range(x.ndim)) if axis is None else tuple(axis)
    zero = x == 0
    if not bool(xp.any(zero)):
        u = g / x
        return xp.prod(x, axis=axes, keepdims=True) / x * (xp.sum(u, axis=axes, keepdims=True) - u)
    count = xp.sum(xp.astype(zero, xp.int64), axis=axes, keepdims=True)
    safe = xp.where(zero, xp.ones_like(x), x)
    p = xp.prod(safe, axis=axes, keepdims=True)
    nothing = xp.zeros_like(g)
    u = xp.where(zero, nothing, g / safe)
    total = xp.sum(u, axis=axes, keepdims=True)
    at_zeros = xp.sum(xp.where(zero, g, nothing), axis=axes, keepdims=True)
    none = p / safe * (total - u)
    one = xp.where(zero, p * total, at_zeros * p / safe)
    two = xp.where(zero, p * (at_zeros - g), nothing)
    return xp.where(count == 0, none, xp.where(count == 1, one, xp.where(count == 2, two, nothing)))


@register("cumprod_grad", "generic")
def _cumprod_grad_generic(space, x, g, axis):
    xp = space.xp
    y = _cumprod_generic(xp, x, axis)
    zero = x == 0
    if not bool(xp.any(zero)):
        return _reverse_cumsum_generic(xp, g * y, axis) / x
    seen = xp.cumulative_sum(xp.astype(zero, xp.int64), axis=axis)
    before = seen == 0
    first = zero & (seen == 1)
    ones = xp.ones_like(x)
    a = _reverse_cumsum_generic(xp, g * y, axis) / xp.where(before, x, ones)
    b = _reverse_cumsum_generic(xp, g * _cumprod_generic(xp, xp.where(first, ones, x), axis), axis)
    return xp.where(before, a, xp.where(first, b, xp.zeros_like(a)))


@register("power_exponent", "generic")
def _power_exponent_generic(space, b):
    xp = space.xp
    return xp.where(b == 0, xp.zeros_like(b), b - 1)


# ---- index update in the array-API standard: NumPy's on a host copy --------------------------------

@register("update_at", "cupy")
def _update_at_cupy(space, mode, target, key, values):
    if mode == "set":
        target[key] = values
    elif mode == "add":
        _add_at_cupy(space, target, key, values)
    else:
        host = space.to_numpy(target)
        update_at(mode, host, tuple(space.to_numpy(k) if hasattr(k, "shape") else k for k in key),
                  space.to_numpy(values) if hasattr(values, "shape") else values)
        target[...] = space.asarray(host)


@register("update_at", "generic")
def _update_at_generic(space, mode, target, key, values):
    """The standard has neither an assignment through integer arrays nor ``ufunc.at``: NumPy's on
    a host copy, written back."""
    host = space.to_numpy(target)
    key = tuple(space.to_numpy(k) if hasattr(k, "shape") else k for k in key)
    update_at(mode, host, key, space.to_numpy(values) if hasattr(values, "shape") else values)
    target[...] = space.asarray(host)


@register("group_others", "generic")
def _group_others_generic(space, values, groups):
    return space.asarray(group_others(space.to_numpy(values), space.to_numpy(groups)))


# ---- NumPy's elementwise functions from the standard's operations ----------------------------------

def _cupy_function(name):
    def run(space, *args):
        import cupy
        return getattr(cupy, name)(*args)
    run.__name__ = run.__qualname__ = f"_{name}_cupy"
    return run


for _name in _UFUNC_KERNELS + ["round"]:        # CuPy has NumPy's own
    register("round_decimals" if _name == "round" else _name, "cupy")(_cupy_function(_name))

def _inexact_generic(xp, x):
    """``x`` as NumPy's float ufuncs take it: integers and booleans as float64."""
    if xp.isdtype(x.dtype, ("real floating", "complex floating")):
        return x
    return xp.astype(x, xp.float64)


def _common_inexact(xp, a, b):
    dtype = xp.result_type(a, b)
    if not xp.isdtype(dtype, ("real floating", "complex floating")):
        dtype = xp.float64
    return xp.astype(a, dtype), xp.astype(b, dtype)


@register("exp2", "generic")
def _exp2_generic(space, x):
    return space.xp.pow(2.0, _inexact_generic(space.xp, x))


@register("cbrt", "generic")
def _cbrt_generic(space, x):
    xp = space.xp
    wide = xp.astype(x, xp.float64)         # then rounded once: float32 as NumPy's cbrtf
    y = xp.sign(wide) * xp.abs(wide) ** (1.0 / 3.0)
    return xp.astype(y, x.dtype) if x.dtype == xp.float32 else y


@register("fabs", "generic")
def _fabs_generic(space, x):
    return space.xp.abs(_inexact_generic(space.xp, x))


def _scaled(space, x, numerator, denominator):
    """x * (numerator / denominator), the factor worked out in x's precision (as NumPy's loops)."""
    x = _inexact_generic(space.xp, x)
    if x.dtype == space.xp.float32:
        return x * float(np.float32(numerator) / np.float32(denominator))
    return x * (numerator / denominator)


@register("deg2rad", "generic")
def _deg2rad_generic(space, x):
    return _scaled(space, x, math.pi, 180.0)


@register("rad2deg", "generic")
def _rad2deg_generic(space, x):
    return _scaled(space, x, 180.0, math.pi)


@register("sinc", "generic")
def _sinc_generic(space, x):
    xp = space.xp
    x = _inexact_generic(xp, x)
    y = math.pi * xp.where(x == 0, 1.0e-20, x)          # as NumPy: sin(y) / y, 1 at 0
    return xp.sin(y) / y


@register("round_decimals", "generic")
def _round_decimals_generic(space, x, decimals):
    """As NumPy: scaled by 10 ** decimals, rounded half to even, scaled back."""
    xp = space.xp
    if not xp.isdtype(x.dtype, ("real floating", "complex floating")):
        if decimals >= 0:
            return x
        scale = 10.0 ** -decimals           # NumPy: divided, rounded, multiplied, in x's dtype
        return xp.astype(xp.round(xp.astype(x, xp.float64) / scale) * scale, x.dtype)
    if not decimals:
        return xp.round(x)
    if decimals > 0:
        return xp.round(x * 10.0 ** decimals) / 10.0 ** decimals
    return xp.round(x / 10.0 ** -decimals) * 10.0 ** -decimals


@register("fmod", "generic")
def _fmod_generic(space, a, b):
    xp = space.xp           # exact: the remainder of the magnitudes, with a's sign
    return xp.sign(a) * xp.remainder(xp.abs(a), xp.abs(b))


@register("logaddexp2", "generic")
def _logaddexp2_generic(space, a, b):
    xp = space.xp
    a, b = _common_inexact(xp, a, b)
    top = xp.maximum(a, b)
    tail = xp.log1p(xp.pow(2.0, -xp.abs(a - b))) * (1 / math.log(2))
    return xp.where(a == b, a + 1.0, top + tail)           # a == b: also both infinite


@register("heaviside", "generic")
def _heaviside_generic(space, a, b):
    xp = space.xp
    a, b = _common_inexact(xp, a, b)
    step = xp.where(a < 0, xp.zeros_like(a), xp.ones_like(a))
    return xp.where(xp.isnan(a), a, xp.where(a == 0, b, step))


@register("fmax", "generic")
def _fmax_generic(space, a, b):
    xp = space.xp
    return xp.where(xp.isnan(b), a, xp.where(xp.isnan(a), b, xp.maximum(a, b)))


@register("fmin", "generic")
def _fmin_generic(space, a, b):
    xp = space.xp
    return xp.where(xp.isnan(b), a, xp.where(xp.isnan(a), b, xp.minimum(a, b)))


# ---- CuPy has NumPy's indexing and scans ------------------------------------------------------------

@register("gather", "cupy")
def _gather_cupy(space, x, key):
    return x[key]


@register("running_prod", "cupy")
def _running_prod_cupy(space, x, axis):
    return x.cumprod(axis)


# ---- fused normalisation, GELU and binary cross-entropy on logits ------------------------------------
# (ops/reduce.py: normalize; ops/elementwise.py: erf, gelu, bce_with_logits.) Each forward returns
# the value and what its adjoint reads, so the backward recomputes nothing; the NumPy versions
# work in place on the arrays they allocate.

_FUSED = ["normalize", "normalize_grad", "batch_norm", "batch_norm_grad", "erf", "gelu_erf", "gelu_erf_grad", "gelu_tanh", "gelu_tanh_grad",
          "bce_logits", "bce_logits_grad"]
__all__ += _FUSED

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_GELU_CUBIC = 0.044715


def _own(a):
    """``a`` as an ``out=`` argument: None where it is a NumPy scalar (a 0-d result)."""
    return a if type(a) is np.ndarray else None


def _floats(x):
    """``x`` as an array of floats (integers and booleans as float64, what the dtype rule says)."""
    return x if x.dtype.kind == "f" else x.astype(np.float64)


def _reduced_mean(a, axis, inv):
    """mean(a, axis, keepdims=True) with the count's inverse given: np.add.reduce (the sum
    np.mean takes) without np.mean's Python layer, ~3 us a call at small sizes."""
    m = np.add.reduce(a, axis=axis, keepdims=True)
    m *= inv
    return m


def _centred(x, axis, eps):
    """x - mean and 1 / sqrt(var + eps) over ``axis`` (biased variance)."""
    x = _floats(x)
    inv = 1.0 / math.prod(x.shape[a] for a in axis)
    c = x - _reduced_mean(x, axis, inv)
    rstd = _reduced_mean(np.square(c), axis, inv)
    rstd += eps
    rstd = np.sqrt(rstd, out=_own(rstd))
    rstd = np.reciprocal(rstd, out=_own(rstd))
    return c, rstd


def normalize(x, axis, eps):
    """(x - mean) / sqrt(var + eps) over ``axis`` (biased variance), and 1 / sqrt(var + eps)."""
    y, rstd = _centred(x, axis, eps)
    y *= rstd
    return y, rstd


def normalize_grad(y, rstd, dy, axis):
    """The adjoint of ``normalize`` given its output y and scale rstd:
    rstd * (dy - mean(dy) - y * mean(dy * y))."""
    inv = 1.0 / math.prod(y.shape[a] for a in axis)
    dx = dy * y
    dx = np.multiply(y, _reduced_mean(dx, axis, inv), out=_own(dx))
    dx = np.subtract(dy, dx, out=_own(dx))
    dx -= _reduced_mean(dy, axis, inv)
    dx *= rstd
    return dx


def batch_norm(x, w, b, axis, eps):
    """c * (w * rstd) + b with c = x - mean and rstd = 1 / sqrt(var + eps) over ``axis``, where
    w and b have the reduced shape (kept axes): batch normalisation's scale and shift inside;
    also c and rstd."""
    c, rstd = _centred(x, axis, eps)
    y = c * (w * rstd)
    y += b
    return y, c, rstd


def batch_norm_grad(c, rstd, w, dy, axis):
    """The adjoint of ``batch_norm`` in x: w * rstd * (dy - mean(dy) - c * rstd ** 2 * mean(dy * c))."""
    inv = 1.0 / math.prod(c.shape[a] for a in axis)
    dx = dy * c
    k = _reduced_mean(dx, axis, inv)
    k *= rstd * rstd
    dx = np.multiply(c, k, out=_own(dx))
    dx = np.subtract(dy, dx, out=_own(dx))
    dx -= _reduced_mean(dy, axis, inv)
    dx *= w * rstd
    return dx


# erf without SciPy: W. J. Cody, "Rational Chebyshev approximations for the error function",
# Math. Comp. 23 (1969) 631-637, with the coefficients of his CALERF: erf(x) = x R1(x^2) for
# |x| <= 0.5; erfc(y) = exp(-y^2) R2(y) for 0.5 < y <= 4 and
# exp(-y^2) / y * (1 / sqrt(pi) - R3(1 / y^2) / y^2) beyond. Coefficients lowest degree first;
# each denominator is monic. The errors measured against math.erf are in tests/ops/test_erf.py.
_ERF_SMALL = 0.5    # Cody's interval for R1; CALERF's 0.46875 costs erf an ulp more just above it
_ERF_P1 = (3.20937758913846947e03, 3.77485237685302021e02, 1.13864154151050156e02,
           3.16112374387056560e00, 1.85777706184603153e-1)
_ERF_Q1 = (2.84423683343917062e03, 1.28261652607737228e03, 2.44024637934444173e02,
           2.36012909523441209e01)
_ERF_P2 = (1.23033935479799725e03, 2.05107837782607147e03, 1.71204761263407058e03,
           8.81952221241769090e02, 2.98635138197400131e02, 6.61191906371416295e01,
           8.88314979438837594e00, 5.64188496988670089e-1, 2.15311535474403846e-8)
_ERF_Q2 = (1.23033935480374942e03, 3.43936767414372164e03, 4.36261909014324716e03,
           3.29079923573345963e03, 1.62138957456669019e03, 5.37181101862009858e02,
           1.17693950891312499e02, 1.57449261107098347e01)
_ERF_P3 = (6.58749161529837803e-4, 1.60837851487422766e-2, 1.25781726111229246e-1,
           3.60344899949804439e-1, 3.05326634961232344e-1, 1.63153871373020978e-2)
_ERF_Q3 = (2.33520497626869185e-3, 6.05183413124413191e-2, 5.27905102951428412e-1,
           1.87295284992346725e00, 2.56852019228982242e00)
_INV_SQRT_PI = 1 / math.sqrt(math.pi)
_ERF_ONE = 6.0      # erfc(6) = 2.2e-17 is under half an ulp of 1: erf is 1.0 from here on
_ERF_PER_ELEMENT = 1024     # below this size math.erf per element is faster than the ~40 array calls


def _ratio(t, p, q, num, den):
    """p(t) / q(t) into ``num`` (``den`` a scratch buffer of t's shape), q monic of degree len(q),
    both by Horner's rule in place: each new large array costs page faults."""
    np.multiply(t, p[-1], out=num)
    np.add(t, q[-1], out=den)
    for a, b in zip(p[-2:0:-1], q[-2::-1]):
        num += a
        num *= t
        den *= t
        den += b
    num += p[0]
    num /= den
    return num


def _erfc_into(z, c, s, d):
    """erfc(z) into ``c`` for float64 z in [0.5, 6], a few ulp relative (s and d scratch buffers;
    z is overwritten). exp(-z^2) is exp(-s^2) exp(-(z - s)(z + s)) with s = z rounded down to a
    multiple of 1/16, so s^2 is exact and the rounding of z^2 does not grow with z."""
    _ratio(z, _ERF_P2, _ERF_Q2, c, s)
    far = z > 4.0
    if far.any():
        zf = z[far]
        u = np.reciprocal(np.square(zf))
        r = _ratio(u, _ERF_P3, _ERF_Q3, np.empty_like(u), np.empty_like(u))
        r *= u
        r = np.subtract(_INV_SQRT_PI, r, out=r)
        r /= zf
        c[far] = r
    np.multiply(z, 16.0, out=s)
    np.trunc(s, out=s)
    s *= 1 / 16
    np.subtract(z, s, out=d)
    z += s
    d *= z
    s *= s
    np.exp(np.negative(s, out=s), out=s)
    np.exp(np.negative(d, out=d), out=d)
    c *= s
    c *= d
    return c


_erf_scalar = np.frompyfunc(math.erf, 1, 1)


def _erf_numpy(x):
    """erf in NumPy alone: Cody's approximations in float64 (within 3 ulp in float64, and
    correctly rounded in float32, on the grids of tests/ops/test_erf.py), or math.erf per
    element for small arrays; odd, so erf(-0.0) is -0.0; erf(+-inf) = +-1 and nan stays nan.
    Other float dtypes go through float64; integers give float64.

    >>> _erf_numpy(np.array([-np.inf, -0.0, 0.5, 2.0], dtype=np.float32))
    array([-1.       , -0.       ,  0.5204999,  0.9953223], dtype=float32)
    """
    x = np.asarray(x)
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float64)
    if x.size < _ERF_PER_ELEMENT:
        out = np.asarray(_erf_scalar(x), dtype=dtype)
        return out[()] if out.ndim == 0 else out
    shape = x.shape
    x = x.astype(np.float64, copy=False).reshape(-1)
    y = np.abs(x)
    t = np.minimum(y, _ERF_SMALL)     # R1 on every element (where |x| > 0.5 it is replaced)
    t *= t
    s = np.empty_like(t)
    out = _ratio(t, _ERF_P1, _ERF_Q1, np.empty_like(t), s)
    small = y <= _ERF_SMALL
    np.multiply(out, x, out=out, where=small)
    if not small.all():                                 # nan goes this way and stays nan
        z = np.clip(y, _ERF_SMALL, _ERF_ONE, out=t)     # inf gives 1.0
        c = _erfc_into(z, np.empty_like(z), s, y)
        c = np.subtract(1.0, c, out=c)
        c = np.copysign(c, x, out=c)
        np.copyto(c, out, where=small)
        out = c
    out = out.astype(dtype, copy=False).reshape(shape)
    return out[()] if out.ndim == 0 else out


_ERF = []


def _erf_ufunc():
    """SciPy's erf when it is installed (2 to 12 times faster than ``_erf_numpy``, measured on
    1e3 to 1e6 elements); else ``_erf_numpy``."""
    if not _ERF:
        try:
            from scipy.special import erf as ufunc
        except ImportError:
            ufunc = _erf_numpy
        _ERF.append(ufunc)
    return _ERF[0]


def erf(x):
    """The error function, 2 / sqrt(pi) * integral of exp(-t ** 2) from 0 to x, in x's float dtype."""
    result = _erf_ufunc()(x)
    dtype = getattr(x, "dtype", None)
    return result.astype(dtype, copy=False) if dtype is not None and dtype.kind == "f" else result


def gelu_erf(x):
    """x * Phi(x) with Phi the normal CDF 0.5 * (1 + erf(x / sqrt(2))), and Phi(x)."""
    x = _floats(x)
    cdf = erf(x * _SQRT_HALF)
    cdf += 1
    cdf *= 0.5
    return x * cdf, cdf


def gelu_erf_grad(x, cdf, dy):
    """dy * (Phi(x) + x * phi(x)), phi the normal density."""
    dx = np.square(x)
    dx *= -0.5
    dx = np.exp(dx, out=_own(dx))
    dx *= x
    dx *= _INV_SQRT_2PI
    dx += cdf
    dx *= dy
    return dx


def gelu_tanh(x):
    """0.5 * x * (1 + tanh(u)), u = sqrt(2 / pi) * (x + 0.044715 x ** 3), and tanh(u)."""
    x = _floats(x)
    t = np.square(x)
    t *= _GELU_CUBIC
    t += 1
    t *= x
    t *= _SQRT_2_OVER_PI
    t = np.tanh(t, out=_own(t))
    y = t + 1
    y *= x
    y *= 0.5
    return y, t


def gelu_tanh_grad(x, t, dy):
    """dy * (0.5 * (1 + t) + 0.5 * x * (1 - t ** 2) * sqrt(2 / pi) * (1 + 3 * 0.044715 x ** 2))."""
    du = np.square(x)
    du *= 3 * _GELU_CUBIC * _SQRT_2_OVER_PI
    du += _SQRT_2_OVER_PI
    du *= x
    sech2 = np.square(t)
    sech2 = np.subtract(1, sech2, out=_own(sech2))
    du *= sech2
    du += t
    du += 1
    du *= dy
    du *= 0.5
    return du


def bce_logits(x, t):
    """max(x, 0) - x * t + log(1 + exp(-|x|)) (binary cross-entropy of sigmoid(x) against t,
    without overflow), and exp(-|x|)."""
    e = np.abs(x)
    e = np.negative(e, out=_own(e))
    e = np.exp(e, out=_own(e))
    loss = np.log1p(e)
    loss += np.maximum(x, 0)
    loss -= x * t
    return loss, e


def bce_logits_grad(x, t, e, dy):
    """dy * (sigmoid(x) - t), sigmoid(x) = (1 if x >= 0 else e) / (1 + e) with e = exp(-|x|)."""
    dx = np.maximum(e, x >= 0)      # e <= 1: the numerator; np.where with a scalar is ~20x slower
    dx /= 1 + e
    dx -= t
    dx *= dy
    return dx


for _name in _FUSED:
    TABLE[_name] = {"numpy": globals()[_name]}


@register("normalize", "generic")
def _normalize_generic(space, x, axis, eps):
    xp = space.xp
    y = x - xp.mean(x, axis=axis, keepdims=True)
    rstd = 1 / xp.sqrt(xp.mean(y * y, axis=axis, keepdims=True) + eps)
    return y * rstd, rstd


@register("normalize_grad", "generic")
def _normalize_grad_generic(space, y, rstd, dy, axis):
    xp = space.xp
    return rstd * (dy - xp.mean(dy, axis=axis, keepdims=True) - y * xp.mean(dy * y, axis=axis, keepdims=True))


@register("batch_norm", "generic")
def _batch_norm_generic(space, x, w, b, axis, eps):
    xp = space.xp
    c = x - xp.mean(x, axis=axis, keepdims=True)
    rstd = 1 / xp.sqrt(xp.mean(c * c, axis=axis, keepdims=True) + eps)
    return c * (w * rstd) + b, c, rstd


@register("batch_norm_grad", "generic")
def _batch_norm_grad_generic(space, c, rstd, w, dy, axis):
    xp = space.xp
    k = xp.mean(dy * c, axis=axis, keepdims=True) * rstd * rstd
    return w * rstd * (dy - xp.mean(dy, axis=axis, keepdims=True) - c * k)


def _erf_generic(space, x):
    """The standard has no erf: SciPy's (or ``_erf_numpy``) on a host copy, moved back."""
    return space.asarray(erf(space.to_numpy(x)))


register("erf", "generic")(_erf_generic)


@register("gelu_erf", "generic")
def _gelu_erf_generic(space, x):
    cdf = 0.5 * (1 + _erf_generic(space, x * _SQRT_HALF))
    return x * cdf, cdf


@register("gelu_erf_grad", "generic")
def _gelu_erf_grad_generic(space, x, cdf, dy):
    xp = space.xp
    return dy * (cdf + x * xp.exp(-0.5 * x * x) * _INV_SQRT_2PI)


@register("gelu_tanh", "generic")
def _gelu_tanh_generic(space, x):
    xp = space.xp
    t = xp.tanh(_SQRT_2_OVER_PI * x * (1 + _GELU_CUBIC * x * x))
    return 0.5 * x * (1 + t), t


@register("gelu_tanh_grad", "generic")
def _gelu_tanh_grad_generic(space, x, t, dy):
    du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * x * x)
    return 0.5 * dy * (1 + t + x * (1 - t * t) * du)


@register("bce_logits", "generic")
def _bce_logits_generic(space, x, t):
    xp = space.xp
    e = xp.exp(-xp.abs(x))
    return xp.maximum(x, xp.zeros_like(x)) - x * t + xp.log1p(e), e


@register("bce_logits_grad", "generic")
def _bce_logits_grad_generic(space, x, t, e, dy):
    xp = space.xp
    return dy * (xp.where(x >= 0, xp.ones_like(e), e) / (1 + e) - t)
