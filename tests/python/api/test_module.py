"""tianyuan.module: registration, naming, state_dict, modes, hooks, layers vs NumPy."""
from collections import OrderedDict

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
import tianyuan.module.init as init


def _t(a):
    return ty.tensor(np.asarray(a, dtype=np.float32))


class Net(M.Module):
    def __init__(self):
        super().__init__()
        self.fc = M.Linear(3, 4)
        self.bn = M.BatchNorm1d(4)
        self.blocks = [M.Linear(4, 4), M.Linear(4, 2, bias=False)]
        self.heads = {"a": M.PReLU(), "b": M.Identity()}
        self.scale = ty.Parameter(np.ones((1,), np.float32))
        self.buf = ty.tensor(np.zeros((2,), np.float32))
        self.not_a_tensor = 3

    def forward(self, x):
        x = self.bn(self.fc(x))
        for b in self.blocks:
            x = b(x)
        return self.heads["a"](x) * self.scale


# ---------------------------------------------------------------- registration and naming
def test_named_parameters_are_dotted_and_sorted():
    net = Net()
    names = [k for k, _ in net.named_parameters()]
    assert names == ["blocks.0.bias", "blocks.0.weight", "blocks.1.weight", "bn.bias",
                     "bn.weight", "fc.bias", "fc.weight", "heads.a.weight", "scale"]
    assert len(list(net.parameters())) == len(names)
    assert [k for k, _ in net.named_parameters(prefix="net")][0] == "net.blocks.0.bias"
    assert [k for k, _ in net.named_parameters(recursive=False)] == ["scale"]
    assert all(isinstance(p, ty.Parameter) for p in net.parameters())


def test_buffers_children_modules():
    net = Net()
    assert [k for k, _ in net.named_buffers()] == ["bn.running_mean", "bn.running_var", "buf"]
    assert len(list(net.buffers(recursive=False))) == 1
    assert [k for k, _ in net.named_children()] == ["blocks.0", "blocks.1", "bn", "fc",
                                                     "heads.a", "heads.b"]
    mods = [k for k, _ in net.named_modules()]
    assert mods[0] == "" and "heads.b" in mods and len(mods) == 7
    assert list(net.modules())[0] is net


def test_shared_parameter_counted_once():
    class Tied(M.Module):
        def __init__(self):
            super().__init__()
            self.a = M.Linear(2, 2)
            self.b = self.a

        def forward(self, x):
            return self.b(self.a(x))

    assert len(list(Tied().parameters())) == 2


def test_requires_grad_filter():
    net = M.Linear(2, 2)
    net.bias.requires_grad = False
    assert [p is net.weight for p in net.parameters(requires_grad=True)] == [True]
    assert [p is net.bias for p in net.parameters(requires_grad=False)] == [True]


def test_automatic_module_names():
    net = Net()
    assert net.fc._name == "fc"
    assert net.blocks[1]._name == "blocks.1"
    outer = M.Sequential(OrderedDict([("body", net)]))
    assert net.fc._name == "body.fc"
    assert outer.body is net


def test_automatic_parameter_names():
    net = Net()
    assert net.fc.weight.name == "fc.weight"
    outer = M.Sequential(OrderedDict([("body", net)]))
    assert net.fc.weight.name == "body.fc.weight"
    p = ty.Parameter(np.zeros(1, np.float32))
    p.name = "mine"
    net.extra = p
    assert p.name == "mine"  # user-given names are kept
    assert outer.body is net


def test_assign_module_before_init_fails():
    class Bad(M.Module):
        def __init__(self):
            self.fc = M.Linear(1, 1)
            super().__init__()

    with pytest.raises(AttributeError):
        Bad()


def test_apply_and_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.train(False, recursive=False)
    assert not net.training and net.fc.training
    seen = []
    net.apply(lambda m: seen.append(type(m).__name__))
    assert seen[0] == "Net" and seen.count("Linear") == 3


def test_repr_tree():
    r = repr(M.Sequential(M.Linear(2, 3), M.ReLU()))
    assert r.startswith("Sequential(\n  (0): Linear(in_features=2, out_features=3")
    assert "(1): ReLU()" in r


