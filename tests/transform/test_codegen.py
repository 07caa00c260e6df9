"""What the generated code must (and must not) do."""
import re
import traceback

import numpy as np
import pytest

import neuronika


def split_source(var):
    forward, _, backward = var.source().partition("\ndef backward")
    return forward, "def backward" + backward


def test_tiny_reads_like_the_design_example():
    x = neuronika.rand((4, 8))
    w = neuronika.rand((8, 8)).requires_grad()
    b = neuronika.rand(8).requires_grad()
    assert (x.mm(w) + b).tanh().sum().source() == (
        "def forward(x0, p1, p2):\n"
        "    v3 = x0 @ p1\n"
        "    v4 = v3 + p2\n"
        "    del v3\n"
        "    v5 = xp.tanh(v4)\n"
        "    del v4\n"
        "    v6 = v5.sum()\n"
        "    return v6, (v5, x0)\n"
        "\n"
        "def backward(seed, v5, x0):\n"
        "    g4 = seed * (1 - v5 * v5)\n"
        "    g2 = g4.sum(axis=0)\n"
        "    g1 = x0.T @ g4\n"
        "    del g4\n"
        "    return g1, g2\n")


def test_no_adjoint_for_branches_without_differentiable_leaves():
    x = neuronika.rand((3, 4))
    w = neuronika.rand((3, 4)).requires_grad()
    _, backward = split_source((x.exp().sin() * w).sum())
    assert "cos" not in backward and "exp" not in backward
    assert re.findall(r"^def backward\(seed, (.*)\):", backward, re.M) == ["v3"]


def test_first_contribution_assigned_later_ones_added_in_place_into_own_buffers():
    w = neuronika.rand(5).requires_grad()
    loss = (w * w.exp() + w.tanh()).sum()
    _, backward = split_source(loss)
    assert "+=" in backward
    for line in backward.splitlines():
        if "+=" in line:
            target = line.split("+=")[0].strip()
            assert target != "seed"
            assert re.search(rf"^\s*{target} = .*[*/@-]", backward, re.M), (target, backward)
    loss.backward()
    wd = w.data
    np.testing.assert_allclose(w.grad, np.exp(wd) * (1 + wd) + 1 - np.tanh(wd) ** 2, rtol=1e-5)


def test_pass_through_gradients_are_never_added_to_in_place():
    w = neuronika.rand(3).requires_grad()
    loss = w + w + w
    _, backward = split_source(loss)
    assert "seed +=" not in backward
    seed = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    loss.backward(seed)
    np.testing.assert_array_equal(w.grad, 3 * seed)
    np.testing.assert_array_equal(seed, [1.0, 2.0, 3.0])


def test_unbroadcast_only_where_shapes_differ():
    a = neuronika.rand((4, 3)).requires_grad()
    same = neuronika.rand((4, 3)).requires_grad()
    row = neuronika.rand(3).requires_grad()
    _, backward = split_source((a * same).sum())
    assert ".sum(" not in backward
    _, backward = split_source((a * row).tanh().sum())
    assert backward.count(".sum(axis=0)") == 1


def test_forward_keeps_only_values_an_adjoint_reads():
    x = neuronika.rand((2, 3))
    w = neuronika.rand((3, 3)).requires_grad()
    loss = (x.mm(w).exp() + 1).relu().sum()
    forward, backward = split_source(loss)
    saved = re.search(r"return v\d+, \((.*)\)", forward).group(1)
    args = re.search(r"def backward\(seed, (.*)\)", backward).group(1)
    assert saved.rstrip(",") == args
    # relu reads its input, exp its output, mm (for w) reads x: three values, no more.
    assert len(args.split(", ")) == 3


def test_scalar_seed_stays_implicit_for_scalar_roots():
    w = neuronika.rand((3, 4)).requires_grad()
    _, backward = split_source((w * 2).sum())
    assert "broadcast_to" not in backward and "ones" not in backward


def test_traceback_shows_the_generated_line():
    x = neuronika.from_ndarray(np.array([0.0, 1.0]))
    y = x.ln() * 2
    with np.errstate(divide="raise"):
        with pytest.raises(FloatingPointError) as info:
            y.forward()
    text = "".join(traceback.format_exception(info.value))
    assert "<neuronika forward" in text
    assert "v1 = xp.log(x0)" in text


def test_detect_anomaly_names_the_op_and_the_line_in_forward():
    x = neuronika.from_ndarray(np.array([1.0, -1.0])).requires_grad()
    with neuronika.detect_anomaly():
        y = (x * 2).ln().sum()
        with np.errstate(invalid="ignore"), pytest.raises(neuronika.AnomalyError) as info:
            y.forward()
    message = str(info.value)
    assert "op log" in message and "forward" in message
    assert "test_codegen.py" in message


def test_detect_anomaly_names_the_op_in_backward():
    x = neuronika.from_ndarray(np.array([0.0, 4.0])).requires_grad()
    with neuronika.detect_anomaly():
        y = x.sqrt().sum()
        y.forward()
        with np.errstate(divide="ignore"), pytest.raises(neuronika.AnomalyError) as info:
            y.backward()
    assert "op sqrt" in str(info.value) and "backward" in str(info.value)


def test_without_anomaly_mode_generated_code_has_no_checks():
    x = neuronika.from_ndarray(np.array([1.0, -1.0])).requires_grad()
    y = x.ln().sum()
    assert "check_finite" not in y.source()
    with np.errstate(invalid="ignore"):
        y.forward()
    assert np.isnan(y.item())
    with neuronika.detect_anomaly():
        assert "check_finite" in y.source()


def test_declare_refuses_reserved_input_names():
    from neuronika.ops import declare
    with pytest.raises(ValueError, match="reserved"):
        declare("uses_y_as_input", ("x", "y"), "x + y", {"x": "dy", "y": "dy"})
