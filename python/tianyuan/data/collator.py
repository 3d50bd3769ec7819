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
        inputs = list(inputs)
        if not inputs:
            return ()
        elem = inputs[0]
        from ..tensor import Tensor
        if isinstance(elem, Tensor):
            return np.stack([np.asarray(x) for x in inputs])
        if isinstance(elem, np.ndarray):
            return np.stack(inputs)
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
            return {k: self.apply([d[k] for d in inputs]) for k in elem}
        if isinstance(elem, collections.abc.Sequence):
            n = len(elem)
            if any(len(x) != n for x in inputs):
                raise ValueError("Collator: samples have different numbers of fields")
            return tuple(self.apply(list(f)) for f in zip(*inputs))
        return list(inputs)
