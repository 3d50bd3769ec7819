"""tianyuan.data: datasets, samplers, transforms, DataLoader (incl. worker failures)."""
import gc
import gzip
import os
import pickle
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import tianyuan.data as D
import tianyuan.data.transform as T
from tianyuan.data.dataset import MNIST, FashionMNIST, CIFAR10, CIFAR100, ImageFolder

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------------------ helpers
def _children():
    """(pid, state) of every process whose parent is this process (zombies included)."""
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == me:
            out.append((int(name), rest[0]))
    return out


def _shm_leftovers():
    d = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    return [n for n in os.listdir(d) if n.startswith(f"tianyuan-dl-{os.getpid()}-")]


@pytest.fixture
def no_leaks():
    before = {p for p, _ in _children()}
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [c for c in _children() if c[0] not in before]
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"child processes left behind: {left}"
    assert not _shm_leftovers()


def _ds(n=40, shape=(6, 5, 1)):
    rng = np.random.default_rng(0)
    return D.ArrayDataset(rng.integers(0, 256, (n,) + shape).astype(np.uint8), np.arange(n))


# ------------------------------------------------------------------------------ datasets
def test_array_and_concat_dataset():
    a = D.ArrayDataset(np.arange(3), np.arange(3) * 10)
    assert len(a) == 3 and a[2] == (2, 20)
    with pytest.raises(ValueError, match="length"):
        D.ArrayDataset(np.arange(3), np.arange(4))
    c = D.ConcatDataset([a, D.ArrayDataset(np.arange(5, 7), np.arange(2))])
    assert len(c) == 5 and c[3] == (5, 0) and c[-1] == (6, 1) and c[0] == (0, 0)
    with pytest.raises(IndexError):
        c[5]


# ------------------------------------------------------------------------------ samplers
def test_sequential_sampler_batches_and_len():
    ds = _ds(10)
    s = D.SequentialSampler(ds, batch_size=4)
    assert list(s) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]] and len(s) == 3
    s = D.SequentialSampler(ds, batch_size=4, drop_last=True)
    assert list(s) == [[0, 1, 2, 3], [4, 5, 6, 7]] and len(s) == 2
    assert list(D.SequentialSampler(ds, 2, indices=[9, 1, 3])) == [[9, 1], [3]]
    with pytest.raises(ValueError):
        D.SequentialSampler(ds, batch_size=0)


