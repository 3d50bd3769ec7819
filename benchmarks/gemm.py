"""SGEMM on the CPU: GFLOP/s of Tianyuan's matmul beside torch.matmul and NumPy, for square
sizes and for ResNet-18's convolutions written as GEMMs (weights [OC, C*kh*kw] @ columns
[C*kh*kw, OH*OW], batch 1), and as a share of the FP32 peak that a small FMA-throughput probe
(benchmarks/fma_peak.c, built here with the system C compiler) measures on the same threads.
Best of rounds; Tianyuan, PyTorch and NumPy take turns each round, because the shared VM has
bursts of other load.

    PYTHONPATH=python .venv/bin/python benchmarks/gemm.py [--threads 2] [--rounds 3]
        [--budget 0.25] [--quick] [--cpu-time] [--baseline DIR] [--only NAME ...]

--cpu-time times with the process's CPU time instead of the wall clock (with --threads 1 only:
it is the compute a call costs however busy the machine is, where wall times on a loaded VM
mostly measure the load).

--baseline DIR times another build of Tianyuan too (DIR: its python/ folder, holding
tianyuan/_C*.so), in a subprocess in the same alternating rounds: a before/after comparison
that the machine's load hits alike.

TY_ISA=generic|avx2|avx512 in the environment forces Tianyuan's kernels (the line under the CPU
line names the set in use).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

from _peer import machine_line, run_peer  # noqa: E402

SQUARE = [256, 512, 1024, 2048]
# (name, OC, C*k*k, OH*OW): M, K, N of ResNet-18's conv layers at 224x224, batch 1
RESNET18 = [
    ("r18 conv1 7x7/2", 64, 3 * 49, 112 * 112),
    ("r18 l1 3x3", 64, 64 * 9, 56 * 56),
    ("r18 l2 3x3/2", 128, 64 * 9, 28 * 28),
    ("r18 l2 3x3", 128, 128 * 9, 28 * 28),
    ("r18 l3 3x3/2", 256, 128 * 9, 14 * 14),
    ("r18 l3 3x3", 256, 256 * 9, 14 * 14),
    ("r18 l4 3x3/2", 512, 256 * 9, 7 * 7),
    ("r18 l4 3x3", 512, 512 * 9, 7 * 7),
]


def shapes(quick):
    sq = [(f"{n}", n, n, n) for n in (SQUARE[1:] if quick else SQUARE)]
    return sq if quick else sq + [(name, m, k, n) for name, m, k, n in RESNET18]


CLOCK = time.perf_counter


def best_s(fn, budget_s):
    fn()
    t0 = CLOCK()
    fn()
    one = CLOCK() - t0
    reps = max(1, min(200, int(budget_s / 3 / max(one, 1e-7))))
    best = math.inf
    for _ in range(3):
        t0 = CLOCK()
        for _ in range(reps):
            fn()
        best = min(best, (CLOCK() - t0) / reps)
    return best


def run_tianyuan(todo, threads, budget_s, cache={}):
    import numpy as np
    import tianyuan as ty
    import tianyuan.functional as F
    ty.set_num_threads(threads)
    rng = np.random.default_rng(0)
    out = {}
    for name, m, k, n in todo:
        if name not in cache:
            cache[name] = (ty.tensor(rng.standard_normal((m, k)).astype("float32")),
                           ty.tensor(rng.standard_normal((k, n)).astype("float32")))
        a, b = cache[name]
        out[name] = best_s(lambda: F.matmul(a, b), budget_s)
    return out


# The timer both subprocess scripts run (their argv[3] is the budget, argv[4] the clock).
_TIMER = r'''
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
def best_s(fn):
    fn()
    t0 = clock(); fn(); one = clock() - t0
    reps = max(1, min(200, int(budget / 3 / max(one, 1e-7))))
    best = math.inf
    for _ in range(3):
        t0 = clock()
        for _ in range(reps):
            fn()
        best = min(best, (clock() - t0) / reps)
    return best
'''

NUMPY = r'''
import json, math, os, sys, time
threads = sys.argv[2]
for v in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ[v] = threads
import numpy as np
todo, budget = json.loads(sys.argv[1]), float(sys.argv[3])
''' + _TIMER + r'''rng = np.random.default_rng(0)
out = {}
for name, m, k, n in todo:
    a = rng.standard_normal((m, k)).astype("float32")
    b = rng.standard_normal((k, n)).astype("float32")
    out[name] = best_s(lambda: a @ b)
print(json.dumps(out))
'''

BASELINE = r'''
import json, math, os, sys, time
sys.path.insert(0, sys.argv[5])
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
todo, budget = json.loads(sys.argv[1]), float(sys.argv[3])
ty.set_num_threads(int(sys.argv[2]))
''' + _TIMER + r'''rng = np.random.default_rng(0)
out = {}
for name, m, k, n in todo:
    a = ty.tensor(rng.standard_normal((m, k)).astype("float32"))
    b = ty.tensor(rng.standard_normal((k, n)).astype("float32"))
    out[name] = best_s(lambda: F.matmul(a, b))
print(json.dumps(out))
'''

PEER = r'''
import json, math, sys, time, torch
todo, threads, budget = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
''' + _TIMER + r'''out = {}
with torch.no_grad():
    for name, m, k, n in todo:
        a, b = torch.randn(m, k), torch.randn(k, n)
        out[name] = best_s(lambda: torch.matmul(a, b))
print(json.dumps(out))
'''


def fma_peak(threads):
    """GFLOP/s of the FMA probe on `threads` threads (best of its samples), or None."""
    exe = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ty_fma_peak_{os.getuid()}")
    src = os.path.join(HERE, "fma_peak.c")
    cc = os.environ.get("CC", "cc")
    built = subprocess.run([cc, "-O2", "-pthread", src, "-o", exe], capture_output=True)
    if built.returncode != 0:
        return None
    got = subprocess.run([exe, str(threads), "400"], capture_output=True, text=True)
    if got.returncode != 0:
        return None
    return float(got.stdout.split()[0])


def run_numpy(todo, threads, budget, clock):
    out = subprocess.run([sys.executable, "-c", NUMPY, json.dumps(todo), str(threads),
                          str(budget), clock], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_baseline(todo, threads, budget, clock, where):
    env = dict(os.environ, PYTHONPATH=where)
    out = subprocess.run([sys.executable, "-c", BASELINE, json.dumps(todo), str(threads),
                          str(budget), clock, where], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.stderr.write(out.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def merge_best(acc, got):
    if got is None:
        return acc
    return {k: min(v, (acc or {}).get(k, math.inf)) for k, v in got.items()}


def isa_line():
    import tianyuan  # noqa: F401  (loads the library; TY_ISA is read by it)
    forced = os.environ.get("TY_ISA")
    return f"Tianyuan kernels: {'TY_ISA=' + forced if forced else 'best for this CPU'}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.25, help="seconds per shape per round")
    ap.add_argument("--quick", action="store_true", help="512, 1024 and 2048 only")
    ap.add_argument("--cpu-time", action="store_true", help="CPU time (needs --threads 1)")
    ap.add_argument("--baseline", metavar="DIR", help="another build's python/ folder to time")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="shapes whose name starts so")
    a = ap.parse_args()
    if a.cpu_time and a.threads != 1:
        ap.error("--cpu-time needs --threads 1")
    global CLOCK
    CLOCK = time.process_time if a.cpu_time else time.perf_counter
    clock = "cpu" if a.cpu_time else "wall"
    todo = shapes(a.quick)
    if a.only:
        todo = [t for t in todo if any(t[0].startswith(p) for p in a.only)]
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ty_peer_gemm_{os.getuid()}.py")
    with open(path, "w") as f:
        f.write(PEER)
    ours = peer = nump = base = None
    peaks = []
    for _ in range(a.rounds):
        ours = merge_best(ours, run_tianyuan(todo, a.threads, a.budget))
        peer = merge_best(peer, run_peer(path, json.dumps(todo), a.threads, a.budget, clock))
        nump = merge_best(nump, run_numpy(todo, a.threads, a.budget, clock))
        if a.baseline:
            base = merge_best(base, run_baseline(todo, a.threads, a.budget, clock,
                                                 os.path.abspath(a.baseline)))
        p = fma_peak(a.threads)
        if p:
            peaks.append(p)
    peak = max(peaks) if peaks else None
    print(machine_line())
    print(isa_line())
    if peak:
        print(f"FP32 FMA peak ({a.threads} threads, fma_peak.c): {peak:.0f} GFLOP/s "
              f"(rounds: {', '.join(f'{p:.0f}' for p in peaks)})")
    what = "GFLOP/s of CPU time" if a.cpu_time else "GFLOP/s"
    print(f"SGEMM C = A @ B, float32, {a.threads} threads, {what} (best of {a.rounds} "
          f"alternating rounds); ratio > 1: Tianyuan faster")
    print(f"{'shape':<18}{'M':>6}{'K':>6}{'N':>7}{'ty':>8}{'torch':>8}{'numpy':>8}"
          f"{'vs torch':>10}{'% peak':>8}" + (f"{'base':>8}{'vs base':>9}" if a.baseline else ""))
    for name, m, k, n in todo:
        gf = 2.0 * m * n * k * 1e-9
        t = gf / ours[name]
        p = gf / peer[name] if peer else None
        npy = gf / nump[name] if nump else None
        fmt = lambda v: f"{v:>8.0f}" if v else f"{'n/a':>8}"  # noqa: E731
        ratio = f"{t / p:>9.2f}x" if p else f"{'n/a':>10}"
        share = f"{100 * t / peak:>7.0f}%" if peak else f"{'n/a':>8}"
        line = f"{name:<18}{m:>6}{k:>6}{n:>7}{t:>8.0f}{fmt(p)}{fmt(npy)}{ratio}{share}"
        if a.baseline:
            b = gf / base[name] if base else None
            line += fmt(b) + (f"{t / b:>8.2f}x" if b else f"{'n/a':>9}")
        print(line)
    if peer is None:
        print("PyTorch not installed: its column is n/a")


if __name__ == "__main__":
    main()
