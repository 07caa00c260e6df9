"""A function of one example applied to a batch, as graph nodes (``neuronika.vmap``'s core).

``batched_call`` traces the function once on placeholders shaped like one example (the
batch axis removed) and rewrites the graph it builds into the graph of the whole batch, op
by op (``transform.batching``, with the rules of ``ops.batching``), over the variables of the
current graph. ``functional.vmap`` compiles it like any ``jit``; ``jacfwd``, ``jacrev`` and
``hessian`` batch their basis with it.
"""
from __future__ import annotations

import numpy as np

from . import tracing as _trace
from .errors import BatchingError
from .graph import leaf
from .numpy._core import build, var_of
from .transform import batching as _batching
from .variable import Var, _wrap


def check_axes(axes, name):
    if axes is None or isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        return
    if isinstance(axes, (tuple, list)):
        for a in axes:
            check_axes(a, name)
        return
    if isinstance(axes, dict):
        for a in axes.values():
            check_axes(a, name)
        return
    raise TypeError(f"vmap: {name} must be an int, None, or a tuple / list / dict of them, got "
                    f"{axes!r}")


def batched_call(fn, in_axes, out_axes, axis_size, args, kwargs, chunk_size=None):
    """``fn`` over the batch, as variables of the current graph; with ``chunk_size``, the
    graph of one example is batched once per chunk of at most that many examples (the chunks
    run one after the other: the intermediates of one at a time) and the results joined."""
    if isinstance(in_axes, (tuple, list)):
        if len(in_axes) != len(args):
            raise BatchingError(f"vmap: in_axes has {len(in_axes)} entries for a call with {len(args)} "
                                f"positional arguments; give one per argument (None: not batched)")
        axes = list(in_axes)
    else:
        axes = [in_axes] * len(args)
    given, sizes = {}, []
    args = [_prepared(a, axis, f"argument {k}", given, sizes) for k, (a, axis) in enumerate(zip(args, axes))]
    # keyword arguments: arrays batched along axis 0 (JAX's rule); anything else (a flag, a
    # number, a string, a 0-d value) passed as it is, the same for every example
    kwargs = {k: _prepared(v, 0, f"keyword argument {k!r}", given, sizes) if _holds_array(v) else v
              for k, v in kwargs.items()}
    size = _batch_size(sizes, axis_size)
    with _trace.batch_level(given):
        out = fn(*args, **kwargs)
    parts = []
    tree = _trace.tree_of(out, parts)
    variables = [p if isinstance(p, Var) or p is None else var_of(p, name="the function's result")
                 for p in parts]
    roots = [v._node for v in variables if v is not None]
    if chunk_size is None or size <= chunk_size:
        rebuilt = iter(_batching.batched(roots, given, size))
    else:
        rebuilt = iter(_chunked(roots, given, size, chunk_size))
    placed = [None if v is None else _placed(*next(rebuilt), axis, size, path)    # (None stays None)
              for v, (axis, path) in zip(variables, _out_axes(out, out_axes, len(parts)))]
    return _trace.rebuild_tree(tree, iter(placed))


def _chunked(roots, given, size, chunk_size):
    """``transform.batching.batched`` chunk by chunk, the batched results joined along the
    batch axis."""
    pieces = []
    for start in range(0, size, chunk_size):
        stop = min(size, start + chunk_size)
        part = {p: build("index", (_wrap(node),), ((("s", start, stop, None),),))._node
                for p, node in given.items()}
        pieces.append(_batching.batched(roots, part, stop - start))
    joined = []
    for k, (node, is_batched) in enumerate(pieces[0]):
        if not is_batched:
            joined.append((node, False))
        else:
            nodes = [_wrap(piece[k][0]) for piece in pieces]
            joined.append((build("concatenate", nodes, (0,))._node, True))
    return joined


def _holds_array(obj):
    if isinstance(obj, (tuple, list)):
        return any(_holds_array(o) for o in obj)
    if isinstance(obj, dict):
        return any(_holds_array(o) for o in obj.values())
    # (a 0-d value, a Python number inside a jit, has no axis to batch)
    return hasattr(obj, "shape") and hasattr(obj, "dtype") and len(obj.shape) > 0


