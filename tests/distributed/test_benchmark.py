"""benchmarks/distributed.py runs and prints its table (nothing here is timed)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks import distributed as bench  # noqa: E402

from ._launch import mpiexec  # noqa: E402


def test_table_format():
    results = {("digits", "1"): {"plain": [0.002], "ddp1": [0.0021], "ddp2": [0.0012], "allreduce": [1e-4]}}
    lines = bench.table(results)
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0][:4] == ["workload", "BLAS threads", "global batch", "plain, 1 process (ms/step)"]
    assert cells[2] == ["digits", "1", "32", "2.000", "2.100", "1.200", "0.100", "1.67x", "83%"]


def test_quick_run_prints_the_table(capsys):
    mpiexec()                                   # skips where MPI is not installed
    assert bench.main(["--quick", "--only", "digits", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    row = [line for line in out.splitlines() if line.startswith("| digits")]
    assert len(row) == 1 and row[0].rstrip().endswith("% |")
