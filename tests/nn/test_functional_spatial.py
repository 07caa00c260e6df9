"""nn.functional's pooling and spatial functions (max_pool1d/2d/3d, avg_pool1d/2d/3d, the
adaptive pools, pad, pixel_shuffle/unshuffle, interpolate, unfold/fold) and their modules:
values and gradients against PyTorch (float64), first and second derivatives against finite
differences, dtypes and errors."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika.nn import functional as F
from neuronika.testing import check_grads, oracle


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def assert_like_torch(fn, torch_fn, *arrays, rtol=1e-10, atol=1e-12):
    """Values and gradients (of every float input, for a random cotangent) equal PyTorch's."""
    torch = oracle("torch")
    leaves = [nk.from_ndarray(np.array(a)).requires_grad() for a in arrays]
    out = fn(*leaves)
    cotangent = randn(*out.shape, seed=7)
    out.backward(cotangent)
    tleaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    tout = torch_fn(*tleaves)
    (tout * torch.from_numpy(cotangent)).sum().backward()
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=rtol, atol=atol)
    for i, (leaf, tleaf) in enumerate(zip(leaves, tleaves)):
        np.testing.assert_allclose(leaf.grad, tleaf.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i}")


# ---- max and average pooling -----------------------------------------------------------------------

MAX_CASES = [
    (1, (2, 3, 9), dict(kernel_size=3)),
    (1, (3, 8), dict(kernel_size=2, stride=3, padding=1, ceil_mode=True)),
    (1, (1, 2, 10), dict(kernel_size=3, stride=2, dilation=2)),
    (2, (2, 2, 7, 6), dict(kernel_size=2)),
    (2, (1, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (2, 5, 6), dict(kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1))),
    (2, (1, 1, 8, 9), dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (3, (1, 2, 4, 5, 5), dict(kernel_size=2, ceil_mode=True)),
    (3, (2, 4, 4, 5), dict(kernel_size=(2, 2, 3), stride=1, padding=(1, 0, 1))),
]


@pytest.mark.parametrize("n, shape, options", MAX_CASES)
def test_max_pool_matches_torch(n, shape, options):
    torch = oracle("torch")
    ours, theirs = getattr(F, f"max_pool{n}d"), getattr(torch.nn.functional, f"max_pool{n}d")
    x = randn(*shape)
    assert_like_torch(lambda x: ours(x, **options), lambda x: theirs(x, **options), x)
    y, i = ours(x, return_indices=True, **options)
    yt, it = theirs(torch.tensor(x), return_indices=True, **options)
    np.testing.assert_array_equal(y.data, yt.numpy())
    np.testing.assert_array_equal(i.data, it.numpy())
    assert_like_torch(lambda x: ours(x, return_indices=True, **options)[0],
                      lambda x: theirs(x, return_indices=True, **options)[0], x)


def test_max_pool_sends_ties_to_the_first_maximum_as_torch():
    torch = oracle("torch")
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 1, 1] = x[0, 0, 1, 0] = 1.0
    assert_like_torch(lambda x: F.max_pool2d(x, 2), lambda x: torch.nn.functional.max_pool2d(x, 2), x)
    assert_like_torch(lambda x: F.max_pool2d(x, 2, return_indices=True)[0],        # the gather path
                      lambda x: torch.nn.functional.max_pool2d(x, 2), x)
    assert_like_torch(lambda x: F.adaptive_max_pool2d(x, 3), lambda x: torch.nn.functional.adaptive_max_pool2d(x, 3), x)