# ---------------------------------------------------------------- hooks
def test_forward_hooks_modify_and_remove():
    m = M.Identity()
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, inputs: (inputs[0] * 2,))
    h2 = m.register_forward_hook(lambda mod, inputs, out: calls.append(out.numpy()) or out + 1)
    assert m(_t([1.0])).numpy().tolist() == [3.0]
    assert calls[0].tolist() == [2.0]
    h1.remove()
    assert m(_t([1.0])).numpy().tolist() == [2.0]
    h2.remove()
    assert m(_t([1.0])).numpy().tolist() == [1.0]
    h2.remove()  # removing twice is harmless


def test_pre_hook_returning_none_keeps_inputs():
    m = M.Identity()
    m.register_forward_pre_hook(lambda mod, inputs: None)
    assert m(_t([5.0])).numpy().tolist() == [5.0]


# ---------------------------------------------------------------- state_dict
def test_state_dict_keys_and_values():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, OrderedDict)
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    assert "bn.running_mean" in sd and "bn.running_var" in sd and "buf" in sd
    assert sd["bn.weight"].shape == (4,)  # norm layers export flattened, like MegEngine
    assert sd["fc.weight"].shape == (4, 3)
    np.testing.assert_array_equal(sd["fc.weight"], net.fc.weight.numpy())
    kv = net.state_dict(keep_var=True)
    assert kv["fc.weight"] is net.fc.weight


def test_state_dict_round_trip_in_place():
    a, b = Net(), Net()
    for p in a.parameters():
        init.uniform_(p, -1, 1)
    a.bn.running_mean._assign(np.arange(4, dtype=np.float32).reshape(1, 4, 1, 1))
    w_obj = b.fc.weight
    b.load_state_dict(a.state_dict())
    assert b.fc.weight is w_obj
    for (k1, v1), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k1 == k2
        np.testing.assert_array_equal(v1, v2)
    assert b.bn.running_mean.shape == (1, 4, 1, 1)


def test_load_state_dict_accepts_4d_norm_tensors_and_tensors():
    bn = M.BatchNorm2d(3)
    bn.load_state_dict({"weight": np.full((1, 3, 1, 1), 2.0, np.float32),
                        "bias": ty.tensor(np.ones(3, np.float32)),
                        "running_mean": np.zeros(3, np.float32),
                        "running_var": np.ones(3, np.float32)})
    assert bn.weight.numpy().ravel().tolist() == [2.0, 2.0, 2.0]
    assert bn.bias.numpy().ravel().tolist() == [1.0, 1.0, 1.0]


def test_load_state_dict_strict_errors_list_everything():
    net = Net()
    sd = net.state_dict()
    before = net.fc.bias.numpy().copy()
    del sd["fc.weight"]
    sd["extra.weight"] = np.zeros(1, np.float32)
    sd["blocks.0.weight"] = np.zeros((5, 5), np.float32)
    sd["fc.bias"] = np.full(4, 7.0, np.float32)
    with pytest.raises(KeyError) as ei:
        net.load_state_dict(sd)
    msg = str(ei.value)
    assert "fc.weight" in msg and "extra.weight" in msg and "blocks.0.weight" in msg
    assert "missing" in msg and "unexpected" in msg and "(5, 5)" in msg
    assert ei.value.missing == ["fc.weight"] and ei.value.unexpected == ["extra.weight"]
    # nothing was written by the failed load
    np.testing.assert_array_equal(net.fc.bias.numpy(), before)


def test_load_state_dict_non_strict():
    net = M.Linear(2, 3)
    res = net.load_state_dict({"weight": np.ones((3, 2), np.float32), "junk": np.zeros(1)},
                              strict=False)
    assert net.weight.numpy().sum() == 6.0
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["junk"]
    with pytest.raises(ValueError, match="shape"):
        net.load_state_dict({"weight": np.ones((2, 3), np.float32)}, strict=False)


def test_load_state_dict_closure():
    net = M.Linear(2, 2)
    net.load_state_dict(lambda k, v: np.full(v.shape, 3.0, np.float32) if k == "bias" else None,
                        strict=False)
    assert net.bias.numpy().tolist() == [3.0, 3.0]


