"""ResNet (He et al. 2015, the v1.5 variant: stride on the 3x3 convolution) and ResNeXt."""
from .. import functional as F
from .. import module as M


def _conv3x3(cin, cout, stride=1, groups=1, dilation=1):
    return M.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                    groups=groups, bias=False)


def _conv1x1(cin, cout, stride=1):
    return M.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(M.Module):
    """Two 3x3 convolutions and a shortcut (ResNet-18/34)."""
    expansion = 1

    def __init__(self, in_channels, channels, stride=1, downsample=None, groups=1,
                 base_width=64, dilation=1, norm=M.BatchNorm2d):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        self.conv1 = _conv3x3(in_channels, channels, stride, dilation=dilation)
        self.bn1 = norm(channels)
        self.conv2 = _conv3x3(channels, channels, dilation=dilation)
        self.bn2 = norm(channels)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + identity)


class Bottleneck(M.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand by 4, and a shortcut."""
    expansion = 4

    def __init__(self, in_channels, channels, stride=1, downsample=None, groups=1,
                 base_width=64, dilation=1, norm=M.BatchNorm2d):
        super().__init__()
        width = int(channels * (base_width / 64.0)) * groups
        self.conv1 = _conv1x1(in_channels, width)
        self.bn1 = norm(width)
        self.conv2 = _conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm(width)
        self.conv3 = _conv1x1(width, channels * self.expansion)
        self.bn3 = norm(channels * self.expansion)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + identity)


class ResNet(M.Module):
    """A 7x7 stem, four stages of `layers[i]` blocks, global average pooling, a classifier.

    ``zero_init_residual`` starts each block's last BatchNorm at zero (the block is then the
    identity); ``replace_stride_with_dilation`` (three bools) trades the stride of stages 2-4
    for dilation."""

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm=M.BatchNorm2d):
        super().__init__()
        dilate = replace_stride_with_dilation or [False, False, False]
        if len(dilate) != 3:
            raise ValueError("replace_stride_with_dilation takes 3 bools, got "
                             f"{replace_stride_with_dilation!r}")
        self._norm = norm
        self.in_channels = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = M.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.maxpool = M.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, dilate[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, dilate[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, dilate[2])
        self.avgpool = M.AdaptiveAvgPool2d((1, 1))
        self.fc = M.Linear(512 * block.expansion, num_classes)
        self._init_weights(zero_init_residual)

    def _make_layer(self, block, channels, blocks, stride=1, dilate=False):
        prev_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.in_channels != channels * block.expansion:
            downsample = M.Sequential(_conv1x1(self.in_channels, channels * block.expansion,
                                               stride),
                                      self._norm(channels * block.expansion))
        mods = [block(self.in_channels, channels, stride, downsample, self.groups,
                      self.base_width, prev_dilation, self._norm)]
        self.in_channels = channels * block.expansion
        for _ in range(1, blocks):
            mods.append(block(self.in_channels, channels, groups=self.groups,
                              base_width=self.base_width, dilation=self.dilation,
                              norm=self._norm))
        return M.Sequential(*mods)

    def _init_weights(self, zero_init_residual):
        for m in self.modules():
            if isinstance(m, M.Conv2d):
                M.init.msra_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, M.BatchNorm2d):
                M.init.ones_(m.weight)
                M.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else \
                    getattr(m, "bn2", None) if isinstance(m, BasicBlock) else None
                if last is not None:
                    M.init.zeros_(last.weight)

    def extract_features(self, x):
        """The stage outputs: {"res2": ..., "res3": ..., "res4": ..., "res5": ...}."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feats = {}
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            feats[f"res{i + 2}"] = x
        return feats

    def forward(self, x):
        x = self.extract_features(x)["res5"]
        return self.fc(F.flatten(self.avgpool(x), 1))


def resnet18(**kwargs):
    """ResNet-18: BasicBlock, [2, 2, 2, 2] (11.7 M parameters at 1000 classes)."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


def resnet34(**kwargs):
    """ResNet-34: BasicBlock, [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


def resnet50(**kwargs):
    """ResNet-50: Bottleneck, [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


def resnet101(**kwargs):
    """ResNet-101: Bottleneck, [3, 4, 23, 3]."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


def resnet152(**kwargs):
    """ResNet-152: Bottleneck, [3, 8, 36, 3]."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


def resnext50_32x4d(**kwargs):
    """ResNeXt-50 32x4d: ResNet-50 with 32 groups of width 4 in the 3x3 convolutions."""
    return ResNet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4, **kwargs)


def resnext101_32x8d(**kwargs):
    """ResNeXt-101 32x8d: ResNet-101 with 32 groups of width 8 in the 3x3 convolutions."""
    return ResNet(Bottleneck, [3, 4, 23, 3], groups=32, width_per_group=8, **kwargs)
