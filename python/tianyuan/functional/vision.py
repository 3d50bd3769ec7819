"""Vision functions (MegEngine's ``functional.vision``).

roi_align, roi_pooling, nms, remap and warp_perspective are ops of the table (C kernels,
traceable and dumpable, with gradients w.r.t. the image, and remap's and warp_perspective's
w.r.t. map_xy and mat too, first order); warp_affine, interpolate, resize,
rotate, flip, rot90 and cvt_color are written with them and other table ops, so they trace,
dump and differentiate too.

``nvof`` (MegEngine's NVIDIA Optical Flow SDK binding) needs NVIDIA's optical-flow hardware:
on this CPU-only build it checks its arguments, then raises a RuntimeError saying so.
"""
import math

import numpy as np

from .. import _C
from .._args import to_int, to_ints
from ..tensor import Tensor

_ops = _C.ops

__all__ = ["correlation", "cvt_color", "flip", "interpolate", "nms", "nvof", "remap", "resize",
           "roi_align", "roi_pooling", "rot90", "rotate", "warp_affine", "warp_perspective"]

_BORDER = {"replicate": 0, "reflect": 1, "reflect_101": 2, "wrap": 3, "constant": 4}
_BORDER_ALIAS = {"border_replicate": "replicate", "border_reflect": "reflect",
                 "border_reflect_101": "reflect_101", "border_wrap": "wrap",
                 "border_constant": "constant"}
_INTERP = {"nearest": 0, "linear": 1, "bilinear": 1, "cubic": 2, "bicubic": 2}


def _tensor(x, what, op):
    if isinstance(x, _C.TensorBase):
        return x
    try:
        return Tensor(x)
    except Exception:
        raise TypeError(f"{op}: {what} must be a Tensor, got {type(x).__name__}") from None


def _border(mode, op):
    m = str(mode).lower()
    m = _BORDER_ALIAS.get(m, m)
    if m not in _BORDER:
        raise ValueError(f"{op}: unsupported border_mode {mode!r} (replicate, reflect, "
                         "reflect_101, wrap, constant)")
    return _BORDER[m]


def _interp(mode, op):
    m = str(mode).lower()
    if m not in _INTERP:
        raise ValueError(f"{op}: unsupported interp_mode {mode!r} (linear, nearest, cubic)")
    return _INTERP[m]


def _pair(v, what, op):
    vals = to_ints(v, what, op)
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2:
        raise ValueError(f"{op}: {what} must be an int or a pair, got {v!r}")
    return vals


def _float_image(x, op):
    """Images compute in float32 (float64 stays float64), as MegEngine casts half-precision
    and integer images to float32."""
    if x.dtype != np.float64 and x.dtype != np.float32:
        x = x.astype("float32")
    return x


def _format(fmt, op):
    f = str(fmt).upper()
    if f not in ("NCHW", "NHWC"):
        raise ValueError(f"{op}: format must be 'NCHW' or 'NHWC', got {fmt!r}")
    return f


def _to_nchw(x, fmt):
    return x.transpose((0, 3, 1, 2)) if fmt == "NHWC" else x


def _from_nchw(x, fmt):
    return x.transpose((0, 2, 3, 1)) if fmt == "NHWC" else x


# ---- RoI ops ----
_ROI_MODES = {"max": 0, "average": 1}


def _roi_mode(mode, op):
    m = str(mode).lower()
    if m not in _ROI_MODES:
        raise ValueError(f"{op}: mode must be 'max' or 'average', got {mode!r}")
    return _ROI_MODES[m]


def roi_align(inp, rois, output_shape, mode="average", spatial_scale=1.0, sample_points=2,
              aligned=True):
    """RoI align (Mask R-CNN) of ``(N, C, H, W)`` features over ``(K, 5)`` boxes of
    ``(batch, x0, y0, x1, y1)``: ``(K, C, OH, OW)``. Each bin averages (or takes the max of)
    bilinear samples on a ``sample_points`` grid (0: ceil(box / bins) per bin); ``aligned``
    shifts the scaled box by -0.5. Differentiable w.r.t. ``inp``."""
    inp = _float_image(_tensor(inp, "inp", "roi_align"), "roi_align")
    rois = _tensor(rois, "rois", "roi_align")
    oh, ow = _pair(output_shape, "output_shape", "roi_align")
    sh, sw = _pair(sample_points, "sample_points", "roi_align")
    return _ops["roi_align"](inp, rois, out_h=oh, out_w=ow, spatial_scale=float(spatial_scale),
                             offset=0.5 if aligned else 0.0, sample_h=sh, sample_w=sw,
                             mode=_roi_mode(mode, "roi_align"))


