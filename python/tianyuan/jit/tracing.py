"""``@trace``: the first call of a function runs eagerly and records every dispatcher call
(forward, ``gm.backward`` and optimizer updates included); later calls run the Python body
again only to match its calls against the recording, and the recorded graph then executes
in one pass in C. Semantics follow MegEngine's ``jit.trace``:

* Tensor arguments (positional, keyword, or nested in lists, tuples and dicts) are the
  graph's inputs, and other argument values select a graph of their own; other tensors the function uses
  (parameters, optimizer state, tensors made from host data in the body) are *externals*,
  bound afresh on every call; Python numbers in expressions (the ``1`` in ``x + 1``) are
  constants, checked on every call;
* values cannot be read inside a replayed call (``.numpy()``, ``.item()`` raise
  ``TraceError``); read them from the returned tensors;
* a call whose operations differ from the recording raises ``TraceError`` naming the
  mismatch; a call with new input shapes or dtypes records a new graph (one per signature).

>>> import tianyuan as ty
>>> from tianyuan.jit import trace
>>> @trace
... def f(x):
...     return x * 2 + 1
>>> [f(ty.tensor([1.0, 2.0])).numpy().tolist() for _ in range(3)]
[[3.0, 5.0], [3.0, 5.0], [3.0, 5.0]]
"""
import contextlib
import functools
import json
import os

from .. import _C
from ..tensor import Tensor
from .dtr_config import DTRConfig
from .sublinear_memory_config import SublinearMemoryConfig

TraceError = _C.TraceError


_active = [0]  # traced calls (recording or replaying) running now


def _is_tracing():
    """Whether a traced function is being recorded or replayed now (code that would do work
    outside the dispatcher, such as an asynchronous collective, must use ops instead)."""
    return _active[0] > 0


@contextlib.contextmanager
def exclude_from_trace():
    """Runs the block eagerly and unrecorded inside a traced function."""
    _C.trace_pause(True)
    try:
        yield
    finally:
        _C.trace_pause(False)


def _flatten(out):
    """Tensors of an output structure (tensor, tuple, list, dict, None) and a rebuild spec."""
    if isinstance(out, Tensor):
        return [out], "t"
    if out is None:
        return [], None
    if isinstance(out, (tuple, list)):
        flat, specs = [], []
        for o in out:
            f, s = _flatten(o)
            flat += f
            specs.append((len(f), s))
        return flat, (type(out), specs)
    if isinstance(out, dict):
        flat, specs = [], []
        for k, o in out.items():
            f, s = _flatten(o)
            flat += f
            specs.append((k, len(f), s))
        return flat, ("dict", specs)
    raise TraceError(f"a traced function must return tensors (or tuples, lists or dicts of "
                     f"them), got {type(out).__name__}")


def _count(spec):
    if spec is None:
        return 0
    if spec == "t":
        return 1
    kind, specs = spec
    return sum(s[-2] for s in specs)


def _rebuild(spec, it):
    if spec is None:
        return None
    if spec == "t":
        return next(it)
    kind, specs = spec
    if kind == "dict":
        return {k: _rebuild(s, it) for k, _, s in specs}
    return kind(_rebuild(s, it) for _, s in specs)


def _walk(obj, tensors, key):
    if isinstance(obj, Tensor):
        tensors.append(obj)
        key.append(("T", tuple(obj.shape), obj._dtype_code))
    elif isinstance(obj, (list, tuple)):
        key.append((type(obj).__name__, len(obj)))
        for o in obj:
            _walk(o, tensors, key)
    elif isinstance(obj, dict):
        key.append(("dict", len(obj)))
        for k, o in obj.items():
            key.append(("K", k))
            _walk(o, tensors, key)
    else:
        try:
            hash(obj)
            key.append(("V", type(obj).__name__, obj))  # 1, 1.0 and True differ
        except TypeError:
            key.append(("O", id(obj)))


