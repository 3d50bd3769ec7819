"""multi_head_attention (MegEngine's ``functional.nn.multi_head_attention``), written with
matmul, softmax and dropout, so it traces, deploys and differentiates like those ops."""
from ..tensor import Tensor
from .linalg import matmul
from .nn import softmax

__all__ = ["multi_head_attention"]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _take(flat, offset, shape):
    n = 1
    for s in shape:
        n *= s
    return flat[offset:offset + n].reshape(shape), offset + n


def _unpack(io, sizes, flags):
    """Weights (in, proj) of q, k, v, o, then biases, from the flat io_weight_bias."""
    flat = io.reshape((-1,))
    need = sum(i * p for i, p in sizes if p > 0) + sum(
        p for (_, p), on in zip(sizes, flags) if on and p > 0)
    if need != flat.shape[0]:
        raise ValueError(f"multi_head_attention: io_weight_bias has {flat.shape[0]} elements, "
                         f"the projection sizes need {need}")
    off, ws, bs = 0, [], []
    for fan_in, proj in sizes:
        w = None
        if proj > 0:
            w, off = _take(flat, off, (fan_in, proj))
        ws.append(w)
    for (fan_in, proj), on in zip(sizes, flags):
        b = None
        if on and proj > 0:
            b, off = _take(flat, off, (proj,))
        bs.append(b)
    return ws, bs


def _project(x, w, b):
    if w is None:
        return x
    y = matmul(x, w)
    return y if b is None else y + b


def _bool_to_additive(mask, dtype):
    """A boolean mask (True = not allowed) as 0 / -inf; a float mask as it is."""
    if mask is None or mask.dtype.kind == "f":
        return mask
    from .tensor import where
    zero = Tensor(0.0, dtype=dtype)
    return where(mask, Tensor(float("-inf"), dtype=dtype), zero)


def _heads(x, n, seq, h):
    d = x.shape[-1] // h
    return x.reshape((n, seq, h, d)).transpose(0, 2, 1, 3).reshape((n * h, seq, d))


def _check(query, key, value, num_heads, key_padding_mask, attn_mask):
    if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
        raise ValueError(f"multi_head_attention: query, key and value must all be 2-d "
                         f"(unbatched) or 3-d (batched), got {query.ndim}-d, {key.ndim}-d and "
                         f"{value.ndim}-d")
    if query.ndim == 3 and not (query.shape[0] == key.shape[0] == value.shape[0]):
        raise ValueError(f"multi_head_attention: batch sizes differ: query {query.shape[0]}, "
                         f"key {key.shape[0]}, value {value.shape[0]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"multi_head_attention: key and value have {key.shape[-2]} and "
                         f"{value.shape[-2]} positions")
    if num_heads <= 0:
        raise ValueError(f"multi_head_attention: num_heads must be positive, got {num_heads}")


