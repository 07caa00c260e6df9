"""Elementwise adjoints as one ``expr`` node in symbolic gradients (issue 12, the compile cost of
``hvp`` and ``hessian``): the expression's derivatives, the values of second and third
derivatives through it (closed forms, finite differences), first-order values unchanged bit for
bit, the cases that stay unfused, and the size of an ``hvp`` program per node."""
from __future__ import annotations

import re

import numpy as np
import pytest

import neuronika as nk
from neuronika import symbolic
from neuronika.graph import linearize
from neuronika.ops import ZERO
from neuronika.ops import expression
from neuronika.testing import check_grads, numerical_jacobian

MODES = ["never", "always"]


# ---- the expression's derivatives ----------------------------------------------------------

def _evaluate(src, values, dy=None):
    namespace = {"xp": np, **values}
    if dy is not None:
        namespace["dy"] = dy
    return eval(src, namespace)


@pytest.mark.parametrize("src", [
    "x0 * (1 - xp.square(x1))",
    "x0 * xp.cos(x1)",
    "-x0 * xp.sin(x1)",
    "x0 / xp.sqrt(1 - x1 * x1)",
    "x0 * x1 / (x1 * x1 + x2 * x2)",
    "0.5 * x0 / x1",
    "x0 * (x1 + 1) - x1 / x2",
    "x0 * xp.tanh(x1) * xp.exp(-x2)",
    "x0 / (3 * x1 * x1)",
    "x0 * xp.log1p(x1) + xp.floor(x2) * x0",
])
def test_the_derivative_of_an_expression_matches_finite_differences(src):
    rng = np.random.default_rng(0)
    names = tuple(sorted(set(re.findall(r"\bx\d\b", src))))
    point = {n: rng.uniform(0.2, 0.8, 5) for n in names}
    dy = rng.standard_normal(5)
    for slot, name in enumerate(names):
        adjoint = expression.derivative(src, names, slot)

        def along(v, name=name):
            return _evaluate(src, {**point, name: v})
        # elementwise: the Jacobian is diagonal
        numeric = np.diag(numerical_jacobian(along, point[name])) * dy
        got = 0 * dy if adjoint is ZERO else _evaluate(adjoint, point, dy)     # floor's: zero
        np.testing.assert_allclose(got, numeric, rtol=1e-7, atol=1e-9)


def test_an_expression_that_does_not_read_an_input_has_a_zero_adjoint():
    assert expression.derivative("x0 * xp.floor(x1)", ("x0", "x1"), 1) is ZERO


@pytest.mark.parametrize("src", ["x0 ** 2", "xp.where(x0 > 0, x0, 0)", "x0[0]", "x0.T * 2", "xp.sum(x0) + 1",
                                 "alpha * x0"])
def test_what_the_expression_does_not_differentiate_is_refused(src):
    with pytest.raises(expression.Unsupported):
        expression.derivative(src, ("x0",), 0)


def test_which_templates_fuse():
    names = ("x",)
    assert symbolic._fusion("dy * (1 - y * y)", names) == ("x0 * (1 - xp.square(x1))", ("dy", "y"))
    assert symbolic._fusion("dy * xp.cos(x)", names) == ("x0 * xp.cos(x1)", ("dy", "x"))
    assert symbolic._fusion("-dy * xp.sin(x)", names) is not None
    # one operation: nothing to gain; statics, calls it does not know: left as they are
    assert symbolic._fusion("dy * y", names) is None
    assert symbolic._fusion("-dy", names) is None
    assert symbolic._fusion("dy * alpha * x", names) is None
    assert symbolic._fusion("xp.where(x > 0, dy, 0)", names) is None
    assert symbolic._fusion("dx = dy * 2\ndx = dx * x", names) is None


# ---- values --------------------------------------------------------------------------------

def _chain(x, n=12):
    y = x
    for k in range(n):
        kind = k & 3
        y = y * 1.01 if kind == 0 else y.tanh() if kind == 1 else y + 0.1 if kind == 2 else y.sin()
    return y.sum()


