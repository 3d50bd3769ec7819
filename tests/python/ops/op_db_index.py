"""op_db rows of the index family (see op_db.py): advanced indexing, gather / scatter,
one_hot, indexing_one_hot, sort / argsort / topk, cond_take, non_zero, cumsum."""
import numpy as np

import tianyuan.functional as F

from .op_db import OpInfo, Sample, rand  # noqa: F401

DT = ("float32", "float64", "int32")


def _distinct(rng, shape):
    n = int(np.prod(shape)) if shape else 1
    return (rng.permutation(n).reshape(shape) / 3.0 - 1.0).astype(np.float64)


# ---- advanced indexing through Tensor.__getitem__ / __setitem__ ----
def _adv_keys():
    return [np.array([0, 2, 2, -1]), (slice(None), [0, 2]), ([0, 1], [1, 2]),
            ([[0], [3]], slice(None), [1, 0]), (Ellipsis, np.array([[1, 0], [0, 0]])),
            (1, [2, 0]), (slice(1, None), [True, False, True]), np.array([], dtype=np.int64),
            (None, [1, 2], slice(None, None, -1))]


def _adv_getitem_samples(rng):
    out = [Sample(rand(rng, (4, 3, 2)), key=k) for k in _adv_keys()]
    x = rand(rng, (4, 3))
    out.append(Sample(x, key=x > 0))  # bool mask over every dim
    return out


def _adv_setitem_samples(rng):
    out = []
    for k in [np.array([0, 2]), (slice(None), [0, 2]), ([0, 1], [1, 2]), (1, [2, 0]),
              (slice(1, None), [True, False, True]), (Ellipsis, [1])]:
        x = rand(rng, (4, 3, 2))
        out.append(Sample(x, rand(rng, x[k].shape), key=k))
    x = rand(rng, (4, 3))
    out.append(Sample(x, rand(rng, (3,)), key=np.array([1, 3])))  # broadcast value
    out.append(Sample(x, rand(rng, ()), key=x > 0))
    return out


def _getitem(x, key):
    return x[key]


def _setitem(x, v, key):
    y = F.copy(x)
    y[key] = v
    return y


def _np_setitem(x, v, key):
    y = x.copy()
    y[key] = v
    return y


# ---- gather / scatter ----
def _gather_samples(rng):
    out = []
    for shape, ishape, axis in [((3, 4), (3, 5), 1), ((3, 4), (2, 4), 0), ((2, 3, 4), (2, 2, 4), 1),
                                ((5,), (7,), 0), ((3, 4), (3, 0), 1), ((3, 4), (2, 3), -1)]:
        n = shape[axis]
        out.append(Sample(rand(rng, shape), rng.integers(0, n, size=ishape), axis=axis))
    return out


def _np_gather(x, index, axis):
    ax = axis % x.ndim
    x = x[tuple(slice(None) if d == ax else slice(0, s) for d, s in enumerate(index.shape))]
    return np.take_along_axis(x, index, axis)


def _scatter_samples(rng):
    out = []
    for shape, ishape, axis in [((3, 4), (3, 2), 1), ((4, 3), (2, 3), 0), ((2, 4, 3), (2, 3, 3), 1),
                                ((5,), (3,), 0), ((3, 4), (3, 0), 1)]:
        n = shape[axis]
        # unique positions along axis (scatter with duplicates has no defined gradient)
        perm = np.argsort(rng.uniform(size=ishape[:axis] + (n,) + ishape[axis + 1:]), axis=axis)
        idx = np.take(perm, range(ishape[axis]), axis=axis)
        idx = idx[tuple(slice(0, s) for s in ishape)]
        out.append(Sample(rand(rng, shape), idx, rand(rng, ishape), axis=axis))
    return out


def _np_scatter(x, index, src, axis):
    y = x.copy()
    np.put_along_axis(y, index, src, axis)
    return y


def _scatter(x, index, src, axis):
    return F.scatter(x, axis, index, src)


def _one_hot_samples(rng):
    return [Sample(rng.integers(0, 5, size=s), num_classes=5) for s in [(4,), (2, 3), (), (0,)]]


def _np_one_hot(x, num_classes):
    return (np.arange(num_classes) == x[..., None]).astype(x.dtype)


def _ioh_samples(rng):
    return [Sample(rand(rng, (4, 5)), rng.integers(0, 5, size=(4,)), axis=1),
            Sample(rand(rng, (4, 5)), rng.integers(0, 4, size=(5,)), axis=0, keepdims=True),
            Sample(rand(rng, (2, 3, 4)), rng.integers(0, 3, size=(2, 4)), axis=1)]


