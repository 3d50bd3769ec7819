"""Small helpers shared by the layers."""
import numpy as np

from .. import functional as F  # imported before tianyuan.module (tianyuan/__init__.py)
from .._args import to_int, to_ints


def need(name, user):
    """tianyuan.functional.<name>, or a clear NotImplementedError while it does not exist."""
    f = getattr(F, name, None)
    if f is None:
        raise NotImplementedError(f"{user} needs tianyuan.functional.{name}, which is not "
                                  f"available in this build yet")
    return f


def has(name):
    return getattr(F, name, None) is not None


def pair(x, what="size", op="module"):
    if isinstance(x, (tuple, list)):
        if len(x) != 2:
            raise ValueError(f"{op}: {what} must be an int or a pair, got {x!r}")
        return tuple(to_int(v, what, op) for v in x)
    return (to_int(x, what, op),) * 2


def linear(x, weight, bias=None):
    """x @ weight.T + bias, through F.linear when it exists, else F.matmul."""
    if getattr(F, "linear", None) is not None:
        return F.linear(x, weight, bias)
    y = need("matmul", "a linear layer")(x, weight.transpose(1, 0))
    return y if bias is None else y + bias


def param(array):
    from ..tensor import Parameter
    return Parameter(np.ascontiguousarray(array, dtype=np.float32))


def param_filled(module, shape, value):
    """A float32 Parameter of ``shape`` filled with ``value`` (by the C fill op: no float64
    numpy temporary). Shape entries must be integers; errors name the module."""
    from ..tensor import Parameter
    name = type(module).__name__
    shape = to_ints(shape, "shape", name)
    try:
        t = F.full(shape, value)
    except (ValueError, MemoryError) as e:
        raise type(e)(f"{name}: cannot make a parameter of shape {tuple(shape)}: {e}") from None
    return Parameter(t)
