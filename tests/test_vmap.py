"""vmap: a function of one example applied to a batch by rewriting its graph (batching rules).

Every function of ``tests/numpy_api`` (one case each) is batched and compared with a loop over
the examples, with every input batched and with only the first; the rules with structure of
their own (matmul's 1-D operands, advanced indices apart or batched, grouped convolutions for
batched kernels, ...) have cases of their own; then composition (grad, jit, nested vmap), the
axes arguments, and the refusals.
"""
from __future__ import annotations

import numpy as np
import pytest

import neuronika as nk
import neuronika.numpy as nnp
from neuronika.nn import functional as F
from neuronika.testing import check_grads

from tests.numpy_api.cases import _flat, all_cases

B = 3


def _one_per_function():
    seen = {}
    for family, case in all_cases():
        seen.setdefault((family, case.name), case)
    return [pytest.param(case, id=f"{family}:{case.id}") for (family, _), case in seen.items()]


def _batch_of(a):
    # each example a positive multiple of the case's input (domains, signs and orderings
    # kept); integer inputs (indices) repeated
    if a.dtype.kind in "fc":
        return np.stack([a * (1 - 0.03 * i) for i in range(B)])
    return np.stack([a] * B)


def _loop(fn, args, axes, size):
    rows = []
    for i in range(size):
        one = [nk.from_ndarray(np.take(a, i, axis=ax)) if ax is not None else
               (nk.from_ndarray(a) if isinstance(a, np.ndarray) else a) for a, ax in zip(args, axes)]
        out = fn(*one)
        rows.append([np.asarray(r.data if isinstance(r, nk.Var) else r) for r in _flat(out)])
    return [np.stack([r[k] for r in rows]) for k in range(len(rows[0]))]


def _check(fn, args, in_axes=0, rtol=1e-9, atol=1e-9):
    axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
    size = next(np.shape(a)[ax] for a, ax in zip(args, axes) if ax is not None)
    got = _flat(nk.vmap(fn, in_axes=in_axes)(*args))
    want = _loop(fn, args, axes, size)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        g = np.asarray(g)
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol, equal_nan=True)


# functions that read values in Python (a check, a data-dependent shape): refused by name
_READS_VALUES = {"real_if_close", "linalg.eig", "linalg.eigvals", "linalg.lstsq", "allclose",
                 "array_equal", "nonzero", "flatnonzero"}


@pytest.mark.parametrize("every", [True, False], ids=["all-batched", "first-batched"])
@pytest.mark.parametrize("case", _one_per_function())
def test_every_function_against_a_loop(case, every):
    arrays = case.arrays
    axes = tuple(0 if every or k == 0 else None for k in range(len(arrays)))
    args = [_batch_of(a) if ax == 0 else a for a, ax in zip(arrays, axes)]

    def fn(*xs):
        return [r for r in _flat(case.call(nnp, *xs)) if isinstance(r, (nk.Var, np.ndarray, np.generic))]

    want = _loop(fn, args, axes, B)
    if case.name in _READS_VALUES:
        with pytest.raises((nk.BatchingError, nk.GradientError), match=r"vmap|depends on the values"):
            nk.vmap(fn, in_axes=axes)(*args)
        return
    got = nk.vmap(fn, in_axes=axes)(*args)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-9, atol=1e-9, equal_nan=True)


rng = np.random.default_rng(0)


def r(*shape):
    return rng.standard_normal(shape)


def labels(high, *shape):
    return rng.integers(0, high, shape)


