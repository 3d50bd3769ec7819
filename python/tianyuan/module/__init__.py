"""tianyuan.module: layers with parameters (MegEngine's ``megengine.module``).

>>> import numpy as np, tianyuan as ty
>>> import tianyuan.module as M
>>> net = M.Sequential(M.Identity(), M.ReLU())
>>> net(ty.tensor([-1.0, 1.0])).numpy().tolist()
[0.0, 1.0]
"""
from . import init  # noqa: F401
from .module import Module, HookHandler, StateDictError  # noqa: F401
from .sequential import Sequential  # noqa: F401
from .linear import Linear, LinearRelu, Identity  # noqa: F401
from .conv import Conv1d, Conv2d, ConvTranspose2d, ConvRelu2d, ConvTransposeRelu2d  # noqa: F401
from .batchnorm import BatchNorm1d, BatchNorm2d, SyncBatchNorm  # noqa: F401
from .normalization import LayerNorm, GroupNorm, InstanceNorm  # noqa: F401
from .activation import ReLU, LeakyReLU, PReLU, GELU, SiLU, Sigmoid, Softmax  # noqa: F401
from .pooling import MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .elemwise import Elemwise  # noqa: F401
from .concat import Concat  # noqa: F401
from .padding import Pad  # noqa: F401
from .pixel_shuffle import PixelShuffle  # noqa: F401
from .multiheadattn import MultiHeadAttention  # noqa: F401
from .rnn import RNNCell, LSTMCell, GRUCell, RNN, LSTM, GRU  # noqa: F401
from .quant_dequant import QuantStub, DequantStub  # noqa: F401
from .conv_bn import ConvBn2d, ConvBnRelu2d  # noqa: F401
from .conv_transpose_bn import ConvTransposeBn2d, ConvTransposeBnRelu2d  # noqa: F401
from .linear_bn import LinearBn1d, LinearBnRelu1d  # noqa: F401
from .batch_matmul_activation import BatchMatMulActivation  # noqa: F401
from .conv_more import (Conv3d, ConvTranspose3d, LocalConv2d, DeformableConv2d,  # noqa: F401
                        RegionRestrictedConv)
from .window_norm import (SlidingWindow, SlidingWindowTranspose, LocalResponseNorm,  # noqa: F401
                          GeneralNorm)
from .vision import (  # noqa: F401,E402
    ActiveBlur, AdditiveElemwise, DeformablePSROIPooling, AdditiveGaussianNoise, AdditiveLaplaceNoise,
    AdditivePoissonNoise, CropAndPad, Cutmix, Dilation, Emboss, FillPoly, Flip, GaussianBlur,
    LinearContrast, Mixup, Remap, Resize, Rot90, Rotate, Sharpen)
