"""Inference latency at batch 1 on 2 threads: Tianyuan's C runtime (the `tianyuan-run` binary
running a model dumped by `trace.dump`) against PyTorch eager, PyTorch's best CPU path
(TorchScript trace + torch.jit.freeze + torch.jit.optimize_for_inference) and ONNX Runtime
(exported with torch.onnx, 2 intra-op threads), with the same weights on every side (ours,
copied into the torchvision model of the same name). Rounds alternate between the sides; each
side's median and p90 are over all its timed runs; the ratio is peer / Tianyuan (> 1: Tianyuan
is faster). Then the load time and peak RSS of one ResNet-18 run, Tianyuan vs ONNX Runtime,
each in a fresh process.

    PYTHONPATH=python .venv/bin/python benchmarks/infer_latency.py [--rounds 5] [--iters 20]
        [--models resnet18,mobilenet_v2,...] [--fuse-conv-bn] [--baseline-bin PATH]

--baseline-bin times a second tianyuan-run (another build, say main's) on the same model in
the same alternating rounds, right after ours: on a busy machine the fairest before/after.

--settle S (default 0.5) waits S seconds of quiet before every side's turn. With --peer-spin the
peers' thread pools keep spinning for tens to hundreds of milliseconds after their last run;
without the wait, the first runs of the next side (ours: ShuffleNetV2's 3 warm-up runs and the
first 2 timed ones, about 80 ms) shared the cores with them and took twice as long, 10% of a
20-run round, so p90 landed on them. ONNX Runtime's turn follows PyTorch's in the same process
and saw the same.

The peers run in the interpreter _peer.py finds (this one if it has torch, else TY_PEER_PYTHON
or ../peer-venv): torch and torchvision are needed there, onnx + onnxruntime for the ONNX
Runtime column; a missing one is skipped with a line saying so.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # numpy only moves data here
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from _models import INFER_MODELS, infer_model  # noqa: E402
from _peer import machine_line, peer_python  # noqa: E402

THREADS = 2
RUN_BIN = os.path.join(os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build")),
                       "tianyuan-run")
PEER_SIDES = [("eager", "PyTorch eager"), ("best", "PyTorch best"), ("ort", "ONNX Runtime")]

# The peer side: builds the torchvision model, copies our weights in, prepares the three ways
# to run it, prints one JSON line ("ready"), then answers "time SIDE N" with N timings in ms.
PEER = r'''
import json, sys, time
import numpy as np
import torch

name, weights, onnx_path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
spin = sys.argv[5] == "spin"
torch.set_num_threads(threads)
try:
    torch.set_num_interop_threads(1)
except RuntimeError:
    pass


def build():
    if name == "fmnist_cnn":
        import torch.nn as nn
        import torch.nn.functional as F

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
                self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
                self.fc1 = nn.Linear(3136, 128)
                self.fc2 = nn.Linear(128, 10)

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.conv1(x)), 2)
                x = F.max_pool2d(F.relu(self.conv2(x)), 2)
                return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))
        return Net()
    import torchvision.models as tvm
    return getattr(tvm, name)()


ours = np.load(weights)
model = build().eval()
state = {}
for key, v in model.state_dict().items():
    if key.endswith("num_batches_tracked"):
        state[key] = v
        continue
    a = ours[key]
    if a.size != v.numel():
        raise SystemExit(f"{key}: ours {a.shape}, torch {tuple(v.shape)}")
    state[key] = torch.from_numpy(np.ascontiguousarray(a.reshape(tuple(v.shape))))
model.load_state_dict(state)
x_np = ours["__x__"]
x = torch.from_numpy(x_np)
runs, skipped, versions = {}, {}, {"torch": torch.__version__}

runs["eager"] = lambda: model(x)
try:
    with torch.no_grad():
        best = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x)))
    runs["best"] = lambda: best(x)
except Exception as e:  # noqa: BLE001 - report whatever TorchScript refused
    skipped["best"] = f"TorchScript failed: {type(e).__name__}: {str(e)[:200]}"
try:
    import onnxruntime as ort
    versions["onnxruntime"] = ort.__version__
    try:
        torch.onnx.export(model, (x,), onnx_path, input_names=["data"], output_names=["out"],
                          dynamo=False)
    except Exception:  # noqa: BLE001 - the older exporter may be gone: the default one
        torch.onnx.export(model, (x,), onnx_path, input_names=["data"], output_names=["out"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    runs["ort"] = lambda: sess.run(None, {"data": x_np})[0]
except ImportError as e:
    skipped["ort"] = f"not installed ({e.name}): pip install onnx onnxruntime"
except Exception as e:  # noqa: BLE001
    skipped["ort"] = f"export or session failed: {type(e).__name__}: {str(e)[:200]}"


def output(side):
    with torch.inference_mode():
        y = runs[side]()
    return y.numpy() if hasattr(y, "numpy") else np.asarray(y)


ref = ours["__y__"]
diff = {side: float(np.abs(output(side) - ref).max()) for side in runs}
for side in runs:      # warm up (TorchScript's profiling executor optimizes on early runs)
    for _ in range(10):
        output(side)
print(json.dumps({"sides": sorted(runs), "skipped": skipped, "diff": diff,
                  "scale": float(np.abs(ref).max()), "versions": versions}), flush=True)
for line in sys.stdin:
    cmd = line.split()
    if not cmd or cmd[0] != "time":
        break
    side, n = cmd[1], int(cmd[2])
    ms = []
    with torch.inference_mode():
        for _ in range(n):
            t0 = time.perf_counter()
            runs[side]()
            ms.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps(ms), flush=True)
'''

# ONNX Runtime's load: the interpreter and onnxruntime imported first (the baseline), then the
# session created and run once.
ORT_LOAD = r'''
import json, sys, time
import numpy as np
import onnxruntime as ort

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

base = rss_kb()
x = np.load(sys.argv[2])
t0 = time.perf_counter()
so = ort.SessionOptions()
so.intra_op_num_threads = int(sys.argv[3])
so.inter_op_num_threads = 1
so.add_session_config_entry("session.intra_op.allow_spinning", sys.argv[4])
sess = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
t1 = time.perf_counter()
sess.run(None, {"data": x})
t2 = time.perf_counter()
print(json.dumps({"load_ms": (t1 - t0) * 1e3, "first_ms": (t2 - t1) * 1e3, "base_kb": base}))
'''


def dump(name, workdir, fuse):
    """Dumps our model at batch 1; writes its weights (ours, for the peer), the input and our
    eager output. Returns (model path, input path, weights path, whether fusion was used)."""
    import tianyuan as ty
    from tianyuan.jit import trace
    net = infer_model(name)
    shape = INFER_MODELS[name][1]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)

    @trace(symbolic=True, capture_as_const=True)
    def infer(data):
        return net(data)

    infer(ty.tensor(x))
    path = os.path.join(workdir, f"{name}.tym")
    used = False
    if fuse:
        try:
            infer.dump(path, arg_names=["data"], output_names=["out"],
                       enable_fuse_conv_bias_nonlinearity=True)
            used = True
        except ValueError as e:
            print(f"[{name}: --fuse-conv-bn refused ({e}); dumped without it]")
    if not used:
        infer.dump(path, arg_names=["data"], output_names=["out"])
    x_path = os.path.join(workdir, f"{name}_x.npy")
    np.save(x_path, x)
    weights = os.path.join(workdir, f"{name}_weights.npz")
    np.savez(weights, __x__=x, __y__=net(ty.tensor(x)).numpy(), **net.state_dict())
    return path, x_path, weights, used


def run_tianyuan(model, x_path, iters, warmup, binary=RUN_BIN):
    """Timings (ms) of `iters` runs of the binary after `warmup` runs, one fresh process."""
    r = subprocess.run([binary, model, "--input", f"data={x_path}", "--iter", str(iters),
                        "--warmup-iter", str(warmup), "--thread", str(THREADS), "--verbose"],
                       capture_output=True, text=True, timeout=1200,
                       env={**os.environ, "TY_NUM_THREADS": str(THREADS)})
    if r.returncode != 0:
        raise RuntimeError(f"tianyuan-run failed: {r.stderr.strip()}")
    ms = [float(v) for v in re.findall(r"^run \d+: ([\d.]+) ms$", r.stdout, re.M)]
    if len(ms) != iters:
        raise RuntimeError(f"tianyuan-run printed {len(ms)} run times, expected {iters}")
    return ms


def peer_env(spin):
    """The peers' environment: 2 OpenMP threads; unless spin, waiting threads sleep (on a
    shared, oversubscribed machine libgomp's spinning makes PyTorch 5-10x slower)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    if not spin:
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


