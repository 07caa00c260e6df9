"""neuronika's benchmarks: workloads timed against a hand-written NumPy floor, through
neuronika's imperative and functional paths and, when installed, HIPS autograd, PyTorch
and JAX.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the repository
root; ``--help`` lists the options. Everything lives in :mod:`benchmarks.run`, the
competitors in :mod:`benchmarks.competitors`.
"""
from .run import (PATHS, WORKLOADS, FasterThan, GradientMismatch, Path, Ratio, Workload, check,
                  format_table, main, measure, profile, table_rows)

__all__ = ["PATHS", "WORKLOADS", "FasterThan", "GradientMismatch", "Path", "Ratio", "Workload",
           "check", "format_table", "main", "measure", "profile", "table_rows"]