def _prepared(obj, axis, path, given, sizes):
    """The argument with each array batched along ``axis`` replaced by a placeholder of one
    example (recorded in ``given``: placeholder -> the batch with its axis first)."""
    if axis is None:
        return obj
    if isinstance(axis, (tuple, list)):
        if not isinstance(obj, (tuple, list)) or len(obj) != len(axis):
            raise BatchingError(f"vmap: in_axes for {path} is a {type(axis).__name__} of {len(axis)} but "
                                f"the argument is {_described(obj)}")
        return type(obj)(_prepared(o, a, f"{path}[{k}]", given, sizes) for k, (o, a) in enumerate(zip(obj, axis)))
    if isinstance(axis, dict):
        if not isinstance(obj, dict) or set(obj) != set(axis):
            raise BatchingError(f"vmap: in_axes for {path} is a dict with keys {sorted(axis)} but the "
                                f"argument is {_described(obj)}")
        return {k: _prepared(v, axis[k], f"{path}[{k!r}]", given, sizes) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(_prepared(o, axis, f"{path}[{k}]", given, sizes) for k, o in enumerate(obj))
    if isinstance(obj, dict):
        return {k: _prepared(v, axis, f"{path}[{k!r}]", given, sizes) for k, v in obj.items()}
    if isinstance(obj, (bool, int, float, complex)) or obj is None:
        raise BatchingError(f"vmap: {path} is {_described(obj)}, which has no axis {axis} to batch; "
                            f"give in_axes None for it")
    var = var_of(obj, name=path)
    shape = var.shape
    if not shape:
        raise BatchingError(f"vmap: {path} is a number (0-d), which has no axis {axis} to batch; give "
                            f"in_axes None for it")
    if not -len(shape) <= axis < len(shape):
        raise BatchingError(f"vmap: in_axes {axis} is out of range for {path} of shape {tuple(shape)}")
    axis = int(axis) % len(shape)
    node = var._node
    if axis:
        node = build("transpose", (var,), ((axis,) + tuple(a for a in range(len(shape)) if a != axis),))._node
    sizes.append((path, axis, node.shape[0]))
    placeholder = _placeholder(node)
    given[placeholder] = node
    return _wrap(placeholder)


def _placeholder(node):
    """A leaf shaped like one example of ``node`` (its axis 0 removed). Its value, zeros, is
    never read (a read refuses: ``tracing.batch_level``)."""
    shape, dtype = node.shape[1:], node.dtype
    if node.space is None:
        return leaf(np.broadcast_to(np.zeros((), dtype), shape))
    space = node.space
    return leaf(space.xp.zeros(shape, dtype=space.dtype(dtype), device=space.device))


def _batch_size(sizes, axis_size):
    found = {s for _, _, s in sizes}
    if len(found) > 1:
        listed = ", ".join(f"{path} has {s} along axis {axis}" for path, axis, s in sizes)
        raise BatchingError(f"vmap: the batched arguments have different sizes: {listed}")
    if found:
        size = found.pop()
        if axis_size is not None and axis_size != size:
            raise BatchingError(f"vmap: axis_size is {axis_size} but the batched arguments have size {size}")
        return size
    if axis_size is None:
        raise BatchingError("vmap: no argument is batched (every in_axes is None); give axis_size")
    return axis_size


def _out_axes(out, out_axes, count):
    """(axis, path) for each part of the result, in ``tree_of``'s order (the same containers:
    tuples, lists and dicts, not their subclasses but named tuples)."""
    found = []

    def walk(obj, axes, path):
        sequence = isinstance(obj, tuple) or obj.__class__ is list
        if not sequence and obj.__class__ is not dict:
            if isinstance(axes, (tuple, list, dict)):
                raise BatchingError(f"vmap: out_axes for {path} is a {type(axes).__name__} but the result "
                                    f"there is {_described(obj)}")
            found.append((axes, path))
            return
        keys = range(len(obj)) if sequence else list(obj)
        if isinstance(axes, (tuple, list, dict)):
            if isinstance(axes, dict) == sequence or len(axes) != len(obj) or \
                    isinstance(axes, dict) and set(axes) != set(obj):
                raise BatchingError(f"vmap: out_axes for {path} is {_described(axes)} but the result "
                                    f"there is {_described(obj)}")
            for k in keys:
                walk(obj[k], axes[k], f"{path}[{k!r}]")
        else:
            for k in keys:
                walk(obj[k], axes, f"{path}[{k!r}]")

    walk(out, out_axes, "the result")
    assert len(found) == count
    return found


def _placed(node, is_batched, axis, size, path):
    """A part of the result with its batch moved to ``axis`` (or broadcast there, for a part
    that is the same for every example)."""
    if axis is None:
        if is_batched:
            raise BatchingError(f"vmap: out_axes is None for {path}, which differs between examples "
                                f"(shape {node.shape[1:]} per example); give it an axis")
        return _wrap(node)
    if not is_batched:
        node = build("broadcast_to", (_wrap(node),), ((size,) + node.shape,))._node
    rank = len(node.shape)
    if not -rank <= axis < rank:
        raise BatchingError(f"vmap: out_axes {axis} is out of range for {path}, of shape "
                            f"{node.shape[1:]} per example")
    axis %= rank
    if axis:
        order = tuple(range(1, axis + 1)) + (0,) + tuple(range(axis + 1, rank))
        node = build("transpose", (_wrap(node),), (order,))._node
    return _wrap(node)


def _described(obj):
    if isinstance(obj, dict):
        return f"a dict with keys {sorted(map(str, obj))}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    shape = getattr(obj, "shape", None)
    return f"an array of shape {tuple(shape)}" if shape is not None else f"a {type(obj).__name__}"


