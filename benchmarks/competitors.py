"""Other autodiff libraries on the same workloads, when they are installed.

None of them is a dependency of neuronika (``pip install -e ".[bench]"`` installs them
all): ``load`` imports the ones asked for, says which are missing, and the harness
times the rest.

Every path times one training step: the loss, the gradients of every parameter and an
SGD update (``lr = run.LR``) of parameters the path owns (its own copies of the
workload's initial values):

- ``autograd`` (HIPS): ``autograd.value_and_grad(loss, argnum=(0, 1, ...))`` on NumPy
  arrays, then ``p -= lr * g`` in place; the loss is the workload's NumPy-style one
  (``loss_xp``) over ``autograd.numpy``.
- ``torch`` (CPU, eager): leaf tensors with ``requires_grad``, the workload's
  method-style loss (the same code neuronika runs: ``x.mm(w)``, ``.tanh()``,
  ``.log_softmax(1)``, ...), ``loss.backward()``, ``torch.optim.SGD.step()``,
  ``zero_grad()``.
- ``torch-compile``: the whole step in one ``torch.compile(fullgraph=True)`` (inductor):
  ``torch.func.grad_and_value`` of the same loss, then ``p.sub_(lr * g)`` under
  ``no_grad``. (``loss.backward()`` and ``torch.optim.SGD.step()`` inside a compiled
  function break the graph, which ``fullgraph=True`` refuses.) Compiling happens in the
  maker, outside the timing; a failure there becomes a ``PathFailed`` with the reason.
- ``jax`` (CPU): the whole step, ``jax.value_and_grad`` of the NumPy-style loss over
  ``jax.numpy`` and the update ``p - lr * g`` returning new parameters, under
  ``jax.jit`` with the parameters donated (``jax-jit``: XLA may update them in place)
  and without ``jit`` (``jax-eager``: op-by-op dispatch); each step waits for its results
  (``jax.block_until_ready``).

Each maker takes a workload and returns ``(step, result, reset)``: ``step()`` is one timed
training step; ``result()`` does one step and returns the loss and the gradients at the
parameters it started from and the parameters after the update, as NumPy arrays (for the
check against the floor); ``reset()`` puts the parameters back to the workload's initial
values (the harness calls it between samples, untimed).
"""
from __future__ import annotations

import ctypes
import importlib
import os
import sys
from types import SimpleNamespace

import numpy as np

COMPETITORS = ("autograd", "torch", "torch-compile", "jax-jit", "jax-eager")
_MODULE = {"autograd": "autograd", "torch": "torch", "torch-compile": "torch", "jax-jit": "jax",
           "jax-eager": "jax"}


class PathFailed(RuntimeError):
    """A competitor could not set up a workload (say torch.compile could not compile it):
    the table shows 'failed' and the reason as a footnote."""


# ---- NumPy's BLAS threads ---------------------------------------------------------------------

def blas_threads():
    """(threads, how) for the BLAS NumPy uses, or (None, why not).

    Asks threadpoolctl when it is installed; otherwise finds the OpenBLAS / MKL
    library NumPy loaded (``/proc/self/maps``) and calls its thread-count function.
    """
    try:
        from threadpoolctl import threadpool_info  # optional
    except ImportError:
        pass
    else:
        for info in threadpool_info():
            if info.get("user_api") == "blas" and "numpy" in str(info.get("filepath", "")):
                return int(info["num_threads"]), f"threadpoolctl ({info.get('internal_api')})"
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "/" in line and ("openblas" in line.lower() or "mkl_rt" in line.lower())})
    except OSError:
        paths = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_", ""):
            for suffix in ("64_", ""):
                for base in ("openblas_get_num_threads", "mkl_get_max_threads"):
                    name = f"{prefix}{base}{suffix}"
                    fn = getattr(lib, name, None)
                    if fn is not None:
                        fn.restype = ctypes.c_int
                        return int(fn()), f"{name}() in {os.path.basename(path)}"
    return None, "could not find NumPy's BLAS library"


