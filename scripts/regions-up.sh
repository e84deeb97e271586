#!/usr/bin/env bash
# Brings up a local geo-replicated Meridian registry: three regions, each its own
# `meridian serve` process on its own loopback address with its own data directory
# and SQLite file, joined into one registry; then prints how to push to one region and
# pull from another. Stop them with scripts/regions-down.sh.
#
#   westeurope     http://127.0.1.1:5000   data/regions/westeurope/
#   eastus         http://127.0.1.2:5000   data/regions/eastus/
#   southeastasia  http://127.0.1.3:5000   data/regions/southeastasia/
#   front          http://127.0.4.1:5000   data/regions/front/   (meridian front: one name
#                                                                for all three, docs/front.md)
#
# Each region directory holds data/ (blobs/, uploads/, meta.db), meridian.log and
# meridian.pid. Running it again starts whatever is not running and leaves the rest.
# The peer secret is generated once into data/regions/peer-secret.
#
# usage: scripts/regions-up.sh [--no-build]
#   env: MERIDIAN_REGIONS_PORT (default 5000), MERIDIAN_REGIONS_DIR (default data/regions)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

build=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "regions-up: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

NAMES=(westeurope eastus southeastasia)
# where each region is (LAT,LON), for the web console's map (docs/console.md)
LOCATIONS=(53.35,-6.26 37.43,-78.66 1.35,103.82)
PORT=${MERIDIAN_REGIONS_PORT:-5000}
BASE=${MERIDIAN_REGIONS_DIR:-$ROOT/data/regions}
BIN=$ROOT/build/meridian

if [ "$build" = 1 ]; then
    scripts/install-deps.sh
    scripts/build.sh
fi
[ -x "$BIN" ] || { echo "regions-up: $BIN not found (run scripts/build.sh)" >&2; exit 1; }

mkdir -p "$BASE"
if [ ! -s "$BASE/peer-secret" ]; then
    (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$BASE/peer-secret")
fi
SECRET=$(cat "$BASE/peer-secret")

host_of() { echo "127.0.1.$(($1 + 1))"; }
url_of() { echo "http://$(host_of "$1"):$PORT"; }

# is_ours PIDFILE: the pid in PIDFILE is alive and is a `meridian serve` or `meridian front`
# (not a reused pid)
is_ours() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -Eq "meridian (serve|front)"
}

log_tail() { tail -n 20 "$1" 2>/dev/null | sed 's/^/    /'; }

# --- start every region that is not running ----------------------------------------------

for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    dir=$BASE/$name
    mkdir -p "$dir/data"
    if is_ours "$dir/meridian.pid"; then
        echo "regions-up: $name already running (pid $(cat "$dir/meridian.pid"))"
        continue
    fi
    # The secret goes through the environment, not argv, so `ps` does not show it. setsid:
    # its own session, so that nothing sent to this script's process group (a terminal's
    # Ctrl-C, a CI step ending) stops the region; regions-down.sh does.
    MERIDIAN_PEER_SECRET=$SECRET setsid "$BIN" serve \
        --region "$name" \
        --listen "$(host_of "$i"):$PORT" \
        --advertise "$(url_of "$i")" \
        --data "$dir/data" \
        --region-location "${LOCATIONS[$i]}" \
        >> "$dir/meridian.log" 2>&1 < /dev/null &
    echo $! > "$dir/meridian.pid"
    echo "regions-up: started $name (pid $!) on $(url_of "$i")"
done

# --- wait until each answers /readyz -----------------------------------------------------

for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    dir=$BASE/$name
    deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null --max-time 2 "$(url_of "$i")/readyz" 2>/dev/null; do
        if ! is_ours "$dir/meridian.pid"; then
            echo "regions-up: $name exited; the end of $dir/meridian.log:" >&2
            log_tail "$dir/meridian.log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "regions-up: $name not ready after 30s; the end of $dir/meridian.log:" >&2
            log_tail "$dir/meridian.log" >&2
            exit 1
        fi
        sleep 0.2
    done
done

# --- join them into one registry (the first region is the home region) -------------------

HOME_URL=$(url_of 0)

