"""Graphs are freed with their last handle; nothing global keeps arrays alive."""
import gc
import tracemalloc
import weakref

import numpy as np

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
    saved_refs = [weakref.ref(v) for v in h._node.saved if isinstance(v, np.ndarray) and v is not x.data]
    del h
    gc.collect()
    assert node_ref() is None
    assert value_ref() is None
    assert all(r() is None for r in saved_refs)
    assert w.grad.shape == (3, 3) and b.grad.shape == (3,)


def test_cache_holds_no_arrays_or_nodes():
    w = neuronika.rand((50, 50)).requires_grad()
    loss = (w.tanh() * 3).sum()
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
