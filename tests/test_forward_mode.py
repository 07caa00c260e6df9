"""Forward mode: jvp, linearize, jacfwd / jacrev, hessian forward-over-reverse.

The tangent is reverse mode transposed (``functional._tangent_graph``), so every op of the
catalogue is checked through the generic identity <jvp(v), u> == <v, vjp(u)> on the op tables
of ``tests/numpy_api`` (one case per function) and on the fused and spatial ops below, and
against central finite differences.
"""
from __future__ import annotations

import numpy as np
import pytest

import neuronika
import neuronika.numpy as nnp
from neuronika.nn import functional as F
from neuronika.nn.conv import conv
from neuronika.transform.cache import CACHE

from tests.numpy_api.cases import _flat, all_cases


def _one_per_function():
    seen = {}
    for family, case in all_cases():
        if case.wrt and case.order:
            seen.setdefault((family, case.name), case)
    return [pytest.param(case, id=f"{family}:{case.id}") for (family, _), case in seen.items()]


def _flat_function(case):
    """The case as a function of its differentiated inputs (the others fixed), returning one
    array: its float and complex results raveled and concatenated (as ``check_gradients``)."""
    fixed = [a.copy() for a in case.arrays]

    def fn(*xs):
        args = list(fixed)
        for i, x in zip(case.wrt, xs):
            args[i] = x
        parts = [r for r in _flat(case.call(nnp, *args))
                 if isinstance(r, (neuronika.Var, np.ndarray, np.generic)) and r.dtype.kind in "fc"]
        if len(parts) == 1:
            return parts[0]
        return nnp.concatenate([nnp.ravel(p) for p in parts])

    return fn


def _random_like(rng, a):
    a = np.asarray(a)
    out = rng.standard_normal(a.shape)
    if a.dtype.kind == "c":
        out = out + 1j * rng.standard_normal(a.shape)
    return out.astype(a.dtype)


def _inner(a, b):
    """Re(sum(a * b)): the pairing under which this library's vjp (the gradient of
    Re(sum(cotangent * output)), d/dx - 1j d/dy for complex) is the transpose of the jvp."""
    return float(np.real(np.sum(np.asarray(a) * np.asarray(b))))


def _check_transpose(fn, primals, rtol=1e-8, atol=1e-10, seed=0):
    rng = np.random.default_rng(seed)
    tangents = tuple(_random_like(rng, p) for p in primals)
    value, tangent = neuronika.jvp(fn, primals, tangents)
    value = np.asarray(value)
    cotangent = _random_like(rng, value)
    if np.asarray(tangent).dtype.kind != "c" and cotangent.dtype.kind == "c":
        cotangent = cotangent.real
    _, pullback = neuronika.vjp(fn, *primals)
    grads = pullback(cotangent)
    left = _inner(cotangent, tangent)
    right = sum(_inner(g, t) for g, t in zip(grads, tangents))
    assert np.isclose(left, right, rtol=rtol, atol=atol), (left, right)
    # linearize: the tangent program over the primal program's residuals gives the same
    _, f_jvp = neuronika.linearize(fn, *primals)
    np.testing.assert_allclose(f_jvp(*tangents), tangent, rtol=1e-12, atol=1e-13)
    return value, tangent, tangents


def _evaluated(fn, arrays):
    out = fn(*[neuronika.from_ndarray(np.asarray(a)) for a in arrays])
    return np.asarray(out.data if isinstance(out, neuronika.Var) else out)


def _check_finite_differences(fn, primals, tangents, tangent, eps, rtol, atol):
    def at(step):
        return _evaluated(fn, [np.asarray(p) + step * t for p, t in zip(primals, tangents)])

    numeric = (at(eps) - at(-eps)) / (2 * eps)
    np.testing.assert_allclose(tangent, numeric, rtol=max(rtol, 1e-6), atol=max(atol, 1e-6))


