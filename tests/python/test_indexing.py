"""Tensor.__getitem__ / __setitem__ against numpy, bad indices, gradients through indexing,
and bad-input errors of the index / arrange ops."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

X = np.arange(4 * 3 * 5, dtype=np.float32).reshape(4, 3, 5)

KEYS = [
    0, -1, 3, (1, 2), (-1, -2, -3), slice(None), slice(1, 3), slice(None, None, 2),
    slice(None, None, -1), slice(3, 0, -2), slice(10, 20), (slice(None), 1),
    (Ellipsis, 2), (1, Ellipsis), (Ellipsis,), None, (None, 1), (slice(None), None, 0),
    (1, None, Ellipsis, None), [0, 2], [-1, 0, -1], np.array([[0, 1], [2, 3]]),
    (slice(None), [0, 2]), ([0, 1], [1, 2]), ([0, 1], slice(None), [1, 4]),
    (Ellipsis, [4, 0]), (1, [0, 2], slice(1, 4)), ([[0], [3]], [0, 2]),
    (slice(None, None, -1), [2, 0], slice(None, None, 2)), (None, [1, 3], 0),
    np.array([True, False, True, True]), (slice(None), np.array([False, True, True])),
    X[..., 0] > 20, X > 30, (0, X[0] > 5), np.array([], dtype=np.int64),
    (np.array([1, 3]), None), ([True, False, True, False], 1),
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_getitem_matches_numpy(key):
    got = ty.tensor(X)[key].numpy()
    want = X[key]
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("key", KEYS, ids=repr)
def test_setitem_matches_numpy(key):
    want = X.copy()
    v = np.arange(np.asarray(want[key]).size, dtype=np.float32).reshape(np.shape(want[key]))
    want[key] = -v - 1
    t = ty.tensor(X)
    t[key] = ty.tensor(-v - 1)
    np.testing.assert_array_equal(t.numpy(), want)


def test_setitem_scalar_and_broadcast():
    t, want = ty.tensor(X), X.copy()
    t[[0, 2]] = 7.0
    want[[0, 2]] = 7.0
    t[:, [1]] = ty.tensor(np.ones((5,), np.float32))
    want[:, [1]] = 1.0
    t[X > 50] = 0.0
    want[X > 50] = 0.0
    np.testing.assert_array_equal(t.numpy(), want)


def test_index_with_tensor_keys():
    t = ty.tensor(X)
    idx = ty.tensor([2, 0], dtype="int32")
    np.testing.assert_array_equal(t[idx].numpy(), X[[2, 0]])
    np.testing.assert_array_equal(t[:, idx].numpy(), X[:, [2, 0]])
    np.testing.assert_array_equal(t[ty.tensor(X > 10)].numpy(), X[X > 10])


@pytest.mark.parametrize("key", [4, -5, (0, 3), [0, 4], (slice(None), [-4]), (0, 0, 5),
                                 (0, 0, 0, 0), np.array([True, False])])
def test_getitem_out_of_range_raises(key):
    with pytest.raises(IndexError):
        ty.tensor(X)[key]


def test_index_ops_check_range_at_run_time():
    x = ty.tensor(X)
    bad = ty.tensor([0, 4], dtype="int32")
    with pytest.raises(IndexError, match="index"):
        _C.ops["index"](x, bad, axis=0)
    with pytest.raises(IndexError):
        _C.ops["index_set"](x, ty.tensor(1.0), bad, axis=0)
    with pytest.raises(IndexError):
        _C.ops["index_add"](x, ty.tensor(1.0), ty.tensor([-5], dtype="int32"), axis=0)
    with pytest.raises(IndexError):
        F.gather(x, 1, ty.tensor(np.full((4, 3, 5), 3, np.int32)))
    with pytest.raises(IndexError):
        F.scatter(x, 2, ty.tensor(np.full((4, 3, 1), 5, np.int32)), ty.tensor(np.ones((4, 3, 1),
                                                                                    np.float32)))
    with pytest.raises(IndexError):
        F.nn.one_hot(ty.tensor([0, 3]), 3)
    with pytest.raises(IndexError):
        F.nn.one_hot(ty.tensor([-1]), 3)


def test_bad_inputs_raise_clear_errors():
    x = ty.tensor(X)
    with pytest.raises(TypeError, match="index"):
        _C.ops["index"](x, ty.tensor([0.5]), axis=0)
    with pytest.raises(ValueError, match="concat"):
        F.concat([x, ty.tensor(np.zeros((4, 2, 2), np.float32))], axis=0)
    with pytest.raises(ValueError, match="split"):
        _C.ops["split"](x, axis=0, sizes=[1, 2], _nout=2)
    with pytest.raises(ValueError):
        F.split(x, [3, 1])
    with pytest.raises(ValueError, match="repeat"):
        _C.ops["repeat"](x, repeats=-1, axis=0)
    with pytest.raises(ValueError, match="tile"):
        F.tile(x, (1, -2))
    with pytest.raises(ValueError, match="pad"):
        F.nn.pad(x, ((4, 0),), mode="reflect")
    with pytest.raises(ValueError, match="pad"):
        _C.ops["pad"](x, pads=[1, 1], mode=0)
    with pytest.raises(ValueError):
        F.nn.pad(x, ((1, 1),), mode="wrap")
    with pytest.raises(ValueError, match="topk"):
        F.topk(x, 6)
    with pytest.raises(ValueError, match="cond_take"):
        F.cond_take(ty.tensor(X[0] > 1), x)
    with pytest.raises(ValueError, match="gather"):
        F.gather(x, 0, ty.tensor(np.zeros((4, 4, 5), np.int32)))
    with pytest.raises(IndexError):
        F.cumsum(x, 3)
    with pytest.raises(IndexError):
        F.flip(x, 3)
    with pytest.raises(ValueError, match="concat"):
        F.concat([ty.tensor(1.0), ty.tensor(2.0)])


def _grad(f, x):
    p = ty.Parameter(x, dtype="float64")
    gm = ty.autodiff.GradManager().attach([p])
    with gm:
        gm.backward(f(p).sum())
    return p.grad.numpy()


@pytest.mark.parametrize("key", [[0, 2, 2], (slice(None), [1, 1, 0]), ([0, 1], [1, 2]),
                                 X[..., 0] > 20, (1, slice(None), [4, 0])], ids=repr)
def test_gradient_through_getitem_accumulates_duplicates(key):
    x = np.random.default_rng(0).uniform(size=X.shape)
    want = np.zeros_like(x)
    np.add.at(want, key if not isinstance(key, list) else np.array(key), 1.0)
    np.testing.assert_allclose(_grad(lambda t: t[key] * 1.0, x), want)


def test_gradient_through_setitem():
    x = np.random.default_rng(1).uniform(size=(4, 3))
    v = ty.Parameter(np.ones((2, 3)), dtype="float64")
    p = ty.Parameter(x, dtype="float64")
    gm = ty.autodiff.GradManager().attach([p, v])
    with gm:
        y = F.copy(p)
        y[[0, 2]] = v * 2.0
        gm.backward((y * ty.tensor(np.arange(12.0).reshape(4, 3), dtype="float64")).sum())
    want_x = np.arange(12.0).reshape(4, 3)
    want_x[[0, 2]] = 0
    np.testing.assert_allclose(p.grad.numpy(), want_x)
    np.testing.assert_allclose(v.grad.numpy(), 2 * np.arange(12.0).reshape(4, 3)[[0, 2]])


def test_split_and_sort_misc():
    x = ty.tensor(np.arange(40, dtype=np.float32))
    parts = F.split(x, 20)  # more outputs than a list param holds: still one call
    assert len(parts) == 20 and parts[-1].numpy().tolist() == [38.0, 39.0]
    parts = F.split(x, list(range(1, 39)))  # falls back to slices
    assert len(parts) == 39 and parts[-1].numpy().tolist() == [38.0, 39.0]
    v, i = F.sort(ty.tensor([3.0, np.nan, 1.0, 1.0]))
    np.testing.assert_array_equal(i.numpy(), [2, 3, 0, 1])
    assert F.argsort(ty.tensor([[2, 1, 3]], dtype="int32"), descending=True).numpy().tolist() == \
        [[2, 0, 1]]
    v, i = F.topk(ty.tensor([5.0, 1.0, 4.0]), 2, descending=True, kth_only=True)
    assert v.item() == 4.0 and i.item() == 2
