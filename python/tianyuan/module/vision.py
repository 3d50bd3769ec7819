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
    """MegEngine's ``Remap()``: ``forward(inp, map_1, map_2, interpolation="linear",
    borderMode="replicate", borderValue=0.0)``. ``map_1`` holds (x, y) pairs ``(N, OH, OW, 2)``
    when ``map_2`` is empty, else the x map and ``map_2`` the y map (both ``(N, OH, OW)``)."""

    def forward(self, inp, map_1, map_2, interpolation="linear", borderMode="replicate",
                borderValue=0.0):
        for name, t in (("inp", inp), ("map_1", map_1), ("map_2", map_2)):
            if not isinstance(t, Tensor):
                raise TypeError(f"Remap: {name} must be a Tensor, got {type(t).__name__}")
        if map_1.size == 0:
            raise ValueError("Remap: map_1 is empty")
        map_xy = map_1
        if map_2.size > 0:
            if tuple(map_1.shape) != tuple(map_2.shape):
                raise ValueError(f"Remap: map_1 {tuple(map_1.shape)} and map_2 "
                                 f"{tuple(map_2.shape)} must have the same shape")
            map_xy = F.stack([map_1, map_2], axis=map_1.ndim)
        return V.remap(inp, map_xy, borderMode, borderValue, interpolation)


class Resize(Module):
    """MegEngine's ``Resize(size, format="NCHW", imode="linear")``: ``F.vision.resize`` to
    ``size`` = (h, w)."""

    def __init__(self, size, format="NCHW", imode="linear", **kwargs):
        super().__init__(**kwargs)
        self.size, self.format, self.imode = size, format, imode

    def forward(self, inp):
        if self.format not in ("NCHW", "NHWC"):
            raise ValueError(f"Resize: format must be NCHW or NHWC, got {self.format!r}")
        return V.resize(inp, self.size, interp_mode=self.imode, format=self.format)


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
    """MegEngine's ``Rotate(angle=0.0, format="NCHW", interp_mode="bilinear")``:
    ``F.vision.rotate`` by ``angle`` degrees counter-clockwise about the image centre."""

    def __init__(self, angle=0.0, format="NCHW", interp_mode="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.angle, self.format, self.interp_mode = angle, format, interp_mode

    def forward(self, inp):
        return V.rotate(inp, self.angle, interp_mode=self.interp_mode, format=self.format)


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
        # MegEngine returns add(inp, noise): integer images come back as float32, unclipped
        return inp + noise

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
    """Adds Poisson(lam) noise drawn by the module's generator (``RNG(seed).poisson``, as
    MegEngine's)."""

    def __init__(self, lam=1.0, per_channel=False, seed=None, **kwargs):
        super().__init__(per_channel, seed, **kwargs)
        if not lam >= 0 or not math.isfinite(lam):
            raise ValueError(f"AdditivePoissonNoise: lam must be finite and >= 0, got {lam}")
        self.lam = float(lam)

    def sample(self, size):
        return self._rng.poisson(self.lam, tuple(size))


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


# OpenCV's fixed kernels for small odd sizes when sigma <= 0
_SMALL_GAUSSIAN = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
                   7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}


def _gaussian_kernel(n, sigma):
    """cv2.getGaussianKernel(n, sigma): a fixed table for n <= 7 and sigma <= 0, else the
    sampled Gaussian (sigma <= 0 meaning 0.3 ((n - 1) / 2 - 1) + 0.8), normalised."""
    if sigma <= 0 and n in _SMALL_GAUSSIAN:
        return np.array(_SMALL_GAUSSIAN[n])
    if sigma <= 0:
        sigma = 0.3 * ((n - 1) * 0.5 - 1) + 0.8
    x = np.arange(n) - (n - 1) / 2.0
    k = np.exp(-x * x / (2.0 * sigma * sigma))
    return k / k.sum()


