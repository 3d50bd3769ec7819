"""Depthwise convolution (groups == channels) on the depthwise layers of MobileNetV2 and
ShuffleNetV2 1.0x at 224x224: F.conv2d(groups=C) vs torch.nn.functional.conv2d(groups=C),
forward and backward (the input and weight gradients: Tianyuan's two backward ops vs
torch.ops.aten.convolution_backward), float32, milliseconds per call. Ratio = PyTorch /
Tianyuan: above 1, Tianyuan is faster.

Each side (and every build in --builds, e.g. the python/ folder of an older checkout) is a
persistent worker process holding every layer's tensors. The workers take turns on each
measurement (one layer, one direction, a few calls), for --rounds rounds, and every cell keeps
its best: the shared machine has bursts of other load, and taking turns at this grain puts
both sides under the same bursts.

    PYTHONPATH=python .venv/bin/python benchmarks/depthwise.py [--batch 1 32] [--threads 2]
        [--builds old/python python] [--rounds 5] [--no-backward]
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

# A worker: builds every layer's calls, then answers "layer part" lines with the best
# milliseconds per call of a few timed loops (about 30 ms of work).
WORKER = r'''
import json, sys, time
side, batch, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
layers = json.loads(sys.argv[4])
import numpy as np
rng = np.random.default_rng(0)
calls = []
if side == "ty":
    import tianyuan as ty
    import tianyuan.functional as F
    from tianyuan import _C
    ty.set_num_threads(threads)
    for c, hw, s in layers:
        x = ty.tensor(rng.standard_normal((batch, c, hw, hw)).astype("float32"))
        w = ty.tensor(rng.standard_normal((c, 1, 3, 3)).astype("float32"))
        p = dict(stride_h=s, stride_w=s, pad_h=1, pad_w=1, dilate_h=1, dilate_w=1, groups=c)
        y = _C.ops["conv2d"](x, w, **p)
        dy = ty.tensor(rng.standard_normal(y.shape).astype("float32"))
        fwd = lambda x=x, w=w, s=s, c=c: F.conv2d(x, w, stride=s, padding=1, groups=c)
        def bwd(x=x, w=w, dy=dy, p=p):
            _C.ops["conv2d_backward_data"](w, dy, x, **p)
            _C.ops["conv2d_backward_filter"](x, dy, w, **p)
        calls.append((fwd, bwd))
else:
    import torch
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    for c, hw, s in layers:
        x = torch.from_numpy(rng.standard_normal((batch, c, hw, hw)).astype("float32"))
        w = torch.from_numpy(rng.standard_normal((c, 1, 3, 3)).astype("float32"))
        y = torch.nn.functional.conv2d(x, w, stride=s, padding=1, groups=c)
        dy = torch.randn(y.shape)
        fwd = lambda x=x, w=w, s=s, c=c: torch.nn.functional.conv2d(x, w, stride=s, padding=1,
                                                                    groups=c)
        bwd = lambda x=x, w=w, dy=dy, s=s, c=c: torch.ops.aten.convolution_backward(
            dy, x, w, None, [s, s], [1, 1], [1, 1], False, [0, 0], c, [True, True, False])
        calls.append((fwd, bwd))
reps = {}
print("ready", flush=True)
for line in sys.stdin:
    i, part = map(int, line.split())
    fn = calls[i][part]
    if (i, part) not in reps:
        fn()
        t0 = time.perf_counter(); fn(); one = time.perf_counter() - t0
        reps[i, part] = max(1, min(100, int(0.01 / max(one, 1e-6))))
    n = reps[i, part]
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e3)
    print(best, flush=True)
'''


class Worker:
    def __init__(self, python, pythonpath, side, batch, threads, layers):
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_bench_depthwise_worker.py")
        with open(path, "w") as f:
            f.write(WORKER)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        if pythonpath:
            env["PYTHONPATH"] = os.path.abspath(pythonpath)
        self.p = subprocess.Popen([python, path, side, str(batch), str(threads),
                                   json.dumps([list(x[1:]) for x in layers])],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  env=env)
        self.ok = self.p.stdout.readline().strip() == "ready"

    def time(self, i, part):
        self.p.stdin.write(f"{i} {part}\n")
        self.p.stdin.flush()
        return float(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def run_batch(a, batch, peer):
    layers = [(f"{m} {c}x{hw}x{hw} s{s}", c, hw, s) for m, c, hw, s in LAYERS]
    workers = [Worker(sys.executable, path, "ty", batch, a.threads, layers) for path in a.builds]
    if peer:
        workers.append(Worker(peer, None, "torch", batch, a.threads, layers))
    workers = [w for w in workers if w.ok]
    parts = [0] if a.no_backward else [0, 1]
    best = [[[float("inf")] * len(parts) for _ in layers] for _ in workers]
    for _ in range(a.rounds):
        for i in range(len(layers)):
            for part in parts:
                for k, w in enumerate(workers):
                    best[k][i][part] = min(best[k][i][part], w.time(i, part))
    for w in workers:
        w.close()
    nb = len(a.builds)
    print(f"\nbatch {batch}")
    head = ""
    for name in ["fwd", "bwd"][:len(parts)]:
        head += "".join(f"{'b%d %s' % (i, name):>9}" for i in range(nb))
        head += f"{'torch':>9}{'ratio':>7}" if peer else ""
    print(f"{'layer':<24}{head}")
    for i, (key, *_) in enumerate(layers):
        row = ""
        for part in parts:
            row += "".join(f"{best[k][i][part]:>9.3f}" for k in range(nb))
            if peer:
                p = best[nb][i][part]
                row += f"{p:>9.3f}{p / best[nb - 1][i][part]:>7.2f}"
        print(f"{key:<24}{row}")
    tot = [sum(best[k][i][0] for i in range(len(layers))) for k in range(len(workers))]
    line = "".join(f"{t:>9.3f}" for t in tot[:nb])
    if peer:
        line += f"{tot[nb]:>9.3f}{tot[nb] / tot[nb - 1]:>7.2f}"
    print(f"{'sum of forward':<24}{line}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builds", nargs="+", default=[os.path.join(os.path.dirname(HERE), "python")])
    ap.add_argument("--batch", nargs="+", type=int, default=[1])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-backward", action="store_true")
    a = ap.parse_args()
    peer = peer_python()
    print(machine_line())
    print(f"3x3 depthwise conv, padding 1, float32, {a.threads} threads, ms per call (best of "
          f"{a.rounds} rounds, the sides taking turns on every measurement); "
          f"ratio = PyTorch / Tianyuan (the last build)")
    for i, path in enumerate(a.builds):
        print(f"  b{i} = {path}")
    for batch in a.batch:
        run_batch(a, batch, peer)


if __name__ == "__main__":
    main()
