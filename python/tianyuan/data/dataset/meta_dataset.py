"""Dataset base classes (MegEngine's ``megengine.data.dataset.meta_dataset``)."""
import bisect


class Dataset:
    """A map-style dataset: ``__getitem__(index)`` returns one sample (usually a tuple of
    fields) and ``__len__`` the number of samples."""

    def __getitem__(self, index):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def __add__(self, other):
        return ConcatDataset([self, other])


class StreamDataset:
    """An iterable dataset: ``__iter__`` yields samples. Use with a :class:`StreamSampler`."""

    def __iter__(self):
        raise NotImplementedError

    def __getitem__(self, idx):
        raise TypeError("a StreamDataset has no random access; iterate it instead")

    def __len__(self):
        raise TypeError("a StreamDataset has no length")


class ArrayDataset(Dataset):
    """``ArrayDataset(*arrays)``: sample ``i`` is ``tuple(a[i] for a in arrays)``; all arrays
    must have the same length.

    >>> import numpy as np
    >>> ds = ArrayDataset(np.arange(3), np.array([10, 20, 30]))
    >>> len(ds), ds[1]
    (3, (np.int64(1), np.int64(20)))
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset needs at least one array")
        n = len(arrays[0])
        for i, a in enumerate(arrays):
            if len(a) != n:
                raise ValueError(f"ArrayDataset: array {i} has length {len(a)}, array 0 has {n}")
        self.arrays = arrays

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)

    def __len__(self):
        return len(self.arrays[0])


class ConcatDataset(Dataset):
    """The concatenation of several map-style datasets."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset needs at least one dataset")
        for d in self.datasets:
            if isinstance(d, StreamDataset):
                raise TypeError("ConcatDataset does not support StreamDataset")
        self.cumulative_sizes = []
        total = 0
        for d in self.datasets:
            total += len(d)
            self.cumulative_sizes.append(total)

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        n = len(self)
        if idx < 0:
            idx += n
        if not 0 <= idx < n:
            raise IndexError(f"index {idx} out of range for ConcatDataset of length {n}")
        d = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[d - 1] if d else 0
        return self.datasets[d][idx - start]
