"""Op templates as gast ASTs, and splicing them into a program.

A template is parsed once (per distinct source text); ``instantiate`` copies
its AST and renames every name: the op's inputs, output and gradient to the
program's variables, attributes and statics to constants, locals to names
private to the node. Anything else must be a global of generated code (``xp``
or a kernel), or the template is rejected with an error naming the op.
"""
from __future__ import annotations

import ast
import functools
import math
import textwrap

import gast
import numpy as np

from .. import backend
from ..ops import kernels

#: Globals every generated function sees: ``xp`` and the kernels, here NumPy's
#: (``globals_for`` gives those of another array library).
GLOBALS = {"xp": backend.NUMPY_XP, "slice": slice, "range": range,
           **{name: table["numpy"] for name, table in kernels.TABLE.items()}}


def globals_for(space):
    """The globals of generated code running on ``space`` (``backend``; None for NumPy): the
    same names, with ``xp`` the space's namespace and each kernel its family's implementation
    (``kernels.TABLE``; else the generic one) bound to the space.

    >>> from neuronika.transform.templates import GLOBALS, globals_for
    >>> globals_for(None) is GLOBALS
    True
    """
    if space is None:
        return GLOBALS
    found = space.globals
    if found is None:
        found = {"xp": space.xp, "slice": slice, "range": range}
        for name, table in kernels.TABLE.items():
            implementation = table.get(space.family) or table.get("generic")
            found[name] = (functools.partial(implementation, space) if implementation is not None
                           else _missing(name, space))
        space.globals = found
    return found


def _missing(name, space):
    def refuse(*args, **kwargs):
        raise backend.NamespaceError(f"kernel {name} has no implementation for arrays of "
                                     f"{backend.name(space)} (ops/kernels.py, TABLE)")
    refuse.__name__ = name
    return refuse


# Node classes with the same fields in gast and ast (gast's Name has two more, both None):
# converted field by field, faster than gast's general converters; others go through those.
_SAME_FIELDS = ("Name Constant Attribute Call BinOp UnaryOp BoolOp Compare IfExp Subscript Tuple List "
                "Slice Starred keyword Assign AugAssign Expr If Raise Return Delete Pass For While Dict "
                "Set Load Store Del Add Sub Mult MatMult Div Mod Pow LShift RShift BitOr BitXor BitAnd "
                "FloorDiv And Or Invert Not UAdd USub Eq NotEq Lt LtE Gt GtE Is IsNot In NotIn").split()
_AST_OF = {getattr(gast, n): getattr(ast, n) for n in _SAME_FIELDS}
_GAST_OF = {getattr(ast, n): getattr(gast, n) for n in _SAME_FIELDS}


def _convert(node, classes, fallback):
    target = classes.get(node.__class__)
    if target is None:
        return fallback(node)
    new = target.__new__(target)
    fields = new.__dict__
    source = node.__dict__
    for key in target._fields:
        value = source.get(key)
        if isinstance(value, (ast.AST, gast.AST)):
            value = _convert(value, classes, fallback)
        elif value.__class__ is list:
            value = [_convert(v, classes, fallback) if isinstance(v, (ast.AST, gast.AST)) else v
                     for v in value]
        fields[key] = value
    return new


def to_ast(node):
    """A gast tree as an ast tree (``gast.gast_to_ast``, in one plain pass for usual nodes)."""
    return _convert(node, _AST_OF, gast.gast_to_ast)


def to_gast(node):
    """An ast tree as a gast tree (``gast.ast_to_gast``, likewise)."""
    return _convert(node, _GAST_OF, gast.ast_to_gast)


def names(node, loads, stores):
    """Append the identifiers a gast tree reads to ``loads`` and those it writes to ``stores``."""
    if node.__class__ is gast.Name:
        (stores if node.ctx.__class__ is gast.Store else loads).append(node.id)
        return
    for value in node.__dict__.values():
        if isinstance(value, gast.AST):
            names(value, loads, stores)
        elif value.__class__ is list:
            for v in value:
                if isinstance(v, gast.AST):
                    names(v, loads, stores)


class Template:
    __slots__ = ("src", "body", "expr", "loads", "stores")

    def __init__(self, src):
        self.src = src
        self.body = [to_gast(stmt) for stmt in ast.parse(textwrap.dedent(src).strip()).body]
        if len(self.body) == 1 and isinstance(self.body[0], gast.Expr):
            self.expr = self.body[0].value
        else:
            self.expr = None
        loads, stores = [], []
        for stmt in self.body:
            names(stmt, loads, stores)
        self.loads = set(loads)
        self.stores = set(stores)


@functools.lru_cache(maxsize=4096)
def parse(src):
    return Template(src)


