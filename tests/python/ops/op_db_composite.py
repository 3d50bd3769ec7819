"""op_db rows of the composite family (see op_db.py): nn functions and losses written with
existing ops, plus the fused softmax / log_softmax ops of src/ops/nn.c."""
import numpy as np

import tianyuan.functional as F

from .op_db import OpInfo, Sample, rand


# ---- NumPy references (float64) ----
def _default_axis(ndim):
    return 0 if ndim in (0, 1, 3) else 1


def _np_axis(x, axis):
    if axis is None:
        axis = _default_axis(x.ndim)
    return tuple(axis) if isinstance(axis, (list, tuple)) else axis


def _np_log_softmax(x, axis):
    ax = _np_axis(x, axis)
    if x.size == 0:
        return x.copy()
    m = np.max(x, axis=ax, keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True))


def _np_softmax(x, axis=None):
    return np.exp(_np_log_softmax(x, axis))


def _np_normalize(x, ord=None, axis=None, eps=1e-12):
    p = 2.0 if ord is None else ord
    n = np.sum(np.abs(x) ** p, axis=axis, keepdims=axis is not None) ** (1.0 / p)
    return x / np.maximum(n, eps)


def _np_norm_over(x, axes, eps):
    m = x.mean(axis=axes, keepdims=True)
    v = ((x - m) ** 2).mean(axis=axes, keepdims=True)
    return (x - m) / np.sqrt(v + eps)


def _bcast_c(t, ndim):
    return t.reshape([1, -1] + [1] * (ndim - 2))


def _np_bn_train(x, w, b, eps=1e-5):
    axes = tuple([0] + list(range(2, x.ndim)))
    return _np_norm_over(x, axes, eps) * _bcast_c(w, x.ndim) + _bcast_c(b, x.ndim)


def _np_bn_eval(x, rm, rv, w, b, eps=1e-5):
    nd = x.ndim
    return (x - _bcast_c(rm, nd)) / np.sqrt(_bcast_c(rv, nd) + eps) * _bcast_c(w, nd) + \
        _bcast_c(b, nd)


def _np_layer_norm(x, w, b, normalized_shape, eps=1e-5):
    k = len(normalized_shape)
    return _np_norm_over(x, tuple(range(x.ndim - k, x.ndim)), eps) * w + b


def _np_group_norm(x, w, b, num_groups, eps=1e-5):
    n = x.shape[0]
    y = _np_norm_over(x.reshape(n, num_groups, -1), (2,), eps).reshape(x.shape)
    return y * _bcast_c(w, x.ndim) + _bcast_c(b, x.ndim)


def _np_instance_norm(x, w, b, eps=1e-5):
    y = _np_norm_over(x, tuple(range(2, x.ndim)), eps)
    return y * _bcast_c(w, x.ndim) + _bcast_c(b, x.ndim)


def _np_reduce(loss, reduction):
    return {"mean": np.mean, "sum": np.sum}.get(reduction, np.asarray)(loss)


def _np_cross_entropy(pred, label, axis=1, with_logits=True, label_smooth=0, reduction="mean"):
    logp = _np_log_softmax(pred, axis) if with_logits else np.log(pred)
    picked = np.take_along_axis(logp, np.expand_dims(label.astype(np.int64), axis), axis)
    loss = -np.squeeze(picked, axis)
    if label_smooth:
        loss = loss * (1 - label_smooth) - logp.mean(axis=axis) * label_smooth
    return _np_reduce(loss, reduction)


def _np_bce(pred, label, with_logits=True, reduction="mean"):
    if with_logits:
        loss = np.logaddexp(0, pred) - label * pred
    else:
        loss = -(label * np.log(pred) + (1 - label) * np.log(1 - pred))
    return _np_reduce(loss, reduction)


def _np_hinge(pred, label, norm="L1", reduction="mean"):
    loss = np.maximum(1 - pred * label, 0)
    if norm == "L2":
        loss = loss ** 2
    if pred.ndim >= 2:
        loss = loss.sum(axis=tuple(range(1, pred.ndim)))
    return _np_reduce(loss, reduction)


def _np_topk(logits, target, topk=1):
    higher = (logits > np.take_along_axis(logits, target[:, None].astype(np.int64), 1)).sum(1)
    ks = (topk,) if isinstance(topk, int) else topk
    accs = tuple(np.float32((higher < k).mean()) for k in ks)
    return accs[0] if isinstance(topk, int) else accs


