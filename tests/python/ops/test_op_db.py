"""Generic suites over every row of op_db: forward vs NumPy (float64 reference), non-contiguous
inputs, float64 first- and second-order finite-difference gradients, traced replays, error
cases. Each suite credits the ops that actually ran to its mode (fixture `cov`, op_coverage.py);
`make test-py` prints the measured table and fails on a gap."""
import numpy as np
import pytest

import tianyuan as ty
from tianyuan import _C

from .op_db import OP_DB

TOL = {"float16": (2e-3, 2e-3), "float64": (1e-12, 1e-12)}


def _cast_inputs(sample, dtype, info):
    out = []
    for i, a in enumerate(sample.args):
        a = np.asarray(a)
        if a.dtype == np.bool_ or i in info.nondiff_args:
            out.append(a)
        elif dtype in ("int32", "int8"):
            out.append(np.trunc(a * 3).astype(dtype))
        elif dtype == "bool":
            out.append(a.astype(bool))
        else:
            out.append(a.astype(dtype))
    return out


def _as_tuple(y):
    return tuple(y) if isinstance(y, (tuple, list)) else (y,)


def _compare(got, want, dtype, info, ctx):
    got, want = _as_tuple(got), _as_tuple(want)
    assert len(got) == len(want), ctx
    for g, w in zip(got, want):
        g = g.numpy() if isinstance(g, ty.Tensor) else np.asarray(g)
        w = np.asarray(w)
        assert g.shape == w.shape, f"{ctx}: shape {g.shape} != {w.shape}"
        if w.dtype == np.bool_ or w.dtype.kind in "iu":
            np.testing.assert_array_equal(g, w.astype(g.dtype) if g.dtype != np.bool_ else w,
                                          err_msg=ctx)
        else:
            rtol, atol = TOL.get(dtype, (info.rtol, info.atol))
            np.testing.assert_allclose(g.astype(np.float64), w, rtol=rtol, atol=atol,
                                       err_msg=ctx)


def _exact(a):
    """A tensor with a's dtype (plain ty.tensor would narrow float64 to float32)."""
    a = np.asarray(a)
    return ty.tensor(a, dtype=a.dtype)


def _run(info, arrays, sample, make=_exact):
    tensors = [make(a) for a in arrays]
    return info.fn(*tensors, **sample.kwargs)


def _ref(info, arrays, sample, dtype):
    ref_in = [a if a.dtype == np.bool_ or a.dtype.kind in "iu" else a.astype(np.float64)
              for a in arrays]
    want = info.ref(*ref_in, **sample.kwargs)
    return want


@pytest.mark.parametrize("info", OP_DB, ids=repr)
def test_forward(info, rng, cov):
    for dtype in info.dtypes:
        for sample in info.samples(rng):
            arrays = _cast_inputs(sample, dtype, info)
            ctx = f"{info.name} {dtype} {sample}"
            want = _ref(info, arrays, sample, dtype)
            if dtype in ("float16",):  # reference rounds to the storage dtype
                want = tuple(np.asarray(w).astype(np.float16).astype(np.float64)
                             if np.asarray(w).dtype.kind == "f" else w for w in _as_tuple(want))
            if dtype == "int32" and isinstance(want, np.ndarray) and want.dtype.kind == "f":
                want = want.astype(np.int32)
            with cov.ops_run() as ran:
                got = _run(info, arrays, sample)
            _compare(got, want, dtype, info, ctx)
            cov.credit("executed", ran)


def _noncontig(a):
    """A non-contiguous tianyuan tensor with a's values (transposed storage + strided view)."""
    if a.ndim == 0:
        return _exact(a)
    wide = np.repeat(a, 2, axis=-1)
    t = _exact(wide)[..., ::2]
    if a.ndim >= 2:
        t = _exact(np.ascontiguousarray(np.swapaxes(a, 0, 1))).transpose(
            [1, 0] + list(range(2, a.ndim)))
    if a.ndim >= 2 and a.shape[0] > 1 and a.shape[1] > 1:
        assert not t.is_contiguous()
    return t


@pytest.mark.parametrize("info", OP_DB, ids=repr)
def test_noncontiguous(info, rng):
    dtype = info.dtypes[0]
    for sample in info.samples(rng):
        arrays = _cast_inputs(sample, dtype, info)
        want = _run(info, arrays, sample)
        got = _run(info, arrays, sample, make=_noncontig)
        for g, w in zip(_as_tuple(got), _as_tuple(want)):
            np.testing.assert_array_equal(g.numpy(), w.numpy(), err_msg=f"{info.name} {sample}")


def _numeric_grad(f, arrays, i, eps=1e-6):
    x = arrays[i]
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        fp = f(arrays)
        flat[k] = old - eps
        fm = f(arrays)
        flat[k] = old
        g.reshape(-1)[k] = (fp - fm) / (2 * eps)
    return g


