"""The coverage measurement itself: the dispatcher hook counts only while on, an error is
credited only to the op whose dispatch raised it, and the report fails on a planted gap."""
import json

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

from . import op_coverage as oc


def test_hook_counts_the_ops_that_ran_and_nothing_when_off():
    x = ty.tensor(np.ones(3, np.float32))
    _C._coverage_start()
    F.exp(x + x)
    F.exp(x)
    counts = _C._coverage_counts()
    assert counts == {"add": 1, "exp": 2}
    assert _C._coverage_counts() == {}  # taking resets
    _C._coverage_stop()
    F.exp(x)
    assert _C._coverage_counts() == {}
    _C._coverage_start()  # the module's fixture expects it on


def test_error_is_credited_to_the_op_that_raised():
    rec = oc.Recorder()
    with pytest.raises(ValueError):
        with rec.error_case() as failed:
            F.add(ty.tensor([1.0, 2.0]), ty.tensor([1.0, 2.0, 3.0]))
    assert failed == ["add"]
    with pytest.raises(ValueError):
        with rec.error_case() as failed:
            raise ValueError("add: raised in Python, not by the dispatcher")
    assert failed == [None]


def _report(tmp_path, seen):
    (tmp_path / "w.json").write_text(json.dumps({m: sorted(s) for m, s in seen.items()}))
    return oc.main(["op_coverage", str(tmp_path)])


def test_report_passes_when_complete_and_fails_on_a_gap(tmp_path, capsys):
    need = oc.required({n: op.info for n, op in _C.ops.items()})
    assert _report(tmp_path, need) == 0
    need["gradgrad"].discard("sin")
    assert _report(tmp_path, need) == 1
    out = capsys.readouterr()
    assert "gradgrad: sin" in out.err
    assert any(ln.startswith("sin ") and "MISSING" in ln for ln in out.out.splitlines())
