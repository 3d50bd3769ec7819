"""2-D pooling in NCHW (MegEngine's ``functional.nn.max_pool2d/avg_pool2d/adaptive_*_pool2d``).

Inputs are 4-d (N, C, H, W) floating-point tensors; kernel_size, stride, padding and oshp are
ints or (h, w) pairs. Output of the strided poolings: (N, C, OH, OW) with
OH = (H + 2*pad_h - kernel_h) // stride_h + 1; padding may be at most half the kernel."""
from .. import _C
from .._args import to_int
from ..tensor import Tensor

_ops = _C.ops

__all__ = ["max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d"]

# MegEngine's avg_pool2d modes -> the op's mode (0 counts padding cells, 1 excludes them).
_AVG_MODES = {"average": 0, "average_count_include_padding": 0,
              "average_count_exclude_padding": 1}


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _pair(v, name, fn):
    if isinstance(v, Tensor):
        v = v.numpy().tolist()
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{fn}: {name} must be an int or a pair, got {v!r}")
        return to_int(v[0], name, fn), to_int(v[1], name, fn)
    v = to_int(v, name, fn)
    return v, v


def _pool_params(fn, kernel_size, stride, padding, mode=0):
    kh, kw = _pair(kernel_size, "kernel_size", fn)
    sh, sw = _pair(kernel_size if stride is None else stride, "stride", fn)
    ph, pw = _pair(padding, "padding", fn)
    return dict(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, pad_h=ph, pad_w=pw,
                mode=mode)


def max_pool2d(inp, kernel_size, stride=None, padding=0):
    """Max pooling of inp (N, C, H, W); stride defaults to kernel_size. Padding cells never win.

    >>> import numpy as np, tianyuan as ty, tianyuan.functional as F
    >>> x = ty.tensor(np.arange(16, dtype="float32").reshape(1, 1, 4, 4))
    >>> F.max_pool2d(x, 2).numpy()[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    p = _pool_params("max_pool2d", kernel_size, stride, padding)
    return _ops["max_pool2d"](_as_tensor(inp), **p)


def avg_pool2d(inp, kernel_size, stride=None, padding=0, mode="average_count_exclude_padding"):
    """Average pooling of inp (N, C, H, W); stride defaults to kernel_size. mode "average"
    divides by the window size including padding cells, "average_count_exclude_padding"
    (default) only by the number of input cells in the window.

    >>> import numpy as np, tianyuan as ty, tianyuan.functional as F
    >>> x = ty.tensor(np.ones((1, 1, 2, 2), dtype="float32"))
    >>> F.avg_pool2d(x, 2, padding=1).numpy()[0, 0]
    array([[1., 1.],
           [1., 1.]], dtype=float32)
    >>> F.avg_pool2d(x, 2, padding=1, mode="average").numpy()[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]], dtype=float32)
    """
    key = str(mode).lower()
    if key not in _AVG_MODES:
        raise ValueError(f"avg_pool2d: mode must be one of {sorted(_AVG_MODES)}, got {mode!r}")
    p = _pool_params("avg_pool2d", kernel_size, stride, padding, _AVG_MODES[key])
    return _ops["avg_pool2d"](_as_tensor(inp), **p)


def _adaptive(fn, inp, oshp):
    oh, ow = _pair(oshp, "oshp", fn)
    return _ops[fn](_as_tensor(inp), out_h=oh, out_w=ow)


def adaptive_max_pool2d(inp, oshp):
    """Max pooling of inp (N, C, H, W) to output size oshp (int or (OH, OW)); window i of an
    axis covers [floor(i*H/OH), ceil((i+1)*H/OH)).

    >>> import numpy as np, tianyuan as ty, tianyuan.functional as F
    >>> x = ty.tensor(np.arange(9, dtype="float32").reshape(1, 1, 3, 3))
    >>> F.adaptive_max_pool2d(x, 2).numpy()[0, 0]
    array([[4., 5.],
           [7., 8.]], dtype=float32)
    """
    return _adaptive("adaptive_max_pool2d", inp, oshp)


def adaptive_avg_pool2d(inp, oshp):
    """Average pooling of inp (N, C, H, W) to output size oshp (int or (OH, OW)); windows as
    in adaptive_max_pool2d.

    >>> import numpy as np, tianyuan as ty, tianyuan.functional as F
    >>> x = ty.tensor(np.arange(4, dtype="float32").reshape(1, 1, 2, 2))
    >>> F.adaptive_avg_pool2d(x, 1).numpy()[0, 0]
    array([[1.5]], dtype=float32)
    """
    return _adaptive("adaptive_avg_pool2d", inp, oshp)


def _export_to_nn():
    """MegEngine lists the poolings under F.nn; nn.py is another module's file."""
    from . import nn
    for name in __all__:
        setattr(nn, name, globals()[name])


_export_to_nn()