class trace:
    """Decorator (``@trace`` or ``@trace(symbolic=...)``) and wrapper of a traced function.

    ``without_host=True`` replays without calling the function at all (no Python work per
    call): arguments are bound, every other tensor is read from the tensor seen when
    recording (so parameters and optimizer state must be updated in place, as the
    optimizers do, learning-rate schedules included), Python-made tensors and literals are
    frozen, and side effects other
    than in-place tensor updates (such as ``.grad`` left set) are not repeated: put
    ``opt.step().clear_grad()`` inside the function.

    ``symbolic=False`` (the default) computes every op while recording the first call.
    ``symbolic=True`` records it without computing: ops return tensors whose values are
    computed when the call ends, as one compiled graph (the first call then gets the memory
    plan and fusion as well); reading a value inside the function (``.numpy()``, ``.item()``,
    ``float(t)``) raises ``TraceError``, and ops whose output shape depends on values
    (``F.cond_take``, boolean indexing) cannot be traced symbolically. Both give the eager
    bits on every call.

    Options accepted for MegEngine compatibility: ``capture_as_const``, ``opt_level``,
    ``profiling``. ``f.dump_graph()`` returns the recorded graph and
    ``f.dump_graph(after_passes=True)`` the compiled one; the environment variable
    ``TY_TRACE_DUMP=1`` prints both when a graph is compiled (at the end of recording),
    ``TY_TRACE_DUMP=2`` also the graph after each pass.

    Graph passes run when a recording is compiled, each keeping the results bitwise equal
    to eager execution: common-subexpression elimination, constant folding, elementwise
    fusion (block by block, intermediates kept in scratch blocks), assign forwarding (the
    op computing ``x`` in ``p._assign(x)`` writes straight into ``p``, as an optimizer's
    update does, when nothing else reads either in between) and, on every call, dead-code
    elimination. ``TY_TRACE_PASSES=<mask>`` (1 DCE, 2 CSE, 4 fold, 8 fusion, 16 assign
    forwarding, 32 sublinear memory; all by default) switches them off for comparisons.

    ``sublinear_memory_config=SublinearMemoryConfig(...)`` trains in less memory: forward
    values the backward reads are recomputed in the backward (copies of their nodes: the
    same kernels and bits) instead of kept, Chen et al.'s sqrt(n) segments chosen by the
    planned arena peak (docs/tracing.md, "Sublinear memory").

    ``dtr_config=DTRConfig(eviction_threshold=..., evictee_minimum_size=...)`` is DTR for the
    traced step, decided once when the recording is compiled rather than op by op: while the
    step's planned arena peak (its activations, gradients and temporaries; parameters,
    optimizer state and inputs live outside it) is under ``eviction_threshold``, nothing is
    recomputed; above it, the backward recomputes forward values as sublinear memory does,
    with the fewest recomputed nodes that bring the peak under the threshold (the lowest peak
    when none does; threshold 0 asks for the lowest). Values smaller than
    ``evictee_minimum_size`` are always kept. Results stay bitwise those of the plain trace.
    ``recomp_memory_factor`` and ``recomp_time_factor`` are accepted and unused."""

    def __new__(cls, function=None, **kwargs):
        if function is None:
            return lambda f: cls(f, **kwargs)
        return super().__new__(cls)

    def __init__(self, function=None, *, symbolic=False, capture_as_const=False,
                 record_only=False, sublinear_memory_config=None, dtr_config=None,
                 profiling=False, opt_level=2, graph_opt_config=None, symbolic_shape=True,
                 without_host=False, imperative=False):
        if sublinear_memory_config is not None and not isinstance(
                sublinear_memory_config, SublinearMemoryConfig):
            raise TypeError("trace: sublinear_memory_config must be a "
                            "jit.SublinearMemoryConfig, got "
                            f"{type(sublinear_memory_config).__name__}")
        if dtr_config is not None and not isinstance(dtr_config, DTRConfig):
            raise TypeError("trace: dtr_config must be a jit.DTRConfig, got "
                            f"{type(dtr_config).__name__}")
        if dtr_config is not None and sublinear_memory_config is not None:
            raise ValueError("trace: give sublinear_memory_config or dtr_config, not both "
                             "(both choose what the backward recomputes)")
        if record_only:
            raise NotImplementedError("trace(record_only=True) is not supported: a recording "
                                      "is always computed once")
        self._fn = function
        self._symbolic = bool(symbolic)
        self._capture_as_const = capture_as_const
        self._without_host = without_host
        self._sublinear = sublinear_memory_config
        self._dtr = dtr_config
        self._graphs = {}  # signature -> (trace handle, output spec)
        functools.update_wrapper(self, function)

    @staticmethod
    def _inputs(args, kwargs):
        """The graph inputs (every Tensor in the arguments, nested in lists, tuples and dicts
        included, keyword arguments in name order) and the call's signature: their shapes
        and dtypes, the structure, and every other value (a new value records a new graph)."""
        tensors, key = [], []
        _walk(args, tensors, key)
        _walk({k: kwargs[k] for k in sorted(kwargs)}, tensors, key)
        return tensors, tuple(key)

    def __call__(self, *args, **kwargs):
        _active[0] += 1
        try:
            return self._call(*args, **kwargs)
        finally:
            _active[0] -= 1

    def _call(self, *args, **kwargs):
        tensors, sig = self._inputs(args, kwargs)
        entry = self._graphs.get(sig)
        if entry is None:
            return self._record(sig, tensors, args, kwargs)
        handle, spec = entry
        if self._without_host:
            return _rebuild(spec, iter(_C.trace_run(handle, tensors, _count(spec))))
        _C.trace_begin_replay(handle, tensors)
        try:
            out = self._fn(*args, **kwargs)
            flat, _ = _flatten(out)
        except BaseException:
            _C.trace_abort(handle)
            raise
        _C.trace_end_replay(handle, flat)
        return out

    def _record(self, sig, tensors, args, kwargs):
        handle = _C.trace_begin_record(tensors, self._symbolic)
        try:
            cfg = self._sublinear
            if cfg is not None:
                _C.trace_set_sublinear(handle, cfg.thresh_nr_try, cfg.genetic_nr_iter,
                                       cfg.genetic_pool_size, cfg.lb_memory_mb << 20)
            if self._dtr is not None:
                _C.trace_set_dtr(handle, self._dtr.eviction_threshold,
                                 self._dtr.evictee_minimum_size)
            out = self._fn(*args, **kwargs)
            flat, spec = _flatten(out)
        except BaseException:
            _C.trace_abort(handle)
            raise
        _C.trace_end_record(handle, flat)
        self._graphs[sig] = (handle, spec)
        level = os.environ.get("TY_TRACE_DUMP", "0")
        if level not in ("", "0"):
            # the recording is compiled (graph passes run) when recording ends
            print(_C.trace_dump(handle))
            if level == "2":
                print(_C.trace_pass_log(handle), end="")
            print(_C.trace_dump(handle, True))
        return out

    def dump_graph(self, after_passes=False):
        """The recorded graphs as text (one per input signature). With ``after_passes`` the
        graph as compiled: nodes removed as dead in the last call, computed by an earlier
        identical node (CSE), folded into constants, and fused elementwise groups marked."""
        return "\n".join(_C.trace_dump(h, bool(after_passes)) for h, _ in self._graphs.values())

    def pass_stats(self):
        """Per recorded graph, what the graph passes did: nodes, executed and dead (last
        call), cse, folded, fused_groups, fused_nodes, forwarded (assigns computed in
        place in the last call), arena_bytes, recomputed (forward nodes copied into the
        backward by sublinear memory)."""
        return [_C.trace_stats(h) for h, _ in self._graphs.values()]

    def num_nodes(self):
        return sum(_C.trace_num_nodes(h) for h, _ in self._graphs.values())

    def dump(self, file, *, arg_names=None, output_names=None, append=False, keep_var_name=1,
             keep_opr_name=False, keep_param_name=False, optimize_for_inference=True,
             user_info=None, enable_metadata=True, **kwargs):
        """Writes the traced graph as a ``.tym`` model (docs/tym-format.md) that the C runtime
        (``tianyuan/runtime.h``, ``tianyuan-run``, ``GraphInference``) runs with the same bits.

        The function must be traced with ``capture_as_const=True`` and called once. Its tensor
        arguments become the inputs (named ``arg_names``, default ``arg_0``, ...), the tensors
        it reads become weights holding their current values, and the ops the outputs need
        become the graph. The batch dimension (dimension 0) of the inputs and outputs may vary
        in the model when every op works item by item along it (convolutions, pools, matmuls,
        elementwise ops, reshapes of whole items, ...); otherwise the model takes the traced
        shapes only. A dict return names the outputs; otherwise
        ``output_names`` does (default ``output_0``, ...). ``file`` is a path or a binary file
        object. Returns a :class:`DumpResult`.

        ``optimize_for_inference=True`` (the default) applies the rewrites that keep every bit:
        the ops the outputs do not need are dropped, identical ops are merged (CSE), and ops
        of parameters and constants only (an eval BatchNorm's ``sqrt(running_var + eps)``, a
        reshaped bias) are computed now, by the kernel the runtime would run, and stored as
        weights. Keyword arguments (MegEngine's ``optimize_for_inference`` options) ask for
        more, and need ``optimize_for_inference=True``:

        * ``enable_fuse_conv_bias_nonlinearity=True``: a ``conv2d`` followed by its bias, an
          eval-mode BatchNorm (or other per-channel scales and shifts) and an activation
          (relu, relu6 or ``clip(0, 6)``, sigmoid, hswish, or none) becomes one ``conv_bias``
          op; the BatchNorm is folded into the convolution's weights and bias, which changes
          float results in the last bits (relative error about 1e-6).
        * ``enable_fuse_conv_bias_with_z=True`` (with the above): a residual add after the
          convolution's BatchNorm becomes the fused op's ``z`` input.
        * ``enable_io16xc32=True``: float32 inputs and outputs become float16 (converted at
          the model's edges); compute stays float32.

        The other MegEngine keywords (the layout transforms ``enable_nchw4``,
        ``enable_nchw44``, ``enable_nchw88``, ..., ``enable_ioc16``, ``enable_fuse_preprocess``,
        ``enable_fuse_grain``, ``enable_weight_preprocess``) raise ``ValueError`` naming the
        keyword when set; an unknown keyword raises ``ValueError``. The metadata records the
        options and what each rewrite did (``"rewrites"``).

        ``keep_param_name`` stores the name of each weight read from a named tensor: a
        Tensor's ``name`` (a Module names its parameters and buffers by their path, e.g.
        ``"layer1.0.conv1.weight"``), or else its path in a Module the function reaches (bound
        to it, in its closure or defaults, or a global its code names). ``keep_opr_name``
        names every op: ``"<scope>/<type>"`` when it reads a weight named
        ``"<scope>.<leaf>"`` (``"layer1.0.conv1/conv2d"``), else ``"<type>_<position>"``
        (``"relu_5"``). Without them the names are empty. ``tianyuan-run --model-info
        --verbose`` and ``--profile`` show them."""
        if not self._capture_as_const:
            raise ValueError("trace.dump needs a function traced with capture_as_const=True")
        flags = _rewrite_flags(optimize_for_inference, kwargs)
        if append:
            raise ValueError("trace.dump(append=True) is not supported: a .tym file holds one "
                             "model")
        if not self._graphs:
            raise ValueError("trace.dump: call the traced function once before dumping it")
        sig, (handle, spec) = list(self._graphs.items())[-1]
        nout = _count(spec)
        if nout == 0:
            raise ValueError("trace.dump: the traced function returns no tensor")
        names = _output_names(spec, nout, output_names)
        nargs = sum(1 for k in sig if k[0] == "T")
        if arg_names is not None:
            arg_names = [str(n) for n in arg_names]
            if len(arg_names) != nargs:
                raise ValueError(f"trace.dump: {len(arg_names)} arg_names for {nargs} inputs")
        rewrites = None
        if flags:
            handle, rewrites = _C.tym_rewrite(handle, flags)
        meta = ""
        if enable_metadata:
            from .. import __version__
            meta = json.dumps({"producer": f"tianyuan {__version__}", "user_info": user_info,
                               "optimize_for_inference": bool(optimize_for_inference),
                               "options": {k: bool(v) for k, v in sorted(kwargs.items())},
                               "rewrites": rewrites},
                              default=repr)
        named = _named_tensors(self._fn) if keep_opr_name or keep_param_name else None
        data = _C.tym_dump(handle, nargs, arg_names, nout, names, meta, named,
                           bool(keep_opr_name), bool(keep_param_name))
        if isinstance(file, (str, os.PathLike)):
            with open(file, "wb") as f:
                f.write(data)
        else:
            file.write(data)
        info = _C.model_info(_C.model_load(data))
        return DumpResult(info, len(data))


