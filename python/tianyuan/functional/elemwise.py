"""Elementwise functions (MegEngine's ``functional.elemwise``): one C op each, numpy
broadcasting, MegEngine's type promotion (Python scalars take the tensor's dtype)."""
from .. import _C

_ops = _C.ops

__all__ = [
    "abs", "add", "acos", "asin", "atan", "atan2", "asinh", "acosh", "atanh", "ceil", "clip", "cos",
    "cosh", "div", "equal", "erf", "exp", "expm1", "floor", "floor_div", "greater",
    "greater_equal", "isinf", "isnan", "less", "less_equal", "log", "log1p", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logaddexp", "maximum", "minimum", "mod", "mul",
    "neg", "not_equal", "pow", "round", "sign", "sin", "sinh", "sqrt", "square", "sub", "tan",
    "tanh",
]


def _unary(name, doc):
    op = _ops[name]

    def f(x):
        return op(x)

    f.__name__ = name
    f.__doc__ = doc
    return f


def _binary(name, doc):
    op = _ops[name]

    def f(x, y):
        return op(x, y)

    f.__name__ = name
    f.__doc__ = doc
    return f


for _n in ("neg", "abs", "sign", "exp", "expm1", "log", "log1p", "sqrt", "square", "sin", "cos",
           "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh",
           "erf", "round", "floor", "ceil", "isnan", "isinf", "logical_not"):
    globals()[_n] = _unary(_n, f"Elementwise {_n}(x).")
for _n in ("add", "sub", "mul", "div", "floor_div", "mod", "pow", "maximum", "minimum", "atan2",
           "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and",
           "logical_or", "logical_xor"):
    globals()[_n] = _binary(_n, f"Elementwise {_n}(x, y) with broadcasting.")
del _n

add.__doc__ = """Elementwise x + y with numpy broadcasting.

>>> import tianyuan.functional as F, tianyuan as ty
>>> F.add(ty.tensor([1.0, 2.0]), 1).numpy().tolist()
[2.0, 3.0]
"""


def clip(x, lower=None, upper=None):
    """Clamps x into [lower, upper] (either bound may be None)."""
    if lower is None and upper is None:
        raise ValueError("clip: at least one of lower and upper must be given")
    lo = float("-inf") if lower is None else float(lower)
    hi = float("inf") if upper is None else float(upper)
    return _ops["clip"](x, lower=lo, upper=hi)


def logaddexp(x, y):
    """log(exp(x) + exp(y)), computed stably."""
    m = maximum(x, y)
    return m + log1p(exp(neg(abs(sub(x, y)))))
