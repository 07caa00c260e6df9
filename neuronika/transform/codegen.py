"""From a linearised graph to a compiled forward and backward program.

``build`` runs once per graph signature (a cache miss). It splices each op's
forward template into one straight-line ``forward`` and the adjoint templates
into one ``backward``, compiles the source and registers it with linecache, so
``.source`` and tracebacks show exactly the code that runs. The program keeps
code and shapes, never arrays or nodes; its linecache entries go when it does (a
finalizer), whichever cache dropped it.

Linear in the graph's size. A template is instantiated (gast), rendered (astor)
and analysed once per *node kind* (op, attributes, input shapes, dtypes and weak
typing; for an adjoint also the slot, the shape of ``dy`` and whether it is a seed
known to be 1): the result is a ``_Form`` per statement, a format string over the
program's names, which each node of that kind fills in. The passes then work on
``passes.Line``s (text plus the names read and written), one sweep each. A long
body is compiled as a chain of helper functions of bounded size (``CHUNK``
statements), each taking the values it reads and returning those read later, so
that ``compile()``, superlinear in the size of one function, stays linear.
"""
from __future__ import annotations

import bisect
import builtins
import functools
import itertools
import linecache
import math
import re
import threading
import types
import weakref

import astor
import gast
import numpy as np

from ..ops import ZERO, Ctx, Grad
from . import buffers, fuse, inplace, passes, products, views
from .passes import Line
from .. import backend
from ..graph import WeakNode, collector_paused
from .templates import (GLOBALS, TemplateError, constant, expression, globals_for, instantiate, names, parse,
                        to_ast)

_serial = itertools.count(1)

#: Statements per generated function: a longer body is split into helper functions.
CHUNK = 300
#: Bodies up to this many statements stay one function.
LONG = 1500
#: In a body that long, values smaller than SMALL bytes are freed in batches, and values
#: smaller than TINY bytes when their helper returns (at most CHUNK of them live at once).
SMALL = 1 << 16
TINY = 1 << 12


