"""Complex numbers: real, imag, conj, angle, abs, and holomorphic functions of every
family on complex64 / complex128 values, mixed with real ones.

Gradients follow HIPS autograd's convention: for a real objective L of z = x + iy the
gradient is dL/dx - 1j * dL/dy (``check_grads`` differences the real and imaginary
parts separately and compares against exactly that). The closed forms at the end
are the cases the autograd tutorial documents: a holomorphic f gets f'(z), a real
loss gets a gradient whose conjugate is the ascent direction, a real function
computed through complex values gets the real gradient.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika.errors import GradientError
from neuronika.testing import check_grads

from .cases import (BINARY_SHAPES, UNARY_SHAPES, Case, away, rng, uniform)


# ---- complex inputs ---------------------------------------------------------------------------

def cuniform(shape, lo=-2.0, hi=2.0, seed=0):
    """Real and imaginary parts uniform in [lo, hi)."""
    r = rng(seed)
    return r.uniform(lo, hi, size=shape) + 1j * r.uniform(lo, hi, size=shape)


def caway(shape, lo=0.3, hi=2.0, seed=0):
    """|z| in [lo, hi) with any phase: away from 0 (abs, division)."""
    r = rng(seed)
    return r.uniform(lo, hi, size=shape) * np.exp(1j * r.uniform(-np.pi, np.pi, size=shape))


def coff_cut(shape, lo=0.3, hi=2.0, seed=0):
    """|z| in [lo, hi), phase at least 0.3 from pi: away from 0 and from the branch cut of
    log, sqrt and angle on the negative real axis."""
    r = rng(seed)
    return r.uniform(lo, hi, size=shape) * np.exp(1j * r.uniform(-np.pi + 0.3, np.pi - 0.3, size=shape))


def csmall(shape, seed=0):
    """|re|, |im| < 0.7: away from the poles of tanh (at i pi / 2)."""
    return cuniform(shape, -0.7, 0.7, seed)


def _call(name):
    return lambda np_, *xs: getattr(np_, name)(*xs)


# ---- real, imag, conj, angle, abs -------------------------------------------------------------

#: name -> sampler of a complex input
PARTS = {"real": cuniform, "imag": cuniform, "conj": cuniform, "conjugate": cuniform, "angle": coff_cut,
         "absolute": caway, "abs": caway}


def _part_cases():
    out = []
    for name, sample in PARTS.items():
        for shape in UNARY_SHAPES:
            out.append(Case(name, _call(name), sample(shape), id=f"{name}-complex-{shape}"))
        # a real input: real and conj are the value itself, imag zeros, angle 0 or pi (zero gradient)
        if name != "abs":
            out.append(Case(name, _call(name), away((2, 3), seed=3), id=f"{name}-real-input"))
        out.append(Case(name, _call(name), cuniform((2, 3)).astype(np.complex64), order=0,
                        value_rtol=1e-6, id=f"{name}-complex64"))
    out += [
        Case("angle", lambda np_, z: np_.angle(z, deg=True), coff_cut((2, 3)), id="angle-deg"),
        Case("angle", lambda np_, z: np_.angle(z, True), coff_cut((3,)).astype(np.complex64), order=0,
             value_rtol=1e-6, id="angle-deg-complex64"),
        Case("real", lambda np_, z: z.real, cuniform((2, 3)), dispatch=False, id="method-real"),
        Case("imag", lambda np_, z: z.imag, cuniform((2, 3)), dispatch=False, id="method-imag"),
        Case("imag", lambda np_, x: x.imag, uniform((2, 3)), dispatch=False, id="method-imag-real-input"),
        Case("conj", lambda np_, z: z.conj(), cuniform((2, 3)), dispatch=False, id="method-conj"),
        Case("conjugate", lambda np_, z: z.conjugate(), cuniform((2, 3)), dispatch=False,
             id="method-conjugate"),
        Case("absolute", lambda np_, z: abs(z), caway((2, 3)), dispatch=False, id="operator-abs-complex"),
        Case("real", lambda np_, z: np_.real(z * z) + np_.imag(z) * np_.angle(z), coff_cut((2, 3)),
             id="real-imag-angle-composed"),
        # real_if_close: the real part when the imaginary parts are negligible, else the value
        Case("real_if_close", _call("real_if_close"), uniform((2, 3)) + 1e-18j, id="real_if_close-close"),
        Case("real_if_close", _call("real_if_close"), cuniform((2, 3)), id="real_if_close-far"),
        Case("real_if_close", lambda np_, z: np_.real_if_close(z, tol=0.5),
             uniform((3,)) + 0.1j * uniform((3,), 0.0, 1.0, seed=1), id="real_if_close-tol"),
        Case("real_if_close", _call("real_if_close"), uniform((2, 3)), id="real_if_close-real-input"),
    ]
    values = [np.array([1.0 + 0.0j, 2.0 - 1.0j, 0.0, -0.0j, 3.0j]), np.array([1.0, -2.0, 0.0])]
    for name in ("iscomplex", "isreal"):
        for v in values:
            out.append(Case(name, _call(name), v, wrt=(), id=f"{name}-{v.dtype}"))
    return out


# ---- holomorphic functions of every family ----------------------------------------------------

#: name -> sampler: one-input holomorphic ufuncs
HOLOMORPHIC = {"negative": cuniform, "positive": cuniform, "exp": cuniform, "log": coff_cut,
               "sqrt": coff_cut, "sin": cuniform, "cos": cuniform, "tanh": csmall}

#: name -> samplers of the two operands
HOLOMORPHIC_BINARY = {"add": (cuniform, cuniform), "subtract": (cuniform, cuniform),
                      "multiply": (cuniform, cuniform), "divide": (cuniform, caway),
                      "power": (coff_cut, csmall)}


def _holomorphic_cases():
    out = []
    for name, sample in HOLOMORPHIC.items():
        for shape in UNARY_SHAPES:
            out.append(Case(name, _call(name), sample(shape), id=f"{name}-complex-{shape}"))
    for name, (sa, sb) in HOLOMORPHIC_BINARY.items():
        for shape_a, shape_b in BINARY_SHAPES:
            out.append(Case(name, _call(name), sa(shape_a, seed=1), sb(shape_b, seed=2),
                            id=f"{name}-complex-{shape_a}-{shape_b}"))
    z, w = cuniform((2, 3), seed=4), caway((2, 3), seed=5)
    out += [
        Case("power", lambda np_, z: np_.power(z, 3), z, id="power-complex-constant-int"),
        Case("power", lambda np_, z: z ** 2, z, dispatch=False, id="power-complex-square"),
        Case("power", lambda np_, z: np_.power(z, 0.5), coff_cut((2, 3)), id="power-complex-constant-float"),
        Case("power", lambda np_, z: np_.power(z, -1), w, id="power-complex-constant-negative"),
        Case("power", lambda np_, z: np_.power(z, 1.5 - 0.5j), coff_cut((2, 3)),
             id="power-complex-constant-complex"),
        Case("multiply", lambda np_, z: z * (1.5 - 2j), z, dispatch=False, id="multiply-complex-number"),
        Case("add", lambda np_, z: 2j + z, z, dispatch=False, id="add-complex-number"),
        Case("divide", lambda np_, z: 1j / z, w, dispatch=False, id="divide-complex-number"),
    ]
    return out


def _mixed_cases():
    """A real and a complex operand: the result is complex, the real operand's gradient real."""
    out = []
    for name, (real_sample, complex_sample) in {"add": (uniform, cuniform), "subtract": (uniform, cuniform),
                                                "multiply": (uniform, cuniform),
                                                "divide": (away, caway)}.items():
        for shape_a, shape_b in [((2, 3), (2, 3)), ((2, 3), (3,)), ((), (2, 3)), ((2, 1), (1, 3))]:
            out.append(Case(name, _call(name), real_sample(shape_a, seed=1), complex_sample(shape_b, seed=2),
                            id=f"{name}-real-complex-{shape_a}-{shape_b}"))
            out.append(Case(name, _call(name), complex_sample(shape_b, seed=3), real_sample(shape_a, seed=4),
                            id=f"{name}-complex-real-{shape_b}-{shape_a}"))
    out += [
        Case("power", _call("power"), uniform((2, 3), 0.5, 2.0, seed=1), csmall((3,), seed=2),
             id="power-real-base-complex-exponent"),
        Case("power", _call("power"), coff_cut((2, 3), seed=1), uniform((3,), -1.0, 1.0, seed=2),
             id="power-complex-base-real-exponent"),
        Case("matmul", _call("matmul"), uniform((2, 3), seed=1), cuniform((3, 4), seed=2),
             id="matmul-real-complex"),
        Case("matmul", _call("matmul"), cuniform((2, 3), seed=1), uniform((3,), seed=2),
             id="matmul-complex-real-vector"),
        Case("where", lambda np_, c, a, b: np_.where(c, a, b), np.array([True, False, True]),
             cuniform((2, 3), seed=1), uniform((3,), seed=2), id="where-complex-real"),
        Case("concatenate", lambda np_, a, b: np_.concatenate([a, b]), cuniform((2, 3), seed=1),
             uniform((1, 3), seed=2), id="concatenate-complex-real"),
        Case("real", lambda np_, x, z: np_.real(x * z) * x, uniform((2, 3), seed=1), cuniform((3,), seed=2),
             id="real-of-mixed-product"),
    ]
    return out


