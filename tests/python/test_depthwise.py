"""The direct depthwise convolution kernels (groups == input channels) against the float64
references of op_db_matmul: forward, backward-data, backward-filter on edge geometries (row
tails, odd widths, stride/padding/dilation corners, channel multipliers, batch 1, empty),
1 vs 2 threads bit for bit, float64 gradient check. tests/c/test_depthwise.c covers each ISA."""
import numpy as np
import pytest

import tianyuan as ty
from tianyuan import _C
import ops.op_db  # noqa: F401  (loads the family modules in order)
from ops.op_db_matmul import (_c_params, _conv_bwd_data_ref, _conv_bwd_filter_ref,
                              _conv_ref)

OPS = _C.ops

# (N, C, H, W, M, KH, KW, stride, padding, dilation)
CASES = [
    (1, 3, 7, 9, 1, 3, 3, 1, 1, 1),
    (2, 4, 17, 33, 1, 3, 3, 1, 1, 1),      # a row of 33: two vectors and a tail
    (1, 5, 70, 67, 1, 3, 3, 1, 1, 1),      # 64-wide blocks and a tail
    (1, 3, 16, 16, 1, 3, 3, 2, 1, 1),
    (2, 2, 15, 21, 1, 3, 3, 2, 1, 1),      # stride 2, odd sizes
    (1, 4, 12, 13, 1, 5, 5, 1, 2, 1),
    (1, 3, 13, 18, 1, 5, 5, 2, 2, 1),
    (1, 2, 9, 11, 3, 3, 3, 1, 1, 1),       # channel multiplier 3
    (2, 3, 10, 8, 2, 5, 5, 2, 2, 1),
    (1, 2, 11, 12, 1, 3, 3, 1, 2, 2),      # dilation 2
    (1, 2, 10, 10, 1, 3, 2, (1, 3), (0, 4), (2, 1)),  # mixed pairs, padding wider than the kernel
    (1, 2, 3, 4, 1, 1, 1, 1, 0, 1),        # 1x1
    (1, 1, 1, 1, 1, 3, 3, 1, 1, 1),        # one pixel
    (1, 2, 6, 7, 1, 4, 3, 3, 0, 1),        # even kernel, stride 3
    (0, 3, 5, 5, 1, 3, 3, 1, 1, 1),        # empty batch
    (2, 20, 7, 7, 1, 3, 3, 1, 1, 1),       # 16 small planes at a time (AVX-512) and leftovers
    (1, 33, 14, 14, 1, 3, 3, 2, 1, 1),
    (1, 3, 37, 56, 1, 3, 3, 1, 1, 1),      # stride 1, wide rows: read straight from the input
    (2, 2, 9, 70, 2, 3, 3, 1, 2, 2),
    (1, 3, 56, 56, 1, 3, 3, 2, 1, 1),      # stride 2 straight from the input
    (1, 2, 29, 28, 1, 3, 3, 1, 1, 1),      # rows of 28: 8 rows x 32 columns a step
]


def _tensors(case, rng, dtype="float32"):
    n, c, h, w, m, kh, kw, stride, pad, dil = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((c * m, 1, kh, kw)).astype(dtype)
    kw_ = dict(stride=stride, padding=pad, dilation=dil, groups=c)
    return x, wt, kw_


