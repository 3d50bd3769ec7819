"""Float fused Conv2d + BatchNorm2d (+ ReLU) blocks (MegEngine's ``ConvBn2d`` family).

The submodules are ``conv`` and ``bn``, so the state_dict keys are ``conv.weight``,
``conv.bias``, ``bn.weight``, ``bn.bias``, ``bn.running_mean``, ``bn.running_var`` as in
MegEngine. Forward runs the two layers one after the other (no folding: training updates the
BatchNorm statistics exactly as the unfused pair does)."""
from .. import functional as F
from .batchnorm import BatchNorm2d
from .conv import Conv2d
from .module import Module


class _ConvBnActivation2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, conv_mode="cross_correlation", compute_mode="default",
                 padding_mode="zeros", eps=1e-5, momentum=0.9, affine=True,
                 track_running_stats=True, **kwargs):
        super().__init__(**kwargs)
        self.conv = Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                           groups, bias, conv_mode, compute_mode, padding_mode)
        self.bn = BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats)


class ConvBn2d(_ConvBnActivation2d):
    """``bn(conv(x))``.

    >>> import tianyuan.module as M
    >>> sorted(M.ConvBn2d(3, 4, 3).state_dict())[:2]
    ['bn.bias', 'bn.running_mean']
    """

    def forward(self, inp):
        return self.bn(self.conv(inp))


class ConvBnRelu2d(_ConvBnActivation2d):
    """``relu(bn(conv(x)))``."""

    def forward(self, inp):
        return F.relu(self.bn(self.conv(inp)))
