"""Graph passes of jit.trace (dead code, CSE, constant folding, elementwise fusion): each
fires where expected and replays stay bitwise equal to eager execution."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
from tianyuan.jit import trace

from test_trace import _train


def _stats(f):
    (s,) = f.pass_stats()
    return s


def _check_calls(fn, tf, make_args, calls=4):
    rng = np.random.default_rng(0)
    for _ in range(calls):
        args = [ty.tensor(a) for a in make_args(rng)]
        want, got = fn(*args), tf(*args)
        np.testing.assert_array_equal(got.numpy(), want.numpy())


@pytest.mark.parametrize("without_host", [False, True])
@pytest.mark.parametrize("shape", [(7,), (3, 10001), (2, 8192)])
def test_elementwise_chain_is_one_fused_group(shape, without_host):
    def f(x, y):
        return F.relu(x * 2 + y) - 1

    tf = trace(f, without_host=without_host)
    _check_calls(f, tf, lambda r: [r.standard_normal(shape).astype("float32"),
                                   r.standard_normal(shape).astype("float32")])
    s = _stats(tf)
    assert (s["fused_groups"], s["fused_nodes"], s["executed"]) == (1, 4, 4)
    assert s["arena_bytes"] == 0  # intermediates live in scratch blocks


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
def test_fused_transcendentals_are_bitwise_eager(dtype):
    def f(x, y):
        a = F.exp(F.tanh(x) * 0.5)
        b = F.log(F.abs(y) + 1e-3) - F.sigmoid(a)
        return F.sqrt(F.maximum(a * b, 0.25)) / (b * b + 1)

    tf = trace(f, without_host=True)
    _check_calls(f, tf, lambda r: [(r.standard_normal((5, 3001)) * 2).astype(dtype),
                                   r.standard_normal((5, 3001)).astype(dtype)])
    assert _stats(tf)["fused_groups"] >= 1


def test_fusion_with_a_non_contiguous_input_falls_back():
    def f(x, y):
        return (x + y) * 3 - y

    tf = trace(f)
    rng = np.random.default_rng(0)
    for call in range(3):
        x = ty.tensor(rng.standard_normal((64, 64)).astype("float32"))
        y = ty.tensor(rng.standard_normal((64, 64)).astype("float32"))
        if call:
            x = x.transpose(1, 0)  # same shape and dtype: replays the same graph
        np.testing.assert_array_equal(tf(x, y).numpy(), f(x, y).numpy())
    assert _stats(tf)["fused_groups"] == 1


def test_dead_nodes_are_skipped_unless_held():
    held = []

    def f(x):
        y = F.sin(x) * 3  # unused: dead
        held.append(y)
        return F.exp(x)

    tf = trace(f, without_host=True)
    x = ty.tensor(np.arange(6, dtype="float32"))
    for _ in range(3):
        np.testing.assert_array_equal(tf(x).numpy(), f(x).numpy())
    assert _stats(tf)["dead"] == 2

    tm = trace(f)  # matching mode: Python holds y, so it is computed
    for v in (1.0, 2.0, 3.0):
        held.clear()
        x = ty.tensor(np.full(6, v, "float32"))
        tm(x)
        np.testing.assert_array_equal(held[0].numpy(), (F.sin(x) * 3).numpy())
    assert _stats(tm)["dead"] == 0


def test_random_ops_are_never_dead_or_merged():
    def f(x):
        ty.random.normal(size=(4,))  # unused, but the generator stream must advance
        a = ty.random.normal(size=(4,))
        b = ty.random.normal(size=(4,))
        return x + a - b

    tf = trace(f, without_host=True)
    for call in range(3):
        x = ty.tensor(np.zeros(4, "float32"))
        ty.random.seed(call)
        want = f(x).numpy()
        ty.random.seed(call)
        np.testing.assert_array_equal(tf(x).numpy(), want)
    s = _stats(tf)
    assert s["cse"] == 0 and s["dead"] == 0


def test_common_subexpressions_compute_once():
    def f(x):
        return F.exp(x) * F.exp(x) + F.exp(x)

    tf = trace(f)
    _check_calls(f, tf, lambda r: [r.standard_normal(100).astype("float32")])
    assert _stats(tf)["cse"] == 2


def test_cse_does_not_merge_across_an_inplace_write():
    w = ty.tensor([1.0, 2.0])

    def f(x):
        a = w * 2
        w._assign(w + x)
        b = w * 2
        return a + b

    tf = trace(f, without_host=True)
    x = ty.tensor([1.0, 1.0])
    tf(x)  # records: w -> [2, 3]
    out = tf(x)  # a = [4, 6], w -> [3, 4], b = [6, 8]
    np.testing.assert_array_equal(out.numpy(), [10.0, 14.0])
    assert _stats(tf)["cse"] == 0


@pytest.mark.parametrize("without_host", [False, True])
def test_constants_are_folded(without_host):
    def f(x):
        c = F.exp(F.ones((5,)) * 3)
        return x * c

    tf = trace(f, without_host=without_host)
    _check_calls(f, tf, lambda r: [r.standard_normal(5).astype("float32")])
    s = _stats(tf)
    assert s["folded"] == 3 and s["executed"] == 1


def test_folded_values_are_not_returned_as_shared_constants():
    def f(x):
        return x + 1, F.ones((3,)) * 2

    tf = trace(f)
    for _ in range(3):
        a, b = tf(ty.tensor([1.0, 2.0, 3.0]))
        np.testing.assert_array_equal(b.numpy(), [2.0, 2.0, 2.0])
        b._assign(ty.tensor([9.0, 9.0, 9.0]))  # must not change the next call's result


@pytest.mark.parametrize("without_host", [False, True])
def test_training_step_with_passes_is_bitwise_eager(without_host):
    le, se = _train(False, lr=0.1, momentum=0.9)
    lt, st = _train(True, without_host=without_host, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(le, lt)
    for k in se:
        np.testing.assert_array_equal(se[k], st[k], err_msg=k)


def test_training_step_passes_fire():
    import test_trace
    graphs = []
    real = test_trace.trace

    def keep(*a, **k):
        t = real(*a, **k)
        graphs.append(t)
        return t

    test_trace.trace = keep
    try:
        test_trace._train(True, steps=3, lr=0.1, momentum=0.9)
    finally:
        test_trace.trace = real
    s = _stats(graphs[0])
    assert s["fused_groups"] >= 1 and s["executed"] < s["nodes"]


@pytest.mark.parametrize("without_host", [False, True])
@pytest.mark.parametrize("passes", ["31", "15"], ids=["forwarding", "no-forwarding"])
def test_optimizer_updates_are_computed_in_place(passes, without_host, monkeypatch):
    """Assign forwarding: the SGD update's `p - lr * v` and `v * m + g` are written straight
    into p and v (2 per parameter), with the eager bits; TY_TRACE_PASSES without 16 copies."""
    import test_trace
    monkeypatch.setenv("TY_TRACE_PASSES", passes)
    graphs = []
    real = test_trace.trace

    def keep(*a, **k):
        graphs.append(real(*a, **k))
        return graphs[-1]

    monkeypatch.setattr(test_trace, "trace", keep)
    le, se = _train(False, lr=0.1, momentum=0.9)
    lt, st = test_trace._train(True, without_host=without_host, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(le, lt)
    for k in se:
        assert se[k].tobytes() == st[k].tobytes(), k
    nparams = sum(1 for k in se if "running" not in k and "num_batches" not in k)
    assert _stats(graphs[0])["forwarded"] == (2 * nparams if passes == "31" else 0)


def _forwarded_vs_eager(body, make_args, calls=3):
    """Runs body eagerly and traced on copies of one external; returns the forwarded count."""
    rng = np.random.default_rng(0)
    init = rng.standard_normal((4, 4)).astype("float32")
    pe, pt = ty.tensor(init), ty.tensor(init)
    tf = trace(lambda *a: body(pt, *a))
    for call in range(calls):
        args = [ty.tensor(a) for a in make_args(rng)]
        want, got = body(pe, *args), tf(*args)
        assert got.numpy().tobytes() == want.numpy().tobytes(), f"call {call} output"
        assert pt.numpy().tobytes() == pe.numpy().tobytes(), f"call {call} external"
    return _stats(tf)["forwarded"]


def test_assign_forwarding_fires_only_where_old_values_are_not_read_after():
    def plain(p, x):        # elementwise update reading p at the same elements
        p._assign(p * 0.5 + x)
        return x * 1

    def read_between(p, x):  # y reads p between the update's computation and the assign
        new = p * 0.5 + x
        y = p * 3
        p._assign(new)
        return y

    def transposed(p, x):    # the producer reads p through another layout
        p._assign(p.T * 0.5 + x)
        return x * 1

    def matmul_reads(p, x):  # a non-elementwise producer reading p
        p._assign(p @ x)
        return x * 1

    def matmul_fresh(p, x):  # a non-elementwise producer not reading p
        p._assign(x @ x)
        return x * 1

    def src_used_again(p, x):  # the computed value is also returned
        new = p * 0.5 + x
        p._assign(new)
        return new

    args = lambda r: [r.standard_normal((4, 4)).astype("float32")]  # noqa: E731
    assert _forwarded_vs_eager(plain, args) == 1
    assert _forwarded_vs_eager(read_between, args) == 0
    assert _forwarded_vs_eager(transposed, args) == 0
    assert _forwarded_vs_eager(matmul_reads, args) == 0
    assert _forwarded_vs_eager(matmul_fresh, args) == 1
    assert _forwarded_vs_eager(src_used_again, args) == 0


def test_dump_after_passes_marks_the_passes(capsys, monkeypatch):
    monkeypatch.setenv("TY_TRACE_DUMP", "1")

    @trace
    def f(x):
        unused = F.sin(x)  # noqa: F841
        return F.relu(x * 2 + F.ones((3,)) * 4) - 1 + F.exp(x) * F.exp(x)

    f(ty.tensor([1.0, 2.0, 3.0]))
    printed = capsys.readouterr().out
    assert "after passes" in printed and printed.count("trace:") == 2
    f(ty.tensor([1.0, 2.0, 3.0]))
    text = f.dump_graph(after_passes=True)
    for mark in ("# dead", "# cse of", "# folded", "# fused g0"):
        assert mark in text, mark
    assert "# fused" not in f.dump_graph()


def test_passes_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("TY_TRACE_PASSES", "0")

    def f(x):
        return F.exp(x) + F.exp(x) * 2

    tf = trace(f)
    _check_calls(f, tf, lambda r: [r.standard_normal(10).astype("float32")])
    s = _stats(tf)
    assert (s["cse"], s["folded"], s["dead"], s["fused_groups"]) == (0, 0, 0, 0)


# ---- fusion with inputs that broadcast into the group's shape ----

_BCAST_CASES = {
    # x, b: a conv bias over NCHW (runs of H*W, the bias fixed), a linear bias over (N, C)
    # (runs of C, the bias moving with x); neither a multiple of the block
    "nchw": ((4, 6, 37, 41), (1, 6, 1, 1)),
    "nc": ((301, 77), (77,)),
}


@pytest.mark.parametrize("without_host", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", sorted(_BCAST_CASES))
def test_bias_relu_with_a_broadcast_bias_is_one_fused_group(case, dtype, without_host):
    xs, bs = _BCAST_CASES[case]

    def f(x, b):
        return F.relu(x + b)

    tf = trace(f, without_host=without_host)
    _check_calls(f, tf, lambda r: [r.standard_normal(xs).astype(dtype),
                                   r.standard_normal(bs).astype(dtype)])
    s = _stats(tf)
    assert (s["fused_groups"], s["fused_nodes"], s["executed"]) == (1, 2, 2)
    assert s["arena_bytes"] == 0  # x + b stayed in a scratch block: the group ran fused


@pytest.mark.parametrize("without_host", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chain_with_two_different_broadcast_inputs_is_one_fused_group(dtype, without_host):
    def f(x, b, c):
        return F.relu(x * b + c) * x - 0.5

    tf = trace(f, without_host=without_host)
    _check_calls(f, tf, lambda r: [r.standard_normal((3, 5, 29, 83)).astype(dtype),
                                   r.standard_normal((5, 1, 1)).astype(dtype),
                                   r.standard_normal((29, 83)).astype(dtype)])
    s = _stats(tf)
    assert (s["fused_groups"], s["fused_nodes"], s["executed"]) == (1, 5, 5)
    assert s["arena_bytes"] == 0


@pytest.mark.parametrize("without_host", [False, True])
def test_broadcast_input_with_short_runs_stays_unfused(without_host):
    def f(x, b, c):
        # runs of 10 elements (b fixed, c moving): too short, the products stay unfused
        return F.relu(F.abs(F.sin(F.cos(x)) * b)) * c

    tf = trace(f, without_host=without_host)
    _check_calls(f, tf, lambda r: [r.standard_normal((257, 3, 10)).astype("float32"),
                                   r.standard_normal((257, 3, 1)).astype("float32"),
                                   r.standard_normal((10,)).astype("float32")])
    s = _stats(tf)
    assert (s["fused_groups"], s["fused_nodes"]) == (2, 4)  # cos-sin, abs-relu


def test_non_contiguous_broadcast_input_falls_back():
    def f(x, b):
        return F.exp(x - b) * 2

    tf = trace(f)
    rng = np.random.default_rng(0)
    for call in range(4):
        x = ty.tensor(rng.standard_normal((5, 33, 33)).astype("float32"))
        b = ty.tensor(rng.standard_normal((33, 33)).astype("float32"))
        if call % 2:
            b = b.transpose(1, 0)  # same shape and dtype: replays the same graph, unfused
        np.testing.assert_array_equal(tf(x, b).numpy(), f(x, b).numpy())
    assert _stats(tf)["fused_groups"] == 1


@pytest.mark.parametrize("without_host", [False, True])
def test_replayed_training_step_allocates_only_its_outputs(without_host):
    """DESIGN: a replayed step's intermediates live in the planned arena. Without the host the
    only allocation per call is the returned loss; with the host, also the small tensors the
    Python body makes from numbers on every call (literals, the optimizer's scalars)."""
    import tianyuan.module as M
    ty.random.seed(0)  # an MLP: its kernels need no workspace (conv's im2col buffer would count)
    net = M.Sequential(M.Linear(16, 32), M.ReLU(), M.Linear(32, 32), M.ReLU(), M.Linear(32, 10))
    gm = ty.autodiff.GradManager().attach(net.parameters())
    opt = ty.optimizer.SGD(net.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        with gm:
            loss = F.nn.square_loss(net(x), y)  # (cross_entropy's gather converts indices
            gm.backward(loss)                   # in a kernel temporary, from the cache)
        opt.step().clear_grad()
        return loss

    x = ty.tensor(np.random.default_rng(0).standard_normal((8, 16)).astype("float32"))
    y = ty.tensor(np.random.default_rng(1).standard_normal((8, 10)).astype("float32"))

    def requests(fn, calls=3):
        fn(x, y)  # records (traced)
        fn(x, y)  # the first replay plans and allocates the arena
        counts, sys_calls = [], ty.get_mem_status_bytes()["alloc_calls"]
        for _ in range(calls):
            before = ty.get_mem_status_bytes()["requests"]
            fn(x, y)
            counts.append(ty.get_mem_status_bytes()["requests"] - before)
        assert len(set(counts)) == 1, counts  # the same every call
        assert ty.get_mem_status_bytes()["alloc_calls"] == sys_calls  # all from the cache
        return counts[0]

    eager = requests(step)
    traced = requests(trace(step, without_host=without_host))
    assert traced == 1 if without_host else eager >= 4 * traced, (eager, traced)


def _mlp_sgd_step(depth, width):
    """A square ReLU MLP's SGD training step, with a batch of `width` rows: (step, x, y)."""
    import tianyuan.module as M
    ty.random.seed(0)
    net = M.Sequential(*[m for _ in range(depth) for m in (M.Linear(width, width), M.ReLU())],
                       M.Linear(width, 10))
    gm = ty.autodiff.GradManager().attach(net.parameters())
    opt = ty.optimizer.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        with gm:
            loss = F.nn.cross_entropy(net(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    x = ty.tensor(np.random.default_rng(0).standard_normal((width, width)).astype("float32"))
    y = ty.tensor(np.random.default_rng(1).integers(0, 10, width).astype("int32"))
    return step, x, y


def test_first_replay_gives_the_recordings_cached_memory_back():
    """The recording runs eagerly and frees its values into the allocator's cache; the plan
    serves every later call from its arena, so the first replay gives that cache back rather
    than keeping it resident beside the arena (a traced CIFAR ResNet-18 step held 1100 MB
    against eager's 443). An MLP: its values (1 MB each) dwarf what a replay leaves cached
    (no convolution workspace), so the two cases stay far apart."""
    step, x, y = _mlp_sgd_step(4, 512)

    def cached():
        return ty.get_reserved_memory() - ty.get_allocated_memory()

    tf = trace(step)
    ty.empty_cache()  # whatever earlier tests left
    eager_loss = step(x, y).numpy()  # an eager step first: its values fill the cache too
    recorded = tf(x, y)
    left_by_recording = cached()
    assert left_by_recording > 4 << 20  # about 7 MB: the step's activations and gradients
    first_replay = tf(x, y)
    # without giving the cache back, the recording's blocks stayed (7415808 bytes); a replay
    # itself leaves a few KB (the previous call's loss)
    assert cached() < left_by_recording // 16, (cached(), left_by_recording)
    losses = [eager_loss, recorded.numpy(), first_replay.numpy()]
    assert np.all(np.isfinite(losses)) and losses[2] < losses[1] < losses[0]


def test_recording_frees_values_nothing_holds():
    """The recording runs eagerly but keeps each tensor it records (their addresses identify
    the values): the data of those nothing else holds is freed as the recording goes, so it
    peaks about where the eager step does (before: 8.6x here, every value held to the end)."""
    step, x, y = _mlp_sgd_step(12, 256)

    def peak(fn):
        base = ty.get_allocated_memory()
        ty.reset_max_memory_stats()
        loss = fn(x, y).numpy()
        return ty.get_max_allocated_memory() - base, loss

    eager, eager_loss = peak(step)
    tf = trace(step)
    recording, recorded_loss = peak(tf)
    assert recording <= eager * 5 // 4, (recording, eager)
    # the values it freed are not needed again: the replays still run, step after step
    ty.random.seed(0)
    losses = [tf(x, y).numpy() for _ in range(3)]
    assert np.isfinite(eager_loss) and np.isfinite(recorded_loss) and np.all(np.isfinite(losses))
    assert losses[0] < recorded_loss < eager_loss  # still training: each step lowers it
