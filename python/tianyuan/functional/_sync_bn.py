"""sync_batch_norm: batch normalisation with statistics over every rank's batch."""
import numpy as np

from .. import _amp_state as _amp
from .elemwise import sqrt as _sqrt, maximum as _maximum
from .math import sum as _sum
from .nn import _affine, _channel_param, _check_float, batch_norm


def _group_size(group):
    from ..distributed.group import _as_group
    return _as_group(group).size


def sync_batch_norm(inp, running_mean, running_var, weight=None, bias=None, training=False,
                    momentum=0.9, eps=1e-5, eps_mode="additive", group=None):
    if eps_mode not in ("additive", "max"):
        raise ValueError(f"sync_batch_norm: eps_mode must be 'additive' or 'max', got "
                         f"{eps_mode!r}")
    if not training or (_group_size(group) == 1 and eps_mode == "additive"):
        return batch_norm(inp, running_mean, running_var, weight, bias, training=training,
                          momentum=momentum, eps=eps)
    from .distributed import all_reduce_sum
    from . import concat
    from ..tensor import Tensor
    _check_float("sync_batch_norm", inp)
    inp = _amp.to_high(inp)
    if inp.ndim < 2:
        raise ValueError(f"sync_batch_norm: expects an (N, C, ...) input, got shape "
                         f"{tuple(inp.shape)}")
    nd, c = inp.ndim, inp.shape[1]
    w = _channel_param("sync_batch_norm", weight, c, nd, "weight")
    b = _channel_param("sync_batch_norm", bias, c, nd, "bias")
    axes = [0] + list(range(2, nd))
    n_local = int(np.prod([inp.shape[a] for a in axes]))
    # first pass: the group's per-channel sums and element count give the mean
    local = concat([_sum(inp, axes).reshape(-1),
                    Tensor(np.array([n_local], dtype=np.float32))])
    total = all_reduce_sum(local, group)
    n = total[c:].reshape(1)
    stat_shape = [1, c] + [1] * (nd - 2)
    mean = total[:c].reshape(stat_shape) / n
    # second pass: squared deviations from the group mean (stabler than E[x^2] - mean^2)
    d = inp - mean
    var = all_reduce_sum(_sum(d * d, axes).reshape(-1), group).reshape(stat_shape) / n
    denom = _sqrt(var + eps) if eps_mode == "additive" else _sqrt(_maximum(var, eps))
    out = _affine(d / denom, w, b)
    _update_running_group(running_mean, running_var, mean, var, n, momentum)
    return out


def _update_running_group(running_mean, running_var, mean, var, n, momentum):
    """batch_norm's running-stat update with the group's count n (a tensor, so a traced step
    replays it): running = momentum * running + (1 - momentum) * batch, unbiased variance."""
    if running_mean is not None:
        bm = mean.detach().reshape(running_mean.shape).astype(running_mean.dtype)
        running_mean._assign(running_mean.detach() * momentum + bm * (1.0 - momentum))
    if running_var is not None:
        nd = n.detach()
        unbiased = var.detach() * (nd / _maximum(nd - 1.0, 1.0))
        bv = unbiased.reshape(running_var.shape).astype(running_var.dtype)
        running_var._assign(running_var.detach() * momentum + bv * (1.0 - momentum))
