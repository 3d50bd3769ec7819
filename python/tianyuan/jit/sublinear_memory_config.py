"""``SublinearMemoryConfig``: MegEngine's configuration of sublinear memory for ``trace``."""
import os


def _check_int(name, value, lowest):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"SublinearMemoryConfig: {name} must be an int, got {type(value).__name__}")
    if value < lowest:
        raise ValueError(f"SublinearMemoryConfig: {name} must be >= {lowest}, got {value}")


class SublinearMemoryConfig:
    r"""Configuration for sublinear memory optimization of a traced training step.

    Forward values that the backward reads are either kept from the forward (checkpoints)
    or recomputed in the backward by copies of the nodes that computed them (the same
    kernels and params, so the step's results are bitwise those of the plain trace; random
    and in-place ops are never recomputed).

    :param thresh_nr_try: how many segment budgets (around Chen et al.'s total/sqrt(n)) to
        try; each is scored by the memory plan's peak and the lowest wins (then the cheaper
        recompute). Default: 10.
    :param genetic_nr_iter: rounds of a (deterministic) genetic search over the kept values
        after the segment search; 0 (the default) skips it.
    :param genetic_pool_size: keep-sets per round of that search. Default: 20.
    :param lb_memory_mb: the lower bound of the bottleneck, in MB (MegEngine's trade of
        memory for speed): plans whose planned arena (activations and gradients) stays
        within it count as fitting, and among them the one that recomputes least (by a
        cost proxy: bytes moved plus arithmetic) wins; 0 (the default): the lowest peak.
    :param num_worker: accepted for MegEngine compatibility; the search runs on one thread
        (its result does not depend on it). Default: half the CPUs.
    """

    def __init__(self, thresh_nr_try=10, genetic_nr_iter=0, genetic_pool_size=20,
                 lb_memory_mb=0, num_worker=max(1, (os.cpu_count() or 2) // 2)):
        _check_int("thresh_nr_try", thresh_nr_try, 0)
        _check_int("genetic_nr_iter", genetic_nr_iter, 0)
        _check_int("genetic_pool_size", genetic_pool_size, 1)
        _check_int("lb_memory_mb", lb_memory_mb, 0)
        _check_int("num_worker", num_worker, 1)
        self.thresh_nr_try = thresh_nr_try
        self.genetic_nr_iter = genetic_nr_iter
        self.genetic_pool_size = genetic_pool_size
        self.lb_memory_mb = lb_memory_mb
        self.num_worker = num_worker

    def __repr__(self):
        return (f"SublinearMemoryConfig(thresh_nr_try={self.thresh_nr_try}, "
                f"genetic_nr_iter={self.genetic_nr_iter}, "
                f"genetic_pool_size={self.genetic_pool_size}, "
                f"lb_memory_mb={self.lb_memory_mb}, num_worker={self.num_worker})")
