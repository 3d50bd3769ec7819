"""NCHW -> NHWC memory layout (MegEngine's ``amp.convert_tensor_format`` and
``convert_module_format``).

MegEngine marks such a tensor with ``format="nhwc"``: its shape still reads NCHW, its memory
is channels-last. Tianyuan tensors carry strides, so the same thing is a view: the shape stays
(N, C, H, W) (or (N, C, D, H, W)) and the channel stride becomes 1. Every op reads it through
its strides, so results do not change; only the memory order does."""
import copy

from ..tensor import Tensor

__all__ = ["convert_tensor_format", "convert_module_format", "is_channels_last"]


def is_channels_last(x):
    """Whether a 4-d/5-d tensor's channel dim (1) is the innermost in memory."""
    if x.ndim not in (4, 5):
        return False
    st = x._strides
    c = x.shape[1]
    rest = 1
    for d in x.shape[2:]:
        rest *= d
    if c == 1 or rest == 1:
        return x.is_contiguous()  # both orders are the same memory
    return st[1] == 1 and all(st[i] >= st[i + 1] for i in range(2, x.ndim - 1)) \
        and st[-1] == c


def _is_nchw_format(x):
    return x.ndim in (4, 5) and not is_channels_last(x)


def _channels_last(x):
    nd = x.ndim
    to_last = (0,) + tuple(range(2, nd)) + (1,)
    back = (0, nd - 1) + tuple(range(1, nd - 1))
    from .. import functional as F
    return F.copy(x.transpose(*to_last)).transpose(*back)


def convert_tensor_format(x, inplace=True):
    """x with channels-last memory (a 4-d or 5-d tensor; others are returned unchanged). With
    ``inplace`` the tensor object itself is updated (its identity kept, as for Parameters an
    optimizer holds); otherwise a new tensor is returned, connected to x for autodiff."""
    if not isinstance(x, Tensor) or not _is_nchw_format(x):
        return x
    if inplace:
        x._replace(_channels_last(x.detach()))
        return x
    return _channels_last(x)


def convert_module_format(module, inplace=True):
    """Converts every 4-d/5-d parameter and buffer of ``module`` (a deep copy unless
    ``inplace``) to channels-last memory; returns the module."""
    if not inplace:
        module = copy.deepcopy(module)
    for _, t in module.named_tensors():
        convert_tensor_format(t, inplace=True)
    return module
