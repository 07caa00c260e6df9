"""The same training steps on CUDA (CuPy) and on the CPU (NumPy), compared.

    python -m benchmarks.gpu_check           # needs CuPy (pip install -e ".[gpu]") and a GPU

Three workloads, float64 so that the comparison is tight: the digits MLP (64-128-10, ReLU,
cross-entropy, batch 32) and a small CNN (conv 1->4 3x3, ReLU, conv 4->8 3x3, ReLU,
flatten, linear, cross-entropy, batch 8 of 1x12x12), trained through modules and
``backward()``; and the functional face: ``value_and_grad`` of a tanh network with a
recurrence (rolled into a loop) over a dict of arrays. For each: the loss and every
gradient over three SGD steps, on both devices, from the same initial parameters; the
largest relative difference is printed, and the check fails (exit 1) above 1e-9. A step
that the GPU cannot run is reported with its error, naming the op. With two GPUs or more
the comparison runs on the second one too (``cuda:1``: arrays made there, not on GPU 0).
Without CuPy or without a GPU it says so and exits 0: there is nothing to compare.
``--against array_api_strict`` runs the same comparison against array-api-strict on the
CPU (what the tests do, on machines without a GPU); ``--device device1`` there puts the
arrays on one of its other devices (which, like a GPU, refuse implicit copies to NumPy).
"""
from __future__ import annotations

import sys
import time

import numpy as np

import neuronika
from neuronika import backend, nn
from neuronika.nn import functional as F

TOLERANCE = 1e-9


def gpu_available():
    """(True, description) when CuPy sees a CUDA device, else (False, why not)."""
    try:
        import cupy
    except ImportError:
        return False, "CuPy is not installed (pip install -e \".[gpu]\")"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:              # no driver, no device: CuPy raises its own errors
        return False, f"CuPy finds no CUDA device ({type(error).__name__}: {error})"
    if count < 1:
        return False, "CuPy finds no CUDA device"
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    return True, f"{count} CUDA device(s), device 0: {name.decode() if isinstance(name, bytes) else name}"


def mlp():
    return nn.Sequential(nn.Linear(64, 128, dtype=np.float64), nn.ReLU(), nn.Linear(128, 10, dtype=np.float64))


def cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, dtype=np.float64), nn.ReLU(), nn.Conv2d(4, 8, 3, dtype=np.float64),
                         nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10, dtype=np.float64))


def data(name, rng):
    if name == "mlp":
        return rng.random((32, 64)), rng.integers(0, 10, 32)
    return rng.random((8, 1, 12, 12)), rng.integers(0, 10, 8)


def steps(model, x, labels, device, count=3, lr=0.05):
    """Loss and gradients (NumPy arrays) of ``count`` SGD steps of ``model`` on ``device``."""
    model = model.to(device)
    x = neuronika.from_ndarray(x).to(device)
    labels = neuronika.from_ndarray(labels).to(device)
    record = []
    for _ in range(count):
        loss = F.cross_entropy(model(x), labels)
        loss.backward()
        params = list(model.parameters())
        record.append([backend.to_numpy(loss.data)] + [backend.to_numpy(p.grad) for p in params])
        with neuronika.no_grad():
            for p in params:
                p -= lr * p.grad
                p.zero_grad()
    return record


def functional_steps(x, labels, device, count=3, lr=0.05):
    """The functional face: loss and gradients of ``count`` SGD steps of ``value_and_grad``
    over a dict of arrays on ``device``."""
    import neuronika.numpy as nnp
    space = backend.resolve(device)
    rng = np.random.default_rng(1)
    params = {"w1": rng.standard_normal((64, 32)) * 0.1, "b1": np.zeros(32),
              "wh": rng.standard_normal((32, 32)) * 0.1, "w2": rng.standard_normal((32, 10)) * 0.1}
    params = {k: backend.move(v, space) for k, v in params.items()}
    x, labels = backend.move(x, space), backend.move(labels, space)

    def loss(p, x, labels):
        h = nnp.tanh(nnp.matmul(x, p["w1"]) + p["b1"])
        for _ in range(12):                     # a recurrence: one loop in the program
            h = nnp.tanh(nnp.matmul(h, p["wh"]) + h)
        return F.cross_entropy(nnp.matmul(h, p["w2"]), labels)

    step = neuronika.value_and_grad(loss)
    record = []
    for _ in range(count):
        value, grads = step(params, x, labels)
        record.append([backend.to_numpy(value)] + [backend.to_numpy(grads[k]) for k in sorted(grads)])
        params = {k: params[k] - lr * grads[k] for k in params}
    return record


