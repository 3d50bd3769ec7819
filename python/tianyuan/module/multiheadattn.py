"""MultiHeadAttention with MegEngine's parameter layout (one packed ``io_weight_bias``) over
``F.nn.multi_head_attention``."""
import math

import numpy as np

from .module import Module
from ..tensor import Parameter


class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention (MegEngine's ``M.MultiHeadAttention``).

    Parameters: ``io_weight_bias`` of shape (1, (E + kdim + vdim + E) * E + 4E if bias), the
    query, key, value and output projection weights ((E, E), (kdim, E), (vdim, E), (E, E),
    applied as ``x @ W``) then their biases, flat (MegEngine checkpoints load as they are).
    Each weight is initialised Glorot-uniform for its own fan-in and fan-out and the biases
    to zero (MegEngine draws the whole packed row from one Glorot range of the (1, length)
    shape, which shrinks the weights as E grows; its dropout settings were also reset to 0
    there: here they are kept).

    ``forward(query, key=None, value=None, key_padding_mask=None, attn_mask=None,
    need_weights=False, average_attn_weights=False, is_causal=False,
    maybe_cudnn_style_mask=False)`` takes (N, L, E) inputs (key and value default to query)
    and returns ``(output, weights or None)`` (see F.nn.multi_head_attention).

    >>> import numpy as np, tianyuan as ty, tianyuan.module as M
    >>> m = M.MultiHeadAttention(4, 2)
    >>> m.io_weight_bias.shape
    (1, 80)
    >>> m(ty.tensor(np.ones((2, 3, 4), "float32")))[0].shape
    (2, 3, 4)
    """

    def __init__(self, embed_dim, num_heads, attn_dropout=0.0, out_dropout=0.0, bias=True,
                 add_bias_kv=False, add_zero_attn=False, reslink=False, kdim=None, vdim=None,
                 **kwargs):
        super().__init__(**kwargs)
        if num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiHeadAttention: embed_dim ({embed_dim}) must be divisible "
                             f"by num_heads ({num_heads})")
        for name, on in (("add_bias_kv", add_bias_kv), ("add_zero_attn", add_zero_attn),
                         ("reslink", reslink)):
            if on:
                raise ValueError(f"MultiHeadAttention: {name} is not supported")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self.head_dim = embed_dim // num_heads
        self.attn_dropout, self.out_dropout = attn_dropout, out_dropout
        self.bias = bias
        self.add_bias_kv, self.add_zero_attn, self.reslink = False, False, False
        self.bias_k = self.bias_v = None
        self.weight_bias_len = ((2 * embed_dim + self.kdim + self.vdim) * embed_dim +
                                (4 * embed_dim if bias else 0))
        self.io_weight_bias = Parameter(np.zeros((1, self.weight_bias_len), np.float32))
        self.reset_parameters()

    def reset_parameters(self):
        e = self.embed_dim
        rows = np.zeros(self.weight_bias_len, np.float32)
        from .. import random as R
        off = 0
        for fan_in in (e, self.kdim, self.vdim, e):
            a = math.sqrt(6.0 / (fan_in + e))
            n = fan_in * e
            rows[off:off + n] = R.uniform(-a, a, size=(n,)).numpy()
            off += n
        self.io_weight_bias._assign(Parameter(rows.reshape(1, -1)))

    def forward(self, query, key=None, value=None, key_padding_mask=None, attn_mask=None,
                need_weights=False, average_attn_weights=False, is_causal=False,
                maybe_cudnn_style_mask=False):
        from ..functional.attention import multi_head_attention
        key = query if key is None else key
        value = key if value is None else value
        e = self.embed_dim
        return multi_head_attention(
            query, key, value, e, self.num_heads, self.attn_dropout, self.out_dropout,
            self.io_weight_bias, qproj_size=e, kproj_size=e, vproj_size=e, oproj_size=e,
            qbias=self.bias, kbias=self.bias, vbias=self.bias, obias=self.bias,
            key_padding_mask=key_padding_mask, attn_mask=attn_mask, need_weights=need_weights,
            average_attn_weights=average_attn_weights, is_causal=is_causal,
            maybe_cudnn_style_mask=maybe_cudnn_style_mask, training=self.training)

    def _module_info_string(self):
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, bias={self.bias}, "
                f"kdim={self.kdim}, vdim={self.vdim}")
