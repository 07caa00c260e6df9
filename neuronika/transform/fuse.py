"""Fused elementwise kernels: runs of elementwise statements of a generated program evaluated
as one numexpr expression (an optional backend: ``pip install neuronika[fast]``).

A pass over the ``Line``s of one generated function, just before it is compiled, on NumPy
arrays only (``plan`` says whether it runs at all: numexpr installed, ``config(fuse="auto")``,
some value of at least ``MIN_ELEMENTS`` elements):

1. each ``name = expression`` line is read (``ast``); an expression over float32 / float64
   arrays (booleans as masks) and Python numbers, made of ``+ - * / **``, comparisons,
   ``& | ~``, ``xp.where``, the functions in ``FUNCTIONS``, ``xp.maximum`` / ``xp.minimum``
   (as ``where``), ``xp.square``, ``xp.reciprocal`` and ``xp.astype`` of a mask, is written in
   numexpr's syntax, with the shape and dtype NumPy gives it. A function numexpr evaluates
   much slower than NumPy (``SLOW``, unless numexpr has Intel's VML) is split off as a NumPy
   statement of its own, and so is ``**`` but by 2;
2. a value assigned once and read once, by such an expression over as many elements, whose
   own inputs are assigned once, is inlined into its reader: one sweep finds maximal trees;
3. an expression that now holds at least ``MIN_OPS`` operations on at least ``MIN_ELEMENTS``
   elements becomes a call of a ``Kernel`` (a ``numexpr.NumExpr`` built once, its numexpr
   expression shown as a comment); every other line stays as it was.

numexpr's dtype rules are not NumPy's (a Python float makes float32 double there): float
constants of a float32 expression are passed as float32 values (``c0``, ``c1``, ...), and a
kernel whose numexpr result dtype is not NumPy's is not made. What numexpr computes here is
IEEE arithmetic in NumPy's order (and ``where``, comparisons, ``abs``, ``sqrt``), so the results
are NumPy's bit for bit; with VML, its transcendental functions differ in the last bits.
A kernel also keeps the NumPy statements it replaced: under ``config(fuse="never")`` it runs
those, so a program built earlier computes exactly what an unfused one does.
"""
from __future__ import annotations

import ast
import contextvars
import math
import re
import threading

import numpy as np

from ..graph import WeakNode

#: "auto": fuse above the threshold when numexpr is installed; "never": NumPy only.
FUSE = contextvars.ContextVar("neuronika.fuse", default="auto")
FUSE_MODES = ("auto", "never")
_mode = FUSE.get

#: Elements of a value below which nothing is fused. Measured on the 2-core machine this was
#: written on (numexpr 2.14 without VML, NumPy 2.4 with AVX-512 loops): two kernels the chain
#: benchmark fuses took 1.5x to 2.6x the time of the NumPy statements they replace from 10k to
#: 1M elements; float32 1.3x to 1.5x at 3M and 6M, 0.9x at 10M; float64 0.35x to 0.85x at 10M
#: (see the README). Where NumPy's temporaries fit in the caches, its SIMD loops beat
#: numexpr's virtual machine.
MIN_ELEMENTS = 1 << 23
#: Operations an expression must hold to become a kernel (one NumPy call beats numexpr).
MIN_OPS = 2
#: Inputs of one kernel (arrays and float32 constants): NumPy 1's iterator takes 32 operands.
MAX_INPUTS = 31
#: Operations in one kernel.
MAX_OPS = 200

#: The array API's function name -> numexpr's.
FUNCTIONS = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sqrt": "sqrt",
             "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh",
             "asin": "arcsin", "acos": "arccos", "atan": "arctan", "asinh": "arcsinh",
             "acosh": "arccosh", "atanh": "arctanh", "abs": "abs"}
#: Without Intel's VML numexpr calls the C library once per element for these: several times
#: (tanh: about 40 times) slower than NumPy's SIMD loops. They stay NumPy calls.
SLOW = frozenset(FUNCTIONS) - {"abs", "sqrt"}

_KINDS = {np.dtype(np.float32): (float, "f"), np.dtype(np.float64): (np.float64, "d"),
          np.dtype(bool): (bool, "b")}

_UNSET = object()
_numexpr_module = _UNSET


