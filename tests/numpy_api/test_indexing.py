"""Indexing: ``v[key]`` (basic, advanced, masks, None, ``...`` and their mixtures), ``take``,
``take_along_axis`` and the index update ``v.at[key]``: values against NumPy, NumPy's
dispatch, gradients of first and second order (integer index arrays passed as arguments
are variables, traced with the function), closed forms for repeated indices, errors."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
import neuronika.testing
from neuronika.errors import ShapeError

from .cases import Case, distinct, uniform

X = uniform((2, 3, 4))
I3 = np.array([2, 0, -1, 0])                       # repeated and negative, along an axis of 3
I4 = np.array([[3, 0], [-1, 3]])                   # a 2-d index array along an axis of 4
I2 = np.array([1, 0, 1])                            # repeated, along an axis of 2
MASK = np.array([[True, False, True], [False, False, True]])


def getitem(key):
    return lambda np_, x: x[key]


CASES = [
    Case("getitem", getitem((1, slice(None), slice(None, None, 2))), X, dispatch=False, id="getitem-basic"),
    Case("getitem", getitem((-1, slice(None, None, -1), -2)), X, dispatch=False, id="getitem-negative"),
    Case("getitem", getitem((None, Ellipsis, 1)), X, dispatch=False, id="getitem-none-ellipsis"),
    Case("getitem", getitem(()), uniform(()), dispatch=False, id="getitem-0d"),
    Case("getitem", getitem(None), uniform(()), dispatch=False, id="getitem-0d-none"),
    Case("getitem", getitem(np.array([0, 2, 2, 1])), uniform((3, 2)), dispatch=False, id="getitem-repeated"),
    Case("getitem", getitem([-1, 0, -1]), uniform((3, 2)), dispatch=False, id="getitem-list-negative"),
    Case("getitem", getitem(np.array([[True, False], [False, False], [True, True]])), uniform((3, 2)),
         dispatch=False, id="getitem-mask"),
    Case("getitem", getitem((MASK, slice(1, None))), X, dispatch=False,
         id="getitem-mask-slice"),
    Case("getitem", getitem((slice(None), np.array([True, False, True]), I4)), X, dispatch=False,
         id="getitem-mask-and-array"),
    Case("getitem", getitem((I2, slice(None), I4[1, :1])), X, dispatch=False, id="getitem-separated"),
    Case("getitem", getitem((slice(None), I3, I4[0, :1])), X, dispatch=False, id="getitem-adjacent"),
    Case("getitem", getitem((1, slice(None), I4)), X, dispatch=False, id="getitem-int-slice-array"),
    Case("getitem", getitem((Ellipsis, I4)), X, dispatch=False, id="getitem-ellipsis-array"),
    Case("getitem", getitem((None, I3[:, None], slice(1, 3), np.array([0, 3, 3]))), uniform((3, 3, 4)),
         dispatch=False, id="getitem-broadcast-none"),
    Case("getitem", getitem((slice(None), [])), uniform((2, 3)), dispatch=False, id="getitem-empty"),
    Case("getitem", getitem((slice(None), np.array([0, 2, 0]))), uniform((0, 3)), dispatch=False,
         id="getitem-zero-size"),
    # the gradient reaching x[key] broadcasts (a sum's): its second order sums it back
    Case("getitem", lambda np_, x: x[0, 1:].sum() * x, uniform((2, 3)), dispatch=False,
         id="getitem-broadcast-gradient"),
    Case("getitem", lambda np_, x: x[:, :0].sum() * x, uniform((2, 3)), dispatch=False,
         id="getitem-empty-broadcast-gradient"),
    # integer index arrays that are variables (arguments of the traced function)
    Case("getitem", lambda np_, x, i: x[i], uniform((3, 2)), I3, dispatch=False, id="getitem-var"),
    Case("getitem", lambda np_, x, i, j: x[i, :, j[:, :1]], X, I2, I4, dispatch=False, id="getitem-var-separated"),
    Case("getitem", lambda np_, x, i, j: x[:, i[:, None], j[0]], X, I3, I4, dispatch=False,
         id="getitem-var-broadcast"),
    Case("getitem", lambda np_, x, i: x[1, i, None], uniform((2, 4)), I4, dispatch=False, id="getitem-var-2d"),
    Case("getitem", lambda np_, x, i: x[i][i], uniform((5,)), np.array([0, 2, 2, 1]), dispatch=False,
         id="getitem-var-twice"),

    Case("take", lambda np_, x: np_.take(x, [5, 1, 5, -1]), X),
    Case("take", lambda np_, x: np_.take(x, I3, axis=1), X, id="take-axis"),
    Case("take", lambda np_, x: np_.take(x, I4, axis=-1), X, id="take-2d-indices"),
    Case("take", lambda np_, x: np_.take(x, 2, axis=0), uniform((3, 2)), id="take-int"),
    Case("take", lambda np_, x: np_.take(x, [7, -5, 1], axis=0, mode="wrap"), uniform((3, 2)), id="take-wrap"),
    Case("take", lambda np_, x: np_.take(x, [7, -5, 1], axis=1, mode="clip"), uniform((2, 3)), id="take-clip"),
    Case("take", lambda np_, x: np_.take(x, [], axis=0), uniform((3, 2)), id="take-empty"),
    Case("take", lambda np_, x: np_.take(x, [0, 0], axis=1), uniform((0, 3)), id="take-zero-size"),
    Case("take", lambda np_, x, i: np_.take(x, i, axis=1), X, I3, id="take-var"),
    Case("take", lambda np_, x, i: np_.take(x, i, mode="wrap"), uniform((2, 3)), np.array([[7, -1], [2, 6]]),
         id="take-var-wrap"),
    Case("take", lambda np_, x, i: np_.take(x, i, axis=0, mode="clip"), uniform((3, 2)), np.array([7, -1, 1]),
         id="take-var-clip"),
    Case("take", lambda np_, x: x.take([1, 1], axis=0), uniform((3, 2)), dispatch=False, id="take-method"),

    Case("take_along_axis", lambda np_, x: np_.take_along_axis(x, np.argsort(X, axis=1), axis=1), X),
    Case("take_along_axis", lambda np_, x: np_.take_along_axis(x, np.array([[[0, 3, 3]]]), axis=-1), X,
         id="take_along_axis-broadcast"),
    Case("take_along_axis", lambda np_, x: np_.take_along_axis(x, np.array([[-1, 0, -1]]), axis=0),
         uniform((3, 3)), id="take_along_axis-repeated"),
    Case("take_along_axis", lambda np_, x: np_.take_along_axis(x, np.array([5, 0, 5]), axis=None),
         uniform((2, 3)), id="take_along_axis-flat"),
    Case("take_along_axis", lambda np_, x: np_.take_along_axis(x, np.zeros((0, 1), np.intp), axis=0),
         uniform((3, 2)), id="take_along_axis-zero-size"),
    Case("take_along_axis", lambda np_, x, i: np_.take_along_axis(x, i, axis=1), uniform((2, 3)),
         np.array([[2, 2], [0, 1]]), id="take_along_axis-var"),

    Case("select", lambda np_, x, y: np_.select([X[0] > 0.5, X[0] < -1.0], [x, y]), uniform((3, 4)),
         uniform((4,), seed=1)),
    Case("select", lambda np_, x: np_.select([X[0] > 0.5], [x], default=2.5), uniform((3, 4), seed=2),
         id="select-default"),
    Case("select", lambda np_, x, y: np_.select([x > 0, y < 0], [x * y, y], default=x), uniform((2, 3)),
         uniform((2, 3), seed=3), id="select-variable-conditions"),
    Case("choose", lambda np_, x, y: np_.choose(np.array([[0, 1, 2], [2, 1, 0]]), [x, y, 7.0]), uniform((2, 3)),
         uniform((3,), seed=1)),
    Case("choose", lambda np_, x, y: np_.choose(np.array([3, -1, 1]), [x, y], mode="wrap"), uniform((3,)),
         uniform((3,), seed=1), id="choose-wrap"),
    Case("choose", lambda np_, x, y: np_.choose(np.array([3, -1, 1]), [x, y], mode="clip"), uniform((3,)),
         uniform((3,), seed=1), id="choose-clip"),
    Case("choose", lambda np_, i, x: np_.choose(i, [x]), np.array([[0], [0]]), uniform((3,)), id="choose-one"),
    Case("compress", lambda np_, x: np_.compress([True, False, True], x, axis=1), uniform((2, 3))),
    Case("compress", lambda np_, x: np_.compress([0, 1, 1], x), uniform((2, 3)), id="compress-flat"),
    Case("extract", lambda np_, x: np_.extract(X[0] > 0, x), uniform((3, 4))),
]


# ---- v.at[key] ---------------------------------------------------------------------------------------------

_UFUNCS = {"add": np.add, "subtract": np.subtract, "multiply": np.multiply, "min": np.minimum,
           "max": np.maximum}


def at(key, mode):
    """``x.at[key].<mode>(u)`` on a variable; NumPy's in-place equivalent on an array."""
    def call(np_, x, u=None, *indices):
        k = key(*indices) if callable(key) else key
        if np_ is np:
            y = x.copy()
            if mode == "get":
                return y[k]
            if mode == "set":
                y[k] = u
            else:
                _UFUNCS[mode].at(y, k, u)
            return y
        place = x.at[k]
        return place.get() if mode == "get" else getattr(place, mode)(u)
    return call


