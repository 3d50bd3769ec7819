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


def test_the_fashion_mnist_example_model_dumps_bitwise():
    """examples/fashion_mnist/train.py's Net (random weights), in eval mode, from a file."""
    import importlib.util
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(
        "fmnist_example_for_dump", os.path.join(root, "examples", "fashion_mnist", "train.py"))
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    ty.random.seed(0)
    net = ex.Net()
    net.eval()
    rng = np.random.default_rng(5)
    data, res = _dump(net, rng.standard_normal((4, 1, 28, 28)).astype(np.float32),
                      arg_names=["image"])
    assert res.weight_bytes >= 4 * (64 * 7 * 7 * 128)
    g = GraphInference(io.BytesIO(data))       # a file object
    for batch in (4, 1):
        x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
        assert _bits_equal(g.run(x)["output_0"],
                           net(ty.tensor(x)).numpy())


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
    res = f.dump(buf, user_info={"who": "test"}, enable_nchw44=False)
    assert res.outputs == ["prob", "raw"] and res.inputs == ["arg_0"]
    g = GraphInference(buf.getvalue())
    meta = json.loads(g.metadata)
    assert meta["user_info"] == {"who": "test"} and meta["producer"].startswith("tianyuan ")
    assert meta["options"] == {"enable_nchw44": False}
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
    with pytest.raises(ValueError, match="enable_nchw44=True is not supported"):
        g.dump(io.BytesIO(), enable_nchw44=True)
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


