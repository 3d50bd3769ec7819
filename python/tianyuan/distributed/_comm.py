"""The communicator, as tianyuan.distributed builds on it (C: include/tianyuan/dist.h).

Process state
-------------
``init(backend="mpi", timeout_s=300.0)``
    Joins the job. ``"mpi"``: started by ``mpirun`` (or any MPI launcher: Slurm's ``srun``);
    Open MPI's ``libmpi.so.40`` is loaded at this call (``TY_MPI_LIBRARY`` names another
    file). ``"nccl"``: GPUs (raises ``NotImplementedError("... NCCL not available ...")`` where
    there is no NCCL or no GPU backend). ``"self"``: a world of one, no engine. ``timeout_s``
    is the default timeout of every collective. Raises ``ValueError`` when already
    initialised, ``NotImplementedError`` when the engine cannot be loaded. MPI cannot start
    again in a process after ``finalize``.
``is_initialized()``, ``backend()`` (``"none"`` before init), ``finalize()``
``rank(group=0)`` / ``size(group=0)``
    Before ``init`` the process is a world of one: rank 0, size 1, and every collective is a
    local copy (MegEngine's get_rank/get_world_size say the same). ``rank`` is -1 in a group
    this process is not a member of.
``new_group(ranks) -> int``
    A group of the given world ranks (numbered in the list's order); 0 is the world. Every
    rank of the world calls it with the same list (non-members get an id where they are not a
    member); the ranks compare their lists first, so a rank that passes another list raises
    ``ValueError`` naming it, and one that never calls makes the others raise
    ``TimeoutError``. At most 64 groups at once.
``barrier(group=0)``
``set_timeout(seconds)``, ``timeout()``
``set_deterministic(on)``, ``is_deterministic()``
    Deterministic mode: float sums combine the ranks' values in a pairwise tree over the rank
    index, ``((x0 + x1) + (x2 + x3))``, on every rank (through a gather), so results are
    bitwise reproducible and equal on every rank. Gradients' sums over the batch axis become
    the same tree over the batch index in this mode (``src/ops/batch_tree.h``).
``abort(code=1)``: ends every process of the job (MPI_Abort).

Asynchronous all_reduce (gradient buckets)
------------------------------------------
``all_reduce_async(x, mode="sum", group=0) -> work``
    Starts an all_reduce of a copy of ``x`` and returns at once; ``work.test()`` says whether
    it finished, ``work.wait(timeout_s=0)`` returns the result tensor (``timeout_s <= 0``: the
    default timeout; ``TimeoutError`` past it). Several may be in flight; every rank must
    start them in the same order. Eager only: it bypasses the dispatcher, so autodiff and
    ``jit.trace`` do not see it (inside a trace, use the ``dist_all_reduce`` op). Dropping an
    unfinished work breaks the communicator.
``stats(reset_peak=False) -> {"started", "in_flight", "peak_in_flight"}``
    Counters of this process's collectives: ``in_flight`` counts works started on the engine
    and not yet seen finished (by ``test``/``wait``); ``peak_in_flight`` is the most at once
    since the last reset.

Failures
--------
A collective waiting past the timeout raises ``TimeoutError`` whose message names the
collective, the group and (send/recv) the peer rank, e.g. ``"dist_all_reduce: all_reduce:
timed out after 10 s waiting for the other ranks of group 0 (4 ranks; this is rank 0)"``. A
failed peer raises ``OSError`` (``"... MPI failed (a rank may have died) ..."``); when mpirun
sees a rank die it usually ends the whole job first. After either, the communicator is broken:
every later collective raises at once with the first error, ``finalize`` does not wait for the
other ranks, and the recovery is to end the job (``abort`` or exit non-zero) and restart from a
checkpoint.

Collective ops
--------------
The collectives are ops of the op table, called as ``_C.ops[name](x, **params)``, so they go
through the dispatcher: autodiff records them (gradients below), ``jit.trace`` records and
replays them. Every rank of the group must apply the same ops in the same order, backward
included. Output shapes are the same on every rank; ``mode`` is 0 sum, 1 max, 2 min; ``group``
defaults to 0 (the world); ``root``/``peer`` are ranks in the group.

===================  =====================================  ===================================
op                   params                                 result (gradient)
===================  =====================================  ===================================
dist_all_reduce      mode=0, group=0                        reduction of x over the ranks
                                                            (sum: all_reduce sum of g; max/min:
                                                            that where x equals the result)
dist_broadcast       root=0, group=0                        root's x (reduce sum of g to root)
dist_all_gather      group=0                                the ranks' x concatenated on axis 0;
                                                            0-d x gives shape (size,)
                                                            (reduce_scatter sum of g)
dist_reduce_scatter  mode=0, group=0                        block r (axis 0 in size blocks) of
                                                            the reduction, on rank r
                                                            (all_gather of g)
dist_reduce          root=0, mode=0, group=0                the reduction on root, zeros
                                                            elsewhere (broadcast of root's g)
dist_gather          root=0, group=0                        all_gather's result on root, zeros
                                                            elsewhere (scatter of root's g)
dist_scatter         root=0, group=0                        block r of root's x on rank r
                                                            (gather of g to root)
dist_all_to_all      group=0                                block j of rank i's x becomes block
                                                            i of rank j's (all_to_all of g)
dist_send            peer=0, group=0                        sends x; returns an empty (0,)
                                                            tensor of x's dtype (no gradient)
dist_recv            peer=0, shape=(), dtype=code, group=0  no inputs; what peer sent (no
                                                            gradient)
===================  =====================================  ===================================

The functions below call those ops with MegEngine-style arguments (``mode`` as "sum", "max"
or "min"; ``dtype`` as a name).
"""
from .. import _C
from .. import dtype as _dt

