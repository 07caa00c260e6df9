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
    # These tests are about compiled programs: compile on the first run (no interpreter).
    compiling = neuronika.config(compile="always")
    transform.cache_clear()
    yield
    transform.set_cache_size(512, 512 * 2 ** 20)
    compiling.__exit__(None, None, None)


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


def test_a_traced_program_lives_as_long_as_a_trace_runs_it():
    # TRACED only finds the programs traces hold (weakly): while a trace runs one, its
    # generated lines stay visible to tracebacks; when the traces go, so do program and lines.
    def loss(x):
        return (x * x).sum()

    f = neuronika.grad(loss)
    for n in range(1, 6):
        f(np.ones((2,) * n))                        # five ranks: five programs (not one family)
    traces = [t for ts in f.cache.traces.values() for t in ts]
    assert len(traces) == 5 and len(TRACED.programs) == 5
    for trace in traces:
        for filename in trace.program.filenames:
            assert linecache.getline(filename, 1).startswith("def "), filename
    del traces, trace
    transform.set_cache_size(entries=1)             # evicts all traces but the newest
    gc.collect()
    assert len(f.cache) == 1 and len(TRACED.programs) == 1
    assert len({k for k in _generated_files() if "program" in k}) == 1
    del f
    transform.cache_clear()
    gc.collect()
    assert not {k for k in _generated_files() if "program" in k}


# ---- one limit over every cache (issue 12) ---------------------------------------------------------

@pytest.mark.filterwarnings("ignore::neuronika.RetraceWarning")
def test_set_cache_size_reaches_the_per_function_caches():
    transform.set_cache_size(entries=10)
    f = neuronika.grad(lambda x: (x * x).sum())
    for n in range(1, 30):
        np.testing.assert_array_equal(f(np.ones(n)), np.full(n, 2.0))
    limits = transform.cache_limits()
    assert limits.used_entries <= 10 and len(f.cache) <= 10
    assert transform.cache_info().currsize == limits.used_entries
    np.testing.assert_array_equal(f(np.ones(29)), np.full(29, 2.0))      # the newest are kept
    assert transform.cache_info().hits >= 1


@pytest.mark.filterwarnings("ignore::neuronika.RetraceWarning")
def test_the_least_recently_used_go_first_whichever_cache_holds_them():
    transform.set_cache_size(entries=12)
    hot = neuronika.grad(lambda x: (x * 3.0).sum())
    churn = neuronika.grad(lambda x: (x * 5.0).sum())
    w = neuronika.rand(64).requires_grad()
    hot(np.ones(2))
    for n in range(1, 40):
        churn(np.ones(n))
        w[:n].sum().backward()                  # imperative programs share the same limit
        hot(np.ones(2))                         # used every step: never evicted
    assert len(hot.cache) == 1
    assert transform.cache_limits().used_entries <= 12
    assert len(CACHE.programs) < 12 and len(churn.cache) < 12


@pytest.mark.filterwarnings("ignore::neuronika.RetraceWarning")
def test_the_byte_limit_counts_generated_code_and_constants():
    def program_bytes_of(f):
        return sum(sum(g.sizes) for g in f.cache.traces.values())

    big = np.ones(100_000)                       # 800 kB that only the trace keeps
    f = neuronika.grad(lambda x: (x * np.ones(100_000)).sum())
    f(np.ones(100_000))
    assert program_bytes_of(f) > big.nbytes
    g = neuronika.grad(lambda x: (x * big).sum())     # the closure holds it anyway: not counted
    g(np.ones(100_000))
    assert program_bytes_of(g) < big.nbytes
    transform.cache_clear()
    transform.set_cache_size(bytes=150_000)
    h = neuronika.grad(lambda x: (x * x).tanh().sum())
    for n in range(1, 40):
        h(np.ones(n))
    limits = transform.cache_limits()
    assert 0 < limits.used_bytes <= 150_000 and len(h.cache) < 30
    f(np.ones(100_000))                          # bigger than the limit alone: kept (the newest)
    assert len(f.cache) == 1 and transform.cache_limits().used_entries == 1


def test_a_trace_is_counted_as_what_it_compiled_to():
    from neuronika.transform.cache import program_bytes

    def held(f):
        return sum(sum(g.sizes) for g in f.cache.traces.values())

    f = neuronika.grad(lambda x: (x * 2.0).tanh().sum())
    with neuronika.config(compile="auto", compile_after=2):
        f(np.ones(3))                                  # interpreted: counted by its graph
        (trace,) = next(iter(f.cache.traces.values()))
        assert trace.pending is not None
        estimate = held(f)
        f(np.ones(3))                                  # compiled on its second run
    assert trace.pending is None
    assert held(f) == trace.nbytes != estimate
    assert trace.program_size == program_bytes(trace.program)
    assert f.cache.held_bytes == held(f)


def test_set_cache_size_checks_its_arguments_and_keeps_the_old_call():
    transform.set_cache_size(100)
    assert transform.cache_info().maxsize == 100 and transform.cache_limits().entries == 100
    transform.set_cache_size(bytes=2 ** 20)
    assert transform.cache_limits()[:2] == (100, 2 ** 20)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            transform.set_cache_size(bad)
        with pytest.raises(ValueError):
            transform.set_cache_size(bytes=bad)


@pytest.mark.filterwarnings("ignore::neuronika.RetraceWarning")
def test_memory_stays_flat_over_ten_thousand_steps_of_varying_shapes():
    """A function called on 80 shapes, with room for 40: a miss (trace, compile, evictions)
    on every other step, and no growth from 1,000 to 10,000 steps."""
    import dis
    import tracemalloc

    from neuronika.transform import codegen
    transform.set_cache_size(entries=40)
    f = neuronika.value_and_grad(lambda x, s: (x * s).sum())
    sizes = np.random.RandomState(0).randint(1, 81, 10_000)

    def steps(a, b):
        for k in range(a, b):
            f(np.ones(sizes[k]), 0.5)

    # CPython 3.11 keeps every file name given to compile() (about 75 bytes each): the
    # generated programs' names (made where codegen's code holds "<neuronika") are left
    # out of the count. Lines from the loaded code, not the file (it may have changed).
    named = set()
    for fn in vars(codegen).values():
        code = getattr(fn, "__code__", None)
        if code is not None and code.co_filename == codegen.__file__:
            named.update(i.positions.lineno for i in dis.get_instructions(code)
                         if isinstance(i.argval, str) and i.argval.startswith("<neuronika"))
    leave_out = [tracemalloc.Filter(False, codegen.__file__, lineno=n) for n in named]

    steps(0, 1000)
    gc.collect()
    tracemalloc.start()
    try:
        steps(1000, 2000)
        gc.collect()
        before = _traced_bytes(leave_out)
        misses = transform.cache_info().misses
        steps(2000, 10_000)
        gc.collect()
        after = _traced_bytes(leave_out)
    finally:
        tracemalloc.stop()
    assert transform.cache_info().misses - misses > 2000          # it did churn
    assert transform.cache_limits().used_entries <= 40
    assert after - before < 64 * 1024, (before, after)


def _traced_bytes(filters):
    import tracemalloc
    return sum(s.size for s in tracemalloc.take_snapshot().filter_traces(filters).statistics("filename"))
