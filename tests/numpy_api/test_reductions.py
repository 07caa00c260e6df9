"""Reductions, scans, sorting and statistics: values against NumPy (dtype too), NumPy's
dispatch, gradients of first and second order, over every axis form (None, int,
negative, tuple), keepdims, 0-d and zero-size values; ties shared evenly; prod and
cumprod with zeros against their closed forms; ufunc.reduce / accumulate on variables."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika.errors import GradientError
from neuronika.graph import linearize

from .cases import Case, away, distinct, uniform

AXES = [None, 0, -1, (0, 2)]
SHAPE = (2, 3, 4)

#: name -> how its inputs are drawn (ties and zeros avoided where they are kinks)
REDUCTIONS = {
    "sum": uniform, "mean": uniform, "prod": away, "max": distinct, "min": distinct,
    "amax": distinct, "amin": distinct, "ptp": distinct, "var": uniform, "std": uniform,
    "median": distinct, "nansum": uniform, "nanmean": uniform, "nanmax": distinct,
    "nanmin": distinct,
}


def _with_nans(shape, sample):
    x = sample(shape)
    x.reshape(-1)[::5] = np.nan
    return x


def _axis_cases():
    out = []
    for name, sample in REDUCTIONS.items():
        for axis in AXES:
            for keepdims in (False, True):
                out.append(Case(name, lambda np_, x, name=name, axis=axis, k=keepdims:
                                getattr(np_, name)(x, axis=axis, keepdims=k), sample(SHAPE),
                                id=f"{name}-axis={axis}-keepdims={keepdims}"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x), sample(()), id=f"{name}-0d"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=1), sample((3, 5)),
                        id=f"{name}-odd-count"))
    for name in ("nansum", "nanmean", "nanmax", "nanmin"):
        sample = REDUCTIONS[name]
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=-1),
                        _with_nans((3, 4), sample), id=f"{name}-with-nans"))
    out.append(Case("nanmax", lambda np_, x: np_.nanmax(x, axis=1),
                    np.array([[np.nan, np.nan], [1.0, np.nan]]), order=0, id="nanmax-all-nan-lane"))
    return out


def _statistics_cases():
    out = []
    x = uniform(SHAPE, seed=1)
    for ddof in (0, 1):
        for name in ("var", "std"):
            for axis in (None, 1, (0, 2)):
                out.append(Case(name, lambda np_, x, name=name, axis=axis, ddof=ddof:
                                getattr(np_, name)(x, axis=axis, ddof=ddof), x,
                                id=f"{name}-ddof={ddof}-axis={axis}"))
    out.append(Case("var", lambda np_, x: np_.var(x, axis=0, correction=1), x, id="var-correction"))
    out.append(Case("std", lambda np_, x: np_.std(x, axis=-1, ddof=1.5, keepdims=True), x,
                    id="std-float-ddof"))
    out.append(Case("var", lambda np_, x, m: np_.var(x, axis=1, mean=m), x,
                    x.mean(axis=1, keepdims=True) + 0.1, id="var-given-mean"))
    out.append(Case("var", lambda np_, x: np_.var(x, axis=1, dtype=np.float32), x, value_rtol=1e-6,
                    order=1, eps=1e-2, rtol=1e-3, atol=1e-3, id="var-dtype"))
    # average: no weights, weights of the same shape, 1-D weights along an axis, weights
    # along a tuple of axes in either order, returned=True, keepdims
    w_full, w_1d, w_02 = uniform(SHAPE, 0.5, 2.0, seed=2), uniform((3,), 0.5, 2.0, seed=3), \
        uniform((2, 4), 0.5, 2.0, seed=4)
    for axis in AXES:
        out.append(Case("average", lambda np_, x, axis=axis: np_.average(x, axis=axis), x,
                        id=f"average-axis={axis}"))
        out.append(Case("average", lambda np_, x, w, axis=axis: np_.average(x, axis=axis, weights=w),
                        x, w_full, id=f"average-weights-axis={axis}"))
    out.append(Case("average", lambda np_, x, w: np_.average(x, axis=1, weights=w, returned=True),
                    x, w_1d, id="average-1d-weights-returned"))
    out.append(Case("average", lambda np_, x, w: np_.average(x, axis=-2, weights=w, keepdims=True),
                    x, w_1d, id="average-1d-weights-keepdims"))
    out.append(Case("average", lambda np_, x, w: np_.average(x, axis=(0, 2), weights=w, returned=True),
                    x, w_02, id="average-tuple-axis-weights"))
    out.append(Case("average", lambda np_, x, w: np_.average(x, axis=(2, 0), weights=w),
                    x, w_02.T, id="average-tuple-axis-reversed"))
    out.append(Case("average", lambda np_, x, w: np_.average(x, weights=w, returned=True), x, w_full,
                    id="average-weights-all-returned"))
    out.append(Case("average", lambda np_, x: np_.average(x, axis=1, returned=True), x,
                    id="average-returned-count"))
    # quantile / percentile: q a number or an array, every axis form, keepdims
    d = distinct(SHAPE, seed=5)
    for axis in AXES:
        for keepdims in (False, True):
            out.append(Case("quantile", lambda np_, x, axis=axis, k=keepdims:
                            np_.quantile(x, 0.3, axis=axis, keepdims=k), d,
                            id=f"quantile-axis={axis}-keepdims={keepdims}"))
            out.append(Case("quantile", lambda np_, x, axis=axis, k=keepdims:
                            np_.quantile(x, np.array([[0.1, 0.5], [0.8, 0.95]]), axis=axis, keepdims=k),
                            d, id=f"quantile-array-q-axis={axis}-keepdims={keepdims}"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, [0.0, 0.25, 1.0], axis=0), distinct((5, 3)),
                    id="quantile-ends"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, 1, axis=0), distinct((5, 3)),
                    id="quantile-int-q"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, 0.4), distinct(()), id="quantile-0d"))
    out.append(Case("percentile", lambda np_, x: np_.percentile(x, 40, axis=1), d, id="percentile-number"))
    out.append(Case("percentile", lambda np_, x: np_.percentile(x, [10, 50, 75], axis=(0, 2), keepdims=True),
                    d, id="percentile-list"))
    out.append(Case("percentile", lambda np_, x: np_.percentile(x, 100.0), d, id="percentile-top"))
    # median: even and odd counts
    for shape, axis in (((5,), None), ((4,), None), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), (0, 1)),
                        ((2, 3, 4), (0, 2))):
        out.append(Case("median", lambda np_, x, axis=axis: np_.median(x, axis=axis), distinct(shape),
                        id=f"median-{shape}-axis={axis}"))
    out.append(Case("median", lambda np_, x: np_.median(x, axis=1), np.array([[1.0, 2.0, 2.0, 5.0]]),
                    order=0, id="median-ties"))
    return out


def _scan_and_sort_cases():
    out = []
    for name, sample in (("cumsum", uniform), ("cumprod", away)):
        for axis in (None, 0, 1, -1):
            out.append(Case(name, lambda np_, x, name=name, axis=axis: getattr(np_, name)(x, axis=axis),
                            sample(SHAPE), id=f"{name}-axis={axis}"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x), sample(()), id=f"{name}-0d"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=1), sample((2, 0, 3)),
                        id=f"{name}-zero-size"))
    for axis in (-1, 0, 1, None):
        out.append(Case("sort", lambda np_, x, axis=axis: np_.sort(x, axis=axis), distinct(SHAPE),
                        id=f"sort-axis={axis}"))
    out.append(Case("sort", lambda np_, x: np_.sort(x, kind="stable"), distinct((7,)), id="sort-stable"))
    out.append(Case("sort", lambda np_, x: np_.sort(x, stable=True), distinct((3, 4)), id="sort-stable-flag"))
    out.append(Case("sort", lambda np_, x: np_.sort(x, axis=0), uniform((0, 3)), id="sort-zero-size"))
    out.append(Case("sort", lambda np_, x: np_.sort(x), np.array([2.0, 1.0, 2.0, 0.0]), order=0,
                    id="sort-ties"))
    return out


def _difference_cases():
    """diff and gradient: every axis form, orders, prepend / append, spacings and coordinate
    arrays, second-order edges, integer and float32 inputs (values), zero-size lanes."""
    out = []
    x = uniform(SHAPE, seed=21)
    for n in (1, 2, 3):
        for axis in (-1, 0, 1):
            out.append(Case("diff", lambda np_, x, n=n, axis=axis: np_.diff(x, n=n, axis=axis), x,
                            id=f"diff-n={n}-axis={axis}"))
    out += [
        Case("diff", lambda np_, x: np_.diff(x), uniform((1,)), id="diff-length-1"),
        Case("diff", lambda np_, x: np_.diff(x, n=5), uniform((3,)), id="diff-beyond-length"),
        Case("diff", lambda np_, x: np_.diff(x, n=0), uniform((3,)), id="diff-n=0"),
        Case("diff", lambda np_, x: np_.diff(x, axis=0), uniform((0, 3)), id="diff-zero-size"),
        Case("diff", lambda np_, x: np_.diff(x, axis=1, prepend=0.5, append=-1.0), uniform((2, 3)),
             id="diff-prepend-append-numbers"),
        Case("diff", lambda np_, x, p: np_.diff(x, n=2, axis=0, prepend=p), uniform((3, 2)),
             uniform((2, 2), seed=1), id="diff-prepend-variable"),
        Case("diff", lambda np_, x: np_.diff(x, append=np.array([[1.0], [2.0]])), uniform((2, 3)),
             id="diff-append-array"),
        Case("diff", lambda np_, x: np_.diff(x), np.array([True, False, False, True]), id="diff-bool"),
        Case("diff", lambda np_, x: np_.diff(x, axis=0), np.arange(6, dtype=np.uint8).reshape(3, 2),
             id="diff-uint8"),
        Case("diff", lambda np_, x: np_.diff(x), uniform((4,)).astype(np.float32), wrt=(),
             id="diff-float32"),
    ]
    for axis in (None, 0, -1, (2, 0)):
        out.append(Case("gradient", lambda np_, x, axis=axis: np_.gradient(x, axis=axis), x,
                        id=f"gradient-axis={axis}"))
        out.append(Case("gradient", lambda np_, x, axis=axis: np_.gradient(x, axis=axis, edge_order=2),
                        uniform((3, 4, 5), seed=22), id=f"gradient-edge-2-axis={axis}"))
    uneven = np.array([0.0, 0.5, 1.5, 1.75, 3.0])
    out += [
        Case("gradient", lambda np_, x: np_.gradient(x), uniform((2,)), id="gradient-two-points"),
        Case("gradient", lambda np_, x: np_.gradient(x, 0.25), uniform((5,)), id="gradient-spacing"),
        Case("gradient", lambda np_, x: np_.gradient(x, 0.5, 2.0), uniform((3, 4)), id="gradient-spacings"),
        Case("gradient", lambda np_, x: np_.gradient(x, uneven), uniform((5,)), id="gradient-coordinates"),
        Case("gradient", lambda np_, x: np_.gradient(x, uneven, edge_order=2), uniform((5,)),
             id="gradient-coordinates-edge-2"),
        Case("gradient", lambda np_, x: np_.gradient(x, np.arange(4) * 2, 0.5, axis=(1, 0)),
             uniform((3, 4)), id="gradient-even-coordinates"),
        Case("gradient", lambda np_, x: np_.gradient(x, uneven[:3], axis=0), uniform((3, 2)),
             id="gradient-coordinates-axis"),
        Case("gradient", lambda np_, x: np_.gradient(x, 1.5j), uniform((4,)) + 1j * uniform((4,), seed=1),
             id="gradient-complex"),
        Case("gradient", lambda np_, x: np_.gradient(x), np.array([[1, 4, 9], [2, 3, 7]]), id="gradient-int"),
        Case("gradient", lambda np_, x: np_.gradient(x, np.float64(0.5)), uniform((4,)).astype(np.float32),
             wrt=(), value_rtol=1e-6, id="gradient-float32"),
        Case("gradient", lambda np_, x: np_.gradient(x, uneven), uniform((5,)).astype(np.float32),
             wrt=(), value_rtol=1e-6, id="gradient-float32-coordinates"),
        Case("gradient", lambda np_, x: np_.gradient(x, axis=1), uniform((0, 3)), id="gradient-zero-size"),
    ]
    return out


def _partition_cases():
    """partition: NumPy's own result element for element (also where argpartition's order differs
    from partition's, on long lanes), every kth form; argpartition as values."""
    out = []
    d = distinct(SHAPE, seed=23)
    for kth in (0, 2, -1, [0, 3]):
        out.append(Case("partition", lambda np_, x, kth=kth: np_.partition(x, kth), d, id=f"partition-kth={kth}"))
        out.append(Case("argpartition", lambda np_, x, kth=kth: np_.argpartition(x, kth), d,
                        id=f"argpartition-kth={kth}"))
    long_lane = np.round(np.random.default_rng(3).standard_normal((2, 3000)), 1)     # many ties
    out += [
        Case("partition", lambda np_, x: np_.partition(x, 1, axis=0), d, id="partition-axis=0"),
        Case("partition", lambda np_, x: np_.partition(x, (1, 5), axis=None), d, id="partition-flat"),
        Case("partition", lambda np_, x: np_.partition(x, 0), uniform((3, 0)), id="partition-zero-size"),
        Case("partition", lambda np_, x: np_.partition(x, -1, axis=None), long_lane, order=0,
             id="partition-long-flat"),
        Case("partition", lambda np_, x: np_.partition(x, [7, 1500, 2999]), long_lane, order=0,
             id="partition-long-kths"),
        Case("partition", lambda np_, x: np_.partition(x, 1), np.array([3, 1, 2, 1], dtype=np.int16),
             id="partition-int16"),
        Case("argpartition", lambda np_, x: np_.argpartition(x, 1, axis=None), d, id="argpartition-flat"),
    ]
    return out


