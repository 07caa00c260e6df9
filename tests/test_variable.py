"""Var / VarDiff semantics: differentiability, values, gradients, parameters, modes."""
import asyncio
import contextlib
import copy
import threading

import numpy as np
import pytest

import neuronika
from neuronika import GradientError, Var, VarDiff, nn


def leaf(values, grad=False, dtype=np.float64):
    v = neuronika.from_ndarray(np.array(values, dtype=dtype))
    return v.requires_grad() if grad else v


# ---- differentiability table -------------------------------------------------------------

@pytest.mark.parametrize("a_grad, b_grad, expected", [
    (False, False, Var), (True, False, VarDiff), (False, True, VarDiff), (True, True, VarDiff)])
@pytest.mark.parametrize("op", [lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b,
                                lambda a, b: a / b, lambda a, b: a.mm(b), lambda a, b: a ** b,
                                lambda a, b: neuronika.concatenate([a, b]),
                                lambda a, b: neuronika.stack([a, b])])
def test_differentiability_is_sticky(a_grad, b_grad, expected, op):
    a = leaf(np.ones((2, 2)) * 2, a_grad)
    b = leaf(np.ones((2, 2)) * 3, b_grad)
    assert type(op(a, b)) is expected


@pytest.mark.parametrize("grad", [False, True])
def test_numbers_and_arrays_act_as_vars_on_either_side(grad):
    x = leaf([1.0, 2.0], grad)
    kind = VarDiff if grad else Var
    arr = np.array([10.0, 20.0])
    cases = {
        "2 * x": (2 * x, [2, 4]), "x * 2": (x * 2, [2, 4]), "x - 1.0": (x - 1.0, [0, 1]),
        "1.0 - x": (1.0 - x, [0, -1]), "arr + x": (arr + x, [11, 22]), "x + arr": (x + arr, [11, 22]),
        "arr - x": (arr - x, [9, 18]), "arr * x": (arr * x, [10, 40]), "arr / x": (arr / x, [10, 10]),
        "6 / x": (6 / x, [6, 3]), "x ** 2": (x ** 2, [1, 4]), "2 ** x": (2 ** x, [2, 4]),
        "-x": (-x, [-1, -2]), "arr @ x": (arr @ x, 50),
    }
    for name, (value, expected) in cases.items():
        assert type(value) is kind, name
        np.testing.assert_allclose(value.data, expected, err_msg=name)


def test_python_scalars_keep_float32():
    x = neuronika.ones(3).requires_grad()
    y = (x * 0.5 + 1.25) / 3.0 - 2 * x
    assert y.dtype == np.float32 and y.data.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, np.full(3, 0.5 / 3 - 2), rtol=1e-6)


def test_numbers_promote_as_in_numpy_2():
    x = neuronika.ones(2)
    assert (x * 2.0).dtype == np.float32                  # a Python number is weakly typed
    assert (x * np.float64(2.0)).dtype == np.float64      # a NumPy scalar is not
    assert (x * np.float32(2.0)).dtype == np.float32
    assert (neuronika.ones(2, np.int64) * 2.5).dtype == np.float64


# ---- values ----------------------------------------------------------------------------------------

def test_data_evaluates_a_never_evaluated_node():
    x = leaf([1.0, 2.0])
    y = x * 3
    np.testing.assert_array_equal(y.data, [3.0, 6.0])
    assert isinstance((x.sum()).data, np.ndarray)


def test_forward_recomputes_after_leaf_data_changes_in_place():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.forward()
    assert y.item() == 5.0
    x.data[:] = [3.0, 4.0]
    y.forward()
    assert y.item() == 25.0
    x.data = np.array([1.0, 1.0])          # assignment copies in place
    y.forward()
    assert y.item() == 2.0


def test_backward_after_an_in_place_change_uses_the_new_values_everywhere():
    # d(w^3)/dw is 12 at w = 2 and 27 at w = 3; saved old intermediates mixed with the
    # live leaf gave 22.
    w = leaf(2.0, grad=True)
    loss = w * w * w
    loss.backward()
    assert w.grad == 12.0
    for forward_first in (False, True):
        w.zero_grad()
        w.data[...] = 3.0
        if forward_first:
            loss.forward()
        loss.backward()
        assert (w.grad, loss.item()) == (27.0, 27.0)
        w.data[...] = 2.0
    # A value read before the change: its backward differentiates that value (the
    # loss printed and its gradient belong together), never a mix.
    w.zero_grad()
    loss.forward()
    assert loss.item() == 8.0
    w.data[...] = 3.0
    loss.backward()
    assert (w.grad, loss.item()) == (12.0, 8.0)
    w.zero_grad()
    loss.backward()                     # nothing read since: the current values
    assert (w.grad, loss.item()) == (27.0, 27.0)


