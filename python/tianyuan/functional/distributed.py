"""Collectives between the ranks of a process group (MegEngine's
``megengine.functional.distributed``).

Each collective applies one communicator op of the op table (``dist_all_reduce`` ...), so
gradients flow through it (the gradient of an all-reduce sum is an all-reduce sum of the
output gradients, of a broadcast a reduce to the root, of an all-gather a reduce-scatter...)
and ``jit.trace`` records and replays it like any op. Outside a process group a collective
acts on a world of one: it returns (a copy of) its input.

``remote_send`` / ``remote_recv`` are the exception: each message is preceded by a one-element
flag saying whether the sent value carries a gradient, and the gradient exchange runs through
``autodiff.Function`` wrappers, which ``jit.trace`` cannot record (a TraceError names
``remote_send``). Between ``tianyuan.distributed.group_start()`` and ``group_end()`` they
only post their messages (no gradients, not traceable): see ``group_start``.

``group`` is a :class:`tianyuan.distributed.Group` (default ``WORLD``); ranks below are ranks
in that group. ``device`` is accepted for MegEngine compatibility (tensors stay where they are).
"""
import numpy as np

from .. import _C
from ..autodiff.function import Function
from ..tensor import Tensor

__all__ = ["all_reduce_sum", "all_reduce_max", "all_reduce_min", "broadcast", "all_gather",
           "reduce_scatter_sum", "reduce_sum", "gather", "scatter", "all_to_all",
           "remote_send", "remote_recv", "collective_comm", "sync_batch_norm"]

_SUM, _MAX, _MIN = 0, 1, 2


def _group(group):
    from ..distributed.group import WORLD, _as_group
    return _as_group(WORLD if group is None else group)


def _gid(group):
    return _group(group)._comm_id()


def _tensor(inp, name):
    if not isinstance(inp, _C.TensorBase):
        inp = Tensor(inp)
    return inp


def _op(name):
    try:
        return _C.ops[name]
    except KeyError:
        raise NotImplementedError(f"{name}: this build has no communicator ops") from None


def _to_front(x, axis):
    """x with axis moved to the front, and the permutation that undoes it."""
    axis = axis % x.ndim if x.ndim else 0
    if axis == 0:
        return x, None
    perm = [axis] + [i for i in range(x.ndim) if i != axis]
    inv = [0] * x.ndim
    for i, p in enumerate(perm):
        inv[p] = i
    return x.transpose(perm), inv


def _back(x, inv):
    return x if inv is None else x.transpose(inv)


def all_reduce_sum(inp, group=None, device=None):
    """The element-wise sum of inp over the ranks of group, on every rank."""
    return _op("dist_all_reduce")(_tensor(inp, "all_reduce_sum"), mode=_SUM, group=_gid(group))


def all_reduce_max(inp, group=None, device=None):
    """The element-wise maximum of inp over the ranks of group, on every rank."""
    return _op("dist_all_reduce")(_tensor(inp, "all_reduce_max"), mode=_MAX, group=_gid(group))


def all_reduce_min(inp, group=None, device=None):
    """The element-wise minimum of inp over the ranks of group, on every rank."""
    return _op("dist_all_reduce")(_tensor(inp, "all_reduce_min"), mode=_MIN, group=_gid(group))


def broadcast(inp, group=None, device=None, src=0):
    """Rank ``src``'s (default 0) inp on every rank."""
    return _op("dist_broadcast")(_tensor(inp, "broadcast"), root=int(src), group=_gid(group))


def all_gather(inp, group=None, device=None, axis=0):
    """The ranks' inp concatenated along axis (rank order), on every rank."""
    x, inv = _to_front(_tensor(inp, "all_gather"), axis)
    return _back(_op("dist_all_gather")(x, group=_gid(group)), inv)


def reduce_scatter_sum(inp, group=None, device=None, axis=0):
    """The sum over ranks of inp, split along axis in group-size blocks: block r on rank r."""
    x, inv = _to_front(_tensor(inp, "reduce_scatter_sum"), axis)
    _check_divisible("reduce_scatter_sum", x, _group(group).size, axis)
    return _back(_op("dist_reduce_scatter")(x, mode=_SUM, group=_gid(group)), inv)


def reduce_sum(inp, group=None, device=None):
    """The sum of inp over the ranks, on rank 0; the other ranks get None."""
    out = _op("dist_reduce")(_tensor(inp, "reduce_sum"), mode=_SUM, root=0, group=_gid(group))
    return out if _group(group).rank == 0 else None


