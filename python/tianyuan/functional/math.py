"""Reductions and linear algebra (MegEngine's ``functional.math``)."""
from .. import _C
from .._args import to_int, to_ints
from .elemwise import sqrt, abs as _abs, pow as _pow, log, exp, sub

_ops = _C.ops

__all__ = ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "var", "std", "norm",
           "logsumexp", "sign"]

from .elemwise import sign  # noqa: E402  (MegEngine lists sign under math too)


def _axes(axis, op):
    return [] if axis is None else to_ints(axis, "axis", op)


def _reduce(name, x, axis, keepdims):
    return _ops[name](x, axes=_axes(axis, name), keepdims=int(bool(keepdims)))


def sum(inp, axis=None, keepdims=False):
    """Sum over axis (None = all axes).

    >>> import tianyuan as ty, tianyuan.functional as F
    >>> F.sum(ty.tensor([[1, 2], [3, 4]]), axis=1).numpy().tolist()
    [3, 7]
    """
    return _reduce("sum", inp, axis, keepdims)


def mean(inp, axis=None, keepdims=False):
    """Mean over axis (None = all axes)."""
    return _reduce("mean", inp, axis, keepdims)


def prod(inp, axis=None, keepdims=False):
    """Product over axis (None = all axes)."""
    return _reduce("prod", inp, axis, keepdims)


def max(inp, axis=None, keepdims=False):
    """Maximum over axis (None = all axes)."""
    return _reduce("max", inp, axis, keepdims)


def min(inp, axis=None, keepdims=False):
    """Minimum over axis (None = all axes)."""
    return _reduce("min", inp, axis, keepdims)


def _argreduce(name, inp, axis, keepdims):
    if axis is None:
        return _ops[name](_ops["reshape"](inp, shape=[-1]), axis=0, keepdims=0)
    return _ops[name](inp, axis=to_int(axis, "axis", name), keepdims=int(bool(keepdims)))


def argmax(inp, axis=None, keepdims=False):
    """Index of the maximum along axis (None = over the flattened tensor); int32."""
    return _argreduce("argmax", inp, axis, keepdims)


def argmin(inp, axis=None, keepdims=False):
    """Index of the minimum along axis (None = over the flattened tensor); int32."""
    return _argreduce("argmin", inp, axis, keepdims)


def var(inp, axis=None, keepdims=False):
    """Variance (biased, like MegEngine's default) over axis."""
    m = mean(inp, axis, keepdims=True)
    return mean((inp - m) ** 2, axis, keepdims)


def std(inp, axis=None, keepdims=False):
    """Standard deviation (biased) over axis."""
    return sqrt(var(inp, axis, keepdims))


def norm(inp, ord=None, axis=None, keepdims=False):
    """Vector p-norm over axis (default: 2-norm over all elements)."""
    p = 2.0 if ord is None else float(ord)
    if p == 2.0:
        return sqrt(sum(inp * inp, axis, keepdims))
    if p == 1.0:
        return sum(_abs(inp), axis, keepdims)
    if p == float("inf"):
        return max(_abs(inp), axis, keepdims)
    if p == float("-inf"):
        return min(_abs(inp), axis, keepdims)
    if p == 0.0:
        return sum((inp != 0).astype("float32"), axis, keepdims)
    return _pow(sum(_pow(_abs(inp), p), axis, keepdims), 1.0 / p)


def logsumexp(inp, axis, keepdims=False):
    """log(sum(exp(inp))) over axis, computed stably."""
    m = max(inp, axis, keepdims=True).detach()
    r = log(sum(exp(sub(inp, m)), axis, keepdims=True)) + m
    if not keepdims:
        r = _ops["squeeze"](r, axes=_axes(axis, "logsumexp") or list(range(inp.ndim)))
    return r
