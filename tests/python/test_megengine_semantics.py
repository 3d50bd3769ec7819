"""Behaviour MegEngine defines in its own source (data/transform/vision/transform.py and
functional.py, module/vision.py, functional/vision.py), checked against values derived by
hand or by a separate NumPy formulation: see docs/megengine_compat.md."""
import numpy as np
import pytest

import tianyuan.data.transform as T

NEAREST, CUBIC, AREA, LANCZOS4 = 0, 2, 3, 4  # cv2's codes, which MegEngine's transforms take


class _FixedRng:
    """A stand-in for the transforms' generator that returns chosen draws and records calls."""

    def __init__(self, uniform=0.0, normal=None, integers=()):
        self.calls = []
        self._uniform, self._normal, self._integers = uniform, normal, list(integers)

    def uniform(self, lo=0.0, hi=1.0, size=None):
        self.calls.append(("uniform", lo, hi))
        return self._uniform

    def normal(self, loc=0.0, scale=1.0, size=None):
        self.calls.append(("normal", loc, scale))
        return np.broadcast_to(np.asarray(self._normal, dtype=np.float64), size).copy()

    def integers(self, lo, hi=None):
        self.calls.append(("integers", lo, hi))
        return self._integers.pop(0)

    def permutation(self, n):
        return np.arange(n)


@pytest.fixture
def fixed_rng():
    def install(**kw):
        rng = _FixedRng(**kw)
        T._set_rng(rng)
        return rng
    yield install
    T._set_rng(np.random.default_rng())


# ---- photometric transforms (transform.py) ----
def test_gaussian_noise_is_scaled_by_255_clipped_and_truncated(fixed_rng):
    fixed_rng(normal=0.1)  # noise = 0.1 * 255 = 25.5 everywhere
    img = np.array([[[100], [250], [0]]], np.uint8)
    out = T.GaussianNoise(0.1, 0.0).apply(img)
    assert out.dtype == np.uint8
    assert out.ravel().tolist() == [125, 255, 25]  # 125.5 truncates, 275.5 clips
    f = T.GaussianNoise(0.1, 0.0).apply(img.astype(np.float32))
    assert f.dtype == np.float32 and f.ravel().tolist() == [125.5, 255.0, 25.5]


def test_brightness_clips_floats_and_truncates_integers(fixed_rng):
    fixed_rng(uniform=1.5)
    img = np.array([[[3], [101], [200]]], np.uint8)
    assert T.Brightness(0.5).apply(img).ravel().tolist() == [4, 151, 255]  # 4.5, 151.5, 300
    f = T.Brightness(0.5).apply(img.astype(np.float32))
    assert f.ravel().tolist() == [4.5, 151.5, 255.0]  # floats are clipped to 255 too
    rng = fixed_rng(uniform=1.5)
    assert T.Brightness(0).apply(img) is img and rng.calls == []  # value 0 draws nothing


