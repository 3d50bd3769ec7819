#!/usr/bin/env python3
"""The include-layer check: code in src/ includes only its own layer and the layers it may
call (docs/architecture.md), so no layer reaches upward.

    python3 tools/check_layers.py [SRC_DIR]     (default: src/ beside this tool)

Prints every violation as `file:line: <layer> may not include "<path>" (<layer>)` and exits 1
when there is one. Public headers (tianyuan/...) are open to every layer.
"""
import os
import re
import sys

# layer -> the layers its files may include (itself always). One table: change it here and
# in docs/architecture.md together.
MAY_INCLUDE = {
    "base": set(),
    "kernels": {"base"},
    "core": {"base", "kernels"},
    "ops": {"base", "kernels", "core"},
    "imperative": {"base", "core", "ops"},
    "graph": {"base", "core", "ops"},
    "runtime": {"base", "core", "ops", "graph"},
    "lib": {"base", "core", "ops", "imperative", "graph"},
    "dist": {"base", "core"},
    "python": set(),  # the bindings use the public headers only
}
PUBLIC = "tianyuan"
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def layer_of(rel):
    """The layer of a path relative to src/ (its first folder), or None."""
    top = rel.replace(os.sep, "/").split("/", 1)[0]
    return top if top in MAY_INCLUDE else None


def violations(src):
    """(file, line number, layer, include, layer of the include) for every upward include."""
    found = []
    for root, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith((".c", ".h", ".def")):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, src)
            layer = layer_of(rel)
            if layer is None:
                found.append((rel, 0, "?", "", "a folder missing from the layer table"))
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if not m:
                        continue
                    inc = m.group(1)
                    if "/" not in inc or inc.startswith(PUBLIC + "/"):
                        continue  # same folder, or a public header
                    target = layer_of(inc)
                    if target != layer and target not in MAY_INCLUDE[layer]:
                        found.append((rel, lineno, layer, inc, target or "not a layer"))
    return found


def main(argv):
    src = argv[1] if len(argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    if not os.path.isdir(src):
        print(f"check_layers: {src} is not a directory", file=sys.stderr)
        return 2
    bad = violations(src)
    for rel, lineno, layer, inc, target in bad:
        if not inc:
            print(f"{rel}: {target} ({rel.split(os.sep)[0]})")
        else:
            print(f'{rel}:{lineno}: {layer} may not include "{inc}" ({target})')
    if bad:
        print(f"check_layers: {len(bad)} upward include(s); the table is in tools/check_layers.py")
        return 1
    print(f"check_layers: every include in {os.path.normpath(src)} follows the layer table")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
