#!/usr/bin/env bash
# bench/replicas.sh [READ_MIBPS] [SIZE_MIB] [CLIENTS] [REPS]
#
# A burst of CLIENTS concurrent pulls of one SIZE_MIB layer of an image version, with the
# version's regionalReplicaCount 1, then 3, on three volumes whose reads are capped at
# READ_MIBPS each (/work/shared/tools/volumes-up.sh: loop devices + a blkio cgroup the server
# is moved into). The page cache is dropped before each burst (the server sends with
# sendfile, from the page cache). With MEMCAP_MIB set, the server also runs in a memory
# cgroup of that size, so the page cache cannot hold the layer (a registry whose hot set is
# larger than its memory): readers that fall behind read from the disks again.
# Needs root. Prints one line per burst: copies, wall time, aggregate MiB/s, pull times.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${MERIDIAN_BIN:-$ROOT/build/meridian}
TOOLS=${TOOLS:-/work/shared/tools}
RATE=${1:-40}
SIZE=${2:-256}
CLIENTS=${3:-32}
REPS=${4:-2}
MEMCAP_MIB=${MEMCAP_MIB:-0}
REPO=bench/app
REGION=bench

WORK=$(mktemp -d /tmp/meridian-bench-replicas.XXXXXX)
SERVER=
MEMCG=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
    [ -n "$MEMCG" ] && rmdir "$MEMCG" 2>/dev/null || true
    "$TOOLS/volumes-down.sh" "$WORK/vols" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

out=$("$TOOLS/volumes-up.sh" "$WORK/vols" 3 "$RATE" $((SIZE * 2 + 160)))
PROCS=$(echo "$out" | tail -1)
args=()
zone=(a b c)
i=0
while IFS='=' read -r name path; do
    args+=(--volume "$name=$path,zone=${zone[$i]}")
    i=$((i + 1))
done < <(echo "$out" | head -3)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
"$BIN" serve --listen "127.0.0.1:$PORT" --data "$WORK/data" --region "$REGION" \
    --log-level warn --no-access-log --threads 64 "${args[@]}" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -s -o /dev/null "$URL/v2/" && break; sleep 0.1; done
echo "$SERVER" > "$PROCS"
if [ "$MEMCAP_MIB" -gt 0 ]; then
    MEMCG=/sys/fs/cgroup/memory/meridian-bench-replicas-$$
    mkdir -p "$MEMCG"
    echo $((MEMCAP_MIB * 1048576)) > "$MEMCG/memory.limit_in_bytes"
    echo "$SERVER" > "$MEMCG/cgroup.procs"
fi

api() { curl -sf -X "$1" "$URL/_meridian/v1/$2" -H 'Content-Type: application/json' ${3:+-d "$3"}; }
push_blob() { # file -> digest
    local d="sha256:$(sha256sum "$1" | cut -c1-64)"
    curl -sf -X POST --data-binary "@$1" -H 'Content-Type: application/octet-stream' \
        "$URL/v2/$REPO/blobs/uploads/?digest=$d" >/dev/null
    echo "$d"
}

api POST "image-definitions?repository=$REPO" "{\"defaultTargetRegions\":[\"$REGION=1\"]}" >/dev/null
head -c $((SIZE * 1048576)) /dev/urandom > "$WORK/layer"
printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' > "$WORK/config"
LAYER=$(push_blob "$WORK/layer")
CONFIG=$(push_blob "$WORK/config")
rm -f "$WORK/layer"
cat > "$WORK/manifest" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$CONFIG","size":$(stat -c %s "$WORK/config")},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$LAYER","size":$((SIZE * 1048576))}]}
EOF
curl -sf -X PUT --data-binary "@$WORK/manifest" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    "$URL/v2/$REPO/manifests/1.0.0" >/dev/null

replicas() {
    api GET "image-versions?repository=$REPO&reference=1.0.0" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print([r.get("replicas") for r in d["replicationStatus"]["summary"] if r["region"]=="'$REGION'"][0])'
}

echo "# $CLIENTS concurrent pulls of a $SIZE MiB layer; volumes capped at $RATE MiB/s each;" \
     "memory cap ${MEMCAP_MIB:-0} MiB (0: none)"
echo "# copies  burst_s  aggregate_MiB/s  pull_s_min  pull_s_median  pull_s_max"
for count in 1 3; do
    api PATCH "image-versions?repository=$REPO&reference=1.0.0" \
        "{\"addRegions\":[\"$REGION=$count\"]}" >/dev/null
    for _ in $(seq 600); do [ "$(replicas)" = "$count/$count" ] && break; sleep 1; done
    [ "$(replicas)" = "$count/$count" ] || { echo "copies did not reach $count" >&2; exit 1; }
    for _ in $(seq "$REPS"); do
        sync
        echo 3 > /proc/sys/vm/drop_caches
        start=$(date +%s.%N)
        pids=()
        for c in $(seq "$CLIENTS"); do
            curl -sf -o /dev/null -w '%{time_total}\n' "$URL/v2/$REPO/blobs/$LAYER" \
                > "$WORK/pull.$c" &
            pids+=($!)
        done
        wait "${pids[@]}" || true
        end=$(date +%s.%N)
        cat "$WORK"/pull.* | python3 -c '
import sys
t = sorted(float(x) for x in sys.stdin if x.strip())
wall = '"$end"' - '"$start"'
n = len(t)
assert n == '"$CLIENTS"', "only %d pulls completed" % n
print("%6d  %7.1f  %15.0f  %10.1f  %13.1f  %10.1f" % ('"$count"', wall,
      n * '"$SIZE"' / wall, t[0], t[n // 2], t[-1]))'
        rm -f "$WORK"/pull.*
    done
done
