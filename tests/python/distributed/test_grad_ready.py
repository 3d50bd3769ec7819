"""Gradient callbacks run while backward goes on (what lets make_allreduce_cb overlap the
backward pass): GradManager calls a target's callbacks once, as soon as its gradient is final,
through backward's on_ready notification. Single process, no MPI."""
import numpy as np
import pytest

import tianyuan as ty
from tianyuan import _C
from tianyuan.autodiff import Function, GradManager
from tianyuan.jit import trace


class Probe(Function):
    """Identity whose backward writes an event: it runs in the middle of backward."""

    def __init__(self, log):
        self.log = log

    def forward(self, x):
        return x * 1.0

    def backward(self, dy):
        self.log.append("probe")
        return dy


def _params():
    w1 = ty.Parameter(np.arange(1.0, 4.0, dtype=np.float32))
    w2 = ty.Parameter(np.array([0.5, -1.0, 2.0], dtype=np.float32))
    unused = ty.Parameter(np.ones(2, dtype=np.float32))
    return w1, w2, unused


def _loss(w1, w2, x, log):
    # w2 is used last: its gradient is final before Probe's backward runs; w1 gets two
    # contributions (through Probe and directly), so it is final only after Probe
    return (Probe(log)(w1 * x) * w2 + w1 * w1).sum()


def _recording_cb(log, seen):
    def cb(t, g):
        log.append(t.name)
        seen.setdefault(t.name, []).append(g.numpy().copy())
        return g
    return cb


def test_callbacks_fire_once_with_the_final_gradient_during_backward():
    w1, w2, unused = _params()
    w1.name, w2.name, unused.name = "w1", "w2", "unused"
    x = ty.tensor(np.array([2.0, 3.0, 4.0], dtype=np.float32))
    log, seen = [], {}
    gm = GradManager().attach([w1, w2, unused], callbacks=_recording_cb(log, seen))
    with gm:
        gm.backward(_loss(w1, w2, x, log))
    # w2 before the probe (during backward), w1 after it; the unused parameter never
    assert log == ["w2", "probe", "w1"]
    assert {k: len(v) for k, v in seen.items()} == {"w1": 1, "w2": 1}
    xs, w1v, w2v = x.numpy(), w1.numpy(), w2.numpy()
    np.testing.assert_array_equal(seen["w2"][0], w1v * xs)
    np.testing.assert_array_equal(seen["w1"][0], xs * w2v + 2 * w1v)
    # the callbacks' gradients are those accumulated into .grad
    np.testing.assert_array_equal(w1.grad.numpy(), seen["w1"][0])
    np.testing.assert_array_equal(w2.grad.numpy(), seen["w2"][0])
    assert unused.grad is None


def test_on_ready_fires_once_per_target_with_the_returned_gradient():
    w1, w2, unused = _params()
    x = ty.tensor(np.array([2.0, 3.0, 4.0], dtype=np.float32))
    gm = GradManager().attach([w1, w2, unused])
    calls = []
    with gm:
        loss = _loss(w1, w2, x, [])
        grads = _C.backward([loss], [None], [w1, w2, unused], False, False,
                            lambda j, g: calls.append((j, g)))
    assert sorted(j for j, _ in calls) == [0, 1, 2]
    by_j = dict(calls)
    assert by_j[2] is None and grads[2] is None       # a target nothing feeds: None, once
    for j in (0, 1):
        np.testing.assert_array_equal(by_j[j].numpy(), grads[j].numpy())


def test_callback_error_stops_backward():
    w1, w2, unused = _params()
    x = ty.tensor(np.array([2.0, 3.0, 4.0], dtype=np.float32))

    def bad(t, g):
        raise ValueError("no thanks")

    gm = GradManager().attach([w1, w2], callbacks=bad)
    with pytest.raises(ValueError, match="no thanks"):
        with gm:
            gm.backward(_loss(w1, w2, x, []))
    assert w1.grad is None and w2.grad is None


def test_traced_step_runs_callbacks_after_backward_with_equal_gradients():
    def run(traced):
        w1, w2, unused = _params()
        w1.name, w2.name, unused.name = "w1", "w2", "unused"
        log = []

        def cb(t, g):   # names only: a replay cannot read values before the call ends
            log.append(t.name)
            return g

        gm = GradManager().attach([w1, w2, unused], callbacks=cb)

        def step(x):
            with gm:
                gm.backward((w1 * x * w2 + w1 * w1).sum())   # no Function: it does not trace
            return w1.grad + 0.0, w2.grad + 0.0

        if traced:
            step = trace(step)
        outs = []
        for i in range(3):
            for p in (w1, w2):
                p.grad = None
            x = ty.tensor(np.array([2.0, 3.0, 4.0], dtype=np.float32) + i)
            outs.append([o.numpy() for o in step(x)])
        return outs, log

    eager, eager_log = run(False)
    traced, traced_log = run(True)
    for a, b in zip(eager, traced):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert eager_log == ["w2", "w1"] * 3
    # inside a trace the callbacks run after backward, in reverse order of attaching
    assert traced_log[:2] == ["w2", "w1"]
