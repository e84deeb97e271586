#!/usr/bin/env bash
# bench/scale_plot.sh RESULTS.jsonl OUTDIR: the cost curves of bench/scale.sh as PNGs (gnuplot):
# scale-push.png (pushes/s against tags, both servers), scale-push-cpu.png (server CPU per
# push), scale-reads.png (manifest GET p50 and p99, first tag-list page, against tags). Rows
# of a server named "meridian-before" (a run of an older build, renamed) are drawn dashed.
set -euo pipefail
results=$1
out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$results" "$tmp" <<'PY'
import json, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["server"], r["kind"]), {})[r["size"]] = r["result"]
for server in ("meridian", "peer", "meridian-before"):
    with open("%s/push-%s.dat" % (sys.argv[2], server), "w") as f:
        for size, r in sorted(rows.get((server, "push"), {}).items()):
            f.write("%d %.1f %s\n" % (size, r["pushes_per_s"],
                                       r.get("server_cpu_ms_per_push", "NaN")))
    with open("%s/reads-%s.dat" % (sys.argv[2], server), "w") as f:
        for size, r in sorted(rows.get((server, "get"), {}).items()):
            page = rows.get((server, "list"), {}).get(size, {}).get("first_page_ms", 0)
            f.write("%d %.3f %.3f %.3f\n" % (size, r["p50_ms"], r["p99_ms"], page))
PY
gnuplot <<GP
set terminal pngcairo size 800,480 noenhanced
set logscale x
set xlabel "tags in the repository"
set grid
set key outside right
set output "$out/scale-push.png"
set ylabel "pushes/s (8 clients)"
set yrange [0:*]
plot "$tmp/push-meridian.dat" using 1:2 with linespoints lw 2 title "Meridian", \
     "$tmp/push-peer.dat" using 1:2 with linespoints lw 2 title "Distribution 2.8", \
     "$tmp/push-meridian-before.dat" using 1:2 with linespoints dt 2 title "Meridian before"
set output "$out/scale-push-cpu.png"
set ylabel "server CPU ms per push"
plot "$tmp/push-meridian.dat" using 1:3 with linespoints lw 2 title "Meridian", \
     "$tmp/push-peer.dat" using 1:3 with linespoints lw 2 title "Distribution 2.8", \
     "$tmp/push-meridian-before.dat" using 1:3 with linespoints dt 2 title "Meridian before"
set output "$out/scale-reads.png"
set ylabel "milliseconds"
plot "$tmp/reads-meridian.dat" using 1:2 with linespoints lw 2 title "Meridian GET p50", \
     "$tmp/reads-meridian.dat" using 1:3 with linespoints lw 2 title "Meridian GET p99", \
     "$tmp/reads-meridian.dat" using 1:4 with linespoints lw 2 title "Meridian tag page (1000)", \
     "$tmp/reads-peer.dat" using 1:2 with linespoints dt 2 title "peer GET p50", \
     "$tmp/reads-peer.dat" using 1:4 with linespoints dt 2 title "peer tag page (1000)"
GP
