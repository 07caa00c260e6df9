"""How the cost of a first call grows with the size of the graph.

For each case and size, a fresh graph of about that many nodes is built and run
twice: the *first call* (build or trace + code generation + ``compile()`` + run;
every cache emptied before) and the *cached repeat* (the same call again). Both
are reported per node, with the exponent fitted between consecutive sizes
(``log(t2 / t1) / log(n2 / n1)``: 1 is linear). When HIPS autograd is installed
it evaluates the same function eagerly (forward + gradient; it caches nothing, so
each call is a first call) and the table gives the first-call ratio to it. The first
call is measured twice: with ``compile="always"`` (what code generation costs) and in
the default mode (``compile="auto"``: a first-seen signature is traced and interpreted,
which is what a user waits for), each with its ratio to autograd.

Cases (``--only``):

- ``chain-forward``: an elementwise chain on a ``Var`` (x * 1.01, tanh, x + 0.1,
  sin, ... over 16 elements), ``forward()`` only (no gradient);
- ``chain-backward``: the same chain on a ``VarDiff``, ``forward()`` then
  ``backward()`` (two programs);
- ``chain-grad``: ``neuronika.grad`` of the chain's sum;
- ``rnn-grad``: ``neuronika.grad`` of an unrolled tanh RNN (hidden 8, batch 2) with
  respect to its three weights;
- ``chain-hvp``, ``rnn-hvp``: ``neuronika.hvp`` of the same functions (the
  gradient's graph differentiated again); ``chain-hessian``: ``neuronika.hessian``
  of the chain (16 x 16: one program, called once per row).

Nodes are counted on the function's forward graph (``graph.linearize``); the
``compiled`` column counts the nodes of the graphs actually compiled (for hvp and
hessian, the function, its gradient's graph and what differentiates that), and
``µs/compiled`` is the first call per compiled node.

    python -m benchmarks.compile_scaling                  # 1k, 10k, 50k, 100k (minutes)
    python -m benchmarks.compile_scaling --quick          # a smoke run: small sizes
    python -m benchmarks.compile_scaling --sizes 1000,10000 --only chain-grad,rnn-grad
    python -m benchmarks.compile_scaling --profile chain-grad:10000   # cProfile one first call
    python -m benchmarks.compile_scaling --profile chain-grad:10000 --profile-mode auto

A size whose first call would take longer than ``--max-seconds`` (extrapolated
quadratically from the previous size) is skipped and marked so.
"""
from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import io
import math
import os
import platform
import pstats
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import neuronika  # noqa: E402
import neuronika.numpy as nnp  # noqa: E402
from neuronika.graph import linearize  # noqa: E402

DTYPE = np.float64
SIZES = (1_000, 10_000, 50_000, 100_000)
QUICK_SIZES = (200, 1_000)
CHAIN_WIDTH = 16
RNN_BATCH, RNN_INPUT, RNN_HIDDEN = 2, 4, 8


# ---- the functions, written once over a NumPy-like namespace F ----------------------------

def chain(F, v, n):
    """``n`` elementwise ops cycling through x * 1.01, tanh, x + 0.1, sin; then the sum."""
    y = v
    for k in range(n):
        kind = k & 3
        if kind == 0:
            y = y * 1.01
        elif kind == 1:
            y = F.tanh(y)
        elif kind == 2:
            y = y + 0.1
        else:
            y = F.sin(y)
    return F.sum(y)


def rnn(F, wx, wh, b, xs):
    """h_t+1 = tanh(x_t Wx + h_t Wh + b) over the steps of ``xs``; then sum(h * h)."""
    h = F.tanh(xs[0] @ wx + b)
    for t in range(1, xs.shape[0]):
        h = F.tanh(xs[t] @ wx + h @ wh + b)
    return F.sum(h * h)


def _rng():
    return np.random.default_rng(0)


def _chain_inputs(_):
    return (_rng().standard_normal(CHAIN_WIDTH).astype(DTYPE),)


