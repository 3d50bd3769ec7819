"""tianyuan.functional: MegEngine's functional API (``import tianyuan.functional as F``)."""
from .elemwise import *  # noqa: F401,F403
from .math import *  # noqa: F401,F403
from .tensor import *  # noqa: F401,F403
from . import elemwise, math, tensor  # noqa: F401
from .nn import *  # noqa: F401,F403
from . import nn  # noqa: F401
