"""op_db rows of the vision family (see op_db.py): RoI align / pooling with their backward and
select ops, remap and warp_perspective with their backward ops, nms, and the functions of
F.vision written over them (warp_affine, interpolate, resize, rotate, flip, rot90, cvt_color),
with naive float64 loop references of MegEngine's semantics.

Coordinate inputs (maps, matrices, RoIs, indices) are float32 / int32 and listed in
nondiff_args: these rows check the gradients w.r.t. the image; the coordinate gradient ops
(remap_backward_mat, ...) have rows of their own, and test_vision_coord_grad.py checks them
by finite differences. Max-mode samples hold
distinct values, so no argmax sits on a tie and finite differences do not cross one."""
import math

import numpy as np

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

from .op_db import OpInfo, Sample, rand

_ops = _C.ops
V = F.vision


def _t(*shape, dtype="float32"):
    return ty.tensor(np.ones(shape), dtype=dtype)


def _distinct(rng, shape):
    n = int(np.prod(shape))
    return rng.permutation(n).reshape(shape) / 7.0 - n / 14.0


def _round(v):
    """Half away from zero (C's round)."""
    return math.copysign(math.floor(abs(v) + 0.5), v)


# ===================== RoI align / pooling references =====================
def _bilinear_cells(H, W, y, x):
    """MegEngine's bilinear sample: [(row, col, weight)] of the in-image cells around (y, x)."""
    if not (-1 < y < H and -1 < x < W):
        return []
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    out = []
    for i, wy in ((0, 1 - ly), (1, ly)):
        for j, wx in ((0, 1 - lx), (1, lx)):
            r, c = y0 + i, x0 + j
            if 0 <= r < H and 0 <= c < W:
                out.append((r, c, wy * wx))
    return out


def _align_bin_cells(plane, roi, oh, ow, OH, OW, scale, offset, sh, sw, is_max):
    """[(row, col, weight)] that bin (oh, ow) reads: all samples / count (average) or the
    argmax sample (max)."""
    H, W = plane.shape
    x0, y0 = roi[1] * scale - offset, roi[2] * scale - offset
    w = max(roi[3] * scale - offset - x0, 0.0)
    h = max(roi[4] * scale - offset - y0, 0.0)
    bh, bw = h / OH, w / OW
    gh = sh if sh > 0 else int(math.ceil(h / OH))
    gw = sw if sw > 0 else int(math.ceil(w / OW))
    cells, best, best_v = [], [], None
    for iy in range(gh):
        y = y0 + oh * bh + (iy + 0.5) * bh / gh
        for ix in range(gw):
            x = x0 + ow * bw + (ix + 0.5) * bw / gw
            s = _bilinear_cells(H, W, y, x)
            if not is_max:
                cells += [(r, c, wt / (gh * gw)) for r, c, wt in s]
                continue
            v = sum(wt * plane[r, c] for r, c, wt in s)  # a NaN beats any number
            if best_v is None or v > best_v or (np.isnan(v) and not np.isnan(best_v)):
                best_v, best = v, s
    return best if is_max else cells


def _pool_bin_cells(plane, roi, oh, ow, OH, OW, scale, is_max):
    H, W = plane.shape
    x0, y0 = _round(roi[1] * scale), _round(roi[2] * scale)
    x1, y1 = _round(roi[3] * scale), _round(roi[4] * scale)
    bh, bw = max(y1 - y0 + 1, 1) / OH, max(x1 - x0 + 1, 1) / OW

    def rng(o, b, start, L):
        a = min(max(math.floor(o * b) + start, 0), L)
        e = min(max(math.ceil((o + 1) * b) + start, 0), L)
        return int(a), int(e)
    h0, h1 = rng(oh, bh, y0, H)
    w0, w1 = rng(ow, bw, x0, W)
    if h1 <= h0 or w1 <= w0:
        return []
    if is_max:
        win = plane[h0:h1, w0:w1]
        r, c = np.unravel_index(np.argmax(win), win.shape)
        return [(h0 + r, w0 + c, 1.0)]
    n = (h1 - h0) * (w1 - w0)
    return [(r, c, 1.0 / n) for r in range(h0, h1) for c in range(w0, w1)]


def _roi_cells(kind, x, rois, k, ch, oh, ow, kw):
    plane = x[int(rois[k, 0]), ch]
    OH, OW = kw["out_h"], kw["out_w"]
    if kind == "pooling":
        return _pool_bin_cells(plane, rois[k], oh, ow, OH, OW, kw["spatial_scale"],
                               kw["mode"] == 0)
    return _align_bin_cells(plane, rois[k], oh, ow, OH, OW, kw["spatial_scale"], kw["offset"],
                            kw["sample_h"], kw["sample_w"], kw["mode"] == 0)


def _roi_select_ref(kind, x, rois, v, **kw):
    K, C = rois.shape[0], x.shape[1]
    y = np.zeros((K, C, kw["out_h"], kw["out_w"]))
    for k in range(K):
        for ch in range(C):
            for oh in range(kw["out_h"]):
                for ow in range(kw["out_w"]):
                    b = int(rois[k, 0])
                    y[k, ch, oh, ow] = sum(wt * v[b, ch, r, c] for r, c, wt in
                                           _roi_cells(kind, x, rois, k, ch, oh, ow, kw))
    return y


def _roi_bwd_ref(kind, x, rois, dy, **kw):
    dx = np.zeros(x.shape)
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        for ch in range(x.shape[1]):
            for oh in range(kw["out_h"]):
                for ow in range(kw["out_w"]):
                    for r, c, wt in _roi_cells(kind, x, rois, k, ch, oh, ow, kw):
                        dx[b, ch, r, c] += wt * dy[k, ch, oh, ow]
    return dx


def _align_kw(output_shape, mode="average", spatial_scale=1.0, sample_points=2, aligned=True):
    oh, ow = (output_shape, output_shape) if isinstance(output_shape, int) else output_shape
    sh, sw = (sample_points, sample_points) if isinstance(sample_points, int) else sample_points
    return dict(out_h=oh, out_w=ow, spatial_scale=spatial_scale, offset=0.5 if aligned else 0.0,
                sample_h=sh, sample_w=sw, mode={"max": 0, "average": 1}[mode])


def _pool_kw(output_shape, mode="max", scale=1.0):
    oh, ow = (output_shape, output_shape) if isinstance(output_shape, int) else output_shape
    return dict(out_h=oh, out_w=ow, spatial_scale=scale, offset=0.0, sample_h=0, sample_w=0,
                mode={"max": 0, "average": 1}[mode])


def _roi_align_ref(x, rois, **kw):
    return _roi_select_ref("align", x, rois, x, **_align_kw(**kw))


def _roi_pool_ref(x, rois, **kw):
    return _roi_select_ref("pooling", x, rois, x, **_pool_kw(**kw))


_ROIS = np.array([[0, 0.6, 1.2, 4.4, 3.9],     # inside
                  [1, -1.5, -0.7, 2.2, 6.8],   # crosses the top-left and the bottom
                  [1, 5.2, 1.1, 8.3, 2.0],     # crosses the right edge
                  [0, 3.0, 4.0, 1.0, 2.0],     # reversed: empty
                  [0, 2.5, 2.5, 2.5, 2.5]], dtype=np.float32)


