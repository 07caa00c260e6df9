"""Running programs on a graph: the hot path of ``forward()`` and ``backward()``.

On a cache hit this is: one dict look-up by the root's ``sig`` (hashed as the nodes were
made), a walk that checks the graph against the one its program was made for
(``graph.match``: no sorting, no signature built; ``bound``), one call of the generated
forward, and for backward one call of the generated backward plus a loop that adds each
gradient into its leaf. A graph not recognised so is linearised (order + signature) and
looked up by its signature; its layout is kept from the second time its root's ``sig``
comes (``ProgramCache.remember``).

On a miss, a signature seen for the first time is interpreted (``interpret.build``:
the same templates, the same numbers, no code generation) and compiled only when it
comes back (``neuronika.config(compile=..., compile_after=...)``).

``backward()`` differentiates the values the last evaluation computed when one came
since the previous backward (``forward()``, or reading the value: the loss printed
and its gradient belong together, dropout masks included); such an evaluation keeps
copies of what the backward reads from the leaves' memory, so data changed in place
afterwards cannot mix into it. Otherwise ``backward()`` runs the forward itself,
from the current leaf values.
"""
from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict

import numpy as np

from .. import graph
from ..errors import AnomalyError, GradientError
from ..graph import (COMPILE, TRACER, VOLATILE, Constant, Witness, check_compile_after, check_compile_mode,
                     format_where, linearize, modes)
from . import codegen, interpret, loops
from .cache import CACHE, _member
from .codegen import Anomaly
from .fuse import FUSE, check_fuse_mode

_ndarray = np.ndarray


def bound(root):
    """(program, order, leaves): what runs the graph behind ``root``, its nodes in the
    program's order and its leaves. A graph built as one whose program is cached is found
    by its root's ``sig`` and verified node by node (``graph.match``), with no sorting and no
    signature built; any other goes through ``linearize`` and ``runner``."""
    if COMPILE.get()[0] != "never":
        for layout in CACHE.layouts_for(root.sig):
            found = graph.match(root, layout)
            if found is not None:
                program = layout.program
                if program.__class__ is Through and not program.holds(found[1]):
                    break                   # numbers it baked in changed: ``runner`` decides
                CACHE._layout_hit(layout)
                return program, found[0], found[1]
    order, leaves, key = linearize(root, cut="seen")
    program = runner(key, order, leaves)
    CACHE.remember(root, order, key, program)
    return program, order, leaves


def program_for(root):
    """The compiled program for the graph behind ``root`` (built now if need be)."""
    order, leaves, key = linearize(root, cut="seen")
    token = COMPILE.set(("always", COMPILE.get()[1]))
    try:
        return runner(key, order, leaves), order, leaves
    finally:
        COMPILE.reset(token)


class _Interpret(Exception):
    """A miss that is not compiled (yet): the graph runs through the interpreter."""


#: hash of a signature -> how many times it ran interpreted (the signatures themselves are
#: not kept: a collision can only make a signature compile one run early)
_runs = OrderedDict()
_runs_lock = threading.Lock()
_RUNS_MAX = 4096


def _when_repeated(key, after, build):
    """``build()`` on the ``after``-th run of ``key``'s signature; before, ``_Interpret``."""
    with _runs_lock:
        h = hash(key)
        count = _runs.pop(h, 0) + 1
        if count < after:
            _runs[h] = count
            if len(_runs) > _RUNS_MAX:
                _runs.popitem(last=False)
            raise _Interpret
    return build()


def forget_interpreted():
    """Forget how many times each signature ran interpreted, and the interpreter's
    functions per node kind (``transform.cache_clear`` calls this)."""
    with _runs_lock:
        _runs.clear()
    interpret.kinds_clear()