def test_intermediate_values_follow_the_last_evaluation_through_them():
    w = leaf([2.0], grad=True)
    h = w * w
    assert h.data[0] == 4.0
    loss = (h * w).sum()
    w.data[...] = 3.0
    loss.forward()
    assert loss.item() == 27.0 and h.data[0] == 9.0
    w.data[...] = 1.0
    loss.backward()                     # differentiates the forward above, at w = 3
    np.testing.assert_array_equal(w.grad, [27.0])
    assert loss.item() == 27.0 and h.data[0] == 9.0
    w.zero_grad()
    loss.backward()                     # evaluates: the current values, everywhere
    np.testing.assert_array_equal(w.grad, [3.0])
    assert loss.item() == 1.0 and h.data[0] == 1.0


def test_retain_grad_after_the_loss_value_was_read():
    w = leaf([1.0, 2.0], grad=True)
    h = w * 3
    loss = (h * h).sum()
    assert loss.item() == 45.0
    h.retain_grad()
    loss.backward()
    np.testing.assert_array_equal(h.grad, [6.0, 12.0])
    g = h * 2
    total = g.sum()
    total.backward()
    g.retain_grad()                     # after a backward: the next one keeps it
    total.backward()
    np.testing.assert_array_equal(g.grad, [1.0, 1.0])


def test_leaf_data_assignment_checks_shape_and_refuses_non_leaves():
    x = leaf([1.0, 2.0])
    with pytest.raises(neuronika.ShapeError, match=r"\(3,\).*\(2,\)"):
        x.data = np.zeros(3)
    with pytest.raises(neuronika.GradientError, match="leaf"):
        (x + 1).data = np.zeros(2)


def test_shape_ndim_dtype_len_item_repr():
    x = neuronika.zeros((4, 3))
    assert (x.shape, x.ndim, x.dtype, len(x), x.size) == ((4, 3), 2, np.float32, 4, 12)
    assert neuronika.full((), 2.5).item() == 2.5
    assert float(neuronika.full(1, 2.0)) == 2.0
    assert repr(neuronika.ones(2)) == "Var([1., 1.])"
    assert repr(leaf([1.0], grad=True)) == "VarDiff([1.], dtype=float64)"
    with pytest.raises(TypeError, match="0-dim"):
        len(neuronika.full((), 1.0))
    with pytest.raises(ValueError):
        neuronika.ones(2).item()


def test_copy_shares_the_node():
    w = leaf([1.0, 2.0], grad=True)
    w2 = copy.copy(w)
    (w2 * 2).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 2.0])


def test_detach_gives_a_var_over_the_same_value():
    w = leaf([1.0, 2.0], grad=True)
    d = (w * 2).detach()
    assert type(d) is Var and d.is_leaf
    np.testing.assert_array_equal(d.data, [2.0, 4.0])
    assert w.detach().data is w.data


# ---- gradients ------------------------------------------------------------------------------

def test_grad_is_zeros_until_backward():
    w = leaf([[1.0, 2.0]], grad=True)
    np.testing.assert_array_equal(w.grad, np.zeros((1, 2)))


def test_leaf_gradients_accumulate_until_zeroed():
    w = leaf([1.0, 2.0], grad=True)
    loss = (w * w).sum()
    loss.backward()
    loss.backward()
    np.testing.assert_array_equal(w.grad, [4.0, 8.0])
    w.zero_grad()
    np.testing.assert_array_equal(w.grad, [0.0, 0.0])
    (w * w).sum().backward()
    np.testing.assert_array_equal(w.grad, [2.0, 4.0])


def test_intermediate_gradients_do_not_leak_between_backwards():
    # The crate counted twice when backward ran twice without forward; we must not.
    w = leaf([1.0, 2.0], grad=True)
    h = w * 3
    loss = (h * h).sum()
    loss.backward()
    first = w.grad.copy()
    w.zero_grad()
    loss.backward()
    np.testing.assert_array_equal(w.grad, first)
    np.testing.assert_array_equal(first, 18 * w.data)


