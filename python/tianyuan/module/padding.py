"""Pad."""
from ._utils import need
from .module import Module


class Pad(Module):
    """Pads its input: ``pad_width`` is one (before, after) pair per dim; mode "constant"
    (with ``constant_val``), "reflect", "replicate" or "edge".

    >>> import tianyuan.module as M
    >>> M.Pad(((0, 0), (1, 1))).mode
    'constant'
    """

    def __init__(self, pad_width, mode="constant", constant_val=0.0, **kwargs):
        super().__init__(**kwargs)
        self.pad_width = pad_width
        self.mode = mode
        self.pad_val = constant_val

    def forward(self, src):
        return need("pad", "Pad")(src, self.pad_width, self.mode, self.pad_val)

    def _module_info_string(self):
        return f"pad_width={self.pad_width}, mode={self.mode}, pad_val={self.pad_val}"
