"""Vision transforms in numpy (see the package documentation)."""
import collections.abc
import math

import numpy as np

from ..._args import to_int, to_ints
from ..dataset.meta_vision import UnsupportedFieldError, check_order

_rng = np.random.default_rng()

# cv2's interpolation codes (MegEngine's transforms take them)
INTER_NEAREST, INTER_LINEAR, INTER_CUBIC, INTER_AREA, INTER_LANCZOS4 = 0, 1, 2, 3, 4


def get_rng():
    """The numpy Generator random transforms draw from (reseeded per batch by DataLoader)."""
    return _rng


def _set_rng(rng):
    global _rng
    _rng = rng


def _hwc(image):
    a = np.asarray(image)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an HWC (or HW) image, got shape {a.shape}")
    return a


def _restore_dtype(out, like):
    """Rounds and clips back to an integer input dtype; float inputs stay float32/64."""
    if like.dtype.kind in "ui":
        info = np.iinfo(like.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(like.dtype)
    return out.astype(like.dtype if like.dtype.kind == "f" else np.float32, copy=False)


def _choose_interpolation(interpolation):
    """MegEngine's resize takes a sequence of methods and picks one at random per call."""
    if isinstance(interpolation, collections.abc.Sequence):
        if not interpolation:
            raise ValueError("resize: interpolation sequence is empty")
        return int(interpolation[int(_rng.integers(len(interpolation)))])
    return int(interpolation)


def _taps_linear(src, n_in):
    """(index, weight) taps of OpenCV's INTER_LINEAR at source positions ``src``: the
    fraction is zeroed where the position falls outside the image (edge replicated)."""
    i0 = np.floor(src).astype(np.int64)
    t = src - i0
    t = np.where((i0 < 0) | (i0 >= n_in - 1), 0.0, t)
    i0 = np.clip(i0, 0, n_in - 1)
    return np.stack([i0, np.minimum(i0 + 1, n_in - 1)], 1), np.stack([1 - t, t], 1)


def _keys_cubic(t, a=-0.75):
    """OpenCV's bicubic weights (Keys kernel, a = -0.75) of the 4 taps around a fraction t."""
    def near(x):
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    w0, w1, w2 = far(t + 1), near(t), near(1 - t)
    return np.stack([w0, w1, w2, 1 - w0 - w1 - w2], 1)


def _lanczos4(t):
    """Normalised Lanczos (a = 4) weights of the 8 taps around a fraction t."""
    d = t[:, None] + 3 - np.arange(8)[None, :]  # distance of each tap from the sample
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sin(np.pi * d) * np.sin(np.pi * d / 4) / (np.pi * np.pi * d * d / 4)
    w = np.where(np.abs(d) < 1e-7, 1.0, w)
    w = np.where(t[:, None] < np.finfo(np.float32).eps, (np.arange(8) == 3)[None, :], w)
    return w / w.sum(1, keepdims=True)


def _taps_area(n_in, n_out):
    """OpenCV's INTER_AREA when shrinking: each output averages the input cells it covers,
    weighted by the covered length. Returns a dense (n_out, n_in) weight matrix."""
    scale = n_in / n_out
    m = np.zeros((n_out, n_in))
    for d in range(n_out):
        f1 = d * scale
        f2 = f1 + scale
        cell = min(scale, n_in - f1)
        s2 = min(int(math.floor(f2)), n_in - 1)
        s1 = min(int(math.ceil(f1)), s2)
        if s1 - f1 > 1e-3:
            m[d, s1 - 1] += (s1 - f1) / cell
        m[d, s1:s2] += 1.0 / cell
        if f2 - s2 > 1e-3:
            m[d, s2] += min(min(f2 - s2, 1.0), cell) / cell
    return m


def _axis_matrix(n_in, n_out, interpolation, area_shrinks):
    """Dense (n_out, n_in) interpolation weights along one axis, as cv2.resize samples."""
    inv = n_out / n_in
    scale = 1.0 / inv
    d = np.arange(n_out, dtype=np.float64)
    if interpolation == INTER_AREA and area_shrinks:
        return _taps_area(n_in, n_out)
    if interpolation == INTER_AREA:  # enlarging: linear with OpenCV's area fractions
        sx = np.floor(d * scale)
        f = (d + 1) - (sx + 1) * inv
        f = np.where(f <= 0, 0.0, f - np.floor(f))
        idx, w = _taps_linear(sx + f, n_in)
    else:
        src = (d + 0.5) * scale - 0.5
        if interpolation == INTER_LINEAR:
            idx, w = _taps_linear(src, n_in)
        else:
            base = np.floor(src)
            t = src - base
            if interpolation == INTER_CUBIC:
                offs, w = np.arange(-1, 3), _keys_cubic(t)
            elif interpolation == INTER_LANCZOS4:
                offs, w = np.arange(-3, 5), _lanczos4(t)
            else:
                raise ValueError(f"resize: unsupported interpolation {interpolation} (0 "
                                 "nearest, 1 linear, 2 cubic, 3 area, 4 lanczos4)")
            idx = np.clip(base[:, None].astype(np.int64) + offs[None, :], 0, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), idx.shape[1]), idx.reshape(-1)), w.reshape(-1))
    return m


