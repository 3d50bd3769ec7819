"""Depthwise convolution (groups == channels) on the depthwise layers of MobileNetV2 and
ShuffleNetV2 1.0x at 224x224: F.conv2d(groups=C) vs torch.nn.functional.conv2d(groups=C),
forward and backward (input + weight gradients: Tianyuan's two backward ops vs
torch.ops.aten.convolution_backward), float32, milliseconds per call. Ratio > 1 means
Tianyuan is faster.

Each side runs in its own subprocess; the sides (and every build in --builds, e.g. the
python/ folder of an older checkout) take turns for --rounds rounds and every cell keeps its
best, because the shared 2-core machine has bursts of other load.

    PYTHONPATH=python .venv/bin/python benchmarks/depthwise.py [--batch 1 32] [--threads 2]
        [--builds old/python python] [--no-backward]
"""
import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _peer import machine_line, peer_python  # noqa: E402

# (model, channels, input size, stride): every distinct 3x3 depthwise layer, padding 1
LAYERS = [
    ("mbv2", 32, 112, 1), ("mbv2", 96, 112, 2), ("mbv2", 144, 56, 1), ("mbv2", 144, 56, 2),
    ("mbv2", 192, 28, 1), ("mbv2", 192, 28, 2), ("mbv2", 384, 14, 1), ("mbv2", 576, 14, 1),
    ("mbv2", 576, 14, 2), ("mbv2", 960, 7, 1),
    ("shv2", 24, 56, 2), ("shv2", 58, 56, 2), ("shv2", 58, 28, 1), ("shv2", 116, 28, 2),
    ("shv2", 116, 14, 1), ("shv2", 232, 14, 2), ("shv2", 232, 7, 1),
]

WORKER = r'''
import json, sys, time
side, batch, threads, backward = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
layers = json.loads(sys.argv[5])
import numpy as np
rng = np.random.default_rng(0)

def best_ms(fn, budget=0.15):
    fn()
    t0 = time.perf_counter(); fn(); one = time.perf_counter() - t0
    reps = max(1, min(200, int(budget / max(one, 1e-6))))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps * 1e3)
    return best

out = {}
if side == "ty":
    import tianyuan as ty
    import tianyuan.functional as F
    from tianyuan import _C
    ty.set_num_threads(threads)
    for key, c, hw, s in layers:
        x = rng.standard_normal((batch, c, hw, hw)).astype("float32")
        w = rng.standard_normal((c, 1, 3, 3)).astype("float32")
        x, w = ty.tensor(x), ty.tensor(w)
        p = dict(stride_h=s, stride_w=s, pad_h=1, pad_w=1, dilate_h=1, dilate_w=1, groups=c)
        y = _C.ops["conv2d"](x, w, **p)
        res = [best_ms(lambda: F.conv2d(x, w, stride=s, padding=1, groups=c))]
        if backward:
            dy = ty.tensor(rng.standard_normal(y.shape).astype("float32"))
            def bwd():
                _C.ops["conv2d_backward_data"](w, dy, x, **p)
                _C.ops["conv2d_backward_filter"](x, dy, w, **p)
            res.append(best_ms(bwd))
        out[key] = res
else:
    import torch
    torch.set_num_threads(threads)
    for key, c, hw, s in layers:
        x = torch.from_numpy(rng.standard_normal((batch, c, hw, hw)).astype("float32"))
        w = torch.from_numpy(rng.standard_normal((c, 1, 3, 3)).astype("float32"))
        with torch.no_grad():
            y = torch.nn.functional.conv2d(x, w, stride=s, padding=1, groups=c)
            res = [best_ms(lambda: torch.nn.functional.conv2d(x, w, stride=s, padding=1, groups=c))]
            if backward:
                dy = torch.randn(y.shape)
                res.append(best_ms(lambda: torch.ops.aten.convolution_backward(
                    dy, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], c,
                    [True, True, False])))
        out[key] = res
print(json.dumps(out))
'''


def run_side(python, pythonpath, side, batch, threads, backward, layers):
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_bench_depthwise_worker.py")
    with open(path, "w") as f:
        f.write(WORKER)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if pythonpath:
        env["PYTHONPATH"] = os.path.abspath(pythonpath)
    out = subprocess.run([python, path, side, str(batch), str(threads), "1" if backward else "0",
                          json.dumps(layers)], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"[{side} failed: {out.stderr.strip().splitlines()[-1:]}]")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def keep_best(best, res):
    if res is None:
        return best
    best = best or {}
    for k, v in res.items():
        best[k] = [min(a, b) for a, b in zip(best.get(k, v), v)]
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builds", nargs="+", default=[os.path.join(os.path.dirname(HERE), "python")])
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-backward", action="store_true")
    a = ap.parse_args()
    backward = not a.no_backward
    peer = peer_python()
    print(machine_line())
    print(f"3x3 depthwise conv, padding 1, float32, {a.threads} threads, ms per call "
          f"(best of {a.rounds} alternating rounds); ratio = PyTorch / Tianyuan")
    for i, path in enumerate(a.builds):
        print(f"  b{i} = {path}")
    for batch in a.batch:
        layers = [(f"{m} {c}x{hw}x{hw} s{s}", c, hw, s) for m, c, hw, s in LAYERS]
        best = [None] * len(a.builds)
        pbest = None
        for _ in range(a.rounds):
            for i, path in enumerate(a.builds):
                best[i] = keep_best(best[i], run_side(sys.executable, path, "ty", batch,
                                                      a.threads, backward, layers))
            if peer:
                pbest = keep_best(pbest, run_side(peer, None, "torch", batch, a.threads, backward,
                                                  layers))
        print(f"\nbatch {batch}")
        head = "".join(f"{'b%d fwd' % i:>9}" for i in range(len(a.builds))) + f"{'torch':>9}"
        head += f"{'ratio':>7}"
        if backward:
            head += "".join(f"{'b%d bwd' % i:>9}" for i in range(len(a.builds)))
            head += f"{'torch':>9}{'ratio':>7}"
        print(f"{'layer':<24}{head}")
        for key, *_ in layers:
            row = ""
            for part in range(2 if backward else 1):
                vals = [b[key][part] if b else float("nan") for b in best]
                p = pbest[key][part] if pbest else float("nan")
                row += "".join(f"{v:>9.3f}" for v in vals) + f"{p:>9.3f}{p / vals[-1]:>7.2f}"
            print(f"{key:<24}{row}")
        tot = [sum(b[k][0] for k, *_ in layers) if b else float("nan") for b in best]
        ptot = sum(pbest[k][0] for k, *_ in layers) if pbest else float("nan")
        print(f"{'sum of forward':<24}" + "".join(f"{v:>9.3f}" for v in tot) +
              f"{ptot:>9.3f}{ptot / tot[-1]:>7.2f}")


if __name__ == "__main__":
    main()
