"""DataLoader: batches from a dataset, optionally made by worker processes.

Workers (``num_workers > 0``) are ``fork``-ed processes. Batch ``i`` is made by worker
``i % num_workers`` and batches are yielded in sampler order. Large arrays of a batch travel
through shared memory (files in ``/dev/shm`` mapped with ``mmap`` and unlinked by the receiver),
so they are never pickled; every pipe message is kept under ``PIPE_BUF`` bytes so that a worker
killed mid-write can never leave half a message behind. Tasks go to the workers through plain
pipes written by the calling thread: the main process starts no helper thread (as a
``multiprocessing.Queue`` would), so no other thread of ours can hold a lock (the allocator's,
under a sanitizer runtime that does not guard ``fork``) at the instant the next loader forks.

Failure behaviour:

* an exception in a worker is re-raised in the main process with the same type (a builtin
  exception type, else ``RuntimeError``) and a message holding the worker id and its traceback;
* a worker that dies (SIGKILL, segfault, ``os._exit``) is noticed by a liveness poll within about
  one second, whatever ``timeout`` is, and ``RuntimeError`` names the worker, its pid and the
  signal;
* with ``timeout > 0``, waiting longer than ``timeout`` seconds for a batch raises
  ``RuntimeError`` naming the worker responsible;
* on any error, on exhaustion and when the iterator is garbage-collected, workers are stopped
  (None sentinel, then SIGTERM, then SIGKILL) and reaped, and leftover shared-memory files are
  removed; workers also exit by themselves within about a second if the main process dies.

Determinism: sampling happens in the main process, and before each batch the random transforms'
generator (``tianyuan.data.transform.get_rng()``) is reseeded from (loader seed, epoch, batch
index), so a given sampler seed gives the same batches with any number of workers. Workers also
reseed ``numpy.random`` and ``random`` the same way; with ``num_workers=0`` the global generators
are left alone.
"""
import builtins
import collections
import mmap
import os
import pickle
import random as _pyrandom
import select
import signal
import struct
import sys
import tempfile
import time
import traceback
import weakref
from multiprocessing import connection as _mpc

import numpy as np

from .collator import Collator
from .dataset.meta_dataset import StreamDataset
from .sampler import SequentialSampler, StreamSampler
from . import transform as _transform

__all__ = ["DataLoader", "get_worker_info", "WorkerInfo"]

_SHM_MIN_BYTES = 4096      # arrays at least this large go through shared memory
_MAX_PIPE_MSG = 3072       # larger messages are written to a shared-memory file instead
_POLL_S = 0.5              # liveness poll interval


class WorkerInfo:
    """Returned by :func:`get_worker_info` inside a worker process."""

    def __init__(self, idx, worker, seed, dataset):
        self.idx = self.id = idx
        self.worker = self.num_workers = worker
        self.seed = seed
        self.dataset = dataset

    def __repr__(self):
        return f"WorkerInfo(id={self.id}, num_workers={self.num_workers}, seed={self.seed})"


_worker_info = None


def get_worker_info():
    """The :class:`WorkerInfo` of the current DataLoader worker process, or None in the main
    process."""
    return _worker_info


def _shm_dir():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else tempfile.gettempdir()


def _clean_stale_shm(d):
    """Removes shared-memory files left by DataLoaders of processes that no longer exist."""
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        if not n.startswith("tianyuan-dl-"):
            continue
        try:
            pid = int(n.split("-")[2])
            os.kill(pid, 0)
            continue
        except (ValueError, IndexError, PermissionError):
            continue
        except ProcessLookupError:
            pass
        try:
            os.unlink(os.path.join(d, n))
        except OSError:
            pass


def _batch_seed(base_seed, epoch, batch_idx, part=0):
    return np.random.SeedSequence([base_seed, epoch, batch_idx, part])


