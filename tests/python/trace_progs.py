"""Random straight-line tensor programs for the jit.trace property tests (test_trace_property.py).

``generate(kind, index)`` draws a program deterministically from ``numpy.random.default_rng(
[SEED, kind, index])``: 3-12 ops from a pool (elementwise unary / binary with broadcasting,
also against a reversed view or a keepdims reduction of the same value; Python literals;
exp / log / sqrt on safe domains; reductions with axes and keepdims; reshape / flatten /
transpose / expand_dims / squeeze / getitem; matmul; concat; where; softmax; astype between
float32, float16 and int32; setitem on a copy; tensors made in the body from host data or by
F.full / F.ones / F.arange, or from ``HOST``, a Python float of the caller's; repeated
subexpressions; in-place updates of externals; values
stored in a global list ``SINK`` instead of returned) over random shapes (0-d, empty,
broadcastable). Its inputs are the function's tensor arguments ``a0, a1, ...`` and
*externals* ``e0, e1, ...`` (``p0, ...``, ``Parameter``s, in differentiable programs): names
the function reads from its enclosing (global) scope, as a model's parameters are. Shapes and
dtypes are tracked here with numpy's rules (each statement's comment), so the program is
valid by construction; ``Program.src`` is Python source, printed in failure messages.
Reproduce one with::

    cd tests/python && PYTHONPATH=../../python python -c \\
        "import trace_progs as t; print(t.generate('fwd', 17).describe())"
"""
import numpy as np

SEED = 20240611
KINDS = {"fwd": 0, "grad": 1, "sgd": 2}


class Var:
    def __init__(self, name, shape, dtype, kind, expr=None):
        self.name, self.shape, self.dtype, self.kind = name, tuple(shape), dtype, kind
        self.expr = expr  # the expression that computed it (None: an input, or written to)
        self.uses = 0

    @property
    def size(self):
        return int(np.prod(self.shape)) if self.shape else 1


class Program:
    """A generated program: ``src`` defines ``f(a0, ...)``; ``args`` / ``exts`` are
    ``(name, shape, dtype)`` of the arguments and externals."""

    def __init__(self, kind, index, src, args, exts, nout, sinks):
        self.kind, self.index, self.src = kind, index, src
        self.args, self.exts, self.nout = args, exts, nout
        self.sinks = sinks  # values the body appends to the global list SINK

    def build(self, env):
        """The function ``f`` with ``env`` (name -> tensor; and ``HOST``, a float, and
        ``SINK``, a list) as its global scope; the dict is kept, so rebinding ``env[name]``
        changes what ``f`` reads."""
        import tianyuan as ty
        import tianyuan.functional as F
        env.update({"F": F, "ty": ty})
        env.setdefault("HOST", 0.5)
        env.setdefault("SINK", [])
        exec(compile(self.src, f"<trace_prog {self.kind}#{self.index}>", "exec"), env)
        return env["f"]

    def describe(self):
        head = f"# program {self.kind}#{self.index} (trace_progs.generate({self.kind!r}, " \
               f"{self.index}))\n"
        sig = "".join(f"#   arg {n}: {s} {d}\n" for n, s, d in self.args)
        ext = "".join(f"#   external {n}: {s} {d}\n" for n, s, d in self.exts)
        return head + sig + ext + self.src

    def __repr__(self):
        return f"Program({self.kind}#{self.index})"


def values(rng, shape, dtype):
    """Fresh input values of a shape and dtype."""
    if dtype == "int32":
        return rng.integers(-6, 7, size=shape).astype("int32")
    return (rng.standard_normal(shape) * 2).astype(dtype)


def _fmt_float(x):
    return repr(float(x)) if x >= 0 else f"({float(x)!r})"