@pytest.mark.parametrize("case", CASES)
def test_forward_and_backward_match_reference(case):
    rng = np.random.default_rng(sum(map(hash, map(str, case))) % 2**32)
    x, w, kw = _tensors(case, rng)
    p = _c_params(**kw)
    y = OPS["conv2d"](ty.tensor(x), ty.tensor(w), **p).numpy()
    ref = _conv_ref(x.astype(np.float64), w.astype(np.float64), **kw)
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)

    dy = rng.standard_normal(ref.shape).astype("float32")
    dx = OPS["conv2d_backward_data"](ty.tensor(w), ty.tensor(dy), ty.tensor(x), **p).numpy()
    np.testing.assert_allclose(dx, _conv_bwd_data_ref(w.astype(np.float64), dy, x.shape, **kw),
                               rtol=1e-5, atol=1e-5)
    dw = OPS["conv2d_backward_filter"](ty.tensor(x), ty.tensor(dy), ty.tensor(w), **p).numpy()
    np.testing.assert_allclose(dw, _conv_bwd_filter_ref(x.astype(np.float64), dy, w.shape, **kw),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", [CASES[1], CASES[4], CASES[8]])
def test_float64_matches_reference_tightly(case):
    rng = np.random.default_rng(7)
    x, w, kw = _tensors(case, rng, "float64")
    p = _c_params(**kw)
    T = lambda v: ty.tensor(v, dtype="float64")  # noqa: E731
    y = OPS["conv2d"](T(x), T(w), **p).numpy()
    ref = _conv_ref(x, w, **kw)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(ref.shape)
    dx = OPS["conv2d_backward_data"](T(w), T(dy), T(x), **p).numpy()
    np.testing.assert_allclose(dx, _conv_bwd_data_ref(w, dy, x.shape, **kw), rtol=1e-12,
                               atol=1e-12)
    dw = OPS["conv2d_backward_filter"](T(x), T(dy), T(w), **p).numpy()
    np.testing.assert_allclose(dw, _conv_bwd_filter_ref(x, dy, w.shape, **kw), rtol=1e-11,
                               atol=1e-11)


def _run_all(x, w, dy, p):
    return [OPS["conv2d"](x, w, **p).numpy(),
            OPS["conv2d_backward_data"](w, dy, x, **p).numpy(),
            OPS["conv2d_backward_filter"](x, dy, w, **p).numpy()]


@pytest.mark.parametrize("case", [(3, 24, 19, 23, 1, 3, 3, 1, 1, 1), (2, 16, 20, 20, 2, 5, 5, 2, 2, 1),
                                  (3, 24, 7, 7, 1, 3, 3, 1, 1, 1), (2, 20, 14, 14, 1, 3, 3, 2, 1, 1),
                                  (1, 6, 30, 56, 1, 3, 3, 1, 1, 1), (1, 4, 40, 90, 1, 3, 3, 2, 1, 1),
                                  (1, 5, 28, 28, 1, 3, 3, 1, 1, 1)])
def test_thread_count_never_changes_bits(case):
    rng = np.random.default_rng(3)
    x, w, kw = _tensors(case, rng)
    p = _c_params(**kw)
    y = _conv_ref(x, w, **kw)
    x, w = ty.tensor(x), ty.tensor(w)
    dy = ty.tensor(rng.standard_normal(y.shape).astype("float32"))
    old = ty.get_num_threads()
    try:
        ty.set_num_threads(1)
        one = _run_all(x, w, dy, p)
        ty.set_num_threads(2)
        two = _run_all(x, w, dy, p)
    finally:
        ty.set_num_threads(old)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


def test_gradients_flow_through_depthwise_conv2d():
    """F.conv2d(groups=C) differentiated by the tape vs central differences, float64."""
    import tianyuan.functional as F

    rng = np.random.default_rng(11)
    x0 = rng.standard_normal((2, 3, 6, 7))
    w0 = rng.standard_normal((6, 1, 3, 3))
    g = rng.standard_normal((2, 6, 3, 4))

    def loss(xv, wv):
        return float((_conv_ref(xv, wv, 2, 1, 1, 3) * g).sum())

    x, w = ty.tensor(x0, dtype="float64"), ty.tensor(w0, dtype="float64")
    gm = ty.autodiff.GradManager().attach([x, w])
    with gm:
        y = F.conv2d(x, w, stride=2, padding=1, groups=3)
        gm.backward((y * ty.tensor(g, dtype="float64")).sum())
    for t, v0, idx in ((x, x0, (1, 2, 3, 4)), (w, w0, (4, 0, 1, 2))):
        e = np.zeros_like(v0)
        e[idx] = 1e-6
        args = (lambda d: (x0 + d, w0)) if t is x else (lambda d: (x0, w0 + d))
        num = (loss(*args(e)) - loss(*args(-e))) / 2e-6
        assert abs(t.grad.numpy()[idx] - num) < 1e-6
