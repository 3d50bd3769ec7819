"""Convolution layers: Conv1d, Conv2d, ConvTranspose2d (MegEngine parameter layouts)."""
import numpy as np

from . import init
from .._args import to_int
from ._utils import need, pair, param_filled
from .module import Module


class _ConvNd(Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, output_padding,
                 dilation, groups, bias=True, **kwargs):
        super().__init__(**kwargs)
        if in_channels % groups != 0:
            raise ValueError(f"in_channels ({in_channels}) must be divisible by groups "
                             f"({groups})")
        if out_channels % groups != 0:
            raise ValueError(f"out_channels ({out_channels}) must be divisible by groups "
                             f"({groups})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.output_padding = output_padding
        self.dilation = dilation
        self.groups = groups
        self.weight = param_filled(self, self._infer_weight_shape(), 0.0)
        self.bias = param_filled(self, self._infer_bias_shape(), 0.0) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        """weight ~ N(0, 1/fan_in) with fan_in = in_channels * prod(kernel_size), bias = 0."""
        init.normal_(self.weight, 0.0, float(np.sqrt(1.0 / self._get_fanin())))
        if self.bias is not None:
            init.zeros_(self.bias)

    def _get_fanin(self):
        k = self.kernel_size if isinstance(self.kernel_size, tuple) else (self.kernel_size,)
        return int(np.prod(k)) * self.in_channels

    def _module_info_string(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        one = (1,) * len(self.stride) if isinstance(self.stride, tuple) else 1
        zero = (0,) * len(self.padding) if isinstance(self.padding, tuple) else 0
        if self.stride != one:
            s += f", stride={self.stride}"
        if self.padding != zero:
            s += f", padding={self.padding}"
        if self.dilation != one:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


_PAD_MODES = ("zeros", "reflect", "replicate")


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L). weight (out, in, k), or (groups, out/g, in/g, k) when
    groups > 1; bias (1, out, 1).

    >>> import tianyuan.module as M
    >>> M.Conv1d(3, 4, 3).weight.shape
    (4, 3, 3)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, conv_mode="cross_correlation", compute_mode="default",
                 padding_mode="zeros", **kwargs):
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"padding_mode must be one of {_PAD_MODES}, got {padding_mode!r}")
        self.conv_mode = conv_mode
        self.compute_mode = compute_mode
        self.padding_mode = padding_mode
        k, s, p, d = (to_int(v, name, "Conv1d") for v, name in (
            (kernel_size, "kernel_size"), (stride, "stride"), (padding, "padding"),
            (dilation, "dilation")))
        super().__init__(in_channels, out_channels, k, s, p, 0, d, groups, bias, **kwargs)

    def _infer_weight_shape(self):
        g, i, o, k = self.groups, self.in_channels, self.out_channels, self.kernel_size
        return (o, i, k) if g == 1 else (g, o // g, i // g, k)

    def _infer_bias_shape(self):
        return (1, self.out_channels, 1)

    def forward(self, inp):
        conv1d = need("conv1d", "Conv1d")
        pad = self.padding
        if self.padding_mode != "zeros" and pad:
            inp = need("pad", "Conv1d")(inp, ((0, 0), (0, 0), (pad, pad)), self.padding_mode)
            pad = 0
        return conv1d(inp, self.weight, self.bias, self.stride, pad, self.dilation, self.groups,
                      self.conv_mode, self.compute_mode)


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W) (MegEngine's ``Conv2d``).

    weight is (out, in, kh, kw), or (groups, out/g, in/g, kh, kw) when groups > 1; bias is
    (1, out, 1, 1); weight ~ N(0, 1/(in*kh*kw)), bias = 0.

    >>> import tianyuan.module as M
    >>> m = M.Conv2d(3, 8, 3, padding=1)
    >>> m.weight.shape, m.bias.shape
    ((8, 3, 3, 3), (1, 8, 1, 1))
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, conv_mode="cross_correlation", compute_mode="default",
                 padding_mode="zeros", **kwargs):
        if padding_mode not in _PAD_MODES:
            raise ValueError(f"padding_mode must be one of {_PAD_MODES}, got {padding_mode!r}")
        self.conv_mode = conv_mode
        self.compute_mode = compute_mode
        self.padding_mode = padding_mode
        super().__init__(in_channels, out_channels, pair(kernel_size, "kernel_size", "Conv2d"),
                         pair(stride, "stride", "Conv2d"), pair(padding, "padding", "Conv2d"), 0,
                         pair(dilation, "dilation", "Conv2d"), groups, bias, **kwargs)

    def _infer_weight_shape(self):
        g, i, o = self.groups, self.in_channels, self.out_channels
        kh, kw = self.kernel_size
        return (o, i, kh, kw) if g == 1 else (g, o // g, i // g, kh, kw)

    def _infer_bias_shape(self):
        return (1, self.out_channels, 1, 1)

    def calc_conv(self, inp, weight, bias):
        conv2d = need("conv2d", "Conv2d")
        pad = self.padding
        if self.padding_mode != "zeros" and any(pad):
            width = ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1]))
            inp = need("pad", "Conv2d")(inp, width, self.padding_mode)
            pad = (0, 0)
        return conv2d(inp, weight, bias, self.stride, pad, self.dilation, self.groups,
                      self.conv_mode, self.compute_mode)

    def forward(self, inp):
        return self.calc_conv(inp, self.weight, self.bias)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution. weight (in, out, kh, kw), or (groups, in/g, out/g, kh, kw);
    bias (1, out, 1, 1).

    >>> import tianyuan.module as M
    >>> M.ConvTranspose2d(4, 2, 3).weight.shape
    (4, 2, 3, 3)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, groups=1, bias=True,
                 conv_mode="cross_correlation", compute_mode="default", **kwargs):
        self.conv_mode = conv_mode
        self.compute_mode = compute_mode
        super().__init__(in_channels, out_channels, pair(kernel_size), pair(stride),
                         pair(padding), pair(output_padding), pair(dilation), groups, bias,
                         **kwargs)

    def _infer_weight_shape(self):
        g, i, o = self.groups, self.in_channels, self.out_channels
        kh, kw = self.kernel_size
        return (i, o, kh, kw) if g == 1 else (g, i // g, o // g, kh, kw)

    def _infer_bias_shape(self):
        return (1, self.out_channels, 1, 1)

    def forward(self, inp):
        f = need("conv_transpose2d", "ConvTranspose2d")
        return f(inp, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                 self.dilation, self.groups, self.conv_mode, self.compute_mode)


class ConvRelu2d(Conv2d):
    """``relu(conv2d(x))`` with Conv2d's parameters (MegEngine's float fused module)."""

    def forward(self, inp):
        return need("relu", "ConvRelu2d")(self.calc_conv(inp, self.weight, self.bias))


class ConvTransposeRelu2d(ConvTranspose2d):
    """``relu(conv_transpose2d(x))`` with ConvTranspose2d's parameters."""

    def forward(self, inp):
        return need("relu", "ConvTransposeRelu2d")(super().forward(inp))
