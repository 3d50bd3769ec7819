"""Writes the seed corpus of tests/fuzz/fuzz_tym.c into tests/fuzz/corpus/: real models dumped
by trace.dump (the MLP and the small CNN of test_dump.py, and its inference layers: BatchNorm,
pools, GELU, LayerNorm + attention, softmax, concat) and the crafted files of test_dump.py (the
hand-built valid ones and every refused one but the 16 MiB metadata). The corpus is committed;
rerun this only to add seeds (file names are stable, so a rerun rewrites the same files).

    PYTHONPATH=python python tests/fuzz/make_corpus.py"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))

import tianyuan as ty  # noqa: E402
import test_dump as td  # noqa: E402

OUT = os.path.join(HERE, "corpus")


def dumped(fn, shape):
    return td.dump_fn(fn, np.random.default_rng(0).standard_normal(shape).astype(np.float32))


def one_op_models():
    """Per op of ops.def: the op on x (float32, (-1, 2, 4, 4)), a float32 weight (2, 2, 1, 1)
    and an int64 weight (3,), at the first arity the reader accepts (1 to 3 inputs)."""
    names = [ln.split()[1] for ln in open(os.path.join(HERE, "../../src/ops/op_names.frozen"))
             if ln.strip() and not ln.startswith("#")]
    weights = [("float32", [2, 2, 1, 1], np.ones((2, 2, 1, 1), np.float32).tobytes()),
               ("int64", [3], np.array([0, 1, 0], np.int64).tobytes())]
    for op in names:
        for nin in (1, 2, 3):
            data = td._build(inputs=(("x", "float32", [-1, 2, 4, 4]),), weights=weights,
                             ops=[(op, [0, 1, 2][:nin], 1, [])],
                             outputs=(("y", 3, "float32", [-1, 2, 4, 4]),))
            try:
                td.GraphInference(data)
            except ty.TianyuanError:
                continue
            yield "op_" + op, data
            break


def seeds():
    ty.random.seed(0)
    yield "dump_mlp", dumped(td.MLP(), (2, 20))
    yield "dump_cnn", dumped(td.CNN(), (1, 1, 28, 28))
    for name, (shape, fn) in sorted(td._layers().items()):
        yield "dump_" + name, dumped(fn, shape)
    yield "doc_relu_add", td._build()
    yield "doc_leaky_astype", td._build(
        ops=[("leaky_relu", [0], 1, [td._param("negative_slope", 1, 0.5)]),
             ("astype", [2], 1, [td._param("dtype", 3, "float64")])],
        outputs=(("y", 3, "float64", [-1, 3]),))
    yield from one_op_models()
    for case, (kwargs, _) in sorted(td.CRAFTED.items()):
        if "meta_len" not in kwargs:  # 16 MiB: too big a seed
            yield "crafted_" + case.replace(" ", "_").replace("-", "_"), td._build(**kwargs)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print(name, len(data))
