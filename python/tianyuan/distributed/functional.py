"""``tianyuan.distributed.functional``: the collectives (the same functions as
``tianyuan.functional.distributed``)."""
from ..functional.distributed import *  # noqa: F401,F403
from ..functional.distributed import __all__  # noqa: F401