def _reachable(fn):
    """The objects a function can name: what it is bound to, its closure cells, default
    arguments, and the globals its code names."""
    found = []
    bound = getattr(fn, "__self__", None)
    if bound is not None:
        found.append(bound)
    fn = getattr(fn, "__func__", fn)
    found += [c.cell_contents for c in (getattr(fn, "__closure__", None) or ())
              if _cell_full(c)]
    found += list(getattr(fn, "__defaults__", None) or ())
    code, glb = getattr(fn, "__code__", None), getattr(fn, "__globals__", {})
    found += [glb[n] for n in (code.co_names if code else ()) if n in glb]
    if not code and callable(fn) and not isinstance(fn, type):
        found.append(fn)  # a callable object (a Module passed to trace itself)
    return found


def _cell_full(cell):
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _named_tensors(fn):
    """[(Tensor, name)] for keep_param_name / keep_opr_name: every Tensor and every
    parameter and buffer of a Module the traced function reaches (_reachable); a Tensor's own
    ``name`` wins over its path in the Module."""
    from ..module import Module
    from ..tensor import Tensor
    pairs, seen = [], set()

    def add(t, path):
        name = t.name or path
        if name and id(t) not in seen:
            seen.add(id(t))
            pairs.append((t, str(name)))

    for obj in _reachable(fn):
        if isinstance(obj, Module):
            for path, t in list(obj.named_parameters()) + list(obj.named_buffers()):
                add(t, path)
        elif isinstance(obj, Tensor):
            add(obj, None)
    return pairs


