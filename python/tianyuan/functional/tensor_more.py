"""diag, meshgrid and cross (MegEngine's ``functional.tensor`` / ``functional.math``), written
with table ops (reshape, slice, where, broadcast, concat), so they trace, deploy and
differentiate like those ops."""
from .. import _C
from .._args import to_int
from ..tensor import Tensor
from .. import dtype as _dt

_ops = _C.ops

__all__ = ["diag", "meshgrid", "cross"]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _diag_matrix(v, k):
    """(n + |k|, n + |k|) matrix with v on its k-th diagonal, zeros elsewhere."""
    n = v.shape[0]
    mask = _ops["eye"](n=n, m=n, dtype=_dt.code_of("float32")) != 0
    zero = _ops["fill"](shape=[], value=0.0, dtype=_dtype_code(v))
    body = _ops["where"](mask, _ops["broadcast_to"](v.reshape((1, n)), shape=[n, n]), zero)
    top, left = (0, k) if k >= 0 else (-k, 0)
    pads = [top, abs(k) - top, left, abs(k) - left]
    return _ops["pad"](body, pads=pads, mode=0, value=0.0)


def _dtype_code(t):
    return _dt.code_of(t.dtype)


def _diag_vector(x, k):
    """The k-th diagonal of a 2-d x as a 1-d tensor (a strided slice of the flattened x)."""
    n, m = x.shape
    if k >= 0:
        length, start = max(0, min(n, m - k)), k
    else:
        length, start = max(0, min(n + k, m)), -k * m
    flat = x.reshape((n * m,))
    if length == 0:
        return flat[0:0]
    return flat[start:start + (length - 1) * (m + 1) + 1:m + 1]


def diag(inp, k=0):
    """A 1-d ``inp`` as a square matrix with it on the k-th diagonal (k > 0 above the main
    diagonal, k < 0 below); the k-th diagonal of a 2-d ``inp`` as a 1-d tensor."""
    inp = _tensor(inp)
    k = to_int(k, "k", "diag")
    if inp.ndim == 1:
        return _diag_matrix(inp, k)
    if inp.ndim == 2:
        return _diag_vector(inp, k)
    raise ValueError(f"diag: expects a 1-d or 2-d tensor, got shape {tuple(inp.shape)}")


def meshgrid(*inputs, indexing="xy"):
    """Coordinate matrices from 1-d coordinate vectors x1..xn: each output has shape
    (len(x1), ..., len(xn)) with ``indexing="ij"``, or with the first two swapped for the
    Cartesian ``"xy"`` (the default)."""
    if len(inputs) == 1 and isinstance(inputs[0], (list, tuple)):
        inputs = tuple(inputs[0])
    if indexing not in ("xy", "ij"):
        raise ValueError(f"meshgrid: indexing must be 'xy' or 'ij', got {indexing!r}")
    xs = [_tensor(x) for x in inputs]
    for i, x in enumerate(xs):
        if x.ndim != 1:
            raise ValueError(f"meshgrid: input {i} must be 1-d, got shape {tuple(x.shape)}")
    n = len(xs)
    sizes = [x.shape[0] for x in xs]
    if indexing == "xy" and n >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    outs = []
    for i, x in enumerate(xs):
        axis = i
        if indexing == "xy" and n >= 2 and i < 2:
            axis = 1 - i
        shape = [1] * n
        shape[axis] = x.shape[0]
        outs.append(_ops["broadcast_to"](x.reshape(tuple(shape)), shape=sizes))
    return outs


def _move_last(x, axis, what):
    nd = x.ndim
    a = to_int(axis, what, "cross")
    if not -nd <= a < nd:
        raise IndexError(f"cross: {what} {a} is out of range for a {nd}-d tensor")
    a %= nd
    perm = [i for i in range(nd) if i != a] + [a]
    return x.transpose(perm) if perm != list(range(nd)) else x


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """Cross product of 3-vectors along axisa of a and axisb of b (``axis`` sets all three),
    NumPy's semantics; the other dims broadcast; the result's vector axis is axisc."""
    a, b = _tensor(a), _tensor(b)
    if axis is not None:
        axisa = axisb = axisc = axis
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("cross: inputs must be at least 1-d")
    a, b = _move_last(a, axisa, "axisa"), _move_last(b, axisb, "axisb")
    if a.shape[-1] != 3 or b.shape[-1] != 3:
        raise ValueError(f"cross: the vector axes must have length 3, got {a.shape[-1]} "
                         f"and {b.shape[-1]}")
    a0, a1, a2 = a[..., 0:1], a[..., 1:2], a[..., 2:3]
    b0, b1, b2 = b[..., 0:1], b[..., 1:2], b[..., 2:3]
    c = _ops["concat"](a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0,
                       axis=max(a.ndim, b.ndim) - 1)
    nd = c.ndim
    ac = to_int(axisc, "axisc", "cross")
    if not -nd <= ac < nd:
        raise IndexError(f"cross: axisc {ac} is out of range for a {nd}-d result")
    ac %= nd
    if ac == nd - 1:
        return c
    perm = list(range(nd - 1))
    perm.insert(ac, nd - 1)
    return c.transpose(perm)
