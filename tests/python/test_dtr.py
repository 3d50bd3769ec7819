"""DTR (tianyuan.dtr) in eager mode: training under a tight eviction threshold gives the bits of
training without DTR, evicted tensors come back when read (by an op, .numpy(), backward),
parameters and pinned tensors are never evicted, and a threshold too small for progress is a
MemoryError the process survives."""
import gc

import numpy as np
import pytest

import tianyuan as ty
import tianyuan.functional as F
import tianyuan.module as M
from tianyuan import dtr


pytestmark = pytest.mark.usefixtures("dtr_restored")


class _CNN(M.Module):
    def __init__(self):
        super().__init__()
        self.c1 = M.Conv2d(3, 8, 3, padding=1)
        self.b1 = M.BatchNorm2d(8)
        self.c2 = M.Conv2d(8, 16, 3, padding=1)
        # a stack at full resolution: saved activations well above backward's working set
        self.mid = [M.Conv2d(16, 16, 3, padding=1) for _ in range(4)]
        self.c3 = M.Conv2d(16, 16, 3, padding=1)
        self.fc = M.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.c2(x))
        for conv in self.mid:
            x = F.relu(conv(x))
        x = F.max_pool2d(x, 2)
        x = F.max_pool2d(F.relu(self.c3(x)) + x, 2)
        return self.fc(F.flatten(x, 1))


class _MLP(M.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2, self.l3 = M.Linear(64, 256), M.Linear(256, 256), M.Linear(256, 10)

    def forward(self, x):
        return self.l3(F.gelu(self.l2(F.relu(self.l1(x)))))


def _batches(shape, steps):
    rng = np.random.default_rng(7)
    return [(rng.standard_normal(shape).astype(np.float32),
             rng.integers(0, 10, shape[0]).astype(np.int32)) for _ in range(steps)]


def _train(make, batches, threshold=None, sqrt_sampling=False):
    """Parameters and losses after SGD steps, the peak live bytes of the steps above what lived
    before them, and the DTR counters."""
    ty.random.seed(3)
    model = make()
    opt = ty.optimizer.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gm = ty.autodiff.GradManager().attach(model.parameters())
    data = [(ty.tensor(x), ty.tensor(y)) for x, y in batches]
    if threshold is not None:
        dtr.evictee_minimum_size = 0
        dtr.enable_sqrt_sampling = sqrt_sampling
    before = dtr.stats()
    base = ty.get_mem_status_bytes()["allocated"]
    ty.reset_peak_memory()
    losses = []
    for x, y in data:
        if threshold is not None:
            dtr.eviction_threshold = base + threshold
            dtr.enable()
        with gm:
            loss = F.nn.cross_entropy(model(x), y)
            gm.backward(loss)
        opt.step().clear_grad()
        losses.append(loss.numpy())
        dtr.disable()
    peak = ty.get_max_mem_bytes() - base
    after = dtr.stats()
    counts = {k: after[k] - before[k] for k in ("evictions", "recomputes")}
    params = [p.numpy() for p in model.parameters()]
    return params, losses, peak, counts


@pytest.mark.parametrize("make,shape,fraction,sqrt_sampling", [
    (_CNN, (8, 3, 16, 16), 0.5, False),
    # (sampling on this small CNN can evict a chain that the optimizer's in-place writes must
    # then bring back whole: a MemoryError below about 0.7, never a wrong result)
    (_MLP, (512, 64), 0.5, True),
    (_MLP, (512, 64), 0.5, False),
])
def test_training_with_dtr_is_bitwise_and_uses_less_memory(make, shape, fraction, sqrt_sampling):
    batches = _batches(shape, 3)
    p0, l0, peak0, _ = _train(make, batches)
    p1, l1, peak1, counts = _train(make, batches, int(peak0 * fraction), sqrt_sampling)
    assert counts["evictions"] > 0 and counts["recomputes"] > 0, counts
    for a, b in zip(l0 + p0, l1 + p1):
        np.testing.assert_array_equal(a, b)
    assert peak1 < peak0, (peak1, peak0)


def test_drop_then_read_recomputes_the_same_bits():
    dtr.evictee_minimum_size = 0
    dtr.enable()
    x = ty.tensor(np.random.default_rng(1).standard_normal((32, 32)).astype(np.float32))
    h = F.relu(x @ x)
    y = F.exp(h * 0.01) + h
    want_h, want_y = h.numpy(), y.numpy()
    assert h._drop() and y._drop()
    assert not x._drop()  # host data: nothing to recompute it from
    assert ty._C.dtr_tensor_info(y) == (True, 1)
    np.testing.assert_array_equal(y.numpy(), want_y)  # .numpy() brings it back
    assert ty._C.dtr_tensor_info(y)[0] is False
    assert h._drop()
    np.testing.assert_array_equal((h + 0).numpy(), want_h)  # an op brings it back


def test_outputs_under_the_minimum_size_get_no_lineage_and_hold_dependents_data():
    dtr.evictee_minimum_size = 4096
    dtr.enable()
    rng = np.random.default_rng(4)
    x = ty.tensor(rng.standard_normal((64, 64)).astype(np.float32))  # 16 KB
    v = ty.tensor(rng.standard_normal(64).astype(np.float32))
    before = dtr.stats()["entries"]
    small = F.exp(v * 0.5)  # 256 bytes each: not recorded
    big = x * small + 1.0  # recorded, its lineage holds `small` itself
    assert dtr.stats()["entries"] - before == 2  # x * small and its + 1.0, not v's ops
    want = big.numpy()
    assert not small._drop()
    assert big._drop()
    np.testing.assert_array_equal(big.numpy(), want)


def test_backward_recomputes_saved_tensors():
    dtr.evictee_minimum_size = 0
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((16, 16)).astype(np.float32)
    x = ty.tensor(rng.standard_normal((8, 16)).astype(np.float32))
    grads = []
    for drop in (False, True):
        w = ty.Parameter(w0)
        gm = ty.autodiff.GradManager().attach([w])
        dtr.enable()
        with gm:
            h = F.sigmoid(x @ w)
            loss = (F.tanh(h) * h).sum()
            if drop:
                before = dtr.stats()["recomputes"]
                assert h._drop()
            gm.backward(loss)
        if drop:
            assert dtr.stats()["recomputes"] > before
        dtr.disable()
        grads.append(w.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])


