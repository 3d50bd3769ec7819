"""tianyuan-run, the command-line runner: usage errors exit 2 with the usage, runtime errors exit 1
with a message, .npy files NumPy writes (versions 1.0, 2.0, 3.0, every supported dtype) go in
and come out bit for bit, hostile .npy files are refused by name, a dumped model's --output
equals eager Python bitwise, and the binary needs only libc, libm and pthreads."""
import json
import os
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.jit import trace

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "tianyuan-run")

pytestmark = pytest.mark.skipif(not os.path.exists(BIN), reason="tianyuan-run is built by CMake "
                                "(make build); this run uses another build")
needs_dump = pytest.mark.skipif(not hasattr(trace, "dump"), reason="trace.dump is not there yet")

# make test-py-asan preloads the sanitizer runtimes: they are not the binary's dependencies
_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _cli(*args, cwd=None):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=_ENV,
                          cwd=cwd, timeout=60)


# ---- the command line ----

@pytest.mark.parametrize("args, words", [
    ([], "no model given"),
    (["m.tym", "--bogus"], "unknown option '--bogus'"),
    (["m.tym", "--iter", "0"], "--iter takes an integer"),
    (["m.tym", "--iter", "3x"], "--iter takes an integer"),
    (["m.tym", "--warmup-iter", "-1"], "--warmup-iter takes an integer"),
    (["m.tym", "--thread", "0"], "--thread takes an integer"),
    (["m.tym", "--iter"], "--iter needs a value"),
    (["m.tym", "--verbose=1"], "takes no value"),
    (["m.tym", "--input", "data"], "NAME=FILE.npy or NAME:{D0,D1,...}"),
    (["m.tym", "--input", "data:{1,-3}"], "is not a shape"),
    (["m.tym", "--input", "data:{1,2,3,4,5,6,7,8,9}"], "is not a shape"),
    (["m.tym", "--input", "data:{1,2"], "is not a shape"),
    (["m.tym", "--input", "=x.npy"], "needs a name"),
    (["m.tym", "--input", "a=x.npy", "--input", "a:{1}"], "given twice"),
    (["m.tym", "--output", "a.npy", "--output-dir", "d"], "exclude each other"),
    (["m.tym", "--profile-ops"], "--profile-ops needs --profile"),
    (["a.tym", "b.tym"], "one model only"),
])
def test_usage_errors_exit_2_with_the_usage(args, words):
    r = _cli(*args)
    assert r.returncode == 2, r
    assert words in r.stderr and "usage: tianyuan-run" in r.stderr, r.stderr


def test_help_prints_the_usage_and_exits_0():
    r = _cli("--help")
    assert r.returncode == 0 and "--input NAME=FILE.npy" in r.stdout and "--model-info" in r.stdout
    fast_run = r.stdout[r.stdout.index("--fast-run"):r.stdout.index("--profile")]
    assert "PROFILE" in fast_run and "fastrun cache" in fast_run, fast_run


def test_a_missing_model_is_a_runtime_error_naming_it(tmp_path):
    r = _cli(tmp_path / "absent.tym")
    assert r.returncode == 1 and "absent.tym" in r.stderr and "usage" not in r.stderr, r


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_the_binary_needs_only_libc_libm_pthreads():
    out = subprocess.run(["ldd", BIN], capture_output=True, text=True, check=True,
                         env=_ENV).stdout
    libs = {line.split()[0] for line in out.splitlines() if line.strip()}
    if any("san.so" in lib for lib in libs):
        pytest.skip("a sanitizer build links the sanitizer runtimes")
    allowed = re.compile(r"^(linux-vdso\.so\.1|/lib64/ld-linux.*|libc\.so\.6|libm\.so\.6|"
                         r"libpthread\.so\.0|ld-linux.*)$")
    assert libs and all(allowed.match(lib) for lib in libs), libs


# ---- dumped models ----

def _dump(fn, args, path, **kw):
    traced = trace(fn, symbolic=True, capture_as_const=True)
    traced(*[ty.tensor(a) for a in args])
    traced.dump(str(path), **kw)
    return path


def _copy_model(tmp_path, dtype, shape=(2, 3)):
    x = np.zeros(shape, dtype=dtype)
    return _dump(lambda t: F.copy(t), [x], tmp_path / f"copy_{np.dtype(dtype).name}.tym",
                 arg_names=["data"], output_names=["out"])


def _save(path, arr, version=(1, 0)):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=version)
    return path


ROUND_TRIP_DTYPES = ["float32", "float16", "int8", "uint8", "int16", "int32", "bool"]


