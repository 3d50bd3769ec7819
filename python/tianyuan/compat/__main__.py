"""``python -m tianyuan.compat [--force] script.py [args] | -m module [args] | -c command``:
run a MegEngine program unchanged, with ``import megengine`` answered by tianyuan."""
import runpy
import sys

from ._alias import AliasError, megengine_alias

USAGE = ("usage: python -m tianyuan.compat [--force] (script.py | -m module | -c command) "
         "[args...]")


def main(argv):
    force = bool(argv) and argv[0] == "--force"
    if force:
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stderr if not argv else sys.stdout)
        return 2 if not argv else 0
    try:
        megengine_alias(force=force)
    except AliasError as exc:
        print(f"tianyuan.compat: {exc}", file=sys.stderr)
        return 2
    if argv[0] in ("-m", "-c"):
        if len(argv) < 2:
            print(USAGE, file=sys.stderr)
            return 2
        if argv[0] == "-c":
            sys.argv = ["-c"] + argv[2:]
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = [argv[1]] + argv[2:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        return 0
    sys.argv = list(argv)
    sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(argv[0])))
    runpy.run_path(argv[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
