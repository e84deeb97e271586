#!/usr/bin/env bash
# bench/scale.sh: how Meridian's cost grows with the registry (issue 21), side by side with the
# peer (Debian's docker-registry, CNCF Distribution 2.8). One repository is grown through the
# given sizes; at each size: push rate (8 clients pushing distinct small manifests as new tags,
# blobs already present; measured over the 2 000 pushes made once the size is reached), manifest
# GET p50/p99 by tag, a tag-list page (first and middle) and the full listing, a catalog page,
# RSS, metadata bytes per tag, and restart to ready. Then, optionally, many repositories of a
# few tags, and the replication apply rate into a fresh region (Meridian only: the peer has no
# replication). Results: one JSON line per measurement in WORK/results.jsonl, a markdown table
# and, when gnuplot is installed, docs-ready PNG plots (bench/scale_plot.sh).
#
# usage: bench/scale.sh [--sizes 1000,10000,100000,1000000] [--peer-max N] [--multi KxT]
#                       [--repl N] [--clients 8] [--work DIR] [--port-base N]
#                       [--servers meridian,peer] [--compact] [--seed DIR:N]
#   --sizes     tag counts of the one repository (default 1000,10000,100000,1000000)
#   --peer-max  largest size measured on the peer (default 100000: at its push rate the
#               peer takes about an hour per million tags)
#   --multi     K repositories of T tags each, e.g. 10000x100 (default: none)
#   --repl      replicate the repository into a fresh region once it has N tags and the
#               2 000 of N's push window (default 0: no); N must be one of --sizes
#   --compact   at each size, also run event-log compaction (POST compaction/run) and record
#               the database's live bytes per tag before and after it (Meridian only)
#   --seed      start Meridian from a copy of the data directory DIR, whose repository
#               scale/app holds the tags t0..t(N-1) pushed by this script (a data-meridian
#               kept from a run whose last size was S holds S + 2 000): sizes below N are
#               skipped, so the pushes at a million are measured without pushing it again.
#   Sizes closer than 2 000 to the one before are skipped (its window holds those tags).
# Everything listens on 127.0.0.1 only. It does not build Meridian: `ninja -C build`.
set -uo pipefail

oci_manifest=application/vnd.oci.image.manifest.v1+json

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$here/.." && pwd)

sizes=1000,10000,100000,1000000
peer_max=100000
multi=""
repl=0
clients=8
work=/var/tmp/meridian-scale
port_base=25400
servers_opt=meridian,peer
compact=0
seed=""
meridian_bin="$repo_root/build/meridian"

while [ $# -gt 0 ]; do
    case "$1" in
    --sizes) sizes="$2"; shift ;;
    --peer-max) peer_max="$2"; shift ;;
    --multi) multi="$2"; shift ;;
    --repl) repl="$2"; shift ;;
    --clients) clients="$2"; shift ;;
    --work) work="$2"; shift ;;
    --port-base) port_base="$2"; shift ;;
    --servers) servers_opt="$2"; shift ;;
    --compact) compact=1 ;;
    --seed) seed="$2"; shift ;;
    --meridian) meridian_bin="$2"; shift ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

for t in cc curl python3; do
    command -v "$t" >/dev/null || { echo "scale.sh: missing $t" >&2; exit 2; }
done
read -r -a servers <<<"${servers_opt//,/ }"
if [[ " ${servers[*]} " == *" peer "* ]] && ! command -v docker-registry >/dev/null; then
    echo "scale.sh: docker-registry missing (scripts/install-deps.sh --bench)" >&2
    exit 2
fi
case "$work" in /|"") echo "scale.sh: refusing --work '$work'" >&2; exit 2 ;; esac
rm -rf "$work"
mkdir -p "$work/logs"
results="$work/results.jsonl"
: >"$results"
client="$work/scale"
cc -O2 -std=c11 -Wall -Wextra -Werror -o "$client" "$here/scale.c" -lcurl -lcrypto -lpthread ||
    exit 2
