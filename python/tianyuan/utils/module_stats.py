"""Per-layer statistics of a model (MegEngine's ``utils.module_stats``): parameters, FLOPs,
activations and, optionally, receptive fields, printed as tables through the package logger.

FLOPs count one multiply-add as one operation (MegEngine's convention): a convolution costs
``output elements x (in_channels / groups x kernel elements + bias)``, a linear layer
``output elements x (in_features + bias)``, a pooling layer ``output elements x window``,
a normalisation ``input elements x 7`` (mean, variance, normalise, scale and shift, as an
estimate). Layers of other kinds are not counted unless registered with
:func:`register_flops` (and :func:`register_hook_module` for a new kind of module).

>>> import numpy as np, tianyuan.module as M
>>> from tianyuan.utils.module_stats import module_stats
>>> net = M.Sequential(M.Conv2d(3, 8, 3, bias=False), M.ReLU())
>>> total, details = module_stats(net, inputs=np.zeros((1, 3, 8, 8), np.float32),
...                               logging_to_stdout=False)
>>> int(total.flops), int(total.param_dims)
(7776, 216)
"""
import collections
from collections import namedtuple
from functools import partial

import numpy as np

from .. import functional as F
from .. import module as M
from ..logger import MegEngineLogFormatter, get_logger  # noqa: F401  (MegEngine's names)
from ..tensor import Tensor
from .module_utils import set_module_mode_safe

logger = get_logger(__name__)

_calc_flops_dict = {}
_calc_receptive_field_dict = {}
_rf_state = {"enabled": False, "owner": {}}

total_stats = namedtuple("total_stats", ["param_size", "param_dims", "flops", "act_size",
                                         "act_dims"])
stats_details = namedtuple("module_stats", ["params", "flops", "activations"])

_DTYPE_BITS = {"float32": 32, "float64": 64, "float16": 16, "bfloat16": 16, "int8": 8,
               "uint8": 8, "int16": 16, "int32": 32, "int64": 64, "bool": 8}


def get_dtype_bit(dtype_name):
    """Bits per element of a dtype given by name (``"float32"`` -> 32)."""
    name = str(getattr(dtype_name, "name", dtype_name))
    if name not in _DTYPE_BITS:
        raise ValueError(f"get_dtype_bit: unknown dtype {dtype_name!r}")
    return _DTYPE_BITS[name]


# ---------------------------------------------------------------- registries
def _registrar(table, modules):
    def callback(impl):
        for m in modules:
            table[m] = impl
        return impl
    return callback


def register_flops(*modules):
    """Decorator: ``impl(module, inputs, outputs) -> flops`` for these module classes."""
    return _registrar(_calc_flops_dict, modules)


def register_receptive_field(*modules):
    """Decorator: ``impl(module, inputs, outputs) -> (receptive_field, stride)`` (pairs)."""
    return _registrar(_calc_receptive_field_dict, modules)


def enable_receptive_field():
    """Adds receptive field and stride columns to the FLOPs table of :func:`module_stats`."""
    _rf_state["enabled"] = True


def disable_receptive_field():
    _rf_state["enabled"] = False


def _numel(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# ---------------------------------------------------------------- FLOPs per layer kind
def _has(name):
    return getattr(M, name, None)


_CONVS = tuple(c for c in (M.Conv1d, M.Conv2d, _has("Conv3d"), _has("LocalConv2d"),
                           _has("DeformableConv2d")) if c is not None)


@register_flops(*_CONVS)
def flops_convNd(module, inputs, outputs):
    """output elements x (in_channels / groups x kernel elements + bias)."""
    k = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,)
    per_output = module.in_channels // module.groups * _numel(k)
    return _numel(outputs[0].shape) * (per_output + (module.bias is not None))


