"""The include-layer check (tools/check_layers.py) passes on the tree and fails, naming the
file and the include, when a layer reaches upward."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
TOOL = os.path.join(ROOT, "tools", "check_layers.py")


def _run(src):
    return subprocess.run([sys.executable, TOOL, src], capture_output=True, text=True)


def test_tree_follows_the_layer_table():
    r = _run(os.path.join(ROOT, "src"))
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("victim, include", [
    ("core/tensor.c", "imperative/tape.h"),          # core calling the tape
    ("kernels/cpu/gemm.c", "core/core.h"),           # kernels above base
    ("graph/trace_exec.c", "kernels/cpu/elemw_cpu.h"),  # graph calling CPU kernels directly
    ("graph/trace.c", "imperative/tape.h"),          # graph and tape meeting outside the hooks
    ("python/module.c", "graph/trace_impl.h"),       # bindings on a private header
    ("base/threadpool.c", "core/core.h"),            # base calls nothing above it
])
def test_planted_upward_include_fails(tmp_path, victim, include):
    src = tmp_path / "src"
    shutil.copytree(os.path.join(ROOT, "src"), src)
    path = src / victim
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(1, f'#include "{include}"\n')
    path.write_text("".join(lines))
    r = _run(str(src))
    assert r.returncode == 1
    assert f'{victim}:2:' in r.stdout and f'may not include "{include}"' in r.stdout, r.stdout


def test_a_folder_outside_the_table_fails(tmp_path):
    src = tmp_path / "src"
    (src / "newlayer").mkdir(parents=True)
    (src / "newlayer" / "x.c").write_text("int x;\n")
    r = _run(str(src))
    assert r.returncode == 1 and "missing from the layer table" in r.stdout
