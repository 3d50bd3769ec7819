"""The 2x2 stride-2 max-pool fast path keeps the generic rules: first maximum in row-major
window order wins (ties, and the gradient goes there), a NaN beats any number."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.autodiff import GradManager


def _ref(x):
    n, c, h, w = x.shape
    y = np.empty((n, c, h // 2, w // 2))
    dx = np.zeros_like(x)
    for i in np.ndindex(n, c, h // 2, w // 2):
        win = x[i[0], i[1], 2 * i[2]:2 * i[2] + 2, 2 * i[3]:2 * i[3] + 2].reshape(-1)
        nan = np.flatnonzero(np.isnan(win))
        k = nan[0] if nan.size else int(np.argmax(win))
        y[i] = win[k]
        dx[i[0], i[1], 2 * i[2] + k // 2, 2 * i[3] + k % 2] = 1.0
    return y, dx


def test_ties_nan_and_gradient_of_the_fast_path():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 3, size=(2, 3, 6, 7)).astype(np.float64)  # odd width: last column unused
    x[0, 0, 0, 1] = np.nan
    want_y, want_dx = _ref(x)
    p = ty.Parameter(x, dtype="float64")
    gm = GradManager().attach([p])
    with gm:
        y = F.max_pool2d(p, 2)
        gm.backward(y.sum())
    np.testing.assert_array_equal(y.numpy(), want_y)
    np.testing.assert_array_equal(p.grad.numpy(), want_dx)
