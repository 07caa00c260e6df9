"""What every ``neuronika.numpy`` function shares.

- ``function(numpy_fn)`` registers a function as neuronika's version of a NumPy
  function: NumPy's dispatch (``numpy.sum(v)``) calls it, and called with no
  variable among its arguments it simply runs NumPy's own function, so code
  that computes on plain data gets plain arrays back, exactly as before.
- ``node_of`` turns an argument (a variable, an array, a number, a nested list)
  into a graph node; Python numbers are typed weakly, as in NumPy 2
  (``x32 * 2.0`` stays float32).
- ``build`` applies a catalogue op and returns the variable.
- ``located`` makes an exception whose message ends with the user's line.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from .. import backend
from ..errors import GradientError, ShapeError
from ..graph import WeakNode, apply, format_where, leaf, modes, user_line, weak_leaf
from ..ops import OPS, normalize_axes, normalize_axis
from ..variable import Var, _wrap

#: numpy ufunc -> the neuronika.numpy function that implements it on variables
UFUNCS = {}
#: numpy function -> the neuronika.numpy function that implements it on variables
FUNCTIONS = {}
#: numpy ufunc -> the catalogue op it is, when called on variables with no options (the
#: dispatch's fast path: it builds the node without a further call)
UFUNC_OPS = {}
#: neuronika.numpy name -> why it has no gradient (integer or boolean results, ...)
NON_DIFFERENTIABLE = {}

_SCALARS = (int, float, complex, bool)


def located(message, kind=ShapeError):
    """An exception whose message ends with the user's file and line."""
    return kind(f"{message} (at {format_where(user_line())})")


def is_var(value) -> bool:
    return isinstance(value, Var)


def holds_var(value, depth=3) -> bool:
    """Whether ``value`` is a variable or a (nested) list / tuple holding one."""
    if isinstance(value, Var):
        return True
    if depth and value.__class__ in (list, tuple):
        return any(holds_var(v, depth - 1) for v in value)
    return False


def any_var(args, kwargs) -> bool:
    for a in args:
        if isinstance(a, Var) or (a.__class__ in (list, tuple) and holds_var(a)):
            return True
    if kwargs:
        for a in kwargs.values():
            if isinstance(a, Var) or (a.__class__ in (list, tuple) and holds_var(a)):
                return True
    return False


def function(*numpy_functions, name=None, differentiable=True, why=None):
    """Register the decorated function as neuronika's version of ``numpy_functions``.

    The public function runs NumPy's own (the first of ``numpy_functions``) when
    no argument holds a variable; NumPy's dispatch calls the decorated function
    directly. ``differentiable=False`` lists it as having no gradient, ``why``
    saying so (an integer result, a boolean result, ...).
    """
    def register(fn):
        numpy_fn = numpy_functions[0] if numpy_functions else None
        public_name = name or fn.__name__
        for f in numpy_functions:
            (UFUNCS if isinstance(f, np.ufunc) else FUNCTIONS)[f] = fn
        if not differentiable:
            NON_DIFFERENTIABLE[public_name] = why or "its result has no gradient"
        if numpy_fn is None:
            fn.__name__ = public_name
            return fn

        @functools.wraps(fn)
        def public(*args, **kwargs):
            if any_var(args, kwargs):
                return fn(*args, **kwargs)
            return numpy_fn(*args, **kwargs)

        public.__name__ = public.__qualname__ = public_name
        public.implementation = fn
        return public
    return register


def scalar_dtype(value):
    """NumPy's default dtype for a Python number on its own."""
    return np.asarray(value).dtype


