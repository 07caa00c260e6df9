"""The functional face: differentiate plain Python functions of arrays.

``grad(f)`` traces ``f`` once per signature (argument structure, shapes,
dtypes, static arguments) into the same graph IR the imperative API builds,
compiles one straight-line function computing the value and the gradients, and
afterwards only calls it. Conventions follow JAX.

What is dynamic and what is static. NumPy arrays, Python floats, Vars, and
dicts / lists / tuples of them are the function's data: their values may change
from call to call. Everything else (ints, bools, strings, None, ...) is static:
part of the signature, so a new value traces again; a static argument must be
hashable.

Python control flow on traced values (``if loss > 0:``, ``float(x)``,
``x.item()``, ``while x.sum() > 1:``) is guarded: each value the function read
is checked by the compiled program at the point it is computed, and a different
value traces the function again. Both traces stay cached (up to 8 per
signature), so a function alternating between two branches runs compiled code
for each. A value read with ``float()`` or ``.item()`` changes with the data, so
such a function is in effect traced on every call: compare variables instead
(``if x > 0``), which guards only the truth value.

Arrays the function reads from outside its arguments (closures, globals,
arrays it computes with NumPy) are constants of the trace: the trace keeps the
array object it saw, so changing it in place is seen on the next call, while
rebinding a name the function reads directly (a global or a closure variable)
is detected and traces again. For anything else, re-create the function with
``neuronika.grad`` or call ``neuronika.transform.cache_clear()``. Random draws
inside the function (``neuronika.rand``) are constants too; ``dropout`` draws
its mask on every call.

Nested differentiation. Each ``grad`` differentiates with respect to its own
arguments only. Called inside another traced function on a function that reads
the outer one's variables (``grad(lambda x: x * grad(lambda y: x * y)(2.0))``),
it builds its results as graph nodes, so the outer level differentiates through
them (no perturbation confusion: the result above is 2x). A differentiable
variable built outside any trace (a module's parameter) that the function reads
is a constant of the compiled program; call ``grad`` on variables
(``grad(f)(v)``) to get the gradient as a graph that ``backward`` goes through.
"""
from __future__ import annotations

import functools
import inspect
import keyword
import re
import weakref

import numpy as np

from .errors import GradientError
from .graph import apply, leaf, modes
from .ops import OPS
from . import symbolic, tracing as _trace
from .transform.cache import CACHE, TraceCache
from .transform.codegen import Retrace
from .numpy._core import build, node_of, var_of
from .variable import Var, _wrap

__all__ = ["grad", "value_and_grad", "vjp", "jacobian", "hessian", "hvp", "custom_vjp"]

def _argnums(argnums, name):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums) if isinstance(argnums, (tuple, list)) else None
    if not nums or not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
        raise TypeError(f"{name}: argnums must be an int or a tuple of ints, got {argnums!r}")
    return single, nums


