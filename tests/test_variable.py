"""Var / VarDiff semantics: differentiability, values, gradients, parameters, modes."""
import copy

import numpy as np
import pytest

import neuronika
from neuronika import Var, VarDiff


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
