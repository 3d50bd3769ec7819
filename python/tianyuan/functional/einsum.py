"""einsum (MegEngine's ``functional.einsum``): Einstein summation as a chain of pairwise
contractions, each one transpose + reshape + batched matmul, so it traces, deploys and
differentiates like those ops."""
import string

from .. import _C
from ..tensor import Tensor

_ops = _C.ops

__all__ = ["einsum"]

_LETTERS = set(string.ascii_letters)


def _parse_term(term, ndim, i, free):
    """The letters of one operand's term, its '...' replaced by letters from ``free``."""
    if term.count("...") > 1:
        raise ValueError(f"einsum: operand {i} has more than one '...'")
    body = term.replace("...", "")
    bad = [ch for ch in body if ch not in _LETTERS]
    if bad:
        raise ValueError(f"einsum: invalid subscript {bad[0]!r} in {term!r}")
    if "..." in term:
        nell = ndim - len(body)
        if nell < 0:
            raise ValueError(f"einsum: operand {i} has {ndim} dims, fewer than its "
                             f"subscripts {term!r}")
        at = term.index("...")
        return list(term[:at]) + free[len(free) - nell:] + list(term[at + 3:]), nell
    if len(body) != ndim:
        raise ValueError(f"einsum: operand {i} has {ndim} dims but subscripts {term!r}")
    return list(body), 0


def _parse(equation, operands):
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise ValueError(f"einsum: {len(terms)} subscripts for {len(operands)} operands")
    used = set(eq) & _LETTERS
    free = [ch for ch in string.ascii_letters if ch not in used]
    nell = max([x.ndim - len(t.replace("...", "")) for t, x in zip(terms, operands)
                if "..." in t] + [0])
    free = free[:nell]
    subs = []
    for i, (t, x) in enumerate(zip(terms, operands)):
        s, _ = _parse_term(t, x.ndim, i, free)
        subs.append(s)
    if arrow:
        out = rhs.replace("...", "".join(free))
        bad = [ch for ch in out if ch not in _LETTERS]
        if bad:
            raise ValueError(f"einsum: invalid output subscript {bad[0]!r}")
        if len(set(out)) != len(out):
            raise ValueError(f"einsum: output subscripts {rhs!r} repeat a letter")
        missing = [ch for ch in out if not any(ch in s for s in subs)]
        if missing:
            raise ValueError(f"einsum: output subscript {missing[0]!r} appears in no input")
        out = list(out)
    else:
        counts = {}
        for s in subs:
            for ch in s:
                counts[ch] = counts.get(ch, 0) + 1
        out = free + sorted(ch for ch, n in counts.items() if n == 1 and ch not in free)
    return subs, out


def _sizes(subs, operands):
    size = {}
    for s, x in zip(subs, operands):
        for ch, n in zip(s, x.shape):
            if ch in size and size[ch] != n and 1 not in (size[ch], n):
                raise ValueError(f"einsum: subscript {ch!r} has sizes {size[ch]} and {n}")
            size[ch] = n if ch not in size or size[ch] == 1 else size[ch]
    return size


def _take_diagonal(x, sub):
    """Repeated letters in one term (e.g. 'ii') reduced to one axis: the diagonal."""
    while True:
        dup = next((ch for ch in sub if sub.count(ch) > 1), None)
        if dup is None:
            return x, sub
        a, b = [i for i, ch in enumerate(sub) if ch == dup][:2]
        n = x.shape[a]
        rest = [i for i in range(len(sub)) if i not in (a, b)]
        x = x.transpose([a, b] + rest) if [a, b] + rest != list(range(len(sub))) else x
        tail = tuple(x.shape[2:])
        flat = x.reshape((n * n,) + tail)
        x = flat[0:(n - 1) * (n + 1) + 1:n + 1] if n > 0 else flat[0:0]
        sub = [dup] + [sub[i] for i in rest]


def _sum_out(x, sub, keep):
    axes = [i for i, ch in enumerate(sub) if ch not in keep]
    if not axes:
        return x, sub
    return _ops["sum"](x, axes=axes, keepdims=0), [ch for ch in sub if ch in keep]


def _contract(a, sa, b, sb, keep, size):
    """Contract two operands over their shared letters not in ``keep``."""
    batch = [ch for ch in sa if ch in sb and ch in keep]
    summed = [ch for ch in sa if ch in sb and ch not in keep]
    left = [ch for ch in sa if ch not in sb]
    right = [ch for ch in sb if ch not in sa]

    def arrange(x, s, order, shape):
        perm = [s.index(ch) for ch in order]
        if perm != list(range(len(s))):
            x = x.transpose(perm)
        full = tuple(size[ch] for ch in order)
        if tuple(x.shape) != full:
            x = _ops["broadcast_to"](x, shape=list(full))
        return x.reshape(shape)

    nb, nl, nr, ns = (_prod(size[ch] for ch in g) for g in (batch, left, right, summed))
    a3 = arrange(a, sa, batch + left + summed, (nb, nl, ns))
    b3 = arrange(b, sb, batch + summed + right, (nb, ns, nr))
    y = _ops["matmul"](a3, b3)
    sub = batch + left + right
    return y.reshape(tuple(size[ch] for ch in sub)), sub


def _prod(it):
    p = 1
    for v in it:
        p *= v
    return p


def einsum(equation, *operands):
    """Einstein summation over ``operands`` as ``equation`` says (NumPy's notation:
    ``"ij,jk->ik"``, ``"...ij,...jk"``, ``"ii->i"``; without '->' the output is the letters
    appearing once, sorted). Letters shared by operands and missing from the output are
    summed; size-1 dims broadcast."""
    if not isinstance(equation, str):
        raise TypeError(f"einsum: equation must be a str, got {type(equation).__name__}")
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands:
        raise ValueError("einsum: needs at least one operand")
    xs = [x if isinstance(x, Tensor) else Tensor(x) for x in operands]
    subs, out = _parse(equation, xs)
    size = _sizes(subs, xs)
    terms = []
    for x, s in zip(xs, subs):
        terms.append(_take_diagonal(x, s))
    acc, sacc = terms[0]
    for i in range(1, len(terms) + 1):
        later = set(out)
        for _, s in terms[i:]:
            later |= set(s)
        acc, sacc = _sum_out(acc, sacc, later)
        if i == len(terms):
            break
        b, sb = terms[i]
        rest = set(out)
        for _, s in terms[i + 1:]:
            rest |= set(s)
        b, sb = _sum_out(b, sb, rest | set(sacc))
        acc, sacc = _contract(acc, sacc, b, sb, rest, size)
    perm = [sacc.index(ch) for ch in out]
    if perm != list(range(len(sacc))):
        acc = acc.transpose(perm)
    full = [size[ch] for ch in out]
    if list(acc.shape) != full:
        acc = _ops["broadcast_to"](acc, shape=full)
    return acc