def largest_difference(a, b):
    worst = 0.0
    for step_a, step_b in zip(a, b):
        for u, v in zip(step_a, step_b):
            scale = max(float(np.max(np.abs(u))), 1e-30)
            worst = max(worst, float(np.max(np.abs(u - v))) / scale)
    return worst


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="cuda", help="cuda (default) or array_api_strict")
    parser.add_argument("--device", help="with --against: one of the library's devices, by name")
    args = parser.parse_args(argv)
    if args.against == "cuda":
        ok, about = gpu_available()
        if not ok:
            print(f"gpu_check: no GPU to check: {about}. Nothing was compared.")
            return 0
        import cupy
        devices = [("cuda", "GPU")]
        if cupy.cuda.runtime.getDeviceCount() > 1:
            devices.append(("cuda:1", "GPU 1"))
    else:
        import importlib
        module = importlib.import_module(args.against)
        about = f"{args.against} on the CPU, in place of a GPU"
        device, label = module, args.against
        if args.device:
            found = [d for d in module.__array_namespace_info__().devices() if args.device in str(d)]
            if not found:
                print(f"gpu_check: {args.against} has no device {args.device!r}")
                return 1
            device, label = backend.namespace(module, found[0]), f"{args.against} on {args.device}"
        devices = [(device, label)]
    print(f"gpu_check: {about}")
    failed = False
    for device, label in devices:
        failed = _compare(device, label) or failed
    return 1 if failed else 0


def _module_run(name, make):
    """``run(target)``: three steps of a fresh ``make()`` model on ``target``, from the same
    initial parameters and data every call."""
    neuronika.manual_seed(0)
    state = {k: v.copy() for k, v in make().state_dict().items()}
    x, labels = data(name, np.random.default_rng(0))

    def run(target):
        model = make()
        model.load_state_dict(state)
        return steps(model, x, labels, target)
    return run


def _functional_run():
    x, labels = data("mlp", np.random.default_rng(0))
    return lambda target: functional_steps(x, labels, target)


WORKLOADS = (("mlp", lambda: _module_run("mlp", mlp)), ("cnn", lambda: _module_run("cnn", cnn)),
             ("functional", _functional_run))


def _compare(device, label):
    """Every workload on ``device`` against the CPU; True when one failed."""
    failed = False
    for name, make_run in WORKLOADS:
        run = make_run()
        start = time.perf_counter()
        cpu = run("cpu")
        cpu_s = time.perf_counter() - start
        try:
            start = time.perf_counter()
            gpu = run(device)
            gpu_s = time.perf_counter() - start
        except Exception as error:
            print(f"  {name}: the {label} run failed: {type(error).__name__}: {error}")
            failed = True
            continue
        worst = largest_difference(cpu, gpu)
        verdict = "ok" if worst <= TOLERANCE else "DIFFERENT"
        failed = failed or worst > TOLERANCE
        print(f"  {name}: losses {', '.join(f'{s[0]:.6f}' for s in gpu)} ({label}) vs "
              f"{', '.join(f'{s[0]:.6f}' for s in cpu)} (CPU); largest relative difference in losses "
              f"and gradients {worst:.2e}: {verdict}; 3 steps {cpu_s * 1e3:.1f} ms CPU, "
              f"{gpu_s * 1e3:.1f} ms {label} (first calls, compiling included)")
    return failed


if __name__ == "__main__":
    sys.exit(main())
