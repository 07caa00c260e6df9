"""Fused elementwise kernels through numexpr (``transform/fuse.py``): the op test suite's
elementwise ops fused and not, above and below the size threshold, float32 and float64,
values and gradients; what ``.source()`` shows; the NumPy path when numexpr is missing,
switched off, or the arrays are another library's."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika.testing import check_grads
from neuronika.transform import fuse

from tests.ops.test_elementwise import BINARY, UNARY, binary_operands, unary_sample

numexpr = pytest.importorskip("numexpr")

#: the threshold in these tests: (4, 8) is below it, (16, 16) above
THRESHOLD = 64
SMALL, LARGE = (4, 8), (16, 16)


@pytest.fixture(autouse=True)
def threshold(monkeypatch):
    monkeypatch.setattr(fuse, "MIN_ELEMENTS", THRESHOLD)
    nk.transform.cache_clear()
    yield
    nk.transform.cache_clear()          # no fused program is left for other tests


def tol(dtype):
    return dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def run(fn, arrays, mode):
    """fn's value and the gradients of every input, from freshly compiled programs built under
    ``config(fuse=mode)``: imperative (backward) and functional (value_and_grad); and the
    imperative program's source."""
    nk.transform.cache_clear()
    with nk.config(compile="always", fuse=mode):
        leaves = [nk.from_ndarray(a.copy()).requires_grad() for a in arrays]
        out = fn(*leaves)
        loss = (out * out).sum()
        loss.backward()
        source = nk.transform.source(loss)
        value, grads = nk.value_and_grad(lambda *xs: (fn(*xs) * fn(*xs)).sum(),
                                         argnums=tuple(range(len(arrays))))(*arrays)
    return (np.asarray(out.data), [np.asarray(v.grad) for v in leaves], np.asarray(value),
            [np.asarray(g) for g in grads], source)


def assert_same(fused, plain, dtype):
    """Equal to float tolerance; without VML numexpr evaluates only IEEE arithmetic (and where,
    comparisons, abs, sqrt) in NumPy's order here, so equal bit for bit."""
    exact = not numexpr.use_vml
    for got, want in zip(fused[:4], plain[:4]):
        for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_allclose(g, w, **tol(dtype))
            if exact:
                np.testing.assert_array_equal(g, w)


def chained(fn):
    """The op between others (several statements to fuse, forward and backward)."""
    return lambda *xs: fn(*[x * 1.5 - 0.25 for x in xs]) * 0.5 + xs[0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [SMALL, LARGE], ids=["below", "above"])
@pytest.mark.parametrize("name", UNARY)
def test_unary_ops_fused_and_not(name, shape, dtype):
    fn, _, domain = UNARY[name]
    a = (unary_sample(domain, shape, seed=3) / 1.5 + 0.25 / 1.5).astype(dtype)   # fn's domain after x * 1.5 - 0.25
    plain = run(chained(fn), [a], "never")
    fused = run(chained(fn), [a], "auto")
    assert_same(fused, plain, dtype)
    assert ("# numexpr:" in fused[4]) == (shape == LARGE)
    assert "numexpr" not in plain[4]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", [(SMALL, SMALL), (LARGE, LARGE), (LARGE, LARGE[1:]), ((1,) + LARGE[1:], LARGE)],
                         ids=["below", "above", "broadcast", "broadcast-left"])
@pytest.mark.parametrize("name", BINARY)
def test_binary_ops_fused_and_not(name, shapes, dtype):
    f = BINARY[name]
    a, b = [x.astype(dtype) for x in binary_operands(name, *shapes, seed=4)]

    def fn(x, y):
        return f(x * 1.0 + 0.0, y) * 0.5 + x
    plain = run(fn, [a, b], "never")
    fused = run(fn, [a, b], "auto")
    assert_same(fused, plain, dtype)
    assert ("# numexpr:" in fused[4]) == (shapes != (SMALL, SMALL))


def test_source_shows_the_numexpr_expression():
    x = nk.from_ndarray(np.linspace(-1, 1, 256, dtype=np.float32)).requires_grad()
    with nk.config(compile="always"):
        y = ((x * 1.01 - 0.5) * 4.0).relu().sum()
        source = nk.transform.source(y)
    assert "# numexpr: where(" in source            # relu as where (NaN kept)
    assert " = numexpr_" in source


def test_float32_constants_keep_float32():
    a = np.linspace(-2, 2, 1000, dtype=np.float32)
    f = nk.value_and_grad(lambda x: ((x * 1.01 + 0.1) * 0.3 - x / 3.0).sum())
    with nk.config(compile="always"):
        value, grad = f(a)
    assert grad.dtype == np.float32
    assert any("c0" in k.expression for k in fuse._KERNELS.values())      # 1.01 passed as float32
    want = np.full_like(a, np.float32(1.01) * np.float32(0.3) - np.float32(1) / np.float32(3.0))
    np.testing.assert_allclose(grad, want, rtol=1e-6)


