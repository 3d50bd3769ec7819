"""`make demo`: trains the reference CNN on Fashion-MNIST with examples/fashion_mnist/train.py:
3 epochs over the full data set (about 2 minutes on 2 cores; test accuracy about 90.5%), loss,
running accuracy and images/s as it goes, the test accuracy after each epoch.
Extra arguments go to train.py (e.g. `--epochs 1` for a one-minute run, `--data DIR`).
Checkpoints go to a temporary directory that is removed at the end. If the data set is missing
it says how to install it and exits with status 2."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fashion_mnist"))

import train  # noqa: E402  (examples/fashion_mnist/train.py)

if __name__ == "__main__":
    ckpt = tempfile.mkdtemp(prefix="tianyuan-demo-")
    try:
        train.main(["--epochs", "3", "--log-every", "200", "--ckpt", ckpt] + sys.argv[1:])
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