@pytest.mark.parametrize("case", _one_per_function())
def test_every_function_jvp_is_the_transposed_vjp(case):
    fn = _flat_function(case)
    primals = tuple(case.arrays[i] for i in case.wrt)
    value, tangent, tangents = _check_transpose(fn, primals)
    np.testing.assert_allclose(value, _evaluated(fn, primals), rtol=1e-12, atol=1e-12)
    if case.name == "real_if_close":
        return          # a complex step makes the result complex: no finite difference
    _check_finite_differences(fn, primals, tangents, tangent, case.eps, case.rtol, case.atol)


RNG = np.random.default_rng(1)
X4 = RNG.standard_normal((2, 3, 5, 5))
W4 = RNG.standard_normal((4, 3, 3, 3))
X3 = RNG.standard_normal((2, 3, 7))
W3 = RNG.standard_normal((2, 3, 2))
LOGITS = RNG.standard_normal((4, 5))
LABELS = np.array([0, 3, 1, 4])
NORM_X = RNG.standard_normal((4, 3, 2))
GAMMA, BETA = RNG.standard_normal(3) + 2.0, RNG.standard_normal(3)
POSITIVE = RNG.uniform(0.5, 2.0, (2, 3))
SEQ = RNG.standard_normal((5, 3))

FUSED_AND_SPATIAL = {
    "conv2d": (lambda x, w: conv(x, w, padding=1), (X4, W4)),
    "conv2d-stride-dilation": (lambda x, w: conv(x, w, stride=2, dilation=2, padding=2), (X4, W4)),
    "conv1d": (lambda x, w: conv(x, w, padding=1), (X3, W3)),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), (X4,)),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), (X4,)),
    "batch_norm-train": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                         (NORM_X, GAMMA, BETA)),
    "layer_norm": (lambda x, g, b: F.layer_norm(x.transpose(0, 2, 1), (3,), g, b), (NORM_X, GAMMA, BETA)),
    "gelu-exact": (lambda x: F.gelu(x), (LOGITS,)),
    "gelu-tanh": (lambda x: F.gelu(x, approximate="tanh"), (LOGITS,)),
    "erf": (lambda x: neuronika.erf(x), (LOGITS,)),
    "cross_entropy": (lambda z: F.cross_entropy(z, LABELS), (LOGITS,)),
    "cross_entropy-sum": (lambda z: F.cross_entropy(z, LABELS, reduction="none"), (LOGITS,)),
    "nll_loss": (lambda z: F.nll_loss(F.log_softmax(z, 1), LABELS), (LOGITS,)),
    "nll_loss-none": (lambda z: F.nll_loss(z * z, LABELS, reduction="none"), (LOGITS,)),
    "bce_with_logits": (lambda z, t: F.binary_cross_entropy_with_logits(z, t), (LOGITS, np.full((4, 5), 0.3))),
    "linear": (lambda x, w, b: F.linear(x, w, b), (LOGITS, RNG.standard_normal((2, 5)), RNG.standard_normal(2))),
    "power-var-exponent": (lambda x, y: x ** y, (POSITIVE, RNG.standard_normal((2, 3)))),
    "prod": (lambda x: nnp.prod(x, axis=1), (POSITIVE,)),
    "cumprod": (lambda x: nnp.cumprod(x, axis=1), (POSITIVE,)),
    "astype": (lambda x: (x * x).astype(np.complex128).real * x, (POSITIVE,)),
    "softmax": (lambda x: F.softmax(x, dim=-1), (LOGITS,)),
    "pow": (lambda x: x ** 3 + x ** 2.5, (POSITIVE,)),
    "svd": (lambda a: nnp.linalg.svd(a, full_matrices=False)[1], (RNG.standard_normal((4, 3)),)),
    "sign-complex": (lambda z: np.sign(z) * z, (LOGITS + 1j * LOGITS[::-1],)),
    "binary_cross_entropy": (lambda z, t: F.binary_cross_entropy(F.sigmoid(z), t),
                             (LOGITS, np.full((4, 5), 0.3))),
    "log_softmax": (lambda x: F.log_softmax(x, dim=0), (LOGITS,)),
    "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                  (SEQ[None], SEQ[None] * 0.5, SEQ[None] + 1.0)),
    "scan": (lambda c, xs: neuronika.scan(lambda c, x: (np.tanh(c * x), c * x), c, xs)[1],
             (np.array([0.5, -0.3, 0.2]), SEQ)),
    "checkpoint": (lambda w, x: neuronika.checkpoint(lambda w, x: np.tanh(x @ w) * x.sum())(w, x),
                   (LOGITS[:, :4].T[:4] * 0.5, LOGITS[:, :4])),
}


