"""tianyuan.random, the random ops, creation errors and dropout."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.random as R
from tianyuan import _C


def _draws():
    return (R.uniform(size=(50,)).numpy(), R.normal(size=(50,)).numpy(),
            R.permutation(50).numpy())


def test_same_seed_same_bits():
    R.seed(123)
    a = _draws()
    R.seed(123)
    b = _draws()
    for x, y in zip(a, b):
        assert x.tobytes() == y.tobytes()


def test_different_seeds_and_successive_draws_differ():
    R.seed(1)
    a1, a2 = R.uniform(size=(64,)).numpy(), R.uniform(size=(64,)).numpy()
    R.seed(2)
    b1 = R.uniform(size=(64,)).numpy()
    assert not np.array_equal(a1, a2)
    assert not np.array_equal(a1, b1)


def test_bits_do_not_depend_on_threads():
    old = ty.get_num_threads()
    try:
        out = []
        for n in (1, 4):
            ty.set_num_threads(n)
            R.seed(9)
            out.append([x.tobytes() for x in (R.uniform(size=(100003,)).numpy(),
                                               R.normal(size=(70001,)).numpy(),
                                               R.permutation(40000).numpy())])
        assert out[0] == out[1]
    finally:
        ty.set_num_threads(old)


def test_normal_moments():
    R.seed(0)
    z = R.normal(size=(100000,)).numpy().astype(np.float64)
    assert z.dtype == np.float64 and abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    w = R.normal(3.0, 2.0, size=(100000,)).numpy()
    assert abs(w.mean() - 3) < 0.04 and abs(w.std() - 2) < 0.04
    # tails exist but stay sane
    assert np.abs(z).max() > 3 and np.abs(z).max() < 7


def test_normal_float64_and_zero_std():
    z = _C.ops["normal"](shape=[1000], a=1.0, b=0.5, dtype=1).numpy()
    assert z.dtype == np.float64 and abs(z.mean() - 1) < 0.1
    np.testing.assert_array_equal(R.normal(4.0, 0.0, size=(5,)).numpy(), np.full(5, 4.0))


def test_uniform_range_and_moments():
    R.seed(5)
    u = R.uniform(-2, 3, size=(100000,)).numpy()
    assert u.dtype == np.float32 and u.shape == (100000,)
    assert u.min() >= -2 and u.max() < 3
    assert abs(u.mean() - 0.5) < 0.05 and abs(u.var() - 25 / 12) < 0.05
    # narrow range: float32 rounding must never reach high
    v = R.uniform(1.0, 1.0000002, size=(10000,)).numpy()
    assert (v >= 1.0).all() and (v < np.float32(1.0000002)).all()


def test_default_size_is_one_value():
    assert R.uniform().shape == (1,)
    assert R.normal().shape == (1,)
    assert R.uniform(size=()).shape == ()
    assert R.uniform(size=(0, 3)).shape == (0, 3)


def test_permutation():
    R.seed(3)
    p = R.permutation(1000)
    assert p.dtype == np.int32
    assert sorted(p.numpy().tolist()) == list(range(1000))
    assert not np.array_equal(p.numpy(), np.arange(1000))
    q = R.permutation(10, dtype="int64")
    assert q.dtype == np.int64 and sorted(q.numpy().tolist()) == list(range(10))
    assert R.permutation(0).shape == (0,)


def test_permutation_is_roughly_uniform():
    R.seed(11)
    counts = np.zeros((4, 4))
    for _ in range(2000):
        p = R.permutation(4).numpy()
        counts[np.arange(4), p] += 1
    assert np.abs(counts - 500).max() < 100


def test_permutation_of_tensor_and_shuffle():
    R.seed(4)
    x = ty.tensor(np.arange(24, dtype=np.float32).reshape(6, 4))
    y = R.permutation(x)
    assert y.shape == (6, 4)
    assert sorted(map(tuple, y.numpy().tolist())) == sorted(map(tuple, x.numpy().tolist()))
    np.testing.assert_array_equal(x.numpy(), np.arange(24).reshape(6, 4))  # a copy
    before = x.numpy()
    ret = R.shuffle(x)
    assert ret is None
    after = x.numpy()
    assert sorted(map(tuple, after.tolist())) == sorted(map(tuple, before.tolist()))
    assert not np.array_equal(after, before)
    with pytest.raises(ValueError, match="shuffle"):
        R.shuffle(ty.tensor(1.0))


def test_rng_own_stream():
    a = R.RNG(42)
    b = R.RNG(42)
    R.seed(7)
    g1 = R.uniform(size=(8,)).numpy()
    x = a.uniform(size=(8,)).numpy()
    g2 = R.uniform(size=(8,)).numpy()
    R.seed(7)
    h1 = R.uniform(size=(8,)).numpy()
    h2 = R.uniform(size=(8,)).numpy()
    # the RNG draw did not disturb the global stream
    np.testing.assert_array_equal(g1, h1)
    np.testing.assert_array_equal(g2, h2)
    np.testing.assert_array_equal(x, b.uniform(size=(8,)).numpy())
    # its stream advances, and another seed differs
    assert not np.array_equal(a.uniform(size=(8,)).numpy(), x)
    assert not np.array_equal(R.RNG(43).uniform(size=(8,)).numpy(), x)
    z = R.RNG(1).normal(2.0, 3.0, size=(50000,)).numpy()
    assert abs(z.mean() - 2) < 0.1 and abs(z.std() - 3) < 0.1
    p = R.RNG(1).permutation(100)
    assert sorted(p.numpy().tolist()) == list(range(100))
    t = ty.tensor(np.arange(10, dtype=np.float32))
    R.RNG(5).shuffle(t)
    assert sorted(t.numpy().tolist()) == list(range(10))


def test_rng_without_seed_follows_global_seed():
    R.seed(99)
    a = R.RNG().uniform(size=(4,)).numpy()
    R.seed(99)
    b = R.RNG().uniform(size=(4,)).numpy()
    np.testing.assert_array_equal(a, b)


def test_dropout_mask_and_scale():
    R.seed(8)
    x = ty.tensor(np.ones((200, 500), dtype=np.float32))
    y = F.dropout(x, 0.3).numpy()
    vals = np.unique(y)
    np.testing.assert_allclose(vals, [0.0, 1 / 0.7], rtol=1e-6)
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert F.dropout(x, 0.3, training=False) is x
    assert F.nn.dropout is F.dropout
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.0)


def test_dropout_gradient():
    R.seed(10)
    x = ty.Parameter(np.random.default_rng(0).uniform(1, 2, size=(30, 40)), dtype="float64")
    gm = ty.autodiff.GradManager().attach([x])
    with gm:
        y = F.dropout(x, 0.5)
        gm.backward(y.sum())
    mask = (y.numpy() != 0) * 2.0
    np.testing.assert_allclose(x.grad.numpy(), mask)
    np.testing.assert_allclose(y.numpy(), x.numpy() * mask)


def test_creation_defaults():
    z = F.zeros((2, 3))
    assert z.dtype == np.float32 and z.shape == (2, 3)
    assert F.ones(4, dtype="int32").numpy().tolist() == [1, 1, 1, 1]
    x = ty.tensor(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert F.full_like(x, 7).dtype == np.int32
    assert F.zeros_like(x).numpy().sum() == 0
    assert F.arange(4).dtype == np.float32
    assert F.arange(4, dtype="int32").numpy().tolist() == [0, 1, 2, 3]
    assert F.eye(2).numpy().tolist() == [[1, 0], [0, 1]]
    assert F.linspace(0, 1, 3).numpy().tolist() == [0, 0.5, 1]
    assert F.full((2,), ty.tensor(3.0)).numpy().tolist() == [3, 3]


@pytest.mark.parametrize("call, exc, op", [
    (lambda: F.zeros((-1, 3)), ValueError, "fill"),
    (lambda: F.full((2 ** 40, 2 ** 40), 1.0), ValueError, "fill"),
    (lambda: F.full((2,), float("nan"), "int32"), ValueError, "fill"),
    (lambda: _C.ops["fill"](shape=[2], dtype=99), TypeError, "fill"),
    (lambda: F.arange(0, 5, 0), ValueError, "arange"),
    (lambda: F.arange(0, float("inf")), ValueError, "arange"),
    (lambda: F.arange(0, 1e30, 1e-30), ValueError, "arange"),
    (lambda: F.arange(3, dtype="bool"), TypeError, "arange"),
    (lambda: F.linspace(0, 1, -1), ValueError, "linspace"),
    (lambda: F.linspace(0, 1, 2 ** 62), ValueError, "linspace"),
    (lambda: F.eye(-1), ValueError, "eye"),
    (lambda: F.eye(2, -3), ValueError, "eye"),
    (lambda: _C.ops["eye"](n=2, m=2, dtype=-1), TypeError, "eye"),
    (lambda: R.uniform(1, 0), ValueError, "uniform"),
    (lambda: R.uniform(size=(-2,)), ValueError, "uniform"),
    (lambda: R.normal(0, -1), ValueError, "normal"),
    (lambda: R.normal(size=(2 ** 60, 2 ** 10)), ValueError, "normal"),
    (lambda: _C.ops["normal"](shape=[2], dtype=7), TypeError, "normal"),
    (lambda: R.permutation(-1), ValueError, "permutation"),
    (lambda: R.permutation(2 ** 40), ValueError, "permutation"),
    (lambda: R.permutation(3, dtype="bool"), TypeError, "permutation"),
    (lambda: R.RNG(0).uniform(2, 1), ValueError, "random_keyed"),
    (lambda: _C.ops["random_keyed"](shape=[2], dist=5), ValueError, "random_keyed"),
])
def test_bad_inputs(call, exc, op):
    with pytest.raises(exc, match=op):
        call()
