"""Bad inputs of the pooling ops raise the mapped exception naming the op and the shapes, and a
few semantics the op_db rows do not cover (half dtypes, mixed dtypes, second derivatives,
MegEngine modes, F.nn exports)."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C
from tianyuan.autodiff import GradManager

_ops = _C.ops


def _t(a, dtype="float32"):
    return ty.tensor(np.asarray(a), dtype=dtype)


def _z(*shape, dtype="float32"):
    return _t(np.zeros(shape), dtype)


def _pp(k=2, s=2, p=0, mode=0):
    return dict(kernel_h=k, kernel_w=k, stride_h=s, stride_w=s, pad_h=p, pad_w=p, mode=mode)


# ---- ranks and shapes ----
@pytest.mark.parametrize("fn, args", [
    (F.max_pool2d, (2,)), (F.avg_pool2d, (2,)), (F.adaptive_max_pool2d, (2,)),
    (F.adaptive_avg_pool2d, (2,))])
@pytest.mark.parametrize("shape", [(3, 4, 4), (4, 4), (1, 1, 1, 4, 4)])
def test_rank_must_be_4(fn, args, shape):
    with pytest.raises(ValueError, match=fn.__name__ + r".*4-d.*" + r"\(" +
                       ", ".join(map(str, shape)) + r"\)"):
        fn(_z(*shape), *args)


@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_kernel_larger_than_input(fn):
    with pytest.raises(ValueError, match=fn.__name__ + r".*kernel \(5, 5\).*\(1, 2, 3, 3\)"):
        fn(_z(1, 2, 3, 3), 5)


def test_empty_spatial_dim():
    with pytest.raises(ValueError, match=r"max_pool2d.*\(1, 2, 0, 3\).*empty"):
        F.max_pool2d(_z(1, 2, 0, 3), 1)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d.*\(1, 2, 3, 0\)"):
        F.adaptive_avg_pool2d(_z(1, 2, 3, 0), 1)


# ---- parameters ----
@pytest.mark.parametrize("kw, frag", [
    (dict(kernel_size=0), "kernel_h"),
    (dict(kernel_size=(2, -1)), "kernel_w"),
    (dict(kernel_size=2, stride=0), "stride"),
    (dict(kernel_size=2, stride=(1, -2)), "stride"),
    (dict(kernel_size=2, padding=-1), "pad_h"),
    (dict(kernel_size=2, padding=2), r"padding.*\(2, 2\).*kernel \(2, 2\)"),
    (dict(kernel_size=(3, 1), padding=(1, 1)), r"padding.*\(1, 1\).*kernel \(3, 1\)"),
])
@pytest.mark.parametrize("fn", [F.max_pool2d, F.avg_pool2d])
def test_bad_pool_params(fn, kw, frag):
    with pytest.raises(ValueError, match=fn.__name__ + ".*" + frag):
        fn(_z(1, 1, 6, 6), **kw)


def test_bad_pair_and_mode():
    with pytest.raises(ValueError, match="max_pool2d.*kernel_size"):
        F.max_pool2d(_z(1, 1, 4, 4), (2, 2, 2))
    with pytest.raises(ValueError, match="avg_pool2d.*mode"):
        F.avg_pool2d(_z(1, 1, 4, 4), 2, mode="max")
    with pytest.raises(ValueError, match="avg_pool2d.*mode"):
        _ops["avg_pool2d"](_z(1, 1, 4, 4), **_pp(mode=2))


@pytest.mark.parametrize("fn", [F.adaptive_max_pool2d, F.adaptive_avg_pool2d])
@pytest.mark.parametrize("oshp", [0, (2, 0), (-1, 2)])
def test_bad_adaptive_size(fn, oshp):
    with pytest.raises(ValueError, match=fn.__name__ + ".*out_[hw]"):
        fn(_z(1, 1, 4, 4), oshp)


# ---- dtypes ----
@pytest.mark.parametrize("fn, args", [
    (F.max_pool2d, (2,)), (F.avg_pool2d, (2,)), (F.adaptive_max_pool2d, (2,)),
    (F.adaptive_avg_pool2d, (2,))])
@pytest.mark.parametrize("dtype", ["int32", "bool", "uint8"])
def test_non_float_is_a_type_error(fn, args, dtype):
    with pytest.raises(TypeError, match=fn.__name__ + ".*" + dtype):
        fn(_z(1, 1, 4, 4, dtype=dtype), *args)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_dtypes_compute_in_float32(dtype):
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4) / 4
    t = _t(x, dtype)
    for y, want in [(F.max_pool2d(t, 2), x.reshape(1, 1, 2, 2, 2, 2).max(axis=(3, 5))),
                    (F.avg_pool2d(t, 2), x.reshape(1, 1, 2, 2, 2, 2).mean(axis=(3, 5))),
                    (F.adaptive_avg_pool2d(t, 1), x.mean(axis=(2, 3), keepdims=True))]:
        assert y.dtype == t.dtype
        np.testing.assert_allclose(y.numpy().astype(np.float64), want, rtol=1e-2)


def test_mixed_dtype_grad_op_promotes():
    x = _t(np.arange(16).reshape(1, 1, 4, 4), "float32")
    dy = _t(np.ones((1, 1, 2, 2)), "float64")
    dx = _ops["max_pool2d_grad"](x, dy, **_pp())
    assert dx.dtype == np.float64
    assert dx.numpy().sum() == 4


# ---- backward / select ops ----
def test_grad_ops_check_dy_shape():
    x = _z(1, 2, 4, 4)
    with pytest.raises(ValueError, match=r"max_pool2d_grad.*\(1, 2, 3, 3\).*\(1, 2, 2, 2\)"):
        _ops["max_pool2d_grad"](x, _z(1, 2, 3, 3), **_pp())
    with pytest.raises(ValueError, match=r"avg_pool2d_grad.*\(2, 2\).*\(1, 2, 2, 2\)"):
        _ops["avg_pool2d_grad"](x, _z(2, 2), **_pp())
    with pytest.raises(ValueError, match=r"adaptive_pool2d_grad.*\(1, 2, 2, 2\).*\(1, 2, 3, 3\)"):
        _ops["adaptive_pool2d_grad"](x, _z(1, 2, 2, 2), out_h=3, out_w=3, mode=0)
    with pytest.raises(ValueError, match=r"max_pool2d_select.*\(1, 2, 2, 2\).*\(1, 2, 4, 4\)"):
        _ops["max_pool2d_select"](x, _z(1, 2, 2, 2), **_pp())
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d_select.*\(1, 2, 4\)"):
        _ops["adaptive_max_pool2d_select"](x, _z(1, 2, 4), out_h=2, out_w=2)
    with pytest.raises(ValueError, match="adaptive_pool2d_grad.*mode"):
        _ops["adaptive_pool2d_grad"](x, _z(1, 2, 2, 2), out_h=2, out_w=2, mode=2)


# ---- semantics ----
def test_avg_modes_and_stride_default():
    x = np.ones((1, 1, 2, 2), np.float32)
    np.testing.assert_allclose(F.avg_pool2d(_t(x), 2, padding=1).numpy(), np.ones((1, 1, 2, 2)))
    np.testing.assert_allclose(F.avg_pool2d(_t(x), 2, padding=1, mode="average").numpy(),
                               np.full((1, 1, 2, 2), 0.25))
    assert F.max_pool2d(_z(1, 1, 6, 6), 3).shape == (1, 1, 2, 2)
    assert F.max_pool2d(_z(1, 1, 6, 6), 3, 1).shape == (1, 1, 4, 4)
    assert F.adaptive_max_pool2d(_z(1, 1, 6, 6), (2, 3)).shape == (1, 1, 2, 3)


def test_max_pool_padding_never_wins_and_nan_propagates():
    x = -np.ones((1, 1, 2, 2), np.float32)
    np.testing.assert_array_equal(F.max_pool2d(_t(x), 2, 1, 1).numpy(), -np.ones((1, 1, 3, 3)))
    x[0, 0, 0, 1] = np.nan
    y = F.max_pool2d(_t(x), 2).numpy()
    assert np.isnan(y).all()


def test_exported_on_nn_and_accepts_numpy():
    for name in ("max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d"):
        assert getattr(F.nn, name) is getattr(F, name)
    y = F.nn.max_pool2d(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4), 2)
    np.testing.assert_array_equal(y.numpy()[0, 0], [[5, 7], [13, 15]])


def _second_order(fn, xv, v):
    """d/dx of sum(v * d/dx sum(w * fn(x)**2)) through nested managers, and by central
    differences of the first derivative (which is linear in x away from argmax changes)."""
    def first(xa):
        x = ty.Parameter(xa, dtype="float64")
        gm = GradManager().attach([x])
        with gm:
            y = fn(x)
            gm.backward((y * y).sum())
        return x.grad.numpy()

    x = ty.Parameter(xv, dtype="float64")
    outer, inner = GradManager().attach([x]), GradManager().attach([x])
    with outer:
        with inner:
            y = fn(x)
            inner.backward((y * y).sum())
        g = x.grad
        x.grad = None
        outer.backward((g * ty.tensor(v, dtype="float64")).sum())
    got = x.grad.numpy()
    want = np.zeros_like(xv)
    eps = 1e-6
    for k in range(xv.size):
        xp, xm = xv.copy(), xv.copy()
        xp.reshape(-1)[k] += eps
        xm.reshape(-1)[k] -= eps
        want.reshape(-1)[k] = ((first(xp) - first(xm)) * v).sum() / (2 * eps)
    assert np.abs(want).max() > 0.1
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("fn", [
    lambda x: F.max_pool2d(x, 3, 2, 1),
    lambda x: F.avg_pool2d(x, 3, 2, 1),
    lambda x: F.avg_pool2d(x, 3, 2, 1, mode="average"),
    lambda x: F.adaptive_max_pool2d(x, (2, 3)),
    lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
])
def test_second_derivative(fn, rng):
    xv = rng.permutation(2 * 5 * 5).reshape(1, 2, 5, 5) / 7.0
    v = rng.uniform(-1, 1, xv.shape)
    _second_order(fn, xv, v)
