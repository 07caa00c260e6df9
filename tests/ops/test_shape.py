"""Ops that move elements: reshape (flatten, unsqueeze, squeeze), indexing,
chunks, split, pad, concatenate and stack.

Forward against NumPy in float32 and float64, gradients against float64
finite differences (also on non-contiguous inputs), closed forms for repeated
indices (they add up) and for reflect / replicate padding (border gradients
fold back), and the shape errors.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import neuronika as nk
from neuronika.testing import check_grad

from .conftest import (LAYOUTS, assert_located, check_grad_views, const, diff, grads_of,
                       non_contiguous, uniform)

FILE = "test_shape.py"
FAST = settings(max_examples=25, deadline=None)
DTYPES = [np.float32, np.float64]


def check_forward(fn, ref, a, dtype):
    """fn over a (Var and VarDiff) equals ref over the NumPy array, dtype kept."""
    a = a.astype(dtype)
    want = ref(a)
    for wrap in (const, diff):
        out = fn(wrap(a))
        assert out.shape == np.shape(want)
        assert out.dtype == dtype and out.data.dtype == dtype
        np.testing.assert_array_equal(out.data, want)


# ---- reshape, flatten, unsqueeze, squeeze ----------------------------------------------------------

RESHAPES = [
    ((2, 3, 4), (6, 4)), ((2, 3, 4), (4, -1)), ((2, 3, 4), (-1,)), ((2, 3, 4), (24,)),
    ((2, 3, 4), (1, 2, 3, 4)), ((2, 3, 4), (-1, 3, 2)), ((2, 3, 4), (3, 2, 4)),
    ((6,), (2, 3)), ((6,), (3, -1)), ((), (1,)), ((), (1, 1)), ((), (-1,)), ((1,), ()), ((1, 1), ()),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", RESHAPES, ids=str)
def test_reshape_forward(case, dtype):
    shape, target = case
    a = uniform(shape, seed=1)
    check_forward(lambda x: x.reshape(target), lambda v: v.reshape(target), a, dtype)
    check_forward(lambda x: x.reshape(*target), lambda v: v.reshape(target), a, dtype)
    check_forward(lambda x: x.reshape(list(target)), lambda v: v.reshape(target), a, dtype)


@pytest.mark.parametrize("case", RESHAPES, ids=str)
def test_reshape_grad(case):
    shape, target = case
    check_grad(lambda x: x.reshape(target), uniform(shape, seed=2))
    check_grad(lambda x: x.reshape(target).tanh() * x.reshape(target), uniform(shape, seed=3))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reshape_non_contiguous(layout):
    a = non_contiguous(uniform((3, 4, 2), seed=4), layout)
    np.testing.assert_array_equal(const(a).reshape(4, 6).data, np.reshape(a, (4, 6)))
    check_grad_views(lambda x: x.reshape(4, 6), a)
    check_grad_views(lambda x: x.reshape(-1) * x.flatten(), a)


FLATTENS = [((2, 3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), 2), ((2, 3, 4), -1), ((2, 3, 4), -2),
            ((2, 3, 4), -3), ((5,), 0), ((), 0)]


def np_flatten(a, start):
    if a.ndim == 0:
        return a.reshape(1)
    start %= a.ndim
    return a.reshape(a.shape[:start] + (-1,))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FLATTENS, ids=str)
def test_flatten(case, dtype):
    shape, start = case
    a = uniform(shape, seed=5)
    check_forward(lambda x: x.flatten(start), lambda v: np_flatten(v, start), a, dtype)
    check_forward(lambda x: x.flatten(start_axis=start), lambda v: np_flatten(v, start), a, dtype)
    check_grad(lambda x: x.flatten(start), a)


def test_flatten_default_is_all_axes():
    a = uniform((2, 3, 4), seed=6)
    assert diff(a).flatten().shape == (24,)
    check_grad(lambda x: x.flatten(), a)


UNSQUEEZES = [((2, 3), 0), ((2, 3), 1), ((2, 3), 2), ((2, 3), -1), ((2, 3), -2), ((2, 3), -3),
              ((), 0), ((), -1), ((4,), 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", UNSQUEEZES, ids=str)
def test_unsqueeze(case, dtype):
    shape, axis = case
    a = uniform(shape, seed=7)
    check_forward(lambda x: x.unsqueeze(axis), lambda v: np.expand_dims(v, axis), a, dtype)
    check_grad(lambda x: x.unsqueeze(axis), a)


SQUEEZES = [((1, 3, 1, 2), None), ((1, 3, 1, 2), 0), ((1, 3, 1, 2), 2), ((1, 3, 1, 2), -2),
            ((1, 3, 1, 2), -4), ((3, 2), None), ((1,), None), ((1,), 0), ((1, 1), None), ((2, 1), -1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SQUEEZES, ids=str)
def test_squeeze(case, dtype):
    shape, axis = case
    a = uniform(shape, seed=8)
    check_forward(lambda x: x.squeeze(axis), lambda v: np.squeeze(v, axis), a, dtype)
    check_forward(lambda x: x.squeeze() if axis is None else x.squeeze(axis=axis),
                  lambda v: np.squeeze(v, axis), a, dtype)
    check_grad(lambda x: x.squeeze(axis), a)


def test_unsqueeze_then_squeeze_round_trip_with_broadcasting():
    a, b = uniform((3,), seed=9), uniform((4,), seed=10)
    check_grad(lambda x, y: (x.unsqueeze(1) * y.unsqueeze(0)).squeeze(), a, b)
    check_grad(lambda x, y: x.unsqueeze(-1).mm(y.unsqueeze(0)), a, b)


@FAST
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, max_side=3), data=st.data())
def test_reshape_property(shape, data):
    a = uniform(shape, seed=11)
    target = data.draw(st.permutations(shape)) if shape else ()
    target = tuple(target)
    if target and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(target) - 1))
        if target[i] != 0:
            target = target[:i] + (-1,) + target[i + 1:]
    np.testing.assert_array_equal(const(a).reshape(target).data, a.reshape(target))
    check_grad(lambda x: x.reshape(target), a)


def test_reshape_errors():
    x = diff(np.ones((2, 3)))
    for target in [(4, 2), (5,), (7, -1), (-1, -1), (0, -1), (-2, -3), (2, 3, 2)]:
        with pytest.raises(nk.ShapeError) as excinfo:
            x.reshape(target)
        assert isinstance(excinfo.value, ValueError)
        assert_located(excinfo, "reshape", str(target), file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.reshape(4, 2)
    assert_located(excinfo, "reshape", "(2, 3)", "(4, 2)", file=FILE)


def test_flatten_unsqueeze_squeeze_errors():
    x = diff(np.ones((2, 1, 3)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x.flatten(3)
    assert_located(excinfo, "flatten", "axis 3", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.unsqueeze(4)
    assert_located(excinfo, "unsqueeze", "axis 4", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.unsqueeze(-5)
    assert_located(excinfo, "unsqueeze", "axis -5", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.squeeze(0)
    assert_located(excinfo, "squeeze", "(2, 1, 3)", "size 2", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.squeeze(3)
    assert_located(excinfo, "squeeze", "axis 3", file=FILE)


# ---- indexing ---------------------------------------------------------------------------------------

SHAPE = (4, 5, 3)
M4 = np.array([True, False, True, True])
M5 = np.array([False, True, True, False, True])
M45 = np.arange(20).reshape(4, 5) % 3 == 1
M453 = np.arange(60).reshape(4, 5, 3) % 4 == 1

KEYS = {
    # ints, including negative
    "1": 1, "-1": -1, "(2,)": (2,), "(1, -2)": (1, -2), "(0, 1, 2)": (0, 1, 2), "(-4, -5, -3)": (-4, -5, -3),
    "np.int64(3)": np.int64(3),
    # slices
    "1:3": slice(1, 3), "::2": slice(None, None, 2), "::-1": slice(None, None, -1),
    "3:0:-2": slice(3, 0, -2), "-3:": slice(-3, None), "(:, 1:4:2)": (slice(None), slice(1, 4, 2)),
    "(::-2, ::-1, 1:)": (slice(None, None, -2), slice(None, None, -1), slice(1, None)),
    "(1:1,)": (slice(1, 1),), "(:, 10:)": (slice(None), slice(10, None)),
    # None and ...
    "None": None, "(..., 1)": (Ellipsis, 1), "(None, 1)": (None, 1), "(1, None, :)": (1, None, slice(None)),
    "(..., None)": (Ellipsis, None), "(:, None, ..., -1)": (slice(None), None, Ellipsis, -1),
    "...": Ellipsis, "()": (),
    # integer arrays
    "[0, 2, 3]": [0, 2, 3], "array([0, 2, 3])": np.array([0, 2, 3]), "array([-1, -4])": np.array([-1, -4]),
    "[[0, 1], [3, 2]]": np.array([[0, 1], [3, 2]]), "([0, 1], [2, 4])": (np.array([0, 1]), np.array([2, 4])),
    "(1:3, [0, 4])": (slice(1, 3), [0, 4]), "([1, 2], :, [0, 2])": ([1, 2], slice(None), [0, 2]),
    "(..., [2, 0])": (Ellipsis, [2, 0]), "(None, [1, 1, 3])": (None, [1, 1, 3]), "(-1, [0, 4])": (-1, [0, 4]),
    "([[0], [3]], [1, 2])": (np.array([[0], [3]]), np.array([1, 2])), "array(2)": np.array(2),
    "uint8": np.array([3, 1], np.uint8),
    # boolean masks
    "mask(4,)": M4, "mask(4, 5)": M45, "mask(4, 5, 3)": M453, "(:, mask(5,))": (slice(None), M5),
    "(mask(4,), 1)": (M4, 1), "(mask(4,), ::-1, [0, 2, 2])": (M4, slice(None, None, -1), np.array([0, 2, 2])),
    "(..., mask(3,))": (Ellipsis, np.array([True, False, True])),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", KEYS)
def test_index_forward(name, dtype):
    key = KEYS[name]
    a = uniform(SHAPE, seed=12)
    check_forward(lambda x: x[key], lambda v: v[key], a, dtype)


@pytest.mark.parametrize("name", KEYS)
def test_index_grad(name):
    key = KEYS[name]
    check_grad(lambda x: x[key], uniform(SHAPE, seed=13))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", ["(1, -2)", "(::-2, ::-1, 1:)", "([1, 2], :, [0, 2])", "mask(4, 5)",
                                  "(None, [1, 1, 3])"])
def test_index_non_contiguous(name, layout):
    key = KEYS[name]
    a = non_contiguous(uniform(SHAPE, seed=14), layout)
    np.testing.assert_array_equal(const(a)[key].data, a[key])
    check_grad_views(lambda x: x[key], a)


@pytest.mark.parametrize("name", KEYS)
def test_index_float32_gradient(name):
    key = KEYS[name]
    a = uniform(SHAPE, seed=15)
    _, (g64,) = grads_of(lambda x: x[key], a)
    out, (g32,) = grads_of(lambda x: x[key], a.astype(np.float32))
    assert out.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-6, atol=1e-6)


def test_index_with_a_variable_holding_integers():
    a = uniform((5, 2), seed=16)
    idx = const(np.array([4, 0, 4]))
    x = diff(a.copy())
    y = x[idx]
    np.testing.assert_array_equal(y.data, a[[4, 0, 4]])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 1], [0, 0], [0, 0], [0, 0], [2, 2]])


def test_repeated_indices_add_in_the_gradient():
    x = diff(np.arange(5.0))
    y = x[[0, 0, 2]]
    np.testing.assert_array_equal(y.data, [0.0, 0.0, 2.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 0.0, 1.0, 0.0, 0.0])

    x = diff(np.arange(5.0))
    x[np.array([[1, 1], [1, 3]])].backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(x.grad, [0.0, 6.0, 0.0, 4.0, 0.0])

    x = diff(np.zeros((3, 3), np.float32))
    x[[0, 0, 2], [1, 1, 0]].backward(np.array([1.0, 2.0, 5.0], np.float32))
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [[0, 3, 0], [0, 0, 0], [5, 0, 0]])


def test_several_index_reads_of_one_value_add_up():
    x = diff(np.arange(5.0))
    total = x[[0, 0, 2]].sum() + x[[2, 2]].sum() + x[0] * 3.0 + x[1:3].sum() + x[::-2].sum()
    total.backward()
    np.testing.assert_array_equal(x.grad, [6.0, 1.0, 5.0, 0.0, 1.0])


def test_indexing_in_a_loop_with_repeats():
    a = uniform((4, 2), seed=17)
    x = diff(a.copy())
    total = x[0]
    for i in [1, 1, 3, -1]:
        total = total + x[i]
    total.sum().backward()
    np.testing.assert_array_equal(x.grad, np.array([[1, 1], [2, 2], [0, 0], [2, 2]]))
    check_grad(lambda v: v[0] * v[1] + v[1] * v[-1] + v[3], a)


def test_overlapping_slices_add_up():
    x = diff(np.arange(5.0))
    (x[0:3].sum() + x[1:4].sum() + x[-2:].sum()).backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 2.0, 2.0, 1.0])


@FAST
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=4))
def test_basic_index_property(data, shape):
    key = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    a = uniform(shape, seed=18)
    np.testing.assert_array_equal(const(a)[key].data, a[key])
    check_grad(lambda x: x[key], a)


@FAST
@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
def test_integer_array_index_property(data, shape):
    key = data.draw(hnp.integer_array_indices(shape, result_shape=hnp.array_shapes(min_dims=1, max_dims=2, max_side=4)))
    a = uniform(shape, seed=19)
    np.testing.assert_array_equal(const(a)[key].data, a[key])
    x = diff(a.copy())
    seed = np.random.default_rng(0).standard_normal(a[key].shape)
    x[key].backward(seed)
    want = np.zeros_like(a)
    np.add.at(want, key, seed)
    np.testing.assert_allclose(x.grad, want, rtol=1e-14)
    check_grad(lambda v: v[key], a)


@FAST
@given(mask=hnp.arrays(np.bool_, st.sampled_from([(4,), (4, 5), (4, 5, 3)])))
def test_mask_index_property(mask):
    a = uniform(SHAPE, seed=20)
    np.testing.assert_array_equal(const(a)[mask].data, a[mask])
    x = diff(a.copy())
    x[mask].sum().backward()
    want = np.zeros(SHAPE)
    want[mask] = 1.0
    np.testing.assert_array_equal(x.grad, want)


@pytest.mark.parametrize("key, bad", [
    (5, "5"), (-6, "-6"), ((0, 5), "5"), ((0, 0, 3), "3"), ((slice(None), -7), "-7"),
    ([0, 7], "7"), (np.array([1, -9]), "-9"), ((slice(None), [0, 5]), "5"),
], ids=str)
def test_index_out_of_bounds(key, bad):
    x = diff(np.ones((4, 5, 3)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x[key]
    assert isinstance(excinfo.value, IndexError)       # a ShapeError that is NumPy's IndexError too
    assert_located(excinfo, "index", bad, "out of bounds", "(4, 5, 3)", file=FILE)


def test_index_too_many_indices():
    x = diff(np.ones((2, 3)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x[0, 1, 2]
    assert_located(excinfo, "index", "(2, 3)", file=FILE)


def test_index_boolean_mask_of_the_wrong_shape():
    """NumPy refuses a mask whose shape does not match the indexed axes; so must neuronika."""
    x = diff(np.arange(4.0))
    with pytest.raises(nk.ShapeError) as excinfo:
        x[np.array([True, False, True])]
    assert_located(excinfo, "index", file=FILE)
    with pytest.raises(nk.ShapeError):
        diff(np.ones((3, 4)))[np.ones((2, 2), bool)]


def test_index_bad_kinds():
    x = diff(np.ones((4, 5)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x[1.5]
    assert_located(excinfo, "index", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x[::0]
    assert_located(excinfo, "index", "step", file=FILE)


VIEW_ADJOINTS = {
    "reshape": lambda x: x.reshape(-1).reshape(3, 4),
    "flatten/unsqueeze/squeeze": lambda x: x.flatten().unsqueeze(0).squeeze(0).reshape(3, 4),
    "slice": lambda x: x[:, :],
    "ellipsis": lambda x: x[...],
    "reversed": lambda x: x[::-1][::-1],
    "concatenate one": lambda x: nk.concatenate([x]),
    "stack one": lambda x: nk.stack([x])[0],
    "pad 0": lambda x: x.pad(0),
    "pad then crop": lambda x: x.pad(1, mode="reflect")[1:-1, 1:-1],
    "split": lambda x: nk.concatenate(x.split(1, axis=1), axis=1),
    "chunks": lambda x: nk.concatenate(x.chunks((3, 4))),
}


@pytest.mark.parametrize("name", VIEW_ADJOINTS)
def test_view_adjoints_leave_the_seed_alone(name):
    """Adjoints that are views of dy: the leaf gets its own array, the user's seed
    is never written, and a second backward adds."""
    fn = VIEW_ADJOINTS[name]
    x = diff(np.arange(12.0).reshape(3, 4))
    y = fn(x)
    np.testing.assert_array_equal(y.data, np.arange(12.0).reshape(3, 4))
    seed = np.arange(12.0).reshape(3, 4) + 1
    kept = seed.copy()
    y.backward(seed)
    assert not np.shares_memory(x.grad, seed)
    y.backward(seed)
    np.testing.assert_array_equal(seed, kept)
    np.testing.assert_array_equal(x.grad, 2 * kept)


# ---- chunks and split ----------------------------------------------------------------------------

CHUNKS = [((5, 7), (2, 3)), ((4, 6), (2, 3)), ((5,), (2,)), ((5,), 2), ((3,), (5,)), ((3, 4, 5), (2, 4, 2)),
          ((2, 3), (1, 1)), ((2, 3), (2, 3))]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CHUNKS, ids=str)
def test_chunks_tiles_cover_everything_in_row_major_order(case, dtype):
    shape, chunk = case
    chunk_shape = (chunk,) if isinstance(chunk, int) else chunk
    a = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    tiles = diff(a).chunks(chunk)
    corners = list(np.ndindex(*[-(-s // c) for s, c in zip(shape, chunk_shape)]))
    assert len(tiles) == len(corners)
    for tile, corner in zip(tiles, corners):
        key = tuple(slice(i * c, (i + 1) * c) for i, c in zip(corner, chunk_shape))
        want = a[key]
        assert tile.shape == want.shape and tile.dtype == dtype
        assert all(0 < t <= c for t, c in zip(tile.shape, chunk_shape))
        np.testing.assert_array_equal(tile.data, want)
    covered = np.sort(np.concatenate([t.data.reshape(-1) for t in tiles]))
    np.testing.assert_array_equal(covered, np.arange(a.size, dtype=dtype))


@pytest.mark.parametrize("case", CHUNKS, ids=str)
def test_chunks_grad(case):
    shape, chunk = case
    a = uniform(shape, seed=21)

    def fn(x):
        return nk.concatenate([t.flatten() * float(i + 1) for i, t in enumerate(x.chunks(chunk))])

    check_grad(fn, a)
    x = diff(a.copy())
    sum(t.sum() for t in x.chunks(chunk)).backward()
    np.testing.assert_array_equal(x.grad, np.ones(shape))


def test_chunks_last_tiles_smaller():
    tiles = diff(np.ones((5, 7))).chunks((2, 3))
    assert [t.shape for t in tiles] == [(2, 3), (2, 3), (2, 1), (2, 3), (2, 3), (2, 1), (1, 3), (1, 3), (1, 1)]


@pytest.mark.parametrize("chunk", [(2,), (2, 3, 1), (0, 2), (2, -1)], ids=str)
def test_chunks_errors(chunk):
    with pytest.raises(nk.ShapeError) as excinfo:
        diff(np.ones((4, 5))).chunks(chunk)
    assert_located(excinfo, "chunks", "(4, 5)", file=FILE)


SPLITS = [((5, 3), 2, 0, [2, 2, 1]), ((5, 3), 5, 0, [5]), ((5, 3), 7, 0, [5]), ((5, 3), [1, 3, 1], 0, [1, 3, 1]),
          ((5, 3), [2, 1], 1, [2, 1]), ((5, 3), 2, -1, [2, 1]), ((5, 3), [0, 5], 0, [0, 5]),
          ((2, 6, 2), 4, 1, [4, 2]), ((2, 6, 2), (3, 3), -2, [3, 3]), ((6,), 1, 0, [1] * 6)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", SPLITS, ids=str)
def test_split_forward(case, dtype):
    shape, sizes, axis, expected = case
    a = uniform(shape, seed=22).astype(dtype)
    parts = diff(a).split(sizes, axis=axis)
    assert [p.shape[axis] for p in parts] == expected
    bounds = np.cumsum([0] + expected)
    for part, start, stop in zip(parts, bounds[:-1], bounds[1:]):
        assert part.dtype == dtype
        np.testing.assert_array_equal(part.data, np.take(a, np.arange(start, stop), axis=axis))
    np.testing.assert_array_equal(np.concatenate([p.data for p in parts], axis=axis), a)


@pytest.mark.parametrize("case", SPLITS, ids=str)
def test_split_grad(case):
    shape, sizes, axis, _ = case
    a = uniform(shape, seed=23)
    check_grad(lambda x: nk.concatenate([p * float(i + 1) for i, p in enumerate(x.split(sizes, axis))], axis=axis), a)


def test_split_default_axis_is_zero():
    parts = diff(np.arange(10.0).reshape(5, 2)).split(2)
    assert [p.shape for p in parts] == [(2, 2), (2, 2), (1, 2)]


def test_split_errors():
    x = diff(np.ones((5, 3)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x.split([2, 2])
    assert_located(excinfo, "split", "[2, 2]", "5", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.split([4, 2], axis=1)
    assert_located(excinfo, "split", "3", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.split(0)
    assert_located(excinfo, "split", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.split(2, axis=2)
    assert_located(excinfo, "split", "axis 2", file=FILE)


# ---- pad --------------------------------------------------------------------------------------------

NP_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "edge": "edge"}
PADS = [
    ("constant", (5,), (2, 1), 0.0), ("constant", (5,), 1, 2.5), ("constant", (3, 4), ((1, 0), (2, 3)), 0.0),
    ("constant", (3, 4), (1, 2), -1.0), ("constant", (2, 3, 2), ((0, 0), (1, 1), (0, 2)), 3.0),
    ("reflect", (3,), (2, 1), 0.0), ("reflect", (5,), (4, 4), 0.0), ("reflect", (4, 3), ((1, 2), (2, 1)), 0.0),
    ("reflect", (4, 3), 1, 0.0), ("reflect", (2, 3, 4), ((1, 0), (0, 2), (3, 1)), 0.0),
    ("replicate", (3,), (2, 1), 0.0), ("replicate", (2,), (4, 5), 0.0), ("replicate", (4, 3), ((1, 2), (3, 0)), 0.0),
    ("replicate", (2, 3, 4), ((1, 0), (0, 2), (3, 1)), 0.0), ("edge", (3, 2), 2, 0.0),
    ("replicate", (1, 3), ((2, 2), (0, 1)), 0.0),
]


def np_pad(a, widths, mode, value):
    if mode == "constant":
        return np.pad(a, widths, mode="constant", constant_values=value)
    return np.pad(a, widths, mode=NP_MODE[mode])


def pad(x, widths, mode, value):
    return x.pad(widths, mode=mode, value=value) if mode == "constant" else x.pad(widths, mode)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", PADS, ids=str)
def test_pad_forward(case, dtype):
    mode, shape, widths, value = case
    a = uniform(shape, seed=24)
    check_forward(lambda x: pad(x, widths, mode, value), lambda v: np_pad(v, widths, mode, value), a, dtype)


@pytest.mark.parametrize("case", PADS, ids=str)
def test_pad_grad(case):
    mode, shape, widths, value = case
    check_grad(lambda x: pad(x, widths, mode, value), uniform(shape, seed=25))


@pytest.mark.parametrize("case", PADS, ids=str)
def test_pad_float32_gradient(case):
    mode, shape, widths, value = case
    a = uniform(shape, seed=26)
    _, (g64,) = grads_of(lambda x: pad(x, widths, mode, value), a)
    out, (g32,) = grads_of(lambda x: pad(x, widths, mode, value), a.astype(np.float32))
    assert out.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(g32, g64, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate"])
def test_pad_non_contiguous(mode, layout):
    a = non_contiguous(uniform((3, 4, 2), seed=27), layout)
    widths = ((1, 2), (2, 1), (1, 1))
    np.testing.assert_array_equal(pad(const(a), widths, mode, 1.5).data, np_pad(np.array(a), widths, mode, 1.5))
    check_grad_views(lambda x: pad(x, widths, mode, 1.5), a)


def test_pad_reflect_closed_form():
    x = diff(np.array([1.0, 2.0, 3.0]))               # a, b, c
    y = x.pad((2, 1), mode="reflect")
    np.testing.assert_array_equal(y.data, [3.0, 2.0, 1.0, 2.0, 3.0, 2.0])   # c b a b c b
    y.backward(np.ones(6))
    np.testing.assert_array_equal(x.grad, [1.0, 3.0, 2.0])

    x = diff(np.array([1.0, 2.0, 3.0]))
    x.pad((2, 1), mode="reflect").backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 2.0 + 4.0 + 6.0, 1.0 + 5.0])


def test_pad_replicate_closed_form():
    x = diff(np.array([1.0, 2.0, 3.0]))
    y = x.pad((2, 1), mode="replicate")
    np.testing.assert_array_equal(y.data, [1.0, 1.0, 1.0, 2.0, 3.0, 3.0])   # a a a b c c
    y.backward(np.ones(6))
    np.testing.assert_array_equal(x.grad, [3.0, 1.0, 2.0])

    x = diff(np.array([1.0, 2.0, 3.0]))
    x.pad((2, 1), mode="replicate").backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    np.testing.assert_array_equal(x.grad, [6.0, 4.0, 11.0])


def test_pad_constant_closed_form():
    x = diff(np.array([1.0, 2.0, 3.0]))
    y = x.pad((2, 1), value=9.0)
    np.testing.assert_array_equal(y.data, [9.0, 9.0, 1.0, 2.0, 3.0, 9.0])
    y.backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 4.0, 5.0])


@pytest.mark.parametrize("mode, fold", [("reflect", [1.0, 3.0, 2.0]), ("replicate", [3.0, 1.0, 2.0])])
def test_pad_2d_folds_along_both_axes(mode, fold):
    """With a seed of ones the fold along each axis multiplies: grad = outer(fold, fold)."""
    x = diff(np.arange(9.0).reshape(3, 3))
    x.pad(((2, 1), (2, 1)), mode=mode).backward(np.ones((6, 6)))
    np.testing.assert_array_equal(x.grad, np.outer(fold, fold))


def test_pad_gradient_does_not_touch_the_seed():
    seed = np.arange(6.0)
    kept = seed.copy()
    for mode in ("constant", "reflect", "replicate"):
        x = diff(np.array([1.0, 2.0, 3.0]))
        x.pad((2, 1), mode=mode).backward(seed)
        x.pad((2, 1), mode=mode).backward(seed)
        np.testing.assert_array_equal(seed, kept)


def test_pad_errors():
    x = diff(np.ones((3, 4)))
    with pytest.raises(nk.ShapeError) as excinfo:
        x.pad(((3, 0), (0, 0)), mode="reflect")
    assert_located(excinfo, "pad", "reflect", "(3, 0)", "axis 0", "size 3", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.pad(((0, 0), (1, 4)), mode="reflect")
    assert_located(excinfo, "pad", "reflect", "(1, 4)", "axis 1", "size 4", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        diff(np.ones(3)).pad(3, mode="reflect")
    assert_located(excinfo, "pad", "reflect", "size 3", file=FILE)
    with pytest.raises(ValueError) as excinfo:
        x.pad(1, mode="wrap")
    assert_located(excinfo, "pad", "'wrap'", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.pad(((1, -1), (0, 0)))
    assert_located(excinfo, "pad", "negative", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        x.pad(((1, 1), (0, 0), (2, 2)))
    assert_located(excinfo, "pad", "(3, 4)", file=FILE)


# ---- concatenate and stack ---------------------------------------------------------------------------

def make(kind, array):
    if kind == "diff":
        return diff(array)
    if kind == "var":
        return const(array)
    return array


MIXES = [("diff",), ("diff", "diff"), ("diff", "var"), ("array", "diff"), ("var", "diff", "array"),
         ("diff", "diff", "diff", "diff"), ("array", "var", "diff", "diff"), ("var", "var"), ("array", "var")]


def concat_pieces(n, axis, seed=0):
    """n 2-D arrays that differ in size only along axis."""
    sizes = [2, 3, 1, 4][:n]
    return [uniform((s, 3) if axis in (0, -2) else (3, s), seed=seed + i) for i, s in enumerate(sizes)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, -1, -2])
@pytest.mark.parametrize("mix", MIXES, ids="-".join)
def test_concatenate_forward(mix, axis, dtype):
    arrays = [a.astype(dtype) for a in concat_pieces(len(mix), axis)]
    out = nk.concatenate([make(k, a) for k, a in zip(mix, arrays)], axis=axis)
    want = np.concatenate(arrays, axis=axis)
    assert out.shape == want.shape and out.dtype == dtype and out.data.dtype == dtype
    np.testing.assert_array_equal(out.data, want)
    assert type(out) is (nk.VarDiff if "diff" in mix else nk.Var)


@pytest.mark.parametrize("axis", [0, 1, -1, -2])
@pytest.mark.parametrize("mix", [m for m in MIXES if "diff" in m], ids="-".join)
def test_concatenate_grad(mix, axis):
    arrays = concat_pieces(len(mix), axis, seed=30)
    wrt = [i for i, k in enumerate(mix) if k == "diff"]

    def fn(*leaves):
        return nk.concatenate([leaf if k != "array" else arrays[i] for i, (k, leaf) in enumerate(zip(mix, leaves))],
                              axis=axis)

    check_grad(fn, *arrays, wrt=wrt)


def test_concatenate_default_axis_and_tuple_of_operands():
    a, b = uniform((2, 3), seed=31), uniform((1, 3), seed=32)
    out = nk.concatenate((diff(a), diff(b)))
    np.testing.assert_array_equal(out.data, np.concatenate([a, b]))
    check_grad(lambda x, y: nk.concatenate((x, y)), a, b)


def stack_pieces(n, seed=0):
    return [uniform((3, 2), seed=seed + i) for i in range(n)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("mix", MIXES, ids="-".join)
def test_stack_forward(mix, axis, dtype):
    arrays = [a.astype(dtype) for a in stack_pieces(len(mix))]
    out = nk.stack([make(k, a) for k, a in zip(mix, arrays)], axis=axis)
    want = np.stack(arrays, axis=axis)
    assert out.shape == want.shape and out.dtype == dtype and out.data.dtype == dtype
    np.testing.assert_array_equal(out.data, want)
    assert type(out) is (nk.VarDiff if "diff" in mix else nk.Var)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -3])
@pytest.mark.parametrize("mix", [m for m in MIXES if "diff" in m], ids="-".join)
def test_stack_grad(mix, axis):
    arrays = stack_pieces(len(mix), seed=40)
    wrt = [i for i, k in enumerate(mix) if k == "diff"]

    def fn(*leaves):
        return nk.stack([leaf if k != "array" else arrays[i] for i, (k, leaf) in enumerate(zip(mix, leaves))],
                        axis=axis)

    check_grad(fn, *arrays, wrt=wrt)


def test_stack_of_0dim_values():
    a, b, c = np.array(1.5), np.array(-2.0), np.array(3.0)
    out = nk.stack([diff(a), diff(b), c])
    assert out.shape == (3,)
    np.testing.assert_array_equal(out.data, [1.5, -2.0, 3.0])
    check_grad(lambda x, y: nk.stack([x, y, c]) * nk.stack([y, x, x]), a, b)


def test_join_the_same_variable_twice_adds_its_gradients():
    x = diff(np.array([1.0, 2.0]))
    nk.concatenate([x, x * 2.0, x]).backward(np.arange(6.0))
    np.testing.assert_array_equal(x.grad, [0 + 2 * 2 + 4, 1 + 2 * 3 + 5])
    y = diff(np.array([1.0, 2.0]))
    nk.stack([y, y], axis=1).backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(y.grad, [3.0, 7.0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_join_non_contiguous(layout):
    a = non_contiguous(uniform((3, 4), seed=50), layout)
    b = non_contiguous(uniform((3, 4), seed=51), layout)
    np.testing.assert_array_equal(nk.concatenate([const(a), const(b)], axis=1).data, np.concatenate([a, b], axis=1))
    check_grad_views(lambda x, y: nk.concatenate([x, y, x], axis=1), a, b)
    check_grad_views(lambda x, y: nk.stack([y, x], axis=-1), a, b)


def test_join_mixed_precision():
    a32 = diff(uniform((2, 3), seed=52).astype(np.float32))
    b64 = diff(uniform((2, 3), seed=53))
    for out in (nk.concatenate([a32, b64]), nk.stack([a32, b64])):
        assert out.dtype == np.float64
        out.backward(np.ones(out.shape))
    assert a32.grad.dtype == np.float32 and b64.grad.dtype == np.float64
    np.testing.assert_array_equal(a32.grad, np.full((2, 3), 2.0))
    np.testing.assert_array_equal(b64.grad, np.full((2, 3), 2.0))


@FAST
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=3), n=st.integers(1, 3), data=st.data())
def test_join_property(shape, n, data):
    arrays = [uniform(shape, seed=i) for i in range(n)]
    stack_axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    cat_axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    np.testing.assert_array_equal(nk.stack([const(a) for a in arrays], axis=stack_axis).data,
                                  np.stack(arrays, axis=stack_axis))
    np.testing.assert_array_equal(nk.concatenate([const(a) for a in arrays], axis=cat_axis).data,
                                  np.concatenate(arrays, axis=cat_axis))
    check_grad(lambda *xs: nk.stack(list(xs), axis=stack_axis), *arrays)
    check_grad(lambda *xs: nk.concatenate(list(xs), axis=cat_axis), *arrays)


def test_join_errors():
    a, b = diff(np.ones((2, 3))), diff(np.ones((2, 4)))
    with pytest.raises(nk.ShapeError) as excinfo:
        nk.concatenate([a, b], axis=0)
    assert isinstance(excinfo.value, ValueError)
    assert_located(excinfo, "concatenate", "(2, 3)", "(2, 4)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        nk.concatenate([a, np.ones(3)])
    assert_located(excinfo, "concatenate", "(2, 3)", "(3,)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        nk.stack([a, b])
    assert_located(excinfo, "stack", "(2, 3)", "(2, 4)", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        nk.concatenate([a, a], axis=2)
    assert_located(excinfo, "concatenate", "axis 2", file=FILE)
    with pytest.raises(nk.ShapeError) as excinfo:
        nk.stack([a, a], axis=-4)
    assert_located(excinfo, "stack", "axis -4", file=FILE)
    with pytest.raises(ValueError) as excinfo:
        nk.concatenate([])
    assert_located(excinfo, "concatenate", file=FILE)
    with pytest.raises(ValueError) as excinfo:
        nk.stack([])
    assert_located(excinfo, "stack", file=FILE)


def test_index_with_an_empty_list_gives_an_empty_selection_as_numpy_does():
    x = nk.from_ndarray(np.arange(6.0).reshape(3, 2)).requires_grad()
    y = x[[]]
    assert y.shape == (0, 2) == np.arange(6.0).reshape(3, 2)[[]].shape
    (y.sum() + x.sum()).backward()
    np.testing.assert_array_equal(x.grad, np.ones((3, 2)))