def runner(key, order, leaves):
    """What runs the graph: its compiled program (a cache hit, or a miss that compiles)
    or an interpreted plan (``interpret.Plan``), as the compile mode says. On a miss, an
    unrolled recurrence is rolled first (``_rolled``), so that its program serves every
    length."""
    mode, after = COMPILE.get()
    if mode == "never":
        return interpret.build(order, leaves, anomaly=key[-1])
    program = CACHE._hit(key)
    if program is not None:
        if program.__class__ is not Through or program.holds(leaves):
            return program
        CACHE.drop(id(program))         # numbers it baked in changed: this graph is new to it
    # a first run of a graph whose recurrence is of a kind never rolled runs unrolled through
    # the interpreter (cheaper than rolling it); the run that compiles rolls it
    compile_now = mode == "always" or mode == "auto" and (after == 1 or _runs_of(key) + 1 >= after)
    through = _rolled(key, order, leaves, "always" if compile_now else mode, after, not compile_now)
    if through is not None:
        return through
    member = _member(key, order, leaves)
    if mode == "always" or after == 1 and mode == "auto":
        return CACHE._miss(key, member, functools.partial(codegen.build, order, leaves, anomaly=key[-1]))
    try:
        return CACHE._miss(key, member, functools.partial(_compile_when_repeated, key, order, leaves, after))
    except _Interpret:
        return interpret.build(order, leaves, anomaly=key[-1])


class _Baked:
    """A leaf of a rolled graph that the unrolled one does not have: its value, given on
    every call (``Through.keep``)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class Through:
    """The program of a rolled graph run for the unrolled graph it came from (the imperative
    path: ``_rolled``). It reads the leaves at ``keep`` (a tuple of positions there: those
    leaves stacked, the arrays given at each step; ``_Baked``: a constant the rolling made);
    the others were baked into the rolled graph (the int of each ``xs[t]``, a number written
    at every step), and it serves a graph only while they hold the values in ``checks``
    (``holds``)."""

    __slots__ = ("program", "keep", "checks", "backward", "grad_leaves", "retained", "gathers",
                 "stack", "checked", "values", "__weakref__")

    def __init__(self, program, keep, checks, space=None):
        self.program = program
        self.keep = keep
        self.checks = checks
        self.checked = tuple([k for k, _ in checks])        # (``holds`` compares in one go)
        self.values = tuple([v for _, v in checks])
        self.gathers = any(k.__class__ is not int for k in keep)
        self.stack = np.stack if space is None else space.xp.stack     # the gathered leaves' library
        self.backward = program.backward
        self.grad_leaves = tuple(keep[p] for p in program.grad_leaves)
        self.retained = ()

    def forward(self, *values):
        if not self.gathers:                    # (only positions: nothing to stack or bake in)
            return self.program.forward(*[values[k] for k in self.keep])
        stack = self.stack
        return self.program.forward(*[values[k] if k.__class__ is int else
                                      k.value if k.__class__ is _Baked else stack([values[j] for j in k])
                                      for k in self.keep])

    def holds(self, leaves):
        return tuple([leaves[k].value for k in self.checked]) == self.values

    def source(self):
        return self.program.source()

    @property
    def forward_source(self):
        return getattr(self.program, "forward_source", None)


def _bakeable(node):
    """A leaf the imperative path may bake into a rolled graph (checked on every reuse): a
    number that needs no gradient, not a constant computed from other variables."""
    return (not node.shape and not node.requires_grad and node.value is not None
            and (node.const is None or node.const.__class__ is Witness))


def _gatherable(node):
    """A leaf given at each step of a loop that the imperative path may stack with the
    others into one argument of a rolled graph: an array that needs no gradient."""
    return (node.shape and not node.requires_grad and node.value is not None
            and (node.const is None or node.const.__class__ is Witness))


def _runs_of(key):
    """How many times ``key``'s signature ran interpreted so far."""
    with _runs_lock:
        return _runs.get(hash(key), 0)


