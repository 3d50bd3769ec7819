"""op_db rows of the matmul family (see op_db.py): matmul, linear and the convolutions, with
naive float64 NumPy references."""
import numpy as np

import tianyuan.functional as F
from tianyuan import _C

from .op_db import OpInfo, Sample, rand

_ops = _C.ops


# ---- matmul ----
def _mm_ref(a, b, transpose_a=False, transpose_b=False):
    if transpose_a and a.ndim >= 2:
        a = np.swapaxes(a, -1, -2)
    if transpose_b and b.ndim >= 2:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


_MM_CASES = [
    # shape a, shape b, transpose_a, transpose_b
    ((3, 4), (4, 5), False, False),
    ((2, 3, 4), (2, 4, 5), False, False),
    ((2, 1, 3, 4), (5, 4, 6), False, False),   # broadcast batch dims
    ((3, 4), (2, 4, 5), False, False),         # 2-d against a batch
    ((4, 3), (4, 5), True, False),
    ((3, 4), (5, 4), False, True),
    ((2, 4, 3), (1, 5, 4), True, True),
    ((1, 1), (1, 1), False, False),
    ((4,), (4, 5), False, False),              # 1-d operands (numpy rules)
    ((3, 4), (4,), False, False),
    ((4,), (4,), False, False),
    ((2, 3, 4), (4,), False, False),
    ((4,), (2, 4, 3), False, False),
    ((3, 0), (0, 5), False, False),            # empty K: zeros
    ((0, 4), (4, 5), False, False),            # empty M
    ((0, 3, 4), (4, 2), False, False),         # empty batch
]


def _mm_samples(rng):
    return [Sample(rand(rng, a), rand(rng, b), transpose_a=ta, transpose_b=tb)
            for a, b, ta, tb in _MM_CASES]


def _linear_ref(x, w, b=None):
    y = np.matmul(x, w.T)
    return y if b is None else y + b


def _linear_samples(rng):
    return [Sample(rand(rng, (2, 3)), rand(rng, (4, 3)), rand(rng, (4,))),
            Sample(rand(rng, (5, 3)), rand(rng, (2, 3))),
            Sample(rand(rng, (2, 2, 3)), rand(rng, (4, 3)), rand(rng, (4,))),
            Sample(rand(rng, (3,)), rand(rng, (2, 3)), rand(rng, (2,)))]


# ---- convolution references (direct loops over kernel taps, float64) ----
def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) else (int(v), int(v))


