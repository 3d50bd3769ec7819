"""Every op_db row deployed: traced with capture_as_const, written by trace.dump, run by the C
runtime (GraphInference), and compared bit for bit with eager (issue 9: "every op that can
appear in an inference graph has a test row run through dump + runtime and compared bitwise
with eager"). The ops the runtime ran are credited to the "deployed" coverage mode
(op_coverage.py) only after the comparison passed; NOT_DEPLOYED says which ops the writer
refuses, and this suite checks that it does."""
import io

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference

from .op_coverage import NOT_DEPLOYED
from .op_db import OP_DB
from .test_op_db import _as_tuple, _cast_inputs, _exact


def _dumped(fn, arrays, **kw):
    """fn traced over its tensor inputs (captured tensors become weights) and called once,
    and the GraphInference (one runtime session) of its .tym dump."""
    traced = trace(fn, capture_as_const=True)
    traced(*[_exact(a) for a in arrays])
    buf = io.BytesIO()
    traced.dump(buf, **kw)
    return GraphInference(buf.getvalue())


def _assert_bitwise(got, want, ctx):
    """Same count, dtypes, shapes and bytes (NaN payloads and signed zeros included)."""
    want = [w.numpy() for w in _as_tuple(want)]
    assert len(got) == len(want), f"{ctx}: {len(got)} outputs, eager gives {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        assert (g.dtype, g.shape) == (w.dtype, w.shape), \
            f"{ctx} output {k}: {g.dtype}{g.shape}, eager {w.dtype}{w.shape}"
        if g.tobytes() != w.tobytes():
            diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
            pytest.fail(f"{ctx} output {k}: bits differ, max |difference| {np.nanmax(diff)}")


def _fresh(arrays):
    """Other values of the same shapes and dtypes (each array reversed along axis 0)."""
    return [np.asarray(a)[::-1].copy() if np.asarray(a).ndim else a for a in arrays]


def _refused(info):
    return sorted(set(info.ops) & set(NOT_DEPLOYED))


@pytest.mark.parametrize("info", [i for i in OP_DB if not _refused(i)], ids=repr)
def test_deployed_is_bitwise_eager(info, rng, cov):
    """Per dtype of the row and sample: the model's outputs for the traced inputs and for
    fresh ones (so no input was baked in as a constant) equal eager's bits. Random ops draw
    from the seeded generator in both, so their streams must agree too."""
    ran = set()
    for dtype in info.dtypes:
        for sample in info.samples(rng):
            arrays = _cast_inputs(sample, dtype, info)
            fn = lambda *ts, _s=sample: info.fn(*ts, **_s.kwargs)  # noqa: E731
            # as dumped by default (constants folded), and unrewritten, where every op of the
            # row runs in the runtime (a row of constants only folds away entirely)
            models = [_dumped(fn, arrays), _dumped(fn, arrays, optimize_for_inference=False)]
            for call in range(2):
                if call:
                    arrays = _fresh(arrays)
                ty.random.seed(call)
                want = info.fn(*[_exact(a) for a in arrays], **sample.kwargs)
                for k, model in enumerate(models):
                    ty.random.seed(call)
                    with cov.ops_run() as ran_now:
                        got = list(model.run(*arrays).values())
                    _assert_bitwise(got, want, f"{info.name} {dtype} call {call} model {k} "
                                               f"{sample}")
                    ran |= ran_now
    cov.credit("deployed", ran)


def _batch_varies(model):
    return bool(model._inputs) and all(s and s[0] == -1 for _, _, s in model._inputs)


def _assert_declared(model, got, ctx):
    """Each output has the rank and fixed dimensions the model declares (-1: any size)."""
    for (name, _, shape), g in zip(model._outputs, got):
        assert len(g.shape) == len(shape) and all(d in (-1, e) for d, e in zip(shape, g.shape)), \
            f"{ctx}: output {name} has shape {g.shape}, the model declares {shape}"


