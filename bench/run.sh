#!/usr/bin/env bash
# bench/run.sh: Meridian against its peer (Debian's docker-registry, CNCF Distribution 2.8) and
# against the limits of this machine (nginx sendfile of the same files, OpenSSL SHA-256, file
# write with fsync), all in one run, each scenario against each server in turn, then a table of
# medians with ratios and targets (bench/report.py). Everything listens on 127.0.0.1 only; every
# load step is bounded in count and time. It does not install or build Meridian: `ninja -C build`.
#
# usage: bench/run.sh [--quick] [--reps N] [--work DIR] [--meridian PATH] [--meridian-arg A]
#                     [--peer-only] [--no-peer]
#                     [--require-meridian] [--port-base N] [--only LIST] [--keep] [--strict]
#                     [--tls] [--tls-key rsa|ecdsa] [--tier fs|s3] [--nodes-reps N] [--nodes-perf]
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

quick=0
reps=""
nodes_reps=""
nodes_perf=0
work=/var/tmp/meridian-bench
meridian_bin="$repo/build/meridian"
meridian_args=()
peer_only=0
no_peer=0
require_meridian=0
port_base=25300
only=""
keep=0
strict=0
hot_rate=""
tls=0
tls_key=rsa
tier=fs

usage() {
    cat <<EOF
usage: bench/run.sh [options]
  --quick              tiny sizes, ~1-2 s per scenario: a smoke test of the harness, not speed
  --reps N             runs of each scenario per server, for medians (default 3, quick 1)
  --nodes-reps N       runs of the nodes row (tier s3: one node, then two; default --reps)
  --nodes-perf         profile the nodes row with perf record -a -g (its figures then carry
                       perf's cost): logs/perf-nodes-N-rREP.txt, by process and by function
  --work DIR           scratch directory on the data disk (default $work); emptied first
  --meridian PATH      Meridian binary (default build/meridian)
  --meridian-arg ARG   one more argument to meridian serve (repeat it: --meridian-arg
                       --threads --meridian-arg 4)
  --peer-only          leave Meridian out even if it serves /v2/
  --no-peer            leave the peer out (Meridian against the limits only)
  --require-meridian   fail if Meridian does not serve /v2/
  --port-base N        Meridian on N, peer on N+1, nginx on N+2 (default $port_base)
  --only LIST          comma-separated rows to run: push-small,push-large,push-1g-mono,
                       push-1g-chunked,pull-small,pull-large,manifest,manifest-wrk,conn-new,
                       mixed,hot,nodes (nodes: tier s3 only)
  --tls                every server over HTTPS with one self-signed certificate (all rows)
  --tls-key TYPE       rsa (RSA-2048, default) or ecdsa (ECDSA P-256)
  --tier TIER          fs (default: local files; Meridian on SQLite) or s3: both registries
                       keep their blobs in one Ceph RGW (ceph-rgw-up.sh, bluestore unless
                       CEPH_OSD_STORE says otherwise), Meridian its metadata in PostgreSQL
                       (pg-up.sh); the peer uses its s3 driver, redirects off (both stream)
  --hot-rate R         pulls/s offered in the hot rows (default 200, quick 50)
  --keep               keep the work directory (data, logs, results) afterwards
  --strict             exit 1 if any request to any server failed (default: only peer/nginx)
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
    --quick) quick=1 ;;
    --reps) reps="$2"; shift ;;
    --nodes-reps) nodes_reps="$2"; shift ;;
    --nodes-perf) nodes_perf=1 ;;
    --work) work="$2"; shift ;;
    --meridian) meridian_bin="$2"; shift ;;
    --meridian-arg) meridian_args+=("$2"); shift ;;
    --peer-only) peer_only=1 ;;
    --no-peer) no_peer=1 ;;
    --require-meridian) require_meridian=1 ;;
    --port-base) port_base="$2"; shift ;;
    --only) only=",$2," ; shift ;;
    --hot-rate) hot_rate="$2"; shift ;;
    --keep) keep=1 ;;
    --strict) strict=1 ;;
    --tls) tls=1 ;;
    --tls-key) tls_key="$2"; shift ;;
    --tier) tier="$2"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

# ------------------------------------------------------------------ sizes

if [ "$quick" = 1 ]; then
    : "${reps:=1}"
    small_images=12 small_layer=4K small_clients=4
    large_images=2 large_layer=2M large_clients=2
    big_size=8M chunk=2M
    duration=1 warmup=0.2
    hot_conns_low=8 hot_conns_high=64
    : "${hot_rate:=50}"
else
    : "${reps:=3}"
    small_images=200 small_layer=64K small_clients=8
    large_images=8 large_layer=256M large_clients=2
    big_size=1G chunk=64M
    duration=10 warmup=1
    hot_conns_low=32 hot_conns_high=1000
    : "${hot_rate:=200}"
fi
manifest_conns=32

accept='Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json'
accept+=', application/vnd.docker.distribution.manifest.v2+json'
accept+=', application/vnd.docker.distribution.manifest.list.v2+json'

# ------------------------------------------------------------------ tools

missing=""
for t in cc docker-registry nginx wrk curl python3 timeout sync; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if [ -n "$missing" ]; then
    echo "run.sh: missing:$missing" >&2
    echo "run.sh: scripts/install-deps.sh --bench installs them" >&2
    exit 2
fi

hard=$(ulimit -Hn)
ulimit -n "$hard" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((hot_conns_high * 2 + 256)) ]; then
    echo "run.sh: open-file limit $(ulimit -n) is too low for $hot_conns_high connections" >&2
    exit 2
fi