# ---- samples ----
def _softmax_samples(rng):
    specs = [((3, 4), 1), ((3, 4), 0), ((3, 4), -1), ((2, 3, 4), None), ((2, 3, 4, 2), None),
             ((), None), ((7,), None), ((0, 3), 1), ((2, 3, 4), (0, 2)), ((1, 5), 1)]
    out = [Sample(rand(rng, s), axis=a) for s, a in specs]
    out.append(Sample(rand(rng, (2, 6), -200, 200), axis=1))  # large logits stay finite
    return out


def _logsoftmax_samples(rng):
    return [s for s in _softmax_samples(rng) if s.kwargs["axis"] is not None]


def _normalize_samples(rng):
    return [Sample(rand(rng, (3, 4))), Sample(rand(rng, (3, 4)), axis=1),
            Sample(rand(rng, (2, 3, 4)), ord=1, axis=0), Sample(rand(rng, (5,)), ord=3)]


def _chan(rng, c):
    return rand(rng, (c,), 0.5, 1.5), rand(rng, (c,))


def _bn_train_samples(rng):
    out = []
    for shape in [(4, 3), (2, 3, 4, 5), (3, 2, 5)]:
        w, b = _chan(rng, shape[1])
        out.append(Sample(rand(rng, shape), w, b))
    return out


def _bn_backward(g, x, mean, var, w, eps=1e-5):
    """The fused gradient op of batch_norm_train, called directly (mean, var, w (1, C, 1...))."""
    from tianyuan import _C
    return _C.ops["batch_norm_train_backward"](g, x, mean, var, w, eps=eps)


def _np_bn_backward(g, x, mean, var, w, eps=1e-5):
    axes = tuple([0] + list(range(2, x.ndim)))
    r = 1 / np.sqrt(var + eps)
    xhat = (x - mean) * r
    cnt = x.size / x.shape[1]
    db = g.sum(axis=axes, keepdims=True)
    dw = (g * xhat).sum(axis=axes, keepdims=True)
    return (g - db / cnt - xhat * dw / cnt) * w * r, dw, db


def _bn_backward_samples(rng):
    out = []
    for shape, eps in [((4, 3), 1e-5), ((2, 3, 4, 5), 0.1), ((3, 2, 5), 1e-5)]:
        c = (1, shape[1]) + (1,) * (len(shape) - 2)
        out.append(Sample(rand(rng, shape), rand(rng, shape), rand(rng, c), rand(rng, c, 0.5, 2),
                          rand(rng, c), eps=eps))
    return out


def _bn_relu_backward(g, relu_y, x, mean, var, w, eps=1e-5):
    """The fused gradient of relu(batch_norm_train(x)), called directly."""
    from tianyuan import _C
    return _C.ops["batch_norm_train_relu_backward"](g, relu_y, x, mean, var, w, eps=eps)


def _np_bn_relu_backward(g, relu_y, x, mean, var, w, eps=1e-5):
    return _np_bn_backward(np.where(relu_y > 0, g, 0.0), x, mean, var, w, eps)


def _bn_relu_backward_samples(rng):
    """relu_y with zeros, negatives (not a relu output, but the op only reads its sign), NaN
    and +-inf: every lane that is not > 0 takes no gradient."""
    out = []
    for shape, eps in [((4, 3), 1e-5), ((2, 3, 4, 5), 0.1), ((3, 2, 17), 1e-5)]:
        c = (1, shape[1]) + (1,) * (len(shape) - 2)
        y = rand(rng, shape)
        flat = y.reshape(-1)
        flat[::5] = 0.0
        flat[1::7] = np.nan
        flat[2::11] = np.inf
        flat[3::13] = -np.inf
        out.append(Sample(rand(rng, shape), y, rand(rng, shape), rand(rng, c),
                          rand(rng, c, 0.5, 2), rand(rng, c), eps=eps))
    return out


def _softmax_backward(y, g, axis=0):
    """softmax's fused gradient, called directly (y need not be a softmax output)."""
    from tianyuan import _C
    return _C.ops["softmax_backward"](y, g, axis=axis)


def _np_softmax_backward(y, g, axis=0):
    ax = axis if y.ndim else None
    return y * (g - np.sum(g * y, axis=ax, keepdims=True))


def _log_softmax_backward(y, g, axis=0):
    """log_softmax's fused gradient, called directly (y need not be a log_softmax output)."""
    from tianyuan import _C
    return _C.ops["log_softmax_backward"](y, g, axis=axis)


def _np_log_softmax_backward(y, g, axis=0):
    ax = axis if y.ndim else None
    return g - np.exp(y) * np.sum(g, axis=ax, keepdims=True)


def _log_softmax_backward_samples(rng):
    return [Sample(np.log(s.args[0] + np.float32(0.05)).astype(s.args[0].dtype), *s.args[1:],
                   **s.kwargs) for s in _softmax_backward_samples(rng)]


