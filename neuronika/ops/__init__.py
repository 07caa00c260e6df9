"""The op catalogue: every primitive declared once, with what the engine needs.

An op is a shape rule, a forward template and one adjoint template per
differentiable input. Templates are Python source over these names:

- the op's input names (``x``, or ``a`` and ``b``; variadic ops get ``x0``,
  ``x1``, ...), ``y`` for its output and ``dy`` for the output's gradient;
- the op's attributes and the values its ``statics`` hook computes from shapes;
- ``xp`` (the arrays' namespace: NumPy's, CuPy's, array-api-strict, ...) and the kernels
  in ``ops/kernels.py`` (one implementation per namespace family, ``kernels.TABLE``).

Templates use the array-API standard only (function forms such as ``xp.sum(x, axis=0)``,
``xp.reshape``, ``xp.astype``; the methods and attributes the standard defines: ``.T`` on
2-D values, ``.mT``, ``.shape``, operators), so one generated program runs on any
namespace. An op that needs more declares where it runs: ``families`` (``backend.FAMILIES``
by default; ``backend.NUMPY_API`` for NumPy's API without a kernel of its own) and why
(``needs``); building it over arrays of another family raises ``backend.NamespaceError``.

For second derivatives an adjoint template is also evaluated on variables, with
``xp`` bound to ``neuronika.numpy``, whose functions build catalogue ops (and a
kernel call builds the op whose forward is that kernel): so templates use only
NumPy functions that ``neuronika.numpy`` differentiates. An op whose adjoint
cannot be written that way gives a ``symbolic`` function ``(ctx, build,
bindings)`` instead, where ``build(op, inputs, attrs)`` returns a variable.

An input whose gradient is identically zero (floor, sign, ...) has ``ZERO`` as
its adjoint: gradients flow through it (the output needs one if the input does)
but no code is written for it, and a leaf reached only that way gets zeros.

A template is one expression, or statements that assign the result to ``y``
(forward) or ``dx`` (adjoint); other names they assign are locals, and an
adjoint may read the forward template's locals (say, a dropout mask).
A template may also be a function of the op's static context (shapes,
attributes) returning such source, for ops whose code depends on them.

``batch``: how the op applies to a batch of examples (``neuronika.vmap``), a rule from
``ops/batching.py``; elementwise ops need none (broadcasting), and an op without one runs
one example at a time. ``per_example``: under ``vmap`` a node of the op is batched even when
none of its inputs is (random draws: one per example).

``summed_over_rows``: the names of 2-D inputs whose adjoint, for 2-D operands, is one
expression of the other input and ``dy`` that sums over their rows (``a.T @ dy``, the
adjoint of ``b`` in ``a @ b``), every other axis of the other input folding into rows. Over
the rows of several steps stacked it is the sum of the steps' adjoints, so a loop forms such
a weight's gradient once, after its backward loop (``transform.loops.deferred_products``).

Elementwise ops write adjoints in the output's space: the engine reduces
each one to its input's shape (``unbroadcast``) only where the shapes differ,
and lets ``dy`` stay a smaller array that broadcasts, as long as that is exact.
"""
from __future__ import annotations

import numpy as np

from ..backend import FAMILIES
from ..errors import ShapeError
from ..graph import result_dtype

OPS = {}


class Grad:
    """An adjoint template with what the engine cannot read off its source.

    ``shape``: the shape of the result when it is not the input's (or, for an
    elementwise op, the broadcast of the arrays it reads). ``view``: the
    result may share memory with ``dy`` or a forward value, so it must never be
    written in place.
    """

    __slots__ = ("src", "shape", "view")

    def __init__(self, src, shape=None, view=False):
        self.src = src
        self.shape = shape
        self.view = view


class _Zero:
    """The adjoint of an input whose gradient is identically zero."""

    def __repr__(self):
        return "ZERO"


ZERO = _Zero()


class Ctx:
    """The static facts a template function may read: shapes, dtypes, attrs.

    ``gshape`` is the shape of the ``dy`` array the adjoint receives (it may be
    smaller than ``shape`` where it broadcasts); ``slot`` the input's position.
    """

    def __init__(self, op, names, shapes, dtypes, shape, dtype, attrs, gshape=None, slot=None,
                 weak=frozenset()):
        self.op = op
        self.weak = weak            # the inputs that are Python numbers when the program runs
        self.names = names
        self.shapes = shapes
        self.dtypes = dtypes
        self.shape = shape
        self.dtype = dtype
        self.attrs = attrs
        self.gshape = gshape
        self.slot = slot

    def __getattr__(self, name):
        try:
            return self.__dict__["attrs"][name]
        except KeyError:
            raise AttributeError(name) from None


