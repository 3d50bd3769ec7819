"""tianyuan.distributed in one process, no MPI needed: the world of one before
init_process_group, the checks that refuse a job that cannot work, per-rank seeds and the
launcher's argument checks."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F


def test_a_process_is_a_world_of_one_before_init():
    assert (dist.get_rank(), dist.get_world_size(), dist.is_distributed()) == (0, 1, False)
    assert dist.WORLD.size == 1 and dist.WORLD.rank == 0
    x = ty.tensor(np.arange(6, dtype=np.float32).reshape(3, 2))
    np.testing.assert_array_equal(F.distributed.all_reduce_sum(x).numpy(), x.numpy())
    np.testing.assert_array_equal(F.distributed.all_gather(x, axis=1).numpy(), x.numpy())
    np.testing.assert_array_equal(F.distributed.collective_comm(x, "BROADCAST").numpy(),
                                  x.numpy())
    with pytest.raises(ValueError, match="unknown mode"):
        F.distributed.collective_comm(x, "all_reduce_mean")
    with pytest.raises(dist.DistError, match="call dist.init_process_group first"):
        dist.get_client()


def test_init_refuses_a_job_it_cannot_form():
    with pytest.raises(dist.DistError, match="world_size=2 needs the ranks started by mpirun"):
        dist.init_process_group("localhost", 0, 2, 0, 0)
    with pytest.raises(dist.DistError, match="rank=1 in a world of 1"):
        dist.init_process_group("localhost", 0, 1, 1, 0)
    with pytest.raises(ValueError, match="backend must be"):
        dist.init_process_group("localhost", 0, 1, 0, 0, backend="gloo")
    with pytest.raises(ValueError, match="timeout must be > 0"):
        dist.init_process_group("localhost", 0, 1, 0, 0, timeout=0)
    assert not dist.is_distributed()


def test_rank_seeds_are_a_pure_function_of_seed_and_rank():
    seeds = {(s, r): dist.rank_seed(s, r) for s in (0, 1, 2**40) for r in range(4)}
    assert len(set(seeds.values())) == len(seeds)            # all distinct
    assert all(0 <= v < 2**63 for v in seeds.values())
    assert dist.rank_seed(1, 3) == seeds[(1, 3)]             # same inputs, same seed


def test_new_group_checks_its_ranks():
    with pytest.raises(ValueError, match="not in the world of 1"):
        dist.new_group([0, 1])
    with pytest.raises(ValueError, match="distinct"):
        dist.new_group([0, 0])


def test_launcher_checks_its_arguments():
    def f():
        return 0
    with pytest.raises(ValueError, match="n_gpus must be >= 1"):
        dist.launcher(f, n_gpus=0)
    with pytest.raises(NotImplementedError, match="mpirun and a host list"):
        dist.launcher(f, n_gpus=2, world_size=4)


def test_allreduce_callback_is_identity_in_a_world_of_one():
    w = ty.Parameter(np.array([1.0, 2.0], np.float32))
    gm = ty.autodiff.GradManager().attach([w], callbacks=dist.make_allreduce_cb("mean"))
    with gm:
        gm.backward((w * w).sum())
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 4.0])
    with pytest.raises(ValueError, match="'sum' or 'mean'"):
        dist.make_allreduce_cb("max")
