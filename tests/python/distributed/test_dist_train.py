"""D1: the reference CNN trained data-parallel for 20 steps on 1, 2 and 4 ranks (launched by
dist.launcher, oversubscribed) in MegEngine/Models' pattern (bcast_list_, GradManager with
make_allreduce_cb("mean"), a RandomSampler per rank) ends with the parameters of single-process
training on each step's concatenated batch:

* deterministic mode (dist.set_deterministic on the ranks, config.deterministic_kernel in the
  single process): bitwise equal, eager and traced. Gradients sum over the batch in a pairwise
  tree over the batch index and the all-reduce adds the ranks in the same tree over the rank
  index, so each rank's sum is a subtree of the single process's (src/ops/batch_tree.h);
* the default mode (the engine's reduction order, the kernels' fast paths): within rtol 1e-6
  (relative norm of the difference) of single-process training in the default mode.
Every rank ends with the same bits."""
import numpy as np
import pytest

import tianyuan.distributed as dist

from _dp_common import needs_mpirun, skip_asan, dp_runs, single_process

pytestmark = [needs_mpirun, skip_asan]


def _check_same_bits(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{what}: {k} differs"


@pytest.mark.parametrize("world", [1, 2, 4])
def test_data_parallel_cnn_equals_single_process(world):
    bucket = 64 << 10   # small buckets: several per step (the CNN has 1.6 MB of gradients)
    res = dist.launcher(dp_runs, n_gpus=world, timeout=120)(bucket)
    expect = 0 if world == 1 else 20 * len(_plan(bucket))   # one all-reduce per bucket
    for r in range(world):
        for mode in res[r]:
            assert res[r][mode].pop("_buckets") == expect
            peak = res[r][mode].pop("_peak_in_flight")
            if world > 1 and mode != "traced":   # D2: eager buckets overlap each other
                assert peak >= 2, f"rank {r} ({mode}): at most {peak} bucket in flight"
            _check_same_bits(res[r][mode], res[0][mode], f"rank {r} vs rank 0 ({mode})")
    runs = res[0]
    _check_same_bits(runs["eager"], single_process(False, world), "eager, deterministic")
    _check_same_bits(runs["traced"], single_process(True, world), "traced, deterministic")
    whole = single_process(False, world, deterministic=False)
    for k, ref in whole.items():
        got = runs["engine"][k]
        rel = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-30)
        assert rel <= 1e-6, f"{k}: relative difference {rel:.2e} to the concatenated batch"


def _plan(bucket):
    from tianyuan.distributed._bucket import plan_buckets
    from _dp_common import Net
    params = list(reversed(list(Net().parameters())))
    return plan_buckets([p.size * 4 for p in params], [np.float32] * len(params), bucket)