class _Gen:
    def __init__(self, rng, diff):
        self.rng = rng
        self.diff = diff            # differentiable program: float32 only, params as externals
        self.pool = []              # Var
        self.args, self.exts = [], []
        self.lines = []
        self.nvar = 0
        self.sinks = 0

    # ---- helpers ----
    def r(self, n):
        return int(self.rng.integers(n))

    def coin(self, p=0.5):
        return bool(self.rng.random() < p)

    def choice(self, seq):
        return seq[self.r(len(seq))]

    def dim(self):
        u = self.rng.random()
        if u < 0.07:
            return 0
        if u < 0.27:
            return 1
        return int(self.rng.integers(2, 6))

    def shape(self):
        nd = self.choice([0, 1, 1, 2, 2, 2, 3, 3])
        return tuple(self.dim() for _ in range(nd))

    def bshape(self, shape):
        """A shape broadcastable against ``shape``: a suffix, with some dims set to 1."""
        k = self.r(len(shape) + 1)
        out = [1 if self.coin(0.3) else d for d in shape[len(shape) - k:]]
        if self.coin(0.15) and len(out) < 3:  # a leading 1 grows the result's rank
            out = [1] + out
        return tuple(out)

    def new_input(self, shape, dtype="float32", external=None):
        if external is None:
            external = self.coin(0.35)
        if self.diff and external:
            name = f"p{len(self.exts)}"
        else:
            name = f"e{len(self.exts)}" if external else f"a{len(self.args)}"
        v = Var(name, shape, dtype, "ext" if external else "arg")
        (self.exts if external else self.args).append(v)
        self.pool.append(v)
        return v

    def pick(self, pred=lambda v: True):
        """A pool value (recent ones favoured) satisfying pred, or None."""
        cands = [v for v in self.pool if pred(v)]
        if not cands:
            return None
        w = np.array([1.0 + 2.0 * (v.kind == "var") + 2.0 * (v.uses == 0) + 0.5 * i
                      for i, v in enumerate(cands)])
        return cands[int(self.rng.choice(len(cands), p=w / w.sum()))]

    def emit(self, expr, shape, dtype, *operands):
        for o in operands:
            o.uses += 1
        name = f"v{self.nvar}"
        self.nvar += 1
        self.lines.append((f"{name} = {expr}", f"{tuple(shape)} {dtype}"))
        v = Var(name, shape, dtype, "var", expr)
        self.pool.append(v)
        return v

    def floats(self, v):
        return v.dtype in ("float32", "float16")

    # ---- the op pool: each returns a new Var or None when it does not apply ----
    def op_unary(self):
        v = self.pick(lambda v: self.floats(v) or (v.dtype == "int32" and not self.diff))
        if v is None:
            return None
        n = v.name
        if v.dtype == "int32":
            expr = self.choice([f"-{n}", f"F.abs({n})", f"{n} * {n}"])
        else:
            expr = self.choice([
                f"-{n}", f"F.abs({n})", f"F.relu({n})", f"F.tanh({n})", f"F.sigmoid({n})",
                f"F.sin({n})", f"F.square({n})", f"F.exp(F.clip({n}, -4.0, 4.0))",
                f"F.log(F.abs({n}) + 0.5)", f"F.sqrt(F.abs({n}) + 0.25)", f"F.exp({n} * 0.1)",
                f"F.nn.relu({n}) * {n}"])
        return self.emit(expr, v.shape, v.dtype, v)

    def op_literal(self):
        v = self.pick(lambda v: self.floats(v) or (v.dtype == "int32" and not self.diff))
        if v is None:
            return None
        n = v.name
        if v.dtype == "int32":
            c = int(self.rng.integers(-3, 4))
            expr = self.choice([f"{n} + {c}", f"{n} * {c}", f"{c} - {n}", f"{n} - {c}"])
        else:
            c = _fmt_float(self.choice([2.5, 0.5, -1.25, 3.0, 0.1, 1.0]))
            expr = self.choice([f"{n} + {c}", f"{n} * {c}", f"{c} - {n}", f"{n} / 4.0",
                                f"{c} * {n}", f"{n} ** 2", f"{n} - {c}"])
        return self.emit(expr, v.shape, v.dtype, v)

    def op_binary(self):
        v = self.pick(lambda v: v.dtype in ("float32", "int32"))
        if v is None:
            return None
        if len(v.shape) >= 1 and self.coin(0.15):  # with a reversed view of itself
            a = v.name
            rev = f"{a}[::-1]" if len(v.shape) == 1 or self.coin(0.5) else f"{a}[:, ::-1]"
            expr = self.choice([f"{a} + {rev}", f"{a} * {rev}", f"F.maximum({a}, {rev})",
                                f"{a} - {rev}"])
            return self.emit(expr, v.shape, v.dtype, v)
        if len(v.shape) >= 1 and v.dtype == "float32" and self.coin(0.12):
            # against a keepdims reduction of itself (centering, normalising), either order
            a = v.name
            ax = int(self.rng.integers(-len(v.shape), len(v.shape)))
            red = f"F.{self.choice(['mean', 'sum', 'max'])}({a}, axis={ax}, keepdims=True)"
            if "max" in red and v.shape[ax] == 0:
                red = red.replace("max", "sum")
            op = self.choice(["-", "+", "*"])
            expr = f"{red} {op} {a}" if self.coin(0.5) else f"{a} {op} {red}"
            return self.emit(expr, v.shape, v.dtype, v)
        compat = [w for w in self.pool if w.dtype == v.dtype and _bcast(v.shape, w.shape)
                  is not None]
        if compat and self.coin(0.7):
            w = self.pick(lambda w: w in compat)
        else:
            w = self.new_input(self.bshape(v.shape), v.dtype)
        if self.coin(0.5):
            v, w = w, v
        a, b = v.name, w.name
        if v.dtype == "int32":
            expr = self.choice([f"{a} + {b}", f"{a} - {b}", f"{a} * {b}",
                                f"F.maximum({a}, {b})", f"F.minimum({a}, {b})"])
        else:
            expr = self.choice([f"{a} + {b}", f"{a} - {b}", f"{a} * {b}",
                                f"F.maximum({a}, {b})", f"F.minimum({a}, {b})",
                                f"{a} / (F.abs({b}) + 1.0)", f"F.add({a}, {b})"])
        return self.emit(expr, _bcast(v.shape, w.shape), v.dtype, v, w)

    def op_reduce(self):
        v = self.pick(lambda v: v.dtype in ("float32", "int32"))
        if v is None:
            return None
        nd = len(v.shape)
        if nd == 0 or self.coin(0.2):
            axis = None
            axes = tuple(range(nd))
        elif self.coin(0.7):
            axis = int(self.rng.integers(-nd, nd))
            axes = (axis % nd,)
        else:
            k = int(self.rng.integers(1, nd + 1))
            axes = tuple(sorted(int(a) for a in self.rng.choice(nd, size=k, replace=False)))
            axis = axes
        keep = self.coin(0.4)
        fns = ["sum", "sum", "max", "min"] + (["mean"] if v.dtype == "float32" else [])
        fn = self.choice(fns)
        if fn in ("max", "min") and any(v.shape[a] == 0 for a in axes):
            fn = "sum"
        out = list(v.shape)
        for a in sorted(axes, reverse=True):
            if keep:
                out[a] = 1
            else:
                del out[a]
        kw = f", keepdims=True" if keep else ""
        return self.emit(f"F.{fn}({v.name}, axis={axis!r}{kw})", tuple(out), v.dtype, v)

    def op_reshape(self):
        v = self.pick(lambda v: True)
        if v is None:
            return None
        n = v.size
        if n == 0:
            opts = [(0,), (0, 1), (1, 0, 2)]
        else:
            fac = _factors(n)
            self.rng.shuffle(fac)
            k = self.r(3) + 1
            dims = [1] * k
            for f in fac:
                dims[self.r(k)] *= f
            opts = [(n,), tuple(dims), (1, n), (n, 1)]
        target = self.choice(opts)
        if int(np.prod(target)) != n:
            target = (n,)
        if tuple(target) == v.shape:
            return None
        shown = list(target)
        if n and self.coin(0.4):
            shown[self.r(len(shown))] = -1
        if self.coin(0.5):
            return self.emit(f"F.reshape({v.name}, {tuple(shown)!r})", target, v.dtype, v)
        return self.emit(f"{v.name}.reshape({', '.join(map(str, shown))})", target, v.dtype, v)

    def op_flatten(self):
        v = self.pick(lambda v: len(v.shape) >= 2)
        if v is None:
            return None
        start = self.r(len(v.shape) - 1)
        out = v.shape[:start] + (int(np.prod(v.shape[start:])),)
        return self.emit(f"F.flatten({v.name}, {start})", out, v.dtype, v)

    def op_transpose(self):
        v = self.pick(lambda v: len(v.shape) >= 2)
        if v is None:
            return None
        nd = len(v.shape)
        perm = tuple(int(p) for p in self.rng.permutation(nd))
        if perm == tuple(range(nd)):
            perm = perm[::-1]
        out = tuple(v.shape[p] for p in perm)
        if self.coin(0.3) and nd == 2:
            return self.emit(f"{v.name}.T", out, v.dtype, v)
        return self.emit(f"F.transpose({v.name}, {perm!r})", out, v.dtype, v)

    def op_expand_squeeze(self):
        v = self.pick(lambda v: len(v.shape) <= 3)
        if v is None:
            return None
        ones = [i for i, d in enumerate(v.shape) if d == 1]
        if ones and self.coin(0.5):
            a = self.choice(ones)
            out = v.shape[:a] + v.shape[a + 1:]
            return self.emit(f"F.squeeze({v.name}, {a})", out, v.dtype, v)
        a = self.r(len(v.shape) + 1)
        out = v.shape[:a] + (1,) + v.shape[a:]
        return self.emit(f"F.expand_dims({v.name}, {a})", out, v.dtype, v)

    def op_getitem(self):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return None
        parts = []
        nd = len(v.shape)
        k = self.r(nd) + 1
        for d in v.shape[:k]:
            u = self.rng.random()
            if u < 0.3 and d > 0:
                parts.append(str(int(self.rng.integers(-d, d))))
            elif u < 0.85:
                start = self.choice([None, 0, 1, -1, -2, 2])
                stop = self.choice([None, None, 3, -1, 1, 4])
                step = self.choice([None, None, 1, 2, -1, -2])
                s = ("" if start is None else str(start)) + ":" + \
                    ("" if stop is None else str(stop))
                if step is not None:
                    s += f":{step}"
                parts.append(s)
            else:
                parts.append(":")
        if self.coin(0.15):
            parts.insert(self.r(len(parts) + 1), "None")
        if self.coin(0.15) and len(parts) < nd:
            parts.insert(0, "...")
        if all(p in (":", "...", "::1", "0:", ":") for p in parts):
            parts[-1] = "::-1"
        key = ", ".join(parts)
        try:  # numpy's indexing rules give the shape (or reject the key)
            src = np.arange(v.size).reshape(v.shape)
            got = eval(f"_a[{key}]", {"_a": src})
        except IndexError:
            return None
        if got.shape == src.shape and np.array_equal(got, src):
            return None  # an identity key returns the tensor itself (not an op's output)
        out = got.shape
        return self.emit(f"{v.name}[{key}]", out, v.dtype, v)

    def op_matmul(self):
        v = self.pick(lambda v: len(v.shape) >= 1 and v.dtype == "float32")
        if v is None:
            return None
        nd = len(v.shape)
        u = self.rng.random()
        if u < 0.3 and nd >= 2:  # v @ v^T over the last two dims
            out = v.shape[:-1] + (v.shape[-2],)
            return self.emit(f"F.matmul({v.name}, {v.name}, transpose_b=True)", out,
                             v.dtype, v)
        if u < 0.4 and nd == 1:
            return self.emit(f"F.matmul({v.name}, {v.name})", (), v.dtype, v)
        k = v.shape[-1]
        m = self.choice([1, 2, 3, 4, 5])
        w = self.pick(lambda w: w.dtype == "float32" and w.shape == (k, m) and w is not v)
        if w is None:
            w = self.new_input((k, m), "float32", external=self.coin(0.6))
        out = (v.shape[:-1] if nd >= 2 else ()) + (m,)
        expr = f"F.matmul({v.name}, {w.name})" if self.coin(0.7) else f"{v.name} @ {w.name}"
        return self.emit(expr, out, v.dtype, v, w)

    def op_concat(self):
        v = self.pick(lambda v: len(v.shape) >= 1)
        if v is None:
            return None
        nd = len(v.shape)
        axis = self.r(nd)

        def fits(w):
            return (w is not v and w.dtype == v.dtype and len(w.shape) == nd and
                    all(a == b for i, (a, b) in enumerate(zip(w.shape, v.shape)) if i != axis))
        w = self.pick(fits) if self.coin(0.6) else None
        if w is None and self.coin(0.5):
            shape = list(v.shape)
            shape[axis] = self.choice([0, 1, 2, 3])
            w = self.new_input(tuple(shape), v.dtype)
        if w is None:
            neg = f"{v.name} * 2" if v.dtype == "int32" else f"{v.name} * 0.5"
            out = list(v.shape)
            out[axis] *= 2
            shown = axis if self.coin(0.7) else axis - nd
            return self.emit(f"F.concat([{v.name}, {neg}], axis={shown})", tuple(out),
                             v.dtype, v)
        out = list(v.shape)
        out[axis] += w.shape[axis]
        pair = [v, w] if self.coin(0.5) else [w, v]
        return self.emit(f"F.concat([{pair[0].name}, {pair[1].name}], axis={axis})",
                         tuple(out), v.dtype, v, w)

    def op_where(self):
        v = self.pick(lambda v: v.dtype in ("float32", "int32"))
        if v is None:
            return None
        w = self.pick(lambda w: w.dtype == v.dtype and _bcast(v.shape, w.shape) is not None)
        if w is None or self.coin(0.3):
            w = self.new_input(self.bshape(v.shape), v.dtype)
        s = _bcast(v.shape, w.shape)
        c = self.pick(lambda c: c.dtype in ("float32", "int32") and
                      _bcast(s, c.shape) is not None)
        s = _bcast(s, c.shape)
        cmp = self.choice([">", "<", ">=", "<="])
        lit = "0" if c.dtype == "int32" else "0.0"
        return self.emit(f"F.where({c.name} {cmp} {lit}, {v.name}, {w.name})", s, v.dtype,
                         v, w, c)

    def op_softmax(self):
        v = self.pick(lambda v: len(v.shape) >= 1 and v.dtype == "float32")
        if v is None:
            return None
        nd = len(v.shape)
        axis = int(self.rng.integers(-nd, nd))
        fn = "F.softmax" if self.coin(0.7) else "F.nn.softmax"
        return self.emit(f"{fn}({v.name}, axis={axis})", v.shape, v.dtype, v)

    def op_astype(self):
        v = self.pick(lambda v: True)
        if v is None:
            return None
        to = {"float32": ["float16", "int32"], "float16": ["float32"],
              "int32": ["float32"]}[v.dtype]
        d = self.choice(to)
        expr = f"{v.name}.astype({d!r})" if self.coin(0.6) else f"F.astype({v.name}, {d!r})"
        return self.emit(expr, v.shape, d, v)

    def op_setitem(self):
        """A copy written through a basic index: ``w = F.copy(v); w[key] = value``."""
        v = self.pick(lambda v: len(v.shape) >= 1 and v.dtype in ("float32", "int32"))
        if v is None:
            return None
        parts = []
        for d in v.shape[: self.r(len(v.shape)) + 1]:
            u = self.rng.random()
            if u < 0.35 and d > 0:
                parts.append(str(int(self.rng.integers(-d, d))))
            elif u < 0.8:
                parts.append(self.choice(["1:", ":-1", "::2", "::-1", "1:3", "::-2"]))
            else:
                parts.append(":")
        key = ", ".join(parts)
        try:
            dst = eval(f"_a[{key}]", {"_a": np.empty(v.shape)}).shape
        except IndexError:
            return None
        u = self.pick(lambda u: u.dtype == v.dtype and u is not v and
                      _bcast(u.shape, dst) == tuple(dst))
        if u is None or self.coin(0.3):
            val, ops = ("7" if v.dtype == "int32" else "-3.5"), [v]
        else:
            val, ops = u.name, [v, u]
        w = self.emit(f"F.copy({v.name})", v.shape, v.dtype, *ops)
        self.lines.append((f"{w.name}[{key}] = {val}", "in place"))
        w.expr = None
        return w

    def op_host_tensor(self):
        """A tensor made from host data in the body: an external of every call (fed again
        on replays, frozen without the host)."""
        v = self.pick(lambda v: v.dtype == "float32")
        if v is None:
            return None
        u = self.rng.random()
        if u < 0.3:  # HOST: a Python float of the caller's, new on every call (a schedule)
            c = self.choice(["ty.tensor(HOST)", "(ty.tensor(HOST) * 2.0 + 1.0)",
                             "F.exp(ty.tensor(HOST))"])
        elif v.shape and v.shape[-1] > 0 and u < 0.75:
            vals = [float(x) for x in np.round(self.rng.uniform(-2, 2, v.shape[-1]), 2)]
            c = f"ty.tensor({vals!r})"
        else:
            c = f"ty.tensor({float(np.round(self.rng.uniform(-2, 2), 2))!r})"
        expr = f"{v.name} * {c}" if self.coin(0.5) else f"{c} - {v.name}"
        return self.emit(expr, v.shape, v.dtype, v)

    def op_const(self):
        """Subexpressions of constants only (F.full / F.ones / F.arange, literals and host
        tensors): what constant folding may precompute."""
        v = self.pick(lambda v: v.dtype == "float32")
        if v is None:
            return None
        a, c = v.name, _fmt_float(self.choice([0.5, 1.5, -2.0, 0.25]))
        s1, s2 = self.bshape(v.shape), self.bshape(v.shape)
        forms = [(f"{a} + F.full({s1!r}, {c})", s1),
                 (f"{a} * (F.ones({s2!r}) * {c} + 1.0)", s2),
                 (f"(ty.tensor({c}) * 2.0 - 1.0) * {a}", ()),
                 (f"F.exp(F.full((), {c})) - {a}", ())]
        if v.shape:
            forms.append((f"{a} - F.arange({v.shape[-1]}) * {c}", v.shape[-1:]))
        expr, cs = self.choice(forms)
        return self.emit(expr, _bcast(v.shape, cs), v.dtype, v)

    def op_repeat(self):
        """An expression computed before, again (common subexpressions)."""
        v = self.pick(lambda v: v.kind == "var" and v.expr is not None)
        if v is None:
            return None
        return self.emit(v.expr, v.shape, v.dtype)

    def op_update(self):
        """An external updated in place by the body (running statistics, counters)."""
        e = self.pick(lambda e: e.kind == "ext" and e.dtype == "float32")
        v = self.pick(lambda v: v.dtype == "float32" and v is not e)
        if self.diff or e is None or v is None:
            return None
        red = self.choice(["F.sum", "F.mean"]) if v.size else "F.sum"
        self.lines.append((f"{e.name}._assign({e.name} * 0.5 + {red}({v.name}) * 0.25)",
                           "in-place update of an external"))
        v.uses += 1
        return e

    def op_sink(self):
        """A value the body stores outside (not returned): it must be computed too."""
        v = self.pick(lambda v: v.kind == "var")
        if self.diff or v is None:
            return None
        self.lines.append((f"SINK.append({v.name})", "kept by the caller"))
        self.sinks += 1
        return v

    def program(self, nops):
        ops = [(self.op_unary, 3), (self.op_literal, 3), (self.op_binary, 4),
               (self.op_reduce, 2), (self.op_reshape, 1), (self.op_flatten, 0.5),
               (self.op_transpose, 1), (self.op_expand_squeeze, 1), (self.op_getitem, 2),
               (self.op_matmul, 1.5), (self.op_concat, 1), (self.op_where, 1),
               (self.op_softmax, 1), (self.op_astype, 0 if self.diff else 1.5),
               (self.op_setitem, 0.7), (self.op_host_tensor, 0.5), (self.op_const, 0.7),
               (self.op_repeat, 0.7), (self.op_update, 0 if self.diff else 0.5),
               (self.op_sink, 0 if self.diff else 0.4)]
        w = np.array([p for _, p in ops], dtype=float)
        made = 0
        tries = 0
        while made < nops and tries < nops * 30:
            tries += 1
            fn = ops[int(self.rng.choice(len(ops), p=w / w.sum()))][0]
            if fn() is not None:
                made += 1
        return made