def node_of(value, like=None, name="operand"):
    """The graph node for an argument.

    A variable gives its own node; anything else becomes a constant leaf. A
    Python number next to a node ``like`` takes NumPy 2's weak type (the other
    operand's dtype, unless the number needs a wider kind); next to a Python number (a
    weakly typed argument of a traced function) it stays one.
    """
    if isinstance(value, Var):
        return value._node
    cls = value.__class__
    if cls in _SCALARS:
        if like is not None:
            if like.__class__ is WeakNode:      # beside a Python number, one too (``n * 2``)
                return weak_leaf(value)
            return leaf(np.result_type(like.dtype, value).type(value))
        return leaf(np.asarray(value)[()])
    if cls is np.ndarray:
        return leaf(checked_array(value, name))
    if isinstance(value, np.generic):
        return leaf(checked_array(np.asarray(value), name)[()])
    if cls in (list, tuple):
        if holds_var(value):
            from ._shape import array
            return array(value)._node
        return leaf(checked_array(np.asarray(value), name))
    if isinstance(value, numbers.Number):
        return node_of(complex(value) if isinstance(value, numbers.Complex) and not isinstance(
            value, numbers.Real) else float(value), like, name)
    if backend.foreign(value):                      # another array library's: it keeps its space
        return leaf(value)
    array = np.asarray(value)
    if array.dtype == object:
        raise located(f"{name}: cannot use a {type(value).__name__} as an array", TypeError)
    return leaf(checked_array(array, name))


def in_space_of(node, like):
    """``node`` (a constant leaf over NumPy data: a mask or indices built here, or index-like
    data such as a condition) moved to the space of node ``like`` (a no-op on NumPy)."""
    space = getattr(like, "space", None)
    if space is None or node.space is not None or node.op is not None or node.requires_grad:
        return node
    return leaf(backend.move(node.value, space))


def checked_array(array, name):
    if array.dtype.kind not in "biufc":
        raise located(f"{name}: arrays of dtype {array.dtype} cannot be used as data; convert "
                      f"to a numeric dtype first", TypeError)
    return array


def var_of(value, like=None, name="operand") -> Var:
    """``value`` as a variable (a constant leaf unless it is one already)."""
    return value if isinstance(value, Var) else _wrap(node_of(value, like, name))


def nodes_of(values, name):
    """Nodes for several operands typed together: Python numbers take the
    dtype of the first variable or array among them."""
    like = None
    for v in values:
        if isinstance(v, Var):
            like = v._node
            break
    if like is None:
        for v in values:
            if not isinstance(v, _SCALARS):
                like = node_of(v, None, name)
                break
    return tuple(node_of(v, like, name) for v in values)


def build(op, inputs, attrs=()) -> Var:
    """The variable for catalogue ``op`` (a name or an Op) applied to variables or nodes."""
    if isinstance(op, str):
        op = OPS[op]
    nodes = tuple(v._node if isinstance(v, Var) else v for v in inputs)
    return _wrap(apply(op, nodes, attrs))


def axes(name, axis, ndim):
    """None (all axes) or a sorted tuple of distinct axes, checked against ``ndim``."""
    try:
        return normalize_axes(name, axis, ndim)
    except ShapeError as error:
        raise located(str(error)) from None


def axis_(name, axis, ndim):
    """One axis in range(ndim), checked."""
    try:
        return normalize_axis(name, axis, ndim)
    except ShapeError as error:
        raise located(str(error)) from None


def refuse(name, parameter, value, default=None):
    """Reject an option that has no meaning for immutable variables (``out=``) or is
    not supported, naming the function and the option."""
    if value is default or (default is not None and value is not None and np.all(value == default)):
        return
    if parameter == "out":
        raise located(f"{name}: out= cannot be used with variables: a variable is immutable; use "
                      f"the returned value (or v.at[idx].set(...) for an update)", TypeError)
    raise located(f"{name}: {parameter}={value!r} is not supported on variables", TypeError)


def needs_grad(var) -> bool:
    """Whether reading ``var``'s value as a constant would lose a gradient: it needs one,
    or it depends on an argument of the function being traced."""
    node = var._node
    if node.requires_grad:
        return True
    tracer = modes.tracer
    return tracer is not None and tracer.depends(node)


def constant_value(name, value, what):
    """The value of an argument that must be a constant (an index array, a shape):
    a variable is read only if no gradient or trace depends on it."""
    if isinstance(value, Var):
        if needs_grad(value):
            raise located(f"{name}: {what} must not depend on a differentiable or traced value",
                          GradientError)
        return value.data
    return value


__all__ = ["UFUNCS", "UFUNC_OPS", "FUNCTIONS", "NON_DIFFERENTIABLE", "function", "node_of", "nodes_of", "var_of",
           "build", "located", "axes", "axis_", "refuse", "needs_grad", "constant_value", "is_var",
           "holds_var", "any_var", "OPS"]
