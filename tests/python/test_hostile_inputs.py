"""Regression tests for the hostile-input findings of issue 8 (item 7): each test feeds what an
attacker or a careless caller would and checks for a clear error or the correct value."""
import io
import re
import os

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F


# ---- 1. load refuses non-regular files and checks sizes before reading the body -------------

def test_load_refuses_fifo_without_blocking(tmp_path):
    fifo = tmp_path / "ckpt.fifo"
    os.mkfifo(fifo)  # no writer: a blocking open or read would hang forever
    with pytest.raises(ValueError, match="not a regular file"):
        ty.load(str(fifo))


def test_load_refuses_dev_zero_path_and_file_object():
    with pytest.raises(ValueError, match="/dev/zero is not a regular file"):
        ty.load("/dev/zero")
    with open("/dev/zero", "rb") as fh:
        with pytest.raises(ValueError, match="not a regular file"):
            ty.load(fh)


def _checkpoint_bytes():
    buf = io.BytesIO()
    ty.save({"w": ty.Tensor([1.0, 2.0])}, buf)
    return buf.getvalue()


class _CountingReader(io.RawIOBase):
    """An endless stream of zero bytes after ``head`` that counts what was read."""

    def __init__(self, head):
        self.head, self.taken = head, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = len(b)
        chunk = (self.head + bytes(n))[:n]
        self.head = self.head[n:]
        b[:n] = chunk
        self.taken += n
        return n


def test_load_checks_declared_sizes_before_reading_the_body(tmp_path):
    raw = _checkpoint_bytes()
    huge_header = raw[:16] + (1 << 40).to_bytes(8, "little") + raw[24:]
    path = tmp_path / "lying.ckpt"
    path.write_bytes(huge_header)
    with pytest.raises(ValueError, match="header length 1099511627776 exceeds"):
        ty.load(str(path))
    huge_data = raw[:24] + (1 << 40).to_bytes(8, "little") + raw[32:]
    path.write_bytes(huge_data)
    with pytest.raises(ValueError, match="truncated .header says"):
        ty.load(str(path))
    # An endless stream with a foreign magic is rejected after reading the prefix only.
    stream = _CountingReader(b"NOTACKPT")
    with pytest.raises(ValueError, match="bad magic"):
        ty.load(io.BufferedReader(stream, buffer_size=64))
    assert stream.taken <= 64


# ---- 2. int64 indices are never narrowed to int32 -------------------------------------------

BIG = 2**32 + 1  # narrowed to int32 this would be 1


def _vec():
    return ty.tensor([10.0, 11.0, 12.0])


@pytest.mark.parametrize("make_index", [
    lambda: ty.tensor([BIG], dtype="int64"),
    lambda: np.array([BIG], dtype=np.int64),
    lambda: [BIG],
], ids=["tensor", "numpy", "list"])
def test_getitem_and_setitem_with_index_beyond_int32_raise(make_index):
    x = _vec()
    with pytest.raises(IndexError, match="4294967297 is out of bounds"):
        x[make_index()]
    with pytest.raises(IndexError, match="4294967297 is out of bounds"):
        x[make_index()] = 5.0
    np.testing.assert_array_equal(x.numpy(), [10.0, 11.0, 12.0])


def test_int64_index_tensor_in_range_still_works():
    x = _vec()
    idx = ty.tensor([2, 0], dtype="int64")
    np.testing.assert_array_equal(x[idx].numpy(), [12.0, 10.0])
    x[idx] = ty.tensor([1.0, 2.0])
    np.testing.assert_array_equal(x.numpy(), [2.0, 11.0, 1.0])


def test_gather_scatter_one_hot_with_numpy_int64_beyond_int32_raise():
    x = _vec()
    with pytest.raises(IndexError, match="gather: index 4294967297"):
        F.gather(x, 0, np.array([BIG]))
    with pytest.raises(IndexError, match="scatter: index 4294967297"):
        F.scatter(x, 0, np.array([BIG]), ty.tensor([1.0]))
    with pytest.raises(IndexError, match="one_hot: index 4294967297"):
        F.one_hot(np.array([BIG]), 3)
    with pytest.raises(IndexError, match="one_hot: index 4294967297"):
        F.one_hot(ty.tensor([BIG], dtype="int64"), 3)


