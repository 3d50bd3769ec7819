"""The thread pool survives fork(): a DataLoader worker (a forked child) can run parallel
kernels after the parent used the pool."""
import os
import signal

import numpy as np

import tianyuan as ty
import tianyuan.functional as F


def test_parallel_kernels_run_in_a_forked_child():
    ty.set_num_threads(2)
    x = ty.tensor(np.ones((512, 512), dtype="float32"))
    assert float(F.sum(x * 2).item()) == 512 * 512 * 2  # the parent's workers are started
    pid = os.fork()
    if pid == 0:  # child: only this thread exists now
        try:
            ok = float(F.sum(F.matmul(x, x)).item()) == 512.0 ** 3
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    signal.signal(signal.SIGALRM, lambda *a: os.kill(pid, signal.SIGKILL))
    signal.alarm(60)  # a deadlocked child would never exit
    try:
        _, status = os.waitpid(pid, 0)
    finally:
        signal.alarm(0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
