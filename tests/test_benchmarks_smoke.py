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
    benchmarks.check(workload, path)    # the functional step (value_and_grad or neuronika.jit)
    value = path.step()                 # the timed step returns the loss
    assert np.shape(value) == ()
    loss, grads, params = path.result()
    assert len(grads) == len(params) == len(workload.initial)


def test_floor_matches_neuronika_value_and_grad(workload):
    path = workload.path("vg")
    benchmarks.check(workload, path)    # value_and_grad, then the update by hand
    assert path.about == benchmarks.run.FUNCTIONAL_ABOUT["value_and_grad"]
    loss, grads, params = path.result()
    assert len(grads) == len(params) == len(workload.initial)


def test_floor_step_is_sgd_and_reset_restores(workload):
    path = workload.path("floor")
    loss, grads = workload.floor()
    loss_again = path.step()
    assert loss_again == loss
    for w, w0, g in zip(workload.param_arrays, workload.initial, grads):
        np.testing.assert_array_equal(w, w0 - workload.lr * g)
    path.reset()
    for w, w0 in zip(workload.param_arrays, workload.initial):
        np.testing.assert_array_equal(w, w0)


def test_imperative_step_updates_its_own_parameters(workload):
    imperative = workload.path("imperative")
    imperative.step()                   # the neuronika Params move; the floor's arrays do not
    assert any(not np.array_equal(v.data, w0) for v, w0 in zip(workload.leaves, workload.initial))
    for w, w0 in zip(workload.param_arrays, workload.initial):
        np.testing.assert_array_equal(w, w0)
    imperative.reset()
    for v, w0 in zip(workload.leaves, workload.initial):
        np.testing.assert_array_equal(v.data, w0)


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
    with pytest.raises(benchmarks.GradientMismatch, match="tiny: neuronika functional"):
        benchmarks.check(workload, workload.path("grad"))


def test_check_fails_loudly_on_a_wrong_update():
    workload = benchmarks.WORKLOADS["digits"]()
    imperative = workload.path("imperative")
    step, reset = imperative.result, imperative.reset

    def twice_the_step():               # right loss and gradients, parameters moved by 2 lr g
        loss, grads, params = step()
        return loss, grads, [p - workload.lr * g for p, g in zip(params, grads)]

    with pytest.raises(benchmarks.GradientMismatch, match="parameter 0 after the step"):
        benchmarks.check(workload, run.Path("imperative", lambda: None, twice_the_step, reset))


def test_table_format():
    times = {"floor": 10e-6, "imperative": 40e-6, "grad": 12e-6, "torch": 11e-6}
    memory = {"floor": 1000, "imperative": 3 * 1024, "grad": 5 << 20}
    rows = benchmarks.table_rows("tiny", benchmarks.WORKLOADS["tiny"].targets, times, memory,
                                 {"torch-compile": "[1]"})
    rows += benchmarks.table_rows("chain", {}, {"floor": 10e-6, "imperative": 40e-6})
    lines = benchmarks.format_table(rows)
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0] == ["workload", "path", "µs per step", "ratio to floor", "peak memory", "target", "met?"]
    assert cells[2] == ["tiny", "numpy floor", "10.0", "1.00", "1000 B", "-", "-"]
    assert cells[3] == ["tiny", "neuronika imperative", "40.0", "4.00", "3.0 KiB", "<= 2x", "no"]
    assert cells[4] == ["tiny", "neuronika functional", "12.0", "1.20", "5.0 MiB", "<= 1.3x", "yes"]
    assert cells[5] == ["tiny", "torch eager", "11.0", "1.10", "n/a", "-", "-"]
    assert cells[6] == ["tiny", "torch.compile", "failed [1]", "-", "-", "-", "-"]
    assert cells[8] == ["chain", "neuronika imperative", "40.0", "4.00", "n/a", "-", "-"]


