"""NumPy's own functions on variables: they build neuronika graphs, or refuse loudly.
No NumPy call on a variable may lose a gradient silently."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp

FILE = "test_dispatch.py"


def diff(values):
    return neuronika.from_ndarray(np.asarray(values, dtype=np.float64)).requires_grad()


# ---- functions with a gradient here: the same graph as neuronika.numpy ------------------------

def test_numpy_functions_on_a_variable_differentiate():
    w = diff([0.5, -1.0, 2.0])
    loss = np.sum(np.tanh(w) * np.array([1.0, 2.0, 3.0])) + np.mean(w ** 2)
    assert isinstance(loss, neuronika.VarDiff)
    loss.backward()
    want = (1 - np.tanh(w.data) ** 2) * np.array([1.0, 2.0, 3.0]) + 2 * w.data / 3
    np.testing.assert_allclose(w.grad, want, rtol=1e-14)


@pytest.mark.parametrize("expression", [
    lambda a, v: a + v, lambda a, v: a - v, lambda a, v: a * v, lambda a, v: a / v,
    lambda a, v: a @ v, lambda a, v: np.multiply(a, v), lambda a, v: np.float64(2.0) * v,
])
def test_an_array_on_the_left_still_builds_a_graph(expression):
    v = diff(np.eye(2) + 1.0)
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    out = expression(a, v)
    assert isinstance(out, neuronika.VarDiff)
    np.sum(out).backward()
    assert np.any(v.grad != 0)


def test_ufunc_methods_reduce_and_outer():
    v = diff([1.0, 2.0, 3.0])
    np.add.reduce(v).backward()
    np.testing.assert_array_equal(v.grad, [1.0, 1.0, 1.0])
    assert np.multiply.outer(v, v).shape == (3, 3)


def test_ufunc_at_points_to_the_at_property():
    with pytest.raises(TypeError, match=r"\.at\[idx\]"):
        np.add.at(diff([1.0, 2.0]), [0], 1.0)


# ---- functions with no gradient here -------------------------------------------------------------

NO_GRADIENT = [
    ("numpy.fft.fft", lambda v: np.fft.fft(v)),
    ("numpy.histogram", lambda v: np.histogram(v)),
    ("numpy.unique", lambda v: np.unique(v)),
    ("numpy.interp", lambda v: np.interp(v, [0.0, 1.0], [0.0, 2.0])),
    ("numpy.convolve", lambda v: np.convolve(v, v)),
]


@pytest.mark.parametrize("name, call", NO_GRADIENT, ids=[n for n, _ in NO_GRADIENT])
def test_a_function_without_gradient_refuses_a_differentiable_variable(name, call):
    w = diff([0.1, 0.5, 0.9])
    with pytest.raises(TypeError) as info:
        call(w)
    message = str(info.value)
    assert name in message and "argument 0" in message and FILE in message
    assert w._node.grad is None                     # nothing was computed, nothing changed


@pytest.mark.parametrize("name, call", NO_GRADIENT, ids=[n for n, _ in NO_GRADIENT])
def test_a_function_without_gradient_refuses_inside_a_trace(name, call):
    def f(x):
        call(x)
        return np.sum(x)
    with pytest.raises(TypeError, match=name.replace(".", r"\.")):
        neuronika.grad(f)(np.array([0.1, 0.5, 0.9]))


def test_inside_a_trace_even_a_non_differentiated_argument_is_refused():
    # Its value would be frozen into the compiled program: a later call with other data
    # would silently reuse it.
    def f(w, x):
        return np.sum(w * np.sort(np.fft.fft(x).real))
    with pytest.raises(TypeError, match="traced"):
        neuronika.grad(f)(np.ones(3), np.array([0.1, 0.5, 0.9]))


@pytest.mark.parametrize("name, call", NO_GRADIENT, ids=[n for n, _ in NO_GRADIENT])
def test_a_function_without_gradient_computes_on_non_differentiable_variables(name, call):
    values = np.array([0.1, 0.5, 0.9])
    got = call(neuronika.from_ndarray(values))
    want = call(values)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        np.testing.assert_array_equal(g, w)


def test_a_gradient_is_never_silently_zero():
    # The failure this guards against: a NumPy function turns W into an array, the loss still
    # decreases through other terms, and W.grad stays zero.
    w = diff([0.3, -0.2])
    b = diff([1.0])
    loss = np.sum(np.tanh(w)) + np.sum(np.exp(w)) + np.sum(b * b)
    loss.backward()
    assert np.all(w.grad != 0)
    w.zero_grad()
    with pytest.raises(TypeError):
        np.sum(np.fft.ifft(w).real) + np.sum(b * b)


# ---- the explicit ways out of the graph ------------------------------------------------------------

def test_asarray_float_and_item_leave_the_graph():
    w = diff([2.5])
    assert isinstance(np.asarray(w), np.ndarray) and np.asarray(w)[0] == 2.5
    assert float(w) == 2.5 and w.item() == 2.5
    assert isinstance(w.tolist(), list)


def test_neuronika_numpy_without_variables_is_numpy():
    x = np.linspace(0.0, 1.0, 5)
    out = nnp.tanh(x)
    assert type(out) is np.ndarray
    np.testing.assert_array_equal(out, np.tanh(x))
    assert type(nnp.sum(x)) is np.float64
    assert nnp.zeros(3).dtype == np.float64 and nnp.pi == np.pi and nnp.newaxis is None
    assert nnp.random is np.random


def test_numpy_python_code_converting_a_differentiable_variable_raises():
    # numpy.r_ is Python code that converts its items with numpy.array: not a dispatched
    # function, so the conversion itself refuses a variable that needs a gradient.
    w = diff([1.0, 2.0])
    with pytest.raises(TypeError, match="lose the gradient") as info:
        np.r_[w, w]
    assert FILE in str(info.value)
    np.testing.assert_array_equal(np.r_[w.detach(), w.detach()], [1.0, 2.0, 1.0, 2.0])


def test_a_cached_program_is_the_same_whichever_way_the_loss_is_written():
    # Dispatch happens while tracing; the compiled program, which is all that runs on later
    # calls, is the same for NumPy's functions, neuronika.numpy's and the methods.
    def with_numpy(w, b, x):
        return np.sum(np.tanh(np.matmul(x, w) + b))

    def with_neuronika_numpy(w, b, x):
        return nnp.sum(nnp.tanh(nnp.matmul(x, w) + b))

    def with_methods(w, b, x):
        return (x.mm(w) + b).tanh().sum()

    args = (np.ones((3, 3)), np.zeros(3), np.ones((2, 3)))
    sources = {neuronika.value_and_grad(f, argnums=(0, 1)).source(*args)
               for f in (with_numpy, with_neuronika_numpy, with_methods)}
    assert len(sources) == 1
