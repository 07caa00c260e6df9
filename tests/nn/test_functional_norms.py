"""nn.functional's normalisation and distance functions (group_norm, instance_norm, rms_norm,
normalize, cosine_similarity, pairwise_distance) and the modules GroupNorm, InstanceNorm1d/2d
and RMSNorm: values and gradients against PyTorch (float64), first and second derivatives
against finite differences, state dicts from PyTorch, dtypes and errors."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika.nn import functional as F
from neuronika.nn.module import load
from neuronika.testing import check_grads, oracle


def randn(*shape, seed=0, loc=0.0, scale=1.0):
    return loc + scale * np.random.default_rng(seed).standard_normal(shape)


def ours(fn, arrays, cotangent):
    leaves = [nk.from_ndarray(np.array(a)).requires_grad() for a in arrays]
    out = fn(*leaves)
    out.backward(cotangent)
    return out.data, [leaf.grad for leaf in leaves]


def theirs(fn, arrays, cotangent):
    torch = oracle("torch")
    leaves = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*leaves)
    (out * torch.from_numpy(np.asarray(cotangent))).sum().backward()
    return out.detach().numpy(), [leaf.grad.numpy() for leaf in leaves]


def assert_like_torch(fn, torch_fn, *arrays, rtol=1e-10, atol=1e-12):
    value = fn(*[nk.from_ndarray(np.array(a)) for a in arrays]).data
    cotangent = randn(*np.shape(value), seed=7)
    got, got_grads = ours(fn, arrays, cotangent)
    want, want_grads = theirs(torch_fn, arrays, cotangent)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    for i, (g, w) in enumerate(zip(got_grads, want_grads)):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, err_msg=f"gradient of input {i}")


# ---- group_norm ------------------------------------------------------------------------------------

GROUP_CASES = [((2, 6), 3), ((1, 4, 5), 2), ((3, 6, 2, 3), 3), ((2, 4, 3, 1, 2), 4), ((1, 3, 7), 1)]


@pytest.mark.parametrize("shape, groups", GROUP_CASES)
@pytest.mark.parametrize("affine", [False, True])
def test_group_norm_matches_torch(shape, groups, affine):
    torch = oracle("torch")
    c = shape[1]
    arrays = [randn(*shape, loc=1.0, scale=2.0)] + ([randn(c, seed=1), randn(c, seed=2)] if affine else [])
    assert_like_torch(lambda x, *wb: F.group_norm(x, groups, *wb, eps=1e-3),
                      lambda x, *wb: torch.nn.functional.group_norm(x, groups, *wb, eps=1e-3), *arrays)


@pytest.mark.parametrize("shape, groups", [((2, 4, 3), 2), ((1, 6), 3)])
def test_group_norm_derivatives(shape, groups):
    c = shape[1]
    check_grads(lambda x, w, b: F.group_norm(x, groups, w, b), randn(*shape), randn(c, seed=1),
                randn(c, seed=2), order=2)


def test_group_norm_closed_form_and_errors():
    x = randn(2, 6, 4, seed=3)
    g = x.reshape(2, 3, 8)
    want = ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(F.group_norm(x, 3).data, want, rtol=1e-12)
    with pytest.raises(ValueError, match=r"group_norm: the input's 6 channels .* num_groups = 4"):
        F.group_norm(x, 4)
    with pytest.raises(ValueError, match="num_groups must be a positive int"):
        F.group_norm(x, 0)
    with pytest.raises(nk.ShapeError, match=r"group_norm: weight must have the shape \(6,\)"):
        F.group_norm(x, 3, np.ones(3))
    with pytest.raises(nk.ShapeError, match="group_norm: an input of shape"):
        F.group_norm(np.ones(6), 3)
    with pytest.raises(ValueError, match="more than 1 value per group"):
        F.group_norm(np.ones((1, 3)), 3)
    with pytest.raises(ValueError, match="eps"):
        F.group_norm(x, 3, eps=-1.0)
    ints = np.arange(8).reshape(2, 4)
    y = F.group_norm(ints, 2)                  # integers normalise as float64, as layer_norm's
    assert y.dtype == np.float64
    np.testing.assert_allclose(y.data, F.group_norm(ints.astype(np.float64), 2).data)
    with pytest.raises(TypeError, match="group_norm: complex inputs are not supported"):
        F.group_norm(np.ones((2, 4), complex), 2)


# ---- instance_norm ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 2, 3, 4), (3, 1, 2, 2, 2)])
@pytest.mark.parametrize("affine", [False, True])
def test_instance_norm_matches_torch(shape, affine):
    torch = oracle("torch")
    c = shape[1]
    arrays = [randn(*shape, loc=-1.0, scale=3.0)] + ([randn(c, seed=1), randn(c, seed=2)] if affine else [])
    assert_like_torch(lambda x, *wb: F.instance_norm(x, None, None, *wb),
                      lambda x, *wb: torch.nn.functional.instance_norm(x, None, None, *wb), *arrays)


@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_instance_norm_running_statistics_match_torch(momentum):
    torch = oracle("torch")
    x = randn(4, 3, 6, loc=2.0, scale=3.0)
    mean, var = randn(3, seed=1), 1.0 + randn(3, seed=2) ** 2
    tmean, tvar = torch.tensor(mean), torch.tensor(var)
    y = F.instance_norm(x, mean, var, momentum=momentum)
    yt = torch.nn.functional.instance_norm(torch.tensor(x), tmean, tvar, momentum=momentum)
    np.testing.assert_allclose(y.data, yt.numpy(), rtol=1e-12)
    np.testing.assert_allclose(mean, tmean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(var, tvar.numpy(), rtol=1e-12)
    # the running statistics in use (use_input_stats=False), with weight and bias
    w, b = randn(3, seed=4), randn(3, seed=5)
    assert_like_torch(lambda x, w, b: F.instance_norm(x, mean, var, w, b, use_input_stats=False),
                      lambda x, w, b: torch.nn.functional.instance_norm(
                          x, torch.tensor(mean), torch.tensor(var), w, b, use_input_stats=False), x, w, b)


def test_instance_norm_derivatives():
    check_grads(lambda x, w, b: F.instance_norm(x, weight=w, bias=b), randn(2, 2, 4), randn(2, seed=1),
                randn(2, seed=2), order=2)
    mean, var = randn(2, seed=3), 1.0 + randn(2, seed=4) ** 2
    check_grads(lambda x, w: F.instance_norm(x, mean, var, w, use_input_stats=False), randn(2, 2, 3),
                randn(2, seed=1), order=2)


def test_instance_norm_errors():
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        F.instance_norm(np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="running_mean and running_var are needed"):
        F.instance_norm(np.ones((2, 3, 4)), use_input_stats=False)
    with pytest.raises(nk.ShapeError, match=r"instance_norm: running_mean must have the shape \(3,\)"):
        F.instance_norm(np.ones((2, 3, 4)), np.zeros(2), np.ones(2))
    with pytest.raises(ValueError, match="momentum"):
        F.instance_norm(np.ones((2, 3, 4)), momentum=2.0)

    def traced(x):
        return F.instance_norm(x, np.zeros(3), np.ones(3)).sum()
    with pytest.raises(RuntimeError, match="inside a traced function"):
        nk.grad(traced)(randn(2, 3, 4))


# ---- rms_norm --------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, normalized", [((5,), 5), ((2, 3), (3,)), ((2, 3, 4), (3, 4)), ((1, 7), 7)])
@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("affine", [False, True])
def test_rms_norm_matches_torch(shape, normalized, eps, affine):
    torch = oracle("torch")
    dims = (normalized,) if isinstance(normalized, int) else normalized
    arrays = [randn(*shape)] + ([randn(*dims, seed=1)] if affine else [])
    assert_like_torch(lambda x, *w: F.rms_norm(x, normalized, *w, eps=eps),
                      lambda x, *w: torch.nn.functional.rms_norm(x, list(dims), *w, eps=eps), *arrays)


def test_rms_norm_derivatives_default_eps_and_errors():
    check_grads(lambda x, w: F.rms_norm(x, (2, 3), w), randn(2, 2, 3), randn(2, 3, seed=1), order=2)
    x = np.array([[1e-5, 0.0]], np.float32)
    want = x / np.sqrt((x * x).mean() + np.finfo(np.float32).eps)
    got = F.rms_norm(x, 2).data
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(nk.ShapeError, match=r"rms_norm: an input of shape \(\*, 4\)"):
        F.rms_norm(np.ones((2, 3)), 4)
    with pytest.raises(ValueError, match="normalized_shape"):
        F.rms_norm(np.ones((2, 3)), ())
    with pytest.raises(nk.ShapeError, match=r"rms_norm: weight must have the shape \(3,\)"):
        F.rms_norm(np.ones((2, 3)), 3, np.ones(2))


# ---- normalize -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, dim", [((4,), 0), ((3, 4), 1), ((3, 4), -1), ((2, 3, 4), 0), ((1, 5, 2), 1)])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 0.5, np.inf, -np.inf, 0.0])
def test_normalize_matches_torch(shape, dim, p):
    torch = oracle("torch")
    x = randn(*shape, seed=1)
    assert_like_torch(lambda x: F.normalize(x, p, dim), lambda x: torch.nn.functional.normalize(x, p, dim), x)


def test_normalize_below_eps_and_at_zero_matches_torch():
    torch = oracle("torch")
    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, -2e-3]])
    assert_like_torch(lambda x: F.normalize(x, eps=0.1), lambda x: torch.nn.functional.normalize(x, eps=0.1), x)
    assert_like_torch(lambda x: F.normalize(x, dim=0), lambda x: torch.nn.functional.normalize(x, dim=0), x)


@pytest.mark.parametrize("p", [2.0, 3.0])
def test_normalize_derivatives(p):
    check_grads(lambda x: F.normalize(x, p, 1), randn(2, 3, 2), order=2)


def test_normalize_errors_and_dtype():
    assert F.normalize(np.ones((2, 3), np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"normalize: dim 2 is out of range for an input of shape \(2, 3\)"):
        F.normalize(np.ones((2, 3)), dim=2)
    with pytest.raises(ValueError, match="normalize: p must be a number"):
        F.normalize(np.ones((2, 3)), p="fro")


# ---- distances -------------------------------------------------------------------------------------

@pytest.mark.parametrize("s1, s2, dim", [((3, 4), (3, 4), 1), ((4,), (4,), 0), ((2, 3, 4), (3, 4), -1),
                                         ((2, 1, 5), (1, 3, 5), 2), ((1, 5), (1, 5), 1), ((3, 1), (3, 4), 1)])
def test_cosine_similarity_matches_torch(s1, s2, dim):
    torch = oracle("torch")
    assert_like_torch(lambda a, b: F.cosine_similarity(a, b, dim),
                      lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim),
                      randn(*s1, seed=1), randn(*s2, seed=2))


def test_cosine_similarity_small_norms_match_torch():
    torch = oracle("torch")
    a = np.array([[1e-9, 2e-9, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    b = np.array([[1.0, -1.0, 2.0], [3e-9, 0.0, 1e-9], [1.0, 1.0, 1.0]])
    assert_like_torch(lambda a, b: F.cosine_similarity(a, b), lambda a, b: torch.nn.functional.cosine_similarity(a, b),
                      a, b, rtol=1e-8)


def test_cosine_similarity_derivatives_and_errors():
    check_grads(lambda a, b: F.cosine_similarity(a, b, dim=-1), randn(2, 3, seed=1), randn(1, 3, seed=2),
                order=2)
    assert F.cosine_similarity(np.ones((2, 3), np.float32), np.ones((2, 3), np.float32)).dtype == np.float32
    with pytest.raises(nk.ShapeError, match=r"cosine_similarity: the shapes \(2, 3\) and \(4,\) do not broadcast"):
        F.cosine_similarity(np.ones((2, 3)), np.ones(4))
    with pytest.raises(ValueError, match="cosine_similarity: dim 2 is out of range"):
        F.cosine_similarity(np.ones((2, 3)), np.ones((2, 3)), dim=2)


@pytest.mark.parametrize("s1, s2", [((3, 4), (3, 4)), ((5,), (5,)), ((2, 3, 4), (4,)), ((1, 4), (3, 4))])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, 1.5, np.inf, 0.0])
@pytest.mark.parametrize("keepdim", [False, True])
def test_pairwise_distance_matches_torch(s1, s2, p, keepdim):
    torch = oracle("torch")
    if p == 0:              # a count of nonzero differences: values only (PyTorch's gradient is 0)
        a, b = randn(*s1, seed=1), randn(*s2, seed=2)
        a[..., 0] = b[..., 0] = 0.0
        want = torch.nn.functional.pairwise_distance(torch.tensor(a), torch.tensor(b), 0.0, eps=0.0, keepdim=keepdim)
        np.testing.assert_array_equal(F.pairwise_distance(a, b, 0.0, eps=0.0, keepdim=keepdim).data, want.numpy())
        return
    assert_like_torch(lambda a, b: F.pairwise_distance(a, b, p, keepdim=keepdim),
                      lambda a, b: torch.nn.functional.pairwise_distance(a, b, p, keepdim=keepdim),
                      randn(*s1, seed=1), randn(*s2, seed=2))


def test_pairwise_distance_at_zero_distance_matches_torch():
    torch = oracle("torch")
    a = np.array([[1.0, 2.0], [0.5, -0.5]])
    assert_like_torch(lambda a, b: F.pairwise_distance(a, b, eps=0.0),
                      lambda a, b: torch.nn.functional.pairwise_distance(a, b, eps=0.0), a, a.copy())


def test_pairwise_distance_derivatives_and_errors():
    check_grads(lambda a, b: F.pairwise_distance(a, b), randn(3, 4, seed=1), randn(3, 4, seed=2), order=2)
    check_grads(lambda a, b: F.pairwise_distance(a, b, 3.0, keepdim=True), randn(2, 3, seed=1),
                randn(3, seed=2), order=2)
    y = F.pairwise_distance(np.ones((2, 3), np.float32), np.zeros((2, 3), np.float32))
    assert y.dtype == np.float32 and y.shape == (2,)
    with pytest.raises(ValueError, match="pairwise_distance: p must not be negative"):
        F.pairwise_distance(np.ones(3), np.ones(3), p=-1.0)


# ---- modules ---------------------------------------------------------------------------------------

def _torch_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _from_torch_via_npz(tmp_path, torch_module, ours_module):
    """PyTorch's state dict saved as npz and loaded into our module."""
    path = tmp_path / "state.npz"
    np.savez(path, **_torch_state(torch_module))
    ours_module.load_state_dict(load(path))
    return ours_module


