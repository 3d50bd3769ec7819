"""Loss functions (MegEngine's ``functional.loss``, also re-exported by ``functional.nn``).

Every loss takes reduction="mean" | "sum" | "none" over its per-sample (or per-element) values.
"""
import sys

import numpy as np

from .. import _C
from .elemwise import abs as _abs, log as _log, log1p as _log1p
from .math import mean as _mean, sum as _sum

__all__ = ["l1_loss", "square_loss", "mse_loss", "cross_entropy", "binary_cross_entropy",
           "hinge_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(name, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(loss, reduction):
    if reduction == "mean":
        return _mean(loss)
    if reduction == "sum":
        return _sum(loss)
    return loss


def _same_shape(name, pred, label):
    if tuple(pred.shape) != tuple(label.shape):
        raise ValueError(f"{name}: pred shape {tuple(pred.shape)} and label shape "
                         f"{tuple(label.shape)} differ")


def l1_loss(pred, label, reduction="mean"):
    """|pred - label|, reduced."""
    _check_reduction("l1_loss", reduction)
    _same_shape("l1_loss", pred, label)
    return _reduce(_abs(pred - label), reduction)


def square_loss(pred, label, reduction="mean"):
    """(pred - label) ** 2, reduced (mean squared error)."""
    _check_reduction("square_loss", reduction)
    _same_shape("square_loss", pred, label)
    d = pred - label
    return _reduce(d * d, reduction)


mse_loss = square_loss


def _pick(x, label, axis):
    """x's values at label along axis (label has x's shape without axis)."""
    f = vars(sys.modules[__package__]).get("indexing_one_hot")
    if f is not None:
        return f(x, label, axis)
    # fallback without the index family: a one-hot mask from a host arange
    lab = label.numpy()
    n = x.shape[axis]
    if lab.size and (lab.min() < 0 or lab.max() >= n):
        raise IndexError(f"label values must lie in [0, {n}), got range "
                         f"[{lab.min()}, {lab.max()}]")
    shape = [1] * x.ndim
    shape[axis] = n
    from ..tensor import Tensor
    from .tensor import expand_dims, where
    ar = Tensor(np.arange(n, dtype=np.int32).reshape(shape), dtype="int32")
    mask = expand_dims(label.astype("int32"), axis) == ar
    zero = Tensor(np.zeros((), dtype=np.float64), dtype=x.dtype)
    return _sum(where(mask, x, zero), axis)


def cross_entropy(pred, label, axis=1, with_logits=True, label_smooth=0, reduction="mean"):
    """Cross entropy between class scores pred (N, C, ...) along axis and integer labels
    (pred's shape without axis).

    with_logits=True takes raw scores (log_softmax, stable for any magnitude); False takes
    probabilities. label_smooth=s mixes the one-hot target with the uniform distribution:
    target = (1 - s) * onehot + s / C. (MegEngine's probability path averages log(pred) over
    the whole batch for the smoothing term; this uses the per-sample mean, which is the
    cross entropy against the smoothed target.)
    """
    _check_reduction("cross_entropy", reduction)
    nd = pred.ndim
    if nd < 1:
        raise ValueError("cross_entropy: pred must have a class axis, got a 0-d tensor")
    ax = axis + nd if axis < 0 else axis
    if not 0 <= ax < nd:
        raise ValueError(f"cross_entropy: axis {axis} out of range for pred shape "
                         f"{tuple(pred.shape)}")
    want = tuple(pred.shape[:ax]) + tuple(pred.shape[ax + 1:])
    if tuple(label.shape) != want:
        raise ValueError(f"cross_entropy: label shape {tuple(label.shape)} does not match pred "
                         f"shape {tuple(pred.shape)} without axis {axis} (expected {want})")
    if label.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integer class indices, got {label.dtype}")
    if with_logits:
        from .nn import logsoftmax
        logp = logsoftmax(pred, ax)
    else:
        logp = _log(pred)
    try:
        loss = -_pick(logp, label, ax)
    except IndexError as e:
        raise IndexError(f"cross_entropy: label out of range for {pred.shape[ax]} classes: {e}") \
            from None
    s = float(label_smooth or 0)
    if s:
        loss = loss * (1.0 - s) - _mean(logp, ax) * s
    return _reduce(loss, reduction)


def binary_cross_entropy(pred, label, with_logits=True, reduction="mean"):
    """Elementwise binary cross entropy with float targets label in [0, 1]. with_logits=True
    takes raw scores: softplus(pred) - label * pred, stable for any magnitude."""
    _check_reduction("binary_cross_entropy", reduction)
    _same_shape("binary_cross_entropy", pred, label)
    if with_logits:
        from .nn import softplus
        loss = softplus(pred) - label * pred
    else:
        loss = -(label * _log(pred) + (1.0 - label) * _log1p(-pred))
    return _reduce(loss, reduction)


def hinge_loss(pred, label, norm="L1", reduction="mean"):
    """Per-sample hinge loss for +-1 labels: sum over the non-batch dims of
    max(0, 1 - pred * label) ("L1") or its square ("L2")."""
    _check_reduction("hinge_loss", reduction)
    norm = str(norm).upper()
    if norm not in ("L1", "L2"):
        raise ValueError(f"hinge_loss: norm must be 'L1' or 'L2', got {norm!r}")
    _same_shape("hinge_loss", pred, label)
    loss = _C.ops["relu"](1.0 - pred * label)
    if norm == "L2":
        loss = loss * loss
    if pred.ndim >= 2:
        loss = _sum(loss, list(range(1, pred.ndim)))
    return _reduce(loss, reduction)
