"""Whole-model A/B of two Tianyuan builds at batch 1 on 2 threads: this tree against another
(a baseline checkout, built), in alternating pairs of `tianyuan-run` processes.

    PYTHONPATH=python .venv/bin/python benchmarks/model_ab.py --base /work/wt-base
        [--models resnet18,resnet50] [--pairs 5] [--iters 30] [--ops]

Decide kernel changes with this, not with one layer's warm timing: a change that made one
layer 14% faster with its weights warm in cache made the whole model 15% slower (weights come
cold from memory between layers). Each side dumps the models with its own package (a conv's
algorithm is recorded in the .tym file, so a heuristic change reaches a model only through a
fresh dump) from the same seed, then the pairs alternate which side runs first. Prints each
pair's medians, the ratio base / new (> 1: this tree is faster), and their median and range,
and each side's p90/median (the latency tail).
--ops also compares per-op times (20th percentile over runs, from `tianyuan-run --profile`) and
lists the ops that moved by more than --min-ms: each fused group as one (its first op) when
both builds profile through the plan, else both op by op (a build older than `--profile-ops`
only profiles op by op).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from _peer import machine_line  # noqa: E402

DEFAULT_MODELS = "resnet18,mobilenet_v2,shufflenet_v2_x1_0,resnet50"
DUMP = ("import sys; sys.path[:0] = [sys.argv[1] + '/python', sys.argv[1] + '/benchmarks'];"
        "import layer_profile; [layer_profile.dump(m, sys.argv[2]) for m in sys.argv[3:]]")


def dump_side(root, workdir, models):
    os.makedirs(workdir, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.path.join(root, "python"))
    subprocess.run([sys.executable, "-c", DUMP, root, workdir, *models], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def run_bin(binary, workdir, model, iters, profile=None, extra=()):
    cmd = [binary, os.path.join(workdir, f"{model}.tym"), "--input",
           f"data={os.path.join(workdir, model + '_x.npy')}", "--iter", str(iters),
           "--warmup-iter", "3", "--thread", "2", *extra]
    if profile:
        cmd += ["--profile", profile]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    found = re.search(r"median ([0-9.]+) ms\s+p90 ([0-9.]+)", out)
    if not found:
        raise RuntimeError(f"no median in tianyuan-run's output:\n{out}")
    return float(found.group(1)), float(found.group(2))


def op_times(profile):
    """Per-op durations (runs x ops, ms) and op names from a Chrome trace of several runs."""
    events = json.load(open(profile))
    events = events["traceEvents"] if isinstance(events, dict) else events
    runs = [e for e in events if e.get("cat") == "run"]
    ops = [e for e in events if e.get("cat") != "run" and "dur" in e]
    per = len(ops) // max(len(runs), 1)
    t = np.array([[ops[r * per + i]["dur"] for i in range(per)] for r in range(len(runs))])
    return t / 1e3, [o["name"] for o in ops[:per]]


def profile_flags(sides):
    """Per side, the flags that make both sides profile the same way (see the docstring)."""
    plan = {side: "--profile-ops" in subprocess.run([b, "--help"], capture_output=True,
                                                    text=True).stdout
            for side, b in sides.items()}
    if all(plan.values()):
        return {side: [] for side in sides}
    return {side: ["--profile-ops"] if plan[side] else [] for side in sides}


def compare_ops(sides, workdirs, model, iters, min_ms, tmp):
    got = {"new": [], "base": []}
    flags = profile_flags(sides)
    for order in (["new", "base"], ["base", "new"]):  # two rounds, each side first once
        for side in order:
            path = os.path.join(tmp, f"{side}-{model}.json")
            run_bin(sides[side], workdirs[side], model, iters, profile=path, extra=flags[side])
            got[side].append(op_times(path))
    names, names_b = got["new"][0][1], got["base"][0][1]
    tn = np.concatenate([t for t, _ in got["new"]])
    tb = np.concatenate([t for t, _ in got["base"]])
    if names != names_b:
        print(f"  {model}: the two dumps have different op lists ({len(names)} vs "
              f"{len(names_b)} ops); per-op compare skipped")
        return
    new, base = np.percentile(tn, 20, axis=0), np.percentile(tb, 20, axis=0)
    conv = 0
    for i, name in enumerate(names):
        if abs(new[i] - base[i]) > min_ms:
            tag = f"conv#{conv}" if name == "conv2d" else ""
            print(f"  {i:4d} {name:14s} {tag:8s} new {new[i]:7.3f}  base {base[i]:7.3f} ms"
                  f"  {base[i] / max(new[i], 1e-9):5.2f}x")
        conv += name == "conv2d"
    print(f"  sum of per-op 20th percentiles: new {new.sum():.2f}  base {base.sum():.2f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="root of the baseline tree (built)")
    ap.add_argument("--base-bin", help="its tianyuan-run (default BASE/build/tianyuan-run)")
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--iters", type=int, default=30, help="timed runs per process")
    ap.add_argument("--ops", action="store_true", help="also compare per-op times")
    ap.add_argument("--min-ms", type=float, default=0.03, help="--ops: smallest move listed")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    sides = {"new": os.path.join(os.environ.get("TY_BUILD_DIR", os.path.join(ROOT, "build")),
                                 "tianyuan-run"),
             "base": args.base_bin or os.path.join(args.base, "build", "tianyuan-run")}
    for side, path in sides.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"model_ab: no tianyuan-run for the {side} side at {path}")
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        workdirs = {"new": os.path.join(tmp, "new"), "base": os.path.join(tmp, "base")}
        dump_side(ROOT, workdirs["new"], models)
        dump_side(os.path.abspath(args.base), workdirs["base"], models)
        for model in models:
            ratios, tails = [], {"new": [], "base": []}
            for pair in range(args.pairs):
                order = ["new", "base"] if pair % 2 == 0 else ["base", "new"]
                ms = {s: run_bin(sides[s], workdirs[s], model, args.iters) for s in order}
                ratios.append(ms["base"][0] / ms["new"][0])
                for s in ms:
                    tails[s].append(ms[s][1] / ms[s][0])
                print(f"{model:20s} pair {pair + 1}: median new {ms['new'][0]:7.2f}  base "
                      f"{ms['base'][0]:7.2f} ms  {ratios[-1]:.3f}x   p90/median new "
                      f"{tails['new'][-1]:.2f}  base {tails['base'][-1]:.2f}", flush=True)
            print(f"{model:20s} base/new median {np.median(ratios):.3f}x  range "
                  f"{min(ratios):.3f}-{max(ratios):.3f}x over {len(ratios)} pairs; p90/median "
                  f"new {min(tails['new']):.2f}-{max(tails['new']):.2f}  base "
                  f"{min(tails['base']):.2f}-{max(tails['base']):.2f}", flush=True)
            if args.ops:
                compare_ops(sides, workdirs, model, args.iters, args.min_ms, tmp)


if __name__ == "__main__":
    main()
