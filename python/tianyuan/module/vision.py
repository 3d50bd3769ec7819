"""Vision modules: wrappers of F.vision (Remap, Resize, Flip, Rot90, Rotate) and MegEngine's
image-augmentation modules (additive noise, blur / emboss / sharpen kernels, contrast,
dilation, crop-and-pad, mixup, cutmix, polygon filling).

Augmentations work on NCHW batches. Random parameters given as a tuple ``(a, b)`` are drawn
uniformly from ``[a, b)`` at each call from the module's own generator (``seed``), so two
modules with the same seed draw the same augmentations."""
import math
import numbers

import numpy as np

from .. import functional as F
from ..random.rng import RNG
from ..tensor import Tensor
from .module import Module

V = F.vision


# ---- wrappers of F.vision ----
class Remap(Module):
    """``F.vision.remap(inp, map_xy, border_mode, scalar, interp_mode)`` as a module."""

    def __init__(self, border_mode="replicate", scalar=0.0, interp_mode="linear", **kwargs):
        super().__init__(**kwargs)
        self.border_mode, self.scalar, self.interp_mode = border_mode, scalar, interp_mode

    def forward(self, inp, map_xy):
        return V.remap(inp, map_xy, self.border_mode, self.scalar, self.interp_mode)


class Resize(Module):
    """``F.vision.resize(inp, output_shape, interp_mode, format)`` as a module."""

    def __init__(self, output_shape, interp_mode="linear", format="NCHW", **kwargs):
        super().__init__(**kwargs)
        self.output_shape, self.interp_mode, self.format = output_shape, interp_mode, format

    def forward(self, inp):
        return V.resize(inp, self.output_shape, self.interp_mode, self.format)


class Flip(Module):
    """``F.vision.flip(inp, vertical, horizontal)`` (NHWC) as a module."""

    def __init__(self, vertical=True, horizontal=True, **kwargs):
        super().__init__(**kwargs)
        self.vertical, self.horizontal = vertical, horizontal

    def forward(self, inp):
        return V.flip(inp, self.vertical, self.horizontal)


class Rot90(Module):
    """``F.vision.rot90(inp, clockwise)`` (NHWC) as a module."""

    def __init__(self, clockwise=True, **kwargs):
        super().__init__(**kwargs)
        self.clockwise = clockwise

    def forward(self, inp):
        return V.rot90(inp, self.clockwise)


class Rotate(Module):
    """``F.vision.rotate(inp, angle, ...)`` as a module: rotation by ``angle`` degrees
    counter-clockwise about the image centre."""

    def __init__(self, angle, center=None, interp_mode="linear", border_mode="constant",
                 border_val=0.0, format="NHWC", **kwargs):
        super().__init__(**kwargs)
        self.angle, self.center = angle, center
        self.interp_mode, self.border_mode, self.border_val = interp_mode, border_mode, border_val
        self.format = format

    def forward(self, inp):
        return V.rotate(inp, self.angle, self.center, self.interp_mode, self.border_mode,
                        self.border_val, self.format)


class DeformablePSROIPooling(Module):
    """``F.deformable_psroi_pooling`` with its geometry fixed: ``forward(inp, rois, trans)``."""

    def __init__(self, no_trans, part_size, pooled_h, pooled_w, sample_per_part, spatial_scale,
                 trans_std=0.1, **kwargs):
        super().__init__(**kwargs)
        self.no_trans, self.part_size = no_trans, part_size
        self.pooled_h, self.pooled_w = pooled_h, pooled_w
        self.sample_per_part, self.spatial_scale = sample_per_part, spatial_scale
        self.trans_std = trans_std

    def forward(self, inp, rois, trans):
        return F.deformable_psroi_pooling(inp, rois, trans, self.no_trans, self.part_size,
                                          self.pooled_h, self.pooled_w, self.sample_per_part,
                                          self.spatial_scale, self.trans_std)


# ---- augmentation helpers ----
def _check_nchw(inp, name):
    if not isinstance(inp, Tensor):
        raise TypeError(f"{name}: expected a Tensor, got {type(inp).__name__}")
    if inp.ndim != 4:
        raise ValueError(f"{name}: expected an NCHW batch, got shape {tuple(inp.shape)}")


