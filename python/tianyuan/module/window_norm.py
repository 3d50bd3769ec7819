"""SlidingWindow, SlidingWindowTranspose, LocalResponseNorm and GeneralNorm (MegEngine's
modules over the functions of the same names)."""
import numpy as np

from .. import functional as F
from .._args import to_ints
from ._utils import param
from . import init
from .module import Module


class SlidingWindow(Module):
    """(N, C, H, W) -> (N, C, OH, OW, KH, KW): the window at every output position.

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> M.SlidingWindow(3, 1, 2, 2)(ty.tensor(np.zeros((1, 1, 5, 6)))).shape
    (1, 1, 2, 2, 3, 3)
    """

    def __init__(self, kernel_size, padding=0, stride=1, dilation=1, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.padding = kernel_size, padding
        self.stride, self.dilation = stride, dilation

    def forward(self, inp):
        return F.sliding_window(inp, self.kernel_size, self.padding, self.stride, self.dilation)


class SlidingWindowTranspose(Module):
    """(N, C, OH, OW, KH, KW) -> (N, C, H, W) = output_size: window entries summed back."""

    def __init__(self, output_size, kernel_size, padding=0, stride=1, dilation=1, **kwargs):
        super().__init__(**kwargs)
        self.output_size, self.kernel_size = output_size, kernel_size
        self.padding, self.stride, self.dilation = padding, stride, dilation

    def forward(self, inp):
        return F.sliding_window_transpose(inp, self.output_size, self.kernel_size, self.padding,
                                          self.stride, self.dilation)


class LocalResponseNorm(Module):
    """Local response normalisation across channels (see F.local_response_norm)."""

    def __init__(self, kernel_size=5, k=2.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size, self.k, self.alpha, self.beta = kernel_size, k, alpha, beta

    def forward(self, inp):
        return F.local_response_norm(inp, self.kernel_size, self.k, self.alpha, self.beta)

    def _module_info_string(self):
        return f"kernel_size={self.kernel_size}, k={self.k}, alpha={self.alpha}, beta={self.beta}"


class GeneralNorm(Module):
    """Normalisation over ``normalized_axis`` with learnt weight (ones) and bias (zeros) of
    shape ``normalized_shape`` when affine (see F.general_norm).

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.GeneralNorm((3, 4), (1, 2))
    >>> m.weight.shape, m(ty.tensor(np.random.rand(2, 3, 4))).shape
    ((3, 4), (2, 3, 4))
    """

    def __init__(self, normalized_shape=None, normalized_axis=-1, eps=1e-5, affine=True,
                 **kwargs):
        super().__init__(**kwargs)
        if affine and normalized_shape is None:
            raise ValueError("GeneralNorm: normalized_shape must be given when affine is True")
        self.normalized_shape = (None if normalized_shape is None else
                                 tuple(to_ints(normalized_shape, "normalized_shape",
                                               "GeneralNorm")))
        self.normalized_axis = normalized_axis
        self.eps, self.affine = eps, affine
        if affine:
            self.weight = param(np.ones(self.normalized_shape))
            self.bias = param(np.zeros(self.normalized_shape))
        else:
            self.weight = self.bias = None

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        return F.general_norm(x, self.normalized_axis, self.affine, self.weight, self.bias,
                              self.eps)

    def _module_info_string(self):
        return (f"normalized_shape={self.normalized_shape}, normalized_axis="
                f"{self.normalized_axis}, eps={self.eps}, affine={self.affine}")
