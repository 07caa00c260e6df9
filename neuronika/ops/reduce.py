"""Reductions and the softmax family. ``axis`` is None (all axes) or a sorted
tuple of axes, normalised when the node is built."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..errors import ShapeError
from ..graph import leaf
from . import Grad, batching, declare

from .elementwise import float_dtype, inexact_dtype, real_only


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
    return f"xp.reshape({name}, {target})", target


def _sum_grad(ctx):
    src, shape = _expand(ctx, "dy", ctx.gshape)
    return Grad(src, shape=shape, view=True)


def _mean_forward(ctx):
    # the count, read at run time for the adjoint: the program does not name sizes that
    # may vary (a batch)
    axes = range(len(ctx.shapes["x"])) if ctx.axis is None else ctx.axis
    count = " * ".join(f"x.shape[{a}]" for a in axes) if ctx.axis is not None else "x.size"
    args = call_args(ctx.axis, ctx.keepdims)
    return f"y = xp.mean(x{', ' + args if args else ''})\nn = {count or 1}"


def _mean_grad(ctx):
    src, shape = _expand(ctx, "dy", ctx.gshape)
    return Grad(f"{src} / n", shape=shape)


def _mean_symbolic(ctx, build, bindings):
    """The adjoint on variables (second derivatives): the count from the shapes."""
    dy = bindings["dy"]
    src, shape = _expand(ctx, "dy", ctx.gshape)
    if src != "dy":
        dy = dy.reshape(shape)
    axes = range(len(ctx.shapes["x"])) if ctx.axis is None else ctx.axis
    count = 1
    for a in axes:
        count *= ctx.shapes["x"][a]
    return dy / count


def _extreme_grad(ctx):
    """Even split among the maxima (minima): the gradient of amax, as PyTorch takes it."""
    dy, _ = _expand(ctx, "dy", ctx.gshape)
    y, _ = _expand(ctx, "y", ctx.shape)
    args = call_args(ctx.axis, True)
    return (f"hit = xp.astype(x == {y}, dtype)\n"
            f"dx = {dy} * hit / xp.sum(hit, {args})")


def _reduction(name, function, grad, doc, dtype, **kwargs):
    def forward(ctx):
        args = call_args(ctx.axis, ctx.keepdims)
        return f"xp.{function}(x{', ' + args if args else ''})"
    return declare(name, ("x",), forward, {"x": grad}, attrs=("axis", "keepdims"), shape=reduced_shape,
                   implicit_dy=True, dtype=dtype, doc=doc, batch=batching.reduction, **kwargs)


SUM = _reduction("sum", "sum", _sum_grad, "sum over axis (all axes when None)",
                 float_dtype(np.sum))
MEAN = _reduction("mean", "mean", _mean_grad, "mean over axis (all axes when None)",
                  float_dtype(np.mean))
MEAN.forward = _mean_forward
MEAN.symbolic = {"x": _mean_symbolic}
MAX = _reduction("max", "max", _extreme_grad, "maximum over axis; ties share the gradient", None)
MIN = _reduction("min", "min", _extreme_grad, "minimum over axis; ties share the gradient", None)

SOFTMAX = declare(
    "softmax", ("x",),
    "y = softmax_along(x, axis)",
    {"x": "y * (dy - xp.sum(dy * y, axis=axis, keepdims=True))"},
    attrs=("axis",), implicit_dy=True, dtype=float_dtype(np.exp), batch=batching.over_axis(),
    doc="exp(x) / sum(exp(x)) along axis, shifted by the maximum so it cannot overflow")

LOG_SOFTMAX = declare(
    "log_softmax", ("x",),
    "y = log_softmax_along(x, axis)",
    {"x": "dy - xp.exp(y) * xp.sum(dy, axis=axis, keepdims=True)"},
    attrs=("axis",), dtype=float_dtype(np.exp), batch=batching.over_axis(),
    doc="x - log(sum(exp(x))) along axis, computed without overflow")


def _class_indices_shape(x, t):
    if len(x) < 2 or tuple(t) != x[:1] + x[2:]:
        raise ShapeError(f"logits {x} (N, C, d1, ...) need class indices of shape {x[:1] + x[2:]}, "
                         f"got {t}")
    return tuple(t)


def _class_loss_shape(x, t, ignore_index, reduction):
    if reduction not in ("none", "sum", "mean"):
        raise ShapeError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    shape = _class_indices_shape(x, t)
    return shape if reduction == "none" else ()


def _class_loss_seed(ctx, bindings):
    """A class loss's seed as a graph: dy, over the number of targets kept under a mean."""
    g, t = bindings["dy"], bindings["t"]
    return g / (t != ctx.ignore_index).astype(ctx.dtype).sum() if ctx.reduction == "mean" else g


