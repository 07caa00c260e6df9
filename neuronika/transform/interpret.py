"""Running a graph without generating its program: the interpreter for first-seen signatures.

``build`` takes what ``codegen.build`` takes and returns a ``Plan``, which has a
Program's interface (``forward``, ``backward``, ``grad_leaves``, ``retained``) but
no generated program: each node runs a small function made once per *node kind*
(op, attributes, input shapes, dtypes and weak typing, and for an adjoint the slot,
the shape of ``dy`` and whether it is a seed known to be 1) from the same templates,
with the same helpers (``codegen._context``, ``_statics``, ``_Bindings``,
``_input``, ``templates.instantiate``, ``passes.unbroadcast``, ...). The plan
repeats ``codegen._backward``'s walk, so a gradient is assigned, added in place or
added anew exactly where the generated code does it: the same NumPy calls on the same
values, hence the same bits. Nodes whose templates differ only in integer literals
(``xs[3]``, ``xs[4]``: an unrolled loop's steps) share one function per *template
family* taking the literals as arguments (``codegen._family``'s rule, checked the same
way on the family's first member), so a first call makes a function per op kind, not
per step.

What differs cannot change a value: no source is rendered (a traceback names the op
and the pass, not a generated line), and where the generated code drops dead
statements (``grad``'s fused program, a forward without gradient) the plan drops
them node by node, and whole adjoints whose gradient nothing reads.

The functional face's hook is ``build`` itself (``codegen.build``'s signature), called
through ``run.compiled_or_interpreted`` in place of ``TRACED.get_or_build``; a trace
keeps the plan until it is compiled (``tracing.Trace.promote``).
"""
from __future__ import annotations

import ast
import functools
import threading
import types
import weakref

import gast
import numpy as np

from ..graph import WeakNode
from ..ops import ZERO, Grad
from . import codegen, passes
from .codegen import Retrace, _freeze, check_finite
from .templates import _AST_OF, GLOBALS, expression, globals_for, instantiate, names, parse

#: node kind -> _Kind (what was made for it). A kind is the op, its attributes (``codegen._freeze``),
#: the output's shape and dtype and each input's shape, dtype and weak typing: everything a
#: template's code depends on.
_KINDS = {}
_KINDS_MAX = 4096
_kinds_lock = threading.Lock()

# How a contribution reaches its gradient: the first is assigned, later ones added in
# place (into an array the backward allocated) or added into a new array; an
# accumulate template (index's ``add.at``) writes into the gradient itself.
ASSIGN, IADD, ADD, ACC = 0, 1, 2, 3
# How a returned gradient is finished (codegen._finish).
AS_IS, ZEROS, ARRAY, FULL, COPY = 0, 1, 2, 3, 4
_GUARD_KINDS = {"int": int, "float": float, "complex": complex}


def kinds_clear():
    """Forget the functions made per node kind (code and the constants it names, such as
    a ``custom_vjp``'s functions; never arrays of a graph)."""
    with _kinds_lock:
        _KINDS.clear()
        _FAMILIES.clear()


def _name(identifier, ctx=None):
    return gast.Name(identifier, ctx or gast.Load(), None, None)


def _compile(args, body, extra, what, literals=0):
    """A function of ``args`` running ``body``, compiled from the AST (nothing is rendered);
    a traceback through it names ``what`` (the op and the pass). A template family's function
    takes its ``literals`` integer literals first (``__nkL0__``, ...)."""
    statements = [_located(stmt) for stmt in body]
    params = [_arg(f"__nkL{k}__") for k in range(literals)] + [_arg(a) for a in args]
    signature = ast.arguments(posonlyargs=[], args=params, vararg=None, kwonlyargs=[], kw_defaults=[],
                              kwarg=None, defaults=[])
    function = ast.FunctionDef("step", signature, statements, [], None, None, lineno=1, col_offset=0,
                               end_lineno=1, end_col_offset=0)
    namespace = dict(GLOBALS)
    namespace.update(extra)
    exec(compile(ast.Module([function], []), f"<neuronika interpreter: {what}>", "exec"), namespace)
    return namespace.pop("step")


def _arg(name):
    return ast.arg(name, None, None, lineno=1, col_offset=0, end_lineno=1, end_col_offset=0)


_LOCATED = {cls: "lineno" in cls._attributes for cls in _AST_OF.values()}


def _located(node):
    """A gast tree as an ast tree on line 1 (``templates.to_ast`` and
    ``ast.fix_missing_locations`` in one pass)."""
    target = _AST_OF.get(node.__class__)
    if target is None:
        return ast.fix_missing_locations(_at_line_1(gast.gast_to_ast(node)))
    new = target.__new__(target)
    fields = new.__dict__
    source = node.__dict__
    for key in target._fields:
        value = source.get(key)
        if isinstance(value, gast.AST):
            value = _located(value)
        elif value.__class__ is list:
            value = [_located(v) if isinstance(v, gast.AST) else v for v in value]
        fields[key] = value
    if _LOCATED[target]:
        fields["lineno"] = fields["end_lineno"] = 1
        fields["col_offset"] = fields["end_col_offset"] = 0
    return new


