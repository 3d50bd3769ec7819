"""Bad inputs of matmul / conv ops raise the mapped exception naming the op, and a few
semantics the op_db rows do not cover (conv_mode, MegEngine layouts, mixed dtypes)."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

_ops = _C.ops


def _t(a, dtype="float32"):
    return ty.tensor(np.asarray(a), dtype=dtype)


def _z(*shape, dtype="float32"):
    return _t(np.zeros(shape), dtype)


@pytest.mark.parametrize("a, b", [((3, 4), (5, 6)), ((2, 3, 4), (2, 5, 6)), ((4,), (5,)),
                                  ((3, 4), (5,))])
def test_matmul_inner_dims(a, b):
    with pytest.raises(ValueError, match="matmul"):
        F.matmul(_z(*a), _z(*b))


def test_matmul_transposed_inner_dims():
    with pytest.raises(ValueError, match=r"matmul.*\(4, 5\)\^T"):
        F.matmul(_z(4, 3), _z(4, 5), transpose_a=False, transpose_b=True)


def test_matmul_rank_and_batch():
    with pytest.raises(ValueError, match="matmul"):
        _ops["matmul"](_z(3), _z(3, 4))
    with pytest.raises(ValueError, match="matmul"):
        F.matmul(_z(), _z(3))
    with pytest.raises(ValueError, match="matmul"):
        F.matmul(_z(2, 3, 4), _z(3, 4, 5))


def test_matmul_bool_is_a_type_error():
    with pytest.raises(TypeError, match="matmul"):
        F.matmul(_z(2, 2, dtype="bool"), _z(2, 2, dtype="bool"))


def test_matmul_mixed_dtypes_promote_and_grads_keep_dtypes():
    a = ty.Parameter(np.ones((2, 3)), dtype="float32")
    b = ty.Parameter(np.ones((3, 2)), dtype="float64")
    gm = ty.autodiff.GradManager().attach([a, b])
    with gm:
        y = F.matmul(a, b)
        gm.backward(y.sum())
    assert y.dtype == np.float64
    assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64
    np.testing.assert_array_equal(a.grad.numpy(), np.full((2, 3), 2.0))


def test_matmul_int_wraps_like_numpy():
    a = np.array([[2 ** 30, 2 ** 30]], dtype=np.int32)
    b = np.array([[3], [1]], dtype=np.int32)
    got = F.matmul(_t(a, "int32"), _t(b, "int32")).numpy()
    np.testing.assert_array_equal(got, np.matmul(a, b))


def test_matmul_operator_and_dot():
    a = np.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose((_t(a) @ _t(a.T)).numpy(), a @ a.T)
    assert F.dot(_t([1.0, 2.0]), _t([3.0, 4.0])).numpy().shape == ()
    assert float(F.dot(_t([1.0, 2.0]), _t([3.0, 4.0])).numpy()) == 11.0
    assert float(F.dot(_t(2.0), _t([3.0, 4.0])).numpy()) == 14.0
    with pytest.raises(ValueError, match="dot"):
        F.dot(_z(2, 2), _z(2))


def test_linear_in_nn_and_f():
    assert F.linear is F.nn.linear
    x, w, b = np.ones((2, 3)), np.arange(12.0).reshape(4, 3), np.arange(4.0)
    np.testing.assert_allclose(F.nn.linear(_t(x), _t(w), _t(b)).numpy(), x @ w.T + b)


@pytest.mark.parametrize("kw, xs, ws, match", [
    (dict(groups=2), (1, 3, 5, 5), (4, 1, 3, 3), "groups"),      # 3 channels, 2 groups
    (dict(groups=2), (1, 4, 5, 5), (3, 2, 3, 3), "groups"),      # 3 output channels
    ({}, (1, 3, 5, 5), (4, 2, 3, 3), "input channels"),          # C/groups mismatch
    (dict(stride=0), (1, 2, 5, 5), (4, 2, 3, 3), "stride"),
    (dict(dilation=0), (1, 2, 5, 5), (4, 2, 3, 3), "dilate_h"),
    (dict(padding=-1), (1, 2, 5, 5), (4, 2, 3, 3), "pad_h"),
    (dict(groups=0), (1, 2, 5, 5), (4, 2, 3, 3), "groups"),
    ({}, (1, 2, 2, 2), (4, 2, 3, 3), "does not fit"),
    (dict(dilation=3), (1, 2, 5, 5), (4, 2, 3, 3), "does not fit"),
    ({}, (2, 5, 5), (4, 2, 3, 3), "4-d"),
    ({}, (1, 2, 5, 5), (4, 2, 3), "4-d"),
    ({}, (1, 2, 5, 5), (4, 2, 0, 3), "empty kernel"),
])
def test_conv2d_bad_inputs(kw, xs, ws, match):
    with pytest.raises(ValueError, match=f"conv2d.*{match}"):
        _ops["conv2d"](_z(*xs), _z(*ws), **{
            {"stride": "stride_h", "dilation": "dilate_h", "padding": "pad_h"}.get(k, k): v
            for k, v in kw.items()})
    if len(xs) == 4 and len(ws) == 4:
        with pytest.raises(ValueError, match="conv2d"):
            F.conv2d(_z(*xs), _z(*ws), **kw)


def test_conv2d_messages_name_shapes():
    with pytest.raises(ValueError, match=r"\(1, 3, 5, 5\)"):
        F.conv2d(_z(1, 3, 5, 5), _z(4, 2, 3, 3))


def test_conv2d_int_is_a_type_error():
    with pytest.raises(TypeError, match="conv2d"):
        F.conv2d(_z(1, 2, 4, 4, dtype="int32"), _z(2, 2, 3, 3, dtype="int32"))


def test_conv2d_grouped_weight_must_match_groups():
    with pytest.raises(ValueError, match="groups"):
        F.conv2d(_z(1, 4, 4, 4), _z(2, 2, 2, 3, 3), groups=4)


def test_conv_mode():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    a = F.conv2d(_t(x, "float64"), _t(w, "float64"), conv_mode="convolution").numpy()
    b = F.conv2d(_t(x, "float64"), _t(np.ascontiguousarray(w[..., ::-1, ::-1]), "float64"))
    np.testing.assert_allclose(a, b.numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="conv_mode"):
        F.conv2d(_t(x), _t(w), conv_mode="bogus")


def test_backward_ops_check_dy_shape():
    with pytest.raises(ValueError, match="conv2d_backward_data.*output gradient"):
        _ops["conv2d_backward_data"](_z(4, 2, 3, 3), _z(1, 4, 2, 2), _z(1, 2, 5, 5))
    with pytest.raises(ValueError, match="conv2d_backward_filter.*output gradient"):
        _ops["conv2d_backward_filter"](_z(1, 2, 5, 5), _z(1, 3, 3, 3), _z(4, 2, 3, 3))


def test_conv_transpose2d_bad_inputs():
    with pytest.raises(ValueError, match="conv_transpose2d.*output_padding"):
        F.conv_transpose2d(_z(1, 2, 3, 3), _z(2, 3, 3, 3), stride=2, output_padding=2)
    with pytest.raises(ValueError, match="conv_transpose2d.*channels"):
        F.conv_transpose2d(_z(1, 3, 3, 3), _z(2, 3, 3, 3))
    with pytest.raises(ValueError, match="conv_transpose2d.*stride"):
        F.conv_transpose2d(_z(1, 2, 3, 3), _z(2, 3, 3, 3), stride=0)
    with pytest.raises(ValueError, match="conv_transpose2d"):
        F.conv_transpose2d(_z(1, 2, 3, 3), _z(2, 3, 1, 1), padding=2)


def test_conv1d_rank():
    with pytest.raises(ValueError, match="conv1d"):
        F.conv1d(_z(1, 2, 5, 5), _z(3, 2, 3))


def test_conv_in_nn_namespace():
    assert F.nn.conv2d is F.conv2d and F.nn.conv1d is F.conv1d
    assert F.nn.conv_transpose2d is F.conv_transpose2d


def test_half_precision_conv_and_matmul():
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    want = F.conv2d(_t(x.astype(np.float16), "float64"), _t(w.astype(np.float16), "float64"))
    got = F.conv2d(_t(x, "float16"), _t(w, "float16"))
    assert got.dtype == np.float16
    np.testing.assert_allclose(got.numpy().astype(np.float64), want.numpy(), rtol=3e-3, atol=3e-3)
    a = rng.standard_normal((3, 4))
    got = F.matmul(_t(a, "bfloat16"), _t(a.T, "bfloat16"))
    assert got.dtype.name == "bfloat16" or str(got.dtype) == "bfloat16"