def test_random_sampler_seeded_reproducible_and_sharded():
    ds = _ds(10)
    a = D.RandomSampler(ds, batch_size=3, seed=5)
    b = D.RandomSampler(ds, batch_size=3, seed=5)
    ea1, ea2 = list(a), list(a)
    assert ea1 == list(b) and ea2 == list(b)
    assert ea1 != ea2  # a new order every epoch
    assert sorted(sum(ea1, [])) == list(range(10))
    assert list(D.RandomSampler(ds, 3, seed=6)) != ea1
    shards = [sum(list(D.RandomSampler(ds, 2, world_size=3, rank=r, seed=1)), [])
              for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # ceil(10 / 3), padded
    assert set(sum(shards, [])) == set(range(10))
    shards = [sum(list(D.SequentialSampler(_ds(12), 2, world_size=4, rank=r)), [])
              for r in range(4)]
    assert sorted(sum(shards, [])) == list(range(12)) and shards[1] == [1, 5, 9]
    with pytest.raises(ValueError, match="rank"):
        D.RandomSampler(ds, world_size=2, rank=2)


def test_replacement_and_infinite_samplers():
    ds = _ds(5)
    s = D.ReplacementSampler(ds, batch_size=4, num_samples=12, weights=[0, 0, 1, 0, 0], seed=0)
    assert list(s) == [[2] * 4] * 3 and len(s) == 3
    inf = D.Infinite(D.SequentialSampler(ds, batch_size=2))
    it = iter(inf)
    got = [next(it) for _ in range(5)]
    assert got == [[0, 1], [2, 3], [4], [0, 1], [2, 3]]
    assert len(inf) >= 2 ** 31


# ------------------------------------------------------------------------------ transforms
def test_mnist_tutorial_transform():
    t = T.Compose([T.Normalize(mean=0.1307 * 255, std=0.3081 * 255), T.Pad(2), T.ToMode("CHW")])
    img = np.full((28, 28, 1), 255, np.uint8)
    out, label = t.apply((img, 7))
    assert out.shape == (1, 32, 32) and out.dtype == np.float32 and label == 7
    np.testing.assert_allclose(out[0, 5, 5], (255 - 0.1307 * 255) / (0.3081 * 255), rtol=1e-6)
    assert out[0, 0, 0] == 0.0  # padding with value 0 after normalisation
    plain = t.apply(img)  # a plain image gives a plain image back
    assert isinstance(plain, np.ndarray) and plain.shape == (1, 32, 32)


def test_geometric_transforms():
    img = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    assert T.Resize((8, 12)).apply(img).shape == (8, 12, 3)
    assert T.Resize(2).apply(img).shape == (2, 3, 3)  # shorter edge
    up = T.Resize((8, 12), interpolation=0).apply(img)
    np.testing.assert_array_equal(up[::2, ::2], img)
    const = np.full((5, 7, 1), 9, np.uint8)
    np.testing.assert_array_equal(T.Resize((3, 3)).apply(const), np.full((3, 3, 1), 9))
    np.testing.assert_array_equal(T.CenterCrop(2).apply(img), img[1:3, 2:4])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(1.0).apply(img), img[:, ::-1])
    np.testing.assert_array_equal(T.RandomVerticalFlip(1.0).apply(img), img[::-1])
    np.testing.assert_array_equal(T.RandomHorizontalFlip(0.0).apply(img), img)
    rc = T.RandomCrop(4, padding_size=2).apply(img)
    assert rc.shape == (4, 4, 3)
    rrc = T.RandomResizedCrop((5, 5)).apply(img)
    assert rrc.shape == (5, 5, 3) and rrc.dtype == np.uint8
    p = T.Pad((1, 2, 3, 4), value=(1, 2, 3)).apply(img)
    assert p.shape == (7, 13, 3) and p[0, 0].tolist() == [1, 2, 3]
    np.testing.assert_array_equal(p[1:5, 3:9], img)
    # image and mask share the random parameters; the label passes through
    mask = img[:, :, :1].copy()
    t = T.RandomCrop(3, order=("image", "mask", "image_category"))
    for _ in range(5):
        oi, om, lab = t.apply((img, mask, 4))
        np.testing.assert_array_equal(oi[:, :, :1], om)
        assert lab == 4
    with pytest.raises(NotImplementedError):
        T.Pad(1, order=("image", "depth"))  # polygons are supported now


def test_color_transforms_keep_dtype_and_range():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    for t in (T.Brightness(0.5), T.Contrast(0.5), T.Saturation(0.5), T.Hue(0.2),
              T.ColorJitter(0.4, 0.4, 0.4, 0.1), T.GaussianNoise(0, 5), T.Lighting(0.1)):
        out = t.apply(img)
        assert out.shape == img.shape and out.dtype == np.uint8, type(t)
    gray = np.full((4, 4, 3), 100, np.uint8)
    # MegEngine blends in float32 and truncates: 100 * a + 100 * (1 - a) may land just below 100
    for _ in range(50):
        sat = T.Saturation(0.9).apply(gray).astype(int)
        assert sat.min() >= 99 and sat.max() <= 100 and (sat == sat.flat[0]).all()
    np.testing.assert_array_equal(T.Hue(0.5).apply(gray), gray)
    np.testing.assert_array_equal(T.Brightness(0).apply(img), img)
    hue0 = T.Hue(0.0001).apply(img)
    # a zero shift still goes through OpenCV's 8-bit HSV (as MegEngine's does), whose
    # inverse takes a turn as 255 steps and the forward as 256: a few levels of drift
    assert np.abs(hue0.astype(int) - img).max() <= 8