def set_threads(n):
    """Give every framework ``n`` threads, before any competitor is imported: NumPy's BLAS
    (through threadpoolctl), XLA's CPU client (``XLA_FLAGS``; for ``n == 1`` only, other
    counts leave XLA at its default) and torch (``load`` matches torch to NumPy's count).
    Returns lines saying what was done; raises RuntimeError where NumPy's BLAS cannot be set."""
    try:
        from threadpoolctl import threadpool_limits  # optional
    except ImportError:
        raise RuntimeError("--threads needs threadpoolctl to set NumPy's BLAS threads (pip install "
                           "threadpoolctl), or set OPENBLAS_NUM_THREADS / OMP_NUM_THREADS instead") from None
    threadpool_limits(limits=n, user_api="blas")
    lines = [f"NumPy's BLAS: {n} thread(s) (threadpoolctl)"]
    if n == 1:
        if "jax" in sys.modules:
            lines.append("XLA: jax was imported already; its CPU threads stay at their default")
        else:
            flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
            lines.append(f"XLA: one thread (XLA_FLAGS {flags})")
    return lines


# ---- loading ----------------------------------------------------------------------------------

def load(wanted, threads=None):
    """Import the competitors among ``wanted`` (path keys) that are installed.

    Returns ``(makers, lines)``: ``makers`` maps a path key to ``maker(workload) ->
    (step, result, reset)``; ``lines`` say what is timed, what is missing and how threads
    were set. ``threads`` is NumPy's BLAS thread count (or None when unknown).
    """
    makers, lines, modules = {}, [], {}
    for key in COMPETITORS:
        if key not in wanted:
            continue
        module = _MODULE[key]
        if module not in modules:
            try:
                modules[module] = importlib.import_module(module)
            except Exception as error:  # noqa: BLE001 - ImportError, or a broken install
                modules[module] = None
                kind = "not installed" if isinstance(error, ImportError) else f"failed to import ({error!r})"
                lines.append(f"{module}: {kind}; its rows are skipped (pip install "
                             f"{'jax jaxlib' if module == 'jax' else module} to time it)")
        if modules[module] is not None:
            makers[key] = _MAKERS[key]
    if "autograd" in makers:
        lines.append(f"autograd {_version('autograd')} (HIPS): timed")
    torch_keys = [k for k in ("torch", "torch-compile") if k in makers]
    if torch_keys:
        torch = modules["torch"]
        default = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
            did = (f"torch.set_num_threads({threads}) to match NumPy's BLAS (torch's default was "
                   f"{default}; inductor's generated code uses the same count)")
        else:
            did = f"NumPy's BLAS threads unknown: torch left at its default ({default} threads)"
        which = " and ".join({"torch": "eager", "torch-compile": "torch.compile (inductor, fullgraph, "
                              "whole step; compile time excluded)"}[k] for k in torch_keys)
        lines.append(f"torch {torch.__version__} (CPU): {which} timed; {did}")
    if "jax-jit" in makers or "jax-eager" in makers:
        jax = modules["jax"]
        which = " and ".join(k for k in ("jax-jit", "jax-eager") if k in makers)
        single = "intra_op_parallelism_threads=1" in os.environ.get("XLA_FLAGS", "")
        lines.append(f"jax {jax.__version__} on {jax.devices()[0].platform}: {which} timed; XLA's "
                     f"CPU threads {'set to 1 (XLA_FLAGS)' if single else 'left at their default'}")
    return makers, lines


def _version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 - informational only
        return "?"


# ---- the makers ---------------------------------------------------------------------------------

def _own_copies(workload):
    """Fresh copies of the workload's initial parameter values."""
    return [a.copy() for a in workload.initial]


def _autograd(workload):
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.special import logsumexp

    def log_softmax(z):
        return z - logsumexp(z, axis=1, keepdims=True)

    def cross_entropy(z, labels):
        # sum / rows, not mean: autograd's mean divides by a NumPy int64 (float64 gradients)
        return -anp.sum(log_softmax(z)[anp.arange(z.shape[0]), labels]) / z.shape[0]

    F = SimpleNamespace(
        sum=anp.sum, tanh=anp.tanh, sin=anp.sin,
        sigmoid=lambda z: 1 / (1 + anp.exp(-z)),
        relu=lambda z: anp.maximum(z, 0),
        log_softmax=log_softmax, cross_entropy=cross_entropy,
    )
    loss_xp = workload.loss_xp

    def loss(*args):
        return loss_xp(F, *args)

    lr = workload.lr
    n = len(workload.initial)
    value_and_grad = autograd.value_and_grad(loss, argnum=tuple(range(n)))
    params = _own_copies(workload)
    data = list(workload.data)

    def step():
        value, grads = value_and_grad(*params, *data)
        for p, g in zip(params, grads):
            p -= lr * g
        return value

    def result():
        value, grads = value_and_grad(*params, *data)
        grads = [np.array(g, copy=True) for g in grads]
        for p, g in zip(params, grads):
            p -= lr * g
        return np.asarray(value), grads, [p.copy() for p in params]

    def reset():
        for p, a in zip(params, workload.initial):
            np.copyto(p, a)

    return step, result, reset


