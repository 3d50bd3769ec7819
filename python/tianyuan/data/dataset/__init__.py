"""Datasets (MegEngine's ``megengine.data.dataset``)."""
from .meta_dataset import Dataset, StreamDataset, ArrayDataset, ConcatDataset  # noqa: F401
from .vision import (MNIST, FashionMNIST, CIFAR10, CIFAR100, ImageFolder,  # noqa: F401
                     read_idx, read_image)
