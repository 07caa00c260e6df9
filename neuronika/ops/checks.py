"""Ops that check values where the program runs: class indices of a loss's target, the
probabilities of a binary cross-entropy. Each forward is a kernel (``ops/kernels.py``)
that returns its input unchanged or raises, so a compiled program checks the values of
every call, not only those it was traced or built with."""
from __future__ import annotations

from . import batching, declare

CHECK_CLASS_INDEX = declare(
    "check_class_index", ("t",), "check_class_index(t, classes, ignore_index, loss)", {},
    attrs=("classes", "ignore_index", "loss"), n_differentiable=0,
    batch=batching.stacked, doc="t itself, once every entry is a class index in [0, classes) or equals ignore_index "
        "(IndexError naming the loss otherwise)")

CHECK_PROBABILITY = declare(
    "check_probability", ("x",), "check_probability(x, loss)", {"x": "dy"},
    attrs=("loss",), elementwise=True,
    doc="x itself, once every entry is in [0, 1] (ValueError naming the loss otherwise)")

__all__ = ["CHECK_CLASS_INDEX", "CHECK_PROBABILITY"]
