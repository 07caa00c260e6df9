"""Data-parallel step time and scaling over MPI: ``python -m benchmarks.distributed``.

Two workloads, each a full training step (forward, cross-entropy, ``backward()``, the
gradient all-reduce, an SGD-with-momentum ``step()``, ``zero_grad()``) in float32:

- ``digits``: examples/distributed_digits.py's MLP, 64-128-10 with ReLU and dropout, global
  batch 32;
- ``mlp512``: benchmarks/run.py's 784-256-128-10 ReLU MLP, global batch 512.

Each runs as one plain process (``plain``: the model alone; ``ddp``: wrapped in
DistributedDataParallel, a world of one) and under ``mpiexec -n 2`` (DDP, each rank half of
the same global batch), with the BLAS threads as they are and with ``OMP_NUM_THREADS=1``
(and ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``). A sample is a block of steps (all ranks
start it together at a barrier; its time is the slowest rank's); warm-up steps are not
timed; within a process the paths' blocks are interleaved, and the launches of all the
configurations are interleaved over ``--rounds`` rounds. The table reports medians per step;
*speedup* is plain one-process time over the 2-process time, *efficiency* the speedup over 2.
The ``all-reduce alone`` column times one blocking ``Allreduce`` of all the gradients at 2
processes.

    python -m benchmarks.distributed                  # the table (about a minute on 2 cores)
    python -m benchmarks.distributed --quick          # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __package__ in (None, ""):
    sys.path.insert(0, ROOT)

import neuronika  # noqa: E402
from neuronika import distributed, nn, optim  # noqa: E402
from neuronika.nn import functional as F  # noqa: E402

WORKLOADS = {
    "digits": {"batch": 32, "about": "64-128-10 MLP, ReLU, dropout 0.1"},
    "mlp512": {"batch": 512, "about": "784-256-128-10 ReLU MLP"},
}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def build(name):
    neuronika.manual_seed(0)
    if name == "digits":
        return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 10))
    return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def trainer(name, wrap):
    """A function running one training step on this rank's shard of the global batch."""
    rank, world = distributed.rank(), distributed.world_size()
    batch = WORKLOADS[name]["batch"]
    features = 64 if name == "digits" else 784
    rng = np.random.default_rng(0)
    x = rng.random((batch, features), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    per = batch // world
    x, y = x[rank * per:(rank + 1) * per], y[rank * per:(rank + 1) * per]
    model = build(name)
    if wrap:
        model = nn.DistributedDataParallel(model)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return step, model


def _block(fn, n):
    distributed.barrier()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    elapsed = np.array([(time.perf_counter() - start) / n])
    return float(distributed.all_reduce(elapsed, op="max", check=False)[0])


def worker(name, samples, sample_s, warmup_s):
    """Run inside each process: time the paths, print a JSON line on rank 0."""
    distributed.init()
    world = distributed.world_size()
    paths = {"ddp": trainer(name, wrap=True)}
    if world == 1:
        paths["plain"] = trainer(name, wrap=False)
    else:
        model = paths["ddp"][1]
        count = sum(p.data.size for p in model.parameters())
        buffer = np.ones(count, np.float32)
        world_ = distributed._get()
        paths["allreduce"] = (lambda: world_.allreduce(buffer, "sum"), None)
    deadline = time.perf_counter() + warmup_s
    while True:
        for step, _ in paths.values():
            step()
        if distributed.all_reduce(time.perf_counter() > deadline, op="max", check=False):
            break
    counts = {}
    for key, (step, _) in paths.items():
        n = 1
        while _block(step, n) * n < sample_s and n < 1 << 16:
            n *= 2
        counts[key] = distributed.broadcast(n)
    times = {key: [] for key in paths}
    keys = list(paths)
    for i in range(samples):
        order = keys[i % len(keys):] + keys[:i % len(keys)]
        for key in order:
            times[key].append(_block(paths[key][0], counts[key]))
    if distributed.rank() == 0:
        print("RESULT " + json.dumps(times), flush=True)


# ---- the driver -------------------------------------------------------------------------------------

def _env(threads):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MV2_")) and k not in THREAD_VARIABLES}
    if threads == "1":
        env.update({k: "1" for k in THREAD_VARIABLES})
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def _mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.path.exists(here) else shutil.which("mpiexec")


def launch(name, ranks, threads, samples, sample_s, warmup_s, timeout=300):
    command = [sys.executable, "-m", "benchmarks.distributed", "--worker", name, "--samples", str(samples),
               "--sample-ms", str(sample_s * 1000), "--warmup-ms", str(warmup_s * 1000)]
    if ranks > 1:
        mpiexec = _mpiexec()
        if mpiexec is None:
            raise RuntimeError("benchmarks.distributed: mpiexec not found; pip install -e \".[mpi]\"")
        command = [mpiexec, "-n", str(ranks)] + command
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_env(threads),
                            cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"benchmarks.distributed: {' '.join(command)} failed ({result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return json.loads(lines[-1][len("RESULT "):])


def measure(names, thread_settings, rounds, samples, sample_s, warmup_s, log=print):
    """{(name, threads): {"plain", "ddp1", "ddp2", "allreduce": [seconds per step, ...]}}."""
    configs = [(name, threads, ranks) for name in names for threads in thread_settings for ranks in (1, 2)]
    results = {}
    for r in range(rounds):
        order = configs if r % 2 == 0 else configs[::-1]
        for name, threads, ranks in order:
            if log:
                log(f"round {r + 1}/{rounds}: {name}, threads {threads}, {ranks} process(es)")
            times = launch(name, ranks, threads, samples, sample_s, warmup_s)
            entry = results.setdefault((name, threads), {})
            for key, values in times.items():
                label = {"ddp": f"ddp{ranks}"}.get(key, key)
                entry.setdefault(label, []).extend(values)
    return results


def _ms(seconds):
    return f"{seconds * 1e3:.3f}" if seconds < 0.01 else f"{seconds * 1e3:.2f}"


def table(results):
    header = ["workload", "BLAS threads", "global batch", "plain, 1 process (ms/step)", "DDP, 1 process",
              "DDP, 2 processes", "all-reduce alone", "speedup", "efficiency"]
    rows = [header, []]
    for (name, threads), entry in results.items():
        median = {k: statistics.median(v) for k, v in entry.items()}
        speedup = median["plain"] / median["ddp2"]
        rows.append([name, "1" if threads == "1" else "default", str(WORKLOADS[name]["batch"]),
                     _ms(median["plain"]), _ms(median["ddp1"]), _ms(median["ddp2"]),
                     _ms(median["allreduce"]), f"{speedup:.2f}x", f"{speedup / 2:.0%}"])
    widths = [max(len(row[i]) for row in rows if row) for i in range(len(header))]
    rows[1] = [("-" * (w - 1) + ":") if i >= 2 else "-" * w for i, w in enumerate(widths)]
    lines = []
    for number, row in enumerate(rows):
        cells = [c.rjust(w) if number > 1 and i >= 2 else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description="Data-parallel step time and scaling over MPI")
    parser.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    parser.add_argument("--threads", default="default,1", help="BLAS thread settings: default and/or 1")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=15, help="samples per launch and path")
    parser.add_argument("--sample-ms", type=float, default=50.0)
    parser.add_argument("--warmup-ms", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="one round of few short samples")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.samples, args.sample_ms / 1000, args.warmup_ms / 1000)
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; choose from {sorted(WORKLOADS)}")
    threads = [t for t in args.threads.split(",") if t]
    if any(t not in ("default", "1") for t in threads):
        parser.error(f"--threads takes 'default' and/or '1', got {args.threads!r}")
    if args.quick:
        args.rounds, args.samples, args.sample_ms, args.warmup_ms = 1, 3, 5.0, 20.0
    start = time.perf_counter()
    results = measure(names, threads, args.rounds, args.samples, args.sample_ms / 1000,
                      args.warmup_ms / 1000)
    print(f"\npython {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs; "
          f"{args.rounds} round(s) x {args.samples} samples per path; "
          f"{time.perf_counter() - start:.0f} s")
    for name in names:
        print(f"- {name}: {WORKLOADS[name]['about']}, global batch {WORKLOADS[name]['batch']}")
    print()
    for line in table(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