def _class_positions_leaf(ctx, x):
    """The class positions (C, 1, ..., 1) of logits or log-probabilities (N, C, d1, ...), a
    constant leaf in x's library: compared with t[:, None], a one-hot along axis 1."""
    shape = ctx.shapes["x"]
    positions = np.arange(shape[1]).reshape((-1,) + (1,) * (len(shape) - 2))
    return leaf(backend.move(positions, x._node.space))


def _softmax_cross_entropy_symbolic(ctx, build, bindings):
    """The adjoint as a graph (second derivatives): one op, softmax_cross_entropy_grad, whose
    seed is dy (the loss of each target), dy for every target (a sum) or dy over the number of
    targets kept (a mean)."""
    return build(SOFTMAX_CROSS_ENTROPY_GRAD, (bindings["x"], _class_loss_seed(ctx, bindings), bindings["t"]),
                 (ctx.ignore_index,))


def _class_loss_batch(b):
    """A loss over class indices (``softmax_cross_entropy``, ``class_nll``), reduced, over a
    batch of examples: the loss of each target (the merged batch of ``batching.leading``),
    reduced per example."""
    ignore_index, reduction = b.attrs
    if reduction == "none":
        return batching.leading(b)
    x, t = b.full(0), b.full(1)
    each = b.again([b.merged(x), b.merged(t)], (ignore_index, "none"))
    each = b.reshape(each, t.shape)
    axes = tuple(range(1, len(t.shape)))
    total = b.build(SUM, (each,), (axes, False))
    if reduction == "sum":
        return total
    ignored = leaf(backend.move(np.asarray(ignore_index, t.dtype), t.space))
    kept = b.build("cast", (b.build("not_equal", (t, ignored)),), (np.dtype(x.dtype),))
    return b.build("div", (total, b.build(SUM, (kept,), (axes, False))))


def _cross_entropy_grad_shape(x, g, t, ignore_index):
    _class_indices_shape(x, t)
    if len(g) > len(t) or any(a != b and a != 1 for a, b in zip(g[::-1], t[::-1])):
        raise ShapeError(f"a gradient of shape {g} does not broadcast to the class indices' {t}")
    return tuple(x)


def _cross_entropy_grad_x_symbolic(ctx, build, bindings):
    """d/dx <(softmax(x) - onehot(t)) * k, dy> with k = g where t is kept, else 0:
    softmax's adjoint of w = dy * k."""
    x, g, t, dy = bindings["x"], bindings["g"], bindings["t"], bindings["dy"]
    s = build(SOFTMAX, (x,), (1,))
    w = dy * (g * (t != ctx.ignore_index).astype(ctx.dtype))[:, None]
    return s * (w - build(SUM, (w * s,), ((1,), True)))


def _cross_entropy_grad_g_symbolic(ctx, build, bindings):
    """sum over classes of (softmax(x) - onehot(t)) * dy, 0 where t is ignored."""
    x, t, dy = bindings["x"], bindings["t"], bindings["dy"]
    hot = build("equal", (t[:, None], _class_positions_leaf(ctx, x))).astype(ctx.dtype)
    kept = (t != ctx.ignore_index).astype(ctx.dtype)
    return build(SUM, ((build(SOFTMAX, (x,), (1,)) - hot) * dy,), ((1,), False)) * kept