case "$work" in
/|"") echo "run.sh: refusing --work '$work'" >&2; exit 2 ;;
esac
rm -rf "$work"
mkdir -p "$work/logs" "$work/limit" || exit 2
results="$work/results.jsonl"
: >"$results"

loadgen="$work/loadgen"
if ! cc -O2 -g -std=c11 -Wall -Wextra -Werror -o "$loadgen" "$here/loadgen.c" \
    -lcurl -lcrypto -lpthread; then
    echo "run.sh: failed to build the load generator (scripts/install-deps.sh --bench?)" >&2
    exit 2
fi

port_m=$port_base
port_p=$((port_base + 1))
port_n=$((port_base + 2))
# --tls: one certificate for all three servers; clients trust it (curl, loadgen: --cacert;
# wrk does not check certificates).
scheme=http
tls_label=""
curl_tls=()
lg_tls=()
m_tls=()
if [ "$tls" = 1 ]; then
    mkdir -p "$work/tls"
    case "$tls_key" in
    rsa) newkey=(-newkey rsa:2048) tls_label="RSA-2048" ;;
    ecdsa) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) tls_label="ECDSA P-256" ;;
    *) echo "run.sh: --tls-key rsa or ecdsa" >&2; exit 2 ;;
    esac
    if ! openssl req -x509 "${newkey[@]}" -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$work/tls/key.pem" \
        -out "$work/tls/cert.pem" >"$work/logs/openssl.log" 2>&1; then
        echo "run.sh: openssl could not make the certificate (see $work/logs/openssl.log)" >&2
        exit 2
    fi
    scheme=https
    curl_tls=(--cacert "$work/tls/cert.pem")
    lg_tls=(--cacert "$work/tls/cert.pem")
    m_tls=(--tls-cert "$work/tls/cert.pem" --tls-key "$work/tls/key.pem")
fi
url_m="$scheme://127.0.0.1:$port_m"
url_p="$scheme://127.0.0.1:$port_p"
url_n="$scheme://127.0.0.1:$port_n"
clk_tck=$(getconf CLK_TCK)

for p in $port_m $port_p $port_n; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "run.sh: port $p on 127.0.0.1 is in use; pick another --port-base" >&2
        exit 2
    fi
done

# ------------------------------------------------------------------ the s3 tier's servers

