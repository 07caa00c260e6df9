"""The free functions beyond NumPy (neuronika.logsumexp, softmax, ...): values against
closed forms, stability at extreme inputs, gradients of first and second order."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika

from .cases import Case, uniform, away


def _special(name, reference, *arrays, call=None, **kwargs):
    fn = call or (lambda f, *xs: f(*xs))

    def run(np_, *xs):
        return fn(getattr(neuronika, name), *xs) if np_ is not np else fn(reference, *xs)
    return Case(name, run, *arrays, dispatch=False, **kwargs)


def _logsumexp(x, axis=None, keepdims=False):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None else out.reshape(())


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


CASES = [
    _special("logsumexp", _logsumexp, uniform((2, 3, 4))),
    _special("logsumexp", _logsumexp, uniform((2, 3, 4)), call=lambda f, x: f(x, axis=1),
             id="logsumexp-axis"),
    _special("logsumexp", _logsumexp, uniform((2, 3, 4)), call=lambda f, x: f(x, axis=(0, 2), keepdims=True),
             id="logsumexp-axes-keepdims"),
    _special("softmax", _softmax, uniform((3, 4))),
    _special("softmax", _softmax, uniform((3, 4)), call=lambda f, x: f(x, axis=0), id="softmax-axis0"),
    _special("log_softmax", lambda x, axis=-1: np.log(_softmax(x, axis)), uniform((3, 4))),
    _special("sigmoid", _sigmoid, uniform((2, 3))),
    _special("expit", _sigmoid, uniform((2, 3))),
    _special("logit", lambda p: np.log(p / (1 - p)), uniform((2, 3), 0.1, 0.9)),
    _special("relu", lambda x: np.maximum(x, 0), away((2, 3))),
    _special("leaky_relu", lambda x, s=0.01: np.where(x > 0, x, s * x), away((2, 3))),
    _special("leaky_relu", lambda x, s=0.01: np.where(x > 0, x, s * x), away((2, 3)),
             call=lambda f, x: f(x, 0.2) if f is neuronika.leaky_relu else np.where(x > 0, x, 0.2 * x),
             id="leaky_relu-slope"),
    _special("softplus", lambda x: np.log1p(np.exp(x)), uniform((2, 3))),
    _special("stop_gradient", lambda x: x, uniform((3,)), call=lambda f, x: f(x) * 2 if f is not None else x,
             wrt=()),
]


def test_extreme_inputs_stay_finite():
    x = np.array([1000.0, -1000.0, 0.0])
    assert np.isfinite(neuronika.logsumexp(x))
    np.testing.assert_allclose(neuronika.logsumexp(x), 1000.0)
    assert np.isfinite(neuronika.softmax(x)).all()
    assert np.isfinite(neuronika.log_softmax(x)[1])
    np.testing.assert_allclose(neuronika.sigmoid(x), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(neuronika.softplus(x), [1000.0, 0.0, np.log(2.0)])


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    out = neuronika.logsumexp(np.array([-np.inf, -np.inf]))
    assert out == -np.inf and isinstance(out, np.float64)


def test_logsumexp_gradient_is_the_softmax():
    x = neuronika.from_ndarray(np.array([0.5, -1.0, 2.0])).requires_grad()
    neuronika.logsumexp(x).backward()
    np.testing.assert_allclose(x.grad, _softmax(np.array([0.5, -1.0, 2.0])), rtol=1e-14)


def test_plain_data_in_plain_data_out():
    x = np.array([[0.5, -1.0], [2.0, 0.0]])
    assert type(neuronika.softmax(x)) is np.ndarray and type(neuronika.logsumexp(x)) is np.float64
    np.testing.assert_allclose(neuronika.log_softmax(x, axis=0), np.log(_softmax(x, axis=0)))
    assert isinstance(neuronika.sigmoid(neuronika.from_ndarray(x)), neuronika.Var)