def _resize(image, h, w, interpolation=INTER_LINEAR):
    """cv2.resize's sampling (half-pixel centres, edges replicated) for nearest, linear,
    cubic, area and lanczos4, computed in float64; integer images are rounded to nearest
    (OpenCV's fixed-point uint8 arithmetic can differ by 1)."""
    img = _hwc(image)
    ih, iw = img.shape[:2]
    interpolation = _choose_interpolation(interpolation)
    if (ih, iw) == (h, w):
        return img.copy()
    if ih == 0 or iw == 0 or h <= 0 or w <= 0:
        raise ValueError(f"cannot resize an image of size {ih}x{iw} to {h}x{w}")
    if interpolation == INTER_NEAREST:  # OpenCV: floor(d * (1 / (out / in)))
        ys = np.minimum(np.floor(np.arange(h) * (1.0 / (h / ih))).astype(np.int64), ih - 1)
        xs = np.minimum(np.floor(np.arange(w) * (1.0 / (w / iw))).astype(np.int64), iw - 1)
        return img[ys][:, xs]
    shrinks = ih >= h and iw >= w
    my = _axis_matrix(ih, h, interpolation, shrinks)
    mx = _axis_matrix(iw, w, interpolation, shrinks)
    out = np.einsum("yi,ijc,xj->yxc", my, img.astype(np.float64), mx, optimize=True)
    return _restore_dtype(out, img)


def _pair(size, name):
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)  # already an integer
    if isinstance(size, collections.abc.Sequence) and len(size) == 2:
        return to_int(size[0], name, "transform"), to_int(size[1], name, "transform")
    raise ValueError(f"{name} must be an int or a (height, width) pair, got {size!r}")


# ------------------------------------------------------------------------------ base classes
class Transform:
    """Base transform: ``apply(sample)`` and ``apply_batch(samples)``."""

    def apply(self, input):
        raise NotImplementedError(f"{type(self).__name__} must define apply()")

    def apply_batch(self, inputs):
        return tuple(self.apply(x) for x in inputs)

    def __call__(self, input):
        return self.apply(input)

    def __repr__(self):
        return type(self).__name__


class PseudoTransform(Transform):
    """The identity transform (DataLoader's default)."""

    def apply(self, input):
        return input


class CudaTransform(Transform):
    """Base class of MegEngine's device-side transforms: ``apply`` gets a sample (or
    ``apply_batch`` a batch) whose arrays may be Tensors and transforms them where they live.
    Tianyuan is a CPU build, so such a transform runs on the CPU like any other; subclasses
    define ``apply`` exactly as for :class:`Transform`."""


_GEOMETRY = ("coords", "boxes", "keypoints", "polygons")


