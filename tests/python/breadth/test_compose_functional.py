"""MegEngine functions built from table ops: diag, meshgrid, cross, prelu, pixel_shuffle,
local_response_norm, general_norm, einsum. NumPy float64 references, finite-difference
gradients, eager == traced, and the errors of bad inputs."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F

from .helpers import eager_equals_traced, grad_check, t64


# ---- diag ----
@pytest.mark.parametrize("k", [0, 1, 2, -1, -3])
def test_diag_builds_and_extracts(k, rng):
    v = rng.standard_normal(4)
    np.testing.assert_array_equal(F.diag(t64(v), k).numpy(), np.diag(v, k))
    for shape in [(3, 5), (5, 3), (4, 4), (0, 3)]:
        m = rng.standard_normal(shape)
        np.testing.assert_array_equal(F.diag(t64(m), k).numpy(), np.diag(m, k))


def test_diag_non_contiguous_int_and_grad(rng):
    m = rng.standard_normal((5, 6))
    np.testing.assert_array_equal(F.diag(t64(m).T, 1).numpy(), np.diag(m.T, 1))
    np.testing.assert_array_equal(F.diag(ty.tensor([1, 2, 3], dtype="int32")).numpy(),
                                  np.diag([1, 2, 3]))
    grad_check(lambda x: F.diag(x, -1), [rng.standard_normal((4, 3))])
    grad_check(lambda x: F.diag(x, 2), [rng.standard_normal(3)])
    eager_equals_traced(lambda x: F.diag(x, 1), [rng.standard_normal((4, 4)).astype("float32")])


def test_diag_errors():
    with pytest.raises(ValueError, match="diag: expects a 1-d or 2-d"):
        F.diag(ty.tensor(np.zeros((2, 2, 2))))
    with pytest.raises(TypeError, match="diag: k must be an integer"):
        F.diag(ty.tensor([1.0]), 0.5)


# ---- meshgrid ----
@pytest.mark.parametrize("indexing", ["xy", "ij"])
def test_meshgrid_matches_numpy(indexing, rng):
    vs = [rng.standard_normal(n) for n in (3, 2, 4)]
    for k in (1, 2, 3):
        got = F.meshgrid(*[t64(v) for v in vs[:k]], indexing=indexing)
        want = np.meshgrid(*vs[:k], indexing=indexing)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.numpy(), w)
    grad_check(lambda a, b: F.meshgrid(a, b, indexing=indexing)[0] * 2 +
               F.meshgrid(a, b, indexing=indexing)[1], [vs[0], vs[1]])
    eager_equals_traced(lambda a, b: F.meshgrid(a, b), [vs[0].astype("float32"),
                                                        vs[2].astype("float32")])


def test_meshgrid_errors():
    with pytest.raises(ValueError, match="indexing must be"):
        F.meshgrid(ty.tensor([1.0]), indexing="yx")
    with pytest.raises(ValueError, match="input 1 must be 1-d"):
        F.meshgrid(ty.tensor([1.0]), ty.tensor([[1.0]]))


# ---- cross ----
def test_cross_matches_numpy(rng):
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((4, 1, 3))
    np.testing.assert_allclose(F.cross(t64(a), t64(b)).numpy(), np.cross(a, b), rtol=1e-12)
    at, bt = rng.standard_normal((3, 5)), rng.standard_normal((5, 3))
    np.testing.assert_allclose(F.cross(t64(at), t64(bt), axisa=0, axisc=0).numpy(),
                               np.cross(at, bt, axisa=0, axisc=0), rtol=1e-12)
    np.testing.assert_allclose(F.cross(t64(at), t64(bt.T), axis=0).numpy(),
                               np.cross(at, bt.T, axis=0), rtol=1e-12)
    assert F.cross(t64(np.zeros((0, 3))), t64(np.zeros((0, 3)))).shape == (0, 3)
    grad_check(F.cross, [a, b])
    eager_equals_traced(F.cross, [a.astype("float32"), b.astype("float32")])


def test_cross_errors():
    with pytest.raises(ValueError, match="length 3"):
        F.cross(ty.tensor([1.0, 2.0]), ty.tensor([1.0, 2.0]))
    with pytest.raises(IndexError, match="axisa 2 is out of range"):
        F.cross(ty.tensor([1.0, 2.0, 3.0]), ty.tensor([1.0, 2.0, 3.0]), axisa=2)


# ---- prelu / pixel_shuffle ----
def test_prelu(rng):
    x, w = rng.standard_normal((2, 3, 4)), rng.standard_normal((1, 3, 1))
    want = np.maximum(x, 0) + w * np.minimum(x, 0)
    np.testing.assert_allclose(F.prelu(t64(x), t64(w)).numpy(), want, rtol=1e-12)
    assert F.nn.prelu is F.prelu
    x = x + np.sign(x) * 0.1  # keep finite differences away from the kink at 0
    grad_check(F.prelu, [x, w])
    eager_equals_traced(F.prelu, [x.astype("float32"), w.astype("float32")])


@pytest.mark.parametrize("shape,r", [((1, 8, 3, 2), 2), ((2, 3, 9, 2, 3), 3), ((4, 1, 1), 1),
                                     ((0, 4, 2, 2), 2)])
def test_pixel_shuffle(shape, r, rng):
    x = rng.standard_normal(shape)
    lead, (c, h, w) = shape[:-3], shape[-3:]
    want = x.reshape(lead + (c // (r * r), r, r, h, w))
    nl = len(lead)
    want = want.transpose(tuple(range(nl)) + (nl, nl + 3, nl + 1, nl + 4, nl + 2)).reshape(
        lead + (c // (r * r), h * r, w * r))
    np.testing.assert_array_equal(F.pixel_shuffle(t64(x), r).numpy(), want)
    np.testing.assert_array_equal(ty.module.PixelShuffle(r)(t64(x)).numpy(), want)


def test_pixel_shuffle_grad_trace_errors(rng):
    x = rng.standard_normal((1, 4, 2, 3))
    grad_check(lambda t: F.pixel_shuffle(t, 2), [x])
    eager_equals_traced(lambda t: F.pixel_shuffle(t, 2), [x.astype("float32")])
    with pytest.raises(ValueError, match="divisible by upscale_factor"):
        F.pixel_shuffle(t64(np.zeros((1, 3, 2, 2))), 2)
    with pytest.raises(ValueError, match="upscale_factor must be positive"):
        F.pixel_shuffle(t64(np.zeros((1, 4, 2, 2))), 0)


# ---- local_response_norm ----
def _lrn_ref(x, n, k, alpha, beta):
    half, c = n // 2, x.shape[1]
    sq = x * x
    s = np.zeros_like(x)
    for ch in range(c):
        s[:, ch] = sq[:, max(0, ch - half):min(c, ch + half + 1)].sum(axis=1)
    return x / (k + alpha * s) ** beta


def test_local_response_norm_megengine_example():
    x = ty.tensor(np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5))
    want = [[0.0, 0.999925, 1.9994003, 2.9979765, 3.9952066],
            [4.9906454, 5.983851, 6.974385, 7.961814, 8.945709]]
    got = F.local_response_norm(x, kernel_size=3, k=1.0, alpha=1e-4, beta=0.75).numpy()
    np.testing.assert_allclose(got[0, 0, :2], want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,n", [((2, 7, 3, 2), 5), ((1, 2, 4, 4), 3), ((3, 4), 1),
                                     ((2, 3, 0, 2), 3)])
def test_local_response_norm_matches_reference(shape, n, rng):
    x = rng.standard_normal(shape)
    got = F.local_response_norm(t64(x), n, 2.0, 1e-2, 0.75).numpy()
    np.testing.assert_allclose(got, _lrn_ref(x, n, 2.0, 1e-2, 0.75), rtol=1e-12)


def test_local_response_norm_grad_trace_errors(rng):
    x = rng.standard_normal((1, 5, 2, 2))
    grad_check(lambda t: F.local_response_norm(t, 3, 1.0, 0.1, 0.75), [x])
    eager_equals_traced(lambda t: F.local_response_norm(t), [x.astype("float32")])
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        F.local_response_norm(t64(x), 4)
    with pytest.raises(TypeError, match="expects a float input"):
        F.local_response_norm(ty.tensor(np.zeros((1, 2, 2, 2), "int32")))


# ---- general_norm ----
@pytest.mark.parametrize("shape,axes", [((2, 3, 4), (1, 2)), ((2, 3, 4, 5), (0, 2)),
                                        ((3, 4), -1), ((2, 3, 4), [0, 1, 2])])
def test_general_norm_matches_reference(shape, axes, rng):
    x = rng.standard_normal(shape)
    ax = tuple(a % len(shape) for a in (axes if isinstance(axes, (list, tuple)) else [axes]))
    pshape = tuple(shape[a] for a in ax)
    w, b = rng.standard_normal(pshape), rng.standard_normal(pshape)
    m = x.mean(axis=ax, keepdims=True)
    v = ((x - m) ** 2).mean(axis=ax, keepdims=True)
    bshape = tuple(shape[a] if a in ax else 1 for a in range(len(shape)))
    want = (x - m) / np.sqrt(v + 1e-5) * w.reshape(bshape) + b.reshape(bshape)
    got = F.general_norm(t64(x), axes, True, t64(w), t64(b)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    plain = F.general_norm(t64(x), axes, affine=False).numpy()
    np.testing.assert_allclose(plain, (x - m) / np.sqrt(v + 1e-5), rtol=1e-10, atol=1e-12)


def test_general_norm_grad_trace_errors(rng):
    x, w, b = rng.standard_normal((2, 3, 2)), rng.standard_normal(3), rng.standard_normal(3)
    grad_check(lambda t, ww, bb: F.general_norm(t, 1, True, ww, bb), [x, w, b], rtol=1e-4)
    eager_equals_traced(lambda t: F.general_norm(t, (0, 2), affine=False),
                        [x.astype("float32")])
    with pytest.raises(ValueError, match="increasing order"):
        F.general_norm(t64(x), (2, 0), affine=False)
    with pytest.raises(ValueError, match="duplicates"):
        F.general_norm(t64(x), (1, -2), affine=False)
    with pytest.raises(IndexError, match="out of range"):
        F.general_norm(t64(x), 3, affine=False)
    with pytest.raises(ValueError, match="weight and bias must be given"):
        F.general_norm(t64(x), 1)
    with pytest.raises(ValueError, match="weight must have the normalized dims' shape"):
        F.general_norm(t64(x), 1, True, t64(np.ones(2)), t64(np.ones(3)))


# ---- einsum ----
EINSUM_CASES = [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("ij,jk", [(3, 4), (4, 5)]), ("ii->i", [(4, 4)]),
    ("ii", [(3, 3)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]), ("i,i->", [(5,), (5,)]),
    ("i,j->ij", [(3,), (4,)]), ("ij->ji", [(3, 4)]), ("ijk,jil->kl", [(2, 3, 4), (3, 2, 5)]),
    ("ab,bc,cd->ad", [(2, 3), (3, 4), (4, 5)]), ("ij->", [(3, 4)]),
    ("ij,ij->ij", [(3, 1), (1, 4)]), ("iij->ji", [(3, 3, 2)]), ("ij,kl", [(2, 0), (1, 2)]),
    ("", [()]), (",->", [(), ()]),
]


@pytest.mark.parametrize("eq,shapes", EINSUM_CASES)
def test_einsum_matches_numpy(eq, shapes, rng):
    xs = [rng.standard_normal(s) for s in shapes]
    got = F.einsum(eq, *[t64(x) for x in xs]).numpy()
    want = np.einsum(eq, *xs)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_einsum_non_contiguous_grad_trace(rng):
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 4, 5))
    got = F.einsum("ji,bjk->bik", t64(a.T).T, t64(b)).numpy()
    np.testing.assert_allclose(got, np.einsum("ji,bjk->bik", a, b), rtol=1e-12)
    grad_check(lambda x, y: F.einsum("ij,bjk->bik", x, y), [a.T, b])
    grad_check(lambda x: F.einsum("ii->i", x), [rng.standard_normal((3, 3))])
    eager_equals_traced(lambda x, y: F.einsum("ij,bjk->bki", x, y),
                        [a.T.astype("float32"), b.astype("float32")])


def test_einsum_errors():
    x = ty.tensor(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="2 subscripts for 1 operands"):
        F.einsum("ij,jk", x)
    with pytest.raises(ValueError, match="operand 0 has 2 dims"):
        F.einsum("ijk", x)
    with pytest.raises(ValueError, match="subscript 'j' has sizes 3 and 2"):
        F.einsum("ij,jk", x, x)
    with pytest.raises(ValueError, match="appears in no input"):
        F.einsum("ij->k", x)
    with pytest.raises(ValueError, match="invalid subscript"):
        F.einsum("i1", x)
    with pytest.raises(TypeError, match="equation must be a str"):
        F.einsum(3, x)


def test_functional_utils_module():
    assert F.utils.copy is F.copy
    logits = ty.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert float(F.utils.accuracy(logits, ty.tensor([1, 1], dtype="int32")).numpy()) == 0.5


def test_megengine_module_paths():
    """The new names are where MegEngine code imports them from too."""
    for name in ("conv3d", "conv_transpose3d", "deformable_conv2d", "local_conv2d",
                 "region_restricted_conv", "sliding_window", "sliding_window_transpose",
                 "pixel_shuffle", "prelu", "local_response_norm", "general_norm",
                 "multi_head_attention"):
        assert getattr(F.nn, name) is getattr(F, name), name
        assert name in F.nn.__all__, name
    for name in ("matinv", "svd", "cross"):
        assert getattr(F.math, name) is getattr(F, name), name
    for name in ("diag", "meshgrid"):
        assert getattr(F.tensor, name) is getattr(F, name), name
