"""MegEngine's ``functional.utils``: ``copy`` (a tensor onto a device) and the ``accuracy``
alias of :func:`~tianyuan.functional.metric.topk_accuracy`."""
from .metric import topk_accuracy as accuracy  # noqa: F401
from .tensor import copy  # noqa: F401

__all__ = ["accuracy", "copy"]
