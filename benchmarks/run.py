"""Training steps timed against a hand-written NumPy floor.

For each workload the *floor* is one training step written by hand in NumPy, the
way a careful person would: forward, backward and the SGD update ``w -= lr * gw``
(``lr = LR``), no graph, no wasted calls. Each *path* does the same step another way,
and its time divided by the floor's is its cost (lower is better):

- ``imperative``: neuronika as a training loop uses it: build the graph again,
  ``backward()``, ``optim.SGD.step()``, ``zero_grad()``.
- ``dispatch``: the same with the loss written in NumPy's own functions (``numpy.tanh(v)``),
  which reach neuronika through NumPy's dispatch (workloads with ``loss_numpy``).
- ``grad`` ("neuronika functional"): ``neuronika.jit`` of the whole step
  (``value_and_grad`` of the loss, the functional ``optim.sgd``, ``optim.apply_updates``)
  where neuronika has them; otherwise ``neuronika.value_and_grad(loss, argnums=...)``
  (traced once per signature, then one cached compiled function per call) and the update
  ``p - lr * g`` written by hand. The table says which ran.
- competitors, when installed (see :mod:`benchmarks.competitors`): HIPS ``autograd``,
  PyTorch eager (``torch.optim.SGD``), ``torch.compile`` of the whole step (inductor,
  ``fullgraph=True``), JAX's whole step under ``jit`` and without it. A workload may name
  the ones it supports (``Workload.competitors``): ``cnn`` has torch only.

Each path owns its parameters (copies of the workload's initial values) and puts them
back between samples (untimed), so every sample times the first steps of the same run.

Each workload's loss is written once in method style (``x.mm(w)``, ``.tanh()``,
``.log_softmax(1)``, ``.sum()``): the same function runs on neuronika variables
(imperative), inside ``value_and_grad`` (where the arguments are variables) and
on torch tensors; once more in NumPy style (``F.tanh(x @ w + b)``) for autograd
and JAX.

Before any timing, each path's loss and gradients, and its parameters after one step,
are checked equal to the floor's (``np.allclose``, rtol 1e-4, atol 1e-6, float32), so
every cell computes the same thing; a mismatch raises ``GradientMismatch``.

Timing: warm up (the first call compiles and caches; torch.compile compiles before),
then take many short samples (~30 ms each), round-robin over the paths (the order rotates
and reverses from round to round), and report the median time per step of each. Peak
memory per step is tracemalloc's peak during one step after warm-up, above what was live
before it: NumPy reports its buffers to tracemalloc, torch and JAX do not (n/a). Each
process first allocates and frees one 16 MiB block (``settle_allocator``), so that glibc
keeps the heap it has instead of trimming and faulting it in again every step, whatever
the process allocated at import.

The competitors are the ``bench`` extra::

    pip install -e ".[bench]"                # torch, jax, autograd, threadpoolctl

Run from the repository root::

    python -m benchmarks                     # the table (minutes: torch.compile compiles each workload first)
    python -m benchmarks --long              # and the long table: one row per path, µs per step
    python -m benchmarks --quick             # a smoke run: few, short samples, no jax eager or torch.compile
    python -m benchmarks --only tiny,rnn
    python -m benchmarks --threads 1         # every framework on one thread (a shared machine)
    python -m benchmarks --paths floor,imperative,grad   # neuronika only
    python -m benchmarks --profile tiny      # cProfile of neuronika's imperative step
    python -m benchmarks --profile tiny-grad # ... of the functional path (any path key)
    python benchmarks/run.py ...             # the same
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import tracemalloc

import numpy as np

if __package__ in (None, ""):
    # Run as a script (python benchmarks/run.py): make the checkout importable
    # even where neuronika is not installed.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from benchmarks import competitors  # noqa: E402
else:
    from . import competitors

import neuronika  # noqa: E402
from neuronika.nn.conv import conv  # noqa: E402

DTYPE = np.float32
SEED = 0
RTOL = 1e-4
ATOL = 1e-6
LR = 0.01               # every path's SGD learning rate

# Path keys (for --paths and --profile), in table order, and their names in the table.
PATHS = {
    "floor": "numpy floor",
    "imperative": "neuronika imperative",
    "dispatch": "neuronika imperative, numpy.* calls",
    "grad": "neuronika functional",
    "vg": "neuronika value_and_grad",
    "autograd": "autograd",
    "torch": "torch eager",
    "torch-compile": "torch.compile",
    "jax-jit": "jax jit",
    "jax-eager": "jax eager",
}
NEURONIKA_PATHS = ("floor", "imperative", "dispatch", "grad", "vg")
#: The paths whose allocations tracemalloc sees (NumPy's buffers): the memory columns.
TRACED_PATHS = NEURONIKA_PATHS + ("autograd",)
PathFailed = competitors.PathFailed


class GradientMismatch(AssertionError):
    """A path and the NumPy floor disagree: they do not compute the same thing."""


class Path:
    """One way to do a workload's training step.

    ``step()`` is one timed step; ``result()`` does one step and returns the loss and the
    gradients at the parameters it started from, and the parameters after the update
    (NumPy arrays, in the order of the workload's parameters), for the check; ``reset()``
    puts the path's parameters back to the workload's initial values. ``about`` says how
    the path works where that varies (the functional path).
    """

    __slots__ = ("key", "step", "result", "reset", "about")

    def __init__(self, key, step, result, reset, about=""):
        self.key, self.step, self.result, self.reset, self.about = key, step, result, reset, about

    @property
    def label(self):
        return PATHS[self.key]

    def __repr__(self):
        return f"Path({self.key!r})"


# ---- targets --------------------------------------------------------------------------------

class Ratio:
    """Met when the path's time is at most ``limit`` times the floor's."""

    def __init__(self, limit):
        self.limit = limit
        self.label = f"<= {limit:g}x"

    def met(self, key, times):
        return times[key] <= self.limit * times["floor"]


class Relative:
    """Met when the path's time is at most ``limit`` times another path's."""

    def __init__(self, other, limit):
        self.other, self.limit = other, limit
        self.label = f"<= {limit:g}x {PATHS[other]}"

    def met(self, key, times):
        if self.other not in times:
            return None
        return times[key] <= self.limit * times[self.other]


class FasterThan:
    """Met when the path is faster than another path; unknown ('-') when that one did not run."""

    def __init__(self, other):
        self.other = other
        self.label = f"< {PATHS[other]}"

    def met(self, key, times):
        if self.other not in times:
            return None
        return times[key] < times[self.other]


# ---- workloads ------------------------------------------------------------------------------

class Workload:
    """One benchmark case over fixed data: a loss, and one SGD step on its parameters.

    Subclasses set ``name``, ``about`` and ``targets`` (path key -> tuple of targets),
    and define:

    - ``setup``: create the differentiable arrays with ``self.leaf(array)`` (in the
      order of the loss's first arguments) and append the data arrays (the
      arguments after them) to ``self.data``;
    - ``loss(*params, *data)``: a static method in method style; it runs on
      neuronika variables and on torch tensors;
    - ``loss_xp(F, *params, *data)``: the same in NumPy style over ``F`` (a namespace
      with ``sum``, ``tanh``, ``sin``, ``sigmoid``, ``relu``, ``log_softmax`` over
      axis 1 and ``cross_entropy(logits, int_labels)``), for autograd and JAX;
    - ``floor``: hand-written NumPy returning the loss and the gradients of the
      parameters (the arrays ``leaf`` was given, which the floor's step updates in
      place), in order;
    - optionally ``loss_numpy(*params, *data)``: the loss written with NumPy's own
      functions (``numpy.tanh(v)``), which reach neuronika through NumPy's dispatch:
      the ``dispatch`` path.

    The loss functions read nothing from module globals or closures: the
    functional path watches such names (and a changed one traces again), which
    takes it off its fastest path; a real training script's loss is as plain.
    """

    name = "?"
    about = ""
    targets = {}
    lr = LR
    #: The competitor paths this workload can run (None: all of them). A workload
    #: whose loss uses an op that ``loss_xp``'s namespace lacks leaves out autograd and JAX.
    competitors = None
    loss_numpy = None

    def __init__(self, seed: int = SEED):
        self.rng = np.random.default_rng(seed)
        self.leaves = []                    # neuronika Params (their own copies) of ...
        self.param_arrays = []              # ... these arrays: the floor's parameters
        self.data = []
        self.setup()
        self.initial = [a.copy() for a in self.param_arrays]     # where every path starts
        self.data_vars = [neuronika.from_ndarray(d) for d in self.data]
        # What an optimizer holds: the Params of the loss, fetched once.
        self.params = self.build().parameters()
        got = {id(p._node) for p in self.params}
        want = {id(v._node) for v in self.leaves}
        if got != want:
            raise GradientMismatch(f"{self.name}: parameters() of the loss are not the leaves the "
                                   f"floor differentiates")
        self.optimizer = neuronika.optim.SGD(self.params, lr=self.lr)
        self._grad_fn = None

    def array(self, *shape, scale=1.0):
        return (self.rng.standard_normal(shape) * scale).astype(DTYPE)

    def leaf(self, array):
        handle = neuronika.from_ndarray(array.copy()).requires_grad()
        self.leaves.append(handle)
        self.param_arrays.append(array)
        return handle

    def setup(self):
        raise NotImplementedError

    @staticmethod
    def loss(*args):
        raise NotImplementedError

    @staticmethod
    def loss_xp(F, *args):
        raise NotImplementedError

    def floor(self):
        raise NotImplementedError

    # ---- the floor's step ----
    def floor_step(self):
        """One training step by hand: the floor's loss and gradients, then ``w -= lr * gw``."""
        loss, grads = self.floor()
        lr = self.lr
        for w, g in zip(self.param_arrays, grads):
            w -= lr * g
        return loss

    def floor_result(self):
        loss, grads = self.floor()
        grads = [np.array(g, copy=True) for g in grads]
        for w, g in zip(self.param_arrays, grads):
            w -= self.lr * g
        return np.asarray(loss).copy(), grads, [w.copy() for w in self.param_arrays]

    def floor_reset(self):
        for w, a in zip(self.param_arrays, self.initial):
            np.copyto(w, a)

    # ---- neuronika, imperative ----
    def build(self):
        """The loss as a neuronika graph over the Params and the data variables."""
        return self.loss(*self.leaves, *self.data_vars)

    def neuronika_step(self):
        """One training-loop step: build, backward, optimizer step, zero_grad."""
        self.build().backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def dispatch_step(self):
        """The same step with the loss written in NumPy's functions."""
        self.loss_numpy(*self.leaves, *self.data_vars).backward()
        self.optimizer.step()
        self.optimizer.zero_grad()

    def dispatch_result(self):
        return self.neuronika_result(self.loss_numpy)

    def neuronika_result(self, loss_fn=None):
        """One step's loss, (copies of) the gradients and the parameters after it; leaves the
        gradients zeroed."""
        loss = (loss_fn or self.loss)(*self.leaves, *self.data_vars)
        loss.backward()
        value = np.asarray(loss.data).copy()
        grads = [np.array(v.grad, copy=True) for v in self.leaves]
        self.optimizer.step()
        self.optimizer.zero_grad()
        return value, grads, [np.array(v.data, copy=True) for v in self.leaves]

    def neuronika_reset(self):
        self.optimizer.zero_grad()
        for v, a in zip(self.leaves, self.initial):
            np.copyto(v.data, a)

    # ---- neuronika, functional ----
    def grad_fn(self):
        """``neuronika.value_and_grad`` of the loss with respect to the parameters."""
        if self._grad_fn is None:
            self._grad_fn = neuronika.value_and_grad(self.loss, argnums=tuple(range(len(self.initial))))
        return self._grad_fn

    def functional_path(self, kind=None):
        """(step, result, reset, about) of the functional face's training step: the whole step
        under ``neuronika.jit`` where it is there, or (``kind='value_and_grad'``, the ``vg``
        path) ``value_and_grad`` and the update by hand."""
        if (kind or functional_kind()) == "jit":
            return self._jit_step()
        fn, lr, data, state = self.grad_fn(), self.lr, list(self.data), {}

        def reset():
            state["params"] = [a.copy() for a in self.initial]

        def step():
            params = state["params"]
            value, grads = fn(*params, *data)
            state["params"] = [p - lr * g for p, g in zip(params, grads)]
            return value

        def result():
            value, grads = fn(*state["params"], *data)
            grads = [np.array(g, copy=True) for g in grads]
            state["params"] = [p - lr * g for p, g in zip(state["params"], grads)]
            return np.array(value, copy=True), grads, [p.copy() for p in state["params"]]

        reset()
        return step, result, reset, FUNCTIONAL_ABOUT["value_and_grad"]

    def _jit_step(self):
        """The whole step under ``neuronika.jit``, with the functional SGD (optax's shape)."""
        optim, loss, data, state = neuronika.optim, self.loss, list(self.data), {}
        opt = optim.sgd(lr=self.lr)

        def loss_fn(params, *data):
            return loss(*params, *data)

        @neuronika.jit
        def whole_step(params, opt_state, *data):
            value, grads = neuronika.value_and_grad(loss_fn)(params, *data)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optim.apply_updates(params, updates), opt_state, value

        def reset():
            state["params"] = [a.copy() for a in self.initial]
            state["opt"] = opt.init(state["params"])

        def step():
            state["params"], state["opt"], value = whole_step(state["params"], state["opt"], *data)
            return value

        def result():
            _, grads = neuronika.value_and_grad(loss_fn)(state["params"], *data)     # for the check
            grads = [np.array(g, copy=True) for g in grads]
            value = step()
            return np.array(value, copy=True), grads, [np.array(p, copy=True) for p in state["params"]]

        reset()
        try:
            step()                          # traces and compiles; a failure is a footnote
        except Exception as error:  # noqa: BLE001 - reported in the table, not raised
            first = (str(error).strip().splitlines() or [""])[0]
            raise PathFailed(f"neuronika.jit of the step raised {type(error).__name__}: {first[:200]}") from error
        reset()
        return step, result, reset, FUNCTIONAL_ABOUT["jit"]

    def supports(self, key):
        """Whether this workload has a path ``key`` (neuronika's always)."""
        if key == "dispatch":
            return self.loss_numpy is not None
        return key in NEURONIKA_PATHS or self.competitors is None or key in self.competitors

    def path(self, key, makers=None):
        """The Path ``key`` of this workload (competitors from ``makers``, see
        ``competitors.load``). A competitor that cannot run this workload raises
        ``PathFailed``."""
        if not self.supports(key):
            raise KeyError(f"path {key!r} is not available for workload {self.name!r}")
        if key == "floor":
            return Path(key, self.floor_step, self.floor_result, self.floor_reset)
        if key == "imperative":
            return Path(key, self.neuronika_step, self.neuronika_result, self.neuronika_reset)
        if key == "dispatch":
            return Path(key, self.dispatch_step, self.dispatch_result, self.neuronika_reset)
        if key == "grad":
            return Path(key, *self.functional_path())
        if key == "vg":
            return Path(key, *self.functional_path("value_and_grad"))
        if makers is None or key not in makers:
            raise KeyError(f"path {key!r} is not available")
        return Path(key, *makers[key](self))


FUNCTIONAL_ABOUT = {
    "jit": "neuronika.jit of the whole step (value_and_grad, optim.sgd, optim.apply_updates)",
    "value_and_grad": "neuronika.value_and_grad(loss, argnums=...) and the update p - lr * g by hand",
}


def functional_kind():
    """'jit' where neuronika has ``jit`` and the functional optimizers (``optim.sgd``,
    ``optim.apply_updates``), else 'value_and_grad'."""
    optim = neuronika.optim
    have = (callable(getattr(neuronika, "jit", None)) and callable(getattr(optim, "sgd", None))
            and callable(getattr(optim, "apply_updates", None)))
    return "jit" if have else "value_and_grad"


class Tiny(Workload):
    name = "tiny"
    about = "sum(tanh(x.mm(w) + b)), x (4, 8) data, w (8, 8) and b (8,) differentiable"
    targets = {
        "imperative": (Ratio(2.0),),
        "dispatch": (Relative("imperative", 1.05),),
        "grad": (Ratio(1.3),),
    }

    def setup(self):
        self.x_data = self.array(4, 8)
        self.w_data = self.array(8, 8, scale=0.5)
        self.b_data = self.array(8, scale=0.5)
        self.w = self.leaf(self.w_data)
        self.b = self.leaf(self.b_data)
        self.data.append(self.x_data)

    @staticmethod
    def loss(w, b, x):
        return (x.mm(w) + b).tanh().sum()

    @staticmethod
    def loss_xp(F, w, b, x):
        return F.sum(F.tanh(x @ w + b))

    @staticmethod
    def loss_numpy(w, b, x):
        return np.sum(np.tanh(np.matmul(x, w) + b))

    def floor(self):
        x, w, b = self.x_data, self.w_data, self.b_data
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

    def __init__(self, batch: int, targets: dict, seed: int = SEED):
        self.batch = batch
        self.name = f"mlp{batch}"
        self.targets = targets
        self.about = (f"784-256-128-10 ReLU MLP, log_softmax + NLL with ops, batch {batch}; "
                      f"all weights and biases differentiable")
        super().__init__(seed)

    def setup(self):
        n_in, h1, h2, n_out = self.sizes
        batch = self.batch
        self.x_data = self.array(batch, n_in)
        labels = self.rng.integers(0, n_out, batch)
        self.onehot_data = np.eye(n_out, dtype=DTYPE)[labels]
        layers = []
        for fan_in, fan_out in ((n_in, h1), (h1, h2), (h2, n_out)):
            w = self.array(fan_in, fan_out, scale=np.sqrt(2.0 / fan_in))
            b = self.array(fan_out, scale=0.1)
            self.leaf(w)
            self.leaf(b)
            layers.append((w, b))
        self.layers = layers
        self.data += [self.x_data, self.onehot_data]

    @staticmethod
    def loss(w1, b1, w2, b2, w3, b3, x, onehot):
        h = (x.mm(w1) + b1).relu()
        h = (h.mm(w2) + b2).relu()
        logp = (h.mm(w3) + b3).log_softmax(1)
        return -(logp * onehot).sum() / x.shape[0]

    @staticmethod
    def loss_xp(F, w1, b1, w2, b2, w3, b3, x, onehot):
        h = F.relu(x @ w1 + b1)
        h = F.relu(h @ w2 + b2)
        logp = F.log_softmax(h @ w3 + b3)
        return -F.sum(logp * onehot) / x.shape[0]

    def floor(self):
        (w1, b1), (w2, b2), (w3, b3) = self.layers
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


CHAIN_OPS = 50          # the loss functions write it as a literal (see Workload)
CHAIN_CYCLE = ("x * 1.01", "sigmoid", "x - 0.5", "x * 4.0", "tanh", "sin")


class Chain(Workload):
    """50 chained elementwise ops on 10,000 elements, cycling through x * 1.01, sigmoid,
    x - 0.5, x * 4.0, tanh, sin. Values stay in about (-1, 1) and gradients of order 0.1
    ((sigmoid(x) - 0.5) * 4 = 2 tanh(x / 2): nothing saturates or vanishes); the 50th op is
    a sigmoid, so the summed values are positive and the loss has no cancellation."""

    name = "chain"
    about = f"{CHAIN_OPS} chained elementwise ops ({', '.join(CHAIN_CYCLE)}, ...) on 10,000 elements"
    targets = {"imperative": (Ratio(0.4),), "grad": (Ratio(0.4),)}

    def setup(self):
        self.v_data = self.array(10_000)
        self.v = self.leaf(self.v_data)

    @staticmethod
    def loss(v):
        y = v
        for k in range(50):                 # CHAIN_OPS
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

    @staticmethod
    def loss_xp(F, v):
        y = v
        for k in range(50):                 # CHAIN_OPS
            kind = k % 6
            if kind == 0:
                y = y * 1.01
            elif kind == 1:
                y = F.sigmoid(y)
            elif kind == 2:
                y = y - 0.5
            elif kind == 3:
                y = y * 4.0
            elif kind == 4:
                y = F.tanh(y)
            else:
                y = F.sin(y)
        return F.sum(y)

    def floor(self):
        x = self.v_data
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


RNN_STEPS, RNN_BATCH, RNN_INPUT, RNN_HIDDEN = 50, 16, 32, 64


def rnn_states(wx, wh, b, xs):
    """The floors' recurrence: every state h_1 .. h_T of tanh(x_t Wx + h Wh + b), h_0 = 0."""
    hs = np.empty((xs.shape[0], xs.shape[1], wh.shape[0]), DTYPE)
    a = xs[0] @ wx
    a += b
    np.tanh(a, out=hs[0])
    for t in range(1, xs.shape[0]):
        a = xs[t] @ wx
        a += hs[t - 1] @ wh
        a += b
        np.tanh(a, out=hs[t])
    return hs


def rnn_backward(wh, xs, hs, dh_last=None, dhs=None):
    """Backpropagation through time for the floors' recurrence, step by step, accumulating
    each step's products into the weight gradients in place: [d Wx, d Wh, d b] given d loss /
    d h_T (``dh_last``) or d loss / d h_t of every step (``dhs``)."""
    steps = xs.shape[0]
    dh = dh_last
    for t in range(steps - 1, -1, -1):
        if dhs is not None:
            dh = dhs[t] if dh is None else dhs[t] + dh
        ht = hs[t]
        da = ht * ht                        # d / d pre-activation: dh (1 - h^2)
        np.subtract(1, da, out=da)
        da *= dh
        if t == steps - 1:
            gb = da.sum(axis=0)
            gwx = xs[t].T @ da
            gwh = hs[t - 1].T @ da
        else:
            gb += da.sum(axis=0)
            gwx += xs[t].T @ da
            if t:
                gwh += hs[t - 1].T @ da
        if t:
            dh = da @ wh.T
    return [gwx, gwh, gb]


class RNN(Workload):
    """An unrolled tanh RNN: h_1 = tanh(x_0 Wx + b), h_t+1 = tanh(x_t Wx + h_t Wh + b) for 50
    steps (h_0 = 0, so its Wh product is left out), loss = mean(h_50 ** 2) (a regression-style
    loss on the last state: the gradient flows back through every step). Wx (32, 64) and
    Wh (64, 64) scaled 1/sqrt(fan-in) (the recurrence neither explodes nor dies over 50
    steps), b (64,) small; xs (50, 16, 32) data, indexed xs[t] inside the loss.

    The floor is backpropagation through time written step by step, mirroring the program
    (it accumulates each step's x_t^T da and h^T da into the weight gradients in place;
    batching those products over all steps afterwards would be faster still, but would be
    another program)."""

    name = "rnn"
    about = (f"unrolled tanh RNN, {RNN_STEPS} steps, hidden {RNN_HIDDEN}, input {RNN_INPUT}, "
             f"batch {RNN_BATCH}; loss mean(h_last ** 2); Wx, Wh, b differentiable")
    targets = {"imperative": (Ratio(1.0),), "grad": (Ratio(0.7),)}

    def setup(self):
        self.xs_data = self.array(RNN_STEPS, RNN_BATCH, RNN_INPUT)
        self.wx_data = self.array(RNN_INPUT, RNN_HIDDEN, scale=1 / np.sqrt(RNN_INPUT))
        self.wh_data = self.array(RNN_HIDDEN, RNN_HIDDEN, scale=1 / np.sqrt(RNN_HIDDEN))
        self.b_data = self.array(RNN_HIDDEN, scale=0.1)
        for a in (self.wx_data, self.wh_data, self.b_data):
            self.leaf(a)
        self.data.append(self.xs_data)

    @staticmethod
    def loss(wx, wh, b, xs):
        h = (xs[0].mm(wx) + b).tanh()
        for t in range(1, xs.shape[0]):
            h = (xs[t].mm(wx) + h.mm(wh) + b).tanh()
        return (h * h).mean()

    @staticmethod
    def loss_xp(F, wx, wh, b, xs):
        h = F.tanh(xs[0] @ wx + b)
        for t in range(1, xs.shape[0]):
            h = F.tanh(xs[t] @ wx + h @ wh + b)
        # sum / size, not mean: HIPS autograd's mean gradient divides by a NumPy int64,
        # which turns float32 gradients into float64.
        return F.sum(h * h) / (h.shape[0] * h.shape[1])

    def floor(self):
        wx, wh, b, xs = self.wx_data, self.wh_data, self.b_data, self.xs_data
        hs = rnn_states(wx, wh, b, xs)      # every state, for BPTT
        h = hs[-1]
        loss = (h * h).mean()
        dh = h * (2.0 / h.size)             # d loss / d h_last
        return loss, rnn_backward(wh, xs, hs, dh_last=dh)


def conv2d(x, w, b):
    """A 3x3 convolution (no padding, stride 1) plus a bias, on neuronika variables or on
    torch tensors (the workloads' losses run on both)."""
    if isinstance(x, neuronika.Var):
        return conv(x, w) + b.reshape(-1, 1, 1)
    import torch.nn.functional as F
    return F.conv2d(x, w, b)


def cross_entropy(logits, targets):
    """Cross-entropy with class-probability targets (one-hot rows) or integer labels,
    averaged over the rows: neuronika's ``nn.functional.cross_entropy`` or torch's,
    whichever fits."""
    if isinstance(logits, neuronika.Var):
        return neuronika.nn.functional.cross_entropy(logits, targets)
    import torch.nn.functional as F
    return F.cross_entropy(logits, targets)


# The floor's convolutions: k x k, stride 1, 2-D, written out by hand the way neuronika's
# kernels do it (im2col + a product per sample, a few samples at a time so that the
# columns stay in a cache-sized buffer; ~1 MiB of columns per chunk).
CHUNK_BYTES = 1 << 20


def windows(x, k):
    """Every k x k window of x (N, C, H, W): a strided view (N, C, k, k, H - k + 1, W - k + 1)."""
    n, c, h, w = x.shape
    s = x.strides
    return np.lib.stride_tricks.as_strided(x, (n, c, k, k, h - k + 1, w - k + 1), s[:2] + s[2:] + s[2:],
                                           writeable=False)


def conv_forward(x, w):
    """conv(x, w): per chunk of samples, the windows copied into columns (C k k, P), then
    the kernel (C_out, C k k) times the columns."""
    view = windows(x, w.shape[2])
    n, c, k, _, oh, ow = view.shape
    co = w.shape[0]
    matrix = w.reshape(co, c * k * k)
    y = np.empty((n, co, oh * ow), x.dtype)
    chunk = max(1, CHUNK_BYTES // (c * k * k * oh * ow * x.itemsize))
    buffer = np.empty((chunk,) + view.shape[1:], x.dtype)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        cols = buffer[:last - first]
        np.copyto(cols, view[first:last])
        np.matmul(matrix, cols.reshape(last - first, c * k * k, oh * ow), out=y[first:last])
    return y.reshape(n, co, oh, ow)


def conv_weight_grad(dy, x, k):
    """d<dy, conv(x, w)>/dw: per chunk, the columns again, dy times their transpose."""
    view = windows(x, k)
    n, c, _, _, oh, ow = view.shape
    co = dy.shape[1]
    dy = dy.reshape(n, co, oh * ow)
    gw = np.zeros((co, c * k * k), x.dtype)
    chunk = max(1, CHUNK_BYTES // (c * k * k * oh * ow * x.itemsize))
    buffer = np.empty((chunk,) + view.shape[1:], x.dtype)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        cols = buffer[:last - first]
        np.copyto(cols, view[first:last])
        gw += (dy[first:last] @ cols.reshape(last - first, c * k * k, oh * ow).transpose(0, 2, 1)).sum(axis=0)
    return gw.reshape(co, c, k, k)


def conv_input_grad(dy, w, shape):
    """d<dy, conv(x, w)>/dx for x of ``shape``: per chunk, w^T dy (the columns' gradient)
    added back onto the windows (col2im). dy is zero-padded to the input's width first, so
    that each kernel offset adds one contiguous span per (sample, channel) rather than one
    short row per output row (what makes col2im slow on small images)."""
    n, c, h, wd = shape
    co, k = w.shape[0], w.shape[2]
    oh, ow = h - k + 1, wd - k + 1
    span, length = oh * wd, oh * wd - (k - 1)
    matrix = w.reshape(co, c * k * k).T
    dx = np.zeros((n, c, h * wd), dy.dtype)
    chunk = max(1, CHUNK_BYTES // (c * k * k * span * dy.itemsize))
    wide = np.zeros((chunk, co, oh, wd), dy.dtype)
    buffer = np.empty((chunk, c * k * k, span), dy.dtype)
    for first in range(0, n, chunk):
        last = min(n, first + chunk)
        m = last - first
        wide[:m, :, :, :ow] = dy[first:last]
        cols = np.matmul(matrix, wide[:m].reshape(m, co, span), out=buffer[:m]).reshape(m, c, k * k, span)
        part = dx[first:last]
        for i in range(k):
            for j in range(k):
                start = i * wd + j
                part[:, :, start:start + length] += cols[:, :, i * k + j, :length]
    return dx.reshape(shape)


class CNN(Workload):
    """A small convolutional network on MNIST-shaped data: conv 1->8 3x3, ReLU, conv 8->16
    3x3, ReLU, flatten, linear 9216->10, cross-entropy against one-hot rows
    (``nn.functional.cross_entropy``: log_softmax, -(logp * onehot) summed, averaged over
    the batch); batch 32 of 1x28x28. Both convolutions are im2col + a product per sample,
    a few samples at a time (neuronika's conv op; the floor by hand, the same way); the
    input needs no gradient, so the first convolution has no col2im. No autograd or JAX
    rows: their losses would need a convolution in ``loss_xp``'s namespace."""

    name = "cnn"
    about = ("conv 1->8 3x3, ReLU, conv 8->16 3x3, ReLU, flatten, linear 9216->10, cross-entropy "
             "(one-hot targets), batch 32 of 1x28x28; all kernels, weights and biases differentiable")
    # The issue judges this row against torch.compile: the floor's time moves too much between runs.
    targets = {"imperative": (Relative("torch-compile", 0.95),), "grad": (Relative("torch-compile", 0.95),)}
    competitors = ("torch", "torch-compile")
    batch = 32

    def setup(self):
        batch = self.batch
        self.x_data = self.array(batch, 1, 28, 28)
        labels = self.rng.integers(0, 10, batch)
        self.onehot_data = np.eye(10, dtype=DTYPE)[labels]
        self.w1 = self.leaf(self.array(8, 1, 3, 3, scale=np.sqrt(2.0 / 9)))
        self.b1 = self.leaf(self.array(8, scale=0.1))
        self.w2 = self.leaf(self.array(16, 8, 3, 3, scale=np.sqrt(2.0 / 72)))
        self.b2 = self.leaf(self.array(16, scale=0.1))
        self.w3 = self.leaf(self.array(16 * 24 * 24, 10, scale=np.sqrt(2.0 / (16 * 24 * 24))))
        self.b3 = self.leaf(self.array(10, scale=0.1))
        self.data += [self.x_data, self.onehot_data]

    @staticmethod
    def loss(w1, b1, w2, b2, w3, b3, x, onehot):
        h = conv2d(x, w1, b1).relu()
        h = conv2d(h, w2, b2).relu()
        return cross_entropy(h.flatten(1).mm(w3) + b3, onehot)

    def floor(self):
        w1, b1, w2, b2, w3, b3 = self.param_arrays
        x, onehot, n = self.x_data, self.onehot_data, self.batch
        # forward (bias and ReLU in place: h > 0 is the same mask as pre-activation > 0)
        h1 = conv_forward(x, w1)                                # (n, 8, 26, 26)
        h1 += b1[:, None, None]
        np.maximum(h1, 0, out=h1)
        h2 = conv_forward(h1, w2)                               # (n, 16, 24, 24)
        h2 += b2[:, None, None]
        np.maximum(h2, 0, out=h2)
        flat = h2.reshape(n, 16 * 576)
        z = flat @ w3
        z += b3
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(logp * onehot).sum() / n
        # backward (the exact adjoint of log_softmax, as in the MLP floor)
        dlogp = onehot * (-1.0 / n)
        dz = dlogp - np.exp(logp) * dlogp.sum(axis=1, keepdims=True)
        gw3 = flat.T @ dz
        gb3 = dz.sum(axis=0)
        dh2 = (dz @ w3.T).reshape(h2.shape)
        dh2 *= h2 > 0
        gb2 = dh2.sum(axis=(0, 2, 3))
        gw2 = conv_weight_grad(dh2, h1, 3)
        dh1 = conv_input_grad(dh2, w2, h1.shape)
        dh1 *= h1 > 0
        gb1 = dh1.sum(axis=(0, 2, 3))
        gw1 = conv_weight_grad(dh1, x, 3)
        return loss, [gw1, gb1, gw2, gb2, gw3, gb3]

DIGITS_SIZES, DIGITS_BATCH = (64, 32, 10), 32


class Digits(Workload):
    """The digits MLP's training step: 64-32-10 with ReLU, cross-entropy against integer
    labels, batch 32 of random 8x8 images with sklearn digits' value range (0 to 16, scaled
    to [0, 1]): random data stands in for the dataset (the time does not depend on it).
    The floor's backward is softmax minus the one-hot rows, over the batch (exact for
    integer labels)."""

    name = "digits"
    about = ("digits MLP step: 64-32-10 ReLU MLP, cross-entropy with integer labels, batch 32 of "
             "random 8x8 images in [0, 1]; all weights and biases differentiable")
    targets = {"imperative": (Ratio(0.6),), "grad": (Ratio(0.6),)}

    def setup(self):
        n_in, hidden, n_out = DIGITS_SIZES
        self.x_data = (self.rng.integers(0, 17, (DIGITS_BATCH, n_in)) / 16.0).astype(DTYPE)
        self.labels = self.rng.integers(0, n_out, DIGITS_BATCH)
        self.w1 = self.leaf(self.array(n_in, hidden, scale=np.sqrt(2.0 / n_in)))
        self.b1 = self.leaf(self.array(hidden, scale=0.1))
        self.w2 = self.leaf(self.array(hidden, n_out, scale=np.sqrt(2.0 / hidden)))
        self.b2 = self.leaf(self.array(n_out, scale=0.1))
        self.data += [self.x_data, self.labels]
        self.rows = np.arange(DIGITS_BATCH)

    @staticmethod
    def loss(w1, b1, w2, b2, x, labels):
        h = (x.mm(w1) + b1).relu()
        return cross_entropy(h.mm(w2) + b2, labels)

    @staticmethod
    def loss_xp(F, w1, b1, w2, b2, x, labels):
        return F.cross_entropy(F.relu(x @ w1 + b1) @ w2 + b2, labels)

    def floor(self):
        w1, b1, w2, b2 = self.param_arrays
        x, labels, rows = self.x_data, self.labels, self.rows
        n = len(x)
        h = x @ w1
        h += b1
        np.maximum(h, 0, out=h)
        z = h @ w2
        z += b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        loss = (np.log(total).sum() - z[rows, labels].sum()) / n
        dz = e
        dz /= total                         # softmax
        dz[rows, labels] -= 1
        dz *= 1.0 / n
        gw2 = h.T @ dz
        gb2 = dz.sum(axis=0)
        dh = dz @ w2.T
        dh *= h > 0
        return loss, [x.T @ dh, dh.sum(axis=0), gw2, gb2]


RNNLM_CLASSES = 128


class RNNLM(Workload):
    """The RNN of ``rnn`` as a sequence model: an output layer and a cross-entropy against an
    integer label at every step, averaged over the steps and the batch (the loss summed in
    the loop, as a language model's training loop writes it). Wo (64, 128) scaled
    1/sqrt(fan-in), bo (128,) small. Not one of the issue's rows: it measures the work a
    loop can move after itself (the per-step output layer and loss, ``transform/loops.sunk``).

    The floor is what a careful person writes: the recurrence step by step, then the output
    layer and the loss for every step at once (one product), then backpropagation through
    time step by step, accumulating x_t^T da and h^T da per step as ``rnn``'s floor does."""

    name = "rnnlm"
    about = (f"RNN language model: the rnn workload with an output layer ({RNN_HIDDEN} -> "
             f"{RNNLM_CLASSES}) and a cross-entropy at every step, summed in the loop")
    targets = {}

    def setup(self):
        self.xs_data = self.array(RNN_STEPS, RNN_BATCH, RNN_INPUT)
        self.wx_data = self.array(RNN_INPUT, RNN_HIDDEN, scale=1 / np.sqrt(RNN_INPUT))
        self.wh_data = self.array(RNN_HIDDEN, RNN_HIDDEN, scale=1 / np.sqrt(RNN_HIDDEN))
        self.b_data = self.array(RNN_HIDDEN, scale=0.1)
        self.wo_data = self.array(RNN_HIDDEN, RNNLM_CLASSES, scale=1 / np.sqrt(RNN_HIDDEN))
        self.bo_data = self.array(RNNLM_CLASSES, scale=0.1)
        for a in (self.wx_data, self.wh_data, self.b_data, self.wo_data, self.bo_data):
            self.leaf(a)
        self.labels = self.rng.integers(0, RNNLM_CLASSES, (RNN_STEPS, RNN_BATCH))
        self.data += [self.xs_data, self.labels]

    @staticmethod
    def loss(wx, wh, b, wo, bo, xs, ys):
        h = (xs[0].mm(wx) + b).tanh()
        total = cross_entropy(h.mm(wo) + bo, ys[0])
        for t in range(1, xs.shape[0]):
            h = (xs[t].mm(wx) + h.mm(wh) + b).tanh()
            total = total + cross_entropy(h.mm(wo) + bo, ys[t])
        return total / xs.shape[0]

    @staticmethod
    def loss_xp(F, wx, wh, b, wo, bo, xs, ys):
        h = F.tanh(xs[0] @ wx + b)
        total = F.cross_entropy(h @ wo + bo, ys[0])
        for t in range(1, xs.shape[0]):
            h = F.tanh(xs[t] @ wx + h @ wh + b)
            total = total + F.cross_entropy(h @ wo + bo, ys[t])
        return total / xs.shape[0]

    def floor(self):
        wx, wh, b, wo, bo = self.param_arrays
        xs, labels = self.xs_data, self.labels
        steps, batch = xs.shape[0], xs.shape[1]
        hs = rnn_states(wx, wh, b, xs)
        # the output layer and the loss of every step at once
        flat = hs.reshape(steps * batch, -1)
        z = flat @ wo
        z += bo
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        total = e.sum(axis=1, keepdims=True)
        rows, picked = np.arange(steps * batch), labels.reshape(-1)
        n = steps * batch
        loss = (np.log(total).sum() - z[rows, picked].sum()) / n
        dz = e
        dz /= total
        dz[rows, picked] -= 1
        dz *= 1.0 / n
        gwo = flat.T @ dz
        gbo = dz.sum(axis=0)
        dhs = (dz @ wo.T).reshape(steps, batch, -1)
        return loss, rnn_backward(wh, xs, hs, dhs=dhs) + [gwo, gbo]


# In the order.
WORKLOADS = {
    "tiny": Tiny,
    "mlp64": lambda seed=SEED: MLP(64, {"imperative": (Ratio(0.95),), "grad": (Ratio(0.95),)}, seed),
    "mlp512": lambda seed=SEED: MLP(512, {"imperative": (Ratio(1.0),), "grad": (Ratio(1.0),)}, seed),
    "chain": Chain,
    "cnn": CNN,
    "rnn": RNN,
    "digits": Digits,
    "rnnlm": RNNLM,         # (not one of the rows)
}


# ---- correctness ----------------------------------------------------------------------------

def check(workload: Workload, path: Path | None = None) -> float:
    """Compare one training step of a path (default: neuronika imperative) with the floor's:
    the loss and gradients at the initial parameters, and the parameters after the update.
    Raise GradientMismatch if they differ. Both start from the initial parameters and are
    put back there afterwards. Returns the largest relative difference seen (for
    information)."""
    path = path or workload.path("imperative")
    path.reset()
    workload.floor_reset()
    try:
        got_loss, got_grads, got_params = path.result()
        fl_loss, fl_grads, fl_params = workload.floor_result()
    finally:
        path.reset()
        workload.floor_reset()
    pairs = [("loss", got_loss, fl_loss)]
    pairs += [(f"grad {i} (shape {np.shape(f)})", n, f)
              for i, (n, f) in enumerate(zip(got_grads, fl_grads))]
    pairs += [(f"parameter {i} after the step", n, f)
              for i, (n, f) in enumerate(zip(got_params, fl_params))]
    problems = []
    for what, got, want in (("gradients", got_grads, fl_grads), ("parameters", got_params, fl_params)):
        if len(got) != len(want):
            problems.append(f"{path.label} gives {len(got)} {what}, the floor {len(want)}")
    worst = 0.0
    for what, n, f in pairs:
        n, f = np.asarray(n), np.asarray(f)
        if n.dtype != DTYPE or f.dtype != DTYPE:
            problems.append(f"{what}: dtypes {path.label} {n.dtype}, floor {f.dtype}; both must be "
                            f"{np.dtype(DTYPE)}")
            continue
        if n.shape != f.shape:
            problems.append(f"{what}: shapes {path.label} {n.shape}, floor {f.shape}")
            continue
        if not np.all(np.isfinite(n)) or not np.all(np.isfinite(f)):
            problems.append(f"{what}: not finite")
            continue
        scale = float(np.max(np.abs(f))) if f.size else 0.0
        diff = float(np.max(np.abs(n.astype(np.float64) - f))) if f.size else 0.0
        worst = max(worst, diff / scale if scale else diff)
        if not np.allclose(n, f, rtol=RTOL, atol=ATOL):
            problems.append(f"{what}: max |{path.label} - floor| = {diff:.3g} "
                            f"(max |floor| = {scale:.3g})")
    if problems:
        raise GradientMismatch(f"{workload.name}: {path.label} and the NumPy floor disagree "
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


def measure(paths, samples=41, sample_s=0.030, warmup_s=0.25):
    """Median per-step seconds of each path, from samples taken round-robin.

    Returns {key: {"median", "n" (steps per sample), "samples", "spread"}}. Round i
    starts at path i mod k and goes forwards or (every other cycle) backwards, so that each
    path is measured in every position and after different neighbours. Each sample starts
    from the initial parameters (``reset``, untimed).
    """
    deadline = time.perf_counter() + warmup_s
    warm = 0
    while warm < 3 or time.perf_counter() < deadline:
        for p in paths:
            p.step()
        warm += 1
    counts = [_iterations_for(p.step, sample_s) for p in paths]
    times = [[] for _ in paths]
    k = len(paths)
    gc.collect()
    for i in range(samples):
        order = [(i + j) % k for j in range(k)]
        if (i // k) % 2:
            order.reverse()
        for j in order:
            paths[j].reset()
            times[j].append(_per_iteration(paths[j].step, counts[j]))
    for p in paths:
        p.reset()
    return {p.key: {"median": statistics.median(t), "n": n, "samples": samples, "spread": _spread(t)}
            for p, n, t in zip(paths, counts, times)}


def peak_memory(path):
    """Bytes: tracemalloc's peak during one step, above what was live before it, after a
    step run untraced (warm: caches filled) and one traced (so that what the step frees
    was allocated under tracing). Counts what the step allocates from Python and NumPy;
    blind to libraries that allocate outside Python's allocators (torch, XLA)."""
    path.reset()
    path.step()
    gc.collect()
    tracemalloc.start()
    try:
        path.step()
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        path.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        path.reset()
    return peak - before


def _spread(times):
    """Half the interquartile range, relative to the median."""
    if len(times) < 4:
        return float("nan")
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / 2 / statistics.median(times)


# ---- reporting ------------------------------------------------------------------------------

def machine_facts(blas=None):
    """Lines describing the machine; ``blas`` is ``competitors.blas_threads()`` (computed here
    when None)."""
    name = "?"
    try:
        blas_info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        name = f"{blas_info.get('name', '?')} {blas_info.get('version', '')}".strip()
    except Exception:  # noqa: BLE001 - informational only
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    threads = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
               if k in os.environ]
    n, how = blas if blas is not None else competitors.blas_threads()
    found = f"{n} ({how})" if n else f"? ({how})"
    return [
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"numpy {np.__version__} (BLAS: {name}), neuronika {neuronika.__version__}",
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"CPUs: {os.cpu_count()} (usable: {usable}), BLAS threads: {found}; environment: "
        f"{', '.join(threads) or 'none set'}",
    ]


def _us(seconds):
    us = seconds * 1e6
    return f"{us:.1f}" if us < 1000 else f"{us:,.0f}"


def _percent(fraction):
    return "-" if fraction != fraction else f"{fraction:.0%}"


def _verdict(ok):
    return "-" if ok is None else ("yes" if ok else "no")


def _bytes(n):
    if n is None:
        return "n/a"
    if n < 1024:
        return f"{n} B"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


LONG_HEADER = ["workload", "path", "µs per step", "ratio to floor", "peak memory", "target", "met?"]


def table_rows(name, targets, times, memory=None, failed=None):
    """Cells of one workload's rows of the long table: ``times`` maps path keys (floor
    included) to median seconds, ``targets`` path keys to tuples of targets, ``memory``
    path keys to peak bytes per step (n/a where missing), ``failed`` path keys to the
    footnote mark of why they did not run."""
    rows = []
    memory, failed = memory or {}, failed or {}
    floor = times["floor"]
    for key in PATHS:
        wanted = targets.get(key, ())
        if key in failed:
            rows.append([name, PATHS[key], f"failed {failed[key]}", "-", "-",
                         "; ".join(t.label for t in wanted) or "-", "-"])
            continue
        if key not in times:
            continue
        rows.append([
            name, PATHS[key], _us(times[key]), f"{times[key] / floor:.2f}", _bytes(memory.get(key)),
            "; ".join(t.label for t in wanted) or "-",
            "; ".join(_verdict(t.met(key, times)) for t in wanted) or "-",
        ])
    return rows


def format_table(rows, header=None, right=None):
    """rows: lists of cells -> markdown table lines (default: the long table's header,
    ``LONG_HEADER``); ``right`` says which columns are right-aligned (default: numbers)."""
    header = header or LONG_HEADER
    if right is None:
        right = [h in ("µs per step", "ratio to floor", "peak memory") for h in header]
    body = [list(r) for r in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w)
                                 for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2))
                          for w, r in zip(widths, right)) + "|"
    return [line(header), rule] + [line(r) for r in body]


# The summary table: one row per workload. Its ratio columns, in the order, then the
# other paths; its memory columns are the paths tracemalloc sees.
SUMMARY_FIRST = ("torch", "torch-compile", "jax-jit", "imperative", "grad")
SUMMARY_REST = ("vg", "autograd", "jax-eager", "dispatch")
SHORT = {"dispatch": "imperative, numpy.*"}


def summary_header(keys):
    """The summary's header for the path keys that ran (``keys``, floor included)."""
    first = [k for k in SUMMARY_FIRST if k in keys]
    rest = [k for k in SUMMARY_REST if k in keys]
    memory = [k for k in TRACED_PATHS if k in keys]
    return (["workload", "floor µs/step"] + [SHORT.get(k, PATHS[k]) for k in first]
            + ["target", "met? (imperative / functional)"] + [SHORT.get(k, PATHS[k]) for k in rest]
            + [f"peak: {SHORT.get(k, PATHS[k])}" for k in memory] + ["peak: torch, jax"])


def _target_cells(targets, times):
    imperative, functional = targets.get("imperative", ()), targets.get("grad", ())
    labels = ["; ".join(t.label for t in ts) for ts in (imperative, functional)]
    if not imperative and not functional:
        text = "-"
    elif labels[0] == labels[1]:
        text = f"both {labels[0]}"
    else:
        text = ", ".join(f"{who} {label}" for who, label in zip(("imperative", "functional"), labels)
                         if label)

    def verdict(key, ts):
        if not ts or key not in times:
            return "-"
        return ", ".join(_verdict(t.met(key, times)) for t in ts)

    return text, f"{verdict('imperative', imperative)} / {verdict('grad', functional)}"


def summary_row(name, keys, targets, times, memory=None, failed=None):
    """One workload's cells of the summary table (``summary_header(keys)``): ratios to the
    floor, 'failed [n]' or '-' (the workload has no such path), peak memory per step."""
    memory, failed = memory or {}, failed or {}
    floor = times["floor"]

    def ratio(key):
        if key in failed:
            return f"failed {failed[key]}"
        return f"{times[key] / floor:.2f}x" if key in times else "-"

    first = [ratio(k) for k in SUMMARY_FIRST if k in keys]
    rest = [ratio(k) for k in SUMMARY_REST if k in keys]
    peaks = [_bytes(memory[k]) if k in memory else "-" for k in TRACED_PATHS if k in keys]
    return [name, _us(floor)] + first + list(_target_cells(targets, times)) + rest + peaks + ["n/a"]


def format_summary(keys, rows):
    header = summary_header(keys)
    right = [not (h == "workload" or h.startswith("target") or h.startswith("met")) for h in header]
    return format_table(rows, header, right)


# ---- profiling ------------------------------------------------------------------------------

def parse_profile(text):
    """'tiny' (the imperative path), 'tiny-grad', 'rnn-torch', ... -> (workload, path key)."""
    name, _, key = text.partition("-")
    key = key or "imperative"
    if name not in WORKLOADS or key not in PATHS:
        raise argparse.ArgumentTypeError(
            f"unknown profile target {text!r}: WORKLOAD or WORKLOAD-PATH, workloads "
            f"{', '.join(WORKLOADS)}, paths {', '.join(PATHS)}")
    return name, key


def profile(name, key="imperative", seconds=2.0, top=20, out=None):
    """cProfile over about ``seconds`` (unprofiled) worth of iterations of one path of one
    workload."""
    out = out or sys.stdout
    workload = WORKLOADS[name]()
    if not workload.supports(key):
        print(f"{name} has no {PATHS[key]} path", file=out)
        return 1
    makers = {}
    if key not in NEURONIKA_PATHS:
        makers, lines = competitors.load({key}, competitors.blas_threads()[0])
        for line in lines:
            print(line, file=out)
        if key not in makers:
            return 1
    path = workload.path(key, makers)
    check(workload, path)
    for _ in range(5):
        path.step()
    n = _iterations_for(path.step, seconds)
    step = path.step
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    for _ in range(n):
        step()
    profiler.disable()
    what = {"imperative": "neuronika's imperative step (build, backward, optimizer step, zero_grad)",
            "grad": f"{PATHS[key]}: {path.about}"}.get(key, PATHS[key])
    print(f"cProfile: {n} training steps of {name}, {what}; top {top} by tottime", file=out)
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(buffer.getvalue().strip("\n"), file=out)
    return 0


# ---- command line ---------------------------------------------------------------------------

def _names(text):
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(WORKLOADS)}")
    return names


def _path_keys(text):
    keys = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in keys if k not in PATHS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown path(s) {', '.join(unknown) or '(none)'}; "
                                         f"choose from {', '.join(PATHS)}")
    return keys


