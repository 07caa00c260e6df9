"""F.conv1d/2d/3d, F.conv_transpose1d/2d/3d and nn.ConvTranspose1d/2d/3d: values and
gradients (input, weight, bias) equal to PyTorch's in float64 over strides, paddings,
dilations, groups and output_padding; central finite differences to second order; the
transposed convolution as the adjoint of the convolution; PyTorch state dicts loaded from
npz; float32 kept; errors naming the function, the shapes and the user's line."""
from __future__ import annotations

import math

import numpy as np
import pytest

import neuronika as nk
from neuronika.errors import ShapeError
from neuronika.nn import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from neuronika.nn import functional as F
from neuronika.testing import check_grads, oracle

# torch's note that its 'same' padding of an even kernel copies the input
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

TRANSPOSED = {1: ConvTranspose1d, 2: ConvTranspose2d, 3: ConvTranspose3d}


def rand(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, shape)


def value_and_grads(fn, *arrays):
    return nk.value_and_grad(fn, argnums=tuple(range(len(arrays))))(*arrays)


def torch_value_and_grads(torch_fn, cot, *arrays):
    torch = oracle("torch")
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = torch_fn(*ts)
    (y * torch.tensor(cot)).sum().backward()
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


def compare(ours, theirs, arrays, kwargs, batch=True):
    """ours(x, w, b, **kwargs) against theirs (torch) in float64: values and the gradients
    of <y, cot> with respect to x, w and b."""
    y = ours(*arrays, **kwargs)
    cot = rand(y.shape, seed=7)
    value, grads = value_and_grads(lambda *v: (ours(*v, **kwargs) * cot).sum(), *arrays)
    want_y, want_grads = torch_value_and_grads(lambda *t: theirs(*t, **kwargs), cot, *arrays)
    np.testing.assert_allclose(y.data, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(value, (want_y * cot).sum(), rtol=1e-12, atol=1e-12)
    for g, want in zip(grads, want_grads):
        assert g.dtype == np.float64
        np.testing.assert_allclose(g, want, rtol=1e-11, atol=1e-12)


# ---- conv1d/2d/3d against torch ------------------------------------------------------------------

# (dims, n, c_in, c_out, kernel, size, keyword arguments)
CONV_CASES = [
    (1, 2, 3, 4, 3, (10,), {}),
    (1, 1, 4, 6, 5, (11,), dict(stride=2, padding=2, groups=2)),
    (1, 3, 2, 2, 2, (9,), dict(stride=3, padding=1, dilation=2, groups=2)),
    (1, 2, 3, 5, 4, (8,), dict(padding="same", dilation=2)),
    (2, 2, 3, 4, 3, (7, 6), dict(padding=1)),
    (2, 1, 4, 4, (3, 2), (9, 8), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=4)),
    (2, 2, 6, 3, (2, 3), (8, 7), dict(stride=3, padding=2, dilation=2, groups=3)),
    (2, 1, 2, 3, (4, 3), (5, 6), dict(padding="same")),
    (2, 2, 2, 3, 3, (5, 5), dict(padding="valid")),
    (3, 1, 2, 4, 2, (4, 3, 5), dict(padding=1)),
    (3, 2, 4, 2, (1, 3, 2), (3, 5, 6), dict(stride=(2, 1, 1), padding=(0, 1, 1), dilation=(1, 1, 2),
                                            groups=2)),
]


