"""Datasets (MegEngine's ``megengine.data.dataset``)."""
from .meta_dataset import Dataset, StreamDataset, ArrayDataset, ConcatDataset  # noqa: F401
from .vision import (MNIST, FashionMNIST, CIFAR10, CIFAR100, ImageFolder,  # noqa: F401
                     read_idx, read_image)
from .meta_vision import VisionDataset, UnsupportedFieldError  # noqa: F401
from .coco import COCO, Objects365  # noqa: F401
from .voc import PascalVOC  # noqa: F401
from .cityscapes import Cityscapes  # noqa: F401
from .imagenet import ImageNet  # noqa: F401