# ---- 3. the default int64->int32 / float64->float32 narrowing never wraps --------------------

@pytest.mark.parametrize("data, fragment", [
    ([2**40], "value 1099511627776 does not fit int32"),
    (np.array([-(2**31) - 1]), "value -2147483649 does not fit int32"),
    (np.array([2**32], dtype=np.uint64), "value 4294967296 does not fit int32"),
    (np.array([1.0, 1e39]), "value 1e+39 does not fit float32"),
    ([-1e300], "value -1e+300 does not fit float32"),
    ([2**70], "value 1180591620717411303424 does not fit int64"),
])
def test_tensor_from_data_that_does_not_fit_the_default_dtype_raises(data, fragment):
    with pytest.raises(OverflowError, match=re.escape(fragment)):
        ty.tensor(data)


def test_narrowing_keeps_values_that_fit_and_special_floats():
    np.testing.assert_array_equal(ty.tensor([2**31 - 1, -(2**31)]).numpy(), [2**31 - 1, -(2**31)])
    got = ty.tensor(np.array([np.nan, np.inf, -np.inf, 3e38, 1e-60])).numpy()
    assert got.dtype == np.float32
    assert np.isnan(got[0]) and got[1] == np.inf and got[2] == -np.inf
    assert got[3] == np.float32(3e38) and got[4] == 0.0
    assert ty.tensor([2**40], dtype="int64").numpy()[0] == 2**40


def test_python_int_operand_that_does_not_fit_the_tensor_dtype_raises():
    x = ty.tensor([1, 2])  # int32
    with pytest.raises(OverflowError, match="1099511627776 out of bounds for int32"):
        x + 2**40
    with pytest.raises(OverflowError, match="out of bounds for int32"):
        x._assign(2**33)
    assert (ty.tensor([1, 2], dtype="int64") + 2**40).numpy().tolist() == [2**40 + 1, 2**40 + 2]
    with pytest.raises(OverflowError, match="Python int 1180591620717411303424 does not fit int64"):
        ty.tensor([1, 2], dtype="int64") * 2**70


def test_explicit_integer_dtype_and_setitem_never_wrap():
    with pytest.raises(OverflowError, match="value 300 does not fit uint8"):
        ty.tensor([300], dtype="uint8")
    with pytest.raises(OverflowError, match="value 1099511627776 does not fit int32"):
        ty.tensor(np.array([2**40]), dtype="int32")
    x = ty.tensor([1, 2])
    with pytest.raises(OverflowError, match="value 1099511627776 does not fit int32"):
        x[0] = 2**40
    with pytest.raises(OverflowError, match="does not fit int32"):
        x[ty.tensor([0])] = np.array([2**40])
    np.testing.assert_array_equal(x.numpy(), [1, 2])


def test_uint64_index_beyond_int64_is_out_of_bounds():
    x = _vec()
    with pytest.raises(IndexError, match="index 18446744073709551615 is out of bounds"):
        x[np.array([2**64 - 1], dtype=np.uint64)]
    with pytest.raises(OverflowError, match="18446744073709551615 does not fit int64"):
        F.gather(x, 0, np.array([2**64 - 1], dtype=np.uint64))


# ---- 4. rebinding an attached parameter between forward and backward raises ----------------

def _set_item(p):
    p[0] = 5.0


def _set_value(p):
    p.set_value(ty.tensor([7.0, 8.0]))


def _assign(p):
    p._assign(ty.tensor([7.0, 8.0]))


def _step(modify, before_forward):
    from tianyuan.autodiff import GradManager
    # x is attached too: mul keeps p only for x's gradient (p's own reads only x)
    p, x = ty.Parameter([1.0, 2.0]), ty.Parameter([3.0, 4.0])
    gm = GradManager().attach([p, x])
    with gm:
        if before_forward:
            modify(p)
        loss = (p * x).sum()
        if not before_forward:
            modify(p)
        gm.backward(loss)
    return p


@pytest.mark.parametrize("modify", [_set_item, _set_value, _assign])
def test_writing_an_attached_parameter_between_forward_and_backward_raises(modify):
    with pytest.raises(ValueError, match="input 0 of mul, saved for its gradient, was modified"):
        _step(modify, before_forward=False)