def _zero_and_size_cases():
    out = []
    for name in ("sum", "prod", "mean"):
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=1), uniform((2, 0, 3)),
                        id=f"{name}-zero-size"))
    out.append(Case("prod", lambda np_, x: np_.prod(x, axis=0), uniform((0, 3)), id="prod-empty-axis"))
    # std of one element per lane is 0 whatever the element: its gradient is exactly 0, not
    # the infinite slope of sqrt at 0 times a zero
    out.append(Case("std", lambda np_, x: np_.std(x, axis=1), uniform((3, 1, 2)), id="std-one-per-lane"))
    out.append(Case("std", lambda np_, x: np_.std(x, axis=(0, 2), keepdims=True), uniform((1, 3, 1)),
                    id="std-one-per-lane-keepdims"))
    out.append(Case("std", lambda np_, x: np_.std(x), np.array([0.3 + 1.2j]), id="std-one-complex"))
    out.append(Case("std", lambda np_, a: np_.std([a, 2 * a + 1.0]), uniform(()), dispatch=False,
                    id="std-list-of-variables"))
    for name in ("var", "std", "median", "nanmean"):          # NaN over an empty axis, as in NumPy
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=0), uniform((0, 3)),
                        id=f"{name}-empty-axis"))
    for name in ("cumsum", "cumprod"):
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=0, dtype=np.float32),
                        uniform((3, 2), 0.5, 1.5), value_rtol=1e-6, order=1, eps=1e-3, rtol=1e-3,
                        atol=1e-3, id=f"{name}-dtype"))
    out.append(Case("mean", lambda np_, x: np_.mean(x, axis=0, dtype=np.float32), uniform((3, 2)),
                    value_rtol=1e-6, order=1, eps=1e-2, rtol=1e-4, atol=1e-4, id="mean-dtype"))
    out.append(Case("sum", lambda np_, x: np_.sum(x, axis=1, initial=2.0), uniform((2, 3)), id="sum-initial"))
    out.append(Case("prod", lambda np_, x: np_.prod(x, axis=1, initial=2.0), away((2, 3)), id="prod-initial"))
    out.append(Case("prod", lambda np_, x: np_.prod(x, dtype=np.float32), away((2, 3)), value_rtol=1e-6,
                    order=1, eps=1e-3, rtol=1e-3, atol=1e-3, id="prod-dtype"))
    out.append(Case("max", lambda np_, x: np_.max(x, axis=1), np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]),
                    order=0, id="max-ties"))          # not differentiable at ties: see the test below
    # prod and cumprod are multilinear, so central differences are exact even at zeros: the
    # gradients there are checked as Cases (second order for prod, whose second derivative is
    # exact with zeros; first for cumprod); closed forms are tested below
    zeros = np.array([[0.0, 1.5, -2.0, 0.7], [1.2, 0.0, 0.0, -0.8], [0.5, 1.1, -1.3, 2.0],
                      [0.0, 0.0, 0.0, 1.0]])
    for name, order in (("prod", 2), ("cumprod", 1)):
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x, axis=1), zeros, order=order,
                        id=f"{name}-with-zeros"))
    out.append(Case("prod", lambda np_, x: np_.prod(x, axis=(0, 1)), zeros[:2], id="prod-with-zeros-all"))
    out.append(Case("prod", lambda np_, x: np_.prod(x, axis=0), zeros[:, :3], id="prod-with-zeros-axis-0"))
    return out