def _rolled(key, order, leaves, mode, after, known_only=False):
    """On a miss of the graph ``key``: where it holds an unrolled recurrence, the program of
    the graph rolled into a loop (``loops.rolled``: keyed by the rolled graph, so every
    length shares it and its shape family), counted and compiled as the compile mode says;
    as a ``Through`` for this graph, cached under ``key``. Else None (also with ``known_only``
    where its recurrence is of a kind never rolled: ``loops.rolled``)."""
    if not loops.AUTO or key[-1] or len(order) < loops.THRESHOLD or any(node.retain for node in order):
        return None
    found = loops.rolled(order, leaves, False, None, None, (), _bakeable, make_leaves=False,
                         gather=_gatherable, known_only=known_only)
    if found is None or found is loops.DEFERRED:
        return None
    rolled = found[0]
    inner = rolled.leaves if rolled.leaves is not None else leaves
    where = {node: k for k, node in enumerate(leaves)}
    gathers = rolled.gathers or {}
    if any(node in gathers and any(n not in where for n in gathers[node]) for node in inner):
        return None                     # a leaf of the rolled graph the caller cannot give
    # (a leaf neither the caller's nor gathered: a constant a batching rule made for work moved
    # out of the loop, fixed by the rolled graph's signature)
    keep = tuple(where[node] if node in where else tuple(where[n] for n in gathers[node]) if node in gathers
                 else _Baked(node.value) for node in inner)
    kept = {k for entry in keep if entry.__class__ is not _Baked
            for k in ((entry,) if entry.__class__ is int else entry)}
    checks = tuple((k, leaves[k].value) for k in range(len(leaves)) if k not in kept)
    inner_key = loops.signature(rolled)
    build = functools.partial(codegen.build, rolled, inner, anomaly=False)
    if not (mode == "always" or after == 1 and mode == "auto"):
        build = functools.partial(_when_repeated, inner_key, after, build)
    space = codegen.graph_space(leaves)
    try:
        program = CACHE.get_or_build_graph(inner_key, rolled, inner, build)
    except _Interpret:
        return Through(interpret.build(rolled, inner, anomaly=False), keep, checks, space)
    return CACHE._insert(key, Through(program, keep, checks, space))


def _compile_when_repeated(key, order, leaves, after):
    return _when_repeated(key, after, functools.partial(codegen.build, order, leaves, anomaly=key[-1]))


def compiled_or_interpreted(cache, key, compile, interpret_, member=None):
    """``runner`` for any program cache (the functional face's ``TRACED``): the program
    cached under ``key`` (or its shape family's: ``member``); on a miss ``compile()``'s
    (cached) when the compile mode says so, else ``interpret_()``'s plan (not cached; the
    signature's run is counted)."""
    mode, after = COMPILE.get()
    if mode == "never":
        return interpret_()
    if mode == "always" or after == 1:
        return cache.get_or_build(key, compile, member)
    try:
        return cache.get_or_build(key, functools.partial(_when_repeated, key, after, compile), member)
    except _Interpret:
        return interpret_()


class config:
    """Library-wide switches; ``compile``: when a graph signature gets a generated program.

    - ``"auto"`` (the default): a signature seen for the first time runs at once through
      an interpreter over the same op templates (the same results, bit for bit); it is
      compiled on its ``compile_after``-th run (default 2), from then on a cache hit;
    - ``"always"``: compiled on the first run;
    - ``"never"``: always interpreted (no code generation at all).

    ``fuse``: whether a generated program evaluates runs of elementwise statements over
    large NumPy arrays as one numexpr expression (``"auto"``, the default, where numexpr is
    installed: ``transform/fuse.py``) or never (NumPy only; a program fused before then runs
    the NumPy statements it replaced).

    Called, it sets the switches for the current thread (and asyncio task); used as a
    ``with`` block, it restores the previous ones on exit. ``config()`` reads them.

    >>> import neuronika
    >>> neuronika.config()
    config(compile='auto', compile_after=2, fuse='auto')
    >>> with neuronika.config(compile="never"):
    ...     x = neuronika.ones(3).requires_grad()
    ...     (x * x).sum().backward()
    >>> x.grad
    array([2., 2., 2.], dtype=float32)
    >>> neuronika.config().compile
    'auto'
    """

    def __init__(self, compile: str | None = None, compile_after: int | None = None,
                 fuse: str | None = None):
        mode, after = self._previous = COMPILE.get()
        if compile is not None:
            mode = check_compile_mode(compile)
        if compile_after is not None:
            after = check_compile_after(compile_after)
        self.compile, self.compile_after = mode, after
        self.fuse = self._previous_fuse = FUSE.get()
        if fuse is not None:
            self.fuse = check_fuse_mode(fuse)
        self._token = COMPILE.set((mode, after)) if (mode, after) != self._previous else None
        self._fuse_token = FUSE.set(self.fuse) if self.fuse != self._previous_fuse else None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for var, token, previous in ((COMPILE, self._token, self._previous),
                                     (FUSE, self._fuse_token, self._previous_fuse)):
            if token is not None:
                try:
                    var.reset(token)
                except ValueError:            # left in another context than it was entered in
                    var.set(previous)
        self._token = self._fuse_token = None
        return False

    def __repr__(self):
        return f"config(compile={self.compile!r}, compile_after={self.compile_after}, fuse={self.fuse!r})"


# ---- constants: values computed from leaves that have not changed -----------------------------

