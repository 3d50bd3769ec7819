"""Training bigger batches in the same memory (issue 12): a CIFAR-style ResNet (depth 110 by
default) and a transformer encoder (12 layers, sequence 256, width 512), a few SGD steps each:

  (1) plain eager at a batch B whose step fits under ``tianyuan.set_memory_limit(L)``,
  (2) 3x B under the same L with DTR (``tianyuan.dtr``, eviction threshold below L),
  (3) 3x B traced with ``sublinear_memory_config`` under the same L, its ``lb_memory_mb``
      set to what L leaves beside the parameters, optimizer state, data and the kernels'
      scratch (less 5%): the cheapest recompute whose planned arena (activations and
      gradients) fits there. The scratch is measured first: a traced step at 3x B with no
      cap, its peak allocator bytes less the arena it planned and what lived before it.

  (4) 3x B traced with ``dtr_config`` (DTR's threshold applied when the trace is compiled,
      set to the same room: the same rewrite without the genetic search).

For context it also shows 3x B eager with no cap and with the cap, and traced without
sublinear memory under the cap. Eager autodiff keeps only what the gradient rules read and
frees it as backward passes, so plain eager is already lean: 3x B under its L asks each mode
for about a third of the memory per sample.

Per mode: whether it completes, the peak allocator bytes (reserved: live tensors plus the
allocator's cache, which is what the limit caps; "live" is the peak of live tensor bytes), time
per sample relative to (1) (best step after the first; "cpu vs" is the same ratio in process
CPU time, steadier on a loaded machine), and whether the parameters after the steps are
bitwise those of an eager run of the same batch with no memory cap.

Beside them PyTorch at the same batches, plain and with torch.utils.checkpoint applied by hand
per block. PyTorch exposes no allocator peak on CPU, so its "peak" is the growth of the process's
peak resident set (VmHWM in /proc/self/status, restarted through /proc/self/clear_refs) over
the training steps, in a fresh subprocess per run, from after the model and data exist (not
getrusage's ru_maxrss: Linux carries the parent's into the child across fork and exec). It is
an upper bound that includes malloc slack, not comparable byte for byte: Tianyuan's peaks are
absolute (parameters and data included, as the limit counts them), PyTorch's growth leaves the
parameters and data out. Its time is the best step after the first of steps + 1.

L is --limit MiB when given (B is then found by doubling/halving from --batch-start, or is
--batch); otherwise L is the plain step's reserved peak at --batch (or --batch-start) plus 5%,
so B is that batch by construction.

A traced step's first call records the graph by running it eagerly; that call runs with the cap
lifted (and counts as one of the steps), the cap applies from the second call on.

The default run is ResNet-110 at B = 16 and the 12-layer encoder at B = 4 with 3 steps (35-45
minutes on a shared 2-core machine; each time is the better of the two steps after the first:
with 2 steps a single step decided a ratio, and on a loaded machine one round of ResNet-110's
DTR ranged 0.57-1.70x with the same eviction plan); --quick uses small models (a few
minutes); --modes picks the 3B rows (e.g. --modes dtr), --no-peer skips PyTorch; --batch,
--limit (with a batch search), --steps, --depth set longer runs. On a loaded machine the time
drifts between rows minutes apart: --rounds N runs each 3B row N times, each time right after
a plain step at B of its own, and prints the N ratios.

    PYTHONPATH=python .venv/bin/python benchmarks/memory.py --quick
    PYTHONPATH=python .venv/bin/python benchmarks/memory.py [--model resnet|transformer|both]
"""
import argparse
import gc
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

import tianyuan as ty  # noqa: E402
import tianyuan.functional as F  # noqa: E402
import tianyuan.module as M  # noqa: E402
from tianyuan import dtr  # noqa: E402
from tianyuan.jit import DTRConfig, SublinearMemoryConfig, trace  # noqa: E402

from _peer import machine_line, run_peer  # noqa: E402
from dtr import Block  # noqa: E402  (the ResNet-20 block of benchmarks/dtr.py)

