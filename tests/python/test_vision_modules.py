"""The vision modules: the wrappers equal their F.vision functions, and every augmentation
module against a NumPy reference of its formula (kernels, contrast, crop/pad, mixup, cutmix,
polygons) or, for the noise modules, the moments of its distribution at a fixed seed."""
import math

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M


def _img(shape=(2, 3, 9, 10), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def test_wrappers_equal_functions():
    x = ty.tensor(_img((2, 6, 5, 3)))
    np.testing.assert_array_equal(M.Flip(True, False)(x).numpy(), F.vision.flip(x, True, False).numpy())
    np.testing.assert_array_equal(M.Rot90(False)(x).numpy(), F.vision.rot90(x, False).numpy())
    # MegEngine's Rotate(angle=0.0, format="NCHW", interp_mode="bilinear")
    np.testing.assert_array_equal(M.Rotate(30.0, "NHWC")(x).numpy(),
                                  F.vision.rotate(x, 30.0, format="NHWC").numpy())
    y = ty.tensor(_img((2, 3, 6, 5)))
    np.testing.assert_array_equal(M.Rotate(30.0)(y).numpy(),
                                  F.vision.rotate(y, 30.0, format="NCHW").numpy())
    # MegEngine's Resize(size, format="NCHW", imode="linear")
    np.testing.assert_array_equal(M.Resize((4, 9))(y).numpy(), F.vision.resize(y, (4, 9)).numpy())
    np.testing.assert_array_equal(M.Resize((4, 9), "NHWC", "nearest")(x).numpy(),
                                  F.vision.resize(x, (4, 9), "nearest", "NHWC").numpy())
    # MegEngine's Remap(): forward(inp, map_1, map_2, interpolation, borderMode, borderValue)
    m = ty.tensor(np.random.default_rng(1).uniform(-1, 6, (2, 3, 4, 2)).astype(np.float32))
    empty = ty.tensor(np.zeros((0,), np.float32))
    np.testing.assert_array_equal(M.Remap()(y, m, empty, "linear", "reflect").numpy(),
                                  F.vision.remap(y, m, "reflect").numpy())
    np.testing.assert_array_equal(M.Remap()(y, m[..., 0], m[..., 1]).numpy(),
                                  F.vision.remap(y, m).numpy())


def test_remap_module_megengine_example():
    inp = ty.tensor(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    x_map = ty.tensor(np.array([[[1, 0], [0, 0]]], np.float32))
    y_map = ty.tensor(np.array([[[1, 1], [1, 1]]], np.float32))
    assert M.Remap()(inp, x_map, y_map).numpy().ravel().tolist() == [5, 4, 4, 4]


def _conv_reflect(x, k):
    r = k.shape[0] // 2
    p = np.pad(x, ((0, 0), (0, 0), (r, r), (r, r)), mode="reflect")
    out = np.zeros(x.shape)
    for i in range(k.shape[0]):
        for j in range(k.shape[1]):
            out += k[i, j] * p[:, :, i:i + x.shape[2], j:j + x.shape[3]]
    return out


def test_emboss_and_sharpen_kernels():
    x = _img()
    a, s = 0.7, 0.6
    emb = (1 - a) * np.pad([[1.0]], 1) + a * np.array([[-1 - s, -s, 0], [-s, 1, s], [0, s, 1 + s]])
    np.testing.assert_allclose(M.Emboss(a, s)(ty.tensor(x)).numpy(), _conv_reflect(x, emb),
                               rtol=1e-5, atol=1e-3)
    sh = -np.ones((3, 3))
    sh[1, 1] = 8 + 1.2
    sh = (1 - a) * np.pad([[1.0]], 1) + a * sh
    np.testing.assert_allclose(M.Sharpen(a, 1.2)(ty.tensor(x)).numpy(), _conv_reflect(x, sh),
                               rtol=1e-5, atol=1e-3)
    u = M.Sharpen(a, 1.2)(ty.tensor(x.astype(np.uint8)))
    assert u.dtype == np.uint8  # clipped to [0, 255], then truncated
    want = np.clip(_conv_reflect(x.astype(np.uint8).astype(np.float64), sh), 0, 255)
    # float32 convolution vs float64: a value a hair below an integer truncates one lower
    assert np.abs(u.numpy().astype(np.float64) - np.trunc(want)).max() <= 1


def test_random_parameters_follow_the_seed():
    x = ty.tensor(_img())
    a = M.Emboss((0.2, 0.9), (0.1, 1.5), seed=5)(x).numpy()
    b = M.Emboss((0.2, 0.9), (0.1, 1.5), seed=5)(x).numpy()
    c = M.Emboss((0.2, 0.9), (0.1, 1.5), seed=6)(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(TypeError, match="Emboss: alpha cannot be a bool"):
        M.Emboss(True, 1.0)(x)
    with pytest.raises(ValueError, match="Emboss: alpha tuple must have exactly two"):
        M.Emboss((0.1, 0.2, 0.3), 1.0)(x)
    with pytest.raises(TypeError, match="seed must be an int"):
        M.Emboss(0.5, 1.0, seed=1.5)


def _opencv_gauss(n, sigma):
    # cv2.getGaussianKernel, written out: fixed tables for n <= 7 when sigma <= 0
    table = {3: [0.25, 0.5, 0.25], 5: [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]}
    if sigma <= 0 and n in table:
        return np.array(table[n])
    if sigma <= 0:
        sigma = 0.3 * ((n - 1) / 2 - 1) + 0.8
    g = np.exp(-((np.arange(n) - (n - 1) / 2) ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def test_gaussian_blur_is_opencvs_nhwc_filter():
    x = _img((1, 7, 6, 2))  # NHWC
    ky, kx = _opencv_gauss(5, 1.3), _opencv_gauss(3, 0.9)
    pad = np.pad(x, ((0, 0), (2, 2), (1, 1), (0, 0)), mode="edge")  # BORDER_REPLICATE
    want = sum(ky[i] * kx[j] * pad[:, i:i + 7, j:j + 6] for i in range(5) for j in range(3))
    got = M.GaussianBlur((5, 3), sigma_x=0.9, sigma_y=1.3)(ty.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    # sigma 0 with a 3x3 kernel: OpenCV's [1, 2, 1] / 4; REFLECT_101 is numpy's "reflect"
    k3 = _opencv_gauss(3, 0)
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    want = sum(k3[i] * k3[j] * pad[:, i:i + 7, j:j + 6] for i in range(3) for j in range(3))
    got = M.GaussianBlur(3, border_mode="REFLECT_101")(ty.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="symmetric")  # BORDER_REFLECT
    want = sum(k3[i] * k3[j] * pad[:, i:i + 7, j:j + 6] for i in range(3) for j in range(3))
    got = M.GaussianBlur(3, border_mode="REFLECT")(ty.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="kernel_size"):
        M.GaussianBlur(4)
    with pytest.raises(ValueError, match="border_mode"):
        M.GaussianBlur(3, border_mode="reflect")


def test_dilation_is_a_max_filter():
    x = _img((2, 2, 6, 7))
    p = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-np.inf)
    want = np.max([p[:, :, i:i + 6, j:j + 7] for i in range(5) for j in range(5)], axis=0)
    np.testing.assert_array_equal(M.Dilation(5)(ty.tensor(x)).numpy(), want)
    with pytest.raises(ValueError, match="Dilation: kernel_size must be a positive odd int"):
        M.Dilation(4)


def test_linear_contrast():
    x = _img()
    np.testing.assert_allclose(M.LinearContrast(0.5)(ty.tensor(x)).numpy(), 0.5 * x, rtol=1e-6)
    i8 = np.array([[[[-100, 50]]]], np.int8)  # MegEngine's int8 middle: int(-0.5) = 0
    assert M.LinearContrast(0.5)(ty.tensor(i8)).numpy().ravel().tolist() == [-50, 25]
    u = x.astype(np.uint8)
    got = M.LinearContrast(1.8)(ty.tensor(u)).numpy()
    np.testing.assert_array_equal(got, np.clip(127 + 1.8 * (u - 127.0), 0, 255).astype(np.uint8))
    per = M.LinearContrast((0.2, 2.0), per_channel=True, seed=3)(ty.tensor(x)).numpy()
    ratio = per / x
    assert np.allclose(ratio, ratio[:, :, :1, :1], rtol=1e-4)  # one alpha per image and channel
    assert len(np.unique(ratio[:, :, 0, 0].round(4))) == 6


def test_additive_noise_moments():
    x = ty.tensor(np.zeros((4, 3, 64, 64), dtype=np.float32))
    g = M.AdditiveGaussianNoise(2.0, 3.0, seed=0)(x).numpy()
    assert abs(g.mean() - 2.0) < 0.05 and abs(g.std() - 3.0) < 0.05
    np.testing.assert_array_equal(g[:, 0], g[:, 2])  # per_channel=False: shared by channels
    gp = M.AdditiveGaussianNoise(per_channel=True, seed=0)(x).numpy()
    assert not np.array_equal(gp[:, 0], gp[:, 1])
    lap = M.AdditiveLaplaceNoise(1.0, 2.0, per_channel=True, seed=0)(x).numpy()
    assert abs(np.median(lap) - 1.0) < 0.05 and abs(np.abs(lap - 1.0).mean() - 2.0) < 0.05
    poi = M.AdditivePoissonNoise(4.0, per_channel=True, seed=0)(x).numpy()
    np.testing.assert_array_equal(poi, np.round(poi))
    assert abs(poi.mean() - 4.0) < 0.05 and abs(poi.var() - 4.0) < 0.1
    # MegEngine returns add(inp, noise): a uint8 image comes back float32, unclipped
    u = M.AdditiveGaussianNoise(0.0, 50.0, seed=0)(ty.tensor(np.full((1, 1, 8, 8), 250, np.uint8)))
    assert u.dtype == np.float32 and u.numpy().max() > 255


def test_crop_and_pad_is_megengines_per_image_pad_or_crop_then_resize():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float32).reshape(2, 1, 4, 4)
    # image 0: pad by round(4 * 0.25) = 1 with -1 on every side, then 6x6 -> 4x4 nearest
    # (rows floor(d * 1.5) = 0, 1, 3, 4); image 1: crop 1 off every side, 2x2 -> 4x4 nearest
    out = M.CropAndPad("nearest")(ty.tensor(x), ty.tensor([0.25, -0.25]),
                                  ty.tensor([-1.0, 5.0])).numpy()
    padded = np.pad(x[0, 0], 1, constant_values=-1.0)
    idx = [0, 1, 3, 4]
    np.testing.assert_array_equal(out[0, 0], padded[np.ix_(idx, idx)])
    np.testing.assert_array_equal(out[1, 0], x[1, 0, 1:3, 1:3][np.ix_([0, 0, 1, 1], [0, 0, 1, 1])])
    # bilinear: 6 -> 4 samples at 1.5 (d + 0.5) - 0.5 = 0.25, 1.75, 3.25, 4.75
    lin = M.CropAndPad()(ty.tensor(x[:1]), ty.tensor([0.25]), ty.tensor([-1.0])).numpy()
    src = np.array([0.25, 1.75, 3.25, 4.75])
    wy = np.zeros((4, 6))
    for d, v in enumerate(src):
        i = int(v)
        wy[d, i] += 1 - (v - i)
        wy[d, min(i + 1, 5)] += v - i
    np.testing.assert_allclose(lin[0, 0], wy @ padded @ wy.T, rtol=1e-6)
    zero = M.CropAndPad("nearest")(ty.tensor(x[:1]), ty.tensor([0.25])).numpy()
    assert zero[0, 0, 0, 0] == 0.0  # no pad_val: zeros
    with pytest.raises(ValueError, match="mode"):
        M.CropAndPad("cubic")


def test_mixup_and_cutmix_megengine_signatures():
    rng = np.random.default_rng(0)
    d1, d2 = rng.normal(size=(3, 2, 6, 5)).astype(np.float32), rng.normal(size=(3, 2, 6, 5)).astype(np.float32)
    l1, l2 = np.array([1.0, 0.0, 2.0], np.float32), np.array([0.0, 3.0, 1.0], np.float32)
    m = M.Mixup(0.5, seed=3)
    data, label = m(*(ty.tensor(a) for a in (d1, l1, d2, l2)))
    lam = m.lamb.numpy()
    assert lam.shape == (3,) and np.all((lam > 0) & (lam < 1)) and len(np.unique(lam)) == 3
    np.testing.assert_allclose(label.numpy(), lam * l1 + (1 - lam) * l2, rtol=1e-6)
    np.testing.assert_allclose(data.numpy(), lam[:, None, None, None] * d1
                               + (1 - lam[:, None, None, None]) * d2, rtol=1e-5, atol=1e-6)
    c = M.Cutmix(2.0, seed=4)
    data, label = c(*(ty.tensor(a) for a in (d1, l1, d2, l2)))
    lam = c.lamb.numpy()
    np.testing.assert_allclose(label.numpy(), lam * l1 + (1 - lam) * l2, rtol=1e-6)
    want = d1.copy()
    for i in range(3):  # MegEngine's cutmix box: rows around cx, columns around cy
        hh, hw = int(np.floor(6 * np.sqrt(1 - lam[i])) / 2), int(np.floor(5 * np.sqrt(1 - lam[i])) / 2)
        cx, cy = c.cx.numpy()[i], c.cy.numpy()[i]
        assert 0 <= cx < 6 and 0 <= cy < 5 and cx == int(cx)
        r0, r1 = int(np.clip(cx - hh, 0, 6)), int(np.clip(cx + hh, 0, 6))
        c0, c1 = int(np.clip(cy - hw, 0, 5)), int(np.clip(cy + hw, 0, 5))
        want[i, :, r0:r1, c0:c1] = d2[i, :, r0:r1, c0:c1]
    np.testing.assert_array_equal(data.numpy(), want)
    with pytest.raises(TypeError, match="Mixup: label1 must be a Tensor"):
        M.Mixup(1.0)(ty.tensor(d1), [0, 1, 2], ty.tensor(d2), ty.tensor(l2))


def test_fill_poly():
    x = _img((2, 3, 6, 6))
    out = M.FillPoly(fill=(1.0, 2.0, 3.0))(ty.tensor(x), [[np.array([[1, 1], [4, 1], [4, 4],
                                                                     [1, 4]])], []]).numpy()
    want = x.copy()
    want[0, :, 1:4, 1:4] = np.array([1.0, 2.0, 3.0])[:, None, None]
    np.testing.assert_array_equal(out, want)
    tri = M.FillPoly(0.0)(ty.tensor(x[:1]), [[[(0, 0), (5, 0), (0, 5)]]]).numpy()
    ys, xs = np.mgrid[0:6, 0:6]
    np.testing.assert_array_equal(tri[0, 0] == 0, (xs + ys < 5) & (ys >= 0))
    with pytest.raises(ValueError, match="FillPoly: 1 polygon lists for 2 images"):
        M.FillPoly()(ty.tensor(x), [[]])


def test_deformable_psroi_pooling_module_and_names():
    rng = np.random.default_rng(4)
    x = ty.tensor(rng.standard_normal((2, 4, 7, 6)).astype(np.float32))
    rois = ty.tensor([[0, 1, 1, 5, 4], [1, 0, 2, 3, 6]], dtype="float32")
    trans = ty.tensor(rng.uniform(-1, 1, (2, 2, 2, 2)).astype(np.float32))
    m = M.DeformablePSROIPooling(False, 2, 2, 2, 2, 1.0, 0.2)
    want = F.deformable_psroi_pooling(x, rois, trans, False, 2, 2, 2, 2, 1.0, 0.2)
    np.testing.assert_array_equal(m(x, rois, trans).numpy(), want.numpy())
    assert F.nn.deformable_psroi_pooling is F.deformable_psroi_pooling
    assert F.nn.remap is F.vision.remap and F.warp_perspective is F.vision.warp_perspective


def test_mixup_cutmix_as_megengine_code_uses_them():
    # integer labels, positional dtype, the lamb / cx / cy / cut_h / cut_w attributes
    rng = np.random.default_rng(5)
    d1 = ty.Tensor(rng.random((3, 2, 12, 12)), np.float32)
    d2 = ty.Tensor(rng.random((3, 2, 12, 12)), np.float32)
    l1, l2 = ty.Tensor(rng.integers(0, 10, size=(3,))), ty.Tensor(rng.integers(0, 10, size=(3,)))
    m = M.Mixup(3)
    data, label = m(d1, l1, d2, l2)
    for i in range(3):
        lam = m.lamb[i]
        np.testing.assert_allclose(label[i:i + 1].numpy(),
                                   (l1[i:i + 1] * lam + l2[i:i + 1] * (1 - lam)).numpy(), rtol=1e-6)
    c = M.Cutmix(3)
    data, label = c(d1, l1, d2, l2)
    want = d1.numpy().copy()
    r0, r1 = F.clip(c.cx - c.cut_h // 2, 0, 12), F.clip(c.cx + c.cut_h // 2, 0, 12)
    c0, c1 = F.clip(c.cy - c.cut_w // 2, 0, 12), F.clip(c.cy + c.cut_w // 2, 0, 12)
    for i in range(3):
        a, b, p, q = int(r0[i]), int(r1[i]), int(c0[i]), int(c1[i])
        want[i, :, a:b, p:q] = d2.numpy()[i, :, a:b, p:q]
    np.testing.assert_array_equal(data.numpy(), want)
