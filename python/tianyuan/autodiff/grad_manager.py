"""GradManager: records operations on attached tensors and computes their gradients."""
import weakref

from .. import _C


class GradManager:
    """Computes gradients of attached tensors (MegEngine's ``GradManager``).

    >>> import tianyuan as ty
    >>> w = ty.Parameter([1.0, 2.0])
    >>> gm = ty.autodiff.GradManager().attach([w])
    >>> with gm:
    ...     loss = (w * w).sum()
    ...     gm.backward(loss)
    >>> w.grad.numpy().tolist()
    [2.0, 4.0]
    """

    def __init__(self):
        self._attached = []  # weak references, in attach order
        self._callbacks = {}  # id(tensor) -> list of callbacks
        self._recording = False
        self._after_backward = []

    def attach(self, tensors, callbacks=None):
        """Tracks tensors (a Tensor or an iterable of them); returns self.

        callbacks: a callable ``cb(tensor, grad) -> grad`` or a list of them, applied in
        order to each gradient before it is accumulated; attaching again appends callbacks.
        In eager mode they run as soon as the tensor's gradient is final, while backward goes
        on (so gradient reductions overlap it)."""
        from ..tensor import Tensor
        if isinstance(tensors, Tensor):
            tensors = [tensors]
        if callbacks is None:
            callbacks = []
        elif callable(callbacks):
            callbacks = [callbacks]
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"attach expects Tensors, got {type(t).__name__}")
            key = id(t)
            if key not in self._callbacks:
                _C.attach(t)
                self._attached.append(weakref.ref(t, self._forget(key)))
                self._callbacks[key] = []
            self._callbacks[key].extend(callbacks)
        return self

    def _forget(self, key):
        def cb(_ref):
            self._callbacks.pop(key, None)
            self._attached = [r for r in self._attached if r() is not None]
        return cb

    def attached_tensors(self):
        return [t for t in (r() for r in self._attached) if t is not None]

    def record(self):
        """Starts recording operations on attached tensors."""
        if self._recording:
            raise RuntimeError("GradManager is already recording")
        self._recording = True
        _recording_managers.append(self)
        _C.set_recording(True)

    def release(self):
        """Stops recording (backward calls it too)."""
        if self._recording:
            self._recording = False
            if self in _recording_managers:
                _recording_managers.remove(self)
            _C.set_recording(False)

    def is_recording(self):
        return self._recording

    def __enter__(self):
        self.record()
        return self

    def __exit__(self, *exc):
        self.release()

    def backward(self, y=None, dy=None):
        """Accumulates d(y)/d(t) into t.grad for each attached t, then stops recording.

        y: a Tensor or a list of them; dy: matching output gradients (default: ones)."""
        from ..tensor import Tensor
        if not self._recording:
            raise RuntimeError("no recording in progress: call backward inside 'with gm:' or "
                               "after gm.record()")
        try:
            if y is None:
                return
            ys = [y] if isinstance(y, Tensor) else list(y)
            if dy is None:
                dys = [None] * len(ys)
            else:
                dys = [dy] if isinstance(dy, Tensor) else list(dy)
                dys = [d if d is None or isinstance(d, Tensor) else Tensor(d) for d in dys]
            targets = self.attached_tensors()
            create = _C.is_recording() and _outer_recording(self)
            self._after_backward = []
            _in_backward.append(self)
            try:
                try:
                    done = self._backward_with_callbacks(ys, dys, targets, create)
                except BaseException:
                    self._settle_after_error()
                    raise
                for cb in self._after_backward:
                    cb()
            finally:
                _in_backward.remove(self)
                self._after_backward = []
            for j in sorted(done):
                t, g = targets[j], done[j]
                if getattr(g, "_ty_future", False):
                    g = g.get()
                if tuple(g.shape) != tuple(t.shape):
                    g = g.broadcast(t.shape)
                t.grad = g if t.grad is None else t.grad + g
        finally:
            self.release()

    def _backward_with_callbacks(self, ys, dys, targets, create):
        """Runs backward and each target's callbacks; returns {target index: gradient}.

        Callbacks run as soon as a target's gradient is final, while backward goes on (so
        make_allreduce_cb starts reducing a bucket before backward ends), in the order the
        gradients become final. Inside a trace or a higher-order backward they run after it,
        in reverse order of attaching (a trace records the ops they issue after its backward
        block; a create_graph backward records its own ops)."""
        from ..jit.tracing import _is_tracing
        done = {}
        fired = set()

        def ready(j, g):
            fired.add(j)
            if g is not None:
                for cb in self._callbacks.get(id(targets[j]), []):
                    g = cb(targets[j], g)
                done[j] = g

        early = not create and not _is_tracing() and any(
            self._callbacks.get(id(t)) for t in targets)
        grads = _C.backward(ys, dys, targets, False, create, ready if early else None)
        for j in reversed(range(len(targets))):
            if j not in fired:
                ready(j, grads[j])
        return done

    def _settle_after_error(self):
        """A backward that failed after some callbacks ran: the after-backward callbacks
        still run, so work those callbacks started (bucket all-reduces in flight) is finished
        and their state reset for the next step. The backward's own error is what the caller
        sees; one of theirs would only be a consequence of it."""
        for cb in self._after_backward:
            try:
                cb()
            except Exception:
                pass

    def _register_after_backward_callback(self, callback):
        """Calls callback() once this backward has run every gradient callback (MegEngine's
        hook for callbacks that reduce gradients in groups, such as make_allreduce_cb)."""
        if self not in _in_backward:
            raise RuntimeError("_register_after_backward_callback: only during backward")
        if callback not in self._after_backward:
            self._after_backward.append(callback)
        return self

    def __or__(self, other):
        return GradManagerGroup([self, other])


def _outer_recording(gm):
    """Whether some GradManager other than gm is recording (higher-order gradients)."""
    return any(g is not gm for g in _recording_managers)


_recording_managers = []  # GradManagers between record() and release()
_in_backward = []  # GradManagers running their gradient callbacks


def get_backward_gm():
    """The GradManager whose backward is calling gradient callbacks now (None outside)."""
    return _in_backward[-1] if _in_backward else None


class GradManagerGroup:
    """gm1 | gm2: record with several managers at once (higher-order gradients)."""

    def __init__(self, gms):
        self._gms = list(gms)

    def __or__(self, other):
        return GradManagerGroup(self._gms + [other])

    def __enter__(self):
        for gm in self._gms:
            gm.record()
        return self

    def __exit__(self, *exc):
        for gm in self._gms:
            gm.release()
