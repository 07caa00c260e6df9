"""Every Case of tests/numpy_api run over array-api-strict arrays: the generated code uses only
the array-API standard. Forward values and gradients must equal the NumPy run's (the same
templates on the same numbers: to a tight tolerance). An op that needs more than the standard
refuses when it is built (``backend.NamespaceError``); those ops are exactly ``NUMPY_ONLY``."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika.backend import NamespaceError
from neuronika.ops import OPS

from tests.numpy_api.cases import all_cases

xs = pytest.importorskip("array_api_strict")

#: The ops that run on NumPy (and CuPy) only, and why (see each op's ``needs``).
NUMPY_ONLY = {
    # NumPy functions the standard does not have
    "exp2", "cbrt", "fabs", "deg2rad", "rad2deg", "sinc", "rint", "round", "fmod", "logaddexp2",
    "heaviside", "fmax", "fmin",
    # the exponent's gradient adds a boolean (keeps a Python float exponent weak)
    "power",
    # small contractions are written as xp.einsum
    "einsum",
    # gradients that are NumPy kernels
    "prod", "prod_others", "prod_others_grad", "cumprod", "cumprod_grad",
    # NumPy copies (xp.array) and ufunc.at
    "index_update",
    # not ported to the standard yet (decompositions, sorting): refused by name
    "cholesky", "det", "eig", "eigh", "eigvals", "eigvalsh",
    "logabsdet", "lstsq", "pinv", "qr", "slogdet_sign", "svd", "svdvals", "argsort", "argpartition",
    "partition_order", "permute_along_axis", "unpermute_along_axis",
}


#: Case names (family:name) that run under array-api-strict only with floating inputs: NumPy
#: promotes integers and booleans there (exp of ints, sum of booleans), the standard refuses.
FLOAT_ONLY = {
    'reductions:mean', 'reductions:nanmean', 'reductions:nansum', 'reductions:sum',
    'ufuncs:arcsinh', 'ufuncs:arctan', 'ufuncs:arctan2', 'ufuncs:copysign', 'ufuncs:divide',
    'ufuncs:exp', 'ufuncs:expm1', 'ufuncs:floor', 'ufuncs:hypot', 'ufuncs:log', 'ufuncs:log10',
    'ufuncs:log1p', 'ufuncs:log2', 'ufuncs:logaddexp', 'ufuncs:reciprocal', 'ufuncs:sin',
    'ufuncs:sinh', 'ufuncs:sqrt', 'ufuncs:tan'
}

#: Case names not run under array-api-strict yet: neuronika.numpy functions that build NumPy
#: constants or call NumPy-only functions above the catalogue (atleast_*, r_, linspace, pad, ...),
#: templates not yet in the standard's forms (abs of complex, real/imag, flip, moveaxis,
#: getitem with ints, most of linalg's decompositions, sorting), or integer/boolean
#: promotion in their own code. Growing the standard part means removing names here.
NOT_YET = {
    'complex:abs', 'complex:absolute', 'complex:angle', 'complex:concatenate', 'complex:conj',
    'complex:conjugate', 'complex:getitem', 'complex:imag', 'complex:positive', 'complex:real',
    'complex:real_if_close', 'complex:stack', 'indexing:at', 'indexing:choose', 'indexing:compress',
    'indexing:getitem', 'indexing:select', 'indexing:take', 'linalg:cross', 'linalg:einsum',
    'linalg:inner', 'linalg:linalg.cholesky', 'linalg:linalg.cond', 'linalg:linalg.cross',
    'linalg:linalg.det', 'linalg:linalg.eig', 'linalg:linalg.eigh', 'linalg:linalg.eigvals',
    'linalg:linalg.eigvalsh', 'linalg:linalg.inv', 'linalg:linalg.lstsq', 'linalg:linalg.matmul',
    'linalg:linalg.matrix_power', 'linalg:linalg.multi_dot', 'linalg:linalg.norm',
    'linalg:linalg.pinv', 'linalg:linalg.qr', 'linalg:linalg.slogdet', 'linalg:linalg.solve',
    'linalg:linalg.svd', 'linalg:linalg.svdvals', 'linalg:linalg.tensordot', 'linalg:linalg.vecdot',
    'linalg:tensordot', 'reductions:allclose', 'reductions:amax', 'reductions:amin',
    'reductions:argpartition', 'reductions:argsort', 'reductions:array_equal', 'reductions:average',
    'reductions:cumsum', 'reductions:diff', 'reductions:gradient', 'reductions:max',
    'reductions:median', 'reductions:partition', 'reductions:percentile', 'reductions:quantile',
    'reductions:sort', 'reductions:std', 'reductions:var', 'shape:append', 'shape:array',
    'shape:array_split', 'shape:asarray', 'shape:atleast_1d', 'shape:atleast_2d',
    'shape:atleast_3d', 'shape:c_', 'shape:copy', 'shape:delete', 'shape:flip', 'shape:fliplr',
    'shape:flipud', 'shape:hsplit', 'shape:hstack', 'shape:insert', 'shape:linspace',
    'shape:matrix_transpose', 'shape:moveaxis', 'shape:pad', 'shape:r_', 'shape:repeat',
    'shape:roll', 'shape:rollaxis', 'shape:rot90', 'shape:split', 'shape:swapaxes', 'shape:tile',
    'shape:tril', 'shape:triu', 'shape:unstack', 'shape:vsplit', 'shape:vstack', 'special:expit',
    'ufuncs:abs', 'ufuncs:absolute', 'ufuncs:clip', 'ufuncs:fix', 'ufuncs:floor_divide',
    'ufuncs:logical_and', 'ufuncs:logical_not', 'ufuncs:logical_or', 'ufuncs:logical_xor',
    'ufuncs:multiply', 'ufuncs:nan_to_num', 'ufuncs:positive', 'ufuncs:remainder',
    'ufuncs:true_divide', 'ufuncs:float_power', 'linalg:linalg.matrix_norm'
}


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
    assert len(_cases()) >= 700
    families = {family for family, case in all_cases() if _runs(family, case)}
    assert {"ufuncs", "reductions", "linalg", "shape", "special", "complex"} <= families


@pytest.mark.parametrize("case", _cases())
def test_case_under_array_api_strict(case):
    want, want_grads, _ = _run(case, lambda a: a)
    try:
        got, got_grads, leaves = _run(case, xs.asarray)
    except NamespaceError as error:
        op = getattr(error, "op", None)
        if op in NUMPY_ONLY:
            pytest.skip(f"{op} is NumPy only")
        raise
    for g, w in zip(got, want):
        if isinstance(w, np.ndarray) or isinstance(g, np.ndarray):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=f"{case}: values differ")
    assert len(got_grads) == len(want_grads)
    for i, (g, w) in zip(case.wrt, zip(got_grads, want_grads)):
        assert isinstance(leaves[i].grad, xs._array_object.Array), f"{case}: gradient {i} left the namespace"
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14, err_msg=f"{case}: gradient {i} differs")
