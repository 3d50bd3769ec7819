"""Checked conversion of user arguments that must be integers (shapes, axes, strides, counts).

A float is never truncated, not even 2.0: like NumPy and MegEngine, a shape of 2.5 or an axis of
0.5 is a TypeError naming the op and the parameter. Integers beyond int64 (what the C core
stores) raise OverflowError naming them too, instead of a bare "int too big to convert".
"""
import operator

from . import _C

_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


def to_int(value, what, op, lo=_I64_MIN, hi=_I64_MAX):
    """``value`` (an int, a NumPy integer or a 0-d integer Tensor) as a Python int in
    [lo, hi]; ``what`` names the parameter and ``op`` the function in error messages."""
    if isinstance(value, _C.TensorBase):
        if value.ndim != 0 or value.dtype.kind not in "iub":
            raise TypeError(f"{op}: {what} must be an integer, got a tensor of shape "
                            f"{tuple(value.shape)} and dtype {value.dtype}")
        value = value.item()
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{op}: {what} must be an integer, got {type(value).__name__} "
                        f"{value!r}") from None
    if not lo <= v <= hi:
        bounds = "int64" if (lo, hi) == (_I64_MIN, _I64_MAX) else f"[{lo}, {hi}]"
        raise OverflowError(f"{op}: {what} {v} does not fit {bounds}")
    return v


def to_ints(value, what, op, lo=_I64_MIN, hi=_I64_MAX):
    """A single integer or a sequence of them (see :func:`to_int`) as a list of Python ints."""
    if isinstance(value, _C.TensorBase) and value.ndim == 1:
        value = [value[i] for i in range(value.shape[0])]
    elif isinstance(value, _C.TensorBase) or not hasattr(value, "__iter__"):
        return [to_int(value, what, op, lo, hi)]
    return [to_int(v, what, op, lo, hi) for v in value]