def numexpr():
    """The numexpr module (2.8 or later), or None when it is not installed.

    >>> from neuronika.transform import fuse
    >>> fuse.numexpr() is None or fuse.numexpr().__name__ == "numexpr"
    True
    """
    global _numexpr_module
    if _numexpr_module is _UNSET:
        try:
            import numexpr as module
            version = tuple(int(p) for p in re.findall(r"\d+", module.__version__)[:2])
            _numexpr_module = module if version >= (2, 8) else None
        except ImportError:
            _numexpr_module = None
    return _numexpr_module


def check_fuse_mode(value):
    if not isinstance(value, str) or value not in FUSE_MODES:
        raise ValueError(f"fuse must be one of {', '.join(map(repr, FUSE_MODES))}, got {value!r}")
    return value


def plan(order, values, space, root=None):
    """The pass for a graph (``order``, its value names ``values``; ``root``: the node whose
    gradient is ``seed``), or None where nothing would be fused: another array library,
    ``config(fuse="never")``, numexpr missing, or no value of ``MIN_ELEMENTS`` elements.

    >>> import numpy as np, neuronika
    >>> from neuronika.transform import fuse
    >>> saved, fuse.MIN_ELEMENTS = fuse.MIN_ELEMENTS, 4          # fuse 4-element arrays
    >>> x = neuronika.from_ndarray(np.array([-1.0, 0.5, 2.0, 3.0])).requires_grad()
    >>> with neuronika.config(compile="always"):
    ...     source = neuronika.transform.source(((x * x - 1.0) * x).sum())
    >>> fuse.MIN_ELEMENTS = saved
    >>> neuronika.transform.cache_clear()
    >>> fuse.numexpr() is None or "v3 = numexpr_0(p0, x2)  # numexpr: p0 * p0 - x2" in source
    True
    """
    if space is not None or _mode() == "never" or numexpr() is None:
        return None
    if not any(math.prod(node.shape) >= MIN_ELEMENTS for node in order):
        return None
    types = {}
    for i, (node, name) in enumerate(zip(order, values)):
        if node.dtype in _KINDS:
            if node.__class__ is not WeakNode:      # (a Python number: no array type)
                types[name] = (tuple(node.shape), node.dtype)
            # a node's gradient, where no statement read here says more: its dtype, and at most
            # its shape (it may be a smaller array that broadcasts; numexpr broadcasts as NumPy)
            types[f"g{i}"] = (tuple(node.shape), node.dtype)
    if root is not None and root.dtype in _KINDS:
        types["seed"] = (tuple(root.shape), root.dtype)
    return _Pass(types)


# ---- kernels ------------------------------------------------------------------------------------

class Kernel:
    """One numexpr expression over a program's values (``names``) and float32 constants,
    compiled once; called with the values, it returns a new array. Under
    ``config(fuse="never")`` it runs the NumPy statements it replaced (``numpy_source``)."""

    def __init__(self, expression, shown, names, kinds, constants, numpy_source):
        module = numexpr()
        self.__name__ = "numexpr"           # its name in generated code: numexpr_<k>
        signature = [(n, _KINDS[k][0]) for n, k in zip(names, kinds)]
        signature += [(f"c{k}", float) for k in range(len(constants))]
        self.expression = expression        # what numexpr compiles (constants as c0, c1, ...)
        self.shown = shown                  # the same with the constants written out
        self.names = tuple(names)
        self.constants = tuple(np.float32(c) for c in constants)
        self.run = module.NumExpr(expression, signature=signature)
        self.numpy_source = numpy_source
        self._numpy = None

    def output_kind(self):
        return chr(self.run.fullsig[0])

    def __call__(self, *arrays):
        if _mode() == "never":
            return self.numpy(*arrays)
        return self.run(*arrays, *self.constants)

    def numpy(self, *arrays):
        """The replaced NumPy statements, run on ``arrays`` (compiled when first needed)."""
        if self._numpy is None:
            from .templates import GLOBALS
            namespace = dict(GLOBALS)
            exec(compile(self.numpy_source, "<neuronika numexpr fallback>", "exec"), namespace)
            self._numpy = namespace["numpy_statements"]
        return self._numpy(*arrays)

    def __repr__(self):
        return f"<numexpr kernel {self.shown}>"


_KERNELS = {}
_KERNELS_MAX = 4096
_kernels_lock = threading.Lock()