AVG_CASES = [
    (1, (2, 3, 9), dict(kernel_size=3)),
    (1, (3, 8), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (1, (1, 2, 10), dict(kernel_size=4, stride=3, padding=2, ceil_mode=True, count_include_pad=False)),
    (2, (2, 2, 7, 6), dict(kernel_size=2)),
    (2, (1, 3, 7, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (2, 5, 6), dict(kernel_size=(2, 3), stride=(2, 2), padding=(1, 1), count_include_pad=False)),
    (2, (1, 1, 8, 9), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (2, (1, 2, 5, 5), dict(kernel_size=2, padding=1, divisor_override=3)),
    (3, (1, 2, 4, 5, 5), dict(kernel_size=2, ceil_mode=True)),
    (3, (2, 4, 4, 5), dict(kernel_size=(2, 2, 3), stride=1, padding=(1, 0, 1), count_include_pad=False)),
]


@pytest.mark.parametrize("n, shape, options", AVG_CASES)
def test_avg_pool_matches_torch(n, shape, options):
    torch = oracle("torch")
    ours, theirs = getattr(F, f"avg_pool{n}d"), getattr(torch.nn.functional, f"avg_pool{n}d")
    assert_like_torch(lambda x: ours(x, **options), lambda x: theirs(x, **options), randn(*shape))


@pytest.mark.parametrize("fn, shape, options", [
    (F.max_pool1d, (1, 2, 7), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (F.max_pool2d, (1, 6, 5), dict(kernel_size=2, dilation=2)),
    (F.avg_pool2d, (1, 1, 5, 4), dict(kernel_size=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (F.avg_pool1d, (2, 6), dict(kernel_size=3, stride=2, padding=1)),
])
def test_pool_derivatives(fn, shape, options):
    check_grads(lambda x: fn(x, **options), randn(*shape, seed=3), order=2)


def test_the_pool_modules_call_nn_functional(monkeypatch):
    from neuronika.nn import pooling
    calls = []
    monkeypatch.setitem(pooling._FUNCTIONS, ("max", 2), lambda *a: calls.append(a) or F.max_pool2d(*a))
    nn.MaxPool2d(2)(randn(1, 2, 4, 4))
    assert len(calls) == 1
    assert F.max_pool2d(randn(1, 2, 4, 4).astype(np.float32), 2).dtype == np.float32
    assert F.avg_pool1d(randn(1, 2, 4).astype(np.float32), 2, padding=1,
                        count_include_pad=False).dtype == np.float32


def test_pool_errors():
    with pytest.raises(nk.ShapeError, match=r"max_pool2d: expected an input of shape \(N, C, H, W\) or "
                                            r"\(C, H, W\), got a 2-D input of shape \(4, 4\)"):
        F.max_pool2d(np.ones((4, 4)), 2)
    with pytest.raises(nk.ShapeError, match="avg_pool1d: the input of shape .* is too small"):
        F.avg_pool1d(np.ones((1, 2, 2)), 3)
    with pytest.raises(ValueError, match="max_pool1d: padding .* at most half"):
        F.max_pool1d(np.ones((1, 2, 6)), 2, padding=2)
    with pytest.raises(ValueError, match="max_pool2d: dilation must be at least 1"):
        F.max_pool2d(np.ones((1, 4, 4)), 2, dilation=0)
    with pytest.raises(ValueError, match="avg_pool2d: divisor_override"):
        F.avg_pool2d(np.ones((1, 4, 4)), 2, divisor_override=0)


# ---- adaptive pooling ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, size", [((2, 3, 10), 3), ((3, 7), 7), ((1, 2, 6), 3), ((1, 1, 5), 1),
                                         ((2, 2, 4), 6)])
def test_adaptive_pool1d_matches_torch(shape, size):
    torch = oracle("torch")
    x = randn(*shape)
    assert_like_torch(lambda x: F.adaptive_avg_pool1d(x, size),
                      lambda x: torch.nn.functional.adaptive_avg_pool1d(x, size), x)
    assert_like_torch(lambda x: F.adaptive_max_pool1d(x, size),
                      lambda x: torch.nn.functional.adaptive_max_pool1d(x, size), x)
    _, i = F.adaptive_max_pool1d(x, size, return_indices=True)
    np.testing.assert_array_equal(
        i.data, torch.nn.functional.adaptive_max_pool1d(torch.tensor(x), size, return_indices=True)[1].numpy())


@pytest.mark.parametrize("shape, size", [((2, 3, 10, 7), (3, 4)), ((3, 7, 5), 2), ((1, 2, 6, 6), (3, None)),
                                         ((1, 1, 5, 4), 1), ((2, 1, 3, 3), (5, 2)), ((1, 2, 8, 8), 4)])
def test_adaptive_pool2d_matches_torch(shape, size):
    torch = oracle("torch")
    x = randn(*shape)
    assert_like_torch(lambda x: F.adaptive_avg_pool2d(x, size),
                      lambda x: torch.nn.functional.adaptive_avg_pool2d(x, size), x)
    assert_like_torch(lambda x: F.adaptive_max_pool2d(x, size),
                      lambda x: torch.nn.functional.adaptive_max_pool2d(x, size), x)
    _, i = F.adaptive_max_pool2d(x, size, return_indices=True)
    np.testing.assert_array_equal(
        i.data, torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), size, return_indices=True)[1].numpy())


def test_adaptive_pool_derivatives():
    check_grads(lambda x: F.adaptive_avg_pool2d(x, (2, 3)), randn(1, 2, 5, 4), order=2)
    check_grads(lambda x: F.adaptive_avg_pool1d(x, 2), randn(2, 4), order=2)
    check_grads(lambda x: F.adaptive_max_pool2d(x, (2, 3)), randn(1, 2, 5, 4), order=2)


def test_adaptive_pool_modules_dtypes_and_errors():
    x32 = randn(2, 3, 7, 5).astype(np.float32)
    assert nn.AdaptiveMaxPool1d(2)(randn(2, 4, 5).astype(np.float32)).dtype == np.float32
    for module, shape in ((nn.AdaptiveAvgPool2d((3, 2)), (2, 3, 3, 2)), (nn.AdaptiveAvgPool2d(1), (2, 3, 1, 1)),
                          (nn.AdaptiveMaxPool2d(2), (2, 3, 2, 2))):
        y = module(x32)
        assert y.shape == shape and y.dtype == np.float32
    assert nn.AdaptiveAvgPool1d(3)(randn(2, 4, 9).astype(np.float32)).dtype == np.float32
    assert repr(nn.AdaptiveAvgPool2d((3, 2))) == "AdaptiveAvgPool2d(output_size=(3, 2))"
    y, i = nn.AdaptiveMaxPool2d(2, return_indices=True)(x32)
    assert i.dtype == np.int64
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output_size must be"):
        F.adaptive_avg_pool2d(np.ones((1, 4, 4)), (2, 0))
    with pytest.raises(nk.ShapeError, match="adaptive_max_pool2d: expected an input of shape"):
        F.adaptive_max_pool2d(np.ones(4), 2)


# ---- pad -------------------------------------------------------------------------------------------

PAD_CASES = [
    ("constant", (2, 3, 4), (1, 2)),
    ("constant", (2, 3, 4), (1, 0, 2, 3, 1, 1)),
    ("constant", (5,), (2, 1)),
    ("constant", (2, 3, 5), (-1, 2, 0, -2)),
    ("reflect", (2, 3, 5), (4, 2)),
    ("reflect", (1, 2, 4, 5), (1, 3, 3, 0)),
    ("reflect", (3, 4), (2, 3)),
    ("replicate", (2, 3, 5), (6, 2)),
    ("replicate", (1, 2, 3, 4, 2), (1, 2, 0, 1, 3, 1)),
    ("circular", (2, 3, 5), (5, 2)),
    ("circular", (1, 2, 4, 3), (1, 3, 4, 0)),
]


@pytest.mark.parametrize("mode, shape, widths", PAD_CASES)
def test_pad_matches_torch(mode, shape, widths):
    torch = oracle("torch")
    value = 1.5 if mode == "constant" else None
    assert_like_torch(lambda x: F.pad(x, widths, mode, value), lambda x: torch.nn.functional.pad(x, widths, mode, value),
                      randn(*shape))


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_derivatives_and_dtype(mode):
    check_grads(lambda x: F.pad(x, (2, 1, 1, 1), mode), randn(1, 2, 3, 3), order=2)
    assert F.pad(randn(1, 2, 3).astype(np.float32), (1, 1), mode).dtype == np.float32


def test_pad_errors():
    with pytest.raises(ValueError, match="pad: pad must be a sequence of ints of even length"):
        F.pad(np.ones((2, 3)), (1, 2, 3))
    with pytest.raises(nk.ShapeError, match=r"pad: pad \(1, 1, 1, 1, 1, 1\) names 3 axes"):
        F.pad(np.ones((2, 3)), (1, 1) * 3)
    with pytest.raises(nk.ShapeError, match="pad: mode 'reflect' needs widths below the size"):
        F.pad(np.ones((1, 2, 3)), (3, 0), mode="reflect")
    with pytest.raises(nk.ShapeError, match="pad: mode 'circular' needs widths of at most"):
        F.pad(np.ones((1, 2, 3)), (4, 0), mode="circular")
    with pytest.raises(ValueError, match="pad: mode must be one of"):
        F.pad(np.ones((1, 2, 3)), (1, 0), mode="edge")
    with pytest.raises(ValueError, match="negative widths crop only in mode 'constant'"):
        F.pad(np.ones((1, 2, 3)), (-1, 0), mode="replicate")
    with pytest.raises(nk.ShapeError, match="pad: mode 'replicate' pads the last 1, 2 or 3 axes"):
        F.pad(np.ones(3), (1, 0), mode="replicate")


# ---- pixel shuffle ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, r", [((1, 4, 3, 5), 2), ((2, 18, 2, 3), 3), ((9, 2, 1), 3),
                                      ((2, 1, 8, 3, 2), 2)])
