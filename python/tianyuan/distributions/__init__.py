"""tianyuan.distributions: probability distributions (MegEngine's ``megengine.distributions``).

>>> import tianyuan as ty
>>> from tianyuan.distributions import Exponential
>>> m = Exponential(ty.tensor([2.0]))
>>> m.mean.numpy().tolist(), m.sample((3,)).shape
([0.5], (3, 1))
"""
from .distribution import Distribution  # noqa: F401
from .exponential import Exponential  # noqa: F401

__all__ = ["Distribution", "Exponential"]
