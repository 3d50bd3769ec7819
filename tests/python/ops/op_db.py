"""The op test table (PyTorch OpInfo style): one row per op of ops.def.

Each row names the C ops it covers, a tianyuan callable, a NumPy reference (evaluated in
float64), sample inputs, and whether finite-difference gradient checks apply. The generic
suites in test_op_db.py run every row: forward vs NumPy (contiguous and non-contiguous),
float64 gradient checks, and error cases (op_db_errors.py). Coverage is measured, not
declared: see op_coverage.py.
"""
import math

import numpy as np

import tianyuan as ty
import tianyuan.functional as F


class Sample:
    """Inputs (numpy arrays) and keyword arguments for one call."""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs

    def __repr__(self):
        shapes = [getattr(a, "shape", a) for a in self.args]
        return f"Sample({shapes}, {self.kwargs})"


class Error:
    """An error case: fn() must raise exc with fragment in its message."""

    def __init__(self, fn, exc, fragment):
        self.fn, self.exc, self.fragment = fn, exc, fragment

    def __repr__(self):
        return f"Error({self.exc.__name__}, {self.fragment!r})"


class OpInfo:
    def __init__(self, name, fn, ref, samples, ops=None, grad=True, dtypes=("float32",),
                 rtol=1.3e-6, atol=1e-5, grad_args=None, nondiff_args=(), errors=()):
        self.name = name
        self.fn = fn                  # (*tensors, **kwargs) -> Tensor or tuple
        self.ref = ref                # (*float64 arrays, **kwargs) -> array or tuple
        self.samples = samples        # rng -> list[Sample]
        self.ops = ops or [name]      # C ops (ops.def names) this row covers
        self.grad = grad              # run finite-difference checks
        self.dtypes = dtypes
        self.rtol, self.atol = rtol, atol
        self.nondiff_args = nondiff_args  # positions of integer / index arguments
        # Error cases: Error(callable, exception type, message fragment), or such a tuple
        self.errors = [e if isinstance(e, Error) else Error(*e) for e in errors]

    def __repr__(self):
        return self.name


def rand(rng, shape, low=-2.0, high=2.0):
    return rng.uniform(low, high, size=shape)


UNARY_SHAPES = [(), (0,), (7,), (3, 4), (2, 3, 4)]
BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((), (3,)),
                 ((0, 3), (3,)), ((5,), ())]


def unary_samples(low=-2.0, high=2.0, **kw):
    def gen(rng):
        return [Sample(rand(rng, s, low, high), **kw) for s in UNARY_SHAPES]
    return gen


def binary_samples(low=-2.0, high=2.0, low2=None, high2=None):
    def gen(rng):
        lo2 = low if low2 is None else low2
        hi2 = high if high2 is None else high2
        return [Sample(rand(rng, a, low, high), rand(rng, b, lo2, hi2)) for a, b in BINARY_SHAPES]
    return gen


def away_from(values, eps=0.05):
    """Sample transform keeping inputs away from kinks (finite differences break there)."""
    def fix(x):
        x = np.array(x, dtype=np.float64)
        for v in values:
            close = np.abs(x - v) < eps
            x[close] = v + eps * np.where(x[close] >= v, 2, -2)
        return x
    return fix


def unary_kinks(kinks, low=-2.0, high=2.0, **kw):
    fix = away_from(kinks)

    def gen(rng):
        return [Sample(fix(rand(rng, s, low, high)), **kw) for s in UNARY_SHAPES]
    return gen


def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


