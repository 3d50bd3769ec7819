"""Joining, splitting, padding and indexing (MegEngine's concat, split, gather, topk, ...).

``pad``, ``one_hot`` and ``indexing_one_hot`` are MegEngine ``functional.nn`` functions; they
are defined here and also attached to ``tianyuan.functional.nn``.
"""
import numpy as np

from .. import _C
from .._args import to_int, to_ints

_ops = _C.ops

__all__ = ["concat", "stack", "split", "repeat", "tile", "roll", "flip", "gather", "scatter",
           "topk", "sort", "argsort", "cond_take", "non_zero", "cumsum", "pad", "one_hot",
           "indexing_one_hot"]

_LIST_MAX = 16   # TY_LIST_MAX: entries of a list param
_MAX_OUTS = 64   # TY_MAX_OUTPUTS: outputs of one op call


def _tensor(x, dtype=None):
    if isinstance(x, _C.TensorBase):
        return x
    from ..tensor import Tensor
    return Tensor(x, dtype=dtype)


def _index_tensor(x):
    if isinstance(x, _C.TensorBase):
        return x
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"index must be an integer array, got {a.dtype}")
    from ..tensor import Tensor
    # int32 when every value fits (MegEngine's default index dtype); else int64 as is, never
    # narrowed, so an index beyond int32 reaches the kernel's bounds check instead of wrapping
    i32 = np.iinfo(np.int32)
    fits = a.size == 0 or (a.min() >= i32.min and a.max() <= i32.max)
    return Tensor(a, dtype="int32" if fits else "int64")


def _norm_axis(axis, ndim, op):
    axis = to_int(axis, "axis", op)
    if not -ndim <= axis < max(ndim, 1):
        raise IndexError(f"{op}: axis {axis} is out of range for a {ndim}-d tensor")
    return axis + ndim if axis < 0 else axis


def _flat(x):
    return _ops["reshape"](x, shape=[-1])


# ---- joining and splitting ----
def concat(inps, axis=0, device=None):
    """Joins tensors along an existing axis."""
    inps = [_tensor(x) for x in inps]
    if not inps:
        raise ValueError("concat needs at least one tensor")
    return _ops["concat"](*inps, axis=to_int(axis, "axis", "concat"))


def stack(inps, axis=0, device=None):
    """Joins tensors of one shape along a new axis."""
    inps = [_tensor(x) for x in inps]
    if not inps:
        raise ValueError("stack needs at least one tensor")
    shape = tuple(inps[0].shape)
    for i, x in enumerate(inps):
        if tuple(x.shape) != shape:
            raise ValueError(f"stack: input {i} has shape {tuple(x.shape)}, input 0 has {shape}")
    a = _norm_axis(axis, len(shape) + 1, "stack")
    return _ops["concat"](*[_ops["expand_dims"](x, axes=[a]) for x in inps], axis=a)


def _sections(n, nsplits_or_sections):
    if isinstance(nsplits_or_sections, (int, np.integer)):
        k = to_int(nsplits_or_sections, "nsplits_or_sections", "split")
        if k <= 0:
            raise ValueError(f"number of sections must be larger than 0, got {k}")
        if k > max(n, 1):
            raise ValueError(f"the size {n} cannot be split into {k} sections")
        return [n // k + (1 if i < n % k else 0) for i in range(k)], True
    points = to_ints(nsplits_or_sections, "nsplits_or_sections", "split")
    bounds = [0] + points + [n]
    for a, b in zip(bounds, bounds[1:]):
        if b < a or b > n:
            raise ValueError(f"split: invalid split points {points} for a dim of size {n}")
    return [b - a for a, b in zip(bounds, bounds[1:])], False


def split(inp, nsplits_or_sections, axis=0):
    """Splits into a number of near-equal parts (int) or at the given indices (sequence)."""
    if inp.ndim == 0:
        raise ValueError("cannot split a 0-d tensor")
    axis = _norm_axis(axis, inp.ndim, "split")
    sizes, equal = _sections(inp.shape[axis], nsplits_or_sections)
    if len(sizes) <= _MAX_OUTS and (equal or len(sizes) <= _LIST_MAX):
        outs = _ops["split"](inp, axis=axis, sizes=[] if equal else sizes, _nout=len(sizes))
        return list(outs)
    outs, start = [], 0
    for s in sizes:  # too many parts for one op call: slice each
        starts = [0] * inp.ndim
        stops = list(inp.shape)
        starts[axis], stops[axis] = start, start + s
        outs.append(_ops["slice"](inp, starts=starts, stops=stops, steps=[1] * inp.ndim))
        start += s
    return outs


def repeat(inp, repeats, axis=None):
    """Repeats each element `repeats` times along axis (the flattened tensor when None)."""
    if axis is None:
        inp, axis = _flat(inp), 0
    elif inp.ndim == 0:
        inp = _ops["reshape"](inp, shape=[1])
    return _ops["repeat"](inp, repeats=to_int(repeats, "repeats", "repeat"),
                          axis=to_int(axis, "axis", "repeat"))


def tile(inp, reps):
    """Repeats the whole tensor reps[i] times along each dim (numpy.tile)."""
    return _ops["tile"](inp, reps=to_ints(reps, "reps", "tile"))


def roll(inp, shift, axis=None):
    """Rotates elements by shift along axis (the flattened tensor when None)."""
    shifts = to_ints(shift, "shift", "roll")
    if axis is None:
        if len(shifts) != 1:
            raise ValueError("roll: several shifts need as many axes")
        return _ops["reshape"](_ops["roll"](_flat(inp), shifts=shifts, axes=[0]),
                               shape=list(inp.shape))
    axes = to_ints(axis, "axis", "roll")
    if len(shifts) == 1 and len(axes) > 1:
        shifts = shifts * len(axes)
    return _ops["roll"](inp, shifts=shifts, axes=axes)


def flip(inp, axis=None):
    """Reverses the order of elements along axis (every axis when None)."""
    if axis is None:
        axes = list(range(inp.ndim))
    else:
        axes = to_ints(axis, "axis", "flip")
    return _ops["flip"](inp, axes=axes)


_PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2, "replicate": 2}