def test_summary_format():
    keys = ["floor", "imperative", "grad", "autograd", "torch", "torch-compile"]
    cnn = benchmarks.WORKLOADS["cnn"]
    times = {"floor": 1e-3, "imperative": 1.2e-3, "grad": 0.8e-3, "torch": 0.9e-3, "torch-compile": 1e-3}
    rows = [run.summary_row("cnn", keys, cnn.targets, times, {"floor": 2048, "imperative": 4096}),
            run.summary_row("tiny", keys, benchmarks.WORKLOADS["tiny"].targets,
                            {"floor": 1e-5, "imperative": 1.5e-5, "grad": 2e-5, "autograd": 1e-4},
                            failed={"torch-compile": "[1]"})]
    lines = run.format_summary(keys, rows)
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in lines]
    assert cells[0] == ["workload", "floor µs/step", "torch eager", "torch.compile", "neuronika imperative",
                        "neuronika functional", "target", "met? (imperative / functional)", "autograd",
                        "peak: numpy floor", "peak: neuronika imperative", "peak: neuronika functional",
                        "peak: autograd", "peak: torch, jax"]
    assert cells[2] == ["cnn", "1,000", "0.90x", "1.00x", "1.20x", "0.80x", "both <= 0.95x torch.compile",
                        "no / yes", "-", "2.0 KiB", "4.0 KiB", "-", "-", "n/a"]
    assert cells[3][:10] == ["tiny", "10.0", "-", "failed [1]", "1.50x", "2.00x",
                             "imperative <= 2x, functional <= 1.3x", "yes / no", "10.00x", "-"]


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
    assert "| neuronika imperative | neuronika functional | target" in out
    assert "| tiny     |" in out


def test_processes_time_each_workload_in_fresh_interpreters(capsys):
    assert run.main(["--quick", "--only", "tiny", "--paths", "imperative", "--samples", "1", "--sample-ms",
                     "0.2", "--processes", "2"]) == 0
    out = capsys.readouterr().out
    assert "| tiny " in out and "Ratios to the floor in 2 processes (median in the table): neuronika imperative " in out
    with pytest.raises(SystemExit):
        run.main(["--processes", "0"])


def test_profile_targets():
    assert run.parse_profile("tiny") == ("tiny", "imperative")
    assert run.parse_profile("tiny-grad") == ("tiny", "grad")
    assert run.parse_profile("rnn-jax-jit") == ("rnn", "jax-jit")
    assert run.parse_profile("rnn-torch-compile") == ("rnn", "torch-compile")
    with pytest.raises(Exception):
        run.parse_profile("tiny-nope")


def test_unknown_workload_is_rejected():
    with pytest.raises(SystemExit):
        run.main(["--only", "nope"])
    with pytest.raises(SystemExit):
        run.main(["--threads", "0"])


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
    assert cnn.supports("torch-compile")
    assert not cnn.supports("autograd") and not cnn.supports("jax-jit")
    with pytest.raises(KeyError, match="cnn"):
        cnn.path("autograd", {"autograd": lambda workload: None})


def test_cnn_torch_path_matches_the_floor():
    oracle("torch")
    cnn = benchmarks.WORKLOADS["cnn"]()
    makers, _ = competitors.load({"torch"}, threads=None)
    benchmarks.check(cnn, cnn.path("torch", makers))


def test_main_runs_the_cnn_without_competitors(no_competitors, capsys):
    assert run.main(["--quick", "--long", "--only", "cnn", "--samples", "1", "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "| cnn      | neuronika imperative" in out           # the long table
    assert "both <= 0.95x torch.compile | - / -" in out        # torch.compile did not run: unknown


def test_digits_floor_matches_finite_differences():
    digits = benchmarks.WORKLOADS["digits"]()
    loss, grads = digits.floor()
    params = [a.astype(np.float64) for a in digits.param_arrays]
    x, labels = digits.x_data.astype(np.float64), digits.labels

    def f(params):
        w1, b1, w2, b2 = params
        z = np.maximum(x @ w1 + b1, 0) @ w2 + b2
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(x)), labels].mean()

    assert np.isclose(f(params), loss, rtol=1e-5)
    eps = 1e-6
    for which, index in [(0, (5, 3)), (1, (7,)), (2, (4, 9)), (3, (2,))]:
        up = [p.copy() for p in params]
        down = [p.copy() for p in params]
        up[which][index] += eps
        down[which][index] -= eps
        assert np.isclose((f(up) - f(down)) / (2 * eps), grads[which][index], rtol=1e-4, atol=1e-7)


def test_peak_memory_sees_numpy_buffers():
    mlp = benchmarks.WORKLOADS["mlp64"]()
    floor = mlp.path("floor")
    peak = run.peak_memory(floor)
    assert peak > 64 * 256 * 4                  # at least the first hidden layer's activations
    for w, w0 in zip(mlp.param_arrays, mlp.initial):
        np.testing.assert_array_equal(w, w0)    # put back


