"""Autodiff semantics beyond single-op gradients: accumulation, graph reuse, higher order."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.autodiff import GradManager


def _p(values):
    return ty.Parameter(np.asarray(values, dtype=np.float64), dtype="float64")


@pytest.mark.parametrize("fn, d2", [
    (F.exp, np.exp),
    (F.sin, lambda x: -np.sin(x)),
    (F.tanh, lambda x: -2 * np.tanh(x) * (1 - np.tanh(x) ** 2)),
    (lambda x: x * x * x, lambda x: 6 * x),
    (F.sigmoid, lambda x: (s := 1 / (1 + np.exp(-x))) * (1 - s) * (1 - 2 * s)),
    (lambda x: F.log(x) * x, lambda x: 1 / x),
])
def test_second_derivative_nested_managers(fn, d2):
    xv = np.array([0.3, 0.7, 1.1])
    x = _p(xv)
    outer = GradManager().attach([x])
    inner = GradManager().attach([x])
    with outer:
        with inner:
            inner.backward(fn(x).sum())
        g = x.grad
        x.grad = None
        outer.backward(g.sum())
    np.testing.assert_allclose(x.grad.numpy(), d2(xv), rtol=1e-10)


def test_second_derivative_grouped_managers():
    x = _p([0.5, 2.0])
    gm1, gm2 = GradManager().attach([x]), GradManager().attach([x])
    with gm1 | gm2:
        gm2.backward((x ** 3).sum())
        g = x.grad
        x.grad = None
        gm1.backward(g.sum())
    np.testing.assert_allclose(x.grad.numpy(), 6 * np.array([0.5, 2.0]))


def test_gradients_accumulate_across_backward_calls():
    x = _p([1.0, 2.0])
    gm = GradManager().attach([x])
    for _ in range(3):
        with gm:
            gm.backward((x * x).sum())
    np.testing.assert_allclose(x.grad.numpy(), 3 * 2 * np.array([1.0, 2.0]))


def test_unused_attached_tensor_gets_no_grad():
    x, y = _p([1.0]), _p([2.0])
    gm = GradManager().attach([x, y])
    with gm:
        gm.backward((x * 2).sum())
    assert y.grad is None
    np.testing.assert_allclose(x.grad.numpy(), [2.0])


def test_second_backward_through_freed_graph_raises():
    x = _p([1.0, 2.0])
    gm = GradManager().attach([x])
    with gm:
        y = (F.exp(x)).sum()
        gm.backward(y)
    gm2 = GradManager().attach([x])
    with gm2:
        with pytest.raises(ValueError, match="second backward"):
            gm2.backward(y)


def test_not_recording_ops_are_not_tracked():
    x = _p([1.0])
    GradManager().attach([x])
    y = x * 2  # no manager is recording
    assert not y._tracked


def test_dy_seeds_the_gradient():
    x = _p([1.0, 2.0, 3.0])
    gm = GradManager().attach([x])
    with gm:
        gm.backward(x * x, dy=ty.tensor([1.0, 0.0, 2.0], dtype="float64"))
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 0.0, 12.0])


def test_backward_skips_gradients_nobody_reads():
    """The tape tells grad rules which inputs lead to a tracked tensor: the input gradient of
    a first layer (conv2d, matmul) is not computed, and asking for it still works."""
    from tianyuan.jit import trace
    rng = np.random.default_rng(0)
    x = ty.tensor(rng.standard_normal((2, 1, 5, 5)).astype("float32"))
    w = ty.Parameter(rng.standard_normal((3, 1, 3, 3)).astype("float32"))
    m = ty.Parameter(rng.standard_normal((4, 3)).astype("float32"))
    u = ty.Parameter(rng.standard_normal((5, 2)).astype("float32"))

    def step(x, attach_x):
        gm = GradManager().attach([w, m, u] + ([x] if attach_x else []))
        with gm:
            h = F.conv2d(x, w).reshape(2 * 3, 9).transpose(1, 0)  # (9, 6)
            loss = (F.matmul(h[:, :3], m.transpose(1, 0)) ** 2).sum()
            loss = loss + F.matmul(x.reshape(10, 5), u).sum()  # x: untracked unless attached
            gm.backward(loss)
        return loss

    for attach_x in (False, True):
        tf = trace(lambda x: step(x, attach_x))
        w.grad = m.grad = x.grad = None
        tf(x)
        ops = tf.dump_graph()
        assert ("conv2d_backward_data" in ops) == attach_x
        # forward 2; backward d/dm, d/dh, d/du, and d/dx only when x is attached
        assert ops.count("matmul(") == (6 if attach_x else 5)
        assert w.grad is not None and m.grad is not None and (x.grad is not None) == attach_x


@pytest.mark.parametrize("mode", ["eager", "computed", "symbolic"])
def test_in_place_write_to_a_saved_tensor_raises_instead_of_a_wrong_gradient(mode):
    """RELIABILITY: y = x * w saves w; w._assign(...) before backward would make d/dx use
    the new w. The tape notices the write (eager and while recording a trace alike)."""
    from tianyuan.jit import trace
    x = ty.Parameter(np.array([1.0, 2.0], dtype="float32"))
    w = ty.tensor(np.array([3.0, 4.0], dtype="float32"))

    def step(x):
        gm = GradManager().attach([x])
        with gm:
            y = (x * w).sum()
            w._assign(w * 10)  # modifies a tensor the mul's gradient needs
            gm.backward(y)
        return y

    fn = step if mode == "eager" else trace(step, symbolic=mode == "symbolic")
    with pytest.raises(ValueError, match="input 1 of mul, saved for its gradient, was modified"):
        fn(x)


def test_in_place_writes_after_backward_are_fine():
    x = ty.Parameter(np.array([1.0, 2.0], dtype="float32"))
    w = ty.tensor(np.array([3.0, 4.0], dtype="float32"))
    gm = GradManager().attach([x])
    with gm:
        y = (x * w).sum()
        gm.backward(y)
    w._assign(w * 10)
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 4.0])
