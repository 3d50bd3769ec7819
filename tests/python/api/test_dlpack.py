"""DLPack interop (RELIABILITY.md E2): zero-copy round trips with numpy (and torch when it
imports), both directions, every shared dtype, 0-d, empty and strided tensors, lifetimes."""
import gc

import numpy as np
import pytest

import tianyuan as ty
from tianyuan import _C
from tianyuan._dlpack import from_dlpack

DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64", "bool"]


def ptr(a):
    return a.__array_interface__["data"][0]


def sample(dtype, shape=(2, 3)):
    return (np.arange(int(np.prod(shape))).reshape(shape) % 3).astype(dtype)


def one(dtype):
    return np.ones((), dtype)


# ---- tianyuan -> numpy ----
@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_from_tensor_zero_copy(dtype):
    t = ty.tensor(sample(dtype), dtype=dtype)
    a = np.from_dlpack(t)
    assert a.dtype == np.dtype(dtype) and a.shape == (2, 3)
    assert a.tolist() == t.numpy().tolist()
    assert ptr(a) == t._data_ptr
    a[1, 2] = one(dtype)  # aliasing: writes through numpy are seen by the tensor
    assert t.numpy()[1, 2] == one(dtype)


def test_tensor_dlpack_device():
    assert ty.tensor([1.0]).__dlpack_device__() == (1, 0)


