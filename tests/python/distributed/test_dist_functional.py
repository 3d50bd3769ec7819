"""The collectives of tianyuan.functional.distributed on 2 ranks (values, gradients, a traced
function), groups, SyncBatchNorm against BatchNorm on the concatenated batch, per-rank seeds
(D4) and samplers splitting the data by rank: all in one job, checked here against NumPy and
single-process runs."""
import numpy as np

import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.autodiff import GradManager
from tianyuan.data.dataset import ArrayDataset
from tianyuan.data.sampler import RandomSampler, SequentialSampler
from tianyuan.jit import trace

from _dp_common import needs_mpirun, skip_asan

pytestmark = [needs_mpirun, skip_asan]
FD = F.distributed
SEED = 7


def _x(rank):
    return np.arange(8, dtype=np.float32).reshape(4, 2) + 10 * rank


def _bn_input():
    return np.random.default_rng(3).standard_normal((6, 3, 4, 4)).astype(np.float32)


def _collectives():
    r, n = dist.get_rank(), dist.get_world_size()
    out = {"seeded_draw": ty.random.uniform(size=(4,)).numpy()}   # launcher(seed=SEED)
    x = ty.tensor(_x(r))
    out["sum"] = FD.all_reduce_sum(x).numpy()
    out["max"] = FD.all_reduce_max(x).numpy()
    out["min"] = FD.all_reduce_min(x).numpy()
    out["bcast"] = FD.broadcast(x).numpy()
    out["gather0"] = FD.all_gather(x).numpy()
    out["gather1"] = FD.all_gather(x, axis=1).numpy()
    out["rs"] = FD.reduce_scatter_sum(x).numpy()
    red = FD.reduce_sum(x)
    out["reduce"] = None if red is None else red.numpy()
    g = FD.gather(x)
    out["gather_root"] = None if g is None else g.numpy()
    out["scatter"] = FD.scatter(x).numpy()
    out["a2a"] = FD.all_to_all(x).numpy()
    out["mode_max"] = FD.collective_comm(x, "ALL_REDUCE_MAX").numpy()
    if r == 0:
        FD.remote_send(x, 1)
    else:
        out["recv"] = FD.remote_recv(0, shape=(4, 2), dtype="float32").numpy()
    # gradient: d/dx sum(all_reduce_sum(x) * c_r) = sum over ranks of c
    xp = ty.Parameter(_x(r))
    gm = GradManager().attach([xp])
    with gm:
        gm.backward((FD.all_reduce_sum(xp) * float(r + 1)).sum())
    out["grad"] = xp.grad.numpy()
    # a traced function with a collective, replayed on new inputs
    f = trace(lambda t: FD.all_gather(t * 2.0).sum(axis=0))
    out["traced"] = [f(ty.tensor(_x(r) + k)).numpy() for k in range(3)]
    # a group of rank 1 only (every rank makes it; only members use it)
    solo = dist.new_group([1])
    out["solo_rank"] = solo.rank
    if r == 1:
        out["solo_sum"] = FD.all_reduce_sum(x, group=solo).numpy()
    dist.group_barrier()
    # SyncBatchNorm over the ranks' halves of one batch
    half = _bn_input()[r * 3:(r + 1) * 3]
    sbn = M.SyncBatchNorm(3)
    xb = ty.tensor(half)
    gm = GradManager().attach(list(sbn.parameters()) + [xb])
    with gm:
        y = sbn(xb)
        gm.backward((y * y * ty.tensor(_bn_input()[r * 3:(r + 1) * 3])).sum())
    out["bn_y"] = y.numpy()
    out["bn_running"] = (sbn.running_mean.numpy(), sbn.running_var.numpy())
    out["bn_wgrad"] = FD.all_reduce_sum(sbn.weight.grad).numpy()
    out["bn_xgrad"] = xb.grad.numpy()
    # a sampler splits the data by rank, with the same shuffle on every rank
    ds = ArrayDataset(np.arange(10, dtype=np.float32))
    out["random_batches"] = list(RandomSampler(ds, batch_size=2))
    out["seq_batches"] = list(SequentialSampler(ds, batch_size=5))
    return out


