"""Float fused modules, quant stubs and module.init names MegEngine model files import."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.autodiff import GradManager


def _x(*shape, seed=0):
    return ty.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _copy(dst, src):
    dst.load_state_dict(src.state_dict())


def _close(a, b):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-5)


def test_quant_stubs_are_identity_and_disable_quantize_marks_tree():
    net = M.Sequential(M.QuantStub(), M.Linear(3, 2), M.DequantStub())
    x = _x(4, 3)
    _close(net(x), net[1](x))
    assert net.disable_quantize() is net
    assert all(m.quantize_disabled for m in net.modules())


@pytest.mark.parametrize("cls,act", [(M.ConvBn2d, False), (M.ConvBnRelu2d, True)])
def test_conv_bn_matches_unfused_pair_and_keys(cls, act):
    m = cls(3, 4, 3, stride=2, padding=1, bias=False)
    assert sorted(m.state_dict()) == ["bn.bias", "bn.running_mean", "bn.running_var",
                                      "bn.weight", "conv.weight"]
    conv, bn = M.Conv2d(3, 4, 3, stride=2, padding=1, bias=False), M.BatchNorm2d(4)
    conv.weight._assign(m.conv.weight.numpy())
    x = _x(2, 3, 7, 7)
    y = m(x)
    ref = bn(conv(x))
    _close(y, F.relu(ref) if act else ref)
    assert (y.numpy().min() >= 0) == act
    # training updated the running stats the same way
    _close(m.bn.running_mean, bn.running_mean)
    m.eval()
    bn.eval()
    ref = bn(conv(x))
    _close(m(x), F.relu(ref) if act else ref)


@pytest.mark.parametrize("cls,act", [(M.ConvTransposeBn2d, False),
                                     (M.ConvTransposeBnRelu2d, True)])
def test_conv_transpose_bn_matches_unfused(cls, act):
    m = cls(4, 2, 3, stride=2)
    assert "conv_transpose2d.weight" in m.state_dict()
    ct, bn = M.ConvTranspose2d(4, 2, 3, stride=2), M.BatchNorm2d(2)
    ct.weight._assign(m.conv_transpose2d.weight.numpy())
    x = _x(2, 4, 3, 3)
    ref = bn(ct(x))
    _close(m(x), F.relu(ref) if act else ref)


@pytest.mark.parametrize("cls,act", [(M.LinearBn1d, False), (M.LinearBnRelu1d, True)])
def test_linear_bn_matches_unfused_and_keeps_megengine_keys(cls, act):
    m = cls(3, 5)
    assert sorted(m.state_dict()) == ["bias", "bn.bias", "bn.running_mean", "bn.running_var",
                                      "bn.weight", "linear.bias", "linear.weight"]
    lin, bn = M.Linear(3, 5), M.BatchNorm1d(5)
    _copy(lin, m.linear)
    x = _x(6, 3)
    ref = bn(lin(x))
    _close(m(x), F.relu(ref) if act else ref)


def test_relu_fused_layers():
    x = _x(2, 3, 6, 6)
    c = M.ConvRelu2d(3, 4, 3, padding=1)
    plain = M.Conv2d(3, 4, 3, padding=1)
    _copy(plain, c)
    _close(c(x), F.relu(plain(x)))
    t = M.ConvTransposeRelu2d(3, 2, 2, stride=2)
    plain_t = M.ConvTranspose2d(3, 2, 2, stride=2)
    _copy(plain_t, t)
    _close(t(x), F.relu(plain_t(x)))
    lin = M.LinearRelu(4, 3)
    plain_l = M.Linear(4, 3)
    _copy(plain_l, lin)
    v = _x(5, 4)
    _close(lin(v), F.relu(plain_l(v)))
    assert lin(v).numpy().min() >= 0


def test_batch_matmul_activation_against_numpy_and_grad():
    m = M.BatchMatMulActivation(2, 3, 4, nonlinear_mode="RELU")
    m.bias._assign(np.arange(4, dtype=np.float32) - 1.5)
    x = _x(2, 3, 5)
    w, b = m.weight.numpy(), m.bias.numpy()
    ref = np.maximum(np.matmul(w, x.numpy()) + b.reshape(1, 4, 1), 0)
    np.testing.assert_allclose(m(x).numpy(), ref, rtol=1e-5, atol=1e-5)
    gm = GradManager().attach(m.parameters())
    with gm:
        gm.backward(m(x).sum())
    assert m.weight.grad.shape == (2, 4, 3) and m.bias.grad.shape == (4,)
    with pytest.raises(ValueError, match="nonlinear_mode"):
        M.BatchMatMulActivation(1, 2, 2, nonlinear_mode="tanh")


def test_fused_block_trains_like_megengine_resnet_block():
    """A ResNet basic block as MegEngine/Models writes it with fused modules: one SGD step."""
    class Block(M.Module):
        def __init__(self):
            super().__init__()
            self.quant = M.QuantStub()
            self.conv_bn_relu = M.ConvBnRelu2d(4, 4, 3, padding=1, bias=False)
            self.conv_bn = M.ConvBn2d(4, 4, 3, padding=1, bias=False)
            self.add_relu = M.Elemwise("FUSE_ADD_RELU")
            self.dequant = M.DequantStub()
            for mod in self.modules():
                if isinstance(mod, M.Conv2d):
                    M.init.msra_normal_(mod.weight, mode="fan_out", nonlinearity="relu")

        def forward(self, x):
            x = self.quant(x)
            return self.dequant(self.add_relu(self.conv_bn(self.conv_bn_relu(x)), x))

    net = Block()
    opt = ty.optimizer.SGD(net.parameters(), lr=0.1)
    gm = GradManager().attach(net.parameters())
    before = net.conv_bn.conv.weight.numpy().copy()
    with gm:
        loss = net(_x(2, 4, 6, 6)).mean()
        gm.backward(loss)
    opt.step()
    assert not np.array_equal(before, net.conv_bn.conv.weight.numpy())


def test_init_module_exposes_megengine_names():
    assert M.init.full((2,), 3.0).numpy().tolist() == [3.0, 3.0]
    assert M.init.uniform(0, 1, (100,)).numpy().max() <= 1.0
    assert M.init.normal(0, 1, (3,)).shape == (3,)
    assert M.init.Tensor is ty.Tensor
    w = ty.Parameter(np.zeros((8, 4, 3, 3), np.float32))
    assert M.init.calculate_fan_in_and_fan_out(w) == (36, 72)
    M.init.msra_uniform_(w, a=5 ** 0.5)
    bound = M.init.calculate_gain("leaky_relu", 5 ** 0.5) * (3 / 36) ** 0.5
    assert 0 < np.abs(w.numpy()).max() <= bound


def test_sync_batch_norm_is_local_batch_norm_in_one_process():
    sbn, bn = M.SyncBatchNorm(3), M.BatchNorm2d(3)
    x = _x(4, 3, 5, 5)
    _close(sbn(x), bn(x))
    _close(sbn.running_mean, bn.running_mean)
    _close(sbn(_x(6, 3)), M.BatchNorm1d(3)(_x(6, 3)))
    with pytest.raises(ValueError, match="2D, 3D or 4D"):
        sbn(_x(2, 3, 2, 2, 2))
    import tianyuan.distributed as dist  # the world of one process: local statistics
    _close(M.SyncBatchNorm(3, group=dist.WORLD)(x), M.BatchNorm2d(3)(x))