_epoch = 0
#: a constant recomputed on this many uses in a row stops being one (for new graphs)
_VOLATILE_AFTER = 2
#: elements its ops read and write, below which a value is computed again in every graph
#: rather than kept (checking its leaves, and a call's slower path, would cost more)
CONSTANT_MIN_WORK = 16384


def _constant_of(node):
    """``node`` (no gradient, met before in another graph) as a constant: the leaf that
    stands for it, holding its value, or None (and ``node`` marked ``VOLATILE``) when it
    cannot be one: a random op behind it (dropout), a differentiable leaf (a parameter
    read under no_grad changes every step), or a variable of a trace in progress."""
    order, leaves, key = linearize(node)
    tracer = modes.tracer
    traced = tracer.traced if tracer is not None else ()
    for leaf in leaves:
        if leaf.requires_grad:
            node.const = VOLATILE
            return None
    work = 0
    for n in order:
        if n.op is not None and n.op.random or n in traced:
            node.const = VOLATILE
            return None
        if n.inputs:
            work += math.prod(n.shape) + sum([math.prod(i.shape) for i in n.inputs])
    if work < CONSTANT_MIN_WORK:
        node.const = VOLATILE                   # cheaper to compute again than to check
        return None
    record = Constant(node, None)
    _compute(record, order, leaves, key)
    if record.proxy is None:
        node.const = VOLATILE
        return None
    node.const = record
    return record.proxy


def _compute(record, order=None, leaves=None, key=None):
    """(Re)compute a constant's value from its graph, and what it was computed from."""
    global _epoch
    node = record.node
    if order is None:
        order, leaves, key = linearize(node)
    values = [leaf.value for leaf in leaves]
    value = _forward(runner(key, order, leaves), order, values)
    if value.__class__ is _ndarray:
        if value.base is not None or any(value is v for v in values):
            value = value.view()               # a leaf's memory: its own flags stay as they are
        value.flags.writeable = False          # nothing may write into it: every graph reads it
    elif np.shape(value) != node.shape:
        value = np.asarray(value)
    _epoch += 1
    epoch = _epoch
    witnessed, inner = [], []
    for leaf, v in zip(leaves, values):
        state = leaf.const
        if state.__class__ is Constant:
            inner.append((leaf, v))
            continue
        if state is None or not (state.checked == epoch or state.holds(v)):
            state = leaf.const = Witness(v)
        state.checked = epoch
        witnessed.append((leaf, state))
    record.leaves, record.inner, record.checked = tuple(witnessed), tuple(inner), epoch
    proxy = record.proxy
    if proxy is None:
        if getattr(value, "shape", None) != node.shape or getattr(value, "dtype", None) != node.dtype:
            return                              # not what the graph says it is: no constant
        proxy = record.proxy = graph.leaf(value)
        proxy.serial = node.serial              # in creation order where the node is
        proxy.const = record
    elif getattr(value, "shape", None) != proxy.shape or value.dtype != proxy.dtype:
        raise RuntimeError(f"a constant of shape {proxy.shape} and dtype {proxy.dtype} was computed "
                           f"again as shape {np.shape(value)}, dtype {value.dtype}")
    proxy.value = value


def _valid(record, epoch):
    for leaf, witness in record.leaves:
        if leaf.const is not witness:
            return False                        # changed since (seen by another constant's check)
        if witness.checked != epoch:
            if not witness.holds(leaf.value):
                leaf.const = Witness(leaf.value)
                leaf.const.checked = epoch
                return False
            witness.checked = epoch
    for proxy, value in record.inner:
        if proxy.value is not value:
            return False
    return True


def _refresh(proxies):
    """Bring the constants behind ``proxies`` up to date: each whose leaves changed is
    computed again (``Witness``: compared bit for bit with a private copy, so a write
    through any view of the data counts; data read-only down to its owner is trusted while
    it stays so); the constants they read are checked first."""
    global _epoch
    _epoch += 1
    epoch = _epoch
    todo, stack, met = [], list(proxies), set()
    while stack:
        proxy = stack.pop()
        if proxy in met or proxy.const.checked == epoch:
            continue
        met.add(proxy)
        todo.append(proxy)
        stack.extend([p for p, _ in proxy.const.inner])
    if len(todo) > 1:
        todo.sort(key=graph._by_serial)        # a constant after those it reads
    for proxy in todo:
        record = proxy.const
        if record.checked == epoch:
            continue
        if _valid(record, epoch):
            record.checked = epoch
            record.misses = 0
            continue
        record.misses += 1
        if record.misses >= _VOLATILE_AFTER and record.node.const is record:
            record.node.const = VOLATILE        # recomputed on every use: new graphs inline it
        _compute(record)
        record.checked = epoch


