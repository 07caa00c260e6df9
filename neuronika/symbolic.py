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

import ast
import functools
import textwrap

import gast
import numpy as np

from . import backend
from . import numpy as xp
from .errors import GradientError
from .graph import collector_paused, leaf, linearize
from .numpy._core import build, var_of
from .ops import OPS, ZERO, Grad, expression
from .ops.expression import EXPR
from .transform import passes
from .transform.codegen import _PATTERNS, _context, _kind, _remember, _resolve, _statics
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
        tree, is_expression = ast.parse(src, "<adjoint template>", "eval"), True
    except SyntaxError:
        tree, is_expression = ast.parse(src, "<adjoint template>", "exec"), False
    tree = ast.fix_missing_locations(_Squares().visit(tree))
    return compile(tree, "<adjoint template>", "eval" if is_expression else "exec"), is_expression


class _Squares(ast.NodeTransformer):
    """``v * v`` (one name twice) as ``__square__(v)`` (or ``call(v)``): one ``square`` node for
    a variable, whose adjoint is one term, not a ``mul`` with the same input twice (two terms,
    added). The same value bit for bit (``square`` is ``v * v``)."""

    def __init__(self, call=None):
        self.call = call or (lambda name: ast.Call(ast.Name("__square__", ast.Load()), [name], []))

    def visit_BinOp(self, node):
        self.generic_visit(node)
        if (isinstance(node.op, ast.Mult) and isinstance(node.left, ast.Name)
                and isinstance(node.right, ast.Name) and node.left.id == node.right.id):
            return ast.copy_location(self.call(node.left), node)
        return node


def _xp_square(name):
    return ast.Call(ast.Attribute(ast.Name("xp", ast.Load()), "square", ast.Load()), [name], [])


def _square(v):
    if isinstance(v, Var) and v.dtype.kind in "fc":
        return xp.square(v)
    return v * v


def _build(op, inputs, attrs=()):
    return build(op, inputs, attrs)


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


def gradients(out, wrt, fuse=True):
    """Variables holding d(out)/d(w) for each variable ``w`` in ``wrt`` (``out`` one element).
    ``fuse``: an elementwise adjoint template that is one expression is one ``expr`` node
    (``_fusion``); forward mode asks for none, so that what its tangent reads of the primal
    stays nodes of their own (``linearize`` computes them once, in the primal program)."""
    # Many small objects and no garbage cycles: the collector, which would walk the whole
    # graph again and again, waits until the gradient graph is built (as in code generation).
    with collector_paused:
        return _gradients(out, wrt, fuse)


class _Adjoint:
    """What one input's adjoint needs for one node kind (``codegen._kind``), a slot and a
    shape of ``dy``: worked out once, used for every node of that kind."""

    __slots__ = ("statics", "ctx", "hook", "code", "expression", "where", "plans", "src", "_unit", "names",
                 "_fused")

    def __init__(self, node, names, slot, gshape):
        op = node.op
        self.ctx = ctx = _context(node, names, gshape=gshape, slot=slot)
        self.statics = _statics(ctx)
        self.where = f"op {op.name}"
        self.hook = op.symbolic_grad(slot)
        self.code = self.src = self._unit = None
        self.names = tuple(names)
        self._fused = {}
        if self.hook is None:
            grad = _resolve(op.grad_template(slot), ctx)
            if grad is ZERO:
                self.code = ZERO
            else:
                self.src = grad.src if isinstance(grad, Grad) else grad
                self.code, self.expression = _compiled(self.src)
                if not op.elementwise or isinstance(grad, Grad):
                    self._fused = None
        self.plans = {}     # (contribution's shape, input's shape) -> its reduction

    def unit(self):
        """The code with ``dy`` known to be ones: ``dy * e`` is ``e``, ``dy / e`` is ``1 / e``
        (None where the template has no such factor)."""
        if self._unit is None:
            src = None if self.src is None else _unit_src(self.src)
            self._unit = (None if src is None else _compiled(src),)
        return self._unit[0]

    def fused(self, unit):
        """(``expr``'s attribute, the template names it reads, in order) where the template
        (``unit``: without its factor ``dy``) is one elementwise expression (``_fusion``), or None."""
        if self._fused is None:
            return None
        found = self._fused.get(unit, False)
        if found is False:
            src = _unit_src(self.src) if unit else self.src
            found = self._fused[unit] = None if src is None else _fusion(src, self.names)
        return found

    def __call__(self, bindings, space=None, unit=False, fuse=True):
        if self.hook is not None:
            return self.hook(self.ctx, _build, bindings)
        if fuse and self._fused is not None:
            result = self._as_expr(bindings, unit)
            if result is not None:
                return result
        namespace = dict(_namespace() if space is None else _namespace_in(space))
        namespace.update(bindings)
        try:
            if unit:
                found = self.unit()
                if found is not None:
                    # kept only where it is still an array of the gradient's dtype (dy, 0-d,
                    # gave it no shape)
                    result = _run(*found, dict(namespace))
                    dy = bindings["dy"]
                    if isinstance(result, Var) and result.dtype == dy.dtype:
                        return result
            return _run(self.code, self.expression, namespace)
        except NameError as error:
            raise GradientError(f"second derivatives through {self.where} are not supported ({error}: "
                                f"its adjoint reads a value only its compiled forward has)") from None

    def _as_expr(self, bindings, unit):
        """The adjoint as one ``expr`` node, where the template fuses and the values it reads
        are variables of one real floating-point dtype (``dy``'s); else None."""
        # the seed of ones is no factor (``unit``) where the template has one to drop
        found = self.fused(unit and self.unit() is not None)
        if found is None:
            return None
        src, used = found
        dtype = bindings["dy"].dtype
        if dtype.kind != "f" or not _keeps_dtype(src, len(used), dtype):
            return None
        inputs = []
        for name in used:
            value = bindings[name]
            if not isinstance(value, Var) or value.dtype != dtype or value._node.key[0] == "weak":
                return None
            inputs.append(value)
        return _build(EXPR, inputs, (src,))

    def reduce(self, contribution, node, inp):
        """``contribution`` reduced to the shape of ``inp``: the code generator's reduction
        (``passes.unbroadcast``), with variables."""
        key = (contribution.shape, inp.shape)
        plan = self.plans.get(key)
        if plan is None:
            extent = node.shape if node.op.elementwise else passes.broadcast(contribution.shape, inp.shape)
            plan = self.plans[key] = _plan(contribution.shape, inp.shape, extent)
        axes, keepdims, reshaped, factor = plan
        if axes is not None:
            contribution = xp.sum(contribution, axis=axes, keepdims=keepdims)
        if reshaped is not None:
            contribution = xp.reshape(contribution, reshaped)
        if factor != 1:
            contribution = contribution * factor
        return contribution


