"""The process group: joining a job, ranks, groups, backends and per-rank seeds.

A process is a world of one until :func:`init_process_group`. Ranks come from the MPI launcher
(``mpirun`` sets ``OMPI_COMM_WORLD_RANK``/``SIZE``; Slurm's and MPICH's PMI variables work too);
the arguments a script passes are checked against them, and the ranks check with each other
through the rendezvous store (:mod:`.server`) that every rank's world size and backend agree,
so a misconfigured job fails at init with a message instead of hanging in its first collective.
"""
import hashlib
import os
import socket

from .server import Client, Server, DEFAULT_TIMEOUT

__all__ = ["init_process_group", "is_distributed", "get_rank", "get_world_size", "new_group",
           "Group", "WORLD", "group_barrier", "get_backend", "get_client", "get_mm_server_addr",
           "get_py_server_addr", "get_local_device_id", "override_backend", "backend",
           "group_start", "group_end", "rank_seed", "get_device_count", "DistError",
           "set_deterministic"]


class DistError(RuntimeError):
    """A distributed job was set up wrongly or one of its ranks failed."""


class _State:
    def __init__(self):
        self.rank = 0
        self.world_size = 1
        self.device = 0
        self.device_type = "xpu"
        self.backend = None
        self.master_ip = None
        self.port = None
        self.client = None
        self.server = None
        self.timeout = DEFAULT_TIMEOUT
        self.seed = None
        self.initialized = False
        self.group_calls = 0  # group_start/group_end nesting
        self.group_works = []  # (what, work) of the sends / recvs started inside the group


_sd = _State()


def _comm():
    from . import _comm as c
    return c


