"""The generated elementwise loops (src/kernels/cpu/elemw_cpu.c) are compiled for AVX-512, AVX2
and baseline x86-64 and pick one from TY_ISA (read once at start, so each path runs in a child
interpreter): every path gives the same bits, on float32 and float64 math with special values
(NaN, +-inf, -0, subnormals), broadcasts, strided views, where, casts and integer ops."""
from _cpu import isas_here, run_isa_child


CHILD = r'''
import sys
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
rng = np.random.default_rng(5)
special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-45, 3e38, 1.0, -2.5], "float32")
out = {}
for dt in ("float32", "float64"):
    a = np.concatenate([rng.standard_normal(1000) * 10, special]).astype(dt)
    b = np.concatenate([rng.standard_normal(1000), special[::-1]]).astype(dt)
    x, y = ty.tensor(a, dtype=dt), ty.tensor(b, dtype=dt)
    m = ty.tensor(a.reshape(-1, 10), dtype=dt)
    ops = {"add": x + y, "mul": x * y, "div": x / y, "sub": x - y, "pow": x ** y,
           "floordiv": x // y, "mod": x % y, "sqrt": F.sqrt(x), "relu": F.relu(x),
           "max": F.maximum(x, y), "clip": F.clip(x, -1.0, 2.0), "sin": F.sin(x),
           "bcast": m + ty.tensor(b[:10], dtype=dt), "strided": m.transpose(1, 0) * 2,
           "where": F.where(x > y, x, y), "cast": x.astype("int32"), "half": x.astype("float16"),
           "lt": x < y, "round": F.round(x)}
    for k, v in ops.items():
        out[f"{dt}-{k}"] = v.numpy()
i = ty.tensor(rng.integers(-1000, 1000, 1003).astype("int32"))
j = ty.tensor(rng.integers(-7, 7, 1003).astype("int32"))
for k, v in {"iadd": i + j, "imul": i * j, "ifloordiv": i // j, "imod": i % j}.items():
    out[k] = v.numpy()
np.savez(sys.argv[1], **out)
'''


def _run(isa, path):
    return run_isa_child(CHILD, isa, path)


def test_every_instruction_set_gives_the_same_bits(tmp_path):
    isas = isas_here()
    got = {isa: _run(isa, tmp_path / f"{isa}.npz") for isa in isas}
    ref = got["generic"]
    assert len(ref) == 42
    for isa in isas[1:]:
        for k, v in ref.items():
            assert got[isa][k].tobytes() == v.tobytes(), (isa, k)
