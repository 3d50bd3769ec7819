"""sliding_window(+transpose), conv3d, conv_transpose3d, local_conv2d, region_restricted_conv
and deformable_conv2d against loop references in float64 (np_refs.py), with finite-difference
gradients, eager == traced, and bad-input errors."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F

from . import np_refs as R
from .helpers import eager_equals_traced, grad_check, t64

GEOMS = [((3, 3), (1, 1), (1, 1), (1, 1)), ((2, 3), (0, 2), (2, 1), (1, 2)),
         ((1, 1), (0, 0), (3, 2), (1, 1))]


@pytest.mark.parametrize("k,p,s,d", GEOMS)
def test_sliding_window_and_transpose(k, p, s, d, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    y = F.sliding_window(t64(x), k, p, s, d).numpy()
    np.testing.assert_array_equal(y, R.sliding_window(x, k, p, s, d))
    z = F.sliding_window_transpose(t64(y), (7, 6), k, p, s, d).numpy()
    np.testing.assert_allclose(z, R.sliding_window_transpose(y, (7, 6), k, p, s, d), rtol=1e-12)


def test_sliding_window_empty_noncontig_grad_trace(rng):
    assert F.sliding_window(t64(np.zeros((0, 2, 4, 4))), 2).shape == (0, 2, 3, 3, 2, 2)
    x = rng.standard_normal((1, 2, 5, 4))
    xt = t64(x.transpose(0, 1, 3, 2).copy()).transpose(0, 1, 3, 2)  # a non-contiguous view
    np.testing.assert_array_equal(F.sliding_window(xt, 2, 1, 2).numpy(),
                                  R.sliding_window(x, (2, 2), (1, 1), (2, 2), (1, 1)))
    grad_check(lambda t: F.sliding_window(t, (2, 3), 1, (2, 1), (1, 1)), [x])
    y = rng.standard_normal((1, 2, 3, 3, 2, 2))
    grad_check(lambda t: F.sliding_window_transpose(t, (5, 4), 2, 1, 2), [y])
    eager_equals_traced(lambda t: F.sliding_window(t, 3, 1, 1, 2), [x.astype("float32")])
    eager_equals_traced(lambda t: F.sliding_window_transpose(t, (5, 4), 2, 1, 2),
                        [y.astype("float32")])


def test_sliding_window_errors():
    x = t64(np.zeros((1, 1, 3, 3)))
    with pytest.raises(ValueError, match=r"sliding_window: expects an \(N, C, H, W\) input"):
        F.sliding_window(t64(np.zeros((3, 3))), 2)
    with pytest.raises(ValueError, match=r"the window 4x4 \(dilation 1x1\) does not fit"):
        F.sliding_window(x, 4)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.sliding_window(x, 2, stride=0)
    with pytest.raises(ValueError, match="does not match a 4x4 output and the window"):
        F.sliding_window_transpose(t64(np.zeros((1, 1, 2, 2, 2, 2))), (4, 4), 2)
    with pytest.raises(TypeError, match="sliding_window_transpose: expects a float32 or"):
        F.sliding_window_transpose(ty.tensor(np.zeros((1, 1, 3, 3, 2, 2), "int32")), (4, 4), 2)


@pytest.mark.parametrize("s,p,d,g", [((1, 1, 1), (0, 0, 0), (1, 1, 1), 1),
                                     ((1, 2, 1), (1, 0, 1), (2, 1, 1), 2),
                                     ((2, 1, 2), (1, 1, 0), (1, 1, 2), 1)])
def test_conv3d_matches_reference(s, p, d, g, rng):
    x = rng.standard_normal((2, 4, 5, 6, 5))
    w = rng.standard_normal((6, 4 // g, 2, 3, 2))
    b = rng.standard_normal((1, 6, 1, 1, 1))
    got = F.conv3d(t64(x), t64(w), t64(b), s, p, d, g).numpy()
    np.testing.assert_allclose(got, R.conv3d(x, w, s, p, d, g) + b, rtol=1e-10, atol=1e-12)
    if g > 1:  # MegEngine's grouped weight layout gives the same result
        wg = w.reshape((g, 6 // g) + w.shape[1:])
        np.testing.assert_array_equal(F.conv3d(t64(x), t64(wg), t64(b), s, p, d, g).numpy(), got)


@pytest.mark.parametrize("s,p,op,d,g", [((1, 1, 1), (0, 0, 0), (0, 0, 0), (1, 1, 1), 1),
                                        ((2, 1, 2), (1, 0, 1), (1, 0, 1), (1, 2, 1), 2)])
def test_conv_transpose3d_matches_reference(s, p, op, d, g, rng):
    x = rng.standard_normal((2, 4, 3, 4, 3))
    w = rng.standard_normal((4, 3, 2, 3, 2))
    got = F.conv_transpose3d(t64(x), t64(w), None, s, p, op, d, g).numpy()
    np.testing.assert_allclose(got, R.conv_transpose3d(x, w, s, p, op, d, g), rtol=1e-10,
                               atol=1e-12)


def test_conv3d_grad_trace_errors(rng):
    x, w = rng.standard_normal((1, 2, 3, 4, 3)), rng.standard_normal((2, 2, 2, 2, 2))
    grad_check(lambda a, b: F.conv3d(a, b, None, 1, (1, 0, 1), 1), [x, w], rtol=1e-4)
    grad_check(lambda a, b: F.conv_transpose3d(a, b, None, 2, 1, 1), [x, w], rtol=1e-4)
    eager_equals_traced(lambda a, b: F.conv3d(a, b, None, 1, 1), [x.astype("float32"),
                                                                  w.astype("float32")])
    eager_equals_traced(lambda a, b: F.conv_transpose3d(a, b, stride=2),
                        [x.astype("float32"), w.astype("float32")])
    with pytest.raises(ValueError, match="conv3d: input must be 5-d"):
        F.conv3d(t64(np.zeros((1, 2, 3, 3))), t64(w))
    with pytest.raises(ValueError, match="expects 2 input channels, input has 3"):
        F.conv3d(t64(np.zeros((1, 3, 3, 3, 3))), t64(w))
    with pytest.raises(ValueError, match="kernel depth 2 .* does not fit"):
        F.conv3d(t64(np.zeros((1, 2, 1, 3, 3))), t64(w))
    with pytest.raises(ValueError, match="output_padding 2 must be smaller"):
        F.conv_transpose3d(t64(x), t64(w), None, 2, 0, (2, 0, 0))


def test_local_conv2d(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((2, 5, 6, 2, 2, 2, 3))
    got = F.local_conv2d(t64(x), t64(w), None, 1, (0, 1), 1).numpy()
    np.testing.assert_allclose(got, R.local_conv2d(x, w, (1, 1), (0, 1), (1, 1)), rtol=1e-10,
                               atol=1e-12)
    w1 = rng.standard_normal((3, 3, 4, 3, 3, 5))  # ungrouped (OH, OW, IC, KH, KW, OC)
    got = F.local_conv2d(t64(x), t64(w1), None, 2, 1, 1).numpy()
    np.testing.assert_allclose(got, R.local_conv2d(x, w1[None], (2, 2), (1, 1), (1, 1)),
                               rtol=1e-10, atol=1e-12)
    xs, ws = x[:1, :2, :3, :3], rng.standard_normal((2, 2, 2, 2, 2, 2))
    grad_check(lambda a, b: F.local_conv2d(a, b), [xs, ws])
    eager_equals_traced(lambda a, b: F.local_conv2d(a, b),
                        [xs.astype("float32"), ws.astype("float32")])
    with pytest.raises(ValueError, match="weight is for a 3x3 output, the input gives 4x3"):
        F.local_conv2d(t64(x), t64(w1))
    with pytest.raises(ValueError, match="weight must be"):
        F.local_conv2d(t64(x), t64(np.zeros((2, 2, 2))))


def test_region_restricted_conv(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((2, 3, 2, 3, 3))
    rin = rng.integers(0, 3, (2, 6, 5)).astype("int32")
    rout = rng.integers(0, 3, (2, 6, 5)).astype("int32")
    got = F.region_restricted_conv(t64(x), t64(w), ty.tensor(rin), ty.tensor(rout), None, 1, 1,
                                   1, 2).numpy()
    np.testing.assert_allclose(got, R.region_restricted_conv(x, w, rin, rout, (1, 1), (1, 1),
                                                             (1, 1)), rtol=1e-10, atol=1e-12)
    xs, ws = x[:1, :2, :3, :3], rng.standard_normal((2, 1, 1, 2, 2))
    ri, ro = rin[:1, :3, :3], rout[:1, :2, :2]
    grad_check(lambda a, b: F.region_restricted_conv(a, b, ty.tensor(ri), ty.tensor(ro),
                                                     groups=2), [xs, ws])
    eager_equals_traced(lambda a, b, c, e: F.region_restricted_conv(a, b, c, e, groups=2),
                        [xs.astype("float32"), ws.astype("float32"), ri, ro])
    with pytest.raises(TypeError, match="rin must be an integer map"):
        F.region_restricted_conv(t64(xs), t64(ws), t64(ri), ty.tensor(ro), groups=2)
    with pytest.raises(TypeError, match="one dtype"):
        F.region_restricted_conv(t64(xs), t64(ws), ty.tensor(ri), ty.tensor(ro.astype("uint8")),
                                 groups=2)
    with pytest.raises(ValueError, match=r"rout must be \(N, OH, OW\)"):
        F.region_restricted_conv(t64(xs), t64(ws), ty.tensor(ri), ty.tensor(ri), groups=2)


def test_deformable_conv2d(rng):
    x = rng.standard_normal((2, 4, 6, 5))
    w = rng.standard_normal((6, 2, 3, 3))
    off = rng.standard_normal((2, 2 * 2 * 9, 6, 5)) * 1.5
    m = rng.random((2, 2 * 9, 6, 5))
    got = F.deformable_conv2d(t64(x), t64(w), t64(off), t64(m), None, 1, 1, 1, 2).numpy()
    np.testing.assert_allclose(got, R.deformable_conv2d(x, w, off, m, (1, 1), (1, 1), (1, 1), 2),
                               rtol=1e-10, atol=1e-12)
    # zero offsets and a unit mask make it an ordinary convolution
    z = F.deformable_conv2d(t64(x), t64(w), t64(np.zeros_like(off)), t64(np.ones_like(m)),
                            None, 1, 1, 1, 2).numpy()
    np.testing.assert_allclose(z, F.conv2d(t64(x), t64(w), None, 1, 1, 1, 2).numpy(),
                               rtol=1e-10, atol=1e-12)


def test_deformable_conv2d_grad_trace_errors(rng):
    x, w = rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((2, 2, 2, 2))
    off = rng.uniform(0.1, 0.4, (1, 8, 2, 2)) * rng.choice([-1, 1], (1, 8, 2, 2))
    m = rng.random((1, 4, 2, 2))
    grad_check(F.deformable_conv2d, [x, w, off, m], rtol=1e-4)
    eager_equals_traced(F.deformable_conv2d, [a.astype("float32") for a in (x, w, off, m)])
    with pytest.raises(ValueError, match=r"offset must be \(N, 2\*DG\*4"):
        F.deformable_conv2d(t64(x), t64(w), t64(off[:, :6]), t64(m))
    with pytest.raises(ValueError, match="mask must be"):
        F.deformable_conv2d(t64(x), t64(w), t64(off), t64(m[:, :2]))


def test_sliding_window_random_geometries(rng):
    """Paddings wider than the window, dilations, strides and windows wider than the image,
    in every dtype size the copy path distinguishes."""
    for trial in range(40):
        h, w = rng.integers(1, 7, 2)
        k = tuple(rng.integers(1, 4, 2))
        p = tuple(rng.integers(0, 4, 2))
        s = tuple(rng.integers(1, 4, 2))
        d = tuple(rng.integers(1, 4, 2))
        if h + 2 * p[0] < d[0] * (k[0] - 1) + 1 or w + 2 * p[1] < d[1] * (k[1] - 1) + 1:
            continue  # the window does not fit (an error case, tested above)
        x = rng.standard_normal((1, 2, h, w))
        want = R.sliding_window(x, k, p, s, d)
        for dt in ("float64", "float32", "int16", "int8"):
            got = F.sliding_window(ty.tensor(x * 10, dtype=dt), k, p, s, d).numpy()
            np.testing.assert_array_equal(got, (want * 10).astype(dt), err_msg=f"{trial} {dt}")
