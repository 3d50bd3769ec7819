"""A convolution followed by a fused elementwise group (inference batch norm, a residual add,
an activation) heads the group in a trace: the group runs on each tile of the convolution's
output as it is finished. Every convolution algorithm, with chains and with other groups,
stays bitwise equal to eager execution at any thread count."""
import io

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference

# (N, C, H, W, OC, kernel, stride, pad, groups): the 1x1 product read in place, Winograd-sized
# and strided 3x3 layers, depthwise ones (16-plane blocks and leftovers), small images that
# share one product across the batch, and a layer with an odd output width
GEOMS = [
    (1, 16, 14, 14, 32, 1, 1, 0, 1),
    (1, 8, 20, 20, 16, 3, 1, 1, 1),
    (1, 8, 15, 15, 12, 3, 2, 1, 1),
    (1, 24, 17, 17, 24, 3, 1, 1, 24),
    (2, 19, 12, 12, 19, 3, 2, 1, 19),
    (4, 8, 7, 7, 16, 1, 1, 0, 1),
    (3, 6, 9, 11, 10, 3, 1, 0, 1),
]


def _bn_params(rng, oc):
    """Inference batch norm's per-channel values as a dumped model holds them (the square
    root of the variance folded): mean, std, gamma, beta of shape (1, OC, 1, 1)."""
    return [ty.tensor(v.astype("float32").reshape(1, oc, 1, 1)) for v in (
        rng.standard_normal(oc), rng.random(oc) + 0.5,
        rng.standard_normal(oc), rng.standard_normal(oc))]


def _bn(y, mean, std, gamma, beta):
    return (y - mean) / std * gamma + beta


