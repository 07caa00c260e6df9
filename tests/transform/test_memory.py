"""Graphs are freed with their last handle; nothing global keeps arrays alive."""
import gc
import tracemalloc
import weakref

import neuronika
from neuronika import transform


def test_graph_is_freed_and_only_leaves_remain():
    w = neuronika.rand((3, 3)).requires_grad()
    b = neuronika.rand(3).requires_grad()
    x = neuronika.rand((10, 3))
    h = x.mm(w.t()) + b
    h.forward()
    h.backward(1.0)
    node_ref = weakref.ref(h._node)
    value_ref = weakref.ref(h._node.value)
    del h
    gc.collect()
    assert node_ref() is None
    assert value_ref() is None
    assert w.grad.shape == (3, 3) and b.grad.shape == (3,)


def test_cache_holds_no_arrays_or_nodes():
    w = neuronika.rand((50, 50)).requires_grad()
    loss = (w.tanh() * 3).sum()
    with neuronika.config(compile="always"):        # a program in the cache (no interpreter)
        loss.backward()
    big = weakref.ref(w._node.value)
    node = weakref.ref(w._node)
    del w, loss
    gc.collect()
    assert big() is None and node() is None
    assert transform.cache_info().currsize >= 1


def test_memory_stays_flat_over_ten_thousand_iterations():
    x = neuronika.rand((8, 16))
    w = neuronika.rand((16, 4)).requires_grad()
    b = neuronika.zeros(4).requires_grad()

    def step():
        loss = ((x.mm(w) + b).relu() ** 2).mean()
        loss.backward()
        for p in loss.parameters():
            p.data -= 0.01 * p.grad
            p.zero_grad()

    for _ in range(200):
        step()
    gc.collect()
    tracemalloc.start()
    for _ in range(1000):
        step()
    gc.collect()
    after_1000, _ = tracemalloc.get_traced_memory()
    for _ in range(9000):
        step()
    gc.collect()
    after_10000, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after_10000 - after_1000 < 64 * 1024, (after_1000, after_10000)


def test_variables_support_weakref():
    w = neuronika.rand(3).requires_grad()
    y = (w * 2).sum()
    (p,) = y.parameters()
    data = neuronika.ones(2)
    refs = [weakref.ref(v) for v in (w, y, p, data)]
    assert all(r() is not None for r in refs)
    del y, p, data
    assert refs[1]() is None and refs[2]() is None and refs[3]() is None   # refcounts, no gc
    assert refs[0]() is w


def test_a_graph_is_freed_with_its_last_variable_over_ten_thousand_graphs():
    # No cycles anywhere (nodes, handles, programs, modes): with the collector off,
    # every graph goes as its last variable does, and memory stays flat.
    x = neuronika.rand((8, 16))
    w = neuronika.rand((16, 4)).requires_grad()
    b = neuronika.zeros(4).requires_grad()

    def step(refs):
        nonlocal w
        h = (x.mm(w) + b).relu()
        loss = (h * h).mean()
        if refs is not None:
            refs.append((weakref.ref(loss), weakref.ref(h), weakref.ref(h._node)))
        loss.forward()
        loss.backward()
        _ = h.data
        with neuronika.no_grad():
            w -= 0.01 * w.grad
        w.grad = None
        b.zero_grad()

    for _ in range(200):
        step(None)
    gc.collect()
    gc.disable()
    try:
        tracemalloc.start()
        refs = []
        for _ in range(1000):
            step(refs)
        after_1000, _ = tracemalloc.get_traced_memory()
        for _ in range(9000):
            step(None)
        after_10000, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert all(r() is None for triple in refs for r in triple)
    finally:
        gc.enable()
    assert after_10000 - after_1000 < 64 * 1024, (after_1000, after_10000)
