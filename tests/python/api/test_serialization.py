"""tianyuan.save / tianyuan.load: safe container, validation, atomic writes."""
import collections
import io
import os
import pickle
import random
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

import tianyuan as ty
from tianyuan import serialization as S

HERE = os.path.dirname(os.path.abspath(__file__))


def _roundtrip(obj):
    buf = io.BytesIO()
    ty.save(obj, buf)
    buf.seek(0)
    return ty.load(buf)


def _eq(a, b):
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, ty.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a._bytes() == b._bytes()
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _eq(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _eq(a[k], b[k])
    elif isinstance(a, float) and a != a:
        assert b != b
    else:
        assert a == b


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int8", "uint8",
                                   "int16", "int32", "int64", "bool"])
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (5,), (2, 3, 4)])
def test_tensor_roundtrip_every_dtype(dtype, shape):
    rng = np.random.default_rng(0)
    data = (rng.standard_normal(shape) * 10)
    t = ty.Tensor(data > 0 if dtype == "bool" else data, dtype=dtype)
    out = _roundtrip({"t": t})["t"]
    assert type(out) is ty.Tensor
    _eq(t, out)


def test_bfloat16_bits_preserved_and_parameter_type():
    t = ty.Tensor(np.array([1.0, -2.5, 3.140625, 1e30, 0.0]), dtype="bfloat16")
    p = ty.Parameter(np.arange(6.0).reshape(2, 3))
    out = _roundtrip([t, p])
    assert out[0].dtype == "bfloat16" and out[0]._bytes() == t._bytes()
    assert type(out[1]) is ty.Parameter and out[1].dtype == np.float32
    np.testing.assert_array_equal(out[1].numpy(), p.numpy())


