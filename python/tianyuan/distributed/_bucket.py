"""Gradient buckets for data-parallel training (DDP-style), independent of the communicator.

Parameters are grouped into buckets in reverse order of use: the last parameters a forward pass
uses get their gradients first in backward, so they fill the first bucket. A bucket holds
parameters of one dtype and closes once it reaches ``bucket_bytes``. Every rank derives the same
plan from the same parameter list, and buckets are started strictly in plan order, so every
rank issues the same collectives in the same order.

:class:`BucketReducer` takes gradients as they become ready and starts a bucket's reduction
the moment all of its gradients (and those of every earlier bucket) are in; ``finish`` starts
what is left and waits for all. ``max_in_flight`` counts how many bucket reductions were
running at once (the overlap the reducer achieved).
"""
import numpy as np

DEFAULT_BUCKET_BYTES = 25 << 20


def plan_buckets(nbytes, dtypes, bucket_bytes=DEFAULT_BUCKET_BYTES):
    """Buckets as lists of positions into the given (already reverse-use-ordered) lists.

    nbytes[i], dtypes[i]: size and dtype of parameter i. A bucket ends when the next parameter
    has another dtype or when the bucket reached bucket_bytes (so a parameter larger than
    bucket_bytes is a bucket by itself)."""
    if bucket_bytes <= 0:
        raise ValueError(f"bucket size must be positive, got {bucket_bytes}")
    buckets, cur, cur_bytes, cur_dtype = [], [], 0, None
    for i, (n, dt) in enumerate(zip(nbytes, dtypes)):
        if cur and (dt != cur_dtype or cur_bytes >= bucket_bytes):
            buckets.append(cur)
            cur, cur_bytes = [], 0
        cur.append(i)
        cur_bytes += int(n)
        cur_dtype = dt
    if cur:
        buckets.append(cur)
    return buckets


class BucketReducer:
    """Reduces gradients bucket by bucket for one backward pass.

    keys: the parameters' identities in reverse order of use; nbytes/dtypes as plan_buckets.
    start(bucket_index, grads) -> handle starts a bucket's reduction (grads in bucket order,
    a zero-filler stands for a parameter without gradient: see ``missing``); wait(handle) ->
    reduced grads (same order)."""

    def __init__(self, keys, nbytes, dtypes, start, wait, missing, bucket_bytes):
        self.keys = list(keys)
        self.pos = {k: i for i, k in enumerate(self.keys)}
        self.buckets = plan_buckets(nbytes, dtypes, bucket_bytes)
        self.bucket_of = {i: b for b, idx in enumerate(self.buckets) for i in idx}
        self._start, self._wait, self._missing = start, wait, missing
        self.max_in_flight = 0
        self.reset()

    def reset(self):
        self.grads = {}
        self.handles = []        # (bucket index, handle), in start order
        self.next_bucket = 0
        self.results = {}
        self.in_flight = 0

    def add(self, key, grad):
        """Gradient of parameter key is ready; starts every bucket that became complete."""
        if key not in self.pos:
            raise KeyError("gradient of a parameter the reducer was not planned for")
        self.grads[self.pos[key]] = grad
        while self.next_bucket < len(self.buckets) and all(
                i in self.grads for i in self.buckets[self.next_bucket]):
            self._launch(self.next_bucket)

    def _launch(self, b):
        grads = [self.grads[i] if i in self.grads else self._missing(i)
                 for i in self.buckets[b]]
        self.handles.append((b, self._start(b, grads)))
        self.next_bucket = b + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def finish(self):
        """Starts the remaining buckets (in order) and waits for all; returns {key: grad}."""
        while self.next_bucket < len(self.buckets):
            self._launch(self.next_bucket)
        out = {}
        for b, h in self.handles:
            reduced = self._wait(h)
            self.in_flight -= 1
            for i, g in zip(self.buckets[b], reduced):
                if i in self.grads:
                    out[self.keys[i]] = g
        self.reset()
        return out


def dtype_nbytes(shape, dtype):
    return int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
