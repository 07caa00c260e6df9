"""Attention and transformer layers: F.scaled_dot_product_attention, nn.MultiheadAttention,
nn.TransformerEncoderLayer / Encoder / DecoderLayer / Decoder and nn.Transformer, against
PyTorch (values and gradients in float64, state dicts saved as npz), finite differences to
second order, masks (fully masked rows included), dtypes and errors."""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn
from neuronika.nn import functional as F
from neuronika.nn.module import load
from neuronika.testing import check_grads, oracle

# PyTorch's own deprecation and speed notes when it is the oracle
pytestmark = pytest.mark.filterwarnings("ignore:.*(mismatched|enable_nested_tensor).*:UserWarning")


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def leaves(*arrays):
    return [nk.from_ndarray(np.array(a)).requires_grad() for a in arrays]


def torch_leaves(*arrays):
    torch = oracle("torch")
    return [torch.tensor(a, requires_grad=True) for a in arrays]


def assert_close(got, want, rtol=1e-10, atol=1e-12, what=""):
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert np.shape(got) == want.shape, what
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


# ---- scaled_dot_product_attention --------------------------------------------------------------

SDPA_SHAPES = [                              # query, key, value
    ((4, 3), (5, 3), (5, 2)),
    ((2, 4, 3), (2, 6, 3), (2, 6, 5)),
    ((2, 3, 4, 6), (2, 3, 5, 6), (2, 3, 5, 4)),
    ((2, 3, 4, 6), (1, 3, 5, 6), (5, 4)),           # batch axes broadcast
]


def _mask_for(kind, L, S, batch, seed=3):
    rng = np.random.default_rng(seed)
    if kind == "bool":
        mask = rng.random((L, S)) < 0.7
        mask[:, 0] = True
        return mask
    if kind == "bool-batched":
        mask = rng.random(batch[:1] + (1, L, S) if len(batch) >= 2 else batch + (L, S)) < 0.7
        mask[..., 0] = True
        return mask
    if kind == "float":
        mask = rng.standard_normal((L, S))
        mask[rng.random((L, S)) < 0.3] = -np.inf
        mask[:, 0] = 0.0
        return mask
    return None


@pytest.mark.parametrize("shapes", SDPA_SHAPES)
@pytest.mark.parametrize("mask_kind, causal, scale", [(None, False, None), ("bool", False, None),
                                                      ("bool-batched", False, 0.7), ("float", False, None),
                                                      (None, True, None), (None, True, -0.4)])
def test_sdpa_matches_torch(shapes, mask_kind, causal, scale):
    torch = oracle("torch")
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    L, S = shapes[0][-2], shapes[1][-2]
    batch = np.broadcast_shapes(*(s[:-2] for s in shapes))
    mask = _mask_for(mask_kind, L, S, batch)
    cotangent = randn(*(batch + (L, shapes[2][-1])), seed=9)
    ours = leaves(*arrays)
    out = F.scaled_dot_product_attention(*ours, attn_mask=mask, is_causal=causal, scale=scale)
    out.backward(cotangent)
    theirs = torch_leaves(*arrays)
    want = torch.nn.functional.scaled_dot_product_attention(
        *theirs, attn_mask=None if mask is None else torch.tensor(mask), is_causal=causal, scale=scale)
    (want * torch.tensor(cotangent)).sum().backward()
    assert_close(out.data, want, what="value")
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert_close(a.grad, b.grad, what=f"gradient of input {i}")


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_sdpa_fully_masked_rows_give_zeros_like_torch(kind):
    torch = oracle("torch")
    arrays = [randn(2, 4, 3, seed=1), randn(2, 5, 3, seed=2), randn(2, 5, 2, seed=3)]
    mask = np.ones((4, 5), bool)
    mask[1] = False
    mask[2, 3:] = False
    if kind == "float":
        mask = np.where(mask, 0.0, -np.inf)
    ours = leaves(*arrays)
    out = F.scaled_dot_product_attention(*ours, attn_mask=mask)
    out.backward(np.ones(out.shape))
    theirs = torch_leaves(*arrays)
    want = torch.nn.functional.scaled_dot_product_attention(*theirs, attn_mask=torch.tensor(mask))
    want.sum().backward()
    assert np.all(out.data[:, 1] == 0)
    assert_close(out.data, want)
    for a, b in zip(ours, theirs):
        assert np.all(np.isfinite(a.grad))
        assert_close(a.grad, b.grad)


