"""Compatibility helpers: run programs written for MegEngine on tianyuan.

``megengine_alias()`` makes ``import megengine`` (and every ``megengine.<sub>``) import
tianyuan; ``python -m tianyuan.compat script.py [args]`` runs a script, a module (``-m``) or a
command (``-c``) with the alias on, without changing it. Both are opt-in and refuse to hide a
real installed MegEngine unless forced (``force=True`` / ``--force``).
"""
from ._alias import AliasError, is_active, megengine_alias, remove_megengine_alias  # noqa: F401

__all__ = ["AliasError", "is_active", "megengine_alias", "remove_megengine_alias"]
