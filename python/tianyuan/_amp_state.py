"""Autocast state shared by tianyuan.amp and the functional wrappers (no imports: functional
reads it while the package is still loading). ``enabled`` is False outside autocast, so the
wrappers' test costs one attribute load."""
enabled = False
low = "float16"
high = "float32"
_FLOATS = ("float16", "bfloat16", "float32")


def to_high(x):
    """x in the high-precision dtype when autocast is on and x is a castable float tensor."""
    if enabled and x is not None and str(x.dtype) in _FLOATS and str(x.dtype) != high:
        return x.astype(high)
    return x


def like(t, y):
    """t (a bias, say) cast to y's low-precision dtype when autocast is on."""
    if enabled and t is not None and hasattr(t, "dtype") and str(y.dtype) == low \
            and str(t.dtype) in _FLOATS and str(t.dtype) != low:
        return t.astype(low)
    return t