def _align_samples(rng):
    out = []
    for mode in ("average", "max"):
        x = _distinct(rng, (2, 2, 6, 7)) if mode == "max" else rand(rng, (2, 2, 6, 7))
        out += [Sample(x, _ROIS, output_shape=(2, 3), mode=mode),
                Sample(x, _ROIS[:3], output_shape=2, mode=mode, spatial_scale=0.5,
                       sample_points=(1, 3), aligned=False),
                Sample(x, _ROIS[1:3], output_shape=(3, 2), mode=mode, sample_points=0)]
    out.append(Sample(rand(rng, (1, 2, 4, 4)), np.zeros((0, 5), np.float32), output_shape=2))
    return out


def _pool_samples(rng):
    out = []
    for mode in ("max", "average"):
        x = _distinct(rng, (2, 2, 6, 7)) if mode == "max" else rand(rng, (2, 2, 6, 7))
        out += [Sample(x, _ROIS, output_shape=(2, 3), mode=mode),
                Sample(x, _ROIS[:3], output_shape=2, mode=mode, scale=0.5)]
    out.append(Sample(rand(rng, (1, 2, 4, 4)), np.zeros((0, 5), np.float32), output_shape=2))
    return out


def _op_kw(kind, kw):
    return _align_kw(**kw) if kind == "align" else _pool_kw(**kw)


def _roi_direct(op, kind, which):
    """A backward or select op called directly, with the function's keyword arguments."""
    def fn(x, rois, v, **kw):
        return _ops[op](x, rois, v, **_op_kw(kind, kw))

    def ref(x, rois, v, **kw):
        f = _roi_bwd_ref if which == "bwd" else _roi_select_ref
        return f(kind, x, rois, v, **_op_kw(kind, kw))
    return fn, ref


def _direct_samples(kind, which):
    base = _align_samples if kind == "align" else _pool_samples

    def gen(rng):
        out = []
        for s in base(rng)[:2] + base(rng)[3:5]:
            x, rois = s.args
            kw = _op_kw(kind, s.kwargs)
            yshape = (rois.shape[0], x.shape[1], kw["out_h"], kw["out_w"])
            v = rand(rng, yshape if which == "bwd" else x.shape)
            out.append(Sample(x, rois, v, **s.kwargs))
        return out
    return gen


# ===================== remap / warp_perspective references =====================
def _border_index(p, n, mode):
    if 0 <= p < n:
        return p
    if mode == 0:
        return min(max(p, 0), n - 1)
    if mode == 1:
        q = p % (2 * n)
        return q if q < n else 2 * n - 1 - q
    if mode == 2:
        if n == 1:
            return 0
        q = p % (2 * n - 2)
        return q if q < n else 2 * n - 2 - q
    if mode == 3:
        return p % n
    return None


def _taps(H, W, sx, sy, border, interp):
    """[(row or None, col or None, weight)] of a sample at (sx, sy)."""
    if interp == 0:
        return [(_border_index(int(_round(sy)), H, border),
                 _border_index(int(_round(sx)), W, border), 1.0)]
    x0, y0 = math.floor(sx), math.floor(sy)
    ax, ay = sx - x0, sy - y0
    if interp == 2:  # cubic: cells -1 .. 2 around floor, Keys' weights
        return [(_border_index(y0 + i, H, border), _border_index(x0 + j, W, border),
                 _cubic(ay - i) * _cubic(ax - j)) for i in range(-1, 3) for j in range(-1, 3)]
    return [(_border_index(y0 + i, H, border), _border_index(x0 + j, W, border), wy * wx)
            for i, wy in ((0, 1 - ay), (1, ay)) for j, wx in ((0, 1 - ax), (1, ax))]


_BORDERS = {"replicate": 0, "reflect": 1, "reflect_101": 2, "wrap": 3, "constant": 4}
_INTERPS = {"nearest": 0, "linear": 1, "cubic": 2}


def _warp_ref(x, coords, src_batch, OH, OW, border, val, interp, dy=None):
    """Forward (dy None) or backward of the sampling: coords(n, oh, ow) -> (sx, sy)."""
    N, C, H, W = x.shape
    M = len(src_batch)
    if dy is None:
        y = np.zeros((M, C, OH, OW))
    else:
        dx = np.zeros(x.shape)
    for n in range(M):
        b = src_batch[n]
        for oh in range(OH):
            for ow in range(OW):
                sx, sy = coords(n, oh, ow)
                for r, c, wt in _taps(H, W, sx, sy, border, interp):
                    inside = r is not None and c is not None
                    for ch in range(C):
                        if dy is None:
                            y[n, ch, oh, ow] += wt * (x[b, ch, r, c] if inside else val)
                        elif inside:
                            dx[b, ch, r, c] += wt * dy[n, ch, oh, ow]
    return y if dy is None else dx


def _map_coords(m):
    return lambda n, oh, ow: (float(m[n, oh, ow, 0]), float(m[n, oh, ow, 1]))


def _mat_coords(mat):
    mat = mat.astype(np.float64)

    def f(n, oh, ow):
        M = mat[n]
        d = M[2, 0] * ow + M[2, 1] * oh + M[2, 2]
        return ((M[0, 0] * ow + M[0, 1] * oh + M[0, 2]) / d,
                (M[1, 0] * ow + M[1, 1] * oh + M[1, 2]) / d)
    return f


def _remap_ref(x, m, border_mode="replicate", scalar=0.0, interp_mode="linear"):
    return _warp_ref(x, _map_coords(m), list(range(x.shape[0])), m.shape[1], m.shape[2],
                     _BORDERS[border_mode], scalar, _INTERPS[interp_mode])


def _remap_samples(rng):
    out = []
    x = rand(rng, (2, 2, 4, 5))
    for bm in _BORDERS:
        for im in ("linear", "nearest", "cubic"):
            m = rng.uniform(-3.3, 7.4, (2, 3, 4, 2)).astype(np.float32)
            out.append(Sample(x, m, border_mode=bm, scalar=0.75, interp_mode=im))
    out.append(Sample(rand(rng, (1, 1, 1, 1)), rng.uniform(-2, 2, (1, 2, 2, 2)).astype(
        np.float32), border_mode="reflect_101"))
    out.append(Sample(rand(rng, (2, 1, 3, 3)), np.zeros((2, 0, 3, 2), np.float32)))
    return out


def _remap_bwd(x, m, dy, border_mode="replicate", scalar=0.0, interp_mode="linear"):
    return _ops["remap_backward"](x, m, dy, border_mode=_BORDERS[border_mode],
                                  border_val=scalar, interp_mode=_INTERPS[interp_mode])


def _remap_bwd_ref(x, m, dy, border_mode="replicate", scalar=0.0, interp_mode="linear"):
    return _warp_ref(x, _map_coords(m), list(range(x.shape[0])), m.shape[1], m.shape[2],
                     _BORDERS[border_mode], scalar, _INTERPS[interp_mode], dy)


def _remap_bwd_samples(rng):
    out = []
    for s in _remap_samples(rng)[::3]:
        x, m = s.args
        out.append(Sample(x, m, rand(rng, (m.shape[0], x.shape[1]) + m.shape[1:3]), **s.kwargs))
    return out


def _rand_mats(rng, n):
    mats = np.tile(np.eye(3), (n, 1, 1)) + rng.uniform(-0.3, 0.3, (n, 3, 3))
    mats[:, 2] = [0.02, -0.03, 1.0]
    mats[:, :2, 2] += rng.uniform(-1, 1, (n, 2))
    return mats.astype(np.float32)


