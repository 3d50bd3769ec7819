"""multi_head_attention against a NumPy float64 reference, LAMBFp16, jit.GraphOptimizationConfig
and jit.partial_trace, and tianyuan.distributions."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

from .helpers import eager_equals_traced, grad_check, t64


# ---- multi_head_attention ----
def _np_mha(q, k, v, wb, e, h, causal=False, attn_mask=None, kpm=None, avg=False):
    eq, ek, ev = q.shape[-1], k.shape[-1], v.shape[-1]
    off = 0
    ws = []
    for fi, fo in ((eq, e), (ek, e), (ev, e), (e, e)):
        ws.append(wb[off:off + fi * fo].reshape(fi, fo))
        off += fi * fo
    bs = [wb[off + i * e:off + (i + 1) * e] for i in range(4)]
    qp, kp, vp = q @ ws[0] + bs[0], k @ ws[1] + bs[1], v @ ws[2] + bs[2]
    n, lq, s, d = q.shape[0], q.shape[1], k.shape[1], e // h

    def heads(x, seq):
        return x.reshape(n, seq, h, d).transpose(0, 2, 1, 3)
    sc = heads(qp, lq) @ heads(kp, s).transpose(0, 1, 3, 2) / np.sqrt(d)
    if causal:
        sc = sc + np.triu(np.full((lq, s), -np.inf), 1)
    if attn_mask is not None:
        sc = sc + attn_mask
    if kpm is not None:
        sc = sc + np.where(kpm, -np.inf, 0.0)[:, None, None, :]
    p = np.exp(sc - sc.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ctx = (p @ heads(vp, s)).transpose(0, 2, 1, 3).reshape(n, lq, e)
    w = p.mean(1) if avg else p.reshape(n * h, lq, s)
    return ctx @ ws[3] + bs[3], w


def _mha_inputs(rng, n=2, lq=3, s=4, e=8, eq=8, ek=6, ev=5):
    q, k, v = (rng.standard_normal((n, lq, eq)), rng.standard_normal((n, s, ek)),
               rng.standard_normal((n, s, ev)))
    wb = rng.standard_normal(eq * e + ek * e + ev * e + e * e + 4 * e) * 0.3
    return q, k, v, wb


def _call(q, k, v, wb, e=8, h=2, **kw):
    return F.nn.multi_head_attention(q, k, v, e, h, 0.0, 0.0, wb, qbias=True, kbias=True,
                                     vbias=True, obias=True, **kw)


@pytest.mark.parametrize("causal,masks,avg", [(False, False, False), (True, False, True),
                                              (False, True, False)])
def test_multi_head_attention_matches_reference(causal, masks, avg, rng):
    q, k, v, wb = _mha_inputs(rng)
    am = rng.standard_normal((3, 4)) if masks else None
    kpm = np.array([[False, False, True, False], [False, False, False, False]]) if masks else None
    out, w = _call(t64(q), t64(k), t64(v), t64(wb), is_causal=causal,
                   attn_mask=None if am is None else t64(am),
                   key_padding_mask=None if kpm is None else ty.tensor(kpm),
                   need_weights=True, average_attn_weights=avg)
    ro, rw = _np_mha(q, k, v, wb, 8, 2, causal, am, kpm, avg)
    np.testing.assert_allclose(out.numpy(), ro, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), rw, rtol=1e-10, atol=1e-12)
    assert _call(t64(q), t64(k), t64(v), t64(wb))[1] is None


def test_multi_head_attention_unbatched_grad_trace(rng):
    q, k, v, wb = _mha_inputs(rng, n=1, lq=2, s=3, e=4, eq=4, ek=4, ev=4)
    out, _ = _call(t64(q[0]), t64(k[0]), t64(v[0]), t64(wb), e=4)
    np.testing.assert_allclose(out.numpy(), _np_mha(q, k, v, wb, 4, 2)[0][0], rtol=1e-10)
    grad_check(lambda a, b, c, d: _call(a, b, c, d, e=4)[0], [q, k, v, wb], rtol=1e-4)
    eager_equals_traced(lambda a, b, c, d: _call(a, b, c, d, e=4)[0],
                        [x.astype("float32") for x in (q, k, v, wb)])


def test_multi_head_attention_errors(rng):
    q, k, v, wb = _mha_inputs(rng)
    with pytest.raises(ValueError, match="io_weight_bias has 10 elements"):
        _call(t64(q), t64(k), t64(v), t64(wb[:10]))
    with pytest.raises(ValueError, match="add_zero_attn is not supported"):
        _call(t64(q), t64(k), t64(v), t64(wb), add_zero_attn=True)
    with pytest.raises(ValueError, match="key and value have 4 and 3 positions"):
        _call(t64(q), t64(k), t64(v[:, :3]), t64(wb))
    with pytest.raises(ValueError, match="not divisible by num_heads=3"):
        _call(t64(q), t64(k), t64(v), t64(wb), h=3)


# ---- LAMBFp16 ----
def test_lamb_fp16_keeps_a_float32_master(rng):
    from tianyuan.optimizer import LAMB, LAMBFp16
    w0 = rng.standard_normal(6).astype(np.float32)
    g = rng.standard_normal(6).astype(np.float32)
    p16 = ty.Parameter(w0.astype(np.float16))
    p32 = ty.Parameter(w0.astype(np.float16).astype(np.float32))
    o16, o32 = LAMBFp16([p16], lr=1e-4), LAMB([p32], lr=1e-4)
    for _ in range(5):
        p16.grad = ty.tensor(g.astype(np.float16), dtype="float16")
        p32.grad = ty.tensor(g.astype(np.float16).astype(np.float32))
        o16.step()
        o32.step()
    assert p16.dtype == np.float16
    master = o16._state[p16]["param_fp32"].numpy()
    np.testing.assert_allclose(master, p32.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(p16.numpy(), master.astype(np.float16))
    assert "param_fp32" in o16.state_dict()["state"][0]


# ---- jit ----
def test_graph_optimization_config():
    c = ty.jit.GraphOptimizationConfig()
    assert repr(c) == ("GraphOptimizationConfig { jit_fuse_dimshuffle = UNSET, "
                       "jit_fuse_reduce = UNSET }")
    c.jit_fuse_dimshuffle = False
    assert "jit_fuse_dimshuffle = OFF" in repr(c)
    with pytest.raises(ValueError, match="must be None, True or False"):
        c.jit_fuse_reduce = "yes"
    with pytest.raises(AttributeError, match="no option 'jit_fuse_all'"):
        c.jit_fuse_all = True
    f = ty.jit.trace(lambda x: x * 2, graph_opt_config=c)
    assert f(ty.tensor([1.0])).numpy().tolist() == [2.0]


def test_partial_trace_gradients_match_eager(rng):
    def f(x, w):
        return F.relu(F.matmul(x, w)), (x * x).sum()
    g = ty.jit.partial_trace(f)
    w = ty.Parameter(rng.standard_normal((3, 2)).astype(np.float32))
    x = ty.Parameter(rng.standard_normal((4, 3)).astype(np.float32))

    def grads(fn):
        gm = ty.autodiff.GradManager().attach([w, x])
        with gm:
            a, b = fn(x, w)
            gm.backward([a.sum() * 2, b * 3])
        out = (a.numpy(), w.grad.numpy(), x.grad.numpy())
        w.grad = x.grad = None
        return out
    want = grads(f)
    for _ in range(3):  # record, then replays of both graphs
        for got, ref in zip(grads(g), want):
            np.testing.assert_array_equal(got, ref)
    assert not _C.is_recording()
    gm = ty.autodiff.GradManager().attach([w])  # eager autodiff is unaffected afterwards
    with gm:
        gm.backward((w * w).sum())
    np.testing.assert_array_equal(w.grad.numpy(), 2 * w.numpy())
    with pytest.raises(ValueError, match="backend 'xla' is not available"):
        ty.jit.partial_trace(f, backend="xla")
    with pytest.raises(TypeError, match="positional arguments only"):
        g(x, w=w)


# ---- distributions ----
def test_exponential_distribution(rng):
    from tianyuan.distributions import Distribution, Exponential
    rate = ty.tensor([0.5, 2.0])
    m = Exponential(rate)
    assert isinstance(m, Distribution) and m.batch_shape == (2,) and m.event_shape == ()
    np.testing.assert_allclose(m.mean.numpy(), [2.0, 0.5])
    np.testing.assert_allclose(m.variance.numpy(), [4.0, 0.25])
    np.testing.assert_allclose(m.stddev.numpy(), [2.0, 0.5])
    x = np.array([0.3, 1.7])
    np.testing.assert_allclose(m.log_prob(ty.tensor(x)).numpy(), np.log([0.5, 2]) - [0.15, 3.4],
                               rtol=1e-6)
    c = m.cdf(ty.tensor(x)).numpy()
    np.testing.assert_allclose(c, 1 - np.exp(-np.array([0.5, 2.0]) * x), rtol=1e-6)
    np.testing.assert_allclose(m.icdf(ty.tensor(c)).numpy(), x, rtol=1e-5)
    ty.random.seed(4)
    s = m.sample((20000,)).numpy()
    assert s.shape == (20000, 2) and (s > 0).all()
    np.testing.assert_allclose(s.mean(axis=0), [2.0, 0.5], rtol=0.05)
    r = ty.Parameter([2.0])  # rsample is differentiable in the rate: d(E / r)/dr = -E / r^2
    gm = ty.autodiff.GradManager().attach([r])
    with gm:
        y = Exponential(r).rsample((5,))
        gm.backward(y.sum())
    np.testing.assert_allclose(r.grad.numpy(), [-(y.numpy().sum()) / 2.0], rtol=1e-5)
    assert Exponential(1.5).batch_shape == ()
    assert Exponential(rate).expand((3, 2)).sample().shape == (3, 2)
    with pytest.raises(ValueError, match="rate must be > 0"):
        Exponential(0.0)
    with pytest.raises(NotImplementedError, match="Distribution does not define mean"):
        Distribution().mean  # noqa: B018  (the abstract base)
