#!/usr/bin/env bash
# The Ceph daemons' CPU per GiB of each S3 operation a push through Meridian makes, against
# one plain PUT of the same bytes (docs/performance.md, "Where Ceph's extra goes"):
#   put     PUT of a 256 MiB object               (RGW alone, the bench's base)
#   mpu16   the same as a multipart upload of 16 MiB parts   (a request's chunk, before)
#   mpu64   the same in 64 MiB parts
#   copy    server-side copy of an mpu16 object, metadata replaced (commit)
#   delete  DELETE of the copied-from object (the session's removal; its GC comes later)
# CPU is read from /proc/PID/stat of radosgw, the OSD and the monitor (their pid files in
# CEPH_DIR/run, as ceph-rgw-up.sh makes them), before and after N objects of each.
# usage: eval "$(ceph-rgw-up.sh CEPH_DIR PORT)"; bench/s3_cost.sh CEPH_DIR [N] [REPS]
set -euo pipefail
CEPH_DIR=$1; N=${2:-4}; REPS=${3:-3}
: "${S3_ENDPOINT:?}" "${S3_ACCESS_KEY:?}" "${S3_SECRET_KEY:?}"
SIG=(--aws-sigv4 "aws:amz:${S3_REGION:-us-east-1}:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY"
     -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
B=$S3_ENDPOINT/bench-cost
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
head -c 256M /dev/urandom >"$TMP/blob"
mkdir "$TMP/p16" "$TMP/p64"
split -b 16M -d -a 3 "$TMP/blob" "$TMP/p16/p"
split -b 64M -d -a 3 "$TMP/blob" "$TMP/p64/p"
curl -s -o /dev/null -X PUT "${SIG[@]}" "$B" || true
pids=$(for d in client.rgw.a osd.0 mon.a; do cat "$CEPH_DIR/run/$d.pid"; done)
ticks() {
    local t=0 p
    for p in $pids; do set -- $(cut -d' ' -f14,15 "/proc/$p/stat"); t=$((t + $1 + $2)); done
    echo $t
}
mpu() { # KEY PARTDIR
    local id parts="" i=1 et f
    id=$(curl -sf -X POST "${SIG[@]}" "$B/$1?uploads=" |
         sed -n 's:.*<UploadId>\(.*\)</UploadId>.*:\1:p')
    for f in $(ls "$2" | sort); do
        et=$(curl -sf -D - -o /dev/null -X PUT "${SIG[@]}" -T "$2/$f" \
             "$B/$1?partNumber=$i&uploadId=$id" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
        parts="$parts<Part><PartNumber>$i</PartNumber><ETag>$et</ETag></Part>"
        i=$((i + 1))
    done
    curl -sf -o /dev/null -X POST "${SIG[@]}" "$B/$1?uploadId=$id" \
        --data-binary "<CompleteMultipartUpload>$parts</CompleteMultipartUpload>"
}
one() { # OP I
    case $1 in
    put) curl -sf -o /dev/null -X PUT "${SIG[@]}" -T "$TMP/blob" "$B/put-$2" ;;
    mpu16) mpu "m16-$2" "$TMP/p16" ;;
    mpu64) mpu "m64-$2" "$TMP/p64" ;;
    copy) curl -sf -o /dev/null -X PUT "${SIG[@]}" -H "x-amz-copy-source: /bench-cost/m16-$2" \
          -H "x-amz-metadata-directive: REPLACE" -H "x-amz-meta-meridian-verified: x" \
          "$B/copy-$2" ;;
    delete) curl -sf -o /dev/null -X DELETE "${SIG[@]}" "$B/m16-$2" ;;
    esac
}
ops=(put mpu16 mpu64 copy delete)
for rep in $(seq "$REPS"); do
    for op in "${ops[@]}"; do
        t0=$(ticks)
        for i in $(seq "$N"); do one "$op" "$i"; done
        echo "$op $(( $(ticks) - t0 ))" >>"$TMP/cpu"
    done
    for i in $(seq "$N"); do
        for k in put m64 copy; do curl -s -o /dev/null -X DELETE "${SIG[@]}" "$B/$k-$i"; done
    done
    echo "rep $rep done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
done
echo "| operation | Ceph CPU s/GiB, median of $REPS (runs) |"
echo "|---|---|"
gib=$(awk -v n="$N" 'BEGIN { print n / 4 }')
for op in "${ops[@]}"; do
    awk -v op="$op" -v gib="$gib" '$1 == op { printf "%.2f\n", $2 / 100 / gib }' "$TMP/cpu" |
        sort -n | awk -v op="$op" '{ v[NR] = $1 }
            END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
                  s = ""; for (i = 1; i <= NR; i++) s = s (i > 1 ? ", " : "") v[i]
                  printf "| %s | %.2f (%s) |\n", op, m, s }'
done