def test_contrast_and_saturation_blend_with_opencv_grey(fixed_rng):
    fixed_rng(uniform=0.5)
    img = np.array([[[10, 20, 30], [50, 60, 70]]], np.uint8)  # BGR
    grey = img.astype(np.float64) @ np.array([0.114, 0.587, 0.299])  # cv2's BGR2GRAY weights
    want = np.clip(img * 0.5 + grey.mean() * 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(T.Contrast(0.5).apply(img), want)
    want = np.clip(img * 0.5 + grey[..., None] * 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(T.Saturation(0.5).apply(img), want)


def test_lighting_uses_unit_eigenvalues_in_bgr_order(fixed_rng):
    fixed_rng(normal=[1.0, 2.0, 3.0])
    img = np.full((1, 1, 3), 100.0, np.float32)
    out = T.Lighting(0.1).apply(img)
    # MegEngine: eigvec (rows B, G, R) . (alpha * eigval), eigval not scaled by 255
    shift_b = -0.5836 * 0.2175 + -0.6948 * 2 * 0.0188 + 0.4203 * 3 * 0.0045
    shift_r = -0.5675 * 0.2175 + 0.7192 * 2 * 0.0188 + 0.4009 * 3 * 0.0045
    np.testing.assert_allclose(out[0, 0, [0, 2]], [100 + shift_b, 100 + shift_r], rtol=1e-6)
    u8 = T.Lighting(0.1).apply(np.full((1, 1, 3), 100, np.uint8))
    assert u8[0, 0, 0] == 99  # 100 - 0.15 truncates to 99
    with pytest.raises(ValueError, match="non-negative"):
        T.Lighting(-1)


def test_hue_rotates_opencv_8bit_hsv(fixed_rng):
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 2] = 200  # BGR (0, 0, 200): H 0, S 255, V 200
    fixed_rng(uniform=64.5 / 255)  # int(alpha * 255) = 64: a quarter turn of 256
    # back to BGR, OpenCV scales H by 6 / 255: 64 -> 1.5059, sector 1: B = 0, G = V,
    # R = V (1 - 0.5059) = 98.8
    assert T.Hue(0.5).apply(red).ravel().tolist() == [0, 200, 99]
    fixed_rng(uniform=-64.5 / 255)  # int() truncates to -64: H wraps to 192
    # 192 -> 4.5176, sector 4: B = V, G = 0, R = V * 0.5176 = 103.5
    assert T.Hue(0.5).apply(red).ravel().tolist() == [200, 0, 104]
    f = T.Hue(0.5).apply(red.astype(np.float32))
    assert f.dtype == np.float32 and f.ravel().tolist() == [200.0, 0.0, 104.0]


def test_normalize_keeps_numpy_promotion():
    img = np.full((2, 2, 1), 3.0)
    out = T.Normalize(1.0, 2.0).apply(img)
    assert out.dtype == np.float64 and out.ravel().tolist() == [1.0] * 4
    assert T.Normalize(1.0, 2.0).apply(img.astype(np.uint8)).dtype == np.float32


def test_color_jitter_draws_only_for_nonzero_parts(fixed_rng):
    rng = fixed_rng(uniform=1.0)
    img = np.full((2, 2, 3), 50, np.uint8)
    T.ColorJitter(brightness=0.3).apply(img)
    assert [c[0] for c in rng.calls] == ["uniform"]


# ---- geometric transforms ----
def test_random_crop_draws_x_then_y_and_pads_masks_like_megengine(fixed_rng):
    rng = fixed_rng(integers=[0, 0])
    img = np.ones((2, 3, 1), np.uint8)
    mask = np.ones((2, 3, 1), np.uint8)
    t = T.RandomCrop((5, 6), padding_size=1, padding_value=9, padding_maskvalue=7,
                     order=("image", "mask"))
    out_img, out_mask = t.apply((img, mask))
    # padded image is 4x5, smaller than 5x6: both bounds are 1; x (over the width) comes first
    assert [c[1:] for c in rng.calls] == [(0, 1), (0, 1)]
    assert out_img.shape == (5, 6, 1) and out_mask.shape == (5, 6, 1)
    # the padding_size ring of a mask gets Pad's value 0; only the extra rows/columns 7
    assert out_mask[0, :5, 0].tolist() == [0] * 5 and out_mask[4, :, 0].tolist() == [7] * 6
    assert out_mask[:4, 5, 0].tolist() == [7] * 4 and out_mask[1, 1:4, 0].tolist() == [1] * 3
    assert out_img[0, 0, 0] == 9 and out_img[4, 5, 0] == 9


def _keys(x, a=-0.75):
    x = abs(x)
    if x <= 1:
        return (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    if x < 2:
        return a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
    return 0.0


def test_resize_cubic_area_nearest_follow_opencv():
    col = np.array([0.0, 10.0, 40.0, 20.0], np.float32).reshape(4, 1, 1)
    out = T.Resize((8, 1), interpolation=CUBIC).apply(col).ravel()
    want = []
    for d in range(8):
        src = (d + 0.5) * 0.5 - 0.5
        base = int(np.floor(src))
        want.append(sum(_keys(src - k) * col[min(max(k, 0), 3), 0, 0]
                        for k in range(base - 1, base + 3)))
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    # INTER_AREA shrinking 3 -> 2: each output covers 1.5 input cells
    row = np.array([3.0, 6.0, 12.0], np.float32).reshape(1, 3, 1)
    area = T.Resize((1, 2), interpolation=AREA).apply(row).ravel()
    np.testing.assert_allclose(area, [(3 + 0.5 * 6) / 1.5, (0.5 * 6 + 12) / 1.5], rtol=1e-6)
    # INTER_NEAREST picks floor(d * in / out)
    seq = np.arange(5, dtype=np.float32).reshape(1, 5, 1)
    near = T.Resize((1, 3), interpolation=NEAREST).apply(seq).ravel()
    assert near.tolist() == [0.0, 1.0, 3.0]
    # lanczos4 keeps a constant image constant, and a sequence of methods picks one
    flat = np.full((3, 3, 1), 7.0, np.float32)
    np.testing.assert_allclose(T.Resize((5, 4), interpolation=LANCZOS4).apply(flat), 7.0,
                               rtol=1e-6)
    picked = T.Resize((1, 3), interpolation=[NEAREST]).apply(seq).ravel()
    assert picked.tolist() == [0.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="interpolation"):
        T.Resize((2, 2), interpolation=9).apply(flat)


# ---- functional.vision (functional/vision.py, MegDNN kernels) ----
import tianyuan as ty  # noqa: E402
import tianyuan.functional as F  # noqa: E402


def test_vision_docstring_examples():
    # the outputs MegEngine's own docstrings print
    np.random.seed(42)
    inp = ty.tensor(np.random.randn(1, 1, 128, 128))
    rois = ty.tensor(np.random.random((4, 5)))
    np.testing.assert_allclose(F.vision.roi_pooling(inp, rois, (2, 2)).numpy()[0].round(4),
                               [[[-0.1383, -0.1383], [-0.5035, -0.5035]]])
    np.testing.assert_allclose(F.vision.roi_align(inp, rois, (2, 2)).numpy()[0].round(4),
                               [[[0.175, 0.175], [0.1359, 0.1359]]])
    x = np.zeros((100, 4))
    np.random.seed(42)
    x[:, :2] = np.random.rand(100, 2) * 20
    x[:, 2:] = np.random.rand(100, 2) * 20 + 100
    scores = ty.tensor(np.random.rand(100))
    assert F.vision.nms(ty.tensor(x), scores, iou_thresh=0.7).numpy().tolist() == [75, 69]
    x = ty.tensor(np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2))
    want = [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]]
    np.testing.assert_allclose(F.vision.interpolate(x, [4, 4], align_corners=False).numpy()[0, 0],
                               want)
    np.testing.assert_allclose(F.vision.interpolate(x, scale_factor=2.0).numpy()[0, 0], want)
    g = F.vision.cvt_color(ty.tensor(np.array([[[[-0.58675045, 1.7526233, 0.10702174]]]],
                                              np.float32)), mode="RGB2GRAY")
    np.testing.assert_allclose(g.numpy(), [[[[0.86555195]]]], rtol=1e-6)
    img = ty.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    m = ty.tensor(np.array([[[1.0, 0, 1], [0, 1, 1], [0, 0, 1]]], np.float32))
    assert F.vision.warp_perspective(img, m, (2, 2)).numpy().ravel().tolist() == [5, 6, 9, 10]
    mxy = ty.tensor(np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]],
                             np.float32).reshape(1, 2, 2, 2))
    assert F.vision.remap(img, mxy).numpy().ravel().tolist() == [1, 4, 4, 4]


