"""A small classifier written the way MegEngine/Models writes its model files (ResNet,
ShuffleNetV2, the quantization folder's MobileNetV2), for tianyuan's MegEngine alias: it
imports ``megengine`` only, and loads only where ``import megengine`` resolves (tianyuan's
alias, or MegEngine itself).

The same API patterns: ``hub.pretrained`` on the builder, ``M.init.msra_normal_`` /
``msra_uniform_`` / ``calculate_fan_in_and_fan_out`` over ``self.modules()``, ``M.Identity``
shortcuts, the fused ``ConvBn2d`` / ``ConvBnRelu2d``, ``M.Elemwise("ADD")``, ``QuantStub`` /
``DequantStub`` and ``disable_quantize()`` on the classifier, a channel shuffle through
``Tensor.dimshuffle`` and ``F.transpose``, in-place ``+=`` on a residual."""
import math

import megengine.functional as F
import megengine.hub as hub
import megengine.module as M

WEIGHTS_URL = "https://example.invalid/weights/tiny_net_0123abcd.pkl"


class Residual(M.Module):
    """conv-bn-relu, conv-bn, plus the input (projected when the shape changes)."""

    def __init__(self, in_channels, channels, stride=1):
        super().__init__()
        self.conv1 = M.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
        self.bn1 = M.BatchNorm2d(channels)
        self.conv2 = M.Conv2d(channels, channels, 3, 1, padding=1, bias=True)
        self.bn2 = M.BatchNorm2d(channels)
        self.downsample = (
            M.Identity() if in_channels == channels and stride == 1
            else M.Sequential(M.Conv2d(in_channels, channels, 1, stride, bias=False),
                              M.BatchNorm2d(channels))
        )

    def forward(self, x):
        identity = self.downsample(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        x += identity
        return F.relu(x)


class Inverted(M.Module):
    """MobileNetV2's block: expand, depthwise, project, Elemwise ADD of the input."""

    def __init__(self, channels, expand):
        super().__init__()
        hidden = channels * expand
        self.conv = M.Sequential(
            M.ConvBnRelu2d(channels, hidden, kernel_size=1, bias=False),
            M.ConvBnRelu2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden, bias=False),
            M.ConvBn2d(hidden, channels, kernel_size=1, bias=False),
        )
        self.add = M.Elemwise("ADD")

    def forward(self, x):
        return self.add(x, self.conv(x))


class Shuffle(M.Module):
    """ShuffleNetV2's stride-1 block: half the channels pass, the other half is convolved,
    then the halves are interleaved."""

    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.branch = M.Sequential(
            M.Conv2d(half, half, 1, 1, 0, bias=False), M.BatchNorm2d(half), M.ReLU(),
            M.Conv2d(half, half, 3, 1, 1, groups=half, bias=False), M.BatchNorm2d(half),
        )

    def forward(self, x):
        n, c, h, w = x.shape
        x = x.reshape(n * c // 2, 2, h * w).dimshuffle(1, 0, 2)
        x = x.reshape(2, -1, c // 2, h, w)
        y = F.concat((x[0], self.branch(x[1])), 1)
        y = y.reshape(n, 2, c // 2, h * w)
        return F.transpose(y, (0, 2, 1, 3)).reshape(n, c, h, w)


class TinyNet(M.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.quant = M.QuantStub()
        self.stem = M.ConvBnRelu2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False)
        self.maxpool = M.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.features = M.Sequential(
            Residual(16, 16), Residual(16, 32, stride=2), Inverted(32, 2), Shuffle(32))
        self.dequant = M.DequantStub()
        self.classifier = M.Sequential(M.Dropout(0.2), M.Linear(32, num_classes))
        self.classifier.disable_quantize()

        for m in self.modules():
            if isinstance(m, M.Conv2d):
                M.init.msra_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    fan_in, _ = M.init.calculate_fan_in_and_fan_out(m.weight)
                    bound = 1 / math.sqrt(fan_in)
                    M.init.uniform_(m.bias, -bound, bound)
            elif isinstance(m, M.BatchNorm2d):
                M.init.ones_(m.weight)
                M.init.zeros_(m.bias)
            elif isinstance(m, M.Linear):
                M.init.msra_uniform_(m.weight, a=math.sqrt(5))
                fan_in, _ = M.init.calculate_fan_in_and_fan_out(m.weight)
                M.init.uniform_(m.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        for name, m in self.named_modules():
            if isinstance(m, M.BatchNorm2d) and "stem" in name:
                M.init.fill_(m.running_mean, 0)

    def forward(self, x):
        x = self.quant(x)
        x = self.maxpool(self.stem(x))
        x = self.features(x)
        x = F.avg_pool2d(x, 4)
        x = F.flatten(x, 1)
        x = self.dequant(x)
        return self.classifier(x)


@hub.pretrained(WEIGHTS_URL)
def tiny_net(**kwargs):
    return TinyNet(**kwargs)
