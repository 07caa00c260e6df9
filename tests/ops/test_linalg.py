"""Matrix products (mm, mm_t, mv, vm, vv, matmul / @) and transposition
(t(), .T, transpose(*axes)).

Forward against NumPy in float32 and float64, gradients against float64
finite differences, including batch dimensions that broadcast, 1-D operands on
either side, NumPy arrays as operands and non-contiguous inputs; rank and
inner-dimension errors.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import neuronika as nk
from neuronika.testing import check_grad

from .conftest import (LAYOUTS, assert_located, check_grad_views, const, diff, grads_of,
                       non_contiguous, uniform)

FILE = "test_linalg.py"
FAST = settings(max_examples=25, deadline=None)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def operands(shape_a, shape_b, seed=0, dtype=np.float64):
    return uniform(shape_a, seed=seed).astype(dtype), uniform(shape_b, seed=seed + 1).astype(dtype)


# ---- the named products -----------------------------------------------------------------------

NAMED = {
    # name: (method, NumPy reference, shape pairs)
    "mm": (lambda a, b: a.mm(b), lambda a, b: a @ b, [((3, 4), (4, 5)), ((1, 4), (4, 1)), ((4, 1), (1, 3))]),
    "mm_t": (lambda a, b: a.mm_t(b), lambda a, b: a @ b.T, [((3, 4), (5, 4)), ((1, 3), (2, 3)), ((2, 1), (3, 1))]),
    "mv": (lambda a, b: a.mv(b), lambda a, b: a @ b, [((3, 4), (4,)), ((1, 4), (4,)), ((3, 1), (1,))]),
    "vm": (lambda a, b: a.vm(b), lambda a, b: a @ b, [((4,), (4, 5)), ((4,), (4, 1)), ((1,), (1, 3))]),
    "vv": (lambda a, b: a.vv(b), lambda a, b: a @ b, [((4,), (4,)), ((1,), (1,))]),
}
NAMED_CASES = [(name, pair) for name, (_, _, pairs) in NAMED.items() for pair in pairs]


def named_id(case):
    return f"{case[0]}-{case[1][0]}x{case[1][1]}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", NAMED_CASES, ids=named_id)
def test_named_product_forward(case, dtype):
    name, (shape_a, shape_b) = case
    method, ref, _ = NAMED[name]
    a, b = operands(shape_a, shape_b, dtype=dtype)
    want = ref(a, b)
    for wrap_a, wrap_b in [(const, const), (diff, const), (const, diff), (diff, diff)]:
        out = method(wrap_a(a), wrap_b(b))
        assert out.shape == np.shape(want)
        assert out.dtype == dtype and out.data.dtype == dtype
        np.testing.assert_allclose(out.data, want, **tol(dtype))


@pytest.mark.parametrize("case", NAMED_CASES, ids=named_id)
def test_named_product_grad(case):
    name, (shape_a, shape_b) = case
    method = NAMED[name][0]
    a, b = operands(shape_a, shape_b, seed=3)
    check_grad(method, a, b)
    check_grad(method, a, b, wrt=[0])
    check_grad(method, a, b, wrt=[1])


@pytest.mark.parametrize("name", NAMED)
def test_named_product_float32_gradients(name):
    method, _, pairs = NAMED[name]
    a, b = operands(*pairs[0], seed=4)
    _, g64 = grads_of(method, a, b)
    out, g32 = grads_of(method, a.astype(np.float32), b.astype(np.float32))
    assert out.dtype == np.float32
    for got, want in zip(g32, g64):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_vv_gives_a_0dim_result():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([4.0, -5.0, 6.0])
    xa, xb = diff(a.copy()), diff(b.copy())
    y = xa.vv(xb)
    assert y.shape == () and y.ndim == 0
    assert y.item() == 12.0
    assert y.data.shape == ()
    y.backward()
    np.testing.assert_array_equal(xa.grad, b)
    np.testing.assert_array_equal(xb.grad, a)


def test_mm_closed_form_gradients():
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(12.0).reshape(3, 4) - 5
    xa, xb = diff(a.copy()), diff(b.copy())
    seed = np.arange(8.0).reshape(2, 4)
    xa.mm(xb).backward(seed)
    np.testing.assert_allclose(xa.grad, seed @ b.T, rtol=1e-15)
    np.testing.assert_allclose(xb.grad, a.T @ seed, rtol=1e-15)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", NAMED)
def test_named_product_non_contiguous(name, layout):
    method, ref, pairs = NAMED[name]
    a, b = operands(*pairs[0], seed=5)
    a_view, b_view = non_contiguous(a, layout), non_contiguous(b, layout)
    np.testing.assert_allclose(method(const(a_view), const(b_view)).data, ref(a, b), rtol=1e-12)
    check_grad_views(method, a_view, b_view)


def test_mm_with_transposed_views_of_one_buffer():
    buffer = uniform((4, 4), seed=6)
    check_grad_views(lambda a, b: a.mm(b), buffer.T, buffer[:, ::2])
    check_grad_views(lambda a, b: a.mm_t(b), buffer[:, ::2], buffer.T[1:, 1::2])


# ---- matmul / @ --------------------------------------------------------------------------------

MATMUL_PAIRS = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((1, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((2, 3, 4), (4,)),
    ((4,), (2, 4, 5)),
    ((2, 1, 3, 4), (4,)),
    ((4,), (3, 1, 4, 2)),
    ((1, 4), (4, 1)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", MATMUL_PAIRS, ids=str)
def test_matmul_forward(shapes, dtype):
    a, b = operands(*shapes, dtype=dtype)
    want = a @ b
    for out in (diff(a) @ diff(b), const(a).matmul(diff(b)), diff(a).matmul(b), a @ diff(b),
                const(a) @ const(b)):
        assert out.shape == np.shape(want)
        assert out.dtype == dtype and out.data.dtype == dtype
        np.testing.assert_allclose(out.data, want, **tol(dtype))


@pytest.mark.parametrize("shapes", MATMUL_PAIRS, ids=str)
def test_matmul_grad(shapes):
    a, b = operands(*shapes, seed=7)
    check_grad(lambda x, y: x @ y, a, b)
    check_grad(lambda x, y: x.matmul(y), a, b, wrt=[0])
    check_grad(lambda x, y: x @ y, a, b, wrt=[1])


@pytest.mark.parametrize("shapes", MATMUL_PAIRS, ids=str)
def test_matmul_numpy_array_on_either_side(shapes):
    a, b = operands(*shapes, seed=8)
    left = a @ diff(b)
    assert type(left) is nk.VarDiff, "NumPy must defer to Var.__rmatmul__"
    np.testing.assert_allclose(left.data, a @ b, rtol=1e-12)
    check_grad(lambda y: a @ y, b)
    check_grad(lambda x: x @ b, a)


@pytest.mark.parametrize("shapes", MATMUL_PAIRS, ids=str)
def test_matmul_float32_gradients(shapes):
    a, b = operands(*shapes, seed=9)
    _, g64 = grads_of(lambda x, y: x @ y, a, b)
    out, g32 = grads_of(lambda x, y: x @ y, a.astype(np.float32), b.astype(np.float32))
    assert out.dtype == np.float32
    for got, want in zip(g32, g64):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shapes", [((2, 3, 4), (4, 5)), ((2, 3, 4), (2, 4, 3)), ((4,), (2, 4, 3)),
                                    ((2, 3, 4), (4,))], ids=str)
def test_matmul_non_contiguous(shapes, layout):
    a, b = operands(*shapes, seed=10)
    a_view, b_view = non_contiguous(a, layout), non_contiguous(b, layout)
    np.testing.assert_allclose((const(a_view) @ const(b_view)).data, a @ b, rtol=1e-12)
    check_grad_views(lambda x, y: x @ y, a_view, b_view)


def test_matmul_same_operand_and_chain():
    a = uniform((3, 3), seed=11)
    check_grad(lambda x: x @ x, a)
    check_grad(lambda x: (x @ x.T).tanh() @ x, a)
    v = uniform((3,), seed=12)
    check_grad(lambda x, y: y @ x @ y, a, v)


@st.composite
def matmul_shapes(draw):
    n, k, m = (draw(st.integers(1, 3)) for _ in range(3))
    batch = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    # each operand keeps a suffix of the batch, with some sizes replaced by 1
    def batch_for():
        keep = draw(st.integers(0, len(batch)))
        sub = batch[len(batch) - keep:]
        return tuple(1 if draw(st.booleans()) else d for d in sub)
    a = (k,) if draw(st.integers(0, 4)) == 0 else batch_for() + (n, k)
    b = (k,) if draw(st.integers(0, 4)) == 0 else batch_for() + (k, m)
    return a, b


@FAST
@given(shapes=matmul_shapes(), seed=st.integers(0, 1000))
def test_matmul_property(shapes, seed):
    a, b = operands(*shapes, seed=seed)
    want = a @ b
    out = const(a) @ const(b)
    assert out.shape == want.shape
    np.testing.assert_allclose(out.data, want, rtol=1e-12, atol=1e-13)
    check_grad(lambda x, y: x @ y, a, b)


# ---- transposition ------------------------------------------------------------------------------

TRANSPOSES = {
    "t()": (lambda x: x.t(), lambda a: a.T),
    ".T": (lambda x: x.T, lambda a: a.T),
    "transpose()": (lambda x: x.transpose(), lambda a: np.transpose(a)),
    "transpose(1, 0, 2)": (lambda x: x.transpose(1, 0, 2), lambda a: np.transpose(a, (1, 0, 2))),
    "transpose((2, 0, 1))": (lambda x: x.transpose((2, 0, 1)), lambda a: np.transpose(a, (2, 0, 1))),
    "transpose([0, 2, 1])": (lambda x: x.transpose([0, 2, 1]), lambda a: np.transpose(a, (0, 2, 1))),
    "transpose(-1, 0, -2)": (lambda x: x.transpose(-1, 0, -2), lambda a: np.transpose(a, (2, 0, 1))),
    "transpose(0, 1, 2)": (lambda x: x.transpose(0, 1, 2), lambda a: a),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", TRANSPOSES)
def test_transpose_forward(name, dtype):
    fn, ref = TRANSPOSES[name]
    a = uniform((2, 3, 4), seed=13).astype(dtype)
    out = fn(diff(a))
    want = ref(a)
    assert out.shape == want.shape and out.dtype == dtype and out.data.dtype == dtype
    np.testing.assert_array_equal(out.data, want)


@pytest.mark.parametrize("name", TRANSPOSES)
def test_transpose_grad(name):
    fn, _ = TRANSPOSES[name]
    check_grad(fn, uniform((2, 3, 4), seed=14))


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (1, 4), (2, 3, 4), (2, 1, 3, 2)], ids=str)
def test_t_and_T_reverse_all_axes(shape):
    a = uniform(shape, seed=15)
    for fn in (lambda x: x.t(), lambda x: x.T, lambda x: x.transpose()):
        out = fn(diff(a))
        np.testing.assert_array_equal(out.data, a.T)
        check_grad(fn, a)
    check_grad(lambda x: x.T.T, a)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_transpose_non_contiguous(layout):
    a = non_contiguous(uniform((3, 4, 2), seed=16), layout)
    for fn in (lambda x: x.T, lambda x: x.transpose(1, 2, 0), lambda x: x.transpose(1, 0, 2) * x.T.transpose(1, 2, 0)):
        check_grad_views(fn, a)


def test_transpose_gradient_is_a_fresh_array():
    """A transpose adjoint is a view of the seed: the leaf must get its own array,
    and a second backward adds into it without touching the seed."""
    x = diff(np.zeros((2, 3)))
    seed = np.arange(6.0).reshape(3, 2)
    kept = seed.copy()
    x.T.backward(seed)
    x.T.backward(seed)
    np.testing.assert_array_equal(seed, kept)
    np.testing.assert_array_equal(x.grad, 2 * kept.T)


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, shape_a, shape_b, ranks", [
    ("mm", (3,), (3, 4), "2 and 2"),
    ("mm", (2, 3, 4), (4, 5), "2 and 2"),
    ("mm", (3, 4), (4,), "2 and 2"),
    ("mv", (3, 4), (4, 2), "2 and 1"),
    ("mv", (4,), (4,), "2 and 1"),
    ("vm", (3, 4), (4, 2), "1 and 2"),
    ("vm", (4,), (4,), "1 and 2"),
    ("vv", (3, 4), (4,), "1 and 1"),
    ("vv", (4,), (4, 1), "1 and 1"),
    ("vv", (), (), "1 and 1"),
])
def test_wrong_ranks(name, shape_a, shape_b, ranks):
    a, b = diff(np.ones(shape_a)), diff(np.ones(shape_b))
    with pytest.raises(nk.ShapeError) as excinfo:
        getattr(a, name)(b)
    assert isinstance(excinfo.value, ValueError)
    assert_located(excinfo, name, ranks, str(shape_a), str(shape_b), file=FILE)


@pytest.mark.parametrize("call, shape_a, shape_b, op", [
    (lambda a, b: a.mm(b), (3, 4), (5, 2), "mm"),
    (lambda a, b: a.mv(b), (3, 4), (3,), "mv"),
    (lambda a, b: a.vm(b), (3,), (4, 2), "vm"),
    (lambda a, b: a.vv(b), (3,), (4,), "vv"),
    (lambda a, b: a @ b, (2, 3, 4), (5, 6), "matmul"),
    (lambda a, b: a @ b, (4,), (5, 6), "matmul"),
    (lambda a, b: a.mm_t(b), (3, 4), (5, 3), "mm_t"),
], ids=["mm", "mv", "vm", "vv", "matmul-batch", "matmul-1d", "mm_t"])
def test_inner_dimension_mismatch(call, shape_a, shape_b, op):
    a, b = diff(np.ones(shape_a)), diff(np.ones(shape_b))
    with pytest.raises(nk.ShapeError) as excinfo:
        call(a, b)
    assert_located(excinfo, op, str(shape_a), str(shape_b), file=FILE)


def test_matmul_batch_dimensions_that_do_not_broadcast():
    a, b = diff(np.ones((2, 3, 4))), diff(np.ones((3, 4, 5)))
    with pytest.raises(nk.ShapeError) as excinfo:
        a @ b
    assert_located(excinfo, "matmul", "(2, 3, 4)", "(3, 4, 5)", file=FILE)


def test_matmul_0dim_operand():
    with pytest.raises(nk.ShapeError) as excinfo:
        diff(np.ones(3)) @ diff(np.array(2.0))
    assert_located(excinfo, "matmul", "(3,)", "()", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        np.array(2.0) @ diff(np.ones(3))
    assert_located(excinfo, "matmul", "()", "(3,)", file=FILE)


def test_mm_t_wrong_ranks():
    with pytest.raises(nk.ShapeError) as excinfo:
        diff(np.ones((3, 4))).mm_t(diff(np.ones(4)))
    assert_located(excinfo, "mm_t", "(3, 4)", "(4,)", file=FILE)


@pytest.mark.parametrize("axes", [(0, 1), (0, 0, 1), (0, 1, 3), (0, 1, -4)], ids=str)
def test_transpose_not_a_permutation(axes):
    x = diff(np.ones((2, 3, 4)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x.transpose(*axes)
    assert_located(excinfo, "transpose", file=FILE)