@pytest.mark.parametrize("modify", [_set_item, _set_value, _assign])
def test_writing_an_attached_parameter_before_forward_keeps_its_gradient(modify):
    p = _step(modify, before_forward=True)
    np.testing.assert_array_equal(p.grad.numpy(), [3.0, 4.0])


# ---- 5. out-of-range labels and indices raise instead of wrapping -1 -------------------------

def _scores():
    return ty.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))


@pytest.mark.parametrize("bad", [-1, 3])
def test_cross_entropy_label_out_of_range_raises(bad):
    with pytest.raises(IndexError, match=f"cross_entropy: label out of range.*index {bad} "):
        F.nn.cross_entropy(_scores(), ty.tensor([0, bad]))


@pytest.mark.parametrize("bad", [-1, 3])
def test_indexing_one_hot_and_gather_refuse_negative_and_large_indices(bad):
    with pytest.raises(IndexError, match=f"indexing_one_hot: gather: index {bad} is out of"):
        F.nn.indexing_one_hot(_scores(), ty.tensor([0, bad]))
    with pytest.raises(IndexError, match=f"gather: index {bad} is out of bounds"):
        F.gather(_scores(), 1, np.array([[0], [bad]]))


@pytest.mark.parametrize("bad", [-1, 2])
def test_embedding_index_out_of_range_raises(bad):
    with pytest.raises(IndexError, match=rf"embedding: gather: index {bad} .*\[0, 2\)"):
        F.embedding(ty.tensor([[0, bad]]), _scores())


def test_embedding_picks_rows():
    got = F.embedding(ty.tensor([[1, 0], [1, 1]]), _scores()).numpy()
    np.testing.assert_array_equal(got, np.arange(6).reshape(2, 3)[[[1, 0], [1, 1]]])


def test_cross_entropy_label_check_holds_in_a_traced_function():
    from tianyuan.jit import trace

    @trace(symbolic=False)
    def loss(x, label):
        return F.nn.cross_entropy(x, label)

    x = _scores()
    for good in ([0, 1], [2, 2]):
        loss(x, ty.tensor(good))
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        loss(x, ty.tensor([0, -1]))


# ---- 6. a float where an integer is expected is an error, never truncated -------------------

def _center_crop(size):
    from tianyuan.data.transform import CenterCrop
    return CenterCrop(size)


def _img():
    return ty.tensor(np.ones((1, 1, 4, 4), dtype=np.float32))


def _mat():
    return ty.tensor(np.ones((2, 3), dtype=np.float32))


@pytest.mark.parametrize("call, fragment", [
    (lambda: F.zeros((2.5,)), "full: shape must be an integer, got float 2.5"),
    (lambda: F.ones(2.0), "full: shape must be an integer, got float 2.0"),
    (lambda: F.reshape(_mat(), (3, 2.0)), "reshape: shape must be an integer"),
    (lambda: _mat().reshape(2.0, 3), "reshape: shape must be an integer, got float 2.0"),
    (lambda: F.broadcast_to(_mat(), (2.5, 3)), "broadcast_to: shape must be an integer"),
    (lambda: F.conv2d(_img(), _img()[:, :, :2, :2], stride=1.5), "conv2d: stride must be an"),
    (lambda: F.max_pool2d(_img(), 2, stride=1.5), "max_pool2d: stride must be an integer"),
    (lambda: F.concat([_mat(), _mat()], axis=0.5), "concat: axis must be an integer"),
    (lambda: F.expand_dims(_mat(), 0.5), "expand_dims: axis must be an integer"),
    (lambda: F.softmax(_mat(), 0.5), "softmax: axis must be an integer"),
    (lambda: F.sum(_mat(), axis=0.5), "sum: axis must be an integer"),
    (lambda: F.mean(_mat(), axis=[0, 1.0]), "mean: axis must be an integer"),
    (lambda: F.argmax(_mat(), axis=0.5), "argmax: axis must be an integer"),
    (lambda: F.logsumexp(_mat(), axis=1.5), "max: axis must be an integer"),
    (lambda: F.one_hot(ty.tensor([1]), 2.5), "one_hot: num_classes must be an integer"),
    (lambda: F.topk(_mat(), 1.5), "topk: k must be an integer"),
    (lambda: F.linspace(0, 1, 2.5), "linspace: num must be an integer"),
    (lambda: ty.random.normal(size=(2.5,)), "random: size must be an integer"),
    (lambda: ty.random.seed(1.5), "random: seed must be an integer"),
    (lambda: _mat().transpose(1.0, 0), "transpose: axes must be an integer"),
    (lambda: F.reshape(_mat(), ty.tensor([3.0, 2.0])), "reshape: shape must be an integer"),
    (lambda: _center_crop((2.5, 3)), "transform: output_size must be an integer"),
    (lambda: ty.module.Linear(2.5, 3), "Linear: shape must be an integer, got float 2.5"),
    (lambda: ty.module.Conv2d(1, 1, 2.0), "Conv2d: kernel_size must be an integer"),
])
def test_float_where_an_integer_is_expected_raises_type_error(call, fragment):
    with pytest.raises(TypeError, match=re.escape(fragment)):
        call()


