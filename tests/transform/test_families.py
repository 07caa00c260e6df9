"""Shape families (issue 12, item 4): graphs that differ only in sizes their code does not
read share one program; every result is the one a fresh exact compile gives, bit for bit."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import neuronika as nk
from neuronika import nn, transform
from neuronika.data import DataLoader, Dataset
from neuronika.nn.conv import conv
from neuronika.nn.pooling import max_pool
from neuronika.transform import codegen, families, interpret
from neuronika.transform.cache import CACHE

RNG = np.random.default_rng(12)
W1 = RNG.standard_normal((12, 8)).astype(np.float32)
B1 = RNG.standard_normal(8).astype(np.float32)
W2 = RNG.standard_normal((8, 5)).astype(np.float32)
B2 = RNG.standard_normal(5).astype(np.float32)
DATA = RNG.standard_normal((64, 12)).astype(np.float32)
LABELS = RNG.integers(0, 5, 64)
IMAGES = RNG.standard_normal((9, 1, 6, 6))


@pytest.fixture
def builds(monkeypatch):
    """Programs compiled (``codegen.build`` calls; a family's comparison, ``dry``, is not one)."""
    calls = []
    real = codegen.build

    def counting(*args, **kwargs):
        if not kwargs.get("dry"):
            calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(codegen, "build", counting)
    transform.cache_clear()
    yield calls
    transform.cache_clear()


def mlp_loss(w1, b1, w2, b2, x, t):
    h = (x @ w1 + b1).relu()
    return nn.functional.nll_loss((h @ w2 + b2).log_softmax(axis=1), t)


def imperative_mlp(n):
    params = [nk.from_ndarray(a.copy()).requires_grad() for a in (W1, B1, W2, B2)]
    loss = mlp_loss(*params, nk.from_ndarray(DATA[:n]), LABELS[:n])
    loss.backward()
    return [loss.data] + [p.grad for p in params]


def fresh(fn, *args):
    """``fn(*args)`` with every cache and family emptied: an exact program of its own."""
    transform.cache_clear()
    with nk.config(compile="always"):
        return fn(*args)


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


def test_mlp_batches_share_a_program_imperative(builds):
    got = {}
    with nk.config(compile="always"):
        got[64] = imperative_mlp(64)
        made = len(builds)
        for n in (37, 2, 50):
            got[n] = imperative_mlp(n)
        assert len(builds) == made, "a new batch size compiled a program"
        got[1] = imperative_mlp(1)                # an axis of 1 broadcasts: a family of its own
        assert len(builds) > made
    for n, result in got.items():
        assert_same(result, fresh(imperative_mlp, n))


def test_a_last_short_batch_is_neither_compiled_nor_interpreted(builds, monkeypatch):
    interpreted = []
    real = interpret.build
    monkeypatch.setattr(interpret, "build", lambda *a, **k: interpreted.append(1) or real(*a, **k))
    imperative_mlp(64)
    imperative_mlp(64)                            # compiled on its second run (compile="auto")
    made, ran = len(builds), len(interpreted)
    short = imperative_mlp(37)
    assert (len(builds), len(interpreted)) == (made, ran)
    assert_same(short, fresh(imperative_mlp, 37))


def test_mlp_batches_share_a_program_functional(builds):
    f = nk.value_and_grad(mlp_loss, argnums=(0, 1, 2, 3))

    def call(n):
        value, grads = f(W1, B1, W2, B2, DATA[:n], LABELS[:n])
        return [value, *grads]

    got = {}
    with nk.config(compile="always"):
        got[64] = call(64)
        made = len(builds)
        for n in (37, 2):
            got[n] = call(n)                      # traced again (Python may read shapes) ...
        assert len(builds) == made                # ... but the program is the family's
        got[1] = call(1)
        assert len(builds) > made
    assert len(f.cache) == 4
    for n, result in got.items():
        assert_same(result, fresh(call, n))


def _imperative(graph, data, params):
    """(value, gradients) of ``graph(data, *params)`` built imperatively."""
    ps = [nk.from_ndarray(p.copy()).requires_grad() for p in params]
    out = graph(nk.from_ndarray(data), *ps)
    out.backward()
    return [out.data] + [p.grad for p in ps]


def normal(n, shape):
    """The same data for the same ``n`` (a fresh exact compile must see it again)."""
    return np.random.default_rng(n).standard_normal(shape)


def _sizes_share(builds, graph, make, sizes, shared=True):
    """Run ``graph`` over data of each size; with ``shared`` no size after the first compiles.
    Every result equals a fresh exact compile's."""
    got = {}
    with nk.config(compile="always"):
        for k, n in enumerate(sizes):
            got[n] = _imperative(graph, *make(n))
            if k == 0:
                made = len(builds)
        if shared:
            assert len(builds) == made, f"sizes {sizes} compiled {len(builds) - made} more programs"
    for n, result in got.items():
        assert_same(result, fresh(_imperative, graph, *make(n)))
    return got


def test_reshape_with_minus_one_is_generic(builds):
    w = RNG.standard_normal(4)
    got = _sizes_share(builds, lambda x, w: (x.reshape(-1, 4) * w).tanh().sum(),
                       lambda n: (normal(n, (n, 8)), [w]), (3, 5, 11))
    for n, (value, gw) in got.items():
        assert gw.shape == (4,)


def test_reshape_with_a_computed_size_is_keyed_exactly(builds):
    w = RNG.standard_normal(4)
    data = {n: RNG.standard_normal((n, 8)) for n in (3, 5)}
    with nk.config(compile="always"):
        before = len(builds)
        for n, x in data.items():
            value, gw = _imperative(lambda x, w: (x.reshape(x.shape[0] * 2, 4) * w).sum(), x, [w])
            np.testing.assert_allclose(gw, x.reshape(-1, 4).sum(axis=0))
            np.testing.assert_allclose(value, (x.reshape(-1, 4) * w).sum())
        assert len(builds) - before == 2          # the size is in the attribute: one program each


def test_reshape_of_an_intermediate_back_to_its_shape(builds):
    w = RNG.standard_normal((6, 6))
    _sizes_share(builds, lambda x, w: ((x @ w).reshape(-1, 3, 2).sin() * 2.0).sum(),
                 lambda n: (normal(n, (n, 6)), [w]), (5, 7, 11))


@pytest.mark.parametrize("name", ["mean", "mean0", "mean_keep", "sum_unbroadcast", "row_param",
                                  "gather", "slice_param", "index_columns", "softmax"])
def test_reductions_broadcasts_and_indexing_across_sizes(builds, name):
    w6 = RNG.standard_normal(6)
    table = RNG.standard_normal((10, 6))
    row = RNG.standard_normal((1, 6))
    idx = np.array([4, 0, 5])
    cases = {
        "mean": (lambda x, w: (x * w).mean(), [w6]),
        "mean0": (lambda x, w: ((x * w).mean(axis=0) ** 2).sum(), [w6]),
        "mean_keep": (lambda x, w: ((x * w).tanh().mean(axis=(0, 1), keepdims=True) * 3.0).sum(), [w6]),
        "sum_unbroadcast": (lambda x, b: (x + b).tanh().sum(axis=1).mean(), [row]),
        "row_param": (lambda x, w: (x * w).sum(axis=0).sin().sum(), [w6]),
        "gather": (lambda x, t: (t[np.arange(x.shape[0]) % 10] * x).sum(), [table]),
        "slice_param": (lambda x, w: ((x * w)[1:] ** 2).sum() + (x * w)[:, 2].sum(), [w6]),
        "index_columns": (lambda x, w: (x * w)[:, idx].exp().mean(), [w6]),
        "softmax": (lambda x, w: ((x * w).softmax(axis=1) * x).sum(), [w6]),
    }
    graph, params = cases[name]
    got = _sizes_share(builds, graph, lambda n: (normal(n, (n, 6)), params), (4, 9, 5),
                       shared=name != "gather")   # gather's index names the batch: exact
    for n, (value, *grads) in got.items():          # and NumPy's numbers
        x = normal(n, (n, 6))
        if name == "mean":
            np.testing.assert_allclose(value, (x * w6).mean())
            np.testing.assert_allclose(grads[0], x.sum(axis=0) / x.size)
        elif name == "sum_unbroadcast":
            t = np.tanh(x + row)
            np.testing.assert_allclose(value, t.sum(axis=1).mean())
            np.testing.assert_allclose(grads[0], ((1 - t * t) / n).sum(axis=0, keepdims=True))
        elif name == "gather":
            expected = np.zeros_like(table)
            np.add.at(expected, np.arange(n) % 10, x)
            np.testing.assert_allclose(grads[0], expected)


def test_threads_sharing_a_family_get_their_own_numbers(builds):
    import threading

    w = normal(0, (6, 3))
    errors = []

    def work(k):
        try:
            for i in range(30):
                n = 2 + (k * 7 + i) % 13
                x = normal(n, (n, 6))
                value, gw = _imperative(lambda x, w: (x @ w).tanh().mean(), x, [w])
                t = np.tanh(x @ w)
                np.testing.assert_allclose(gw, x.T @ ((1 - t * t) / t.size), rtol=1e-12)
        except Exception as error:          # noqa: BLE001 - reported below
            errors.append(error)

    with nk.config(compile="always"):
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors[0]
    assert len(builds) <= 12                        # one per pattern at most, not one per size


def test_cache_clear_forgets_the_families(builds):
    with nk.config(compile="always"):
        imperative_mlp(64)
    assert families.count() >= 1
    transform.cache_clear()
    assert families.count() == 0


def test_conv_pooling_and_batch_norm_statistics_across_sizes(builds):
    cw = RNG.standard_normal((2, 1, 3, 3))
    cb = RNG.standard_normal((2, 1, 1))
    nw, nb = RNG.standard_normal(8), RNG.standard_normal(8)

    def graph(x, cw, cb, nw, nb):
        h = max_pool(conv(x, cw) + cb, 2).reshape(-1, 8)
        mean = h.mean(axis=0)
        var = ((h - mean) ** 2).mean(axis=0)
        return (((h - mean) / (var + 1e-5) ** 0.5 * nw + nb).tanh() ** 2).mean()

    _sizes_share(builds, graph, lambda n: (IMAGES[:n], [cw, cb, nw, nb]), (5, 9, 7))


def test_batch_norm_module_in_training(builds):
    norm = nn.BatchNorm1d(6)
    norm.train()

    def graph(x, w):
        return (norm(x * w) ** 2).mean()

    _sizes_share(builds, graph, lambda n: (normal(n, (n, 6)).astype(np.float32),
                                           [np.ones(6, np.float32)]), (4, 9, 5))


def test_a_size_that_becomes_one_never_reuses_a_program_that_does_not_broadcast(builds):
    with nk.config(compile="always"):
        for rows in (4, 1, 4, 1):
            x = RNG.standard_normal((4, 3))
            y = RNG.standard_normal((rows, 3))
            value, gx = _imperative(lambda y, x: (x * y).sum(), y, [x])
            np.testing.assert_allclose(gx, np.broadcast_to(y, (4, 3)).astype(np.float64))
            np.testing.assert_allclose(value, (x * y).sum())
    assert len(builds) == 2


def test_interpreter_mode_compiles_nothing(builds):
    with nk.config(compile="never"):
        got = {n: imperative_mlp(n) for n in (64, 37, 1)}
    assert not builds
    for n, result in got.items():
        assert_same(result, fresh(imperative_mlp, n))


def test_aliases_count_against_the_cache_limits(builds):
    transform.set_cache_size(entries=6)
    try:
        w = nk.from_ndarray(np.ones(3)).requires_grad()
        with nk.config(compile="always"):
            for n in range(4, 40):
                (nk.from_ndarray(np.ones((n, 3))) * w).sum().backward()
                limits = transform.cache_limits()
                assert limits.used_entries <= 6
        assert len(builds) == 1                   # one program, the other sizes alias it
        assert len(CACHE.programs) <= 6 and len(CACHE.keys_of) == 1
        assert limits.used_bytes == CACHE.held_bytes == sum(CACHE.sizes.values())
        np.testing.assert_array_equal(w.grad, np.full(3, float(sum(range(4, 40)))))
        # many programs: whole programs go, with their aliases and their family entries
        with nk.config(compile="always"):
            for rank in range(1, 9):
                for n in (2, 3):
                    (nk.from_ndarray(np.ones((n,) * rank)).sum() * w).sum().backward()
        assert transform.cache_limits().used_entries <= 6
        assert sum(len(keys) for keys in CACHE.keys_of.values()) == len(CACHE.programs)
        gc.collect()
        assert families.count() <= len(CACHE.keys_of) + 1
    finally:
        transform.set_cache_size(512, 512 * 2 ** 20)


def test_a_program_keeps_at_most_so_many_aliases(builds):
    w = nk.from_ndarray(np.ones(2)).requires_grad()
    with nk.config(compile="always"):
        for n in range(3, CACHE.ALIASES + 12):
            (nk.from_ndarray(np.ones((n, 2))) * w).sum().backward()
    assert len(builds) == 1
    assert all(len(keys) <= CACHE.ALIASES + 1 for keys in CACHE.keys_of.values())
    assert sum(len(keys) for keys in CACHE.keys_of.values()) == len(CACHE.programs)


def _mlp():
    return nn.Sequential(nn.Linear(12, 16), nn.ReLU(), nn.Dropout(0.2), nn.BatchNorm1d(16), nn.Linear(16, 5))


def _cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(36, 5))