@pytest.mark.parametrize("info", [i for i in OP_DB if not _refused(i)], ids=repr)
def test_deployed_at_another_batch_size_is_per_item_eager(info, rng):
    """Where the model lets the batch (dimension 0 of every input) vary, a batch of twice the
    traced size (the traced inputs, then fresh ones) gives, bit for bit, eager's outputs of the
    two halves laid one after the other (outputs declared fixed: the first half's), with the
    declared shapes."""
    for dtype in info.dtypes[:1]:
        for sample in info.samples(rng):
            arrays = _cast_inputs(sample, dtype, info)
            model = _dumped(lambda *ts, _s=sample: info.fn(*ts, **_s.kwargs), arrays)
            if not _batch_varies(model):
                continue
            halves = [arrays, _fresh(arrays)]
            eager = [[w.numpy() for w in _as_tuple(info.fn(*[_exact(a) for a in h],
                                                           **sample.kwargs))] for h in halves]
            got = list(model.run(*[np.concatenate(ab) for ab in zip(*halves)]).values())
            ctx = f"{info.name} {dtype} batch x2 {sample}"
            _assert_declared(model, got, ctx)
            want = [ty.tensor(np.concatenate([a, b]) if shape[:1] == (-1,) else a, dtype=a.dtype)
                    for (_, _, shape), a, b in zip(model._outputs, *eager)]
            _assert_bitwise(got, want, ctx)


def test_squeeze_of_every_unit_dimension_fixes_the_batch():
    """squeeze() without axes drops dimension 0 too at a batch of one item: the model must
    not let the batch vary (it declared (-1, 4) and returned shape (4,) at batch 1)."""
    for shape in [(3, 1, 4, 1), (1,)]:
        x = np.ones(shape, np.float32)
        model = _dumped(lambda t: F.squeeze(t), [x])
        assert not _batch_varies(model), f"squeeze() of {shape}: {model._inputs}"
        with pytest.raises(ValueError, match="arg_0"):
            model.run(np.ones((2,) + shape[1:], np.float32))


@pytest.mark.parametrize("info", [i for i in OP_DB if _refused(i)], ids=repr)
def test_refused_ops_are_refused_by_name(info, rng):
    """The exempt rows: trace.dump refuses each sample with an error naming the op."""
    for sample in info.samples(rng):
        arrays = _cast_inputs(sample, info.dtypes[0], info)
        with pytest.raises(NotImplementedError, match="|".join(_refused(info))):
            _dumped(lambda *ts, _s=sample: info.fn(*ts, **_s.kwargs), arrays)


def _write_then_read(x, v):
    y = F.copy(x)
    y._assign(v)
    return y + 1


def _write_through_a_view(x, v):
    y = F.copy(x)
    z = y.reshape(-1)
    y._assign(v)
    return z


@pytest.mark.parametrize("fn", [_write_then_read, _write_through_a_view])
def test_dump_refuses_a_write_that_a_later_read_sees(fn):
    """The output never names the assign's own result, yet its value depends on the write:
    the writer must not drop the assign (which gave eager's bits silently changed)."""
    x, v = np.zeros((2, 3), np.float32), np.ones((2, 3), np.float32)
    with pytest.raises(NotImplementedError, match="assign"):
        _dumped(fn, [x, v])


def test_a_write_no_output_sees_is_left_out():
    """An assign after the last read of its target changes no output: the model drops it."""
    def fn(x, v):
        y = F.copy(x)
        out = y * 2
        y._assign(v)
        return out
    x, v = np.arange(6, dtype=np.float32).reshape(2, 3), np.ones((2, 3), np.float32)
    got = list(_dumped(fn, [x, v]).run(x, v).values())
    _assert_bitwise(got, fn(_exact(x), _exact(v)), "assign after the last read")


def test_random_draws_are_the_eager_stream():
    """The raw draws (not a property of them) of the random ops, deployed, equal eager's for
    the same seed, and differ for another seed."""
    def fn():
        return (ty.random.uniform(-1.0, 2.0, size=(3, 5)), ty.random.normal(0.5, 3.0, size=(4,)),
                ty.random.permutation(9))
    model = _dumped(fn, [])
    for seed in (3, 4):
        ty.random.seed(seed)
        want = fn()
        ty.random.seed(seed)
        _assert_bitwise(list(model.run().values()), want, f"seed {seed}")
    ty.random.seed(3)
    first = list(model.run().values())
    assert not np.array_equal(first[0], list(model.run().values())[0])
