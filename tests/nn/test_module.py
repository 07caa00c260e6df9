"""Module: registration, traversal, modes, state dicts, saving and loading."""
import numpy as np
import pytest

import neuronika as nk
from neuronika import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.drop = nn.Dropout(0.5)
        self.scale = nn.parameter(np.ones(4, np.float32))

    def forward(self, x):
        return self.drop(self.fc(x)) * self.scale


class Net(nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(depth))
        self.heads = nn.ModuleDict({"a": nn.Linear(4, 2), "b": nn.Linear(4, 1)})
        self.register_buffer("steps", np.zeros((), np.int64))

    def forward(self, x):
        h = nn.layers.as_var(x)
        for block in self.blocks:
            h = block(h).sum(axis=1, keepdims=True) * nk.ones((1, 3), dtype=h.dtype)
        return self.heads["a"](h.mm(nk.ones((3, 4), dtype=h.dtype)))


def test_registration_and_dotted_names_in_pytorch_order():
    # A module's own parameters come before its children's (as in PyTorch).
    net = Net(2)
    names = [n for n, _ in net.named_parameters()]
    assert names == ["blocks.0.scale", "blocks.0.fc.weight", "blocks.0.fc.bias",
                     "blocks.1.scale", "blocks.1.fc.weight", "blocks.1.fc.bias",
                     "heads.a.weight", "heads.a.bias", "heads.b.weight", "heads.b.bias"]
    assert len(net.parameters()) == 10
    assert [type(c).__name__ for c in net.children()] == ["ModuleList", "ModuleDict"]
    assert len(net.blocks) == 2 and "a" in net.heads and net.heads.keys() == ["a", "b"]


def test_shared_parameters_are_listed_once():
    net = nn.Module()
    shared = nn.Linear(2, 2)
    net.first, net.second = shared, shared
    assert len(net.parameters()) == 2


def test_reassigning_replaces_the_registration():
    m = nn.Module()
    m.w = nn.parameter(np.zeros(2))
    m.w = nn.parameter(np.ones(3))
    assert [n for n, _ in m.named_parameters()] == ["w"]
    assert m.parameters()[0].shape == (3,)
    m.w = "not a parameter any more"
    assert m.parameters() == []


def test_super_init_is_required():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_train_and_eval_reach_every_dropout():
    nk.manual_seed(0)
    net = nn.Sequential(nn.Linear(50, 50), nn.Dropout(0.5), nn.Sequential(nn.Dropout(0.5)))
    x = nk.ones((20, 50))
    net.eval()
    assert all(not m.training for m in net.modules())
    np.testing.assert_array_equal(net(x).data, net(x).data)
    net.train()
    assert all(m.training for m in net.modules())
    assert not np.array_equal(net(x).data, net(x).data)


def test_zero_grad_and_training_step():
    net = nn.Sequential(nn.Linear(3, 1))
    loss = (net(nk.ones((4, 3))) ** 2).mean()
    loss.backward()
    assert any(np.any(p.grad != 0) for p in net.parameters())
    net.zero_grad()
    assert all(np.all(p.grad == 0) for p in net.parameters())


def test_parameters_are_the_ones_backward_fills():
    net = nn.Linear(3, 2)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    (net(x) * 2).sum().backward()
    weight, bias = net.parameters()
    np.testing.assert_allclose(weight.grad, np.full((2, 5), 2.0) @ x, rtol=1e-6)
    np.testing.assert_allclose(bias.grad, np.full(2, 10.0))


def test_state_dict_round_trip_through_npz(tmp_path):
    nk.manual_seed(1)
    a, b = Net(2), Net(2)
    a.steps = None  # buffers are registered through register_buffer only
    a.register_buffer("steps", np.array(7))
    path = tmp_path / "model.npz"
    a.save(path)
    state = nn.load(path)
    assert list(state) == list(a.state_dict())
    b.load_state_dict(state)
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert int(b.steps) == 7
    x = np.ones((2, 3), np.float32)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).data, b(x).data)


def test_load_accepts_a_path_without_the_suffix(tmp_path):
    m = nn.Linear(2, 2)
    m.save(tmp_path / "m")
    assert list(nn.load(tmp_path / "m")) == ["weight", "bias"]


def test_state_dict_holds_copies():
    m = nn.Linear(2, 2)
    state = m.state_dict()
    state["weight"][...] = 5
    assert not np.any(m.weight.data == 5)


@pytest.mark.parametrize("edit, error, words", [
    (lambda s: s.pop("bias"), KeyError, ["missing", "bias", "nothing was loaded"]),
    (lambda s: s.__setitem__("extra", np.zeros(1)), KeyError, ["unexpected", "extra"]),
    (lambda s: s.__setitem__("weight", np.zeros((3, 2))), nk.ShapeError, ["weight", "(3, 2)", "(2, 3)"]),
])
def test_bad_state_dict_names_the_key_and_changes_nothing(edit, error, words):
    m = nn.Linear(3, 2)
    before = m.state_dict()
    state = m.state_dict()
    state["bias"] = np.full(2, 9.0, np.float32)
    edit(state)
    with pytest.raises(error) as info:
        m.load_state_dict(state)
    for word in words:
        assert word in str(info.value)
    for name, value in m.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