def conv_arrays(case, bias=True):
    dims, n, c_in, c_out, k, size, kw = case
    k = (k,) * dims if isinstance(k, int) else k
    groups = kw.get("groups", 1)
    x = rand((n, c_in) + size, 1)
    w = rand((c_out, c_in // groups) + k, 2)
    return (x, w, rand((c_out,), 3)) if bias else (x, w)


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_equals_torch(case):
    torch = oracle("torch")
    dims, kw = case[0], case[-1]
    ours, theirs = getattr(F, f"conv{dims}d"), getattr(torch.nn.functional, f"conv{dims}d")
    compare(ours, theirs, conv_arrays(case), kw)
    compare(ours, theirs, conv_arrays(case, bias=False), kw)


def test_conv_unbatched_and_keyword_bias_equal_torch():
    torch = oracle("torch")
    x, w, b = rand((3, 9, 7), 1), rand((4, 3, 3, 2), 2), rand(4, 3)
    y = F.conv2d(x, w, bias=b, stride=2, padding=(1, 0))
    want = torch.nn.functional.conv2d(torch.tensor(x), torch.tensor(w), bias=torch.tensor(b), stride=2,
                                      padding=(1, 0))
    assert y.shape == tuple(want.shape)
    np.testing.assert_allclose(y.data, want.numpy(), rtol=1e-12, atol=1e-12)


def test_conv_module_calls_the_function():
    x = rand((2, 3, 8), 1)
    layer = Conv1d(3, 4, 3, stride=2, padding=1, dtype=np.float64)
    np.testing.assert_array_equal(layer(x).data,
                                  F.conv1d(x, layer.weight, layer.bias, stride=2, padding=1).data)
    layer = Conv2d(2, 4, 3, padding=1, padding_mode="reflect", bias=False, dtype=np.float64)
    x = rand((1, 2, 5, 6), 1)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    np.testing.assert_allclose(layer(x).data, F.conv2d(padded, layer.weight).data, rtol=1e-13)


# ---- conv_transpose1d/2d/3d against torch --------------------------------------------------------

# (dims, n, c_in, c_out, kernel, size, keyword arguments); the weight is (c_in, c_out / groups, *k)
TRANSPOSE_CASES = [
    (1, 2, 3, 4, 3, (5,), {}),
    (1, 1, 4, 6, 4, (7,), dict(stride=2, padding=1, output_padding=1, groups=2)),
    (1, 3, 2, 2, 2, (5,), dict(stride=3, padding=2, output_padding=2, dilation=2, groups=2)),
    (1, 2, 2, 3, 3, (4,), dict(stride=1, output_padding=2, dilation=3)),    # output_padding >= stride
    (1, 1, 2, 3, 3, (4,), dict(stride=2, padding=4, output_padding=2, dilation=3)),  # crop into it
    (2, 2, 3, 4, 3, (4, 5), dict(stride=2, padding=1, output_padding=1)),
    (2, 1, 4, 4, (3, 2), (5, 4), dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0),
                                      dilation=(1, 2), groups=4)),
    (2, 2, 6, 3, (2, 3), (3, 4), dict(stride=3, padding=2, output_padding=(2, 1), dilation=2, groups=3)),
    (2, 1, 2, 3, 3, (3, 3), dict(padding=(2, 1))),
    (3, 1, 2, 4, 2, (2, 3, 2), dict(stride=2, padding=1, output_padding=1)),
    (3, 2, 4, 2, (1, 3, 2), (3, 2, 3), dict(stride=(2, 1, 2), padding=(0, 1, 1), output_padding=(1, 0, 0),
                                            dilation=(1, 1, 2), groups=2)),
]


