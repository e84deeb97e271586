#!/usr/bin/env python3
"""bench/scale_report.py RESULTS.jsonl: the markdown tables of bench/scale.sh, one row per
size and server, with the push rate relative to the smallest size and to the peer."""
import json
import sys

rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    rows.setdefault((r["server"], r["kind"], r["size"]), {}).update(r["result"])


def get(server, kind, size, key, fmt="%.1f"):
    v = rows.get((server, kind, size), {}).get(key)
    return fmt % v if isinstance(v, (int, float)) else "-"


sizes = sorted({k[2] for k in rows if k[1] == "push"})
print("| tags | server | pushes/s | vs first size | vs peer | server CPU ms/push | load |"
      " GET p50 ms | GET p99 ms |"
      " tag page ms (first/middle) | full list s | catalog ms | RSS MiB | bytes/tag |"
      " restart s |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for server in ("meridian", "peer"):
    base = rows.get((server, "push", sizes[0] if sizes else 0), {}).get("pushes_per_s")
    for size in sizes:
        push = rows.get((server, "push", size), {}).get("pushes_per_s")
        if push is None:
            continue
        peer = rows.get(("peer", "push", size), {}).get("pushes_per_s")
        rel = "%.0f %%" % (100 * push / base) if base else "-"
        vs = "%.1fx" % (push / peer) if peer and server == "meridian" else "-"
        mem = rows.get((server, "memory", size), {})
        print("| %d | %s | %.0f | %s | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s | %s | %s |" % (
            size, server, push, rel, vs,
            get(server, "push", size, "server_cpu_ms_per_push", "%.2f"),
            rows.get((server, "push", size), {}).get("load", "-"),
            get(server, "get", size, "p50_ms", "%.2f"), get(server, "get", size, "p99_ms", "%.2f"),
            get(server, "list", size, "first_page_ms", "%.1f"),
            get(server, "list", size, "middle_page_ms", "%.1f"),
            get(server, "list", size, "full_list_s", "%.2f"),
            get(server, "catalog", size, "catalog_page_ms", "%.1f"),
            "%.0f" % (mem["rss_kib"] / 1024) if "rss_kib" in mem else "-",
            "%d" % mem["bytes_per_tag"] if "bytes_per_tag" in mem else "-",
            get(server, "restart", size, "restart_to_ready_s", "%.2f")))
multi = sorted({k[2] for k in rows if k[1] == "multi-push"})
if multi:
    print()
    print("| tags in many repositories | server | pushes/s | GET p50 ms | GET p99 ms |"
          " catalog ms | RSS MiB | bytes/tag | restart s |")
    print("|---|---|---|---|---|---|---|---|---|")
    # every server with such a run (renamed runs too, e.g. "meridian-10k-repos")
    multi_servers = sorted({k[0] for k in rows if k[1] == "multi-push"})
    for size in multi:
        for server in multi_servers:
            if (server, "multi-push", size) not in rows:
                continue
            mem = rows.get((server, "multi-memory", size), {})
            print("| %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                size, server, get(server, "multi-push", size, "pushes_per_s", "%.0f"),
                get(server, "multi-get", size, "p50_ms", "%.2f"),
                get(server, "multi-get", size, "p99_ms", "%.2f"),
                get(server, "multi-catalog", size, "catalog_page_ms", "%.1f"),
                "%.0f" % (mem["rss_kib"] / 1024) if "rss_kib" in mem else "-",
                "%d" % mem["bytes_per_tag"] if "bytes_per_tag" in mem else "-",
                get(server, "multi-restart", size, "restart_to_ready_s", "%.2f")))
for (server, kind, size), r in sorted(rows.items()):
    if kind == "replication":
        print()
        print("Replication into a fresh region at %d tags: %s tags in %.1f s, %.0f tags/s" % (
            size, r.get("tags"), r.get("seconds", 0), r.get("tags_per_s", 0)))
