"""MegEngine-compatible Tensor behaviour (MEGENGINE_API.md section 1, Tensor and autodiff)."""
import copy
import pickle

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.autodiff import Function, GradManager


# ---- construction ----
def test_construction_default_dtypes():
    assert ty.Tensor([1.0, 2.0]).dtype == np.float32
    assert ty.Tensor([1, 2]).dtype == np.int32  # int64 -> int32 (MegEngine)
    assert ty.Tensor(np.arange(3, dtype=np.float64)).dtype == np.float32
    assert ty.Tensor(np.arange(3, dtype=np.int64)).dtype == np.int32
    assert ty.Tensor([True, False]).dtype == np.bool_
    assert ty.Tensor(np.ones(2, np.float16)).dtype == np.float16
    assert ty.Tensor(np.ones(2, np.uint8)).dtype == np.uint8
    assert ty.Tensor(np.ones(2, np.int8)).dtype == np.int8
    assert ty.Tensor(3.5).dtype == np.float32 and ty.Tensor(3.5).shape == ()
    assert ty.Tensor(7).dtype == np.int32
    assert ty.Tensor().shape == (0,)


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "int8", "uint8", "int16",
                                   "int32", "int64", "bool"])
def test_explicit_dtype_respected(dtype):
    t = ty.Tensor([0, 1, 2], dtype=dtype)
    assert t.dtype == np.dtype(dtype)
    assert t.numpy().dtype == np.dtype(dtype)
    assert t.numpy().tolist() == np.array([0, 1, 2], dtype=dtype).tolist()
    assert ty.tensor([1, 2], dtype=np.dtype(dtype)).dtype == np.dtype(dtype)


def test_bfloat16_dtype():
    t = ty.Tensor([1.0, 2.5], dtype="bfloat16")
    assert t.dtype == "bfloat16" and str(t.dtype) == "bfloat16"
    assert t.numpy().dtype == np.float32 and t.numpy().tolist() == [1.0, 2.5]


def test_construction_copies_its_source():
    a = np.ones(3, np.float32)
    t = ty.Tensor(a)
    a[0] = 5
    assert t.numpy().tolist() == [1.0, 1.0, 1.0]
    # non-contiguous numpy input
    b = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    assert ty.Tensor(b).numpy().tolist() == b.tolist()


def test_tensor_from_tensor():
    a = ty.tensor([1.0, 2.0])
    b = ty.Tensor(a)
    assert b._shares_memory(a)
    c = ty.Tensor(a, dtype="int32")
    assert c.dtype == np.int32 and not c._shares_memory(a)


# ---- metadata and conversion ----
def test_metadata():
    t = ty.tensor(np.zeros((2, 3, 4), np.float32))
    assert t.shape == (2, 3, 4) and isinstance(t.shape, tuple)
    assert t.ndim == 3 and t.size == 24
    assert t.device == "cpu0"
    s = ty.tensor(1.0)
    assert s.shape == () and s.ndim == 0 and s.size == 1
    e = ty.tensor(np.zeros((0, 5), np.float32))
    assert e.size == 0 and e.shape == (0, 5)


def test_numpy_item_tolist():
    t = ty.tensor([[1, 2], [3, 4]])
    n = t.numpy()
    assert isinstance(n, np.ndarray) and n.tolist() == [[1, 2], [3, 4]]
    n[0, 0] = 100  # a copy
    assert t.numpy()[0, 0] == 1
    assert t.tolist() == [[1, 2], [3, 4]]
    assert ty.tensor(2.5).item() == 2.5 and isinstance(ty.tensor(2.5).item(), float)
    assert ty.tensor([7]).item() == 7 and isinstance(ty.tensor([7]).item(), int)
    assert ty.tensor(True).item() is True
    assert float(ty.tensor(1.5)) == 1.5 and int(ty.tensor(3.9)) == 3
    assert [10, 20, 30][ty.tensor(2)] == 30  # __index__


def test_array_protocol():
    t = ty.tensor([1.0, 2.0])
    a = np.asarray(t)
    assert a.dtype == np.float32 and a.tolist() == [1.0, 2.0]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert t.__array__(np.int32).dtype == np.int32
    with pytest.raises(ValueError):
        t.__array__(copy=False)
    with pytest.raises(ValueError):
        np.asarray(t, copy=False)
    assert np.array(t, copy=True).tolist() == [1.0, 2.0]


def test_repr_and_format():
    r = repr(ty.tensor([1.0, 2.0]))
    assert r.startswith("Tensor(") and "float32" in r and "cpu0" in r and "1." in r
    assert "int32" in repr(ty.tensor(3))
    assert repr(ty.Parameter([1.0])).startswith("Parameter(")
    assert f"{ty.tensor(1.23456):.2f}" == "1.23"
    assert str(ty.tensor([1])) == repr(ty.tensor([1]))


