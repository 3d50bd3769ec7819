"""Global settings (MegEngine's ``megengine.config``), read and written as attributes:

>>> import tianyuan as ty
>>> ty.config.async_level
2
>>> ty.config.benchmark_kernel = True
>>> ty.functional.debug_param.get_execution_strategy()
<Strategy.PROFILE: 2>
>>> ty.config.benchmark_kernel = False

Each setting is validated when set (a wrong type or value is a TypeError/ValueError naming it)
and kept in this module's ``_settings``, the one place every reader looks: the execution
strategy of :mod:`tianyuan.functional.debug_param` is a view of ``benchmark_kernel`` and
``deterministic_kernel`` (as in MegEngine). The same names can be set on the ``tianyuan``
package itself (``tianyuan.benchmark_kernel = True``).

What each one affects in this build:

* ``benchmark_kernel`` (default False): choose algorithms by profiling them (MegEngine's
  fastrun): an op with several algorithms (conv2d's forward) times them on its first call of
  each shape and keeps the fastest, in memory and in a cache file (``TY_FASTRUN_CACHE``, else
  ``$XDG_CACHE_HOME/tianyuan/fastrun.cache`` or ``~/.cache/tianyuan/fastrun.cache``) that later
  processes read instead of profiling. Eager calls and traces both follow it; a trace records
  the algorithm each node used, and ``dump`` stores it, so replays and deployed runs give the
  eager bits. Off, algorithms are chosen from shapes, params, dtype and ISA by a heuristic.
* ``deterministic_kernel`` (default False): the request for reproducible algorithms only.
  Every kernel here is deterministic by construction (results never depend on the thread
  count or timing), so it removes no candidate. It does change gradients' bits: their sums
  over the batch axis become pairwise trees over the batch index (``src/ops/batch_tree.h``),
  the tree the deterministic all-reduce uses over ranks, so data-parallel training on a
  power-of-two world equals one process on the whole batch bit for bit
  (``tianyuan.distributed.set_deterministic``).
* ``async_level`` (0, 1 or 2; default 2): how far MegEngine lets ops run ahead of Python.
  Ops here run synchronously at every level, so errors are always raised by the call that
  caused them (MegEngine's level 0 behaviour).
* ``disable_memory_forwarding`` (default False): whether view-making ops may share their
  input's memory. Views (reshape, transpose, slicing, broadcast) always share storage here.
* ``benchmark_with_subprocess`` (default False): run fastrun profiling in a child process;
  kept with ``benchmark_kernel`` for the same chooser.
"""
import sys
import types

__all__ = ["benchmark_kernel", "deterministic_kernel", "async_level",
           "disable_memory_forwarding", "benchmark_with_subprocess"]

_settings = {"benchmark_kernel": False, "deterministic_kernel": False, "async_level": 2,
             "disable_memory_forwarding": False, "benchmark_with_subprocess": False}


def _check_bool(name, value):
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):  # MegEngine code writes 0/1 too
        return bool(value)
    raise TypeError(f"config.{name} must be a bool, got {value!r}")


def _check_async_level(name, value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"config.{name} must be an int in 0..2, got {value!r}")
    if value not in (0, 1, 2):
        raise ValueError(f"config.{name} must be 0, 1 or 2, got {value}")
    return value


_CHECKS = {"benchmark_kernel": _check_bool, "deterministic_kernel": _check_bool,
           "async_level": _check_async_level, "disable_memory_forwarding": _check_bool,
           "benchmark_with_subprocess": _check_bool}


def get(name):
    """The current value of setting ``name``."""
    return _settings[name]


def set(name, value):  # noqa: A001  (module-level; shadows nothing users reach)
    """Validates and stores setting ``name``."""
    if name not in _CHECKS:
        raise AttributeError(f"tianyuan.config has no setting {name!r}")
    _settings[name] = _CHECKS[name](name, value)
    if name in ("benchmark_kernel", "deterministic_kernel"):
        _push_policy()


def _push_policy():
    """Gives the C chooser the policy the two settings ask for (ty_algo_policy's bits)."""
    from . import _C
    _C.set_algo_policy(((2 if _settings["benchmark_kernel"] else 0)
                        | (4 if _settings["deterministic_kernel"] else 0)) or 1)


def _setting_property(name):
    return property(lambda self: _settings[name], lambda self, v: set(name, v),
                    doc=f"tianyuan.config.{name}")


class _SettingsModule(types.ModuleType):
    """A module whose settings are properties, so assignments are validated."""


for _name in _CHECKS:
    setattr(_SettingsModule, _name, _setting_property(_name))


def install(module):
    """Gives ``module`` (this one, and the tianyuan package) the settings as attributes."""
    if type(module) is types.ModuleType:
        module.__class__ = _SettingsModule


install(sys.modules[__name__])