@needs_dump
@pytest.mark.parametrize("dtype", ROUND_TRIP_DTYPES)
def test_npy_files_round_trip_bitwise_through_a_copy_model(tmp_path, dtype):
    model = _copy_model(tmp_path, dtype)
    rng = np.random.default_rng(1)
    for version in [(1, 0), (2, 0), (3, 0)]:
        bits = rng.integers(0, 256, size=(2, 3) + (np.dtype(dtype).itemsize,), dtype=np.uint8)
        x = bits.view(dtype).reshape(2, 3) if dtype != "bool" else bits[..., 0] % 2 == 1
        inp, out = _save(tmp_path / "x.npy", x, version), tmp_path / "y.npy"
        r = _cli(model, "--input", f"data={inp}", "--output", out, "--iter", 1)
        assert r.returncode == 0, r.stderr
        y = np.load(out)
        assert y.dtype == x.dtype and y.shape == x.shape
        assert y.tobytes() == x.tobytes()


def _header(descr, fortran=False, shape=(2,), extra=""):
    return (f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': {shape}, {extra}}}"
            .encode())


def _npy(header, data, major=1):
    size = struct.pack("<H", len(header)) if major == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([major, 0]) + size + header + data


HOSTILE = [
    ("fortran", _npy(_header("<f4", True, (2, 3)), bytes(24)), "fortran_order True"),
    ("big-endian", _npy(_header(">f4"), bytes(8)), "big-endian"),
    ("object", _npy(_header("|O"), bytes(16)), "not supported"),
    ("huge shape", _npy(_header("<f4", shape=(2**62, 2**62)), b""), "overflows"),
    ("huge dim", _npy(_header("<f4", shape=(10**30,)), b""), "too large"),
    ("truncated", _npy(_header("<f4", shape=(1000,)), bytes(40)), "truncated"),
    ("trailing", _npy(_header("<f4"), bytes(12)), "follow the data"),
    ("bad dict", _npy(b"{'descr': '<f4', 'shape': (2,)", bytes(8)), "malformed"),
    ("not a dict", _npy(b"__import__('os')", bytes(8)), "not a dict"),
    ("extra key", _npy(_header("<f4", extra="'x': 1, "), bytes(8)), "unknown key"),
    ("header past end", b"\x93NUMPY\x02\x00\xff\xff\xff\x7f{}", "past the end"),
    ("version", _npy(_header("<f4"), bytes(8), major=9), "version 9.0"),
    ("bad magic", b"PK\x03\x04" + bytes(60), "bad magic"),
    ("empty", b"", "bad magic"),
]


@needs_dump
def test_hostile_npy_inputs_are_refused_with_their_reason(tmp_path):
    model = _copy_model(tmp_path, "float32")
    for name, content, words in HOSTILE:
        path = tmp_path / "bad.npy"
        path.write_bytes(content)
        r = _cli(model, "--input", f"data={path}")
        assert r.returncode == 1, (name, r)
        assert words in r.stderr and "bad.npy" in r.stderr, (name, r.stderr)


@needs_dump
def test_input_errors_name_the_input(tmp_path):
    model = _copy_model(tmp_path, "float32")
    x64 = _save(tmp_path / "x64.npy", np.zeros((2, 3)))
    cases = [(["--input", f"data={x64}"], "'data' is float32"),
             (["--input", "nosuch:{2,3}"], "no input 'nosuch'"),
             (["--input", f"data={tmp_path / 'absent.npy'}"], "cannot open"),
             ([], "'data' has a dimension that may vary")]
    for args, words in cases:
        r = _cli(model, *args)
        assert r.returncode == 1 and words in r.stderr, (args, r)


@needs_dump
def test_random_inputs_are_seeded_and_in_range(tmp_path):
    model = _copy_model(tmp_path, "float32")
    outs = []
    for i in range(2):
        out = tmp_path / f"y{i}.npy"
        r = _cli(model, "--input", "data:{4,3}", "--output", out, "--iter", 1)
        assert r.returncode == 0, r.stderr
        outs.append(np.load(out))
    assert outs[0].shape == (4, 3) and np.array_equal(outs[0], outs[1])
    assert outs[0].min() >= -1 and outs[0].max() < 1 and len(np.unique(outs[0])) == 12


