"""Compatibility helpers: run programs written for MegEngine on tianyuan.

``megengine_alias()`` makes ``import megengine`` (and every ``megengine.<sub>``) import
tianyuan; ``python -m tianyuan.compat script.py [args]`` runs a script, a module (``-m``) or a
command (``-c``) with the alias on, without changing it, and the processes it starts too
(``SHIM_PATH``, a directory with a stand-in ``megengine`` package, goes on their path; put it
on ``PYTHONPATH`` yourself to alias without the runner). The function and the runner refuse to
hide a real installed MegEngine unless forced (``force=True`` / ``--force``); putting the shim
on the path is itself that choice.
"""
from ._alias import (SHIM_PATH, AliasError, is_active, megengine_alias,  # noqa: F401
                     remove_megengine_alias)

__all__ = ["SHIM_PATH", "AliasError", "is_active", "megengine_alias", "remove_megengine_alias"]