# ------------------------------------------------------------------------------ DataLoader
def test_dataloader_serial_batches(no_leaks):
    ds = _ds(10)
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=4))
    batches = list(dl)
    assert len(dl) == 3 and len(batches) == 3
    x, y = batches[0]
    assert x.shape == (4, 6, 5, 1) and x.dtype == np.uint8 and y.tolist() == [0, 1, 2, 3]
    assert batches[2][0].shape[0] == 2
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=4), preload=True)
    import tianyuan as ty
    assert isinstance(next(iter(dl))[0], ty.Tensor)


def _epochs(nw, divide=False):
    ds = _ds(37)
    t = T.Compose([T.RandomCrop(4, padding_size=1), T.RandomHorizontalFlip(), T.Brightness(0.3),
                   T.Normalize(10, 2), T.ToMode("CHW")])
    dl = D.DataLoader(ds, D.RandomSampler(ds, batch_size=5, seed=11), transform=t,
                      num_workers=nw, divide=divide)
    return [b for _ in range(2) for b in dl]


def test_same_seed_same_batches_with_0_and_2_workers(no_leaks):
    a, b = _epochs(0), _epochs(2)
    assert len(a) == len(b) == 16
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(a[0][1], a[8][1])  # epochs differ
    c = _epochs(3, divide=True)
    for (xa, ya), (xc, yc) in zip(a, c):
        np.testing.assert_array_equal(ya, yc)
        assert xa.shape == xc.shape


class _Big(D.Dataset):
    def __getitem__(self, i):
        return np.full((256, 256, 3), i % 251, np.float32), {"i": i, "name": f"s{i}"}

    def __len__(self):
        return 24


def test_large_batches_through_shared_memory_keep_order(no_leaks):
    ds = _Big()
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=4), num_workers=3)
    seen = []
    for x, meta in dl:
        assert x.shape == (4, 256, 256, 3) and x.flags.writeable
        assert (x[:, 0, 0, 0] == meta["i"] % 251).all()
        seen.extend(meta["i"].tolist())
        assert meta["name"] == [f"s{i}" for i in meta["i"]]
    assert seen == list(range(24))


def test_workers_start_no_thread_in_main_process(no_leaks):
    # A helper thread (a multiprocessing.Queue's feeder) could hold a lock, e.g. the allocator's
    # under a sanitizer runtime, at the instant the next loader forks: the child then deadlocks.
    import threading
    ds = _ds(40)
    before = set(threading.enumerate())  # other tests' or pytest's threads may be running
    for divide in (False, True):
        dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=4), num_workers=3,
                          divide=divide)
        for _ in range(2):
            n = 0
            for x, y in dl:
                assert set(threading.enumerate()) <= before
                np.testing.assert_array_equal(y, np.arange(n, n + 4))
                n += 4
            assert n == 40


def test_tasks_larger_than_a_pipe_message_go_through_shared_memory(no_leaks):
    # 3000 indices pickle to more than one atomic pipe write (_MAX_PIPE_MSG)
    n = 6000
    ds = D.ArrayDataset(np.arange(n, dtype=np.int64) * 3, np.arange(n))
    for divide in (False, True):
        dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=3000), num_workers=2,
                          divide=divide)
        got = [(x.copy(), y.copy()) for x, y in dl]
        assert [len(y) for _, y in got] == [3000, 3000]
        np.testing.assert_array_equal(np.concatenate([y for _, y in got]), np.arange(n))
        np.testing.assert_array_equal(np.concatenate([x for x, _ in got]), np.arange(n) * 3)