def _make_batch(dataset, indices, transform, collator, seed_seq, in_worker):
    _transform._set_rng(np.random.default_rng(seed_seq))
    if in_worker:
        s = int(seed_seq.generate_state(1)[0])
        np.random.seed(s)
        _pyrandom.seed(s)
    samples = [dataset[i] for i in indices]
    return _collate(collator, transform.apply_batch(samples), indices)


def _collate(collator, samples, indices=None, batch_idx=None):
    """collator.apply(samples), with an error that names the batch and, when known, the dataset
    index of the sample that did not fit (``indices`` are the batch's dataset indices)."""
    try:
        return collator.apply(samples)
    except (ValueError, TypeError) as e:
        where = "the batch" if batch_idx is None else f"batch {batch_idx}"
        if indices is not None:
            shown = list(indices[:16]) + (["..."] if len(indices) > 16 else [])
            where += f" of dataset indices {shown}"
            pos = getattr(e, "sample_position", None)
            if pos is not None and pos < len(indices):
                where += f" (sample {pos} of the batch is dataset index {indices[pos]})"
        raise type(e)(f"DataLoader: cannot collate {where}: {e}") from e


# ------------------------------------------------------------------ shared-memory transport
class _ShmArray:
    __slots__ = ("path", "dtype", "shape", "nbytes")

    def __init__(self, path, dtype, shape, nbytes):
        self.path, self.dtype, self.shape, self.nbytes = path, dtype, shape, nbytes

    def __reduce__(self):
        return (_ShmArray, (self.path, self.dtype, self.shape, self.nbytes))


class _Exporter:
    def __init__(self, prefix):
        self.prefix = prefix
        self.k = 0

    def _new_file(self, nbytes):
        self.k += 1
        path = f"{self.prefix}-{self.k}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, max(nbytes, 1))
            mm = mmap.mmap(fd, max(nbytes, 1))
        finally:
            os.close(fd)
        return path, mm

    def export(self, obj):
        if isinstance(obj, np.ndarray) and obj.nbytes >= _SHM_MIN_BYTES \
                and obj.dtype.kind in "biufc":
            path, mm = self._new_file(obj.nbytes)
            view = np.frombuffer(mm, dtype=obj.dtype, count=obj.size).reshape(obj.shape)
            view[...] = obj
            del view
            mm.close()
            return _ShmArray(path, obj.dtype.str, obj.shape, obj.nbytes)
        if isinstance(obj, tuple):
            return tuple(self.export(x) for x in obj)
        if isinstance(obj, list):
            return [self.export(x) for x in obj]
        if isinstance(obj, dict):
            return {k: self.export(v) for k, v in obj.items()}
        return obj

    def message(self, msg):
        """Pickled bytes of ``msg`` small enough for one atomic pipe write."""
        data = pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL)
        if len(data) <= _MAX_PIPE_MSG:
            return data
        path, mm = self._new_file(len(data))
        mm[:len(data)] = data
        mm.close()
        return pickle.dumps(("file", path, len(data)))


class _TaskPipe:
    """The main process's end of a worker's task pipe. Each message is written whole in one
    ``write`` (at most ``PIPE_BUF`` bytes: atomic); the end is non-blocking, and a message that
    finds the pipe full waits in ``pending`` (``flush`` retries), so the main process never blocks
    on a worker that is itself blocked writing its results."""

    def __init__(self, conn):
        self.conn = conn  # a multiprocessing Connection: only its file descriptor is used
        self.fd = conn.fileno()
        os.set_blocking(self.fd, False)
        self.pending = collections.deque()

    def send(self, data):
        self.pending.append(struct.pack("!I", len(data)) + data)
        self.flush()

    def flush(self):
        while self.pending:
            try:
                os.write(self.fd, self.pending[0])
            except BlockingIOError:
                return
            except OSError:  # the worker is gone (EPIPE): the liveness poll reports it
                self.pending.clear()
                return
            self.pending.popleft()

    def close(self):
        try:
            self.conn.close()
        except OSError:
            pass