class VisionTransform(Transform):
    """A transform of samples whose fields are named by ``order`` (default ``("image",)``).

    Fields (MegEngine's): ``"image"`` (HxWxC), ``"mask"`` (HxWx1 class map, nearest-neighbour
    resampling), ``"coords"`` (Nx2 x, y), ``"boxes"`` (Nx4 x0 y0 x1 y1), ``"keypoints"``
    (NxKx3: x, y, visibility), ``"polygons"`` (per instance a list of Mx2 arrays). Coordinates
    are in pixels with (0, 0) the top-left corner of the top-left pixel, so a box drawn around
    pixels keeps enclosing the same pixels when the image is flipped, resized, padded or
    cropped (boxes are not clipped to the new image). Fields ending in ``category`` or ``info``
    and fields beyond ``order`` pass through; a plain image (not a tuple), or a 1-tuple,
    gives a plain result back (as in MegEngine). A subclass handles a field ``x`` by defining
    ``_apply_x``; geometric transforms define ``_apply_coords`` and boxes, keypoints and
    polygons follow from it.
    """

    _moves_pixels = False  # True when coordinates need the image's size (geometric)

    def __init__(self, order=None):
        order = check_order(order, None, type(self).__name__)
        for k in order:
            if k == "batch":
                raise ValueError(f"{type(self).__name__}: 'batch' is not a valid field name")
            if not self._passes_through(k) and getattr(self, "_apply_" + k, None) is None:
                raise UnsupportedFieldError(
                    f"{type(self).__name__} does not support field {k!r} (supported: image, "
                    "mask, coords, boxes, keypoints, polygons, *category, *info)")
        self.order = order

    @staticmethod
    def _passes_through(key):
        return key.endswith("category") or key.endswith("info")

    def _prepare(self, image):
        """Draws the random parameters for one sample (called once per ``apply``, with the
        HWC image or None when the sample has none)."""

    def _get_image(self, input):
        items = input if isinstance(input, tuple) else (input,)
        return items[self.order.index("image")]

    def apply(self, input):
        items = input if isinstance(input, tuple) else (input,)
        image = None
        if "image" in self.order and self.order.index("image") < len(items):
            image = _hwc(items[self.order.index("image")])
        elif self._moves_pixels and any(k in _GEOMETRY or k == "mask"
                                        for k in self.order[:len(items)]):
            raise ValueError(f"{type(self).__name__} needs the sample's image (an 'image' "
                             "field in order) to move its coordinates and masks")
        self._prepare(image)
        out = []
        for i, v in enumerate(items):
            key = self.order[i] if i < len(self.order) else None
            out.append(v if key is None or self._passes_through(key) else self._field(key, v))
        return out[0] if len(out) == 1 else tuple(out)  # MegEngine unwraps a 1-tuple too

    def _field(self, key, value):
        if key == "image":
            return self._apply_image(_hwc(value))
        if key == "mask":
            return self._apply_mask(_hwc(value))
        if key == "coords":
            return self._coords(value)
        return getattr(self, "_apply_" + key)(value)

    def _apply_image(self, image):
        raise NotImplementedError(f"{type(self).__name__} must define _apply_image")

    def _apply_mask(self, mask):
        return mask

    def _apply_coords(self, coords):
        """Moves an Nx2 float64 array of (x, y) points (a fresh copy, may be changed in place).
        The default leaves points where they are (a photometric transform)."""
        return coords

    def _coords(self, coords):
        """``_apply_coords`` on a copy, keeping the input's float dtype (float32 otherwise)."""
        a = np.asarray(coords)
        dtype = a.dtype if a.dtype.kind == "f" else np.float32
        flat = np.array(a, dtype=np.float64).reshape(-1, 2)
        return np.asarray(self._apply_coords(flat)).astype(dtype).reshape(a.shape)

    def _apply_boxes(self, boxes):
        b = np.asarray(boxes)
        if b.size and b.shape[-1] != 4:
            raise ValueError(f"{type(self).__name__}: boxes must be Nx4 (x0, y0, x1, y1), got "
                             f"shape {b.shape}")
        b = b.reshape(-1, 4)
        corners = b[:, [0, 1, 2, 1, 0, 3, 2, 3]].reshape(-1, 4, 2)  # the four corners
        moved = self._coords(corners)
        return np.concatenate([moved.min(axis=1), moved.max(axis=1)], axis=1)

    def _apply_keypoints(self, keypoints):
        k = np.asarray(keypoints)
        if k.shape[-1] < 2:
            raise ValueError(f"{type(self).__name__}: keypoints must end in (x, y[, "
                             f"visibility]), got shape {k.shape}")
        out = np.array(k, dtype=k.dtype if k.dtype.kind == "f" else np.float32)
        out[..., :2] = self._coords(k[..., :2])
        return out

    def _apply_polygons(self, polygons):
        return [[self._coords(p) for p in instance] for instance in polygons]