def test_integers_of_any_integer_kind_are_still_accepted():
    x = _mat()
    assert x.reshape(np.int64(3), 2).shape == (3, 2)
    assert x.reshape(ty.tensor([3, 2])).shape == (3, 2)
    assert F.zeros(np.int32(3)).shape == (3,)
    assert F.concat([x, x], axis=np.int8(1)).shape == (2, 6)


def test_thread_count_beyond_int_raises_instead_of_wrapping():
    before = ty.get_num_threads()
    with pytest.raises(ValueError, match="set_num_threads: got 4294967298 threads"):
        ty.set_num_threads(2**32 + 2)
    with pytest.raises(TypeError, match="set_num_threads: n must be an integer"):
        ty.set_num_threads(2.0)
    assert ty.get_num_threads() == before


# ---- 8. errors name the op and the value -----------------------------------------------------

@pytest.mark.parametrize("call, fragment", [
    (lambda: F.zeros((2**70,)), "full: shape 1180591620717411303424 does not fit int64"),
    (lambda: _mat().reshape(2**64, 3), "reshape: shape 18446744073709551616 does not fit"),
    (lambda: F.conv2d(_img(), _img(), stride=2**70), "conv2d: stride 1180591620717411303424"),
    (lambda: ty._C.ops["sum"](_mat(), axes=[2**70]), "sum: param 'axes' value 118059162071741"),
    (lambda: ty._C.ops["softmax"](_mat(), axis=2**70), "softmax: param 'axis' value 11805916"),
    (lambda: F.full((2,), 2**40, dtype="int32"), "full: value 1099511627776 does not fit int32"),
])
def test_huge_integers_raise_overflow_error_naming_the_op(call, fragment):
    with pytest.raises(OverflowError, match=re.escape(fragment)):
        call()


