"""dtypes: codes shared with the C core, numpy equivalents and MegEngine's conversion rules."""
import numpy as np

from . import _C

_NAMES = _C.dtype_names()  # index = C dtype code
float32, float64, float16, int8, uint8, int16, int32, int64 = (
    np.dtype(n) for n in ("float32", "float64", "float16", "int8", "uint8", "int16", "int32", "int64")
)
bool_ = np.dtype("bool")


class _BFloat16:
    """Stand-in dtype object for bfloat16 (numpy has none); compares equal to 'bfloat16'."""

    name = "bfloat16"
    itemsize = 2
    kind = "f"

    def __eq__(self, other):
        return other is self or (isinstance(other, str) and other == "bfloat16")

    def __hash__(self):
        return hash("bfloat16")

    def __repr__(self):
        return "bfloat16"

    __str__ = __repr__


bfloat16 = _BFloat16()

_CODE_OF_NAME = {n: i for i, n in enumerate(_NAMES)}
_NP_OF_CODE = [bfloat16 if n == "bfloat16" else np.dtype(n) for n in _NAMES]
FLOAT_CODES = {_CODE_OF_NAME[n] for n in ("float32", "float64", "float16", "bfloat16")}


def code_of(dtype):
    """C dtype code of anything dtype-like (numpy dtype, type, string, bfloat16)."""
    if isinstance(dtype, int) and not isinstance(dtype, bool):
        if 0 <= dtype < len(_NAMES):
            return dtype
        raise TypeError(f"invalid dtype code {dtype}")
    if dtype is bfloat16 or dtype == "bfloat16":
        return _CODE_OF_NAME["bfloat16"]
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"data type {dtype!r} is not understood") from None
    if name not in _CODE_OF_NAME:
        raise TypeError(f"tianyuan does not support dtype {name}")
    return _CODE_OF_NAME[name]


def dtype_of(code):
    """The numpy dtype (or bfloat16) object for a C dtype code."""
    return _NP_OF_CODE[code]


def is_float(dtype):
    return code_of(dtype) in FLOAT_CODES


_NARROW = {np.dtype("float64"): np.dtype("float32"), np.dtype("int64"): np.dtype("int32"),
           np.dtype("uint64"): np.dtype("int32"), np.dtype("uint32"): np.dtype("int32"),
           np.dtype("uint16"): np.dtype("int32")}


# numpy dtype -> C code (dtype objects hash fast; their .name is a slow property)
_CODE_OF_NP = {np.dtype(n): i for i, n in enumerate(_NAMES) if n != "bfloat16"}
_NP_OF_TARGET = [np.dtype("float32") if n == "bfloat16" else np.dtype(n) for n in _NAMES]


def _asarray(data):
    """np.asarray, but a Python int beyond int64 (which numpy turns into an object array or
    refuses) raises OverflowError naming the value."""
    try:
        arr = np.asarray(data)
    except OverflowError as e:
        raise OverflowError(f"tensor: {e} (tianyuan's widest integer dtype is int64)") from None
    if arr.dtype == object:
        for v in arr.flat:
            if isinstance(v, int) and not -(1 << 63) <= v < (1 << 63):
                raise OverflowError(f"tensor: value {v} does not fit int64")
    return arr


def _narrow_checked(arr, narrow):
    """MegEngine's default narrowing (int64 -> int32, float64 -> float32) that raises
    OverflowError on a value the narrow dtype cannot hold instead of wrapping it (finite floats
    that would become inf included; NaN and inf stay as they are)."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(narrow)
    bad = (np.isinf(out) & np.isfinite(arr)) if narrow.kind == "f" else (out != arr)
    if bad.any():
        v = arr[bad].flat[0]
        hint = "float64" if narrow.kind == "f" else "int64"
        raise OverflowError(f"tensor: value {v} does not fit {narrow.name}, the default dtype "
                            f"for {arr.dtype.name} data (pass dtype='{hint}' to keep it)")
    return out


def _check_int_range(arr, want):
    """Raises OverflowError when an integer of ``arr`` lies outside integer dtype ``want`` (a
    cast would wrap it). Floats cast to an integer dtype follow NumPy's explicit cast."""
    if not arr.size or np.can_cast(arr.dtype, want):
        return
    info = np.iinfo(want)
    lo, hi = arr.min(), arr.max()
    if lo < info.min or hi > info.max:
        raise OverflowError(f"tensor: value {lo if lo < info.min else hi} does not fit "
                            f"{want.name}")


def to_array(data, code):
    """Converter used by the C Tensor constructor: (contiguous ndarray, its code, target code).

    Without a dtype, MegEngine's rules apply: float64 -> float32, int64 -> int32."""
    arr = _asarray(data)
    if code is None:
        narrow = _NARROW.get(arr.dtype)
        if narrow is not None:
            arr = _narrow_checked(arr, narrow)
        target = _CODE_OF_NP.get(arr.dtype)
        if target is None or arr.dtype.kind not in "fiub":
            raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
    else:
        target = code
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
        want = _NP_OF_TARGET[code]
        if want.kind in "iu" and arr.dtype.kind in "iu" and arr.dtype != want:
            _check_int_range(arr, want)
        arr = arr.astype(want, copy=False)
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
        arr = arr.copy(order="C")
    return arr, _CODE_OF_NP[arr.dtype], target
