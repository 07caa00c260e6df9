"""Values a user passes to the functional face: Python floats, ints, nested lists."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
from neuronika.errors import ArgnumsError


def test_gradient_with_respect_to_a_python_float_is_a_python_float():
    g = neuronika.grad(lambda x: x * x)(3.0)
    assert type(g) is float and g == 6.0


def test_value_and_grad_of_a_float_argument():
    value, g = neuronika.value_and_grad(lambda x: x.sum())(3.5)
    assert float(value) == 3.5 and g == 1.0 and type(g) is float


def test_a_float_argument_used_by_array_methods():
    g = neuronika.grad(lambda x, s: (x * s.sum() * s.reshape(1)).sum(), argnums=(0, 1))(np.ones(2), 2.0)
    np.testing.assert_allclose(g[0], [4.0, 4.0])
    assert g[1] == 8.0


def test_nested_lists_of_floats_are_differentiated_element_by_element():
    g = neuronika.grad(lambda xs: xs[0] * xs[1][0] + xs[1][1])([2.0, [3.0, 4.0]])
    assert g == [3.0, [2.0, 1.0]]


def test_a_nested_list_is_data_for_neuronika_numpy():
    import neuronika.numpy as nnp
    w = neuronika.from_ndarray(np.ones(2)).requires_grad()
    out = nnp.sum(nnp.multiply(w, [[1.0, 2.0], [3.0, 4.0]]))
    out.backward()
    np.testing.assert_array_equal(w.grad, [4.0, 6.0])


@pytest.mark.parametrize("argument", [3, True, np.int64(2), np.array([1, 2]), [1.0, 2]],
                         ids=["int", "bool", "numpy-int", "int-array", "list-with-int"])
def test_differentiating_with_respect_to_an_integer_raises_naming_argnums(argument):
    with pytest.raises(TypeError, match="argnums") as info:
        neuronika.grad(lambda x: neuronika.numpy.sum(neuronika.numpy.asarray(x) * 1.0))(argument)
    assert isinstance(info.value, ArgnumsError)


def test_an_integer_argument_outside_argnums_is_a_value():
    f = neuronika.grad(lambda x, n: (x ** n).sum())
    np.testing.assert_allclose(f(np.array([2.0]), 3), [12.0])
    np.testing.assert_allclose(f(np.array([2.0]), 4), [32.0])
    assert f.stats.traced == 1                       # a new value, the same trace


def test_an_integer_argument_marked_static_is_a_python_int():
    f = neuronika.grad(lambda x, n: (x ** n).sum() if isinstance(n, int) else None, static_argnums=1)
    np.testing.assert_allclose(f(np.array([2.0]), 3), [12.0])
    np.testing.assert_allclose(f(np.array([2.0]), 4), [32.0])
    assert f.stats.traced == 2                       # a new static value, a new trace


def test_differentiating_an_int_inside_a_container_raises_naming_argnums():
    with pytest.raises(ArgnumsError, match="argnums selects argument 0, which holds the int 2"):
        neuronika.grad(lambda p: p["w"] * p["n"])({"w": 1.5, "n": 2})


def test_second_derivative_of_a_float_function():
    d2 = neuronika.grad(neuronika.grad(lambda x: x ** 3))(2.0)
    assert d2 == 12.0


def test_variable_behaves_like_an_ndarray():
    v = neuronika.from_ndarray(np.arange(6.0).reshape(2, 3))
    assert len(v) == 2 and v.ndim == 2 and v.size == 6 and v.dtype == np.float64
    rows = list(v)
    assert len(rows) == 2 and rows[1].shape == (3,)
    assert format(v.sum(), ".2f") == "15.00"
    assert v.T.shape == (3, 2) and v.ravel().shape == (6,) and v.flatten().shape == (6,)
    assert v.reshape(3, 2).shape == (3, 2) and v.reshape((3, 2)).shape == (3, 2)
    assert v.swapaxes(0, 1).shape == (3, 2) and v.copy() is v
    assert v.astype(np.float32).dtype == np.float32
    with pytest.raises(TypeError, match="format"):
        format(v, ".2f")