def _chain_np(x, n=12):
    """The chain's value, gradient and Hessian (diagonal) in closed form, by forward recursion."""
    y, dy, d2y = x.copy(), np.ones_like(x), np.zeros_like(x)
    for k in range(n):
        kind = k & 3
        if kind == 0:
            y, dy, d2y = y * 1.01, dy * 1.01, d2y * 1.01
        elif kind == 1:
            t = np.tanh(y)
            d1, d2 = 1 - t * t, -2 * t * (1 - t * t)
            y, dy, d2y = t, d1 * dy, d2 * dy * dy + d1 * d2y
        elif kind == 2:
            y = y + 0.1
        else:
            d1, d2 = np.cos(y), -np.sin(y)
            y, dy, d2y = np.sin(y), d1 * dy, d2 * dy * dy + d1 * d2y
    return y.sum(), dy, d2y


@pytest.mark.parametrize("mode", MODES)
def test_hvp_and_hessian_of_the_chain_match_the_closed_form(mode):
    x = np.random.default_rng(2).standard_normal(6)
    v = np.random.default_rng(3).standard_normal(6)
    _, _, d2 = _chain_np(x)
    with nk.config(compile=mode):
        for _ in range(2):
            np.testing.assert_allclose(nk.hvp(_chain, x, v), d2 * v, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(nk.hessian(_chain)(x), np.diag(d2), rtol=1e-12, atol=1e-14)


def test_interpreted_and_compiled_hvp_agree_bit_for_bit():
    x = np.random.default_rng(10).standard_normal(6)
    v = np.random.default_rng(11).standard_normal(6)
    f = lambda p: _chain(p, 9) + (p.sigmoid() * nk.numpy.arctan(p)).sum()
    got = {}
    for mode in MODES:
        nk.transform.cache_clear()          # nothing of the other mode's run is reused
        with nk.config(compile=mode):
            got[mode] = nk.hvp(f, x, v)
    np.testing.assert_array_equal(got["never"], got["always"])


UNARY = {
    "tanh": (lambda x: x.tanh(), (-2, 2)),
    "sin": (lambda x: x.sin(), (-2, 2)),
    "cos": (lambda x: x.cos(), (-2, 2)),
    "tan": (lambda x: nk.numpy.tan(x), (-1, 1)),
    "arcsin": (lambda x: nk.numpy.arcsin(x), (-0.8, 0.8)),
    "arccos": (lambda x: nk.numpy.arccos(x), (-0.8, 0.8)),
    "arctan": (lambda x: nk.numpy.arctan(x), (-2, 2)),
    "arcsinh": (lambda x: nk.numpy.arcsinh(x), (-2, 2)),
    "arctanh": (lambda x: nk.numpy.arctanh(x), (-0.8, 0.8)),
    "sqrt": (lambda x: x.sqrt(), (0.5, 2)),
    "cbrt": (lambda x: nk.numpy.cbrt(x), (0.5, 2)),
    "reciprocal": (lambda x: nk.numpy.reciprocal(x), (0.5, 2)),
    "log2": (lambda x: nk.numpy.log2(x), (0.5, 2)),
    "log1p": (lambda x: nk.numpy.log1p(x), (0.5, 2)),
    "expm1": (lambda x: nk.numpy.expm1(x), (-1, 1)),
    "sigmoid": (lambda x: x.sigmoid(), (-2, 2)),
    "erf": (lambda x: nk.numpy.erf(x) if hasattr(nk.numpy, "erf") else x.tanh(), (-2, 2)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_second_and_third_derivatives_through_fused_adjoints(name):
    op, (lo, hi) = UNARY[name]
    x = np.random.default_rng(4).uniform(lo, hi, 5)
    c = np.random.default_rng(5).standard_normal(5)

    def f(v):
        return (op(v * 1.1) * nk.from_ndarray(c)).sum()

    expected = numerical_jacobian(nk.grad(f), x)
    np.testing.assert_allclose(nk.hessian(f)(x), expected, rtol=1e-6, atol=1e-7)
    # the third: the derivative of <hessian v, v> against differences of the (compiled) hvp
    v = np.random.default_rng(6).standard_normal(5)
    third = nk.grad(lambda p: (nk.hvp(f, p, v) * v).sum())(x)
    numeric = numerical_jacobian(lambda p: (nk.hvp(f, p, v) * v).sum(), x)
    np.testing.assert_allclose(third, numeric, rtol=1e-5, atol=1e-6)


def test_binary_adjoints_with_broadcasting():
    rng = np.random.default_rng(7)
    a, b = rng.uniform(0.5, 2, (3, 4)), rng.uniform(0.5, 2, 4)

    def f(a, b):
        return (nk.numpy.arctan2(a, b) + a / b + nk.numpy.hypot(a, b) * b).tanh().sum()

    check_grads(f, a, b, order=2, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_gradient_graph_computes_the_first_order_values_bit_for_bit(dtype):
    # the symbolic gradient (a graph holding expr nodes) against the compiled first-order one
    x = np.random.default_rng(8).standard_normal(7).astype(dtype)
    f = lambda v: (_chain(v) + (v.sigmoid() * v.cos()).sum())
    compiled = nk.grad(f)(x)
    graph = nk.grad(f)(nk.from_ndarray(x))
    ops = {n.op.name for n in linearize(graph._node)[0] if n.op is not None}
    assert "expr" in ops
    assert graph.dtype == dtype
    for mode in MODES:
        with nk.config(compile=mode):
            graph.forward()
            np.testing.assert_array_equal(graph.data, compiled)


def test_float32_stays_float32():
    x = np.linspace(-1, 1, 5).astype(np.float32)
    w = np.linspace(0.5, 1.5, 5).astype(np.float32)
    f = lambda v: (v * nk.from_ndarray(w)).tanh().sum()
    h = nk.hessian(f)(x)
    assert h.dtype == np.float32
    t = np.tanh(x.astype(np.float64) * w)
    np.testing.assert_allclose(h, np.diag(-2 * t * (1 - t * t) * w * w), rtol=1e-5, atol=1e-6)


def test_complex_values_are_not_fused_and_stay_right():
    def f(v):
        return (v.tanh() * v.tanh().conj()).real.sum()

    z = nk.from_ndarray(np.array([0.3 + 0.2j, -0.5 + 0.1j]))
    graph = nk.grad(f)(z)
    assert "expr" not in {n.op.name for n in linearize(graph._node)[0] if n.op is not None}
    g = nk.grad(lambda r: f(r + 0.2j))
    r = np.array([0.3, -0.5])
    np.testing.assert_allclose(nk.hessian(lambda r: f(r + 0.2j))(r), numerical_jacobian(g, r),
                               rtol=1e-6, atol=1e-8)


def test_forward_mode_does_not_fuse():
    # linearize's tangent program reads residuals: no primal function in it
    x = np.linspace(-1, 1, 5)
    _, f_jvp = nk.linearize(lambda x: np.tanh(np.sin(x) * x), x)
    source = f_jvp.source()
    assert "xp.cos" not in source and "xp.tanh" not in source and "xp.square" not in source


# ---- the size of an hvp program ------------------------------------------------------------

def _statements(source):
    lines = [line.strip() for line in source.splitlines()]
    return [line for line in lines if line and not line.startswith(("def ", "return", "del "))]


#: Statements (not counting ``del``) per op of the chain's forward graph in its hvp program: 4.1
#: at 400 ops (5.9 before adjoints were fused, 1.8 for ``grad``).
HVP_STATEMENTS_PER_OP = 4.25


def test_the_hvp_program_of_a_chain_has_few_statements_per_op():
    x = np.random.default_rng(9).standard_normal(16)
    n = 400
    f = lambda v: _chain(v, n)
    with nk.config(compile="always"):
        from neuronika.transform import loops
        before, loops.AUTO = loops.AUTO, False        # straight-line code, as the benchmark
        try:
            nk.hvp(f, x, np.ones_like(x))
            from neuronika.functional import _hvp_traced
            source = _hvp_traced.get(f).source(x, np.ones_like(x))
        finally:
            loops.AUTO = before
    count = len(_statements(source))
    assert count <= HVP_STATEMENTS_PER_OP * n, count / n
    np.testing.assert_allclose(nk.hvp(f, x, np.ones_like(x)), _chain_np(x, n)[2], rtol=1e-10, atol=1e-12)
