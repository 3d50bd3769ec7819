"""float32 softmax / log_softmax on each instruction set (src/kernels/cpu/softmax.c), forced with
TY_ISA (read once at start, so each path runs in a child interpreter): against NumPy in float64
on shapes that hit the kernels' edges (rows along the last axis with tails of every length,
rows across inner positions with partial lane blocks, size-1, long and empty rows, 0-d), on
extreme values (underflow, huge offsets, -inf entries, rows of -inf, +inf and NaN, which give
NaN like the reference), bitwise the same at 1, 2 and 3 threads; and softmax_backward and
log_softmax_backward, the gradients, on the same rows."""
import numpy as np
import pytest

from _cpu import isas_here, run_isa_child
from _op_counts import op_counts


# (shape, axis) of the random cases; the child and the parent build the same inputs.
SHAPES = [((6, 256), -1), ((3, 1), -1), ((2, 5000), 1), ((4, 15), 1), ((4, 16), 1),
          ((4, 17), 1), ((4, 33), 1), ((2, 7), 1), ((3, 37, 21), 1), ((2, 9, 8), 1),
          ((5, 3, 40), 0), ((2, 100, 3), 1), ((3, 5, 1), 1), ((0, 16), 1), ((3, 0), 1),
          ((), 0), ((7, 1, 9), 1)]
SPECIAL_ROWS = [[0.0, -np.inf, 1.0, -np.inf, 2.0], [-np.inf] * 5, [1.0, np.inf, 0.0, 2.0, 3.0],
                [1.0, 2.0, np.nan, 0.0, 1.0], [3e38, -3e38, 0.0, 1.0, 88.0],
                [-100.0, -150.0, -103.0, -87.0, -200.0]]


def _inputs():
    rng = np.random.default_rng(11)
    cases = []
    for shape, axis in SHAPES:
        for scale, shift in ((1.0, 0.0), (40.0, 0.0), (3.0, 1e4)):
            x = (rng.standard_normal(shape) * scale + shift).astype(np.float32)
            cases.append((x, axis))
    rows = np.array(SPECIAL_ROWS, np.float32)
    cases.append((rows, 1))
    cases.append((np.ascontiguousarray(rows.T), 0))  # the same rows across inner positions
    cases.append((np.tile(rows, (1, 7)), 1))  # rows longer than a vector, tails
    # a row whose small entries hold 0.8% of the mass, each far below float's rounding of 1
    tiny = np.full((1, 200000), -17.0, np.float32)
    tiny[0, 0] = 0.0
    cases.append((tiny, 1))
    return cases


CHILD = r'''
import sys
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
sys.path.insert(0, sys.argv[2])
from test_softmax_isa import _inputs
out = {}
for i, (x, axis) in enumerate(_inputs()):
    for name, f in (("sm", F.softmax), ("lsm", F.logsoftmax)):
        bits = []
        for n in (1, 2, 3):
            ty.set_num_threads(n)
            bits.append(f(ty.tensor(x), axis=axis).numpy())
        same = all(b.tobytes() == bits[0].tobytes() for b in bits)
        assert same, f"case {i} {name}: thread counts differ"
        out[f"{name}{i}"] = bits[0]
    y = ty.tensor(out[f"sm{i}"])
    g = ty.tensor(np.random.default_rng(i).standard_normal(x.shape).astype(np.float32))
    bits = []
    for n in (1, 2, 3):
        ty.set_num_threads(n)
        bits.append(ty._C.ops["softmax_backward"](y, g, axis=axis).numpy())
    assert all(b.tobytes() == bits[0].tobytes() for b in bits), f"case {i} backward: threads"
    out[f"bwd{i}"] = bits[0]
    ly, bits = ty.tensor(out[f"lsm{i}"]), []
    for n in (1, 2, 3):
        ty.set_num_threads(n)
        bits.append(ty._C.ops["log_softmax_backward"](ly, g, axis=axis).numpy())
    assert all(b.tobytes() == bits[0].tobytes() for b in bits), f"case {i} log backward"
    out[f"lbwd{i}"] = bits[0]
np.savez(sys.argv[1], **out)
'''


def _run(isa, path):
    return run_isa_child(CHILD, isa, path)


def _ref_log_softmax(x, axis):
    x = x.astype(np.float64)
    if x.size == 0:
        return x
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("softmax")
    return {isa: _run(isa, d / f"{isa}.npz") for isa in isas_here()}


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_softmax_matches_float64_reference(isa, outputs):
    if isa not in outputs:
        pytest.skip(f"CPU without {isa}")
    got = outputs[isa]
    for i, (x, axis) in enumerate(_inputs()):
        lsm = _ref_log_softmax(x, axis)
        with np.errstate(invalid="ignore", over="ignore"):
            sm = np.exp(lsm)
            lsm = lsm.astype(np.float32)  # beyond float's range is -inf there too
        y, ly = got[f"sm{i}"], got[f"lsm{i}"]
        assert y.dtype == np.float32 and y.shape == x.shape and ly.shape == x.shape
        np.testing.assert_allclose(y, sm, rtol=2e-5, atol=1e-38, err_msg=f"softmax case {i}")
        np.testing.assert_allclose(ly, lsm, rtol=1e-6, atol=2e-5, err_msg=f"log case {i}")
        y64 = y.astype(np.float64)
        g = np.random.default_rng(i).standard_normal(x.shape).astype(np.float32)
        with np.errstate(invalid="ignore"):
            dx = y64 * (g - np.sum(g * y64, axis=axis, keepdims=True)) if x.ndim else 0 * y64
        np.testing.assert_allclose(got[f"bwd{i}"], dx, rtol=1e-5, atol=1e-6,
                                   err_msg=f"backward case {i}")
        with np.errstate(invalid="ignore", over="ignore"):
            e = np.exp(ly.astype(np.float64))
            ldx = g - e * np.sum(g, axis=axis, keepdims=True) if x.ndim else g - e * g
        np.testing.assert_allclose(got[f"lbwd{i}"], ldx, rtol=1e-5, atol=2e-6,
                                   err_msg=f"log backward case {i}")


