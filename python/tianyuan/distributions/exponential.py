"""Exponential(rate): density rate * exp(-rate * x) for x >= 0."""
from numbers import Number

from .. import functional as F
from ..tensor import Tensor
from .distribution import Distribution


class Exponential(Distribution):
    """The exponential distribution with ``rate`` = 1 / scale (a number or a tensor of rates,
    one distribution per element)."""

    def __init__(self, rate):
        if isinstance(rate, Number):
            if not rate > 0:
                raise ValueError(f"Exponential: rate must be > 0, got {rate!r}")
            self.rate = Tensor(float(rate))
        else:
            self.rate = rate if isinstance(rate, Tensor) else Tensor(rate)
        super().__init__(batch_shape=tuple(self.rate.shape))

    def expand(self, batch_shape, _instance=None):
        new = _instance if _instance is not None else Exponential.__new__(Exponential)
        new.rate = F.broadcast_to(self.rate, tuple(batch_shape))
        Distribution.__init__(new, batch_shape=tuple(batch_shape))
        return new

    @property
    def mean(self):
        return 1.0 / self.rate

    @property
    def stddev(self):
        return 1.0 / self.rate

    @property
    def variance(self):
        return 1.0 / (self.rate * self.rate)

    def rsample(self, sample_shape=()):
        """E / rate with E ~ Exp(1) from tianyuan.random (differentiable in rate)."""
        from ..random import exponential
        shape = self._extended_shape(sample_shape)
        e = exponential(1.0, size=shape).astype(self.rate.dtype)
        return e / F.broadcast_to(self.rate, shape)

    def log_prob(self, value):
        return F.log(self.rate) - self.rate * value

    def cdf(self, value):
        return 1.0 - F.exp(-self.rate * value)

    def icdf(self, value):
        return -F.log1p(-value) / self.rate
