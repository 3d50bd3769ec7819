"""ResNet's stem max pooling (3x3, stride 2, padding 1, float32, 1x64x112x112 -> 56x56) beside
PyTorch's F.max_pool2d and ONNX Runtime's MaxPool (both from the peer venv, when found),
milliseconds per call at 1 and 2 threads.

Variants of tianyuan run in their own subprocesses, by TY_ISA: "new" is the best ISA (the
AVX-512 / AVX2 kernels of pool.c), "generic" the separable C loops (target_clones, the path
every ISA took before those kernels). Variants and the peer take turns for --rounds rounds and
each cell keeps its minimum, because the 2-core VM is shared with bursts of other load.

    PYTHONPATH=python .venv/bin/python benchmarks/pool_3x3.py [--rounds 5]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _peer import machine_line, peer_python  # noqa: E402

SHAPE = (1, 64, 112, 112)
PARAMS = dict(kernel_h=3, kernel_w=3, stride_h=2, stride_w=2, pad_h=1, pad_w=1, mode=0)

TIMER = r'''
import time
def best_ms(fn, reps, trials=7):
    fn()
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps * 1e3)
    return best
'''

WORKER = TIMER + r'''
import json, sys
import numpy as np
import tianyuan as ty
from tianyuan import _C
reps, threads, shape = int(sys.argv[1]), [int(t) for t in sys.argv[2].split(",")], eval(sys.argv[3])
params = json.loads(sys.argv[4])
x = ty.tensor(np.random.default_rng(0).standard_normal(shape).astype("float32"))
out = {}
for t in threads:
    ty.set_num_threads(t)
    out[f"{t}"] = best_ms(lambda: _C.ops["max_pool2d"](x, **params), reps)
print(json.dumps(out))
'''

PEER = TIMER + r'''
import json, sys
import numpy as np
reps, threads, shape = int(sys.argv[1]), [int(t) for t in sys.argv[2].split(",")], eval(sys.argv[3])
x = np.random.default_rng(0).standard_normal(shape).astype("float32")
out = {}
import torch
tx = torch.from_numpy(x)
for t in threads:
    torch.set_num_threads(t)
    with torch.no_grad():
        out[f"torch/{t}"] = best_ms(lambda: torch.nn.functional.max_pool2d(tx, 3, 2, 1), reps)
try:
    import onnx, onnxruntime as ort
    from onnx import TensorProto, helper
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                            pads=[1, 1, 1, 1])
    g = helper.make_graph([node], "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                          list(shape))], [helper.make_tensor_value_info("y", TensorProto.FLOAT,
                          None)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    for t in threads:
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = t, 1
        s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        out[f"ort/{t}"] = best_ms(lambda: s.run(None, {"x": x}), reps)
except ImportError:
    pass
print(json.dumps(out))
'''


def run(py, script, env, reps, threads):
    cmd = [py, "-c", script, str(reps), ",".join(map(str, threads)), repr(SHAPE),
           json.dumps(PARAMS)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    pydir = os.path.join(os.path.dirname(HERE), "python")
    base = {**os.environ, "PYTHONPATH": pydir, "OMP_NUM_THREADS": "2"}
    runs = {"new": (sys.executable, WORKER, {**base, "TY_ISA": "avx512"}),
            "generic": (sys.executable, WORKER, {**base, "TY_ISA": "generic"})}
    peer = peer_python()
    if peer:
        runs["peer"] = (peer, PEER, base)
    best = {}
    for _ in range(a.rounds):
        for name, (py, script, env) in runs.items():
            for k, v in run(py, script, env, a.reps, a.threads).items():
                key = k if name == "peer" else f"ty {name}/{k}"
                best[key] = min(best.get(key, v), v)
    print(machine_line())
    print(f"max_pool2d 3x3/2 pad 1, float32, {SHAPE}: ms per call, min over {a.rounds} rounds")
    for t in a.threads:
        cells = [(k.rsplit("/", 1)[0], v) for k, v in best.items() if k.endswith(f"/{t}")]
        print(f"  {t} thread(s): " + "  ".join(f"{k} {v:.4f}" for k, v in cells))


if __name__ == "__main__":
    main()
