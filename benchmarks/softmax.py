"""float32 softmax / log_softmax and softmax's gradient (softmax_backward), milliseconds per
call at 2 threads, per instruction set (TY_ISA=generic: the scalar loops with libm's expf that
the vector kernels replaced), beside torch.softmax / torch.log_softmax /
torch._softmax_backward_data. Every side runs in its own subprocess; they take turns for
--rounds rounds and each cell keeps its best, because the shared VM has bursts of other load.

    PYTHONPATH=python .venv/bin/python benchmarks/softmax.py [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _peer import machine_line, run_peer  # noqa: E402

# (shape, axis): attention scores (25 MB), a classifier's logits, a middle axis
CASES = [((12, 8, 256, 256), -1), ((256, 1000), -1), ((32, 1000, 49), 1)]


def best_ms(fn, trials=7):
    fn()
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def run_ty():
    import numpy as np
    import tianyuan as ty
    import tianyuan.functional as F
    ty.set_num_threads(2)
    out = {}
    for shape, axis in CASES:
        x = ty.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        for name, f in (("softmax", F.softmax), ("log_softmax", F.logsoftmax)):
            out[f"{name} {shape} axis {axis}"] = best_ms(lambda: f(x, axis=axis))
        y, g = F.softmax(x, axis=axis), ty.tensor(np.ones(shape, np.float32))
        back = ty._C.ops["softmax_backward"]
        out[f"backward {shape} axis {axis}"] = best_ms(lambda: back(y, g, axis=axis))
    return out


def run_torch():
    import torch
    torch.set_num_threads(2)
    out = {}
    for shape, axis in CASES:
        x = torch.randn(shape)
        for name, f in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
            out[f"{name} {shape} axis {axis}"] = best_ms(lambda: f(x, axis))
        y, g = torch.softmax(x, axis), torch.ones(shape)
        back = torch._softmax_backward_data
        out[f"backward {shape} axis {axis}"] = best_ms(lambda: back(g, y, axis, torch.float32))
    return out


def ty_side(isa):
    env = dict(os.environ, TY_ISA=isa)
    r = subprocess.run([sys.executable, __file__, "--side", "ty"], capture_output=True,
                       text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--side")
    a = ap.parse_args()
    if a.side:
        print(json.dumps(run_ty() if a.side == "ty" else run_torch()))
        return
    print(machine_line())
    print(f"load average: {os.getloadavg()}")
    cols = ["generic", "avx2", "avx512", "torch"]
    best = {c: {} for c in cols}
    for _ in range(a.rounds):
        for c in cols:
            res = run_peer(__file__, "--side", "torch") if c == "torch" else ty_side(c)
            for k, v in (res or {}).items():
                best[c][k] = min(v, best[c].get(k, v))
    print(f"{'case':48s}" + "".join(f"{c:>10s}" for c in cols) + "  (ms, best of rounds)")
    for k in best["generic"]:
        print(f"{k:48s}" + "".join(f"{best[c].get(k, float('nan')):10.2f}" for c in cols))
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
