"""tianyuan.compat's MegEngine alias: `import megengine...` answered by tianyuan's modules
(the same objects), opt-in, never hiding a real MegEngine unless forced; `python -m
tianyuan.compat` runs a MegEngine script unchanged; MegEngine's quantized dtypes at
megengine.core.tensor.dtype; a model file written in MegEngine/Models' style (tests/python/
megengine_style/net.py) builds, trains a step eagerly and traced (same bits) and deploys
through the C runtime bit for bit. With TY_MEGENGINE_MODELS_DIR pointing at a checkout of
MegEngine/Models, its ResNet-18/50, ShuffleNetV2 x1.0 and MobileNetV2 files run unchanged too."""
import importlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

import tianyuan
import tianyuan.compat as compat

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYDIR = os.environ.get("TY_PYTHON_DIR") or os.path.join(ROOT, "python")
BUILD = os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build"))
RUN_BIN = os.path.join(BUILD, "tianyuan-run")
SANITIZED = bool(os.environ.get("TY_PYTHON_DIR"))
MODELS_DIR = os.environ.get("TY_MEGENGINE_MODELS_DIR")
# Where MegEngine itself is installed the tests take its name by force (in this process only).
REAL_MEGENGINE = importlib.util.find_spec("megengine") is not None
FORCE = ["--force"] if REAL_MEGENGINE else []


def _forget_megengine():
    for name in [n for n in sys.modules if n == "megengine" or n.startswith("megengine.")]:
        del sys.modules[name]


@pytest.fixture
def alias():
    """The alias on for one test, then off again (also if the test failed)."""
    compat.megengine_alias(force=REAL_MEGENGINE)
    yield
    compat.remove_megengine_alias()
    assert "megengine" not in sys.modules and not compat.is_active()


@pytest.fixture
def fake_megengine(tmp_path, monkeypatch):
    """An installed package named megengine (a stand-in for the real one) on sys.path."""
    pkg = tmp_path / "site" / "megengine"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    yield pkg
    compat.remove_megengine_alias()
    _forget_megengine()


# ---- the alias mechanics ----

def test_the_alias_is_off_until_asked_for():
    assert not compat.is_active()
    if REAL_MEGENGINE:
        import megengine
        assert megengine is not tianyuan
    else:
        with pytest.raises(ModuleNotFoundError):
            import megengine  # noqa: F401


def test_import_forms_give_tianyuans_modules(alias):
    import megengine
    import megengine.module as M
    from megengine import functional as F
    from megengine.module import init
    import megengine.functional.nn as nn
    import megengine.hub
    from megengine.jit import trace
    from megengine.autodiff import GradManager
    assert megengine is tianyuan
    assert M is tianyuan.module and F is tianyuan.functional and init is tianyuan.module.init
    assert nn is sys.modules["tianyuan.functional.nn"]
    assert megengine.hub is tianyuan.hub and trace is tianyuan.jit.trace
    assert GradManager is tianyuan.autodiff.GradManager
    assert M.Conv2d is tianyuan.module.Conv2d       # isinstance checks see one class
    assert F.relu(megengine.tensor([-1.0, 2.0])).numpy().tolist() == [0.0, 2.0]


def test_a_submodule_tianyuan_has_not_imported_yet_resolves_lazily(alias):
    sys.modules.pop("tianyuan.core.tensor.dtype", None)
    from megengine.core.tensor.dtype import qint8, is_quantize
    assert sys.modules["megengine.core.tensor.dtype"] is sys.modules["tianyuan.core.tensor.dtype"]
    assert is_quantize(qint8(0.5))
    # the tianyuan module keeps its own spec (reload and find_spec still see tianyuan's name)
    assert sys.modules["tianyuan.core.tensor.dtype"].__spec__.name == "tianyuan.core.tensor.dtype"


def test_importing_megengine_tensor_keeps_the_factory(alias):
    import megengine
    import megengine.tensor  # noqa: F401  (a module in MegEngine too; the attribute stays)
    assert callable(megengine.tensor) and megengine.tensor is tianyuan.tensor
    assert megengine.tensor([1, 2]).shape == (2,)


