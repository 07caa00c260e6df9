"""The examples run and reach what they promise."""
import re
import runpy
import sys
from pathlib import Path

import pytest
from neuronika.testing import oracle

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name, capsys, *args):
    """Run examples/``name`` as a script with the command-line ``args`` (no training curve
    unless ``--plot`` is given); its printed output."""
    sys.modules.pop("__main__example__", None)
    if "--plot" not in args:
        args = ("--plot", "") + args
    argv, sys.argv = sys.argv, [name, *args]
    sys.path.insert(0, str(EXAMPLES))           # as ``python examples/<name>`` has it: ``_plot``
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.argv = argv
        sys.path.remove(str(EXAMPLES))
    return capsys.readouterr().out


def final_accuracy(out):
    """The accuracy an example prints last ("final test accuracy 0.97")."""
    return float(re.search(r"final test accuracy ([0-9.]+)", out).group(1))


def test_quickstart_runs_and_the_loss_falls(capsys):
    out = run_example("quickstart.py", capsys)
    losses = [float(v) for v in re.findall(r"step +\d+ +loss ([0-9.]+)", out)]
    assert len(losses) >= 5 and losses[-1] < 0.01 * losses[0]
    assert "def backward(seed" in out


def test_mlp_digits_reaches_95_percent(capsys):
    oracle("sklearn")
    out = run_example("mlp_digits.py", capsys)
    accuracy = final_accuracy(out)
    assert accuracy >= 0.95


def test_cnn_digits_reaches_97_percent(capsys):
    oracle("sklearn")
    out = run_example("cnn_digits.py", capsys)
    accuracy = final_accuracy(out)
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
    accuracy = final_accuracy(out)
    assert accuracy >= 0.95