def test_multiply_by_four_five_times():
    x = leaf(1.0, grad=True)
    y = x
    for _ in range(5):
        y = y * 4
    y.backward()
    assert y.item() == 1024.0
    assert x.grad == 1024.0


def test_backward_evaluates_first_and_seeds():
    w = leaf([[1.0, 2.0], [3.0, 4.0]], grad=True)
    y = w * w
    y.backward(2.0)                                   # scalar seed broadcast over y
    np.testing.assert_array_equal(w.grad, 4 * w.data)
    w.zero_grad()
    seed = np.array([[1.0, 0.0], [0.0, 1.0]])
    y.backward(seed)
    np.testing.assert_array_equal(w.grad, 2 * w.data * seed)
    np.testing.assert_array_equal(seed, [[1.0, 0.0], [0.0, 1.0]])   # the seed is not written


def test_pass_through_adjoints_never_corrupt_seed_or_other_gradients():
    # add's adjoint hands dy to both inputs: one array object. Accumulating a second
    # contribution must not write into it (nor into the caller's seed).
    x = leaf([1.0, 2.0], grad=True)
    z = leaf([5.0, 6.0], grad=True)
    y = (x + z) + x
    seed = np.array([1.0, 10.0])
    y.backward(seed)
    np.testing.assert_array_equal(x.grad, [2.0, 20.0])
    np.testing.assert_array_equal(z.grad, [1.0, 10.0])
    np.testing.assert_array_equal(seed, [1.0, 10.0])
    assert x.grad is not z.grad and not np.shares_memory(x.grad, z.grad)


def test_leaf_as_root():
    w = leaf([1.0, 2.0], grad=True)
    w.backward(np.array([3.0, 4.0]))
    np.testing.assert_array_equal(w.grad, [3.0, 4.0])


def test_retain_grad_keeps_an_intermediate_gradient_without_accumulating():
    w = leaf([1.0, 2.0], grad=True)
    h = w * 3
    with pytest.raises(neuronika.GradientError, match="retain_grad"):
        h.grad
    h.retain_grad()
    loss = (h * h).sum()
    loss.backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)
    loss.backward()
    np.testing.assert_array_equal(h.grad, 2 * h.data)          # replaced, not added
    np.testing.assert_array_equal(w.grad, 2 * 18 * w.data)     # leaves do accumulate


def test_gradients_reach_only_differentiable_leaves():
    x = leaf([1.0, 2.0])
    w = leaf([3.0, 4.0], grad=True)
    (x * w).sum().backward()
    np.testing.assert_array_equal(w.grad, x.data)
    assert x._node.grad is None              # the data leaf got no gradient buffer
    assert "x0" not in (x * w).sum().source().split("def backward")[1].split("return")[-1]


@pytest.mark.parametrize("shape", [(), (3,)])
def test_setting_grad_to_none_resets_it(shape):
    w = neuronika.full(shape, 2.0, dtype=np.float64).requires_grad()
    (w * w).sum().backward()
    old = w.grad
    w.grad = None
    (w * 3).sum().backward()
    np.testing.assert_array_equal(w.grad, np.full(shape, 3.0))
    np.testing.assert_array_equal(old, np.full(shape, 4.0))        # a fresh array, not added into
    (p,) = (w * 1).sum().parameters()
    p.grad = None
    (w * 5).sum().backward()
    np.testing.assert_array_equal(w.grad, np.full(shape, 5.0))


@pytest.mark.parametrize("op, operand, expected", [
    ("-=", "grad", [0.5, 1.0]), ("+=", "grad", [1.5, 3.0]), ("*=", 2.0, [2.0, 4.0]),
    ("/=", 4.0, [0.25, 0.5]), ("-=", "var", [0.0, 0.0]), ("+=", "array", [2.0, 4.0])])
def test_in_place_operators_under_no_grad_update_the_leaf(op, operand, expected):
    a = leaf([1.0, 2.0], grad=True)
    (a * a / 4).sum().backward()                   # a.grad = a / 2
    handle, data = a, a.data
    other = {"grad": a.grad, "var": a.detach(), "array": np.array([1.0, 2.0])}.get(operand, operand)
    with neuronika.no_grad():
        if op == "-=":
            a -= other
        elif op == "+=":
            a += other
        elif op == "*=":
            a *= other
        else:
            a /= other
    assert a is handle and a.data is data
    np.testing.assert_array_equal(a.data, expected)