def _read_exact(fd, n):
    parts = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            raise EOFError
        parts.append(b)
        n -= len(b)
    return b"".join(parts)


def _next_task(conn, parent_pid):
    """The next task from a worker's end of its task pipe, or None when the main process sent
    the end sentinel, closed its end or is gone."""
    fd = conn.fileno()
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while not poller.poll(int(_POLL_S * 1000)):
        if os.getppid() != parent_pid:
            return None
    try:
        (n,) = struct.unpack("!I", _read_exact(fd, 4))
        return _read_message(_read_exact(fd, n))
    except EOFError:
        return None


def _open_shm(path, nbytes):
    fd = os.open(path, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, max(nbytes, 1))
    finally:
        os.close(fd)
        os.unlink(path)
    return mm


def _import(obj):
    if isinstance(obj, _ShmArray):
        mm = _open_shm(obj.path, obj.nbytes)
        count = obj.nbytes // np.dtype(obj.dtype).itemsize
        return np.frombuffer(mm, dtype=np.dtype(obj.dtype), count=count).reshape(obj.shape)
    if isinstance(obj, tuple):
        return tuple(_import(x) for x in obj)
    if isinstance(obj, list):
        return [_import(x) for x in obj]
    if isinstance(obj, dict):
        return {k: _import(v) for k, v in obj.items()}
    return obj


def _read_message(data):
    msg = pickle.loads(data)  # from our own forked child or parent: trusted
    if isinstance(msg, tuple) and msg[0] == "file":
        mm = _open_shm(msg[1], msg[2])
        try:
            msg = pickle.loads(mm[:msg[2]])
        finally:
            mm.close()
    return msg


# ------------------------------------------------------------------------------- worker side
def _worker_loop(wid, num_workers, dataset, transform, collator, task_conn, conn, base_seed,
                 epoch, prefix, parent_pid):
    global _worker_info
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:  # die with the parent (Linux); the getppid poll below covers other systems
            import ctypes
            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except Exception:
            pass
        if os.getppid() != parent_pid:
            os._exit(0)
        _worker_info = WorkerInfo(wid, num_workers, base_seed + wid, dataset)
        exporter = _Exporter(f"{prefix}-w{wid}")
        while True:
            task = _next_task(task_conn, parent_pid)
            if task is None:
                break
            idx, part, indices, collate = task
            try:
                seed = _batch_seed(base_seed, epoch, idx, part)
                if collate:
                    out = _make_batch(dataset, indices, transform, collator, seed, True)
                else:
                    _transform._set_rng(np.random.default_rng(seed))
                    out = transform.apply_batch([dataset[i] for i in indices])
                msg = ("ok", idx, part, exporter.export(out))
            except BaseException as e:  # noqa: BLE001 (reported to the main process)
                msg = ("err", idx, part, type(e).__module__, type(e).__qualname__,
                       "".join(traceback.format_exception(type(e), e, e.__traceback__)))
            try:
                data = exporter.message(msg)
            except BaseException as e:  # e.g. an unpicklable sample
                data = exporter.message(("err", idx, part, type(e).__module__,
                                         type(e).__qualname__, traceback.format_exc()))
            conn.send_bytes(data)
    except BaseException:
        pass
    finally:
        try:
            conn.close()
        except Exception:
            pass
    os._exit(0)