def _dtype_cases():
    """Integer, boolean and float32 inputs: NumPy's result dtypes (values only)."""
    out = []
    ints = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    small = np.array([[1, 2, 3], [3, 1, 2]], dtype=np.uint8)
    bools = ints > 0
    calls = {
        "sum": lambda np_, x: np_.sum(x, axis=0), "prod": lambda np_, x: np_.prod(x, axis=1),
        "mean": lambda np_, x: np_.mean(x), "var": lambda np_, x: np_.var(x, axis=1),
        "std": lambda np_, x: np_.std(x, ddof=1), "median": lambda np_, x: np_.median(x, axis=1),
        "cumsum": lambda np_, x: np_.cumsum(x, axis=1), "cumprod": lambda np_, x: np_.cumprod(x),
        "max": lambda np_, x: np_.max(x, axis=0), "ptp": lambda np_, x: np_.ptp(x, axis=1),
        "average": lambda np_, x: np_.average(x, axis=0),
        "quantile": lambda np_, x: np_.quantile(x, 0.3, axis=1),
        "nansum": lambda np_, x: np_.nansum(x), "nanmean": lambda np_, x: np_.nanmean(x, axis=0),
    }
    for name, call in calls.items():
        for array in (ints, small, bools):
            if name in ("ptp", "quantile") and array.dtype == bool:       # NumPy raises
                continue
            out.append(Case(name, call, array, wrt=(), id=f"{name}-{array.dtype}"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, 1, axis=0), ints, wrt=(), id="quantile-int8-int-q"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, [0, 1]), ints, wrt=(), id="quantile-int8-int-qs"))
    out.append(Case("average", lambda np_, x, w: np_.average(x, axis=1, weights=w), ints,
                    np.array([1, 2, 3, 4]), wrt=(), id="average-int-weights"))
    f32 = distinct((3, 4)).astype(np.float32)
    float32 = {
        "sum": lambda np_, x: np_.sum(x), "prod": lambda np_, x: np_.prod(x, axis=0),
        "var": lambda np_, x: np_.var(x), "median": lambda np_, x: np_.median(x, axis=0),
        "quantile": lambda np_, x: np_.quantile(x, 0.25, axis=1),
        "percentile": lambda np_, x: np_.percentile(x, 30),
        "cumprod": lambda np_, x: np_.cumprod(x, axis=0),
        "average": lambda np_, x, w=np.ones(4, np.float32): np_.average(x, axis=1, weights=w),
    }
    for name, call in float32.items():
        out.append(Case(name, call, f32, wrt=(), value_rtol=1e-6, id=f"{name}-float32"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, np.float64(0.25)), f32, wrt=(),
                    value_rtol=1e-6, id="quantile-float32-float64-q"))
    out.append(Case("quantile", lambda np_, x: np_.quantile(x, [0.25]), f32, wrt=(), value_rtol=1e-6,
                    id="quantile-float32-list-q"))
    out.append(Case("sum", lambda np_, x: np_.sum(x, dtype=np.float64), ints, wrt=(), id="sum-int8-dtype"))
    return out