@pytest.mark.parametrize("name", FUSED_AND_SPATIAL)
def test_fused_and_spatial_ops_jvp_is_the_transposed_vjp(name):
    fn, primals = FUSED_AND_SPATIAL[name]
    value, tangent, tangents = _check_transpose(fn, primals)
    _check_finite_differences(fn, primals, tangents, tangent, 1e-6, 1e-6, 1e-7)


#: differentiable ops no test function above builds in its forward graph, and why
REACHED_OTHERWISE = {
    # kernels that appear in adjoints only: the tangent differentiates them when it transposes
    # the backward of conv, pooling, prod, cumprod, power, sort, cross_entropy, pad, scan
    "conv_transpose": "adjoint", "conv_weight_grad": "adjoint", "avg_pool_grad": "adjoint",
    "max_pool_grad": "adjoint", "max_pool_gather": "adjoint", "cumprod_grad": "adjoint",
    "prod_others": "adjoint", "prod_others_grad": "adjoint", "power_exponent": "adjoint",
    "log_where_nonzero": "adjoint", "unpermute_along_axis": "adjoint", "pad_fold": "adjoint",
    "softmax_cross_entropy_grad": "adjoint", "cotangent": "adjoint", "cotangent_part": "adjoint",
    "expr": "adjoint",      # an elementwise adjoint as one node (ops/expression.py)
    # no symbolic adjoint (it reads what only the compiled forward has): refused, see below
    "dropout": "refused", "custom_vjp": "refused",
    "call": "jit's call of a compiled grad program: never inside a differentiated graph",
}


def test_every_differentiable_op_is_covered():
    from neuronika.graph import linearize
    from neuronika.ops import OPS
    reached = set()

    def note(result):
        for r in _flat(result):
            if isinstance(r, neuronika.Var):
                reached.update(n.op.name for n in linearize(r._node)[0] if n.op is not None)

    for family, case in all_cases():
        if case.wrt and case.order:
            note(case.call(nnp, *case.variables()))
    for fn, primals in FUSED_AND_SPATIAL.values():
        note(fn(*[neuronika.from_ndarray(p).requires_grad() for p in primals]))
    differentiable = {name for name, op in OPS.items()
                      if any(op.grad_template(s) is not None for s in range(max(1, len(op.inputs))))}
    missing = differentiable - reached - set(REACHED_OTHERWISE)
    assert not missing, f"ops with an adjoint that no forward-mode test reaches: {sorted(missing)}"


def test_ops_without_a_symbolic_adjoint_are_refused_by_name():
    x = np.linspace(1, 2, 4)
    with pytest.raises(neuronika.GradientError, match="jvp: forward mode .* through op dropout"):
        neuronika.jvp(lambda x: F.dropout(x, 0.5, training=True), (x,), (x,))

    @neuronika.custom_vjp
    def f(x):
        return np.sin(x)
    f.defvjp(lambda x: (np.sin(x), x), lambda x, g: (g * np.cos(x),))
    with pytest.raises(neuronika.GradientError, match="through op custom_vjp"):
        neuronika.jvp(f, (x,), (x,))


# ---- closed forms, finite differences, shapes --------------------------------------------

