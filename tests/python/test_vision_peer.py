"""F.vision against PyTorch / torchvision where the semantics agree (skipped when they are not
installed): roi_align on boxes inside the image (MegEngine and torchvision differ only in how a
sample near the border reads outside cells), interpolate in every mode PyTorch shares, nms."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
TF = torch.nn.functional


def test_roi_align_matches_torchvision():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 20, 24)).astype(np.float32)
    xy = rng.uniform(2, 9, (6, 2))
    rois = np.concatenate([rng.integers(0, 2, (6, 1)), xy, xy + rng.uniform(3, 10, (6, 2))],
                          1).astype(np.float32)
    for sp in (1, 2, 3):
        ours = F.vision.roi_align(ty.tensor(x), ty.tensor(rois), (4, 5), spatial_scale=0.8,
                                  sample_points=sp).numpy()
        tv = torchvision.ops.roi_align(torch.tensor(x), torch.tensor(rois), (4, 5), 0.8, sp,
                                       True).numpy()
        np.testing.assert_allclose(ours, tv, atol=1e-5)


@pytest.mark.parametrize("mode,ac", [("bilinear", False), ("bilinear", True), ("nearest", None),
                                     ("bicubic", False)])
def test_interpolate_matches_torch(mode, ac):
    x = np.random.default_rng(1).standard_normal((2, 3, 20, 24)).astype(np.float32)
    for size in ((7, 9), (31, 17)):
        ours = F.vision.interpolate(ty.tensor(x), size, mode=mode,
                                    align_corners=ac if mode == "bilinear" else None).numpy()
        kw = {} if mode == "nearest" else {"align_corners": ac}
        want = TF.interpolate(torch.tensor(x), size=size, mode=mode, **kw).numpy()
        np.testing.assert_allclose(ours, want, atol=2e-5)


@pytest.mark.parametrize("ac", [False, True])
def test_linear_and_trilinear_match_torch(ac):
    rng = np.random.default_rng(2)
    x5 = rng.standard_normal((1, 2, 4, 5, 6)).astype(np.float32)
    ours = F.vision.interpolate(ty.tensor(x5), (7, 3, 8), mode="trilinear", align_corners=ac)
    want = TF.interpolate(torch.tensor(x5), size=(7, 3, 8), mode="trilinear", align_corners=ac)
    np.testing.assert_allclose(ours.numpy(), want.numpy(), atol=1e-5)
    x3 = rng.standard_normal((2, 3, 10)).astype(np.float32)
    ours = F.vision.interpolate(ty.tensor(x3), 17, mode="linear", align_corners=ac)
    want = TF.interpolate(torch.tensor(x3), size=17, mode="linear", align_corners=ac)
    np.testing.assert_allclose(ours.numpy(), want.numpy(), atol=1e-5)


def test_nms_matches_torchvision():
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 50, (200, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 30, (200, 2))], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 200).astype(np.float32)
    for t in (0.3, 0.5, 0.7):
        ours = F.vision.nms(ty.tensor(boxes), ty.tensor(scores), t).numpy()
        want = torchvision.ops.nms(torch.tensor(boxes), torch.tensor(scores), t).numpy()
        np.testing.assert_array_equal(ours, want)