class Compose(VisionTransform):
    """Applies ``transforms`` in turn. ``batch_compose=True`` applies each transform to the
    whole batch before the next one; ``shuffle_indices`` lists groups (1-based positions) of
    transforms whose order is shuffled per sample. An ``order`` given to Compose is given to
    every transform in it (as MegEngine does); without one each keeps its own."""

    def __init__(self, transforms=None, batch_compose=False, shuffle_indices=None, order=None):
        super().__init__(order)
        self.transforms = list(transforms or [])
        if batch_compose and shuffle_indices:
            raise ValueError("Compose: shuffle_indices cannot be used with batch_compose=True")
        n = len(self.transforms)
        for group in shuffle_indices or []:
            if any(not 1 <= i <= n for i in group):
                raise ValueError(f"Compose: shuffle_indices {group} out of range 1..{n}")
        self.batch_compose = batch_compose
        self.shuffle_indices = shuffle_indices or []
        if order is not None:
            self._set_order()

    def _set_order(self):
        for t in self.transforms:
            if isinstance(t, VisionTransform):
                VisionTransform.__init__(t, self.order)  # validates the fields for t as well
                if isinstance(t, Compose):
                    t._set_order()

    def _ordered(self):
        ts = list(self.transforms)
        for group in self.shuffle_indices:
            pos = [i - 1 for i in group]
            chosen = [ts[i] for i in pos]
            perm = _rng.permutation(len(chosen))
            for i, j in zip(pos, perm):
                ts[i] = chosen[j]
        return ts

    def apply(self, input):
        for t in self._ordered():
            input = t.apply(input)
        return input

    def apply_batch(self, inputs):
        if not self.batch_compose:
            return tuple(self.apply(x) for x in inputs)
        for t in self.transforms:
            inputs = t.apply_batch(inputs)
        return tuple(inputs)


class TorchTransformCompose(VisionTransform):
    """Runs torchvision-style callables on the image (MegEngine's bridge to torchvision).

    The BGR image is turned into an RGB Pillow image when Pillow is installed (what
    torchvision's PIL transforms expect), else into an RGB uint8 numpy array; each callable in
    ``transforms`` is applied in turn and the result is turned back into a BGR HWC uint8 array.
    Only the image moves: use it for photometric transforms, or for geometric ones on samples
    without boxes/masks."""

    def __init__(self, transforms, order=None):
        super().__init__(order)
        self.transforms = list(transforms)

    def _apply_image(self, image):
        if image.shape[2] not in (1, 3):
            raise ValueError(f"TorchTransformCompose: expected a 1- or 3-channel image, got "
                             f"{image.shape[2]} channels")
        rgb = np.ascontiguousarray(image[:, :, ::-1] if image.shape[2] == 3 else image[:, :, 0])
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        try:
            from PIL import Image
            x = Image.fromarray(rgb)
        except ImportError:
            x = rgb
        for t in self.transforms:
            x = t(x)
        out = np.asarray(x)
        if out.dtype != np.uint8:
            raise ValueError(f"TorchTransformCompose: the transforms must return an image "
                             f"(PIL or uint8 array), got {type(x).__name__} of {out.dtype}")
        if out.ndim == 2:
            return out[:, :, None].copy()
        return np.ascontiguousarray(out[:, :, ::-1]) if out.shape[2] == 3 else out.copy()


# ------------------------------------------------------------------------------ transforms
class Normalize(VisionTransform):
    """``(image - mean) / std`` as float32 (mean/std scalars or per-channel sequences)."""

    def __init__(self, mean=0.0, std=1.0, order=None):
        super().__init__(order)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def _apply_image(self, image):
        # numpy's promotion, as MegEngine: integer and float32 images give float32,
        # float64 images float64
        out = (image - self.mean) / self.std
        return out if out.dtype.kind == "f" and out.dtype.itemsize >= 4 else \
            out.astype(np.float32)


def _pad_sizes(size, owner):
    """(top, bottom, left, right) from an int (all sides), a pair (bottom, right: MegEngine's
    meaning) or four values."""
    if isinstance(size, (int, np.integer)):
        size = (int(size),) * 4
    size = tuple(to_ints(size, "size", owner))
    if len(size) == 2:
        size = (0, size[0], 0, size[1])
    if len(size) != 4 or min(size) < 0:
        raise ValueError(f"{owner} size must be non-negative: an int, (bottom, right) or "
                         f"(top, bottom, left, right), got {size}")
    return size


def _pad(img, sizes, value):
    t, b, l, r = sizes
    h, w, c = img.shape
    dtype = img.dtype
    if np.asarray(value).dtype.kind == "f" and dtype.kind != "f":
        dtype = np.float32  # a float fill value makes a float image (as MegEngine)
    out = np.empty((h + t + b, w + l + r, c), dtype=dtype)
    v = np.asarray(value, dtype=dtype).reshape(-1)
    if v.size not in (1, c):
        raise ValueError(f"padding value has {v.size} entries for an image of {c} channels")
    out[...] = v
    out[t:t + h, l:l + w] = img
    return out


