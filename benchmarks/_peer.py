"""Finding the peer (PyTorch) for benchmarks: the current interpreter, or the venv named by
TY_PEER_PYTHON / ../peer-venv, run as a subprocess. Missing peer -> its columns are skipped."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def peer_python():
    try:
        import torch  # noqa: F401
        return sys.executable
    except ImportError:
        pass
    for cand in (os.environ.get("TY_PEER_PYTHON"),
                 os.path.join(os.path.dirname(ROOT), "peer-venv", "bin", "python")):
        if cand and os.path.exists(cand):
            return cand
    return None


def run_peer(script, *args):
    """Runs a peer-side script (it prints one JSON object) and returns the parsed result."""
    py = peer_python()
    if py is None:
        return None
    out = subprocess.run([py, script, *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    if out.returncode != 0:
        print(f"[peer failed: {out.stderr.strip().splitlines()[-1:]}]")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine_line():
    """The CPU this run is on (its model name and feature flags that matter) and the peer's
    version, for the top of every benchmark's output."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                if key.strip() == "model name":
                    model = val.strip()
                elif key.strip() == "flags":
                    flags = set(val.split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "avx512f", "avx512_fp16", "avx512_vnni", "amx_tile") if f in flags]
    py = peer_python()
    peer = "PyTorch not installed"
    if py:
        out = subprocess.run([py, "-c", "import torch; print(torch.__version__)"],
                             capture_output=True, text=True)
        peer = f"PyTorch {out.stdout.strip()}" if out.returncode == 0 else "PyTorch unusable"
    return f"CPU: {model} ({' '.join(isa) or 'no AVX2'}), {os.cpu_count()} cores; peer: {peer}"


def ratio(ty_value, peer_value):
    if peer_value is None:
        return "n/a (PyTorch not installed)"
    return f"{peer_value / ty_value:.2f}x"