@pytest.mark.parametrize("shapes", [((3, 2), (4, 2), (4, 3)), ((2, 1, 3, 2), (2, 2, 4, 2), (1, 4, 2))])
@pytest.mark.parametrize("option", ["none", "bool", "float", "causal"])
def test_sdpa_finite_differences_second_order(shapes, option):
    L, S = shapes[0][-2], shapes[1][-2]
    mask = None
    if option == "bool":
        mask = np.array([[True, False, True, False], [False] * 4, [True, True, False, False]])
    elif option == "float":
        mask = randn(L, S, seed=5)
        mask[0, 1] = -np.inf
    arrays = [randn(*s, seed=i) for i, s in enumerate(shapes)]
    check_grads(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                               is_causal=option == "causal"), *arrays, order=2)


def test_sdpa_grouped_query_attention_matches_torch():
    torch = oracle("torch")
    arrays = [randn(2, 6, 4, 3, seed=1), randn(2, 2, 5, 3, seed=2), randn(2, 2, 5, 4, seed=3)]
    mask = np.random.default_rng(0).random((6, 4, 5)) < 0.6
    ours = leaves(*arrays)
    out = F.scaled_dot_product_attention(*ours, attn_mask=mask, enable_gqa=True)
    out.backward(np.ones(out.shape))
    theirs = torch_leaves(*arrays)
    want = torch.nn.functional.scaled_dot_product_attention(*theirs, attn_mask=torch.tensor(mask), enable_gqa=True)
    want.sum().backward()
    assert_close(out.data, want)
    for a, b in zip(ours, theirs):
        assert_close(a.grad, b.grad)


def test_sdpa_dropout_float32_and_variable_masks():
    nk.manual_seed(0)
    q = np.zeros((1, 4, 2), np.float32)            # uniform weights 1/8; v the identity: out = weights
    v = np.eye(8, dtype=np.float32)[None]
    out = F.scaled_dot_product_attention(q, np.zeros((1, 8, 2), np.float32), v, dropout_p=0.5)
    assert out.dtype == np.float32
    assert set(np.unique(out.data)) == {np.float32(0), np.float32(0.25)}
    # float32 in, float32 out, with a float64 mask and a mask given as a variable
    q32, k32, v32 = (randn(2, 3, 4, seed=i).astype(np.float32) for i in range(3))
    mask = np.triu(np.ones((3, 3), bool))
    a = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=nk.from_ndarray(mask))
    b = F.scaled_dot_product_attention(q32, k32, v32, attn_mask=np.where(mask, 0.0, -np.inf))
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a.data, b.data, rtol=1e-6)


def test_sdpa_inside_grad_with_a_mask_argument():
    q, k, v = (randn(2, 3, 4, seed=i) for i in range(3))
    mask = np.ones((3, 3), bool)
    mask[0] = False

    def loss(q, k, v, mask):
        return (F.scaled_dot_product_attention(q, k, v, attn_mask=mask) ** 2).sum()

    grads = nk.grad(loss, argnums=(0, 1, 2))(q, k, v, mask)
    ours = leaves(q, k, v)
    loss(*ours, mask).backward()
    for g, leaf in zip(grads, ours):
        np.testing.assert_allclose(g, leaf.grad, rtol=1e-12)
        assert np.all(np.isfinite(g))


def test_sdpa_errors():
    q, k, v = randn(2, 3, 4), randn(2, 5, 4), randn(2, 5, 6)
    with pytest.raises(ValueError, match="attn_mask cannot be given with is_causal"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 5), bool), is_causal=True)
    with pytest.raises(nk.ShapeError, match=r"attn_mask of shape \(4, 5\).*\(2, 3, 5\).*test_attention.py:\d+\)$"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((4, 5), bool))
    with pytest.raises(nk.ShapeError, match=r"query \(2, 3, 4\), key \(2, 5, 3\)"):
        F.scaled_dot_product_attention(q, randn(2, 5, 3), v)
    with pytest.raises(nk.ShapeError, match=r"key \(2, 5, 4\) and value \(2, 4, 6\)"):
        F.scaled_dot_product_attention(q, k, randn(2, 4, 6))
    with pytest.raises(nk.ShapeError, match="do not broadcast"):
        F.scaled_dot_product_attention(q, randn(3, 5, 4), randn(3, 5, 6))
    with pytest.raises(TypeError, match="booleans or floats"):
        F.scaled_dot_product_attention(q, k, v, attn_mask=np.ones((3, 5), int))
    with pytest.raises(TypeError, match="same dtype"):
        F.scaled_dot_product_attention(q.astype(np.float32), k, v)
    with pytest.raises(ValueError, match=r"dropout_p must be in \[0, 1\]"):
        F.scaled_dot_product_attention(q, k, v, dropout_p=1.5)
    with pytest.raises(nk.ShapeError, match="Hq a multiple of Hk"):
        F.scaled_dot_product_attention(randn(3, 2, 4), randn(2, 5, 4), randn(2, 5, 4), enable_gqa=True)


