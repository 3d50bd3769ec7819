"""op_db rows of the arrange family (see op_db.py): concat, stack, split, repeat, tile, pad,
roll, flip."""
import numpy as np

import tianyuan.functional as F

from .op_db import OpInfo, Sample, rand  # noqa: F401

DT = ("float32", "float64", "int32")


def _concat_samples(rng):
    return [Sample(rand(rng, (2, 3)), rand(rng, (4, 3)), axis=0),
            Sample(rand(rng, (2, 3)), rand(rng, (2, 1)), rand(rng, (2, 0)), axis=-1),
            Sample(rand(rng, (0, 3)), rand(rng, (2, 3)), axis=0),
            Sample(rand(rng, (2, 3, 4)), rand(rng, (2, 2, 4)), rand(rng, (2, 1, 4)), axis=1),
            Sample(rand(rng, (5,)), axis=0)]


def _stack_samples(rng):
    return [Sample(rand(rng, (2, 3)), rand(rng, (2, 3)), axis=0),
            Sample(rand(rng, (2, 3)), rand(rng, (2, 3)), rand(rng, (2, 3)), axis=-1),
            Sample(rand(rng, ()), rand(rng, ()), axis=0),
            Sample(rand(rng, (0, 2)), rand(rng, (0, 2)), axis=1)]


def _split_samples(rng):
    return [Sample(rand(rng, (6, 2)), n=3, axis=0), Sample(rand(rng, (2, 7)), n=3, axis=1),
            Sample(rand(rng, (2, 7, 3)), n=[2, 5], axis=-2), Sample(rand(rng, (5,)), n=[0, 0, 5]),
            Sample(rand(rng, (3, 4)), n=1, axis=1), Sample(rand(rng, (0, 4)), n=2, axis=1)]


def _split(x, n, axis=0):
    return tuple(F.split(x, n, axis))


def _np_split(x, n, axis=0):
    return tuple(np.array_split(x, n, axis) if isinstance(n, int) else np.split(x, n, axis))


def _repeat_samples(rng):
    return [Sample(rand(rng, (2, 3)), repeats=2, axis=0), Sample(rand(rng, (2, 3)), repeats=3,
                                                                 axis=1),
            Sample(rand(rng, (2, 3)), repeats=2, axis=None), Sample(rand(rng, ()), repeats=3),
            Sample(rand(rng, (2, 0)), repeats=2, axis=1), Sample(rand(rng, (2, 3, 2)), repeats=0,
                                                                 axis=2),
            Sample(rand(rng, (2, 3, 2)), repeats=2, axis=-2)]


def _tile_samples(rng):
    return [Sample(rand(rng, (2, 3)), reps=(2, 1)), Sample(rand(rng, (2, 3)), reps=(2, 2, 3)),
            Sample(rand(rng, (2, 3, 2)), reps=(3,)), Sample(rand(rng, ()), reps=(2, 2)),
            Sample(rand(rng, (0, 2)), reps=(2, 2)), Sample(rand(rng, (3,)), reps=0)]


def _pad_samples(rng):
    out = []
    for mode in ("constant", "reflect", "edge"):
        out += [Sample(rand(rng, (3, 4)), pad_width=((1, 2), (2, 1)), mode=mode),
                Sample(rand(rng, (2, 3, 4)), pad_width=((0, 0), (1, 1)), mode=mode),
                Sample(rand(rng, (5,)), pad_width=((3, 0),), mode=mode),
                Sample(rand(rng, (2, 3)), pad_width=((0, 0), (0, 0)), mode=mode)]
    out += [Sample(rand(rng, (2, 3)), pad_width=((1, 1), (2, 0)), constant_value=1.5),
            Sample(rand(rng, (0, 3)), pad_width=((1, 0), (1, 1)), constant_value=-1.0),
            Sample(rand(rng, ()), pad_width=())]
    return out


def _np_pad(x, pad_width, mode="constant", constant_value=0.0):
    if x.ndim == 0:
        return x.copy()
    pw = list(pad_width) + [(0, 0)] * (x.ndim - len(pad_width))
    if mode == "constant":
        return np.pad(x, pw, mode="constant", constant_values=constant_value)
    return np.pad(x, pw, mode=mode)


def _roll_samples(rng):
    return [Sample(rand(rng, (3, 4)), shift=1, axis=1), Sample(rand(rng, (3, 4)), shift=-5,
                                                               axis=0),
            Sample(rand(rng, (3, 4)), shift=5), Sample(rand(rng, (2, 3, 4)), shift=(1, -2),
                                                       axis=(0, 2)),
            Sample(rand(rng, (2, 3, 4)), shift=(1, 2), axis=(1, 1)), Sample(rand(rng, (0, 3)),
                                                                             shift=2, axis=0),
            Sample(rand(rng, ()), shift=3)]


def _flip_samples(rng):
    return [Sample(rand(rng, (3, 4)), axis=0), Sample(rand(rng, (3, 4)), axis=(0, 1)),
            Sample(rand(rng, (2, 3, 4)), axis=-1), Sample(rand(rng, (0, 3)), axis=1),
            Sample(rand(rng, (5,)), axis=None), Sample(rand(rng, ()), axis=None)]


ROWS = [
    OpInfo("concat", lambda *xs, axis=0: F.concat(xs, axis),
           lambda *xs, axis=0: np.concatenate(xs, axis), _concat_samples, dtypes=DT),
    OpInfo("stack", lambda *xs, axis=0: F.stack(xs, axis), lambda *xs, axis=0: np.stack(xs, axis),
           _stack_samples, ops=["concat"], dtypes=DT),
    OpInfo("split", _split, _np_split, _split_samples, dtypes=DT),
    OpInfo("repeat", F.repeat, lambda x, repeats, axis=None: np.repeat(x, repeats, axis),
           _repeat_samples, dtypes=DT),
    OpInfo("tile", F.tile, np.tile, _tile_samples, dtypes=DT),
    OpInfo("pad", F.nn.pad, _np_pad, _pad_samples, ops=["pad", "pad_grad"],
           dtypes=("float32", "float64")),
    OpInfo("roll", F.roll, lambda x, shift, axis=None: np.roll(x, shift, axis), _roll_samples,
           dtypes=DT),
    OpInfo("flip", F.flip, lambda x, axis=None: np.flip(x, axis), _flip_samples, dtypes=DT),
]
