"""The examples run end to end on a tiny synthetic IDX data set and their loss falls:
examples/mnist_quickstart/train.py (MegEngine's LeNet-5 quick-start), examples/fashion_mnist/
train.py, and the missing-data message of train.py and examples/demo.py."""
import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QUICKSTART = os.path.join(ROOT, "examples", "mnist_quickstart", "train.py")
TRAIN = os.path.join(ROOT, "examples", "fashion_mnist", "train.py")
DEMO = os.path.join(ROOT, "examples", "demo.py")


def _write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                     for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def write_idx_dataset(root, n_train, n_test, seed=0):
    """Four gzipped IDX files (MNIST names) of a learnable 10-class problem: each class is a
    fixed random 28x28 pattern, each sample that pattern plus noise."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, size=(10, 28, 28))
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        imgs = np.clip(0.8 * protos[labels] + rng.normal(0, 40, (n, 28, 28)) + 20, 0, 255)
        _write_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz"), imgs.astype(np.uint8))
        _write_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"), labels.astype(np.uint8))
    return root


def _env(threads=2):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["TY_NUM_THREADS"] = str(threads)
    return env


def _run(args, timeout=120, cwd=None):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=timeout, env=_env(), cwd=cwd)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return write_idx_dataset(str(tmp_path_factory.mktemp("idx")), 1024, 200)


def test_quickstart_loss_falls(tiny_data):
    r = _run([QUICKSTART, "--data", tiny_data, "--epochs", "4"])
    assert r.returncode == 0, r.stdout + r.stderr
    losses = [float(v) for v in re.findall(r"Epoch: \d+, loss: ([0-9.eE+-]+)", r.stdout)]
    assert len(losses) == 4, r.stdout
    assert losses[-1] < losses[0], r.stdout
    acc = float(re.search(r"accuracy: ([0-9.]+)", r.stdout).group(1))
    assert acc > 0.3, r.stdout     # chance is 0.1


def test_fashion_mnist_train_loss_falls(tiny_data, tmp_path):
    ckpt = str(tmp_path / "ckpt")
    r = _run([TRAIN, "--data", tiny_data, "--epochs", "2", "--workers", "2", "--seed", "3",
              "--ckpt", ckpt, "--log-every", "4"])
    assert r.returncode == 0, r.stdout + r.stderr
    ep = re.findall(r"epoch (\d): train loss ([0-9.]+)\s+train acc ([0-9.]+)\s+test acc "
                    r"([0-9.]+)", r.stdout)
    assert [e[0] for e in ep] == ["1", "2"], r.stdout
    assert float(ep[1][1]) < float(ep[0][1]), r.stdout
    # not a terminal: plain progress lines with loss, running accuracy and images/s
    assert re.search(r"epoch 1/2 step 4/16 +loss [0-9.]+ +acc [0-9.]+ +img/s \d+", r.stdout), \
        r.stdout
    final = float(re.search(r"final test accuracy: ([0-9.]+)", r.stdout).group(1))
    assert final == float(ep[1][3]) and final > 0.5, r.stdout
    assert sorted(os.listdir(ckpt)) == ["epoch-001.tyck", "epoch-002.tyck", "latest.tyck"]

    import tianyuan as ty
    ck = ty.load(os.path.join(ckpt, "latest.tyck"))
    assert ck["epoch"] == 2 and ck["step_in_epoch"] == 0 and ck["global_step"] == 32
    assert set(ck["model"]) == {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias",
                                "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    assert [h["epoch"] for h in ck["history"]] == [1, 2]

    # --resume of a finished run trains nothing and reports the same accuracy
    r2 = _run([TRAIN, "--data", tiny_data, "--epochs", "2", "--workers", "0", "--seed", "3",
               "--ckpt", ckpt, "--resume"])
    assert r2.returncode == 0, r2.stdout + r2.stderr
    assert "resumed from" in r2.stdout and "train loss" not in r2.stdout
    assert f"final test accuracy: {final:.4f}" in r2.stdout

    # resuming with another seed cannot be exact: refused
    r3 = _run([TRAIN, "--data", tiny_data, "--epochs", "3", "--seed", "4", "--ckpt", ckpt,
               "--resume"])
    assert r3.returncode != 0 and "cannot resume exactly" in r3.stderr


@pytest.mark.parametrize("script", [TRAIN, DEMO])
def test_missing_data_message(script, tmp_path):
    r = _run([script, "--data", str(tmp_path / "nowhere"), "--ckpt", str(tmp_path / "c")],
             timeout=60)
    assert r.returncode != 0
    assert "apt-get install dataset-fashion-mnist" in r.stderr
    assert "--data DIR" in r.stderr