def test_parameters_and_pinned_tensors_are_never_evicted():
    dtr.evictee_minimum_size = 0
    dtr.enable()
    x = ty.tensor(np.ones((64, 64), np.float32))
    w = ty.Parameter(F.exp(x * 0.5))  # an op output made a parameter: pinned
    pinned = dtr.pin(F.relu(x @ w))
    other = F.relu(x @ w)
    assert not w._drop() and not pinned._drop()
    dtr.eviction_threshold = ty.get_mem_status_bytes()["allocated"]  # every further op must evict
    h = other
    for _ in range(6):
        h = F.tanh(h * 0.5)
    assert ty._C.dtr_tensor_info(other)[1] > 0  # pressure evicts what it may...
    for t in (w, pinned):
        assert ty._C.dtr_tensor_info(t) == (False, 0)  # ...and never these
    dtr.eviction_threshold = 0  # room to bring `other` back
    np.testing.assert_array_equal(pinned.numpy(), other.numpy())


def test_threshold_too_small_is_a_memory_error_and_later_calls_work():
    dtr.evictee_minimum_size = 0
    x = ty.tensor(np.random.default_rng(4).standard_normal((64, 64)).astype(np.float32))
    w = ty.Parameter(np.eye(64, dtype=np.float32))
    gm = ty.autodiff.GradManager().attach([w])
    dtr.eviction_threshold = 1024
    dtr.enable()
    with pytest.raises(MemoryError, match="eviction threshold of 1024 bytes"):
        with gm:
            h = x @ w
            for _ in range(4):
                h = F.sigmoid(h @ w)
            gm.backward(h.sum())
    dtr.disable()
    with gm:  # the process lives on and computes as before
        loss = (x @ w).sum()
        gm.backward(loss)
    np.testing.assert_array_equal(w.grad.numpy(), np.tile(x.numpy().sum(0)[:, None], (1, 64)))


