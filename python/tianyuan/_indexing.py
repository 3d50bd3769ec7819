"""Tensor.__getitem__ / __setitem__: numpy indexing on top of slice, reshape and index ops."""
import numpy as np

from . import _C

_ops = _C.ops


def _is_int(k):
    return isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))


def _as_index_array(k):
    """An advanced index as a numpy int array or bool mask, or None if k is basic."""
    if isinstance(k, _C.TensorBase):
        return k.numpy()
    if isinstance(k, (list, np.ndarray)) or isinstance(k, (bool, np.bool_)):
        return np.asarray(k)
    return None


def _parse(x, key):
    """Splits key into a basic part (slices per input dim, dims to drop, new axes) and the
    advanced indices, as (starts, stops, steps, out_shape_spec, adv) where adv maps an output
    dim position to an int array."""
    if not isinstance(key, tuple):
        key = (key,)
    items = []
    for k in key:
        arr = _as_index_array(k)
        if arr is not None and arr.dtype == np.bool_:
            if arr.ndim == 0:
                raise IndexError("a bool scalar index is not supported")
            items.extend(np.nonzero(arr))  # a mask over arr.ndim dims -> int arrays
            items[-arr.ndim:] = [("adv", a.astype(np.int64), arr.shape[i])
                                 for i, a in enumerate(items[-arr.ndim:])]
        elif arr is not None:
            if arr.dtype.kind not in "iu":
                raise IndexError(f"arrays used as indices must be integer or bool, got {arr.dtype}")
            if arr.dtype == np.uint64 and arr.size and arr.max() > np.iinfo(np.int64).max:
                raise IndexError(f"index {arr.max()} is out of bounds (beyond int64)")
            items.append(("adv", arr.astype(np.int64), None))
        else:
            items.append(k)
    consumed = sum(1 for k in items if k is not None and k is not Ellipsis)
    if sum(1 for k in items if k is Ellipsis) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if consumed > x.ndim:
        raise IndexError(f"too many indices for a tensor of dimension {x.ndim}")
    expanded = []
    for k in items:
        if k is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - consumed))
        else:
            expanded.append(k)
    if Ellipsis not in items:
        expanded.extend([slice(None)] * (x.ndim - consumed))
    starts, stops, steps, out_shape, adv = [], [], [], [], {}
    d = 0
    for k in expanded:
        if k is None:
            out_shape.append(1)
            continue
        n = x.shape[d]
        if isinstance(k, tuple) and k[0] == "adv":
            arr = k[1]
            if k[2] is not None and k[2] != n:  # a bool mask must match the dims it covers
                raise IndexError(f"boolean index of size {k[2]} does not match axis {d} "
                                 f"with size {n}")
            if arr.size and (arr.max() >= n or arr.min() < -n):
                raise IndexError(f"indexing: index {arr.max() if arr.max() >= n else arr.min()} is out of "
                                 f"bounds for axis {d} with size {n}")
            adv[len(out_shape)] = np.where(arr < 0, arr + n, arr)
            starts.append(0), stops.append(n), steps.append(1)
            out_shape.append(n)
        elif _is_int(k) or (isinstance(k, _C.TensorBase) and k.ndim == 0):
            i = int(k)
            if i < -n or i >= n:
                raise IndexError(f"indexing: index {i} is out of bounds for axis {d} with size {n}")
            i = i + n if i < 0 else i
            starts.append(i), stops.append(i + 1), steps.append(1)
        elif isinstance(k, slice):
            st, sp, step = k.indices(n)
            if step == 0:
                raise ValueError("slice step cannot be zero")
            starts.append(st), stops.append(sp), steps.append(step)
            out_shape.append(len(range(st, sp, step)))
        else:
            raise IndexError(f"unsupported index type {type(k).__name__}")
        d += 1
    return starts, stops, steps, out_shape, adv


def _basic(x, starts, stops, steps, out_shape):
    full = all(s == 0 and e == n and st == 1
               for s, e, st, n in zip(starts, stops, steps, x.shape))
    y = x if full else _ops["slice"](x, starts=starts, stops=stops, steps=steps)
    if tuple(out_shape) != tuple(y.shape):
        y = _ops["reshape"](y, shape=out_shape)
    return y


def _advanced(y, adv):
    from .tensor import Tensor
    dims = sorted(adv)
    idx = np.broadcast_arrays(*[adv[d] for d in dims])
    adjacent = dims == list(range(dims[0], dims[0] + len(dims)))
    if not adjacent:  # numpy puts the broadcast dims first
        rest = [d for d in range(y.ndim) if d not in adv]
        y = _ops["transpose"](y, perm=dims + rest)
        axis = 0
    else:
        axis = dims[0]
    tensors = [Tensor(i, dtype="int64") for i in idx]
    return _ops["index"](y, *tensors, axis=axis)


_INT_CODES = None


def _int_tensor(k):
    """k when it is an integer (not bool) Tensor: it can index without being read on the host,
    so a traced function may index with values it computes."""
    global _INT_CODES
    if _INT_CODES is None:
        from .dtype import code_of
        _INT_CODES = {code_of(n) for n in ("int8", "uint8", "int16", "int32", "int64")}
    return isinstance(k, _C.TensorBase) and k._dtype_code in _INT_CODES


def getitem(x, key):
    if x.ndim >= 1 and _int_tensor(key):  # x[idx]: one gather along axis 0
        # any integer dtype goes to the kernel as is: it reads int64 and checks the bounds
        return _ops["index"](x, key, axis=0)
    starts, stops, steps, out_shape, adv = _parse(x, key)
    y = _basic(x, starts, stops, steps, out_shape)
    return _advanced(y, adv) if adv else y


def setitem(x, key, value):
    from .tensor import Tensor
    if not isinstance(value, _C.TensorBase):
        value = Tensor(value, dtype=x.dtype)
    if value.dtype != x.dtype:
        value = value.astype(x.dtype)
    if x.ndim >= 1 and _int_tensor(key):  # x[idx] = v: one scatter along axis 0
        x._replace(_ops["index_set"](x, value, key, axis=0))
        return
    starts, stops, steps, out_shape, adv = _parse(x, key)
    if adv:
        y = _basic(x, starts, stops, steps, out_shape)
        dims = sorted(adv)
        idx = np.broadcast_arrays(*[adv[d] for d in dims])
        tensors = [Tensor(i, dtype="int64") for i in idx]
        if dims != list(range(dims[0], dims[0] + len(dims))):
            # numpy puts the broadcast dims first: write through that layout, then undo it
            perm = dims + [d for d in range(y.ndim) if d not in adv]
            inv = [perm.index(d) for d in range(y.ndim)]
            new_y = _ops["index_set"](_ops["transpose"](y, perm=perm), value, *tensors, axis=0)
            new_y = _ops["transpose"](new_y, perm=inv)
        else:
            new_y = _ops["index_set"](y, value, *tensors, axis=dims[0])
        new = _ops["slice_set"](x, _ops["reshape"](new_y, shape=_slice_shape(starts, stops, steps)),
                                starts=starts, stops=stops, steps=steps)
    else:
        new = _ops["slice_set"](x, _ops["reshape"](_broadcast(value, out_shape),
                                                   shape=_slice_shape(starts, stops, steps)),
                                starts=starts, stops=stops, steps=steps)
    x._replace(new)


def _slice_shape(starts, stops, steps):
    return [len(range(s, e, st)) for s, e, st in zip(starts, stops, steps)]


def _broadcast(value, shape):
    if tuple(value.shape) == tuple(shape):
        return value
    return _ops["broadcast_to"](value, shape=list(shape))
