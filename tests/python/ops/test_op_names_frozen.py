"""The build's frozen-op-names check (tools/check_op_names.cmake, run by CMake before the
library compiles): it passes on the tree and on an appended row, and fails on a planted rename,
reorder or removal in a copy of ops.def."""
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
OPS_DEF = ROOT / "include" / "tianyuan" / "ops.def"
FROZEN = ROOT / "src" / "ops" / "op_names.frozen"
CHECKER = ROOT / "tools" / "check_op_names.cmake"


def _check(ops_def, frozen=FROZEN):
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # make test-py-asan's
    res = subprocess.run(["cmake", f"-DCC={cc}", f"-DOPS_DEF={ops_def}", f"-DFROZEN={frozen}",
                          "-P", str(CHECKER)], capture_output=True, text=True, env=env,
                         cwd=tempfile.gettempdir())  # where the checker writes its probe
    return res.returncode, res.stdout + res.stderr


def _planted(tmp_path, edit):
    text = OPS_DEF.read_text()
    new = edit(text)
    assert new != text, "the planted edit did not apply"
    path = tmp_path / "ops.def"
    path.write_text(new)
    return path


def _frozen_names():
    return [ln.split()[1] for ln in FROZEN.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def test_tree_matches_frozen_list():
    rc, out = _check(OPS_DEF)
    assert rc == 0, out


def test_frozen_list_names_every_op_of_the_extension():
    from tianyuan import _C
    frozen = _frozen_names()
    assert list(_C.ops)[:len(frozen)] == frozen


def test_appended_row_passes(tmp_path):
    row = "TY_OP(ZZ_NEW, zz_new, elemw, 1, 1, none, 0, a, b, c)\n"
    rc, out = _check(_planted(tmp_path, lambda t: t + row))
    assert rc == 0, out


def _swap_first_two_rows(text):
    a, b = _frozen_names()[:2]
    pat = re.compile(rf"^(.*\b{a}\b.*)\n(.*\b{b}\b.*)$", re.M)
    return pat.sub(r"\2\n\1", text, count=1)


@pytest.mark.parametrize("edit, fragment", [
    (lambda t: re.sub(r"\bsoftplus\b", "soft_plus", t), "softplus"),
    (_swap_first_two_rows, "reordered"),
    (lambda t: re.sub(r"^.*\bsoftmax\b.*\n", "", t, count=1, flags=re.M), "softmax"),
], ids=["rename", "reorder", "remove"])
def test_planted_change_fails(tmp_path, edit, fragment):
    rc, out = _check(_planted(tmp_path, edit))
    assert rc != 0
    assert "check_op_names" in out and fragment in out, out
