"""The ``inplace`` pass: results written into the buffers of dead temporaries (``out=``).

Compiled programs (with the pass) against the interpreter (no pass) bit for bit, on graphs
where a buffer may and may not be reused: a temporary read twice, returned, saved for the
backward, broadcast to a larger result, widened to another dtype, read twice in one
statement."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import neuronika as nk
import neuronika.numpy as nnp
from neuronika.nn import functional as F
from neuronika import transform
from neuronika.transform import codegen, inplace


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    # every array counts here (the pass leaves results under MIN_ELEMENTS alone): the cases
    # stay small and fast; the threshold has its own test
    monkeypatch.setattr(inplace, "MIN_ELEMENTS", 1)
    transform.cache_clear()
    yield
    transform.cache_clear()


def both(fn, *arrays):
    """(compiled, interpreted) value and gradients of ``fn``, and the compiled source."""
    out = []
    for mode in ("always", "never"):
        transform.cache_clear()
        with nk.config(compile=mode):
            vg = nk.value_and_grad(fn, argnums=tuple(range(len(arrays))))
            value, grads = vg(*arrays)
            out.append((np.array(value, copy=True), [np.array(g, copy=True) for g in grads]))
    with nk.config(compile="always"):
        source = nk.value_and_grad(fn, argnums=tuple(range(len(arrays)))).source(*arrays)
    return out[0], out[1], source


def assert_equal_bits(a, b):
    (va, ga), (vb, gb) = a, b
    np.testing.assert_array_equal(va, vb)
    for x, y in zip(ga, gb):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)


def arrays(*shapes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_layer_writes_into_the_product(dtype):
    x, w, b = arrays((5, 3), (3, 4), (4,), dtype=dtype)
    compiled, interpreted, source = both(lambda w, b: nnp.tanh(x @ w + b).sum(), w, b)
    assert_equal_bits(compiled, interpreted)
    assert ", out=" in source


def test_relu_runs_in_its_input_s_buffer():
    # relu's adjoint reads its output's mask (y > 0, the same as x > 0): the pre-activation
    # is dead after the relu, which writes into it, as a hand-written layer does
    x, w, b, v = arrays((5, 3), (3, 4), (4,), (4, 2))
    x[0, 0] = np.nan
    compiled, interpreted, source = both(lambda w, b, v: (F.relu(x @ w + b) @ v).sum(), w, b, v)
    assert_equal_bits(compiled, interpreted)
    assert "xp.maximum(v5, 0, out=v5)" in source and "v6 > 0" in source


def test_a_temporary_read_twice_keeps_its_buffer():
    x, w, b = arrays((5, 3), (3, 4), (4,))

    def loss(w, b):
        y = x @ w
        z = y + b                     # y is read again below: its buffer is not reused here
        return (nnp.sin(z) * y).sum()
    compiled, interpreted, source = both(loss, w, b)
    assert_equal_bits(compiled, interpreted)


def test_broadcast_and_widening_results_get_their_own_buffers():
    col, row, f32 = arrays((3, 1), (1, 4), (3, 1))
    f32 = f32.astype(np.float32)

    def loss(a, b, c):
        outer = (a * 2.0) + b                          # (3, 1) + (1, 4): a larger result
        wide = (c * 3.0) + a                           # float32 + float64: a wider dtype
        return (outer * outer).sum() + (wide * wide).sum()
    compiled, interpreted, source = both(loss, col, row, f32)
    assert_equal_bits(compiled, interpreted)


def test_a_temporary_read_twice_in_one_statement():
    (x,) = arrays((6,))

    def loss(x):
        t = x * 3.0
        return (t * nnp.exp(t)).sum() + 0.0 * x.sum()
    compiled, interpreted, _ = both(loss, x)
    assert_equal_bits(compiled, interpreted)


def test_jit_outputs_and_saved_values_are_never_overwritten():
    (x,) = arrays((4, 4))

    @nk.jit
    def f(x):
        a = x * 2.0
        b = nnp.tanh(a)                   # a is returned: its buffer is the output's
        c = b + 1.0
        return a, c
    for _ in range(3):
        a, c = f(x)
        np.testing.assert_array_equal(a, x * 2.0)
        np.testing.assert_array_equal(c, np.tanh(x * 2.0) + 1.0)
    # imperative: the backward reads what the forward saved
    v = nk.from_ndarray(x.copy()).requires_grad()
    with nk.config(compile="always"):
        for _ in range(2):
            v.zero_grad()
            y = (v * 2.0).tanh()
            (y * y).sum().backward()
    t = np.tanh(x * 2.0)
    np.testing.assert_allclose(v.grad, 2 * t * (1 - t * t) * 2.0, rtol=1e-14)


def test_chains_in_a_loop_body_and_long_programs(monkeypatch):
    xs, w = arrays((7, 3, 4), (4, 4))

    def loss(w):
        h = nnp.zeros((3, 4))
        for t in range(7):                 # rolled into a loop: the cell's body too
            h = nnp.tanh(xs[t] + h @ w) * 0.5 + 0.1
        return (h * h).sum()
    compiled, interpreted, source = both(loss, w)
    assert_equal_bits(compiled, interpreted)

    (v,) = arrays((50,))
    monkeypatch.setattr(codegen, "LONG", 100)

    def long(v):
        y = v
        for k in range(120):               # a body split into helpers (codegen.LONG)
            y = nnp.sin(y * 1.01) + 0.01 * k
        return y.sum()
    compiled, interpreted, source = both(long, v)
    assert_equal_bits(compiled, interpreted)
    assert ", out=" in source


def test_small_results_and_long_functions_are_left_alone(monkeypatch):
    x, w, b = arrays((5, 3), (3, 4), (4,))
    loss = lambda w, b: nnp.tanh(x @ w + b).sum()       # noqa: E731
    monkeypatch.setattr(inplace, "MIN_ELEMENTS", 21)     # the (5, 4) values: 20 elements
    compiled, interpreted, source = both(loss, w, b)
    assert ", out=" not in source
    monkeypatch.setattr(inplace, "MIN_ELEMENTS", 20)
    assert ", out=" in both(loss, w, b)[2]
    monkeypatch.setattr(inplace, "MAX_LINES", 3)
    assert ", out=" not in both(loss, w, b)[2]


def test_a_large_layer_writes_into_its_buffers_by_default(monkeypatch):
    monkeypatch.setattr(inplace, "MIN_ELEMENTS", 2048)
    x, w, b = arrays((64, 30), (30, 40), (40,))
    compiled, interpreted, source = both(lambda w, b: nnp.tanh(x @ w + b).sum(), w, b)
    assert_equal_bits(compiled, interpreted)
    assert "xp.add(v3, p1, out=v3)" in source and "xp.tanh(v4, out=v4)" in source


# ---- the gradients' types: what codegen tells the pass, over every op of the NumPy face ----

def _numpy_cases():
    from tests.numpy_api import cases
    return [c for _, c in cases.all_cases()]


def _checking_types(monkeypatch, wrong):
    """Every type the pass is told (the graph's values, the seed, the gradients) checked in the
    compiled program against the value: before each statement that reads the name and after
    its one assignment, a mismatch appended to ``wrong``. (The checks read the names, so the
    pass rewrites less here: this is a test of the types, not of the rewrites.)"""
    from collections import Counter
    import builtins
    from neuronika.transform.passes import Line
    real = inplace.reuse_buffers

    def check(value, shape, dtype, name):
        if dtype.__class__ is type:          # a weakly typed number: that Python class
            if value.__class__ is not dtype:
                wrong.append((name, type(value), dtype))
        elif np.shape(value) != shape or np.result_type(value) != dtype:
            wrong.append((name, np.shape(value), np.result_type(value), shape, dtype))

    def with_checks(lines, keep, known, sizes):
        stores = Counter(n for line in lines for n in line.stores)

        def check_of(n):
            shape, dtype = known[n]
            if dtype.__class__ is type:
                return Line(f"_check_type({n}, (), {dtype.__name__}, {n!r})", [n], [])
            return Line(f"_check_type({n}, {tuple(shape)!r}, _dtype({str(dtype)!r}), {n!r})", [n], [])
        out = []
        for line in lines:
            out += [check_of(n) for n in line.loads if n in known and n not in line.stores]
            out.append(line)
            out += [check_of(n) for n in line.stores if n in known and stores[n] == 1]
        return real(out, keep, known, sizes)

    monkeypatch.setattr(builtins, "_check_type", check, raising=False)
    monkeypatch.setattr(builtins, "_dtype", np.dtype, raising=False)
    monkeypatch.setattr(inplace, "reuse_buffers", with_checks)


def test_the_types_the_pass_is_told_are_the_values_types(monkeypatch):
    """A gradient's type is the shape its adjoints gave it (smaller than its node's where it
    broadcasts: a sum's, a broadcast operand's) and its node's dtype; a wrong one would write
    a result into a buffer of another shape or dtype. Every case of the NumPy face, imperative
    (split programs) and value_and_grad (fused, unit seed)."""
    from tests.transform.test_interpret import _graph, _run_case, case_loss
    wrong, fused = [], 0
    _checking_types(monkeypatch, wrong)
    cases = _numpy_cases()
    for case in cases:
        _run_case(case, "always", True)
        with nk.config(compile="always"), np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = _graph(case)
            if built is not None:
                xs, _, _ = built
                wanted = tuple(k for k, x in enumerate(xs) if isinstance(x, nk.VarDiff))
                arrays_ = [np.array(x.data) for x in xs]

                def loss(*args):
                    return case_loss(case, args)[1]
                try:
                    nk.value_and_grad(loss, argnums=wanted)(*arrays_)
                    fused += 1
                except Exception:       # noqa: BLE001 - a case that refuses; its types were checked
                    pass
        assert not wrong, f"{case}: {wrong[:3]}"
    assert len(cases) > 1500 and fused > 1000, (len(cases), fused)      # 1,855 and 1,439 here


def test_every_case_with_gradients_buffers_reused_gives_the_interpreter_s_bits():
    """With every result eligible (MIN_ELEMENTS 1, this module's fixture), the gradients'
    types let the pass write into their buffers across the whole NumPy face: compiled (split
    programs) against the interpreter, bit for bit."""
    from tests.transform.test_interpret import _compare, _run_case
    for case in _numpy_cases():
        with np.errstate(all="ignore"):
            _compare(_run_case(case, "never", True), _run_case(case, "always", True), str(case))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_relu_s_gradient_takes_the_mask_product_into_its_buffer(dtype):
    # the product of a ReLU's gradient and its mask goes into the gradient's buffer (dead after
    # it), as a hand-written backward's ``dh *= h > 0`` does: 4% of mlp512's step went to
    # writing it into another array
    x, w1, b1, w2 = arrays((8, 5), (5, 6), (6,), (6, 3), dtype=dtype)
    compiled, interpreted, source = both(lambda w1, b1, w2: (F.relu(x @ w1 + b1) @ w2).sum(), w1, b1, w2)
    assert_equal_bits(compiled, interpreted)
    backward = source[source.index("g"):]
    assert re.search(r"(g\d+) = xp\.multiply\((g\d+), xp\.astype\(v\d+ > 0, xp\.float\d+\), out=\2\)", backward), source
    w = [nk.from_ndarray(a.copy()).requires_grad() for a in (w1, b1, w2)]
    with nk.config(compile="always"):
        loss = (F.relu(nk.from_ndarray(x).mm(w[0]) + w[1]).mm(w[2])).sum()
        split = transform.source(loss)
        loss.backward()
    assert re.search(r"(g\d+) = xp\.multiply\((g\d+), xp\.astype\(v\d+ > 0, xp\.float\d+\), out=\2\)", split), split
    for v, g in zip(w, compiled[1]):
        np.testing.assert_array_equal(v.grad, g)


def test_a_reshaped_gradient_takes_the_next_result_into_its_buffer():
    # a flattened layer's gradient (dy @ W.T, reshaped back to the feature maps) is a view of
    # a product nothing else reads: the ReLU's mask product goes into it, not a buffer of its own
    x, w1, w2 = arrays((4, 2, 3, 3), (2, 3, 3), (18, 5))
    compiled, interpreted, source = both(
        lambda w1, w2: (nnp.reshape(F.relu(x * w1), (4, 18)) @ w2).sum(), w1, w2)
    assert_equal_bits(compiled, interpreted)
    reshaped = re.search(r"(g\d+) = xp\.reshape\(g\d+, \(-?\d+, 2, 3, 3\)\)", source)
    assert reshaped, source
    assert re.search(rf"= xp\.multiply\({reshaped[1]}, .*, out={reshaped[1]}\)", source), source
    # a view of a value read twice (returned as well) is not written into
    compiled, interpreted, source = both(
        lambda w1, w2: (nnp.reshape(F.relu(x * w1), (4, 18)) @ w2).sum() + (nnp.reshape(x * w1, (4, 18)) * 0.5).sum(), w1, w2)
    assert_equal_bits(compiled, interpreted)


@pytest.mark.parametrize("s, c", [(0.5, 3.0), (2, 3), (0.5 + 1j, 2.0)])
def test_arithmetic_on_python_number_arguments_is_not_taken_for_its_declared_dtype(monkeypatch, s, c):
    # s * c computes a Python number at run time, which NumPy types weakly: (s * c) * x32 is a
    # float32 array where the dtype rules declare float64. The pass took the declaration and
    # wrote (...) + y64's float64 result into that buffer: rounded to float32, and returned
    # as float32, from the first compiled call on
    x = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    y = np.random.default_rng(1).standard_normal(64)
    want = (s * c) * x + y

    @nk.jit
    def f(x, y, s, c):
        return (s * c) * x + y
    for _ in range(3):                              # interpreted, then compiled
        got = f(x, y, s, c)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    value, grad = nk.value_and_grad(lambda y: nnp.real(nnp.sum((s * c) * x + y)))(y)
    np.testing.assert_array_equal(grad, np.ones_like(y))
    wrong = []
    _checking_types(monkeypatch, wrong)
    transform.cache_clear()
    with nk.config(compile="always"):
        f(x, y, s, c)
    assert not wrong


def test_the_types_the_pass_is_told_hold_beside_python_numbers(monkeypatch):
    """Readers of arithmetic on Python numbers are typed for the pass (session 15: their dtypes
    are NumPy's), except where Python decides the kind by value (``n ** -1`` is a float,
    ``(-8.0) ** 0.5`` complex): every type told is checked against the running program over
    the weak-number expressions, every two-input ufunc beside a number made from an argument,
    and those two cases."""
    from tests import test_weak_numbers as weak
    wrong, checked = [], []
    _checking_types(monkeypatch, wrong)
    import builtins
    check = builtins._check_type

    def counted(*args):
        checked.append(args[-1])
        check(*args)
    monkeypatch.setattr(builtins, "_check_type", counted)
    programs = [(fn, (x, 1.5, 2.0, 3)) for fn in weak.EXPRESSIONS.values() for x in weak.ARRAYS.values()]
    x32, i8 = np.linspace(0.5, 1.5, 6, dtype=np.float32), np.arange(1, 7, dtype=np.int8)
    for ufunc in weak._binary_ufuncs():
        fn = getattr(nnp, ufunc.__name__)
        for array, number in ((x32, 0.75), (i8, 3), (x32, 2)):
            try:
                with np.errstate(all="ignore"):
                    ufunc(array, number)
            except TypeError:               # no loop for these dtypes in NumPy either
                continue
            programs.append((lambda a, s, fn=fn: fn(a, s + 0) + a, (array, number)))
    programs.append((lambda a, n: a * (n ** -1) + a, (i8, 2)))           # int declared, float made
    programs.append((lambda a, s: a * (s ** 0.5) + a * 2, (x32, -8.0)))  # nan: real_power
    with nk.config(compile="always"), np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fn, args in programs:
            transform.cache_clear()
            nk.jit(fn)(*args)
    transform.cache_clear()
    assert not wrong, wrong[:5]
    assert len(checked) > 400


def test_what_reads_arithmetic_on_python_numbers_takes_buffers():
    # an update with Python-number hyperparameters (lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)):
    # until session 15 everything after the number was withheld from the pass, so each step
    # made every large temporary afresh (5.0 against 1.5 ms at a million float32 parameters)
    n = 4 * inplace.MIN_ELEMENTS
    rng = np.random.default_rng(0)
    p, g, m = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    v = np.abs(rng.standard_normal(n)).astype(np.float32)

    def update(p, g, m, v, lr, b1, b2, t):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        step = lr * (1 - b2 ** t) ** 0.5 / (1 - b1 ** t)
        return p - step * m / (nnp.sqrt(v) + 1e-8), m, v
    f = nk.jit(update)
    args = (p, g, m, v, 1e-3, 0.9, 0.999, 10)
    with nk.config(compile="always"):
        source = f.source(*args)
        got = f(*args)
    assert re.search(r"xp\.divide\(\w+, \w+, out=", source)
    assert re.search(r"xp\.subtract\(x0, \w+, out=", source)
    mm = 0.9 * m + 0.1 * g
    vv = 0.999 * v + 0.001 * g * g
    expected = p - (1e-3 * (1 - 0.999 ** 10) ** 0.5 / (1 - 0.9 ** 10)) * mm / (np.sqrt(vv) + 1e-8)
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(got[0], expected, rtol=1e-6)


@pytest.mark.parametrize("number", [2.0, 3, True, 0.5j])
def test_a_statement_reading_a_python_number_argument_takes_a_buffer(number):
    # a Python number is weakly typed for the pass, as for NumPy: g * s is g's type, so it is
    # written into g's buffer (before session 16 the number had no type and g * s made a new
    # array); a complex number makes a complex result, which no float buffer takes
    n = 4 * inplace.MIN_ELEMENTS
    x = np.random.default_rng(3).standard_normal(n).astype(np.float32)

    def f(x, s):
        return nnp.sum(nnp.tanh(s * nnp.exp(x)).real)
    fn = nk.value_and_grad(f)
    with nk.config(compile="always"):
        source = fn.source(x, number)
        value, grad = fn(x, number)
    transform.cache_clear()
    taken = re.search(r"xp\.multiply\((g\d+), x\d+, out=\1\)", source)
    assert (taken is None) == isinstance(number, complex), source
    t = np.tanh(number * np.exp(x))
    assert value.dtype == grad.dtype == np.float32
    np.testing.assert_allclose(value, np.sum(t.real), rtol=1e-5)
    np.testing.assert_allclose(grad, ((1 - t * t) * number).real * np.exp(x), rtol=1e-5, atol=1e-6)


def test_a_python_float_beside_an_int_array_gets_no_int_buffer():
    n = 4 * inplace.MIN_ELEMENTS
    i = np.arange(n, dtype=np.int32) % 7

    def f(i, s):
        return (i * 3) * s + 1                  # int32 product, then float64 beside the float
    with nk.config(compile="always"):
        source = nk.jit(f).source(i, 0.5)
        got = nk.jit(f)(i, 0.5)
    transform.cache_clear()
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, (i * 3) * 0.5 + 1)
    product = re.search(r"(v\d+) = x0 \* x\d+", source).group(1)      # the int32 product
    assert f"out={product})" not in source, source
