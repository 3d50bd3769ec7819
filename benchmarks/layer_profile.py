"""Per-layer times at batch 1 (2 threads unless --threads): Tianyuan's runtime
(`tianyuan-run --profile`) beside ONNX Runtime (SessionOptions.enable_profiling), conv layers
matched in execution order.

    PYTHONPATH=python .venv/bin/python benchmarks/layer_profile.py [--models resnet18]
        [--iters 20] [--rounds 3] [--threads 2] [--unfused] [--workdir DIR] [--bin PATH]

--bin profiles another tianyuan-run (a baseline build, say) on the same dumped model.

Each conv row shows its geometry (in channels -> out channels, kernel, stride, input size),
the time per run on each side and the ratio ORT / ours (> 1: we are faster): the rounds
alternate the sides (each a fresh process of --iters runs), and each layer keeps its lowest
20th percentile over the rounds, since this machine's speed drifts for seconds at a time.
Both sides run with their fusions: ours times the plan's run, a conv with the batch norm and
activation fused into it as one; ORT its fused conv node. "+rest" is the ops that follow up to
the next conv and run apart (reshapes, an unfused add). --unfused profiles ours op by op
instead (`--profile-ops`: the batch norm and activation in "+rest"). ORT's node times come
from its profile's "kernel_time" events; ours from the Chrome trace.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from _models import INFER_MODELS, infer_model  # noqa: E402
from _peer import machine_line, peer_python  # noqa: E402

RUN_BIN = os.path.join(os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build")),
                       "tianyuan-run")

# Exports the torchvision model with our weights and profiles ONNX Runtime; prints per-node
# median kernel times in execution order (one JSON list of [name, op, ms]).
ORT_SIDE = r'''
import json, sys, os
import numpy as np
import torch, torchvision.models as tvm
import onnxruntime as ort
name, weights, x_path, onnx_path, iters = sys.argv[1:6]
threads = int(sys.argv[6])
torch.set_num_threads(threads)
model = getattr(tvm, name)().eval()
w = np.load(weights)
sd = model.state_dict()  # grouped weights: ours (G, OCg, ICg, kh, kw), torch's 4-D
model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(w[k].reshape(tuple(sd[k].shape))))
                       for k in w.files if k in sd}, strict=False)
x = np.load(x_path)
if not os.path.exists(onnx_path):  # later rounds profile the same export
    torch.onnx.export(model, (torch.from_numpy(x),), onnx_path, input_names=["data"],
                      output_names=["out"], dynamo=False)
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.add_session_config_entry("session.intra_op.allow_spinning", "1")
so.enable_profiling = True
so.profile_file_prefix = os.path.join(os.path.dirname(onnx_path), "ortprof")
sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
for _ in range(5):
    sess.run(None, {"data": x})
for _ in range(int(iters)):
    sess.run(None, {"data": x})
prof = sess.end_profiling()
events = json.load(open(prof))
times, order, ops, shapes = {}, [], {}, {}
for e in events:
    if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
        continue
    n = e["name"][:-len("_kernel_time")]
    if n not in times:
        times[n] = []
        order.append(n)
        ops[n] = e.get("args", {}).get("op_name", "?")
        shapes[n] = e.get("args", {}).get("input_type_shape", [])
    times[n].append(e["dur"] / 1e3)
print(json.dumps([[n, ops[n], float(np.percentile(times[n][5:] or times[n], 20)), shapes[n]]
                  for n in order]))
'''


def dump(name, workdir):
    """Dumps our model at batch 1 with its input and weights; returns the paths and the conv
    layers' keys (cin, cout, k, stride, input size) in our execution order."""
    import tianyuan as ty
    import tianyuan.functional as F
    from tianyuan.jit import trace
    net = infer_model(name)
    shape = INFER_MODELS[name][1]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    convs, conv2d = [], F.conv2d

    def recording(inp, weight, bias=None, stride=1, *a, **k):
        s = stride if isinstance(stride, int) else stride[0]
        convs.append((inp.shape[1], weight.shape[0], weight.shape[-1], s, inp.shape[2]))
        return conv2d(inp, weight, bias, stride, *a, **k)

    F.conv2d = recording
    try:
        net(ty.tensor(x))
    finally:
        F.conv2d = conv2d

    @trace(symbolic=True, capture_as_const=True)
    def infer(data):
        return net(data)

    infer(ty.tensor(x))
    path = os.path.join(workdir, f"{name}.tym")
    infer.dump(path, arg_names=["data"], output_names=["out"])
    x_path = os.path.join(workdir, f"{name}_x.npy")
    np.save(x_path, x)
    w_path = os.path.join(workdir, f"{name}_w.npz")
    np.savez(w_path, **{k: np.asarray(v) for k, v in net.state_dict().items()})
    return path, x_path, w_path, convs


