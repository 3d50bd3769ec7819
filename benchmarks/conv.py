"""Dense 2-D convolution on the CPU: every distinct conv layer of ResNet-18 (batch 1
and 32) and the dense (non-depthwise) layers of MobileNetV2 (batch 1), Tianyuan vs
torch.nn.functional.conv2d (forward) and torch's convolution_backward (--backward: the input
gradient and the weight gradient, each timed alone, the way autograd calls them). Milliseconds per call (best of rounds; Tianyuan and PyTorch take
turns each round, because the shared VM has bursts of other load), ratio (> 1: Tianyuan is
faster), GFLOP/s of each side and the algorithm Tianyuan chose.

    PYTHONPATH=python .venv/bin/python benchmarks/conv.py [--threads 2] [--rounds 3] [--quick]
        [--cpu-time] [--fastrun] [--backward] [--cifar]

--backward adds backward-data (dx from w and dy) and backward-filter (dw from x and dy) rows
for every layer, with the geometric means of each direction.

--cifar times the conv layers of the CIFAR ResNet-18 of train_cifar_resnet.py (32x32 input,
batch 32) instead.

--cpu-time times with the process's CPU time instead of the wall clock (with --threads 1 only:
it is the compute a call costs however busy the machine is, where wall times on a loaded VM
mostly measure the load).

--fastrun adds a column timed with fast-run on (config.benchmark_kernel: each layer's
algorithms profiled on its first call) and the algorithm fast-run kept, read back from its
cache file (TY_FASTRUN_CACHE, a fresh temporary file unless set). Each layer's forward is
timed with fast-run off and on in turn, right after each other, so a load burst on the
shared machine hits both columns alike; "fr/heur" is their ratio (> 1: fast-run slower).
"""
import argparse
import json
import math
import os
import sys
import time

# numpy is only the data source here; its OpenBLAS threads would otherwise spin on our cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from _peer import machine_line, run_peer  # noqa: E402

# (name, C, H, OC, kernel, stride, pad): square images and kernels
RESNET18 = [
    ("r18 conv1 7x7/2", 3, 224, 64, 7, 2, 3),
    ("r18 l1 3x3", 64, 56, 64, 3, 1, 1),
    ("r18 l2 3x3/2", 64, 56, 128, 3, 2, 1),
    ("r18 l2 3x3", 128, 28, 128, 3, 1, 1),
    ("r18 l2 1x1/2 ds", 64, 56, 128, 1, 2, 0),
    ("r18 l3 3x3/2", 128, 28, 256, 3, 2, 1),
    ("r18 l3 3x3", 256, 14, 256, 3, 1, 1),
    ("r18 l3 1x1/2 ds", 128, 28, 256, 1, 2, 0),
    ("r18 l4 3x3/2", 256, 14, 512, 3, 2, 1),
    ("r18 l4 3x3", 512, 7, 512, 3, 1, 1),
    ("r18 l4 1x1/2 ds", 256, 14, 512, 1, 2, 0),
]
MOBILENET_V2 = [
    ("mv2 stem 3x3/2", 3, 224, 32, 3, 2, 1),
    ("mv2 1x1 32->16", 32, 112, 16, 1, 1, 0),
    ("mv2 1x1 16->96", 16, 112, 96, 1, 1, 0),
    ("mv2 1x1 96->24", 96, 56, 24, 1, 1, 0),
    ("mv2 1x1 24->144", 24, 56, 144, 1, 1, 0),
    ("mv2 1x1 144->24", 144, 56, 24, 1, 1, 0),
    ("mv2 1x1 144->32", 144, 28, 32, 1, 1, 0),
    ("mv2 1x1 32->192", 32, 28, 192, 1, 1, 0),
    ("mv2 1x1 192->32", 192, 28, 32, 1, 1, 0),
    ("mv2 1x1 192->64", 192, 14, 64, 1, 1, 0),
    ("mv2 1x1 64->384", 64, 14, 384, 1, 1, 0),
    ("mv2 1x1 384->64", 384, 14, 64, 1, 1, 0),
    ("mv2 1x1 384->96", 384, 14, 96, 1, 1, 0),
    ("mv2 1x1 96->576", 96, 14, 576, 1, 1, 0),
    ("mv2 1x1 576->96", 576, 14, 96, 1, 1, 0),
    ("mv2 1x1 576->160", 576, 7, 160, 1, 1, 0),
    ("mv2 1x1 160->960", 160, 7, 960, 1, 1, 0),
    ("mv2 1x1 960->160", 960, 7, 160, 1, 1, 0),
    ("mv2 1x1 960->320", 960, 7, 320, 1, 1, 0),
    ("mv2 1x1 320->1280", 320, 7, 1280, 1, 1, 0),
]

