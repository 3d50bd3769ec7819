"""Elementwise functions (MegEngine's ``functional.elemwise``): one C op each, numpy
broadcasting, MegEngine's type promotion (Python scalars take the tensor's dtype).

Every op whose ops.def row names ``elemwise`` as its home gets its wrapper from the row
(see ``_table``); only functions that are not a plain call of one op are written here."""
from .. import _C
from ._table import export

_ops = _C.ops

__all__ = export("elemwise", globals())


def clip(x, lower=None, upper=None):
    """Clamps x into [lower, upper] (either bound may be None)."""
    if lower is None and upper is None:
        raise ValueError("clip: at least one of lower and upper must be given")
    lo = float("-inf") if lower is None else float(lower)
    hi = float("inf") if upper is None else float(upper)
    return _ops["clip"](x, lower=lo, upper=hi)


def logaddexp(x, y):
    """log(exp(x) + exp(y)), computed stably."""
    m = maximum(x, y)  # noqa: F821  (generated above)
    return m + log1p(exp(neg(abs(sub(x, y)))))  # noqa: F821


__all__ += [n for n in ("clip", "logaddexp") if n not in __all__]