def size_limits():
    """The element counts at which a pass decides differently for a value: ``inplace``'s
    least size, ``buffers``' 64 kB at each item size, ``fuse``'s least size."""
    return sorted({inplace.MIN_ELEMENTS, fuse.MIN_ELEMENTS,
                   *[buffers.MIN_BYTES // itemsize for itemsize in (1, 2, 4, 8, 16)]})


def size_classes(order):
    """Per node of ``order``, how many of ``size_limits()`` its value's size has reached (its
    gradient's is the same): two graphs whose classes are equal are written alike by every
    size-reading pass but ``products`` (whose limit is a product's work, not a value's size).
    One look-up per node: a graph has few shapes."""
    limits = size_limits()
    classes = {}
    out = []
    for node in order:
        shape = node.shape
        found = classes.get(shape)
        if found is None:
            found = classes[shape] = bisect.bisect_right(limits, math.prod(shape))
        out.append(found)
    return tuple(out)


class Anomaly(Exception):
    """Raised by generated code under ``detect_anomaly``; the runtime names the node."""

    def __init__(self, index, phase):
        super().__init__(index, phase)
        self.index = index
        self.phase = phase


def check_finite(value, index, phase):
    if value.__class__ is tuple or isinstance(value, dict):     # a tuple (scan) or its gradient
        for part in (value.values() if isinstance(value, dict) else value):
            if part is not None:
                check_finite(part, index, phase)
        return
    if not np.isfinite(value).all():
        raise Anomaly(index, phase)


class Program:
    """Compiled code for one graph signature.

    ``forward(*leaf_values)`` returns the root's value, and when the root
    needs a gradient also the tuple of values the backward reads;
    ``backward(seed, *saved)`` returns the gradients of the leaves at
    ``grad_leaves`` (positions among the leaves) and of the nodes at
    ``retained`` (positions in the order).
    """

    __slots__ = ("forward", "backward", "forward_source", "backward_source", "grad_leaves",
                 "retained", "filenames", "sizes", "__weakref__")

    def source(self):
        text = self.forward_source + ("\n" + self.backward_source if self.backward_source else "")
        # the bodies of the loops it runs (neuronika.scan) and the programs it calls (a grad
        # inside jit), each a program of its own
        for name, value in getattr(self.forward, "__globals__", {}).items():
            kind = getattr(value, "__name__", None)
            if kind == "cell" and hasattr(value, "source"):
                text += f"\n# {name}: the body of a loop (its own forward and backward)\n" + value.source()
            elif kind == "call" and hasattr(value, "source"):
                text += f"\n# {name}: {value!r}, called as one step\n" + value.source()
        return text


class _Grad:
    """A gradient variable while the backward is written: its name, the shape of
    the array it holds (it may broadcast to the node's), and whether the
    backward allocated it (only then may it be added to in place)."""

    __slots__ = ("name", "shape", "fresh")

    def __init__(self, name, shape, fresh):
        self.name = name
        self.shape = tuple(shape)
        self.fresh = fresh


def _name(identifier, ctx=None):
    return gast.Name(identifier, ctx or gast.Load(), None, None)


def _assign(target, value):
    return gast.Assign([_name(target, gast.Store())], value, None)


def _resolve(spec, ctx):
    return spec(ctx) if callable(spec) else spec


def _where(node):
    return f"op {node.op.name}"


def _value_name(node, index):
    if node.op is not None:
        return f"v{index}"
    return f"p{index}" if node.requires_grad else f"x{index}"


def _context(node, names, gshape=None, slot=None):
    op = node.op
    shapes = {name: inp.shape for name, inp in zip(names, node.inputs)}
    dtypes = {name: inp.dtype for name, inp in zip(names, node.inputs)}
    attrs = dict(zip(op.attrs, node.attrs))
    weak = frozenset(name for name, inp in zip(names, node.inputs) if inp.__class__ is WeakNode)
    return Ctx(op, names, shapes, dtypes, node.shape, node.dtype, attrs, gshape, slot, weak)


def _statics(ctx):
    """Constants a template may name: attributes, ``<input>_shape``, ``y_shape``,
    ``dtype`` and whatever the op's ``statics`` hook computes."""
    values = dict(ctx.attrs)
    for name, shape in ctx.shapes.items():
        values[f"{name}_shape"] = shape
        values[f"{name}_dtype"] = ctx.dtypes[name]
    values["y_shape"] = ctx.shape
    values["dtype"] = ctx.dtype
    if ctx.op.statics is not None:
        values.update(ctx.op.statics(ctx))
    return values


def _is_function(value):
    return callable(value) and not isinstance(value, (type, gast.AST))


class _Bindings(dict):
    """Template names to AST: program variables given as AST, constants made on demand.
    A Python function (a custom_vjp's) becomes a global of the generated code."""

    def __init__(self, values, extra):
        super().__init__(values)
        self.extra = extra

    def __getitem__(self, name):
        value = dict.__getitem__(self, name)
        if _is_function(value):
            for known, obj in self.extra.items():
                if obj is value:
                    return _name(known)
            label = f"{getattr(value, '__name__', 'fn')}_{len(self.extra)}"
            self.extra[label] = value
            return _name(label)
        return constant(value)


class Retrace(Exception):
    """Raised by a traced program whose guard on a Python-level value failed."""


#: One compilation at a time: CPython 3.11's parser is not safe to run from two threads at
#: once ("AST constructor recursion depth mismatch"), and templates are parsed here.
_compiling = threading.RLock()


# ---- forms: a statement rendered once, filled in per node -------------------------------------

def _slot(k):
    """The placeholder for argument ``k`` of a form: a program name, or a prefix of one."""
    return f"__nk{k}__"


_SLOT = re.compile(r"__nk(\d+)__")
_SEP = "\x1f"       # never in rendered code: astor writes control characters escaped


def _join(parts):
    return "".join(parts)


def _render(stmt):
    """A gast statement's source, as the code generator has always written it (astor)."""
    return astor.to_source(to_ast(stmt), pretty_source=_join).rstrip("\n")


def _field(identifier):
    """A program name's placeholder as (argument, suffix): ``__nk2__m`` -> (2, "m")."""
    match = _SLOT.match(identifier)
    return int(match.group(1)), identifier[match.end():]


def _ref(identifier, functions=None):
    """A program name in a form as a format field (``__nk3__m`` -> ``{3}m``); None for a
    global (``xp``, a kernel, a function: fields from ``functions`` on) or a literal
    (``__nkL0__``, see ``_literals``)."""
    if identifier.startswith("__nk"):
        if identifier.startswith("__nkL"):
            return None
        if functions is not None and int(_SLOT.match(identifier).group(1)) >= functions:
            return None
        return _SLOT.sub(r"{\1}", identifier)
    return identifier if identifier == "seed" else None


class _Form:
    """One statement with its program names as format fields: ``fill(args)`` gives
    the Line (text, names read, names written, the target a dead-code pass may drop).
    Fields from ``functions`` on name functions (globals), not values. ``bind`` puts
    in the literals of a template family (``_literals``)."""

    __slots__ = ("fmt", "aug", "parts")

    def __init__(self, stmt, functions=None):
        if stmt is None:
            return
        names_read, names_written = [], []
        names(stmt, names_read, names_written)
        loads = [r for r in (_ref(n, functions) for n in names_read) if r is not None]
        stores = [r for r in (_ref(n, functions) for n in names_written) if r is not None]
        target = passes._droppable(stmt)
        self.aug = isinstance(stmt, gast.AugAssign) and target is not None
        if self.aug:
            loads.append(_ref(target))             # ``g += d`` reads g
        ref = "" if target is None else _ref(target) or ""
        text = _SLOT.sub(r"{\1}", _render(stmt).replace("{", "{{").replace("}", "}}"))
        refs = _SEP.join(["", " ".join(dict.fromkeys(loads)), " ".join(dict.fromkeys(stores)), ref])
        self.fmt = text + refs
        # where a family's literals go: text pieces and literal numbers, alternating
        self.parts = _LITERAL.split(text) + [refs] if "__nkL" in text else None

    def bind(self, literals):
        """This form with ``__nkL<k>__`` replaced by ``literals[k]`` (digits: nothing to escape)."""
        if self.parts is None:
            return self
        form = _Form(None)
        form.aug, form.parts = self.aug, None
        parts = self.parts[:]
        for k in range(1, len(parts) - 1, 2):
            parts[k] = literals[int(parts[k])]
        form.fmt = "".join(parts)
        return form

    def fill(self, args):
        text, loads, stores, target = self.fmt.format(*args).split(_SEP)
        return Line(text, loads.split(), stores.split(), target or None, self.aug)


_NOT_VALUES = frozenset(GLOBALS) | frozenset(vars(builtins)) | {"check_finite", "Retrace"}


def _line(stmt):
    """A Line straight from a gast statement over the program's names (guards, checks)."""
    loads, stores = [], []
    names(stmt, loads, stores)
    return Line(_render(stmt), [n for n in loads if n not in _NOT_VALUES],
                [n for n in stores if n not in _NOT_VALUES])


#: node kind -> forward pattern; (kind, slot, dy shape, unit seed, accumulate) -> adjoint
#: pattern (or _NONE: no code); role key -> form. Bounded, cleared when full (code only).
_FORWARD = {}
_ADJOINT = {}
_PATTERNS = {}
_PATTERNS_MAX = 16384
_NONE = object()


def _remember(cache, key, pattern):
    if len(cache) >= _PATTERNS_MAX:
        cache.clear()
    cache[key] = pattern


def _pattern(key, make):
    found = _PATTERNS.get(key)
    if found is None:
        found = make()
        _remember(_PATTERNS, key, found)
    return found


def patterns_clear():
    """Forget the per-kind patterns (they are code only; tests use this)."""
    for cache in (_FORWARD, _ADJOINT, _PATTERNS, _FAMILIES, _SLOTS):
        cache.clear()


# Integer literals of a template's source, where they stand alone (not in a name, a float,
# a complex or an escape): a template family's members differ only in them.
_INT = re.compile(r"(?<![\w.\\])\d+(?![\w.])")
_LITERAL = re.compile(r"__nkL(\d+)__")
#: (role, what the code depends on but the literals) -> pattern with literal placeholders,
#: or None where a family once rendered differently from its member (then never used)
_FAMILIES = {}


def _literals(src):
    """``src`` with its integer literals as placeholder names, and the literals."""
    found = []

    def replace(match):
        found.append(match.group())
        return f"__nkL{len(found) - 1}__"

    return _INT.sub(replace, src), found


def _family(key, literals, make, check):
    """The pattern ``make(normalised)`` makes for a template family, with ``literals`` put in;
    ``check()`` (the member made the usual way) when the family is new: the family is used
    only if it gave the same code for that member."""
    if key is None:
        return check()
    found = _FAMILIES.get(key, _FAMILIES)
    if found is None:
        return check()
    if found is not _FAMILIES:
        return found.bind(literals)
    family = make()
    member = check()
    bound = family.bind(literals)
    _FAMILIES[key] = family if bound.same(member) else None
    if len(_FAMILIES) > _PATTERNS_MAX:
        _FAMILIES.clear()
    return member


def _freeze(value):
    """A hashable key that tells apart what renders differently (1, 1.0, True; 0.0, -0.0)."""
    cls = value.__class__
    if cls is tuple:
        return tuple([_freeze(v) for v in value])
    if cls is float or cls is complex or isinstance(value, np.generic):
        return cls, repr(value)
    if cls is slice:
        return cls, _freeze(value.start), _freeze(value.stop), _freeze(value.step)
    return cls, value


def _kind(node):
    """What a node's code depends on besides names, or None when that is not hashable."""
    attrs = node.attrs
    if attrs:
        attrs = _freeze(attrs)
    key = [node.op, attrs, node.shape, node.dtype]
    for i in node.inputs:
        key += (i.shape, i.dtype, i.__class__ is WeakNode)
    key = tuple(key)
    try:
        hash(key)
    except TypeError:
        return None
    return key


class _Functions(_Bindings):
    """Bindings for a pattern: a Python function becomes a placeholder (``functions``),
    named per program when the pattern is filled in (``_Build.label``)."""

    def __init__(self, values, base):
        dict.__init__(self, values)
        self.base = base
        self.functions = []

    def __getitem__(self, name):
        value = dict.__getitem__(self, name)
        if _is_function(value):
            for k, obj in enumerate(self.functions):
                if obj is value:
                    return _name(_slot(self.base + k))
            self.functions.append(value)
            return _name(_slot(self.base + len(self.functions) - 1))
        return constant(value)


class _Build:
    """What one build shares between its functions: the generated code's extra globals,
    and (``small()``) the names of values small enough to free in batches."""

    def __init__(self):
        self.extra = {}
        self.labels = {}
        self.small = lambda: (frozenset(), frozenset())
        self.dry = False
        self.shared_grads = False
        self.space = None          # the arrays' library (backend): what ``xp`` and the kernels are
        self.fuse = None           # the numexpr pass (``fuse.plan``), where it applies
        self.known = None          # name -> (shape, dtype) for ``inplace``, NumPy programs only
        self.gradients = {}        # the same for gradients (``inplace`` only; ``_backward``)
        self.unsure = frozenset()  # nodes whose value may not have their dtype (``_numbers_and_readers``)
        self.sizes = None          # name -> at most how many elements (values and gradients)
        self.product_sizes = None  # the same, for ``products`` (``build``'s ``product_sizes``)
        self.order = None          # the graph's nodes (a gradient g<i>'s rank and dtype, for ``products``)
        self.fused = False         # one function for values and gradients (value_and_grad, jit)

    def label(self, fn):
        found = self.labels.get(id(fn))
        if found is None:
            found = f"{getattr(fn, '__name__', 'fn')}_{len(self.extra)}"
            self.extra[found] = fn
            self.labels[id(fn)] = found
        return found

    def labels_for(self, functions):
        return [self.label(fn) for fn in functions]


# ---- building --------------------------------------------------------------------------------

def build(order, leaves, anomaly=False, outputs=None, loss=None, fused=False, unit_seed=False,
          guards=(), wrt=None, dry=False, shared_grads=False, sizes=None, product_sizes=None):
    """Compile the graph in ``order`` (leaves ``leaves``, each an argument).

    By default (``backward()`` on a root) the last node is the output and, if it
    needs a gradient, the one differentiated: ``forward`` returns its value and
    the values the backward reads, ``backward(seed, *saved)`` the gradients.
    The functional face asks for more: several ``outputs`` (positions), the
    ``loss`` position, one ``fused`` function computing values and gradients,
    a seed known to be 1 (``unit_seed``: multiplications by it are dropped), and
    ``guards``: (position, kind, value) checks that raise ``Retrace``, and
    ``wrt``: the leaves to differentiate (default: every differentiable leaf;
    the others are then constants, with no adjoint code). ``dry``: the source only, not
    compiled, as (program, the globals it names besides the standard ones), for comparison
    (``families``). ``shared_grads``: a returned gradient may be a view of another one (a
    loop's cell: its caller never adds into them in place), not copied. ``sizes``: the
    element counts the size thresholds of the ``inplace`` and ``buffers`` passes read (a
    family program's ``Program.sizes``, so that a member of other sizes is written as that
    program was); by default the graph's own. ``product_sizes``: those the ``products`` pass
    reads, where they are not ``sizes`` (a family member larger than its program: ``families``).
    """
    # Code generation makes many small objects and no garbage cycles: the collector, which
    # would walk the whole graph again and again, waits until it is done.
    with _compiling, collector_paused:
        from . import loops
        space = graph_space(leaves)
        # (the default outputs and loss first: the rolled graph's are mapped from them)
        outputs, loss = passes.outputs_and_loss(order, outputs, loss)
        rolled = loops.rolled(order, leaves, anomaly, outputs, loss, guards)
        if rolled is None:
            result = _build(order, leaves, anomaly, outputs, loss, fused, unit_seed, guards, wrt, dry,
                            shared_grads, space, sizes, product_sizes)
        else:
            # an unrolled recurrence, built as a loop (the caller's positions kept)
            order, outputs, loss, guards, old = rolled
            result = _build(order, leaves, anomaly, outputs, loss, fused, unit_seed, guards, wrt, dry,
                            space=space, sizes=sizes, product_sizes=product_sizes)
            program = result[0] if dry else result
            program.retained = tuple(old[order[i]] for i in program.retained)
        if space is not None and not dry:
            _seeded_on(result, space)
        return result


def graph_space(leaves):
    """The space (``backend``) of a graph's arrays, from its leaves: None for NumPy."""
    space = None
    for leaf in leaves:
        if leaf.space is not None:
            if space is not None and leaf.space is not space:
                raise backend.mixed("a graph", [space, leaf.space])
            space = leaf.space
    return space


def _seeded_on(program, space):
    """A program over another library's arrays takes the seed ``run`` makes (a NumPy array or
    number) as an array of that library."""
    def on_space(function):
        def run(seed, *args):
            if isinstance(seed, (np.ndarray, np.generic)):
                seed = space.asarray(seed)
            return function(seed, *args)
        run.__wrapped__ = function
        return run
    if program.backward is not None:
        program.backward = on_space(program.backward)


def _build(order, leaves, anomaly, outputs, loss, fused, unit_seed, guards, wrt, dry=False,
           shared_grads=False, space=None, sizes=None, product_sizes=None):
    index_of = {node: i for i, node in enumerate(order)}
    values = [_value_name(node, i) for i, node in enumerate(order)]
    outputs, loss = passes.outputs_and_loss(order, outputs, loss)
    leaf_args = [values[index_of[leaf]] for leaf in leaves]
    state = _Build()
    state.small = functools.lru_cache(maxsize=1)(lambda: _small_names(order, values))
    state.dry = dry
    state.shared_grads = shared_grads
    state.space = space
    state.fuse = fuse.plan(order, values, space, order[loss] if loss is not None else None)
    if space is None:                   # shapes and dtypes for ``inplace``: NumPy programs only
        state.unsure, by_value = _numbers_and_readers(order)
        known = state.known = {}
        for node, name in zip(order, values):
            if node.__class__ is WeakNode:
                # a Python number (an argument, a literal, a Python operator over such numbers):
                # weak for the passes' type rules, as for NumPy (``x2 * v4`` takes v4's buffer)
                if node not in by_value:
                    known[name] = ((), _PYTHON_NUMBERS[node.dtype.kind])
            elif node not in state.unsure:
                known[name] = (tuple(node.shape), node.dtype)
        if loss is not None:
            state.known["seed"] = (tuple(order[loss].shape), order[loss].dtype)
        if sizes is None:
            sizes = {}
            for i, (node, name) in enumerate(zip(order, values)):
                sizes[name] = sizes[f"g{i}"] = math.prod(node.shape)
        state.sizes = sizes
        state.product_sizes = state.sizes if product_sizes is None else product_sizes
        state.order = order

    forward, kinds, inputs_of = _forward(order, index_of, values, anomaly, state, guards)
    out_names = [values[i] for i in outputs]
    out_value = out_names[0] if len(outputs) == 1 else _Seq(out_names)
    guard_names = [values[p] for p, _, _ in guards]
    program = Program()
    program.sizes = state.sizes             # what the passes' size thresholds read (``families``)
    program.filenames = []
    weakref.finalize(program, _release_files, program.filenames).atexit = False
    program.grad_leaves = program.retained = ()
    program.backward = program.backward_source = None
    if loss is None:
        body = passes.drop_dead_lines(forward, out_names + guard_names)
        returned = out_value.names if len(outputs) > 1 else [out_value]
        program.forward, program.forward_source = _compile("forward", leaf_args, body, returned,
                                                           len(outputs) > 1, program, state)
        return (program, state.extra) if dry else program

    state.fused = fused
    backward, saved, returned, grad_leaves, retained = _backward(order, index_of, values, kinds, inputs_of,
                                                                 anomaly, loss, state, wrt, unit_seed)
    grads = _Seq(returned)
    if fused:
        keep = out_names + [r for r in returned if r]
        body = passes.drop_dead_lines(forward + backward, keep + guard_names)
        program.forward, program.forward_source = _compile(
            "program", ["seed", *leaf_args], body, [out_value, grads], True, program, state)
    else:
        # the order of the saved values is the program's own: a long forward chooses it
        saved = _Seq(saved, reorder=True)
        # a template's local that no adjoint here reads (an input's shape, a count) goes
        forward = passes.drop_dead_lines(forward, out_names + saved.names + guard_names)
        program.forward, program.forward_source = _compile(
            "forward", leaf_args, forward, [out_value, saved], True, program, state)
        program.backward, program.backward_source = _compile(
            "backward", ["seed", *saved.names], backward, returned, True, program, state)
    leaf_position = {index_of[leaf]: k for k, leaf in enumerate(leaves)}
    program.grad_leaves = tuple(leaf_position[i] for i in grad_leaves)
    program.retained = tuple(retained)
    return (program, state.extra) if dry else program


class _Seq:
    """A tuple of names in a return statement; ``reorder``: its order is free (the
    saved values), and ``names`` is the order the generated function returns them in."""

    __slots__ = ("names", "reorder")

    def __init__(self, names, reorder=False):
        self.names = list(names)
        self.reorder = reorder


def _tuple(names):
    return gast.Tuple([_name(n) if n is not None else gast.Constant(None, None) for n in names], gast.Load())


def _guard(name, kind, expected):
    """``if <value observed differs>: raise Retrace``."""
    value = _name(name)
    if kind == "bool":
        test = value if not expected else gast.UnaryOp(gast.Not(), value)
    else:
        converted = gast.Call(_name(kind), [value], [])
        test = gast.Compare(converted, [gast.NotEq()], [constant(expected)])
    raise_ = gast.Raise(_name("Retrace"), None)
    return gast.If(test, [raise_], [])


class _ForwardPattern:
    __slots__ = ("forms", "locals", "functions")

    def bind(self, literals):
        pattern = _ForwardPattern()
        pattern.forms = [form.bind(literals) for form in self.forms]
        pattern.locals, pattern.functions = self.locals, self.functions
        return pattern

    def same(self, other):
        return ([f.fmt for f in self.forms] == [f.fmt for f in other.forms] and self.locals == other.locals
                and len(self.functions) == len(other.functions)
                and all(a is b for a, b in zip(self.functions, other.functions)))


def _family_key(role, kind, template, statics, *rest):
    """What a template family's code depends on: the node's kind but its attributes, the
    normalised source, and the constants it names; None where they are not hashable."""
    if kind is None:
        return None
    try:
        used = tuple((name, _freeze(statics[name])) for name in sorted(n for n in template.loads if n in statics))
        key = (role, kind[0], kind[2:], template.src, used, *rest)
        hash(key)
    except TypeError:
        return None
    return key


def _literal_bindings(bindings, count):
    for k in range(count):
        bindings[f"__nkL{k}__"] = _name(f"__nkL{k}__")


def _forward_pattern(node, kind=None):
    """A node's forward as forms over: 0 its value's name, 1 the prefix of its locals,
    2... its inputs' names, then the functions it calls. Nodes whose templates differ only
    in integer literals (``x[3]``, ``x[4]``) share a family pattern (``_family``)."""
    op = node.op
    names = op.input_names(len(node.inputs))
    ctx = _context(node, names)
    statics = _statics(ctx)
    src = _resolve(op.forward, ctx)
    normal, literals = _literals(src)
    if not literals:
        return _make_forward(node, names, statics, src, 0)
    key = _family_key("f", kind, parse(normal), statics)
    return _family(key, literals, lambda: _make_forward(node, names, statics, normal, len(literals)),
                   lambda: _make_forward(node, names, statics, src, 0))


def _make_forward(node, names, statics, src, literals):
    op = node.op
    template = parse(src)
    bindings = _Functions(statics, 2 + len(names))
    for k, (name, inp) in enumerate(zip(names, node.inputs)):
        bindings[name] = _input(_slot(2 + k), inp, op)
    _literal_bindings(bindings, literals)
    body, _ = instantiate(template, bindings, _slot(1), "y", _slot(0), _where(node))
    pattern = _ForwardPattern()
    pattern.forms = [_Form(stmt, bindings.base) for stmt in body]
    pattern.locals = sorted(template.stores - {"y"})
    pattern.functions = bindings.functions
    return pattern


def _forward(order, index_of, values, anomaly, state, guards):
    """The forward's Lines, and each node's kind and the names of its inputs (reused by the
    backward)."""
    lines = []
    append = lines.append
    kinds = [None] * len(order)
    inputs_of = [None] * len(order)
    guards_at = {}
    for position, kind, expected in guards:
        guards_at.setdefault(position, []).append((kind, expected))
    patterns = _FORWARD
    for i, node in enumerate(order):
        op = node.op
        if op is not None:
            kind = kinds[i] = _kind(node)
            pattern = None if kind is None else patterns.get(kind)
            if pattern is None:
                pattern = _forward_pattern(node, kind)
                if kind is not None:
                    _remember(patterns, kind, pattern)
            name = values[i]
            inputs = inputs_of[i] = [values[index_of[inp]] for inp in node.inputs]
            args = [name, name + "_", *inputs]
            if pattern.functions:
                args += state.labels_for(pattern.functions)
            for form in pattern.forms:
                append(form.fill(args))
            if anomaly:
                append(_line(_check(name, i, "forward")))
        if guards_at:
            # a value read straight off an argument (``float(c)``) is checked on entry
            for kind, expected in guards_at.get(i, ()):
                append(_line(_guard(values[i], kind, expected)))
    return lines, kinds, inputs_of


def _input(name, node, op):
    """How a template reads an input. A Python number (an argument of a traced function, or
    arithmetic on such numbers alone: ``graph.WeakNode``) is passed as the number (NumPy
    types it weakly); a template that may call array methods on it (``Op.takes_numbers``
    false) reads it as a 0-d array."""
    if node.__class__ is WeakNode and not op.takes_numbers:
        return gast.Call(gast.Attribute(_name("xp"), "asarray", gast.Load()), [_name(name)], [])
    return _name(name)


def _check(name, index, phase):
    call = gast.Call(_name("check_finite"), [_name(name), constant(index), constant(phase)], [])
    return gast.Expr(call)


def _reaching(order, wrt):
    """The nodes a gradient flows through: the wanted leaves and what depends on
    them through differentiable inputs."""
    if wrt is None:
        return {node for node in order if node.requires_grad}
    reaches = set(wrt)
    for node in order:
        op = node.op
        if op is None or not node.requires_grad:
            continue
        for slot, inp in enumerate(node.inputs):
            if inp in reaches and op.grad_template(slot) is not None:
                reaches.add(node)
                break
    return reaches


# Arguments of an adjoint's forms (``_GradPattern``); the inputs' names follow, then functions.
DY, Y, LOCALS, TEMP, TEMP_LOCALS, ACC, TARGET, CURRENT, INPUTS = range(9)


class _GradPattern:
    """One input's adjoint for one node kind: statements before (a statement template),
    the value (a gast expression; forms for assigning it, adding it in place and adding
    it into a new array, made when first needed), whether that value is just a name
    (``alias``), its shape, whether it is a new array, and the forward values it reads."""

    __slots__ = ("forms", "value", "alias", "shape", "fresh", "saved", "functions", "base", "literals",
                 "temporary", "_assign", "_iadd", "_add")

    def __init__(self):
        self._assign = self._iadd = self._add = None
        self.value = None
        self.literals = None

    def _form(self, stmt):
        form = _Form(stmt, self.base)
        return form if self.literals is None else form.bind(self.literals)

    def assign(self):
        if self._assign is None:
            self._assign = self._form(_assign(_slot(TARGET), self.value))
        return self._assign

    def iadd(self):
        if self._iadd is None:
            self._iadd = self._form(gast.AugAssign(_name(_slot(CURRENT), gast.Store()), gast.Add(), self.value))
        return self._iadd

    def add(self):
        if self._add is None:
            self._add = self._form(_assign(_slot(TARGET), gast.BinOp(_name(_slot(CURRENT)), gast.Add(),
                                                                     self.value)))
        return self._add

    def bind(self, literals):
        pattern = _GradPattern()
        pattern.forms = [form.bind(literals) for form in self.forms]
        for name in ("value", "alias", "shape", "fresh", "saved", "functions", "base", "temporary"):
            setattr(pattern, name, getattr(self, name, None))
        pattern.literals = literals
        return pattern

    def same(self, other):
        if ([f.fmt for f in self.forms] != [f.fmt for f in other.forms] or self.saved != other.saved
                or len(self.functions) != len(other.functions)
                or not all(a is b for a, b in zip(self.functions, other.functions))):
            return False
        if self.value is None or other.value is None:
            return self.value is other.value
        return (self.alias == other.alias and self.shape == other.shape and self.fresh == other.fresh
                and self.assign().fmt == other.assign().fmt and self.iadd().fmt == other.iadd().fmt
                and self.add().fmt == other.add().fmt)


def _grad_pattern(node, slot, gshape, unit, accumulate, kind=None):
    """The adjoint of ``node``'s input ``slot`` for a ``dy`` of shape ``gshape`` (``unit``:
    it is the seed, known to be 1), as ``codegen`` has always written it; None where it
    is zero. With ``accumulate``, the op's template that adds into ``acc`` in place.
    Templates that differ only in integer literals share a family pattern."""
    op = node.op
    names = op.input_names(len(node.inputs))
    ctx = _context(node, names, gshape=gshape, slot=slot)
    statics = _statics(ctx)
    if accumulate:
        grad = None
        src = _resolve(op.accumulate_template(slot), ctx)
    else:
        grad = _resolve(op.grad_template(slot), ctx)
        if grad is ZERO:                 # zero for these dtypes (imag of a real value)
            return None
        if not isinstance(grad, Grad):
            grad = Grad(grad)
        src = grad.src
    normal, literals = _literals(src)
    make = functools.partial(_make_grad, node, names, slot, gshape, unit, statics)
    if not literals:
        return make(src, grad, 0)
    normal_grad = None if grad is None else Grad(normal, grad.shape, grad.view)
    key = _family_key("a" if accumulate else "g", kind, parse(normal), statics, slot, gshape, unit,
                      None if grad is None else (grad.shape, grad.view))
    return _family(key, literals, lambda: make(normal, normal_grad, len(literals)), lambda: make(src, grad, 0))


def _make_grad(node, names, slot, gshape, unit, statics, src, grad, literals):
    op = node.op
    inp = node.inputs[slot]
    bindings = _Functions(statics, INPUTS + len(names))
    arrays = {}     # template name -> forward value (a form's field), for the saved set
    shapes = {"dy": gshape}
    for k, (other_name, other) in enumerate(zip(names, node.inputs)):
        arrays[other_name] = _slot(INPUTS + k)
        shapes[other_name] = other.shape
    arrays["y"] = _slot(Y)
    shapes["y"] = node.shape
    forward = parse(_resolve(op.forward, _context(node, names)))
    for local in forward.stores - {"y"}:
        arrays[local] = _slot(LOCALS) + local
        shapes[local] = node.shape
    for template_name, var in arrays.items():
        bindings[template_name] = _name(var)
    for k, (other_name, other) in enumerate(zip(names, node.inputs)):
        bindings[other_name] = _input(_slot(INPUTS + k), other, op)
    bindings["dy"] = _name("seed" if unit else _slot(DY))
    _literal_bindings(bindings, literals)
    where = _where(node)
    pattern = _GradPattern()

    def finish(stmts, used):
        if unit:
            stmts = passes.drop_unit_factor(stmts, "seed")
        pattern.forms = [_Form(s, bindings.base) for s in stmts]
        pattern.saved = [_field(arrays[n]) for n in sorted(used) if n in arrays]
        pattern.functions = bindings.functions
        pattern.base = bindings.base
        pattern.temporary = bool(stmts)
        return pattern

    if grad is None:
        bindings["acc"] = _name(_slot(ACC))
        body, used = instantiate(parse(src), bindings, _slot(TEMP_LOCALS), None, None, where)
        return finish(body, used)

    template = parse(grad.src)
    stmts = []
    if template.expr is not None:
        value, used = expression(template, bindings, where)
        fresh = not grad.view and not isinstance(template.expr, gast.Name)
    else:
        body, used = instantiate(template, bindings, _slot(TEMP_LOCALS), "dx", _slot(TEMP), where)
        stmts.extend(body)
        value, fresh = _name(_slot(TEMP)), not grad.view
    if grad.shape is not None:
        shape = tuple(grad.shape)
    elif op.elementwise:
        shape = passes.broadcast(*[shapes[n] for n in used if n in shapes])
    else:
        shape = inp.shape
    extent = node.shape if op.elementwise else passes.broadcast(shape, inp.shape)
    value, shape, fresh = passes.unbroadcast(value, shape, inp.shape, extent, fresh)
    if inp.dtype != node.dtype and "O" not in (node.dtype.kind, inp.dtype.kind):   # tuples: no cast
        if node.dtype.kind == "c" and inp.dtype.kind != "c":     # a real input: the real part
            value = gast.Call(gast.Attribute(_name("xp"), "real", gast.Load()), [value], [])
        # copy=False: an adjoint may already have the input's dtype (abs of a complex
        # value); where it converts, a new array, where not, the same one: fresh as before
        value = gast.Call(gast.Attribute(_name("xp"), "astype", gast.Load()), [value, constant(inp.dtype)],
                          [gast.keyword("copy", gast.Constant(False, None))])
    _check_shape(shape, inp.shape, where)
    if unit:
        value = passes.drop_unit_factor([gast.Expr(value)], "seed")[0].value
    pattern.value = value
    pattern.alias = _ref(value.id) if isinstance(value, gast.Name) else None
    pattern.shape = shape
    pattern.fresh = fresh
    return finish(stmts, used)


_SLOTS = {}


def _adjoints(op, count):
    """Per input slot of an op with ``count`` inputs: whether it has adjoint code, and
    whether it has an accumulate template."""
    key = (op, count)
    found = _SLOTS.get(key)
    if found is None:
        found = tuple((op.grad_template(slot) is not None and op.grad_template(slot) is not ZERO,
                       op.accumulate_template(slot) is not None) for slot in range(count))
        _remember(_SLOTS, key, found)
    return found


def _numbers_and_readers(order):
    """The nodes whose value may not have the node's dtype, which the passes must not take as
    known: ops over Python-number arguments alone (Python numbers or NumPy scalars, never
    arrays), and whatever reads a number whose kind Python decides by its values
    (``Op.typed_by_value``: ``n ** -1`` is a float where the trace declares int64; a float
    power is ``ops.elementwise.real_power``, nan rather than complex). Until the dtype rules
    typed weak results as NumPy does (``graph.WeakNode``, session 15), ``(s * c) * x32`` was a
    float32 array declared float64, the in-place pass wrote ``... + y64``'s float64 result
    into its buffer, rounding it to float32, and every reader of such a number was withheld
    from the passes: a jitted Adam update over a million float32 parameters with
    Python-number hyperparameters took 5.0 ms instead of 1.5. Returns (those nodes, the ones
    among them whose kind Python decides by value); ``_build`` types a ``WeakNode`` among the
    first that is not among the second by its Python class, as the passes type a literal."""
    numbers, unsure, by_value = set(), set(), set()
    for node in order:
        inputs = node.inputs
        if not inputs:
            if node.key[0] == "weak":
                numbers.add(node)
        elif numbers and all(i in numbers for i in inputs):
            numbers.add(node)
            unsure.add(node)
            by_rule = node.op.typed_by_value
            if (by_rule is not None and by_rule(inputs, node.attrs)
                    or by_value and any(i in by_value for i in inputs)):
                by_value.add(node)
        elif by_value and any(i in by_value for i in inputs):
            unsure.add(node)
            by_value.add(node)
    return unsure, by_value


#: The Python class of a weakly typed number of each dtype kind.
_PYTHON_NUMBERS = {"b": bool, "i": int, "f": float, "c": complex}


def _backward(order, index_of, values, kinds, inputs_of, anomaly, root, state, wrt, unit_seed):
    root_node = order[root]
    reaches = _reaching(order, wrt)
    grads = {root: _Grad("seed", root_node.shape, False)}
    lines = []
    append = lines.append
    saved = {}
    patterns = _ADJOINT
    for i in range(root, -1, -1):
        g = grads.get(i)
        if g is None:
            continue
        node = order[i]
        op = node.op
        if op is None or node not in reaches:
            continue
        full = None
        kind = kinds[i]
        name = values[i]
        node_inputs = node.inputs
        inputs = inputs_of[i]
        for slot, (has_grad, has_accumulate) in enumerate(_adjoints(op, len(node_inputs))):
            inp = node_inputs[slot]
            if not has_grad or inp not in reaches:
                continue
            j = index_of[inp]
            dy = g
            if not op.implicit_dy and g.shape != node.shape:
                if full is None:
                    full = _Grad(f"{g.name}_full", node.shape, False)
                    form = _pattern(("full", node.shape), lambda: _Form(_assign(_slot(1), gast.Call(
                        gast.Attribute(_name("xp"), "broadcast_to", gast.Load()),
                        [_name(_slot(0)), constant(node.shape)], []))))
                    append(form.fill([g.name, full.name]))
                dy = full
            unit = unit_seed and dy.name == "seed"
            target = grads.get(j)
            accumulate = (has_accumulate and target is not None and target.fresh
                          and target.shape == inp.shape and inp.dtype == node.dtype)
            if kind is None:
                pattern = _grad_pattern(node, slot, dy.shape, unit, accumulate)
            else:
                key = (kind, slot, dy.shape, unit, accumulate)
                pattern = patterns.get(key)
                if pattern is None:
                    pattern = _grad_pattern(node, slot, dy.shape, unit, accumulate, kind)
                    _remember(patterns, key, _NONE if pattern is None else pattern)
                elif pattern is _NONE:
                    pattern = None
            if pattern is None:
                continue
            if pattern.temporary:
                temp = f"t{i}_{slot}"
                args = [dy.name, name, name + "_", temp, temp + "_",
                        target.name if accumulate else None, f"g{j}", None, *inputs]
            else:
                args = [dy.name, name, name + "_", None, None, target.name if accumulate else None,
                        f"g{j}", None, *inputs]
            if pattern.functions:
                args += state.labels_for(pattern.functions)
            for form in pattern.forms:
                append(form.fill(args))
            for k, suffix in pattern.saved:
                saved[args[k] + suffix] = None
            if accumulate:
                continue
            # the input's gradient is this node's own (an alias of dy: p - y): where dy is an
            # array the backward made, read by no other slot and not returned, the input's
            # gradient takes its buffer as its own (added to in place, returned without a
            # copy). Fused programs only: value_and_grad((p - y) ** 2).mean()) at 2^20 1.44 ->
            # 1.01 ms; in backward()'s split program the gradient outlives the step in p.grad,
            # and without the kept buffer the copy came from, glibc gave the step's large
            # arrays back and faulted them in again every step (2^18: 0.24 -> 1.56 ms)
            owned = (state.fused and pattern.alias == _DY_ALIAS and dy is g and g.fresh
                     and not node.retain and _sole_slot(op, node_inputs, reaches))
            _accumulate(lines, grads, j, pattern, args, owned)
            if anomaly:
                append(_line(_check(grads[j].name, i, "backward")))

    if state.known is not None:
        # each gradient's type for ``inplace``: the shape its adjoints gave (it may be smaller
        # than the node's and broadcast to it) and the node's dtype. Without them the pass
        # typed a gradient only through the statements that made it, and does not parse those
        # below its size threshold, so the chain from the seed broke at the first small one
        # and no gradient's buffer took a later result (a ReLU's mask product went into a
        # buffer of its own: 4% of mlp512's backward). Float and complex only: the pass
        # rewrites nothing else. (``buffers`` and ``products`` keep reading node types.)
        for j, grad in grads.items():
            if (grad.name == f"g{j}" and order[j].dtype.kind in "fc" and order[j] not in state.unsure
                    and order[j].__class__ is not WeakNode):      # (a number's: its adjoints' dtype)
                state.gradients[grad.name] = (grad.shape, order[j].dtype)
    leaf_returns, retained_returns, grad_leaves, retained = [], [], [], []
    for i, node in enumerate(order):
        if node not in reaches:
            continue
        if node.op is None:
            grad_leaves.append(i)
            leaf_returns.append(_finish(lines, grads.get(i), node, f"g{i}", state.shared_grads))
        elif node.retain:
            retained.append(i)
            retained_returns.append(_finish(lines, grads.get(i), node, f"g{i}", state.shared_grads))
    returned = leaf_returns + retained_returns
    return lines, list(saved), returned, grad_leaves, retained


def _check_shape(shape, target, where):
    if len(shape) > len(target) or passes.broadcast(shape, target) != tuple(target):
        raise TemplateError(f"{where}: an adjoint of shape {shape} does not fit its input of shape {target}")


#: a pattern whose value is dy itself
_DY_ALIAS = "{%d}" % DY


def _sole_slot(op, inputs, reaches):
    """Whether one input slot only of a node takes a gradient (reads its dy)."""
    return sum(1 for k, (has, _) in enumerate(_adjoints(op, len(inputs))) if has and inputs[k] in reaches) == 1


def _accumulate(lines, grads, j, pattern, args, owned=False):
    """The first contribution to node j's gradient is assigned; later ones are
    added, in place only into an array the backward allocated itself (``owned``: the
    contribution, an alias of another gradient, is such an array)."""
    current = grads.get(j)
    shape, fresh = pattern.shape, pattern.fresh
    if current is None:
        if pattern.alias is not None:
            grads[j] = _Grad(pattern.alias.format(*args), shape, fresh or owned)
            return
        lines.append(pattern.assign().fill(args))
        grads[j] = _Grad(args[TARGET], shape, fresh)
        return
    combined = current.shape if current.shape == shape else passes.broadcast(current.shape, shape)
    args[CURRENT] = current.name
    if current.fresh and combined == current.shape:
        lines.append(pattern.iadd().fill(args))
        return
    lines.append(pattern.add().fill(args))
    grads[j] = _Grad(args[TARGET], combined, True)


def _finish(lines, grad, node, name, shared=False):
    """A returned gradient must have the node's full shape and be a new array
    (an ndarray: NumPy gives 0-dim results as scalars). A node no gradient reached
    (only through ops with a zero adjoint) gets zeros."""
    def call(function, arguments, keywords=()):
        return _assign(_slot(0), gast.Call(gast.Attribute(_name("xp"), function, gast.Load()), arguments,
                                           [gast.keyword(k, v) for k, v in keywords]))

    shape, dtype = node.shape, node.dtype
    if grad is None:
        form = _pattern(("zeros", shape, dtype), lambda: _Form(call("zeros", [constant(shape)],
                                                                    [("dtype", constant(dtype))])))
        lines.append(form.fill([name]))
        return name
    if shape == ():
        form = _pattern(("array", dtype), lambda: _Form(call("asarray", [_name(_slot(1))], [
            ("dtype", constant(dtype)), ("copy", gast.Constant(True, None))])))
        lines.append(form.fill([name, grad.name]))
        return name
    if grad.shape != shape:
        # zeros plus the smaller gradient that broadcasts: a new array of the full shape
        form = _pattern(("fill", shape, dtype), lambda: _Form(_assign(_slot(0), gast.BinOp(
            gast.Call(gast.Attribute(_name("xp"), "zeros", gast.Load()), [constant(shape)],
                      [gast.keyword("dtype", constant(dtype))]), gast.Add(), _name(_slot(1))))))
        lines.append(form.fill([name, grad.name]))
        return name
    if not grad.fresh and not shared:
        lines.append(Line(f"{name} = xp.asarray({grad.name}, copy=True)", [grad.name], [name], name))
        return name
    return grad.name


# ---- compiling ------------------------------------------------------------------------------

def _small_names(order, values):
    """(small, tiny): values and gradients of nodes smaller than SMALL and TINY bytes."""
    small, tiny = [], []
    classes = {}                # (shape, dtype) -> the list its values go in, or None
    for i, node in enumerate(order):
        key = (node.shape, node.dtype)
        found = classes.get(key, classes)
        if found is classes:
            size = math.prod(node.shape) * node.dtype.itemsize
            found = classes[key] = tiny if size < TINY else small if size < SMALL else None
        if found is not None:
            found.append(values[i])
            found.append(f"g{i}")
    return set(small), set(tiny)


def _tuple_text(items):
    """``(a, b)``, ``(a,)``, ``()``, as astor writes a tuple inside another expression."""
    if len(items) == 1:
        return f"({items[0]},)"
    return "(" + ", ".join(items) + ")"


def _return_text(returned, top, text_of):
    """The return statement for ``returned`` (names, None or _Seq, each rendered by
    ``text_of``; a top-level tuple when ``top``), as astor writes it."""
    items = [_seq_text(r, text_of) if r.__class__ is _Seq else "None" if r is None else text_of(r)
             for r in returned]
    if not top:
        return "return " + items[0]
    if not items:
        return "return ()"
    return "return " + ", ".join(items) + ("," if len(items) == 1 else "")


def _seq_text(seq, text_of):
    if text_of is str:
        return _tuple_text(["None" if n is None else n for n in seq.names])
    return text_of(seq)


def _returned_names(returned):
    names = []
    for r in returned:
        if r.__class__ is _Seq:
            names += [n for n in r.names if n is not None]
        elif r is not None:
            names.append(r)
    return names


def _compile(name, params, body, returned, top, program, state):
    """The function ``name(*params)`` over ``body`` (Lines) returning ``returned`` (see
    ``_return_text``), compiled, its source registered in linecache. A long body
    becomes a chain of helpers (``_link``)."""
    namespace = dict(globals_for(state.space))
    namespace["__builtins__"] = builtins.__dict__
    namespace["check_finite"] = check_finite
    namespace["Retrace"] = Retrace
    keep = _returned_names(returned)
    body = passes.doubled_terms(views.merged_views(body, keep))
    if state.fuse is not None:
        body = state.fuse(body, keep, state.label)
    if state.known is not None:
        known = {**state.known, **state.gradients} if state.gradients else state.known
        body = inplace.reuse_buffers(body, keep, known, state.sizes)
    namespace.update(state.extra)
    if state.known is not None and len(body) <= LONG:
        body, count = buffers.keep_buffers(body, keep, state.known, state.sizes, params, namespace)
        if count:
            namespace["_take"], namespace["_give"] = buffers.pool(count)
            namespace["_unused"] = buffers.unused
            keep = keep + ["_B"]
    if state.known is not None:
        body = products.small_products(body, state.known, state.product_sizes, state.order)
    if len(body) <= LONG:
        functions = [_function_text(name, params, passes.free_lines(body, keep),
                                    _return_text(returned, top, str))]
    else:
        functions = _link(name, params, body, returned, top, keep, *state.small())
    if state.dry:
        return None, "\n".join(text for _, text in functions)
    filename = f"<neuronika {name} #{_file_number()}>"
    texts, offset, made = [], 0, []
    for fn_name, text in functions:
        module = compile(text, filename, "exec")
        code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
        if offset:
            code = _shift(code, offset)
        made.append((fn_name, code))
        texts.append(text)
        offset += text.count("\n") + 1
    source = "\n".join(texts)
    # The helpers see the shared globals; the main function also sees the helpers. No
    # function is among its own globals: no reference cycle, so a dropped program is freed
    # at once, not at the next garbage collection.
    outer = dict(namespace) if len(made) > 1 else namespace
    for fn_name, code in made[1:]:
        outer[fn_name] = types.FunctionType(code, namespace, fn_name)
    function = types.FunctionType(made[0][1], outer, name)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    program.filenames.append(filename)
    return function, source


def _function_text(name, params, lines, returned):
    parts = [f"def {name}({', '.join(params)}):\n"]
    if lines:
        # every line, and every line inside a compound statement, indented once
        parts.append("    " + "\n".join([line.text for line in lines]).replace("\n", "\n    ") + "\n")
    if returned:
        parts.append(f"    {returned}\n")
    elif not lines:
        parts.append("    pass\n")
    return name, "".join(parts)


_END = float("inf")


def _link(name, params, body, returned, top, keep, small, tiny):
    """A long body as helpers of at most CHUNK statements, called in turn by ``name``,
    which takes its arguments as one tuple ``a``.

    What crosses from one helper to another travels in tuples: each helper returns
    the values that later helpers (or the return statement) read, grouped by the last
    helper that reads them (``s3_1`` and so on, dropped after that call), and a
    helper unpacks what it reads from those tuples (``v5, _, v7 = s3_1[4:7]``). So
    each function, the calling one included, stays small: ``compile()`` is superlinear
    in the size of one function. An argument read at the end is handed on by the
    first helper that reads it. A reorderable tuple in ``returned`` gets the order in
    which the helpers return its names (``_Seq.names`` is updated).
    """
    pieces = [body[k:k + CHUNK] for k in range(0, len(body), CHUNK)]
    count = len(pieces)
    is_param = set(params)
    reads, writes = [], []
    for piece in pieces:
        written = set(itertools.chain.from_iterable([line.stores for line in piece]))
        # a name is read from outside when its first load comes no later than its first store
        # (``g += d`` reads g); the reads in the order of their first loads
        loaded = dict.fromkeys(itertools.chain.from_iterable([line.loads for line in piece]))
        if written.isdisjoint(loaded):
            read = list(loaded)
        else:
            first_store = {n: k for k in range(len(piece) - 1, -1, -1) for n in piece[k].stores}
            first_load = {n: k for k in range(len(piece) - 1, -1, -1) for n in piece[k].loads
                          if n in first_store}
            read = [n for n in loaded if n not in first_store or first_load[n] <= first_store[n]]
        reads.append(read)
        writes.append(written)
    final = set(keep)
    # arguments needed at the end leave from the first helper that reads them
    for k in range(count):
        for n in reads[k]:
            if n in final and n in is_param:
                writes[k].add(n)
                is_param.discard(n)
    # liveness: what each helper hands on, and to whom
    live = set(final)
    exports = [None] * count
    for k in range(count - 1, -1, -1):
        exports[k] = writes[k] & live
        live -= writes[k]
        live.update(reads[k])
    home = {n: -1 for n in params}            # the helper that last wrote a name (-1: an argument)
    # per source (a helper, or at [-1] the arguments): name -> the helpers that read it, in
    # order; name -> its position in the first of them
    consumers = [{} for _ in range(count + 1)]
    first_read = [{} for _ in range(count + 1)]
    for k in range(count):
        for position, n in enumerate(reads[k]):
            source = home.get(n)
            if source is None:
                continue                      # a global
            readers = consumers[source].get(n)
            if readers is None:
                consumers[source][n] = [k]
                first_read[source][n] = position
            else:
                readers.append(k)
        home.update(dict.fromkeys(exports[k], k))
    order_at_end = {}
    for r in returned:
        for n in (r.names if r.__class__ is _Seq else (r,)):
            if n is not None:
                order_at_end.setdefault(n, len(order_at_end))
    for n in final:
        source = home[n]
        readers = consumers[source].get(n)
        if readers is not None:
            readers.append(_END)
        else:
            consumers[source][n] = [_END]
            first_read[source][n] = order_at_end[n]
    # each helper's groups: by last reader (and, read only at the end, by the tuple they
    # end in); ordered by first reader, then by first read
    segment_of = {}
    for index, r in enumerate(returned):
        for n in (r.names if r.__class__ is _Seq else (r,)):
            segment_of[n] = index
    groups = [[] for _ in range(count)]       # [(group name, last reader, names)]
    place = [{} for _ in range(count)]        # per helper: name -> (group name, index)
    for k in range(count):
        by_last = {}
        mine, firsts, where = consumers[k], first_read[k], place[k]
        for n in exports[k]:
            readers = mine.get(n)
            if readers is None:
                continue
            last = readers[-1]
            tag = (last, segment_of.get(n)) if last == _END and len(readers) == 1 else (last, None)
            by_last.setdefault(tag, []).append(n)
        tags = sorted(by_last, key=lambda t: (t[0], -1 if t[1] is None else t[1]))
        for m, tag in enumerate(tags):
            members = by_last[tag]
            members.sort(key=lambda n: (mine[n][0], firsts[n], n))
            group = f"s{k + 1}" if len(tags) == 1 else f"s{k + 1}_{m + 1}"
            groups[k].append((group, tag[0], members))
            for index, n in enumerate(members):
                where[n] = (group, index)
    sizes = {g: len(members) for k in range(count) for g, _, members in groups[k]}
    sizes["a"] = len(params)
    param_index = {n: i for i, n in enumerate(params)}

    def located(source, n):
        return ("a", param_index[n]) if source == -1 else place[source][n]

    functions, calls = [], []
    home = {n: -1 for n in params}
    for k, piece in enumerate(pieces):
        wanted = {}                           # group -> [(index, name)]
        for n in reads[k]:
            source = home.get(n)
            if source is None:
                continue
            group, index = located(source, n)
            wanted.setdefault(group, []).append((index, n))
        prologue = []
        for group, items in wanted.items():
            prologue += _unpack(group, items, sizes[group])
        exported = groups[k]
        home.update(dict.fromkeys(exports[k], k))
        helper = f"{name}_part{k + 1}"
        args = list(wanted)
        results = [g for g, _, _ in exported]
        back = ""
        if results:
            back = "return " + ", ".join(_tuple_text(members) for _, _, members in exported)
            if len(results) == 1:
                back += ","
        keep_here = [n for _, _, members in exported for n in members]
        lines = passes.free_lines(prologue + piece, keep_here, small, tiny)
        functions.append(_function_text(helper, args, lines, back))
        call = f"{helper}({', '.join(args)})"
        if results:
            call = f"{', '.join(results)}{',' if len(results) == 1 else ''} = {call}"
        calls.append(Line(call, args, results))
    # the calling function frees each tuple after its last reader; the return statement
    # reads what is left
    at_end = set()

    def text_of(item):
        if item.__class__ is _Seq:
            located_names = [located(home[n], n) if n is not None else None for n in item.names]
            if item.reorder:
                pairs = sorted(zip(located_names, item.names), key=lambda p: (_group_order(p[0][0]), p[0][1]))
                item.names = [n for _, n in pairs]
                located_names = [loc for loc, _ in pairs]
            at_end.update(loc[0] for loc in located_names if loc is not None)
            return _tuple_text(_runs(located_names, sizes)) if located_names else "()"
        group, index = located(home[item], item)
        at_end.add(group)
        return f"{group}[{index}]"

    back = _return_text(returned, top, text_of)
    main = passes.free_lines(calls, at_end)
    return [_function_text(name, ["*a"], main, back)] + functions


def _group_order(group):
    """``a`` < ``s2`` < ``s10_1`` < ``s10_2``: the order helpers return them in."""
    if group == "a":
        return (0, 0)
    k, _, m = group[1:].partition("_")
    return (int(k), int(m or 0))


def _runs(located, sizes):
    """Tuple items for names at (group, index): consecutive indices of one group as
    one starred slice (``*s3[2:9]``, or ``*s3`` for all of it), lone ones subscripted."""
    items = []
    k = 0
    while k < len(located):
        if located[k] is None:
            items.append("None")
            k += 1
            continue
        group, start = located[k]
        end = k + 1
        while (end < len(located) and located[end] is not None and located[end][0] == group
               and located[end][1] == start + (end - k)):
            end += 1
        length = end - k
        if length == 1:
            items.append(f"{group}[{start}]")
        elif length == sizes[group]:
            items.append(f"*{group}")
        else:
            items.append(f"*{group}[{start}:{start + length}]")
        k = end
    return items


def _unpack(group, items, size):
    """Lines binding names from a group tuple: ``v5, _, v7 = s3[4:7]`` where the wanted
    indices are dense (at least half of the span), separately where not."""
    items.sort()
    lines = []
    k = 0
    while k < len(items):
        start = items[k][0]
        end = k + 1
        # extend while the span stays at least half used
        while end < len(items) and (end + 1 - k) * 2 >= items[end][0] - start + 1:
            end += 1
        span = items[end - 1][0] - start + 1
        if end - k == 1:
            name = items[k][1]
            lines.append(Line(f"{name} = {group}[{start}]", [group], [name]))
        else:
            targets = ["_"] * span
            for index, name in items[k:end]:
                targets[index - start] = name
            source = group if span == size else f"{group}[{start}:{start + span}]"
            names = [n for _, n in items[k:end]]
            lines.append(Line(f"{', '.join(targets)} = {source}", [group], names))
        k = end
    return lines


def _shift(code, lines):
    """``code`` with its line numbers ``lines`` further down (nested code included)."""
    consts = code.co_consts
    if any(isinstance(c, types.CodeType) for c in consts):
        consts = tuple(_shift(c, lines) if isinstance(c, types.CodeType) else c for c in consts)
        return code.replace(co_firstlineno=code.co_firstlineno + lines, co_consts=consts)
    return code.replace(co_firstlineno=code.co_firstlineno + lines)


def _file_number():
    """A number for a program's file name: one a freed program no longer uses, if any, so
    that the names (which the interpreter may keep per name) stay as few as the programs
    alive at once."""
    with _numbers_lock:
        if _free_numbers:
            return _free_numbers.pop()
    return next(_serial)


_free_numbers = []
_numbers_lock = threading.Lock()


def _release_files(filenames):
    """A program was freed: its source leaves linecache, its file numbers are free again."""
    _forget_files(filenames)
    with _numbers_lock:
        _free_numbers.extend(int(f[f.rindex("#") + 1:-1]) for f in filenames)


def _forget_files(filenames):
    for filename in filenames:
        linecache.cache.pop(filename, None)


def forget(program):
    """Drop a program's source from linecache now (it goes anyway when the program is freed)."""
    _forget_files(program.filenames)