def test_conv1d_errors_name_conv1d_and_its_shapes():
    inp = ty.tensor(np.ones((1, 2, 5), dtype=np.float32))
    weight = ty.tensor(np.ones((1, 3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"^conv1d: .*input \(1, 2, 5\), weight \(1, 3, 2\)"):
        F.conv1d(inp, weight)
    with pytest.raises(TypeError, match="conv1d: stride must be an integer"):
        F.conv1d(inp, ty.tensor(np.ones((1, 2, 2), dtype=np.float32)), stride=1.5)


# ---- 7. the memory limit covers the allocator's cache; a negative limit is an error ----------

def test_memory_limit_counts_cached_blocks_and_never_caches_beyond_it():
    ty.empty_cache()
    base = ty.get_mem_status_bytes()["allocated"]
    limit = base + (8 << 20)
    ty.set_memory_limit(limit)
    try:
        for i in range(1, 12):  # distinct size classes: no block can be reused from the cache
            t = ty.tensor(np.ones(((1 << 18) + 40_000 * i,), dtype=np.float32))  # ~1-2 MiB
            del t
            s = ty.get_mem_status_bytes()
            assert s["allocated"] + s["cached"] <= limit, s
        assert ty.get_mem_status_bytes()["cached"] > 0  # it still caches under the limit
    finally:
        ty.set_memory_limit(0)


def test_lowering_the_limit_trims_the_cache():
    ty.set_memory_limit(0)
    t = ty.tensor(np.ones((1 << 20,), dtype=np.float32))
    del t
    assert ty.get_mem_status_bytes()["cached"] >= 4 << 20
    allocated = ty.get_mem_status_bytes()["allocated"]
    ty.set_memory_limit(allocated + (1 << 20))
    try:
        s = ty.get_mem_status_bytes()
        assert s["allocated"] + s["cached"] <= allocated + (1 << 20)
    finally:
        ty.set_memory_limit(None)
    assert ty.get_mem_status_bytes()["limit"] == 0


def test_negative_memory_limit_is_a_value_error():
    with pytest.raises(ValueError, match="set_memory_limit: limit must be >= 0 bytes.*got -1"):
        ty.set_memory_limit(-1)
    with pytest.raises(ValueError, match="set_memory_limit: limit must be >= 0"):
        ty._C.set_mem_limit(-5)
    with pytest.raises(TypeError, match="set_memory_limit: nbytes must be an integer"):
        ty.set_memory_limit(1e9)
    assert ty.get_mem_status_bytes()["limit"] == 0


class _RaggedDataset:
    """Sample 4 has a different shape from the others."""

    def __len__(self):
        return 6

    def __getitem__(self, i):
        return np.zeros((3 if i == 4 else 2, 2), dtype=np.float32), i


def test_dataloader_collate_error_names_the_sample_index_and_shapes():
    from tianyuan.data import DataLoader, SequentialSampler
    ds = _RaggedDataset()
    loader = DataLoader(ds, SequentialSampler(ds, batch_size=3))
    with pytest.raises(ValueError, match=re.escape(
            "dataset indices [3, 4, 5] (sample 1 of the batch is dataset index 4): Collator: "
            "sample 1 of the batch has shape (3, 2) at [0], sample 0 has (2, 2)")):
        list(loader)


def test_collator_names_the_dict_key_and_field_count():
    from tianyuan.data import Collator
    with pytest.raises(ValueError, match=re.escape("shape (3,) at ['x'], sample 0 has (2,)")):
        Collator().apply([{"x": np.zeros(2)}, {"x": np.zeros(3)}])
    with pytest.raises(ValueError, match="sample 1 of the batch has 1 fields, sample 0 has 2"):
        Collator().apply([(1, 2), (3,)])


# ---- 9. the README stands alone and its example runs -----------------------------------------

_ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def _readme():
    with open(os.path.join(_ROOT, "README.md"), encoding="utf-8") as f:
        return f.read()


def test_readme_links_only_files_of_the_repository():
    text = _readme()
    assert "shared/" not in text and "DESIGN.md" not in text
    for link in re.findall(r"\]\((docs/[^)]+)\)", text):
        if link != "docs/architecture.md":  # written by another part of issue 8
            assert os.path.exists(os.path.join(_ROOT, link)), link


def test_readme_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", _readme(), re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)  # it saves model.tyck
    exec(compile(blocks[0], "README.md", "exec"), {"__name__": "readme_example"})
    state = ty.load(str(tmp_path / "model.tyck"))
    assert any(k.endswith("weight") for k in state)



def test_embedding_index_check_holds_in_a_traced_function_and_keeps_gradients():
    from tianyuan.autodiff import GradManager
    from tianyuan.jit import trace
    weight = ty.Parameter(np.arange(6, dtype=np.float32).reshape(3, 2))
    gm = GradManager().attach([weight])

    @trace(symbolic=True)
    def step(idx):
        with gm:
            loss = F.embedding(idx, weight).sum()
            gm.backward(loss)
        return loss

    for _ in range(2):  # record, then replay
        weight.grad = None
        step(ty.tensor([2, 2, 0]))
        np.testing.assert_array_equal(weight.grad.numpy(), [[1, 1], [0, 0], [2, 2]])
    weight.grad = None
    with pytest.raises(IndexError, match="index -1 is out of bounds"):
        step(ty.tensor([0, -1, 1]))


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda: _mat()[7], IndexError, "indexing: index 7 is out of bounds for axis 0"),
    (lambda: _mat()[np.array([0, 9])], IndexError, "indexing: index 9 is out of bounds"),
    (lambda: F.split(_mat(), [2, 9]), ValueError, "split: invalid split points [2, 9]"),
])
def test_python_side_errors_name_the_operation(call, exc, fragment):
    with pytest.raises(exc) as e:
        call()
    assert fragment in str(e.value)
