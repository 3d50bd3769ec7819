"""prelu, pixel_shuffle, local_response_norm and general_norm (MegEngine's ``functional.nn``),
written with table ops, so they trace, deploy and differentiate like those ops."""
from .. import _C
from .._args import to_int, to_ints
from ..tensor import Tensor
from .elemwise import maximum, minimum, sqrt
from .math import mean

_ops = _C.ops

__all__ = ["prelu", "pixel_shuffle", "local_response_norm", "general_norm"]


def _tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def prelu(inp, weight):
    """max(x, 0) + weight * min(x, 0), weight broadcast against inp."""
    inp = _tensor(inp)
    return maximum(inp, 0.0) + weight * minimum(inp, 0.0)


def pixel_shuffle(inp, upscale_factor):
    """(..., C*r*r, H, W) -> (..., C, H*r, W*r): channel c*r*r + i*r + j goes to pixel
    (h*r + i, w*r + j) of output channel c."""
    inp = _tensor(inp)
    r = to_int(upscale_factor, "upscale_factor", "pixel_shuffle")
    if r <= 0:
        raise ValueError(f"pixel_shuffle: upscale_factor must be positive, got {r}")
    shape = tuple(inp.shape)
    if len(shape) < 3 or shape[-3] % (r * r):
        raise ValueError(f"pixel_shuffle: input shape {shape} needs >= 3 dims and a channel "
                         f"count (dim -3) divisible by upscale_factor**2 = {r * r}")
    lead, (c, h, w) = shape[:-3], shape[-3:]
    n = 1
    for s in lead:
        n *= s
    oc = c // (r * r)
    y = inp.reshape((n, oc, r, r, h, w)).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(lead + (oc, h * r, w * r))


def local_response_norm(inp, kernel_size=5, k=2.0, alpha=1e-4, beta=0.75):
    """Local response normalisation across channels (axis 1), MegEngine's LRN:
    y = x / (k + alpha * sum(x[c'] ** 2 for c' in c - n//2 .. c + n//2)) ** beta, with
    n = kernel_size (odd) and channels outside [0, C) counting as zero."""
    inp = _tensor(inp)
    n = to_int(kernel_size, "kernel_size", "local_response_norm")
    if n <= 0 or n % 2 == 0:
        raise ValueError(f"local_response_norm: kernel_size must be odd and positive, got {n}")
    if inp.ndim < 2:
        raise ValueError(f"local_response_norm: expects an (N, C, ...) input, got shape "
                         f"{tuple(inp.shape)}")
    if inp.dtype.kind != "f":
        raise TypeError(f"local_response_norm: expects a float input, got {inp.dtype}")
    half, c = n // 2, inp.shape[1]
    sq = inp * inp
    pads = [0, 0, half, half] + [0, 0] * (inp.ndim - 2)
    padded = _ops["pad"](sq, pads=pads, mode=0, value=0.0)
    acc = padded[:, 0:c]
    for i in range(1, n):
        acc = acc + padded[:, i:i + c]
    return inp / (acc * float(alpha) + float(k)) ** float(beta)


def _normalized_axes(axes, ndim):
    if isinstance(axes, (list, tuple)):
        axes = to_ints(axes, "normalized_axis", "general_norm")
    else:
        axes = [to_int(axes, "normalized_axis", "general_norm")]
    if not axes:
        raise ValueError("general_norm: normalized_axis must name at least one axis")
    for a in axes:
        if not -ndim <= a < ndim:
            raise IndexError(f"general_norm: axis {a} is out of range for a {ndim}-d input")
    axes = [a % ndim for a in axes]
    if len(set(axes)) != len(axes):
        raise ValueError(f"general_norm: normalized_axis has duplicates: {axes}")
    if axes != sorted(axes):
        raise ValueError(f"general_norm: normalized_axis must be in increasing order, "
                         f"got {axes}")
    return axes


def _param_shape(inp, axes):
    return tuple(inp.shape[a] for a in axes), tuple(
        inp.shape[a] if a in axes else 1 for a in range(inp.ndim))


def _affine_param(t, name, want, bshape):
    t = _tensor(t)
    if t.size != _prod(want):
        raise ValueError(f"general_norm: {name} must have the normalized dims' shape {want}, "
                         f"got {tuple(t.shape)}")
    return t.reshape(bshape)


def _prod(s):
    p = 1
    for v in s:
        p *= v
    return p


def general_norm(inp, normalized_axis, affine=True, weight=None, bias=None, eps=1e-5):
    """(x - mean) / sqrt(var + eps) over ``normalized_axis`` (increasing axes; biased
    variance), then ``* weight + bias`` when affine; weight and bias have the normalized
    dims' shape."""
    inp = _tensor(inp)
    if inp.dtype.kind != "f":
        raise TypeError(f"general_norm: expects a float input, got {inp.dtype}")
    axes = _normalized_axes(normalized_axis, inp.ndim)
    m = mean(inp, axes, keepdims=True)
    d = inp - m
    v = mean(d * d, axes, keepdims=True)
    y = d / sqrt(v + float(eps))
    if affine:
        if weight is None or bias is None:
            raise ValueError("general_norm: weight and bias must be given when affine is True")
        want, bshape = _param_shape(inp, axes)
        y = y * _affine_param(weight, "weight", want, bshape) + _affine_param(
            bias, "bias", want, bshape)
    return y
