"""Data loading (MegEngine's ``megengine.data``): datasets, samplers, transforms, DataLoader.

>>> import numpy as np
>>> from tianyuan.data import ArrayDataset, SequentialSampler, DataLoader
>>> ds = ArrayDataset(np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5))
>>> x, y = next(iter(DataLoader(ds, SequentialSampler(ds, batch_size=2))))
>>> x.shape, y.tolist()
((2, 2), [0, 1])
"""
from . import dataset, transform  # noqa: F401
from .collator import Collator  # noqa: F401
from .dataloader import DataLoader, get_worker_info, WorkerInfo  # noqa: F401
from .dataset import Dataset, StreamDataset, ArrayDataset, ConcatDataset  # noqa: F401
from .sampler import (Sampler, MapSampler, SequentialSampler, RandomSampler,  # noqa: F401
                      ReplacementSampler, StreamSampler, Infinite)
