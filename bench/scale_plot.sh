#!/usr/bin/env bash
# bench/scale_plot.sh RESULTS.jsonl OUTDIR: the cost curves of bench/scale.sh as PNGs (gnuplot):
# scale-push.png (pushes/s against tags), scale-push-cpu.png (server CPU per push),
# scale-reads.png (manifest GET p50 and p99, first tag-list page). One curve per "server" in
# the results: rename the server of another run (e.g. "meridian-before") to compare runs.
set -euo pipefail
results=$1
out=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$results" "$tmp" "$out" <<'PY'
import json, sys
results, tmp, out = sys.argv[1:4]
rows, servers = {}, []
for line in open(results):
    r = json.loads(line)
    if r["server"] not in servers:
        servers.append(r["server"])
    rows.setdefault((r["server"], r["kind"]), {})[r["size"]] = r["result"]
push, cpu, reads = [], [], []
for i, s in enumerate(servers):
    pts = sorted(rows.get((s, "push"), {}).items())
    if not pts:
        continue
    dash = "" if i == 0 else " dt %d" % (i + 1)
    with open("%s/push-%d.dat" % (tmp, i), "w") as f:
        for size, r in pts:
            f.write("%d %.1f %s\n" % (size, r["pushes_per_s"],
                                      r.get("server_cpu_ms_per_push", "NaN")))
    with open("%s/reads-%d.dat" % (tmp, i), "w") as f:
        for size, r in sorted(rows.get((s, "get"), {}).items()):
            page = rows.get((s, "list"), {}).get(size, {}).get("first_page_ms", "NaN")
            f.write("%d %.3f %.3f %s\n" % (size, r["p50_ms"], r["p99_ms"], page))
    d = "%s/push-%d.dat" % (tmp, i)
    push.append('"%s" using 1:2 with linespoints lw 2%s title "%s"' % (d, dash, s))
    if any("server_cpu_ms_per_push" in r for _, r in pts):
        cpu.append('"%s" using 1:3 with linespoints lw 2%s title "%s"' % (d, dash, s))
    d = "%s/reads-%d.dat" % (tmp, i)
    reads.append('"%s" using 1:2 with linespoints%s title "%s GET p50"' % (d, dash, s))
    reads.append('"%s" using 1:3 with linespoints%s title "%s GET p99"' % (d, dash, s))
    reads.append('"%s" using 1:4 with linespoints%s title "%s tag page"' % (d, dash, s))
with open("%s/plot.gp" % tmp, "w") as f:
    f.write('set terminal pngcairo size 900,480 noenhanced\nset logscale x\n'
            'set xlabel "tags in the repository"\nset grid\nset key outside right\n'
            'set yrange [0:*]\n')
    f.write('set output "%s/scale-push.png"\nset ylabel "pushes/s (8 clients)"\nplot %s\n'
            % (out, ", ".join(push)))
    if cpu:
        f.write('set output "%s/scale-push-cpu.png"\nset ylabel "server CPU ms per push"\n'
                'plot %s\n' % (out, ", ".join(cpu)))
    f.write('set output "%s/scale-reads.png"\nset ylabel "milliseconds"\nset logscale y\n'
            'set yrange [*:*]\nplot %s\n' % (out, ", ".join(reads)))
PY
gnuplot "$tmp/plot.gp"