# MegEngine's optimize_for_inference keywords: the implemented ones and their rewrite flags
# (include/tianyuan/runtime.h TY_TYM_*), and the refused ones with the reason.
_REWRITE_FOLD_CSE = 1 | 2
_IMPLEMENTED_KWARGS = {
    "enable_fuse_conv_bias_nonlinearity": 4,
    "enable_fuse_conv_bias_with_z": 8,
    "enable_io16xc32": 16,
}
_LAYOUT = ("a tensor layout transform for other kernels; Tianyuan's kernels run the NCHW "
           "layout the model was traced in")
_REFUSED_KWARGS = {
    "enable_nchw4": _LAYOUT, "enable_nchw32": _LAYOUT, "enable_chwn4": _LAYOUT,
    "enable_nchw44": _LAYOUT, "enable_nchw44_dot": _LAYOUT, "enable_nchw88": _LAYOUT,
    "enable_nchw64": _LAYOUT, "enable_hwcd4": _LAYOUT, "enable_nhwcd4": _LAYOUT,
    "enable_ioc16": "float16 compute changes results beyond what a float32 model promises; "
                    "enable_io16xc32 keeps float32 compute",
    "enable_fuse_preprocess": "it fuses MegEngine's image preprocessing ops, which Tianyuan "
                              "does not have",
    "enable_fuse_grain": "elementwise chains already run fused, with the same bits, in the "
                         "runtime's graph",
    "enable_weight_preprocess": "weights are used as stored (mmapped), never repacked at load",
}


