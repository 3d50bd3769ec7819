"""PixelShuffle."""
from .._args import to_int
from .module import Module


class PixelShuffle(Module):
    """(..., C*r*r, H, W) -> (..., C, H*r, W*r).

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> M.PixelShuffle(2)(ty.tensor(np.zeros((1, 8, 3, 3), "float32"))).shape
    (1, 2, 6, 6)
    """

    def __init__(self, upscale_factor, **kwargs):
        super().__init__(**kwargs)
        self.upscale_factor = to_int(upscale_factor, "upscale_factor", "PixelShuffle")

    def forward(self, x):
        from .. import functional as F
        return F.pixel_shuffle(x, self.upscale_factor)
