"""op_db rows of the collective family (src/ops/dist.c), in this single process: a world of
one, where every collective is well-defined (a reduction of one rank's x is x, a gather is x
along axis 0, a send to itself waits for its recv), so the generic suites run them eagerly,
with gradients, traced and deployed. Across processes: test_dist_comm.py and
tests/dist/run.sh (mpirun)."""
import numpy as np

import tianyuan as ty
from tianyuan import _C
from tianyuan import dtype as _dt

from .op_db import Error, OpInfo, Sample, rand

_ops = _C.ops
SHAPES = [(), (0,), (5,), (3, 4), (2, 3, 2)]


def _samples(shapes=SHAPES, **kw):
    def gen(rng):
        return [Sample(rand(rng, s), **kw) for s in shapes]
    return gen


def _modes(shapes=SHAPES, **kw):
    def gen(rng):
        return [Sample(rand(rng, s), mode=m, **kw) for s in shapes for m in (0, 1, 2)]
    return gen


def _op(name):
    def fn(x, **kw):
        return _ops[name](x, **kw)
    fn.__name__ = name
    return fn


def _same(x, **kw):
    return x


def _gathered(x, **kw):
    """What a gather along axis 0 of one rank gives: x, a 0-d x as one element."""
    return x.reshape(1) if x.ndim == 0 else x


def _send_recv(x):
    """A message from this rank to itself: dist_send, then dist_recv of its shape and dtype."""
    _ops["dist_send"](x, peer=0)
    return _ops["dist_recv"](peer=0, shape=list(x.shape), dtype=_dt.code_of(x.dtype))


def _t(*shape):
    return ty.tensor(np.ones(shape, dtype=np.float32))


BLOCKS = [s for s in SHAPES if s]  # ops that split axis 0 into one block per rank

ROWS = [
    OpInfo("dist_all_reduce", _op("dist_all_reduce"), _same, _modes(),
           errors=[Error(lambda: _ops["dist_all_reduce"](_t(2), group=9), ValueError,
                         "dist_all_reduce: dist: unknown group 9"),
                   Error(lambda: _ops["dist_all_reduce"](_t(2), mode=3), ValueError,
                         "dist_all_reduce: param 'mode'")]),
    OpInfo("dist_broadcast", _op("dist_broadcast"), _same, _samples(root=0),
           errors=[Error(lambda: _ops["dist_broadcast"](_t(2), root=1), IndexError,
                         "dist_broadcast: root 1 outside a group of 1 ranks")]),
    OpInfo("dist_all_gather", _op("dist_all_gather"), _gathered, _samples(),
           errors=[Error(lambda: _ops["dist_all_gather"](_t(2), group=5), ValueError,
                         "dist_all_gather: dist: unknown group 5")]),
    OpInfo("dist_reduce_scatter", _op("dist_reduce_scatter"), _same, _modes(BLOCKS),
           errors=[Error(lambda: _ops["dist_reduce_scatter"](_t()), ValueError,
                         "dist_reduce_scatter: axis 0 of x (shape ()) must split into 1 equal "
                         "blocks")]),
    OpInfo("dist_reduce", _op("dist_reduce"), _same, _modes(root=0),
           errors=[Error(lambda: _ops["dist_reduce"](_t(2), root=2), IndexError,
                         "dist_reduce: root 2 outside a group of 1 ranks")]),
    OpInfo("dist_gather", _op("dist_gather"), _gathered, _samples(root=0),
           errors=[Error(lambda: _ops["dist_gather"](_t(2), root=3), IndexError,
                         "dist_gather: root 3 outside a group of 1 ranks")]),
    OpInfo("dist_scatter", _op("dist_scatter"), _same, _samples(BLOCKS, root=0),
           errors=[Error(lambda: _ops["dist_scatter"](_t()), ValueError,
                         "dist_scatter: axis 0 of x (shape ()) must split")]),
    OpInfo("dist_all_to_all", _op("dist_all_to_all"), _same, _samples(BLOCKS),
           errors=[Error(lambda: _ops["dist_all_to_all"](_t()), ValueError,
                         "dist_all_to_all: axis 0 of x (shape ()) must split")]),
    OpInfo("dist_send_recv", _send_recv, _same, _samples(), ops=["dist_send", "dist_recv"],
           grad=False,
           errors=[Error(lambda: _ops["dist_send"](_t(2), peer=1), IndexError,
                         "dist_send: peer 1 outside a group of 1 ranks"),
                   Error(lambda: _ops["dist_recv"](peer=0, shape=[2], dtype=0), ValueError,
                         "dist_recv: recv: rank 0 of group 0 receives from itself with no "
                         "message")]),
]
