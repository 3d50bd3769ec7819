"""tianyuan.optimizer: updates vs NumPy re-implementations, state round trips, schedulers,
gradient clipping."""
import math

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.module as M
import tianyuan.optimizer as optim

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.2], [0.0, 0.2, 1.0]], np.float32)
B = np.array([1.0, -2.0, 0.5], np.float32)
X0 = np.array([0.3, -0.7, 1.2], np.float32)


def _grad(x):
    """Gradient of the quadratic 0.5 x^T A x - b^T x."""
    return (A @ x - B).astype(np.float32)


def _run(opt_cls, kwargs, steps=5):
    p = ty.Parameter(X0.copy())
    opt = opt_cls([p], **kwargs)
    traj = []
    for _ in range(steps):
        p.grad = ty.tensor(_grad(p.numpy()))
        assert opt.step() is opt
        traj.append(p.numpy().copy())
    return p, opt, traj


# ---------------------------------------------------------------- NumPy references
def _sgd_ref(lr, momentum=0.0, nesterov=False, weight_decay=0.0, steps=5):
    x, v, out = X0.astype(np.float64), np.zeros(3), []
    for _ in range(steps):
        g = _grad(x.astype(np.float32)).astype(np.float64) + weight_decay * x
        if momentum:
            v = momentum * v + g
            g = g + momentum * v if nesterov else v
        x = x - lr * g
        out.append(x.copy())
    return out


def _adam_ref(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False, steps=5):
    x, m, v, out = X0.astype(np.float64), np.zeros(3), np.zeros(3), []
    for t in range(1, steps + 1):
        g = _grad(x.astype(np.float32)).astype(np.float64)
        if weight_decay and not decoupled:
            g = g + weight_decay * x
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        d = (m / (1 - betas[0] ** t)) / (np.sqrt(v / (1 - betas[1] ** t)) + eps)
        if weight_decay and decoupled:
            d = d + weight_decay * x
        x = x - lr * d
        out.append(x.copy())
    return out


def _adagrad_ref(lr, lr_decay=0.0, eps=1e-10, weight_decay=0.0, steps=5):
    x, s, out = X0.astype(np.float64), np.zeros(3), []
    for t in range(1, steps + 1):
        g = _grad(x.astype(np.float32)).astype(np.float64) + weight_decay * x
        s = s + g * g
        x = x - lr / (1 + (t - 1) * lr_decay) * g / np.sqrt(s + eps)
        out.append(x.copy())
    return out


def _adadelta_ref(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, steps=5):
    x, s, a, out = X0.astype(np.float64), np.zeros(3), np.zeros(3), []
    for _ in range(steps):
        g = _grad(x.astype(np.float32)).astype(np.float64) + weight_decay * x
        s = rho * s + (1 - rho) * g * g
        d = np.sqrt(a + eps) / np.sqrt(s + eps) * g
        x = x - lr * d
        a = rho * a + (1 - rho) * d * d
        out.append(x.copy())
    return out


def _lamb_ref(lr, betas=(0.9, 0.999), eps=1e-8, bias_correction=True, weight_decay=0.0,
              always_adapt=False, steps=5):
    x, m, v, out = X0.astype(np.float64), np.zeros(3), np.zeros(3), []
    for t in range(1, steps + 1):
        g = _grad(x.astype(np.float32)).astype(np.float64)
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        mh, vh = (m / (1 - betas[0] ** t), v / (1 - betas[1] ** t)) if bias_correction \
            else (m, v)
        u = mh / (np.sqrt(vh) + eps) + weight_decay * x
        r = 1.0
        if weight_decay or always_adapt:
            wn, un = np.linalg.norm(x), np.linalg.norm(u)
            r = wn / un if wn > 0 and un > 0 else 1.0
        x = x - lr * r * u
        out.append(x.copy())
    return out


