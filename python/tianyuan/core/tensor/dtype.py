"""Quantized dtypes where MegEngine code imports them (``megengine.core.tensor.dtype``).

A quantized dtype is a plain numpy dtype of the storage type whose metadata carries the
quantization parameters, the layout MegEngine uses::

    np.dtype("int8", metadata={"mgb_dtype": {"name": "QuantizedS8", "scale": 0.1}})

Signed types are symmetric (no zero point); unsigned ones carry ``zero_point``. The value a
stored integer ``q`` stands for is ``scale * (q - zero_point)``.

>>> import numpy as np
>>> from tianyuan.core.tensor.dtype import qint8, convert_to_qint8, convert_from_qint8, get_scale
>>> q = convert_to_qint8(np.array([0.26, -1.0, 100.0], np.float32), qint8(0.1))
>>> q.tolist(), get_scale(q.dtype)
([3, -10, 127], 0.1)
>>> convert_from_qint8(q).tolist() == (q.astype(np.float32) * np.float32(0.1)).tolist()
True
"""
import re
from collections import namedtuple

import numpy as np

from ...dtype import bfloat16

_KEY = "mgb_dtype"


def get_dtype_bit(dtype_name):
    """Bits per element named by a dtype name ("qint8" -> 8, "bool" -> 1)."""
    if dtype_name == "bool":
        return 1
    digits = re.findall(r"\d+", dtype_name)
    if len(digits) != 1:
        raise ValueError(f"get_dtype_bit: cannot tell the bit width of {dtype_name!r}")
    return int(digits[0])


def is_lowbit(dtype):
    """Whether dtype is one of MegEngine's packed 1/2/4-bit integer types (tianyuan has none
    of them, so this is true only of a dtype carrying such a name)."""
    return getattr(dtype, "name", None) in ("intb1", "intb2", "intb4")


def is_bfloat16(dtype):
    return dtype is bfloat16


def is_differentible_dtype(dtype):
    """Whether gradients flow through tensors of this dtype (the float types)."""
    return is_bfloat16(dtype) or dtype in (np.float32, np.float16, np.float64)


class QuantDtypeMeta(namedtuple("QuantDtypeMeta",
                                ["name", "cname", "np_dtype_str", "qmin", "qmax",
                                 "is_unsigned"])):
    """What defines a quantized type: its name, the C name stored in the metadata, the numpy
    storage type and the integer range. Immutable; copies are the object itself."""

    def __new__(cls, name, cname, np_dtype_str, qmin, qmax, is_unsigned=None):
        if not isinstance(np_dtype_str, str):
            raise TypeError("QuantDtypeMeta: np_dtype_str must be a numpy dtype name")
        if is_unsigned is None:
            is_unsigned = np_dtype_str.startswith("u")
        return super().__new__(cls, name, cname, np_dtype_str, qmin, qmax, is_unsigned)

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


_builtin_quant_dtypes = {meta.name: meta for meta in (
    QuantDtypeMeta("quint8", "Quantized8Asymm", "uint8", 0, 255),
    QuantDtypeMeta("qint8", "QuantizedS8", "int8", -128, 127),
    QuantDtypeMeta("qint8_narrow", "QuantizedS8", "int8", -127, 127),
    QuantDtypeMeta("quint4", "Quantized4Asymm", "uint8", 0, 15),
    QuantDtypeMeta("qint4", "QuantizedS4", "int8", -8, 7),
    QuantDtypeMeta("qint1", "QuantizedS1", "int8", 0, 1),
    QuantDtypeMeta("qint32", "QuantizedS32", "int32", -2 ** 31, 2 ** 31 - 1),
    QuantDtypeMeta("quint2", None, "uint8", 0, 3),     # no C name: cannot be created
    QuantDtypeMeta("qint2", None, "int8", -2, 1),
)}


def _params(dtype):
    metadata = getattr(dtype, "metadata", None)
    if not metadata or _KEY not in metadata:
        return None
    return metadata[_KEY]


def is_quantize(dtype):
    """Whether dtype is a quantized dtype (carries quantization metadata)."""
    try:
        return _params(np.dtype(dtype)) is not None
    except TypeError:
        return False


def get_scale(dtype):
    """The scale of a quantized dtype."""
    params = _params(np.dtype(dtype))
    if params is None:
        raise ValueError(f"get_scale: {dtype!r} is not a quantized dtype")
    return params["scale"]


