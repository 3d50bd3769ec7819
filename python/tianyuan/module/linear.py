"""Linear and Identity."""
import numpy as np

from . import init
from ._utils import linear, param_filled
from .module import Module


class Linear(Module):
    """y = x @ weight.T + bias, with weight (out_features, in_features) and bias
    (out_features,); weight ~ N(0, 1/in_features), bias = 0 (MegEngine's defaults).

    >>> import numpy as np, tianyuan.module as M
    >>> m = M.Linear(4, 3)
    >>> m.weight.shape, m.bias.shape
    ((3, 4), (3,))
    """

    def __init__(self, in_features, out_features, bias=True, compute_mode="default", **kwargs):
        super().__init__(**kwargs)
        self.in_features = in_features
        self.out_features = out_features
        self.compute_mode = compute_mode
        self.weight = param_filled(self, (out_features, in_features), 0.0)
        self.bias = param_filled(self, (out_features,), 0.0) if bias else None
        self.reset_parameters()

    def _get_fanin(self):
        return self.in_features

    def reset_parameters(self):
        init.normal_(self.weight, 0.0, float(np.sqrt(1.0 / self._get_fanin())))
        if self.bias is not None:
            init.zeros_(self.bias)

    def _calc_linear(self, x, weight, bias):
        return linear(x, weight, bias)

    def forward(self, x):
        return self._calc_linear(x, self.weight, self.bias)

    def _module_info_string(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class LinearRelu(Linear):
    """``relu(linear(x))`` with Linear's parameters (MegEngine's float fused module)."""

    def forward(self, x):
        from .. import functional as F
        return F.relu(self._calc_linear(x, self.weight, self.bias))


class Identity(Module):
    """Returns its input unchanged.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.Identity()(ty.tensor([1.0])).numpy().tolist()
    [1.0]
    """

    def forward(self, x):
        return x