class _Traced:
    """A function traced and compiled per signature; calls run the cached program."""

    want_value = True

    def __init__(self, fn, argnums, has_aux, split, name):
        self.fn = fn
        self.single, self.argnums = _argnums(argnums, name)
        self.has_aux = has_aux
        self.split = split
        self.name = name
        self.cache = TraceCache()
        functools.update_wrapper(self, fn, updated=())

    def _signature(self, args, kwargs):
        values = []
        flatten = _trace.flatten
        try:
            entries = tuple([flatten(a, values, i) for i, a in enumerate(args)])
            if kwargs:
                kw_items = tuple((k, flatten(v, values, k)) for k, v in kwargs.items())
                return values, entries, kw_items, (entries, kw_items)
        except _trace.Unhashable as error:
            raise TypeError(error.message(self.name)) from None
        return values, entries, (), entries

    def __call__(self, *args, **kwargs):
        # The hot path: plain array arguments, a cached trace, gradients in order.
        if not kwargs and not self.has_aux and modes.tracer is None:
            ndarray = np.ndarray
            for a in args:
                if a.__class__ is not ndarray:
                    break
            else:
                traces = self.cache.traces.get(tuple([(a.shape, a.dtype) for a in args]))
                if traces is not None:
                    found = traces[0]
                    if found.plain and not found.closure and found.direct is not None:
                        try:
                            outs, grads = found.program.forward(*found.prefix, *args, *found.direct)
                        except Retrace:
                            pass
                        else:
                            CACHE.hits += 1
                            return self._finish(outs if found.want_value else None, None,
                                                grads[0] if self.single else grads)
        if _holds_var(args) or _holds_var(kwargs):
            return self._finish(*self._symbolic(args, kwargs))
        try:
            looked_up = self._lookup(args, kwargs)
        except _trace.ReadsOuter:
            # Called inside another trace on a function that reads that trace's values
            # (a closure): the outer level must be able to differentiate the result.
            return self._finish(*self._symbolic(args, kwargs))
        return self._finish(*self._results(*looked_up))

    def _symbolic(self, args, kwargs):
        """Called on variables (inside another trace): the gradient as graph nodes,
        so that it can be differentiated again."""
        single, nums = self.single, [n % len(args) for n in self.argnums]
        args = list(args)
        wrt = []
        for n in sorted(set(nums)):
            args[n] = _to_vars(args[n], wrt, self.name, n)
        with _trace.level(wrt):
            result = self.fn(*args, **kwargs)
        out, aux = _trace.split_aux(result, self.has_aux, self.name)
        out = _trace.scalar_output(out, self.name)
        grads = iter(symbolic.gradients(out, wrt))
        per_arg = {n: _rebuild(args[n], grads) for n in sorted(set(nums))}
        wanted = [per_arg[n] for n in nums]
        return out, aux, wanted[0] if single else tuple(wanted)

    def _lookup(self, args, kwargs):
        """(trace, values, entries, outputs, grads) for a call, tracing when needed."""
        values, entries, kw_items, key = self._signature(args, kwargs)
        # Inside another trace, a cached trace may have read, through some object, what is
        # now that trace's variable: trace again (once per outer trace) and keep nothing.
        nested = modes.tracer is not None
        traces = None if nested else self.cache.get(key)
        if traces is not None:
            for found in traces:
                if found.closure and found.stale():
                    continue
                try:
                    outs, grads = found.run(values)
                except Retrace:
                    continue
                CACHE.hits += 1
                return found, entries, outs, grads
        for n in self.argnums:
            if not -len(args) <= n < len(args):
                raise GradientError(f"{self.name}: argnums {n} is out of range for a call with "
                                    f"{len(args)} positional arguments")
        CACHE.misses += 1
        differentiate = {n % len(args) for n in self.argnums}
        for n in sorted(differentiate):
            _trace.check_differentiable(entries[n], n, self.name)
        found = _trace.trace(self.fn, values, entries, kw_items, differentiate, self.has_aux,
                             self.split, self.name, self.want_value or self.has_aux)
        found.plain = found.plain and self.plain_arguments(entries)
        if not nested:
            self.cache.add(key, found)
        outs, grads = found.run(values)
        return found, entries, outs, grads

    def _results(self, found, entries, outs, grads):
        if found.want_value:
            value = outs if found.n_outputs == 1 else outs[0]
            rest = outs[1:] if found.n_outputs > 1 else ()
        else:
            value = None
            rest = outs if found.n_outputs > 1 else (outs,) if found.n_outputs == 1 else ()
        aux = _trace.rebuild_aux(found.aux, iter(rest)) if found.aux is not None else None
        if found.plain:
            return value, aux, grads[0] if self.single else grads
        flat = [grads[s] if s is not None else np.zeros(*z)
                for s, z in zip(found.grad_slots, found.zeros)]
        per_arg = []
        items = iter(flat)
        order = sorted({n % len(entries) for n in self.argnums})
        for n in order:
            per_arg.append(_trace.unflatten(entries[n], items, statics=False))
        by_position = dict(zip(order, per_arg))
        wanted = [by_position[n % len(entries)] for n in self.argnums]
        return value, aux, wanted[0] if self.single else tuple(wanted)

    def plain_arguments(self, entries):
        """True when each wanted argument is one array, asked for in increasing order."""
        nums = self.argnums
        for k, n in enumerate(nums):
            if (k and nums[k - 1] >= n or n < 0 or n >= len(entries) or not _trace.is_dynamic(entries[n])
                    or entries[n] == _trace.WEAK or entries[n] == _trace.WEAK_COMPLEX):
                return False
        return True

    def source(self, *args, **kwargs) -> str:
        """The generated Python for the signature of these arguments."""
        found, _, _, _ = self._lookup(args, kwargs)
        return found.program.source()


