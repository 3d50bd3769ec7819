"""All-reduce bandwidth on 2 ranks, Tianyuan (MPI, launched by dist.launcher) beside
torch.distributed (gloo, 2 processes) in the same run, alternating rounds; and the data-parallel
training throughput of the reference CNN, 2 ranks x 1 thread against 1 rank x 1 thread, beside
PyTorch DDP (gloo) doing the same.

Bandwidth is the algorithm bandwidth (bytes of the tensor / time of one all-reduce sum of a
float32 tensor, the slower rank's time), best of the rounds. Ratio > 1: Tianyuan faster.

    PYTHONPATH=python .venv/bin/python benchmarks/allreduce.py [--rounds 3] [--max-mb 64]
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from _peer import machine_line, run_peer  # noqa: E402

BUDGET = 0.25  # seconds of all-reduces per size per round


def sizes(max_mb):
    out, n = [], 1 << 10
    while n <= max_mb << 20:
        out.append(n)
        n <<= 2
    return out


def _iters(nbytes):
    return int(max(3, min(400, (64 << 20) * 6 // nbytes)))


def ty_allreduce_rank(byte_sizes):
    """One rank: seconds per all-reduce for each size (the slowest rank's, via a max)."""
    import tianyuan as ty
    import tianyuan.distributed as dist
    import tianyuan.functional as F
    out = {}
    for nbytes in byte_sizes:
        x = ty.tensor(np.ones(nbytes // 4, np.float32))
        F.distributed.all_reduce_sum(x)  # warm-up (buffers, MPI connections)
        iters = _iters(nbytes)
        dist.group_barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            y = F.distributed.all_reduce_sum(x)
        y.numpy()
        dt = (time.perf_counter() - t0) / iters
        slowest = F.distributed.all_reduce_max(ty.tensor([dt], dtype="float32"))
        out[nbytes] = float(slowest.numpy()[0])
    return out


PEER = r'''
import json, os, sys, time
import torch, torch.distributed as dist
import torch.multiprocessing as mp

def _iters(nbytes):
    return int(max(3, min(400, (64 << 20) * 6 // nbytes)))

def rank(r, sizes, port, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=r, world_size=2)
    out = {}
    for nbytes in sizes:
        x = torch.ones(nbytes // 4)
        dist.all_reduce(x)
        iters = _iters(nbytes)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            y = x.clone()
            dist.all_reduce(y)
        dt = torch.tensor([(time.perf_counter() - t0) / iters])
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)
        out[nbytes] = float(dt[0])
    if r == 0:
        q.put(out)
    dist.destroy_process_group()

if __name__ == "__main__":
    sizes = json.loads(sys.argv[1])
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=rank, args=(r, sizes, port, q)) for r in range(2)]
    for p in ps: p.start()
    res = q.get(timeout=600)
    for p in ps: p.join()
    print(json.dumps({str(k): v for k, v in res.items()}))
'''


PEER_CNN = r'''
import json, sys, time
import torch, torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

def rank(r, world, steps, batch, port, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=r,
                            world_size=world)
    torch.manual_seed(0)
    net = DDP(torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Flatten(), torch.nn.Linear(3136, 128), torch.nn.ReLU(),
        torch.nn.Linear(128, 10)))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    best = 0.0
    for _ in range(3):
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        dt = torch.tensor([time.perf_counter() - t0])
        dist.all_reduce(dt, op=dist.ReduceOp.MAX)
        best = max(best, steps * batch * world / float(dt[0]))
    if r == 0:
        q.put(best)
    dist.destroy_process_group()

if __name__ == "__main__":
    world, steps, batch = map(int, sys.argv[1:4])
    import socket
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=rank, args=(r, world, steps, batch, port, q))
          for r in range(world)]
    for p in ps: p.start()
    res = q.get(timeout=600)
    for p in ps: p.join()
    print(json.dumps({"img_s": res}))
'''


def ty_cnn_rank(steps, batch):
    """Images per second of one rank's data-parallel training steps (make_allreduce_cb)."""
    import tianyuan as ty
    import tianyuan.distributed as dist
    import tianyuan.functional as F
    import tianyuan.optimizer as optim
    from tianyuan.autodiff import GradManager
    from _models import reference_cnn
    net = reference_cnn()
    dist.bcast_list_(list(net.parameters()))
    gm = GradManager().attach(net.parameters(), callbacks=dist.make_allreduce_cb("mean"))
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(dist.get_rank())
    x = ty.tensor(rng.standard_normal((batch, 1, 28, 28)).astype("float32"))
    y = ty.tensor(rng.integers(0, 10, batch).astype("int32"))

    def step():
        with gm:
            gm.backward(F.nn.cross_entropy(net(x), y))
        opt.step().clear_grad()

    for _ in range(3):
        step()
    best = 0.0
    for _ in range(3):
        dist.group_barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        net.fc2.weight.numpy()
        dt = F.distributed.all_reduce_max(ty.tensor([time.perf_counter() - t0],
                                                    dtype="float32"))
        best = max(best, steps * batch * dist.get_world_size() / float(dt.numpy()[0]))
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-mb", type=int, default=64)
    ap.add_argument("--cnn-steps", type=int, default=10)
    ap.add_argument("--cnn-batch", type=int, default=64, help="per rank")
    ap.add_argument("--no-cnn", action="store_true")
    ap.add_argument("--only-cnn", action="store_true")
    a = ap.parse_args()
    import tianyuan.distributed as dist
    os.environ["TY_NUM_THREADS"] = "1"  # one thread per rank on both sides
    todo = sizes(a.max_mb)
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_allreduce.py")
    with open(path, "w") as f:
        f.write(PEER)
    ours, peer = {}, None
    for _ in range(0 if a.only_cnn else a.rounds):
        got = dist.launcher(ty_allreduce_rank, n_gpus=2)(todo)[0]
        for k, v in got.items():
            ours[k] = min(v, ours.get(k, math.inf))
        p = run_peer(path, json.dumps(todo))
        if p is not None:
            peer = {int(k): min(v, (peer or {}).get(int(k), math.inf)) for k, v in p.items()}
    print(machine_line())
    if a.only_cnn:
        todo = []
    print(f"all-reduce sum, float32, 2 ranks x 1 thread, one machine (best of {a.rounds} "
          f"alternating rounds); ratio = torch time / Tianyuan time (> 1: Tianyuan faster)")
    print(f"{'size':>8}{'ty us':>10}{'ty MB/s':>10}{'gloo us':>10}{'gloo MB/s':>11}{'ratio':>8}")
    ratios = []
    for n in todo:
        t = ours[n]
        p = (peer or {}).get(n)
        r = p / t if p else None
        if r:
            ratios.append(r)
        label = f"{n >> 20} MB" if n >= 1 << 20 else f"{n >> 10} KB"
        print(f"{label:>8}{t * 1e6:>10.1f}{n / t / 1e6:>10.1f}"
              + (f"{p * 1e6:>10.1f}{n / p / 1e6:>11.1f}{r:>7.2f}x" if p else "   (no peer)"))
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"geometric mean ratio {geo:.2f}x, min {min(ratios):.2f}x")
    if a.no_cnn:
        return
    cnn_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_ddp_cnn.py")
    with open(cnn_path, "w") as f:
        f.write(PEER_CNN)
    one = two = 0.0
    peer = {1: None, 2: None}
    for _ in range(a.rounds):
        one = max(one, dist.launcher(ty_cnn_rank, n_gpus=1)(a.cnn_steps, a.cnn_batch)[0])
        two = max(two, dist.launcher(ty_cnn_rank, n_gpus=2)(a.cnn_steps, a.cnn_batch)[0])
        for w in (1, 2):
            got = run_peer(cnn_path, w, a.cnn_steps, a.cnn_batch)
            if got is not None:
                peer[w] = max(peer[w] or 0.0, got["img_s"])
    print(f"reference CNN data-parallel training, batch {a.cnn_batch} per rank, 1 thread per "
          f"rank, img/s (best of {a.rounds} alternating rounds):")
    print(f"  Tianyuan (make_allreduce_cb): 1 rank {one:.0f}, 2 ranks {two:.0f}, "
          f"scaling {two / one:.2f}x")
    if peer[1] and peer[2]:
        print(f"  PyTorch DDP (gloo):          1 rank {peer[1]:.0f}, 2 ranks {peer[2]:.0f}, "
              f"scaling {peer[2] / peer[1]:.2f}x; 2-rank ratio {two / peer[2]:.2f}x")


if __name__ == "__main__":
    main()
