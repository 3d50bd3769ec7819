"""PixelShuffle."""
from ._utils import has
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
        r = self.upscale_factor
        if has("pixel_shuffle"):
            from .. import functional as F
            return F.pixel_shuffle(x, r)
        shape = tuple(x.shape)
        if len(shape) < 3 or shape[-3] % (r * r):
            raise ValueError(f"PixelShuffle({r}): input shape {shape} needs >= 3 dims and "
                             f"channels divisible by {r * r}")
        lead, (c, h, w) = shape[:-3], shape[-3:]
        n = 1
        for s in lead:
            n *= s
        oc = c // (r * r)
        y = x.reshape(n, oc, r, r, h, w).transpose(0, 1, 4, 2, 5, 3)
        return y.reshape(lead + (oc, h * r, w * r))