MIB = 2 ** 20
TRACED = ("traced", "sublinear", "traced_dtr")
# the sublinear search: Chen's budgets, then the mutation search (compile time: a few seconds)
SUBLINEAR = dict(thresh_nr_try=30, genetic_nr_iter=20, genetic_pool_size=10)
# What the traced rows leave out of the arena's bound beside the kernels' scratch (measured:
# see scratch_bytes): the allocator's rounding and what the passes after the sublinear one add
# to the arena it planned (elementwise fusion: ResNet-110's 143.4 MiB plan came out 147.5).
# A fixed 10% with no scratch measured ran ResNet-20 (--quick) out of memory: there a conv's
# 2.25 MiB scratch is about 10% of L.
ROOM_MARGIN = 0.05


# ---- models ----
class CifarResNet(M.Module):
    """He et al.'s CIFAR ResNet: depth = 6n + 2, three stages of n blocks (16, 32, 64 ch)."""

    def __init__(self, depth):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = M.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn = M.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                blocks.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = M.Sequential(*blocks)
        self.fc = M.Linear(64, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn(self.stem(x))))
        return self.fc(F.mean(x, axis=(2, 3)))


class EncoderLayer(M.Module):
    """Post-norm transformer encoder layer: self-attention and a 4x ReLU feed-forward."""

    def __init__(self, width, heads):
        super().__init__()
        self.attn = M.MultiHeadAttention(width, heads)
        self.n1 = M.LayerNorm(width)
        self.f1 = M.Linear(width, 4 * width)
        self.f2 = M.Linear(4 * width, width)
        self.n2 = M.LayerNorm(width)

    def forward(self, x):
        x = self.n1(x + self.attn(x)[0])
        return self.n2(x + self.f2(F.relu(self.f1(x))))


class Encoder(M.Module):
    def __init__(self, layers, width, heads):
        super().__init__()
        self.layers = M.Sequential(*[EncoderLayer(width, heads) for _ in range(layers)])
        self.fc = M.Linear(width, 10)

    def forward(self, x):
        return self.fc(F.mean(self.layers(x), axis=1))


