"""Gradient clipping."""
from ..tensor import Tensor
from .optimizer import no_grad, _scalar

__all__ = ["clip_grad_norm", "clip_grad_value"]


def clip_grad_norm(tensors, max_norm, ord=2.0):
    """Scales the gradients of ``tensors`` so that their joint ``ord``-norm is at most
    max_norm (scale = min(1, max_norm / (norm + 1e-6))); returns the norm before clipping
    as a Tensor.

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import clip_grad_norm
    >>> w = ty.Parameter(np.zeros(2, "float32")); w.grad = ty.tensor([3.0, 4.0])
    >>> round(clip_grad_norm([w], 1.0).item(), 4), [round(float(v), 4) for v in w.grad.numpy()]
    (5.0, [0.6, 0.8])
    """
    from .. import functional as F
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = [t for t in tensors if t.grad is not None]
    if not tensors:
        return Tensor(0.0)
    p = float(ord)
    with no_grad():
        norms = [F.norm(t.grad.flatten(), ord=p) for t in tensors]
        total = norms[0]
        if len(norms) > 1:
            if p == float("inf"):
                for n in norms[1:]:
                    total = F.maximum(total, n)
            elif p == float("-inf"):
                for n in norms[1:]:
                    total = F.minimum(total, n)
            elif p == 0.0:
                for n in norms[1:]:
                    total = total + n
            else:
                _p = _scalar(p)
                acc = norms[0] ** _p
                for n in norms[1:]:
                    acc = acc + n ** _p
                total = acc ** _scalar(1.0 / p)
        scale = F.minimum(_scalar(max_norm) / (total + _scalar(1e-6)), _scalar(1.0))
        for t in tensors:
            t.grad = t.grad * scale
    return total


def clip_grad_value(tensors, lower, upper):
    """Clamps every gradient of ``tensors`` into [lower, upper].

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import clip_grad_value
    >>> w = ty.Parameter(np.zeros(2, "float32")); w.grad = ty.tensor([-3.0, 0.5])
    >>> clip_grad_value(w, -1, 1); w.grad.numpy().tolist()
    [-1.0, 0.5]
    """
    from .. import functional as F
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    with no_grad():
        for t in tensors:
            if t.grad is not None:
                t.grad = F.clip(t.grad, lower, upper)