def _family_cases():
    z = cuniform((2, 3, 4), seed=6)
    out = []
    for name in ("sum", "mean"):
        for axis in (None, 0, -1, (0, 2)):
            for keepdims in (False, True):
                out.append(Case(name, lambda np_, x, name=name, axis=axis, k=keepdims:
                                getattr(np_, name)(x, axis=axis, keepdims=k), z,
                                id=f"{name}-complex-axis={axis}-keepdims={keepdims}"))
        out.append(Case(name, _call(name), cuniform(()), id=f"{name}-complex-0d"))
    out += [
        Case("matmul", _call("matmul"), cuniform((2, 3), seed=1), cuniform((3, 4), seed=2),
             id="matmul-complex-2d"),
        Case("matmul", _call("matmul"), cuniform((3,), seed=1), cuniform((2, 3, 4), seed=2),
             id="matmul-complex-vector-batched"),
        Case("matmul", _call("matmul"), cuniform((2, 2, 3), seed=1), cuniform((3,), seed=2),
             id="matmul-complex-batched-vector"),
        Case("matmul", _call("matmul"), cuniform((3,), seed=1), cuniform((3,), seed=2),
             id="matmul-complex-inner"),
        Case("dot", _call("dot"), cuniform((2, 3), seed=1), cuniform((3, 2), seed=2), id="dot-complex"),
        Case("reshape", lambda np_, x: np_.reshape(x, (4, 6)), z, id="reshape-complex"),
        Case("transpose", lambda np_, x: np_.transpose(x, (2, 0, 1)), z, id="transpose-complex"),
        Case("transpose", lambda np_, x: x.T, cuniform((2, 3)), dispatch=False, id="transpose-complex-T"),
        Case("swapaxes", lambda np_, x: np_.swapaxes(x, 0, 2), z, id="swapaxes-complex"),
        Case("getitem", lambda np_, x: x[np.array([0, 2, 2, 1])], cuniform((3, 2)), dispatch=False,
             id="getitem-complex-repeated"),
        Case("getitem", lambda np_, x: x[1, :, ::2], z, dispatch=False, id="getitem-complex-slice"),
        Case("concatenate", lambda np_, a, b: np_.concatenate([a, b], axis=1), cuniform((2, 3), seed=1),
             cuniform((2, 2), seed=2), id="concatenate-complex"),
        Case("stack", lambda np_, a, b: np_.stack([a, b]), cuniform((2, 3), seed=1), cuniform((2, 3), seed=2),
             id="stack-complex"),
        Case("abs", lambda np_, z: np_.sum(np_.abs(np_.exp(z) * z) ** 2), cuniform((2, 3)),
             id="abs-squared-loss"),
    ]
    return out