def test_sgd_by_hand_with_the_pytorch_idiom():
    a = leaf([1.0, -2.0], grad=True)
    for _ in range(3):
        loss = (a * a).sum()
        loss.backward()
        with neuronika.no_grad():
            a -= 0.25 * a.grad
        a.grad = None
    np.testing.assert_array_equal(a.data, [0.125, -0.25])
    assert type(a) is VarDiff and a.is_leaf


def test_in_place_operators_outside_no_grad():
    a = leaf([1.0, 2.0], grad=True)
    with pytest.raises(GradientError, match="leaf Variable that requires grad .* in-place"):
        a -= 1.0
    np.testing.assert_array_equal(a.data, [1.0, 2.0])
    y = a * 2
    with pytest.raises(GradientError, match=r"result of mul.*y = y \+ \.\.\."):
        y += 1.0
    with pytest.raises(GradientError, match=r"y = y \* \.\.\."), neuronika.no_grad():
        y *= 2.0
    x = leaf([1.0, 2.0])                           # data: updated in place, as in PyTorch
    data = x.data
    x += 1.0
    assert x.data is data
    np.testing.assert_array_equal(data, [2.0, 3.0])
    with pytest.raises(neuronika.ShapeError, match=r"\(3,\).*\(2,\)"), neuronika.no_grad():
        a += np.ones(3)
    i = neuronika.ones(2, dtype=np.int64)
    with pytest.raises(TypeError, match="int64"):
        i += 0.5
    np.testing.assert_array_equal(i.data, [1, 1])
    frozen = np.ones(2)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        neuronika.from_ndarray(frozen).__iadd__(1.0)


def test_in_place_operators_are_refused_inside_a_trace():
    def f(x):
        x += 1.0
        return x.sum()
    with pytest.raises(GradientError, match="in-place"):
        neuronika.grad(f)(np.ones(2))


def test_a_param_is_a_variable():
    neuronika.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    params = model.parameters()
    assert all(isinstance(p, VarDiff) and p.is_leaf for p in params)
    p = params[0]
    np.testing.assert_array_equal((p * p).data, p.data ** 2)
    penalty = sum(q.pow(2).sum() for q in model.parameters())
    penalty.backward()
    for q in params:
        np.testing.assert_allclose(q.grad, 2 * q.data)
    before = [q.data.copy() for q in params]
    with neuronika.no_grad():
        for q in model.parameters():
            q -= 0.5 * q.grad
    for q, old in zip(params, before):
        np.testing.assert_allclose(q.data, 0.0)
        assert q.data is q._node.value and old.shape == q.shape
    assert p == model.parameters()[0] and len(set(model.parameters()) | set(params)) == 4


# ---- parameters ----------------------------------------------------------------------------------

def test_parameters_dedup_in_creation_order():
    x = leaf([1.0], grad=True)
    y = leaf([2.0], grad=True)
    z = leaf([3.0], grad=True)
    params = (z * y + x + y + z + x).parameters()
    assert [p.data[0] for p in params] == [1.0, 2.0, 3.0]
    params = (x + y + z + x).parameters()
    assert [p.data[0] for p in params] == [1.0, 2.0, 3.0]


def test_parameters_are_live_arrays():
    w = leaf([1.0, 2.0], grad=True)
    loss = (w * w).sum()
    loss.backward()
    (p,) = loss.parameters()
    assert p.data is w.data and p.grad is w.grad
    p.data -= 0.5 * p.grad
    np.testing.assert_array_equal(w.data, [0.0, 0.0])
    p.zero_grad()
    np.testing.assert_array_equal(w.grad, [0.0, 0.0])
    assert p == loss.parameters()[0] and len({p, loss.parameters()[0]}) == 1
    assert type(p.var) is VarDiff


def test_parameters_exclude_non_differentiable_leaves():
    x = leaf([1.0])
    w = leaf([2.0], grad=True)
    assert len((x * w + x).parameters()) == 1


# ---- modes --------------------------------------------------------------------------------------

def test_no_grad_builds_only_vars():
    w = leaf([1.0, 2.0], grad=True)
    with neuronika.no_grad():
        y = w * 2 + 1
    assert type(y) is Var
    assert type(w * 2) is VarDiff
    with pytest.raises(neuronika.GradientError, match="no_grad"):
        y.backward()

    @neuronika.no_grad()
    def predict(v):
        return v * 3
    assert type(predict(w)) is Var


