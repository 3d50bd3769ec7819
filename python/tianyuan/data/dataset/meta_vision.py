"""The base of the detection and segmentation datasets, and what they share: the ``order``
check, bounded JSON reading, and image / label-map decoding.

A sample is a tuple whose fields follow ``order`` (MegEngine's convention): ``"image"`` (HxWx3
uint8, BGR), ``"boxes"`` (Nx4 float32, x0 y0 x1 y1 in pixels), ``"boxes_category"`` (N int32,
1-based class index), ``"keypoints"`` (NxKx3 float32: x, y, visibility), ``"polygons"`` (per
instance a list of Mx2 float32 arrays), ``"mask"`` (HxWx1 uint8 class map, 255 = ignore) and
``"info"`` ([height, width, file name]).
"""
import collections.abc
import json
import os

import numpy as np

from . import _png
from .meta_dataset import Dataset
from .vision import _MAX_FILE_BYTES, read_image

__all__ = ["VisionDataset", "UnsupportedFieldError"]


class UnsupportedFieldError(ValueError, NotImplementedError):
    """An ``order`` names a field the dataset or transform does not provide.

    A ``ValueError`` (bad argument); also a ``NotImplementedError``, the type MegEngine raises
    here, so code written against MegEngine catches it too."""


def check_order(order, supported, owner):
    """``order`` as a tuple after checking it is a sequence of field names from ``supported``
    (``supported=None`` accepts any name)."""
    if order is None:
        return ("image",)
    if isinstance(order, (str, bytes)) or not isinstance(order, collections.abc.Sequence):
        raise ValueError(f"{owner}: order must be a sequence of field names, got {order!r}")
    for k in order:
        if not isinstance(k, str):
            raise ValueError(f"{owner}: order entries must be strings, got {k!r}")
        if supported is not None and k not in supported:
            raise UnsupportedFieldError(f"{owner}: unsupported field {k!r} in order (supported: "
                                        f"{', '.join(supported)})")
    return tuple(order)


class VisionDataset(Dataset):
    """Base class of the vision datasets whose samples are tuples of fields named by
    ``order``. ``root`` is expanded (``~``); ``supported_order`` lists the fields a subclass
    can give (an unknown one raises :class:`UnsupportedFieldError`)."""

    _repr_indent = 4

    def __init__(self, root, *, order=None, supported_order=None):
        if isinstance(root, (str, bytes, os.PathLike)):
            root = os.path.expanduser(os.fspath(root))
        self.root = root
        self.order = check_order(order, supported_order, type(self).__name__)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __repr__(self):
        pad = " " * self._repr_indent
        lines = [f"Dataset {type(self).__name__}", f"{pad}Number of samples: {len(self)}",
                 f"{pad}Root location: {self.root}", f"{pad}Order: {self.order}"]
        return "\n".join(lines)


def require_dir(path, owner, what="root"):
    if not isinstance(path, (str, os.PathLike)) or not os.path.isdir(path):
        raise FileNotFoundError(f"{owner}: {what} directory {path!r} does not exist")


def load_json(path, owner):
    """A JSON annotation file, read with a size cap; errors name the file."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{owner}: annotation file {path!r} does not exist")
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise ValueError(f"{path}: annotation file larger than {_MAX_FILE_BYTES} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{path}: not a valid JSON annotation file ({e})") from None


def read_color(path):
    """An image as HxWx3 uint8 BGR (grey images are repeated to three channels), like
    MegEngine's ``cv2.imread(path, cv2.IMREAD_COLOR)``."""
    img = read_image(path)
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ValueError(f"{path}: expected an 8-bit image, got dtype {img.dtype}")
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    elif img.shape[2] != 3:
        raise ValueError(f"{path}: expected 1 or 3 channels, got {img.shape[2]}")
    return img


def read_label_map(path):
    """A label map: HxWx1 values for grey or palette PNGs (the palette index, not its colour),
    HxWx3 BGR for colour files (the caller maps colours to classes)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"label map {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if head == _png.SIGNATURE:
        try:
            from PIL import Image
        except ImportError:
            with open(path, "rb") as f:
                data = f.read(_MAX_FILE_BYTES + 1)
            img = _png.decode_png(data, path, palette_indices=True)
            return img[:, :, :1] if img.shape[2] in (1, 2) else img[:, :, 2::-1].copy()
        try:
            with Image.open(path) as im:
                if im.mode in ("P", "L"):
                    return np.asarray(im)[:, :, None]
        except Exception as e:  # noqa: BLE001 (a corrupt file is a format error)
            raise ValueError(f"{path}: cannot decode label map ({e})") from None
    img = read_image(path)
    return img if img.shape[2] in (1, 3) else img[:, :, :3]


def find_image(directory, stem, exts=(".jpg", ".jpeg", ".png", ".ppm", ".npy")):
    """``directory/stem.<ext>`` for the first extension that exists (the first one if none)."""
    for ext in exts:
        p = os.path.join(directory, stem + ext)
        if os.path.exists(p):
            return p
    return os.path.join(directory, stem + exts[0])