def _at_line_1(tree):
    if "lineno" in tree._attributes:
        tree.lineno = tree.end_lineno = 1
        tree.col_offset = tree.end_col_offset = 0
    return tree


def _loads(stmts):
    found, stores = [], []
    for stmt in stmts:
        names(stmt, found, stores)
    return set(found)


def _stores(stmts):
    loads, found = [], []
    for stmt in stmts:
        names(stmt, loads, found)
    return set(found)


def _has_effect(stmts):
    """Whether a statement is one ``passes.drop_dead_assignments`` never drops (a call
    for its effect, a write into an array): the names it reads are live."""
    for s in stmts:
        if isinstance(s, gast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], gast.Name):
            continue
        if isinstance(s, gast.AugAssign) and isinstance(s.target, gast.Name):
            continue
        return True
    return False


class _Kind:
    """What is made for one node kind: the forward template's input names and locals, the
    slots that have an adjoint (slot, whether it has an accumulate template), and the
    functions made so far: ``plain`` (the whole forward), ``forwards`` (by variant),
    ``adjoints`` (by slot, shape of dy, unit seed, accumulate)."""

    __slots__ = ("names", "src", "key", "locals", "slots", "implicit_dy", "plain", "forwards",
                 "adjoints")

    def forward(self, node, variant):
        """``variant``: None runs the whole template; (keep_y, kept_locals) drops what is dead."""
        if variant is None and self.plain is not None:
            return self.plain
        step = self.forwards.get(variant)
        if step is None:
            with codegen._compiling:
                step = self.forwards.get(variant)
                if step is None:
                    step = self.forwards[variant] = _make_forward(node, self, variant)
            if variant is None:
                self.plain = step
        return step

    def adjoint(self, node, slot, dshape, unit, accumulate):
        key = (slot, dshape, unit, accumulate)
        step = self.adjoints.get(key)
        if step is None:
            with codegen._compiling:
                step = self.adjoints.get(key)
                if step is None:
                    step = self.adjoints[key] = _make_adjoint(node, self, slot, dshape, unit, accumulate)
        return step


def _kind(node, key):
    op = node.op
    kind = _Kind()
    kind.names = op.input_names(len(node.inputs))
    ctx = codegen._context(node, kind.names)
    with codegen._compiling:
        kind.src = codegen._resolve(op.forward, ctx)
        normal, literals = codegen._literals(kind.src)
        template = parse(normal if literals else kind.src)    # the same locals, parsed once
    kind.locals = tuple(sorted(template.stores - {"y"}))
    kind.key = key
    slots = []
    for slot in range(len(node.inputs)):
        spec = op.grad_template(slot)
        if spec is not None and spec is not ZERO:
            slots.append((slot, op.accumulate_template(slot) is not None))
    kind.slots = tuple(slots)
    kind.implicit_dy = op.implicit_dy
    kind.plain = None
    kind.forwards = {}
    kind.adjoints = {}
    if key is None:
        return kind
    with _kinds_lock:
        found = _KINDS.get(key)
        if found is not None:
            return found
        if len(_KINDS) >= _KINDS_MAX:               # oldest first (dicts keep insertion order)
            for old in list(_KINDS)[: _KINDS_MAX // 4]:
                del _KINDS[old]
        _KINDS[key] = kind
    return kind


class _Forward:
    """``fn(*inputs)``: the node's value, or (value, *locals) when it has locals; ``reads``:
    the input slots it reads; ``empty``: nothing left to run."""

    __slots__ = ("fn", "reads", "empty", "has_locals")


class _Draft:
    """A step's statements before they are compiled: ``step`` (a _Forward or _Adjoint with
    all but ``fn``), the function's ``args``, ``body``, ``extra`` globals, and ``what`` it is."""

    __slots__ = ("step", "args", "body", "extra", "what")


def _finish(draft, literals=()):
    """The draft's step with its function (a family's: ``literals`` are its first arguments)."""
    step = draft.step
    if draft.body is not None:
        step.fn = _compile(draft.args, draft.body, draft.extra, draft.what, len(literals))
    return step


#: template family key -> the family's step (its function takes the integer literals first),
#: or None where the family once wrote other code than its member (then never used)
_FAMILIES = {}


def _family(key, literals, make_family, make_member):
    """The step for a node whose templates differ from others of its family only in integer
    literals (``x[3]``, ``x[4]``: ``codegen._family``): the family's function with this node's
    literals bound, when the family writes the same code as the member made the usual way
    (checked on the first member); else the member's own step."""
    found = _FAMILIES.get(key, _FAMILIES) if key is not None else None
    if found is None:
        return _finish(make_member())
    if found is _FAMILIES:
        family, member = make_family(), make_member()
        if not _same_code(family, member, literals):
            _FAMILIES[key] = None
            return _finish(member)
        if len(_FAMILIES) >= _KINDS_MAX:
            _FAMILIES.clear()
        found = _FAMILIES[key] = _finish(family, literals)
    step = found.__class__()
    for field in found.__slots__:
        setattr(step, field, getattr(found, field))
    if found.fn is not None:
        step.fn = functools.partial(found.fn, *[int(text) for text in literals])
    return step


def _same_code(family, member, literals):
    if family.args != member.args or family.extra.keys() != member.extra.keys():
        return False
    if any(family.extra[k] is not member.extra[k] for k in family.extra):
        return False
    a, b = family.step, member.step
    for field in a.__slots__:
        if field != "fn" and getattr(a, field) != getattr(b, field):
            return False
    if family.body is None or member.body is None:
        return family.body is member.body
    return _same_list(family.body, member.body, literals)


def _same_list(a, b, literals):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, gast.AST):
            if not _same_tree(x, y, literals):
                return False
        elif x.__class__ is not y.__class__ or x != y:
            return False
    return True


