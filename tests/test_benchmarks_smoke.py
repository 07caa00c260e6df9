"""The benchmark harness and its NumPy floors stay correct (nothing here is timed, and
nothing here needs the competitors: autograd, torch and jax are blocked where they matter)."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import benchmarks  # noqa: E402
import neuronika  # noqa: E402
from benchmarks import competitors, run  # noqa: E402
from neuronika.testing import oracle


@pytest.fixture(scope="module", params=list(benchmarks.WORKLOADS))
def workload(request):
    return benchmarks.WORKLOADS[request.param]()


def test_floor_matches_neuronika_imperative(workload):
    benchmarks.check(workload)          # raises GradientMismatch if the floor is not the same
    workload.neuronika_step()           # the timed iteration runs and leaves no gradient behind
    assert all(p._node.grad is None for p in workload.params)
    loss, grads = workload.floor()
    assert np.isfinite(loss) and len(grads) == len(workload.leaves)


def test_floor_matches_neuronika_grad(workload):
    path = workload.path("grad")
    benchmarks.check(workload, path)    # value_and_grad of the same loss, on NumPy arrays
    value, grads = path.step()          # the timed call returns the value and every gradient
    assert np.shape(value) == () and len(grads) == len(workload.param_arrays)


def test_rnn_floor_is_backpropagation_through_time():
    rnn = benchmarks.WORKLOADS["rnn"]()
    loss, (gwx, gwh, gb) = rnn.floor()
    # A central difference on one entry of Wh, in float64, agrees with the floor's gradient.
    wx, wh, b, xs = (a.astype(np.float64) for a in (rnn.wx_data, rnn.wh_data, rnn.b_data, rnn.xs_data))

    def f(wh):
        h = np.tanh(xs[0] @ wx + b)
        for t in range(1, xs.shape[0]):
            h = np.tanh(xs[t] @ wx + h @ wh + b)
        return (h * h).mean()

    eps = 1e-6
    up, down = wh.copy(), wh.copy()
    up[3, 5] += eps
    down[3, 5] -= eps
    assert np.isclose(f(wh), loss, rtol=1e-5)
    assert np.isclose((f(up) - f(down)) / (2 * eps), gwh[3, 5], rtol=1e-3, atol=1e-7)
    assert gwx.shape == rnn.wx_data.shape and gb.shape == rnn.b_data.shape


def test_check_fails_loudly_on_a_wrong_floor():
    workload = benchmarks.WORKLOADS["tiny"]()
    right = workload.floor

    def wrong():
        loss, (gw, gb) = right()
        return loss, [gw, gb * 1.01]

    workload.floor = wrong
    with pytest.raises(benchmarks.GradientMismatch, match="tiny: neuronika imperative"):
        benchmarks.check(workload)
    with pytest.raises(benchmarks.GradientMismatch, match="tiny: neuronika grad"):
        benchmarks.check(workload, workload.path("grad"))


def test_table_format():
    times = {"floor": 10e-6, "imperative": 40e-6, "grad": 12e-6, "torch": 11e-6}
    rows = benchmarks.table_rows("tiny", benchmarks.WORKLOADS["tiny"].targets, times)
    rows += benchmarks.table_rows("chain", {}, {"floor": 10e-6, "imperative": 40e-6})
    lines = benchmarks.format_table(rows)
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0] == ["workload", "path", "µs per iteration", "ratio to floor", "target", "met?"]
    assert cells[2] == ["tiny", "numpy floor", "10.0", "1.00", "-", "-"]
    assert cells[3] == ["tiny", "neuronika imperative", "40.0", "4.00", "<= 3", "no"]
    # autograd did not run: its comparison is '-', not a pass
    assert cells[4] == ["tiny", "neuronika grad", "12.0", "1.20",
                        "<= 1.3; < autograd; < torch eager", "yes; -; no"]
    assert cells[5] == ["tiny", "torch eager", "11.0", "1.10", "-", "-"]
    assert cells[7] == ["chain", "neuronika imperative", "40.0", "4.00", "-", "-"]


@pytest.fixture
def no_competitors(monkeypatch):
    for name in ("autograd", "torch", "jax"):
        monkeypatch.setitem(sys.modules, name, None)      # import raises ImportError


def test_missing_competitors_are_reported_and_skipped(no_competitors):
    makers, lines = competitors.load(set(benchmarks.PATHS), threads=2)
    assert makers == {}
    assert len(lines) == 3 and all("not installed" in line for line in lines)


def test_main_runs_without_competitors(no_competitors, capsys):
    assert run.main(["--quick", "--only", "tiny", "--samples", "1", "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "torch: not installed" in out
    assert "| tiny     | neuronika grad" in out


def test_profile_targets():
    assert run.parse_profile("tiny") == ("tiny", "imperative")
    assert run.parse_profile("tiny-grad") == ("tiny", "grad")
    assert run.parse_profile("rnn-jax-jit") == ("rnn", "jax-jit")
    with pytest.raises(Exception):
        run.parse_profile("tiny-nope")


def test_unknown_workload_is_rejected():
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])


def test_cnn_floor_matches_finite_differences():
    cnn = benchmarks.WORKLOADS["cnn"]()
    loss, grads = cnn.floor()
    assert [g.shape for g in grads] == [a.shape for a in cnn.param_arrays]
    params = [a.astype(np.float64) for a in cnn.param_arrays]
    x, onehot = cnn.x_data.astype(np.float64), cnn.onehot_data.astype(np.float64)

    def conv(h, w, b):                     # direct loops over the 3x3 offsets
        n, c, hh, ww = h.shape
        out = np.zeros((n, w.shape[0], hh - 2, ww - 2))
        for i in range(3):
            for j in range(3):
                out += np.einsum("nchw,oc->nohw", h[:, :, i:i + hh - 2, j:j + ww - 2], w[:, :, i, j])
        return out + b[:, None, None]

    def f(params):
        w1, b1, w2, b2, w3, b3 = params
        h = np.maximum(conv(x, w1, b1), 0)
        h = np.maximum(conv(h, w2, b2), 0)
        z = h.reshape(len(x), -1) @ w3 + b3
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -(logp * onehot).sum() / len(x)

    assert np.isclose(f(params), loss, rtol=1e-5)
    eps = 1e-6
    for which, index in [(0, (3, 0, 1, 2)), (1, (5,)), (2, (7, 4, 0, 1)), (3, (2,))]:
        up = [p.copy() for p in params]
        down = [p.copy() for p in params]
        up[which][index] += eps
        down[which][index] -= eps
        assert np.isclose((f(up) - f(down)) / (2 * eps), grads[which][index], rtol=1e-3, atol=1e-6)


def test_cnn_runs_only_the_competitors_it_supports():
    cnn = benchmarks.WORKLOADS["cnn"]()
    assert cnn.supports("floor") and cnn.supports("grad") and cnn.supports("torch")
    assert not cnn.supports("autograd") and not cnn.supports("jax-jit")
    with pytest.raises(KeyError, match="cnn"):
        cnn.path("autograd", {"autograd": lambda workload: None})


def test_cnn_torch_path_matches_the_floor():
    oracle("torch")
    cnn = benchmarks.WORKLOADS["cnn"]()
    makers, _ = competitors.load({"torch"}, threads=None)
    benchmarks.check(cnn, cnn.path("torch", makers))


def test_main_runs_the_cnn_without_competitors(no_competitors, capsys):
    assert run.main(["--quick", "--only", "cnn", "--samples", "1", "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "| cnn      | neuronika imperative" in out


# ---- benchmarks/compile_scaling.py -----------------------------------------------------------

from benchmarks import compile_scaling  # noqa: E402


def test_compile_scaling_runs_and_prints_the_table(no_competitors, capsys):
    argv = ["--sizes", "60,240", "--only", "chain-forward,chain-grad,rnn-grad,chain-hvp"]
    assert compile_scaling.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| chain") or line.startswith("| rnn")]
    assert len(rows) == 8
    cells = [[c.strip() for c in row.split("|")[1:-1]] for row in rows]
    assert all(len(c) == 16 for c in cells)
    assert all(c[-3].endswith(" s") for c in cells)       # the default mode's first call
    assert [c[0] for c in cells[:2]] == ["chain-forward", "chain-forward"]
    assert all(c[-1] == "" and c[-4] == "" for c in cells)   # autograd missing: no ratios
    assert "- chain-grad: first-call exponent" in out


def test_compile_scaling_measures_what_it_says():
    case = compile_scaling.CASES["chain-grad"]
    row = compile_scaling.run_case(case, 300, repeats=1, firsts=2, with_autograd=False)
    assert 280 <= row["nodes"] <= 320
    assert row["compiled"] == row["nodes"]               # one program: the function's graph
    assert 0 < row["first_cpu"] and 0 < row["repeat"] < row["first"]
    hvp = compile_scaling.run_case(compile_scaling.CASES["chain-hvp"], 300, repeats=1, with_autograd=False)
    assert hvp["compiled"] > 2 * hvp["nodes"]            # the gradient's graph is compiled too
    assert compile_scaling.exponent({"nodes": 100, "first": 2.0}, {"nodes": 1000, "first": 20.0},
                                    "first") == pytest.approx(1.0)
    table = compile_scaling.table({"chain-grad": [dict(row, autograd=row["first"] / 2)]})
    assert table[2].split("|")[-5].strip() == "2.00"     # first call / autograd's
    assert 0 < row["default"]                             # the default mode's first call (interpreted)


def test_compile_scaling_skips_sizes_that_would_take_too_long():
    logged = []
    results = compile_scaling.measure(["chain-forward"], (50, 5_000_000), max_seconds=1.0,
                                      with_autograd=False, log=logged.append)
    first, skipped = results["chain-forward"]
    assert "skipped" in skipped and skipped["skipped"] > 1.0
    assert any("skipped" in line for line in logged)


def test_compile_scaling_functions_agree_with_numpy():
    # The functions are written once over a NumPy-like namespace: on NumPy itself they give
    # what neuronika computes.
    (v,) = compile_scaling._chain_inputs(None)
    loss = compile_scaling.chain(neuronika.numpy, neuronika.from_ndarray(v), 30)
    assert np.isclose(loss.item(), compile_scaling.chain(np, v, 30))
    arrays = compile_scaling._rnn_inputs(7)
    loss = compile_scaling.rnn(neuronika.numpy, *[neuronika.from_ndarray(a) for a in arrays])
    assert np.isclose(loss.item(), compile_scaling.rnn(np, *arrays))
    assert compile_scaling.RNN.param_for(600) > 50


def test_varlen_rnn_section_of_compile_scaling():
    from benchmarks import compile_scaling
    results = compile_scaling.varlen_rnn(steps=12, imperative_steps=6, lengths=(2, 5), hidden=4, batch=2,
                                         inputs=3, marks=(4, 8, 12), log=None)
    assert [r["path"] for r in results] == ["value_and_grad", "imperative", "nn.RNN"]
    for row in results:
        assert 1 <= row["lengths"] <= 4
        assert row["programs"] >= 1 and 0 <= row["compile_s"] <= row["wall_s"]
        assert np.isfinite(row["loss"])
        assert all(v > 0 for v in row["memory_mb"].values())
    assert set(results[0]["memory_mb"]) == {0, 4, 8, 12}
    lines = compile_scaling.varlen_table(results)
    assert lines[0].startswith("| path |") and len(lines) == 5
