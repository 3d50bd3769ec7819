"""Run by test_dist_comm.py under mpirun: every rank applies the collective ops through
tianyuan.distributed._comm (eager, with gradients, and traced) and checks them against NumPy
on values it computes for every rank. Prints "rank R: ok"; raises on the first mismatch."""
import os
import sys

import numpy as np

sys.path.insert(0, os.environ.get("TY_PYTHON_DIR") or
                os.path.join(os.path.dirname(__file__), "..", "..", "python"))

import tianyuan as ty  # noqa: E402
from tianyuan.distributed import _comm as comm  # noqa: E402
from tianyuan.jit import trace  # noqa: E402


def value(r, shape=(4, 3)):
    """Rank r's input: distinct per rank, multiples of 1/4 (every sum order is exact)."""
    n = int(np.prod(shape))
    return ((np.arange(n) * 0.25 + r * 1.5 - (np.arange(n) * 7 + r * 3) % 5)
            .reshape(shape).astype(np.float32))


def check(got, want, what):
    got = got.numpy() if isinstance(got, ty.Tensor) else np.asarray(got)
    np.testing.assert_array_equal(got, want, err_msg=what)


def eager(r, n):
    xs = [value(q, (2 * n, 3)) for q in range(n)]
    x = ty.tensor(xs[r])
    check(comm.all_reduce(x), sum(xs[1:], xs[0]), "all_reduce sum")
    check(comm.all_reduce(x, "max"), np.max(xs, axis=0), "all_reduce max")
    check(comm.all_reduce(x, "min"), np.min(xs, axis=0), "all_reduce min")
    check(comm.broadcast(x, root=n - 1), xs[n - 1], "broadcast")
    check(comm.all_gather(x), np.concatenate(xs), "all_gather")
    total = sum(xs[1:], xs[0])
    check(comm.reduce_scatter(x), np.split(total, n)[r], "reduce_scatter")
    check(comm.reduce(x, root=0), total if r == 0 else np.zeros_like(total), "reduce")
    gathered = np.concatenate(xs)
    check(comm.gather(x, root=0), gathered if r == 0 else np.zeros_like(gathered), "gather")
    check(comm.scatter(x, root=1), np.split(xs[1], n)[r], "scatter")
    check(comm.all_to_all(x), np.concatenate([np.split(xs[q], n)[r] for q in range(n)]),
          "all_to_all")
    ints = ty.tensor(np.array([r, 2 * r], dtype=np.int32), dtype="int32")
    check(comm.all_reduce(ints), np.array([sum(range(n)), 2 * sum(range(n))]), "int32 sum")
    nxt, prv = (r + 1) % n, (r - 1) % n
    if r % 2 == 0:
        comm.send(x, nxt)
        got = comm.recv((2 * n, 3), "float32", prv)
    else:
        got = comm.recv((2 * n, 3), "float32", prv)
        comm.send(x, nxt)
    check(got, xs[prv], "send/recv")


def gradients(r, n):
    """Loss = sum over ranks of (c_r * op(p_r)).sum(): each gradient is the op's adjoint."""
    cs = [value(q + 10, (n, 3)) for q in range(n)]
    ps = [value(q, (n, 3)) for q in range(n)]
    cases = {
        "all_reduce": (lambda p: comm.all_reduce(p), lambda: sum(cs[1:], cs[0])),
        "broadcast": (lambda p: comm.broadcast(p, root=1),
                      lambda: sum(cs[1:], cs[0]) if r == 1 else np.zeros_like(cs[0])),
        "all_to_all": (lambda p: comm.all_to_all(p),
                       lambda: np.concatenate([np.split(cs[q], n)[r] for q in range(n)])),
    }
    cs_gather = [value(q + 20, (n * n, 3)) for q in range(n)]  # all_gather's output shape
    cases["all_gather"] = (lambda p: comm.all_gather(p),
                           lambda: sum(np.split(c, n)[r] for c in cs_gather))
    for name, (f, want) in cases.items():
        p = ty.Parameter(ps[r])
        gm = ty.autodiff.GradManager().attach([p])
        with gm:
            y = f(p)
            c = cs_gather[r] if name == "all_gather" else cs[r]
            gm.backward((y * ty.tensor(c)).sum())
        check(p.grad, want(), f"gradient of {name}")


