"""Creation ops (MegEngine's ``arange``, ``linspace``, ``eye``) and ``dropout``.

``full``/``zeros``/``ones`` and the ``*_like`` functions live in ``functional.tensor`` and use
the same C ``fill`` op. ``F.nn.dropout`` resolves to :func:`dropout` through ``F``.
"""
from .. import _C
from .._args import to_int
from .. import dtype as _dt

_ops = _C.ops

__all__ = ["arange", "linspace", "eye", "dropout"]


def _num(x):
    """A Python number from a number or a one-element tensor."""
    if isinstance(x, _C.TensorBase):
        return x.item()
    return x


def arange(start=0, stop=None, step=1, dtype="float32", device=None):
    """Evenly spaced values in [start, stop) with the given step (``arange(n)`` = 0..n-1).

    >>> import tianyuan.functional as F
    >>> F.arange(1, 7, 2).numpy().tolist()
    [1.0, 3.0, 5.0]
    """
    if stop is None:
        start, stop = 0, start
    return _ops["arange"](start=float(_num(start)), stop=float(_num(stop)),
                          step=float(_num(step)), dtype=_dt.code_of(dtype))


def linspace(start, stop, num, dtype="float32", device=None):
    """num evenly spaced values from start to stop, both included.

    >>> import tianyuan.functional as F
    >>> F.linspace(0, 1, 5).numpy().tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    return _ops["linspace"](start=float(_num(start)), stop=float(_num(stop)),
                            num=to_int(num, "num", "linspace"), dtype=_dt.code_of(dtype))


def eye(N, M=None, dtype="float32", device=None):
    """An N x M matrix (M defaults to N) with ones on the main diagonal."""
    n = to_int(N, "N", "eye")
    m = n if M is None else to_int(M, "M", "eye")
    return _ops["eye"](n=n, m=m, dtype=_dt.code_of(dtype))


def dropout(inp, drop_prob, training=True):
    """Zeroes each element with probability drop_prob and scales the rest by 1/(1-drop_prob).

    The mask is drawn from the global generator (``tianyuan.random.seed``); the gradient flows
    through the multiplication by the mask. With ``training=False`` inp is returned as is.
    """
    p = float(drop_prob)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: drop_prob must be in [0, 1), got {drop_prob}")
    if not training or p == 0.0:
        return inp
    code = inp._dtype_code if _dt.is_float(inp.dtype) else _dt.code_of("float32")
    draw = _dt.code_of("float64") if code == _dt.code_of("float64") else _dt.code_of("float32")
    u = _ops["uniform"](shape=list(inp.shape), a=0.0, b=1.0, dtype=draw)
    keep = _ops["astype"](_ops["greater_equal"](u, p), dtype=code)
    scale = _ops["mul"](keep, 1.0 / (1.0 - p))
    return _ops["mul"](inp, scale)