def test_nms_keeps_a_box_at_exactly_the_threshold():
    # MegEngine suppresses when inter > union * thresh: IoU 2 / 4 at thresh 0.5 keeps both
    boxes = ty.tensor(np.array([[0, 0, 3, 1], [1, 0, 4, 1]], np.float32))
    scores = ty.tensor(np.array([0.9, 0.8], np.float32))
    assert F.vision.nms(boxes, scores, 0.5).numpy().tolist() == [0, 1]
    assert F.vision.nms(boxes, scores, 0.49).numpy().tolist() == [0]


def test_interpolate_size_arguments_follow_megengine():
    x = ty.tensor(np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4))
    assert F.vision.interpolate(x, 5).shape == (1, 1, 5, 1)  # an int size is (size, 1)
    assert F.vision.interpolate(x, (5, 2)).shape == (1, 1, 5, 2)
    line = ty.tensor(np.zeros((1, 1, 50), np.float32))
    # 50 * 0.58 is 28.999999999999996 in float64 but 29 in float32, which MegEngine floors
    assert F.vision.interpolate(line, scale_factor=0.58, mode="linear").shape == (1, 1, 29)
    # nearest: int(d / (out / in)) in float32 (6 -> 8: rows 0 0 1 2 3 3 4 5)
    col = ty.tensor(np.arange(6, dtype=np.float32).reshape(1, 1, 6, 1))
    near = F.vision.interpolate(col, (8, 1), mode="nearest").numpy().ravel()
    assert near.tolist() == [0, 0, 1, 2, 3, 3, 4, 5]


def test_resize_and_rotate_accept_megengines_positional_order():
    x = ty.tensor(np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1))
    a = F.vision.resize(x, (2, 2), "NHWC", "nearest").numpy()  # resize(inp, size, format, imode)
    b = F.vision.resize(x, (2, 2), interp_mode="nearest", format="NHWC").numpy()
    np.testing.assert_array_equal(a, b)
    assert a.ravel().tolist() == [0, 2, 8, 10]
    r = F.vision.rotate(x, 90.0, "NHWC", "nearest").numpy()  # rotate(inp, angle, format, imode)
    np.testing.assert_array_equal(r, F.vision.rotate(x, 90.0, format="NHWC",
                                                     interp_mode="nearest").numpy())


def _fix14(v):
    return (v + (1 << 13)) >> 14


