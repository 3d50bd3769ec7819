"""Special values through every op_db row, compared with the row's NumPy reference.

Each row's own samples are re-run with NaN, +inf, -inf, -0.0 and ties (2.5, -0.5) written into
their float inputs, integer extremes (min, max, 0, -1 of every integer dtype) into their integer
inputs, and with an axis shrunk to length 0; bool inputs get bytes other than 0/1 (shared
through DLPack), which must read as true.
Index arguments (a row's nondiff_args) keep their values: the reference cannot index with NaN.
NaN positions, infinities and (for rows whose reference is a NumPy ufunc) the sign of zeros must
equal NumPy's; finite values match within the row's tolerance; integers match exactly (NumPy
wraps on overflow, as the framework does, and our narrower result dtypes wrap NumPy's value).

Where Tianyuan defines an op differently from NumPy by design (round as MegEngine does),
DIFFERENT_BY_DESIGN holds the reference we compare with instead, and why. Nothing else is
exempt, but two kinds of input may be refused with a clear ValueError where a NumPy reference
still computes something: an empty input (NumPy's einsum sums a convolution with an empty
kernel) and a non-finite parameter (arange's step, a distribution's range).
"""
import warnings
import zlib

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F

from .op_db import COMPARE, ELEMWISE_BINARY, ELEMWISE_UNARY, NN_UNARY, OP_DB, Sample, rand

F_SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 2.5, -0.5])
F_SPECIALS_NO_NAN = np.array([np.inf, -np.inf, -0.0, 0.0])
INT_DTYPES = ("int8", "uint8", "int16", "int32", "int64")
TOL = {"float16": (2e-3, 2e-3), "float64": (1e-12, 1e-12)}


def _round_half_away(x, *a, **k):
    return np.trunc(x + np.copysign(0.5, x)) if x.dtype.kind == "f" else x.copy()


def _pow_int_negative(x, y):
    """C-style integer power: a negative exponent gives trunc(1 / x**|y|) (0 unless |x| == 1),
    x == 0 gives 0 (no division by zero)."""
    if x.dtype.kind == "f" or y.dtype.kind == "f":
        return np.power(x, y)
    x, y = np.broadcast_arrays(x, y)
    pos = np.power(x, np.where(y < 0, 0, y))
    neg = np.where(x == 1, 1, np.where(x == -1, np.where(y % 2 == 1, -1, 1), 0))
    return np.where(y < 0, neg, pos).astype(np.result_type(x, y))


