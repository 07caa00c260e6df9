"""benchmarks/gpu_check.py: says so when there is no GPU; its comparison, run against
array-api-strict in place of a GPU, passes the MLP and names the op the CNN cannot run."""
import importlib.util
import re

import pytest

from benchmarks import gpu_check


def test_without_cupy_it_says_so_and_exits_zero(capsys):
    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here: the GPU path runs instead")
    assert gpu_check.main([]) == 0
    assert "no GPU to check: CuPy is not installed" in capsys.readouterr().out


def test_the_comparison_against_another_namespace(capsys):
    pytest.importorskip("array_api_strict")
    assert gpu_check.main(["--against", "array_api_strict"]) == 1       # the CNN is refused
    out = capsys.readouterr().out
    assert re.search(r"mlp: losses .* largest relative difference in losses and gradients \S+: ok;", out)
    assert "cnn: the array_api_strict run failed: NamespaceError: conv: not available" in out
