"""The collective ops across processes: dist_comm_prog.py under mpirun with 2 ranks, through
tianyuan.distributed._comm — eager, gradients, traced, deterministic sums, groups, async
all_reduce, a skipped collective (4 ranks run in the C tests: tests/dist/run.sh). Skipped
where mpirun or Open MPI's libmpi is missing."""
import glob
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
HAVE_MPI = shutil.which("mpirun") is not None and bool(
    os.environ.get("TY_MPI_LIBRARY") or glob.glob("/usr/lib/*/libmpi.so.40"))


def _mpirun(n, *extra, args=()):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    # the sanitizer run preloads ASan: the ranks (our extension) need it, mpirun does not
    preload = env.pop("LD_PRELOAD", None)
    if preload:
        extra = extra + ("-x", f"LD_PRELOAD={preload}")
    cmd = ["mpirun", "-np", str(n), *extra, sys.executable,
           os.path.join(HERE, "dist_comm_prog.py"), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(not HAVE_MPI, reason="needs mpirun and Open MPI (openmpi-bin, libopenmpi-dev)")
def test_collective_ops_under_mpirun():
    n = 2
    p = _mpirun(n, "--oversubscribe")
    oks = set(re.findall(r"rank (\d+): ok", p.stdout))  # lines of ranks may interleave
    assert p.returncode == 0 and oks == {str(r) for r in range(n)}, p.stdout + p.stderr


@pytest.mark.skipif(not HAVE_MPI, reason="needs mpirun and Open MPI (openmpi-bin, libopenmpi-dev)")
def test_a_skipped_collective_raises_timeout_error():
    p = _mpirun(2, args=("skip",))
    assert "rank 0: ok" in p.stdout, p.stdout + p.stderr


def test_world_of_one_before_init():
    from tianyuan.distributed import _comm as comm
    import numpy as np
    import tianyuan as ty
    assert not comm.is_initialized() and comm.backend() == "none"
    assert (comm.rank(), comm.size()) == (0, 1)
    x = ty.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(comm.all_reduce(x, "max").numpy(), x.numpy())
    np.testing.assert_array_equal(comm.all_gather(x).numpy(), x.numpy())
    with pytest.raises(ValueError, match="mode must be one of"):
        comm.all_reduce(x, "mean")
    with pytest.raises(IndexError, match="dist_broadcast: root 1 outside a group of 1 ranks"):
        comm.broadcast(x, root=1)
    w = comm.all_reduce_async(x)
    assert w.test()
    np.testing.assert_array_equal(w.wait().numpy(), x.numpy())
    assert comm.stats()["in_flight"] == 0
    with pytest.raises(NotImplementedError, match="NCCL not available"):
        comm.init("nccl")
    assert not comm.is_initialized()
