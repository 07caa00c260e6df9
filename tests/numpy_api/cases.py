"""How the neuronika.numpy functions are tested: one ``Case`` is one call.

A case is a function of a namespace and some values, ``call(np, *xs)``, written
once and run three ways:

- values: ``call(numpy, *arrays)`` (NumPy's own result) against
  ``call(neuronika.numpy, *variables)`` (dtype and values);
- dispatch: ``call(numpy, *variables)`` goes through NumPy's dispatch to
  neuronika and must build exactly the graph ``call(neuronika.numpy, ...)``
  builds (equal signatures);
- gradients: first and second order against float64 central differences
  (``neuronika.testing.check_grads``), for the inputs in ``wrt``.

Each family's test module lists its cases in ``CASES``; ``test_cases.py`` runs
the three checks on all of them, and ``test_table.py`` checks that every name in
``neuronika.numpy.__all__`` has a case with gradients or is listed as
non-differentiable with a reason.
"""
from __future__ import annotations

import numpy as np

import neuronika
import neuronika.numpy as nnp
from neuronika.graph import linearize
from neuronika.testing import check_grads


class Case:
    """One call of ``name``: ``call(namespace, *values)``.

    ``arrays``: the inputs (made float64 / complex128 variables). ``wrt``: the
    positions checked for gradients (default: all float and complex inputs;
    ``()`` for none). ``order``: 2 (first and second), 1, or 0 (values only).
    ``dispatch``: False where NumPy's own function cannot reach neuronika (say,
    it is not a NumPy function, or NumPy converts first).
    """

    def __init__(self, name, call, *arrays, wrt=None, order=2, rtol=1e-6, atol=1e-7, eps=1e-6,
                 value_rtol=1e-12, value_atol=1e-12, dispatch=True, imperative=True, id=None):
        self.name = name
        self.call = call
        self.arrays = [np.asarray(a) for a in arrays]
        if wrt is None:
            wrt = tuple(i for i, a in enumerate(self.arrays) if a.dtype.kind in "fc")
        self.wrt = tuple(wrt)
        self.order = order
        self.rtol, self.atol, self.eps = rtol, atol, eps
        self.value_rtol, self.value_atol = value_rtol, value_atol
        self.dispatch = dispatch
        self.imperative = imperative
        self.id = id or f"{name}-{'-'.join(str(a.shape) for a in self.arrays)}"

    def __repr__(self):
        return self.id

    def variables(self, differentiable=True):
        out = []
        for i, a in enumerate(self.arrays):
            v = neuronika.from_ndarray(a.copy())
            out.append(v.requires_grad() if differentiable and i in self.wrt else v)
        return out


def all_cases():
    """(module name, case) for every Case of every test module in this package."""
    import importlib
    import pkgutil
    package = importlib.import_module(__package__)
    found = []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if info.name.startswith("test_"):
            module = importlib.import_module(f"{__package__}.{info.name}")
            found.extend((info.name[len("test_"):], c) for c in getattr(module, "CASES", []))
    return found


def params(cases):
    """pytest parameters for a list of cases, named by their ids."""
    import pytest
    return [pytest.param(c, id=c.id) for c in cases]


def _as_array(value):
    if isinstance(value, neuronika.Var):
        return value.data
    return np.asarray(value)


def _flat(result):
    """A result as a list (functions like split return several values)."""
    if isinstance(result, (list, tuple)):
        out = []
        for r in result:
            out.extend(_flat(r))
        return out
    return [result]


def check_values(case):
    """neuronika.numpy's result equals NumPy's, in value and dtype."""
    want = _flat(case.call(np, *[a.copy() for a in case.arrays]))
    got = _flat(case.call(nnp, *case.variables()))
    assert len(got) == len(want), f"{case}: {len(got)} results, NumPy gives {len(want)}"
    for g, w in zip(got, want):
        if isinstance(w, (np.dtype, type, tuple, bool, int)) and not isinstance(w, np.ndarray):
            assert g == w, f"{case}: {g!r}, NumPy gives {w!r}"
            continue
        w = np.asarray(w)
        g_array = _as_array(g)
        assert g_array.shape == w.shape, f"{case}: shape {g_array.shape}, NumPy {w.shape}"
        assert g_array.dtype == w.dtype, f"{case}: dtype {g_array.dtype}, NumPy {w.dtype}"
        np.testing.assert_allclose(g_array, w, rtol=case.value_rtol, atol=case.value_atol,
                                   err_msg=f"{case}: values differ from NumPy's")


def signature(result):
    """The graph signatures behind a result (several for a tuple of results)."""
    return tuple(linearize(r._node)[2] if isinstance(r, neuronika.Var) else ("constant", repr(r))
                 for r in _flat(result))


def check_dispatch(case):
    """NumPy's own function on variables builds the graph neuronika.numpy builds (or, for a
    function of the shape and dtype only, gives the same constant)."""
    through_numpy = case.call(np, *case.variables())
    direct = case.call(nnp, *case.variables())
    if not any(isinstance(r, neuronika.Var) for r in _flat(direct)):
        for a, b in zip(_flat(through_numpy), _flat(direct)):
            np.testing.assert_array_equal(a, b, err_msg=f"{case}: NumPy's result differs")
        return
    assert any(isinstance(r, neuronika.Var) for r in _flat(through_numpy)), \
        f"{case}: NumPy's function on variables did not reach neuronika"
    assert signature(through_numpy) == signature(direct), f"{case}: the graphs differ"


def check_gradients(case):
    """First- (and second-) order gradients against central finite differences."""
    if not case.wrt or case.order == 0:
        return

    def fn(*xs):
        parts = [r for r in _flat(case.call(nnp, *xs)) if isinstance(r, neuronika.Var)]
        parts = [r for r in parts if r.dtype.kind in "fc"]
        if len(parts) == 1:
            return parts[0]
        return nnp.concatenate([nnp.ravel(p) for p in parts])

    check_grads(fn, *case.arrays, order=case.order, wrt=case.wrt, rtol=case.rtol, atol=case.atol,
                eps=case.eps, imperative=case.imperative)


# ---- inputs -----------------------------------------------------------------------------------

def rng(seed=0):
    return np.random.default_rng(seed)


def uniform(shape, lo=-2.0, hi=2.0, seed=0):
    return rng(seed).uniform(lo, hi, size=shape)


def away(shape, lo=0.3, hi=2.0, seed=0):
    """|values| in [lo, hi) with random signs: away from a kink or pole at 0."""
    r = rng(seed)
    return np.where(r.random(shape) < 0.5, -1.0, 1.0) * r.uniform(lo, hi, size=shape)


def distinct(shape, seed=0, gap=0.3):
    """Values pairwise at least ``gap`` apart (no ties for sort, max, median)."""
    n = int(np.prod(shape, dtype=np.int64))
    return rng(seed).permutation((np.arange(n) - n / 2.0) * gap).reshape(shape)


def spd(n, batch=(), seed=0):
    """Symmetric positive definite matrices, well conditioned."""
    a = rng(seed).standard_normal(batch + (n, n))
    return a @ np.swapaxes(a, -1, -2) + n * np.eye(n)


#: Shapes for unary elementwise functions: scalar, vector, matrix, 3-d, zero-size.
UNARY_SHAPES = [(), (3,), (2, 3), (2, 1, 3), (0, 3)]
#: Pairs of shapes that broadcast.
BINARY_SHAPES = [((2, 3), (2, 3)), ((2, 3), (3,)), ((3,), (2, 3)), ((2, 1), (1, 3)), ((), (2, 3)),
                 ((2, 3), ()), ((0, 3), (3,))]