class Op:
    """One primitive. See the module docstring for the template language."""

    def __init__(self, name, inputs, forward, grads, shape=None, dtype=None, attrs=(),
                 elementwise=False, implicit_dy=None, statics=None, accumulate=None,
                 n_differentiable=None, variadic=None, symbolic=None, doc="", random=False,
                 shape_attr=None, families=FAMILIES, needs=None, batch=None, per_example=False,
                 summed_over_rows=(), weak=False, takes_numbers=None, typed_by_value=None):
        self.name = name
        # its forward is a Python operator: over Python numbers alone (weak inputs) it gives a
        # Python number, which NumPy types weakly, and so does the graph (``graph.WeakNode``)
        self.weak = weak
        # (inputs, attrs) -> whether, over Python numbers, the kind of its result depends on
        # their values (``n ** -1`` is a float where the rule says int): what reads such a
        # number is not typed by its rule
        self.typed_by_value = typed_by_value
        self.summed_over_rows = frozenset(summed_over_rows)   # inputs whose adjoint sums over rows
        self.batch = batch                  # its batching rule (``ops.batching``); None: derived
        self.per_example = per_example      # under vmap, batched even when no input is (a draw)
        self.families = tuple(families)     # the namespace families it runs on (backend)
        self.needs = needs                  # why not on the others
        # the attribute (its position) that is the output's shape: a shape family abstracts its
        # sizes as it does the node's own (``transform.families``)
        self.shape_attr = None if shape_attr is None else attrs.index(shape_attr)
        self.random = random        # draws random numbers: never a constant (``graph.linearize``)
        self.inputs = inputs
        self.attrs = attrs
        self.forward = forward
        self.grads = grads
        self.accumulate = accumulate or {}
        self.shape = shape or _same_shape
        self.keeps_shape = self.shape is _same_shape   # apply() skips the call
        self.dtype = dtype or _default_dtype
        self.default_dtype = self.dtype is _default_dtype   # apply() inlines the common case
        self.elementwise = elementwise
        # its template reads a Python-number input as the number (an elementwise op's does;
        # others may call array methods on it, and read it as a 0-d array)
        self.takes_numbers = elementwise if takes_numbers is None else takes_numbers
        self.implicit_dy = elementwise if implicit_dy is None else implicit_dy
        self.statics = statics
        self.n_differentiable = n_differentiable
        self.variadic = variadic
        self.symbolic = symbolic or {}
        self.doc = doc

    def input_names(self, count):
        """Template names of ``count`` inputs: the fixed ones, then ``x0, x1, ...`` for a variadic tail."""
        if self.variadic is None:
            return self.inputs
        tail = count - len(self.inputs)
        return self.inputs + tuple(f"{self.variadic}{i}" for i in range(tail))

    def _entry(self, table, slot):
        key = self.inputs[slot] if slot < len(self.inputs) else self.variadic
        return table.get(key)

    def grad_template(self, slot):
        """The adjoint for the input in ``slot``, or None where the op has none."""
        if self.n_differentiable is not None and slot >= self.n_differentiable:
            return None
        return self._entry(self.grads, slot)

    def accumulate_template(self, slot):
        return self._entry(self.accumulate, slot)

    def symbolic_grad(self, slot):
        """An adjoint built from variables for second derivatives, where the template
        cannot be evaluated on variables as it stands (index: in-place NumPy)."""
        return self._entry(self.symbolic, slot)

    def __repr__(self):
        return f"<op {self.name}>"


def declare(name, inputs, forward, grads, **kwargs):
    """Add an op to the catalogue and return it.

    A shape rule takes the input shapes then the attributes, returns the output
    shape, and raises ShapeError with a message that the engine prefixes with
    the op's name and suffixes with the user's line.
    """
    if name in OPS:
        raise ValueError(f"op {name!r} is declared twice")
    reserved = {"y", "dy", "dx", "acc", "xp"} & set(inputs)
    if reserved:
        raise ValueError(f"op {name!r}: input names {sorted(reserved)} are reserved in templates "
                         f"(the output, the gradients, the accumulator, the array namespace)")
    op = Op(name, tuple(inputs), forward, grads, **kwargs)
    OPS[name] = op
    return op


def _same_shape(shape, *attrs):
    return shape


def _default_dtype(inputs, attrs):
    return result_dtype(inputs)


def broadcast_shapes(a, b):
    """NumPy's broadcasting rule for two shapes (the shape rule of elementwise binary ops)."""
    if a == b:
        return a
    # (the common cases first: a bias or a number against an array)
    if len(b) < len(a) and a[len(a) - len(b):] == b:
        return a
    if len(a) < len(b) and b[len(b) - len(a):] == a:
        return b
    given = (a, b)
    if len(a) < len(b):
        a = (1,) * (len(b) - len(a)) + a
    elif len(b) < len(a):
        b = (1,) * (len(a) - len(b)) + b
    result = []
    for m, n in zip(a, b):
        if m == n or n == 1:
            result.append(m)
        elif m == 1:
            result.append(n)
        else:
            raise ShapeError(f"shapes {given[0]} and {given[1]} do not broadcast together")
    return tuple(result)


def normalize_axis(name, axis, ndim):
    """An int axis in range(ndim), negative counting from the end."""
    if hasattr(axis, "_node") and hasattr(axis, "__index__"):
        axis = axis.__index__()         # an int variable (an int argument of a traced function): read
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise ShapeError(f"{name}: axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"{name}: axis {axis} is out of range for a value with {ndim} dimensions")
    return int(axis) % ndim


def normalize_axes(name, axis, ndim):
    """None (all axes) or a sorted tuple of distinct axes."""
    if axis is None:
        return None
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    result = tuple(sorted({normalize_axis(name, a, ndim) for a in axes}))
    if len(result) != len(axes):
        raise ShapeError(f"{name}: axis {axis!r} repeats an axis")
    return result


from . import elementwise, reduce, linalg, decomp, shape, conv, complex, sort, checks  # noqa: E402,F401  (fills OPS)
from . import control  # noqa: E402,F401  (scan and the tuple ops it needs)
from . import expression  # noqa: E402,F401  (expr: symbolic adjoints as one node)
