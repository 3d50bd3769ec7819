"""op_db rows of the pooling family (see op_db.py): max / average / adaptive 2-d pooling, their
backward ops and the select ops, with naive float64 loop references.

Max pooling samples hold distinct values (a permutation / 7), so every window's argmax is
unique and finite differences do not cross a tie."""
import numpy as np

import tianyuan.functional as F
from tianyuan import _C

from .op_db import OpInfo, Sample, rand

_ops = _C.ops


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _distinct(rng, shape):
    n = int(np.prod(shape))
    return rng.permutation(n).reshape(shape) / 7.0 - n / 14.0


# ---- window geometry, as plain loops ----
def _strided_windows(H, W, kernel_size, stride=None, padding=0):
    """[(oh, ow, h0, h1, w0, w1, padded_count)] for strided pooling; OH, OW."""
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    OH = (H + 2 * ph - kh) // sh + 1
    OW = (W + 2 * pw - kw) // sw + 1
    out = []
    for oh in range(OH):
        hs = oh * sh - ph
        he = min(hs + kh, H + ph)
        for ow in range(OW):
            ws = ow * sw - pw
            we = min(ws + kw, W + pw)
            out.append((oh, ow, max(hs, 0), min(he, H), max(ws, 0), min(we, W),
                        (he - hs) * (we - ws)))
    return out, OH, OW


def _adaptive_windows(H, W, oshp):
    OH, OW = _pair(oshp)
    out = []
    for oh in range(OH):
        h0, h1 = (oh * H) // OH, -((-(oh + 1) * H) // OH)
        for ow in range(OW):
            w0, w1 = (ow * W) // OW, -((-(ow + 1) * W) // OW)
            out.append((oh, ow, h0, h1, w0, w1, (h1 - h0) * (w1 - w0)))
    return out, OH, OW


def _argmax(plane, h0, h1, w0, w1):
    win = plane[h0:h1, w0:w1]
    i, j = np.unravel_index(np.argmax(win), win.shape)
    return h0 + i, w0 + j


def _pool(x, windows, OH, OW, kind, include_pad=False):
    N, C = x.shape[:2]
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            plane = x[n, c]
            for oh, ow, h0, h1, w0, w1, padded in windows:
                if kind == "max":
                    y[n, c, oh, ow] = plane[_argmax(plane, h0, h1, w0, w1)]
                else:
                    div = padded if include_pad else (h1 - h0) * (w1 - w0)
                    s = 0.0
                    for h in range(h0, h1):
                        for w in range(w0, w1):
                            s += plane[h, w]
                    y[n, c, oh, ow] = s / div
    return y


def _pool_bwd(x, dy, windows, kind, include_pad=False):
    dx = np.zeros(x.shape)
    N, C = x.shape[:2]
    for n in range(N):
        for c in range(C):
            plane = x[n, c]
            for oh, ow, h0, h1, w0, w1, padded in windows:
                d = dy[n, c, oh, ow]
                if kind == "max":
                    dx[(n, c) + _argmax(plane, h0, h1, w0, w1)] += d
                else:
                    div = padded if include_pad else (h1 - h0) * (w1 - w0)
                    dx[n, c, h0:h1, w0:w1] += d / div
    return dx


def _select(x, g, windows, OH, OW):
    N, C = x.shape[:2]
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for c in range(C):
            for oh, ow, h0, h1, w0, w1, _ in windows:
                y[n, c, oh, ow] = g[(n, c) + _argmax(x[n, c], h0, h1, w0, w1)]
    return y


_INCLUDE = {"average": True, "average_count_exclude_padding": False}


def _max_ref(x, kernel_size, stride=None, padding=0):
    win, OH, OW = _strided_windows(x.shape[2], x.shape[3], kernel_size, stride, padding)
    return _pool(x, win, OH, OW, "max")


def _avg_ref(x, kernel_size, stride=None, padding=0, mode="average_count_exclude_padding"):
    win, OH, OW = _strided_windows(x.shape[2], x.shape[3], kernel_size, stride, padding)
    return _pool(x, win, OH, OW, "avg", _INCLUDE[mode])