def test_cvt_color_uint8_fixed_point_and_yuv_layouts():
    px = np.array([[[[10, 200, 30]]]], np.uint8)
    r, g, b = 10, 200, 30
    assert F.vision.cvt_color(ty.tensor(px), "RGB2GRAY").numpy().item() == \
        _fix14(r * 4899 + g * 9617 + b * 1868)
    assert F.vision.cvt_color(ty.tensor(px), "BGR2GRAY").numpy().item() == \
        _fix14(b * 4899 + g * 9617 + r * 1868)
    y = _fix14(10 * 1868 + 200 * 9617 + 30 * 4899)  # channel 0 weighs 0.114
    want = [y, _fix14((10 - y) * 8061 + (128 << 14)), _fix14((30 - y) * 14369 + (128 << 14))]
    assert F.vision.cvt_color(ty.tensor(px), "RGB2YUV").numpy().ravel().tolist() == want
    yuv = np.array([[[[100, 150, 90]]]], np.uint8)
    back = [100 + _fix14(22 * 33292), 100 + _fix14(-38 * -9519 + 22 * -6472),
            100 + _fix14(-38 * 18678)]
    assert F.vision.cvt_color(ty.tensor(yuv), "YUV2RGB").numpy().ravel().tolist() == \
        [min(max(v, 0), 255) for v in back]
    f = np.array([[[[0.2, 0.4, 0.6]]]], np.float32)
    yf = 0.114 * 0.2 + 0.587 * 0.4 + 0.299 * 0.6
    np.testing.assert_allclose(F.vision.cvt_color(ty.tensor(f), "RGB2YUV").numpy().ravel(),
                               [yf, 0.492 * (0.2 - yf) + 0.5, 0.877 * (0.6 - yf) + 0.5], rtol=1e-6)
    # NV21: a 2x2 image, one Y row pair then one V,U pair
    nv21 = np.array([50, 60, 70, 80, 200, 100], np.uint8).reshape(1, 3, 2, 1)
    out = F.vision.cvt_color(ty.tensor(nv21), "YUV2RGB_NV21").numpy()
    du, dv = 100 - 128, 200 - 128
    ruv, guv, buv = (359 * dv) >> 8, -((88 * du + 183 * dv) >> 8), (454 * du) >> 8
    for k, yy in enumerate([50, 60, 70, 80]):
        want = [min(max(yy + d, 0), 255) for d in (ruv, guv, buv)]
        assert out[0, k // 2, k % 2].tolist() == want
    bgr = F.vision.cvt_color(ty.tensor(nv21), "YUV2BGR_NV21").numpy()
    np.testing.assert_array_equal(bgr, out[..., ::-1])
    gray = F.vision.cvt_color(ty.tensor(nv21), "YUV2GRAY_NV21").numpy()
    assert gray.shape == (1, 2, 2, 1) and gray.ravel().tolist() == [50, 60, 70, 80]
    # BT.601 (libyuv's integers): Y 16, U = V = 128 is black
    blk = np.array([16, 16, 16, 16, 128, 128], np.uint8).reshape(1, 3, 2, 1)
    assert F.vision.cvt_color(ty.tensor(blk), "BT601_YUV2RGB_NV12").numpy().max() <= 1
    with pytest.raises(ValueError, match="YUV 4:2:0"):
        F.vision.cvt_color(ty.tensor(np.zeros((1, 4, 2, 1), np.uint8)), "YUV2RGB_NV21")


def test_random_crop_draws_x_before_y(fixed_rng):
    img = np.zeros((4, 9, 1), np.uint8)  # 4 rows, 9 columns
    rng = fixed_rng(integers=[5, 1])
    out = T.RandomCrop((2, 3)).apply(img)
    assert [c[1:] for c in rng.calls] == [(0, 7), (0, 3)]  # x over 9 - 3 + 1, then y
    assert out.shape == (2, 3, 1)
    marked = np.arange(36, dtype=np.uint8).reshape(4, 9, 1)
    fixed_rng(integers=[5, 1])
    np.testing.assert_array_equal(T.RandomCrop((2, 3)).apply(marked), marked[1:3, 5:8])


def test_nms_under_trace_raises_naming_nms():
    from tianyuan.jit import TraceError, trace
    boxes = ty.tensor(np.array([[0, 0, 3, 1], [1, 0, 4, 1], [9, 9, 12, 12]], np.float32))
    scores = ty.tensor(np.array([0.9, 0.8, 0.7], np.float32))
    with pytest.raises(TraceError, match="nms: its output shape depends on input values"):
        trace(symbolic=True)(lambda b, s: F.vision.nms(b, s, 0.5))(boxes, scores)
    recorded = trace(symbolic=False)(lambda b, s: F.vision.nms(b, s, 0.5))
    assert recorded(boxes, scores).numpy().tolist() == [0, 1, 2]  # the eager recording
    with pytest.raises(TraceError, match="nms"):
        recorded(boxes, scores)  # a replay could not know the output length
