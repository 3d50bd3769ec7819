"""Models published through a ``hubconf.py``, and their pretrained weights (MegEngine's hub).

See :mod:`tianyuan.hub.hub` for the semantics and for where tianyuan is stricter than
MegEngine (safe weight loading, atomic and verified downloads).
"""
from .hub import (help, import_module, list, load, load_serialized_obj_from_url,  # noqa: F401
                  pretrained)
from . import exceptions  # noqa: F401
from ._cache import get_home  # noqa: F401
from ._download import download as download_url_to_file  # noqa: F401

__all__ = ["list", "load", "help", "load_serialized_obj_from_url", "pretrained",
           "import_module"]