def test_pixel_shuffle_and_unshuffle_match_torch(shape, r):
    torch = oracle("torch")
    x = randn(*shape)
    assert_like_torch(lambda x: F.pixel_shuffle(x, r), lambda x: torch.nn.functional.pixel_shuffle(x, r), x)
    up = torch.nn.functional.pixel_shuffle(torch.tensor(x), r).numpy()
    assert_like_torch(lambda x: F.pixel_unshuffle(x, r), lambda x: torch.nn.functional.pixel_unshuffle(x, r), up)
    np.testing.assert_array_equal(F.pixel_unshuffle(F.pixel_shuffle(x, r), r).data, x)


def test_pixel_shuffle_modules_derivatives_and_errors():
    check_grads(lambda x: F.pixel_shuffle(x, 2), randn(1, 4, 2, 3), order=2)
    assert nn.PixelShuffle(2)(randn(1, 8, 3, 3).astype(np.float32)).dtype == np.float32
    assert nn.PixelUnshuffle(2)(randn(1, 2, 4, 6)).shape == (1, 8, 2, 3)
    assert repr(nn.PixelShuffle(2)) == "PixelShuffle(upscale_factor=2)"
    with pytest.raises(nk.ShapeError, match=r"PixelShuffle\(upscale_factor=2\): pixel_shuffle: expected"):
        nn.PixelShuffle(2)(np.ones((1, 6, 2, 2)))
    with pytest.raises(ValueError, match=r"AdaptiveAvgPool2d\(output_size=0\): adaptive_avg_pool2d: output_size"):
        nn.AdaptiveAvgPool2d(0)(np.ones((1, 2, 2)))
    with pytest.raises(nk.ShapeError, match=r"pixel_shuffle: expected an input of shape \(\*, C \* 4, H, W\)"):
        F.pixel_shuffle(np.ones((1, 6, 2, 2)), 2)
    with pytest.raises(nk.ShapeError, match=r"pixel_unshuffle: .* divisible by downscale_factor = 2"):
        F.pixel_unshuffle(np.ones((1, 1, 3, 4)), 2)
    with pytest.raises(ValueError, match="upscale_factor must be an int of at least 1"):
        F.pixel_shuffle(np.ones((1, 4, 2, 2)), 0)