def test_task_pipe_queues_what_a_full_pipe_refuses():
    from multiprocessing import Pipe
    from tianyuan.data.dataloader import _TaskPipe, _next_task
    r, w = Pipe(duplex=False)
    t = _TaskPipe(w)
    msgs = [pickle.dumps((i, 0, list(range(i % 700)), True)) for i in range(400)]
    for m in msgs:
        t.send(m)
    assert t.pending, "400 messages of up to 2 KB should overflow a 64 KiB pipe"
    got = []
    while len(got) < len(msgs):
        got.append(_next_task(r, os.getppid()))
        t.flush()
    assert got == [pickle.loads(m) for m in msgs] and not t.pending
    t.close()
    assert _next_task(r, os.getppid()) is None  # end of file: the writer is gone
    r.close()


def test_task_pipe_to_a_dead_worker_drops_the_message():
    # EPIPE must not escape from __next__: the liveness poll names the dead worker instead
    from multiprocessing import Pipe
    from tianyuan.data.dataloader import _TaskPipe
    r, w = Pipe(duplex=False)
    t = _TaskPipe(w)
    r.close()
    t.send(pickle.dumps((0, 0, [1, 2], True)))
    assert not t.pending
    t.close()


class _Faulty(D.Dataset):
    def __init__(self, mode, at=13):
        self.mode, self.at = mode, at

    def __getitem__(self, i):
        if i == self.at and D.get_worker_info() is not None:
            if self.mode == "raise":
                raise KeyError(f"bad sample {i}")
            if self.mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.mode == "segv":
                import ctypes
                import faulthandler
                faulthandler.disable()  # (pytest's handler would print a dump)
                ctypes.string_at(0)
            if self.mode == "hang":
                time.sleep(1000)
        return np.zeros(2, np.float32), i

    def __len__(self):
        return 40


def test_worker_exception_reraised_with_traceback(no_leaks):
    ds = _Faulty("raise")
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), num_workers=2)
    with pytest.raises(KeyError) as ei:
        for _ in dl:
            pass
    msg = str(ei.value)
    assert "worker 0" in msg and "bad sample 13" in msg and "Traceback" in msg
    assert "__getitem__" in msg and ei.value.worker_id == 0


@pytest.mark.parametrize("mode,signame,timeout", [("kill", "SIGKILL", 0), ("segv", "SIGSEGV", 0),
                                                  ("kill", "SIGKILL", 30)])
def test_dead_worker_detected(no_leaks, mode, signame, timeout):
    ds = _Faulty(mode)
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), num_workers=2, timeout=timeout)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=f"worker 0 .*{signame}"):
        for _ in dl:
            pass
    assert time.monotonic() - t0 < 5 + 5


def test_worker_killed_between_batches_is_named(no_leaks):
    ds = _ds(400)
    it = iter(D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), num_workers=2))
    next(it)
    time.sleep(1)  # worker 1 has sent its prefetched batches and waits for tasks
    victim = it.pool.procs[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(5)
    with pytest.raises(RuntimeError, match=f"worker 1 \\(pid {victim.pid}\\) .*SIGKILL"):
        for _ in it:
            pass


def test_hung_worker_times_out(no_leaks):
    ds = _Faulty("hang", at=3)
    dl = D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), num_workers=2, timeout=1)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="timed out after 1 s .*worker 1"):
        for _ in dl:
            pass
    assert time.monotonic() - t0 < 1 + 5


def test_iterator_garbage_collected_reaps_workers(no_leaks):
    ds = _Big()
    it = iter(D.DataLoader(ds, D.SequentialSampler(ds, batch_size=2), num_workers=2))
    next(it)
    pids = [p.pid for p in it.pool.procs]
    assert all(p in {c for c, _ in _children()} for p in pids)
    del it
    gc.collect()
    assert not {c for c, _ in _children()} & set(pids)


