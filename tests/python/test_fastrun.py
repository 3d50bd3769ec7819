"""Fastrun: conv2d's forward algorithm chosen by the heuristic or by profiling (forced with the
test hook: tests never time), the cache file (round trip, concurrent writers, a corrupt file,
a second process that does not profile), and a profiled non-heuristic choice recorded in
traces and dumped models so eager, traced and deployed runs give the same bits."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C
from tianyuan.functional import debug_param as dp
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference
from test_dump import _build, _param

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build"))
RUN_BIN = os.path.join(BUILD, "tianyuan-run")
HEADER = "tianyuan-fastrun 1\n"
# a 3x3 stride-1 layer the heuristic computes with implicit GEMM (Winograd's transforms cost
# more than they save at this size), so Winograd F(4,3) is a non-heuristic choice
RNG = np.random.default_rng(0)
X = RNG.standard_normal((1, 8, 10, 10)).astype(np.float32)
W = RNG.standard_normal((8, 8, 3, 3)).astype(np.float32)


@pytest.fixture(autouse=True)
def fresh(tmp_path, monkeypatch):
    """Each test: its own cache file, no remembered choices, HEURISTIC afterwards."""
    cache = tmp_path / "fastrun.cache"
    monkeypatch.setenv("TY_FASTRUN_CACHE", str(cache))
    monkeypatch.delenv("TY_FASTRUN_TEST_CHOICE", raising=False)
    _C._fastrun_forget()
    yield cache
    ty.config.benchmark_kernel = False
    ty.config.deterministic_kernel = False
    _C._fastrun_test_choice(None)
    _C._fastrun_forget()


def conv(x=X, w=W):
    return F.conv2d(ty.tensor(x), ty.tensor(w), padding=1).numpy()


def same_bits(a, b):
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def lines(cache):
    text = cache.read_text()
    assert text.startswith(HEADER)
    return text[len(HEADER):].splitlines()


@pytest.mark.parametrize("strategy, policy", [("HEURISTIC", 1), ("REPRODUCIBLE", 4),
                                              ("PROFILE", 2), ("PROFILE_REPRODUCIBLE", 6)])
def test_each_policy_chooses_by_heuristic_or_by_profiling(strategy, policy, fresh):
    profiles = policy in (2, 6)
    heuristic = conv()
    _C._fastrun_test_choice("winograd_f43")
    before = _C._fastrun_profile_count()
    dp.set_execution_strategy(strategy)
    assert _C.get_algo_policy() == policy               # ty_algo_policy's bits
    y = conv()
    assert _C._fastrun_profile_count() - before == int(profiles)
    # every algorithm is reproducible: REPRODUCIBLE keeps Winograd among the candidates
    assert same_bits(y, heuristic) != profiles
    np.testing.assert_allclose(y, heuristic, rtol=1e-4, atol=1e-4)
    assert fresh.exists() == profiles
    dp.set_execution_strategy("HEURISTIC")
    assert _C.get_algo_policy() == 1 and same_bits(conv(), heuristic)


def test_benchmark_kernel_sets_the_policy_and_profiles_once_per_shape(fresh):
    ty.config.benchmark_kernel = True
    assert _C.get_algo_policy() == 2
    _C._fastrun_test_choice("winograd_f43")
    before = _C._fastrun_profile_count()
    first = conv()
    assert same_bits(conv(), first)                     # cached: no second profile
    assert _C._fastrun_profile_count() - before == 1
    conv(X[:, :, :8, :8])                               # another shape: profiled again
    assert _C._fastrun_profile_count() - before == 2
    assert len(lines(fresh)) == 2


def test_the_cache_file_round_trips_by_algorithm_name(fresh):
    ty.config.benchmark_kernel = True
    _C._fastrun_test_choice("winograd_f43")
    want = conv()
    [line] = lines(fresh)
    op, key, algo = line.split("\t")
    assert op == "conv2d" and "x=1,8,10,10" in key and "threads=" in key and algo == \
        "winograd_f43"
    _C._fastrun_forget()                                # as a new process: only the file
    _C._fastrun_test_choice("implicit_gemm")
    before = _C._fastrun_profile_count()
    assert same_bits(conv(), want) and _C._fastrun_profile_count() == before


@pytest.mark.parametrize("content", [b"garbage\n", HEADER.encode() + b"conv2d\tkey only\n",
                                     b"tianyuan-fastrun 9\n", HEADER.encode() + b"a\tb\tc",
                                     HEADER.encode() + b"a\tb\t\xff\n",
                                     HEADER.encode() + b"a\t" + b"k" * 5000 + b"\tc\n"])
def test_a_corrupt_file_is_ignored_with_one_warning_and_rewritten(content, fresh, capfd):
    fresh.write_bytes(content)
    ty.config.benchmark_kernel = True
    _C._fastrun_test_choice("winograd_f43")
    conv()
    conv(X[:, :, :8, :8])
    err = capfd.readouterr().err
    assert err.count("tianyuan: fastrun cache") == 1 and "ignored" in err, err
    assert len(lines(fresh)) == 2                       # rewritten: valid, both choices


CHILD = r"""
import sys, numpy as np, tianyuan as ty, tianyuan.functional as F
from tianyuan import _C
ty.config.benchmark_kernel = True
h = int(sys.argv[1])
x = np.ones((1, 4, h, h), np.float32)
w = np.ones((4, 4, 3, 3), np.float32)
F.conv2d(ty.tensor(x), ty.tensor(w), padding=1).numpy()
print(_C._fastrun_profile_count())
"""


def _child(h, env):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(h)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _env(extra, python=True):
    """The environment of a child: a Python one finds this tianyuan (and keeps ASan's preload
    under the sanitized suite); tianyuan-run links its own sanitizer runtime."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    if not python:
        env.pop("LD_PRELOAD", None)
    return env


