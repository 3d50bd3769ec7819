"""The Fashion-MNIST reference CNN of examples/fashion_mnist/train.py (conv 1->32 3x3 pad 1,
ReLU, maxpool 2; conv 32->64 3x3 pad 1, ReLU, maxpool 2; linear 3136->128, ReLU; linear
128->10; SGD lr 0.01 momentum 0.9; batch 64) trained 200 steps with the example's traced
training step ends with parameters, optimizer state, every step's loss and the last logits
bitwise equal to the eager loop from the same seed. Under the ASan build (make test-py-asan)
50 steps: the same code runs from the second step on, and each step costs several times as
much there.

Data: the first STEPS * 64 training images of /usr/share/datasets/fashion-mnist (read with
``tianyuan.data.dataset.FashionMNIST``, normalised as the example does), in order; without
the data set, seeded synthetic images and labels of the same shapes."""
import importlib.util
import os

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.optimizer as optim
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = "/usr/share/datasets/fashion-mnist"
SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")
STEPS, BATCH, SEED = (50 if SANITIZED else 200), 64, 0


def _example():
    path = os.path.join(ROOT, "examples", "fashion_mnist", "train.py")
    spec = importlib.util.spec_from_file_location("fashion_mnist_train_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _data(ex):
    """(images float32 N x 1 x 28 x 28, labels int32 N), N = STEPS * BATCH; and the source."""
    n = STEPS * BATCH
    try:
        from tianyuan.data.dataset import FashionMNIST
        ds = FashionMNIST(DATA, train=True)
        images, labels, src = ds.images[:n], ds.labels[:n], DATA
    except FileNotFoundError:
        rng = np.random.default_rng(SEED)
        images = rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        src = "synthetic"
    assert len(images) == n
    # the example's transform: T.Normalize(MEAN, STD) then T.ToMode("CHW")
    mean, std = np.float32(ex.MEAN), np.float32(ex.STD)
    x = ((images.astype(np.float32) - mean) / std).astype(np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), labels.astype(np.int32), src


def _train(ex, images, labels, traced, symbolic=False):
    ty.random.seed(SEED)                         # parameter initialisation, as the example
    model = ex.Net()
    gm = GradManager().attach(model.parameters())
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step(x, y):                        # the example's step
        with gm:
            logits = model(x)
            loss = F.nn.cross_entropy(logits, y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss, logits

    step = trace(train_step, symbolic=symbolic) if traced else train_step
    losses = []
    for i in range(STEPS):
        sl = slice(i * BATCH, (i + 1) * BATCH)
        loss, logits = step(ty.tensor(images[sl]), ty.tensor(labels[sl]))
        losses.append(loss)
    if traced:
        assert len(step._graphs) == 1 and step.num_nodes() > 0  # one graph, replayed
    return (np.array([l.numpy() for l in losses]), logits.numpy(),
            {k: np.asarray(v) for k, v in model.state_dict().items()}, opt.state_dict())


def _flat(state, prefix=""):
    """name -> numpy array of every tensor in a (nested) optimizer state dict."""
    out = {}
    items = state.items() if isinstance(state, dict) else enumerate(state)
    for k, v in items:
        name = f"{prefix}/{k}"
        if isinstance(v, (dict, list, tuple)):
            out.update(_flat(v, name))
        elif hasattr(v, "numpy"):
            out[name] = v.numpy()
        elif isinstance(v, np.ndarray):
            out[name] = v
    return out


@pytest.fixture(scope="module")
def eager_run():
    ex = _example()
    images, labels, src = _data(ex)
    return ex, images, labels, src, _train(ex, images, labels, traced=False)


@pytest.mark.parametrize("symbolic", [False, True], ids=["computed", "symbolic"])
def test_fmnist_cnn_traced_steps_are_bitwise_eager(eager_run, symbolic):
    ex, images, labels, src, (le, ge, pe, oe) = eager_run
    lt, gt, pt, ot = _train(ex, images, labels, traced=True, symbolic=symbolic)
    bad = np.flatnonzero(le.view(np.uint32) != lt.view(np.uint32))
    assert bad.size == 0, (f"[{src}] losses differ first at step {bad[0]}: eager {le[bad[0]]!r}, "
                           f"traced {lt[bad[0]]!r}")
    assert ge.tobytes() == gt.tobytes(), f"[{src}] the last logits differ"
    assert pe.keys() == pt.keys()
    for k in pe:
        assert pe[k].dtype == pt[k].dtype and pe[k].tobytes() == pt[k].tobytes(), \
            f"[{src}] parameter {k} differs after {STEPS} steps " \
            f"(max |diff| {np.abs(pe[k].astype(np.float64) - pt[k]).max()})"
    fe, ft = _flat(oe), _flat(ot)
    assert fe.keys() == ft.keys() and fe, f"optimizer state keys: {sorted(fe)} vs {sorted(ft)}"
    for k in fe:
        assert fe[k].tobytes() == ft[k].tobytes(), f"[{src}] optimizer state {k} differs"
    if src == DATA:  # it learned (synthetic labels are noise)
        assert le[-20:].mean() < le[:20].mean() * 0.6, (le[:20].mean(), le[-20:].mean())
