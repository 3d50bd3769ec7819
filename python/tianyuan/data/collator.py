"""Collator: turns a list of samples into one batch of numpy arrays."""
import collections.abc
import numbers

import numpy as np


class Collator:
    """Default collator: arrays (and Tensors) are stacked along a new axis 0, numbers become an
    array, tuples/lists are collated field by field (a tuple of batches), dicts key by key;
    strings and other objects stay as lists.

    >>> import numpy as np
    >>> xs, ys = Collator().apply([(np.zeros(2), 1), (np.ones(2), 2)])
    >>> xs.shape, ys.tolist()
    ((2, 2), [1, 2])
    """

    def apply(self, inputs):
        return self._apply(list(inputs), "")

    def _apply(self, inputs, path):
        """Collates ``inputs``, the values at field ``path`` (like ``[0]['x']``) of each sample."""
        if not inputs:
            return ()
        elem = inputs[0]
        from ..tensor import Tensor
        if isinstance(elem, Tensor):
            return _stack([np.asarray(x) for x in inputs], path)
        if isinstance(elem, np.ndarray):
            return _stack(inputs, path)
        if isinstance(elem, np.generic):
            return np.array(inputs)
        if isinstance(elem, bool):
            return np.array(inputs, dtype=np.bool_)
        if isinstance(elem, numbers.Integral):
            return np.array(inputs, dtype=np.int64)
        if isinstance(elem, numbers.Real):
            return np.array(inputs, dtype=np.float64)
        if isinstance(elem, (str, bytes)):
            return list(inputs)
        if isinstance(elem, collections.abc.Mapping):
            return {k: self._apply([d[k] for d in inputs], f"{path}[{k!r}]") for k in elem}
        if isinstance(elem, collections.abc.Sequence):
            n = len(elem)
            for i, x in enumerate(inputs):
                if len(x) != n:
                    raise _sample_error(i, f"Collator: sample {i} of the batch has {len(x)} "
                                           f"fields{_at(path)}, sample 0 has {n}")
            return tuple(self._apply(list(f), f"{path}[{i}]") for i, f in enumerate(zip(*inputs)))
        return list(inputs)


def _at(path):
    return f" at {path}" if path else ""


def _sample_error(position, msg):
    """A ValueError that also carries the sample's position in the batch, so the DataLoader can
    name the sample's dataset index."""
    e = ValueError(msg)
    e.sample_position = position
    return e


def _stack(arrays, path):
    first = np.shape(arrays[0])
    for i, a in enumerate(arrays):
        if np.shape(a) != first:
            raise _sample_error(i, f"Collator: sample {i} of the batch has shape {np.shape(a)}"
                                   f"{_at(path)}, sample 0 has {first}: samples must have one "
                                   "shape to be stacked into a batch")
    return np.stack(arrays)