@contextlib.contextmanager
def held_in_another_thread(mode):
    """Inside: another thread is inside ``with mode():``."""
    inside, release = threading.Event(), threading.Event()

    def hold():
        with mode():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join()


def test_no_grad_is_per_thread():
    w = leaf([1.0], grad=True)
    with held_in_another_thread(neuronika.no_grad):
        assert type(w * 2) is VarDiff


def test_interleaved_no_grad_in_two_threads_restores_each():
    # A enters, B enters, A exits, B exits: with one process-wide flag B restored False.
    w = leaf([1.0], grad=True)
    steps = [threading.Event() for _ in range(4)]
    kinds = {}

    def a():
        with neuronika.no_grad():
            steps[0].set()
            steps[1].wait(10)
        kinds["a"] = type(w * 2)
        steps[2].set()

    def b():
        steps[0].wait(10)
        with neuronika.no_grad():
            steps[1].set()
            steps[2].wait(10)
        kinds["b"] = type(w * 2)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kinds == {"a": VarDiff, "b": VarDiff}
    assert type(w * 2) is VarDiff


def test_detect_anomaly_is_per_thread():
    w = leaf([1.0], grad=True)
    with held_in_another_thread(neuronika.detect_anomaly), np.errstate(invalid="ignore"):
        (w * np.nan).sum().backward()              # no AnomalyError: not this thread's mode
    assert np.isnan(w.grad).all()


def test_no_grad_is_per_async_task():
    w = leaf([1.0], grad=True)

    async def hold(entered, release):
        with neuronika.no_grad():
            entered.set()
            await release.wait()

    async def main():
        entered, release = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(hold(entered, release))
        await entered.wait()
        kind = type(w * 2)
        release.set()
        await task
        return kind

    assert asyncio.run(main()) is VarDiff


def test_modes_are_restored_by_reentrant_decorators_and_on_exceptions():
    w = leaf([1.0], grad=True)

    @neuronika.no_grad()
    def nested(n):
        return w * 2 if n == 0 else nested(n - 1)

    assert type(nested(3)) is Var
    assert type(w * 2) is VarDiff
    with pytest.raises(ZeroDivisionError), neuronika.no_grad(), neuronika.detect_anomaly():
        1 / 0
    assert type(w * 2) is VarDiff
    assert neuronika.graph.modes.grad_enabled is True and neuronika.graph.modes.anomaly is False
    with neuronika.no_grad() as outer:
        with outer:                                   # one instance entered twice
            pass
        assert type(w * 2) is Var
    assert type(w * 2) is VarDiff


def test_train_and_eval_switch_dropout_behind_a_variable():
    neuronika.manual_seed(0)
    x = neuronika.ones((200, 50), dtype=np.float64).requires_grad()
    y = x.dropout(0.5) * 1.0
    y.forward()
    values = set(np.unique(y.data))
    assert values == {0.0, 2.0}
    y.eval()
    y.forward()
    np.testing.assert_array_equal(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones((200, 50)))
    y.train()
    y.forward()
    assert set(np.unique(y.data)) == {0.0, 2.0}


def test_dropout_backward_uses_the_forward_mask():
    neuronika.manual_seed(3)
    x = neuronika.ones((50, 40), dtype=np.float64).requires_grad()
    y = x.dropout(0.25)
    y.backward(1.0)
    np.testing.assert_array_equal(x.grad, y.data)      # y = x * mask, x = 1
    assert set(np.unique(y.data)) == {0.0, 4.0 / 3.0}


@pytest.mark.parametrize("make", ["array", "view", "buffer"])
def test_a_value_read_before_an_in_place_change_is_differentiated_whole(make):
    # The backward of y = w.T @ x reads x and w (views of the leaves' memory): an
    # evaluation keeps copies, so a later in-place change cannot mix into it.
    base = {"array": lambda: np.full(4, 2.0), "view": lambda: np.full(8, 2.0)[::2],
            "buffer": lambda: np.frombuffer(bytearray(np.full(4, 2.0).tobytes()))}[make]
    w = neuronika.from_ndarray(base()).requires_grad()
    x = neuronika.from_ndarray(base())
    loss = (w.reshape(2, 2).T @ x.reshape(2, 2)).sum()
    assert loss.item() == 32.0
    w.data[...] = 5.0
    x.data[...] = 7.0
    loss.backward()
    np.testing.assert_array_equal(w.grad, np.full(4, 4.0))
