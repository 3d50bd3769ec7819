"""F.vision against MegEngine's documented examples, and properties the op_db rows do not
show: rotate by 90 degrees is rot90, warp_affine is warp_perspective with (0, 0, 1) appended,
NHWC equals NCHW transposed, the RoI gradient lands in the right batch image, nms's example.
The NumPy references of every op are in tests/python/ops/op_db_vision.py."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F

V = F.vision


def test_megengine_examples():
    np.random.seed(42)
    inp = ty.tensor(np.random.randn(1, 1, 128, 128).astype("float32"))
    rois = ty.tensor(np.random.random((4, 5)).astype("float32"))
    np.testing.assert_allclose(V.roi_align(inp, rois, (2, 2)).numpy()[0].round(4),
                               [[[0.175, 0.175], [0.1359, 0.1359]]], atol=1e-4)
    np.testing.assert_allclose(V.roi_pooling(inp, rois, (2, 2)).numpy()[0].round(4),
                               [[[-0.1383, -0.1383], [-0.5035, -0.5035]]], atol=1e-4)
    x = ty.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    m = ty.tensor(np.array([[[1., 0.], [0., 1.]], [[0., 1.], [0., 1.]]],
                           dtype=np.float32).reshape(1, 2, 2, 2))
    np.testing.assert_array_equal(V.remap(x, m).numpy(), [[[[1., 4.], [4., 4.]]]])
    M = ty.tensor(np.array([[1., 0., 1.], [0., 1., 1.], [0., 0., 1.]],
                           dtype=np.float32).reshape(1, 3, 3))
    np.testing.assert_array_equal(V.warp_perspective(x, M, (2, 2)).numpy(),
                                  [[[[5., 6.], [9., 10.]]]])
    x = ty.tensor(np.arange(1, 5, dtype=np.float32).reshape(1, 1, 2, 2))
    want = [[1., 1.25, 1.75, 2.], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5],
            [3., 3.25, 3.75, 4.]]
    np.testing.assert_allclose(V.interpolate(x, [4, 4], align_corners=False).numpy()[0, 0], want)
    np.testing.assert_allclose(V.interpolate(x, scale_factor=2.).numpy()[0, 0], want)
    c = ty.tensor(np.array([[[[-0.58675045, 1.7526233, 0.10702174]]]], dtype=np.float32))
    np.testing.assert_allclose(V.cvt_color(c, mode="RGB2GRAY").numpy(), [[[[0.86555195]]]],
                               rtol=1e-6)


def test_nms_keeps_2_1_3():
    """Scores .5 .8 .9 .6 at IoU 0.5: box 2 wins, box 0 overlaps box 1 too much, box 3 not."""
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [6, 6, 16, 16]],
                     dtype=np.float32)
    keep = V.nms(ty.tensor(boxes), ty.tensor([.5, .8, .9, .6]), iou_thresh=0.5)
    assert keep.dtype == np.int32
    np.testing.assert_array_equal(keep.numpy(), [2, 1, 3])
    np.testing.assert_array_equal(V.nms(ty.tensor(boxes), ty.tensor([.5, .8, .9, .6]), 0.5,
                                        max_output=2).numpy(), [2, 1])


def test_rotate_90_is_rot90():
    x = ty.tensor(np.random.default_rng(0).standard_normal((2, 5, 5, 3)).astype(np.float32))
    np.testing.assert_allclose(V.rotate(x, 90).numpy(), V.rot90(x, clockwise=False).numpy(),
                               atol=1e-5)
    np.testing.assert_allclose(V.rotate(x, -90, interp_mode="nearest").numpy(),
                               V.rot90(x, clockwise=True).numpy())


def test_formats_agree():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    mat = np.tile(np.eye(3, dtype=np.float32), (2, 1, 1))
    mat[:, :2] += rng.uniform(-0.2, 0.2, (2, 2, 3)).astype(np.float32)
    nchw = V.warp_perspective(ty.tensor(x), ty.tensor(mat), (4, 7), border_mode="reflect")
    nhwc = V.warp_perspective(ty.tensor(x.transpose(0, 2, 3, 1)), ty.tensor(mat), (4, 7),
                              border_mode="reflect", format="NHWC")
    np.testing.assert_array_equal(nhwc.numpy(), nchw.numpy().transpose(0, 2, 3, 1))
    aff = V.warp_affine(ty.tensor(x), ty.tensor(mat[:, :2]), (4, 7), border_mode="reflect",
                        format="NCHW")
    np.testing.assert_array_equal(aff.numpy(), nchw.numpy())


def test_roi_align_gradient_goes_to_the_roi_batch():
    x = ty.Parameter(np.ones((3, 2, 8, 8), dtype=np.float32))
    rois = ty.tensor([[2, 1, 1, 5, 5]], dtype="float32")
    gm = ty.autodiff.GradManager().attach([x])
    with gm:
        y = V.roi_align(x, rois, (2, 2))
        gm.backward(y.sum())
    g = x.grad.numpy()
    assert g[:2].sum() == 0
    np.testing.assert_allclose(g[2].sum(axis=(1, 2)), [4.0, 4.0], rtol=1e-6)  # 4 bins each


def test_warp_perspective_mat_idx_gradient_accumulates():
    """Two matrices reading the same image: its gradient is the sum of both backward passes."""
    x = ty.Parameter(np.random.default_rng(2).standard_normal((2, 1, 5, 5)).astype(np.float32))
    eye = np.tile(np.eye(3, dtype=np.float32), (2, 1, 1))
    gm = ty.autodiff.GradManager().attach([x])
    with gm:
        y = V.warp_perspective(x, ty.tensor(eye), (5, 5), mat_idx=[1, 1])
        gm.backward(y.sum())
    np.testing.assert_array_equal(x.grad.numpy(), np.stack([np.zeros((1, 5, 5)),
                                                            np.full((1, 5, 5), 2.0)]))


@pytest.mark.parametrize("mode", ["bilinear", "bicubic", "nearest"])
def test_interpolate_float16_input_computes_in_float32(mode):
    x = np.random.default_rng(3).standard_normal((1, 2, 4, 4)).astype(np.float16)
    y = V.interpolate(ty.tensor(x, dtype="float16"), (6, 6), mode=mode)
    want = V.interpolate(ty.tensor(x.astype(np.float32)), (6, 6), mode=mode)
    assert y.dtype == np.float32  # MegEngine's result dtype for a float16 image
    np.testing.assert_array_equal(y.numpy(), want.numpy())


def _bits_at_threads(fn):
    """fn() -> list of arrays at 1, 2 and 3 threads: all must be bitwise equal."""
    before = ty.get_num_threads()
    try:
        results = []
        for n in (1, 2, 3):
            ty.set_num_threads(n)
            results.append([(a.dtype.str, a.shape, a.tobytes()) for a in fn()])
        assert results[1] == results[0] and results[2] == results[0]
    finally:
        ty.set_num_threads(before)


def _value_and_grad(f, x):
    p = ty.Parameter(x)
    gm = ty.autodiff.GradManager().attach([p])
    with gm:
        y = f(p)
        w = np.random.default_rng(5).uniform(-1, 1, y.shape).astype(np.float32)
        gm.backward((y * ty.tensor(w)).sum())
    return [y.numpy(), p.grad.numpy()]


@pytest.mark.parametrize("case", ["roi_align", "roi_align_max", "warp", "correlation",
                                  "dpsroi"])
def test_big_shapes_same_bits_at_any_thread_count(case):
    """Shapes past the kernels' parallel thresholds: each kernel splits its work into units
    fixed by the shape, and a backward cell gathers its terms in one order."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 32, 24, 24)).astype(np.float32)
    xy = rng.uniform(-2, 18, (40, 2))
    rois = ty.tensor(np.concatenate([rng.integers(0, 3, (40, 1)), xy,
                                     xy + rng.uniform(1, 10, (40, 2))], 1).astype(np.float32))
    mats = np.tile(np.eye(3, dtype=np.float32), (5, 1, 1))
    mats[:, :2] += rng.uniform(-0.3, 0.3, (5, 2, 3)).astype(np.float32)
    trans = ty.tensor(rng.uniform(-1, 1, (40, 2, 2, 2)).astype(np.float32))
    fns = {
        "roi_align": lambda p: V.roi_align(p, rois, 7, sample_points=2),
        "roi_align_max": lambda p: V.roi_align(p, rois, 3, mode="max", sample_points=0),
        "warp": lambda p: V.warp_perspective(p, ty.tensor(mats), (30, 20),
                                             mat_idx=[0, 2, 2, 1, 0], border_mode="reflect"),
        "correlation": lambda p: V.correlation(p, p * 0.5, kernel_size=3, max_displacement=2,
                                               pad_size=2),
        "dpsroi": lambda p: F.deformable_psroi_pooling(
            p, rois, trans, False, 2, 4, 4, 2, 0.9),
    }
    _bits_at_threads(lambda: _value_and_grad(fns[case], x))


def test_nvof_checks_arguments_then_says_it_needs_cuda():
    """nvof wraps NVIDIA's optical-flow hardware; the issue asks a CPU build for a clear error."""
    frames = ty.tensor(np.zeros((1, 2, 4, 4, 4), np.uint8))
    with pytest.raises(RuntimeError, match="CPU-only"):
        V.nvof(frames)
    with pytest.raises(ValueError, match=r"\(n, t, h, w, 4\)"):
        V.nvof(ty.tensor(np.zeros((2, 4, 4, 4), np.uint8)))
    with pytest.raises(TypeError, match="uint8"):
        V.nvof(ty.tensor(np.zeros((1, 2, 4, 4, 4), np.float32)))
    with pytest.raises(ValueError, match="precision"):
        V.nvof(frames, precision=3)