def _wp(x, mat, idx, out_shape=None, border_mode="replicate", border_val=0.0, interp_mode="linear"):
    return V.warp_perspective(x, mat, out_shape, mat_idx=idx, border_mode=border_mode,
                              border_val=border_val, interp_mode=interp_mode)


def _wp_ref(x, mat, idx, out_shape=None, border_mode="replicate", border_val=0.0,
            interp_mode="linear"):
    return _warp_ref(x, _mat_coords(mat), [int(i) for i in idx], out_shape[0], out_shape[1],
                     _BORDERS[border_mode], border_val, _INTERPS[interp_mode])


def _wp_samples(rng):
    out = []
    x = rand(rng, (2, 2, 5, 4))
    for bm, im in (("replicate", "linear"), ("constant", "linear"), ("reflect", "nearest"),
                   ("wrap", "linear"), ("reflect_101", "cubic"), ("constant", "nearest"),
                   ("constant", "cubic")):
        out.append(Sample(x, _rand_mats(rng, 3), np.array([1, 0, 1], np.int32), out_shape=(4, 6),
                          border_mode=bm, border_val=-0.5, interp_mode=im))
    out.append(Sample(x, _rand_mats(rng, 0), np.zeros((0,), np.int32), out_shape=(3, 3)))
    return out


def _wp_bwd(x, mat, idx, dy, out_shape=None, border_mode="replicate", border_val=0.0,
            interp_mode="linear"):
    return _ops["warp_perspective_backward"](
        x, mat, idx, dy, out_h=out_shape[0], out_w=out_shape[1],
        border_mode=_BORDERS[border_mode], border_val=border_val,
        interp_mode=_INTERPS[interp_mode])


def _wp_bwd_ref(x, mat, idx, dy, out_shape=None, border_mode="replicate", border_val=0.0,
                interp_mode="linear"):
    return _warp_ref(x, _mat_coords(mat), [int(i) for i in idx], out_shape[0], out_shape[1],
                     _BORDERS[border_mode], border_val, _INTERPS[interp_mode], dy)


def _wp_bwd_samples(rng):
    out = []
    for s in _wp_samples(rng)[::2]:
        x, mat, idx = s.args
        shape = s.kwargs["out_shape"]
        out.append(Sample(x, mat, idx, rand(rng, (mat.shape[0], x.shape[1]) + tuple(shape)),
                          **s.kwargs))
    return out


def _wa(x, mat, out_shape=None, **kw):
    return V.warp_affine(x, mat, out_shape, **kw)


def _wa_ref(x, mat, out_shape=None, border_mode="replicate", border_val=0.0, format="NHWC",
            interp_mode="linear"):
    full = np.concatenate([mat, np.tile([[[0, 0, 1.0]]], (mat.shape[0], 1, 1))], 1)
    xin = x.transpose(0, 3, 1, 2) if format == "NHWC" else x
    y = _warp_ref(xin, _mat_coords(full), list(range(x.shape[0])), out_shape[0], out_shape[1],
                  _BORDERS[border_mode], border_val, _INTERPS[interp_mode])
    return y.transpose(0, 2, 3, 1) if format == "NHWC" else y


def _wa_samples(rng):
    mats = _rand_mats(rng, 2)[:, :2]
    return [Sample(rand(rng, (2, 5, 4, 3)), mats, out_shape=(3, 4)),
            Sample(rand(rng, (2, 3, 5, 4)), mats, out_shape=(4, 4), format="NCHW", border_mode="constant",
                   border_val=0.5, interp_mode="nearest")]


# ===================== nms =====================
def _nms_ref(boxes, scores, iou_thresh, max_output=None):
    order = sorted(range(len(scores)),  # NaN scores last
                   key=lambda i: (bool(np.isnan(scores[i])), 0.0 if np.isnan(scores[i])
                                  else -scores[i], i))
    keep = []
    for i in order:
        if max_output is not None and len(keep) >= max_output:
            break
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            inter = w * h if w > 0 and h > 0 else 0.0
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union > iou_thresh:
                ok = False
                break
        if ok:
            keep.append(i)
    return np.array(keep, dtype=np.int32)


def _nms_samples(rng):
    xy = rng.uniform(0, 20, (40, 2))
    wh = rng.uniform(2, 12, (40, 2))
    boxes = np.concatenate([xy, xy + wh], 1)
    scores = rng.permutation(40) / 40.0
    return [Sample(boxes, scores, iou_thresh=0.3), Sample(boxes, scores, iou_thresh=0.6),
            Sample(boxes, scores, iou_thresh=0.3, max_output=5),
            Sample(np.zeros((0, 4)), np.zeros((0,)), iou_thresh=0.5)]


# ===================== interpolate / resize / rotate / flip / rot90 / cvt_color =====================
def _axis_linear(x, axis, out, align):
    """Linear interpolation along an axis: source o * s (+ 0.5 s - 0.5 for half-pixel
    centres), edges replicated: PyTorch's values (test_vision_peer.py), with the zero-weight
    neighbour at an edge being the edge cell itself."""
    n = x.shape[axis]
    if align:
        src = np.arange(out) * ((n - 1) / (out - 1) if out > 1 else 0.0)
    else:
        s = n / out
        src = np.arange(out) * s + (0.5 * s - 0.5)
    f = np.floor(src)
    t = src - f
    i0 = np.clip(f, 0, n - 1).astype(int)
    i1 = np.clip(f + 1, 0, n - 1).astype(int)
    sh = [1] * x.ndim
    sh[axis] = out
    return np.take(x, i0, axis) * (1 - t).reshape(sh) + np.take(x, i1, axis) * t.reshape(sh)


def _cubic(d, a=-0.75):
    d = abs(d)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    if d < 2:
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return 0.0


def _axis_cubic(x, axis, out):
    n = x.shape[axis]
    xm = np.moveaxis(x, axis, -1)
    y = np.zeros(xm.shape[:-1] + (out,))
    for o in range(out):
        src = (o + 0.5) * n / out - 0.5
        f = math.floor(src)
        for k in range(-1, 3):
            y[..., o] += _cubic(src - (f + k)) * xm[..., min(max(f + k, 0), n - 1)]
    return np.moveaxis(y, -1, axis)


def _interp_ref(x, size=None, scale_factor=None, mode="bilinear", align_corners=None):
    nsp = x.ndim - 2
    if size is None:
        sf = scale_factor if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nsp
        size = [int(math.floor(x.shape[2 + i] * s)) for i, s in enumerate(sf)]
    size = [size] * nsp if isinstance(size, int) else list(size)
    y = x
    for i, o in enumerate(size):
        ax = 2 + i
        if mode == "nearest":
            n = x.shape[ax]
            y = np.take(y, np.minimum(np.floor(np.arange(o) * (n / o)), n - 1).astype(int), ax)
        elif mode == "bicubic":
            y = _axis_cubic(y, ax, o)
        else:
            y = _axis_linear(y, ax, o, bool(align_corners))
    return y