def test_jvp_closed_forms():
    x, v = np.array([0.3, -1.2, 2.0]), np.array([1.0, 0.5, -2.0])
    value, tangent = neuronika.jvp(np.sin, (x,), (v,))
    np.testing.assert_allclose(value, np.sin(x), rtol=1e-15)
    np.testing.assert_allclose(tangent, np.cos(x) * v, rtol=1e-14)
    a, b = np.arange(6.0).reshape(2, 3), np.ones((3, 4))
    da, db = np.full((2, 3), 0.5), np.eye(3, 4)
    value, tangent = neuronika.jvp(lambda a, b: a @ b, (a, b), (da, db))
    np.testing.assert_allclose(tangent, da @ b + a @ db, rtol=1e-14)
    # a Python number primal, and a function independent of its argument
    value, tangent = neuronika.jvp(lambda s, x: s * x ** 2, (2.0, x), (1.0, v))
    np.testing.assert_allclose(tangent, x ** 2 + 2.0 * 2 * x * v, rtol=1e-14)
    value, tangent = neuronika.jvp(lambda x: np.ones(3), (x,), (v,))
    np.testing.assert_array_equal(tangent, np.zeros(3))


def test_jvp_of_broadcasting_and_reductions_against_finite_differences():
    rng = np.random.default_rng(3)
    for shapes in [((2, 3), (3,)), ((4, 1, 3), (2, 1)), ((), (2, 2))]:
        xs = tuple(rng.standard_normal(s) for s in shapes)
        fn = lambda a, b: np.tanh(a * b + a).sum(axis=-1) * np.exp(b).mean()
        value, tangent, tangents = _check_transpose(fn, xs)
        _check_finite_differences(fn, xs, tangents, tangent, 1e-6, 1e-7, 1e-9)


def test_jvp_float32_keeps_its_dtype():
    x = np.linspace(-1, 1, 6, dtype=np.float32)
    value, tangent = neuronika.jvp(lambda x: np.tanh(x) * 2.0, (x,), (np.ones(6, np.float32),))
    assert value.dtype == tangent.dtype == np.float32
    np.testing.assert_allclose(tangent, 2 * (1 - np.tanh(x) ** 2), rtol=1e-6)


def test_jvp_trees_of_primals_and_of_results():
    rng = np.random.default_rng(4)
    params = {"w": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2), 1.5]}
    dparams = {"w": rng.standard_normal((3, 2)), "b": [rng.standard_normal(2), -0.5]}
    x = rng.standard_normal((4, 3))

    def model(p, x):
        h = x @ p["w"] + p["b"][0] * p["b"][1]
        return {"out": np.tanh(h), "norm": (h ** 2).sum()}

    value, tangent = neuronika.jvp(model, (params, x), (dparams, np.zeros_like(x)))
    assert set(tangent) == {"out", "norm"}
    h = x @ params["w"] + params["b"][0] * 1.5
    dh = x @ dparams["w"] + dparams["b"][0] * 1.5 + params["b"][0] * -0.5
    np.testing.assert_allclose(value["out"], np.tanh(h), rtol=1e-14)
    np.testing.assert_allclose(tangent["out"], (1 - np.tanh(h) ** 2) * dh, rtol=1e-12)
    np.testing.assert_allclose(tangent["norm"], (2 * h * dh).sum(), rtol=1e-12)


def test_jvp_complex_against_finite_differences():
    z = np.array([1.0 + 2j, 0.5 - 1j])
    v = np.array([0.3 - 0.2j, 1 + 1j])
    for fn in (lambda z: z ** 2 * np.exp(z), lambda z: np.abs(z) ** 2 + np.conj(z) * z,
               lambda z: np.real(z * z)):
        _, tangent = neuronika.jvp(fn, (z,), (v,))
        numeric = (fn(z + 1e-6 * v) - fn(z - 1e-6 * v)) / 2e-6
        np.testing.assert_allclose(tangent, numeric, rtol=1e-7, atol=1e-8)