def test_special_rows_follow_the_reference(outputs):
    n = len(_inputs())
    for isa, got in outputs.items():
        y = got[f"sm{n - 4}"]
        assert y[0, 1] == 0 and y[0, 3] == 0 and np.isnan(y[1:4]).all(), isa
        assert np.isneginf(got[f"lsm{n - 4}"][0, [1, 3]]).all(), isa


@pytest.mark.parametrize("isa,flag", [("avx2", "avx2"), ("avx512", "avx512f")])
def test_forced_vector_path_is_not_the_generic_loop(isa, flag, outputs):
    """The vector exp and lane sums round differently from libm's expf somewhere in these
    inputs, which shows TY_ISA picked a path of its own."""
    if isa not in outputs:
        pytest.skip(f"CPU without {flag}")
    differ = [k for k in outputs[isa]
              if outputs[isa][k].tobytes() != outputs["generic"][k].tobytes()]
    assert differ


def _fused_backward_runs(fn, fused, x0, g0, dtype):
    """Backward of fn(x) with the gradient g0 at 1, 2 and 3 threads: each run's op counts hold
    one `fused` op and no sum; returns (y, dx) of the first run after checking every run gave
    the same bits."""
    import tianyuan as ty
    from tianyuan.autodiff import GradManager
    saved, runs = ty.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            ty.set_num_threads(threads)
            x = ty.Parameter(x0, dtype=dtype)
            gm = GradManager().attach([x])

            def step():
                with gm:
                    y = fn(x)
                    gm.backward(y, ty.tensor(g0, dtype=dtype))
                return y.numpy(), x.grad.numpy()
            counts, run = op_counts(step)
            assert counts.get(fused) == 1 and "sum" not in counts, counts
            runs.append(run)
    finally:
        ty.set_num_threads(saved)
    assert all(dx.tobytes() == runs[0][1].tobytes() for _, dx in runs)
    return runs[0]


@pytest.mark.parametrize("shape,axis", [((4, 300), 1), ((3, 50, 7), 1), ((2, 5), 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_softmax_gradient_is_one_fused_op(shape, axis, dtype):
    """A first-order backward runs softmax_backward alone; its result is the float64
    reference y * (g - sum(g * y)), and the same at 1, 2 and 3 threads."""
    import tianyuan.functional as F
    rng = np.random.default_rng(3)
    x0, g0 = rng.standard_normal(shape), rng.standard_normal(shape)
    y, dx = _fused_backward_runs(lambda x: F.softmax(x, axis=axis), "softmax_backward", x0, g0,
                                 dtype)
    yr = y.astype(np.float64)
    want = yr * (g0 - np.sum(g0 * yr, axis=axis, keepdims=True))
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=1e-6 if dtype == "float32" else 0)


@pytest.mark.parametrize("shape,axis", [((4, 300), 1), ((3, 50, 7), 1), ((2, 5), 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_log_softmax_gradient_is_one_fused_op(shape, axis, dtype):
    """A first-order backward runs log_softmax_backward alone; its result is the float64
    reference g - exp(y) * sum(g) and the finite-difference gradient of sum(g * log_softmax(x))
    (float64), and the same at 1, 2 and 3 threads."""
    import tianyuan as ty
    import tianyuan.functional as F
    rng = np.random.default_rng(4)
    x0, g0 = rng.standard_normal(shape), rng.standard_normal(shape)
    y, dx = _fused_backward_runs(lambda x: F.logsoftmax(x, axis=axis), "log_softmax_backward",
                                 x0, g0, dtype)
    want = g0 - np.exp(y.astype(np.float64)) * np.sum(g0, axis=axis, keepdims=True)
    np.testing.assert_allclose(dx, want, rtol=1e-5, atol=2e-6 if dtype == "float32" else 0)
    if dtype == "float64":  # central differences of f(x) = sum(g * log_softmax(x))
        def f(v):
            return float(np.sum(g0 * F.logsoftmax(ty.tensor(v, dtype="float64"), axis=axis).numpy()))
        h, idxs = 1e-6, list(np.ndindex(*shape))[:24]
        num = []
        for idx in idxs:
            e = np.zeros(shape)
            e[idx] = h
            num.append((f(x0 + e) - f(x0 - e)) / (2 * h))
        np.testing.assert_allclose([dx[i] for i in idxs], num, rtol=1e-6, atol=1e-7)
