"""Sampling identities the vision kernels rely on: interpolate's nearest mode picks MegDNN's
source index int(o / (out / in)) computed in float32, for every pair of sizes."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F


def _megdnn_nearest(n_out, n_in):
    scale = np.float32(n_out) / np.float32(n_in)
    src = [int(np.float32(o) / scale) for o in range(n_out)]
    return np.minimum(src, n_in - 1)


def test_nearest_picks_megdnn_source_index():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 41, 37)).astype("float32")
    for ih, iw, oh, ow in [(41, 37, 82, 74), (41, 37, 13, 29), (5, 7, 5, 7), (1, 3, 4, 9),
                           (41, 37, 40, 38), (7, 3, 21, 1)] + \
            [tuple(rng.integers(1, 42, 4)) for _ in range(20)]:
        xs = x[:, :, :ih, :iw]
        got = F.vision.interpolate(ty.tensor(np.ascontiguousarray(xs)), size=(int(oh), int(ow)),
                                   mode="nearest").numpy()
        rows, cols = _megdnn_nearest(int(oh), int(ih)), _megdnn_nearest(int(ow), int(iw))
        np.testing.assert_array_equal(got, xs[:, :, rows][:, :, :, cols])


def test_scale_matrices_sample_as_the_same_coordinates_given_per_pixel():
    """A scale-and-shift matrix (interpolate's, resize's) makes its plan from per-row and
    per-column taps; remap with the same coordinates, given pixel by pixel, takes the general
    path: both must give the same bits, for every border and interpolation (coordinates
    chosen exact in float32, some beyond the edges)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 7, 9)).astype("float32")
    sx, sy, tx, ty_ = 0.75, 1.25, -1.5, -2.25
    oh, ow = 11, 19
    cols, rows = np.arange(ow) * sx + tx, np.arange(oh) * sy + ty_
    grid = np.stack(np.broadcast_arrays(cols[None, :], rows[:, None]), -1)
    grid = np.broadcast_to(grid, (2, oh, ow, 2)).astype("float32")
    mat = np.tile(np.array([[sx, 0, tx], [0, sy, ty_], [0, 0, 1.0]]), (2, 1, 1))
    for border in ("replicate", "reflect", "reflect_101", "wrap", "constant"):
        for interp in ("nearest", "linear", "cubic"):
            a = F.vision.warp_perspective(ty.tensor(x), ty.tensor(mat), (oh, ow),
                                          border_mode=border, border_val=0.3,
                                          interp_mode=interp).numpy()
            b = F.vision.remap(ty.tensor(x), ty.tensor(grid), border_mode=border, scalar=0.3,
                               interp_mode=interp).numpy()
            np.testing.assert_array_equal(a, b, err_msg=f"{border} {interp}")
