"""QuantStub / DequantStub: the points where a quantized model enters and leaves integer
arithmetic. In a float model (this package has no quantization passes yet) both return their
input unchanged, so float code written for MegEngine's quantization flow runs as is."""
from .module import Module


class QuantStub(Module):
    """Marks where quantization starts; the identity in float mode.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.QuantStub()(ty.tensor([1.5])).numpy().tolist()
    [1.5]
    """

    def forward(self, inp):
        return inp


class DequantStub(Module):
    """Marks where quantization ends; the identity in float mode."""

    def forward(self, inp):
        return inp
