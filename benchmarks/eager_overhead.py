"""Eager per-op overhead: microseconds per `c = a + b` on 1-element tensors and per 16x16
matmul, Tianyuan vs PyTorch in the same run. Ratio > 1 means Tianyuan is faster.

    PYTHONPATH=python .venv/bin/python benchmarks/eager_overhead.py
"""
import os
import sys

# numpy is only the data source here; its OpenBLAS threads would otherwise spin on our cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import timeit

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from _peer import machine_line, ratio, run_peer  # noqa: E402

N = 200_000


def best_us(stmt, globs, number):
    return min(timeit.repeat(stmt, globals=globs, number=number, repeat=5)) / number * 1e6


def bench_tianyuan():
    import tianyuan as ty
    import tianyuan.functional as F
    ty.set_num_threads(1)
    a, b = ty.tensor([1.0]), ty.tensor([2.0])
    m1 = ty.tensor(np.random.rand(16, 16).astype("float32"))
    m2 = ty.tensor(np.random.rand(16, 16).astype("float32"))
    return {"add": best_us("a + b", {"a": a, "b": b}, N),
            "matmul": best_us("F.matmul(m1, m2)", {"F": F, "m1": m1, "m2": m2}, N // 4)}


PEER = r'''
import json, timeit, torch
torch.set_num_threads(1)
a, b = torch.tensor([1.0]), torch.tensor([2.0])
m1, m2 = torch.rand(16, 16), torch.rand(16, 16)
def best(stmt, g, n):
    return min(timeit.repeat(stmt, globals=g, number=n, repeat=5)) / n * 1e6
print(json.dumps({"add": best("a + b", {"a": a, "b": b}, %d),
                  "matmul": best("torch.matmul(m1, m2)", {"torch": torch, "m1": m1, "m2": m2}, %d)}))
''' % (N, N // 4)


def main():
    ty_res = bench_tianyuan()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_eager_overhead.py")
    with open(path, "w") as f:
        f.write(PEER)
    peer = run_peer(path)
    print(machine_line())
    print(f"{'op':<22}{'tianyuan us':>14}{'pytorch us':>14}{'speedup':>12}")
    for k, label in (("add", "a + b (1 element)"), ("matmul", "matmul 16x16")):
        p = peer[k] if peer else None
        peer_us = f"{p:>14.3f}" if p else f"{'-':>14}"
        print(f"{label:<22}{ty_res[k]:>14.3f}{peer_us}  {ratio(ty_res[k], p)}")


if __name__ == "__main__":
    main()
