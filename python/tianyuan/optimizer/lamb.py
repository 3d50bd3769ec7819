"""LAMB."""
from .adam import _check, _moments_hypers, _moments_state
from .optimizer import Optimizer, _scalar


class LAMB(Optimizer):
    """LAMB (You et al. 2019), MegEngine's variant::

        t += 1;  m = b0 * m + (1 - b0) * g;  v = b1 * v + (1 - b1) * g * g
        m_hat, v_hat = m / (1 - b0**t), v / (1 - b1**t)      (if bias_correction)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * p
        r = ||p|| / ||u|| if both > 0 else 1   (only if weight_decay != 0 or always_adapt)
        p = p - lr * r * u

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import LAMB
    >>> w = ty.Parameter(np.ones(2, dtype="float32")); w.grad = ty.tensor([1.0, 1.0])
    >>> _ = LAMB([w], lr=0.1).step()
    >>> [round(float(v), 4) for v in w.numpy()]
    [0.9, 0.9]
    """

    def __init__(self, params, lr, betas=(0.9, 0.999), eps=1e-8, bias_correction=True,
                 weight_decay=0.0, always_adapt=False):
        _check(lr, betas, weight_decay, eps)
        self.bias_correction = bias_correction
        self.always_adapt = always_adapt
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, betas=tuple(betas),
                                      eps=eps))

    def _create_state(self, group):
        _moments_state(self, group)

    def _updates(self, group):
        for p in group["params"]:
            if p.grad is not None:
                p._assign(self._lamb_step(group, p, p.grad, self._state[p]))

    def _lamb_step(self, group, p, g, st):
        """The updated value of p (the formula above) after advancing st's moments."""
        from .. import functional as F
        wd = group["weight_decay"]
        _lr, _wd, _eps, _b0, _b1 = _moments_hypers(group)
        c1, c0 = _scalar(1.0), _scalar(0.0)
        step, m, v = st["step"], st["exp_avg"], st["exp_avg_sq"]
        step._assign(step + c1)
        m._assign(m * _b0 + (c1 - _b0) * g)
        v._assign(v * _b1 + (c1 - _b1) * (g * g))
        mh, vh = m, v
        if self.bias_correction:
            mh = m / (c1 - _b0 ** step)
            vh = v / (c1 - _b1 ** step)
        u = mh / (vh ** 0.5 + _eps)
        if wd != 0.0:
            u = u + p * _wd
        if wd != 0.0 or self.always_adapt:
            wn = F.sqrt(F.sum(p * p))
            un = F.sqrt(F.sum(u * u))
            ok = F.logical_and(wn > c0, un > c0)
            ratio = F.where(ok, wn / F.where(ok, un, c1), c1)
            u = u * ratio
        return p - _lr * u


class LAMBFp16(LAMB):
    """LAMB for half-precision parameters (MegEngine's ``LAMBFp16``): the moments and a
    float32 master copy of each parameter (state ``param_fp32``) are updated in float32 with
    the gradient cast to float32; the parameter then receives the master copy in its own dtype,
    so small updates accumulate instead of rounding away in float16.

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import LAMBFp16
    >>> w = ty.Parameter(np.ones(2, dtype="float16")); w.grad = ty.tensor([1.0, 1.0], dtype="float16")
    >>> _ = LAMBFp16([w], lr=0.1).step()
    >>> w.dtype, [round(float(v), 3) for v in w.numpy()]
    (dtype('float16'), [0.9, 0.9])
    """

    def _create_state(self, group):
        super()._create_state(group)
        for p in group["params"]:
            self._state[p]["param_fp32"] = p.astype("float32")

    def _updates(self, group):
        for p in group["params"]:
            if p.grad is None:
                continue
            st = self._state[p]
            master = st["param_fp32"]
            master._assign(self._lamb_step(group, master, p.grad.astype("float32"), st))
            p._assign(master.astype(p.dtype))
