"""trace(sublinear_memory_config=...): forward values recomputed in the backward instead of
kept, with the same bits as the plain traced step and a smaller planned arena."""
import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan.jit import DTRConfig, SublinearMemoryConfig, trace


def _mlp(depth=12, width=32):
    layers = []
    for _ in range(depth):
        layers += [M.Linear(width, width), M.ReLU()]
    return M.Sequential(*layers, M.Linear(width, 10))


def _cnn():
    def block(cin, cout):
        return [M.Conv2d(cin, cout, 3, padding=1, bias=False), M.BatchNorm2d(cout), M.ReLU()]
    return M.Sequential(*block(3, 8), *block(8, 8), *block(8, 8), *block(8, 8))


class _CnnHead(M.Module):
    def __init__(self):
        super().__init__()
        self.body = _cnn()
        self.fc = M.Linear(8, 10)

    def forward(self, x):
        return self.fc(F.mean(self.body(x), axis=(2, 3)))


class _DropoutNet(M.Module):
    def __init__(self, width=32):
        super().__init__()
        self.a = M.Linear(width, width)
        self.b = M.Linear(width, width)
        self.c = M.Linear(width, width)
        self.d = M.Linear(width, 10)
        self.drop = M.Dropout(0.3)

    def forward(self, x):
        x = self.drop(F.relu(self.a(x)))
        x = self.drop(F.relu(self.b(x)))
        return self.d(F.relu(self.c(x)))


def _train(make_net, shape, cfg, *, symbolic=False, opt="sgd", steps=3, seed=0, dtr=None):
    """Parameters, losses and pass stats after `steps` traced steps."""
    ty.random.seed(seed)
    net = make_net()
    net.train()
    params = list(net.parameters())
    gm = ty.autodiff.GradManager().attach(params)
    if opt == "adam":
        optim = ty.optimizer.Adam(params, lr=1e-3)
    else:
        optim = ty.optimizer.SGD(params, lr=0.01, momentum=0.9)

    @trace(symbolic=symbolic, sublinear_memory_config=cfg, dtr_config=dtr)
    def step(x, y):
        with gm:
            loss = F.nn.square_loss(net(x), y)
            gm.backward(loss)
        optim.step().clear_grad()
        return loss

    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(steps):
        x = ty.tensor(rng.standard_normal(shape).astype("float32"))
        y = ty.tensor(rng.standard_normal((shape[0], 10)).astype("float32"))
        losses.append(step(x, y).numpy())
    state = [p.numpy() for p in params] + [b.numpy() for b in net.buffers()]
    return losses, state, step.pass_stats()[0]


def _assert_same_bits(a, b):
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(np.atleast_1d(x).view(np.uint8), np.atleast_1d(y).view(np.uint8))


CASES = {
    "mlp": (_mlp, (64, 32)),
    "cnn_bn": (_CnnHead, (8, 3, 12, 12)),
    "dropout": (_DropoutNet, (64, 32)),
}


@pytest.mark.parametrize("symbolic", [False, True])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_same_bits_as_the_plain_traced_step(case, opt, symbolic):
    make, shape = CASES[case]
    plain = _train(make, shape, None, symbolic=symbolic, opt=opt)
    sub = _train(make, shape, SublinearMemoryConfig(), symbolic=symbolic, opt=opt)
    _assert_same_bits(plain, sub)
    assert plain[2]["recomputed"] == 0 and sub[2]["recomputed"] > 0  # the rewrite did run
    assert sub[2]["arena_bytes"] < plain[2]["arena_bytes"]


@pytest.mark.parametrize("symbolic", [False, True])
def test_deep_mlp_plans_a_smaller_arena(symbolic):
    make = lambda: _mlp(depth=16, width=32)  # noqa: E731
    plain = _train(make, (256, 32), None, symbolic=symbolic)
    sub = _train(make, (256, 32), SublinearMemoryConfig(), symbolic=symbolic)
    _assert_same_bits(plain, sub)
    assert sub[2]["recomputed"] > 0
    # activations dominate: keeping about sqrt(n) of them saves at least a third
    assert sub[2]["arena_bytes"] * 3 < plain[2]["arena_bytes"] * 2, (plain[2], sub[2])


