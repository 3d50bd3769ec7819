"""Measured op coverage of the op-table run (test_op_db.py).

A dispatcher hook (_C._coverage_*, src/python/coverage.c) counts the ops that actually run;
the generic suites credit them to a mode only after that mode's check passed:
  executed  ran in the forward-vs-NumPy check
  grad      ran in the forward of a finite-difference gradient check
  gradgrad  ran in the forward of a second-order finite-difference check
  traced    ran while trace(symbolic=False) recorded, and the replays matched eager
  symbolic  ran while trace(symbolic=True) recorded, and the replays matched eager
  deployed  ran in the C runtime (GraphInference) on a trace.dump model of the row, and the
            outputs were eager's bits (test_op_deploy.py)
  errors    raised in an error case: the C error message, named by the dispatcher after the
            op whose ty_apply failed, is the exception's message

Each pytest process writes what it saw to $TY_OP_COVERAGE_DIR (when set); `python -m
ops.op_coverage DIR` (run by `make test-py` after pytest, with tests/python on the path) merges
the files, prints the table and fails on a gap. The exemptions below are the one place that
says which op may miss a mode, and why.
"""
import json
import os
import sys
from contextlib import contextmanager

MODES = ("executed", "grad", "gradgrad", "traced", "symbolic", "deployed", "errors")

TY_F_DIFF = 1 << 2

# Differentiable ops (TY_F_DIFF) without a finite-difference gradient check.
NO_GRAD_CHECK = {
    "floor_div": "piecewise constant, and its samples are not kept off the jumps, where "
                 "central differences see a spike",
    "astype": "a cast out of float64 rounds or truncates the output, so central differences "
              "measure the rounding, not the derivative",
}

# Differentiable ops with no second-order check (none but the above: every other gradient
# rule is written with differentiable ops, and test_gradgrad checks that).
NO_GRADGRAD = dict(NO_GRAD_CHECK)

# Ops that cannot run in a trace mode.
NOT_TRACED = {}
NOT_SYMBOLIC = {
    "non_zero": "output shape depends on values (TY_F_DYN): symbolic tracing raises TraceError",
    "cond_take": "output shape depends on values (TY_F_DYN): symbolic tracing raises TraceError",
    "nms": "output shape depends on values (TY_F_DYN): symbolic tracing raises TraceError",
}
# Ops an inference model cannot hold: trace.dump refuses a graph whose outputs depend on them
# (test_op_deploy.py checks the refusal). Random ops (uniform, normal, permutation) and
# value-dependent shapes (cond_take, non_zero) are not here: the runtime runs them and matches
# eager's bits (random ops draw from the same seeded generator), and gradient ops
# (conv2d_backward_data, ..._grad) are plain forward computations there.
NOT_DEPLOYED = {
    "assign": "writes into its input in place (TY_F_WRITES): a model is a pure function of its "
              "inputs and weights, with no tensor to update between runs",
}
NOT_DEPLOYED.update({
    op: "a collective of a distributed job: an inference model runs in one process"
    for op in ("dist_all_reduce", "dist_broadcast", "dist_all_gather", "dist_reduce_scatter",
               "dist_reduce", "dist_gather", "dist_scatter", "dist_all_to_all", "dist_send",
               "dist_recv")})
NO_ERROR_CASE = {}


class Recorder:
    """What the op-table run saw, per mode."""

    def __init__(self):
        self.seen = {m: set() for m in MODES}

    @contextmanager
    def ops_run(self):
        """Collects into the yielded set the ops that run inside the block."""
        from tianyuan import _C
        ran = set()
        _C._coverage_counts()  # drop what ran before the block
        try:
            yield ran
        finally:
            ran.update(_C._coverage_counts())

    def credit(self, mode, ops):
        self.seen[mode].update(ops)

    @contextmanager
    def error_case(self):
        """Yields a one-element list that receives the op that raised (None: the error did not
        come out of the dispatcher)."""
        from tianyuan import _C
        failed = [None]
        _C._coverage_clear_error()
        try:
            yield failed
        except Exception as e:
            failed[0] = failed_op(str(e), _C._coverage_last_error(), _C.ops)
            raise

    def save(self, directory, name):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, f"{name}.json"), "w") as f:
            json.dump({m: sorted(s) for m, s in self.seen.items()}, f)


def failed_op(message, c_error, ops):
    """The op whose ty_apply raised this message: the dispatcher's "op: " prefix of the C
    error, when the message is that C error."""
    if not c_error or message != c_error:
        return None
    name = c_error.split(":", 1)[0]
    return name if name in ops else None


RECORDER = Recorder()


def required(ops_info):
    """{mode: set of ops that must be covered} for {op: info dict} (_C.ops[op].info)."""
    ops = set(ops_info)
    diff = {n for n, info in ops_info.items() if info["flags"] & TY_F_DIFF}
    return {
        "executed": ops,
        "grad": diff - set(NO_GRAD_CHECK),
        "gradgrad": diff - set(NO_GRADGRAD),
        "traced": ops - set(NOT_TRACED),
        "symbolic": ops - set(NOT_SYMBOLIC),
        "deployed": ops - set(NOT_DEPLOYED),
        "errors": ops - set(NO_ERROR_CASE),
    }


def merge(directory):
    seen = {m: set() for m in MODES}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                for mode, ops in json.load(f).items():
                    seen[mode].update(ops)
    return seen


def table(ops, seen, need):
    """The coverage table: one line per op; '+' covered, '-' exempt, 'MISSING' a gap."""
    width = max(len(n) for n in ops)
    lines = [" ".join([f"{'op':<{width}}"] + [f"{m:>8}" for m in MODES])]
    for op in ops:
        cells = []
        for m in MODES:
            cells.append("+" if op in seen[m] else ("MISSING" if op in need[m] else "-"))
        lines.append(" ".join([f"{op:<{width}}"] + [f"{c:>8}" for c in cells]))
    return lines


def gaps(ops, seen, need):
    return {m: sorted(need[m] - seen[m]) for m in MODES if need[m] - seen[m]}


def main(argv):
    from tianyuan import _C
    if len(argv) != 2 or not os.path.isdir(argv[1]):
        print("usage: op_coverage.py DIR (the TY_OP_COVERAGE_DIR of a pytest run)",
              file=sys.stderr)
        return 2
    infos = {n: op.info for n, op in _C.ops.items()}
    seen, need = merge(argv[1]), required(infos)
    print("\n".join(table(list(infos), seen, need)))
    missing = gaps(list(infos), seen, need)
    for m, ops in missing.items():
        print(f"op coverage gap: {m}: {', '.join(ops)}", file=sys.stderr)
    if not missing:
        print(f"op coverage: all {len(infos)} ops covered in every mode "
              f"(exemptions in tests/python/ops/op_coverage.py)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