def test_jvp_inside_grad_differentiates_again():
    # d/dx of jvp's tangent (x**3)' v = 3 x^2 v: 6 x v
    x, v = np.array([1.0, 2.0]), np.array([0.5, 1.0])
    g = neuronika.grad(lambda x: neuronika.jvp(lambda y: (y ** 3).sum(), (x,), (v,))[1])(x)
    np.testing.assert_allclose(g, 6 * x * v, rtol=1e-14)


def test_jvp_inside_jit_is_one_program():
    x, v = np.array([1.0, 2.0]), np.array([0.5, 1.0])
    step = neuronika.jit(lambda x, v: neuronika.jvp(lambda y: np.sin(y) * y, (x,), (v,)))
    value, tangent = step(x, v)
    np.testing.assert_allclose(tangent, (np.cos(x) * x + np.sin(x)) * v, rtol=1e-14)


def test_generated_programs_have_no_backward():
    # jvp's program of an elementwise chain: the forward and one tangent line per op, no
    # reductions (a backward of a sum would broadcast; a cotangent would be a buffer)
    from neuronika.functional import _tangent_program
    x = np.linspace(-1, 1, 5)
    fn = lambda x: np.tanh(np.sin(x) * x)
    source = _tangent_program(fn, "jvp").source((x,), x)
    assert source.startswith("def forward(")
    assert "sum" not in source and "zeros" not in source and "broadcast" not in source
    assert source.count("xp.cos") == 1 and source.count("xp.sin") == 1
    # linearize's tangent program: products and sums of the residuals, no primal op
    _, f_jvp = neuronika.linearize(fn, x)
    source = f_jvp.source()
    assert "xp.sin" not in source and "xp.cos" not in source and "xp.tanh" not in source
    np.testing.assert_allclose(f_jvp(x), neuronika.jvp(fn, (x,), (x,))[1], rtol=1e-15)


# ---- linearize -----------------------------------------------------------------------------

def test_linearize_reuses_one_program():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4))
    point = x.copy()
    fn = lambda x: np.exp(np.tanh(x)).sum(axis=0)
    value, f_jvp = neuronika.linearize(fn, x)
    np.testing.assert_allclose(value, fn(point), rtol=1e-14)
    x[...] = 0.0              # the point was copied
    f_jvp(np.ones((3, 4)))
    tangents = [rng.standard_normal((3, 4)) for _ in range(5)]
    misses, hits = CACHE.misses, CACHE.hits
    got = [f_jvp(v) for v in tangents]
    assert CACHE.misses == misses and CACHE.hits - hits == 5
    for v, g in zip(tangents, got):
        t = 1 - np.tanh(point) ** 2
        np.testing.assert_allclose(g, (np.exp(np.tanh(point)) * t * v).sum(axis=0), rtol=1e-13)


def test_linearize_weak_numbers_branches_and_float32():
    x = np.linspace(0.5, 1.5, 4, dtype=np.float32)
    fn = lambda s, x: np.tanh(x * s) * s          # s: a Python float, weakly typed
    value, f_jvp = neuronika.linearize(fn, 0.5, x)
    tangent = f_jvp(1.0, np.ones(4, np.float32))
    assert value.dtype == tangent.dtype == np.float32
    np.testing.assert_allclose(tangent, neuronika.jvp(fn, (0.5, x), (1.0, np.ones(4, np.float32)))[1],
                               rtol=1e-6)

    def branchy(x):
        if x.sum() > 0:
            return np.sin(x)
        return np.cos(x)

    for point in (x.astype(np.float64), -x.astype(np.float64)):
        _, f_jvp = neuronika.linearize(branchy, point)
        want = np.cos(point) if point.sum() > 0 else -np.sin(point)
        np.testing.assert_allclose(f_jvp(np.ones(4)), want, rtol=1e-14)