def kernel(expression, shown, names, kinds, constants, numpy_source):
    """The Kernel for these, made once (the same object for every program that needs it, so
    that shape families can share programs; ``families._same`` compares by identity)."""
    key = (expression, tuple(kinds), tuple(constants), numpy_source)
    with _kernels_lock:
        found = _KERNELS.get(key)
    if found is None:
        found = Kernel(expression, shown, names, kinds, constants, numpy_source)
        with _kernels_lock:
            if len(_KERNELS) >= _KERNELS_MAX:
                _KERNELS.clear()
            found = _KERNELS.setdefault(key, found)
    return found


# ---- reading expressions --------------------------------------------------------------------------

class _No(Exception):
    """Not an expression numexpr evaluates as NumPy does."""


class _Expr:
    """An expression in numexpr's syntax (``ne``) and in NumPy's (``py``: the statement's own,
    with split-off parts as names), both ``ast`` trees; its dtype (a Python type for a bare
    number, which is weak), shape (None for a number), operation count and the values it reads."""

    __slots__ = ("ne", "py", "dtype", "shape", "ops", "reads")

    def __init__(self, ne, py, dtype, shape=None, ops=0, reads=frozenset()):
        self.ne, self.py, self.dtype, self.shape, self.ops, self.reads = ne, py, dtype, shape, ops, reads


def _weak(dtype):
    return isinstance(dtype, type)


def _is_bool(dtype):
    return dtype is bool or dtype == np.dtype(bool)


def _result(*parts):
    """NumPy 2's result dtype of an arithmetic operation (Python numbers weak); float only."""
    arrays = [p.dtype for p in parts if not _weak(p.dtype)]
    if not arrays or any(_is_bool(p.dtype) for p in parts):
        raise _No
    dtype = np.result_type(*arrays)
    if dtype.kind != "f":
        raise _No
    return dtype


def _combine(parts, ne, py, dtype, extra=1):
    shapes = [p.shape for p in parts if p.shape is not None]
    try:
        shape = tuple(np.broadcast_shapes(*shapes)) if shapes else None
    except ValueError:
        raise _No from None
    reads = frozenset().union(*[p.reads for p in parts])
    return _Expr(ne, py, dtype, shape, sum(p.ops for p in parts) + extra, reads)


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)
_LOGIC = (ast.BitAnd, ast.BitOr, ast.BitXor)
_COMPARE = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)


def _call(name, args):
    return ast.Call(ast.Name(name, ast.Load()), list(args), [])


def _float32(node):
    """Mark a float constant as one of a float32 operation (numexpr gets it as a float32 value)."""
    node.float32 = True


