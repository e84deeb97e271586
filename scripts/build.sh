#!/usr/bin/env bash
# Configures (once) and builds Meridian in build/ (debugoptimized: -O2 -g).
# Extra arguments go to `meson setup` the first time, e.g. scripts/build.sh -Db_lto=true.
#
# usage: scripts/build.sh [meson setup options...]
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${BUILD_DIR:-build}

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    meson setup "$BUILD_DIR" --buildtype=debugoptimized "$@"
fi
ninja -C "$BUILD_DIR"