def _complex64_cases():
    """complex64 stays complex64, float32 with a complex operand becomes complex64 (values only:
    gradients are checked in float64 / complex128)."""
    z = cuniform((2, 3)).astype(np.complex64)
    x = uniform((2, 3), seed=1).astype(np.float32)
    return [
        Case("multiply", _call("multiply"), x, z, order=0, value_rtol=1e-6, id="multiply-float32-complex64"),
        Case("multiply", lambda np_, x: x * 1j, x, order=0, value_rtol=1e-6, dispatch=False,
             id="multiply-float32-python-complex"),
        Case("exp", _call("exp"), z, order=0, value_rtol=1e-6, id="exp-complex64"),
        Case("sum", _call("sum"), z, order=0, value_rtol=1e-6, id="sum-complex64"),
        Case("matmul", lambda np_, a: np_.matmul(a, a.T), z, order=0, value_rtol=1e-6, dispatch=False,
             id="matmul-complex64"),
        Case("multiply", _call("multiply"), x, z.astype(np.complex128), order=0, value_rtol=1e-6,
             id="multiply-float32-complex128"),
    ]


CASES = (_part_cases() + _holomorphic_cases() + _mixed_cases() + _family_cases() + _complex64_cases())


# ---- closed forms: the three cases of HIPS autograd's tutorial --------------------------------

