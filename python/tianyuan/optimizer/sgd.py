"""SGD."""
from .. import _C
from .optimizer import Optimizer


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight
    decay (MegEngine's update)::

        g = grad + weight_decay * p
        v = momentum * v + g                      (momentum != 0)
        g = g + momentum * v if nesterov else v
        p = p - lr * g

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD
    >>> w = ty.Parameter(np.ones(2, dtype="float32")); w.grad = ty.tensor([1.0, 2.0])
    >>> _ = SGD([w], lr=0.1, momentum=0.9).step()
    >>> [round(float(v), 4) for v in w.numpy()]
    [0.9, 0.8]
    """

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        if lr < 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"invalid momentum: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        if nesterov and momentum <= 0.0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.nesterov = nesterov
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))

    def _create_state(self, group):
        if group["momentum"] != 0.0:
            for p in group["params"]:
                self._add_state(p, "momentum_buffer")

    def _updates(self, group):
        wd, mom = group["weight_decay"], group["momentum"]
        _lr, _wd, _mom = (group.scalar(k) for k in ("lr", "weight_decay", "momentum"))
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            buf = None
            if mom != 0.0:
                st = self._state.get(p)
                if st is None or "momentum_buffer" not in st:  # momentum set after creation
                    self._add_state(p, "momentum_buffer")
                buf = self._state[p]["momentum_buffer"]
            # one fused pass computing the same float32 ops in the same order (same bits);
            # False where it does not apply (tracing, other dtypes, non-contiguous, ...)
            if _C.sgd_fused(p, g, buf, _lr, _wd if wd != 0.0 else None, _mom, self.nesterov):
                continue
            if wd != 0.0:
                g = g + p * _wd
            if buf is not None:
                v = buf
                v._assign(v * _mom + g)
                g = g + v * _mom if self.nesterov else v
            p._assign(p - _lr * g)
