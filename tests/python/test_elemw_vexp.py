"""float32 exp, sigmoid, silu, tanh and log through the vectorized loops
(src/kernels/cpu/elemw_vec.c, the recipes of src/kernels/cpu/vmath.h), on each instruction set
forced with TY_ISA (read once at start, so each path runs in a child interpreter): against
NumPy in float64 over a sweep of every 8191st float from 0 to past exp's overflow threshold
and from -0 to past its underflow to zero (subnormal results included), over every 8191st
float of either sign (subnormals to inf), and on special values (+-0, +-inf, NaN, subnormal
inputs, the overflow and underflow edges); every path gives the same bits, the generic one
(scalar, fmaf) included, for contiguous, strided and fused (traced) calls alike."""
import numpy as np
import pytest

from _cpu import isas_here, run_isa_child


SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-40, -1e-40, 88.72283,
            88.72284, 89.0, 89.5, -87.33654, -87.33655, -103.27893, -103.97208, -103.97209,
            -104.0, -110.0, -111.0, 3e38, -3e38, 0.5, -0.5, 1.0, 20.0, -20.0, 0.34657359]


def _inputs():
    step = 8191
    pos = np.arange(0, 0x42B40000, step, dtype=np.uint32)           # 0 .. 90
    neg = np.arange(0x80000000, 0x80000000 + 0x42E00000, step, dtype=np.uint32)  # -0 .. -112
    sweep = np.concatenate([pos, neg]).view(np.float32)
    wide = np.arange(0, 0x7f800000, step, dtype=np.uint32)
    wide = np.concatenate([wide, wide | 0x80000000]).view(np.float32)
    return sweep, wide, np.array(SPECIALS, np.float32)


CHILD = r'''
import sys
import numpy as np
import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace
sys.path.insert(0, sys.argv[2])
from test_elemw_vexp import _inputs
sweep, wide, special = _inputs()
out = {}
for name, f in (("exp", F.exp), ("sigmoid", F.sigmoid), ("silu", F.silu), ("tanh", F.tanh),
                ("log", F.log)):
    for kind, x in (("sweep", sweep), ("wide", wide), ("special", special)):
        y = f(ty.tensor(x)).numpy()
        for n in (2, 3):
            ty.set_num_threads(n)
            assert f(ty.tensor(x)).numpy().tobytes() == y.tobytes(), f"{name}: threads"
        ty.set_num_threads(1)
        out[f"{name}-{kind}"] = y
    # strided: every other element of a 2-d view, and a column
    x2 = sweep[:4096 * 9].reshape(4096, 9)
    got = f(ty.tensor(x2)[:, 3]).numpy()
    assert got.tobytes() == out[f"{name}-sweep"][3:4096 * 9:9].tobytes(), f"{name}: strided"
    got = f(ty.tensor(x2).transpose(1, 0)).numpy()
    assert got.tobytes() == out[f"{name}-sweep"][:4096 * 9].reshape(4096, 9).T.tobytes()
    # fused into a traced elementwise chain
    chain = trace(lambda t, _f=f: -_f(-t) * 1.0, symbolic=True)
    for _ in range(2):
        got = chain(ty.tensor(-special)).numpy()
        assert got.tobytes() == (-out[f"{name}-special"] * np.float32(1.0)).tobytes(), name
np.savez(sys.argv[1], **out)
'''


def _run(isa, path):
    return run_isa_child(CHILD, isa, path)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("vexp")
    return {isa: _run(isa, d / f"{isa}.npz") for isa in isas_here()}


def _ref(name, x):
    """scalar.def's expression in float64, with exp(-x) taken past float's range as float's
    exp is (inf: sigmoid and silu are 0 or -0 below -88.7, as they always were)."""
    x = x.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if name in ("exp", "tanh", "log"):
            return getattr(np, name)(x)
        e = np.exp(-x)
        e[e.astype(np.float32) == np.inf] = np.inf
        return (1.0 if name == "sigmoid" else x) / (1.0 + e)


