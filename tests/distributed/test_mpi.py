"""Data-parallel training across processes: each test starts mpiexec itself (skipped, saying
why, where mpi4py or mpiexec is missing). The checks live in the worker scripts, many per
launch, so that the directory stays fast on 2 cores."""
import os
import re
import time

import pytest

from neuronika.testing import oracle

from ._launch import HERE, ROOT, launch


def _passed(result, n):
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"mpiexec exited with {result.returncode}:\n{output}"
    for rank in range(n):
        assert f"[rank {rank}] ALL-OK" in result.stdout, output
    return result.stdout


@pytest.mark.parametrize("n", [2, 3])
def test_data_parallel_training_equals_single_process_training(n, tmp_path):
    out = _passed(launch(n, HERE / "worker_train.py", tmp_path), n)
    # what the worker checked, on every rank: SGD and Adam (one bucket and one per parameter),
    # the functional path, no_sync, unused parameters, buffers, collectives, the sampler,
    # save_on_main + nn.load, and the mismatch error
    assert len(re.findall(r"\] OK ", out)) == 11 * n
    assert out.count("parameter '0.weight' has shape (8, 5) on rank 0 but (9, 5) on rank 1") == n


def test_an_exception_on_one_rank_stops_every_rank(tmp_path):
    start = time.monotonic()
    result = launch(3, HERE / "worker_crash.py", tmp_path, timeout=30)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert "RuntimeError: rank 1 fails on purpose" in result.stderr
    assert "aborting every rank" in result.stderr
    assert "UNREACHABLE" not in result.stdout
    assert elapsed < 30
    pids = [int((tmp_path / f"pid{r}").read_text()) for r in range(3)]
    deadline = time.monotonic() + 5
    for pid in pids:
        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, f"process {pid} still runs after mpiexec returned"
            time.sleep(0.05)


def test_distributed_digits_example_on_two_processes():
    oracle("sklearn")
    result = launch(2, ROOT / "examples" / "distributed_digits.py", "--epochs", "10", "--plot", "",
                    timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    final = re.search(r"final test accuracy ([0-9.]+) .* on 2 process", result.stdout)
    assert final and float(final.group(1)) >= 0.95, result.stdout
    assert result.stdout.count("final test accuracy") == 1          # rank 0 prints


def test_functional_example_on_two_processes_follows_one_process():
    oracle("sklearn")
    runs = []
    for n in (1, 2):
        result = launch(n, ROOT / "examples" / "distributed_numpy_digits.py", "--epochs", "10", "--plot", "",
                        timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        runs.append(re.findall(r"train loss ([0-9.]+)  test accuracy ([0-9.]+)", result.stdout))
    # the same global batches and the same averaged gradients: the same training, to rounding
    (loss1, accuracy1), (loss2, accuracy2) = runs[0][-1], runs[1][-1]
    assert float(accuracy2) >= 0.95 and accuracy1 == accuracy2
    assert abs(float(loss1) - float(loss2)) < 1e-3