def test_workers_exit_when_parent_killed():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(HERE, "..", "..", "..", "python"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_dl_orphan.py")],
                            stdout=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2
    finally:
        proc.kill()
        proc.wait(timeout=10)
        proc.stdout.close()

    def alive(pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)


def test_get_worker_info_inside_workers(no_leaks):
    class Info(D.Dataset):
        def __getitem__(self, i):
            w = D.get_worker_info()
            return np.array([-1 if w is None else w.id, -1 if w is None else w.num_workers])

        def __len__(self):
            return 6

    ds = Info()
    assert D.get_worker_info() is None
    out = [b for b in D.DataLoader(ds, D.SequentialSampler(ds, 1), num_workers=3)]
    assert [b[0].tolist() for b in out] == [[i % 3, 3] for i in range(6)]


def test_stream_dataset():
    class S(D.StreamDataset):
        def __iter__(self):
            for i in range(7):
                yield np.full(2, i), i

    dl = D.DataLoader(S(), D.StreamSampler(batch_size=3))
    got = [y.tolist() for _, y in dl]
    assert got == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(ValueError):
        D.DataLoader(S(), D.SequentialSampler(_ds(3)))


# ------------------------------------------------------------------------------ files
def _idx(arr, code=0x08):
    arr = np.asarray(arr)
    return bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + \
        arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_mnist(root, n=7, gz=True, split="train", images=None, labels=None):
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8) if images is None else images
    labs = (np.arange(n) % 10).astype(np.uint8) if labels is None else labels
    for name, data in ((f"{split}-images-idx3-ubyte", _idx(imgs)),
                       (f"{split}-labels-idx1-ubyte", _idx(labs))):
        if gz:
            with gzip.open(os.path.join(root, name + ".gz"), "wb") as f:
                f.write(data)
        else:
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
    return imgs, labs


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_and_fashion_mnist_read_idx(tmp_path, gz):
    imgs, labs = _write_mnist(str(tmp_path), gz=gz)
    _write_mnist(str(tmp_path), n=3, gz=gz, split="t10k")
    ds = MNIST(str(tmp_path), train=True, download=False)
    assert len(ds) == 7
    img, lab = ds[4]
    assert img.shape == (28, 28, 1) and img.dtype == np.uint8 and isinstance(lab, int)
    np.testing.assert_array_equal(img[:, :, 0], imgs[4])
    assert lab == 4 and len(MNIST(str(tmp_path), train=False)) == 3
    fm = FashionMNIST(str(tmp_path), train=True)
    assert len(fm) == 7
    t = T.Compose([T.Normalize(mean=0.1307 * 255, std=0.3081 * 255), T.Pad(2), T.ToMode("CHW")])
    x, y = next(iter(D.DataLoader(ds, D.RandomSampler(ds, batch_size=4, seed=0), t)))
    assert x.shape == (4, 1, 32, 32) and x.dtype == np.float32 and y.shape == (4,)


def test_fashion_mnist_default_root_and_missing_files(tmp_path):
    assert FashionMNIST._default_root == "/usr/share/datasets/fashion-mnist"
    with pytest.raises(RuntimeError, match="no network download"):
        MNIST(str(tmp_path), download=True)
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST(str(tmp_path))


@pytest.mark.parametrize("corrupt,match", [
    (lambda b: b"\x01\x02" + b[2:], "bad IDX magic"),
    (lambda b: b[:-5], "truncated"),
    (lambda b: b + b"xx", "trailing"),
    (lambda b: b[:2], "truncated"),
    (lambda b: b[:2] + b"\x08\x01" + b[4:], "dimensions"),
])
def test_malformed_idx_files(tmp_path, corrupt, match):
    _write_mnist(str(tmp_path), gz=False)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(corrupt(p.read_bytes()))
    with pytest.raises(ValueError, match=match) as ei:
        MNIST(str(tmp_path))
    assert "train-images-idx3-ubyte" in str(ei.value)


def test_idx_count_mismatch_and_bad_gzip(tmp_path):
    _write_mnist(str(tmp_path), gz=False, labels=np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="count mismatch"):
        MNIST(str(tmp_path))
    d2 = tmp_path / "g"
    _write_mnist(str(d2), gz=True)
    p = d2 / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:15])
    with pytest.raises(ValueError, match="train-labels"):
        MNIST(str(d2))