def _softmax_backward_samples(rng):
    specs = [((3, 4), 1), ((3, 4), 0), ((2, 3, 17), -1), ((2, 5, 3), 1), ((), 0), ((0, 3), 1),
             ((2, 0), 1), ((1, 5), 1), ((4, 1), 1)]
    return [Sample(rand(rng, s, 0, 1), rand(rng, s), axis=a) for s, a in specs]


def _bn_eval_samples(rng):
    out = []
    for shape in [(4, 3), (2, 3, 4, 5), (0, 3, 2, 2)]:
        c = shape[1]
        w, b = _chan(rng, c)
        out.append(Sample(rand(rng, shape), rand(rng, (c,)), rand(rng, (c,), 0.5, 2), w, b))
    return out


def _layer_norm_samples(rng):
    out = []
    for shape, ns in [((3, 4), (4,)), ((2, 3, 4), (3, 4)), ((5,), (5,)), ((0, 4), (4,))]:
        out.append(Sample(rand(rng, shape), rand(rng, ns, 0.5, 1.5), rand(rng, ns),
                          normalized_shape=ns))
    return out


def _group_norm_samples(rng):
    out = []
    for shape, g in [((2, 4, 3, 3), 2), ((3, 6, 5), 3), ((2, 4), 4), ((2, 4, 2, 2), 1)]:
        w, b = _chan(rng, shape[1])
        out.append(Sample(rand(rng, shape), w, b, num_groups=g))
    return out


def _instance_norm_samples(rng):
    out = []
    for shape in [(2, 3, 4, 4), (3, 2, 5)]:
        w, b = _chan(rng, shape[1])
        out.append(Sample(rand(rng, shape), w, b))
    return out


def _labels(rng, shape, n):
    return rng.integers(0, n, size=shape).astype(np.int32)


def _ce_samples(rng):
    return [
        Sample(rand(rng, (4, 5)), _labels(rng, (4,), 5)),
        Sample(rand(rng, (4, 5)), _labels(rng, (4,), 5), reduction="sum"),
        Sample(rand(rng, (4, 5)), _labels(rng, (4,), 5), reduction="none"),
        Sample(rand(rng, (2, 3, 4)), _labels(rng, (2, 4), 3)),
        Sample(rand(rng, (3, 4)), _labels(rng, (4,), 3), axis=0),
        Sample(rand(rng, (2, 4, 3)), _labels(rng, (2, 4), 3), axis=-1),
        Sample(rand(rng, (4, 5)), _labels(rng, (4,), 5), label_smooth=0.1),
        Sample(rand(rng, (4, 5), 0.05, 1), _labels(rng, (4,), 5), with_logits=False),
        Sample(rand(rng, (4, 5), 0.05, 1), _labels(rng, (4,), 5), with_logits=False,
               label_smooth=0.2, reduction="none"),
        Sample(rand(rng, (3, 4), -300, 300), _labels(rng, (3,), 4), reduction="none"),
    ]


def _bce_samples(rng):
    return [Sample(rand(rng, (4, 3)), rand(rng, (4, 3), 0, 1)),
            Sample(rand(rng, (5,)), rand(rng, (5,), 0, 1), reduction="none"),
            Sample(rand(rng, (2, 3), -50, 50), rand(rng, (2, 3), 0, 1), reduction="sum"),
            Sample(rand(rng, (4, 3), 0.05, 0.95), rand(rng, (4, 3), 0, 1), with_logits=False)]


def _pair_samples(rng):
    return [Sample(rand(rng, (4, 3)), rand(rng, (4, 3))),
            Sample(rand(rng, (5,)), rand(rng, (5,)), reduction="sum"),
            Sample(rand(rng, (2, 3, 2)), rand(rng, (2, 3, 2)), reduction="none"),
            Sample(rand(rng, ()), rand(rng, ()))]


def _hinge_samples(rng):
    def pm1(shape):
        return np.where(rng.uniform(size=shape) > 0.5, 1.0, -1.0)
    return [Sample(rand(rng, (4, 3)), pm1((4, 3))),
            Sample(rand(rng, (4, 3)), pm1((4, 3)), norm="L2"),
            Sample(rand(rng, (5,)), pm1((5,)), reduction="none"),
            Sample(rand(rng, (2, 3, 2)), pm1((2, 3, 2)), norm="l2", reduction="sum")]


def _topk_samples(rng):
    return [Sample(rand(rng, (6, 5)), _labels(rng, (6,), 5)),
            Sample(rand(rng, (6, 5)), _labels(rng, (6,), 5), topk=3),
            Sample(rand(rng, (8, 4)), _labels(rng, (8,), 4), topk=(1, 2, 4))]


