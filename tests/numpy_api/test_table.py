"""The table: every function neuronika.numpy implements is tested with gradients,
or is listed as having none, with the reason; every catalogue op is reached by
some tested call.
"""
from __future__ import annotations

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
    "power_exponent": "the base's adjoint of power",
    "conv": "nn.functional.conv", "conv_transpose": "the adjoint of conv",
    "conv_weight_grad": "the adjoint of conv", "max_pool": "nn max pooling",
    "max_pool_grad": "the adjoint of max_pool", "max_pool_gather": "the adjoint of max_pool_grad",
    "avg_pool": "nn average pooling", "avg_pool_grad": "the adjoint of avg_pool",
    "custom_vjp": "neuronika.custom_vjp", "dropout": "v.dropout / nn.Dropout",
    "scan": "neuronika.scan", "pack": "neuronika.scan", "part": "neuronika.scan",
    "call": "a grad inside neuronika.jit (tests/test_jit.py)",
    "checkpoint": "neuronika.checkpoint (tests/test_checkpoint.py)",
    "random": "neuronika.rand / randn inside a trace (tests/test_jit.py, tests/test_vmap.py)",
    "cotangent": "the adjoint of a scan", "cotangent_part": "the adjoint of a scan",
    "mm_t": "v.mm_t and nn.Linear",
    "prod_others": "the adjoint of prod", "prod_others_grad": "the adjoint of prod_others",
    "cumprod_grad": "the adjoint of cumprod",
    "unpermute_along_axis": "the adjoint of sort (permute_along_axis)",
    "check_class_index": "nn.functional.nll_loss / cross_entropy (tests/nn/test_loss.py)",
    "check_probability": "nn.functional.bce_loss (tests/nn/test_loss.py)",
    "softmax_cross_entropy": "nn.functional.cross_entropy with class indices (tests/nn/test_fused_cross_entropy.py)",
    "class_nll": "nn.functional.nll_loss without class weights (tests/nn/test_fused_cross_entropy.py)",
    "softmax_cross_entropy_grad": "softmax_cross_entropy's adjoint as a graph, for second order "
                                  "(tests/test_lean_symbolic.py)",
    "expr": "an elementwise adjoint as one node in symbolic gradients (tests/test_symbolic_expr.py)",
    "normalize": "nn.functional.layer_norm, nn.LayerNorm (tests/nn/test_fused_ops.py)",
    "batch_norm": "BatchNorm1d / BatchNorm2d in training (tests/nn/test_fused_ops.py)",
    "gelu": "nn.functional.gelu (tests/nn/test_fused_ops.py)",
    "erf": "gelu's second derivative (tests/nn/test_fused_ops.py)",
    "bce_with_logits": "nn.functional.bce_with_logits_loss (tests/nn/test_fused_ops.py)",
}


#: Every public name: neuronika.numpy's, and its linalg submodule's as "linalg.<name>".
PUBLIC = list(nnp.__all__) + [f"linalg.{name}" for name in nnp.linalg.__all__]


def all_cases():
    return [case for _, case in _cases.all_cases()]


def test_every_function_is_tested_or_listed_as_non_differentiable():
    with_gradients = {c.name for c in all_cases() if c.wrt and c.order >= 1}
    missing = [name for name in PUBLIC
               if name not in with_gradients and name not in nnp.NON_DIFFERENTIABLE]
    assert not missing, f"no gradient test and not listed as non-differentiable: {missing}"
    both = sorted(with_gradients & set(nnp.NON_DIFFERENTIABLE))
    assert not both, f"listed as non-differentiable but tested with gradients: {both}"


def test_every_listed_reason_is_given():
    for name, why in nnp.NON_DIFFERENTIABLE.items():
        assert isinstance(why, str) and why, name


def test_every_function_has_a_case():
    named = {c.name for c in all_cases()}
    missing = [name for name in PUBLIC if name not in named]
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
    for name in PUBLIC:
        fn = getattr(nnp.linalg, name[7:]) if name.startswith("linalg.") else getattr(nnp, name)
        assert fn.__doc__ and fn.__doc__.strip(), name
def test_methods_listed_in_the_issue_exist():
    v = neuronika.from_ndarray(np.ones((2, 3)))
    for name in ("sum", "mean", "prod", "std", "var", "max", "min", "argmax", "argmin", "cumsum",
                 "clip", "round", "ravel", "flatten", "reshape", "transpose", "swapaxes", "squeeze",
                 "repeat", "astype", "copy", "conj", "real", "imag", "T", "ndim", "size", "dtype",
                 "mm", "ln", "vv", "mv", "vm", "mm_t", "t", "at"):
        assert hasattr(v, name), name