def _border_index(i, n, mode):
    """The source index OpenCV's border mode reads for position i of an axis of length n
    (None: outside, a constant border)."""
    if 0 <= i < n:
        return i
    if mode == "CONSTANT":
        return None
    if mode == "REPLICATE":
        return min(max(i, 0), n - 1)
    if mode == "WRAP":
        return i % n
    if n == 1:
        return 0
    period = 2 * n if mode == "REFLECT" else 2 * n - 2  # REFLECT repeats the edge pixel
    j = i % period
    if mode == "REFLECT":
        return j if j < n else period - 1 - j
    return j if j < n else period - j


def _filter_matrix(n, kernel, mode):
    """(n, n) matrix applying a 1-d centred kernel along an axis with a border mode."""
    r = len(kernel) // 2
    m = np.zeros((n, n))
    for i in range(n):
        for t, w in enumerate(kernel):
            j = _border_index(i + t - r, n, mode)
            if j is not None:
                m[i, j] += w
    return m


class GaussianBlur(Module):
    """MegEngine's ``GaussianBlur(kernel_size, sigma_x=0, sigma_y=0, border_mode="REPLICATE")``
    of NHWC images (OpenCV's GaussianBlur): separable kernels from cv2.getGaussianKernel
    (sigma_y 0 means sigma_x; a sigma <= 0 is derived from the kernel size), border modes
    REPLICATE, REFLECT, REFLECT_101 (ISOLATED reads the same), WRAP and CONSTANT (zeros).
    Integer images are rounded back to their dtype."""

    _MODES = ("REPLICATE", "REFLECT", "REFLECT_101", "WRAP", "CONSTANT", "TRANSPARENT",
              "ISOLATED")

    def __init__(self, kernel_size, sigma_x=0, sigma_y=0, border_mode="REPLICATE", **kwargs):
        super().__init__(**kwargs)
        if border_mode not in self._MODES:
            raise ValueError(f"GaussianBlur: border_mode must be one of {self._MODES}, got "
                             f"{border_mode!r}")
        ks = (kernel_size, kernel_size) if isinstance(kernel_size, numbers.Integral) \
            else tuple(kernel_size)
        if len(ks) != 2 or any(not isinstance(k, numbers.Integral) or k < 1 or k % 2 == 0
                               for k in ks):
            raise ValueError(f"GaussianBlur: kernel_size must be positive odd ints, got "
                             f"{kernel_size!r}")
        self.kernel_size = ks
        self.sigma_x, self.sigma_y, self.border_mode = sigma_x, sigma_y, border_mode

    def forward(self, inp):
        if not isinstance(inp, Tensor):
            raise TypeError(f"GaussianBlur: expected a Tensor, got {type(inp).__name__}")
        if inp.ndim != 4:
            raise ValueError(f"GaussianBlur: expected NHWC images, got shape {tuple(inp.shape)}")
        mode = {"ISOLATED": "REFLECT_101"}.get(self.border_mode, self.border_mode)
        if mode == "TRANSPARENT":
            raise ValueError("GaussianBlur: border_mode TRANSPARENT has no values outside "
                             "the image to filter with (OpenCV rejects it too)")
        sx = float(self.sigma_x)
        sy = float(self.sigma_y) if self.sigma_y > 0 else sx
        kh, kw = self.kernel_size
        n, h, w, c = inp.shape
        x = inp if inp.dtype.kind == "f" else inp.astype("float32")
        my = Tensor(_filter_matrix(h, _gaussian_kernel(kh, sy), mode), dtype=x.dtype)
        mx = Tensor(_filter_matrix(w, _gaussian_kernel(kw, sx), mode).T, dtype=x.dtype)
        y = F.matmul(my, x.reshape((n, h, w * c))).reshape((n, h, w, c))  # along H
        y = F.matmul(y.transpose((0, 1, 3, 2)), mx).transpose((0, 1, 3, 2))  # along W
        if inp.dtype.kind in "iu":
            lo, _, hi = _value_range(inp.dtype)
            return F.clip(F.round(y), lo, hi).astype(inp.dtype)
        return y


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
        if inp.dtype.kind in "iu" and inp.dtype != np.uint8:
            mid = float(int(mid))  # MegEngine truncates an integer dtype's middle value
        out = mid + (inp.astype("float32") - mid) * alpha
        if inp.dtype == np.uint8:
            return F.clip(out, 0, 255).astype("uint8")
        return out.astype(inp.dtype)