CASES = [
    (optim.SGD, dict(lr=0.1), _sgd_ref),
    (optim.SGD, dict(lr=0.05, momentum=0.9), _sgd_ref),
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01), _sgd_ref),
    (optim.Adam, dict(lr=0.1), _adam_ref),
    (optim.Adam, dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1), _adam_ref),
    (optim.AdamW, dict(lr=0.05, weight_decay=0.1),
     lambda **k: _adam_ref(decoupled=True, **k)),
    (optim.Adagrad, dict(lr=0.2, lr_decay=0.1, weight_decay=0.01), _adagrad_ref),
    (optim.Adadelta, dict(lr=1.0, rho=0.8, weight_decay=0.05), _adadelta_ref),
    (optim.LAMB, dict(lr=0.05), _lamb_ref),
    (optim.LAMB, dict(lr=0.05, weight_decay=0.1, bias_correction=False), _lamb_ref),
    (optim.LAMB, dict(lr=0.05, always_adapt=True), _lamb_ref),
]


@pytest.mark.parametrize("cls,kwargs,ref", CASES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_update_matches_numpy(cls, kwargs, ref):
    _, _, traj = _run(cls, kwargs, steps=6)
    expect = ref(steps=6, **kwargs)
    for got, want in zip(traj, expect):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    assert not np.allclose(traj[-1], X0)


def test_adamw_defaults():
    p = ty.Parameter(X0.copy())
    g = optim.AdamW([p], lr=0.1).param_groups[0]
    assert g["weight_decay"] == 0.01 and g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8
    assert optim.Adam([p], lr=0.1).param_groups[0]["weight_decay"] == 0.0


def test_update_in_place_keeps_identity_and_skips_none_grads():
    p, q = ty.Parameter(X0.copy()), ty.Parameter(X0.copy())
    opt = optim.SGD([p, q], lr=0.1, momentum=0.9)
    buf = opt._state[p]["momentum_buffer"]
    p.grad = ty.tensor(np.ones(3, np.float32))
    opt.step()
    assert opt._state[p]["momentum_buffer"] is buf
    np.testing.assert_allclose(p.numpy(), X0 - 0.1, rtol=1e-6)
    np.testing.assert_array_equal(q.numpy(), X0)  # q.grad is None: untouched


def test_step_is_not_recorded_by_autodiff():
    p = ty.Parameter(X0.copy())
    gm = ty.autodiff.GradManager().attach([p])
    opt = optim.SGD([p], lr=0.1)
    with gm:
        assert (p * 2)._tracked
        with optim.no_grad():
            assert not (p * 2)._tracked
        assert (p * 2)._tracked  # the scope is popped again
        loss = (p * p).sum()
        p.grad = ty.tensor(np.ones(3, np.float32))
        gm.backward(loss)
    with gm:  # a step taken while recording is not taped either
        opt.step()
    np.testing.assert_allclose(p.grad.numpy(), 1 + 2 * X0, rtol=1e-6)
    np.testing.assert_allclose(p.numpy(), X0 - 0.1 * (1 + 2 * X0), rtol=1e-6)
    assert opt.step() is opt


def test_clear_grad_and_zero_grad():
    p = ty.Parameter(X0.copy())
    opt = optim.SGD([p], lr=0.1)
    p.grad = ty.tensor(np.ones(3, np.float32))
    assert opt.clear_grad() is opt and p.grad is None
    p.grad = ty.tensor(np.ones(3, np.float32))
    opt.zero_grad()
    assert p.grad is None


def test_param_groups_and_add_param_group():
    a, b, c = (ty.Parameter(X0.copy()) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    assert opt.param_groups[1]["momentum"] == 0.9
    assert len(opt.param_groups[1]["params"]) == 1 and opt.param_groups[1]["params"][0] is b
    opt.add_param_group({"params": [c], "lr": 1.0})
    assert len(opt.param_groups) == 3 and "momentum_buffer" in opt._state[c]
    for t in (a, b, c):
        t.grad = ty.tensor(np.ones(3, np.float32))
    opt.step()
    np.testing.assert_allclose(a.numpy(), X0 - 0.1, rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), X0 - 0.5, rtol=1e-6)
    np.testing.assert_allclose(c.numpy(), X0 - 1.0, rtol=1e-6)
    with pytest.raises(ValueError):
        opt.add_param_group({"params": [a]})


def test_rejects_bad_params():
    p = ty.Parameter(X0.copy())
    with pytest.raises(TypeError):
        optim.SGD({p}, lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD([{"params": {p}}], lr=0.1)
    with pytest.raises(TypeError):
        optim.SGD([ty.tensor(X0)], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([p, p], lr=0.1)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=-1.0)
    with pytest.raises(ValueError):
        optim.SGD([p], lr=0.1, nesterov=True)
    with pytest.raises(ValueError):
        optim.Adam([p], lr=0.1, betas=(1.0, 0.9))


def test_works_with_module_parameters():
    net = M.Linear(3, 2)
    opt = optim.Adam(net.parameters(), lr=0.01)
    assert len(opt.param_groups[0]["params"]) == 2


@pytest.mark.parametrize("cls,kwargs", [
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.05, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.05)),
    (optim.Adagrad, dict(lr=0.1)),
    (optim.Adadelta, dict()),
    (optim.LAMB, dict(lr=0.05, weight_decay=0.01)),
])
def test_state_dict_round_trip_bit_exact(cls, kwargs):
    p1, opt1, _ = _run(cls, kwargs, steps=3)
    sd = opt1.state_dict()
    assert sorted(sd) == ["param_groups", "state"]
    assert sd["param_groups"][0]["params"] == [0]
    assert all(isinstance(v, np.ndarray) for v in sd["state"][0].values())
    # a fresh optimizer on a copy of the parameter, loaded from the state dict
    p2 = ty.Parameter(p1.numpy())
    opt2 = cls([p2], **{**kwargs, "lr": 123.0})
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == kwargs.get("lr", opt1.param_groups[0]["lr"])
    sd2 = opt2.state_dict()
    for k, v in sd["state"][0].items():
        assert sd2["state"][0][k].dtype == v.dtype
        np.testing.assert_array_equal(sd2["state"][0][k], v)
    for _ in range(3):
        for p in (p1, p2):
            p.grad = ty.tensor(_grad(p.numpy()))
        opt1.step()
        opt2.step()
    np.testing.assert_array_equal(p1.numpy(), p2.numpy())
    # the saved dict is a snapshot, not a view of live state
    assert not all(np.array_equal(opt1.state_dict()["state"][0][k], v)
                   for k, v in sd["state"][0].items())