def test_cnn_with_batchnorm_plans_a_smaller_arena():
    plain = _train(_CnnHead, (16, 3, 16, 16), None)
    sub = _train(_CnnHead, (16, 3, 16, 16), SublinearMemoryConfig())
    _assert_same_bits(plain, sub)
    assert sub[2]["arena_bytes"] < plain[2]["arena_bytes"], (plain[2], sub[2])


def test_genetic_search_keeps_the_bits_and_the_saving():
    make = lambda: _mlp(depth=10, width=32)  # noqa: E731
    plain = _train(make, (128, 32), None, steps=2)
    gen = _train(make, (128, 32), SublinearMemoryConfig(thresh_nr_try=4, genetic_nr_iter=3,
                                                        genetic_pool_size=4), steps=2)
    _assert_same_bits(plain, gen)
    assert 0 < gen[2]["recomputed"] and gen[2]["arena_bytes"] < plain[2]["arena_bytes"]


def test_a_net_with_nothing_to_recompute_is_left_alone():
    plain = _train(lambda: M.Linear(32, 10), (16, 32), None)
    sub = _train(lambda: M.Linear(32, 10), (16, 32), SublinearMemoryConfig())
    _assert_same_bits(plain, sub)
    assert sub[2]["recomputed"] == 0 and sub[2]["nodes"] == plain[2]["nodes"]


