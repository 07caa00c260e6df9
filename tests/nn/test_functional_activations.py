"""nn.functional's activations, linear maps, dropout, embedding and one_hot, and the modules that
call them: values and gradients against PyTorch (float64, around the kinks and far out),
against central finite differences to second order (away from the kinks), float32 kept, the
modules against torch.nn's (state_dict transfer for Bilinear and Embedding), the names the
module exports, and the errors."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika.nn import functional as F
from neuronika.testing import check_grads, oracle

SHAPES = [(), (7,), (3, 4), (2, 3, 4)]
KINKS = np.array([0.0, -3.0, 3.0, 6.0, -1.0, 1.0, 20.0, -2.0, 0.5, 5.0, 10.0, -20.0])
FAR = np.array([-1e4, -1000.0, -50.0, -30.0, 30.0, 50.0, 1000.0, 1e4])

# (function name, options, float inputs only): the same name and options in torch.nn.functional
ACTIVATIONS = [
    ("relu", {}, False),
    ("relu6", {}, True),
    ("leaky_relu", {"negative_slope": 0.2}, False),
    ("elu", {}, True),
    ("elu", {"alpha": 0.5}, True),
    ("selu", {}, True),
    ("celu", {"alpha": 2.0}, True),
    ("gelu", {}, True),
    ("gelu", {"approximate": "tanh"}, True),
    ("silu", {}, True),
    ("mish", {}, True),
    ("softplus", {}, False),
    ("softplus", {"beta": 2.0, "threshold": 10.0}, False),
    ("softplus", {"beta": 0.5, "threshold": 1.0}, False),
    ("softsign", {}, True),
    ("hardtanh", {}, True),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, True),
    ("hardsigmoid", {}, True),
    ("hardswish", {}, True),
    ("sigmoid", {}, False),
    ("tanh", {}, False),
    ("logsigmoid", {}, True),
]
IDS = [f"{name}{options or ''}" for name, options, _ in ACTIVATIONS]

# (module, its torch.nn counterpart's name and arguments)
MODULES = [
    (nn.ReLU(), "ReLU", ()), (nn.ReLU6(), "ReLU6", ()), (nn.LeakyReLU(0.2), "LeakyReLU", (0.2,)),
    (nn.ELU(0.5), "ELU", (0.5,)), (nn.SELU(), "SELU", ()), (nn.CELU(2.0), "CELU", (2.0,)),
    (nn.GELU("tanh"), "GELU", ("tanh",)), (nn.SiLU(), "SiLU", ()), (nn.Mish(), "Mish", ()),
    (nn.Softplus(2.0, 10.0), "Softplus", (2.0, 10.0)), (nn.Softsign(), "Softsign", ()),
    (nn.Hardtanh(-2.0, 0.5), "Hardtanh", (-2.0, 0.5)), (nn.Hardsigmoid(), "Hardsigmoid", ()),
    (nn.Hardswish(), "Hardswish", ()), (nn.Sigmoid(), "Sigmoid", ()), (nn.Tanh(), "Tanh", ()),
    (nn.LogSigmoid(), "LogSigmoid", ()), (nn.Softmax(1), "Softmax", (1,)),
    (nn.LogSoftmax(0), "LogSoftmax", (0,)), (nn.Flatten(), "Flatten", ()),
    (nn.Flatten(0, 1), "Flatten", (0, 1)), (nn.Flatten(1, 2), "Flatten", (1, 2)),
    (nn.Unflatten(1, (2, -1)), "Unflatten", (1, (2, -1))), (nn.Identity(), "Identity", ()),
]


def inputs(shape, seed=0, points=KINKS):
    """Normal values scaled by 4, the first entries replaced by ``points``."""
    x = np.random.default_rng(seed).standard_normal(shape) * 4
    k = min(x.size, len(points))
    x.reshape(-1)[:k] = points[:k]
    return x


def away_from_kinks(shape, seed=0):
    """Values at least 0.2 away from every kink of the functions above (and from 0)."""
    x = np.random.default_rng(seed).uniform(0.3, 4.0, shape) * np.random.default_rng(seed + 1).choice([-1, 1], shape)
    bad = np.abs(x[..., None] - KINKS).min(-1) < 0.2 if x.ndim else abs(x - KINKS).min() < 0.2
    return np.where(bad, x + 0.45, x)


def torch_value_and_grad(name, x, cotangent, options):
    torch = oracle("torch")
    xt = torch.tensor(x, requires_grad=True)
    y = getattr(torch.nn.functional, name)(xt, **options)
    (g,) = torch.autograd.grad((y * torch.tensor(cotangent)).sum(), xt)
    return y.detach().numpy(), g.numpy()


def ours_value_and_grad(fn, x, cotangent):
    y = fn(x).data
    g = nk.grad(lambda v: (fn(v) * cotangent).sum())(x)
    return y, g


# PyTorch's gradients that carry a float32 rounding: hardsigmoid's 1/6 is a float constant
GRAD_RTOL = {"hardsigmoid": 1e-7}


def _compare(name, ours, theirs, cotangent):
    (y, g), (yt, gt) = ours, theirs
    np.testing.assert_allclose(y, yt, rtol=1e-13, atol=1e-300, err_msg=f"{name}: value")
    # elu / selu / celu: exp(x) - 1 is expm1, whose gradient exp(x) is formed as expm1 + 1, so
    # for x << 0 it is exact to an ulp of 1 (absolute), not relative to exp(x)
    atol = 2e-16 * np.abs(cotangent).max() * 2.0
    np.testing.assert_allclose(g, gt, rtol=GRAD_RTOL.get(name, 1e-13), atol=atol, err_msg=f"{name}: gradient")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name, options, floats", ACTIVATIONS, ids=IDS)
def test_values_and_gradients_match_torch(name, options, floats, shape):
    x = inputs(shape)
    cotangent = np.random.default_rng(1).standard_normal(shape)
    fn = lambda v: getattr(F, name)(v, **options)    # noqa: E731
    _compare(name, ours_value_and_grad(fn, x, cotangent), torch_value_and_grad(name, x, cotangent, options),
             cotangent)


@pytest.mark.parametrize("name, options, floats", ACTIVATIONS, ids=IDS)
def test_kinks_and_far_values_match_torch(name, options, floats):
    """Gradients at the corners are PyTorch's; large |x| neither overflows nor loses the tails."""
    x = np.concatenate([KINKS, np.nextafter(KINKS, np.inf), np.nextafter(KINKS, -np.inf), FAR])
    cotangent = np.ones_like(x)
    fn = lambda v: getattr(F, name)(v, **options)    # noqa: E731
    ours = ours_value_and_grad(fn, x, cotangent)
    assert np.all(np.isfinite(ours[0])) and np.all(np.isfinite(ours[1])), name
    _compare(name, ours, torch_value_and_grad(name, x, cotangent, options), cotangent)