def _cifar_batch(n, rng, keys):
    d = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"batch_label": b"x"}
    for k, m in keys:
        d[k.encode()] = [int(v) for v in rng.integers(0, m, n)]
    return pickle.dumps(d, protocol=2)


def test_cifar10_and_cifar100(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    for i in range(1, 6):
        (root / f"data_batch_{i}").write_bytes(_cifar_batch(3, rng, [("labels", 10)]))
    raw = pickle.loads(_cifar_batch(2, np.random.default_rng(9), [("labels", 10)]))
    (root / "test_batch").write_bytes(pickle.dumps(raw, protocol=2))
    ds = CIFAR10(str(tmp_path), train=True)
    assert len(ds) == 15 and ds[0][0].shape == (32, 32, 3) and ds[0][0].dtype == np.uint8
    test = CIFAR10(str(tmp_path), train=False)
    img, lab = test[1]
    chw = raw[b"data"][1].reshape(3, 32, 32)
    np.testing.assert_array_equal(img[:, :, 2], chw[0])  # R plane is channel 2 (BGR)
    assert lab == raw[b"labels"][1]
    r100 = tmp_path / "c100" / "cifar-100-python"
    r100.mkdir(parents=True)
    keys = [("fine_labels", 100), ("coarse_labels", 20)]
    (r100 / "train").write_bytes(_cifar_batch(4, rng, keys))
    (r100 / "test").write_bytes(_cifar_batch(2, rng, keys))
    c = CIFAR100(str(tmp_path / "c100"))
    assert len(c) == 4 and len(c[0]) == 3


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_cifar_restricted_unpickler_blocks_payload(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    sentinel = tmp_path / "pwned"
    (root / "test_batch").write_bytes(pickle.dumps({b"data": _Evil(str(sentinel))}))
    with pytest.raises(ValueError, match="test_batch.*not allowed"):
        CIFAR10(str(tmp_path), train=False)
    assert not sentinel.exists()
    (root / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8),
                                                    b"labels": [1]}))
    with pytest.raises(ValueError, match="count mismatch"):
        CIFAR10(str(tmp_path), train=False)


def test_image_folder_ppm_pgm_npy(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "dog").mkdir()
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    (tmp_path / "cat" / "a.ppm").write_bytes(b"P6\n# comment\n3 2\n255\n" + rgb.tobytes())
    gray = np.array([[1, 2], [3, 4]], np.uint8)
    (tmp_path / "dog" / "b.pgm").write_bytes(b"P5 2 2 255\n" + gray.tobytes())
    (tmp_path / "dog" / "c.pgm").write_bytes(b"P2\n2 2\n255\n1 2\n3 4\n")
    np.save(tmp_path / "dog" / "d.npy", np.ones((2, 2, 3), np.uint8))
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    ds = ImageFolder(str(tmp_path))
    assert len(ds) == 4 and ds.classes == ["cat", "dog"]
    img, lab = ds[0]
    assert lab == 0 and img.shape == (2, 3, 3)
    np.testing.assert_array_equal(img, rgb[:, :, ::-1])
    for k in (1, 2):
        img, lab = ds[k]
        assert lab == 1 and img.shape == (2, 2, 1)
        np.testing.assert_array_equal(img[:, :, 0], gray)
    assert ImageFolder(str(tmp_path), class_name=True)[3][2] == "dog"
    (tmp_path / "dog" / "b.pgm").write_bytes(b"P5 2 2 255\n" + b"\x01")
    with pytest.raises(ValueError, match="b.pgm.*truncated"):
        ds[1]


def test_stale_shared_memory_of_dead_process_is_removed(no_leaks):
    d = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
    stale = os.path.join(d, f"tianyuan-dl-{2 ** 22 + 12345}-dead-w0-1")
    with open(stale, "wb") as f:
        f.write(b"x" * 100)
    ds = _ds(4)
    assert len(list(D.DataLoader(ds, D.SequentialSampler(ds, 2), num_workers=1))) == 2
    assert not os.path.exists(stale)
