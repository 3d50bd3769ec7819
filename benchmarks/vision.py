"""Vision ops against the peer (PyTorch / torchvision), float32, ms per call, 1 and 2 threads:
roi_align (forward, forward + backward), bilinear interpolate 2x (forward, forward + backward),
nearest interpolate 2x, warp_perspective (PyTorch: affine_grid + grid_sample, the same
bilinear sampling work; forward, and forward + backward w.r.t. the image and the matrices),
remap (PyTorch: grid_sample over the same pixel grid, zeros outside), the same resize and warp
on 3-channel images (where making each pixel's taps, shared by fewer channels, weighs more),
nms.

Tianyuan and the peer run in their own subprocesses, alternating for --rounds rounds; every
cell keeps its best (the 2-core VM has bursts of other load).

    PYTHONPATH=python .venv/bin/python benchmarks/vision.py [--rounds 3]
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _peer import machine_line, peer_python  # noqa: E402

COMMON = r'''
import json, sys, time
import numpy as np
reps, threads = int(sys.argv[1]), [int(t) for t in sys.argv[2].split(",")]
def best_ms(fn, trials=5):
    fn()
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps * 1e3)
    return best
rng = np.random.default_rng(0)
feat = rng.standard_normal((2, 256, 50, 50)).astype(np.float32)
xy = rng.uniform(0, 30, (128, 2))
rois = np.concatenate([rng.integers(0, 2, (128, 1)), xy, xy + rng.uniform(4, 20, (128, 2))],
                      1).astype(np.float32)
img = rng.standard_normal((8, 64, 56, 56)).astype(np.float32)
mats = np.tile(np.array([[0.9, 0.1, 2.0], [-0.1, 0.9, 1.0], [0, 0, 1]], np.float32), (8, 1, 1))
grid = rng.uniform(-1.05, 1.05, (8, 56, 56, 2)).astype(np.float32)  # grid_sample's [-1, 1]
pix = ((grid + 1) * 56 - 1) / 2                                     # the same points in pixels
img3 = rng.standard_normal((16, 3, 224, 224)).astype(np.float32)
mats3 = np.tile(mats[:1], (16, 1, 1))
bxy = rng.uniform(0, 500, (2000, 2))
boxes = np.concatenate([bxy, bxy + rng.uniform(10, 80, (2000, 2))], 1).astype(np.float32)
scores = rng.uniform(0, 1, 2000).astype(np.float32)
out = {}
'''

TIANYUAN = COMMON + r'''
import tianyuan as ty
import tianyuan.functional as F
V = F.vision
x, r = ty.Parameter(feat), ty.tensor(rois)
im = ty.Parameter(img)
m = ty.tensor(mats)
mp = ty.Parameter(mats)
px = ty.tensor(pix)
im3, m3 = ty.tensor(img3), ty.tensor(mats3)
b, s = ty.tensor(boxes), ty.tensor(scores)
def fb(f, p):
    gm = ty.autodiff.GradManager().attach(p if isinstance(p, list) else [p])
    with gm:
        gm.backward(f().sum())
cases = {
    "roi_align fwd": lambda: V.roi_align(x, r, 7, sample_points=2),
    "roi_align fwd+bwd": lambda: fb(lambda: V.roi_align(x, r, 7, sample_points=2), x),
    "interpolate 2x fwd": lambda: V.interpolate(im, scale_factor=2.0),
    "interpolate 2x fwd+bwd": lambda: fb(lambda: V.interpolate(im, scale_factor=2.0), im),
    "interpolate nearest 2x fwd": lambda: V.interpolate(im, scale_factor=2.0, mode="nearest"),
    "warp_perspective fwd": lambda: V.warp_perspective(im, m, (56, 56)),
    "warp_perspective fwd+bwd(x,mat)": lambda: fb(lambda: V.warp_perspective(im, mp, (56, 56)),
                                                  [im, mp]),
    "remap fwd": lambda: V.remap(im, px, border_mode="constant"),
    "interpolate 3ch 224->256 fwd": lambda: V.interpolate(im3, size=(256, 256)),
    "warp_perspective 3ch fwd": lambda: V.warp_perspective(im3, m3, (224, 224)),
    "nms 2000": lambda: V.nms(b, s, 0.5),
}
for t in threads:
    ty.set_num_threads(t)
    for k, f in cases.items():
        out[f"{k}/{t}"] = best_ms(f)
print(json.dumps(out))
'''

PEER = COMMON + r'''
import torch, torchvision
x, r = torch.tensor(feat, requires_grad=True), torch.tensor(rois)
im = torch.tensor(img, requires_grad=True)
theta = torch.tensor(mats[:, :2])
thetap = torch.tensor(mats[:, :2], requires_grad=True)
g_ = torch.tensor(grid)
im3, theta3 = torch.tensor(img3), torch.tensor(mats3[:, :2])
b, s = torch.tensor(boxes), torch.tensor(scores)
TF = torch.nn.functional
def fb(f):
    x.grad = None
    im.grad = None
    thetap.grad = None
    f().sum().backward()
def warp(th=theta, x_=im, shape=(8, 64, 56, 56)):
    g = TF.affine_grid(th, shape, align_corners=False)
    return TF.grid_sample(x_, g, mode="bilinear", padding_mode="border", align_corners=False)
cases = {
    "roi_align fwd": lambda: torchvision.ops.roi_align(x, r, 7, 1.0, 2, True),
    "roi_align fwd+bwd": lambda: fb(lambda: torchvision.ops.roi_align(x, r, 7, 1.0, 2, True)),
    "interpolate 2x fwd": lambda: TF.interpolate(im, scale_factor=2.0, mode="bilinear"),
    "interpolate 2x fwd+bwd": lambda: fb(lambda: TF.interpolate(im, scale_factor=2.0,
                                                                mode="bilinear")),
    "interpolate nearest 2x fwd": lambda: TF.interpolate(im, scale_factor=2.0, mode="nearest"),
    "warp_perspective fwd": warp,
    "warp_perspective fwd+bwd(x,mat)": lambda: fb(lambda: warp(thetap)),
    "remap fwd": lambda: TF.grid_sample(im, g_, mode="bilinear", padding_mode="zeros",
                                        align_corners=False),
    "interpolate 3ch 224->256 fwd": lambda: TF.interpolate(im3, size=(256, 256),
                                                           mode="bilinear"),
    "warp_perspective 3ch fwd": lambda: warp(theta3, im3, (16, 3, 224, 224)),
    "nms 2000": lambda: torchvision.ops.nms(b, s, 0.5),
}
for t in threads:
    torch.set_num_threads(t)
    for k, f in cases.items():
        if "bwd" in k:
            out[f"{k}/{t}"] = best_ms(f)
        else:
            with torch.no_grad():
                out[f"{k}/{t}"] = best_ms(f)
print(json.dumps(out))
'''


def run(python, script, reps, threads, env_extra=None):
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ty_bench_vision_{os.getpid()}.py")
    with open(path, "w") as f:
        f.write(script)
    env = {**os.environ, **(env_extra or {})}
    out = subprocess.run([python, path, str(reps), ",".join(map(str, threads))],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"[{python} failed: {out.stderr.strip().splitlines()[-1:]}]")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    peer = peer_python()
    ours_env = {"PYTHONPATH": os.path.join(os.path.dirname(HERE), "python")}
    best = [{}, {}]
    for _ in range(a.rounds):
        for i, (py, script, env) in enumerate(((sys.executable, TIANYUAN, ours_env),
                                               (peer, PEER, {"OMP_NUM_THREADS": "2"}))):
            if py is None:
                continue
            res = run(py, script, a.reps, a.threads, env) or {}
            for k, v in res.items():
                best[i][k] = min(best[i].get(k, v), v)
    print(machine_line())
    print(f"{'case / threads':<30}{'tianyuan ms':>12}{'peer ms':>10}{'ratio':>8}")
    for k, v in best[0].items():
        p = best[1].get(k)
        ratio = f"{v / p:>8.2f}" if p else f"{'n/a':>8}"
        print(f"{k:<30}{v:>12.3f}{(p if p else float('nan')):>10.3f}{ratio}")


if __name__ == "__main__":
    main()
