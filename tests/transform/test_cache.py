"""The program cache: hits on rebuilt graphs, misses on changed signatures, bounds,
threads, and what an evicted program leaves behind."""
import gc
import linecache
import sys
import threading
import time
import weakref

import numpy as np
import pytest

import neuronika
from neuronika import transform
from neuronika.transform.cache import CACHE, TRACED, ProgramCache, TraceCache


@pytest.fixture(autouse=True)
def fresh_cache():
    transform.cache_clear()
    yield
    transform.set_cache_size(512)
    TRACED.maxsize = 256


def tiny(x, w, b):
    return (x.mm(w) + b).tanh().sum()


def test_rebuilt_graph_of_the_same_structure_hits():
    x, w, b = neuronika.rand((4, 8)), neuronika.rand((8, 8)).requires_grad(), neuronika.rand(8).requires_grad()
    for _ in range(5):
        tiny(x, w, b).backward()
    info = transform.cache_info()
    assert (info.hits, info.misses, info.currsize) == (4, 1, 1)


def test_forward_and_backward_again_on_the_same_graph_hit():
    w = neuronika.rand(3).requires_grad()
    y = (w * w).sum()
    y.forward()
    y.forward()
    y.backward()          # differentiates the last forward: no look-up
    y.backward()          # nothing evaluated since: runs the forward again
    assert transform.cache_info().misses == 1 and transform.cache_info().hits == 2


@pytest.mark.parametrize("change", ["shape", "dtype", "requires_grad", "structure", "attribute",
                                    "sharing", "no_grad", "train_eval", "anomaly"])
def test_anything_that_changes_the_code_misses(change):
    def build(shape=(4, 3), dtype=np.float32, grad=True, axis=None):
        x = neuronika.ones(shape, dtype=dtype)
        return x.requires_grad() if grad else x

    base = (build() * 2).sum(axis=0)
    base.forward()
    if change == "shape":
        other = (build((5, 3)) * 2).sum(axis=0)
    elif change == "dtype":
        other = (build(dtype=np.float64) * 2).sum(axis=0)
    elif change == "requires_grad":
        other = (build(grad=False) * 2).sum(axis=0)
    elif change == "structure":
        other = (build() + 2).sum(axis=0)
    elif change == "attribute":
        other = (build() * 2).sum(axis=1)
    elif change == "sharing":
        a, b = build(), build()
        base = (a * a).sum(axis=0)
        base.forward()
        other = (a * b).sum(axis=0)
    elif change == "no_grad":
        with neuronika.no_grad():
            other = (build() * 2).sum(axis=0)
    elif change == "train_eval":
        base = build().dropout(0.5).sum(axis=0)
        base.forward()
        other = build().dropout(0.5).sum(axis=0)
        other.eval()
    else:
        other = (build() * 2).sum(axis=0)
        misses = transform.cache_info().misses
        with neuronika.detect_anomaly():
            other.forward()
        assert transform.cache_info().misses == misses + 1
        return
    misses = transform.cache_info().misses
    other.forward()
    assert transform.cache_info().misses == misses + 1


def test_values_are_not_part_of_the_key():
    w = neuronika.rand(3).requires_grad()
    (w * 2.0).sum().forward()
    (w * 7.5).sum().forward()                     # a different number: same program
    (neuronika.rand(3).requires_grad() * 3).sum().forward()
    x = neuronika.rand((4, 3))
    for i in range(4):
        (x[i] * w).sum().forward()                # the index is data, not code
    info = transform.cache_info()
    assert info.misses == 2


def test_cache_is_bounded_lru():
    transform.set_cache_size(2)
    w = neuronika.rand(4).requires_grad()
    for n in (1, 2, 3):
        w[:n].sum().forward()
    assert transform.cache_info().currsize == 2
    w[:3].sum().forward()                         # still cached
    assert transform.cache_info().hits == 1
    w[:1].sum().forward()                         # evicted
    assert transform.cache_info().misses == 4