# ------------------------------------------------------------------------------- main side
class _WorkerPool:
    """Everything the finalizer needs to shut workers down (no reference to the iterator)."""

    def __init__(self, owner_pid, prefix):
        self.owner_pid = owner_pid
        self.prefix = prefix
        self.procs = []
        self.task_pipes = []
        self.task_exporter = _Exporter(prefix + "-t")  # tasks too large for one pipe write
        self.conns = []
        self.closed = False

    def shutdown(self):
        if self.closed or os.getpid() != self.owner_pid:
            return
        self.closed = True
        for t in self.task_pipes:
            try:
                t.send(pickle.dumps(None))
            except Exception:
                pass
        for escalate in ("terminate", "kill"):  # ask, then insist
            deadline = time.monotonic() + 1.0
            for p in self.procs:
                p.join(max(0.0, deadline - time.monotonic()))
            for p in self.procs:
                if p.is_alive():
                    try:
                        getattr(p, escalate)()
                    except Exception:
                        pass
        for p in self.procs:
            p.join()  # SIGKILL cannot be ignored: this returns
        for p in self.procs:
            try:
                p.close()
            except Exception:
                pass
        for t in self.task_pipes:
            t.close()
        for c in self.conns:
            try:
                c.close()
            except Exception:
                pass
        d, base = os.path.split(self.prefix)
        try:
            names = os.listdir(d)
        except OSError:
            names = []
        for n in names:
            if n.startswith(base + "-"):
                try:
                    os.unlink(os.path.join(d, n))
                except OSError:
                    pass


def _signal_name(code):
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _exc_from_worker(module, qualname, wid, idx, tb):
    text = (f"Caught {qualname} in DataLoader worker {wid} (batch {idx}).\n"
            f"Original traceback (worker {wid}):\n{tb}")
    cls = getattr(builtins, qualname, None) if module == "builtins" else None
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, OSError) \
            and cls is not UnicodeError and not issubclass(cls, UnicodeError):
        try:
            e = cls(text)
            e.worker_id = wid
            return e
        except Exception:
            pass
    e = RuntimeError(text)
    e.worker_id = wid
    return e


