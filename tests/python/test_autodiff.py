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