def _train(drop_last, epochs=3, make=_mlp):
    nk.manual_seed(3)
    rng = np.random.default_rng(5)
    records = rng.standard_normal((100, 12)).astype(np.float32)
    labels = rng.integers(0, 5, 100)
    model = make()
    if make is _cnn:
        records = rng.standard_normal((100, 1, 6, 6)).astype(np.float32)
    optimizer = nk.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(Dataset(records, labels), batch_size=32, shuffle=True, seed=0, drop_last=drop_last)
    losses = []
    for _ in range(epochs):
        for x, t in loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x), t)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.data))
    return losses


@pytest.mark.parametrize("make", [_mlp, _cnn], ids=["mlp", "cnn"])
def test_training_with_a_short_last_batch_makes_no_program_for_it(builds, make):
    _train(drop_last=True, make=make)
    whole = len(builds)
    transform.cache_clear()
    builds.clear()
    losses = _train(drop_last=False, make=make)
    assert len(builds) == whole, "the last, short batch compiled programs of its own"
    assert len(losses) == 12 and all(np.isfinite(losses))
    transform.cache_clear()
    with nk.config(compile="never"):                # the same numbers, bit for bit
        assert _train(drop_last=False, make=make) == losses


def test_family_key_keeps_ranks_dtypes_and_ones_and_the_pattern_equal_sizes():
    from neuronika.graph import linearize

    def key(a):
        root = (nk.from_ndarray(a) * 2.0).sum()._node
        order, leaves, signature = linearize(root)
        return families.Member(order, leaves, signature, {"anomaly": False}).key()

    assert key(np.ones((4, 3)))[:2] == key(np.ones((9, 5)))[:2]
    assert key(np.ones((4, 3)))[2] == [4, 3] and key(np.ones((9, 5)))[2] == [9, 5]
    assert key(np.ones((4, 3)))[0] == key(np.ones((4, 4)))[0]
    assert key(np.ones((4, 3)))[1] != key(np.ones((4, 4)))[1]             # equal sizes: a pattern
    assert key(np.ones((4, 3)))[0] != key(np.ones((1, 3)))[0]             # 1 broadcasts
    assert key(np.ones((4, 3)))[0] != key(np.ones((0, 3)))[0]
    assert key(np.ones((4, 3)))[0] != key(np.ones((4, 3, 2)))[0]          # rank
    assert key(np.ones((4, 3)))[0] != key(np.ones((4, 3), np.float32))[0]  # dtype


