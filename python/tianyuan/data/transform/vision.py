"""Vision transforms in numpy (see the package documentation)."""
import collections.abc
import math

import numpy as np

from ..._args import to_int, to_ints

_rng = np.random.default_rng()

INTER_NEAREST, INTER_LINEAR = 0, 1


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


def _resize(image, h, w, interpolation=INTER_LINEAR):
    img = _hwc(image)
    ih, iw = img.shape[:2]
    if (ih, iw) == (h, w):
        return img.copy()
    if ih == 0 or iw == 0 or h <= 0 or w <= 0:
        raise ValueError(f"cannot resize an image of size {ih}x{iw} to {h}x{w}")
    if interpolation == INTER_NEAREST:
        ys = np.minimum((np.arange(h) * ih / h).astype(np.int64), ih - 1)
        xs = np.minimum((np.arange(w) * iw / w).astype(np.int64), iw - 1)
        return img[ys][:, xs]
    # bilinear with half-pixel centres (OpenCV INTER_LINEAR)
    fy = np.clip((np.arange(h) + 0.5) * ih / h - 0.5, 0, ih - 1)
    fx = np.clip((np.arange(w) + 0.5) * iw / w - 0.5, 0, iw - 1)
    y0 = np.floor(fy).astype(np.int64)
    x0 = np.floor(fx).astype(np.int64)
    y1 = np.minimum(y0 + 1, ih - 1)
    x1 = np.minimum(x0 + 1, iw - 1)
    wy = (fy - y0)[:, None, None]
    wx = (fx - x0)[None, :, None]
    f = img.astype(np.float64)
    top = f[y0][:, x0] * (1 - wx) + f[y0][:, x1] * wx
    bot = f[y1][:, x0] * (1 - wx) + f[y1][:, x1] * wx
    return _restore_dtype(top * (1 - wy) + bot * wy, img)


def _gray(img):
    """Luma of a BGR (or single-channel) image, HxWx1 float64."""
    f = img.astype(np.float64)
    if f.shape[2] == 1:
        return f
    return (0.114 * f[:, :, 0:1] + 0.587 * f[:, :, 1:2] + 0.299 * f[:, :, 2:3])


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
        raise NotImplementedError

    def apply_batch(self, inputs):
        return tuple(self.apply(x) for x in inputs)

    def __call__(self, input):
        return self.apply(input)


class PseudoTransform(Transform):
    """The identity transform (DataLoader's default)."""

    def apply(self, input):
        return input


class VisionTransform(Transform):
    """A transform of samples whose fields are named by ``order`` (default ``("image",)``)."""

    _supported = ("image", "mask")

    def __init__(self, order=None):
        if order is None:
            order = ("image",)
        elif isinstance(order, str) or not isinstance(order, collections.abc.Sequence):
            raise ValueError(f"order must be a sequence of field names, got {order!r}")
        for k in order:
            if k.endswith("category") or k.endswith("info"):
                continue
            if k not in self._supported:
                raise NotImplementedError(f"{type(self).__name__} does not support field {k!r} "
                                          f"(supported: {', '.join(self._supported)}, "
                                          "*category, *info)")
        self.order = tuple(order)

    def _prepare(self, image):
        """Draws the random parameters for one sample (called once per ``apply``)."""

    def _apply_image(self, image):
        raise NotImplementedError

    def _apply_mask(self, mask):
        return mask

    def apply(self, input):
        single = not isinstance(input, tuple)
        items = (input,) if single else input
        if "image" in self.order and self.order.index("image") < len(items):
            self._prepare(_hwc(items[self.order.index("image")]))
        else:
            self._prepare(None)
        out = []
        for i, v in enumerate(items):
            key = self.order[i] if i < len(self.order) else None
            if key == "image":
                out.append(self._apply_image(_hwc(v)))
            elif key == "mask":
                out.append(self._apply_mask(_hwc(v)))
            else:
                out.append(v)
        return out[0] if single else tuple(out)