def _run(code, expression, namespace):
    if expression:
        return eval(code, namespace)
    exec(code, namespace)
    return namespace["dx"]


class _DropUnit(gast.NodeTransformer):
    dropped = False

    def visit_BinOp(self, node):
        self.generic_visit(node)
        left, right = (isinstance(side, gast.Name) and side.id == "dy" for side in (node.left, node.right))
        if isinstance(node.op, gast.Mult) and (left or right):
            self.dropped = True
            return node.right if left else node.left
        if isinstance(node.op, gast.Div) and left:
            self.dropped = True
            node.left = gast.Constant(1, None)
        return node


@functools.lru_cache(maxsize=1024)
def _unit_src(src):
    """An adjoint template's source with its factor ``dy`` dropped (``dy`` a 0-d array of
    ones), or None where it has no such factor."""
    drop = _DropUnit()
    tree = drop.visit(gast.parse(textwrap.dedent(src).strip()))
    return ast.unparse(gast.gast_to_ast(tree)) if drop.dropped else None


def _plan(shape, target, extent):
    """The reduction's steps for a gradient of ``shape``: (axes summed or None, whether the
    sum keeps its axes, the shape reshaped to or None, factor). As ``passes.unbroadcast``:
    leading axes summed away need no keepdims and no reshape."""
    summed, factor, kept = passes.reduce_plan(shape, target, extent)
    result = passes._strip(kept)
    offset = len(extent) - len(shape)
    axes, keepdims = None, True
    if summed:
        axes = tuple(a - offset for a in summed)
        dropped = tuple(d for i, d in enumerate(shape) if i not in axes)
        if passes._strip(dropped) == result and len(dropped) <= len(target):
            keepdims, shape = False, dropped
        else:
            shape = tuple(1 if i in axes else d for i, d in enumerate(shape))
    return axes, keepdims, result if len(shape) > len(target) else None, factor


@functools.lru_cache(maxsize=1024)
def _fusion(src, names):
    """An elementwise adjoint template as one ``expr`` node: (the expression over ``x0, x1, ...``,
    the template names they stand for: ``dy``, inputs, ``y``, as it reads them), where the
    template is one expression of at least two operations that ``ops.expression`` can
    differentiate, with adjoints no more than about twice its size; None otherwise. ``v * v``
    becomes ``xp.square(v)`` (one term in its adjoint, the same value)."""
    try:
        tree = ast.parse(textwrap.dedent(src).strip(), mode="eval")
    except SyntaxError:
        return None
    tree = _Squares(call=_xp_square).visit(tree)
    allowed = ("dy", *names, "y")
    loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    if not loads <= {*allowed, "xp"}:
        return None
    used = tuple(n for n in allowed if n in loads)
    renamed = {n: f"x{k}" for k, n in enumerate(used)}
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and n.id in renamed:
            n.id = renamed[n.id]
    fused = ast.unparse(tree.body)
    params = tuple(renamed.values())
    try:
        size = expression.operations(tree.body, set(params))
        if size < 2:
            return None
        adjoints = [expression.derivative(fused, params, k) for k in range(len(params))]
        for adjoint in adjoints:
            if adjoint is ZERO:
                continue
            body = ast.parse(adjoint, mode="eval").body
            if expression.operations(body, {"dy", *params}) > 2 * size + 2 or not _evaluable(body):
                return None
    except expression.Unsupported:
        return None
    return fused, used


