"""Global-generator functions and the RNG class (see the package docstring)."""
import math

from .. import _C
from .._args import to_int, to_ints
from .. import dtype as _dt
from . import dist as _dist

_ops = _C.ops
_F32 = _dt.code_of("float32")
_U64 = 1 << 64


def _i64(x):
    """x modulo 2**64 as a signed 64-bit int (the C params are int64)."""
    x = to_int(x, "seed", "random", lo=-math.inf, hi=math.inf) % _U64
    return x - _U64 if x >= 1 << 63 else x


def _size(size):
    """MegEngine's rule: size None draws one value of shape (1,)."""
    if size is None:
        return [1]
    return to_ints(size, "size", "random")


def _num(x):
    return float(x.item() if isinstance(x, _C.TensorBase) else x)


def _take_rows(inp, perm):
    """inp reordered along its first axis by the int tensor perm."""
    if "index" in _ops:
        return inp[perm]
    from ..tensor import Tensor  # fallback while the index op is not built
    return Tensor(inp.numpy()[perm.numpy()], dtype=inp.dtype)


def _check_shuffle(inp, name):
    if inp.ndim == 0:
        raise ValueError(f"{name}: cannot shuffle a 0-d tensor")


def seed(seed):
    """Reseeds the global generator: the draws that follow depend only on seed."""
    _C.seed(_i64(seed) % _U64)


def uniform(low=0, high=1, size=None):
    """float32 samples from U[low, high) (size None: shape (1,))."""
    return _ops["uniform"](shape=_size(size), a=_num(low), b=_num(high), dtype=_F32)


def normal(mean=0, std=1, size=None):
    """float32 samples from N(mean, std**2) (size None: shape (1,))."""
    return _ops["normal"](shape=_size(size), a=_num(mean), b=_num(std), dtype=_F32)


def permutation(n, *, dtype="int32"):
    """A random permutation of 0..n-1, or a shuffled copy of tensor n along its first axis."""
    if isinstance(n, _C.TensorBase):
        _check_shuffle(n, "permutation")
        return _take_rows(n, _ops["permutation"](n=n.shape[0], dtype=_dt.code_of("int32")))
    return _ops["permutation"](n=to_int(n, "n", "permutation"), dtype=_dt.code_of(dtype))


def gamma(shape, scale=1, size=None):
    """Gamma(shape k, scale theta) draws; output shape size + broadcast(shape, scale).shape
    (float32 unless a parameter is a float64 tensor). Parameters must be > 0."""
    return _dist.draw(_dist.GAMMA, [_dist._param(shape, "shape", "gamma"),
                                    _dist._param(scale, "scale", "gamma")], size)


def beta(alpha, beta, size=None):
    """Beta(alpha, beta) draws; output shape size + broadcast(alpha, beta).shape."""
    return _dist.draw(_dist.BETA, [_dist._param(alpha, "alpha", "beta"),
                                   _dist._param(beta, "beta", "beta")], size)


def poisson(lam, size=None):
    """Poisson(lam) draws as floats; output shape size + lam.shape."""
    return _dist.draw(_dist.POISSON, [_dist._param(lam, "lam", "poisson")], size)


def exponential(rate=1, size=None):
    """Exponential draws with the given rate (mean 1 / rate); output shape size + rate.shape."""
    return _dist.draw(_dist.EXPONENTIAL, [_dist._param(rate, "rate", "exponential")], size)


def multinomial(input, num_samples, replacement=False):
    """num_samples category indices (int32) per row of the weights input (1-d or 2-d,
    non-negative, each row with a positive sum), with or without replacement."""
    return _dist.multinomial_from(input, num_samples, replacement,
                                  lambda shape: exponential(1.0, shape))


def shuffle(inp):
    """Shuffles inp in place along its first axis."""
    _check_shuffle(inp, "shuffle")
    inp._assign(_take_rows(inp, _ops["permutation"](n=inp.shape[0], dtype=_dt.code_of("int32"))))


class RNG:
    """A random generator with its own seed: ``RNG(seed).uniform(...)`` etc.

    Its draws are a pure function of (seed, number of values drawn so far); without a seed, one
    is drawn from the global generator (so it follows ``tianyuan.random.seed``).
    """

    _UNIFORM, _NORMAL, _PERMUTATION = 0, 1, 2

    def __init__(self, seed=None, device=None):
        if seed is None:
            u = _ops["uniform"](shape=[], a=0.0, b=1.0, dtype=_dt.code_of("float64"))
            seed = int(u.item() * float(1 << 53))
        self._seed = _i64(seed)
        self._counter = 0

    def _draw(self, dist, shape, a, b, dtype):
        out = _ops["random_keyed"](shape=shape, a=a, b=b, dtype=dtype, dist=dist,
                                   seed=self._seed, counter=_i64(self._counter))
        self._counter += out.size
        return out

    def uniform(self, low=0, high=1, size=None):
        return self._draw(self._UNIFORM, _size(size), _num(low), _num(high), _F32)

    def normal(self, mean=0, std=1, size=None):
        return self._draw(self._NORMAL, _size(size), _num(mean), _num(std), _F32)

    def permutation(self, n, *, dtype="int32"):
        if isinstance(n, _C.TensorBase):
            _check_shuffle(n, "permutation")
            return _take_rows(n, self.permutation(n.shape[0]))
        return self._draw(self._PERMUTATION, [to_int(n, "n", "permutation")], 0.0, 1.0,
                          _dt.code_of(dtype))

    def _dist(self, dist, params, size):
        out = _dist.draw(dist, params, size, keyed=(self._seed, _i64(self._counter)))
        self._counter += out.size
        return out

    def gamma(self, shape, scale=1, size=None):
        return self._dist(_dist.GAMMA, [_dist._param(shape, "shape", "gamma"),
                                        _dist._param(scale, "scale", "gamma")], size)

    def beta(self, alpha, beta, size=None):
        return self._dist(_dist.BETA, [_dist._param(alpha, "alpha", "beta"),
                                       _dist._param(beta, "beta", "beta")], size)

    def poisson(self, lam, size=None):
        return self._dist(_dist.POISSON, [_dist._param(lam, "lam", "poisson")], size)

    def exponential(self, rate=1, size=None):
        return self._dist(_dist.EXPONENTIAL, [_dist._param(rate, "rate", "exponential")],
                          size)

    def multinomial(self, input, num_samples, replacement=False):
        return _dist.multinomial_from(input, num_samples, replacement,
                                      lambda shape: self.exponential(1.0, shape))

    def shuffle(self, inp):
        _check_shuffle(inp, "shuffle")
        inp._assign(_take_rows(inp, self.permutation(inp.shape[0])))
