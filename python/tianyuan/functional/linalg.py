"""Matrix products (MegEngine's ``functional.math.matmul/dot`` and ``functional.nn.linear``)."""
from .. import _C
from ..tensor import Tensor
from .. import _amp_state as _amp

_ops = _C.ops
_matmul = _ops["matmul"]

__all__ = ["matmul", "dot", "linear", "matinv", "svd"]


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def matmul(inp1, inp2, transpose_a=False, transpose_b=False, compute_mode="default",
           format="default"):
    """Matrix product of the last two dims, numpy-style: batch dims broadcast, a 1-D first
    operand is a row vector and a 1-D second operand a column vector (the added dim is
    dropped from the result). transpose_a / transpose_b transpose the last two dims of a
    (>= 2-d) operand first.

    >>> import tianyuan as ty, tianyuan.functional as F
    >>> F.matmul(ty.tensor([[1., 2.], [3., 4.]]), ty.tensor([1., 1.])).numpy().tolist()
    [3.0, 7.0]
    """
    if (not transpose_a and not transpose_b and isinstance(inp1, Tensor) and
            isinstance(inp2, Tensor) and inp1.ndim >= 2 and inp2.ndim >= 2):
        return _matmul(inp1, inp2)  # the common case, without the argument handling below
    a, b = _as_tensor(inp1), _as_tensor(inp2)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must be at least 1-d, got shapes {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    va, vb = a.ndim == 1, b.ndim == 1
    if va:
        a = a.reshape((1, a.shape[0]))
        transpose_a = False
    if vb:
        b = b.reshape((b.shape[0], 1))
        transpose_b = False
    y = _ops["matmul"](a, b, transpose_a=int(bool(transpose_a)),
                       transpose_b=int(bool(transpose_b)))
    if va and vb:
        return y.reshape(y.shape[:-2])
    if va:
        return y.reshape(y.shape[:-2] + y.shape[-1:])
    if vb:
        return y.reshape(y.shape[:-1])
    return y


def dot(inp1, inp2):
    """Inner product of two 1-d tensors (a 0-d tensor); a 0-d operand broadcasts."""
    a, b = _as_tensor(inp1), _as_tensor(inp2)
    if a.ndim > 1 or b.ndim > 1:
        raise ValueError(f"dot: inputs must be 1-d or scalars, got shapes {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if a.ndim == 1 and b.ndim == 1:
        return matmul(a, b)
    return _ops["sum"](a * b, axes=[], keepdims=0)


def linear(inp, weight, bias=None, compute_mode="default"):
    """inp @ weight.T + bias, with weight of shape (out_features, in_features)."""
    y = matmul(inp, weight, transpose_b=True, compute_mode=compute_mode)
    if bias is not None:
        y = y + _amp.like(bias, y)  # under autocast the bias joins y's float16
    return y


def matinv(inp):
    """The inverse of each matrix of inp (..., n, n), float32 or float64, computed in double
    precision by Gauss-Jordan elimination with partial pivoting; differentiable. A singular
    matrix, or one with a non-finite entry, gives NaN everywhere (NumPy raises instead)."""
    return _ops["matinv"](_as_tensor(inp))


def svd(inp, full_matrices=False, compute_uv=True):
    """Singular value decomposition inp = U @ diag(S) @ Vh of each matrix of inp (..., M, N)
    (one-sided Jacobi in double precision): S (..., K) descending with K = min(M, N); U
    (..., M, K) and Vh (..., K, N), or square (M, M) and (N, N) with full_matrices. Returns
    (U, S, Vh), or S alone when compute_uv is False. Singular vectors are unique only up to
    sign (and rotation within repeated values). Differentiable (the thin decomposition's U
    and Vh, and S always); the singular vectors' gradient raises where it is undefined
    (repeated singular values)."""
    from ._svd_grad import SvdFunction
    u, s, vh = SvdFunction(_ops["svd"], full_matrices)(_as_tensor(inp))
    return (u, s, vh) if compute_uv else s


def _export_to_nn():
    """MegEngine also has F.nn.linear; nn.py is another module's file, so attach it here."""
    from . import nn
    nn.linear = linear


_export_to_nn()
