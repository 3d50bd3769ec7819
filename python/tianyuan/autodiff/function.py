"""autodiff.Function: user-defined operations with their own gradient."""
from .. import _C


class Function:
    """Subclass and define ``forward(self, *inputs)`` and ``backward(self, *output_grads)``.

    >>> import tianyuan as ty
    >>> class Square(ty.autodiff.Function):
    ...     def forward(self, x):
    ...         self.x = x
    ...         return x * x
    ...     def backward(self, dy):
    ...         return dy * 2 * self.x
    >>> x = ty.Parameter([3.0])
    >>> gm = ty.autodiff.GradManager().attach(x)
    >>> with gm:
    ...     gm.backward(Square()(x))
    >>> x.grad.numpy().tolist()
    [6.0]
    """

    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, *output_grads):
        raise NotImplementedError

    def __call__(self, *inputs):
        from ..tensor import Tensor
        _C.suspend(True)
        try:
            outs = self.forward(*inputs)
        finally:
            _C.suspend(False)
        single = isinstance(outs, Tensor)
        out_list = [outs] if single else list(outs)
        tensors_in = [i for i in inputs if isinstance(i, Tensor)]
        if _C.is_recording() and any(t._tracked for t in tensors_in):
            out_list = [o.detach() for o in out_list]

            def grad_fn(*gouts):
                g = self.backward(*gouts)
                g = [g] if isinstance(g, Tensor) or g is None else list(g)
                return g

            _C.custom_node(tensors_in, out_list, grad_fn)
        return out_list[0] if single else tuple(out_list)
