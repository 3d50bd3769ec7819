"""A reshape of a non-contiguous view copies (a channel shuffle: reshape, transpose,
reshape); a replay copies the view straight into the reshape's output, in C order."""
import numpy as np
import pytest

import tianyuan as ty
from tianyuan.jit import trace


def _shuffle(x, groups):
    n, c, h, w = x.shape
    y = x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)
    return y.reshape(n, c, h, w)


@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
@pytest.mark.parametrize("mode", ["host", "without_host", "symbolic"])
def test_channel_shuffle_replay_is_eager(dtype, mode):
    def f(x):
        return _shuffle(x * 2, 2) + 1

    kw = {"without_host": True} if mode == "without_host" else (
        {"symbolic": True} if mode == "symbolic" else {})
    tf = trace(f, **kw)
    rng = np.random.default_rng(0)
    for shape in [(1, 8, 5, 7), (1, 8, 5, 7), (1, 8, 5, 7)]:
        x = ty.tensor((rng.standard_normal(shape) * 10).astype(dtype))
        want = f(x).numpy()
        got = tf(x).numpy()
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        # the shuffle itself: channel i*c + j moves to j*g + i
        a = (x.numpy() * 2).reshape(1, 2, 4, 5, 7).transpose(0, 2, 1, 3, 4).reshape(shape) + 1
        np.testing.assert_array_equal(got, a.astype(want.dtype))


def test_transposed_matrix_flattened_replay_is_eager():
    def f(x):
        return (x.transpose(1, 0).reshape(-1) * 3)

    tf = trace(f, without_host=True)
    x = ty.tensor(np.arange(35, dtype="float32").reshape(5, 7))
    for _ in range(2):
        np.testing.assert_array_equal(tf(x).numpy(), np.arange(35, dtype="float32")
                                      .reshape(5, 7).T.reshape(-1) * 3)
