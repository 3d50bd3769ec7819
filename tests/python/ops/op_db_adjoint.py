"""op_db rows of the ops that gradient rules call (see op_db.py): slice_grad, pad_grad,
index_add and scatter_add, called directly so that the measured coverage sees each run forward,
differentiated, traced and failing like any other op."""
import numpy as np

import tianyuan as ty
from tianyuan import _C

from .op_db import OpInfo, Sample, rand

_ops = _C.ops


def _slice_grad(x, dy, starts, stops, steps):
    return _ops["slice_grad"](x, dy, starts=starts, stops=stops, steps=steps)


def _np_slice_grad(x, dy, starts, stops, steps):
    out = np.zeros_like(dy, shape=x.shape)
    out[tuple(slice(a, b, s) for a, b, s in zip(starts, stops, steps))] = dy
    return out


def _slice_grad_samples(rng):
    out = []
    for shape, starts, stops, steps in [((4, 3), [1, 0], [3, 3], [1, 2]),
                                        ((5,), [0], [5], [2]), ((2, 3), [0, 1], [2, 1], [1, 1])]:
        x = rand(rng, shape)
        key = tuple(slice(a, b, s) for a, b, s in zip(starts, stops, steps))
        out.append(Sample(x, rand(rng, x[key].shape), starts=starts, stops=stops, steps=steps))
    return out


_PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2}


def _pad_grad(g, pad_width, mode):
    pads = [v for p in pad_width for v in p]
    return _ops["pad_grad"](g, pads=pads, mode=_PAD_MODES[mode])


def _np_pad_grad(g, pad_width, mode):
    """The adjoint of np.pad: every padded position adds into the element it copies."""
    shape = tuple(n - a - b for n, (a, b) in zip(g.shape, pad_width))
    src = np.arange(int(np.prod(shape))).reshape(shape)
    if mode == "constant":
        idx = np.pad(src, pad_width, mode="constant", constant_values=-1)
    else:
        idx = np.pad(src, pad_width, mode=mode)
    out = np.zeros(src.size, dtype=g.dtype)
    keep = idx.ravel() >= 0
    np.add.at(out, idx.ravel()[keep], g.ravel()[keep])
    return out.reshape(shape)


def _pad_grad_samples(rng):
    return [Sample(rand(rng, (6, 7)), pad_width=((1, 2), (2, 1)), mode=m)
            for m in _PAD_MODES] + [Sample(rand(rng, (4,)), pad_width=((1, 1),), mode="edge")]


def _index_add(z, v, idx, axis):
    return _ops["index_add"](z, v, ty.tensor(idx, dtype="int32"), axis=axis)


def _np_index_add(z, v, idx, axis):
    out = z.copy()
    np.add.at(out, (slice(None),) * axis + (idx.astype(np.int64),), v)
    return out


def _index_add_samples(rng):
    return [Sample(rand(rng, (4, 3)), rand(rng, (5, 3)), np.array([0, 2, 0, 3, 1]), axis=0),
            Sample(rand(rng, (2, 4)), rand(rng, (2, 3)), np.array([3, 3, 1]), axis=1)]


def _scatter_add(z, idx, v, axis):
    return _ops["scatter_add"](z, ty.tensor(idx, dtype="int32"), v, axis=axis)


def _np_scatter_add(z, idx, v, axis):
    out = z.copy()
    for pos in np.ndindex(*idx.shape):
        dst = list(pos)
        dst[axis] = int(idx[pos])
        out[tuple(dst)] += v[pos]
    return out


def _scatter_add_samples(rng):
    return [Sample(rand(rng, (3, 4)), np.array([[0, 2, 2, 1], [2, 2, 0, 0]]), rand(rng, (2, 4)),
                   axis=0),
            Sample(rand(rng, (2, 3)), np.array([[1, 1], [0, 2]]), rand(rng, (2, 2)), axis=1)]


ROWS = [
    OpInfo("slice_grad", _slice_grad, _np_slice_grad, _slice_grad_samples, nondiff_args=(0,),
           dtypes=("float32", "float64")),
    OpInfo("pad_grad", _pad_grad, _np_pad_grad, _pad_grad_samples,
           dtypes=("float32", "float64")),
    OpInfo("index_add", _index_add, _np_index_add, _index_add_samples, nondiff_args=(2,),
           dtypes=("float32", "float64")),
    OpInfo("scatter_add", _scatter_add, _np_scatter_add, _scatter_add_samples,
           nondiff_args=(1,), dtypes=("float32", "float64")),
]