def roi_pooling(inp, rois, output_shape, mode="max", scale=1.0):
    """RoI pooling (Fast R-CNN) of ``(N, C, H, W)`` features over ``(K, 5)`` boxes of
    ``(batch, x0, y0, x1, y1)``: each box, scaled and rounded to whole cells, is split into
    ``output_shape`` bins whose max (or mean) is taken; an empty bin gives 0. Differentiable
    w.r.t. ``inp``."""
    inp = _float_image(_tensor(inp, "inp", "roi_pooling"), "roi_pooling")
    rois = _tensor(rois, "rois", "roi_pooling")
    oh, ow = _pair(output_shape, "output_shape", "roi_pooling")
    return _ops["roi_pooling"](inp, rois, out_h=oh, out_w=ow, spatial_scale=float(scale),
                               mode=_roi_mode(mode, "roi_pooling"))


def nms(boxes, scores, iou_thresh, max_output=None):
    """Non-maximum suppression: the int32 indices of the kept ``(x0, y0, x1, y1)`` boxes,
    by descending score (ties: lower index first). A box is dropped when its IoU with a kept,
    higher-scored box exceeds ``iou_thresh``; at most ``max_output`` boxes are kept (all when
    None). The output's length depends on the values, so a trace holding nms replays only
    eagerly recorded calls (it raises TraceError on a replay, like cond_take)."""
    boxes = _tensor(boxes, "boxes", "nms").detach()
    scores = _tensor(scores, "scores", "nms").detach()
    if max_output is None:
        mo = -1
    else:
        mo = to_int(max_output, "max_output", "nms")
        if mo < 1:
            raise ValueError(f"nms: max_output must be a positive integer, got {max_output}")
    return _ops["nms"](boxes, scores, iou_thresh=float(iou_thresh), max_output=mo)


# ---- sampling ----
def remap(inp, map_xy, border_mode="replicate", scalar=0.0, interp_mode="linear"):
    """Output ``(n, c, h, w)`` samples ``inp[n, c]`` at ``map_xy[n, h, w] = (x, y)``
    (``inp`` ``(N, C, H, W)``, ``map_xy`` ``(N, OH, OW, 2)``). Border modes replicate,
    reflect, reflect_101, wrap, constant (``scalar``); interpolation linear, nearest or cubic
    (Keys, a = -0.75).
    Differentiable w.r.t. ``inp`` and ``map_xy`` (the latter first order only)."""
    inp = _float_image(_tensor(inp, "inp", "remap"), "remap")
    map_xy = _tensor(map_xy, "map_xy", "remap")
    return _ops["remap"](inp, map_xy, border_mode=_border(border_mode, "remap"),
                         border_val=float(scalar), interp_mode=_interp(interp_mode, "remap"))


def _out_hw(out_shape, op):
    if isinstance(out_shape, _C.TensorBase):
        out_shape = [int(v) for v in out_shape.numpy().reshape(-1)]
    return _pair(out_shape, "out_shape", op)


def _mat_idx(mat_idx, m, n, op):
    if mat_idx is None:
        if m != n:
            raise ValueError(f"{op}: {m} matrices for {n} input images: give mat_idx to say "
                             "which image each matrix warps")
        return Tensor(np.arange(m, dtype=np.int32))
    if isinstance(mat_idx, _C.TensorBase):
        return mat_idx if mat_idx.dtype.kind in "iu" else mat_idx.astype("int32")
    return Tensor(np.asarray(to_ints(mat_idx, "mat_idx", op), dtype=np.int32))


def warp_perspective(inp, mat, out_shape, mat_idx=None, border_mode="replicate",
                     border_val=0.0, format="NCHW", interp_mode="linear"):
    """Output ``(m, c, h, w)`` samples input image ``mat_idx[m]`` (``m`` when None) at
    ``((M00 w + M01 h + M02) / d, (M10 w + M11 h + M12) / d)``, ``d = M20 w + M21 h + M22``,
    for ``mat`` ``(M, 3, 3)``: the inverse of the matrix ``cv2.warpPerspective`` takes.
    ``format`` NCHW or NHWC. Differentiable w.r.t. ``inp`` and ``mat`` (the latter first
    order only)."""
    fmt = _format(format, "warp_perspective")
    inp = _float_image(_tensor(inp, "inp", "warp_perspective"), "warp_perspective")
    mat = _tensor(mat, "mat", "warp_perspective")
    if inp.ndim != 4:
        raise ValueError(f"warp_perspective: inp must be 4-d ({fmt}), got shape {inp.shape}")
    oh, ow = _out_hw(out_shape, "warp_perspective")
    idx = _mat_idx(mat_idx, mat.shape[0] if mat.ndim else 0, inp.shape[0], "warp_perspective")
    y = _ops["warp_perspective"](_to_nchw(inp, fmt), mat, idx, out_h=oh, out_w=ow,
                                 border_mode=_border(border_mode, "warp_perspective"),
                                 border_val=float(border_val),
                                 interp_mode=_interp(interp_mode, "warp_perspective"))
    return _from_nchw(y, fmt)