def _ada_max_ref(x, oshp):
    win, OH, OW = _adaptive_windows(x.shape[2], x.shape[3], oshp)
    return _pool(x, win, OH, OW, "max")


def _ada_avg_ref(x, oshp):
    win, OH, OW = _adaptive_windows(x.shape[2], x.shape[3], oshp)
    return _pool(x, win, OH, OW, "avg")


# ---- samples ----
_STRIDED = [
    # x shape, kernel_size, stride, padding
    ((2, 3, 5, 5), 2, None, 0),
    ((1, 2, 5, 6), 3, 2, 1),
    ((1, 2, 6, 7), (2, 3), (1, 2), (1, 0)),     # non-square, stride != kernel
    ((1, 1, 4, 4), 3, 1, 1),                    # overlapping windows
    ((1, 2, 5, 5), (3, 2), (2, 3), (1, 1)),
    ((1, 1, 3, 3), 3, None, 0),                 # global
    ((1, 1, 1, 1), 1, None, 0),
    ((0, 2, 4, 4), 2, None, 0),                 # empty batch
]

_ADAPTIVE = [
    ((1, 2, 5, 7), (3, 4)),                     # non-divisible, overlapping windows
    ((2, 1, 4, 4), 2),
    ((1, 1, 3, 5), (5, 2)),                     # output larger than input along H
    ((1, 2, 6, 6), (1, 1)),
    ((1, 1, 7, 3), (3, 3)),
    ((0, 2, 3, 3), 2),
]


def _max_samples(rng):
    return [Sample(_distinct(rng, s), kernel_size=k, stride=st, padding=p)
            for s, k, st, p in _STRIDED]


def _avg_samples(rng):
    return [Sample(rand(rng, s), kernel_size=k, stride=st, padding=p, mode=m)
            for s, k, st, p in _STRIDED for m in _INCLUDE]


def _ada_max_samples(rng):
    return [Sample(_distinct(rng, s), oshp=o) for s, o in _ADAPTIVE]


def _ada_avg_samples(rng):
    return [Sample(rand(rng, s), oshp=o) for s, o in _ADAPTIVE]


# ---- the backward and select ops called directly ----
def _p(kernel_size, stride=None, padding=0, mode="average_count_exclude_padding"):
    (kh, kw), (ph, pw) = _pair(kernel_size), _pair(padding)
    sh, sw = _pair(kernel_size if stride is None else stride)
    return dict(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                mode=0 if _INCLUDE[mode] else 1)


def _yshape(xs, k, st, p):
    _, OH, OW = _strided_windows(xs[2], xs[3], k, st, p)
    return (xs[0], xs[1], OH, OW)


def _max_grad(x, dy, **kw):
    return _ops["max_pool2d_grad"](x, dy, **_p(**kw))


def _max_grad_ref(x, dy, kernel_size, stride=None, padding=0):
    win, _, _ = _strided_windows(x.shape[2], x.shape[3], kernel_size, stride, padding)
    return _pool_bwd(x, dy, win, "max")


def _max_grad_samples(rng):
    return [Sample(_distinct(rng, s), rand(rng, _yshape(s, k, st, p)), kernel_size=k, stride=st,
                   padding=p) for s, k, st, p in _STRIDED]


def _max_select(x, g, **kw):
    return _ops["max_pool2d_select"](x, g, **_p(**kw))


def _max_select_ref(x, g, kernel_size, stride=None, padding=0):
    win, OH, OW = _strided_windows(x.shape[2], x.shape[3], kernel_size, stride, padding)
    return _select(x, g, win, OH, OW)


def _max_select_samples(rng):
    return [Sample(_distinct(rng, s), rand(rng, s), kernel_size=k, stride=st, padding=p)
            for s, k, st, p in _STRIDED]


def _avg_grad(x, dy, **kw):
    return _ops["avg_pool2d_grad"](x, dy, **_p(**kw))


def _avg_grad_ref(x, dy, kernel_size, stride=None, padding=0,
                  mode="average_count_exclude_padding"):
    win, _, _ = _strided_windows(x.shape[2], x.shape[3], kernel_size, stride, padding)
    return _pool_bwd(x, dy, win, "avg", _INCLUDE[mode])