def _at_cases():
    out = []
    repeated = np.array([0, 2, 0, 0])
    keys = [            # on a value of shape (3, 3, 2): label, key, the update's shape
        ("repeated", repeated, (4, 1, 2)),
        ("broadcast", repeated, ()),
        ("basic", (slice(1, 3), 1), (2,)),
        ("int", (1, -1, 0), ()),
        ("separated", (repeated[:2], slice(None), np.array([[1], [1]])), (2, 2, 3)),
        ("adjacent", (slice(None), np.array([0, 2, 0]), np.array([1, 1, 1])), (3,)),
        ("mask", np.array([[True, False, True], [False, False, True], [True, False, False]]), (4, 1)),
        ("2d-index", (slice(None), np.array([[2, 0], [2, 2]])), (2, 1, 2)),
    ]
    for mode in ("set", "add", "subtract", "multiply", "min", "max"):
        for label, key, ushape in keys:
            x = distinct((3, 3, 2), seed=3)
            u = distinct(ushape, seed=4, gap=0.41) + 0.05 if ushape else np.array(0.17)
            out.append(Case("at", at(key, mode), x, u, dispatch=False, id=f"at-{mode}-{label}"))
    x = distinct((3, 3), seed=5)
    out.append(Case("at", at(np.array([1, 0, 1]), "get"), x, dispatch=False, id="at-get"))
    # index arrays passed as arguments: variables, traced with the function
    for mode in ("set", "add", "multiply", "max"):
        out.append(Case("at", at(lambda i: (i, slice(1, None)), mode), x, distinct((4, 2), seed=7, gap=0.37),
                        np.array([2, 0, 2, 2]), dispatch=False, id=f"at-{mode}-traced-index"))
    # multiply with zeros among repeated writes: the product of the others, no division
    out.append(Case("at", at(repeated, "multiply"), x, np.array([[0.0, 1.5, -2.0], [0.7, 0.0, 3.0],
                                                                   [0.0, 0.0, 1.2], [2.0, -1.0, 0.5]]),
                    dispatch=False, id="at-multiply-zeros"))
    out.append(Case("at", at((slice(None), [0, 0, 1]), "add"), uniform((0, 2)), uniform((0, 3), seed=1),
                    dispatch=False, id="at-add-zero-size"))
    return out