def _affine_to_perspective(mat, op):
    if mat.ndim != 3 or tuple(mat.shape[1:]) != (2, 3):
        raise ValueError(f"{op}: mat must have shape (N, 2, 3), got {tuple(mat.shape)}")
    from .shape_index import concat
    from .tensor import broadcast_to
    last = Tensor(np.array([[[0.0, 0.0, 1.0]]]), dtype=mat.dtype)
    return concat([mat, broadcast_to(last, (mat.shape[0], 1, 3))], axis=1)


def warp_affine(inp, mat, out_shape, border_mode="replicate", border_val=0.0, format="NHWC",
                interp_mode="linear"):
    """Affine warp: output ``(h, w)`` samples ``inp`` at ``mat @ (w, h, 1)`` for ``mat``
    ``(N, 2, 3)`` (``format`` NHWC by default, as MegEngine). Differentiable w.r.t. ``inp``
    and ``mat`` (MegEngine's is forward only)."""
    mat = _tensor(mat, "mat", "warp_affine")
    return warp_perspective(inp, _affine_to_perspective(mat, "warp_affine"), out_shape,
                            border_mode=border_mode, border_val=border_val, format=format,
                            interp_mode=interp_mode)


# ---- resizing ----
def _scale_matrix(n, sx, sy, tx, ty, dtype="float64"):
    m = np.array([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]])
    return Tensor(np.broadcast_to(m, (n, 3, 3)).copy(), dtype=dtype)


def _resize_linear(x, oh, ow, align_corners, interp=1):
    n, _, ih, iw = x.shape
    if align_corners:
        sy = (ih - 1) / (oh - 1) if oh > 1 else 0.0
        sx = (iw - 1) / (ow - 1) if ow > 1 else 0.0
        mat = _scale_matrix(n, sx, sy, 0.0, 0.0)
    else:
        sy, sx = ih / oh, iw / ow
        mat = _scale_matrix(n, sx, sy, 0.5 * sx - 0.5, 0.5 * sy - 0.5)
    idx = Tensor(np.arange(n, dtype=np.int32))
    return _ops["warp_perspective"](x, mat, idx, out_h=oh, out_w=ow, border_mode=0,
                                    interp_mode=interp)


def _nearest_src(n_out, n_in):
    """MegDNN's nearest source index: int(d / scale) with scale = out / in, in float32."""
    scale = np.float32(n_out) / np.float32(n_in)
    return np.minimum((np.arange(n_out, dtype=np.float32) / scale).astype(np.int64), n_in - 1)


def _resize_nearest(x, oh, ow):
    n, _, ih, iw = x.shape
    ys = _nearest_src(oh, ih).astype(np.float64)
    xs = _nearest_src(ow, iw).astype(np.float64)
    grid = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), axis=-1)
    grid = Tensor(np.broadcast_to(grid, (n, oh, ow, 2)).astype(np.float32))
    return _ops["remap"](x, grid, border_mode=0, interp_mode=0)


def _linear_axis(x, axis, out, n_in, align_corners):
    """Linear interpolation along one axis as two gathers: source o * s (+ 0.5 s - 0.5 for
    half-pixel centres), cells beyond the edges replicated. The same sampling as the bilinear
    path's warp (PyTorch's values; see resize's note on zero weights)."""
    src = _linear_src(out, n_in, align_corners)
    f = np.floor(src)
    t = src - f
    shape = [1] * x.ndim
    shape[axis] = out
    i0 = np.clip(f, 0, n_in - 1).astype(np.int32)
    i1 = np.clip(f + 1, 0, n_in - 1).astype(np.int32)
    a = _ops["index"](x, Tensor(i0), axis=axis)
    b = _ops["index"](x, Tensor(i1), axis=axis)
    return a * Tensor((1 - t).reshape(shape), dtype=x.dtype) + \
        b * Tensor(t.reshape(shape), dtype=x.dtype)


