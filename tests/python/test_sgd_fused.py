"""The fused SGD kernel (tianyuan._C.sgd_fused, SGD's eager fast path) gives the same bits as
the update computed op by op, and steps aside where it does not apply."""
import numpy as np
import pytest

import tianyuan as ty
from tianyuan import _C
from tianyuan.optimizer import SGD
from tianyuan.optimizer.optimizer import no_grad

SHAPES = [(1,), (7,), (3, 5, 3), (64, 3, 3, 3), (40000,)]  # odd sizes, one over a chunk


def _reference(ps, grads, steps, lr, momentum, weight_decay, nesterov):
    """The SGD update written as separate tensor ops (the unfused formula)."""
    lr_t, wd_t, mom_t = (ty.tensor(np.float32(v)) for v in (lr, weight_decay, momentum))
    ps = [ty.tensor(p) for p in ps]
    bufs = [ty.tensor(np.zeros_like(p.numpy())) for p in ps]
    with no_grad():
        for s in range(steps):
            for i, p in enumerate(ps):
                g = ty.tensor(grads[s][i])
                if weight_decay != 0.0:
                    g = g + p * wd_t
                if momentum != 0.0:
                    bufs[i] = bufs[i] * mom_t + g
                    g = g + bufs[i] * mom_t if nesterov else bufs[i]
                ps[i] = p - lr_t * g
    return [p.numpy() for p in ps], [b.numpy() for b in bufs]


@pytest.mark.parametrize("momentum,weight_decay,nesterov", [
    (0.0, 0.0, False), (0.0, 1e-4, False), (0.9, 0.0, False), (0.9, 5e-4, False),
    (0.9, 5e-4, True), (0.37, 0.0, True)])
def test_fused_sgd_matches_ops_bitwise(momentum, weight_decay, nesterov):
    rng = np.random.default_rng(3)
    init = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    steps = 4
    grads = [[rng.standard_normal(s).astype(np.float32) for s in SHAPES] for _ in range(steps)]
    params = [ty.Parameter(a.copy()) for a in init]
    opt = SGD(params, lr=0.0123, momentum=momentum, nesterov=nesterov,
              weight_decay=weight_decay)
    for s in range(steps):
        for p, g in zip(params, grads[s]):
            p.grad = ty.tensor(g)
        opt.step()
    want_p, want_b = _reference(init, grads, steps, 0.0123, momentum, weight_decay, nesterov)
    for p, w in zip(params, want_p):
        assert p.numpy().tobytes() == w.tobytes()
    if momentum != 0.0:
        for p, w in zip(params, want_b):
            assert opt._state[p]["momentum_buffer"].numpy().tobytes() == w.tobytes()


def _scalars():
    return tuple(ty.tensor(np.float32(v)) for v in (0.1, 0.01, 0.9))


def test_fused_kernel_runs_in_eager_and_writes_in_place():
    p = ty.Parameter(np.ones(5, dtype=np.float32))
    buf = ty.tensor(np.zeros(5, dtype=np.float32))
    lr, wd, mom = _scalars()
    with no_grad():
        assert _C.sgd_fused(p, ty.tensor(np.full(5, 2.0, np.float32)), buf, lr, wd, mom, False)
    g = np.float32(2.0) + np.float32(1.0) * np.float32(0.01)
    assert np.array_equal(buf.numpy(), np.full(5, g, np.float32))
    assert np.array_equal(p.numpy(), np.full(5, np.float32(1.0) - np.float32(0.1) * g))


def test_fused_kernel_steps_aside_for_strided_grads_and_other_dtypes():
    lr, wd, mom = _scalars()
    p = ty.Parameter(np.ones((3, 4), dtype=np.float32))
    strided = ty.tensor(np.arange(12, dtype=np.float32).reshape(4, 3)).transpose(1, 0)
    with no_grad():
        assert not _C.sgd_fused(p, strided, None, lr, None, mom, False)
        half = ty.tensor(np.ones((3, 4), dtype=np.float16))
        assert not _C.sgd_fused(p, half, None, lr, None, mom, False)
    assert np.array_equal(p.numpy(), np.ones((3, 4), np.float32))  # nothing written


def test_sgd_with_strided_grad_uses_the_op_path_with_same_result():
    rng = np.random.default_rng(5)
    init = rng.standard_normal((3, 4)).astype(np.float32)
    gt = rng.standard_normal((4, 3)).astype(np.float32)
    p = ty.Parameter(init.copy())
    opt = SGD([p], lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
    for _ in range(2):
        p.grad = ty.tensor(gt).transpose(1, 0)
        opt.step()
    want, _ = _reference([init], [[np.ascontiguousarray(gt.T)]] * 2, 2, 0.05, 0.9, 1e-3, True)
    assert p.numpy().tobytes() == want[0].tobytes()


def test_fused_kernel_is_not_used_while_autodiff_records():
    lr, wd, mom = _scalars()
    p = ty.Parameter(np.ones(4, dtype=np.float32))
    gm = ty.autodiff.GradManager().attach([p])
    with gm:
        assert not _C.sgd_fused(p, ty.tensor(np.ones(4, np.float32)), None, lr, None, mom, False)
