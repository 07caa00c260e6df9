"""World size 1, without mpiexec: every API of neuronika.distributed, DistributedDataParallel
and DistributedSampler works, and DDP training is plain training."""
import os
import sys
import types

import numpy as np
import pytest

import neuronika
from neuronika import distributed, nn, optim
from neuronika.data import DataLoader, Dataset, DistributedSampler
from neuronika.nn import functional as F


@pytest.fixture
def fresh_world(monkeypatch):
    """distributed as if init() had not run yet (restored afterwards)."""
    monkeypatch.setattr(distributed, "_world", None)
    for name in distributed.LAUNCHER_SIZES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def mlp(seed=0):
    neuronika.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.Tanh(), nn.Linear(6, 3, dtype=np.float64))


def test_init_rank_world_size_barrier(fresh_world):
    assert not distributed.is_initialized()
    assert distributed.world_size() == 1 and distributed.rank() == 0    # initialises on first use
    assert distributed.is_initialized()
    distributed.init()                                                  # again: a no-op
    distributed.barrier()
    assert sys.excepthook is sys.__excepthook__ or "abort" not in sys.excepthook.__name__


def test_init_without_mpi4py_is_fine_alone_and_says_how_to_install_it_otherwise(fresh_world):
    fresh_world.setitem(sys.modules, "mpi4py", None)                    # import mpi4py raises
    distributed.init()
    assert distributed.world_size() == 1
    fresh_world.setattr(distributed, "_world", None)
    fresh_world.setenv("PMI_SIZE", "2")
    with pytest.raises(ImportError, match=r'one of 2 .*PMI_SIZE=2.*pip install "neuronika\[mpi\]"'):
        distributed.init()
    assert not distributed.is_initialized()


def test_launcher_and_mpi4py_from_different_mpi_libraries_are_named(fresh_world):
    world = types.SimpleNamespace(Get_rank=lambda: 0, Get_size=lambda: 1)
    fake = types.SimpleNamespace(COMM_WORLD=world, SUM=0, MAX=1, MIN=2,
                                 Get_library_version=lambda: "Open MPI v5.0\nmore")
    fresh_world.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=fake))
    fresh_world.setenv("OMPI_COMM_WORLD_SIZE", "4")
    with pytest.raises(RuntimeError, match="started 4 processes .* MPI sees 1: mpiexec and mpi4py use "
                                           "different MPI libraries.*Open MPI v5.0"):
        distributed.init()


def test_all_reduce_and_broadcast_are_identities_on_one_process():
    leaf = neuronika.ones(2).requires_grad()
    tree = {"a": np.arange(3.0), "leaf": leaf, "rest": [1.5, (np.float32(2), 3.0)]}
    for op in distributed.OPS:
        a = tree["a"]
        assert distributed.all_reduce(tree, op=op) is tree and tree["a"] is a
    assert tree["rest"] == [1.5, (np.float32(2), 3.0)] and np.array_equal(leaf.data, [1, 1])
    assert distributed.broadcast(tree) is tree
    grads = neuronika.grad(lambda w: (w * w).sum())(np.array([1.0, 2.0]))
    assert np.array_equal(distributed.average_gradients(grads), [2.0, 4.0])
    assert distributed.all_reduce(3.0) == 3.0 and distributed.all_reduce((1, 2)) == (1, 2)


def test_collective_errors_name_the_entry():
    with pytest.raises(ValueError, match="op must be one of 'sum', 'mean', 'max', 'min', got 'avg'"):
        distributed.all_reduce(np.zeros(2), op="avg")
    with pytest.raises(TypeError, match=r"op='mean'.*tree\['n'\] has dtype int64"):
        distributed.all_reduce({"n": np.arange(3)}, op="mean")
    with pytest.raises(TypeError, match=r"tree\[1\] is complex"):
        distributed.all_reduce([np.zeros(1), np.zeros(1, complex)], op="max")
    with pytest.raises(TypeError, match=r"tree\['s'\] is a str"):
        distributed.all_reduce({"s": "text"})
    y = neuronika.ones(2).requires_grad() * 2
    with pytest.raises(TypeError, match=r"tree\[0\] is the result of mul, not a leaf"):
        distributed.all_reduce([y])
    with pytest.raises(ValueError, match="root must be a rank, 0 to 0, got 1"):
        distributed.broadcast(np.zeros(1), root=1)


def test_mismatch_messages_name_the_entry_and_the_ranks():
    a = [("tree['w']", "<f8", (2,)), ("tree['b']", "<f8", (1,))]
    with pytest.raises(ValueError, match=r"all_reduce: entry tree\['w'\] has shape \(2,\) on rank 0 but "
                                         r"\(3,\) on rank 2"):
        distributed._raise_mismatch("all_reduce", [a, a, [("tree['w']", "<f8", (3,)), a[1]]], "entry")
    with pytest.raises(TypeError, match=r"parameter 'b' has dtype float64 on rank 0 but float32 on rank 1"):
        distributed._raise_mismatch("DDP", [[("b", "<f8", (1,))], [("b", "<f4", (1,))]], "parameter")
    with pytest.raises(ValueError, match=r"parameters only on rank 1: extra"):
        distributed._raise_mismatch("DDP", [[("b", "<f8", (1,))], [("b", "<f8", (1,)), ("extra", "<f8", ())]],
                                    "parameter")


