"""The float32 sampling kernels of remap / warp_perspective (and so interpolate, resize,
rotate, warp_affine) and of roi_align's average give the same bits on every instruction set: TY_ISA=generic, avx2 and
avx512 (read once at start, so each runs in a child interpreter) must agree byte for byte,
forward and backward, on rows whose widths are not multiples of the vector width, with
every interpolation, the constant border (cells that read nothing) and NaN coordinates."""
import os
import subprocess
import sys

import pytest

from _cpu import cpu_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r'''
import hashlib
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
V = F.vision
rng = np.random.default_rng(3)
x = ty.Parameter(rng.standard_normal((2, 3, 9, 21)).astype("float32"))
h = hashlib.sha256()
mats = np.tile(np.eye(3), (2, 1, 1)) + rng.uniform(-0.3, 0.3, (2, 3, 3))
mats[:, 2] = [0.01, -0.02, 1.0]
m = rng.uniform(-3, 24, (2, 7, 37, 2)).astype("float32")
m[0, 1, 3] = np.nan
for interp in ("linear", "nearest", "cubic"):
    for border in ("replicate", "constant", "wrap"):
        for f in (lambda: V.warp_perspective(x, ty.tensor(mats, dtype="float32"), (11, 35),
                                             border_mode=border, border_val=0.5,
                                             interp_mode=interp),
                  lambda: V.remap(x, ty.tensor(m), border_mode=border, scalar=0.5,
                                  interp_mode=interp)):
            gm = ty.autodiff.GradManager().attach([x])
            with gm:
                y = f()
                gm.backward((y * y).sum())
            h.update(y.numpy().tobytes())
            h.update(x.grad.numpy().tobytes())
            x.grad = None
h.update(V.interpolate(x, scale_factor=2.5).numpy().tobytes())
rois = ty.tensor([[0, 1.5, -2.0, 17.2, 6.1], [1, 3.0, 2.0, 9.5, 8.0], [1, -40.0, -30.0, 90.0, 70.0]],
                 dtype="float32")
for sp in (2, 3, 0):  # 0: adaptive; the big box's taps stream instead of a table
    h.update(V.roi_align(x, rois, (3, 5), sample_points=sp).numpy().tobytes())
print(h.hexdigest())
'''


def _digest(isa):
    env = dict(os.environ, TY_ISA=isa)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_sampling_bits_equal_on_every_isa():
    isas = ["generic"] + [i for i, flag in (("avx2", "avx2"), ("avx512", "avx512f"))
                          if flag in cpu_flags()]
    if len(isas) == 1:
        pytest.skip("CPU without AVX2")
    digests = {isa: _digest(isa) for isa in isas}
    assert len(set(digests.values())) == 1, digests
