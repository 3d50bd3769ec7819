"""DTR (tianyuan.dtr) on a CIFAR-style ResNet-20: peak live allocator bytes of a training step
(above what lived before it) and time per step, plain eager vs DTR at eviction thresholds of
a fraction of the plain step's peak, in alternating rounds; also checks that the parameters
after the steps are bitwise those of the plain run.

    PYTHONPATH=python .venv/bin/python benchmarks/dtr.py [--batch 64] [--steps 4] [--rounds 2]
"""
import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import numpy as np  # noqa: E402

import tianyuan as ty  # noqa: E402
import tianyuan.functional as F  # noqa: E402
import tianyuan.module as M  # noqa: E402
from tianyuan import dtr  # noqa: E402


class Block(M.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = M.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = M.BatchNorm2d(cout)
        self.c2 = M.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = M.BatchNorm2d(cout)
        self.short = None if stride == 1 and cin == cout else M.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.short is None else self.short(x)))


class ResNet20(M.Module):
    def __init__(self):
        super().__init__()
        self.stem = M.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = M.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = M.Sequential(*blocks)
        self.fc = M.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(F.mean(x, axis=(2, 3)))


def run(batch, steps, threshold=None):
    ty.random.seed(0)
    net = ResNet20()
    opt = ty.optimizer.SGD(net.parameters(), lr=0.05, momentum=0.9)
    gm = ty.autodiff.GradManager().attach(net.parameters())
    rng = np.random.default_rng(0)
    x = ty.tensor(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32))
    y = ty.tensor(rng.integers(0, 10, batch).astype(np.int32))
    base = ty.get_mem_status_bytes()["allocated"]
    before = dtr.stats()
    if threshold is not None:
        dtr.evictee_minimum_size = 64 << 10
        dtr.eviction_threshold = base + threshold
        dtr.enable()
    ty.reset_peak_memory()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        with gm:
            loss = F.nn.cross_entropy(net(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        loss.numpy()
        times.append(time.perf_counter() - t0)
    dtr.disable()
    peak = ty.get_max_mem_bytes() - base
    after = dtr.stats()
    counts = (after["evictions"] - before["evictions"], after["recomputes"] - before["recomputes"])
    return peak, float(np.median(times[1:] if steps > 1 else times)), counts, \
        [p.numpy() for p in net.parameters()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    ty.set_num_threads(a.threads)
    peak0, _, _, ref = run(a.batch, 1)
    fractions = (0.5, 0.35)
    rows = {None: [], **{f: [] for f in fractions}}
    for _ in range(a.rounds):  # alternating rounds: the machine is shared and noisy
        for f in rows:
            peak, t, counts, params = run(a.batch, a.steps, None if f is None else int(peak0 * f))
            same = all(np.array_equal(p, q) for p, q in zip(params, run_ref(a, ref, params)))
            rows[f].append((peak, t, counts, same))
    print(f"ResNet-20 (CIFAR), batch {a.batch}, {a.threads} threads, {a.steps} steps, "
          f"median step time, best of {a.rounds} rounds")
    print(f"{'mode':<22}{'peak MiB':>10}{'s/step':>9}{'evict':>8}{'recomp':>8}  bitwise")
    for f, rs in rows.items():
        peak, t, counts, same = min(rs, key=lambda r: r[1])
        name = "plain eager" if f is None else f"DTR at {f:.0%} of peak"
        print(f"{name:<22}{peak / 2**20:>10.2f}{t:>9.3f}{counts[0]:>8}{counts[1]:>8}  {same}")


_plain_cache = {}


def run_ref(a, ref, params):
    """Parameters of a plain run of the same number of steps (computed once)."""
    if a.steps not in _plain_cache:
        _plain_cache[a.steps] = run(a.batch, a.steps)[3]
    return _plain_cache[a.steps]


if __name__ == "__main__":
    main()
