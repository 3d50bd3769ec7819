"""The same bits for any thread count (issue 10, promise 5 of DESIGN.md): every op-table row,
forward and backward, a set of shapes big enough that the kernels really split their work, and
a 20-step CNN training run give bitwise the same results at 1, 2 and 3 threads. Kernels split
work into chunks fixed by the shape alone and combine partial results in a fixed order."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
import tianyuan.optimizer as optim

from .op_db import OP_DB
from .test_op_db import _as_tuple, _cast_inputs, _exact, _float64_args

THREADS = (1, 2, 3)


@pytest.fixture(autouse=True)
def restore_threads():
    before = ty.get_num_threads()
    yield
    ty.set_num_threads(before)


def _bits(arrays):
    return [(a.dtype.str, a.shape, a.tobytes()) for a in arrays]


def _at_each_thread_count(compute):
    """compute() -> list of arrays, run at every count in THREADS; all must agree bitwise."""
    results = {}
    for n in THREADS:
        ty.set_num_threads(n)
        ty.random.seed(0)
        results[n] = _bits(compute())
    for n in THREADS[1:]:
        assert results[n] == results[THREADS[0]], f"{n} threads differ from {THREADS[0]}"


def _forward_and_grads(fn, arrays, kwargs, diff):
    params = [ty.Parameter(a, dtype=a.dtype) if i in diff else _exact(a)
              for i, a in enumerate(arrays)]
    gm = ty.autodiff.GradManager().attach([params[i] for i in diff])
    with gm:
        ys = _as_tuple(fn(*params, **kwargs))
        if diff:
            w = np.random.default_rng(7).uniform(-1, 1, ys[0].shape)
            gm.backward((ys[0] * ty.tensor(w, dtype=ys[0].dtype)).sum())
    out = [y.numpy() for y in ys]
    return out + [params[i].grad.numpy() for i in diff if params[i].grad is not None]


@pytest.mark.parametrize("info", OP_DB, ids=repr)
def test_op_rows_same_bits_at_any_thread_count(info, rng):
    for sample in info.samples(rng):
        arrays = _cast_inputs(sample, info.dtypes[0], info)
        diff = []
        if info.grad:
            arrays = _float64_args(info, sample)
            diff = [i for i, a in enumerate(arrays) if a.dtype == np.float64 and a.size > 0]
        _at_each_thread_count(lambda: _forward_and_grads(info.fn, arrays, sample.kwargs, diff))


def _conv(x, w):
    return F.conv2d(x, w, stride=1, padding=1)


def _conv_grouped(x, w):
    return F.conv2d(x, w, stride=2, padding=1, groups=2)


# Shapes past the kernels' parallel thresholds: (fn, input shapes, differentiable inputs).
BIG = {
    "conv2d": (_conv, [(9, 6, 24, 24), (16, 6, 3, 3)]),
    "conv2d_grouped": (_conv_grouped, [(7, 8, 20, 20), (2, 8, 4, 3, 3)]),
    "conv_transpose2d": (lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1),
                         [(5, 8, 12, 12), (8, 4, 3, 3)]),
    "matmul": (F.matmul, [(300, 200), (200, 150)]),
    "batched_matmul": (F.matmul, [(6, 70, 90), (6, 90, 50)]),
    "linear": (F.linear, [(256, 300), (100, 300)]),
    "sum": (lambda x: x.sum(), [(1 << 20,)]),
    "mean_axes": (lambda x: F.mean(x, axis=(0, 2)), [(64, 33, 257)]),
    "softmax": (lambda x: F.softmax(x, axis=1), [(128, 1000)]),
    "log_softmax": (lambda x: F.logsoftmax(x, axis=0), [(1000, 64)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [(8, 16, 32, 32)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, 2, 1), [(8, 16, 31, 31)]),
    "batch_norm": (lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True),
                   [(16, 32, 20, 20), (1, 32, 1, 1), (1, 32, 1, 1)]),
    "layer_norm": (lambda x, g, b: F.layer_norm(x, (512,), True, g, b),
                   [(128, 512), (512,), (512,)]),
    "cumsum": (lambda x: F.cumsum(x, axis=1), [(64, 5000)]),
    "elemwise_chain": (lambda a, b: F.gelu(a * b + a).mean(axis=1), [(256, 4096), (4096,)]),
}


@pytest.mark.parametrize("name", sorted(BIG))
def test_big_shapes_same_bits_at_any_thread_count(name):
    fn, shapes = BIG[name]
    rng = np.random.default_rng(3)
    arrays = [rng.uniform(-1, 1, s).astype(np.float32) for s in shapes]
    _at_each_thread_count(lambda: _forward_and_grads(fn, arrays, {}, list(range(len(arrays)))))


class _SmallCNN(M.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = M.Conv2d(1, 8, 3, padding=1)
        self.bn = M.BatchNorm2d(8)
        self.conv2 = M.Conv2d(8, 16, 3, stride=2, padding=1)
        self.fc = M.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.conv1(x)))
        return self.fc(F.flatten(F.relu(self.conv2(x)), 1))


def _train_20_adam_steps():
    ty.random.seed(0)
    net = _SmallCNN()
    opt = optim.Adam(net.parameters(), lr=1e-2)
    gm = ty.autodiff.GradManager().attach(net.parameters())
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = ty.tensor(rng.standard_normal((16, 1, 14, 14)).astype(np.float32))
        label = ty.tensor(rng.integers(0, 10, 16).astype(np.int32))
        with gm:
            gm.backward(F.nn.cross_entropy(net(x), label))
        opt.step().clear_grad()
    return [p.numpy() for p in net.parameters()] + [b.numpy() for b in net.buffers()]


def test_cnn_training_same_bits_at_any_thread_count():
    _at_each_thread_count(_train_20_adam_steps)