def _interp_samples(rng):
    x4 = rand(rng, (2, 2, 4, 5))
    return [Sample(x4, size=(7, 3)), Sample(x4, scale_factor=2.0),
            Sample(x4, size=(3, 8), align_corners=True),
            Sample(x4, size=(1, 1), align_corners=True),
            Sample(x4, size=(6, 7), mode="nearest"), Sample(x4, size=(3, 2), mode="nearest"),
            Sample(x4, size=(6, 3), mode="bicubic"),
            Sample(rand(rng, (2, 3, 5)), size=9, mode="linear"),
            Sample(rand(rng, (2, 3, 5)), size=3, mode="linear", align_corners=True),
            Sample(rand(rng, (1, 2, 3, 4, 2)), size=(2, 5, 3), mode="trilinear"),
            Sample(rand(rng, (1, 1, 3, 2, 2)), scale_factor=1.5, mode="trilinear",
                   align_corners=True)]


def _resize_ref(x, target_shape=None, interp_mode="linear", format="NCHW"):
    mode = {"linear": "bilinear", "nearest": "nearest", "cubic": "bicubic"}[interp_mode]
    xin = x.transpose(0, 3, 1, 2) if format == "NHWC" else x
    y = _interp_ref(xin, size=target_shape, mode=mode)
    return y.transpose(0, 2, 3, 1) if format == "NHWC" else y


def _resize_samples(rng):
    return [Sample(rand(rng, (1, 2, 5, 4)), target_shape=(3, 7)),
            Sample(rand(rng, (2, 4, 3, 2)), target_shape=(5, 5), interp_mode="nearest",
                   format="NHWC"),
            Sample(rand(rng, (1, 1, 4, 4)), target_shape=(6, 2), interp_mode="cubic")]


def _rotate_ref(x, angle=0.0, center=None, interp_mode="linear", border_mode="constant",
                border_val=0.0, format="NHWC"):
    xin = x.transpose(0, 3, 1, 2) if format == "NHWC" else x
    H, W = xin.shape[2:]
    cx, cy = ((W - 1) / 2, (H - 1) / 2) if center is None else center
    t = math.radians(angle)

    def coords(n, oh, ow):  # the output pixel turned back by -angle (y down) about the centre
        u, v = ow - cx, oh - cy
        return (math.cos(t) * u - math.sin(t) * v + cx, math.sin(t) * u + math.cos(t) * v + cy)
    y = _warp_ref(xin, coords, list(range(x.shape[0])), H, W, _BORDERS[border_mode],
                  border_val, _INTERPS[interp_mode])
    return y.transpose(0, 2, 3, 1) if format == "NHWC" else y


def _rotate_samples(rng):
    return [Sample(rand(rng, (2, 5, 4, 3)), angle=30.0),
            Sample(rand(rng, (1, 2, 4, 6)), angle=-75.0, center=(1.0, 2.5), border_mode="replicate",
                   format="NCHW"),
            Sample(rand(rng, (1, 4, 4, 1)), angle=90.0, interp_mode="nearest")]


def _flip_ref(x, vertical=True, horizontal=True):
    axes = ([x.ndim - 3] if vertical else []) + ([x.ndim - 2] if horizontal else [])
    return np.flip(x, axes) if axes else x


def _flip_samples(rng):
    x = rand(rng, (2, 3, 4, 2))
    return [Sample(x), Sample(x, vertical=False), Sample(x, horizontal=False),
            Sample(rand(rng, (3, 5, 1)), vertical=True, horizontal=True)]


def _rot90_ref(x, clockwise=True):
    return np.rot90(x, -1 if clockwise else 1, axes=(x.ndim - 3, x.ndim - 2))


def _rot90_samples(rng):
    x = rand(rng, (2, 3, 4, 2))
    return [Sample(x), Sample(x, clockwise=False), Sample(rand(rng, (3, 5, 1)))]


def _cvt_ref(x, mode):
    """MegDNN's float conversions (dnn/src/naive/cvt_color), written out per channel."""
    c = [x[..., i] for i in range(x.shape[-1])]
    if mode in ("RGB2GRAY", "RGBA2GRAY"):
        return (0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])[..., None]
    if mode == "BGR2GRAY":
        return (0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2])[..., None]
    if mode == "RGB2YUV":
        y = 0.114 * c[0] + 0.587 * c[1] + 0.299 * c[2]
        return np.stack([y, 0.492 * (c[0] - y) + 0.5, 0.877 * (c[2] - y) + 0.5], -1)
    if mode == "YUV2RGB":
        cr, cb = c[1] - 0.5, c[2] - 0.5
        return np.stack([c[0] + 2.032 * cr, c[0] - 0.581 * cb - 0.395 * cr,
                         c[0] + 1.140 * cb], -1)
    order = {"RGB2BGR": [2, 1, 0], "GRAY2RGB": [0, 0, 0], "RGBA2BGR": [2, 1, 0]}[mode]
    return np.stack([c[i] for i in order], -1)


def _cvt_samples(rng):
    return [Sample(rand(rng, (2, 3, 4, 3)), mode=m)
            for m in ("RGB2GRAY", "BGR2GRAY", "RGB2BGR", "RGB2YUV", "YUV2RGB")] + [
        Sample(rand(rng, (1, 2, 2, 1)), mode="GRAY2RGB"),
        Sample(rand(rng, (1, 2, 2, 4)), mode="RGBA2BGR"),
        Sample(rand(rng, (2, 4)), mode="RGBA2GRAY")]