MODES = {"sum": 0, "max": 1, "min": 2}


def init(backend="mpi", timeout_s=300.0):
    _C._dist_init(str(backend), float(timeout_s))


def is_initialized():
    return _C._dist_state()["initialized"]


def backend():
    return _C._dist_state()["backend"]


def finalize():
    _C._dist_finalize()


def rank(group=0):
    return _C._dist_rank_size(int(group))[0]


def size(group=0):
    return _C._dist_rank_size(int(group))[1]


def new_group(ranks):
    return _C._dist_new_group([int(r) for r in ranks])


def barrier(group=0):
    _C._dist_barrier(int(group))


def set_timeout(seconds):
    _C._dist_set_timeout(float(seconds))


def timeout():
    return _C._dist_state()["timeout"]


def set_deterministic(on):
    _C._dist_set_deterministic(bool(on))


def is_deterministic():
    return _C._dist_state()["deterministic"]


def abort(code=1):
    _C._dist_abort(int(code))


def all_reduce_async(x, mode="sum", group=0):
    return _C._dist_all_reduce_start(x, _mode(mode), int(group))


def stats(reset_peak=False):
    return _C._dist_stats(bool(reset_peak))


def _mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    return MODES[mode]


def all_reduce(x, mode="sum", group=0):
    return _C.ops["dist_all_reduce"](x, mode=_mode(mode), group=group)


def broadcast(x, root=0, group=0):
    return _C.ops["dist_broadcast"](x, root=root, group=group)


def all_gather(x, group=0):
    return _C.ops["dist_all_gather"](x, group=group)


def reduce_scatter(x, mode="sum", group=0):
    return _C.ops["dist_reduce_scatter"](x, mode=_mode(mode), group=group)


def reduce(x, root=0, mode="sum", group=0):
    return _C.ops["dist_reduce"](x, root=root, mode=_mode(mode), group=group)


def gather(x, root=0, group=0):
    return _C.ops["dist_gather"](x, root=root, group=group)


def scatter(x, root=0, group=0):
    return _C.ops["dist_scatter"](x, root=root, group=group)


def all_to_all(x, group=0):
    return _C.ops["dist_all_to_all"](x, group=group)


def send(x, peer, group=0):
    return _C.ops["dist_send"](x, peer=peer, group=group)


def recv(shape, dtype, peer, group=0):
    return _C.ops["dist_recv"](peer=peer, shape=list(shape), dtype=_dt.code_of(dtype),
                               group=group)