def test_settings_parse_sizes():
    dtr.eviction_threshold = "2GB"
    assert dtr.eviction_threshold == 2 << 30
    dtr.evictee_minimum_size = "1.5 KB"
    assert dtr.evictee_minimum_size == 1536
    dtr.enable_sqrt_sampling = True
    assert dtr.enable_sqrt_sampling is True
    with pytest.raises(ValueError, match="eviction_threshold"):
        dtr.eviction_threshold = "lots"
    with pytest.raises(ValueError, match=">= 0"):
        dtr.evictee_minimum_size = -1
    cfg = ty.jit.DTRConfig(eviction_threshold="1GB")
    assert cfg.eviction_threshold == 1 << 30 and cfg.evictee_minimum_size == 1 << 20


def test_random_outputs_are_not_evicted():
    dtr.evictee_minimum_size = 0
    dtr.enable()
    r = ty.random.normal(size=(64, 64))
    assert not r._drop()  # a rerun would draw other numbers
    assert ty._C.dtr_tensor_info(r) == (False, 0)
    d = F.dropout(F.relu(r), 0.5)  # its mask is kept, so the ops after the draw replay it
    want = d.numpy()
    if d._drop():
        np.testing.assert_array_equal(d.numpy(), want)


@pytest.mark.parametrize("symbolic", [False, True])
def test_traced_function_reads_an_evicted_input(symbolic):
    @ty.jit.trace(symbolic=symbolic)
    def f(a):
        return F.relu(a - 1.0) * 2.0

    dtr.evictee_minimum_size = 0
    dtr.enable()
    x = ty.tensor(np.random.default_rng(5).standard_normal((16, 16)).astype(np.float32))
    h = F.exp(x * 0.5)
    want = f(h).numpy()  # records
    for _ in range(2):  # replays, the input evicted each time
        assert h._drop()
        np.testing.assert_array_equal(f(h).numpy(), want)


def test_a_tensor_only_lineage_holds_is_evicted_first():
    """m = x @ w is read by nothing but y's lineage once the program lets it go (plain eager
    would have freed it): under pressure it goes before k, which the program still holds,
    though k is staler and cheaper to recompute; y then comes back through m."""
    dtr.evictee_minimum_size = 0
    dtr.enable()
    rng = np.random.default_rng(8)
    x = ty.tensor(rng.standard_normal((64, 64)).astype(np.float32))
    w = ty.tensor(rng.standard_normal((64, 64)).astype(np.float32))
    k = x * 3.0
    m = x @ w
    y = m + 1.0
    want_y, want_k = y.numpy(), k.numpy()
    del m
    dtr.stats()  # sweeps
    before = dtr.stats()["evictions"]
    # room for one more 64x64 output after evicting exactly one 64x64 tensor
    dtr.eviction_threshold = ty.get_mem_status_bytes()["allocated"] + want_y.nbytes // 2
    z = y * 1.0
    assert dtr.stats()["evictions"] - before == 1
    assert ty._C.dtr_tensor_info(k) == (False, 0)
    assert y._drop()
    dtr.eviction_threshold = 1 << 30
    recomputes = dtr.stats()["recomputes"]
    np.testing.assert_array_equal(y.numpy(), want_y)
    assert dtr.stats()["recomputes"] - recomputes == 2  # m (the one evicted), then y
    np.testing.assert_array_equal(z.numpy(), want_y * 1.0)
    np.testing.assert_array_equal(k.numpy(), want_k)


