#!/usr/bin/env bash
# Stops the local three-region registry that scripts/regions-up.sh started: each region
# and the front by the pid in its pid file (only if that pid is still a `meridian serve`
# or `meridian front`), SIGTERM and
# then, after 40 s, SIGKILL. Data stays unless --purge is given (then data/regions/ is
# removed, peer secret included).
#
# usage: scripts/regions-down.sh [--purge]
#   env: MERIDIAN_REGIONS_DIR (default data/regions)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

purge=0
for arg in "$@"; do
    case "$arg" in
        --purge) purge=1 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "regions-down: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

BASE=${MERIDIAN_REGIONS_DIR:-$ROOT/data/regions}

is_ours() {
    [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' < "/proc/$1/cmdline" | grep -Eq "meridian (serve|front)"
}

pids=()
names=()
shopt -s nullglob
for pidfile in "$BASE"/*/meridian.pid; do
    name=$(basename "$(dirname "$pidfile")")
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [ -n "$pid" ] && is_ours "$pid"; then
        kill -TERM "$pid"
        pids+=("$pid")
        names+=("$name")
        echo "regions-down: stopping $name (pid $pid)"
    else
        echo "regions-down: $name was not running"
        rm -f "$pidfile"
    fi
done

# SIGTERM lets each finish its requests in flight (--shutdown-grace, 30 s by default)
deadline=$((SECONDS + 40))
for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    while is_ours "$pid"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "regions-down: ${names[$i]} (pid $pid) still running: SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    rm -f "$BASE/${names[$i]}/meridian.pid"
done

if [ "$purge" = 1 ]; then
    rm -rf "$BASE"
    echo "regions-down: removed $BASE"
fi
