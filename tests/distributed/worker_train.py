"""Run under mpiexec by test_mpi.py (``mpiexec -n 2|3 python worker_train.py TMPDIR``): every
check of data-parallel training that needs several processes, in one launch. Each rank also
trains the single-process reference itself (no MPI), so the comparisons are local.
A failed check raises; distributed.init()'s excepthook then aborts every rank."""
import sys

import numpy as np

import neuronika
from neuronika import distributed, nn, optim
from neuronika.data import DataLoader, Dataset, DistributedSampler
from neuronika.nn import functional as F

TOL = 1e-10
GLOBAL_BATCH = 12                   # divisible by 2 and 3: equal shards
STEPS = 20


def log(message):
    print(f"[rank {distributed.rank()}] {message}", flush=True)


def mlp(seed, hidden=8):
    neuronika.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, hidden, dtype=np.float64), nn.Tanh(),
                         nn.Linear(hidden, hidden, dtype=np.float64), nn.Tanh(),
                         nn.Linear(hidden, 3, dtype=np.float64))


def data(step):
    rng = np.random.default_rng(1000 + step)          # the same global batch on every rank
    return rng.normal(size=(GLOBAL_BATCH, 5)), rng.integers(0, 3, GLOBAL_BATCH)


def shard(array, rank, size):
    per = len(array) // size
    return array[rank * per:(rank + 1) * per]


def largest_difference(a, b):
    return max(float(np.abs(p.data - q.data).max()) for p, q in zip(a.parameters(), b.parameters()))


def check_ddp_training(make_optimizer, name, bucket_cap_mb=25):
    rank, size = distributed.rank(), distributed.world_size()
    model = nn.DistributedDataParallel(mlp(seed=rank), bucket_cap_mb=bucket_cap_mb)   # differs per rank
    reference = mlp(seed=99)
    reference.load_state_dict(model.state_dict())       # rank 0's initial parameters, after the broadcast
    everyone = distributed.all_reduce(model.module.state_dict(), op="max")
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in everyone.items()), "broadcast at construction"
    opt, ref_opt = make_optimizer(model.parameters()), make_optimizer(reference.parameters())
    for step in range(STEPS):
        x, y = data(step)
        F.cross_entropy(model(shard(x, rank, size)), shard(y, rank, size)).backward()
        opt.step()
        opt.zero_grad()
        F.cross_entropy(reference(x), y).backward()
        ref_opt.step()
        ref_opt.zero_grad()
    difference = largest_difference(model, reference)
    assert difference < TOL, f"{name}: data-parallel and single-process parameters differ by {difference}"
    moved = max(float(np.abs(p.data - q).max()) for p, q in zip(reference.parameters(),
                                                                 mlp(seed=0).state_dict().values()))
    assert moved > 1e-3, f"{name}: training did not move the parameters"
    log(f"OK {name}: {STEPS} steps, largest difference {difference:.1e}, {len(model.buckets)} bucket(s)")


def check_functional():
    rank, size = distributed.rank(), distributed.world_size()
    model = mlp(seed=5)
    params = {k: v.copy() for k, v in model.state_dict().items()}
    distributed.broadcast(params)
    reference = {k: v.copy() for k, v in params.items()}

    def loss(params, x, y):
        h = (x.mm_t(params["0.weight"]) + params["0.bias"]).tanh()
        h = (h.mm_t(params["2.weight"]) + params["2.bias"]).tanh()
        return F.cross_entropy(h.mm_t(params["4.weight"]) + params["4.bias"], y)

    step_fn = neuronika.value_and_grad(loss)
    for step in range(STEPS):
        x, y = data(step)
        value, grads = step_fn(params, shard(x, rank, size), shard(y, rank, size))
        grads = distributed.average_gradients(grads)
        value = distributed.all_reduce(float(value), op="mean")
        ref_value, ref_grads = step_fn(reference, x, y)
        assert abs(value - float(ref_value)) < TOL, "the mean of the shard losses is the global loss"
        for k in params:
            params[k] -= 0.5 * grads[k]
            reference[k] -= 0.5 * ref_grads[k]
    difference = max(float(np.abs(params[k] - reference[k]).max()) for k in params)
    assert difference < TOL, f"functional: parameters differ by {difference}"
    log(f"OK functional value_and_grad + average_gradients: largest difference {difference:.1e}")


