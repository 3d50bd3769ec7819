"""The gradient of svd (thin, real): the standard formula (Townsend 2016), written with table
ops so it runs wherever svd does. With singular values s, U (m, k), V (n, k):

  dA = U [ (F o (U^T dU - dU^T U)) S + diag(ds) + S (F o (V^T dV - dV^T V)) ] V^T
       + (I - U U^T) dU S^-1 V^T + U S^-1 dV^T (I - V V^T),   F_ij = 1 / (s_j^2 - s_i^2)

The singular-vector terms are undefined when two singular values coincide (F blows up), and
the projection terms when a singular value is 0: the backward raises a ValueError naming svd
then, rather than return inf or nan (inside a symbolic trace, where values cannot be read,
the check is skipped and such a gradient is inf or nan). The singular values' own gradient
U diag(ds) V^T is always defined."""
import numpy as np

from ..autodiff.function import Function


def _mT(x):
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return x.transpose(perm)


def _check_defined(s, m, n, need_vectors):
    """Raises where the formula divides by zero: repeated singular values (any vector
    gradient), or a zero one where a projection term is needed (non-square input)."""
    if not need_vectors:
        return
    from ..jit import TraceError
    try:
        sv = np.asarray(s.numpy(), dtype=np.float64)
    except TraceError:  # values unreadable inside a symbolic trace: the check is skipped
        return
    k = sv.shape[-1]
    scale = max(float(np.abs(sv).max()) if sv.size else 0.0, np.finfo(np.float64).tiny)
    tol = np.finfo(np.dtype(s.dtype)).eps * scale * max(k, 1) * 16
    gaps = np.abs(sv[..., :, None] - sv[..., None, :]) + np.eye(k) * (2 * tol + 1)
    if k > 1 and (gaps <= tol).any():
        raise ValueError("svd: the gradient of the singular vectors is undefined for repeated "
                         "singular values (the input has two equal singular values)")
    if m != n and (np.abs(sv) <= tol).any():
        raise ValueError("svd: the gradient of the singular vectors of a non-square input is "
                         "undefined when a singular value is 0")


class SvdFunction(Function):
    """svd with its gradient: forward runs the svd op (thin unless full_matrices)."""

    def __init__(self, op, full_matrices):
        self._op, self._full = op, full_matrices

    def forward(self, a):
        self.u, self.s, self.vh = self._op(a, full_matrices=int(bool(self._full)))
        self.shape = tuple(a.shape)
        return self.u, self.s, self.vh

    def backward(self, du, ds, dvh):
        from .creation import eye
        from .elemwise import clip  # noqa: F401 (keeps the import order of functional)
        from .linalg import matmul
        u, s, vh = self.u, self.s, self.vh
        m, n = self.shape[-2], self.shape[-1]
        k = s.shape[-1]
        if self._full and (du is not None or dvh is not None):
            raise ValueError("svd: the gradient of U and Vh is defined for the thin "
                             "decomposition only: call svd with full_matrices=False")
        _check_defined(s, m, n, du is not None or dvh is not None)
        v = _mT(vh)
        inner = None
        if ds is not None:
            inner = ds.reshape(tuple(ds.shape) + (1,)) * eye(k, dtype=s.dtype)
        if du is not None or dvh is not None:
            s2 = s * s
            diff = s2.reshape(tuple(s.shape[:-1]) + (1, k)) - \
                s2.reshape(tuple(s.shape) + (1,)) + eye(k, dtype=s.dtype)
            f = (1 - eye(k, dtype=s.dtype)) / diff  # F_ij = 1 / (s_j^2 - s_i^2), 0 on diag
            srow = s.reshape(tuple(s.shape[:-1]) + (1, k))
            scol = s.reshape(tuple(s.shape) + (1,))
        extra = None
        if du is not None:
            utdu = matmul(_mT(u), du)
            t = f * (utdu - _mT(utdu)) * srow
            inner = t if inner is None else inner + t
            if m > k:  # (I - U U^T) dU S^-1 V^T
                proj = (du - matmul(u, utdu)) / srow
                extra = matmul(proj, vh)
        if dvh is not None:
            dv = _mT(dvh)
            vtdv = matmul(vh, dv)
            t = scol * (f * (vtdv - _mT(vtdv)))
            inner = t if inner is None else inner + t
            if n > k:  # U S^-1 dV^T (I - V V^T)
                proj = (dvh - matmul(matmul(dvh, v), vh)) / scol
                e = matmul(u, proj)
                extra = e if extra is None else extra + e
        da = None if inner is None else matmul(matmul(u, inner), vh)
        if extra is not None:
            da = extra if da is None else da + extra
        return da
