"""jit.trace: replays give the same bits as eager execution (RELIABILITY.md N4), whole
training steps included, and a call that diverges from its recording raises TraceError."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
import tianyuan.optimizer as optim
from tianyuan.autodiff import GradManager
from tianyuan.jit import TraceError, exclude_from_trace, trace


class Net(M.Module):
    def __init__(self):
        super().__init__()
        self.conv = M.Conv2d(1, 4, 3, padding=1)
        self.bn = M.BatchNorm2d(4)
        self.fc = M.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(F.flatten(x, 1))


def _train(traced, steps=6, opt_cls=optim.SGD, without_host=False, symbolic=False,
           milestones=None, **opt_kw):
    ty.random.seed(0)
    net = Net()
    gm = GradManager().attach(net.parameters())
    opt = opt_cls(net.parameters(), **opt_kw)
    sched = optim.MultiStepLR(opt, milestones=milestones, gamma=0.1) if milestones else None

    def step(x, y):
        with gm:
            loss = F.nn.cross_entropy(net(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        return loss

    if traced:
        step = trace(step, without_host=without_host, symbolic=symbolic)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(steps):
        x = ty.tensor(rng.standard_normal((8, 1, 8, 8)).astype("float32"))
        y = ty.tensor(rng.integers(0, 10, 8).astype("int32"))
        losses.append(step(x, y).numpy())
        if sched:
            sched.step()
    return np.array(losses), net.state_dict()


@pytest.mark.parametrize("symbolic", [False, True], ids=["computed", "symbolic"])
@pytest.mark.parametrize("opt_cls, kw", [(optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                         (optim.Adam, {"lr": 0.01})])
def test_traced_training_step_is_bitwise_eager(opt_cls, kw, symbolic):
    le, se = _train(False, opt_cls=opt_cls, **kw)
    lt, st = _train(True, opt_cls=opt_cls, symbolic=symbolic, **kw)
    np.testing.assert_array_equal(le, lt)
    assert se.keys() == st.keys()
    for k in se:
        np.testing.assert_array_equal(se[k], st[k], err_msg=k)


def test_without_host_training_step_is_bitwise_eager():
    le, se = _train(False, lr=0.1, momentum=0.9)
    lt, st = _train(True, without_host=True, lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(le, lt)
    for k in se:
        np.testing.assert_array_equal(se[k], st[k], err_msg=k)


def test_without_host_does_not_call_the_function():
    calls = []

    @trace(without_host=True)
    def f(x):
        calls.append(1)
        return {"y": x * 2, "z": (x + 1, x - 1)}

    for v in (1.0, 2.0, 3.0):
        out = f(ty.tensor([v]))
        assert out["y"].item() == 2 * v and out["z"][0].item() == v + 1
        assert out["z"][1].item() == v - 1
    assert len(calls) == 1


def test_without_host_calls_follow_argument_layouts_and_keep_old_outputs():
    """After its first call a host-less trace reuses its intermediates' tensors; a call with
    arguments of another layout (a transposed view, then contiguous again), outputs that
    are arguments, externals or views of them, and outputs kept from earlier calls all stay
    right."""
    w = ty.tensor(np.arange(9, dtype="float32").reshape(3, 3))

    def body(x):
        h = F.exp(x * 0.1) + w           # fused intermediates in the arena
        return h @ h, x, w, w.T, x[1:], h.sum()

    f = trace(body, without_host=True)
    rng = np.random.default_rng(0)
    kept = []
    for call in range(6):
        a = rng.standard_normal((3, 3)).astype("float32")
        x = ty.tensor(a.T.copy()).T if call in (2, 3) else ty.tensor(a)  # strided on 2 and 3
        got, want = f(x), body(x)
        for g, e in zip(got, want):
            assert g.numpy().tobytes() == e.numpy().tobytes(), f"call {call}"
        assert got[1] is not None and np.array_equal(got[1].numpy(), a)
        kept.append((got, [e.numpy() for e in want]))
        w._assign(w + 1)                 # in place: the next call reads the new values
    for call, (got, want) in enumerate(kept):
        for i in (0, 1, 4, 5):           # computed outputs keep their values
            assert got[i].numpy().tobytes() == want[i].tobytes(), f"call {call} output {i}"
    np.testing.assert_array_equal(kept[0][0][2].numpy(), w.numpy())  # w itself, updated


def test_replay_uses_new_inputs_and_externals():
    w = ty.tensor([1.0, 2.0])

    @trace
    def f(x):
        return x * w + 1

    for v in ([1.0, 1.0], [2.0, 3.0], [0.5, -1.0]):
        np.testing.assert_array_equal(f(ty.tensor(v)).numpy(), np.array(v, "float32") * [1, 2] + 1)
    w._assign(ty.tensor([3.0, 3.0]))  # externals are read when the graph runs
    np.testing.assert_array_equal(f(ty.tensor([1.0, 1.0])).numpy(), [4.0, 4.0])


def test_host_tensors_made_in_the_body_are_fed_per_call():
    lrs = iter([0.1, 0.2, 0.3])

    @trace
    def f(x):
        return x * ty.tensor(next(lrs))

    assert [round(f(ty.tensor(10.0)).item(), 4) for _ in range(3)] == [1.0, 2.0, 3.0]


def test_changed_literal_raises():
    calls = iter([1.0, 1.0, 2.0])

    @trace
    def f(x):
        return x + next(calls)

    f(ty.tensor([1.0]))
    f(ty.tensor([1.0]))
    with pytest.raises(TraceError, match="tensors not equals"):
        f(ty.tensor([1.0]))


def test_operator_mismatch_raises():
    flags = iter([True, False])

    @trace
    def f(x):
        return F.exp(x) if next(flags) else F.log(x)

    f(ty.tensor([1.0]))
    with pytest.raises(TraceError, match="operator mismatch"):
        f(ty.tensor([1.0]))


def test_too_many_and_too_few_instructions_raise():
    n = iter([1, 2, 1, 0])

    @trace
    def f(x):
        for _ in range(next(n)):
            x = x * 2
        return x

    f(ty.tensor([1.0]))
    with pytest.raises(TraceError, match="too many instructions"):
        f(ty.tensor([1.0]))
    f(ty.tensor([1.0]))  # matches again
    with pytest.raises(TraceError, match="mismature end"):
        f(ty.tensor([1.0]))


def test_reading_values_inside_a_replay_raises():
    @trace
    def f(x):
        y = x * 2
        y.numpy()
        return y

    f(ty.tensor([1.0]))
    with pytest.raises(TraceError, match="unreadable"):
        f(ty.tensor([1.0]))
    np.testing.assert_array_equal(f.__wrapped__(ty.tensor([1.0])).numpy(), [2.0])


def test_new_shapes_record_a_new_graph():
    @trace
    def f(x):
        return F.sum(x * x, axis=0)

    for shape in [(3, 2), (5, 2), (3, 2), (4,)]:
        x = np.arange(np.prod(shape), dtype="float32").reshape(shape)
        np.testing.assert_array_equal(f(ty.tensor(x)).numpy(), (x * x).sum(0))
    assert len(f._graphs) == 3


def test_exclude_from_trace_runs_eagerly():
    seen = []

    @trace
    def f(x):
        with exclude_from_trace():
            seen.append(float((x * 10).sum().item()))
        return x + 1

    for v in (1.0, 2.0, 3.0):
        assert f(ty.tensor([v])).item() == v + 1
    assert seen == [10.0, 20.0, 30.0]


def test_outputs_may_be_structures():
    @trace
    def f(x):
        return {"a": x + 1, "b": (x * 2, [x - 1])}

    for _ in range(3):
        out = f(ty.tensor([1.0]))
        assert out["a"].item() == 2.0 and out["b"][0].item() == 2.0 and out["b"][1][0].item() == 0.0


def test_data_dependent_shapes_cannot_be_replayed():
    @trace
    def f(x):
        return F.non_zero(x)

    f(ty.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(TraceError, match="depends on input values"):
        f(ty.tensor([1.0, 0.0, 2.0]))


def test_dump_shows_the_graph():
    @trace
    def f(x):
        return F.relu(x) * 3

    f(ty.tensor([1.0]))
    text = f.dump_graph()
    assert "relu" in text and "mul" in text and "return" in text


def test_memory_saving_options_are_not_silently_ignored():
    with pytest.raises(TypeError, match="DTRConfig"):  # tests/python/test_sublinear.py
        trace(lambda x: x + 1, dtr_config=object())
    with pytest.raises(TypeError, match="SublinearMemoryConfig"):  # tests/python/test_sublinear.py
        trace(lambda x: x + 1, sublinear_memory_config=object())


def test_dump_level_2_prints_the_graph_after_each_pass(capsys, monkeypatch):
    monkeypatch.setenv("TY_TRACE_DUMP", "2")

    @trace
    def f(x):
        return F.relu(x * 2 + 1) + F.exp(x) * F.exp(x)

    f(ty.tensor([1.0, 2.0]))
    out = capsys.readouterr().out
    for name in ("cse", "constant folding", "elementwise fusion", "assign forwarding"):
        assert f"== after {name} ==" in out, name
    assert out.index("# cse of") < out.index("== after constant folding ==")


@pytest.mark.parametrize("without_host", [False, True])
def test_two_threads_calling_one_trace_never_corrupt_it(without_host):
    """Graphs run without the GIL: a second thread calling the same traced function while
    it runs gets a TraceError (or waits its turn), never a wrong result or a crash."""
    import threading
    w = ty.tensor(np.ones((64, 64), dtype="float32"))

    @trace(without_host=without_host)
    def f(x):
        return F.relu(x @ w) * 0.5 + x

    x0 = ty.tensor(np.eye(64, dtype="float32"))
    want = f.__wrapped__(x0).numpy()
    f(x0)
    results, errors = [], []

    def worker():
        for _ in range(200):
            try:
                results.append(f(x0).numpy())
            except TraceError as e:
                errors.append(str(e))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) + len(errors) == 400 and results
    assert all(r.tobytes() == want.tobytes() for r in results)
    assert all("two threads at once" in e for e in errors), set(errors)


@pytest.mark.parametrize("without_host", [False, True])
def test_keyword_and_nested_tensor_arguments_are_graph_inputs(without_host):
    """Tensors in keyword arguments and in lists/tuples/dicts are inputs like positional
    ones; other values (a keyword number, 1 versus 1.0) pick their own graph: a host-less
    call never returns a result computed for other arguments."""
    @trace(without_host=without_host)
    def f(x, pair, *, scale, opts):
        a, b = pair
        return (x + a * b) * scale + opts["bias"]

    rng = np.random.default_rng(0)
    for call in range(6):
        scale = (2.0, 3.0, 2)[call % 3]
        x, a, b, c = (rng.standard_normal(3).astype("float32") for _ in range(4))
        got = f(ty.tensor(x), [ty.tensor(a), ty.tensor(b)], scale=scale,
                opts={"bias": ty.tensor(c)})
        want = (ty.tensor(x) + ty.tensor(a) * ty.tensor(b)) * scale + ty.tensor(c)
        assert got.numpy().tobytes() == want.numpy().tobytes(), call
    assert len(f._graphs) == 3  # one per scale value and type


def test_without_host_refuses_a_replaced_parameter():
    """A host-less trace reads parameters in place; set_value rebinds the Python Tensor to a
    new tensor, which the graph would never see: the next call raises instead of silently
    using the old values. In-place updates (_assign, optimizers) keep working."""
    w = ty.Parameter(np.ones(3, dtype="float32"))

    @trace(without_host=True)
    def f(x):
        return x * w

    x = ty.tensor([1.0, 2.0, 3.0])
    f(x)
    w._assign(ty.tensor([2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(f(x).numpy(), [2.0, 4.0, 6.0])
    w.set_value(np.full(3, 5.0, dtype="float32"))
    with pytest.raises(TraceError, match="replaced since recording"):
        f(x)


@pytest.mark.parametrize("without_host", [False, True])
@pytest.mark.parametrize("opt_cls, kw", [(optim.SGD, {"lr": 0.1, "momentum": 0.9}),
                                         (optim.Adam, {"lr": 0.01})])
def test_scheduled_learning_rate_reaches_traced_steps(opt_cls, kw, without_host):
    """Hyperparameters are read through tensors the group updates in place, so a learning
    rate changed between steps (a scheduler, load_state_dict) reaches a traced step, also
    one that never runs its Python body again: bitwise the eager trajectory."""
    le, se = _train(False, opt_cls=opt_cls, milestones=[2, 4], **kw)
    lt, st = _train(True, opt_cls=opt_cls, without_host=without_host, milestones=[2, 4], **kw)
    assert le.tobytes() == lt.tobytes()
    for k in se:
        assert se[k].tobytes() == st[k].tobytes(), k


def test_without_host_groups_keep_their_steps_across_calls():
    """Host-less calls after the first keep fused groups' built steps when the group touches
    no per-call value: the group below reads a matmul result and an external updated in
    place, and writes an intermediate; every call stays bitwise eager, through a fallback
    to a full call (a strided argument) and back."""
    rng = np.random.default_rng(0)
    w1 = ty.tensor(rng.standard_normal((8, 8)).astype("float32"))
    w2 = ty.tensor(rng.standard_normal((8, 4)).astype("float32"))
    b = ty.tensor(rng.standard_normal(8).astype("float32"))

    def body(x):
        h = F.relu(x @ w1) * 0.5 + b  # one fused group on persistent memory
        return h @ w2

    f = trace(body, without_host=True)
    for call in range(8):
        a = rng.standard_normal((8, 8)).astype("float32")
        x = ty.tensor(a.T.copy()).T if call == 5 else ty.tensor(a)
        assert f(x).numpy().tobytes() == body(x).numpy().tobytes(), call
        b._assign(b * 0.5 + 1)
    assert f.pass_stats()[0]["fused_groups"] >= 1
