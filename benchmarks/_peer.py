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


def ratio(ty_value, peer_value):
    if peer_value is None:
        return "n/a (PyTorch not installed)"
    return f"{peer_value / ty_value:.2f}x"