def test_a_conv_output_is_kept_over_a_staler_elementwise_chain():
    """A 3x3 conv's output costs its arithmetic to recompute, many times the elementwise ops
    after it: with b = c * 2 held by nothing but r's lineage, pressure for two tensors' room
    evicts b, then r = relu(b) (whose rerun needs b first), not c, though c is staler. Priced
    at a matmul's rate the conv cost less than the relu and the mul, and c went."""
    dtr.evictee_minimum_size = 0
    dtr.enable()
    rng = np.random.default_rng(9)
    x = ty.tensor(rng.standard_normal((8, 16, 16, 16)).astype(np.float32))
    w = ty.tensor(rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    c = F.conv2d(x, w, padding=1)
    b = c * 2.0
    r = F.relu(b)
    want_c, want_r = c.numpy(), r.numpy()
    del b
    dtr.stats()  # sweeps
    before = dtr.stats()["evictions"]
    # room for one more output after evicting two of them, not one
    dtr.eviction_threshold = ty.get_mem_status_bytes()["allocated"] - want_r.nbytes // 2
    z = x * 1.0
    assert dtr.stats()["evictions"] - before == 2
    assert ty._C.dtr_tensor_info(c) == (False, 0)
    assert ty._C.dtr_tensor_info(r)[0]
    dtr.eviction_threshold = 1 << 30
    np.testing.assert_array_equal(r.numpy(), want_r)
    np.testing.assert_array_equal(c.numpy(), want_c)
    np.testing.assert_array_equal(z.numpy(), x.numpy())


@pytest.mark.parametrize("symbolic", [False, True])
def test_traced_replay_keeps_an_input_while_bringing_back_the_next(symbolic):
    """A replay brings a node's evicted inputs back one at a time: making room for a later one
    must not evict an earlier one (the kernel would read freed memory). With room for one of
    them only, the replay raises MemoryError as the eager op does; with room, the same bits."""
    @ty.jit.trace(symbolic=symbolic)
    def f(a, b):
        return (a + b) * 2.0  # recording the mul marks a and b no longer in use

    dtr.evictee_minimum_size = 0
    dtr.enable()
    x = ty.tensor(np.random.default_rng(6).standard_normal((64, 64)).astype(np.float32))
    a, b = x * 0.5, x + 1.0
    want = f(a, b).numpy()  # records
    nbytes = want.nbytes
    for drop_a in (False, True):
        assert b._drop() and (not drop_a or a._drop())
        dtr.stats()  # lets go of the recording's dead lineage
        live = ty.get_mem_status_bytes()["allocated"]
        # room for one of them only: the first must stay while the second comes back
        dtr.eviction_threshold = live + (nbytes if drop_a else 0) + nbytes // 2
        with pytest.raises(MemoryError, match="eviction threshold"):
            f(a, b)
        with pytest.raises(MemoryError, match="eviction threshold"):
            (a + b) * 2.0  # eager: the same
        dtr.eviction_threshold = live + 4 * nbytes
        np.testing.assert_array_equal(f(a, b).numpy(), want)


def _program_training(prog, init, batches, threshold):
    """Loss and parameters after each SGD step of a random program (trace_progs), eager, with
    DTR evicting above `threshold` live bytes past the start (None: no DTR); and the peak."""
    env = {n: ty.Parameter(v) for (n, _, _), v in zip(prog.exts, init)}
    params = [env[n] for n, _, _ in prog.exts]
    f = prog.build(env)
    gm = ty.autodiff.GradManager().attach(params)
    opt = ty.optimizer.SGD(params, lr=0.01, momentum=0.9)
    data = [[ty.tensor(x) for x in b] for b in batches]
    # garbage an earlier test left (tensors in reference cycles) freed now, not by a collection
    # in the middle of the run, which would make the measured peak too small for the threshold
    gc.collect()
    base = ty.get_mem_status_bytes()["allocated"]
    ty.reset_peak_memory()
    if threshold is not None:
        dtr.evictee_minimum_size = 0
        dtr.eviction_threshold = base + threshold
        dtr.enable()
    hist = []
    for args in data:
        with gm:
            outs = f(*args)
            loss = F.sum(outs[0])
            for o in outs[1:]:
                loss = loss + F.sum(o)
            gm.backward(loss)
        opt.step().clear_grad()
        hist.append([loss.numpy()] + [p.numpy() for p in params])
    dtr.disable()
    return hist, ty.get_max_mem_bytes() - base


_EVICTED = []


@pytest.mark.parametrize("index", range(40))
def test_random_program_training_with_dtr_is_bitwise_eager(index):
    import trace_progs as tp
    prog = tp.generate("sgd", index)
    rng = np.random.default_rng([tp.SEED, 300, index])
    init = [tp.values(rng, s, d) for _, s, d in prog.exts]
    batches = [[tp.values(rng, s, d) for _, s, d in prog.args] for _ in range(3)]
    want, peak = _program_training(prog, init, batches, None)
    for fraction in (0.5, 1.0, 2.0, 4.0, 8.0):  # tiny programs: the tightest threshold that fits
        before = dtr.stats()["evictions"]
        try:
            got, _ = _program_training(prog, init, batches, int(peak * fraction))
            break
        except MemoryError as e:
            dtr.disable()
            assert "eviction threshold" in str(e)
            if fraction == 8.0:
                raise
    _EVICTED.append(dtr.stats()["evictions"] > before)
    for step, (a, b) in enumerate(zip(want, got)):
        for x, y in zip(a, b):
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), \
                f"step {step} differs with DTR\n{prog.describe()}"


