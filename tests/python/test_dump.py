"""trace.dump writes a .tym model that the C runtime (GraphInference) runs bit for bit like
eager execution, at the dumped batch size and another; the dump API's errors; and a hostile
file reader: every corrupt or crafted file is refused with a clear error, never a crash."""
import glob
import io
import json
import os
import struct
import zlib

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference


class MLP(M.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = M.Linear(20, 32)
        self.fc2 = M.Linear(32, 5)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)) * 0.5 + 1)


class CNN(M.Module):
    """The Fashion-MNIST CNN's layers, smaller: conv, relu, max_pool, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = M.Conv2d(1, 4, 3, padding=1)
        self.conv2 = M.Conv2d(4, 8, 3, padding=1)
        self.fc1 = M.Linear(8 * 7 * 7, 16)
        self.fc2 = M.Linear(16, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.flatten(x, 1)
        return self.fc2(F.relu(self.fc1(x)))


def _bits_equal(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(
        a.view(np.uint32), b.view(np.uint32))


def _dump(net, x, **kw):
    ty.random.seed(1)

    @trace(capture_as_const=True)
    def f(inp):
        return net(inp)

    f(ty.tensor(x))
    buf = io.BytesIO()
    res = f.dump(buf, **kw)
    return buf.getvalue(), res


@pytest.mark.parametrize("make, shape", [(MLP, (4, 20)), (CNN, (3, 1, 28, 28))])
def test_dump_runs_bitwise_like_eager(make, shape, tmp_path):
    ty.random.seed(0)
    net = make()
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)
    data, res = _dump(net, x, arg_names=["data"], output_names=["logits"])
    assert res.inputs == ["data"] and res.outputs == ["logits"]
    assert res.tot_bytes == len(data) and 0 < res.weight_bytes < res.tot_bytes
    assert res.nr_opr > 0
    path = tmp_path / "m.tym"
    path.write_bytes(data)
    g = GraphInference(str(path))
    for batch in (shape[0], shape[0] + 2):       # the dumped batch size and another
        xb = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
        want = net(ty.tensor(xb)).numpy()
        out = g.run(xb)
        assert list(out) == ["logits"]
        assert _bits_equal(out["logits"], want)
        assert _bits_equal(g.run(inp_dict={"data": xb})["logits"], want)


def test_dump_dict_outputs_and_metadata():
    ty.random.seed(0)
    net = MLP()

    @trace(capture_as_const=True)
    def f(x):
        y = net(x)
        return {"prob": F.softmax(y, axis=1), "raw": y}

    x = np.ones((2, 20), np.float32)
    f(ty.tensor(x))
    buf = io.BytesIO()
    res = f.dump(buf, user_info={"who": "test"})
    assert res.outputs == ["prob", "raw"] and res.inputs == ["arg_0"]
    g = GraphInference(buf.getvalue())
    assert json.loads(g.metadata)["user_info"] == {"who": "test"}
    out = g.run(x)
    assert list(out) == ["prob", "raw"]
    assert _bits_equal(out["raw"], net(ty.tensor(x)).numpy())
    with pytest.raises(TypeError, match="dict"):
        f.dump(io.BytesIO(), output_names=["a", "b"])


def test_dump_drops_dead_ops():
    @trace(capture_as_const=True)
    def f(x):
        F.exp(x) * 3          # unused: not in the model
        return x + 1

    f(ty.tensor([1.0, 2.0]))
    res = f.dump(io.BytesIO())
    assert res.nr_opr == 1


def test_dump_api_errors():
    @trace
    def plain(x):
        return x * 2

    plain(ty.tensor([1.0]))
    with pytest.raises(ValueError, match="capture_as_const"):
        plain.dump(io.BytesIO())

    @trace(capture_as_const=True)
    def g(x):
        return x * 2

    with pytest.raises(ValueError, match="call the traced function"):
        g.dump(io.BytesIO())
    g(ty.tensor([1.0]))
    with pytest.raises(ValueError, match="unknown keyword"):
        g.dump(io.BytesIO(), no_such_option=True)
    with pytest.raises(ValueError, match="not implemented yet"):
        g.dump(io.BytesIO(), enable_nchw44=True)
    with pytest.raises(ValueError, match="not implemented yet"):
        g.dump(io.BytesIO(), enable_fuse_conv_bias_nonlinearity=True)
    g.dump(io.BytesIO(), enable_nchw44=False)    # accepted when off
    with pytest.raises(ValueError, match="arg_names"):
        g.dump(io.BytesIO(), arg_names=["a", "b"])

    @trace(capture_as_const=True)
    def nothing(x):
        x * 2

    nothing(ty.tensor([1.0]))
    with pytest.raises(ValueError, match="returns no tensor"):
        nothing.dump(io.BytesIO())


def test_graph_inference_input_errors():
    data, _ = _dump(MLP(), np.ones((2, 20), np.float32))
    g = GraphInference(data)
    with pytest.raises(ValueError, match="missing"):
        g.run()
    with pytest.raises(ValueError, match="arg_0"):
        g.run(np.ones((2, 21), np.float32))      # a fixed dimension differs: named


def _input_dims_at(b):
    """File position of input 0's dims (metadata, count, name, dtype, ndim byte)."""
    mlen = struct.unpack_from("<I", b, 64)[0]
    at = 68 + mlen + 4
    for _ in range(2):                           # name, dtype
        at += 4 + struct.unpack_from("<I", b, at)[0]
    return at + 1


