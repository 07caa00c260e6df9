"""Other autodiff libraries on the same workloads, when they are installed.

None of them is a dependency of neuronika or of the benchmarks: ``load`` imports
the ones asked for, says which are missing, and the harness times the rest.

- ``autograd`` (HIPS): ``autograd.value_and_grad(loss, argnum=(0, 1, ...))`` on
  NumPy arrays; the loss is the workload's NumPy-style one (``loss_xp``) over
  ``autograd.numpy``.
- ``torch`` (CPU, eager): leaf tensors with ``requires_grad``, the workload's
  method-style loss (the same code neuronika runs: ``x.mm(w)``, ``.tanh()``,
  ``.log_softmax(1)``, ...), ``loss.backward()``, then the gradients set to
  ``None`` (what ``optimizer.zero_grad()`` does). Tensors share memory with the
  NumPy arrays (``torch.from_numpy``).
- ``jax`` (CPU): ``jax.jit(jax.value_and_grad(loss, argnums=...))`` (``jax-jit``)
  and the same without ``jit`` (``jax-eager``: op-by-op dispatch), the NumPy-style
  loss over ``jax.numpy``, arguments placed on the device once; each iteration
  waits for the results (``jax.block_until_ready``).

Each maker takes a workload and returns ``(step, result)``: ``step()`` is one timed
iteration, ``result()`` returns the loss and the gradients as NumPy arrays (for
the check against the floor).
"""
from __future__ import annotations

import ctypes
import importlib
import os
from types import SimpleNamespace

import numpy as np

COMPETITORS = ("autograd", "torch", "jax-jit", "jax-eager")
_MODULE = {"autograd": "autograd", "torch": "torch", "jax-jit": "jax", "jax-eager": "jax"}


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


# ---- loading ----------------------------------------------------------------------------------

def load(wanted, threads=None):
    """Import the competitors among ``wanted`` (path keys) that are installed.

    Returns ``(makers, lines)``: ``makers`` maps a path key to ``maker(workload) ->
    (step, result)``; ``lines`` say what is timed, what is missing and how threads
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
    if "torch" in makers:
        torch = modules["torch"]
        default = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
            did = (f"torch.set_num_threads({threads}) to match NumPy's BLAS (torch's default was "
                   f"{default})")
        else:
            did = f"NumPy's BLAS threads unknown: torch left at its default ({default} threads)"
        lines.append(f"torch {torch.__version__} (CPU, eager): timed; {did}")
    if "jax-jit" in makers or "jax-eager" in makers:
        jax = modules["jax"]
        which = " and ".join(k for k in ("jax-jit", "jax-eager") if k in makers)
        lines.append(f"jax {jax.__version__} on {jax.devices()[0].platform}: {which} timed; XLA's "
                     f"CPU threads left at their default")
    return makers, lines


def _version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:  # noqa: BLE001 - informational only
        return "?"


# ---- the makers ---------------------------------------------------------------------------------

def _autograd(workload):
    import autograd
    import autograd.numpy as anp
    from autograd.scipy.special import logsumexp

    F = SimpleNamespace(
        sum=anp.sum, tanh=anp.tanh, sin=anp.sin,
        sigmoid=lambda z: 1 / (1 + anp.exp(-z)),
        relu=lambda z: anp.maximum(z, 0),
        log_softmax=lambda z: z - logsumexp(z, axis=1, keepdims=True),
    )
    loss_xp = workload.loss_xp

    def loss(*args):
        return loss_xp(F, *args)

    n = len(workload.param_arrays)
    value_and_grad = autograd.value_and_grad(loss, argnum=tuple(range(n)))
    args = list(workload.param_arrays) + list(workload.data)

    def step():
        return value_and_grad(*args)

    def result():
        value, grads = value_and_grad(*args)
        return np.asarray(value), [np.asarray(g) for g in grads]

    return step, result


def _torch(workload):
    import torch

    params = [torch.from_numpy(a.copy()).requires_grad_() for a in workload.param_arrays]
    data = [torch.from_numpy(d) for d in workload.data]
    loss = workload.loss

    def step():
        loss(*params, *data).backward()
        for p in params:
            p.grad = None

    def result():
        value = loss(*params, *data)
        value.backward()
        out = value.detach().numpy().copy(), [p.grad.numpy().copy() for p in params]
        for p in params:
            p.grad = None
        return out

    return step, result


def _jax(workload, jit):
    import jax
    import jax.numpy as jnp

    F = SimpleNamespace(
        sum=jnp.sum, tanh=jnp.tanh, sin=jnp.sin, sigmoid=jax.nn.sigmoid, relu=jax.nn.relu,
        log_softmax=lambda z: jax.nn.log_softmax(z, axis=1),
    )
    loss_xp = workload.loss_xp

    def loss(*args):
        return loss_xp(F, *args)

    n = len(workload.param_arrays)
    value_and_grad = jax.value_and_grad(loss, argnums=tuple(range(n)))
    if jit:
        value_and_grad = jax.jit(value_and_grad)
    args = [jax.device_put(a) for a in list(workload.param_arrays) + list(workload.data)]
    ready = jax.block_until_ready

    def step():
        return ready(value_and_grad(*args))

    def result():
        value, grads = ready(value_and_grad(*args))
        return np.asarray(value), [np.asarray(g) for g in grads]

    return step, result


_MAKERS = {
    "autograd": _autograd,
    "torch": _torch,
    "jax-jit": lambda workload: _jax(workload, jit=True),
    "jax-eager": lambda workload: _jax(workload, jit=False),
}
