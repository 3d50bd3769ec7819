"""Error cases of the op_db rows (OpInfo.errors): each an Error(fn, exception type, message
fragment) that test_op_db.test_errors runs, crediting the op whose dispatch raised.

Rows of plain table ops (elementwise and other ops without list params) get generated cases:
a wrong number of inputs, inputs that do not broadcast (broadcasting ops) and an output that
does not fit under the memory limit (one-input ops). Every other row names its own cases:
bad axes, shape mismatches, bad params, bad dtypes."""
import numpy as np

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

from .op_db import Error

O = _C.ops
TY_F_BCAST = 1 << 0


def _t(*shape, dtype="float32"):
    return ty.tensor(np.ones(shape), dtype=dtype)


def _i(*values):
    return ty.tensor(np.array(values), dtype="int32")


# ---- generated cases for plain table ops ----
_PLAIN_PARAMS = ("none", "leaky_relu", "clip")


def _arity(op, dtype):
    nin = O[op].info["nin"]
    return Error(lambda: O[op](*[_t(2, dtype=dtype)] * (nin + 1)), ValueError,
                 f"{op}: expected {nin} inputs, got {nin + 1}")


def _no_broadcast(op, dtype):
    nin = O[op].info["nin"]
    return Error(lambda: O[op](*[_t(2 + (k == nin - 1), dtype=dtype) for k in range(nin)]),
                 ValueError, f"{op}: shapes")


def _over_memory_limit(op, dtype):
    def run():
        x = _t(100_000, dtype=dtype)
        _C.empty_cache()
        _C.set_mem_limit(_C.mem_stats()["allocated"] + 4096)
        try:
            O[op](x)
        finally:
            _C.set_mem_limit(0)
    return Error(run, MemoryError, f"{op}: out of memory")


def generated(info):
    op = info.ops[0]
    if op not in O or O[op].info["params"] not in _PLAIN_PARAMS or O[op].info["nin"] < 1:
        return []
    dtype = info.dtypes[0]
    cases = [_arity(op, dtype)]
    if O[op].info["flags"] & TY_F_BCAST and O[op].info["nin"] >= 2:
        cases.append(_no_broadcast(op, dtype))
    if O[op].info["nin"] == 1:
        cases.append(_over_memory_limit(op, dtype))
    return cases


# ---- cases by row ----
def _pool(op, **kw):
    return lambda: O[op](_t(1, 1, 4, 4), _t(1, 1, 3, 3), **kw)


_K2 = dict(kernel_h=2, kernel_w=2, stride_h=2, stride_w=2)
_SHAPES = "shape (2, 3)"