# ---- files built from docs/tym-format.md alone (an independent writer) ----
def _s(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<I", len(b)) + b


def _shape(dims):
    return struct.pack("<B", len(dims)) + b"".join(struct.pack("<q", d) for d in dims)


def _param(name, kind, value):
    body = {0: lambda: struct.pack("<q", value), 1: lambda: struct.pack("<d", value),
            2: lambda: struct.pack("<I", len(value)) + b"".join(struct.pack("<q", v)
                                                                  for v in value),
            3: lambda: _s(value)}[kind]()
    return _s(name) + struct.pack("<B", kind) + body


def _build(inputs=(("x", "float32", [-1, 3]),), weights=None, ops=None,
           outputs=(("y", 3, "float32", [-1, 3]),), meta="", major=1, minor=0,
           graph_tail=b"", meta_len=None):
    """A .tym file: weights are (dtype, shape, bytes[, offset, nbytes]); ops are
    (type, [value ids], nout, [params]); default model: y = relu(x) + w, w of shape (3,)."""
    if weights is None:
        weights = [("float32", [3], np.array([1, 2, 3], np.float32).tobytes())]
    if ops is None:
        ops = [("relu", [0], 1, []), ("add", [2, 1], 1, [])]
    g = _s(meta) if meta_len is None else struct.pack("<I", meta_len) + meta.encode()
    g += struct.pack("<I", len(inputs))
    for name, dt, dims in inputs:
        g += _s(name) + _s(dt) + _shape(dims)
    g += struct.pack("<I", len(weights))
    data, off = b"", 0
    for w in weights:
        dt, dims, raw = w[:3]
        woff, wn = (w[3], w[4]) if len(w) > 3 else (off, len(raw))
        g += _s("") + _s(dt) + _shape(dims) + struct.pack("<qq", woff, wn)
        data = data.ljust(off, b"\0") + raw
        off = (len(data) + 63) // 64 * 64
    g += struct.pack("<I", len(ops))
    for typ, ins, nout, params in ops:
        g += _s(typ) + _s("") + struct.pack("<I", len(ins))
        g += b"".join(struct.pack("<I", v) for v in ins)
        g += struct.pack("<II", nout, len(params)) + b"".join(params)
    g += struct.pack("<I", len(outputs))
    for name, vid, dt, dims in outputs:
        g += _s(name) + struct.pack("<I", vid) + _s(dt) + _shape(dims)
    g += graph_tail
    data_off = (64 + len(g) + 63) // 64 * 64
    size = data_off + len(data)
    head = b"TYMODEL\0" + struct.pack("<HH", major, minor) + b"\0" * 4
    head += struct.pack("<QQQQQQ", size, 64, len(g), data_off, len(data), 0)
    b = bytearray((head + g).ljust(data_off, b"\0") + data)
    return bytes(_fix_crc(b))


def test_a_file_built_from_the_format_doc_runs():
    g = GraphInference(_build())
    x = np.array([[-1, 0.5, 2], [3, -4, 0]], np.float32)
    np.testing.assert_array_equal(g.run(x)["y"], np.maximum(x, 0) + [1, 2, 3])
    # params by field name; a dtype param by name; omitted fields take their defaults
    g = GraphInference(_build(ops=[("leaky_relu", [0], 1, [_param("negative_slope", 1, 0.5)]),
                                   ("astype", [2], 1, [_param("dtype", 3, "float64")])],
                              outputs=(("y", 3, "float64", [-1, 3]),)))
    np.testing.assert_array_equal(g.run(x)["y"], np.where(x > 0, x, x * 0.5).astype(np.float64))


W = ("float32", [3], np.zeros(3, np.float32).tobytes())
CRAFTED = {
    "unknown op": (dict(ops=[("frobnicate", [0], 1, [])]), "unknown type 'frobnicate'"),
    "wrong arity": (dict(ops=[("relu", [0, 1], 1, [])]), r"relu\) has 2 inputs"),
    "no outputs for a variadic op": (dict(ops=[("split", [0], 0, [])]), "0 outputs"),
    "value defined later": (dict(ops=[("relu", [5], 1, [])]), "not defined before it"),
    "in-place write": (dict(ops=[("assign", [0, 1], 1, [])]), "writes in place"),
    "zero stride": (dict(ops=[("max_pool2d", [0], 1, [_param("stride_h", 0, 0)])]),
                    "stride_h"),
    "unknown param": (dict(ops=[("relu", [0], 1, [_param("alpha", 0, 1)])]), "no param 'alpha'"),
    "param of another kind": (dict(ops=[("leaky_relu", [0], 1, [_param("negative_slope", 0, 1)])]),
                              "kind 0, expected 1"),
    "repeated param": (dict(ops=[("leaky_relu", [0], 1, [_param("negative_slope", 1, 1.0)] * 2)]),
                       "a second param"),
    "bad dtype param": (dict(ops=[("astype", [0], 1, [_param("dtype", 3, "float99")])]),
                        "unknown dtype 'float99'"),
    "long list param": (dict(ops=[("reshape", [0], 1, [_param("shape", 2, [1] * 17)])]),
                        "more than 16"),
    "duplicate input names": (dict(inputs=(("x", "float32", [3]), ("x", "float32", [3]))),
                              "two inputs are named 'x'"),
    "empty output name": (dict(outputs=(("", 0, "float32", [3]),)), "empty name"),
    "output not defined": (dict(outputs=(("y", 99, "float32", [3]),)), "does not define"),
    "bad UTF-8 name": (dict(inputs=((b"\xff\xfe", "float32", [3]),)), "UTF-8"),
    "unknown input dtype": (dict(inputs=(("x", "complex64", [3]),)), "unknown dtype"),
    "rank 9": (dict(inputs=(("x", "float32", [1] * 9),)), "more than 8 dimensions"),
    "negative dim": (dict(inputs=(("x", "float32", [-2, 3]),)), "out of range"),
    "weight bytes disagree": (dict(weights=[W[:3] + (0, 11)]), "declares 11 bytes"),
    "weight out of data": (dict(weights=[W[:3] + (1 << 40, 12)]), "data section"),
    "weight misaligned": (dict(weights=[W[:3] + (4, 12)]), "64-aligned"),
    "weights overlap": (dict(weights=[W[:3] + (0, 12), W[:3] + (0, 12)],
                             ops=[("add", [1, 2], 1, [])]), "after the previous weight"),
    "trailing graph bytes": (dict(graph_tail=b"\0"), "bytes after the outputs"),
    "huge metadata": (dict(meta_len=16 * 2 ** 20 + 1), "more than 16777216"),
    "newer minor": (dict(minor=1), "1.1 is newer than this runtime's 1.0"),
    "newer major": (dict(major=7), "7.0 is newer than this runtime's 1.0"),
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_files_are_refused_with_a_specific_error(case):
    kwargs, message = CRAFTED[case]
    with pytest.raises(ty.TianyuanError, match=message):
        GraphInference(_build(**kwargs))


# ---- more inference layers: dumped, run, bitwise equal to eager at two batch sizes ----
def _layers():
    ty.random.seed(3)
    bn = M.BatchNorm2d(4)
    bn.eval()
    ln, mha = M.LayerNorm(8), M.MultiHeadAttention(8, 2)
    mha.eval()
    dw = M.Conv2d(4, 4, 3, padding=1, groups=4)
    return {
        "conv_bn_eval_relu6_avgpool": ((2, 4, 6, 6), lambda x: F.avg_pool2d(
            F.relu6(bn(dw(x))), 2)),
        "adaptive_pool_gelu_sigmoid": ((2, 4, 6, 6), lambda x: F.sigmoid(
            F.gelu(F.adaptive_avg_pool2d(x, 1)))),
        "layer_norm_attention": ((2, 5, 8), lambda x: ln(x + mha(x, x, x)[0])),
        "softmax_concat_transpose": ((3, 6), lambda x: F.concat(
            [F.softmax(x, axis=1), F.transpose(x * 2, (0, 1))], axis=1)),
        "tanh_silu_mean_keepdims": ((3, 6), lambda x: F.silu(F.tanh(x)) - x.mean(1, True)),
    }


def dump_fn(fn, x):
    """The .tym bytes of fn traced (capture_as_const) on the array x (also used by
    tests/fuzz/make_corpus.py)."""
    @trace(capture_as_const=True)
    def f(inp):
        return fn(inp)

    f(ty.tensor(x))
    buf = io.BytesIO()
    f.dump(buf)
    return buf.getvalue()


@pytest.mark.parametrize("name", sorted(_layers()))
def test_inference_layers_dump_bitwise(name):
    shape, fn = _layers()[name]
    rng = np.random.default_rng(1)
    g = GraphInference(dump_fn(fn, rng.standard_normal(shape).astype(np.float32)))
    assert g._inputs[0][2][0] == -1 and g._outputs[0][2][0] == -1
    for batch in (shape[0], shape[0] + 3):
        xb = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
        assert _bits_equal(g.run(xb)["output_0"], fn(ty.tensor(xb)).numpy()), batch


def test_hostile_index_weights_and_sizes_fail_at_run_naming_the_op():
    idx = ("int32", [2, 3], np.array([[5, 9, -7], [100, 0, 1]], np.int32).tobytes())
    g = GraphInference(_build(weights=[idx], ops=[("gather", [0, 1], 1, [_param("axis", 0, 1)])],
                              outputs=(("y", 2, "float32", [2, 3]),)))
    with pytest.raises(IndexError, match=r"model op 0 \(gather\).*out of bounds"):
        g.run(np.ones((2, 3), np.float32))
    g = GraphInference(_build(weights=[], ops=[("fill", [], 1, [_param("shape", 2, [1 << 40] * 2)])],
                              outputs=(("y", 1, "float32", [1]),)))
    with pytest.raises(ValueError, match=r"model op 0 \(fill\).*too many elements"):
        g.run(np.ones((2, 3), np.float32))


_W23 = np.arange(6, dtype=np.float32).reshape(2, 3)
FIXED_BATCH = {   # not item by item along dimension 0: the batch stays as traced
    "weight sized like the batch": lambda x: x + ty.tensor(_W23),
    "slice of dimension 0": lambda x: x[:1] * 2,
    "reduction over dimension 0": lambda x: x.sum(0),
    "batch moved off dimension 0": lambda x: F.transpose(x, (1, 0)) * 2,
    "rows regrouped": lambda x: x.reshape(3, 2),
}


@pytest.mark.parametrize("name", sorted(FIXED_BATCH))
def test_batch_stays_fixed_where_items_mix(name):
    fn = FIXED_BATCH[name]
    x = np.random.default_rng(2).standard_normal((2, 3)).astype(np.float32)
    g = GraphInference(dump_fn(fn, x))
    assert g._inputs[0][2] == (2, 3)
    assert _bits_equal(g.run(x)["output_0"], fn(ty.tensor(x)).numpy())
    with pytest.raises(ValueError, match=r"arg_0' has shape \(2, 3\) \(fixed: dumped for this "
                                         r"shape only\)"):
        g.run(np.ones((3, 3), np.float32))


ITEM_SLICES = {   # slices that take every item: the batch may vary
    "columns from 1": ((2, 5), lambda x: x[:, 1:] * 2),
    "every other column": ((2, 5), lambda x: x[:, ::2] + 1),
    "channels of an image": ((1, 4, 3, 3), lambda x: F.relu(x[:, :2])),
    "after a reshape": ((2, 6), lambda x: x.reshape(-1, 2, 3)[:, 1] * 3),
}


@pytest.mark.parametrize("name", sorted(ITEM_SLICES))
def test_slices_taking_every_item_keep_the_batch_variable(name):
    shape, fn = ITEM_SLICES[name]
    rng = np.random.default_rng(4)
    g = GraphInference(dump_fn(fn, rng.standard_normal(shape).astype(np.float32)))
    assert g._inputs[0][2][0] == -1
    for batch in (shape[0], shape[0] + 2):
        x = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
        assert _bits_equal(g.run(x)["output_0"], fn(ty.tensor(x)).numpy()), batch


def test_graph_inference_threads_and_keywords():
    x = np.random.default_rng(5).standard_normal((4, 1, 28, 28)).astype(np.float32)
    ty.random.seed(0)
    data = dump_fn(CNN(), x)
    outs = [GraphInference(data, threads=n).run(x)["output_0"] for n in (1, 2, 3)]
    assert _bits_equal(outs[0], outs[1]) and _bits_equal(outs[0], outs[2])
    with pytest.raises(ValueError, match="threads"):
        GraphInference(data, threads=0)
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['thread'\]"):
        GraphInference(data, thread=2)


def test_dump_writes_the_current_weights():
    net = M.Linear(3, 2)

    @trace(capture_as_const=True)
    def f(x):
        return net(x)

    x = np.ones((1, 3), np.float32)
    f(ty.tensor(x))
    net.load_state_dict({"weight": np.full((2, 3), 2, np.float32),
                         "bias": np.ones(2, np.float32)})      # in place
    buf = io.BytesIO()
    f.dump(buf)
    np.testing.assert_array_equal(GraphInference(buf.getvalue()).run(x)["output_0"], [[7, 7]])
    net.weight.set_value(ty.tensor(np.zeros((2, 3), np.float32)))  # rebinds: not what f read
    with pytest.raises(ty.jit.TraceError, match="rebound"):
        f.dump(io.BytesIO())
