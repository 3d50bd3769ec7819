"""Sequential container."""
from collections import OrderedDict

from .module import Module


class Sequential(Module):
    """Runs its layers in order: ``Sequential(m0, m1, ...)`` names them "0", "1", ...;
    ``Sequential(OrderedDict([("fc", m0), ...]))`` uses the given names.

    >>> import numpy as np, tianyuan as ty
    >>> import tianyuan.module as M
    >>> net = M.Sequential(M.ReLU(), M.Identity())
    >>> net(ty.tensor([-1.0, 2.0])).numpy().tolist()
    [0.0, 2.0]
    >>> len(net), type(net[0]).__name__
    (2, 'ReLU')
    """

    def __init__(self, *args, **kwargs):
        super().__init__(**kwargs)
        self.layer_keys = []
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for key, mod in args[0].items():
                if not isinstance(mod, Module):
                    raise TypeError(f"Sequential item {key!r} is not a Module")
                setattr(self, key, mod)
                self.layer_keys.append(key)
        else:
            for i, mod in enumerate(args):
                if not isinstance(mod, Module):
                    raise TypeError(f"Sequential item {i} is not a Module "
                                    f"({type(mod).__name__})")
                setattr(self, str(i), mod)
                self.layer_keys.append(str(i))

    @property
    def layer_values(self):
        return [getattr(self, k) for k in self.layer_keys]

    def __getitem__(self, idx):
        if isinstance(idx, slice):
            return Sequential(OrderedDict((k, getattr(self, k)) for k in self.layer_keys[idx]))
        return getattr(self, self.layer_keys[idx])

    def __setitem__(self, idx, mod):
        if not isinstance(mod, Module):
            raise TypeError("Sequential items must be Modules")
        setattr(self, self.layer_keys[idx], mod)

    def __delitem__(self, idx):
        keys = self.layer_keys[idx] if isinstance(idx, slice) else [self.layer_keys[idx]]
        for k in keys:
            delattr(self, k)
            self.layer_keys.remove(k)

    def __len__(self):
        return len(self.layer_keys)

    def __iter__(self):
        return iter(self.layer_values)

    def append(self, mod):
        key = str(len(self.layer_keys))
        while key in self.layer_keys:
            key = key + "_"
        setattr(self, key, mod)
        self.layer_keys.append(key)
        return self

    def forward(self, inp):
        for layer in self.layer_values:
            inp = layer(inp)
        return inp
