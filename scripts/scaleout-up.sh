#!/usr/bin/env bash
# scaleout-up.sh DIR [NODES] [PORT]
#
# One region of the scale-out tier on this machine, for trying it out (docs/scale-out.md):
# a throwaway PostgreSQL cluster (pg-up.sh, durability off), NODES (default 2) `meridian
# serve` processes of region "local" on one database and one data directory (the
# filesystem blob store shared by all), and a round-robin TCP balancer in front of them on
# 127.0.0.1:PORT (default 5000). Runs in the foreground; Ctrl-C stops the nodes, the
# balancer and the cluster (DIR stays: run again to reuse it).
#
# Environment: MERIDIAN_BIN (default build/meridian), MERIDIAN_PG_TOOLS (the directory of
# pg-up.sh; default ../shared/tools, then /work/shared/tools), PG_PORT (default 5433).
# Extra flags for every node: MERIDIAN_ARGS (e.g. "--blobstore s3://bucket/prefix").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { echo "usage: scaleout-up.sh DIR [NODES] [PORT]" >&2; exit 2; }
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
NODES=${2:-2}
PORT=${3:-5000}
BIN=${MERIDIAN_BIN:-$ROOT/build/meridian}
TOOLS=${MERIDIAN_PG_TOOLS:-}
for d in "$TOOLS" "$ROOT/../shared/tools" /work/shared/tools; do
    if [ -n "$d" ] && [ -x "$d/pg-up.sh" ]; then TOOLS=$d; break; fi
done
[ -x "$TOOLS/pg-up.sh" ] || { echo "scaleout-up: pg-up.sh not found (MERIDIAN_PG_TOOLS)" >&2; exit 1; }

URI=$("$TOOLS/pg-up.sh" "$DIR/pg" "${PG_PORT:-5433}" registry | tail -n 1)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    "$TOOLS/pg-down.sh" "$DIR/pg" >/dev/null 2>&1 || true
}
# Ctrl-C or kill: exit, and the exit runs cleanup once (a trap on INT alone would run it,
# then let the script go on to its end and run it again on the exit).
trap cleanup EXIT
trap 'exit 130' INT TERM

backends=()
for i in $(seq 1 "$NODES"); do
    log="$DIR/node$i.log"
    : >"$log"
    # shellcheck disable=SC2086
    # Every node advertises the balancer: peers must call the region there, not a node.
    "$BIN" serve --listen 127.0.0.1:0 --advertise "http://127.0.0.1:$PORT" --data "$DIR/data" \
        --metastore "$URI" ${MERIDIAN_ARGS:-} >>"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 200); do
        addr=$(grep -oE "listening on http://[0-9.]+:[0-9]+" "$log" | head -n 1 | sed 's#.*http://##') || true
        [ -n "$addr" ] && break
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    [ -n "$addr" ] || { echo "scaleout-up: node $i did not start" >&2; cat "$log" >&2; exit 1; }
    echo "node $i: http://$addr (log $log)"
    backends+=("$addr")
done
python3 "$ROOT/tests/e2e/roundrobin.py" "$PORT" "${backends[@]}" &
pids+=($!)
echo "region 'local': http://127.0.0.1:$PORT (metadata $URI, data $DIR/data); Ctrl-C stops"
wait "${pids[-1]}"
