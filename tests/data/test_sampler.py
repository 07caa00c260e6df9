"""DistributedSampler (PyTorch's semantics), and DataLoader(sampler=...), in one process with
explicit num_replicas and rank."""
import numpy as np
import pytest

from neuronika.data import DataLoader, Dataset, DistributedSampler


def shards(n, replicas, **options):
    return [list(DistributedSampler(range(n), num_replicas=replicas, rank=r, **options))
            for r in range(replicas)]


@pytest.mark.parametrize("n", [0, 1, 2, 5, 12, 13, 31])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_are_disjoint_and_complete(n, replicas, shuffle):
    padded = shards(n, replicas, shuffle=shuffle, seed=7)
    per = -(-n // replicas)
    assert all(len(s) == per for s in padded)
    flat = [i for s in padded for i in s]
    assert set(flat) == set(range(n)) and len(flat) == per * replicas
    # padding repeats indices from the start of the epoch's order, no more than needed
    assert len(flat) - len(set(flat)) == per * replicas - n
    dropped = shards(n, replicas, shuffle=shuffle, seed=7, drop_last=True)
    assert all(len(s) == n // replicas for s in dropped)
    flat = [i for s in dropped for i in s]
    assert len(set(flat)) == len(flat) == n - n % replicas


def test_pytorch_semantics_without_shuffle():
    assert shards(10, 3, shuffle=False) == [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
    assert shards(10, 3, shuffle=False, drop_last=True) == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert shards(2, 4, shuffle=False) == [[0], [1], [0], [1]]         # padding wraps around


def test_epochs_reshuffle_the_same_way_on_every_rank():
    samplers = [DistributedSampler(range(20), num_replicas=2, rank=r, seed=3) for r in (0, 1)]
    orders = []
    for epoch in range(3):
        for s in samplers:
            s.set_epoch(epoch)
        order = [list(s) for s in samplers]
        assert sorted(order[0] + order[1]) == list(range(20))        # the same permutation on both
        orders.append(order)
    assert orders[0] != orders[1] != orders[2]
    again = DistributedSampler(range(20), num_replicas=2, rank=0, seed=3)
    again.set_epoch(1)
    assert list(again) == orders[1][0]                               # reproducible
    other_seed = DistributedSampler(range(20), num_replicas=2, rank=0, seed=4)
    assert list(other_seed) != orders[0][0]


def test_invalid_arguments_name_the_problem():
    with pytest.raises(ValueError, match="rank 2 is out of range for num_replicas=2"):
        DistributedSampler(range(4), num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be an int >= 1, got 0"):
        DistributedSampler(range(4), num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        DistributedSampler(range(4), num_replicas=1, rank=0, seed=1.5)
    with pytest.raises(ValueError, match="epoch must be an int >= 0"):
        DistributedSampler(range(4), num_replicas=1, rank=0).set_epoch(-1)
    with pytest.raises(TypeError, match="dataset must have a length"):
        DistributedSampler(iter(range(4)), num_replicas=1, rank=0)
    assert "rank 1 of 2" in repr(DistributedSampler(range(4), num_replicas=2, rank=1))


def data(n=13):
    return Dataset(np.arange(2.0 * n).reshape(n, 2), np.arange(n))


def test_loader_batches_the_samplers_indices():
    sampler = DistributedSampler(data(), num_replicas=3, rank=1, shuffle=False)
    loader = DataLoader(data(), batch_size=2, sampler=sampler)
    assert len(loader) == 3                                  # 5 indices in batches of 2
    assert [y.tolist() for _, y in loader] == [[1, 4], [7, 10], [0]]
    assert len(DataLoader(data(), batch_size=2, sampler=sampler, drop_last=True)) == 2
    assert "sampler=DistributedSampler" in repr(loader)
    assert [y.tolist() for _, y in DataLoader(data(3), sampler=[2, 0])] == [[2], [0]]


def test_loader_refuses_a_sampler_with_shuffle_and_bad_samplers():
    sampler = DistributedSampler(data(), num_replicas=2, rank=0)
    with pytest.raises(ValueError, match="sampler and shuffle=True exclude each other"):
        DataLoader(data(), batch_size=2, shuffle=True, sampler=sampler)
    with pytest.raises(TypeError, match="sampler must be an iterable of row indices with a length"):
        DataLoader(data(), sampler=5)
    with pytest.raises(IndexError, match="the sampler gave index 13, out of range for a dataset of 13 rows"):
        list(DataLoader(data(), sampler=[0, 13]))