def gather(inp, group=None, device=None, axis=0):
    """The ranks' inp concatenated along axis, on rank 0; the other ranks get None."""
    x, inv = _to_front(_tensor(inp, "gather"), axis)
    out = _op("dist_gather")(x, root=0, group=_gid(group))
    return _back(out, inv) if _group(group).rank == 0 else None


def scatter(inp, group=None, device=None, axis=0):
    """Rank 0's inp split along axis in group-size blocks: block r to rank r (the other ranks'
    inp gives only the shape and dtype)."""
    x, inv = _to_front(_tensor(inp, "scatter"), axis)
    _check_divisible("scatter", x, _group(group).size, axis)
    return _back(_op("dist_scatter")(x, root=0, group=_gid(group)), inv)


def all_to_all(inp, group=None, device=None, split_axis=0, concat_axis=0):
    """inp split along split_axis in group-size blocks, block j sent to rank j; the blocks
    received are concatenated along concat_axis in rank order."""
    x = _tensor(inp, "all_to_all")
    size = _group(group).size
    _check_divisible("all_to_all", x, size, split_axis)
    xf, inv = _to_front(x, split_axis)
    out = _back(_op("dist_all_to_all")(xf, group=_gid(group)), inv)
    if concat_axis % max(x.ndim, 1) == split_axis % max(x.ndim, 1):
        return out
    from . import concat, split
    return concat(split(out, size, axis=split_axis), axis=concat_axis)


def remote_send(inp, dest_rank, group=None):
    """Sends inp to rank dest_rank (which calls remote_recv); returns an empty tensor.

    When a GradManager records and inp is tracked, the result carries inp's gradient:
    backward through it (``gm.backward(remote_send(x, 1))``) receives from dest_rank the
    gradient of the tensor received there and accumulates it into inp's."""
    inp = _tensor(inp, "remote_send")
    if _in_p2p_group():
        return _group_send(inp, dest_rank, group)
    with_grad = _C.is_recording() and inp._tracked and not _tracing()
    # tells the receiver whether to send a gradient back (MegEngine exchanges this too)
    _send(Tensor(np.array([int(with_grad)], np.int32)), dest_rank, group)
    if with_grad:
        return _RemoteSend(dest_rank, group)(inp)
    out = _send(inp, dest_rank, group)
    if _C.is_recording() and inp._tracked:
        # a trace would record the forward op but not the gradient exchange; the message
        # went out, so the receiver goes on (without sending a gradient back)
        from ..jit.tracing import TraceError
        raise TraceError("remote_send: gradients through remote_send / remote_recv cannot "
                         "be traced; send outside jit.trace or outside a GradManager")
    return out


def remote_recv(src_rank, shape=None, dtype=None, device=None, inp=None, group=None):
    """Receives a tensor of the given shape and dtype (or inp's) from rank src_rank.

    When a GradManager records here and the sender's input carried gradients, backward
    through the result sends its gradient back to src_rank (see remote_send)."""
    from .. import dtype as _dt
    if inp is not None:
        shape, dtype = tuple(inp.shape), inp.dtype
    if shape is None:
        raise ValueError("remote_recv: give shape (and dtype) or inp")
    shape, code = [int(d) for d in shape], _dt.code_of(dtype or "float32")
    if _in_p2p_group():
        return _group_recv(src_rank, shape, code, group)
    flag = _recv(src_rank, [1], _dt.code_of("int32"), group)
    if not _C.is_recording() or _tracing() or not int(flag.numpy()[0]):
        return _recv(src_rank, shape, code, group)
    return _RemoteRecv(src_rank, shape, code, group)(_grad_anchor())


def _in_p2p_group():
    from ..distributed.group import _in_p2p_group as in_group
    return in_group()


def _refuse_in_group(name):
    if _tracing():
        from ..jit.tracing import TraceError
        raise TraceError(f"{name}: send/recv inside group_start/group_end cannot be traced")


def _group_send(inp, dest_rank, group):
    """remote_send inside group_start/group_end: the flag (no gradient) and the message are
    posted; group_end waits for them."""
    from ..distributed.group import _post
    _refuse_in_group("remote_send")
    if _C.is_recording() and inp._tracked:
        raise ValueError("remote_send: inside group_start/group_end send/recv carry no "
                         "gradient; send a detached tensor or leave the group")
    peer, gid = int(dest_rank), _gid(group)
    flag = Tensor(np.zeros(1, np.int32))
    _post("send", peer, _C._dist_send_start(flag, peer, gid))
    _post("send", peer, _C._dist_send_start(inp, peer, gid))
    return Tensor(np.zeros(0, np.dtype(inp.dtype)))


