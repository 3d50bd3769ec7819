"""Writes the committed .tym files that tests/python/test_dump.py loads: models dumped by
format 1.0 must load and compute the same in every later version, so these files are kept,
never regenerated (run this only to add files of a new format version, under new names).

    PYTHONPATH=python python tests/python/tym_files/make_golden.py"""
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import tianyuan as ty  # noqa: E402
from tianyuan.jit import trace  # noqa: E402
from test_dump import CNN, MLP  # noqa: E402


def write(name, net, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(np.float32)

    @trace(capture_as_const=True)
    def f(inp):
        return {"logits": net(inp)}

    f(ty.tensor(x))
    f.dump(os.path.join(HERE, name + ".tym"), arg_names=["data"], user_info=name)
    np.savez(os.path.join(HERE, name + ".npz"), data=x, logits=net(ty.tensor(x)).numpy())


if __name__ == "__main__":
    ty.random.seed(0)
    write("mlp_v1_0", MLP(), (2, 20))
    write("cnn_v1_0", CNN(), (2, 1, 28, 28))
