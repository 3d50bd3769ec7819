"""Bad input never crashes (DESIGN.md promise 4): one test per kind of bad input, each checking
the exception type and that the message names the op that refused it."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan import _C

ops = _C.ops


def t23():
    return ty.tensor(np.arange(6, dtype=np.float32).reshape(2, 3))


def check(exc, names, fn):
    """fn() raises exc and its message contains every string of names."""
    with pytest.raises(exc) as info:
        fn()
    msg = str(info.value)
    for n in ([names] if isinstance(names, str) else names):
        assert n in msg, f"{n!r} not in {msg!r}"
    return msg


@pytest.fixture
def mem_limit():
    """Caps the allocator at 1 MiB above what is in use, and always removes the cap."""
    used = ty.get_mem_status_bytes()["allocated"]
    ty.set_memory_limit(used + (1 << 20))
    yield
    ty.set_memory_limit(0)
    assert ty.get_mem_status_bytes()["limit"] == 0


# ---- shape mismatch: ValueError ----
@pytest.mark.parametrize("name, fn", [
    ("add", lambda a, b: a + b),
    ("sub", lambda a, b: b - a),
    ("mul", lambda a, b: F.mul(a, b)),
    ("div", lambda a, b: a / b),
    ("maximum", lambda a, b: F.maximum(a, b)),
    ("less", lambda a, b: a < b),
    ("equal", lambda a, b: F.equal(a, b)),
    ("logical_and", lambda a, b: F.logical_and(a, b)),
    ("where", lambda a, b: F.where(a > 0, a, b)),
])
def test_shape_mismatch(name, fn):
    a, b = t23(), ty.tensor(np.ones(4, np.float32))
    msg = check(ValueError, [name, "(2, 3)", "(4,)"], lambda: fn(a, b))
    assert msg.startswith(name + ":")


def test_shape_mismatch_message_is_exact():
    check(ValueError, "add: shapes (2, 3) and (4,) cannot be broadcast together",
          lambda: t23() + ty.tensor([1.0, 2.0, 3.0, 4.0]))


def test_inplace_assign_shape_mismatch():
    x = t23()
    check(ValueError, ["(2, 3)", "(2,)"], lambda: x._assign(ty.tensor([1.0, 2.0])))
    assert x.numpy().sum() == 15  # unchanged


def test_inplace_assign_shape_mismatch_names_the_op():
    check(ValueError, "assign", lambda: t23()._assign(ty.tensor([1.0, 2.0])))


# ---- reshape ----
@pytest.mark.parametrize("shape, words", [
    ((4, 2), ["cannot reshape", "(2, 3)", "(4, 2)"]),
    ((-1, -1), ["only one dimension can be -1"]),
    ((-1, 4), ["cannot reshape"]),
    ((1,) * 9 + (6,), ["rank 10"]),
])
def test_bad_reshape(shape, words):
    check(ValueError, ["reshape"] + words, lambda: t23().reshape(shape))


def test_reshape_too_many_dims_in_param():
    check(ValueError, ["reshape", "shape", "max 16"], lambda: t23().reshape([1] * 17))


def test_bad_transpose_and_broadcast():
    check(ValueError, ["transpose", "invalid permutation"], lambda: t23().transpose(0, 0))
    check(ValueError, ["transpose", "2-d"], lambda: t23().transpose(1))
    check(ValueError, ["broadcast_to", "(2, 3)", "(3, 3)"], lambda: F.broadcast_to(t23(), (3, 3)))
    check(ValueError, ["squeeze", "size 2"], lambda: F.squeeze(t23(), 0))


# ---- axis out of range: IndexError (ty_norm_axis) ----
@pytest.mark.parametrize("name", ["sum", "mean", "prod", "max", "min"])
@pytest.mark.parametrize("axis", [2, -3, 100])
def test_reduce_axis_out_of_range(name, axis):
    # beyond any rank the dispatcher's range check answers; within it the family names the rank
    frag = "[-8, 7]" if axis == 100 else "2-d"
    check(IndexError, [name, f"axis {axis}", frag], lambda: getattr(F, name)(t23(), axis=axis))


@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_argreduce_axis_out_of_range(name):
    check(IndexError, [name, "axis 2"], lambda: getattr(F, name)(t23(), axis=2))


def test_expand_squeeze_axis_out_of_range():
    check(IndexError, ["expand_dims", "axis 5"], lambda: F.expand_dims(t23(), 5))
    check(IndexError, ["squeeze", "axis -4"], lambda: F.squeeze(t23(), -4))


def test_repeated_reduce_axis():
    check(ValueError, ["sum", "repeated axis"], lambda: F.sum(t23(), axis=(1, -1)))


def test_reduce_over_empty_axis_without_identity():
    e = ty.tensor(np.zeros((0, 3), np.float32))
    check(ValueError, ["max", "empty"], lambda: F.max(e, axis=0))
    check(ValueError, ["argmin", "empty"], lambda: F.argmin(e, axis=0))
    assert F.sum(e, axis=0).numpy().tolist() == [0.0, 0.0, 0.0]


# ---- indexing: IndexError ----
@pytest.mark.parametrize("key, words", [
    (5, ["index 5", "axis 0", "size 2"]),
    (-3, ["index -3", "axis 0"]),
    ((0, 7), ["index 7", "axis 1", "size 3"]),
    ((0, 0, 0), ["too many indices"]),
    ([0, 2], ["index 2", "axis 0"]),
    ((slice(None), [3]), ["index 3", "axis 1"]),
])
def test_getitem_out_of_range(key, words):
    check(IndexError, words, lambda: t23()[key])


def test_setitem_out_of_range():
    x = t23()
    check(IndexError, ["index 9"], lambda: x.__setitem__(9, 1.0))
    assert x.numpy().sum() == 15  # unchanged


def test_slice_op_out_of_bounds():
    check(IndexError, ["slice", "out of bounds"],
          lambda: ops["slice"](t23(), starts=[2, 0], stops=[5, 3], steps=[1, 1]))
    # a forward stop past the end is the end, as in Python
    assert ops["slice"](t23(), starts=[0, 0], stops=[5, 3], steps=[1, 1]).shape == (2, 3)
    check(ValueError, ["slice", "step cannot be zero"],
          lambda: ops["slice"](t23(), starts=[0, 0], stops=[2, 3], steps=[1, 0]))
    check(ValueError, ["slice", "per dim"],
          lambda: ops["slice"](t23(), starts=[0], stops=[2], steps=[1]))


def test_bad_index_types():
    check(IndexError, ["float"], lambda: t23()[np.array([0.5])])
    check(IndexError, ["ellipsis"], lambda: t23()[..., ...])
    check(ValueError, ["step"], lambda: t23()[::0])


# ---- negative sizes ----
def test_negative_sizes():
    check(ValueError, ["reshape", "negative dimension", "(-2, 3)"], lambda: t23().reshape(-2, 3))
    check(ValueError, ["broadcast_to", "(-1, 3)"], lambda: F.broadcast_to(t23(), (-1, 3)))


def test_negative_size_in_full():
    check(ValueError, ["fill", "negative dimension", "(-1, 2)"], lambda: F.full((-1, 2), 0.0))


# ---- huge allocations: MemoryError with sizes ----
def test_huge_elementwise_result(mem_limit):
    big = F.broadcast_to(ty.tensor([1.0]), (1 << 16, 1 << 16))  # a view: allocates nothing
    msg = check(MemoryError, ["add", "out of memory", str(1 << 34), "limit"], lambda: big + 1)
    assert msg.startswith("add:")
    check(MemoryError, ["copy", "out of memory"], lambda: F.copy(big))
    # a small allocation still works under the cap
    assert (ty.tensor([1.0, 2.0]) + 1).numpy().tolist() == [2.0, 3.0]


def test_huge_full(mem_limit):
    check(MemoryError, ["fill", "out of memory", str(4 << 40)], lambda: F.full((1 << 40,), 0))
    check(MemoryError, ["fill", "out of memory"], lambda: F.zeros((1 << 20, 1 << 20)))


def test_huge_reshape_copy(mem_limit):
    # (2, 2**20) with strides (1, 0): a view no reshape can flatten without a copy
    big = F.broadcast_to(ty.tensor([[1.0, 2.0]]), (1 << 20, 2)).T
    check(MemoryError, ["reshape", "out of memory"], lambda: big.reshape(-1))


def test_too_many_elements_without_a_limit():
    check(MemoryError, ["broadcast_to", "too many elements"],
          lambda: F.broadcast_to(ty.tensor([1.0]), (1 << 30, 1 << 30)))
    big = F.broadcast_to(ty.tensor([1.0]), (1 << 28, 1 << 27))  # a view: no memory yet
    check(MemoryError, ["copy", "out of memory"], lambda: F.copy(big))


def test_memory_limit_is_reset_after_failure(mem_limit):
    with pytest.raises(MemoryError):
        F.copy(F.broadcast_to(ty.tensor([1.0]), (1 << 24,)))
    ty.set_memory_limit(0)
    assert F.copy(F.broadcast_to(ty.tensor([1.0]), (1 << 20,))).shape == (1 << 20,)


def test_broadcast_to_overflowing_shape_is_refused():
    with pytest.raises((ValueError, MemoryError)) as info:
        F.broadcast_to(ty.tensor([1.0]), (1 << 40, 1 << 40))
    assert "broadcast_to" in str(info.value)


# ---- dtypes ----
def test_invalid_dtype_code_for_astype():
    check(TypeError, ["astype", "invalid dtype code 99"], lambda: ops["astype"](t23(), dtype=99))
    check(TypeError, ["complex64"], lambda: t23().astype("complex64"))


def test_attach_needs_a_float_tensor():
    check(TypeError, ["attach", "int32"], lambda: _C.attach(ty.tensor([1, 2])))
    gm = ty.autodiff.GradManager()
    check(TypeError, ["attach", "int32"], lambda: gm.attach(ty.tensor([1, 2])))


def test_unsupported_data_dtypes():
    check(TypeError, ["dtype <U3"], lambda: ty.Tensor("abc"))
    check(TypeError, ["dtype object"], lambda: ty.Tensor([object()]))
    check(TypeError, ["complex128"], lambda: ty.Tensor(np.ones(2, np.complex128)))


def test_documented_dtype_rules_for_math_on_ints_and_bools():
    # RELIABILITY N5: every elementwise op accepts every dtype; float math on ints or bools
    # computes in float32, arithmetic on bools in int32 -- never an error, never a crash --
    # except that the integer-only ops (shifts) raise a TypeError naming the op on floats.
    b = ty.tensor([True, False])
    assert F.exp(b).dtype == np.float32
    assert F.exp(b).numpy().tolist() == pytest.approx([np.e, 1.0])
    assert (-b).dtype == np.int32
    assert (b - b).dtype == np.int32
    assert F.sqrt(ty.tensor([4, 9])).dtype == np.float32
    for name, op in ops.items():
        info = op.info
        if info["params"] != "none" or info["nin"] not in (1, 2):
            continue
        for dt in ("float32", "float16", "bfloat16", "int8", "uint8", "int64", "bool"):
            x = ty.tensor([1, 0], dtype=dt)
            if name in INTEGER_ONLY and dt in ("float32", "float16", "bfloat16"):
                check(TypeError, [name, dt], lambda: op(*([x] * info["nin"])))
                continue
            op(*([x] * info["nin"]))  # must not raise


INTEGER_ONLY = {"left_shift", "right_shift"}


# ---- wrong argument types ----
@pytest.mark.parametrize("bad", ["x", None, object(), {"a": 1}])
def test_wrong_argument_types(bad):
    a = t23()
    with pytest.raises(TypeError):
        F.add(a, bad)
    with pytest.raises(TypeError):
        a * bad


def test_wrong_argument_type_names_the_op():
    check(TypeError, "add", lambda: ops["add"](t23(), "x"))


@pytest.mark.parametrize("call, words", [
    (lambda a: ops["sum"](a, axes="x"), ["sum", "axes", "ints"]),
    (lambda a: ops["sum"](a, axes=[0.5]), ["sum", "axes", "ints"]),
    (lambda a: ops["leaky_relu"](a, negative_slope="x"), ["leaky_relu", "negative_slope"]),
    (lambda a: ops["reshape"](a, shape=[1.5, 4]), ["reshape", "shape"]),
    (lambda a: ops["argmax"](a, axis=None), ["argmax", "axis", "int"]),
    (lambda a: ops["transpose"](a, perm=object()), ["transpose", "perm"]),
])
def test_wrong_param_types(call, words):
    check(TypeError, words, lambda: call(t23()))


def test_wrong_arity():
    a = t23()
    check(ValueError, ["add", "expected 2 inputs, got 1"], lambda: ops["add"](a))
    check(ValueError, ["neg", "expected 1 inputs, got 0"], lambda: ops["neg"]())
    check(ValueError, ["add", "expected 1 outputs, got 3"], lambda: ops["add"](a, a, _nout=3))
    check(ValueError, ["add", "outputs"], lambda: ops["add"](a, a, _nout=-1))
    with pytest.raises(ValueError):
        ops["add"](a, a, _nout=1000)


# ---- unknown op params ----
@pytest.mark.parametrize("name, args", [("add", 2), ("sum", 1), ("reshape", 1), ("exp", 1)])
def test_unknown_param(name, args):
    a = t23()
    check(TypeError, [f"{name}()", "unexpected parameter 'bogus'"],
          lambda: ops[name](*([a] * args), bogus=1))


def test_unknown_keyword_to_functional():
    with pytest.raises(TypeError):
        F.sum(t23(), bogus=1)


# ---- scalars, lengths, autodiff misuse ----
def test_scalar_conversions_of_non_scalars():
    check(ValueError, ["one element", "6"], lambda: t23().item())
    check(ValueError, ["one element"], lambda: bool(t23()))
    check(ValueError, ["one element"], lambda: float(t23()))
    check(TypeError, ["0-d"], lambda: len(ty.tensor(1.0)))
    check(TypeError, ["0-d"], lambda: iter(ty.tensor(1.0)).__next__())
    check(TypeError, ["integer"], lambda: [1, 2][ty.tensor(1.0)])


def test_too_many_dims_from_data():
    check(ValueError, ["tensor", "9 dims"], lambda: ty.Tensor(np.zeros((1,) * 9, np.float32)))


def test_backward_misuse():
    x = ty.Parameter([1.0, 2.0])
    gm = ty.autodiff.GradManager().attach(x)
    check(RuntimeError, ["no recording"], lambda: gm.backward((x * x).sum()))
    with gm:
        y = x * x
        check(ValueError, ["backward", "(3,)", "(2,)"],
              lambda: _C.backward([y], [ty.tensor([1.0, 1.0, 1.0])], [x]))
    check(TypeError, ["attach expects Tensors"], lambda: gm.attach([1.0]))
    check(ValueError, ["one dy"], lambda: _C.backward([x], [], [x]))


def run_isolated(code):
    """Runs code in a fresh interpreter (for inputs that crash today); returns the result."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "python"), PYTHONMALLOC="debug")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)