def test_closed_forms_at_the_corners():
    at = np.array([-3.0, 0.0, 3.0, 6.0])
    grad = lambda f: nk.grad(lambda v: f(v).sum())(at)    # noqa: E731
    np.testing.assert_array_equal(grad(F.relu6), [0, 0, 1, 0])
    np.testing.assert_array_equal(grad(F.hardtanh), [0, 1, 0, 0])
    np.testing.assert_array_equal(grad(F.hardsigmoid), [0, 1 / 6, 0, 0])
    np.testing.assert_array_equal(grad(F.hardswish), [0, 0.5, 1, 1])
    np.testing.assert_allclose(grad(lambda v: F.elu(v, 0.3)), [0.3 * np.exp(-3), 0.3, 1, 1], rtol=1e-15)
    # celu's slope at 0 is 1 for any alpha (PyTorch's own carries a float32 rounding of 1 / alpha)
    np.testing.assert_allclose(grad(lambda v: F.celu(v, 1.3)), [np.exp(-3 / 1.3), 1, 1, 1], rtol=1e-15)
    np.testing.assert_allclose(grad(F.selu), [1.0507009873554805 * 1.6732632423543772 * np.exp(-3),
                                              1.0507009873554805 * 1.6732632423543772, 1.0507009873554805,
                                              1.0507009873554805], rtol=1e-15)
    big = np.array([-1e4, -800.0, 800.0, 1e4])
    np.testing.assert_array_equal(F.logsigmoid(big).data, [-1e4, -800.0, 0.0, 0.0])
    np.testing.assert_array_equal(F.softplus(big).data, [0.0, 0.0, 800.0, 1e4])
    np.testing.assert_array_equal(F.silu(big).data, [0.0, 0.0, 800.0, 1e4])
    np.testing.assert_array_equal(F.mish(big).data, [0.0, 0.0, 800.0, 1e4])
    np.testing.assert_allclose(F.logsigmoid(np.array([-40.0, 40.0])).data, [-40.0, -np.exp(-40.0)], rtol=1e-15)


