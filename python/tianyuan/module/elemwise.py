"""Elemwise: an elementwise op chosen by name (MegEngine's ``module.Elemwise``)."""
from .module import Module

_ALIAS = {"true_div": "div", "negate": "neg", "max": "maximum", "min": "minimum",
          "h_swish": "hswish", "h_sigmoid": "hsigmoid", "fast_tanh": "tanh", "eq": "equal",
          "lt": "less", "leq": "less_equal", "gt": "greater", "geq": "greater_equal",
          "neq": "not_equal", "and": "logical_and", "or": "logical_or",
          "xor": "logical_xor", "not": "logical_not", "silu": "silu", "gelu": "gelu"}


def _fused(method):
    from .. import functional as F
    table = {
        "fuse_add_relu": lambda a, b: F.relu(a + b),
        "fuse_add_sigmoid": lambda a, b: F.sigmoid(a + b),
        "fuse_add_tanh": lambda a, b: F.tanh(a + b),
        "fuse_add_h_swish": lambda a, b: F.hswish(a + b),
        "fuse_mul_add3": lambda a, b, c: a * b + c,
        "fuse_mul_add4": lambda a, b, c, d: a * b + c * d,
    }
    return table.get(method)


class Elemwise(Module):
    """Applies the elementwise op ``method`` (MegEngine's mode names, any case: "ADD",
    "FUSE_ADD_RELU", "FUSE_MUL_ADD3", "TRUE_DIV", "RELU", ...) to its inputs.

    >>> import tianyuan as ty, tianyuan.module as M
    >>> M.Elemwise("fuse_add_relu")(ty.tensor([1.0, -3.0]), ty.tensor([1.0, 1.0])).numpy().tolist()
    [2.0, 0.0]
    """

    def __init__(self, method, **kwargs):
        super().__init__(**kwargs)
        self.method = method
        self._fn = self._resolve(method)

    @staticmethod
    def _resolve(method):
        from .. import functional as F
        m = str(method).lower()
        f = _fused(m)
        if f is not None:
            return f
        f = getattr(F, _ALIAS.get(m, m), None)
        if f is None or not callable(f):
            raise ValueError(f"Elemwise: unknown method {method!r}")
        return f

    def forward(self, *inps):
        return self._fn(*inps)

    def _module_info_string(self):
        return f"method={self.method}"
