"""Concat."""
from ._utils import need
from .module import Module


class Concat(Module):
    """``forward(inps, axis=0)`` concatenates a list of tensors along axis.

    >>> import tianyuan.module as M
    >>> type(M.Concat()).__name__
    'Concat'
    """

    def forward(self, inps, axis=0):
        return need("concat", "Concat")(inps, axis)