@pytest.mark.parametrize("shape", [(), (5,), (2, 3)], ids=str)
@pytest.mark.parametrize("name, options, floats", ACTIVATIONS, ids=IDS)
def test_finite_differences_to_second_order(name, options, floats, shape):
    check_grads(lambda v: getattr(F, name)(v, **options), away_from_kinks(shape, seed=len(shape)), order=2)


@pytest.mark.parametrize("name, options, floats", ACTIVATIONS, ids=IDS)
def test_float32_stays_float32(name, options, floats):
    x = inputs((3, 4)).astype(np.float32)
    y = getattr(F, name)(x, **options)
    assert y.dtype == np.float32, name
    g = nk.grad(lambda v: getattr(F, name)(v, **options).sum())(x)
    assert g.dtype == np.float32, name
    torch = oracle("torch")
    yt = getattr(torch.nn.functional, name)(torch.tensor(x), **options).numpy()
    np.testing.assert_allclose(y.data, yt, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name, options, floats", [a for a in ACTIVATIONS if a[2]], ids=[i for i, a in zip(IDS, ACTIVATIONS) if a[2]])
def test_integer_inputs_are_refused_where_the_result_is_a_float(name, options, floats):
    with pytest.raises(TypeError, match=f"{name}: the input must be floating point.*int64.*test_functional"):
        getattr(F, name)(np.arange(3), **options)


def test_softplus_float32_with_the_default_threshold_is_the_one_op():
    x = np.linspace(-30, 30, 61).astype(np.float32)
    source = nk.value_and_grad(lambda v: F.softplus(v).sum()).source(x)
    assert "log1p" in source and "where" not in source
    torch = oracle("torch")
    np.testing.assert_array_equal(F.softplus(x).data[x > 20], x[x > 20])
    np.testing.assert_allclose(F.softplus(x).data, torch.nn.functional.softplus(torch.tensor(x)).numpy(),
                               rtol=1e-6)


# ---- softmax and log_softmax ------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("shape, dim", [((), 0), ((), -1), ((5,), 0), ((3, 4), 1), ((3, 4), 0), ((2, 3, 4), -2)])
def test_softmax_matches_torch(name, shape, dim):
    x = inputs(shape, points=np.array([1000.0, -1000.0, 0.0]))
    cotangent = np.random.default_rng(2).standard_normal(shape)
    fn = lambda v: getattr(F, name)(v, dim)    # noqa: E731
    _compare(name, ours_value_and_grad(fn, x, cotangent), torch_value_and_grad(name, x, cotangent, {"dim": dim}),
             cotangent)
    if shape:
        check_grads(fn, away_from_kinks(shape), order=2)


def test_softmax_dtype_casts_first():
    x = np.array([[1.0, 2.0]], np.float32)
    assert F.softmax(x, 1, dtype=np.float64).dtype == np.float64
    assert F.log_softmax(x, dim=-1).dtype == np.float32


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_refuses_a_bad_dim(name):
    fn = getattr(F, name)
    with pytest.raises(ValueError, match=f"{name}: give dim"):
        fn(np.ones((2, 3)))
    with pytest.raises(nk.ShapeError, match=rf"{name}: dim 2 is out of range .*\(2, 3\).*test_functional"):
        fn(np.ones((2, 3)), 2)
    with pytest.raises(nk.ShapeError, match=f"{name}: dim -2 is out of range"):
        fn(np.ones(()), -2)
    with pytest.raises(TypeError, match=f"{name}: dim must be an int"):
        fn(np.ones((2, 3)), 1.0)


# ---- linear and bilinear ------------------------------------------------------------------------

LINEAR = [((4, 3), (2, 3), (2,)), ((3,), (2, 3), (2,)), ((2, 5, 3), (4, 3), (4,)), ((4, 3), (2, 3), None),
          ((4, 3), (3,), None), ((0, 3), (2, 3), (2,)), ((4, 3), (2, 3), ())]


@pytest.mark.parametrize("x_shape, w_shape, b_shape", LINEAR, ids=str)
def test_linear_matches_torch_and_finite_differences(x_shape, w_shape, b_shape):
    torch = oracle("torch")
    r = np.random.default_rng(0)
    x, w = r.standard_normal(x_shape), r.standard_normal(w_shape)
    arrays = [x, w] + ([r.standard_normal(b_shape)] if b_shape is not None else [])
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = torch.nn.functional.linear(*leaves[:2]) + (leaves[2] if b_shape is not None else 0)
    cotangent = r.standard_normal(yt.shape)
    (yt * torch.tensor(cotangent)).sum().backward()
    fn = lambda *vs: F.linear(*vs)    # noqa: E731
    np.testing.assert_allclose(fn(*arrays).data, yt.detach().numpy(), rtol=1e-13, atol=1e-14)
    grads = nk.grad(lambda *vs: (fn(*vs) * cotangent).sum(), argnums=tuple(range(len(arrays))))(*arrays)
    for g, leaf in zip(grads, leaves):
        np.testing.assert_allclose(g, leaf.grad.numpy(), rtol=1e-13, atol=1e-14)
    if x.size:
        check_grads(fn, *arrays, order=2)


def test_linear_module_builds_the_same_graph_as_before():
    """nn.Linear calls F.linear: one mm_t op for a 2-D input, the same code either way."""
    nk.manual_seed(0)
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 3))
    module_source = nk.value_and_grad(lambda v: (layer(v) ** 2).sum()).source(x)
    functional_source = nk.value_and_grad(lambda v: (F.linear(v, layer.weight, layer.bias) ** 2).sum()).source(x)
    assert module_source == functional_source
    y = nk.from_ndarray(x)
    out = layer(y)
    assert out._node.inputs[0].op.name == "mm_t" and out._node.op.name == "add"