m_tier=()
case "$tier" in
fs) ;;
s3)
    tools=""
    for d in "${MERIDIAN_TOOLS:-}" "$repo/../shared/tools" /work/shared/tools; do
        [ -n "$d" ] && [ -x "$d/ceph-rgw-up.sh" ] && [ -x "$d/pg-up.sh" ] && { tools=$d; break; }
    done
    if [ -z "$tools" ]; then
        echo "run.sh: --tier s3 needs ceph-rgw-up.sh and pg-up.sh (set MERIDIAN_TOOLS)" >&2
        exit 2
    fi
    echo "== starting Ceph RGW and PostgreSQL (tier s3)"
    if ! rgw_env=$(CEPH_OSD_STORE=${CEPH_OSD_STORE:-bluestore} \
        "$tools/ceph-rgw-up.sh" "$work/ceph" $((port_base + 3)) 2>"$work/logs/rgw-up.log"); then
        echo "run.sh: ceph-rgw-up.sh failed (see $work/logs/rgw-up.log)" >&2
        exit 1
    fi
    eval "$rgw_env"
    export S3_ENDPOINT S3_REGION S3_ACCESS_KEY S3_SECRET_KEY
    if ! pg_uri=$("$tools/pg-up.sh" "$work/pg" $((port_base + 5)) bench 2>"$work/logs/pg-up.log" |
        grep -E "^postgres(ql)?://" | tail -n 1) || [ -z "$pg_uri" ]; then
        echo "run.sh: pg-up.sh failed (see $work/logs/pg-up.log)" >&2
        "$tools/ceph-rgw-down.sh" "$work/ceph" --rm >/dev/null 2>&1
        exit 1
    fi
    # The peer's driver does not make its bucket.
    curl -sf -X PUT --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$S3_ENDPOINT/bench-peer" >/dev/null || true
    m_tier=(--metastore "$pg_uri" --blobstore s3://bench-meridian --s3-endpoint "$S3_ENDPOINT")
    # RGW alone: plain SigV4 PUTs and GETs of the large rows' bytes, in bucket bench-rgw.
    rgw_sig=(--aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY"
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
    curl -sf -X PUT "${rgw_sig[@]}" "$S3_ENDPOINT/bench-rgw" >/dev/null || true
    ;;
*) echo "run.sh: --tier fs or s3" >&2; exit 2 ;;
esac

# ------------------------------------------------------------------ servers

declare -A pid url
pid[meridian]="" pid[peer]="" pid[nginx]="" pid[meridian2]=""
url[meridian]=$url_m url[peer]=$url_p url[nginx]=$url_n
# Tier s3: a second node of Meridian's region (same database, same bucket) for the nodes row.
port_m2=$((port_base + 7))
url[meridian2]="$scheme://127.0.0.1:$port_m2"

stop_server() {
    local name=$1 p=${pid[$1]}
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    pid[$name]=""
}

cleanup() {
    stop_server meridian
    stop_server meridian2
    stop_server peer
    stop_server nginx
    if [ "$tier" = s3 ]; then
        "$tools/pg-down.sh" "$work/pg" --rm >/dev/null 2>&1
        "$tools/ceph-rgw-down.sh" "$work/ceph" --rm >/dev/null 2>&1
    fi
    if [ "$keep" = 0 ]; then
        rm -rf "$work/data-meridian" "$work/data-meridian2" "$work/data-peer" "$work/static" \
            "$work/limit" "$work/rgw-layer"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_status URL CODE SECONDS: poll until URL answers CODE or the deadline passes.
wait_status() {
    local u=$1 want=$2 deadline=$((SECONDS + $3)) got
    while [ $SECONDS -lt $deadline ]; do
        got=$(curl -s "${curl_tls[@]}" -o /dev/null -m 2 -w '%{http_code}' "$u" 2>/dev/null)
        [ "$got" = "$want" ] && return 0
        sleep 0.1
    done
    return 1
}

# The peer's storage section: local files, or the s3 tier's bucket.
peer_storage() {
    if [ "$tier" = s3 ]; then
        cat <<EOF
  s3:
    accesskey: $S3_ACCESS_KEY
    secretkey: $S3_SECRET_KEY
    region: $S3_REGION
    regionendpoint: $S3_ENDPOINT
    bucket: bench-peer
    secure: false
    v4auth: true
    rootdirectory: /
  redirect:
    disable: true
EOF
    else
        cat <<EOF
  filesystem:
    rootdirectory: $work/data-peer
EOF
    fi
}

start_peer() {
    mkdir -p "$work/data-peer"
    cat >"$work/peer.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
$(peer_storage)
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port_p
EOF
    if [ "$tls" = 1 ]; then
        cat >>"$work/peer.yml" <<EOF
  tls:
    certificate: $work/tls/cert.pem
    key: $work/tls/key.pem
EOF
    fi
    # Distribution 2.8's s3 driver panics when AWS_CA_BUNDLE is set (its HTTP client cannot
    # take a CA bundle); the bench's RGW is plain HTTP on loopback.
    env -u AWS_CA_BUNDLE docker-registry serve "$work/peer.yml" >"$work/logs/peer.log" 2>&1 &
    pid[peer]=$!
    wait_status "$url_p/v2/" 200 30
}

start_meridian() {
    mkdir -p "$work/data-meridian"
    # A copy: a rebuild of build/ during the run must not change the server under test.
    cp "$meridian_bin" "$work/meridian" || return 1
    # Every load generator connects from 127.0.0.1, up to 1000 connections at once: lift the
    # per-address cap (default 128), which is there for real clients, not for the bench.
    "$work/meridian" serve --listen "127.0.0.1:$port_m" --data "$work/data-meridian" \
        --no-access-log --conn-limit-per-ip 0 "${m_tls[@]}" "${m_tier[@]}" "${meridian_args[@]}" \
        >"$work/logs/meridian.log" 2>&1 &
    pid[meridian]=$!
    wait_status "$url_m/readyz" 200 20 && wait_status "$url_m/v2/" 200 5
}

# The region's second node (tier s3): the same database and bucket, its own port and --data.
start_meridian2() {
    mkdir -p "$work/data-meridian2"
    "$work/meridian" serve --listen "127.0.0.1:$port_m2" --data "$work/data-meridian2" \
        --no-access-log --conn-limit-per-ip 0 "${m_tls[@]}" "${m_tier[@]}" "${meridian_args[@]}" \
        >"$work/logs/meridian2.log" 2>&1 &
    pid[meridian2]=$!
    wait_status "${url[meridian2]}/readyz" 200 20 && wait_status "${url[meridian2]}/v2/" 200 5
}

# nginx serves the exported sets as static files under the same URL paths as a registry.
start_nginx() {
    mkdir -p "$work/nginx/tmp" "$work/static/v2"
    local listen_tls=""
    # nginx 1.22 leaves TLS 1.3 out of its default ssl_protocols: ask for what Meridian speaks.
    [ "$tls" = 1 ] && listen_tls=" ssl;
        ssl_certificate $work/tls/cert.pem;
        ssl_certificate_key $work/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3"
    cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/logs/nginx-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path $work/nginx/tmp;
    proxy_temp_path $work/nginx/tmp;
    fastcgi_temp_path $work/nginx/tmp;
    uwsgi_temp_path $work/nginx/tmp;
    scgi_temp_path $work/nginx/tmp;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$port_n$listen_tls;
        root $work/static;
        location = /v2/ { default_type application/json; return 200 '{}'; }
        location ~ /manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
    }
}
EOF
    nginx -c "$work/nginx/nginx.conf" -e "$work/logs/nginx-error.log" \
        >"$work/logs/nginx.log" 2>&1 &
    pid[nginx]=$!
    wait_status "$url_n/v2/" 200 10
}

# A daemon's pid from its pid file (first line), if that process still runs.
pidfile_pid() {
    local p
    p=$(head -n 1 "$1" 2>/dev/null) || return 0
    [ -n "$p" ] && [ -d "/proc/$p" ] && echo "$p"
}

# All processes of a server: the process and its children (nginx workers). "rgw" is the
# Ceph daemons that serve the bucket (radosgw, the OSD, the monitor); "pg" the PostgreSQL
# postmaster and its backends.
server_pids() {
    if [ "$1" = rgw ]; then
        local d
        for d in client.rgw.a osd.0 mon.a; do pidfile_pid "$work/ceph/run/$d.pid"; done
        return 0
    fi
    if [ "$1" = pg ]; then
        local base=$work/pg pm
        [ -f "$work/pg/datadir" ] && base=$(cat "$work/pg/datadir")
        pm=$(pidfile_pid "$base/data/postmaster.pid")
        [ -n "$pm" ] || return 0
        echo "$pm"
        pgrep -P "$pm" 2>/dev/null
        return 0
    fi
    local p=${pid[$1]}
    [ -n "$p" ] || return 0
    echo "$p"
    pgrep -P "$p" 2>/dev/null
}

