"""op_db rows of the MegEngine functions written as compositions of table ops (issue 11):
windows, 3-d / local / region-restricted / deformable convolutions, einsum and the small nn
and tensor functions. Through the generic suites each is checked against a float64 NumPy
reference, non-contiguous, by first- and second-order gradients, traced, symbolic, deployed
(trace.dump + the C runtime, bitwise) and at several thread counts."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F

from breadth import np_refs as R  # tests/python/breadth (on sys.path beside ops)
from .op_db import OpInfo, Sample, rand


_O = ty._C.ops


def _z(*shape, dt="float32"):
    return ty.tensor(np.zeros(shape), dtype=dt)


def _sw(x, **kw):
    return F.sliding_window(x, **kw)


def _np_sw(x, kernel_size, padding=0, stride=1, dilation=1):
    two = [(v, v) if isinstance(v, int) else tuple(v) for v in (kernel_size, padding, stride,
                                                               dilation)]
    return R.sliding_window(x, *two)


def _sw_samples(rng):
    return [Sample(rand(rng, (1, 2, 4, 3)), kernel_size=2),
            Sample(rand(rng, (2, 1, 5, 4)), kernel_size=(2, 3), padding=1, stride=(2, 1),
                   dilation=(1, 2))]


def _np_swt(y, output_size, kernel_size, padding=0, stride=1, dilation=1):
    two = [(v, v) if isinstance(v, int) else tuple(v) for v in (kernel_size, padding, stride,
                                                               dilation)]
    return R.sliding_window_transpose(y, output_size, *two)


def _swt_samples(rng):
    return [Sample(rand(rng, (1, 2, 3, 2, 2, 2)), output_size=(4, 3), kernel_size=2),
            Sample(rand(rng, (1, 1, 3, 3, 2, 2)), output_size=(5, 4), kernel_size=2, padding=1,
                   stride=2)]


def _np_conv3d(x, w, stride=1, padding=0, dilation=1, groups=1):
    t = [(v,) * 3 if isinstance(v, int) else tuple(v) for v in (stride, padding, dilation)]
    return R.conv3d(x, w, *t, groups)


def _conv3d_samples(rng):
    return [Sample(rand(rng, (1, 2, 3, 3, 2)), rand(rng, (2, 2, 2, 2, 1))),
            Sample(rand(rng, (1, 2, 3, 4, 3)), rand(rng, (2, 1, 2, 2, 2)), stride=(1, 2, 1),
                   padding=1, dilation=(1, 1, 2), groups=2)]


def _np_convt3d(x, w, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    t = [(v,) * 3 if isinstance(v, int) else tuple(v)
         for v in (stride, padding, output_padding, dilation)]
    return R.conv_transpose3d(x, w, *t, groups)


def _convt3d_samples(rng):
    return [Sample(rand(rng, (1, 2, 2, 2, 2)), rand(rng, (2, 1, 2, 2, 2))),
            Sample(rand(rng, (1, 2, 2, 3, 2)), rand(rng, (2, 2, 2, 1, 2)), stride=2, padding=1,
                   output_padding=(1, 0, 1), groups=2)]


def _np_local(x, w, stride=1, padding=0):
    t = [(v, v) if isinstance(v, int) else tuple(v) for v in (stride, padding)]
    return R.local_conv2d(x, w if w.ndim == 7 else w[None], t[0], t[1], (1, 1))


def _local_samples(rng):
    return [Sample(rand(rng, (2, 2, 3, 3)), rand(rng, (2, 2, 2, 2, 2, 3))),
            Sample(rand(rng, (1, 2, 4, 3)), rand(rng, (2, 3, 2, 1, 2, 2, 1)), stride=2,
                   padding=1)]


def _rrc(x, w, rin, rout, **kw):
    return F.region_restricted_conv(x, w, rin, rout, **kw)


def _np_rrc(x, w, rin, rout, groups=1, padding=0):
    p = (padding, padding)
    return R.region_restricted_conv(x, w, rin, rout, (1, 1), p, (1, 1))


def _rrc_samples(rng):
    def maps(n, h, w, oh, ow):
        return (rng.integers(0, 2, (n, h, w)).astype(np.int32),
                rng.integers(0, 2, (n, oh, ow)).astype(np.int32))
    return [Sample(rand(rng, (1, 2, 3, 3)), rand(rng, (2, 1, 1, 2, 2)), *maps(1, 3, 3, 2, 2),
                   groups=2),
            Sample(rand(rng, (2, 2, 3, 2)), rand(rng, (1, 2, 2, 2, 2)), *maps(2, 3, 2, 4, 3),
                   padding=1)]


def _np_deform(x, w, off, mask, padding=0):
    def safe(o):  # a non-finite position reads nothing (every corner is out of the image)
        return np.where(np.isfinite(o), o, 1e9)
    return R.deformable_conv2d(x, w, safe(off), mask, (1, 1), (padding, padding), (1, 1), 1)


def _deform_samples(rng):
    def off(shape):  # kept off integer positions, where the bilinear weights have kinks
        return rng.uniform(0.15, 0.85, shape) * rng.choice([-1, 1], shape)
    return [Sample(rand(rng, (1, 2, 3, 3)), rand(rng, (2, 2, 2, 2)), off((1, 8, 2, 2)),
                   rng.uniform(0.2, 1.0, (1, 4, 2, 2))),
            Sample(rand(rng, (1, 2, 2, 3)), rand(rng, (3, 2, 2, 2)), off((1, 16, 3, 4)),
                   rng.uniform(0.2, 1.0, (1, 8, 3, 4)), padding=1)]


def _einsum_samples(rng):
    return [Sample(rand(rng, (2, 3)), rand(rng, (3, 4)), eq="ij,jk->ik"),
            Sample(rand(rng, (2, 3, 4)), rand(rng, (4, 2)), eq="bij,jb->ib"),
            Sample(rand(rng, (3, 3)), rand(rng, (3,)), eq="ii,i->i")]


def _einsum(a, b, eq):
    return F.einsum(eq, a, b)


def _np_einsum(a, b, eq):
    return np.einsum(eq, a, b)


def _lrn_ref(x, kernel_size=5, k=2.0, alpha=1e-4, beta=0.75):
    half, c = kernel_size // 2, x.shape[1]
    s = np.zeros_like(x)
    for ch in range(c):
        s[:, ch] = (x[:, max(0, ch - half):min(c, ch + half + 1)] ** 2).sum(axis=1)
    return x / (k + alpha * s) ** beta


def _gn(x, w, b, axes):
    return F.general_norm(x, axes, True, w, b)


def _np_gn(x, w, b, axes):
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    shape = [x.shape[a] if a in axes else 1 for a in range(x.ndim)]
    return (x - m) / np.sqrt(v + 1e-5) * w.reshape(shape) + b.reshape(shape)


def _np_pixel_shuffle(x, upscale_factor):
    r = upscale_factor
    n, c, h, w = x.shape
    return x.reshape(n, c // (r * r), r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(
        n, c // (r * r), h * r, w * r)


ROWS = [
    OpInfo("sliding_window", _sw, _np_sw, _sw_samples, ops=["sliding_window"],
           dtypes=("float32", "int32"),
           errors=[(lambda: _O["sliding_window"](_z(3, 3)), ValueError,
                    "sliding_window: expects an (N, C, H, W) input, got (3, 3)"),
                   (lambda: _O["sliding_window"](_z(1, 1, 2, 2), window_h=3), ValueError,
                    "sliding_window: the window 3x1 (dilation 1x1) does not fit"),
                   (lambda: _O["sliding_window"](_z(1, 1, 2, 2), pad_h=2**62), ValueError,
                    "sliding_window: the window geometry (size, padding, dilation) overflows")]),
    OpInfo("sliding_window_transpose", F.sliding_window_transpose, _np_swt, _swt_samples,
           ops=["sliding_window_transpose"],
           errors=[(lambda: _O["sliding_window_transpose"](_z(1, 1, 2, 2, 2, 2), out_h=4,
                                                          out_w=4, window_h=2, window_w=2),
                    ValueError, "sliding_window_transpose: input (1, 1, 2, 2, 2, 2) does not "
                    "match a 4x4 output"),
                   (lambda: _O["sliding_window_transpose"](_z(1, 1, 1, 1, 1, 1)), ValueError,
                    "sliding_window_transpose: out_h and out_w must be positive"),
                   (lambda: _O["sliding_window_transpose"](_z(1, 1, 1, 1, 1, 1, dt="int32"),
                                                          out_h=1, out_w=1), TypeError,
                    "sliding_window_transpose: expects a float32 or float64 input")]),
    OpInfo("conv3d", F.conv3d, _np_conv3d, _conv3d_samples, ops=["conv3d"], rtol=1e-5,
           errors=[(lambda: F.conv3d(_z(1, 2, 3, 3), _z(1, 2, 1, 1, 1)), ValueError,
                    "conv3d: input must be 5-d")]),
    OpInfo("conv_transpose3d", F.conv_transpose3d, _np_convt3d, _convt3d_samples,
           ops=["conv_transpose3d"], rtol=1e-5,
           errors=[(lambda: F.conv_transpose3d(_z(1, 2, 2, 2, 2), _z(3, 1, 1, 1, 1)), ValueError,
                    "conv_transpose3d: weight (3, 1, 1, 1, 1) expects 3 input channels")]),
    OpInfo("local_conv2d", F.local_conv2d, _np_local, _local_samples, ops=["local_conv2d"],
           rtol=1e-5, errors=[(lambda: F.local_conv2d(_z(1, 1, 3, 3), _z(1, 1, 1, 1, 1, 1)),
                               ValueError, "local_conv2d: weight is for a 1x1 output")]),
    OpInfo("region_restricted_conv", _rrc, _np_rrc, _rrc_samples,
           ops=["region_restricted_conv"], nondiff_args=(2, 3), rtol=1e-5,
           errors=[(lambda: F.region_restricted_conv(_z(1, 1, 2, 2), _z(1, 1, 1, 1, 1),
                                                     _z(1, 2, 2), _z(1, 2, 2, dt="int32")),
                    TypeError, "region_restricted_conv: rin must be an integer map")]),
    OpInfo("deformable_conv2d", F.deformable_conv2d, _np_deform, _deform_samples,
           ops=["deformable_conv2d"], rtol=1e-5,
           errors=[(lambda: F.deformable_conv2d(_z(1, 1, 2, 2), _z(1, 1, 1, 1), _z(1, 3, 2, 2),
                                                _z(1, 1, 2, 2)), ValueError,
                    "deformable_conv2d: offset must be")]),
    OpInfo("einsum", _einsum, _np_einsum, _einsum_samples, ops=["einsum"], rtol=1e-5,
           errors=[(lambda: F.einsum("ij,jk", _z(2, 3), _z(2, 3)), ValueError,
                    "einsum: subscript 'j' has sizes 3 and 2")]),
    OpInfo("local_response_norm", F.local_response_norm, _lrn_ref,
           lambda rng: [Sample(rand(rng, (1, 4, 2, 2)), kernel_size=3, alpha=0.1)],
           ops=["local_response_norm"],
           errors=[(lambda: F.local_response_norm(_z(1, 2, 2, 2), 2), ValueError,
                    "local_response_norm: kernel_size must be odd")]),
    OpInfo("general_norm", _gn, _np_gn,
           lambda rng: [Sample(rand(rng, (2, 3, 2)), rand(rng, (3, 2)), rand(rng, (3, 2)),
                               axes=(1, 2))], ops=["general_norm"], rtol=1e-5,
           errors=[(lambda: F.general_norm(_z(2, 3), (1, 0), affine=False), ValueError,
                    "general_norm: normalized_axis must be in increasing order")]),
    OpInfo("pixel_shuffle", F.pixel_shuffle, _np_pixel_shuffle,
           lambda rng: [Sample(rand(rng, (1, 8, 2, 3)), upscale_factor=2)],
           ops=["pixel_shuffle"],
           errors=[(lambda: F.pixel_shuffle(_z(1, 3, 2, 2), 2), ValueError,
                    "pixel_shuffle: input shape (1, 3, 2, 2) needs")]),
    OpInfo("cross", F.cross, lambda a, b: np.cross(a, b),
           lambda rng: [Sample(rand(rng, (2, 3)), rand(rng, (4, 1, 3)))], ops=["cross"],
           errors=[(lambda: F.cross(_z(2), _z(2)), ValueError,
                    "cross: the vector axes must have length 3")]),
]