CASES += _at_cases()


# ---- closed forms for repeated indices ------------------------------------------------------------------------

def diff(values):
    return neuronika.from_ndarray(np.asarray(values, dtype=np.float64)).requires_grad()


def grads(y, seed, *leaves):
    (y * np.asarray(seed)).sum().backward()
    return [leaf.grad for leaf in leaves]


SEED = np.array([1.0, 10.0, 100.0, 1000.0])


def test_set_with_repeated_indices_the_last_write_wins_and_alone_gets_the_gradient():
    x, u = diff([1.0, 2.0, 3.0, 4.0]), diff([5.0, 6.0, 7.0, 8.0])
    y = x.at[np.array([1, 3, 1, 1])].set(u)
    np.testing.assert_array_equal(y.data, [1.0, 8.0, 3.0, 6.0])
    gx, gu = grads(y, SEED, x, u)
    np.testing.assert_array_equal(gx, [1.0, 0.0, 100.0, 0.0])
    np.testing.assert_array_equal(gu, [0.0, 1000.0, 0.0, 10.0])


def test_set_with_a_broadcast_update_counts_the_winning_write_once():
    x, u = diff([1.0, 2.0, 3.0]), diff(5.0)
    y = x.at[np.array([0, 0, 2])].set(u)
    gx, gu = grads(y, SEED[:3], x, u)
    np.testing.assert_array_equal(gx, [0.0, 10.0, 0.0])
    assert gu == 101.0