class _MultiWorkerIter:
    def __init__(self, loader, base_seed, epoch):
        import multiprocessing as mp
        ctx = mp.get_context("fork" if sys.platform.startswith("linux") else None)
        self.loader = loader
        self.n = loader.num_workers
        self.timeout = loader.timeout
        self.divide = loader.divide
        self.sampler_iter = iter(loader.sampler)
        shm = _shm_dir()
        _clean_stale_shm(shm)
        prefix = os.path.join(shm, f"tianyuan-dl-{os.getpid()}-{os.urandom(4).hex()}")
        self.pool = _WorkerPool(os.getpid(), prefix)
        self._finalizer = weakref.finalize(self, self.pool.shutdown)
        try:
            for wid in range(self.n):
                task_r, task_w = ctx.Pipe(duplex=False)
                self.pool.task_pipes.append(_TaskPipe(task_w))
                r, w = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_worker_loop, name=f"tianyuan-dataloader-{wid}",
                                args=(wid, self.n, loader.dataset, loader.transform,
                                      loader.collator, task_r, w, base_seed, epoch, prefix,
                                      os.getpid()),
                                daemon=True)
                try:
                    p.start()
                finally:
                    task_r.close()
                    w.close()
                self.pool.procs.append(p)
                self.pool.conns.append(r)
        except BaseException:
            self.pool.shutdown()
            raise
        self.next_send = 0
        self.next_yield = 0
        self.results = {}       # batch idx -> {part: data}
        self.parts = {}         # batch idx -> number of parts
        self.owner = {}         # batch idx -> worker id (of the first part)
        self.outstanding = 0    # parts sent and not yet received
        self.exhausted = False
        self.prefetch = 2 * self.n
        self._fill()

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def _fill(self):
        while not self.exhausted and self.next_send - self.next_yield < self.prefetch:
            try:
                indices = next(self.sampler_iter)
            except StopIteration:
                self.exhausted = True
                break
            except BaseException:
                self._close()
                raise
            idx = self.next_send
            self.next_send += 1
            indices = list(indices)
            if self.divide and self.n > 1 and len(indices) > 1:
                k = min(self.n, len(indices))
                chunks = [c.tolist() for c in np.array_split(np.array(indices), k)]
                self.parts[idx] = k
                self.owner[idx] = 0
                for part, chunk in enumerate(chunks):
                    self._send(part % self.n, (idx, part, chunk, False))
            else:
                wid = idx % self.n
                self.parts[idx] = 1
                self.owner[idx] = wid
                self._send(wid, (idx, 0, indices, not self.divide))

    def _send(self, wid, task):
        self.pool.task_pipes[wid].send(self.pool.task_exporter.message(task))
        self.outstanding += 1

    def _close(self):
        self._finalizer()

    def _fail(self, exc):
        self._close()
        raise exc

    def _receive(self, wid, conn):
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return False
        try:
            msg = _read_message(data)
        except Exception as e:
            self._fail(RuntimeError(f"DataLoader worker {wid} sent an unreadable message: {e}"))
        if msg[0] == "err":
            _, idx, part, module, qualname, tb = msg
            self._fail(_exc_from_worker(module, qualname, wid, idx, tb))
        _, idx, part, payload = msg
        self.results.setdefault(idx, {})[part] = _import(payload)
        self.outstanding -= 1
        return True

    def _died(self, wid):
        p = self.pool.procs[wid]
        p.join(1.0)
        code = p.exitcode
        how = f"was killed by {_signal_name(code)}" if code is not None and code < 0 else \
            f"exited unexpectedly with exit code {code}"
        self._fail(RuntimeError(f"DataLoader worker {wid} (pid {p.pid}) {how}"))

    def __next__(self):
        if self.pool.closed:
            raise StopIteration
        idx = self.next_yield
        if idx >= self.next_send and self.exhausted:
            self._close()
            raise StopIteration
        start = time.monotonic()
        conns = self.pool.conns
        procs = self.pool.procs
        while len(self.results.get(idx, ())) < self.parts[idx]:
            wait_s = _POLL_S
            if self.timeout > 0:
                left = self.timeout - (time.monotonic() - start)
                if left <= 0:
                    wid = self.owner[idx]
                    self._fail(RuntimeError(
                        f"DataLoader timed out after {self.timeout} s waiting for batch {idx} "
                        f"from worker {wid} (pid {procs[wid].pid})"))
                wait_s = min(wait_s, left)
            for t in self.pool.task_pipes:
                t.flush()
            ready = _mpc.wait(list(conns) + [p.sentinel for p in procs], timeout=wait_s)
            ready = set(ready)
            for wid, c in enumerate(conns):
                if c in ready:
                    while c.poll():
                        if not self._receive(wid, c):
                            self._died(wid)
            for wid, p in enumerate(procs):
                if p.sentinel in ready or not p.is_alive():
                    while conns[wid].poll():
                        if not self._receive(wid, conns[wid]):
                            break
                    if len(self.results.get(idx, ())) >= self.parts[idx]:
                        break
                    self._died(wid)
        parts = self.results.pop(idx)
        n = self.parts.pop(idx)
        self.owner.pop(idx)
        self.next_yield += 1
        self._fill()
        if n == 1 and not self.divide:
            batch = parts[0]
        else:
            samples = []
            for part in range(n):
                samples.extend(parts[part])
            batch = _collate(self.loader.collator, samples)
        return self.loader._post(batch)


class _SerialIter:
    def __init__(self, loader, base_seed, epoch):
        self.loader = loader
        self.sampler_iter = iter(loader.sampler)
        self.base_seed, self.epoch, self.idx = base_seed, epoch, 0

    def __iter__(self):
        return self

    def __len__(self):
        return len(self.loader)

    def __next__(self):
        indices = next(self.sampler_iter)
        seed = _batch_seed(self.base_seed, self.epoch, self.idx)
        self.idx += 1
        ld = self.loader
        return ld._post(_make_batch(ld.dataset, indices, ld.transform, ld.collator, seed, False))