def _holds_var(obj):
    if isinstance(obj, Var):
        return True
    if isinstance(obj, (tuple, list)):
        return any(_holds_var(o) for o in obj)
    if isinstance(obj, dict):
        return any(_holds_var(o) for o in obj.values())
    return False


def _to_vars(obj, wrt, name, position):
    """The argument with every array a variable (collected in ``wrt``, in order). A variable
    is taken through a fresh node (a reshape to its own shape): the gradient is with respect
    to this position only, not to other uses of the same variable (one passed twice, or one
    the function also reads from outside)."""
    if isinstance(obj, Var):
        var = build("reshape", (obj,), (obj.shape,))
        wrt.append(var)
        return var
    if isinstance(obj, (np.ndarray, float, complex, np.floating, np.complexfloating)):
        array = np.asarray(obj) if isinstance(obj, (float, complex)) else obj
        if array.dtype.kind not in "fc":
            raise GradientError(f"{name}: argument {position} holds an array of dtype {array.dtype}; "
                                f"only float and complex arrays can be differentiated")
        var = _wrap(leaf(array))
        wrt.append(var)
        return var
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to_vars(o, wrt, name, position) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_vars(v, wrt, name, position) for k, v in obj.items()}
    _trace.check_differentiable(("s", obj), position, name)
    return obj


def _rebuild(obj, grads):
    if isinstance(obj, Var):
        return next(grads)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_rebuild(o, grads) for o in obj)
    if isinstance(obj, dict):
        return {k: _rebuild(v, grads) for k, v in obj.items()}
    return None


class _Grad(_Traced):
    want_value = False      # grad() returns no value: the program does not compute it

    def _finish(self, value, aux, grads):
        return (grads, aux) if self.has_aux else grads


class _ValueAndGrad(_Traced):
    def _finish(self, value, aux, grads):
        return ((value, aux), grads) if self.has_aux else (value, grads)


def grad(fn=None, argnums=0, has_aux=False):
    """The gradient of a scalar function of arrays with respect to argument(s) ``argnums``.

    Usable as ``@neuronika.grad`` and as ``neuronika.grad(f, argnums=(0, 2))``.
    Gradients come back as NumPy arrays shaped like the arguments (dicts, lists
    and tuples of arrays keep their structure); with ``has_aux=True``, ``f``
    returns ``(value, aux)`` and the call returns ``(grads, aux)``.

    >>> import numpy as np, neuronika
    >>> @neuronika.grad
    ... def f(x):
    ...     return (x ** 3).sum()
    >>> f(np.array([1.0, 2.0]))
    array([ 3., 12.])
    """
    if fn is None:
        return lambda f: grad(f, argnums, has_aux)
    return _Grad(fn, argnums, has_aux, False, "grad")


def value_and_grad(fn=None, argnums=0, has_aux=False):
    """Like ``grad``, returning ``(value, grads)`` (``((value, aux), grads)`` with ``has_aux``);
    the value of a scalar function is a NumPy scalar.

    >>> import numpy as np, neuronika
    >>> value, g = neuronika.value_and_grad(lambda x: (x * x).sum())(np.array([3.0]))
    >>> float(value), g
    (9.0, array([6.]))
    """
    if fn is None:
        return lambda f: value_and_grad(f, argnums, has_aux)
    return _ValueAndGrad(fn, argnums, has_aux, False, "value_and_grad")


