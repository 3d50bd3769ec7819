"""Metrics (MegEngine's ``functional.metric``)."""
from .math import mean as _mean, sum as _sum

__all__ = ["topk_accuracy"]


def topk_accuracy(logits, target, topk=1):
    """Fraction of samples whose target class is among the topk highest logits (N, C).

    topk may be an int (returns one float32 0-d tensor) or a sequence (returns a tuple).
    A class counts as in the top k when fewer than k classes score strictly higher, so ties
    with the target are resolved in the target's favour.
    """
    from .loss import _pick
    from .tensor import expand_dims
    if logits.ndim != 2:
        raise ValueError(f"topk_accuracy: logits must be (N, C), got shape {tuple(logits.shape)}")
    if tuple(target.shape) != (logits.shape[0],):
        raise ValueError(f"topk_accuracy: target shape {tuple(target.shape)} does not match "
                         f"{logits.shape[0]} samples")
    ks = (topk,) if isinstance(topk, int) else tuple(topk)
    for k in ks:
        if not 1 <= k <= logits.shape[1]:
            raise ValueError(f"topk_accuracy: topk {k} out of range for {logits.shape[1]} classes")
    x = logits.detach()
    t = expand_dims(_pick(x, target, 1), 1)
    higher = _sum((x > t).astype("int32"), 1)
    accs = tuple(_mean((higher < k).astype("float32")) for k in ks)
    return accs[0] if isinstance(topk, int) else accs