def _rewrite_flags(optimize_for_inference, kwargs):
    """The rewrite flags trace.dump asks of _C.tym_rewrite; ValueError names a keyword that is
    unknown, refused, or combined wrongly."""
    flags = _REWRITE_FOLD_CSE if optimize_for_inference else 0
    for k, v in kwargs.items():
        if k not in _IMPLEMENTED_KWARGS and k not in _REFUSED_KWARGS:
            raise ValueError(f"trace.dump: unknown keyword argument {k!r}")
        if not v:
            continue
        if k in _REFUSED_KWARGS:
            raise ValueError(f"trace.dump: {k}=True is not supported: {_REFUSED_KWARGS[k]}")
        if not optimize_for_inference:
            raise ValueError(f"trace.dump: {k}=True needs optimize_for_inference=True")
        flags |= _IMPLEMENTED_KWARGS[k]
    if kwargs.get("enable_fuse_conv_bias_with_z") and \
            not kwargs.get("enable_fuse_conv_bias_nonlinearity"):
        raise ValueError("trace.dump: enable_fuse_conv_bias_with_z=True needs "
                         "enable_fuse_conv_bias_nonlinearity=True")
    return flags


def _output_names(spec, nout, output_names):
    if isinstance(spec, tuple) and spec[0] == "dict":
        if output_names is not None:
            raise TypeError("trace.dump: the function returns a dict, whose keys name the "
                            "outputs; output_names cannot rename them")
        if any(n != 1 for _, n, _ in spec[1]):
            raise ValueError("trace.dump: each value of the returned dict must be one tensor")
        return [str(k) for k, _, _ in spec[1]]
    if output_names is None:
        return None
    if isinstance(output_names, str):
        output_names = [output_names]
    output_names = [str(n) for n in output_names]
    if len(output_names) != nout:
        raise ValueError(f"trace.dump: {len(output_names)} output_names for {nout} outputs")
    return output_names


class DumpResult:
    """What ``trace.dump`` wrote: ``nr_opr`` (ops), ``tot_bytes`` (file size), ``weight_bytes``,
    ``inputs`` and ``outputs`` (names), ``metadata`` (the JSON string stored)."""

    def __init__(self, info, nbytes):
        self.nr_opr = info["num_ops"]
        self.tot_bytes = nbytes
        self.weight_bytes = info["weight_bytes"]
        self.inputs = [n for n, _, _ in info["inputs"]]
        self.outputs = [n for n, _, _ in info["outputs"]]
        self.metadata = info["metadata"]

    def __repr__(self):
        return (f"DumpResult(nr_opr={self.nr_opr}, tot_bytes={self.tot_bytes}, "
                f"weight_bytes={self.weight_bytes}, inputs={self.inputs}, "
                f"outputs={self.outputs})")