# ---- MultiheadAttention ------------------------------------------------------------------------

def _torch_state(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def _transfer(tmp_path, theirs, ours):
    """PyTorch's state dict saved as npz and loaded into our module (names and order checked)."""
    path = tmp_path / "state.npz"
    np.savez(path, **_torch_state(theirs))
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(load(path))
    return ours


def _randomise(torch_module, seed=0):
    torch = oracle("torch")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in torch_module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return torch_module


def _mha_pair(tmp_path, embed_dim=6, num_heads=2, **options):
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs = _randomise(torch.nn.MultiheadAttention(embed_dim, num_heads, dtype=torch.float64, **options))
    ours = _transfer(tmp_path, theirs, nn.MultiheadAttention(embed_dim, num_heads, dtype=np.float64, **options))
    return ours, theirs


def _compare_call(ours, theirs, inputs, kwargs, rtol=1e-10, atol=1e-12):
    """Both modules on the same inputs: outputs, weights, input and parameter gradients."""
    torch = oracle("torch")
    ours_in = leaves(*inputs)
    theirs_in = torch_leaves(*inputs)
    # one object for query, key and value where the caller shares them
    if inputs[0] is inputs[1] is inputs[2]:
        ours_in, theirs_in = [ours_in[0]] * 3, [theirs_in[0]] * 3
    tkw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    out, weights = ours(*ours_in, **kwargs)
    want, want_weights = theirs(*theirs_in, **tkw)
    assert_close(out.data, want, rtol, atol, "output")
    if want_weights is None:
        assert weights is None
    else:
        assert_close(weights.data, want_weights, rtol, atol, "weights")
    seed = randn(*out.shape, seed=11)
    total = (out * seed).sum()
    want_total = (want * torch.tensor(seed)).sum()
    if weights is not None:
        wseed = randn(*weights.shape, seed=12)
        total = total + (weights * wseed).sum()
        want_total = want_total + (want_weights * torch.tensor(wseed)).sum()
    total.backward()
    want_total.backward()
    for i, (a, b) in enumerate(zip(ours_in, theirs_in)):
        assert_close(a.grad, b.grad, rtol, atol, f"gradient of input {i}")
    grads = {name: p.grad for name, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name], rtol, atol, f"gradient of {name}")
    return out


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("options", [{}, {"kdim": 4, "vdim": 5}, {"bias": False},
                                     {"add_bias_kv": True, "add_zero_attn": True}])
def test_mha_matches_torch(tmp_path, batch_first, options):
    ours, theirs = _mha_pair(tmp_path, batch_first=batch_first, **options)
    L, S, N = 3, 4, 2
    shape = (lambda n, s, e: (n, s, e)) if batch_first else (lambda n, s, e: (s, n, e))
    q = randn(*shape(N, L, 6), seed=1)
    k = randn(*shape(N, S, ours.kdim), seed=2)
    v = randn(*shape(N, S, ours.vdim), seed=3)
    kpm = np.zeros((N, S), bool)
    kpm[0, 1] = kpm[1, 3] = True
    attn = randn(N * 2, L, S, seed=4)
    for kwargs in ({}, {"key_padding_mask": kpm}, {"attn_mask": attn, "average_attn_weights": False},
                   {"attn_mask": np.triu(np.ones((L, S), bool), 1), "key_padding_mask": kpm,
                    "need_weights": False}):
        ours.zero_grad()
        theirs.zero_grad()
        _compare_call(ours, theirs, (q, k, v), kwargs)