def _bcast(a, b):
    try:
        return tuple(np.broadcast_shapes(tuple(a), tuple(b)))
    except ValueError:
        return None


def _factors(n):
    out, p = [], 2
    while n > 1 and p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    if n > 1:
        out.append(n)
    return out


def generate(kind, index):
    """Program number ``index`` of a kind: 'fwd' (any dtype, externals e*), 'grad' and 'sgd'
    (float32, differentiable, Parameters p*)."""
    rng = np.random.default_rng([SEED, KINDS[kind], index])
    diff = kind != "fwd"
    g = _Gen(rng, diff)
    base = g.shape()
    for i in range(int(rng.integers(1, 3))):
        s = base if i == 0 else g.bshape(base)
        dt = "int32" if (not diff and rng.random() < 0.12) else "float32"
        g.new_input(s, dt, external=False)
    if diff:
        g.new_input(g.bshape(base), "float32", external=True)
    elif rng.random() < 0.6:
        g.new_input(g.bshape(base), "float32", external=True)
    nops = int(rng.integers(3, 13))
    g.program(nops)
    if diff:  # every Parameter reaches the loss
        for e in g.exts:
            if e.uses == 0:
                g.emit(f"F.sum({e.name} * {e.name}) * 0.5", (), "float32", e)
    computed = [v for v in g.pool if v.kind == "var"]
    if diff:
        # the loss sums every float32 value no later op used (so all computations count)
        outs = [v for v in computed if v.uses == 0 and v.dtype == "float32"]
        if not outs:
            outs = [computed[-1]]
    else:
        outs = [computed[-1]]
        rest = computed[:-1]
        for _ in range(int(rng.integers(0, 3))):
            if rest:
                o = rest[int(rng.integers(len(rest)))]
                if o not in outs:
                    outs.append(o)
    lines = [f"def f({', '.join(a.name for a in g.args)}):"]
    width = max(len(s) for s, _ in g.lines) if g.lines else 0
    for stmt, note in g.lines:
        lines.append(f"    {stmt.ljust(width)}  # {note}")
    lines.append(f"    return ({', '.join(o.name for o in outs)},)")
    src = "\n".join(lines) + "\n"
    return Program(kind, index, src, [(a.name, a.shape, a.dtype) for a in g.args],
                   [(e.name, e.shape, e.dtype) for e in g.exts], len(outs), g.sinks)
