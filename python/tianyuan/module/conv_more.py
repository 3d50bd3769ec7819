"""Conv3d, ConvTranspose3d, LocalConv2d, DeformableConv2d and RegionRestrictedConv with
MegEngine's parameter layouts (over the compositions in tianyuan.functional.window)."""
from .. import functional as F
from .._args import to_int
from ._utils import pair
from .conv import _ConvNd, Conv2d


def _triple(v, what, op):
    if isinstance(v, (tuple, list)):
        if len(v) != 3:
            raise ValueError(f"{op}: {what} must be an int or 3 ints, got {v!r}")
        return tuple(to_int(x, what, op) for x in v)
    return (to_int(v, what, op),) * 3


class Conv3d(_ConvNd):
    """3-D convolution over (N, C, D, H, W). weight (out, in, kd, kh, kw), or
    (groups, out/g, in/g, kd, kh, kw) when groups > 1; bias (1, out, 1, 1, 1).

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.Conv3d(3, 1, 3)
    >>> m(ty.tensor(np.zeros((2, 3, 4, 4, 4), "float32"))).shape
    (2, 1, 2, 2, 2)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, conv_mode="cross_correlation", **kwargs):
        self.conv_mode = conv_mode
        op = "Conv3d"
        super().__init__(in_channels, out_channels, _triple(kernel_size, "kernel_size", op),
                         _triple(stride, "stride", op), _triple(padding, "padding", op), 0,
                         _triple(dilation, "dilation", op), groups, bias, **kwargs)

    def _infer_weight_shape(self):
        g, i, o = self.groups, self.in_channels, self.out_channels
        k = self.kernel_size
        return (o, i) + k if g == 1 else (g, o // g, i // g) + k

    def _infer_bias_shape(self):
        return (1, self.out_channels, 1, 1, 1)

    def calc_conv(self, inp, weight, bias):
        return F.conv3d(inp, weight, bias, self.stride, self.padding, self.dilation,
                        self.groups, self.conv_mode)

    def forward(self, inp):
        return self.calc_conv(inp, self.weight, self.bias)


class ConvTranspose3d(_ConvNd):
    """Transposed 3-D convolution. weight (in, out, kd, kh, kw), or
    (groups, in/g, out/g, kd, kh, kw); bias (1, out, 1, 1, 1).

    >>> import tianyuan.module as M
    >>> M.ConvTranspose3d(4, 2, 3).weight.shape
    (4, 2, 3, 3, 3)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, groups=1, bias=True, **kwargs):
        op = "ConvTranspose3d"
        super().__init__(in_channels, out_channels, _triple(kernel_size, "kernel_size", op),
                         _triple(stride, "stride", op), _triple(padding, "padding", op),
                         _triple(output_padding, "output_padding", op),
                         _triple(dilation, "dilation", op), groups, bias, **kwargs)

    def _get_fanin(self):
        kd, kh, kw = self.kernel_size
        return kd * kh * kw * self.in_channels

    def _infer_weight_shape(self):
        g, i, o = self.groups, self.in_channels, self.out_channels
        k = self.kernel_size
        return (i, o) + k if g == 1 else (g, i // g, o // g) + k

    def _infer_bias_shape(self):
        return (1, self.out_channels, 1, 1, 1)

    def forward(self, inp):
        return F.conv_transpose3d(inp, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding, self.dilation, self.groups)


class LocalConv2d(Conv2d):
    """A locally connected layer (untied kernels) for inputs of a fixed (input_height,
    input_width): weight (groups, OH, OW, in/g, kh, kw, out/g), no bias.

    >>> import tianyuan.module as M
    >>> M.LocalConv2d(2, 4, 5, 5, 3).weight.shape
    (1, 3, 3, 2, 3, 3, 4)
    """

    def __init__(self, in_channels, out_channels, input_height, input_width, kernel_size,
                 stride=1, padding=0, dilation=1, groups=1, conv_mode="cross_correlation",
                 **kwargs):
        self.input_height = to_int(input_height, "input_height", "LocalConv2d")
        self.input_width = to_int(input_width, "input_width", "LocalConv2d")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias=False, conv_mode=conv_mode, **kwargs)

    def _infer_weight_shape(self):
        g = self.groups
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        dh, dw = self.dilation
        oh = (self.input_height + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        ow = (self.input_width + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if oh <= 0 or ow <= 0:
            raise ValueError(f"LocalConv2d: the kernel does not fit a {self.input_height}x"
                             f"{self.input_width} input")
        return (g, oh, ow, self.in_channels // g, kh, kw, self.out_channels // g)

    def forward(self, inp):
        return F.local_conv2d(inp, self.weight, None, self.stride, self.padding, self.dilation,
                              self.conv_mode)


class DeformableConv2d(Conv2d):
    """Deformable convolution (v2): ``forward(inp, offset, mask)``; Conv2d's parameters.

    >>> import tianyuan.module as M
    >>> M.DeformableConv2d(2, 4, 3).weight.shape
    (4, 2, 3, 3)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, conv_mode="cross_correlation", compute_mode="default",
                 **kwargs):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, conv_mode, compute_mode, **kwargs)

    def calc_conv(self, inp, weight, offset, mask, bias):
        return F.deformable_conv2d(inp, weight, offset, mask, bias, self.stride, self.padding,
                                   self.dilation, self.groups, self.conv_mode,
                                   self.compute_mode)

    def forward(self, inp, offset, mask):
        return self.calc_conv(inp, self.weight, offset, mask, self.bias)


class RegionRestrictedConv(_ConvNd):
    """Region-restricted grouped convolution: ``forward(inp, rin, rout)``; weight
    (groups, out/g, in/g, kh, kw), bias (1, out, 1, 1).

    >>> import tianyuan.module as M
    >>> M.RegionRestrictedConv(2, 2, 2, groups=2).weight.shape
    (2, 1, 1, 2, 2)
    """

    def __init__(self, in_channels, out_channels, kernel_size, groups=1, bias=True, stride=1,
                 padding=0, dilation=1, conv_mode="cross_correlation", compute_mode="default",
                 padding_mode="zeros", **kwargs):
        if padding_mode != "zeros":
            raise ValueError(f"RegionRestrictedConv: only padding_mode='zeros' is supported, "
                             f"got {padding_mode!r}")
        self.conv_mode = conv_mode
        self.compute_mode = compute_mode
        self.padding_mode = padding_mode
        op = "RegionRestrictedConv"
        super().__init__(in_channels, out_channels, pair(kernel_size, "kernel_size", op),
                         pair(stride, "stride", op), pair(padding, "padding", op), 0,
                         pair(dilation, "dilation", op), groups, bias, **kwargs)

    def _infer_weight_shape(self):
        g, i, o = self.groups, self.in_channels, self.out_channels
        return (g, o // g, i // g) + tuple(self.kernel_size)

    def _infer_bias_shape(self):
        return (1, self.out_channels, 1, 1)

    def calc_conv(self, inp, weight, rin, rout, bias):
        return F.region_restricted_conv(inp, weight, rin, rout, bias, self.stride, self.padding,
                                        self.dilation, self.groups, self.conv_mode,
                                        self.compute_mode)

    def forward(self, inp, rin, rout):
        return self.calc_conv(inp, self.weight, rin, rout, self.bias)
