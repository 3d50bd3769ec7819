"""Optimizer base class (MegEngine's ``megengine.optimizer.Optimizer``)."""
import copy
from collections.abc import Iterable
from contextlib import contextmanager

import numpy as np

from .. import _C
from ..tensor import Parameter, Tensor

__all__ = ["Optimizer", "no_grad", "required"]


@contextmanager
def no_grad():
    """Operations inside are not recorded by autodiff (a thread-local suspend scope)."""
    _C.suspend(True)
    try:
        yield
    finally:
        _C.suspend(False)


class _Required:
    def __repr__(self):
        return "<required parameter>"


required = _Required()


def _scalar(v):
    return Tensor(np.float32(v))


class _Group(dict):
    """A parameter group. The updates read each hyperparameter through one tensor per group
    (``scalar``), and setting the hyperparameter (a scheduler's ``g["lr"] = ...``,
    ``load_state_dict``) writes that tensor in place: a traced step, host-less ones
    included, reads the current value instead of the one seen when it was recorded."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tensors = {}  # (name, index or None) -> 0-d float32 tensor

    def scalar(self, name, index=None):
        t = self._tensors.get((name, index))
        if t is None:
            v = self[name] if index is None else self[name][index]
            t = self._tensors[(name, index)] = _scalar(v)
        return t

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        for (name, index), t in self._tensors.items():
            if name == key:
                t._assign(_scalar(value if index is None else value[index]))

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v


class Optimizer:
    """Base class of optimizers: subclasses define ``_create_state(group)`` and
    ``_updates(group)``.

    ``params`` is an ordered iterable of Parameters, or of dicts ``{"params": [...],
    hyperparameter: value}`` (parameter groups); sets are rejected because their order is
    not stable. Updates are Tensor ops run without autodiff and written in place
    (``param._assign``), so parameters and optimizer state keep their identity and storage.

    >>> import numpy as np, tianyuan as ty
    >>> from tianyuan.optimizer import SGD
    >>> w = ty.Parameter(np.array([1.0, 2.0], dtype="float32"))
    >>> w.grad = ty.tensor([1.0, 1.0])
    >>> opt = SGD([w], lr=0.5)
    >>> _ = opt.step().clear_grad()
    >>> w.numpy().tolist(), w.grad
    ([0.5, 1.5], None)
    """

    def __init__(self, params, defaults):
        self._state = {}
        self._defaults = defaults
        if isinstance(params, (Parameter, dict)):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError("optimizer params must be an ordered collection (a list), not a "
                            "set: the order of a set changes between runs")
        elif not isinstance(params, Iterable):
            raise TypeError("params given to an optimizer must be a Parameter, a dict, or an "
                            "iterable of them")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if any(isinstance(g, dict) for g in groups) and not all(
                isinstance(g, dict) for g in groups):
            raise TypeError("params must be all Parameters or all parameter-group dicts")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups = []
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group):
        """Adds a group ``{"params": [...], **hyperparameters}``; missing hyperparameters
        take the optimizer's defaults. A parameter may belong to one group only."""
        if not isinstance(param_group, dict):
            raise TypeError("a parameter group must be a dict")
        if "params" not in param_group:
            raise ValueError("a parameter group needs a 'params' entry")
        ps = param_group["params"]
        if isinstance(ps, (set, frozenset)):
            raise TypeError("a group's params must be an ordered collection (a list), not a "
                            "set")
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        for p in ps:
            if not isinstance(p, Parameter):
                raise TypeError(f"optimizers can only optimize Parameters, got "
                                f"{type(p).__name__}")
        group = _Group(param_group)
        group["params"] = ps
        for name, default in self._defaults.items():
            if default is required and name not in group:
                raise ValueError(f"parameter group didn't specify a value of the required "
                                 f"hyperparameter {name!r}")
            group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        ids = [id(p) for p in ps]
        if len(set(ids)) != len(ids) or seen.intersection(ids):
            raise ValueError("some parameters appear more than once in the parameter groups")
        self.param_groups.append(group)
        self._create_state(group)

    def _add_state(self, param, name, initializer=None):
        st = self._state.setdefault(param, {})
        if name in st:
            raise KeyError(f"state {name!r} already exists for this parameter")
        if initializer is None:
            st[name] = Tensor(np.zeros(tuple(param.shape), dtype=np.float32))
        else:
            st[name] = Tensor(np.asarray(initializer, dtype=np.float32))

    def _create_state(self, param_group):
        pass

    def _updates(self, param_group):
        raise NotImplementedError

    def _get_params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def step(self):
        """Applies one update to every parameter that has a gradient; returns self."""
        for group in self.param_groups:
            if isinstance(group["params"], (set, frozenset)):
                raise TypeError("optimized parameters must be in an ordered collection, not "
                                "a set")
        with no_grad():
            for group in self.param_groups:
                self._updates(group)
        return self

    def clear_grad(self):
        """Sets every parameter's ``.grad`` to None; returns self."""
        for p in self._get_params():
            p.grad = None
        return self

    def zero_grad(self):
        """Alias of ``clear_grad`` (MegEngine's deprecated name)."""
        return self.clear_grad()

    def state_dict(self, keep_var=False):
        """``{"param_groups": [hyperparameters + "params": [indices]], "state": {index:
        {name: ndarray}}}``, indices numbering parameters across groups in order."""
        ids = {}
        for g in self.param_groups:
            for p in g["params"]:
                ids.setdefault(id(p), len(ids))
        state = {}
        for p, st in self._state.items():
            state[ids[id(p)]] = {k: (v if keep_var else v.numpy()) for k, v in st.items()}
        groups = []
        for g in self.param_groups:
            d = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            d["params"] = [ids[id(p)] for p in g["params"]]
            groups.append(d)
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state):
        """Restores hyperparameters and state saved by ``state_dict`` (values are written
        into the existing state tensors where shapes agree, so a round trip is exact)."""
        saved_groups = state["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"loaded state has {len(saved_groups)} parameter groups, this "
                             f"optimizer has {len(self.param_groups)}")
        for gi, (g, sg) in enumerate(zip(self.param_groups, saved_groups)):
            if len(g["params"]) != len(sg["params"]):
                raise ValueError(f"parameter group {gi} has {len(g['params'])} parameters, "
                                 f"the loaded one has {len(sg['params'])}")
            if set(g.keys()) != set(sg.keys()):
                raise ValueError(f"parameter group {gi} has keys {sorted(g)}, the loaded one "
                                 f"has {sorted(sg)}")
        new_state = {}
        for g, sg in zip(self.param_groups, saved_groups):
            for p, idx in zip(g["params"], sg["params"]):
                if idx not in state["state"]:
                    continue
                cur = self._state.get(p, {})
                st = {}
                for k, v in state["state"][idx].items():
                    arr = v.numpy() if isinstance(v, Tensor) else np.asarray(v)
                    old = cur.get(k)
                    if old is not None and tuple(old.shape) == arr.shape and \
                            np.dtype(old.dtype) == arr.dtype:
                        old._assign(arr)
                        st[k] = old
                    else:
                        st[k] = Tensor(arr, dtype=str(arr.dtype))
                new_state[p] = st
        for p, st in new_state.items():
            self._state[p] = st
        for g, sg in zip(self.param_groups, saved_groups):
            for k, v in sg.items():
                if k != "params":
                    g[k] = copy.deepcopy(v)

    def backward(self, loss):
        raise NotImplementedError("use tianyuan.autodiff.GradManager instead")