SOFTMAX_CROSS_ENTROPY_GRAD = declare(
    "softmax_cross_entropy_grad", ("x", "g", "t"),
    "y = class_nll_grad(log_softmax_classes(x), t, g, ignore_index)",
    {"x": "s = xp.exp(log_softmax_classes(x))\n"
          "w = dy * xp.expand_dims(g * xp.astype(t != ignore_index, dtype), axis=1)\n"
          "dx = s * (w - xp.sum(w * s, axis=1, keepdims=True))",
     "g": lambda ctx: Grad("xp.sum(class_nll_grad(log_softmax_classes(x), t, xp.ones_like(g), ignore_index) * dy, "
                           "axis=1)", shape=ctx.shapes["t"])},
    symbolic={"x": _cross_entropy_grad_x_symbolic, "g": _cross_entropy_grad_g_symbolic},
    attrs=("ignore_index",), shape=_cross_entropy_grad_shape, n_differentiable=2,
    dtype=lambda inputs, attrs: inputs[0].dtype, batch=batching.leading,
    doc="(softmax(x) - onehot(t)) * g along the class axis 1, 0 where t == ignore_index: the "
        "gradient of softmax_cross_entropy, an op of its own so that it can be differentiated again")


def _class_loss(name, forward, grad, symbolic, doc):
    """A loss of scores (N, C, d1, ...) at class indices t (N, d1, ...), ``reduction`` inside
    it: what ``softmax_cross_entropy`` and ``class_nll`` share."""
    return declare(name, ("x", "t"), forward, {"x": grad}, symbolic={"x": symbolic},
                   attrs=("ignore_index", "reduction"), shape=_class_loss_shape,
                   implicit_dy=True, n_differentiable=1, dtype=lambda inputs, attrs: inputs[0].dtype,
                   batch=_class_loss_batch, doc=doc)


SOFTMAX_CROSS_ENTROPY = _class_loss(
    "softmax_cross_entropy",
    "logp = log_softmax_classes(x)\n"
    "y = class_nll(logp, t, ignore_index, reduction)",
    "class_nll_grad(logp, t, dy, ignore_index, reduction)", _softmax_cross_entropy_symbolic,
    "-log_softmax(x, axis=1) at the class indices t (N, d1, ...), 0 where t == ignore_index, "
    "then reduced ('none', 'sum', or 'mean' over the targets kept); the gradient is "
    "(softmax(x) - onehot(t)) * dy (over the count under a mean)")


def _class_nll_symbolic(ctx, build, bindings):
    """-onehot(t) * dy as a graph (under a mean, dy over the count of kept targets); an
    ignored target matches no class."""
    x, t = bindings["x"], bindings["t"]
    hot = build("equal", (t[:, None], _class_positions_leaf(ctx, x))).astype(ctx.dtype)
    g = _class_loss_seed(ctx, bindings)
    if ctx.reduction == "none":             # dy may be a number spread over the targets
        shape = tuple(ctx.shapes["t"])
        if tuple(g.shape) != shape:
            g = build("broadcast_to", (g,), (shape,))
        g = g[:, None]
    return -(hot * g)


CLASS_NLL = _class_loss(
    "class_nll", "y = class_nll(x, t, ignore_index, reduction)",
    "class_nll_input_grad(x, t, dy, ignore_index, reduction)", _class_nll_symbolic,
    "-x at the class indices t (N, d1, ...) along axis 1, 0 where t == ignore_index, then "
    "reduced ('none', 'sum', or 'mean' over the targets kept): the NLL of log-probabilities; "
    "the gradient is -onehot(t) * dy, with no scatter")


def _normalize_symbolic(ctx, build, bindings):
    """rstd * (dy - mean(dy) - y * mean(dy * y)) in catalogue ops, rstd from x."""
    x, y, dy = bindings["x"], bindings["y"], bindings["dy"]
    axis = ctx.axis
    centred = x - build(MEAN, (x,), (axis, True))
    rstd = 1 / build("sqrt", (build(MEAN, (centred * centred,), (axis, True)) + ctx.eps,), ())
    return rstd * (dy - build(MEAN, (dy,), (axis, True)) - y * build(MEAN, (dy * y,), (axis, True)))