def test_a_batch_equal_to_a_feature_count_is_compared_once(builds):
    """x (n, 8): n = 8 is another pattern (the batch equals the features). A member of a new
    pattern is compared once; the sizes that moved are free for it from then on."""
    w = normal(0, (8, 3))

    def graph(x, w):
        return (x @ w).tanh().sum()

    got = {}
    with nk.config(compile="always"):
        for n in (8, 5, 11, 8, 20):
            got[n] = _imperative(graph, normal(n, (n, 8)), [w])
        assert len(builds) == 1 and families.STATS["compared"] == 1
    for n, result in got.items():
        assert_same(result, fresh(_imperative, graph, normal(n, (n, 8)), [w]))


# ---- members larger than their program --------------------------------------------------------
# The size-reading passes (in-place results, kept buffers) decide by a program's sizes. A short
# batch after a long one takes the long one's program (above); a long batch after a short one
# must not take a program written for sizes below those passes' limits.

WIDE = [RNG.standard_normal((32, 256)).astype(np.float32) * 0.2,
        RNG.standard_normal(256).astype(np.float32) * 0.1,
        RNG.standard_normal((256, 10)).astype(np.float32) * 0.1]


def wide(x, w1, b1, w2):
    h = (x @ w1 + b1).tanh()                      # (n, 256) float32: 128 kB at n = 128, kept
    return ((h @ w2) ** 2).sum()