ELEMWISE_UNARY = [
    # name, ref, samples
    ("neg", np.negative, unary_samples()),
    ("abs", np.abs, unary_kinks([0])),
    ("exp", np.exp, unary_samples()),
    ("expm1", np.expm1, unary_samples()),
    ("log", np.log, unary_samples(0.1, 3)),
    ("log1p", np.log1p, unary_samples(-0.5, 3)),
    ("sqrt", np.sqrt, unary_samples(0.1, 3)),
    ("square", np.square, unary_samples()),
    ("sin", np.sin, unary_samples()),
    ("cos", np.cos, unary_samples()),
    ("tan", np.tan, unary_samples(-1.2, 1.2)),
    ("asin", np.arcsin, unary_samples(-0.9, 0.9)),
    ("acos", np.arccos, unary_samples(-0.9, 0.9)),
    ("atan", np.arctan, unary_samples()),
    ("sinh", np.sinh, unary_samples()),
    ("cosh", np.cosh, unary_samples()),
    ("tanh", np.tanh, unary_samples()),
    ("asinh", np.arcsinh, unary_samples()),
    ("acosh", np.arccosh, unary_samples(1.1, 3)),
    ("atanh", np.arctanh, unary_samples(-0.9, 0.9)),
    ("erf", _erf, unary_samples()),
    ("sign", np.sign, unary_kinks([0])),
    ("round", np.round, unary_kinks([-1.5, -0.5, 0.5, 1.5])),
    ("floor", np.floor, unary_kinks([-2, -1, 0, 1, 2])),
    ("ceil", np.ceil, unary_kinks([-2, -1, 0, 1, 2])),
]

NN_UNARY = [
    ("relu", lambda x: np.maximum(x, 0), unary_kinks([0])),
    ("relu6", lambda x: np.clip(x, 0, 6), unary_kinks([0, 6], -3, 8)),
    ("sigmoid", _sigmoid, unary_samples()),
    ("silu", lambda x: x * _sigmoid(x), unary_samples()),
    ("gelu", _gelu, unary_samples()),
    ("softplus", lambda x: np.logaddexp(0, x), unary_samples()),
    ("hswish", lambda x: x * np.clip(x + 3, 0, 6) / 6, unary_kinks([-3, 3], -5, 5)),
    ("hsigmoid", lambda x: np.clip(x + 3, 0, 6) / 6, unary_kinks([-3, 3], -5, 5)),
]

ELEMWISE_BINARY = [
    ("add", np.add, binary_samples()),
    ("sub", np.subtract, binary_samples()),
    ("mul", np.multiply, binary_samples()),
    ("div", np.divide, binary_samples(-2, 2, 0.5, 2)),
    ("pow", np.power, binary_samples(0.5, 2, -2, 2)),
    ("maximum", np.maximum, binary_samples()),
    ("minimum", np.minimum, binary_samples()),
    ("atan2", np.arctan2, binary_samples(0.2, 2, 0.2, 2)),
    ("floor_div", np.floor_divide, binary_samples(-4, 4, 0.7, 2)),
    ("mod", np.mod, binary_samples(-4, 4, 0.7, 2)),
]

COMPARE = [
    ("equal", np.equal), ("not_equal", np.not_equal), ("less", np.less),
    ("less_equal", np.less_equal), ("greater", np.greater), ("greater_equal", np.greater_equal),
]


def _rounded_binary(rng):
    """Comparison samples with ties."""
    return [Sample(np.round(rand(rng, a)), np.round(rand(rng, b))) for a, b in BINARY_SHAPES]


def _bool_binary(rng):
    return [Sample(rand(rng, a) > 0, rand(rng, b) > 0) for a, b in BINARY_SHAPES]


def _reduce_samples(rng):
    out = []
    for shape, axis in [((3, 4), None), ((3, 4), 0), ((3, 4), 1), ((2, 3, 4), (0, 2)),
                        ((2, 3, 4), -1), ((5,), 0), ((), None)]:
        for keep in (False, True):
            out.append(Sample(rand(rng, shape), axis=axis, keepdims=keep))
    out.append(Sample(rand(rng, (0, 3)), axis=0, keepdims=False))
    return out


def _nonempty_reduce_samples(rng):
    return [s for s in _reduce_samples(rng) if s.args[0].size and
            all(d for d in s.args[0].shape)]


