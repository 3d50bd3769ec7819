"""Whole models deployed bit for bit (the deploy issue's identity promise): the Fashion-MNIST
CNN, ResNet-18 (224x224), MobileNetV2, a transformer encoder block (LayerNorm, multi-head
attention, GELU MLP) and a small ShuffleNetV2, random weights in eval mode, traced with
capture_as_const and dumped once each; then Python eager == GraphInference == tianyuan-run ==
a C program using only tianyuan/runtime.h, bit for bit, at the dumped batch size and at another
one. Dumped with enable_fuse_conv_bias_nonlinearity=True (once implemented): within 1e-5.

The sanitizer run (TY_PYTHON_DIR set: a Debug ASan build) uses smaller images."""
import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.models as models
import tianyuan.module as M
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build"))
RUN_BIN = os.path.join(BUILD, "tianyuan-run")
RUNTIME_LIB = os.path.join(BUILD, "libtianyuan_runtime.a")
SANITIZED = bool(os.environ.get("TY_PYTHON_DIR"))
IMAGE = 64 if SANITIZED else 224
_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # not under ASan's preload


class EncoderBlock(M.Module):
    """A pre-norm transformer encoder block: x + attention(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim=64, heads=4, hidden=128):
        super().__init__()
        self.ln1 = M.LayerNorm(dim)
        self.attn = M.MultiHeadAttention(dim, heads)
        self.ln2 = M.LayerNorm(dim)
        self.fc1 = M.Linear(dim, hidden)
        self.gelu = M.GELU()
        self.fc2 = M.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))[0]
        return x + self.fc2(self.gelu(self.fc1(self.ln2(x))))


def _fmnist_cnn():
    spec = importlib.util.spec_from_file_location(
        "fashion_mnist_train_example", os.path.join(ROOT, "examples", "fashion_mnist",
                                                    "train.py"))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train.Net()


# name: (builder, input shape at the dumped batch size, the other batch size)
MODELS = {
    "fmnist_cnn": (_fmnist_cnn, (4, 1, 28, 28), 3),
    "resnet18": (lambda: models.resnet18(num_classes=10), (1, 3, IMAGE, IMAGE), 2),
    "mobilenet_v2": (lambda: models.mobilenet_v2(num_classes=10), (2, 3, IMAGE, IMAGE), 1),
    "encoder_block": (EncoderBlock, (2, 16, 64), 3),
    # channel split, concat and shuffle (a 5-D transpose) at a small size
    "shufflenet_v2_x0_5": (lambda: models.shufflenet_v2_x0_5(num_classes=10), (1, 3, 64, 64),
                           2),
}


def _build(build):
    """The model with its random initial fill skipped (tens of millions of draws are slow in
    the sanitizer build): _randomize gives every tensor its values."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(M.init, "normal_", lambda tensor, mean=0.0, std=1.0: None)
        return build()


def _randomize(net, rng):
    """He-scaled random weights, random biases, norm scales and BatchNorm statistics, so no
    layer is an identity."""
    state = net.state_dict()
    for key, v in state.items():
        if key.endswith("running_var"):
            state[key] = rng.uniform(0.5, 2.0, v.shape)
        elif key.endswith(("running_mean", "bias")):
            state[key] = rng.uniform(-0.2, 0.2, v.shape)
        elif v.ndim == 1:   # norm scales
            state[key] = rng.uniform(0.5, 1.5, v.shape)
        else:               # (out, in, ...) or a grouped (groups, out, in, kh, kw) weight
            fan_in = int(np.prod(v.shape[2:] if v.ndim == 5 else v.shape[1:]))
            state[key] = rng.standard_normal(v.shape) * np.sqrt(2.0 / fan_in)
    net.load_state_dict({k: np.asarray(v, np.float32) for k, v in state.items()})


@pytest.fixture(scope="module", params=sorted(MODELS))
def deployed(request, tmp_path_factory):
    """One model, built, dumped and run eagerly once: (dir, model path, [(x, eager y)], the
    traced function)."""
    name = request.param
    build, shape, other = MODELS[name]
    rng = np.random.default_rng(5)
    net = _build(build)
    _randomize(net, rng)
    net.eval()
    root = tmp_path_factory.mktemp(name)

    @trace(symbolic=True, capture_as_const=True)
    def infer(data):
        return net(data)

    infer(ty.tensor(np.zeros(shape, np.float32)))
    path = str(root / f"{name}.tym")
    infer.dump(path, arg_names=["data"], output_names=["out"])
    cases = []
    for batch in (shape[0], other):
        x = rng.standard_normal((batch,) + shape[1:]).astype(np.float32)
        y = net(ty.tensor(x)).numpy()
        assert np.isfinite(y).all() and np.unique(y).size > y.size // 2, name  # not degenerate
        cases.append((x, y))
    return root, path, cases, infer


