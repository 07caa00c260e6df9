"""The examples run and reach what they promise."""
import re
import runpy
import sys
from pathlib import Path

import pytest
from neuronika.testing import oracle

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, capsys):
    sys.modules.pop("__main__example__", None)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def test_quickstart_runs_and_the_loss_falls(capsys):
    out = run_example("quickstart.py", capsys)
    losses = [float(v) for v in re.findall(r"step +\d+ +loss ([0-9.]+)", out)]
    assert len(losses) >= 5 and losses[-1] < 0.01 * losses[0]
    assert "def backward(seed" in out


def test_mlp_digits_reaches_95_percent(capsys):
    oracle("sklearn")
    out = run_example("mlp_digits.py", capsys)
    accuracy = float(re.search(r"final test accuracy ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95


def test_cnn_digits_reaches_97_percent(capsys):
    oracle("sklearn")
    out = run_example("cnn_digits.py", capsys)
    accuracy = float(re.search(r"final test accuracy ([0-9.]+)", out).group(1))
    assert accuracy >= 0.97


def test_tour_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    notebook = nbformat.read(EXAMPLES / "tour.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "test accuracy" in outputs and "def forward" in outputs


def test_regression_csv_beats_predicting_the_mean(capsys):
    out = run_example("regression_csv.py", capsys)
    final = re.search(r"final validation RMSE ([0-9.]+)k \(predicting the mean: ([0-9.]+)k\)", out)
    assert float(final.group(1)) < 0.25 * float(final.group(2))


def test_numpy_gp_regression_fits_the_hyperparameters(capsys):
    out = run_example("numpy_gp_regression.py", capsys)
    fitted = re.search(r"fitted length scale ([0-9.]+) \(true ([0-9.]+)\)", out)
    assert abs(float(fitted.group(1)) / float(fitted.group(2)) - 1) < 0.2
    final = re.search(r"held-out RMSE ([0-9.]+) \(predicting the mean: ([0-9.]+)\)", out)
    assert float(final.group(1)) < 0.5 * float(final.group(2))


def test_numpy_digits_reaches_95_percent(capsys):
    oracle("sklearn")
    out = run_example("numpy_digits.py", capsys)
    accuracy = float(re.search(r"final test accuracy ([0-9.]+)", out).group(1))
    assert accuracy >= 0.95


@pytest.mark.parametrize("name", ["numpy_gp_regression.py", "numpy_digits.py"])
def test_numpy_examples_use_only_neuronika_numpy_and_grad(name):
    import ast
    tree = ast.parse((EXAMPLES / name).read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used |= {a.name for a in node.names if a.name.startswith("neuronika")}
        elif isinstance(node, ast.ImportFrom) and node.module.startswith("neuronika"):
            used |= {f"{node.module}.{a.name}" for a in node.names}
    assert used == {"neuronika.numpy", "neuronika.grad"}