def _geom(xshape, wshape, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    kh, kw = wshape[2], wshape[3]
    oh = (xshape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (xshape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return sh, sw, ph, pw, dh, dw, oh, ow


def _taps(xshape, wshape, stride, padding, dilation):
    """(i, j, window slices into the padded input) for every kernel tap."""
    sh, sw, ph, pw, dh, dw, oh, ow = _geom(xshape, wshape, stride, padding, dilation)
    for i in range(wshape[2]):
        for j in range(wshape[3]):
            yield i, j, (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                         slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def _pad(x, padding):
    ph, pw = _pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _conv_ref(x, w, stride=1, padding=0, dilation=1, groups=1):
    n, c = x.shape[:2]
    oc, cg = w.shape[:2]
    ocg = oc // groups
    _, _, _, _, _, _, oh, ow = _geom(x.shape, w.shape, stride, padding, dilation)
    xp = _pad(x, padding)
    y = np.zeros((n, oc, oh, ow))
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * ocg:(g + 1) * ocg]
        for i, j, (si, sj) in _taps(x.shape, w.shape, stride, padding, dilation):
            y[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", xs[:, :, si, sj],
                                                     wg[:, :, i, j])
    return y


def _conv_bwd_data_ref(w, dy, xshape, stride=1, padding=0, dilation=1, groups=1):
    """The adjoint of _conv_ref in x: scatter dy through every tap, then crop the padding."""
    oc, cg = w.shape[:2]
    ocg = oc // groups
    ph, pw = _pair(padding)
    dxp = np.zeros((xshape[0], xshape[1], xshape[2] + 2 * ph, xshape[3] + 2 * pw))
    for g in range(groups):
        wg = w[g * ocg:(g + 1) * ocg]
        dyg = dy[:, g * ocg:(g + 1) * ocg]
        for i, j, (si, sj) in _taps(xshape, w.shape, stride, padding, dilation):
            dxp[:, g * cg:(g + 1) * cg, si, sj] += np.einsum("nohw,oc->nchw", dyg, wg[:, :, i, j])
    return dxp[:, :, ph:ph + xshape[2], pw:pw + xshape[3]]


def _conv_bwd_filter_ref(x, dy, wshape, stride=1, padding=0, dilation=1, groups=1):
    oc, cg = wshape[:2]
    ocg = oc // groups
    xp = _pad(x, padding)
    dw = np.zeros(wshape)
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        dyg = dy[:, g * ocg:(g + 1) * ocg]
        for i, j, (si, sj) in _taps(x.shape, wshape, stride, padding, dilation):
            dw[g * ocg:(g + 1) * ocg, :, i, j] = np.einsum("nchw,nohw->oc", xs[:, :, si, sj], dyg)
    return dw


def _conv2d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    if w.ndim == 5:
        w = w.reshape((-1,) + w.shape[2:])
    y = _conv_ref(x, w, stride, padding, dilation, groups)
    return y if b is None else y + b


def _conv2d_samples(rng):
    r = lambda *s: rand(rng, s)  # noqa: E731
    return [
        Sample(r(1, 2, 5, 5), r(3, 2, 3, 3)),
        Sample(r(2, 2, 5, 6), r(2, 2, 3, 3), stride=2, padding=1),
        Sample(r(1, 2, 6, 7), r(2, 2, 2, 3), dilation=2, padding=(1, 0)),
        Sample(r(1, 4, 4, 4), r(4, 2, 3, 3), padding=1, groups=2),
        Sample(r(1, 3, 4, 4), r(3, 1, 3, 3), padding=1, groups=3),         # depthwise
        Sample(r(2, 3, 4, 4), r(2, 3, 1, 1)),                              # 1x1
        Sample(r(1, 2, 5, 4), r(3, 2, 3, 2), r(1, 3, 1, 1), stride=(2, 1)),  # bias
        Sample(r(1, 4, 4, 4), r(2, 1, 2, 3, 3), padding=1, groups=2),      # MegEngine 5-d weight
        Sample(r(0, 2, 4, 4), r(3, 2, 3, 3)),                              # empty batch
        Sample(r(1, 1, 1, 1), r(2, 1, 3, 3), padding=1),                   # all padding
    ]


def _conv1d_ref(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    y = _conv_ref(x[:, :, None, :], w[:, :, None, :], (1, stride), (0, padding), (1, dilation),
                  groups)[:, :, 0, :]
    return y if b is None else y + b


def _conv1d_samples(rng):
    r = lambda *s: rand(rng, s)  # noqa: E731
    return [Sample(r(2, 2, 7), r(3, 2, 3)),
            Sample(r(1, 2, 8), r(3, 2, 3), r(1, 3, 1), stride=2, padding=1),
            Sample(r(1, 2, 8), r(2, 2, 2), dilation=3),
            Sample(r(2, 4, 5), r(4, 2, 3), padding=1, groups=2)]


def _tconv_out_shape(xshape, wshape, stride, padding, output_padding, dilation, groups):
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    (oph, opw), (dh, dw) = _pair(output_padding), _pair(dilation)
    oh = (xshape[2] - 1) * sh - 2 * ph + dh * (wshape[2] - 1) + oph + 1
    ow = (xshape[3] - 1) * sw - 2 * pw + dw * (wshape[3] - 1) + opw + 1
    return (xshape[0], wshape[1] * groups, oh, ow)


def _conv_transpose2d_ref(x, w, b=None, stride=1, padding=0, output_padding=0, dilation=1,
                          groups=1):
    if w.ndim == 5:
        w = w.reshape((-1,) + w.shape[2:])
    yshape = _tconv_out_shape(x.shape, w.shape, stride, padding, output_padding, dilation, groups)
    y = _conv_bwd_data_ref(w, x, yshape, stride, padding, dilation, groups)
    return y if b is None else y + b


def _tconv_samples(rng):
    r = lambda *s: rand(rng, s)  # noqa: E731
    return [
        Sample(r(1, 2, 3, 3), r(2, 3, 3, 3)),
        Sample(r(1, 2, 3, 3), r(2, 2, 3, 3), stride=2, padding=1, output_padding=1),
        Sample(r(2, 2, 3, 2), r(2, 1, 2, 3), r(1, 1, 1, 1), stride=(2, 3), output_padding=(1, 2)),
        Sample(r(1, 4, 3, 3), r(4, 1, 2, 2), stride=2, groups=2),
        Sample(r(1, 4, 2, 3), r(2, 2, 1, 2, 2), groups=2),                 # MegEngine 5-d weight
        Sample(r(1, 2, 3, 3), r(2, 2, 2, 2), dilation=2, padding=1),
        Sample(r(0, 2, 3, 3), r(2, 3, 3, 3)),                              # empty batch
    ]


# ---- the backward ops called directly ----
def _c_params(stride=1, padding=0, dilation=1, groups=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    return dict(stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dilate_h=dh, dilate_w=dw,
                groups=groups)


def _bwd_data(w, dy, x_like, **kw):
    return _ops["conv2d_backward_data"](w, dy, x_like, **_c_params(**kw))


def _bwd_data_ref(w, dy, x_like, **kw):
    return _conv_bwd_data_ref(w, dy, x_like.shape, **kw)


def _bwd_filter(x, dy, w_like, **kw):
    return _ops["conv2d_backward_filter"](x, dy, w_like, **_c_params(**kw))


def _bwd_filter_ref(x, dy, w_like, **kw):
    return _conv_bwd_filter_ref(x, dy, w_like.shape, **kw)


_BWD_CASES = [
    # x shape, w shape, params
    ((1, 2, 5, 5), (3, 2, 3, 3), {}),
    ((2, 2, 6, 5), (2, 2, 3, 3), dict(stride=2, padding=1)),  # x sizes 5 and 6 give one OH
    ((1, 4, 5, 5), (4, 2, 2, 2), dict(dilation=2, groups=2)),
    ((1, 2, 3, 3), (2, 2, 1, 1), {}),
]


def _dy_shape(xs, ws, kw):
    *_, oh, ow = _geom(xs, ws, kw.get("stride", 1), kw.get("padding", 0), kw.get("dilation", 1))
    return (xs[0], ws[0], oh, ow)


def _bwd_data_samples(rng):
    return [Sample(rand(rng, ws), rand(rng, _dy_shape(xs, ws, kw)), rand(rng, xs), **kw)
            for xs, ws, kw in _BWD_CASES]


def _bwd_filter_samples(rng):
    return [Sample(rand(rng, xs), rand(rng, _dy_shape(xs, ws, kw)), rand(rng, ws), **kw)
            for xs, ws, kw in _BWD_CASES]


# ---- conv_bias: conv2d + bias (+ z) + activation in one op (trace.dump's fusion) ----
_ACTS = {0: lambda v: v, 1: lambda v: np.maximum(v, 0), 2: lambda v: 1 / (1 + np.exp(-v)),
         3: lambda v: v * np.clip(v + 3, 0, 6) / 6, 4: lambda v: np.clip(v, 0, 6)}


def _conv_bias(x, w, b, *z, stride=1, padding=0, dilation=1, groups=1, mode=0):
    return _ops["conv_bias"](x, w, b, *z, mode=mode,
                             **_c_params(stride, padding, dilation, groups))


def _conv_bias_ref(x, w, b, *z, stride=1, padding=0, dilation=1, groups=1, mode=0):
    y = _conv_ref(x, w, stride, padding, dilation, groups) + b
    return _ACTS[mode](y + z[0] if z else y)


def _conv_bias_samples(rng):
    r = lambda *s: rand(rng, s)  # noqa: E731
    return [
        Sample(r(1, 2, 5, 5), r(3, 2, 3, 3), r(1, 3, 1, 1)),
        Sample(r(2, 2, 5, 6), r(2, 2, 3, 3), r(1, 2, 1, 1), stride=2, padding=1, mode=1),
        Sample(r(1, 4, 4, 4), r(4, 1, 3, 3), r(1, 4, 1, 1), r(1, 4, 4, 4), padding=1,
               groups=4, mode=4),                                            # depthwise + z
        Sample(r(2, 4, 5, 5), r(8, 1, 3, 3), r(1, 8, 1, 1), padding=1, groups=4,
               mode=1),                                   # depthwise x2: fused bias + relu
        Sample(r(2, 3, 4, 4), r(2, 3, 1, 1), r(1, 2, 1, 1), r(2, 2, 4, 4), mode=2),
        Sample(r(1, 2, 6, 7), r(2, 2, 2, 3), r(1, 2, 1, 1), dilation=2, mode=3),
        Sample(r(0, 2, 4, 4), r(3, 2, 3, 3), r(1, 3, 1, 1), mode=1),        # empty batch
    ]


_CONV_BIAS_ERRORS = [
    (lambda: _conv_bias(*_zeros((1, 2, 5, 5), (3, 2, 3, 3), (3,))), ValueError,
     "conv_bias: bias must have shape (1, 3, 1, 1), got (3,)"),
    (lambda: _conv_bias(*_zeros((1, 2, 5, 5), (3, 2, 3, 3), (1, 3, 1, 1), (1, 3, 4, 4))),
     ValueError, "conv_bias: z must have the output's shape (1, 3, 3, 3), got (1, 3, 4, 4)"),
    (lambda: _ops["conv_bias"](*_zeros((1, 2, 5, 5), (3, 2, 3, 3))), ValueError,
     "conv_bias: takes (x, w, b) or (x, w, b, z), got 2 inputs"),
]


def _zeros(*shapes):
    import tianyuan as ty
    return [ty.tensor(np.zeros(s, "float32")) for s in shapes]


_CBA_MODES = {"identity": 0, "relu": 1, "sigmoid": 2, "h_swish": 3, "relu6": 4}


def _cba_ref(x, w, b, stride=1, padding=0, dilation=1, groups=1, nonlinear_mode="identity"):
    if w.ndim == 5:
        w = w.reshape((-1,) + w.shape[2:])
    return _conv_bias_ref(x, w, b.reshape(1, -1, 1, 1), stride=stride, padding=padding,
                          dilation=dilation, groups=groups, mode=_CBA_MODES[nonlinear_mode])


def _cba_samples(rng):
    r = lambda *s: rand(rng, s)  # noqa: E731
    return [Sample(r(1, 2, 5, 5), r(3, 2, 3, 3), r(1, 3, 1, 1), nonlinear_mode="relu"),
            Sample(r(2, 4, 5, 5), r(2, 1, 2, 3, 3), r(2), padding=1, groups=2,   # 5-d, 1-d
                   nonlinear_mode="h_swish"),
            Sample(r(1, 2, 5, 5), r(3, 2, 3, 3), r(1, 3, 1, 1), stride=2, nonlinear_mode="sigmoid")]


_CBA_ERRORS = [
    (lambda: F.quantized.conv_bias_activation(*_zeros((1, 2, 5, 5), (3, 2, 3, 3), (1, 3, 1, 1)),
                                              nonlinear_mode="tanh"),
     ValueError, "conv_bias_activation: nonlinear_mode must be one of"),
    (lambda: F.quantized.conv_bias_activation(*_zeros((1, 2, 5, 5), (3, 2, 3, 3), (1, 3, 1, 1)),
                                              dtype="qint8"),
     TypeError, "conv_bias_activation: dtype qint8 is not supported"),
]


_TOL = dict(rtol=1e-5, atol=1e-5)

ROWS = [
    OpInfo("matmul", F.matmul, _mm_ref, _mm_samples,
           dtypes=("float32", "float64", "float16", "int32"), **_TOL),
    OpInfo("linear", F.nn.linear, _linear_ref, _linear_samples, ops=["matmul"], **_TOL),
    OpInfo("conv2d", F.conv2d, _conv2d_ref, _conv2d_samples,
           ops=["conv2d", "conv2d_backward_data", "conv2d_backward_filter"],
           dtypes=("float32", "float64"), **_TOL),
    OpInfo("conv1d", F.conv1d, _conv1d_ref, _conv1d_samples, ops=["conv2d"], **_TOL),
    OpInfo("conv_transpose2d", F.conv_transpose2d, _conv_transpose2d_ref, _tconv_samples,
           ops=["conv_transpose2d", "conv2d", "conv2d_backward_filter"],
           dtypes=("float32", "float64"), **_TOL),
    OpInfo("conv2d_backward_data", _bwd_data, _bwd_data_ref, _bwd_data_samples, **_TOL),
    OpInfo("conv2d_backward_filter", _bwd_filter, _bwd_filter_ref, _bwd_filter_samples, **_TOL),
    # inference only (trace.dump writes it): no gradient rule, so no gradient check
    OpInfo("conv_bias", _conv_bias, _conv_bias_ref, _conv_bias_samples, grad=False,
           dtypes=("float32", "float64"), errors=_CONV_BIAS_ERRORS, **_TOL),
    OpInfo("conv_bias_activation", F.quantized.conv_bias_activation, _cba_ref, _cba_samples,
           ops=["conv_bias"], grad=False, errors=_CBA_ERRORS, **_TOL),
]
