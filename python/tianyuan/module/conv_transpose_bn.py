"""Float fused ConvTranspose2d + BatchNorm2d (+ ReLU) (MegEngine's ``ConvTransposeBn2d``).

Submodules ``conv_transpose2d`` and ``bn`` (MegEngine's state_dict keys)."""
from .. import functional as F
from .batchnorm import BatchNorm2d
from .conv import ConvTranspose2d
from .module import Module


class _ConvTransposeBnActivation2d(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, groups=1, bias=True,
                 conv_mode="cross_correlation", compute_mode="default", eps=1e-5, momentum=0.9,
                 affine=True, track_running_stats=True, **kwargs):
        super().__init__(**kwargs)
        self.conv_transpose2d = ConvTranspose2d(in_channels, out_channels, kernel_size, stride,
                                                padding, output_padding, dilation, groups,
                                                bias, conv_mode, compute_mode)
        self.bn = BatchNorm2d(out_channels, eps, momentum, affine, track_running_stats)


class ConvTransposeBn2d(_ConvTransposeBnActivation2d):
    """``bn(conv_transpose2d(x))``."""

    def forward(self, inp):
        return self.bn(self.conv_transpose2d(inp))


class ConvTransposeBnRelu2d(_ConvTransposeBnActivation2d):
    """``relu(bn(conv_transpose2d(x)))``."""

    def forward(self, inp):
        return F.relu(self.bn(self.conv_transpose2d(inp)))
