"""tianyuan.optimizer: optimizers, learning-rate schedulers and gradient clipping
(MegEngine's ``megengine.optimizer``).

>>> import numpy as np, tianyuan as ty
>>> import tianyuan.optimizer as optim
>>> w = ty.Parameter(np.ones(1, "float32")); w.grad = ty.tensor([1.0])
>>> optim.SGD([w], lr=0.5).step().clear_grad() is not None
True
>>> w.numpy().tolist()
[0.5]
"""
from .optimizer import Optimizer, no_grad  # noqa: F401
from .sgd import SGD  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .adagrad import Adagrad, Adadelta  # noqa: F401
from .lamb import LAMB, LAMBFp16  # noqa: F401
from .lr_scheduler import (LRScheduler, MultiStepLR, StepLR, CosineAnnealingLR,  # noqa: F401
                           LinearWarmupLR, WarmUpLR)
from .clip_grad import clip_grad_norm, clip_grad_value  # noqa: F401
