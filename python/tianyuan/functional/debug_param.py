"""Execution strategy of algorithm choice (MegEngine's ``functional.debug_param``).

The strategy is a view of two settings of :mod:`tianyuan.config`: PROFILE is
``config.benchmark_kernel``, REPRODUCIBLE is ``config.deterministic_kernel``, and HEURISTIC
is "not PROFILE". What they change in this build is described in :mod:`tianyuan.config`.

>>> import tianyuan.functional.debug_param as dp
>>> dp.set_execution_strategy("PROFILE_REPRODUCIBLE")
>>> dp.get_execution_strategy() == dp.Strategy.PROFILE | dp.Strategy.REPRODUCIBLE
True
>>> dp.set_execution_strategy("HEURISTIC")
"""
import enum
import types

from .. import config as _config
from ..logger import get_logger

__all__ = ["Strategy", "get_execution_strategy", "set_execution_strategy",
           "get_conv_execution_strategy", "set_conv_execution_strategy"]

logger = get_logger(__name__)


class Strategy(enum.IntFlag):
    """Algorithm-choice flags (MegEngine's ``ops.builtin.Strategy`` values)."""
    HEURISTIC = 1
    PROFILE = 2
    REPRODUCIBLE = 4
    OPTIMIZED = 8


builtin = types.SimpleNamespace(Strategy=Strategy)  # where MegEngine code finds Strategy

_NAMES = ("HEURISTIC", "PROFILE", "REPRODUCIBLE")


def get_execution_strategy():
    """PROFILE or HEURISTIC, with REPRODUCIBLE added when deterministic kernels are asked for."""
    s = Strategy.PROFILE if _config.get("benchmark_kernel") else Strategy.HEURISTIC
    if _config.get("deterministic_kernel"):
        s |= Strategy.REPRODUCIBLE
    return s


def set_execution_strategy(option):
    """Sets the strategy from a :class:`Strategy` or a string of flag names joined by "_"
    ("HEURISTIC", "PROFILE", "REPRODUCIBLE", "PROFILE_REPRODUCIBLE", ...); HEURISTIC together
    with PROFILE is a ValueError."""
    if isinstance(option, Strategy):
        profile = bool(option & Strategy.PROFILE)
        if profile and option & Strategy.HEURISTIC:
            raise ValueError("set_execution_strategy: PROFILE and HEURISTIC exclude each other")
        reproducible = bool(option & Strategy.REPRODUCIBLE)
    elif isinstance(option, str):
        parts = option.upper().split("_")
        bad = [p for p in parts if p not in _NAMES]
        if bad or not option:
            raise ValueError(f"set_execution_strategy: unknown option {option!r}; expected "
                             f"names from {_NAMES} joined by '_'")
        if "PROFILE" in parts and "HEURISTIC" in parts:
            raise ValueError("set_execution_strategy: PROFILE and HEURISTIC exclude each other")
        profile, reproducible = "PROFILE" in parts, "REPRODUCIBLE" in parts
    else:
        raise TypeError(f"set_execution_strategy: expected a Strategy or a str, got "
                        f"{type(option).__name__}")
    _config.set("benchmark_kernel", profile)
    _config.set("deterministic_kernel", reproducible)


def deprecated(version, reason=None):
    """Marks a function as deprecated: calling it logs a warning once naming ``version``."""
    def wrap(fn):
        warned = []

        def inner(*args, **kwargs):
            if not warned:
                warned.append(True)
                logger.warning(f"{fn.__name__} is deprecated since {version}"
                               + (f": {reason}" if reason else ""))
            return fn(*args, **kwargs)
        inner.__name__, inner.__doc__ = fn.__name__, fn.__doc__
        return inner
    return wrap


@deprecated("1.3", "use get_execution_strategy")
def get_conv_execution_strategy():
    """Deprecated alias of :func:`get_execution_strategy`."""
    return get_execution_strategy()


@deprecated("1.3", "use set_execution_strategy")
def set_conv_execution_strategy(option):
    """Deprecated alias of :func:`set_execution_strategy`."""
    set_execution_strategy(option)