Z = np.array([1.0 + 2.0j, -0.5 + 0.25j, 0.3 - 1.2j])


@pytest.mark.parametrize("f, derivative", [
    (nnp.sin, np.cos), (nnp.exp, np.exp), (nnp.log, lambda z: 1 / z),
    (lambda z: z ** 3, lambda z: 3 * z ** 2), (lambda z: 1 / z, lambda z: -1 / z ** 2),
    (nnp.tanh, lambda z: 1 - np.tanh(z) ** 2), (lambda z: z * z * (2 - 1j), lambda z: 2 * (2 - 1j) * z),
], ids=["sin", "exp", "log", "cube", "reciprocal", "tanh", "scaled-square"])
def test_holomorphic_gradient_is_the_complex_derivative(f, derivative):
    # grad of a complex-valued f is the gradient of its real part: f'(z) when f is holomorphic
    for z in Z:
        got = neuronika.grad(f)(complex(z))
        assert isinstance(got, complex)
        np.testing.assert_allclose(got, derivative(z), rtol=1e-12)
    got = neuronika.grad(lambda z: nnp.sum(f(z)))(Z)
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got, derivative(Z), rtol=1e-12)


@pytest.mark.parametrize("loss, gradient", [
    (lambda z: nnp.abs(z) ** 2, lambda z: 2 * np.conj(z)),
    (lambda z: nnp.real(z * nnp.conj(z)), lambda z: 2 * np.conj(z)),
    (nnp.abs, lambda z: np.conj(z) / np.abs(z)),
    (nnp.real, lambda z: np.ones_like(z)),
    (nnp.imag, lambda z: np.full_like(z, -1j)),
    (nnp.angle, lambda z: -1j / z),
    (lambda z: nnp.abs(nnp.exp(z)) ** 2, lambda z: 2 * np.abs(np.exp(z)) ** 2 + 0j),
    (lambda z: nnp.real(z) * nnp.imag(z), lambda z: z.imag - 1j * z.real),
], ids=["abs-squared", "z-conj-z", "abs", "real", "imag", "angle", "abs-exp-squared", "re-times-im"])
def test_real_loss_gradient_is_d_dx_minus_i_d_dy(loss, gradient):
    got = neuronika.grad(lambda z: nnp.sum(loss(z)))(Z)
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got, gradient(Z), rtol=1e-12, atol=1e-15)


def test_steepest_descent_steps_along_the_conjugate_gradient():
    target = np.array([0.5 - 1.0j, 2.0 + 0.5j])
    step = neuronika.grad(lambda z: nnp.sum(nnp.abs(z - target) ** 2))
    z = np.zeros(2, np.complex128)
    for _ in range(60):
        z = z - 0.25 * np.conj(step(z))
    np.testing.assert_allclose(z, target, atol=1e-12)


def test_real_function_through_complex_values_gets_the_real_gradient():
    x = np.array([0.3, -1.2, 2.0])
    g = neuronika.grad(lambda x: nnp.sum(nnp.real(nnp.exp(1j * x))))(x)        # cos(x)
    assert g.dtype == np.float64
    np.testing.assert_allclose(g, -np.sin(x), rtol=1e-12)
    g = neuronika.grad(lambda x: nnp.sum(nnp.abs(x * (1 + 2j)) ** 2))(x)        # 5 x ** 2
    np.testing.assert_allclose(g, 10 * x, rtol=1e-12)
    g = neuronika.grad(lambda x: nnp.sum(nnp.imag(nnp.exp(1j * x)) ** 2))(x)   # sin(x) ** 2
    np.testing.assert_allclose(g, 2 * np.sin(x) * np.cos(x), rtol=1e-12, atol=1e-15)
    x32 = x.astype(np.float32)
    g = neuronika.grad(lambda x: nnp.sum(nnp.real(nnp.exp(1j * x))))(x32)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, -np.sin(x32), rtol=1e-6)