def test_non_strict_loading_takes_what_matches():
    m = nn.Linear(3, 2)
    m.load_state_dict({"bias": np.ones(2), "other": np.zeros(1)}, strict=False)
    np.testing.assert_array_equal(m.bias.data, np.ones(2))


def test_npz_loading_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, weight=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
        nn.load(path)


def test_to_dtype_converts_parameters_and_buffers():
    net = Net(1).to(np.float64)
    assert all(p.dtype == np.float64 for p in net.parameters())
    x = np.ones((2, 3))
    assert net(nk.from_ndarray(x)).dtype == np.float64


def test_repr_shows_the_tree_and_parameter_count():
    text = repr(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)))
    assert "(0): Linear(in_features=3, out_features=4, bias=True)" in text
    assert "(1): ReLU()" in text
    assert "21 parameters" in text


def test_module_list_and_dict_type_checks():
    with pytest.raises(TypeError, match="ModuleList"):
        nn.ModuleList([nn.Linear(1, 1), 3])
    with pytest.raises(TypeError, match="ModuleDict"):
        nn.ModuleDict({"a": "b"})
    assert len(nn.ModuleList([nn.ReLU(), nn.Tanh()])[1:]) == 1


def test_forward_must_be_defined():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(1)


# ---- atomic loads, clear file errors (issue 11) ------------------------------------------------

def _changed_state(m):
    """A state with every entry different from the model's, for checking nothing was loaded."""
    return {k: (v + 1).astype(v.dtype) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("key, value, error, words", [
    ("1.bias", np.ones(3, np.complex64), TypeError, ["1.bias", "complex64", "float32"]),
    ("1.weight", np.full((3, 4), "x"), TypeError, ["1.weight", "<U1"]),
    ("0.running_mean", np.full(4, 1e39), OverflowError, ["0.running_mean", "1e+39", "float32"]),
    ("0.num_batches_tracked", np.array(1.5), TypeError, ["0.num_batches_tracked", "int64"]),
    ("1.bias", [1.0, 2.0], nk.ShapeError, ["1.bias", "(2,)", "(3,)"]),
])
def test_load_state_dict_checks_every_entry_before_changing_anything(key, value, error, words):
    m = nn.Sequential(nn.BatchNorm1d(4), nn.Linear(4, 3))
    before = m.state_dict()
    state = _changed_state(m)
    state[key] = value                            # a bad entry after good ones
    with pytest.raises(error) as info:
        m.load_state_dict(state)
    for word in words + ["nothing was loaded"]:
        assert word in str(info.value)
    for name, array in m.state_dict().items():
        np.testing.assert_array_equal(array, before[name], err_msg=name)
        assert array.dtype == before[name].dtype


def test_load_state_dict_from_a_file_names_the_file(tmp_path):
    m = nn.Linear(3, 2)
    path = tmp_path / "bad.npz"
    np.savez(path, weight=np.zeros((2, 3), np.float32), bias=np.zeros(5, np.float32))
    before = m.state_dict()
    with pytest.raises(nk.ShapeError, match=r"bad\.npz.*bias.*\(5,\).*\(2,\)"):
        m.load_state_dict(nn.load(path))
    np.testing.assert_array_equal(m.weight.data, before["weight"])


def test_nn_load_names_the_file_and_what_is_wrong(tmp_path):
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    good = tmp_path / "good.npz"
    m.save(good)
    raw = good.read_bytes()
    cases = {"missing.npz": None, "truncated.npz": raw[: len(raw) // 2], "tail.npz": raw[:-20],
             "empty.npz": b"", "text.npz": b"weight,bias\n1,2\n",
             "crc.npz": raw[:80] + bytes(b ^ 0xFF for b in raw[80:120]) + raw[120:]}
    for name, content in cases.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises((ValueError, OSError)) as info:
            nn.load(path)
        message = str(info.value)
        assert name in message, message
        assert any(word in message for word in ("no such file", "truncated", "corrupt", "empty")), message
    np.save(tmp_path / "one.npy", np.ones(3))
    with pytest.raises(ValueError, match=r"one\.npy is a \.npy file"):
        nn.load(tmp_path / "one.npy")
    assert list(nn.load(good)) == list(m.state_dict())


def test_to_a_dtype_that_overflows_raises_and_converts_nothing():
    m = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)).to(np.float64)
    m[1].running_var[...] = 1e39
    with pytest.raises(OverflowError, match=r"1\.running_var.*1e\+39.*float32"):
        m.to(np.float32)
    assert all(p.dtype == np.float64 for p in m.parameters())
    assert m[1].running_var.dtype == np.float64
    with pytest.raises(TypeError, match=r"to: parameters are floating point.*int32"):
        m.to(np.int32)