def _wide_batch(n):
    return normal(n, (n, 32)).astype(np.float32)


@pytest.mark.parametrize("path", ["imperative", "value_and_grad"])
def test_a_batch_past_a_size_limit_after_a_small_one_gets_a_program_of_its_size(builds, path):
    f = nk.value_and_grad(wide, argnums=(1, 2, 3))

    def call(n):
        if path == "imperative":
            return _imperative(wide, _wide_batch(n), WIDE)
        value, grads = f(_wide_batch(n), *WIDE)
        return [value, *grads]

    def source(n):
        if path == "imperative":
            ps = [nk.from_ndarray(p.copy()).requires_grad() for p in WIDE]
            return wide(nk.from_ndarray(_wide_batch(n)), *ps).source()
        return f.source(_wide_batch(n), *WIDE)

    got = {}
    with nk.config(compile="always"):
        got[3] = call(3)
        got[5] = call(5)                          # the batch's size is free from here on
        assert len(builds) == 1
        got[128] = call(128)
        assert len(builds) == 2, "the large batch ran the small batch's program"
        assert "_B[" in source(128) and "_B[" not in source(3)
        assert not families._FAILED, "a member that outgrew its program counted as a failed comparison"
        for n in (3, 5, 256, 640, 128, 100):      # every later size shares one of the two
            got[n] = call(n)
        assert len(builds) == 2
        assert "_B[" in source(640)
    for n, result in got.items():
        assert_same(result, fresh(call, n))


def test_a_larger_batch_below_every_size_limit_shares_without_a_comparison_of_its_own(builds):
    with nk.config(compile="always"):
        imperative_mlp(2)
        imperative_mlp(3)                          # compared once: the batch's size is free
        compared = families.STATS["compared"]
        for n in (9, 30, 64):
            imperative_mlp(n)
        assert len(builds) == 1 and families.STATS["compared"] == compared


def test_size_classes_count_the_limits_reached():
    limits = codegen.size_limits()
    assert limits == sorted(limits) and 2048 in limits and 16384 in limits

    class Node:
        def __init__(self, *shape):
            self.shape = shape
    order = [Node(), Node(limits[0] - 1), Node(limits[0]), Node(limits[0], 1), Node(10 ** 5, 10 ** 4)]
    assert codegen.size_classes(order) == (0, 0, 1, 1, len(limits))