# ---- arithmetic ----
def test_weak_python_scalars():
    i = ty.tensor([1, 2])
    assert (i + 1).dtype == np.int32
    r = i + 1.5
    assert r.dtype == np.float32 and r.numpy().tolist() == [2.5, 3.5]
    h = ty.tensor([1.0, 2.0], dtype="float16")
    assert (h * 2.0).dtype == np.float16 and (h * 2).dtype == np.float16
    assert (h * 2.0).numpy().tolist() == [2.0, 4.0]
    d = ty.tensor([1.0], dtype="float64")
    assert (d + 1).dtype == np.float64
    u = ty.tensor([250], dtype="uint8")
    assert (u + 1).dtype == np.uint8
    b = ty.tensor([True, False])
    assert (b + 1).dtype == np.int32


def test_tensor_tensor_promotion():
    a = ty.tensor([1, 2], dtype="int8")
    b = ty.tensor([1, 2], dtype="uint8")
    assert (a + b).dtype == np.int16
    assert (ty.tensor([1], dtype="int32") * ty.tensor([1.0])).dtype == np.float32
    assert (ty.tensor([1.0], dtype="float16") + ty.tensor([1.0], dtype="float32")).dtype == \
        np.float32


def test_reflected_ops():
    t = ty.tensor([1.0, 2.0, 4.0])
    assert (1 + t).numpy().tolist() == [2.0, 3.0, 5.0]
    assert (10 - t).numpy().tolist() == [9.0, 8.0, 6.0]
    assert (2 * t).numpy().tolist() == [2.0, 4.0, 8.0]
    assert (8 / t).numpy().tolist() == [8.0, 4.0, 2.0]
    assert (9 // t).numpy().tolist() == [9.0, 4.0, 2.0]
    assert (2 ** t).numpy().tolist() == [2.0, 4.0, 16.0]
    assert (7 % t).numpy().tolist() == [0.0, 1.0, 3.0]
    assert (-t).numpy().tolist() == [-1.0, -2.0, -4.0]
    assert abs(ty.tensor([-3, 3])).numpy().tolist() == [3, 3]
    assert (+t) is t


def test_inplace_operators_rebind():
    t = ty.tensor([1.0, 2.0])
    u = t
    t += 1
    assert t.numpy().tolist() == [2.0, 3.0]
    t *= 2
    assert t.numpy().tolist() == [4.0, 6.0]
    assert u.numpy().tolist() == [1.0, 2.0]


def test_comparisons_return_bool_tensors():
    a = ty.tensor([1, 2, 3])
    for r, want in [(a < 2, [True, False, False]), (a <= 2, [True, True, False]),
                    (a > 2, [False, False, True]), (a >= 2, [False, True, True]),
                    (a == 2, [False, True, False]), (a != 2, [True, False, True])]:
        assert r.dtype == np.bool_ and r.numpy().tolist() == want
    assert (a == ty.tensor([1, 0, 3])).numpy().tolist() == [True, False, True]
    assert (a == None) is False and (a != None) is True  # noqa: E711
    assert ((a > 1) & (a < 3)).numpy().tolist() == [False, True, False]
    assert ((a < 2) | (a > 2)).numpy().tolist() == [True, False, True]
    assert (~(a > 1)).numpy().tolist() == [True, False, False]


def test_hash_and_dict_keys():
    a, b = ty.tensor([1.0]), ty.tensor([1.0])
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b" and len(d) == 2
    assert hash(a) == hash(a)
    assert a in {a} and len({a, b}) == 2


def test_len_and_iteration():
    t = ty.tensor([[1, 2], [3, 4], [5, 6]])
    assert len(t) == 3
    rows = list(t)
    assert len(rows) == 3 and rows[2].numpy().tolist() == [5, 6]
    assert [x.item() for x in ty.tensor([7, 8])] == [7, 8]
    with pytest.raises(TypeError):
        len(ty.tensor(1))
    with pytest.raises(TypeError):
        list(ty.tensor(1))
    assert len(ty.tensor(np.zeros((0, 2), np.float32))) == 0


# ---- shape methods ----
def test_astype():
    t = ty.tensor([1.7, -2.2])
    assert t.astype("int32").numpy().tolist() == [1, -2]
    assert t.astype(np.float16).dtype == np.float16
    assert t.astype("bool").numpy().tolist() == [True, True]
    assert F.astype(t, "float64").dtype == np.float64


def test_reshape_transpose_flatten():
    t = ty.tensor(np.arange(6, dtype=np.float32))
    r = t.reshape(2, 3)
    assert r.shape == (2, 3) and r._shares_memory(t)
    assert t.reshape((3, -1)).shape == (3, 2)
    assert t.reshape([1, 6]).shape == (1, 6)
    assert r.transpose().shape == (3, 2) and r.T.shape == (3, 2)
    assert r.transpose(1, 0).numpy().tolist() == np.arange(6).reshape(2, 3).T.tolist()
    assert r.T._shares_memory(t) and not r.T.is_contiguous()
    f = r.T.flatten()
    assert f.numpy().tolist() == [0, 3, 1, 4, 2, 5]
    x = ty.tensor(np.zeros((2, 3, 4), np.float32))
    assert x.flatten(1).shape == (2, 12) and x.flatten(0, 1).shape == (6, 4)
    assert ty.tensor(5.0).flatten().shape == (1,)
    assert x.reshape(ty.tensor(4), 6).shape == (4, 6)


def test_reduction_methods():
    t = ty.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.sum().item() == 21.0 and t.sum().shape == ()
    assert t.sum(axis=0).numpy().tolist() == [5.0, 7.0, 9.0]
    assert t.sum(axis=1, keepdims=True).shape == (2, 1)
    assert t.mean().item() == 3.5
    assert t.mean(axis=1).numpy().tolist() == [2.0, 5.0]
    assert t.max().item() == 6.0 and t.min().item() == 1.0
    assert t.max(axis=0).numpy().tolist() == [4.0, 5.0, 6.0]
    assert t.min(axis=-1).numpy().tolist() == [1.0, 4.0]
    assert t.prod(axis=1).numpy().tolist() == [6.0, 120.0]
    assert ty.tensor([1, 2]).mean().dtype == np.float32


# ---- values ----
def test_detach_shares_memory_without_autodiff():
    x = ty.Parameter([1.0, 2.0])
    gm = GradManager().attach(x)
    d = x.detach()
    assert d._shares_memory(x) and d._data_ptr == x._data_ptr
    assert not d._tracked and x._tracked
    with gm:
        y = (d * x).sum()
        gm.backward(y)
    assert x.grad.numpy().tolist() == [1.0, 2.0]  # d is a constant
    assert d.grad is None


def test_set_value_and_reset_zero():
    t = ty.tensor([1.0, 2.0])
    ident = id(t)
    t.set_value(ty.tensor([5.0, 6.0, 7.0]))
    assert id(t) == ident and t.numpy().tolist() == [5.0, 6.0, 7.0]
    t.set_value([1, 2])
    assert t.dtype == np.float32 and t.numpy().tolist() == [1.0, 2.0]
    v = t.reshape(2)  # a view of t's storage
    t.reset_zero()
    assert t.numpy().tolist() == [0.0, 0.0]
    assert v.numpy().tolist() == [0.0, 0.0]  # in place


def test_pickle_round_trip():
    t = ty.tensor([[1.0, 2.0]], dtype="float16")
    c = pickle.loads(pickle.dumps(t))
    assert isinstance(c, ty.Tensor)
    assert c.dtype == np.float16 and c.numpy().tolist() == [[1.0, 2.0]]
    assert not c._shares_memory(t)
    i = pickle.loads(pickle.dumps(ty.tensor([1, 2], dtype="int64")))
    assert i.dtype == np.int64 and i.numpy().tolist() == [1, 2]
    b = pickle.loads(pickle.dumps(ty.tensor([1.5], dtype="bfloat16")))
    assert b.dtype == "bfloat16" and b.numpy().tolist() == [1.5]


def test_copy_deepcopy_and_name():
    t = ty.tensor([[1.0, 2.0]], dtype="float16")
    t.name = "w"
    assert t.name == "w"
    assert ty.Tensor([1.0], name="b").name == "b"
    for c in (copy.copy(t), copy.deepcopy(t)):
        assert isinstance(c, ty.Tensor)
        assert c.dtype == np.float16 and c.numpy().tolist() == [[1.0, 2.0]]
        assert not c._shares_memory(t)
        assert c.name == "w"
    c = copy.deepcopy(t)
    c[0, 0] = 9
    assert t.numpy()[0, 0] == 1


def test_indexing_basics():
    t = ty.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))
    assert t[1].numpy().tolist() == [4, 5, 6, 7]
    assert t[:, 1].numpy().tolist() == [1, 5, 9]
    assert t[::2, ::-1].numpy().tolist() == [[3, 2, 1, 0], [11, 10, 9, 8]]
    assert t[-1, -1].item() == 11
    assert t[None].shape == (1, 3, 4) and t[..., 0].shape == (3,)
    assert t[[0, 2]].numpy().tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]]
    assert t[t > 9].numpy().tolist() == [10, 11]
    t[0] = 0.5
    assert t.numpy()[0].tolist() == [0.5] * 4


