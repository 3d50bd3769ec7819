"""Samplers: they yield lists of indices, one list per batch (MegEngine semantics).

``world_size``/``rank`` shard the (shuffled) index list: it is padded by repeating its head to a
multiple of ``world_size`` and rank ``r`` takes every ``world_size``-th index starting at ``r``.
Left as None they are the process group's (``tianyuan.distributed``) once
``init_process_group`` ran, so each rank of a data-parallel job reads its own share. All ranks
must shuffle identically: give them the same ``seed``, or leave it None in a process group and
rank 0 picks one that the store hands to every rank.
"""
import sys

import numpy as np

from .._args import to_int
from .. import distributed as dist

__all__ = ["Sampler", "MapSampler", "SequentialSampler", "RandomSampler", "ReplacementSampler",
           "StreamSampler", "Infinite"]


_seeds_drawn = [0]


def _shared_seed():
    """A seed rank 0 draws and every rank of the group reads from the store (the n-th sampler
    made on each rank gets the n-th seed)."""
    _seeds_drawn[0] += 1
    key = f"sampler/seed/{_seeds_drawn[0]}"
    client = dist.get_client()
    if dist.get_rank() == 0:
        client.set(key, int(np.random.SeedSequence().entropy % (1 << 62)))
    return client.get(key)


class Sampler:
    def __iter__(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError


class MapSampler(Sampler):
    """Base of the map-style samplers: subclasses implement :meth:`sample` (all indices of an
    epoch, before sharding)."""

    def __init__(self, dataset, batch_size=1, drop_last=False, num_samples=None,
                 world_size=None, rank=None, seed=None):
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) \
                or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        in_group = dist.is_distributed()
        if world_size is None:
            world_size = dist.get_world_size() if in_group else 1
        if rank is None:
            rank = dist.get_rank() if in_group else 0
        world_size = to_int(world_size, "world_size", "Sampler")
        rank = to_int(rank, "rank", "Sampler")
        if seed is None and in_group and world_size > 1:
            seed = _shared_seed()
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.num_samples = len(dataset) if num_samples is None else \
            to_int(num_samples, "num_samples", "Sampler")
        if self.num_samples < 0:
            raise ValueError("num_samples must be >= 0")
        self.num_samples_per_rank = -(-self.num_samples // world_size)
        self.rng = np.random.default_rng(seed)

    def sample(self):
        raise NotImplementedError

    def scatter(self, indices):
        indices = list(indices)
        if self.world_size == 1:
            return indices
        total = self.num_samples_per_rank * self.world_size
        while indices and len(indices) < total:
            indices += indices[: total - len(indices)]
        return indices[self.rank:total:self.world_size]

    def batch(self, indices):
        bs = self.batch_size
        out = [indices[i:i + bs] for i in range(0, len(indices), bs)]
        if out and self.drop_last and len(out[-1]) < bs:
            out.pop()
        return out

    def __iter__(self):
        return iter(self.batch(self.scatter(self.sample())))

    def __len__(self):
        n = self.num_samples_per_rank if self.world_size > 1 else self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


class SequentialSampler(MapSampler):
    """Indices in order (or the given ``indices`` in their order)."""

    def __init__(self, dataset, batch_size=1, drop_last=False, indices=None, world_size=None,
                 rank=None):
        self.indices = None if indices is None else [int(i) for i in indices]
        super().__init__(dataset, batch_size, drop_last,
                         None if indices is None else len(self.indices), world_size, rank)

    def sample(self):
        return list(range(self.num_samples)) if self.indices is None else list(self.indices)


class RandomSampler(MapSampler):
    """A random permutation per epoch from a numpy ``Generator`` seeded with ``seed``: the same
    seed gives the same sequence of epoch orders."""

    def __init__(self, dataset, batch_size=1, drop_last=False, indices=None, world_size=None,
                 rank=None, seed=None):
        self.indices = None if indices is None else [int(i) for i in indices]
        super().__init__(dataset, batch_size, drop_last,
                         None if indices is None else len(self.indices), world_size, rank, seed)

    def sample(self):
        perm = self.rng.permutation(self.num_samples)
        if self.indices is None:
            return perm.tolist()
        return [self.indices[i] for i in perm]


class ReplacementSampler(MapSampler):
    """``num_samples`` indices drawn with replacement, optionally with ``weights``."""

    def __init__(self, dataset, batch_size=1, drop_last=False, num_samples=None, weights=None,
                 world_size=None, rank=None, seed=None):
        super().__init__(dataset, batch_size, drop_last, num_samples, world_size, rank, seed)
        n = len(dataset)
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
                raise ValueError(f"weights must be {n} finite non-negative numbers, not all 0")
            weights = w / w.sum()
        self.weights = weights
        self._n = n

    def sample(self):
        if self._n == 0:
            return []
        return self.rng.choice(self._n, size=self.num_samples, replace=True,
                               p=self.weights).tolist()


class StreamSampler(Sampler):
    """Batch size holder for stream datasets (the DataLoader groups a stream's samples)."""

    def __init__(self, batch_size=1):
        self.batch_size = to_int(batch_size, "batch_size", "StreamSampler")
        if self.batch_size <= 0:
            raise ValueError(f"StreamSampler: batch_size must be positive, got {batch_size}")

    def __iter__(self):
        while True:
            yield [None] * self.batch_size


class Infinite(MapSampler):
    """Repeats a sampler's batches forever (a new epoch order each time round)."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.batch_size = sampler.batch_size
        self.dataset = sampler.dataset
        self.seed = getattr(sampler, "seed", None)

    def __iter__(self):
        while True:
            empty = True
            for b in self.sampler:
                empty = False
                yield b
            if empty:
                return

    def __len__(self):
        return sys.maxsize