def pad(src, pad_width, mode="constant", constant_value=0.0):
    """Pads src with (before, after) sizes per dim, from dim 0; modes constant, reflect, edge."""
    if mode.lower() not in _PAD_MODES:
        raise ValueError(f"pad: unknown mode {mode!r} (constant, reflect, edge, replicate)")
    nd = src.ndim
    if isinstance(pad_width, (int, np.integer)):
        pad_width = [(pad_width, pad_width)] * nd
    pw = [tuple(to_ints(p, "pad_width", "pad")) for p in pad_width]
    if len(pw) > nd or any(len(p) != 2 for p in pw):
        raise ValueError(f"pad: pad_width {pad_width} does not fit a {nd}-d tensor")
    pw += [(0, 0)] * (nd - len(pw))
    pads = [v for p in pw for v in p]
    return _ops["pad"](src, pads=pads, mode=_PAD_MODES[mode.lower()],
                       value=float(constant_value))


# ---- gather / scatter / one-hot ----
def gather(inp, axis, index):
    """out[i][j][k] = inp[index[i][j][k]][j][k] (for axis 0), and so on for other axes.

    Index values must lie in [0, inp.shape[axis]): a negative or too large one raises
    IndexError naming it (also in a traced function), as in MegEngine; there is no numpy-style
    wrapping of -1 to the last element (``scatter`` and ``indexing_one_hot`` alike)."""
    return _ops["gather"](inp, _index_tensor(index), axis=to_int(axis, "axis", "gather"))


def scatter(inp, axis, index, source):
    """A copy of inp with out[index[i][j]][j] = source[i][j] (for axis 0)."""
    return _ops["scatter"](inp, _index_tensor(index), _tensor(source),
                           axis=to_int(axis, "axis", "scatter"))


def one_hot(inp, num_classes):
    """One-hot encoding along a new last axis (dtype of inp)."""
    return _ops["one_hot"](_index_tensor(inp),
                           num_classes=to_int(num_classes, "num_classes", "one_hot"))


def indexing_one_hot(src, index, axis=1, keepdims=False):
    """src[..., index[...], ...]: picks one element along axis for each position of index."""
    axis = _norm_axis(axis, src.ndim, "indexing_one_hot")
    idx = _ops["expand_dims"](_index_tensor(index), axes=[axis])
    try:  # the gather kernel checks 0 <= index < src.shape[axis], negative values included
        out = _ops["gather"](src, idx, axis=axis)
    except IndexError as e:
        raise IndexError(f"indexing_one_hot: {e}") from None
    return out if keepdims else _ops["squeeze"](out, axes=[axis])


# ---- sorting ----
def sort(inp, descending=False):
    """(sorted values, int32 indices) along the last axis; ties keep their order."""
    v, i = _ops["sort"](inp, descending=int(bool(descending)))
    return v, i


def argsort(inp, descending=False):
    """int32 indices that sort inp along the last axis."""
    return sort(inp, descending)[1]


def topk(inp, k, descending=False, kth_only=False, no_sort=False):
    """The k smallest (largest when descending) values along the last axis and their indices.

    kth_only returns only the k-th value and its index; no_sort is accepted (the result is
    always sorted)."""
    k = to_int(k, "k", "topk")
    v, i = _ops["topk"](inp, k=k, descending=int(bool(descending)))
    if kth_only:
        n = v.ndim - 1
        sl = dict(starts=[0] * n + [k - 1], stops=list(v.shape[:-1]) + [k],
                  steps=[1] * v.ndim)
        v = _ops["squeeze"](_ops["slice"](v, **sl), axes=[-1])
        i = _ops["squeeze"](_ops["slice"](i, **sl), axes=[-1])
    return v, i


# ---- value-dependent shapes ----
def cond_take(mask, x):
    """(x's values where mask is true, their int32 indices into the flattened x)."""
    v, i = _ops["cond_take"](_tensor(mask), x)
    return v, i


def non_zero(condition, as_tuple=False):
    """int32 indices of non-zero elements: (nnz, ndim), or a tuple of ndim (nnz,) tensors."""
    idx = _ops["non_zero"](_tensor(condition))
    if not as_tuple:
        return idx
    nnz = idx.shape[0]
    return tuple(_ops["reshape"](_ops["slice"](idx, starts=[0, d], stops=[nnz, d + 1],
                                               steps=[1, 1]), shape=[nnz])
                 for d in range(idx.shape[1]))


def cumsum(inp, axis):
    """Cumulative sum along axis."""
    return _ops["cumsum"](inp, axis=to_int(axis, "axis", "cumsum"))


def _attach_to_nn():
    from . import nn
    for name in ("pad", "one_hot", "indexing_one_hot"):
        setattr(nn, name, globals()[name])
        if name not in nn.__all__:
            nn.__all__.append(name)


_attach_to_nn()