def _round_away(v):
    return int(v + 0.5) if v > 0 else int(v - 0.5)


def _cropandpad_matrix(n, r, pad, mode, align_corners):
    """(n, n + 2r) weights (pad) or (n, n - 2r) weights (crop) resampling the padded or
    cropped axis back to n samples, as MegEngine's cropandpad kernel does: nearest takes
    floor(d * in / n); bilinear samples scale (d + 0.5) - 0.5 (clamped at 0; align_corners:
    d (in - 1) / (n - 1)) and repeats the last cell."""
    m_in = n + 2 * r if pad else n - 2 * r
    m = np.zeros((n, m_in))
    scale = np.float32(m_in) / np.float32(n)
    for d in range(n):
        if mode == "nearest":
            m[d, min(int(math.floor(np.float32(d) * scale)), m_in - 1)] = 1.0
            continue
        if align_corners:
            src = (m_in - 1) / (n - 1) * d if n > 1 else 0.0
        else:
            src = max(float(scale) * (d + 0.5) - 0.5, 0.0)
        i = int(src)
        step = 1 if i < m_in - 1 else 0
        lam = src - i
        m[d, i] += 1 - lam
        m[d, i + step] += lam
    return m


class CropAndPad(Module):
    """MegEngine's ``CropAndPad(mode="bilinear", align_corners=False)``:
    ``forward(inp, percent, pad_val=None)`` with ``percent`` and ``pad_val`` one value per
    image. Image n (NCHW) is padded on every side by round(H |p|) rows and round(W |p|)
    columns of ``pad_val[n]`` when ``p = percent[n] > 0``, else cropped by as many, and
    resized back to H x W (``mode`` bilinear or nearest, ``align_corners`` as interpolate's).
    ``pad_val`` None pads with 0."""

    def __init__(self, mode="bilinear", align_corners=False, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"CropAndPad: mode must be 'bilinear' or 'nearest', got {mode!r}")
        self.mode, self.align_corners = mode, bool(align_corners)

    def forward(self, inp, percent, pad_val=None):
        _check_nchw(inp, "CropAndPad")
        n, c, h, w = inp.shape
        per = np.asarray(percent.numpy() if isinstance(percent, Tensor) else percent,
                         dtype=np.float64).reshape(-1)
        if pad_val is None or (isinstance(pad_val, Tensor) and pad_val.size == 0):
            vals = np.zeros(n)
        else:
            vals = np.asarray(pad_val.numpy() if isinstance(pad_val, Tensor) else pad_val,
                              dtype=np.float64).reshape(-1)
        if len(per) != n or len(vals) != n:
            raise ValueError(f"CropAndPad: percent and pad_val need one value per image ({n}), "
                             f"got {len(per)} and {len(vals)}")
        x = inp if inp.dtype.kind == "f" else inp.astype("float32")
        outs = []
        for i in range(n):
            pad = per[i] > 0
            rh, rw = _round_away(h * abs(per[i])), _round_away(w * abs(per[i]))
            if not pad and (h - 2 * rh < 1 or w - 2 * rw < 1):
                raise ValueError(f"CropAndPad: cropping {per[i]} leaves no pixel of a {h}x{w} "
                                 "image")
            xi = x[i]
            if pad and (rh or rw):
                xi = F.nn.pad(xi, ((0, 0), (rh, rh), (rw, rw)), constant_value=float(vals[i]))
            elif not pad:
                xi = xi[:, rh:h - rh, rw:w - rw]
            my = Tensor(_cropandpad_matrix(h, rh, pad, self.mode, self.align_corners), dtype=x.dtype)
            mx = Tensor(_cropandpad_matrix(w, rw, pad, self.mode, self.align_corners).T,
                        dtype=x.dtype)
            outs.append(F.matmul(F.matmul(my, xi), mx))
        out = F.stack(outs, axis=0)
        return out if inp.dtype.kind == "f" else out.astype(inp.dtype)


