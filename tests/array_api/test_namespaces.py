"""Arrays of other libraries: the namespace in the cache key, mismatch errors, moving leaves and
modules, and a Linear + ReLU + cross-entropy training step (forward, backward, SGD) under
array-api-strict equal to NumPy's."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import backend, nn
from neuronika.backend import NamespaceError
from neuronika.nn import functional as F

xs = pytest.importorskip("array_api_strict")
ARRAY = xs._array_object.Array


def _model():
    nk.manual_seed(3)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def _step(model, x, t, lr=0.1):
    loss = F.cross_entropy(model(x), t)
    loss.backward()
    grads = [backend.to_numpy(p.grad) for p in model.parameters()]
    with nk.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
            p.zero_grad()
    return float(backend.to_numpy(loss.data)), grads


@pytest.mark.parametrize("compile_mode", ["never", "always"])
def test_linear_relu_cross_entropy_sgd_matches_numpy(compile_mode):
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 8)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0, 2])
    with nk.config(compile=compile_mode):
        cpu, strict = _model(), _model().to(xs)
        assert all(isinstance(p.data, ARRAY) for p in strict.parameters())
        for _ in range(3):
            want, want_grads = _step(cpu, nk.from_ndarray(data), labels)
            got, got_grads = _step(strict, nk.from_ndarray(xs.asarray(data)), nk.from_ndarray(xs.asarray(labels)))
            assert got == pytest.approx(want, rel=1e-6)
            for g, w in zip(got_grads, want_grads):
                np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)
        for p, q in zip(strict.parameters(), cpu.parameters()):
            assert isinstance(p.data, ARRAY)
            np.testing.assert_allclose(backend.to_numpy(p.data), q.data, rtol=1e-5, atol=1e-7)


def test_the_same_graph_gets_one_program_per_namespace():
    a = np.ones((2, 3), np.float32)
    cpu = (nk.from_ndarray(a).requires_grad().tanh() * 2.0).sum()
    strict = (nk.from_ndarray(xs.asarray(a)).requires_grad().tanh() * 2.0).sum()
    assert cpu.source() == strict.source()           # the same generated code ...
    from neuronika.graph import linearize
    assert linearize(cpu._node)[2] != linearize(strict._node)[2]    # ... under two keys
    cpu.backward()
    strict.backward()
    assert isinstance(strict.data, ARRAY)


def test_mixing_namespaces_names_both():
    x = nk.ones(3)
    y = nk.from_ndarray(xs.asarray(np.ones(3, np.float32)))
    with pytest.raises(NamespaceError, match="array_api_strict.*numpy|numpy.*array_api_strict") as info:
        x + y
    assert "test_namespaces.py" in str(info.value)
    other = nk.from_ndarray(xs.asarray(np.ones(3, np.float32), device=xs.Device("device1")))
    with pytest.raises(NamespaceError, match="device1"):
        y * other
    assert isinstance((y * 2.0 + 1).data, ARRAY)      # numbers join any namespace


def test_a_numpy_only_op_refuses_by_name():
    y = nk.from_ndarray(xs.asarray(np.eye(3)))
    with pytest.raises(NamespaceError, match="eig: not available for arrays of array_api_strict.*"
                                             "not in the array-API standard"):
        nk.numpy.linalg.eig(y)


def test_indexing_a_matrix_by_a_row_runs_in_the_standard():
    """x[0] on a 2-d value: the generated key ends in ``...`` (the standard wants every axis
    named), the row number is an int where the key mixes it with slices."""
    data = np.arange(12.0).reshape(3, 4)
    for make in (np.asarray, xs.asarray):
        x = nk.from_ndarray(make(data)).requires_grad()
        y = x[0] * 2.0 + x[1:, 2].sum() + x[-1, ::2].sum()
        y.sum().backward()
        np.testing.assert_array_equal(backend.to_numpy(y.data), data[0] * 2.0 + data[1:, 2].sum() + data[-1, ::2].sum())
        grad = np.zeros((3, 4))
        grad[0] += 2.0
        grad[1:, 2] += 4.0
        grad[-1, ::2] += 4.0
        np.testing.assert_array_equal(backend.to_numpy(x.grad), grad)


def test_var_to_and_back():
    x = nk.from_ndarray(np.arange(3.0))
    s = x.to(xs)
    assert isinstance(s.data, ARRAY) and s.device == xs.Device("CPU_DEVICE") and x.device == "cpu"
    back = s.to("cpu", dtype=np.float32)
    assert back.dtype == np.float32 and isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.data, [0, 1, 2])
    w = nk.ones(2).requires_grad().to(xs)
    assert type(w).__name__ == "VarDiff" and w.is_leaf
    with pytest.raises(nk.errors.GradientError):
        (w * 2).to("cpu")


def test_module_to_device_and_dtype():
    model = nn.Linear(2, 2).to(xs, np.float64)
    assert model.weight.dtype == np.float64 and isinstance(model.weight.data, ARRAY)
    model.to("cpu")
    assert isinstance(model.weight.data, np.ndarray)
    model.to(dtype=np.float32)
    assert model.weight.dtype == np.float32


def test_cupy_when_present():
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (pip install 'neuronika[gpu]')")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:
        count = 0
    if not count:
        pytest.skip("no CUDA device")
    x = nk.from_ndarray(cupy.ones((2, 3), cupy.float32)).requires_grad()
    loss = (x.tanh() * 2.0).sum()
    loss.backward()
    assert isinstance(x.grad, cupy.ndarray)
    np.testing.assert_allclose(x.grad.get(), 2 * (1 - np.tanh(1.0) ** 2), rtol=1e-6)


OPTIMIZERS = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
              ("SGD", dict(lr=0.1, penalty="elastic")), ("Adam", dict(lr=0.01, amsgrad=True)),
              ("AdamW", {}), ("RMSprop", dict(centered=True, momentum=0.5)),
              ("Adagrad", dict(initial_accumulator_value=0.1)), ("Adamax", {})]


@pytest.mark.parametrize("name, options", OPTIMIZERS)
def test_optimizers_and_clipping_train_as_on_numpy(name, options):
    from neuronika import optim
    options = dict(options)
    if options.get("penalty") == "elastic":
        options["penalty"] = optim.ElasticNet(0.01, 0.02)
    rng = np.random.default_rng(4)
    data, labels = rng.random((6, 8)), np.array([0, 2, 1, 1, 0, 2])

    def train(space):
        nk.manual_seed(3)
        model = nn.Sequential(nn.Linear(8, 16, dtype=np.float64), nn.ReLU(), nn.Linear(16, 3, dtype=np.float64))
        x, y = nk.from_ndarray(data), nk.from_ndarray(labels)
        if space is not None:
            model, x, y = model.to(space), x.to(space), y.to(space)
        optimizer = getattr(optim, name)(model.parameters(), **options)
        for step in range(5):
            F.cross_entropy(model(x), y).backward()
            optim.clip_grad_norm_(model.parameters(), 1.0)
            optim.clip_grad_value_(model.parameters(), 0.5)
            optimizer.step()
            optimizer.zero_grad()
            if step == 2:                      # a state dict saved and loaded mid-way
                optimizer.load_state_dict(optimizer.state_dict())
        return [backend.to_numpy(p.data) for p in model.parameters()]

    for got, want in zip(train(xs), train(None)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("build", [
    lambda x: nk.numpy.linalg.eigvals(x.reshape((4, 4))),
    lambda x: nk.numpy.linalg.lstsq(x.reshape((4, 4)), x[:4])[0],
])
def test_ops_beyond_the_standard_refuse_other_libraries_by_name(build):
    x = nk.from_ndarray(xs.asarray(np.arange(16.0)))
    with pytest.raises(NamespaceError, match="not available for arrays of array_api_strict"):
        build(x)


@pytest.mark.parametrize("x_shape, w_shape, stride, dilation, groups", [
    ((2, 3, 9), (4, 3, 3), 2, 1, 1),                       # 1-d, strided
    ((2, 4, 7, 6), (6, 2, 3, 2), (2, 1), (1, 2), 2),       # 2-d, grouped and dilated
    ((1, 2, 5, 4, 4), (3, 2, 2, 2, 3), 1, 1, 1),           # 3-d
])
def test_convolution_runs_in_the_standard_as_on_numpy(x_shape, w_shape, stride, dilation, groups):
    from neuronika.nn.conv import conv
    rng = np.random.default_rng(7)
    x0, w0 = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    seed = rng.standard_normal((2,) if len(x_shape) == 3 else (1,))

    def run(space, mode):
        x, w = nk.from_ndarray(x0).requires_grad(), nk.from_ndarray(w0).requires_grad()
        if space is not None:
            x, w = x.to(space), w.to(space)
        with nk.config(compile=mode):
            y = conv(x, w, stride=stride, dilation=dilation, groups=groups)
            loss = (y * y).sum() * float(seed[0])
            loss.backward()
        return [backend.to_numpy(v) for v in (loss.data, y.data, x.grad, w.grad)]

    for mode in ("never", "always"):
        for got, want in zip(run(xs, mode), run(None, mode)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 1), ((2, 3), (1, 2))])
def test_pooling_runs_in_the_standard_as_on_numpy(kind, kernel, stride):
    rng = np.random.default_rng(9)
    x0 = rng.integers(0, 4, (2, 3, 6, 7)).astype(np.float64)      # ties: the first maximum wins
    layer = (nn.MaxPool2d if kind == "max" else nn.AvgPool2d)(kernel, stride)

    def run(space, mode):
        x = nk.from_ndarray(x0).requires_grad()
        if space is not None:
            x = x.to(space)
        with nk.config(compile=mode):
            y = layer(x)
            loss = (y * y * y).sum()
            loss.backward()
        return [backend.to_numpy(v) for v in (y.data, x.grad)]

    for mode in ("never", "always"):
        for got, want in zip(run(xs, mode), run(None, mode)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate"])
def test_padded_convolutions_run_in_the_standard_as_on_numpy(mode):
    rng = np.random.default_rng(10)
    x0 = rng.standard_normal((2, 2, 5, 6))

    def run(space, compile_mode):
        nk.manual_seed(5)
        layer = nn.Conv2d(2, 3, 3, padding=(1, 2), padding_mode=mode, dtype=np.float64)
        x = nk.from_ndarray(x0).requires_grad()
        if space is not None:
            layer, x = layer.to(space), x.to(space)
        with nk.config(compile=compile_mode):
            y = layer(x)
            (y * y).sum().backward()
        return [backend.to_numpy(v) for v in (y.data, x.grad, layer.weight.grad)]

    for compile_mode in ("never", "always"):
        for got, want in zip(run(xs, compile_mode), run(None, compile_mode)):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("key", [
    lambda a, b: (a, slice(None), b), lambda a, b: (slice(None), a, b), lambda a, b: (None, a, 0),
    lambda a, b: (1, slice(None), a), lambda a, b: (a, None, a), lambda a, b: (Ellipsis, a, b),
    lambda a, b: (slice(0, 2), a, b, slice(None)), lambda a, b: (a, b), lambda a, b: (0, a, None, 2),
])
def test_the_generic_gather_is_numpys_advanced_indexing(key):
    from neuronika.ops.kernels import TABLE
    x = np.arange(120.0).reshape(2, 3, 4, 5)
    a, b = np.array([1, 0, 1]), np.array([[2], [-1]])
    space = backend.namespace(xs)
    got = TABLE["gather"]["generic"](space, xs.asarray(x), key(xs.asarray(a), xs.asarray(b)))
    np.testing.assert_array_equal(backend.to_numpy(got), x[key(a, b)])


@pytest.mark.parametrize("spec, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ii->i", [(3, 3)]), ("iij->ji", [(3, 3, 2)]),
    ("ij,j->", [(2, 3), (3,)]), ("ab,bc,cd->ad", [(2, 3), (3, 2), (2, 2)]), ("ijk->kji", [(2, 3, 4)]),
])
def test_the_generic_einsum_is_numpys(spec, shapes):
    from neuronika.ops.kernels import TABLE
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    got = TABLE["einsum_small"]["generic"](backend.namespace(xs), spec, *[xs.asarray(a) for a in arrays])
    np.testing.assert_allclose(backend.to_numpy(got), np.einsum(spec, *arrays), rtol=1e-13, atol=1e-14)


def test_loss_weights_and_targets_given_as_raw_arrays_of_the_library():
    from neuronika.nn import functional as F
    rng = np.random.default_rng(2)
    logits, labels, weight = rng.standard_normal((4, 3)), np.array([0, 1, 2, 1]), np.array([1.0, 2.0, 0.5])
    x = nk.from_ndarray(xs.asarray(logits)).requires_grad()
    loss = F.cross_entropy(x, nk.from_ndarray(xs.asarray(labels)), weight=xs.asarray(weight))
    loss.backward()
    want = nk.from_ndarray(logits).requires_grad()
    expected = F.cross_entropy(want, labels, weight=weight)
    expected.backward()
    np.testing.assert_allclose(backend.to_numpy(loss.data), expected.data, rtol=1e-13)
    np.testing.assert_allclose(backend.to_numpy(x.grad), want.grad, rtol=1e-13)
    target = rng.standard_normal((4, 3))
    np.testing.assert_allclose(backend.to_numpy(F.mse_loss(x, xs.asarray(target)).data),
                               F.mse_loss(nk.from_ndarray(logits), target).data, rtol=1e-13)
