"""examples/c/classify.c (built as build/classify): a random-weight CNN of the demo's architecture,
dumped as examples/fashion_mnist/train.py dumps the trained one, classifies a tiny IDX test set
(gzipped or not) with the same predictions and accuracy as Python eager; malformed IDX files are
refused; examples/demo.py (no training: --epochs 0) compares the two accuracies and fails on a
mismatch."""
import gzip
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.data.transform as T
import tianyuan.functional as F
from tianyuan.data import DataLoader
from tianyuan.data.dataset import FashionMNIST
from tianyuan.data.sampler import SequentialSampler

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "classify")
DEMO = os.path.join(ROOT, "examples", "demo.py")
_spec = importlib.util.spec_from_file_location(     # the demo's model and its dump
    "fashion_mnist_train_example", os.path.join(ROOT, "examples", "fashion_mnist", "train.py"))
train = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(train)

pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason="classify is built by CMake "
                                "(make build); this run uses another build")
_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not under ASan's preload
N = 37


def _idx(arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    return bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                    for d in arr.shape) + arr.tobytes()


def _write(path, data, gz):
    with (gzip.open(path + ".gz", "wb") if gz else open(path, "wb")) as f:
        f.write(data)


def _images(n, seed):
    """Each image a random class pattern plus noise, so a random network's classes vary."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 255, size=(10, 28, 28))
    return np.clip(protos[rng.integers(0, 10, n)] + rng.normal(0, 30, (n, 28, 28)), 0,
                   255).astype(np.uint8)


def _python_predictions(net, root, batch):
    """Eager (class, its logit) pairs, the data prepared as train.py's evaluate() does."""
    ds = FashionMNIST(root, train=False)
    loader = DataLoader(ds, SequentialSampler(ds, batch),
                        transform=T.Compose([T.Normalize(train.MEAN, train.STD),
                                             T.ToMode("CHW")]))
    net.eval()
    out = []
    for data, _ in loader:
        logits = net(ty.tensor(data))
        classes = F.argmax(logits, axis=1).numpy()
        out += [(int(c), float(row[c])) for c, row in zip(classes, logits.numpy())]
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A random-weight Net dumped at batch 5, a test set of N images (gzipped) whose labels are
    Python's predictions except every third one, and Python's predictions."""
    root = str(tmp_path_factory.mktemp("fmnist"))
    ty.random.seed(7)
    net = train.Net()
    model = os.path.join(root, "net.tym")
    train.dump_model(net, model, batch_size=5)
    _write(os.path.join(root, "t10k-images-idx3-ubyte"), _idx(_images(N, 1)), gz=True)
    _write(os.path.join(root, "t10k-labels-idx1-ubyte"), _idx(np.zeros(N)), gz=False)
    preds = _python_predictions(net, root, 256)
    labels = [(p + 1) % 10 if i % 3 == 0 else p for i, (p, _) in enumerate(preds)]
    _write(os.path.join(root, "t10k-labels-idx1-ubyte"), _idx(labels), gz=False)
    return root, model, preds


def _classify(*args):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=_ENV,
                          timeout=60)


@pytest.mark.parametrize("batch, limit", [(256, 0), (8, 0), (1, 0), (8, 20)])
def test_predictions_and_accuracy_equal_python_eager(setup, batch, limit):
    root, model, preds = setup
    assert len({p for p, _ in preds}) >= 3, preds        # a test that can tell classes apart
    r = _classify(model, "--data", root, "--batch", batch, "--limit", limit, "--predictions")
    assert r.returncode == 0, r.stderr
    n = limit or N
    *lines, summary = r.stdout.splitlines()
    got = [(int(c), float.fromhex(logit)) for c, logit in map(str.split, lines)]
    assert got == preds[:n]                              # the logits bit for bit
    correct = sum(1 for i in range(n) if i % 3)
    assert summary == f"classify: {n} images, {correct} correct, accuracy {correct / n:.4f}"


def test_malformed_idx_files_are_refused(setup, tmp_path):
    _, model, _ = setup
    imgs = _idx(_images(4, 2))
    labels = _idx(np.arange(4))
    for name, data in [("too short", imgs[:-1]), ("trailing byte", imgs + b"\0"),
                       ("bad magic", b"\0\0\x0d" + imgs[3:]), ("4 labels", imgs)]:
        d = tmp_path / name.replace(" ", "_")
        d.mkdir()
        _write(str(d / "t10k-images-idx3-ubyte"), data, gz=False)
        _write(str(d / "t10k-labels-idx1-ubyte"), labels if name != "4 labels" else
               _idx(np.arange(5)), gz=True)
        r = _classify(model, "--data", d)
        assert r.returncode == 1 and "cannot read 28x28 images" in r.stderr, (name, r)
    r = _classify(tmp_path / "absent.tym", "--data", setup[0])
    assert r.returncode == 1 and "absent.tym" in r.stderr, r
    r = _classify(model, "--batch", "0")
    assert r.returncode == 1 and "usage: classify" in r.stderr, r


def _demo(root, classify, tmp_path):
    env = dict(os.environ, TY_NUM_THREADS="2",   # the package under test (make test-py-asan's)
               PYTHONPATH=os.environ.get("TY_PYTHON_DIR") or os.path.join(ROOT, "python"))
    return subprocess.run([sys.executable, DEMO, "--classify", classify, "--model",
                           str(tmp_path / "m.tym"), "--data", root, "--epochs", "0",
                           "--workers", "0", "--ckpt", str(tmp_path / "c")],
                          capture_output=True, text=True, env=env, timeout=120)


def test_demo_compares_the_c_accuracy_with_python(setup, tmp_path):
    root, _, _ = setup
    for split in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # train.py loads it
        os.symlink(os.path.join(root, split.replace("train", "t10k") + (".gz" if "images" in
                                                                         split else "")),
                   os.path.join(root, split + (".gz" if "images" in split else "")))
    r = _demo(root, BIN, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    acc = float(re.search(r"final test accuracy: ([0-9.]+)", r.stdout).group(1))
    assert f"classify: {N} images" in r.stdout
    assert f"deployed: the C runtime's test accuracy {acc:.4f}" in r.stdout, r.stdout
    fake = tmp_path / "fake_classify"                    # a C side that counts one image more
    c = int(re.search(r"\((\d+)/\d+\) is the same", r.stdout).group(1))
    fake.write_text(f"#!/bin/sh\necho 'classify: {N} images, {c + 1} correct, accuracy x'\n")
    fake.chmod(0o755)
    r = _demo(root, str(fake), tmp_path)
    assert r.returncode == 1 and "MISMATCH" in r.stdout, r.stdout + r.stderr
