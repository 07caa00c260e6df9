"""Per-example gradients: one DP-SGD step's gradient work, against a hand-batched NumPy version.

The workload is an MLP ``x -> tanh(x @ W1 + b1) @ W2 + b2`` (784-256-10 by default) with the
cross-entropy of each example, a batch of B examples (64 and 256 by default). One step is
what differentially private SGD (Abadi et al. 2016) does before its noise: every example's
gradient, each scaled to L2 norm at most C = 1 over all parameters together, summed over the
batch. Every path returns that sum (a dict shaped like the parameters):

- ``numpy``: written by hand, batched: the forward, softmax minus one-hot, the per-example
  backward as outer products (``einsum("bi,bj->bij")``), the squared norms as row dot
  products (``einsum("bi,bi->b", optimize=True)``, which goes through BLAS: about 2x
  faster than without ``optimize`` at these sizes), the clipped sum as one product
  ``scale @ rows``. The ratios are to this path.
- ``neuronika``: ``neuronika.jit`` of ``neuronika.vmap(neuronika.grad(loss), in_axes=(None,
  0, 0))`` and the same clipping code over ``neuronika.numpy``: one compiled program.
- ``torch-func`` (when torch is installed): ``torch.func.vmap(torch.func.grad(loss))`` where
  ``loss`` runs an ``nn.Sequential`` through ``torch.func.functional_call``, then the same
  clipping, eager; ``torch-compile``: that step under ``torch.compile`` (compiling is done
  before timing; a failure is a footnote).
- ``jax-jit`` (when jax is installed): ``jax.jit`` of ``jax.vmap(jax.grad(loss))`` and the
  clipping; each step waits for its result (``block_until_ready``).

Before timing, every path's result is checked against the NumPy path's (``np.allclose``,
the absolute tolerance a fraction of the parameter's largest entry; float32: rtol 1e-4,
atol 3e-4 of it; float64: rtol 1e-10, atol 1e-12 of it). In float64 every path agrees with
NumPy to about 1e-15; in float32 neuronika and jax agree to under 1e-6 of the largest entry,
torch.func to about 7e-5 of it.

Timing: warm-up excluded (first calls trace and compile), then samples taken round-robin
over the paths (the order rotating, as ``benchmarks.run.measure`` does), and each path's
median time per step, with half the interquartile range beside it.

Every framework runs with the same thread count (``--threads``, default 1: NumPy's BLAS
through threadpoolctl, ``torch.set_num_threads``, and for 1 XLA's CPU client through
``XLA_FLAGS``; for other counts XLA keeps its default, as in ``benchmarks.competitors``).

    python -m benchmarks.per_example                       # B = 64 and 256, float32, 1 thread
    python -m benchmarks.per_example --dtype float64 --batches 32
    python -m benchmarks.per_example --paths numpy,neuronika --sizes 64,128,10
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import competitors, run  # noqa: E402

PATHS = {
    "numpy": "hand-batched NumPy",
    "neuronika": "neuronika jit(vmap(grad))",
    "torch-func": "torch.func vmap(grad), eager",
    "torch-compile": "torch.compile of torch.func vmap(grad)",
    "jax-jit": "jax.jit(vmap(grad))",
}
_NEEDS = {"torch-func": "torch", "torch-compile": "torch", "jax-jit": "jax"}
CLIP = 1.0
# (rtol, atol as a fraction of the largest magnitude of the parameter's result)
TOLERANCE = {"float32": (1e-4, 3e-4), "float64": (1e-10, 1e-12)}


class Workload:
    """The MLP's parameters and one batch (``sizes``: input, hidden, classes)."""

    def __init__(self, batch, sizes=(784, 256, 10), dtype="float32", seed=0):
        rng = np.random.default_rng(seed)
        d, h, c = sizes
        self.dtype = np.dtype(dtype)
        self.params = {
            "w1": (rng.standard_normal((d, h)) / np.sqrt(d)).astype(self.dtype),
            "b1": (0.1 * rng.standard_normal(h)).astype(self.dtype),
            "w2": (rng.standard_normal((h, c)) / np.sqrt(h)).astype(self.dtype),
            "b2": (0.1 * rng.standard_normal(c)).astype(self.dtype),
        }
        self.x = rng.standard_normal((batch, d)).astype(self.dtype)
        self.y = rng.integers(0, c, batch)
        self.clip = CLIP


# ---- the paths: each maker returns step() -> {name: clipped sum} ----------------------------