def ours(model, x_path, iters, workdir, threads, unfused, binary=RUN_BIN):
    prof = os.path.join(workdir, "typrof.json")
    subprocess.run([binary, model, "--input", f"data={x_path}", "--iter", str(iters),
                    "--warmup-iter", "5", "--thread", str(threads), "--profile", prof]
                   + (["--profile-ops"] if unfused else []),
                   check=True, capture_output=True)
    events = json.load(open(prof))["traceEvents"]
    runs = sorted((e for e in events if e.get("cat") == "run"), key=lambda e: e["ts"])
    ops = sorted((e for e in events if e.get("cat") == "op"), key=lambda e: e["ts"])
    per_run = [[e for e in ops if r["ts"] <= e["ts"] < r["ts"] + r["dur"]] for r in runs]
    n = len(per_run[0])
    per_run = [r for r in per_run if len(r) == n]
    return [(per_run[0][i]["name"], low([r[i]["dur"] / 1e3 for r in per_run]))
            for i in range(n)]


def unprofiled(model, x_path, iters, threads, binary=RUN_BIN):
    out = subprocess.run([binary, model, "--input", f"data={x_path}", "--iter", str(iters),
                          "--warmup-iter", "5", "--thread", str(threads)], check=True,
                         capture_output=True, text=True).stdout
    return next((l for l in out.splitlines() if l.startswith("latency")), out.strip())


def low(ms):
    """A robust low estimate on a shared, noisy machine: the 20th percentile."""
    return float(np.percentile(ms, 20))


def fold(rows, is_conv):
    """One entry per conv: [name, conv ms, ms of the non-conv ops after it]; and ms by op."""
    out, by_op = [], defaultdict(float)
    for row in rows:
        if is_conv(row):
            out.append([row, row[2], 0.0])
        elif out:
            out[-1][2] += row[2]
        by_op[row[1]] += row[2]
    return out, by_op


def ort_key(shapes):
    x, w = shapes[0]["float"], shapes[1]["float"]
    return (x[1], w[0], w[-1], None, x[2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--bin", default=RUN_BIN)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    ap.add_argument("--unfused", action="store_true",
                    help="profile ours op by op (the batch norm and activation apart)")
    args = ap.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="ty_layers_")
    os.makedirs(workdir, exist_ok=True)
    print(machine_line())
    for name in args.models.split(","):
        model, x_path, w_path, convs = dump(name, workdir)
        onnx = os.path.join(workdir, f"{name}.onnx")
        if os.path.exists(onnx):
            os.remove(onnx)  # exported afresh with this dump's weights
        mine = theirs = None
        for _ in range(args.rounds):
            m = ours(model, x_path, args.iters, workdir, args.threads, args.unfused, args.bin)
            mine = m if mine is None else [(n, min(a, b)) for (n, a), (_, b) in zip(mine, m)]
            out = subprocess.run([peer_python(), "-c", ORT_SIDE, name, w_path, x_path, onnx,
                                  str(args.iters), str(args.threads)], capture_output=True,
                                 text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
            if out.returncode != 0:
                print(out.stderr[-2000:])
                return
            t = json.loads(out.stdout.strip().splitlines()[-1])
            theirs = t if theirs is None else [
                [n, op, min(a, b), sh] for (n, op, a, sh), (_, _, b, _) in zip(theirs, t)]
        tc, t_ops = fold([(n, n, ms) for n, ms in mine], lambda r: r[1] == "conv2d")
        oc, o_ops = fold(theirs, lambda r: r[1] in ("Conv", "FusedConv"))
        pool = defaultdict(list)           # ORT's convs by key, in their order
        for entry in oc:
            pool[ort_key(entry[0][3])].append(entry)
        print(f"\n{name}, {args.threads} thread(s): unprofiled run: "
              f"{unprofiled(model, x_path, args.iters, args.threads, args.bin)}")
        how = ("op by op (BN/add/relu unfused)" if args.unfused
               else "through the plan (each conv with what is fused into it)")
        print(f"ms per layer (lowest 20th percentile of {args.rounds} alternating rounds); ours "
              f"profiled {how}, ORT's with its fusions")
        print(f"{'#':>3} {'cin->cout k s in':<22} {'ours conv':>9} {'+rest':>7} "
              f"{'ORT conv':>9} {'+rest':>7} {'ORT/ours conv':>13}")
        tot = [0.0, 0.0]
        for i, c in enumerate(convs):
            t = tc[i] if i < len(tc) else [None, 0.0, 0.0]
            lst = pool[(c[0], c[1], c[2], None, c[4])]
            o = lst.pop(0) if lst else [None, 0.0, 0.0]
            tot[0] += t[1]
            tot[1] += o[1]
            geo = f"{c[0]}->{c[1]} k{c[2]} s{c[3]} {c[4]}"
            print(f"{i:>3} {geo:<22} {t[1]:9.3f} {t[2]:7.3f} {o[1]:9.3f} {o[2]:7.3f} "
                  f"{(o[1] / t[1] if t[1] else 0):13.2f}")
        print(f"convs: ours {tot[0]:.2f} ms, ORT {tot[1]:.2f} ms")
        print("ours by op:", {k: round(v, 3) for k, v in sorted(t_ops.items(), key=lambda kv: -kv[1])})
        print("ORT by op:", {k: round(v, 3) for k, v in sorted(o_ops.items(), key=lambda kv: -kv[1])})


if __name__ == "__main__":
    main()
