"""tianyuan.functional: MegEngine's functional API (``import tianyuan.functional as F``)."""
from .elemwise import *  # noqa: F401,F403
from .math import *  # noqa: F401,F403
from .tensor import *  # noqa: F401,F403
from . import elemwise, math, tensor  # noqa: F401
from .nn import *  # noqa: F401,F403
from . import nn  # noqa: F401
from .metric import topk_accuracy  # noqa: F401,E402  (F.loss and F.metric load with .nn)
from .creation import *  # noqa: F401,F403,E402
from .linalg import *  # noqa: F401,F403,E402  (matmul, dot, linear; also F.nn.linear)
from .conv import *  # noqa: F401,F403,E402  (conv1d, conv2d, conv_transpose2d; also in F.nn)
from .shape_index import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403,E402  (max/avg/adaptive pool2d; also in F.nn)
from . import quantized  # noqa: F401,E402  (conv_bias_activation)
from . import debug_param  # noqa: F401,E402
from . import vision  # noqa: F401,E402  (F.vision; remap and the warps are also in F and F.nn)
from .vision import remap, warp_affine, warp_perspective  # noqa: F401,E402
from .vision import deformable_psroi_pooling  # noqa: F401,E402
nn.deformable_psroi_pooling = deformable_psroi_pooling  # MegEngine's F.nn has it too