_vjp_traced = weakref.WeakKeyDictionary()


def _pullback(fn, args, argnums, name):
    """Trace ``fn`` (split: forward now, backward later) and return (value, vjp function)."""
    if _holds_var(args):
        return _symbolic_pullback(fn, args, argnums, name)
    try:
        traced = _vjp_traced[fn].get(argnums)
    except (KeyError, TypeError):
        traced = None
    if traced is None:
        traced = _Traced(fn, argnums, False, True, name)
        try:
            _vjp_traced.setdefault(fn, {})[argnums] = traced
        except TypeError:
            pass
    try:
        found, entries, outs, _ = traced._lookup(args, {})
    except _trace.ReadsOuter:
        return _symbolic_pullback(fn, args, argnums, name)
    program = found.program
    if program.backward is not None:
        value, saved = outs
    else:
        value, saved = outs, None
    value = np.asarray(value)
    tree = found.out_tree
    result_value = value if tree is None else tree.unflatten(value)

    def vjp_fn(cotangent):
        if tree is not None:
            cotangent = tree.flatten(cotangent, name)
        cotangent = np.asarray(cotangent)
        if cotangent.shape != value.shape:
            raise GradientError(f"{name}: the cotangent has shape {cotangent.shape} but the output "
                                f"has shape {value.shape}")
        if cotangent.dtype.kind == "c" and value.dtype.kind != "c":
            raise GradientError(f"{name}: a complex cotangent for an output of dtype {value.dtype}; "
                                f"the result is the gradient of Re(sum(cotangent * output)), which "
                                f"would drop its imaginary part: pass a real cotangent")
        if saved is None:
            grads = ()
        else:
            grads = program.backward(cotangent.astype(found.out_dtype, copy=False), *saved)
        _, _, result = traced._results(found, entries, value, grads)
        return result

    return result_value, vjp_fn


def _symbolic_pullback(fn, args, argnums, name):
    """vjp on variables (inside another trace): value and gradients as graph nodes."""
    args = list(args)
    nums = [n % len(args) for n in argnums]
    wrt = []
    for n in sorted(set(nums)):
        args[n] = _to_vars(args[n], wrt, name, n)
    with _trace.level(wrt):
        out = fn(*args)
    if _trace.is_structured(out):
        parts = []
        tree = _trace.tree_of(out, parts)
        parts = [var_of(p, name="the function's result") for p in parts]
        out = _trace.rebuild_tree(tree, iter(parts))
    else:
        out = _trace.as_output(out)
        tree, parts = None, [out]

    def vjp_fn(cotangent):
        if tree is None:
            cotangents = [cotangent]
        else:
            cotangents = []
            if not _trace.same_structure(_trace.tree_of(cotangent, cotangents), tree):
                raise GradientError(f"{name}: the cotangent's structure does not match the "
                                    f"function's result")
        total = None
        for part, c in zip(parts, cotangents):
            term = (part * c).sum()
            total = term if total is None else total + term
        if total is None:
            return tuple(_rebuild(args[n], iter(_zeros_like_vars(args[n]))) for n in nums)
        grads = iter(symbolic.gradients(total, wrt))
        per_arg = {n: _rebuild(args[n], grads) for n in sorted(set(nums))}
        return tuple(per_arg[n] for n in nums)

    return out, vjp_fn


def _zeros_like_vars(obj):
    if isinstance(obj, Var):
        return [_wrap(leaf(np.zeros(obj.shape, obj.dtype)))]
    if isinstance(obj, (tuple, list)):
        return [z for o in obj for z in _zeros_like_vars(o)]
    if isinstance(obj, dict):
        return [z for o in obj.values() for z in _zeros_like_vars(o)]
    return []


def vjp(fn, *args):
    """``(value, vjp_fn)``: ``vjp_fn(cotangent)`` returns one gradient per positional argument.
    ``fn`` may return a tuple, list or dict of arrays (nested): the value and the cotangent
    then have that structure.

    >>> import numpy as np, neuronika
    >>> value, pullback = neuronika.vjp(lambda x: x * x, np.array([1.0, 2.0]))
    >>> pullback(np.array([1.0, 1.0]))
    (array([2., 4.]),)
    """
    return _pullback(fn, args, tuple(range(len(args))), "vjp")


