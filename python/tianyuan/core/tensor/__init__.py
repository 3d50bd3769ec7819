"""``tianyuan.core.tensor``: MegEngine's ``megengine.core.tensor`` package (its ``dtype``)."""
from . import dtype  # noqa: F401