def run_workload(name, keys, makers, samples, sample_s, warmup_s):
    """One workload's results in this process, and its targets: each path checked against the
    floor (``worst``: its largest relative difference), then timed (``times``: median seconds
    per step, ``spread``, ``n``), its peak memory per step, the paths that could not run
    (``failed``: key -> why)."""
    workload = WORKLOADS[name]()
    paths, failed = [], {}
    for k in keys:
        if not workload.supports(k):
            continue
        try:
            paths.append(workload.path(k, makers))
        except PathFailed as error:
            failed[k] = str(error)
    worst = {p.key: check(workload, p) for p in paths if p.key != "floor"}   # loud, before timing
    result = measure(paths, samples=samples, sample_s=sample_s, warmup_s=warmup_s)
    return {"about": workload.about, "times": {k: r["median"] for k, r in result.items()},
            "spread": {k: r["spread"] for k, r in result.items()}, "n": {k: r["n"] for k, r in result.items()},
            "memory": {p.key: peak_memory(p) for p in paths if p.key in TRACED_PATHS},
            "failed": failed, "worst": worst}, workload.targets


def _child_arguments(args):
    """The options a child process of ``--processes`` repeats."""
    out = ["--quick"] if args.quick else []
    for option, value in (("--paths", args.paths), ("--threads", args.threads), ("--samples", args.samples),
                          ("--sample-ms", args.sample_ms)):
        if value is not None:
            out += [option, ",".join(value) if isinstance(value, (list, tuple)) else str(value)]
    return out