def check_no_sync():
    rank, size = distributed.rank(), distributed.world_size()
    model = nn.DistributedDataParallel(mlp(seed=rank))
    reference = mlp(seed=99)
    reference.load_state_dict(model.state_dict())
    opt = optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    ref_opt = optim.SGD(reference.parameters(), lr=0.3, momentum=0.9)
    micro = 2
    for step in range(5):
        x, y = data(step)
        xs, ys = shard(x, rank, size), shard(y, rank, size)
        per = len(xs) // micro
        with model.no_sync():
            (F.cross_entropy(model(xs[:per]), ys[:per]) * (1 / micro)).backward()
        (F.cross_entropy(model(xs[per:]), ys[per:]) * (1 / micro)).backward()
        F.cross_entropy(reference(x), y).backward()
        grad_difference = max(float(np.abs(p.grad - q.grad).max())
                              for p, q in zip(model.parameters(), reference.parameters()))
        assert grad_difference < TOL, f"no_sync: accumulated gradient differs by {grad_difference}"
        opt.step()
        opt.zero_grad()
        ref_opt.step()
        ref_opt.zero_grad()
    difference = largest_difference(model, reference)
    assert difference < TOL, f"no_sync: parameters differ by {difference}"
    log(f"OK no_sync accumulation equals the big batch: {difference:.1e}")


def check_unused_parameter():
    rank = distributed.rank()

    class TwoHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(3, 4, dtype=np.float64)
            self.head = nn.Linear(4, 1, dtype=np.float64)
            self.other = nn.Linear(4, 1, dtype=np.float64)
            self.never = nn.Linear(4, 1, dtype=np.float64)

        def forward(self, x, use_other):
            h = self.body(x).tanh()
            return self.other(h) if use_other else self.head(h)

    model = nn.DistributedDataParallel(TwoHeads(), bucket_cap_mb=1e-4)
    x = np.full((2, 3), 0.5)
    model(x, use_other=(rank == 0)).sum().backward()
    grads = {name: p.grad.copy() for name, p in model.named_parameters()
             if p._node.grad is not None}
    assert "never.weight" not in grads, "a parameter no rank used keeps no gradient"
    everyone = distributed.all_reduce({k: v.copy() for k, v in grads.items()}, op="max")
    lowest = distributed.all_reduce({k: v.copy() for k, v in grads.items()}, op="min")
    assert all(np.array_equal(everyone[k], lowest[k]) for k in grads), "every rank has the same gradients"
    assert np.abs(grads["other.weight"]).max() > 0 and np.abs(grads["head.weight"]).max() > 0
    log("OK parameters unused on some ranks are averaged as zeros there")


def check_buffers():
    rank = distributed.rank()
    neuronika.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), nn.BatchNorm1d(4, dtype=np.float64))
    model[1].running_mean[:] = rank + 1.0
    model = nn.DistributedDataParallel(model)
    assert np.all(model.module[1].running_mean == 1.0), "buffers come from rank 0"
    model(np.random.default_rng(rank).normal(size=(4, 3)))        # each rank's own batch statistics
    model(np.ones((4, 3)))                                          # ... copied from rank 0 first
    state = model.state_dict()
    top = distributed.all_reduce({k: v.copy() for k, v in state.items() if "running" in k}, op="max")
    low = distributed.all_reduce({k: v.copy() for k, v in state.items() if "running" in k}, op="min")
    assert all(np.array_equal(top[k], low[k]) for k in top), "rank 0's statistics, then the same batch"
    model.eval()
    model(np.ones((2, 3)))                                          # no communication in eval mode
    log("OK buffers are broadcast at construction and before training forwards")


