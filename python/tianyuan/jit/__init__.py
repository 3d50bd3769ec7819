"""tianyuan.jit: run a Python function as a recorded, replayed graph (MegEngine's ``jit``)."""
from .tracing import trace, exclude_from_trace, TraceError  # noqa: F401
from .sublinear_memory_config import SublinearMemoryConfig  # noqa: F401
from .dtr_config import DTRConfig  # noqa: F401
from .graph_opt_config import GraphOptimizationConfig  # noqa: F401
from .partial_tracing import partial_trace  # noqa: F401