class Compose(VisionTransform):
    """Applies ``transforms`` in turn. ``batch_compose=True`` applies each transform to the
    whole batch before the next one; ``shuffle_indices`` lists groups (1-based positions) of
    transforms whose order is shuffled per sample."""

    def __init__(self, transforms=None, batch_compose=False, shuffle_indices=None, order=None):
        super().__init__(order)
        self.transforms = list(transforms or [])
        self.batch_compose = batch_compose
        self.shuffle_indices = shuffle_indices or []

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
        for t in self._ordered():
            inputs = t.apply_batch(inputs)
        return tuple(inputs)


# ------------------------------------------------------------------------------ transforms
class Normalize(VisionTransform):
    """``(image - mean) / std`` as float32 (mean/std scalars or per-channel sequences)."""

    def __init__(self, mean=0.0, std=1.0, order=None):
        super().__init__(order)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def _apply_image(self, image):
        return ((image.astype(np.float32) - self.mean) / self.std).astype(np.float32)


class Pad(VisionTransform):
    """Constant padding. ``size``: int (all sides), (vertical, horizontal) or (top, bottom,
    left, right). ``value`` (scalar or per channel) fills the image, ``mask_value`` a mask."""

    def __init__(self, size=0, value=0, mask_value=0, order=None):
        super().__init__(order)
        if isinstance(size, (int, np.integer)):
            size = (size,) * 4
        size = tuple(to_ints(size, "size", "Pad"))
        if len(size) == 2:
            size = (size[0], size[0], size[1], size[1])
        if len(size) != 4 or min(size) < 0:
            raise ValueError(f"Pad size must be non-negative: int, 2 or 4 values, got {size}")
        self.size = size
        self.value = value
        self.mask_value = mask_value

    def _pad(self, img, value):
        t, b, l, r = self.size
        h, w, c = img.shape
        out = np.empty((h + t + b, w + l + r, c), dtype=img.dtype)
        out[...] = np.broadcast_to(np.asarray(value, dtype=img.dtype), (c,)) \
            if np.ndim(value) else value
        out[t:t + h, l:l + w] = img
        return out

    def _apply_image(self, image):
        return self._pad(image, self.value)

    def _apply_mask(self, mask):
        return self._pad(mask, self.mask_value)


class ToMode(VisionTransform):
    """Changes the layout: ``"CHW"`` turns HWC into CHW; ``"HWC"`` leaves it."""

    def __init__(self, mode="CHW", order=None):
        super().__init__(order)
        if mode not in ("CHW", "HWC"):
            raise ValueError(f"ToMode mode must be 'CHW' or 'HWC', got {mode!r}")
        self.mode = mode

    def _apply_image(self, image):
        return np.ascontiguousarray(image.transpose(2, 0, 1)) if self.mode == "CHW" else image

    _apply_mask = _apply_image


class Resize(VisionTransform):
    """Resizes to ``output_size`` = (height, width), or, for an int, so that the shorter edge
    has that length (aspect ratio kept). Masks use nearest neighbour."""

    def __init__(self, output_size, interpolation=INTER_LINEAR, order=None):
        super().__init__(order)
        self.output_size = output_size
        self.interpolation = interpolation

    def _shape(self, h, w):
        s = self.output_size
        if isinstance(s, (int, np.integer)):
            if min(h, w) == s:
                return h, w
            if h < w:
                return int(s), int(s * w / h)
            return int(s * h / w), int(s)
        return _pair(s, "output_size")

    def _prepare(self, image):
        self._hw = None if image is None else self._shape(*image.shape[:2])

    def _apply_image(self, image):
        return _resize(image, *self._hw, self.interpolation)

    def _apply_mask(self, mask):
        return _resize(mask, *self._hw, INTER_NEAREST)


class ShortestEdgeResize(Resize):
    """Resizes so the shorter edge is ``min_size`` (a random choice if a sequence) and the
    longer edge at most ``max_size``."""

    def __init__(self, min_size, max_size, sample_style="range", interpolation=INTER_LINEAR,
                 order=None):
        super().__init__(0, interpolation, order)
        self.min_size, self.max_size, self.sample_style = min_size, max_size, sample_style

    def _prepare(self, image):
        if image is None:
            return
        ms = self.min_size
        if isinstance(ms, collections.abc.Sequence):
            ms = int(_rng.integers(ms[0], ms[1] + 1)) if self.sample_style == "range" \
                else int(ms[_rng.integers(len(ms))])
        h, w = image.shape[:2]
        scale = min(ms / min(h, w), self.max_size / max(h, w))
        self._hw = (max(1, int(round(h * scale))), max(1, int(round(w * scale))))