# members URL: the locations `replication list` of the region at URL reports, one a line
members() {
    "$BIN" replication list --registry "$1" --output json 2>/dev/null | python3 -c '
import json, sys
doc = json.load(sys.stdin)
if isinstance(doc, dict):
    doc = doc.get("replications", doc.get("items", []))
print("\n".join(e["location"] for e in doc))'
}

for i in "${!NAMES[@]}"; do
    [ "$i" -eq 0 ] && continue
    name=${NAMES[$i]}
    known=$(members "$HOME_URL" || true)
    if printf '%s\n' "$known" | grep -qx "$name"; then
        continue
    fi
    "$BIN" replication create --location "$name" --endpoint "$(url_of "$i")" \
        --registry "$HOME_URL" > /dev/null
    echo "regions-up: joined $name"
done

deadline=$((SECONDS + 60))
for i in "${!NAMES[@]}"; do
    until [ "$( (members "$(url_of "$i")" || true) | sort | tr '\n' ' ')" = \
            "$(printf '%s\n' "${NAMES[@]}" | sort | tr '\n' ' ')" ]; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "regions-up: ${NAMES[$i]} does not list every region after 60s:" >&2
            "$BIN" replication list --registry "$(url_of "$i")" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
done

# --- the front: one name for every region ------------------------------------------------

FRONT_HOST=127.0.4.1
FRONT_URL=http://$FRONT_HOST:$PORT
fdir=$BASE/front
mkdir -p "$fdir"
if is_ours "$fdir/meridian.pid"; then
    echo "regions-up: front already running (pid $(cat "$fdir/meridian.pid"))"
else
    region_args=()
    for i in "${!NAMES[@]}"; do
        region_args+=(--region "${NAMES[$i]}=$(url_of "$i")")
    done
    # No --route: every client goes to the healthy region with the lowest measured RTT.
    setsid "$BIN" front --listen "$FRONT_HOST:$PORT" "${region_args[@]}" \
        >> "$fdir/meridian.log" 2>&1 < /dev/null &
    echo $! > "$fdir/meridian.pid"
    echo "regions-up: started front (pid $!) on $FRONT_URL"
    deadline=$((SECONDS + 30))
    until curl -fsS -o /dev/null --max-time 2 "$FRONT_URL/readyz" 2>/dev/null; do
        if ! is_ours "$fdir/meridian.pid" || [ "$SECONDS" -ge "$deadline" ]; then
            echo "regions-up: the front is not ready; the end of $fdir/meridian.log:" >&2
            log_tail "$fdir/meridian.log" >&2
            exit 1
        fi
        sleep 0.2
    done
fi

# --- how to use it -----------------------------------------------------------------------

rel=${BASE#"$ROOT"/}
cat <<EOF

Meridian is up: one registry, three regions.

$("$BIN" replication list --registry "$HOME_URL" 2>/dev/null || true)

  westeurope     $(url_of 0)   $rel/westeurope/
  eastus         $(url_of 1)   $rel/eastus/
  southeastasia  $(url_of 2)   $rel/southeastasia/

Push to westeurope, wait until every region holds it, pull from southeastasia:

  skopeo copy --dest-tls-verify=false \\
      docker://docker.io/library/alpine:3.20 docker://$(host_of 0):$PORT/demo/alpine:3.20
  build/meridian image-version wait demo/alpine:3.20 --replicated --timeout 5m \\
      --registry $(url_of 0)
  skopeo copy --src-tls-verify=false \\
      docker://$(host_of 2):$PORT/demo/alpine:3.20 oci:/tmp/alpine-from-southeastasia:3.20

(Offline, push any OCI layout instead: skopeo copy --dest-tls-verify=false oci:DIR:TAG ...)

  build/meridian replication list --registry $(url_of 1)
  build/meridian image-version show demo/alpine:3.20 --expand replication-status \\
      --registry $(url_of 2)

Or use the one name in front of all three (the nearest healthy region serves each request,
the Meridian-Region response header says which):

  skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://$FRONT_HOST:$PORT/demo/app:1
  curl -sI $FRONT_URL/v2/ | grep Meridian-Region

The web console, with the three regions on a map: $(url_of 0)/console/

Logs: $rel/<region>/meridian.log, $rel/front/meridian.log
Stop: scripts/regions-down.sh [--purge]
EOF