class _Reader:
    """Reads one statement's expression (``read``). A function in ``slow`` is split off as a
    statement of its own (``hoisted``: (name, NumPy tree, _Expr or None), in order)."""

    def __init__(self, types, target, slow):
        self.types = types
        self.target = target
        self.slow = slow
        self.hoisted = []

    def _typed(self, parts, dtype):
        if dtype == np.dtype(np.float32):
            for p in parts:
                if isinstance(p.ne, ast.Constant) and p.ne.value.__class__ is float:
                    _float32(p.ne)

    def read(self, node):
        method = getattr(self, "read_" + node.__class__.__name__, None)
        if method is None:
            raise _No
        return method(node)

    def read_Name(self, node):
        found = self.types.get(node.id)
        if found is None:
            raise _No
        shape, dtype = found
        return _Expr(ast.Name(node.id, ast.Load()), node, dtype, shape, 0, frozenset([node.id]))

    def read_Constant(self, node):
        value = node.value
        kind = value.__class__
        if kind is bool or (kind is int and abs(value) < 2 ** 31) or (kind is float and math.isfinite(value)):
            return _Expr(ast.Constant(value), node, kind)
        raise _No

    def read_UnaryOp(self, node):
        x = self.read(node.operand)
        if isinstance(node.op, ast.USub) and not _is_bool(x.dtype):
            if _weak(x.dtype):
                return _Expr(ast.Constant(-x.ne.value), node, x.dtype)
            return _combine([x], ast.UnaryOp(ast.USub(), x.ne), ast.UnaryOp(ast.USub(), x.py), x.dtype)
        if isinstance(node.op, ast.Invert) and x.dtype == np.dtype(bool):
            return _combine([x], ast.UnaryOp(ast.Invert(), x.ne), ast.UnaryOp(ast.Invert(), x.py), x.dtype)
        raise _No

    def read_BinOp(self, node):
        a, b = self.read(node.left), self.read(node.right)
        op = node.op
        if isinstance(op, _LOGIC):
            if a.dtype != np.dtype(bool) or b.dtype != np.dtype(bool):
                raise _No
            dtype = a.dtype
        elif isinstance(op, _ARITHMETIC):
            dtype = _result(a, b)
            # numexpr writes x ** 2 as x * x, as NumPy does; other powers are not NumPy's bits
            if isinstance(op, ast.Pow) and not (b.dtype is int and b.ne.value == 2):
                return self._hoist(lambda args: ast.BinOp(args[0], op, args[1]), [a, b], dtype)
            self._typed((a, b), dtype)
        else:
            raise _No
        return _combine([a, b], ast.BinOp(a.ne, op.__class__(), b.ne), ast.BinOp(a.py, op, b.py), dtype)

    def read_Compare(self, node):
        if len(node.ops) != 1 or not isinstance(node.ops[0], _COMPARE):
            raise _No
        a, b = self.read(node.left), self.read(node.comparators[0])
        self._typed((a, b), _result(a, b))
        op = node.ops[0]
        return _combine([a, b], ast.Compare(a.ne, [op.__class__()], [b.ne]), ast.Compare(a.py, [op], [b.py]),
                        np.dtype(bool))

    def read_Call(self, node):
        func = node.func
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "xp"):
            raise _No
        name = func.attr
        if name == "astype":
            return self._astype(node)
        if node.keywords:
            raise _No
        args = [self.read(arg) for arg in node.args]

        def numpy(new):
            return ast.Call(func, [a.py for a in new], [])

        if name in FUNCTIONS and len(args) == 1:
            x, = args
            dtype = _result(x)
            if name in self.slow:
                return self._hoist(lambda names: ast.Call(func, names, []), args, dtype)
            return _combine(args, _call(FUNCTIONS[name], [x.ne]), numpy(args), dtype)
        if name == "where" and len(args) == 3:
            c, a, b = args
            if c.dtype != np.dtype(bool):
                raise _No
            dtype = _result(a, b)
            self._typed((a, b), dtype)
            return _combine(args, _call("where", [c.ne, a.ne, b.ne]), numpy(args), dtype)
        if name in ("maximum", "minimum") and len(args) == 2:
            a, b = args
            dtype = _result(a, b)
            if _weak(a.dtype) or (not _weak(b.dtype) and not isinstance(b.ne, ast.Name)):
                raise _No            # b would be written twice
            self._typed((b,), dtype)
            # NumPy's maximum is NaN where either input is: where(a < b, b, a) keeps a NaN a,
            # and a NaN b needs its own test (a number is never NaN)
            test = ast.Compare(a.ne, [ast.Lt() if name == "maximum" else ast.Gt()], [b.ne])
            extra = 2
            if not _weak(b.dtype):
                test = ast.BinOp(test, ast.BitOr(), ast.Compare(b.ne, [ast.NotEq()], [b.ne]))
                extra = 4
            return _combine(args, _call("where", [test, b.ne, a.ne]), numpy(args), dtype, extra)
        if name == "square" and len(args) == 1:
            x, = args
            return _combine(args, ast.BinOp(x.ne, ast.Pow(), ast.Constant(2)), numpy(args), _result(x))
        if name == "reciprocal" and len(args) == 1:
            x, = args
            return _combine(args, ast.BinOp(ast.Constant(1), ast.Div(), x.ne), numpy(args), _result(x))
        raise _No

    def _astype(self, node):
        args = node.args
        if len(args) != 2 or any(k.arg != "copy" for k in node.keywords):
            raise _No
        target = args[1]
        if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                and target.value.id == "xp" and target.attr in ("float32", "float64")):
            raise _No
        dtype = np.dtype(target.attr)
        x = self.read(args[0])
        py = ast.Call(node.func, [x.py, target], node.keywords)
        if x.dtype == np.dtype(bool):
            one, zero = ast.Constant(1.0), ast.Constant(0.0)
            if dtype == np.dtype(np.float32):
                _float32(one)
                _float32(zero)
            return _combine([x], _call("where", [x.ne, one, zero]), py, dtype)
        if x.dtype == dtype:
            return _Expr(x.ne, py, dtype, x.shape, x.ops, x.reads)
        raise _No

    def _hoist(self, make, args, dtype):
        """``make(arguments)`` (a slow function or power) as a NumPy statement of its own; an
        argument that is an expression becomes a statement before it."""
        names = []
        for a in args:
            if a.ops == 0:
                names.append(a.py)
            else:
                names.append(ast.Name(self._hoisted(a.py, a, a.dtype, a.shape), ast.Load()))
        shape = _combine(args, None, None, dtype).shape
        name = self._hoisted(make(names), None, dtype, shape)
        return _Expr(ast.Name(name, ast.Load()), ast.Name(name, ast.Load()), dtype, shape, 0, frozenset([name]))

    def _hoisted(self, py, expr, dtype, shape):
        name = f"{self.target}_f{len(self.hoisted)}"
        self.hoisted.append((name, py, expr))
        self.types[name] = (shape, dtype)
        return name