def test_add_with_repeated_indices_accumulates():
    x, u = diff([1.0, 2.0, 3.0]), diff([5.0, 6.0, 7.0])
    y = x.at[np.array([2, 2, 0])].add(u)
    np.testing.assert_array_equal(y.data, [8.0, 2.0, 14.0])
    gx, gu = grads(y, SEED[:3], x, u)
    np.testing.assert_array_equal(gx, SEED[:3])
    np.testing.assert_array_equal(gu, [100.0, 100.0, 1.0])


def test_multiply_with_repeated_indices_and_zeros():
    x, u = diff([2.0, 3.0]), diff([0.0, 5.0, 7.0, 0.0, 4.0])
    y = x.at[np.array([0, 0, 0, 1, 1])].multiply(u)
    np.testing.assert_array_equal(y.data, [0.0, 0.0])
    gx, gu = grads(y, SEED[:2], x, u)
    np.testing.assert_array_equal(gx, [0.0, 0.0])
    # d/du_j = seed * x * (the product of the other writes to the same place)
    np.testing.assert_array_equal(gu, [1 * 2 * 35.0, 0.0, 0.0, 10 * 3 * 4.0, 0.0])


def test_multiply_second_derivative_with_two_zeros():
    # f(u) = x * u0 * u1 * u2 at one place: d2f/du0 du1 = x * u2, also where u0 = u1 = 0
    hessian = neuronika.hessian(lambda u: neuronika.from_ndarray(np.array([3.0])).at[np.zeros(3, np.intp)]
                                .multiply(u).sum())(np.array([0.0, 0.0, 2.0]))
    np.testing.assert_allclose(hessian, [[0.0, 6.0, 0.0], [6.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode", ["min", "max"])
def test_extremes_share_the_gradient_among_ties(mode):
    x, u = diff([3.0, 5.0]), diff([3.0, 3.0, 5.0])
    y = getattr(x.at[np.array([0, 0, 1])], mode)(u)
    np.testing.assert_array_equal(y.data, [3.0, 5.0])
    gx, gu = grads(y, [3.0, 10.0], x, u)
    np.testing.assert_allclose(gx, [1.0, 5.0])
    np.testing.assert_allclose(gu, [1.0, 1.0, 5.0])


def test_max_gives_the_gradient_to_the_winning_write():
    x, u = diff([3.0, 5.0]), diff([4.0, 9.0, 1.0])
    y = x.at[np.array([0, 0, 1])].max(u)
    np.testing.assert_array_equal(y.data, [9.0, 5.0])
    gx, gu = grads(y, [3.0, 10.0], x, u)
    np.testing.assert_array_equal(gx, [0.0, 10.0])
    np.testing.assert_array_equal(gu, [0.0, 3.0, 0.0])


def test_at_returns_a_new_value_and_leaves_the_old_one():
    x = neuronika.from_ndarray(np.zeros(3))
    y = x.at[1].set(2.0)
    np.testing.assert_array_equal(y.data, [0.0, 2.0, 0.0])
    np.testing.assert_array_equal(x.data, [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(x.at[1:].get().data, [0.0, 0.0])


def test_at_inside_grad_with_a_loop_over_positions_reuses_one_program():
    def f(x):
        y = x
        for i in range(3):
            y = y.at[i].multiply(y[(i + 1) % 3])
        return y.sum()

    x = np.array([1.0, 2.0, 3.0])
    g = neuronika.grad(f)(x)
    # y0 = x0 x1, y1 = x1 x2, y2 = x2 * y0 = x0 x1 x2: sum' = (x1 + x1 x2, x0 + x2 + x0 x2, x1 + x0 x1)
    np.testing.assert_allclose(g, [2.0 + 6.0, 1.0 + 3.0 + 3.0, 2.0 + 2.0])


def test_at_keeps_the_dtype_of_the_value():
    x = neuronika.from_ndarray(np.zeros(3, np.float32))
    assert x.at[0].set(np.float64(1.5)).dtype == np.float32
    assert x.at[0].add(np.array(2)).dtype == np.float32
    n = neuronika.from_ndarray(np.zeros(3, np.int64))
    np.testing.assert_array_equal(n.at[0].set(2.7).data, [2, 0, 0])
    with pytest.raises(TypeError, match=r"at\[...\]\.add.*float64.*int64"):
        n.at[0].add(np.array(1.5))


def test_at_errors_name_the_shapes():
    x = neuronika.from_ndarray(np.zeros((4, 3)))
    with pytest.raises(ShapeError, match=r"\(3,\).*\(4, 2\).*\(4, 3\)"):
        x.at[:, :2].set(np.ones(3))
    with pytest.raises(IndexError, match=r"index 4 is out of bounds.*shape \(4, 3\)"):
        x.at[np.array([0, 4])].add(1.0)
    with pytest.raises(TypeError, match="mode='drop'"):
        x.at[0].set(1.0, mode="drop")


# ---- errors -------------------------------------------------------------------------------------------------

def test_out_of_range_indices_raise_index_errors_naming_the_shape():
    x = neuronika.from_ndarray(np.zeros((4, 3))).requires_grad()
    for call in (lambda: x[5], lambda: x[:, np.array([0, 3])], lambda: nnp.take(x, [12]),
                 lambda: nnp.take(x, [-5], axis=0), lambda: np.take(x, [3], axis=1),
                 lambda: nnp.take_along_axis(x, np.array([[4]]), axis=0)):
        with pytest.raises(IndexError, match=r"out of bounds.*shape \(4, 3\)") as info:
            call()
        assert isinstance(info.value, ShapeError)


def test_take_checks_its_arguments_as_numpy_does():
    x = neuronika.from_ndarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="clipmode"):
        nnp.take(x, [0], mode="nearest")
    with pytest.raises(IndexError, match="integers"):
        nnp.take(x, [0.5])
    with pytest.raises(IndexError, match="empty"):
        nnp.take(neuronika.from_ndarray(np.zeros((2, 0))), [1], axis=1, mode="wrap")
    with pytest.raises(ValueError, match="same number of dimensions"):
        nnp.take_along_axis(x, np.zeros(2, np.intp), axis=0)
    with pytest.raises(ValueError, match="single dimension"):
        nnp.take_along_axis(x, np.zeros((1, 1), np.intp), axis=None)


@pytest.mark.parametrize("write", [
    lambda v: np.put(v, [0], 1.0), lambda v: np.put_along_axis(v, np.array([0]), 1.0, axis=0),
    lambda v: np.place(v, np.array([True, False, True]), [1.0]), lambda v: np.putmask(v, v.data > 0, 1.0),
    lambda v: np.copyto(v, np.ones(3)), lambda v: np.fill_diagonal(v.reshape(1, 3), 1.0),
], ids=["put", "put_along_axis", "place", "putmask", "copyto", "fill_diagonal"])
def test_numpy_writers_refuse_to_write_into_a_variable(write):
    v = neuronika.from_ndarray(np.zeros(3))
    with pytest.raises(TypeError, match=r"immutable"):
        write(v)
    np.testing.assert_array_equal(v.data, np.zeros(3))


def test_numpy_writers_still_write_into_arrays_from_variables():
    a = np.zeros(3)
    np.copyto(a, neuronika.from_ndarray(np.ones(3)))
    np.testing.assert_array_equal(a, np.ones(3))
    with pytest.raises(TypeError, match="needs one"):
        np.copyto(a, neuronika.from_ndarray(np.ones(3)).requires_grad())


def test_choose_and_compress_check_their_arguments():
    x = neuronika.from_ndarray(np.zeros(3)).requires_grad()
    with pytest.raises(ValueError, match="invalid entry in choice array"):
        nnp.choose(np.array([0, 2, 1]), [x, x])
    with pytest.raises(TypeError, match="should be boolean"):
        nnp.select([np.array([1, 0, 1])], [x])
    with pytest.raises(IndexError, match="out of bounds"):
        nnp.compress([True, False, False, True], x)


# ---- random keys against NumPy ----------------------------------------------------------------------------------

def _random_key(rng, shape):
    """A key mixing ints, slices, integer arrays (repeats likely), None and ``...``."""
    key, axis = [], 0
    arrays = rng.integers(1, 3) if rng.random() < 0.8 else 0
    index_shape = tuple(rng.integers(1, 4, size=rng.integers(1, 3)))
    while axis < len(shape):
        size = shape[axis]
        roll = rng.random()
        if arrays and roll < 0.45:
            key.append(rng.integers(-size, size, size=index_shape))
            arrays -= 1
        elif roll < 0.6:
            key.append(int(rng.integers(-size, size)))
        elif roll < 0.7:
            key.append(None)
            continue
        else:
            start, stop = sorted(rng.integers(-size - 1, size + 1, size=2))
            key.append(slice(int(start), int(stop), int(rng.choice([1, 2, -1]))))
        axis += 1
    if rng.random() < 0.3:
        cut = rng.integers(0, len(key) + 1)
        key = key[:cut] + [Ellipsis]
    return tuple(key)


@pytest.mark.parametrize("seed", range(40))
def test_random_keys_read_and_update_as_numpy_does(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 4, size=rng.integers(1, 4)))
    key = _random_key(rng, shape)
    x = distinct(shape, seed=seed)
    selected = x[key]
    mode = ["set", "add", "multiply", "min", "max"][seed % 5]
    u = distinct(selected.shape, seed=seed + 100, gap=0.37) + 0.05
    want = x.copy()
    if mode == "set":
        want[key] = u
    else:
        _UFUNCS[mode].at(want, key, u)
    v = neuronika.from_ndarray(x)
    np.testing.assert_array_equal(v[key].data, selected)
    np.testing.assert_array_equal(getattr(v.at[key], mode)(u).data, want)
    neuronika.testing.check_grads(lambda a, b: getattr(a.at[key], mode)(b) * a[key].sum(), x, u)


def test_assignment_into_a_variable_points_to_at():
    v = neuronika.from_ndarray(np.zeros(3))
    with pytest.raises(TypeError, match=r"\.at\[idx\]\.set"):
        v[0] = 1.0


# ---- basic keys worked out in Python (ops/shape.basic_shape, _indexing._sliced) --------------------------------

_BASIC = [None, Ellipsis, 0, 1, -1, 2, -3, 5, slice(None), slice(1, None), slice(None, -1), slice(None, None, -1),
          slice(5, 1, -2), slice(-10, 10, 3), slice(2, 2), np.int64(1)]


@pytest.mark.parametrize("shape", [(), (0,), (3,), (4, 5), (2, 0, 3), (3, 4, 5, 2)])
def test_basic_shapes_agree_with_numpy_or_defer_to_it(shape):
    """basic_shape gives NumPy's shape wherever it answers, and answers None wherever NumPy
    raises (NumPy then says what is wrong); a key of slices, None and ``...`` indexes a
    variable by the short path (no index inputs) with NumPy's values and gradients."""
    from neuronika.ops.shape import basic_shape
    rng = np.random.default_rng(len(shape))
    answered = 0
    for _ in range(400):
        key = tuple(_BASIC[k] for k in rng.integers(0, len(_BASIC), size=rng.integers(0, 5)))
        dummy = np.broadcast_to(np.empty((), np.int8), shape)
        try:
            want = dummy[key].shape
        except IndexError:
            want = None
        got = basic_shape(shape, key)
        assert got is None or got == want, key
        assert want is not None or got is None, key
        answered += got is not None
        if all(k is None or k is Ellipsis or isinstance(k, slice) for k in key) and want is not None:
            x = distinct(shape, seed=3) if shape else np.float64(1.5)
            v = neuronika.from_ndarray(np.asarray(x))
            got_v = v[key]
            assert len(got_v._node.inputs) == 1             # the layout alone: no index inputs
            np.testing.assert_array_equal(got_v.data, np.asarray(x)[key])
    assert answered > 50


def test_a_slice_key_out_of_the_short_path_still_names_the_problem():
    v = neuronika.from_ndarray(np.zeros((2, 3)))
    with pytest.raises(IndexError, match="too many indices"):
        v[:, :, :]
    with pytest.raises(ValueError, match="slice step cannot be zero"):
        v[::0]
    np.testing.assert_array_equal(v[np.int64(0):2, ...].data, np.zeros((2, 3)))
    neuronika.testing.check_grads(lambda a: (a[:, 1:] * a[:, :-1]).sum() + a[None, ::-1].sum(),
                                  distinct((2, 3), seed=1))
