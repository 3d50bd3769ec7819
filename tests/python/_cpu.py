"""What the tests ask of the CPU they run on, and children run on a forced ISA path."""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# the sanitizer build's package when the suite runs under ASan
PYDIR = os.environ.get("TY_PYTHON_DIR") or os.path.join(ROOT, "python")


def cpu_flags():
    """The feature flags /proc/cpuinfo lists (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isas_here():
    """The TY_ISA paths this CPU can run: generic, then avx2 and avx512 where the CPU has them
    (with FMA, which both use: isa.c asks for it too)."""
    flags = cpu_flags()
    return ["generic"] + [isa for isa, flag in (("avx2", "avx2"), ("avx512", "avx512f"))
                          if flag in flags and "fma" in flags]


def run_isa_child(source, isa, path, timeout=300):
    """Runs `source` in a fresh Python with TY_ISA=isa (TY_ISA is read once, at import), its
    argv the output path and this directory; returns the arrays it saved there with np.savez."""
    env = dict(os.environ, TY_ISA=isa)
    env["PYTHONPATH"] = PYDIR + os.pathsep + env.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", source, str(path), os.path.dirname(__file__)],
                       capture_output=True, text=True, env=env, timeout=timeout)
    assert r.returncode == 0, r.stderr
    with np.load(path) as z:
        return {k: z[k] for k in z.files}