def _rnn_inputs(steps):
    rng = _rng()
    wx = (rng.standard_normal((RNN_INPUT, RNN_HIDDEN)) / np.sqrt(RNN_INPUT)).astype(DTYPE)
    wh = (rng.standard_normal((RNN_HIDDEN, RNN_HIDDEN)) / np.sqrt(RNN_HIDDEN)).astype(DTYPE)
    b = (0.1 * rng.standard_normal(RNN_HIDDEN)).astype(DTYPE)
    xs = rng.standard_normal((steps, RNN_BATCH, RNN_INPUT)).astype(DTYPE)
    return wx, wh, b, xs


def _chain_fn(F, n):
    return lambda v: chain(F, v, n)


def _rnn_fn(F, _):
    return lambda wx, wh, b, xs: rnn(F, wx, wh, b, xs)


class Family:
    """A function family with a size parameter (chain length, RNN steps)."""

    def __init__(self, name, fn, inputs, argnums):
        self.name, self.fn, self.inputs, self.argnums = name, fn, inputs, argnums
        self._per_param = None

    def count(self, param):
        """Nodes of the forward graph for ``param``."""
        args = [neuronika.from_ndarray(a) for a in self.inputs(param)]
        out = self.fn(nnp, param)(*args)
        return len(linearize(out._node)[0])

    def param_for(self, nodes):
        """The size parameter whose graph has about ``nodes`` nodes (graphs grow linearly)."""
        if self._per_param is None:
            small, large = 8, 40
            self._per_param = (small, self.count(small), (self.count(large) - self.count(small)) / (large - small))
        p0, n0, slope = self._per_param
        return max(2, p0 + round((nodes - n0) / slope))


CHAIN = Family("chain", _chain_fn, _chain_inputs, 0)
RNN = Family("rnn", _rnn_fn, _rnn_inputs, (0, 1, 2))


# ---- the cases: each returns (first_call, repeat) closures for a size --------------------

def _leaves(arrays, argnums, diff):
    nums = (argnums,) if isinstance(argnums, int) else argnums
    out = []
    for k, a in enumerate(arrays):
        var = neuronika.from_ndarray(a)
        out.append(var.requires_grad() if diff and k in nums else var)
    return out


def _imperative(family, backward):
    def make(param):
        arrays = family.inputs(param)
        fn = family.fn(nnp, param)
        state = {}

        def first():
            leaves = _leaves(arrays, family.argnums, backward)
            out = fn(*leaves)
            out.forward()
            if backward:
                out.backward()
            state["out"] = out
            return out.data

        def repeat():
            out = state["out"]
            out.forward()
            if backward:
                out.backward()
            return out.data

        return first, repeat
    return make


def _grad(family):
    def make(param):
        arrays = family.inputs(param)
        traced = neuronika.grad(family.fn(nnp, param), argnums=family.argnums)

        def call():
            return traced(*arrays)
        return call, call
    return make


def _hvp(family):
    def make(param):
        arrays = family.inputs(param)
        fn = family.fn(nnp, param)
        rest = arrays[1:]

        def of_first(x):               # the Hessian with respect to the first argument
            return fn(x, *rest)
        direction = np.ones_like(arrays[0])

        def call():
            return neuronika.hvp(of_first, arrays[0], direction)
        return call, call
    return make


def _hessian(family):
    def make(param):
        arrays = family.inputs(param)
        fn = family.fn(nnp, param)
        rest = arrays[1:]
        hessian = neuronika.hessian(lambda x: fn(x, *rest))

        def call():
            return hessian(arrays[0])
        return call, call
    return make


def _autograd_maker(family, kind):
    """HIPS autograd's eager evaluation of the same function, or None when not installed."""
    try:
        import autograd
        import autograd.numpy as anp
    except ImportError:
        return None

    def make(param):
        arrays = family.inputs(param)
        fn = family.fn(anp, param)
        if kind == "forward":
            return lambda: fn(*arrays)
        if kind == "grad":
            g = _multi_grad(autograd, fn, family.argnums)
            return lambda: g(*arrays)
        rest = arrays[1:]
        if kind == "hessian":
            hessian = autograd.hessian(lambda x: fn(x, *rest))
            return lambda: hessian(arrays[0])
        hvp = autograd.hessian_tensor_product(lambda x: fn(x, *rest))
        direction = np.ones_like(arrays[0])
        return lambda: hvp(arrays[0], direction)
    return make