def _astype_saturating(x, dtype):
    """NaN becomes 0 and +-inf the type's bounds (NumPy's cast is undefined there)."""
    if np.dtype(dtype).kind in "iu" and x.dtype.kind == "f":
        info = np.iinfo(dtype)
        return np.clip(np.nan_to_num(np.trunc(x), nan=0.0, posinf=info.max, neginf=info.min),
                       info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _clip_keeping_ints(x, lower, upper):
    if x.dtype.kind == "f":
        return np.clip(x, lower, np.inf if upper is None else upper)
    info = np.iinfo(x.dtype)
    hi = info.max if upper is None else min(int(np.floor(upper)), info.max)
    return np.clip(x, max(int(np.ceil(lower)), info.min), hi).astype(x.dtype)


# row name -> (reference replacing the row's one, why Tianyuan (MegEngine) differs from NumPy)
DIFFERENT_BY_DESIGN = {
    "round": (_round_half_away,
              "MegEngine's ROUND is C's round(): halves go away from zero (NumPy: to even)"),
    "pow": (_pow_int_negative,
            "integer pow with a negative exponent: NumPy raises a ValueError on the value; "
            "integer pow stays integer here and a kernel cannot raise per element, so "
            "1 / x**n truncates (0 unless |x| == 1)"),
    "clip": (_clip_keeping_ints,
             "an integer tensor clipped by float bounds stays integer, with the bounds rounded "
             "inward (NumPy returns float64)"),
    "astype": (_astype_saturating,
               "float -> int casts saturate and map NaN to 0 (NumPy's cast of NaN/inf is "
               "undefined and gives INT_MIN on x86); int -> int wraps as NumPy's"),
}


ELEMWISE_NAMES = {n for n, *_ in ELEMWISE_UNARY + NN_UNARY + ELEMWISE_BINARY + COMPARE}


def _seed(*parts):
    return zlib.crc32(" ".join(map(str, parts)).encode())


def _inject(a, values, rng):
    """a copy of a with about a third of its entries (at least one) set to values."""
    a = np.array(a, copy=True)
    if a.size == 0:
        return a
    flat = a.reshape(-1)
    mask = rng.random(flat.size) < 0.35
    mask[rng.integers(flat.size)] = True
    flat[mask] = rng.choice(values, size=int(mask.sum())).astype(a.dtype)
    return a


def _int_extremes(dtype):
    """min, max and their neighbours, 0, -1; neighbours that a float64 (or float32) cannot tell
    apart come in the order a precision loss would swap (max before max - 1)."""
    info = np.iinfo(dtype)
    return np.array([info.max, info.max - 1, info.min + 1, info.min, 0, -1 if info.min else 2],
                    dtype=dtype)


def _inject_ints(a, dtype, rng):
    """_inject with the extremes, plus the whole run of them at the start of a."""
    a = _inject(a, _int_extremes(dtype), rng)
    n = min(a.size, len(_int_extremes(dtype)))
    a.reshape(-1)[:n] = _int_extremes(dtype)[:n]
    return a


def _base_arrays(info, sample, dtype):
    out = []
    for i, a in enumerate(sample.args):
        a = np.asarray(a)
        if a.dtype == np.bool_ or i in info.nondiff_args:
            out.append(a)
        elif dtype in INT_DTYPES:
            out.append(np.trunc(a * 3).astype(np.int64).astype(dtype))  # uint8 wraps
        else:
            out.append(a.astype(dtype))
    return out


def _special(info, arrays, dtype, values, rng):
    out = []
    for i, a in enumerate(arrays):
        if i in info.nondiff_args or a.dtype == np.bool_:
            out.append(a)
        elif dtype in INT_DTYPES:
            out.append(_inject_ints(a, dtype, rng))
        else:
            out.append(_inject(a, values, rng))
    return out


def _as_tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _reference(info, arrays, kwargs, as_float=False):
    """NumPy's result. as_float (the op gives a float result): integer inputs, all but index
    arguments, become floats first: float32 for an elementwise op, which computes float math
    of integers in float32 (MegEngine's rule; NumPy picks the smallest float that holds the
    integer type, float16 for int8), float64 otherwise (a mean accumulates exactly)."""
    ref = DIFFERENT_BY_DESIGN.get(info.name, (info.ref,))[0]
    ftype = np.float32 if info.name in ELEMWISE_NAMES else np.float64
    ins = [a.astype(ftype).astype(np.float64) if as_float and a.dtype.kind in "iu" and
           i not in info.nondiff_args else a.astype(np.float64) if a.dtype.kind == "f" else a
           for i, a in enumerate(arrays)]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's mean of nothing warns
        return _as_tuple(ref(*ins, **kwargs))


def _tensor(a):
    return ty.tensor(a, dtype=a.dtype)


def _run(info, arrays, kwargs):
    return _as_tuple(info.fn(*[_tensor(a) for a in arrays], **kwargs))


def _compare_one(g, w, dtype, info, ctx, atol=0.0):
    g = g.numpy() if isinstance(g, ty.Tensor) else np.asarray(g)
    w = np.asarray(w)
    assert g.shape == w.shape, f"{ctx}: shape {g.shape} != {w.shape}"
    if g.dtype == np.bool_ or w.dtype == np.bool_:
        np.testing.assert_array_equal(g, w.astype(g.dtype), err_msg=ctx)
        return
    if g.dtype.kind in "iu":
        assert w.dtype.kind in "iub", f"{ctx}: integer result where NumPy gives {w.dtype}"
        np.testing.assert_array_equal(g, w.astype(g.dtype), err_msg=ctx)  # wraps like ours
        return
    with np.errstate(all="ignore"):
        w = w.astype(g.dtype).astype(np.float64)  # NumPy's value in our output dtype
    g = g.astype(np.float64)
    nan = np.isnan(w)
    bad = np.argwhere(np.isnan(g) != nan)
    assert not bad.size, f"{ctx}: NaN differs at {bad[:4].tolist()}: got {g}, NumPy {w}"
    inf = np.isinf(w) | np.isinf(g)
    np.testing.assert_array_equal(g[inf], w[inf], err_msg=f"{ctx}: infinities")
    rtol, row_atol = TOL.get(dtype, (info.rtol, info.atol))
    atol = max(atol, row_atol)
    fin = ~(nan | inf)
    np.testing.assert_allclose(g[fin], w[fin], rtol=rtol, atol=atol, err_msg=ctx)
    if isinstance(info.ref, np.ufunc):  # NumPy defines the sign of a zero result
        zero = fin & (w == 0)
        np.testing.assert_array_equal(np.signbit(g[zero]), np.signbit(w[zero]),
                                      err_msg=f"{ctx}: sign of zero")


def _check(info, arrays, kwargs, dtype, ctx, atol=0.0):
    got = _run(info, arrays, kwargs)
    float_out = any(np.dtype(g.dtype).kind == "f" for g in got if isinstance(g, ty.Tensor))
    want = _reference(info, arrays, kwargs, as_float=float_out)
    assert len(got) == len(want), ctx
    for g, w in zip(got, want):
        _compare_one(g, w, dtype, info, ctx, atol)


def _rows_with_arrays():
    return [info for info in OP_DB
            if any(np.asarray(a).ndim or np.asarray(a).size
                   for s in info.samples(np.random.default_rng(0)) for a in s.args)]


ROWS = _rows_with_arrays()


def _float_dtypes(info):
    """The row's float dtypes; elementwise and reduction kernels take every float dtype."""
    declared = [d for d in info.dtypes if d.startswith("float")]
    if info.name in KERNEL_ROWS:
        return declared + [d for d in ("float32", "float64", "float16") if d not in declared]
    return declared


# Elementwise and reduction rows: their kernels take every integer dtype (other rows are fed
# integers in the integer dtypes they declare: a float-only composite is no integer op), and
# they also get one long sample so the vectorised loop bodies see the special values.
KERNEL_ROWS = ELEMWISE_NAMES | {
    "clip", "where", "astype", "sum", "mean", "prod", "max", "min", "argmax", "argmin",
    "sort", "argsort", "topk"}


def _samples(info, rng):
    samples = info.samples(rng)
    if info.name in KERNEL_ROWS:
        first = samples[0]
        args = [rng.random(67) > 0.5 if np.asarray(a).dtype == np.bool_ else rand(rng, (67,))
                for a in first.args]
        samples = samples + [Sample(*args, **first.kwargs)]
    return samples


@pytest.mark.parametrize("info", ROWS, ids=repr)
def test_float_specials_match_numpy(info):
    rng = np.random.default_rng(_seed(info.name))
    for dtype in _float_dtypes(info):
        for sample in _samples(info, rng):
            base = _base_arrays(info, sample, dtype)
            for values in (F_SPECIALS, F_SPECIALS_NO_NAN):
                arrays = _special(info, base, dtype, values, rng)
                _check(info, arrays, sample.kwargs, dtype, f"{info.name} {dtype} {arrays}")


def _takes_numbers(info, sample):
    return any(i not in info.nondiff_args and np.asarray(a).dtype != np.bool_
               for i, a in enumerate(sample.args))


def _int_dtypes(info):
    if info.name in KERNEL_ROWS or any(d in INT_DTYPES for d in info.dtypes):
        return INT_DTYPES
    return ()


def _summation_atol(info, arrays):
    """A float reduction of integers near 2**63 (a mean) loses low bits in any summation order:
    NumPy's pairwise and our sequential sums may differ by about n * eps * max|x|."""
    if info.name in ELEMWISE_NAMES:
        return 0.0
    nums = [np.abs(a.astype(np.float64)) for i, a in enumerate(arrays)
            if i not in info.nondiff_args and a.size]
    n = sum(a.size for a in nums)
    return n * np.finfo(np.float64).eps * max((a.max() for a in nums), default=0.0)


@pytest.mark.parametrize("info", ROWS, ids=repr)
def test_integer_extremes_match_numpy(info):
    rng = np.random.default_rng(_seed(info.name, "int"))
    samples = [s for s in _samples(info, rng) if _takes_numbers(info, s)]
    for dtype in _int_dtypes(info):
        for sample in samples:
            arrays = _special(info, _base_arrays(info, sample, dtype), dtype, None, rng)
            _check(info, arrays, sample.kwargs, dtype, f"{info.name} {dtype} {arrays}",
                   _summation_atol(info, arrays))


def _empty_variants(arrays, info):
    """The arrays with one axis (aligned from the right, as broadcasting aligns) set to 0."""
    nd = max([a.ndim for a in arrays] or [0])
    for k in range(1, nd + 1):
        out = []
        for i, a in enumerate(arrays):
            if i in info.nondiff_args or a.ndim < k:
                out.append(a)
                continue
            shape = list(a.shape)
            shape[-k] = 0
            out.append(np.zeros(shape, a.dtype))
        yield k, out


@pytest.mark.parametrize("info", ROWS, ids=repr)
def test_empty_inputs_match_numpy(info):
    """Where both give a result it is NumPy's. NumPy's references are lenient in places (a
    convolution with an empty kernel is a sum of nothing to them), so a ValueError is also
    accepted: an empty input may be refused clearly, never answered wrongly or crash."""
    rng = np.random.default_rng(_seed(info.name, "empty"))
    dtype = info.dtypes[0]
    for sample in info.samples(rng):
        base = _base_arrays(info, sample, dtype)
        for k, arrays in _empty_variants(base, info):
            ctx = f"{info.name} {dtype} {[a.shape for a in arrays]} {sample.kwargs}"
            try:
                want = _reference(info, arrays, sample.kwargs)
            except (ValueError, IndexError, ZeroDivisionError):
                continue  # no NumPy answer to compare with
            try:
                got = _run(info, arrays, sample.kwargs)
            except ValueError:
                continue
            assert len(got) == len(want), ctx
            for g, w in zip(got, want):
                _compare_one(g, w, dtype, info, ctx)


def _float_param_variants(sample):
    for key, value in sample.kwargs.items():
        if isinstance(value, float):
            for special in (np.nan, np.inf, -np.inf, -0.0):
                yield key, dict(sample.kwargs, **{key: special})


@pytest.mark.parametrize("info", [i for i in OP_DB if any(
    isinstance(v, float) for s in i.samples(np.random.default_rng(0)) for v in s.kwargs.values())],
    ids=repr)
def test_special_float_params_match_numpy(info):
    """A float parameter (clip's bounds, a fill value, leaky_relu's slope) set to NaN, +-inf or
    -0.0 gives NumPy's answer, or a ValueError where the op needs a finite value (arange's
    step, a distribution's range)."""
    rng = np.random.default_rng(_seed(info.name, "params"))
    dtype = info.dtypes[0]
    for sample in info.samples(rng):
        arrays = _base_arrays(info, sample, dtype)
        for key, kwargs in _float_param_variants(sample):
            ctx = f"{info.name} {dtype} {key}={kwargs[key]} {[a.shape for a in arrays]}"
            try:
                _reference(info, arrays, kwargs)
            except (ValueError, OverflowError, ZeroDivisionError):
                continue  # NumPy refuses it too
            try:
                _run(info, arrays, kwargs)
            except ValueError:
                continue
            _check(info, arrays, kwargs, dtype, ctx)


# ---- booleans: a bool tensor's bytes may be other than 0/1 when it shares memory with a
# NumPy view or another framework (DLPack); every op reads any nonzero byte as true, and
# every bool an op writes is a canonical 0/1 byte. ----
BOOL_READERS = {"astype", "sum", "mean", "prod", "max", "min", "argmax", "argmin",
                "cumsum"} | {n for n, _ in COMPARE}  # rows also run with bool inputs


def _raw_bool(a, rng):
    """(uint8 bytes, bool view): true entries hold arbitrary nonzero bytes."""
    raw = np.asarray((a != 0).astype(np.uint8) *
                     rng.choice(np.array([1, 2, 127, 128, 255], np.uint8), size=a.shape))
    return raw, raw.view(np.bool_)


def _bool_rows():
    rng = np.random.default_rng(0)
    return [info for info in OP_DB if info.name in BOOL_READERS or any(
        np.asarray(a).dtype == np.bool_ for s in info.samples(rng) for a in s.args)]


def _canonical_bytes(t):
    if isinstance(t, ty.Tensor) and t.dtype == np.bool_:
        return np.from_dlpack(t).view(np.uint8).ravel()  # the tensor's own bytes, not a copy
    return np.zeros(0, np.uint8)


@pytest.mark.parametrize("info", _bool_rows(), ids=repr)
def test_noncanonical_bools_read_as_true(info):
    rng = np.random.default_rng(_seed(info.name, "bool"))
    for sample in _samples(info, rng):
        args = [np.asarray(a) for a in sample.args]
        if info.name in BOOL_READERS:
            args = [a > 0 if i not in info.nondiff_args else a for i, a in enumerate(args)]
        keep, tensors = [], []
        for a in args:
            if a.dtype == np.bool_:
                raw, view = _raw_bool(a, rng)
                keep.append(raw)
                tensors.append(ty.from_dlpack(view))  # shares the odd bytes
            else:
                tensors.append(_tensor(a))
        ctx = f"{info.name} {[k.ravel().tolist() for k in keep]} {sample.kwargs}"
        got = _as_tuple(info.fn(*tensors, **sample.kwargs))
        want = _reference(info, args, sample.kwargs)
        for g, w in zip(got, want):
            assert set(_canonical_bytes(g).tolist()) <= {0, 1}, f"{ctx}: bool bytes"
            _compare_one(g, w, "bool", info, ctx)


# ---- traced: a fused elementwise chain over special values gives the eager bits ----
ELEMWISE_ROWS = [info for info in OP_DB if info.name in ELEMWISE_NAMES - {n for n, _ in COMPARE}]


@pytest.mark.parametrize("symbolic", [False, True], ids=["computed", "symbolic"])
def test_fused_chains_of_special_values_are_bitwise_eager(symbolic):
    """Each elementwise row's op between two other elementwise ops (so the graph fuses the
    three into one pass) gives exactly the eager bits on NaN, inf and -0.0, for every float
    dtype the row declares: fused and unfused loops expand the same scalar.def line."""
    from tianyuan.jit import trace
    rng = np.random.default_rng(_seed("fused"))
    for info in ELEMWISE_ROWS:
        for dtype in _float_dtypes(info):
            sample = info.samples(rng)[3]  # (3, 4) inputs
            arrays = _special(info, _base_arrays(info, sample, dtype), dtype, F_SPECIALS, rng)

            def chain(*ts, _f=info.fn):
                return -_f(*[-t for t in ts])

            want = chain(*[_tensor(a) for a in arrays]).numpy()
            fn = trace(chain, symbolic=symbolic)
            for call in range(2):  # the recording call and a replay
                got = fn(*[_tensor(a) for a in arrays]).numpy()
                assert got.tobytes() == want.tobytes(), f"{info.name} {dtype} call {call}"
            fused = sum(st["fused_nodes"] for st in fn.pass_stats())
            assert fused >= 3, f"{info.name} {dtype}: the chain was not fused ({fused} nodes)"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_floor_div_and_mod_are_numpys_bit_for_bit(dtype):
    """Operands over a wide exponent range (quotients from tiny to beyond 2**60), integers
    (exact multiples) and special values: floor_div and mod give NumPy's bits, signs of zero
    included (NumPy's divmod: the quotient snapped to an integer, the remainder with the
    divisor's sign)."""
    rng = np.random.default_rng(_seed("divmod", dtype))
    n = 20000

    def wide():
        return rng.uniform(-1, 1, n) * 2.0 ** rng.integers(-30, 30, n)

    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.1, 3.0])
    a = np.concatenate([wide(), np.round(wide()), rng.integers(-50, 50, n),
                        rng.choice(specials, 500)]).astype(dtype)
    b = np.concatenate([wide(), wide(), rng.integers(-7, 8, n),
                        rng.choice(specials, 500)]).astype(dtype)
    with np.errstate(all="ignore"):
        want = {"mod": np.mod(a, b), "floor_div": np.floor_divide(a, b)}
    for name, w in want.items():
        g = getattr(F, name)(_tensor(a), _tensor(b)).numpy()
        nan = np.isnan(w)
        assert np.array_equal(np.isnan(g), nan), f"{name} {dtype}: NaN positions"
        bits = f"u{w.itemsize}"
        bad = np.flatnonzero((g.view(bits) != w.view(bits)) & ~nan)
        assert not bad.size, f"{name} {dtype}: {[(a[i], b[i], g[i], w[i]) for i in bad[:4]]}"