def test_linearize_random_constants_agree_with_the_value():
    # a draw inside the function is a constant of each trace: the tangent program reads the
    # primal program's draw (a residual), not one of its own
    x = np.linspace(0.5, 1.5, 6)
    value, f_jvp = neuronika.linearize(lambda x: x * neuronika.rand(6, dtype=np.float64), x)
    np.testing.assert_allclose(f_jvp(np.ones(6)), value / x, rtol=1e-14)


def test_linearize_inside_grad():
    x = np.array([0.5, 1.5])
    g = neuronika.grad(lambda x: neuronika.linearize(lambda y: y ** 3, x)[1](np.ones(2)).sum())(x)
    np.testing.assert_allclose(g, 6 * x, rtol=1e-14)


def test_linearize_matches_jvp_and_takes_several_primals():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal(3)
    fn = lambda a, b: np.sin(a) * b
    value, f_jvp = neuronika.linearize(fn, a, b)
    da, db = rng.standard_normal((2, 3)), rng.standard_normal(3)
    np.testing.assert_allclose(f_jvp(da, db), neuronika.jvp(fn, (a, b), (da, db))[1], rtol=1e-15)
    np.testing.assert_allclose(f_jvp(da, db), np.cos(a) * da * b + np.sin(a) * db, rtol=1e-14)


# ---- jacfwd, jacrev, hessian ---------------------------------------------------------------

JACOBIAN_FUNCTIONS = [
    (lambda x: np.tanh(x) * x[::-1], (5,)),
    (lambda x: x @ x.T, (3, 2)),
    (lambda x: (x ** 2).sum(axis=0) / (1 + x[0] ** 2), (2, 3)),
    (lambda x: np.exp(x).sum(), (4,)),
    (lambda x: x * 3.0, ()),
]


@pytest.mark.parametrize("k", range(len(JACOBIAN_FUNCTIONS)))
def test_jacfwd_equals_jacrev(k):
    fn, shape = JACOBIAN_FUNCTIONS[k]
    x = np.random.default_rng(k).standard_normal(shape)
    forward, reverse = neuronika.jacfwd(fn)(x), neuronika.jacrev(fn)(x)
    assert forward.shape == reverse.shape == np.shape(fn(x)) + shape
    np.testing.assert_allclose(forward, reverse, rtol=1e-12, atol=1e-14)


def test_jacrev_is_jacobian_and_jacfwd_takes_argnums_and_statics():
    assert neuronika.jacrev is neuronika.jacobian
    rng = np.random.default_rng(7)
    a, b = rng.standard_normal(3), rng.standard_normal((2, 3))
    fn = lambda a, b, n: (b * a) ** n
    ja, jb = neuronika.jacfwd(fn, argnums=(0, 1), static_argnums=2)(a, b, 3)
    ra, rb = neuronika.jacobian(fn, argnums=(0, 1), static_argnums=2)(a, b, 3)
    np.testing.assert_allclose(ja, ra, rtol=1e-12)
    np.testing.assert_allclose(jb, rb, rtol=1e-12)
    labels = np.array([1, 0])                 # integer data in a position not differentiated
    jac = neuronika.jacfwd(lambda x, i: x[i] * 2.0)(a, labels)
    np.testing.assert_allclose(jac, 2 * np.eye(3)[labels])


