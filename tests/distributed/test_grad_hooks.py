"""The gradient hooks of neuronika.variable that DistributedDataParallel builds on, without MPI:
post-accumulate-grad hooks on leaves, and pending gradients completed before they are read."""
import gc
import weakref

import numpy as np
import pytest

import neuronika
from neuronika import nn, optim
from neuronika.variable import defer_grad, grad_or_none, wait_grads


def leaves():
    a = neuronika.from_ndarray(np.array([1.0, 2.0])).requires_grad()
    b = neuronika.from_ndarray(np.array([3.0])).requires_grad()
    return a, b


def test_hooks_run_once_per_backward_after_every_gradient_is_written():
    a, b = leaves()
    calls = []

    def hook(param):
        # every gradient of this backward is final when any hook runs
        calls.append((param.shape, a._node.grad.copy(), b._node.grad.copy()))

    a.register_post_accumulate_grad_hook(hook)
    b.register_post_accumulate_grad_hook(hook)
    (a * b).sum().backward()
    assert [c[0] for c in calls] == [(2,), (1,)]                 # creation order
    assert all(np.array_equal(c[1], [3.0, 3.0]) and np.array_equal(c[2], [3.0]) for c in calls)
    calls.clear()
    (a * b).sum().backward()                                     # accumulated: the hook sees the sum
    assert len(calls) == 2 and np.array_equal(calls[0][1], [6.0, 6.0])


def test_hooks_run_only_for_leaves_the_backward_reached():
    a, b = leaves()
    c = neuronika.ones(1).requires_grad()
    seen = []
    for leaf, name in ((a, "a"), (b, "b"), (c, "c")):
        leaf.register_post_accumulate_grad_hook(lambda p, name=name: seen.append(name))
    (a.sum() * neuronika.stop_gradient(b).sum()).backward()       # b behind stop_gradient; c not used
    assert seen == ["a"]
    seen.clear()
    c.backward(np.ones(1))                                       # a leaf as the root
    assert seen == ["c"]


def test_hook_handles_remove_and_errors():
    a, b = leaves()
    seen = []
    handle = a.register_post_accumulate_grad_hook(lambda p: seen.append(1))
    handle.remove()
    handle.remove()                                              # twice: harmless
    a.sum().backward()
    assert seen == []
    with pytest.raises(neuronika.GradientError, match="result of mul, not a leaf"):
        (a * 2).register_post_accumulate_grad_hook(print)
    with pytest.raises(TypeError, match="hook must be callable"):
        a.register_post_accumulate_grad_hook(3)


def test_a_hook_does_not_keep_its_leaf_alive():
    from neuronika import variable
    before = variable._hooks_registered[0]
    a = neuronika.ones(2).requires_grad()
    handle = a.register_post_accumulate_grad_hook(lambda p: None)
    assert variable._hooks_registered[0] == before + 1
    probe = weakref.ref(a._node)
    del a
    gc.collect()
    assert probe() is None and variable._hooks_registered[0] == before    # backwards stop looking
    handle.remove()                                                       # harmless now
    assert variable._hooks_registered[0] == before


def _deferred(leaf, log, value):
    def settle():
        log.append("settled")
        leaf._node.grad = np.full(leaf.shape, value)
    defer_grad(leaf, settle)


def test_a_pending_gradient_is_completed_before_any_read():
    a, _ = leaves()
    a.sum().backward()
    log = []
    _deferred(a, log, 7.0)
    assert np.array_equal(a.grad, [7.0, 7.0]) and log == ["settled"]
    assert np.array_equal(a.grad, [7.0, 7.0]) and log == ["settled"]      # once
    _deferred(a, log, 8.0)
    assert np.array_equal(grad_or_none(a), [8.0, 8.0])
    _deferred(a, log, 9.0)
    a.zero_grad()                                                # completed, then forgotten
    assert log == ["settled"] * 3 and grad_or_none(a) is None
    _deferred(a, log, 1.0)
    a.sum().backward()                                           # completed before adding into it
    assert np.array_equal(a.grad, [2.0, 2.0]) and len(log) == 4
    _deferred(a, log, 5.0)
    a.grad = np.zeros(2)                                         # completed, then replaced
    assert len(log) == 5 and np.array_equal(a.grad, [0.0, 0.0])
    _deferred(a, log, 5.0)
    wait_grads()
    assert len(log) == 6
    with pytest.raises(neuronika.GradientError, match="only a differentiable leaf"):
        defer_grad(a * 2, print)


def test_optimizers_and_clipping_read_completed_gradients():
    neuronika.manual_seed(0)
    model = nn.Linear(2, 1, dtype=np.float64)
    model(np.ones((1, 2))).sum().backward()
    log = []
    for p in model.parameters():
        p._node.grad = None                                      # nothing written yet ...
        _deferred(p, log, 1.0)                                   # ... until the pending work completes
    before = [p.data.copy() for p in model.parameters()]
    optim.SGD(model.parameters(), lr=0.5).step()
    assert len(log) == 2
    assert all(np.allclose(p.data, b - 0.5) for p, b in zip(model.parameters(), before))
    for p in model.parameters():
        _deferred(p, log, 3.0)
    total = optim.clip_grad_norm_(model.parameters(), max_norm=1.0)
    assert len(log) == 4 and np.isclose(total, np.sqrt(3 * 9.0))