class Pad(VisionTransform):
    """Constant padding. ``size``: an int (all sides), (bottom, right) or (top, bottom, left,
    right). ``value`` (scalar or per channel) fills the image, ``mask_value`` a mask.
    Coordinates move by (left, top)."""

    _moves_pixels = True

    def __init__(self, size=0, value=0, mask_value=0, order=None):
        super().__init__(order)
        self.size = _pad_sizes(size, "Pad")
        self.value = value
        if not isinstance(mask_value, (int, np.integer)):
            raise ValueError(f"Pad mask_value must be an integer, got {mask_value!r}")
        self.mask_value = mask_value

    def _apply_image(self, image):
        return _pad(image, self.size, self.value)

    def _apply_mask(self, mask):
        return _pad(mask, self.size, self.mask_value)

    def _apply_coords(self, coords):
        coords[:, 0] += self.size[2]
        coords[:, 1] += self.size[0]
        return coords


class ToMode(VisionTransform):
    """Changes the layout: ``"CHW"`` turns HWC images and masks into CHW; ``"HWC"`` leaves
    them. Coordinates do not change."""

    def __init__(self, mode="CHW", order=None):
        super().__init__(order)
        if mode not in ("CHW", "HWC"):
            raise ValueError(f"ToMode mode must be 'CHW' or 'HWC', got {mode!r}")
        self.mode = mode

    def _apply_image(self, image):
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.mode == "CHW" else image

    _apply_mask = _apply_image


class _ResizeBase(VisionTransform):
    """Resizes the image to ``self._hw`` chosen by ``_target(h, w)``; masks use nearest
    neighbour; coordinates scale by the size ratio per axis."""

    _moves_pixels = True

    def _target(self, h, w):
        raise NotImplementedError

    def _prepare(self, image):
        if image is not None:
            self._in_hw = image.shape[:2]
            self._hw = self._target(*self._in_hw)

    def _apply_image(self, image):
        return _resize(image, *self._hw, self.interpolation)

    def _apply_mask(self, mask):
        return _resize(mask, *self._hw, INTER_NEAREST)

    def _apply_coords(self, coords):
        (h, w), (th, tw) = self._in_hw, self._hw
        coords[:, 0] *= tw / w
        coords[:, 1] *= th / h
        return coords


class Resize(_ResizeBase):
    """Resizes to ``output_size`` = (height, width), or, for an int, so that the shorter edge
    has that length (aspect ratio kept)."""

    def __init__(self, output_size, interpolation=INTER_LINEAR, order=None):
        super().__init__(order)
        self.output_size = output_size
        self.interpolation = interpolation

    def _target(self, h, w):
        s = self.output_size
        if isinstance(s, (int, np.integer)):
            if min(h, w) == s:
                return h, w
            if h < w:
                return int(s), int(s * w / h)
            return int(s * h / w), int(s)
        return _pair(s, "output_size")


class ShortestEdgeResize(_ResizeBase):
    """Resizes so the shorter edge is ``min_size`` (drawn from [min, max] with
    ``sample_style="range"`` or from the list with ``"choice"``) unless the longer edge would
    then exceed ``max_size``."""

    def __init__(self, min_size, max_size, sample_style="range", interpolation=INTER_LINEAR,
                 order=None):
        super().__init__(order)
        if sample_style not in ("range", "choice"):
            raise ValueError(f"ShortestEdgeResize sample_style must be 'range' or 'choice', "
                             f"got {sample_style!r}")
        if isinstance(min_size, (int, np.integer)):
            min_size = (int(min_size), int(min_size))
        self.min_size, self.max_size, self.sample_style = tuple(min_size), max_size, sample_style
        self.interpolation = interpolation

    def _target(self, h, w):
        ms = self.min_size
        size = int(_rng.integers(ms[0], ms[1] + 1)) if self.sample_style == "range" \
            else int(ms[_rng.integers(len(ms))])
        scale = size / min(h, w)
        th, tw = (size, scale * w) if h < w else (scale * h, size)
        if max(th, tw) > self.max_size:
            shrink = self.max_size / max(th, tw)
            th, tw = th * shrink, tw * shrink
        return max(1, int(round(th))), max(1, int(round(tw)))


class RandomResize(_ResizeBase):
    """Resizes by a random scale factor from ``scale_range``."""

    def __init__(self, scale_range, interpolation=INTER_LINEAR, order=None):
        super().__init__(order)
        self.scale_range = scale_range
        self.interpolation = interpolation

    def _target(self, h, w):
        s = _rng.uniform(*self.scale_range)
        return max(1, int(round(h * s))), max(1, int(round(w * s)))


