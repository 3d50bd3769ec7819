"""Wrappers generated from the op table.

A row of ops.def whose TY_DOC names a ``functional`` module (its "home") gets a function
there, built from the row's facts as ``_C.ops[name].info`` reports them: the inputs
(``x``, ``x, y``, ...), then the params' fields as keyword arguments with their params.def
defaults, and the row's one-line docstring. A plain op thus needs no Python written by hand;
a module replaces a generated wrapper by defining a function of the same name after
``export`` (MegEngine's signature differs: ``clip``'s optional bounds, say).
"""
from .. import _C

_INPUT_NAMES = ("x", "y", "z")


def _default(kind, value):
    if kind == "int":
        return int(value)
    if kind == "list":
        return ()
    return value


def wrapper(name, module):
    """A function calling op ``name`` with the row's signature, defined in ``module``."""
    op = _C.ops[name]
    info = op.info
    nin = info["nin"]
    if not 0 <= nin <= len(_INPUT_NAMES):
        raise ValueError(f"{name}: no wrapper for an op with {nin} inputs")
    inputs = list(_INPUT_NAMES[:nin])
    env = {"_op": op}
    params, passed = [], []
    for i, (field, kind, default) in enumerate(info["fields"]):
        env[f"_d{i}"] = _default(kind, default)  # defaults by reference: inf has no literal
        params.append(f"{field}=_d{i}")
        passed.append(f"{field}={field}")
    src = (f"def {name}({', '.join(inputs + params)}):\n"
           f"    return _op({', '.join(inputs + passed)})\n")
    exec(src, env)  # a real signature (inspect, keyword calls) at the cost of one plain call
    f = env[name]
    f.__doc__ = info["doc"]
    f.__module__ = module
    return f


def export(home, namespace):
    """Defines in ``namespace`` a wrapper for every row whose home is ``home``, in table
    order; returns their names (the module's generated ``__all__``)."""
    names = [n for n, op in _C.ops.items() if op.info["home"] == home]
    for n in names:
        namespace[n] = wrapper(n, namespace["__name__"])
    return names
