"""Shared checks for the MegEngine-breadth tests: float64 finite differences through
GradManager, and eager == traced bitwise."""
import numpy as np

import tianyuan as ty


def t64(a):
    return ty.tensor(np.asarray(a, dtype=np.float64), dtype="float64")


def grad_check(fn, arrays, wrt=None, eps=1e-6, rtol=1e-5, atol=1e-7, seed=0):
    """fn(*tensors) -> tensor; compares d sum(fn * c) / d arrays[i] (i in wrt) from autodiff with
    central differences in float64 (c a fixed random cotangent)."""
    wrt = range(len(arrays)) if wrt is None else wrt
    xs = [t64(a) if np.asarray(a).dtype.kind == "f" else ty.tensor(a) for a in arrays]
    out = fn(*xs)
    c = np.random.default_rng(seed).standard_normal(out.shape)
    gm = ty.autodiff.GradManager().attach([xs[i] for i in wrt])
    with gm:
        y = fn(*xs)
        gm.backward((y * t64(c)).sum())
    for i in wrt:
        base = np.ascontiguousarray(arrays[i], dtype=np.float64)
        num = np.zeros_like(base)
        flat, nflat = base.reshape(-1), num.reshape(-1)
        for j in range(flat.size):
            vals = []
            for sgn in (1, -1):
                pert = flat.copy()
                pert[j] += sgn * eps
                args = list(xs)
                args[i] = t64(pert.reshape(base.shape))
                vals.append((fn(*args).numpy() * c).sum())
            nflat[j] = (vals[0] - vals[1]) / (2 * eps)
        got = xs[i].grad.numpy()
        np.testing.assert_allclose(got, num, rtol=rtol, atol=atol, err_msg=f"input {i}")


def eager_equals_traced(fn, arrays):
    """fn run eagerly and as a traced function (recording call and replay) gives the same bits."""
    xs = [ty.tensor(a) for a in arrays]
    want = fn(*xs)
    want = [w.numpy() for w in (want if isinstance(want, (list, tuple)) else [want])]
    traced = ty.jit.trace(fn)
    for _ in range(3):
        got = traced(*[ty.tensor(a) for a in arrays])
        got = [g.numpy() for g in (got if isinstance(got, (list, tuple)) else [got])]
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w)