def test_memory_counters():
    s = ty.get_mem_status_bytes()
    for k in ("allocated", "peak", "cached", "alloc_calls", "limit"):
        assert isinstance(s[k], int) and s[k] >= 0
    before = s["allocated"]
    t = ty.tensor(np.zeros(1 << 18, np.float32))  # 1 MiB
    mid = ty.get_mem_status_bytes()
    assert mid["allocated"] - before >= 1 << 20
    assert ty.get_max_mem_bytes() >= mid["allocated"]
    del t
    assert ty.get_mem_status_bytes()["allocated"] <= before
    ty.reset_peak_memory()
    assert ty.get_max_mem_bytes() == ty.get_mem_status_bytes()["allocated"]
    ty.empty_cache()
    assert ty.get_mem_status_bytes()["cached"] == 0


# ---- GradManager ----
def test_grad_manager_accumulates():
    w = ty.Parameter([1.0, 2.0, 3.0])
    gm = GradManager().attach(w)
    assert gm.attached_tensors() == [w]
    for _ in range(2):
        with gm:
            loss = (w * w).sum()
            gm.backward(loss)
    assert w.grad.numpy().tolist() == [4.0, 8.0, 12.0]  # 2 * 2w, accumulated
    w.grad = None
    with gm:
        gm.backward(w * 3.0, dy=ty.tensor([1.0, 0.0, 2.0]))
    assert w.grad.numpy().tolist() == [3.0, 0.0, 6.0]


