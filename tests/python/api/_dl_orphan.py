"""Helper for test_data: starts a 2-worker DataLoader, prints the worker pids, then blocks
(the test SIGKILLs this process and checks that the workers exit by themselves)."""
import sys
import time

import numpy as np

import tianyuan.data as D


class Slow(D.Dataset):
    def __getitem__(self, i):
        time.sleep(0.05)
        return np.zeros(3, np.float32), i

    def __len__(self):
        return 10 ** 6


dl = D.DataLoader(Slow(), D.SequentialSampler(Slow(), batch_size=2), num_workers=2)
it = iter(dl)
next(it)
print(" ".join(str(p.pid) for p in it.pool.procs), flush=True)
time.sleep(600)
sys.exit(0)
