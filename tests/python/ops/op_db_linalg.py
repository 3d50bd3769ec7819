"""op_db rows of the linalg family: matinv and svd (see op_db.py). A matrix with a non-finite
entry (and for matinv a singular one) gives NaN everywhere: the references say so."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F

from .op_db import OpInfo, Sample, rand


def _square_samples(rng):
    out = []
    for shape in [(1, 1), (3, 3), (2, 4, 4), (2, 1, 2, 2), (0, 3, 3), (0, 0)]:
        n = shape[-1]
        out.append(Sample(rand(rng, shape) + 4.0 * np.eye(n)))  # well conditioned
    return out


def _np_matinv(x):
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    flat = x.reshape((int(np.prod(x.shape[:-2])), n, n))
    out = np.empty_like(flat)
    for i, m in enumerate(flat):
        try:
            out[i] = np.linalg.inv(m) if np.isfinite(m).all() else np.nan
        except np.linalg.LinAlgError:
            out[i] = np.nan
    return out.reshape(x.shape)


def _svd_samples(rng):
    shapes = [(4, 3), (3, 5), (2, 6, 2), (3, 3), (1, 1), (0, 2, 3), (0, 3)]
    return ([Sample(rand(rng, s)) for s in shapes] +
            [Sample(rand(rng, (5, 3)), full_matrices=True),
             Sample(rand(rng, (2, 3, 4)), full_matrices=True)])


def _svd(x, full_matrices=False):
    """S and U[..., :K] @ diag(S) @ Vh[..., :K, :] (the factors are unique only up to sign)."""
    u, s, vh = F.svd(x, full_matrices=full_matrices)
    k = s.shape[-1]
    us = u[..., :k] * F.expand_dims(s, -2)
    return s, F.matmul(us, vh[..., :k, :])


def _np_svd(x, full_matrices=False):
    x = np.asarray(x, dtype=np.float64)
    m, n = x.shape[-2:]
    k = min(m, n)
    flat = x.reshape((int(np.prod(x.shape[:-2])), m, n))
    s = np.empty((flat.shape[0], k))
    rec = np.empty_like(flat)
    for i, a in enumerate(flat):
        if not np.isfinite(a).all():
            s[i], rec[i] = np.nan, np.nan
        elif a.size:
            s[i], rec[i] = np.linalg.svd(a, compute_uv=False), a
        else:
            rec[i] = a
    return s.reshape(x.shape[:-2] + (k,)), rec.reshape(x.shape)


ROWS = [
    OpInfo("matinv", F.matinv, _np_matinv, _square_samples, rtol=1e-5, atol=1e-5,
           errors=[(lambda: F.matinv(ty.tensor(np.ones((2, 3), np.float32))), ValueError,
                    "matinv: expects square matrices (..., n, n), got (2, 3)"),
                   (lambda: F.matinv(ty.tensor(np.ones(3, np.float32))), ValueError,
                    "matinv: expects a (..., M, N) input of at least 2 dims"),
                   (lambda: F.matinv(ty.tensor(np.eye(2), dtype="int32")), TypeError,
                    "matinv: expects a float32 or float64 input, got int32")]),
    OpInfo("svd", _svd, _np_svd, _svd_samples, grad=False, rtol=1e-5, atol=1e-5,
           errors=[(lambda: F.svd(ty.tensor(np.ones(3, np.float32))), ValueError,
                    "svd: expects a (..., M, N) input of at least 2 dims"),
                   (lambda: F.svd(ty.tensor(np.eye(2), dtype="float16")), TypeError,
                    "svd: expects a float32 or float64 input, got float16")]),
]
