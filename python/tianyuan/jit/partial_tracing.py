"""partial_trace (MegEngine's ``jit.partial_trace``): a traced function usable inside eager
training. Its forward runs as one traced graph; gradients flow to its tensor arguments through
a second traced graph computing the vector-Jacobian product."""
import functools

from .tracing import trace


def _as_list(out):
    return (list(out), True) if isinstance(out, (tuple, list)) else ([out], False)


class _Unsuspended:
    """Recording on inside a backward pass (which suspends it): a GradManager records and the
    enclosing pass's suspension levels are popped, then pushed back on exit."""

    def __init__(self, gm):
        self.gm, self.pops = gm, 0

    def __enter__(self):
        from .. import _C
        self.gm.record()
        while not _C.is_recording() and self.pops < 64:
            _C.suspend(False)
            self.pops += 1
        return self

    def __exit__(self, *exc):
        from .. import _C
        if self.gm.is_recording():
            self.gm.release()
        for _ in range(self.pops):
            _C.suspend(True)


def _vjp(func, nin):
    """(x_1..x_nin, dy_1..dy_k) -> gradients of func's outputs along dy for each float x."""
    def vjp(*args):
        from ..autodiff import GradManager
        from ..functional import zeros_like
        xs = [a.detach() for a in args[:nin]]
        dys = list(args[nin:])
        wrt = [x for x in xs if x.dtype.kind == "f"]
        gm = GradManager().attach(wrt)
        with _Unsuspended(gm):
            ys, _ = _as_list(func(*xs))
            pairs = [(y, d) for y, d in zip(ys, dys) if y.dtype.kind == "f"]
            gm.backward([y for y, _ in pairs], [d for _, d in pairs])
        return tuple(zeros_like(x) if x.grad is None else x.grad for x in wrt)
    return vjp


def partial_trace(func=None, *, backend="default", without_host=True, **trace_options):
    """Wraps func (tensors in, a tensor or a tuple of tensors out) so that each call runs its
    forward as a traced graph, while a GradManager recording around the call still gets
    gradients for func's tensor arguments: they come from a traced vector-Jacobian-product
    graph, which recomputes func's forward (activation memory is not kept between the two).
    Tensors func reads from elsewhere (closed-over parameters) are constants of the graphs:
    pass what should receive gradients as arguments. ``backend`` must be "default";
    ``trace_options`` go to both traces.

    >>> import numpy as np, tianyuan as ty, tianyuan.functional as F
    >>> from tianyuan.jit import partial_trace
    >>> f = partial_trace(lambda x, w: F.relu(x * w))
    >>> w = ty.Parameter(np.array([2.0], "float32"))
    >>> gm = ty.autodiff.GradManager().attach([w])
    >>> with gm:
    ...     gm.backward(f(ty.tensor([3.0]), w).sum())
    >>> w.grad.numpy().tolist()
    [3.0]
    """
    if backend != "default":
        raise ValueError(f"partial_trace: backend {backend!r} is not available; only "
                         f"'default' (xla is not built in)")
    options = dict(trace_options)
    options.pop("capture_as_const", None)

    def wrapper(f):
        from ..autodiff import Function
        fwd = trace(f, **options)
        bwd = {}

        class _Traced(Function):
            def forward(self, *xs):
                self.xs = xs
                return fwd(*xs)

            def backward(self, *dys):
                nin = len(self.xs)
                if nin not in bwd:
                    bwd[nin] = trace(_vjp(f, nin), **options)
                grads = iter(bwd[nin](*self.xs, *[d for d in dys if d is not None]))
                return tuple(next(grads) if x.dtype.kind == "f" else None for x in self.xs)

        @functools.wraps(f)
        def call(*args, **kwargs):
            from ..tensor import Tensor
            if kwargs:
                raise TypeError(f"partial_trace: {f.__name__} takes tensors as positional "
                                f"arguments only; bind other arguments first "
                                f"(functools.partial), got {sorted(kwargs)}")
            xs = [a if isinstance(a, Tensor) else Tensor(a) for a in args]
            return _Traced()(*xs)
        return call

    return wrapper if func is None else wrapper(func)
