"""Mini-batches over a Dataset.

>>> import numpy as np
>>> from neuronika.data.dataset import Dataset
>>> from neuronika.data.loader import DataLoader
>>> loader = DataLoader(Dataset(np.arange(10.0).reshape(5, 2), np.arange(5)), batch_size=2)
>>> len(loader), [labels.tolist() for _, labels in loader]
(3, [[0, 1], [2, 3], [4]])
"""
from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from .. import random as _random
from ..creation import from_ndarray
from ..variable import Var
from .dataset import Dataset

__all__ = ["DataLoader"]


def _load_tqdm():
    try:
        from tqdm import tqdm
    except ImportError as error:
        raise ImportError("DataLoader: progress=True needs tqdm, which is not installed; "
                          "run `pip install tqdm`, or pass progress=False") from error
    return tqdm


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` rows.

    Each batch is ``(records, labels)``, or ``records`` alone when the dataset has no
    labels: NumPy arrays (copies, so changing a batch leaves the dataset alone), or
    neuronika ``Var`` leaves with ``as_vars=True``. ``len(loader)`` is the number of
    batches; with ``drop_last=True`` a last, smaller batch is left out.

    With ``shuffle=True`` every epoch (every ``iter(loader)``) takes a fresh permutation.
    Given a ``seed``, epoch ``e`` is permuted by ``default_rng([seed, e])``: the same in
    every run, and different from epoch to epoch. Without a seed, neuronika's generator
    is used (reproducible under ``manual_seed``).

    ``sampler`` (an iterable of row indices with a length, such as a ``DistributedSampler``)
    sets the order instead: each epoch visits the rows it yields, in batches, and
    ``len(loader)`` counts its indices. It excludes ``shuffle=True``.

    ``progress=True`` shows a tqdm progress bar (batches done, batches per second and
    whatever the loop posts with ``loader.set_postfix(loss=...)``). tqdm is an optional
    dependency: if it is not installed, the constructor raises ImportError saying
    ``pip install tqdm``. ``set_postfix`` is a no-op without a bar.
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None,
                 as_vars=False, progress=False, sampler=None):
        if not isinstance(dataset, Dataset):
            raise TypeError(f"DataLoader: expects a neuronika.data Dataset, got "
                            f"{type(dataset).__name__}; wrap arrays with Dataset(records, labels)")
        if not isinstance(batch_size, Integral) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        if seed is not None and not shuffle:
            raise ValueError(f"DataLoader: seed={seed!r} is given but shuffle=False; pass "
                             f"shuffle=True to shuffle, or drop the seed")
        if sampler is not None:
            if shuffle:
                raise ValueError("DataLoader: sampler and shuffle=True exclude each other: the sampler "
                                 "sets the order (DistributedSampler shuffles with its own shuffle=True)")
            try:
                len(sampler)
                iter(sampler)
            except TypeError:
                raise TypeError(f"DataLoader: sampler must be an iterable of row indices with a length "
                                f"(a DistributedSampler, a list), got {type(sampler).__name__}") from None
        self.sampler = sampler
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.as_vars = bool(as_vars)
        self.progress = bool(progress)
        self._tqdm = _load_tqdm() if self.progress else None
        self._bar = None
        self.epoch = 0          # the epoch the next iteration runs

    def __len__(self) -> int:
        n = len(self.dataset) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _order(self, epoch):
        n = len(self.dataset)
        if self.sampler is not None:
            order = np.fromiter(self.sampler, dtype=np.int64, count=len(self.sampler))
            if order.size and (order.min() < -n or order.max() >= n):
                bad = order[(order < -n) | (order >= n)][0]
                raise IndexError(f"DataLoader: the sampler gave index {bad}, out of range for a dataset "
                                 f"of {n} rows")
            return order
        if not self.shuffle:
            return np.arange(n)
        if self.seed is None:
            return _random.generator().permutation(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def _batch(self, index):
        records = self.dataset.records[index]
        labels = None if self.dataset.labels is None else self.dataset.labels[index]
        if self.as_vars:
            records = from_ndarray(records)
            labels = None if labels is None else from_ndarray(labels)
        return records if labels is None else (records, labels)

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        order = self._order(epoch)
        batches = len(self)
        bar = None
        if self._tqdm is not None:
            bar = self._tqdm(total=batches, unit="batch", desc=f"epoch {epoch}")
        self._bar = bar
        try:
            for b in range(batches):
                yield self._batch(order[b * self.batch_size:(b + 1) * self.batch_size])
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if self._bar is bar:
                self._bar = None

    def set_postfix(self, **values) -> None:
        """Show ``values`` (e.g. ``loss=...``) after the progress bar; a no-op without one.
        Variables and one-element arrays are shown as plain numbers."""
        if self._bar is None:
            return
        shown = {}
        for key, value in values.items():
            if isinstance(value, Var):
                value = value.data
            if isinstance(value, np.ndarray) and value.size == 1:
                value = value.item()
            if isinstance(value, np.generic):
                value = value.item()
            shown[key] = value
        self._bar.set_postfix(**shown)

    def __repr__(self):
        sampler = "" if self.sampler is None else f", sampler={type(self.sampler).__name__}"
        return (f"DataLoader({len(self.dataset)} rows, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}{sampler}, drop_last={self.drop_last}, {len(self)} batches)")