# the CIFAR ResNet-18 (32x32 input, 3x3 stride-1 stem, no max pool)
CIFAR_RESNET18 = [
    ("c18 stem 3x3", 3, 32, 64, 3, 1, 1),
    ("c18 l1 3x3", 64, 32, 64, 3, 1, 1),
    ("c18 l2 3x3/2", 64, 32, 128, 3, 2, 1),
    ("c18 l2 3x3", 128, 16, 128, 3, 1, 1),
    ("c18 l2 1x1/2 ds", 64, 32, 128, 1, 2, 0),
    ("c18 l3 3x3/2", 128, 16, 256, 3, 2, 1),
    ("c18 l3 3x3", 256, 8, 256, 3, 1, 1),
    ("c18 l3 1x1/2 ds", 128, 16, 256, 1, 2, 0),
    ("c18 l4 3x3/2", 256, 8, 512, 3, 2, 1),
    ("c18 l4 3x3", 512, 4, 512, 3, 1, 1),
    ("c18 l4 1x1/2 ds", 256, 8, 512, 1, 2, 0),
]
DIRECTIONS = ("fwd", "bwd-data", "bwd-filter")


def layers(quick, cifar=False):
    """(name, batch, C, H, OC, kernel, stride, pad) for every layer to time."""
    if cifar:
        return [(r[0], 32, *r[1:]) for r in CIFAR_RESNET18]
    out = [(r[0], 1, *r[1:]) for r in RESNET18]
    if not quick:
        out += [(r[0], 32, *r[1:]) for r in RESNET18]
        out += [(r[0], 1, *r[1:]) for r in MOBILENET_V2]
    return out


def out_size(h, k, s, p):
    return (h + 2 * p - k) // s + 1


def gflop(layer):
    _, b, c, h, oc, k, s, p = layer
    o = out_size(h, k, s, p)
    return 2.0 * b * oc * c * k * k * o * o / 1e9


