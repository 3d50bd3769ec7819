"""Tianyuan (天元): a deep learning framework with a C core and MegEngine's Python API.

>>> import tianyuan as ty
>>> import tianyuan.functional as F
>>> F.relu(ty.tensor([-1.0, 2.0])).numpy().tolist()
[0.0, 2.0]
"""
from . import _C
from ._C import TianyuanError  # noqa: F401
from .tensor import Tensor, Parameter, tensor  # noqa: F401
from .dtype import (float32, float64, float16, bfloat16, int8, uint8, int16, int32,  # noqa: F401
                    int64, bool_)
from . import functional  # noqa: F401
from . import autodiff  # noqa: F401
from .device import (get_mem_status_bytes, get_max_mem_bytes, reset_peak_memory,  # noqa: F401
                     set_memory_limit, empty_cache, set_num_threads, get_num_threads,
                     is_cuda_available, get_device_count, set_default_device,
                     get_default_device, get_allocated_memory, get_reserved_memory,
                     get_max_allocated_memory, get_max_reserved_memory,
                     reset_max_memory_stats, coalesce_free_memory, set_prealloc_config,
                     get_cuda_version, get_cudnn_version, get_tensorrt_version,
                     get_cuda_driver_version, get_cuda_compute_capability,
                     get_cuda_device_property, is_atlas_available, is_cambricon_available,
                     is_rocm_available, check_misc)
from .logger import get_logger, set_log_level, set_log_file, enable_debug_log  # noqa: F401
from . import config  # noqa: F401

__version__ = "0.1.0"
from . import random  # noqa: F401,E402
from .serialization import save, load  # noqa: F401
from . import data  # noqa: F401
from . import module, optimizer  # noqa: F401,E402
from ._dlpack import from_dlpack  # noqa: F401
from . import jit  # noqa: F401
from . import utils  # noqa: F401,E402
from .utils import comp_graph_tools as cgtools  # noqa: F401,E402
from . import hub  # noqa: F401,E402
from .functional import debug_param as _debug_param  # noqa: F401,E402
from . import amp  # noqa: F401,E402
from . import dtr  # noqa: F401,E402
config.install(__import__("sys").modules[__name__])  # tianyuan.benchmark_kernel etc.