def test_load_state_dict_rejects_mismatch():
    a, b = ty.Parameter(X0.copy()), ty.Parameter(X0.copy())
    sd = optim.SGD([a, b], lr=0.1, momentum=0.9).state_dict()
    with pytest.raises(ValueError):
        optim.SGD([a], lr=0.1, momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1,
                  momentum=0.9).load_state_dict(sd)
    with pytest.raises(ValueError):
        optim.Adam([a, b], lr=0.1).load_state_dict(sd)


# ---------------------------------------------------------------- schedulers
def _opt(lr=1.0):
    return optim.SGD([ty.Parameter(X0.copy())], lr=lr)


def _lrs(opt, sched, n):
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n - 1):
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_multistep_lr_sequence():
    opt = _opt(0.5)
    s = optim.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    np.testing.assert_allclose(_lrs(opt, s, 6), [0.5, 0.5, 0.05, 0.05, 0.005, 0.005])
    assert opt.param_groups[0]["initial_lr"] == 0.5
    with pytest.raises(ValueError):
        optim.MultiStepLR(_opt(), milestones=[3, 1])


def test_step_lr_sequence():
    opt = _opt(1.0)
    s = optim.StepLR(opt, step_size=3, gamma=0.5)
    np.testing.assert_allclose(_lrs(opt, s, 7), [1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_cosine_annealing_sequence():
    opt = _opt(1.0)
    s = optim.CosineAnnealingLR(opt, T_max=4, eta_min=0.1)
    ref = [0.1 + 0.9 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(5)]
    np.testing.assert_allclose(_lrs(opt, s, 5), ref, rtol=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_linear_warmup_sequence():
    opt = _opt(2.0)
    s = optim.LinearWarmupLR(opt, warmup_steps=4, start_factor=0.2)
    ref = [2.0 * (0.2 + 0.8 * min(e, 4) / 4) for e in range(7)]
    np.testing.assert_allclose(_lrs(opt, s, 7), ref, rtol=1e-12)
    assert optim.WarmUpLR is optim.LinearWarmupLR


def test_scheduler_resume_and_state_dict():
    opt = _opt(1.0)
    s = optim.MultiStepLR(opt, [1], gamma=0.1)
    s.step()
    st = s.state_dict()
    assert "optimizer" not in st and st["current_epoch"] == 1
    opt2 = _opt(1.0)
    with pytest.raises(KeyError):
        optim.MultiStepLR(opt2, [1], current_epoch=3)
    opt2.param_groups[0]["initial_lr"] = 1.0
    s2 = optim.MultiStepLR(opt2, [1], current_epoch=4)  # takes a step: epoch 5
    assert s2.current_epoch == 5 and opt2.param_groups[0]["lr"] == pytest.approx(0.1)
    s2.load_state_dict(st)
    assert s2.current_epoch == 1
    with pytest.raises(TypeError):
        optim.MultiStepLR(object(), [1])


def test_scheduler_drives_optimizer_step():
    p = ty.Parameter(np.zeros(1, np.float32))
    opt = optim.SGD([p], lr=1.0)
    s = optim.StepLR(opt, step_size=1, gamma=0.5)
    for _ in range(3):
        p.grad = ty.tensor(np.ones(1, np.float32))
        opt.step()
        s.step()
    np.testing.assert_allclose(p.numpy(), [-1.75])


# ---------------------------------------------------------------- clipping
def test_clip_grad_norm_l2():
    a, b = ty.Parameter(np.zeros(2, np.float32)), ty.Parameter(np.zeros(3, np.float32))
    ga, gb = np.array([3.0, 4.0], np.float32), np.array([12.0, 0.0, 0.0], np.float32)
    a.grad, b.grad = ty.tensor(ga), ty.tensor(gb)
    none = ty.Parameter(np.zeros(1, np.float32))
    total = optim.clip_grad_norm([a, b, none], max_norm=1.3)
    assert total.item() == pytest.approx(13.0, rel=1e-6)
    scale = 1.3 / (13.0 + 1e-6)
    np.testing.assert_allclose(a.grad.numpy(), ga * scale, rtol=1e-6)
    np.testing.assert_allclose(b.grad.numpy(), gb * scale, rtol=1e-6)
    assert none.grad is None


def test_clip_grad_norm_no_clip_when_small_and_other_ords():
    a = ty.Parameter(np.zeros(2, np.float32))
    a.grad = ty.tensor(np.array([0.3, -0.4], np.float32))
    assert optim.clip_grad_norm(a, 10.0).item() == pytest.approx(0.5, rel=1e-6)
    np.testing.assert_allclose(a.grad.numpy(), [0.3, -0.4], rtol=1e-6)
    b = ty.Parameter(np.zeros(2, np.float32))
    b.grad = ty.tensor(np.array([2.0, -5.0], np.float32))
    assert optim.clip_grad_norm([a, b], 100.0, ord=float("inf")).item() == pytest.approx(5.0)
    assert optim.clip_grad_norm([a, b], 100.0, ord=1.0).item() == pytest.approx(7.7, rel=1e-6)
    assert optim.clip_grad_norm([ty.Parameter(np.zeros(1, np.float32))], 1.0).item() == 0.0


def test_clip_grad_value():
    a = ty.Parameter(np.zeros(3, np.float32))
    a.grad = ty.tensor(np.array([-2.0, 0.1, 5.0], np.float32))
    optim.clip_grad_value([a], -1.0, 0.5)
    np.testing.assert_allclose(a.grad.numpy(), [-1.0, 0.1, 0.5])


def test_training_loop_reduces_loss():
    """A small end-to-end check: Linear + GradManager + SGD fits a linear map."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32) + 0.3
    net = M.Linear(3, 1)
    gm = ty.autodiff.GradManager().attach(net.parameters())
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(150):
        with gm:
            d = net(ty.tensor(x)) - ty.tensor(y)
            loss = (d * d).mean()
            gm.backward(loss)
        opt.step().clear_grad()
        losses.append(loss.item())
    assert losses[-1] < 1e-3 * losses[0]
    np.testing.assert_allclose(net.weight.numpy().ravel(), [1.0, -2.0, 0.5], atol=1e-2)
