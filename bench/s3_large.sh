#!/usr/bin/env bash
# Large blob through Meridian on S3 beside S3 alone, same bytes, same run:
#   RGW PUT / GET   plain curl (SigV4) of the file to and from the bucket
#   Meridian push   POST + one PUT of the blob (monolithic upload) to a meridian whose
#                   --blobstore is s3://, then GET of the blob through it (streamed)
# Needs S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY (e.g. eval "$(ceph-rgw-up.sh DIR PORT)").
# usage: bench/s3_large.sh [MIB] [RUNS]        (default 256 MiB, 3 runs; prints MB/s)
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-256}
RUNS=${2:-3}
: "${S3_ENDPOINT:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
REGION=${S3_REGION:-us-east-1}
TMP=$(mktemp -d)
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$TMP"' EXIT
head -c $((MIB << 20)) /dev/urandom > "$TMP/blob"
DIGEST=sha256:$(sha256sum "$TMP/blob" | cut -d' ' -f1)
SIG=(--aws-sigv4 "aws:amz:$REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY"
     -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
curl -s -o /dev/null -X PUT "${SIG[@]}" "$S3_ENDPOINT/bench-plain" || true
AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
    build/meridian serve --listen 127.0.0.1:0 --data "$TMP/data" --no-access-log \
    --blobstore s3://bench-meridian/run --s3-endpoint "$S3_ENDPOINT" --s3-region "$REGION" \
    > "${BENCH_LOG:-$TMP/log}" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q "listening on" "${BENCH_LOG:-$TMP/log}" && break; sleep 0.1; done
URL=http://$(grep -o "listening on http://[0-9.:]*" "${BENCH_LOG:-$TMP/log}" | cut -d/ -f3)
mbps() { awk -v b=$((MIB << 20)) -v t="$1" 'BEGIN { printf "%.0f", b / t / 1e6 }'; }
for run in $(seq "$RUNS"); do
    t=$(curl -s -o /dev/null -w '%{time_total}' -X PUT "${SIG[@]}" -T "$TMP/blob" \
        "$S3_ENDPOINT/bench-plain/blob-$run")
    g=$(curl -s -o "$TMP/back" -w '%{time_total}' "${SIG[@]}" "$S3_ENDPOINT/bench-plain/blob-$run")
    cmp -s "$TMP/blob" "$TMP/back"
    loc=$(curl -s -D - -o /dev/null -X POST "$URL/v2/bench/r$run/blobs/uploads/" |
          tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
    p=$(curl -s -o /dev/null -w '%{time_total} %{http_code}' -X PUT -T "$TMP/blob" \
        -H 'Content-Type: application/octet-stream' "$URL$loc?digest=$DIGEST")
    [ "${p#* }" = 201 ] || { echo "push answered ${p#* }" >&2; exit 1; }
    m=$(curl -s -o "$TMP/back" -w '%{time_total}' "$URL/v2/bench/r$run/blobs/$DIGEST")
    cmp -s "$TMP/blob" "$TMP/back"
    # Free the space again (a memstore RGW holds a few GiB).
    curl -s -o /dev/null -X DELETE "${SIG[@]}" "$S3_ENDPOINT/bench-plain/blob-$run"
    curl -s -o /dev/null -X DELETE "$URL/v2/bench/r$run/blobs/$DIGEST"
    echo "run $run: ${MIB} MiB  RGW PUT $(mbps "$t") MB/s  GET $(mbps "$g") MB/s  |  Meridian push $(mbps "${p% *}") MB/s  pull $(mbps "$m") MB/s"
done