# ---- interpolate -----------------------------------------------------------------------------------

INTERPOLATE_CASES = [
    ((2, 3, 5), dict(size=8)), ((1, 2, 6), dict(size=4)), ((1, 2, 5), dict(scale_factor=2)),
    ((1, 2, 7), dict(scale_factor=1.7)), ((1, 2, 7), dict(scale_factor=0.6)),
    ((1, 1, 5), dict(scale_factor=2.5, recompute_scale_factor=True)), ((1, 2, 5), dict(size=5)),
    ((2, 2, 4, 5), dict(size=(7, 3))), ((1, 3, 3, 3), dict(scale_factor=(2, 1.5))),
    ((1, 1, 6, 4), dict(size=(1, 9))), ((1, 2, 2, 3, 4), dict(size=(3, 5, 2))),
    ((1, 1, 3, 2, 3), dict(scale_factor=2)),
]
LINEAR = {3: "linear", 4: "bilinear", 5: "trilinear"}


@pytest.mark.parametrize("shape, options, mode", [
    (shape, options, mode) for shape, options in INTERPOLATE_CASES
    for mode in ("nearest", "nearest-exact", "area", "linear", "linear-aligned", "bicubic", "bicubic-aligned")
    if len(shape) == 4 or not mode.startswith("bicubic")])
