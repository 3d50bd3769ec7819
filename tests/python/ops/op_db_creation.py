"""op_db rows of the creation and random family (see op_db.py).

Creation ops are checked against NumPy. Random ops get rows whose fn returns a deterministic
property of the draw (all in range, a sorted permutation, ...), so the generic forward and
non-contiguous suites apply; the statistics live in tests/python/test_random.py."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C
from tianyuan import dtype as _dt

from .op_db import OpInfo, Sample, rand  # noqa: F401

_ops = _C.ops


def _np_dtype(d):
    return np.dtype(d)


def _fill_samples(rng):
    return [Sample(shape=(2, 3), value=1.5), Sample(shape=(), value=-2.0),
            Sample(shape=(0, 4), value=3.0), Sample(shape=(5,), value=7, dtype="int32"),
            Sample(shape=(2, 2), value=2, dtype="bool"), Sample(shape=(3,), value=0.1,
                                                                  dtype="float64"),
            Sample(shape=(1, 2, 1, 2), value=-3.7, dtype="int8")]


def _full(shape, value, dtype="float32"):
    return F.full(shape, value, dtype)


def _np_full(shape, value, dtype="float32"):
    if np.dtype(dtype).kind in "iu":
        value = np.trunc(value)
    return np.full(shape, value, dtype=_np_dtype(dtype))


def _like_samples(rng):
    return [Sample(rand(rng, s)) for s in [(), (0,), (3, 4), (2, 3, 4)]]


def _like(x):
    return (F.zeros_like(x), F.ones_like(x), F.full_like(x, 2.5))


def _np_like(x):
    return (np.zeros_like(x), np.ones_like(x), np.full_like(x, 2.5))


def _arange_samples(rng):
    return [Sample(start=5), Sample(start=1, stop=7, step=2), Sample(start=0, stop=1, step=0.1),
            Sample(start=5, stop=0, step=-1.5), Sample(start=3, stop=3),
            Sample(start=2, stop=-1), Sample(start=-3, stop=4, step=2, dtype="int32"),
            Sample(start=0.5, stop=2.5, step=0.25, dtype="float64")]


def _np_arange(start=0, stop=None, step=1, dtype="float32"):
    if stop is None:
        start, stop = 0, start
    return np.arange(start, stop, step, dtype=np.float64).astype(dtype)


def _linspace_samples(rng):
    args = [(0, 1, 5, "float32"), (2, -3, 7, "float32"), (1, 1, 1, "float32"),
            (0, 1, 0, "float32"), (4.5, 4.5, 3, "float32"), (0, 10, 4, "int32"),
            (-1, 1, 9, "float64")]
    return [Sample(start=a, stop=b, num=n, dtype=d) for a, b, n, d in args]


def _linspace(start, stop, num, dtype="float32"):
    return F.linspace(start, stop, num, dtype=dtype)


def _np_linspace(start, stop, num, dtype="float32"):
    return np.linspace(start, stop, num, dtype=np.float64).astype(dtype)


def _eye_samples(rng):
    return [Sample(n=3), Sample(n=2, m=4), Sample(n=4, m=2), Sample(n=0), Sample(n=3, m=0),
            Sample(n=3, dtype="int32"), Sample(n=1, m=1, dtype="bool")]


def _eye(n, m=None, dtype="float32"):
    return F.eye(n, m, dtype=dtype)


def _np_eye(n, m=None, dtype="float32"):
    return np.eye(n, m, dtype=_np_dtype(dtype))


_SHAPES = [(), (0,), (7,), (3, 4), (2, 3, 5), (0, 3)]


def _random_samples(rng):
    out = [Sample(shape=s, a=-1.5, b=2.0) for s in _SHAPES]
    return out + [Sample(shape=(64,), a=0.0, b=1.0, dtype="float64"),
                  Sample(shape=(10,), a=3.0, b=3.5)]


def _code(dtype):
    return _dt.code_of(dtype)


def _uniform_in_range(shape, a, b, dtype="float32"):
    u = _ops["uniform"](shape=list(shape), a=a, b=b, dtype=_code(dtype))
    return F.logical_and(u >= a, u < b)


def _normal_finite(shape, a, b, dtype="float32"):
    z = _ops["normal"](shape=list(shape), a=a, b=b, dtype=_code(dtype))
    return F.logical_and(F.abs(z - a) <= 12 * b, F.logical_not(F.isnan(z)))


def _all_true(shape, a, b, dtype="float32"):
    return np.ones(shape, dtype=bool)


def _perm_samples(rng):
    return [Sample(n=0), Sample(n=1), Sample(n=10), Sample(n=257, dtype="int64"),
            Sample(n=33, dtype="float32")]


def _sorted_perm(n, dtype="int32"):
    p = _ops["permutation"](n=n, dtype=_code(dtype))
    assert p.dtype == np.dtype(dtype)
    return F.sort(p)[0]  # with ops only, so the row can also be traced


def _np_range(n, dtype="int32"):
    return np.arange(n).astype(dtype)


def _keyed_samples(rng):
    return [Sample(dist=dist, shape=s, seed=seed) for dist in (0, 1, 2) for s, seed in
            [((), 0), ((5,), 1), ((3, 4), -7), ((0,), 2**62)] if dist != 2 or len(s) == 1]


def _keyed(dist, shape, seed):
    """Draws twice from the same (seed, counter): equal draws, in range or a permutation."""
    kw = dict(shape=list(shape), dist=dist, seed=seed, counter=123, a=-1.0, b=2.0,
              dtype=_code("int32" if dist == 2 else "float32"))
    x, y = _ops["random_keyed"](**kw), _ops["random_keyed"](**kw)
    same = F.equal(x, y)  # with ops only, so the row can also be traced
    if dist == 0:
        ok = F.logical_and(x >= -1.0, x < 2.0)
    elif dist == 1:
        ok = F.logical_not(F.logical_or(F.isnan(x), F.isinf(x)))
    else:
        ok = F.equal(F.sort(x)[0], F.arange(0, x.shape[0], dtype="int32"))
    return F.logical_and(ok, same)


def _keyed_ref(dist, shape, seed):
    return np.ones(shape, dtype=bool)


def _dist_samples(rng):
    out = []
    for dist in (0, 1, 2, 3):
        for shape in [(), (0,), (7,), (3, 4)]:
            a, b = rng.uniform(0.2, 12.0, shape), rng.uniform(0.2, 4.0, shape)
            out.append(Sample(a, b, dist=dist))
    return out + [Sample(np.full((40,), 0.05), np.full((40,), 0.05), dist=0),
                  Sample(np.full((40,), 300.0), np.ones(40), dist=2)]


def _dist(a, b, dist):
    """True where a global draw lies in the distribution's support (NaN where a parameter is
    not finite and positive) and two keyed draws from one (seed, counter) agree bit for bit."""
    x = _ops["random_dist"](a, b, dist=dist)
    y, z = (_ops["random_dist"](a, b, dist=dist, keyed=1, seed=5, counter=77) for _ in "yz")
    if dist == 1:
        ok = F.logical_and(x >= 0.0, x <= 1.0)
    elif dist == 2:
        ok = F.logical_and(x >= 0.0, F.equal(F.floor(x), x))
    else:
        ok = F.logical_and(x >= 0.0, F.logical_not(F.isinf(x)))
    same = F.logical_or(F.equal(y, z), F.logical_and(F.isnan(y), F.isnan(z)))
    return F.logical_and(F.logical_and(ok, F.logical_not(F.isnan(x))), same)


def _dist_ref(a, b, dist):
    """Parameters in (0, inf) give a draw; others give NaN, which _dist reports as False."""
    def valid(v):
        return np.isfinite(v) & (v > 0)
    return valid(a) & valid(b) if dist in (0, 1) else valid(a) & np.ones(np.shape(b), bool)


ROWS = [
    OpInfo("fill", _full, _np_full, _fill_samples, grad=False),
    OpInfo("full_like", _like, _np_like, _like_samples, ops=["fill"], grad=False),
    OpInfo("arange", F.arange, _np_arange, _arange_samples, grad=False),
    OpInfo("linspace", _linspace, _np_linspace, _linspace_samples, grad=False),
    OpInfo("eye", _eye, _np_eye, _eye_samples, grad=False),
    OpInfo("uniform", _uniform_in_range, _all_true, _random_samples, grad=False),
    OpInfo("normal", _normal_finite, _all_true, _random_samples, grad=False),
    OpInfo("permutation", _sorted_perm, _np_range, _perm_samples, grad=False),
    OpInfo("random_keyed", _keyed, _keyed_ref, _keyed_samples, grad=False),
    OpInfo("random_dist", _dist, _dist_ref, _dist_samples, grad=False,
           dtypes=("float32", "float64")),
]