def _linear_src(out, n_in, align_corners):
    """Source coordinates of the outputs, computed as the warp kernel computes them."""
    if align_corners:
        return np.arange(out) * ((n_in - 1) / (out - 1) if out > 1 else 0.0)
    s = n_in / out
    return np.arange(out) * s + (0.5 * s - 0.5)


_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear")


def _out_size(inp, size, scale_factor, nsp, mode):
    if size is None and scale_factor is None:
        raise ValueError("interpolate: scale_factor must not be None when size is None")
    if size is not None and scale_factor is not None:
        raise ValueError("interpolate: scale_factor must be None when size is provided")
    if size is not None:
        vals = to_ints(size, "size", "interpolate", 1)
        if len(vals) == 1 and not isinstance(size, (list, tuple)) and nsp == 2:
            vals = vals + [1]  # MegEngine: an int size is (size, 1)
        elif len(vals) == 1:
            vals = vals * nsp
    else:
        sf = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nsp
        # MegEngine floors the float32 product
        vals = [int(math.floor(np.float32(inp.shape[2 + i] * float(s)))) for i, s in enumerate(sf)]
    if len(vals) != nsp or any(v < 1 for v in vals):
        raise ValueError(f"interpolate: mode {mode!r} needs {nsp} output sizes >= 1, got {vals}")
    return vals


def interpolate(inp, size=None, scale_factor=None, mode="bilinear", align_corners=None):
    """Up/down-samples ``inp`` to ``size`` or by ``scale_factor``: nearest (NCHW), linear
    (``(N, C, L)``), bilinear and bicubic (NCHW), trilinear (``(N, C, D, H, W)``).
    ``align_corners`` (linear modes only; False by default) aligns the corner pixels' centres
    instead of their outer edges. As in MegEngine, an int ``size`` of a 2-d mode means
    ``(size, 1)``, and a ``scale_factor`` size is the floor of the float32 product.
    Differentiable w.r.t. ``inp``."""
    mode = str(mode).lower()
    if mode not in _MODES:
        raise ValueError(f"interpolate: unsupported interpolate mode: {mode!r} ({_MODES})")
    if mode not in ("linear", "bilinear", "trilinear") and align_corners is not None:
        raise ValueError("interpolate: align_corners option can only be set in the "
                         "linear/bilinear/trilinear interpolating modes")
    align_corners = bool(align_corners)
    inp = _float_image(_tensor(inp, "inp", "interpolate"), "interpolate")
    want = {"linear": 3, "trilinear": 5}.get(mode, 4)
    if inp.ndim != want:
        raise ValueError(f"interpolate: mode {mode!r} needs a {want}-d input, got shape "
                         f"{tuple(inp.shape)}")
    nsp = want - 2
    out = _out_size(inp, size, scale_factor, nsp, mode)
    if mode == "linear":
        return _linear_axis(inp, 2, out[0], inp.shape[2], align_corners)
    if mode == "bilinear":
        return _resize_linear(inp, out[0], out[1], align_corners)
    if mode == "nearest":
        return _resize_nearest(inp, out[0], out[1])
    if mode == "bicubic":
        return _resize_linear(inp, out[0], out[1], False, interp=2)
    y = _linear_axis(inp, 2, out[0], inp.shape[2], align_corners)
    y = _linear_axis(y, 3, out[1], inp.shape[3], align_corners)
    return _linear_axis(y, 4, out[2], inp.shape[4], align_corners)


def resize(inp, target_shape, interp_mode="linear", format="NCHW", imode=None):
    """Resizes images to ``target_shape`` = (h, w) (half-pixel centres, edges replicated):
    interp_mode linear, nearest or cubic; ``format`` NCHW or NHWC. MegEngine's positional
    order ``resize(inp, size, format, imode)`` is recognised by the format name."""
    if str(interp_mode).upper() in ("NCHW", "NHWC"):  # MegEngine's (size, format, imode)
        interp_mode, format = (format if str(format).upper() not in ("NCHW", "NHWC")
                               else "linear"), interp_mode
    if imode is not None:
        interp_mode = imode
    fmt = _format(format, "resize")
    inp = _float_image(_tensor(inp, "inp", "resize"), "resize")
    if inp.ndim != 4:
        raise ValueError(f"resize: inp must be 4-d ({fmt}), got shape {tuple(inp.shape)}")
    oh, ow = _out_hw(target_shape, "resize")
    if oh < 1 or ow < 1:
        raise ValueError(f"resize: target_shape must be positive, got {(oh, ow)}")
    m = str(interp_mode).lower()
    modes = {"linear": "bilinear", "bilinear": "bilinear", "nearest": "nearest",
             "cubic": "bicubic", "bicubic": "bicubic"}
    if m not in modes:
        raise ValueError(f"resize: unsupported interp_mode {interp_mode!r} (linear, nearest, "
                         "cubic)")
    y = interpolate(_to_nchw(inp, fmt), size=(oh, ow), mode=modes[m])
    return _from_nchw(y, fmt)