@pytest.mark.parametrize("shape", [(3,), (2, 2)])
def test_hessian_forward_over_reverse_equals_hessian(shape):
    rng = np.random.default_rng(8)
    x = rng.standard_normal(shape)
    A = rng.standard_normal((x.size, x.size))
    fn = lambda x: (np.tanh(A @ x.reshape(-1)) ** 2).sum() + (x ** 4).sum() * np.exp(x).sum()
    forward = neuronika.jacfwd(neuronika.grad(fn))(x)
    np.testing.assert_allclose(forward, neuronika.hessian(fn)(x), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(forward, np.swapaxes(forward.reshape(x.size, x.size), 0, 1).reshape(forward.shape),
                               rtol=1e-11, atol=1e-12)


# ---- errors --------------------------------------------------------------------------------

def test_tangent_shape_mismatch_names_the_argument_and_the_line():
    x = np.ones(3)
    with pytest.raises(neuronika.ShapeError, match=r"jvp: the tangent tangents\[1\] has shape \(2,\) "
                                                   r"but its primal has shape \(3,\).*test_forward_mode"):
        neuronika.jvp(lambda a, b: a * b, (x, x), (x, np.ones(2)))
    with pytest.raises(neuronika.ShapeError, match=r"tangents\[0\]\['w'\]"):
        neuronika.jvp(lambda p: p["w"], ({"w": x},), ({"w": np.ones((3, 1))},))


def test_tangent_dtype_and_structure_mismatch():
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"tangents\[0\] has dtype float32 but its primal has dtype float64"):
        neuronika.jvp(np.sin, (x,), (np.ones(3, np.float32),))
    with pytest.raises(TypeError, match=r"tangents\[0\] is a tuple but its primal is a list"):
        neuronika.jvp(lambda p: p[0], ([x],), ((x,),))
    with pytest.raises(TypeError, match="2 primals but 1 tangents"):
        neuronika.jvp(np.add, (x, x), (x,))
    with pytest.raises(TypeError, match="primals and tangents must be tuples"):
        neuronika.jvp(np.sin, x, x)
    _, f_jvp = neuronika.linearize(np.sin, x)
    with pytest.raises(neuronika.ShapeError, match=r"linearize: the tangent tangents\[0\] has shape"):
        f_jvp(np.ones(4))


def test_integer_primals_are_refused():
    with pytest.raises(TypeError, match=r"jvp: the primal tangents\[0\] .*dtype int64.* cannot be differentiated"):
        neuronika.jvp(lambda i: i * 2, (np.arange(3),), (np.arange(3),))
    with pytest.raises(TypeError, match=r"jacfwd: the primal for argument 0 .*int64"):
        neuronika.jacfwd(lambda i: i * 2.0)(np.arange(3))
    with pytest.raises(neuronika.GradientError, match="argnums 3 is out of range"):
        neuronika.jacfwd(np.sin, argnums=3)(np.ones(2))


def test_jacfwd_numbers_empty_arguments_and_nesting():
    x = np.array([0.5, 1.5])
    np.testing.assert_array_equal(neuronika.jacfwd(lambda s, x: s * x)(2.0, x), x)
    empty = np.ones((0, 3))
    assert neuronika.jacfwd(lambda x: x.sum() * np.ones(2))(empty).shape == (2, 0, 3)
    # inside another trace the Jacobian is a graph: d/dx sum(diag(3 x^2)) = 6 x
    g = neuronika.grad(lambda x: neuronika.jacfwd(lambda y: y ** 3)(x).sum())(x)
    np.testing.assert_allclose(g, 6 * x, rtol=1e-14)
    np.testing.assert_allclose(neuronika.jacfwd(lambda x, n: x ** n, static_argnames="n")(x, n=3),
                               np.diag(3 * x ** 2), rtol=1e-14)


def test_a_lambda_made_again_finds_its_programs():
    import warnings
    scale = np.array([2.0, 3.0])
    x = np.array([0.5, 1.0])
    misses = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no RetraceWarning
        for k in range(12):
            _, tangent = neuronika.jvp(lambda x: np.sin(x) * scale, (x + k,), (x,))
            np.testing.assert_allclose(tangent, np.cos(x + k) * scale * x, rtol=1e-14)
            misses.append(CACHE.misses)
    assert misses[-1] == misses[0]              # traced at the first call only


