import sys
import types

import numpy as np
import pytest

import neuronika
from neuronika.data.dataset import Dataset
from neuronika.data.loader import DataLoader


def make(n=10, labels=True):
    records = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return Dataset(records, np.arange(n) if labels else None)


def epoch_labels(loader):
    return np.concatenate([labels for _, labels in loader]).tolist()


def test_order_without_shuffle():
    batches = list(DataLoader(make(5), batch_size=2))
    assert [labels.tolist() for _, labels in batches] == [[0, 1], [2, 3], [4]]
    records, _ = batches[0]
    assert isinstance(records, np.ndarray) and records.shape == (2, 2)
    np.testing.assert_array_equal(records, [[0, 1], [2, 3]])


def test_batches_are_copies():
    data = make(4)
    records, _ = next(iter(DataLoader(data, batch_size=2)))
    records[:] = -1
    assert data.records.min() == 0


def test_len_and_drop_last():
    assert len(DataLoader(make(10), batch_size=3)) == 4
    loader = DataLoader(make(10), batch_size=3, drop_last=True)
    assert len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3 and all(len(labels) == 3 for _, labels in batches)
    assert len(DataLoader(make(9), batch_size=3, drop_last=True)) == 3
    assert len(DataLoader(make(9), batch_size=3)) == 3
    assert len(DataLoader(make(2), batch_size=3, drop_last=True)) == 0
    assert list(DataLoader(make(2), batch_size=3, drop_last=True)) == []


def test_no_labels_yields_records():
    batches = list(DataLoader(make(3, labels=False), batch_size=2))
    assert [b.shape for b in batches] == [(2, 2), (1, 2)]


def test_shuffle_seeded_reproducible_and_new_per_epoch():
    a = DataLoader(make(20), batch_size=4, shuffle=True, seed=7)
    b = DataLoader(make(20), batch_size=4, shuffle=True, seed=7)
    a0, a1 = epoch_labels(a), epoch_labels(a)
    b0, b1 = epoch_labels(b), epoch_labels(b)
    assert a0 == b0 and a1 == b1
    assert a0 != a1
    assert sorted(a0) == sorted(a1) == list(range(20))
    assert a0 != list(range(20))
    c = DataLoader(make(20), batch_size=4, shuffle=True, seed=8)
    assert epoch_labels(c) != a0


def test_shuffle_keeps_records_and_labels_paired():
    for records, labels in DataLoader(make(12), batch_size=5, shuffle=True, seed=0):
        np.testing.assert_array_equal(records[:, 0], 2 * labels)


def test_shuffle_without_seed_follows_manual_seed():
    neuronika.manual_seed(0)
    a = epoch_labels(DataLoader(make(20), batch_size=3, shuffle=True))
    neuronika.manual_seed(0)
    b = epoch_labels(DataLoader(make(20), batch_size=3, shuffle=True))
    assert a == b and sorted(a) == list(range(20))


def test_as_vars():
    records, labels = next(iter(DataLoader(make(4), batch_size=2, as_vars=True)))
    assert isinstance(records, neuronika.Var) and isinstance(labels, neuronika.Var)
    assert records.shape == (2, 2) and records.dtype == np.float32
    assert labels.dtype.kind == "i"
    np.testing.assert_array_equal(labels.data, [0, 1])
    only = next(iter(DataLoader(make(4, labels=False), batch_size=3, as_vars=True)))
    assert isinstance(only, neuronika.Var) and only.shape == (3, 2)


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(make(4), batch_size=0)
    with pytest.raises(TypeError, match="Dataset"):
        DataLoader(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="shuffle=False"):
        DataLoader(make(4), seed=1)


def test_set_postfix_without_progress_is_noop():
    loader = DataLoader(make(4), batch_size=2)
    for _ in loader:
        loader.set_postfix(loss=0.5)


def test_progress_without_tqdm_raises(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)     # makes `import tqdm` fail
    with pytest.raises(ImportError, match="pip install tqdm"):
        DataLoader(make(4), progress=True)


class FakeBar:
    instances = []

    def __init__(self, total=None, unit=None, desc=None):
        self.total, self.unit, self.desc = total, unit, desc
        self.updates, self.postfixes, self.closed = 0, [], False
        FakeBar.instances.append(self)

    def update(self, n=1):
        self.updates += n

    def set_postfix(self, **values):
        self.postfixes.append(values)

    def close(self):
        self.closed = True


def test_progress_with_tqdm(monkeypatch):
    module = types.ModuleType("tqdm")
    module.tqdm = FakeBar
    monkeypatch.setitem(sys.modules, "tqdm", module)
    FakeBar.instances.clear()
    loader = DataLoader(make(5), batch_size=2, progress=True)
    for records, _ in loader:
        loss = neuronika.from_ndarray(records).sum()
        loader.set_postfix(loss=loss)
    bar, = FakeBar.instances
    assert bar.total == 3 and bar.unit == "batch"
    assert bar.updates == 3 and bar.closed
    assert len(bar.postfixes) == 3
    assert all(isinstance(p["loss"], float) for p in bar.postfixes)
    assert bar.postfixes[0]["loss"] == 6.0
    loader.set_postfix(loss=1.0)      # after the epoch: no bar, no-op
    assert len(bar.postfixes) == 3
