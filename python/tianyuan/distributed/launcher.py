"""``dist.launcher``: runs a function on N ranks of this machine and returns each rank's result.

The ranks are processes started by ``mpirun`` (Open MPI), each running
``python -m tianyuan.distributed._worker JOBDIR``: the worker imports the function by its module
and qualified name (a ``__main__`` script is re-run as ``__mp_main__``, as multiprocessing's
spawn does, so keep the script's work under ``if __name__ == "__main__":``), calls
``init_process_group`` and then the function, and pickles the result (or its traceback) into
JOBDIR, a private temporary folder of this process.

Failures: a rank that raises writes its traceback and exits non-zero; mpirun then stops the
other ranks and the launcher raises :class:`LaunchError` with that traceback. A rank killed by a
signal is named by the launcher as the rank without a result. No process outlives the call:
mpirun dies with the launcher (``PR_SET_PDEATHSIG``), every rank dies with mpirun, and on any
exit path (an error, Ctrl-C, SIGTERM) the launcher ends mpirun and then any rank still alive.
"""
import functools
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .server import Server

__all__ = ["launcher", "LaunchError"]

_PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """A rank of a launched job failed; ``rank`` is the first one that did (or None)."""

    def __init__(self, message, rank=None):
        super().__init__(message)
        self.rank = rank


def _under_mpi():
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"))


def set_parent_death_signal(sig=signal.SIGKILL):
    """Asks Linux to send sig to this process when its parent dies (no orphans)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _function_ref(func):
    """(module, file, qualname) by which a worker finds func again."""
    qualname = getattr(func, "__qualname__", None)
    module = getattr(func, "__module__", None)
    if not qualname or not module or "<locals>" in qualname or "<lambda>" in qualname:
        raise ValueError(f"dist.launcher: {func!r} must be a function defined at module level "
                         f"(a worker imports it by name)")
    mod = sys.modules.get(module)
    path = getattr(mod, "__file__", None)
    if module == "__main__" and not path:
        raise ValueError("dist.launcher: a function of an interactive session cannot be "
                         "launched; define it in a file")
    return module, path and os.path.abspath(path), qualname


def _mpirun():
    exe = shutil.which("mpirun") or shutil.which("mpiexec")
    if exe is None:
        raise LaunchError("dist.launcher: mpirun not found; install Open MPI "
                          "(apt-get install openmpi-bin libopenmpi-dev)")
    return exe


def mpirun_command(nproc, extra_args=()):
    """The mpirun argument list for nproc local ranks (oversubscription allowed)."""
    cmd = [_mpirun(), "-np", str(int(nproc)), "--oversubscribe", "--bind-to", "none"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-run-as-root")
    return cmd + list(extra_args)


def _package_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


_SIGNALLED = re.compile(r"process rank (\d+) with PID \d+ on node \S+ exited on signal "
                        r"(\d+)(?: \(([^)]*)\))?")
_EXITED = re.compile(r"Process name: \[\[\d+,\d+\],(\d+)\]\s+Exit code:\s+(\d+)")


def _failed_rank(text):
    """(rank, what happened) from mpirun's report of the first failed process, or (None, '')."""
    m = _SIGNALLED.search(text)
    if m:
        name = f" ({m.group(3)})" if m.group(3) else ""
        return int(m.group(1)), f"was killed by signal {m.group(2)}{name}"
    m = _EXITED.search(text)
    if m:
        return int(m.group(1)), f"exited with status {m.group(2)}"
    return None, ""