def _env_rank_size():
    """(rank, size) from the MPI launcher's environment, or None outside one."""
    for rk, sz in (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"),
                   ("PMIX_RANK", "PMIX_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rk in os.environ and sz in os.environ:
            return int(os.environ[rk]), int(os.environ[sz])
    return None


def _env_local_rank():
    for k in ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"):
        if k in os.environ:
            return int(os.environ[k])
    return None


def _timeout_default(timeout):
    if timeout is not None:
        t = float(timeout)
    else:
        t = float(os.environ.get("TY_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    if not t > 0:
        raise ValueError(f"init_process_group: timeout must be > 0 seconds, got {t}")
    return t


def get_device_count(device_type="xpu"):
    """Devices of device_type on this machine (the CPU counts its cores)."""
    if device_type in ("gpu", "cuda"):
        return 0
    return os.cpu_count() or 1


def rank_seed(seed, rank):
    """The seed of rank ``rank`` for the user's ``seed``: a hash of both (never the clock),
    so the same (seed, rank) gives the same stream in every run and ranks differ."""
    digest = hashlib.blake2b(f"tianyuan-rank-seed:{int(seed)}:{int(rank)}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _resolve_backend(backend, device_type):
    if backend in (None, "auto") and _override[0] is not None:
        backend = _override[0]
    if backend in (None, "auto"):
        return "nccl" if device_type in ("gpu", "cuda") else "mpi"
    if backend not in ("mpi", "nccl", "self"):
        raise ValueError(f"init_process_group: backend must be 'auto', 'mpi' or 'nccl', "
                         f"got {backend!r}")
    return backend


def _check_arg(name, given, actual):
    if given is not None and int(given) != actual:
        raise DistError(f"init_process_group: {name}={given} but the MPI launcher started this "
                        f"process as {name}={actual} (mpirun -np sets the world size)")


def init_process_group(master_ip="localhost", port=0, world_size=None, rank=None, device=None,
                       backend="auto", device_type="xpu", *, timeout=None, seed=None):
    """Joins the job (MegEngine's ``init_process_group``).

    Under ``mpirun`` (or ``dist.launcher``) rank and world size come from the launcher;
    ``world_size``/``rank`` given here must match them (None: take them). Outside a launcher
    only ``world_size=1`` is possible: MPI cannot join processes started separately.

    master_ip/port: the rendezvous store. Rank 0 serves it on ``port`` unless a
    :class:`Server` already listens there; port 0 picks a free port, told to the other ranks
    over MPI. Ranks check that their world sizes and backends agree; a mismatch fails at once
    on every rank, naming the ranks.

    timeout: seconds every collective and rendezvous wait may take (default
    ``TY_DIST_TIMEOUT`` or 300); past it the waiting ranks raise ``TimeoutError`` naming the
    collective. seed: when given, reseeds this rank's global generator with
    ``rank_seed(seed, rank)`` (same seed: same per-rank streams in every run)."""
    if _sd.initialized:
        raise DistError("init_process_group: this process already joined a group")
    env = _env_rank_size()
    backend = _resolve_backend(backend, device_type)
    timeout = _timeout_default(timeout)
    if env is None:
        if world_size not in (None, 1):
            raise DistError(
                f"init_process_group: world_size={world_size} needs the ranks started by mpirun "
                f"(or dist.launcher); this process was not (no OMPI_COMM_WORLD_RANK / PMI_RANK)")
        if rank not in (None, 0):
            raise DistError(f"init_process_group: rank={rank} in a world of 1 process")
        env_rank, env_size = 0, 1
    else:
        env_rank, env_size = env
        _check_arg("world_size", world_size, env_size)
        _check_arg("rank", rank, env_rank)
    if env_size == 1 and backend == "mpi" and env is None:
        backend = "self"  # a world of one needs no engine
    c = _comm()
    c.init(backend, timeout)
    from .. import config
    if config.deterministic_kernel:
        c.set_deterministic(True)
    try:
        _sd.rank, _sd.world_size = c.rank(), c.size()
        _sd.device = int(device) if device is not None else (_env_local_rank() or 0)
        _sd.device_type, _sd.backend, _sd.timeout = device_type, backend, timeout
        _sd.master_ip = master_ip or "localhost"
        _rendezvous(int(port or 0))
        _sd.initialized = True
        if seed is not None:
            _seed_rank(seed)
        _sd.client.barrier("init", _sd.world_size, timeout, _sd.rank)
        if env is not None and not os.environ.get("TY_DIST_WORKER"):
            _install_exit_hooks()
    except BaseException as e:
        _sd.initialized = False
        _abort_job(f"rank {_sd.rank} failed in init_process_group: {type(e).__name__}: {e}")
        _close_store()
        raise


def _install_exit_hooks():
    """For scripts started by mpirun: leave the job properly at a normal exit (MPI counts an
    exit without finalize as a failure), and on an uncaught exception print it, wake the
    ranks waiting on the store and exit at once, so mpirun ends the job instead of the other
    ranks waiting for their timeout."""
    import atexit
    import sys
    atexit.register(_finish)
    previous = sys.excepthook

    def hook(kind, value, tb):
        try:
            previous(kind, value, tb)
            _abort_job(f"rank {_sd.rank} failed: {kind.__name__}: {value}")
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(1)

    sys.excepthook = hook


def _rendezvous(port):
    """Starts or finds the store, connects, and checks that all ranks agree."""
    if port == 0 and _sd.world_size > 1:
        if _sd.rank == 0:
            _sd.server = Server(0)
            port = _sd.server.py_server_port
        port = _bcast_int(port)
    elif _sd.rank == 0 and not _listening(_sd.master_ip, port):
        _sd.server = Server(port)
        port = _sd.server.py_server_port
    _sd.port = port
    if _sd.world_size == 1 and _sd.server is None and port == 0:
        _sd.server = Server(0)
        _sd.port = _sd.server.py_server_port
    _sd.client = Client(_sd.master_ip, _sd.port, timeout=_sd.timeout)
    _agree("world_size", _sd.world_size)
    _agree("backend", _sd.backend)


def _listening(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _bcast_int(value):
    """value of rank 0 on every rank, over the communicator."""
    import numpy as np
    from ..tensor import Tensor
    from ..functional.distributed import broadcast
    out = broadcast(Tensor(np.array([value], dtype=np.int32)), src=0, group=WORLD)
    return int(out.numpy()[0])


def _agree(name, value):
    """Every rank's value of name equals rank 0's, or every rank raises naming both."""
    key = f"init/{name}"
    if _sd.rank == 0:
        _sd.client.set(key, value)
    first = _sd.client.get(key, _sd.timeout)
    if first != value:
        msg = (f"init_process_group: rank {_sd.rank} has {name}={value!r} but rank 0 has "
               f"{name}={first!r}")
        _sd.client.abort(msg)
        raise DistError(msg)


def _seed_rank(seed):
    from .. import random as _random
    _sd.seed = rank_seed(seed, _sd.rank)
    _random.seed(_sd.seed)


def _close_store():
    if _sd.client is not None:
        _sd.client.close()
        _sd.client = None
    if _sd.server is not None:
        _sd.server.close()
        _sd.server = None


_FINISH_WAIT = 7 * 24 * 3600.0  # a rank may finish long before another (evaluation, saving)


def _finish():
    """Leaves the job cleanly: a barrier (rank 0's store lives until all are done), then the
    communicator's finalize. The barrier waits without a practical limit: a rank that fails
    instead aborts the store (``_abort_job``) and mpirun ends a rank that dies."""
    if not _sd.initialized:
        return
    try:
        _sd.client.barrier("finish", _sd.world_size, _FINISH_WAIT, _sd.rank)
    finally:
        _close_store()
        _comm().finalize()
        _sd.initialized = False


def _abort_job(message):
    """Tells every rank waiting on the store that this rank failed (best effort)."""
    if _sd.client is not None:
        try:
            _sd.client.abort(message)
        except Exception:  # the store may be gone with the job: nothing more to tell
            pass


def set_deterministic(on=True):
    """Deterministic mode: float sums add the ranks' values in a pairwise tree over the rank
    index, ``((x0 + x1) + (x2 + x3))``, on every rank, so a run is bitwise reproducible and all
    ranks hold the same bits; and gradients' sums over the batch axis (weight and bias
    gradients) become the same tree over the batch index, as with
    ``tianyuan.config.deterministic_kernel = True``. With a world size that is a power of two
    and divides the batch, data-parallel training then ends with the bits of one process
    training on the concatenated batch in this mode. Also switched on by
    ``tianyuan.config.deterministic_kernel = True`` before ``init_process_group``."""
    _comm().set_deterministic(bool(on))


def is_distributed():
    """Whether this process joined a group with init_process_group."""
    return _sd.initialized


def get_rank():
    """This process's rank in the world (0 before init_process_group)."""
    return _sd.rank


def get_world_size():
    """Processes in the world (1 before init_process_group)."""
    return _sd.world_size


def get_backend():
    """The communicator's backend ("mpi", "nccl", "self"), None before init."""
    return _sd.backend


def get_client():
    """The rendezvous store's :class:`Client` of this rank."""
    _need_init("get_client")
    return _sd.client


def get_mm_server_addr():
    _need_init("get_mm_server_addr")
    return _sd.master_ip, _sd.port


def get_py_server_addr():
    _need_init("get_py_server_addr")
    return _sd.master_ip, _sd.port


def get_local_device_id():
    return _sd.device


def _need_init(what):
    if not _sd.initialized:
        raise DistError(f"{what}: call dist.init_process_group first")


class Group:
    """A set of world ranks that run collectives together (MegEngine's ``Group``).

    ``WORLD`` is every rank. ``rank`` is this process's rank in the group (-1 outside it),
    ``size`` the group's size. Groups are made by :func:`new_group`, which every rank calls
    with the same list."""

    def __init__(self, proc_ranks=None):
        self.proc_ranks = None if proc_ranks is None else [int(r) for r in proc_ranks]
        self._id = 0 if proc_ranks is None else None
        self.stream = 0

    def _comm_id(self):
        if self._id is None:
            raise DistError("Group: make groups with dist.new_group(ranks)")
        return self._id

    @property
    def rank(self):
        if self.proc_ranks is None:
            return _sd.rank
        return self.proc_ranks.index(_sd.rank) if _sd.rank in self.proc_ranks else -1

    @property
    def size(self):
        return _sd.world_size if self.proc_ranks is None else len(self.proc_ranks)

    @property
    def key(self):
        ranks = range(_sd.world_size) if self.proc_ranks is None else self.proc_ranks
        return ",".join(str(r) for r in ranks)

    @property
    def comp_node(self):
        return f"{'gpu' if _sd.device_type in ('gpu', 'cuda') else 'cpu'}{_sd.device}"

    def check(self, other):
        return self.key == (other.key if isinstance(other, Group) else other)

    def __repr__(self):
        return f"Group({self.key})"


WORLD = Group(None)


def _as_group(group):
    return WORLD if group is None else group


def new_group(proc_ranks):
    """A group of the given world ranks; every rank of the job calls it with the same list."""
    ranks = [int(r) for r in proc_ranks]
    if not ranks or len(set(ranks)) != len(ranks):
        raise ValueError(f"new_group: ranks must be distinct and non-empty, got {ranks}")
    bad = [r for r in ranks if not 0 <= r < _sd.world_size]
    if bad:
        raise ValueError(f"new_group: ranks {bad} are not in the world of {_sd.world_size}")
    g = Group(ranks)
    g._id = _comm().new_group(ranks) if _sd.initialized else 0
    return g


def group_barrier(group=WORLD):
    """Returns once every rank of group has called it (or raises after the timeout)."""
    _comm().barrier(_as_group(group)._comm_id())


def group_start():
    """Starts a group of point-to-point messages (NCCL's ncclGroupStart, as MegEngine uses it):
    until the matching ``group_end``, ``remote_send`` and ``remote_recv`` only post their
    messages and return at once, so a rank may post its receives before its sends (two ranks
    exchanging tensors cannot deadlock). A ``remote_recv`` inside a group returns its tensor
    at once, and its values are defined only after the outermost ``group_end``, which waits
    for every message of the group (within the timeout). Inside a group, send/recv carry no
    gradients (a tracked tensor sent under a recording GradManager is refused) and cannot be
    traced; other collectives run as they are called. Groups nest: the outermost
    ``group_end`` completes them."""
    _sd.group_calls += 1


def group_end():
    """Ends a group (see group_start); the outermost one waits for its messages."""
    if _sd.group_calls == 0:
        raise DistError("group_end without group_start")
    _sd.group_calls -= 1
    if _sd.group_calls:
        return
    works, _sd.group_works = _sd.group_works, []
    refused = []
    for what, peer, work in works:          # in posting order: every rank's own order
        out = work.wait()
        if what == "flag" and int(out.numpy()[0]):
            refused.append(peer)
    if refused:
        raise DistError(f"group_end: rank(s) {refused} sent a tensor with a gradient to a "
                        f"remote_recv inside group_start/group_end (no gradient path there)")


def _in_p2p_group():
    return _sd.group_calls > 0


def _post(what, peer, work):
    _sd.group_works.append((what, peer, work))


_override = [None]  # the backend "auto" resolves to inside `with dist.backend(name):`


class backend:
    """``with dist.backend("mpi"):``-style override of the backend name that
    ``init_process_group(backend="auto")`` resolves to (MegEngine's override_backend)."""

    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.old = _override[0]
        _override[0] = self.name
        return self

    def __exit__(self, *exc):
        _override[0] = self.old


def override_backend(name):
    return backend(name)


def synchronized(func):
    """Decorator: every rank finishes func before any returns (a barrier after it)."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        out = func(*args, **kwargs)
        if _sd.initialized:
            group_barrier()
        return out
    return wrapper