@functools.lru_cache(maxsize=1024)
def _keeps_dtype(src, count, dtype):
    """Whether the expression ``src`` over ``count`` arrays of ``dtype`` gives ``dtype`` (the
    ``expr`` node's dtype rule), as NumPy evaluates it."""
    values = {f"x{k}": np.full(1, 0.5, dtype) for k in range(count)}
    with np.errstate(all="ignore"):
        try:
            result = eval(src, dict(GLOBALS), values)
        except Exception:
            return False
    return getattr(result, "dtype", None) == dtype


def _evaluable(tree):
    """Whether every function ``tree`` calls can be called on variables (a third derivative
    that does not fuse evaluates it)."""
    for node in ast.walk(tree):
        name = expression.called(node)
        if name is None:
            continue
        if name.startswith("xp."):
            if not hasattr(xp, name[3:]):
                return False
        elif name not in _kernels():
            return False
    return True


@functools.lru_cache(maxsize=1)
def _namespace():
    return {"xp": xp, "__square__": _square, **_kernels()}


_CREATION = ("ones", "zeros", "full", "empty", "eye", "identity", "arange")


class _ConstantsIn:
    """``neuronika.numpy`` for adjoints of another library's arrays: its creation functions
    (``xp.eye(n, dtype=dtype)`` in a template) make their constants in that library and on
    that device, where the adjoint's other operands are."""

    def __init__(self, space):
        self.space = space

    def __getattr__(self, name):
        if name not in _CREATION:
            return getattr(xp, name)
        make, space = getattr(np, name), self.space

        def made(*args, **kwargs):
            return _wrap(leaf(backend.move(make(*args, **kwargs), space)))
        return made


@functools.lru_cache(maxsize=16)
def _namespace_in(space):
    return {**_namespace(), "xp": _ConstantsIn(space)}


def _adjoint(node, names, slot, gshape, kind):
    if kind is None:
        return _Adjoint(node, names, slot, gshape)
    # kept with the code generator's patterns: bounded, and cleared with them
    key = ("symbolic", kind, slot, gshape)
    found = _PATTERNS.get(key)
    if found is None:
        found = _Adjoint(node, names, slot, gshape)
        _remember(_PATTERNS, key, found)
    return found


def _slots(op, count):
    """For an op with ``count`` inputs: the slots with an adjoint (a zero one included: a
    gradient reaches through it), and those with code."""
    key = ("symbolic slots", op, count)
    found = _PATTERNS.get(key)
    if found is None:
        templates = [op.grad_template(slot) for slot in range(count)]
        found = (tuple(k for k, t in enumerate(templates) if t is not None),
                 tuple(k for k, t in enumerate(templates) if t is not None and t is not ZERO))
        _remember(_PATTERNS, key, found)
    return found


def _gradients(out, wrt, fuse=True):
    wrt_nodes = [w._node for w in wrt]
    order, _, _ = linearize(out._node)
    reaches = set(wrt_nodes)
    for node in order:
        op = node.op
        if op is None:
            continue
        inputs = node.inputs
        for slot in _slots(op, len(inputs))[0]:
            if inputs[slot] in reaches:
                reaches.add(node)
                break
    grads = {}
    seed = None
    if out._node in reaches:
        seed = grads[out._node] = _wrap(leaf(_filled(1, out._node)))
    for node in reversed(order):
        op = node.op
        if op is None or node not in grads:
            continue
        g = grads[node]
        inputs = node.inputs
        names = op.input_names(len(inputs))
        kind = _kind(node)
        handles = None
        full = None
        for slot in _slots(op, len(inputs))[1]:
            inp = inputs[slot]
            if inp not in reaches:
                continue
            dy = g
            if not op.implicit_dy and dy.shape != node.shape:
                if full is None:
                    full = xp.broadcast_to(dy, node.shape)
                dy = full
            adjoint = _adjoint(node, names, slot, dy.shape, kind)
            if adjoint.code is ZERO:
                continue
            if handles is None:
                handles = {other_name: _wrap(other) for other_name, other in zip(names, inputs)}
                handles["y"] = _wrap(node)
            bindings = dict(adjoint.statics)
            bindings.update(handles)
            bindings["dy"] = dy
            bindings["wanted"] = reaches        # (a hook may ask which inputs lead to wrt)
            # the seed, ones of shape (): a factor that changes neither value nor shape
            unit = dy is seed and not dy.shape
            contribution = var_of(adjoint(bindings, node.space, unit, fuse), dy._node)
            contribution = adjoint.reduce(contribution, node, inp)
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
