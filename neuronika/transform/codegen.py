"""From a linearised graph to a compiled forward and backward program.

``build`` runs once per graph signature (a cache miss). It splices each op's
forward template into one straight-line ``forward`` and the adjoint templates
into one ``backward``, renders them with astor, compiles the rendered source
and registers it with linecache, so ``.source`` and tracebacks show exactly
the code that runs. The program keeps code and shapes, never arrays or nodes;
its linecache entries go when it does (a finalizer), whichever cache dropped it.
"""
from __future__ import annotations

import itertools
import linecache
import threading
import weakref

import astor
import gast
import numpy as np

from ..ops import ZERO, Ctx, Grad
from . import passes
from .templates import GLOBALS, TemplateError, constant, expression, instantiate, parse

_serial = itertools.count(1)


class Anomaly(Exception):
    """Raised by generated code under ``detect_anomaly``; the runtime names the node."""

    def __init__(self, index, phase):
        super().__init__(index, phase)
        self.index = index
        self.phase = phase


def check_finite(value, index, phase):
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
                 "retained", "filenames", "__weakref__")

    def source(self):
        return self.forward_source + ("\n" + self.backward_source if self.backward_source else "")


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
    return Ctx(op, names, shapes, dtypes, node.shape, node.dtype, attrs, gshape, slot)


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


class _Bindings(dict):
    """Template names to AST: program variables given as AST, constants made on demand.
    A Python function (a custom_vjp's) becomes a global of the generated code."""

    def __init__(self, values, extra):
        super().__init__(values)
        self.extra = extra

    def __getitem__(self, name):
        value = dict.__getitem__(self, name)
        if callable(value) and not isinstance(value, (type, gast.AST)):
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


def build(order, leaves, anomaly=False, outputs=None, loss=None, fused=False, unit_seed=False,
          guards=(), wrt=None):
    """Compile the graph in ``order`` (leaves ``leaves``, each an argument).

    By default (``backward()`` on a root) the last node is the output and, if it
    needs a gradient, the one differentiated: ``forward`` returns its value and
    the values the backward reads, ``backward(seed, *saved)`` the gradients.
    The functional face asks for more: several ``outputs`` (positions), the
    ``loss`` position, one ``fused`` function computing values and gradients,
    a seed known to be 1 (``unit_seed``: multiplications by it are dropped), and
    ``guards``: (position, kind, value) checks that raise ``Retrace``, and
    ``wrt``: the leaves to differentiate (default: every differentiable leaf;
    the others are then constants, with no adjoint code).
    """
    with _compiling:
        return _build(order, leaves, anomaly, outputs, loss, fused, unit_seed, guards, wrt)


def _build(order, leaves, anomaly, outputs, loss, fused, unit_seed, guards, wrt):
    index_of = {node: i for i, node in enumerate(order)}
    values = [_value_name(node, i) for i, node in enumerate(order)]
    root = len(order) - 1
    outputs = [root] if outputs is None else list(outputs)
    if loss is None and outputs == [root] and order[root].requires_grad:
        loss = root
    leaf_args = [values[index_of[leaf]] for leaf in leaves]
    extra = {}

    forward, forward_locals = _forward(order, index_of, values, anomaly, extra, guards)
    out_names = [values[i] for i in outputs]
    out_value = _name(out_names[0]) if len(outputs) == 1 else _tuple(out_names)
    guard_names = [values[p] for p, _, _ in guards]
    program = Program()
    program.filenames = []
    weakref.finalize(program, _forget_files, program.filenames).atexit = False
    program.grad_leaves = program.retained = ()
    program.backward = program.backward_source = None
    if loss is None:
        forward = passes.drop_dead_assignments(forward, out_names + guard_names)
        body = passes.free_after_last_use(forward, out_names) + [gast.Return(out_value)]
        program.forward, program.forward_source = _compile("forward", leaf_args, body, program, extra)
        return program

    backward, saved, returned, grad_leaves, retained = _backward(order, index_of, values, forward_locals,
                                                                 anomaly, loss, extra, wrt)
    if unit_seed:
        backward = passes.drop_unit_factor(backward, "seed")
    grads = _tuple([r for r in returned])
    if fused:
        keep = out_names + [r for r in returned if r]
        body = passes.drop_dead_assignments(forward + backward, keep + guard_names)
        body = passes.free_after_last_use(body, keep)
        body.append(gast.Return(gast.Tuple([out_value, grads], gast.Load())))
        program.forward, program.forward_source = _compile("program", ["seed", *leaf_args], body,
                                                           program, extra)
    else:
        body = (passes.free_after_last_use(forward, out_names + saved)
                + [gast.Return(gast.Tuple([out_value, _tuple(saved)], gast.Load()))])
        program.forward, program.forward_source = _compile("forward", leaf_args, body, program, extra)
        body = passes.free_after_last_use(backward, [r for r in returned if r]) + [gast.Return(grads)]
        program.backward, program.backward_source = _compile("backward", ["seed", *saved], body,
                                                             program, extra)
    leaf_position = {index_of[leaf]: k for k, leaf in enumerate(leaves)}
    program.grad_leaves = tuple(leaf_position[i] for i in grad_leaves)
    program.retained = tuple(retained)
    return program


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


