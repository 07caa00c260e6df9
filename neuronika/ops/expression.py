"""``expr``: one elementwise expression over its inputs, as one node.

A symbolic gradient (``symbolic.py``: gradients as graphs, for higher order) evaluates an op's
adjoint template on variables, one node per operation: tanh's ``dy * (1 - y * y)`` is four
nodes (three after ``y * y`` becomes ``square``), and differentiating that graph again writes
about two statements per node. Where the template is an expression of arithmetic and the
catalogue's unary functions, the gradient graph holds it as one ``expr`` node instead: its
attribute is the expression over ``x0, x1, ...`` (its inputs), its forward is that expression
(the same operations in the same order as the template: the same values), and its adjoints are
the expression differentiated here, by reverse mode over the expression's tree, with the
catalogue's own adjoint templates for the functions it calls. Those adjoints are expressions
again, so a third derivative fuses them in turn.

>>> derivative("x0 * (1 - xp.square(x1))", ("x0", "x1"), 1)
'-(dy * x0) * (x1 + x1)'
"""
from __future__ import annotations

import ast
import copy
import functools
import re

import numpy as np

from . import OPS, ZERO, Ctx, broadcast_shapes, declare


class Unsupported(Exception):
    """The expression holds something this module does not differentiate."""


_CALL = re.compile(r"(xp\.)?(\w+)\(x\)")


@functools.lru_cache(maxsize=1)
def functions():
    """The functions an expression may call: ``name`` (``xp.name`` or a kernel) -> the adjoint
    template of the unary elementwise op whose forward is ``name(x)`` (an AST over ``dy``,
    ``x``, ``y``, or ZERO), for real floating-point values; a name two ops share is left out."""
    ctx_dtype = np.dtype(np.float64)
    found, seen = {}, {}
    for op in OPS.values():
        if (not op.elementwise or op.inputs != ("x",) or op.attrs or op.variadic or op.symbolic
                or op.random or op.n_differentiable is not None):
            continue
        ctx = Ctx(op, ("x",), {"x": ()}, {"x": ctx_dtype}, (), ctx_dtype, {}, (), 0)
        try:
            forward = op.forward(ctx) if callable(op.forward) else op.forward
            grad = op.grads.get("x")
            grad = grad(ctx) if callable(grad) else grad
        except Exception:           # a template function that needs more context
            continue
        if not isinstance(forward, str):
            continue
        match = _CALL.fullmatch(forward.strip())
        if match is None:
            continue
        name = (match.group(1) or "") + match.group(2)
        seen[name] = seen.get(name, 0) + 1
        if grad is ZERO:
            found[name] = ZERO
            continue
        if not isinstance(grad, str):
            continue
        try:
            tree = ast.parse(grad.strip(), mode="eval").body
        except SyntaxError:
            continue
        loads = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        if loads <= {"dy", "x", "y", "xp"}:
            found[name] = tree
    return {name: tree for name, tree in found.items() if seen[name] == 1}


def called(node):
    """The function name of a call in an expression (``xp.sin``, ``cbrt``), or None."""
    if not isinstance(node, ast.Call) or len(node.args) != 1 or node.keywords:
        return None
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "xp":
        return "xp." + f.attr
    return None


def operations(tree, names):
    """How many operations the expression ``tree`` holds; raises Unsupported where it holds
    anything but arithmetic (``+ - * /``, unary ``-``), numbers, ``names`` and calls of
    ``functions()``."""
    table = functions()
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if not isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div)):
                raise Unsupported(type(node.op).__name__)
            count += 1
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.USub, ast.UAdd)):
                raise Unsupported(type(node.op).__name__)
            count += 1
        elif isinstance(node, ast.Call):
            if called(node) not in table:
                raise Unsupported(ast.unparse(node.func))
            count += 1
        elif isinstance(node, ast.Name):
            if node.id not in names and node.id != "xp":
                raise Unsupported(node.id)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise Unsupported(repr(node.value))
        elif not isinstance(node, (ast.Attribute, ast.Load, ast.operator, ast.unaryop)):
            raise Unsupported(type(node).__name__)
    return count


def _reads(tree):
    return any(isinstance(n, ast.Name) and n.id != "xp" for n in ast.walk(tree))


class _Put(ast.NodeTransformer):
    def __init__(self, values):
        self.values = values

    def visit_Name(self, node):
        value = self.values.get(node.id)
        return copy.deepcopy(value) if value is not None else node


def _neg(node):
    return ast.UnaryOp(ast.USub(), node)


def _mul(a, b):
    return ast.BinOp(a, ast.Mult(), b)


def _adjoints(node, seed, into):
    """Add ``seed`` (the adjoint of ``node``, an AST) pushed back to the names under ``node``
    to ``into`` (name -> [terms])."""
    if not _reads(node):
        return
    if isinstance(node, ast.Name):
        into.setdefault(node.id, []).append(seed)
    elif isinstance(node, ast.UnaryOp):
        _adjoints(node.operand, _neg(seed) if isinstance(node.op, ast.USub) else seed, into)
    elif isinstance(node, ast.BinOp):
        a, b = node.left, node.right
        if isinstance(node.op, ast.Add):
            _adjoints(a, seed, into)
            _adjoints(b, seed, into)
        elif isinstance(node.op, ast.Sub):
            _adjoints(a, seed, into)
            _adjoints(b, _neg(seed), into)
        elif isinstance(node.op, ast.Mult):
            _adjoints(a, _mul(seed, copy.deepcopy(b)), into)
            _adjoints(b, _mul(seed, copy.deepcopy(a)), into)
        elif isinstance(node.op, ast.Div):                      # as the div op: dy / b, -dy * y / b
            _adjoints(a, ast.BinOp(seed, ast.Div(), copy.deepcopy(b)), into)
            _adjoints(b, ast.BinOp(_mul(_neg(copy.deepcopy(seed)), copy.deepcopy(node)), ast.Div(),
                                   copy.deepcopy(b)), into)
        else:
            raise Unsupported(type(node.op).__name__)
    elif isinstance(node, ast.Call):
        template = functions().get(called(node))
        if template is None:
            raise Unsupported(ast.unparse(node))
        if template is ZERO:
            return
        arg = node.args[0]
        _adjoints(arg, _Put({"dy": seed, "x": arg, "y": node}).visit(copy.deepcopy(template)), into)
    else:
        raise Unsupported(type(node).__name__)


@functools.lru_cache(maxsize=4096)
def derivative(src, names, slot):
    """The adjoint of the expression ``src`` (over ``names``) for input ``slot``: source over
    ``dy`` and ``names``, or ZERO where the expression does not read that input."""
    tree = ast.parse(src, mode="eval").body
    operations(tree, set(names))
    into = {}
    _adjoints(tree, ast.Name("dy", ast.Load()), into)
    terms = into.get(names[slot])
    if not terms:
        return ZERO
    total = terms[0]
    for term in terms[1:]:
        total = ast.BinOp(total, ast.Add(), term)
    return ast.unparse(total)


def _forward(ctx):
    return ctx.src


def _grad(ctx):
    return derivative(ctx.src, tuple(ctx.names), ctx.slot)


def _shape(*rest):
    shapes = rest[:-1]          # (the last is the attribute)
    result = shapes[0]
    for shape in shapes[1:]:
        result = broadcast_shapes(result, shape)
    return result


EXPR = declare("expr", (), _forward, {"x": _grad}, attrs=("src",), variadic="x", shape=_shape,
               elementwise=True,
               doc="an elementwise expression of its inputs x0, x1, ... (a symbolic adjoint, one node)")
