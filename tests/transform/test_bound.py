"""The imperative path's look-up of a rebuilt graph: by its root's ``sig`` (hashed as nodes are
made) and a node-by-node match against the graph its program was made for (``graph.match``),
never trusting the hash alone."""
import numpy as np
import pytest

import neuronika
from neuronika import graph, transform
from neuronika.transform import run
from neuronika.transform.cache import CACHE


@pytest.fixture(autouse=True)
def fresh_cache():
    compiling = neuronika.config(compile="always")
    transform.cache_clear()
    yield
    transform.set_cache_size(512, 512 * 2 ** 20)
    compiling.__exit__(None, None, None)


def f64(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def leaf(array, grad=True):
    v = neuronika.from_ndarray(array)
    return v.requires_grad() if grad else v


def matched(root):
    """Whether ``root``'s graph is found by ``sig`` and ``match`` (no linearisation)."""
    node = root._node
    return any(graph.match(node, layout) is not None for layout in CACHE.layouts_for(node.sig))


def test_a_rebuilt_graph_is_matched_and_hits_without_linearising(monkeypatch):
    x, w, b = leaf(f64(4, 8), False), leaf(f64(8, 8)), leaf(f64(8))
    (x.mm(w) + b).tanh().sum().backward()
    assert not matched((x.mm(w) + b).tanh().sum())      # a graph run once keeps no layout
    for _ in range(3):
        (x.mm(w) + b).tanh().sum().backward()
    loss = (x.mm(w) + b).tanh().sum()
    assert matched(loss)
    calls = []
    monkeypatch.setattr(run, "linearize", lambda *a, **k: calls.append(a) or graph.linearize(*a, **k))
    w.zero_grad()
    b.zero_grad()
    hits = transform.cache_info().hits
    loss.backward()
    assert calls == [] and transform.cache_info().hits == hits + 1
    t = np.tanh(x.data @ w.data + b.data)
    np.testing.assert_allclose(w.grad, x.data.T @ (1 - t * t), rtol=1e-12)
    np.testing.assert_allclose(b.grad, (1 - t * t).sum(axis=0), rtol=1e-12)


def test_the_same_hash_with_a_leaf_used_twice_is_another_graph():
    # x * y and x * x: equal sig (the leaves' keys are equal), different graphs
    x, y = leaf(f64(3, seed=1)), leaf(f64(3, seed=2))
    for _ in range(3):
        (x * y).sum().backward()
    square = (x * x).sum()
    assert square._node.sig == (x * y).sum()._node.sig
    assert not matched(square)
    x.zero_grad()
    square.backward()
    np.testing.assert_allclose(x.grad, 2 * x.data, rtol=1e-12)


def test_a_shared_node_and_two_equal_nodes_are_different_graphs():
    x, w = leaf(f64(2, 3), False), leaf(f64(3, 3))

    def shared():
        t = x.mm(w)
        return (t * t).sum()

    def apart():
        return (x.mm(w) * x.mm(w)).sum()

    for build in (shared, apart, shared, apart, shared, apart):
        w.zero_grad()
        loss = build()
        loss.backward()
        t = x.data @ w.data
        np.testing.assert_allclose(w.grad, x.data.T @ (2 * t), rtol=1e-12)
        np.testing.assert_allclose(loss.data, (t * t).sum(), rtol=1e-12)
    assert shared()._node.sig == apart()._node.sig
    assert matched(shared()) and matched(apart())
    assert transform.cache_info().currsize == 2


def test_a_collision_of_sig_is_caught_by_the_match():
    a, b = leaf(f64(3)), leaf(f64(3, seed=4))
    for _ in range(3):
        (a * b).sum().backward()
    other = (a + b).sum()
    other._node.sig = (a * b).sum()._node.sig       # as if the hashes collided
    assert not matched(other)
    a.zero_grad()
    b.zero_grad()
    other.backward()
    np.testing.assert_array_equal(a.grad, np.ones(3))
    np.testing.assert_array_equal(b.grad, np.ones(3))


@pytest.mark.parametrize("change", ["shape", "dtype", "requires_grad", "attrs", "anomaly", "variadic"])
def test_what_changes_the_signature_is_not_matched(change):
    w = leaf(f64(4, 3))

    def build(kind):
        if kind == "shape":
            return (w[:2] * 2.0).sum()
        if kind == "attrs":
            return w.sum(axis=1).sum()
        if kind == "variadic":
            return neuronika.numpy.concatenate([w, w, w]).sum()
        return (w * 2.0).sum()

    base = {"attrs": lambda: w.sum(axis=0).sum(),
            "variadic": lambda: neuronika.numpy.concatenate([w, w]).sum()}.get(change, lambda: (w * 2.0).sum())
    for _ in range(3):
        base().backward()
    if change == "dtype":
        w32 = leaf(f64(4, 3).astype(np.float32))
        other = (w32 * 2.0).sum()
        other_w = w32
    elif change == "requires_grad":
        c = leaf(f64(4, 3), False)
        other = (c * 2.0).sum() + (w * 0.0).sum()
        other_w = w
    elif change == "anomaly":
        with neuronika.detect_anomaly():
            other = (w * 2.0).sum()
            w.zero_grad()
            other.backward()
        np.testing.assert_array_equal(w.grad, np.full((4, 3), 2.0))
        return
    else:
        other, other_w = build(change), w
    assert not matched(other)
    other_w.zero_grad()
    other.backward()
    want = {"shape": np.r_[np.full((2, 3), 2.0), np.zeros((2, 3))], "attrs": np.ones((4, 3)),
            "variadic": np.full((4, 3), 3.0), "dtype": np.full((4, 3), 2.0),
            "requires_grad": np.zeros((4, 3))}[change]
    np.testing.assert_array_equal(other_w.grad, want)


def test_in_place_leaf_changes_are_read_by_a_matched_graph():
    x, w = leaf(f64(2, 3), False), leaf(f64(3))
    for k in range(4):
        with neuronika.no_grad():
            x.data[...] = k + 1.0
        w.zero_grad()
        loss = (x * w).sum()
        loss.backward()
        np.testing.assert_array_equal(w.grad, np.full(3, 2 * (k + 1.0)))
        np.testing.assert_allclose(loss.data, (k + 1.0) * 2 * w.data.sum(), rtol=1e-12)


def test_a_constant_read_by_a_matched_graph_follows_its_leaves():
    # a no-grad value made once, outside the loop, and big enough to become a constant
    data = leaf(f64(200, 100), False)
    c = data.exp()
    w = leaf(f64(200, 100, seed=5))
    for k in range(4):
        if k == 2:
            with neuronika.no_grad():
                data.data[...] = 0.0        # the constant must be computed again
        w.zero_grad()
        (c * w).sum().backward()
        np.testing.assert_allclose(w.grad, np.exp(data.data), rtol=1e-12)
    assert matched((c * w).sum())


def test_retained_gradients_of_a_matched_graph():
    x, w = leaf(f64(2, 3), False), leaf(f64(3, 3))
    for _ in range(3):
        w.zero_grad()
        h = x.mm(w)
        h.retain_grad()
        loss = (h * h).sum()
        loss.backward()
        np.testing.assert_allclose(h.grad, 2 * (x.data @ w.data), rtol=1e-12)
    # retain_grad() after the consumer was built: the hash is stale, the answer is not
    h = x.mm(w)
    loss = (h * h).sum()
    h.retain_grad()
    loss.backward()
    np.testing.assert_allclose(h.grad, 2 * (x.data @ w.data), rtol=1e-12)


def test_a_var_evaluated_through_a_matched_graph():
    x = leaf(f64(3, 4), False)
    for k in range(3):
        y = (x * (k + 1.0)).tanh().sum()
        np.testing.assert_allclose(y.data, np.tanh(x.data * (k + 1.0)).sum(), rtol=1e-12)
    with neuronika.no_grad():
        w = leaf(f64(4))
        for _ in range(3):
            z = (x * w).sum()
            np.testing.assert_allclose(z.data, (x.data * w.data).sum(), rtol=1e-12)


def test_a_rolled_loop_with_changed_numbers_is_not_served_by_the_old_ones():
    xs = leaf(f64(12, 2, 3), False)
    w = leaf(f64(3, 3, seed=6) * 0.3)

    def loss(scale):
        h = (xs[0].mm(w)).tanh()
        for t in range(1, xs.shape[0]):
            h = (xs[t].mm(w) + h * scale).tanh()
        return (h * h).sum()

    def want(scale):
        return neuronika.grad(lambda wv: _plain(xs.data, wv, scale))(w.data)

    for scale in (0.5, 0.5, 0.5, 0.25, 0.25):
        w.zero_grad()
        loss(scale).backward()
        np.testing.assert_allclose(w.grad, want(scale), rtol=1e-10)


def _plain(xs, wv, scale):
    h = (xs[0] @ wv).tanh()
    for t in range(1, xs.shape[0]):
        h = (xs[t] @ wv + h * scale).tanh()
    return (h * h).sum()


def test_layouts_go_with_their_programs():
    x = leaf(f64(3))
    for _ in range(3):
        (x * 3.0).sum().backward()
    assert CACHE.layouts and CACHE.layouts_of
    transform.cache_clear()
    assert not CACHE.layouts and not CACHE.layouts_of
    for _ in range(3):
        (x * 3.0).sum().backward()
    transform.set_cache_size(entries=1)
    for n in range(2, 6):                       # other shapes evict it
        y = leaf(f64(n))
        for _ in range(3):
            (y * 3.0).sum().backward()
    layouts = [layout for found in CACHE.layouts.values() for layout in found]
    assert all(CACHE.programs.get(layout.key) is layout.program for layout in layouts)
    assert len(layouts) <= 1


def test_compile_never_does_not_use_layouts(monkeypatch):
    x = leaf(f64(3))
    for _ in range(3):
        (x * 3.0).sum().backward()
    monkeypatch.setattr(graph, "match", lambda *a: pytest.fail("match under compile='never'"))
    with neuronika.config(compile="never"):
        x.zero_grad()
        (x * 3.0).sum().backward()
    np.testing.assert_array_equal(x.grad, np.full(3, 3.0))


def test_post_accumulate_hooks_run_on_a_matched_graph():
    w = leaf(f64(3))
    seen = []
    handle = w.register_post_accumulate_grad_hook(lambda p: seen.append(p.grad.copy()))
    try:
        for k in range(3):
            w.zero_grad()
            (w * (k + 1.0)).sum().backward()
    finally:
        handle.remove()
    assert len(seen) == 3
    np.testing.assert_array_equal(seen[-1], np.full(3, 3.0))


def test_dropout_switched_to_eval_after_building_is_not_served_by_the_training_program():
    x, w = leaf(np.ones((50, 40)), False), leaf(np.ones(40))
    for _ in range(3):                          # training: masks drawn, some zeros
        w.zero_grad()
        (x.dropout(0.5) * w).sum().backward()
        assert (w.grad != 50.0).any()
    for _ in range(3):                          # the same graph built, then switched (stale sig)
        y = (x.dropout(0.5) * w).sum()
        y.eval()
        w.zero_grad()
        y.backward()
        np.testing.assert_array_equal(w.grad, np.full(40, 50.0))


def test_an_int_index_builds_the_graph_the_parser_builds():
    from neuronika.numpy import _indexing
    xs = leaf(f64(5, 2, 3))
    for i in (0, 3, -1, -5):
        fast = xs[i]._node
        layout, data = _indexing._parse(xs, (i,))
        assert fast.attrs == (layout,) and len(fast.inputs) == 2 and fast.shape == (2, 3)
        assert fast.inputs[1].key == data[0].key and fast.inputs[1].value == data[0].value
        np.testing.assert_array_equal(xs[i].data, xs.data[i])
    for bad in (5, -6):
        with pytest.raises(IndexError, match="index"):
            xs[bad]
    with pytest.raises(IndexError):
        leaf(np.float64(2.0))[0]
    # ints in a loop share one program, and their gradients land where they should
    for _ in range(3):
        xs.zero_grad()
        (xs[1] * 2.0 + xs[-1]).sum().backward()
        want = np.zeros((5, 2, 3))
        want[1], want[-1] = 2.0, 1.0
        np.testing.assert_array_equal(xs.grad, want)


def test_batch_sizes_of_one_shape_family_each_keep_their_layout():
    w = leaf(f64(3, 2))
    sizes = (2, 3, 5, 7, 11)
    data = {n: leaf(f64(n, 3, seed=n), False) for n in sizes}
    for _ in range(3):
        for n in sizes:
            w.zero_grad()
            (data[n].mm(w).tanh() * 2.0).sum().backward()
            t = np.tanh(data[n].data @ w.data)
            np.testing.assert_allclose(w.grad, data[n].data.T @ (2 * (1 - t * t)), rtol=1e-12)
    assert all(matched((data[n].mm(w).tanh() * 2.0).sum()) for n in sizes)
    assert transform.cache_info().currsize <= len(sizes)


def test_kept_layouts_count_in_the_byte_limit():
    from neuronika.transform.cache import _layout_bytes
    x, w, b = leaf(f64(4, 8), False), leaf(f64(8, 8)), leaf(f64(8))
    (x.mm(w) + b).tanh().sum().backward()
    before = CACHE.held_bytes
    (x.mm(w) + b).tanh().sum().backward()            # the second time: a layout is kept
    kept = [layout for layouts in CACHE.layouts_of.values() for layout in layouts]
    assert len(kept) == 1
    assert CACHE.held_bytes == before + _layout_bytes(kept[0]) > before
    transform.cache_clear()
    assert CACHE.held_bytes == 0 and not CACHE.layouts and not CACHE.layouts_of
