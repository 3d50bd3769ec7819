"""Exact resume of examples/fashion_mnist/train.py: a run SIGKILLed at a random instant of its
second epoch and restarted with --resume ends with parameters (and optimizer state) bitwise
equal to those of an uninterrupted run with the same seed (CPU, 2 threads, 2 workers).

Uses the installed Fashion-MNIST (first 2048 train / 512 test images) when present, else small
generated IDX files. The kill delay is random; it is printed in failure messages
(TY_RESUME_KILL_DELAY=seconds replays one)."""
import gzip
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN = os.path.join(ROOT, "examples", "fashion_mnist", "train.py")
FASHION = "/usr/share/datasets/fashion-mnist"
NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


def _write_idx(path, arr):
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                     for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(head + arr.tobytes())


def _synthetic(root, n_train=2048, n_test=512):
    rng = np.random.default_rng(1)
    protos = rng.uniform(0, 255, size=(10, 28, 28))
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        imgs = np.clip(0.6 * protos[labels] + rng.normal(0, 60, (n, 28, 28)) + 40, 0, 255)
        _write_idx(os.path.join(root, f"{split}-images-idx3-ubyte.gz"), imgs)
        _write_idx(os.path.join(root, f"{split}-labels-idx1-ubyte.gz"), labels)
    return root


def _have_fashion():
    return all(os.path.exists(os.path.join(FASHION, n)) or
               os.path.exists(os.path.join(FASHION, n + ".gz")) for n in NAMES)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return FASHION if _have_fashion() else _synthetic(str(tmp_path_factory.mktemp("idx")))


def _cmd(data, ckpt, resume=False):
    cmd = [sys.executable, TRAIN, "--data", data, "--ckpt", ckpt, "--epochs", "2",
           "--limit-train", "2048", "--limit-test", "512", "--ckpt-every-steps", "8",
           "--workers", "2", "--threads", "2", "--seed", "1234", "--log-every", "8"]
    return cmd + (["--resume"] if resume else [])


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(ROOT, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env["TY_NUM_THREADS"] = "2"
    return env


def _load(ckpt):
    import tianyuan as ty
    return ty.load(os.path.join(ckpt, "latest.tyck"))


def _assert_bitwise(a, b, what):
    assert type(a) is type(b) or (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)), what
    if isinstance(a, dict):
        assert sorted(a, key=str) == sorted(b, key=str), what
        for k in a:
            _assert_bitwise(a[k], b[k], f"{what}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), what
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_bitwise(x, y, f"{what}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, what
        assert a.tobytes() == b.tobytes(), f"{what}: not bitwise equal " \
            f"(max abs diff {np.abs(a.astype(np.float64) - b).max()})"
    else:
        assert a == b, f"{what}: {a!r} != {b!r}"


def _kill_in_epoch2(data_dir, run, env, ref_s, frac, fixed):
    """Starts the run, waits for its end-of-epoch-1 checkpoint, sleeps a random delay and
    SIGKILLs it; returns (delay, its output)."""
    p = subprocess.Popen(_cmd(data_dir, run), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env, start_new_session=True)
    try:
        t0 = time.monotonic()
        epoch1 = os.path.join(run, "epoch-001.tyck")
        while not os.path.exists(epoch1):
            assert p.poll() is None, "the run ended before its first epoch:\n" + p.stdout.read()
            assert time.monotonic() - t0 < 120, "no end-of-epoch-1 checkpoint after 120 s"
            time.sleep(0.01)
        t1 = time.monotonic() - t0
        # epoch 2 (+ a small evaluation) takes about ref_s - t1, and less than t1
        delay = float(fixed) if fixed is not None else \
            random.uniform(0.0, max(0.05, frac * min(t1, ref_s - t1)))
        time.sleep(delay)
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            rc = p.wait(timeout=30)
            # 0: it ended between the poll and the kill (the caller then retries sooner)
            assert rc in (-signal.SIGKILL, 0), f"the run exited with {rc}"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        try:  # DataLoader workers die with their parent (PR_SET_PDEATHSIG); make sure
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    out = p.stdout.read()
    p.stdout.close()
    return delay, out


def test_sigkill_then_resume_is_bitwise_exact(data_dir, tmp_path):
    env = _env()
    # 1. uninterrupted reference run
    ref = str(tmp_path / "ref")
    t0 = time.monotonic()
    r = subprocess.run(_cmd(data_dir, ref), capture_output=True, text=True, env=env,
                       timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    ref_s = time.monotonic() - t0

    # 2. the same run, SIGKILLed at a random instant of epoch 2 (a fresh directory and a
    # shorter delay if the run was too quick and finished epoch 2 first: load varies)
    fixed = os.environ.get("TY_RESUME_KILL_DELAY")
    frac = 0.6
    for attempt in range(4):
        run = str(tmp_path / f"run{attempt}")
        delay, killed_log = _kill_in_epoch2(data_dir, run, env, ref_s, frac, fixed)
        ck = _load(run)
        where = f"killed {delay:.3f} s into epoch 2 (TY_RESUME_KILL_DELAY={delay:.3f}); " \
            f"latest checkpoint: epoch {ck['epoch']}, step {ck['step_in_epoch']}"
        assert ck["epoch"] >= 1, where
        if (ck["epoch"], ck["step_in_epoch"]) < (2, 0):
            break
        assert fixed is None, where + "\n" + killed_log
        frac /= 2
    else:
        pytest.fail("could not kill the run inside epoch 2: " + where)

    # 3. resume and compare with the reference
    r2 = subprocess.run(_cmd(data_dir, run, resume=True), capture_output=True, text=True,
                        env=env, timeout=180)
    assert r2.returncode == 0, where + "\n" + r2.stdout + r2.stderr
    assert "resumed from" in r2.stdout, r2.stdout
    a, b = _load(ref), _load(run)
    assert (a["epoch"], a["step_in_epoch"], a["global_step"]) == (2, 0, 64)
    _assert_bitwise(a["model"], b["model"], f"model ({where})")
    _assert_bitwise(a["optimizer"], b["optimizer"], f"optimizer ({where})")
    assert a["global_step"] == b["global_step"], where
    for ha, hb in zip(a["history"], b["history"]):   # same losses and accuracies too
        for k in ("epoch", "train_loss", "train_acc", "test_acc"):
            assert ha[k] == hb[k], f"history {k} ({where}): {ha[k]} != {hb[k]}"
    assert r.stdout.splitlines()[-1].split("(wall")[0] == \
        r2.stdout.splitlines()[-1].split("(wall")[0]
