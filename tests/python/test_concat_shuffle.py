"""Concat and ShuffleNet's channel shuffle at batch 1: concat copies contiguous inputs in one
parallel region of fixed pieces (the same bits at any thread count, as NumPy), and trace.dump
turns concat -> reshape -> transpose (a channel shuffle) into one concat of expanded inputs,
with eager's bits at the dumped batch size and another one. Patterns that differ stay as they
are."""
import io

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace
from tianyuan.utils.comp_graph_tools import GraphInference

from _op_counts import op_counts


@pytest.fixture
def threads():
    saved = ty.get_num_threads()
    yield ty.set_num_threads
    ty.set_num_threads(saved)


def _x(shape, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


CASES = [
    # batch-1 channels: one row per input, many 4 KB pieces, several chunks (above the
    # 512 KB that one thread copies alone)
    ([(1, 80, 60, 60), (1, 81, 60, 60)], 1),
    # block edges inside pieces
    ([(3, 5000), (3, 3001)], 1),
    # more inputs than the kernel keeps on its stack, one of them empty
    ([(2, 97 + (i % 5) * (i != 7)) for i in range(20)], 1),
    ([(5, 7, 3), (2, 7, 3)], 0),
]


@pytest.mark.parametrize("shapes,axis", CASES)
def test_concat_matches_numpy_at_any_thread_count(shapes, axis, threads):
    xs = [_x(s, seed=i) for i, s in enumerate(shapes)]
    want = np.concatenate(xs, axis)
    for n in (1, 2, 3):
        threads(n)
        got = F.concat([ty.tensor(x) for x in xs], axis).numpy()
        assert got.tobytes() == want.tobytes(), n


def test_concat_of_strided_and_cast_inputs():
    a = _x((6, 50), seed=1)
    b = np.arange(48, dtype=np.int32).reshape(8, 6).T.copy()
    got = F.concat([ty.tensor(a)[:, ::2], ty.tensor(b).astype("float32")], 1).numpy()
    assert np.array_equal(got, np.concatenate([a[:, ::2], b.astype(np.float32)], 1))


def _shuffle(x, groups=2):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def _block(x):
    """A ShuffleNetV2 unit in miniature: split, a branch, concat, shuffle."""
    a, b = F.split(x, 2, axis=1)
    return _shuffle(F.concat([a, F.relu(b * 2 - 1)], 1))


def _dump(fn, x):
    f = trace(fn, symbolic=True, capture_as_const=True)
    f(ty.tensor(x))
    buf = io.BytesIO()
    f.dump(buf)
    return buf.getvalue()


def _run(data, x):
    counts, out = op_counts(lambda: GraphInference(data).run(x)["output_0"])
    return counts, np.asarray(out)


def test_dump_folds_the_shuffle_into_the_concat_with_eager_bits(threads):
    def net(x):
        return _block(_block(x))

    data = _dump(net, _x((1, 8, 5, 6), seed=0))
    for shape in ((1, 8, 5, 6), (3, 8, 5, 6)):  # the dumped batch and another one
        x = _x(shape, seed=shape[0])
        want = net(ty.tensor(x)).numpy()
        for n in (1, 2):
            threads(n)
            counts, got = _run(data, x)
            assert got.tobytes() == want.tobytes(), (shape, n)
            assert counts.get("transpose", 0) == 0 and counts.get("expand_dims") == 4, counts
            assert counts.get("concat") == 2


@pytest.mark.parametrize("variant", ["perm", "groups3", "reused"])
def test_dump_leaves_other_patterns_alone(variant):
    def net(x):
        a, b = F.split(x, 2, axis=1)
        y = F.concat([a, b * 3], 1)
        n, c, h, w = y.shape
        if variant == "perm":  # not the swap of the split axes
            return y.reshape(n, 2, c // 2, h, w).transpose(0, 1, 2, 4, 3).reshape(n, c, w, h)
        if variant == "groups3":  # three inputs
            return _shuffle(F.concat([a, b, a + b], 1)[:, :8], groups=2)
        return _shuffle(y) + y  # the concat is read twice

    x = _x((1, 8, 4, 6), seed=2)
    counts, got = _run(_dump(net, x), x)
    assert got.tobytes() == net(ty.tensor(x)).numpy().tobytes()
    assert counts.get("transpose") == 1 and counts.get("expand_dims", 0) == 0, counts
