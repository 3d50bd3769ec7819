"""The launcher's verdict on a failed job, from the files the ranks left and mpirun's report:
a rank killed by a signal is named even when a survivor's error (its consequence) was
written first -- the order in which those arrive is a race."""
import os

import pytest

from tianyuan.distributed.launcher import LaunchError, _Job

_KILLED_2 = ("mpirun noticed that process rank 2 with PID 4242 on node ci exited on signal 9 "
             "(Killed).\n")


def _job_with_error_of_rank(r, nproc=4):
    job = _Job(nproc, job=None)
    with open(os.path.join(job.dir, f"error_{r}.txt"), "w") as f:
        f.write("DistError: all_reduce: peer rank 2 closed the connection\n")
    return job


def test_a_rank_killed_by_a_signal_is_named_before_a_survivors_error():
    job = _job_with_error_of_rank(0)
    job.stderr_tail = [_KILLED_2]
    try:
        with pytest.raises(LaunchError) as e:
            job.collect(137)
    finally:
        job.cleanup()
    assert e.value.rank == 2
    assert "rank 2 of 4 was killed by signal 9" in str(e.value)


def test_a_rank_that_raised_is_named_when_no_rank_was_killed():
    job = _job_with_error_of_rank(1)
    job.stderr_tail = ["Primary job terminated normally, but 1 process returned a non-zero exit "
                       "code.\n"]
    try:
        with pytest.raises(LaunchError) as e:
            job.collect(1)
    finally:
        job.cleanup()
    assert e.value.rank == 1
    assert "rank 1 of 4 failed" in str(e.value) and "closed the connection" in str(e.value)
