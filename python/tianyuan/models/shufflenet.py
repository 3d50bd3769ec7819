"""ShuffleNet V2 (Ma et al. 2018): channel split, a depthwise-separable branch, channel
shuffle."""
from .. import functional as F
from .. import module as M


def _conv_bn(cin, cout, kernel, stride=1, groups=1, relu=True):
    """Conv (no bias) + BatchNorm [+ ReLU] as Sequential items 0, 1 [, 2]."""
    mods = [M.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups,
                     bias=False), M.BatchNorm2d(cout)]
    return mods + [M.ReLU()] if relu else mods


def channel_shuffle(x, groups):
    """(N, g*c, H, W) -> (N, c*g, H, W): channel i*c + j moves to j*g + i."""
    n, c, h, w = x.shape
    x = x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4)
    return x.reshape(n, c, h, w)


class ShuffleV2Block(M.Module):
    """Stride 1: half the channels pass through, the other half go through branch2.
    Stride 2: both branches see all channels and halve the resolution."""

    def __init__(self, in_channels, out_channels, stride):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV2Block: stride must be 1 or 2, got {stride}")
        branch = out_channels // 2
        if stride == 1 and in_channels != 2 * branch:
            raise ValueError("ShuffleV2Block: with stride 1, in_channels must equal "
                             f"out_channels rounded to even ({in_channels} vs {2 * branch})")
        self.stride = stride
        self.branch1 = M.Sequential()
        if stride > 1:
            self.branch1 = M.Sequential(*_conv_bn(in_channels, in_channels, 3, stride,
                                                  in_channels, relu=False),
                                        *_conv_bn(in_channels, branch, 1))
        self.branch2 = M.Sequential(
            *_conv_bn(in_channels if stride > 1 else branch, branch, 1),
            *_conv_bn(branch, branch, 3, stride, branch, relu=False),
            *_conv_bn(branch, branch, 1))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = F.split(x, 2, axis=1)
            out = F.concat([x1, self.branch2(x2)], axis=1)
        else:
            out = F.concat([self.branch1(x), self.branch2(x)], axis=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(M.Module):
    """A 3x3 stem and max pool, three stages (the first block of each halves the
    resolution), a 1x1 convolution, global average pooling, a classifier.

    stages_repeats: blocks per stage (3 numbers); stages_out_channels: the stem's, each
    stage's and the last convolution's channels (5 numbers)."""

    def __init__(self, stages_repeats, stages_out_channels, num_classes=1000):
        super().__init__()
        if len(stages_repeats) != 3 or len(stages_out_channels) != 5:
            raise ValueError("ShuffleNetV2 takes 3 stage repeats and 5 channel counts")
        cin = stages_out_channels[0]
        self.conv1 = M.Sequential(*_conv_bn(3, cin, 3, stride=2))
        self.maxpool = M.MaxPool2d(3, 2, 1)
        for i, (repeats, cout) in enumerate(zip(stages_repeats, stages_out_channels[1:4])):
            blocks = [ShuffleV2Block(cin, cout, 2)]
            blocks += [ShuffleV2Block(cout, cout, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", M.Sequential(*blocks))
            cin = cout
        self.conv5 = M.Sequential(*_conv_bn(cin, stages_out_channels[-1], 1))
        self.fc = M.Linear(stages_out_channels[-1], num_classes)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = F.mean(self.conv5(x), axis=(2, 3))
        return self.fc(x)


def _shufflenet(channels, **kwargs):
    return ShuffleNetV2([4, 8, 4], channels, **kwargs)


def shufflenet_v2_x0_5(**kwargs):
    """ShuffleNetV2 0.5x: stage widths 48, 96, 192."""
    return _shufflenet([24, 48, 96, 192, 1024], **kwargs)


def shufflenet_v2_x1_0(**kwargs):
    """ShuffleNetV2 1.0x: stage widths 116, 232, 464."""
    return _shufflenet([24, 116, 232, 464, 1024], **kwargs)


def shufflenet_v2_x1_5(**kwargs):
    """ShuffleNetV2 1.5x: stage widths 176, 352, 704."""
    return _shufflenet([24, 176, 352, 704, 1024], **kwargs)


def shufflenet_v2_x2_0(**kwargs):
    """ShuffleNetV2 2.0x: stage widths 244, 488, 976, and 2048 last channels."""
    return _shufflenet([24, 244, 488, 976, 2048], **kwargs)
