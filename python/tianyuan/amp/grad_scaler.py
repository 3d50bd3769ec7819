"""GradScaler: dynamic loss scaling for float16 training (MegEngine's ``amp.GradScaler``)."""
import numpy as np

from .. import functional as F
from ..tensor import Tensor


def _scalar(v):
    return Tensor(np.array(v, dtype=np.float32))


class GradScaler:
    """Scales the loss before backward so that small float16 gradients do not flush to zero,
    then unscales the gradients before the optimizer step.

    With ``growth_interval > 0`` the scale is dynamic: a backward pass whose gradients hold
    an inf or a NaN skips the step (every gradient of the step becomes zero, so the
    parameters an SGD step updates stay as they were) and multiplies the scale by
    ``backoff_factor``; after ``growth_interval`` finite steps in a row the scale is multiplied
    by ``growth_factor``. ``growth_interval=0`` keeps the scale fixed (no checks).

    The scale, the count of finite steps and the non-finite flag are tensors updated by ops,
    never read back on the host, so a step using the scaler can be ``@trace``-d and replays
    the same decisions as the eager step. Optimizers with state (momentum, Adam's moments)
    still apply their decay on a skipped step, since they see zero gradients.

    Typical use::

        scaler = GradScaler()

        @autocast()
        def train_step(image, label):
            with gm:
                loss = F.nn.cross_entropy(model(image), label)
                scaler.backward(gm, loss)
            opt.step().clear_grad()
            return loss
    """

    def __init__(self, init_scale=2.0 ** 4, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        if not init_scale > 0:
            raise ValueError(f"GradScaler: init_scale must be > 0, got {init_scale}")
        if not growth_factor >= 1 and growth_factor != 0:
            raise ValueError(f"GradScaler: growth_factor must be >= 1, got {growth_factor}")
        if not 0 < backoff_factor <= 1:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1], got "
                             f"{backoff_factor}")
        if int(growth_interval) != growth_interval or growth_interval < 0:
            raise ValueError(f"GradScaler: growth_interval must be an int >= 0, got "
                             f"{growth_interval}")
        self.growth_factor = float(growth_factor)
        self.backoff_factor = float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self._scale = _scalar(init_scale)
        self._growth_tracker = _scalar(0.0)
        self._found = _scalar(0.0)  # 1 when the last unscaled gradients were not finite

    # ---------------------------------------------------------------- host-side views
    @property
    def scale_factor(self):
        """The current scale (a host read: not inside a traced function)."""
        return float(self._scale.item())

    @scale_factor.setter
    def scale_factor(self, v):
        self._scale._assign(_scalar(float(v)))

    @property
    def found_non_finite(self):
        """Whether the last :meth:`unscale` met an inf or NaN (a host read)."""
        return bool(self._found.item() > 0)

    # ---------------------------------------------------------------- the step
    def backward(self, gm, y=None, dy=None, *, unscale_grad=True,
                 update_scale="if_unscale_grad"):
        """``gm.backward`` of the scaled loss (``dy`` defaults to ones, and is multiplied by
        the scale); then, with ``unscale_grad``, :meth:`unscale` of the attached tensors' grads
        and (unless ``update_scale`` is false) :meth:`update`. ``unscale_grad=False`` lets
        gradients of several batches accumulate before one unscale."""
        ys = [] if y is None else (list(y) if isinstance(y, (tuple, list)) else [y])
        if dy is None:
            dys = [F.ones_like(v) * self._scale.astype(v.dtype) for v in ys]
        elif isinstance(dy, (tuple, list)):
            dys = [d * self._scale.astype(d.dtype) for d in dy]
        else:
            dys = [dy * self._scale.astype(dy.dtype)]
        gm.backward(ys, dys)
        if unscale_grad:
            self.unscale(gm.attached_tensors())
            if update_scale:
                self.update()
        return self

    def unscale(self, grad_tensors):
        """Divides the ``.grad`` of every tensor in ``grad_tensors`` by the scale; when any of
        them holds an inf or a NaN (dynamic scaling only), every one becomes zero instead and
        the step is marked as non-finite for :meth:`update`."""
        tensors = [t for t in grad_tensors if t is not None and t.grad is not None]
        if not tensors:
            return self
        inv = 1.0 / self._scale
        if self.growth_interval == 0:
            for t in tensors:
                t.grad = t.grad * inv.astype(t.grad.dtype)
            return self
        bad = None
        for t in tensors:
            g = t.grad
            n = F.sum(F.logical_or(F.isnan(g), F.isinf(g)).astype("float32"))
            bad = n if bad is None else bad + n
        found = bad > 0
        for t in tensors:
            g = t.grad
            t.grad = F.where(found, F.zeros_like(g), g * inv.astype(g.dtype))
        self._found._assign(found.astype("float32"))
        return self

    def update(self, new_scale=None):
        """Sets the scale to ``new_scale``, or (dynamic scaling) backs it off after a
        non-finite step and grows it after ``growth_interval`` finite ones."""
        if self.growth_interval == 0:
            return
        if new_scale is not None:
            self.scale_factor = new_scale
        else:
            found = self._found > 0.5
            tracker = F.where(found, F.zeros_like(self._growth_tracker),
                              self._growth_tracker + 1.0)
            grow = tracker >= float(self.growth_interval)
            grown = F.where(grow, self._scale * self.growth_factor, self._scale)
            self._scale._assign(F.where(found, self._scale * self.backoff_factor, grown))
            self._growth_tracker._assign(F.where(grow, F.zeros_like(tracker), tracker))
        self._found._assign(F.zeros_like(self._found))

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self):
        return {"scale_factor": self.scale_factor, "growth_factor": self.growth_factor,
                "backoff_factor": self.backoff_factor, "growth_interval": self.growth_interval,
                "_growth_tracker": int(self._growth_tracker.item())}

    def load_state_dict(self, state):
        self.scale_factor = state["scale_factor"]
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])
        self._growth_tracker._assign(_scalar(float(state["_growth_tracker"])))


class Xla_GradScaler(GradScaler):
    """MegEngine's GradScaler variant for compiled (XLA) steps, whose state lives in tensors
    so that the compiled graph carries the scaling decisions. Tianyuan's :class:`GradScaler`
    already works that way, under ``@trace`` included; this name is the same class."""
