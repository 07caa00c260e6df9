import numpy as np
import pytest

import neuronika
from neuronika import Var, VarDiff


@pytest.mark.parametrize("make, expected", [
    (lambda: neuronika.zeros((2, 3)), np.zeros((2, 3))),
    (lambda: neuronika.zeros(4), np.zeros(4)),
    (lambda: neuronika.ones((2, 1)), np.ones((2, 1))),
    (lambda: neuronika.full((2, 2), 7.5), np.full((2, 2), 7.5)),
    (lambda: neuronika.eye(3), np.eye(3)),
    (lambda: neuronika.arange(0, 5, 2), np.array([0, 2, 4])),
    (lambda: neuronika.arange(4), np.array([0, 1, 2, 3])),
    (lambda: neuronika.linspace(0, 1, 5), np.array([0, 0.25, 0.5, 0.75, 1.0])),
    (lambda: neuronika.logspace(0, 2, 3), np.array([1.0, 10.0, 100.0])),
    (lambda: neuronika.logspace(0, 3, 4, base=2), np.array([1.0, 2.0, 4.0, 8.0])),
    (lambda: neuronika.geomspace(1, 1000, 4), np.array([1.0, 10.0, 100.0, 1000.0])),
    (lambda: neuronika.geomspace(-1, -8, 4), np.array([-1.0, -2.0, -4.0, -8.0])),
])
def test_constructors_give_float32_leaves(make, expected):
    v = make()
    assert type(v) is Var and v.is_leaf
    assert v.dtype == np.float32
    np.testing.assert_allclose(v.data, expected, rtol=1e-6)


def test_dtype_argument_and_float64_everywhere():
    for make in (lambda d: neuronika.zeros(3, dtype=d), lambda d: neuronika.rand(3, dtype=d),
                 lambda d: neuronika.randn(3, dtype=d), lambda d: neuronika.eye(2, dtype=d),
                 lambda d: neuronika.linspace(0, 1, 3, dtype=d)):
        assert make(np.float64).dtype == np.float64


def test_arange_excludes_stop_and_linspace_includes_it():
    assert neuronika.arange(0, 1, 0.25).data[-1] == 0.75
    assert neuronika.linspace(0, 1, 3).data[-1] == 1.0


@pytest.mark.parametrize("start, stop", [(0, 10), (1, 0), (-1, 5), (2, -3)])
def test_geomspace_rejects_zero_or_sign_change(start, stop):
    with pytest.raises(ValueError, match="same sign"):
        neuronika.geomspace(start, stop, 4)


def test_rand_in_unit_interval_and_randn_moments():
    neuronika.manual_seed(1)
    u = neuronika.rand(10000).data
    assert u.min() >= 0.0 and u.max() < 1.0
    n = neuronika.randn(20000).data
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05


def test_manual_seed_makes_draws_reproducible():
    neuronika.manual_seed(42)
    a, b = neuronika.rand((3, 3)).data, neuronika.randn(4).data
    neuronika.manual_seed(42)
    np.testing.assert_array_equal(a, neuronika.rand((3, 3)).data)
    np.testing.assert_array_equal(b, neuronika.randn(4).data)
    neuronika.manual_seed(43)
    assert not np.array_equal(a, neuronika.rand((3, 3)).data)


def test_from_ndarray_keeps_float_dtype_and_integer_data():
    f64 = neuronika.from_ndarray(np.arange(3.0))
    assert f64.dtype == np.float64
    labels = neuronika.from_ndarray(np.array([0, 2, 1]))
    assert labels.dtype.kind == "i"
    converted = neuronika.from_ndarray(np.array([1, 2]), dtype=np.float32)
    assert converted.dtype == np.float32


def test_from_ndarray_shares_the_array():
    array = np.zeros(3, dtype=np.float32)
    v = neuronika.from_ndarray(array)
    array[0] = 5
    assert v.data[0] == 5


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([object(), 1], dtype=object)])
def test_from_ndarray_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="from_ndarray"):
        neuronika.from_ndarray(bad)


def test_requires_grad_gives_a_vardiff_over_the_same_data():
    x = neuronika.ones(3)
    w = x.requires_grad()
    assert type(w) is VarDiff and w.is_leaf
    assert w.data is x.data


def test_requires_grad_refused_for_integer_data_and_non_leaves():
    with pytest.raises(neuronika.GradientError, match="int"):
        neuronika.from_ndarray(np.array([1, 2])).requires_grad()
    with pytest.raises(neuronika.GradientError, match="only a leaf"):
        (neuronika.ones(2) + 1).requires_grad()


def test_concatenate_and_stack_mix_var_vardiff_and_arrays():
    a = neuronika.ones((2, 2))
    b = neuronika.zeros((1, 2)).requires_grad()
    c = np.full((3, 2), 2.0, dtype=np.float32)
    joined = neuronika.concatenate([a, b, c], axis=0)
    assert type(joined) is VarDiff and joined.shape == (6, 2)
    np.testing.assert_array_equal(joined.data, np.concatenate([a.data, b.data, c]))
    stacked = neuronika.stack([a, a, a], axis=2)
    assert type(stacked) is Var and stacked.shape == (2, 2, 3)
    joined.sum().backward()
    np.testing.assert_array_equal(b.grad, np.ones((1, 2)))