@pytest.mark.parametrize("info", [i for i in OP_DB if i.grad], ids=repr)
def test_gradient(info, rng, cov):
    for sample in info.samples(rng):
        arrays = _float64_args(info, sample)
        diff = [i for i, a in enumerate(arrays) if a.dtype == np.float64 and a.size > 0]
        if not diff:
            continue
        out0 = _as_tuple(_run(info, arrays, sample))[0]
        w = rng.uniform(0.5, 1.5, size=out0.shape)

        def loss_value(arrs):
            y = _as_tuple(_run(info, arrs, sample))[0]
            return float((y.numpy().astype(np.float64) * w).sum())

        params = [ty.Parameter(a, dtype=a.dtype) if i in diff else _exact(a)
                  for i, a in enumerate(arrays)]
        gm = ty.autodiff.GradManager().attach([params[i] for i in diff])
        with gm:
            with cov.ops_run() as ran:
                y = _as_tuple(info.fn(*params, **sample.kwargs))[0]
            gm.backward((y * ty.tensor(w, dtype="float64")).sum())
        for i in diff:
            num = _numeric_grad(loss_value, [a.copy() for a in arrays], i)
            got = params[i].grad
            got = np.zeros_like(num) if got is None else got.numpy()
            np.testing.assert_allclose(got, num, rtol=1e-3, atol=1e-5,
                                       err_msg=f"{info.name} d/dinput{i} {sample}")
        cov.credit("grad", ran)


def _float64_args(info, sample):
    return [np.array(a, dtype=np.float64) if i not in info.nondiff_args and
            np.asarray(a).dtype.kind == "f" else np.asarray(a)
            for i, a in enumerate(sample.args)]


def _grads(info, sample, arrays, diff, w):
    """d sum(f * w) / d arrays[i] for i in diff, as tensors (None: no gradient)."""
    params = [ty.Parameter(a, dtype=a.dtype) if i in diff else _exact(a)
              for i, a in enumerate(arrays)]
    gm = ty.autodiff.GradManager().attach([params[i] for i in diff])
    with gm:
        y = _as_tuple(info.fn(*params, **sample.kwargs))[0]
        gm.backward((y * ty.tensor(w, dtype="float64")).sum())
    return [params[i].grad for i in diff]


def _small_grad_samples(info, rng, limit=2, max_elems=12):
    """Up to `limit` samples with at most max_elems differentiable input elements, non-scalar
    ones first (or the smallest sample when none is that small): second-order differences
    cost 2 backward passes per element."""
    cands = []
    for sample in info.samples(rng):
        arrays = _float64_args(info, sample)
        diff = [i for i, a in enumerate(arrays) if a.dtype == np.float64 and a.size > 0]
        if diff:
            cands.append((sum(arrays[i].size for i in diff), len(cands), sample, arrays, diff))
    cands.sort(key=lambda c: (c[0] <= 1, c[0], c[1]))  # non-scalar inputs first
    small = [c for c in cands if c[0] <= max_elems][:limit] or cands[:1]
    return [c[2:] for c in small]


def _second_order(info, sample, arrays, diff, w, vs, cov):
    """Autodiff d/d(inputs, w) of S = sum_i sum(grad_i * v_i), grad = d sum(f * w) / d inputs,
    with nested GradManagers; returns ([dS/d input i for i in diff], dS/dw, ops run)."""
    params = [ty.Parameter(a, dtype=a.dtype) if i in diff else _exact(a)
              for i, a in enumerate(arrays)]
    leaves = [params[i] for i in diff]
    wp = ty.Parameter(w, dtype="float64")
    outer = ty.autodiff.GradManager().attach(leaves + [wp])
    inner = ty.autodiff.GradManager().attach(leaves)
    with outer:
        with inner:
            with cov.ops_run() as ran:
                y = _as_tuple(info.fn(*params, **sample.kwargs))[0]
            inner.backward((y * wp).sum())
        gs = [p.grad for p in leaves]
        for p in leaves:
            p.grad = None
        terms = [(g * ty.tensor(v, dtype="float64")).sum() for g, v in zip(gs, vs)
                 if g is not None]
        outer.backward(sum(terms[1:], terms[0]) if terms else None)
    return [p.grad for p in leaves], wp.grad, ran