@pytest.fixture
def fake_jit(monkeypatch):
    """A stand-in for neuronika.jit and the functional SGD (optax's shape), to run the
    functional path's jit branch before neuronika has them."""
    class SGD:
        def __init__(self, lr):
            self.lr = lr

        def init(self, params):
            return ()

        def update(self, grads, state, params=None):
            return [-self.lr * g for g in grads], state

    optim = neuronika.optim
    monkeypatch.setattr(neuronika, "jit", lambda f: f, raising=False)
    monkeypatch.setattr(optim, "sgd", lambda lr: SGD(lr), raising=False)
    monkeypatch.setattr(optim, "apply_updates", lambda params, updates: [p + u for p, u in zip(params, updates)],
                        raising=False)


def test_functional_path_uses_neuronika_jit_where_it_exists(fake_jit, capsys):
    assert run.functional_kind() == "jit"
    digits = benchmarks.WORKLOADS["digits"]()
    path = digits.path("grad")
    assert path.about == run.FUNCTIONAL_ABOUT["jit"]
    benchmarks.check(digits, path)
    assert run.main(["--quick", "--only", "tiny", "--paths", "grad", "--samples", "1", "--sample-ms", "0.2"]) == 0
    assert "neuronika functional: neuronika.jit of the whole step" in capsys.readouterr().out