class _Net(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(1, 4, 3, padding=1)
        self.fc = M.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        y = F.max_pool2d(F.relu(self.conv(x)), 2)
        return self.fc(F.flatten(y, 1))


@needs_dump
def test_a_dumped_cnn_run_by_the_cli_equals_eager_bitwise(tmp_path, monkeypatch):
    # --fast-run profiles into a cache of its own, picking the heuristic's algorithm (no timing)
    monkeypatch.setitem(_ENV, "TY_FASTRUN_CACHE", str(tmp_path / "fastrun.cache"))
    monkeypatch.setitem(_ENV, "TY_FASTRUN_TEST_CHOICE", "implicit_gemm")
    np.random.seed(3)
    net = _Net()
    net.eval()
    x = np.random.default_rng(2).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model = _dump(lambda t: {"logits": net(t), "half": net(t) * 0.5}, [x],
                  tmp_path / "cnn.tym", arg_names=["image"])
    eager = net(ty.tensor(x)).numpy()
    info = _cli(model, "--model-info")
    assert info.returncode == 0 and "image: float32" in info.stdout, info
    assert "logits" in info.stdout and "half" in info.stdout and "weight bytes:" in info.stdout
    nops = int(re.search(r"^ops: (\d+)$", info.stdout, re.M).group(1))
    by_type = dict(re.findall(r"^  (\w+): (\d+)$", info.stdout, re.M))
    assert sum(map(int, by_type.values())) == nops and int(by_type.get("relu", 0)) >= 1, info.stdout
    out_dir = tmp_path / "out"
    r = _cli(model, "--input", f"image={_save(tmp_path / 'x.npy', x)}", "--output-dir", out_dir,
             "--iter", 3, "--warmup-iter", 1, "--thread", 2, "--fast-run")
    assert r.returncode == 0, r.stderr
    assert re.search(r"min [\d.]+ ms\s+median [\d.]+ ms\s+p90 [\d.]+ ms\s+max [\d.]+ ms", r.stdout)
    assert "--fast-run: algorithm policy PROFILE" in r.stdout
    logits, half = np.load(out_dir / "logits.npy"), np.load(out_dir / "half.npy")
    assert logits.tobytes() == eager.tobytes()
    assert half.tobytes() == (eager * np.float32(0.5)).tobytes()
    one = _cli(model, "--input", f"image={_save(tmp_path / 'x.npy', x)}", "--output",
               tmp_path / "y.npy")
    assert one.returncode == 1 and "--output-dir" in one.stderr, one


@needs_dump
def test_the_cli_runs_another_batch_size_bitwise_equal_to_eager(tmp_path):
    net = _Net()
    net.eval()
    rng = np.random.default_rng(4)
    model = _dump(lambda t: net(t), [np.zeros((2, 1, 8, 8), np.float32)], tmp_path / "cnn.tym",
                  arg_names=["image"], output_names=["logits"])
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    r = _cli(model, "--input", f"image={_save(tmp_path / 'x.npy', x)}", "--output",
             tmp_path / "y.npy", "--iter", 1, "--verbose")
    assert r.returncode == 0, r.stderr
    assert "image: float32 (5, 1, 8, 8) from" in r.stdout and "run 0:" in r.stdout
    assert np.load(tmp_path / "y.npy").tobytes() == net(ty.tensor(x)).numpy().tobytes()


def _profile(model, tmp_path, *more):
    """The runs' and the ops' events of a 3-run --profile, and the model's op types."""
    info = _cli(model, "--model-info").stdout
    types = [t for t, n in re.findall(r"^  (\w+): (\d+)$", info, re.M) for _ in range(int(n))]
    prof = tmp_path / "prof.json"
    r = _cli(model, "--input", "image:{1,1,8,8}", "--iter", 3, "--profile", prof, *more)
    assert r.returncode == 0, r.stderr
    events = json.loads(prof.read_text())["traceEvents"]
    assert all(e["ph"] == "X" and e["dur"] >= 0 for e in events)
    runs = [e for e in events if e["cat"] == "run"]
    assert [e["name"] for e in runs] == ["run 0", "run 1", "run 2"]
    ops = [[e for e in events if e["cat"] == "op" and r["ts"] <= e["ts"] <= r["ts"] + r["dur"]]
           for r in runs]
    assert sum(map(len, ops)) == len([e for e in events if e["cat"] == "op"])
    for run, in_run in zip(runs, ops):  # the ops' times lie within the run's
        assert sum(e["dur"] for e in in_run) <= run["dur"] + 0.01
    return ops, types


@needs_dump
def test_profile_writes_each_timed_run_and_its_ops_as_a_chrome_trace(tmp_path):
    net = _Net()
    model = _dump(lambda t: net(t), [np.zeros((1, 1, 8, 8), np.float32)], tmp_path / "cnn.tym",
                  arg_names=["image"])
    # through the plan: the conv's bias add and relu run in its fused group, one event
    runs, types = _profile(model, tmp_path)
    for ops in runs:
        assert all(e["args"]["type"] == e["name"] for e in ops)
        fused = [n for e in ops if "fused" in e["args"] for n in e["args"]["fused"].split(", ")]
        assert sorted([e["name"] for e in ops] + fused) == sorted(types)
        conv = next(e for e in ops if e["name"] == "conv2d")
        assert conv["args"].get("fused") == "add, relu", conv
    # op by op: every op alone
    runs, types = _profile(model, tmp_path, "--profile-ops")
    for ops in runs:
        assert sorted(e["name"] for e in ops) == sorted(types)
        assert not any("fused" in e["args"] for e in ops)
    bad = _cli(model, "--input", "image:{1,1,8,8}", "--profile", tmp_path / "no" / "p.json")
    assert bad.returncode == 1 and "cannot create" in bad.stderr, bad


class _Wrapped(M.Module):
    def __init__(self):
        super().__init__()
        self.body = M.Sequential(_Net())

    def forward(self, x):
        return self.body(x)


def _arena(stdout):
    return int(re.search(r"^planned arena bytes: (\d+)$", stdout, re.M).group(1))


@needs_dump
def test_model_info_prints_the_arena_planned_for_the_input_shapes(tmp_path):
    net = _Net()
    model = _dump(lambda t: net(t), [np.zeros((2, 1, 8, 8), np.float32)], tmp_path / "cnn.tym",
                  arg_names=["image"])
    one = _cli(model, "--model-info")  # the variable batch dimension counts as 1
    assert one.returncode == 0 and "image: float32 (-1, 1, 8, 8)" in one.stdout, one
    eight = _cli(model, "--model-info", "--input", "image:{8,1,8,8}")
    assert eight.returncode == 0, eight
    # the conv's (N, 4, 8, 8) float32 output alone lives in the arena until the pool reads it
    assert 4 * 4 * 8 * 8 <= _arena(one.stdout) < _arena(eight.stdout)
    assert _arena(eight.stdout) >= 8 * 4 * 4 * 8 * 8
    bad = _cli(model, "--model-info", "--input", "image:{2,1,9,9}")
    assert bad.returncode == 1 and "planned arena bytes: unknown" in bad.stdout, bad
    assert "input 'image' has shape (-1, 1, 8, 8)" in bad.stderr and "got (2, 1, 9, 9)" in bad.stderr
    run = _cli(model, "--input", "image:{3,1,8,8}", "--iter", 2, "--verbose")
    plan = re.search(r"^plan: arena (\d+) bytes, (\d+) fused groups", run.stdout, re.M)
    assert run.returncode == 0 and plan and int(plan.group(1)) >= 3 * 4 * 4 * 8 * 8, run.stdout


@needs_dump
def test_kept_names_show_in_model_info_and_the_profile(tmp_path):
    net = _Wrapped()
    x = [np.zeros((1, 1, 8, 8), np.float32)]
    named = _dump(lambda t: net(t), x, tmp_path / "named.tym", arg_names=["image"],
                  keep_opr_name=True, keep_param_name=True)
    plain = _dump(lambda t: net(t), x, tmp_path / "plain.tym", arg_names=["image"])
    info = _cli(named, "--model-info", "--verbose").stdout
    assert re.search(r"^  #\d+ body\.0\.conv\.weight: float32 \(4, 1, 3, 3\)$", info, re.M), info
    assert re.search(r"^  #\d+ body\.0\.fc\.bias: float32 \(5,\)$", info, re.M), info
    assert re.search(r"^  #\d+ conv2d body\.0\.conv/conv2d$", info, re.M), info
    assert re.search(r"^  #\d+ relu relu_\d+$", info, re.M), info
    info = _cli(plain, "--model-info", "--verbose").stdout
    assert "body.0" not in info and re.search(r"^  #\d+ conv2d$", info, re.M), info
    assert re.search(r"^  #0 \(unnamed\): float32", info, re.M), info
    prof = tmp_path / "prof.json"
    r = _cli(named, "--input", "image:{1,1,8,8}", "--iter", 1, "--profile", prof)
    assert r.returncode == 0, r.stderr
    names = [e["name"] for e in json.loads(prof.read_text())["traceEvents"] if e["cat"] == "op"]
    assert "body.0.conv/conv2d" in names and "body.0.fc/matmul" in names, names
    assert any(re.fullmatch(r"max_pool2d_\d+", n) for n in names), names