def _lanes16(n):
    return -(-n // 16) * 16


def _wino_fuses(n, c, oc, t, m):
    """ty_conv_wino_fuses(): all images in one chunk, weights transformed in blocks."""
    ldu = c + 16 if c % 128 == 0 else c
    block = max(12, (1 << 20) // ((m + 2) ** 2 * ldu * 4) // 12 * 12)
    return -(-256 // t) >= n and oc > block


def _wino_cost(n, c, oc, oh, ow, m):
    a2 = (m + 2) ** 2
    t = -(-oh // m) * -(-ow // m)
    wcost = 16 if a2 * oc * c <= 1 << 20 else 24 if _wino_fuses(n, c, oc, t, m) else 96
    cols = n * t if n > 1 else _lanes16(t)
    scale = 1.0 if _avx512() else 0.5   # wino_pass_scale(): passes cost half on AVX2
    return a2 * oc * c * cols + scale * (wcost * a2 * oc * c + 48 * a2 * n * t * (c + oc))


def _avx512():
    """Whether conv.c's chooser sees AVX-512 (TY_ISA caps it)."""
    if os.environ.get("TY_ISA", "").lower() in ("generic", "avx2"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def algorithm(layer):
    """The algorithm conv_fwd_algo_for() in src/ops/conv.c picks for this float32 layer (one
    group); a copy of that function's rule, kept in step with it by hand."""
    _, b, c, h, oc, k, s, p = layer
    o = out_size(h, k, s, p)
    if k == 1 and p == 0:   # strided: chosen like the stride-1 layer of the subsampled image
        if not _avx512():   # AVX2: the panel kernel, but the GEMM for small planes' narrow
            if o * o > 64 or oc > c or c >= 512:  # non-widening layers below 512 channels
                return "direct-1x1"
            return "gemm-1x1" if s == 1 else "implicit-gemm"
        if o * o <= 64 or (o * o <= 256 and oc < c and oc <= 128):
            return "direct-1x1"
        return "gemm-1x1" if s == 1 else "implicit-gemm"
    sq = -(-(h + 2 * p) // s)
    direct = _avx512() and k > 1 and (s == 1 or b == 1) and (
        (s > 1 and c * k * k <= 256) or _lanes16((o - 1) * sq + o) <= 64)
    lanes2 = k == 3 and oc >= 16 and c * 9 >= 64 and o * o >= 49   # direct_lanes_avx2()
    if not _avx512():   # direct_pays_avx2(): strided stems (one pass, any batch), lanes2
        direct = k > 1 and s > 1 and (c * k * k <= 160 or (lanes2 and b == 1))
    if k == 3 and s == 1 and b == 1 and oc >= 16 and o * o <= 196 and _avx512():
        return "direct"   # output channels in the lanes
    if k == 3 and s == 1:
        best, algo = 0.9 * oc * c * 9 * _lanes16(o * o) * b, "implicit-gemm"
        for m, name in ((2, "winograd-f23"), (4, "winograd-f43")):
            cost = _wino_cost(b, c, oc, o, o, m)
            if cost < best:
                best, algo = cost, name
        return "direct" if algo == "implicit-gemm" and direct else algo
    return "direct" if direct else "implicit-gemm"


def bwd_algorithm(layer, direction):
    """The backward path src/ops/conv.c takes for this float32 layer (one group); a copy of
    its rules (bwd_data_takes_wino, bwd_data_flipped, images_per_item, bwd_data_swaps,
    filter_takes_wino, filter_small_channels, filter_1x1_swaps, bwd_filter_split), kept in
    step by hand."""
    name, b, c, h, oc, k, s, p = layer
    o = out_size(h, k, s, p)
    batched = b > 1 and o * o < 512
    wino = k == 3 and s == 1 and min(c, oc) >= 128
    if direction == "bwd-data":
        if wino and p <= 2 and h * h <= 64 and b >= 2:
            return "winograd-f23 over dy"
        if s == 1 and p <= k - 1:
            flipped = algorithm((name, b, oc, o, c, k, 1, k - 1 - p))
            if flipped.startswith("winograd"):
                return f"flipped {flipped}"
        if not batched and o * o <= 256 and oc >= c * k * k:
            return "dy^T@w" + ("" if k == 1 and s == 1 and p == 0 else ", col2im")
        if k == 1 and s == 1 and p == 0:
            return "gemm-1x1" + (" batched" if batched else "")
        return "col2im" + (" batched" if batched else "")
    swaps = k == 1 and s == 1 and p == 0 and oc < c and (c - oc) * b * o * o >= 4 * c * oc
    if b < 2 and (o * o < 512 or (k == 1 and s == 1 and p == 0)):
        return "im2col+gemm" if k > 1 or s > 1 or p > 0 else (
            "gemm-1x1 x@dy^T" if swaps else "gemm-1x1")
    if k == 1 and s == 1 and p == 0:
        return "gemm per image" + (" x@dy^T" if swaps else "")
    small = c <= 8 and c * k * k <= 256  # its ranges cut the pixels, so batch 1 splits too
    parts = min(4, b if not small else 4, max(1, b * o * o // 512))
    how = "winograd-f23" if wino else "dy in place" if small else "packed"
    return how + f", {parts} range{'s' if parts > 1 else ''}"


def fastrun_choices():
    """{(batch, c, h, oc, k, s, p): algorithm} from fast-run's cache file."""
    picks = {}
    try:
        with open(os.environ["TY_FASTRUN_CACHE"]) as f:
            rows = [line.rstrip("\n").split("\t") for line in f][1:]
    except OSError:
        return picks
    for row in rows:
        if len(row) == 3 and row[0] == "conv2d":
            fields = dict(part.split("=", 1) for part in row[1].split()[1:] if "=" in part)
            x, w = fields["x"].split(","), fields["w"].split(",")
            key = (int(x[0]), int(x[1]), int(x[2]), int(w[0]), int(w[2]),
                   int(fields["s"].split(",")[0]), int(fields["p"].split(",")[0]))
            picks[key] = row[2].replace("_", "-")
    return picks


def best_ms(fn, budget_s, clock):
    fn()
    t0 = clock()
    fn()
    one = clock() - t0
    reps = max(1, min(50, int(budget_s / 3 / max(one, 1e-6))))
    best = math.inf
    for _ in range(3):
        t0 = clock()
        for _ in range(reps):
            fn()
        best = min(best, (clock() - t0) / reps * 1e3)
    return best


def run_tianyuan(todo, threads, budget_s, clock, fastrun=False, cache={}, directions=("fwd",)):
    """{key: ms} per layer and direction; with fastrun, also {key + "/fr": ms}: the forward
    timed again with fast-run on, right after the heuristic's."""
    import tianyuan as ty
    import tianyuan.functional as F
    from tianyuan import _C
    ty.set_num_threads(threads)
    ty.config.benchmark_kernel = False
    rng = np.random.default_rng(0)
    out = {}
    for layer in todo:
        name, b, c, h, oc, k, s, p = layer
        if layer not in cache:
            cache[layer] = (ty.tensor(rng.standard_normal((b, c, h, h)).astype("float32")),
                            ty.tensor(rng.standard_normal((oc, c, k, k)).astype("float32")))
        x, w = cache[layer]
        y = F.conv2d(x, w, stride=s, padding=p)
        kw = dict(stride_h=s, stride_w=s, pad_h=p, pad_w=p, dilate_h=1, dilate_w=1, groups=1)
        calls = {"fwd": lambda: F.conv2d(x, w, stride=s, padding=p),
                 "bwd-data": lambda: _C.ops["conv2d_backward_data"](w, y, x, **kw),
                 "bwd-filter": lambda: _C.ops["conv2d_backward_filter"](x, y, w, **kw)}
        for d in directions:
            out[f"{name}/{b}/{d}"] = best_ms(calls[d], budget_s, clock)
            if fastrun and d == "fwd":
                ty.config.benchmark_kernel = True
                out[f"{name}/{b}/{d}/fr"] = best_ms(calls[d], budget_s, clock)
                ty.config.benchmark_kernel = False
    return out


PEER = r'''
import json, math, sys, time, torch
layers, threads, budget = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
directions = json.loads(sys.argv[5])
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
torch.set_num_threads(threads)
torch.manual_seed(0)
def best_ms(fn):
    fn()
    t0 = clock(); fn(); one = clock() - t0
    reps = max(1, min(50, int(budget / 3 / max(one, 1e-6))))
    best = math.inf
    for _ in range(3):
        t0 = clock()
        for _ in range(reps):
            fn()
        best = min(best, (clock() - t0) / reps * 1e3)
    return best
out = {}
with torch.no_grad():
    for name, b, c, h, oc, k, s, p in layers:
        x, w = torch.randn(b, c, h, h), torch.randn(oc, c, k, k)
        y = torch.nn.functional.conv2d(x, w, stride=s, padding=p)
        def bwd(mask):
            return lambda: torch.ops.aten.convolution_backward(
                y, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)
        calls = {"fwd": lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=p),
                 "bwd-data": bwd([True, False, False]), "bwd-filter": bwd([False, True, False])}
        for d in directions:
            out[f"{name}/{b}/{d}"] = best_ms(calls[d])
print(json.dumps(out))
'''


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.12, help="seconds per layer per round")
    ap.add_argument("--quick", action="store_true", help="ResNet-18 at batch 1 only")
    ap.add_argument("--cpu-time", action="store_true", help="CPU time (needs --threads 1)")
    ap.add_argument("--fastrun", action="store_true", help="a column with fast-run on")
    ap.add_argument("--backward", action="store_true", help="backward-data and -filter rows too")
    ap.add_argument("--cifar", action="store_true", help="CIFAR ResNet-18 layers, batch 32")
    a = ap.parse_args()
    if a.fastrun and not os.environ.get("TY_FASTRUN_CACHE"):
        import tempfile
        os.environ["TY_FASTRUN_CACHE"] = os.path.join(tempfile.mkdtemp(), "fastrun.cache")
    if a.cpu_time and a.threads != 1:
        ap.error("--cpu-time needs --threads 1")
    clock = time.process_time if a.cpu_time else time.perf_counter
    todo = layers(a.quick, a.cifar)
    dirs = DIRECTIONS if a.backward else ("fwd",)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_conv.py")
    with open(path, "w") as f:
        f.write(PEER)
    ours, fast, peer = {}, {}, None
    for _ in range(a.rounds):
        for key, v in run_tianyuan(todo, a.threads, a.budget, clock, a.fastrun,
                                   directions=dirs).items():
            got_in = fast if key.endswith("/fr") else ours
            key = key[:-3] if key.endswith("/fr") else key
            got_in[key] = min(v, got_in.get(key, math.inf))
        got = run_peer(path, json.dumps(todo), a.threads, a.budget,
                       "cpu" if a.cpu_time else "wall", json.dumps(dirs))
        if got is not None:
            peer = {k: min(v, (peer or {}).get(k, math.inf)) for k, v in got.items()}
    print(machine_line())
    what = "CPU ms" if a.cpu_time else "ms"
    print(f"conv2d {', '.join(dirs)}, float32, NCHW, {a.threads} threads, {what} per call (best of "
          f"{a.rounds} alternating rounds); ratio > 1: Tianyuan faster")
    picks = fastrun_choices() if a.fastrun else {}
    print(f"{'layer':<20}{'batch':>6}{'dir':>11}{'ty ms':>9}{'torch ms':>10}{'ratio':>7}{'ty GF/s':>9}"
          f"{'torch GF/s':>11}" + (f"{'fr ms':>9}{'fr/heur':>8}" if a.fastrun else "") + "  algorithm"
          + (" (fastrun's)" if a.fastrun else ""))
    ratios = {}
    for layer, d in ((layer, d) for layer in todo for d in dirs):
        key = f"{layer[0]}/{layer[1]}/{d}"
        t, p = ours[key], (peer or {}).get(key)
        gf = gflop(layer)
        r = p / t if p else None
        if r:
            ratios.setdefault((layer[0][:3], layer[1], d), []).append(r)
        ps = f"{p:>10.3f}{r:>7.2f}" if p else f"{'n/a':>10}{'':>7}"
        pg = f"{gf / p * 1e3:>11.0f}" if p else f"{'n/a':>11}"
        fr = f"{'':>17}" if a.fastrun else ""
        if a.fastrun and d == "fwd":
            _, b, c, h, oc, k, s, p_ = layer
            pick = picks.get((b, c, h, oc, k, s, p_), algorithm(layer))
            fr = f"{fast[key]:>9.3f}{fast[key] / t:>8.2f}"
            pick = f" ({pick})"
        algo = (f"{algorithm(layer)}{pick if a.fastrun else ''}" if d == "fwd"
                else bwd_algorithm(layer, d))
        print(f"{layer[0]:<20}{layer[1]:>6}{d:>11}{t:>9.3f}{ps}{gf / t * 1e3:>9.0f}{pg}{fr}  "
              f"{algo}")
    for (net, b, d), rs in ratios.items():
        geo = math.exp(sum(map(math.log, rs)) / len(rs))
        print(f"geometric mean ratio, {net} batch {b} {d}: {geo:.2f}x  (min {min(rs):.2f}x)")
    allr = [r for rs in ratios.values() for r in rs]
    if len(ratios) > 1:
        geo = math.exp(sum(map(math.log, allr)) / len(allr))
        print(f"geometric mean ratio, all rows: {geo:.2f}x")
    if a.fastrun:
        slow = {k: fast[k] / ours[k] for k in fast}
        worst = max(slow, key=slow.get)
        geo = math.exp(sum(map(math.log, slow.values())) / len(slow))
        print(f"fast-run / heuristic forward time: geometric mean {geo:.2f}, max {slow[worst]:.2f} "
              f"({worst})")
    if peer is None:
        print("PyTorch not installed: Tianyuan side only")


if __name__ == "__main__":
    main()
