"""Ops with many inputs: concat and stack of more tensors than any fixed array would hold,
eager, traced (record and replays with new values) and symbolic, against numpy; and the
gradients of a wide concat. Many outputs: split beyond one op call's output limit."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace


def _inputs(rng, n, shape=(2, 3)):
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def _tensors(arrays):
    return [ty.tensor(a) for a in arrays]


def _concat(xs):
    return F.concat(xs, axis=1)


def _stack(xs):
    return F.stack(xs, axis=1)


@pytest.mark.parametrize("n", [65, 300, 10_000])
def test_concat_of_many_inputs_eager(n):
    arrays = _inputs(np.random.default_rng(n), n)
    got = _concat(_tensors(arrays)).numpy()
    np.testing.assert_array_equal(got, np.concatenate(arrays, axis=1))


def _check_traced(fn, want_fn, n, symbolic, calls=3):
    rng = np.random.default_rng([n, symbolic])
    traced = trace(fn, symbolic=symbolic)
    for _ in range(calls):  # the record, then replays with new values
        arrays = _inputs(rng, n)
        np.testing.assert_array_equal(traced(_tensors(arrays)).numpy(), want_fn(arrays))
    assert traced.num_nodes() >= 1


@pytest.mark.parametrize("symbolic", [False, True], ids=["traced", "symbolic"])
@pytest.mark.parametrize("n", [65, 300, 10_000])
def test_concat_of_many_inputs_traced(n, symbolic):
    _check_traced(_concat, lambda a: np.concatenate(a, axis=1), n, symbolic)


@pytest.mark.parametrize("symbolic", [False, True], ids=["traced", "symbolic"])
@pytest.mark.parametrize("n", [65, 100])
def test_stack_of_many_inputs_traced(n, symbolic):
    _check_traced(_stack, lambda a: np.stack(a, axis=1), n, symbolic)


def _concat_grads(xs, weight, gm):
    with gm:
        loss = (F.concat(xs, axis=0) * weight).sum()
        gm.backward(loss)
    grads = [x.grad for x in xs]
    for x in xs:
        x.grad = None
    return loss, grads


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "traced"])
def test_gradients_through_a_concat_of_300_inputs(traced):
    n, rng = 300, np.random.default_rng(7)
    xs = [ty.Parameter(a) for a in _inputs(rng, n, shape=(2,))]
    gm = GradManager().attach(xs)
    step = trace(_concat_grads) if traced else _concat_grads
    for _ in range(3 if traced else 1):
        w = rng.standard_normal(2 * n).astype(np.float32)
        loss, grads = step(xs, ty.tensor(w), gm)
        want_loss = np.dot(np.concatenate([x.numpy() for x in xs]), w)
        np.testing.assert_allclose(loss.numpy(), want_loss, rtol=1e-4, atol=1e-4)
        for i, g in enumerate(grads):
            np.testing.assert_array_equal(g.numpy(), w[2 * i:2 * i + 2])


def _split_grads(x, weights, gm):
    with gm:
        parts = F.split(x, len(weights), axis=0)
        loss = sum((p * w).sum() for p, w in zip(parts, weights))
        gm.backward(loss)
    grad, x.grad = x.grad, None
    return grad


def test_traced_gradients_of_a_split_replay_a_wide_concat():
    n, rng = 40, np.random.default_rng(8)  # split's gradient concatenates n gradients
    x = ty.Parameter(rng.standard_normal((n, 2)).astype(np.float32))
    gm = GradManager().attach([x])
    step = trace(_split_grads)
    for _ in range(3):
        w = rng.standard_normal((n, 2)).astype(np.float32)
        grad = step(x, [ty.tensor(w[i:i + 1]) for i in range(n)], gm)
        np.testing.assert_array_equal(grad.numpy(), w)


@pytest.mark.parametrize("traced", [False, True], ids=["eager", "traced"])
def test_split_into_more_parts_than_one_call_returns(traced):
    n = 100  # above the outputs of one op call (TY_MAX_OUTPUTS)
    x = np.arange(2 * n, dtype=np.float32).reshape(2, n)
    split = trace(lambda t: F.split(t, n, axis=1)) if traced else (
        lambda t: F.split(t, n, axis=1))
    for _ in range(2):
        parts = split(ty.tensor(x))
        assert len(parts) == n
        for i, p in enumerate(parts):
            np.testing.assert_array_equal(p.numpy(), x[:, i:i + 1])
        x = x + 1


def test_one_op_call_asking_for_too_many_outputs_raises_a_clear_error():
    x = ty.tensor(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="split: 65 outputs asked for, one call returns at most"):
        ty._C.ops["split"](x, axis=0, sizes=[], _nout=65)