def _np_ioh(src, index, axis=1, keepdims=False):
    r = np.take_along_axis(src, np.expand_dims(index, axis), axis)
    return r if keepdims else np.squeeze(r, axis)


# ---- sorting ----
def _sort_samples(rng):
    return [Sample(_distinct(rng, s), descending=d) for s in [(7,), (3, 5), (2, 3, 4), (0,),
                                                              (3, 0)]
            for d in (False, True)]


def _np_sort(x, descending=False):
    i = np.argsort(x[..., ::-1] if descending else x, axis=-1, kind="stable")  # NaN: largest
    i = x.shape[-1] - 1 - i[..., ::-1] if descending else i  # stable, no -x overflow
    return np.take_along_axis(x, i, -1), i


def _topk_samples(rng):
    return [Sample(_distinct(rng, (3, 6)), k=k, descending=d, kth_only=kth)
            for k in (1, 3) for d in (False, True) for kth in (False, True)] + [
        Sample(_distinct(rng, (5,)), k=5), Sample(_distinct(rng, (2, 3, 4)), k=2)]


def _np_topk(x, k, descending=False, kth_only=False):
    v, i = _np_sort(x, descending)
    if kth_only:
        return v[..., k - 1], i[..., k - 1]
    return v[..., :k], i[..., :k]


# ---- value-dependent shapes and cumsum ----
def _cond_take_samples(rng):
    return [Sample(rand(rng, s) > 0, rand(rng, s)) for s in [(3, 4), (5,), (), (0, 2)]]


def _np_cond_take(mask, x):
    return x[mask], np.flatnonzero(mask)


def _non_zero_samples(rng):
    return [Sample(np.round(rand(rng, s))) for s in [(3, 4), (6,), (2, 3, 2), (0, 3)]]


def _non_zero_tuple(x):
    return F.stack(list(F.non_zero(x, as_tuple=True)), 1) if x.ndim else F.non_zero(x)


def _cumsum_samples(rng):
    return [Sample(rand(rng, (3, 4)), axis=0), Sample(rand(rng, (3, 4)), axis=-1),
            Sample(rand(rng, (2, 3, 4)), axis=1), Sample(rand(rng, (7,)), axis=0),
            Sample(rand(rng, (0, 3)), axis=0), Sample(rand(rng, ()), axis=0)]


def _np_cumsum(x, axis):
    return np.cumsum(x.reshape(1) if x.ndim == 0 else x, axis).reshape(x.shape)


ROWS = [
    OpInfo("getitem_advanced", _getitem, _getitem, _adv_getitem_samples,
           ops=["index", "index_add"], dtypes=DT),
    OpInfo("setitem_advanced", _setitem, _np_setitem, _adv_setitem_samples, ops=["index_set"],
           dtypes=DT),
    OpInfo("gather", lambda x, i, axis: F.gather(x, axis, i), _np_gather, _gather_samples,
           ops=["gather", "scatter_add"], nondiff_args=(1,), dtypes=DT),
    OpInfo("scatter", _scatter, _np_scatter, _scatter_samples, nondiff_args=(1,), dtypes=DT),
    OpInfo("one_hot", F.nn.one_hot, _np_one_hot, _one_hot_samples, grad=False,
           nondiff_args=(0,)),
    OpInfo("indexing_one_hot", F.nn.indexing_one_hot, _np_ioh, _ioh_samples, ops=["gather"],
           nondiff_args=(1,), dtypes=DT),
    OpInfo("sort", F.sort, _np_sort, _sort_samples, dtypes=("float32", "float64")),
    OpInfo("argsort", F.argsort, lambda x, descending=False: _np_sort(x, descending)[1],
           _sort_samples, ops=["sort"], grad=False),
    OpInfo("topk", F.topk, _np_topk, _topk_samples, dtypes=("float32", "float64")),
    OpInfo("cond_take", F.cond_take, _np_cond_take, _cond_take_samples, dtypes=DT),
    OpInfo("non_zero", F.non_zero, np.argwhere, _non_zero_samples, grad=False, dtypes=DT),
    OpInfo("non_zero_tuple", _non_zero_tuple, np.argwhere, _non_zero_samples, ops=["non_zero"],
           grad=False),
    OpInfo("cumsum", F.cumsum, _np_cumsum, _cumsum_samples, dtypes=DT),
]