def test_config_defaults_and_validation():
    cfg = SublinearMemoryConfig()
    assert (cfg.thresh_nr_try, cfg.genetic_nr_iter, cfg.genetic_pool_size,
            cfg.lb_memory_mb) == (10, 0, 20, 0)
    assert cfg.num_worker >= 1
    for kw in ({"thresh_nr_try": -1}, {"genetic_nr_iter": -2}, {"genetic_pool_size": 0},
               {"lb_memory_mb": -1}, {"num_worker": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            SublinearMemoryConfig(**kw)
    for kw in ({"thresh_nr_try": 1.5}, {"num_worker": "4"}, {"genetic_nr_iter": True}):
        with pytest.raises(TypeError, match=next(iter(kw))):
            SublinearMemoryConfig(**kw)
    with pytest.raises(TypeError, match="SublinearMemoryConfig"):
        trace(lambda x: x + 1, sublinear_memory_config={"thresh_nr_try": 3})


def test_a_lower_bound_above_the_plain_peak_recomputes_nothing():
    make = lambda: _mlp(depth=6, width=32)  # noqa: E731
    sub = _train(make, (64, 32), SublinearMemoryConfig(lb_memory_mb=1 << 20), steps=2)
    plain = _train(make, (64, 32), None, steps=2)
    _assert_same_bits(plain, sub)
    assert sub[2]["recomputed"] == 0


def test_a_lower_bound_spends_its_room_on_recomputing_less():
    """lb_memory_mb between the lowest peak and the plain one: the plan stays under it and
    recomputes less than the lowest-peak plan (activations of 1 MiB, so MB bounds tell)."""
    make = lambda: _mlp(depth=8, width=64)  # noqa: E731
    shape = (4096, 64)
    plain = _train(make, shape, None, steps=2)
    lowest = _train(make, shape, SublinearMemoryConfig(), steps=2)
    lb_mb = (plain[2]["arena_bytes"] + lowest[2]["arena_bytes"]) // 2 >> 20
    assert lowest[2]["arena_bytes"] < lb_mb << 20 < plain[2]["arena_bytes"], (plain[2], lowest[2])
    bounded = _train(make, shape, SublinearMemoryConfig(lb_memory_mb=lb_mb), steps=2)
    _assert_same_bits(plain, bounded)
    _assert_same_bits(plain, lowest)
    assert bounded[2]["arena_bytes"] <= lb_mb << 20, (lb_mb, bounded[2])
    assert 0 < bounded[2]["recomputed"] < lowest[2]["recomputed"], (bounded[2], lowest[2])


class _AffineMlp(M.Module):
    """Linear -> relu -> 2x + 1 per layer: the backward reads each relu output (relu's
    gradient) and each affine output (the next matmul's weight gradient); an affine output
    comes back from the relu output without a matmul, a relu output needs one."""

    def __init__(self, depth=6, width=64):
        super().__init__()
        self.layers = [M.Linear(width, width) for _ in range(depth)]
        self.out = M.Linear(width, 10)

    def forward(self, x):
        for layer in self.layers:
            x = F.relu(layer(x)) * 2 + 1
        return self.out(x)


def _matmuls(cfg, shape):
    ty.random.seed(0)
    net = _AffineMlp()
    gm = ty.autodiff.GradManager().attach(net.parameters())
    optim = ty.optimizer.SGD(net.parameters(), lr=0.01)

    @trace(sublinear_memory_config=cfg)
    def step(x, y):
        with gm:
            gm.backward(F.nn.square_loss(net(x), y))
        optim.step().clear_grad()

    rng = np.random.default_rng(0)
    x = ty.tensor(rng.standard_normal(shape).astype("float32"))
    y = ty.tensor(rng.standard_normal((shape[0], 10)).astype("float32"))
    for _ in range(2):
        step(x, y)
    stats = step.pass_stats()[0]
    return step.dump_graph(after_passes=True).count("= matmul("), stats


def test_a_lower_bound_recomputes_the_cheap_values_first():
    shape = (4096, 64)  # 1 MiB per activation
    plain_mm, plain = _matmuls(None, shape)
    lowest_mm, lowest = _matmuls(SublinearMemoryConfig(), shape)
    lb_mb = (plain["arena_bytes"] >> 20) - 2  # room for all but a few activations
    bounded_mm, bounded = _matmuls(SublinearMemoryConfig(lb_memory_mb=lb_mb), shape)
    assert lowest_mm > plain_mm, (plain, lowest)  # the lowest peak does recompute matmuls
    assert bounded["recomputed"] > 0 and bounded["arena_bytes"] <= lb_mb << 20, bounded
    assert bounded_mm == plain_mm, (plain, bounded)  # only affine outputs came back


def test_without_host_runs_the_rewritten_graph():
    def run(cfg):
        ty.random.seed(0)
        net = _mlp(depth=8, width=32)
        params = list(net.parameters())
        gm = ty.autodiff.GradManager().attach(params)
        optim = ty.optimizer.SGD(params, lr=0.01, momentum=0.9)

        @trace(without_host=True, sublinear_memory_config=cfg)
        def step(x, y):
            with gm:
                loss = F.nn.square_loss(net(x), y)
                gm.backward(loss)
            optim.step().clear_grad()
            return loss

        rng = np.random.default_rng(3)
        losses = []
        for _ in range(4):
            x = ty.tensor(rng.standard_normal((128, 32)).astype("float32"))
            y = ty.tensor(rng.standard_normal((128, 10)).astype("float32"))
            losses.append(step(x, y).numpy())
        return losses, [p.numpy() for p in params], step.pass_stats()[0]

    plain, sub = run(None), run(SublinearMemoryConfig())
    _assert_same_bits(plain, sub)
    assert sub[2]["recomputed"] > 0 and sub[2]["arena_bytes"] < plain[2]["arena_bytes"]


# ------------------------------------------------ the trace property tests' random programs
def _with_sublinear(monkeypatch):
    """Makes test_trace_property trace with sublinear memory; returns the traces it made."""
    import test_trace_property as tprop
    made = []

    def sublinear_trace(fn, **kw):
        t = trace(fn, sublinear_memory_config=SublinearMemoryConfig(thresh_nr_try=6), **kw)
        made.append(t)
        return t

    monkeypatch.setattr(tprop, "trace", sublinear_trace)
    return tprop, made


def test_random_programs_with_sublinear_memory_are_bitwise_eager(monkeypatch):
    """Gradients and SGD/Adam steps of the random programs, traced with sublinear memory
    (with the host, without it, symbolic in turn): bitwise eager, also where the rewrite
    copied nodes."""
    tprop, made = _with_sublinear(monkeypatch)
    modes = [(False, False), (True, False), (False, True)]  # (without_host, symbolic)
    for index in range(tprop.N_GRAD):
        tprop.test_random_program_gradients_traced_are_bitwise_eager(index, *modes[index % 3])
    for index in range(tprop.N_SGD):
        tprop.test_random_program_training_steps_traced_are_bitwise_eager(index,
                                                                           *modes[index % 3])
    rewritten = sum(1 for t in made for s in t.pass_stats() if s["recomputed"] > 0)
    assert rewritten >= 5, rewritten  # the rewrite ran on enough of them to mean something


def test_two_backward_blocks_in_one_step():
    """Two losses, each with its own backward (gradients accumulate): each block recomputes
    only from the forward that precedes it."""
    def run(cfg):
        ty.random.seed(1)
        net = _mlp(depth=8, width=32)
        params = list(net.parameters())
        gm = ty.autodiff.GradManager().attach(params)
        optim = ty.optimizer.SGD(params, lr=0.01)

        @trace(sublinear_memory_config=cfg)
        def step(x1, x2, y):
            with gm:
                l1 = F.nn.square_loss(net(x1), y)
                gm.backward(l1)
            with gm:
                l2 = F.nn.square_loss(net(x2), y)
                gm.backward(l2)
            optim.step().clear_grad()
            return l1, l2

        rng = np.random.default_rng(5)
        out = []
        for _ in range(3):
            x1, x2 = (ty.tensor(rng.standard_normal((128, 32)).astype("float32")) for _ in "ab")
            y = ty.tensor(rng.standard_normal((128, 10)).astype("float32"))
            out += [t.numpy() for t in step(x1, x2, y)]
        return out, [p.numpy() for p in params], step.pass_stats()[0]

    plain, sub = run(None), run(SublinearMemoryConfig())
    _assert_same_bits(plain, sub)
    assert sub[2]["recomputed"] > 0


def test_a_step_without_backward_is_unchanged():
    ty.random.seed(2)
    net = _mlp(depth=4, width=16)
    f = trace(lambda x: net(x), sublinear_memory_config=SublinearMemoryConfig())
    x = ty.tensor(np.random.default_rng(0).standard_normal((8, 16)).astype("float32"))
    want = net(x).numpy()
    for _ in range(2):
        assert np.array_equal(f(x).numpy(), want)
    assert f.pass_stats()[0]["recomputed"] == 0


# ---- trace(dtr_config=...): the same rewrite, judged by DTR's threshold ----

@pytest.mark.parametrize("symbolic", [False, True])
@pytest.mark.parametrize("case", sorted(CASES))
def test_dtr_config_gives_the_plain_traced_bits_under_its_threshold(case, symbolic):
    make, shape = CASES[case]
    plain = _train(make, shape, None, symbolic=symbolic)
    lowest = _train(make, shape, None, symbolic=symbolic, dtr=DTRConfig(evictee_minimum_size=0))
    threshold = (plain[2]["arena_bytes"] + lowest[2]["arena_bytes"]) // 2
    dtr = _train(make, shape, None, symbolic=symbolic,
                 dtr=DTRConfig(eviction_threshold=threshold, evictee_minimum_size=0))
    _assert_same_bits(plain, dtr)
    _assert_same_bits(plain, lowest)
    assert lowest[2]["arena_bytes"] < plain[2]["arena_bytes"], (plain[2], lowest[2])
    # under the threshold, recomputing no more than the lowest-peak plan does
    assert dtr[2]["arena_bytes"] <= threshold, (threshold, dtr[2])
    assert 0 < dtr[2]["recomputed"] <= lowest[2]["recomputed"], (dtr[2], lowest[2])


def test_dtr_config_recomputes_nothing_without_pressure():
    make, shape = CASES["mlp"]
    plain = _train(make, shape, None)
    dtr = _train(make, shape, None,
                 dtr=DTRConfig(eviction_threshold=2 * plain[2]["arena_bytes"],
                               evictee_minimum_size=0))
    _assert_same_bits(plain, dtr)
    assert dtr[2]["recomputed"] == 0 and dtr[2]["arena_bytes"] == plain[2]["arena_bytes"]


def test_dtr_config_keeps_values_under_the_minimum_size():
    make, shape = CASES["mlp"]  # every activation is 64 x 32 float32: 8 KiB
    kept = _train(make, shape, None, dtr=DTRConfig(evictee_minimum_size=64 * 32 * 4 + 1))
    assert kept[2]["recomputed"] == 0
    with pytest.raises(TypeError, match="dtr_config must be a jit.DTRConfig"):
        trace(lambda: None, dtr_config=1)
    with pytest.raises(ValueError, match="not both"):
        trace(lambda: None, dtr_config=DTRConfig(), sublinear_memory_config=SublinearMemoryConfig())