def test_group_norm_module_matches_torch_through_a_state_dict(tmp_path):
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs_m = torch.nn.GroupNorm(2, 6).double()
    with torch.no_grad():
        theirs_m.weight.normal_()
        theirs_m.bias.normal_()
    ours_m = _from_torch_via_npz(tmp_path, theirs_m, nn.GroupNorm(2, 6, dtype=np.float64))
    assert list(ours_m.state_dict()) == list(theirs_m.state_dict()) == ["weight", "bias"]
    x = randn(3, 6, 5)
    np.testing.assert_allclose(ours_m(x).data, theirs_m(torch.tensor(x)).detach().numpy(), rtol=1e-10)
    assert repr(nn.GroupNorm(2, 6)) == "GroupNorm(2, 6, eps=1e-05, affine=True)"
    assert nn.GroupNorm(3, 3, affine=False).parameters() == []
    y = nn.GroupNorm(2, 4)(randn(2, 4, 3).astype(np.float32))
    assert y.dtype == np.float32
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels \(6\) must be divisible by num_groups \(4\)"):
        nn.GroupNorm(4, 6)
    with pytest.raises(nk.ShapeError, match=r"GroupNorm.*expected an input of shape \(N, 6, \*\)"):
        nn.GroupNorm(2, 6)(np.ones((2, 4, 3)))


