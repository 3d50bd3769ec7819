"""Neural-network functions (MegEngine's ``functional.nn``)."""
import sys

import numpy as np

from .. import _C
from .._args import to_int
from .elemwise import clip as _clip, sqrt as _sqrt
from .math import logsumexp, mean as _mean, norm as _norm, sum as _sum
from .tensor import full as _full, reshape as _reshape
from ._table import export

_ops = _C.ops

# relu, sigmoid, ... : wrappers generated from their ops.def rows (home nn, see _table)
__all__ = export("nn", globals()) + [
    "logsigmoid", "softmax", "logsoftmax", "normalize", "batch_norm", "layer_norm", "group_norm",
    "instance_norm", "embedding"]


def leaky_relu(inp, negative_slope=0.01):  # MegEngine names its input inp
    """x if x > 0 else negative_slope * x."""
    return _ops["leaky_relu"](inp, negative_slope=float(negative_slope))


def logsigmoid(inp):
    """log(sigmoid(x)) = -softplus(-x)."""
    return -softplus(-inp)  # noqa: F821  (generated)


# ---- softmax family ----
def _softmax_axis(ndim):
    """MegEngine's default softmax axis: 0 for 0/1/3-d inputs, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


def _as_float(inp):
    return inp if inp.dtype.kind == "f" else inp.astype("float32")


def softmax(inp, axis=None):
    """exp(x) / sum(exp(x)) along axis (an int, a sequence of ints, or None for MegEngine's
    default: 0 for 0/1/3-d inputs, else 1). Int axes use the fused, max-shifted C op."""
    inp = _as_float(inp)
    if axis is None:
        axis = _softmax_axis(inp.ndim)
    if isinstance(axis, (list, tuple)):
        from .elemwise import exp
        return exp(inp - logsumexp(inp, axis, keepdims=True))
    return _ops["softmax"](inp, axis=to_int(axis, "axis", "softmax"))


def logsoftmax(inp, axis):
    """log(softmax(x)) along axis, computed stably (x - logsumexp(x))."""
    inp = _as_float(inp)
    if isinstance(axis, (list, tuple)):
        return inp - logsumexp(inp, axis, keepdims=True)
    return _ops["log_softmax"](inp, axis=to_int(axis, "axis", "logsoftmax"))


log_softmax = logsoftmax


def normalize(inp, ord=None, axis=None, eps=1e-12):
    """inp / max(norm(inp, ord, axis), eps): unit p-norm along axis (all elements if None)."""
    n = _norm(inp, ord, axis, keepdims=axis is not None)
    return inp / _clip(n, lower=eps)


# ---- normalisation layers ----
def _check_float(name, inp):
    if inp.dtype.kind != "f":
        raise TypeError(f"{name}: expects a float input, got {inp.dtype}")


def _channel_param(name, t, c, ndim, what):
    """t (C,), (1, C) or (1, C, 1, ...) reshaped to broadcast over an ndim-d (N, C, ...) input."""
    if t is None:
        return None
    size = 1
    for d in t.shape:
        size *= d
    if size != c:
        raise ValueError(f"{name}: {what} has shape {tuple(t.shape)}, expected {c} elements "
                         f"(one per channel)")
    return _reshape(t, [1, c] + [1] * (ndim - 2))


def _affine(y, weight, bias):
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _normalize_over(x, axes, eps):
    """(x - mean) / sqrt(var + eps) with the biased variance over axes; returns (y, mean, var)."""
    m = _mean(x, axes, keepdims=True)
    d = x - m
    v = _mean(d * d, axes, keepdims=True)
    return d / _sqrt(v + eps), m, v


def _batch_norm_train_fused(inp, w, b, c, nd, eps):
    """The fused op (one kernel forward; its gradient is written with ops): w and b become
    (1, C, 1, ...) tensors of inp's dtype, ones and zeros where absent."""
    shape = [1, c] + [1] * (nd - 2)
    w = _full(shape, 1.0, inp.dtype) if w is None else w.astype(inp.dtype)
    b = _full(shape, 0.0, inp.dtype) if b is None else b.astype(inp.dtype)
    return _ops["batch_norm_train"](inp, w, b, eps=float(eps))