def test_random_programs_did_evict():
    """The programs above exercised DTR: most of them evicted something."""
    if len(_EVICTED) < 40:
        pytest.skip("run with the random program tests")
    assert sum(_EVICTED) >= len(_EVICTED) // 2, _EVICTED
    print("programs that evicted:", sum(_EVICTED), "of", len(_EVICTED))


def test_checkpoint_saved_under_dtr_resumes_bitwise(tmp_path):
    """A DTR run saves model and optimizer state mid-training (whatever is evicted then comes
    back for the save), a fresh process-like restart loads it and trains on under DTR: the
    parameters equal an uninterrupted run's without DTR, bit for bit."""
    batches = _batches((512, 64), 4)
    p_ref, l_ref, peak0, _ = _train(_MLP, batches)

    def fresh():
        ty.random.seed(3)
        model = _MLP()
        opt = ty.optimizer.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, opt, ty.autodiff.GradManager().attach(model.parameters())

    def steps(model, opt, gm, data):
        dtr.evictee_minimum_size = 0
        base = ty.get_mem_status_bytes()["allocated"]
        losses = []
        for x, y in data:
            dtr.eviction_threshold = base + int(peak0 * 0.5)
            dtr.enable()
            with gm:
                loss = F.nn.cross_entropy(model(ty.tensor(x)), ty.tensor(y))
                gm.backward(loss)
            opt.step().clear_grad()
            losses.append(loss.numpy())
        return losses

    before = dtr.stats()["evictions"]
    model, opt, gm = fresh()
    losses = steps(model, opt, gm, batches[:2])
    path = str(tmp_path / "ckpt.tyc")
    ty.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)  # still under DTR
    dtr.disable()
    del model, opt, gm
    model, opt, gm = fresh()
    state = ty.load(path)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    losses += steps(model, opt, gm, batches[2:])
    dtr.disable()
    assert dtr.stats()["evictions"] > before
    for a, b in zip(l_ref + p_ref, losses + [p.numpy() for p in model.parameters()]):
        np.testing.assert_array_equal(a, b)