def _complex_cases():
    """Complex inputs (HIPS autograd's convention; var and std have real results)."""
    r = np.random.default_rng(13)
    z = r.uniform(0.5, 1.5, (3, 4)) * np.exp(1j * r.uniform(-3, 3, (3, 4)))
    calls = {
        "sum": lambda np_, x: np_.sum(x, axis=1), "mean": lambda np_, x: np_.mean(x, axis=0),
        "prod": lambda np_, x: np_.prod(x, axis=1), "cumsum": lambda np_, x: np_.cumsum(x, axis=0),
        "cumprod": lambda np_, x: np_.cumprod(x, axis=1), "var": lambda np_, x: np_.var(x, axis=1),
        "std": lambda np_, x: np_.std(x, ddof=1),
        "average": lambda np_, x, w=np.array([1.0, 2.0, 0.5, 1.5]): np_.average(x, axis=1, weights=w),
    }
    return [Case(name, call, z, id=f"{name}-complex") for name, call in calls.items()]


def _non_differentiable_cases():
    out = []
    d = distinct(SHAPE, seed=7)
    for name in ("argmax", "argmin"):
        for axis in (None, 0, -1):
            for keepdims in (False, True):
                out.append(Case(name, lambda np_, x, name=name, axis=axis, k=keepdims:
                                getattr(np_, name)(x, axis=axis, keepdims=k), d,
                                id=f"{name}-axis={axis}-keepdims={keepdims}"))
    out.append(Case("argmax", lambda np_, x: np_.argmax(x, axis=1), np.array([[1.0, 3.0, 3.0]]),
                    id="argmax-ties-first"))
    for axis in (-1, 0, None):
        out.append(Case("argsort", lambda np_, x, axis=axis: np_.argsort(x, axis=axis), d,
                        id=f"argsort-axis={axis}"))
    out.append(Case("argsort", lambda np_, x: np_.argsort(x, kind="stable"), np.array([2.0, 1.0, 2.0, 1.0]),
                    id="argsort-stable-ties"))
    masks = np.array([[[0.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]] * 2)
    for name in ("all", "any", "count_nonzero"):
        for axis in (None, 1, -1, (0, 2)):
            for keepdims in (False, True):
                out.append(Case(name, lambda np_, x, name=name, axis=axis, k=keepdims:
                                getattr(np_, name)(x, axis=axis, keepdims=k), masks,
                                id=f"{name}-axis={axis}-keepdims={keepdims}"))
        out.append(Case(name, lambda np_, x, name=name: getattr(np_, name)(x), np.array(0.0), id=f"{name}-0d"))
    out.append(Case("nonzero", lambda np_, x: np_.nonzero(x), masks, id="nonzero-3d"))
    out.append(Case("nonzero", lambda np_, x: np_.nonzero(x), masks[0, 0], id="nonzero-1d"))
    out.append(Case("flatnonzero", lambda np_, x: np_.flatnonzero(x), masks, id="flatnonzero"))
    sorted_ = np.array([0.0, 1.0, 1.0, 2.5, 4.0])
    for side in ("left", "right"):
        out.append(Case("searchsorted", lambda np_, a, v, side=side: np_.searchsorted(a, v, side=side),
                        sorted_, np.array([[1.0, -1.0], [5.0, 2.5]]), id=f"searchsorted-{side}"))
    out.append(Case("searchsorted", lambda np_, a: np_.searchsorted(a, 1.0), sorted_, id="searchsorted-scalar"))
    out.append(Case("searchsorted", lambda np_, a, v: np_.searchsorted(a, v, sorter=np.array([2, 0, 1])),
                    np.array([3.0, 1.0, 2.0]), np.array([1.5, 3.5]), id="searchsorted-sorter"))
    return out


def _ufunc_method_cases():
    """numpy.add.reduce and friends on variables reach the same functions (the namespace
    argument is ignored: NumPy's ufunc methods are called both ways)."""
    x = uniform((3, 4), seed=9)
    return [
        Case("sum", lambda np_, x: np.add.reduce(x), x, id="add.reduce"),
        Case("sum", lambda np_, x: np.add.reduce(x, axis=None, keepdims=True), x, id="add.reduce-all"),
        Case("prod", lambda np_, x: np.multiply.reduce(x, axis=1), away((3, 4)), id="multiply.reduce"),
        Case("cumsum", lambda np_, x: np.add.accumulate(x), x, id="add.accumulate"),
        Case("cumsum", lambda np_, x: np.add.accumulate(x, axis=1), x, id="add.accumulate-axis"),
        Case("cumprod", lambda np_, x: np.multiply.accumulate(x, axis=1), away((3, 4)), id="multiply.accumulate"),
        Case("max", lambda np_, x: np.maximum.reduce(x, axis=-1), distinct((3, 4)), id="maximum.reduce"),
        Case("min", lambda np_, x: np.minimum.reduce(x), distinct((3, 4)), id="minimum.reduce"),
        Case("all", lambda np_, x: np.logical_and.reduce(x, axis=1), x > 0, id="logical_and.reduce"),
        Case("any", lambda np_, x: np.logical_or.reduce(x), x > 0, id="logical_or.reduce"),
    ]


def _method_cases():
    """The ndarray methods installed on variables."""
    d = distinct((3, 4), seed=11)
    return [
        Case("prod", lambda np_, x: np_.asarray(x).prod(axis=1), away((3, 4)), dispatch=False, id="v.prod"),
        Case("std", lambda np_, x: np_.asarray(x).std(ddof=1), d, dispatch=False, id="v.std"),
        Case("var", lambda np_, x: np_.asarray(x).var(axis=0), d, dispatch=False, id="v.var"),
        Case("cumsum", lambda np_, x: np_.asarray(x).cumsum(axis=0), d, dispatch=False, id="v.cumsum"),
        Case("cumprod", lambda np_, x: np_.asarray(x).cumprod(), away((2, 3)), dispatch=False, id="v.cumprod"),
        Case("argmax", lambda np_, x: np_.asarray(x).argmax(axis=1), d, dispatch=False, id="v.argmax"),
        Case("argmin", lambda np_, x: np_.asarray(x).argmin(), d, dispatch=False, id="v.argmin"),
        Case("argsort", lambda np_, x: np_.asarray(x).argsort(axis=0), d, dispatch=False, id="v.argsort"),
        Case("all", lambda np_, x: np_.asarray(x).all(axis=0), d > 0, dispatch=False, id="v.all"),
        Case("any", lambda np_, x: np_.asarray(x).any(), d > 0, dispatch=False, id="v.any"),
        Case("nonzero", lambda np_, x: np_.asarray(x).nonzero(), d > 0, dispatch=False, id="v.nonzero"),
    ]


_CLOSE = (np.array([1.0, np.inf, 2.0]), np.array([1.0 + 1e-9, np.inf, 2.0 - 1e-10]))

CASES = ([Case("allclose", lambda np_, a, b: np_.allclose(a, b), *_CLOSE, wrt=()),
          Case("allclose", lambda np_, a, b: np_.allclose(a, b, rtol=0.0, atol=0.0), *_CLOSE, wrt=(),
               id="allclose-exact"),
          Case("array_equal", lambda np_, a, b: np_.array_equal(a, b), *_CLOSE, wrt=()),
          Case("array_equal", lambda np_, a: np_.array_equal(a, a[:2]), _CLOSE[0], wrt=(),
               id="array_equal-shapes")]
         + _axis_cases() + _statistics_cases() + _scan_and_sort_cases() + _difference_cases()
         + _partition_cases() + _zero_and_size_cases() + _dtype_cases() + _complex_cases()
         + _non_differentiable_cases() + _ufunc_method_cases() + _method_cases())
for _case in CASES:
    if _case.name in nnp.NON_DIFFERENTIABLE:
        _case.wrt = ()                          # integer and boolean results: values only


@pytest.fixture(autouse=True)
def _quiet():
    """NumPy warns on empty means and all-NaN lanes; so may neuronika (same computation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# ---- closed forms -------------------------------------------------------------------------------

def _grad(fn, x):
    v = neuronika.from_ndarray(np.array(x, dtype=np.float64)).requires_grad()
    fn(v).backward()
    return v.grad


def _others(x):
    """The product of the other elements, by brute force."""
    return np.array([np.prod(np.delete(x, i)) for i in range(x.size)])


@pytest.mark.parametrize("x", [[2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 0.0, 4.0], [0.0, 0.0, 0.0, 1.0],
                               [1.5, -2.0, 0.5, 3.0], [0.0]], ids=["one-zero", "two-zeros",
                                                                   "three-zeros", "no-zero", "single"])
def test_prod_gradient_is_the_product_of_the_others(x):
    x = np.array(x)
    np.testing.assert_allclose(_grad(lambda v: nnp.prod(v), x), _others(x), rtol=1e-15)
    both = np.stack([x, x[::-1]])
    g = _grad(lambda v: nnp.sum(nnp.prod(v, axis=1) * np.array([1.0, 2.0])), both)
    np.testing.assert_allclose(g, np.stack([_others(x), 2 * _others(x[::-1])]), rtol=1e-15)


def test_prod_gradient_over_several_axes_with_zeros():
    x = np.array([[[1.0, 0.0], [2.0, 3.0]], [[0.5, 4.0], [0.0, 0.0]]])
    g = _grad(lambda v: nnp.sum(nnp.prod(v, axis=(0, 2)) * np.array([1.0, -1.0])), x)
    want = np.zeros_like(x)
    for j, sign in ((0, 1.0), (1, -1.0)):
        lane = x[:, j, :]
        want[:, j, :] = sign * _others(lane.ravel()).reshape(lane.shape)
    np.testing.assert_allclose(g, want, rtol=1e-15)


def _product_without(x, *skip):
    return np.prod([x[j] for j in range(x.size) if j not in skip])


@pytest.mark.parametrize("x", [[1.5, -2.0, 0.5, 3.0], [2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 0.0, 4.0],
                               [0.0, 0.0, 0.0, 1.0], [0.0, 0.0]],
                         ids=["no-zero", "one-zero", "two-zeros", "three-zeros", "only-zeros"])
def test_prod_second_order_is_the_closed_form_with_zeros(x):
    x = np.array(x)
    n = x.size
    want = np.array([[0.0 if i == k else _product_without(x, i, k) for k in range(n)] for i in range(n)])
    np.testing.assert_allclose(neuronika.hessian(lambda v: nnp.prod(v))(x), want, rtol=1e-14)
    both = np.stack([x, 2 * x])                             # the same through prod over an axis
    h = neuronika.hessian(lambda v: nnp.sum(nnp.prod(v, axis=1)))(both)
    np.testing.assert_allclose(h[0, :, 0, :], want, rtol=1e-14)
    np.testing.assert_allclose(h[1, :, 1, :], want * 2.0 ** (n - 2), rtol=1e-14)
    np.testing.assert_array_equal(h[0, :, 1, :], 0.0)


def test_prod_third_order_away_from_zeros_is_the_closed_form():
    x, v = np.array([1.5, -2.0, 0.5, 3.0, 0.8]), np.array([0.3, -1.0, 2.0, 0.7, 1.1])
    n = x.size

    def directional(w):                                    # sum_k v[k] * d prod / d x[k]
        return nnp.sum(neuronika.grad(lambda u: nnp.prod(u))(w) * v)

    want = np.array([[sum(v[k] * _product_without(x, i, m, k) for k in range(n) if k not in (i, m))
                      if i != m else 0.0 for m in range(n)] for i in range(n)])
    np.testing.assert_allclose(neuronika.hessian(directional)(x), want, rtol=1e-12)


@pytest.mark.parametrize("x", [[2.0, 0.0, 3.0, -1.5], [0.0, 2.0, 0.0, 4.0], [1.0, 2.0, 3.0, 0.0],
                               [0.0, 0.0, 0.0, 0.0], [1.5, -2.0, 0.5, 3.0]])
def test_cumprod_gradient_with_zeros_is_the_closed_form(x):
    x = np.array(x)
    g = np.array([0.3, -1.0, 2.0, 0.7])
    n = x.size
    want = np.array([sum(g[i] * np.prod([x[j] for j in range(i + 1) if j != k]) for i in range(k, n))
                     for k in range(n)])
    got = _grad(lambda v: nnp.sum(nnp.cumprod(v) * g), x)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)


def test_cumsum_gradient_is_the_reversed_cumsum():
    g = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    got = _grad(lambda v: nnp.sum(nnp.cumsum(v, axis=1) * g), np.zeros((2, 3)))
    np.testing.assert_array_equal(got, np.cumsum(g[:, ::-1], axis=1)[:, ::-1])


def test_sort_gradient_goes_back_to_where_each_element_came_from():
    x = np.array([[3.0, 1.0, 2.0], [0.5, -1.0, 4.0]])
    weights = np.array([10.0, 20.0, 30.0])
    got = _grad(lambda v: nnp.sum(nnp.sort(v, axis=1) * weights), x)
    np.testing.assert_array_equal(got, [[30.0, 10.0, 20.0], [20.0, 10.0, 30.0]])
    ties = _grad(lambda v: nnp.sum(nnp.sort(v) * weights), np.array([1.0, 1.0, 0.0]))
    assert sorted(ties) == [10.0, 20.0, 30.0]          # each position's gradient to one element


def test_median_and_quantile_gradients_are_the_interpolation_weights():
    x = np.array([4.0, 1.0, 3.0, 2.0])                       # sorted: 1 2 3 4
    np.testing.assert_allclose(_grad(lambda v: nnp.median(v), x), [0.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(_grad(lambda v: nnp.median(v[:3]), x), [0.0, 0.0, 1.0, 0.0])
    # q = 0.4: position 1.2 between the 2nd (2.0) and 3rd (3.0) smallest, weights 0.8 and 0.2
    np.testing.assert_allclose(_grad(lambda v: nnp.quantile(v, 0.4), x), [0.0, 0.0, 0.2, 0.8])
    np.testing.assert_allclose(_grad(lambda v: nnp.percentile(v, 100), x), [1.0, 0.0, 0.0, 0.0])


def test_var_and_average_closed_forms():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    n = x.size
    for ddof in (0, 1):
        np.testing.assert_allclose(_grad(lambda v: nnp.var(v, ddof=ddof), x), 2 * (x - x.mean()) / (n - ddof))
    a, w = neuronika.from_ndarray(x).requires_grad(), neuronika.from_ndarray(np.array([1.0, 2.0, 3.0, 4.0])).requires_grad()
    avg, total = nnp.average(a, weights=w, returned=True)
    assert float(total.data) == 10.0
    avg.backward()
    np.testing.assert_allclose(a.grad, w.data / 10.0)
    np.testing.assert_allclose(w.grad, (x - float(avg.data)) / 10.0)


def test_ties_share_the_gradient_evenly():
    x = neuronika.from_ndarray(np.array([[1.0, 3.0, 3.0]])).requires_grad()
    np.max(x).backward()
    np.testing.assert_array_equal(x.grad, [[0.0, 0.5, 0.5]])
    y = neuronika.from_ndarray(np.array([5.0, 1.0, 5.0, 1.0])).requires_grad()
    np.ptp(y).backward()
    np.testing.assert_array_equal(y.grad, [0.5, -0.5, 0.5, -0.5])


# ---- graphs, dispatch, errors ---------------------------------------------------------------------

def _signature(v):
    return linearize(v._node)[2]


def test_ufunc_methods_build_the_namespace_graphs():
    x = neuronika.from_ndarray(uniform((3, 4))).requires_grad()
    assert _signature(np.add.reduce(x)) == _signature(nnp.sum(x, axis=0))
    assert _signature(np.multiply.reduce(x, axis=1)) == _signature(nnp.prod(x, axis=1))
    assert _signature(np.add.accumulate(x)) == _signature(nnp.cumsum(x, axis=0))
    assert _signature(np.multiply.accumulate(x, axis=1)) == _signature(nnp.cumprod(x, axis=1))
    assert _signature(np.maximum.reduce(x)) == _signature(nnp.max(x, axis=0))
    assert _signature(np.minimum.reduce(x, axis=None)) == _signature(nnp.min(x))
    assert _signature(np.maximum.reduce(x, 0, None, None, True)) == \
        _signature(nnp.max(x, axis=0, keepdims=True))             # dtype=None given positionally


def test_methods_are_the_namespace_functions():
    x = neuronika.from_ndarray(distinct((3, 4))).requires_grad()
    assert _signature(x.prod(axis=0)) == _signature(nnp.prod(x, axis=0))
    assert _signature(x.std()) == _signature(nnp.std(x))
    assert _signature(x.cumsum(1)) == _signature(nnp.cumsum(x, 1))
    assert _signature(x.ptp(axis=1)) == _signature(nnp.ptp(x, axis=1))


def test_functional_second_order_through_statistics():
    def loss(x):
        return nnp.std(x) + nnp.median(x) * nnp.quantile(x, 0.3) + nnp.sum(nnp.cumprod(x)) + nnp.prod(x)

    x = away((5,), seed=3)
    h = neuronika.hessian(loss)(x)
    np.testing.assert_allclose(h, h.T, rtol=1e-10, atol=1e-12)


def test_sort_of_a_0d_value_raises_like_numpy():
    v = neuronika.from_ndarray(np.array(1.0))
    with pytest.raises(ValueError):
        np.sort(np.array(1.0))
    with pytest.raises(ValueError):
        nnp.sort(v)


def test_empty_reductions_without_identity_raise_like_numpy():
    with pytest.raises(ValueError, match="zero-size"):
        np.max(neuronika.from_ndarray(np.zeros((0, 3))))
    with pytest.raises(ValueError, match="empty"):
        nnp.argmax(neuronika.from_ndarray(np.zeros((0, 3))))
    with pytest.raises(IndexError):
        nnp.quantile(neuronika.from_ndarray(np.zeros(0)), 0.5)


@pytest.mark.parametrize("call, kind", [
    (lambda v: nnp.sum(v, out=np.zeros(())), TypeError),
    (lambda v: nnp.prod(v, where=np.array([True, False, True])), TypeError),
    (lambda v: nnp.var(v, out=np.zeros(())), TypeError),
    (lambda v: nnp.var(v, ddof=1, correction=1), ValueError),
    (lambda v: nnp.quantile(v, 1.5), ValueError),
    (lambda v: nnp.percentile(v, -1), ValueError),
    (lambda v: nnp.quantile(v, 0.5, method="nearest"), TypeError),
    (lambda v: nnp.sort(v, order="f"), TypeError),
    (lambda v: nnp.sort(v, kind="stable", stable=True), ValueError),
    (lambda v: nnp.average(v, weights=np.zeros(3)), ZeroDivisionError),
    (lambda v: nnp.average(v, weights=np.ones(2)), TypeError),
    (lambda v: nnp.average(v, axis=0, weights=np.ones(2)), ValueError),
    (lambda v: nnp.cumsum(v, out=np.zeros(3)), TypeError),
    (lambda v: nnp.quantile(v > 1, 0.5), TypeError),
    (lambda v: nnp.ptp(v > 1), TypeError),
])
def test_refusals_name_the_function(call, kind):
    v = neuronika.from_ndarray(np.array([1.0, 2.0, 3.0])).requires_grad()
    with pytest.raises(kind):
        call(v)


def test_nonzero_reads_values_outside_a_trace_and_refuses_inside():
    x = neuronika.from_ndarray(np.array([0.0, 2.0, 0.0, 3.0])).requires_grad()
    (index,) = nnp.nonzero(x)
    np.testing.assert_array_equal(index.data, [1, 3])
    nnp.sum(x[index]).backward()                        # the indices select, differentiably
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 0.0, 1.0])
    with pytest.raises(GradientError, match="nonzero"):
        neuronika.grad(lambda v: nnp.sum(v[nnp.nonzero(v)]))(np.array([0.0, 1.0]))


def test_integer_results_have_no_gradient_inside_a_trace():
    def loss(x):
        i = nnp.argmax(x)
        order = nnp.argsort(x)
        return x[i] * 2.0 + nnp.sum(x[order] * np.arange(3.0)) + nnp.count_nonzero(x > 0)

    g = neuronika.grad(loss)(np.array([0.5, 2.0, -1.0]))
    np.testing.assert_allclose(g, [1.0, 4.0, 0.0])