def _np_reduce(fn):
    def ref(x, axis=None, keepdims=False):
        ax = tuple(axis) if isinstance(axis, (list, tuple)) else axis
        return fn(x, axis=ax, keepdims=keepdims)
    return ref


def _distinct(rng, shape):
    """Values without ties (max/min/argmax grads are undefined at ties)."""
    n = int(np.prod(shape)) if shape else 1
    return (rng.permutation(n).reshape(shape) / 3.0 - 1.0).astype(np.float64)


def _maxmin_samples(rng):
    return [Sample(_distinct(rng, s.args[0].shape), **s.kwargs)
            for s in _nonempty_reduce_samples(rng)]


def _arg_samples(rng):
    return [Sample(_distinct(rng, (3, 4)), axis=a, keepdims=k)
            for a in (0, 1, -1) for k in (False, True)] + [Sample(_distinct(rng, (7,)), axis=None)]


def _where_samples(rng):
    return [Sample(rand(rng, a) > 0, rand(rng, b), rand(rng, a))
            for a, b in BINARY_SHAPES]


def _astype_samples(rng):
    return [Sample(rand(rng, s) * 10, dtype=d) for s in [(3, 4), (), (0,)]
            for d in ("float32", "float64", "int32", "int8", "float16", "bool", "uint8")]


def _ref_astype(x, dtype):
    if dtype in ("int32", "int8", "uint8", "int16", "int64"):
        info = np.iinfo(dtype)
        return np.clip(np.trunc(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _clip_samples(rng):
    fix = away_from([-0.5, 1.0])
    return [Sample(fix(rand(rng, s)), lower=-0.5, upper=1.0) for s in UNARY_SHAPES] + [
        Sample(fix(rand(rng, (3, 4))), lower=-0.5, upper=None)]


def _leaky_samples(rng):
    fix = away_from([0])
    return [Sample(fix(rand(rng, s)), negative_slope=0.1) for s in UNARY_SHAPES]


def _reshape_samples(rng):
    return [Sample(rand(rng, (3, 4)), target_shape=(4, 3)),
            Sample(rand(rng, (3, 4)), target_shape=(-1,)),
            Sample(rand(rng, (2, 3, 4)), target_shape=(6, -1)),
            Sample(rand(rng, ()), target_shape=(1, 1)),
            Sample(rand(rng, (0, 3)), target_shape=(3, 0))]


def _transpose_samples(rng):
    return [Sample(rand(rng, (3, 4)), pattern=(1, 0)),
            Sample(rand(rng, (2, 3, 4)), pattern=(2, 0, 1)),
            Sample(rand(rng, ()), pattern=()),
            Sample(rand(rng, (0, 2)), pattern=(1, 0))]


def _broadcast_samples(rng):
    return [Sample(rand(rng, (3, 1)), shape=(2, 3, 4)), Sample(rand(rng, ()), shape=(3,)),
            Sample(rand(rng, (4,)), shape=(0, 4))]


def _expand_samples(rng):
    return [Sample(rand(rng, (3, 4)), axis=0), Sample(rand(rng, (3, 4)), axis=-1),
            Sample(rand(rng, (3, 4)), axis=(0, 3)), Sample(rand(rng, ()), axis=0)]


def _squeeze_samples(rng):
    return [Sample(rand(rng, (3, 1, 4, 1)), axis=None), Sample(rand(rng, (1, 4)), axis=0),
            Sample(rand(rng, (3, 1, 4, 1)), axis=(1, 3)), Sample(rand(rng, (1,)), axis=None)]


def _getitem_samples(rng):
    keys = [(1,), (slice(1, 3),), (slice(None, None, -1),), (Ellipsis, 1), (None, 0),
            (slice(0, 3, 2), slice(None), 1), (-1, -2), (slice(5, 2),)]
    return [Sample(rand(rng, (4, 3, 2)), key=k) for k in keys]


def _setitem_samples(rng):
    keys = [(1,), (slice(1, 3),), (slice(None, None, -2),), (Ellipsis, 1), (-1, -2)]
    out = []
    for k in keys:
        x = rand(rng, (4, 3, 2))
        v = rand(rng, x[k].shape)
        out.append(Sample(x, v, key=k))
    out.append(Sample(rand(rng, (4, 3)), rand(rng, (3,)), key=slice(0, 2)))  # broadcast value
    return out


def _getitem(x, key):
    return x[key]


def _setitem(x, v, key):
    y = F.copy(x)
    y[key] = v
    return y


def _np_setitem(x, v, key):
    y = x.copy()
    y[key] = v
    return y


def _relu_backward_samples(rng):
    fix = away_from([0])
    return [Sample(fix(rand(rng, a)), rand(rng, b)) for a, b in BINARY_SHAPES]


def _assign_samples(rng):
    return [Sample(rand(rng, a), rand(rng, b)) for a, b in
            [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 4), ()), ((), ()), ((0, 2), (2,))]]