def test_the_communication_helper_packs_and_unpacks_every_dtype():
    items = []
    strided = np.arange(8.0).reshape(2, 4)[:, ::2]
    distributed._leaves({"a": strided, "b": np.ones(2, np.float32), "c": 2.0}, "tree", items)
    seen = []

    def double(buffer):
        seen.append((buffer.dtype, buffer.size))
        buffer *= 2

    results = list(distributed._communicate(items, double))
    assert sorted(seen, key=str) == sorted([(np.dtype(np.float64), 5), (np.dtype(np.float32), 2)], key=str)
    assert np.array_equal(strided, [[0, 4], [8, 12]]) and results[0] is strided      # in place, strided
    assert results[2] == 4.0


def test_save_on_main_writes_atomically_and_every_rank_can_load(tmp_path):
    model = mlp()
    path = distributed.save_on_main(tmp_path / "model", model)
    assert path == str(tmp_path / "model.npz") and os.listdir(tmp_path) == ["model.npz"]
    other = mlp(seed=1)
    other.load_state_dict(nn.load(path))
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))
    distributed.save_on_main(path, {"x": np.arange(3)})                 # replaces the file
    assert list(nn.load(path)) == ["x"]
    with pytest.raises(TypeError, match="save_on_main: bad has dtype object"):
        distributed.save_on_main(path, {"bad": np.array([None])})
    assert os.listdir(tmp_path) == ["model.npz"] and list(nn.load(path)) == ["x"]   # left as it was


def test_ddp_on_one_process_is_plain_training():
    x = np.random.default_rng(0).normal(size=(8, 4))
    y = np.arange(8) % 3
    plain, wrapped = mlp(), nn.DistributedDataParallel(mlp(), bucket_cap_mb=1e-4)
    assert isinstance(wrapped, nn.Module) and isinstance(wrapped.module, nn.Sequential)
    assert wrapped.buckets == [("0.weight",), ("0.bias",), ("2.weight",), ("2.bias",)]
    assert list(wrapped.state_dict()) == list(plain.state_dict())
    assert [n for n, _ in wrapped.named_parameters()] == [n for n, _ in plain.named_parameters()]
    a, b = optim.Adam(plain.parameters(), lr=0.01), optim.Adam(wrapped.parameters(), lr=0.01)
    for _ in range(5):
        for model, opt in ((plain, a), (wrapped, b)):
            F.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad()
    assert all(np.array_equal(p.data, q.data) for p, q in zip(plain.parameters(), wrapped.parameters()))
    wrapped.eval()
    assert not wrapped.module[0].training
    wrapped.train()
    wrapped.load_state_dict(plain.state_dict())
    with pytest.raises(TypeError, match="convert the module before wrapping it"):
        wrapped.to(np.float32)
    with pytest.raises(TypeError, match="expects an nn.Module, got list"):
        nn.DistributedDataParallel([plain])
    with pytest.raises(ValueError, match="bucket_cap_mb must be a number > 0"):
        nn.DistributedDataParallel(plain, bucket_cap_mb=0)


def test_ddp_no_sync_accumulates_the_big_batch_gradient():
    x = np.random.default_rng(1).normal(size=(8, 4))
    y = np.arange(8) % 3
    plain, wrapped = mlp(), nn.DistributedDataParallel(mlp())
    F.cross_entropy(plain(x), y).backward()
    with wrapped.no_sync():
        (F.cross_entropy(wrapped(x[:4]), y[:4]) * 0.5).backward()
    (F.cross_entropy(wrapped(x[4:]), y[4:]) * 0.5).backward()
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-12, atol=1e-15)


def test_ddp_frees_with_its_model():
    import gc
    import weakref
    from neuronika import variable
    before = variable._hooks_registered[0]
    model = mlp()
    wrapped = nn.DistributedDataParallel(model)
    assert variable._hooks_registered[0] == before + 4
    probe = weakref.ref(wrapped._reducer)
    leaf = weakref.ref(model[0].weight._node)
    del wrapped, model
    gc.collect()
    assert probe() is None and leaf() is None
    assert variable._hooks_registered[0] == before              # its hooks went with it


def test_sampler_and_loader_on_one_process():
    sampler = DistributedSampler(range(5))                  # num_replicas and rank from the world
    assert (sampler.num_replicas, sampler.rank, len(sampler)) == (1, 0, 5)
    assert sorted(sampler) == [0, 1, 2, 3, 4]
    loader = DataLoader(Dataset(np.arange(10.0).reshape(5, 2), np.arange(5)), batch_size=2, sampler=sampler)
    assert len(loader) == 3 and sorted(int(v) for _, y in loader for v in y) == [0, 1, 2, 3, 4]
