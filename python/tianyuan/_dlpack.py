"""DLPack interop: ``Tensor.__dlpack__`` and ``tianyuan.from_dlpack`` (zero-copy, CPU).

Differences from MegEngine (where it does the safer thing): ``__dlpack_device__``
exists, so ``torch.from_dlpack`` and ``np.from_dlpack`` accept Tianyuan tensors; DLPack 1.x
versioned capsules are produced when the consumer asks for them (``max_version >= (1, 0)``);
``from_dlpack`` shares memory with any CPU producer (numpy arrays, torch tensors, raw
capsules), keeping the producer's buffer alive until the last Tianyuan view of it dies.
A read-only producer buffer (DLPack 1.x flag) is copied, since Tianyuan tensors are writable;
``copy=False`` turns that copy into a ``BufferError``.

>>> import numpy as np, tianyuan as ty
>>> a = np.arange(3, dtype=np.float32)
>>> t = ty.from_dlpack(a)
>>> a[0] = 7
>>> t.numpy().tolist()
[7.0, 1.0, 2.0]
"""
from . import _C

__all__ = ["from_dlpack", "to_dlpack"]

_CPU = 1
_VERSIONED = (1, 0)


def _check_device(dl_device, what):
    if dl_device is None:
        return
    try:
        dev_type, dev_id = (int(v) for v in dl_device)
    except (TypeError, ValueError):
        raise BufferError(f"{what}: dl_device must be a (device_type, device_id) pair, "
                          f"got {dl_device!r}") from None
    if dev_type != _CPU or dev_id != 0:
        raise BufferError(f"{what}: cannot export to device {tuple(dl_device)}; only the CPU "
                          f"(1, 0) is supported")


def to_dlpack(tensor, stream=None, max_version=None, dl_device=None, copy=None):
    """The DLPack capsule behind ``Tensor.__dlpack__`` (array-API signature).

    ``max_version`` >= (1, 0) gives a DLPack 1.x "dltensor_versioned" capsule, otherwise a
    legacy "dltensor" one. ``copy=True`` exports a fresh copy; ``None``/``False`` share memory
    (a CPU tensor never needs a copy). ``stream`` must be None for CPU tensors."""
    if stream is not None:
        raise BufferError("__dlpack__: stream must be None for a CPU tensor")
    _check_device(dl_device, "__dlpack__")
    versioned = False
    if max_version is not None:
        try:
            major = int(max_version[0])
        except (TypeError, ValueError, IndexError):
            raise TypeError(f"__dlpack__: max_version must be a (major, minor) tuple, got "
                            f"{max_version!r}") from None
        versioned = major >= _VERSIONED[0]
    if copy is not None and not isinstance(copy, bool):
        raise TypeError(f"__dlpack__: copy must be a bool or None, got {copy!r}")
    return _C._to_dlpack(tensor, versioned, bool(copy))


def _is_capsule(obj):
    return type(obj).__name__ == "PyCapsule"


def from_dlpack(x, *, device=None, copy=None):
    """A Tensor sharing memory with ``x``: any object with ``__dlpack__`` on the CPU (numpy
    arrays, torch tensors, Tianyuan tensors) or a raw DLPack capsule.

    ``copy=True`` asks the producer for a copy; ``copy=False`` forbids any copy (a read-only
    producer then raises ``BufferError``). ``device`` may be None or a CPU device name."""
    if device is not None and not str(device).startswith(("cpu", "xpu")):
        raise BufferError(f"from_dlpack: device {device!r} is not supported (CPU only)")
    if copy is not None and not isinstance(copy, bool):
        raise TypeError(f"from_dlpack: copy must be a bool or None, got {copy!r}")
    if _is_capsule(x):
        cap = x
    else:
        if not hasattr(x, "__dlpack__"):
            raise TypeError(f"from_dlpack: {type(x).__name__} does not implement __dlpack__")
        if hasattr(x, "__dlpack_device__"):
            dev = tuple(int(v) for v in x.__dlpack_device__())
            if dev[0] != _CPU:
                raise BufferError(f"from_dlpack: the producer lives on device {dev}; only "
                                  f"CPU (1, 0) tensors can be imported")
        kwargs = {"max_version": _VERSIONED}
        if copy is not None:
            kwargs["copy"] = copy
        try:
            cap = x.__dlpack__(**kwargs)
        except TypeError:  # a producer older than DLPack 1.0: no keywords
            cap = x.__dlpack__()
            if copy is True:
                return _C.ops["copy"](_C._from_dlpack(cap, True))
    return _C._from_dlpack(cap, copy is not False)
