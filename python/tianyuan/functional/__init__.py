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
from .tensor_more import *  # noqa: F401,F403,E402  (diag, meshgrid, cross)
from .nn_more import *  # noqa: F401,F403,E402  (prelu, pixel_shuffle, lrn, general_norm)
from .einsum import einsum  # noqa: F401,E402
from .window import *  # noqa: F401,F403,E402  (sliding windows, conv3d, local/deformable conv)
from .attention import multi_head_attention  # noqa: F401,E402
from . import utils  # noqa: F401,E402


def _attach_nn_extras():
    """MegEngine lists these under F.nn (and F.math / F.tensor) too; those are other files."""
    from . import nn, nn_more, window, attention
    for mod in (nn_more, window, attention):
        for name in mod.__all__:
            setattr(nn, name, getattr(mod, name))
            if name not in nn.__all__:
                nn.__all__.append(name)
    from . import linalg, math as _math, tensor as _tensor, tensor_more
    for mod, names in ((_math, ("matinv", "svd", "cross")), (_tensor, ("diag", "meshgrid"))):
        for name in names:
            fn = getattr(linalg, name, None) or getattr(tensor_more, name)
            setattr(mod, name, fn)
            if name not in mod.__all__:
                mod.__all__.append(name)


_attach_nn_extras()
from . import distributed  # noqa: F401,E402  (collectives; F.sync_batch_norm comes with .nn)
from . import vision  # noqa: F401,E402  (F.vision; remap and the warps are also in F and F.nn)
from .vision import remap, warp_affine, warp_perspective  # noqa: F401,E402
from .vision import deformable_psroi_pooling  # noqa: F401,E402
nn.deformable_psroi_pooling = deformable_psroi_pooling  # MegEngine's F.nn has it too