class Peer:
    """The peer process of one model (None when no interpreter has torch)."""

    def __init__(self, name, weights, workdir, spin):
        self.proc = None
        self.info = {"sides": [], "skipped": {}}
        py = peer_python()
        if py is None:
            self.info["skipped"] = {s: "PyTorch not installed" for s, _ in PEER_SIDES}
            return
        script = os.path.join(workdir, "peer.py")
        with open(script, "w") as f:
            f.write(PEER)
        self.onnx = os.path.join(workdir, f"{name}.onnx")
        self.proc = subprocess.Popen([py, script, name, weights, self.onnx, str(THREADS),
                                      "spin" if spin else "passive"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(workdir, "peer.err"), "w"),
                                     text=True, env=peer_env(spin))
        line = self.proc.stdout.readline()
        if not line:
            err = open(os.path.join(workdir, "peer.err")).read().strip().splitlines()
            self.info["skipped"] = {s: f"peer failed: {err[-1:] or '?'}" for s, _ in PEER_SIDES}
            self.proc = None
            return
        self.info = json.loads(line)

    def time(self, side, n):
        self.proc.stdin.write(f"time {side} {n}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self):
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


def stats(ms):
    return float(np.median(ms)), float(np.percentile(ms, 90))


def bench_model(name, args, workdir):
    model, x_path, weights, fused = dump(name, workdir, args.fuse_conv_bn)
    peer = Peer(name, weights, workdir, args.peer_spin)
    samples = {"tianyuan": []}
    if args.baseline_bin:
        samples["baseline"] = []
    samples.update({s: [] for s in peer.info["sides"]})
    try:
        for _ in range(args.rounds):
            time.sleep(args.settle)
            samples["tianyuan"] += run_tianyuan(model, x_path, args.iters, args.warmup)
            if args.baseline_bin:
                time.sleep(args.settle)
                samples["baseline"] += run_tianyuan(model, x_path, args.iters, args.warmup,
                                                    args.baseline_bin)
            for side in peer.info["sides"]:
                time.sleep(args.settle)
                samples[side] += peer.time(side, args.iters)
    finally:
        peer.close()
    return {"samples": samples, "peer": peer.info, "fused": fused}


# Runs a command and prints its exit status and peak RSS. A child's peak RSS counts the memory
# of the process it was forked from, so this small process forks it, not the benchmark.
RSS_HELPER = r'''
import json, os, subprocess, sys
with open(sys.argv[1], "w") as out:
    p = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(p.pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "kb": usage.ru_maxrss}))
'''


def wait_rss(cmd, out_path, env=None):
    """Runs cmd (stdout to out_path); returns (exit status, its peak RSS in KiB, stdout)."""
    r = subprocess.run([sys.executable, "-c", RSS_HELPER, out_path, *cmd], capture_output=True,
                       text=True, env=env, check=True)
    res = json.loads(r.stdout)
    with open(out_path) as f:
        return res["rc"], res["kb"], f.read()


def load_and_rss(workdir, spin, repeats=3):
    """ResNet-18: load time, first run and peak RSS, Tianyuan (the binary) vs ONNX Runtime
    (a Python process; its baseline is the interpreter with onnxruntime imported)."""
    model, x_path, _, _ = dump("resnet18", workdir, False)
    env = {**os.environ, "TY_NUM_THREADS": str(THREADS)}
    res = {}
    _, base_kb, _ = wait_rss([RUN_BIN, "--help"], os.path.join(workdir, "h.txt"), env)
    rows = []
    for _ in range(repeats):
        rc, kb, out = wait_rss([RUN_BIN, model, "--input", f"data={x_path}", "--iter", "1",
                                "--warmup-iter", "0", "--thread", str(THREADS), "--verbose"],
                               os.path.join(workdir, "ty.txt"), env)
        if rc != 0:
            raise RuntimeError(f"tianyuan-run failed: {out}")
        load = float(re.search(r"loaded .* in ([\d.]+) ms", out).group(1))
        first = float(re.search(r"^run 0: ([\d.]+) ms$", out, re.M).group(1))
        rows.append((load, first, kb))
    res["Tianyuan (tianyuan-run)"] = [float(np.median(c)) for c in zip(*rows)] + [base_kb]
    onnx = os.path.join(workdir, "resnet18.onnx")
    py = peer_python()
    if py is None or not os.path.exists(onnx):
        print("[ONNX Runtime load: skipped, no exported model (peer or onnxruntime missing)]")
        return res, model, None
    script = os.path.join(workdir, "ort_load.py")
    with open(script, "w") as f:
        f.write(ORT_LOAD)
    rows = []
    for _ in range(repeats):
        rc, kb, out = wait_rss([py, script, onnx, x_path, str(THREADS),
                                "1" if spin else "0"], os.path.join(workdir, "ort.txt"),
                               peer_env(spin))
        if rc != 0:
            print(f"[ONNX Runtime load failed: {out.strip().splitlines()[-1:]}]")
            return res, model, onnx
        r = json.loads(out.strip().splitlines()[-1])
        rows.append((r["load_ms"], r["first_ms"], kb, r["base_kb"]))
    med = [float(np.median(c)) for c in zip(*rows)]
    res["ONNX Runtime (Python)"] = med
    return res, model, onnx


def print_latency(results, args):
    labels = [("tianyuan", "Tianyuan")] + PEER_SIDES
    if any("baseline" in r["samples"] for r in results.values()):
        labels.insert(1, ("baseline", "baseline"))
    head = f"{'model (batch 1, ms)':<22}" + "".join(f"{lab + ' med/p90':>24}" for _, lab in labels)
    print(head + "   peer/Tianyuan (median)")
    for name, r in results.items():
        s = r["samples"]
        cells, ratios = [], []
        ty_med = stats(s["tianyuan"])[0]
        for side, lab in labels:
            if side in s and s[side]:
                med, p90 = stats(s[side])
                cells.append(f"{med:>15.2f} /{p90:>7.2f}")
                if side != "tianyuan":
                    short = "ORT" if side == "ort" else side
                    ratios.append(f"{short} {med / ty_med:.2f}x")
            else:
                cells.append(f"{'-':>24}")
        print(f"{name:<22}" + "".join(cells) + "   " + ", ".join(ratios))
    print()
    for name, r in results.items():
        for side, why in r["peer"].get("skipped", {}).items():
            print(f"[{name}: {dict(PEER_SIDES)[side]} skipped: {why}]")
        d = r["peer"].get("diff", {})
        if d:
            print(f"{name}: max |peer - Tianyuan eager| "
                  + ", ".join(f"{dict(PEER_SIDES)[k]} {v:.2e}" for k, v in sorted(d.items()))
                  + f" (outputs up to {r['peer']['scale']:.3g})"
                  + ("; dumped with enable_fuse_conv_bias_nonlinearity" if r["fused"] else ""))


def print_load(res, model, onnx):
    print("\nResNet-18 load (median of 3 fresh processes, batch 1, 2 threads):")
    print(f"{'':<26}{'load ms':>10}{'first run ms':>14}{'peak RSS MiB':>14}"
          f"{'above baseline':>16}{'file MiB':>10}")
    for side, v in res.items():
        load, first, kb, base = v
        f = model if side.startswith("Tianyuan") else onnx
        print(f"{side:<26}{load:>10.1f}{first:>14.1f}{kb / 1024:>14.1f}"
              f"{(kb - base) / 1024:>16.1f}{os.path.getsize(f) / 2**20:>10.1f}")
    print("(baseline: tianyuan-run --help's peak, started the same way; for ONNX Runtime "
          "the interpreter with onnxruntime imported)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20, help="timed runs per side per round")
    ap.add_argument("--warmup", type=int, default=3, help="tianyuan-run warm-up runs per round")
    ap.add_argument("--models", default=",".join(INFER_MODELS))
    ap.add_argument("--fuse-conv-bn", action="store_true",
                    help="dump with enable_fuse_conv_bias_nonlinearity=True (not bit-exact)")
    ap.add_argument("--no-load", action="store_true", help="skip the load-time/RSS part")
    ap.add_argument("--baseline-bin", default=None,
                    help="another tianyuan-run to time in the same rounds (a baseline build)")
    ap.add_argument("--settle", type=float, default=0.5,
                    help="seconds of quiet before each side's turn, so the threads of the side "
                         "before (another process's, spinning) have stopped (default 0.5; 0: "
                         "none)")
    ap.add_argument("--peer-spin", action="store_true",
                    help="leave the peers' thread pools spinning (their default; by default "
                         "OMP_WAIT_POLICY=PASSIVE and ONNX Runtime's allow_spinning=0, since "
                         "spinning collapses on a busy machine)")
    args = ap.parse_args()
    if not os.path.exists(RUN_BIN):
        sys.exit(f"{RUN_BIN} is missing: build it first (cmake --build build)")
    if args.baseline_bin and not os.path.exists(args.baseline_bin):
        sys.exit(f"--baseline-bin {args.baseline_bin} is missing")
    names = [n for n in args.models.split(",") if n]
    unknown = [n for n in names if n not in INFER_MODELS]
    if unknown:
        sys.exit(f"unknown models {unknown}; known: {list(INFER_MODELS)}")
    print(machine_line())
    print(f"Tianyuan side: {RUN_BIN} (the C runtime binary), its own per-run timer; "
          f"peers time the forward call; {args.rounds} alternating rounds x {args.iters} runs")
    print("peer thread pools: " + ("their default (spinning)" if args.peer_spin else
                                   "passive waiting (OMP_WAIT_POLICY=PASSIVE, ONNX Runtime "
                                   "allow_spinning=0); --peer-spin for their default"))
    print(f"each side's turn starts after {args.settle:g} s of quiet (--settle)")
    print("load now: %.2f %.2f %.2f (1, 5, 15 min)" % os.getloadavg())
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            results[name] = bench_model(name, args, workdir)
        versions = {}
        for r in results.values():
            versions.update(r["peer"].get("versions", {}))
        if versions:
            print("peer versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
        print()
        print_latency(results, args)
        if not args.no_load:
            print_load(*load_and_rss(workdir, args.peer_spin))


if __name__ == "__main__":
    main()
