"""A small CNN written with tianyuan.functional, in float64:
conv2d -> batch_norm(training) -> relu -> max_pool2d -> flatten -> linear -> cross_entropy.
Every parameter's gradient must match central finite differences, and PyTorch's gradients
when PyTorch is installed."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F

N, CIN, H, W, COUT, CLASSES = 3, 2, 6, 6, 4, 3
NAMES = ["conv_w", "conv_b", "bn_w", "bn_b", "fc_w", "fc_b"]


def _init(rng):
    feat = COUT * (H // 2) * (W // 2)
    params = {
        "conv_w": rng.normal(0, 0.5, (COUT, CIN, 3, 3)),
        "conv_b": rng.normal(0, 0.1, (1, COUT, 1, 1)),
        "bn_w": rng.uniform(0.5, 1.5, (1, COUT, 1, 1)),
        "bn_b": rng.normal(0, 0.1, (1, COUT, 1, 1)),
        "fc_w": rng.normal(0, 0.3, (CLASSES, feat)),
        "fc_b": rng.normal(0, 0.1, (CLASSES,)),
    }
    x = rng.standard_normal((N, CIN, H, W))
    label = rng.integers(0, CLASSES, N).astype(np.int32)
    return params, x, label


def _forward(p, x, label, running=(None, None)):
    y = F.nn.conv2d(x, p["conv_w"], p["conv_b"], stride=1, padding=1)
    y = F.nn.batch_norm(y, running[0], running[1], p["bn_w"], p["bn_b"], training=True)
    y = F.nn.relu(y)
    y = F.nn.max_pool2d(y, 2)
    y = F.flatten(y, 1)
    y = F.nn.linear(y, p["fc_w"], p["fc_b"])
    return F.nn.cross_entropy(y, label)


def _f64(a):
    return ty.tensor(a, dtype="float64")


def _loss_value(params, x, label):
    p = {k: _f64(v) for k, v in params.items()}
    return float(_forward(p, _f64(x), ty.tensor(label, dtype="int32")).numpy())


def _autodiff_grads(params, x, label):
    p = {k: ty.Parameter(v, dtype="float64") for k, v in params.items()}
    rm = ty.tensor(np.zeros((1, COUT, 1, 1)), dtype="float64")
    rv = ty.tensor(np.ones((1, COUT, 1, 1)), dtype="float64")
    gm = ty.autodiff.GradManager().attach(list(p.values()))
    with gm:
        loss = _forward(p, _f64(x), ty.tensor(label, dtype="int32"), (rm, rv))
        gm.backward(loss)
    return float(loss.numpy()), {k: v.grad.numpy() for k, v in p.items()}, rm.numpy()


def _numeric(params, x, label, name, eps=1e-6):
    g = np.zeros_like(params[name])
    for i in np.ndindex(g.shape):
        old = params[name][i]
        params[name][i] = old + eps
        fp = _loss_value(params, x, label)
        params[name][i] = old - eps
        fm = _loss_value(params, x, label)
        params[name][i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def test_cnn_gradients_match_finite_differences():
    params, x, label = _init(np.random.default_rng(7))
    loss, grads, rm = _autodiff_grads(params, x, label)
    assert np.isfinite(loss)
    assert np.abs(rm).sum() > 0  # the running mean was updated in place
    for name in NAMES:
        num = _numeric(params, x, label, name)
        assert grads[name].shape == params[name].shape, name
        np.testing.assert_allclose(grads[name], num, rtol=1e-4, atol=1e-7, err_msg=name)


def test_cnn_gradients_match_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    params, x, label = _init(np.random.default_rng(11))
    loss, grads, _ = _autodiff_grads(params, x, label)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    y = tF.conv2d(torch.tensor(x), tp["conv_w"], tp["conv_b"].reshape(-1), padding=1)
    y = tF.batch_norm(y, None, None, tp["bn_w"].reshape(-1), tp["bn_b"].reshape(-1),
                      training=True, eps=1e-5)
    y = tF.max_pool2d(tF.relu(y), 2)
    y = tF.linear(torch.flatten(y, 1), tp["fc_w"], tp["fc_b"])
    tloss = tF.cross_entropy(y, torch.tensor(label, dtype=torch.int64))
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-10)
    for name in NAMES:
        np.testing.assert_allclose(grads[name], tp[name].grad.numpy(), rtol=1e-8, atol=1e-12,
                                   err_msg=name)