def _torch_tensors(workload):
    import torch

    params = [torch.from_numpy(a) for a in _own_copies(workload)]
    data = [torch.from_numpy(d) for d in workload.data]

    def reset():
        with torch.no_grad():
            for p, a in zip(params, workload.initial):
                p.copy_(torch.from_numpy(a))
                p.grad = None

    return params, data, reset


def _torch(workload):
    import torch

    params, data, reset = _torch_tensors(workload)
    for p in params:
        p.requires_grad_()
    optimizer = torch.optim.SGD(params, lr=workload.lr)
    loss = workload.loss

    def step():
        value = loss(*params, *data)
        value.backward()
        optimizer.step()
        optimizer.zero_grad()
        return value

    def result():
        value = loss(*params, *data)
        value.backward()
        grads = [p.grad.numpy().copy() for p in params]
        optimizer.step()
        optimizer.zero_grad()
        return value.detach().numpy().copy(), grads, [p.detach().numpy().copy() for p in params]

    return step, result, reset


def _torch_compile(workload):
    import torch
    from torch.func import grad_and_value

    params, data, reset = _torch_tensors(workload)
    loss, lr = workload.loss, workload.lr

    def loss_of_params(params, data):
        return loss(*params, *data)

    def whole_step(params, data):
        grads, value = grad_and_value(loss_of_params)(params, data)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
        return value

    compiled = torch.compile(whole_step, fullgraph=True, backend="inductor")
    try:
        compiled(params, data)            # compiles; the harness's warm-up repeats it
    except Exception as error:  # noqa: BLE001 - any failure to compile is reported, not raised
        first = (str(error).strip().splitlines() or [""])[0]
        raise PathFailed(f"torch.compile(fullgraph=True) raised {type(error).__name__}: {first[:200]}") from error
    reset()

    def step():
        return compiled(params, data)

    def result():
        grads, _ = grad_and_value(loss_of_params)(params, data)       # eager, for the check
        grads = [g.numpy().copy() for g in grads]
        value = compiled(params, data)
        return value.numpy().copy(), grads, [p.numpy().copy() for p in params]

    return step, result, reset


def _jax(workload, jit):
    import jax
    import jax.numpy as jnp

    def cross_entropy(z, labels):
        logp = jax.nn.log_softmax(z, axis=1)
        return -jnp.sum(jnp.take_along_axis(logp, labels[:, None], axis=1)) / z.shape[0]

    F = SimpleNamespace(
        sum=jnp.sum, tanh=jnp.tanh, sin=jnp.sin, sigmoid=jax.nn.sigmoid, relu=jax.nn.relu,
        log_softmax=lambda z: jax.nn.log_softmax(z, axis=1), cross_entropy=cross_entropy,
    )
    loss_xp, lr = workload.loss_xp, workload.lr

    def loss(params, *data):
        return loss_xp(F, *params, *data)

    value_and_grad = jax.value_and_grad(loss)

    def whole_step(params, *data):
        value, grads = value_and_grad(params, *data)
        return [p - lr * g for p, g in zip(params, grads)], value

    if jit:
        whole_step = jax.jit(whole_step, donate_argnums=0)
    data = [jax.device_put(d) for d in workload.data]
    ready = jax.block_until_ready
    state = {}

    def reset():
        state["params"] = [jax.device_put(a) for a in _own_copies(workload)]

    def step():
        state["params"], value = ready(whole_step(state["params"], *data))
        return value

    def result():
        _, grads = value_and_grad(state["params"], *data)
        grads = [np.array(g, copy=True) for g in grads]
        state["params"], value = ready(whole_step(state["params"], *data))
        return np.asarray(value), grads, [np.array(p, copy=True) for p in state["params"]]

    reset()
    return step, result, reset


_MAKERS = {
    "autograd": _autograd,
    "torch": _torch,
    "torch-compile": _torch_compile,
    "jax-jit": lambda workload: _jax(workload, jit=True),
    "jax-eager": lambda workload: _jax(workload, jit=False),
}
