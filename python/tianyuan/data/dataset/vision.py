"""Vision datasets read from local files: MNIST, FashionMNIST, CIFAR10/100, ImageFolder.

No dataset is ever downloaded (``download=True`` only checks that the files are there and
explains how to get them). Malformed files raise ``ValueError`` naming the file and the problem.
Samples are tuples ``(image, label...)`` with HWC uint8 images (colour images in BGR order, like
MegEngine's OpenCV-based datasets).
"""
import gzip
import io
import os
import pickle

import numpy as np

from . import _png
from .meta_dataset import Dataset

__all__ = ["MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "ImageFolder", "read_idx",
           "read_image"]

_MAX_FILE_BYTES = 1 << 31   # cap on the decompressed size of one dataset file
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _read_file(path):
    """Bytes of ``path``, gunzipped if it is gzip data (bounded size)."""
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head == b"\x1f\x8b":
            try:
                with gzip.GzipFile(fileobj=f) as g:
                    data = g.read(_MAX_FILE_BYTES + 1)
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise ValueError(f"{path}: corrupt gzip data ({e})") from None
        else:
            data = f.read(_MAX_FILE_BYTES + 1)
    if len(data) > _MAX_FILE_BYTES:
        raise ValueError(f"{path}: larger than {_MAX_FILE_BYTES} bytes")
    return data


