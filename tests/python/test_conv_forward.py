"""conv2d forward, float32, through every algorithm the op chooses (im2col panels packed from
the image, 1x1 as a plain GEMM, Winograd F(2,3) and F(4,3) for larger 3x3 stride-1 layers, the
direct kernel for strided layers with short window sums and for small planes on AVX2/AVX-512),
against a float64 reference; the same bits with 1 and 2 threads, and deployed. The kernels'
own edge cases (tile tails, every ISA) are in tests/c/test_conv_kernels.c."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference
from _cpu import cpu_flags


def _ref(x, w, stride, padding, dilation, groups):
    """Direct convolution in float64 as a sum over the kernel taps of strided slices."""
    n, c, h, wd = x.shape
    oc, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    y = np.zeros((n, oc, oh, ow))
    ocg = oc // groups
    for g in range(groups):
        xs, ws = xp[:, g * cg:(g + 1) * cg], w[g * ocg:(g + 1) * ocg].astype(np.float64)
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                y[:, g * ocg:(g + 1) * ocg] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return y


# (x shape, weight shape, stride, padding, dilation, groups)
CASES = [
    # im2col panels: output widths off the 32-column panels, channel counts off the 12-row tiles
    ((1, 3, 13, 11), (5, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((2, 5, 9, 10), (7, 5, 3, 2), (2, 1), (0, 1), (1, 1), 1),
    ((1, 4, 12, 10), (3, 4, 5, 3), (1, 2), (2, 1), (1, 3), 1),
    ((1, 2, 4, 4), (2, 2, 4, 4), (1, 1), (3, 3), (1, 1), 1),         # padding wider than taps
    ((3, 6, 7, 5), (6, 2, 2, 3), (3, 1), (0, 2), (3, 1), 3),         # groups, batch 3
    ((1, 3, 40, 40), (16, 3, 7, 7), (2, 2), (3, 3), (1, 1), 1),      # a 7x7/2 stem
    ((3, 3, 33, 38), (20, 3, 7, 7), (2, 2), (3, 3), (1, 1), 1),      # stems, batches of 3, 2
    ((2, 3, 31, 30), (32, 3, 3, 3), (2, 2), (1, 1), (1, 1), 1),
    ((1, 13, 30, 30), (37, 13, 3, 3), (2, 2), (1, 1), (1, 1), 1),    # threaded GEMM
    ((1, 2, 30, 3), (3, 2, 1, 9), (1, 2), (0, 4), (1, 1), 1),        # kernel wider than 8
    # 1x1: planes of up to 64 output pixels (256 when narrowing) take the unpacked direct_1x1
    # kernel (AVX2/AVX-512; strided: the image subsampled first), others read the image as the
    # GEMM operand (strided: packed from it)
    ((2, 9, 7, 6), (11, 9, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((1, 24, 14, 14), (40, 24, 1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((1, 130, 7, 7), (25, 130, 1, 1), (1, 1), (0, 0), (1, 1), 1),    # channels off the tile
    ((3, 16, 9, 9), (20, 16, 1, 1), (1, 1), (0, 0), (1, 1), 1),      # 81 pixels: GEMM
    ((2, 40, 14, 14), (23, 40, 1, 1), (1, 1), (0, 0), (1, 1), 1),    # narrowing, 196 pixels
    ((1, 4, 1, 1), (3, 4, 3, 3), (1, 1), (1, 1), (1, 1), 1),         # one pixel, all padding
    ((0, 3, 8, 8), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1),         # empty batch
    ((1, 0, 8, 8), (4, 0, 3, 3), (1, 1), (1, 1), (1, 1), 1),         # no input channels
    # Winograd F(4,3): ResNet's 64-channel 3x3 at 28x28, tile tails, batch 2, two groups
    ((1, 64, 28, 28), (64, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((2, 96, 30, 29), (96, 96, 3, 3), (1, 1), (1, 1), (1, 1), 1),    # tile tails
    ((1, 128, 28, 28), (128, 64, 3, 3), (1, 1), (1, 1), (1, 1), 2),
    ((1, 96, 26, 24), (96, 96, 3, 3), (1, 1), (0, 1), (1, 1), 1),
    ((5, 64, 32, 32), (64, 64, 3, 3), (1, 1), (1, 1), (1, 1), 1),      # two chunks of images
    # Winograd F(2,3): 192 channels at 14x14, two images
    ((2, 192, 14, 14), (192, 192, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    # direct with output channels in the lanes (AVX-512, batch 1, at most 196 pixels; Winograd
    # elsewhere): 64 + 6 channels, pixel tails
    ((1, 24, 13, 12), (70, 24, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    # direct (AVX2/AVX-512): 7x7 planes (wide pixels 63, 56), channels off the 6-row tile,
    # batch 2, two groups; a 3x3/2 layer of many channels stays on im2col
    ((2, 40, 7, 7), (45, 40, 3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 32, 14, 14), (14, 16, 3, 3), (2, 2), (1, 1), (1, 1), 2),
    ((1, 64, 20, 20), (24, 64, 3, 3), (2, 2), (1, 1), (1, 1), 1),
]


def _run(x, w, stride, padding, dilation, groups, threads):
    saved = ty.get_num_threads()
    ty.set_num_threads(threads)
    try:
        return F.conv2d(ty.tensor(x), ty.tensor(w), stride=stride, padding=padding,
                        dilation=dilation, groups=groups).numpy()
    finally:
        ty.set_num_threads(saved)


# strided 1x1 layers: im2col panels (batch 1, 15x15 out), subsampled for direct_1x1 (uneven
# strides, odd sizes; two images); padded (im2col panels); batch 2 of 15x15 side by side
MORE_1X1_CASES = [
    ((1, 8, 30, 30), (12, 8, 1, 1), (2, 2), (0, 0), (1, 1), 1),
    ((2, 10, 11, 9), (7, 10, 1, 1), (3, 2), (0, 0), (1, 1), 1),
    ((1, 6, 9, 9), (5, 6, 1, 1), (2, 2), (1, 1), (1, 1), 1),
    ((2, 8, 30, 29), (12, 8, 1, 1), (2, 2), (0, 0), (1, 1), 1),
    # stride 1: 7x7 with 260 output channels (direct_1x1 on the image copied to rows of 64
    # floats); narrowing 14x14 with 130 (the GEMM)
    ((1, 20, 7, 7), (260, 20, 1, 1), (1, 1), (0, 0), (1, 1), 1),
    ((1, 150, 14, 14), (130, 150, 1, 1), (1, 1), (0, 0), (1, 1), 1),
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CASES + MORE_1X1_CASES)
def test_conv2d_forward_matches_float64_and_thread_count_keeps_bits(xs, ws, stride, padding,
                                                                    dilation, groups):
    rng = np.random.default_rng(sum(xs) + sum(ws))
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    y1 = _run(x, w, stride, padding, dilation, groups, 1)
    y2 = _run(x, w, stride, padding, dilation, groups, 2)
    want = _ref(x, w, stride, padding, dilation, groups)
    bound = _ref(np.abs(x), np.abs(w), stride, padding, dilation, groups)
    assert y1.shape == want.shape
    assert np.all(np.abs(y1 - want) <= 1e-5 * bound + 1e-6)
    assert y1.tobytes() == y2.tobytes()


# one layer per algorithm: implicit im2col, direct_1x1, 1x1 GEMM, Winograd F(4,3), Winograd
# F(2,3), direct (strided at batch 1 and 3, small plane, channels in the lanes); a strided 1x1
# layer subsampled for direct_1x1, one packed for the GEMM, a 7x7 one copied for direct_1x1
DEPLOY_CASES = [CASES[-1], CASES[10], CASES[13], CASES[18], CASES[23], CASES[5], CASES[6],
                CASES[-3], CASES[24], MORE_1X1_CASES[1], MORE_1X1_CASES[0], MORE_1X1_CASES[4]]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", DEPLOY_CASES)
def test_deployed_conv2d_has_the_eager_bits(xs, ws, stride, padding, dilation, groups):
    """Traced, dumped and run by the C runtime, every algorithm gives eager's bits: the choice
    depends on the shapes only, on both sides, and weights packed once for a deployed model
    (the direct kernel's lanes path) give the bits of the per-call packing."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal(xs).astype(np.float32)
    w = ty.tensor(rng.standard_normal(ws).astype(np.float32))

    def f(inp):
        return F.conv2d(inp, w, stride=stride, padding=padding, dilation=dilation,
                        groups=groups)

    traced = trace(f, capture_as_const=True)
    traced(ty.tensor(x))
    buf = io.BytesIO()
    traced.dump(buf)
    deployed = GraphInference(buf.getvalue())
    want = f(ty.tensor(x)).numpy().tobytes()
    for _ in range(2):  # the second run reads what the first kept of the constant weights
        (got,) = deployed.run(x).values()
        assert got.tobytes() == want


# A child per TY_ISA (read once at start): a 7x7/2 stem and a 7x7-plane layer, which take the
# direct kernel on AVX2 and AVX-512 and im2col on generic, and 1x1 layers at 7x7 (direct_1x1,
# or the GEMM on generic; one strided, its image subsampled), at 1, 2 and 3 threads.
ISA_LAYERS = [((1, 3, 30, 28), (10, 3, 7, 7), 2, 3), ((2, 20, 7, 7), (13, 20, 3, 3), 1, 1),
              ((2, 40, 7, 7), (13, 40, 1, 1), 1, 0), ((1, 24, 14, 13), (13, 24, 1, 1), 2, 0)]
ISA_CHILD = "LAYERS = " + repr(ISA_LAYERS) + r'''
import sys
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
rng = np.random.default_rng(3)
outs = []
for xs, ws, s, p in LAYERS:
    x = rng.standard_normal(xs).astype(np.float32)
    w = rng.standard_normal(ws).astype(np.float32)
    ys = []
    for t in (1, 2, 3):
        ty.set_num_threads(t)
        ys.append(F.conv2d(ty.tensor(x), ty.tensor(w), stride=s, padding=p).numpy())
    assert all(y.tobytes() == ys[0].tobytes() for y in ys), "thread count changed the bits"
    outs.append(ys[0])
np.savez(sys.argv[1], *outs)
'''


def _isa_run(isa, path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, TY_ISA=isa)
    env["PYTHONPATH"] = os.path.join(root, "python") + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", ISA_CHILD, str(path)], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    with np.load(path) as z:
        return [z[k] for k in sorted(z.files)]


def test_direct_layers_match_float64_on_every_isa_and_avx2_equals_avx512(tmp_path):
    flags = cpu_flags()
    isas = ["generic"] + [i for i, f in (("avx2", "avx2"), ("avx512", "avx512f")) if f in flags]
    got = {isa: _isa_run(isa, tmp_path / f"{isa}.npz") for isa in isas}
    rng = np.random.default_rng(3)
    for i, (xs, ws, s, p) in enumerate(ISA_LAYERS):
        x = rng.standard_normal(xs).astype(np.float32)
        w = rng.standard_normal(ws).astype(np.float32)
        want = _ref(x, w, (s, s), (p, p), (1, 1), 1)
        bound = _ref(np.abs(x), np.abs(w), (s, s), (p, p), (1, 1), 1)
        for isa in isas:
            assert np.all(np.abs(got[isa][i] - want) <= 1e-5 * bound + 1e-6), isa
        if "avx2" in got and "avx512" in got:   # one fma chain per output on both
            assert got["avx2"][i].tobytes() == got["avx512"][i].tobytes()


@pytest.mark.parametrize("cin, hw", [(96, 7), (24, 56)])
def test_direct_1x1_with_bias_batch_norm_and_relu6_deploys_with_the_eager_bits(cin, hw):
    """A MobileNetV2 projection-and-expansion pair (at 7x7 the direct_1x1 kernel; at 56x56 the
    1x1 GEMM, whose 150 x 3136 output takes the chain tile by tile and the 40 x 3136 one in a
    pass after) with its fused bias, the batch-norm chain and relu6 run on its finished tiles
    when traced: eager, traced and deployed give the same bits, near a float64 reference."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, cin, hw, hw)).astype(np.float32)
    w1, b1 = rng.standard_normal((40, cin, 1, 1)) * 0.1, rng.standard_normal(40)
    w2 = rng.standard_normal((150, 40, 1, 1)) * 0.2
    mean, scale, beta = rng.standard_normal(150), rng.random(150) + 0.5, rng.standard_normal(150)
    t = {k: ty.tensor(np.asarray(v, np.float32)) for k, v in
         dict(w1=w1, b1=b1.reshape(1, -1, 1, 1), w2=w2, mean=mean.reshape(1, -1, 1, 1),
              scale=scale.reshape(1, -1, 1, 1), beta=beta.reshape(1, -1, 1, 1)).items()}

    def f(inp):
        y = F.conv2d(inp, t["w1"], t["b1"])
        y = F.conv2d(y, t["w2"])
        return F.relu6((y - t["mean"]) * t["scale"] + t["beta"])

    eager = f(ty.tensor(x)).numpy()
    traced = trace(f, capture_as_const=True)
    assert traced(ty.tensor(x)).numpy().tobytes() == eager.tobytes()
    assert traced(ty.tensor(x)).numpy().tobytes() == eager.tobytes()
    buf = io.BytesIO()
    traced.dump(buf)
    (got,) = GraphInference(buf.getvalue()).run(x).values()
    assert got.tobytes() == eager.tobytes()
    f32 = {k: np.asarray(v, np.float32).astype(np.float64) for k, v in
           dict(w1=w1, b1=b1, w2=w2, mean=mean, scale=scale, beta=beta).items()}
    h = np.einsum("nchw,oc->nohw", x, f32["w1"][:, :, 0, 0]) + f32["b1"][None, :, None, None]
    y = np.einsum("nchw,oc->nohw", h, f32["w2"][:, :, 0, 0])
    want = np.clip((y - f32["mean"][None, :, None, None]) * f32["scale"][None, :, None, None]
                   + f32["beta"][None, :, None, None], 0, 6)
    assert np.allclose(eager, want, rtol=1e-4, atol=1e-4)
    assert 0 < np.count_nonzero(eager == 6) < eager.size   # relu6 clips on both sides
