"""F.svd's gradient: float64 central differences through the decomposition (signs of the
singular vectors fixed), the singular values' gradient where vectors are degenerate, the
errors where the vectors' gradient is undefined, and eager == traced."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace


def _t64(a):
    return ty.tensor(a, dtype="float64")


def _loss(a, w, sign=None):
    """sum(w_u U) + sum(w_s S) + sum(w_v Vh) with each singular pair's sign fixed by the
    first row of U (the gradient of a sign-invariant function of the factors)."""
    u, s, vh = (t.numpy() for t in F.svd(_t64(a)))
    if sign is None:
        sign = np.sign(u[..., :1, :])
    wu, ws, wv = w
    return (u * sign * wu).sum() + (s * ws).sum() + (vh * np.swapaxes(sign, -1, -2) * wv).sum(), sign


@pytest.mark.parametrize("shape", [(4, 3), (3, 5), (4, 4), (2, 3, 3)])
def test_svd_gradient_matches_central_differences(shape):
    rng = np.random.default_rng(sum(shape))
    a = rng.normal(size=shape)
    k = min(shape[-2:])
    w = (rng.normal(size=shape[:-1] + (k,)), rng.normal(size=shape[:-2] + (k,)),
         rng.normal(size=shape[:-2] + (k, shape[-1])))
    _, sign = _loss(a, w)
    x = ty.Parameter(a, dtype="float64")
    gm = ty.autodiff.GradManager().attach(x)
    with gm:
        u, s, vh = F.svd(x)
        gm.backward((u * _t64(w[0] * sign)).sum() + (s * _t64(w[1])).sum()
                    + (vh * _t64(w[2] * np.swapaxes(sign, -1, -2))).sum())
    eps = 1e-6
    num = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        hi, lo = a.copy(), a.copy()
        hi[i] += eps
        lo[i] -= eps
        num[i] = (_loss(hi, w, sign)[0] - _loss(lo, w, sign)[0]) / (2 * eps)
    assert x.grad.dtype == np.float64
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-6, atol=1e-7)


def test_singular_values_gradient_is_defined_for_repeated_values():
    x = ty.Parameter(np.eye(3) * 2.0, dtype="float64")
    gm = ty.autodiff.GradManager().attach(x)
    with gm:
        gm.backward(F.svd(x, compute_uv=False).sum())  # d(sum s) = U Vh = I here
    np.testing.assert_allclose(x.grad.numpy(), np.eye(3), atol=1e-12)


def test_vector_gradient_raises_where_undefined():
    x = ty.Parameter(np.diag([3.0, 3.0, 1.0]), dtype="float64")
    gm = ty.autodiff.GradManager().attach(x)
    with pytest.raises(ValueError, match="svd: the gradient of the singular vectors is "
                                         "undefined for repeated singular values"):
        with gm:
            u, s, vh = F.svd(x)
            gm.backward((u ** 3).sum())
    y = ty.Parameter(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), dtype="float64")
    gm = ty.autodiff.GradManager().attach(y)
    with pytest.raises(ValueError, match="svd: .*non-square input is undefined when a "
                                         "singular value is 0"):
        with gm:
            u, s, vh = F.svd(y)
            gm.backward((u ** 3).sum())
    z = ty.Parameter(np.random.default_rng(0).normal(size=(3, 2)), dtype="float64")
    gm = ty.autodiff.GradManager().attach(z)
    with pytest.raises(ValueError, match="thin decomposition only"):
        with gm:
            u, s, vh = F.svd(z, full_matrices=True)
            gm.backward((u ** 3).sum())


def test_svd_gradient_traced_equals_eager():
    a = np.random.default_rng(3).normal(size=(4, 3)).astype(np.float32)
    x = ty.Parameter(a)
    gm = ty.autodiff.GradManager().attach(x)

    def step():
        with gm:
            u, s, vh = F.svd(x)
            gm.backward(s.sum() + (vh ** 3).sum() + (u[:, 0] ** 3).sum())
        g = x.grad
        x.grad = None
        return g

    eager = step().numpy()
    for symbolic in (False, True):
        traced = trace(symbolic=symbolic)(step)
        for _ in range(2):
            np.testing.assert_array_equal(traced().numpy(), eager)
