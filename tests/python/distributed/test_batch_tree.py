"""Deterministic mode's batch sums (src/ops/batch_tree.h), in one process: gradients sum over
the batch in a pairwise tree over the batch index, so the gradient of a whole batch is,
bit for bit, the same tree over its contiguous slices' gradients (what data-parallel ranks
and the deterministic all-reduce compute). Off, the usual kernels run."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan import config
from tianyuan.autodiff import GradManager
from tianyuan.jit import trace


@pytest.fixture
def deterministic():
    was = config.deterministic_kernel
    config.deterministic_kernel = True
    yield
    config.deterministic_kernel = was


def _tree(values):
    """numpy's float32 pairwise tree: adjacent pairs, an odd last one carried up."""
    level = [np.asarray(v, np.float32) for v in values]
    while len(level) > 1:
        pairs = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        level = pairs + level[len(level) - len(level) % 2:]
    return level[0]


class Small(M.Module):
    """conv (bias) -> relu -> linear (bias): every kind of batch sum the reference CNN has."""

    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(2, 3, 3, padding=1)
        self.fc = M.Linear(3 * 6 * 6, 5)

    def forward(self, x):
        return self.fc(F.flatten(F.relu(self.conv(x)), 1))


def _grads(model, x, y, traced=False):
    gm = GradManager().attach(model.parameters())

    def step(x, y):
        with gm:
            loss = F.nn.cross_entropy(model(x), y, reduction="sum")
            gm.backward(loss)
        return [p.grad for p in model.parameters()]

    def run(f):
        out = [np.asarray(g).copy() for g in f(ty.tensor(x), ty.tensor(y))]
        for p in model.parameters():
            p.grad = None
        return out

    if traced:
        step = trace(step)
        run(step)                                 # the recording run; then a replay
    return run(step)


def _data(n):
    rng = np.random.default_rng(3)
    return (rng.standard_normal((n, 2, 6, 6)).astype(np.float32),
            rng.integers(0, 5, size=n).astype(np.int32))


@pytest.mark.parametrize("parts", [2, 4, 8])
def test_batch_gradient_is_the_tree_of_its_slices(deterministic, parts):
    ty.random.seed(1)
    model = Small()
    x, y = _data(8)
    whole = _grads(model, x, y)
    step = 8 // parts
    sliced = [_grads(model, x[i:i + step], y[i:i + step]) for i in range(0, 8, step)]
    for k, w in enumerate(whole):
        got = _tree([s[k] for s in sliced])
        assert np.array_equal(got, w), f"parameter {k}: the slices' tree differs"


def test_default_mode_sums_otherwise_and_both_are_close(deterministic):
    ty.random.seed(1)
    model = Small()
    x, y = _data(8)
    tree = _grads(model, x, y)
    config.deterministic_kernel = False
    fast = _grads(model, x, y)
    for t, f in zip(tree, fast):
        np.testing.assert_allclose(t, f, rtol=1e-5, atol=1e-6)
    # the fast kernels sum differently: some weight gradient's bits differ
    assert any(not np.array_equal(t, f) for t, f in zip(tree, fast))


def test_traced_gradients_equal_eager(deterministic):
    ty.random.seed(1)
    model = Small()
    x, y = _data(8)
    eager = _grads(model, x, y)
    traced = _grads(model, x, y, traced=True)
    for e, t in zip(eager, traced):
        assert np.array_equal(e, t)


@pytest.mark.parametrize("n", [1, 3, 5, 6, 7])
def test_bias_gradient_tree_over_any_batch(deterministic, n):
    """A broadcast bias's gradient is the tree over rows (odd ones carried up), and a linear
    weight's gradient is the tree over rows of exact outer products."""
    rng = np.random.default_rng(n)
    c = (rng.standard_normal((n, 4)) * 1e3 ** rng.standard_normal((n, 4))).astype(np.float32)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    b = ty.Parameter(np.zeros(4, np.float32))
    w = ty.Parameter(np.zeros((4, 3), np.float32))
    gm = GradManager().attach([b, w])
    with gm:
        out = F.linear(ty.tensor(x), w, b)
        gm.backward((out * ty.tensor(c)).sum())
    assert np.array_equal(np.asarray(b.grad), _tree(c))
    assert np.array_equal(np.asarray(w.grad), _tree([np.outer(c[i], x[i]) for i in range(n)]))
