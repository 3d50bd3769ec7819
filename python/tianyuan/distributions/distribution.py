"""Distribution: the base class of the distributions (batch and event shapes, sampling API)."""


def _shape(s, what):
    from .._args import to_ints
    if s is None:
        return ()
    return tuple(to_ints(s, what, "Distribution", lo=0))


class Distribution:
    """Base class: a batch of distributions of shape ``batch_shape``, each over values of
    shape ``event_shape``. Subclasses define ``mean``, ``variance``, ``rsample``, ``log_prob``,
    ``cdf``, ``icdf`` and ``expand``; the base class answers ``stddev`` (from the variance),
    ``sample`` (a detached ``rsample``) and the shape of a sample."""

    def __init__(self, batch_shape=(), event_shape=()):
        self._batch_shape = _shape(batch_shape, "batch_shape")
        self._event_shape = _shape(event_shape, "event_shape")

    @property
    def batch_shape(self):
        return self._batch_shape

    @property
    def event_shape(self):
        return self._event_shape

    def _abstract(self, what):
        raise NotImplementedError(f"{type(self).__name__} does not define {what}")

    def expand(self, batch_shape, _instance=None):
        """A distribution of the same kind with its parameters broadcast to batch_shape."""
        self._abstract("expand")

    @property
    def mean(self):
        self._abstract("mean")

    @property
    def variance(self):
        self._abstract("variance")

    @property
    def stddev(self):
        return self.variance ** 0.5

    def sample(self, sample_shape=()):
        """Draws of shape sample_shape + batch_shape + event_shape, without gradient."""
        return self.rsample(sample_shape).detach()

    def rsample(self, sample_shape=()):
        """Reparameterised draws: differentiable with respect to the parameters."""
        self._abstract("rsample")

    def log_prob(self, value):
        self._abstract("log_prob")

    def cdf(self, value):
        self._abstract("cdf")

    def icdf(self, value):
        self._abstract("icdf")

    def _extended_shape(self, sample_shape=()):
        return _shape(sample_shape, "sample_shape") + self._batch_shape + self._event_shape