def _same_tree(a, b, literals):
    """Whether gast trees ``a`` (a family's, with ``__nkL<k>__`` names) and ``b`` (a member's)
    are the same code once ``literals`` are put in."""
    if a.__class__ is gast.Name and a.id.startswith("__nkL"):
        value = int(literals[int(a.id[5:-2])])
        return b.__class__ is gast.Constant and b.value.__class__ is int and b.value == value
    if a.__class__ is not b.__class__:
        return False
    fields_a, fields_b = a.__dict__, b.__dict__
    for key in a._fields:                  # not the locations
        x, y = fields_a.get(key), fields_b.get(key)
        if isinstance(x, gast.AST):
            if not isinstance(y, gast.AST) or not _same_tree(x, y, literals):
                return False
        elif x.__class__ is list:
            if y.__class__ is not list or not _same_list(x, y, literals):
                return False
        elif x.__class__ is not y.__class__ or x != y:
            return False
    return True


#: families are for the many small nodes of an unrolled loop; a node with more inputs (a
#: variadic stack or pack, made once) is made on its own: a family's check would draft it twice
_FAMILY_INPUTS = 8


def _make_forward(node, kind, variant):
    src = kind.src
    normal, literals = codegen._literals(src)
    if not literals or len(node.inputs) > _FAMILY_INPUTS:
        return _finish(_forward_draft(node, kind, variant, src, 0))
    key = kind.key
    if key is not None:
        ctx = codegen._context(node, kind.names)
        key = codegen._family_key("f", key, parse(normal), codegen._statics(ctx), variant)
    return _family(key, literals, lambda: _forward_draft(node, kind, variant, normal, len(literals)),
                   lambda: _forward_draft(node, kind, variant, src, 0))


def _literal_bindings(bindings, count):
    for k in range(count):
        bindings[f"__nkL{k}__"] = _name(f"__nkL{k}__")


def _forward_draft(node, kind, variant, src, literals):
    op = node.op
    ctx = codegen._context(node, kind.names)
    extra = {}
    bindings = codegen._Bindings(codegen._statics(ctx), extra)
    args = []
    for k, (name, inp) in enumerate(zip(kind.names, node.inputs)):
        args.append(f"a{k}")
        bindings[name] = codegen._input(f"a{k}", inp, op)
    _literal_bindings(bindings, literals)
    body, _ = instantiate(parse(src), bindings, "l_", "y", "y", codegen._where(node))
    kept = [f"l_{local}" for local in kind.locals]
    if variant is not None:
        keep_y, kept_locals = variant
        kept = [f"l_{kind.locals[m]}" for m in kept_locals]
        if not (keep_y and len(body) == 1):          # one statement: y's, live
            body = passes.drop_dead_assignments(body, (["y"] if keep_y else []) + kept)
    step = _Forward()
    step.fn = None
    step.empty = not body
    stored = _stores(body)
    loaded = _loads(body)
    step.reads = tuple(k for k, a in enumerate(args) if a in loaded)
    step.has_locals = bool(kind.locals)
    draft = _Draft()
    draft.step, draft.args, draft.extra = step, args, extra
    draft.what = f"op {op.name}, forward"
    if step.empty:
        draft.body = None
        return draft
    y = _name("y") if "y" in stored else gast.Constant(None, None)
    if kind.locals:
        parts = [y] + [_name(f"l_{local}") if f"l_{local}" in kept and f"l_{local}" in stored
                       else gast.Constant(None, None) for local in kind.locals]
        result = gast.Tuple(parts, gast.Load())
    else:
        result = y
    draft.body = body + [gast.Return(result)]
    return draft


