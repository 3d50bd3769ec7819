"""Activation layers."""
import numpy as np

from .. import functional as F
from ._utils import need, param
from .module import Module


class _Act(Module):
    _fn = None

    def forward(self, x):
        return getattr(F, self._fn)(x)


class ReLU(_Act):
    """max(x, 0).

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.ReLU()(ty.tensor([-1.0, 3.0])).numpy().tolist()
    [0.0, 3.0]
    """
    _fn = "relu"


class Sigmoid(_Act):
    """1 / (1 + exp(-x)).

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.Sigmoid()(ty.tensor([0.0])).numpy().tolist()
    [0.5]
    """
    _fn = "sigmoid"


class SiLU(_Act):
    """x * sigmoid(x).

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.SiLU()(ty.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    _fn = "silu"


class GELU(_Act):
    """x * Phi(x) (exact, erf-based).

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.GELU()(ty.tensor([0.0])).numpy().tolist()
    [0.0]
    """
    _fn = "gelu"


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.LeakyReLU(0.5)(ty.tensor([-2.0, 1.0])).numpy().tolist()
    [-1.0, 1.0]
    """

    def __init__(self, negative_slope=0.01, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def _module_info_string(self):
        return f"negative_slope={self.negative_slope}"


class PReLU(Module):
    """max(x, 0) + weight * min(x, 0) with a learnt weight: shape (1,) when num_parameters
    is 1, else (1, num_parameters, 1, 1) (one per channel of NCHW), filled with ``init``.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.PReLU()(ty.tensor([-4.0, 2.0])).numpy().tolist()
    [-1.0, 2.0]
    """

    def __init__(self, num_parameters=1, init=0.25, **kwargs):
        super().__init__(**kwargs)
        self.num_parameters = num_parameters
        if num_parameters > 1:
            self.weight = param(np.full((1, num_parameters, 1, 1), init))
        else:
            self.weight = param(np.full((1,), init))

    def forward(self, x):
        return F.maximum(x, 0.0) + self.weight * F.minimum(x, 0.0)

    def _module_info_string(self):
        return f"num_parameters={self.num_parameters}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``axis`` (None: MegEngine's default, axis 0 for 0/1/3-D
    inputs, else 1).

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.Softmax(axis=-1)(ty.tensor([[0.0, 0.0]])).numpy().tolist()
    [[0.5, 0.5]]
    """

    def __init__(self, axis=None, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def forward(self, x):
        return need("softmax", "Softmax")(x, self.axis)

    def _module_info_string(self):
        return f"axis={self.axis}"
