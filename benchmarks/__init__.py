"""neuronika's benchmarks: workloads timed against a hand-written NumPy floor.

Run ``python -m benchmarks`` (or ``python benchmarks/run.py``) from the repository
root; ``--help`` lists the options. Everything lives in :mod:`benchmarks.run`.
"""
from .run import WORKLOADS, GradientMismatch, Workload, check, format_table, main, measure, profile

__all__ = ["WORKLOADS", "GradientMismatch", "Workload", "check", "format_table", "main", "measure",
           "profile"]
