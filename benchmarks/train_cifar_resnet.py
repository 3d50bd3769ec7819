"""Training-step throughput of ResNet-18 on CIFAR-sized inputs (32x32, 10 classes): one SGD
step (forward, backward, momentum update) at batch 32, data in memory, 2 threads. Tianyuan
eager and traced (jit.trace of the whole step) vs PyTorch eager. The three take turns, round
after round (the peer in a fresh process each round), because the shared VM has bursts of
other load; each side keeps its best round, and the range over rounds is printed too.

Columns: images/s by the wall clock, and CPU seconds per step (the process's user + system
time: what a step costs however busy the machine is). Ratio > 1 means Tianyuan is faster.

    PYTHONPATH=python .venv/bin/python benchmarks/train_cifar_resnet.py [--steps 4]
        [--rounds 3] [--threads 2] [--batch 32] [--no-trace]
"""
import argparse
import json
import os
import sys
import time

# numpy is only the data source here; its OpenBLAS threads would otherwise spin on our cores
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from _models import cifar_resnet18  # noqa: E402
from _peer import machine_line, run_peer  # noqa: E402


def tianyuan_step(batch, traced):
    import tianyuan as ty
    import tianyuan.functional as F
    import tianyuan.optimizer as optim
    from tianyuan.autodiff import GradManager
    from tianyuan.jit import trace

    ty.random.seed(0)
    net = cifar_resnet18()
    net.train()
    gm = GradManager().attach(net.parameters())
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = ty.tensor(rng.standard_normal((batch, 3, 32, 32)).astype("float32"))
    y = ty.tensor(rng.integers(0, 10, batch).astype("int32"))

    def step(x, y):
        with gm:
            loss = F.nn.cross_entropy(net(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    fn = trace(step) if traced else step
    for _ in range(2):
        fn(x, y).numpy()
    return lambda: fn(x, y).numpy()


def timed(step, steps):
    """(seconds per step by the wall clock, CPU seconds per step)."""
    w0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - w0) / steps, (time.process_time() - c0) / steps


PEER = r'''
import json, sys, time, torch, numpy as np
import torch.nn as nn, torch.nn.functional as F
steps, threads, batch = map(int, sys.argv[1:4])
torch.set_num_threads(threads)
torch.manual_seed(0)
class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                       nn.BatchNorm2d(cout))
    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.short is None else self.short(x)))
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [Block(cin, cout, stride), Block(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(512, 10)
    def forward(self, x):
        x = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(F.avg_pool2d(x, 4), 1))
net = Net().train()
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
x = torch.tensor(rng.standard_normal((batch, 3, 32, 32)).astype("float32"))
y = torch.tensor(rng.integers(0, 10, batch))
def step():
    opt.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss.item()
for _ in range(2):
    step()
w0, c0 = time.perf_counter(), time.process_time()
for _ in range(steps):
    step()
print(json.dumps({"wall": (time.perf_counter() - w0) / steps,
                  "cpu": (time.process_time() - c0) / steps}))
'''


def summary(name, runs, batch, peer=None):
    walls = sorted(w for w, _ in runs)
    cpus = sorted(c for _, c in runs)
    rate = batch / walls[0]
    line = (f"{name:<18}{rate:>9.1f}{batch / walls[-1]:>9.1f}-{rate:<7.1f}"
            f"{cpus[0]:>8.3f}{cpus[-1]:>8.3f}")
    if peer:
        pw = min(w for w, _ in peer)
        pc = min(c for _, c in peer)
        line += f"{pw / walls[0]:>9.2f}x{pc / cpus[0]:>9.2f}x"
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-trace", action="store_true", help="eager Tianyuan only")
    a = ap.parse_args()

    import tianyuan as ty
    ty.set_num_threads(a.threads)
    sides = {"tianyuan eager": tianyuan_step(a.batch, False)}
    if not a.no_trace:
        sides["tianyuan traced"] = tianyuan_step(a.batch, True)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_train_cifar.py")
    with open(path, "w") as f:
        f.write(PEER)
    runs = {name: [] for name in sides}
    peer = []
    for _ in range(a.rounds):
        for name, step in sides.items():
            runs[name].append(timed(step, a.steps))
        got = run_peer(path, a.steps, a.threads, a.batch)
        if got is not None:
            peer.append((got["wall"], got["cpu"]))
    print(machine_line())
    print(f"CIFAR ResNet-18 training step (SGD momentum), batch {a.batch}, 32x32, "
          f"{a.threads} threads, {a.rounds} alternating rounds of {a.steps} steps")
    print(f"{'':<18}{'img/s':>9}{'range':>17}{'CPU s/step':>16}"
          f"{'wall ratio':>10}{'CPU ratio':>10}")
    for name, r in runs.items():
        print(summary(name, r, a.batch, peer))
    if peer:
        print(summary("pytorch eager", peer, a.batch))
    else:
        print("PyTorch not installed: Tianyuan side only")
    print(json.dumps({"tianyuan": {k: min(w for w, _ in r) for k, r in runs.items()},
                      "pytorch": min(w for w, _ in peer) if peer else None}))


if __name__ == "__main__":
    main()
