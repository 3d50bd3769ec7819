"""BatchNorm1d / BatchNorm2d (MegEngine semantics)."""
import numpy as np

from . import init
from ._utils import need, param_filled
from .module import Module
from ..tensor import Tensor


class _BatchNorm(Module):
    _flatten_state = True

    def __init__(self, num_features, eps=1e-5, momentum=0.9, affine=True,
                 track_running_stats=True, freeze=False, **kwargs):
        super().__init__(**kwargs)
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        self._track_running_stats_saved = track_running_stats
        self.freeze = freeze
        if freeze and not track_running_stats:
            raise ValueError("freeze=True needs track_running_stats=True")
        tshape = (1, num_features, 1, 1)
        if affine:
            self.weight = param_filled(self, tshape, 1.0)
            self.bias = param_filled(self, tshape, 0.0)
        else:
            self.weight = None
            self.bias = None
        if track_running_stats:
            self.running_mean = Tensor(np.zeros(tshape, dtype=np.float32))
            self.running_var = Tensor(np.ones(tshape, dtype=np.float32))
        else:
            self.running_mean = None
            self.running_var = None

    def reset_running_stats(self):
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input_ndim(self, inp):
        raise NotImplementedError

    def forward(self, inp):
        self._check_input_ndim(inp)
        if not self._track_running_stats_saved and self.track_running_stats:
            raise RuntimeError("track_running_stats cannot be switched on after construction "
                               "with track_running_stats=False")
        shape = tuple(inp.shape)
        x = inp
        if len(shape) == 2:
            x = inp.reshape(shape[0], shape[1], 1, 1)
        elif len(shape) == 3:
            x = inp.reshape(shape[0], shape[1], shape[2], 1)
        w, b = self.weight, self.bias
        if self.freeze:
            if w is not None:
                w, b = w.detach(), b.detach()
            scale = (self.running_var + self.eps) ** -0.5
            if w is not None:
                scale = scale * w
            shift = -self.running_mean * scale
            if b is not None:
                shift = shift + b
            out = x * scale + shift
        else:
            use_batch = self.training or not self.track_running_stats
            momentum = self.momentum if (self.training and self.track_running_stats) else 0.0
            out = need("batch_norm", type(self).__name__)(
                x, self.running_mean if self.track_running_stats else None,
                self.running_var if self.track_running_stats else None, w, b,
                training=use_batch, momentum=momentum, eps=self.eps)
        if len(shape) != 4:
            out = out.reshape(shape)
        return out

    def _module_info_string(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L).

    Same tensors and conventions as :class:`BatchNorm2d`; MegEngine keeps weight, bias and
    running stats shaped (1, C, 1, 1) here too (``state_dict`` exports them as (C,)).

    >>> import tianyuan.module as M
    >>> M.BatchNorm1d(3).running_mean.shape
    (1, 3, 1, 1)
    """

    def _check_input_ndim(self, inp):
        if inp.ndim not in (2, 3):
            raise ValueError(f"BatchNorm1d expects a 2D or 3D input, got {inp.ndim}D")


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) (MegEngine's ``BatchNorm2d``).

    weight/bias/running_mean/running_var are (1, C, 1, 1). In training the running stats
    update as ``running = momentum * running + (1 - momentum) * batch_stat`` (momentum=0.9 here
    is PyTorch's 0.1), the running variance using the unbiased batch variance.

    >>> import numpy as np, tianyuan.module as M
    >>> bn = M.BatchNorm2d(4)
    >>> bn.weight.shape, bn.running_var.shape
    ((1, 4, 1, 1), (1, 4, 1, 1))
    """

    def _check_input_ndim(self, inp):
        if inp.ndim != 4:
            raise ValueError(f"BatchNorm2d expects a 4D input, got {inp.ndim}D")


class SyncBatchNorm(_BatchNorm):
    """Batch normalisation whose batch statistics are reduced over the processes of ``group``
    (MegEngine's ``SyncBatchNorm``) over (N, C), (N, C, L) or (N, C, H, W).

    In training, the mean and variance are those of the whole group's batch (every rank's
    per-channel sums all-reduced: :func:`tianyuan.functional.sync_batch_norm`); in a world of
    one process they are the local batch's, exactly :class:`BatchNorm2d`'s. ``group`` None is
    the whole world.

    >>> import tianyuan.module as M
    >>> M.SyncBatchNorm(4).running_var.shape
    (1, 4, 1, 1)
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.9, affine=True,
                 track_running_stats=True, freeze=False, group=None, **kwargs):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, freeze,
                         **kwargs)
        self.group = group

    def _check_input_ndim(self, inp):
        if inp.ndim not in (2, 3, 4):
            raise ValueError(f"SyncBatchNorm expects a 2D, 3D or 4D input, got {inp.ndim}D")

    def forward(self, inp):
        from ..distributed.group import _as_group
        if self.freeze or not self.training or _as_group(self.group).size == 1:
            return super().forward(inp)
        self._check_input_ndim(inp)
        from ..functional.distributed import sync_batch_norm
        shape = tuple(inp.shape)
        x = inp.reshape(shape[0], shape[1], -1, 1) if len(shape) != 4 else inp
        track = self.track_running_stats
        out = sync_batch_norm(x, self.running_mean if track else None,
                              self.running_var if track else None, self.weight, self.bias,
                              training=True, momentum=self.momentum, eps=self.eps,
                              group=self.group)
        return out.reshape(shape) if len(shape) != 4 else out