def _group_recv(src_rank, shape, code, group):
    """remote_recv inside group_start/group_end: both receives are posted; the tensor's values
    are there after group_end."""
    from ..distributed.group import _post
    from .. import dtype as _dt
    _refuse_in_group("remote_recv")
    peer, gid = int(src_rank), _gid(group)
    _post("flag", peer, _C._dist_recv_start([1], _dt.code_of("int32"), peer, gid))
    work = _C._dist_recv_start(shape, code, peer, gid)
    _post("recv", peer, work)
    return work.tensor()


def _send(x, dest_rank, group):
    return _op("dist_send")(x, peer=int(dest_rank), group=_gid(group))


def _recv(src_rank, shape, code, group):
    return _op("dist_recv")(peer=int(src_rank), shape=shape, dtype=code, group=_gid(group))


def _grad_anchor():
    """A tracked scalar attached to every recording GradManager, the input of a
    remote_recv: a received tensor has no input of its own, and a GradManager runs only the
    backward of ops between its attached tensors and the loss (MegEngine attaches such a
    dummy input too). Kept alive by the recv's backward node only, so it detaches itself
    (GradManager holds weak references) once the graph is freed."""
    from ..autodiff.grad_manager import _recording_managers
    anchor = Tensor(0.0)
    for gm in _recording_managers:
        gm.attach(anchor)
    return anchor


class _RemoteSend(Function):
    def __init__(self, dest_rank, group):
        self.dest_rank, self.group = dest_rank, group

    def forward(self, x):
        from .. import dtype as _dt
        self.shape, self.code = list(x.shape), _dt.code_of(x.dtype)
        return _send(x, self.dest_rank, self.group)

    def backward(self, _dy):
        return _recv(self.dest_rank, self.shape, self.code, self.group)


class _RemoteRecv(Function):
    def __init__(self, src_rank, shape, code, group):
        self.src_rank, self.shape, self.code, self.group = src_rank, shape, code, group

    def forward(self, anchor):
        self.anchor = anchor  # keeps it attached while the graph lives
        out = _recv(self.src_rank, self.shape, self.code, self.group)
        self.dtype = out.dtype
        return out

    def backward(self, dz):
        if dz is None:  # the peer waits for a gradient all the same
            from . import zeros
            dz = zeros(self.shape, dtype=self.dtype)
        _send(dz, self.src_rank, self.group)
        return None


_MODES = {"all_reduce_sum": all_reduce_sum, "all_reduce_max": all_reduce_max,
          "all_reduce_min": all_reduce_min, "broadcast": broadcast, "all_gather": all_gather,
          "reduce_scatter_sum": reduce_scatter_sum, "reduce_sum": reduce_sum,
          "gather": gather, "scatter": scatter, "all_to_all": all_to_all}


def collective_comm(inp, mode, group=None, device=None):
    """The collective named by mode ("all_reduce_sum", "broadcast", ... or MegEngine's
    ``CollectiveComm.Mode`` names such as "ALL_REDUCE_SUM")."""
    key = str(getattr(mode, "name", mode)).lower()
    if key not in _MODES:
        raise ValueError(f"collective_comm: unknown mode {mode!r}; one of {sorted(_MODES)}")
    return _MODES[key](inp, group, device)


def _check_divisible(name, x, size, axis):
    n = x.shape[axis] if x.ndim else 1
    if n % size:
        raise ValueError(f"{name}: axis {axis} of shape {tuple(x.shape)} does not split into "
                         f"{size} equal blocks")


class _Done:
    def __init__(self, value):
        self.value = value

    def wait(self):
        return self.value


def _all_reduce_sum_start(inp, group=None):
    """Starts an all-reduce sum; returns a handle whose wait() gives the result. Runs
    asynchronously when the communicator offers it and no trace is recording or replaying
    (a trace records the plain op); else at once."""
    from ..distributed import _comm
    start = getattr(_comm, "all_reduce_async", None)
    if start is not None and not _tracing():
        return start(inp, mode="sum", group=_gid(group))
    return _Done(all_reduce_sum(inp, group))


def _tracing():
    from ..jit.tracing import _is_tracing
    return _is_tracing()


def sync_batch_norm(inp, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.9, eps=1e-5, eps_mode="additive", group=None):
    """Batch normalisation whose batch statistics are those of the whole group's batch (the
    ranks' per-channel sums and sums of squared deviations all-reduced), otherwise
    :func:`batch_norm`'s."""
    from ._sync_bn import sync_batch_norm as impl
    return impl(inp, running_mean, running_var, weight, bias, training, momentum, eps,
                eps_mode, group)