def _check_pairs(name, data1, label1, data2, label2):
    for what, t in (("data1", data1), ("label1", label1), ("data2", data2),
                    ("label2", label2)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}: {what} must be a Tensor, got {type(t).__name__}")
    _check_nchw(data1, name)
    if tuple(data1.shape) != tuple(data2.shape):
        raise ValueError(f"{name}: data1 {tuple(data1.shape)} and data2 {tuple(data2.shape)} "
                         "must have the same shape")


class Mixup(Module):
    """MegEngine's ``Mixup(beta, seed=None)``: ``forward(data1, label1, data2, label2)``
    returns ``(lam data1 + (1 - lam) data2, lam label1 + (1 - lam) label2)`` with one
    ``lam ~ Beta(beta, beta)`` per sample (kept as ``self.lamb``)."""

    def __init__(self, beta, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and not isinstance(seed, numbers.Integral):
            raise TypeError(f"Mixup: seed must be an int or None, got {seed!r}")
        self.beta = beta
        self._rng = RNG(seed)

    def sample(self, batch):
        return self._rng.beta(self.beta, self.beta, size=(batch,))

    def forward(self, data1, label1, data2, label2):
        _check_pairs("Mixup", data1, label1, data2, label2)
        b = data1.shape[0]
        self.lamb = self.sample(b)
        label = self.lamb * label1 + (1.0 - self.lamb) * label2
        lam = self.lamb.reshape((b, 1, 1, 1))
        return lam * data1 + (1 - lam) * data2, label


class Cutmix(Module):
    """MegEngine's ``Cutmix(beta, seed=None)``: ``forward(data1, label1, data2, label2)``.
    Per sample, ``lam ~ Beta(beta, beta)``; a box of ``floor(H sqrt(1 - lam))`` by
    ``floor(W sqrt(1 - lam))`` centred at (floor(U[0, H)), floor(U[0, W))) (half sizes
    truncated, clipped to the image) is taken from ``data2``; labels mix by ``lam``."""

    def __init__(self, beta, seed=None, **kwargs):
        super().__init__(**kwargs)
        if seed is not None and not isinstance(seed, numbers.Integral):
            raise TypeError(f"Cutmix: seed must be an int or None, got {seed!r}")
        self.beta = beta
        self._beta_rng, self._uniform_rng = RNG(seed), RNG(seed)

    def sample(self, batch):
        return self._beta_rng.beta(self.beta, self.beta, size=(batch,))

    def forward(self, data1, label1, data2, label2):
        _check_pairs("Cutmix", data1, label1, data2, label2)
        b, _, h, w = data1.shape
        self.lamb = self.sample(b)
        label = self.lamb * label1 + (1.0 - self.lamb) * label2
        rat = F.sqrt(1.0 - self.lamb)
        self.cut_h, self.cut_w = F.floor(h * rat), F.floor(w * rat)
        self.cx = F.floor(self._uniform_rng.uniform(high=h, size=(b,)))
        self.cy = F.floor(self._uniform_rng.uniform(high=w, size=(b,)))
        cut_h, cut_w = self.cut_h.numpy(), self.cut_w.numpy()
        cx, cy = self.cx.numpy(), self.cy.numpy()
        mask = np.zeros((b, 1, h, w), dtype=bool)
        for i in range(b):
            hh, hw = int(cut_h[i] / 2), int(cut_w[i] / 2)
            x1, x2 = int(np.clip(cx[i] - hh, 0, h)), int(np.clip(cx[i] + hh, 0, h))
            y1, y2 = int(np.clip(cy[i] - hw, 0, w)), int(np.clip(cy[i] + hw, 0, w))
            mask[i, 0, x1:x2, y1:y2] = True  # rows x1..x2 - 1, columns y1..y2 - 1
        data = F.where(F.broadcast_to(Tensor(mask), tuple(data1.shape)), data2, data1)
        return data, label


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
