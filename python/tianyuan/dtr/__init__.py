"""tianyuan.dtr: dynamic tensor rematerialization in eager mode (MegEngine's ``megengine.dtr``).

>>> import tianyuan as ty
>>> ty.dtr.eviction_threshold = "2GB"
>>> ty.dtr.enable()

While enabled, each op output that can be recomputed remembers how it was made (op, params,
inputs). When an op's outputs, or the scratch memory its kernels take, would take the
allocator's live bytes past ``eviction_threshold`` (or the memory limit, when lower), DTR
first frees the data of the tensors with the lowest cost / (bytes x staleness) -- the
heuristic of Kirisame et al., the cost counting the evicted chain a recomputation would need
first; a tensor nothing but that lineage still reads, such as a matmul output a bias add
consumed, goes before any other -- and recomputes it, with the same kernels and so the same bits, when it is read
again: by an op, ``.numpy()``, backward, a raw data pointer or a DLPack export (the last two
keep the tensor from then on: DTR cannot see who holds the pointer).
Parameters, optimizer state, tensors made from host data, outputs of random ops, pinned
tensors and tensors smaller than ``evictee_minimum_size`` (they keep no lineage, so
``_drop()`` leaves them too) are never evicted, nor the gradients a backward pass makes
(they live only until the next gradient rule reads them, and their lineage would chain the
whole pass). An in-place write to a tensor that an evicted, still-held tensor was made from
keeps a copy of the old contents for its recomputation. A recomputation that cannot fit under the threshold raises
``MemoryError``. ``eviction_threshold = 0`` (the default) evicts only what
``Tensor._drop()`` drops.
"""
import re
import sys
import types

from .. import _C

__all__ = ["enable", "disable", "is_enabled", "eviction_threshold", "evictee_minimum_size",
           "enable_sqrt_sampling", "pin", "stats"]

_UNITS = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40,
          "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _to_bytes(value, name):
    """Bytes from an int or a string such as "2GB", "512 MB", "1.5GB" (powers of 1024)."""
    if isinstance(value, bool):
        raise TypeError(f"dtr.{name} must be a number of bytes or a string like '2GB', "
                        f"not {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*", value)
        unit = m.group(2).upper() if m else None
        if not m or unit not in _UNITS:
            raise ValueError(f"dtr.{name}: cannot read {value!r} as a size (use bytes, or a "
                             f"number with B, KB, MB, GB or TB)")
        n = int(float(m.group(1)) * _UNITS[unit])
    else:
        raise TypeError(f"dtr.{name} must be a number of bytes or a string like '2GB', "
                        f"not {type(value).__name__}")
    if n < 0:
        raise ValueError(f"dtr.{name} must be >= 0 bytes, got {n}")
    return n


def _set(**changes):
    cfg = dict(_C.dtr_config(), **changes)
    _C.dtr_set_config(cfg["enabled"], cfg["eviction_threshold"], cfg["evictee_minimum_size"],
                      cfg["enable_sqrt_sampling"])


def enable():
    """Starts recording lineage and evicting above ``eviction_threshold``."""
    _set(enabled=True)


def disable():
    """Stops recording and evicting; tensors evicted already still come back when read."""
    _set(enabled=False)


def is_enabled():
    return _C.dtr_config()["enabled"]


def pin(tensor):
    """Never evicts ``tensor`` (it is brought back first if it is evicted now)."""
    _C.dtr_pin(tensor)
    return tensor


def stats():
    """Counters: evictions, recomputes, entries (tensors with a lineage), evicted_now."""
    return _C.dtr_stats()


class _DTRModule(types.ModuleType):
    """Makes the settings module attributes that take effect when assigned (as MegEngine's)."""

    @property
    def eviction_threshold(self):
        return _C.dtr_config()["eviction_threshold"]

    @eviction_threshold.setter
    def eviction_threshold(self, value):
        _set(eviction_threshold=_to_bytes(value, "eviction_threshold"))

    @property
    def evictee_minimum_size(self):
        return _C.dtr_config()["evictee_minimum_size"]

    @evictee_minimum_size.setter
    def evictee_minimum_size(self, value):
        _set(evictee_minimum_size=_to_bytes(value, "evictee_minimum_size"))

    @property
    def enable_sqrt_sampling(self):
        return _C.dtr_config()["enable_sqrt_sampling"]

    @enable_sqrt_sampling.setter
    def enable_sqrt_sampling(self, value):
        _set(enable_sqrt_sampling=bool(value))


sys.modules[__name__].__class__ = _DTRModule