def batch_norm(inp, running_mean=None, running_var=None, weight=None, bias=None, *,
               training=False, momentum=0.9, eps=1e-5, inplace=True):
    """Batch normalisation of an (N, C) or (N, C, ...) input over every axis but 1.

    training=True normalises with the batch statistics (biased variance) and, when running
    stats are given, updates them as MegEngine does: running = momentum * running +
    (1 - momentum) * batch, using the unbiased batch variance for running_var. The update is
    in place (inplace=True, outside autodiff) or returned: (out, new_mean, new_var).
    training=False normalises with running_mean and running_var.
    """
    _check_float("batch_norm", inp)
    inp = _amp.to_high(inp)  # normalisation runs in float32 under autocast
    if inp.ndim < 2:
        raise ValueError(f"batch_norm: expects an (N, C, ...) input, got shape {tuple(inp.shape)}")
    nd, c = inp.ndim, inp.shape[1]
    rm = _channel_param("batch_norm", running_mean, c, nd, "running_mean")
    rv = _channel_param("batch_norm", running_var, c, nd, "running_var")
    w = _channel_param("batch_norm", weight, c, nd, "weight")
    b = _channel_param("batch_norm", bias, c, nd, "bias")
    if not training:
        if rm is None or rv is None:
            raise ValueError("batch_norm: training=False needs running_mean and running_var")
        # (x - mean) * scale + bias with the per-channel scale weight / sqrt(var + eps)
        # computed first: no division per element, and a traced model folds the scale into
        # one constant, so eager, traced and deployed runs compute the same bits.
        std = _sqrt(rv + eps)
        scale = 1.0 / std if w is None else w / std
        out = _affine((inp - rm) * scale, None, b)
        return out if inplace else (out, running_mean, running_var)
    axes = [0] + list(range(2, nd))
    n = 1
    for a in axes:
        n *= inp.shape[a]
    if n == 0:
        raise ValueError(f"batch_norm: training needs a non-empty batch, got shape "
                         f"{tuple(inp.shape)}")
    if inp.dtype in ("float32", "float64"):
        out, m, v = _batch_norm_train_fused(inp, w, b, c, nd, eps)
    else:
        y, m, v = _normalize_over(inp, axes, eps)
        out = _affine(y, w, b)
    new_m, new_v = _update_running(running_mean, running_var, m, v, n, momentum)
    if inplace:
        if running_mean is not None:
            running_mean._assign(new_m)
        if running_var is not None:
            running_var._assign(new_v)
        return out
    return out, new_m, new_v


def _update_running(running_mean, running_var, m, v, n, momentum):
    """New running stats from detached batch stats (None where no running stat is kept)."""
    new_m = new_v = None
    if running_mean is not None:
        bm = _reshape(m.detach(), running_mean.shape).astype(running_mean.dtype)
        new_m = running_mean.detach() * momentum + bm * (1.0 - momentum)
    if running_var is not None:
        unbiased = v.detach() * (n / max(n - 1, 1))
        bv = _reshape(unbiased, running_var.shape).astype(running_var.dtype)
        new_v = running_var.detach() * momentum + bv * (1.0 - momentum)
    return new_m, new_v


def layer_norm(inp, normalized_shape, affine=True, weight=None, bias=None, eps=1e-5):
    """Normalises over the trailing dims given by normalized_shape (an int or a tuple), then
    applies weight and bias (shaped normalized_shape) when affine is set."""
    _check_float("layer_norm", inp)
    inp = _amp.to_high(inp)  # normalisation runs in float32 under autocast
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    k = len(shape)
    if k == 0 or k > inp.ndim or tuple(inp.shape[inp.ndim - k:]) != shape:
        raise ValueError(f"layer_norm: normalized_shape {shape} does not match the trailing dims "
                         f"of input shape {tuple(inp.shape)}")
    y, _, _ = _normalize_over(inp, list(range(inp.ndim - k, inp.ndim)), eps)
    return _affine(y, weight, bias) if affine else y


def group_norm(inp, num_groups, affine, weight=None, bias=None, eps=1e-5):
    """Splits the C channels of an (N, C, ...) input into num_groups groups and normalises each
    (sample, group) over its channels and spatial positions; weight/bias are per channel."""
    _check_float("group_norm", inp)
    inp = _amp.to_high(inp)  # normalisation runs in float32 under autocast
    if inp.ndim < 2:
        raise ValueError(f"group_norm: expects an (N, C, ...) input, got shape {tuple(inp.shape)}")
    shape = list(inp.shape)
    c = shape[1]
    if num_groups <= 0 or c % num_groups:
        raise ValueError(f"group_norm: {c} channels cannot be split into {num_groups} groups")
    per_group = c // num_groups
    for d in shape[2:]:
        per_group *= d
    x = _reshape(inp, [shape[0], num_groups, per_group])
    y, _, _ = _normalize_over(x, [2], eps)
    y = _reshape(y, shape)
    if not affine:
        return y
    nd = inp.ndim
    return _affine(y, _channel_param("group_norm", weight, c, nd, "weight"),
                   _channel_param("group_norm", bias, c, nd, "bias"))


