#!/usr/bin/env bash
# Installs what is missing, builds, and runs one Meridian node on the embedded default:
# data in ./data (of the repository), listening on 127.0.0.1:5000 -- the server's own
# defaults, so MERIDIAN_* variables and --config work too. Arguments are passed to
# `meridian serve`, e.g. scripts/run.sh --listen 127.0.0.1:5050 --data /srv/meridian
#
# usage: scripts/run.sh [meridian serve options...]
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/build.sh

exec build/meridian serve "$@"
