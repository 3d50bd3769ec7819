"""Window-based layers of MegEngine's ``functional.nn``: sliding_window (Images2Neibs) and its
transpose (C ops, src/ops/window.c), and conv3d / conv_transpose3d, local_conv2d,
region_restricted_conv and deformable_conv2d.

The convolutions are compositions of table ops (sliding windows, pad, strided slices, conv2d /
conv_transpose2d over depth slices, batched matmul, gather, where), so they run eager, traced
and deployed alike and their gradients are those ops' gradient rules. Work per call is fixed
by the shapes only."""
from .. import _C
from .._args import to_int
from ..tensor import Tensor
from .conv import conv2d, conv_transpose2d, _add_bias, _check_mode

_ops = _C.ops

__all__ = ["sliding_window", "sliding_window_transpose", "conv3d", "conv_transpose3d",
           "local_conv2d", "region_restricted_conv", "deformable_conv2d"]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _tuple(v, n, name, fn, lo):
    if isinstance(v, (tuple, list)):
        if len(v) != n:
            raise ValueError(f"{fn}: {name} must be an int or {n} ints, got {v!r}")
        vals = tuple(to_int(x, name, fn) for x in v)
    else:
        vals = (to_int(v, name, fn),) * n
    for x in vals:
        if x < lo:
            raise ValueError(f"{fn}: {name} must be >= {lo}, got {v!r}")
    return vals


def _geometry(fn, kernel, padding, stride, dilation, n=2):
    return (_tuple(kernel, n, "kernel_size", fn, 1), _tuple(padding, n, "padding", fn, 0),
            _tuple(stride, n, "stride", fn, 1), _tuple(dilation, n, "dilation", fn, 1))