class _Crop(VisionTransform):
    """Crops ``self._box`` = (y, x, h, w); coordinates move by (-x, -y)."""

    _moves_pixels = True

    def _apply_image(self, image):
        y, x, h, w = self._box
        return image[y:y + h, x:x + w].copy()

    _apply_mask = _apply_image

    def _apply_coords(self, coords):
        coords[:, 0] -= self._box[1]
        coords[:, 1] -= self._box[0]
        return coords


class CenterCrop(_Crop):
    """Crops the centre ``output_size`` (int or (height, width))."""

    def __init__(self, output_size, order=None):
        super().__init__(order)
        self.output_size = _pair(output_size, "output_size")

    def _prepare(self, image):
        if image is None:
            return
        H, W = image.shape[:2]
        h, w = self.output_size
        if h > H or w > W:
            raise ValueError(f"CenterCrop {h}x{w} is larger than the image {H}x{W}")
        self._box = (int(round((H - h) / 2)), int(round((W - w) / 2)), h, w)


class RandomCrop(_Crop):
    """Pads by ``padding_size`` (as :class:`Pad`; ``padding_value`` for the image,
    ``padding_maskvalue`` for a mask), pads the bottom/right further if the result is still
    smaller than ``output_size``, then crops ``output_size`` at a random position."""

    def __init__(self, output_size, padding_size=0, padding_value=0, padding_maskvalue=0,
                 order=None):
        super().__init__(order)
        self.output_size = _pair(output_size, "output_size")
        self.padding_size = _pad_sizes(padding_size, "RandomCrop padding")
        self.padding_value, self.padding_maskvalue = padding_value, padding_maskvalue

    def _prepare(self, image):
        if image is None:
            return
        t, b, l, r = self.padding_size
        H, W = image.shape[0] + t + b, image.shape[1] + l + r
        h, w = self.output_size
        self._pads = (t, b + max(0, h - H), l, r + max(0, w - W))
        self._extra = (0, max(0, h - H), 0, max(0, w - W))
        x = int(_rng.integers(0, max(0, W - w) + 1))  # MegEngine draws x, then y
        y = int(_rng.integers(0, max(0, H - h) + 1))
        self._box = (y, x, h, w)

    def _apply_image(self, image):
        return super()._apply_image(_pad(image, self._pads, self.padding_value))

    def _apply_mask(self, mask):
        # MegEngine pads by padding_size with Pad's mask value (0), and only the further
        # padding up to output_size with padding_maskvalue
        mask = _pad(mask, self.padding_size, 0)
        return super()._apply_image(_pad(mask, self._extra, self.padding_maskvalue))

    def _apply_coords(self, coords):
        coords[:, 0] += self._pads[2]
        coords[:, 1] += self._pads[0]
        return super()._apply_coords(coords)


