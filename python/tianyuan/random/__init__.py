"""tianyuan.random: MegEngine's random API over the counter-based generator of the C core.

Module-level functions draw from the global generator (``seed`` resets it); an :class:`RNG`
draws from its own stream, a pure function of its seed and of how much it has drawn, so it
never disturbs the global one.

>>> import tianyuan.random as R
>>> R.seed(7); a = R.uniform(size=(3,)).numpy()
>>> R.seed(7); b = R.uniform(size=(3,)).numpy()
>>> bool((a == b).all())
True
"""
from .rng import (RNG, seed, uniform, normal, permutation, shuffle, gamma, beta,  # noqa: F401
                  poisson, exponential, multinomial)

__all__ = ["RNG", "seed", "uniform", "normal", "permutation", "shuffle", "gamma", "beta",
           "poisson", "exponential", "multinomial"]