def test_grad_manager_record_release():
    w = ty.Parameter([2.0])
    gm = GradManager().attach([w])
    gm.record()
    assert gm.is_recording()
    with pytest.raises(RuntimeError):
        gm.record()
    y = w * w * w
    gm.backward(y)
    assert not gm.is_recording()  # backward releases
    assert w.grad.numpy().tolist() == [12.0]
    with pytest.raises(RuntimeError):
        gm.backward(w * w)  # outside recording


def test_second_backward_in_one_recording_raises():
    w = ty.Parameter([1.0])
    gm = GradManager().attach(w)
    with gm:
        y = w * 2.0
        gm.backward(y)
        with pytest.raises(RuntimeError):
            gm.backward(y)
    assert w.grad.numpy().tolist() == [2.0]


def test_grad_manager_callbacks():
    w = ty.Parameter([1.0, 1.0])
    seen = []

    def scale(t, g):
        seen.append(t is w)
        return g * 10.0

    gm = GradManager().attach(w, callbacks=scale)
    gm.attach(w, callbacks=[lambda t, g: g + 1.0])  # appended, applied after scale
    with gm:
        gm.backward((w * 3.0).sum())
    assert seen == [True]
    assert w.grad.numpy().tolist() == [31.0, 31.0]


def test_grad_of_unused_tensor_stays_none():
    a, b = ty.Parameter([1.0]), ty.Parameter([2.0])
    gm = GradManager().attach([a, b])
    with gm:
        gm.backward(a * 5.0)
    assert a.grad.numpy().tolist() == [5.0] and b.grad is None


def test_broadcast_gradient_shape():
    b = ty.Parameter([1.0, 2.0, 3.0])
    x = ty.tensor(np.ones((4, 3), np.float32))
    gm = GradManager().attach(b)
    with gm:
        gm.backward((x * b).sum())
    assert b.grad.shape == (3,) and b.grad.numpy().tolist() == [4.0, 4.0, 4.0]


def test_custom_function():
    class ScaledSquare(Function):
        def forward(self, x):
            self.x = x
            return x * x

        def backward(self, dy):
            return dy * 100.0 * self.x  # deliberately not the true gradient

    x = ty.Parameter([1.0, 2.0])
    gm = GradManager().attach(x)
    with gm:
        y = ScaledSquare()(x)
        assert y.numpy().tolist() == [1.0, 4.0]
        gm.backward(y.sum())
    assert x.grad.numpy().tolist() == [100.0, 200.0]


def test_custom_function_multiple_outputs():
    class Split(Function):
        def forward(self, x):
            return x * 2.0, x * 3.0

        def backward(self, da, db):
            return da * 2.0 + db * 3.0

    x = ty.Parameter([1.0])
    gm = GradManager().attach(x)
    with gm:
        a, b = Split()(x)
        gm.backward([a, b])
    assert x.grad.numpy().tolist() == [5.0]
    # without recording, Function just runs forward
    a, b = Split()(ty.tensor([2.0]))
    assert a.numpy().tolist() == [4.0] and b.numpy().tolist() == [6.0]