# ---- the imperative and functional faces ------------------------------------------------------

def test_backward_on_a_real_loss_fills_complex_gradients():
    for dtype in (np.complex64, np.complex128):
        z = neuronika.from_ndarray(Z.astype(dtype)).requires_grad()
        x = neuronika.from_ndarray(np.array([2.0, -1.0, 0.5], np.float32 if dtype == np.complex64
                                            else np.float64)).requires_grad()
        loss = (abs(z * x) ** 2).sum()
        assert loss.dtype.kind == "f"
        loss.backward()
        assert z.grad.dtype == dtype and x.grad.dtype == x.dtype
        rtol = 1e-6 if dtype == np.complex64 else 1e-12
        np.testing.assert_allclose(z.grad, 2 * np.conj(Z) * x.data ** 2, rtol=rtol)
        np.testing.assert_allclose(x.grad, 2 * x.data * np.abs(Z) ** 2, rtol=rtol)


def test_methods_and_properties():
    z = neuronika.from_ndarray(Z).requires_grad()
    np.testing.assert_array_equal(z.real.data, Z.real)
    np.testing.assert_array_equal(z.imag.data, Z.imag)
    np.testing.assert_array_equal(z.conj().data, Z.conj())
    np.testing.assert_array_equal(z.conjugate().data, Z.conj())
    (z.real * z.imag).sum().backward()
    np.testing.assert_allclose(z.grad, Z.imag - 1j * Z.real)
    x = neuronika.from_ndarray(np.array([1.0, -2.0])).requires_grad()
    assert x.real is x and x.conj() is x and nnp.real(x) is x
    imag = x.imag                     # zeros, and a gradient of zero
    assert isinstance(imag, neuronika.VarDiff) and imag.dtype == np.float64
    np.testing.assert_array_equal(imag.data, [0.0, 0.0])
    (imag * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_grad_of_complex_arguments_keeps_their_dtype_and_structure():
    f = neuronika.grad(lambda p: nnp.sum(nnp.abs(p["w"] * p["v"]) ** 2))
    params = {"w": Z.astype(np.complex64), "v": np.array([1.0, 2.0, 3.0], np.float32)}
    g = f(params)
    assert g["w"].dtype == np.complex64 and g["v"].dtype == np.float32
    np.testing.assert_allclose(g["w"], 2 * np.conj(Z) * params["v"] ** 2, rtol=1e-6)
    # a NumPy complex scalar is a 0-d array argument
    g = neuronika.grad(lambda z: nnp.abs(z) ** 2)(np.complex64(3 - 4j))
    assert g.dtype == np.complex64 and g == 6 + 8j


def test_python_complex_arguments():
    f = lambda z: nnp.real(z * z)       # noqa: E731
    g = neuronika.grad(f)(1.0 + 2.0j)
    assert isinstance(g, complex) and g == 2 + 4j
    assert neuronika.grad(f)(3.0 - 1.0j) == 6 - 2j                  # the same trace, new values
    # a Python complex that is not differentiated is typed weakly, as in NumPy 2
    x32 = np.array([1.0, 2.0], np.float32)
    h = neuronika.grad(lambda x, c: nnp.sum(nnp.abs(x * c) ** 2))
    g = h(x32, 2j)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, 8 * x32)
    np.testing.assert_allclose(h(x32, 1j), 2 * x32)                # a new value, not a stale constant
    # differentiated too: Python complex in, Python complex out; a float and a complex do not share a trace
    both = neuronika.grad(lambda x, c: nnp.real(x * c), argnums=(0, 1))
    assert both(2.0, 1.0 + 1.0j) == (1.0, 2.0)
    assert both(2.0, 3.0) == (3.0, 2.0)


def test_vjp_of_complex_outputs():
    value, pullback = neuronika.vjp(lambda z: z * z, Z)
    np.testing.assert_allclose(value, Z * Z)
    g = np.array([1.0, 1j, 2.0 - 1.0j])
    np.testing.assert_allclose(pullback(g)[0], g * 2 * Z)           # g * f'(z): no conjugate
    _, pullback = neuronika.vjp(nnp.conj, Z)
    np.testing.assert_allclose(pullback(g)[0], np.conj(g))
    _, pullback = neuronika.vjp(lambda x: x * (1 + 1j), np.array([1.0, 2.0]))
    got = pullback(np.array([1.0, 1j]))[0]
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, [1.0, -1.0])                    # Re(g * (1 + 1j))


