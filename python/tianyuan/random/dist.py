"""gamma, beta, poisson, exponential and multinomial (MegEngine's ``megengine.random``) over
the ``random_dist`` op: per-element parameters, counter-based draws (reproducible from the
seed, independent of the thread count, the same eager, traced and deployed)."""
from .. import _C
from ..tensor import Tensor

_ops = _C.ops
GAMMA, BETA, POISSON, EXPONENTIAL = 0, 1, 2, 3
_NAMES = {GAMMA: "gamma", BETA: "beta", POISSON: "poisson", EXPONENTIAL: "exponential"}


def _param(x, name, fn):
    """A float parameter tensor; a Python number must be > 0 (checked here, tensors in C)."""
    if isinstance(x, _C.TensorBase):
        if x.dtype.kind != "f":
            x = x.astype("float32")
        return x
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: {name} must be a number or a float tensor, got "
                        f"{type(x).__name__}") from None
    if not v > 0 or v == float("inf"):
        raise ValueError(f"{fn}: {name} must be finite and > 0, got {x!r}")
    return Tensor(v, dtype="float32")


def _size(size, fn):
    if size is None:
        return ()
    if isinstance(size, int):
        return (size,) if size != 0 else ()
    from .._args import to_ints
    return tuple(to_ints(size, "size", fn, lo=0))


def _broadcast(params, size, fn):
    """The parameters broadcast to size + broadcast(parameter shapes) (MegEngine's rule)."""
    import numpy as np
    try:
        shape = np.broadcast_shapes(*[tuple(p.shape) for p in params])
    except ValueError:
        raise ValueError(f"{fn}: parameter shapes {[tuple(p.shape) for p in params]} do not "
                         f"broadcast") from None
    dt = params[0].dtype
    for p in params[1:]:
        if p.dtype != dt:
            dt = np.dtype("float64") if "float64" in (p.dtype, dt) else np.dtype("float32")
    target = list(_size(size, fn) + tuple(shape))
    return [_ops["broadcast_to"](p.astype(dt) if p.dtype != dt else p, shape=target)
            for p in params]


def draw(dist, params, size, keyed=None):
    """Draws of dist with parameter tensors params (one or two); keyed = (seed, counter) of an
    RNG's stream, or None for the global generator."""
    fn = _NAMES[dist]
    ps = _broadcast(params, size, fn)
    a = ps[0]
    b = ps[1] if len(ps) > 1 else ps[0]
    if keyed is None:
        return _ops["random_dist"](a, b, dist=dist)
    seed, counter = keyed
    return _ops["random_dist"](a, b, dist=dist, keyed=1, seed=seed, counter=counter)


def multinomial_from(input, num_samples, replacement, exponential):
    """Categorical draws by an exponential race: for each sample, the class k with the
    smallest E_k / w_k (E_k ~ Exp(1)) is drawn with probability w_k / sum(w); without
    replacement the num_samples smallest keys of one race are the draws in order.
    ``exponential(shape)`` returns Exp(1) draws of that shape."""
    from .._args import to_int
    fn = "multinomial"
    if not isinstance(input, _C.TensorBase):
        input = Tensor(input)
    if input.ndim not in (1, 2):
        raise ValueError(f"{fn}: input must be 1-d or 2-d, got shape {tuple(input.shape)}")
    if input.dtype.kind != "f":
        raise TypeError(f"{fn}: input must be a float tensor of weights, got {input.dtype}")
    n = to_int(num_samples, "num_samples", fn)
    c = input.shape[-1]
    if n <= 0:
        raise ValueError(f"{fn}: num_samples must be positive, got {n}")
    if c == 0:
        raise ValueError(f"{fn}: input has no categories")
    if not replacement and n > c:
        raise ValueError(f"{fn}: cannot draw {n} samples without replacement from {c} "
                         f"categories")
    w = input if input.ndim == 2 else input.reshape((1, c))
    rows = w.shape[0]
    if replacement:
        e = exponential((rows, n, c))
        keys = e / w.astype(e.dtype).reshape((rows, 1, c))
        out = _ops["argmin"](keys, axis=2, keepdims=0)
    else:
        e = exponential((rows, c))
        keys = e / w.astype(e.dtype)
        _, out = _topk(keys, n)
    out = out.astype("int32")
    return out if input.ndim == 2 else out.reshape((n,))


def _topk(keys, n):
    from ..functional import topk
    return topk(keys, n, descending=False)
