"""Gradients as graphs, for derivatives of derivatives.

``grad(f)`` called on variables (as happens inside another trace: ``grad(grad(f))``,
``hessian``, ``hvp``) cannot run compiled code: its result must itself be part
of the graph. So the same adjoint templates the code generator splices are
*evaluated on variables* here, with ``xp`` bound to a namespace whose functions
build catalogue ops. The gradient graph that comes out is an ordinary graph:
the outer trace compiles it like any other.
"""
from __future__ import annotations

import functools
import textwrap

import numpy as np

from ..errors import GradientError
from ..graph import apply, leaf, linearize
from ..ops import OPS, Grad
from . import passes
from .codegen import _context, _resolve, _statics


def _var(node):
    from ..variable import _wrap
    return _wrap(node)


def _as_var(value, like=None):
    from ..variable import Var, _operand
    if isinstance(value, Var):
        return value
    if like is None:
        return _var(leaf(np.asarray(value)))
    return _var(_operand(value, like._node))


def _op(name, inputs, attrs=()):
    return _var(apply(OPS[name], tuple(v._node for v in inputs), attrs))


class _Add:
    @staticmethod
    def at(*args):
        raise GradientError("second derivatives: an adjoint that adds in place (xp.add.at) needs a "
                            "symbolic form in the op catalogue")


class SymbolicNumPy:
    """The part of NumPy that adjoint templates use, building graph nodes instead."""

    add = _Add()

    @staticmethod
    def where(c, a, b):
        like = next(v for v in (a, b, c) if hasattr(v, "_node"))
        c = _as_var(c, like)
        a = _as_var(a, b if hasattr(b, "_node") else like)
        b = _as_var(b, a)
        return _op("where", (c, a, b))

    @staticmethod
    def zeros(shape, dtype=np.float64):
        return _var(leaf(np.zeros(shape, dtype)))

    @staticmethod
    def zeros_like(x):
        return _var(leaf(np.zeros(x.shape, x.dtype)))

    @staticmethod
    def broadcast_to(x, shape):
        return _op("broadcast_to", (x,), (tuple(shape),))

    @staticmethod
    def swapaxes(x, a, b):
        axes = list(range(x.ndim))
        axes[a], axes[b] = axes[b], axes[a]
        return x.transpose(*axes)

    @staticmethod
    def transpose(x, axes=None):
        return x.transpose(*(axes or ()))

    @staticmethod
    def pad(x, widths, mode="constant", constant_values=0.0):
        mode = {"edge": "replicate"}.get(mode, mode)
        return x.pad(widths, mode=mode, value=constant_values)

    @staticmethod
    def concatenate(values, axis=0):
        from ..creation import concatenate
        return concatenate(values, axis)

    @staticmethod
    def stack(values, axis=0):
        from ..creation import stack
        return stack(values, axis)


for _name in ("tanh", "exp", "log", "sqrt", "abs", "sin", "cos", "sign"):
    setattr(SymbolicNumPy, _name, staticmethod(
        (lambda name: lambda x: _op(name, (x,)))(_name)))

KERNELS = {
    "pad_fold": lambda x, widths, mode: _op("pad_fold", (x,), (tuple(widths), mode)),
    "log_where_nonzero": lambda x: _op("log_where_nonzero", (x,)),
}


@functools.lru_cache(maxsize=1024)
def _compiled(src):
    src = textwrap.dedent(src).strip()
    try:
        return compile(src, "<adjoint template>", "eval"), True
    except SyntaxError:
        return compile(src, "<adjoint template>", "exec"), False


def _evaluate(src, bindings, where):
    code, is_expression = _compiled(src)
    namespace = {"xp": SymbolicNumPy, **KERNELS, **bindings}
    try:
        if is_expression:
            return eval(code, namespace)
        exec(code, namespace)
        return namespace["dx"]
    except NameError as error:
        raise GradientError(f"second derivatives through {where} are not supported ({error}: its "
                            f"adjoint reads a value only its compiled forward has)") from None


def _unbroadcast(g, target, extent):
    """The code generator's reduction of a gradient to its input's shape
    (``passes.unbroadcast``), with variables."""
    summed, factor, kept = passes.reduce_plan(g.shape, target, extent)
    offset = len(extent) - len(g.shape)
    if summed:
        g = g.sum(axis=tuple(a - offset for a in summed), keepdims=True)
    if len(g.shape) > len(target):
        g = g.reshape(passes._strip(kept))
    if factor != 1:
        g = g * factor
    return g


def gradients(out, wrt):
    """Variables holding d(out)/d(w) for each variable ``w`` in ``wrt`` (``out`` one element)."""
    wrt_nodes = [w._node for w in wrt]
    order, _, _ = linearize(out._node)
    reaches = set(wrt_nodes)
    for node in order:
        op = node.op
        if op is not None and any(inp in reaches and op.grad_template(slot) is not None
                                  for slot, inp in enumerate(node.inputs)):
            reaches.add(node)
    grads = {}
    if out._node in reaches:
        grads[out._node] = _var(leaf(np.ones(out.shape, out.dtype)))
    for node in reversed(order):
        op = node.op
        if op is None or node not in grads:
            continue
        g = grads[node]
        names = op.input_names(len(node.inputs))
        for slot, (name, inp) in enumerate(zip(names, node.inputs)):
            spec = op.grad_template(slot)
            if spec is None or inp not in reaches:
                continue
            dy = g
            if not op.implicit_dy and dy.shape != node.shape:
                dy = SymbolicNumPy.broadcast_to(dy, node.shape)
            ctx = _context(node, names, gshape=dy.shape, slot=slot)
            bindings = _statics(ctx)
            for other_name, other in zip(names, node.inputs):
                bindings[other_name] = _var(other)
            bindings["y"] = _var(node)
            bindings["dy"] = dy
            symbolic = op.symbolic_grad(slot)
            if symbolic is not None:
                contribution = symbolic(ctx, SymbolicNumPy, bindings)
            else:
                grad = _resolve(spec, ctx)
                src = grad.src if isinstance(grad, Grad) else grad
                contribution = _evaluate(src, bindings, f"op {op.name}")
            contribution = _as_var(contribution, dy)
            extent = node.shape if op.elementwise else passes.broadcast(contribution.shape, inp.shape)
            contribution = _unbroadcast(contribution, inp.shape, extent)
            if contribution.dtype != inp.dtype:
                contribution = _op("cast", (contribution,), (inp.dtype,))
            grads[inp] = grads[inp] + contribution if inp in grads else contribution
    result = []
    for node, w in zip(wrt_nodes, wrt):
        g = grads.get(node)
        if g is None:
            g = _var(leaf(np.zeros(w.shape, w.dtype)))
        elif g.shape != w.shape:
            g = SymbolicNumPy.broadcast_to(g, w.shape)
        result.append(g)
    return result
