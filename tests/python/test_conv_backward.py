"""conv2d backward-data and backward-filter, float32, through each of their paths, against a
float64 reference; bitwise the same at 1, 2 and 3 threads, and eager = traced for a training
step. The paths (src/ops/conv.c):
- backward-data, 3x3 stride 1 with 128 or more channels on both sides, at most 64 pixels
  and 2 or more images: Winograd F(2x2, 3x3) over dy's tiles; stride 1 with padding <= dilation*(k-1) where the
  forward of dy with the flipped weight takes Winograd: that forward; otherwise w^T @ dy and col2im, with small
  images batched side by side in one GEMM (one image of at most 256 pixels with at least as
  many output channels as col rows, 1x1 too: dy^T @ w, turned);
- backward-filter, batch >= 2: up to 4 image ranges fixed by the shape, each one GEMM of dy
  against col packed tap-major from pixel-major copies (1x1 stride 1: a GEMM per image on x;
  3x3 stride 1 with 128 channels or more on both sides: Winograd F(2x2, 3x3) instead; at
  most 8 channels and 256 columns: a GEMM per image piece with dy read in place, the ranges
  cutting the pixels, so a stem at batch 1 splits its image; 1x1 stride 1
  with fewer output than input channels: x @ dy^T, transposed after),
  partials added in range order; batch 1: the same for images of 512 or more output
  pixels, else im2col and one GEMM;
- forward: small images batched side by side in one GEMM (with the fused epilogue)."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C
import ops.op_db  # noqa: F401  (loads the family modules in order)
from _cpu import cpu_flags
from ops.op_db_matmul import _c_params, _conv_bwd_data_ref, _conv_bwd_filter_ref, _conv_ref

# (x shape, weight shape, stride, padding, dilation, groups)
CASES = [
    ((2, 6, 9, 7), (5, 6, 3, 3), 1, 1, 1, 1),        # stride 1, odd non-square images
    ((3, 4, 8, 6), (4, 2, 3, 2), 1, (1, 0), 1, 2),   # groups, non-square kernel
    ((2, 5, 11, 9), (4, 5, 3, 3), 1, 2, 2, 1),       # dilation
    ((1, 5, 7, 7), (3, 5, 3, 3), 1, 0, 1, 1),        # no padding, batch 1
    ((13, 8, 7, 7), (7, 8, 1, 1), 1, 0, 1, 1),       # 1x1: batches of 11 images + a tail of 2
    ((4, 3, 6, 5), (8, 3, 3, 3), 1, 1, 1, 1),        # expanding
    ((3, 3, 6, 6), (4, 3, 1, 1), 1, 1, 1, 1),        # padding past the taps: col2im
    ((13, 6, 14, 13), (7, 6, 3, 3), 2, 1, 1, 1),     # stride 2: batched col2im, odd sizes
    ((5, 4, 9, 8), (6, 2, 2, 3), (2, 3), (0, 1), 1, 2),  # strides differ, groups
    ((1, 3, 10, 10), (4, 3, 3, 3), 2, 1, 1, 1),      # stride 2, batch 1
    ((1, 4, 25, 23), (5, 4, 3, 3), 1, 1, 1, 1),      # batch 1, 575 pixels: packed filter GEMM
    ((6, 8, 16, 16), (8, 2, 3, 3), 1, 1, 1, 4),      # 4 groups: one GEMM per group
    ((7, 16, 16, 16), (16, 16, 3, 3), 1, 1, 1, 1),   # 3 filter ranges of 2-3 images
    ((3, 20, 9, 9), (10, 20, 3, 3), 1, 1, 1, 1),     # filter panels across taps (20 channels)
    ((32, 24, 4, 4), (40, 24, 3, 3), 1, 1, 1, 1),    # ResNet's 4x4 layer: one GEMM for 32
    ((2, 128, 14, 14), (128, 128, 3, 3), 1, 1, 1, 1),  # flipped into Winograd
    ((2, 256, 13, 10), (256, 128, 3, 3), 1, 1, 1, 2),  # flipped, groups, odd sizes
    ((2, 96, 12, 11), (96, 96, 3, 3), 1, 0, 1, 1),   # flipped, no padding (pad 2 flipped)
    ((5, 128, 9, 7), (136, 128, 3, 3), 1, 0, 1, 1),  # Winograd filter gradient, odd tiles
    ((4, 144, 5, 6), (128, 144, 3, 3), 1, 2, 1, 1),  # Winograd filter gradient, padding 2
    ((1, 3, 46, 45), (8, 3, 7, 7), 2, 3, 1, 1),      # a stem at batch 1: few-channel filter
    ((1, 3, 96, 90), (8, 3, 7, 7), 2, 3, 1, 1),      # the same, 4 ranges cutting output rows
    ((2, 3, 64, 62), (5, 3, 3, 3), 2, 1, 1, 1),      # 2 images, 3 ranges sharing their copies
    ((1, 4, 50, 49), (6, 2, 3, 3), 1, 1, 1, 2),      # few channels per group, 4 ranges each
    ((5, 3, 24, 23), (4, 3, 3, 3), 1, 1, 1, 1),      # 5 images, 4 ranges cutting images
    ((9, 10, 33, 31), (12, 10, 1, 1), 2, 0, 1, 1),   # 1x1/2 downsample, 4 ranges
    ((4, 8, 40, 37), (6, 4, 1, 1), (2, 3), 0, 1, 2),  # 1x1, strides differ, groups, 2 ranges
    ((3, 7, 12, 11), (5, 7, 5, 3), 1, (2, 1), (1, 2), 1),  # few channels, dilated columns
    ((1, 128, 7, 6), (128, 128, 3, 3), 1, 1, 1, 1),  # one image: col2im, not Winograd over dy
    ((1, 24, 9, 8), (10, 24, 1, 1), 1, 0, 1, 1),     # 1x1, fewer outputs: filter transposed
    ((2, 16, 5, 5), (8, 4, 1, 1), 1, 0, 1, 4),       # the same per group, images added
    ((1, 7, 40, 38), (6, 7, 5, 5), 2, 2, 1, 1),      # one image: col2im threaded by channels
    ((1, 20, 9, 7), (36, 20, 1, 1), 1, 0, 1, 1),     # one small image, 1x1: dx^T = dy^T @ w
    ((1, 12, 6, 5), (18, 6, 1, 1), 1, 0, 1, 2),      # the same per group
    ((1, 4, 9, 8), (40, 4, 3, 3), 2, 1, 1, 1),       # one small image, 3x3/2: col^T = dy^T @ w
]


def _arrays(xs, ws, stride, padding, dilation, groups):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    dy_shape = _conv_ref(x[:1, :, :, :], w, stride, padding, dilation, groups).shape
    dy = rng.standard_normal((xs[0],) + dy_shape[1:]).astype(np.float32)
    return x, w, dy


def _at_threads(n, fn):
    saved = ty.get_num_threads()
    ty.set_num_threads(n)
    try:
        return fn()
    finally:
        ty.set_num_threads(saved)


def _bwd_data(w, dy, x, kw):
    return _C.ops["conv2d_backward_data"](ty.tensor(w), ty.tensor(dy), ty.tensor(x),
                                          **_c_params(**kw)).numpy()


def _bwd_filter(x, dy, w, kw):
    return _C.ops["conv2d_backward_filter"](ty.tensor(x), ty.tensor(dy), ty.tensor(w),
                                            **_c_params(**kw)).numpy()


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_backward_data_matches_float64_and_keeps_bits_at_any_thread_count(
        xs, ws, stride, padding, dilation, groups):
    x, w, dy = _arrays(xs, ws, stride, padding, dilation, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = [_at_threads(n, lambda: _bwd_data(w, dy, x, kw)) for n in (1, 2, 3)]
    want = _conv_bwd_data_ref(w.astype(np.float64), dy, xs, **kw)
    bound = _conv_bwd_data_ref(np.abs(w).astype(np.float64), np.abs(dy), xs, **kw)
    assert got[0].shape == xs
    assert np.all(np.abs(got[0] - want) <= 1e-5 * bound + 1e-6)
    assert got[1].tobytes() == got[0].tobytes()
    assert got[2].tobytes() == got[0].tobytes()


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_backward_filter_matches_float64_and_keeps_bits_at_any_thread_count(
        xs, ws, stride, padding, dilation, groups):
    x, w, dy = _arrays(xs, ws, stride, padding, dilation, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = [_at_threads(n, lambda: _bwd_filter(x, dy, w, kw)) for n in (1, 2, 3)]
    want = _conv_bwd_filter_ref(x.astype(np.float64), dy, ws, **kw)
    bound = _conv_bwd_filter_ref(np.abs(x).astype(np.float64), np.abs(dy), ws, **kw)
    assert got[0].shape == ws
    assert np.all(np.abs(got[0] - want) <= 1e-5 * bound + 1e-6)
    assert got[1].tobytes() == got[0].tobytes()
    assert got[2].tobytes() == got[0].tobytes()


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES)
def test_forward_matches_float64_and_keeps_bits_at_any_thread_count(
        xs, ws, stride, padding, dilation, groups):
    x, w, _ = _arrays(xs, ws, stride, padding, dilation, groups)
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    got = [_at_threads(n, lambda: F.conv2d(ty.tensor(x), ty.tensor(w), **kw).numpy())
           for n in (1, 2, 3)]
    want = _conv_ref(x.astype(np.float64), w, **kw)
    bound = _conv_ref(np.abs(x).astype(np.float64), np.abs(w), **kw)
    assert np.all(np.abs(got[0] - want) <= 1e-5 * bound + 1e-6)
    assert got[1].tobytes() == got[0].tobytes()
    assert got[2].tobytes() == got[0].tobytes()


def test_batched_forward_applies_the_fused_epilogue_per_image():
    """conv_bias with relu over small images batched side by side: each image's block is
    copied out after its bias and relu, with the bits of the separate ops."""
    rng = np.random.default_rng(3)
    x = ty.tensor(rng.standard_normal((13, 6, 7, 5)).astype(np.float32))
    w = ty.tensor(rng.standard_normal((9, 6, 3, 3)).astype(np.float32))
    b = ty.tensor(rng.standard_normal((1, 9, 1, 1)).astype(np.float32))
    fused = _C.ops["conv_bias"](x, w, b, mode=1, **_c_params(padding=1))
    separate = F.relu(F.conv2d(x, w, padding=1) + b)
    assert fused.numpy().tobytes() == separate.numpy().tobytes()
    assert (fused.numpy() >= 0).all() and (fused.numpy() == 0).any()


def test_training_step_gradients_eager_equal_traced():
    """A conv net's parameter gradients after a step, eager and traced, are bitwise equal
    (both run the same backward kernels, chosen from the shapes; the batch norm's fused
    forward and backward ops included)."""
    import tianyuan.module as M
    from tianyuan.autodiff import GradManager
    from tianyuan.jit import trace

    def make():
        ty.random.seed(5)
        return M.Sequential(M.Conv2d(3, 8, 3, 1, 1), M.BatchNorm2d(8), M.ReLU(),
                            M.Conv2d(8, 16, 3, 2, 1), M.ReLU(), M.Conv2d(16, 16, 1))

    rng = np.random.default_rng(1)
    x = ty.tensor(rng.standard_normal((12, 3, 9, 9)).astype(np.float32))
    grads = []
    for traced in (False, True):
        net = make()
        gm = GradManager().attach(net.parameters())

        def step(x):
            with gm:
                loss = (net(x) ** 2).mean()
                gm.backward(loss)
            return loss

        fn = trace(step) if traced else step
        for _ in range(2):  # a trace records on its first call and replays on the second
            for p in net.parameters():
                p.grad = None
            fn(x)
        grads.append([p.grad.numpy().tobytes() for p in net.parameters()])
    assert grads[0] == grads[1]


@pytest.mark.parametrize("xs,ws", [((2, 96, 12, 11), (96, 96, 3, 3)),
                                   ((2, 128, 7, 6), (128, 128, 3, 3))])
def test_backward_data_with_an_infinite_weight_matches_the_scatter(xs, ws):
    """A layer whose backward-data would run as the flipped forward (Winograd) or as Winograd
    over dy (128 channels, small images) but whose weight holds an infinity takes w^T @ dy
    and col2im instead: the zero padding would multiply the infinity (0 * inf is NaN) where
    the scatter makes no such product."""
    x, w, dy = _arrays(xs, ws, 1, 1, 1, 1)
    w[5, 7, 0, 2] = np.inf
    kw = dict(stride=1, padding=1, dilation=1, groups=1)
    got = _bwd_data(w, dy, x, kw)
    with np.errstate(invalid="ignore"):
        want = _conv_bwd_data_ref(w.astype(np.float64), dy, xs, **kw)
    assert np.isinf(want).any()
    assert (np.isnan(got) == np.isnan(want)).all() and (np.isinf(got) == np.isinf(want)).all()
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-3)


def test_float64_backward_data_of_one_image_keeps_bits_at_any_thread_count():
    """One image's col2im runs threaded by channels in float64 too: the float64 reference's
    values, and the same bits at 1, 2 and 3 threads."""
    rng = np.random.default_rng(4)
    w, dy, xs = rng.standard_normal((6, 7, 5, 5)), rng.standard_normal((1, 6, 20, 19)), (1, 7, 40, 38)
    kw = dict(stride=2, padding=2, dilation=1, groups=1)
    t = [ty.tensor(a, dtype="float64") for a in (w, dy, np.zeros(xs))]
    got = [_at_threads(n, lambda: _C.ops["conv2d_backward_data"](*t, **_c_params(**kw)).numpy())
           for n in (1, 2, 3)]
    want = _conv_bwd_data_ref(w, dy, xs, **kw)
    assert got[0].dtype == np.float64
    np.testing.assert_allclose(got[0], want, rtol=1e-12, atol=1e-12)
    assert got[1].tobytes() == got[0].tobytes() and got[2].tobytes() == got[0].tobytes()


# The filter gradient's split paths in a child per TY_ISA (read once at start): a stem at
# batch 1 (4 ranges cutting its image), two images in 3 ranges, a 1x1/2 downsample; each at 1,
# 2 and 3 threads.
ISA_FILTER_CASES = [((1, 3, 96, 90), (8, 3, 7, 7), 2, 3), ((2, 3, 64, 62), (5, 3, 3, 3), 2, 1),
                    ((9, 10, 33, 31), (12, 10, 1, 1), 2, 0)]
ISA_FILTER_CHILD = r"""
import sys
import numpy as np
import tianyuan as ty
from tianyuan import _C
cases, outs = eval(sys.argv[2]), []
for xs, ws, s, p in cases:
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x, w = (ty.tensor(rng.standard_normal(a).astype(np.float32)) for a in (xs, ws))
    oh, ow = ((xs[2] + 2 * p - ws[2]) // s + 1, (xs[3] + 2 * p - ws[3]) // s + 1)
    dy = ty.tensor(rng.standard_normal((xs[0], ws[0], oh, ow)).astype(np.float32))
    kw = dict(stride_h=s, stride_w=s, pad_h=p, pad_w=p, dilate_h=1, dilate_w=1, groups=1)
    got = []
    for t in (1, 2, 3):
        ty.set_num_threads(t)
        got.append(_C.ops["conv2d_backward_filter"](x, dy, w, **kw).numpy())
    assert all(g.tobytes() == got[0].tobytes() for g in got), "thread count changed the bits"
    outs.append((x.numpy(), dy.numpy(), got[0]))
np.savez(sys.argv[1], *[a for o in outs for a in o])
"""


def _isa_filter_run(isa, path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pydir = os.environ.get("TY_PYTHON_DIR") or os.path.join(root, "python")  # ASan build's
    env = dict(os.environ, TY_ISA=isa)
    env["PYTHONPATH"] = pydir + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", ISA_FILTER_CHILD, str(path),
                        repr(ISA_FILTER_CASES)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def test_split_filter_gradients_match_float64_on_every_isa(tmp_path):
    flags = cpu_flags()
    isas = ["generic"] + [i for i, f in (("avx2", "avx2"), ("avx512", "avx512f")) if f in flags]
    for isa in isas:
        got = _isa_filter_run(isa, tmp_path / f"{isa}.npz")
        for i, (xs, ws, s, p) in enumerate(ISA_FILTER_CASES):
            x, dy, dw = got[3 * i:3 * i + 3]
            kw = dict(stride=s, padding=p, dilation=1, groups=1)
            want = _conv_bwd_filter_ref(x.astype(np.float64), dy, ws, **kw)
            bound = _conv_bwd_filter_ref(np.abs(x).astype(np.float64), np.abs(dy), ws, **kw)
            assert dw.shape == ws
            assert np.all(np.abs(dw - want) <= 1e-5 * bound + 1e-6), (isa, xs, ws)