def _same_bits(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape, (got.shape, want.shape)
    assert got.tobytes() == want.tobytes(), np.abs(got - want).max()


def test_graph_inference_equals_eager(deployed):
    _, path, cases, _ = deployed
    model = GraphInference(path)
    assert model.input_names == ["data"] and model.output_names == ["out"]
    assert len({x.shape[0] for x, _ in cases}) == 2     # two batch sizes
    for x, want in cases:
        _same_bits(model.run(x)["out"], want)


@pytest.mark.skipif(not os.path.exists(RUN_BIN), reason="tianyuan-run is built by CMake")
def test_tianyuan_run_equals_eager(deployed):
    root, path, cases, _ = deployed
    for i, (x, want) in enumerate(cases):
        np.save(root / f"x{i}.npy", x)
        r = subprocess.run([RUN_BIN, path, "--input", f"data={root / f'x{i}.npy'}",
                            "--output", str(root / f"run{i}.npy"), "--iter", "1",
                            "--warmup-iter", "0", "--thread", "2"],
                           capture_output=True, text=True, env=_ENV, timeout=120)
        assert r.returncode == 0, r.stderr
        _same_bits(np.load(root / f"run{i}.npy"), want)


# A deployment as a user writes it: runtime.h, libc, nothing else.
C_PROGRAM = r"""
/* run_model MODEL.tym IN.f32 OUT.f32 D0 D1 ...: input 0 <- the float32 file IN of shape
 * D0 x D1 x ...; runs once; writes output 0's float32 data to OUT and prints its shape. */
#include <stdio.h>
#include <stdlib.h>
#include "tianyuan/runtime.h"

#define CHECK(x) \
    do { if ((x) != TY_OK) { fprintf(stderr, "%s\n", ty_last_error()); return 1; } } while (0)

int main(int argc, char **argv)
{
    int64_t shape[8], count = 1;
    int ndim = argc - 4;
    if (argc < 5 || ndim > 8) return fprintf(stderr, "usage\n"), 2;
    for (int d = 0; d < ndim; d++) count *= shape[d] = atol(argv[4 + d]);
    float *x = malloc(count * sizeof *x);
    FILE *f = fopen(argv[2], "rb");
    if (!x || !f || fread(x, sizeof *x, count, f) != (size_t)count)
        return fprintf(stderr, "cannot read the input\n"), 1;
    fclose(f);
    ty_model *model;
    ty_session *s;
    ty_io_info in;
    CHECK(ty_model_load_file(argv[1], &model));
    CHECK(ty_session_new(model, &s));
    CHECK(ty_model_input(model, 0, &in));
    CHECK(ty_session_set_input(s, in.name, TY_FLOAT32, ndim, shape, x, count * sizeof *x));
    CHECK(ty_session_run(s));
    const ty_tensor *y;
    CHECK(ty_session_output(s, 0, &y));
    if (ty_tensor_dtype(y) != TY_FLOAT32 || !ty_tensor_is_contiguous(y))
        return fprintf(stderr, "output 0 is not contiguous float32\n"), 1;
    int64_t n = 1;
    for (int d = 0; d < ty_tensor_ndim(y); d++) {
        n *= ty_tensor_shape(y)[d];
        printf("%lld ", (long long)ty_tensor_shape(y)[d]);
    }
    f = fopen(argv[3], "wb");
    if (!f || fwrite(ty_tensor_data(y), sizeof(float), n, f) != (size_t)n || fclose(f)) return 1;
    ty_session_free(s);
    ty_model_free(model);
    free(x);
    return 0;
}
"""


@pytest.fixture(scope="module")
def c_program(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not os.path.exists(RUNTIME_LIB):
        pytest.skip("needs a C compiler and the runtime library (make build)")
    d = tmp_path_factory.mktemp("c_program")
    (d / "run_model.c").write_text(C_PROGRAM)
    exe = str(d / "run_model")
    r = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I", os.path.join(ROOT, "include"),
                        str(d / "run_model.c"), RUNTIME_LIB, "-lm", "-lpthread", "-o", exe],
                       capture_output=True, text=True, env=_ENV)
    assert r.returncode == 0, r.stderr
    return exe


def test_a_c_program_on_runtime_h_alone_equals_eager(deployed, c_program):
    root, path, cases, _ = deployed
    for i, (x, want) in enumerate(cases):
        x.tofile(root / f"x{i}.f32")
        r = subprocess.run([c_program, path, str(root / f"x{i}.f32"), str(root / f"c{i}.f32"),
                            *map(str, x.shape)], capture_output=True, text=True, env=_ENV,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        shape = tuple(int(d) for d in r.stdout.split())
        _same_bits(np.fromfile(root / f"c{i}.f32", np.float32).reshape(shape), want)


def test_fused_conv_bn_dump_stays_within_1e_5_of_eager(deployed):
    """enable_fuse_conv_bias_nonlinearity=True folds BatchNorm into the convolutions: not the
    same bits, but max |fused - eager| <= 1e-5 * max |eager| at both batch sizes."""
    root, _, cases, infer = deployed
    path = str(root / "fused.tym")
    try:
        infer.dump(path, arg_names=["data"], output_names=["out"],
                   enable_fuse_conv_bias_nonlinearity=True)
    except ValueError as e:
        if "not implemented" in str(e):
            pytest.skip(str(e))
        raise
    model = GraphInference(path)
    for x, want in cases:
        got = model.run(x)["out"]
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