def _embedding_samples(rng):
    return [Sample(rand(rng, (6, 3)), _labels(rng, (4,), 6)),
            Sample(rand(rng, (5, 2)), _labels(rng, (2, 3), 5))]  # padding_idx blocks grads:
    # tested in test_nn_functional.py


def _np_embedding(w, idx):
    return w[idx.astype(np.int64)]


def _embedding(w, idx):
    return F.nn.embedding(idx, w)


# the hinge reference takes MegEngine's case-insensitive norm names
def _np_hinge_any(pred, label, norm="L1", reduction="mean"):
    return _np_hinge(pred, label, norm.upper(), reduction)


FLOAT = ("float32", "float64")

ROWS = [
    OpInfo("softmax", F.nn.softmax, _np_softmax, _softmax_samples, ops=["softmax"],
           dtypes=("float32", "float64", "float16")),
    OpInfo("logsoftmax", F.nn.logsoftmax, _np_log_softmax, _logsoftmax_samples,
           ops=["log_softmax"], dtypes=("float32", "float64", "float16")),
    OpInfo("normalize", F.nn.normalize, _np_normalize, _normalize_samples, ops=["normalize"],
           dtypes=FLOAT),
    OpInfo("batch_norm_train",
           lambda x, w, b: F.nn.batch_norm(x, None, None, w, b, training=True), _np_bn_train,
           _bn_train_samples, ops=["batch_norm_train", "batch_norm"], dtypes=FLOAT, atol=3e-5),
    OpInfo("batch_norm_train_backward", _bn_backward, _np_bn_backward, _bn_backward_samples,
           grad=False, dtypes=FLOAT, atol=3e-5),
    OpInfo("batch_norm_train_relu_backward", _bn_relu_backward, _np_bn_relu_backward,
           _bn_relu_backward_samples, grad=False, dtypes=FLOAT, atol=3e-5),
    OpInfo("softmax_backward", _softmax_backward, _np_softmax_backward,
           _softmax_backward_samples, grad=False, dtypes=("float32", "float64", "float16")),
    OpInfo("log_softmax_backward", _log_softmax_backward, _np_log_softmax_backward,
           _log_softmax_backward_samples, grad=False, dtypes=("float32", "float64", "float16")),
    OpInfo("batch_norm_eval",
           lambda x, rm, rv, w, b: F.nn.batch_norm(x, rm, rv, w, b, training=False),
           _np_bn_eval, _bn_eval_samples, ops=["batch_norm"], dtypes=FLOAT),
    OpInfo("layer_norm",
           lambda x, w, b, normalized_shape: F.nn.layer_norm(x, normalized_shape, True, w, b),
           _np_layer_norm, _layer_norm_samples, ops=["layer_norm"], dtypes=FLOAT, atol=3e-5),
    OpInfo("group_norm",
           lambda x, w, b, num_groups: F.nn.group_norm(x, num_groups, True, w, b),
           _np_group_norm, _group_norm_samples, ops=["group_norm"], dtypes=FLOAT, atol=3e-5),
    OpInfo("instance_norm", lambda x, w, b: F.nn.instance_norm(x, True, w, b),
           _np_instance_norm, _instance_norm_samples, ops=["instance_norm"], dtypes=FLOAT,
           atol=3e-5),
    OpInfo("cross_entropy", F.nn.cross_entropy, _np_cross_entropy, _ce_samples,
           ops=["cross_entropy"], nondiff_args=(1,), dtypes=FLOAT, atol=3e-5),
    OpInfo("binary_cross_entropy", F.nn.binary_cross_entropy, _np_bce, _bce_samples,
           ops=["binary_cross_entropy"], dtypes=FLOAT, atol=3e-5),
    OpInfo("l1_loss", F.loss.l1_loss, lambda p, l, reduction="mean": _np_reduce(
        np.abs(p - l), reduction), _pair_samples, ops=["l1_loss"], dtypes=FLOAT),
    OpInfo("square_loss", F.loss.square_loss, lambda p, l, reduction="mean": _np_reduce(
        (p - l) ** 2, reduction), _pair_samples, ops=["square_loss"], dtypes=FLOAT),
    OpInfo("hinge_loss", F.loss.hinge_loss, _np_hinge_any, _hinge_samples, ops=["hinge_loss"],
           dtypes=FLOAT),
    OpInfo("topk_accuracy", F.topk_accuracy, _np_topk, _topk_samples, ops=["topk_accuracy"],
           nondiff_args=(1,), grad=False),
    OpInfo("embedding", _embedding, _np_embedding, _embedding_samples, ops=["embedding"],
           nondiff_args=(1,), dtypes=FLOAT),
]
