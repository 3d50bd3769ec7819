"""F.matinv and F.svd beyond their op_db rows: MegEngine's examples and shapes, orthonormal
factors, compute_uv, NaN for singular / non-finite matrices, gradient and trace."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F

from .helpers import eager_equals_traced, grad_check, t64


def test_matinv_megengine_example_and_singular():
    out = F.matinv(ty.tensor([[1.0, 0.0], [1.0, 1.0]])).numpy()
    np.testing.assert_array_equal(out, [[1.0, 0.0], [-1.0, 1.0]])
    sing = F.matinv(ty.tensor([[[1.0, 2.0], [2.0, 4.0]], [[2.0, 0.0], [0.0, 4.0]]])).numpy()
    assert np.isnan(sing[0]).all()
    np.testing.assert_array_equal(sing[1], [[0.5, 0.0], [0.0, 0.25]])


def test_matinv_noncontiguous_grad_trace(rng):
    a = rng.standard_normal((2, 3, 3)) + 3 * np.eye(3)
    at = t64(a.transpose(0, 2, 1).copy()).transpose(0, 2, 1)
    np.testing.assert_allclose(F.matinv(at).numpy(), np.linalg.inv(a), rtol=1e-12, atol=1e-12)
    grad_check(F.matinv, [a], rtol=1e-5)
    eager_equals_traced(F.matinv, [a.astype("float32")])


def test_svd_megengine_shapes_and_factors(rng):
    x = rng.standard_normal((9, 6))
    u, s, vh = F.svd(t64(x), full_matrices=False)
    assert (u.shape, s.shape, vh.shape) == ((9, 6), (6,), (6, 6))
    y = rng.standard_normal((2, 7, 8, 3))
    u2, s2, vh2 = F.svd(t64(y), full_matrices=False)
    assert (u2.shape, s2.shape, vh2.shape) == ((2, 7, 8, 3), (2, 7, 3), (2, 7, 3, 3))
    uf, sf, vhf = (t.numpy() for t in F.svd(t64(x), full_matrices=True))
    assert uf.shape == (9, 9) and vhf.shape == (6, 6)
    np.testing.assert_allclose(uf.T @ uf, np.eye(9), atol=1e-12)
    np.testing.assert_allclose(vhf @ vhf.T, np.eye(6), atol=1e-12)
    np.testing.assert_allclose(uf[:, :6] * sf @ vhf, x, atol=1e-12)
    np.testing.assert_allclose(sf, np.linalg.svd(x, compute_uv=False), rtol=1e-12)
    s_only = F.svd(t64(x), compute_uv=False)
    np.testing.assert_array_equal(s_only.numpy(), s.numpy())
    example = F.svd(ty.tensor(np.arange(6, dtype=np.float32).reshape(2, 3)))[1].numpy()
    np.testing.assert_allclose(example.round(3), [7.348, 1.0], atol=1e-3)


def test_svd_rank_deficient_and_nan(rng):
    x = np.outer(rng.standard_normal(5), rng.standard_normal(4))  # rank 1
    u, s, vh = (t.numpy() for t in F.svd(t64(x)))
    np.testing.assert_allclose(u.T @ u, np.eye(4), atol=1e-12)  # completed to an orthonormal set
    np.testing.assert_allclose(u * s @ vh, x, atol=1e-12)
    bad = x.copy()
    bad[1, 2] = np.inf
    assert all(np.isnan(t.numpy()).all() for t in F.svd(t64(bad)))
    eager_equals_traced(lambda a: F.svd(a)[1], [x.astype("float32")])
