"""Sampling identities the vision kernels rely on: interpolate's nearest mode (a
warp_perspective of o * in / out - 0.5 with nearest rounding and a replicated border) picks
exactly floor(o * in / out) for every pair of sizes, as PyTorch's nearest mode does."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F


def test_nearest_picks_floor_of_the_scaled_index():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 41, 37)).astype("float32")
    for ih, iw, oh, ow in [(41, 37, 82, 74), (41, 37, 13, 29), (5, 7, 5, 7), (1, 3, 4, 9),
                           (41, 37, 40, 38), (7, 3, 21, 1)] + \
            [tuple(rng.integers(1, 42, 4)) for _ in range(20)]:
        xs = x[:, :, :ih, :iw]
        got = F.vision.interpolate(ty.tensor(np.ascontiguousarray(xs)), size=(int(oh), int(ow)),
                                   mode="nearest").numpy()
        rows = np.minimum(np.floor(np.arange(oh) * (ih / oh)), ih - 1).astype(int)
        cols = np.minimum(np.floor(np.arange(ow) * (iw / ow)), iw - 1).astype(int)
        np.testing.assert_array_equal(got, xs[:, :, rows][:, :, :, cols])