def _ulps(got, want):
    """|got - want| in units of the spacing of float32 at want (the subnormal spacing below
    the normal range), where want is finite in float32 and got is finite."""
    with np.errstate(over="ignore"):
        w32 = want.astype(np.float32)
    ok = np.isfinite(w32) & np.isfinite(got)
    spacing = np.spacing(np.abs(w32[ok])).astype(np.float64)
    return np.abs(got[ok].astype(np.float64) - want[ok]) / spacing


NAMES = ["exp", "sigmoid", "silu", "tanh", "log"]
# documented bounds (vmath.h, elemw_vec.h; measured 0.86, 2.04, 2.21, 2.91, 0.76 ulp here)
BOUNDS = {"exp": 1.0, "sigmoid": 2.5, "silu": 2.5, "tanh": 3.0, "log": 1.0}


@pytest.mark.parametrize("name", NAMES)
def test_matches_float64_within_the_documented_ulps(name, outputs):
    sweep, wide, special = _inputs()
    for isa, got in outputs.items():
        for kind, x in (("sweep", sweep), ("wide", wide), ("special", special)):
            y, want = got[f"{name}-{kind}"], _ref(name, x)
            assert y.dtype == np.float32 and y.shape == x.shape
            assert _ulps(y, want).max() <= BOUNDS[name], (isa, kind)
            with np.errstate(over="ignore"):
                w32 = want.astype(np.float32)
            # overflow, underflow to zero (with its sign), inf and NaN as the reference
            assert np.array_equal(np.isnan(y), np.isnan(w32)), (isa, kind)
            assert np.array_equal(np.isinf(y) & (y > 0), np.isinf(w32) & (w32 > 0)), (isa, kind)
            assert np.array_equal(np.isinf(y) & (y < 0), np.isinf(w32) & (w32 < 0)), (isa, kind)
            zero = (y == 0) & ~np.isnan(w32)
            assert np.array_equal(zero, (w32 == 0) & ~np.isnan(w32)), (isa, kind)


def test_exp_special_values(outputs):
    special = _inputs()[2]
    for isa, got in outputs.items():
        e = dict(zip(special.tolist(), got["exp-special"].tolist()))
        assert e[np.inf] == np.inf and e[-np.inf] == 0.0 and e[0.0] == 1.0, isa
        assert e[float(np.float32(88.72283))] < np.inf, isa  # the largest finite result
        assert e[float(np.float32(88.72284))] == np.inf, isa
        assert e[float(np.float32(-103.97208))] > 0, isa  # rounds to the smallest subnormal
        assert e[float(np.float32(-103.97209))] == 0.0, isa


@pytest.mark.parametrize("name", NAMES)
def test_every_instruction_set_gives_the_same_bits(name, outputs):
    isas = list(outputs)
    assert isas[0] == "generic"
    for isa in isas[1:]:
        for kind in ("sweep", "wide", "special"):
            a, b = outputs["generic"][f"{name}-{kind}"], outputs[isa][f"{name}-{kind}"]
            assert a.tobytes() == b.tobytes(), (name, isa, kind)


def test_tanh_and_log_special_values(outputs):
    special = _inputs()[2]
    for isa, got in outputs.items():
        t = dict(zip(special.tolist(), got["tanh-special"].tolist()))
        lg = dict(zip(special.tolist(), got["log-special"].tolist()))
        assert t[np.inf] == 1.0 and t[-np.inf] == -1.0 and t[20.0] == 1.0, isa
        assert np.signbit(got["tanh-special"][1]) and got["tanh-special"][1] == 0, isa  # -0
        assert t[float(np.float32(1e-45))] == np.float32(1e-45), isa  # tanh(x) = x, subnormal
        assert lg[np.inf] == np.inf and lg[0.0] == -np.inf and lg[1.0] == 0.0, isa
        assert np.isnan(lg[-20.0]) and np.isnan(lg[float(np.float32(-1e-45))]), isa
        tiny = np.float32(1e-45)  # the smallest subnormal
        assert lg[float(tiny)] == np.float32(np.log(np.float64(tiny))), isa
