"""Tensor creation and shape manipulation (MegEngine's ``functional.tensor``)."""
import numpy as np

from .. import _C
from .._args import to_int, to_ints
from .. import dtype as _dt

_ops = _C.ops

__all__ = ["reshape", "flatten", "transpose", "broadcast_to", "expand_dims", "squeeze", "where",
           "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "copy", "astype",
           "swapaxes"]


def _ints(shape, what, op):
    return to_ints(shape, what, op)


def reshape(inp, target_shape):
    """A tensor with the same values and a new shape (one dim may be -1)."""
    return _ops["reshape"](inp, shape=_ints(target_shape, "shape", "reshape"))


def flatten(inp, start_axis=0, end_axis=-1):
    """Merges dims start_axis..end_axis into one."""
    nd = inp.ndim
    start_axis = to_int(start_axis, "start_axis", "flatten")
    end_axis = to_int(end_axis, "end_axis", "flatten")
    if nd == 0:
        return reshape(inp, [1])
    s = start_axis + nd if start_axis < 0 else start_axis
    e = end_axis + nd if end_axis < 0 else end_axis
    if not (0 <= s < nd and 0 <= e < nd) or s > e:
        raise IndexError(f"flatten: axes ({start_axis}, {end_axis}) out of range for {nd}-d input")
    shape = list(inp.shape)
    n = 1
    for d in shape[s:e + 1]:
        n *= d
    return reshape(inp, shape[:s] + [n] + shape[e + 1:])


def transpose(inp, pattern):
    """Permutes dims by pattern (MegEngine's dimshuffle without 'x')."""
    return _ops["transpose"](inp, perm=_ints(pattern, "pattern", "transpose"))


def swapaxes(inp, axis1, axis2):
    perm = list(range(inp.ndim))
    axis1, axis2 = to_int(axis1, "axis1", "swapaxes"), to_int(axis2, "axis2", "swapaxes")
    perm[axis1], perm[axis2] = perm[axis2], perm[axis1]
    return transpose(inp, perm)


def broadcast_to(inp, shape):
    """A broadcast view of inp with the given shape."""
    return _ops["broadcast_to"](inp, shape=_ints(shape, "shape", "broadcast_to"))


def expand_dims(inp, axis):
    """Inserts size-1 dims at axis (int or list)."""
    return _ops["expand_dims"](inp, axes=_ints(axis, "axis", "expand_dims"))


def squeeze(inp, axis=None):
    """Removes size-1 dims (all of them when axis is None)."""
    return _ops["squeeze"](inp, axes=[] if axis is None else _ints(axis, "axis", "squeeze"))


def where(mask, x, y):
    """Elementwise x where mask else y, with broadcasting."""
    return _ops["where"](mask, x, y)


def astype(inp, dtype):
    return _ops["astype"](inp, dtype=_dt.code_of(dtype))


def copy(inp, device=None):
    """A contiguous copy of inp."""
    return _ops["copy"](inp)


def full(shape, value, dtype="float32", device=None):
    """A tensor of the given shape filled with value (the C ``fill`` op)."""
    if isinstance(value, _C.TensorBase):
        value = value.item()
    code = _dt.code_of(dtype)
    target = _dt.dtype_of(code)
    if isinstance(value, (int, np.integer)) and target.kind in "iu":  # never wrap or saturate
        info = np.iinfo(target)
        if not info.min <= value <= info.max:
            raise OverflowError(f"full: value {value} does not fit {target}")
    return _ops["fill"](shape=_ints(shape, "shape", "full"), value=float(value), dtype=code)


def _np(dtype):
    d = _dt.dtype_of(_dt.code_of(dtype))
    return np.float32 if d is _dt.bfloat16 else d


def zeros(shape, dtype="float32", device=None):
    return full(shape, 0, dtype)


def ones(shape, dtype="float32", device=None):
    return full(shape, 1, dtype)


def zeros_like(inp):
    return full(inp.shape, 0, inp.dtype)


def ones_like(inp):
    return full(inp.shape, 1, inp.dtype)


def full_like(inp, value):
    return full(inp.shape, value, inp.dtype)
