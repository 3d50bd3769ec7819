"""``tianyuan.core``: the paths under ``megengine.core`` that MegEngine programs import
(``megengine.core.tensor.dtype``)."""
from . import tensor  # noqa: F401