cp "$meridian_bin" "$work/meridian" || exit 2

port_m=$port_base
port_p=$((port_base + 1))
port_r=$((port_base + 2))
secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
declare -A pid url data
pid[meridian]="" pid[peer]="" pid[replica]=""
url[meridian]="http://127.0.0.1:$port_m" url[peer]="http://127.0.0.1:$port_p"
url[replica]="http://127.0.0.1:$port_r"

stop() {
    local p=${pid[$1]}
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    pid[$1]=""
}
trap 'stop meridian; stop peer; stop replica' EXIT
trap 'exit 130' INT TERM

# ready URL PATH SECONDS: poll until URL/PATH answers 200.
ready() {
    local deadline=$((SECONDS + $3))
    while [ $SECONDS -lt $deadline ]; do
        [ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$1$2")" = 200 ] && return 0
        sleep 0.01
    done
    return 1
}

start() { # start SERVER: starts it on its data directory (kept across restarts)
    case $1 in
    meridian|replica)
        local region=westeurope port=$port_m
        [ "$1" = replica ] && region=eastus port=$port_r
        mkdir -p "$work/data-$1"
        MERIDIAN_PEER_SECRET=$secret "$work/meridian" serve --listen "127.0.0.1:$port" \
            --region "$region" --advertise "${url[$1]}" --data "$work/data-$1" \
            --no-access-log --log-level warn >>"$work/logs/$1.log" 2>&1 &
        pid[$1]=$!
        ready "${url[$1]}" /readyz 60 ;;
    peer)
        mkdir -p "$work/data-peer"
        cat >"$work/peer.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/data-peer
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port_p
EOF
        docker-registry serve "$work/peer.yml" >>"$work/logs/peer.log" 2>&1 &
        pid[peer]=$!
        ready "${url[peer]}" /v2/ 60 ;;
    esac
}

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }

# Server CPU seconds so far (utime + stime, all threads): on a machine shared with other work
# the CPU a push costs is steadier than the wall-clock rate.
cpu_s() {
    local st
    st=$(cat "/proc/${pid[$1]}/stat" 2>/dev/null) || { echo 0; return; }
    st=${st##*) }
    set -- $st
    awk -v t=$((${12} + ${13})) -v h="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / h }'
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/${pid[$1]}/status" 2>/dev/null || echo 0; }

# Metadata bytes: Meridian's database (file + write-ahead log); the peer's repository tree
# (manifests as blobs, revision and tag links), excluding the two layer blobs.
meta_bytes() {
    case $1 in
    meridian)
        local b=0 f
        for f in "$work/data-meridian/meta.db" "$work/data-meridian/meta.db-wal"; do
            [ -f "$f" ] && b=$((b + $(stat -c %s "$f")))
        done
        echo $b ;;
    peer)
        # Disk usage, blocks included: each tag costs the peer several small files.
        du -sB1 "$work/data-peer" | cut -f1 ;;
    esac
}

# Live bytes of Meridian's database: its pages less the free ones (deleted rows leave free
# pages that later writes reuse; the file does not shrink without a VACUUM).
live_bytes() {
    python3 - "$work/data-meridian/meta.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
pages, free, size = (db.execute("PRAGMA %s" % p).fetchone()[0]
                     for p in ("page_count", "freelist_count", "page_size"))
print((pages - free) * size)
PY
}

record() { # record SERVER KIND SIZE JSON
    printf '{"server":"%s","kind":"%s","size":%s,"result":%s}\n' "$1" "$2" "$3" "$4" >>"$results"
    printf '  [%5ds] %-8s %-10s %8s %s\n' $SECONDS "$1" "$2" "$3" "$4"
}