def constant_value(proxy):
    """The current value of the constant ``proxy`` stands for (a trace's plan reads it per call)."""
    _refresh((proxy,))
    return proxy.value


graph.constant_of = _constant_of
graph.refresh_constants = _refresh


def evaluate(root):
    """Compute ``root``'s value from the current leaf values (and keep it on ``root``);
    a root that needs a gradient keeps what its next backward reads (a snapshot)."""
    if root.op is None:
        return root.value
    program, order, leaves = bound(root)
    flags = graph.flags_changed
    if program.backward is None:
        out = _forward(program, order, [leaf.value for leaf in leaves])
        root.value = out
        return out
    values = [leaf.value for leaf in leaves]
    value, saved = _forward(program, order, values)
    # What the backward reads from the leaves' own memory (a leaf, a view of one) is
    # copied: data changed in place later must not mix into this evaluation.
    owners = set()
    for leaf, v in zip(leaves, values):
        if leaf.const.__class__ is Constant and v.__class__ is _ndarray and v.base is None:
            continue                         # a constant's own array: never written in place
        while v is not None:                 # the leaf and what its memory belongs to
            owners.add(id(v))
            v = getattr(v, "base", None)
    kept = []
    for v in saved:
        if v.__class__ is _ndarray:
            base = v
            while base is not None:
                if id(base) in owners:
                    v = v.copy()
                    break
                base = getattr(base, "base", None)
        kept.append(v)
    saved = tuple(kept)
    retained = ()
    if program.retained:                      # the root itself as None: no cycle through it
        last = len(order) - 1
        retained = [None if i == last else order[i] for i in program.retained]
    root.snapshot = (program, leaves, saved, retained, flags)
    root.value = value
    return value


def _forward(program, order, values):
    try:
        out = program.forward(*values)
    except Anomaly as anomaly:
        raise _anomaly_error(order, anomaly) from None
    for node in order:
        # Values cached on the graph's other nodes (read through .data) may predate the
        # current leaf values: dropped, a later read evaluates them again.
        if node.value is not None and node.inputs:
            node.value = None
    return out


_UNIT_SEEDS = {}


def _seed_array(root, seed):
    if root.shape == () and seed.__class__ is float and seed == 1.0:
        # The common call, loss.backward(): one shared read-only 1.0 per dtype
        # (generated code never writes into the seed).
        unit = _UNIT_SEEDS.get(root.dtype)
        if unit is None:
            unit = _UNIT_SEEDS[root.dtype] = np.ones((), root.dtype)
            unit.flags.writeable = False
        return unit
    if root.dtype.kind != "c" and np.iscomplexobj(seed):
        raise GradientError(f"backward: a complex seed for a root of dtype {root.dtype}; the gradient "
                            f"is that of Re(sum(seed * root)), which would drop the seed's imaginary "
                            f"part: pass a real seed (its real part)")
    if root.shape == ():
        if np.ndim(seed) != 0:
            raise GradientError(f"backward: the seed has shape {np.shape(seed)} but the root is a "
                                f"scalar; pass a number or a 0-dim array")
        return np.asarray(seed, dtype=root.dtype)
    if np.ndim(seed) == 0:
        return np.full(root.shape, seed, dtype=root.dtype)
    seed = np.asarray(seed)
    if seed.shape != root.shape:
        raise GradientError(f"backward: the seed has shape {seed.shape} but the root has shape "
                            f"{root.shape}; pass a number (broadcast over the root) or an array "
                            f"of the root's shape")
    return seed.astype(root.dtype, copy=False)


#: What a traced function does instead of backward() and an optimizer's step().
TRACED_STEP_HINT = ("a traced function (neuronika.jit, grad, value_and_grad, ...) runs its Python "
                    "once, while it is traced, and its compiled program afterwards, so gradients "
                    "written into leaves and parameters updated in place would happen only once; "
                    "inside it, take gradients with neuronika.value_and_grad and update with a "
                    "functional optimizer (neuronika.optim.sgd / adam / adamw, "
                    "optim.apply_updates), or run the imperative step without jit")