class _StreamIter:
    def __init__(self, loader, base_seed, epoch):
        self.loader = loader
        self.it = iter(loader.dataset)
        self.base_seed, self.epoch, self.idx = base_seed, epoch, 0
        self.bs = loader.sampler.batch_size

    def __iter__(self):
        return self

    def __next__(self):
        samples = []
        for _ in range(self.bs):
            try:
                samples.append(next(self.it))
            except StopIteration:
                break
        if not samples:
            raise StopIteration
        ld = self.loader
        _transform._set_rng(np.random.default_rng(
            _batch_seed(self.base_seed, self.epoch, self.idx)))
        self.idx += 1
        return ld._post(_collate(ld.collator, ld.transform.apply_batch(samples),
                                 batch_idx=self.idx - 1))


class DataLoader:
    """Iterates a dataset in batches of numpy arrays.

    ``DataLoader(dataset, sampler=None, transform=None, collator=None, num_workers=0,
    timeout=0, preload=False, divide=False)``. ``sampler`` defaults to
    ``SequentialSampler(dataset, batch_size=1)`` (``StreamSampler(1)`` for a StreamDataset).
    Each batch is ``collator.apply(transform.apply_batch([dataset[i] for i in indices]))``:
    with the default :class:`Collator`, a tuple with one stacked array per sample field.
    ``preload=True`` converts the arrays of each batch to tianyuan Tensors. ``divide=True``
    splits every batch between the workers (each transforms its part; the main process
    collates). Stream datasets are read in the main process (``num_workers`` is ignored for
    them). See the module documentation for worker failure handling and determinism.
    """

    def __init__(self, dataset, sampler=None, transform=None, collator=None, num_workers=0,
                 timeout=0, preload=False, divide=False, **kwargs):
        if kwargs.pop("parallel_stream", False):
            pass  # accepted for MegEngine compatibility; stream datasets load serially
        if kwargs:
            raise TypeError(f"DataLoader got unexpected arguments {sorted(kwargs)}")
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        if not (isinstance(timeout, (int, float)) and timeout >= 0):
            raise ValueError(f"timeout must be a non-negative number, got {timeout!r}")
        self.dataset = dataset
        self.is_stream = isinstance(dataset, StreamDataset)
        if sampler is None:
            sampler = StreamSampler(1) if self.is_stream else SequentialSampler(dataset, 1)
        if self.is_stream and not isinstance(sampler, StreamSampler):
            raise ValueError("a StreamDataset needs a StreamSampler")
        if not self.is_stream and isinstance(sampler, StreamSampler):
            raise ValueError("a StreamSampler needs a StreamDataset")
        self.sampler = sampler
        self.transform = transform if transform is not None else _transform.PseudoTransform()
        self.collator = collator if collator is not None else Collator()
        self.num_workers = num_workers
        self.timeout = timeout
        self.preload = preload
        self.divide = divide
        seed = getattr(sampler, "seed", None)
        self._seed_rng = np.random.default_rng(
            [int(seed) & 0xFFFFFFFFFFFFFFFF, 0x7479] if seed is not None
            else int(np.random.randint(0, 2 ** 31 - 1)))
        self._epoch = 0

    def _post(self, batch):
        if not self.preload:
            return batch
        from ..tensor import Tensor

        def conv(x):
            if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
                return Tensor(x)
            if isinstance(x, tuple):
                return tuple(conv(v) for v in x)
            if isinstance(x, list):
                return [conv(v) for v in x]
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            return x
        return conv(batch)

    def __iter__(self):
        base_seed = int(self._seed_rng.integers(0, 2 ** 62))
        epoch = self._epoch
        self._epoch += 1
        if self.is_stream:
            return _StreamIter(self, base_seed, epoch)
        if self.num_workers == 0:
            return _SerialIter(self, base_seed, epoch)
        return _MultiWorkerIter(self, base_seed, epoch)

    def __len__(self):
        if self.is_stream:
            raise TypeError("a DataLoader over a StreamDataset has no length")
        return len(self.sampler)