@pytest.mark.parametrize("need_weights", [True, False])
def test_mha_self_attention_unbatched_and_float_masks(tmp_path, need_weights):
    ours, theirs = _mha_pair(tmp_path, embed_dim=8, num_heads=4)
    x = randn(5, 8, seed=1)                                   # unbatched (L, E), one object
    kpm = np.array([0.0, -1.0, 0.5, -np.inf, 0.0])
    attn = randn(4, 5, 5, seed=2)                             # (num_heads, L, S) unbatched
    _compare_call(ours, theirs, (x, x, x), {"key_padding_mask": kpm, "attn_mask": attn,
                                            "need_weights": need_weights, "average_attn_weights": False})
    ours.zero_grad()
    theirs.zero_grad()
    _compare_call(ours, theirs, (x, x, x), {"need_weights": need_weights})


@pytest.mark.filterwarnings("ignore:invalid value encountered")
def test_mha_fully_masked_query_as_torch(tmp_path):
    """PyTorch gives NaN with need_weights=True (a plain softmax), zeros (then out_proj) without."""
    torch = oracle("torch")
    ours, theirs = _mha_pair(tmp_path)
    x = randn(3, 2, 6)
    kpm = np.zeros((2, 3), bool)
    kpm[1] = True
    out, weights = ours(x, x, x, key_padding_mask=kpm)
    want, want_weights = theirs(*[torch.tensor(x)] * 3, key_padding_mask=torch.tensor(kpm))
    assert np.isnan(out.data[:, 1]).all() and np.isnan(want.detach().numpy()[:, 1]).all()
    assert_close(out.data[:, 0], want[:, 0])
    xs = leaves(x)[0]
    out, _ = ours(xs, xs, xs, key_padding_mask=kpm, need_weights=False)
    want, _ = theirs(*[torch.tensor(x)] * 3, key_padding_mask=torch.tensor(kpm), need_weights=False)
    assert_close(out.data, want)
    np.testing.assert_allclose(out.data[:, 1], np.broadcast_to(ours.out_proj.bias.data, (3, 6)))
    out.sum().backward()
    assert np.isfinite(xs.grad).all()


def test_mha_is_causal_hint(tmp_path):
    ours, theirs = _mha_pair(tmp_path)
    x = randn(4, 2, 6)
    causal = nn.Transformer.generate_square_subsequent_mask(4, dtype=np.float64)
    _compare_call(ours, theirs, (x, x, x), {"attn_mask": causal, "is_causal": True, "need_weights": False})
    with pytest.raises(ValueError, match="is_causal=True is a hint"):
        ours(x, x, x, is_causal=True)


def test_mha_finite_differences_second_order():
    nk.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2, kdim=3, vdim=2, batch_first=True, dtype=np.float64)
    names = [name for name, _ in mha.named_parameters()]
    kpm = np.array([[False, True, False], [False, False, False]])

    def fn(q, k, v, *params):
        for name, p in zip(names, params):
            owner = mha.out_proj if name.startswith("out_proj.") else mha
            object.__setattr__(owner, name.split(".")[-1], p)
        out, weights = mha(q, k, v, key_padding_mask=kpm)
        return out.sum(-1) + weights.sum(-1)

    check_grads(fn, randn(2, 2, 4, seed=1), randn(2, 3, 3, seed=2), randn(2, 3, 2, seed=3),
                *[p.data.copy() for p in mha.parameters()], order=2)


def test_mha_defaults_dtype_repr_and_errors():
    torch = oracle("torch")
    mha = nn.MultiheadAttention(8, 2)
    assert mha.in_proj_weight.dtype == np.float32 and mha.head_dim == 4
    assert np.all(mha.in_proj_bias.data == 0) and np.all(mha.out_proj.bias.data == 0)
    assert list(mha.state_dict()) == list(torch.nn.MultiheadAttention(8, 2).state_dict())
    assert list(nn.MultiheadAttention(8, 2, add_bias_kv=True, kdim=3).state_dict()) == list(
        torch.nn.MultiheadAttention(8, 2, add_bias_kv=True, kdim=3).state_dict())
    x = np.ones((3, 2, 8), np.float32)
    out, weights = mha(x, x, x)
    assert out.dtype == weights.dtype == np.float32
    out, weights = mha(x, x, x, attn_mask=np.zeros((3, 3)), key_padding_mask=np.zeros((2, 3)))   # float64 masks
    assert out.dtype == weights.dtype == np.float32
    assert repr(mha).startswith("MultiheadAttention(embed_dim=8, num_heads=2")
    with pytest.raises(ValueError, match=r"embed_dim \(6\) must be divisible by num_heads \(4\)"):
        nn.MultiheadAttention(6, 4)
    with pytest.raises(nk.ShapeError, match=r"key_padding_mask must have shape \(2, 3\).*test_attention.py:\d+\)$"):
        mha(x, x, x, key_padding_mask=np.zeros((3, 2), bool))
    with pytest.raises(nk.ShapeError, match=r"attn_mask must have shape \(3, 3\) or \(4, 3, 3\)"):
        mha(x, x, x, attn_mask=np.zeros((2, 3, 3), bool))
    with pytest.raises(nk.ShapeError, match="8, 8 and 8 features"):
        mha(x, np.ones((3, 2, 5)), np.ones((3, 2, 5)))
    with pytest.raises(nk.ShapeError, match="different batch sizes"):
        mha(x, np.ones((3, 4, 8)), np.ones((3, 4, 8)))
    with pytest.raises(nk.ShapeError, match="all 3-D"):
        mha(x, np.ones((3, 8)), np.ones((3, 8)))


