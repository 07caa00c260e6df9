"""Gradients as graphs, for derivatives of derivatives.

``grad(f)`` called on variables (as happens inside another trace: ``grad(grad(f))``,
``hessian``, ``hvp``) cannot run compiled code: its result must itself be part
of the graph. So the same adjoint templates the code generator splices are
*evaluated on variables* here, with ``xp`` bound to ``neuronika.numpy``, whose
functions build catalogue ops. A kernel call in a template (``pad_fold(...)``)
builds the op whose forward is that kernel. The gradient graph that comes out is
an ordinary graph: the outer trace compiles it like any other.
"""
from __future__ import annotations

import functools
import textwrap

import numpy as np

from . import numpy as xp
from .errors import GradientError
from .graph import leaf, linearize
from .numpy._core import build, var_of
from .ops import OPS, ZERO, Grad
from .transform import passes
from .transform.codegen import _context, _resolve, _statics
from .transform.templates import GLOBALS
from .variable import Var, _wrap


def _kernel_ops():
    """Kernel name -> a function building the op whose forward template is exactly
    ``kernel(<inputs>, <attributes>)``: how a template's kernel call is evaluated on
    variables."""
    builders = {}
    for op in OPS.values():
        if not isinstance(op.forward, str) or op.variadic:
            continue
        src = op.forward.strip()
        head, _, rest = src.partition("(")
        if head in GLOBALS and head != "xp" and rest == ", ".join(op.inputs + op.attrs) + ")":
            builders[head] = functools.partial(_apply_kernel, op)
    return builders


def _apply_kernel(op, *args):
    inputs, attrs = args[:len(op.inputs)], args[len(op.inputs):]
    like = next((v._node for v in inputs if isinstance(v, Var)), None)
    return build(op, tuple(var_of(v, like) for v in inputs), tuple(attrs))


@functools.lru_cache(maxsize=1)
def _kernels():
    return _kernel_ops()


@functools.lru_cache(maxsize=1024)
def _compiled(src):
    src = textwrap.dedent(src).strip()
    try:
        return compile(src, "<adjoint template>", "eval"), True
    except SyntaxError:
        return compile(src, "<adjoint template>", "exec"), False


def _evaluate(src, bindings, where):
    code, is_expression = _compiled(src)
    namespace = {"xp": xp, **_kernels(), **bindings}
    try:
        if is_expression:
            return eval(code, namespace)
        exec(code, namespace)
        return namespace["dx"]
    except NameError as error:
        raise GradientError(f"second derivatives through {where} are not supported ({error}: its "
                            f"adjoint reads a value only its compiled forward has)") from None


def _build(op, inputs, attrs=()):
    return build(op, inputs, attrs)


def _unbroadcast(g, target, extent):
    """The code generator's reduction of a gradient to its input's shape
    (``passes.unbroadcast``), with variables."""
    summed, factor, kept = passes.reduce_plan(g.shape, target, extent)
    offset = len(extent) - len(g.shape)
    if summed:
        g = xp.sum(g, axis=tuple(a - offset for a in summed), keepdims=True)
    if len(g.shape) > len(target):
        g = xp.reshape(g, passes._strip(kept))
    if factor != 1:
        g = g * factor
    return g


def _to_input_dtype(contribution, dtype):
    """A contribution converted to its input's dtype; a complex gradient of a real input
    keeps its real part."""
    if contribution.dtype.kind == "c" and dtype.kind != "c":
        contribution = xp.real(contribution)
    if contribution.dtype != dtype:
        contribution = build("cast", (contribution,), (dtype,))
    return contribution


def _filled(number, node):
    """An array shaped and typed like ``node``, in its space, filled with ``number``."""
    if node.space is None:
        return np.full(node.shape, number, node.dtype)
    return node.space.xp.full(node.shape, number, dtype=node.space.dtype(node.dtype),
                              device=node.space.device)


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
        grads[out._node] = _wrap(leaf(_filled(1, out._node)))
    for node in reversed(order):
        op = node.op
        if op is None or node not in grads:
            continue
        g = grads[node]
        names = op.input_names(len(node.inputs))
        for slot, (name, inp) in enumerate(zip(names, node.inputs)):
            spec = op.grad_template(slot)
            if spec is None or spec is ZERO or inp not in reaches:
                continue
            dy = g
            if not op.implicit_dy and dy.shape != node.shape:
                dy = xp.broadcast_to(dy, node.shape)
            ctx = _context(node, names, gshape=dy.shape, slot=slot)
            bindings = _statics(ctx)
            for other_name, other in zip(names, node.inputs):
                bindings[other_name] = _wrap(other)
            bindings["y"] = _wrap(node)
            bindings["dy"] = dy
            symbolic = op.symbolic_grad(slot)
            if symbolic is not None:
                contribution = symbolic(ctx, _build, bindings)
            else:
                grad = _resolve(spec, ctx)
                if grad is ZERO:
                    continue
                src = grad.src if isinstance(grad, Grad) else grad
                contribution = _evaluate(src, bindings, f"op {op.name}")
            contribution = var_of(contribution, dy._node)
            extent = node.shape if op.elementwise else passes.broadcast(contribution.shape, inp.shape)
            contribution = _unbroadcast(contribution, inp.shape, extent)
            contribution = _to_input_dtype(contribution, inp.dtype)
            grads[inp] = grads[inp] + contribution if inp in grads else contribution
    result = []
    for node, w in zip(wrt_nodes, wrt):
        g = grads.get(node)
        if g is None:
            g = _wrap(leaf(_filled(0, node)))
        elif g.shape != w.shape:
            g = xp.broadcast_to(g, w.shape)
        result.append(g)
    return result