# ---- the pass ------------------------------------------------------------------------------------

class _Piece:
    """One statement after reading: ``target = py`` (NumPy) and, where numexpr can take it,
    ``expr``. ``parts``: the statements a kernel made here replaces (its own last)."""

    __slots__ = ("target", "py", "expr", "inlined", "kernel", "parts")

    def __init__(self, target, py, expr):
        self.target, self.py, self.expr = target, py, expr
        self.inlined = False          # read into its one reader's kernel
        self.kernel = False
        self.parts = [self]

    def numpy_text(self):
        return f"{self.target} = {ast.unparse(self.py)}"


def _size(shape):
    return math.prod(shape) if shape is not None else 0


def _float_constants(tree):
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and getattr(n, "float32", False)
            and not _integral(n.value)}


def _integral(value):
    """Written as an int: exact in float32, and not -0.0."""
    return value == int(value) and abs(value) < 2 ** 24 and not (value == 0 and math.copysign(1, value) < 0)


def _written(tree, found, shown):
    """The numexpr text of ``tree``: float32 constants as ``c0``, ``c1``, ... (their values in
    ``found``), or with ``shown`` written out; integral ones as integers either way (numexpr
    takes an int with a float32 value as float32)."""
    def copy(node):
        if isinstance(node, ast.Constant) and getattr(node, "float32", False):
            value = node.value
            if _integral(value):
                return ast.Constant(int(value))
            if shown:
                return ast.Constant(value)
            k = found.setdefault(value, len(found))
            return ast.Name(f"c{k}", ast.Load())
        new = node.__class__()
        for field, value in ast.iter_fields(node):
            if isinstance(value, list):
                value = [copy(v) if isinstance(v, ast.AST) else v for v in value]
            elif isinstance(value, ast.AST):
                value = copy(value)
            setattr(new, field, value)
        return new
    return ast.unparse(copy(tree))


def _natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


class _Substitute(ast.NodeTransformer):
    def __init__(self, mapping):
        self.mapping = mapping

    def visit_Name(self, node):
        found = self.mapping.get(node.id)
        return found if found is not None else node