@pytest.mark.parametrize("info", [i for i in OP_DB if i.grad], ids=repr)
def test_gradgrad(info, rng, cov):
    """Second order (float64, small inputs): the derivatives of S = sum(grad(x, w) * v), where
    grad(x, w) = d sum(f(x) * w) / dx, with respect to x and to the output gradient w, by
    autodiff (nested GradManagers) vs central differences of the first-order autodiff
    gradient. d/dw checks that a gradient rule is itself recorded, even for linear ops."""
    picked = _small_grad_samples(info, rng)
    assert picked, f"{info.name}: no sample small enough for a second-order check"
    for sample, arrays, diff in picked:
        out0 = _as_tuple(_run(info, arrays, sample))[0]
        w = rng.uniform(0.5, 1.5, size=out0.shape)
        vs = [rng.uniform(0.5, 1.5, size=arrays[i].shape) for i in diff]

        def s_value(arrs, wv):
            gs = _grads(info, sample, arrs, diff, wv)
            return float(sum((g.numpy() * v).sum() for g, v in zip(gs, vs) if g is not None))

        got_x, got_w, ran = _second_order(info, sample, arrays, diff, w, vs, cov)
        checks = [(f"d2/dinput{i}", got_x[k],
                   _numeric_grad(lambda a: s_value(a, w), [a.copy() for a in arrays], i))
                  for k, i in enumerate(diff)]
        if w.size:
            checks.append(("d2/dw", got_w,
                           _numeric_grad(lambda ws: s_value(arrays, ws[0]), [w.copy()], 0)))
        for what, got, num in checks:
            got = np.zeros_like(num) if got is None else got.numpy()
            np.testing.assert_allclose(got, num, rtol=1e-3, atol=1e-5,
                                       err_msg=f"{info.name} {what} {sample}")
    cov.credit("gradgrad", ran)


def test_every_row_has_error_cases():
    missing = [info.name for info in OP_DB if not info.errors]
    assert not missing, f"op_db rows without errors= cases: {missing}"


@pytest.mark.parametrize("info", [i for i in OP_DB if i.errors], ids=repr)
def test_errors(info, cov):
    """Each error case raises its exception type with its message fragment. It counts for an
    op only when that op's dispatch raised (the C error, named after the op, is the message):
    one of the row's table ops, or any op for rows of composite functions. An error raised
    before the dispatcher (argument checks in Python) must name the row."""
    for case in info.errors:
        with pytest.raises(case.exc) as caught:
            with cov.error_case() as failed:
                case.fn()
        msg = str(caught.value)
        assert case.fragment in msg, f"{info.name} {case}: message {msg!r}"
        if failed[0] is None:
            assert msg.startswith((info.name, *info.ops)), f"{info.name} {case}: {msg!r}"
            continue
        table_ops = [op for op in info.ops if op in _C.ops]
        assert failed[0] in table_ops or not table_ops, \
            f"{info.name} {case}: raised by {failed[0]}, not by {table_ops}: {msg!r}"
        cov.credit("errors", {failed[0]})


# output shape depends on values (TY_F_DYN: cond_take, non_zero, nms): not replayable
_DYNAMIC_OPS = {n for n, op in _C.ops.items() if op.info["flags"] & (1 << 4)}


@pytest.mark.parametrize("symbolic", [False, True], ids=["computed", "symbolic"])
@pytest.mark.parametrize("info", OP_DB, ids=repr)
def test_traced_replays_are_bitwise_eager(info, symbolic, rng, cov):
    """RELIABILITY.md N4: the recording call and three replays (new input values each time)
    give exactly the eager bits, whether the recording computes (symbolic=False) or only
    records and computes the graph at the end of the call (symbolic=True)."""
    from tianyuan.jit import TraceError, trace
    dtype = info.dtypes[0]
    dynamic = bool(_DYNAMIC_OPS & set(info.ops))
    ran = set()
    for sample in info.samples(rng):
        fn = trace(lambda *ts, _s=sample: info.fn(*ts, **_s.kwargs), symbolic=symbolic)
        if dynamic and symbolic:  # the output shape is unknown until values are computed
            arrays = _cast_inputs(sample, dtype, info)
            with pytest.raises(TraceError, match="symbolic"):
                fn(*[_exact(a) for a in arrays])
            break
        for call in range(4):
            arrays = _cast_inputs(sample, dtype, info)
            if call and arrays:  # fresh values of the same shapes
                arrays = [np.asarray(a)[::-1].copy() if np.asarray(a).ndim else a for a in arrays]
            ty.random.seed(call)
            want = _run(info, arrays, sample)
            ty.random.seed(call)
            if dynamic and call:
                with pytest.raises(TraceError):
                    fn(*[_exact(a) for a in arrays])
                break
            with cov.ops_run() as ran_now:
                got = fn(*[_exact(a) for a in arrays])
            ran |= ran_now
            for g, w in zip(_as_tuple(got), _as_tuple(want)):
                np.testing.assert_array_equal(g.numpy(), w.numpy(),
                                              err_msg=f"{info.name} call {call} {sample}")
    cov.credit("symbolic" if symbolic else "traced", ran)
