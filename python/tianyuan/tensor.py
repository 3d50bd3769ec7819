"""tianyuan.Tensor: the C tensor handle plus MegEngine's Python-level methods."""
import numpy as np

from . import _C
from . import dtype as _dt
from ._args import to_ints

_ops = _C.ops


class Tensor(_C.TensorBase):
    """An n-dimensional array on a device, with autodiff support.

    ``Tensor(data, dtype=None, device=None)`` copies ``data`` (array-like, scalar or Tensor);
    without a dtype, float64 becomes float32 and int64 becomes int32 (MegEngine's rules).

    >>> import tianyuan as ty
    >>> x = ty.Tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> (x * 2).numpy().tolist()
    [[2.0, 4.0], [6.0, 8.0]]
    """

    def __new__(cls, data=None, dtype=None, device=None, is_const=False, no_cache=False,
                name=None, format="default"):
        if data is None:
            data = []
        code = None if dtype is None else _dt.code_of(dtype)
        t = super().__new__(cls, data, code)
        if name is not None:
            t.name = name
        return t

    # ---- metadata ----
    @property
    def dtype(self):
        return _dt.dtype_of(self._dtype_code)

    @property
    def device(self):
        return self._device + "0"

    @property
    def name(self):
        return self.__dict__.get("_name")

    @name.setter
    def name(self, value):
        self.__dict__["_name"] = value

    @property
    def qparams(self):
        return self.__dict__.get("_qparams")

    # ---- conversion ----
    def numpy(self):
        """A new numpy array holding a copy of the values."""
        code = self._dtype_code
        if _dt.dtype_of(code) is _dt.bfloat16:
            return self.astype("float32").numpy()
        out = np.empty(self.shape, dtype=_dt.dtype_of(code))
        if out.size:
            self._copy_into(out)
        return out

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("a tianyuan Tensor cannot be exposed to numpy without a copy")
        a = self.numpy()
        return a if dtype is None else a.astype(dtype, copy=False)

    def _drop(self):
        """Frees this tensor's data now if DTR can recompute it when it is read again (an op
        output recorded while ``tianyuan.dtr`` was enabled); returns whether it did."""
        return _C.dtr_drop(self)

    def item(self):
        """The single value as a Python scalar."""
        if self.size != 1:
            raise ValueError(f"only a tensor with one element can be converted to a Python "
                             f"scalar (this one has {self.size})")
        return self.numpy().reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def __repr__(self):
        with np.printoptions(precision=4, suppress=True):
            body = np.array2string(self.numpy(), separator=", ") if self.ndim else \
                repr(self.numpy().item())
        return f"Tensor({body}, dtype={self.dtype}, device={self.device})"

    def __str__(self):
        return repr(self)

    def __format__(self, spec):
        if self.size == 1 and spec:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        for i in range(self.shape[0]):
            yield self[i]

    def __reduce__(self):
        return (_rebuild, (self.numpy(), str(self.dtype)))

    def __deepcopy__(self, memo):
        t = type(self)(self.numpy(), dtype=self.dtype)
        t.__dict__.update(self.__dict__)
        return t

    def __copy__(self):
        return self.__deepcopy__({})

    # ---- dlpack ----
    def __dlpack__(self, stream=None, max_version=None, dl_device=None, copy=None):
        from . import _dlpack
        return _dlpack.to_dlpack(self, stream, max_version, dl_device, copy)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU, device 0

    # ---- shape methods ----
    def astype(self, dtype):
        return _ops["astype"](self, dtype=_dt.code_of(dtype))

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _ops["reshape"](self, shape=_shape_arg(shape, "reshape"))

    def flatten(self, start_axis=0, end_axis=-1):
        from .functional import flatten
        return flatten(self, start_axis, end_axis)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = axes[0]
        if not axes:
            axes = tuple(range(self.ndim))[::-1]
        return _ops["transpose"](self, perm=to_ints(axes, "axes", "transpose"))

    def dimshuffle(self, *pattern):
        """MegEngine's older name of transpose (still used by model files written for it):
        the integers of ``pattern`` permute all axes, each ``'x'`` inserts an axis of size 1.

        >>> import tianyuan as ty
        >>> ty.tensor([[1, 2, 3]]).dimshuffle(1, 'x', 0).shape
        (3, 1, 1)
        """
        if len(pattern) == 1 and isinstance(pattern[0], (tuple, list)):
            pattern = pattern[0]
        perm = [p for p in pattern if not (isinstance(p, str) and p == "x")]
        out = self.transpose(*perm) if perm or self.ndim else self
        new_axes = [i for i, p in enumerate(pattern) if isinstance(p, str) and p == "x"]
        if not new_axes:
            return out
        from .functional import expand_dims
        return expand_dims(out, new_axes)

    @property
    def T(self):
        return self.transpose()

    def broadcast(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        return _ops["broadcast_to"](self, shape=_shape_arg(shape, "broadcast"))

    # ---- reductions ----
    def sum(self, axis=None, keepdims=False):
        from .functional import sum
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        from .functional import mean
        return mean(self, axis, keepdims)

    def prod(self, axis=None, keepdims=False):
        from .functional import prod
        return prod(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        from .functional import max
        return max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        from .functional import min
        return min(self, axis, keepdims)

    # ---- values ----
    def set_value(self, value):
        """Replaces this tensor's value (shape and dtype may change), keeping its identity."""
        if not isinstance(value, _C.TensorBase):
            value = Tensor(value, dtype=self.dtype)
        self._replace(value.detach())
        return self

    def reset_zero(self):
        self._assign(0)

    def to(self, device):
        return self

    def __matmul__(self, other):
        from .functional import matmul
        return matmul(self, other)

    def __rmatmul__(self, other):
        from .functional import matmul
        return matmul(Tensor(other), self)

    # ---- indexing ----
    def __getitem__(self, key):
        from . import _indexing
        return _indexing.getitem(self, key)

    def __setitem__(self, key, value):
        from . import _indexing
        _indexing.setitem(self, key, value)


class Parameter(Tensor):
    """A Tensor that a Module registers as a trainable parameter."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls, *args, **kwargs)
        _C.dtr_pin(self)  # DTR never evicts a parameter (it forgets its lineage, if any)
        return self

    def __repr__(self):
        return "Parameter" + super().__repr__()[6:]


def _rebuild(array, dtype):
    return Tensor(array, dtype=dtype)


def _shape_arg(shape, op):
    if len(shape) == 1 and isinstance(shape[0], _C.TensorBase) and shape[0].ndim == 1:
        shape = shape[0]  # x.reshape(shape_tensor)
    return to_ints(shape, "shape", op)


def tensor(data, dtype=None, device=None):
    """Creates a Tensor (MegEngine's ``megengine.tensor``)."""
    return Tensor(data, dtype=dtype, device=device)


_C._set_converter(lambda data, code: _dt.to_array(data, code), Tensor)