@pytest.mark.parametrize("make", [
    lambda: ty.tensor(np.arange(12, dtype=np.float32).reshape(3, 4)).T,
    lambda: ty.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))[::2, 1::2],
    lambda: ty.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))[::-1, ::-2],
    lambda: ty.functional.broadcast_to(ty.tensor([[1.0], [2.0]]), (2, 5)),
])
def test_numpy_from_strided_tensor(make):
    t = make()
    a = np.from_dlpack(t)
    assert a.shape == t.shape and a.tolist() == t.numpy().tolist()
    assert ptr(a) == t._data_ptr
    assert tuple(s // 4 for s in a.strides) == t._strides


def test_numpy_from_0d_and_empty():
    s = ty.tensor(3.5)
    a = np.from_dlpack(s)
    assert a.shape == () and a.item() == 3.5
    e = ty.tensor(np.zeros((0, 4), np.int32))
    b = np.from_dlpack(e)
    assert b.shape == (0, 4) and b.dtype == np.int32


def test_export_keeps_memory_alive():
    t = ty.tensor(np.arange(1000, dtype=np.float32))
    a = np.from_dlpack(t)
    del t
    gc.collect()
    ty.tensor(np.full(1000, -1.0, np.float32))  # would reuse the freed block
    assert a[:3].tolist() == [0.0, 1.0, 2.0] and a[-1] == 999.0


def test_export_survives_set_value():
    t = ty.tensor([1.0, 2.0])
    a = np.from_dlpack(t)
    t.set_value([5.0, 6.0, 7.0])  # rebinds t; the exported storage stays valid
    assert a.tolist() == [1.0, 2.0]


def test_legacy_and_versioned_capsules():
    t = ty.tensor([1.0, 2.0])
    legacy = t.__dlpack__()
    assert "dltensor" in repr(legacy) and "versioned" not in repr(legacy)
    versioned = t.__dlpack__(max_version=(1, 0))
    assert "dltensor_versioned" in repr(versioned)
    assert "versioned" not in repr(t.__dlpack__(max_version=(0, 8)))
    # both kinds import; unconsumed capsules are freed by their destructors (ASan/leak checks)
    assert from_dlpack(legacy).numpy().tolist() == [1.0, 2.0]
    assert from_dlpack(versioned)._data_ptr == t._data_ptr
    del legacy, versioned
    t.__dlpack__(max_version=(1, 0))  # dropped unconsumed


def test_export_copy_flag():
    t = ty.tensor([1.0, 2.0])
    c = np.from_dlpack(t, copy=True)
    assert ptr(c) != t._data_ptr and c.tolist() == [1.0, 2.0]
    c[0] = 9
    assert t.numpy()[0] == 1.0
    assert ptr(np.from_dlpack(t, copy=False)) == t._data_ptr


def test_export_bad_arguments():
    t = ty.tensor([1.0])
    with pytest.raises(BufferError, match="stream"):
        t.__dlpack__(stream=1)
    with pytest.raises(BufferError, match="__dlpack__"):
        t.__dlpack__(dl_device=(2, 0))
    assert np.from_dlpack(t, device="cpu").tolist() == [1.0]
    with pytest.raises(TypeError, match="max_version"):
        t.__dlpack__(max_version=3)
    b = ty.tensor([1.0], dtype="bfloat16")
    cap = b.__dlpack__()  # bfloat16 exports (DLPack code 4); numpy cannot import it
    assert from_dlpack(cap).dtype == "bfloat16"


# ---- numpy -> tianyuan ----
@pytest.mark.parametrize("dtype", DTYPES)
def test_tensor_from_numpy_zero_copy(dtype):
    a = sample(dtype)
    t = from_dlpack(a)
    assert t.dtype == np.dtype(dtype) and t.shape == (2, 3)  # no int64 -> int32 narrowing
    assert t.numpy().tolist() == a.tolist()
    assert t._data_ptr == ptr(a)
    a[0, 0] = one(dtype)
    assert t.numpy()[0, 0] == one(dtype)
    t2 = ty.tensor(sample(dtype), dtype=dtype)
    t._assign(t2 + t2 if dtype != "bool" else t2)  # writes through the tensor
    assert a.tolist() == t.numpy().tolist()


@pytest.mark.parametrize("make", [
    lambda: np.arange(24, dtype=np.float32).reshape(4, 6).T,
    lambda: np.arange(24, dtype=np.int16).reshape(4, 6)[1::2, ::3],
    lambda: np.arange(24, dtype=np.float64).reshape(4, 6)[::-1, ::-2],
    lambda: np.arange(24, dtype=np.int32).reshape(2, 3, 4)[:, ::-1, 1:3],
    lambda: np.lib.stride_tricks.as_strided(np.arange(3, dtype=np.float32), (4, 3), (0, 4)),
])
def test_tensor_from_strided_numpy(make):
    a = make()
    t = from_dlpack(a)
    assert t.shape == a.shape and t.numpy().tolist() == a.tolist()
    assert t._data_ptr == ptr(a)
    assert t._strides == tuple(s // a.itemsize for s in a.strides)
    assert (t * 2).numpy().tolist() == (a * 2).tolist()  # kernels read the view correctly
    assert t.sum().item() == pytest.approx(float(a.sum()))


def test_tensor_from_numpy_0d_and_empty():
    t = from_dlpack(np.array(2.5, np.float32))
    assert t.shape == () and t.item() == 2.5
    e = from_dlpack(np.zeros((3, 0), np.float16))
    assert e.shape == (3, 0) and e.dtype == np.float16 and e.size == 0


def test_tensor_from_numpy_lifetime():
    a = np.arange(100, dtype=np.float64)
    t = from_dlpack(a)
    v = t[10:20]  # a view of the imported storage
    del a, t
    gc.collect()
    np.full(100, -1.0)  # churn the heap
    assert v.numpy().tolist() == [float(i) for i in range(10, 20)]


def test_producer_deleter_runs_when_last_view_dies():
    import weakref

    class Owner(np.ndarray):
        pass

    base = np.arange(10, dtype=np.float32).view(Owner)
    ref = weakref.ref(base)
    t = from_dlpack(base)
    del base
    gc.collect()
    assert ref() is not None  # the capsule's deleter keeps the producer alive
    v = t.reshape(2, 5)
    del t
    gc.collect()
    assert ref() is not None
    del v
    gc.collect()
    assert ref() is None  # the last view released the producer


def test_round_trip_both_ways():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = from_dlpack(a)
    b = np.from_dlpack(t)
    assert ptr(b) == ptr(a)
    b[0, 0] = 42
    assert a[0, 0] == 42 and t.numpy()[0, 0] == 42
    u = from_dlpack(t)  # tianyuan -> tianyuan
    assert u._data_ptr == t._data_ptr


def test_readonly_numpy_is_copied():
    a = np.arange(4, dtype=np.float32)
    a.flags.writeable = False
    t = from_dlpack(a)  # numpy marks the versioned capsule read-only
    assert t.numpy().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert t._data_ptr != ptr(a)
    with pytest.raises(BufferError, match="read-only"):
        from_dlpack(a, copy=False)


def test_from_dlpack_copy_true():
    a = np.arange(3, dtype=np.int32)
    t = from_dlpack(a, copy=True)
    assert t._data_ptr != ptr(a)
    a[0] = 7
    assert t.numpy().tolist() == [0, 1, 2]


def test_from_dlpack_bad_inputs():
    with pytest.raises(TypeError, match="from_dlpack"):
        from_dlpack([1, 2, 3])
    with pytest.raises(TypeError, match="from_dlpack"):
        from_dlpack(np.ones(2, np.complex64))
    with pytest.raises(TypeError, match="from_dlpack"):
        from_dlpack(np.ones(2, np.uint16))
    cap = np.ones(2, np.float32).__dlpack__()
    from_dlpack(cap)
    with pytest.raises(ValueError, match="from_dlpack"):
        from_dlpack(cap)  # already consumed
    with pytest.raises(ValueError, match="from_dlpack"):
        _C._from_dlpack(object())
    with pytest.raises(BufferError, match="from_dlpack"):
        from_dlpack(np.ones(2), device="gpu0")

    class OnGPU:
        def __dlpack__(self, **kw):
            raise AssertionError("must not be called")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(BufferError, match="device"):
        from_dlpack(OnGPU())


def test_from_dlpack_old_producer_without_keywords():
    class Old:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, stream=None):
            return self.a.__dlpack__()

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    a = np.arange(4, dtype=np.int8)
    t = from_dlpack(Old(a))
    assert t._data_ptr == ptr(a) and t.numpy().tolist() == [0, 1, 2, 3]
    c = from_dlpack(Old(a), copy=True)
    assert c._data_ptr != ptr(a) and c.numpy().tolist() == [0, 1, 2, 3]


def test_exported_result_of_op_chain():
    t = ty.tensor(np.arange(6, dtype=np.float32)).reshape(2, 3)
    a = np.from_dlpack((t * 2 + 1).T)
    assert a.tolist() == (np.arange(6).reshape(2, 3) * 2 + 1).T.tolist()


# ---- torch ----
TORCH_DTYPES = ["float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64",
                "bool"]


@pytest.mark.parametrize("dtype", TORCH_DTYPES + ["bfloat16"])
def test_torch_round_trip(dtype):
    torch = pytest.importorskip("torch")
    tt = getattr(torch, dtype)
    x = torch.arange(6).reshape(2, 3).to(tt)
    t = from_dlpack(x)
    assert t.shape == (2, 3) and t._data_ptr == x.data_ptr()
    assert t.astype("float32").numpy().tolist() == x.to(torch.float32).tolist()
    y = torch.from_dlpack(t)
    assert y.data_ptr() == x.data_ptr() and y.dtype == tt
    # torch has no negative strides (numpy tests cover those): a strided, offset view instead
    s = ty.tensor(np.arange(12, dtype=np.float32).reshape(3, 4))[::2, 1::2]
    z = torch.from_dlpack(s)
    assert z.tolist() == s.numpy().tolist() and z.data_ptr() == s._data_ptr
    z[0, 0] = -5
    assert s.numpy()[0, 0] == -5
    w = from_dlpack(torch.arange(12.0).reshape(3, 4).t())
    assert w.numpy().tolist() == np.arange(12.0).reshape(3, 4).T.tolist()