NORMALIZE = declare(
    "normalize", ("x",), "y, rstd = normalize(x, axis, eps)",
    {"x": "normalize_grad(y, rstd, dy, axis)"}, symbolic={"x": _normalize_symbolic},
    attrs=("axis", "eps"), dtype=real_only("normalize", float_dtype(np.mean)), batch=batching.over_axis(),
    doc="(x - mean(x)) / sqrt(var(x) + eps) over the axes in axis (a sorted tuple; biased "
        "variance): layer and batch normalisation without their scale and shift")


def _batch_norm_shape(x, w, b, axis, eps):
    kept = reduced_shape(x, axis, True)
    if tuple(w) != kept or tuple(b) != kept:
        raise ShapeError(f"an input of shape {x} normalised over axes {axis} needs weight and bias of "
                         f"shape {kept}, got {w} and {b}")
    return tuple(x)


def _batch_norm_symbolic_x(ctx, build, bindings):
    x, w = bindings["x"], bindings["w"]
    return _normalize_symbolic(ctx, build, {"x": x, "y": build(NORMALIZE, (x,), (ctx.axis, ctx.eps)),
                                            "dy": bindings["dy"] * w})


def _batch_norm_symbolic_w(ctx, build, bindings):
    y = build(NORMALIZE, (bindings["x"],), (ctx.axis, ctx.eps))
    return build(SUM, (bindings["dy"] * y,), (ctx.axis, True))


BATCH_NORM = declare(
    "batch_norm", ("x", "w", "b"), "y, c, rstd = batch_norm(x, w, b, axis, eps)",
    {"x": "batch_norm_grad(c, rstd, w, dy, axis)",
     "w": "xp.sum(dy * c, axis=axis, keepdims=True) * rstd",
     "b": "xp.sum(dy, axis=axis, keepdims=True)"},
    symbolic={"x": _batch_norm_symbolic_x, "w": _batch_norm_symbolic_w},
    attrs=("axis", "eps"), shape=_batch_norm_shape, dtype=real_only("batch_norm", inexact_dtype),
    batch=batching.over_axis(),
    doc="normalize(x, axis, eps) * w + b with w and b of the reduced shape (kept axes): batch "
        "normalisation in training, its scale and shift applied inside")


# ---- products and scans ---------------------------------------------------------------------
# prod's gradient is the product of the other elements (the kernel prod_others) and its
# second derivative the kernel prod_others_grad: both exact with zeros. The third
# derivative divides by x: exact away from zeros. cumprod's gradient is the kernel
# cumprod_grad, exact with zeros; its adjoint (cumprod's second derivative) divides by x:
# exact away from zeros.

def _prod_grad(ctx):
    dy, _ = _expand(ctx, "dy", ctx.gshape)
    return f"{dy} * prod_others(x, axis)"


PROD = _reduction("prod", "prod", _prod_grad,
                  "product over axis (all axes when None); first and second derivatives are exact "
                  "with zeros",
                  float_dtype(np.prod))

PROD_OTHERS = declare(
    "prod_others", ("x",), "prod_others(x, axis)", {"x": "prod_others_grad(x, dy, axis)"},
    attrs=("axis",), batch=batching.over_axis(),
    doc="for each element, the product of the others reduced with it: prod's gradient, exact "
        "with zeros")

# d<dy, F(x, g)>/dx for F = prod_others_grad, away from zeros: with u = g / x, w = dy / x
# and P the group's product, P / x[m] * ((sum(u) - u[m]) * (sum(w) - w[m]) - (sum(u * w) -
# u[m] * w[m])). In g, F is the Hessian of prod (symmetric) applied to g: its adjoint is F
# itself, exact.
PROD_OTHERS_GRAD = declare(
    "prod_others_grad", ("x", "g"), "prod_others_grad(x, g, axis)",
    {"x": "u = g / x\n"
          "w = dy / x\n"
          "dx = xp.prod(x, axis=axis, keepdims=True) / x * ("
          "(xp.sum(u, axis=axis, keepdims=True) - u) * (xp.sum(w, axis=axis, keepdims=True) - w)"
          " - xp.sum(u * w, axis=axis, keepdims=True) + u * w)",
     "g": "prod_others_grad(x, dy, axis)"},
    attrs=("axis",), batch=batching.over_axis(),
    doc="prod_others' gradient given g (prod's second derivative applied to g), exact with "
        "zeros, as an op so it can be differentiated again (exactly away from zeros)")