@pytest.mark.parametrize("cls, shape", [("InstanceNorm1d", (2, 3, 6)), ("InstanceNorm1d", (3, 5)),
                                        ("InstanceNorm2d", (2, 3, 4, 3)), ("InstanceNorm2d", (3, 2, 5))])
@pytest.mark.parametrize("affine, track", [(False, False), (True, False), (True, True), (False, True)])
def test_instance_norm_modules_match_torch(tmp_path, cls, shape, affine, track):
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs_m = getattr(torch.nn, cls)(3, affine=affine, track_running_stats=track, momentum=0.3).double()
    if affine:
        with torch.no_grad():
            theirs_m.weight.normal_()
            theirs_m.bias.normal_()
    ours_m = getattr(nn, cls)(3, affine=affine, track_running_stats=track, momentum=0.3, dtype=np.float64)
    assert list(ours_m.state_dict()) == list(theirs_m.state_dict())
    if ours_m.state_dict():
        _from_torch_via_npz(tmp_path, theirs_m, ours_m)
    for step in range(2):                       # training twice (running statistics move), then eval
        x = randn(*shape, seed=step, loc=1.0, scale=2.0)
        xt = torch.tensor(x, requires_grad=True)
        leaf = nk.from_ndarray(x.copy()).requires_grad()
        seed = randn(*shape, seed=10 + step)
        y, yt = ours_m(leaf), theirs_m(xt)
        np.testing.assert_allclose(y.data, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        y.backward(seed)
        (yt * torch.tensor(seed)).sum().backward()
        np.testing.assert_allclose(leaf.grad, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, value in theirs_m.state_dict().items():
        np.testing.assert_allclose(ours_m.state_dict()[name], value.numpy(), rtol=1e-12, err_msg=name)
    ours_m.eval(), theirs_m.eval()
    x = randn(*shape, seed=5)
    np.testing.assert_allclose(ours_m(x).data, theirs_m(torch.tensor(x)).detach().numpy(), rtol=1e-10,
                               atol=1e-12)


def test_instance_norm_module_channels_dtype_and_repr():
    m = nn.InstanceNorm2d(3)
    assert m.parameters() == [] and list(m.state_dict()) == []
    assert m(randn(2, 3, 4, 4).astype(np.float32)).dtype == np.float32
    with pytest.warns(UserWarning, match="InstanceNorm2d: the input of shape .* has 4 channels"):
        m(randn(2, 4, 3, 3))
    with pytest.raises(nk.ShapeError, match=r"InstanceNorm1d.*expected an input of shape \(N, 3, L\)"):
        nn.InstanceNorm1d(3, affine=True)(np.ones((2, 4, 5)))
    with pytest.raises(nk.ShapeError, match="InstanceNorm1d"):
        nn.InstanceNorm1d(3)(np.ones((2, 3, 4, 5)))
    assert repr(nn.InstanceNorm1d(3)) == \
        "InstanceNorm1d(3, eps=1e-05, momentum=0.1, affine=False, track_running_stats=False)"
    assert list(nn.InstanceNorm1d(3, affine=True, track_running_stats=True).state_dict()) == \
        ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


@pytest.mark.parametrize("shape, normalized", [((2, 5), 5), ((2, 3, 4), (3, 4))])
@pytest.mark.parametrize("eps", [None, 1e-4])
def test_rms_norm_module_matches_torch_through_a_state_dict(tmp_path, shape, normalized, eps):
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs_m = torch.nn.RMSNorm(normalized, eps=eps).double()
    with torch.no_grad():
        theirs_m.weight.normal_()
    ours_m = _from_torch_via_npz(tmp_path, theirs_m, nn.RMSNorm(normalized, eps=eps, dtype=np.float64))
    assert list(ours_m.state_dict()) == ["weight"]
    x = randn(*shape)
    np.testing.assert_allclose(ours_m(x).data, theirs_m(torch.tensor(x)).detach().numpy(), rtol=1e-10)


def test_rms_norm_module_dtype_repr_and_errors():
    m = nn.RMSNorm(4)
    assert m.weight.dtype == np.float32 and m(randn(2, 4).astype(np.float32)).dtype == np.float32
    assert repr(m) == "RMSNorm((4,), eps=None, elementwise_affine=True)"
    assert nn.RMSNorm(4, elementwise_affine=False).parameters() == []
    with pytest.raises(nk.ShapeError, match=r"RMSNorm.*expected an input of shape \(\*, 4\)"):
        m(np.ones((2, 3)))
    with pytest.raises(ValueError, match="RMSNorm: normalized_shape"):
        nn.RMSNorm(0)
    with pytest.raises(ValueError, match="RMSNorm: eps"):
        nn.RMSNorm(3, eps=-1.0)


def test_the_functions_are_in_nn_functional():
    for name in ("group_norm", "instance_norm", "rms_norm", "normalize", "cosine_similarity",
                 "pairwise_distance"):
        assert name in F.__all__ and callable(getattr(F, name))
    for name in ("GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "RMSNorm"):
        assert name in nn.__all__


NORM_SPACE_CASES = {
    "group_norm": lambda x: F.group_norm(x, 2),
    "instance_norm": lambda x: F.instance_norm(x),
    "rms_norm": lambda x: F.rms_norm(x, 5),
    "normalize": lambda x: F.normalize(x, 3.0),
    "cosine_similarity": lambda x: F.cosine_similarity(x, x[:1] * 2.0 + 1.0),
    "pairwise_distance": lambda x: F.pairwise_distance(x, x[:, :1]),
}


@pytest.mark.parametrize("name", list(NORM_SPACE_CASES))
def test_array_api_strict_gives_the_numpy_results(name):
    xs = pytest.importorskip("array_api_strict")
    fn = NORM_SPACE_CASES[name]
    x = randn(2, 4, 5)
    want = nk.from_ndarray(x.copy()).requires_grad()
    fn(want).sum().backward()
    leaf = nk.from_ndarray(xs.asarray(x)).requires_grad()
    y = fn(leaf)
    y.sum().backward()
    assert type(y.data).__module__.startswith("array_api_strict")
    np.testing.assert_allclose(np.asarray(y.data), fn(nk.from_ndarray(x)).data, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(leaf.grad), want.grad, rtol=1e-12, atol=1e-14)


def test_instance_norm_running_statistics_stay_in_their_library():
    xs = pytest.importorskip("array_api_strict")
    x = randn(3, 2, 6)
    mean, var = np.zeros(2), np.ones(2)
    smean, svar = xs.asarray(mean), xs.asarray(var)
    F.instance_norm(x, mean, var)
    F.instance_norm(xs.asarray(x), smean, svar)
    np.testing.assert_allclose(np.asarray(smean), mean, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(svar), var, rtol=1e-12)
