"""2x2 stride-2 max pooling on the reference CNN's float32 shapes (batch 64): max_pool2d forward
and its gradient op (max_pool2d_grad), milliseconds per call, 1 and 2 threads.

Each tianyuan build in --builds (paths of a python/ folder, e.g. a checkout of the previous
commit) is timed in its own subprocess; the builds take turns for --rounds rounds and every
cell keeps its best, because the 2-core VM has bursts of other load. PyTorch (the peer, when
found) is timed for forward and forward + backward.

    PYTHONPATH=python .venv/bin/python benchmarks/pool_2x2.py [--builds old/python python]
"""
import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _peer import run_peer  # noqa: E402

SHAPES = [(64, 32, 28, 28), (64, 64, 14, 14)]
PARAMS = dict(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2, pad_h=0, pad_w=0, mode=0)


def best_ms(fn, reps, trials=5):
    import time
    fn()
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps * 1e3)
    return best


def worker(reps, threads):
    """One round in this process: {"shape/threads": [forward ms, gradient ms]}."""
    import numpy as np
    import tianyuan as ty
    from tianyuan import _C

    rng = np.random.default_rng(0)
    out = {}
    for shape in SHAPES:
        x = ty.tensor(rng.standard_normal(shape).astype("float32"))
        y = _C.ops["max_pool2d"](x, **PARAMS)
        dy = ty.tensor(rng.standard_normal(y.shape).astype("float32"))
        for t in threads:
            ty.set_num_threads(t)
            fwd = best_ms(lambda: _C.ops["max_pool2d"](x, **PARAMS), reps)
            grad = best_ms(lambda: _C.ops["max_pool2d_grad"](x, dy, **PARAMS), reps)
            out[f"{shape}/{t}"] = [fwd, grad]
    return out


PEER = r'''
import json, sys, time, torch
reps, threads = int(sys.argv[1]), [int(t) for t in sys.argv[2].split(",")]
shapes = [(64, 32, 28, 28), (64, 64, 14, 14)]
def best_ms(fn, trials=5):
    fn()
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps * 1e3)
    return best
out = {}
torch.manual_seed(0)
for shape in shapes:
    x = torch.randn(shape, requires_grad=True)
    dy = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2)
    def fwd_bwd():
        x.grad = None
        torch.nn.functional.max_pool2d(x, 2).backward(dy)
    for t in threads:
        torch.set_num_threads(t)
        with torch.no_grad():
            f = best_ms(lambda: torch.nn.functional.max_pool2d(x, 2))
        out[f"{shape}/{t}"] = [f, best_ms(fwd_bwd)]
print(json.dumps(out))
'''


def run_build(path, reps, threads):
    env = {**os.environ, "PYTHONPATH": os.path.abspath(path)}
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--reps", str(reps),
           "--threads", *map(str, threads)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builds", nargs="+", default=[os.path.join(os.path.dirname(HERE), "python")])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", action="store_true")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.reps, a.threads)))
        return
    best = [{} for _ in a.builds]
    for _ in range(a.rounds):
        for i, path in enumerate(a.builds):
            for k, v in run_build(path, a.reps, a.threads).items():
                best[i][k] = [min(p, q) for p, q in zip(best[i].get(k, v), v)]
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_pool_2x2.py")
    with open(path, "w") as f:
        f.write(PEER)
    peer = run_peer(path, a.reps, ",".join(map(str, a.threads)))
    head = "".join(f"{'b%d fwd' % i:>10}{'b%d grad' % i:>10}" for i in range(len(a.builds)))
    print("max_pool2d 2x2 stride 2, float32, ms per call (best of rounds); builds:")
    for i, path in enumerate(a.builds):
        print(f"  b{i} = {path}")
    print(f"{'shape / threads':<24}{head}{'torch fwd':>11}{'torch f+b':>11}")
    for k in best[0]:
        row = "".join(f"{b[k][0]:>10.3f}{b[k][1]:>10.3f}" for b in best)
        p = peer.get(k) if peer else None
        row += f"{p[0]:>11.3f}{p[1]:>11.3f}" if p else f"{'n/a':>11}{'n/a':>11}"
        print(f"{k:<24}{row}")


if __name__ == "__main__":
    main()
