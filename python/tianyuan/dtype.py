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


def to_array(data, code):
    """Converter used by the C Tensor constructor: (contiguous ndarray, its code, target code).

    Without a dtype, MegEngine's rules apply: float64 -> float32, int64 -> int32."""
    arr = np.asarray(data)
    if code is None:
        arr = arr.astype(_NARROW.get(arr.dtype, arr.dtype), copy=False)
        target = _CODE_OF_NP.get(arr.dtype)
        if target is None or arr.dtype.kind not in "fiub":
            raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
    else:
        target = code
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"cannot make a tensor from data of dtype {arr.dtype}")
        arr = arr.astype(_NP_OF_TARGET[code], copy=False)
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
        arr = arr.copy(order="C")
    return arr, _CODE_OF_NP[arr.dtype], target
