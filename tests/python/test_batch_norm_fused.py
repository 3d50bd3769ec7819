"""The fused training batch normalisation (op batch_norm_train, what F.nn.batch_norm runs
with training=True for float32 and float64): values and gradients against a float64 NumPy
reference on shapes whose channels the kernel splits over threads (odd sizes, 2-d and 5-d
inputs, no affine parameters), bitwise the same at 1, 2 and 3 threads, and the running
statistics updated as before."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.autodiff import GradManager


def _ref(x, w, b, eps):
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    xhat = (x - m) / np.sqrt(v + eps)
    y = xhat * w.reshape(shape) + b.reshape(shape)
    return y, xhat, m, v


def _ref_grads(x, w, g, eps):
    """dx, dw, db of sum(y * g) by the closed form."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = [1, x.shape[1]] + [1] * (x.ndim - 2)
    _, xhat, _, v = _ref(x, w, np.zeros_like(w), eps)
    cnt = x.size / x.shape[1]
    db = g.sum(axis=axes)
    dw = (g * xhat).sum(axis=axes)
    dx = (w.reshape(shape) / np.sqrt(v + eps)) * (
        g - db.reshape(shape) / cnt - xhat * dw.reshape(shape) / cnt)
    return dx, dw, db


# the kernel takes channels in chunks of about 2^14 values: the first two split over threads
SHAPES = [(8, 300, 4, 4), (2, 40, 33, 31), (5, 37, 9, 7), (3, 16, 1, 1), (64, 10),
          (2, 6, 3, 4, 5), (1, 3, 2, 2)]


def _run(x, w, b, g, threads, affine=True):
    saved = ty.get_num_threads()
    ty.set_num_threads(threads)
    try:
        xt = ty.Parameter(x, dtype=x.dtype)
        wt, bt = ty.Parameter(w, dtype=w.dtype), ty.Parameter(b, dtype=b.dtype)
        gm = GradManager().attach([xt, wt, bt] if affine else [xt])
        with gm:
            y = F.nn.batch_norm(xt, None, None, wt if affine else None, bt if affine else None,
                                training=True, eps=1e-3)
            gm.backward((y * ty.tensor(g, dtype=g.dtype)).sum())
        out = [y.numpy(), xt.grad.numpy()]
        return out + ([wt.grad.numpy(), bt.grad.numpy()] if affine else [])
    finally:
        ty.set_num_threads(saved)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_matches_float64_reference_and_keeps_bits_at_any_thread_count(shape, dtype):
    rng = np.random.default_rng(len(shape) + shape[1])
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)  # a mean far from 0
    w = rng.uniform(0.5, 2, shape[1]).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    got = [_run(x, w, b, g, n) for n in (1, 2, 3)]
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    want_y = _ref(x64, w64, b.astype(np.float64), 1e-3)[0]
    want = [want_y, *_ref_grads(x64, w64, g.astype(np.float64), 1e-3)]
    tol = 2e-4 if dtype == "float32" else 1e-10
    for a, e in zip(got[0], want):
        np.testing.assert_allclose(a, e, rtol=tol, atol=tol * (1 + np.abs(e).max()))
    for n in (1, 2):
        assert [a.tobytes() for a in got[n]] == [a.tobytes() for a in got[0]]


def test_without_affine_parameters():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    g = rng.standard_normal(x.shape).astype(np.float32)
    ones, zeros = np.ones(5, np.float32), np.zeros(5, np.float32)
    y, dx = _run(x, ones, zeros, g, 2, affine=False)
    y_aff, dx_aff, _, _ = _run(x, ones, zeros, g, 2)
    assert y.tobytes() == y_aff.tobytes() and dx.tobytes() == dx_aff.tobytes()


def test_module_updates_running_statistics_with_the_unbiased_variance():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 3, 4, 4)).astype(np.float32) * 2 + 1
    bn = M.BatchNorm2d(3, momentum=0.9)
    bn.train()
    bn(ty.tensor(x))
    m = x.mean(axis=(0, 2, 3))
    v = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.running_mean.numpy().reshape(-1), 0.9 * 0 + 0.1 * m, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy().reshape(-1), 0.9 * 1 + 0.1 * v, rtol=1e-5)
