"""The model zoo as a hub repository: ``tianyuan.hub.load("<this repository>", "resnet18")``.

MegEngine hub's convention: ``dependencies`` names the packages a model needs, and every public
function here is an entry point that builds a model (keyword arguments such as
``num_classes`` go to the constructor). The definitions live in ``tianyuan.models``.
"""
dependencies = ["tianyuan", "numpy"]

from tianyuan.models import (mobilenet_v2, resnet18, resnet34, resnet50,  # noqa: E402,F401
                             resnet101, resnet152, resnext50_32x4d, resnext101_32x8d,
                             shufflenet_v2_x0_5, shufflenet_v2_x1_0, shufflenet_v2_x1_5,
                             shufflenet_v2_x2_0)