def in_processes(names, count, arguments, started):
    """Each workload of ``names`` timed in ``count`` fresh interpreters (``python -m benchmarks
    --only NAME --json FILE``, round after round): per path, the median of the processes'
    ratios to the floor times the median floor (``times``), every ratio (``ratios``), the
    largest half-IQR (``spread``), the median peak memory; the check and what failed from the
    first process."""
    import subprocess
    import tempfile
    runs = {name: [] for name in names}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as folder:
        for round_ in range(count):
            for name in names:
                print(f"[{time.perf_counter() - started:.0f} s] {name}: process {round_ + 1} of {count}",
                      file=sys.stderr, flush=True)
                path = os.path.join(folder, f"{name}-{round_}.json")
                done = subprocess.run([sys.executable, "-m", "benchmarks", "--only", name, "--json", path]
                                      + arguments, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
                if done.returncode:
                    raise RuntimeError(f"the benchmark process for {name} failed:\n{done.stderr[-3000:]}")
                with open(path) as found:
                    runs[name].append(json.load(found))
    combined = {}
    for name, found in runs.items():
        first = found[0]
        floor = statistics.median(r["times"]["floor"] for r in found)
        ratios = {k: [r["times"][k] / r["times"]["floor"] for r in found if k in r["times"]] for k in first["times"]}
        memory = {k: statistics.median(r["memory"][k] for r in found if k in r["memory"]) for k in first["memory"]}
        combined[name] = dict(first, times={k: statistics.median(v) * floor for k, v in ratios.items()},
                              ratios=ratios, memory=memory,
                              spread={k: max(r["spread"][k] for r in found if k in r["spread"]) for k in ratios})
    return combined


#: The block ``settle_allocator`` allocates and frees: at most glibc's largest dynamic mmap
#: threshold (32 MiB on 64-bit), which a larger block would not move.
SETTLE_BYTES = 16 << 20


def settle_allocator():
    """Allocate and free one ``SETTLE_BYTES`` block, as a process that has loaded a dataset
    has: glibc's dynamic thresholds then serve every smaller block from the heap (mmap
    threshold 16 MiB) and stop giving the heap's top back after each step (trim threshold
    32 MiB). Without it, whether a process trimmed (and faulted the step's temporaries in again
    on every step) depended on the layout of the allocations made at import: an unrelated
    edit flipped the chain's floor between 245 and 489 µs (0 and 144 faults a step), and the
    rows of small arrays with it. Every path of a run shares the process, so all are timed in
    the same state. Elsewhere than glibc the block is only allocated and freed."""
    np.empty(SETTLE_BYTES, np.uint8)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time one training step (forward, backward, SGD update) of neuronika "
                    "(imperative: graph rebuilt each step; functional: neuronika.jit or "
                    "value_and_grad) and, when installed, HIPS autograd, PyTorch (eager and "
                    "torch.compile) and JAX against a hand-written NumPy floor of the same step.")
    parser.add_argument("--quick", action="store_true",
                        help="few, short samples, no jax eager or torch.compile: a smoke check, "
                             "not a measurement")
    parser.add_argument("--only", type=_names, metavar="NAME[,NAME]",
                        help=f"run only these workloads ({', '.join(WORKLOADS)})")
    parser.add_argument("--paths", type=_path_keys, metavar="KEY[,KEY]",
                        help=f"time only these paths ({', '.join(PATHS)}; the floor always runs); "
                             f"default: all, competitors where installed")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="every framework's thread count (NumPy's BLAS through threadpoolctl, "
                             "torch, and XLA for N = 1); default: NumPy's BLAS count, matched by "
                             "torch. On a shared machine 1 avoids stalls in OpenMP barriers")
    parser.add_argument("--long", action="store_true",
                        help="also print the long table: one row per path and workload, with µs "
                             "per step and every target")
    parser.add_argument("--profile", type=parse_profile, metavar="WORKLOAD[-PATH]",
                        help="cProfile one path of one workload (default path: imperative; e.g. "
                             "tiny-grad); print the top functions by tottime (no table)")
    parser.add_argument("--top", type=int, default=20, help="functions --profile prints (default 20)")
    parser.add_argument("--samples", type=int, default=None,
                        help="samples per path per workload (default 31; 5 with --quick)")
    parser.add_argument("--sample-ms", type=float, default=None,
                        help="length of one sample in ms (default 30; 5 with --quick)")
    parser.add_argument("--processes", type=int, default=1, metavar="N",
                        help="time each workload in N fresh interpreters, one after another, and "
                             "report per path the median of their ratios to the floor: a process's "
                             "history (what it allocated and freed before) moves NumPy's memory "
                             "behaviour, and the ratios by up to 15%%; default 1 (this process)")
    parser.add_argument("--json", metavar="FILE", help=argparse.SUPPRESS)     # a child's results
    args = parser.parse_args(argv)
    settle_allocator()
    if args.processes < 1:
        parser.error(f"--processes must be at least 1, got {args.processes}")
    started = time.perf_counter()

    set_lines = []
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        try:
            set_lines = competitors.set_threads(args.threads)
        except RuntimeError as error:
            parser.error(str(error))
    blas = competitors.blas_threads()
    for fact in machine_facts(blas):
        print(fact)
    print()

    if args.profile:
        name, key = args.profile
        return profile(name, key, seconds=0.5 if args.quick else 2.0, top=args.top)

    keys = ["floor"] + [k for k in PATHS if k != "floor" and (args.paths is None or k in args.paths)]
    if args.quick and args.paths is None:
        # jax eager costs seconds of first calls and slow steps, torch.compile seconds of
        # compiling per workload: not for a smoke run.
        keys = [k for k in keys if k not in ("jax-eager", "torch-compile")]
        print("--quick: jax eager and torch.compile left out (ask for them with --paths)")
    makers, lines = competitors.load(set(keys), blas[0])
    lines = set_lines + lines
    kind = functional_kind()
    if "grad" in keys:
        lines.append(f"neuronika functional: {FUNCTIONAL_ABOUT[kind]}")
    for line in lines:
        print(line)
    if lines:
        print()
    keys = [k for k in keys if k in NEURONIKA_PATHS or k in makers]

    samples = args.samples or (5 if args.quick else 31)
    sample_s = (args.sample_ms or (5.0 if args.quick else 30.0)) / 1000
    warmup_s = 0.05 if args.quick else 0.25
    long_rows, summary, notes, noisy, reasons = [], [], [], [], []
    names = args.only or list(WORKLOADS)
    if args.processes > 1:
        found = in_processes(names, args.processes, _child_arguments(args), started)
    for name in names:
        if args.processes > 1:
            run, targets = found[name], WORKLOADS[name]().targets
        else:
            print(f"[{time.perf_counter() - started:.0f} s] {name}: setting up (compiling), checking, timing",
                  file=sys.stderr, flush=True)
            run, targets = run_workload(name, keys, makers, samples, sample_s, warmup_s)
        if args.json:
            with open(args.json, "w") as out:
                json.dump(run, out)
        failed = {}
        for k, reason in run["failed"].items():
            reasons.append(f"{name}, {PATHS[k]}: {reason}")
            failed[k] = f"[{len(reasons)}]"
        times, memory = run["times"], run["memory"]
        long_rows += table_rows(name, targets, times, memory, failed)
        summary.append(summary_row(name, keys, targets, times, memory, failed))
        spread = (f"Ratios to the floor in {args.processes} processes (median in the table): "
                  + ", ".join(f"{PATHS[k]} {min(r):.2f}-{max(r):.2f}" for k, r in run["ratios"].items()
                              if k != "floor")
                  if args.processes > 1 else
                  "Steps per sample / half-IQR: "
                  + ", ".join(f"{PATHS[k]} {run['n'][k]:,} / {_percent(run['spread'][k])}" for k in times))
        notes.append(f"- {name}: {run['about']}. One step matches the floor's (loss, gradients, "
                     "parameters after; max rel. diff: "
                     + ", ".join(f"{PATHS[k]} {w:.1e}" for k, w in run["worst"].items()) + "). "
                     + spread + ".")
        noisy += [(k, f"{name} {PATHS[k]}") for k, r in run["spread"].items() if r > 0.10]
    for line in format_summary(keys, summary):
        print(line)
    print()
    print(f"Ratio = median time per training step (forward, backward, SGD update with lr {LR}) / the "
          f"hand-written NumPy floor's, in the same run (lower is better); medians of {samples} "
          f"samples of ~{sample_s * 1000:g} ms per path, taken round-robin, each from the initial "
          f"parameters. floor µs/step: the floor's median. peak: tracemalloc's peak during one step "
          f"after warm-up, above what was live before it (n/a: torch and XLA allocate outside "
          f"Python's allocators). functional: {FUNCTIONAL_ABOUT[kind]}.")
    for i, reason in enumerate(reasons, 1):
        print(f"[{i}] {reason}")
    if args.long:
        print()
        for line in format_table(long_rows):
            print(line)
    print()
    for note in notes:
        print(note)
    if args.quick:
        print("--quick: a smoke run, not a measurement.")
    else:
        ours = [n for k, n in noisy if k in NEURONIKA_PATHS]
        theirs = [n for k, n in noisy if k not in NEURONIKA_PATHS]
        if ours:
            print(f"WARNING: noisy samples (half-IQR above 10%) for {', '.join(ours)}: the machine "
                  f"was busy; run again before trusting those rows.")
        if theirs:
            print(f"Noisy competitor rows (half-IQR above 10%): {', '.join(theirs)} (their worker "
                  f"threads share the cores with NumPy's; or the machine was busy).")
    print()
    print(f"neuronika.transform.cache_info(): {neuronika.transform.cache_info()}")
    print(f"Total time: {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