def read_idx(path, ndim=None):
    """Reads an IDX file (the MNIST format; gzipped or not) into a numpy array.

    Checks the magic (two zero bytes, a known type code, the dimension count), that the data
    size matches the dimensions exactly, and ``ndim`` if given."""
    data = _read_file(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    if data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: bad IDX magic {data[:4].hex()} (not an IDX file)")
    dt, nd = _IDX_DTYPES[data[2]], data[3]
    if ndim is not None and nd != ndim:
        raise ValueError(f"{path}: IDX file has {nd} dimensions, expected {ndim}")
    hdr = 4 + 4 * nd
    if len(data) < hdr:
        raise ValueError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    count = 1
    for d in dims:
        count *= d
    need = hdr + count * dt.itemsize
    if len(data) < need:
        raise ValueError(f"{path}: truncated IDX file: dimensions {dims} need {need} bytes, "
                         f"file has {len(data)}")
    if len(data) > need:
        raise ValueError(f"{path}: IDX file has {len(data) - need} unexpected trailing bytes "
                         f"after dimensions {dims}")
    return np.frombuffer(data, dtype=dt, count=count, offset=hdr).reshape(dims) \
        .astype(dt.newbyteorder("="))


def _find(root, name):
    for cand in (name, name + ".gz"):
        p = os.path.join(root, cand)
        if os.path.exists(p):
            return p
    return None


class _IDXImageDataset(Dataset):
    _how_to_get = ""
    _default_root = None
    _num_classes = 10

    def __init__(self, root=None, train=True, download=False, timeout=500):
        del timeout
        root = root if root is not None else self._default_root
        if root is None:
            raise ValueError(f"{type(self).__name__} needs a root directory")
        self.root = root
        self.train = train
        split = "train" if train else "t10k"
        names = (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-ubyte")
        paths = [_find(root, n) for n in names]
        missing = [n for n, p in zip(names, paths) if p is None]
        if missing:
            msg = (f"{type(self).__name__}: {', '.join(missing)} (or .gz) not found in {root!r}. "
                   "tianyuan does no network download; " + self._how_to_get)
            raise RuntimeError(msg) if download else FileNotFoundError(msg)
        images = read_idx(paths[0], ndim=3)
        labels = read_idx(paths[1], ndim=1)
        if images.dtype != np.uint8 or labels.dtype != np.uint8:
            raise ValueError(f"{paths[0]}: expected uint8 IDX data")
        if len(images) != len(labels):
            raise ValueError(f"{paths[1]}: count mismatch: {len(labels)} labels for "
                             f"{len(images)} images in {paths[0]}")
        if labels.size and labels.max() >= self._num_classes:
            raise ValueError(f"{paths[1]}: label {int(labels.max())} out of range "
                             f"[0, {self._num_classes})")
        self.images = images[:, :, :, None]
        self.labels = labels
        self.arrays = (self.images, self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])

    def __len__(self):
        return len(self.labels)


class MNIST(_IDXImageDataset):
    """MNIST from ``root`` holding ``train-images-idx3-ubyte[.gz]``,
    ``train-labels-idx1-ubyte[.gz]``, ``t10k-images-idx3-ubyte[.gz]`` and
    ``t10k-labels-idx1-ubyte[.gz]``. Samples: (28x28x1 uint8 image, int label)."""

    _how_to_get = ("download the four IDX files from http://yann.lecun.com/exdb/mnist/ (or a "
                   "mirror) into that directory")


class FashionMNIST(_IDXImageDataset):
    """Fashion-MNIST; the same file names and layout as MNIST. The default root is where the
    Debian/Ubuntu package ``dataset-fashion-mnist`` installs them."""

    _default_root = "/usr/share/datasets/fashion-mnist"
    _how_to_get = ("install them with `apt install dataset-fashion-mnist` (files go to "
                   "/usr/share/datasets/fashion-mnist) or copy the IDX files from "
                   "https://github.com/zalandoresearch/fashion-mnist into that directory")


# ------------------------------------------------------------------------------------- CIFAR
class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR python batches: only numpy array reconstruction (and
    ``_codecs.encode``, which protocol 2 uses for bytes) is allowed as a global; everything
    else (and therefore any code-running payload) is refused. The values a
    batch may hold are dicts, lists, str/bytes, numbers and numeric numpy arrays; the result is
    checked again after loading."""

    _allowed = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray",
                                                             "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"),
                ("_codecs", "encode")}  # protocol-2 pickles build bytes with it (harmless)

    def find_class(self, module, name):
        if (module, name) in self._allowed:
            import importlib
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _check_plain(obj, path, depth=0):
    if depth > 8:
        raise ValueError(f"{path}: nested too deeply")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path, depth + 1)
            _check_plain(v, path, depth + 1)
    elif isinstance(obj, list):
        if obj and not all(isinstance(x, (int, float, str, bytes)) for x in obj):
            for x in obj:
                _check_plain(x, path, depth + 1)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise ValueError(f"{path}: array of dtype {obj.dtype} is not allowed")
    elif not isinstance(obj, (int, float, str, bytes, type(None))):
        raise ValueError(f"{path}: value of type {type(obj).__name__} is not allowed")


def _load_cifar_batch(path):
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_FILE_BYTES + 1)
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except FileNotFoundError:
        raise
    except Exception as e:  # noqa: BLE001 (any failure of a hostile file is a format error)
        raise ValueError(f"{path}: not a valid CIFAR python batch ({type(e).__name__}: "
                         f"{e})") from None
    _check_plain(obj, path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: a CIFAR batch must be a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


class CIFAR10(Dataset):
    """CIFAR-10 from ``root`` (or ``root/cifar-10-batches-py``) holding the python-version
    batches ``data_batch_1``..``data_batch_5`` and ``test_batch``. Samples: (32x32x3 uint8 BGR
    image, int label).

    The python version of CIFAR is pickle data: it is read with a restricted unpickler that only
    lets numpy array reconstruction through, so a malicious file cannot run code.
    """

    _dir = "cifar-10-batches-py"
    _label_keys = ("labels",)
    _num_classes = (10,)

    def __init__(self, root=None, train=True, download=False, timeout=500):
        del timeout
        if root is None:
            raise ValueError(f"{type(self).__name__} needs a root directory")
        d = os.path.join(root, self._dir)
        d = d if os.path.isdir(d) else root
        files = self._files(train)
        missing = [f for f in files if not os.path.exists(os.path.join(d, f))]
        if missing:
            msg = (f"{type(self).__name__}: {', '.join(missing)} not found in {d!r}. tianyuan "
                   "does no network download; get the 'python version' archive from "
                   "https://www.cs.toronto.edu/~kriz/cifar.html and extract it under root")
            raise RuntimeError(msg) if download else FileNotFoundError(msg)
        images, labels = [], [[] for _ in self._label_keys]
        for fname in files:
            path = os.path.join(d, fname)
            b = _load_cifar_batch(path)
            data = b.get("data")
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
                    or data.shape[1] != 3072:
                raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072)")
            n = data.shape[0]
            for j, key in enumerate(self._label_keys):
                lab = b.get(key)
                if not isinstance(lab, (list, np.ndarray)):
                    raise ValueError(f"{path}: missing label list {key!r}")
                lab = np.asarray(lab)
                if lab.shape != (n,) or lab.dtype.kind not in "iu":
                    raise ValueError(f"{path}: count mismatch or bad type: {key!r} has shape "
                                     f"{lab.shape} for {n} images")
                if n and (lab.min() < 0 or lab.max() >= self._num_classes[j]):
                    raise ValueError(f"{path}: {key!r} out of range [0, "
                                     f"{self._num_classes[j]})")
                labels[j].append(lab.astype(np.int64))
            images.append(data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1)[:, :, :, ::-1])
        self.images = np.ascontiguousarray(np.concatenate(images))
        self.labels = [np.concatenate(x) for x in labels]
        self.arrays = (self.images, *self.labels)

    @staticmethod
    def _files(train):
        return [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]

    def __getitem__(self, index):
        return (self.images[index],) + tuple(int(lab[index]) for lab in self.labels)

    def __len__(self):
        return len(self.images)


class CIFAR100(CIFAR10):
    """CIFAR-100 from ``root`` (or ``root/cifar-100-python``) with the ``train`` and ``test``
    python batches. Samples: (32x32x3 uint8 BGR image, fine label, coarse label)."""

    _dir = "cifar-100-python"
    _label_keys = ("fine_labels", "coarse_labels")
    _num_classes = (100, 20)

    @staticmethod
    def _files(train):
        return ["train"] if train else ["test"]


# ------------------------------------------------------------------------------ ImageFolder
def _pnm_tokens(data, path, count):
    """Header tokens of a PNM file (skipping comments) and the offset after the header."""
    toks, i, n = [], 2, len(data)
    while len(toks) < count:
        while i < n and data[i:i + 1].isspace():
            i += 1
        if i < n and data[i:i + 1] == b"#":
            while i < n and data[i:i + 1] not in (b"\n", b"\r"):
                i += 1
            continue
        j = i
        while j < n and not data[j:j + 1].isspace() and data[j:j + 1] != b"#":
            j += 1
        if j == i:
            raise ValueError(f"{path}: truncated PNM header")
        try:
            toks.append(int(data[i:j]))
        except ValueError:
            raise ValueError(f"{path}: bad PNM header field {data[i:j][:20]!r}") from None
        i = j
    return toks, i + 1


def _read_pnm(data, path):
    kind = data[:2]
    if kind not in (b"P5", b"P6", b"P2", b"P3"):
        raise ValueError(f"{path}: not a binary or ASCII PGM/PPM file")
    (w, h, maxval), off = _pnm_tokens(data, path, 3)
    if not (w > 0 and h > 0 and 0 < maxval < 65536) or w * h > (1 << 28):
        raise ValueError(f"{path}: bad PNM size {w}x{h} or maxval {maxval}")
    c = 3 if kind in (b"P6", b"P3") else 1
    count = w * h * c
    if kind in (b"P5", b"P6"):
        dt = np.dtype("u1") if maxval < 256 else np.dtype(">u2")
        if len(data) - off < count * dt.itemsize:
            raise ValueError(f"{path}: truncated PNM data")
        arr = np.frombuffer(data, dt, count, off).astype(dt.newbyteorder("="))
    else:
        try:
            arr = np.array(data[off:].split()[:count], dtype=np.int64)
        except ValueError:
            raise ValueError(f"{path}: bad ASCII PNM data") from None
        if arr.size != count or arr.max(initial=0) > maxval:
            raise ValueError(f"{path}: truncated or out-of-range ASCII PNM data")
        arr = arr.astype(np.uint8 if maxval < 256 else np.uint16)
    img = arr.reshape(h, w, c)
    return img[:, :, ::-1].copy() if c == 3 else img


def _png_to_hwc(img):
    """Natively decoded PNG channels -> read_image's convention: alpha dropped, colour BGR."""
    if img.shape[2] in (1, 2):
        return np.ascontiguousarray(img[:, :, :1])
    return np.ascontiguousarray(img[:, :, 2::-1])


def read_image(path):
    """Decodes an image file into an HWC array: ``.npy`` (no pickle), PGM/PPM and PNG natively
    (PNG through Pillow when it is installed, which is faster), other formats (JPEG, ...)
    through Pillow. Colour images come out BGR, alpha is dropped."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise ValueError(f"{path}: bad .npy file ({e})") from None
        return arr[:, :, None] if arr.ndim == 2 else arr
    with open(path, "rb") as f:
        data = f.read(_MAX_FILE_BYTES + 1)
    if data[:1] == b"P" and data[1:2] in (b"2", b"3", b"5", b"6"):
        return _read_pnm(data, path)
    try:
        from PIL import Image
    except ImportError:
        if data[:8] == _png.SIGNATURE:
            return _png_to_hwc(_png.decode_png(data, path))
        raise ValueError(f"{path}: cannot decode this image format without Pillow (only .npy, "
                         "PNG and PGM/PPM are decoded natively)") from None
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{path}: cannot decode image ({e})") from None
    return arr[:, :, None] if arr.ndim == 2 else arr[:, :, ::-1].copy()


IMG_EXTENSIONS = (".npy", ".ppm", ".pgm", ".pnm", ".png", ".jpg", ".jpeg", ".bmp")


class ImageFolder(Dataset):
    """Images in ``root/<class name>/...``; labels are the indices of the sorted class names.
    Samples: (HWC image, int label) or, with ``class_name=True``, (image, label, class name).
    ``check_valid_func(path)`` filters files (default: known image extensions)."""

    def __init__(self, root, check_valid_func=None, class_name=False):
        if not os.path.isdir(root):
            raise FileNotFoundError(f"ImageFolder: {root!r} is not a directory")
        self.root = root
        self.class_name = class_name
        valid = check_valid_func or (lambda p: p.lower().endswith(IMG_EXTENSIONS))
        self.classes = sorted(d.name for d in os.scandir(root) if d.is_dir())
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = []
        for c in self.classes:
            for dirpath, _, files in sorted(os.walk(os.path.join(root, c))):
                for fn in sorted(files):
                    p = os.path.join(dirpath, fn)
                    if valid(p):
                        self.samples.append((p, self.class_to_idx[c]))

    def __getitem__(self, index):
        path, label = self.samples[index]
        img = read_image(path)
        if self.class_name:
            return img, label, self.classes[label]
        return img, label

    def __len__(self):
        return len(self.samples)
