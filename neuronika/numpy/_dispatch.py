"""NumPy's own functions on variables (NEP 13 ``__array_ufunc__``, NEP 18
``__array_function__``).

``numpy.tanh(v)``, ``numpy.sum(v, axis=0)``, ``array * v`` and
``numpy.linalg.solve(A, v)`` call the ``neuronika.numpy`` function registered for
them, so they build exactly the graph it builds. A NumPy function with no
gradient here:

- given a variable that needs a gradient (or, inside ``neuronika.grad``, one that
  depends on a traced argument), raises a TypeError naming the function, the
  argument and the user's line: reading the value as a constant would drop the
  gradient silently;
- given only variables that need none, runs NumPy on their values.

``numpy.asarray(v)``, ``float(v)`` and ``v.item()`` are the explicit ways to
leave the graph.

>>> import numpy, neuronika
>>> w = neuronika.from_ndarray(numpy.array([1.0, 2.0])).requires_grad()
>>> numpy.sum(numpy.tanh(w))
VarDiff(1.72562174, dtype=float64)
>>> numpy.fft.fft(w)
Traceback (most recent call last):
    ...
TypeError: numpy.fft.fft has no gradient in neuronika, and argument 0 is a variable that needs one; ...
"""
from __future__ import annotations

from ..graph import apply, format_where, user_line
from ..variable import Var, _wrap
from ._core import FUNCTIONS, UFUNC_OPS, UFUNCS, located, needs_grad

#: ufunc.reduce / accumulate forms that are neuronika.numpy functions: (ufunc name, method) -> name
_REDUCTIONS = {
    ("add", "reduce"): "sum", ("multiply", "reduce"): "prod", ("maximum", "reduce"): "max",
    ("minimum", "reduce"): "min", ("fmax", "reduce"): "max", ("fmin", "reduce"): "min",
    ("logical_and", "reduce"): "all", ("logical_or", "reduce"): "any",
    ("add", "accumulate"): "cumsum", ("multiply", "accumulate"): "cumprod",
}


def _qualified(func):
    return f"{getattr(func, '__module__', None) or 'numpy'}.{getattr(func, '__name__', repr(func))}"


def _variables(obj, path, found):
    """(path, variable) for every variable in an argument, lists, tuples and dicts included."""
    if isinstance(obj, Var):
        found.append((path, obj))
    elif isinstance(obj, (list, tuple)):
        for i, o in enumerate(obj):
            _variables(o, f"{path}[{i}]", found)
    elif isinstance(obj, dict):
        for k, o in obj.items():
            _variables(o, f"{path}[{k!r}]", found)
    return found


def _values(obj):
    if isinstance(obj, Var):
        return obj.data
    if isinstance(obj, (list, tuple)):
        return type(obj)(_values(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _values(o) for k, o in obj.items()}
    return obj


def no_gradient(name, args, kwargs, call):
    """Run ``call`` on the values of the variables in ``args`` / ``kwargs``, or raise if
    one of them needs a gradient."""
    found = []
    for i, a in enumerate(args):
        _variables(a, f"argument {i}", found)
    for k, a in kwargs.items():
        _variables(a, f"argument {k!r}", found)
    for path, var in found:
        if needs_grad(var):
            why = ("that needs one" if var._node.requires_grad else
                   "computed from an argument of the function being traced (its value would be "
                   "frozen into the trace)")
            raise TypeError(
                f"{name} has no gradient in neuronika, and {path} is a variable {why}; "
                f"use the neuronika.numpy functions (import neuronika.numpy as np), or pass "
                f"numpy.asarray(v) to use its value as a constant (at {format_where(user_line())})")
    return call(*[_values(a) for a in args], **{k: _values(v) for k, v in kwargs.items()})


def array_ufunc(self, ufunc, method, *inputs, **kwargs):
    """NEP 13: a ufunc (or one of its methods) called with a variable among its inputs."""
    if method == "__call__":
        op = UFUNC_OPS.get(ufunc)
        if op is not None and not kwargs:
            # The common call, numpy.tanh(v) or a * v: the op's node, built here.
            if len(inputs) == 2:
                a, b = inputs
                if isinstance(a, Var) and isinstance(b, Var):
                    return _wrap(apply(op, (a._node, b._node)))
            elif isinstance(inputs[0], Var):
                return _wrap(apply(op, (inputs[0]._node,)))
        fn = UFUNCS.get(ufunc)
        if fn is not None:
            return fn(*inputs, **kwargs)
    elif (ufunc.__name__, method) in _REDUCTIONS:
        import neuronika.numpy as namespace
        fn = getattr(namespace, _REDUCTIONS[ufunc.__name__, method])
        array, *rest = inputs
        kwargs.setdefault("axis", 0)
        if "dtype" in kwargs and kwargs["dtype"] is None:
            del kwargs["dtype"]                 # passed positionally; max / min / all take none
        return fn(array, *rest, **kwargs)
    elif method == "outer" and UFUNCS.get(ufunc) is not None and len(inputs) == 2:
        a, b = inputs
        from ._shape import reshape
        from ._core import var_of
        a, b = var_of(a), var_of(b)
        return UFUNCS[ufunc](reshape(a, a.shape + (1,) * b.ndim), b, **kwargs)
    elif method == "at":
        raise located(f"numpy.{ufunc.__name__}.at: variables are immutable; use "
                      f"v.at[idx].{'add' if ufunc.__name__ == 'add' else 'set'}(...) instead", TypeError)
    name = f"numpy.{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
    return no_gradient(name, inputs, kwargs, getattr(ufunc, method))


def array_function(self, func, types, args, kwargs):
    """NEP 18: a NumPy function called with a variable among its arguments."""
    fn = FUNCTIONS.get(func)
    if fn is not None:
        return fn(*args, **kwargs) if kwargs else fn(*args)
    return no_gradient(_qualified(func), args, kwargs, func)

