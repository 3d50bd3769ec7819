"""jit.DTRConfig: DTR settings for a traced step (MegEngine's ``megengine.jit.DTRConfig``)."""


class DTRConfig:
    """Settings of DTR for ``trace(dtr_config=...)``: the live bytes above which tensors are
    evicted, the smallest tensor worth evicting, and MegEngine's weights of the memory and time
    terms when choosing what to recompute."""

    def __init__(self, eviction_threshold: int = 0, evictee_minimum_size: int = 1 << 20,
                 recomp_memory_factor: float = 1, recomp_time_factor: float = 1):
        from ..dtr import _to_bytes
        self.eviction_threshold = _to_bytes(eviction_threshold, "eviction_threshold")
        self.evictee_minimum_size = _to_bytes(evictee_minimum_size, "evictee_minimum_size")
        if recomp_memory_factor < 0 or recomp_time_factor < 0:
            raise ValueError("DTRConfig: recomp_memory_factor and recomp_time_factor must be "
                             ">= 0")
        self.recomp_memory_factor = float(recomp_memory_factor)
        self.recomp_time_factor = float(recomp_time_factor)

    def __repr__(self):
        return (f"DTRConfig(eviction_threshold={self.eviction_threshold}, "
                f"evictee_minimum_size={self.evictee_minimum_size}, "
                f"recomp_memory_factor={self.recomp_memory_factor}, "
                f"recomp_time_factor={self.recomp_time_factor})")
