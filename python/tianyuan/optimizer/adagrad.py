"""Adagrad and Adadelta."""
from .optimizer import Optimizer, _scalar


class Adagrad(Optimizer):
    """Adagrad (Duchi et al.)::

        t += 1;  g = grad + weight_decay * p;  s = s + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / sqrt(s + eps)

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import Adagrad
    >>> w = ty.Parameter(np.zeros(1, dtype="float32")); w.grad = ty.tensor([3.0])
    >>> _ = Adagrad([w], lr=0.1).step()
    >>> [round(float(v), 4) for v in w.numpy()]
    [-0.1]
    """

    def __init__(self, params, lr=1e-2, lr_decay=0.0, eps=1e-10, weight_decay=0.0):
        if lr < 0.0 or lr_decay < 0.0 or eps < 0.0 or weight_decay < 0.0:
            raise ValueError("Adagrad: lr, lr_decay, eps and weight_decay must be >= 0")
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      weight_decay=weight_decay))

    def _create_state(self, group):
        for p in group["params"]:
            self._add_state(p, "square_avg")
            self._add_state(p, "step", initializer=0.0)

    def _updates(self, group):
        wd = group["weight_decay"]
        _lr, _decay, _wd, _eps = (group.scalar(k) for k in ("lr", "lr_decay", "weight_decay",
                                                             "eps"))
        c1 = _scalar(1.0)
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self._state[p]
            step, s = st["step"], st["square_avg"]
            step._assign(step + c1)
            g = p.grad
            if wd != 0.0:
                g = g + p * _wd
            s._assign(s + g * g)
            delta = g / (s + _eps) ** 0.5
            clr = _lr / (c1 + (step - c1) * _decay)
            p._assign(p - clr * delta)


class Adadelta(Optimizer):
    """Adadelta (Zeiler)::

        g = grad + weight_decay * p
        s = rho * s + (1 - rho) * g * g
        delta = sqrt(a + eps) / sqrt(s + eps) * g
        p = p - lr * delta;  a = rho * a + (1 - rho) * delta * delta

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import Adadelta
    >>> w = ty.Parameter(np.zeros(1, dtype="float32")); w.grad = ty.tensor([1.0])
    >>> _ = Adadelta([w]).step()
    >>> bool(w.numpy()[0] < 0)
    True
    """

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        if lr < 0.0 or eps < 0.0 or weight_decay < 0.0 or not 0.0 <= rho <= 1.0:
            raise ValueError("Adadelta: lr, eps, weight_decay must be >= 0 and rho in [0, 1]")
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def _create_state(self, group):
        for p in group["params"]:
            self._add_state(p, "square_avg")
            self._add_state(p, "acc_delta")
            self._add_state(p, "step", initializer=0.0)

    def _updates(self, group):
        wd = group["weight_decay"]
        _lr, _rho, _eps, _wd = (group.scalar(k) for k in ("lr", "rho", "eps", "weight_decay"))
        c1 = _scalar(1.0)
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self._state[p]
            step, s, a = st["step"], st["square_avg"], st["acc_delta"]
            step._assign(step + c1)
            g = p.grad
            if wd != 0.0:
                g = g + p * _wd
            s._assign(_rho * s + (c1 - _rho) * (g * g))
            delta = (a + _eps) ** 0.5 / (s + _eps) ** 0.5 * g
            p._assign(p - _lr * delta)
            a._assign(_rho * a + (c1 - _rho) * (delta * delta))
