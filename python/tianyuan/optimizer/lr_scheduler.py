"""Learning-rate schedulers (MegEngine's ``LRScheduler`` family)."""
import math
from bisect import bisect_right

from .optimizer import Optimizer

__all__ = ["LRScheduler", "MultiStepLR", "StepLR", "CosineAnnealingLR", "LinearWarmupLR",
           "WarmUpLR"]


class LRScheduler:
    """Base class: ``step(epoch=None)`` advances ``current_epoch`` and sets each group's
    ``lr`` to ``get_lr()``. The constructor takes the first step (epoch 0) and records each
    group's ``initial_lr``; resuming with ``current_epoch >= 0`` needs ``initial_lr`` set.

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD, MultiStepLR
    >>> opt = SGD([ty.Parameter(np.zeros(1, "float32"))], lr=1.0)
    >>> s = MultiStepLR(opt, [2])
    >>> [round(opt.param_groups[0]["lr"], 3) for _ in range(3) if s.step() is None]
    [1.0, 0.1, 0.1]
    """

    def __init__(self, optimizer, current_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError("a learning-rate scheduler needs an Optimizer")
        self.optimizer = optimizer
        self.current_epoch = current_epoch
        if current_epoch == -1:
            for g in optimizer.param_groups:
                g.setdefault("initial_lr", g["lr"])
        else:
            for i, g in enumerate(optimizer.param_groups):
                if "initial_lr" not in g:
                    raise KeyError(f"param 'initial_lr' is not specified in param_groups[{i}] "
                                   f"when resuming an optimizer")
        self.base_lrs = [g["initial_lr"] for g in optimizer.param_groups]
        self.step()

    def state_dict(self):
        """Everything but the optimizer."""
        return {k: v for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict):
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "optimizer"})

    def get_lr(self):
        raise NotImplementedError

    def step(self, epoch=None):
        self.current_epoch = self.current_epoch + 1 if epoch is None else epoch
        for g, lr in zip(self.optimizer.param_groups, self.get_lr()):
            g["lr"] = lr


class MultiStepLR(LRScheduler):
    """lr = base_lr * gamma ** (number of milestones <= epoch).

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD, MultiStepLR
    >>> opt = SGD([ty.Parameter(np.zeros(1, "float32"))], lr=1.0)
    >>> _ = MultiStepLR(opt, [1, 3], gamma=0.5, current_epoch=-1)
    >>> opt.param_groups[0]["lr"]
    1.0
    """

    def __init__(self, optimizer, milestones, gamma=0.1, current_epoch=-1):
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {milestones}")
        self.milestones = list(milestones)
        self.gamma = gamma
        super().__init__(optimizer, current_epoch)

    def get_lr(self):
        k = bisect_right(self.milestones, self.current_epoch)
        return [b * self.gamma ** k for b in self.base_lrs]


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (epoch // step_size).

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD, StepLR
    >>> opt = SGD([ty.Parameter(np.zeros(1, "float32"))], lr=1.0)
    >>> s = StepLR(opt, step_size=2, gamma=0.5); s.step(); s.step()
    >>> opt.param_groups[0]["lr"]
    0.5
    """

    def __init__(self, optimizer, step_size, gamma=0.1, current_epoch=-1):
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer, current_epoch)

    def get_lr(self):
        return [b * self.gamma ** (self.current_epoch // self.step_size) for b in self.base_lrs]


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2 (the closed
    form; it keeps following the cosine beyond T_max).

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD, CosineAnnealingLR
    >>> opt = SGD([ty.Parameter(np.zeros(1, "float32"))], lr=1.0)
    >>> s = CosineAnnealingLR(opt, T_max=2); s.step()
    >>> round(opt.param_groups[0]["lr"], 6)
    0.5
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, current_epoch=-1):
        if T_max <= 0:
            raise ValueError(f"T_max must be positive, got {T_max}")
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer, current_epoch)

    def get_lr(self):
        c = (1 + math.cos(math.pi * self.current_epoch / self.T_max)) / 2
        return [self.eta_min + (b - self.eta_min) * c for b in self.base_lrs]


class LinearWarmupLR(LRScheduler):
    """Linear warm-up (not in MegEngine): for epoch e,
    lr = base_lr * (start_factor + (1 - start_factor) * min(e, warmup_steps) / warmup_steps),
    i.e. it rises from start_factor * base_lr at e=0 to base_lr at e=warmup_steps and stays.

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD, LinearWarmupLR
    >>> opt = SGD([ty.Parameter(np.zeros(1, "float32"))], lr=1.0)
    >>> s = LinearWarmupLR(opt, warmup_steps=4); s.step()
    >>> opt.param_groups[0]["lr"]
    0.25
    """

    def __init__(self, optimizer, warmup_steps, start_factor=0.0, current_epoch=-1):
        if warmup_steps <= 0:
            raise ValueError(f"warmup_steps must be positive, got {warmup_steps}")
        if not 0.0 <= start_factor <= 1.0:
            raise ValueError(f"start_factor must be in [0, 1], got {start_factor}")
        self.warmup_steps = warmup_steps
        self.start_factor = start_factor
        super().__init__(optimizer, current_epoch)

    def get_lr(self):
        e = min(max(self.current_epoch, 0), self.warmup_steps)
        f = self.start_factor + (1 - self.start_factor) * e / self.warmup_steps
        return [b * f for b in self.base_lrs]


WarmUpLR = LinearWarmupLR
