"""D3 / RELIABILITY F6-F7: a failing, killed or hanging rank ends the job with a clear error
on the survivors within the timeout, the launcher names the rank, and no process survives.
Also: a wrong world size fails at init, and a script started by plain mpirun joins, exits
cleanly, or ends the job when it raises."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F
from tianyuan.distributed.launcher import mpirun_command

from _dp_common import needs_mpirun, skip_asan

pytestmark = [needs_mpirun, skip_asan]
PY_DIR = os.path.dirname(os.path.dirname(os.path.abspath(ty.__file__)))


def _note_pid(folder):
    with open(os.path.join(folder, f"pid{dist.get_rank()}"), "w") as f:
        f.write(str(os.getpid()))


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _assert_no_rank_left(folder, n):
    pids = []
    for r in range(n):
        p = os.path.join(folder, f"pid{r}")
        if os.path.exists(p):
            with open(p) as f:
                pids.append(int(f.read()))
    assert pids, "no rank ever started"
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _alive(p)], "ranks outlived the job"


# --- rank functions (module level: the ranks import them by name) ---

def _raise_on_rank_1(folder):
    _note_pid(folder)
    if dist.get_rank() == 1:
        raise ValueError("boom from rank 1")
    x = F.distributed.all_reduce_sum(ty.tensor([1.0]))  # rank 0 waits in a collective
    return x.numpy().tolist()


def _sigkill_rank_2_mid_step(folder):
    _note_pid(folder)
    t = ty.tensor(np.ones(256, np.float32))
    for step in range(1000):
        if step == 3 and dist.get_rank() == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        t = F.distributed.all_reduce_sum(t) / dist.get_world_size()
    return float(t.numpy()[0])


def _rank_1_skips_a_collective(folder):
    _note_pid(folder)
    t = ty.tensor(np.ones(8, np.float32))
    t = F.distributed.all_reduce_sum(t)
    if dist.get_rank() != 1:
        t = F.distributed.all_reduce_sum(t)            # rank 1 never joins this one
    return float(t.numpy()[0])


def test_failing_rank_stops_the_job_and_its_traceback_is_shown(tmp_path):
    with pytest.raises(dist.LaunchError) as e:
        dist.launcher(_raise_on_rank_1, n_gpus=2, timeout=60)(str(tmp_path))
    assert e.value.rank == 1
    assert "rank 1 of 2 failed" in str(e.value)
    assert "ValueError: boom from rank 1" in str(e.value)
    assert "_raise_on_rank_1" in str(e.value)           # the traceback, not just the message
    _assert_no_rank_left(str(tmp_path), 2)


def test_sigkill_of_one_rank_mid_step_ends_the_job_naming_it(tmp_path):
    timeout = 10
    t0 = time.monotonic()
    with pytest.raises(dist.LaunchError) as e:
        dist.launcher(_sigkill_rank_2_mid_step, n_gpus=4, timeout=timeout)(str(tmp_path))
    assert time.monotonic() - t0 < timeout + 10 + 15    # + start-up of 4 ranks
    assert e.value.rank == 2
    assert "rank 2 of 4 was killed by signal 9" in str(e.value)
    _assert_no_rank_left(str(tmp_path), 4)


def test_rank_skipping_a_collective_times_out_naming_it(tmp_path):
    timeout = 2
    t0 = time.monotonic()
    with pytest.raises(dist.LaunchError) as e:
        dist.launcher(_rank_1_skips_a_collective, n_gpus=2, timeout=timeout)(str(tmp_path))
    assert time.monotonic() - t0 < timeout + 10 + 10
    msg = str(e.value)
    assert e.value.rank == 0                            # the survivor waiting in all_reduce
    assert "TimeoutError" in msg and "all_reduce" in msg and "timed out after 2 s" in msg
    _assert_no_rank_left(str(tmp_path), 2)


def test_wrong_world_size_fails_at_init_on_every_rank(tmp_path):
    script = tmp_path / "wrong_world.py"
    script.write_text(textwrap.dedent("""
        import tianyuan.distributed as dist
        dist.init_process_group("localhost", 0, world_size=3, rank=None, device=0)
    """))
    env = dict(os.environ, PYTHONPATH=PY_DIR)
    p = subprocess.run(mpirun_command(2) + [sys.executable, str(script)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    assert p.stderr.count("world_size=3 but the MPI launcher started this process as "
                          "world_size=2") >= 1
    assert "DistError" in p.stderr


def test_plain_mpirun_script_joins_shares_values_and_exits_cleanly(tmp_path):
    """init_process_group under mpirun: rank/size from MPI, the store on a free port, and a
    normal exit that MPI accepts (finalize at exit); an uncaught exception ends the job."""
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent("""
        import sys
        import tianyuan as ty
        import tianyuan.distributed as dist
        dist.init_process_group("localhost", 0, 2, None, None, timeout=30)
        r = dist.get_rank()
        dist.get_client().user_set(f"r{r}", r * 10 + 5)
        other = dist.get_client().user_get(f"r{1 - r}")
        s = ty.functional.distributed.all_reduce_sum(ty.tensor([r + 1.0])).item()
        print(f"rank {r} of {dist.get_world_size()}: other {other} sum {s}", flush=True)
        if len(sys.argv) > 1 and r == 1:
            raise RuntimeError("rank 1 gives up")
        ty.functional.distributed.all_reduce_sum(ty.tensor([1.0]))
    """))
    env = dict(os.environ, PYTHONPATH=PY_DIR)
    cmd = mpirun_command(2) + [sys.executable, str(script)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "rank 0 of 2: other 15 sum 3.0" in p.stdout
    assert "rank 1 of 2: other 5 sum 3.0" in p.stdout
    t0 = time.monotonic()
    p = subprocess.run(cmd + ["fail"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "RuntimeError: rank 1 gives up" in p.stderr
    assert time.monotonic() - t0 < 25                   # not rank 0's 30 s timeout


def test_launcher_refuses_a_nested_function():
    def local():
        return 1
    with pytest.raises(ValueError, match="module level"):
        dist.launcher(local, n_gpus=2)()


_SLEEPER = """
import os, sys, time
sys.path.insert(0, {here!r})
import tianyuan.distributed as dist
from test_dist_failures import _sleep_forever
if __name__ == "__main__":
    dist.launcher(_sleep_forever, n_gpus=2)(sys.argv[1])
"""


def _sleep_forever(folder):
    _note_pid(folder)
    time.sleep(600)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_to_the_launcher_ends_every_rank(tmp_path, sig):
    """F7: SIGTERM makes the launcher end mpirun and the ranks; SIGKILL leaves it no chance,
    and the parent-death signals take mpirun and the ranks down with it."""
    script = tmp_path / "sleeper.py"
    script.write_text(_SLEEPER.format(here=os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=PY_DIR)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"pid{r}").exists() for r in range(2)):
            assert time.monotonic() < deadline and proc.poll() is None, "ranks did not start"
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(sig)
        assert proc.wait(timeout=10) != 0
        _assert_no_rank_left(str(tmp_path), 2)
        assert time.monotonic() - t0 < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
