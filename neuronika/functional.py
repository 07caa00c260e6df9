"""The functional face: differentiate plain Python functions of arrays.

``grad(f)`` traces ``f`` once per signature (argument structure, shapes,
dtypes, static arguments) into the same graph IR the imperative API builds,
compiles one straight-line function computing the value and the gradients, and
afterwards only calls it. Conventions follow JAX.

What is dynamic and what is static. NumPy arrays, Python ints, floats and complex
numbers, NumPy scalars, Vars, and dicts / lists / tuples of them are the function's
data: their values may change from call to call without a new trace (a Python number
is a weakly typed scalar of the program: ``x32 * n`` stays float32, as in NumPy; so
does arithmetic on such numbers alone and a number written beside one: ``x32 * (n + 1)``
and ``x32 * (s / 2)`` are float32).
Bools, strings, None and other hashable objects are static: part of the signature, so
a new value traces again. ``static_argnums`` / ``static_argnames`` (JAX's ``jit``
options) make any argument static: the function gets the Python object itself, and
each new value is a new trace; a static argument must be hashable.

An int given as a value reaches the function as a 0-dim integer variable. Used as a
value (``x * i``, ``x ** n``, an index into a variable ``x[i]``), it costs nothing more.
Read as a Python number (``range(n)``, ``x[:n]``, ``x.reshape(n, -1)``, an axis,
``data[i]`` on a NumPy array, ``if i % 10 == 0``; and, for the argument itself, ``d[i]``,
``f"w{i}"``, ``np.arange(n)``), the read is guarded like any other (below): each new
value traces again, checked before the program runs and sharing the program when the
graph is the same. Where it cannot be taken as a value (``numpy.roll``'s shift, a NumPy
function given ``n + 1``), the error's note says to mark it static.

Python control flow on traced values (``if loss > 0:``, ``float(x)``,
``x.item()``, ``while x.sum() > 1:``) is guarded: each value the function read
is checked by the compiled program at the point it is computed, and a different
value traces the function again. Both traces stay cached (up to 8 per
signature), so a function alternating between two branches runs compiled code
for each. A value read with ``float()`` or ``.item()`` changes with the data, so
such a function is in effect traced on every call: compare variables instead
(``if x > 0``), which guards only the truth value.

Which function. The traces are kept per function, not per ``grad(f)`` object: the key
is ``f``'s code, what its closure cells hold, the globals its code names and its
defaults (numbers and strings by value, functions by their own key, anything else by
identity), with ``grad``'s options. So ``grad(loss)(params)`` written inside
``update()`` traces once, and so does a lambda made again over the same objects; a
closure over a new array (or a global rebound) traces again, sharing the program.
A function traced again more than 8 times warns once (``neuronika.RetraceWarning``,
``transform.set_retrace_warning``), naming the argument or the value read that
changed; ``neuronika.transform.explain(f, *args)`` says why a call missed.

Arrays the function reads from outside its arguments (closures, globals,
attributes, arrays it computes with NumPy) are constants of the trace: the trace
keeps the array object it saw, so changing it in place is seen on the next call,
while rebinding a name the function reads directly (a global or a closure
variable) is detected and traces again. An array reached otherwise (an
attribute, ``self.w = new_w``) is not watched: pass it as an argument, or call
``neuronika.transform.cache_clear()``. Random draws inside the function
(``neuronika.rand``, ``dropout``'s mask) are drawn anew on every call.

Whole programs. ``jit(f)`` traces ``f`` like ``grad`` does (the same signatures, statics,
guards, caches and retrace warnings) but differentiates nothing: every variable in its result
(any tree) is an output of one program. A ``grad`` / ``value_and_grad`` called inside is one
step of that program, which runs the function's own compiled forward and backward (or, where
the function reads the jit's values from outside, its gradients built as graph nodes: below),
so forward, backward and what follows them (an optimizer's update, ``neuronika.optim.sgd`` /
``adam`` / ``adamw``) run as one program.

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

import collections
import functools
import inspect
import keyword
import math
import re
import sys
import threading
import types
import warnings

import numpy as np

from .errors import ArgnumsError, GradientError, RetraceWarning, ShapeError
from .graph import USER, apply, format_where, leaf, modes, origin, user_line
from .graph import linearize as _graph_order
from .ops import OPS
from . import backend, batching as _batching, symbolic, tracing as _trace
from .transform.cache import CACHE, RETRACE_WARNING, cache_limits, functions
from .transform.cache import tick as _tick
from .transform import loops
from .transform.codegen import Anomaly, Retrace
from .numpy._core import build, node_of, var_of
from .variable import Var, _wrap

_PACK, _CALL, _PART = OPS["pack"], OPS["call"], OPS["part"]

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "linearize", "jacobian", "jacrev", "jacfwd", "hessian",
           "hvp", "custom_vjp", "jit"]

def _argnums(argnums, name):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums) if isinstance(argnums, (tuple, list)) else None
    if not nums or not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
        raise TypeError(f"{name}: argnums must be an int or a tuple of ints, got {argnums!r}")
    return single, nums


def _static_spec(fn, static_argnums, static_argnames, name):
    """(positional parameter names, static positions, static names), JAX's way: a position
    marked static makes its parameter's name static too, and a name, its position."""
    if isinstance(static_argnums, int) and not isinstance(static_argnums, bool):
        static_argnums = (static_argnums,)
    if isinstance(static_argnames, str):
        static_argnames = (static_argnames,)
    try:
        nums = tuple(static_argnums)
        names = tuple(static_argnames)
    except TypeError:
        raise TypeError(f"{name}: static_argnums must be an int or a sequence of ints, and "
                        f"static_argnames a str or a sequence of str") from None
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in nums):
        raise TypeError(f"{name}: static_argnums must be ints, got {static_argnums!r}")
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{name}: static_argnames must be strings, got {static_argnames!r}")
    params, posonly = _positional_parameters(fn)
    nums, names = set(nums), set(names)
    for i in list(nums):
        if posonly <= i < len(params):
            names.add(params[i])
    for n in list(names):
        if n in params[posonly:]:
            nums.add(params.index(n))
    return params, tuple(sorted(nums)), frozenset(names)


