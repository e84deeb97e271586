#!/usr/bin/env python3
"""Assembles the web console's directory: the console's own files (web/console/) and the
third-party map code from node_modules/ (installed by scripts/install-deps.sh from npm:
d3-array, d3-geo, topojson-client, world-atlas) into OUT_DIR/vendor/, with their licences.
Nothing third-party is in the repository. Without node_modules the console still works,
without the map's countries (a warning says so, and the page tells the user).

usage: scripts/console_assets.py SRC_DIR NODE_MODULES OUT_DIR STAMP
"""
import os
import shutil
import sys

VENDOR = [  # (package, file in the package, name in vendor/)
    ("d3-array", "dist/d3-array.min.js", "d3-array.min.js"),
    ("d3-geo", "dist/d3-geo.min.js", "d3-geo.min.js"),
    ("topojson-client", "dist/topojson-client.min.js", "topojson-client.min.js"),
    ("world-atlas", "countries-110m.json", "countries-110m.json"),
]


def copy_if_changed(src, dst):
    if os.path.exists(dst):
        s, d = os.stat(src), os.stat(dst)
        if s.st_size == d.st_size and int(s.st_mtime) <= int(d.st_mtime):
            return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def main(src_dir, node_modules, out_dir, stamp):
    wanted = set()
    for dirpath, _, names in os.walk(src_dir):
        for name in names:
            src = os.path.join(dirpath, name)
            rel = os.path.relpath(src, src_dir)
            wanted.add(rel)
            copy_if_changed(src, os.path.join(out_dir, rel))
    missing = []
    for pkg, path, name in VENDOR:
        src = os.path.join(node_modules, pkg, path)
        if not os.path.exists(src):
            missing.append(pkg)
            continue
        rel = os.path.join("vendor", name)
        wanted.add(rel)
        copy_if_changed(src, os.path.join(out_dir, rel))
        lic = os.path.join(node_modules, pkg, "LICENSE")
        if os.path.exists(lic):
            rel = os.path.join("vendor", "LICENSE-%s.txt" % pkg)
            wanted.add(rel)
            copy_if_changed(lic, os.path.join(out_dir, rel))
    # files removed from web/console/ leave the build directory too
    for dirpath, _, names in os.walk(out_dir):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.relpath(path, out_dir) not in wanted:
                os.remove(path)
    if missing:
        print("console_assets: warning: %s missing from %s (run scripts/install-deps.sh): "
              "the console's map has no countries" % (", ".join(missing), node_modules),
              file=sys.stderr)
    with open(stamp, "w") as f:
        f.write("%d files\n" % len(wanted))


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
