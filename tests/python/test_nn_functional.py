"""nn functions and losses beyond the op_db rows: batch_norm running statistics, MegEngine
defaults and namespaces, numerical stability, and bad-input errors."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C


def _t(a, dtype="float64"):
    return ty.tensor(np.asarray(a), dtype=dtype)


# ---- namespaces ----
def test_namespaces_follow_megengine():
    assert not hasattr(F, "cross_entropy")  # MegEngine has only F.nn / F.loss cross_entropy
    assert F.nn.cross_entropy is F.loss.cross_entropy
    assert F.nn.logsumexp is F.logsumexp
    assert F.nn.log_softmax is F.nn.logsoftmax
    assert F.softmax is F.nn.softmax and F.batch_norm is F.nn.batch_norm
    assert F.topk_accuracy is F.metric.topk_accuracy is F.nn.topk_accuracy
    with pytest.raises(AttributeError):
        F.nn.no_such_function  # noqa: B018


# ---- softmax ----
@pytest.mark.parametrize("shape,axis", [((), 0), ((5,), 0), ((2, 3), 1), ((2, 3, 4), 0),
                                        ((2, 3, 4, 5), 1)])
def test_softmax_default_axis(shape, axis, rng):
    x = rng.standard_normal(shape)
    got = F.nn.softmax(_t(x)).numpy()
    want = F.nn.softmax(_t(x), axis=axis).numpy()
    np.testing.assert_array_equal(got, want)


def test_softmax_is_stable_for_huge_logits():
    x = _t([[1e4, 0.0, -1e4], [-1e30, -1e30, -1e30]], "float32")
    y = F.nn.softmax(x, axis=1).numpy()
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    ly = F.nn.logsoftmax(x, axis=1).numpy()
    np.testing.assert_allclose(ly[0], [0, -1e4, -2e4], rtol=1e-6)


def test_softmax_casts_int_input():
    y = F.nn.softmax(ty.tensor([[1, 2, 3]], dtype="int32"), axis=1)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy().sum(), 1.0, rtol=1e-6)


def test_softmax_op_errors():
    with pytest.raises(TypeError, match="softmax"):
        _C.ops["softmax"](ty.tensor([1, 2], dtype="int32"), axis=0)
    with pytest.raises(IndexError, match="log_softmax"):
        _C.ops["log_softmax"](_t(np.zeros((2, 3))), axis=2)


def test_softmax_second_order_grad(rng):
    """The grad rules are written with ops, so a gradient of a gradient works."""
    x = ty.Parameter(rng.standard_normal((2, 3)), dtype="float64")
    w = _t(rng.standard_normal((2, 3)))
    gm1 = ty.autodiff.GradManager().attach([x])
    gm2 = ty.autodiff.GradManager().attach([x])
    with gm1 | gm2:
        y = (F.nn.softmax(x, axis=1) * w).sum()
        gm1.backward(y)
        g1 = x.grad
        x.grad = None
        gm2.backward((g1 * g1).sum())

    def first(xv):
        s = np.exp(xv - xv.max(1, keepdims=True))
        s /= s.sum(1, keepdims=True)
        return s * (w.numpy() - (s * w.numpy()).sum(1, keepdims=True))

    xv, eps, num = x.numpy().copy(), 1e-6, np.zeros((2, 3))
    for i in np.ndindex(2, 3):
        p, m = xv.copy(), xv.copy()
        p[i] += eps
        m[i] -= eps
        num[i] = ((first(p) ** 2).sum() - (first(m) ** 2).sum()) / (2 * eps)
    np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-8)


def test_normalize_zero_vector_stays_zero():
    y = F.nn.normalize(_t(np.zeros((2, 3))), axis=1).numpy()
    np.testing.assert_array_equal(y, np.zeros((2, 3)))


# ---- batch_norm ----
def _running(c, shape):
    return (ty.tensor(np.zeros(shape, np.float32).reshape(shape) + 0.5),
            ty.tensor(np.ones(shape, np.float32) * 2.0))


@pytest.mark.parametrize("xshape,pshape", [((4, 3, 2, 2), (1, 3, 1, 1)), ((5, 3), (1, 3))])
def test_batch_norm_updates_running_stats(xshape, pshape, rng):
    x = rng.standard_normal(xshape)
    rm, rv = _running(3, pshape)
    y = F.nn.batch_norm(_t(x), rm, rv, training=True, momentum=0.9)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    n = x.size // 3
    bm, bv = x.mean(axis=axes), x.var(axis=axes)
    assert rm.shape == pshape and rv.shape == pshape  # updated in place, same shape
    np.testing.assert_allclose(rm.numpy().ravel(), 0.9 * 0.5 + 0.1 * bm, rtol=1e-6)
    np.testing.assert_allclose(rv.numpy().ravel(), 0.9 * 2.0 + 0.1 * bv * n / (n - 1), rtol=1e-6)
    shp = [1, 3] + [1] * (x.ndim - 2)
    want = (x - bm.reshape(shp)) / np.sqrt(bv.reshape(shp) + 1e-5)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-10, atol=1e-10)


def test_batch_norm_not_inplace_returns_new_stats(rng):
    x = rng.standard_normal((4, 3))
    rm, rv = _running(3, (1, 3))
    out, nm, nv = F.nn.batch_norm(_t(x), rm, rv, training=True, inplace=False)
    np.testing.assert_array_equal(rm.numpy(), np.full((1, 3), 0.5, np.float32))
    np.testing.assert_allclose(nm.numpy().ravel(), 0.45 + 0.1 * x.mean(0), rtol=1e-6)
    assert out.shape == (4, 3) and nv.shape == (1, 3)


def test_batch_norm_eval_uses_running_stats(rng):
    x = rng.standard_normal((4, 3, 2, 2))
    rm, rv = _running(3, (1, 3, 1, 1))
    y = F.nn.batch_norm(_t(x), rm, rv, training=False)
    np.testing.assert_allclose(y.numpy(), (x - 0.5) / np.sqrt(2.0 + 1e-5), rtol=1e-6)
    np.testing.assert_array_equal(rm.numpy(), np.full((1, 3, 1, 1), 0.5, np.float32))


def test_batch_norm_running_stats_get_no_gradient(rng):
    x = ty.Parameter(rng.standard_normal((4, 3)), dtype="float64")
    w = ty.Parameter(np.ones((1, 3)), dtype="float64")
    rm, rv = _running(3, (1, 3))
    gm = ty.autodiff.GradManager().attach([x, w])
    with gm:
        y = F.nn.batch_norm(x, rm, rv, w, None, training=True)
        gm.backward((y * _t(rng.standard_normal((4, 3)))).sum())
    assert x.grad is not None and w.grad is not None and w.grad.shape == (1, 3)
    assert rm.grad is None and rv.grad is None


def test_batch_norm_errors():
    x = _t(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="running_mean"):
        F.nn.batch_norm(x, training=False)
    with pytest.raises(ValueError, match="weight has shape"):
        F.nn.batch_norm(x, weight=_t(np.ones(4)), training=True)
    with pytest.raises(ValueError, match="N, C"):
        F.nn.batch_norm(_t(np.zeros(4)), training=True)
    with pytest.raises(ValueError, match="non-empty"):
        F.nn.batch_norm(_t(np.zeros((0, 3))), training=True)
    with pytest.raises(TypeError, match="float"):
        F.nn.batch_norm(ty.tensor(np.zeros((2, 3)), dtype="int32"), training=True)


def test_norm_layer_errors():
    x = _t(np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="normalized_shape"):
        F.nn.layer_norm(x, (4,))
    with pytest.raises(ValueError, match="groups"):
        F.nn.group_norm(x, 3, False)
    with pytest.raises(ValueError, match="spatial"):
        F.nn.instance_norm(_t(np.zeros((2, 4))), False)


def test_layer_norm_without_affine(rng):
    x = rng.standard_normal((3, 5))
    y = F.nn.layer_norm(_t(x), 5, affine=False).numpy()
    np.testing.assert_allclose(y.mean(1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(1), 1 / (1 + 1e-5 / x.var(1)), rtol=1e-10)


# ---- losses ----
def test_cross_entropy_matches_smoothed_target(rng):
    x, lab = rng.standard_normal((4, 5)), rng.integers(0, 5, 4)
    q = np.full((4, 5), 0.1 / 5)
    q[np.arange(4), lab] += 0.9
    logp = x - x.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    got = F.nn.cross_entropy(_t(x), ty.tensor(lab, dtype="int32"), label_smooth=0.1).numpy()
    np.testing.assert_allclose(got, -(q * logp).sum(1).mean(), rtol=1e-12)


def test_cross_entropy_is_stable_and_differentiable_for_huge_logits():
    x = ty.Parameter(np.array([[1e4, 0.0, -1e4]]), dtype="float32")
    gm = ty.autodiff.GradManager().attach([x])
    with gm:
        loss = F.nn.cross_entropy(x, ty.tensor([2], dtype="int32"))
        gm.backward(loss)
    np.testing.assert_allclose(loss.numpy(), 2e4, rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), [[1, 0, -1]], atol=1e-6)


def test_loss_errors():
    pred, lab = _t(np.zeros((4, 5))), ty.tensor(np.zeros(4), dtype="int32")
    with pytest.raises(ValueError, match="reduction"):
        F.nn.cross_entropy(pred, lab, reduction="avg")
    with pytest.raises(ValueError, match="label shape"):
        F.nn.cross_entropy(pred, ty.tensor(np.zeros(5), dtype="int32"))
    with pytest.raises(ValueError, match="label shape"):
        F.nn.cross_entropy(pred, ty.tensor(np.zeros((4, 1)), dtype="int32"))
    with pytest.raises(TypeError, match="integer"):
        F.nn.cross_entropy(pred, _t(np.zeros(4)))
    with pytest.raises(ValueError, match="axis"):
        F.nn.cross_entropy(pred, lab, axis=2)
    with pytest.raises(IndexError):
        F.nn.cross_entropy(pred, ty.tensor([0, 1, 5, 2], dtype="int32"))
    for fn in (F.loss.l1_loss, F.loss.square_loss, F.loss.binary_cross_entropy,
               F.loss.hinge_loss):
        with pytest.raises(ValueError, match="shape"):
            fn(pred, _t(np.zeros((4, 1))))
        with pytest.raises(ValueError, match="reduction"):
            fn(pred, pred, reduction="max")
    with pytest.raises(ValueError, match="norm"):
        F.loss.hinge_loss(pred, pred, norm="L3")


def test_topk_accuracy_errors():
    x, t = _t(np.zeros((4, 5))), ty.tensor(np.zeros(4), dtype="int32")
    with pytest.raises(ValueError, match="topk"):
        F.topk_accuracy(x, t, 6)
    with pytest.raises(ValueError, match="target shape"):
        F.topk_accuracy(x, ty.tensor(np.zeros(3), dtype="int32"))


# ---- embedding ----
def test_embedding_padding_row_gets_no_gradient(rng):
    w = ty.Parameter(rng.standard_normal((5, 2)), dtype="float64")
    idx = ty.tensor([[0, 1], [1, 4]], dtype="int32")
    gm = ty.autodiff.GradManager().attach([w])
    with gm:
        y = F.nn.embedding(idx, w, padding_idx=1)
        gm.backward(y.sum())
    np.testing.assert_array_equal(y.numpy(), w.numpy()[[[0, 1], [1, 4]]])
    np.testing.assert_array_equal(w.grad.numpy()[:, 0], [1, 0, 0, 0, 1])


def test_embedding_errors():
    w = _t(np.zeros((5, 2)))
    with pytest.raises(TypeError, match="integers"):
        F.nn.embedding(_t([0.0]), w)
    with pytest.raises(ValueError, match="2-d"):
        F.nn.embedding(ty.tensor([0], dtype="int32"), _t(np.zeros(5)))
    with pytest.raises(NotImplementedError):
        F.nn.embedding(ty.tensor([0], dtype="int32"), w, max_norm=1.0)


# ---- against PyTorch, when it is installed ----
def test_losses_match_torch(rng):
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x, lab = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    got = F.nn.cross_entropy(_t(x), ty.tensor(lab, dtype="int32"), label_smooth=0.2).numpy()
    want = tF.cross_entropy(torch.tensor(x), torch.tensor(lab), label_smoothing=0.2).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    p, q = rng.standard_normal((6, 4)), rng.uniform(0, 1, (6, 4))
    got = F.nn.binary_cross_entropy(_t(p), _t(q)).numpy()
    want = tF.binary_cross_entropy_with_logits(torch.tensor(p), torch.tensor(q)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10)
    xg = rng.standard_normal((2, 6, 3, 3))
    w, b = rng.uniform(0.5, 1.5, 6), rng.standard_normal(6)
    got = F.nn.group_norm(_t(xg), 3, True, _t(w), _t(b)).numpy()
    want = tF.group_norm(torch.tensor(xg), 3, torch.tensor(w), torch.tensor(b)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10)


def test_cross_entropy_mask_fallback_matches(monkeypatch, rng):
    """Without F.indexing_one_hot, labels are picked with a one-hot mask (same values)."""
    x, lab = _t(rng.standard_normal((4, 3, 2))), ty.tensor(rng.integers(0, 3, (4, 2)),
                                                           dtype="int32")
    want = F.nn.cross_entropy(x, lab, reduction="none").numpy()
    monkeypatch.delattr(F, "indexing_one_hot", raising=False)
    np.testing.assert_allclose(F.nn.cross_entropy(x, lab, reduction="none").numpy(), want,
                               rtol=1e-12)
    with pytest.raises(IndexError, match="label values"):
        F.nn.cross_entropy(x, ty.tensor(np.full((4, 2), 3), dtype="int32"))