def multi_head_attention(query, key, value, embed_dim, num_heads, attn_drop, out_drop,
                         io_weight_bias, qproj_size=None, kproj_size=None, vproj_size=None,
                         oproj_size=None, qbias=False, kbias=False, vbias=False, obias=False,
                         bias_k=None, bias_v=None, add_zero_attn=False, key_padding_mask=None,
                         attn_mask=None, need_weights=False, average_attn_weights=False,
                         is_causal=False, maybe_cudnn_style_mask=False, reslink=False,
                         training=True):
    """Multi-head scaled dot-product attention with MegEngine's packed parameters.

    query (N, L, Eq), key (N, S, Ek), value (N, S, Ev) (or unbatched without N).
    io_weight_bias holds, flat and in this order, the weights of the query, key, value and
    output projections — (Eq, qproj), (Ek, kproj), (Ev, vproj), (vproj or Ev, oproj), applied as
    ``x @ W + b`` — then the biases that qbias/kbias/vbias/obias switch on; a projection size
    of 0 means no projection (sizes default to embed_dim). Each projected sequence is split
    into num_heads heads; scores are scaled by head_dim ** -0.5 (head_dim = embed_dim //
    num_heads, or embed_dim without a query projection). attn_mask ((L, S) or (N*H, L, S)) and
    key_padding_mask ((N, S)) are additive float masks or boolean (True = masked out);
    is_causal without attn_mask masks future positions. Dropout applies when training.

    Returns (output (N, L, oproj), weights or None): weights (N*H, L, S), or averaged over the
    heads (N, L, S) with average_attn_weights. bias_k, bias_v, add_zero_attn, reslink and the
    cuDNN-style masks are not supported (as in MegEngine's CPU path): passing them raises."""
    from .creation import dropout
    query, key, value = _tensor(query), _tensor(key), _tensor(value)
    num_heads = int(num_heads)
    _check(query, key, value, num_heads, key_padding_mask, attn_mask)
    for name, bad in (("bias_k", bias_k is not None), ("bias_v", bias_v is not None),
                      ("add_zero_attn", add_zero_attn), ("reslink", reslink),
                      ("maybe_cudnn_style_mask", maybe_cudnn_style_mask)):
        if bad:
            raise ValueError(f"multi_head_attention: {name} is not supported")
    batched = query.ndim == 3
    if not batched:
        query, key, value = (t.reshape((1,) + tuple(t.shape)) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = _tensor(key_padding_mask).reshape((1, -1))
    n, seq_q, seq_k = query.shape[0], query.shape[1], key.shape[1]
    q_size = embed_dim if qproj_size is None else qproj_size
    k_size = embed_dim if kproj_size is None else kproj_size
    v_size = embed_dim if vproj_size is None else vproj_size
    o_size = embed_dim if oproj_size is None else oproj_size
    v_dim = v_size if v_size > 0 else value.shape[-1]
    sizes = [(query.shape[-1], q_size), (key.shape[-1], k_size), (value.shape[-1], v_size),
             (v_dim, o_size)]
    (wq, wk, wv, wo), (bq, bk, bv, bo) = _unpack(_tensor(io_weight_bias), sizes,
                                                (qbias, kbias, vbias, obias))
    q, k, v = _project(query, wq, bq), _project(key, wk, bk), _project(value, wv, bv)
    for name, t in (("query", q), ("key", k), ("value", v)):
        if t.shape[-1] % num_heads:
            raise ValueError(f"multi_head_attention: projected {name} size {t.shape[-1]} is "
                             f"not divisible by num_heads={num_heads}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"multi_head_attention: projected query and key sizes differ: "
                         f"{q.shape[-1]} and {k.shape[-1]}")
    head_dim = embed_dim if q_size == 0 else embed_dim // num_heads
    q, k, v = (_heads(t, n, s, num_heads) for t, s in ((q, seq_q), (k, seq_k), (v, seq_k)))
    scores = matmul(q, k, transpose_b=True) * float(head_dim ** -0.5)  # (N*H, L, S)
    mask = _bool_to_additive(_tensor(attn_mask) if attn_mask is not None else None,
                             scores.dtype)
    if mask is None and is_causal:
        import numpy as np
        causal = np.triu(np.full((seq_q, seq_k), -np.inf, dtype=np.float32), 1)
        mask = Tensor(causal, dtype=scores.dtype)
    if mask is not None:
        scores = scores + mask
    if key_padding_mask is not None:
        kpm = _bool_to_additive(_tensor(key_padding_mask), scores.dtype)
        scores = (scores.reshape((n, num_heads, seq_q, seq_k)) +
                  kpm.reshape((n, 1, 1, seq_k))).reshape((n * num_heads, seq_q, seq_k))
    probs = softmax(scores, axis=-1)
    weights = probs
    if training and attn_drop > 0:
        probs = dropout(probs, attn_drop, training=True)
    ctx = matmul(probs, v)  # (N*H, L, Dv)
    dv = ctx.shape[-1]
    ctx = ctx.reshape((n, num_heads, seq_q, dv)).transpose(0, 2, 1, 3).reshape(
        (n, seq_q, num_heads * dv))
    out = _project(ctx, wo, bo)
    if training and out_drop > 0:
        out = dropout(out, out_drop, training=True)
    if not batched:
        out = out.reshape(tuple(out.shape[1:]))
    if not need_weights:
        return out, None
    if average_attn_weights:
        weights = weights.reshape((n, num_heads, seq_q, seq_k)).mean(axis=1)
        return (out, weights if batched else weights.reshape((seq_q, seq_k)))
    return out, weights