def test_jacobians_and_hessian_are_one_batched_program_with_aux():
    """jacfwd, jacrev and hessian batch their basis (vmap): one program per signature, whatever
    the number of rows or columns; has_aux returns the function's aux beside."""
    w = np.array([[1.0, 2.0, 0.5], [0.3, -1.0, 2.0]])

    def f(x):
        y = np.tanh(w @ x)
        return y, {"norm": (y * y).sum(), "steps": 3}

    x = np.array([0.1, -0.2, 0.3])
    want = (1 - np.tanh(w @ x) ** 2)[:, None] * w
    for transform in (neuronika.jacfwd, neuronika.jacrev):
        jac = transform(f, has_aux=True)
        got, aux = jac(x)
        np.testing.assert_allclose(got, want, rtol=1e-13)
        np.testing.assert_allclose(aux["norm"], (np.tanh(w @ x) ** 2).sum(), rtol=1e-13)
        assert aux["steps"] == 3
        hits = CACHE.hits
        jac(x * 2)
        assert CACHE.hits == hits + 1               # one program, found again
    hess, aux = neuronika.hessian(lambda x: ((x ** 3).sum(), x.sum()), has_aux=True)(x)
    np.testing.assert_allclose(hess, np.diag(6 * x), rtol=1e-13)
    np.testing.assert_allclose(aux, x.sum(), rtol=1e-13)
    # an argument that is a tree: a Jacobian per leaf
    tree = neuronika.jacrev(lambda p: np.tanh(p["w"] @ x))({"w": w})
    assert tree["w"].shape == (2, 2, 3)
    np.testing.assert_allclose(tree["w"][0, 0], (1 - np.tanh(w @ x)[0] ** 2) * x, rtol=1e-13)


def test_jvp_and_linearize_with_aux():
    def f(x):
        y = np.sin(x)
        return y * 2.0, {"y": y, "n": 4}

    x, t = np.array([0.3, -1.2]), np.array([1.0, 0.5])
    value, tangent, aux = neuronika.jvp(f, (x,), (t,), has_aux=True)
    np.testing.assert_allclose(value, 2 * np.sin(x), rtol=1e-14)
    np.testing.assert_allclose(tangent, 2 * np.cos(x) * t, rtol=1e-14)
    np.testing.assert_allclose(aux["y"], np.sin(x), rtol=1e-14)
    assert aux["n"] == 4
    value, f_jvp, aux = neuronika.linearize(f, x, has_aux=True)
    np.testing.assert_allclose(f_jvp(t), 2 * np.cos(x) * t, rtol=1e-14)
    np.testing.assert_allclose(aux["y"], np.sin(x), rtol=1e-14)
    # inside another trace: graphs, differentiated through
    g = neuronika.grad(lambda x: neuronika.jvp(f, (x,), (t,), has_aux=True)[2]["y"].sum())(x)
    np.testing.assert_allclose(g, np.cos(x), rtol=1e-14)
    with pytest.raises(neuronika.GradientError, match="has_aux=True needs the function to return a pair"):
        neuronika.jvp(np.sin, (x,), (t,), has_aux=True)


def test_a_large_basis_goes_in_chunks(monkeypatch):
    from neuronika import functional
    monkeypatch.setattr(functional, "BASIS_ELEMENTS", 20)        # 7 elements: chunks of 2 rows
    x = np.random.default_rng(0).standard_normal(7)
    w = np.random.default_rng(1).standard_normal((5, 7))
    want = (1 - np.tanh(w @ x) ** 2)[:, None] * w
    np.testing.assert_allclose(neuronika.jacrev(lambda x: np.tanh(w @ x))(x), want, rtol=1e-13)
    np.testing.assert_allclose(neuronika.jacfwd(lambda x: np.tanh(w @ x))(x), want, rtol=1e-13)
    hess = neuronika.hessian(lambda x: (x ** 3).sum() + (w @ x).sum() ** 2)(x)
    np.testing.assert_allclose(hess, np.diag(6 * x) + 2 * np.outer(w.sum(0), w.sum(0)), rtol=1e-12)
    source = neuronika.jit(lambda x: neuronika.jacfwd(lambda x: np.tanh(w @ x))(x)).source(x)
    assert "eye" not in source and source.count("concat") >= 1      # one-hot rows made per chunk