# ===================== correlation =====================
def _corr_geom(a, kernel_size=1, max_displacement=1, stride1=1, stride2=1, pad_size=0,
               is_multiply=True):
    N, C, H, W = a.shape
    kr = (kernel_size - 1) // 2
    border = max_displacement + kr
    OH = -(-(H + 2 * pad_size - 2 * border) // stride1)
    OW = -(-(W + 2 * pad_size - 2 * border) // stride1)
    R = max_displacement // stride2
    return OH, OW, R


def _corr_patches(a, kw):
    """[(n, d, oh, ow, [(c, ya, xa, yb, xb)])]: every output cell and the pixel pairs it reads
    (unpadded coordinates; outside pixels read 0)."""
    k, md, s1, s2, pad = (kw.get("kernel_size", 1), kw.get("max_displacement", 1),
                          kw.get("stride1", 1), kw.get("stride2", 1), kw.get("pad_size", 0))
    OH, OW, R = _corr_geom(a, **kw)
    D = 2 * R + 1
    for n in range(a.shape[0]):
        for d in range(D * D):
            oy, ox = (d // D - R) * s2, (d % D - R) * s2
            for oh in range(OH):
                for ow in range(OW):
                    y1, x1 = oh * s1 + md - pad, ow * s1 + md - pad
                    yield n, d, oh, ow, [(c, y1 + j, x1 + i, y1 + j + oy, x1 + i + ox)
                                         for c in range(a.shape[1]) for j in range(k)
                                         for i in range(k)]


def _px(t, n, c, y, x):
    return t[n, c, y, x] if 0 <= y < t.shape[2] and 0 <= x < t.shape[3] else 0.0


def _corr_ref(a, b, **kw):
    OH, OW, R = _corr_geom(a, **kw)
    D = 2 * R + 1
    y = np.zeros((a.shape[0], D * D, OH, OW))
    S = kw.get("kernel_size", 1) ** 2 * a.shape[1]
    mul = kw.get("is_multiply", True)
    for n, d, oh, ow, pairs in _corr_patches(a, kw):
        s = 0.0
        for c, ya, xa, yb, xb in pairs:
            va, vb = _px(a, n, c, ya, xa), _px(b, n, c, yb, xb)
            s += va * vb if mul else abs(va - vb)
        y[n, d, oh, ow] = s / S
    return y


def _corr_samples(rng):
    out = []
    for mul in (True, False):
        a, b = rand(rng, (2, 3, 6, 7)), rand(rng, (2, 3, 6, 7))
        out += [Sample(a, b, is_multiply=mul),
                Sample(a, b, kernel_size=3, max_displacement=2, stride1=2, stride2=2,
                       pad_size=2, is_multiply=mul),
                Sample(a[:1, :1], b[:1, :1], kernel_size=1, max_displacement=3, stride2=3,
                       pad_size=3, is_multiply=mul)]
    return out


def _corr_bwd(a, b, g, **kw):
    return _ops["correlation_backward"](a, b, g, **_corr_params(kw))


def _corr_params(kw):
    p = dict(kw)
    p["is_multiply"] = int(p.get("is_multiply", True))
    return p


def _corr_bwd_ref(a, b, g, **kw):
    da, db = np.zeros(a.shape), np.zeros(b.shape)
    S = kw.get("kernel_size", 1) ** 2 * a.shape[1]
    mul = kw.get("is_multiply", True)
    for n, d, oh, ow, pairs in _corr_patches(a, kw):
        gv = g[n, d, oh, ow] / S
        for c, ya, xa, yb, xb in pairs:
            va, vb = _px(a, n, c, ya, xa), _px(b, n, c, yb, xb)
            ina = 0 <= ya < a.shape[2] and 0 <= xa < a.shape[3]
            inb = 0 <= yb < b.shape[2] and 0 <= xb < b.shape[3]
            if ina:
                da[n, c, ya, xa] += gv * (vb if mul else np.sign(va - vb))
            if inb:
                db[n, c, yb, xb] += gv * (va if mul else -np.sign(va - vb))
    return da, db


def _corr_bwd_samples(rng):
    out = []
    for s in _corr_samples(rng):
        a, b = s.args
        OH, OW, R = _corr_geom(a, **s.kwargs)
        out.append(Sample(a, b, rand(rng, (a.shape[0], (2 * R + 1) ** 2, OH, OW)), **s.kwargs))
    return out[::2] + out[1:2]


def _corr_signed(a, b, u, v, **kw):
    return _ops["correlation_signed"](a, b, u, v, **_corr_params(kw))


def _corr_signed_ref(a, b, u, v, **kw):
    OH, OW, R = _corr_geom(a, **kw)
    D = 2 * R + 1
    y = np.zeros((a.shape[0], D * D, OH, OW))
    S = kw.get("kernel_size", 1) ** 2 * a.shape[1]
    for n, d, oh, ow, pairs in _corr_patches(a, kw):
        y[n, d, oh, ow] = sum((_px(u, n, c, ya, xa) - _px(v, n, c, yb, xb)) *
                              np.sign(_px(a, n, c, ya, xa) - _px(b, n, c, yb, xb))
                              for c, ya, xa, yb, xb in pairs) / S
    return y


def _corr_signed_samples(rng):
    return [Sample(*[rand(rng, (2, 2, 5, 5)) for _ in range(4)], kernel_size=3, pad_size=1,
                   is_multiply=False),
            Sample(*[rand(rng, (1, 3, 5, 6)) for _ in range(4)], max_displacement=2, stride2=2,
                   is_multiply=False)]


def _corr_errors():
    a = _t(1, 2, 5, 5)
    return {
        "correlation": [
            (lambda: V.correlation(a, _t(1, 2, 5, 4)), ValueError,
             "correlation: data1 (1, 2, 5, 5) and data2 (1, 2, 5, 4) must have the same shape"),
            (lambda: V.correlation(a, a, kernel_size=2), ValueError,
             "correlation: kernel_size must be odd"),
            (lambda: V.correlation(a, a, max_displacement=3), ValueError,
             "correlation: input (1, 2, 5, 5) padded by 0 is too small"),
            (lambda: V.correlation(_t(2, 5, 5), _t(2, 5, 5)), ValueError,
             "correlation: data1 must be 4-d")],
        "correlation_backward": [
            (lambda: _ops["correlation_backward"](a, a, _t(1, 9, 2, 2)), ValueError,
             "correlation_backward: output gradient has shape (1, 9, 2, 2), expected "
             "(1, 9, 3, 3)")],
        "correlation_signed": [
            (lambda: _ops["correlation_signed"](a, a, _t(1, 2, 5, 4), a), ValueError,
             "correlation_signed: u has shape (1, 2, 5, 4)")],
    }


# ===================== deformable PS RoI pooling =====================
def _dps_cells(x, rois, trans, k, ch, oh, ow, kw):
    """[(row, col, weight)] of bin (oh, ow) of channel ch of box k (MegEngine's rule)."""
    H, W = x.shape[2:]
    OH, OW, part, spp = kw["pooled_h"], kw["pooled_w"], kw["part_size"], kw["sample_per_part"]
    r = rois[k]
    wl, hl = _round(r[1]) * kw["spatial_scale"] - 0.5, _round(r[2]) * kw["spatial_scale"] - 0.5
    wr = (_round(r[3]) + 1) * kw["spatial_scale"] - 0.5
    hr = (_round(r[4]) + 1) * kw["spatial_scale"] - 0.5
    rw, rh = max(wr - wl, 0.1), max(hr - hl, 0.1)
    bh, bw = rh / OH, rw / OW
    w0, h0 = ow * bw + wl, oh * bh + hl
    if not kw["no_trans"]:
        ncls = trans.shape[1] // 2
        cls = ch // (x.shape[1] // ncls)
        ph, pw = math.floor(oh / OH * part), math.floor(ow / OW * part)
        w0 += trans[k, 2 * cls, ph, pw] * kw["trans_std"] * rw
        h0 += trans[k, 2 * cls + 1, ph, pw] * kw["trans_std"] * rh
    pts = []
    for ih in range(spp):
        for iw in range(spp):
            w, h = w0 + iw * bw / spp, h0 + ih * bh / spp
            if -0.5 <= w <= W - 0.5 and -0.5 <= h <= H - 0.5:
                pts.append((min(max(h, 0.0), H - 1), min(max(w, 0.0), W - 1)))
    cells = []
    for h, w in pts:
        y0, y1, x0, x1 = math.floor(h), math.ceil(h), math.floor(w), math.ceil(w)
        dh, dw = h - y0, w - x0
        cells += [(y0, x0, (1 - dw) * (1 - dh) / len(pts)), (y1, x0, (1 - dw) * dh / len(pts)),
                  (y0, x1, dw * (1 - dh) / len(pts)), (y1, x1, dw * dh / len(pts))]
    return cells


def _dps_kw(no_trans, part_size, pooled_h, pooled_w, sample_per_part, spatial_scale,
            trans_std=0.1):
    return dict(no_trans=no_trans, part_size=part_size, pooled_h=pooled_h, pooled_w=pooled_w,
                sample_per_part=sample_per_part, spatial_scale=spatial_scale,
                trans_std=trans_std)


def _dps_ref(x, rois, trans, **kw):
    kw = _dps_kw(**kw)
    K, C = rois.shape[0], x.shape[1]
    y = np.zeros((K, C, kw["pooled_h"], kw["pooled_w"]))
    for k in range(K):
        b = int(rois[k, 0])
        for ch in range(C):
            for oh in range(kw["pooled_h"]):
                for ow in range(kw["pooled_w"]):
                    y[k, ch, oh, ow] = sum(wt * x[b, ch, r, c] for r, c, wt in
                                           _dps_cells(x, rois, trans, k, ch, oh, ow, kw))
    return y


def _dps_bwd(x, rois, trans, dy, **kw):
    kw = _dps_kw(**kw)
    kw["no_trans"] = int(kw["no_trans"])
    return _ops["deformable_psroi_pooling_backward"](x, rois, trans, dy, **kw)


def _dps_bwd_ref(x, rois, trans, dy, **kw):
    kw = _dps_kw(**kw)
    dx = np.zeros(x.shape)
    for k in range(rois.shape[0]):
        b = int(rois[k, 0])
        for ch in range(x.shape[1]):
            for oh in range(kw["pooled_h"]):
                for ow in range(kw["pooled_w"]):
                    for r, c, wt in _dps_cells(x, rois, trans, k, ch, oh, ow, kw):
                        dx[b, ch, r, c] += wt * dy[k, ch, oh, ow]
    return dx


_DPS_ROIS = np.array([[0, 1.2, 0.6, 5.4, 4.1], [1, -1.0, 2.0, 3.0, 9.0], [1, 4.0, 3.0, 4.0, 3.0]],
                     dtype=np.float32)


def _dps_samples(rng):
    x = rand(rng, (2, 4, 7, 6))
    trans2 = rng.uniform(-1, 1, (3, 4, 2, 2)).astype(np.float32)  # 2 classes, 2 x 2 parts
    return [Sample(x, _DPS_ROIS, trans2, no_trans=False, part_size=2, pooled_h=3, pooled_w=2,
                   sample_per_part=2, spatial_scale=0.8, trans_std=0.3),
            Sample(x, _DPS_ROIS, rng.uniform(-1, 1, (3, 2, 3, 3)).astype(np.float32),
                   no_trans=False, part_size=3, pooled_h=3, pooled_w=3, sample_per_part=1,
                   spatial_scale=1.0),
            Sample(x, _DPS_ROIS[:2], np.zeros((1, 1, 1, 1), np.float32), no_trans=True,
                   part_size=1, pooled_h=2, pooled_w=2, sample_per_part=3, spatial_scale=0.5)]


def _dps_bwd_samples(rng):
    out = []
    for s in _dps_samples(rng)[::2]:
        x, rois, trans = s.args
        ys = (rois.shape[0], x.shape[1], s.kwargs["pooled_h"], s.kwargs["pooled_w"])
        out.append(Sample(x, rois, trans, rand(rng, ys), **s.kwargs))
    return out


def _dps_errors():
    x, r = _t(1, 2, 5, 5), _t(2, 5) * 0
    kw = dict(no_trans=False, part_size=2, pooled_h=2, pooled_w=2, sample_per_part=1,
              spatial_scale=1.0)
    return {
        "deformable_psroi_pooling": [
            (lambda: F.deformable_psroi_pooling(x, r, _t(2, 2, 3, 3), **kw), ValueError,
             "deformable_psroi_pooling: trans must have shape (2, 2 * classes, 2, 2)"),
            (lambda: F.deformable_psroi_pooling(_t(1, 3, 5, 5), r, _t(2, 4, 2, 2), **kw),
             ValueError, "deformable_psroi_pooling: the input's 3 channels do not split into 2"),
            (lambda: F.deformable_psroi_pooling(x, _t(2, 4), _t(2, 2, 2, 2), **kw), ValueError,
             "deformable_psroi_pooling: rois must have shape (K, 5)"),
            (lambda: F.deformable_psroi_pooling(x, _t(2, 5), _t(2, 2, 2, 2), **kw), IndexError,
             "deformable_psroi_pooling: roi 0 has batch index 1 outside [0, 1)")],
        "deformable_psroi_pooling_backward": [
            (lambda: _ops["deformable_psroi_pooling_backward"](x, r, _t(2, 2, 2, 2), _t(2, 2, 3, 2),
                                                               part_size=2, pooled_h=2, pooled_w=2),
             ValueError, "deformable_psroi_pooling_backward: output gradient has shape")],
    }


# ===================== coordinate gradients =====================
# References by central differences of the loop references above (every sample sits off the
# cell edges, where the sampling is smooth): d sum(dy * f) / d coordinate.
_H = 1e-6


def _fd(f, base, dy):
    """d sum(dy * f(c)) / dc for every entry of base (float64). A difference at rounding level
    is a flat direction (cells a border mode repeats): 0, so that 0 * inf gives NaN as the
    exact slope does."""
    g = np.zeros(base.shape)
    for i in np.ndindex(base.shape):
        hi, lo = base.copy(), base.copy()
        hi[i] += _H
        lo[i] -= _H
        fh, fl = f(hi), f(lo)
        diff = np.where(np.abs(fh - fl) <= 1e-12 * (1 + np.abs(fh)), 0.0, fh - fl)
        g[i] = (diff * dy).sum() / (2 * _H)
    return g


def _remap_mat_op(x, m, dy, border_mode="replicate", scalar=0.0, interp_mode="linear"):
    return _ops["remap_backward_mat"](x, m, dy, border_mode=_BORDERS[border_mode],
                                      border_val=scalar, interp_mode=_INTERPS[interp_mode])


def _remap_mat_ref(x, m, dy, border_mode="replicate", scalar=0.0, interp_mode="linear"):
    """Each map entry moves only its own pixel: differences of that pixel's samples."""
    g = np.zeros(m.shape)
    N, OH, OW, _ = m.shape
    for n, oh, ow in np.ndindex(N, OH, OW):
        def f(c, n=n):
            return _warp_ref(x[n:n + 1], lambda *_: (c[0], c[1]), [0], 1, 1,
                             _BORDERS[border_mode], scalar, _INTERPS[interp_mode])
        g[n, oh, ow] = _fd(f, m[n, oh, ow].copy(), dy[n:n + 1, :, oh:oh + 1, ow:ow + 1])
    return g


def _remap_mat_samples(rng):
    return [Sample(*s.args, **s.kwargs) for s in _remap_bwd_samples(rng)]


def _wp_mat_op(x, mat, idx, dy, out_shape=None, border_mode="replicate", border_val=0.0,
               interp_mode="linear"):
    return _ops["warp_perspective_backward_mat"](
        x, mat, idx, dy, out_h=out_shape[0], out_w=out_shape[1],
        border_mode=_BORDERS[border_mode], border_val=border_val,
        interp_mode=_INTERPS[interp_mode])


def _wp_mat_ref(x, mat, idx, dy, out_shape=None, **kw):
    g = np.zeros(mat.shape)
    for n in range(mat.shape[0]):
        def f(mn, n=n):
            return _wp_ref(x, mn[None], idx[n:n + 1], out_shape=out_shape, **kw)
        g[n] = _fd(f, mat[n].astype(np.float64), dy[n:n + 1])
    return g


def _wp_mat_samples(rng):
    return [Sample(*s.args, **s.kwargs) for s in _wp_bwd_samples(rng)[:2]]


def _dps_trans_op(x, rois, trans, dy, **kw):
    kw = _dps_kw(**kw)
    kw["no_trans"] = int(kw["no_trans"])
    return _ops["deformable_psroi_pooling_backward_trans"](x, rois, trans, dy, **kw)


def _dps_trans_ref(x, rois, trans, dy, **kw):
    """Bin by bin: each bin moves with its class's offsets at its part."""
    kw = _dps_kw(**kw)
    g = np.zeros(trans.shape)
    if kw["no_trans"]:
        return g
    K, C, OH, OW = dy.shape
    ncls, part = trans.shape[1] // 2, kw["part_size"]
    for k, ch, oh, ow in np.ndindex(K, C, OH, OW):
        b = int(rois[k, 0])
        cls = ch // (C // ncls)
        for axis in (0, 1):
            at = (k, 2 * cls + axis, math.floor(oh / OH * part), math.floor(ow / OW * part))
            vals = []
            for step in (_H, -_H):
                t = trans.astype(np.float64)
                t[at] += step
                vals.append(sum(wt * x[b, ch, r, c]
                                for r, c, wt in _dps_cells(x, rois, t, k, ch, oh, ow, kw)))
            g[at] += dy[k, ch, oh, ow] * (vals[0] - vals[1]) / (2 * _H)
    return g


def _coord_errors():
    img, r = _t(2, 1, 4, 4), _t(2, 5) * 0
    return {
        "remap_backward_mat": [
            (lambda: _ops["remap_backward_mat"](img, _t(2, 3, 3, 2), _t(2, 1, 2, 3)), ValueError,
             "remap_backward_mat: output gradient has shape (2, 1, 2, 3), expected (2, 1, 3, 3)")],
        "warp_perspective_backward_mat": [
            (lambda: _ops["warp_perspective_backward_mat"](img, _t(2, 3, 3), ty.tensor([0, 2]),
                                                           _t(2, 1, 3, 3), out_h=3, out_w=3),
             IndexError, "warp_perspective_backward_mat: mat_idx[1] = 2 is outside [0, 2)")],
        "deformable_psroi_pooling_backward_trans": [
            (lambda: _ops["deformable_psroi_pooling_backward_trans"](
                _t(1, 2, 5, 5), r, _t(2, 2, 2, 2), _t(2, 2, 3, 2), part_size=2, pooled_h=2,
                pooled_w=2),
             ValueError, "deformable_psroi_pooling_backward_trans: output gradient has shape")],
    }


# ===================== rows =====================
_TOL = dict(rtol=1e-5, atol=1e-5)
_F32 = ("float32", "float64")


def _roi_rows():
    rows = []
    for kind, fn, ref, samples in (
            ("align", V.roi_align, _roi_align_ref, _align_samples),
            ("pooling", V.roi_pooling, _roi_pool_ref, _pool_samples)):
        fwd, bwd, sel = (f"roi_{kind}", f"roi_{kind}_backward", f"roi_{kind}_select")
        rows.append(OpInfo(fwd, fn, ref, samples, ops=[fwd, bwd], dtypes=_F32,
                           nondiff_args=(1,), **_TOL, errors=_roi_errors(fwd, fn)))
        for op, which, other in ((bwd, "bwd", sel), (sel, "sel", bwd)):
            f, r = _roi_direct(op, kind, which)
            rows.append(OpInfo(op, f, r, _direct_samples(kind, which), ops=[op, other],
                               dtypes=_F32, nondiff_args=(0, 1), **_TOL,
                               errors=[(lambda op=op: _ops[op](_t(1, 1, 4, 4), _t(2, 5),
                                                               _t(1, 1, 3, 3)),
                                        ValueError, f"{op}: ")]))
    return rows


def _roi_errors(op, fn):
    bad_batch = ty.tensor([[3, 0, 0, 1, 1]], dtype="float32")
    nan_roi = ty.tensor([[0, 0, float("nan"), 1, 1]], dtype="float32")
    return [(lambda: fn(_t(1, 1, 4, 4), _t(2, 4), 2), ValueError,
             f"{op}: rois must have shape (K, 5)"),
            (lambda: fn(_t(1, 4, 4), _t(2, 5), 2), ValueError,
             f"{op}: input must be 4-d (N, C, H, W)"),
            (lambda: fn(_t(1, 1, 4, 4), bad_batch, 2), IndexError,
             f"{op}: roi 0 has batch index 3 outside [0, 1)"),
            (lambda: fn(_t(1, 1, 4, 4), nan_roi, 2), ValueError,
             f"{op}: roi 0 has a non-finite or too large value"),
            (lambda: fn(_t(1, 1, 4, 4), _t(1, 5), 2, mode="min"), ValueError,
             f"{op}: mode must be 'max' or 'average'"),
            (lambda: _ops[op](_t(1, 1, 4, 4), _t(1, 5), out_h=0), ValueError,
             f"{op}: param 'out_h'")]


def _warp_errors():
    img = _t(2, 1, 4, 4)
    return {
        "remap": [(lambda: V.remap(img, _t(2, 3, 3, 3)), ValueError,
                   "remap: map_xy must have shape (2, OH, OW, 2)"),
                  (lambda: V.remap(img, _t(1, 3, 3, 2)), ValueError,
                   "remap: map_xy must have shape (2, OH, OW, 2)"),
                  (lambda: V.remap(img, _t(2, 3, 3, 2, dtype="int32")), TypeError,
                   "remap: map_xy must be floating point"),
                  (lambda: V.remap(img, _t(2, 3, 3, 2), border_mode="transparent"), ValueError,
                   "remap: unsupported border_mode"),
                  (lambda: V.remap(img, _t(2, 3, 3, 2), interp_mode="area"), ValueError,
                   "remap: unsupported interp_mode")],
        "remap_backward": [(lambda: _ops["remap_backward"](img, _t(2, 3, 3, 2), _t(2, 1, 2, 2)),
                            ValueError, "remap_backward: output gradient has shape (2, 1, 2, 2), "
                                        "expected (2, 1, 3, 3)")],
        "warp_perspective": [
            (lambda: V.warp_perspective(img, _t(2, 2, 3), (3, 3)), ValueError,
             "warp_perspective: mat must have shape (M, 3, 3)"),
            (lambda: V.warp_perspective(img, _t(3, 3, 3), (3, 3)), ValueError,
             "warp_perspective: 3 matrices for 2 input images"),
            (lambda: V.warp_perspective(img, _t(2, 3, 3), (3, 3), mat_idx=[0, 2]), IndexError,
             "warp_perspective: mat_idx[1] = 2 is outside [0, 2)"),
            (lambda: V.warp_perspective(img, _t(2, 3, 3), (3, 3), mat_idx=[0]), ValueError,
             "warp_perspective: mat_idx must have shape (2,)"),
            (lambda: V.warp_perspective(img, _t(2, 3, 3), (3, 3), format="CHWN"), ValueError,
             "warp_perspective: format must be 'NCHW' or 'NHWC'"),
            (lambda: V.warp_perspective(_t(2, 4, 4), _t(2, 3, 3), (3, 3)), ValueError,
             "warp_perspective: inp must be 4-d")],
        "warp_perspective_backward": [
            (lambda: _ops["warp_perspective_backward"](img, _t(2, 3, 3), ty.tensor([0, 1]),
                                                       _t(2, 1, 2, 2), out_h=3, out_w=3),
             ValueError, "warp_perspective_backward: output gradient has shape (2, 1, 2, 2)")],
        "warp_affine": [(lambda: V.warp_affine(img, _t(2, 3, 3), (3, 3)), ValueError,
                         "warp_affine: mat must have shape (N, 2, 3)")],
    }


def _misc_errors():
    x = _t(1, 1, 4, 4)
    return {
        "nms": [(lambda: V.nms(_t(3, 5), _t(3), 0.5), ValueError,
                 "nms: boxes must have shape (N, 4)"),
                (lambda: V.nms(_t(3, 4), _t(2), 0.5), ValueError,
                 "nms: scores must have shape (3,)"),
                (lambda: V.nms(_t(3, 4), _t(3), 0.5, max_output=0), ValueError,
                 "nms: max_output must be a positive integer"),
                (lambda: V.nms(_t(3, 4, dtype="int32"), _t(3), 0.5), TypeError,
                 "nms: boxes must be floating point")],
        "interpolate": [(lambda: V.interpolate(x, 3, mode="area"), ValueError,
                         "interpolate: unsupported interpolate mode"),
                        (lambda: V.interpolate(x, 3, mode="nearest", align_corners=True),
                         ValueError, "interpolate: align_corners option can only be set"),
                        (lambda: V.interpolate(x), ValueError,
                         "interpolate: scale_factor must not be None"),
                        (lambda: V.interpolate(x, 3, 2.0), ValueError,
                         "interpolate: scale_factor must be None"),
                        (lambda: V.interpolate(x, 3, mode="trilinear"), ValueError,
                         "interpolate: mode 'trilinear' needs a 5-d input")],
        "resize": [(lambda: V.resize(x, (0, 3)), ValueError,
                    "resize: target_shape must be positive"),
                   (lambda: V.resize(x, (2, 3), interp_mode="lanczos4"), ValueError,
                    "resize: unsupported interp_mode")],
        "rotate": [(lambda: V.rotate(_t(4, 4, 1), 30), ValueError, "rotate: inp must be 4-d")],
        "flip": [(lambda: V.flip(_t(4, 4)), ValueError, "flip: inp must be (N, H, W, C)")],
        "rot90": [(lambda: V.rot90(_t(4)), ValueError, "rot90: inp must be (N, H, W, C)")],
        "cvt_color": [(lambda: V.cvt_color(_t(1, 2, 2, 3), "RGB2HSV"), ValueError,
                       "cvt_color: unsupported mode 'RGB2HSV'"),
                      (lambda: V.cvt_color(_t(1, 2, 2, 4), "RGB2GRAY"), ValueError,
                       "cvt_color: mode RGB2GRAY needs 3 channels")],
    }


def _build():
    we, me, ce, de = _warp_errors(), _misc_errors(), _corr_errors(), _dps_errors()
    xe = _coord_errors()
    rows = _roi_rows()
    rows += [
        OpInfo("remap", V.remap, _remap_ref, _remap_samples, ops=["remap", "remap_backward"],
               dtypes=_F32, nondiff_args=(1,), **_TOL, errors=we["remap"]),
        OpInfo("remap_backward", _remap_bwd, _remap_bwd_ref, _remap_bwd_samples,
               ops=["remap_backward", "remap"], dtypes=_F32, nondiff_args=(0, 1), **_TOL,
               errors=we["remap_backward"]),
        OpInfo("warp_perspective", _wp, _wp_ref, _wp_samples,
               ops=["warp_perspective", "warp_perspective_backward"], dtypes=_F32,
               nondiff_args=(1, 2), **_TOL, errors=we["warp_perspective"]),
        OpInfo("warp_perspective_backward", _wp_bwd, _wp_bwd_ref, _wp_bwd_samples,
               ops=["warp_perspective_backward", "warp_perspective"], dtypes=_F32,
               nondiff_args=(0, 1, 2), **_TOL, errors=we["warp_perspective_backward"]),
        OpInfo("warp_affine", _wa, _wa_ref, _wa_samples,
               ops=["warp_perspective", "warp_perspective_backward"], dtypes=_F32,
               nondiff_args=(1,), **_TOL, errors=we["warp_affine"]),
        OpInfo("nms", V.nms, _nms_ref, _nms_samples, grad=False, dtypes=("float32",),
               errors=me["nms"]),
        OpInfo("interpolate", V.interpolate, _interp_ref, _interp_samples,
               ops=["warp_perspective", "remap", "index"], dtypes=_F32, **_TOL,
               errors=me["interpolate"]),
        OpInfo("resize", V.resize, _resize_ref, _resize_samples,
               ops=["warp_perspective", "remap", "index"], dtypes=_F32, **_TOL,
               errors=me["resize"]),
        OpInfo("rotate", V.rotate, _rotate_ref, _rotate_samples, ops=["warp_perspective"],
               dtypes=_F32, **_TOL, errors=me["rotate"]),
        OpInfo("flip_nhwc", V.flip, _flip_ref, _flip_samples, ops=["flip"],
               errors=me["flip"]),
        OpInfo("rot90", V.rot90, _rot90_ref, _rot90_samples, ops=["transpose", "flip"],
               errors=me["rot90"]),
        OpInfo("correlation", V.correlation, _corr_ref, _corr_samples,
               ops=["correlation", "correlation_backward", "correlation_signed"], dtypes=_F32,
               **_TOL, errors=ce["correlation"]),
        OpInfo("correlation_backward", _corr_bwd, _corr_bwd_ref, _corr_bwd_samples,
               ops=["correlation_backward", "correlation", "correlation_signed"], dtypes=_F32,
               **_TOL, errors=ce["correlation_backward"]),
        OpInfo("correlation_signed", _corr_signed, _corr_signed_ref, _corr_signed_samples,
               grad=False, dtypes=_F32, **_TOL, errors=ce["correlation_signed"]),
        OpInfo("deformable_psroi_pooling", F.deformable_psroi_pooling, _dps_ref, _dps_samples,
               ops=["deformable_psroi_pooling", "deformable_psroi_pooling_backward"],
               dtypes=_F32, nondiff_args=(1, 2), **_TOL, errors=de["deformable_psroi_pooling"]),
        OpInfo("deformable_psroi_pooling_backward", _dps_bwd, _dps_bwd_ref, _dps_bwd_samples,
               ops=["deformable_psroi_pooling_backward", "deformable_psroi_pooling"],
               dtypes=_F32, nondiff_args=(0, 1, 2), **_TOL,
               errors=de["deformable_psroi_pooling_backward"]),
        OpInfo("cvt_color", V.cvt_color, _cvt_ref, _cvt_samples, ops=["concat"], dtypes=_F32,
               **_TOL, errors=me["cvt_color"]),
        # first-order only (no gradient of their own): forward checks, traces and errors; the
        # differences' rounding (~1e-9) is above float64's 1e-12 tolerance, so float32 here and
        # float64 in test_vision_coord_grad.py's gradient checks
        OpInfo("remap_backward_mat", _remap_mat_op, _remap_mat_ref, _remap_mat_samples,
               grad=False, nondiff_args=(0, 1), **_TOL, errors=xe["remap_backward_mat"]),
        OpInfo("warp_perspective_backward_mat", _wp_mat_op, _wp_mat_ref, _wp_mat_samples,
               grad=False, nondiff_args=(0, 1, 2), **_TOL, errors=xe["warp_perspective_backward_mat"]),
        OpInfo("deformable_psroi_pooling_backward_trans", _dps_trans_op, _dps_trans_ref,
               _dps_bwd_samples, grad=False, nondiff_args=(0, 1, 2), **_TOL,
               errors=xe["deformable_psroi_pooling_backward_trans"]),
    ]
    return rows


ROWS = _build()