class _Adjoint:
    """``fn(dy, y, locals, *inputs)``: one input's gradient contribution (or, for an
    accumulate template, ``fn(acc, dy, y, locals, *inputs)`` adding into ``acc``).

    ``shape``/``fresh``: the contribution's static shape and whether it is a new
    array (``codegen._Grad``); ``passthrough``: it is ``dy`` itself; ``zero``: the
    template resolved to ZERO; ``effect``: it writes into an array (never dead);
    ``reads_y``, ``reads``, ``reads_locals``: the forward values it reads.
    """

    __slots__ = ("fn", "shape", "fresh", "passthrough", "zero", "effect", "reads_y", "reads",
                 "reads_locals")


def _make_adjoint(node, kind, slot, dshape, unit, accumulate):
    """The statements ``codegen._backward`` writes for one input of ``node``, as a function."""
    op = node.op
    ctx = codegen._context(node, kind.names, gshape=dshape, slot=slot)
    if accumulate:
        grad = None
        src = codegen._resolve(op.accumulate_template(slot), ctx)
    else:
        grad = codegen._resolve(op.grad_template(slot), ctx)
        if grad is ZERO:                  # zero for these dtypes (imag of a real value)
            step = _Adjoint()
            step.zero = True
            step.fn = None
            step.passthrough = step.effect = False
            step.shape, step.fresh = node.inputs[slot].shape, True
            step.reads_y, step.reads, step.reads_locals = False, (), ()
            return step
        if not isinstance(grad, Grad):
            grad = Grad(grad)
        src = grad.src
    normal, literals = codegen._literals(src)
    if not literals or len(node.inputs) > _FAMILY_INPUTS:
        return _finish(_adjoint_draft(node, kind, ctx, slot, dshape, unit, src, grad, 0))
    key = kind.key
    if key is not None:
        key = codegen._family_key("a" if accumulate else "g", key, parse(normal), codegen._statics(ctx),
                                  slot, dshape, unit, None if grad is None else (grad.shape, grad.view))
    normal_grad = None if grad is None else Grad(normal, grad.shape, grad.view)
    return _family(key, literals,
                   lambda: _adjoint_draft(node, kind, ctx, slot, dshape, unit, normal, normal_grad, len(literals)),
                   lambda: _adjoint_draft(node, kind, ctx, slot, dshape, unit, src, grad, 0))


def _adjoint_draft(node, kind, ctx, slot, dshape, unit, src, grad, literals):
    """``grad``: the Grad (its ``src`` is ``src``), or None for the accumulate template ``src``."""
    op = node.op
    names = kind.names
    inp = node.inputs[slot]
    extra = {}
    bindings = codegen._Bindings(codegen._statics(ctx), extra)
    dy = "seed" if unit else "dy"
    arrays = {}
    shapes = {"dy": dshape}
    for k, (other_name, other) in enumerate(zip(names, node.inputs)):
        arrays[other_name] = _name(f"a{k}")
        shapes[other_name] = other.shape
    arrays["y"] = _name("y")
    shapes["y"] = node.shape
    for m, local in enumerate(kind.locals):
        arrays[local] = gast.Subscript(_name("locs"), gast.Constant(m, None), gast.Load())
        shapes[local] = node.shape
    for template_name, value in arrays.items():
        bindings[template_name] = value
    for k, (other_name, other) in enumerate(zip(names, node.inputs)):
        bindings[other_name] = codegen._input(f"a{k}", other, op)
    bindings["dy"] = _name(dy)
    _literal_bindings(bindings, literals)
    where = codegen._where(node)
    args = [dy, "y", "locs"] + [f"a{k}" for k in range(len(node.inputs))]
    step = _Adjoint()
    step.fn = None
    step.zero = step.passthrough = False
    step.shape = inp.shape
    step.fresh = True

    if grad is None:
        bindings["acc"] = _name("acc")
        body, used = instantiate(parse(src), bindings, "t_", None, None, where)
        args = ["acc"] + args
        step.effect = True
    else:
        template = parse(src)
        if template.expr is not None:
            value, used = expression(template, bindings, where)
            fresh = not grad.view and not isinstance(template.expr, gast.Name)
            stmts = []
        else:
            stmts, used = instantiate(template, bindings, "t_", "dx", "t", where)
            value, fresh = _name("t"), not grad.view
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
            value = gast.Call(gast.Attribute(_name("xp"), "astype", gast.Load()),
                              [value, codegen.constant(inp.dtype)],
                              [gast.keyword("copy", gast.Constant(False, None))])
        codegen._check_shape(shape, inp.shape, where)
        step.shape, step.fresh = shape, fresh
        step.passthrough = isinstance(value, gast.Name) and value.id == dy
        step.effect = _has_effect(stmts)
        body = stmts + [gast.Return(value)]
    if unit:
        body = passes.drop_unit_factor(body, "seed")
    step.reads_y = "y" in used
    step.reads = tuple(k for k, name in enumerate(names) if name in used)
    step.reads_locals = tuple(m for m, local in enumerate(kind.locals) if local in used)
    draft = _Draft()
    draft.step, draft.args, draft.body, draft.extra = step, args, body, extra
    draft.what = f"op {op.name}, adjoint of input {slot}"
    return draft