def numpy_step(w):
    p, x, y, clip = w.params, w.x, w.y, w.clip
    rows = np.arange(len(y))

    def step():
        h = np.tanh(x @ p["w1"] + p["b1"])
        z = h @ p["w2"] + p["b2"]
        e = np.exp(z - z.max(axis=1, keepdims=True))
        dz = e / e.sum(axis=1, keepdims=True)           # softmax - onehot: each example's dloss/dz
        dz[rows, y] -= 1
        dh = (dz @ p["w2"].T) * (1 - h * h)
        grads = {"w1": np.einsum("bi,bj->bij", x, dh), "b1": dh,
                 "w2": np.einsum("bi,bj->bij", h, dz), "b2": dz}
        flat = {k: g.reshape(len(y), -1) for k, g in grads.items()}
        norms = np.sqrt(sum(np.einsum("bi,bi->b", g, g, optimize=True) for g in flat.values()))
        scale = 1 / np.maximum(1.0, norms / clip)
        return {k: (scale @ flat[k]).reshape(p[k].shape) for k in p}
    return step


def example_loss(params, x, y):
    """neuronika: the loss of one example."""
    from neuronika.numpy import tanh
    from neuronika.nn import functional as F
    z = tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
    return F.cross_entropy(z[None], y[None])


def neuronika_step(w):
    import neuronika
    import neuronika.numpy as nnp

    per_example = neuronika.vmap(neuronika.grad(example_loss), in_axes=(None, 0, 0))

    @neuronika.jit
    def clipped_sum(params, x, y, clip):
        grads = per_example(params, x, y)
        flat = {k: g.reshape(g.shape[0], -1) for k, g in grads.items()}
        norms = nnp.sqrt(sum(nnp.einsum("bi,bi->b", g, g) for g in flat.values()))
        scale = 1 / nnp.maximum(1.0, norms / clip)
        return {k: (scale @ flat[k]).reshape(grads[k].shape[1:]) for k in grads}

    def step():
        return clipped_sum(w.params, w.x, w.y, w.clip)
    step.program = clipped_sum
    return step


def _torch_parts(w):
    import torch
    from torch.func import functional_call, grad, vmap

    d, h = w.params["w1"].shape
    c = w.params["w2"].shape[1]
    model = torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.Tanh(), torch.nn.Linear(h, c))
    # nn.Linear keeps its weight as (out, in): the transposes of w1, w2
    params = {"0.weight": torch.from_numpy(w.params["w1"].T.copy()), "0.bias": torch.from_numpy(w.params["b1"]),
              "2.weight": torch.from_numpy(w.params["w2"].T.copy()), "2.bias": torch.from_numpy(w.params["b2"])}
    x, y = torch.from_numpy(w.x), torch.from_numpy(w.y)

    def loss(params, x, y):
        out = functional_call(model, params, (x[None],))
        return torch.nn.functional.cross_entropy(out, y[None])

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))

    def clipped_sum(params, x, y):
        grads = per_example(params, x, y)
        flat = {k: g.reshape(g.shape[0], -1) for k, g in grads.items()}
        norms = torch.sqrt(sum(torch.einsum("bi,bi->b", g, g) for g in flat.values()))
        scale = 1 / torch.clamp(norms / w.clip, min=1.0)
        return {k: (scale @ flat[k]).reshape(grads[k].shape[1:]) for k in grads}

    def as_ours(out):
        return {"w1": out["0.weight"].T.numpy(), "b1": out["0.bias"].numpy(),
                "w2": out["2.weight"].T.numpy(), "b2": out["2.bias"].numpy()}

    return torch, clipped_sum, params, x, y, as_ours


def torch_func_step(w):
    torch, clipped_sum, params, x, y, as_ours = _torch_parts(w)

    def step():
        with torch.no_grad():
            return clipped_sum(params, x, y)
    step.result = lambda: as_ours(step())
    return step


def torch_compile_step(w):
    torch, clipped_sum, params, x, y, as_ours = _torch_parts(w)
    compiled = torch.compile(clipped_sum, fullgraph=True)
    try:
        compiled(params, x, y)
    except Exception as error:  # noqa: BLE001 - any compile failure is reported, not fatal
        raise competitors.PathFailed(f"torch.compile(fullgraph=True) raised {type(error).__name__}: "
                                     f"{str(error).splitlines()[0] if str(error) else ''}") from None

    def step():
        return compiled(params, x, y)
    step.result = lambda: as_ours(step())
    return step


def jax_step(w):
    import jax
    import jax.numpy as jnp

    if w.dtype == np.float64:
        jax.config.update("jax_enable_x64", True)

    def loss(params, x, y):
        z = jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
        return -jax.nn.log_softmax(z)[y]

    per_example = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))

    @jax.jit
    def clipped_sum(params, x, y):
        grads = per_example(params, x, y)
        flat = {k: g.reshape(g.shape[0], -1) for k, g in grads.items()}
        norms = jnp.sqrt(sum(jnp.einsum("bi,bi->b", g, g) for g in flat.values()))
        scale = 1 / jnp.maximum(1.0, norms / w.clip)
        return {k: (scale @ flat[k]).reshape(grads[k].shape[1:]) for k in grads}

    params = jax.device_put(w.params)
    x, y = jax.device_put(w.x), jax.device_put(w.y)

    def step():
        return jax.block_until_ready(clipped_sum(params, x, y))
    step.result = lambda: {k: np.asarray(v) for k, v in step().items()}
    return step