def test_interpolate_matches_torch(shape, options, mode):
    torch = oracle("torch")
    options = dict(options)
    if mode.startswith("linear") or mode.startswith("bicubic"):
        options["align_corners"] = mode.endswith("-aligned")
        mode = LINEAR[len(shape)] if mode.startswith("linear") else "bicubic"
    assert_like_torch(lambda x: F.interpolate(x, mode=mode, **options),
                      lambda x: torch.nn.functional.interpolate(x, mode=mode, **options), randn(*shape))


def test_interpolate_float32_matches_torch():
    torch = oracle("torch")
    x = randn(1, 2, 5, 7).astype(np.float32)
    for mode, options in (("nearest", dict(scale_factor=1.3)), ("bilinear", dict(size=(8, 3)))):
        y = F.interpolate(x, mode=mode, **options)
        assert y.dtype == np.float32
        np.testing.assert_allclose(y.data, torch.nn.functional.interpolate(torch.tensor(x), mode=mode,
                                                                          **options).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, options", [((1, 2, 3, 4), dict(size=(5, 3), mode="bilinear")),
                                            ((1, 2, 4), dict(scale_factor=1.5, mode="linear", align_corners=True)),
                                            ((1, 1, 3, 3), dict(scale_factor=2, mode="nearest")),
                                            ((1, 1, 3, 4), dict(size=(5, 2), mode="bicubic")),
                                            ((1, 2, 5), dict(size=3, mode="area"))])
def test_interpolate_derivatives(shape, options):
    check_grads(lambda x: F.interpolate(x, **options), randn(*shape), order=2)


def test_upsample_module_and_interpolate_errors():
    up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
    assert up(randn(1, 2, 3, 4)).shape == (1, 2, 6, 8)
    assert repr(up) == "Upsample(scale_factor=2.0, mode='bilinear')"
    with pytest.raises(ValueError, match="give exactly one of size and scale_factor"):
        F.interpolate(np.ones((1, 1, 4)))
    with pytest.raises(ValueError, match="give exactly one of size and scale_factor"):
        F.interpolate(np.ones((1, 1, 4)), size=3, scale_factor=2)
    with pytest.raises(nk.ShapeError, match="interpolate: mode 'bilinear' needs a 4-D input"):
        F.interpolate(np.ones((1, 1, 4)), size=3, mode="bilinear")
    with pytest.raises(ValueError, match="align_corners can only be set with the linear modes"):
        F.interpolate(np.ones((1, 1, 4)), size=3, align_corners=True)
    with pytest.raises(ValueError, match="interpolate: size must be one or 2 positive ints"):
        F.interpolate(np.ones((1, 1, 4, 4)), size=(2, 3, 4))
    with pytest.raises(ValueError, match="mode must be one of"):
        F.interpolate(np.ones((1, 1, 4)), size=3, mode="cubic")
    with pytest.raises(nk.ShapeError, match="interpolate: mode 'bicubic' needs a 4-D input"):
        F.interpolate(np.ones((1, 1, 4)), size=3, mode="bicubic")


# ---- unfold and fold -------------------------------------------------------------------------------