# ---- transformer layers --------------------------------------------------------------------------

def _layer_pair(tmp_path, cls, **options):
    torch = oracle("torch")
    torch.manual_seed(0)
    theirs = _randomise(getattr(torch.nn, cls)(dtype=torch.float64, **options))
    ours = _transfer(tmp_path, theirs, getattr(nn, cls)(dtype=np.float64, **options))
    return ours, theirs


def _run_both(ours, theirs, inputs, kwargs, rtol=1e-9, atol=1e-11):
    torch = oracle("torch")
    ours_in, theirs_in = leaves(*inputs), torch_leaves(*inputs)
    tkw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    out = ours(*ours_in, **kwargs)
    want = theirs(*theirs_in, **tkw)
    assert_close(out.data, want, rtol, atol, "output")
    seed = randn(*out.shape, seed=21)
    (out * seed).sum().backward()
    (want * torch.tensor(seed)).sum().backward()
    for i, (a, b) in enumerate(zip(ours_in, theirs_in)):
        assert_close(a.grad, b.grad, rtol, atol, f"gradient of input {i}")
    grads = {name: p.grad for name, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name], rtol, atol, f"gradient of {name}")


@pytest.mark.parametrize("norm_first, activation, batch_first", [(False, "relu", False), (True, "gelu", True),
                                                                 (True, "relu", False), (False, "gelu", True)])
def test_encoder_layer_matches_torch(tmp_path, norm_first, activation, batch_first):
    ours, theirs = _layer_pair(tmp_path, "TransformerEncoderLayer", d_model=6, nhead=2, dim_feedforward=10,
                               dropout=0.0, activation=activation, norm_first=norm_first, batch_first=batch_first)
    x = randn(*((2, 4, 6) if batch_first else (4, 2, 6)), seed=1)
    kpm = np.array([[False, False, True, False], [False, False, False, False]])
    causal = nn.Transformer.generate_square_subsequent_mask(4, dtype=np.float64)
    _run_both(ours, theirs, (x,), {})
    for kwargs in ({"src_mask": causal, "src_key_padding_mask": kpm}, {"src_mask": causal, "is_causal": True}):
        ours.zero_grad()
        theirs.zero_grad()
        _run_both(ours, theirs, (x,), kwargs)


@pytest.mark.parametrize("norm_first, activation", [(False, "relu"), (True, "gelu")])
def test_decoder_layer_matches_torch(tmp_path, norm_first, activation):
    ours, theirs = _layer_pair(tmp_path, "TransformerDecoderLayer", d_model=6, nhead=3, dim_feedforward=8,
                               dropout=0.0, activation=activation, norm_first=norm_first)
    tgt, memory = randn(3, 2, 6, seed=1), randn(5, 2, 6, seed=2)
    kwargs = {"tgt_mask": nn.Transformer.generate_square_subsequent_mask(3, dtype=np.float64),
              "memory_key_padding_mask": np.array([[False, True, False, False, True], [False] * 5]),
              "tgt_is_causal": True}
    _run_both(ours, theirs, (tgt, memory), kwargs)


