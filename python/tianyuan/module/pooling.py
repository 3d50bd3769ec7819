"""Pooling layers."""
from ._utils import need
from .module import Module


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def _module_info_string(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """2-D max pooling over (N, C, H, W); stride defaults to kernel_size.

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.MaxPool2d(2)
    >>> m.kernel_size, m.stride
    (2, 2)
    """

    def forward(self, x):
        return need("max_pool2d", "MaxPool2d")(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """2-D average pooling; mode "average_count_exclude_padding" (default) or "average".

    >>> import tianyuan.module as M
    >>> M.AvgPool2d(3, 1, 1).padding
    1
    """

    def __init__(self, kernel_size, stride=None, padding=0,
                 mode="average_count_exclude_padding", **kwargs):
        super().__init__(kernel_size, stride, padding, **kwargs)
        self.mode = mode

    def forward(self, x):
        return need("avg_pool2d", "AvgPool2d")(x, self.kernel_size, self.stride, self.padding,
                                               self.mode)


class AdaptiveMaxPool2d(Module):
    """Max pooling to a fixed output size ``oshp`` (int or (oh, ow)).

    >>> import tianyuan.module as M
    >>> M.AdaptiveMaxPool2d((2, 2)).oshp
    (2, 2)
    """

    def __init__(self, oshp, **kwargs):
        super().__init__(**kwargs)
        self.oshp = oshp

    def forward(self, x):
        return need("adaptive_max_pool2d", "AdaptiveMaxPool2d")(x, self.oshp)


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size ``oshp`` (int or (oh, ow)).

    >>> import tianyuan.module as M
    >>> M.AdaptiveAvgPool2d(1).oshp
    1
    """

    def __init__(self, oshp, **kwargs):
        super().__init__(**kwargs)
        self.oshp = oshp

    def forward(self, x):
        return need("adaptive_avg_pool2d", "AdaptiveAvgPool2d")(x, self.oshp)