def transpose_arrays(case, bias=True):
    dims, n, c_in, c_out, k, size, kw = case
    k = (k,) * dims if isinstance(k, int) else k
    groups = kw.get("groups", 1)
    x = rand((n, c_in) + size, 1)
    w = rand((c_in, c_out // groups) + k, 2)
    return (x, w, rand((c_out,), 3)) if bias else (x, w)


def transposed_size(size, k, stride=1, padding=0, output_padding=0, dilation=1):
    return (size - 1) * stride - 2 * padding + dilation * (k - 1) + output_padding + 1


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
def test_conv_transpose_equals_torch(case):
    torch = oracle("torch")
    dims, kw = case[0], case[-1]
    ours = getattr(F, f"conv_transpose{dims}d")
    theirs = getattr(torch.nn.functional, f"conv_transpose{dims}d")
    arrays = transpose_arrays(case)
    y = ours(*arrays, **kw)
    per_axis = {key: (v,) * dims if isinstance(v, int) else v for key, v in kw.items() if key != "groups"}
    want = tuple(transposed_size(s, k, *(per_axis.get(key, (d,) * dims)[i] for key, d in
                                         (("stride", 1), ("padding", 0), ("output_padding", 0),
                                          ("dilation", 1))))
                 for i, (s, k) in enumerate(zip(arrays[0].shape[2:], arrays[1].shape[2:])))
    assert y.shape == arrays[0].shape[:1] + (case[3],) + want
    compare(ours, theirs, arrays, kw)
    compare(ours, theirs, transpose_arrays(case, bias=False), kw)


def test_conv_transpose_unbatched_equals_torch():
    torch = oracle("torch")
    x, w, b = rand((4, 3, 5), 1), rand((4, 1, 2, 3), 2), rand(2, 3)
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    y = F.conv_transpose2d(x, w, b, **kw)
    want = torch.nn.functional.conv_transpose2d(torch.tensor(x), torch.tensor(w), torch.tensor(b), **kw)
    assert y.shape == tuple(want.shape) == (2, 5, 10)
    np.testing.assert_allclose(y.data, want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in TRANSPOSE_CASES if c[-1].get("output_padding", 0) == 0
                                  and not c[-1].get("padding")], ids=str)
def test_conv_transpose_is_the_adjoint_of_conv(case):
    """<conv(z, w), x> == <z, conv_transpose(x, w)>: the transposed layer's weight is the
    convolution's kernel, as in PyTorch."""
    x, w = transpose_arrays(case, bias=False)
    kw = {key: v for key, v in case[-1].items()}
    dims = case[0]
    y = getattr(F, f"conv_transpose{dims}d")(x, w, **kw).data
    z = rand(y.shape, 5)
    conv = getattr(F, f"conv{dims}d")(z, w, **kw).data
    np.testing.assert_allclose((conv * x).sum(), (z * y).sum(), rtol=1e-12)


# ---- finite differences, first and second order -----------------------------------------------------

FD_CONV = [
    (1, 2, 2, 4, 3, (6,), dict(stride=2, padding=1, groups=2)),
    (1, 1, 3, 2, 2, (7,), dict(dilation=2, padding="same")),
    (2, 2, 2, 2, (2, 3), (4, 5), dict(stride=(1, 2), padding=(1, 0), dilation=(2, 1))),
    (3, 1, 2, 2, 2, (3, 3, 2), dict(padding=(1, 0, 1), groups=2)),
]
FD_TRANSPOSE = [
    (1, 2, 2, 4, 3, (3,), dict(stride=2, padding=1, output_padding=1, groups=2)),
    (1, 1, 2, 1, 2, (3,), dict(output_padding=1, dilation=2)),
    (2, 2, 2, 3, (2, 3), (3, 2), dict(stride=(2, 1), padding=(0, 1), output_padding=(1, 0))),
    (3, 1, 2, 2, 2, (2, 2, 2), dict(stride=2, padding=1, dilation=(1, 2, 1), groups=2)),
]


@pytest.mark.parametrize("case", FD_CONV, ids=str)
def test_conv_finite_differences_to_second_order(case):
    fn = getattr(F, f"conv{case[0]}d")
    kw = case[-1]
    # (the output is contracted with a random cotangent; its square makes the second order non-zero)
    check_grads(lambda x, w, b: fn(x, w, b, **kw) ** 2, *conv_arrays(case), order=2)


@pytest.mark.parametrize("case", FD_TRANSPOSE, ids=str)
def test_conv_transpose_finite_differences_to_second_order(case):
    fn = getattr(F, f"conv_transpose{case[0]}d")
    kw = case[-1]
    check_grads(lambda x, w, b: fn(x, w, b, **kw) ** 2, *transpose_arrays(case), order=2)


def test_conv_transpose_second_order_against_torch():
    """The Hessian-vector product of a loss through a transposed convolution, against
    torch's double backward."""
    torch = oracle("torch")
    kw = dict(stride=2, padding=1, output_padding=1, groups=2)
    x, w, b = transpose_arrays((2, 1, 4, 2, 3, (3, 2), kw))
    v = rand(w.shape, 9)

    def loss(x, w, b):
        return (F.conv_transpose2d(x, w, b, **kw) ** 3).sum()

    def directional(x, w, b):
        return (nk.grad(loss, argnums=1)(x, w, b) * v).sum()

    ours = nk.grad(directional, argnums=(0, 1))(x, w, b)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    gw, = torch.autograd.grad((torch.nn.functional.conv_transpose2d(xt, wt, bt, **kw) ** 3).sum(), wt,
                              create_graph=True)
    theirs = torch.autograd.grad((gw * torch.tensor(v)).sum(), (xt, wt))
    for a, t in zip(ours, theirs):
        np.testing.assert_allclose(a, t.numpy(), rtol=1e-11, atol=1e-12)


# ---- the modules ---------------------------------------------------------------------------------

MODULE_CASES = [
    (1, 4, 6, 3, (7,), dict(stride=2, padding=1, output_padding=1, groups=2)),
    (2, 3, 4, (3, 2), (5, 4), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    (2, 2, 2, 3, (4, 4), dict(bias=False, stride=2, output_padding=1)),
    (3, 2, 4, 2, (2, 3, 2), dict(stride=2, groups=2)),
]


@pytest.mark.parametrize("case", MODULE_CASES, ids=str)
def test_module_loads_a_torch_state_dict_and_equals_torch(case, tmp_path):
    torch = oracle("torch")
    dims, c_in, c_out, k, size, kw = case
    torch.manual_seed(0)
    ref = getattr(torch.nn, f"ConvTranspose{dims}d")(c_in, c_out, k, **kw)
    path = tmp_path / "ct.npz"
    np.savez(path, **{name: v.detach().numpy() for name, v in ref.state_dict().items()})
    layer = TRANSPOSED[dims](c_in, c_out, k, **kw)
    assert {name: p.shape for name, p in layer.state_dict().items()} == \
        {name: tuple(v.shape) for name, v in ref.state_dict().items()}
    layer.load_state_dict(nk.nn.load(path))
    x = rand((2, c_in) + size, 1).astype(np.float32)
    y = layer(x)
    want = ref(torch.tensor(x))
    assert y.dtype == np.float32 and y.shape == tuple(want.shape) == layer.output_shape(x.shape)
    np.testing.assert_allclose(y.data, want.detach().numpy(), rtol=1e-5, atol=1e-5)
    # gradients of every parameter, float64 on both sides
    layer64 = TRANSPOSED[dims](c_in, c_out, k, dtype=np.float64, **kw)
    layer64.load_state_dict(nk.nn.load(path))
    ref = ref.double()
    x64 = rand((2, c_in) + size, 1)
    cot = rand(tuple(want.shape), 4)
    out = layer64(nk.from_ndarray(x64))
    (out * cot).sum().backward()
    (ref(torch.tensor(x64)) * torch.tensor(cot)).sum().backward()
    for name, p in layer64.named_parameters():
        np.testing.assert_allclose(p.grad, getattr(ref, name).grad.numpy(), rtol=1e-11, atol=1e-12)


def test_module_output_size_equals_torch():
    torch = oracle("torch")
    layer = ConvTranspose2d(3, 2, 3, stride=(2, 3), padding=1, dtype=np.float64)
    ref = torch.nn.ConvTranspose2d(3, 2, 3, stride=(2, 3), padding=1).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(layer.weight.data))
        ref.bias.copy_(torch.tensor(layer.bias.data))
    x = rand((1, 3, 4, 5), 1)
    for size in [(7, 13), (8, 15), [1, 2, 8, 14]]:
        y = layer(x, output_size=size)
        want = ref(torch.tensor(x), output_size=size)
        assert y.shape == tuple(want.shape)
        np.testing.assert_allclose(y.data, want.detach().numpy(), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"output_size \(9, 13\).*\[7, 8\].*test_conv_functional.py"):
        layer(x, output_size=(9, 13))


def test_module_initialisation_follows_pytorch():
    layer = ConvTranspose2d(6, 8, (3, 2), groups=2)
    assert layer.weight.shape == (6, 4, 3, 2) and layer.bias.shape == (8,)
    assert layer.weight.dtype == np.float32 and layer.bias.dtype == np.float32
    bound = 1 / math.sqrt(4 * 3 * 2)       # fan_in = out_channels / groups * prod(kernel)
    for p in (layer.weight, layer.bias):
        assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.5 * bound
    assert [name for name, _ in ConvTranspose1d(2, 2, 3, bias=False).named_parameters()] == ["weight"]
    assert repr(ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, groups=2)) == (
        "ConvTranspose2d(4, 2, kernel_size=(3, 3), stride=(2, 2), output_padding=(1, 1), groups=2)")


