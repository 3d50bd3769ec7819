"""MegEngine's ``functional.quantized``: ``conv_bias_activation``, the fused convolution that
``trace.dump(..., enable_fuse_conv_bias_nonlinearity=True)`` writes (the ``conv_bias`` op).
Float dtypes only: Tianyuan has no quantized dtypes."""
from .. import _C
from .conv import _as_tensor, _check_mode, _conv_params, _flip, _ungroup

__all__ = ["conv_bias_activation"]

_NONLINEAR = {"identity": 0, "relu": 1, "sigmoid": 2, "h_swish": 3, "relu6": 4}


def conv_bias_activation(inp, weight, bias, dtype=None, stride=1, padding=0, dilation=1,
                         groups=1, nonlinear_mode="identity", conv_mode="cross_correlation",
                         compute_mode="default"):
    """act(conv2d(inp, weight) + bias) in one op: bias (1, OC, 1, 1) (or (OC,)),
    nonlinear_mode "identity", "relu", "sigmoid", "h_swish" or "relu6". Inference only (no
    gradient). ``dtype``: None or the convolution's float dtype."""
    fn = "conv_bias_activation"
    mode = _NONLINEAR.get(str(nonlinear_mode).lower())
    if mode is None:
        raise ValueError(f"{fn}: nonlinear_mode must be one of {tuple(_NONLINEAR)}, got "
                         f"{nonlinear_mode!r}")
    inp, weight, bias = _as_tensor(inp), _as_tensor(weight), _as_tensor(bias)
    weight = _ungroup(fn, weight, groups, 4)
    if _check_mode(fn, conv_mode) == "convolution":
        weight = _flip(weight)
    if bias.ndim == 1:
        bias = bias.reshape((1, bias.shape[0], 1, 1))
    p = _conv_params(fn, stride, padding, dilation, groups)
    del p["out_pad_h"], p["out_pad_w"]
    y = _C.ops["conv_bias"](inp, weight, bias, mode=mode, **p)
    if dtype is not None and str(dtype) != str(y.dtype):
        raise TypeError(f"{fn}: dtype {dtype} is not supported: Tianyuan has no quantized "
                        f"dtypes, and the convolution gives {y.dtype}")
    return y
