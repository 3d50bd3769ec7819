"""Embedding."""
import numpy as np

from . import init
from ._utils import has, param, param_filled
from .module import Module
from ..tensor import Tensor


class Embedding(Module):
    """A lookup table: ``forward(indices)`` returns ``weight[indices]`` with weight
    (num_embeddings, embedding_dim) ~ N(0, 1), or a copy of ``initial_weight``.

    padding_idx (an extension; MegEngine rejects it): that row starts as zeros.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> m = M.Embedding(10, 3)
    >>> m.weight.shape
    (10, 3)
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, max_norm=None,
                 norm_type=None, initial_weight=None, freeze=False, **kwargs):
        super().__init__(**kwargs)
        if max_norm is not None or norm_type is not None:
            raise ValueError("Embedding: max_norm/norm_type are not supported")
        if padding_idx is not None and not (-num_embeddings <= padding_idx < num_embeddings):
            raise ValueError(f"padding_idx {padding_idx} out of range for {num_embeddings} "
                             f"embeddings")
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.freeze = freeze
        if initial_weight is None:
            self.weight = param_filled(self, (num_embeddings, embedding_dim), 0.0)
            self.reset_parameters()
        else:
            w = initial_weight.numpy() if isinstance(initial_weight, Tensor) else \
                np.asarray(initial_weight)
            if w.shape != (num_embeddings, embedding_dim):
                raise ValueError(f"initial_weight has shape {w.shape}, expected "
                                 f"{(num_embeddings, embedding_dim)}")
            self.weight = param(w)

    def reset_parameters(self):
        init.normal_(self.weight)
        if self.padding_idx is not None:
            w = self.weight.numpy()
            w[self.padding_idx] = 0
            self.weight._assign(w)

    def forward(self, inputs):
        from .. import functional as F
        w = self.weight.detach() if self.freeze else self.weight
        if has("embedding"):
            return F.embedding(inputs, w)
        shape = tuple(inputs.shape)
        flat = inputs.reshape(-1) if isinstance(inputs, Tensor) else np.asarray(inputs).ravel()
        return w[flat].reshape(shape + (self.embedding_dim,))

    def _module_info_string(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"
