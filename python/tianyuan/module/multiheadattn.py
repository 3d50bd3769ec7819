"""MultiHeadAttention: scaled dot-product attention over several heads, built from F ops."""
import math

import numpy as np

from . import init
from ._utils import linear, need, param_filled
from .linear import Linear
from .module import Module
from ..tensor import Tensor


class MultiHeadAttention(Module):
    """Multi-head scaled dot-product attention (a basic version of MegEngine's).

    Inputs are batch-first (N, L, E) by default (``batch_first=False`` takes (L, N, E)).
    Parameters: ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,) for the query, key and
    value projections (kdim and vdim must equal embed_dim), and ``out_proj`` (a Linear).
    ``forward(query, key=None, value=None, attn_mask=None, key_padding_mask=None,
    need_weights=False)`` returns ``(output, weights or None)``; attn_mask is additive (float,
    broadcast to (N*H, L, S)) or boolean (True = not allowed); key_padding_mask (N, S) is
    boolean (True = padding). Weights returned are averaged over heads.

    >>> import tianyuan.module as M
    >>> m = M.MultiHeadAttention(8, 2)
    >>> m.in_proj_weight.shape
    (24, 8)
    """

    def __init__(self, embed_dim, num_heads, attn_dropout=0.0, out_dropout=0.0, kdim=None,
                 vdim=None, bias=True, batch_first=True, **kwargs):
        super().__init__(**kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads "
                             f"({num_heads})")
        if (kdim or embed_dim) != embed_dim or (vdim or embed_dim) != embed_dim:
            raise NotImplementedError("MultiHeadAttention: kdim/vdim other than embed_dim")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.attn_dropout = attn_dropout
        self.out_dropout = out_dropout
        self.batch_first = batch_first
        self.in_proj_weight = param_filled(self, (3 * embed_dim, embed_dim), 0.0)
        self.in_proj_bias = param_filled(self, (3 * embed_dim,), 0.0) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def _proj(self, x, i):
        e = self.embed_dim
        w = self.in_proj_weight[i * e:(i + 1) * e]
        b = None if self.in_proj_bias is None else self.in_proj_bias[i * e:(i + 1) * e]
        return linear(x, w, b)

    def _heads(self, x):  # (N, L, E) -> (N*H, L, D)
        n, l_ = x.shape[0], x.shape[1]
        return x.reshape(n, l_, self.num_heads, self.head_dim).transpose(0, 2, 1, 3).reshape(
            n * self.num_heads, l_, self.head_dim)

    def forward(self, query, key=None, value=None, attn_mask=None, key_padding_mask=None,
                need_weights=False):
        from .. import functional as F
        key = query if key is None else key
        value = key if value is None else value
        if not self.batch_first:
            query, key, value = (t.transpose(1, 0, 2) for t in (query, key, value))
        n, lq, e = query.shape
        s = key.shape[1]
        h = self.num_heads
        q = self._heads(self._proj(query, 0)) * (1.0 / math.sqrt(self.head_dim))
        k = self._heads(self._proj(key, 1))
        v = self._heads(self._proj(value, 2))
        matmul = need("matmul", "MultiHeadAttention")
        scores = matmul(q, k.transpose(0, 2, 1))  # (N*H, L, S)
        neg = Tensor(np.float32(-np.inf))
        if attn_mask is not None:
            m = attn_mask if isinstance(attn_mask, Tensor) else Tensor(attn_mask)
            if m.dtype == np.bool_:
                scores = F.where(m.broadcast(scores.shape), neg.broadcast(scores.shape), scores)
            else:
                scores = scores + m
        if key_padding_mask is not None:
            m = key_padding_mask if isinstance(key_padding_mask, Tensor) else \
                Tensor(key_padding_mask)
            m = m.astype("bool").reshape(n, 1, 1, s).broadcast(n, h, lq, s).reshape(n * h, lq, s)
            scores = F.where(m, neg.broadcast(scores.shape), scores)
        attn = need("softmax", "MultiHeadAttention")(scores, -1)
        if self.training and self.attn_dropout > 0:
            attn = need("dropout", "MultiHeadAttention")(attn, self.attn_dropout, training=True)
        out = matmul(attn, v)  # (N*H, L, D)
        out = out.reshape(n, h, lq, self.head_dim).transpose(0, 2, 1, 3).reshape(n, lq, e)
        out = self.out_proj(out)
        if self.training and self.out_dropout > 0:
            out = need("dropout", "MultiHeadAttention")(out, self.out_dropout, training=True)
        if not self.batch_first:
            out = out.transpose(1, 0, 2)
        weights = None
        if need_weights:
            weights = F.mean(attn.reshape(n, h, lq, s), 1)
        return out, weights

    def _module_info_string(self):
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
