"""benchmarks/gpu_check.py: says so when there is no GPU; its comparison, run against
array-api-strict in place of a GPU, passes the MLP and the CNN."""
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
    assert gpu_check.main(["--against", "array_api_strict"]) == 0
    out = capsys.readouterr().out
    for name in ("mlp", "cnn", "functional"):
        assert re.search(name + r": losses .* largest relative difference in losses and gradients \S+: ok;", out)


def test_the_comparison_on_another_device_of_that_namespace(capsys):
    pytest.importorskip("array_api_strict")
    assert gpu_check.main(["--against", "array_api_strict", "--device", "device1"]) == 0
    out = capsys.readouterr().out
    assert out.count("(array_api_strict on device1) vs") == 3 and "DIFFERENT" not in out