def _forward(order, index_of, values, anomaly, extra, guards):
    stmts = []
    forward_locals = {}
    guards_at = {}
    for position, kind, expected in guards:
        guards_at.setdefault(position, []).append((kind, expected))
    for i, node in enumerate(order):
        op = node.op
        if op is None:
            # a value read straight off an argument (``float(c)``) is checked on entry
            for kind, expected in guards_at.get(i, ()):
                stmts.append(_guard(values[i], kind, expected))
            continue
        names = op.input_names(len(node.inputs))
        ctx = _context(node, names)
        template = parse(_resolve(op.forward, ctx))
        bindings = _Bindings(_statics(ctx), extra)
        for name, inp in zip(names, node.inputs):
            bindings[name] = _input(values[index_of[inp]], inp, op)
        prefix = f"{values[i]}_"
        body, _ = instantiate(template, bindings, prefix, "y", values[i], _where(node))
        forward_locals[i] = {local: prefix + local for local in template.stores - {"y"}}
        stmts.extend(body)
        if anomaly:
            stmts.append(_check(values[i], i, "forward"))
        for kind, expected in guards_at.get(i, ()):
            stmts.append(_guard(values[i], kind, expected))
    return stmts, forward_locals


def _input(name, node, op):
    """How a template reads an input. A Python float argument of a traced function is
    passed as a float (NumPy types it weakly in arithmetic); a template that is not
    elementwise may call array methods on it, so it reads it as a 0-d array."""
    if node.key[0] == "weak" and not op.elementwise:
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
        if op is not None and node.requires_grad and any(
                inp in reaches and op.grad_template(slot) is not None for slot, inp in enumerate(node.inputs)):
            reaches.add(node)
    return reaches


def _backward(order, index_of, values, forward_locals, anomaly, root, extra, wrt):
    root_node = order[root]
    reaches = _reaching(order, wrt)
    grads = {root: _Grad("seed", root_node.shape, False)}
    stmts = []
    saved = {}

    def read(bindings_used, array_names):
        for name in bindings_used:
            if name in array_names:
                saved.setdefault(array_names[name], None)

    for i in range(root, -1, -1):
        node = order[i]
        op = node.op
        if op is None or node not in reaches or i not in grads:
            continue
        g = grads[i]
        full = None
        names = op.input_names(len(node.inputs))
        for slot, (name, inp) in enumerate(zip(names, node.inputs)):
            spec = op.grad_template(slot)
            if spec is None or spec is ZERO or inp not in reaches:
                continue
            j = index_of[inp]
            dy = g
            if not op.implicit_dy and g.shape != node.shape:
                if full is None:
                    full = _Grad(f"{g.name}_full", node.shape, False)
                    call = gast.Call(gast.Attribute(_name("xp"), "broadcast_to", gast.Load()),
                                     [_name(g.name), constant(node.shape)], [])
                    stmts.append(_assign(full.name, call))
                dy = full
            ctx = _context(node, names, gshape=dy.shape, slot=slot)
            bindings = _Bindings(_statics(ctx), extra)
            arrays = {}     # template name -> forward value name, for the saved set
            shapes = {"dy": dy.shape}
            for other_name, other in zip(names, node.inputs):
                arrays[other_name] = values[index_of[other]]
                shapes[other_name] = other.shape
            arrays["y"] = values[i]
            shapes["y"] = node.shape
            for local, var in forward_locals.get(i, {}).items():
                arrays[local] = var
                shapes[local] = node.shape
            for template_name, var in arrays.items():
                bindings[template_name] = _name(var)
            for other_name, other in zip(names, node.inputs):
                bindings[other_name] = _input(values[index_of[other]], other, op)
            bindings["dy"] = _name(dy.name)
            where = _where(node)

            accumulate = op.accumulate_template(slot)
            target = grads.get(j)
            if (accumulate is not None and target is not None and target.fresh
                    and target.shape == inp.shape and inp.dtype == node.dtype):
                bindings["acc"] = _name(target.name)
                body, used = instantiate(parse(_resolve(accumulate, ctx)), bindings, f"t{i}_{slot}_",
                                         None, None, where)
                read(used, arrays)
                stmts.extend(body)
                continue

            grad = _resolve(spec, ctx)
            if grad is ZERO:                 # zero for these dtypes (imag of a real value)
                continue
            if not isinstance(grad, Grad):
                grad = Grad(grad)
            template = parse(grad.src)
            if template.expr is not None:
                value, used = expression(template, bindings, where)
                fresh = not grad.view and not isinstance(template.expr, gast.Name)
            else:
                temp = f"t{i}_{slot}"
                body, used = instantiate(template, bindings, f"{temp}_", "dx", temp, where)
                stmts.extend(body)
                value, fresh = _name(temp), not grad.view
            read(used, arrays)
            if grad.shape is not None:
                shape = tuple(grad.shape)
            elif op.elementwise:
                shape = passes.broadcast(*[shapes[n] for n in used if n in shapes])
            else:
                shape = inp.shape
            extent = node.shape if op.elementwise else passes.broadcast(shape, inp.shape)
            value, shape, fresh = passes.unbroadcast(value, shape, inp.shape, extent, fresh)
            if inp.dtype != node.dtype:
                if node.dtype.kind == "c" and inp.dtype.kind != "c":     # a real input: the real part
                    value = gast.Call(gast.Attribute(_name("xp"), "real", gast.Load()), [value], [])
                # copy=False: an adjoint may already have the input's dtype (abs of a complex
                # value); where it converts, a new array, where not, the same one: fresh as before
                value = gast.Call(gast.Attribute(value, "astype", gast.Load()), [constant(inp.dtype)],
                                  [gast.keyword("copy", gast.Constant(False, None))])
            _check_shape(shape, inp.shape, where)
            _accumulate(stmts, grads, j, value, shape, fresh)
            if anomaly:
                stmts.append(_check(grads[j].name, i, "backward"))

    leaf_returns, retained_returns, grad_leaves, retained = [], [], [], []
    for i, node in enumerate(order):
        if node not in reaches:
            continue
        if node.op is None:
            grad_leaves.append(i)
            leaf_returns.append(_finish(stmts, grads.get(i), node, f"g{i}"))
        elif node.retain:
            retained.append(i)
            retained_returns.append(_finish(stmts, grads.get(i), node, f"g{i}"))
    returned = leaf_returns + retained_returns
    return stmts, list(saved), returned, grad_leaves, retained