def _value_range(dtype):
    """(min, middle, max) of a dtype's values: what contrast pivots on and results clip to."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        return float(info.min), 0.0, float(info.max)
    if dtype.kind == "u":
        info = np.iinfo(dtype)
        return int(info.min), info.min + 0.5 * info.max, int(info.max)
    if dtype.kind == "i":
        info = np.iinfo(dtype)
        return int(info.min), -0.5, int(info.max)
    if dtype.kind == "b":
        return 0, None, 1
    raise TypeError(f"cannot estimate the value range of dtype {dtype}")


def _restore_dtype(out, dtype):
    """A float result back in the input's dtype: bool by > 0.5, integers clipped to their
    range (then truncated), float16 clipped to its range."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return out > 0.5
    if dtype.kind in "iu" or dtype == np.float16:
        lo, _, hi = _value_range(dtype)
        return F.clip(out, lo, hi).astype(dtype)
    return out


class _Random(Module):
    """A module with its own generator, which draws a parameter given as a number (fixed) or
    an ``(a, b)`` tuple (uniform in [a, b) at each call)."""

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and not isinstance(seed, numbers.Integral):
            raise TypeError(f"{type(self).__name__}: seed must be an int or None, got {seed!r}")
        self._seed = seed
        self._rng = RNG(seed)
        self._np = np.random.default_rng(seed)

    @property
    def seed(self):
        return self._seed

    @seed.setter
    def seed(self, seed):
        if not isinstance(seed, numbers.Integral):
            raise TypeError(f"{type(self).__name__}: seed must be an int, got {seed!r}")
        self._seed = seed
        self._rng = RNG(seed)
        self._np = np.random.default_rng(seed)

    def _draw(self, param, what):
        if isinstance(param, bool):
            raise TypeError(f"{type(self).__name__}: {what} cannot be a bool")
        if isinstance(param, numbers.Real):
            return float(param)
        if isinstance(param, tuple):
            if len(param) != 2:
                raise ValueError(f"{type(self).__name__}: {what} tuple must have exactly two "
                                 f"entries, got {len(param)}")
            return float(self._rng.uniform(float(param[0]), float(param[1]), (1,)).item())
        raise TypeError(f"{type(self).__name__}: {what} must be a number or an (a, b) tuple, "
                        f"got {type(param).__name__}")


# ---- additive noise ----
class AdditiveElemwise(_Random):
    """Adds noise drawn by ``sample(shape)``: one value per pixel shared by the channels
    (``per_channel=False``), or one per element (True)."""

    def __init__(self, per_channel=False, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not isinstance(per_channel, bool):
            raise TypeError(f"{type(self).__name__}: per_channel must be a bool, got "
                            f"{per_channel!r}")
        self.per_channel = per_channel

    def forward(self, inp):
        _check_nchw(inp, type(self).__name__)
        n, c, h, w = inp.shape
        if self.per_channel:
            noise = self.sample(tuple(inp.shape))
        else:
            noise = F.broadcast_to(self.sample((n, 1, h, w)), tuple(inp.shape))
        if inp.dtype.kind == "f":
            return inp + noise.astype(inp.dtype)
        return _restore_dtype(inp.astype("float32") + noise, inp.dtype)

    def sample(self, size):
        raise NotImplementedError(f"{type(self).__name__} must define sample(size)")


class AdditiveGaussianNoise(AdditiveElemwise):
    """Adds Gaussian noise N(mean, std^2)."""

    def __init__(self, mean=0.0, std=1.0, per_channel=False, seed=None, **kwargs):
        super().__init__(per_channel, seed, **kwargs)
        self.mean, self.std = float(mean), float(std)

    def sample(self, size):
        return self._rng.normal(self.mean, self.std, size)


class AdditiveLaplaceNoise(AdditiveElemwise):
    """Adds Laplace noise of location ``mean`` and scale ``std`` (inverse-CDF sampling)."""

    def __init__(self, mean=0.0, std=1.0, per_channel=False, seed=None, **kwargs):
        super().__init__(per_channel, seed, **kwargs)
        self.mean, self.std = float(mean), float(std)

    def sample(self, size):
        eps = float(np.finfo(np.float32).eps)
        u = self._rng.uniform(eps - 1.0, 1.0, size)
        return self.mean - self.std * F.sign(u) * F.log(1 - F.abs(u))


class AdditivePoissonNoise(AdditiveElemwise):
    """Adds Poisson(lam) noise (Knuth's product-of-uniforms count, truncated where the
    remaining probability is below 1e-12)."""

    def __init__(self, lam=1.0, per_channel=False, seed=None, **kwargs):
        super().__init__(per_channel, seed, **kwargs)
        if not lam >= 0 or not math.isfinite(lam):
            raise ValueError(f"AdditivePoissonNoise: lam must be finite and >= 0, got {lam}")
        self.lam = float(lam)

    def sample(self, size):
        lam = self.lam
        k = int(lam + 12 * math.sqrt(lam) + 30)  # P(X >= k) < 1e-12 for every lam
        u = self._rng.uniform(0.0, 1.0, tuple(size) + (k,))
        logs = F.cumsum(F.log(F.clip(u, lower=1e-30)), axis=len(size))
        return F.sum((logs > -lam).astype("float32"), axis=len(size))


# ---- convolution kernels ----
class ActiveBlur(_Random):
    """Convolves each channel with the 3x3 (or larger, odd) kernel ``get_kernel`` returns,
    the image padded by reflection; the result goes back to the input's dtype."""

    def forward(self, inp):
        _check_nchw(inp, type(self).__name__)
        c = inp.shape[1]
        k = np.asarray(self.get_kernel(inp, c), dtype=np.float32)
        r = k.shape[-1] // 2
        x = inp if inp.dtype.kind == "f" else inp.astype("float32")
        x = F.nn.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
        w = Tensor(np.broadcast_to(k, (c, 1, 1) + k.shape).copy(), dtype=x.dtype)
        return _restore_dtype(F.conv2d(x, w, groups=c), inp.dtype)

    def get_kernel(self, inp, c):
        raise NotImplementedError(f"{type(self).__name__} must define get_kernel(inp, c)")


_IDENTITY3 = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64)