def model_and_data(cfg, batch):
    ty.random.seed(0)
    rng = np.random.default_rng(0)
    if cfg["kind"] == "resnet":
        net = CifarResNet(cfg["depth"])
        x = rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)
    else:
        net = Encoder(cfg["layers"], cfg["width"], cfg["heads"])
        x = rng.standard_normal((batch, cfg["seq"], cfg["width"])).astype(np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    return net, ty.tensor(x), ty.tensor(y)


# ---- one run of a mode ----
def run(cfg, batch, steps, mode, limit=None, dtr_threshold=None, scratch=0):
    """Trains `steps` SGD steps; returns dict(ok, peak, t (s/step, best step after the first),
    params) -- ok False with the error when the cap is hit."""
    gc.collect()
    ty.set_memory_limit(None)
    ty.empty_cache()
    net, x, y = model_and_data(cfg, batch)
    opt = ty.optimizer.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gm = ty.autodiff.GradManager().attach(net.parameters())

    def step(x, y):
        with gm:
            loss = F.nn.cross_entropy(net(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    fn = step
    if mode in TRACED:
        # the arena (activations and gradients) gets what L leaves beside the parameters,
        # the optimizer state and the data, which exist now, and the kernels' scratch
        room = (max(int((limit - ty.get_allocated_memory() - scratch) * (1 - ROOM_MARGIN)),
                    1 << 20) if limit else 0)
        sub = (SublinearMemoryConfig(**SUBLINEAR, lb_memory_mb=room >> 20)
               if mode == "sublinear" else None)
        dcfg = (DTRConfig(eviction_threshold=room, evictee_minimum_size=64 << 10)
                if mode == "traced_dtr" else None)
        fn = trace(step, sublinear_memory_config=sub, dtr_config=dcfg)
    times, cpu, res = [], [], {"ok": True, "err": "", "base": ty.get_allocated_memory()}
    before = dtr.stats()
    ty.reset_max_memory_stats()
    try:
        for i in range(steps):
            record = mode in TRACED and i == 0
            if limit and not record:
                ty.set_memory_limit(limit)
            if mode == "dtr":
                dtr.evictee_minimum_size = 64 << 10
                dtr.eviction_threshold = dtr_threshold
                dtr.enable()
            t0, c0 = time.perf_counter(), time.process_time()
            fn(x, y).numpy()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            if record:  # the recording ran uncapped: drop its cache, count from here
                ty.empty_cache()
                ty.reset_max_memory_stats()
    except MemoryError as e:
        res = {"ok": False, "err": str(e).splitlines()[0][:120]}
    finally:
        dtr.disable()
        ty.set_memory_limit(None)
    res["peak"] = ty.get_max_reserved_memory()
    res["alloc"] = ty.get_max_allocated_memory()
    if mode == "dtr":
        after = dtr.stats()
        res["dtr"] = (after["evictions"] - before["evictions"],
                      after["recomputes"] - before["recomputes"])
    res["t"] = min(times[1:]) if len(times) > 1 else float("nan")
    res["c"] = min(cpu[1:]) if len(cpu) > 1 else float("nan")
    if mode in ("sublinear", "traced_dtr") and res["ok"]:
        res["recomputed"] = fn.pass_stats()[0].get("recomputed", 0)
    if mode in TRACED and res["ok"]:
        res["arena"] = fn.pass_stats()[0].get("arena_bytes", 0)
    res["params"] = [p.numpy() for p in net.parameters()] if res["ok"] else None
    del net, opt, gm, fn, x, y
    gc.collect()
    ty.empty_cache()
    return res


def scratch_bytes(cfg, batch):
    """Bytes a traced step takes outside its arena and what lived before it (the kernels'
    scratch, such as a conv's im2col buffer): its peak, uncapped, less those two."""
    r = run(cfg, batch, 2, "traced")
    return max(r["alloc"] - r["base"] - r["arena"], 0) if r["ok"] else 0


def fits(cfg, batch, limit, steps):
    return run(cfg, batch, min(steps, 2), "plain", limit)["ok"]


def find_batch(cfg, start, limit, steps):
    """Largest batch (by doubling from `start`, or halving when `start` does not fit) whose
    plain eager step fits under `limit`."""
    b = start
    if fits(cfg, b, limit, steps):
        while b < 4096 and fits(cfg, 2 * b, limit, steps):
            b *= 2
        return b
    while b > 1:
        b //= 2
        if fits(cfg, b, limit, steps):
            return b
    return None


# ---- PyTorch side ----
PEER = r'''
import json, sys, time, torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint
kind, batch, steps, ckpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
a = json.loads(sys.argv[5])
torch.set_num_threads(int(a["threads"])); torch.manual_seed(0)
class Block(nn.Module):
    def __init__(s, cin, cout, stride):
        super().__init__()
        s.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); s.b1 = nn.BatchNorm2d(cout)
        s.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); s.b2 = nn.BatchNorm2d(cout)
        s.short = (None if stride == 1 and cin == cout
                   else nn.Conv2d(cin, cout, 1, stride, bias=False))
    def forward(s, x):
        y = s.b2(s.c2(torch.relu(s.b1(s.c1(x)))))
        return torch.relu(y + (x if s.short is None else s.short(x)))
class Layer(nn.Module):
    def __init__(s, w, h):
        super().__init__()
        s.attn = nn.MultiheadAttention(w, h, batch_first=True); s.n1 = nn.LayerNorm(w)
        s.f1 = nn.Linear(w, 4 * w); s.f2 = nn.Linear(4 * w, w); s.n2 = nn.LayerNorm(w)
    def forward(s, x):
        x = s.n1(x + s.attn(x, x, x, need_weights=False)[0])
        return s.n2(x + s.f2(torch.relu(s.f1(x))))
if kind == "resnet":
    n, blocks, cin = (a["depth"] - 2) // 6, [], 16
    for cout, stride in ((16, 1), (32, 2), (64, 2)):
        for i in range(n):
            blocks.append(Block(cin, cout, stride if i == 0 else 1)); cin = cout
    head = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
    fc, pool = nn.Linear(64, 10), lambda t: t.mean((2, 3))
    x = torch.randn(batch, 3, 32, 32)
else:
    blocks = [Layer(a["width"], a["heads"]) for _ in range(a["layers"])]
    head, fc, pool = nn.Identity(), nn.Linear(a["width"], 10), lambda t: t.mean(1)
    x = torch.randn(batch, a["seq"], a["width"])
blocks = nn.ModuleList(blocks)
y = torch.randint(0, 10, (batch,))
params = list(head.parameters()) + list(blocks.parameters()) + list(fc.parameters())
opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)
def step():
    h = head(x)
    for b in blocks:
        h = checkpoint(b, h, use_reentrant=False) if ckpt else b(h)
    loss = nn.functional.cross_entropy(fc(pool(h)), y)
    opt.zero_grad(); loss.backward(); opt.step()
def status(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":")) * 1024
try:  # restart VmHWM (the peak RSS) from the current RSS
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
base = status("VmRSS")
times, cpu = [], []
for _ in range(steps):
    t0, c0 = time.perf_counter(), time.process_time(); step()
    times.append(time.perf_counter() - t0); cpu.append(time.process_time() - c0)
print(json.dumps({"rss_growth": status("VmHWM") - base, "t": min(times[1:] or times),
                  "c": min(cpu[1:] or cpu)}))
'''


def peer_runs(cfg, batches, steps, threads):
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ty_peer_memory.py")
    with open(path, "w") as f:
        f.write(PEER)
    import json
    arg = json.dumps({**cfg, "threads": threads})
    out = {}
    for b in batches:
        for ck in (0, 1):
            out[(b, ck)] = run_peer(path, cfg["kind"], b, steps, ck, arg)
    return out


# ---- report ----
def ratios(plain, b, r, big):
    """(wall, cpu) time per sample of r at batch big over plain's at batch b (nan: a failed run)"""
    if not (plain["ok"] and r["ok"]):
        return float("nan"), float("nan")
    return r["t"] / big / (plain["t"] / b), r["c"] / big / (plain["c"] / b)


def bench(cfg, a):
    name = cfg["name"]
    steps = a.steps
    if a.limit:
        limit = int(a.limit * MIB)
        b = a.batch_start if a.batch is None else a.batch
        if a.batch is None:
            b = find_batch(cfg, b, limit, steps)
            if b is None:
                print(f"{name}: no batch fits under {a.limit} MiB")
                return
    else:
        b = a.batch or a.batch_start
        probe = run(cfg, b, 1, "plain")
        limit = int(probe["peak"] * 1.05)
    big = 3 * b
    ref_small = run(cfg, b, steps, "plain")
    ref_big = run(cfg, big, steps, "plain")
    plain = run(cfg, b, steps, "plain", limit)
    rows = [("plain eager", b, plain, ref_small), ("eager, no cap", big, ref_big, ref_big)]
    modes = (("capped", "plain eager (capped)", "plain"), ("dtr", "DTR", "dtr"),
             ("traced", "traced, no sublinear", "traced"),
             ("sublinear", "traced sublinear", "sublinear"),
             ("traced_dtr", "traced DTR", "traced_dtr"))
    paired, counts = {}, {}
    scratch = scratch_bytes(cfg, big) if a.modes & {"sublinear", "traced_dtr"} else 0
    for key, label, mode in modes:
        if key in a.modes:
            r = run(cfg, big, steps, mode, limit,
                    int(limit * a.dtr_frac) if mode == "dtr" else None, scratch)
            rows.append((label, big, r, ref_big))
            paired[label] = [ratios(plain, b, r, big)]
            counts[label] = [r.get("dtr")]
    for _ in range(a.rounds - 1):
        for key, label, mode in modes:
            if key in a.modes:
                p = run(cfg, b, steps, "plain", limit)
                r = run(cfg, big, steps, mode, limit,
                        int(limit * a.dtr_frac) if mode == "dtr" else None, scratch)
                paired[label].append(ratios(p, b, r, big))
                counts[label].append(r.get("dtr"))
    peer = peer_runs(cfg, (b, big), steps + 1, a.threads) if a.peer else {}
    print(f"\n{name}: limit L = {limit / MIB:.1f} MiB, B = {b}, 3B = {big}, {steps} SGD steps, "
          f"{a.threads} threads; DTR threshold {a.dtr_frac:.0%} of L"
          + (f"; traced scratch at 3B {scratch / MIB:.1f} MiB" if scratch else ""))
    print(f"{'mode':<22}{'batch':>6}{'done':>6}{'peak MiB':>10}{'live MiB':>10}{'ms/sample':>11}"
          f"{'vs plain':>9}{'cpu vs':>8}  bitwise vs uncapped")
    base_t = plain["t"] / b if plain["ok"] else float("nan")
    base_c = plain["c"] / b if plain["ok"] else float("nan")
    for label, batch, r, ref in rows:
        per = r["t"] / batch * 1e3
        same = (all(np.array_equal(p, q) for p, q in zip(r["params"], ref["params"]))
                if r["ok"] and ref["params"] else None)
        extra = f" ({r['recomputed']} recomputed nodes)" if "recomputed" in r else ""
        if "dtr" in r:
            extra += f" ({r['dtr'][0]} evictions, {r['dtr'][1]} recomputes)"
        extra += "" if r["ok"] else f"  [{r['err']}]"
        rel = (f"{per / 1e3 / base_t:>8.2f}x{r['c'] / batch / base_c:>7.2f}x" if r["ok"]
               else f"{'-':>9}{'-':>8}")
        print(f"{label:<22}{batch:>6}{'yes' if r['ok'] else 'no':>6}{r['peak'] / MIB:>10.1f}"
              f"{r['alloc'] / MIB:>10.1f}{f'{per:.2f}' if r['ok'] else '-':>11}{rel}  "
              f"{'' if same is None else same}{extra}")
    if a.rounds > 1:
        print(f"time per sample vs a plain step at B run just before it, {a.rounds} rounds "
              f"(wall / cpu, sorted):")
        for label, rs in paired.items():
            walls = " ".join(f"{w:.2f}" for w, _ in sorted(rs))
            cpus = " ".join(f"{c:.2f}" for c in sorted(c for _, c in rs))
            evicted = ", ".join(f"{c[0]}/{c[1]}" for c in counts[label] if c)
            print(f"  {label:<20} wall {walls}  cpu {cpus}"
                  + (f"  (evictions/recomputes per round: {evicted})" if evicted else ""))
    for bb in (b, big) if a.peer else ():
        for ck, label in ((0, "PyTorch plain"), (1, "PyTorch checkpoint")):
            p = peer.get((bb, ck))
            if p is None:
                print(f"{label:<22}{bb:>6}  (peer unavailable)")
                continue
            per = p["t"] / bb * 1e3
            print(f"{label:<22}{bb:>6}{'yes':>6}{p['rss_growth'] / MIB:>10.1f}{'-':>10}{per:>11.2f}"
                  f"{per / 1e3 / base_t:>8.2f}x{p['c'] / bb / base_c:>7.2f}x  "
                  f"(peak = RSS high-water growth)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small models, a few minutes")
    ap.add_argument("--model", choices=("resnet", "transformer", "both"), default="both")
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None, help="B itself (no search)")
    ap.add_argument("--batch-start", type=int, default=None)
    ap.add_argument("--limit", type=float, default=None, help="L in MiB")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1,
                    help="run each 3B row this many times, each right after a plain step at B, "
                         "and print the ratios (a loaded machine's time drifts between rows)")
    ap.add_argument("--dtr-frac", type=float, default=0.85)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="capped,dtr,traced,sublinear,traced_dtr",
                    help="the 3B rows to run (comma-separated; plain B and 3B uncapped always)")
    ap.add_argument("--no-peer", dest="peer", action="store_false", help="skip PyTorch")
    a = ap.parse_args()
    a.modes = set(a.modes.split(","))
    ty.set_num_threads(a.threads)
    batch = {"resnet": a.batch_start or (8 if a.quick else 16),
             "transformer": a.batch_start or (8 if a.quick else 4)}
    cfgs = []
    if a.model in ("resnet", "both"):
        d = a.depth or (20 if a.quick else 110)
        cfgs.append({"name": f"CIFAR ResNet-{d}", "kind": "resnet", "depth": d})
    if a.model in ("transformer", "both"):
        t = ({"layers": 2, "seq": 64, "width": 128, "heads": 4} if a.quick
             else {"layers": 12, "seq": 256, "width": 512, "heads": 8})
        cfgs.append({"name": f"transformer encoder {t['layers']}x{t['width']}, seq {t['seq']}",
                     "kind": "transformer", **t})
    print(machine_line())
    for cfg in cfgs:
        a.batch_start = batch[cfg["kind"]]
        bench(cfg, a)


if __name__ == "__main__":
    main()
