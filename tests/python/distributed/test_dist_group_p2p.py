"""group_start / group_end batch remote_send / remote_recv on 2 ranks (NCCL's grouping, as
MegEngine uses it): inside a group the messages are only posted, so both ranks may post their
receive before their send (without the group each would wait in its recv forever), and the
received tensors hold the peer's values after the outermost group_end."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F
from tianyuan.autodiff import GradManager

from _dp_common import needs_mpirun, skip_asan

pytestmark = [needs_mpirun, skip_asan]
FD = F.distributed
N = 1 << 16   # 256 KiB of float32: past MPI's eager limit, so a send completes only when matched


def _values(rank, n=N):
    return (np.arange(n, dtype=np.float32) * 0.5 + 1000 * rank).astype(np.float32)


def _exchange():
    r, peer = dist.get_rank(), 1 - dist.get_rank()
    out = {}
    dist.group_start()
    got = FD.remote_recv(peer, shape=(N,), dtype="float32")   # posted before the send
    small = FD.remote_recv(peer, shape=(2, 3), dtype="int32")
    dist.group_start()                                       # nested: the outer end waits
    FD.remote_send(ty.tensor(_values(r)), peer)
    FD.remote_send(ty.tensor(np.full((2, 3), r + 7, np.int32)), peer)
    dist.group_end()
    dist.group_end()
    out["got"], out["small"] = got.numpy(), small.numpy()
    # a plain exchange after the group still matches (no message left over)
    if r == 0:
        FD.remote_send(ty.tensor(np.float32([3.5])), 1)
    else:
        out["after"] = FD.remote_recv(0, shape=(1,)).numpy()
    # gradients are refused inside a group, before anything is posted
    p = ty.Parameter(np.ones(2, np.float32))
    dist.group_start()
    try:
        with GradManager().attach([p]):
            FD.remote_send(p * 2, peer)
    except ValueError as e:
        out["grad_error"] = str(e)
    finally:
        dist.group_end()
    try:
        dist.group_end()
    except dist.DistError as e:
        out["unmatched_end"] = str(e)
    return out


def test_group_batches_send_and_recv():
    res = dist.launcher(_exchange, n_gpus=2, timeout=60)()
    for r in range(2):
        np.testing.assert_array_equal(res[r]["got"], _values(1 - r))
        np.testing.assert_array_equal(res[r]["small"], np.full((2, 3), 1 - r + 7, np.int32))
        assert "carry no gradient" in res[r]["grad_error"]
        assert "group_end without group_start" in res[r]["unmatched_end"]
    np.testing.assert_array_equal(res[1]["after"], np.float32([3.5]))
