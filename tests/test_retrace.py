"""Retraces are visible and rare (issue 12, item 5).

Python ints and floats are values of a traced function, not static; ``static_argnums`` /
``static_argnames`` make an argument static (JAX's names); a ``grad(f)`` made again for
the same function finds the traces of the first; a function traced again and again warns
once (``RetraceWarning``) naming what changed; ``transform.explain`` says why a call missed.
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika import RetraceWarning, tracing, transform
from neuronika.transform import cache as tcache


@pytest.fixture(autouse=True)
def fresh():
    transform.cache_clear()
    transform.set_retrace_warning(8)
    yield
    transform.set_retrace_warning(8)
    transform.set_cache_size(512, 512 * 2 ** 20)
    transform.cache_clear()


class _Counting:
    """``codegen`` for the tracer, counting the programs it generates."""

    def __init__(self, built):
        self.built = built

    def build(self, *args, **kwargs):
        self.built.append(1)
        return tcache.codegen.build(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(tcache.codegen, name)


@pytest.fixture
def builds(monkeypatch):
    """The programs generated for traced functions since made (a first-seen signature is
    interpreted, not compiled)."""
    built = []
    monkeypatch.setattr(tracing, "codegen", _Counting(built))
    return built


def traces(f):
    return f.stats.traced


RS = np.random.RandomState(0)
X = RS.randn(64, 5)
Y = RS.randn(64, 1)


def mse(params, x, y):
    w, b = params
    return nnp.mean((x @ w + b - y) ** 2)


def mse_np_grad(params, x, y):
    w, b = params
    r = 2 * (x @ w + b - y) / y.size
    return x.T @ r, r.sum(0)


def start():
    return [RS.randn(5, 1) * 0.1, np.zeros(1)]


# ---- ints and floats are values ---------------------------------------------------------------

def test_an_int_argument_does_not_retrace_autograds_optimizer_idiom():
    # autograd's optimizers call grad(objective)(params, i) with i the iteration.
    def objective(params, i):
        return mse(params, X, Y)

    g = neuronika.grad(objective)
    params = start()
    for i in range(50):
        grads = g(params, i)
        want = mse_np_grad(params, X, Y)
        np.testing.assert_allclose(grads[0], want[0], rtol=1e-12)
        params = [p - 0.1 * d for p, d in zip(params, grads)]
    assert traces(g) == 1
    assert transform.cache_info().misses == 1


def test_an_int_is_a_weakly_typed_value_of_the_program():
    f = neuronika.value_and_grad(lambda x, n: (x * n + x ** n).sum())
    x = np.array([1.5, 2.0], np.float32)
    for n in (1, 2, 3, -1, 0):
        value, g = f(x, n)
        assert value.dtype == np.float32 and g.dtype == np.float32       # x32 * n stays float32
        np.testing.assert_allclose(g, n + n * x.astype(np.float64) ** (n - 1 if n else 0) * (n != 0),
                                   rtol=1e-6)
    assert traces(f) == 1
    assert "x1" in f.source(x, 2) or "program" in f.source(x, 2)


def test_numpy_integer_scalars_and_floats_are_values_too():
    f = neuronika.grad(lambda x, k, s: (x * k * s).sum())
    for k, s in [(np.int64(2), 0.5), (np.int64(5), 1.5)]:
        np.testing.assert_allclose(f(np.ones(2), k, s), [k * s] * 2)
    assert traces(f) == 1


def test_an_int_used_as_a_python_number_is_guarded_and_shares_the_program(builds):
    # range(n) needs n as a Python int: each new n traces again (the trace checks it before
    # running); a new n that builds the same graph reuses the program.
    def f(x, n):
        total = x.sum() * 0.0
        for k in range(n):
            total = total + (x * k).sum()
        return total

    g = neuronika.grad(f)
    for n in (2, 3, 2, 3, 4):
        np.testing.assert_allclose(g(np.ones(3), n), np.full(3, n * (n - 1) / 2))
    assert traces(g) == 3                      # n = 2, 3, 4
    h = neuronika.grad(lambda x, i: (x * float(i)).sum())
    built = len(builds)
    for i in range(6):
        np.testing.assert_allclose(h(np.ones(2), i), [i, i])
    assert traces(h) == 6 and len(builds) - built == 1      # one program for every i


def test_control_flow_on_an_int_traces_each_branch_once():
    def f(x, i):
        if i % 10 == 0:
            return (x * x).sum()
        return x.sum()

    g = neuronika.grad(f)
    for i in range(30):
        np.testing.assert_allclose(g(np.array([3.0]), i), [6.0] if i % 10 == 0 else [1.0])
    assert traces(g) == 2


def test_an_int_that_picks_a_minibatch_of_numpy_data_is_one_program(builds):
    # autograd's neural_net.py: the iteration number slices a NumPy array. The slice is read
    # as Python ints (a trace per batch), but every batch builds the same graph.
    batch, n_batches = 16, 4

    def objective(params, i):
        idx = i % n_batches
        rows = slice(idx * batch, (idx + 1) * batch)
        return mse(params, X[rows], Y[rows])

    g = neuronika.grad(objective)
    params = start()
    for i in range(12):
        rows = slice((i % n_batches) * batch, (i % n_batches + 1) * batch)
        grads = g(params, i)
        want = mse_np_grad(params, X[rows], Y[rows])
        np.testing.assert_allclose(grads[0], want[0], rtol=1e-12)
        np.testing.assert_allclose(grads[1], want[1], rtol=1e-12)
    assert traces(g) == n_batches
    assert len(builds) == 2                    # the program, and the check of the slice bounds


def test_an_int_as_an_index_axis_slice_or_key():
    x = np.arange(12.0).reshape(3, 4)
    table = {1: 2.0, 2: 3.0}
    cases = [
        (lambda x, i: x[i].sum(), lambda x, i: x[i].sum()),
        (lambda x, i: x[:i].sum(), lambda x, i: x[:i].sum()),
        (lambda x, i: (x.sum(axis=i - 1) ** 2).sum(), lambda x, i: (x.sum(axis=i - 1) ** 2).sum()),
        (lambda x, i: (x.reshape(i + 1, -1) ** 2).sum(), lambda x, i: (x.reshape(i + 1, -1) ** 2).sum()),
        (lambda x, i: (x * table[i]).sum(), lambda x, i: (x * table[i]).sum()),
        (lambda x, i: (x * (1.0 if i in {2} else 0.5)).sum(), lambda x, i: x.sum() * (1.0 if i == 2 else 0.5)),
        (lambda x, i: (x * {"w1": 1.0, "w2": 4.0}[f"w{i}"]).sum(), lambda x, i: x.sum() * (1.0, 4.0)[i - 1]),
        (lambda x, i: (x[0, :i] * np.arange(i)).sum(), lambda x, i: (x[0, :i] * np.arange(i)).sum()),
        (lambda x, i: (x * np.full(4, i)).sum(), lambda x, i: (x * np.full(4, i)).sum()),
    ]
    for f, reference in cases:
        g = neuronika.value_and_grad(f)
        for i in (1, 2, 1):
            value, _ = g(x, i)
            np.testing.assert_allclose(value, reference(x, i))


def test_an_int_the_graph_cannot_take_as_a_value_says_to_mark_it_static():
    f = neuronika.grad(lambda x, shift: (nnp.roll(x, shift) * np.arange(3.0)).sum())
    with pytest.raises(neuronika.GradientError) as info:
        f(np.ones(3), 1)
    notes = " ".join(getattr(info.value, "__notes__", ()))
    assert "argument 1 ('shift')" in notes and "static_argnums" in notes
    # a value computed from the int, converted by NumPy: the same advice
    h = neuronika.grad(lambda x, n: (x * np.arange(n + 1)).sum())
    with pytest.raises(neuronika.GradientError) as info:
        h(np.ones(3), 2)
    assert "static_argnums" in " ".join(getattr(info.value, "__notes__", ()))
    np.testing.assert_allclose(neuronika.grad(h.__wrapped__, static_argnums=1)(np.ones(3), 2), [0, 1, 2])
    g = neuronika.grad(lambda x, shift: (nnp.roll(x, shift) * np.arange(3.0)).sum(), static_argnums=1)
    np.testing.assert_allclose(g(np.ones(3), 1), [1.0, 2.0, 0.0])


def test_an_unrelated_error_gets_no_note_about_ints():
    f = neuronika.grad(lambda x, i: (x * np.ones(2)).sum())
    with pytest.raises(neuronika.ShapeError) as info:
        f(np.ones(3), 1)
    assert not getattr(info.value, "__notes__", None)


def test_bools_strings_and_none_stay_static():
    seen = []

    def f(x, flag, mode, nothing):
        seen.append((type(flag), type(mode), nothing))
        return (x * 2.0).sum() if flag and mode == "double" else x.sum()

    g = neuronika.grad(f)
    np.testing.assert_allclose(g(np.ones(2), True, "double", None), [2.0, 2.0])
    np.testing.assert_allclose(g(np.ones(2), False, "double", None), [1.0, 1.0])
    assert seen == [(bool, str, None), (bool, str, None)]
    assert traces(g) == 2


def test_a_large_int_stays_static():
    f = neuronika.grad(lambda x, n: (x * (n % 7)).sum())
    np.testing.assert_allclose(f(np.ones(2), 2 ** 70), [2 ** 70 % 7] * 2)


# ---- static_argnums / static_argnames -----------------------------------------------------------

def test_static_argnums_passes_the_python_value_and_is_part_of_the_key():
    seen = []

    def f(x, n):
        seen.append(type(n))
        return (x ** n).sum()

    g = neuronika.grad(f, static_argnums=1)
    x = np.array([2.0])
    np.testing.assert_allclose(g(x, 3), [12.0])
    np.testing.assert_allclose(g(x, 3), [12.0])       # the same value: a hit
    np.testing.assert_allclose(g(x, 2), [4.0])        # a new value: traced again
    assert seen == [int, int]
    assert traces(g) == 2
    assert "static value 3 -> 2" in str(g.stats.last_miss)


def test_static_argnames_and_argnums_imply_each_other():
    def f(x, n, scale=1.0):
        assert isinstance(n, int)
        return (x ** n).sum() * scale

    by_name = neuronika.grad(f, static_argnames="n")
    np.testing.assert_allclose(by_name(np.array([2.0]), 3), [12.0])          # positional
    np.testing.assert_allclose(by_name(np.array([2.0]), n=2), [4.0])         # keyword
    by_position = neuronika.grad(f, static_argnums=(1,))
    np.testing.assert_allclose(by_position(np.array([2.0]), n=3), [12.0])
    np.testing.assert_allclose(by_position(np.array([2.0]), 3, scale=2.0), [24.0])


def test_static_argnums_on_value_and_grad_jacobian_hessian_and_vjp():
    f = lambda x, n: (x ** n).sum()                               # noqa: E731
    value, g = neuronika.value_and_grad(f, static_argnums=1)(np.array([2.0]), 3)
    assert float(value) == 8.0 and g.tolist() == [12.0]
    jac = neuronika.jacobian(lambda x, n: x ** n, static_argnums=1)(np.array([1.0, 2.0]), 2)
    np.testing.assert_allclose(jac, np.diag([2.0, 4.0]))
    hess = neuronika.hessian(f, static_argnums=1)(np.array([1.0, 2.0]), 3)
    np.testing.assert_allclose(hess, np.diag([6.0, 12.0]))
    _, pullback = neuronika.vjp(lambda x, n: x ** n, np.array([1.0, 2.0]), 3, static_argnums=1)
    grads = pullback(np.ones(2))
    assert grads[1] is None
    np.testing.assert_allclose(grads[0], [3.0, 12.0])


def test_static_arguments_must_be_hashable_and_not_differentiated():
    g = neuronika.grad(lambda x, sizes: (x * len(sizes)).sum(), static_argnums=1)
    with pytest.raises(TypeError, match=r"argument 1 is marked static .* list.*hashable"):
        g(np.ones(2), [1, 2])
    np.testing.assert_allclose(g(np.ones(2), (1, 2)), [2.0, 2.0])
    with pytest.raises(ValueError, match="both differentiated"):
        neuronika.grad(lambda x: x.sum(), argnums=0, static_argnums=0)
    with pytest.raises(TypeError, match="static_argnums"):
        neuronika.grad(lambda x: x.sum(), static_argnums="x")


def test_a_static_value_is_keyed_with_its_type():
    seen = []

    def f(x, flag):
        seen.append(type(flag))
        return x.sum()

    g = neuronika.grad(f, static_argnums=1)
    g(np.ones(1), 1)
    g(np.ones(1), True)          # 1 == True, but not the same static value
    g(np.ones(1), 1.0)
    assert seen == [int, bool, float]


# ---- grad(f) made again finds the same cache ---------------------------------------------------

def loss(params, x, y):
    return mse(params, x, y)


def test_grad_made_inside_update_hits_the_cache_jax_idiom():
    def update(params, x, y):
        grads = neuronika.grad(loss)(params, x, y)
        return [p - 0.1 * d for p, d in zip(params, grads)]

    params = start()
    for i in range(20):
        rows = slice(16 * (i % 4), 16 * (i % 4) + 16)
        want = [p - 0.1 * d for p, d in zip(params, mse_np_grad(params, X[rows], Y[rows]))]
        params = update(params, X[rows], Y[rows])
        np.testing.assert_allclose(params[0], want[0], rtol=1e-12)
    assert transform.cache_info().misses == 1


def test_a_closure_made_again_over_the_same_objects_hits():
    x, y = X[:16], Y[:16]

    def update(params, scale):
        return neuronika.grad(lambda p: mse(p, x, y) * scale)(params)

    params = start()
    for _ in range(5):
        update(params, 2.0)
    assert transform.cache_info().misses == 1
    g = update(params, 3.0)                   # another number in the closure: another trace
    np.testing.assert_allclose(g[0], 3.0 * mse_np_grad(params, x, y)[0], rtol=1e-12)
    assert transform.cache_info().misses == 2


def test_a_closure_over_new_arrays_traces_again_with_the_new_arrays(builds):
    params = start()
    for k in range(4):
        x, y = X[16 * k:16 * k + 16].copy(), Y[16 * k:16 * k + 16].copy()
        g = neuronika.grad(lambda p: mse(p, x, y))(params)
        np.testing.assert_allclose(g[0], mse_np_grad(params, x, y)[0], rtol=1e-12)
    assert len(builds) == 1                   # traced per closure, one program for all


def test_a_rebound_global_function_is_seen_by_a_new_grad():
    global helper

    def helper(x):
        return x * 2.0

    def f(x):
        return helper(x).sum()

    np.testing.assert_allclose(neuronika.grad(f)(np.ones(2)), [2.0, 2.0])

    def helper(x):                              # noqa: F811 - rebound on purpose
        return x * 5.0

    np.testing.assert_allclose(neuronika.grad(f)(np.ones(2)), [5.0, 5.0])


def test_methods_made_again_share_their_object_s_cache():
    class Model:
        def __init__(self, scale):
            self.scale = scale

        def loss(self, w):
            return (w * w).sum() * self.scale

    a, b = Model(1.0), Model(3.0)
    for _ in range(3):
        np.testing.assert_allclose(neuronika.grad(a.loss)(np.ones(2)), [2.0, 2.0])
        np.testing.assert_allclose(neuronika.grad(b.loss)(np.ones(2)), [6.0, 6.0])
    assert transform.cache_info().misses == 2


def test_grad_of_grad_and_hvp_made_again_hit(builds):
    f = lambda x: (x ** 3).sum()                                  # noqa: E731
    for _ in range(3):
        np.testing.assert_allclose(neuronika.grad(lambda x: neuronika.grad(f)(x).sum())(np.ones(2)),
                                   [6.0, 6.0])
        np.testing.assert_allclose(neuronika.grad(neuronika.grad(lambda x: (x ** 3).sum()))(2.0), 12.0)
        np.testing.assert_allclose(neuronika.hvp(lambda x: (x ** 3).sum(), np.ones(2), np.ones(2)),
                                   [6.0, 6.0])
    assert transform.cache_info().misses == 3 and len(builds) == 3


# ---- the retrace warning ----------------------------------------------------------------------

def test_the_warning_names_the_argument_and_how_its_shape_changed():
    g = neuronika.value_and_grad(lambda w, batch: (batch @ w).sum())
    w = np.ones(5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 12):
            g(w, np.ones((n, 5)))
    retraces = [c for c in caught if issubclass(c.category, RetraceWarning)]
    assert len(retraces) == 1                                   # once
    message = str(retraces[0].message)
    assert "value_and_grad(" in message and "traced 10 times" in message
    assert "argument 1 ('batch'): shape (9, 5) -> (10, 5)" in message
    assert os.path.realpath(retraces[0].filename) == os.path.realpath(__file__)   # the user's line


def test_the_warning_comes_after_the_set_number_of_retraces():
    transform.set_retrace_warning(3)
    g = neuronika.grad(lambda x: x.sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for n in range(1, 5):
            g(np.ones(n))                                       # 3 retraces: no warning
        assert not [c for c in caught if issubclass(c.category, RetraceWarning)]
        g(np.ones(5))
        assert len([c for c in caught if issubclass(c.category, RetraceWarning)]) == 1
    transform.set_retrace_warning(None)
    h = neuronika.grad(lambda x: x.sum() * 2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for n in range(1, 20):
            h(np.ones(n))
    with pytest.raises(ValueError):
        transform.set_retrace_warning(-1)


@pytest.mark.parametrize("case", ["static", "dtype", "read", "closure"])
def test_the_warning_says_what_changed(case):
    x = np.ones(3)
    if case == "static":
        g = neuronika.grad(lambda x, n: (x * n).sum(), static_argnums=1)
        calls = [(x, n) for n in range(12)]
        expected = "argument 1 ('n'): static value 8 -> 9"
    elif case == "dtype":
        g = neuronika.grad(lambda x: x.sum())
        dtypes = [np.float16, np.float32, np.float64, np.complex64, np.complex128] * 3
        calls = [(np.ones(k % 2 + 1, dtype),) for k, dtype in enumerate(dtypes)]
        expected = "dtype"
    elif case == "read":
        g = neuronika.grad(lambda x, n: sum((x * k for k in range(n)), x).sum())
        calls = [(x, n) for n in range(12)]
        expected = "the Python int it read at"
    else:
        def make(scale):
            return neuronika.grad(lambda x: (x * scale).sum())
        calls = [(x,) for _ in range(12)]
        makers = iter(make(float(k)) for k in range(12))
        g = None
        expected = "the closure variable 'scale' holds 9.0 (was 8.0)"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for args in calls:
            (g or next(makers))(*args)
    messages = [str(c.message) for c in caught if issubclass(c.category, RetraceWarning)]
    assert len(messages) == 1 and expected in messages[0], messages
    if case == "read":
        assert "argument 1 ('n')" in messages[0] and "was 8 and is now 9" in messages[0]


# ---- explain ------------------------------------------------------------------------------------

def test_explain_says_why_the_last_call_missed():
    g = neuronika.grad(lambda x, mode: x.sum() if mode == "sum" else x.mean())
    assert "has not been traced" in transform.explain(g)
    g(np.ones(3), "sum")
    assert transform.explain(g).endswith("because it was called for the first time")
    g(np.ones(4), "sum")
    assert "argument 0 ('x'): shape (3,) -> (4,)" in transform.explain(g)
    g(np.ones(4, np.float32), "sum")
    assert "argument 0 ('x'): dtype float64 -> float32" in transform.explain(g)
    g(np.ones(4, np.float32), "mean")
    assert "argument 1 ('mode'): static value 'sum' -> 'mean'" in transform.explain(g)
    h = neuronika.grad(lambda p: sum(v.sum() for v in p.values()) if isinstance(p, dict) else p.sum())
    h(np.ones(4, np.float32))
    h({"a": np.ones(2)})
    assert "argument 0 ('p'): an array of shape (4,) and dtype float32 -> a dict with keys ['a']" \
        in transform.explain(h)
    h({"a": np.ones(2), "b": 1.5})
    assert "argument 0 ('p'): a dict with keys ['a'] -> a dict with keys ['a', 'b']" in transform.explain(h)
    h({"a": np.ones(3), "b": 1.5})
    assert "argument 0 ('p')['a']: shape (2,) -> (3,)" in transform.explain(h)


def test_explain_a_call_before_making_it():
    g = neuronika.grad(lambda x: x.sum())
    g(np.ones(3))
    assert transform.explain(g, np.zeros(3)).endswith("hits the cache")
    message = transform.explain(g, np.zeros(5))
    assert "would be traced" in message and "shape (3,) -> (5,)" in message
    assert transform.cache_info().misses == 1                   # explaining traced nothing


def test_explain_guarded_reads_and_rebound_names():
    def f(x):
        return (x * 2.0).sum() if x.sum() > 0 else x.sum()

    g = neuronika.grad(f)
    g(np.ones(2))
    message = transform.explain(g, -np.ones(2))
    assert re.search(r"the Python bool it read at .*test_retrace\.py:\d+ \(computed from argument 0 "
                     r"\('x'\)\) was True and is now False", message), message
    g(-np.ones(2))
    assert "was True and is now False" in transform.explain(g)

    global SCALE
    SCALE = 2.0
    h = neuronika.grad(lambda x: (x * SCALE).sum())
    h(np.ones(2))
    SCALE = 3.0
    np.testing.assert_allclose(h(np.ones(2)), [3.0, 3.0])
    assert "the global 'SCALE' was rebound" in transform.explain(h)


def test_explain_evicted_signatures_and_the_plain_function():
    transform.set_cache_size(entries=4)

    def f(x):
        return (x * x).sum()

    g = neuronika.grad(f)
    for n in range(1, 6):
        g(np.ones(n))
    g(np.ones(1))
    assert "evicted from the cache" in transform.explain(g)
    assert "evicted from the cache" in transform.explain(f)      # the function given to grad
    assert transform.explain(f, np.ones(1)).endswith("hits the cache")
    assert "no traced function" in transform.explain(lambda x: x)