class RandomResizedCrop(_Crop):
    """Crops a random area (fraction in ``scale_range``, aspect ratio in ``ratio_range``) and
    resizes it to ``output_size``."""

    def __init__(self, output_size, scale_range=(0.08, 1.0), ratio_range=(3.0 / 4, 4.0 / 3),
                 interpolation=INTER_LINEAR, order=None):
        super().__init__(order)
        self.output_size = _pair(output_size, "output_size")
        if scale_range[0] > scale_range[1] or ratio_range[0] > ratio_range[1]:
            raise ValueError("RandomResizedCrop: scale_range and ratio_range must be (min, max)")
        self.scale_range, self.ratio_range = scale_range, ratio_range
        self.interpolation = interpolation

    def _prepare(self, image):
        if image is None:
            return
        H, W = image.shape[:2]
        area = H * W
        logr = (math.log(self.ratio_range[0]), math.log(self.ratio_range[1]))
        for _ in range(10):
            target = area * _rng.uniform(*self.scale_range)
            ratio = math.exp(_rng.uniform(*logr))
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= W and 0 < h <= H:
                x = int(_rng.integers(0, W - w + 1))  # MegEngine draws x, then y
                self._box = (int(_rng.integers(0, H - h + 1)), x, h, w)
                return
        r = W / H  # fallback: central crop
        if r < self.ratio_range[0]:
            w, h = W, int(round(W / self.ratio_range[0]))
        elif r > self.ratio_range[1]:
            h, w = H, int(round(H * self.ratio_range[1]))
        else:
            h, w = H, W
        self._box = ((H - h) // 2, (W - w) // 2, h, w)

    def _apply_image(self, image):
        return _resize(super()._apply_image(image), *self.output_size, self.interpolation)

    def _apply_mask(self, mask):
        return _resize(super()._apply_image(mask), *self.output_size, INTER_NEAREST)

    def _apply_coords(self, coords):
        coords = super()._apply_coords(coords)
        coords[:, 0] *= self.output_size[1] / self._box[3]
        coords[:, 1] *= self.output_size[0] / self._box[2]
        return coords


class RandomHorizontalFlip(VisionTransform):
    """Flips left-right with probability ``prob`` (x becomes width - x)."""

    _moves_pixels = True
    _axis = 1

    def __init__(self, prob=0.5, order=None):
        super().__init__(order)
        self.prob = prob

    def _prepare(self, image):
        self._flip = _rng.random() < self.prob
        if image is not None:
            self._extent = image.shape[self._axis]

    def _apply_image(self, image):
        if not self._flip:
            return image
        return image[:, ::-1].copy() if self._axis == 1 else image[::-1].copy()

    _apply_mask = _apply_image

    def _apply_coords(self, coords):
        if self._flip:
            c = 0 if self._axis == 1 else 1
            coords[:, c] = self._extent - coords[:, c]
        return coords


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flips top-bottom with probability ``prob`` (y becomes height - y)."""

    _axis = 0


def _clip_cast(out, like):
    """MegEngine's photometric ending: clip to [0, 255], then ``astype`` the input dtype
    (a float to integer cast truncates)."""
    return np.clip(out, 0, 255).astype(like.dtype)


class GaussianNoise(VisionTransform):
    """Adds ``255 * N(mean, std)`` noise (MegEngine scales the noise to the 0..255 range),
    clipped to [0, 255] and cast back to the image's dtype (truncating)."""

    def __init__(self, mean=0.0, std=1.0, order=None):
        super().__init__(order)
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)

    def _apply_image(self, image):
        noise = _rng.normal(self.mean, self.std, image.shape) * 255
        return _clip_cast(image + noise.astype(np.float32), image)


class _ColorTransform(VisionTransform):
    """Blends the float32 image with ``other`` by a factor drawn in [max(0, 1 - value),
    1 + value] (nothing is drawn when value is 0), clipped to [0, 255], cast back."""

    def __init__(self, value=0, order=None):
        super().__init__(order)
        if value < 0:
            raise ValueError(f"{type(self).__name__} value must be non-negative, got {value}")
        self.value = value

    def _blend(self, image, other):
        if self.value == 0:
            return image
        f = image.astype(np.float32)
        alpha = _rng.uniform(max(0.0, 1 - self.value), 1 + self.value)
        out = f * alpha if other is None else f * alpha + other(f) * (1 - alpha)
        return _clip_cast(out, image)


def _gray32(f):
    """cv2's BGR2GRAY of a float32 HxWx3 image (single-channel images are their own grey)."""
    if f.shape[2] == 1:
        return f
    return (f[:, :, 0:1] * np.float32(0.114) + f[:, :, 1:2] * np.float32(0.587)
            + f[:, :, 2:3] * np.float32(0.299))


class Brightness(_ColorTransform):
    """Multiplies by a random factor in [max(0, 1 - value), 1 + value]."""

    def _apply_image(self, image):
        return self._blend(image, None)


BrightnessTransform = Brightness  # MegEngine's names for these


class Contrast(_ColorTransform):
    """Blends with the mean grey level by a random factor in [max(0, 1 - value), 1 + value]."""

    def _apply_image(self, image):
        return self._blend(image, lambda f: _gray32(f).mean())


class Saturation(_ColorTransform):
    """Blends with the per-pixel grey image (no-op on single-channel images)."""

    def _apply_image(self, image):
        if image.shape[2] != 3:
            return image
        return self._blend(image, _gray32)


_HSV_SHIFT = 12


def _bgr_to_hsv_full(img):
    """cv2.cvtColor(COLOR_BGR2HSV_FULL) of a uint8 image: integer arithmetic with OpenCV's
    12-bit reciprocal tables, hue in 0..255 for a full turn."""
    b, g, r = (img[..., i].astype(np.int64) for i in range(3))
    v = np.maximum(np.maximum(b, g), r)
    diff = v - np.minimum(np.minimum(b, g), r)
    half = 1 << (_HSV_SHIFT - 1)
    with np.errstate(divide="ignore"):
        sdiv = np.where(v > 0, np.rint((255 << _HSV_SHIFT) / np.maximum(v, 1)), 0)
        hdiv = np.where(diff > 0, np.rint((256 << _HSV_SHIFT) / (6.0 * np.maximum(diff, 1))), 0)
    s = (diff * sdiv.astype(np.int64) + half) >> _HSV_SHIFT
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * hdiv.astype(np.int64) + half) >> _HSV_SHIFT
    h = np.where(h < 0, h + 256, h)
    return np.clip(h, 0, 255), s, v