MAKERS = {"numpy": numpy_step, "neuronika": neuronika_step, "torch-func": torch_func_step,
          "torch-compile": torch_compile_step, "jax-jit": jax_step}


class Mismatch(AssertionError):
    """A path's clipped sum differs from the NumPy path's."""


def check(key, step, reference, dtype):
    """Raise ``Mismatch`` unless ``step``'s result equals ``reference`` (the NumPy path's)."""
    rtol, atol = TOLERANCE[np.dtype(dtype).name]
    got = step.result() if hasattr(step, "result") else {k: np.asarray(v) for k, v in step().items()}
    for name, want in reference.items():
        have = np.asarray(got[name])
        scale = float(np.max(np.abs(want)))
        if have.shape != want.shape or not np.allclose(have, want, rtol=rtol, atol=atol * scale):
            worst = np.max(np.abs(have - want)) if have.shape == want.shape else f"shape {have.shape}"
            raise Mismatch(f"{PATHS[key]}: the clipped sum of {name} differs from NumPy's (largest "
                           f"difference {worst}, largest value {scale:.3g}; rtol {rtol}, atol {atol} "
                           f"of the largest value)")


class _Timed:
    """What ``run.measure`` needs: a key, the step, a reset (nothing to put back here)."""

    def __init__(self, key, step):
        self.key, self.step = key, step

    def reset(self):
        pass


def _keys(text):
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PATHS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown path(s) {', '.join(unknown)}; known: {', '.join(PATHS)}")
    return keys


def _ints(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.per_example",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=_ints, default=[64, 256], metavar="B[,B]")
    parser.add_argument("--sizes", type=_ints, default=[784, 256, 10], metavar="IN,HIDDEN,CLASSES")
    parser.add_argument("--dtype", choices=sorted(TOLERANCE), default="float32")
    parser.add_argument("--paths", type=_keys, default=None, metavar="KEY[,KEY]",
                        help=f"paths to time ({', '.join(PATHS)}; numpy always runs); default: all "
                             f"that are installed")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="every framework's thread count (default 1)")
    parser.add_argument("--samples", type=int, default=31, help="samples per path (default 31)")
    parser.add_argument("--sample-ms", type=float, default=100.0, help="length of one sample (default 100)")
    args = parser.parse_args(argv)
    if len(args.sizes) != 3:
        parser.error("--sizes takes three numbers: input, hidden, classes")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")

    try:
        lines = competitors.set_threads(args.threads)
    except RuntimeError as error:
        parser.error(str(error))
    keys = ["numpy"] + [k for k in PATHS if k != "numpy" and (args.paths is None or k in args.paths)]
    imported = {}
    for key in [k for k in keys if k in _NEEDS]:
        name = _NEEDS[key]
        if name not in imported:
            try:
                imported[name] = __import__(name)
            except ImportError:
                imported[name] = None
                lines.append(f"{name} is not installed; its paths are skipped")
        if imported[name] is None:
            keys.remove(key)
    if imported.get("torch") is not None:
        imported["torch"].set_num_threads(args.threads)
    lines += [f"{name} {module.__version__}" + (f": torch.set_num_threads({args.threads})" if name == "torch" else "")
              for name, module in imported.items() if module is not None]
    for line in run.machine_facts() + lines:
        print(line)
    d, h, c = args.sizes
    print(f"\nMLP {d}-{h}-{c} (tanh, cross-entropy), {args.dtype}: per-example gradients, each clipped "
          f"to L2 norm {CLIP}, summed; results checked equal to NumPy's before timing; median of "
          f"{args.samples} interleaved samples of ~{args.sample_ms:g} ms, warm-up excluded\n")

    rows, notes = [], []
    for batch in args.batches:
        workload = Workload(batch, tuple(args.sizes), args.dtype)
        steps, failed = {}, {}
        for key in keys:
            try:
                steps[key] = MAKERS[key](workload)
            except competitors.PathFailed as error:
                notes.append(f"[{len(notes) + 1}] B={batch}, {PATHS[key]}: {error}")
                failed[key] = f"failed [{len(notes)}]"
        reference = {k: np.asarray(v) for k, v in steps["numpy"]().items()}
        for key, step in steps.items():
            step()                          # the first calls trace, interpret, compile
            step()
            check(key, step, reference, args.dtype)
        times = run.measure([_Timed(k, s) for k, s in steps.items()], samples=args.samples,
                            sample_s=args.sample_ms / 1e3)
        floor = times["numpy"]["median"]
        for key in keys:
            if key in failed:
                rows.append([str(batch), PATHS[key], failed[key], "-", "-"])
                continue
            t = times[key]["median"]
            rows.append([str(batch), PATHS[key], run._us(t), run._percent(times[key]["spread"]), f"{t / floor:.2f}"])
    for line in run.format_table(rows, ["B", "path", "µs per step", "± (half IQR)", "ratio to NumPy"],
                                 [False, False, True, True, True]):
        print(line)
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