def test_python_and_numpy_values_roundtrip():
    obj = {
        "none": None, "t": True, "f": False, "i": -(2 ** 70), "x": 0.1, "nan": float("nan"),
        "inf": float("-inf"), "s": "天元\x00", "b": b"\x00\xff", "empty": [], "tup": (1, (2,)),
        3: "int key", (1, "a"): "tuple key", 2.5: None, None: 1,
        "od": collections.OrderedDict([("z", 1), ("a", 2)]),
        "arr": np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2],
        "be": np.arange(4, dtype=">f8"), "c": np.array([1 + 2j], np.complex64),
        "u64": np.array([2 ** 64 - 1], np.uint64), "scalar": np.float32(1.5),
        "i64s": np.int64(-3), "zero_d": np.array(7, np.int32), "empty_arr": np.zeros((0, 4)),
        "nested": [{"a": [ty.Tensor([1, 2])]}],
    }
    out = _roundtrip(obj)
    assert out["be"].dtype == np.float64 and out["be"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert out["arr"].flags.writeable
    obj["be"] = obj["be"].astype(np.float64)
    _eq(obj, out)
    assert type(out["od"]) is collections.OrderedDict


def test_unsupported_objects_raise_type_error(tmp_path):
    with pytest.raises(TypeError, match="set"):
        ty.save({"a": {1, 2}}, str(tmp_path / "x"))
    with pytest.raises(TypeError):
        ty.save(np.array(["a"]), io.BytesIO())
    with pytest.raises(TypeError):
        ty.save({object(): 1}, io.BytesIO())
    assert not os.listdir(tmp_path)   # nothing written when encoding fails


def _valid_bytes():
    buf = io.BytesIO()
    ty.save({"w": ty.Tensor(np.arange(20, dtype=np.float32)), "n": np.ones(3), "k": [1, "a"],
             "h": ty.Tensor([1.0, 2.0], dtype="float16")}, buf)
    return buf.getvalue()


def _load_raw(data):
    return ty.load(io.BytesIO(data))


def test_format_layout_alignment_and_crc():
    data = _valid_bytes()
    assert data[:8] == S.MAGIC and data[-8:] == S.END_MAGIC
    _, major, minor, flags, hlen, dlen = S._PREFIX.unpack_from(data)
    assert (major, minor, flags) == (1, 0, 0)
    data_off = S._align(32 + hlen)
    assert data_off % 64 == 0 and len(data) == data_off + dlen + 16
    import json
    import zlib
    hdr = json.loads(data[32:32 + hlen])
    assert all(e["offset"] % 64 == 0 for e in hdr["tensors"])
    assert struct.unpack_from("<I", data, len(data) - 16)[0] == zlib.crc32(data[:-16])


def test_truncation_at_every_offset_raises_value_error():
    data = _valid_bytes()
    for n in range(len(data)):
        with pytest.raises(ValueError):
            _load_raw(data[:n])
    with pytest.raises(ValueError, match="trailing"):
        _load_raw(data + b"\0")


def test_bit_flips_detected():
    data = _valid_bytes()
    rng = random.Random(1234)
    positions = list(range(len(data)))
    rng.shuffle(positions)
    for pos in positions[:400] + [0, 9, 13, 17, 25, len(data) - 1]:
        bad = bytearray(data)
        bad[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(ValueError):
            _load_raw(bytes(bad))


def _rebuild(hdr_obj, data_section=b"", version=(1, 0)):
    """A structurally valid file (correct CRC) with an arbitrary header, to test validation
    beyond the checksum."""
    import json
    import zlib
    header = json.dumps(hdr_obj).encode()
    prefix = S._PREFIX.pack(S.MAGIC, version[0], version[1], 0, len(header), len(data_section))
    body = prefix + header
    body += b"\0" * (S._align(len(body)) - len(body)) + data_section
    return body + S._TRAILER.pack(zlib.crc32(body), 0, S.END_MAGIC)


@pytest.mark.parametrize("hdr,match", [
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "float99", "shape": [1],
                                      "offset": 0, "nbytes": 4}]}, "unknown dtype"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "float32", "shape": [-1],
                                      "offset": 0, "nbytes": 4}]}, "invalid dimension"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "float32", "shape": [2],
                                      "offset": 0, "nbytes": 4}]}, "needs 8 bytes"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "float32", "shape": [64],
                                      "offset": 0, "nbytes": 256}]}, "outside the data"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "float32", "shape": [1],
                                      "offset": 4, "nbytes": 4}]}, "aligned"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "uint32", "shape": [1],
                                      "offset": 0, "nbytes": 4}]}, "not a tianyuan tensor"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "evil", "dtype": "float32", "shape": [1],
                                      "offset": 0, "nbytes": 4}]}, "unknown kind"),
    ({"root": {"$t": 0}, "tensors": [{"kind": "tensor", "dtype": "float32",
                                      "shape": [2 ** 40, 2 ** 40], "offset": 0, "nbytes": 4}]},
     "needs"),
    ({"root": {"$t": 3}, "tensors": []}, "out of range"),
    ({"root": [{"$t": 0}, {"$t": 0}], "tensors": [{"kind": "tensor", "dtype": "float32",
                                                    "shape": [1], "offset": 0, "nbytes": 4}]},
     "twice"),
    ({"root": {"$eval": "1"}, "tensors": []}, "unknown value encoding"),
    ({"root": 1}, "exactly"),
    ({"root": {"$dict": [[["list"], 1]]}, "tensors": []}, "unhashable"),
    ({"root": {"$f": "zz"}, "tensors": []}, "float"),
    ({"root": {"$bytes": "!!"}, "tensors": []}, "base64"),
])
def test_header_validation(hdr, match):
    with pytest.raises(ValueError, match=match):
        _load_raw(_rebuild(hdr, b"\0" * 64))


def test_versions_header_cap_and_deep_nesting():
    ok = {"root": 1, "tensors": []}
    assert _load_raw(_rebuild(ok)) == 1
    with pytest.raises(ValueError, match="version 2"):
        _load_raw(_rebuild(ok, version=(2, 0)))
    with pytest.raises(ValueError, match="newer"):
        _load_raw(_rebuild(ok, version=(1, 7)))
    huge = S._PREFIX.pack(S.MAGIC, 1, 0, 0, 2 ** 62, 0) + b"\0" * 64
    with pytest.raises(ValueError, match="header length"):
        _load_raw(huge)
    txt = '{"root": ' + "[" * 100000 + "]" * 100000 + ', "tensors": []}'
    with pytest.raises(ValueError, match="nested|JSON"):
        _load_raw(_rebuild_text(txt))
    txt = '{"root": ' + '{"$tuple": [' * 400 + "1" + "]}" * 400 + ', "tensors": []}'
    with pytest.raises(ValueError, match="nested"):
        _load_raw(_rebuild_text(txt))