def test_float32_stays_float32():
    x, w, b = (a.astype(np.float32) for a in transpose_arrays((2, 2, 2, 4, 3, (3, 3), {})))
    for fn, weight in ((F.conv_transpose2d, w), (F.conv2d, w.transpose(1, 0, 2, 3))):
        value, grads = value_and_grads(lambda x, w, b: fn(x, w, b, stride=2).sum(), x, weight, b)
        assert fn(x, weight, b, stride=2).dtype == np.float32
        assert all(g.dtype == np.float32 for g in grads)
    layer = ConvTranspose1d(2, 3, 3, stride=2)
    y = layer(rand((1, 2, 5)).astype(np.float32))
    y.sum().backward()
    assert y.dtype == layer.weight.grad.dtype == np.float32


# ---- errors ----------------------------------------------------------------------------------------

HERE = r"test_conv_functional.py:\d+"


def test_output_padding_must_be_below_stride_or_dilation():
    x, w = rand((1, 2, 5, 5)), rand((2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d: output_padding \(2, 2\) must be smaller "
                                         r"than the stride \(2, 2\) or the dilation \(1, 1\).*" + HERE):
        F.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="ConvTranspose1d: output_padding"):
        ConvTranspose1d(2, 3, 3, stride=2, dilation=2, output_padding=2)
    F.conv_transpose2d(x, w, stride=1, dilation=2, output_padding=1)       # below the dilation: fine