def _multi_grad(autograd, fn, nums):
    if isinstance(nums, int):
        return autograd.grad(fn, nums)
    # autograd.grad takes one argnum; several: one call of value_and_grad over a tuple
    def wrapped(*args):
        pack = tuple(args[n] for n in nums)

        def of_pack(p):
            full = list(args)
            for n, a in zip(nums, p):
                full[n] = a
            return fn(*full)
        return autograd.grad(of_pack)(pack)
    return wrapped


class Case:
    def __init__(self, key, family, make, autograd_kind, about):
        self.key, self.family, self.make, self.about = key, family, make, about
        self.autograd_kind = autograd_kind

    @property
    def autograd(self):
        """A maker of HIPS autograd's eager evaluation, or None (looked up at each run)."""
        return _autograd_maker(self.family, self.autograd_kind)


CASES = {
    "chain-forward": Case("chain-forward", CHAIN, _imperative(CHAIN, False), "forward",
                          "elementwise chain, imperative forward() (autograd: the eager forward)"),
    "chain-backward": Case("chain-backward", CHAIN, _imperative(CHAIN, True), "grad",
                           "elementwise chain, imperative forward() + backward()"),
    "chain-grad": Case("chain-grad", CHAIN, _grad(CHAIN), "grad", "elementwise chain through grad"),
    "rnn-grad": Case("rnn-grad", RNN, _grad(RNN), "grad", "tanh RNN (unrolled) through grad"),
    "chain-hvp": Case("chain-hvp", CHAIN, _hvp(CHAIN), "hvp", "elementwise chain through hvp"),
    "rnn-hvp": Case("rnn-hvp", RNN, _hvp(RNN), "hvp", "tanh RNN through hvp (w.r.t. Wx)"),
    "chain-hessian": Case("chain-hessian", CHAIN, _hessian(CHAIN), "hessian",
                          "elementwise chain through hessian (16 x 16)"),
}
DEFAULT_CASES = ("chain-forward", "chain-backward", "chain-grad", "rnn-grad", "chain-hvp", "rnn-hvp",
                 "chain-hessian")


# ---- timing ---------------------------------------------------------------------------------

@contextlib.contextmanager
def compile_always():
    """Compile on the first call (when neuronika has a compile-mode switch), into straight-line
    code (no recurrence rolled into a loop): this harness measures code generation per node,
    not the interpreter (the default mode's first call, rolling included, is ``default``)."""
    modes = neuronika.graph.modes
    if not hasattr(type(modes), "compile"):
        yield
        return
    loops = getattr(neuronika.transform, "loops", None)
    before, rolling = modes.compile, getattr(loops, "AUTO", None)
    modes.compile = "always"
    if rolling is not None:
        loops.AUTO = False
    try:
        yield
    finally:
        modes.compile = before
        if rolling is not None:
            loops.AUTO = rolling


def _timed(fn, collect=True):
    """(wall seconds, CPU seconds of this process, result)."""
    if collect:
        gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _best(fn, repeats):
    gc.collect()
    return min(_timed(fn, collect=False)[0] for _ in range(repeats))


def clear_caches():
    """Every cache a first call fills: programs, traces, and what code generation keeps per
    op kind and per template, so that each first call starts cold."""
    neuronika.transform.cache_clear()
    from neuronika.transform import codegen, templates
    for module, name in ((codegen, "patterns_clear"), (templates.parse, "cache_clear")):
        clear = getattr(module, name, None)
        if clear is not None:
            clear()
    try:
        from neuronika.transform import run
    except ImportError:
        return
    clear = getattr(run, "forget_interpreted", None)     # runs counted, interpreter's kinds
    if clear is not None:
        clear()


