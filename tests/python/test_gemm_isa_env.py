"""TY_ISA=generic|avx2|avx512 forces the GEMM kernels of that instruction set (read once at
start, so each case runs in a child interpreter). Each path is recognised by the bits it gives:
generic multiplies and adds separately, in k order, so NumPy's float32 loop reproduces it
exactly; the fused paths cut K into blocks of at most 256 (AVX2) or 512 (AVX-512) and add the
block sums in order, so a product over K = 2 blocks equals the sum of its two halves' products
(which would not hold bit for bit on a path that kept one chain over all of K)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from _cpu import cpu_flags

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r'''
import sys
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
k = int(sys.argv[1])
rng = np.random.default_rng(7)
a = rng.standard_normal((24, k)).astype("float32")
b = rng.standard_normal((k, 40)).astype("float32")
mm = lambda x, y: F.matmul(ty.tensor(np.ascontiguousarray(x)), ty.tensor(np.ascontiguousarray(y))).numpy()
h = k // 2
full = mm(a, b)
halves = mm(a[:, :h], b[:h]) + mm(a[:, h:], b[h:])
seq = np.zeros((24, 40), np.float32)
for p in range(k):
    seq = seq + a[:, p:p + 1] * b[p:p + 1, :]
print(int(np.array_equal(full, seq)), int(np.array_equal(full, halves)))
'''


def _run(isa, k):
    env = dict(os.environ, TY_ISA=isa, TY_NUM_THREADS="2")
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", CHILD, str(k)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    seq, halves = r.stdout.split()
    return seq == "1", halves == "1"


def test_ty_isa_generic_is_separate_multiply_and_add():
    seq, _ = _run("generic", 200)
    assert seq


@pytest.mark.parametrize("isa,k,flag", [("avx2", 500, "avx2"), ("avx512", 1000, "avx512f")])
def test_ty_isa_fused_paths_cut_k_in_their_blocks(isa, k, flag):
    if flag not in cpu_flags() or "fma" not in cpu_flags():
        pytest.skip(f"CPU without {flag}")
    seq, halves = _run(isa, k)
    assert halves and not seq