# Server CPU in clock ticks: utime + stime from /proc/<pid>/stat (fields 14, 15), all threads.
cpu_ticks() {
    local total=0 p s
    for p in $(server_pids "$1"); do
        s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        s=${s##*) }
        set -- $s
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

# mem_kib SERVER FIELD: VmRSS or VmHWM summed over the server's processes.
# rollup_kib SERVER FIELD...: the sum of smaps_rollup FIELDs (Pss, Private_Dirty, ...) in KiB.
rollup_kib() {
    local server=$1 total=0 p f v
    shift
    for p in $(server_pids "$server"); do
        for f in "$@"; do
            v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
            total=$((total + ${v:-0}))
        done
    done
    echo "$total"
}

mem_kib() {
    local total=0 p v
    for p in $(server_pids "$1"); do
        v=$(awk -v f="$2:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

reset_peak() {
    local p
    for p in $(server_pids "$1"); do
        echo 5 >"/proc/$p/clear_refs" 2>/dev/null
    done
}

# ------------------------------------------------------------------ measuring

harness_failed=0
peer_errors=0
meridian_errors=0

record() { # record SERVER ROW REP CPU_TICKS PEAK_KIB JSON [RGW_CPU_TICKS]
    local cpu extra=""
    cpu=$(awk -v t="$4" -v h="$clk_tck" 'BEGIN { printf "%.3f", t / h }')
    [ -n "${7:-}" ] && extra=$(awk -v t="$7" -v h="$clk_tck" 'BEGIN { printf ",\"rgw_cpu_s\":%.3f", t / h }')
    printf '{"server":"%s","row":"%s","rep":%s,"cpu_s":%s,"peak_kib":%s%s,"result":%s}\n' \
        "$1" "$2" "$3" "$cpu" "$5" "$extra" "$6" >>"$results"
}

count_errors() { # count_errors SERVER JSON
    local e=0 re='"errors":([0-9]+)' rq='"req_errors":([0-9]+)'
    [[ $2 =~ $re ]] && e=$((e + BASH_REMATCH[1]))
    [[ $2 =~ $rq ]] && e=$((e + BASH_REMATCH[1]))
    if [ "$1" = meridian ]; then
        meridian_errors=$((meridian_errors + e))
    else
        peer_errors=$((peer_errors + e))
    fi
}

# One line per run for the log: the figures that matter, from the JSON.
summary() {
    local out=${1%%\"kinds\"*} k line="" re
    for k in ops_per_s mib_per_s errors; do
        re="\"$k\":([0-9.]+)"
        [[ $out =~ $re ]] && line="$line ${k//_per_s/\/s} ${BASH_REMATCH[1]}"
    done
    re='"op_ms":\{[^}]*"p99":([0-9.]+)'
    [[ $out =~ $re ]] && line="$line p99_ms ${BASH_REMATCH[1]}"
    echo "${line# }"
}

# measure SERVER ROW REP TOOL ARGS...: one measured run; TOOL is loadgen or wrk.
measure() {
    local server=$1 row=$2 rep=$3 tool=$4 out c0 c1 peak r0="" r1=""
    shift 4
    sync
    reset_peak "$server"
    # Tier s3: the Ceph daemons' CPU too, whoever drives them.
    [ "$tier" = s3 ] && [ "$server" != rgw ] && r0=$(cpu_ticks rgw)
    c0=$(cpu_ticks "$server")
    if [ "$tool" = wrk ]; then
        out=$(timeout 600 wrk "$@" 2>>"$work/logs/wrk.err" | wrk_json)
    elif [ "$tool" = rgw ]; then
        out=$(rgw_io "$@")
    else
        out=$(timeout 900 "$loadgen" "$@" --url "${url[$server]}" "${lg_tls[@]}" \
            2>>"$work/logs/loadgen.err")
    fi
    c1=$(cpu_ticks "$server")
    [ -n "$r0" ] && r1=$(( $(cpu_ticks rgw) - r0 ))
    peak=$(mem_kib "$server" VmHWM)
    if [ -z "$out" ] || [ "${out:0:1}" != "{" ]; then
        echo "run.sh: $row against $server produced no result (see $work/logs/)" >&2
        harness_failed=1
        out='{"errors":1,"failed":true}'
    fi
    count_errors "$server" "$out"
    record "$server" "$row" "$rep" $((c1 - c0)) "$peak" "$out" "$r1"
    printf '  [%4ds] %-16s %-9s rep %s: %s\n' $SECONDS "$row" "$server" "$rep" "$(summary "$out")"
}

# wrk's text report -> the loadgen's JSON shape (req/s, latency percentiles in ms, errors).
wrk_json() {
    awk '
    function ms(v) {
        if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
        if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
        if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
        return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "90%" { p90 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /requests in/ { reqs = $1 }
    /Non-2xx or 3xx responses:/ { errs += $NF }
    /Socket errors:/ { for (i = 4; i <= NF; i += 2) { v = $i; sub(",", "", v); errs += v } }
    /^Requests\/sec:/ { rps = $2 }
    END {
        if (rps == "") exit
        printf "{\"scenario\":\"wrk\",\"ops\":%d,\"requests\":%d,", reqs, reqs
        printf "\"errors\":%d,\"req_errors\":0,", errs
        printf "\"ops_per_s\":%s,\"req_per_s\":%s,\"mib_per_s\":0,", rps, rps
        printf "\"op_ms\":{\"p50\":%s,\"p90\":%s,\"p99\":%s}}\n", p50 + 0, p90 + 0, p99 + 0
    }'
}

# rgw_io push|pull SET: RGW alone, the large rows' bytes with plain curl (SigV4, unsigned
# payload): $large_images objects of $large_layer each, $large_clients at a time, PUT into
# or GET from bench-rgw/SET/. Prints the loadgen's JSON shape.
rgw_io() {
    local op=$1 set=$2 t0 t1 codes n=$large_images size
    size=$(stat -c %s "$rgw_file")
    codes="$work/logs/rgw-$op.codes"
    t0=$(date +%s.%N)
    if [ "$op" = push ]; then
        seq 0 $((n - 1)) | timeout 900 xargs -P "$large_clients" -I{} curl -s -o /dev/null \
            -w '%{http_code}\n' -X PUT "${rgw_sig[@]}" -T "$rgw_file" \
            "$S3_ENDPOINT/bench-rgw/$set/{}" >"$codes" 2>>"$work/logs/rgw.err"
    else
        seq 0 $((n - 1)) | timeout 900 xargs -P "$large_clients" -I{} curl -s -o /dev/null \
            -w '%{http_code}\n' "${rgw_sig[@]}" "$S3_ENDPOINT/bench-rgw/$set/{}" \
            >"$codes" 2>>"$work/logs/rgw.err"
    fi
    t1=$(date +%s.%N)
    awk -v n="$n" -v size="$size" -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
        -v dir="$([ "$op" = push ] && echo up || echo down)" '
        $1 == 200 { ok++ }
        END {
            bytes = ok * size
            printf "{\"scenario\":\"rgw-%s\",\"ops\":%d,\"errors\":%d,", dir, ok, n - ok
            printf "\"bytes_%s\":%d,\"seconds\":%.3f,", dir, bytes, t
            printf "\"ops_per_s\":%.3f,\"mib_per_s\":%.3f}\n", ok / t, bytes / t / 1048576
        }' "$codes"
}

# Busy and total clock ticks of the whole machine, all cores (/proc/stat; busy leaves out
# idle and iowait).
machine_ticks() {
    awk '$1 == "cpu" { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t; exit }' \
        /proc/stat
}

# nodes_run N REP: manifest GET by tag (the wrk rows' path), 32 connections in all, either
# on one node (one wrk, 2 threads) or split over the region's two nodes (one wrk per node,
# 1 thread each, at once). Besides req/s it records where the machine's CPU went: each node,
# PostgreSQL (postmaster and backends), the Ceph daemons, the load generators, and the
# machine's busy share, plus what PostgreSQL's active backends waited on, sampled twice a
# second (pg_stat_activity): a lock shared by the nodes would show up there as Lock waits.
nodes_run() {
    local n=$1 rep=$2 i p conns=$((manifest_conns / $1)) threads=$((2 / $1))
    local names=(meridian meridian2) procs=(meridian meridian2 pg rgw) wpids=() m0 m1
    declare -A c0 c1
    sync
    for p in "${procs[@]}"; do c0[$p]=$(cpu_ticks "$p"); done
    m0=$(machine_ticks)
    for ((i = 0; i < n; i++)); do
        /usr/bin/time -f '%U %S' -o "$work/logs/nodes-wrk$i.time" timeout 600 \
            wrk -t$threads -c$conns -d"${duration}s" --latency -H "$accept" \
            "${url[${names[$i]}]}$hot_path" >"$work/logs/nodes-wrk$i.out" 2>>"$work/logs/wrk.err" &
        wpids+=($!)
    done
    local samples=$((${duration%.*} * 2 - 1)) perf_pid=""
    if [ "$nodes_perf" = 1 ]; then
        perf record -a -g -F 499 -o "$work/logs/perf-nodes-$n-r$rep.data" -- \
            sleep "$duration" >/dev/null 2>>"$work/logs/perf.err" &
        perf_pid=$!
    fi
    {
        for ((i = 0; i < samples; i++)); do
            echo "SELECT pg_sleep(0.5); SELECT 'sample';"
            echo "SELECT coalesce(wait_event_type, 'CPU') || ':' ||"
            echo "  coalesce(wait_event, 'running') FROM pg_stat_activity WHERE state = 'active'"
            echo "  AND datname = current_database() AND pid <> pg_backend_pid();"
        done
    } | timeout 600 psql -Atq "$pg_uri" 2>>"$work/logs/psql.err" | grep . \
        >"$work/logs/nodes-waits.txt"
    wait "${wpids[@]}"
    m1=$(machine_ticks)
    if [ -n "$perf_pid" ]; then
        wait "$perf_pid"
        {
            echo "== samples by process"
            perf report -i "$work/logs/perf-nodes-$n-r$rep.data" --stdio --no-children \
                --sort comm 2>/dev/null | grep -v '^#' | grep '%' | head -25
            echo "== meridian, by function"
            perf report -i "$work/logs/perf-nodes-$n-r$rep.data" --stdio --no-children -g none \
                --comm meridian,MHD-worker --sort sym 2>/dev/null | grep -v '^#' | grep '%' | head -40
            echo "== postgres, by function"
            perf report -i "$work/logs/perf-nodes-$n-r$rep.data" --stdio --no-children -g none \
                --comm postgres --sort sym 2>/dev/null | grep -v '^#' | grep '%' | head -25
        } >"$work/logs/perf-nodes-$n-r$rep.txt"
    fi
    for p in "${procs[@]}"; do c1[$p]=$(cpu_ticks "$p"); done
    local rps=0 errs=0 p99=0 per="" out wrk_cpu=0 t
    for ((i = 0; i < n; i++)); do
        out=$(wrk_json <"$work/logs/nodes-wrk$i.out")
        [ -n "$out" ] || { out='{"ops_per_s":0,"errors":1}'; harness_failed=1; }
        local re='"ops_per_s":([0-9.]+)' rq='"errors":([0-9]+)' r9='"p99":([0-9.]+)'
        [[ $out =~ $re ]] && { rps=$(awk -v a="$rps" -v b="${BASH_REMATCH[1]}" 'BEGIN { print a + b }'); per="$per${per:+,}${BASH_REMATCH[1]}"; }
        [[ $out =~ $rq ]] && errs=$((errs + BASH_REMATCH[1]))
        [[ $out =~ $r9 ]] && p99=$(awk -v a="$p99" -v b="${BASH_REMATCH[1]}" 'BEGIN { print ((b > a) ? b : a) }')
        t=$(tail -n 1 "$work/logs/nodes-wrk$i.time")
        wrk_cpu=$(awk -v a="$wrk_cpu" -v u="${t% *}" -v s="${t#* }" 'BEGIN { print a + u + s }')
    done
    local cpu="" waits
    for p in "${procs[@]}"; do
        cpu="$cpu${cpu:+,}\"$p\":$(awk -v t=$((c1[$p] - c0[$p])) -v h="$clk_tck" 'BEGIN { printf "%.3f", t / h }')"
    done
    waits=$(sort "$work/logs/nodes-waits.txt" | uniq -c |
        awk '{ printf "%s\"%s\":%d", (NR > 1 ? "," : ""), $2, $1 }')
    out=$(awk -v b0="${m0% *}" -v t0="${m0#* }" -v b1="${m1% *}" -v t1="${m1#* }" -v h="$clk_tck" \
        -v n="$n" -v rps="$rps" -v per="$per" -v errs="$errs" -v p99="$p99" -v cpu="$cpu" \
        -v wrk="$wrk_cpu" -v waits="$waits" -v samples="$samples" -v seconds="$duration" 'BEGIN {
        printf "{\"scenario\":\"nodes\",\"nodes\":%d,\"ops_per_s\":%.1f,\"per_node\":[%s],", n, rps, per
        printf "\"errors\":%d,\"req_errors\":0,\"op_ms\":{\"p99\":%s},", errs, p99
        printf "\"seconds\":%s,", seconds
        printf "\"cpu_s\":{%s,\"wrk\":%.3f},", cpu, wrk
        printf "\"machine_busy_s\":%.3f,\"machine_s\":%.3f,", (b1 - b0) / h, (t1 - t0) / h
        printf "\"pg_samples\":%d,\"pg_waits\":{%s}}\n", samples, waits
    }')
    count_errors meridian "$out"
    record meridian "nodes-$n" "$rep" $((c1[meridian] - c0[meridian] + c1[meridian2] - c0[meridian2])) \
        0 "$out"
    printf '  [%4ds] %-16s %-9s rep %s: req/s %s (%s) busy %s of %s CPU s\n' $SECONDS "nodes-$n" \
        meridian "$rep" "$rps" "$per" "$(awk -v b="${m1% *}" -v a="${m0% *}" -v h="$clk_tck" 'BEGIN { printf "%.1f", (b - a) / h }')" \
        "$(awk -v b="${m1#* }" -v a="${m0#* }" -v h="$clk_tck" 'BEGIN { printf "%.1f", (b - a) / h }')"
}

want() { [ -z "$only" ] || [[ "$only" == *",$1,"* ]]; }

# Servers in turn, the first one rotating with the repetition so none always goes first.
order() { # order REP SERVER...
    local rep=$1 i n
    shift
    local s=("$@")
    n=${#s[@]}
    for ((i = 0; i < n; i++)); do
        echo "${s[$(((i + rep - 1) % n))]}"
    done
}

# ------------------------------------------------------------------ start

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load_start%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    echo "   warning: load average $load_start before the run: other work will skew the figures"
fi
echo "== starting servers (work dir $work)"
if [ "$no_peer" = 0 ] && ! start_peer; then
    echo "run.sh: docker-registry did not become ready (see $work/logs/peer.log)" >&2
    exit 1
fi
have_meridian=0
if [ "$peer_only" = 0 ]; then
    if [ -x "$meridian_bin" ] && start_meridian; then
        have_meridian=1
    else
        stop_server meridian
        echo "   Meridian ($meridian_bin) does not serve /v2/ yet: measuring the peer and limits"
        if [ "$require_meridian" = 1 ]; then
            echo "run.sh: --require-meridian given" >&2
            exit 1
        fi
    fi
fi
if ! start_nginx; then
    echo "run.sh: nginx did not become ready (see $work/logs/nginx-error.log)" >&2
    exit 1
fi
regs=(peer)
[ "$have_meridian" = 1 ] && regs=(meridian peer)
[ "$no_peer" = 1 ] && regs=(meridian)
pullers=("${regs[@]}" nginx)
# Tier s3: the large rows also measure RGW alone, in turn with the registries.
large_pushers=("${regs[@]}")
large_pullers=("${pullers[@]}")
if [ "$tier" = s3 ]; then
    rgw_file="$work/rgw-layer"
    head -c "$large_layer" /dev/urandom >"$rgw_file" || exit 1
    large_pushers+=(rgw)
    large_pullers+=(rgw)
    if [ "$have_meridian" = 1 ] && want nodes && ! start_meridian2; then
        echo "run.sh: the second Meridian node did not start (see $work/logs/meridian2.log)" >&2
        exit 1
    fi
fi

sleep 1
for s in "${regs[@]}"; do
    # Besides VmRSS: PSS (shared pages divided among the processes mapping them) and the
    # private memory (USS) that the process alone costs.
    record "$s" idle 1 0 "$(mem_kib "$s" VmHWM)" \
        "{\"rss_kib\":$(mem_kib "$s" VmRSS),\"hwm_kib\":$(mem_kib "$s" VmHWM),\"pss_kib\":$(rollup_kib "$s" Pss),\"uss_kib\":$(rollup_kib "$s" Private_Clean Private_Dirty),\"anon_kib\":$(mem_kib "$s" RssAnon),\"errors\":0}"
    echo "   $s idle: VmRSS $(mem_kib "$s" VmRSS) KiB, private $(rollup_kib "$s" Private_Clean Private_Dirty) KiB"
done

# ------------------------------------------------------------------ limits

# limit ROW ARGS...: a machine limit measured by the load generator itself (no server).
limit() {
    local row=$1 out
    shift
    sync
    out=$(timeout 600 "$loadgen" "$@" 2>>"$work/logs/loadgen.err")
    if [ -z "$out" ]; then
        echo "run.sh: limit $row produced no result" >&2
        harness_failed=1
        return
    fi
    record limit "$row" "$rep" 0 0 "$out"
    printf '  [%4ds] %-16s %-9s rep %s: %s\n' $SECONDS "$row" limit "$rep" "$(summary "$out")"
}

dc=(--digest-cache "$work/digests.txt")
small=(--layers 3 --layer-size "$small_layer" --images "$small_images")
large=(--layers 1 --layer-size "$large_layer" --images "$large_images")
big=(--layers 1 --layer-size "$big_size" --images 1)

echo "== push"
for ((rep = 1; rep <= reps; rep++)); do
    limit limit-sha256 limit-sha256 --layer-size "$big_size"
    if want push-small; then
        for s in $(order $rep "${regs[@]}"); do
            measure "$s" push-small $rep loadgen push --set small-r$rep "${small[@]}" \
                --clients $small_clients
        done
        # 3 layers + config + manifest per image, each written and fsynced.
        limit push-small limit-write --out "$work/limit" --images $((small_images * 5)) \
            --layer-size "$small_layer" --clients $small_clients --files-per-op 5
    fi
    if want push-large; then
        for s in $(order $rep "${large_pushers[@]}"); do
            if [ "$s" = rgw ]; then
                measure rgw push-large $rep rgw push large-r$rep
            else
                measure "$s" push-large $rep loadgen push --set large-r$rep "${large[@]}" \
                    --clients $large_clients "${dc[@]}"
            fi
        done
        limit push-large limit-write --out "$work/limit" --images $large_images \
            --layer-size "$large_layer" --clients $large_clients
        # For reference: the same past the page cache, as Meridian writes large uploads.
        limit push-large-direct limit-write --direct --out "$work/limit" \
            --images $large_images --layer-size "$large_layer" --clients $large_clients
    fi
    if want push-1g-mono || want push-1g-chunked; then
        for s in $(order $rep "${regs[@]}"); do
            want push-1g-mono && measure "$s" push-1g-mono $rep loadgen push \
                --set mono-r$rep "${big[@]}" --upload mono "${dc[@]}"
            want push-1g-chunked && measure "$s" push-1g-chunked $rep loadgen push \
                --set chunk-r$rep "${big[@]}" --upload chunked --chunk-size "$chunk" "${dc[@]}"
        done
        limit push-1g-mono limit-write --out "$work/limit" --images 1 --layer-size "$big_size" \
            --clients 1
        limit push-1g-direct limit-write --direct --out "$work/limit" --images 1 \
            --layer-size "$big_size" --clients 1
    fi
done

# The pull sets: what push-small/push-large stored in rep 1, or pushed now if those were skipped.
# The large set (2 GiB per server) only when a row pulls it.
large_sets=(large)
want pull-large || large_sets=()
echo "== pull sets"
for s in "${regs[@]}"; do
    want push-small || timeout 600 "$loadgen" push --url "${url[$s]}" "${lg_tls[@]}" --set small-r1 \
        "${small[@]}" --clients $small_clients >/dev/null 2>>"$work/logs/loadgen.err"
    want push-large || [ ${#large_sets[@]} = 0 ] || timeout 600 "$loadgen" push \
        --url "${url[$s]}" "${lg_tls[@]}" --set large-r1 "${large[@]}" --clients $large_clients \
        "${dc[@]}" >/dev/null 2>>"$work/logs/loadgen.err"
done
if [ "$tier" = s3 ] && [ ${#large_sets[@]} != 0 ]; then
    want push-large || rgw_io push large-r1 >/dev/null
    # Warm like the others: two unmeasured reads of each object.
    rgw_io pull large-r1 >/dev/null
    rgw_io pull large-r1 >/dev/null
fi
"$loadgen" export --out "$work/static" --set small-r1 "${small[@]}" >/dev/null || harness_failed=1
[ ${#large_sets[@]} = 0 ] || "$loadgen" export --out "$work/static" --set large-r1 "${large[@]}" \
    "${dc[@]}" >/dev/null || harness_failed=1
# Two unmeasured pulls of each set from each server: page cache and server caches warm for
# all. Two, because Meridian writes large uploads past the page cache (O_DIRECT) while the
# peer's and nginx's files entered it when written: after one read Meridian's pages sit on the
# kernel's inactive list and are the first evicted under memory pressure, after two they are
# as active as the others' (docs/performance.md, "How a large upload is written").
for s in "${pullers[@]}"; do
    for set in small "${large_sets[@]}" small "${large_sets[@]}"; do
        if [ $set = small ]; then args=("${small[@]}" --clients $small_clients); else
            args=("${large[@]}" --clients $large_clients); fi
        if ! "$loadgen" pull --url "${url[$s]}" "${lg_tls[@]}" --set $set-r1 "${args[@]}" >/dev/null \
            2>>"$work/logs/loadgen.err"; then
            echo "   warm-up pull of $set-r1 from $s failed (see $work/logs/loadgen.err)"
            [ "$s" = meridian ] || harness_failed=1
        fi
    done
done

echo "== pull and GET"
timed=(--duration "$duration" --warmup "$warmup")
hot_path="/v2/bench/small-r1-0/manifests/i0"
for ((rep = 1; rep <= reps; rep++)); do
    for s in $(order $rep "${large_pullers[@]}"); do
        if [ "$s" = rgw ]; then
            want pull-large && measure rgw pull-large $rep rgw pull large-r1
            continue
        fi
        want pull-small && measure "$s" pull-small $rep loadgen pull --set small-r1 \
            "${small[@]}" --clients $small_clients
        want pull-large && measure "$s" pull-large $rep loadgen pull --set large-r1 \
            "${large[@]}" --clients $large_clients
    done
done
for ((rep = 1; rep <= reps; rep++)); do
    for s in $(order $rep "${pullers[@]}"); do
        want manifest && measure "$s" manifest $rep loadgen manifest --pull-set small-r1 \
            --pull-images $small_images --clients $manifest_conns --threads 2 "${timed[@]}"
        want manifest-wrk && measure "$s" manifest-wrk $rep wrk -t1 -c$manifest_conns \
            -d"${duration}s" --latency -H "$accept" "${url[$s]}$hot_path"
    done
done
# Tier s3: one node of the region against two (issue 11: two nodes >= 1.7x one node).
if [ "$tier" = s3 ] && [ "$have_meridian" = 1 ] && want nodes; then
    for ((rep = 1; rep <= ${nodes_reps:-$reps}; rep++)); do
        for n in $(order $rep 1 2); do
            nodes_run "$n" "$rep"
        done
    done
fi
# A new connection (and with --tls a full handshake) per request: what clients that do not
# keep their connections (or a load balancer's health checks) cost.
for ((rep = 1; rep <= reps; rep++)); do
    for s in $(order $rep "${pullers[@]}"); do
        want conn-new && measure "$s" conn-new $rep wrk -t2 -c$manifest_conns \
            -d"${duration}s" --latency -H "Connection: close" "${url[$s]}/v2/"
    done
done
if want mixed; then
    for ((rep = 1; rep <= reps; rep++)); do
        for s in $(order $rep "${regs[@]}"); do
            measure "$s" mixed $rep loadgen mixed --set mixed-r$rep --pull-set small-r1 \
                --pull-images $small_images --layers 3 --layer-size "$small_layer" \
                --clients $small_clients "${timed[@]}"
        done
    done
fi
# Meridian against itself at low and high connection counts; nginx is left out to keep the run
# under 15 minutes (its p99 at this offered load is a few ms either way).
if want hot; then
    for ((rep = 1; rep <= reps; rep++)); do
        for s in $(order $rep "${regs[@]}"); do
            measure "$s" hot-low $rep loadgen hot --pull-set small-r1 \
                --pull-images $small_images --clients $hot_conns_low --rate "$hot_rate" \
                "${timed[@]}"
            measure "$s" hot-high $rep loadgen hot --pull-set small-r1 \
                --pull-images $small_images --clients $hot_conns_high --rate "$hot_rate" \
                "${timed[@]}"
        done
    done
fi

# ------------------------------------------------------------------ report

for s in "${regs[@]}"; do
    record "$s" final 1 0 "$(mem_kib "$s" VmHWM)" \
        "{\"rss_kib\":$(mem_kib "$s" VmRSS),\"errors\":0}"
done
meta="$work/meta.json"
python3 - "$meta" <<EOF
import json, platform, subprocess, sys, time, os
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except Exception:
        return ""
model = sh("awk -F': ' '/model name/ { print \$2; exit }' /proc/cpuinfo")
mem = sh("awk '/MemTotal/ { printf \"%.1f GiB\", \$2 / 1048576 }' /proc/meminfo")
json.dump({
    "date": time.strftime("%Y-%m-%d %H:%M %Z"),
    "machine": "%s, %s cores, %s RAM, kernel %s" % (model, os.cpu_count(), mem, platform.release()),
    "disk": " ".join(sh("df -h --output=source,fstype $work | tail -1").split()),
    "load": "$load_start at the start, %s at the end"
            % " ".join(open("/proc/loadavg").read().split()[:3]),
    "quick": $quick, "reps": $reps, "tier": "$tier", "hot_rate": "$hot_rate", "tls": "$tls_label",
    "duration": "$duration", "warmup": "$warmup",
    "sizes": {"small_images": $small_images, "small_layers": 3, "small_layer": "$small_layer",
              "small_clients": $small_clients, "large_images": $large_images,
              "large_layer": "$large_layer", "large_clients": $large_clients,
              "big_size": "$big_size", "chunk": "$chunk", "manifest_conns": $manifest_conns,
              "hot_conns": [$hot_conns_low, $hot_conns_high]},
    "meridian": "$have_meridian" == "1",
    "meridian_rev": sh("git -C $repo rev-parse --short HEAD 2>/dev/null"),
    "peer": sh("docker-registry --version"),
    "nginx": sh("nginx -v 2>&1"),
    "curl": sh("curl --version | head -1 | cut -d' ' -f1-3"),
}, open(sys.argv[1], "w"))
EOF
python3 "$here/report.py" "$results" "$meta" | tee "$work/report.md"
echo
echo "results: $results  report: $work/report.md"

if [ "$harness_failed" = 1 ]; then
    echo "run.sh: the harness failed (see above and $work/logs/)" >&2
    exit 1
fi
if [ "$peer_errors" != 0 ]; then
    echo "run.sh: $peer_errors failed requests against the peer or nginx" >&2
    exit 1
fi
if [ "$strict" = 1 ] && [ "$meridian_errors" != 0 ]; then
    echo "run.sh: $meridian_errors failed requests against Meridian" >&2
    exit 1
fi
exit 0