def _out_len(size, k, p, s, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _check_ndim(fn, x, nd, what="input"):
    if x.ndim != nd:
        raise ValueError(f"{fn}: {what} must be {nd}-d, got shape {tuple(x.shape)}")


def _pad_spatial(x, pads):
    """Zero padding of the trailing len(pads) dims, (p, p) each."""
    if not any(pads):
        return x
    full = [0, 0] * (x.ndim - len(pads))
    for p in pads:
        full += [p, p]
    return _ops["pad"](x, pads=full, mode=0, value=0.0)


def _window_params(k, p, s, d):
    return dict(window_h=k[0], window_w=k[1], pad_h=p[0], pad_w=p[1], stride_h=s[0],
                stride_w=s[1], dilate_h=d[0], dilate_w=d[1])


def _windows(fn, x, k, p, s, d):
    """(N, C, H, W) -> (N, C, OH, OW, KH*KW): the zero-padded windows (the sliding_window op)."""
    cols = _ops["sliding_window"](x, **_window_params(k, p, s, d))
    n, c, oh, ow = cols.shape[:4]
    return cols.reshape((n, c, oh, ow, k[0] * k[1])), oh, ow


def sliding_window(inp, kernel_size, padding=0, stride=1, dilation=1):
    """The sliding blocks of an (N, C, H, W) input: output (N, C, OH, OW, KH, KW) with
    out[n, c, i, j, a, b] = x_padded[n, c, i*sh + a*dh, j*sw + b*dw] (zero padding);
    OH = (H + 2*ph - dh*(KH-1) - 1) // sh + 1 (MegEngine's Images2Neibs; any dtype)."""
    k, p, s, d = _geometry("sliding_window", kernel_size, padding, stride, dilation)
    return _ops["sliding_window"](_tensor(inp), **_window_params(k, p, s, d))


def _dilate(v, axis, stride):
    """Inserts stride-1 zeros between the entries of v along axis (length (L-1)*stride+1)."""
    if stride == 1 or v.shape[axis] == 0:
        return v
    length = v.shape[axis]
    v = _ops["expand_dims"](v, axes=[axis + 1])
    pads = [0, 0] * v.ndim
    pads[2 * (axis + 1) + 1] = stride - 1
    v = _ops["pad"](v, pads=pads, mode=0, value=0.0)
    shape = list(v.shape)
    shape[axis:axis + 2] = [length * stride]
    v = v.reshape(tuple(shape))
    idx = [slice(None)] * v.ndim
    idx[axis] = slice(0, (length - 1) * stride + 1)
    return v[tuple(idx)]


def _place(v, axis, stride, offset, total):
    """v dilated by stride along axis, then zero padded to length total starting at offset."""
    v = _dilate(v, axis, stride)
    pads = [0, 0] * v.ndim
    pads[2 * axis] = offset
    pads[2 * axis + 1] = total - offset - v.shape[axis]
    return _ops["pad"](v, pads=pads, mode=0, value=0.0) if any(pads) else v


def _crop(x, axis, start, length):
    idx = [slice(None)] * x.ndim
    idx[axis] = slice(start, start + length)
    return x[tuple(idx)]


def sliding_window_transpose(inp, output_size, kernel_size, padding=0, stride=1, dilation=1):
    """The adjoint of sliding_window: an (N, C, OH, OW, KH, KW) float input summed back into
    (N, C, H, W) with (H, W) = output_size, each window entry added at the pixel it was taken
    from (MegEngine's SlidingWindowTranspose)."""
    fn = "sliding_window_transpose"
    h, w = _tuple(output_size, 2, "output_size", fn, 0)
    k, p, s, d = _geometry(fn, kernel_size, padding, stride, dilation)
    return _ops["sliding_window_transpose"](_tensor(inp), out_h=h, out_w=w,
                                            **_window_params(k, p, s, d))


# ---- 3-d convolutions: conv2d over depth slices ----
def _ungroup3d(fn, weight, groups, transposed):
    if weight.ndim == 6:
        if weight.shape[0] != groups:
            raise ValueError(f"{fn}: grouped weight {tuple(weight.shape)} has {weight.shape[0]} "
                             f"groups, but groups={groups}")
        s = tuple(weight.shape)
        return weight.reshape((s[0] * s[1],) + s[2:])
    if weight.ndim != 5:
        raise ValueError(f"{fn}: weight must be 5-d (or 6-d grouped), got shape "
                         f"{tuple(weight.shape)}")
    if 0 in tuple(weight.shape[2:]):
        raise ValueError(f"{fn}: the kernel {tuple(weight.shape[2:])} is empty")
    return weight


def conv3d(inp, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           conv_mode="cross_correlation"):
    """3-d convolution of inp (N, IC, D, H, W) with weight (OC, IC/groups, KD, KH, KW) or
    (groups, OC/groups, IC/groups, KD, KH, KW); bias (1, OC, 1, 1, 1). Output
    (N, OC, OD, OH, OW), OD = (D + 2*pd - dd*(KD-1) - 1) // sd + 1 (likewise H, W)."""
    fn = "conv3d"
    if _check_mode(fn, conv_mode) != "cross_correlation":
        raise ValueError(f"{fn}: only conv_mode='cross_correlation' is supported")
    inp, weight = _tensor(inp), _tensor(weight)
    _check_ndim(fn, inp, 5)
    groups = to_int(groups, "groups", fn)
    weight = _ungroup3d(fn, weight, groups, False)
    kd = weight.shape[2]
    (sd, sh, sw) = _tuple(stride, 3, "stride", fn, 1)
    (pd, ph, pw) = _tuple(padding, 3, "padding", fn, 0)
    (dd, dh, dw) = _tuple(dilation, 3, "dilation", fn, 1)
    n, ic, depth = inp.shape[0], inp.shape[1], inp.shape[2]
    od = _out_len(depth, kd, pd, sd, dd)
    if od <= 0:
        raise ValueError(f"{fn}: the kernel depth {kd} (dilation {dd}) does not fit the padded "
                         f"input depth {depth + 2 * pd}")
    if weight.shape[1] * groups != ic:
        raise ValueError(f"{fn}: weight {tuple(weight.shape)} expects {weight.shape[1] * groups} "
                         f"input channels, input has {ic}")
    xp = _pad_spatial(inp.transpose(0, 1, 3, 4, 2), (pd,)).transpose(0, 1, 4, 2, 3)
    acc = None
    for z in range(kd):
        xs = xp[:, :, z * dd:z * dd + (od - 1) * sd + 1:sd]
        h, w = xs.shape[3], xs.shape[4]
        xs = xs.transpose(0, 2, 1, 3, 4).reshape((n * od, ic, h, w))
        y = conv2d(xs, weight[:, :, z], None, (sh, sw), (ph, pw), (dh, dw), groups)
        acc = y if acc is None else acc + y
    oc, oh, ow = acc.shape[1], acc.shape[2], acc.shape[3]
    out = acc.reshape((n, od, oc, oh, ow)).transpose(0, 2, 1, 3, 4)
    return _add_bias(out, bias, 5)


def conv_transpose3d(inp, weight, bias=None, stride=1, padding=0, output_padding=0,
                     dilation=1, groups=1):
    """Transposed 3-d convolution (the input gradient of conv3d) of inp (N, IC, D, H, W) with
    weight (IC, OC/groups, KD, KH, KW) or (groups, IC/groups, OC/groups, KD, KH, KW). Output
    (N, OC, OD, OH, OW), OD = (D-1)*sd - 2*pd + dd*(KD-1) + output_padding_d + 1."""
    fn = "conv_transpose3d"
    inp, weight = _tensor(inp), _tensor(weight)
    _check_ndim(fn, inp, 5)
    groups = to_int(groups, "groups", fn)
    weight = _ungroup3d(fn, weight, groups, True)
    kd = weight.shape[2]
    (sd, sh, sw) = _tuple(stride, 3, "stride", fn, 1)
    (pd, ph, pw) = _tuple(padding, 3, "padding", fn, 0)
    (opd, oph, opw) = _tuple(output_padding, 3, "output_padding", fn, 0)
    (dd, dh, dw) = _tuple(dilation, 3, "dilation", fn, 1)
    if opd >= max(sd, dd):
        raise ValueError(f"{fn}: output_padding {opd} must be smaller than the stride {sd} or "
                         f"the dilation {dd}")
    n, ic, depth, h, w = inp.shape
    if weight.shape[0] != ic:
        raise ValueError(f"{fn}: weight {tuple(weight.shape)} expects {weight.shape[0]} input "
                         f"channels, input has {ic}")
    full = (depth - 1) * sd + dd * (kd - 1) + opd + 1
    od = full - 2 * pd
    if od <= 0:
        raise ValueError(f"{fn}: output depth {od} is not positive")
    xs = inp.transpose(0, 2, 1, 3, 4).reshape((n * depth, ic, h, w))
    acc = None
    for z in range(kd):
        y = conv_transpose2d(xs, weight[:, :, z], None, (sh, sw), (ph, pw), (oph, opw),
                             (dh, dw), groups)
        oc, oh, ow = y.shape[1], y.shape[2], y.shape[3]
        y = y.reshape((n, depth, oc, oh, ow)).transpose(0, 2, 1, 3, 4)
        y = _place(y, 2, sd, z * dd, full)
        acc = y if acc is None else acc + y
    return _add_bias(_crop(acc, 2, pd, od), bias, 5)


# ---- local (untied) and region-restricted convolutions: windows + batched matmul ----
def local_conv2d(inp, weight, bias=None, stride=1, padding=0, dilation=1,
                 conv_mode="cross_correlation"):
    """Convolution with a separate kernel at every output pixel (a locally connected layer):
    inp (N, IC, H, W), weight (OH, OW, IC, KH, KW, OC), or grouped
    (G, OH, OW, IC/G, KH, KW, OC/G); output (N, OC, OH, OW)."""
    fn = "local_conv2d"
    if _check_mode(fn, conv_mode) != "cross_correlation":
        raise ValueError(f"{fn}: only conv_mode='cross_correlation' is supported")
    inp, weight = _tensor(inp), _tensor(weight)
    _check_ndim(fn, inp, 4)
    if weight.ndim == 6:
        weight = weight.reshape((1,) + tuple(weight.shape))
    if weight.ndim != 7:
        raise ValueError(f"{fn}: weight must be (OH, OW, IC, KH, KW, OC) or grouped "
                         f"(G, OH, OW, IC/G, KH, KW, OC/G), got shape {tuple(weight.shape)}")
    g, oh, ow, icg, kh, kw, ocg = weight.shape
    n, ic = inp.shape[0], inp.shape[1]
    if icg * g != ic:
        raise ValueError(f"{fn}: weight {tuple(weight.shape)} expects {icg * g} input channels, "
                         f"input has {ic}")
    _, p, s, d = _geometry(fn, (kh, kw), padding, stride, dilation)
    cols, h_out, w_out = _windows(fn, inp, (kh, kw), p, s, d)
    if (h_out, w_out) != (oh, ow):
        raise ValueError(f"{fn}: weight is for a {oh}x{ow} output, the input gives "
                         f"{h_out}x{w_out}")
    k = icg * kh * kw
    cols = cols.reshape((n, g, icg, oh, ow, kh * kw)).transpose(1, 3, 4, 0, 2, 5)
    cols = cols.reshape((g * oh * ow, n, k))
    y = _ops["matmul"](cols, weight.reshape((g * oh * ow, k, ocg)))
    y = y.reshape((g, oh, ow, n, ocg)).transpose(3, 0, 4, 1, 2).reshape((n, g * ocg, oh, ow))
    return _add_bias(y, bias, 4)


def region_restricted_conv(inp, weight, rin, rout, bias=None, stride=1, padding=0, dilation=1,
                           groups=1, conv_mode="cross_correlation", compute_mode="default"):
    """Grouped convolution where an input pixel contributes to an output pixel only when their
    regions agree: out[n, o, i, j] sums x[n, c, y, x] * w[...] over the window positions with
    rin[n, y, x] == rout[n, i, j]. inp (N, IC, H, W), weight (G, OC/G, IC/G, KH, KW)
    (4-d (OC, IC/G, KH, KW) is accepted too), rin (N, H, W) and rout (N, OH, OW) integer maps
    of one dtype."""
    fn = "region_restricted_conv"
    if _check_mode(fn, conv_mode) != "cross_correlation":
        raise ValueError(f"{fn}: only conv_mode='cross_correlation' is supported")
    inp, weight, rin, rout = (_tensor(t) for t in (inp, weight, rin, rout))
    _check_ndim(fn, inp, 4)
    groups = to_int(groups, "groups", fn)
    if groups <= 0:
        raise ValueError(f"{fn}: groups must be positive, got {groups}")
    if weight.ndim == 4:
        s = tuple(weight.shape)
        if s[0] % groups:
            raise ValueError(f"{fn}: {s[0]} output channels do not split into {groups} groups")
        weight = weight.reshape((groups, s[0] // groups) + s[1:])
    if weight.ndim != 5 or weight.shape[0] != groups:
        raise ValueError(f"{fn}: weight must be (G, OC/G, IC/G, KH, KW) with G = groups = "
                         f"{groups}, got shape {tuple(weight.shape)}")
    g, ocg, icg, kh, kw = weight.shape
    n, ic, h, w = inp.shape
    if icg * g != ic:
        raise ValueError(f"{fn}: weight {tuple(weight.shape)} expects {icg * g} input channels, "
                         f"input has {ic}")
    for name, r in (("rin", rin), ("rout", rout)):
        if r.dtype.kind not in "iu":
            raise TypeError(f"{fn}: {name} must be an integer map, got {r.dtype}")
    if rin.dtype != rout.dtype:
        raise TypeError(f"{fn}: rin and rout must have one dtype, got {rin.dtype} and "
                        f"{rout.dtype}")
    if tuple(rin.shape) != (n, h, w):
        raise ValueError(f"{fn}: rin must be (N, H, W) = {(n, h, w)}, got {tuple(rin.shape)}")
    _, p, s, d = _geometry(fn, (kh, kw), padding, stride, dilation)
    cols, oh, ow = _windows(fn, inp, (kh, kw), p, s, d)
    if tuple(rout.shape) != (n, oh, ow):
        raise ValueError(f"{fn}: rout must be (N, OH, OW) = {(n, oh, ow)}, got "
                         f"{tuple(rout.shape)}")
    rcols, _, _ = _windows(fn, rin.astype("int32").reshape((n, 1, h, w)), (kh, kw), p, s, d)
    same = rcols == rout.astype("int32").reshape((n, 1, oh, ow, 1))
    zero = _ops["fill"](shape=[], value=0.0, dtype=_dtype_code(inp))
    cols = _ops["where"](same, cols, zero)  # (N, IC, OH, OW, KH*KW)
    k = icg * kh * kw
    cols = cols.reshape((n, g, icg, oh, ow, kh * kw)).transpose(1, 0, 3, 4, 2, 5)
    cols = cols.reshape((g, n * oh * ow, k))
    y = _ops["matmul"](cols, weight.reshape((g, ocg, k)), transpose_b=1)
    y = y.reshape((g, n, oh, ow, ocg)).transpose(1, 0, 4, 2, 3).reshape((n, g * ocg, oh, ow))
    return _add_bias(y, bias, 4)


def _dtype_code(t):
    from .. import dtype as _dt
    return _dt.code_of(t.dtype)


# ---- deformable convolution: bilinear samples at offset positions, then a matmul ----
def _base_positions(o, k, stride, pad, dil, dtype):
    """(K, O) grid of o*stride - pad + k*dil as a float tensor."""
    from .creation import arange
    ko = arange(0, k, dtype=dtype).reshape((k, 1)) * float(dil)
    oo = arange(0, o, dtype=dtype).reshape((1, o)) * float(stride)
    return ko + oo - float(pad)


def _bilinear_gather(x, py, px, h, w):
    """Samples of x (N, C, H*W) at float positions py, px (N, P): (N, C, P); corners outside
    the image count as zero (MegEngine's deformable conv)."""
    from .elemwise import floor
    n, c = x.shape[0], x.shape[1]
    y0, x0 = floor(py), floor(px)
    ly, lx = py - y0, px - x0
    out = None
    zero = _ops["fill"](shape=[], value=0.0, dtype=_dtype_code(x))
    for dy, wy in ((0, 1.0 - ly), (1, ly)):
        for dx, wx in ((0, 1.0 - lx), (1, lx)):
            yc, xc = y0 + float(dy), x0 + float(dx)
            valid = (yc >= 0.0) & (yc <= float(h - 1)) & (xc >= 0.0) & (xc <= float(w - 1))
            idx = (_ops["clip"](yc, lower=0.0, upper=float(h - 1)) * float(w) +
                   _ops["clip"](xc, lower=0.0, upper=float(w - 1))).astype("int32")
            idx = _ops["broadcast_to"](idx.reshape((n, 1, -1)), shape=[n, c, idx.shape[1]])
            v = _ops["gather"](x, idx, axis=2)
            wgt = (wy * wx).reshape((n, 1, -1))
            term = _ops["where"](valid.reshape((n, 1, -1)), v * wgt, zero)
            out = term if out is None else out + term
    return out


def deformable_conv2d(inp, weight, offset, mask, bias=None, stride=1, padding=0, dilation=1,
                      groups=1, conv_mode="cross_correlation", compute_mode="default"):
    """Deformable convolution v2: each kernel tap (kh, kw) of output pixel (i, j) reads the
    input bilinearly at (i*sh - ph + kh*dh + dy, j*sw - pw + kw*dw + dx) and is scaled by the
    mask. inp (N, IC, H, W); weight (OC, IC/groups, KH, KW) or (groups, OC/g, IC/g, KH, KW);
    offset (N, 2*DG*KH*KW, OH, OW) laid out as (DG, KH, KW, [dy, dx]); mask
    (N, DG*KH*KW, OH, OW); DG (deformable groups) divides IC."""
    fn = "deformable_conv2d"
    if _check_mode(fn, conv_mode) != "cross_correlation":
        raise ValueError(f"{fn}: only conv_mode='cross_correlation' is supported")
    inp, weight, offset, mask = (_tensor(t) for t in (inp, weight, offset, mask))
    _check_ndim(fn, inp, 4)
    groups = to_int(groups, "groups", fn)
    if weight.ndim == 5:
        s = tuple(weight.shape)
        weight = weight.reshape((s[0] * s[1],) + s[2:])
    _check_ndim(fn, weight, 4, "weight")
    oc, icg, kh, kw = weight.shape
    n, ic, h, w = inp.shape
    if icg * groups != ic or oc % groups:
        raise ValueError(f"{fn}: weight {tuple(weight.shape)} with groups={groups} does not fit "
                         f"{ic} input channels")
    _, p, s, d = _geometry(fn, (kh, kw), padding, stride, dilation)
    oh, ow = _out_len(h, kh, p[0], s[0], d[0]), _out_len(w, kw, p[1], s[1], d[1])
    if oh <= 0 or ow <= 0:
        raise ValueError(f"{fn}: the kernel does not fit the padded input")
    kk = kh * kw
    _check_ndim(fn, offset, 4, "offset")
    _check_ndim(fn, mask, 4, "mask")
    dg = offset.shape[1] // (2 * kk)
    if (dg == 0 or offset.shape[1] != 2 * kk * dg or ic % dg or
            tuple(offset.shape) != (n, 2 * kk * dg, oh, ow)):
        raise ValueError(f"{fn}: offset must be (N, 2*DG*{kk}, {oh}, {ow}) with DG dividing "
                         f"{ic}, got {tuple(offset.shape)}")
    if tuple(mask.shape) != (n, dg * kk, oh, ow):
        raise ValueError(f"{fn}: mask must be {(n, dg * kk, oh, ow)}, got {tuple(mask.shape)}")
    dt = inp.dtype
    offset, mask = offset.astype(dt), mask.astype(dt)
    by = _base_positions(oh, kh, s[0], p[0], d[0], dt)  # (KH, OH)
    bx = _base_positions(ow, kw, s[1], p[1], d[1], dt)  # (KW, OW)
    base_y = by.reshape((kh, 1, oh, 1))
    base_x = bx.reshape((1, kw, 1, ow))
    off = offset.reshape((n, dg, kh, kw, 2, oh, ow))
    x = inp.reshape((n, dg, ic // dg, h * w))
    cols = []
    for gi in range(dg):
        py = (off[:, gi, :, :, 0] + base_y).reshape((n, -1))
        px = (off[:, gi, :, :, 1] + base_x).reshape((n, -1))
        v = _bilinear_gather(x[:, gi], py, px, h, w)  # (N, C/DG, KK*OH*OW)
        m = mask[:, gi * kk:(gi + 1) * kk].reshape((n, 1, -1))
        cols.append(v * m)
    col = cols[0] if dg == 1 else _ops["concat"](*cols, axis=1)  # (N, IC, KK*OH*OW)
    col = col.reshape((n, groups, icg * kk, oh * ow))
    wm = weight.reshape((1, groups, oc // groups, icg * kk))
    y = _ops["matmul"](_ops["broadcast_to"](wm, shape=[n, groups, oc // groups, icg * kk]), col)
    return _add_bias(y.reshape((n, oc, oh, ow)), bias, 4)
