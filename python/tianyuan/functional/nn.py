"""Neural-network functions (MegEngine's ``functional.nn``)."""
from .. import _C

_ops = _C.ops

__all__ = ["relu", "relu6", "sigmoid", "silu", "gelu", "softplus", "hswish", "hsigmoid",
           "leaky_relu", "logsigmoid"]


def relu(x):
    """max(x, 0)."""
    return _ops["relu"](x)


def relu6(x):
    """min(max(x, 0), 6)."""
    return _ops["relu6"](x)


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return _ops["sigmoid"](x)


def silu(x):
    """x * sigmoid(x)."""
    return _ops["silu"](x)


def gelu(x):
    """x * Phi(x) with the exact (erf) normal CDF."""
    return _ops["gelu"](x)


def softplus(x):
    """log(1 + exp(x)), computed stably."""
    return _ops["softplus"](x)


def hswish(x):
    """x * relu6(x + 3) / 6."""
    return _ops["hswish"](x)


def hsigmoid(x):
    """relu6(x + 3) / 6."""
    return _ops["hsigmoid"](x)


def leaky_relu(inp, negative_slope=0.01):
    """x if x > 0 else negative_slope * x."""
    return _ops["leaky_relu"](inp, negative_slope=float(negative_slope))


def logsigmoid(inp):
    """log(sigmoid(x)) = -softplus(-x)."""
    return -softplus(-inp)