class RandomResize(Resize):
    """Resizes by a random scale factor from ``scale_range``."""

    def __init__(self, scale_range, interpolation=INTER_LINEAR, order=None):
        super().__init__(0, interpolation, order)
        self.scale_range = scale_range

    def _prepare(self, image):
        if image is None:
            return
        s = _rng.uniform(*self.scale_range)
        h, w = image.shape[:2]
        self._hw = (max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5)))


class _Crop(VisionTransform):
    def _apply_image(self, image):
        y, x, h, w = self._box
        return image[y:y + h, x:x + w].copy()

    _apply_mask = _apply_image


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
        self._box = ((H - h) // 2, (W - w) // 2, h, w)


class RandomCrop(_Crop):
    """Pads by ``padding_size`` (with ``padding_value``) then crops ``output_size`` at a random
    position."""

    def __init__(self, output_size, padding_size=0, padding_maskvalue=0, padding_value=0,
                 order=None):
        super().__init__(order)
        self.output_size = _pair(output_size, "output_size")
        self.pad = Pad(padding_size, padding_value, padding_maskvalue, order=("image", "mask"))

    def _prepare(self, image):
        if image is None:
            return
        H, W = image.shape[:2]
        t, b, l, r = self.pad.size
        H, W = H + t + b, W + l + r
        h, w = self.output_size
        if h > H or w > W:
            raise ValueError(f"RandomCrop {h}x{w} is larger than the padded image {H}x{W}")
        self._box = (int(_rng.integers(0, H - h + 1)), int(_rng.integers(0, W - w + 1)), h, w)

    def _apply_image(self, image):
        return super()._apply_image(self.pad._apply_image(image))

    def _apply_mask(self, mask):
        return super()._apply_mask(self.pad._apply_mask(mask))


class RandomResizedCrop(VisionTransform):
    """Crops a random area (fraction in ``scale_range``, aspect ratio in ``ratio_range``) and
    resizes it to ``output_size``."""

    def __init__(self, output_size, scale_range=(0.08, 1.0), ratio_range=(3.0 / 4, 4.0 / 3),
                 interpolation=INTER_LINEAR, order=None):
        super().__init__(order)
        self.output_size = _pair(output_size, "output_size")
        self.scale_range, self.ratio_range = scale_range, ratio_range
        self.interpolation = interpolation

    def _prepare(self, image):
        if image is None:
            return
        H, W = image.shape[:2]
        area = H * W
        for _ in range(10):
            target = area * _rng.uniform(*self.scale_range)
            logr = (math.log(self.ratio_range[0]), math.log(self.ratio_range[1]))
            ratio = math.exp(_rng.uniform(*logr))
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= W and 0 < h <= H:
                self._box = (int(_rng.integers(0, H - h + 1)), int(_rng.integers(0, W - w + 1)),
                             h, w)
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
        y, x, h, w = self._box
        return _resize(image[y:y + h, x:x + w], *self.output_size, self.interpolation)

    def _apply_mask(self, mask):
        y, x, h, w = self._box
        return _resize(mask[y:y + h, x:x + w], *self.output_size, INTER_NEAREST)


class RandomHorizontalFlip(VisionTransform):
    """Flips left-right with probability ``prob``."""

    def __init__(self, prob=0.5, order=None):
        super().__init__(order)
        self.prob = prob

    def _prepare(self, image):
        self._flip = _rng.random() < self.prob

    def _apply_image(self, image):
        return image[:, ::-1].copy() if self._flip else image

    _apply_mask = _apply_image


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flips top-bottom with probability ``prob``."""

    def _apply_image(self, image):
        return image[::-1].copy() if self._flip else image

    _apply_mask = _apply_image


class GaussianNoise(VisionTransform):
    """Adds normal noise with ``mean`` and ``std``."""

    def __init__(self, mean=0.0, std=1.0, order=None):
        super().__init__(order)
        self.mean, self.std = mean, std

    def _apply_image(self, image):
        noise = _rng.normal(self.mean, self.std, image.shape)
        return _restore_dtype(image.astype(np.float64) + noise, image)


class _ColorTransform(VisionTransform):
    def __init__(self, value=0, order=None):
        super().__init__(order)
        if value < 0:
            raise ValueError(f"{type(self).__name__} value must be non-negative, got {value}")
        self.value = value

    def _prepare(self, image):
        self._alpha = _rng.uniform(max(0.0, 1 - self.value), 1 + self.value)

    def _blend(self, image, other):
        if self.value == 0:
            return image
        out = image.astype(np.float64) * self._alpha + other * (1 - self._alpha)
        if image.dtype == np.uint8:
            out = np.clip(out, 0, 255)
        return _restore_dtype(out, image)


class Brightness(_ColorTransform):
    """Multiplies by a random factor in [max(0, 1 - value), 1 + value]."""

    def _apply_image(self, image):
        return self._blend(image, 0.0)


BrightnessTransform = Brightness


class Contrast(_ColorTransform):
    """Blends with the mean grey level by a random factor in [1 - value, 1 + value]."""

    def _apply_image(self, image):
        return self._blend(image, _gray(image).mean())


class Saturation(_ColorTransform):
    """Blends with the per-pixel grey image (no-op on single-channel images)."""

    def _apply_image(self, image):
        if image.shape[2] != 3:
            return image
        return self._blend(image, _gray(image))


def _bgr_to_hsv(f):
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    mx = f.max(-1)
    mn = f.min(-1)
    d = mx - mn
    safe = np.where(d == 0, 1, d)
    h = np.where(mx == r, ((g - b) / safe) % 6,
                 np.where(mx == g, (b - r) / safe + 2, (r - g) / safe + 4)) / 6.0
    h = np.where(d == 0, 0.0, h)
    s = np.where(mx == 0, 0.0, d / np.where(mx == 0, 1, mx))
    return h, s, mx


def _hsv_to_bgr(h, s, v):
    i = np.floor(h * 6).astype(np.int64) % 6
    f = h * 6 - np.floor(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([b, g, r], -1)


class Hue(VisionTransform):
    """Rotates the hue by a random amount in [-value, value] turns (value <= 0.5)."""

    def __init__(self, value=0, order=None):
        super().__init__(order)
        if not 0 <= value <= 0.5:
            raise ValueError(f"Hue value must be in [0, 0.5], got {value}")
        self.value = value

    def _prepare(self, image):
        self._shift = _rng.uniform(-self.value, self.value)

    def _apply_image(self, image):
        if self.value == 0 or image.shape[2] != 3:
            return image
        h, s, v = _bgr_to_hsv(image.astype(np.float64))
        return _restore_dtype(_hsv_to_bgr((h + self._shift) % 1.0, s, v), image)


class ColorJitter(VisionTransform):
    """Brightness, contrast, saturation and hue jitter, applied in a random order."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0, order=None):
        super().__init__(order)
        self.transforms = [Brightness(brightness), Contrast(contrast), Saturation(saturation),
                           Hue(hue)]

    def _apply_image(self, image):
        for i in _rng.permutation(4):
            image = self.transforms[i].apply(image)
        return image


class Lighting(VisionTransform):
    """AlexNet-style PCA lighting noise with standard deviation ``scale``."""

    _eigval = np.array([0.2175, 0.0188, 0.0045]) * 255
    _eigvec = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140],
                        [-0.5836, -0.6948, 0.4203]])

    def __init__(self, scale, order=None):
        super().__init__(order)
        self.scale = scale

    def _apply_image(self, image):
        if self.scale == 0 or image.shape[2] != 3:
            return image
        alpha = _rng.normal(0, self.scale, 3)
        rgb = self._eigvec @ (alpha * self._eigval)
        return _restore_dtype(image.astype(np.float64) + rgb[::-1], image)
