"""Gradient all-reduce overlapping backward, on 2 ranks: make_allreduce_cb starts bucket
reductions while the backward pass is still running (seen by a probe inside backward reading
the communicator's started-collectives counter, never by timing), and the final parameters
are bitwise those of test_dist_train's deterministic single-process reference."""
import numpy as np

import tianyuan.distributed as dist

from _dp_common import needs_mpirun, single_process, skip_asan
from _overlap_worker import error_then_step_worker, overlap_worker

pytestmark = [needs_mpirun, skip_asan]


def test_buckets_start_before_backward_ends_and_results_stay_bitwise():
    world, bucket = 2, 64 << 10
    res = dist.launcher(overlap_worker, n_gpus=world, timeout=120)(bucket)
    ref = single_process(False, world)
    for rank, (state, events, buckets) in enumerate(res):
        steps = len(events) // 2
        assert steps == 20 and buckets % steps == 0
        per_step = buckets // steps
        assert per_step >= 3
        for i in range(steps):
            (kind0, at_step), (kind1, at_probe) = events[2 * i], events[2 * i + 1]
            assert (kind0, kind1) == ("step", "probe")
            early = at_probe - at_step
            # some buckets started during backward, before conv1's gradients exist; not
            # conv1's own bucket (the last one)
            assert 0 < early < per_step, f"rank {rank} step {i}: {early} of {per_step} early"
        assert state.keys() == ref.keys()
        for k in ref:
            assert np.array_equal(state[k], ref[k]), f"rank {rank}: {k} differs"


def test_a_backward_failing_after_buckets_started_leaves_the_next_step_working():
    world = 2
    res = dist.launcher(error_then_step_worker, n_gpus=world, timeout=120)(256)
    for err, in_flight, _ in res:
        assert err == "refused on purpose" and in_flight == 0
    g0, g1 = res[0][2], res[1][2]
    assert g0.keys() == g1.keys()
    for k in g0:   # reduced: every rank holds the same sum
        assert np.array_equal(g0[k], g1[k]), k
    # the sum of rank 0's (input 1) and rank 1's (input 2) gradients: the bias of the last
    # layer gets one per output row on each rank
    assert np.array_equal(g0["4.bias"], np.full(4, 4.0, np.float32))