def test_replace_param():
    net = M.Linear(2, 2)
    new_w = ty.Parameter(np.ones((2, 2), np.float32))
    n = net.replace_param({1: new_w}, 0)  # order: bias (0), weight (1)
    assert n == 2 and net.weight is new_w
    with pytest.raises(ValueError):
        net.replace_param({0: ty.Parameter(np.ones(5, np.float32))}, 0)


def test_zero_grad_module():
    net = M.Linear(2, 1)
    net.weight.grad = _t([[1.0, 2.0]])
    net.zero_grad()
    assert net.weight.grad.numpy().tolist() == [[0.0, 0.0]]
    assert net.bias.grad is None


# ---------------------------------------------------------------- init
def test_init_functions():
    w = ty.Parameter(np.zeros((64, 32, 3, 3), np.float32))
    assert init.calculate_fan_in_and_fan_out(w) == (32 * 9, 64 * 9)
    g5 = ty.Parameter(np.zeros((4, 8, 2, 3, 3), np.float32))
    assert init.calculate_fan_in_and_fan_out(g5) == (2 * 9, 8 * 9)
    assert init.calculate_gain("relu") == pytest.approx(np.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(np.sqrt(2 / 1.04))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError):
        init.calculate_gain("nope")
    init.xavier_uniform_(w)
    a = np.sqrt(6.0 / (32 * 9 + 64 * 9))
    assert np.abs(w.numpy()).max() <= a + 1e-6
    assert np.abs(w.numpy()).max() > 0.9 * a
    init.msra_normal_(w, nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(np.sqrt(2.0 / (32 * 9)), rel=0.05)
    init.fill_(w, 0.25)
    assert np.all(w.numpy() == 0.25)
    init.ones_(w)
    assert np.all(w.numpy() == 1)
    init.zeros_(w)
    assert np.all(w.numpy() == 0)
    init.uniform_(w, 2.0, 3.0)
    assert w.numpy().min() >= 2.0 and w.numpy().max() <= 3.0


def test_init_is_seeded():
    init.seed(123)
    a = M.Linear(8, 8).weight.numpy()
    init.seed(123)
    b = M.Linear(8, 8).weight.numpy()
    np.testing.assert_array_equal(a, b)


def test_default_inits_follow_megengine():
    init.seed(0)
    lin = M.Linear(400, 300)
    assert lin.weight.numpy().std() == pytest.approx(np.sqrt(1 / 400), rel=0.05)
    assert np.all(lin.bias.numpy() == 0)
    conv = M.Conv2d(16, 64, 3, groups=4)
    assert conv.weight.shape == (4, 16, 4, 3, 3) and conv.bias.shape == (1, 64, 1, 1)
    assert conv.weight.numpy().std() == pytest.approx(np.sqrt(1 / (16 * 9)), rel=0.1)
    assert M.Conv1d(3, 6, 5).bias.shape == (1, 6, 1)
    assert M.Conv1d(4, 6, 5, groups=2).weight.shape == (2, 3, 2, 5)
    assert M.ConvTranspose2d(4, 6, 3).weight.shape == (4, 6, 3, 3)
    assert M.ConvTranspose2d(4, 6, 3, groups=2).weight.shape == (2, 2, 3, 3, 3)
    with pytest.raises(ValueError):
        M.Conv2d(3, 4, 3, groups=2)


# ---------------------------------------------------------------- layers
def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mod,ref", [
    (M.ReLU(), lambda x: np.maximum(x, 0)),
    (M.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (M.SiLU(), lambda x: x / (1 + np.exp(-x))),
    (M.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (M.PReLU(), lambda x: np.where(x > 0, x, 0.25 * x)),
    (M.Identity(), lambda x: x),
    (M.Elemwise("FUSE_ADD_RELU"), lambda x: np.maximum(x + x, 0)),
    (M.Elemwise("true_div"), lambda x: np.ones_like(x)),
])
def test_activation_values(mod, ref):
    x = _x(2, 3, 4)
    args = (_t(x), _t(x)) if isinstance(mod, M.Elemwise) else (_t(x),)
    np.testing.assert_allclose(mod(*args).numpy(), ref(x), rtol=1e-5, atol=1e-6)


def test_gelu_values():
    from math import erf
    x = _x(10)
    ref = np.array([v * 0.5 * (1 + erf(v / np.sqrt(2))) for v in x])
    np.testing.assert_allclose(M.GELU()(_t(x)).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_prelu_per_channel():
    m = M.PReLU(3, init=0.5)
    assert m.weight.shape == (1, 3, 1, 1)
    x = _x(2, 3, 2, 2)
    np.testing.assert_allclose(m(_t(x)).numpy(), np.where(x > 0, x, 0.5 * x), rtol=1e-6)


def test_elemwise_unknown_method():
    with pytest.raises(ValueError):
        M.Elemwise("no_such_op")


def test_softmax_module():
    x = _x(2, 5)
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(M.Softmax(axis=1)(_t(x)).numpy(), e / e.sum(1, keepdims=True),
                               rtol=1e-5)


def test_linear_values_and_sequential():
    lin = M.Linear(3, 2)
    x = _x(4, 3)
    ref = x @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(lin(_t(x)).numpy(), ref, rtol=1e-5, atol=1e-6)
    seq = M.Sequential(lin, M.ReLU())
    np.testing.assert_allclose(seq(_t(x)).numpy(), np.maximum(ref, 0), rtol=1e-5, atol=1e-6)
    od = M.Sequential(OrderedDict([("fc", lin), ("act", M.ReLU())]))
    assert [k for k, _ in od.named_parameters()] == ["fc.bias", "fc.weight"]
    assert od[0] is lin and len(od[0:1]) == 1
    assert M.Linear(3, 2, bias=False).bias is None


def _conv2d_ref(x, w, b, stride=1, pad=0):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - kh) // stride + 1
    ow = (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((n, o, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    return out + b.reshape(1, o, 1, 1)


def test_conv2d_values():
    m = M.Conv2d(3, 4, 3, stride=2, padding=1)
    init.uniform_(m.bias, -1, 1)
    x = _x(2, 3, 7, 7)
    y = m(_t(x))
    assert y.shape == (2, 4, 4, 4)
    ref = _conv2d_ref(x, m.weight.numpy(), m.bias.numpy(), stride=2, pad=1)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_conv2d_groups_shape():
    m = M.Conv2d(4, 6, 3, padding=1, groups=2)
    assert m(_t(_x(1, 4, 5, 5))).shape == (1, 6, 5, 5)


def test_conv1d_values():
    m = M.Conv1d(2, 3, 3, padding=1)
    init.uniform_(m.bias, -1, 1)
    x = _x(2, 2, 6)
    ref = _conv2d_ref(np.pad(x, ((0, 0), (0, 0), (1, 1)))[:, :, :, None],
                      m.weight.numpy()[..., None], m.bias.numpy())[..., 0]
    np.testing.assert_allclose(m(_t(x)).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_conv_transpose2d_shape():
    m = M.ConvTranspose2d(4, 2, 3, stride=2)
    assert m(_t(_x(1, 4, 5, 5))).shape == (1, 2, 11, 11)


def test_batchnorm2d_running_stats_megengine_momentum():
    bn = M.BatchNorm2d(3, momentum=0.9)
    x = _x(4, 3, 5, 5) * 2 + 1
    y = bn(_t(x))
    mean = x.mean(axis=(0, 2, 3))
    var_b = x.var(axis=(0, 2, 3))
    var_u = x.var(axis=(0, 2, 3), ddof=1)
    ref = (x - mean.reshape(1, 3, 1, 1)) / np.sqrt(var_b.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y.numpy(), ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.running_mean.numpy().ravel(), 0.1 * mean, rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy().ravel(), 0.9 + 0.1 * var_u, rtol=1e-4)
    bn.eval()
    rm, rv = bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()
    y2 = bn(_t(x))
    np.testing.assert_array_equal(bn.running_mean.numpy(), rm)  # eval leaves stats alone
    np.testing.assert_allclose(y2.numpy(), (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-4, atol=1e-4)


def test_batchnorm1d_2d_and_3d_inputs():
    bn = M.BatchNorm1d(4)
    assert bn.weight.shape == (1, 4, 1, 1)
    x = _x(8, 4)
    y = bn(_t(x))
    assert y.shape == (8, 4)
    np.testing.assert_allclose(y.numpy(), (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5),
                               rtol=1e-4, atol=1e-4)
    assert bn(_t(_x(2, 4, 6))).shape == (2, 4, 6)
    with pytest.raises(ValueError):
        bn(_t(_x(2, 4, 3, 3)))
    with pytest.raises(ValueError):
        M.BatchNorm2d(4)(_t(x))


def test_batchnorm_no_tracking_uses_batch_stats_in_eval():
    bn = M.BatchNorm2d(2, track_running_stats=False, affine=False).eval()
    assert bn.running_mean is None and bn.weight is None
    x = _x(3, 2, 2, 2)
    m = x.mean(axis=(0, 2, 3), keepdims=True)
    v = x.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(bn(_t(x)).numpy(), (x - m) / np.sqrt(v + 1e-5), rtol=1e-4,
                               atol=1e-4)
    assert list(bn.state_dict().keys()) == []


def test_batchnorm_freeze_uses_running_stats():
    bn = M.BatchNorm2d(2, freeze=True)
    bn.running_mean._assign(np.array([1.0, 2.0], np.float32).reshape(1, 2, 1, 1))
    x = _x(2, 2, 3, 3)
    ref = (x - np.array([1.0, 2.0]).reshape(1, 2, 1, 1)) / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(bn(_t(x)).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_layernorm_values():
    m = M.LayerNorm((3, 4))
    init.uniform_(m.weight, 0.5, 1.5)
    x = _x(2, 3, 4)
    mu = x.mean(axis=(1, 2), keepdims=True)
    v = x.var(axis=(1, 2), keepdims=True)
    ref = (x - mu) / np.sqrt(v + 1e-5) * m.weight.numpy() + m.bias.numpy()
    np.testing.assert_allclose(m(_t(x)).numpy(), ref, rtol=1e-4, atol=1e-5)


def test_groupnorm_and_instancenorm_values():
    x = _x(2, 4, 3, 3)
    g = M.GroupNorm(2, 4)
    init.uniform_(g.bias, -1, 1)
    xr = x.reshape(2, 2, -1)
    ref = ((xr - xr.mean(2, keepdims=True)) / np.sqrt(xr.var(2, keepdims=True) + 1e-5))
    ref = ref.reshape(x.shape) + g.bias.numpy().reshape(1, 4, 1, 1)
    np.testing.assert_allclose(g(_t(x)).numpy(), ref, rtol=1e-4, atol=1e-5)
    inorm = M.InstanceNorm(4, affine=False)
    xr = x.reshape(2, 4, -1)
    ref = ((xr - xr.mean(2, keepdims=True)) / np.sqrt(xr.var(2, keepdims=True) + 1e-5))
    np.testing.assert_allclose(inorm(_t(x)).numpy(), ref.reshape(x.shape), rtol=1e-4,
                               atol=1e-5)
    with pytest.raises(ValueError):
        M.GroupNorm(3, 4)


def test_dropout_eval_identity_and_train_mask():
    x = np.ones((1000,), np.float32)
    d = M.Dropout(0.5)
    d.eval()
    np.testing.assert_array_equal(d(_t(x)).numpy(), x)
    d.train()
    y = d(_t(x)).numpy()
    assert set(np.unique(y).tolist()) <= {0.0, 2.0}
    assert 300 < (y == 0).sum() < 700
    assert M.Dropout(0.0)(_t(x)).numpy().sum() == 1000


def test_pooling_values():
    x = _x(1, 2, 4, 4)
    mp = M.MaxPool2d(2)(_t(x)).numpy()
    ap = M.AvgPool2d(2)(_t(x)).numpy()
    xr = x.reshape(1, 2, 2, 2, 2, 2)
    np.testing.assert_allclose(mp, xr.max(axis=(3, 5)), rtol=1e-6)
    np.testing.assert_allclose(ap, xr.mean(axis=(3, 5)), rtol=1e-5, atol=1e-6)


def test_adaptive_pooling_values():
    x = _x(1, 2, 4, 4)
    np.testing.assert_allclose(M.AdaptiveAvgPool2d(1)(_t(x)).numpy(),
                               x.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(M.AdaptiveMaxPool2d((2, 2))(_t(x)).numpy(),
                               x.reshape(1, 2, 2, 2, 2, 2).max(axis=(3, 5)), rtol=1e-6)


def test_embedding_lookup():
    w = _x(10, 3)
    m = M.Embedding(10, 3, initial_weight=_t(w))
    idx = ty.tensor(np.array([[1, 2], [9, 1]], np.int32))
    np.testing.assert_allclose(m(idx).numpy(), w[[[1, 2], [9, 1]]], rtol=1e-6)
    assert np.all(M.Embedding(5, 2, padding_idx=0).weight.numpy()[0] == 0)
    with pytest.raises(ValueError):
        M.Embedding(10, 3, initial_weight=_t(_x(3, 3)))


def test_concat_module():
    a, b = _x(2, 3), _x(2, 1)
    np.testing.assert_array_equal(M.Concat()([_t(a), _t(b)], axis=1).numpy(),
                                  np.concatenate([a, b], 1))


def test_pad_module():
    x = _x(2, 3)
    y = M.Pad(((0, 0), (1, 2)), constant_val=5.0)(_t(x)).numpy()
    np.testing.assert_array_equal(y, np.pad(x, ((0, 0), (1, 2)), constant_values=5.0))


def test_pixel_shuffle_values():
    x = np.arange(2 * 8 * 2 * 3, dtype=np.float32).reshape(2, 8, 2, 3)
    r = 2
    ref = x.reshape(2, 2, r, r, 2, 3).transpose(0, 1, 4, 2, 5, 3).reshape(2, 2, 4, 6)
    np.testing.assert_array_equal(M.PixelShuffle(2)(_t(x)).numpy(), ref)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def test_multihead_attention_vs_numpy():
    """MegEngine's packed io_weight_bias: q, k, v, out weights (x @ W), then the biases."""
    e, h, n, lq = 8, 2, 2, 3
    m = M.MultiHeadAttention(e, h)
    wb = m.io_weight_bias.numpy()[0].copy()
    assert wb.shape == (4 * e * e + 4 * e,) and not wb[4 * e * e:].any()  # biases start at 0
    wb[4 * e * e:] = np.random.default_rng(0).uniform(-0.1, 0.1, 4 * e)
    m.io_weight_bias._assign(ty.tensor(wb.reshape(1, -1)))
    x = _x(n, lq, e)
    out, w = m(_t(x), need_weights=True, average_attn_weights=True)
    ws = [wb[i * e * e:(i + 1) * e * e].reshape(e, e) for i in range(4)]
    bs = [wb[4 * e * e + i * e:4 * e * e + (i + 1) * e] for i in range(4)]
    q, k, v = (x @ ws[i] + bs[i] for i in range(3))

    def heads(t):
        return t.reshape(n, lq, h, e // h).transpose(0, 2, 1, 3)
    att = _softmax(heads(q) @ heads(k).transpose(0, 1, 3, 2) / np.sqrt(e // h))
    o = (att @ heads(v)).transpose(0, 2, 1, 3).reshape(n, lq, e) @ ws[3] + bs[3]
    np.testing.assert_allclose(out.numpy(), o, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(w.numpy(), att.mean(1), rtol=1e-4, atol=1e-6)
    mask = np.triu(np.ones((lq, lq), bool), 1)
    _, wm = m(_t(x), attn_mask=ty.tensor(mask), need_weights=True)
    assert wm.shape == (n * h, lq, lq) and np.all(wm.numpy()[:, mask] == 0)
    _, wc = m(_t(x), is_causal=True, need_weights=True)
    np.testing.assert_array_equal(wc.numpy(), wm.numpy())
    with pytest.raises(ValueError, match="add_bias_kv is not supported"):
        M.MultiHeadAttention(e, h, add_bias_kv=True)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _lstm_ref(x, h, c, wi, wh, bi, bh):
    g = x @ wi.T + bi + h @ wh.T + bh
    H = h.shape[1]
    i, f, gg, o = _sig(g[:, :H]), _sig(g[:, H:2 * H]), np.tanh(g[:, 2 * H:3 * H]), \
        _sig(g[:, 3 * H:])
    c2 = f * c + i * gg
    return o * np.tanh(c2), c2


def _gru_ref(x, h, wi, wh, bi, bh):
    gi, gh = x @ wi.T + bi, h @ wh.T + bh
    H = h.shape[1]
    r = _sig(gi[:, :H] + gh[:, :H])
    z = _sig(gi[:, H:2 * H] + gh[:, H:2 * H])
    nn = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
    return (1 - z) * nn + z * h


def test_lstm_cell_one_step():
    cell = M.LSTMCell(3, 4)
    assert cell.weight_ih.shape == (16, 3) and cell.bias_hh.shape == (16,)
    x, h, c = _x(2, 3, seed=1), _x(2, 4, seed=2), _x(2, 4, seed=3)
    h2, c2 = cell(_t(x), (_t(h), _t(c)))
    rh, rc = _lstm_ref(x, h, c, cell.weight_ih.numpy(), cell.weight_hh.numpy(),
                       cell.bias_ih.numpy(), cell.bias_hh.numpy())
    np.testing.assert_allclose(h2.numpy(), rh, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c2.numpy(), rc, rtol=1e-5, atol=1e-6)
    h0, c0 = cell(_t(x))
    rh0, _ = _lstm_ref(x, 0 * h, 0 * c, cell.weight_ih.numpy(), cell.weight_hh.numpy(),
                       cell.bias_ih.numpy(), cell.bias_hh.numpy())
    np.testing.assert_allclose(h0.numpy(), rh0, rtol=1e-5, atol=1e-6)


def test_gru_cell_one_step():
    cell = M.GRUCell(3, 4)
    x, h = _x(2, 3, seed=1), _x(2, 4, seed=2)
    ref = _gru_ref(x, h, cell.weight_ih.numpy(), cell.weight_hh.numpy(), cell.bias_ih.numpy(),
                   cell.bias_hh.numpy())
    np.testing.assert_allclose(cell(_t(x), _t(h)).numpy(), ref, rtol=1e-5, atol=1e-6)


def test_lstm_layer_vs_numpy():
    lstm = M.LSTM(3, 4, num_layers=2, batch_first=True)
    names = [k for k, _ in lstm.named_parameters()]
    assert "weight_ih_l1" in names and len(names) == 8
    x = _x(2, 5, 3)
    out, (hn, cn) = lstm(_t(x))
    assert out.shape == (2, 5, 4) and hn.shape == (2, 2, 4) and cn.shape == (2, 2, 4)
    inp = x.transpose(1, 0, 2)
    for layer in range(2):
        w = [getattr(lstm, f"{n}_l{layer}").numpy() for n in
             ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h = c = np.zeros((2, 4), np.float32)
        outs = []
        for t in range(5):
            h, c = _lstm_ref(inp[t], h, c, *w)
            outs.append(h)
        inp = np.stack(outs)
        np.testing.assert_allclose(hn.numpy()[layer], h, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out.numpy(), inp.transpose(1, 0, 2), rtol=1e-4, atol=1e-5)


def test_gru_bidirectional_vs_numpy():
    gru = M.GRU(3, 2, bidirectional=True)
    x = _x(4, 1, 3)
    out, hn = gru(_t(x))
    assert out.shape == (4, 1, 4) and hn.shape == (2, 1, 2)
    wf = [getattr(gru, f"{n}_l0").numpy() for n in ("weight_ih", "weight_hh", "bias_ih",
                                                      "bias_hh")]
    wb = [getattr(gru, f"{n}_l0_reverse").numpy() for n in ("weight_ih", "weight_hh",
                                                              "bias_ih", "bias_hh")]
    h = np.zeros((1, 2), np.float32)
    fw = []
    for t in range(4):
        h = _gru_ref(x[t], h, *wf)
        fw.append(h)
    h = np.zeros((1, 2), np.float32)
    bw = [None] * 4
    for t in range(3, -1, -1):
        h = _gru_ref(x[t], h, *wb)
        bw[t] = h
    ref = np.concatenate([np.stack(fw), np.stack(bw)], 2)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(hn.numpy()[1], bw[0], rtol=1e-4, atol=1e-5)


def test_gradients_flow_through_modules():
    net = M.Sequential(M.Linear(3, 4), M.ReLU(), M.Linear(4, 1))
    gm = ty.autodiff.GradManager().attach(net.parameters())
    with gm:
        loss = net(_t(_x(5, 3))).sum()
        gm.backward(loss)
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