def test_collectives_groups_sync_bn_seeds_and_samplers():
    res = dist.launcher(_collectives, n_gpus=2, timeout=60, seed=SEED)()
    xs = [_x(0), _x(1)]
    for r, out in enumerate(res):
        np.testing.assert_array_equal(out["sum"], xs[0] + xs[1])
        np.testing.assert_array_equal(out["max"], np.maximum(xs[0], xs[1]))
        np.testing.assert_array_equal(out["min"], np.minimum(xs[0], xs[1]))
        np.testing.assert_array_equal(out["bcast"], xs[0])
        np.testing.assert_array_equal(out["gather0"], np.concatenate(xs, 0))
        np.testing.assert_array_equal(out["gather1"], np.concatenate(xs, 1))
        np.testing.assert_array_equal(out["rs"], (xs[0] + xs[1])[2 * r:2 * r + 2])
        np.testing.assert_array_equal(out["scatter"], xs[0][2 * r:2 * r + 2])
        np.testing.assert_array_equal(out["a2a"], np.concatenate([xs[0][2 * r:2 * r + 2],
                                                                  xs[1][2 * r:2 * r + 2]]))
        np.testing.assert_array_equal(out["mode_max"], np.maximum(xs[0], xs[1]))
        np.testing.assert_array_equal(out["grad"], np.full((4, 2), 1.0 + 2.0, np.float32))
        for k, t in enumerate(out["traced"]):
            np.testing.assert_array_equal(
                t, (np.concatenate([xs[0] + k, xs[1] + k]) * 2.0).sum(axis=0))
        assert out["solo_rank"] == (0 if r == 1 else -1)
    np.testing.assert_array_equal(res[0]["reduce"], xs[0] + xs[1])
    assert res[1]["reduce"] is None and res[1]["gather_root"] is None
    np.testing.assert_array_equal(res[0]["gather_root"], np.concatenate(xs))
    np.testing.assert_array_equal(res[1]["recv"], xs[0])
    np.testing.assert_array_equal(res[1]["solo_sum"], xs[1])
    _check_sync_bn(res)
    _check_seeds(res)
    _check_samplers(res)


def _check_sync_bn(res):
    full = _bn_input()
    bn = M.BatchNorm2d(3)
    xb = ty.tensor(full)
    gm = GradManager().attach(list(bn.parameters()) + [xb])
    with gm:
        y = bn(xb)
        gm.backward((y * y * ty.tensor(full)).sum())
    y_dist = np.concatenate([res[0]["bn_y"], res[1]["bn_y"]])
    np.testing.assert_allclose(y_dist, y.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.concatenate([res[0]["bn_xgrad"], res[1]["bn_xgrad"]]),
                               xb.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res[0]["bn_wgrad"], bn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    for r in range(2):
        np.testing.assert_allclose(res[r]["bn_running"][0], bn.running_mean.numpy(), atol=1e-6)
        np.testing.assert_allclose(res[r]["bn_running"][1], bn.running_var.numpy(), rtol=1e-5)


def _check_seeds(res):
    """Per-rank seeds are a function of (seed, rank): this process redraws them."""
    draws = []
    for r in range(2):
        ty.random.seed(dist.rank_seed(SEED, r))
        draws.append(ty.random.uniform(size=(4,)).numpy())
        np.testing.assert_array_equal(res[r]["seeded_draw"], draws[r])
    assert not np.array_equal(draws[0], draws[1])
    assert dist.rank_seed(SEED, 0) != dist.rank_seed(SEED + 1, 0)


def _check_samplers(res):
    b0, b1 = res[0]["random_batches"], res[1]["random_batches"]
    assert len(b0) == len(b1) == 3               # 10 indices, 5 per rank, batches of 2
    seen = sorted(i for b in b0 + b1 for i in b)
    assert seen == list(range(10))               # disjoint shards of one shared shuffle
    assert res[0]["seq_batches"] == [[0, 2, 4, 6, 8]]
    assert res[1]["seq_batches"] == [[1, 3, 5, 7, 9]]


def test_launcher_decorates_a_script_function_with_its_own_classes(tmp_path):
    """The usual script: @dist.launcher on a function of __main__, arguments and results of
    classes the script defines; the script's main block runs once, in the launcher."""
    import os
    import subprocess
    import sys
    import textwrap
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent("""
        import dataclasses
        import tianyuan.distributed as dist

        @dataclasses.dataclass
        class Box:
            v: int

        @dist.launcher(n_gpus=2)
        def work(box):
            return Box(box.v + 10 * dist.get_rank())

        if __name__ == "__main__":
            print("main block", work(Box(1)))
    """))
    py_dir = os.path.dirname(os.path.dirname(os.path.abspath(ty.__file__)))
    p = subprocess.run([sys.executable, str(script)], env=dict(os.environ, PYTHONPATH=py_dir),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.count("main block") == 1
    assert "main block [Box(v=1), Box(v=11)]" in p.stdout
