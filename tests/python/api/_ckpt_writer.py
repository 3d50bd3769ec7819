"""Helper for test_serialization: saves a large checkpoint to argv[1] in a loop-free single
save, printing 'start' just before (the parent SIGKILLs it at a random instant)."""
import sys

import numpy as np

import tianyuan as ty

path, seed = sys.argv[1], int(sys.argv[2])
big = np.full((50 << 20) // 4, seed, dtype=np.float32)   # ~50 MB
obj = {"seed": seed, "w": ty.Tensor(big[:1 << 20]), "big": big}
sys.stdout.write("start\n")
sys.stdout.flush()
ty.save(obj, path)
sys.stdout.write("done\n")
sys.stdout.flush()