@pytest.mark.parametrize("norm_first", [False, True])
def test_layers_finite_differences_second_order(norm_first):
    nk.manual_seed(0)
    encoder = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, activation="gelu", norm_first=norm_first,
                                         dtype=np.float64)
    decoder = nn.TransformerDecoderLayer(4, 2, 6, dropout=0.0, norm_first=norm_first, dtype=np.float64)
    mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=np.float64)
    kpm = np.array([[False, False, True], [False, False, False]])
    check_grads(lambda x: encoder(x, src_mask=mask, src_key_padding_mask=kpm), randn(3, 2, 4), order=2)
    check_grads(lambda t, m: decoder(t, m, tgt_mask=mask), randn(3, 2, 4, seed=1), randn(2, 2, 4, seed=2),
                order=2)


def test_two_layer_encoder_loss_gradients_match_torch(tmp_path):
    torch = oracle("torch")
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, dtype=torch.float64)
    theirs = _randomise(torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(8, dtype=torch.float64),
                                                    enable_nested_tensor=False))
    ours = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 12, dropout=0.0, dtype=np.float64), 2,
                                 norm=nn.LayerNorm(8, dtype=np.float64))
    _transfer(tmp_path, theirs, ours)
    assert ours.layers[0].linear1.weight._node is not ours.layers[1].linear1.weight._node
    x, target = randn(5, 3, 8, seed=1), randn(5, 3, 8, seed=2)
    kpm = np.zeros((3, 5), bool)
    kpm[2, 3:] = True
    loss = F.mse_loss(ours(x, src_key_padding_mask=kpm), target)
    want = torch.nn.functional.mse_loss(theirs(torch.tensor(x), src_key_padding_mask=torch.tensor(kpm)),
                                        torch.tensor(target))
    assert_close(loss.data, want)
    loss.backward()
    want.backward()
    grads = {name: p.grad for name, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        assert_close(p.grad, grads[name], 1e-9, 1e-11, f"gradient of {name}")


@pytest.mark.parametrize("norm_first, batch_first, bias", [(False, False, True), (True, True, False)])
def test_transformer_matches_torch(tmp_path, norm_first, batch_first, bias):
    ours, theirs = _layer_pair(tmp_path, "Transformer", d_model=6, nhead=2, num_encoder_layers=2,
                               num_decoder_layers=1, dim_feedforward=8, dropout=0.0, activation="gelu",
                               norm_first=norm_first, batch_first=batch_first, bias=bias)
    src = randn(*((2, 5, 6) if batch_first else (5, 2, 6)), seed=1)
    tgt = randn(*((2, 4, 6) if batch_first else (4, 2, 6)), seed=2)
    kwargs = {"tgt_mask": nn.Transformer.generate_square_subsequent_mask(4, dtype=np.float64),
              "src_key_padding_mask": np.array([[False] * 4 + [True], [False] * 5]),
              "memory_key_padding_mask": np.array([[False] * 4 + [True], [False] * 5]),
              "memory_mask": np.array([[False, True, False, False, False]] * 4)}
    _run_both(ours, theirs, (src, tgt), kwargs)


def test_transformer_eval_unbatched_and_defaults():
    torch = oracle("torch")
    nk.manual_seed(0)
    model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=16)
    torch_model = torch.nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                                       dim_feedforward=16)
    assert list(model.state_dict()) == list(torch_model.state_dict())
    assert model.encoder.layers[0].dropout.p == 0.1 and model.encoder.layers[0].linear1.weight.dtype == np.float32
    model.load_state_dict({k: v.numpy() for k, v in torch_model.state_dict().items()})
    src, tgt = randn(5, 8, seed=1).astype(np.float32), randn(3, 8, seed=2).astype(np.float32)
    model.eval()
    torch_model.eval()
    a, b = model(src, tgt), model(src, tgt)
    assert a.dtype == np.float32 and a.shape == (3, 8)
    np.testing.assert_array_equal(a.data, b.data)       # no dropout in eval
    with torch.no_grad():
        want = torch_model(torch.tensor(src), torch.tensor(tgt))
    assert_close(a.data, want, rtol=1e-4, atol=1e-5)     # unbatched, float32
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    assert mask.dtype == np.float32 and type(nn.Transformer.generate_square_subsequent_mask(2, "cpu")) is np.ndarray
    np.testing.assert_array_equal(mask, torch.nn.Transformer.generate_square_subsequent_mask(4).numpy())