class _Job:
    """One launched run: its folder, mpirun process and result collection."""

    def __init__(self, nproc, job):
        self.nproc = nproc
        self.dir = tempfile.mkdtemp(prefix="ty-dist-")
        with open(os.path.join(self.dir, "job.pkl"), "wb") as f:
            pickle.dump(job, f)
        self.proc = None
        self.stderr_tail = []
        self.tee = None

    def start(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [_package_root()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        if "TY_NUM_THREADS" not in env:  # ranks share the cores instead of each taking all
            env["TY_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // self.nproc))
        cmd = mpirun_command(self.nproc) + [sys.executable, "-m",
                                             "tianyuan.distributed._worker", self.dir]
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=set_parent_death_signal)
        self.tee = threading.Thread(target=self._tee_stderr, daemon=True)
        self.tee.start()

    def _tee_stderr(self):
        """Passes mpirun's stderr on and keeps its tail for the error message."""
        for line in iter(self.proc.stderr.readline, b""):
            text = line.decode(errors="replace")
            self.stderr_tail = (self.stderr_tail + [text])[-40:]
            try:
                sys.stderr.write(text)
            except (ValueError, OSError):
                pass

    def wait(self):
        while True:
            try:
                rc = self.proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                continue
        self.tee.join(timeout=5)  # mpirun's last lines name the rank that failed first
        return rc

    def _rank_pids(self):
        pids = []
        for name in os.listdir(self.dir):
            if name.startswith("pid_"):
                try:
                    with open(os.path.join(self.dir, name)) as f:
                        pids.append(int(f.read().strip()))
                except (OSError, ValueError):
                    pass
        return pids

    def _is_our_rank(self, pid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return self.dir.encode() in f.read()
        except OSError:
            return False

    def stop(self):
        """Ends mpirun and every rank still alive (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 5
        for sig in (signal.SIGTERM, signal.SIGKILL):
            alive = [p for p in self._rank_pids() if self._is_our_rank(p)]
            for pid in alive:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
            while alive and time.monotonic() < deadline:
                time.sleep(0.05)
                alive = [p for p in alive if self._is_our_rank(p)]
            if not alive:
                break

    def collect(self, rc):
        results, errors = {}, []
        for r in range(self.nproc):
            res = os.path.join(self.dir, f"result_{r}.pkl")
            err = os.path.join(self.dir, f"error_{r}.txt")
            if os.path.exists(err):
                with open(err) as f:
                    errors.append((os.path.getmtime(err), r, f.read()))
            elif os.path.exists(res):
                if "__main__" in sys.modules:  # ranks ran the script as __mp_main__
                    sys.modules.setdefault("__mp_main__", sys.modules["__main__"])
                with open(res, "rb") as f:
                    results[r] = pickle.load(f)
        tail = "".join(self.stderr_tail[-12:])
        rank, how = _failed_rank(tail) if rc != 0 else (None, "")
        # A rank killed by a signal leaves no traceback; the errors the others then raise
        # (a lost peer) are its consequences, so it is the one to name.
        killed = how.startswith("was killed") and rank not in {r for _, r, _ in errors}
        if errors and not killed:
            errors.sort()
            _, rank, tb = errors[0]
            others = [r for _, r, _ in errors[1:]]
            more = f" (ranks {others} failed after it)" if others else ""
            raise LaunchError(f"dist.launcher: rank {rank} of {self.nproc} failed{more}:\n{tb}",
                              rank)
        missing = [r for r in range(self.nproc) if r not in results]
        if rc != 0 or missing:
            first = (f"rank {rank} of {self.nproc} {how}" if rank is not None
                     else f"mpirun exited with status {rc}")
            raise LaunchError(f"dist.launcher: {first}; ranks without a result: {missing}"
                              f"\n{tail}", rank if rank is not None else
                              (missing[0] if missing else None))
        return [results[r] for r in range(self.nproc)]

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class _SigtermAsExit:
    """While active in the main thread, SIGTERM raises SystemExit so cleanup runs."""

    def __enter__(self):
        self.old = None
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
                self.old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise SystemExit(128 + signum)

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)


class _Launcher:
    def __init__(self, func, n_gpus=None, world_size=None, rank_start=0, master_ip="localhost",
                 port=0, device_type="xpu", backend="auto", timeout=None, seed=None):
        functools.update_wrapper(self, func)
        self._func = func
        if n_gpus is None:
            from .group import get_device_count
            n_gpus = get_device_count(device_type)
        self.n_gpus = int(n_gpus)
        self.world_size = self.n_gpus if world_size is None else int(world_size)
        if self.n_gpus < 1:
            raise ValueError(f"dist.launcher: n_gpus must be >= 1, got {n_gpus}")
        if self.world_size != self.n_gpus or rank_start != 0:
            raise NotImplementedError(
                "dist.launcher starts the ranks of one machine; for several machines start "
                "the job with mpirun and a host list (see docs/distributed.md)")
        self.master_ip, self.port = master_ip, int(port)
        self.device_type, self.backend = device_type, backend
        self.timeout, self.seed = timeout, seed

    def __call__(self, *args, **kwargs):
        if _under_mpi():   # started by mpirun already: this process is one of the ranks
            from .group import init_process_group, is_distributed, get_rank, get_world_size
            if not is_distributed():
                init_process_group(self.master_ip, self.port, None, None, None, self.backend,
                                   self.device_type, timeout=self.timeout, seed=self.seed)
            out = [None] * get_world_size()
            out[get_rank()] = self._func(*args, **kwargs)
            return out
        module, path, qualname = _function_ref(self._func)
        server = Server(self.port, host=self.master_ip)  # the ranks are on this machine
        job = {"module": module, "file": path, "qualname": qualname,
               "call": pickle.dumps((args, kwargs)),  # read once the function's module is in
               "sys_path": list(sys.path), "cwd": os.getcwd(),
               "init": {"master_ip": self.master_ip, "port": server.py_server_port,
                        "world_size": self.world_size, "backend": self.backend,
                        "device_type": self.device_type, "timeout": self.timeout,
                        "seed": self.seed}}
        run = _Job(self.n_gpus, job)
        try:
            with _SigtermAsExit():
                run.start()
                rc = run.wait()
            return run.collect(rc)
        finally:
            run.stop()
            run.cleanup()
            server.close()


def launcher(func=None, n_gpus=None, world_size=None, rank_start=0, master_ip="localhost",
             port=0, device_type="xpu", backend="auto", timeout=None, seed=None):
    """Decorator (MegEngine's ``dist.launcher``): calling the decorated function runs it on
    ``n_gpus`` ranks and returns the list of their results, indexed by rank.

    ``timeout`` (seconds) bounds every collective and rendezvous wait; ``seed`` seeds each
    rank's generator with a value derived from (seed, rank) (see ``init_process_group``).
    When the process already is a rank of an ``mpirun`` job, the function just runs here."""
    if func is None:
        return functools.partial(launcher, n_gpus=n_gpus, world_size=world_size,
                                 rank_start=rank_start, master_ip=master_ip, port=port,
                                 device_type=device_type, backend=backend, timeout=timeout,
                                 seed=seed)
    return _Launcher(func, n_gpus, world_size, rank_start, master_ip, port, device_type,
                     backend, timeout, seed)