def refuse_inside_trace(what):
    """A ``GradientError`` naming ``what`` and the user's line when a trace is in progress."""
    if TRACER.get() is not None:
        raise GradientError(f"{what} inside a traced function (at {graph.format_where(graph.user_line())}): "
                            f"{TRACED_STEP_HINT}")


def backpropagate(root, seed=1.0):
    """Add d(seed . root)/d(leaf) into the ``grad`` of every differentiable leaf behind ``root``."""
    if TRACER.get() is not None:
        refuse_inside_trace("backward()")
    if not root.requires_grad:
        if any_differentiable_leaf(root):
            why = "it was built inside no_grad(), which records nothing for a backward"
        else:
            why = ("it depends on no differentiable leaf; make the leaves you want gradients "
                   "for differentiable with .requires_grad()")
        raise GradientError(f"backward: this is a Var, not a VarDiff: {why}")
    unit = _UNIT_SEEDS.get(root.dtype) if seed.__class__ is float and seed == 1.0 and root.shape == () else None
    seed = unit if unit is not None else _seed_array(root, seed)
    if root.op is None:
        _add_grad(root, seed.copy() if root.space is None else root.space.asarray(seed, root.dtype))
        return
    snapshot = root.snapshot
    if snapshot is not None:
        root.snapshot = None
        if snapshot[4] != graph.flags_changed:        # retain_grad(), train()/eval() since
            snapshot = None
    if snapshot is None:
        program, order, leaves = bound(root)
        root.value, saved = _forward(program, order, [leaf.value for leaf in leaves])
        retained = program.retained
    else:
        order = None
        program, leaves, saved, retained, _ = snapshot
        del snapshot
    try:
        grads = program.backward(seed, *saved)
    except Anomaly as anomaly:
        raise _anomaly_error(order or linearize(root)[0], anomaly) from None
    del saved
    for position, grad in zip(program.grad_leaves, grads):
        leaf = leaves[position]
        if leaf.grad is None and grad.__class__ is _ndarray:     # (``_add_grad``'s common case)
            leaf.grad = grad
        else:
            _add_grad(leaf, grad)
    if retained:
        for node, grad in zip(retained, grads[len(program.grad_leaves):]):
            if order is not None:
                node = order[node]
            elif node is None:
                node = root
            node.grad = grad if grad.__class__ is _ndarray or node.space is not None else np.asarray(grad)


def _add_grad(leaf, grad):
    current = leaf.grad
    if current is None:
        # a NumPy scalar made an array; another library's arrays kept as they are
        leaf.grad = grad if grad.__class__ is _ndarray or leaf.space is not None \
            else np.array(grad, dtype=leaf.dtype)
    else:
        current += grad


def any_differentiable_leaf(root):
    from ..graph import walk
    return any(n.op is None and n.requires_grad for n in walk(root))


def _anomaly_error(order, anomaly):
    node = order[anomaly.index]
    return anomaly_error(node.op.name, node.where, anomaly)


def anomaly_error(name, where, anomaly):
    """The ``AnomalyError`` for an ``Anomaly`` raised by a program or plan at op ``name``,
    built at ``where`` (the user's line)."""
    what = "its output" if anomaly.phase == "forward" else "the gradient it passed back"
    return AnomalyError(f"detect_anomaly: op {name} produced NaN or Inf in {what} "
                        f"({anomaly.phase} pass); it was built at {format_where(where)}")


def source(root) -> str:
    """The generated forward (and backward) Python source for the graph behind ``root``.

    >>> import neuronika
    >>> x = neuronika.ones((4, 3))
    >>> w = neuronika.ones((3, 2)).requires_grad()
    >>> print(neuronika.transform.source(x.mm(w).tanh().sum()))
    def forward(x0, p1):
        v2 = xp.dot(x0, p1)
        v3 = xp.tanh(v2)
        del v2
        v4 = xp.sum(v3)
        return v4, (v3, x0)
    <BLANKLINE>
    def backward(seed, v3, x0):
        g2 = seed * (1 - v3 * v3)
        g1 = xp.dot(x0.T, g2)
        del g2
        return g1,
    <BLANKLINE>
    """
    program, _, _ = program_for(getattr(root, "_node", root))
    return program.source()


__all__ = ["evaluate", "backpropagate", "source", "modes", "config"]
