"""The model zoo (tianyuan.models, the repository's hubconf.py): every architecture has
torchvision's parameter count and tensor count, torchvision's parameter names and shapes where
spot-checked, the right output shape, and a small one trains (a step changes its weights and
BatchNorm statistics and lowers the loss on the batch)."""
import importlib.util
import os

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.models as models
import tianyuan.module.init as init
from tianyuan.autodiff import GradManager
from tianyuan.optimizer import SGD

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SANITIZED = bool(os.environ.get("TY_PYTHON_DIR"))   # make test-py-asan: a Debug ASan build

# torchvision's counts at 1000 classes: parameters, and state_dict tensors without its
# BatchNorm num_batches_tracked counters (MegEngine has none)
TORCHVISION = {
    "resnet18": (11689512, 102), "resnet34": (21797672, 182), "resnet50": (25557032, 267),
    "resnet101": (44549160, 522), "resnet152": (60192808, 777),
    "resnext50_32x4d": (25028904, 267), "resnext101_32x8d": (88791336, 522),
    "shufflenet_v2_x0_5": (1366792, 282), "shufflenet_v2_x1_0": (2278604, 282),
    "shufflenet_v2_x1_5": (3503624, 282), "shufflenet_v2_x2_0": (7393996, 282),
    "mobilenet_v2": (3504872, 262),
}
BIG = {"resnet101", "resnet152", "resnext101_32x8d"}


@pytest.fixture
def no_random_fill(monkeypatch):
    """Shapes only: skip drawing the random initial weights (tens of millions of numbers)."""
    monkeypatch.setattr(init, "normal_", lambda tensor, mean=0.0, std=1.0: None)


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_parameter_counts_and_output_shape_are_torchvisions(name, no_random_fill):
    if SANITIZED and name in BIG:
        pytest.skip("the largest models are too slow under the sanitizers")
    net = getattr(models, name)()
    params, tensors = TORCHVISION[name]
    assert sum(p.size for p in net.parameters()) == params
    assert len(net.state_dict()) == tensors
    net.eval()
    shape = (1, 3, 32, 32) if SANITIZED else (2, 3, 40, 32)
    assert net(ty.tensor(np.ones(shape, np.float32))).shape == (shape[0], 1000)


@pytest.mark.parametrize("name, features", [("resnet18", 512), ("resnet50", 2048),
                                            ("shufflenet_v2_x2_0", 2048),
                                            ("mobilenet_v2", 1280)])
def test_num_classes_sets_the_classifier(name, features, no_random_fill):
    net = getattr(models, name)(num_classes=7)
    assert sum(p.size for p in net.parameters()) == TORCHVISION[name][0] - 993 * (features + 1)
    assert net(ty.tensor(np.ones((1, 3, 32, 32), np.float32))).shape == (1, 7)


def _shapes(net):
    return {k: v.shape for k, v in net.state_dict().items()}