_HSV_SECTORS = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])


def _hsv_full_to_bgr(h, s, v):
    """cv2.cvtColor(COLOR_HSV2BGR_FULL) of uint8 planes: float32 sector arithmetic, each
    channel rounded to nearest (ties to even) back to uint8. OpenCV's inverse takes a full
    turn as 255 (its forward conversion as 256), so a round trip drifts a little."""
    hf = h.astype(np.float32) * np.float32(6.0 / 255)
    sf = s.astype(np.float32) * np.float32(1.0 / 255)
    vf = v.astype(np.float32) * np.float32(1.0 / 255)
    sector = np.floor(hf).astype(np.int64)
    frac = hf - sector.astype(np.float32)
    bad = (sector < 0) | (sector >= 6)
    sector = np.where(bad, 0, sector)
    frac = np.where(bad, np.float32(0), frac)
    one = np.float32(1)
    tab = np.stack([vf, vf * (one - sf), vf * (one - sf * frac), vf * (one - sf * (one - frac))])
    sel = _HSV_SECTORS[sector]  # (..., 3): which tab entry gives b, g, r
    bgr = np.take_along_axis(np.moveaxis(tab, 0, -1), sel, axis=-1)
    bgr = np.where((sf == 0)[..., None], vf[..., None], bgr)
    return np.clip(np.rint(bgr * np.float32(255)), 0, 255).astype(np.uint8)


class Hue(VisionTransform):
    """Rotates the hue as MegEngine does: the image cast to uint8, converted to OpenCV's
    full-range 8-bit HSV, ``int(alpha * 255)`` added to H modulo 256 (alpha drawn in
    [-value, value], value <= 0.5), converted back and cast to the input dtype."""

    def __init__(self, value=0, order=None):
        super().__init__(order)
        if not 0 <= value <= 0.5:
            raise ValueError(f"Hue value must be in [0, 0.5], got {value}")
        self.value = value

    def _apply_image(self, image):
        if self.value == 0 or image.shape[2] != 3:
            return image
        h, s, v = _bgr_to_hsv_full(image.astype(np.uint8))
        alpha = _rng.uniform(-self.value, self.value)
        h = (h + int(alpha * 255)) % 256  # uint8 wrap-around, as numpy's uint8 addition
        return _hsv_full_to_bgr(h, s, v).astype(image.dtype)


class ColorJitter(VisionTransform):
    """Brightness, contrast, saturation and hue jitter: the non-zero ones, applied in a
    random order (MegEngine's Compose with one shuffle group)."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0, order=None):
        super().__init__(order)
        self.transforms = [t for t, v in ((Brightness(brightness), brightness),
                                          (Contrast(contrast), contrast),
                                          (Saturation(saturation), saturation),
                                          (Hue(hue), hue)) if v != 0]

    def _apply_image(self, image):
        for i in _rng.permutation(len(self.transforms)):
            image = self.transforms[i].apply(image)
        return image


class Lighting(VisionTransform):
    """AlexNet-style PCA lighting noise as MegEngine computes it: ``eigvec @ (alpha *
    eigval)`` with alpha ~ N(0, scale^2) per component, eigenvalues on the 0..1 scale (so the
    shift is small on a 0..255 image), added per BGR channel, clipped to [0, 255] and cast
    back to the image's dtype."""

    # rows in BGR order
    _eigvec = np.array([[-0.5836, -0.6948, 0.4203], [-0.5808, -0.0045, -0.8140],
                        [-0.5675, 0.7192, 0.4009]])
    _eigval = np.array([0.2175, 0.0188, 0.0045])

    def __init__(self, scale, order=None):
        super().__init__(order)
        if scale < 0:
            raise ValueError(f"Lighting scale must be non-negative, got {scale}")
        self.scale = scale

    def _apply_image(self, image):
        if self.scale == 0 or image.shape[2] != 3:
            return image
        alpha = _rng.normal(0, self.scale, 3)
        return _clip_cast(image.astype(np.float32) + self._eigvec.dot(alpha * self._eigval),
                          image)


ContrastTransform = Contrast
SaturationTransform = Saturation
HueTransform = Hue
