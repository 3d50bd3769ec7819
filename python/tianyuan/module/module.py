"""Module: the base class of every layer (MegEngine's ``megengine.module.Module``).

Attributes that are Parameters, buffers (any other Tensor), Modules, or lists/tuples/dicts of
them are discovered by scanning ``vars(self)`` in sorted key order (as MegEngine does), so the
order of ``parameters()`` is the same on every call and across processes.
"""
from collections import OrderedDict

import numpy as np

from ..tensor import Parameter, Tensor

__all__ = ["Module", "HookHandler", "StateDictError"]


class HookHandler:
    """A handle returned by ``register_forward_(pre_)hook``; ``remove()`` deletes the hook."""

    _next_id = 0

    def __init__(self, registry, hook):
        self._registry = registry
        HookHandler._next_id += 1
        self._id = HookHandler._next_id
        registry[self._id] = hook

    def remove(self):
        self._registry.pop(self._id, None)

    @property
    def id(self):
        return self._id


class StateDictError(KeyError, ValueError):
    """Raised by ``load_state_dict``: lists missing, unexpected and mis-shaped keys.

    It is both a KeyError (what MegEngine raises for missing/unused keys) and a ValueError
    (what MegEngine raises for shape mismatches), so either ``except`` clause catches it."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.message = message
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)

    def __str__(self):
        return self.message


def _expand_structure(prefix, obj):
    """(dotted key, leaf) for every Tensor/Module in obj (nested lists/tuples/dicts)."""
    if isinstance(obj, (Tensor, Module)):
        return [(prefix, obj)]
    if isinstance(obj, (list, tuple, dict)):
        out = []
        if isinstance(obj, dict):
            items = []
            for k in sorted(obj, key=lambda k: (not isinstance(k, str), str(k))):
                items.append((k, obj[k]))
        else:
            items = [(str(i), v) for i, v in enumerate(obj)]
        for k, v in items:
            sub = _expand_structure(str(k), v)
            if sub and not isinstance(k, str):
                raise TypeError(f"keys of a dict holding Tensors or Modules must be str, "
                                f"got {k!r} in attribute {prefix!r}")
            out.extend((prefix + "." + kk, vv) for kk, vv in sub)
        return out
    return []


def _is_parameter(obj):
    return isinstance(obj, Parameter)


def _is_buffer(obj):
    return isinstance(obj, Tensor) and not isinstance(obj, Parameter)


def _is_module(obj):
    return isinstance(obj, Module)


def _get_tensor_name(t):
    try:
        return t.name
    except AttributeError:  # Tensor.name needs a __dict__ the C type may not expose
        return None


def _set_tensor_name(t, name):
    try:
        t.name = name
    except AttributeError:
        pass


class Module:
    """Base class of all layers: subclass it, create parameters and submodules in
    ``__init__`` (after ``super().__init__()``) and compute in ``forward``.

    >>> import numpy as np
    >>> import tianyuan as ty
    >>> import tianyuan.module as M
    >>> class Scale(M.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = ty.Parameter(np.full((2,), 3.0, dtype="float32"))
    ...     def forward(self, x):
    ...         return x * self.w
    >>> m = Scale()
    >>> m(ty.tensor([1.0, 2.0])).numpy().tolist()
    [3.0, 6.0]
    >>> [k for k, _ in m.named_parameters()]
    ['w']
    """

    # Normalisation layers keep (1, C, 1, 1) tensors but export them flattened (MegEngine).
    _flatten_state = False

    def __init__(self, name=None):
        object.__setattr__(self, "_modules", [])
        object.__setattr__(self, "_name", None)
        object.__setattr__(self, "_short_name", None)
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise ValueError("a Module's name must be a non-empty string")
        self.name = name
        self.training = True
        self.quantize_disabled = False
        self._forward_pre_hooks = OrderedDict()
        self._forward_hooks = OrderedDict()

    def forward(self, *inputs, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # ---- hooks and call ----
    def register_forward_pre_hook(self, hook):
        """hook(module, inputs) -> new inputs (a tuple or a single value) or None.
        Returns a handle whose ``remove()`` deletes the hook."""
        return HookHandler(self._forward_pre_hooks, hook)

    def register_forward_hook(self, hook):
        """hook(module, inputs, outputs) -> new outputs or None. Returns a removable handle."""
        return HookHandler(self._forward_hooks, hook)

    def __call__(self, *inputs, **kwargs):
        if not self._forward_pre_hooks and not self._forward_hooks:  # the common case
            return self.forward(*inputs, **kwargs)
        for hook in list(self._forward_pre_hooks.values()):
            new = hook(self, inputs)
            if new is not None:
                inputs = new if isinstance(new, tuple) else (new,)
        outputs = self.forward(*inputs, **kwargs)
        for hook in list(self._forward_hooks.values()):
            new = hook(self, inputs, outputs)
            if new is not None:
                outputs = new
        return outputs

    # ---- traversal ----
    def _flatten(self, *, recursive=True, with_key=False, with_parent=False, prefix=None,
                 predicate=lambda _: True, seen=None):
        if seen is None:
            seen = {id(self)}
        pre = "" if prefix is None else prefix + "."
        d = vars(self)
        for key in sorted(d):
            for ekey, leaf in _expand_structure(key, d[key]):
                if id(leaf) in seen:
                    continue
                seen.add(id(leaf))
                if predicate(leaf):
                    if with_key and with_parent:
                        yield pre + ekey, leaf, self
                    elif with_key:
                        yield pre + ekey, leaf
                    elif with_parent:
                        yield leaf, self
                    else:
                        yield leaf
                if recursive and isinstance(leaf, Module):
                    yield from leaf._flatten(recursive=True, with_key=with_key,
                                             with_parent=with_parent, prefix=pre + ekey,
                                             predicate=predicate, seen=seen)

    @staticmethod
    def _param_predicate(requires_grad):
        if requires_grad is None:
            return _is_parameter

        def pred(obj):
            if not _is_parameter(obj):
                return False
            return bool(getattr(obj, "requires_grad", True)) == bool(requires_grad)
        return pred

    def parameters(self, recursive=True, requires_grad=None, **kwargs):
        """Iterates over the Parameters (recursively by default), in a stable order.

        requires_grad: None (all), or True/False to select by ``param.requires_grad``
        (a Parameter without that attribute counts as requiring grad)."""
        yield from self._flatten(recursive=recursive, predicate=self._param_predicate(
            requires_grad), **kwargs)

    def named_parameters(self, prefix=None, recursive=True, requires_grad=None, **kwargs):
        """Iterates over (dotted name, Parameter) pairs, e.g. ``("fc.weight", w)``."""
        yield from self._flatten(with_key=True, prefix=prefix, recursive=recursive,
                                 predicate=self._param_predicate(requires_grad), **kwargs)

    def buffers(self, recursive=True, **kwargs):
        """Iterates over buffers: Tensors that are not Parameters (e.g. BN running stats)."""
        yield from self._flatten(recursive=recursive, predicate=_is_buffer, **kwargs)

    def named_buffers(self, prefix=None, recursive=True, **kwargs):
        yield from self._flatten(with_key=True, prefix=prefix, recursive=recursive,
                                 predicate=_is_buffer, **kwargs)

    def tensors(self, recursive=True, **kwargs):
        yield from self._flatten(recursive=recursive, predicate=lambda o: isinstance(o, Tensor),
                                 **kwargs)

    def named_tensors(self, prefix=None, recursive=True, **kwargs):
        yield from self._flatten(with_key=True, prefix=prefix, recursive=recursive,
                                 predicate=lambda o: isinstance(o, Tensor), **kwargs)

    def children(self, **kwargs):
        """Direct submodules."""
        yield from self._flatten(recursive=False, predicate=_is_module, **kwargs)

    def named_children(self, **kwargs):
        yield from self._flatten(with_key=True, recursive=False, predicate=_is_module, **kwargs)

    def modules(self, **kwargs):
        """This module and every submodule (depth first)."""
        if kwargs.get("with_parent"):
            yield self, None
        else:
            yield self
        yield from self._flatten(predicate=_is_module, **kwargs)

    def named_modules(self, prefix=None, **kwargs):
        """(dotted name, module) pairs; this module comes first with name ``prefix or ""``."""
        if kwargs.get("with_parent"):
            yield ("" if prefix is None else prefix), self, None
        else:
            yield ("" if prefix is None else prefix), self
        yield from self._flatten(with_key=True, prefix=prefix, predicate=_is_module, **kwargs)

    def apply(self, fn):
        """Calls fn(m) on this module and every submodule."""
        for m in list(self.modules()):
            fn(m)

    # ---- modes and grads ----
    def train(self, mode=True, recursive=True):
        """Sets ``training`` on this module (and, recursively, its submodules); returns self."""
        if not recursive:
            self.training = bool(mode)
            return self
        for m in list(self.modules()):
            m.training = bool(mode)
        return self

    def eval(self):
        """Same as ``train(False)``."""
        return self.train(False)

    def zero_grad(self):
        """Fills every existing parameter gradient with zeros (MegEngine's deprecated API;
        prefer ``optimizer.clear_grad()``)."""
        for p in self.parameters():
            if p.grad is not None:
                p.grad = p.grad * 0

    def disable_quantize(self, value=True):
        def fn(m):
            m.quantize_disabled = value
        self.apply(fn)
        return self

    def replace_param(self, params, start_pos, seen=None):
        """Replaces Parameters, numbered in ``parameters()`` order from ``start_pos``, by
        ``params[index]`` where present (same shape required); returns how many were seen."""
        offset = 0
        if seen is None:
            seen = {id(self)}
        d = vars(self)
        for key in sorted(d):
            obj = d[key]
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if isinstance(obj, Parameter):
                new = params.get(start_pos + offset) if isinstance(params, dict) else None
                if new is not None:
                    if tuple(new.shape) != tuple(obj.shape):
                        raise ValueError(f"replace_param: {key} has shape {tuple(obj.shape)}, "
                                         f"replacement has {tuple(new.shape)}")
                    object.__setattr__(self, key, new)
                offset += 1
            elif isinstance(obj, Module):
                offset += obj.replace_param(params, start_pos + offset, seen)
        return offset

    # ---- state ----
    def _state_items(self, prefix=""):
        """[(key, tensor, owning module)] for every Parameter and buffer, recursively."""
        out = []
        for k, v in self._flatten(recursive=False, with_key=True, predicate=lambda o: isinstance(
                o, Tensor)):
            out.append((prefix + k, v, self))
        for k, sub in self._flatten(recursive=False, with_key=True, predicate=_is_module):
            out.extend(sub._state_items(prefix + k + "."))
        return out

    def state_dict(self, rst=None, prefix="", keep_var=False):
        """An OrderedDict ``{"a.b.weight": numpy array}`` of every Parameter and buffer.

        keep_var=True gives the Tensors themselves. Normalisation layers (BatchNorm, GroupNorm,
        LayerNorm, InstanceNorm) export their tensors flattened to 1-D, as MegEngine does;
        ``load_state_dict`` accepts either layout for them."""
        out = OrderedDict() if rst is None else rst
        for k, v, owner in self._state_items(prefix):
            if k in out:
                raise KeyError(f"duplicated state key {k!r}")
            if keep_var:
                out[k] = v
            else:
                a = v.numpy()
                out[k] = a.reshape(-1) if owner._flatten_state else a
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Loads values from a dict made by ``state_dict()`` (numpy arrays or Tensors), or
        from a closure ``fn(key, tensor) -> ndarray or None`` (None skips that key).

        Every key is checked before anything is written, so a failed load changes nothing.
        Mis-shaped keys always raise; with strict=True, missing and unexpected keys raise too
        (one StateDictError listing all three kinds). Values are written in place into the
        existing tensors, so optimizers holding them stay valid."""
        if isinstance(state_dict, dict):
            sd = state_dict

            def closure(k, _v):
                return sd.get(k)
            provided = set(sd.keys())
        elif callable(state_dict):
            closure = state_dict
            provided = None
        else:
            raise TypeError(f"load_state_dict expects a dict or a callable, "
                            f"got {type(state_dict).__name__}")
        missing, mismatched, plan, loaded = [], [], [], set()
        for k, var, owner in self._state_items():
            val = closure(k, var)
            if val is None:
                missing.append(k)
                continue
            if isinstance(val, Tensor):
                val = val.numpy()
            val = np.asarray(val)
            want = tuple(var.shape)
            if tuple(val.shape) != want:
                if owner._flatten_state and val.size == int(np.prod(want)):
                    val = val.reshape(want)
                else:
                    mismatched.append((k, want, tuple(val.shape)))
                    continue
            plan.append((var, val))
            loaded.add(k)
        unexpected = sorted(provided - loaded - set(missing) - {m[0] for m in mismatched}) \
            if provided is not None else []
        if mismatched or (strict and (missing or unexpected)):
            parts = []
            if missing and strict:
                parts.append(f"missing keys: {missing}")
            if unexpected and strict:
                parts.append(f"unexpected keys: {unexpected}")
            if mismatched:
                parts.append("shape mismatch: " + ", ".join(
                    f"{k} (expected {w}, got {g})" for k, w, g in mismatched))
            raise StateDictError(f"error loading state_dict into {type(self).__name__}: "
                                 + "; ".join(parts), missing, unexpected,
                                 [m[0] for m in mismatched])
        for var, val in plan:
            if _same_dtype(var, val):
                var._assign(val)
            else:
                var._replace(Tensor(val, dtype=str(val.dtype)))
        return _LoadResult(missing, unexpected)

    # ---- attributes and naming ----
    def __setattr__(self, name, value):
        module_like = isinstance(value, (Module, list, tuple, dict))
        mods = self.__dict__.get("_modules")
        if mods is None:
            if isinstance(value, (Module, Tensor)) or (module_like and _expand_structure(
                    name, value)):
                raise AttributeError("cannot assign a Module or Tensor before "
                                     "Module.__init__() is called")
        else:
            if module_like and name not in mods:
                mods.append(name)
            elif not module_like and name in mods:
                mods.remove(name)
        object.__setattr__(self, name, value)
        if mods is not None and not name.startswith("_"):
            leaves = _expand_structure(name, value)
            if leaves:
                base = self.__dict__.get("_name") or self.__dict__.get("name")
                for k, leaf in leaves:
                    _assign_name(leaf, base, k)

    def __delattr__(self, name):
        mods = self.__dict__.get("_modules")
        if mods is not None and name in mods:
            mods.remove(name)
        object.__delattr__(self, name)

    def _module_info_string(self):
        """Extra text shown in repr (override in layers)."""
        return ""

    def __repr__(self):
        def indent(s):
            lines = s.split("\n")
            return lines[0] + "".join("\n  " + line for line in lines[1:])

        extra = self._module_info_string()
        extra_lines = extra.split("\n") if extra else []
        child_lines = []
        for name in self._modules:
            obj = self.__dict__.get(name)
            if isinstance(obj, Module):
                child_lines.append(f"({name}): " + indent(repr(obj)))
            else:
                for k, v in _expand_structure(name, obj):
                    if isinstance(v, Module):
                        child_lines.append(f"({k}): " + indent(repr(v)))
        s = type(self).__name__ + "("
        if len(extra_lines) == 1 and not child_lines:
            s += extra_lines[0]
        elif extra_lines or child_lines:
            s += "\n  " + "\n  ".join(extra_lines + child_lines) + "\n"
        return s + ")"


def _same_dtype(var, val):
    try:
        return np.dtype(var.dtype) == val.dtype
    except TypeError:
        return False


def _join(prefix, name):
    return name if not prefix else prefix + "." + name


def _assign_name(obj, prefix, short):
    """Automatic dotted names: a Tensor gets ``name`` "parent.child.weight" unless the user
    named it; a Module gets ``_name`` and renames its own leaves below it."""
    full = _join(prefix, short)
    if isinstance(obj, Tensor):
        cur = _get_tensor_name(obj)
        auto = getattr(obj, "_ty_auto_name", None)
        if cur is None or cur == "" or cur == auto:
            _set_tensor_name(obj, full)
            try:
                obj._ty_auto_name = full
            except AttributeError:
                pass
    elif isinstance(obj, Module):
        if obj._short_name is not None and obj._short_name != short:
            return  # a module shared under two names keeps its first one
        object.__setattr__(obj, "_name", full)
        object.__setattr__(obj, "_short_name", short)
        base = obj.name if obj.name is not None else full
        for k in sorted(vars(obj)):
            if k.startswith("_"):
                continue
            for kk, leaf in _expand_structure(k, vars(obj)[k]):
                _assign_name(leaf, base, kk)


class _LoadResult(tuple):
    """(missing_keys, unexpected_keys) returned by ``load_state_dict``."""

    def __new__(cls, missing, unexpected):
        r = super().__new__(cls, (list(missing), list(unexpected)))
        return r

    @property
    def missing_keys(self):
        return self[0]

    @property
    def unexpected_keys(self):
        return self[1]