def test_names_and_shapes_are_torchvisions_so_weights_copy_key_by_key(no_random_fill):
    r18 = _shapes(models.resnet18())
    assert r18["conv1.weight"] == (64, 3, 7, 7) and r18["bn1.running_var"] == (64,)
    assert r18["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert r18["layer2.0.downsample.1.bias"] == (128,) and r18["fc.weight"] == (1000, 512)
    assert not any(k.startswith("layer1.0.downsample") for k in r18)
    r50 = _shapes(models.resnext50_32x4d())
    # MegEngine's grouped weight (groups, out/groups, in/groups, kh, kw): torchvision's
    # (256, 4, 3, 3) in the same element order
    assert r50["layer2.0.conv2.weight"] == (32, 8, 8, 3, 3)
    assert r50["layer4.2.conv3.weight"] == (2048, 1024, 1, 1)
    sh = _shapes(models.shufflenet_v2_x1_0())
    assert sh["stage2.0.branch1.0.weight"] == (24, 1, 1, 3, 3)
    assert sh["stage2.0.branch2.0.weight"] == (58, 24, 1, 1)
    assert sh["stage2.1.branch2.0.weight"] == (58, 58, 1, 1)
    assert sh["conv5.0.weight"] == (1024, 464, 1, 1) and sh["fc.bias"] == (1000,)
    assert not any(k.startswith("stage2.1.branch1") for k in sh)
    mb = _shapes(models.mobilenet_v2())
    assert mb["features.0.0.weight"] == (32, 3, 3, 3)
    assert mb["features.1.conv.0.0.weight"] == (32, 1, 1, 3, 3)  # t=1: no expansion
    assert mb["features.1.conv.1.weight"] == (16, 32, 1, 1)
    assert mb["features.2.conv.0.0.weight"] == (96, 16, 1, 1)
    assert mb["features.18.0.weight"] == (1280, 320, 1, 1)
    assert mb["classifier.1.weight"] == (1000, 1280)


def test_channel_shuffle_interleaves_the_two_halves():
    from tianyuan.models.shufflenet import channel_shuffle
    x = np.arange(2 * 6 * 2 * 1, dtype=np.float32).reshape(2, 6, 2, 1)
    y = channel_shuffle(ty.tensor(x), 2).numpy()
    np.testing.assert_array_equal(y, x[:, [0, 3, 1, 4, 2, 5]])


def test_resnet_features_and_zero_init_residual(no_random_fill):
    net = models.resnet18(zero_init_residual=True)
    assert all(np.all(b.bn2.weight.numpy() == 0) for b in (net.layer1[0], net.layer4[1]))
    assert np.all(net.layer1[0].bn1.weight.numpy() == 1)
    feats = net.extract_features(ty.tensor(np.zeros((1, 3, 64, 64), np.float32)))
    assert {k: v.shape for k, v in feats.items()} == {
        "res2": (1, 64, 16, 16), "res3": (1, 128, 8, 8), "res4": (1, 256, 4, 4),
        "res5": (1, 512, 2, 2)}


def test_bad_configurations_are_refused():
    from tianyuan.models.resnet import BasicBlock
    from tianyuan.models.shufflenet import ShuffleV2Block
    with pytest.raises(ValueError, match="groups=1"):
        models.ResNet(BasicBlock, [1, 1, 1, 1], groups=2)
    with pytest.raises(ValueError, match="replace_stride_with_dilation"):
        models.resnet50(replace_stride_with_dilation=[True])
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        ShuffleV2Block(24, 24, 3)
    with pytest.raises(ValueError, match=r"\[t, c, n, s\]"):
        models.mobilenet_v2(inverted_residual_setting=[[1, 16, 1]])


def test_a_training_step_updates_weights_and_batchnorm_stats_and_lowers_the_loss():
    ty.random.seed(0)
    net = models.shufflenet_v2_x0_5(num_classes=4)
    net.train()
    rng = np.random.default_rng(1)
    # Batch 8 at 64x64 keeps BatchNorm's statistics over more than a handful of values in
    # the last stage; at 32x32 and batch 4 the gradients reach 1e3 (PyTorch's too) and the
    # loss after a step depends on the last bits of the previous one.
    x = ty.tensor(rng.standard_normal((8, 3, 64, 64)).astype(np.float32))
    label = ty.tensor((np.arange(8) % 4).astype(np.int32))
    gm = GradManager().attach(net.parameters())
    opt = SGD(net.parameters(), lr=0.01, momentum=0.9)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    losses = []
    for _ in range(3):
        with gm:
            loss = F.nn.cross_entropy(net(x), label)
            gm.backward(loss)
        opt.step().clear_grad()
        losses.append(float(loss.numpy()))
    after = net.state_dict()
    assert np.isfinite(losses).all() and losses[-1] < losses[0], losses
    for key in ("conv1.0.weight", "stage3.0.branch1.0.weight", "fc.weight",
                "conv1.1.running_mean", "stage4.3.branch2.6.running_var"):
        assert not np.array_equal(before[key], after[key]), key


def test_hubconf_lists_every_model_and_its_dependencies():
    spec = importlib.util.spec_from_file_location("hubconf", os.path.join(ROOT, "hubconf.py"))
    hub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hub)
    assert hub.dependencies == ["tianyuan", "numpy"]
    entries = {n for n in dir(hub) if not n.startswith("_") and callable(getattr(hub, n))}
    assert entries == set(TORCHVISION)
    net = hub.shufflenet_v2_x0_5(num_classes=3)
    assert isinstance(net, models.ShuffleNetV2) and net.fc.weight.shape == (3, 1024)
    with pytest.raises(ValueError, match="no pretrained weights are published for resnet18"):
        hub.resnet18(pretrained=True)
