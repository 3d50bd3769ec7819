"""tianyuan.amp: autocast cast rules, GradScaler's dynamic loss scaling (eager and traced),
the channels-last converters."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan import amp
from tianyuan.amp import GradScaler, autocast
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace


def _x(*shape, seed=0, scale=1.0):
    return ty.tensor((np.random.default_rng(seed).standard_normal(shape) * scale)
                     .astype(np.float32))


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_cast_rules(low):
    x, w = _x(2, 3, 6, 6), _x(4, 3, 3, 3, seed=1)
    a, b = _x(5, 8), _x(8, 3, seed=2)
    with autocast(low_prec_dtype=low):
        assert amp.enabled and amp.low_prec_dtype == low
        assert str(F.conv2d(x, w, _x(1, 4, 1, 1)).dtype) == low  # the bias joins it
        assert str(F.matmul(a, b).dtype) == low
        lin = M.Linear(8, 3)
        assert str(lin(a).dtype) == low
        h = F.matmul(a, b)
        for y in (F.exp(h), F.log(F.abs(h) + 1), F.sum(h), F.mean(h), F.softmax(h, 1),
                  F.nn.layer_norm(h, 3, affine=False), F.sin(h), F.pow(h, 2.0)):
            assert str(y.dtype) == "float32", y
        bn = M.BatchNorm2d(4)
        assert str(bn(F.conv2d(x, w)).dtype) == "float32"
        assert str(F.relu(h).dtype) == low  # other ops keep their input's dtype
        assert str(F.matmul(a.astype("float64"), b.astype("float64")).dtype) == "float64"
    assert not amp.enabled
    assert str(F.matmul(a, b).dtype) == "float32"


def test_autocast_values_close_to_float32_and_grads_float32():
    a, b = _x(16, 32), _x(32, 8, seed=1)
    ref = F.matmul(a, b).numpy()
    a32 = ty.Parameter(a.numpy())
    gm = GradManager().attach([a32])
    with gm:
        with autocast():
            y = F.matmul(a32, b)
        np.testing.assert_allclose(y.numpy().astype(np.float32), ref, rtol=2e-2, atol=2e-2)
        gm.backward(y.astype("float32").sum())
    assert str(a32.grad.dtype) == "float32"
    np.testing.assert_allclose(a32.grad.numpy(), np.tile(b.numpy().sum(1), (16, 1)),
                               rtol=2e-2, atol=2e-2)


def test_nesting_decorator_and_disabled_scope():
    @autocast()
    def f(a):
        with autocast(enabled=False):
            inner = F.matmul(a, a).dtype
        with autocast(low_prec_dtype="bfloat16"):
            nested = F.matmul(a, a).dtype
        return inner, nested, F.matmul(a, a).dtype

    a = _x(4, 4)
    inner, nested, outer = f(a)
    assert (str(inner), str(nested), str(outer)) == ("float32", "bfloat16", "float16")
    assert not amp.enabled and amp.low_prec_dtype == "float16"
    amp.enabled = True  # the module-level switch, as MegEngine allows
    try:
        assert str(F.matmul(a, a).dtype) == "float16"
    finally:
        amp.enabled = False
    with pytest.raises(ValueError, match="low_prec_dtype"):
        autocast(low_prec_dtype="int8")


def _net():
    ty.random.seed(3)
    return M.Sequential(M.Conv2d(3, 4, 3, padding=1), M.BatchNorm2d(4), M.ReLU(),
                        M.AdaptiveAvgPool2d(1), M.Flatten() if hasattr(M, "Flatten")
                        else M.Identity())


def _step_fn(net, gm, opt, scaler):
    @autocast()
    def step(x, label):
        with gm:
            logits = net(x).reshape(x.shape[0], -1)
            loss = F.nn.cross_entropy(logits.astype("float32"), label)
            scaler.backward(gm, loss)
        opt.step().clear_grad()
        return loss
    return step


def test_grad_scaler_skips_non_finite_step_and_backs_off():
    net = _net()
    gm = GradManager().attach(net.parameters())
    opt = ty.optimizer.SGD(net.parameters(), lr=0.1)
    scaler = GradScaler(init_scale=2.0 ** 40, growth_interval=2)  # float16 overflows
    step = _step_fn(net, gm, opt, scaler)
    x, label = _x(2, 3, 5, 5), ty.tensor(np.array([1, 2], np.int32))
    before = [p.numpy().copy() for p in net.parameters()]
    step(x, label)
    assert scaler.scale_factor == 2.0 ** 39
    assert all(np.array_equal(b, p.numpy()) for b, p in zip(before, net.parameters()))
    scaler.scale_factor = 2.0 ** 4
    step(x, label)
    assert scaler.scale_factor == 2.0 ** 4 and not scaler.found_non_finite
    assert any(not np.array_equal(b, p.numpy()) for b, p in zip(before, net.parameters()))
    assert all(np.isfinite(p.numpy()).all() for p in net.parameters())
    step(x, label)
    assert scaler.scale_factor == 2.0 ** 5  # two finite steps in a row: growth
    state = scaler.state_dict()
    other = GradScaler()
    other.load_state_dict(state)
    assert other.scale_factor == 2.0 ** 5 and other.state_dict() == state


def test_grad_scaler_unscaled_grads_match_unscaled_training():
    """With a finite step, the unscaled gradients equal those of plain backward."""
    w = ty.Parameter(_x(4, 3).numpy())
    x = _x(5, 4, seed=1)
    gm = GradManager().attach([w])
    with gm:
        gm.backward(F.matmul(x, w).sum())
    ref = w.grad.numpy().copy()
    w.grad = None
    scaler = GradScaler(init_scale=8.0, growth_interval=0)
    with gm:
        scaler.backward(gm, F.matmul(x, w).sum())
    np.testing.assert_allclose(w.grad.numpy(), ref, rtol=1e-6)
    assert scaler.scale_factor == 8.0


def test_grad_scaler_traced_step_matches_eager():
    x, label = _x(2, 3, 5, 5), ty.tensor(np.array([1, 2], np.int32))
    results = []
    for traced in (False, True):
        net = _net()
        gm = GradManager().attach(net.parameters())
        opt = ty.optimizer.SGD(net.parameters(), lr=0.1)
        scaler = GradScaler(init_scale=2.0 ** 40, growth_interval=2)
        step = _step_fn(net, gm, opt, scaler)
        if traced:
            step = trace(step)
        losses, scales = [], []
        for _ in range(4):
            losses.append(step(x, label).numpy())
            scales.append(scaler.scale_factor)
        results.append((losses, scales, [p.numpy() for p in net.parameters()]))
    (l0, s0, p0), (l1, s1, p1) = results
    assert s0 == s1 and s0[0] == 2.0 ** 39
    for a, b in zip(l0 + p0, l1 + p1):
        np.testing.assert_array_equal(a, b)


def test_convert_formats_keep_values_and_identity():
    conv = M.Conv2d(3, 4, 3)
    x = _x(1, 3, 5, 5)
    ref = conv(x).numpy()
    w = conv.weight
    assert not amp.convert_format.is_channels_last(w)
    out = amp.convert_module_format(conv)
    assert out is conv and conv.weight is w
    assert amp.convert_format.is_channels_last(w) and w.shape == (4, 3, 3, 3)
    np.testing.assert_array_equal(conv(x).numpy(), ref)
    y = amp.convert_tensor_format(x, inplace=False)
    assert y is not x and amp.convert_format.is_channels_last(y)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    v = _x(3, 4)
    assert amp.convert_tensor_format(v) is v  # not 4-d/5-d: unchanged