def traced(r, n):
    @trace(symbolic=True)
    def step(x):
        return comm.all_reduce(x * 2.0) + comm.broadcast(x, root=0)

    xs = [value(q) for q in range(n)]
    want = 2.0 * sum(xs[1:], xs[0]) + xs[0]
    for _ in range(3):
        check(step(ty.tensor(xs[r])), want, "traced step")


def deterministic(r, n):
    comm.set_deterministic(True)
    xs = [(1.0 / (3.0 + q + 0.1 * np.arange(50))) for q in range(n)]
    got = comm.all_reduce(ty.tensor(xs[r], dtype="float64")).numpy()
    level = list(xs)                       # the pairwise tree over ranks: adjacent pairs,
    while len(level) > 1:                  # an odd last one carried up
        pairs = [level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
        level = pairs + level[len(level) - len(level) % 2:]
    assert got.tobytes() == level[0].tobytes(), "deterministic sum is not the pairwise tree sum"
    comm.set_deterministic(False)


def groups(r, n):
    odd = comm.new_group(list(range(1, n, 2)))
    if r % 2:
        assert comm.rank(odd) == r // 2 and comm.size(odd) == n // 2
        x = ty.tensor(value(r))
        check(comm.all_reduce(x, group=odd), sum(value(q) for q in range(1, n, 2)), "group sum")
    else:
        assert comm.rank(odd) == -1


def asynchronous(r, n):
    """Three all_reduces in flight at once, finished in reverse order."""
    xs = [[value(q + k) for q in range(n)] for k in range(3)]
    comm.stats(reset_peak=True)
    works = [comm.all_reduce_async(ty.tensor(xs[k][r])) for k in range(3)]
    assert comm.stats()["peak_in_flight"] >= 3, comm.stats()
    for k in reversed(range(3)):
        check(works[k].wait(), sum(xs[k][1:], xs[k][0]), f"async all_reduce {k}")
    assert works[0].test() and comm.stats()["in_flight"] == 0


def skipped_collective():
    """The last rank skips an all_reduce: the others raise TimeoutError naming it within the
    0.5 s timeout, then every later collective raises at once (the communicator is broken)."""
    import time
    comm.init("mpi", timeout_s=0.5)
    r, n = comm.rank(), comm.size()
    if r == n - 1:
        time.sleep(1.5)  # outlives the others' timeout
        os._exit(0)
    start = time.monotonic()
    try:
        comm.all_reduce(ty.tensor(value(r)))
        raise AssertionError("a skipped collective did not time out")
    except TimeoutError as e:
        assert "dist_all_reduce: all_reduce: timed out after 0.5 s" in str(e), str(e)
        assert time.monotonic() - start < 5  # the timeout, plus room for a loaded machine
    try:
        comm.broadcast(ty.tensor(value(r)))
        raise AssertionError("a broken communicator ran a collective")
    except TimeoutError as e:
        assert "broken by an earlier failure" in str(e), str(e)
    print(f"rank {r}: ok", flush=True)
    os._exit(0)  # the communicator is broken: leave without waiting for the others


def main():
    if sys.argv[1:] == ["skip"]:
        skipped_collective()
    comm.init("mpi", timeout_s=60)
    r, n = comm.rank(), comm.size()
    assert comm.is_initialized() and comm.backend() == "mpi"
    eager(r, n)
    gradients(r, n)
    traced(r, n)
    deterministic(r, n)
    groups(r, n)
    asynchronous(r, n)
    comm.barrier()
    comm.finalize()
    print(f"rank {r}: ok", flush=True)


if __name__ == "__main__":
    main()
