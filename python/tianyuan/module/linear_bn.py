"""Float fused Linear + BatchNorm1d (+ ReLU) (MegEngine's ``LinearBn1d`` family).

Submodules ``linear`` and ``bn``. MegEngine's class also owns a top-level ``bias`` Parameter
(zeros, shape (out_features,)) that its forward never reads; it is kept here, equally unused,
so that MegEngine state_dicts of these modules load with ``strict=True``."""
import numpy as np

from .. import functional as F
from ..tensor import Parameter
from .batchnorm import BatchNorm1d
from .linear import Linear
from .module import Module


class _LinearBnActivation1d(Module):
    def __init__(self, in_features, out_features, bias=True, compute_mode="default", eps=1e-5,
                 momentum=0.9, affine=True, track_running_stats=True, **kwargs):
        super().__init__(**kwargs)
        self.in_features = in_features
        self.out_features = out_features
        self.bias = Parameter(np.zeros((out_features,), np.float32)) if bias else None
        self.linear = Linear(in_features, out_features, bias, compute_mode)
        self.bn = BatchNorm1d(out_features, eps, momentum, affine, track_running_stats)


class LinearBn1d(_LinearBnActivation1d):
    """``bn(linear(x))`` over (N, in_features)."""

    def forward(self, inp):
        return self.bn(self.linear(inp))


class LinearBnRelu1d(_LinearBnActivation1d):
    """``relu(bn(linear(x)))``."""

    def forward(self, inp):
        return F.relu(self.bn(self.linear(inp)))