def test_channel_mismatches_name_the_function_and_shapes():
    with pytest.raises(ShapeError, match=r"conv2d: an input of shape \(1, 3, 5, 5\) has 3 channels; a "
                                         r"weight of shape \(4, 2, 3, 3\).*" + HERE):
        F.conv2d(rand((1, 3, 5, 5)), rand((4, 2, 3, 3)))
    with pytest.raises(ShapeError, match=r"conv_transpose1d: an input of shape \(1, 3, 5\) has 3 "
                                         r"channels; a weight of shape \(2, 4, 3\).*" + HERE):
        F.conv_transpose1d(rand((1, 3, 5)), rand((2, 4, 3)))
    with pytest.raises(ShapeError, match=r"ConvTranspose2d\(4, 2.*expected an input of shape "
                                         r"\(N, 4, H, W\).*\(1, 3, 5, 5\)"):
        ConvTranspose2d(4, 2, 3)(rand((1, 3, 5, 5)))
    with pytest.raises(ShapeError, match=r"conv3d: the weight must be \(C_out, C_in / groups, \*k\) "
                                         r"\(5-D\), got shape \(4, 2, 3, 3\)"):
        F.conv3d(rand((1, 2, 5, 5, 5)), rand((4, 2, 3, 3)))
    with pytest.raises(ShapeError, match=r"conv1d: expected an input \(N, C, \*size\) or \(C, \*size\) "
                                         r"with 1 spatial axes, got shape \(1, 1, 2, 5\)"):
        F.conv1d(rand((1, 1, 2, 5)), rand((4, 2, 3)))
    with pytest.raises(ShapeError, match=r"conv_transpose2d: the bias must have shape \(6,\).*\(4,\)"):
        F.conv_transpose2d(rand((1, 2, 3, 3)), rand((2, 3, 2, 2)), rand(4), groups=2)
    with pytest.raises(ShapeError, match=r"conv1d: .*smaller than the kernel"):
        F.conv1d(rand((1, 2, 2)), rand((4, 2, 3)))
    with pytest.raises(ShapeError, match=r"conv_transpose1d: .*gives no output along spatial axis 0"):
        F.conv_transpose1d(rand((1, 2, 2)), rand((2, 4, 2)), padding=2)


def test_bad_groups_and_arguments():
    with pytest.raises(ShapeError, match=r"conv2d: .*groups=2 needs 4 \(2 per group\)"):
        F.conv2d(rand((1, 3, 5, 5)), rand((4, 2, 3, 3)), groups=2)
    with pytest.raises(ShapeError, match=r"conv2d: .*out channels \(3\) divisible by groups"):
        F.conv2d(rand((1, 4, 5, 5)), rand((3, 2, 3, 3)), groups=2)
    with pytest.raises(ShapeError, match=r"conv_transpose2d: .*groups=4 needs 6, divisible by groups"):
        F.conv_transpose2d(rand((1, 6, 3, 3)), rand((6, 1, 2, 2)), groups=4)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"conv_transpose1d: groups must be a positive int.*" + HERE):
            F.conv_transpose1d(rand((1, 2, 3)), rand((2, 2, 2)), groups=bad)
    with pytest.raises(ValueError, match="ConvTranspose2d: groups = 2 must divide in_channels = 3"):
        ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="only padding_mode='zeros'"):
        ConvTranspose2d(2, 2, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match="conv_transpose2d: padding must be an int or 2 ints, got 'same'"):
        F.conv_transpose2d(rand((1, 2, 3, 3)), rand((2, 2, 2, 2)), padding="same")
    with pytest.raises(ValueError, match=r"conv_transpose2d: stride must be an int or 2 ints"):
        F.conv_transpose2d(rand((1, 2, 3, 3)), rand((2, 2, 2, 2)), stride=(1, 2, 3))
    with pytest.raises(ValueError, match=r"conv2d: padding='same' needs stride 1"):
        F.conv2d(rand((1, 2, 5, 5)), rand((2, 2, 3, 3)), stride=2, padding="same")
    with pytest.raises(TypeError, match=r"conv2d: the input must be floating point, got dtype int64"):
        F.conv2d(np.ones((1, 2, 5, 5), np.int64), rand((2, 2, 3, 3)))


def test_exports():
    for name in ("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        assert name in F.__all__ and callable(getattr(F, name)), name
    for name in ("ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"):
        assert name in nk.nn.__all__ and issubclass(getattr(nk.nn, name), nk.nn.Module), name
