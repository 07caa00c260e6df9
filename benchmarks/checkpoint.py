"""What ``neuronika.checkpoint`` saves and costs: peak memory and time per training step of a
deep residual MLP, with and without checkpointing each block.

Each of ``--blocks`` blocks is ``h + tanh(tanh(h @ W1.T + b1) @ W2.T + b2)`` (width
``--width``, hidden ``4 * width``, float32; ``F.linear``). A step is the loss (mean of
squares of the output) and the gradients of every parameter, on two paths:

- ``value_and_grad``: ``neuronika.value_and_grad`` of a function of the parameter arrays;
- ``imperative``: the same function over ``Param`` s, then ``loss.backward()``.

Without checkpointing, the backward reads every block's intermediates (the input, both
tanh outputs): memory grows with the depth times the block's activations. Checkpointed,
only each block's input is kept; a block's intermediates live only while the backward
recomputes and differentiates that block, at the cost of one more forward pass.

``peak MiB``: the largest amount of memory the step held above what was held before it
(``tracemalloc``; NumPy reports its buffers to it), gradients included (they are the
same in both columns); ``time ms``: the median step (tracemalloc off).

    python -m benchmarks.checkpoint                  # 32 blocks, width 64, batch 512
    python -m benchmarks.checkpoint --width 256 --batch 64 --repeats 5

On a machine shared with other work, pin BLAS to one thread (``OPENBLAS_NUM_THREADS=1``):
oversubscribed BLAS threads make the times meaningless.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
import tracemalloc

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import neuronika  # noqa: E402
from neuronika.nn import functional as F  # noqa: E402


def block(h, w1, b1, w2, b2):
    return h + F.linear(F.linear(h, w1, b1).tanh(), w2, b2).tanh()


def make_loss(blocks, checkpointed):
    step = neuronika.checkpoint(block) if checkpointed else block

    def loss(params, x):
        h = x
        for k in range(blocks):
            h = step(h, *params[4 * k:4 * k + 4])
        return (h * h).mean()
    return loss


def parameters(blocks, width, seed=0):
    rng = np.random.default_rng(seed)
    hidden = 4 * width
    params = []
    for _ in range(blocks):
        params += [(rng.uniform(-1, 1, (hidden, width)) / np.sqrt(width)).astype(np.float32),
                   np.zeros(hidden, np.float32),
                   (rng.uniform(-1, 1, (width, hidden)) / np.sqrt(hidden)).astype(np.float32),
                   np.zeros(width, np.float32)]
    return params


def functional_step(blocks, checkpointed, params, x):
    value_and_grad = neuronika.value_and_grad(make_loss(blocks, checkpointed))

    def step():
        return value_and_grad(params, x)
    return step


def imperative_step(blocks, checkpointed, params, x):
    loss_of = make_loss(blocks, checkpointed)
    leaves = [neuronika.from_ndarray(p.copy()).requires_grad() for p in params]

    def step():
        loss = loss_of(leaves, x)
        loss.backward()
        grads = [p.grad for p in leaves]
        for p in leaves:
            p.zero_grad()
        return loss.data, grads
    return step


def peak_bytes(step):
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - before


def seconds(steps, repeats):
    """The median time of each step, the steps run in turn (a load on the machine that
    changes while it runs weighs on each alike)."""
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, into in zip(steps, times):
            start = time.perf_counter()
            step()
            into.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--blocks", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    params = parameters(args.blocks, args.width)
    x = np.random.default_rng(1).standard_normal((args.batch, args.width)).astype(np.float32)
    param_mib = sum(p.nbytes for p in params) / 2 ** 20
    print(f"{args.blocks} blocks, width {args.width}, hidden {4 * args.width}, batch {args.batch}, "
          f"float32; parameters {param_mib:.1f} MiB (their gradients as much again)")
    print(f"{'path':<16}{'checkpoint':>11}{'peak MiB':>10}{'time ms':>10}{'mem ratio':>11}{'time ratio':>12}")
    for name, make in (("value_and_grad", functional_step), ("imperative", imperative_step)):
        steps = [make(args.blocks, checkpointed, params, x) for checkpointed in (False, True)]
        results = []
        for step in steps:
            for _ in range(3):                  # traced, interpreted, compiled
                value, grads = step()
            results.append((np.array(value), [np.array(g) for g in grads]))
        (v0, g0), (v1, g1) = results
        if not np.array_equal(v0, v1) or any(not np.array_equal(a, b) for a, b in zip(g0, g1)):
            raise AssertionError(f"{name}: the checkpointed step's loss or gradients differ")
        m0, m1 = (peak_bytes(step) / 2 ** 20 for step in steps)
        t0, t1 = (1e3 * t for t in seconds(steps, args.repeats))
        print(f"{name:<16}{'no':>11}{m0:>10.1f}{t0:>10.1f}")
        print(f"{name:<16}{'yes':>11}{m1:>10.1f}{t1:>10.1f}{m1 / m0:>11.2f}{t1 / t0:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
