"""float32 strided max pooling on each instruction set (src/kernels/cpu/pool.c), forced with
TY_ISA (read once at start, so each path runs in a child interpreter): the 3-wide stride-2
column kernels of AVX2 / AVX-512 (ResNet's 3x3/2 pool), the 2x2 ones and the separable C loops,
on shapes that hit their edges (odd and even sizes, output rows around the vector widths,
padding 0 / 1, stride 1), with ties, signed zeros, infinities and NaNs with distinct payloads.
Forward and gradient against a float64 NumPy scan in row-major window order (the first maximum
wins; a NaN beats any number), bitwise at 1 and 2 threads, and every ISA bitwise the same as
generic."""
import numpy as np
import pytest

from _cpu import isas_here, run_isa_child


# (n, c, h, w, (kh, kw), (sh, sw), (ph, pw))
CASES = [(1, 3, 112, 112, (3, 3), (2, 2), (1, 1)), (2, 2, 15, 15, (3, 3), (2, 2), (0, 0)),
         (1, 2, 16, 16, (3, 3), (2, 2), (1, 1)), (1, 2, 17, 34, (3, 3), (2, 2), (1, 1)),
         (2, 1, 9, 35, (3, 3), (2, 2), (0, 0)), (1, 2, 18, 66, (3, 3), (2, 2), (1, 1)),
         (1, 2, 13, 31, (3, 3), (1, 2), (1, 1)), (1, 1, 12, 29, (5, 3), (3, 2), (2, 1)),
         (1, 2, 3, 3, (3, 3), (2, 2), (1, 1)), (1, 1, 1, 2, (3, 3), (2, 2), (1, 1)),
         (2, 2, 14, 15, (2, 2), (2, 2), (0, 0)), (1, 2, 20, 17, (2, 2), (2, 2), (1, 1)),
         (1, 2, 11, 10, (3, 3), (1, 1), (1, 1)), (1, 2, 10, 19, (3, 3), (1, 1), (0, 0))]


def _tricky(rng, shape, nans=True):
    """Small integers (ties), signed zeros, infinities, NaNs with distinct payloads and signs
    (or none: the kernels take max_ps on rows without NaN)."""
    x = rng.integers(-2, 3, size=shape).astype(np.float32)
    r = rng.random(shape)
    x[r < 0.06] = -0.0
    x[(r >= 0.06) & (r < 0.08)] = 0.0
    x[(r >= 0.08) & (r < 0.10)] = np.inf
    x[(r >= 0.10) & (r < 0.12)] = -np.inf
    nan = (r >= 0.12) & (r < 0.15) & nans
    bits = x.view(np.uint32)
    sign = rng.integers(0, 2, size=int(nan.sum())).astype(np.uint32) << np.uint32(31)
    bits[nan] = np.uint32(0x7FC00000) | rng.integers(1, 999, size=int(nan.sum())).astype(
        np.uint32) | sign
    return x


def _inputs():
    rng = np.random.default_rng(10)
    out = []
    for (n, c, h, w, k, s, p), nans in ((case, nans) for case in CASES for nans in (True, False)):
        oh, ow = (h + 2 * p[0] - k[0]) // s[0] + 1, (w + 2 * p[1] - k[1]) // s[1] + 1
        out.append((_tricky(rng, (n, c, h, w), nans), _tricky(rng, (n, c, oh, ow)), k, s, p))
    return out


CHILD = r'''
import sys
import numpy as np
import tianyuan as ty
from tianyuan import _C
sys.path.insert(0, sys.argv[2])
from test_pool_isa import _inputs
out = {}
for i, (x, dy, k, s, p) in enumerate(_inputs()):
    kw = dict(kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1], pad_h=p[0], pad_w=p[1],
              mode=0)
    for name, f in (("y", lambda: _C.ops["max_pool2d"](ty.tensor(x), **kw)),
                    ("dx", lambda: _C.ops["max_pool2d_grad"](ty.tensor(x), ty.tensor(dy), **kw))):
        got = []
        for n in (1, 2):
            ty.set_num_threads(n)
            got.append(f().numpy())
        assert got[0].tobytes() == got[1].tobytes(), f"case {i} {name}: thread counts differ"
        out[f"{name}{i}"] = got[0]
np.savez(sys.argv[1], **out)
'''


def _run(isa, path):
    return run_isa_child(CHILD, isa, path)


def _reference(x, dy, k, s, p):
    """y and dx in float64: windows scanned in row-major order over a -inf padded plane, the
    later cell winning only if greater, or NaN against a number."""
    x64 = x.astype(np.float64)
    n, c, h, w = x.shape
    oh, ow = dy.shape[2:]
    xp = np.full((n, c, h + 2 * p[0] + k[0], w + 2 * p[1] + k[1]), -np.inf)
    xp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x64
    m = np.full((n, c, oh, ow), np.nan)
    at = np.full((n, c, oh, ow), -1, np.int64)  # flat index in x of the pick
    rows, cols = np.arange(oh) * s[0] - p[0], np.arange(ow) * s[1] - p[1]
    for i in range(k[0]):
        for j in range(k[1]):
            v = xp[:, :, i + p[0] + rows[:, None], j + p[1] + cols[None, :]]
            r, q = rows[:, None] + i, cols[None, :] + j
            inside = np.broadcast_to((r >= 0) & (r < h) & (q >= 0) & (q < w), v.shape)
            with np.errstate(invalid="ignore"):
                wins = inside & ((at < 0) | (v > m) | (np.isnan(v) & ~np.isnan(m)))
            m = np.where(wins, v, m)
            at = np.where(wins, np.broadcast_to(r * w + q, v.shape), at)
    m[at < 0] = -np.inf
    dx = np.zeros((n * c, h * w))
    planes = np.broadcast_to(np.arange(n * c).reshape(n, c, 1, 1), at.shape)
    ok = at >= 0
    with np.errstate(invalid="ignore"):  # inf + -inf in dy: NaN, as in the kernels' sums
        np.add.at(dx, (planes[ok], at[ok]), dy.astype(np.float64)[ok])
    return m, dx.reshape(x.shape)


@pytest.fixture(scope="module")
def generic(tmp_path_factory):
    return _run("generic", tmp_path_factory.mktemp("pool") / "generic.npz")


def _bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


def test_generic_matches_float64_scan(generic):
    for i, (x, dy, k, s, p) in enumerate(_inputs()):
        want_y, want_dx = _reference(x, dy, k, s, p)
        np.testing.assert_array_equal(_bits(generic[f"y{i}"]), _bits(want_y), err_msg=f"y{i}")
        # exact: dy holds small integers, infinities and NaNs (compared as NaN, not by bits)
        np.testing.assert_array_equal(generic[f"dx{i}"], want_dx.astype(np.float32),
                                      err_msg=f"dx{i}")


@pytest.mark.parametrize("isa", [i for i in isas_here() if i != "generic"])
def test_isa_matches_generic_bitwise(isa, generic, tmp_path):
    got = _run(isa, tmp_path / f"{isa}.npz")
    for key in generic:
        np.testing.assert_array_equal(_bits(got[key]), _bits(generic[key]), err_msg=key)