class Plan:
    """A graph's run without its program, with a Program's interface (``codegen.Program``):
    ``forward``, ``backward`` (None when there is none), ``grad_leaves``, ``retained``.

    It holds functions and positions, never nodes or arrays, so a snapshot may keep it.
    The forward is four parallel lists (position, function, input positions, whether it
    returns locals) and ``frees`` (per position, the values to let go after it); the
    backward one entry per node: (position, shape to broadcast dy to or None, input
    positions, [(function, target, how, check NaN, its _Adjoint), ...], keep its gradient).
    """

    __slots__ = ("n", "leaf_positions", "outputs", "loss", "f_pos", "f_fn", "f_idx", "f_locals",
                 "frees", "backward_plan", "finish", "grad_leaves", "retained", "saved_values",
                 "saved_locals", "checked", "anomaly", "guards", "space", "__weakref__")

    backward = None

    def source(self):
        raise RuntimeError("an interpreted plan has no source; transform.source() builds the program")

    def forward(self, *values):
        """The outputs' value (one, or a tuple of several)."""
        V, _ = self._run_forward(values)
        return self._outputs(V)

    def _run_forward(self, values):
        V = [None] * self.n
        for position, value in zip(self.leaf_positions, values):
            V[position] = value
        L = {}
        if self.checked:
            self._run_forward_checked(V, L)
            return V, L
        frees = self.frees
        for i, fn, idx, has_locals in zip(self.f_pos, self.f_fn, self.f_idx, self.f_locals):
            if len(idx) == 1:
                out = fn(V[idx[0]])
            else:
                out = fn(*[V[k] for k in idx])
            if has_locals:
                V[i] = out[0]
                L[i] = out[1:]
            else:
                V[i] = out
            free = frees[i]
            if free is not None:
                for k in free:
                    V[k] = None
        return V, L

    def _run_forward_checked(self, V, L):
        """The forward with NaN/Inf checks (``detect_anomaly``) and a traced function's guards,
        each where the generated code has it."""
        guards = self.guards
        frees = self.frees
        for position, checks in guards.get(-1, ()):
            _check_guards(V[position], checks)
        for i, fn, idx, has_locals in zip(self.f_pos, self.f_fn, self.f_idx, self.f_locals):
            out = fn(*[V[k] for k in idx])
            if has_locals:
                V[i] = out[0]
                L[i] = out[1:]
            else:
                V[i] = out
            if self.anomaly:
                check_finite(V[i], i, "forward")
            for position, checks in guards.get(i, ()):
                _check_guards(V[position], checks)
            free = frees[i]
            if free is not None:
                for k in free:
                    V[k] = None

    def _outputs(self, V):
        outputs = self.outputs
        if len(outputs) == 1:
            return V[outputs[0]]
        return tuple([V[o] for o in outputs])

    def _run_backward(self, seed, V, L):
        G = [None] * self.n
        space = self.space
        xp = GLOBALS["xp"] if space is None else space.xp
        if space is not None and isinstance(seed, (np.ndarray, np.generic)):
            seed = space.asarray(seed)            # run makes NumPy seeds
        G[self.loss] = seed
        broadcast_to = xp.broadcast_to
        assign, iadd, add = ASSIGN, IADD, ADD
        for i, full, idx, slots, keep in self.backward_plan:
            g = G[i]
            if not keep:
                G[i] = None
            dy = g if full is None else broadcast_to(g, full)
            y = V[i]
            locs = L.get(i) if L else None
            if len(idx) == 1:
                ins = (V[idx[0]],)
            else:
                ins = [V[k] for k in idx]
            for fn, j, mode, check, _ in slots:
                if mode == assign:
                    G[j] = fn(dy, y, locs, *ins)
                elif mode == iadd:
                    current = G[j]
                    current += fn(dy, y, locs, *ins)
                    G[j] = current
                elif mode == add:
                    G[j] = G[j] + fn(dy, y, locs, *ins)
                else:
                    fn(G[j], dy, y, locs, *ins)
                if check:
                    check_finite(G[j], i, "backward")
            V[i] = None
        out = []
        for position, how, shape, dtype in self.finish:
            g = G[position]
            if how == AS_IS:
                out.append(g)
            elif how == ZEROS:
                out.append(xp.zeros(shape, dtype=_dtype(space, dtype)))
            elif how == ARRAY:
                out.append(xp.asarray(g, dtype=_dtype(space, dtype), copy=True))
            elif how == FULL:
                out.append(xp.zeros(shape, dtype=_dtype(space, dtype)) + g)
            else:
                out.append(xp.asarray(g, copy=True))
        return tuple(out)


