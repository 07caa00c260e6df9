"""Workloads timed against a hand-written NumPy floor.

For each workload one *iteration* of neuronika is what a training loop does:
build the graph again, ``backward()``, then ``zero_grad()`` on the parameters.
The *floor* is the same computation written by hand in NumPy (forward and
backward), the way a careful person would: no graph, no wasted calls. The
ratio neuronika / floor is the cost of the library.

Before any timing, each workload checks once that neuronika's loss and
gradients equal the floor's (``np.allclose``, rtol 1e-4, float32), so the floor
is honestly the same computation; a mismatch raises ``GradientMismatch``.

Timing: warm up (the first call compiles and caches the program), then take
many short samples (~30 ms each), alternating neuronika and floor samples (and
which of the two goes first), and report the median time per iteration of
each. Run from the repository root::

    python -m benchmarks                 # the full table (well under 2 minutes)
    python -m benchmarks --quick         # a smoke run: few, short samples
    python -m benchmarks --only tiny,mlp64
    python -m benchmarks --profile tiny  # cProfile of neuronika's iteration
    python benchmarks/run.py ...         # the same
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import platform
import pstats
import statistics
import sys
import time

import numpy as np

if __package__ in (None, ""):
    # Run as a script (python benchmarks/run.py): make the checkout importable
    # even where neuronika is not installed.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import neuronika  # noqa: E402

DTYPE = np.float32
SEED = 0
RTOL = 1e-4
ATOL = 1e-6


class GradientMismatch(AssertionError):
    """neuronika and the NumPy floor disagree: the floor is not the same computation."""


# ---- workloads ------------------------------------------------------------------------------

class Workload:
    """One benchmark case over fixed data.

    Subclasses set ``name``, ``target`` (the highest acceptable ratio, or None),
    ``about``, create the differentiable leaves in ``self.leaves`` (in creation
    order), and define ``build`` (the user's neuronika code, returning the loss)
    and ``floor`` (hand-written NumPy: returns the loss and the gradients of
    ``self.leaves``, in that order).
    """

    name = "?"
    target = None
    about = ""

    def __init__(self, seed: int = SEED):
        self.rng = np.random.default_rng(seed)
        self.leaves = []
        self.setup()
        # What an optimizer holds: the Params of the loss, fetched once.
        self.params = self.build().parameters()
        got = {id(p._node) for p in self.params}
        want = {id(v._node) for v in self.leaves}
        if got != want:
            raise GradientMismatch(f"{self.name}: parameters() of the loss are not the leaves the "
                                   f"floor differentiates")

    def array(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(DTYPE)

    def leaf(self, array):
        handle = neuronika.from_ndarray(array).requires_grad()
        self.leaves.append(handle)
        return handle

    def setup(self):
        raise NotImplementedError

    def build(self):
        raise NotImplementedError

    def floor(self):
        raise NotImplementedError

    # ---- neuronika's iteration ----
    def neuronika_step(self):
        """One training-loop iteration: build, backward, zero_grad."""
        self.build().backward()
        for p in self.params:
            p.zero_grad()

    def neuronika_result(self):
        """The loss and (copies of) the gradients of one iteration; leaves them zeroed."""
        loss = self.build()
        loss.backward()
        value = np.asarray(loss.data).copy()
        grads = [np.array(v.grad, copy=True) for v in self.leaves]
        for p in self.params:
            p.zero_grad()
        return value, grads


class Tiny(Workload):
    name = "tiny"
    target = 3.0
    about = "sum(tanh(x.mm(w) + b)), x (4, 8) data, w (8, 8) and b (8,) differentiable"

    def setup(self):
        self.x_data = self.array(4, 8)
        self.x = neuronika.from_ndarray(self.x_data)
        self.w = self.leaf(self.array(8, 8, scale=0.5))
        self.b = self.leaf(self.array(8, scale=0.5))

    def build(self):
        return (self.x.mm(self.w) + self.b).tanh().sum()

    def floor(self):
        x, w, b = self.x_data, self.w.data, self.b.data
        t = x @ w
        t += b
        np.tanh(t, out=t)
        loss = t.sum()
        g = 1 - t * t                       # d loss / d (xw + b); the seed is 1
        return loss, [x.T @ g, g.sum(axis=0)]


class MLP(Workload):
    """784-256-128-10 ReLU MLP with biases, log_softmax over classes, NLL loss written with
    ops: -(logp * onehot).sum() / batch."""

    sizes = (784, 256, 128, 10)

    def __init__(self, batch: int, target: float, seed: int = SEED):
        self.batch = batch
        self.name = f"mlp{batch}"
        self.target = target
        self.about = (f"784-256-128-10 ReLU MLP, log_softmax + NLL with ops, batch {batch}; "
                      f"all weights and biases differentiable")
        super().__init__(seed)

    def setup(self):
        n_in, h1, h2, n_out = self.sizes
        batch = self.batch
        self.x_data = self.array(batch, n_in)
        labels = self.rng.integers(0, n_out, batch)
        self.onehot_data = np.eye(n_out, dtype=DTYPE)[labels]
        self.x = neuronika.from_ndarray(self.x_data)
        self.onehot = neuronika.from_ndarray(self.onehot_data)
        layers = []
        for fan_in, fan_out in ((n_in, h1), (h1, h2), (h2, n_out)):
            w = self.leaf(self.array(fan_in, fan_out, scale=np.sqrt(2.0 / fan_in)))
            b = self.leaf(self.array(fan_out, scale=0.1))
            layers.append((w, b))
        self.layers = layers

    def build(self):
        (w1, b1), (w2, b2), (w3, b3) = self.layers
        h = (self.x.mm(w1) + b1).relu()
        h = (h.mm(w2) + b2).relu()
        logp = (h.mm(w3) + b3).log_softmax(axis=1)
        return -(logp * self.onehot).sum() / self.batch

    def floor(self):
        (w1, b1), (w2, b2), (w3, b3) = [(w.data, b.data) for w, b in self.layers]
        x, onehot, batch = self.x_data, self.onehot_data, self.batch
        # forward (ReLU in place: h > 0 is the same mask as pre-activation > 0)
        h1 = x @ w1
        h1 += b1
        np.maximum(h1, 0, out=h1)
        h2 = h1 @ w2
        h2 += b2
        np.maximum(h2, 0, out=h2)
        z = h2 @ w3
        z += b3
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(logp * onehot).sum() / batch
        # backward. The exact adjoint of log_softmax: the floor does not use
        # softmax - onehot, which holds only because each onehot row sums to 1
        # (a fact about the data that neuronika cannot know).
        dlogp = onehot * (-1.0 / batch)
        dz = dlogp - np.exp(logp) * dlogp.sum(axis=1, keepdims=True)
        gw3 = h2.T @ dz
        gb3 = dz.sum(axis=0)
        dh2 = dz @ w3.T
        dh2 *= h2 > 0
        gw2 = h1.T @ dh2
        gb2 = dh2.sum(axis=0)
        dh1 = dh2 @ w2.T
        dh1 *= h1 > 0
        gw1 = x.T @ dh1
        gb1 = dh1.sum(axis=0)
        return loss, [gw1, gb1, gw2, gb2, gw3, gb3]


CHAIN_OPS = 50
CHAIN_CYCLE = ("x * 1.01", "sigmoid", "x - 0.5", "x * 4.0", "tanh", "sin")


class Chain(Workload):
    """50 chained elementwise ops on 10,000 elements, cycling through x * 1.01, sigmoid,
    x - 0.5, x * 4.0, tanh, sin. Values stay in about (-1, 1) and gradients of order 0.1
    ((sigmoid(x) - 0.5) * 4 = 2 tanh(x / 2): nothing saturates or vanishes); the 50th op is
    a sigmoid, so the summed values are positive and the loss has no cancellation."""

    name = "chain"
    target = None
    about = f"{CHAIN_OPS} chained elementwise ops ({', '.join(CHAIN_CYCLE)}, ...) on 10,000 elements"

    def setup(self):
        self.v = self.leaf(self.array(10_000))

    def build(self):
        y = self.v
        for k in range(CHAIN_OPS):
            kind = k % 6
            if kind == 0:
                y = y * 1.01
            elif kind == 1:
                y = y.sigmoid()
            elif kind == 2:
                y = y - 0.5
            elif kind == 3:
                y = y * 4.0
            elif kind == 4:
                y = y.tanh()
            else:
                y = y.sin()
        return y.sum()

    def floor(self):
        x = self.v.data
        saved = []                          # what each op's derivative reads
        for k in range(CHAIN_OPS):
            kind = k % 6
            if kind == 0:
                x = x * 1.01
                saved.append(None)
            elif kind == 1:
                x = 1.0 / (1.0 + np.exp(-x))
                saved.append(x)             # sigmoid' = y (1 - y)
            elif kind == 2:
                x = x - 0.5
                saved.append(None)
            elif kind == 3:
                x = x * 4.0
                saved.append(None)
            elif kind == 4:
                x = np.tanh(x)
                saved.append(x)             # tanh' = 1 - y^2
            else:
                saved.append(x)             # sin' = cos(x)
                x = np.sin(x)
        loss = x.sum()
        g = None                            # d loss / d x; the seed (all ones) is implicit
        for k in range(CHAIN_OPS - 1, -1, -1):
            kind, s = k % 6, saved[k]
            if kind == 0:
                d = 1.01
            elif kind == 1:
                d = s * (1 - s)
            elif kind == 2:
                continue                    # x - 0.5 passes the gradient unchanged
            elif kind == 3:
                d = 4.0
            elif kind == 4:
                d = 1 - s * s
            else:
                d = np.cos(s)
            if g is None:
                g = d if isinstance(d, np.ndarray) else np.full(x.shape, d, DTYPE)
            else:
                g *= d
        return loss, [g]


WORKLOADS = {
    "tiny": Tiny,
    "mlp64": lambda seed=SEED: MLP(64, 1.3, seed),
    "mlp512": lambda seed=SEED: MLP(512, 1.1, seed),
    "chain": Chain,
}


# ---- correctness ----------------------------------------------------------------------------

def check(workload: Workload) -> float:
    """Compare neuronika's loss and gradients with the floor's; raise GradientMismatch if they
    differ. Returns the largest relative difference seen (for information)."""
    nk_loss, nk_grads = workload.neuronika_result()
    fl_loss, fl_grads = workload.floor()
    fl_loss = np.asarray(fl_loss)
    pairs = [("loss", nk_loss, fl_loss)]
    pairs += [(f"grad {i} (shape {np.shape(f)})", n, f)
              for i, (n, f) in enumerate(zip(nk_grads, fl_grads))]
    problems = []
    if len(nk_grads) != len(fl_grads):
        problems.append(f"neuronika gives {len(nk_grads)} gradients, the floor {len(fl_grads)}")
    worst = 0.0
    for what, n, f in pairs:
        n, f = np.asarray(n), np.asarray(f)
        if n.dtype != DTYPE or f.dtype != DTYPE:
            problems.append(f"{what}: dtypes neuronika {n.dtype}, floor {f.dtype}; both must be "
                            f"{np.dtype(DTYPE)}")
            continue
        if n.shape != f.shape:
            problems.append(f"{what}: shapes neuronika {n.shape}, floor {f.shape}")
            continue
        if not np.all(np.isfinite(n)) or not np.all(np.isfinite(f)):
            problems.append(f"{what}: not finite")
            continue
        scale = float(np.max(np.abs(f))) if f.size else 0.0
        diff = float(np.max(np.abs(n.astype(np.float64) - f))) if f.size else 0.0
        worst = max(worst, diff / scale if scale else diff)
        if not np.allclose(n, f, rtol=RTOL, atol=ATOL):
            problems.append(f"{what}: max |neuronika - floor| = {diff:.3g} (max |floor| = {scale:.3g})")
    if problems:
        raise GradientMismatch(f"{workload.name}: neuronika and the NumPy floor disagree "
                               f"(rtol {RTOL}, atol {ATOL}):\n  " + "\n  ".join(problems))
    return worst


# ---- timing ---------------------------------------------------------------------------------

def _per_iteration(fn, n):
    loop = range(n)
    start = time.perf_counter()
    for _ in loop:
        fn()
    return (time.perf_counter() - start) / n


def _iterations_for(fn, seconds):
    """How many iterations of fn take about ``seconds`` (from the fastest of three trials, so
    that one burst of noise on a shared machine does not shrink every sample to 1 iteration)."""
    n = 1
    while _per_iteration(fn, n) * n < min(seconds, 0.005) and n < 1 << 20:
        n *= 2
    per_iteration = min(_per_iteration(fn, n) for _ in range(3))
    return max(1, round(seconds / per_iteration))


def measure(workload, samples=41, sample_s=0.030, warmup_s=0.25):
    """Median per-iteration seconds of neuronika and of the floor, from interleaved samples."""
    nk, fl = workload.neuronika_step, workload.floor
    deadline = time.perf_counter() + warmup_s
    warm = 0
    while warm < 3 or time.perf_counter() < deadline:
        nk()
        fl()
        warm += 1
    n_nk = _iterations_for(nk, sample_s)
    n_fl = _iterations_for(fl, sample_s)
    t_nk, t_fl = [], []
    gc.collect()
    for i in range(samples):
        if i % 2 == 0:
            t_nk.append(_per_iteration(nk, n_nk))
            t_fl.append(_per_iteration(fl, n_fl))
        else:
            t_fl.append(_per_iteration(fl, n_fl))
            t_nk.append(_per_iteration(nk, n_nk))
    return {
        "neuronika": statistics.median(t_nk), "floor": statistics.median(t_fl),
        "n_neuronika": n_nk, "n_floor": n_fl, "samples": samples,
        "spread_neuronika": _spread(t_nk), "spread_floor": _spread(t_fl),
    }


def _spread(times):
    """Half the interquartile range, relative to the median."""
    if len(times) < 4:
        return float("nan")
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / 2 / statistics.median(times)


# ---- reporting ------------------------------------------------------------------------------

def machine_facts():
    blas = "?"
    try:
        blas_info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas_info.get('name', '?')} {blas_info.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    threads = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ]
    return [
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"numpy {np.__version__} (BLAS: {blas}), neuronika {neuronika.__version__}",
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"CPUs: {os.cpu_count()} (usable: {usable}), BLAS threads: "
        f"{', '.join(threads) or 'library default'}",
    ]


def _us(seconds):
    us = seconds * 1e6
    return f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def format_table(rows):
    """rows: (name, target or None, result dict) -> markdown table lines."""
    header = ["workload", "neuronika µs", "NumPy floor µs", "ratio", "target", "met?"]
    body = []
    for name, target, result in rows:
        ratio = result["neuronika"] / result["floor"]
        body.append([
            name, _us(result["neuronika"]), _us(result["floor"]), f"{ratio:.2f}",
            "-" if target is None else f"<= {target:g}",
            "-" if target is None else ("yes" if ratio <= target else "no"),
        ])
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    right = [False, True, True, True, False, False]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return [line(header), rule] + [line(r) for r in body]


def profile(name, seconds=2.0, top=20, out=None):
    """cProfile over about ``seconds`` (unprofiled) worth of neuronika iterations of one workload."""
    out = out or sys.stdout
    workload = WORKLOADS[name]()
    check(workload)
    for _ in range(5):
        workload.neuronika_step()
    n = _iterations_for(workload.neuronika_step, seconds)
    step = workload.neuronika_step
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    for _ in range(n):
        step()
    profiler.disable()
    print(f"cProfile: {n} iterations of neuronika's {name} step (build, backward, zero_grad); "
          f"top {top} by tottime", file=out)
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(buffer.getvalue().strip("\n"), file=out)


def _names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(WORKLOADS)}")
    return names


def _name(text):
    if text not in WORKLOADS:
        raise argparse.ArgumentTypeError(f"unknown workload {text!r}; choose from "
                                         f"{', '.join(WORKLOADS)}")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time neuronika (graph rebuilt each iteration: build, backward, zero_grad) "
                    "against a hand-written NumPy floor of the same computation.")
    parser.add_argument("--quick", action="store_true",
                        help="few, short samples: a smoke check, not a measurement")
    parser.add_argument("--only", type=_names, metavar="NAME[,NAME]",
                        help=f"run only these workloads ({', '.join(WORKLOADS)})")
    parser.add_argument("--profile", type=_name, metavar="NAME",
                        help="cProfile neuronika's iteration of one workload; print the top "
                             "functions by tottime (no table)")
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per side per workload (default 41; 5 with --quick)")
    parser.add_argument("--sample-ms", type=float, default=None,
                        help="length of one sample in ms (default 30; 5 with --quick)")
    args = parser.parse_args(argv)

    for fact in machine_facts():
        print(fact)
    print()

    if args.profile:
        profile(args.profile, seconds=0.5 if args.quick else 2.0)
        return 0

    samples = args.samples or (5 if args.quick else 41)
    sample_s = (args.sample_ms or (5.0 if args.quick else 30.0)) / 1000
    warmup_s = 0.05 if args.quick else 0.25
    rows, notes = [], []
    for name in args.only or list(WORKLOADS):
        workload = WORKLOADS[name]()
        worst = check(workload)                 # raises GradientMismatch: loud, before timing
        result = measure(workload, samples=samples, sample_s=sample_s, warmup_s=warmup_s)
        rows.append((name, workload.target, result))
        notes.append(f"- {name}: {workload.about}. Gradients match the floor (max rel. diff "
                     f"{worst:.1e}). {result['samples']} samples per side of "
                     f"{result['n_neuronika']} / {result['n_floor']} iterations; half-IQR "
                     f"{result['spread_neuronika']:.0%} / {result['spread_floor']:.0%}.")
    for line in format_table(rows):
        print(line)
    print()
    print(f"Median time per iteration over interleaved samples of ~{sample_s * 1000:g} ms; "
          f"ratio = neuronika / floor.")
    for note in notes:
        print(note)
    noisy = [name for name, _, r in rows if max(r["spread_neuronika"], r["spread_floor"]) > 0.10]
    if noisy:
        print(f"WARNING: noisy samples (half-IQR above 10%) for {', '.join(noisy)}: the machine was "
              f"busy; run again before trusting those rows.")
    print()
    print(f"neuronika.transform.cache_info(): {neuronika.transform.cache_info()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
