"""Modules over the new functions: MegEngine's parameter layouts and init, forward equals the
function, gradients reach the parameters, and MegEngine's documented examples."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M

from .helpers import t64


def _f32(rng, shape):
    return ty.tensor(rng.standard_normal(shape).astype("float32"))


def _grads_reach(module, *inputs):
    gm = ty.autodiff.GradManager().attach(module.parameters())
    with gm:
        gm.backward(module(*inputs).sum())
    for name, p in module.named_parameters():
        assert p.grad is not None and np.abs(p.grad.numpy()).sum() > 0, name


def test_conv3d_module(rng):
    m = M.Conv3d(4, 6, (2, 3, 2), stride=(1, 2, 1), padding=1, groups=2)
    assert m.weight.shape == (2, 3, 2, 2, 3, 2) and m.bias.shape == (1, 6, 1, 1, 1)
    std = m.weight.numpy().std()
    assert 0.5 * np.sqrt(1 / 48) < std < 1.5 * np.sqrt(1 / 48)  # N(0, 1/fan_in)
    x = _f32(rng, (2, 4, 3, 5, 4))
    np.testing.assert_array_equal(m(x).numpy(), F.conv3d(x, m.weight, m.bias, (1, 2, 1), 1, 1,
                                                         2).numpy())
    _grads_reach(m, x)
    assert M.Conv3d(3, 1, 3)(_f32(rng, (2, 3, 4, 4, 4))).shape == (2, 1, 2, 2, 2)


def test_conv_transpose3d_module(rng):
    m = M.ConvTranspose3d(4, 2, 3, stride=2, output_padding=1)
    assert m.weight.shape == (4, 2, 3, 3, 3) and m.bias.shape == (1, 2, 1, 1, 1)
    x = _f32(rng, (1, 4, 2, 3, 2))
    y = m(x)
    assert y.shape == (1, 2, 6, 8, 6)
    np.testing.assert_array_equal(y.numpy(), F.conv_transpose3d(
        x, m.weight, m.bias, 2, 0, 1).numpy())
    _grads_reach(m, x)
    assert M.ConvTranspose3d(4, 6, 2, groups=2).weight.shape == (2, 2, 3, 2, 2, 2)


def test_local_conv2d_module(rng):
    m = M.LocalConv2d(2, 4, 5, 5, 3, padding=1, groups=2)
    assert m.weight.shape == (2, 5, 5, 1, 3, 3, 2)
    x = _f32(rng, (3, 2, 5, 5))
    np.testing.assert_array_equal(m(x).numpy(), F.local_conv2d(x, m.weight, None, 1, 1).numpy())
    _grads_reach(m, x)
    with pytest.raises(ValueError, match="LocalConv2d: the kernel does not fit"):
        M.LocalConv2d(2, 4, 2, 2, 3)


def test_deformable_conv2d_module(rng):
    m = M.DeformableConv2d(2, 4, 3, padding=1)
    x = _f32(rng, (1, 2, 4, 4))
    off, mask = _f32(rng, (1, 18, 4, 4)), ty.tensor(rng.random((1, 9, 4, 4)).astype("float32"))
    np.testing.assert_array_equal(m(x, off, mask).numpy(), F.deformable_conv2d(
        x, m.weight, off, mask, m.bias, 1, 1).numpy())
    _grads_reach(m, x, off, mask)


def test_region_restricted_conv_module(rng):
    m = M.RegionRestrictedConv(2, 2, 2, groups=2)
    assert m.weight.shape == (2, 1, 1, 2, 2)
    x = _f32(rng, (1, 2, 2, 2))
    rin = ty.tensor(rng.integers(0, 2, (1, 2, 2)).astype("int32"))
    rout = ty.tensor(np.zeros((1, 1, 1), "int32"))
    assert m(x, rin, rout).shape == (1, 2, 1, 1)
    with pytest.raises(ValueError, match="padding_mode='zeros'"):
        M.RegionRestrictedConv(2, 2, 2, padding_mode="reflect")


def test_sliding_window_module_megengine_example():
    out = M.SlidingWindow(kernel_size=3, padding=1, stride=2, dilation=2)(
        ty.tensor(np.arange(30).reshape(1, 1, 5, 6), dtype="int32"))
    want = [[[[0, 0, 0], [0, 7, 9], [0, 19, 21]], [[0, 0, 0], [7, 9, 11], [19, 21, 23]]],
            [[[0, 7, 9], [0, 19, 21], [0, 0, 0]], [[7, 9, 11], [19, 21, 23], [0, 0, 0]]]]
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out.numpy()[0, 0], want)
    back = M.SlidingWindowTranspose((5, 6), 3, 1, 2, 2)(out.astype("float32"))
    assert back.shape == (1, 1, 5, 6)
    assert float(back.numpy()[0, 0, 1, 1]) == 7 * 4  # pixel (1, 1) lies in all four windows


def test_norm_modules(rng):
    x = rng.standard_normal((2, 5, 3, 3))
    lrn = M.LocalResponseNorm(3, 1.0, 0.01, 0.5)
    np.testing.assert_array_equal(lrn(t64(x)).numpy(),
                                  F.local_response_norm(t64(x), 3, 1.0, 0.01, 0.5).numpy())
    gn = M.GeneralNorm((5, 3), (1, 2))
    assert gn.weight.shape == (5, 3) and float(gn.weight.numpy().min()) == 1.0
    y = gn(ty.tensor(x.astype("float32"))).numpy()
    np.testing.assert_allclose(y.mean(axis=(1, 2)), 0, atol=1e-5)
    _grads_reach(gn, ty.tensor(x.astype("float32")) * ty.tensor(
        rng.standard_normal((1, 5, 1, 1)).astype("float32")))
    assert M.GeneralNorm(normalized_axis=0, affine=False)(t64(x)).shape == x.shape
    with pytest.raises(ValueError, match="normalized_shape must be given"):
        M.GeneralNorm()


def test_modules_train_trace_and_deploy(rng):
    """A small network of the new modules: a traced SGD step equals the eager one, and the
    dumped inference graph run by the C runtime gives eager's bits."""
    import io
    from tianyuan.utils.comp_graph_tools import GraphInference

    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.c3 = M.Conv3d(2, 4, 3, padding=1)
            self.lrn = M.LocalResponseNorm(3)
            self.local = M.LocalConv2d(4, 4, 4, 4, 3, padding=1)
            self.gn = M.GeneralNorm((4, 4, 4), (1, 2, 3))
            self.attn = M.MultiHeadAttention(4, 2)

        def forward(self, x):
            y = self.c3(x).mean(axis=2)          # (N, 4, 4, 4)
            y = self.gn(self.local(self.lrn(y)))
            seq = y.reshape(y.shape[0], 4, 16).transpose(0, 2, 1)  # (N, 16, 4)
            return self.attn(seq)[0].mean(axis=1)

    def make():
        ty.random.seed(0)
        return Net()

    x = ty.tensor(rng.standard_normal((2, 2, 3, 4, 4)).astype("float32"))

    def step(net, opt, gm):
        with gm:
            loss = (net(x) ** 2).mean()
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    eager = make()
    eopt = ty.optimizer.SGD(eager.parameters(), lr=0.1)
    egm = ty.autodiff.GradManager().attach(eager.parameters())
    traced_net = make()
    topt = ty.optimizer.SGD(traced_net.parameters(), lr=0.1)
    tgm = ty.autodiff.GradManager().attach(traced_net.parameters())
    traced_step = ty.jit.trace(lambda: step(traced_net, topt, tgm))
    losses = []
    for _ in range(3):
        le, lt = step(eager, eopt, egm), traced_step()
        np.testing.assert_array_equal(lt.numpy(), le.numpy())
        losses.append(float(le.numpy()))
    assert losses[-1] < losses[0]  # the gradients reach every module and descend
    eager.eval()
    f = ty.jit.trace(lambda t: eager(t), capture_as_const=True)
    want = f(x).numpy()
    buf = io.BytesIO()
    f.dump(buf)
    got = list(GraphInference(buf.getvalue()).run(x.numpy()).values())[0]
    assert got.tobytes() == want.tobytes()
