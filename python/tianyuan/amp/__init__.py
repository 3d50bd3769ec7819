"""Automatic mixed precision (MegEngine's ``megengine.amp``): :class:`autocast`,
:class:`GradScaler`, and the NCHW -> NHWC converters.

``amp.enabled``, ``amp.low_prec_dtype`` and ``amp.high_prec_dtype`` read (and, assigned, set)
the current autocast state, as in MegEngine.
"""
import sys
import types

from .. import _amp_state
from .autocast import autocast, LOW_PREC_OPS, HIGH_PREC_OPS  # noqa: F401
from .autocast import _set  # noqa: E402
from .convert_format import convert_module_format, convert_tensor_format  # noqa: F401
from .grad_scaler import GradScaler, Xla_GradScaler  # noqa: F401

__all__ = ["autocast", "GradScaler", "Xla_GradScaler", "convert_module_format",
           "convert_tensor_format", "enabled", "low_prec_dtype", "high_prec_dtype"]


class _AmpModule(types.ModuleType):
    enabled = property(lambda self: _amp_state.enabled,
                       lambda self, v: _set(enabled=v), doc="whether autocast is on")
    low_prec_dtype = property(lambda self: _amp_state.low,
                              lambda self, v: _set(low=v), doc="autocast's low dtype")
    high_prec_dtype = property(lambda self: _amp_state.high,
                               lambda self, v: _set(high=v), doc="autocast's high dtype")


sys.modules[__name__].__class__ = _AmpModule
