"""BatchMatMulActivation: a batch of independent linear maps (MegEngine's module)."""
import numpy as np

from .. import functional as F
from . import init
from ._utils import param_filled
from .module import Module

_MODES = ("IDENTITY", "RELU")


class BatchMatMulActivation(Module):
    """``act(weight @ x + bias)`` with weight (batch, out_features, in_features), x (batch,
    in_features, n), no transpose anywhere; bias (out_features,) is added per output feature
    (along dim 1 of the (batch, out_features, n) result); ``nonlinear_mode`` is "IDENTITY" or
    "RELU" (any case). weight ~ N(0, 1/in_features), bias = 0.

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.BatchMatMulActivation(2, 3, 4)
    >>> m(ty.tensor(np.ones((2, 3, 5), np.float32))).shape
    (2, 4, 5)
    """

    def __init__(self, batch, in_features, out_features, bias=True, nonlinear_mode="IDENTITY",
                 **kwargs):
        super().__init__(**kwargs)
        mode = str(nonlinear_mode).upper()
        if mode not in _MODES:
            raise ValueError(f"BatchMatMulActivation: nonlinear_mode must be one of {_MODES}, "
                             f"got {nonlinear_mode!r}")
        self.batch = batch
        self.in_features = in_features
        self.out_features = out_features
        self.nonlinear_mode = mode
        self.weight = param_filled(self, (batch, out_features, in_features), 0.0)
        self.bias = param_filled(self, (out_features,), 0.0) if bias else None
        self.reset_parameters()

    def _get_fanin(self):
        return self.in_features

    def reset_parameters(self):
        init.normal_(self.weight, 0.0, float(np.sqrt(1.0 / self._get_fanin())))
        if self.bias is not None:
            init.zeros_(self.bias)

    def _calc_linear(self, x, weight, bias):
        res = F.matmul(weight, x)
        if bias is not None:
            res = res + bias.reshape(1, self.out_features, 1)
        if self.nonlinear_mode == "RELU":
            res = F.relu(res)
        return res

    def forward(self, x):
        return self._calc_linear(x, self.weight, self.bias)

    def _module_info_string(self):
        return (f"batch={self.batch}, in_features={self.in_features}, "
                f"out_features={self.out_features}, bias={self.bias is not None}")
