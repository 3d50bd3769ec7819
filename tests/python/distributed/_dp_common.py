"""Shared by the multi-rank tests: skip rules, the reference CNN and its data-parallel
training function (module level, so dist.launcher's ranks import it by name)."""
import importlib.util
import os
import shutil

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F
import tianyuan.optimizer as optim
from tianyuan.autodiff import GradManager
from tianyuan.data.dataset import ArrayDataset
from tianyuan.data.sampler import RandomSampler
from tianyuan.jit import trace

needs_mpirun = pytest.mark.skipif(shutil.which("mpirun") is None,
                                  reason="mpirun not found (Open MPI: apt-get install "
                                         "openmpi-bin libopenmpi-dev)")
# the sanitizer build of the suite (TY_PYTHON_DIR) runs the multi-rank tests on the regular one
skip_asan = pytest.mark.skipif(bool(os.environ.get("TY_PYTHON_DIR")),
                               reason="multi-rank tests run on the optimized build only")

STEPS, GLOBAL_BATCH, SEED = 20, 8, 0


def _example_module():
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))), "examples", "fashion_mnist", "train.py")
    spec = importlib.util.spec_from_file_location("fashion_mnist_train_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Net(_example_module().Net):
    """The reference CNN of examples/fashion_mnist/train.py, defined here by name so the
    launcher's ranks can unpickle it."""


def dataset(steps=STEPS, global_batch=GLOBAL_BATCH):
    rng = np.random.default_rng(SEED)
    n = steps * global_batch
    images = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    labels = rng.integers(0, 10, size=n).astype(np.int32)
    return ArrayDataset(images, labels)


def batches(ds, world_size, rank, global_batch=GLOBAL_BATCH):
    """Rank's batches: a RandomSampler shares the same shuffled order among the ranks."""
    sampler = RandomSampler(ds, batch_size=global_batch // world_size, seed=SEED + 1,
                            world_size=world_size, rank=rank)
    for idx in sampler:
        yield ds.arrays[0][idx], ds.arrays[1][idx]


def train(model, gm, opt, data, traced):
    """The training loop every test shares: cross-entropy, backward, SGD step."""
    def step(x, y):
        with gm:
            loss = F.nn.cross_entropy(model(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    if traced:
        step = trace(step)
    for x, y in data:
        step(ty.tensor(x), ty.tensor(y))
    return {k: np.asarray(v) for k, v in model.state_dict().items()}


def dp_worker(traced, deterministic=False, bucket_size=None):
    """One rank of MegEngine/Models' training pattern; returns the final state."""
    from tianyuan.distributed import _comm
    dist.set_deterministic(deterministic)
    _comm.stats(reset_peak=True)
    ty.random.seed(SEED + 100 * dist.get_rank())    # ranks start apart: bcast_list_ fixes it
    model = Net()
    dist.bcast_list_(list(model.parameters()))
    cb = dist.make_allreduce_cb("mean", bucket_size=bucket_size)
    gm = GradManager().attach(model.parameters(), callbacks=cb)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ds = dataset()
    sampler = RandomSampler(ds, batch_size=GLOBAL_BATCH // dist.get_world_size(),
                            seed=SEED + 1)         # world_size/rank from the process group
    data = ((ds.arrays[0][i], ds.arrays[1][i]) for i in sampler)
    state = train(model, gm, opt, data, traced)
    state["_buckets"] = cb.buckets_started
    state["_peak_in_flight"] = _comm.stats()["peak_in_flight"]   # engine's own counter
    return state


def dp_runs(bucket_size):
    """The runs test_dist_train compares, in one job: eager and traced in deterministic
    mode, and eager with the engine's own reduction order."""
    return {"eager": dp_worker(False, True, bucket_size),
            "traced": dp_worker(True, True, bucket_size),
            "engine": dp_worker(False, False, bucket_size)}


def _reference_data(world_size):
    ds = dataset()
    per_rank = [list(batches(ds, world_size, r)) for r in range(world_size)]
    return [[b[i] for b in per_rank] for i in range(len(per_rank[0]))]


def single_process(traced, world_size=1, deterministic=True):
    """One process training on each step's concatenated batch (the ranks' batches in rank
    order), as one batch. deterministic: in deterministic mode (config.deterministic_kernel),
    whose gradients sum over the batch in the pairwise tree the deterministic all-reduce uses
    over the ranks, so data-parallel runs can be compared bit for bit."""
    from tianyuan import config
    was = config.deterministic_kernel
    config.deterministic_kernel = deterministic
    try:
        ty.random.seed(SEED)
        model = Net()
        gm = GradManager().attach(model.parameters())
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        data = [(np.concatenate([x for x, _ in parts]), np.concatenate([y for _, y in parts]))
                for parts in _reference_data(world_size)]
        return train(model, gm, opt, data, traced)
    finally:
        config.deterministic_kernel = was
