"""MegEngine's ``cgtools``: run a model written by ``trace.dump`` through the C runtime
(``include/tianyuan/runtime.h``), the same code a C program or ``tianyuan-run`` uses."""
import collections
import os

import numpy as np

from .. import _C


class GraphInference:
    """Loads a ``.tym`` model (a path, bytes, or a binary file object) for inference.

    >>> # y = GraphInference("model.tym").run(x)["output_0"]

    ``threads`` (a Tianyuan addition) sets this instance's thread count (default: the
    library's); results never depend on it. ``profiling`` and ``optimize_for_inference`` are
    accepted for MegEngine code and change nothing (the model was optimized when dumped).
    """

    def __init__(self, file, outputs=None, profiling=False, optimize_for_inference=False,
                 threads=None, **kwargs):
        if kwargs:
            raise ValueError(f"GraphInference: unknown keyword(s) {sorted(kwargs)}")
        if outputs is not None:
            raise ValueError("GraphInference(outputs=...) is not supported: a model computes "
                             "the outputs it was dumped with")
        if isinstance(file, (str, os.PathLike)):
            self._model = _C.model_load(os.fspath(file))
        elif isinstance(file, (bytes, bytearray, memoryview)):
            self._model = _C.model_load(bytes(file))
        else:
            self._model = _C.model_load(file.read())
        info = _C.model_info(self._model)
        self._inputs = info["inputs"]
        self._outputs = info["outputs"]
        self.metadata = info["metadata"]
        self._session = _C.session_new(self._model)
        if threads is not None:
            from .._args import to_int
            n = to_int(threads, "threads", "GraphInference")
            if not 1 <= n <= 1 << 20:
                raise ValueError(f"GraphInference: threads must be a positive count, got {n}")
            _C.session_set_threads(self._session, n)

    @property
    def input_names(self):
        return [n for n, _, _ in self._inputs]

    @property
    def output_names(self):
        return [n for n, _, _ in self._outputs]

    def run(self, *inp_args, inp_dict=None):
        """Runs the model on the inputs (positional, in the model's order, and/or by name in
        ``inp_dict``); returns an ``OrderedDict`` of numpy arrays by output name."""
        if len(inp_args) > len(self._inputs):
            raise ValueError(f"GraphInference.run: {len(inp_args)} inputs given, the model "
                             f"has {len(self._inputs)}")
        values = {}
        for (name, _, _), a in zip(self._inputs, inp_args):
            values[name] = a
        for name, a in (inp_dict or {}).items():
            if name in values:
                raise ValueError(f"GraphInference.run: input {name!r} given twice")
            if name not in self.input_names:
                raise ValueError(f"GraphInference.run: the model has no input {name!r} "
                                 f"(it has {self.input_names})")
            values[name] = a
        feed = []
        for name, dtype, _ in self._inputs:
            if name not in values:
                raise ValueError(f"GraphInference.run: input {name!r} is missing")
            a = values[name]
            a = a.numpy() if hasattr(a, "numpy") else a
            a = np.require(np.asarray(a, dtype=np.dtype(dtype)), requirements="C")
            feed.append((name, dtype, tuple(a.shape), a))
        outs = _C.session_run(self._session, feed)
        return collections.OrderedDict(
            (name, t.numpy()) for (name, _, _), t in zip(self._outputs, outs))
