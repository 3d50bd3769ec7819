"""trace(symbolic=True): the first call records without computing (values are computed
when the call ends, as one compiled graph), reading a value inside it raises TraceError, and
every call gives the eager bits. The op table and the random-program property tests run
symbolic traces as well (tests/python/ops/test_op_db.py, test_trace_property.py)."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import TraceError, exclude_from_trace, trace


def test_ops_inside_a_symbolic_recording_have_no_values_yet():
    seen = []

    @trace(symbolic=True)
    def f(x):
        y = F.exp(x) * 2
        with pytest.raises(TraceError, match="unreadable"):
            y.numpy()
        with pytest.raises(TraceError, match="unreadable"):
            float(y.sum())
        seen.append(y.shape)
        return y + 1

    x = np.array([0.5, -1.0, 2.0], dtype="float32")
    want = (np.exp(x) * 2 + 1).astype("float32")
    out = f(ty.tensor(x))  # the checks above ran while recording
    assert seen == [(3,)]
    np.testing.assert_array_equal(out.numpy(), F.exp(ty.tensor(x)).numpy() * 2 + 1)
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-6)


def test_symbolic_first_call_is_planned_in_an_arena():
    def body(x):
        a = F.relu(x @ x)
        b = F.exp(a) * a - 1
        return F.sum(b * b)

    x = ty.tensor(np.random.default_rng(0).standard_normal((16, 16)).astype("float32"))
    computed, symbolic = trace(body), trace(body, symbolic=True)
    np.testing.assert_array_equal(computed(x).numpy(), symbolic(x).numpy())
    assert computed.pass_stats()[0]["arena_bytes"] == 0  # the recording call ran eagerly
    assert symbolic.pass_stats()[0]["arena_bytes"] > 0   # it ran as the compiled graph
    for _ in range(2):
        np.testing.assert_array_equal(computed(x).numpy(), symbolic(x).numpy())


def test_tensors_kept_from_the_recording_get_their_values():
    kept = []

    @trace(symbolic=True)
    def f(x):
        y = x * 3
        kept.append(y)       # held by Python: computed when the call ends
        kept.append(y[1:])   # a view of it
        return x + 1

    f(ty.tensor([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(kept[0].numpy(), [3.0, 6.0, 9.0])
    np.testing.assert_array_equal(kept[1].numpy(), [6.0, 9.0])


def test_data_dependent_shapes_cannot_be_traced_symbolically():
    @trace(symbolic=True)
    def f(x):
        return F.cond_take(x > 0, x)[0]

    with pytest.raises(TraceError, match="cond_take.*symbolic"):
        f(ty.tensor([1.0, -1.0]))


def test_a_failed_symbolic_recording_leaves_no_half_made_values():
    leaked = []

    @trace(symbolic=True)
    def f(x):
        y = x * 2
        leaked.append(y)
        y.numpy()  # raises: nothing is computed while recording
        return y

    with pytest.raises(TraceError):
        f(ty.tensor([1.0]))
    # the tensor never got a value: using it raises instead of reading garbage
    with pytest.raises(TraceError, match="unreadable"):
        leaked[0].numpy()
    with pytest.raises(TraceError, match="unreadable"):
        leaked[0] + 1
    # nothing was cached: the next call records again (and fails the same way)
    assert not f._graphs
    with pytest.raises(TraceError):
        f(ty.tensor([1.0]))


def test_exclude_from_trace_computes_what_it_can():
    @trace(symbolic=True)
    def f(x):
        with exclude_from_trace():
            c = ty.tensor([10.0]) * 2       # made and computed outside the trace
        y = x * c
        with exclude_from_trace():
            with pytest.raises(TraceError, match="unreadable"):
                y.numpy()                   # y is still symbolic
        return y

    for v in (1.0, 2.0, 3.0):
        assert f(ty.tensor([v])).item() == 20.0 * v


def test_symbolic_replays_check_like_computed_ones():
    flip = [False]

    @trace(symbolic=True)
    def f(x):
        return F.exp(x) if flip[0] else F.log(x)

    f(ty.tensor([1.0]))
    assert f(ty.tensor([1.0])).item() == 0.0
    flip[0] = True
    with pytest.raises(TraceError, match="operator mismatch: expected log, got exp"):
        f(ty.tensor([1.0]))


@pytest.mark.parametrize("symbolic", [False, True])
def test_indexing_with_computed_indices_inside_a_trace(symbolic):
    """x[idx] with an integer tensor is one gather op: a traced function may index with
    indices it computes (argmax, arithmetic), which cannot be read while tracing."""
    @trace(symbolic=symbolic)
    def f(x, table):
        idx = F.argmax(x, axis=1)              # computed: unreadable inside the trace
        t = table * 1
        t[idx] = 0.0                           # and written through
        return table[idx], table[idx - 1], t   # negative indices wrap as in numpy

    rng = np.random.default_rng(0)
    table = rng.standard_normal((5, 3)).astype("float32")
    for _ in range(3):
        x = rng.standard_normal((4, 5)).astype("float32")
        a, b, t = f(ty.tensor(x), ty.tensor(table))
        i = x.argmax(1)
        np.testing.assert_array_equal(a.numpy(), table[i])
        np.testing.assert_array_equal(b.numpy(), table[i - 1])
        want = table.copy()
        want[i] = 0.0
        np.testing.assert_array_equal(t.numpy(), want)


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "int32", "int64"])
def test_integer_tensor_index_matches_numpy(dtype):
    x = np.arange(24, dtype="float32").reshape(6, 4)
    idx = np.array([[0, 5], [2, 1]], dtype=dtype)
    np.testing.assert_array_equal(ty.tensor(x)[ty.tensor(idx)].numpy(), x[idx])
    y, want = ty.tensor(x), x.copy()
    y[ty.tensor(idx)] = ty.tensor(np.full((2, 2, 4), -1.0, dtype="float32"))
    want[idx] = -1.0
    np.testing.assert_array_equal(y.numpy(), want)
    with pytest.raises(IndexError, match="out of bounds"):
        ty.tensor(x)[ty.tensor(np.array([6], dtype=dtype))]