class _Pass:
    """The pass over one graph's functions (``plan``); ``types``: name -> (shape, dtype) of
    the values known before any statement (the graph's values, the seed)."""

    def __init__(self, types):
        self.types = types
        self.slow = frozenset() if getattr(numexpr(), "use_vml", False) else SLOW

    def __call__(self, lines, keep, label):
        """``lines`` with runs of elementwise statements as kernel calls; ``keep``: the names
        read after the last line; ``label(kernel)``: its name in the generated code."""
        from .passes import Line
        types = dict(self.types)
        stores, uses, loaded = {}, dict.fromkeys(keep, 2), set()
        for line in lines:
            for name in line.loads:
                uses[name] = uses.get(name, 0) + 1
            loaded.update(line.loads)
            for name in line.stores:
                # an argument assigned anew counts as assigned twice (its value changes)
                stores[name] = stores.get(name, 0) + (2 if name in loaded and name not in stores else 1)
        for name, count in stores.items():
            if count > 1:               # its value depends on where it is read
                types.pop(name, None)
        keep = set(keep)
        pieces, defined = [], {}
        for line in lines:
            found = None
            target = line.target
            if target is not None and not line.aug and stores.get(target) == 1:
                found = self._read(line.text, target, types)
            pieces.append(found)
            for piece in found or ():
                if piece is not found[-1]:
                    uses[piece.target] = 1
                defined[piece.target] = piece
                self._inline(piece, defined, uses, keep)
        out = []
        for line, found in zip(lines, pieces):
            if found is None or not any(p.kernel or p.inlined for p in found):
                out.append(line)
                continue
            for piece in found:
                if piece.kernel:
                    out += self._kernel_lines(piece, types, label, Line)
                elif not piece.inlined:
                    out.append(_numpy_line(piece, Line))
        return out

    def _read(self, text, target, types):
        if "\n" in text or not text.startswith(target + " = "):
            return None
        try:
            stmt = ast.parse(text).body[0]
        except SyntaxError:
            return None
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            return None
        reader = _Reader(types, target, self.slow)
        try:
            expr = reader.read(stmt.value)
        except _No:
            expr = None
        if expr is None or _weak(expr.dtype) or expr.shape is None:
            for name, _, _ in reader.hoisted:
                types.pop(name, None)
            return None
        hoisted = reader.hoisted
        if hoisted and expr.ops == 0 and isinstance(expr.ne, ast.Name) and expr.ne.id == hoisted[-1][0]:
            # the statement is one slow call: it keeps its name
            del types[hoisted[-1][0]]
            name, py, part = hoisted.pop()
            expr = _Expr(expr.ne, py, expr.dtype, expr.shape) if part is None else part
            if part is None:
                types[target] = (expr.shape, expr.dtype)
                return [_Piece(n, p, e) for n, p, e in hoisted] + [_Piece(target, py, None)]
        types[target] = (expr.shape, expr.dtype)
        found = [_Piece(name, py, part) for name, py, part in hoisted]
        found.append(_Piece(target, expr.py, expr))
        return found

    def _inline(self, piece, defined, uses, keep):
        """Read into ``piece`` the values of its size that only it reads and numexpr can take;
        mark it a kernel when it holds at least MIN_OPS operations on MIN_ELEMENTS elements."""
        expr = piece.expr
        if expr is None or expr.shape is None or _size(expr.shape) < MIN_ELEMENTS:
            return
        size = _size(expr.shape)
        ops, substitute, parts = expr.ops, {}, []
        absorbed, floats = set(), _float_constants(expr.ne)
        for name in sorted(expr.reads, key=_natural):
            source = defined.get(name)
            if (source is None or source.expr is None or uses.get(name) != 1 or name in keep
                    or _size(source.expr.shape) != size):
                continue
            wider = absorbed | source.expr.reads
            more = floats | _float_constants(source.expr.ne)
            inputs = (expr.reads - set(substitute) - {name}) | wider
            if len(inputs) + len(more) > MAX_INPUTS or ops + source.expr.ops > MAX_OPS:
                continue
            absorbed, floats, ops = wider, more, ops + source.expr.ops
            substitute[name] = source
            parts += source.parts
        if ops < MIN_OPS:
            return
        if substitute:
            expr.ne = _Substitute({n: s.expr.ne for n, s in substitute.items()}).visit(expr.ne)
            expr.reads = (expr.reads - set(substitute)) | frozenset().union(*[s.expr.reads for s in substitute.values()])
            expr.ops = ops
            for source in substitute.values():
                source.inlined = True
                source.kernel = False
        piece.parts = parts + [piece]
        piece.kernel = True

    def _kernel_lines(self, piece, types, label, Line):
        """The kernel call for ``piece`` (or, where numexpr does not give NumPy's dtype or
        cannot compile it, the NumPy statements it would replace)."""
        expr = piece.expr
        names = sorted(expr.reads, key=_natural)
        constants = {}
        expression = _written(expr.ne, constants, False)
        shown = _written(expr.ne, None, True)
        body = "\n    ".join(p.numpy_text() for p in piece.parts)
        numpy_source = f"def numpy_statements({', '.join(names)}):\n    {body}\n    return {piece.target}\n"
        try:
            made = kernel(expression, shown, names, [types[n][1] for n in names], list(constants), numpy_source)
        except Exception:          # noqa: BLE001 - numexpr refused it: NumPy computes it as before
            made = None
        if made is None or made.output_kind() != _KINDS[expr.dtype][1]:
            return [_numpy_line(p, Line) for p in piece.parts]
        call = f"{piece.target} = {label(made)}({', '.join(names)})  # numexpr: {shown}"
        return [Line(call, names, [piece.target], piece.target)]


def _numpy_line(piece, Line):
    reads = sorted({n.id for n in ast.walk(piece.py) if isinstance(n, ast.Name) and n.id != "xp"}, key=_natural)
    return Line(piece.numpy_text(), reads, [piece.target], piece.target)
