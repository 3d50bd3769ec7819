"""LayerNorm, GroupNorm, InstanceNorm (fused F ops when present, else composed of means)."""
from . import init
from .._args import to_ints
from ._utils import has, param_filled
from .module import Module


def _normalize(x, axes, eps):
    from .. import functional as F
    mean = F.mean(x, axes, keepdims=True)
    d = x - mean
    var = F.mean(d * d, axes, keepdims=True)
    return d / F.sqrt(var + eps)


class GroupNorm(Module):
    """Normalises each of ``num_groups`` channel groups over (C/G, H, W); weight and bias
    are (num_channels,).

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.GroupNorm(2, 4)
    >>> m(ty.tensor(np.random.rand(2, 4, 3, 3).astype("float32"))).shape
    (2, 4, 3, 3)
    """
    _flatten_state = True

    def __init__(self, num_groups, num_channels, eps=1e-5, affine=True, **kwargs):
        super().__init__(**kwargs)
        if num_channels % num_groups != 0:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups "
                             f"({num_groups})")
        self.num_groups = num_groups
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = param_filled(self, num_channels, 1.0)
            self.bias = param_filled(self, num_channels, 0.0)
        else:
            self.weight = None
            self.bias = None

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        if has("group_norm"):
            from .. import functional as F
            return F.group_norm(x, self.num_groups, self.affine, self.weight, self.bias,
                                self.eps)
        shape = tuple(x.shape)
        n, c = shape[0], shape[1]
        y = _normalize(x.reshape(n, self.num_groups, -1), [2], self.eps).reshape(shape)
        if self.affine:
            bshape = (1, c) + (1,) * (len(shape) - 2)
            y = y * self.weight.reshape(bshape) + self.bias.reshape(bshape)
        return y

    def _module_info_string(self):
        return (f"groups={self.num_groups}, channels={self.num_channels}, eps={self.eps}, "
                f"affine={self.affine}")


class InstanceNorm(Module):
    """Normalises each channel of each sample over its spatial dims; weight and bias are
    (num_channels,).

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> M.InstanceNorm(3)(ty.tensor(np.random.rand(2, 3, 4, 4).astype("float32"))).shape
    (2, 3, 4, 4)
    """
    _flatten_state = True

    def __init__(self, num_channels, eps=1e-5, affine=True, **kwargs):
        super().__init__(**kwargs)
        self.num_channels = num_channels
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = param_filled(self, num_channels, 1.0)
            self.bias = param_filled(self, num_channels, 0.0)
        else:
            self.weight = None
            self.bias = None

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        if has("instance_norm"):
            from .. import functional as F
            return F.instance_norm(x, self.affine, self.weight, self.bias, self.eps)
        shape = tuple(x.shape)
        n, c = shape[0], shape[1]
        y = _normalize(x.reshape(n, c, -1), [2], self.eps).reshape(shape)
        if self.affine:
            bshape = (1, c) + (1,) * (len(shape) - 2)
            y = y * self.weight.reshape(bshape) + self.bias.reshape(bshape)
        return y

    def _module_info_string(self):
        return f"channels={self.num_channels}, eps={self.eps}, affine={self.affine}"


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` dims; weight and bias have that
    shape.

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.LayerNorm(4)
    >>> y = m(ty.tensor(np.arange(8, dtype="float32").reshape(2, 4)))
    >>> np.allclose(y.numpy().mean(axis=1), 0, atol=1e-6)
    True
    """
    _flatten_state = True

    def __init__(self, normalized_shape, eps=1e-5, affine=True, **kwargs):
        super().__init__(**kwargs)
        self.normalized_shape = tuple(to_ints(normalized_shape, "normalized_shape", "LayerNorm"))
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = param_filled(self, self.normalized_shape, 1.0)
            self.bias = param_filled(self, self.normalized_shape, 0.0)
        else:
            self.weight = None
            self.bias = None

    def reset_parameters(self):
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def forward(self, x):
        if has("layer_norm"):
            from .. import functional as F
            return F.layer_norm(x, self.normalized_shape, self.affine, self.weight, self.bias,
                                self.eps)
        k = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - k:]) != self.normalized_shape:
            raise ValueError(f"LayerNorm{self.normalized_shape}: input shape "
                             f"{tuple(x.shape)} does not end with it")
        y = _normalize(x, list(range(x.ndim - k, x.ndim)), self.eps)
        if self.affine:
            y = y * self.weight + self.bias
        return y

    def _module_info_string(self):
        return f"{self.normalized_shape}, eps={self.eps}, affine={self.affine}"
