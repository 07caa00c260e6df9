"""Bad input: a clear exception naming the op, the shapes or values, and the user's line;
state unchanged."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuronika
from neuronika import GradientError, ShapeError

THIS_FILE = "test_errors.py"


def test_shape_error_is_a_value_error_naming_op_shapes_and_line():
    a, b = neuronika.ones((4, 3)), neuronika.ones((2, 3))
    with pytest.raises(ShapeError) as info:
        a + b   # the line the message must name
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "add" in message and "(4, 3)" in message and "(2, 3)" in message
    assert f"{THIS_FILE}:{info.tb.tb_lineno}" in message


@pytest.mark.parametrize("build, words", [
    (lambda: neuronika.ones((2, 3)).mm(neuronika.ones((4, 2))), ["mm", "inner", "(2, 3)", "(4, 2)"]),
    (lambda: neuronika.ones((2, 3, 4)) @ neuronika.ones((3, 4, 5)), ["matmul", "(2, 3, 4)", "(3, 4, 5)", "batch"]),
    (lambda: neuronika.ones((4, 3))[np.ones((2, 2), bool)], ["index", "boolean"]),
    (lambda: neuronika.ones((2, 3)).mm(neuronika.ones(3)), ["mm", "2 and 2", "(2, 3)", "(3,)"]),
    (lambda: neuronika.ones((2, 3)).mv(neuronika.ones((3, 1))), ["mv", "(3, 1)"]),
    (lambda: neuronika.ones(3).vm(neuronika.ones(3)), ["vm", "(3,)"]),
    (lambda: neuronika.ones((3, 1)).vv(neuronika.ones(3)), ["vv", "(3, 1)"]),
    (lambda: neuronika.ones((2, 3)).mm_t(neuronika.ones((2, 4))), ["mm_t", "(2, 3)", "(2, 4)"]),
    (lambda: neuronika.ones((2, 3)).sum(axis=2), ["sum", "axis 2", "2 dimensions"]),
    (lambda: neuronika.ones((2, 3)).softmax(axis=-3), ["softmax", "axis -3"]),
    (lambda: neuronika.ones((2, 3)).transpose(0, 0), ["transpose", "(0, 0)"]),
    (lambda: neuronika.ones((2, 3)).reshape(4, 2), ["reshape", "(2, 3)", "(4, 2)"]),
    (lambda: neuronika.ones((2, 3)).squeeze(0), ["squeeze", "axis 0"]),
    (lambda: neuronika.concatenate([neuronika.ones((2, 3)), neuronika.ones((2, 4))]), ["concatenate", "(2, 3)", "(2, 4)"]),
    (lambda: neuronika.stack([neuronika.ones(2), neuronika.ones(3)]), ["stack", "(2,)", "(3,)"]),
    (lambda: neuronika.ones(3).pad(((3, 0),), mode="reflect"), ["pad", "reflect", "size 3"]),
    (lambda: neuronika.ones((2, 2)).pad(((1, 1),) * 3), ["pad", "(2, 2)"]),
    (lambda: neuronika.ones(4).split([1, 2]), ["split", "[1, 2]", "size 4"]),
    (lambda: neuronika.ones((4, 3)).chunks((2,)), ["chunks", "(4, 3)"]),
])
def test_build_time_errors(build, words):
    with pytest.raises(ShapeError) as info:
        build()
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert THIS_FILE in message


@pytest.mark.parametrize("index, words", [
    (5, ["index 5", "axis 0", "size 4"]),
    (-5, ["index -5", "size 4"]),
    ((0, 3), ["index 3", "axis 1", "size 3"]),
    (np.array([0, 4]), ["index 4", "size 4"]),
    ((slice(None), np.array([[0], [-4]])), ["index -4", "size 3"]),
])
def test_index_out_of_bounds(index, words):
    x = neuronika.ones((4, 3))
    with pytest.raises(ShapeError) as info:
        x[index]
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert THIS_FILE in message


def test_bad_index_kinds():
    x = neuronika.ones((4, 3))
    with pytest.raises(ShapeError, match="integer array"):
        x[np.array([0.5])]
    with pytest.raises(ShapeError, match="slice bounds"):
        x[0.5:]


def test_backward_on_a_var_says_how_to_get_a_vardiff():
    with pytest.raises(GradientError, match="requires_grad"):
        (neuronika.ones(3) * 2).sum().backward()


def test_backward_seed_of_the_wrong_shape_leaves_gradients_unchanged():
    w = neuronika.ones((2, 3)).requires_grad()
    y = w * 2
    y.backward(np.ones((2, 3)))
    before = w.grad.copy()
    with pytest.raises(GradientError, match=r"seed has shape \(3, 2\).*root has shape \(2, 3\)"):
        y.backward(np.ones((3, 2)))
    with pytest.raises(GradientError, match="scalar"):
        y.sum().backward(np.ones(2))
    np.testing.assert_array_equal(w.grad, before)


def test_grad_setter_checks_shape():
    w = neuronika.ones(3).requires_grad()
    with pytest.raises(ShapeError, match=r"\(2,\).*\(3,\)"):
        w.grad = np.zeros(2)


def test_a_failed_build_leaves_no_trace():
    w = neuronika.ones((2, 3)).requires_grad()
    with pytest.raises(ShapeError):
        w + neuronika.ones(4)
    (w * 1).sum().backward()
    np.testing.assert_array_equal(w.grad, np.ones((2, 3)))


def test_operand_types_are_checked():
    with pytest.raises(TypeError):
        neuronika.ones(2) + "a"
    with pytest.raises(TypeError, match="exponent"):
        neuronika.ones(2).pow(neuronika.ones(2))
    with pytest.raises(ValueError, match="clamp"):
        neuronika.ones(2).clamp()
    with pytest.raises(ValueError, match="dropout.*1.5"):
        neuronika.ones(2).dropout(1.5)
    with pytest.raises(ValueError, match="pad.*'wrap'"):
        neuronika.ones(2).pad(1, mode="wrap")


USER_SCRIPT = '''\
import sys
sys.path.insert(0, {path!r})
import numpy as np
import neuronika
assert {marker!r} in neuronika.__file__, neuronika.__file__          # imported through that path
a, b = neuronika.ones((4, 3)), neuronika.ones((2, 3))
try:
    a + b
except neuronika.ShapeError as error:
    print("shape:", error)
w = neuronika.ones(2).requires_grad()
with neuronika.detect_anomaly():
    y = (w * np.float32("nan")).sum()
    try:
        y.backward()
    except neuronika.AnomalyError as error:
        print("anomaly:", error)
'''


def _link_package(tmp_path):
    root = Path(neuronika.__file__).resolve().parent.parent
    linked = tmp_path / "checkout"
    linked.mkdir()
    (linked / "neuronika").symlink_to(root / "neuronika", target_is_directory=True)
    return str(linked)


@pytest.mark.parametrize("through", ["dotdot", "symlink", "relative"])
def test_the_users_line_is_found_whatever_path_imported_the_package(tmp_path, through):
    root = Path(neuronika.__file__).resolve().parent.parent
    cwd = tmp_path
    if through == "dotdot":
        path = marker = str(root / "tests" / "..")
    elif through == "symlink":
        path = marker = _link_package(tmp_path)
    else:                                   # a notebook's sys.path.insert(0, "..")
        cwd = root / "tests"
        path, marker = "..", os.path.join("tests", "..", "neuronika")
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT.format(path=path, marker=marker))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-I", str(script)], cwd=cwd, capture_output=True,
                            text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert "user_script.py:8)" in lines["shape"], lines["shape"]
    assert "user_script.py:13" in lines["anomaly"], lines["anomaly"]