def _rebuild_text(txt):
    import zlib
    header = txt.encode()
    body = S._PREFIX.pack(S.MAGIC, 1, 0, 0, len(header), 0) + header
    body += b"\0" * (S._align(len(body)) - len(body))
    return body + S._TRAILER.pack(zlib.crc32(body), 0, S.END_MAGIC)


class _Payload:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


def test_pickle_payload_never_unpickled(tmp_path):
    sentinel = tmp_path / "pwned"
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({"x": _Payload(str(sentinel))}))
    with pytest.raises(ValueError, match="not a tianyuan checkpoint"):
        ty.load(str(p))
    with pytest.raises(ValueError, match="not a tianyuan checkpoint"):
        ty.load(open(p, "rb"))
    with pytest.raises(ValueError, match="allow_pickle"):
        ty.load(str(p), pickle_module=pickle)
    assert not sentinel.exists()
    # the explicit unsafe opt-in does unpickle (MegEngine compatibility)
    legit = tmp_path / "legit.pkl"
    legit.write_bytes(pickle.dumps({"a": [1, 2]}))
    assert ty.load(str(legit), pickle_module=pickle, allow_pickle=True) == {"a": [1, 2]}


@pytest.mark.parametrize("data", [b"", b"\x89", b"PK\x03\x04zipdata" * 10,
                                  b"\x93NUMPY" + b"x" * 200,
                                  os.urandom(300), b"\x89TYCKPT\n" + b"\xff" * 100])
def test_foreign_files_rejected(data):
    with pytest.raises(ValueError):
        _load_raw(data)


def test_path_save_is_atomic_and_cleans_stale_temps(tmp_path):
    p = tmp_path / "ck.tyc"
    ty.save({"a": 1}, p)
    # a stale temp from a dead writer (pid that cannot exist) and one from a live process
    dead = tmp_path / f".ck.tyc.tytmp-{2 ** 22 + 12345}-abc"
    dead.write_bytes(b"partial")
    live = tmp_path / f".ck.tyc.tytmp-{os.getppid()}-abc"
    live.write_bytes(b"partial")
    ty.save({"a": 2}, str(p))
    assert not dead.exists() and live.exists()
    assert sorted(os.listdir(tmp_path)) == sorted(["ck.tyc", live.name])
    assert ty.load(p) == {"a": 2}
    # a failing write leaves the old file intact and no temp behind
    class Boom:
        pass
    with pytest.raises(TypeError):
        ty.save({"a": Boom()}, p)
    assert ty.load(p) == {"a": 2}


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    path = str(tmp_path / "ck.tyc")
    ty.save({"seed": -1, "big": np.zeros(4, np.float32)}, path)
    expected = -1
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.join(HERE, "..", "..", "..", "python"), os.environ.get("PYTHONPATH", "")]))
    rng = random.Random(7)
    completed = 0
    t_end = time.monotonic() + 40
    for i in range(20):
        if time.monotonic() > t_end:
            break
        proc = subprocess.Popen([sys.executable, os.path.join(HERE, "_ckpt_writer.py"), path,
                                 str(i)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline() == b"start\n"
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        proc.wait(timeout=30)
        proc.stdout.close()
        if b"done" in rest:
            expected = i
            completed += 1
        obj = ty.load(path)   # must always be a complete, valid checkpoint
        assert obj["seed"] in (expected, i)
        if obj["seed"] != expected:  # killed after os.replace but before printing "done"
            expected = obj["seed"]
        if expected >= 0:
            assert obj["big"].size == (50 << 20) // 4 and float(obj["big"][0]) == expected \
                and float(obj["big"][-1]) == expected
            np.testing.assert_array_equal(obj["w"].numpy()[:3], [expected] * 3)
        names = os.listdir(tmp_path)
        assert all(n == "ck.tyc" or n.startswith(".ck.tyc.tytmp-") for n in names)
    assert completed < 20  # at least one save was really interrupted
    # the next save cleans the temp files the killed writers left
    ty.save({"seed": 99}, path)
    assert os.listdir(tmp_path) == ["ck.tyc"]
    assert ty.load(path) == {"seed": 99}
