"""Every Case of tests/numpy_api run over array-api-strict arrays: the generated code uses only
the array-API standard. Forward values and gradients must equal the NumPy run's (the same
templates on the same numbers: to a tight tolerance). An op that needs more than the standard
refuses when it is built (``backend.NamespaceError``); those ops are exactly ``NUMPY_ONLY``."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika.ops import OPS

from tests.numpy_api.cases import all_cases

xs = pytest.importorskip("array_api_strict")

#: The ops that run on NumPy (and CuPy) only, and why (see each op's ``needs``).
NUMPY_ONLY = {
    # numpy.linalg functions the standard's linalg extension does not have
    "eig", "eigvals", "lstsq",
}


#: Case names (family:name) that run under array-api-strict only with floating inputs: NumPy
#: gives float16 for int8 (arctan2, hypot, sqrt of int8, ...), which the standard does not have,
#: or computes on booleans or integers where the standard refuses them (floor of booleans, the
#: integer reciprocal, sorting booleans for a median).
FLOAT_ONLY = {
    'reductions:median', 'ufuncs:arctan2', 'ufuncs:copysign', 'ufuncs:floor', 'ufuncs:hypot',
    'ufuncs:logaddexp', 'ufuncs:logaddexp2', 'ufuncs:reciprocal', 'ufuncs:sqrt',
}

#: Case names not run under array-api-strict: cases that add a NumPy array to a variable of
#: another library (mixing libraries raises ``NamespaceError`` by design), and the NUMPY_ONLY
#: ops, which refuse by name.
NOT_YET = {
    'ufuncs:nan_to_num',
    'linalg:linalg.eig', 'linalg:linalg.eigvals', 'linalg:linalg.lstsq',
}

#: Cases whose generic kernel computes NumPy's function by another formula: equal to a few
#: units in the last place (NumPy's cbrtf is not correctly rounded either).
CLOSE = {'ufuncs:cbrt': 1e-6}


def test_the_numpy_only_ops_are_the_documented_ones():
    refused = {name for name, op in OPS.items() if "generic" not in op.families}
    assert refused == NUMPY_ONLY
    for name in refused:
        assert OPS[name].needs, f"{name} does not say why it is NumPy only"


def _flat(result):
    if isinstance(result, (list, tuple)):
        return [r for part in result for r in _flat(part)]
    return [result]


def _run(case, make):
    """Values and gradients of ``case`` with leaves made by ``make`` (an array -> array)."""
    leaves = []
    for i, a in enumerate(case.arrays):
        v = neuronika.from_ndarray(make(a.copy()))
        leaves.append(v.requires_grad() if i in case.wrt and case.order else v)
    results = _flat(case.call(nnp, *leaves))
    values = [neuronika.backend.to_numpy(r.data) if isinstance(r, neuronika.Var) else r for r in results]
    grads = []
    parts = [r for r in results if isinstance(r, neuronika.VarDiff) and r.dtype.kind in "fc"]
    if len(parts) == 1:
        out = parts[0]
        seed = np.random.default_rng(0).standard_normal(out.shape).astype(out.dtype) if out.shape else 1.0
        out.backward(seed)
        grads = [neuronika.backend.to_numpy(leaves[i].grad) for i in case.wrt]
    return values, grads, leaves


def _runs(family, case):
    key = f"{family}:{case.name}"
    if key in NOT_YET:
        return False
    return key not in FLOAT_ONLY or all(a.dtype.kind in "fc" for a in case.arrays)


def _cases():
    return [pytest.param(case, id=f"{family}:{case.id}") for family, case in all_cases() if _runs(family, case)]


def test_a_large_part_runs():
    """The named part of the op suite under the standard (a floor: it may only grow)."""
    assert len(_cases()) >= 1750
    families = {family for family, case in all_cases() if _runs(family, case)}
    assert {"ufuncs", "reductions", "linalg", "shape", "special", "complex"} <= families


def _cases_and_tolerances():
    return [pytest.param(case, CLOSE.get(f"{family}:{case.name}", 1e-12), id=f"{family}:{case.id}")
            for family, case in all_cases() if _runs(family, case)]


@pytest.mark.parametrize("case, rtol", _cases_and_tolerances())
def test_case_under_array_api_strict(case, rtol):
    want, want_grads, _ = _run(case, lambda a: a)
    got, got_grads, leaves = _run(case, xs.asarray)
    assert len(got) == len(want), f"{case}: {len(got)} results, NumPy gives {len(want)}"
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray) or isinstance(g, np.ndarray):
            np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-14, err_msg=f"{case}: values differ")
    assert len(got_grads) == len(want_grads)
    for i, (g, w) in zip(case.wrt, zip(got_grads, want_grads)):
        assert isinstance(leaves[i].grad, xs._array_object.Array), f"{case}: gradient {i} left the namespace"
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-14, err_msg=f"{case}: gradient {i} differs")


def _second_order(case, make):
    """The Hessian-vector product of sum(<output, seed>) over the case's real outputs, with
    respect to its real inputs, through ``grad`` of ``grad`` (symbolic gradients), on arrays
    made by ``make``; None when the case has no real output."""
    arrays = [neuronika.from_ndarray(make(a.copy())) for a in case.arrays]
    rng = np.random.default_rng(1)
    directions = [make(rng.standard_normal(case.arrays[i].shape)) for i in case.wrt]
    seeds = []

    def value(*ws):
        args = list(arrays)
        for i, w in zip(case.wrt, ws):
            args[i] = w
        outs = [r for r in _flat(case.call(nnp, *args)) if isinstance(r, neuronika.Var) and r.dtype.kind == "f"]
        if not outs:
            raise _NoRealOutput
        if not seeds:
            seed = np.random.default_rng(0)
            seeds.extend(make(seed.standard_normal(out.shape)) for out in outs)
        return sum(nnp.sum(out * s) for out, s in zip(outs, seeds))

    nums = tuple(range(len(case.wrt)))
    first = neuronika.grad(value, argnums=nums)

    def along(*ws):
        return sum(nnp.sum(g * v) for g, v in zip(first(*ws), directions))
    try:
        hv = neuronika.grad(along, argnums=nums)(*[arrays[i].data for i in case.wrt])
    except _NoRealOutput:
        return None
    return [neuronika.backend.to_numpy(h) if not isinstance(h, np.ndarray) else h for h in hv], hv


class _NoRealOutput(Exception):
    pass


def _second_order_cases():
    return [pytest.param(case, CLOSE.get(f"{family}:{case.name}", 1e-10), id=f"{family}:{case.id}")
            for family, case in all_cases()
            if _runs(family, case) and case.order == 2 and case.wrt
            and all(case.arrays[i].dtype.kind == "f" for i in case.wrt)]


@pytest.mark.parametrize("case, rtol", _second_order_cases())
def test_second_order_under_array_api_strict(case, rtol):
    """Second derivatives build their gradient graphs from the same templates: the constants
    those make (identity matrices, masks) are made in the arrays' library too."""
    want = _second_order(case, lambda a: a)
    assert want is not None, f"{case}: no real output to differentiate twice"
    got = _second_order(case, xs.asarray)
    for h in got[1]:
        assert isinstance(h, xs._array_object.Array), f"{case}: a second derivative left the namespace"
    for i, (g, w) in enumerate(zip(got[0], want[0])):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-12, err_msg=f"{case}: d2 along input {i}")
