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
    np.testing.assert_array_equal(M.Rotate(30.0)(x).numpy(), F.vision.rotate(x, 30.0).numpy())
    y = ty.tensor(_img((2, 3, 6, 5)))
    np.testing.assert_array_equal(M.Resize((4, 9))(y).numpy(), F.vision.resize(y, (4, 9)).numpy())
    m = ty.tensor(np.random.default_rng(1).uniform(-1, 6, (2, 3, 4, 2)).astype(np.float32))
    np.testing.assert_array_equal(M.Remap("reflect")(y, m).numpy(),
                                  F.vision.remap(y, m, "reflect").numpy())


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


def test_gaussian_blur():
    x = _img((1, 2, 12, 11))
    s = 1.3
    t = np.arange(-4, 5)
    g = np.exp(-0.5 * (t / s) ** 2)
    k = np.outer(g, g) / g.sum() ** 2
    np.testing.assert_allclose(M.GaussianBlur(s)(ty.tensor(x)).numpy(), _conv_reflect(x, k),
                               rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(M.GaussianBlur(0.0)(ty.tensor(x)).numpy(), x)
    small = M.GaussianBlur(3.0)(ty.tensor(x[:, :, :3, :3]))  # kernel truncated to the image
    assert small.shape == (1, 2, 3, 3)


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
    u = M.AdditiveGaussianNoise(0.0, 50.0, seed=0)(ty.tensor(np.full((1, 1, 8, 8), 250, np.uint8)))
    assert u.dtype == np.uint8 and u.numpy().max() == 255  # clipped, not wrapped


def test_crop_and_pad():
    x = _img((1, 2, 6, 7))
    got = M.CropAndPad(px=(1, -2, 2, 0), keep_size=False, pad_cval=-1.0)(ty.tensor(x)).numpy()
    want = np.pad(x[:, :, :, :5], ((0, 0), (0, 0), (1, 2), (0, 0)), constant_values=-1.0)
    np.testing.assert_array_equal(got, want)
    kept = M.CropAndPad(percent=(-0.2, 0.1), seed=0)(ty.tensor(x))
    assert kept.shape == x.shape
    with pytest.raises(ValueError, match="CropAndPad: give exactly one of px and percent"):
        M.CropAndPad()
    with pytest.raises(ValueError, match="leaves no pixel"):
        M.CropAndPad(px=-4)(ty.tensor(x))


def test_mixup_and_cutmix_follow_their_draws():
    x = _img((4, 2, 8, 8))
    t = np.eye(4, dtype=np.float32)
    out, tt = M.Mixup(0.4, seed=7)(ty.tensor(x), ty.tensor(t))
    r = np.random.default_rng(7)
    lam, perm = r.beta(0.4, 0.4), r.permutation(4)
    np.testing.assert_allclose(out.numpy(), lam * x + (1 - lam) * x[perm], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(tt.numpy(), lam * t + (1 - lam) * t[perm], rtol=1e-6)
    out, tt = M.Cutmix(1.0, seed=9)(ty.tensor(x), ty.tensor(t))
    r = np.random.default_rng(9)
    cut = math.sqrt(1 - r.beta(1.0, 1.0))
    cy, cx = r.integers(8), r.integers(8)
    perm = r.permutation(4)
    h = w = int(8 * cut)
    y0, y1, x0, x1 = max(cy - h // 2, 0), min(cy + h // 2, 8), max(cx - w // 2, 0), min(cx + w // 2, 8)
    want = x.copy()
    want[:, :, y0:y1, x0:x1] = x[perm][:, :, y0:y1, x0:x1]
    np.testing.assert_array_equal(out.numpy(), want)
    frac = (y1 - y0) * (x1 - x0) / 64.0
    assert 0 < frac < 1
    np.testing.assert_allclose(tt.numpy(), (1 - frac) * t + frac * t[perm], rtol=1e-6)
    with pytest.raises(TypeError, match="Mixup: target must be a float Tensor"):
        M.Mixup()(ty.tensor(x), ty.tensor([0, 1, 2, 3]))


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