def _avg_grad_samples(rng):
    return [Sample(rand(rng, s), rand(rng, _yshape(s, k, st, p)), kernel_size=k, stride=st,
                   padding=p, mode=m) for s, k, st, p in _STRIDED for m in _INCLUDE]


_ADA_MODES = {"max": 0, "avg": 1}


def _ada_grad(x, dy, oshp, kind):
    oh, ow = _pair(oshp)
    return _ops["adaptive_pool2d_grad"](x, dy, out_h=oh, out_w=ow, mode=_ADA_MODES[kind])


def _ada_grad_ref(x, dy, oshp, kind):
    win, _, _ = _adaptive_windows(x.shape[2], x.shape[3], oshp)
    return _pool_bwd(x, dy, win, kind)


def _ada_grad_samples(rng):
    out = []
    for s, o in _ADAPTIVE:
        oh, ow = _pair(o)
        ys = (s[0], s[1], oh, ow)
        out.append(Sample(_distinct(rng, s), rand(rng, ys), oshp=o, kind="max"))
        out.append(Sample(rand(rng, s), rand(rng, ys), oshp=o, kind="avg"))
    return out


def _ada_select(x, g, oshp):
    oh, ow = _pair(oshp)
    return _ops["adaptive_max_pool2d_select"](x, g, out_h=oh, out_w=ow)


def _ada_select_ref(x, g, oshp):
    win, OH, OW = _adaptive_windows(x.shape[2], x.shape[3], oshp)
    return _select(x, g, win, OH, OW)


def _ada_select_samples(rng):
    return [Sample(_distinct(rng, s), rand(rng, s), oshp=o) for s, o in _ADAPTIVE]


_TOL = dict(rtol=1e-6, atol=1e-6)

ROWS = [
    OpInfo("max_pool2d", F.max_pool2d, _max_ref, _max_samples,
           ops=["max_pool2d", "max_pool2d_grad"], dtypes=("float32", "float64", "float16"),
           **_TOL),
    OpInfo("avg_pool2d", F.avg_pool2d, _avg_ref, _avg_samples,
           ops=["avg_pool2d", "avg_pool2d_grad"], dtypes=("float32", "float64", "float16"),
           **_TOL),
    OpInfo("adaptive_max_pool2d", F.adaptive_max_pool2d, _ada_max_ref, _ada_max_samples,
           ops=["adaptive_max_pool2d", "adaptive_pool2d_grad"],
           dtypes=("float32", "float64", "float16"), **_TOL),
    OpInfo("adaptive_avg_pool2d", F.adaptive_avg_pool2d, _ada_avg_ref, _ada_avg_samples,
           ops=["adaptive_avg_pool2d", "adaptive_pool2d_grad"],
           dtypes=("float32", "float64", "float16"), **_TOL),
    OpInfo("max_pool2d_grad", _max_grad, _max_grad_ref, _max_grad_samples,
           ops=["max_pool2d_grad", "max_pool2d_select"], dtypes=("float32", "float64"), **_TOL),
    OpInfo("max_pool2d_select", _max_select, _max_select_ref, _max_select_samples,
           ops=["max_pool2d_select", "max_pool2d_grad"], dtypes=("float32", "float64"), **_TOL),
    OpInfo("avg_pool2d_grad", _avg_grad, _avg_grad_ref, _avg_grad_samples,
           ops=["avg_pool2d_grad", "avg_pool2d"], dtypes=("float32", "float64"), **_TOL),
    OpInfo("adaptive_pool2d_grad", _ada_grad, _ada_grad_ref, _ada_grad_samples,
           ops=["adaptive_pool2d_grad", "adaptive_max_pool2d_select", "adaptive_avg_pool2d"],
           dtypes=("float32", "float64"), **_TOL),
    OpInfo("adaptive_max_pool2d_select", _ada_select, _ada_select_ref, _ada_select_samples,
           ops=["adaptive_max_pool2d_select", "adaptive_pool2d_grad"],
           dtypes=("float32", "float64"), **_TOL),
]