def _positional_parameters(fn):
    """(names of the positional parameters, how many of them are positional-only)."""
    if fn.__class__ is _FUNCTION:          # from the code object: inspect.signature is slow
        code = fn.__code__
        return code.co_varnames[:code.co_argcount], code.co_posonlyargcount
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return (), 0
    positional = [p for p in parameters if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                      inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    posonly = sum(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in positional)
    return tuple(p.name for p in positional), posonly


class _Same:
    """A key part equal only to a part holding the very same object."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj) >> 4

    def __eq__(self, other):
        return other.__class__ is _Same and other.obj is self.obj


_NUMBERS = (int, float, complex, bool)
_PLAIN = (str, bytes, type(None))
_FUNCTION = types.FunctionType


def _value_key(obj, coarse, depth, seen):
    """The part of a function's key for one object it reads: numbers and strings by value,
    functions by their own key, tuples by their items, anything else by identity. ``coarse``
    (a family key): numbers by type and arrays by shape and dtype only."""
    cls = obj.__class__
    if cls in _NUMBERS:
        return (cls,) if coarse else (cls, repr(obj))      # repr: 0.0 and -0.0 differ
    if cls in _PLAIN:
        return (cls, obj)
    if coarse and cls is np.ndarray:
        return ("a", obj.shape, obj.dtype)
    if cls is _FUNCTION or cls is types.MethodType or cls is functools.partial or isinstance(obj, _Traced):
        return _function_key(obj, coarse, depth + 1, seen)
    if cls is tuple and len(obj) <= 16:
        return (tuple,) + tuple(_value_key(o, coarse, depth, seen) for o in obj)
    return _Same(obj)


def _function_parts(fn):
    """What a Python function reads besides its arguments: [(label, object)] for its closure
    cells, the globals its code names (nested functions' code included) and its defaults."""
    code = fn.__code__
    parts = []
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            parts.append((f"the closure variable {name!r}", cell.cell_contents))
        except ValueError:                       # an empty cell (a name assigned later)
            parts.append((f"the closure variable {name!r}", _EMPTY))
    scope = fn.__globals__
    for name in _global_names(code):
        if name in scope:
            parts.append((f"the global {name!r}", scope[name]))
    for k, value in enumerate(fn.__defaults__ or ()):
        parts.append((f"default {k}", value))
    for name, value in sorted((fn.__kwdefaults__ or {}).items()):
        parts.append((f"the default of {name!r}", value))
    return parts


_EMPTY = object()
_names_of = {}


def _global_names(code):
    names = _names_of.get(code)
    if names is None:
        found = dict.fromkeys(code.co_names)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                found.update(dict.fromkeys(_global_names(const)))
        names = tuple(found)
        if len(_names_of) > 4096:
            _names_of.clear()
        _names_of[code] = names
    return names


def _function_key(fn, coarse=False, depth=0, seen=None):
    """A function's identity for the trace caches: the code object, and what it reads
    (closure cells, globals named by its code, defaults), not the function object; so
    ``grad(f)`` made again, or a closure made again over the same objects, finds the
    traces of the first. A method is its function and its object; a traced function, its key."""
    if isinstance(fn, _Traced):
        return ("t", fn.family if coarse else fn.key)
    cls = fn.__class__
    if cls is types.MethodType:
        return ("m", _function_key(fn.__func__, coarse, depth, seen), _Same(fn.__self__))
    if cls is functools.partial:
        seen = set() if seen is None else seen
        return ("p", _function_key(fn.func, coarse, depth, seen),
                tuple(_value_key(a, coarse, depth, seen) for a in fn.args),
                tuple(sorted((k, _value_key(v, coarse, depth, seen)) for k, v in fn.keywords.items())))
    if cls is not _FUNCTION or depth > 3:
        return _Same(fn)
    return _key_of_parts(fn, _function_parts(fn), coarse, depth, seen)


def _key_of_parts(fn, parts, coarse, depth=0, seen=None):
    seen = set() if seen is None else seen
    if id(fn) in seen:
        return ("recursive", fn.__code__)
    seen.add(id(fn))
    try:
        keys = tuple(_value_key(obj, coarse, depth, seen) for _, obj in parts)
    finally:
        seen.discard(id(fn))
    return ("f", fn.__code__, _Same(fn.__globals__), keys)


class _Traced:
    """A function traced and compiled per signature; calls run the cached program.

    Its trace cache is shared with every traced function of the same kind, options and
    ``_function_key`` (``transform.cache.functions``)."""

    want_value = True
    whole = False           # jit: the function's result is a tree of outputs, no loss

    def __init__(self, fn, argnums, has_aux, split, name, static_argnums=(), static_argnames=()):
        self.fn = fn
        self.single, self.argnums = (False, ()) if argnums is None else _argnums(argnums, name)
        self.has_aux = has_aux
        self.split = split
        self.name = name
        self.params, self.static_nums, self.static_names = _static_spec(
            fn, static_argnums, static_argnames, name)
        for n in self.argnums:
            if n in self.static_nums:
                raise ValueError(f"{name}: argument {n} is both differentiated (argnums) and static "
                                 f"(static_argnums / static_argnames); a static argument has no gradient")
        options = (type(self).__name__, self.argnums, self.single, has_aux, split, self.static_nums,
                   tuple(sorted(self.static_names)))
        if fn.__class__ is _FUNCTION:
            parts = _function_parts(fn)
            self.key = options + (_key_of_parts(fn, parts, False),)
            self.family = options + (_key_of_parts(fn, parts, True),)
            self.external = {id(obj) for _, obj in parts}
        else:
            self.key = options + (_function_key(fn),)
            self.family = options + (_function_key(fn, coarse=True),)
            self.external = set()
        self.cache = functions.cache_for(self.key)
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        self.stats = functions.stats_for(self.family, self._label(fn, name), code,
                                         functools.partial(_remake, type(self), argnums, has_aux, split,
                                                           name, static_argnums, static_argnames))
        self._plain_call = not has_aux and not self.static_nums
        functools.update_wrapper(self, fn, updated=())

    @staticmethod
    def _label(fn, name):
        called = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
        return f"{name}({called})"

    def _signature(self, args, kwargs):
        values = []
        flatten = _trace.flatten
        try:
            if self.static_nums:
                n = len(args)
                marked = {i % n for i in self.static_nums if -n <= i < n}
                entries = tuple([_trace.static_entry(a, i, True) if i in marked else flatten(a, values, i)
                                 for i, a in enumerate(args)])
            else:
                entries = tuple([flatten(a, values, i) for i, a in enumerate(args)])
            if kwargs:
                names = self.static_names
                kw_items = tuple((k, _trace.static_entry(v, k, True) if k in names else flatten(v, values, k))
                                 for k, v in kwargs.items())
                return values, entries, kw_items, (entries, kw_items, _KW)
        except _trace.Unhashable as error:
            raise TypeError(error.message(self.name)) from None
        return values, entries, (), entries

    def __call__(self, *args, **kwargs):
        # The hot path: plain array arguments, a cached trace, gradients in order.
        if not kwargs and self._plain_call and modes.tracer is None:
            ndarray = np.ndarray
            for a in args:
                if a.__class__ is not ndarray:
                    break
            else:
                traces = self.cache.traces.get(tuple([(a.shape, a.dtype) for a in args]))
                if traces is not None:
                    found = traces[0]
                    if found.fast and found.anomaly is _anomaly_now():
                        try:
                            outs, grads = found.program.forward(*found.prefix, *args, *found.direct)
                        except Retrace:
                            pass
                        except Anomaly as anomaly:
                            raise found.anomaly_error(anomaly) from None
                        else:
                            traces.used = _tick()
                            CACHE.hits += 1
                            return self._finish(outs if found.want_value else None, None,
                                                grads[0] if self.single else grads)
        if _holds_var(args) or _holds_var(kwargs):
            embedded = self._embedded(args, kwargs)
            if embedded is not None:
                return self._finish(*embedded)
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
        out = _rolled(_trace.scalar_output(out, self.name))
        grads = iter(symbolic.gradients(out, wrt))
        per_arg = {n: _rebuild(args[n], grads) for n in sorted(set(nums))}
        wanted = [per_arg[n] for n in nums]
        return out, aux, wanted[0] if single else tuple(wanted)

    def _embedded(self, args, kwargs):
        """Called on variables inside a jit's trace, where nothing differentiates the result:
        (value, aux, grads) as parts of one node that runs this function's own program, its
        compiled forward and backward (the backward keeps what the forward computed: a loop's
        gradient does not run the loop again). None where that cannot be done as it stands
        (the function reads the jit's values from outside, or branches on values, or the
        arrays live in another library): the symbolic gradient then."""
        tracer = modes.tracer
        if tracer is None or not tracer.whole or not self.argnums:
            return None
        sources = self._sources(args, kwargs)
        for obj in sources:
            if isinstance(obj, Var) and obj._node.space is not None or backend.foreign(obj):
                return None
        values, entries, kw_items, _ = self._signature(args, kwargs)       # (evaluates)
        for n in {n % len(args) for n in self.argnums if -len(args) <= n < len(args)}:
            if _holds_python_scalar(entries[n]):
                return None     # its gradient would be a Python number, not a variable
        try:
            found = self._trace(args, values, entries, kw_items)
        except (_trace.ReadsOuter, ArgnumsError):
            return None         # (the symbolic gradient says what is wrong in terms of variables)
        if (not found.fused or found.reads or found.pins or found.precheck is not None
                or any(z[2] is not None for z in found.zeros)):
            return None
        bundle = apply(_PACK, tuple([s._node if isinstance(s, Var) else node_of(s) for s in sources]),
                       (False,))
        call = apply(_CALL, (bundle,), (_ProgramCall(found, self.stats.name),))
        specs = list(found.output_specs)
        slots = [k for k, s in enumerate(found.grad_slots) if s is not None]
        specs += [found.zeros[k][:2] for k in slots]
        parts = [_wrap(apply(_PART, (call,), (k, shape, dtype))) for k, (shape, dtype) in enumerate(specs)]
        n_out = found.n_outputs
        outs = parts[:n_out]
        grads = [None] * len(found.program.grad_leaves)
        for k, part in zip(slots, parts[n_out:]):
            grads[found.grad_slots[k]] = part
        if found.want_value:
            value, rest = outs[0], outs[1:]
        else:
            value, rest = None, outs
        aux = _trace.rebuild_aux(found.aux, iter(rest), as_is=True) if found.aux is not None else None
        return value, aux, self._arranged(found, entries, tuple(grads))

    def _sources(self, args, kwargs):
        """What each value of the signature (``_signature``'s values, in order) is: a variable,
        an array, a number."""
        out = []
        n = len(args)
        marked = {i % n for i in self.static_nums if -n <= i < n}
        for i, a in enumerate(args):
            if i not in marked:
                _value_sources(a, out)
        for k, v in kwargs.items():
            if k not in self.static_names:
                _value_sources(v, out)
        return out

    def _find(self, traces, values):
        """(trace, outputs, grads) of the first cached trace that accepts ``values``, or
        (None, rejected, None): rejected is (the newest trace rejected, why) or None."""
        rejected = None
        for found in traces:
            if found.closure and found.stale():
                rejected = rejected or (found, "rebound")
                continue
            if found.anomaly is not _anomaly_now():
                rejected = rejected or (found, "anomaly")
                continue
            try:
                outs, grads = found.run(values)
            except Retrace:
                rejected = rejected or (found, "read")
                continue
            return found, outs, grads
        return None, rejected, None

    def _lookup(self, args, kwargs):
        """(trace, values, entries, outputs, grads) for a call, tracing when needed."""
        values, entries, kw_items, key = self._signature(args, kwargs)
        # Inside another trace, a cached trace may have read, through some object, what is
        # now that trace's variable: trace again (once per outer trace) and keep nothing.
        nested = modes.tracer is not None
        traces = None if nested else self.cache.get(key)
        rejected = None
        if traces is not None:
            found, outs, grads = self._find(traces, values)
            if found is not None:
                CACHE.hits += 1
                return found, entries, outs, grads
            rejected = outs
        found = self._trace(args, values, entries, kw_items)
        if not nested:
            reason = self._miss_reason(key, entries, kw_items, rejected, found)
            self.cache.add(key, found, found.nbytes)
            self._traced(reason)
        outs, grads = found.run(values)
        return found, entries, outs, grads

    def _trace(self, args, values, entries, kw_items):
        for n in self.argnums:
            if not -len(args) <= n < len(args):
                raise GradientError(f"{self.name}: argnums {n} is out of range for a call with "
                                    f"{len(args)} positional arguments")
        CACHE.misses += 1
        differentiate = {n % len(args) for n in self.argnums}
        marked = {i % len(args) for i in self.static_nums if -len(args) <= i < len(args)}
        for n in sorted(differentiate):
            if n in marked:
                raise ValueError(f"{self.name}: argument {n} is both differentiated (argnums) and "
                                 f"static (static_argnums); a static argument has no gradient")
            _trace.check_differentiable(entries[n], args[n], n, self.name)
        labels = _trace.value_labels(entries, kw_items, self.params)
        found = _trace.trace(self.fn, values, entries, kw_items, differentiate, self.has_aux,
                             self.split, self.name, self.want_value or self.has_aux, labels, self.external,
                             self.whole)
        found.plain_arguments = self.plain_arguments(entries)      # (read again by a compile
        if not found.plain_arguments:                               # that binds the trace anew)
            found.plain = found.fast = found.fast_later = False
        return found

    # ---- why a call missed, and the retrace warning ------------------------------------------
    def _miss_reason(self, key, entries, kw_items, rejected, new):
        """(text, hint): why the call with signature ``key`` was traced (``new``: its trace)."""
        if rejected is not None:
            old, why = rejected
            if why == "rebound":
                return (f"{old.rebound() or 'a name it reads'} was rebound since it was traced",
                        "a trace keeps the arrays and numbers a function reads from outside as "
                        "constants: pass values that change as arguments")
            if why == "anomaly":
                now, then = ("on", "off") if _anomaly_now() else ("off", "on")
                return (f"detect_anomaly() is {now}, and was {then} when it was traced",
                        "a program checks for NaN and Inf only if it was traced under "
                        "detect_anomaly(): each mode has a trace of its own")
            return _Reason(_trace.describe_reads, old.reads, new.reads if new is not None else None)
        if key in self.cache.evicted:
            limits = cache_limits()
            return (f"its signature was traced before, and evicted from the cache (the limit: "
                    f"{limits.entries} entries, {limits.bytes / 2 ** 20:.0f} MiB)",
                    "raise it with neuronika.transform.set_cache_size(entries=..., bytes=...)")
        keys = self.cache.recent(8)
        if keys:
            return _Reason(_trace.describe_change, keys, key, self.params)
        if self.stats.traced:
            return self._function_change()
        return ("it was called for the first time", "")

    def _function_change(self):
        old = dict((label, (ident, summary)) for label, ident, summary in self.stats.parts or ())
        now = _summaries(self.fn)
        for label, ident, summary in now:
            if label not in old or old[label][0] == ident:
                continue
            if summary[0] in ("value", "function") and summary == old[label][1]:
                continue                        # an equal number, or function, in another object
            return (f"{label} holds {_described_change(old[label][1], summary)}",
                    "a trace keeps what a function reads from its closure and globals as "
                    "constants (the same function made again over other objects traces again): "
                    "pass values that change as arguments")
        return ("the function was made again over other objects (a new closure, say)",
                "pass values that change as arguments")

    def _traced(self, reason):
        stats = self.stats
        stats.traced += 1
        stats.used = _tick()
        stats.last_miss = reason
        stats.parts = _summaries(self.fn)
        limit = RETRACE_WARNING[0]
        if limit is None or stats.warned or stats.traced - 1 <= limit:
            return
        stats.warned = True
        text, hint = reason
        message = (f"{stats.name} has been traced {stats.traced} times (the warning comes after "
                   f"{limit} retraces); the last time because {text}.")
        if hint:
            message += f" {hint[0].upper()}{hint[1:]}."
        message += (" neuronika.transform.explain(f, *args) says why a call misses; "
                    "neuronika.transform.set_retrace_warning(None) silences this warning.")
        warnings.warn(RetraceWarning(message), stacklevel=_user_stacklevel())

    def explain(self, *args, **kwargs) -> str:
        """Why the last call missed the cache; given arguments, whether a call with them
        would hit, and if not why (``neuronika.transform.explain``)."""
        label = self.stats.name
        if not args and not kwargs:
            return self.stats.describe()
        values, entries, kw_items, key = self._signature(args, kwargs)
        traces = self.cache.get(key)
        rejected = None
        if traces is not None:
            found, outs, _ = self._find(traces, values)
            if found is not None:
                return f"{label}: a call with these arguments hits the cache"
            rejected = outs
        new = None
        if rejected is not None and rejected[1] == "read":
            previous = modes.tracer
            try:
                new = self._trace(args, values, entries, kw_items)
            except _trace.ReadsOuter:
                new = None
            finally:
                modes.tracer = previous
        text, hint = self._miss_reason(key, entries, kw_items, rejected, new)
        return f"{label}: a call with these arguments would be traced, because {text}" + (
            f"; {hint}" if hint else "")

    def _results(self, found, entries, outs, grads):
        if found.want_value:
            value = outs if found.n_outputs == 1 else outs[0]
            rest = outs[1:] if found.n_outputs > 1 else ()
        else:
            value = None
            rest = outs if found.n_outputs > 1 else (outs,) if found.n_outputs == 1 else ()
        aux = _trace.rebuild_aux(found.aux, iter(rest)) if found.aux is not None else None
        return value, aux, self._arranged(found, entries, grads)

    def _arranged(self, found, entries, grads):
        """The program's gradients (``grads``, in its order) as the call returns them: per
        argument in ``argnums``, shaped like it, zeros where the value does not depend on it."""
        if found.plain:
            return grads[0] if self.single else grads
        flat = [grads[s] if s is not None else backend.zeros(*z)
                for s, z in zip(found.grad_slots, found.zeros)]
        items = iter(flat)
        order = sorted({n % len(entries) for n in self.argnums})
        by_position = {n: _trace.unflatten(entries[n], items, statics=False) for n in order}
        wanted = [by_position[n % len(entries)] for n in self.argnums]
        return wanted[0] if self.single else tuple(wanted)

    def plain_arguments(self, entries):
        """True when each wanted argument is one array, asked for in increasing order."""
        nums = self.argnums
        for k, n in enumerate(nums):
            if (k and nums[k - 1] >= n or n < 0 or n >= len(entries) or not _trace.is_dynamic(entries[n])
                    or entries[n].__class__ is str):
                return False
        return True

    def source(self, *args, **kwargs) -> str:
        """The generated Python for the signature of these arguments."""
        found, _, _, _ = self._lookup(args, kwargs)
        found.compile()                   # interpreted so far: compiled on request
        return found.program.source()


_KW = "kw"      # marks a signature with keyword arguments: (entries, kw_items, _KW)


class _Reason:
    """Why a call missed, as (text, hint), worked out when first asked for (most misses are
    never explained)."""

    __slots__ = ("compute", "args", "value")

    def __init__(self, compute, *args):
        self.compute, self.args, self.value = compute, args, None

    def __iter__(self):
        if self.value is None:
            self.value = self.compute(*self.args)
            self.args = None
        return iter(self.value)

    def __str__(self):
        return next(iter(self))


class _ProgramCall:
    """A trace's program run as one step of another program (the ``call`` op): returns its
    outputs, then the gradients of the differentiated arguments that reach the value, in
    argument order. A rebound name the function reads makes the enclosing program trace again."""

    __name__ = "call"

    def __init__(self, found, label):
        self.trace, self.label = found, label
        self.direct = None

    def __call__(self, values):
        direct = self.direct
        if direct is not None:
            return direct(values)
        found = self.trace
        if found.closure and found.stale():
            raise Retrace
        if found.pending is None and found.direct is not None:
            if not found.closure:               # compiled, and nothing to check per call
                self.direct = direct = _direct_call(found)
                return direct(values)
            try:                                # (Trace.run, less what this trace never needs)
                outs, grads = found.program.forward(*found.prefix, *values, *found.direct)
            except Anomaly as anomaly:
                raise found.anomaly_error(anomaly) from None
        else:
            outs, grads = found.run(values)
        n = found.n_outputs
        outs = () if n == 0 else (outs,) if n == 1 else tuple(outs)
        return outs + tuple([grads[s] for s in found.grad_slots if s is not None])

    def __repr__(self):
        return f"<the program of {self.label}>"

    def source(self) -> str:
        """The program's generated Python (compiled now if need be)."""
        self.trace.compile()
        return self.trace.program.source()


def _direct_call(found):
    """``_ProgramCall`` of a compiled trace that checks nothing per call, as one function
    written for its outputs and gradient slots: a third of the node's cost on a tiny step."""
    n = found.n_outputs
    outs = "" if n == 0 else "o, " if n == 1 else "*o, "
    picked = "".join(f"g[{s}], " for s in found.grad_slots if s is not None)
    text = ("def call(values):\n"
            "    try:\n"
            "        o, g = forward(*prefix, *values, *direct)\n"
            "    except Anomaly as anomaly:\n"
            "        raise error(anomaly) from None\n"
            f"    return ({outs}{picked})\n")
    namespace = {"forward": found.program.forward, "prefix": tuple(found.prefix), "direct": tuple(found.direct),
                 "Anomaly": Anomaly, "error": found.anomaly_error}
    exec(compile(text, "<neuronika call node>", "exec"), namespace)
    return namespace["call"]


_MISS = object()       # what a ``_plain_entry`` returns for a call it does not take
_anomaly_now = _trace._anomaly_now


def _entry_for(cache, key, found, group):
    """(entry, group) for a trace that ran from signature ``key``: the one kept in
    ``cache.entries`` (the cache drops it when the signature's traces change), or one made
    now; None while the trace still checks or compiles something per call."""
    made = cache.entries.get(key)
    if made is not None:
        return made
    if (found.fused or found.split or found.pending is not None or found.pins
            or found.precheck is not None):
        return None
    try:
        entry = _plain_entry(key, found)
    except _trace.NotPlain:                 # a static value that == does not compare as the key does
        return None
    made = cache.entries[key] = (entry, group)
    return made


def _plain_entry(key, found):
    """A jit's call of one signature as one generated function of the arguments (a tuple):
    the arguments checked against the signature and unpacked, the program run, the result
    rebuilt; ``_MISS`` for arguments of another signature, a rebound outside name, or a
    program that asks to trace again. What ``flatten_plain``, the cache look-up, ``Trace.run``
    and the output builder do on the hot path, without the general code in between:
    tiny's jitted step 9.2 -> 8.2 µs."""
    constants = []
    lines, names = _trace.plain_guard(key, constants)
    if found.direct is not None:
        passed = names + ["*direct"] if found.direct else names
    else:                             # (``Trace.arguments``)
        passed = []
        for p, c in found.plan:
            if p >= 0:
                passed.append(names[p])
            else:
                constants.append(c)
                k = len(constants) - 1
                passed.append(f"K[{k}]" if p == -1 else f"constant_value(K[{k}])")
    lines.append("if anomaly_now() is not MODE: return MISS")      # (detect_anomaly: Trace.run)
    if found.closure:
        lines.append("if stale(): return MISS")
    single = found.n_outputs == 1
    result = _trace.output_expression(found.aux, constants, single)
    body = "".join(f"    {line}\n" for line in lines)
    text = ("def entry(args):\n"
            f"{body}"
            "    try:\n"
            f"        o = forward({', '.join(passed)})\n"
            "    except Retrace:\n"
            "        return MISS\n"
            "    except Anomaly as anomaly:\n"
            "        raise error(anomaly) from None\n"
            f"    return {result}\n")
    namespace = {"forward": found.program.forward, "direct": tuple(found.direct or ()), "K": constants,
                 "constant_value": _trace.constant_value,
                 "MISS": _MISS, "ndarray": np.ndarray, "Retrace": Retrace,
                 "Anomaly": Anomaly, "error": found.anomaly_error, "stale": found.stale,
                 "A": _trace._as_array, "anomaly_now": _anomaly_now, "MODE": found.anomaly,
                 "typed": _trace._typed}
    exec(compile(text, "<jit entry>", "exec"), namespace)
    return namespace["entry"]


def _value_sources(obj, out):
    """``tracing.flatten``'s order of the values in ``obj``, the objects themselves."""
    cls = obj.__class__
    if cls is tuple or cls is list:
        for o in obj:
            _value_sources(o, out)
    elif cls is dict:
        for k in obj:
            _value_sources(obj[k], out)
    elif (cls is np.ndarray or cls is float or cls is complex or hasattr(obj, "_node")
          or cls is int and -2 ** 63 <= obj < 2 ** 63
          or isinstance(obj, (np.floating, np.complexfloating, np.integer)) or backend.foreign(obj)):
        out.append(obj)


def _holds_python_scalar(entry):
    """Whether a signature entry has a Python number among its values."""
    if entry.__class__ is str:
        return entry in _trace.SCALARS
    if _trace.is_dynamic(entry) or not entry or entry[0] == "s":
        return False
    return any(_holds_python_scalar(e) for e in (entry[2:] if entry[0] == "d" else entry[1:]))


def _remake(cls, argnums, has_aux, split, name, static_argnums, static_argnames, fn):
    return cls(fn, argnums, has_aux, split, name, static_argnums, static_argnames)


def _summaries(fn):
    """[(label, id, summary)] of what a function reads from outside (``_function_parts``),
    kept to say what changed when the function is made again; no object is kept."""
    if fn.__class__ is not _FUNCTION:
        return []
    out = []
    for label, obj in _function_parts(fn):
        if obj.__class__ is np.ndarray:
            summary = ("array", obj.shape, obj.dtype)
        elif obj.__class__ is _FUNCTION:
            summary = ("function", hash(_function_key(obj)))
        elif obj.__class__ in _NUMBERS + _PLAIN:
            text = repr(obj)
            summary = ("value", text if len(text) <= 60 else text[:57] + "...")
        else:
            summary = ("object", type(obj).__name__)
        out.append((label, id(obj), summary))
    return out


def _described_change(old, new):
    if old[0] == new[0] == "array":
        if old[1:] != new[1:]:
            return f"an array of shape {new[1]} and dtype {new[2]} (was {old[1]}, {old[2]})"
        return "another array (of the same shape and dtype)"
    if old[0] == new[0] == "value":
        return f"{new[1]} (was {old[1]})"
    if new[0] == "function":
        return "another function (reading other objects)"
    return f"another {new[1] if new[0] == 'object' else 'value'}"


def _user_stacklevel():
    """The ``stacklevel`` for ``warnings.warn`` that points at the user's line."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and origin(frame.f_code.co_filename) != USER:
        frame = frame.f_back
        level += 1
    return level


def _rolled(out):
    """``out`` with the unrolled recurrences of its graph rolled into scans (``loops.rolled``),
    so that its gradient graph is the scan's adjoint, not one adjoint per step: a Hessian-vector
    product of a recurrence compiles two loops, not three unrolled chains."""
    order, leaves, _ = _graph_order(out._node)
    found = loops.rolled(order, leaves, modes.anomaly, None, None, (), _written_in_function)
    if found is None:
        return out
    new_order, outputs = found[0], found[1]
    return _wrap(new_order[outputs[0]])


def _written_in_function(node):
    """A leaf the function wrote itself (a Python number, a NumPy array it holds): no argument
    of any trace in progress, nothing computed from one. Rolling may stack such values."""
    if node.requires_grad or node.value is None or node.const is not None:
        return False
    tracer = modes.tracer
    while tracer is not None:
        if node in tracer.inputs:
            return False
        tracer = tracer.parent
    return True


def _to_vars(obj, wrt, name, position):
    """The argument with every array a variable (collected in ``wrt``, in order). A variable
    is taken through a fresh node (a reshape to its own shape): the gradient is with respect
    to this position only, not to other uses of the same variable (one passed twice, or one
    the function also reads from outside)."""
    if isinstance(obj, Var):
        if obj.dtype.kind not in "fc":
            raise ArgnumsError(f"{name}: argument {position} holds a variable of dtype {obj.dtype}; only "
                               f"floating-point values can be differentiated (leave it out of argnums)")
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
    _trace.check_differentiable(("s", obj), obj, position, name)
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


def grad(fn=None, argnums=0, has_aux=False, *, static_argnums=(), static_argnames=()):
    """The gradient of a scalar function of arrays with respect to argument(s) ``argnums``.

    Usable as ``@neuronika.grad`` and as ``neuronika.grad(f, argnums=(0, 2))``.
    Gradients come back as NumPy arrays shaped like the arguments (dicts, lists
    and tuples of arrays keep their structure); with ``has_aux=True``, ``f``
    returns ``(value, aux)`` and the call returns ``(grads, aux)``.

    Arguments marked by ``static_argnums`` (positions) or ``static_argnames`` (names),
    JAX's ``jit`` options, reach ``f`` as the Python objects given and are part of the
    cache key: each new value traces again. They must be hashable. Unmarked, ints and
    floats are values (see the module's docstring).

    >>> import numpy as np, neuronika
    >>> @neuronika.grad
    ... def f(x):
    ...     return (x ** 3).sum()
    >>> f(np.array([1.0, 2.0]))
    array([ 3., 12.])
    >>> neuronika.grad(lambda x, n: (x ** n).sum(), static_argnums=1)(np.array([2.0]), 3)
    array([12.])
    """
    if fn is None:
        return lambda f: grad(f, argnums, has_aux, static_argnums=static_argnums,
                              static_argnames=static_argnames)
    return _Grad(fn, argnums, has_aux, False, "grad", static_argnums, static_argnames)


def value_and_grad(fn=None, argnums=0, has_aux=False, *, static_argnums=(), static_argnames=()):
    """Like ``grad``, returning ``(value, grads)`` (``((value, aux), grads)`` with ``has_aux``);
    the value of a scalar function is a NumPy scalar.

    >>> import numpy as np, neuronika
    >>> value, g = neuronika.value_and_grad(lambda x: (x * x).sum())(np.array([3.0]))
    >>> float(value), g
    (9.0, array([6.]))
    """
    if fn is None:
        return lambda f: value_and_grad(f, argnums, has_aux, static_argnums=static_argnums,
                                        static_argnames=static_argnames)
    return _ValueAndGrad(fn, argnums, has_aux, False, "value_and_grad", static_argnums, static_argnames)


class _Jit(_Traced):
    want_value = False
    whole = True

    def __call__(self, *args, **kwargs):
        if modes.tracer is not None:
            return self.fn(*args, **kwargs)        # inside another trace: inline
        cache = self.cache
        entry = cache.entry
        if entry is not None and not kwargs:
            # The hottest path: the last signature's own entry (``_plain_entry``).
            out = entry[0](args)
            if out is not _MISS:
                entry[1].used = _tick()
                CACHE.hits += 1
                return out
        if not kwargs and not self.static_nums:
            # The hot path: arrays and numbers in lists, tuples and dicts, a cached trace.
            values = []
            try:
                key = tuple([_trace.flatten_plain(a, values) for a in args])
            except _trace.NotPlain:
                pass
            else:
                traces = cache.traces.get(key)
                if traces is not None:
                    found = traces[0]
                    if not found.closure or not found.stale():
                        try:
                            outs, _ = found.run(values)
                        except Retrace:
                            pass
                        else:
                            traces.used = _tick()
                            CACHE.hits += 1
                            cache.entry = _entry_for(cache, key, found, traces)
                            return self._output(found, outs)
        if _holds_var(args) or kwargs and _holds_var(kwargs):
            return self.fn(*args, **kwargs)        # on variables: inline
        found, key, outs, _ = self._lookup(args, kwargs)
        if not kwargs and self.static_nums:        # (``_lookup``'s entries are the key)
            group = cache.traces.get(key)
            if group is not None:
                cache.entry = _entry_for(cache, key, found, group)
        return self._output(found, outs)

    def _output(self, found, outs):
        rebuild = found.rebuild
        if rebuild is None:
            rebuild = found.rebuild = _trace.output_builder(found.aux)
        return rebuild(outs if found.n_outputs > 1 else (outs,))


def _holds_var(obj):
    """Whether ``obj`` is or holds a variable (in dicts, lists and tuples)."""
    stack = [obj]
    pop, push = stack.pop, stack.extend
    ndarray = np.ndarray
    while stack:
        obj = pop()
        cls = obj.__class__
        if cls is ndarray:
            continue
        if cls is dict:
            push(obj.values())
        elif cls is list or cls is tuple:
            push(obj)
        elif isinstance(obj, Var):
            return True
        elif isinstance(obj, (tuple, list, dict)):
            push(obj.values() if isinstance(obj, dict) else obj)
    return False


def jit(fn=None, *, static_argnums=(), static_argnames=()):
    """``fn`` traced once per signature and run afterwards as one compiled program: its whole
    result (arrays, numbers, and dicts / lists / tuples of them), including the gradients of
    any ``grad`` / ``value_and_grad`` it calls, which join the same graph. A training step
    (forward, backward and the optimizer's update) becomes one program.

    Arguments are values or static as for ``grad``: arrays and Python numbers are values (a
    new learning rate does not trace again), ``static_argnums`` / ``static_argnames`` mark
    arguments whose Python value selects the program. Called inside another trace, or on
    variables, the function runs inline (its operations join that graph). An output that is
    an argument returned unchanged is that same array. ``.source(*args)`` shows the program,
    ``transform.explain`` why a call traced again.

    >>> import numpy as np, neuronika
    >>> @neuronika.jit
    ... def step(w, x, lr):
    ...     loss, g = neuronika.value_and_grad(lambda w: ((x @ w) ** 2).sum())(w)
    ...     return w - lr * g, loss
    >>> w, loss = step(np.array([1.0, -1.0]), np.array([[1.0, 2.0]]), 0.1)
    >>> w, float(loss)
    (array([ 1.2, -0.6]), 1.0)
    """
    if fn is None:
        return lambda f: jit(f, static_argnums=static_argnums, static_argnames=static_argnames)
    return _Jit(fn, None, False, False, "jit", static_argnums, static_argnames)


class _Kept:
    """Objects made per function and options, the ``limit`` most recently used: a function
    made anew on every call (a lambda) must not keep one each for ever (a weak dictionary
    would, its values holding their keys)."""

    def __init__(self, limit=256):
        self.items = collections.OrderedDict()
        self.limit = limit
        self.lock = threading.Lock()

    def get(self, key):
        with self.lock:
            try:
                found = self.items.get(key)
            except TypeError:               # an unhashable callable: nothing kept
                return None
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key, value):
        with self.lock:
            try:
                self.items[key] = value
            except TypeError:
                return value
            if len(self.items) > self.limit:
                self.items.popitem(last=False)
        return value


_vjp_traced = _Kept()


def _pullback(fn, args, argnums, name, statics=((), ()), kwargs=None):
    """Trace ``fn`` (split: forward now, backward later) and return (value, vjp function);
    ``statics``: (static_argnums, static_argnames)."""
    kwargs = kwargs or {}
    if _holds_var(args) or _holds_var(kwargs):
        return _symbolic_pullback(fn, args, argnums, name, kwargs)
    key = (fn, argnums, _hashable_statics(statics))
    traced = _vjp_traced.get(key)
    if traced is None:
        traced = _vjp_traced.put(key, _Traced(fn, argnums, False, True, name, *statics))
    try:
        found, entries, outs, program = traced._lookup(args, kwargs)
    except _trace.ReadsOuter:
        return _symbolic_pullback(fn, args, argnums, name, kwargs)
    if program.backward is not None:
        value, saved = outs
    else:
        value, saved = outs, None
    space = backend.space_of(value) if backend.foreign(value) else None
    if space is None:
        value = np.asarray(value)
    tree = found.out_tree
    result_value = value if tree is None else tree.unflatten(value)

    def vjp_fn(cotangent):
        if tree is not None:
            cotangent = tree.flatten(cotangent, name)
        cotangent = _trace.to_space(cotangent, space)
        if tuple(cotangent.shape) != tuple(value.shape):
            raise GradientError(f"{name}: the cotangent has shape {tuple(cotangent.shape)} but the "
                                f"output has shape {tuple(value.shape)}")
        if _trace.numpy_dtype(cotangent).kind == "c" and found.out_dtype.kind != "c":
            raise GradientError(f"{name}: a complex cotangent for an output of dtype {found.out_dtype}; "
                                f"the result is the gradient of Re(sum(cotangent * output)), which "
                                f"would drop its imaginary part: pass a real cotangent")
        if saved is None:
            grads = ()
        else:
            if space is None:
                cotangent = cotangent.astype(found.out_dtype, copy=False)
            else:
                cotangent = space.xp.astype(cotangent, space.dtype(found.out_dtype), copy=False)
            try:
                grads = program.backward(cotangent, *saved)
            except Anomaly as anomaly:
                raise found.anomaly_error(anomaly) from None
        _, _, result = traced._results(found, entries, value, grads)
        return result

    return result_value, vjp_fn


def _hashable_statics(statics):
    nums, names = statics
    nums = (nums,) if isinstance(nums, int) else tuple(nums)
    names = (names,) if isinstance(names, str) else tuple(names)
    return nums, names


def _symbolic_pullback(fn, args, argnums, name, kwargs=None):
    """vjp on variables (inside another trace): value and gradients as graph nodes."""
    args = list(args)
    nums = [n % len(args) for n in argnums]
    wrt = []
    for n in sorted(set(nums)):
        args[n] = _to_vars(args[n], wrt, name, n)
    with _trace.level(wrt):
        out = fn(*args, **(kwargs or {}))
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


def vjp(fn, *args, static_argnums=()):
    """``(value, vjp_fn)``: ``vjp_fn(cotangent)`` returns one gradient per positional argument
    (None for those marked ``static_argnums``, which reach ``fn`` as given and key the cache).
    ``fn`` may return a tuple, list or dict of arrays (nested): the value and the cotangent
    then have that structure.

    >>> import numpy as np, neuronika
    >>> value, pullback = neuronika.vjp(lambda x: x * x, np.array([1.0, 2.0]))
    >>> pullback(np.array([1.0, 1.0]))
    (array([2., 4.]),)
    >>> _, pullback = neuronika.vjp(lambda x, n: x ** n, np.array([1.0, 2.0]), 3, static_argnums=1)
    >>> pullback(np.array([1.0, 1.0]))
    (array([ 3., 12.]), None)
    """
    spec = _hashable_statics((static_argnums, ()))[0]
    if not spec:
        return _pullback(fn, args, tuple(range(len(args))), "vjp")
    marked = {n % len(args) for n in spec if -len(args) <= n < len(args)}
    nums = tuple(i for i in range(len(args)) if i not in marked)
    if not nums:
        raise TypeError("vjp: every argument is static (static_argnums): nothing to differentiate")
    value, pullback = _pullback(fn, args, nums, "vjp", (tuple(sorted(marked)), ()))

    def vjp_fn(cotangent):
        grads = iter(pullback(cotangent))
        return tuple(None if i in marked else next(grads) for i in range(len(args)))

    return value, vjp_fn


def jacobian(fn, argnums=0, *, has_aux=False, static_argnums=(), static_argnames=()):
    """The Jacobian of ``fn`` (any output shape) with respect to argument(s) ``argnums``:
    an array of shape ``output.shape + argument.shape`` (a tree of them for an argument that
    is a tree). One vjp per output element, batched (``vmap`` over the cotangents' basis), so
    the whole Jacobian is one program traced once per signature. For complex values, row k is
    the gradient of Re(output[k]) (HIPS autograd's convention, d/dx - 1j d/dy): the complex
    Jacobian df/dz when ``fn`` is holomorphic. ``has_aux``: ``fn`` returns ``(value, aux)``
    and the result is ``(jacobian, aux)``. ``static_argnums`` / ``static_argnames`` as for
    ``grad``.

    >>> import numpy as np, neuronika
    >>> neuronika.jacobian(lambda x: x * x)(np.array([1.0, 2.0]))
    array([[2., 0.],
           [0., 4.]])
    """
    single, nums = _argnums(argnums, "jacobian")

    def jac(*args, **kwargs):
        program = _jacobian_program(fn, "jacobian", nums, has_aux, static_argnums, static_argnames)
        _check_argnums("jacobian", nums, args, program.static_nums)
        return _jacobian_result(program(*args, **kwargs), single, has_aux)

    return functools.wraps(fn, updated=())(jac)


def _check_argnums(name, nums, args, static_nums):
    n_args = len(args)
    for n in nums:
        if not -n_args <= n < n_args:
            raise GradientError(f"{name}: argnums {n} is out of range for a call with {n_args} "
                                f"positional arguments")
    marked = {i % n_args for i in static_nums if -n_args <= i < n_args}
    for n in nums:
        if n % n_args in marked:
            raise ValueError(f"{name}: argument {n % n_args} is both differentiated (argnums) and static "
                             f"(static_argnums / static_argnames); a static argument has no gradient")


def _jacobian_result(out, single, has_aux):
    results, aux = out if has_aux else (out, None)
    results = results[0] if single else tuple(results)
    return (results, aux) if has_aux else results


_jacobian_programs = _Kept()


def _jacobian_program(fn, name, nums, has_aux, static_argnums, static_argnames):
    """A ``_Jit`` of the Jacobian(s) of ``fn`` with respect to arguments ``nums``: reverse mode
    (``name`` "jacobian") or forward mode ("jacfwd"), its basis batched, kept per function
    and options (its traces per ``_function_key``, so a lambda made again finds them)."""
    if not callable(fn):
        raise TypeError(f"{name}: the function to differentiate must be callable, got "
                        f"{type(fn).__name__}")
    _, snums, snames = _static_spec(fn, static_argnums, static_argnames, name)
    key = (fn, name, tuple(nums), bool(has_aux), snums, tuple(sorted(snames)))
    found = _jacobian_programs.get(key)
    if found is not None:
        return found
    run = _jacobian_parts.reverse if name == "jacobian" else _jacobian_parts.forward

    # (the body names one global, an object: see _tangent_program)
    def program(*args, **kwargs):
        return _jacobian_parts.run(run, fn, name, nums, has_aux, args, kwargs)

    label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    program.__qualname__ = program.__name__ = str(label)
    return _jacobian_programs.put(key, _Jit(program, None, False, False, name, snums, tuple(snames)))


class _jacobian_parts:
    """The bodies of the Jacobian programs, over variables: the basis is a constant leaf, and
    ``batching.batched_call`` runs one vjp (or jvp) per basis vector as one batched graph."""

    @staticmethod
    def run(run, fn, name, nums, has_aux, args, kwargs):
        main, captured = _without_aux(fn, has_aux, name)
        results = run(main, name, [n % len(args) for n in nums], args, kwargs)
        return (results, captured["aux"]) if has_aux else results

    @staticmethod
    def reverse(fn, name, nums, args, kwargs):
        value, pullback = _symbolic_pullback(fn, args, tuple(nums), name, kwargs)
        if _trace.is_structured(value):
            raise TypeError(f"{name}: the function returned a {type(value).__name__}; it must "
                            f"return one array (stack the parts, or take one Jacobian per part)")
        shape = tuple(value.shape)
        rows = _batched_basis(pullback, value._node, shape)
        return [_trace.rebuild_tree(tree, iter([r.reshape(shape + tuple(r.shape[1:])) for r in parts]))
                for tree, parts in (_tree_parts(row) for row in rows)]

    @staticmethod
    def forward(fn, name, nums, args, kwargs):
        results = []
        for n in nums:
            x = args[n]
            if _trace.is_structured(x):
                raise TypeError(f"jacfwd: argument {n} is a {type(x).__name__}; differentiate one array "
                                f"per argnum (pass the parts as separate arguments)")
            x = var_of(x, name=f"argument {n}")
            which = [i == n for i in range(len(args))]

            def column(t, which=which):
                _, tangent, _, _ = _jvp_graph(fn, args, kwargs, which, [t], name)
                if _trace.is_structured(tangent):
                    raise TypeError(f"jacfwd: the function returned a {type(tangent).__name__}; it "
                                    f"must return one array (stack the parts, or take one Jacobian "
                                    f"per part)")
                return tangent

            shape = tuple(x.shape)
            columns = _batched_basis(column, x._node, shape, out_axis=-1)
            results.append(columns.reshape(tuple(columns.shape[:-1]) + shape))
        return results


def _tree_parts(obj):
    parts = []
    return _trace.tree_of(obj, parts), parts


def _batched_basis(fn, like, shape, out_axis=0):
    """``fn`` applied to every unit array shaped and typed like ``like`` (one per element, in
    order), batched: the results stacked along ``out_axis``."""
    size = math.prod(shape)
    if not size:                     # an empty basis: the shapes from one call on zeros
        probe = fn(_wrap(leaf(symbolic._filled(0, like))))
        parts = []
        tree = _trace.tree_of(probe, parts)
        empty = []
        for p in parts:
            p = var_of(p)
            zeros_shape = (0,) + tuple(p.shape) if out_axis == 0 else tuple(p.shape) + (0,)
            empty.append(_wrap(leaf(backend.zeros(zeros_shape, p.dtype, p._node.space))))
        return _trace.rebuild_tree(tree, iter(empty))
    rows = max(1, BASIS_ELEMENTS // size)
    if rows >= size:
        eye = np.eye(size, dtype=like.dtype).reshape((size,) + tuple(shape))
        basis = _wrap(leaf(backend.move(eye, like.space)))
        return _batching.batched_call(fn, 0, out_axis, None, (basis,), {})
    # a large basis in chunks of ``rows`` unit arrays, each made where the program runs (one
    # chunk at a time in memory, never the whole identity as a constant)
    from . import numpy as nnp
    columns = _wrap(leaf(backend.move(np.arange(size), like.space)))
    pieces = []
    for start in range(0, size, rows):
        stop = min(size, start + rows)
        index = _wrap(leaf(backend.move(np.arange(start, stop).reshape(-1, 1), like.space)))
        basis = (index == columns).astype(like.dtype).reshape((stop - start,) + tuple(shape))
        pieces.append(_batching.batched_call(fn, 0, out_axis, None, (basis,), {}))
    trees = [_tree_parts(piece) for piece in pieces]
    joined = [nnp.concatenate([parts[k] for _, parts in trees], axis=out_axis)
              for k in range(len(trees[0][1]))]
    return _trace.rebuild_tree(trees[0][0], iter(joined))


#: the most elements of the identity ``jacfwd`` / ``jacrev`` batch at once: a larger basis goes
#: in chunks (an argument or output of 2,048 elements or fewer is one chunk)
BASIS_ELEMENTS = 1 << 22


_hvp_traced = _Kept()


def hessian(fn, argnums=0, *, has_aux=False, static_argnums=(), static_argnames=()):
    """The Hessian of a scalar function of one array, ``jacobian(grad(fn))``, shaped
    ``x.shape + x.shape``: one program in which the gradient's graph is differentiated again
    for every row at once (``vmap`` of a vjp). Reverse-over-reverse batched measured faster
    here than forward-over-reverse (``jacfwd(grad(fn))``, which gives the same), in compile
    time and run time. ``has_aux``: ``fn`` returns ``(value, aux)``, the result is
    ``(hessian, aux)``. ``static_argnums`` / ``static_argnames`` as for ``grad``.

    >>> import numpy as np, neuronika
    >>> neuronika.hessian(lambda x: (x ** 3).sum())(np.array([1.0, 2.0]))
    array([[ 6.,  0.],
           [ 0., 12.]])
    """
    if not isinstance(argnums, int):
        raise TypeError("hessian: argnums must be one int (the Hessian of one array)")
    statics = {"static_argnums": static_argnums, "static_argnames": static_argnames}
    return jacobian(grad(fn, argnums, has_aux=has_aux, **statics), argnums, has_aux=has_aux, **statics)


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
        traced = _hvp_traced.put(fn, grad(lambda point, direction: (inner(point) * direction).sum()))
    return traced(x, v)


# ---- forward mode --------------------------------------------------------------------------
#
# A tangent is the transpose of a cotangent: with g(u) = vjp_f(x)(u), linear in u,
# jvp_f(x)(v) = vjp_g(u)(v) at any u (zeros here). Both steps are symbolic gradients
# (``symbolic.gradients``), so the tangent program is one graph, traced and compiled per
# signature by a ``_Jit``. Only the nodes the second gradient reads survive: the adjoints of
# the backward's nodes with respect to their cotangent input read the primal's values and the
# tangent, never the cotangent itself, so no cotangent is computed (the zeros u are dead).

# (function, options) -> its program, the most recent last. Not a WeakKeyDictionary: the
# program holds the function, which would never die. A function made anew on every call (a
# lambda) fills it and costs a key computation per call; its traces are shared anyway (the
# trace caches are keyed by what the function reads).
_jvp_programs = _Kept()


def _tangent_program(fn, name, static_argnums=(), static_argnames=(), part="jvp", has_aux=False):
    """A ``_Jit`` of ``fn``'s forward mode, kept per function, ``part`` and static options (its
    traces are kept per ``_function_key`` of ``fn``, so a lambda made again finds them):

    - "jvp": ``(tangents, *args, **kwargs)`` -> ``(value, tangent)``; ``tangents`` holds one
      tree per positional argument, None where that argument is not differentiated;
    - "primal": ``(which, *args, **kwargs)`` -> ``(value, residuals)``: what the tangent reads
      of the primal computation (``which``: a bool per positional argument, differentiated);
    - "linear": ``(residuals, tangents, *args, **kwargs)`` -> ``tangent``, from the residuals
      (the arguments are read only where ``fn`` branched on their values).

    ``has_aux``: ``fn`` returns ``(value, aux)``; "jvp" and "primal" return aux last.
    """
    if not callable(fn):
        raise TypeError(f"{name}: the function to differentiate must be callable, got "
                        f"{type(fn).__name__}")
    _, nums, names = _static_spec(fn, static_argnums, static_argnames, name)
    key = (fn, name, part, nums, tuple(sorted(names)), bool(has_aux))
    found = _jvp_programs.get(key)
    if found is not None:
        return found

    # (the bodies name one global, an object: a trace's key reads the function's globals, and
    # a function among them by its own globals, in turn)
    if part == "jvp":
        def program(tangents, *args, **kwargs):
            return _forward_parts.run_jvp(fn, name, tangents, args, kwargs, has_aux)
    elif part == "primal":
        def program(which, *args, **kwargs):
            return _forward_parts.run_primal(fn, name, which, args, kwargs, has_aux)
    else:
        def program(residuals, tangents, *args, **kwargs):
            return _forward_parts.run_linear(fn, name, residuals, tangents, args, kwargs, has_aux)

    label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
    program.__qualname__ = program.__name__ = str(label)
    # the program's own arguments come first: a position counted from the start moves, one
    # counted from the end does not
    lead = 2 if part == "linear" else 1
    shifted = tuple(n + lead if n >= 0 else n for n in nums)
    return _jvp_programs.put(key, _Jit(program, None, False, False, name, shifted, tuple(names)))


class _forward_parts:
    """The bodies of the forward-mode programs (``_tangent_program``)."""

    @staticmethod
    def run_jvp(fn, name, tangents, args, kwargs, has_aux):
        which = [t is not None for t in tangents]
        main, aux = _without_aux(fn, has_aux, name)
        out, tangent, _, _ = _jvp_graph(main, args, kwargs, which, _flat_trees(tangents), name)
        return (out, tangent, aux["aux"]) if has_aux else (out, tangent)

    @staticmethod
    def run_primal(fn, name, which, args, kwargs, has_aux):
        main, aux = _without_aux(fn, has_aux, name)
        out, _, flat, seeds = _jvp_graph(main, args, kwargs, which, None, name)
        residuals = [_wrap(n) for n in _residuals(flat, seeds)]
        return (out, residuals, aux["aux"]) if has_aux else (out, residuals)

    @staticmethod
    def run_linear(fn, name, residuals, tangents, args, kwargs, has_aux):
        which = [t is not None for t in tangents]
        main, _ = _without_aux(fn, has_aux, name)
        _, tangent, flat, seeds = _jvp_graph(main, args, kwargs, which, _flat_trees(tangents), name)
        return _on_residuals(tangent, flat, seeds, residuals)


def _without_aux(fn, has_aux, name):
    """``fn`` returning its value only, and a dict that gets its aux (under ``"aux"``) when it
    runs: inside a trace (a program's body runs once per trace), aux is graph nodes."""
    captured = {}
    if not has_aux:
        return fn, captured

    def main(*args, **kwargs):
        value, captured["aux"] = _trace.split_aux(fn(*args, **kwargs), True, name)
        return value

    return main, captured


def _flat_trees(trees):
    flat = []
    for t in trees:
        if t is not None:
            _trace.tree_of(t, flat)
    return flat


def _jvp_graph(fn, args, kwargs, which, flat_tangents, name):
    """``(value, tangent, tangent's parts, tangent leaves)`` of ``fn`` at ``args`` as
    variables, the tangent by transposing ``fn``'s vjp (see above); ``which``: whether each
    positional argument is differentiated, ``flat_tangents`` their tangents' leaves in order
    (None: zeros, placeholders for ``_residuals``)."""
    args = list(args)
    wrt = []
    for k, differentiated in enumerate(which):
        if differentiated:
            args[k] = _primal_vars(args[k], wrt, name, k)
    if flat_tangents is None:
        flat_tangents = [_wrap(leaf(symbolic._filled(0, w._node))) for w in wrt]
    flat_tangents = [t if isinstance(t, Var) else var_of(t, w._node) for t, w in zip(flat_tangents, wrt)]
    with _trace.level(wrt):
        out = fn(*args, **kwargs)
    parts = []
    tree = _trace.tree_of(out, parts)
    parts = [var_of(p, name="the function's result") for p in parts]
    total, cotangents = None, []
    for p in parts:
        if p.dtype.kind not in "fc":
            cotangents.append(None)
            continue
        u = _wrap(leaf(symbolic._filled(0, p._node)))
        cotangents.append(u)
        term = (p * u).sum()
        total = term if total is None else total + term
    used = [u for u in cotangents if u is not None]
    tangent_parts = None
    if total is not None and wrt:
        try:
            pulled = symbolic.gradients(total, wrt, fuse=False)      # linear in the cotangents u
        except GradientError as error:
            text, head = str(error), "second derivatives through "
            if not text.startswith(head):
                raise
            # an op whose adjoint reads what only its compiled forward has (dropout's mask, a
            # custom_vjp's residuals): it would need a tangent rule of its own
            raise GradientError(f"{name}: forward mode (reverse mode transposed) through "
                                f"{text[len(head):]}") from None
        inner = None
        for g, t in zip(pulled, flat_tangents):
            term = (g * t).sum()
            inner = term if inner is None else inner + term
        tangent_parts = iter(symbolic.gradients(inner, used, fuse=False))
    tangent = [_wrap(leaf(symbolic._filled(0, p._node))) if u is None or tangent_parts is None
               else next(tangent_parts) for p, u in zip(parts, cotangents)]
    return (_trace.rebuild_tree(tree, iter(parts)), _trace.rebuild_tree(tree, iter(tangent)), tangent,
            [t._node for t in flat_tangents])


def _primal_vars(obj, wrt, name, position):
    """``_to_vars``, except that a Python number's own leaf (weakly typed: ``x32 * s`` stays
    float32) is differentiated as it is: a fresh node over it would be strongly typed."""
    if isinstance(obj, Var):
        node = obj._node
        if (node.op is None and node.key[0] == "weak" and obj.dtype.kind in "fc"
                and all(w._node is not node for w in wrt)):
            wrt.append(obj)
            return obj
    elif isinstance(obj, (tuple, list)):
        return type(obj)(_primal_vars(o, wrt, name, position) for o in obj)
    elif isinstance(obj, dict):
        return {k: _primal_vars(v, wrt, name, position) for k, v in obj.items()}
    return _to_vars(obj, wrt, name, position)


def _linear_part(flat, seeds):
    """(the nodes behind the tangent's parts ``flat``, topologically ordered; those of them
    that depend on the tangent leaves ``seeds``)."""
    order, _, _ = _graph_order(*[t._node for t in flat]) if flat else ([], None, None)
    linear = set(seeds)
    for node in order:
        if node.op is not None and any(i in linear for i in node.inputs):
            linear.add(node)
    return order, linear


def _residuals(flat, seeds):
    """What the linear part of the tangent reads of the rest, in a deterministic order: the
    computed nodes and the constants (a random draw differs from trace to trace). Not the
    arguments nor the numbers written in the function (weakly typed): both programs have them."""
    order, linear = _linear_part(flat, seeds)
    tracer = modes.tracer
    arguments = tracer.inputs if tracer is not None else ()

    def residual(node):
        return node not in linear and (node.op is not None
                                       or node.key[0] != "weak" and node not in arguments)

    found = {}
    for node in order:
        if node in linear and node.op is not None:
            for i in node.inputs:
                if residual(i):
                    found.setdefault(i, None)
    for t in flat:
        if residual(t._node):
            found.setdefault(t._node, None)
    return list(found)


def _on_residuals(tangent, flat, seeds, residuals):
    """The tangent's linear part built again over ``residuals`` (the primal program's values
    of ``_residuals``), so that the primal computation is dead code. Where a node does not come
    out the same (a weakly typed number among the residuals changes a dtype), the tangent as
    traced: the same values, with the primal computed again."""
    order, linear = _linear_part(flat, seeds)
    mapping = {}
    nodes = _residuals(flat, seeds)
    if len(nodes) != len(residuals):
        return tangent
    for node, value in zip(nodes, residuals):
        if tuple(value.shape) != tuple(node.shape) or value.dtype != node.dtype:
            return tangent
        mapping[node] = value._node
    get = mapping.get
    for node in order:
        if node in linear and node.op is not None:
            made = apply(node.op, tuple([get(i, i) for i in node.inputs]), node.attrs)
            if made.shape != node.shape or made.dtype != node.dtype:
                return tangent
            mapping[node] = made
    rebuilt = iter([_wrap(get(t._node, t._node)) for t in flat])
    parts = []
    tree = _trace.tree_of(tangent, parts)
    return _trace.rebuild_tree(tree, rebuilt)


def _path(base, key):
    return f"{base}[{key!r}]"


def _check_tangent(name, primal, tangent, where):
    """Refuse a tangent that does not match its primal (structure, shape, dtype), or a primal
    that cannot be differentiated, naming the argument (``where``) and the user's line."""
    at = f" (at {format_where(user_line())})"
    if isinstance(primal, (tuple, list)) or primal.__class__ is dict:
        if type(tangent) is not type(primal) and not (isinstance(primal, tuple) and isinstance(tangent, tuple)):
            raise TypeError(f"{name}: the tangent {where} is a {type(tangent).__name__} but its primal "
                            f"is a {type(primal).__name__}; tangents have the primals' structure{at}")
        if primal.__class__ is dict:
            if list(tangent) != list(primal):
                raise TypeError(f"{name}: the tangent {where} has keys {list(tangent)} but its primal "
                                f"has keys {list(primal)}{at}")
            for k in primal:
                _check_tangent(name, primal[k], tangent[k], _path(where, k))
            return
        if len(tangent) != len(primal):
            raise TypeError(f"{name}: the tangent {where} has {len(tangent)} items but its primal has "
                            f"{len(primal)}{at}")
        for k, (p, t) in enumerate(zip(primal, tangent)):
            _check_tangent(name, p, t, f"{where}[{k}]")
        return
    p_shape, p_dtype = _shape_dtype(primal)
    if p_dtype is None or p_dtype.kind not in "fc":
        kind = "no dtype" if p_dtype is None else f"dtype {p_dtype}"
        raise TypeError(f"{name}: the primal {where} ({type(primal).__name__}, {kind}) cannot be "
                        f"differentiated: only float and complex arrays have tangents (pass integer "
                        f"data through a closure, or leave it out of argnums){at}")
    t_shape, t_dtype = _shape_dtype(tangent)
    if t_dtype is None:
        raise TypeError(f"{name}: the tangent {where} is a {type(tangent).__name__}, not an array{at}")
    if t_shape != p_shape:
        raise ShapeError(f"{name}: the tangent {where} has shape {t_shape} but its primal has shape "
                         f"{p_shape}{at}")
    python_number = isinstance(primal, (float, complex)) and isinstance(tangent, (int, float, complex))
    if t_dtype != p_dtype and not python_number:
        raise TypeError(f"{name}: the tangent {where} has dtype {t_dtype} but its primal has dtype "
                        f"{p_dtype}; a tangent has its primal's dtype{at}")


def _shape_dtype(obj):
    """(shape, dtype) of an array, variable, or number; (None, None) for anything else."""
    if isinstance(obj, Var) or obj.__class__ is np.ndarray or backend.foreign(obj):
        return tuple(obj.shape), _trace.numpy_dtype(obj) if not isinstance(obj, Var) else obj.dtype
    if isinstance(obj, (bool, np.bool_)):
        return (), np.dtype(bool)
    if isinstance(obj, (int, float, complex, np.number)):
        return (), np.asarray(obj).dtype
    return None, None


def jvp(fn, primals, tangents, has_aux=False):
    """``(fn(*primals), tangent)``: the value and the Jacobian-vector product of ``fn`` at
    ``primals`` in the direction ``tangents`` (JAX's ``jvp``). ``primals`` and ``tangents``
    are tuples, one entry per positional argument, of arrays or trees (tuples, lists, dicts)
    of arrays; each tangent has its primal's structure, shapes and dtypes. ``fn`` may return
    a tree: the tangent has its structure. ``has_aux``: ``fn`` returns ``(value, aux)`` and
    the result is ``(value, tangent, aux)``.

    Forward mode here is reverse mode transposed: the program is traced once per signature and
    compiled like ``grad``'s (no per-op tangent rule), and computes only the value and the
    tangent.

    >>> import numpy as np, neuronika
    >>> value, tangent = neuronika.jvp(lambda x: x ** 3, (np.array([1.0, 2.0]),),
    ...                                (np.array([1.0, 0.5]),))
    >>> value, tangent
    (array([1., 8.]), array([3., 6.]))
    """
    if not isinstance(primals, (tuple, list)) or not isinstance(tangents, (tuple, list)):
        raise TypeError(f"jvp: primals and tangents must be tuples (one entry per positional argument "
                        f"of the function), got {type(primals).__name__} and {type(tangents).__name__}")
    if len(primals) != len(tangents):
        raise TypeError(f"jvp: {len(primals)} primals but {len(tangents)} tangents; give one tangent "
                        f"per primal")
    for k, (p, t) in enumerate(zip(primals, tangents)):
        _check_tangent("jvp", p, t, f"tangents[{k}]")
    return _tangent_program(fn, "jvp", has_aux=has_aux)(_number_tangents(tangents), *primals)


def _number_tangents(tangents):
    """Python numbers among the tangents as 0-dim arrays (float64, complex128): a number would be
    a weakly typed value of the program, which ``cast`` cannot take."""
    if isinstance(tangents, (tuple, list)):
        return type(tangents)(_number_tangents(t) for t in tangents)
    if tangents.__class__ is dict:
        return {k: _number_tangents(v) for k, v in tangents.items()}
    if isinstance(tangents, (int, float, complex)) and not isinstance(tangents, bool):
        return np.asarray(tangents, dtype=complex if isinstance(tangents, complex) else float)
    return tangents


class _Linearized:
    """``f_jvp`` of ``linearize``: the tangent at fixed primals, one compiled program over the
    residuals the primal program kept (``residuals`` None: the jvp program, inside a trace)."""

    def __init__(self, program, residuals, primals, name):
        self.program, self.residuals, self.primals, self.name = program, residuals, primals, name

    def __call__(self, *tangents):
        if len(tangents) != len(self.primals):
            raise TypeError(f"{self.name}: {len(tangents)} tangents for {len(self.primals)} primals; "
                            f"give one tangent per primal")
        for k, (p, t) in enumerate(zip(self.primals, tangents)):
            _check_tangent(self.name, p, t, f"tangents[{k}]")
        tangents = _number_tangents(tangents)
        if self.residuals is None:
            return self.program(tangents, *self.primals)[1]
        return self.program(self.residuals, tangents, *self.primals)

    def source(self) -> str:
        """The generated Python of the tangent program."""
        zeros = _zeros_tree(self.primals)
        if self.residuals is None:
            return self.program.source(zeros, *self.primals)
        return self.program.source(self.residuals, zeros, *self.primals)


def _zeros_tree(obj):
    if isinstance(obj, (tuple, list)):
        return type(obj)(_zeros_tree(o) for o in obj)
    if obj.__class__ is dict:
        return {k: _zeros_tree(v) for k, v in obj.items()}
    if isinstance(obj, Var):
        return np.zeros(obj.shape, obj.dtype)
    if backend.foreign(obj):
        return backend.zeros(tuple(obj.shape), _trace.numpy_dtype(obj), backend.space_of(obj))
    return np.zeros_like(obj)


def _copied(obj):
    """The primals kept by ``linearize``: arrays copied (a later in-place change of the caller's
    array must not move the point of linearisation)."""
    if isinstance(obj, (tuple, list)):
        return type(obj)(_copied(o) for o in obj)
    if obj.__class__ is dict:
        return {k: _copied(v) for k, v in obj.items()}
    return obj.copy() if obj.__class__ is np.ndarray else obj


def linearize(fn, *primals, has_aux=False):
    """``(fn(*primals), f_jvp)``: ``f_jvp(*tangents)`` is the Jacobian-vector product at
    ``primals`` (JAX's ``linearize``). ``fn`` runs once, in a program that keeps what the
    tangent reads of it; each call of ``f_jvp`` runs one compiled program of the tangent alone
    over those values. ``f_jvp.source()`` prints it. ``has_aux``: ``fn`` returns ``(value,
    aux)`` and the result is ``(value, f_jvp, aux)``.

    >>> import numpy as np, neuronika
    >>> value, f_jvp = neuronika.linearize(lambda x: np.sin(x), np.array([0.0, np.pi]))
    >>> f_jvp(np.array([1.0, 1.0]))
    array([ 1., -1.])
    """
    primals = _copied(primals)
    zeros = _zeros_tree(primals)
    for k, (p, t) in enumerate(zip(primals, zeros)):
        _check_tangent("linearize", p, t, f"primals[{k}]")
    if modes.tracer is not None or _holds_var(primals):      # a graph: the jvp's
        program = _tangent_program(fn, "linearize", has_aux=has_aux)
        value, _, *aux = program(zeros, *primals)
        linearized = _Linearized(program, None, primals, "linearize")
    else:
        which = (True,) * len(primals)
        value, residuals, *aux = _tangent_program(fn, "linearize", part="primal", has_aux=has_aux)(which, *primals)
        linear = _tangent_program(fn, "linearize", part="linear", has_aux=has_aux)
        linearized = _Linearized(linear, tuple(residuals), primals, "linearize")
    return (value, linearized, aux[0]) if has_aux else (value, linearized)


def jacfwd(fn, argnums=0, *, has_aux=False, static_argnums=(), static_argnames=()):
    """The Jacobian of ``fn`` by forward mode: one ``jvp`` per element of the argument(s)
    ``argnums``, batched (``vmap`` over the tangents' basis) into one program, shaped
    ``output.shape + argument.shape`` like ``jacrev``'s (``jacobian``), which is cheaper for few
    outputs and many inputs; ``jacfwd`` for many outputs and few inputs. ``has_aux`` and
    ``static_argnums`` / ``static_argnames`` as for ``jacobian``.

    >>> import numpy as np, neuronika
    >>> neuronika.jacfwd(lambda x: x[::-1] * x)(np.array([1.0, 2.0]))
    array([[2., 1.],
           [2., 1.]])
    """
    single, nums = _argnums(argnums, "jacfwd")

    def jac(*args, **kwargs):
        program = _jacobian_program(fn, "jacfwd", nums, has_aux, static_argnums, static_argnames)
        _check_argnums("jacfwd", nums, args, program.static_nums)
        for n in nums:
            x = args[n % len(args)]
            if not _trace.is_structured(x):
                _check_tangent("jacfwd", x, x, f"for argument {n % len(args)}")    # (its dtype)
        return _jacobian_result(program(*args, **kwargs), single, has_aux)

    return functools.wraps(fn, updated=())(jac)


#: reverse mode's Jacobian under JAX's name
jacrev = jacobian


# ---- batching ------------------------------------------------------------------------------

def vmap(fn=None, in_axes=0, out_axes=0, *, axis_size=None, chunk_size=None, in_dims=None, out_dims=None):
    """``fn`` of one example, applied to a batch (JAX's ``vmap``).

    ``in_axes``: the axis of each positional argument that holds the batch: an int (every
    argument, every array in it), or a tuple with one entry per argument, each an int, None
    (not batched: the same for every example) or a tree of them that matches the argument
    (a dict, list or tuple). Keyword arguments that hold arrays are batched along axis 0
    (others, flags and numbers, are passed as they are). ``out_axes``: where
    the batch goes in the results, an int, None (a result that is the same for every example)
    or a tree like ``in_axes``. ``axis_size``: the batch size when no argument is batched.
    ``chunk_size``: batch at most that many examples at a time (less memory, a little more
    time; PyTorch's). ``in_dims`` / ``out_dims``: PyTorch's names for ``in_axes`` / ``out_axes``.

    The function is traced once per signature on one example and rewritten, op by op, into
    the batch's program (no Python loop over examples). It composes: ``vmap(grad(loss),
    in_axes=(None, 0, 0))(params, xs, ys)`` gives per-example gradients, ``jit`` of that is
    one program, and ``grad`` differentiates through a ``vmap``. Python code that branches on
    a batched value raises ``BatchingError`` (use ``neuronika.numpy.where``).

    >>> import numpy as np, neuronika
    >>> dot = lambda a, b: (a * b).sum()
    >>> neuronika.vmap(dot)(np.ones((3, 2)), np.arange(6.0).reshape(3, 2))
    array([1., 5., 9.])
    >>> neuronika.vmap(dot, in_axes=(0, None))(np.eye(2), np.array([2.0, 3.0]))
    array([2., 3.])
    """
    if in_dims is not None:
        if in_axes != 0:
            raise TypeError("vmap: give in_axes or in_dims (PyTorch's name), not both")
        in_axes = in_dims
    if out_dims is not None:
        if out_axes != 0:
            raise TypeError("vmap: give out_axes or out_dims (PyTorch's name), not both")
        out_axes = out_dims
    if fn is None:
        return lambda f: vmap(f, in_axes, out_axes, axis_size=axis_size, chunk_size=chunk_size)
    if not callable(fn):
        raise TypeError(f"vmap: the function must be callable, got {type(fn).__name__}")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"vmap: chunk_size must be a positive int, got {chunk_size!r}")
    _batching.check_axes(in_axes, "in_axes")
    _batching.check_axes(out_axes, "out_axes")
    if axis_size is not None and (not isinstance(axis_size, int) or axis_size < 1):
        raise ValueError(f"vmap: axis_size must be a positive int, got {axis_size!r}")
    return _Vmapped(fn, in_axes, out_axes, axis_size, chunk_size)


class _Vmapped:
    def __init__(self, fn, in_axes, out_axes, axis_size, chunk_size):
        functools.update_wrapper(self, fn, updated=())
        self.fn, self.in_axes, self.out_axes, self.axis_size = fn, in_axes, out_axes, axis_size
        self.chunk_size = chunk_size

        # (one global, an object, read by the body: a trace's key reads the function's
        # globals, a function among them by its own globals in turn)
        def program(*args, **kwargs):
            return _vmap_parts.batched_call(fn, in_axes, out_axes, axis_size, args, kwargs, chunk_size)

        label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or type(fn).__name__
        program.__qualname__ = program.__name__ = f"vmap({label})"
        self._program = _Jit(program, None, False, False, "vmap")

    def __call__(self, *args, **kwargs):
        if modes.tracer is not None or _holds_var(args) or kwargs and _holds_var(kwargs):
            return _vmap_parts.batched_call(self.fn, self.in_axes, self.out_axes, self.axis_size, args, kwargs,
                                            self.chunk_size)
        return self._program(*args, **kwargs)

    def source(self, *args, **kwargs) -> str:
        """The generated program for these arguments."""
        return self._program.source(*args, **kwargs)


class _vmap_parts:
    """The body of a vmap's program (``batching.batched_call``)."""

    @staticmethod
    def batched_call(fn, in_axes, out_axes, axis_size, args, kwargs, chunk_size=None):
        return _batching.batched_call(fn, in_axes, out_axes, axis_size, args, kwargs, chunk_size)


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