def test_cache_clear_resets():
    (neuronika.rand(2).requires_grad() * 2).sum().forward()
    transform.cache_clear()
    assert transform.cache_info() == transform.CacheInfo(0, 0, 512, 0)


def _hammer(work, threads=8):
    errors = []

    def run(k):
        try:
            work(k)
        except BaseException as error:       # noqa: BLE001 - reported below
            errors.append(error)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        pool = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors[:3]


class _Fake:
    def __init__(self, key):
        self.key = key
        self.filenames = []


class _Key:
    """A key whose hash lets other threads run, as a key holding Python objects may."""

    def __init__(self, k):
        self.k = k

    def __hash__(self):
        time.sleep(0)
        return hash(self.k)

    def __eq__(self, other):
        return isinstance(other, _Key) and other.k == self.k


def test_eight_threads_on_one_program_cache():
    cache = ProgramCache(maxsize=4)
    n = 2000

    def work(k):
        for i in range(n):
            key = _Key((i * 7 + k) % 6)
            assert cache.get_or_build(key, lambda: _Fake(key)).key == key

    _hammer(work)
    info = cache.info()
    assert info.hits + info.misses == 8 * n and info.currsize == 4
    assert len(cache.programs) == 4


def test_eight_threads_on_one_trace_cache():
    cache = TraceCache(maxsize=3, per_signature=2)

    def work(k):
        for i in range(1000):
            key = _Key((i + k) % 5)
            cache.add(key, (key, k))
            found = cache.get(key)
            assert found is None or all(t[0] == key for t in found)

    _hammer(work)
    assert len(cache.traces) <= 3 and all(len(v) <= 2 for v in cache.traces.values())


def test_eight_threads_building_graphs_with_evictions():
    transform.set_cache_size(3)

    def work(k):
        w = neuronika.ones(16, dtype=np.float64).requires_grad()
        for i in range(150):
            n = 1 + (i * 7 + k) % 6
            w[:n].sum().backward()
        np.testing.assert_array_equal(w.grad, np.bincount(
            np.concatenate([np.arange(1 + (i * 7 + k) % 6) for i in range(150)]), minlength=16))

    _hammer(work)
    assert len(CACHE.programs) <= 3


def _generated_files():
    return {k for k in linecache.cache if isinstance(k, str) and k.startswith("<neuronika ")}


def test_eviction_and_clear_free_programs_and_their_linecache_entries():
    gc.collect()
    baseline = _generated_files()
    transform.set_cache_size(2)
    w = neuronika.rand(40).requires_grad()
    refs = []
    for n in range(1, 12):
        w[:n].sum().backward()
        refs.append(weakref.ref(CACHE.programs[next(reversed(CACHE.programs))]))
    assert sum(r() is not None for r in refs) == 2          # evicted programs are gone ...
    assert len(_generated_files() - baseline) == 2 * 2     # ... with their source (forward + backward)
    f = neuronika.grad(lambda x: (x * x).sum())
    for n in range(1, 6):
        f(np.ones(n))
    transform.cache_clear()
    assert all(r() is None for r in refs)
    assert _generated_files() <= baseline


def test_a_program_still_in_use_keeps_its_source():
    # TRACED (shared between functions) evicts a program that a function's own trace
    # cache still runs: its generated lines must stay visible to tracebacks.
    TRACED.maxsize = 2

    def loss(x):
        return (x * x).sum()

    f = neuronika.grad(loss)
    for n in range(1, 6):
        f(np.ones(n))
    traces = [t for ts in f.cache.traces.values() for t in ts]
    assert len(traces) == 5
    for trace in traces:
        for filename in trace.program.filenames:
            assert linecache.getline(filename, 1).startswith("def "), filename
    del f, traces, trace
    transform.cache_clear()
    gc.collect()
    assert not {k for k in _generated_files() if "program" in k}

