"""The functional wrappers generated from the op table (python/tianyuan/functional/_table.py)."""
import importlib
import inspect

import numpy as np
import pytest

import tianyuan as ty
from tianyuan import _C
from tianyuan.functional import _table

HOMED = sorted(n for n, op in _C.ops.items() if op.info["home"] not in (None, "internal"))


def test_rows_with_a_home_have_a_doc_and_a_known_module():
    assert {"sin", "add", "equal", "relu", "softplus"} <= set(HOMED)
    for n in HOMED:
        info = _C.ops[n].info
        assert info["doc"] and "\n" not in info["doc"], n
        assert info["family"] == "elemw", n


@pytest.mark.parametrize("name", HOMED)
def test_every_homed_row_is_exported_from_its_module(name):
    mod = importlib.import_module("tianyuan.functional." + _C.ops[name].info["home"])
    assert name in mod.__all__
    f = getattr(mod, name)
    assert getattr(importlib.import_module("tianyuan.functional"), name) is f
    params = list(inspect.signature(f).parameters)
    assert len(params) >= _C.ops[name].info["nin"]


def test_internal_rows_are_not_exported():
    assert _C.ops["relu_backward"].info["home"] == "internal"
    assert not hasattr(importlib.import_module("tianyuan.functional"), "relu_backward")


def test_generated_wrapper_takes_the_rows_params_with_their_defaults():
    f = _table.wrapper("leaky_relu", __name__)
    sig = inspect.signature(f)
    assert list(sig.parameters) == ["x", "negative_slope"]
    assert sig.parameters["negative_slope"].default == 0.01
    assert f.__doc__ == _C.ops["leaky_relu"].info["doc"]
    x = np.array([-2.0, 3.0], dtype=np.float32)
    np.testing.assert_array_equal(f(ty.tensor(x)).numpy(), np.float32([-0.02, 3.0]))
    np.testing.assert_array_equal(f(ty.tensor(x), negative_slope=0.5).numpy(), [-1.0, 3.0])
    with pytest.raises(TypeError, match="negative_slope"):
        f(ty.tensor(x), negative_slope="steep")


def test_generated_binary_wrapper_matches_numpy_and_names_its_op_on_error():
    F = importlib.import_module("tianyuan.functional")
    a, b = np.arange(6.0).reshape(2, 3), np.array([1.0, 2.0, 4.0])
    np.testing.assert_array_equal(F.sub(ty.tensor(a), ty.tensor(b)).numpy(), a - b)
    assert list(inspect.signature(F.sub).parameters) == ["x", "y"]
    with pytest.raises(ValueError, match="sub"):
        F.sub(ty.tensor(np.zeros((2, 3))), ty.tensor(np.zeros((4,))))
