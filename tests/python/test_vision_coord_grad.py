"""Gradients of the vision ops w.r.t. their coordinates (MegEngine's RemapBackwardMat and
WarpPerspectiveBackwardMat, and deformable_psroi_pooling's offsets): float64 central
differences, warp_affine's matrix through warp_perspective's, nearest sampling's zero
slope, eager == traced bitwise for the whole gradient step, and the refusal of a recorded
(higher-order) backward through them. The op_db rows (tests/python/ops/op_db_vision.py) check
the ops against NumPy."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace

from breadth.helpers import grad_check

V = F.vision
BORDERS = ("replicate", "reflect", "reflect_101", "wrap", "constant")


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("border", BORDERS)
def test_remap_map_gradient(border, interp, rng):
    x = rng.standard_normal((2, 2, 4, 5))
    m = rng.uniform(-1.6, 6.3, (2, 3, 2, 2))  # inside, across and beyond the edges
    grad_check(lambda a, b: V.remap(a, b, border_mode=border, scalar=0.4, interp_mode=interp),
               [x, m], rtol=1e-6, atol=1e-8)


def test_remap_nearest_map_gradient_is_zero(rng):
    x, m = ty.tensor(rng.standard_normal((1, 2, 3, 3))), ty.Parameter(rng.uniform(0, 2, (1, 2, 2, 2)))
    gm = GradManager().attach([m])
    with gm:
        gm.backward(V.remap(x, m, interp_mode="nearest").sum())
    np.testing.assert_array_equal(m.grad.numpy(), np.zeros((1, 2, 2, 2), np.float32))


def _mats(rng, n):
    mats = np.tile(np.eye(3), (n, 1, 1)) + rng.uniform(-0.2, 0.2, (n, 3, 3))
    mats[:, 2] = rng.uniform(-0.03, 0.03, (n, 3)) + [0, 0, 1.0]
    mats[:, :2, 2] += rng.uniform(-1, 1, (n, 2))
    return mats


@pytest.mark.parametrize("border,interp", [("replicate", "linear"), ("constant", "linear"),
                                           ("reflect_101", "cubic"), ("wrap", "linear")])
def test_warp_perspective_mat_gradient(border, interp, rng):
    x = rng.standard_normal((2, 2, 5, 4))
    idx = np.array([1, 0, 1], np.int32)
    grad_check(lambda a, m, i: V.warp_perspective(a, m, (4, 3), mat_idx=i, border_mode=border,
                                                  border_val=-0.5, interp_mode=interp),
               [x, _mats(rng, 3), idx], wrt=[0, 1], rtol=1e-6, atol=1e-8)


def test_warp_affine_mat_gradient(rng):
    x = rng.standard_normal((2, 5, 4, 2))  # NHWC
    mat = _mats(rng, 2)[:, :2]
    grad_check(lambda a, m: V.warp_affine(a, m, (3, 4), border_mode="reflect"), [x, mat],
               rtol=1e-6, atol=1e-8)


_DPS_ROIS = np.array([[0, 0.3, 0.6, 4.2, 3.4], [1, 1.2, 0.1, 5.6, 4.9], [0, -1.0, 2.2, 2.0, 6.1]])


@pytest.mark.parametrize("spp", [1, 2])
def test_deformable_psroi_pooling_trans_gradient(spp, rng):
    x = rng.standard_normal((2, 4, 6, 7))
    trans = rng.uniform(-0.9, 0.9, (3, 4, 2, 2))  # two classes of two channels
    grad_check(lambda a, r, t: F.deformable_psroi_pooling(a, r, t, False, 2, 3, 3, spp, 0.8,
                                                          trans_std=0.3),
               [x, _DPS_ROIS, trans], wrt=[0, 2], rtol=1e-6, atol=1e-8)


def test_deformable_psroi_pooling_no_trans_gives_offsets_no_gradient(rng):
    x = ty.tensor(rng.standard_normal((2, 2, 5, 5)))
    t = ty.Parameter(rng.uniform(-1, 1, (3, 2, 1, 1)))
    gm = GradManager().attach([t])
    with gm:
        gm.backward(F.deformable_psroi_pooling(x, ty.tensor(_DPS_ROIS), t, True, 1, 2, 2, 2,
                                               1.0).sum())
    assert t.grad is None or not np.any(t.grad.numpy())


def _step_fns(rng):
    """(function of leaves, arrays) pairs whose gradient steps are traced."""
    x = rng.standard_normal((2, 3, 6, 5)).astype("float32")
    m = rng.uniform(-1, 6, (2, 4, 3, 2)).astype("float32")
    mats = _mats(rng, 2).astype("float32")
    trans = rng.uniform(-0.9, 0.9, (3, 2, 2, 2)).astype("float32")
    x4 = rng.standard_normal((2, 4, 6, 7)).astype("float32")
    return [
        (lambda a, b: V.remap(a, b, border_mode="reflect", interp_mode="cubic"), [x, m]),
        (lambda a, b: V.warp_perspective(a, b, (4, 4), border_mode="constant", border_val=0.5),
         [x, mats]),
        (lambda a, b: F.deformable_psroi_pooling(a, ty.tensor(_DPS_ROIS, dtype="float32"), b,
                                                 False, 2, 2, 2, 2, 1.0), [x4, trans]),
    ]


def test_coordinate_gradients_eager_equal_traced(rng):
    for fn, arrays in _step_fns(rng):
        leaves = [ty.Parameter(a) for a in arrays]

        def step(*ls):
            gm = GradManager().attach(list(ls))
            with gm:
                gm.backward((fn(*ls) ** 2).sum())
            return [p.grad for p in ls]

        want = [g.numpy() for g in step(*leaves)]
        assert np.any(want[1])
        traced = trace(step)
        for _ in range(3):
            for p in leaves:
                p.grad = None
            got = [g.numpy() for g in traced(*leaves)]
            for g, w in zip(got, want):
                np.testing.assert_array_equal(g, w)


def test_higher_order_through_coordinates_is_refused(rng):
    x = ty.tensor(rng.standard_normal((1, 1, 4, 4)))
    m = ty.Parameter(rng.uniform(0.2, 2.8, (1, 2, 2, 2)))
    outer, inner = GradManager().attach([m]), GradManager().attach([m])
    with pytest.raises(Exception, match="the gradient w.r.t. map_xy is first-order only"):
        with outer:
            with inner:
                inner.backward(V.remap(x, m).sum())


def test_coordinate_gradient_ops_check_dy():
    x, m = ty.tensor(np.ones((1, 1, 3, 3))), ty.tensor(np.ones((1, 2, 2, 2)))
    with pytest.raises(ValueError, match="remap_backward_mat: output gradient has shape"):
        ty._C.ops["remap_backward_mat"](x, m, ty.tensor(np.ones((1, 1, 3, 3))))