def test_concurrent_writers_keep_the_union_and_a_second_process_does_not_profile(fresh):
    env = _env({"TY_FASTRUN_TEST_CHOICE": "winograd_f23"})
    sizes = [6, 7, 8, 9, 10, 11]
    procs = [_child(h, env) for h in sizes]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert [o[0].split() for o in outs] == [["1"]] * len(sizes)
    keys = sorted(line.split("\t")[1].split(" ")[1] for line in lines(fresh))
    assert keys == sorted(f"x=1,4,{h},{h}" for h in sizes)
    assert not [p for p in os.listdir(fresh.parent) if ".tmp." in p]
    again = _child(8, env)
    out, err = again.communicate(timeout=120)
    assert again.returncode == 0 and out.split() == ["0"], err


def _traced(symbolic):
    @trace(symbolic=symbolic, capture_as_const=True)
    def f(x):
        return F.conv2d(x, ty.tensor(W), padding=1)
    return f


@pytest.mark.parametrize("symbolic", [False, True])
def test_eager_traced_and_deployed_agree_on_a_profiled_choice(symbolic, tmp_path):
    heuristic = conv()
    ty.config.benchmark_kernel = True
    _C._fastrun_test_choice("winograd_f43")
    eager = conv()
    assert not same_bits(eager, heuristic)
    f = _traced(symbolic)
    assert same_bits(f(ty.tensor(X)).numpy(), eager)
    # a new choice would now differ: the replay and the dump use the recorded one
    _C._fastrun_forget()
    _C._fastrun_test_choice("implicit_gemm")
    assert same_bits(f(ty.tensor(X)).numpy(), eager)
    path = tmp_path / "m.tym"
    f.dump(str(path), arg_names=["x"], output_names=["y"])
    ty.config.benchmark_kernel = False
    assert same_bits(f(ty.tensor(X)).numpy(), eager)
    assert same_bits(GraphInference(str(path)).run(X)["y"], eager)


