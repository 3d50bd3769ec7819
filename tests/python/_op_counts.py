"""Which ops a piece of code ran: tests that a fused path fired (or did not) count them."""


def op_counts(fn):
    """Runs fn, returning the ops it ran ({name: count}) and fn's result."""
    from tianyuan import _C
    _C._coverage_start()
    try:
        res = fn()
        counts = _C._coverage_counts()
    finally:
        _C._coverage_stop()
    return counts, res