def instance_norm(inp, affine, weight=None, bias=None, eps=1e-5):
    """Normalises each (sample, channel) of an (N, C, ...) input over its spatial dims."""
    _check_float("instance_norm", inp)
    inp = _amp.to_high(inp)  # normalisation runs in float32 under autocast
    if inp.ndim < 3:
        raise ValueError(f"instance_norm: expects an (N, C, spatial...) input, got shape "
                         f"{tuple(inp.shape)}")
    y, _, _ = _normalize_over(inp, list(range(2, inp.ndim)), eps)
    if not affine:
        return y
    c, nd = inp.shape[1], inp.ndim
    return _affine(y, _channel_param("instance_norm", weight, c, nd, "weight"),
                   _channel_param("instance_norm", bias, c, nd, "bias"))


_IOTAS = {}


def _iota(n):
    """A cached int32 tensor 0..n-1 (int64 beyond int32)."""
    t = _IOTAS.get(n)
    if t is None:
        if len(_IOTAS) >= 16:
            _IOTAS.clear()
        from ..tensor import Tensor
        t = _IOTAS[n] = Tensor(np.arange(n, dtype=np.int32 if n < 2**31 else np.int64))
    return t


def embedding(inp, weight, padding_idx=None, max_norm=None, norm_type=None):
    """Rows of weight (num_embeddings, dim) picked by the integer tensor inp: shape
    inp.shape + (dim,). Rows at padding_idx get no gradient (MegEngine rejects padding_idx;
    this follows the usual meaning instead). max_norm/norm_type are not supported."""
    if max_norm is not None or norm_type is not None:
        raise NotImplementedError("embedding: max_norm and norm_type are not supported")
    if weight.ndim != 2:
        raise ValueError(f"embedding: weight must be 2-d (num_embeddings, dim), got shape "
                         f"{tuple(weight.shape)}")
    if inp.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got {inp.dtype}")
    n, dim = weight.shape
    # weight[inp] would read row -1 for an index of -1 (numpy's wrap). Gathering the indices
    # from 0..n-1 first returns them unchanged, or raises in the kernel for any index outside
    # [0, n), eagerly and traced alike; it costs one pass over the indices, not the rows.
    try:
        checked = _ops["gather"](_iota(n), _reshape(inp, (-1,)), axis=0)
    except IndexError as e:
        raise IndexError(f"embedding: {e} (indices must lie in [0, {n}))") from None
    out = _reshape(_ops["index"](weight, checked, axis=0), tuple(inp.shape) + (dim,))
    if padding_idx is not None:
        pad = padding_idx + weight.shape[0] if padding_idx < 0 else padding_idx
        if not 0 <= pad < weight.shape[0]:
            raise ValueError(f"embedding: padding_idx {padding_idx} out of range for "
                             f"{weight.shape[0]} embeddings")
        from .tensor import expand_dims, where
        mask = expand_dims(inp == pad, -1)
        out = where(mask, out.detach(), out)
    return out


# ---- MegEngine's F.nn also re-exports the losses, metrics and the nn functions that live in
# sibling modules (conv, pooling, linear, dropout, ...); those resolve lazily through F so this
# module does not depend on their import order.
from .loss import *  # noqa: E402,F401,F403
from .metric import topk_accuracy  # noqa: E402,F401
from .. import _amp_state as _amp

_FROM_F = {"conv1d", "conv2d", "conv3d", "conv_transpose2d", "conv_transpose3d", "linear",
           "max_pool2d", "avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool2d", "dropout",
           "pad", "one_hot", "indexing_one_hot", "local_response_norm", "prelu",
           "pixel_shuffle", "sliding_window", "sliding_window_transpose", "interpolate",
           "remap", "warp_affine", "warp_perspective", "matmul"}


def __getattr__(name):
    if name in _FROM_F:
        parent = sys.modules[__package__]
        if name in vars(parent):
            return vars(parent)[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
from .distributed import sync_batch_norm  # noqa: E402,F401  (statistics over a process group)
__all__.append("sync_batch_norm")
