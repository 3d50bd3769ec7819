"""Data transforms (MegEngine's ``megengine.data.transform``), in numpy.

Transforms take one sample (``apply``) or a list of samples (``apply_batch``). A
:class:`VisionTransform` has an ``order`` naming the fields of a sample tuple (default
``("image",)``): images and masks, and the geometry that must move with them (``"boxes"``,
``"keypoints"``, ``"coords"``, ``"polygons"``), are transformed consistently; fields ending in
``"category"`` or ``"info"`` and any fields beyond ``order`` pass through unchanged, and a plain
image (not a tuple) gives a plain image back. Images are HWC numpy arrays (HW is treated as
HW1), uint8 or float; colour images are BGR like MegEngine's (OpenCV) datasets.

Random transforms draw from :func:`get_rng`, a numpy Generator that the DataLoader reseeds per
batch (so batches are reproducible with any number of workers).

>>> import numpy as np
>>> import tianyuan.data.transform as T
>>> t = T.Compose([T.Normalize(mean=0.1307 * 255, std=0.3081 * 255), T.Pad(2), T.ToMode("CHW")])
>>> img, label = t.apply((np.zeros((28, 28, 1), np.uint8), 3))
>>> img.shape, img.dtype, label
((1, 32, 32), dtype('float32'), 3)
"""
from .vision import (Transform, PseudoTransform, CudaTransform, VisionTransform,  # noqa
                     Compose, TorchTransformCompose, Normalize, Pad, ToMode, Resize,
                     ShortestEdgeResize, RandomResize, RandomCrop, RandomResizedCrop,
                     CenterCrop, RandomHorizontalFlip, RandomVerticalFlip, GaussianNoise,
                     BrightnessTransform, ContrastTransform, SaturationTransform, HueTransform,
                     Brightness, Contrast, Saturation, Hue, ColorJitter, Lighting, get_rng,
                     _set_rng)

__all__ = ["Transform", "PseudoTransform", "CudaTransform", "VisionTransform", "Compose",
           "TorchTransformCompose", "Normalize", "Pad", "ToMode", "Resize",
           "ShortestEdgeResize", "RandomResize", "RandomCrop", "RandomResizedCrop", "CenterCrop",
           "RandomHorizontalFlip", "RandomVerticalFlip", "GaussianNoise", "BrightnessTransform",
           "ContrastTransform", "SaturationTransform", "HueTransform", "Brightness", "Contrast",
           "Saturation", "Hue", "ColorJitter", "Lighting", "get_rng"]
