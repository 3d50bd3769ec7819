"""libtianyuan_runtime, the deployment library: the layers up to the graph executor, without
the autodiff tape and without Python. A program linking it alone runs a network and matches
NumPy; the library needs only libc, libm and pthreads."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build"))
LIB = os.path.join(BUILD, "libtianyuan_runtime.so")
SMOKE = os.path.join(BUILD, "ty_runtime_smoke")

pytestmark = pytest.mark.skipif(not os.path.exists(LIB), reason="the runtime library is built "
                                "by CMake (make build); this run uses another build")


# make test-py-asan preloads the sanitizer runtimes: they are not the library's dependencies
_ENV = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}


def _run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, env=_ENV).stdout


def _ramp(shape, start, step):
    return (np.arange(np.prod(shape), dtype=np.float64) * step + start).reshape(shape)


def _reference():
    x, w = _ramp((2, 1, 6, 6), -0.3, 0.01), _ramp((3, 1, 3, 3), 0.4, -0.03)
    w2 = _ramp((12, 4), -0.5, 0.02)
    c = np.zeros((2, 3, 4, 4))
    for i in range(4):
        for j in range(4):
            c[:, :, i, j] = np.einsum("nkl,okl->no", x[:, 0, i:i + 3, j:j + 3], w[:, 0])
    r = np.maximum(c, 0)
    p = r.reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5))
    return p.reshape(2, 12) @ w2


def test_a_program_linking_only_the_runtime_library_runs_a_network():
    out = _run(SMOKE)
    got = np.array([float(v) for v in out.split()]).reshape(2, 4)
    np.testing.assert_allclose(got, _reference(), rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(shutil.which("ldd") is None, reason="needs ldd")
def test_runtime_library_needs_only_libc_libm_pthreads():
    out = _run("ldd", LIB)
    libs = {line.split()[0] for line in out.splitlines() if line.strip()}
    allowed = re.compile(r"^(linux-vdso\.so\.1|/lib64/ld-linux.*|libc\.so\.6|libm\.so\.6|"
                         r"libpthread\.so\.0|ld-linux.*)$")
    assert all(allowed.match(lib) for lib in libs), libs


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs nm")
def test_runtime_library_holds_no_autodiff_and_no_python():
    out = _run("nm", "-D", LIB)
    names = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert "ty_apply" in names and "ty_trace_begin_record" in names
    leaked = [n for n in names if n.startswith(("ty_ad_", "ty_backward", "ty_init", "Py", "_Py"))]
    assert leaked == [], leaked