BY_ROW = {
    "clip": [Error(lambda: F.clip(_t(3)), ValueError, "clip: at least one of lower and upper")],
    "where": [Error(lambda: F.where(_t(3) > 0, _t(3), _t(4)), ValueError,
                    "where: shapes (3,) and (4,) cannot be broadcast")],
    "astype": [Error(lambda: O["astype"](_t(3), dtype=99), TypeError,
                     "astype: invalid dtype code 99")],
    "sum": [Error(lambda: F.sum(_t(2, 3), axis=2), IndexError, "sum: axis 2 is out of range")],
    "mean": [Error(lambda: F.mean(_t(2, 3), axis=(0, 0)), ValueError, "mean: repeated axis 0")],
    "prod": [Error(lambda: F.prod(_t(2, 3), axis=-3), IndexError, "prod: axis -3 is out of range")],
    "max": [Error(lambda: F.max(_t(0)), ValueError, "max: cannot take max over an empty axis")],
    "min": [Error(lambda: F.min(_t(2, 0), axis=1), ValueError,
                  "min: cannot take min over an empty axis")],
    "argmax": [Error(lambda: F.argmax(_t(2, 3), axis=-3), IndexError,
                     "argmax: axis -3 is out of range")],
    "argmin": [Error(lambda: F.argmin(_t(0)), ValueError,
                     "argmin: cannot take argmin over an empty")],
    "reshape": [Error(lambda: F.reshape(_t(6), (4,)), ValueError,
                      "reshape: cannot reshape a tensor of shape (6,) into (4,)"),
                Error(lambda: F.reshape(_t(6), (-1, -1)), ValueError,
                      "reshape: only one dimension can be -1")],
    "transpose": [Error(lambda: F.transpose(_t(2, 3), (0, 0)), ValueError,
                        "transpose: invalid permutation entry"),
                  Error(lambda: F.transpose(_t(2, 3), (1, 0, 2)), ValueError,
                        "transpose: permutation has 3 entries for a 2-d tensor")],
    "broadcast_to": [Error(lambda: F.broadcast_to(_t(2, 3), (4, 3)), ValueError,
                           "broadcast_to: cannot broadcast a tensor of shape (2, 3) to (4, 3)")],
    "expand_dims": [Error(lambda: F.expand_dims(_t(2, 3), 4), IndexError,
                          "expand_dims: axis 4 is out of range")],
    "squeeze": [Error(lambda: F.squeeze(_t(2, 3), 0), ValueError,
                      "squeeze: cannot squeeze axis 0 of size 2")],
    "getitem": [Error(lambda: O["slice"](_t(4, 3), starts=[0, 0], stops=[4, 3], steps=[0, 1]),
                      ValueError, "slice: slice step cannot be zero"),
                Error(lambda: O["slice"](_t(4, 3), starts=[0], stops=[4], steps=[1]), ValueError,
                      "slice: slice needs one (start, stop, step) per dim")],
    "setitem": [Error(lambda: O["slice_set"](_t(4, 3), _t(3, 3), starts=[0, 0], stops=[2, 3],
                                             steps=[1, 1]), ValueError, "slice_set:")],
    "assign": [Error(lambda: F.copy(_t(3))._assign(_t(4)), ValueError,
                     "assign: shapes (3,) and (4,) cannot be broadcast")],
    "matmul": [Error(lambda: F.matmul(_t(2, 3), _t(4, 2)), ValueError,
                     "matmul: inner dimensions differ: (2, 3) @ (4, 2)")],
    "linear": [Error(lambda: F.nn.linear(_t(2, 3), _t(4, 2)), ValueError,
                     "matmul: inner dimensions differ")],
    "conv2d": [Error(lambda: F.conv2d(_t(1, 2, 5, 5), _t(3, 4, 3, 3)), ValueError,
                     "conv2d: weight (3, 4, 3, 3) expects 4 input channels per group")],
    "conv1d": [Error(lambda: F.conv1d(_t(1, 2, 5), _t(3, 4, 3)), ValueError,
                     "expects 4 input channels per group")],
    "conv_transpose2d": [Error(lambda: F.conv_transpose2d(_t(1, 2, 5, 5), _t(3, 4, 3, 3)),
                               ValueError, "conv_transpose2d: input (1, 2, 5, 5) has 2 channels")],
    "conv2d_backward_data": [Error(
        lambda: O["conv2d_backward_data"](_t(3, 2, 3, 3), _t(1, 4, 3, 3), _t(1, 2, 5, 5)),
        ValueError, "conv2d_backward_data: output gradient has shape (1, 4, 3, 3)")],
    "conv2d_backward_filter": [Error(
        lambda: O["conv2d_backward_filter"](_t(1, 2, 5, 5), _t(1, 4, 3, 3), _t(3, 2, 3, 3)),
        ValueError, "conv2d_backward_filter: output gradient has shape (1, 4, 3, 3)")],
    "concat": [Error(lambda: F.concat([_t(2, 3), _t(2, 4)], 0), ValueError,
                     "concat: input 1 of shape (2, 4) does not match input 0")],
    "stack": [Error(lambda: F.stack([_t(2, 3), _t(2, 4)], 0), ValueError,
                    "stack: input 1 has shape (2, 4)")],
    "split": [Error(lambda: O["split"](_t(5), sizes=[2, 9], axis=0), ValueError,
                    "split: 2 sizes given for 1 outputs")],
    "repeat": [Error(lambda: F.repeat(_t(2, 3), -1, 0), ValueError,
                     "repeat: param 'repeats' must be >= 0, got -1")],
    "tile": [Error(lambda: F.tile(_t(2, 3), (-1, 2)), ValueError, "tile: param 'reps' (-1, 2) must be >= 0, got -1")],
    "pad": [Error(lambda: F.nn.pad(_t(2, 3), ((5, 5), (0, 0)), mode="reflect"), ValueError,
                  "pad: reflect padding (5, 5) must be smaller than the size 2")],
    "roll": [Error(lambda: F.roll(_t(2, 3), 1, 5), IndexError, "roll: axis 5 is out of range")],
    "flip": [Error(lambda: F.flip(_t(2, 3), 5), IndexError, "flip: axis 5 is out of range")],
    "getitem_advanced": [Error(lambda: _t(4, 3)[_i(0, 9)], IndexError,
                               "index: index 9 is out of bounds for dim 0 with size 4")],
    "setitem_advanced": [Error(lambda: _t(4, 3).__setitem__(_i(0, 9), 1.0), IndexError,
                               "index_set: index 9 is out of bounds for dim 0")],
    "gather": [Error(lambda: F.gather(_t(2, 3), 1, _i(0, 5).reshape(1, 2)), IndexError,
                     "gather: index 5 is out of bounds for dim 1 with size 3"),
               Error(lambda: O["gather"](_t(2, 3), _t(2, 3), axis=0), TypeError,
                     "gather: index input 1 must have an integer dtype, got float32")],
    "scatter": [Error(lambda: F.scatter(_t(2, 3), 1, _i(0, 7).reshape(1, 2), _t(1, 2)),
                      IndexError, "scatter: index 7 is out of bounds for dim 1")],
    "one_hot": [Error(lambda: F.nn.one_hot(_i(0, 3), 2), IndexError,
                      "one_hot: index 3 is out of bounds")],
    "indexing_one_hot": [Error(lambda: F.nn.indexing_one_hot(_t(2, 3), _i(0, 5)), IndexError,
                               "gather: index 5 is out of bounds for dim 1")],
    "sort": [Error(lambda: F.sort(_t()), ValueError, "sort: needs an input with at least 1 dim")],
    "argsort": [Error(lambda: F.argsort(_t()), ValueError, "sort: needs an input with at least")],
    "topk": [Error(lambda: F.topk(_t(3), 5), ValueError, "topk: k = 5 is out of range [0, 3]")],
    "cond_take": [Error(lambda: F.cond_take(_t(3) > 0, _t(4)), ValueError,
                        "cond_take: mask of shape (3,) does not match x of shape (4,)")],
    "cumsum": [Error(lambda: F.cumsum(_t(2, 3), 4), IndexError, "cumsum: axis 4 is out of range")],
    "fill": [Error(lambda: F.full((2, -1), 1.0), ValueError,
                   "fill: negative dimension -1 in param 'shape' (2, -1)")],
    "full_like": [Error(lambda: F.full_like(_t(2, dtype="int32"), float("nan")), ValueError,
                        "fill: cannot fill a int32 tensor with nan")],
    "arange": [Error(lambda: F.arange(0, 5, 0), ValueError, "arange: step must not be zero")],
    "linspace": [Error(lambda: F.linspace(0, 1, -1), ValueError,
                       "linspace: param 'num' must be >= 0, got -1")],
    "eye": [Error(lambda: F.eye(-1), ValueError, "eye: param 'n' must be >= 0, got -1")],
    "uniform": [Error(lambda: O["uniform"](shape=[3], a=1.0, b=0.0, dtype=0), ValueError,
                      "uniform: need low < high"),
                Error(lambda: O["uniform"](shape=[-1], a=0.0, b=1.0, dtype=0), ValueError,
                      "uniform: negative dimension -1 in param 'shape' (-1,)")],
    "normal": [Error(lambda: O["normal"](shape=[3], a=0.0, b=-1.0, dtype=0), ValueError,
                     "normal: mean must be finite and std finite and non-negative")],
    "permutation": [Error(lambda: O["permutation"](n=-1, dtype=7), ValueError,
                          "permutation: param 'n' must be >= 0, got -1")],
    "random_keyed": [Error(lambda: O["random_keyed"](shape=[3], dist=9), ValueError,
                           "random_keyed: unknown distribution 9")],
    "random_dist": [
        Error(lambda: O["random_dist"](_t(3), _t(4), dist=2), ValueError,
              "random_dist: parameters must have one shape, got (3,) and (4,)"),
        Error(lambda: O["random_dist"](_t(3), _t(3, dtype="float64"), dist=3), TypeError,
              "random_dist: parameters must be float tensors of one dtype"),
        Error(lambda: O["random_dist"](_t(3), _t(3), dist=4), ValueError,
              "random_dist: param 'dist' must be")],
    "softmax": [Error(lambda: F.nn.softmax(_t(2, 3), 4), IndexError,
                      "softmax: axis 4 is out of range")],
    "logsoftmax": [Error(lambda: F.nn.logsoftmax(_t(2, 3), 4), IndexError,
                         "log_softmax: axis 4 is out of range")],
    "normalize": [Error(lambda: F.nn.normalize(_t(2, 3), axis=4), IndexError,
                        "axis 4 is out of range for a 2-d tensor")],
    "batch_norm_train": [Error(
        lambda: F.nn.batch_norm(_t(2, 3, 4), _t(4), _t(4), training=True), ValueError,
        "batch_norm: running_mean has shape (4,), expected 3 elements"), Error(
        lambda: O["batch_norm_train"](_t(2, 3, 4), _t(3), _t(1, 3, 1)), ValueError,
        "batch_norm_train: weight must be a float32 tensor of shape (1, 3, 1, ...) for input "
        "(2, 3, 4), got float32 (3,)"), Error(
        lambda: O["batch_norm_train"](_t(2, 3, dtype="int32"), _t(1, 3), _t(1, 3)), TypeError,
        "batch_norm_train: input must be float32 or float64, got int32"), Error(
        lambda: O["batch_norm_train"](_t(0, 3, 2), _t(1, 3, 1), _t(1, 3, 1)), ValueError,
        "batch_norm_train: needs at least one value per channel, got 0")],
    "batch_norm_train_backward": [Error(
        lambda: O["batch_norm_train_backward"](_t(2, 3, 5), _t(2, 3, 4), _t(1, 3, 1), _t(1, 3, 1),
                                               _t(1, 3, 1)), ValueError,
        "batch_norm_train_backward: output gradient must be a float32 tensor of the input's "
        "shape (2, 3, 4), got float32 (2, 3, 5)"), Error(
        lambda: O["batch_norm_train_backward"](_t(2, 3, 4), _t(2, 3, 4), _t(1, 3, 1), _t(1, 2, 1),
                                               _t(1, 3, 1)), ValueError,
        "batch_norm_train_backward: variance must be a float32 tensor of shape (1, 3, 1, ...)")],
    "batch_norm_train_relu_backward": [Error(
        lambda: O["batch_norm_train_relu_backward"](_t(2, 3, 4), _t(2, 3, 5), _t(2, 3, 4),
                                                    _t(1, 3, 1), _t(1, 3, 1), _t(1, 3, 1)),
        ValueError, "batch_norm_train_relu_backward: relu output must be a float32 tensor of the "
        "input's shape (2, 3, 4), got float32 (2, 3, 5)"), Error(
        lambda: O["batch_norm_train_relu_backward"](_t(2, 3, 4), _t(2, 3, 4), _t(2, 3, 4),
                                                    _t(1, 3, 1), _t(1, 3, 1), _t(1, 2, 1)),
        ValueError, "batch_norm_train_relu_backward: weight must be a float32 tensor of shape "
        "(1, 3, 1, ...)")],
    "softmax_backward": [Error(
        lambda: O["softmax_backward"](_t(2, 3), _t(2, 4), axis=1), ValueError,
        "softmax_backward: output gradient must be a float32 tensor of the output's shape "
        "(2, 3), got float32 (2, 4)"), Error(
        lambda: O["softmax_backward"](_t(2, 3), _t(2, 3, dtype="float64"), axis=1), ValueError,
        "output gradient must be a float32 tensor"), Error(
        lambda: O["softmax_backward"](_t(2, 3), _t(2, 3), axis=2), IndexError,
        "softmax_backward: axis 2 is out of range for a 2-d tensor")],
    "log_softmax_backward": [Error(
        lambda: O["log_softmax_backward"](_t(2, 3), _t(3, 2), axis=1), ValueError,
        "log_softmax_backward: output gradient must be a float32 tensor of the output's shape "
        "(2, 3), got float32 (3, 2)")],
    "batch_norm_eval": [Error(
        lambda: F.nn.batch_norm(_t(2, 3, 4), _t(4), _t(4), training=False), ValueError,
        "batch_norm: running_mean has shape (4,), expected 3 elements")],
    "layer_norm": [Error(lambda: F.nn.layer_norm(_t(2, 3), (4,), True, _t(4), _t(4)),
                         ValueError, "layer_norm: normalized_shape (4,) does not match")],
    "group_norm": [Error(lambda: F.nn.group_norm(_t(2, 4, 3), 3, True, _t(4), _t(4)),
                         ValueError, "group_norm: 4 channels cannot be split into 3 groups")],
    "instance_norm": [Error(lambda: F.nn.instance_norm(_t(2, 4, 3), True, _t(5), _t(5)),
                            ValueError, "instance_norm: weight has shape (5,), expected 4")],
    "cross_entropy": [Error(lambda: F.nn.cross_entropy(_t(2, 3), _i(0, 1, 1)), ValueError,
                            "cross_entropy: label shape (3,) does not match pred shape (2, 3)")],
    "binary_cross_entropy": [Error(
        lambda: F.nn.binary_cross_entropy(_t(2, 3), _t(2, 4)), ValueError,
        f"binary_cross_entropy: pred {_SHAPES} and label shape (2, 4) differ")],
    "l1_loss": [Error(lambda: F.loss.l1_loss(_t(2, 3), _t(2, 4)), ValueError,
                      f"l1_loss: pred {_SHAPES} and label shape (2, 4) differ")],
    "square_loss": [Error(lambda: F.loss.square_loss(_t(2, 3), _t(2, 4)), ValueError,
                          f"square_loss: pred {_SHAPES} and label shape (2, 4) differ")],
    "hinge_loss": [Error(lambda: F.loss.hinge_loss(_t(2, 3), _t(2, 3), norm="L3"), ValueError,
                         "hinge_loss: norm must be 'L1' or 'L2', got 'L3'")],
    "topk_accuracy": [Error(lambda: F.topk_accuracy(_t(2, 3), _i(0, 1), 5), ValueError,
                            "topk_accuracy: topk 5 out of range for 3 classes")],
    "embedding": [Error(lambda: F.nn.embedding(_i(0, 7), _t(3, 2)), IndexError,
                        "gather: index 7 is out of bounds for dim 0 with size 3")],
    "max_pool2d": [Error(lambda: F.max_pool2d(_t(2, 3), 2), ValueError,
                         "max_pool2d: input must be 4-d (N, C, H, W), got shape (2, 3)"),
                   Error(lambda: F.max_pool2d(_t(1, 1, 3, 3), 5), ValueError,
                         "max_pool2d: kernel (5, 5) does not fit input (1, 1, 3, 3)")],
    "avg_pool2d": [Error(lambda: F.avg_pool2d(_t(1, 1, 3, 3), 5), ValueError,
                         "avg_pool2d: kernel (5, 5) does not fit input (1, 1, 3, 3)")],
    "adaptive_max_pool2d": [Error(lambda: F.adaptive_max_pool2d(_t(1, 1, 3, 3), (0, 2)),
                                  ValueError, "adaptive_max_pool2d: param 'out_h' must be >= 1, got 0")],
    "adaptive_avg_pool2d": [Error(lambda: F.adaptive_avg_pool2d(_t(3, 3), 2), ValueError,
                                  "adaptive_avg_pool2d: input must be 4-d (N, C, H, W)")],
    "max_pool2d_grad": [Error(_pool("max_pool2d_grad", **_K2), ValueError,
                              "max_pool2d_grad: output gradient has shape (1, 1, 3, 3)")],
    "max_pool2d_select": [Error(_pool("max_pool2d_select", **_K2), ValueError,
                                "max_pool2d_select: selected values have shape (1, 1, 3, 3)")],
    "avg_pool2d_grad": [Error(_pool("avg_pool2d_grad", **_K2), ValueError,
                              "avg_pool2d_grad: output gradient has shape (1, 1, 3, 3)")],
    "adaptive_pool2d_grad": [Error(_pool("adaptive_pool2d_grad", out_h=2, out_w=2), ValueError,
                                   "adaptive_pool2d_grad: output gradient has shape")],
    "adaptive_max_pool2d_select": [Error(
        _pool("adaptive_max_pool2d_select", out_h=2, out_w=2), ValueError,
        "adaptive_max_pool2d_select: selected values have shape (1, 1, 3, 3)")],
    "slice_grad": [Error(lambda: O["slice_grad"](_t(4, 3), _t(2, 2), starts=[0, 0], stops=[2, 3],
                                                 steps=[1, 1]), ValueError,
                         "slice_grad: gradient of shape (2, 2) does not match the slice shape")],
    "pad_grad": [Error(lambda: O["pad_grad"](_t(2, 3), pads=[5, 5, 0, 0], mode=0), ValueError,
                       "pad_grad: pads do not fit dim 0 of size 2")],
    "index_add": [Error(lambda: O["index_add"](_t(4, 3), _t(2, 2), _i(0, 1), axis=0), ValueError,
                        "index_add: cannot put a value of shape (2, 2)")],
    "scatter_add": [Error(lambda: O["scatter_add"](_t(2, 3), _i(0, 1).reshape(1, 2), _t(2, 2),
                                                   axis=0), ValueError,
                          "scatter_add: source of shape (2, 2) must have the index shape")],
}


def attach(rows):
    """Gives each row its generated and named error cases (returns rows)."""
    for info in rows:
        info.errors = list(info.errors) + generated(info) + BY_ROW.get(info.name, [])
    return rows
