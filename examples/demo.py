"""`make demo`: trains the reference CNN on Fashion-MNIST (examples/fashion_mnist/train.py)
with demo defaults: one epoch over the full training set, then the test accuracy (about 87%;
the full job, `train.py` with its defaults, runs 3 epochs and reaches about 90%).
Extra arguments go to train.py (e.g. `--data DIR`, `--epochs 3`). Checkpoints go to a temporary
directory that is removed at the end. Exits non-zero with a message if the data are missing."""
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "fashion_mnist"))

import train  # noqa: E402  (examples/fashion_mnist/train.py)

if __name__ == "__main__":
    ckpt = tempfile.mkdtemp(prefix="tianyuan-demo-")
    try:
        train.main(["--epochs", "1", "--log-every", "100", "--ckpt", ckpt] + sys.argv[1:])
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
