"""GraphOptimizationConfig (MegEngine's ``jit.GraphOptimizationConfig``)."""


class GraphOptimizationConfig:
    """JIT fusion switches for ``trace(graph_opt_config=...)``: True (on), False (off) or None
    (``opt_level`` decides). Tianyuan's trace fuses elementwise chains whenever opt_level
    allows it; ``jit_fuse_dimshuffle`` and ``jit_fuse_reduce`` (MegBrain's JIT fusing
    transposes and reductions into those chains) are recorded for compatibility and do not
    change the compiled graph, whose results are bitwise eager's either way.

    >>> from tianyuan.jit import GraphOptimizationConfig
    >>> c = GraphOptimizationConfig(); c.jit_fuse_reduce = True
    >>> c
    GraphOptimizationConfig { jit_fuse_dimshuffle = UNSET, jit_fuse_reduce = ON }
    """

    def __init__(self):
        self.jit_fuse_dimshuffle = None
        self.jit_fuse_reduce = None

    def __setattr__(self, name, value):
        if name not in ("jit_fuse_dimshuffle", "jit_fuse_reduce"):
            raise AttributeError(f"GraphOptimizationConfig has no option {name!r}")
        if value not in (None, True, False):
            raise ValueError(f"GraphOptimizationConfig.{name} must be None, True or False, "
                             f"got {value!r}")
        object.__setattr__(self, name, value)

    def __repr__(self):
        s = {None: "UNSET", False: "OFF", True: "ON"}
        return (f"GraphOptimizationConfig {{ jit_fuse_dimshuffle = "
                f"{s[self.jit_fuse_dimshuffle]}, jit_fuse_reduce = {s[self.jit_fuse_reduce]} }}")