RULES = [
    # broadcasting: the unbatched operand has more axes than one example
    ("elementwise-rank", lambda a, b: a - b, [r(5, 4), r(3, 5, 1)], (1, None)),
    ("reduce-all", lambda a: a.max(), [r(3, 4, 2)], 0),
    ("reduce-keepdims", lambda a: a.mean(axis=(0, 1), keepdims=True), [r(3, 4, 2)], 0),
    ("argmax-flat", lambda a: nnp.argmax(a), [r(3, 4, 2)], 0),
    ("argmin-axis", lambda a: nnp.argmin(a, axis=1, keepdims=True), [r(3, 4, 2)], 0),
    ("softmax", lambda a: F.softmax(a, dim=-1), [r(3, 4, 2)], 0),
    ("cumprod", lambda a: nnp.cumprod(a, axis=0), [r(3, 4, 2)], 0),
    ("sort", lambda a: nnp.sort(a, axis=-1), [r(3, 4, 5)], 0),
    # matmul: every pairing of 1-D, 2-D and stacked operands, each side batched or shared
    ("matmul-1-2", lambda a, b: a @ b, [r(3, 4), r(4, 5)], (0, None)),
    ("matmul-1-2-both", lambda a, b: a @ b, [r(3, 4), r(3, 4, 5)], 0),
    ("matmul-2-1", lambda a, b: a @ b, [r(5, 4), r(3, 4)], (None, 0)),
    ("matmul-2-1-both", lambda a, b: a @ b, [r(3, 5, 4), r(3, 4)], 0),
    ("matmul-1-1", lambda a, b: a @ b, [r(3, 4), r(3, 4)], 0),
    ("matmul-1-1-shared", lambda a, b: a @ b, [r(3, 4), r(4)], (0, None)),
    ("matmul-3-2", lambda a, b: a @ b, [r(2, 5, 4), r(3, 4, 6)], (None, 0)),
    ("matmul-2-3", lambda a, b: a @ b, [r(3, 5, 4), r(2, 4, 6)], (0, None)),
    ("matmul-1-3", lambda a, b: a @ b, [r(3, 4), r(2, 4, 6)], (0, None)),
    ("matmul-3-1", lambda a, b: a @ b, [r(2, 5, 4), r(3, 4)], (None, 0)),
    ("matmul-3-3", lambda a, b: a @ b, [r(3, 2, 5, 4), r(3, 1, 4, 6)], 0),
    ("einsum", lambda a, b: nnp.einsum("ij,jk->ki", a, b), [r(2, 4), r(3, 4, 5)], (None, 0)),
    ("einsum-both", lambda a, b: nnp.einsum("ij,ij->i", a, b), [r(3, 2, 4), r(3, 2, 4)], 0),
    ("transpose", lambda a: nnp.transpose(a, (2, 0, 1)), [r(3, 2, 4, 5)], 0),
    ("reshape", lambda a: a.reshape(2, -1), [r(3, 2, 4)], 0),
    ("broadcast_to", lambda a: nnp.broadcast_to(a, (3, 2, 4)), [r(5, 2, 1)], 0),
    ("moved-axis", lambda a: a.sum(0), [r(4, 3, 2)], 2),
    # indexing: basic, advanced adjacent and apart, batched index arrays (labels)
    ("index-basic", lambda a: a[1:, None, 2], [r(3, 4, 5)], 0),
    ("index-ellipsis", lambda a: a[..., 1], [r(3, 4, 5)], 0),
    ("index-array", lambda a: a[np.array([0, 2, 2])], [r(3, 4, 5)], 0),
    ("index-array-middle", lambda a: a[:, np.array([0, 2, 2])], [r(3, 4, 5)], 0),
    ("index-arrays-apart", lambda a: a[np.array([0, 1]), :, np.array([1, 0])], [r(3, 2, 4, 5)], 0),
    ("index-label", lambda a, y: a[y], [r(6, 5), labels(5, 6)], 0),
    ("index-label-middle", lambda a, y: a[:, y], [r(6, 3, 5), labels(5, 6)], 0),
    ("index-batched-array", lambda a, y: a[y], [r(6, 5, 2), labels(5, 6, 3)], 0),
    ("index-batched-array-middle", lambda a, y: a[:, y], [r(6, 4, 5), labels(5, 6, 3)], 0),
    ("index-batched-array-shared-x", lambda a, y: a[y], [r(5, 2), labels(5, 6, 3)], (None, 0)),
    ("index-batched-apart", lambda a, y: a[y, :, y], [r(6, 3, 4, 3), labels(3, 6, 2)], 0),
    ("take_along_axis", lambda a, y: nnp.take_along_axis(a, y, axis=0), [r(6, 5, 2), labels(5, 6, 3, 2)], 0),
    ("pad-reflect", lambda a: nnp.pad(a, 1, mode="reflect"), [r(3, 4, 5)], 0),
    ("concatenate-shared", lambda a, b: nnp.concatenate([a, b], axis=-1), [r(3, 4, 5), r(4, 2)], (0, None)),
    ("stack-shared", lambda a, b: nnp.stack([a, b], axis=1), [r(3, 4, 5), r(4, 5)], (0, None)),
    # layers: a batch of inputs merges into N; a batch of kernels is a grouped convolution
    ("conv-inputs", lambda x, w: F.conv2d(x, w, padding=1), [r(3, 2, 3, 6, 6), r(4, 3, 3, 3)], (0, None)),
    ("conv-kernels", lambda x, w: F.conv2d(x, w, stride=2), [r(2, 3, 6, 6), r(3, 4, 3, 3, 3)], (None, 0)),
    ("conv-both-groups", lambda x, w: F.conv1d(x, w, groups=2), [r(3, 2, 4, 7), r(3, 6, 2, 3)], 0),
    ("conv-transpose", lambda x, w: F.conv_transpose2d(x, w, stride=2), [r(3, 2, 4, 5, 5), r(3, 4, 3, 3, 3)], 0),
    ("max-pool", lambda x: F.max_pool2d(x, 2), [r(3, 2, 3, 6, 6)], 0),
    ("avg-pool", lambda x: F.avg_pool2d(x, 2), [r(3, 2, 3, 6, 6)], 0),
    ("cross-entropy", lambda x, t: F.cross_entropy(x, t), [r(3, 5, 4), labels(4, 3, 5)], 0),
    ("layer-norm", lambda x: F.layer_norm(x, (4,)), [r(3, 5, 4)], 0),
    ("batch-norm", lambda x: F.batch_norm(x, None, None, training=True), [r(3, 5, 4)], 0),
    ("attention", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
     [r(3, 2, 5, 4), r(3, 2, 5, 4), r(3, 2, 5, 4)], 0),
    ("linalg-inv", lambda x: nnp.linalg.inv(x), [r(3, 4, 4) + 4 * np.eye(4)], 0),
    ("linalg-solve", lambda a, b: nnp.linalg.solve(a, b), [r(3, 4, 4) + 4 * np.eye(4), r(3, 4)], 0),
    ("nested-vmap", lambda x: nk.vmap(lambda row: (row * row).sum())(x), [r(3, 5, 4)], 0),
]