def _inputs(geom, rng):
    n, c, h, w, oc, k, s, p, g = geom
    x = rng.standard_normal((n, c, h, w)).astype("float32")
    wt = rng.standard_normal((oc, c // g, k, k)).astype("float32") * 0.3
    return x, wt


def _conv(x, w, geom):
    _, _, _, _, _, _, s, p, g = geom
    return F.conv2d(x, w, stride=s, padding=p, groups=g)


def _check(f, args, threads=(1, 2, 3)):
    saved = ty.get_num_threads()
    try:
        want = f(*args).numpy()
        for t in threads:
            ty.set_num_threads(t)
            tf = trace(f, symbolic=True)
            for _ in range(2):  # the second call replays the kept steps
                np.testing.assert_array_equal(tf(*args).numpy(), want)
        (s,) = tf.pass_stats()
        return s
    finally:
        ty.set_num_threads(saved)


def _special_inputs(geom, seed):
    """_inputs with zeros over most of the image and an infinity of each sign, a NaN and a
    large value in its first row."""
    x, w = _inputs(geom, np.random.default_rng(seed))
    x[:, :, 3:, :] = 0.0
    x[0, 0, 0, :4] = [np.inf, -np.inf, np.nan, 1e30]
    return x, w


def _deployed(f, x):
    """f traced with its weights as constants, dumped, and loaded for the C runtime."""
    tf = trace(f, symbolic=True, capture_as_const=True)
    tf(ty.tensor(x))
    buf = io.BytesIO()
    tf.dump(buf)
    return GraphInference(buf.getvalue())


@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_conv_batch_norm_activation_chain_is_bitwise_eager(geom, act):
    rng = np.random.default_rng(1)
    x, w = _inputs(geom, rng)
    bn = _bn_params(rng, geom[4])
    activation = F.relu if act == "relu" else F.relu6

    def f(x, w):
        return activation(_bn(_conv(x, w, geom), *bn))

    s = _check(f, [ty.tensor(x), ty.tensor(w)])
    assert s["fused_groups"] == 1
    assert s["fused_nodes"] >= 6  # the convolution with the norm's ops and the activation


def test_large_output_tail_in_parallel_pieces_is_bitwise_eager():
    """A 1x1 layer of 16 x 72 x 72 outputs: above the size that runs the fused tail in the
    caller (conv.c's hook_rows), the tail runs in parallel pieces."""
    geom = (1, 16, 72, 72, 16, 1, 1, 0, 1)
    rng = np.random.default_rng(2)
    x, w = _inputs(geom, rng)
    bn = _bn_params(rng, geom[4])

    def f(x, w):
        return F.relu(_bn(_conv(x, w, geom), *bn))

    s = _check(f, [ty.tensor(x), ty.tensor(w)])
    assert s["fused_groups"] == 1


@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("tail", ["relu6", "add_relu", "none"])
def test_dumped_functional_batch_norm_is_bitwise_eager(geom, tail):
    """F.batch_norm in eval mode, (y - mean) * (weight / std) + bias: a dump folds the scale
    into a constant, so the deployed group is sub, mul, add (+ add, + activation) after the
    convolution, run as one register loop; bitwise eager at 1, 2 and 3 threads."""
    rng = np.random.default_rng(4)
    x, w = _inputs(geom, rng)
    oc = geom[4]
    rm, rv, gamma, beta = [ty.tensor(v.astype("float32")) for v in (
        rng.standard_normal(oc), rng.random(oc) + 0.5, rng.standard_normal(oc),
        rng.standard_normal(oc))]
    wt = ty.tensor(w)
    res = ty.tensor(rng.standard_normal(_conv(ty.tensor(x), wt, geom).shape).astype("float32"))

    def f(x):
        y = F.nn.batch_norm(_conv(x, wt, geom), rm, rv, gamma, beta, training=False)
        if tail == "relu6":
            return F.relu6(y)
        return F.relu(y + res) if tail == "add_relu" else y

    want = f(ty.tensor(x)).numpy()
    tf = trace(f, symbolic=True, capture_as_const=True)
    tf(ty.tensor(x))
    buf = io.BytesIO()
    tf.dump(buf)
    saved = ty.get_num_threads()
    try:
        for t in (1, 2, 3):
            ty.set_num_threads(t)
            got = GraphInference(buf.getvalue()).run(x)
            np.testing.assert_array_equal(list(got.values())[0], want)
    finally:
        ty.set_num_threads(saved)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_dumped_batch_norm_special_values_are_bitwise_eager(act):
    """Zeros, -0 (a zero product scaled negative plus a -0 bias), infinities and NaNs through
    the register loop of the scale form: the deployed bits are eager's."""
    geom = GEOMS[0]
    rng = np.random.default_rng(5)
    x, w = _special_inputs(geom, 5)
    oc = geom[4]
    gamma = -np.abs(rng.standard_normal(oc)).astype("float32")
    beta = np.where(np.arange(oc) % 2 == 0, -0.0, 6.0).astype("float32")
    rm, rv, gamma, beta = [ty.tensor(v) for v in (np.zeros(oc, "float32"),
                                                  np.ones(oc, "float32"), gamma, beta)]
    wt = ty.tensor(w)
    activation = F.relu if act == "relu" else F.relu6

    def f(x):
        return activation(F.nn.batch_norm(_conv(x, wt, geom), rm, rv, gamma, beta,
                                          training=False))

    want = f(ty.tensor(x)).numpy()
    assert np.isnan(want).any() and (want == 0).any()
    got = list(_deployed(f, x).run(x).values())[0]
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("geom", [GEOMS[1], GEOMS[3], GEOMS[5]], ids=["wino", "dw", "batched"])
def test_residual_add_is_bitwise_eager(geom):
    """The output may take the residual's memory: each tile reads it before writing there."""
    rng = np.random.default_rng(2)
    x, w = _inputs(geom, rng)
    bn = _bn_params(rng, geom[4])

    def f(x, w, res):
        r = res * 1.5  # computed before the convolution
        return F.relu(_bn(_conv(x, w, geom), *bn) + r)

    shape = _conv(ty.tensor(x), ty.tensor(w), geom).shape
    res = rng.standard_normal(shape).astype("float32")
    _check(f, [ty.tensor(x), ty.tensor(w), ty.tensor(res)])


@pytest.mark.parametrize("geom", [GEOMS[0], GEOMS[3], GEOMS[6]], ids=["1x1", "dw", "im2col"])
def test_group_that_is_not_a_chain_is_bitwise_eager(geom):
    """silu written out (y reads the convolution's output twice): the generic steps."""
    rng = np.random.default_rng(3)
    x, w = _inputs(geom, rng)

    def f(x, w):
        y = _conv(x, w, geom)
        return y * F.sigmoid(y) - 0.25

    s = _check(f, [ty.tensor(x), ty.tensor(w)])
    assert s["fused_groups"] == 1


def test_convolution_input_read_by_the_group_is_not_overwritten():
    """A 1x1 layer keeping the shape: its input must outlive the group that also reads it."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 16, 9, 9)).astype("float32")
    w = rng.standard_normal((16, 16, 1, 1)).astype("float32") * 0.3

    def f(x, w):
        h = x * 2.0
        return F.relu(F.conv2d(h, w) + h)

    _check(f, [ty.tensor(x), ty.tensor(w)])


def test_depthwise_input_of_the_same_size_is_not_overwritten():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 32, 12, 12)).astype("float32")
    w = rng.standard_normal((32, 1, 3, 3)).astype("float32")

    def f(x, w):
        h = x - 0.5
        return F.relu6(F.conv2d(h, w, padding=1, groups=32) * 0.5)

    _check(f, [ty.tensor(x), ty.tensor(w)])


@pytest.mark.parametrize("geom", [GEOMS[0], GEOMS[3]], ids=["1x1", "dw"])
def test_convolution_output_read_after_the_group_stays(geom):
    """The group may not take the convolution's output in place while a later op reads it."""
    rng = np.random.default_rng(6)
    x, w = _inputs(geom, rng)

    def f(x, w):
        y = _conv(x, w, geom)
        a = F.relu6(y - 0.5)
        return a * 2 + F.mean(y, axis=(2, 3), keepdims=True)

    s = _check(f, [ty.tensor(x), ty.tensor(w)])
    assert s["fused_groups"] >= 1


@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("mode", ["identity", "relu6", "h_swish"])
def test_conv_bias_heads_its_residual_add(geom, mode):
    """A fused dump's conv_bias then residual add: identity, relu and relu6 conv_bias apply
    their bias and activation tile by tile and head the add; others (h_swish) add after."""
    from tianyuan.functional.quantized import conv_bias_activation
    rng = np.random.default_rng(7)
    x, w = _inputs(geom, rng)
    n, c, h, wd, oc, k, s, p, g = geom
    b = rng.standard_normal(oc).astype("float32")
    if g > 1:
        w = w.reshape(g, oc // g, c // g, k, k)

    def f(x, w, b, res):
        y = conv_bias_activation(x, w, b, stride=s, padding=p, groups=g, nonlinear_mode=mode)
        return F.relu(y + res)

    shape = _conv(ty.tensor(x), ty.tensor(w.reshape(oc, c // g, k, k)), geom).shape
    res = rng.standard_normal(shape).astype("float32")
    st = _check(f, [ty.tensor(x), ty.tensor(w), ty.tensor(b), ty.tensor(res)])
    assert st["fused_nodes"] == (2 if mode == "h_swish" else 3)


@pytest.mark.parametrize("geom", GEOMS, ids=lambda g: "x".join(map(str, g)))
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_bias_chain_is_bitwise_eager(geom, act):
    """A convolution's bias as a per-channel add, then relu or relu6: the chain's bias form
    (the batch norm loops with mean +0 and scale 1) keeps eager's bits."""
    rng = np.random.default_rng(6)
    x, w = _inputs(geom, rng)
    b = ty.tensor(rng.standard_normal((1, geom[4], 1, 1)).astype("float32"))
    activation = {None: lambda v: v, "relu": F.relu, "relu6": F.relu6}[act]

    def f(x, w):
        return activation(_conv(x, w, geom) + b)

    s = _check(f, [ty.tensor(x), ty.tensor(w)])
    assert s["fused_groups"] == 1


@pytest.mark.parametrize("geom", [GEOMS[1], GEOMS[3], GEOMS[5]], ids=["wino", "dw", "batched"])
def test_bias_chain_with_residual_is_bitwise_eager(geom):
    rng = np.random.default_rng(7)
    x, w = _inputs(geom, rng)
    b = ty.tensor(rng.standard_normal((1, geom[4], 1, 1)).astype("float32"))

    def f(x, w, res):
        r = res * 1.5
        return F.relu(_conv(x, w, geom) + b + r)

    shape = _conv(ty.tensor(x), ty.tensor(w), geom).shape
    res = rng.standard_normal(shape).astype("float32")
    _check(f, [ty.tensor(x), ty.tensor(w), ty.tensor(res)])


@pytest.mark.parametrize("geom", [(1, 32, 14, 14, 64, 3, 1, 1, 1), GEOMS[0], GEOMS[3]],
                         ids=["wino-kept-weight", "1x1", "dw"])
@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_dumped_bias_chain_special_values_are_bitwise_eager(geom, act):
    """Zeros, -0 biases, infinities and NaNs through the bias form in a deployed model, whose
    constant weights a small Winograd layer keeps transformed (computed on the first run, read
    on the next): the deployed bits are eager's at 1-3 threads, run after run."""
    x, w = _special_inputs(geom, 8)
    oc = geom[4]
    b = np.where(np.arange(oc) % 2 == 0, -0.0, 6.0).astype("float32").reshape(1, oc, 1, 1)
    wt, bt = ty.tensor(w), ty.tensor(b)
    activation = F.relu if act == "relu" else F.relu6

    def f(x):
        return activation(_conv(x, wt, geom) + bt)

    want = f(ty.tensor(x)).numpy()
    assert np.isnan(want).any() and (want == 0).any()
    saved = ty.get_num_threads()
    try:
        gi = _deployed(f, x)
        for t in (1, 2, 3, 1):
            ty.set_num_threads(t)
            got = list(gi.run(x).values())[0]
            assert got.tobytes() == want.tobytes()
    finally:
        ty.set_num_threads(saved)