def _check_shape(shape, target, where):
    if len(shape) > len(target) or passes.broadcast(shape, target) != tuple(target):
        raise TemplateError(f"{where}: an adjoint of shape {shape} does not fit its input of shape {target}")


def _accumulate(stmts, grads, j, value, shape, fresh):
    """The first contribution to node j's gradient is assigned; later ones are
    added, in place only into an array the backward allocated itself."""
    current = grads.get(j)
    if current is None:
        if isinstance(value, gast.Name):
            grads[j] = _Grad(value.id, shape, fresh)
            return
        stmts.append(_assign(f"g{j}", value))
        grads[j] = _Grad(f"g{j}", shape, fresh)
        return
    combined = passes.broadcast(current.shape, shape)
    if current.fresh and combined == current.shape:
        stmts.append(gast.AugAssign(_name(current.name, gast.Store()), gast.Add(), value))
        return
    stmts.append(_assign(f"g{j}", gast.BinOp(_name(current.name), gast.Add(), value)))
    grads[j] = _Grad(f"g{j}", combined, True)


def _finish(stmts, grad, node, name):
    """A returned gradient must have the node's full shape and be a new array
    (an ndarray: NumPy gives 0-dim results as scalars). A node no gradient reached
    (only through ops with a zero adjoint) gets zeros."""
    if grad is None:
        stmts.append(_assign(name, gast.Call(gast.Attribute(_name("xp"), "zeros", gast.Load()),
                                             [constant(node.shape), constant(node.dtype)], [])))
        return name
    if node.shape == ():
        stmts.append(_assign(name, gast.Call(gast.Attribute(_name("xp"), "array", gast.Load()),
                                             [_name(grad.name), constant(node.dtype)], [])))
        return name
    if grad.shape != node.shape:
        call = gast.Call(gast.Attribute(_name("xp"), "full", gast.Load()),
                         [constant(node.shape), _name(grad.name)], [])
        stmts.append(_assign(name, call))
        return name
    if not grad.fresh:
        stmts.append(_assign(name, gast.Call(gast.Attribute(_name(grad.name), "copy", gast.Load()), [], [])))
        return name
    return grad.name


def _compile(name, args, body, program, extra):
    module = gast.parse(f"def {name}({', '.join(args)}):\n    pass\n")
    module.body[0].body = body
    tree = gast.gast_to_ast(module)
    source = astor.to_source(tree, pretty_source=lambda parts: "".join(parts))
    filename = f"<neuronika {name} #{next(_serial)}>"
    namespace = dict(GLOBALS)
    namespace["check_finite"] = check_finite
    namespace["Retrace"] = Retrace
    namespace.update(extra)
    exec(compile(source, filename, "exec"), namespace)
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    program.filenames.append(filename)
    # The function is not left among its own globals: no reference cycle, so a dropped
    # program is freed at once, not at the next garbage collection.
    return namespace.pop(name), source


def _forget_files(filenames):
    for filename in filenames:
        linecache.cache.pop(filename, None)


def forget(program):
    """Drop a program's source from linecache now (it goes anyway when the program is freed)."""
    _forget_files(program.filenames)
