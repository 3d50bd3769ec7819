"""Convolutions in NCHW (MegEngine's ``functional.nn.conv1d/conv2d/conv_transpose2d``).

Weights: conv2d (OC, IC/G, KH, KW), or MegEngine's grouped form (G, OC/G, IC/G, KH, KW);
conv_transpose2d (IC, OC/G, KH, KW), or (G, IC/G, OC/G, KH, KW). Bias: (1, OC, 1, 1) (a 1-d
(OC,) bias is accepted too)."""
from .. import _C
from .._args import to_int
from ..tensor import Tensor
from .. import _amp_state as _amp

_ops = _C.ops

__all__ = ["conv1d", "conv2d", "conv_transpose2d"]

_MODES = ("cross_correlation", "convolution")


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _pair(v, name, fn):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair, got {v!r}")
        return to_int(v[0], name, fn), to_int(v[1], name, fn)
    v = to_int(v, name, fn)
    return v, v


def _conv_params(fn, stride, padding, dilation, groups, output_padding=0):
    sh, sw = _pair(stride, "stride", fn)
    ph, pw = _pair(padding, "padding", fn)
    dh, dw = _pair(dilation, "dilation", fn)
    oh, ow = _pair(output_padding, "output_padding", fn)
    return dict(stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw, dilate_h=dh, dilate_w=dw,
                groups=to_int(groups, "groups", fn), out_pad_h=oh, out_pad_w=ow)


def _check_mode(fn, conv_mode):
    mode = str(conv_mode).lower()
    if mode not in _MODES:
        raise ValueError(f"{fn}: conv_mode must be one of {_MODES}, got {conv_mode!r}")
    return mode


def _ungroup(fn, weight, groups, ndim):
    """MegEngine's grouped (G, A, B, ...) weight as (G*A, B, ...)."""
    if weight.ndim == ndim + 1:
        if weight.shape[0] != to_int(groups, "groups", fn):
            raise ValueError(f"{fn}: grouped weight {tuple(weight.shape)} has "
                             f"{weight.shape[0]} groups, but groups={groups}")
        s = tuple(weight.shape)
        return weight.reshape((s[0] * s[1],) + s[2:])
    return weight


def _flip(weight):
    """True convolution = cross-correlation with the kernel turned by 180 degrees."""
    return weight[..., ::-1, ::-1]


def _add_bias(y, bias, ndim):
    if bias is None:
        return y
    bias = _amp.like(_as_tensor(bias), y)  # under autocast the bias joins y's float16
    if bias.ndim == 1:
        bias = bias.reshape((1, bias.shape[0]) + (1,) * (ndim - 2))
    return y + bias


def conv2d(inp, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           conv_mode="cross_correlation", compute_mode="default"):
    """2-d convolution of inp (N, IC, H, W) with weight (OC, IC/groups, KH, KW) or
    (groups, OC/groups, IC/groups, KH, KW); stride/padding/dilation are ints or pairs.
    Output (N, OC, OH, OW), OH = (H + 2*pad_h - dilation_h*(KH-1) - 1) // stride_h + 1."""
    mode = _check_mode("conv2d", conv_mode)
    inp, weight = _as_tensor(inp), _as_tensor(weight)
    weight = _ungroup("conv2d", weight, groups, 4)
    if mode == "convolution":
        weight = _flip(weight)
    p = _conv_params("conv2d", stride, padding, dilation, groups)
    y = _ops["conv2d"](inp, weight, **p)
    return _add_bias(y, bias, 4)


def conv1d(inp, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
           conv_mode="cross_correlation", compute_mode="default"):
    """1-d convolution of inp (N, IC, L) with weight (OC, IC/groups, K): conv2d over H = 1."""
    inp, weight = _as_tensor(inp), _as_tensor(weight)
    if inp.ndim != 3 or weight.ndim != 3:
        raise ValueError(f"conv1d: expects a 3-d input and a 3-d weight, got shapes "
                         f"{tuple(inp.shape)} and {tuple(weight.shape)}")
    n, c, length = inp.shape
    oc, icg, k = weight.shape
    stride, padding, dilation, groups = (
        to_int(v, name, "conv1d") for v, name in
        ((stride, "stride"), (padding, "padding"), (dilation, "dilation"), (groups, "groups")))
    mode = _check_mode("conv1d", conv_mode)
    try:  # runs as conv2d over H = 1; its errors are reported as conv1d's, with 3-d shapes
        y = conv2d(inp.reshape((n, c, 1, length)), weight.reshape((oc, icg, 1, k)), None,
                   (1, stride), (0, padding), (1, dilation), groups, mode, compute_mode)
    except (ValueError, TypeError, IndexError) as e:
        msg = str(e).removeprefix("conv2d: ")
        raise type(e)(f"conv1d: {msg} (conv1d runs as conv2d over H = 1: input "
                      f"{tuple(inp.shape)}, weight {tuple(weight.shape)})") from None
    y = y.reshape((y.shape[0], y.shape[1], y.shape[3]))
    return _add_bias(y, bias, 3)


def conv_transpose2d(inp, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1,
                     groups=1, conv_mode="cross_correlation", compute_mode="default"):
    """Transposed 2-d convolution (the input gradient of conv2d) of inp (N, IC, H, W) with
    weight (IC, OC/groups, KH, KW) or (groups, IC/groups, OC/groups, KH, KW). Output
    (N, OC, OH, OW), OH = (H-1)*stride_h - 2*pad_h + dilation_h*(KH-1) + output_padding_h + 1;
    output_padding must be smaller than the stride."""
    mode = _check_mode("conv_transpose2d", conv_mode)
    inp, weight = _as_tensor(inp), _as_tensor(weight)
    weight = _ungroup("conv_transpose2d", weight, groups, 4)
    if mode == "convolution":
        weight = _flip(weight)
    p = _conv_params("conv_transpose2d", stride, padding, dilation, groups, output_padding)
    y = _ops["conv_transpose2d"](inp, weight, **p)
    return _add_bias(y, bias, 4)


def _export_to_nn():
    """MegEngine lists the convolutions under F.nn; nn.py is another module's file."""
    from . import nn
    for name in __all__:
        setattr(nn, name, globals()[name])


_export_to_nn()
