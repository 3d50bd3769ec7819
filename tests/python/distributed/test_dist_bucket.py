"""Gradient bucketing (tianyuan.distributed._bucket) without a communicator: the plan, the
start order, the start-as-soon-as-complete rule and the in-flight count."""
import numpy as np
import pytest

from tianyuan.distributed._bucket import BucketReducer, plan_buckets


def test_plan_splits_on_size_and_dtype():
    f4, f2 = np.dtype("float32"), np.dtype("float16")
    assert plan_buckets([40, 40, 40, 40], [f4] * 4, 80) == [[0, 1], [2, 3]]
    assert plan_buckets([40, 40, 40], [f4, f2, f2], 1000) == [[0], [1, 2]]
    assert plan_buckets([500, 10, 10], [f4] * 3, 100) == [[0], [1, 2]]
    assert plan_buckets([], [], 10) == []
    with pytest.raises(ValueError):
        plan_buckets([1], [f4], 0)


def _reducer(n, bucket_bytes, log):
    keys = [f"p{i}" for i in range(n)]

    def start(b, grads):
        log.append(("start", b, list(grads)))
        return b, grads

    def wait(h):
        b, grads = h
        log.append(("wait", b))
        return [g * 10 for g in grads]

    return BucketReducer(keys, [4] * n, [np.dtype("float32")] * n, start, wait,
                         lambda i: 0, bucket_bytes)


def test_buckets_start_when_complete_in_plan_order():
    log = []
    r = _reducer(5, 8, log)                     # buckets [0,1] [2,3] [4]
    assert r.buckets == [[0, 1], [2, 3], [4]]
    r.add("p0", 1)
    assert log == []
    r.add("p1", 2)
    assert log == [("start", 0, [1, 2])]        # bucket 0 started as soon as complete
    r.add("p3", 4)                               # bucket 1 not complete yet
    r.add("p4", 5)                               # bucket 2 complete but must wait for 1
    assert len(log) == 1
    r.add("p2", 3)
    assert [e[:2] for e in log] == [("start", 0), ("start", 1), ("start", 2)]
    assert r.max_in_flight == 3
    out = r.finish()
    assert out == {"p0": 10, "p1": 20, "p2": 30, "p3": 40, "p4": 50}
    assert [e for e in log if e[0] == "wait"] == [("wait", 0), ("wait", 1), ("wait", 2)]


def test_missing_gradients_are_filled_and_not_returned():
    log = []
    r = _reducer(3, 8, log)                     # buckets [0,1] [2]
    r.add("p0", 1)
    r.add("p2", 3)
    out = r.finish()                             # p1 never got a gradient
    assert ("start", 0, [1, 0]) in log           # the filler keeps the bucket's layout
    assert out == {"p0": 10, "p2": 30}
    r.add("p0", 2)                               # the reducer is ready for the next backward
    r.add("p1", 2)
    assert log[-1] == ("start", 0, [2, 2])


def test_unknown_parameter_is_refused():
    r = _reducer(2, 8, [])
    with pytest.raises(KeyError):
        r.add("nope", 1)