class SplitPlan(Plan):
    """``forward(*leaf_values)`` -> (value, saved); ``backward(seed, *saved)`` -> gradients."""

    __slots__ = ()

    def forward(self, *values):
        V, L = self._run_forward(values)
        saved = [V[k] for k in self.saved_values]
        saved.extend([L[i][m] for i, m in self.saved_locals])
        return self._outputs(V), tuple(saved)

    def backward(self, seed, *saved):
        V = [None] * self.n
        for k, value in zip(self.saved_values, saved):
            V[k] = value
        L = {}
        for (i, m), value in zip(self.saved_locals, saved[len(self.saved_values):]):
            locs = L.get(i)
            if locs is None:
                locs = L[i] = {}
            locs[m] = value
        return self._run_backward(seed, V, L)


class FusedPlan(Plan):
    """``forward(seed, *leaf_values)`` -> (value, gradients), as ``grad``'s fused program."""

    __slots__ = ()

    def forward(self, seed, *values):
        V, L = self._run_forward(values)
        return self._outputs(V), self._run_backward(seed, V, L)


def _check_guards(value, checks):
    for kind, expected in checks:
        if kind == "bool":
            if bool(value) != bool(expected):
                raise Retrace
        elif _GUARD_KINDS[kind](value) != expected:
            raise Retrace


def _reaching(node, reaches):
    return node.requires_grad if reaches is None else node in reaches


def build(order, leaves, anomaly=False, outputs=None, loss=None, fused=False, unit_seed=False,
          guards=(), wrt=None, reaches=None):
    """A ``Plan`` for the graph in ``order``: ``codegen.build``'s arguments and meaning,
    without generating a program (``reaches``: ``codegen._reaching(order, wrt)`` when the
    caller has it already)."""
    from . import loops
    space = codegen.graph_space(leaves)
    # a recurrence of a kind never rolled runs unrolled here (cheaper than rolling it first)
    outputs, loss = passes.outputs_and_loss(order, outputs, loss)     # (mapped by rolling)
    rolled = loops.rolled(order, leaves, anomaly, outputs, loss, guards, known_only=True)
    if rolled is not None and rolled is not loops.DEFERRED:     # run as a loop, as codegen.build does
        order, outputs, loss, guards, old = rolled
        plan = build(order, leaves, anomaly, outputs, loss, fused, unit_seed, guards, wrt)
        plan.retained = tuple(old[order[i]] for i in plan.retained)
        return plan
    n = len(order)
    index_of = {node: i for i, node in enumerate(order)}
    root = n - 1
    outputs, loss = passes.outputs_and_loss(order, outputs, loss)
    if wrt is None:
        reaches = None
    elif reaches is None:
        reaches = codegen._reaching(order, wrt)
    # Where the generated code drops dead statements (a forward without gradient, grad's
    # fused program), a node runs only what is read: planned from the end. Otherwise (and
    # for a plain forward in which every node reads all its inputs) in this first pass.
    drop = loss is None or fused
    simple = loss is None and outputs == [root] and not guards
    forward_now = not drop or simple
    variant = (True, ()) if drop else None

    kinds = [None] * n
    idxs = [None] * n
    f_pos, f_fn, f_idx, f_locals = [], [], [], []
    last_use = {}
    returned = []                      # reaching leaves and retained nodes
    kinds_get = _KINDS.get
    for i, node in enumerate(order):
        op = node.op
        if op is None:
            if loss is not None and _reaching(node, reaches):
                returned.append(i)
            continue
        inputs = node.inputs
        attrs = node.attrs
        if attrs:
            attrs = _freeze(attrs)
        if len(inputs) == 1:
            a = inputs[0]
            k = index_of[a]
            idx = (k,)
            key = (op, attrs, node.shape, node.dtype, a.shape, a.dtype, a.__class__ is WeakNode)
        else:
            idx = tuple([index_of[x] for x in inputs])
            key = [op, attrs, node.shape, node.dtype]
            for a in inputs:
                key += (a.shape, a.dtype, a.__class__ is WeakNode)
            key = tuple(key)
        idxs[i] = idx
        try:
            kind = kinds_get(key) or _kind(node, key)
        except TypeError:                        # an unhashable attribute: made for this node only
            kind = _kind(node, None)
        kinds[i] = kind
        if node.retain and loss is not None and _reaching(node, reaches):
            returned.append(i)
        if forward_now:
            step = kind.forward(node, variant)
            reads = step.reads
            if simple and len(reads) != len(idx):
                forward_now = False              # a dead value is possible: plan from the end
                continue
            for r in reads:
                last_use[idx[r]] = i
            f_pos.append(i)
            f_fn.append(step.fn)
            f_idx.append(idx)
            f_locals.append(step.has_locals)

    plan = Plan() if loss is None else FusedPlan() if fused else SplitPlan()
    plan.n = n
    plan.leaf_positions = [index_of[leaf] for leaf in leaves]
    plan.outputs = outputs
    plan.loss = loss
    plan.anomaly = anomaly
    plan.space = space
    plan.grad_leaves = plan.retained = ()
    plan.backward_plan = plan.finish = ()
    plan.saved_values = plan.saved_locals = ()
    plan.checked = bool(anomaly or guards)

    backward_reads = set()                 # forward values an adjoint reads
    needed_locals = {}                     # node -> positions of the forward locals adjoints read
    if loss is not None:
        bplan, finish, grad_leaves, retained = _plan_backward(order, loss, kinds, idxs, anomaly,
                                                              unit_seed, reaches, returned)
        if fused and not anomaly:
            bplan = _live_backward(bplan, finish)
        for i, full, idx, slots, keep in bplan:
            for slot in slots:
                step = slot[4]
                if step.reads_y:
                    backward_reads.add(i)
                for k in step.reads:
                    backward_reads.add(idx[k])
                if step.reads_locals:
                    needed_locals.setdefault(i, set()).update(step.reads_locals)
        plan.backward_plan = bplan
        plan.finish = finish
        leaf_position = {index_of[leaf]: k for k, leaf in enumerate(leaves)}
        plan.grad_leaves = tuple(leaf_position[i] for i in grad_leaves)
        plan.retained = tuple(retained)
        if not fused:
            plan.saved_values = sorted(backward_reads)
            plan.saved_locals = sorted((i, m) for i, ms in needed_locals.items() for m in ms)

    kept_values = set(outputs)
    kept_values.update(backward_reads)
    kept_values.update(p for p, _, _ in guards)
    if not forward_now:
        f_pos, f_fn, f_idx, f_locals, last_use = _plan_forward_from_end(
            order, kinds, idxs, kept_values, needed_locals, anomaly)
    plan.f_pos, plan.f_fn, plan.f_idx, plan.f_locals = f_pos, f_fn, f_idx, f_locals
    # a value nothing reads later is let go after its last reader (leaves' are the user's)
    frees = plan.frees = [None] * n
    for k, i in last_use.items():
        if kinds[k] is not None and k not in kept_values:
            if frees[i] is None:
                frees[i] = [k]
            else:
                frees[i].append(k)

    # a guard runs right after its value is computed; on a leaf, after the nodes before it
    plan.guards = {}
    if guards:
        planned = set(f_pos)
        runs_after = []
        last = -1
        for i in range(n):
            if i in planned:
                last = i
            runs_after.append(last)
        for position, kind, expected in guards:
            plan.guards.setdefault(runs_after[position], []).append((position, [(kind, expected)]))
    if space is not None:
        _bind(plan, space)
    return plan


