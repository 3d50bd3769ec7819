"""random.gamma / beta / poisson / exponential / multinomial: MegEngine's shapes, moments of
the draws against the distributions' (20k draws, tolerances of several standard errors),
reproducibility from the seed and per RNG, eager == traced, and errors."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.random as R

N = 20000


def _moments_close(x, mean, var, k=6.0):
    x = x.astype(np.float64).ravel()
    se_mean = np.sqrt(var / x.size)
    assert abs(x.mean() - mean) < k * se_mean, (x.mean(), mean)
    assert abs(x.var() - var) < 0.06 * var + 1e-12, (x.var(), var)


@pytest.mark.parametrize("k,theta", [(0.3, 1.0), (1.0, 2.0), (4.5, 0.5), (40.0, 1.0)])
def test_gamma_moments(k, theta):
    R.seed(11)
    x = R.gamma(k, theta, size=(N,)).numpy()
    assert x.dtype == np.float32 and (x >= 0).all()
    _moments_close(x, k * theta, k * theta * theta)


@pytest.mark.parametrize("a,b", [(0.5, 0.5), (2.0, 5.0), (30.0, 3.0)])
def test_beta_moments(a, b):
    R.seed(12)
    x = R.beta(a, b, size=N).numpy()
    assert ((x >= 0) & (x <= 1)).all()
    _moments_close(x, a / (a + b), a * b / ((a + b) ** 2 * (a + b + 1)))


@pytest.mark.parametrize("lam", [0.1, 3.0, 9.9, 10.0, 250.0])
def test_poisson_moments_and_support(lam):
    R.seed(13)
    x = R.poisson(lam, size=(N,)).numpy()
    assert (x >= 0).all() and (np.floor(x) == x).all()
    _moments_close(x, lam, lam)
    if lam == 3.0:  # the whole pmf, not only two moments
        freq = np.bincount(x.astype(int), minlength=12)[:8] / N
        from math import exp, factorial
        pmf = np.array([exp(-lam) * lam ** j / factorial(j) for j in range(8)])
        assert np.abs(freq - pmf).max() < 0.012


@pytest.mark.parametrize("rate", [0.5, 4.0])
def test_exponential_moments(rate):
    R.seed(14)
    x = R.exponential(rate, size=N).numpy()
    assert (x > 0).all()
    _moments_close(x, 1 / rate, 1 / rate ** 2)


def test_megengine_shapes_and_tensor_parameters():
    shape = ty.tensor([[1.0], [10.0]])
    scale = ty.tensor([1.0, 5.0])
    assert R.gamma(2, 1, size=(2, 2)).shape == (2, 2)
    assert R.gamma(shape, scale).shape == (2, 2)
    assert R.gamma(shape, scale, size=2).shape == (2, 2, 2)
    assert R.beta(ty.tensor([[0.5], [3.0]]), ty.tensor([0.5, 5.0]), size=(3,)).shape == (3, 2, 2)
    assert R.poisson(ty.tensor([[1.0, 1.0], [10.0, 10.0]]), size=(1, 3)).shape == (1, 3, 2, 2)
    assert R.exponential(ty.tensor([1.0, 2.0]), size=4).shape == (4, 2)
    assert R.gamma(2.0).shape == ()  # scalars and no size: a 0-d draw, as in MegEngine
    assert R.poisson(ty.tensor([2.0, 3.0]), size=(0,)).shape == (0, 2)
    x64 = R.gamma(ty.tensor(np.full(5, 2.0), dtype="float64"))
    assert x64.dtype == np.float64


def test_per_element_parameters_are_used():
    R.seed(1)
    lam = ty.tensor(np.array([0.5, 50.0] * 4000, dtype=np.float32))
    x = R.poisson(lam).numpy()
    assert abs(x[0::2].mean() - 0.5) < 0.05 and abs(x[1::2].mean() - 50.0) < 0.5
    bad = R.gamma(ty.tensor([2.0, -1.0, 0.0, float("nan")])).numpy()
    assert np.isfinite(bad[0]) and np.isnan(bad[1:]).all()  # invalid tensor entries: NaN


def test_seed_and_rng_reproducible_and_independent():
    draws = lambda: [f().numpy() for f in (  # noqa: E731
        lambda: R.gamma(2.0, size=5), lambda: R.beta(2, 3, size=5),
        lambda: R.poisson(4.0, size=5), lambda: R.exponential(size=5),
        lambda: R.multinomial(ty.tensor([1.0, 2.0, 3.0]), 2))]
    R.seed(7)
    a = draws()
    R.seed(7)
    b = draws()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    R.seed(8)
    assert not np.array_equal(draws()[0], a[0])
    r1, r2 = R.RNG(3), R.RNG(3)
    for name in ("gamma", "beta", "poisson", "exponential"):
        args = {"gamma": (2.0,), "beta": (2.0, 2.0), "poisson": (3.0,), "exponential": (1.0,)}
        x = getattr(r1, name)(*args[name], size=6).numpy()
        y = getattr(r2, name)(*args[name], size=6).numpy()
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(r1.gamma(2.0, size=6).numpy(), r1.gamma(2.0, size=6).numpy())
    m1, m2 = R.RNG(9), R.RNG(9)
    np.testing.assert_array_equal(m1.multinomial(ty.tensor([1.0, 1.0, 1.0]), 3).numpy(),
                                  m2.multinomial(ty.tensor([1.0, 1.0, 1.0]), 3).numpy())


def test_traced_draws_equal_eager():
    def f(lam):
        return R.poisson(lam), R.gamma(lam, 2.0), R.exponential(lam)
    lam = np.array([0.5, 3.0, 40.0], np.float32)
    R.seed(5)
    want = [w.numpy() for w in f(ty.tensor(lam))]
    traced = ty.jit.trace(f)
    for _ in range(2):
        R.seed(5)
        got = [g.numpy() for g in traced(ty.tensor(lam))]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_multinomial_frequencies():
    R.seed(21)
    w = ty.tensor([1.0, 0.0, 3.0, 4.0])
    x = R.multinomial(w, 16000, replacement=True).numpy()
    assert x.dtype == np.int32 and x.shape == (16000,)
    freq = np.bincount(x, minlength=4) / x.size
    np.testing.assert_allclose(freq, [0.125, 0.0, 0.375, 0.5], atol=0.015)
    rows = R.multinomial(ty.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 7.0, 2.0, 1.0]]), 3).numpy()
    assert rows.shape == (2, 3)
    for r in rows:
        assert len(set(r.tolist())) == 3  # without replacement: distinct
    assert 0 not in rows[1]  # a zero weight is never drawn
    firsts = np.array([R.multinomial(ty.tensor([1.0, 3.0]), 1).numpy()[0] for _ in range(2000)])
    assert abs(firsts.mean() - 0.75) < 0.04  # first draw without replacement ~ weights


def test_errors():
    with pytest.raises(ValueError, match="gamma: shape must be finite and > 0"):
        R.gamma(-1.0)
    with pytest.raises(ValueError, match="beta: beta must be finite and > 0"):
        R.beta(1.0, 0.0)
    with pytest.raises(ValueError, match="poisson: lam must be finite and > 0"):
        R.poisson(float("inf"))
    with pytest.raises(TypeError, match="exponential: rate must be a number"):
        R.exponential("fast")
    with pytest.raises(ValueError, match="do not broadcast"):
        R.gamma(ty.tensor([1.0, 2.0]), ty.tensor([1.0, 2.0, 3.0]))
    w = ty.tensor([1.0, 2.0])
    with pytest.raises(ValueError, match="cannot draw 3 samples without replacement"):
        R.multinomial(w, 3)
    with pytest.raises(ValueError, match="num_samples must be positive"):
        R.multinomial(w, 0, replacement=True)
    with pytest.raises(ValueError, match="input must be 1-d or 2-d"):
        R.multinomial(ty.tensor(np.ones((1, 1, 2), np.float32)), 1)
    with pytest.raises(TypeError, match="float tensor of weights"):
        R.multinomial(ty.tensor([1, 2], dtype="int32"), 1)
