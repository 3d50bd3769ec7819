"""Device helpers: CPU only for now; memory counters of the caching allocator; threads."""
from . import _C
from ._args import to_int

_default_device = "cpux"


def is_cuda_available():
    return False


def get_device_count(device_type="gpu"):
    return 1 if device_type in ("cpu", "xpu") else 0


def set_default_device(device="xpux"):
    global _default_device
    _default_device = device


def get_default_device():
    return _default_device


def get_mem_status_bytes(device=None):
    """Allocator counters: allocated, peak, cached and limit in bytes; alloc_calls (requests
    that reached the system allocator) and requests (all, cache hits included)."""
    return _C.mem_stats()


def get_max_mem_bytes(device=None):
    """Peak allocated bytes since start (or the last reset_peak_memory)."""
    return _C.mem_stats()["peak"]


def reset_peak_memory(device=None):
    _C.reset_peak()


def empty_cache():
    """Returns cached (freed) blocks to the system."""
    _C.empty_cache()


def set_memory_limit(nbytes):
    """Caps the bytes held by tianyuan's allocator: live tensor memory **plus** its cache of
    freed blocks. Cached blocks are returned to the system before a request fails, and nothing is
    cached beyond the cap; a request that still does not fit raises MemoryError naming the op.
    ``None`` or ``0`` removes the cap; a negative value is a ValueError. Memory that is not
    tianyuan's (Python objects, numpy arrays, including those ``Tensor.numpy()`` returns) is not
    counted."""
    nbytes = 0 if nbytes is None else to_int(nbytes, "nbytes", "set_memory_limit")
    if nbytes < 0:
        raise ValueError(f"set_memory_limit: limit must be >= 0 bytes (0 or None = no limit), "
                         f"got {nbytes}")
    _C.set_mem_limit(nbytes)


def set_num_threads(n):
    """Threads used by heavy kernels (default: TY_NUM_THREADS or the core count)."""
    n = to_int(n, "n", "set_num_threads")
    if not 1 <= n < 1 << 31:
        raise ValueError(f"set_num_threads: got {n} threads, expected a positive count")
    _C.set_num_threads(n)


def get_num_threads():
    return _C.get_num_threads()
