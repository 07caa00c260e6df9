"""The program cache: hits on rebuilt graphs, misses on changed signatures, bounds."""
import numpy as np
import pytest

import neuronika
from neuronika import transform


@pytest.fixture(autouse=True)
def fresh_cache():
    transform.cache_clear()
    yield
    transform.set_cache_size(512)


def tiny(x, w, b):
    return (x.mm(w) + b).tanh().sum()


def test_rebuilt_graph_of_the_same_structure_hits():
    x, w, b = neuronika.rand((4, 8)), neuronika.rand((8, 8)).requires_grad(), neuronika.rand(8).requires_grad()
    for _ in range(5):
        tiny(x, w, b).backward()
    info = transform.cache_info()
    assert (info.hits, info.misses, info.currsize) == (4, 1, 1)


def test_forward_and_backward_again_on_the_same_graph_hit():
    w = neuronika.rand(3).requires_grad()
    y = (w * w).sum()
    y.forward()
    y.forward()
    y.backward()
    y.backward()          # saved values reused: no forward
    assert transform.cache_info().misses == 1 and transform.cache_info().hits == 1


@pytest.mark.parametrize("change", ["shape", "dtype", "requires_grad", "structure", "attribute",
                                    "sharing", "no_grad", "train_eval", "anomaly"])
def test_anything_that_changes_the_code_misses(change):
    def build(shape=(4, 3), dtype=np.float32, grad=True, axis=None):
        x = neuronika.ones(shape, dtype=dtype)
        return x.requires_grad() if grad else x

    base = (build() * 2).sum(axis=0)
    base.forward()
    if change == "shape":
        other = (build((5, 3)) * 2).sum(axis=0)
    elif change == "dtype":
        other = (build(dtype=np.float64) * 2).sum(axis=0)
    elif change == "requires_grad":
        other = (build(grad=False) * 2).sum(axis=0)
    elif change == "structure":
        other = (build() + 2).sum(axis=0)
    elif change == "attribute":
        other = (build() * 2).sum(axis=1)
    elif change == "sharing":
        a, b = build(), build()
        base = (a * a).sum(axis=0)
        base.forward()
        other = (a * b).sum(axis=0)
    elif change == "no_grad":
        with neuronika.no_grad():
            other = (build() * 2).sum(axis=0)
    elif change == "train_eval":
        base = build().dropout(0.5).sum(axis=0)
        base.forward()
        other = build().dropout(0.5).sum(axis=0)
        other.eval()
    else:
        other = (build() * 2).sum(axis=0)
        misses = transform.cache_info().misses
        with neuronika.detect_anomaly():
            other.forward()
        assert transform.cache_info().misses == misses + 1
        return
    misses = transform.cache_info().misses
    other.forward()
    assert transform.cache_info().misses == misses + 1


def test_values_are_not_part_of_the_key():
    w = neuronika.rand(3).requires_grad()
    (w * 2.0).sum().forward()
    (w * 7.5).sum().forward()                     # a different number: same program
    (neuronika.rand(3).requires_grad() * 3).sum().forward()
    x = neuronika.rand((4, 3))
    for i in range(4):
        (x[i] * w).sum().forward()                # the index is data, not code
    info = transform.cache_info()
    assert info.misses == 2


def test_cache_is_bounded_lru():
    transform.set_cache_size(2)
    w = neuronika.rand(4).requires_grad()
    for n in (1, 2, 3):
        w[:n].sum().forward()
    assert transform.cache_info().currsize == 2
    w[:3].sum().forward()                         # still cached
    assert transform.cache_info().hits == 1
    w[:1].sum().forward()                         # evicted
    assert transform.cache_info().misses == 4


def test_cache_clear_resets():
    (neuronika.rand(2).requires_grad() * 2).sum().forward()
    transform.cache_clear()
    assert transform.cache_info() == transform.CacheInfo(0, 0, 512, 0)