def test_transformer_errors():
    with pytest.raises(ValueError, match=r"embed_dim \(6\) must be divisible by num_heads \(4\)"):
        nn.TransformerEncoderLayer(6, 4)
    with pytest.raises(ValueError, match="activation must be 'relu', 'gelu' or a callable"):
        nn.TransformerEncoderLayer(6, 2, activation="tanh")
    layer = nn.TransformerEncoderLayer(6, 2, 8)
    with pytest.raises(nk.ShapeError, match=r"src must have shape \(S, N, 6\)"):
        layer(np.ones((4, 2, 5), np.float32))
    with pytest.raises(nk.ShapeError, match=r"attn_mask must have shape \(4, 4\)"):
        layer(np.ones((4, 2, 6), np.float32), src_mask=np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="is_causal=True is a hint"):
        nn.TransformerEncoder(layer, 2)(np.ones((4, 2, 6), np.float32), is_causal=True)
    with pytest.raises(TypeError, match="expected a TransformerEncoderLayer"):
        nn.TransformerEncoder(nn.Linear(2, 2), 2)
    model = nn.Transformer(6, 2, 1, 1, 8)
    with pytest.raises(nk.ShapeError, match="the batch number of src and tgt must be equal"):
        model(np.ones((4, 2, 6), np.float32), np.ones((3, 3, 6), np.float32))
    with pytest.raises(nk.ShapeError, match=r"must be equal to d_model \(6\)"):
        model(np.ones((4, 2, 5), np.float32), np.ones((3, 2, 5), np.float32))


def test_callable_activation_and_module_activation():
    torch = oracle("torch")
    layer = nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, activation=nn.GELU(approximate="tanh"),
                                       dtype=np.float64)
    theirs = torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, activation=torch.nn.GELU(approximate="tanh"),
                                              dtype=torch.float64)
    layer.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = randn(3, 2, 4)
    assert_close(layer(x).data, theirs(torch.tensor(x)))


def test_dropout_in_training_only_and_repeated_calls_agree():
    nk.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.5, dtype=np.float64)
    x = randn(5, 3, 8)
    a, b = layer(x).data, layer(x).data
    assert not np.allclose(a, b)                  # masks drawn in training (attention weights too)
    mha = nn.MultiheadAttention(8, 2, dropout=0.5, dtype=np.float64)
    weights = [mha(x, x, x)[1].data for _ in range(2)]
    assert not np.allclose(*weights)
    layer.eval()
    mha.eval()
    np.testing.assert_array_equal(mha(x, x, x)[1].data, mha(x, x, x)[1].data)
    mask = nn.Transformer.generate_square_subsequent_mask(5, dtype=np.float64)
    kpm = np.zeros((3, 5), bool)
    kpm[1, 2:] = True
    results = []
    for _ in range(3):                            # interpreted first, compiled on the repeats
        layer.zero_grad()
        xv = nk.from_ndarray(x.copy()).requires_grad()
        y = layer(xv, src_mask=mask, src_key_padding_mask=kpm)
        (y * y).sum().backward()
        results.append((y.data, xv.grad, layer.self_attn.in_proj_weight.grad.copy()))
    for later in results[1:]:
        for got, first in zip(later, results[0]):
            np.testing.assert_array_equal(got, first)


def test_another_array_library_stays_there():
    xs = pytest.importorskip("array_api_strict")
    qn = randn(2, 3, 4)
    q = xs.asarray(qn)
    mask = np.tri(3, dtype=bool)
    for kwargs in ({"is_causal": True}, {"attn_mask": mask}, {"attn_mask": xs.asarray(mask)}):
        out = F.scaled_dot_product_attention(q, q, q, **kwargs)
        want = F.scaled_dot_product_attention(qn, qn, qn, **{k: (np.asarray(v) if k == "attn_mask" else v)
                                                            for k, v in kwargs.items()})
        assert type(out.data).__module__.startswith("array_api_strict")
        np.testing.assert_allclose(np.asarray(out.data), want.data, rtol=1e-12)
    nk.manual_seed(0)
    mha = nn.MultiheadAttention(4, 2, add_bias_kv=True, add_zero_attn=True, dtype=np.float64)
    kpm = np.array([[False, True], [False, False], [True, False]])
    want = mha(qn, qn, qn, key_padding_mask=kpm, need_weights=False)[0].data
    out = mha.to(xs)(q, q, q, key_padding_mask=kpm, need_weights=False)[0]
    np.testing.assert_allclose(np.asarray(out.data), want, rtol=1e-12)
