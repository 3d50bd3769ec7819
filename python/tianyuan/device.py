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


# ---- MegEngine's allocator getters, over the caching allocator's counters ----
def get_allocated_memory(device=None):
    """Bytes held by live tensors (rounded to the allocator's size classes)."""
    return _C.mem_stats()["allocated"]


def get_reserved_memory(device=None):
    """Bytes the allocator holds from the system: live tensors plus its cache of freed blocks."""
    s = _C.mem_stats()
    return s["allocated"] + s["cached"]


def get_max_allocated_memory(device=None):
    """Peak of :func:`get_allocated_memory` since start or :func:`reset_max_memory_stats`."""
    return _C.mem_stats()["peak"]


def get_max_reserved_memory(device=None):
    """Peak of :func:`get_reserved_memory` since start or :func:`reset_max_memory_stats`."""
    return _C.mem_stats()["peak_reserved"]


def reset_max_memory_stats(device=None):
    """Restarts both peaks from the current allocated and reserved bytes."""
    _C.reset_peak()


def coalesce_free_memory():
    """Returns every cached free block to the system (the CPU allocator keeps freed blocks
    whole per size class, so giving them back is how it makes free memory contiguous)."""
    _C.empty_cache()


_prealloc = {}


def set_prealloc_config(alignment=1, min_req=32 * 1024 * 1024, max_overhead=0,
                        growth_factor=2.0, device_type="gpu"):
    """MegEngine's pre-allocation policy of a device allocator, validated and recorded (see
    ``get_prealloc_config``). It configures device (GPU) allocators; this build has only the
    CPU allocator, whose size classes are fixed, so the CPU allocator's behaviour does not
    change."""
    checks = (("alignment", alignment, 1), ("min_req", min_req, 1),
              ("max_overhead", max_overhead, 0))
    for name, v, low in checks:
        v = to_int(v, name, "set_prealloc_config")
        if v < low:
            raise ValueError(f"set_prealloc_config: {name} must be >= {low}, got {v}")
    if not isinstance(growth_factor, (int, float)) or isinstance(growth_factor, bool) \
            or not growth_factor >= 1:
        raise ValueError(f"set_prealloc_config: growth_factor must be a number >= 1, got "
                         f"{growth_factor!r}")
    _prealloc[str(device_type).lower()] = dict(alignment=int(alignment), min_req=int(min_req),
                                               max_overhead=int(max_overhead),
                                               growth_factor=float(growth_factor))


def get_prealloc_config(device_type="gpu"):
    """The policy last given to :func:`set_prealloc_config` for ``device_type``, or None."""
    return dict(_prealloc[device_type]) if device_type in _prealloc else None


# ---- vendor getters: this build has no accelerator backend ----
def _no_backend(what):
    raise RuntimeError(f"{what}: this tianyuan build has no CUDA backend (CPU only); "
                       f"is_cuda_available() is False")


def get_cuda_version():
    """CUDA runtime version; a RuntimeError in this CPU-only build."""
    _no_backend("get_cuda_version")


def get_cudnn_version():
    """cuDNN version; a RuntimeError in this CPU-only build."""
    _no_backend("get_cudnn_version")


def get_tensorrt_version():
    """TensorRT version; a RuntimeError in this CPU-only build."""
    _no_backend("get_tensorrt_version")


def get_cuda_driver_version():
    """CUDA driver version; a RuntimeError in this CPU-only build."""
    _no_backend("get_cuda_driver_version")


def get_cuda_compute_capability(device=0, device_type="gpu"):
    """Compute capability of CUDA device ``device``; a RuntimeError here (no CUDA device)."""
    _no_backend("get_cuda_compute_capability")


def get_cuda_device_property(device=0, device_type="gpu"):
    """Properties of CUDA device ``device``; a RuntimeError here (no CUDA device)."""
    _no_backend("get_cuda_device_property")


def is_atlas_available():
    """Whether a Huawei Atlas NPU backend is built and a device present: False here."""
    return False


def is_cambricon_available():
    """Whether a Cambricon MLU backend is built and a device present: False here."""
    return False


def is_rocm_available():
    """Whether a ROCm backend is built and a device present: False here."""
    return False


def check_misc():
    """A summary of this build and machine (version, backends, threads, CPU features, memory
    counters) as a dict; also logged at INFO by the package logger."""
    from . import __version__
    from .logger import get_logger
    info = {"version": __version__, "cuda": is_cuda_available(),
            "atlas": is_atlas_available(), "cambricon": is_cambricon_available(),
            "rocm": is_rocm_available(), "num_threads": get_num_threads(),
            "default_device": get_default_device(), "memory": get_mem_status_bytes()}
    get_logger().info("tianyuan %s", ", ".join(f"{k}={v}" for k, v in info.items()))
    return info
