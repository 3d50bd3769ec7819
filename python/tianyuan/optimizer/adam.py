"""Adam and AdamW."""
from .optimizer import Optimizer, _scalar


def _check(lr, betas, weight_decay, eps):
    if lr < 0.0:
        raise ValueError(f"invalid learning rate: {lr}")
    if weight_decay < 0.0:
        raise ValueError(f"invalid weight_decay: {weight_decay}")
    if eps < 0.0:
        raise ValueError(f"invalid eps: {eps}")
    for i, b in enumerate(betas):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"invalid beta parameter at index {i}: {b}")


def _moments_state(opt, group):
    """Adam-style state per parameter: both moments and the step count."""
    for p in group["params"]:
        opt._add_state(p, "exp_avg")
        opt._add_state(p, "exp_avg_sq")
        opt._add_state(p, "step", initializer=0.0)


def _moments_hypers(group):
    """The group's lr, weight_decay, eps and betas as the tensors the updates read."""
    return (*(group.scalar(k) for k in ("lr", "weight_decay", "eps")),
            group.scalar("betas", 0), group.scalar("betas", 1))


class _AdamBase(Optimizer):
    _decoupled = False

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _check(lr, betas, weight_decay, eps)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=tuple(betas),
                                      eps=eps))

    def _create_state(self, group):
        _moments_state(self, group)

    def _updates(self, group):
        wd = group["weight_decay"]
        _lr, _wd, _eps, _b0, _b1 = _moments_hypers(group)
        c1 = _scalar(1.0)
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if wd != 0.0 and not self._decoupled:
                g = g + p * _wd
            st = self._state[p]
            step, m, v = st["step"], st["exp_avg"], st["exp_avg_sq"]
            step._assign(step + c1)
            m._assign(m * _b0 + g * (c1 - _b0))
            v._assign(v * _b1 + (c1 - _b1) * (g * g))
            delta = (m / (c1 - _b0 ** step)) / ((v / (c1 - _b1 ** step)) ** 0.5 + _eps)
            if wd != 0.0 and self._decoupled:
                delta = delta + p * _wd
            p._assign(p - _lr * delta)


class Adam(_AdamBase):
    """Adam (Kingma & Ba) with L2 weight decay added to the gradient::

        g = grad + weight_decay * p;  t += 1
        m = b0 * m + (1 - b0) * g;    v = b1 * v + (1 - b1) * g * g
        p = p - lr * (m / (1 - b0**t)) / (sqrt(v / (1 - b1**t)) + eps)

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import Adam
    >>> w = ty.Parameter(np.zeros(1, dtype="float32")); w.grad = ty.tensor([2.0])
    >>> _ = Adam([w], lr=0.1).step()
    >>> [round(float(v), 4) for v in w.numpy()]
    [-0.1]
    """


class AdamW(_AdamBase):
    """Adam with decoupled weight decay (Loshchilov & Hutter): the update is
    ``p -= lr * (adam_delta + weight_decay * p)``; weight_decay defaults to 0.01.

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import AdamW
    >>> w = ty.Parameter(np.ones(1, dtype="float32")); w.grad = ty.tensor([0.0])
    >>> _ = AdamW([w], lr=0.1, weight_decay=0.5).step()
    >>> [round(float(v), 4) for v in w.numpy()]
    [0.95]
    """
    _decoupled = True

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)
