"""Datasets, splits, loaders and samplers.

>>> import numpy as np
>>> from neuronika.data import DataLoader, Dataset
>>> data = Dataset(np.arange(10.0).reshape(5, 2), np.arange(5))
>>> [labels.tolist() for _, labels in DataLoader(data, batch_size=2)]
[[0, 1], [2, 3], [4]]
"""
from .dataset import Dataset, from_csv, train_test_split
from .loader import DataLoader
from .sampler import DistributedSampler

__all__ = ["Dataset", "DataLoader", "DistributedSampler", "from_csv", "train_test_split"]
