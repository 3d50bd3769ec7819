"""Gradients through remote_send / remote_recv on 2 ranks (MegEngine's semantics): rank 1's
gradient of what it received flows back into rank 0's sent tensor; checked against NumPy.
Also: eager use without a GradManager is unchanged, and a trace refuses the gradient path."""
import numpy as np
import tianyuan as ty
import tianyuan.distributed as dist
import tianyuan.functional as F
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace
from tianyuan.jit.tracing import TraceError

from _dp_common import needs_mpirun, skip_asan

pytestmark = [needs_mpirun, skip_asan]
FD = F.distributed


def _x():
    return np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5


def _w():
    return np.linspace(-1.0, 2.0, 6, dtype=np.float32).reshape(2, 3)


def _send_recv_grads():
    r = dist.get_rank()
    out = {}
    # rank 0: x -> x * x -> send; rank 1: z = recv; loss = sum(z * w)
    xp, wp = ty.Parameter(_x()), ty.Parameter(_w())
    gm = GradManager().attach([xp] if r == 0 else [wp])
    with gm:
        if r == 0:
            y = FD.remote_send(xp * xp, 1)
            gm.backward(y)
        else:
            z = FD.remote_recv(0, shape=(2, 3), dtype="float32")
            gm.backward((z * wp).sum())
            out["z"] = z.numpy()
    out["grad"] = (xp if r == 0 else wp).grad.numpy()
    # a sent tensor without gradient: the recording receiver sends nothing back (the next
    # exchange below would receive a stray gradient otherwise)
    wp.grad = None
    with gm:
        if r == 0:
            FD.remote_send(ty.tensor(_x()) * 3.0, 1)
        else:
            gm.backward((FD.remote_recv(0, shape=(2, 3)) * wp).sum())
            out["grad_no_sender_grad"] = wp.grad.numpy()
    # without a GradManager: plain eager send / recv, as before
    if r == 0:
        out["plain_send_shape"] = tuple(FD.remote_send(ty.tensor(_x()), 1).shape)
    else:
        out["plain_recv"] = FD.remote_recv(0, shape=(2, 3), dtype="float32").numpy()
    # inside jit.trace with a GradManager: the sender refuses, naming the op, after sending
    # (the receiver gets the message, without a gradient path)
    gm = GradManager().attach([xp, wp])

    def step(t):
        with gm:
            if r == 0:
                gm.backward(FD.remote_send(t * xp, 1))
                return t
            z = FD.remote_recv(0, shape=(2, 3))
            gm.backward((z * wp).sum())
            return z
    try:
        out["traced"] = trace(step)(ty.tensor(_w())).numpy()
    except TraceError as e:
        out["trace_error"] = str(e)
    return out


def test_remote_send_recv_gradients():
    res = dist.launcher(_send_recv_grads, n_gpus=2, timeout=60)()
    x, w = _x(), _w()
    np.testing.assert_array_equal(res[1]["z"], x * x)
    np.testing.assert_allclose(res[0]["grad"], w * 2 * x, rtol=1e-6)
    np.testing.assert_array_equal(res[1]["grad"], x * x)
    assert res[0]["plain_send_shape"] == (0,)
    np.testing.assert_array_equal(res[1]["grad_no_sender_grad"], x * 3.0)
    np.testing.assert_array_equal(res[1]["plain_recv"], x)
    assert "remote_send" in res[0]["trace_error"]
    np.testing.assert_array_equal(res[1]["traced"], w * x)
