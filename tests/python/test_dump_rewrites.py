"""trace.dump's rewrites (optimize_for_inference and MegEngine's keywords): the default ones
keep every bit (constant folding of parameter-only ops, CSE), conv2d + BatchNorm + activation
(+ a residual add) become conv_bias ops on request within 1e-5 of eager on a ResNet-style and
a MobileNetV2-style net, float16 edges (enable_io16xc32), every other keyword refused by
name; the rewritten models run in GraphInference and in tianyuan-run alike."""
import io
import json
import os
import subprocess

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CLI = os.path.join(os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build")), "tianyuan-run")
needs_cli = pytest.mark.skipif(not os.path.exists(CLI), reason="tianyuan-run is not built here")
_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}

FUSE = dict(enable_fuse_conv_bias_nonlinearity=True)
FUSE_Z = dict(enable_fuse_conv_bias_nonlinearity=True, enable_fuse_conv_bias_with_z=True)


def _bn(c):
    return M.BatchNorm2d(c)


class Basic(M.Module):
    """ResNet's basic block: two conv-bn, a shortcut (conv-bn when the shape changes), relu."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = M.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _bn(cout)
        self.conv2 = M.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _bn(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = M.Sequential(M.Conv2d(cin, cout, 1, stride, bias=False), _bn(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ResNetish(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn = _bn(8)
        self.layer1 = Basic(8, 8, 1)
        self.layer2 = Basic(8, 16, 2)
        self.fc = M.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        x = self.layer2(self.layer1(x))
        return self.fc(F.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InvRes(M.Module):
    """MobileNetV2's inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project (linear)."""

    def __init__(self, cin, cout, stride, act):
        super().__init__()
        hid = cin * 2
        self.res = stride == 1 and cin == cout
        self.pw = M.Conv2d(cin, hid, 1, bias=False)
        self.bn1 = _bn(hid)
        self.dw = M.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False)
        self.bn2 = _bn(hid)
        self.pwl = M.Conv2d(hid, cout, 1, bias=False)
        self.bn3 = _bn(cout)
        self.act = act

    def forward(self, x):
        y = self.act(self.bn1(self.pw(x)))
        y = self.act(self.bn2(self.dw(y)))
        y = self.bn3(self.pwl(y))
        return x + y if self.res else y


