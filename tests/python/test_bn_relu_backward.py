"""relu(batch_norm_train(x)) differentiates through one fused op: the tape runs
batch_norm_train_relu_backward in place of relu_backward + batch_norm_train_backward when the
relu is the batch norm's only consumer. Checked here: the same bits as the two ops (float32 and
float64, at 1, 2 and 3 threads, channels split over threads), central finite differences,
the cases where the tape must not fuse, and a traced training step giving eager's bits."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
import tianyuan.optimizer as optim
from tianyuan import _C
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace

from _op_counts import op_counts

BN = _C.ops["batch_norm_train"]


def _inputs(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    c = (1, shape[1]) + (1,) * (len(shape) - 2)
    x = ty.tensor(rng.standard_normal(shape), dtype=dtype)
    w = ty.Parameter(rng.uniform(0.5, 1.5, c), dtype=dtype)
    b = ty.Parameter(rng.standard_normal(c), dtype=dtype)
    g = ty.tensor(rng.standard_normal(shape), dtype=dtype)
    assert x.dtype == w.dtype == g.dtype == dtype
    return x, w, b, g


def _tape_grads(x, w, b, g, eps=1e-5):
    gm = GradManager().attach([x, w, b])
    with gm:
        z, mean, var = BN(x, w, b, eps=eps)
        y = F.relu(z)
        gm.backward(y, g)
    return y, mean, var, [t.grad.numpy() for t in (x, w, b)]


# (8, 300, 4, 4) and (2, 40, 33, 31) split their channels over threads; 17 and 1x1 leave tails
@pytest.mark.parametrize("shape", [(8, 300, 4, 4), (2, 40, 33, 31), (3, 5, 17), (4, 6)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_gradient_has_the_bits_of_the_two_ops_at_any_thread_count(shape, dtype):
    saved = ty.get_num_threads()
    try:
        got = []
        for threads in (1, 2, 3):
            ty.set_num_threads(threads)
            x, w, b, g = _inputs(shape, dtype)
            counts, (y, mean, var, grads) = op_counts(lambda: _tape_grads(x, w, b, g))
            assert counts.get("batch_norm_train_relu_backward") == 1
            assert "relu_backward" not in counts and "batch_norm_train_backward" not in counts
            g1 = _C.ops["relu_backward"](y, g)
            want = _C.ops["batch_norm_train_backward"](g1, x, mean, var, w, eps=1e-5)
            for a, r in zip(grads, want):
                assert a.tobytes() == r.numpy().tobytes()
            got.append(grads)
        for grads in got[1:]:
            assert all(a.tobytes() == r.tobytes() for a, r in zip(grads, got[0]))
    finally:
        ty.set_num_threads(saved)


def test_fused_gradient_matches_finite_differences():
    x, w, b, g = _inputs((3, 4, 5), "float64", seed=1)
    _, _, _, grads = _tape_grads(x, w, b, g)
    xs, ws, bs, gs = (t.numpy() for t in (x, w, b, g))

    def loss(xv, wv, bv):
        z = BN(*(ty.tensor(v, dtype="float64") for v in (xv, wv, bv)), eps=1e-5)[0]
        return float((np.maximum(z.numpy(), 0.0) * gs).sum())

    h = 1e-6
    for k, base in enumerate((xs, ws, bs)):
        num = np.zeros_like(base)
        for i in np.ndindex(base.shape):
            args = [xs, ws, bs]
            hi, lo = base.copy(), base.copy()
            hi[i] += h
            lo[i] -= h
            args[k] = hi
            f_hi = loss(*args)
            args[k] = lo
            num[i] = (f_hi - loss(*args)) / (2 * h)
        np.testing.assert_allclose(grads[k], num, rtol=1e-5, atol=1e-6)


def test_not_fused_when_the_batch_norm_output_has_another_use():
    x, w, b, g = _inputs((4, 3, 5), "float32")
    gm = GradManager().attach([x, w, b])

    def run():
        with gm:
            z = BN(x, w, b, eps=1e-5)[0]
            gm.backward(F.relu(z) * g + z * 0.5)

    counts, _ = op_counts(run)
    assert "batch_norm_train_relu_backward" not in counts
    assert counts.get("relu_backward") == 1 and counts.get("batch_norm_train_backward") == 1


def test_not_fused_when_the_batch_norm_output_is_a_target():
    x, w, b, g = _inputs((4, 3, 5), "float32")
    gm = GradManager().attach([x, w, b])
    with gm:
        z = BN(x, w, b, eps=1e-5)[0]
        y = F.relu(z)
        counts, (gx, gz) = op_counts(lambda: _C.backward([y], [g], [x, z], False, False, None))
    assert "batch_norm_train_relu_backward" not in counts
    want = _C.ops["relu_backward"](y, g)
    assert gz.numpy().tobytes() == want.numpy().tobytes()


def test_higher_order_gradient_goes_through_the_ops():
    x, w, b, g = _inputs((4, 3, 5), "float64")
    outer = GradManager().attach([w])
    inner = GradManager().attach([x])
    with outer:
        with inner:
            y = F.relu(BN(x, w, b, eps=1e-5)[0])
            inner.backward((y * g).sum())
        gx = x.grad
        counts, _ = op_counts(lambda: outer.backward((gx * gx).sum()))
    assert "batch_norm_train_relu_backward" not in counts
    assert w.grad is not None and np.isfinite(w.grad.numpy()).all()


def test_traced_training_step_gives_eager_bits():
    class Net(M.Module):
        def __init__(self):
            super().__init__()
            self.conv = M.Conv2d(3, 8, 3, padding=1, bias=False)
            self.bn1 = M.BatchNorm2d(8)
            self.bn2 = M.BatchNorm2d(8)
            self.fc = M.Linear(8, 4)

        def forward(self, x):
            x = F.relu(self.bn1(self.conv(x)))
            x = F.relu(self.bn2(x))
            return self.fc(F.flatten(F.avg_pool2d(x, 6), 1))

    rng = np.random.default_rng(2)
    x = ty.tensor(rng.standard_normal((4, 3, 6, 6)).astype("float32"))
    y = ty.tensor(rng.integers(0, 4, 4).astype("int32"))
    params = []
    for traced in (False, True):
        ty.random.seed(3)
        net = Net()
        gm = GradManager().attach(net.parameters())
        opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9)

        def step(x, y):
            with gm:
                loss = F.nn.cross_entropy(net(x), y)
                gm.backward(loss)
            opt.step().clear_grad()
            return loss

        fn = trace(step) if traced else step
        counts, _ = op_counts(lambda: [fn(x, y).numpy() for _ in range(3)])
        if not traced:
            assert counts.get("batch_norm_train_relu_backward") == 6
        params.append([p.numpy() for p in net.parameters()])
    for a, r in zip(*params):
        assert a.tobytes() == r.tobytes()


def test_tape_does_not_keep_the_batch_norm_output():
    """batch_norm_train's rule never reads y: once the relu has made its own output, the
    tape holds nothing of y's size beyond x, the relu output and the input gradient's need."""
    x, w, b, g = _inputs((8, 16, 32, 32), "float32")
    act = 8 * 16 * 32 * 32 * 4
    gm = GradManager().attach([x, w, b])
    with gm:
        base = ty.get_allocated_memory()
        y = F.relu(BN(x, w, b, eps=1e-5)[0])
        live = ty.get_allocated_memory() - base
        gm.backward(y, g)
    assert live < 1.5 * act  # y alone; BN's output kept as well would make it 2 activations
