"""The model zoo as a hub repository: ``tianyuan.hub.load("<this repository>", "resnet18")``.

MegEngine hub's convention: ``dependencies`` names the packages the models need, and every
public function is an entry point that builds a model. Keyword arguments (``num_classes``,
...) go to the constructor in ``tianyuan.models``. No trained weights are published yet, so
``pretrained=True`` is refused.
"""
import tianyuan.models as _models

dependencies = ["tianyuan", "numpy"]


def _build(name, pretrained, kwargs):
    if pretrained:
        raise ValueError(f"hubconf: no pretrained weights are published for {name} yet; "
                         "build it with pretrained=False and load a state_dict")
    return getattr(_models, name)(**kwargs)


def resnet18(pretrained=False, **kwargs):
    """ResNet-18 (11.7 M parameters at 1000 classes)."""
    return _build("resnet18", pretrained, kwargs)


def resnet34(pretrained=False, **kwargs):
    """ResNet-34 (21.8 M parameters)."""
    return _build("resnet34", pretrained, kwargs)


def resnet50(pretrained=False, **kwargs):
    """ResNet-50 (25.6 M parameters)."""
    return _build("resnet50", pretrained, kwargs)


def resnet101(pretrained=False, **kwargs):
    """ResNet-101 (44.5 M parameters)."""
    return _build("resnet101", pretrained, kwargs)


def resnet152(pretrained=False, **kwargs):
    """ResNet-152 (60.2 M parameters)."""
    return _build("resnet152", pretrained, kwargs)


def resnext50_32x4d(pretrained=False, **kwargs):
    """ResNeXt-50 32x4d (25.0 M parameters)."""
    return _build("resnext50_32x4d", pretrained, kwargs)


def resnext101_32x8d(pretrained=False, **kwargs):
    """ResNeXt-101 32x8d (88.8 M parameters)."""
    return _build("resnext101_32x8d", pretrained, kwargs)


def shufflenet_v2_x0_5(pretrained=False, **kwargs):
    """ShuffleNetV2 0.5x (1.4 M parameters)."""
    return _build("shufflenet_v2_x0_5", pretrained, kwargs)


def shufflenet_v2_x1_0(pretrained=False, **kwargs):
    """ShuffleNetV2 1.0x (2.3 M parameters)."""
    return _build("shufflenet_v2_x1_0", pretrained, kwargs)


def shufflenet_v2_x1_5(pretrained=False, **kwargs):
    """ShuffleNetV2 1.5x (3.5 M parameters)."""
    return _build("shufflenet_v2_x1_5", pretrained, kwargs)


def shufflenet_v2_x2_0(pretrained=False, **kwargs):
    """ShuffleNetV2 2.0x (7.4 M parameters)."""
    return _build("shufflenet_v2_x2_0", pretrained, kwargs)


def mobilenet_v2(pretrained=False, **kwargs):
    """MobileNetV2 1.0 (3.5 M parameters)."""
    return _build("mobilenet_v2", pretrained, kwargs)