@contextlib.contextmanager
def counting_builds(counts):
    """Append the size (nodes) of every graph compiled inside to ``counts``."""
    from neuronika.transform import codegen
    real = codegen.build

    def build(order, *args, **kwargs):
        counts.append(len(order))
        return real(order, *args, **kwargs)

    codegen.build = build
    try:
        yield
    finally:
        codegen.build = real


def run_case(case, nodes, repeats=3, firsts=1, with_autograd=True):
    """One measurement: {'nodes', 'first', 'repeat', 'autograd'} (seconds): the best of
    ``firsts`` first calls (each on a new function, caches emptied) and of ``repeats``
    cached ones."""
    param = case.family.param_for(nodes)
    counted = case.family.count(param)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10_000))
    t_first = t_cpu = t_repeat = math.inf
    try:
        with compile_always():
            for _ in range(firsts):
                clear_caches()
                first, repeat = case.make(param)
                compiled = []
                with counting_builds(compiled):
                    wall, cpu, _ = _timed(first)
                t_first, t_cpu = min(t_first, wall), min(t_cpu, cpu)
            t_repeat = _best(repeat, repeats)
    finally:
        sys.setrecursionlimit(old)
    t_default = _default_first(case, param, firsts)
    t_autograd = None
    eager = case.autograd if with_autograd else None
    if eager is not None:
        t_autograd = _best(eager(param), 1 if counted > 20_000 else 2)
    del first, repeat
    clear_caches()
    gc.collect()
    return {"nodes": counted, "compiled": sum(compiled), "first": t_first, "first_cpu": t_cpu,
            "repeat": t_repeat, "autograd": t_autograd, "default": t_default}


def _default_first(case, param, firsts):
    """The first call in the default compile mode (what a user waits for: a first-seen
    signature is interpreted), caches emptied before; None without a compile-mode switch."""
    if not hasattr(type(neuronika.graph.modes), "compile"):
        return None
    best = math.inf
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 10_000))
    try:
        for _ in range(firsts):
            clear_caches()
            first, _ = case.make(param)
            best = min(best, _timed(first)[0])
            del first
    finally:
        sys.setrecursionlimit(old)
    return best


def exponent(a, b, key):
    if a is None or b is None or a.get(key) is None or b.get(key) is None or a["nodes"] == b["nodes"]:
        return None
    return math.log(b[key] / a[key]) / math.log(b["nodes"] / a["nodes"])


def measure(cases, sizes, max_seconds=300.0, repeats=3, firsts=1, with_autograd=True, log=print):
    """{case key: [row per size]}; a row is a run_case dict, or {'nodes', 'skipped'}."""
    results = {}
    for key in cases:
        case = CASES[key]
        rows = results[key] = []
        last = None
        for size in sizes:
            if last is not None:
                predicted = last["first"] * (size / last["nodes"]) ** 2
                if predicted > max_seconds:
                    rows.append({"nodes": size, "skipped": predicted})
                    log(f"  {key} {size:,}: skipped (about {predicted:,.0f} s extrapolated)")
                    continue
            row = run_case(case, size, repeats=repeats, firsts=firsts, with_autograd=with_autograd)
            rows.append(row)
            last = row
            log(f"  {key} {row['nodes']:,}: first {row['first']:.3f} s (CPU {row['first_cpu']:.3f} s), "
                f"repeat {row['repeat'] * 1e3:.2f} ms"
                + (f", default first {row['default']:.3f} s" if row.get("default") is not None else "")
                + (f", autograd {row['autograd']:.3f} s" if row["autograd"] is not None else ""))
    return results