def test_backward_with_non_tensor_ys_does_not_crash():
    r = run_isolated(
        "import tianyuan as ty\n"
        "from tianyuan import _C\n"
        "x = ty.Parameter([1.0])\n"
        "for _ in range(200):\n"
        "    try:\n"
        "        _C.backward([1.0], [None], [x])\n"
        "    except TypeError as e:\n"
        "        assert 'Tensor' in str(e)\n"
        "    else:\n"
        "        raise SystemExit(3)\n"
        "[ty.tensor([float(i)]) * 2 for i in range(2000)]\n")
    assert r.returncode == 0, r.stderr[-2000:]


def test_second_backward_without_retain_graph():
    x = ty.Parameter([3.0])
    _C.attach(x)
    _C.set_recording(True)
    try:
        y = x * x
    finally:
        _C.set_recording(False)
    (g,) = _C.backward([y], [None], [x])
    assert g.numpy().tolist() == [6.0]
    check(ValueError, ["retain_graph"], lambda: _C.backward([y], [None], [x]))


def test_custom_function_backward_errors_are_reported():
    class Bad(ty.autodiff.Function):
        def forward(self, x):
            return x * 2

        def backward(self, dy):
            raise KeyError("boom")

    x = ty.Parameter([1.0])
    gm = ty.autodiff.GradManager().attach(x)
    with pytest.raises(ValueError) as info:
        with gm:
            gm.backward(Bad()(x))
    assert "boom" in str(info.value) and "Function" in str(info.value)
    assert not gm.is_recording()


def test_the_suite_runs_on_the_package_it_was_pointed_at():
    """make test-py-asan runs this suite on a sanitizer build of the extension in a copy of
    the package (TY_PYTHON_DIR): the tests must import that copy, not python/."""
    import os
    want = os.environ.get("TY_PYTHON_DIR")
    if want:
        assert os.path.realpath(ty.__file__).startswith(os.path.realpath(want))
    else:
        assert os.path.basename(os.path.dirname(os.path.dirname(ty.__file__))) == "python"
