"""Python numbers in traced functions are typed as NumPy 2 types them (NEP 50): weakly.

A Python-number argument of a traced function, a number written beside one, and
arithmetic on such numbers alone (``s * c``, ``n * 2``, ``n / 3``, ``-s``) are Python
numbers when the program runs; beside an array they take its dtype. Each function here
runs on NumPy arrays and Python numbers as plain NumPy code, and under ``jit`` (its
interpreted first call and its compiled later calls) and ``value_and_grad``: the dtype
declared in the trace, the dtype computed and the values must be NumPy's.
"""
import numpy as np
import pytest

import neuronika as nk
import neuronika.numpy as nnp
from neuronika import transform

EXPRESSIONS = {
    "(s * c) * x": lambda x, s, c, n: (s * c) * x,
    "(s + c) + x": lambda x, s, c, n: (s + c) + x,
    "x - (s - c)": lambda x, s, c, n: x - (s - c),
    "(s / c) * x": lambda x, s, c, n: (s / c) * x,
    "(-s) * x": lambda x, s, c, n: (-s) * x,
    "(s ** 2) * x": lambda x, s, c, n: (s ** 2) * x,
    "(c ** s) * x": lambda x, s, c, n: (c ** s) * x,
    "(n * 2) * x": lambda x, s, c, n: (n * 2) * x,
    "(n + 1) + x": lambda x, s, c, n: (n + 1) + x,
    "(n / 3) * x": lambda x, s, c, n: (n / 3) * x,
    "(2 - n) * x": lambda x, s, c, n: (2 - n) * x,
    "(s - 0.5) * x": lambda x, s, c, n: (s - 0.5) * x,
    "(s * n + 1) * x": lambda x, s, c, n: (s * n + 1) * x,
    "x * (s * 1j)": lambda x, s, c, n: x * (s * 1j),
    "x + n * s": lambda x, s, c, n: x + n * s,
    "(n // 2) * x": lambda x, s, c, n: (n // 2) * x,
    "x + (n % 2)": lambda x, s, c, n: x + (n % 2),
    "(s // 1.0 + c % 1.5) * x": lambda x, s, c, n: (s // 1.0 + c % 1.5) * x,
    "abs(s - c) * x + abs(2 - n)": lambda x, s, c, n: abs(s - c) * x + abs(2 - n),
    "x * abs(s * 1j)": lambda x, s, c, n: x * abs(s * 1j),
}

ARRAYS = {
    "float32": np.linspace(-1.5, 2.0, 6, dtype=np.float32),
    "float64": np.linspace(-1.5, 2.0, 6),
    "complex64": (np.linspace(-1.5, 2.0, 6) + 0.5j).astype(np.complex64),
    "int8": np.arange(-3, 3, dtype=np.int8),
    "int32": np.arange(-3, 3, dtype=np.int32),
}

NUMBERS = {"s": 1.5, "c": 2.0, "n": 3}


def _numpy(fn, x):
    with np.errstate(all="ignore"):
        return np.asarray(fn(x, **NUMBERS))


def _cases():
    for name, fn in EXPRESSIONS.items():
        for dtype, x in ARRAYS.items():
            yield pytest.param(fn, x, id=f"{name}-{dtype}")


@pytest.mark.parametrize("fn, x", _cases())
def test_jit_types_python_numbers_as_numpy_does(fn, x):
    want = _numpy(fn, x)
    declared = []

    def traced(x, s, c, n):
        y = fn(x, s, c, n)
        declared.append(y.dtype)
        return y
    f = nk.jit(traced)
    for call in range(3):                   # interpreted, then compiled
        with np.errstate(all="ignore"):
            got = np.asarray(f(x, **NUMBERS))
        assert got.dtype == want.dtype, f"call {call}"
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert declared and all(d == want.dtype for d in declared)


@pytest.mark.parametrize("fn, x", [p for p in _cases() if _numpy(*p.values).dtype.kind == "f"
                                   and p.values[1].dtype.kind == "f"])
def test_value_and_grad_types_python_numbers_as_numpy_does(fn, x):
    want = _numpy(fn, x)
    value, grad = nk.value_and_grad(lambda x, s, c, n: nnp.sum(fn(x, s, c, n)))(x, **NUMBERS)
    assert np.asarray(value).dtype == want.dtype
    np.testing.assert_allclose(value, want.sum(), rtol=1e-5)
    # every expression is a * x + b with a, b numbers: the gradient is a, in x's dtype
    zero = np.zeros_like(x)
    slope = np.asarray(fn(zero + 1, **NUMBERS) - fn(zero, **NUMBERS))
    assert grad.dtype == x.dtype
    np.testing.assert_allclose(grad, slope, rtol=1e-6)


def test_a_number_the_program_makes_keeps_its_weak_type_inside_a_loop():
    # s * c, made outside the loop, is one of the rolled cell's inputs: a Python number there too
    x = np.linspace(-1, 1, 8, dtype=np.float32)

    def step(x, s, c):
        h = x
        k = s * c
        for _ in range(12):
            h = nnp.tanh(h * k + x)
        return h

    def numpy_step(x, s, c):
        h = x
        for _ in range(12):
            h = np.tanh(h * (s * c) + x)
        return h
    want = numpy_step(x, 0.5, 1.5)
    f = nk.jit(step)
    for _ in range(3):
        got = f(x, 0.5, 1.5)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6)
    value, grad = nk.value_and_grad(lambda x, s, c: nnp.sum(step(x, s, c)))(x, 0.5, 1.5)
    assert np.asarray(value).dtype == np.float32 and grad.dtype == np.float32


def test_a_number_written_in_a_loop_beside_a_number_argument_is_one_weak_constant():
    # h * (s * 0.5): a weak leaf 0.5 at every step, equal: the loop rolls, 0.5 one constant
    x = np.linspace(-1, 1, 8, dtype=np.float32)

    def step(x, s):
        h = x
        for _ in range(30):
            h = nnp.tanh(h * (s * 0.5) + x)
        return h

    def numpy_step(x, s):
        h = x
        for _ in range(30):
            h = np.tanh(h * (s * 0.5) + x)
        return h
    f = nk.jit(step)
    for _ in range(3):
        got = f(x, 0.7)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, numpy_step(x, 0.7), rtol=1e-6)
    assert "cell_0" in f.source(x, 0.7)