@pytest.mark.parametrize("name, fn, args, in_axes", RULES, ids=[c[0] for c in RULES])
def test_rules(name, fn, args, in_axes):
    _check(fn, args, in_axes)


# ---- composition --------------------------------------------------------------------------------

D, H, C = 5, 7, 4


def _mlp_params():
    g = np.random.default_rng(1)
    return {"W1": g.standard_normal((D, H)) * 0.5, "b1": g.standard_normal(H) * 0.1,
            "W2": g.standard_normal((H, C)) * 0.5, "b2": g.standard_normal(C) * 0.1}


def _example_loss(p, x, y):
    h = nnp.tanh(x @ p["W1"] + p["b1"])
    return -F.log_softmax(h @ p["W2"] + p["b2"], dim=-1)[y]


def test_per_example_gradients_against_a_loop():
    p, xs, ys = _mlp_params(), r(6, D), labels(C, 6)
    got = nk.vmap(nk.grad(_example_loss), in_axes=(None, 0, 0))(p, xs, ys)
    for i in range(6):
        want = nk.grad(_example_loss)(p, xs[i], ys[i])
        for k in p:
            assert got[k].shape == (6,) + p[k].shape
            np.testing.assert_allclose(got[k][i], want[k], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_per_example_gradients_of_cross_entropy_over_a_row(reduction):
    # One example as a batch of one row: the fused softmax_cross_entropy_grad op receives the
    # mean's (or sum's) seed as a scalar per example, which its batching rule (``leading``)
    # spreads over the row axis before merging the vmap batch into it.
    p, xs, ys = _mlp_params(), r(6, D), labels(C, 6)

    def loss(p, x, y):
        h = nnp.tanh(x @ p["W1"] + p["b1"])
        return F.cross_entropy((h @ p["W2"] + p["b2"])[None], y[None], reduction=reduction)

    got = nk.vmap(nk.grad(loss), in_axes=(None, 0, 0))(p, xs, ys)
    for i in range(6):
        want = nk.grad(loss)(p, xs[i], ys[i])
        for k in p:
            np.testing.assert_allclose(got[k][i], want[k], rtol=1e-12, atol=1e-14)
    _check(lambda x, t: F.cross_entropy(x, t, reduction=reduction), [r(3, 2, 4), labels(4, 3, 2)])


_W3, _W13 = r(3), r(1, 3)


@pytest.mark.parametrize("name, loss", [
    ("scalar", lambda x, t: (F.cross_entropy(x, t, reduction="none") * 2.0).sum()),
    ("mean", lambda x, t: F.cross_entropy(x, t)),
    ("trailing", lambda x, t: (F.cross_entropy(x, t, reduction="none") * _W3).sum()),
    ("trailing-2d", lambda x, t: (F.cross_entropy(x, t, reduction="none") * _W13).sum()),
    ("batched", lambda x, t: (F.cross_entropy(x, t, reduction="none") * x[:, 0]).sum()),
], ids=["scalar", "mean", "trailing", "trailing-2d", "batched"])
@pytest.mark.parametrize("n", [2, 3])       # 3: the seed (3,) starts with N's size by chance
def test_gradient_of_cross_entropy_with_a_broadcast_seed(name, loss, n):
    # softmax_cross_entropy_grad's seed g broadcasts to the class indices (N, 3): a scalar
    # merges with them, a seed along the trailing axis is applied one example at a time
    xs, ts = r(4, n, 5, 3), labels(5, 4, n, 3)
    got = nk.vmap(nk.grad(loss))(xs, ts)
    want = np.stack([nk.grad(loss)(xs[i], ts[i]) for i in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_gradient_of_a_vmap_is_the_gradient_of_the_loop():
    p, xs, ys = _mlp_params(), r(6, D), labels(C, 6)
    got = nk.grad(lambda p: nk.vmap(_example_loss, in_axes=(None, 0, 0))(p, xs, ys).mean())(p)
    per = nk.vmap(nk.grad(_example_loss), in_axes=(None, 0, 0))(p, xs, ys)
    for k in p:
        np.testing.assert_allclose(got[k], per[k].mean(0), rtol=1e-12, atol=1e-14)


def test_finite_differences_through_vmap_first_and_second_order():
    xs = r(4, 3)
    check_grads(lambda w, b: nk.vmap(lambda x, w, b: nnp.tanh(x @ w + b).sum(), in_axes=(0, None, None))(xs, w, b),
                r(3, 2), r(2), order=2)
    check_grads(lambda x: nk.vmap(lambda row: F.softmax(row * row, dim=0))(x), r(3, 4), order=2)


def test_jit_of_vmap_of_grad_is_one_program_without_a_loop():
    p, xs, ys = _mlp_params(), r(8, D), labels(C, 8)

    @nk.jit
    def clipped_sum(p, xs, ys):
        grads = nk.vmap(nk.grad(_example_loss), in_axes=(None, 0, 0))(p, xs, ys)
        norms = nnp.sqrt(sum((g.reshape(g.shape[0], -1) ** 2).sum(1) for g in grads.values()))
        scale = 1 / nnp.maximum(1.0, norms)
        return {k: (g * scale.reshape((-1,) + (1,) * (g.ndim - 1))).sum(0) for k, g in grads.items()}

    got = clipped_sum(p, xs, ys)
    rows = [nk.grad(_example_loss)(p, xs[i], ys[i]) for i in range(8)]
    for k in p:
        per = np.stack([row[k] for row in rows])
        norms = np.sqrt(sum((np.stack([row[j] for row in rows]).reshape(8, -1) ** 2).sum(1) for j in p))
        want = (per / np.maximum(1.0, norms).reshape((-1,) + (1,) * (per.ndim - 1))).sum(0)
        np.testing.assert_allclose(got[k], want, rtol=1e-12, atol=1e-14)
    source = clipped_sum.source(p, xs, ys)
    assert "for " not in source and "stack" not in source     # batched ops, not one row at a time


def test_program_is_cached_per_signature_and_for_a_vmap_made_again():
    from neuronika.transform.cache import CACHE

    def dot(a, b):
        return (a * b).sum()

    nk.vmap(dot)(r(3, 2), r(3, 2))
    hits = CACHE.hits
    for _ in range(3):
        nk.vmap(dot)(r(3, 2), r(3, 2))          # a new vmap of the same function finds the program
    assert CACHE.hits == hits + 3
    assert "def " in nk.vmap(dot).source(r(3, 2), r(3, 2))


def test_random_draws_differ_per_example():
    x = np.ones((64, 50))
    out = nk.vmap(lambda row: F.dropout(row, 0.5, training=True))(x)
    assert out.shape == (64, 50)
    assert not all(np.array_equal(out[0], out[i]) for i in range(1, 64))
    assert set(np.unique(out)) <= {0.0, 2.0}
    shared = np.ones(200)            # dropout of a value shared by the batch: still a mask each
    out = nk.vmap(lambda row: F.dropout(nk.from_ndarray(shared), 0.5, training=True) * row)(np.ones((3, 200)))
    assert (out[0] != out[1]).mean() > 0.3
    noise = nk.vmap(lambda row: row + nk.randn(row.shape, dtype=np.float64))(np.zeros((4, 100)))
    assert noise.shape == (4, 100) and (noise[0] != noise[1]).all()
    assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2


# ---- axes ---------------------------------------------------------------------------------------

def test_axes_trees_keywords_and_axis_size():
    p = {"w": r(4, 3), "b": r(3, 4)}
    got = nk.vmap(lambda p: p["w"] + p["b"], in_axes=({"w": 1, "b": 0},))(p)
    np.testing.assert_allclose(got, p["w"].T + p["b"])
    pair = nk.vmap(lambda ab: ab[0] * ab[1], in_axes=((0, None),))((r(3, 2), r(2)))
    assert pair.shape == (3, 2)
    out = nk.vmap(lambda x, scale=None: x * scale)(r(3, 2), scale=r(3, 2))
    assert out.shape == (3, 2)
    flags = nk.vmap(lambda x, scale=1.0, twice=False: x * scale * (2.0 if twice else 1.0))
    np.testing.assert_allclose(flags(np.ones((3, 2)), scale=3.0, twice=True), np.full((3, 2), 6.0))
    moved = nk.vmap(lambda x: (x, x.sum()), out_axes=(1, 0))(r(3, 2))
    assert moved[0].shape == (2, 3) and moved[1].shape == (3,)
    shared = nk.vmap(lambda x, c: (x * 2, c + 1), in_axes=(0, None), out_axes=(0, None))(r(3, 2), r(2))
    assert shared[1].shape == (2,)
    nothing = nk.vmap(lambda x: (x * 2, None))(r(3, 2))
    assert nothing[1] is None and nothing[0].shape == (3, 2)
    outer = nk.vmap(nk.vmap(lambda a, b: (a * b).sum(), (None, 0)), (0, None))(r(3, 4), r(5, 4))
    assert outer.shape == (3, 5)
    assert nk.vmap(lambda a: a.sum(), in_axes=-1)(r(3, 4)).shape == (4,)
    sized = nk.vmap(lambda c: c * 2, in_axes=None, axis_size=4)(r(2))
    assert sized.shape == (4, 2)


def test_refusals_name_the_problem():
    with pytest.raises(nk.BatchingError, match="different sizes"):
        nk.vmap(lambda a, b: a + b)(r(3, 2), r(4, 2))
    with pytest.raises(nk.BatchingError, match="in_axes None"):
        nk.vmap(lambda a, s: a * s)(r(3, 2), 2.0)
    with pytest.raises(nk.BatchingError, match="2 entries"):
        nk.vmap(lambda a: a, in_axes=(0, 0))(r(3, 2))
    with pytest.raises(nk.BatchingError, match="out of range"):
        nk.vmap(lambda a: a, in_axes=2)(r(3, 2))
    with pytest.raises(nk.BatchingError, match="no argument is batched"):
        nk.vmap(lambda a: a, in_axes=None)(r(3, 2))
    with pytest.raises(nk.BatchingError, match="out_axes is None"):
        nk.vmap(lambda a: a * 2, out_axes=None)(r(3, 2))
    with pytest.raises(TypeError, match="in_axes"):
        nk.vmap(lambda a: a, in_axes="0")

    def branches(x):
        return x * 2 if x.sum() > 0 else x

    with pytest.raises(nk.BatchingError, match=r"reads the value of a batched variable.*test_vmap.py"):
        nk.vmap(branches)(r(3, 2))

    def unchanged(x):
        return x * 2 if float(np.sum(c)) > 0 else x      # a value that is not batched: fine

    c = r(2)
    assert nk.vmap(unchanged)(r(3, 2)).shape == (3, 2)


def _recurrence(h0, xs, w):
    final, ys = nk.scan(lambda h, x: (nnp.tanh(h @ w + x), (h * h).sum()), h0, xs)
    return final.sum() + ys.sum()


@pytest.mark.parametrize("in_axes", [(None, 0, None), (0, 0, None), (None, None, 0), (0, 1, 0)],
                         ids=["xs", "init-and-xs", "weights", "all-xs-axis-1"])
def test_scan_over_a_batch_and_its_gradient(in_axes):
    h0, xs, w = r(3), r(6, 3), r(3, 3) * 0.5
    batch = [np.stack([h0 * (1 + 0.1 * i) for i in range(4)]), np.stack([xs * (1 - 0.1 * i) for i in range(4)]),
             np.stack([w * (1 + 0.2 * i) for i in range(4)])]
    args = [batch[k] if ax is not None else a for k, (a, ax) in enumerate(zip((h0, xs, w), in_axes))]
    if in_axes[1] == 1:
        args[1] = np.moveaxis(args[1], 0, 1)
    _check(_recurrence, args, in_axes)
    _check(nk.grad(_recurrence, argnums=(0, 1, 2)), args, in_axes)


def test_scan_reversed_over_a_length_and_checkpoint():
    def counted(c, w):
        return nk.scan(lambda h, _: (h * w + 1.0, h), c, None, length=5, reverse=True)[1]

    _check(counted, [r(4, 2), r(2)], (0, None))
    _check(counted, [r(2), r(4, 2)], (None, 0))
    block = nk.checkpoint(lambda h, w: nnp.tanh(h @ w))

    def twice(x, w):
        return block(block(x, w), w).sum()

    _check(twice, [r(4, 3), r(3, 3)], (0, None))
    _check(nk.grad(twice, argnums=1), [r(4, 3), r(3, 3)], (0, None))
    xs, w = r(4, 3), r(3, 3)
    check_grads(lambda w: nk.vmap(twice, in_axes=(0, None))(xs, w), w, order=2)
    sequences = r(4, 6, 3)
    check_grads(lambda w: nk.vmap(_recurrence, in_axes=(None, 0, None))(np.zeros(3), sequences, w),
                r(3, 3) * 0.5, order=2)


def test_chunks_give_the_same_values_with_less_memory():
    import tracemalloc
    w, v = r(64, 512), r(512, 4)
    xs = r(256, 64)

    def f(x):
        return nnp.tanh(nnp.tanh(x @ w) @ v).sum()

    whole, chunked = nk.vmap(f), nk.vmap(f, chunk_size=32)
    np.testing.assert_allclose(chunked(xs), whole(xs), rtol=1e-12)
    peaks = []
    for fn in (whole, chunked):
        fn(xs)
        tracemalloc.start()
        fn(xs)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    assert peaks[1] < peaks[0] / 3              # the (256, 512) hidden layer, 32 rows at a time
    _check(nk.grad(f), [xs[:10]])
    per = nk.vmap(nk.grad(_example_loss), in_axes=(None, 0, 0), chunk_size=4)
    p, x, y = _mlp_params(), r(10, D), labels(C, 10)
    want = nk.vmap(nk.grad(_example_loss), in_axes=(None, 0, 0))(p, x, y)
    for k, g in per(p, x, y).items():
        np.testing.assert_allclose(g, want[k], rtol=1e-12, atol=1e-15)


def test_pytorch_names_for_the_axes():
    out = nk.vmap(lambda a, b: a @ b, in_dims=(0, None), out_dims=1)(r(4, 3), r(3, 5))
    assert out.shape == (5, 4)
    with pytest.raises(TypeError, match="not both"):
        nk.vmap(lambda a: a, in_axes=1, in_dims=0)
    with pytest.raises(ValueError, match="chunk_size"):
        nk.vmap(lambda a: a, chunk_size=0)
