"""Data-parallel helpers: ``bcast_list_``, ``make_allreduce_cb``, ``AllreduceCallback``."""
import numpy as np

from . import _bucket
from .group import WORLD, _as_group

__all__ = ["bcast_list_", "make_allreduce_cb", "AllreduceCallback", "param_pack_split",
           "param_pack_concat", "pack_allreduce_split"]


def bcast_list_(inps, group=WORLD):
    """Overwrites every tensor of inps with rank 0's value (in place), e.g. the parameters
    right after building the model, so all ranks start equal."""
    from ..functional.distributed import broadcast
    group = _as_group(group)
    if group.size == 1:
        return
    for t in inps:
        t._assign(broadcast(t.detach(), group))


def param_pack_concat(inps, offsets=None, offsets_val=None):
    """The tensors flattened and concatenated into one 1-D tensor."""
    from .. import functional as F
    flat = [t.reshape(-1) for t in inps]
    return flat[0] if len(flat) == 1 else F.concat(flat)


def param_pack_split(inp, offsets, shapes):
    """Inverse of param_pack_concat: pieces of the 1-D inp shaped as shapes."""
    out = []
    for (lo, hi), shape in zip(zip(offsets[0::2], offsets[1::2]), shapes):
        out.append(inp[lo:hi].reshape(shape))
    return out


def _offsets(shapes):
    offs, pos = [], 0
    for s in shapes:
        n = int(np.prod(s, dtype=np.int64))
        offs += [pos, pos + n]
        pos += n
    return offs


def pack_allreduce_split(grads, group=WORLD, reduce_method="sum"):
    """All-reduces grads as one packed tensor; returns them reduced (mean: divided by size)."""
    from ..functional.distributed import all_reduce_sum
    shapes = [tuple(g.shape) for g in grads]
    packed = param_pack_concat(grads)
    out = all_reduce_sum(packed, group)
    if reduce_method == "mean":
        out = out / _as_group(group).size
    return param_pack_split(out, _offsets(shapes), shapes)


class _Future:
    """A gradient that the after-backward flush fills in (GradManager resolves it)."""
    _ty_future = True

    def __init__(self):
        self.value = None

    def get(self):
        if self.value is None:
            raise RuntimeError("allreduce callback: a gradient was not reduced (the flush "
                               "after backward did not run)")
        return self.value


class AllreduceCallback:
    """GradManager callback reducing gradients across ranks (MegEngine's AllreduceCallback).

    Gradients are packed into buckets of ``bucket_size`` bytes (default 25 MiB; env
    ``TY_DIST_BUCKET_BYTES``) in reverse order of use; a bucket's all-reduce starts as soon as
    its gradients are in, asynchronously where the communicator allows it (eager mode), and
    buckets start in the same order on every rank. ``reduce_method`` "mean" divides the sum by
    the group size. With the communicator's deterministic mode the sum adds ranks' values in
    a fixed pairwise tree, so a run is bitwise reproducible (and, for a power-of-two world,
    equal to one process on the concatenated batch: see ``set_deterministic``)."""

    def __init__(self, reduce_method="mean", group=WORLD, backend=None, bucket_size=None):
        method = str(reduce_method).lower()
        if method not in ("sum", "mean"):
            raise ValueError(f"make_allreduce_cb: reduce_method must be 'sum' or 'mean', got "
                             f"{reduce_method!r}")
        self._method = method
        self._group = _as_group(group)
        if bucket_size is None:
            import os
            bucket_size = int(os.environ.get("TY_DIST_BUCKET_BYTES", _bucket.DEFAULT_BUCKET_BYTES))
        self._bucket_bytes = int(bucket_size)
        self._reducer = None
        self._plan_keys = None
        self._futures = {}
        self.max_in_flight = 0   # most bucket reductions running at once (last backward)
        self.buckets_started = 0

    # --- planning ---
    def _make_reducer(self, gm):
        params = list(reversed(gm.attached_tensors()))   # reverse order of use
        keys = [id(p) for p in params]
        shapes = [tuple(p.shape) for p in params]
        dtypes = [np.dtype(p.dtype) for p in params]
        nbytes = [_bucket.dtype_nbytes(s, d) for s, d in zip(shapes, dtypes)]

        def missing(i):
            from .. import functional as F
            return F.zeros(shapes[i], dtype=dtypes[i])

        self._reducer = _bucket.BucketReducer(keys, nbytes, dtypes, self._start, self._wait,
                                              missing, self._bucket_bytes)
        self._plan_keys = keys

    def _start(self, b, grads):
        self.buckets_started += 1
        shapes = [tuple(g.shape) for g in grads]
        packed = param_pack_concat(grads)
        from ..functional import distributed as fd
        work = fd._all_reduce_sum_start(packed, self._group)
        return work, shapes

    def _wait(self, handle):
        work, shapes = handle
        out = work.wait()
        if self._method == "mean":
            out = out / self._group.size
        return param_pack_split(out, _offsets(shapes), shapes)

    # --- GradManager protocol ---
    def __call__(self, param, grad):
        if self._group.size == 1:
            return grad
        from ..autodiff.grad_manager import get_backward_gm
        gm = get_backward_gm()
        if gm is None:
            raise RuntimeError("allreduce callback: call it from GradManager.backward")
        if not self._futures:   # the first gradient of this backward: check the plan
            keys = [id(p) for p in reversed(gm.attached_tensors())]
            if self._reducer is None or keys != self._plan_keys:
                self._make_reducer(gm)
            gm._register_after_backward_callback(self._flush)
        fut = self._futures[id(param)] = _Future()
        self._reducer.add(id(param), grad)
        return fut

    def _flush(self):
        reduced = self._reducer.finish()
        self.max_in_flight = self._reducer.max_in_flight
        self._reducer.max_in_flight = 0
        for key, fut in self._futures.items():
            fut.value = reduced[key]
        self._futures = {}


def make_allreduce_cb(reduce_method="mean", group=WORLD, backend=None, bucket_size=None):
    """A GradManager callback that all-reduces gradients ("mean" or "sum") across group:
    ``GradManager().attach(params, callbacks=dist.make_allreduce_cb("mean"))``."""
    return AllreduceCallback(reduce_method, group, backend, bucket_size)
