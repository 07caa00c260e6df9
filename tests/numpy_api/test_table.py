"""The table: every function neuronika.numpy implements is tested with gradients,
or is listed as having none, with the reason; every catalogue op is reached by
some tested call.
"""
from __future__ import annotations

import importlib
import pkgutil

import numpy as np

import neuronika
import neuronika.numpy as nnp
from neuronika.graph import walk
from neuronika.ops import OPS

from . import cases as _cases

#: Ops that no neuronika.numpy call builds directly: adjoints kept as ops so that
#: gradients can be differentiated again, and the layers' own ops.
INTERNAL_OPS = {
    "scatter": "the adjoint of indexing",
    "pad_fold": "the adjoint of reflect / edge padding",
    "log_where_nonzero": "the exponent's adjoint of power",
    "conv": "nn.functional.conv", "conv_transpose": "the adjoint of conv",
    "conv_weight_grad": "the adjoint of conv", "max_pool": "nn max pooling",
    "max_pool_grad": "the adjoint of max_pool", "max_pool_gather": "the adjoint of max_pool_grad",
    "avg_pool": "nn average pooling", "avg_pool_grad": "the adjoint of avg_pool",
    "custom_vjp": "neuronika.custom_vjp", "dropout": "v.dropout / nn.Dropout",
    "mm_t": "v.mm_t and nn.Linear",
}


def all_cases():
    """Every Case of every test module in this package."""
    found = []
    package = importlib.import_module(__package__)
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("test_") and info.name != "test_table":
            module = importlib.import_module(f"{__package__}.{info.name}")
            found.extend(getattr(module, "CASES", []))
    return found


def test_every_function_is_tested_or_listed_as_non_differentiable():
    with_gradients = {c.name for c in all_cases() if c.wrt and c.order >= 1}
    missing = [name for name in nnp.__all__
               if name not in with_gradients and name not in nnp.NON_DIFFERENTIABLE]
    assert not missing, f"no gradient test and not listed as non-differentiable: {missing}"
    both = sorted(with_gradients & set(nnp.NON_DIFFERENTIABLE))
    assert not both, f"listed as non-differentiable but tested with gradients: {both}"


def test_every_listed_reason_is_given():
    for name, why in nnp.NON_DIFFERENTIABLE.items():
        assert isinstance(why, str) and why, name


def test_every_function_has_a_case():
    named = {c.name for c in all_cases()}
    missing = [name for name in nnp.__all__ if name not in named]
    assert not missing, f"no test case calls: {missing}"


def test_every_catalogue_op_is_reached():
    reached = set()
    for case in all_cases():
        for result in _cases._flat(case.call(nnp, *case.variables())):
            if isinstance(result, neuronika.Var):
                reached |= {n.op.name for n in walk(result._node) if n.op is not None}
    missing = sorted(set(OPS) - reached - set(INTERNAL_OPS))
    assert not missing, f"catalogue ops no test case builds: {missing}"


def test_public_functions_have_docstrings():
    for name in nnp.__all__:
        fn = getattr(nnp, name)
        assert fn.__doc__ and fn.__doc__.strip(), name