def check_collectives():
    rank, size = distributed.rank(), distributed.world_size()
    leaf = neuronika.from_ndarray(np.full(3, float(rank))).requires_grad()
    strided = np.arange(12.0).reshape(3, 4)[:, ::2] * (rank + 1)
    tree = {"a": np.array([rank, 2 * rank], dtype=np.int64), "leaf": leaf,
            "nested": [float(rank), (np.float32(rank), strided)]}
    before = tree["a"]
    out = distributed.all_reduce(tree, op="sum")
    total = sum(range(size))
    assert out is tree and out["a"] is before and out["a"].tolist() == [total, 2 * total]
    assert np.all(leaf.data == total) and out["nested"][0] == float(total)
    assert isinstance(out["nested"][1][0], np.float32) and out["nested"][1][0] == total
    assert np.array_equal(out["nested"][1][1], np.arange(12.0).reshape(3, 4)[:, ::2] * sum(range(1, size + 1)))
    flags = {"any": np.array([rank == 1, False]), "all": np.array([rank != 1, True])}
    distributed.all_reduce(flags["any"], op="max")
    distributed.all_reduce(flags["all"], op="min")
    assert flags["any"].tolist() == [True, False] and flags["all"].tolist() == [False, True]
    assert distributed.all_reduce(rank == 0, op="min") is False
    for op, expected in (("mean", (size - 1) / 2), ("max", size - 1), ("min", 0)):
        assert distributed.all_reduce(np.array([float(rank)]), op=op)[0] == expected, op
    value = distributed.broadcast({"x": np.array([rank + 1.0]), "n": rank}, root=size - 1)
    assert value["x"][0] == size and value["n"] == size - 1
    try:
        distributed.all_reduce({"w": np.zeros(2 + (rank == 1))})
    except ValueError as error:
        assert "tree['w']" in str(error) and "rank 1" in str(error), error
    else:
        raise AssertionError("all_reduce of different shapes did not raise")
    distributed.barrier()
    log("OK all_reduce (sum, mean, max, min), broadcast, shape check")


def check_sampler():
    size = distributed.world_size()
    for n in (1, 7, 12, 13, 30):
        for drop_last in (False, True):
            sampler = DistributedSampler(range(n), drop_last=drop_last, seed=3)
            orders = []
            for epoch in (0, 1):
                sampler.set_epoch(epoch)
                shards = distributed._get().allgather_object(list(sampler))
                assert len({len(s) for s in shards}) == 1, "equal shard lengths"
                flat = [i for s in shards for i in s]
                if drop_last:
                    assert len(set(flat)) == len(flat) == n - n % size
                else:
                    assert set(flat) == set(range(n)) and len(flat) == -(-n // size) * size
                orders.append(flat)
            if n >= 7:
                assert orders[0] != orders[1], "a new epoch takes a new permutation"
    loader = DataLoader(Dataset(np.arange(26.0).reshape(13, 2), np.arange(13)), batch_size=2,
                        sampler=DistributedSampler(range(13), seed=1))
    labels = [int(v) for _, y in loader for v in y]
    everyone = distributed._get().allgather_object(labels)
    per_rank = -(-13 // size)
    assert len(loader) == -(-per_rank // 2) and set(sum(everyone, [])) == set(range(13))
    log("OK DistributedSampler shards are disjoint, complete, consistent across ranks")


def check_save_and_load(directory):
    model = nn.DistributedDataParallel(mlp(seed=distributed.rank()))
    path = distributed.save_on_main(f"{directory}/model", model)
    state = nn.load(path)
    other = mlp(seed=42)
    other.load_state_dict(state)
    assert largest_difference(other, model) == 0.0
    log("OK save_on_main (rank 0 writes atomically), nn.load on every rank")


def check_model_mismatch():
    rank = distributed.rank()
    try:
        nn.DistributedDataParallel(mlp(seed=0, hidden=8 if rank != 1 else 9))
    except ValueError as error:              # ShapeError is a ValueError
        message = str(error)
        assert "0.weight" in message and "(8, 5)" in message and "(9, 5)" in message, message
        log(f"OK mismatch raised on every rank: {message}")
    else:
        raise AssertionError("a parameter-shape mismatch across ranks did not raise")


def main():
    distributed.init()
    assert distributed.is_initialized() and distributed.world_size() > 1
    check_collectives()
    check_ddp_training(lambda p: optim.SGD(p, lr=0.5, momentum=0.9), "DDP SGD")
    check_ddp_training(lambda p: optim.Adam(p, lr=0.01), "DDP Adam")
    check_ddp_training(lambda p: optim.Adam(p, lr=0.01), "DDP Adam, one bucket per parameter",
                       bucket_cap_mb=1e-4)
    check_functional()
    check_no_sync()
    check_unused_parameter()
    check_buffers()
    check_sampler()
    check_save_and_load(sys.argv[1])
    check_model_mismatch()
    distributed.barrier()
    log("ALL-OK")


if __name__ == "__main__":
    main()