def test_a_megengine_name_tianyuan_lacks_is_a_clear_error(alias):
    with pytest.raises(ModuleNotFoundError, match=r"megengine\.no_such_module.*tianyuan has no "
                                                  r"counterpart \(tianyuan\.no_such_module\)"):
        import megengine.no_such_module  # noqa: F401
    with pytest.raises(ImportError, match="NoSuchLayer.*tianyuan.module"):
        from megengine.module import NoSuchLayer  # noqa: F401
    assert "megengine.no_such_module" not in sys.modules


def test_an_error_inside_a_tianyuan_module_is_not_hidden(alias, tmp_path, monkeypatch):
    """A module that exists but fails on import shows its own error, not 'no counterpart'."""
    broken = tmp_path / "broken_mod.py"
    broken.write_text("import a_module_that_is_not_there\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(tianyuan, "__path__", list(tianyuan.__path__) + [str(tmp_path)])
    with pytest.raises(ModuleNotFoundError, match="a_module_that_is_not_there"):
        import megengine.broken_mod  # noqa: F401
    sys.modules.pop("tianyuan.broken_mod", None)


@pytest.mark.skipif(REAL_MEGENGINE, reason="MegEngine is installed here")
def test_the_alias_can_be_removed_and_installed_again():
    compat.megengine_alias()
    compat.megengine_alias()        # idempotent
    import megengine
    assert megengine is tianyuan
    compat.remove_megengine_alias()
    with pytest.raises(ModuleNotFoundError):
        import megengine  # noqa: F401,F811
    compat.megengine_alias()
    import megengine.module as M
    assert M is tianyuan.module
    compat.remove_megengine_alias()


def test_a_real_megengine_is_not_shadowed_unless_forced(fake_megengine):
    with pytest.raises(compat.AliasError, match="a 'megengine' package is installed.*force=True"):
        compat.megengine_alias()
    assert not compat.is_active()
    import megengine
    assert megengine.REAL                           # still the installed one
    with pytest.raises(compat.AliasError, match="already imported"):
        compat.megengine_alias()
    compat.megengine_alias(force=True)
    import megengine  # noqa: F811
    assert megengine is tianyuan


# ---- python -m tianyuan.compat ----

SCRIPT = """
import sys
import megengine as mge
import megengine.functional as F
print("args", sys.argv[1:], F.relu(mge.tensor([-3.0, 4.0])).numpy().tolist(), mge.__name__)
"""


def _python_env():
    """The environment for a Python child: the same package (and, in the sanitizer run, the
    preloaded sanitizer runtime its _C needs)."""
    return dict(os.environ)


def _run_compat(args, cwd, extra_path=""):
    env = _python_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (extra_path, PYDIR) if p)
    return subprocess.run([sys.executable, "-m", "tianyuan.compat"] + args, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(SANITIZED, reason="child interpreters only test Python mechanics; the "
                                      "optimized run covers them")
def test_python_m_tianyuan_compat_runs_a_script_unchanged(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    r = _run_compat(FORCE + ["script.py", "a", "--b"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "args ['a', '--b'] [0.0, 4.0] tianyuan"


@pytest.fixture
def runner(monkeypatch):
    """tianyuan.compat's main() in this process, its changes to sys and the environment
    undone afterwards."""
    from tianyuan.compat.__main__ import main
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    yield lambda args: main(FORCE + args)
    compat.remove_megengine_alias()
    sys.modules.pop("a_megengine_program", None)


def test_the_runner_runs_a_module_and_a_command(runner, tmp_path, monkeypatch, capsys):
    assert runner(["-c", SCRIPT, "x"]) == 0
    assert capsys.readouterr().out.strip() == "args ['x'] [0.0, 4.0] tianyuan"
    (tmp_path / "a_megengine_program.py").write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert runner(["-m", "a_megengine_program", "y"]) == 0
    assert capsys.readouterr().out.strip() == "args ['y'] [0.0, 4.0] tianyuan"
    # what it started with sees the shim first on its path
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == compat.SHIM_PATH
    assert compat.SHIM_PATH in sys.path


def test_the_runner_without_a_program_prints_its_usage(runner, capsys):
    assert runner([]) == 2 and "usage: python -m tianyuan.compat" in capsys.readouterr().err
    assert runner(["-m"]) == 2
    assert not compat.is_active()


SPAWNING_SCRIPT = """
import multiprocessing as mp
import megengine as mge
import megengine.functional as F

def work(v):
    return F.relu(mge.tensor([v, -v])).numpy().tolist(), mge.__name__

if __name__ == "__main__":
    with mp.get_context("spawn").Pool(1) as pool:   # a fresh interpreter, not a fork
        print(pool.map(work, [2.0]))
"""


@pytest.mark.skipif(SANITIZED, reason="child interpreters only test Python mechanics; the "
                                      "optimized run covers them")
def test_processes_the_program_spawns_get_the_alias_too(tmp_path):
    (tmp_path / "spawning.py").write_text(SPAWNING_SCRIPT)
    r = _run_compat(FORCE + ["spawning.py"], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == "[([2.0, 0.0], 'tianyuan')]", r.stderr


@pytest.mark.skipif(SANITIZED, reason="child interpreters only test Python mechanics; the "
                                      "optimized run covers them")
def test_the_shim_directory_on_pythonpath_aliases_without_the_runner(tmp_path, monkeypatch,
                                                                       capsys):
    from tianyuan.compat.__main__ import main
    assert main(["--shim-path"]) == 0 and capsys.readouterr().out.strip() == compat.SHIM_PATH
    (tmp_path / "script.py").write_text(SCRIPT)
    env = _python_env()
    env["PYTHONPATH"] = os.pathsep.join([compat.SHIM_PATH, PYDIR])
    r = subprocess.run([sys.executable, "script.py", "z"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "args ['z'] [0.0, 4.0] tianyuan", r.stderr
    # in this process: the shim on sys.path is not mistaken for an installed MegEngine
    if not REAL_MEGENGINE:
        monkeypatch.syspath_prepend(compat.SHIM_PATH)
        compat.megengine_alias()
        import megengine
        assert megengine is tianyuan
        compat.remove_megengine_alias()


@pytest.mark.skipif(SANITIZED, reason="child interpreters only test Python mechanics; the "
                                      "optimized run covers them")
def test_python_m_tianyuan_compat_refuses_to_hide_a_real_megengine(tmp_path):
    site = tmp_path / "site" / "megengine"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (tmp_path / "script.py").write_text(SCRIPT)
    r = _run_compat(["script.py"], tmp_path, extra_path=str(tmp_path / "site"))
    assert r.returncode == 2 and "package is installed" in r.stderr and r.stdout == ""
    # (--force: the in-process test_a_real_megengine_is_not_shadowed_unless_forced)


# ---- megengine.core.tensor.dtype ----

def test_quantized_dtypes_carry_megengines_metadata():
    from tianyuan.core.tensor import dtype as qd
    q = qd.qint8(0.25)
    assert q == np.int8 and q.metadata == {"mgb_dtype": {"name": "QuantizedS8", "scale": 0.25}}
    u = qd.quint8(0.5, 128)
    assert u == np.uint8 and qd.get_zero_point(u) == 128 and qd.get_scale(u) == 0.5
    assert qd.is_quantize(q) and qd.is_quantize(qd.qint32(1e-3)) and not qd.is_quantize(np.int8)
    assert qd.is_dtype_equal(qd.qint8(0.25), q) and not qd.is_dtype_equal(qd.qint8(0.5), q)
    assert qd.get_dtype_bit("quint4") == 4 and qd.get_dtype_bit("bool") == 1
    with pytest.raises(ValueError, match="zero_point should be within"):
        qd.quint8(0.5, 300)
    with pytest.raises(ValueError, match="symmetric"):
        qd.create_quantized_dtype(qd._builtin_quant_dtypes["qint8"], 0.5, 3)
    with pytest.raises(ValueError, match="not a quantized dtype"):
        qd.get_scale(np.float32)


def test_quantize_and_dequantize_round_clip_and_scale():
    from tianyuan.core.tensor import dtype as qd
    x = np.array([0.26, -0.74, 1000.0, -1000.0, 0.0], np.float32)
    q = qd.convert_to_qint8(x, qd.qint8(0.1))
    assert q.dtype == np.int8 and q.tolist() == [3, -7, 127, -128, 0]
    np.testing.assert_array_equal(qd.convert_from_qint8(q),
                                  np.float32([3, -7, 127, -128, 0]) * np.float32(0.1))
    u = qd.convert_to_quint8(x, qd.quint8(0.1, 100))
    assert u.tolist() == [103, 93, 255, 0, 100]
    np.testing.assert_array_equal(qd.convert_from_quint8(u),
                                  (np.float32([103, 93, 255, 0, 100]) - 100) * np.float32(0.1))
    assert qd.convert_to_qint4(x, qd.qint4(0.1)).tolist() == [3, -7, 7, -8, 0]
    assert qd.convert_to_qint32(x, qd.qint32(0.001)).tolist() == [260, -740, 1000000,
                                                                   -1000000, 0]
    with pytest.raises(ValueError, match="convert_to_qint8: the target dtype should be a qint8"):
        qd.convert_to_qint8(x, qd.quint8(0.1, 0))
    with pytest.raises(ValueError, match="convert_from_quint8: arr's dtype should be a quint8"):
        qd.convert_from_quint8(q)


def test_dimshuffle_is_megengines_transpose_with_new_axes():
    x = tianyuan.tensor(np.arange(24, dtype=np.float32).reshape(2, 3, 4))
    np.testing.assert_array_equal(x.dimshuffle(2, 0, 1).numpy(),
                                  np.arange(24).reshape(2, 3, 4).transpose(2, 0, 1))
    assert x.dimshuffle(1, "x", 2, 0).shape == (3, 1, 4, 2)
    assert x.dimshuffle((0, 1, 2)).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="transpose"):
        x.dimshuffle(0, 1)


# ---- a MegEngine-style model file: build, train a step eagerly and traced, deploy ----

def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _step_trace_dump(net, x, label, tmp_path, name):
    """One SGD step eagerly and the same step traced from the same state (the same loss and
    weights, bit for bit, dropout reseeded); a second traced step; then the eval graph dumped
    and run by GraphInference and tianyuan-run, equal to eager bit for bit. Returns the eager
    loss."""
    import megengine as mge
    import megengine.autodiff as autodiff
    import megengine.functional as F
    import megengine.optimizer as optim
    from megengine.jit import trace
    from megengine.utils.comp_graph_tools import GraphInference

    start = {k: v.copy() for k, v in net.state_dict().items()}
    net.train()

    def step(gm, opt, data, lab):
        with gm:
            loss = F.nn.cross_entropy(net(data), lab)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    def fresh():
        return (autodiff.GradManager().attach(net.parameters()),
                optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4))

    gm, opt = fresh()
    mge.random.seed(3)
    eager_loss = step(gm, opt, mge.tensor(x), mge.tensor(label)).numpy()
    eager_state = {k: v.copy() for k, v in net.state_dict().items()}
    assert np.isfinite(eager_loss)
    assert all(not np.array_equal(start[k], eager_state[k]) for k in start), "a step changes all"

    net.load_state_dict(start)
    gm, opt = fresh()
    traced = trace(symbolic=True)(lambda data, lab: step(gm, opt, data, lab))
    mge.random.seed(3)
    traced_loss = traced(mge.tensor(x), mge.tensor(label)).numpy()
    assert traced_loss.tobytes() == eager_loss.tobytes()
    for k, v in net.state_dict().items():
        assert v.tobytes() == eager_state[k].tobytes(), k
    second = traced(mge.tensor(x), mge.tensor(label)).numpy()
    assert np.isfinite(second) and second != traced_loss

    net.eval()
    want = net(mge.tensor(x)).numpy()
    infer = trace(symbolic=True, capture_as_const=True)(lambda data: net(data))
    infer(mge.tensor(x))
    path = str(tmp_path / f"{name}.tym")
    infer.dump(path, arg_names=["data"], output_names=["out"])
    assert GraphInference(path).run(x)["out"].tobytes() == want.tobytes()
    if os.path.exists(RUN_BIN):
        np.save(tmp_path / "x.npy", x)
        r = subprocess.run([RUN_BIN, path, "--input", f"data={tmp_path / 'x.npy'}", "--output",
                            str(tmp_path / "y.npy"), "--iter", "1", "--warmup-iter", "0"],
                           capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
        assert r.returncode == 0, r.stderr
        assert np.load(tmp_path / "y.npy").tobytes() == want.tobytes()
    return eager_loss


def test_a_megengine_style_model_file_builds_trains_traces_and_deploys(alias, tmp_path):
    import megengine as mge
    import megengine.module as M
    style = _load(os.path.join(HERE, "megengine_style", "net.py"), "megengine_style_net")
    mge.random.seed(0)
    net = style.tiny_net(num_classes=10)
    assert style.tiny_net.url == style.WEIGHTS_URL
    convs = [m for m in net.modules() if isinstance(m, M.Conv2d)]
    assert len(convs) == 11          # the convs inside ConvBn2d / ConvBnRelu2d count too
    for m in net.modules():
        if isinstance(m, M.BatchNorm2d):
            assert (m.weight.numpy() == 1).all() and (m.bias.numpy() == 0).all()
    # msra_normal_(mode="fan_out", relu): std sqrt(2 / fan_out); the 3x3 32->32 conv draws 9216
    w = net.features[1].conv2.weight.numpy()
    assert abs(w.std() / np.sqrt(2.0 / (32 * 9)) - 1) < 0.05
    assert [m.quantize_disabled for m in net.classifier.modules()] == [True, True, True]
    assert not net.stem.quantize_disabled
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    probe = mge.tensor(x[:, :1])
    assert net.quant(probe) is probe and net.dequant(probe) is probe
    add = net.features[2].add
    np.testing.assert_array_equal(add(probe, probe).numpy(), 2 * x[:, :1])
    _step_trace_dump(net, x, np.array([1, 7], np.int32), tmp_path, "tiny_net")


# ---- MegEngine/Models' own files, unchanged (when a checkout is given) ----

MODELS_FILES = [
    ("official/vision/classification/resnet/model.py", "resnet18"),
    ("official/vision/classification/resnet/model.py", "resnet50"),
    ("official/vision/classification/shufflenet/model.py", "shufflenet_v2_x1_0"),
    ("official/quantization/models/mobilenet_v2.py", "mobilenet_v2"),
]


@pytest.mark.skipif(not MODELS_DIR, reason="set TY_MEGENGINE_MODELS_DIR to a checkout of "
                                           "MegEngine/Models to run its model files unchanged")
@pytest.mark.skipif(SANITIZED, reason="224x224 models are too slow under the sanitizers")
@pytest.mark.parametrize("relpath, entry", MODELS_FILES)
def test_megengine_models_files_run_unchanged(alias, tmp_path, relpath, entry):
    import megengine as mge
    path = os.path.join(MODELS_DIR, relpath)
    assert os.path.exists(path), f"{path}: not in the Models checkout"
    models_file = _load(path, "megengine_models_" + entry)
    mge.random.seed(0)
    net = getattr(models_file, entry)()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    loss = _step_trace_dump(net, x, np.array([3, 7], np.int32), tmp_path, entry)
    assert 4 < float(loss) < 10      # about ln(1000) at a random start
