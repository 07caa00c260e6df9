"""Threads: training different models at once gives the numbers of training them one
after the other (modes, caches and programs are safe to share)."""
import sys
import threading

import numpy as np
import pytest

import neuronika
from neuronika import nn, optim, transform

THREADS = 8
STEPS = 200


def _setup(k):
    """Model k: a Linear or an MLP (ReLU or Tanh), with SGD (momentum) or Adam, and its data."""
    neuronika.manual_seed(100 + k)
    rng = np.random.default_rng(k)
    n_in = 3 + k % 3
    if k % 4 == 1:
        model = nn.Linear(n_in, 2)
    else:
        act = nn.ReLU() if k % 2 == 0 else nn.Tanh()
        model = nn.Sequential(nn.Linear(n_in, 6 + k), act, nn.Linear(6 + k, 2))
    if k % 3 == 0:
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    else:
        opt = optim.Adam(model.parameters(), lr=0.01)
    x = rng.standard_normal((16, n_in)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    return model, opt, x, y


def _train(k, setup, start=None):
    """Train model k for STEPS steps; the losses, the final parameters and what the
    modes looked like from this thread."""
    model, opt, x, y = setup
    criterion = nn.MSELoss()
    losses, kinds = [], set()
    xs, ys = neuronika.from_ndarray(x), neuronika.from_ndarray(y)
    if start is not None:
        start.wait(30)
    for step in range(STEPS):
        opt.zero_grad()
        if k == 5:                      # this thread trains under detect_anomaly
            with neuronika.detect_anomaly():
                loss = criterion(model(xs), ys)
                loss.backward()
        else:
            loss = criterion(model(xs), ys)
            loss.backward()
        kinds.add(type(loss).__name__)
        opt.step()
        losses.append(loss.item())
        with neuronika.no_grad():       # an evaluation under no_grad at every step
            kinds.add("eval " + type(model(xs)).__name__)
    params = [p.data.copy() for p in model.parameters()]
    return losses, params, kinds


def _train_functional(k, setup, start=None):
    """Thread 7's way: neuronika.value_and_grad over plain arrays, SGD by hand (tracing
    sets the tracer mode while other threads build graphs)."""
    rng = np.random.default_rng(k)
    w = rng.standard_normal((5, 3))
    b = np.zeros(3)
    x = rng.standard_normal((16, 5))
    y = rng.standard_normal((16, 3))

    def loss_fn(w, b, x, y):
        return (((x @ w + b).tanh() - y) ** 2).mean()

    step_fn = neuronika.value_and_grad(loss_fn, argnums=(0, 1))
    losses = []
    if start is not None:
        start.wait(30)
    for _ in range(STEPS):
        value, (gw, gb) = step_fn(w, b, x, y)
        w = w - 0.1 * gw
        b = b - 0.1 * gb
        losses.append(float(value))
    return losses, [w, b], {"functional"}


def _job(k):
    return _train_functional if k == 7 else _train


def _setups():
    # Built one after the other: initialisers draw from the one global generator.
    return [None if k == 7 else _setup(k) for k in range(THREADS)]


@pytest.fixture
def small_cache():
    transform.cache_clear()
    transform.set_cache_size(6)          # evictions while the threads run
    yield
    transform.set_cache_size(512)


def _in_threads(n, job):
    """``[job(k, start) for k in range(n)]``, each in a thread of its own, started together
    (``start``: a barrier), switching often; an exception in any is raised here."""
    start = threading.Barrier(n)
    results, errors = [None] * n, []

    def run(k):
        try:
            results[k] = job(k, start)
        except BaseException as error:   # noqa: BLE001 - reported below
            errors.append((k, error))
            start.abort()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)               # switch threads often: more interleavings
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    return results


def test_eight_threads_training_match_the_sequential_run(small_cache):
    sequential = [_job(k)(k, setup) for k, setup in enumerate(_setups())]
    setups = _setups()
    results = _in_threads(THREADS, lambda k, start: _job(k)(k, setups[k], start))
    for k in range(THREADS):
        (seq_losses, seq_params, seq_kinds), (losses, params, kinds) = sequential[k], results[k]
        assert losses == seq_losses, k                        # bitwise
        for a, b in zip(params, seq_params):
            np.testing.assert_array_equal(a, b, err_msg=str(k))
        assert kinds == seq_kinds, k
        if k != 7:
            assert kinds == {"VarDiff", "eval Var"}, (k, kinds)
    assert neuronika.graph.modes.grad_enabled and not neuronika.graph.modes.anomaly


def test_threads_sharing_one_jitted_step_over_several_signatures():
    """Four threads call one jitted step with batches of their own size (the last-signature
    entry changes hands all the time), under a cache too small for every signature (entries
    are forgotten while others run them): each gets the numbers of calling alone."""
    import warnings
    transform.cache_clear()
    transform.set_cache_size(3)
    opt = optim.sgd(0.05)

    @neuronika.jit
    def step(params, state, x):
        value, grads = neuronika.value_and_grad(
            lambda p: (neuronika.numpy.tanh(x @ p[0] + p[1]) ** 2).mean())(params)
        updates, state = opt.update(grads, state, params)
        return optim.apply_updates(params, updates), state, value

    def job(k, start=None):
        rng = np.random.default_rng(k)
        params = [rng.standard_normal((3, 4)), rng.standard_normal(4)]
        state, x, values = opt.init(params), rng.standard_normal((2 + k, 3)), []
        if start is not None:
            start.wait()
        for _ in range(150):
            params, state, value = step(params, state, x)
            values.append(float(value))
        return values, params

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", neuronika.errors.RetraceWarning)
            sequential = [job(k) for k in range(4)]
            results = _in_threads(4, job)
    finally:
        transform.set_cache_size(512)
    assert step.stats.traced > 4           # (signatures evicted and traced again)
    for (seq_values, seq_params), (values, params) in zip(sequential, results):
        assert values == seq_values
        for a, b in zip(params, seq_params):
            np.testing.assert_array_equal(a, b)


def test_threads_running_one_scan_never_share_a_stack():
    """Four threads run one jitted loop whose stacks all come from the pool (``ops.pool``):
    each gets the numbers of running alone."""
    from neuronika.ops import pool
    transform.cache_clear()
    before, pool.MIN_BYTES = pool.MIN_BYTES, 0
    W = np.random.default_rng(0).standard_normal((6, 6)) * 0.5

    def loss(w, xs):
        def cell(h, x):
            h = neuronika.numpy.tanh(x + h @ w)
            return h, h * 2.0
        h, ys = neuronika.scan(cell, neuronika.numpy.zeros((xs.shape[1], 6)), xs)
        return (ys * ys).mean() + (h * h).sum()

    f = neuronika.jit(neuronika.value_and_grad(loss))
    inputs = [np.random.default_rng(k).standard_normal((20, 4, 6)) for k in range(4)]
    try:
        alone = [f(W, x) for x in inputs]

        def job(k, start):
            start.wait()
            return [f(W, inputs[k]) for _ in range(30)]

        for k, runs in enumerate(_in_threads(4, job)):
            for value, grad in runs:
                assert value == alone[k][0]
                np.testing.assert_array_equal(grad, alone[k][1])
    finally:
        pool.MIN_BYTES = before
        pool.clear()
        transform.cache_clear()