def constant(value):
    """An AST expression that evaluates to ``value`` in generated code."""
    if isinstance(value, gast.AST):
        return value
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        dtype = np.dtype(value)
        if dtype.kind != "O" and getattr(np, dtype.name, None) is dtype.type:
            return gast.Attribute(gast.Name("xp", gast.Load(), None, None), dtype.name, gast.Load())
        return gast.parse(f"xp.dtype({dtype.str!r})").body[0].value
    if isinstance(value, slice):
        return gast.Slice(*(None if v is None else constant(v) for v in (value.start, value.stop, value.step)))
    if isinstance(value, tuple):
        return gast.Tuple([constant(v) for v in value], gast.Load())
    if value is Ellipsis:
        return gast.Constant(Ellipsis, None)
    if isinstance(value, (bool, np.bool_)):
        return gast.Constant(bool(value), None)
    if isinstance(value, (int, np.integer)):
        value = int(value)
        node = gast.Constant(abs(value), None)
        return gast.UnaryOp(gast.USub(), node) if value < 0 else node
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return gast.parse("xp.nan").body[0].value
        if math.isinf(value):
            return gast.parse("xp.inf" if value > 0 else "-xp.inf").body[0].value
        node = gast.Constant(abs(value), None)
        return gast.UnaryOp(gast.USub(), node) if value < 0 or math.copysign(1, value) < 0 else node
    if isinstance(value, (complex, np.complexfloating)):
        return gast.Call(gast.Name("complex", gast.Load(), None, None),
                         [constant(value.real), constant(value.imag)], [])
    if value is None or isinstance(value, str):
        return gast.Constant(value, None)
    raise TypeError(f"cannot write {value!r} as a constant in generated code")


class TemplateError(RuntimeError):
    pass


def clone(node):
    """A deep copy of a gast tree; operators and contexts (stateless) are shared."""
    cls = node.__class__
    new = cls.__new__(cls)
    fields = new.__dict__
    for key, value in node.__dict__.items():
        if isinstance(value, gast.AST):
            if value.__dict__:
                value = clone(value)
        elif value.__class__ is list:
            value = [clone(v) if isinstance(v, gast.AST) else v for v in value]
        fields[key] = value
    return new


class _Renamer:
    """Copies a template's AST with every name bound (one recursive pass)."""

    def __init__(self, bindings, local_prefix, result, result_name, where):
        self.bindings = bindings
        self.local_prefix = local_prefix
        self.result = result
        self.result_name = result_name
        self.where = where
        self.used = set()
        self.locals = set()

    def visit(self, node):
        cls = node.__class__
        if cls is gast.Name:
            return self.visit_Name(node)
        new = cls.__new__(cls)
        fields = new.__dict__
        for key, value in node.__dict__.items():
            if isinstance(value, gast.AST):
                if value.__dict__:
                    value = self.visit(value)
            elif value.__class__ is list:
                value = [self.visit(v) if isinstance(v, gast.AST) else v for v in value]
            fields[key] = value
        return new

    def visit_Name(self, node):
        name = node.id
        if name == self.result:
            return gast.Name(self.result_name, node.ctx, None, None)
        if name in self.bindings and isinstance(node.ctx, gast.Load):
            self.used.add(name)
            return clone(self.bindings[name])
        if isinstance(node.ctx, (gast.Store, gast.Del)) or name in self.locals:
            return gast.Name(f"{self.local_prefix}{name}", node.ctx, None, None)
        if name in GLOBALS:
            return gast.Name(name, node.ctx, None, None)
        raise TemplateError(f"{self.where}: the template refers to {name!r}, which is neither "
                            f"an input, an attribute, a static nor a kernel")


def instantiate(template, bindings, local_prefix, result, result_name, where):
    """Statements computing ``template`` into ``result_name``, and the binding names it read.

    ``bindings`` maps template names to AST expressions; ``result`` is the
    template's own name for its result (``y`` or ``dx``).
    """
    renamer = _Renamer(bindings, local_prefix, result, result_name, where)
    renamer.locals = template.stores - {result}
    shadowed = sorted(name for name in renamer.locals if name in bindings)
    if shadowed:
        raise TemplateError(f"{where}: the template assigns {shadowed}, which the op also binds (an "
                            f"input, an attribute, a static or a forward local); rename the local")
    if template.expr is not None:
        value = renamer.visit(template.expr)
        if result_name is None:
            stmts = [gast.Expr(value)]
        else:
            stmts = [gast.Assign([gast.Name(result_name, gast.Store(), None, None)], value, None)]
    else:
        if result is not None and result not in template.stores:
            raise TemplateError(f"{where}: a statement template must assign {result!r}")
        stmts = [renamer.visit(s) for s in template.body]
    return stmts, renamer.used


def expression(template, bindings, where):
    """The template's expression with names bound (expression templates only)."""
    renamer = _Renamer(bindings, "_", None, None, where)
    return renamer.visit(template.expr), renamer.used
