"""tianyuan.autodiff: GradManager and custom Functions (MegEngine semantics)."""
from .grad_manager import GradManager  # noqa: F401
from .function import Function  # noqa: F401
