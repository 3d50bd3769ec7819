"""MobileNetV2 (Sandler et al. 2018): inverted residual blocks of a 1x1 expansion, a 3x3
depthwise convolution and a linear 1x1 projection."""
from .. import functional as F
from .. import module as M


class ReLU6(M.Module):
    """min(max(x, 0), 6)."""

    def forward(self, x):
        return F.relu6(x)


def _make_divisible(value, divisor, min_value=None):
    """value rounded to the nearest multiple of divisor, never below min_value (default:
    divisor) nor more than 10% below value."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _conv_bn_relu6(cin, cout, kernel=3, stride=1, groups=1):
    return M.Sequential(M.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2,
                                 groups=groups, bias=False),
                        M.BatchNorm2d(cout), ReLU6())


class InvertedResidual(M.Module):
    """[1x1 expand + ReLU6] -> 3x3 depthwise + ReLU6 -> 1x1 project (linear); a shortcut
    when the shape is kept."""

    def __init__(self, in_channels, out_channels, stride, expand_ratio):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride must be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.use_shortcut = stride == 1 and in_channels == out_channels
        layers = [_conv_bn_relu6(in_channels, hidden, 1)] if expand_ratio != 1 else []
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   M.Conv2d(hidden, out_channels, 1, bias=False), M.BatchNorm2d(out_channels)]
        self.conv = M.Sequential(*layers)

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.use_shortcut else y


# expansion t, channels c, repeats n, stride s of the first block
_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1],
            [6, 160, 3, 2], [6, 320, 1, 1]]


class MobileNetV2(M.Module):
    """``features`` (a stride-2 stem, the inverted residual blocks, a 1x1 convolution to
    1280 channels), global average pooling, ``classifier`` (Dropout, Linear)."""

    def __init__(self, num_classes=1000, width_mult=1.0, inverted_residual_setting=None,
                 round_nearest=8, dropout=0.2):
        super().__init__()
        setting = inverted_residual_setting or _SETTING
        if any(len(row) != 4 for row in setting):
            raise ValueError("inverted_residual_setting rows are [t, c, n, s], got "
                             f"{setting!r}")
        cin = _make_divisible(32 * width_mult, round_nearest)
        last = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features = [_conv_bn_relu6(3, cin, stride=2)]
        for t, c, n, s in setting:
            cout = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(_conv_bn_relu6(cin, last, 1))
        self.features = M.Sequential(*features)
        self.classifier = M.Sequential(M.Dropout(dropout), M.Linear(last, num_classes))
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, M.Conv2d):
                M.init.msra_normal_(m.weight, mode="fan_out")
            elif isinstance(m, M.BatchNorm2d):
                M.init.ones_(m.weight)
                M.init.zeros_(m.bias)
            elif isinstance(m, M.Linear):
                M.init.normal_(m.weight, 0, 0.01)
                M.init.zeros_(m.bias)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(F.flatten(x, 1))


def mobilenet_v2(**kwargs):
    """MobileNetV2 1.0 (3.5 M parameters at 1000 classes)."""
    return MobileNetV2(**kwargs)