def test_variable_dims_are_probed_and_a_shape_the_graph_cannot_take_is_named():
    @trace(capture_as_const=True)
    def f(x):
        return x.reshape(3, 2) + 1                # a fixed shape: batch 2 only

    f(ty.tensor(np.ones((2, 3), np.float32)))
    buf = io.BytesIO()
    f.dump(buf)
    g = GraphInference(buf.getvalue())
    assert g._inputs[0][2] == (2, 3)              # the probe found batch 2 only
    with pytest.raises(ValueError, match=r"input 'arg_0' has shape \(2, 3\).*got \(4, 3\)"):
        g.run(np.ones((4, 3), np.float32))
    # the file claiming dimension 0 may vary: the op that cannot take it is named
    b = bytearray(buf.getvalue())
    at = _input_dims_at(b)
    assert struct.unpack_from("<q", b, at)[0] == 2
    b[at:at + 8] = struct.pack("<q", -1)
    g = GraphInference(bytes(_fix_crc(b)))
    with pytest.raises(ValueError, match=r"op 0 \(reshape\).*input 'arg_0' has shape \(4, 3\)"):
        g.run(np.ones((4, 3), np.float32))

    @trace(capture_as_const=True)
    def h(x):
        return F.flatten(x, 1).sum(axis=1)

    h(ty.tensor(np.ones((2, 3, 2), np.float32)))
    buf = io.BytesIO()
    h.dump(buf)
    g = GraphInference(buf.getvalue())
    assert g._inputs[0][2] == (-1, 3, 2) and g._outputs[0][2] == (-1,)


GOLDEN = sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                       "tym_files", "*.tym")))


@pytest.mark.parametrize("path", GOLDEN, ids=os.path.basename)
def test_committed_models_still_load_and_compute(path):
    """Files written by format 1.0 (tym_files/make_golden.py, never regenerated)."""
    ref = np.load(path[:-4] + ".npz")
    g = GraphInference(path)
    assert g.input_names == ["data"] and g.output_names == ["logits"]
    assert json.loads(g.metadata)["user_info"] == os.path.basename(path)[:-4]
    out = g.run(ref["data"])["logits"]
    np.testing.assert_allclose(out, ref["logits"], rtol=1e-5, atol=1e-6)


def test_golden_files_exist():
    assert len(GOLDEN) >= 2


# ---- hostile files ----
def _small_model():
    data, _ = _dump(MLP(), np.ones((2, 20), np.float32))
    return bytearray(data)


def _fix_crc(b):
    b[12:16] = struct.pack("<I", zlib.crc32(bytes(b[16:])))
    return b


def _load_error(b):
    with pytest.raises(ty.TianyuanError) as e:
        GraphInference(bytes(b))
    return str(e.value)


def test_reader_refuses_truncated_files():
    good = _small_model()
    for n in sorted({0, 1, 8, 63, 64, 65, 100, len(good) // 2, len(good) - 1}):
        assert "model:" in _load_error(good[:n])


def test_reader_refuses_bad_header():
    good = _small_model()
    b = bytearray(good)
    b[0:8] = b"NOTMODEL"
    assert "magic" in _load_error(b)
    b = bytearray(good)
    b[8:10] = struct.pack("<H", 2)
    msg = _load_error(b)
    assert "2.0" in msg and "1.0" in msg and "newer" in msg
    b = bytearray(good)
    b[-1] ^= 0xFF
    assert "checksum" in _load_error(b)
    b = bytearray(good)
    b[16:24] = struct.pack("<Q", 2 ** 63)            # file size
    assert "header" in _load_error(_fix_crc(b))
    b = bytearray(good)
    b[40:48] = struct.pack("<Q", 2 ** 64 - 64)       # data offset far out
    assert "header" in _load_error(_fix_crc(b))


def _graph_patch(good, find, repl):
    """The model with the first occurrence of find in its graph section replaced."""
    b = bytearray(good)
    gsize = struct.unpack_from("<Q", b, 32)[0]
    i = bytes(b[64:64 + gsize]).find(find)
    assert i >= 0
    b[64 + i:64 + i + len(find)] = repl
    return _fix_crc(b)


def test_reader_refuses_crafted_graphs():
    good = _small_model()
    # an unknown op type, a dtype name that does not exist (same lengths)
    assert "unknown type" in _load_error(_graph_patch(good, b"matmul", b"matmuX"))
    assert "unknown dtype" in _load_error(_graph_patch(good, b"float32", b"float99"))
    # counts: the input count (after the metadata string) made huge
    b = bytearray(good)
    mlen = struct.unpack_from("<I", b, 64)[0]
    b[68 + mlen:72 + mlen] = struct.pack("<I", 0xFFFFFFF0)
    assert "cannot fit" in _load_error(_fix_crc(b))
    # a weight offset out of the data section: the first weight's u64 offset field
    # (metadata, 1 input "arg_0" float32 rank 2, weight count, "" name, "float32", rank...)
    off = 68 + mlen + 4 + (4 + 5) + (4 + 7) + 1 + 16 + 4 + 4 + (4 + 7)
    rank = b[off]
    at = off + 1 + 8 * rank
    b = bytearray(good)
    assert struct.unpack_from("<Q", b, at)[0] == 0
    b[at:at + 8] = struct.pack("<Q", 2 ** 40)
    assert "data section" in _load_error(_fix_crc(b))
    # a weight whose declared byte count disagrees with its shape
    b = bytearray(good)
    b[at + 8:at + 16] = struct.pack("<Q", 3)
    assert "bytes" in _load_error(_fix_crc(b))