def test_a_heuristic_trace_records_nothing_and_a_model_without_algo_chooses_itself(tmp_path):
    f = _traced(False)
    want = f(ty.tensor(X)).numpy()
    path = tmp_path / "m.tym"
    f.dump(str(path), arg_names=["x"], output_names=["y"])
    assert b"@algo" not in path.read_bytes()
    assert same_bits(GraphInference(str(path)).run(X)["y"], want)


def _conv_model(algo_params):
    w = ("float32", [1, 1, 3, 3], np.arange(9, dtype=np.float32).tobytes())
    return _build(inputs=(("x", "float32", [1, 1, 6, 6]),), weights=[w],
                  ops=[("conv2d", [0, 1], 1, algo_params)],
                  outputs=(("y", 2, "float32", [1, 1, 4, 4]),))


@pytest.mark.parametrize("params, message", [
    ([_param("@algo", 0, 99)], r"conv2d\): recorded algorithm 99 is out of range"),
    ([_param("@algo", 0, -1)], r"conv2d\): recorded algorithm -1 is out of range"),
    ([_param("@algo", 1, 1.0)], r"param '@algo' has kind 1, expected 0"),
    ([_param("@algo", 0, 2)] * 2, r"a second param '@algo'"),
])
def test_a_bad_recorded_algorithm_is_an_error_naming_the_op(params, message):
    with pytest.raises(ty.TianyuanError, match=message):
        GraphInference(_conv_model(params))


def test_a_recorded_algorithm_is_used_and_one_that_cannot_run_gives_way():
    x = RNG.standard_normal((1, 1, 6, 6)).astype(np.float32)
    w = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    plain = GraphInference(_conv_model([])).run(x)["y"]
    assert same_bits(plain, F.conv2d(ty.tensor(x), ty.tensor(w)).numpy())
    f43 = GraphInference(_conv_model([_param("@algo", 0, 4)])).run(x)["y"]
    np.testing.assert_allclose(f43, plain, rtol=1e-5, atol=1e-4)
    assert not same_bits(f43, plain)
    # gemm_1x1 cannot run a 3x3 layer: the session's own choice runs instead
    assert same_bits(GraphInference(_conv_model([_param("@algo", 0, 0)])).run(x)["y"], plain)
    with pytest.raises(ty.TianyuanError, match=r"relu\): recorded algorithm 0 is out of range "
                                               r"\(the op has 0\)"):
        GraphInference(_build(ops=[("relu", [0], 1, [_param("@algo", 0, 0)]),
                                   ("add", [2, 1], 1, [])]))


@pytest.mark.skipif(not os.path.exists(RUN_BIN), reason="tianyuan-run is built by CMake")
def test_tianyuan_run_fast_run_profiles_once_and_caches(tmp_path, fresh):
    f = _traced(True)
    f(ty.tensor(X))
    path = tmp_path / "m.tym"
    f.dump(str(path), arg_names=["x"], output_names=["y"])
    ty.config.benchmark_kernel = True
    _C._fastrun_test_choice("winograd_f43")
    want = conv()
    np.save(tmp_path / "x.npy", X)

    def run(choice):
        env = _env({"TY_FASTRUN_TEST_CHOICE": choice}, python=False)
        out = tmp_path / f"{choice}.npy"
        r = subprocess.run([RUN_BIN, str(path), "--input", f"x={tmp_path / 'x.npy'}",
                            "--output", str(out), "--iter", "1", "--warmup-iter", "0",
                            "--fast-run"], capture_output=True, text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        return np.load(out)

    _C._fastrun_forget()
    fresh.unlink()                                      # the run profiles, not this process
    assert same_bits(run("winograd_f43"), want)
    assert [line.split("\t")[2] for line in lines(fresh)] == ["winograd_f43"]
    assert same_bits(run("implicit_gemm"), want)        # cached: not profiled again