# ---- geometric ----
def _hw_axes(inp, op):
    if inp.ndim < 3:
        raise ValueError(f"{op}: inp must be (N, H, W, C) or (H, W, C), got shape "
                         f"{tuple(inp.shape)}")
    return inp.ndim - 3, inp.ndim - 2


def flip(inp, vertical=True, horizontal=True):
    """Flips NHWC images upside down (``vertical``) and/or left to right (``horizontal``)."""
    from .shape_index import flip as _flip
    inp = _tensor(inp, "inp", "flip")
    h, w = _hw_axes(inp, "flip")
    axes = ([h] if vertical else []) + ([w] if horizontal else [])
    return _flip(inp, axes) if axes else inp


def rot90(inp, clockwise=True):
    """Rotates NHWC images by 90 degrees, clockwise or counter-clockwise (H and W swap)."""
    from .shape_index import flip as _flip
    inp = _tensor(inp, "inp", "rot90")
    h, w = _hw_axes(inp, "rot90")
    perm = list(range(inp.ndim))
    perm[h], perm[w] = w, h
    t = inp.transpose(perm)
    return _flip(t, [w]) if clockwise else _flip(t, [h])


def rotate(inp, angle, center=None, interp_mode="linear", border_mode="constant",
           border_val=0.0, format="NHWC"):
    """Rotates images by ``angle`` degrees counter-clockwise about ``center`` ((x, y), the
    image centre by default), keeping their size; uncovered pixels follow ``border_mode``.
    MegEngine's positional order ``rotate(inp, angle, format, interp_mode)`` is recognised by
    the format name. Differentiable w.r.t. ``inp``."""
    if isinstance(center, str):  # MegEngine's (angle, format, interp_mode)
        center, format = None, center
    fmt = _format(format, "rotate")
    inp = _float_image(_tensor(inp, "inp", "rotate"), "rotate")
    if inp.ndim != 4:
        raise ValueError(f"rotate: inp must be 4-d ({fmt}), got shape {tuple(inp.shape)}")
    n = inp.shape[0]
    h, w = (inp.shape[1], inp.shape[2]) if fmt == "NHWC" else (inp.shape[2], inp.shape[3])
    cx, cy = ((w - 1) / 2.0, (h - 1) / 2.0) if center is None else map(float, center)
    t = math.radians(float(angle))
    c, s = math.cos(t), math.sin(t)
    # output (u, v) reads input R^-1 (u - cx, v - cy) + (cx, cy); y points down, so a
    # counter-clockwise turn on screen is a clockwise one in (x, y)
    m = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0, 0, 1.0]])
    mat = Tensor(np.broadcast_to(m, (n, 3, 3)).copy(), dtype="float64")
    return warp_perspective(inp, mat, (h, w), border_mode=border_mode, border_val=border_val,
                            format=fmt, interp_mode=interp_mode)


# ---- colour conversion ----
# MegDNN's (OpenCV-derived) conversions. Float images compute in float arithmetic, uint8
# images in MegDNN's 14-bit fixed point, so both give MegEngine's values.
_GRAY = (0.299, 0.587, 0.114)  # weights of R, G, B
_GRAY_FIX = (4899, 9617, 1868)  # the same in 14-bit fixed point
# mode: (input channels, matrix rows over the input channels: one output channel each)
_CVT_COPY = {
    "GRAY2RGB": (1, ((1.0,), (1.0,), (1.0,))),
    "RGB2BGR": (3, ((0, 0, 1.0), (0, 1.0, 0), (1.0, 0, 0))),
    "BGR2RGB": (3, ((0, 0, 1.0), (0, 1.0, 0), (1.0, 0, 0))),
    "RGBA2RGB": (4, ((1.0, 0, 0, 0), (0, 1.0, 0, 0), (0, 0, 1.0, 0))),
    "RGBA2BGR": (4, ((0, 0, 1.0, 0), (0, 1.0, 0, 0), (1.0, 0, 0, 0))),
}
_CVT_GRAY = {"RGB2GRAY": (3, (0, 1, 2)), "BGR2GRAY": (3, (2, 1, 0)),
             "RGBA2GRAY": (4, (0, 1, 2))}  # channels holding R, G, B