def _dtype(space, dtype):
    return dtype if space is None else space.dtype(dtype)


#: function made per node kind (with NumPy's globals) -> {space: the same code over that
#: space's globals (``templates.globals_for``)}
_BOUND = weakref.WeakKeyDictionary()


def _rebound(fn, space):
    """``fn`` (a step's function, or a family's with its literals bound) running on ``space``."""
    if isinstance(fn, functools.partial):
        return functools.partial(_rebound(fn.func, space), *fn.args)
    per_space = _BOUND.get(fn)
    if per_space is None:
        per_space = _BOUND.setdefault(fn, {})
    found = per_space.get(space)
    if found is None:
        namespace = dict(fn.__globals__)
        namespace.update(globals_for(space))
        found = per_space[space] = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__,
                                                      fn.__closure__)
    return found


def _bind(plan, space):
    """The plan's functions over ``space``'s ``xp`` and kernels (the kinds are shared by every
    namespace: they are made once, with NumPy's globals)."""
    plan.f_fn = [_rebound(fn, space) for fn in plan.f_fn]
    plan.backward_plan = [(i, full, idx, [(_rebound(s[0], space),) + tuple(s[1:]) for s in slots], keep)
                          for i, full, idx, slots, keep in plan.backward_plan]


def _plan_forward_from_end(order, kinds, idxs, kept_values, needed_locals, anomaly):
    """The forward with what nothing reads dropped (``passes.drop_dead_assignments``, node
    by node from the end): a node's value is live when an output, a guard, an adjoint, a
    NaN check or a live node's code reads it."""
    n = len(order)
    needed_y = [False] * n
    for k in kept_values:
        needed_y[k] = True
    f_pos, f_fn, f_idx, f_locals = [], [], [], []
    last_use = {}                     # from the end: the first reader met is the last one
    for i in range(n - 1, -1, -1):
        kind = kinds[i]
        if kind is None:
            continue
        kept = needed_locals.get(i)
        if kept:
            variant = (needed_y[i] or anomaly, tuple(sorted(kept)))
        else:
            variant = _KEEP_Y if needed_y[i] or anomaly else _DROP_Y
        step = kind.forwards.get(variant) or kind.forward(order[i], variant)
        if step.empty:
            continue
        idx = idxs[i]
        for r in step.reads:
            k = idx[r]
            if not needed_y[k]:
                needed_y[k] = True
            if k not in last_use:
                last_use[k] = i
        f_pos.append(i)
        f_fn.append(step.fn)
        f_idx.append(idx)
        f_locals.append(step.has_locals)
    f_pos.reverse()
    f_fn.reverse()
    f_idx.reverse()
    f_locals.reverse()
    return f_pos, f_fn, f_idx, f_locals, last_use