def _cumsum_src(name, axis, reverse):
    if not reverse:
        return f"xp.cumulative_sum({name}, axis={axis})"
    return f"xp.flip(xp.cumulative_sum(xp.flip({name}, axis={axis}), axis={axis}), axis={axis})"


def _cumsum_symbolic(ctx, build, bindings):
    return build(CUMSUM, (bindings["dy"],), (ctx.axis, not ctx.reverse))


CUMSUM = declare(
    "cumsum", ("x",), lambda ctx: _cumsum_src("x", ctx.axis, ctx.reverse),
    {"x": lambda ctx: _cumsum_src("dy", ctx.axis, not ctx.reverse)},
    symbolic={"x": _cumsum_symbolic}, attrs=("axis", "reverse"), dtype=float_dtype(np.cumsum),
    batch=batching.over_axis(),
    doc="running sum along axis (from the end when reverse); the gradient is the running sum "
        "the other way")

CUMPROD = declare(
    "cumprod", ("x",), "running_prod(x, axis)", {"x": "cumprod_grad(x, dy, axis)"},
    attrs=("axis",), dtype=float_dtype(np.cumprod), batch=batching.over_axis(),
    doc="running product along axis; the gradient is exact with zeros")

CUMPROD_GRAD = declare(
    "cumprod_grad", ("x", "g"), "cumprod_grad(x, g, axis)",
    {"x": "cumprod_grad(x, g * xp.cumulative_sum(dy / x, axis=axis), axis) - dy * y / x",
     "g": "running_prod(x, axis) * xp.cumulative_sum(dy / x, axis=axis)"},
    attrs=("axis",), batch=batching.over_axis(),
    doc="the gradient of cumprod given its output's gradient g, as an op so it can be "
        "differentiated again (exactly away from zeros of x)")


# ---- integer and boolean results: no gradient ---------------------------------------------------

def _arg_shape(shape, axis, keepdims):
    if axis is None:
        return (1,) * len(shape) if keepdims else ()
    return reduced_shape(shape, (axis,), keepdims)


def _arg_reduction(name, doc):
    def forward(ctx):
        parts = [] if ctx.axis is None else [f"axis={ctx.axis}"]
        if ctx.keepdims:
            parts.append("keepdims=True")
        return f"xp.{name}(x{''.join(', ' + p for p in parts)})"
    return declare(name, ("x",), forward, {}, attrs=("axis", "keepdims"), shape=_arg_shape,
                   n_differentiable=0, dtype=lambda inputs, attrs: np.dtype(np.intp), doc=doc,
                   batch=batching.arg_reduction)


ARGMAX = _arg_reduction("argmax", "the index of the (first) maximum along axis (flat when None)")
ARGMIN = _arg_reduction("argmin", "the index of the (first) minimum along axis (flat when None)")


def _logical_reduction(name, dtype, doc):
    def forward(ctx):
        args = call_args(ctx.axis, ctx.keepdims)
        return f"xp.{name}(x{', ' + args if args else ''})"
    return declare(name, ("x",), forward, {}, attrs=("axis", "keepdims"), shape=reduced_shape,
                   n_differentiable=0, dtype=lambda inputs, attrs: np.dtype(dtype), doc=doc,
                   batch=batching.reduction)


ALL = _logical_reduction("all", bool, "whether every element over axis is nonzero")
ANY = _logical_reduction("any", bool, "whether some element over axis is nonzero")
COUNT_NONZERO = _logical_reduction("count_nonzero", np.intp, "how many elements over axis are nonzero")