# planar/semi-planar YUV 4:2:0 (uint8): (planar, U before V, output RGB order, BT.601)
_CVT_YUV420 = {}
for _bt, _pre in ((False, ""), (True, "BT601_")):
    for _fmt, (_planar, _uv) in {"NV21": (False, False), "NV12": (False, True),
                                 "YV12": (True, False), "YU12": (True, True)}.items():
        for _rgb in (True, False):
            _CVT_YUV420[f"{_pre}YUV2{'RGB' if _rgb else 'BGR'}_{_fmt}"] = (_planar, _uv, _rgb, _bt)
_CVT_YUV420["YCrCb2RGB"] = (False, False, True, False)
_CVT_YUV420["YCrCb2BGR"] = (False, False, False, False)
_CVT_YUV_GRAY = ("YUV2GRAY_NV21", "YUV2GRAY_NV12", "YUV2GRAY_YV12", "YUV2GRAY_YU12")
_CVT_MODES = tuple(_CVT_COPY) + tuple(_CVT_GRAY) + ("RGB2YUV", "YUV2RGB") + \
    tuple(_CVT_YUV420) + _CVT_YUV_GRAY


def _channels(x):
    return [x[..., i] for i in range(x.shape[-1])]


def _descale(v, shift=14):
    """OpenCV's descale: round to nearest by adding half, then an arithmetic shift."""
    return (v + (1 << (shift - 1))) // (1 << shift)


def _u8(v):
    from .elemwise import clip
    return clip(v, 0, 255).astype("uint8")


def _cvt_gray(x, chans, is_u8):
    c = _channels(x)
    r, g, b = (c[i] for i in chans)
    if is_u8:
        r, g, b = (t.astype("int32") for t in (r, g, b))
        y = (r * _GRAY_FIX[0] + g * _GRAY_FIX[1] + b * _GRAY_FIX[2] + (1 << 13)) // (1 << 14)
        return y.astype("uint8").reshape(tuple(x.shape[:-1]) + (1,))
    y = r * _GRAY[0] + g * _GRAY[1] + b * _GRAY[2]
    return y.reshape(tuple(x.shape[:-1]) + (1,))


def _cvt_rgb2yuv(x, is_u8):
    """MegDNN's RGB2YUV: Y = 0.114 c0 + 0.587 c1 + 0.299 c2, then 0.492 (c0 - Y) and
    0.877 (c2 - Y), offset by 0.5 (float) or 128 (uint8)."""
    from .shape_index import stack
    c0, c1, c2 = _channels(x)
    if is_u8:
        c0, c1, c2 = (t.astype("int32") for t in (c0, c1, c2))
        y = _descale(c0 * 1868 + c1 * 9617 + c2 * 4899)
        u = _descale((c0 - y) * 8061 + (128 << 14))
        v = _descale((c2 - y) * 14369 + (128 << 14))
        return _u8(stack([y, u, v], axis=-1))
    y = c0 * 0.114 + c1 * 0.587 + c2 * 0.299
    return stack([y, (c0 - y) * 0.492 + 0.5, (c2 - y) * 0.877 + 0.5], axis=-1)


def _cvt_yuv2rgb(x, is_u8):
    """MegDNN's YUV2RGB: R = Y + 2.032 (c1 - d), G = Y - 0.581 (c2 - d) - 0.395 (c1 - d),
    B = Y + 1.140 (c2 - d), d = 0.5 (float) or 128 (uint8, 14-bit fixed point)."""
    from .shape_index import stack
    y, cr, cb = _channels(x)
    if is_u8:
        y, cr, cb = (t.astype("int32") for t in (y, cr, cb))
        cr, cb = cr - 128, cb - 128
        r = y + _descale(cr * 33292)
        g = y + _descale(cb * -9519 + cr * -6472)
        b = y + _descale(cb * 18678)
        return _u8(stack([r, g, b], axis=-1))
    cr, cb = cr - 0.5, cb - 0.5
    return stack([y + cr * 2.032, y + cb * -0.581 + cr * -0.395, y + cb * 1.140], axis=-1)