@pytest.mark.parametrize("lead", [(4,), (), (2, 3), (0,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_bilinear_matches_torch_and_finite_differences(lead, bias):
    torch = oracle("torch")
    r = np.random.default_rng(1)
    arrays = [r.standard_normal(lead + (3,)), r.standard_normal(lead + (2,)), r.standard_normal((4, 3, 2))]
    if bias:
        arrays.append(r.standard_normal(4))
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    yt = torch.nn.functional.bilinear(*leaves)
    cotangent = r.standard_normal(yt.shape)
    (yt * torch.tensor(cotangent)).sum().backward()
    np.testing.assert_allclose(F.bilinear(*arrays).data, yt.detach().numpy(), rtol=1e-13, atol=1e-14)
    grads = nk.grad(lambda *vs: (F.bilinear(*vs) * cotangent).sum(), argnums=tuple(range(len(arrays))))(*arrays)
    for g, leaf in zip(grads, leaves):
        np.testing.assert_allclose(g, leaf.grad.numpy(), rtol=1e-13, atol=1e-14)
    if np.prod(lead) > 0:
        check_grads(F.bilinear, *arrays, order=2)


def test_bilinear_module_loads_a_torch_state_dict(tmp_path):
    torch = oracle("torch")
    torch.manual_seed(0)
    ref = torch.nn.Bilinear(3, 2, 4).double()
    np.savez(tmp_path / "bilinear.npz", **{k: v.detach().numpy() for k, v in ref.state_dict().items()})
    layer = nn.Bilinear(3, 2, 4, dtype=np.float64)
    assert set(layer.state_dict()) == {"weight", "bias"}
    layer.load_state_dict(nn.load(tmp_path / "bilinear.npz"))
    r = np.random.default_rng(2)
    x1, x2 = r.standard_normal((5, 3)), r.standard_normal((5, 2))
    np.testing.assert_allclose(layer(x1, x2).data, ref(torch.tensor(x1), torch.tensor(x2)).detach().numpy(),
                               rtol=1e-13)
    assert repr(layer) == repr(ref)


def test_bilinear_module_init_shapes_and_errors():
    nk.manual_seed(0)
    layer = nn.Bilinear(16, 3, 5, bias=False)
    assert layer.weight.shape == (5, 16, 3) and layer.weight.dtype == np.float32 and layer.bias is None
    bound = 1 / np.sqrt(16)
    assert 0.8 * bound < np.abs(layer.weight.data).max() <= bound
    assert layer(nk.ones((2, 16)), nk.ones((2, 3))).dtype == np.float32
    with pytest.raises(nk.ShapeError, match=r"Bilinear\(in1_features=16.*\(2, 16\) and \(3, 3\)"):
        layer(np.ones((2, 16)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="Bilinear: out_features"):
        nn.Bilinear(2, 2, 0)


@pytest.mark.parametrize("call, match", [
    (lambda: F.linear(np.ones((2, 3)), np.ones((2, 4))), r"linear: an input of shape \(2, 3\) does not fit a weight of shape \(2, 4\)"),
    (lambda: F.linear(np.ones(()), np.ones((2, 1))), r"linear: an input of shape \(\)"),
    (lambda: F.linear(np.ones((2, 3)), np.ones((1, 2, 3))), r"weight of shape \(1, 2, 3\)"),
    (lambda: F.linear(np.ones((2, 3)), np.ones((4, 3)), np.ones(3)), r"linear: a bias of shape \(3,\) does not broadcast to the output's shape \(2, 4\)"),
    (lambda: F.bilinear(np.ones((2, 3)), np.ones((3, 2)), np.ones((4, 3, 2))), r"bilinear: inputs of shapes \(2, 3\) and \(3, 2\)"),
    (lambda: F.bilinear(np.ones((2, 3)), np.ones((2, 2)), np.ones((4, 2, 3))), r"weight of shape \(4, 2, 3\)"),
    (lambda: F.bilinear(np.ones((2, 3)), np.ones((2, 2)), np.ones((4, 3, 2)), np.ones(3)), r"bilinear: bias must have the shape \(4,\)"),
])
def test_linear_and_bilinear_refuse_wrong_shapes(call, match):
    with pytest.raises(nk.ShapeError, match=match + ".*test_functional_activations.py"):
        call()


# ---- dropout ------------------------------------------------------------------------------------

def test_dropout():
    nk.manual_seed(0)
    x = np.ones((200, 100))
    y = F.dropout(x, 0.25).data
    assert set(np.unique(y)) == {0.0, 1 / 0.75} and abs((y == 0).mean() - 0.25) < 0.01
    np.testing.assert_array_equal(F.dropout(x, 0.25, training=False).data, x)
    np.testing.assert_array_equal(F.dropout(x, 0.0).data, x)
    np.testing.assert_array_equal(F.dropout(x, 1.0).data, 0 * x)
    v = nk.from_ndarray(x)
    assert F.dropout(v, 0.5, training=False) is v and F.dropout(v, 0.0) is v
    assert F.dropout(x.astype(np.float32), 0.5, inplace=True).dtype == np.float32
    # the module calls it: the same node in training, the input itself in evaluation
    layer = nn.Dropout(0.5)
    assert layer(v)._node.op.name == "dropout" and layer.eval()(v) is v


@pytest.mark.parametrize("p", [-0.1, 1.5, float("nan"), "half"])
def test_dropout_refuses_a_bad_p(p):
    with pytest.raises(ValueError, match=f"dropout: p must be in .*{p}.*test_functional"):
        F.dropout(np.ones(3), p)


# ---- embedding and one_hot ----------------------------------------------------------------------

@pytest.mark.parametrize("padding_idx", [None, 1, -1])
def test_embedding_matches_torch(padding_idx):
    torch = oracle("torch")
    r = np.random.default_rng(3)
    weight = r.standard_normal((4, 3))
    idx = np.array([[0, 1, 3], [1, 1, 2]])
    wt = torch.tensor(weight, requires_grad=True)
    yt = torch.nn.functional.embedding(torch.tensor(idx), wt, padding_idx=padding_idx)
    cotangent = r.standard_normal(yt.shape)
    (yt * torch.tensor(cotangent)).sum().backward()
    np.testing.assert_array_equal(F.embedding(idx, weight, padding_idx).data, yt.detach().numpy())
    g = nk.grad(lambda w: (F.embedding(idx, w, padding_idx) * cotangent).sum())(weight)
    np.testing.assert_allclose(g, wt.grad.numpy(), rtol=1e-14)
    if padding_idx is None:               # a padding row passes no gradient: no finite differences
        check_grads(lambda w: F.embedding(idx, w), weight, order=2)


def test_embedding_module_padding_row_and_torch_state(tmp_path):
    torch = oracle("torch")
    nk.manual_seed(0)
    layer = nn.Embedding(5, 3, padding_idx=-2, dtype=np.float64)
    assert layer.padding_idx == 3 and np.all(layer.weight.data[3] == 0)
    torch.manual_seed(0)
    ref = torch.nn.Embedding(5, 3, padding_idx=3).double()
    assert repr(layer) == repr(ref)
    np.savez(tmp_path / "emb.npz", **{k: v.detach().numpy() for k, v in ref.state_dict().items()})
    layer.load_state_dict(nn.load(tmp_path / "emb.npz"))
    idx = np.array([3, 0, 3, 4])
    out = layer(idx)
    np.testing.assert_array_equal(out.data, ref(torch.tensor(idx)).detach().numpy())
    out.sum().backward()
    np.testing.assert_array_equal(layer.weight.grad[:, 0], [1, 0, 0, 0, 1])


def test_embedding_errors():
    w = np.ones((4, 2))
    with pytest.raises(IndexError, match=r"embedding: indices must be in \[0, 4\).*test_functional"):
        F.embedding(np.array([4]), w)
    with pytest.raises(TypeError, match="embedding: indices must be integers"):
        F.embedding(np.array([0.5]), w)
    with pytest.raises(ValueError, match=r"embedding: padding_idx must be an int in \[-4, 4\)"):
        F.embedding(np.array([0]), w, padding_idx=4)
    with pytest.raises(nk.ShapeError, match="embedding: the weight must be 2-D"):
        F.embedding(np.array([0]), np.ones(4))
    with pytest.raises(NotImplementedError, match="embedding: max_norm"):
        F.embedding(np.array([0]), w, max_norm=1.0)
    with pytest.raises(NotImplementedError, match="scale_grad_by_freq"):
        F.embedding(np.array([0]), w, scale_grad_by_freq=True)
    with pytest.raises(ValueError, match="Embedding: padding_idx"):
        nn.Embedding(4, 2, padding_idx=4)
    with pytest.raises(IndexError, match=r"Embedding\(4, 2\): indices must be in"):
        nn.Embedding(4, 2)(np.array([-1]))


@pytest.mark.parametrize("indices, num_classes", [(np.array([0, 3, 1]), -1), (np.array([[0, 2], [1, 1]]), 5),
                                                  (np.array(2), 3), (np.zeros(0, np.int64), 4),
                                                  (np.array([1, 0], np.uint8), 2)])
def test_one_hot_matches_torch(indices, num_classes):
    torch = oracle("torch")
    y = F.one_hot(indices, num_classes)
    want = torch.nn.functional.one_hot(torch.tensor(indices.astype(np.int64)), num_classes).numpy()
    assert y.dtype == np.int64 and not isinstance(y, nk.VarDiff)
    np.testing.assert_array_equal(y.data, want)


def test_one_hot_inside_a_traced_function_checks_each_call():
    g = nk.grad(lambda x, t: (F.one_hot(t, 3) * x).sum())
    np.testing.assert_array_equal(g(np.ones((2, 3)), np.array([0, 2])), [[1, 0, 0], [0, 0, 1]])
    with pytest.raises(IndexError, match="one_hot"):
        g(np.ones((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="one_hot: num_classes=-1 needs the values"):
        nk.grad(lambda x, t: (F.one_hot(t) * x).sum())(np.ones((2, 3)), np.array([0, 2]))


@pytest.mark.parametrize("call, error, match", [
    (lambda: F.one_hot(np.array([0, 4]), 4), IndexError, r"one_hot: class values must be in \[0, 4\), got 4"),
    (lambda: F.one_hot(np.array([0, -1])), IndexError, "got -1"),
    (lambda: F.one_hot(np.array([0.0])), TypeError, "one_hot: the input must hold integer"),
    (lambda: F.one_hot(np.zeros(0, np.int64)), ValueError, "one_hot: cannot infer num_classes"),
    (lambda: F.one_hot(np.array([0]), -2), ValueError, "one_hot: num_classes must be"),
])
def test_one_hot_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---- modules ------------------------------------------------------------------------------------

@pytest.mark.parametrize("module, torch_name, args", MODULES, ids=[f"{m!r}" for m, _, _ in MODULES])
def test_modules_match_torch_nn(module, torch_name, args):
    torch = oracle("torch")
    ref = getattr(torch.nn, torch_name)(*args)
    x = inputs((2, 6, 3), seed=4)
    np.testing.assert_allclose(module(x).data, ref(torch.tensor(x)).numpy(), rtol=1e-12, atol=1e-300)
    assert module(x.astype(np.float32)).dtype == np.float32
    if torch_name != "Identity":
        assert repr(module) == repr(ref)


def test_inplace_is_accepted_and_ignored():
    x = nk.from_ndarray(np.array([-1.0, 2.0]))
    for module in (nn.ReLU(True), nn.ReLU6(inplace=True), nn.ELU(inplace=True), nn.SiLU(inplace=True),
                   nn.Hardtanh(inplace=True), nn.LeakyReLU(inplace=True), nn.Dropout(0.2, inplace=True)):
        assert "inplace=True" in repr(module)
        module.eval()(x)
        np.testing.assert_array_equal(x.data, [-1.0, 2.0])
    np.testing.assert_array_equal(F.relu(x, inplace=True).data, [0.0, 2.0])
    np.testing.assert_array_equal(x.data, [-1.0, 2.0])


def test_modules_calling_functions_keep_their_graphs():
    """ReLU, LeakyReLU, Tanh, Sigmoid, Softplus (float32), Softmax, LogSoftmax: one op each, as before."""
    x = nk.from_ndarray(np.ones((2, 3), np.float32))
    for module, op in [(nn.ReLU(), "relu"), (nn.LeakyReLU(), "leaky_relu"), (nn.Tanh(), "tanh"),
                       (nn.Sigmoid(), "sigmoid"), (nn.Softplus(), "softplus"), (nn.Softmax(1), "softmax"),
                       (nn.LogSoftmax(), "log_softmax"), (nn.GELU(), "gelu")]:
        y = module(x)
        assert y._node.op.name == op and y._node.inputs[0] is x._node, module


def test_module_options_are_checked():
    for make, match in [(lambda: nn.CELU(0.0), "CELU: alpha must not be 0"),
                        (lambda: nn.ELU(float("nan")), "ELU: alpha"),
                        (lambda: nn.Hardtanh(1.0, -1.0), "Hardtanh: min_val cannot be greater"),
                        (lambda: nn.Softplus(beta=0), "Softplus: beta must not be 0"),
                        (lambda: nn.Softmax(None), "Softmax: give dim"),
                        (lambda: nn.LogSoftmax(dim=1.5), "LogSoftmax: dim must be an int"),
                        (lambda: nn.Flatten(end_dim="x"), "Flatten: end_dim must be an int"),
                        (lambda: nn.Unflatten(1, (2, -1, -1)), "Unflatten: unflattened_size"),
                        (lambda: nn.Unflatten(1, ()), "Unflatten: unflattened_size"),
                        (lambda: nn.Unflatten(1, (0, 2)), "Unflatten: unflattened_size")]:
        with pytest.raises(ValueError, match=match):
            make()
    with pytest.raises(ValueError, match="celu: alpha must not be 0"):
        F.celu(np.ones(2), 0.0)
    with pytest.raises(ValueError, match="hardtanh: min_val cannot be greater than max_val"):
        F.hardtanh(np.ones(2), 2.0, 1.0)
    with pytest.raises(ValueError, match="softplus: beta must not be 0"):
        F.softplus(np.ones(2), beta=0.0)
    with pytest.raises(ValueError, match="leaky_relu: negative_slope"):
        F.leaky_relu(np.ones(2), float("inf"))


def test_flatten_keeps_its_earlier_signature_and_takes_pytorchs():
    x = nk.ones((2, 3, 4, 5))
    assert nn.Flatten(start_axis=2)(x).shape == (2, 3, 20) and nn.Flatten(start_axis=2).start_axis == 2
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5) and nn.Flatten(-3, -2)(x).shape == (2, 12, 5)
    assert nn.Flatten(0, -1)(x).shape == (120,) and nn.Flatten(2, 2)(x).shape == (2, 3, 4, 5)
    assert nn.Softmax(axis=0).dim == 0 and nn.Softmax(axis=0).axis == 0
    with pytest.raises(nk.ShapeError, match=r"Flatten\(start_dim=2, end_dim=1\): start_dim comes after end_dim"):
        nn.Flatten(2, 1)(x)
    with pytest.raises(nk.ShapeError, match="Flatten"):
        nn.Flatten(1, 4)(x)


def test_flatten_and_unflatten_share_one_program_over_batch_sizes():
    layer = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (3, -1)))
    for n in (2, 5):
        assert layer(nk.ones((n, 3, 4))).shape == (n, 3, 4)
    assert layer(nk.ones((0, 3, 4))).shape == (0, 3, 4)
    with pytest.raises(nk.ShapeError, match=r"Unflatten\(dim=1, unflattened_size=\(3, -1\)\): the sizes .* do not "
                                            r"multiply up to the size 10"):
        nn.Unflatten(1, (3, -1))(nk.ones((2, 10)))
    with pytest.raises(nk.ShapeError, match="Unflatten"):
        nn.Unflatten(2, (3, 4))(nk.ones((2, 12)))


# ---- what the module exports ----------------------------------------------------------------------

PUBLIC = ["relu", "relu6", "leaky_relu", "elu", "selu", "celu", "gelu", "silu", "mish", "softplus", "softsign",
          "hardtanh", "hardsigmoid", "hardswish", "sigmoid", "tanh", "softmax", "log_softmax", "logsigmoid",
          "linear", "bilinear", "dropout", "embedding", "one_hot", "cross_entropy", "mse_loss", "layer_norm",
          "batch_norm"]


def test_functional_exports_its_functions_and_leaks_no_module_names():
    import types
    for name in PUBLIC:
        assert name in F.__all__ and callable(getattr(F, name)), name
    assert len(set(F.__all__)) == len(F.__all__)
    for name in F.__all__:
        assert callable(getattr(F, name)), name
    for leaked in ("np", "Var", "apply", "leaf", "modes", "backend", "from_ndarray", "integer", "number",
                   "annotations", "math", "numbers"):
        assert not hasattr(F, leaked), leaked
    public = [n for n in dir(F) if not n.startswith("_")]
    assert not [n for n in public if isinstance(getattr(F, n), (types.ModuleType, type))]
    assert sorted(public) == sorted(F.__all__)          # nothing public outside __all__
    namespace = {}
    exec("from neuronika.nn.functional import *", namespace)
    assert sorted(n for n in namespace if n != "__builtins__") == sorted(F.__all__)


def test_nn_exports_the_new_modules():
    for name in ("ReLU6", "ELU", "SELU", "CELU", "SiLU", "Mish", "Hardtanh", "Hardsigmoid", "Hardswish",
                 "Softsign", "LogSigmoid", "Bilinear", "Unflatten", "Flatten"):
        assert name in nn.__all__ and issubclass(getattr(nn, name), nn.Module), name


def test_functions_keep_another_array_librarys_arrays():
    xp = pytest.importorskip("array_api_strict")
    x = np.array([-4.0, -1.0, 0.5, 3.0, 7.0])
    for name, options, _ in ACTIVATIONS:
        fn = lambda v: getattr(F, name)(v, **options)    # noqa: E731
        y = fn(xp.asarray(x))
        g = nk.grad(lambda v: fn(v).sum())(xp.asarray(x))
        assert type(y.data) is type(xp.asarray(x)) and type(g) is type(xp.asarray(x)), name
        np.testing.assert_allclose(np.asarray(y.data), fn(x).data, rtol=1e-14, err_msg=name)
    np.testing.assert_array_equal(np.asarray(F.one_hot(xp.asarray([0, 2]), 3).data), [[1, 0, 0], [0, 0, 1]])
    y = F.bilinear(xp.ones((2, 5)), xp.ones((2, 2)), xp.ones((3, 5, 2)), xp.zeros(3))
    np.testing.assert_array_equal(np.asarray(F.linear(y, xp.ones((1, 3))).data), [[30.0], [30.0]])