def test_jacobian_of_complex_functions():
    # row k is the gradient of Re(f_k): for a holomorphic f, the complex Jacobian df/dz
    np.testing.assert_allclose(neuronika.jacobian(lambda z: z ** 3)(Z), np.diag(3 * Z ** 2))
    a = cuniform((2, 3), seed=7)
    np.testing.assert_allclose(neuronika.jacobian(lambda z: nnp.matmul(a, z))(Z), a)
    # of a real function of complex z: rows are the gradients d/dx - 1j d/dy
    np.testing.assert_allclose(neuronika.jacobian(lambda z: nnp.abs(z) ** 2)(Z), np.diag(2 * np.conj(Z)))


def test_complex_seed_or_cotangent_for_a_real_output_is_refused():
    z = neuronika.from_ndarray(Z).requires_grad()
    loss = (abs(z) ** 2).sum()
    with pytest.raises(GradientError, match="complex seed"):
        loss.backward(1j)
    with pytest.raises(GradientError, match="complex seed"):
        (abs(z) ** 2).backward(np.ones(3, np.complex128))
    _, pullback = neuronika.vjp(lambda z: nnp.abs(z), Z)
    with pytest.raises(GradientError, match="complex cotangent"):
        pullback(np.ones(3, np.complex128))


def test_complex_seed_for_a_complex_root():
    z = neuronika.from_ndarray(Z).requires_grad()
    (z * z).backward(np.array([1.0, 1j, -1.0]))
    np.testing.assert_allclose(z.grad, np.array([1.0, 1j, -1.0]) * 2 * Z)
    w = neuronika.from_ndarray(Z).requires_grad()
    (w * w).sum().backward(1j)                                      # Re(1j * sum(w * w))
    np.testing.assert_allclose(w.grad, 2j * Z)


def test_complex_leaves_and_their_limits():
    assert isinstance(neuronika.from_ndarray(Z).requires_grad(), neuronika.VarDiff)
    with pytest.raises(GradientError, match="cannot be differentiable"):
        neuronika.from_ndarray(np.array([1, 2])).requires_grad()


def test_second_order_through_complex_values():
    # hvp of a real function of a real x computed through complex values
    x, v = np.array([0.3, -1.2]), np.array([1.0, 2.0])
    got = neuronika.hvp(lambda x: nnp.sum(nnp.abs(nnp.exp(1j * x) * x) ** 2), x, v)    # sum(x ** 2)
    np.testing.assert_allclose(got, 2 * v, rtol=1e-12)
    check_grads(lambda z: nnp.abs(nnp.sin(z)) ** 2 + nnp.angle(z * z), coff_cut((2, 2), seed=8))


def test_finite_differences_follow_the_convention():
    from neuronika.testing import _numerical_gradient, check_grad
    z = Z.copy()
    got, = _numerical_gradient(lambda v: float(np.sum(np.abs(v[0]) ** 2)), [z], [0], 1e-6)
    np.testing.assert_allclose(got, 2 * np.conj(Z), rtol=1e-8)                # |z|^2 -> 2 conj(z)
    got, = _numerical_gradient(lambda v: float(np.sum(np.real(v[0] ** 3))), [z], [0], 1e-6)
    np.testing.assert_allclose(got, 3 * Z ** 2, rtol=1e-8)                     # Re(z^3) -> 3 z^2
    got, = _numerical_gradient(lambda v: float(np.sum(np.angle(v[0]))), [z], [0], 1e-6)
    np.testing.assert_allclose(got, -1j / Z, rtol=1e-8)
    check_grad(lambda z: abs(z * z), Z)                                        # the older API too


def test_check_grads_rejects_the_conjugated_convention():
    # a gradient written with the other convention (conj of the complex derivative) must fail
    @neuronika.custom_vjp
    def square(z):
        return z * z

    square.defvjp(lambda z: (z * z, z), lambda z, g: (g * np.conj(2 * z),))
    with pytest.raises(AssertionError):
        check_grads(square, Z, order=1)
    square.defvjp(lambda z: (z * z, z), lambda z, g: (g * 2 * z,))
    check_grads(square, Z, order=1)


