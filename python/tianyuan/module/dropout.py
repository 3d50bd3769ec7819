"""Dropout."""
from ._utils import need
from .module import Module


class Dropout(Module):
    """Zeroes each element with probability ``drop_prob`` in training (scaling the rest by
    1/(1-drop_prob)); the identity in eval mode.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> m = M.Dropout(0.5).eval()
    >>> m(ty.tensor([1.0, 2.0])).numpy().tolist()
    [1.0, 2.0]
    """

    def __init__(self, drop_prob=0.0, **kwargs):
        super().__init__(**kwargs)
        self.drop_prob = drop_prob

    def forward(self, x):
        if self.training and self.drop_prob > 0:
            return need("dropout", "Dropout")(x, self.drop_prob, training=True)
        return x

    def _module_info_string(self):
        return f"drop_prob={self.drop_prob}"
