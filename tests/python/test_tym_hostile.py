"""Hostile .tym files (RELIABILITY.md §1, S3): one crafted file per reader check that
test_dump.py's CRAFTED table leaves out, each refused with its specific error by the reader and
by tianyuan-run (exit status 1, the message on stderr); shapes the graph cannot take fail at run
time naming the op; and no abort/exit/assert is reachable in the C sources (S5)."""
import os
import re
import struct
import subprocess

import numpy as np
import pytest

import tianyuan as ty
from tianyuan.utils.comp_graph_tools import GraphInference

import test_dump as td

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build")), "tianyuan-run")
# make test-py-asan preloads the sanitizer runtimes: they are not the binary's dependencies
ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _patch(data, find, repl):
    """data with its one occurrence of find replaced and the checksum fixed."""
    b = bytearray(data)
    assert bytes(b).count(find) == 1
    i = bytes(b).find(find)
    b[i:i + len(find)] = repl
    return bytes(td._fix_crc(b))


def _header_field(data, at, value):
    b = bytearray(data)
    b[at:at + 8] = struct.pack("<Q", value)
    return bytes(td._fix_crc(b))


RELU_NIN1 = td._s("relu") + td._s("") + struct.pack("<I", 1)
W = ("float32", [3], np.zeros(3, np.float32).tobytes())
# row of RELIABILITY.md §1.1 -> (file, the error it must get)
HOSTILE = {
    "1 older major version": (td._build(major=0), r"unknown format version 0\.0"),
    "2 shorter than the header": (b"TYMODEL\0\1\0", "fewer than the 64-byte header"),
    "2 graph section beyond the file": (_header_field(td._build(), 32, 1 << 40),
                                        "sizes and offsets do not match"),
    "3 op input count too large": (_patch(td._build(ops=[("relu", [0], 1, [])]), RELU_NIN1,
                                          RELU_NIN1[:-4] + struct.pack("<I", 0xFFFFFFF0)),
                                   "op inputs cannot fit"),
    "3 op count too large": (_patch(td._build(ops=[]), struct.pack("<II", 0, 1) + td._s("y"),
                                    struct.pack("<II", 0x7FFFFFFF, 1) + td._s("y")),
                             "ops cannot fit"),
    "3 name too long": (td._build(inputs=(("x" * 4097, "float32", [3]),)), "more than 4096"),
    "5 dimension beyond 2^48": (td._build(inputs=(("x", "float32", [(1 << 48) + 1]),)),
                                "a dimension is out of range"),
    "5 input dims overflow": (td._build(inputs=(("x", "float32", [-1, 1 << 48, 1 << 48]),)),
                              "too many elements"),
    "5 zero-size weight, dims overflow": (td._build(weights=[("float32", [0, 1 << 40, 1 << 40],
                                                              b"")]), "too many elements"),
    "7 NUL inside a name": (td._build(inputs=((b"a\0b", "float32", [3]),)), "UTF-8"),
    "8 op reads its own output": (td._build(ops=[("relu", [2], 1, [])]),
                                  r"reads value 2, which is not defined before it"),
    "9 variadic op with 65 outputs": (td._build(ops=[("split", [0], 65, [])]), "65 outputs"),
    "9 zero pooling window": (td._build(ops=[("max_pool2d", [0], 1,
                                              [td._param("kernel_h", 0, 0)])]), "kernel_h"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_refused_with_its_error(case):
    data, message = HOSTILE[case]
    with pytest.raises(ty.TianyuanError, match=message):
        GraphInference(data)


@pytest.mark.skipif(not os.path.exists(CLI), reason="tianyuan-run is built by CMake")
def test_cli_exits_1_naming_the_error_of_every_hostile_file(tmp_path):
    cases = dict(HOSTILE)
    cases.update({k: (td._build(**kw), msg) for k, (kw, msg) in td.CRAFTED.items()
                  if "meta" not in kw})
    for case, (data, message) in sorted(cases.items()):
        path = tmp_path / "bad.tym"
        path.write_bytes(data)
        r = subprocess.run([CLI, str(path), "--model-info"], capture_output=True, text=True,
                           env=ENV, timeout=60)
        assert r.returncode == 1, (case, r)
        assert re.search(message, r.stderr) and "model" in r.stderr, (case, r.stderr)


def test_shapes_the_graph_cannot_take_fail_at_run_time_naming_the_op():
    # row 11: ops check their inputs' shapes as they run; a huge shape fails before allocating
    g = GraphInference(td._build(ops=[("matmul", [0, 1], 1, [])],
                                 weights=[("float32", [4, 2], np.zeros(8, np.float32).tobytes())],
                                 outputs=(("y", 2, "float32", [-1, 2]),)))
    with pytest.raises(ValueError, match=r"model op 0 \(matmul\)"):
        g.run(np.zeros((2, 3), np.float32))
    g = GraphInference(td._build(ops=[("broadcast_to", [0], 1,
                                       [td._param("shape", 2, [1 << 29, 1 << 29, 3])])],
                                 outputs=(("y", 2, "float32", [-1, 3]),)))
    with pytest.raises(MemoryError, match=r"model op 0 \(broadcast_to\).*too many elements"):
        g.run(np.zeros((1, 3), np.float32))


def test_c_sources_never_abort_exit_or_assert():
    # S5: failures are returned as ty_status; a grep gate keeps it so
    call = re.compile(r"\b(abort|exit|_Exit|quick_exit|assert)\s*\(")
    found = []
    for top in ("src", "include"):
        for d, _, files in os.walk(os.path.join(ROOT, top)):
            for f in files:
                if f.endswith((".c", ".h", ".def")):
                    with open(os.path.join(d, f), encoding="utf-8") as fh:
                        for n, line in enumerate(fh, 1):
                            if call.search(line.split("//")[0]):
                                found.append(f"{d}/{f}:{n}: {line.strip()}")
    assert not found, found