def get_zero_point(dtype):
    """The zero point of an asymmetric (unsigned) quantized dtype."""
    params = _params(np.dtype(dtype))
    if params is None or "zero_point" not in params:
        raise ValueError(f"get_zero_point: {dtype!r} is not an asymmetric quantized dtype")
    return params["zero_point"]


def is_dtype_equal(dt0, dt1):
    """Same storage type and, for quantized types, the same parameters."""
    dt0, dt1 = np.dtype(dt0), np.dtype(dt1)
    return dt0 == dt1 and _params(dt0) == _params(dt1)


def create_quantized_dtype(dtype_meta, scale, zp):
    """The numpy dtype of ``dtype_meta`` with ``scale`` (and ``zp`` for unsigned types)."""
    if dtype_meta.cname is None:
        raise ValueError(f"create_quantized_dtype: {dtype_meta.name} has no C type name and "
                         f"cannot be created")
    params = {"name": dtype_meta.cname, "scale": float(scale)}
    if dtype_meta.is_unsigned:
        if zp is None or int(zp) != zp:
            raise ValueError(f"{dtype_meta.name}: zero_point should be an integer, got {zp!r}")
        if not dtype_meta.qmin <= int(zp) <= dtype_meta.qmax:
            raise ValueError(f"{dtype_meta.name}: zero_point should be within "
                             f"[{dtype_meta.qmin}, {dtype_meta.qmax}], got {zp}")
        params["zero_point"] = int(zp)
    elif zp is not None:
        raise ValueError(f"{dtype_meta.name} is symmetric: zero_point should be None, "
                         f"got {zp!r}")
    return np.dtype(dtype_meta.np_dtype_str, metadata={_KEY: params})


def quint8(scale, zero_point):
    """uint8 storage; value = scale * (q - zero_point)."""
    return create_quantized_dtype(_builtin_quant_dtypes["quint8"], scale, zero_point)


def qint8(scale):
    """int8 storage; value = scale * q."""
    return create_quantized_dtype(_builtin_quant_dtypes["qint8"], scale, None)


def qint32(scale):
    """int32 storage; value = scale * q (accumulators of quantized products)."""
    return create_quantized_dtype(_builtin_quant_dtypes["qint32"], scale, None)


def quint4(scale, zero_point):
    """4-bit unsigned values in uint8 storage; value = scale * (q - zero_point)."""
    return create_quantized_dtype(_builtin_quant_dtypes["quint4"], scale, zero_point)


def qint4(scale):
    """4-bit signed values in int8 storage; value = scale * q."""
    return create_quantized_dtype(_builtin_quant_dtypes["qint4"], scale, None)


def qint1(scale):
    """1-bit values (0 or 1) in int8 storage; value = scale * q."""
    return create_quantized_dtype(_builtin_quant_dtypes["qint1"], scale, None)


def _check_kind(dtype, meta, what, func):
    params = _params(dtype)
    if params is None or params["name"] != meta.cname:
        raise ValueError(f"{func}: {what} should be a {meta.name} dtype, got {dtype!r}")
    return params


def _quantize(arr, dtype, meta, func):
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{func}: arr should be a numpy ndarray")
    params = _check_kind(np.dtype(dtype), meta, "the target dtype", func)
    q = np.round(arr / params["scale"]) + params.get("zero_point", 0)
    return q.clip(meta.qmin, meta.qmax).astype(dtype)


def _dequantize(arr, meta, func):
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{func}: arr should be a numpy ndarray")
    params = _check_kind(arr.dtype, meta, "arr's dtype", func)
    return (arr.astype(np.float32) - params.get("zero_point", 0)) * params["scale"]


def _converters(name):
    meta = _builtin_quant_dtypes[name]

    def to_q(arr, q):
        return _quantize(arr, q, meta, f"convert_to_{name}")

    def from_q(arr):
        return _dequantize(arr, meta, f"convert_from_{name}")

    to_q.__name__, from_q.__name__ = f"convert_to_{name}", f"convert_from_{name}"
    to_q.__doc__ = f"Quantize a float ndarray to the {name} dtype q (round, then clip)."
    from_q.__doc__ = f"The float32 values a {name} ndarray stands for."
    return to_q, from_q


convert_to_quint8, convert_from_quint8 = _converters("quint8")
convert_to_qint8, convert_from_qint8 = _converters("qint8")
convert_to_qint32, convert_from_qint32 = _converters("qint32")
convert_to_quint4, convert_from_quint4 = _converters("quint4")
convert_to_qint4, convert_from_qint4 = _converters("qint4")
convert_to_qint1, convert_from_qint1 = _converters("qint1")