def _yuv420_planes(x, planar, uv):
    """(Y, U, V) int32 planes of (N, 3H/2, W, 1) YUV 4:2:0 images, chroma repeated 2x2."""
    from .tensor import broadcast_to
    n, rows, w = x.shape[0], x.shape[1], x.shape[2]
    h = rows // 3 * 2
    x = x.astype("int32").reshape((n, rows, w))
    y = x[:, :h]
    chroma = x[:, h:]
    if planar:
        flat = chroma.reshape((n, h * w // 2))
        first = flat[:, :h * w // 4].reshape((n, h // 2, w // 2))
        second = flat[:, h * w // 4:].reshape((n, h // 2, w // 2))
    else:
        pairs = chroma.reshape((n, h // 2, w // 2, 2))
        first, second = pairs[..., 0], pairs[..., 1]
    u, v = (first, second) if uv else (second, first)

    def up(t):
        t = t.reshape((n, h // 2, 1, w // 2, 1))
        return broadcast_to(t, (n, h // 2, 2, w // 2, 2)).reshape((n, h, w))
    return y, up(u), up(v)


def _cvt_yuv420(x, planar, uv, rgb, bt601):
    from .shape_index import stack
    y, u, v = _yuv420_planes(x, planar, uv)
    if bt601:  # libyuv's BT.601 integer approximation, as MegDNN
        y1 = (y * (0x0101 * 18997)) // (1 << 16)
        b = _u8((u * 128 + y1 - 17544) // 64)
        g = _u8((-(u * 25 + v * 52) + y1 + 8696) // 64)
        r = _u8((v * 102 + y1 - 14216) // 64)
    else:  # JPEG YCrCb with 8-bit coefficients
        du, dv = u - 128, v - 128
        r = _u8(y + (dv * 359) // 256)
        g = _u8(y - (du * 88 + dv * 183) // 256)
        b = _u8(y + (du * 454) // 256)
    return stack([r, g, b] if rgb else [b, g, r], axis=-1)


def _check_yuv420(inp, m):
    if inp.ndim != 4 or inp.shape[-1] != 1 or inp.shape[1] % 3 or inp.shape[1] == 0 or \
            inp.shape[2] % 2:
        raise ValueError(f"cvt_color: mode {m} needs (N, 3H/2, W, 1) YUV 4:2:0 images with "
                         f"even H and W, got shape {tuple(inp.shape)}")
    if np.dtype(inp.dtype) != np.uint8:
        raise TypeError(f"cvt_color: mode {m} needs uint8 images, got {np.dtype(inp.dtype)}")


def cvt_color(inp, mode=""):
    """Converts NHWC images (channels last) as MegEngine's (MegDNN's) CvtColor does: float
    images in float arithmetic, uint8 images in its 14-bit fixed point.

    RGB2GRAY / BGR2GRAY / RGBA2GRAY: 0.299 R + 0.587 G + 0.114 B. RGB2YUV: Y = 0.114 c0 +
    0.587 c1 + 0.299 c2, then 0.492 (c0 - Y) + d and 0.877 (c2 - Y) + d (d = 0.5 for floats,
    128 for uint8); YUV2RGB its inverse (2.032, -0.395, -0.581, 1.140). GRAY2RGB, RGB2BGR,
    BGR2RGB, RGBA2RGB, RGBA2BGR copy channels. The uint8 4:2:0 modes (YUV2{RGB,BGR,GRAY}_
    {NV21,NV12,YV12,YU12}, YCrCb2{RGB,BGR}, BT601_YUV2{RGB,BGR}_*) take (N, 3H/2, W, 1)
    images and give (N, H, W, 3) (or 1 for GRAY)."""
    m = str(mode) if "YCrCb" in str(mode) else str(mode).upper()
    if m not in _CVT_MODES:
        raise ValueError(f"cvt_color: unsupported mode {mode!r} ({', '.join(_CVT_MODES)})")
    inp = _tensor(inp, "inp", "cvt_color")
    if m in _CVT_YUV420 or m in _CVT_YUV_GRAY:
        _check_yuv420(inp, m)
        if m in _CVT_YUV_GRAY:
            return inp[:, :inp.shape[1] // 3 * 2]
        return _cvt_yuv420(inp, *_CVT_YUV420[m])
    cin = _CVT_GRAY[m][0] if m in _CVT_GRAY else _CVT_COPY[m][0] if m in _CVT_COPY else 3
    if inp.ndim < 1 or inp.shape[-1] != cin:
        raise ValueError(f"cvt_color: mode {m} needs {cin} channels in the last axis, got shape "
                         f"{tuple(inp.shape)}")
    kind = np.dtype(inp.dtype)
    is_u8 = kind == np.uint8
    x = inp if kind.kind == "f" or is_u8 else inp.astype("float32")
    if m in _CVT_GRAY:
        y = _cvt_gray(x, _CVT_GRAY[m][1], is_u8)
    elif m == "RGB2YUV":
        y = _cvt_rgb2yuv(x, is_u8)
    elif m == "YUV2RGB":
        y = _cvt_yuv2rgb(x, is_u8)
    else:
        from .shape_index import stack
        rows = _CVT_COPY[m][1]
        y = stack([x[..., int(np.argmax(r))] for r in rows], axis=-1)
    if kind.kind not in "fu" or (kind.kind == "u" and not is_u8):
        y = y.astype(kind)
    return y


def correlation(data1, data2, kernel_size=1, max_displacement=1, stride1=1, stride2=1,
                pad_size=0, is_multiply=True):
    """FlowNet's correlation of two ``(N, C, H, W)`` feature maps: for every displacement
    ``(dy, dx)`` in ``[-max_displacement, max_displacement]`` by ``stride2``, the mean over
    channels and a ``kernel_size`` patch of ``data1 * data2`` shifted (``|data1 - data2|``
    when ``is_multiply`` is False), on a grid of ``stride1``, inputs zero-padded by
    ``pad_size``. Output ``(N, D * D, OH, OW)``, D = 2 (max_displacement // stride2) + 1.
    Differentiable w.r.t. both inputs."""
    data1 = _float_image(_tensor(data1, "data1", "correlation"), "correlation")
    data2 = _float_image(_tensor(data2, "data2", "correlation"), "correlation")
    return _ops["correlation"](
        data1, data2, kernel_size=to_int(kernel_size, "kernel_size", "correlation"),
        max_displacement=to_int(max_displacement, "max_displacement", "correlation"),
        stride1=to_int(stride1, "stride1", "correlation"),
        stride2=to_int(stride2, "stride2", "correlation"),
        pad_size=to_int(pad_size, "pad_size", "correlation"), is_multiply=int(bool(is_multiply)))


def deformable_psroi_pooling(inp, rois, trans, no_trans, part_size, pooled_h, pooled_w,
                             sample_per_part, spatial_scale, trans_std=0.1):
    """Deformable PS RoI pooling (MegEngine's ``F.deformable_psroi_pooling``): ``(K, C,
    pooled_h, pooled_w)`` from ``(N, C, H, W)`` features and ``(K, 5)`` boxes. Each box
    (rounded, scaled by ``spatial_scale``) is split into bins; a bin, moved by the offsets
    ``trans[k, 2 cls : 2 cls + 2, part]`` (``(K, 2 * classes, part_size, part_size)``) times
    ``trans_std`` and the box size unless ``no_trans``, averages ``sample_per_part`` squared
    bilinear samples. Differentiable w.r.t. ``inp`` and ``trans`` (the latter first order
    only)."""
    op = "deformable_psroi_pooling"
    inp = _float_image(_tensor(inp, "inp", op), op)
    rois = _tensor(rois, "rois", op)
    trans = _tensor(trans, "trans", op)
    return _ops[op](inp, rois, trans, no_trans=int(bool(no_trans)),
                    part_size=to_int(part_size, "part_size", op),
                    pooled_h=to_int(pooled_h, "pooled_h", op),
                    pooled_w=to_int(pooled_w, "pooled_w", op),
                    sample_per_part=to_int(sample_per_part, "sample_per_part", op),
                    spatial_scale=float(spatial_scale), trans_std=float(trans_std))


def nvof(src, precision=1):
    """NVIDIA optical flow (MegEngine's ``F.vision.nvof``) between consecutive frames of a
    ``(n, t, h, w, 4)`` uint8 ``src``; ``precision`` 0, 1 or 2 picks the hardware's speed/quality
    preset. It runs only on NVIDIA's optical-flow engine: this build is CPU-only
    (``tianyuan.is_cuda_available()`` is False), so after checking the arguments it raises
    RuntimeError rather than return a flow computed some other way."""
    src = _tensor(src, "src", "nvof")
    if src.ndim != 5 or src.shape[-1] != 4:
        raise ValueError(f"nvof: src must be (n, t, h, w, 4) frames, got shape {tuple(src.shape)}")
    if np.dtype(src.dtype) != np.uint8:
        raise TypeError(f"nvof: src must be uint8, got {np.dtype(src.dtype)}")
    if to_int(precision, "precision", "nvof") not in (0, 1, 2):
        raise ValueError(f"nvof: precision must be 0, 1 or 2, got {precision}")
    raise RuntimeError("nvof: needs NVIDIA's optical-flow hardware (a CUDA build of tianyuan); "
                       "this build is CPU-only, is_cuda_available() is False")
