#!/usr/bin/env python3
"""Checks that the folders of src/ depend on each other downwards only.

Reads every `#include "..."` line under src/ and fails (exit 1) on an include that points
up a layer or sideways (a folder including one of a later layer in LAYERS, or another
folder of its own layer), on a cycle between folders, on a folder that is not in LAYERS,
on a file other than main.c in src/ itself, and on an include that names no file of src/
(or one that several folders hold: headers are included by file name). A folder may
include itself and the folders of the layers before its own; src/main.c sits above every
folder. A library's header has one home (LIBRARY_HOMES): <sqlite3.h> is included by the
SQLite driver alone, so the metadata logic stays written once for every SQL driver.

usage: scripts/check_layers.py [SRC_DIR]     (prints one line per violation)
"""
import os
import re
import sys

# The layers, lowest first: the one place the order is written (each src/<folder>/README.md
# repeats its own row). Folders of one layer are siblings and do not include each other.
# `front` is the front door, whose folder may not exist yet.
LAYERS = [
    ["core"],
    ["http", "store"],
    ["auth", "s3"],
    ["cli", "repl"],
    ["oci", "console"],
    ["mgmt"],
    ["front"],
    ["server"],
]
TOP = "."  # src/main.c: may include every folder
TOP_FILES = {"main.c"}
# Headers made at build time, and the folder whose sources they belong to.
GENERATED = {"schema_sql.h": "store"}
FOLDERS = [f for layer in LAYERS for f in layer]
ORDER = " < ".join("{" + ", ".join(layer) + "}" if len(layer) > 1 else layer[0]
                   for layer in LAYERS)

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SYSTEM_INCLUDE = re.compile(r'^\s*#\s*include\s+<([^>]+)>')
# Library headers and the one file of src/ that may include each (STYLE.md: "Each library
# has one home"); the others call that file.
LIBRARY_HOMES = {
    "sqlite3.h": "store/sql_sqlite.c",
    "libpq-fe.h": "store/sql_pg.c",
    "microhttpd.h": "http/http.c",
    "curl/curl.h": "http/httpc.c",
}


def scan(src):
    """Returns ({file name: [folders holding it]}, [(folder, path, line number, included)],
    [(path under src, line number, library header)])."""
    homes, includes, libraries = {}, [], []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = os.path.relpath(dirpath, src)
        folder = TOP if rel == "." else rel.split(os.sep)[0]
        for name in sorted(filenames):
            if not name.endswith((".c", ".h", ".def")):
                continue
            homes.setdefault(name, []).append(folder)
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                for n, line in enumerate(f, 1):
                    m = INCLUDE.match(line)
                    if m:
                        includes.append((folder, os.path.relpath(path, os.path.dirname(src)), n, m.group(1)))
                    m = SYSTEM_INCLUDE.match(line)
                    if m and m.group(1) in LIBRARY_HOMES:
                        libraries.append((os.path.relpath(path, src), n, m.group(1)))
    return homes, includes, libraries


def rank(folder):
    if folder == TOP:
        return len(LAYERS)
    return next(i for i, layer in enumerate(LAYERS) if folder in layer)


def find_cycle(edges):
    """A list of folders forming a cycle in {folder: {folder: where}}, or None."""
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def check(src):
    homes, includes, libraries = scan(src)
    problems = []
    for path, n, lib in libraries:
        if path.replace(os.sep, "/") != LIBRARY_HOMES[lib]:
            problems.append(f"src/{path}:{n}: <{lib}> belongs to src/{LIBRARY_HOMES[lib]} alone; "
                            "call that file instead")
    for folder in sorted({f for fs in homes.values() for f in fs}):
        if folder != TOP and folder not in FOLDERS:
            problems.append(f"src/{folder}/: folder not in LAYERS of {sys.argv[0]}")
    for name in sorted(n for n, fs in homes.items() if TOP in fs and n not in TOP_FILES):
        problems.append(f"src/{name}: only {', '.join(sorted(TOP_FILES))} sits in src/ itself; "
                        "move it into the folder of its layer")
    if problems:
        return problems
    edges = {}
    for folder, path, n, inc in includes:
        name = os.path.basename(inc)
        if inc != name:
            problems.append(f"{path}:{n}: include \"{inc}\" by file name only")
            continue
        where = homes.get(name, []) or ([GENERATED[name]] if name in GENERATED else [])
        if folder in where:
            continue  # beside it
        if len(where) != 1:
            problems.append(f"{path}:{n}: \"{inc}\" is in {len(where)} folders of src/")
            continue
        target = where[0]
        edges.setdefault(folder, {}).setdefault(target, f"{path}:{n}")
        if rank(target) >= rank(folder):
            how = "a higher layer" if rank(target) > rank(folder) else "a sibling of its layer"
            problems.append(f"{path}:{n}: {folder} includes \"{inc}\" from {target}, "
                            f"{how} (order: {ORDER})")
    cycle = find_cycle(edges)
    if cycle:
        hops = ", ".join(f"{a} -> {b} ({edges[a][b]})" for a, b in zip(cycle, cycle[1:]))
        problems.append(f"cycle between folders: {hops}")
    return problems


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src")
    problems = check(os.path.normpath(src))
    for p in problems:
        print(p)
    print(f"check_layers: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