def test_numpy_path_unchanged_when_numexpr_is_missing(monkeypatch):
    a = np.linspace(-1, 1, 512)

    def fn(x):
        return (x.tanh() * 2.0 + x * x).sin() * 0.5
    never = run(fn, [a], "never")
    monkeypatch.setattr(fuse, "_numexpr_module", None)
    missing = run(fn, [a], "auto")
    assert missing[4] == never[4] and "numexpr" not in missing[4]
    for got, want in zip(missing[:4], never[:4]):
        for g, w in zip(got if isinstance(got, list) else [got], want if isinstance(want, list) else [want]):
            assert np.array_equal(g, w)


def test_below_the_threshold_the_code_is_unchanged(monkeypatch):
    a = np.linspace(-1, 1, 32)
    fn = chained(UNARY["sigmoid"][0])
    auto = run(fn, [a], "auto")
    never = run(fn, [a], "never")
    assert auto[4] == never[4]


def test_switched_off_a_fused_program_computes_what_numpy_does():
    """Under fuse="never" a kernel runs the NumPy statements it replaced: the same bits as a
    program never fused."""
    a = np.linspace(-1, 1, 300)

    def loss(x):
        return (((x * 1.01).sigmoid() - 0.5) * 4.0).tanh().sin().sum()
    f = nk.value_and_grad(loss)
    with nk.config(compile="always"):
        fused = f(a)
        with nk.config(fuse="never"):
            fallback = f(a)
    nk.transform.cache_clear()
    with nk.config(compile="always", fuse="never"):
        plain = f(a)
    assert any(k.shown for k in fuse._KERNELS.values())
    assert fallback[0] == plain[0] and np.array_equal(fallback[1], plain[1])
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-13)


def test_powers_other_than_two_stay_numpy_calls():
    """numexpr writes x ** 3 as multiplications (other bits than NumPy's pow): split off."""
    a = np.linspace(0.5, 2.0, 100)
    fn = lambda x: (x * 1.5 + 0.5) ** 3 * 0.5 + (x * 2.0 - 0.25) ** 2  # noqa: E731
    plain = run(fn, [a], "never")
    fused = run(fn, [a], "auto")
    assert_same(fused, plain, np.float64)
    assert " ** 3" in fused[4] and "# numexpr:" in fused[4]


def test_second_order_gradients_through_fused_programs():
    a = np.linspace(-1, 1, 100).reshape(10, 10)
    b = np.linspace(0.5, 1.5, 10)
    check_grads(lambda x, y: ((x * y - 0.25) * x).tanh() * y + x.relu() * 0.5, a, b, order=2)


def test_nan_propagates_as_in_numpy():
    a = np.linspace(-1, 1, 128)
    a[[3, 70]] = np.nan
    b = np.linspace(1, -1, 128)
    b[[5, 70]] = np.nan
    fn = lambda x, y: nk.numpy.maximum(x * 2.0, y * 1.0) - nk.numpy.minimum(x, y * 3.0) + x.relu() * 2.0  # noqa: E731
    plain = run(fn, [a, b], "never")
    fused = run(fn, [a, b], "auto")
    assert "where(" in fused[4]
    np.testing.assert_array_equal(fused[0], plain[0])


def test_many_inputs_are_split_into_several_kernels():
    arrays = [np.full(100, 1.0 + k / 10) for k in range(40)]

    def fn(*xs):
        total = xs[0] * 1.0
        for x in xs[1:]:
            total = total * 0.5 + x * x
        return total
    plain = run(fn, arrays, "never")
    fused = run(fn, arrays, "auto")
    assert_same(fused, plain, np.float64)
    assert fused[4].count("# numexpr:") >= 2
    assert all(len(k.names) + len(k.constants) <= fuse.MAX_INPUTS for k in fuse._KERNELS.values())


def test_other_array_libraries_are_not_fused():
    xp = pytest.importorskip("array_api_strict")
    x = nk.from_ndarray(xp.asarray(np.linspace(-1, 1, 256))).requires_grad()
    with nk.config(compile="always"):
        y = ((x * 2.0 + 1.0) * x).sum()
        assert "numexpr" not in nk.transform.source(y)


def test_config_checks_the_mode():
    with pytest.raises(ValueError, match="fuse must be one of 'auto', 'never'"):
        nk.config(fuse="sometimes")
    with nk.config(fuse="never") as cfg:
        assert cfg.fuse == "never" and nk.config().fuse == "never"
    assert nk.config().fuse == "auto"