def _example_module(name):
    """The functions of examples/``name`` (a script with a ``main()``), without running it."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        return runpy.run_path(str(EXAMPLES / name), run_name=name[:-3])
    finally:
        sys.path.remove(str(EXAMPLES))


def test_dp_sgd_digits_per_example_gradients_are_a_loop_of_grad():
    import numpy as np
    import neuronika
    oracle("sklearn")
    from sklearn.datasets import load_digits
    dp = _example_module("dp_sgd_digits.py")
    rng = np.random.default_rng(3)
    params = dp["init"]([64, 128, 10], rng)
    params = {k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    digits = load_digits()
    x, y = (digits.data[:8] / 16.0).astype(np.float32), digits.target[:8]
    got = dp["per_example_grads"](params, x, y)
    rows = [neuronika.grad(dp["loss"])(params, x[i], y[i]) for i in range(8)]
    for k in params:
        assert got[k].shape == (8,) + params[k].shape
        np.testing.assert_allclose(got[k], np.stack([row[k] for row in rows]), rtol=1e-5, atol=1e-6)
    # clipped to norm C over every parameter together, summed; noise sigma * C, divided by B
    clip, sigma = 7.0, 2.0
    norms = [np.sqrt(sum(float(np.sum(row[k].astype(np.float64) ** 2)) for k in row)) for row in rows]
    assert min(norms) < clip < max(norms)          # some examples clipped, some not
    noise = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
    summed = {k: sum(row[k] / max(1.0, n / clip) for row, n in zip(rows, norms)) for k in params}
    private = neuronika.jit(dp["private_gradient"])(params, x, y, noise, clip, sigma)
    for k in params:
        np.testing.assert_allclose(private[k], (summed[k] + sigma * clip * noise[k]) / 8, rtol=1e-4, atol=1e-6)
    # the training step is one program, batched: no Python loop over the examples in it
    optimizer = neuronika.optim.sgd(0.1, momentum=0.9)
    step = dp["make_step"](optimizer)
    source = step.source(params, optimizer.init(params), x, y, noise, clip, sigma)
    assert source.startswith("def ") and "for " not in source and "stack" not in source


def test_dp_sgd_digits_accountant_gives_known_values():
    # the values in TensorFlow Privacy's rdp_accountant_test.py (compute_rdp(q, sigma, steps,
    # orders), get_privacy_spent), at integer orders
    dp = _example_module("dp_sgd_digits.py")
    rdp, epsilon = dp["rdp_sampled_gaussian"], dp["epsilon"]
    assert rdp(0.0, 10.0, 20) == 0.0
    assert rdp(1.0, 10.0, 20) == pytest.approx(20 / 200)             # the Gaussian mechanism
    assert 10 * rdp(0.1, 2.0, 5) == pytest.approx(0.07737, abs=1e-5)
    assert [50 * rdp(0.01, 2.5, a) for a in (5, 50, 100)] == pytest.approx(
        [0.00218075, 0.023846, 167.416307], abs=1e-5)
    eps, order = epsilon(0.01, 4.0, 10000, 1e-5, orders=range(2, 33))
    assert eps == pytest.approx(1.258575, abs=1e-5) and order == 20
    # below q = 1 sampling amplifies privacy; more noise, less epsilon
    assert rdp(0.5, 1.0, 8) < rdp(1.0, 1.0, 8)
    assert epsilon(0.05, 2.0, 100, 1e-5)[0] < epsilon(0.05, 1.0, 100, 1e-5)[0]


def test_dp_sgd_digits_first_epochs_are_pinned(capsys):
    oracle("sklearn")
    out = run_example("dp_sgd_digits.py", capsys, "--epochs", "2")
    assert "DP-SGD: sigma 1.0, C 1.0, B 64, q = B/N = 0.0445, 44 steps (22 per epoch)" in out
    epochs = re.findall(r"epoch +\d+ +train loss ([0-9.]+) +test accuracy ([0-9.]+)", out)
    assert [float(loss) for loss, _ in epochs] == pytest.approx([1.4351, 0.7175], abs=5e-4)
    # 360 test digits: two that tip over on another BLAS are allowed
    assert [float(accuracy) for _, accuracy in epochs] == pytest.approx([0.7306, 0.8250], abs=2.1 / 360)
    assert "(sigma 1.0, C 1.0, q 0.0445, 44 steps)" in out
    assert "privacy: epsilon 3.47 at delta 1e-05 (RDP order 6)" in out


def test_dp_sgd_digits_reaches_95_percent(capsys):
    oracle("sklearn")
    out = run_example("dp_sgd_digits.py", capsys)
    accuracy = final_accuracy(out)
    assert accuracy >= 0.95
    assert "q 0.0445, 660 steps" in out and "privacy: epsilon 9.52 at delta 1e-05" in out


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


# A text that does not depend on the Python version (the example's default, the standard
# library's source, does).
TINY_TEXT = "".join(f"def f{i}(x):\n    return x * {i} + {i % 7}\n\n" for i in range(200))
TINY = ("--layers", "1", "--width", "16", "--heads", "2", "--context", "16", "--batch", "8",
        "--eval-every", "10", "--eval-batches", "2", "--sample", "30", "--seed", "0")


def _losses(out):
    return {int(step): float(loss) for step, loss in re.findall(r"step +(\d+) +train loss ([0-9.]+)", out)}


def test_char_transformer_first_steps_are_pinned_and_the_loss_falls(capsys, tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT)
    out = run_example("char_transformer.py", capsys, "--text", str(text), "--steps", "30", *TINY)
    assert "1 files: 6,462 training and 718 validation characters, 25 symbols" in out
    assert "4,393 parameters" in out
    losses = _losses(out)
    pinned = {1: 3.3132, 2: 3.1399, 3: 3.0895, 4: 2.8954, 5: 2.7628}
    assert {k: losses[k] for k in pinned} == pytest.approx(pinned, abs=5e-4)
    validation = [float(v) for v in re.findall(r"step +\d+ .*validation loss ([0-9.]+)", out)]
    assert len(validation) == 3 and validation[-1] < validation[0] < losses[1] - 0.4
    sample = out.split("---- sample ----\n")[1].split("\n----------------")[0]
    assert sample.startswith("def ") and len(sample) == 34
    assert "training curve" not in out


def test_char_transformer_with_a_tied_head(capsys, tmp_path):
    text = tmp_path / "tiny.txt"
    text.write_text(TINY_TEXT)
    out = run_example("char_transformer.py", capsys, "--text", str(text), "--steps", "3", "--tie", *TINY)
    assert f"{4393 - 25 * 16 - 25:,} parameters" in out          # no head weight and bias
    assert len(_losses(out)) == 3


def test_char_transformer_reads_the_standard_library_by_default(capsys):
    out = run_example("char_transformer.py", capsys, "--steps", "2", "--layers", "1", "--width", "16",
                      "--heads", "2", "--context", "8", "--batch", "2", "--eval-batches", "1", "--sample", "5")
    found = re.search(r"(\d+) files: ([0-9,]+) training and ([0-9,]+) validation characters", out)
    assert int(found.group(1)) >= 10 and int(found.group(2).replace(",", "")) > 300_000


@pytest.mark.parametrize("name, args", [
    ("char_transformer.py", ("--steps", "12") + TINY),
    ("regression_csv.py", ()),
    ("mlp_digits.py", ()),
    ("numpy_digits.py", ()),
    ("dp_sgd_digits.py", ("--epochs", "2")),
])
def test_a_training_curve_png_is_written(name, args, capsys, tmp_path):
    pytest.importorskip("matplotlib")
    if "digits" in name:
        oracle("sklearn")
    if name == "char_transformer.py":
        (tmp_path / "tiny.txt").write_text(TINY_TEXT)
        args = ("--text", str(tmp_path / "tiny.txt")) + args
    path = tmp_path / "curve.png"
    out = run_example(name, capsys, "--plot", str(path), *args)
    assert f"training curve saved to {path}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_no_curve_and_no_error(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib raises ImportError
    path = tmp_path / "curve.png"
    out = run_example("regression_csv.py", capsys, "--plot", str(path))
    assert "final validation RMSE" in out and "training curve" not in out and not path.exists()


@pytest.mark.parametrize("args, message", [
    (("--width", "10", "--heads", "3"), r"--width \(10\) must be a multiple of --heads \(3\)"),
    (("--steps", "0"), "--steps must be at least 1"),
])
def test_char_transformer_refuses_bad_sizes(args, message, capsys):
    with pytest.raises(SystemExit):
        run_example("char_transformer.py", capsys, *args)
    assert re.search(message, capsys.readouterr().err)
