"""The benchmark harness and its NumPy floors stay correct (nothing here is timed)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchmarks  # noqa: E402
from benchmarks import run  # noqa: E402


@pytest.mark.parametrize("name", list(benchmarks.WORKLOADS))
def test_workload_floor_matches_neuronika(name):
    workload = benchmarks.WORKLOADS[name]()
    benchmarks.check(workload)          # raises GradientMismatch if the floor is not the same
    workload.neuronika_step()           # the timed iteration runs and leaves no gradient behind
    assert all(p._node.grad is None for p in workload.params)
    loss, grads = workload.floor()
    assert np.isfinite(loss) and len(grads) == len(workload.leaves)


def test_check_fails_loudly_on_a_wrong_floor():
    workload = benchmarks.WORKLOADS["tiny"]()
    right = workload.floor

    def wrong():
        loss, (gw, gb) = right()
        return loss, [gw, gb * 1.01]

    workload.floor = wrong
    with pytest.raises(benchmarks.GradientMismatch, match="tiny"):
        benchmarks.check(workload)


def test_table_format():
    result = {"neuronika": 40e-6, "floor": 10e-6}
    lines = benchmarks.format_table([("tiny", 3.0, result), ("chain", None, result)])
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0] == ["workload", "neuronika µs", "NumPy floor µs", "ratio", "target", "met?"]
    assert cells[2] == ["tiny", "40.0", "10.0", "4.00", "<= 3", "no"]
    assert cells[3] == ["chain", "40.0", "10.0", "4.00", "-", "-"]


def test_unknown_workload_is_rejected():
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])
