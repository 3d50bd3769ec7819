"""autocast: mixed precision by casting op inputs (MegEngine's ``amp.autocast``)."""
import functools

from .. import _C, _amp_state

# Ops whose floating inputs go to the low-precision dtype: the heavy products. Their kernels
# accumulate half-precision inputs in float32.
LOW_PREC_OPS = ("matmul", "conv2d", "conv_transpose2d", "conv1d", "conv3d",
                "conv_transpose3d", "deformable_conv2d", "local_conv2d",
                "batched_matmul")
# Ops kept in the high-precision dtype: sums and means (and what is built on them: the
# normalisations, which also cast their input in Python), softmax, and the transcendental
# functions whose half-precision results lose the most.
HIGH_PREC_OPS = ("sum", "mean", "prod", "cumsum", "softmax", "log_softmax", "exp", "expm1",
                 "log", "log1p", "pow", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
                 "cosh", "asinh", "acosh", "atanh", "erf", "softplus")

_DTYPES = ("float16", "bfloat16", "float32")


def _check_dtype(what, dt):
    name = str(getattr(dt, "__name__", dt))
    name = {"half": "float16", "float": "float32"}.get(name, name)
    if name not in _DTYPES:
        raise ValueError(f"autocast: {what} must be one of {_DTYPES}, got {dt!r}")
    return name


def _apply_state():
    """Pushes the Python-side state into the op entry's cast rules."""
    if not _amp_state.enabled:
        _C.set_autocast(None)
        return
    codes = {n: i for i, n in enumerate(_C.dtype_names())}
    present = set(_C.ops)
    _C.set_autocast(codes[_amp_state.low], codes[_amp_state.high],
                    [n for n in LOW_PREC_OPS if n in present],
                    [n for n in HIGH_PREC_OPS if n in present])


def _set(enabled=None, low=None, high=None):
    if enabled is not None:
        _amp_state.enabled = bool(enabled)
    if low is not None:
        _amp_state.low = _check_dtype("low_prec_dtype", low)
    if high is not None:
        _amp_state.high = _check_dtype("high_prec_dtype", high)
    _apply_state()


class autocast:
    """Runs a block (``with autocast():``) or a function (``@autocast()``) in mixed precision.

    Inside, the floating inputs of convolutions and matrix products (``F.conv2d``,
    ``F.matmul``, ``F.linear``, ``M.Conv2d``, ``M.Linear``...) are cast to ``low_prec_dtype``
    (float16 or bfloat16; the products accumulate in float32) and their bias joins the result's
    dtype; sums, means, softmax, the normalisations (batch, layer, group, instance) and the
    transcendental functions (exp, log, pow, trigonometric, erf...) compute in
    ``high_prec_dtype``. Other ops, and Python's operators on tensors (``+``, ``*``, ``**``),
    follow the usual type promotion (float16 with float32 gives float32); ``F.pow`` is cast,
    ``x ** y`` is not. Gradients flow back through the casts, so parameters kept in
    float32 get float32 gradients. The casts are ordinary ops: ``@trace`` records them, and a
    traced step replays them. Scopes nest; leaving one restores the outer setting.

    >>> import numpy as np, tianyuan as ty, tianyuan.functional as F
    >>> from tianyuan.amp import autocast
    >>> a = ty.tensor(np.ones((2, 2), np.float32))
    >>> with autocast():
    ...     str(F.matmul(a, a).dtype), str(F.exp(a.astype("float16")).dtype)
    ('float16', 'float32')
    """

    def __init__(self, enabled=True, low_prec_dtype="float16", high_prec_dtype="float32"):
        self.enabled = bool(enabled)
        self.low_prec_dtype = _check_dtype("low_prec_dtype", low_prec_dtype)
        self.high_prec_dtype = _check_dtype("high_prec_dtype", high_prec_dtype)
        self._saved = []

    def __enter__(self):
        self._saved.append((_amp_state.enabled, _amp_state.low, _amp_state.high))
        _set(self.enabled, self.low_prec_dtype, self.high_prec_dtype)
        return self

    def __exit__(self, *exc):
        _set(*self._saved.pop())
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self:
                return func(*args, **kwargs)
        return wrapper