@pytest.mark.parametrize("mode", ["never", "always"])
def test_interpreted_and_compiled_programs_agree_on_weak_division(mode):
    # n / 3 of a Python int is a Python float: neither program converts the ints to arrays
    x = np.arange(4, dtype=np.float32)
    transform.cache_clear()
    with nk.config(compile=mode):
        got = nk.jit(lambda x, n: (n / 3) * x + n // 2)(x, 3)
    assert got.dtype == ((3 / 3) * x + 3 // 2).dtype == np.float32
    np.testing.assert_array_equal(got, (3 / 3) * x + 3 // 2)


@pytest.mark.parametrize("fn", [
    lambda F, x, s: F.stack([x, s]) * x,
    lambda F, x, s: F.concatenate([F.reshape(x, (1,)), F.reshape(s * 1, (1,))]),
], ids=["stack", "concatenate"])
def test_functions_that_make_numbers_arrays_type_them_by_themselves(fn):
    # NumPy's stack and concatenate convert a Python number to an array first: float64
    x = np.float32(0.5) * np.ones((), np.float32)
    want = fn(np, x, 1.5)
    assert want.dtype == np.float64
    declared = []

    def traced(x, s):
        y = fn(nnp, x, s)
        declared.append(y.dtype)
        return y
    f = nk.jit(traced)
    for _ in range(3):
        got = np.asarray(f(x, 1.5))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    assert declared and all(d == want.dtype for d in declared)


def test_numbers_beside_arrays_outside_traces_are_unchanged():
    # (no Python-number argument: a number beside a variable takes its dtype, as before)
    x = nk.from_ndarray(np.ones(3, np.float32))
    assert (x * 2).dtype == np.float32 and ((x * 2.5) - 1).dtype == np.float32
    i = nk.from_ndarray(np.ones(3, np.int8))
    assert (i + 1).dtype == np.int8 and (i / 2).dtype == np.float64


def test_fused_elementwise_runs_stop_at_numbers_the_program_makes(monkeypatch):
    # numexpr typed s * c as a float64 array and computed the whole run in float64
    pytest.importorskip("numexpr")
    from neuronika.transform import fuse
    monkeypatch.setattr(fuse, "MIN_ELEMENTS", 4)
    x = np.linspace(-1, 1, 64, dtype=np.float32)

    def fn(x, s, c):
        return ((x * (s * c) - 1.0) * x + x) * (s * c)
    want = fn(x, 1.5, 2.0)
    transform.cache_clear()
    f = nk.jit(fn)
    with nk.config(compile="always"):
        assert "numexpr" in f.source(x, 1.5, 2.0)
        for _ in range(2):
            got = f(x, 1.5, 2.0)
            assert got.dtype == want.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=1e-6)
    transform.cache_clear()


def _loop(s, x):
    h = x
    for _ in range(15):
        h = nnp.tanh(h * s + x)
    return h


DIFFERENTIATED = {
    "s * x": lambda s, x: nnp.sum(s * x),
    "x ** 2 * s ** 3 + s / 2": lambda s, x: nnp.sum(x ** 2 * s ** 3 + s / 2),
    "sin(x * (s * s)) + abs(s - 3)": lambda s, x: nnp.sum(nnp.sin(x * (s * s)) + abs(s - 3.0)),
    "a rolled loop": lambda s, x: nnp.sum(_loop(s, x)),
    "scan": lambda s, x: nnp.sum(nk.scan(lambda c, xi: (nnp.tanh(c * s + xi), c * s), x[:2],
                                         nnp.reshape(x, (3, 2)))[0]),
    "checkpoint": lambda s, x: nnp.sum(nk.checkpoint(lambda a, b: nnp.tanh(a * b))(x, s)),
}


@pytest.mark.parametrize("fn", DIFFERENTIATED.values(), ids=DIFFERENTIATED.keys())
def test_a_differentiated_python_number_stays_weakly_typed(fn):
    # argnums on a Python float: a float32 computation stays float32 (it was float64: the
    # number became a float64 0-d array), and the gradient is a Python float, first and second
    # order against central differences (in float64)
    x = np.linspace(-1.0, 2.0, 6)
    value, (gs, gx) = nk.value_and_grad(fn, argnums=(0, 1))(0.7, x.astype(np.float32))
    assert np.asarray(value).dtype == np.float32 and gx.dtype == np.float32
    for s in (0.7, 1.3):
        g = nk.grad(fn)(s, x)
        assert type(g) is float
        eps = 1e-6
        fd = (float(nk.jit(fn)(s + eps, x)) - float(nk.jit(fn)(s - eps, x))) / (2 * eps)
        assert g == pytest.approx(fd, rel=1e-6, abs=1e-8)
        second = nk.grad(lambda s, x: nk.grad(fn)(s, x))(s, x)
        fd2 = (nk.grad(fn)(s + 1e-5, x) - nk.grad(fn)(s - 1e-5, x)) / 2e-5
        assert float(second) == pytest.approx(fd2, rel=1e-5, abs=1e-7)


def _binary_ufuncs():
    from neuronika.numpy._core import UFUNC_OPS
    found = sorted((u for u in UFUNC_OPS if u.nin == 2 and u.nout == 1 and u.signature is None
                    and hasattr(nnp, u.__name__)), key=lambda u: u.__name__)
    assert len(found) >= 29
    return found


@pytest.mark.parametrize("made", [False, True], ids=["argument", "arithmetic-on-it"])
@pytest.mark.parametrize("ufunc", _binary_ufuncs(), ids=lambda u: u.__name__)
def test_every_binary_ufunc_types_python_numbers_as_numpy_does(ufunc, made):
    # each of NumPy's two-input ufuncs, a float32 / int8 array beside a Python float, int or
    # complex argument (or a number made from one: s + 0), either side: NumPy's dtype, the
    # declared one and the computed one (interpreted and compiled calls) agree, and so do values
    fn = getattr(nnp, ufunc.__name__)
    x32, i8 = np.linspace(0.5, 1.5, 6, dtype=np.float32), np.arange(1, 7, dtype=np.int8)
    checked = 0
    for array, number in ((x32, 0.75), (x32, 2), (i8, 3), (i8, 0.5), (x32, 0.5j)):
        for first in (True, False):
            args = (array, number) if first else (number, array)
            try:
                with np.errstate(all="ignore"):
                    want = np.asarray(ufunc(*args))
            except TypeError:                   # no loop for these dtypes in NumPy either
                continue
            declared = []

            def traced(a, s, first=first):
                s = s + 0 if made else s
                y = fn(a, s) if first else fn(s, a)
                declared.append(y.dtype)
                return y
            f = nk.jit(traced)
            for _ in range(3):
                with np.errstate(all="ignore"):
                    got = np.asarray(f(array, number))
                assert got.dtype == want.dtype == declared[0], (args, got.dtype, declared[0])
                np.testing.assert_allclose(got, want, rtol=1e-6, equal_nan=True)
            checked += 1
    assert checked


def test_a_negative_float_to_a_fractional_power_is_nan_as_in_arrays():
    # Python gives a complex number; the trace declares a float, as NumPy's float arrays and
    # JAX type it, and the program gives nan (ops.elementwise.real_power)
    x = np.ones(3, np.float32)
    f = nk.jit(lambda x, s, c: x * s ** 0.5 + x * s ** c)
    for _ in range(3):
        got = f(x, -8.0, 1.5)
        assert got.dtype == np.float32 and np.isnan(got).all()
    np.testing.assert_allclose(f(x, 4.0, 1.5), x * 2.0 + x * 8.0)