# seed_holds URL N: the seeded repository holds t0..t(N-1) and not tN, or the window would
# time pushes of tags it already has (a different path: no insert).
seed_holds() {
    local last next at_last at_next
    last=$(printf 't%07d' $(($2 - 1))) next=$(printf 't%07d' "$2")
    at_last=$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $oci_manifest" \
        "$1/v2/scale/app/manifests/$last")
    at_next=$(curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $oci_manifest" \
        "$1/v2/scale/app/manifests/$next")
    [ "$at_last" = 200 ] && [ "$at_next" = 404 ] && return 0
    echo "scale.sh: --seed DIR:$2 but the copy answers $at_last for $last and $at_next for" \
        "$next: N must be the number of tags it holds" >&2
    return 1
}

grow() { # grow SERVER: the one-repository sizes
    local s=$1 cur=0 size window=2000 out t0 t1 rss bytes prev_size=0 prev_bytes c0 c1
    # Bytes per tag are marginal: the growth since the previous size (or the empty store).
    stop "$s"
    if [ "$s" = meridian ] && [ -n "$seed" ]; then
        rm -rf "$work/data-meridian"
        cp -r "${seed%:*}" "$work/data-meridian" || return 1
        # The copy's pages are dirty in the page cache: written back now, not during the
        # window, where every commit's sync would wait behind them.
        sync
        cur=${seed##*:} prev_size=${seed##*:}
    fi
    prev_bytes=$(meta_bytes "$s")
    start "$s" || return 1
    if [ "$s" = meridian ] && [ -n "$seed" ]; then
        seed_holds "${url[$s]}" "$cur" || return 1
    fi
    out=$("$client" blobs --url "${url[$s]}" --repo scale/app) || {
        echo "scale.sh: blob upload to $s failed" >&2; return 1; }
    for size in ${sizes//,/ }; do
        if [ "$s" = peer ] && [ "$size" -gt "$peer_max" ]; then
            break
        fi
        [ "$size" -gt "$cur" ] || [ "$size" = "$cur" ] || continue
        # The push rate at a size is that of the $window pushes made once the repository holds
        # that many tags: the same number of pushes at every size, none into a near-empty tree.
        if [ "$size" -gt "$cur" ]; then
            "$client" push --url "${url[$s]}" --repo scale/app --from $cur \
                --count $((size - cur)) --clients "$clients" >/dev/null ||
                echo "scale.sh: fill of $s to $size had errors" >&2
            cur=$size
        fi
        c0=$(cpu_s "$s")
        out=$("$client" push --url "${url[$s]}" --repo scale/app --from $cur \
            --count $window --clients "$clients")
        c1=$(cpu_s "$s")
        # No answer from the client is no measurement: a line that is not JSON would stop
        # scale_report.py reading the whole file.
        [ -n "$out" ] || { echo "scale.sh: the pushes at $size on $s gave no result" >&2; return 1; }
        record "$s" push "$size" "${out%\}},\"server_cpu_ms_per_push\":$(awk -v a="$c1" -v b="$c0" -v n=$window 'BEGIN { printf "%.3f", (a - b) * 1000 / n }'),\"load\":\"$(cut -d' ' -f1 /proc/loadavg)\"}"
        cur=$((cur + window))
        record "$s" get "$size" "$("$client" get --url "${url[$s]}" --repo scale/app \
            --tags "$size" --count 2000)"
        record "$s" list "$size" "$("$client" list --url "${url[$s]}" --repo scale/app)"
        record "$s" catalog "$size" "$("$client" catalog --url "${url[$s]}")"
        rss=$(rss_kib "$s")
        stop "$s"
        # After a clean stop the write-ahead log is checkpointed into the database file.
        bytes=$(meta_bytes "$s")
        record "$s" memory "$size" "{\"rss_kib\":$rss,\"meta_bytes\":$bytes,\"bytes_per_tag\":$(((bytes - prev_bytes) / (cur - prev_size)))}"
        prev_bytes=$bytes prev_size=$cur
        if [ "$s" = meridian ] && [ "$compact" = 1 ]; then
            local live0 live1 ran
            live0=$(live_bytes)
            start "$s" || { echo "scale.sh: $s did not restart" >&2; return 1; }
            ran=$(curl -s -X POST "${url[$s]}/_meridian/v1/compaction/run")
            stop "$s"
            live1=$(live_bytes)
            record "$s" compaction "$size" "{\"live_bytes_before\":$live0,\"live_bytes_after\":$live1,\"live_bytes_per_tag_before\":$((live0 / cur)),\"live_bytes_per_tag_after\":$((live1 / cur)),\"run\":$ran}"
        fi
        t0=$(date +%s.%N)
        start "$s" || { echo "scale.sh: $s did not restart" >&2; return 1; }
        t1=$(date +%s.%N)
        record "$s" restart "$size" "{\"restart_to_ready_s\":$(sub "$t1" "$t0"),\"rss_after_kib\":$(rss_kib "$s")}"
        # The repository holds cur tags (its window's included): the catch-up is timed to all.
        if [ "$s" = meridian ] && [ "$repl" = "$size" ]; then
            replicate "$cur"
        fi
    done
}

replicate() { # replicate N: a fresh region joins and catches up on the N tags
    local n=$1 t0 t1 got=0
    start replica || { echo "scale.sh: replica did not start" >&2; return 1; }
    t0=$(date +%s.%N)
    "$work/meridian" replication create --location eastus --endpoint "${url[replica]}" \
        --registry "${url[meridian]}" >/dev/null || {
        echo "scale.sh: replication create failed" >&2; return 1; }
    local deadline=$((SECONDS + 3600))
    while [ $SECONDS -lt $deadline ]; do
        got=$("$client" count --url "${url[replica]}" --repo scale/app 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["tags"])' 2>/dev/null)
        [ "${got:-0}" -ge "$n" ] && break
        sleep 1
    done
    t1=$(date +%s.%N)
    local dt
    dt=$(sub "$t1" "$t0")
    record meridian replication "$n" "{\"tags\":${got:-0},\"seconds\":$dt,\"tags_per_s\":$(awk -v n="${got:-0}" -v d="$dt" 'BEGIN { printf "%.1f", n / d }')}"
    stop replica
}

many() { # many SERVER: K repositories of T tags
    local s=$1 k=${multi%x*} t=${multi#*x} out
    rm -rf "$work/data-$s"
    start "$s" || return 1
    "$client" blobs --url "${url[$s]}" --repo scale/base >/dev/null || return 1
    out=$("$client" push --url "${url[$s]}" --repo scale/many --repos "$k" --count "$t" \
        --from-repo scale/base --clients "$clients")
    record "$s" multi-push "$((k * t))" "$out"
    record "$s" multi-get "$((k * t))" "$("$client" get --url "${url[$s]}" \
        --repo "scale/many/$(printf %05d $((k / 2)))" --tags "$t" --count 2000)"
    record "$s" multi-catalog "$((k * t))" "$("$client" catalog --url "${url[$s]}")"
    local rss bytes
    rss=$(rss_kib "$s")
    stop "$s"
    bytes=$(meta_bytes "$s")
    record "$s" multi-memory "$((k * t))" "{\"rss_kib\":$rss,\"meta_bytes\":$bytes,\"bytes_per_tag\":$((bytes / (k * t)))}"
    local t0 t1
    t0=$(date +%s.%N)
    start "$s" || return 1
    t1=$(date +%s.%N)
    record "$s" multi-restart "$((k * t))" "{\"restart_to_ready_s\":$(sub "$t1" "$t0")}"
    stop "$s"
}

echo "== scale: sizes $sizes (peer up to $peer_max), multi ${multi:-none}, repl ${repl}"
echo "   load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
for s in "${servers[@]}"; do
    start "$s" || { echo "scale.sh: $s did not start (see $work/logs)" >&2; exit 1; }
    grow "$s"
    stop "$s"
done
if [ -n "$multi" ]; then
    for s in "${servers[@]}"; do
        many "$s"
    done
fi
echo "   load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$here/scale_report.py" "$results" | tee "$work/report.md"
if command -v gnuplot >/dev/null; then
    "$here/scale_plot.sh" "$results" "$work" && echo "plots: $work/scale-*.png"
fi
echo "results: $results"
