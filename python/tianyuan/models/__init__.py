"""Image classification models (the zoo behind the repository's ``hubconf.py``).

Written on ``tianyuan.module`` the way MegEngine's model files are. Each architecture has the
same layers in the same order, with the same parameter shapes, as torchvision's model of the
same name, and the same submodule names, so a torchvision ``state_dict`` maps onto ours key by
key (MegEngine keeps BatchNorm tensors as (1, C, 1, 1) and grouped convolution weights as
(groups, out/groups, in/groups, kh, kw): reshape, the element order is the same).

>>> import tianyuan.models as models
>>> net = models.resnet18(num_classes=10)
>>> sum(p.size for p in net.parameters())
11181642
"""
from .resnet import (BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50,  # noqa: F401
                     resnet101, resnet152, resnext50_32x4d, resnext101_32x8d)
from .shufflenet import (ShuffleNetV2, shufflenet_v2_x0_5, shufflenet_v2_x1_0,  # noqa: F401
                         shufflenet_v2_x1_5, shufflenet_v2_x2_0)
from .mobilenet import MobileNetV2, mobilenet_v2  # noqa: F401

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "resnet18", "resnet34", "resnet50",
           "resnet101", "resnet152", "resnext50_32x4d", "resnext101_32x8d", "ShuffleNetV2",
           "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
           "shufflenet_v2_x2_0", "MobileNetV2", "mobilenet_v2"]