def _assign(x, v):
    y = F.copy(x)
    y._assign(v)
    return y


def _copy_samples(rng):
    return [Sample(rand(rng, s)) for s in UNARY_SHAPES]


def _shift_samples(rng):
    """Integer shifts: every integer dtype, broadcasting, 0-d and empty operands, and counts
    below 0 and at or past the bit width (numpy gives 0, or -1 for >> of a negative)."""
    def ints(shape, dt, lo, hi):
        return rng.integers(lo, hi, size=shape).astype(dt)
    out = [Sample(ints(a, "int32", -99, 99), ints(b, "int32", -3, 40)) for a, b in BINARY_SHAPES]
    for dt, bits in (("int8", 8), ("uint8", 8), ("int16", 16), ("int64", 64)):
        lo = 0 if dt == "uint8" else -99
        counts = np.array([0, 1, bits - 1, bits, bits + 1, 70, 0 if lo == 0 else -1], dtype=dt)
        out.append(Sample(ints((3, 7), dt, lo, 99), counts))
    out.append(Sample(np.array([1, -3, 5], dtype="int8"), np.array(9, dtype="int32")))
    return out


def _build():
    rows = []
    for name, ref, samples in ELEMWISE_UNARY + NN_UNARY:
        fn = getattr(F, name, None) or getattr(F.nn, name)
        rows.append(OpInfo(name, fn, ref, samples, dtypes=("float32", "float64", "float16"),
                           rtol=2e-6, atol=1e-5))
    for name, ref, samples in ELEMWISE_BINARY:
        rows.append(OpInfo(name, getattr(F, name), ref, samples, rtol=2e-6,
                           dtypes=("float32", "float64", "int32") if name in
                           ("add", "sub", "mul", "maximum", "minimum") else ("float32", "float64"),
                           grad=name not in ("floor_div",)))
    for name, ref in COMPARE:
        rows.append(OpInfo(name, getattr(F, name), ref, _rounded_binary, grad=False,
                           dtypes=("float32", "int32")))
    for name in ("logical_and", "logical_or", "logical_xor"):
        rows.append(OpInfo(name, getattr(F, name), getattr(np, name), _bool_binary, grad=False,
                           dtypes=("bool",)))
    rows += [
        OpInfo("logical_not", F.logical_not, np.logical_not,
               lambda rng: [Sample(rand(rng, s) > 0) for s in UNARY_SHAPES], grad=False,
               dtypes=("bool",)),
        OpInfo("isnan", F.isnan, np.isnan,
               lambda rng: [Sample(np.array([1.0, np.nan, np.inf, -np.inf, 0.0]))], grad=False),
        OpInfo("isinf", F.isinf, np.isinf,
               lambda rng: [Sample(np.array([1.0, np.nan, np.inf, -np.inf, 0.0]))], grad=False),
        OpInfo("clip", F.clip,
               lambda x, lower, upper: np.clip(x, lower, np.inf if upper is None else upper),
               _clip_samples, dtypes=("float32", "float64")),
        OpInfo("leaky_relu", F.nn.leaky_relu,
               lambda x, negative_slope: np.where(x > 0, x, x * negative_slope), _leaky_samples),
        OpInfo("where", F.where, np.where, _where_samples, nondiff_args=(0,)),
        OpInfo("astype", lambda x, dtype: x.astype(dtype), _ref_astype, _astype_samples,
               grad=False),
        OpInfo("sum", F.sum, _np_reduce(np.sum), _reduce_samples),
        OpInfo("mean", F.mean, _np_reduce(np.mean), _nonempty_reduce_samples),
        OpInfo("prod", F.prod, _np_reduce(np.prod), _reduce_samples),
        OpInfo("max", F.max, _np_reduce(np.max), _maxmin_samples),
        OpInfo("min", F.min, _np_reduce(np.min), _maxmin_samples),
        OpInfo("argmax", F.argmax,
               lambda x, axis=None, keepdims=False: np.argmax(x, axis=axis, keepdims=keepdims),
               _arg_samples, grad=False),
        OpInfo("argmin", F.argmin,
               lambda x, axis=None, keepdims=False: np.argmin(x, axis=axis, keepdims=keepdims),
               _arg_samples, grad=False),
        OpInfo("reshape", F.reshape, lambda x, target_shape: x.reshape(target_shape),
               _reshape_samples),
        OpInfo("transpose", F.transpose, lambda x, pattern: np.transpose(x, pattern),
               _transpose_samples),
        OpInfo("broadcast_to", F.broadcast_to, lambda x, shape: np.broadcast_to(x, shape),
               _broadcast_samples),
        OpInfo("expand_dims", F.expand_dims, lambda x, axis: np.expand_dims(x, axis),
               _expand_samples),
        OpInfo("squeeze", F.squeeze, lambda x, axis: np.squeeze(x, axis), _squeeze_samples),
        OpInfo("getitem", _getitem, _getitem, _getitem_samples, ops=["slice", "slice_grad"]),
        OpInfo("setitem", _setitem, _np_setitem, _setitem_samples, ops=["slice_set"]),
        OpInfo("copy", F.copy, np.copy, _copy_samples),
        OpInfo("assign", _assign, lambda x, v: np.broadcast_to(v, x.shape).copy(),
               _assign_samples, grad=False),
        OpInfo("relu_backward", lambda x, dy: ty._C.ops["relu_backward"](x, dy),
               lambda x, dy: np.where(x > 0, dy, 0.0), _relu_backward_samples,
               nondiff_args=(0,)),
        OpInfo("left_shift", F.left_shift, np.left_shift, _shift_samples, grad=False,
               dtypes=("int32",), nondiff_args=(0, 1),  # samples carry their own int dtypes
               errors=[(lambda: F.left_shift(ty.tensor([1.5]), 1), TypeError, "left_shift"),
                       (lambda: F.left_shift(ty.tensor([1]), ty.tensor([1.0])), TypeError,
                        "left_shift")]),
        OpInfo("right_shift", F.right_shift, np.right_shift, _shift_samples, grad=False,
               dtypes=("int32",), nondiff_args=(0, 1),  # samples carry their own int dtypes
               errors=[(lambda: F.right_shift(ty.tensor([1.5]), 1), TypeError, "right_shift"),
                       (lambda: F.right_shift(ty.tensor([1]), ty.tensor([1.0])), TypeError,
                        "right_shift")]),
    ]
    return rows


def _family_rows():
    """Rows kept in per-family files (op_db_<family>.py), each exporting ROWS."""
    import importlib
    rows = []
    for fam in ("matmul", "nn", "arrange", "index", "creation", "composite", "pool", "adjoint",
                "linalg", "breadth", "dist", "vision"):
        mod = importlib.import_module(f".op_db_{fam}", __package__)
        rows += mod.ROWS
    return rows


def _with_errors(rows):
    from .op_db_errors import attach  # imports this module: after Error and OpInfo exist
    return attach(rows)


OP_DB = _with_errors(_build() + _family_rows())