@register_flops(M.ConvTranspose2d)
def flops_convNdTranspose(module, inputs, outputs):
    """Each input element feeds out_channels / groups x kernel elements outputs; plus bias."""
    k = _numel(module.kernel_size)
    macs = _numel(inputs[0].shape) * (module.out_channels // module.groups) * k
    return macs + (_numel(outputs[0].shape) if module.bias is not None else 0)


_NORMS = tuple(c for c in (M.batchnorm._BatchNorm, _has("SyncBatchNorm"), M.GroupNorm,
                           M.LayerNorm, M.InstanceNorm) if c is not None)


@register_flops(*_NORMS)
def flops_norm(module, inputs, outputs):
    """input elements x 7 (an estimate: mean, variance, normalise, scale, shift)."""
    return _numel(inputs[0].shape) * 7


@register_flops(M.AvgPool2d, M.MaxPool2d)
def flops_pool(module, inputs, outputs):
    """output elements x window elements."""
    return _numel(outputs[0].shape) * _numel(_pair(module.kernel_size))


def _adaptive_window_sum(n_in, n_out):
    """Total window length over the outputs of 1-d adaptive pooling (windows
    [floor(i*n_in/n_out), ceil((i+1)*n_in/n_out)) )."""
    return sum(-(-(i + 1) * n_in // n_out) - (i * n_in // n_out) for i in range(n_out))


@register_flops(M.AdaptiveAvgPool2d, M.AdaptiveMaxPool2d)
def flops_adaptivePool(module, inputs, outputs):
    """Sum of the window sizes over all outputs."""
    ih, iw = inputs[0].shape[-2:]
    oh, ow = outputs[0].shape[-2:]
    planes = _numel(outputs[0].shape[:-2])
    return planes * _adaptive_window_sum(ih, oh) * _adaptive_window_sum(iw, ow)


@register_flops(M.Linear)
def flops_linear(module, inputs, outputs):
    """output elements x (in_features + bias)."""
    return _numel(outputs[0].shape) * (module.in_features + (module.bias is not None))


@register_flops(M.BatchMatMulActivation)
def flops_batchmatmul(module, inputs, outputs):
    """batch x out_features x n x (in_features + bias)."""
    batch, _, n = inputs[0].shape
    return batch * module.out_features * n * (module.in_features + (module.bias is not None))


hook_modules = [c for c in (M.conv._ConvNd, M.Linear, M.BatchMatMulActivation,
                            M.batchnorm._BatchNorm, M.LayerNorm, M.GroupNorm, M.InstanceNorm,
                            M.pooling._Pool2d, M.AdaptiveAvgPool2d, M.AdaptiveMaxPool2d)
                if c is not None]


def register_hook_module(module):
    """Adds a Module class (or a list/tuple of them) to those :func:`module_stats` hooks."""
    if isinstance(module, (tuple, list)):
        for m in module:
            register_hook_module(m)
    elif isinstance(module, type) and issubclass(module, M.Module):
        hook_modules.append(module)
    else:
        raise TypeError(f"register_hook_module: expected a Module class or a list of them, "
                        f"got {module!r}")


# ---------------------------------------------------------------- receptive fields
def preprocess_receptive_field(module, inputs, outputs):
    """(receptive field, stride) of the module's input: the largest over its inputs of the
    values of the layers that produced them ((1, 1) for model inputs)."""
    owner = _rf_state["owner"]
    known = [owner[id(i)][1] for i in inputs if id(i) in owner and owner[id(i)][0] is i]
    rf = tuple(max([k[0][d] for k in known] + [1]) for d in range(2))
    stride = tuple(max([k[1][d] for k in known] + [1]) for d in range(2))
    return rf, stride


@register_receptive_field(M.conv._ConvNd, M.pooling._Pool2d)
def _rf_window(module, inputs, outputs):
    pre_rf, pre_stride = preprocess_receptive_field(module, inputs, outputs)
    k, s = _pair(module.kernel_size), _pair(module.stride)
    d = _pair(getattr(module, "dilation", 1))
    if len(k) == 1:  # Conv1d keeps ints
        k, s, d = (1,) + k, (1,) + s, (1,) + d
    rf = tuple(pre_rf[i] + (k[i] - 1) * d[i] * pre_stride[i] for i in range(2))
    return rf, tuple(pre_stride[i] * s[i] for i in range(2))


def _receptive_field(module, inputs, outputs):
    impl = next((f for c, f in _calc_receptive_field_dict.items() if isinstance(module, c)),
                preprocess_receptive_field)
    rf, stride = impl(module, inputs, outputs)
    for o in outputs:
        if isinstance(o, Tensor):
            _rf_state["owner"][id(o)] = (o, (rf, stride))
    return rf, stride


# ---------------------------------------------------------------- per-layer records
def get_op_stats(module, inputs, outputs):
    """{input_shapes, output_shapes, flops_num[, receptive_field, stride]} of one call, or
    None when the module's kind has no FLOPs rule."""
    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    impl = next((f for c, f in _calc_flops_dict.items() if isinstance(module, c)), None)
    rst = {"input_shapes": [tuple(i.shape) for i in inputs if hasattr(i, "shape")],
           "output_shapes": [tuple(o.shape) for o in outputs if hasattr(o, "shape")]}
    if _rf_state["enabled"]:
        rst["receptive_field"], rst["stride"] = _receptive_field(module, inputs, outputs)
    if impl is None:
        return None
    rst["flops_num"] = int(impl(module, inputs, outputs))
    return rst


def _mean_std(t):
    a = t.astype("float32")
    return float(F.mean(a).item()), float(F.std(a).item()) if hasattr(F, "std") else \
        float(np.std(a.numpy()))


def get_param_stats(param):
    """dtype, shape, mean, std, element count, bits and bytes of a parameter."""
    name = str(param.dtype)
    nbits = get_dtype_bit(name)
    dim = _numel(param.shape)
    mean, std = _mean_std(param)
    return {"dtype": name, "shape": tuple(param.shape), "mean": f"{mean:.3g}",
            "std": f"{std:.3g}", "param_dim": dim, "nbits": nbits, "size": dim * nbits // 8}


def get_activation_stats(output, has_input=False):
    """dtype, shape, element count, bits and bytes of an output (mean and std too when the
    model ran on real inputs)."""
    name = str(output.dtype)
    nbits = get_dtype_bit(name)
    dim = _numel(output.shape)
    st = {"dtype": name, "shape": tuple(output.shape), "act_dim": dim, "nbits": nbits,
          "size": dim * nbits // 8}
    if has_input:
        mean, std = _mean_std(output)
        st["mean"], st["std"] = f"{mean:.3g}", f"{std:.3g}"
    return st


# ---------------------------------------------------------------- totals and tables
def sizeof_fmt(num, suffix="B"):
    """A human-readable size: binary prefixes for bytes ("1.500 KiB"), decimal otherwise."""
    base, units = (1024.0, ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"]) \
        if suffix == "B" else (1000.0, ["", "K", "M", "G", "T", "P", "E", "Z", "Y"])
    for unit in units:
        if abs(num) < base or unit == units[-1]:
            return f"{num:3.3f} {unit}{suffix}"
        num /= base


def _bars(records, key, width):
    top = max([r[key] for r in records] + [0])
    for r in records:
        r["bar" if key == "flops_num" else "size_bar"] = \
            "#" * (int(r[key] / top * width) if top else 0)


def _cumulate(records, key, cum_key, suffix):
    total = 0
    for r in records:
        total += int(r[key])
        r[cum_key] = sizeof_fmt(total, suffix=suffix)
    for r in records:
        r["ratio"] = r[key] / total if total else 0.0
        r["percentage"] = f"{r['ratio'] * 100:.2f}%"
    return total


def sum_op_stats(flops, bar_length_max=20):
    """Cumulative and relative FLOPs per record, bars, and a total row; returns
    (total FLOPs, records)."""
    total = _cumulate(flops, "flops_num", "flops_cum", "OPs")
    _bars(flops, "flops_num", bar_length_max)
    for r in flops:
        r["flops"] = sizeof_fmt(r["flops_num"], suffix="OPs")
    flops.append({"name": "total", "flops": sizeof_fmt(total, suffix="OPs")})
    return total, flops


def sum_param_stats(params, bar_length_max=20):
    """Returns (total elements, total bytes, records with a total row)."""
    dims = sum(int(r["param_dim"]) for r in params)
    total = _cumulate(params, "size", "size_cum", "B")
    _bars(params, "size", bar_length_max)
    for r in params:
        r["size"] = sizeof_fmt(r["size"])
    params.append({"name": "total", "param_dim": dims, "size": sizeof_fmt(total)})
    return dims, total, params


def sum_activations_stats(activations, bar_length_max=20):
    """Returns (total elements, total bytes, records with a total row)."""
    dims = sum(int(r["act_dim"]) for r in activations)
    total = _cumulate(activations, "size", "size_cum", "B")
    _bars(activations, "size", bar_length_max)
    for r in activations:
        r["size"] = sizeof_fmt(r["size"])
    activations.append({"name": "total", "act_dim": dims, "size": sizeof_fmt(total)})
    return dims, total, activations


def dict2table(list_of_dict, header):
    """Rows for a table: the header, then each dict's values in header order ("" if absent)."""
    return [list(header)] + [[d.get(h, "") for h in header] for d in list_of_dict]


def _render(rows):
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    rule = "  ".join("-" * w for w in widths)
    lines = [rule, "  ".join(c.ljust(w) for c, w in zip(cells[0], widths)), rule]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells[1:]]
    return "\n".join(lines + [rule])


def print_op_stats(flops):
    header = ["name", "class_name", "input_shapes", "output_shapes", "flops", "flops_cum",
              "percentage", "bar"]
    if _rf_state["enabled"]:
        header[4:4] = ["receptive_field", "stride"]
    logger.info("flops stats: \n" + _render(dict2table(flops, header)))


def print_param_stats(params):
    header = ["name", "dtype", "shape", "mean", "std", "param_dim", "nbits", "size",
              "size_cum", "percentage", "size_bar"]
    logger.info("param stats: \n" + _render(dict2table(params, header)))


def print_activations_stats(activations, has_input=False):
    header = ["name", "class_name", "dtype", "shape", "nbits", "act_dim", "size", "size_cum",
              "percentage", "size_bar"]
    if has_input:
        header[4:4] = ["mean", "std"]
    logger.info("activations stats: \n" + _render(dict2table(activations, header)))


def print_summary(**kwargs):
    logger.info("summary\n" + _render([["item", "value"]] + [[k, v] for k, v in kwargs.items()]))


# ---------------------------------------------------------------- the entry point
def _to_tensor(x):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, collections.abc.Mapping):
        return {k: _to_tensor(v) for k, v in x.items()}
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return type(x)(*(_to_tensor(v) for v in x))
    if isinstance(x, (list, tuple)):
        return type(x)(_to_tensor(v) for v in x)
    return Tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, np.ndarray) else x)


def _model_inputs(inputs, input_shapes):
    if inputs is not None:
        inputs = inputs if isinstance(inputs, (tuple, list)) else [inputs]
        return [_to_tensor(x) for x in inputs], True
    if input_shapes:
        shapes = input_shapes if isinstance(input_shapes[0], (tuple, list)) else [input_shapes]
        return [F.zeros(tuple(s), dtype="float32") for s in shapes], False
    raise ValueError("module_stats: give inputs or input_shapes to run the model on")


def module_stats(model, inputs=None, input_shapes=None, cal_params=True, cal_flops=True,
                 cal_activations=True, logging_to_stdout=True, bar_length_max=20):
    """Runs ``model`` once in eval mode (its modes are restored after) on ``inputs`` (arrays
    or tensors, one per positional argument) or on zeros of ``input_shapes``, and returns
    ``(total_stats, stats_details)``: totals (param_size and act_size in bytes, param_dims,
    flops, act_dims) and the per-layer records (params, flops, activations). With
    ``logging_to_stdout`` the tables and a summary go to the package logger.

    Parameters are listed as ``<layer>-w`` / ``<layer>-b`` in the order the layers run, then
    any others by their dotted names; each parameter is counted once, however many layers
    share it."""
    inputs, has_input = _model_inputs(inputs, input_shapes)
    params, flops, activations, hooks = [], [], [], []
    seen = set()
    _rf_state["owner"] = {}

    def add_param(p, name):
        if p is not None and id(p) not in seen:
            seen.add(id(p))
            params.append(dict(get_param_stats(p), name=name))

    def hook(module, inps, outs, name=""):
        class_name = type(module).__name__
        if cal_flops:
            st = get_op_stats(module, inps, outs)
            if st is not None:
                flops.append(dict(st, name=name, class_name=class_name))
        if cal_params:
            add_param(getattr(module, "weight", None), name + "-w")
            add_param(getattr(module, "bias", None), name + "-b")
        if cal_activations:
            out = outs[0] if isinstance(outs, (tuple, list)) else outs
            activations.append(dict(get_activation_stats(out, has_input), name=name,
                                    class_name=class_name))

    kinds = tuple(hook_modules)
    for name, m in model.named_modules():
        if isinstance(m, kinds):
            hooks.append(m.register_forward_hook(partial(hook, name=name)))
    try:
        with set_module_mode_safe(model, training=False):
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
        _rf_state["owner"] = {}
    if cal_params:
        for name, p in model.named_parameters():
            add_param(p, name)
    info = {"#params": len(params)}
    t_flops = t_pdims = t_psize = t_adims = t_asize = 0
    if cal_params:
        t_pdims, t_psize, params = sum_param_stats(params, bar_length_max)
        info["total_param_dims"] = sizeof_fmt(t_pdims, suffix="")
        info["total_param_size"] = sizeof_fmt(t_psize)
        if logging_to_stdout:
            print_param_stats(params)
    if cal_flops:
        t_flops, flops = sum_op_stats(flops, bar_length_max)
        info["total_flops"] = sizeof_fmt(t_flops, suffix="OPs")
        if logging_to_stdout:
            print_op_stats(flops)
    if cal_activations:
        t_adims, t_asize, activations = sum_activations_stats(activations, bar_length_max)
        info["total_act_dims"] = sizeof_fmt(t_adims, suffix="")
        info["total_act_size"] = sizeof_fmt(t_asize)
        if logging_to_stdout:
            print_activations_stats(activations, has_input)
    if cal_flops and cal_params and t_psize:
        info["flops/param_size"] = f"{t_flops / t_psize:3.3f}"
    if logging_to_stdout:
        print_summary(**info)
    return (total_stats(param_size=t_psize, param_dims=t_pdims, flops=t_flops,
                        act_size=t_asize, act_dims=t_adims),
            stats_details(params=params, flops=flops, activations=activations))


