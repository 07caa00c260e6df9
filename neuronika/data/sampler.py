"""Samplers: the order in which a DataLoader visits a dataset's rows.

``DistributedSampler`` gives each process of a data-parallel run its own shard of every
epoch, with PyTorch's semantics:

>>> from neuronika.data import DistributedSampler
>>> shards = [list(DistributedSampler(range(10), num_replicas=3, rank=r, shuffle=False))
...           for r in range(3)]
>>> shards                                     # 10 rows padded to 12 by repeating rows 0 and 1
[[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]
"""
from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from .. import distributed

__all__ = ["DistributedSampler"]


def _int(name, value, low):
    if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
        raise ValueError(f"DistributedSampler: {name} must be an int >= {low}, got {value!r}")
    return int(value)


class DistributedSampler:
    """The indices of rank ``rank``'s shard of ``dataset`` (anything with a length), one
    of ``num_replicas`` (by default the process's rank and the world size of
    ``neuronika.distributed``).

    Each epoch takes the dataset's indices (permuted by ``default_rng([seed, epoch])`` when
    ``shuffle``: the same permutation on every rank, a new one each epoch), makes their
    number a multiple of ``num_replicas`` (repeating indices from the start, or with
    ``drop_last`` dropping the tail), and gives rank ``r`` every ``num_replicas``-th from
    ``r``. So the shards are disjoint (but for the padding), cover the dataset, and have
    equal lengths: ``len(sampler)``. Call ``set_epoch(epoch)`` before each epoch, on every
    rank, for a new order.

    >>> samplers = [DistributedSampler(range(8), num_replicas=2, rank=r, seed=0) for r in (0, 1)]
    >>> for sampler in samplers:
    ...     sampler.set_epoch(1)
    >>> len(samplers[0]), sorted(list(samplers[0]) + list(samplers[1]))
    (4, [0, 1, 2, 3, 4, 5, 6, 7])
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False):
        try:
            n = len(dataset)
        except TypeError:
            raise TypeError(f"DistributedSampler: dataset must have a length (a Dataset, an array, a "
                            f"range), got {type(dataset).__name__}") from None
        if num_replicas is None:
            num_replicas = distributed.world_size()
        num_replicas = _int("num_replicas", num_replicas, 1)
        if rank is None:
            rank = distributed.rank()
        rank = _int("rank", rank, 0)
        if rank >= num_replicas:
            raise ValueError(f"DistributedSampler: rank {rank} is out of range for num_replicas="
                             f"{num_replicas} (ranks are 0 to {num_replicas - 1})")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = bool(shuffle)
        self.seed = _int("seed", seed, 0)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._rows = n
        if drop_last:
            self.num_samples = n // num_replicas
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Use epoch ``epoch``'s permutation from now on (the same number on every rank)."""
        self.epoch = _int("epoch", epoch, 0)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an array."""
        n = self._rows
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle
                 else np.arange(n))
        if self.total_size > n:
            order = np.resize(order, self.total_size)    # repeats from the start, as often as needed
        else:
            order = order[:self.total_size]
        return order[self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler({self._rows} rows, rank {self.rank} of {self.num_replicas}, "
                f"shuffle={self.shuffle}, seed={self.seed}, drop_last={self.drop_last}, "
                f"{self.num_samples} per rank)")
