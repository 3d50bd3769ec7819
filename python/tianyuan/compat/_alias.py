"""The ``megengine`` alias: an import hook that answers ``import megengine`` and every
``import megengine.<sub>`` with tianyuan's module of the same path.

The alias is the same module object, not a copy or a proxy: ``megengine.module.Conv2d is
tianyuan.module.Conv2d``, so isinstance checks, pickling by qualified name and monkeypatching
behave as in a program written for tianyuan. Sub-modules resolve lazily: ``megengine.models``
imports ``tianyuan.models`` the first time it is asked for.

It is opt-in and never hides a real MegEngine: :func:`megengine_alias` refuses (with the
reason) when a ``megengine`` package is installed or already imported, unless ``force=True``.
"""
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

ALIAS = "megengine"
TARGET = "tianyuan"
# A directory holding only a stand-in `megengine` package (see _shim/megengine/__init__.py):
# on PYTHONPATH it carries the alias into child processes.
SHIM_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_shim")


class AliasError(ImportError):
    """The alias cannot be installed (a real MegEngine is present) or a name has no
    counterpart in tianyuan."""


def target_name(fullname):
    """The tianyuan module that answers ``fullname`` (a ``megengine`` path): the same path
    under ``tianyuan`` (tianyuan keeps MegEngine's module layout, ``core.tensor.dtype``
    included)."""
    return TARGET + fullname[len(ALIAS):]


class _AliasLoader(importlib.abc.Loader):
    """Hands back the already-imported tianyuan module instead of creating one."""

    def __init__(self, module):
        self.module = module
        self.own_spec = module.__spec__

    def create_module(self, spec):
        return self.module

    def exec_module(self, module):
        # module_from_spec stamped the alias spec on the module: give tianyuan's back, so
        # importlib.reload and find_spec of the tianyuan name still see the real module.
        module.__spec__ = self.own_spec


class MegEngineFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder for ``megengine`` and ``megengine.*``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != ALIAS and not fullname.startswith(ALIAS + "."):
            return None
        name = target_name(fullname)
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:    # tianyuan's module exists but failed inside: show that
                raise
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: tianyuan has no counterpart ({name}) of this "
                f"MegEngine module yet", name=fullname) from None
        is_package = hasattr(module, "__path__")
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(module),
                                              is_package=is_package)


_FINDER = MegEngineFinder()


def _is_shim(spec):
    locations = list(getattr(spec, "submodule_search_locations", None) or [])
    return bool(locations) and all(os.path.dirname(os.path.abspath(p)) == SHIM_PATH
                                   for p in locations)


def _real_megengine():
    """Why a real MegEngine is present, or None."""
    loaded = sys.modules.get(ALIAS)
    if loaded is not None:
        if getattr(loaded, "__name__", None) == TARGET or _is_shim(loaded.__spec__):
            return None
        where = getattr(loaded, "__file__", loaded)
        return f"a module named {ALIAS!r} is already imported ({where})"
    if _FINDER in sys.meta_path:
        return None
    spec = importlib.util.find_spec(ALIAS)
    if spec is not None and not _is_shim(spec):
        where = spec.origin or spec.submodule_search_locations
        return f"a {ALIAS!r} package is installed ({where})"
    return None


def is_active():
    """Whether ``import megengine`` currently gives tianyuan."""
    return _FINDER in sys.meta_path


def megengine_alias(force=False):
    """Make ``import megengine`` (and every ``megengine.<sub>``) import tianyuan.

    Idempotent. Raises :class:`AliasError` when a real MegEngine is installed or imported,
    unless ``force=True`` (then tianyuan takes the name for this process: modules already
    imported from the real package are dropped from ``sys.modules``).

    >>> import tianyuan.compat
    >>> tianyuan.compat.megengine_alias(force=True)
    >>> import megengine.functional as F
    >>> import tianyuan
    >>> F is tianyuan.functional
    True
    >>> tianyuan.compat.remove_megengine_alias()
    """
    reason = _real_megengine()
    if reason is not None and not force:
        raise AliasError(f"megengine_alias: {reason}; pass force=True to use tianyuan under "
                         f"that name anyway")
    if is_active():
        return
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _FINDER)
    # Register what tianyuan has already imported, so that `import megengine.tensor` finds
    # the module in sys.modules and importlib does not re-bind the parent's attribute (the
    # package attribute `tensor` is the factory function, as in MegEngine).
    target = importlib.import_module(TARGET)
    sys.modules[ALIAS] = target
    for name, module in list(sys.modules.items()):
        if name.startswith(TARGET + ".") and module is not None:
            sys.modules.setdefault(ALIAS + name[len(TARGET):], module)


def remove_megengine_alias():
    """Undo :func:`megengine_alias`: ``megengine`` names are forgotten and the hook removed."""
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [n for n in sys.modules if n == ALIAS or n.startswith(ALIAS + ".")]:
        del sys.modules[name]
