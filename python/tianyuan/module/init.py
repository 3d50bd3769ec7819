"""Parameter initialisers (MegEngine's ``megengine.module.init``).

Every initialiser writes into the given Tensor in place (its object and storage are kept).

Random numbers: when ``tianyuan.random`` provides ``uniform``/``normal``, they are drawn from
it, so ``tianyuan.random.seed(s)`` makes initialisation reproducible. Until then (and whenever
those functions are missing) a NumPy ``Generator`` is used, seeded by :func:`seed` (default
seed 0), so a fresh process always initialises the same way.

>>> import numpy as np, tianyuan as ty
>>> import tianyuan.module.init as init
>>> w = ty.Parameter(np.zeros((2, 3), dtype="float32"))
>>> init.fill_(w, 0.5)
>>> w.numpy().tolist()
[[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
"""
import math

import numpy as np

__all__ = ["fill_", "zeros_", "ones_", "uniform_", "normal_", "calculate_fan_in_and_fan_out",
           "calculate_gain", "calculate_correct_fan", "xavier_uniform_", "xavier_normal_",
           "msra_uniform_", "msra_normal_", "seed"]

from ..tensor import Tensor  # noqa: F401,E402  (MegEngine's init module exposes these three
from ..functional import full  # noqa: F401,E402   names it is written with)
from ..random import normal, uniform  # noqa: F401,E402

_fallback = {"rng": np.random.default_rng(0)}


def seed(s):
    """Re-seeds the NumPy generator used when ``tianyuan.random`` is unavailable (and
    ``tianyuan.random.seed`` when it exists)."""
    _fallback["rng"] = np.random.default_rng(int(s))
    try:
        from .. import random as _r
        if hasattr(_r, "seed"):
            _r.seed(int(s))
    except ImportError:
        pass


def _ty_random():
    try:
        from .. import random as _r
    except ImportError:
        return None
    if hasattr(_r, "uniform") and hasattr(_r, "normal"):
        return _r
    return None


def _write(tensor, values):
    values = np.asarray(values)
    if tuple(values.shape) != tuple(tensor.shape):
        values = np.broadcast_to(values, tuple(tensor.shape))
    tensor._assign(np.ascontiguousarray(values))


def fill_(tensor, val):
    """Fills tensor with the constant val."""
    tensor._assign(float(val) if not isinstance(val, (bool, int)) else val)


def zeros_(tensor):
    """Fills tensor with 0."""
    fill_(tensor, 0)


def ones_(tensor):
    """Fills tensor with 1."""
    fill_(tensor, 1)


def uniform_(tensor, a=0.0, b=1.0):
    """Fills tensor with samples of U(a, b)."""
    r = _ty_random()
    shape = tuple(tensor.shape)
    if r is not None:
        tensor._assign(r.uniform(low=a, high=b, size=shape))
    else:
        _write(tensor, _fallback["rng"].uniform(a, b, size=shape).astype(np.float32))


def normal_(tensor, mean=0.0, std=1.0):
    """Fills tensor with samples of N(mean, std**2)."""
    r = _ty_random()
    shape = tuple(tensor.shape)
    if r is not None:
        tensor._assign(r.normal(mean=mean, std=std, size=shape))
    else:
        _write(tensor, _fallback["rng"].normal(mean, std, size=shape).astype(np.float32))


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity: linear/conv*/sigmoid 1, tanh 5/3, relu
    sqrt(2), leaky_relu sqrt(2 / (1 + slope**2)) (slope default 0.01)."""
    linear = {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid"}
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = float(param)
        else:
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def calculate_fan_in_and_fan_out(tensor):
    """(fan_in, fan_out) of a weight: for 2-D (out, in) it is (in, out); for conv weights
    (out, in, *k) it is (in * prod(k), out * prod(k)); a 5-D grouped conv weight
    (groups, out/g, in/g, kh, kw) ignores the groups dim (MegEngine's convention)."""
    shape = tuple(tensor.shape)
    ndim = len(shape)
    if ndim < 2:
        raise ValueError("fan in and fan out need a tensor with at least 2 dims, "
                         f"got shape {shape}")
    if ndim == 5:  # grouped conv2d weight
        shape = shape[1:]
    rf = 1
    for s in shape[2:]:
        rf *= s
    return shape[1] * rf, shape[0] * rf


def calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fi, fo = calculate_fan_in_and_fan_out(tensor)
    return fi if mode == "fan_in" else fo


def xavier_uniform_(tensor, gain=1.0):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010)."""
    fi, fo = calculate_fan_in_and_fan_out(tensor)
    a = gain * math.sqrt(6.0 / (fi + fo))
    uniform_(tensor, -a, a)


def xavier_normal_(tensor, gain=1.0):
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fi, fo = calculate_fan_in_and_fan_out(tensor)
    normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fi + fo)))


def msra_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """U(-b, b) with b = gain * sqrt(3 / fan) (He et al. 2015); gain from calculate_gain."""
    fan = calculate_correct_fan(tensor, mode)
    b = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    uniform_(tensor, -b, b)


def msra_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu"):
    """N(0, std**2) with std = gain / sqrt(fan) (He et al. 2015)."""
    fan = calculate_correct_fan(tensor, mode)
    normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))
