"""A row times a matrix contiguous along k (a linear layer at batch 1: x @ W^T) takes the
matrix-vector kernel (src/kernels/cpu/gemv.h) where the GEMM's instruction set has one: it
must give the GEMM's bits, so batch 1 equals the first row of a larger batch bitwise, on
every instruction set (a child per TY_ISA, read once at start), traced and deployed alike."""
import io

import numpy as np

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference
from _cpu import isas_here, run_isa_child

CHILD = r'''
import sys
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
rng, checked = np.random.default_rng(5), 0
for n, k in [(1000, 1280), (41, 13), (7, 300), (64, 513)]:
    x = rng.standard_normal((3, k)).astype(np.float32)
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    for t in (1, 2):
        ty.set_num_threads(t)
        one = F.linear(ty.tensor(x[:1]), ty.tensor(w), ty.tensor(b)).numpy()
        three = F.linear(ty.tensor(x), ty.tensor(w), ty.tensor(b)).numpy()
        assert one.tobytes() == three[:1].tobytes(), (n, k, t)
        ref = x[:1].astype(np.float64) @ w.T.astype(np.float64) + b
        assert np.allclose(one, ref, rtol=1e-4, atol=1e-4), (n, k)
    checked += 1
np.savez(sys.argv[1], checked=checked)
'''


def test_batch_one_has_the_bits_of_a_batch_row_on_every_isa(tmp_path):
    for isa in isas_here():
        assert run_isa_child(CHILD, isa, tmp_path / f"{isa}.npz")["checked"] == 4, isa


def test_deployed_linear_at_batch_one_has_the_eager_bits():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 320)).astype(np.float32)
    w = ty.tensor(rng.standard_normal((100, 320)).astype(np.float32))

    def f(inp):
        return F.matmul(inp, w, transpose_b=True)

    eager = f(ty.tensor(x)).numpy()
    traced = trace(f, capture_as_const=True)
    assert traced(ty.tensor(x)).numpy().tobytes() == eager.tobytes()
    buf = io.BytesIO()
    traced.dump(buf)
    (got,) = GraphInference(buf.getvalue()).run(x).values()
    assert got.tobytes() == eager.tobytes()