def test_dispatch_reaches_the_complex_functions():
    z = neuronika.from_ndarray(Z).requires_grad()
    for fn in (np.real, np.imag, np.conj, np.conjugate, np.angle, np.real_if_close):
        assert isinstance(fn(z), neuronika.VarDiff), fn
    np.testing.assert_array_equal(np.iscomplex(z).data, np.iscomplex(Z))
    np.testing.assert_array_equal(np.isreal(z).data, np.isreal(Z))
    with pytest.raises(TypeError, match="out="):
        np.conjugate(z, out=np.empty(3, np.complex128))


def test_real_if_close_is_guarded_inside_a_trace():
    f = neuronika.grad(lambda z: nnp.sum(nnp.abs(nnp.real_if_close(z)) ** 2))
    close = np.array([1.0 + 1e-20j, -2.0 + 0j])
    far = np.array([1.0 + 1.0j, -2.0 + 0j])
    np.testing.assert_allclose(f(close), 2 * close.real + 0j)
    np.testing.assert_allclose(f(far), 2 * np.conj(far))            # traced again, not the stale branch
    np.testing.assert_allclose(f(close), 2 * close.real + 0j)


def test_complex_values_read_in_python_are_guarded():
    z = neuronika.from_ndarray(np.array(1.0 + 2.0j))
    assert complex(z) == 1 + 2j and z.item() == 1 + 2j

    def f(z):
        c = complex(nnp.sum(z))                 # a Python-level read: guarded, traced again on change
        return nnp.sum(nnp.abs(z) ** 2) * abs(c)

    g = neuronika.grad(f)
    for a in (np.array([1 + 2j, 3j]), np.array([1 + 1j, 3j]), np.array([1 + 2j, 3j])):
        np.testing.assert_allclose(g(a), 2 * np.conj(a) * abs(a.sum()), rtol=1e-12)


# ---- complex values through other families' ops -----------------------------------------------

def test_optimizers_step_along_the_conjugate_gradient_or_refuse_complex_parameters():
    # FAILS until neuronika/optim handles complex parameters: with this convention the descent
    # direction is conj(p.grad) (and Adam's second moment is |g| ** 2, not g * g); SGD stepping
    # along p.grad ascends in the imaginary part and diverges here. Either step along the
    # conjugate or refuse complex parameters with a clear error (TypeError or ValueError).
    from neuronika import optim
    target = np.array([0.5 - 1.0j])
    z = neuronika.from_ndarray(np.zeros(1, np.complex128)).requires_grad()
    try:
        opt = optim.SGD([z], lr=0.25)
        for _ in range(40):
            opt.zero_grad()
            (abs(z - target) ** 2).sum().backward()
            opt.step()
    except (TypeError, ValueError):
        return
    np.testing.assert_allclose(z.data, target, atol=1e-8)


def test_cast_to_complex_gradient_keeps_the_real_part_without_a_warning():
    # CAST's adjoint is "dy": both engines convert an adjoint to its input's dtype, taking the
    # real part first for a real input (an astype alone would warn and drop it silently).
    x = np.array([1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        g = neuronika.grad(lambda x: nnp.sum(nnp.abs(x.astype(np.complex128) * (1 + 2j)) ** 2))(x)
        np.testing.assert_allclose(g, 10 * x)
        check_grads(lambda x: nnp.real(x.astype(np.complex128) * (1 + 2j)) ** 2, x)


def test_sign_of_complex_values_has_a_gradient():
    # sign(z) = z / |z| is not piecewise constant for complex z: its gradient is
    # (dy - Re(dy * y) * conj(y)) / |z| (y = sign(z)), not ZERO (op sign_complex).
    check_grads(nnp.sign, caway((2, 3)), order=2)


@pytest.mark.parametrize("name, formula", [
    ("sigmoid", lambda z: 1 / (1 + np.exp(-z))), ("expit", lambda z: 1 / (1 + np.exp(-z))),
    ("softplus", lambda z: np.log(1 + np.exp(z))),
], ids=["sigmoid", "expit", "softplus"])
def test_real_only_functions_are_right_or_refuse_complex_values(name, formula):
    # their overflow-safe forms use abs and comparisons, which would give a complex z a wrong
    # value (sigmoid(1+2j) came out real): they refuse with a TypeError (as scipy.special.expit
    # does) or compute the formula.
    z = neuronika.from_ndarray(Z)
    try:
        got = getattr(neuronika, name)(z)
    except TypeError:
        return
    np.testing.assert_allclose(got.data, formula(Z), rtol=1e-12)