class Emboss(ActiveBlur):
    """Blends the image with its embossed version: kernel (1 - alpha) I + alpha E, E =
    [[-1 - s, -s, 0], [-s, 1, s], [0, s, 1 + s]] for strength s."""

    def __init__(self, alpha, strength, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.alpha, self.strength = alpha, strength

    def get_kernel(self, inp, c):
        a, s = self._draw(self.alpha, "alpha"), self._draw(self.strength, "strength")
        effect = np.array([[-1 - s, -s, 0], [-s, 1, s], [0, s, 1 + s]])
        return (1 - a) * _IDENTITY3 + a * effect


class Sharpen(ActiveBlur):
    """Blends the image with its sharpened version: kernel (1 - alpha) I + alpha E, E the
    8-neighbour Laplacian with centre 8 + lightness."""

    def __init__(self, alpha, lightness, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.alpha, self.lightness = alpha, lightness

    def get_kernel(self, inp, c):
        a, light = self._draw(self.alpha, "alpha"), self._draw(self.lightness, "lightness")
        effect = -np.ones((3, 3))
        effect[1, 1] = 8 + light
        return (1 - a) * _IDENTITY3 + a * effect


class GaussianBlur(ActiveBlur):
    """Gaussian blur of standard deviation ``sigma`` (a number or an ``(a, b)`` range):
    a (2 ceil(3 sigma) + 1)-wide normalised kernel (at most the image size), the image padded
    by reflection; sigma below 0.01 leaves the image as is."""

    def __init__(self, sigma=(0.0, 3.0), seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.sigma = sigma

    def get_kernel(self, inp, c):
        s = self._draw(self.sigma, "sigma")
        if s < 0:
            raise ValueError(f"GaussianBlur: sigma must be >= 0, got {s}")
        if s < 0.01:
            return np.ones((1, 1))
        # the reflection padding needs the radius below the image size: a small image gets
        # the kernel truncated there (and renormalised)
        r = min(int(math.ceil(3 * s)), inp.shape[2] - 1, inp.shape[3] - 1)
        if r < 1:
            return np.ones((1, 1))
        t = np.arange(-r, r + 1)
        g = np.exp(-0.5 * (t / s) ** 2)
        g /= g.sum()
        return np.outer(g, g)


class Dilation(Module):
    """Grey-level dilation: each pixel becomes the maximum of its ``kernel_size`` x
    ``kernel_size`` neighbourhood (odd size; the image is not padded beyond its border)."""

    def __init__(self, kernel_size=3, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(kernel_size, numbers.Integral) or kernel_size < 1 or \
                kernel_size % 2 == 0:
            raise ValueError(f"Dilation: kernel_size must be a positive odd int, got "
                             f"{kernel_size!r}")
        self.kernel_size = int(kernel_size)

    def forward(self, inp):
        _check_nchw(inp, "Dilation")
        k = self.kernel_size
        x = inp if inp.dtype.kind == "f" else inp.astype("float32")
        if k > 1:  # max pooling's padding never wins, so the border is not extended
            x = F.max_pool2d(x, k, stride=1, padding=k // 2)
        return _restore_dtype(x, inp.dtype)


class LinearContrast(_Random):
    """Scales contrast about the dtype's middle value: ``mid + alpha * (v - mid)`` (127 for
    uint8, 0 for floats), with ``alpha`` drawn per image (or per image and channel)."""

    def __init__(self, alpha, per_channel=False, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        self.alpha, self.per_channel = alpha, per_channel

    def _alpha(self, size):
        if isinstance(self.alpha, bool):
            raise TypeError("LinearContrast: alpha cannot be a bool")
        if isinstance(self.alpha, numbers.Real):
            return F.full(size, float(self.alpha))
        if isinstance(self.alpha, tuple) and len(self.alpha) == 2:
            return self._rng.uniform(float(self.alpha[0]), float(self.alpha[1]), size)
        raise TypeError(f"LinearContrast: alpha must be a number or an (a, b) tuple, got "
                        f"{self.alpha!r}")

    def forward(self, inp):
        _check_nchw(inp, "LinearContrast")
        n, c = inp.shape[:2]
        alpha = self._alpha((n, c if self.per_channel else 1, 1, 1))
        mid = 127.0 if inp.dtype == np.uint8 else _value_range(inp.dtype)[1]
        out = mid + (inp.astype("float32") - mid) * alpha
        if inp.dtype == np.uint8:
            return F.clip(out, 0, 255).astype("uint8")
        return out.astype(inp.dtype)


class CropAndPad(_Random):
    """Crops (negative amounts) or pads (positive) every image by ``px`` pixels or
    ``percent`` of its size on the (top, right, bottom, left) sides: one number for all
    sides, four numbers, or ``(a, b)`` ranges drawn per call. Padding is constant
    (``pad_cval``), reflect or replicate (``pad_mode``); ``keep_size`` resizes the result back
    to the input size (bilinear)."""

    _SIDES = ("top", "right", "bottom", "left")

    def __init__(self, px=None, percent=None, pad_mode="constant", pad_cval=0.0,
                 keep_size=True, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if (px is None) == (percent is None):
            raise ValueError("CropAndPad: give exactly one of px and percent")
        if pad_mode not in ("constant", "reflect", "replicate", "edge"):
            raise ValueError(f"CropAndPad: unsupported pad_mode {pad_mode!r}")
        self.px, self.percent = px, percent
        self.pad_mode, self.pad_cval, self.keep_size = pad_mode, float(pad_cval), keep_size

    def _amounts(self, h, w):
        spec = self.px if self.px is not None else self.percent
        per_side = list(spec) if isinstance(spec, list) or (
            isinstance(spec, tuple) and len(spec) == 4) else [spec] * 4
        out = []
        for side, v, size in zip(self._SIDES, per_side, (h, w, h, w)):
            d = self._draw(v, side)
            out.append(int(round(d if self.px is not None else d * size)))
        return out

    def forward(self, inp):
        _check_nchw(inp, "CropAndPad")
        h, w = inp.shape[2], inp.shape[3]
        top, right, bottom, left = self._amounts(h, w)
        if h - max(-top, 0) - max(-bottom, 0) < 1 or w - max(-left, 0) - max(-right, 0) < 1:
            raise ValueError(f"CropAndPad: cropping {(top, right, bottom, left)} leaves no "
                             f"pixel of a {h}x{w} image")
        x = inp[:, :, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0)]
        pads = ((0, 0), (0, 0), (max(top, 0), max(bottom, 0)), (max(left, 0), max(right, 0)))
        if any(p for pair in pads for p in pair):
            x = F.nn.pad(x, pads, mode=self.pad_mode, constant_value=self.pad_cval)
        if self.keep_size and (x.shape[2], x.shape[3]) != (h, w):
            y = V.interpolate(x if x.dtype.kind == "f" else x.astype("float32"), (h, w))
            return _restore_dtype(y, inp.dtype)
        return x


def _soft_target(target, name):
    if target is None:
        return None
    if not isinstance(target, Tensor) or target.dtype.kind != "f":
        raise TypeError(f"{name}: target must be a float Tensor (one-hot or soft labels)")
    return target


class Mixup(_Random):
    """Mixup (Zhang et al. 2018): ``lam * x + (1 - lam) * x[perm]`` with ``lam`` drawn from
    Beta(alpha, alpha) and ``perm`` a random permutation of the batch; a float ``target``
    (one-hot or soft labels) is mixed the same way and returned with the images."""

    def __init__(self, alpha=1.0, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not alpha > 0:
            raise ValueError(f"Mixup: alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)

    def forward(self, inp, target=None):
        _check_nchw(inp, "Mixup")
        target = _soft_target(target, "Mixup")
        lam = float(self._np.beta(self.alpha, self.alpha))
        perm = Tensor(self._np.permutation(inp.shape[0]).astype(np.int32))
        out = inp * lam + inp[perm] * (1 - lam)
        if target is None:
            return out
        return out, target * lam + target[perm] * (1 - lam)


class Cutmix(_Random):
    """CutMix (Yun et al. 2019): a box covering about ``1 - lam`` of the image (``lam`` from
    Beta(beta, beta), the centre uniform) is pasted from ``x[perm]``; a float ``target`` is
    mixed by the box's exact area fraction and returned with the images."""

    def __init__(self, beta=1.0, seed=None, **kwargs):
        super().__init__(seed, **kwargs)
        if not beta > 0:
            raise ValueError(f"Cutmix: beta must be > 0, got {beta}")
        self.beta = float(beta)

    def forward(self, inp, target=None):
        _check_nchw(inp, "Cutmix")
        target = _soft_target(target, "Cutmix")
        n, _, h, w = inp.shape
        lam = float(self._np.beta(self.beta, self.beta))
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(self._np.integers(h)), int(self._np.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        perm = Tensor(self._np.permutation(n).astype(np.int32))
        mask = np.zeros((1, 1, h, w), dtype=bool)
        mask[..., y0:y1, x0:x1] = True
        out = F.where(F.broadcast_to(Tensor(mask), tuple(inp.shape)), inp[perm], inp)
        if target is None:
            return out
        kept = 1.0 - (y1 - y0) * (x1 - x0) / float(h * w)
        return out, target * kept + target[perm] * (1 - kept)


def _polygon_mask(h, w, points):
    """Pixels whose centres lie inside the polygon by the even-odd rule (a centre on a left or
    top edge is inside, on a right or bottom edge outside)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) < 3:
        raise ValueError(f"FillPoly: a polygon needs at least 3 vertices, got {len(pts)}")
    ys, xs = np.mgrid[0:h, 0:w]
    inside = np.zeros((h, w), dtype=bool)
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    for ax, ay, bx, by in zip(x0, y0, x1, y1):
        crosses = (ay > ys) != (by > ys)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = ax + (ys - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (xs < xcross)
    return inside


class FillPoly(Module):
    """Fills polygons with a value: ``forward(inp, polygons)`` where ``polygons[i]`` is a
    list of ``(K, 2)`` vertex arrays (x, y) for image i; pixels whose centres lie inside a
    polygon (even-odd rule) take ``fill`` (a number, or one value per channel)."""

    def __init__(self, fill=0.0, **kwargs):
        super().__init__(**kwargs)
        self.fill = fill

    def forward(self, inp, polygons):
        _check_nchw(inp, "FillPoly")
        n, c, h, w = inp.shape
        if len(polygons) != n:
            raise ValueError(f"FillPoly: {len(polygons)} polygon lists for {n} images")
        mask = np.zeros((n, 1, h, w), dtype=bool)
        for i, polys in enumerate(polygons):
            for p in polys:
                mask[i, 0] |= _polygon_mask(h, w, p)
        fill = np.broadcast_to(np.asarray(self.fill, dtype=np.float64).reshape(1, -1, 1, 1),
                               (1, c, 1, 1))
        value = F.broadcast_to(Tensor(fill.astype(inp.dtype), dtype=inp.dtype), tuple(inp.shape))
        return F.where(F.broadcast_to(Tensor(mask), tuple(inp.shape)), value, inp)