def test_a_failing_neuronika_jit_is_a_footnote(fake_jit, monkeypatch, capsys):
    def broken(f):
        def traced(*args):
            raise NotImplementedError("jit: no rule for this op")
        return traced

    monkeypatch.setattr(neuronika, "jit", broken)
    with pytest.raises(run.PathFailed, match="neuronika.jit of the step raised NotImplementedError"):
        benchmarks.WORKLOADS["tiny"]().path("grad")
    assert run.main(["--quick", "--only", "tiny", "--paths", "grad", "--samples", "1", "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    assert " failed [1] |" in out and "[1] tiny, neuronika functional: neuronika.jit of the step" in out


def test_functional_path_falls_back_to_value_and_grad(monkeypatch):
    monkeypatch.delattr(neuronika, "jit", raising=False)
    assert run.functional_kind() == "value_and_grad"
    assert benchmarks.WORKLOADS["tiny"]().path("grad").about == run.FUNCTIONAL_ABOUT["value_and_grad"]


def test_a_competitor_that_fails_is_a_footnote(monkeypatch, capsys):
    def refuses(workload):
        raise run.PathFailed("torch.compile(fullgraph=True) raised Unsupported: no")

    monkeypatch.setitem(competitors._MAKERS, "torch-compile", refuses)
    oracle("torch")
    assert run.main(["--quick", "--only", "tiny", "--paths", "torch-compile", "--samples", "1",
                     "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    assert " failed [1] |" in out
    assert "[1] tiny, torch.compile: torch.compile(fullgraph=True) raised Unsupported: no" in out


def test_torch_paths_match_the_floor():
    oracle("torch")
    digits = benchmarks.WORKLOADS["digits"]()
    makers, _ = competitors.load({"torch", "torch-compile"}, threads=None)
    benchmarks.check(digits, digits.path("torch", makers))
    tiny = benchmarks.WORKLOADS["tiny"]()
    benchmarks.check(tiny, tiny.path("torch-compile", makers))     # compiles (seconds)


@pytest.mark.parametrize("key", ["autograd", "jax-jit", "jax-eager"])
def test_optional_competitors_match_the_floor(key):
    pytest.importorskip("jax" if key.startswith("jax") else key)     # the bench extra, not an oracle
    makers, _ = competitors.load({key}, threads=None)
    for name in ("digits", "tiny"):
        workload = benchmarks.WORKLOADS[name]()
        benchmarks.check(workload, workload.path(key, makers))


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
    # the gradient's graph is compiled too (an elementwise adjoint is one node: about 1.5 per op)
    assert hvp["compiled"] > 1.3 * hvp["nodes"]
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


# ---- benchmarks/per_example.py ---------------------------------------------------------------

from benchmarks import per_example  # noqa: E402


def test_per_example_numpy_path_is_the_clipped_sum_of_a_loop_of_grad():
    w = per_example.Workload(5, (6, 4, 3), "float64")
    w.clip = 0.5                                # some examples clipped, not necessarily all
    rows = [neuronika.grad(per_example.example_loss)(w.params, w.x[i], w.y[i]) for i in range(5)]
    norms = [np.sqrt(sum(np.sum(g ** 2) for g in row.values())) for row in rows]
    want = {k: sum(row[k] / max(1.0, n / w.clip) for row, n in zip(rows, norms)) for k in w.params}
    got = per_example.numpy_step(w)()
    for k in w.params:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-14)
    reference = {k: np.asarray(v) for k, v in got.items()}
    per_example.check("neuronika", per_example.neuronika_step(w), reference, "float64")
    wrong = dict(reference, b2=reference["b2"] + 1e-6)
    with pytest.raises(per_example.Mismatch, match="b2 differs"):
        per_example.check("neuronika", per_example.neuronika_step(w), wrong, "float64")


def test_per_example_neuronika_path_is_one_program_without_a_loop():
    w = per_example.Workload(4, (6, 4, 3))
    step = per_example.neuronika_step(w)
    source = step.program.source(w.params, w.x, w.y, w.clip)
    assert "for " not in source and "stack" not in source


@pytest.mark.parametrize("key", ["torch-func", "jax-jit"])
def test_per_example_competitors_match_numpy(key):
    if key.startswith("torch"):
        oracle("torch")
    else:
        pytest.importorskip("jax")                  # the bench extra, not an oracle
    w = per_example.Workload(6, (7, 5, 3))
    reference = {k: np.asarray(v) for k, v in per_example.numpy_step(w)().items()}
    per_example.check(key, per_example.MAKERS[key](w), reference, "float32")


def test_per_example_main_runs_without_competitors(no_competitors, monkeypatch, capsys):
    monkeypatch.setattr(competitors, "set_threads", lambda n: [f"{n} thread(s) asked"])   # nothing global
    assert per_example.main(["--batches", "4,8", "--sizes", "6,4,3", "--samples", "1", "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "torch is not installed; its paths are skipped" in out and "jax is not installed" in out
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")]
    assert rows[0] == ["B", "path", "µs per step", "± (half IQR)", "ratio to NumPy"]
    assert [r[:2] for r in rows[1:]] == [["4", "hand-batched NumPy"], ["4", "neuronika jit(vmap(grad))"],
                                         ["8", "hand-batched NumPy"], ["8", "neuronika jit(vmap(grad))"]]
    assert rows[1][4] == "1.00" and float(rows[2][4]) > 0
    with pytest.raises(SystemExit):
        per_example.main(["--paths", "nope"])


def test_per_example_a_failing_path_is_a_footnote(no_competitors, monkeypatch, capsys):
    def refuses(workload):
        raise competitors.PathFailed("torch.compile(fullgraph=True) raised Unsupported: no")

    monkeypatch.setattr(competitors, "set_threads", lambda n: [])
    monkeypatch.setitem(per_example._NEEDS, "torch-compile", "numpy")      # "installed"
    monkeypatch.setitem(per_example.MAKERS, "torch-compile", refuses)
    assert per_example.main(["--batches", "4", "--sizes", "6,4,3", "--paths", "torch-compile", "--samples", "1",
                             "--sample-ms", "0.2"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in out.splitlines() if line.startswith("| ")]
    assert rows[1:] == [["4", "hand-batched NumPy", rows[1][2], "-", "1.00"],
                        ["4", "torch.compile of torch.func vmap(grad)", "failed [1]", "-", "-"]]
    assert "[1] B=4, torch.compile of torch.func vmap(grad): torch.compile(fullgraph=True) raised Unsupported" in out


_FAULTS_PER_STEP = """
import resource, sys
import numpy as np
if sys.argv[1] == "settled":
    from benchmarks.run import settle_allocator
    settle_allocator()

def step():                                 # 100 temporaries of 80 kB, freed at the end
    kept = [np.ones(10_000) for _ in range(100)]
    return sum(float(k[0]) for k in kept)

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                    reason="glibc's dynamic malloc thresholds")
def test_a_settled_process_keeps_its_heap_between_steps():
    # a fresh interpreter gives its heap's top back after each step (glibc trims above 128 kB
    # free) and faults it in again on the next; after settle_allocator it keeps it, whatever
    # the process allocated at import (which decided it for the benchmark processes before)
    import subprocess
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def faults(state):
        done = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP, state], cwd=root,
                              capture_output=True, text=True, check=True)
        return float(done.stdout)
    assert faults("fresh") > 100            # the trimming the harness removes (about 1,900 here)
    assert faults("settled") < 1
