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


# ---- bitwise: the 2x2 kernels (and the op's unzeroed backward) against the generic path ----
import pytest  # noqa: E402

from tianyuan import _C  # noqa: E402

_P22 = dict(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2, pad_h=0, pad_w=0, mode=0)
_BITS = {"float32": np.uint32, "float64": np.uint64, "float16": np.uint16}


def _tricky(rng, shape, dtype):
    """Integer values (ties), signed zeros, infinities, NaNs with distinct payloads."""
    x = rng.integers(-2, 3, size=shape).astype(dtype)
    r = rng.random(shape)
    x[r < 0.06] = -0.0
    x[(r >= 0.06) & (r < 0.09)] = np.inf
    x[(r >= 0.09) & (r < 0.11)] = -np.inf
    nan = (r >= 0.11) & (r < 0.15)
    bits = x.view(_BITS[dtype])
    quiet = {"float32": 0x7FC00000, "float64": 0x7FF8000000000000, "float16": 0x7E00}[dtype]
    payload = rng.integers(1, 64, size=int(nan.sum())).astype(_BITS[dtype])
    bits[nan] = _BITS[dtype](quiet) | payload
    return x


def _generic(x, dy):
    """y and dx by adaptive max pooling of the covered block: same 2x2 windows, generic code."""
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    xc = ty.tensor(np.ascontiguousarray(x[:, :, :2 * oh, :2 * ow]), dtype=x.dtype)
    tdy = ty.tensor(dy, dtype=dy.dtype)
    y = _C.ops["adaptive_max_pool2d"](xc, out_h=oh, out_w=ow).numpy()
    dxc = _C.ops["adaptive_pool2d_grad"](xc, tdy, out_h=oh, out_w=ow, mode=0).numpy()
    dx = np.zeros_like(x)
    dx[:, :, :2 * oh, :2 * ow] = dxc
    return y, dx


def _same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a.view(_BITS[str(a.dtype)]), b.view(_BITS[str(b.dtype)]))


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("shape", [(2, 3, 2, 2), (1, 2, 5, 5), (3, 2, 4, 31), (2, 2, 7, 32),
                                   (2, 3, 6, 33), (2, 1, 9, 14), (2, 2, 3, 65), (4, 3, 28, 28),
                                   (3, 5, 14, 14), (2, 2, 29, 29)])
def test_2x2_matches_generic_bitwise(shape, dtype):
    rng = np.random.default_rng(abs(hash((shape, dtype))) % 2**32)
    x = _tricky(rng, shape, dtype)
    dy = _tricky(rng, shape[:2] + (shape[2] // 2, shape[3] // 2), dtype)
    want_y, want_dx = _generic(x, dy)
    tx, tdy = ty.tensor(x, dtype=dtype), ty.tensor(dy, dtype=dtype)
    _same_bits(_C.ops["max_pool2d"](tx, **_P22).numpy(), want_y)
    _same_bits(F.max_pool2d(tx, 2).numpy(), want_y)
    _same_bits(_C.ops["max_pool2d_grad"](tx, tdy, **_P22).numpy(), want_dx)


def test_2x2_backward_through_autodiff_matches_generic():
    rng = np.random.default_rng(5)
    x = _tricky(rng, (3, 4, 10, 13), "float32")
    dy = rng.integers(-3, 4, size=(3, 4, 5, 6)).astype("float32")
    p = ty.Parameter(x)
    gm = GradManager().attach([p])
    with gm:
        y = F.max_pool2d(p, 2)
        gm.backward(y, ty.tensor(dy))
    want_y, want_dx = _generic(x, dy)
    _same_bits(y.numpy(), want_y)
    _same_bits(p.grad.numpy(), want_dx)