FOLD_CASES = [((2, 3, 5, 6), dict(kernel_size=2)), ((1, 2, 7, 7), dict(kernel_size=3, padding=1, stride=2)),
              ((2, 6, 5), dict(kernel_size=(2, 3), dilation=(2, 1), padding=(0, 2), stride=(1, 2))),
              ((1, 1, 4, 4), dict(kernel_size=4)), ((1, 2, 6, 5), dict(kernel_size=1, stride=2))]


@pytest.mark.parametrize("shape, options", FOLD_CASES)
def test_unfold_and_fold_match_torch(shape, options):
    torch = oracle("torch")
    x = randn(*shape)
    assert_like_torch(lambda x: F.unfold(x, **options), lambda x: torch.nn.functional.unfold(x, **options), x)
    cols = torch.nn.functional.unfold(torch.tensor(x), **options).numpy()
    size = shape[-2:]
    assert_like_torch(lambda c: F.fold(c, size, **options), lambda c: torch.nn.functional.fold(c, size, **options),
                      cols)


def test_unfold_fold_derivatives_modules_and_errors():
    check_grads(lambda x: F.unfold(x, 2, padding=1, stride=2), randn(1, 2, 3, 3), order=2)
    check_grads(lambda c: F.fold(c, (3, 3), 2, padding=1, stride=2), randn(1, 8, 4), order=2)
    x32 = randn(2, 3, 5, 5).astype(np.float32)
    cols = nn.Unfold(3, padding=1)(x32)
    assert cols.shape == (2, 27, 25) and cols.dtype == np.float32
    assert nn.Fold((5, 5), 3, padding=1)(cols).dtype == np.float32
    with pytest.raises(nk.ShapeError, match=r"fold: for output_size \(4, 4\), kernel \(2, 2\) the input must have "
                                            r"shape \(N, C \* 4, 9\)"):
        F.fold(np.ones((1, 8, 8)), (4, 4), 2)
    with pytest.raises(nk.ShapeError, match="unfold: the spatial size .* is too small"):
        F.unfold(np.ones((1, 1, 2, 2)), 3)
    with pytest.raises(nk.ShapeError, match=r"unfold: expected an input of shape \(N, C, H, W\)"):
        F.unfold(np.ones((2, 2)), 1)


def test_the_functions_and_modules_are_exported():
    for name in ("max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
                 "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
                 "pad", "pixel_shuffle", "pixel_unshuffle", "interpolate", "unfold", "fold"):
        assert name in F.__all__ and callable(getattr(F, name))
    for name in ("AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "PixelShuffle", "PixelUnshuffle",
                 "Upsample", "Unfold", "Fold"):
        assert name in nn.__all__


SPACE_CASES = {
    "max_pool2d": lambda x: F.max_pool2d(x, 2, padding=1, ceil_mode=True),
    "max_pool2d-indices": lambda x: F.max_pool2d(x, 3, dilation=2, return_indices=True)[0],
    "avg_pool2d": lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (3, 4)),
    "adaptive_max_pool2d": lambda x: F.adaptive_max_pool2d(x, (3, 4)),
    "pad": lambda x: F.pad(x, (1, 2, 2, 0), mode="reflect"),
    "pixel_unshuffle": lambda x: F.pixel_unshuffle(x[..., :6, :6], 2),
    "interpolate": lambda x: F.interpolate(x, size=(5, 9), mode="bilinear"),
    "unfold-fold": lambda x: F.fold(F.unfold(x, 2, padding=1), (7, 7), 2, padding=1),
}


@pytest.mark.parametrize("name", list(SPACE_CASES))
def test_array_api_strict_gives_the_numpy_results(name):
    xs = pytest.importorskip("array_api_strict")
    fn = SPACE_CASES[name]
    x = randn(1, 2, 7, 7)
    want = nk.from_ndarray(x.copy()).requires_grad()
    fn(want).sum().backward()
    leaf = nk.from_ndarray(xs.asarray(x)).requires_grad()
    y = fn(leaf)
    y.sum().backward()
    assert type(y.data).__module__.startswith("array_api_strict")
    assert type(leaf.grad).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(y.data), fn(nk.from_ndarray(x)).data, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(leaf.grad), want.grad, rtol=1e-12)