def jacobian(fn, argnums=0):
    """The Jacobian of ``fn`` (any output shape) with respect to argument(s) ``argnums``:
    an array of shape ``output.shape + argument.shape``, built from one vjp per output element.
    For complex values, row k is the gradient of Re(output[k]) (HIPS autograd's convention,
    d/dx - 1j d/dy): the complex Jacobian df/dz when ``fn`` is holomorphic.

    >>> import numpy as np, neuronika
    >>> neuronika.jacobian(lambda x: x * x)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    single, nums = _argnums(argnums, "jacobian")

    def jac(*args):
        value, pullback = _pullback(fn, args, nums, "jacobian")
        if _trace.is_structured(value):
            raise TypeError(f"jacobian: the function returned a {type(value).__name__}; it must "
                            f"return one array (stack the parts, or take one Jacobian per part)")
        rows = []
        for k in range(value.size):
            cotangent = np.zeros(value.size, value.dtype)
            cotangent[k] = 1
            rows.append(pullback(cotangent.reshape(value.shape)))
        result = []
        for i in range(len(nums)):
            parts = [row[i] for row in rows]
            if any(isinstance(p, Var) for p in parts):        # inside another trace
                from . import numpy as nnp
                stacked = nnp.stack(parts)
            else:
                parts = [np.asarray(p) for p in parts]
                stacked = np.stack(parts) if parts else np.zeros((0,))
            result.append(stacked.reshape(value.shape + parts[0].shape) if parts else stacked)
        return result[0] if single else tuple(result)

    return functools.wraps(fn, updated=())(jac)


_hvp_traced = weakref.WeakKeyDictionary()


def hessian(fn, argnums=0):
    """The Hessian of a scalar function of one array: ``jacobian(grad(fn))``, shaped
    ``x.shape + x.shape``. The gradient is built as a graph and differentiated again.

    >>> import numpy as np, neuronika
    >>> neuronika.hessian(lambda x: (x ** 3).sum())(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    if not isinstance(argnums, int):
        raise TypeError("hessian: argnums must be one int (the Hessian of one array)")
    return jacobian(grad(fn, argnums), argnums)


def hvp(fn, x, v):
    """The Hessian of scalar ``fn`` at ``x`` times ``v`` (shaped like ``x``), without
    forming the Hessian: the gradient of ``grad(fn)(x) . v``, traced once per signature.

    >>> import numpy as np, neuronika
    >>> neuronika.hvp(lambda x: (x ** 3).sum(), np.array([1.0, 2.0]), np.array([1.0, 1.0]))
    array([ 6., 12.])
    """
    traced = _hvp_traced.get(fn)
    if traced is None:
        inner = grad(fn)
        traced = grad(lambda point, direction: (inner(point) * direction).sum())
        try:
            _hvp_traced[fn] = traced
        except TypeError:
            pass
    return traced(x, v)


class custom_vjp:
    """A function with a gradient of your own, JAX-style.

    ``fwd(*args)`` returns ``(out, residuals)``; ``bwd(residuals, g)`` returns one
    gradient per argument (a tuple), each shaped and typed like its argument (None
    for a zero gradient); any other shape or dtype raises a GradientError naming the
    function and the argument. Both see NumPy arrays; ``g`` is read-only. Any callable
    works, lambdas and functions defined in a notebook or by ``exec`` included.

    >>> import numpy as np, neuronika
    >>> @neuronika.custom_vjp
    ... def log1pexp(x):
    ...     return np.logaddexp(0, x)
    >>> def fwd(x):
    ...     return np.logaddexp(0, x), x
    >>> def bwd(x, g):
    ...     return (g / (1 + np.exp(-x)),)       # d/dx log(1 + e^x) = sigmoid(x)
    >>> _ = log1pexp.defvjp(fwd, bwd)
    >>> neuronika.grad(lambda x: log1pexp(x).sum())(np.array([0.0, 100.0]))
    array([0.5, 1. ])
    """

    def __init__(self, fn):
        self.fn = fn
        self._fwd = self._bwd = None
        functools.update_wrapper(self, fn, updated=())
        if not isinstance(getattr(self, "__name__", None), str):     # a functools.partial, ...
            self.__name__ = type(fn).__name__

    def defvjp(self, fwd, bwd):
        name = self.__name__
        label = _identifier(name)      # generated code calls these by name: '<lambda>' is none
        params = _parameter_names(self.fn)

        def forward(*arrays):
            out, residuals = fwd(*arrays)
            return np.asarray(out), residuals

        def backward(residuals, g, slot, shape, dtype):
            grads = bwd(residuals, g)
            grads = grads if isinstance(grads, tuple) else (grads,)
            if slot >= len(grads):
                raise GradientError(f"custom_vjp {name}: the backward {_described(bwd)} returned "
                                    f"{len(grads)} gradient(s); it must return one per argument "
                                    f"(a tuple), and argument {_argument(slot, params)} has none")
            return _checked_gradient(grads[slot], shape, dtype, name, bwd, _argument(slot, params))

        forward.__name__ = f"{label}_fwd"
        backward.__name__ = f"{label}_bwd"
        self._fwd, self._bwd = forward, backward
        return self

    def __call__(self, *args):
        if not any(isinstance(a, Var) for a in args):
            return self.fn(*args)
        if self._fwd is None:
            raise GradientError(f"custom_vjp {self.__name__}: call .defvjp(fwd, bwd) before using it "
                                f"on variables")
        like = next(a._node for a in args if isinstance(a, Var))
        nodes = tuple(a._node if isinstance(a, Var) else node_of(a, like) for a in args)
        out, _ = self._fwd(*[_value(n) for n in nodes])
        return _wrap(apply(OPS["custom_vjp"], nodes, (self._fwd, self._bwd, out.shape, out.dtype)))


def _identifier(name):
    """``name`` made a Python identifier (a lambda's ``'<lambda>'`` becomes ``'lambda_'``)."""
    text = re.sub(r"\W", "_", str(name)).strip("_") or "custom"
    text = text if not text[0].isdigit() else f"f_{text}"
    return f"{text}_" if keyword.iskeyword(text) else text


def _parameter_names(fn):
    try:
        return [p.name for p in inspect.signature(fn).parameters.values()]
    except (TypeError, ValueError):
        return []


def _argument(slot, params):
    return f"{slot} ({params[slot]!r})" if slot < len(params) else str(slot)


def _described(fn):
    """A function's name and, when known, where it is defined."""
    code = getattr(fn, "__code__", None)
    where = f" (defined at {code.co_filename}:{code.co_firstlineno})" if code is not None else ""
    return f"{getattr(fn, '__name__', None) or repr(fn)}{where}"


def _checked_gradient(grad, shape, dtype, name, bwd, argument):
    """A custom backward's gradient for one argument: None is zeros, a Python number takes the
    argument's dtype, and anything not shaped and typed like the argument is refused (it would
    be added into other gradients, broadcast or converted without a word)."""
    dtype = np.dtype(dtype)
    if grad is None:
        return np.zeros(shape, dtype)
    if isinstance(grad, (int, float, complex)) and not isinstance(grad, bool):
        grad = np.asarray(grad).astype(dtype)
    got_shape, got_dtype = np.shape(grad), getattr(grad, "dtype", None)
    if got_shape != tuple(shape) or got_dtype != dtype:
        raise GradientError(
            f"custom_vjp {name}: the backward {_described(bwd)} returned a gradient of shape "
            f"{got_shape} and dtype {got_dtype} for argument {argument}, which has shape "
            f"{tuple(shape)} and dtype {dtype}; return one gradient per argument, shaped and "
            f"typed like it (None for a zero gradient)")
    return grad


def _value(node):
    return _wrap(node).data if node.op is not None else np.asarray(node.value)