_KEEP_Y, _DROP_Y = (True, ()), (False, ())


def _plan_backward(order, root, kinds, idxs, anomaly, unit_seed, reaches, returned):
    """``codegen._backward``'s walk: which function adds what where. Returns the node steps
    (in the order they run), how each returned gradient is finished, and the positions of
    the returned leaves and retained nodes."""
    n = len(order)
    # per position, the static facts of its gradient so far (codegen._Grad): shape, whether
    # the backward allocated it, whether it is the seed itself
    gshapes = [None] * n
    fresh = [False] * n
    is_seed = [False] * n
    root_node = order[root]
    if _reaching(root_node, reaches):
        gshapes[root] = root_node.shape
        is_seed[root] = True
    retained_set = {i for i in returned if kinds[i] is not None}
    bplan = []
    for i in range(root, -1, -1):
        gshape = gshapes[i]
        if gshape is None:
            continue
        kind = kinds[i]
        if kind is None:
            continue
        node = order[i]
        gseed = is_seed[i]
        full = None
        slots = []
        idx = idxs[i]
        inputs = node.inputs
        for slot, has_accumulate in kind.slots:
            inp = inputs[slot]
            if not (inp.requires_grad if reaches is None else inp in reaches):
                continue
            j = idx[slot]
            dshape = gshape
            unit = unit_seed and gseed
            if not kind.implicit_dy and gshape != node.shape:
                full = dshape = node.shape
                unit = False
            tshape = gshapes[j]
            if (has_accumulate and tshape is not None and fresh[j] and tshape == inp.shape
                    and inp.dtype == node.dtype):
                step = kind.adjoint(node, slot, dshape, unit, True)
                slots.append((step.fn, j, ACC, False, step))
                continue
            step = kind.adjoints.get((slot, dshape, unit, False)) or kind.adjoint(node, slot, dshape, unit, False)
            if step.zero:
                continue
            if tshape is None:
                gshapes[j] = step.shape
                fresh[j] = step.fresh
                is_seed[j] = unit and step.passthrough
                mode = ASSIGN
            else:
                combined = tshape if tshape == step.shape else passes.broadcast(tshape, step.shape)
                if fresh[j] and combined == tshape:
                    mode = IADD
                else:
                    mode = ADD
                    gshapes[j] = combined
                    fresh[j] = True
                    is_seed[j] = False
            slots.append((step.fn, j, mode, anomaly, step))
        if slots:
            bplan.append((i, full, idx, slots, i in retained_set))

    leaf_finish, retained_finish, grad_leaves, retained = [], [], [], []
    for i in returned:
        node = order[i]
        if kinds[i] is None:
            grad_leaves.append(i)
            into = leaf_finish
        else:
            retained.append(i)
            into = retained_finish
        if gshapes[i] is None:
            how = ZEROS
        elif node.shape == ():
            how = ARRAY
        elif tuple(gshapes[i]) != node.shape:
            how = FULL
        elif not fresh[i]:
            how = COPY
        else:
            how = AS_IS
        into.append((i, how, node.shape, node.dtype))
    return bplan, leaf_finish + retained_finish, grad_leaves, retained


def _live_backward(bplan, finish):
    """Without the adjoints whose gradient nothing reads (what ``drop_dead_assignments``
    removes from a fused program): a gradient is live when it is returned, or when the node
    passes it on to a live one."""
    live = {position for position, _, _, _ in finish}
    for i, full, idx, slots, keep in bplan:
        for slot in slots:
            if slot[4].effect:          # a write into the gradient: every contribution to it stays
                live.add(slot[1])
    kept = []
    for entry in reversed(bplan):        # increasing position: inputs before their consumers
        slots = entry[3]
        for s in slots:
            if s[1] not in live and not s[4].effect:
                break
        else:                            # every contribution is live (the usual case)
            live.add(entry[0])
            kept.append(entry)
            continue
        i, full, idx, slots, keep = entry
        slots = [s for s in slots if s[1] in live or s[4].effect]
        if slots:
            live.add(i)
            kept.append((i, full, idx, slots, keep))
    kept.reverse()
    return kept