def table(results):
    """Markdown lines."""
    lines = ["| case | nodes | compiled | first call | µs/node | exponent | CPU µs/node | µs/compiled "
             "| cached repeat | µs/node | exponent | autograd eager | first / autograd "
             "| default first call | µs/node | default / autograd |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, rows in results.items():
        previous = None
        for row in rows:
            n = row["nodes"]
            if "skipped" in row:
                lines.append(f"| {key} | ~{n:,} | | skipped (~{row['skipped']:,.0f} s) | | | | | | | | | | | | |")
                continue
            e_first = exponent(previous, row, "first")
            e_repeat = exponent(previous, row, "repeat")
            ag = row["autograd"]
            ratio = "" if ag is None else f"{row['first'] / ag:.2f}"
            lines.append(
                f"| {key} | {n:,} | {row['compiled']:,} | {row['first']:.3f} s | {row['first'] / n * 1e6:.1f} "
                f"| {_fmt(e_first)} | {row['first_cpu'] / n * 1e6:.1f} "
                f"| {_per(row['first'], row['compiled'])} "
                f"| {row['repeat'] * 1e3:.2f} ms | {row['repeat'] / n * 1e6:.2f} | {_fmt(e_repeat)} "
                f"| {'' if ag is None else f'{ag:.3f} s'} | {ratio} | {_default_columns(row)} |")
            previous = row
    return lines


def _default_columns(row):
    default, ag = row.get("default"), row["autograd"]
    if default is None:
        return " | | "
    ratio = "" if ag is None else f"{default / ag:.2f}"
    return f"{default:.3f} s | {default / row['nodes'] * 1e6:.1f} | {ratio}"


def _per(seconds, count):
    return f"{seconds / count * 1e6:.1f}" if count else ""


def _fmt(e):
    return "" if e is None else f"{e:.2f}"


def overall_exponents(results):
    """(case, first-call exponent in wall and in CPU time from the smallest to the largest size
    measured, those sizes)."""
    out = []
    for key, rows in results.items():
        done = [r for r in rows if "skipped" not in r]
        if len(done) >= 2:
            out.append((key, exponent(done[0], done[-1], "first"), exponent(done[0], done[-1], "first_cpu"),
                        done[0]["nodes"], done[-1]["nodes"]))
    return out


def profile(key, size, top=30, mode="always"):
    case = CASES[key]
    param = case.family.param_for(size)
    clear_caches()
    first, _ = case.make(param)
    profiler = cProfile.Profile()
    with compile_always() if mode == "always" else contextlib.nullcontext():
        profiler.enable()
        first()
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(out.getvalue())


# ---- variable-length RNN training: programs per length, compile time, memory ----------------

VARLEN_LENGTHS = (5, 200)
VARLEN_HIDDEN, VARLEN_BATCH, VARLEN_INPUT = 32, 16, 8
VARLEN_STEPS, VARLEN_IMPERATIVE_STEPS = 2_000, 2_000


def _rss_mb():
    """Resident memory of this process in MB (Linux ``/proc``; else the peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError, AttributeError):
        import resource
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10)


def _varlen_params(hidden, inputs, rng):
    return (((rng.standard_normal((inputs, hidden)) / np.sqrt(inputs)).astype(np.float32)),
            ((rng.standard_normal((hidden, hidden)) / np.sqrt(hidden)).astype(np.float32)),
            np.zeros(hidden, np.float32),
            ((rng.standard_normal((hidden, 1)) / np.sqrt(hidden)).astype(np.float32)))


def varlen_loss(F, params, xs, ys):
    """A tanh RNN over the steps of ``xs`` (length, batch, inputs), then a linear read-out of
    the last state against ``ys`` (batch, 1): the mean squared error."""
    wx, wh, b, wo = params
    h = F.tanh(xs[0] @ wx + b)
    for t in range(1, xs.shape[0]):
        h = F.tanh(xs[t] @ wx + h @ wh + b)
    d = h @ wo - ys
    return F.mean(d * d)


@contextlib.contextmanager
def _timing_builds(stats):
    """Count the programs code generation makes inside (``stats['programs']``) and the seconds
    spent generating and compiling them (``stats['compile_s']``, dry comparisons included)."""
    from neuronika.transform import codegen
    real = codegen.build

    def build(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            stats["compile_s"] += time.perf_counter() - start
            if not kwargs.get("dry"):
                stats["programs"] += 1

    codegen.build = build
    try:
        yield
    finally:
        codegen.build = real


def varlen_rnn(steps=VARLEN_STEPS, imperative_steps=VARLEN_IMPERATIVE_STEPS, lengths=VARLEN_LENGTHS,
               hidden=VARLEN_HIDDEN, batch=VARLEN_BATCH, inputs=VARLEN_INPUT, marks=None, lr=0.01,
               log=print):
    """Train a tanh RNN by SGD on sequences whose length is drawn from ``lengths`` (inclusive)
    at every step, once through ``value_and_grad`` (``steps``), once imperatively
    (``imperative_steps``: ``loss.backward()``) and once as a module (``nn.RNN`` and
    ``nn.Linear`` with ``optim.SGD``, ``imperative_steps``), in the default compile mode,
    caches emptied first. Returns one dict per path: steps, distinct lengths, programs generated, seconds
    generating/compiling them and in all, the last loss, and the resident memory (MB) at the
    ``marks`` (default: a quarter, half and all of the steps)."""
    import warnings
    results = []
    for path, count in (("value_and_grad", steps), ("imperative", imperative_steps),
                        ("nn.RNN", imperative_steps)):
        if count <= 0:
            continue
        rng = np.random.default_rng(0)
        sizes = rng.integers(lengths[0], lengths[1] + 1, count)
        params = _varlen_params(hidden, inputs, rng)
        data = rng.standard_normal((lengths[1], batch, inputs)).astype(np.float32)
        targets = rng.standard_normal((batch, 1)).astype(np.float32)
        points = sorted(set(marks if marks is not None else (count // 4, count // 2, count)))
        clear_caches()
        gc.collect()
        stats = {"programs": 0, "compile_s": 0.0}
        memory = {0: _rss_mb()}
        loss = None
        if path == "value_and_grad":
            step_fn = neuronika.value_and_grad(lambda p, xs, ys: varlen_loss(nnp, p, xs, ys))
        elif path == "imperative":
            handles = [neuronika.from_ndarray(p.copy()).requires_grad() for p in params]
        else:
            from neuronika import nn, optim
            layer, readout = nn.RNN(inputs, hidden), nn.Linear(hidden, 1)
            optimizer = optim.SGD(list(layer.parameters()) + list(readout.parameters()), lr=lr)
        with warnings.catch_warnings(), _timing_builds(stats):
            warnings.simplefilter("ignore", neuronika.RetraceWarning)
            start = time.perf_counter()
            for k, n in enumerate(sizes, 1):
                xs = data[:n]
                if path == "value_and_grad":
                    loss, grads = step_fn(params, xs, targets)
                    params = tuple(p - lr * g for p, g in zip(params, grads))
                elif path == "nn.RNN":
                    _, h = layer(neuronika.from_ndarray(xs))
                    d = readout(h[0]) - targets
                    out = (d * d).mean()
                    out.backward()
                    loss = out.data
                    optimizer.step()
                    optimizer.zero_grad()
                else:
                    out = varlen_loss(nnp, handles, neuronika.from_ndarray(xs), targets)
                    out.backward()
                    loss = out.data
                    with neuronika.no_grad():
                        for p in handles:
                            p -= lr * p.grad
                            p.zero_grad()
                if k in points:
                    memory[k] = _rss_mb()
            wall = time.perf_counter() - start
        row = {"path": path, "steps": count, "lengths": len(set(sizes.tolist())),
               "programs": stats["programs"], "compile_s": stats["compile_s"], "wall_s": wall,
               "loss": float(loss), "memory_mb": memory}
        results.append(row)
        if log is not None:
            log(f"varlen {path}: {count} steps done in {wall:.1f} s")
    return results


def varlen_table(results):
    """The variable-length run as Markdown lines."""
    marks = sorted({k for row in results for k in row["memory_mb"] if k})
    head = ("| path | steps | lengths | programs | generate+compile | wall | per step | "
            + " | ".join(f"RSS @{k}" for k in marks) + " | RSS growth |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in results:
        mem = row["memory_mb"]
        cells = [f"{mem[k]:.0f} MB" if k in mem else "" for k in marks]
        last = mem[max(mem)]
        first = mem[min(k for k in mem if k)] if len(mem) > 1 else last
        lines.append(
            f"| {row['path']} | {row['steps']:,} | {row['lengths']} | {row['programs']} | "
            f"{row['compile_s']:.1f} s ({100 * row['compile_s'] / max(row['wall_s'], 1e-9):.0f}%) | "
            f"{row['wall_s']:.1f} s | {1e3 * row['wall_s'] / row['steps']:.2f} ms | "
            + " | ".join(cells) + f" | {last - first:+.1f} MB |")
    return lines


def print_varlen(quick=False, log=print):
    """Run and print the variable-length section (``--varlen``; part of the default run)."""
    if quick:
        results = varlen_rnn(steps=200, imperative_steps=60, log=log)
    else:
        results = varlen_rnn(log=log)
    print()
    print(f"variable-length tanh RNN (hidden {VARLEN_HIDDEN}, batch {VARLEN_BATCH}, inputs "
          f"{VARLEN_INPUT}, float32), lengths {VARLEN_LENGTHS[0]}..{VARLEN_LENGTHS[1]} drawn per "
          f"step, SGD; default compile mode, caches emptied first; programs: code generation runs "
          f"(codegen.build), RSS after the first step marked, growth from the first mark to the last")
    for line in varlen_table(results):
        print(line)
    return results


def _sizes(text):
    return tuple(int(float(s.replace("k", "e3"))) for s in text.split(","))


def _cases(text):
    keys = tuple(s.strip() for s in text.split(","))
    for k in keys:
        if k not in CASES:
            raise argparse.ArgumentTypeError(f"unknown case {k!r}; known: {', '.join(CASES)}")
    return keys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compile_scaling",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"sizes {QUICK_SIZES}: a smoke run")
    parser.add_argument("--sizes", type=_sizes, help=f"node counts (default {', '.join(map(str, SIZES))})")
    parser.add_argument("--only", type=_cases, help=f"cases ({', '.join(CASES)})")
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="skip a size whose first call would take longer (default 300)")
    parser.add_argument("--firsts", type=int, default=1,
                        help="first calls per size, each on a new function with caches emptied; the "
                             "best is reported (default 1)")
    parser.add_argument("--no-autograd", action="store_true", help="do not time HIPS autograd")
    parser.add_argument("--profile", metavar="CASE:SIZE", help="cProfile one first call (no table)")
    parser.add_argument("--profile-mode", choices=("always", "auto"), default="always",
                        help="the compile mode of the profiled first call (auto: interpreted)")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--varlen", action="store_true",
                        help="only the variable-length RNN training run (part of the default run)")
    args = parser.parse_args(argv)
    if args.varlen:
        print_varlen(quick=args.quick)
        return 0

    if args.profile:
        key, _, size = args.profile.partition(":")
        profile(key, _sizes(size or "10000")[0], args.top, args.profile_mode)
        return 0
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    cases = args.only or DEFAULT_CASES
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"{os.cpu_count()} cpus; dtype {np.dtype(DTYPE).name}")
    results = measure(cases, sizes, max_seconds=args.max_seconds, repeats=2 if args.quick else 3,
                      firsts=args.firsts, with_autograd=not args.no_autograd)
    print()
    for line in table(results):
        print(line)
    print()
    print(f"first call: build/trace + code generation + compile() + run (compile='always'), caches "
          f"emptied before (best of {args.firsts}); cached repeat: the same call again (best of 3); "
          f"default first call: the first call in the default mode (compile='auto': trace + "
          f"interpret, what a user waits for). exponent: log(t2/t1) / log(n2/n1) against the row above.")
    for key, e, e_cpu, lo, hi in overall_exponents(results):
        print(f"- {key}: first-call exponent {_fmt(e)} (CPU time: {_fmt(e_cpu)}) from {lo:,} to {hi:,} nodes")
    if args.only is None:
        print_varlen(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