class MobileNetish(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(3, 8, 3, 2, 1, bias=False)
        self.bn = _bn(8)
        self.blocks = M.Sequential(InvRes(8, 8, 1, F.relu6), InvRes(8, 12, 2, F.hswish),
                                   InvRes(12, 12, 1, lambda t: F.clip(t, 0, 6)))
        self.head = M.Conv2d(12, 16, 1)  # with a bias, then sigmoid
        self.fc = M.Linear(16, 10)

    def forward(self, x):
        x = self.blocks(F.relu6(self.bn(self.conv(x))))
        x = F.sigmoid(self.head(x))
        return self.fc(F.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _randomize_bn(net, rng):
    """Running statistics and affine parameters away from their identity defaults."""
    for m in net.modules():
        if isinstance(m, M.BatchNorm2d):
            c = m.running_mean.shape
            m.running_mean._assign(ty.tensor(rng.normal(0, 0.5, c).astype(np.float32)))
            m.running_var._assign(ty.tensor(rng.uniform(0.3, 2.0, c).astype(np.float32)))
            m.weight._assign(ty.tensor(rng.uniform(0.5, 1.5, m.weight.shape).astype(np.float32)))
            m.bias._assign(ty.tensor(rng.normal(0, 0.5, m.bias.shape).astype(np.float32)))


def _net(cls, seed=0):
    ty.random.seed(seed)
    net = cls()
    _randomize_bn(net, np.random.default_rng(seed))
    net.eval()
    return net


def _traced(fn, x):
    f = trace(fn, capture_as_const=True)
    f(ty.tensor(x))
    return f


def _dump(f, **kw):
    buf = io.BytesIO()
    res = f.dump(buf, **kw)
    return buf.getvalue(), res


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _rel_err(got, want):
    return float(np.abs(got.astype(np.float64) - want).max() / np.abs(want).max())


def _count(net, cls):
    return sum(isinstance(m, cls) for m in net.modules())


def _x(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- the default rewrites keep every bit ----

def test_default_folds_parameter_only_ops_and_keeps_bits():
    net = _net(ResNetish)
    x = _x((2, 3, 16, 16))
    f = _traced(net, x)
    data, res = _dump(f)
    plain, plain_res = _dump(f, optimize_for_inference=False)
    rw = json.loads(res.metadata)["rewrites"]
    # per BatchNorm: running_var + eps, its sqrt and weight / sqrt (the parameters' reshapes
    # stay views)
    assert rw["folded"] == 3 * _count(net, M.BatchNorm2d) and rw["conv_bias"] == 0
    assert json.loads(plain_res.metadata)["rewrites"] is None
    assert res.nr_opr < plain_res.nr_opr
    for batch in (2, 3):
        xb = _x((batch, 3, 16, 16), seed=batch)
        want = net(ty.tensor(xb)).numpy()
        for model in (data, plain):
            assert _bits_equal(GraphInference(model).run(xb)["output_0"], want), batch


def test_cse_merges_identical_ops_with_the_same_bits():
    w = ty.tensor(_x((4, 4), seed=3))

    def fn(x):
        return F.matmul(F.exp(x), w) + F.matmul(F.exp(x), w)

    x = _x((3, 4))
    f = _traced(fn, x)
    data, res = _dump(f)
    _, plain = _dump(f, optimize_for_inference=False)
    assert json.loads(res.metadata)["rewrites"]["cse"] == 2
    assert (res.nr_opr, plain.nr_opr) == (3, 5)
    assert _bits_equal(GraphInference(data).run(x)["output_0"], fn(ty.tensor(x)).numpy())


def test_a_fold_that_would_grow_the_weights_stays_an_op():
    """A parameter broadcast to the batch's shape is not stored: the model keeps taking any
    batch size and its weights stay the parameter's bytes."""
    b = ty.tensor(_x((1, 5), seed=4))

    def fn(x):
        return x * F.broadcast_to(b * 2, (4, 5))

    x = _x((4, 5))
    f = _traced(fn, x)
    data, res = _dump(f)
    rw = json.loads(res.metadata)["rewrites"]
    assert rw["folded"] == 1 and res.weight_bytes == 5 * 4  # b * 2 folded; the broadcast not
    assert _bits_equal(GraphInference(data).run(x)["output_0"], fn(ty.tensor(x)).numpy())


# ---- conv2d + BatchNorm + activation (+ z) -> conv_bias ----

@pytest.mark.parametrize("cls, nz", [(ResNetish, 2), (MobileNetish, 2)])
def test_fused_nets_within_1e_5_of_eager(cls, nz):
    net = _net(cls)
    x = _x((2, 3, 16, 16))
    f = _traced(net, x)
    plain, plain_res = _dump(f)
    fused, res = _dump(f, **FUSE)
    fused_z, res_z = _dump(f, **FUSE_Z)
    rw, rw_z = json.loads(res.metadata)["rewrites"], json.loads(res_z.metadata)["rewrites"]
    n, nbn = _count(net, M.Conv2d), _count(net, M.BatchNorm2d)
    assert (rw["conv_bias"], rw["bn_folded"], rw["z_fused"]) == (n, nbn, 0)
    assert (rw_z["conv_bias"], rw_z["z_fused"]) == (n, nz)
    assert plain_res.nr_opr > res.nr_opr > res_z.nr_opr
    for batch in (2, 5):
        xb = _x((batch, 3, 16, 16), seed=batch)
        want = net(ty.tensor(xb)).numpy()
        for model in (fused, fused_z):
            got = GraphInference(model).run(xb)["output_0"]
            assert got.shape == want.shape and _rel_err(got, want) <= 1e-5, batch


@pytest.mark.parametrize("act", [F.relu, F.relu6, lambda t: F.clip(t, 0, 6), F.sigmoid, F.hswish,
                                 lambda t: t], ids=["relu", "relu6", "clip", "sigmoid",
                                                    "hswish", "identity"])
@pytest.mark.parametrize("groups", [1, 3], ids=["dense", "depthwise"])
def test_conv_bias_activation_without_batchnorm_keeps_bits(act, groups):
    """conv + its bias + an activation fused: the fused op runs the same convolution and the
    unfused ops' own expressions (in the convolution's epilogue for relu and relu6), so with
    no scale folded the bits are eager's."""
    conv = M.Conv2d(3, 6, 3, padding=1, groups=groups)

    def fn(x):
        return act(conv(x))

    x = _x((2, 3, 6, 6)) * 8
    pre = conv(ty.tensor(x)).numpy()
    assert pre.max() > 6 and pre.min() < 0  # relu6 clamps on both sides
    f = _traced(fn, x)
    data, res = _dump(f, **FUSE)
    rw = json.loads(res.metadata)["rewrites"]
    assert (rw["conv_bias"], rw["bn_folded"], res.nr_opr) == (1, 0, 1)
    assert _bits_equal(GraphInference(data).run(x)["output_0"], fn(ty.tensor(x)).numpy())


def test_patterns_that_do_not_match_exactly_are_left_alone():
    conv = M.Conv2d(3, 4, 3, padding=1, bias=False)
    full = ty.tensor(_x((1, 4, 6, 6), seed=5))   # not per channel
    bn = _net(lambda: M.BatchNorm2d(4))

    def returned_twice(x):
        y = conv(x)
        return F.relu(y), y                      # the conv's output is used twice

    def not_per_channel(x):
        return F.relu(conv(x) + full)

    def leaky(x):
        return F.leaky_relu(bn(conv(x)), 0.1)    # conv + bn fused, the activation not

    def clip_other(x):
        return F.clip(bn(conv(x)), 0, 5)

    x = _x((2, 3, 6, 6))
    for fn, fused, nops in ((returned_twice, 0, 2), (not_per_channel, 0, 3), (leaky, 1, 2),
                            (clip_other, 1, 2)):
        f = _traced(fn, x)
        data, res = _dump(f, **FUSE_Z)
        assert json.loads(res.metadata)["rewrites"]["conv_bias"] == fused, fn.__name__
        assert res.nr_opr == nops, fn.__name__
        out = fn(ty.tensor(x))
        want = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        got = list(GraphInference(data).run(x).values())
        assert all(_rel_err(g, w) <= 1e-5 for g, w in zip(got, want)), fn.__name__


# ---- float16 edges ----

def test_io16xc32_float16_inputs_and_outputs_float32_compute():
    net = _net(ResNetish)
    x16 = _x((2, 3, 16, 16)).astype(np.float16)
    f = _traced(net, x16.astype(np.float32))
    data, res = _dump(f, enable_io16xc32=True)
    g = GraphInference(data)
    assert [d for _, d, _ in g._inputs] == ["float16"] and [d for _, d, _ in g._outputs] == [
        "float16"]
    assert json.loads(res.metadata)["rewrites"]["io16"] == 2
    assert g._inputs[0][2][0] == -1 and g._outputs[0][2][0] == -1   # any batch size still
    for x in (x16, _x((3, 3, 16, 16), seed=3).astype(np.float16)):
        want = net(ty.tensor(x.astype(np.float32))).numpy().astype(np.float16)
        assert _bits_equal(g.run(x)["output_0"], want)
    data, _ = _dump(f, enable_io16xc32=True, **FUSE_Z)
    got = GraphInference(data).run(x)["output_0"]
    assert got.dtype == np.float16 and np.abs(got.astype(np.float32) - want).max() <= 2e-3


# ---- keywords ----

REFUSED = ["enable_nchw4", "enable_nchw32", "enable_chwn4", "enable_nchw44", "enable_nchw44_dot",
           "enable_nchw88", "enable_nchw64", "enable_hwcd4", "enable_nhwcd4", "enable_ioc16",
           "enable_fuse_preprocess", "enable_fuse_grain", "enable_weight_preprocess"]


@pytest.fixture(scope="module")
def small():
    conv = M.Conv2d(1, 2, 3)
    return _traced(lambda x: F.relu(conv(x)), _x((1, 1, 5, 5)))


@pytest.mark.parametrize("kw", REFUSED)
def test_refused_keywords_name_themselves(small, kw):
    with pytest.raises(ValueError, match=f"trace.dump: {kw}=True is not supported: "):
        small.dump(io.BytesIO(), **{kw: True})
    small.dump(io.BytesIO(), **{kw: False})      # accepted when off


def test_keyword_combinations_and_unknown_keywords(small):
    with pytest.raises(ValueError, match="enable_fuse_conv_bias_with_z=True needs "
                                         "enable_fuse_conv_bias_nonlinearity=True"):
        small.dump(io.BytesIO(), enable_fuse_conv_bias_with_z=True)
    with pytest.raises(ValueError, match="enable_io16xc32=True needs optimize_for_inference"):
        small.dump(io.BytesIO(), optimize_for_inference=False, enable_io16xc32=True)
    with pytest.raises(ValueError, match="enable_ioc16=True is not supported"):
        small.dump(io.BytesIO(), enable_io16xc32=True, enable_ioc16=True)
    with pytest.raises(ValueError, match="unknown keyword argument 'enable_nchw45'"):
        small.dump(io.BytesIO(), enable_nchw45=False)


# ---- the rewritten models in tianyuan-run ----

def _cli(*args):
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=_ENV,
                          timeout=60)


@needs_cli
@pytest.mark.parametrize("kw", [{}, FUSE_Z, dict(enable_io16xc32=True, **FUSE_Z)],
                         ids=["default", "fused", "fused-f16"])
def test_tianyuan_run_gives_graph_inference_bits(tmp_path, kw):
    net = _net(MobileNetish)
    dt = np.float16 if kw.get("enable_io16xc32") else np.float32
    x = _x((3, 3, 16, 16)).astype(dt)
    f = _traced(net, _x((2, 3, 16, 16)))
    data, _ = _dump(f, **kw)
    (tmp_path / "m.tym").write_bytes(data)
    np.save(tmp_path / "x.npy", x)
    info = _cli(tmp_path / "m.tym", "--model-info")
    n = _count(net, M.Conv2d) if kw else 0
    assert info.returncode == 0 and (f"  conv_bias: {n}\n" in info.stdout) == bool(kw), info.stderr
    r = _cli(tmp_path / "m.tym", "--input", f"arg_0={tmp_path / 'x.npy'}", "--output",
             tmp_path / "y.npy", "--iter", 1)
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "y.npy")
    assert _bits_equal(got, GraphInference(data).run(x)["output_0"])
    assert got.dtype == dt
    if not kw:                                   # the same bits as eager
        assert _bits_equal(got, net(ty.tensor(x)).numpy())
