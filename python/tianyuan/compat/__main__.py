"""Run a MegEngine program unchanged, with ``import megengine`` answered by tianyuan::

    python -m tianyuan.compat [--force] script.py [args...]
    python -m tianyuan.compat [--force] -m module [args...]
    python -m tianyuan.compat [--force] -c command [args...]
    python -m tianyuan.compat --shim-path

The processes the program starts (multiprocessing's spawn/forkserver workers, subprocess
``python``) get the alias too: the shim directory goes in front of ``PYTHONPATH``.
``--shim-path`` prints that directory, for aliasing without the runner."""
import os
import runpy
import sys

from ._alias import SHIM_PATH, AliasError, megengine_alias

USAGE = ("usage: python -m tianyuan.compat [--force] (script.py | -m module | -c command) "
         "[args...]\n       python -m tianyuan.compat --shim-path")


def _export_shim():
    """Children started by the program import megengine through the shim: a subprocess finds
    it on PYTHONPATH, a multiprocessing spawn/forkserver worker on the sys.path it copies from
    this process (here the finder answers first, so the shim is never imported)."""
    sys.path.insert(0, SHIM_PATH)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([SHIM_PATH] + [p for p in paths
                                                              if p != SHIM_PATH])


def _run(argv):
    if argv[0] == "-c":
        sys.argv = ["-c"] + argv[2:]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    elif argv[0] == "-m":
        sys.argv = [argv[1]] + argv[2:]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(argv)
        sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
        runpy.run_path(argv[0], run_name="__main__")


def main(argv):
    if argv[:1] == ["--shim-path"]:
        print(SHIM_PATH)
        return 0
    force = argv[:1] == ["--force"]
    if force:
        argv = argv[1:]
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if not argv or (argv[0] in ("-m", "-c") and len(argv) < 2):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        megengine_alias(force=force)
    except AliasError as exc:
        print(f"tianyuan.compat: {exc}", file=sys.stderr)
        return 2
    _export_shim()
    _run(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
