#!/usr/bin/env python3
"""bench/report.py: results.jsonl from bench/run.sh -> Markdown tables of medians.

One row per scenario: Meridian, the peer (docker-registry) and the limit (nginx for pulls and
GETs, write+fsync for pushes), the ratios Meridian/peer and Meridian/limit, the target from the
issue and whether it is met. Reads only the files it is given; standard library only.

usage: bench/report.py RESULTS.jsonl [META.json]
"""
import json
import statistics
import sys

GIB = 1024 ** 3


def load(path):
    recs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                recs.append(json.loads(line))
    return recs


def values(recs, server, row, metric):
    out = []
    for r in recs:
        if r["server"] != server or r["row"] != row:
            continue
        v = metric(r)
        if v is not None:
            out.append(v)
    return out


def med(vals):
    return statistics.median(vals) if vals else None


def res(key):
    def get(r):
        d = r["result"]
        if d.get("failed"):
            return None
        return d.get(key)
    return get


def p99(r):
    d = r["result"]
    if d.get("failed"):
        return None
    return d.get("op_ms", {}).get("p99")


def cpu_per_gib(r):
    d = r["result"]
    moved = d.get("bytes_down", 0) + d.get("bytes_up", 0)
    if d.get("failed") or moved == 0:
        return None
    return r["cpu_s"] / (moved / GIB)


def errors(recs, server, row):
    total = 0
    for r in recs:
        if r["server"] == server and r["row"] == row:
            d = r["result"]
            total += int(d.get("errors", 0)) + int(d.get("req_errors", 0))
    return total


def mib(kib):
    return None if kib is None else kib / 1024.0


# Each row: id, label, unit, metric, limit (server, row, metric) or None, targets [(vs, op, x)]
# with vs "peer" or "limit" (ratio Meridian/vs) or "hot" (Meridian's p99 growth with connections).
def pretty(size):
    """ "64K" -> "64 KiB", as run.sh passes sizes to the load generator."""
    size = str(size)
    units = {"K": "KiB", "M": "MiB", "G": "GiB"}
    if size and size[-1] in units:
        return "%s %s" % (size[:-1], units[size[-1]])
    return size + " B"


def rows_s3(z):
    """Tier s3 (issue 11): the same rows, limits and targets of the scale-out tier. The large
    rows' limit is RGW alone (plain PUT/GET of the same bytes in the same run); the small rows
    keep nginx as a reference, without a target."""
    out = []
    targets = {"push-small": [("peer", ">=", 3)], "pull-small": [("peer", ">=", 5)],
               "manifest": [("peer", ">=", 5)], "manifest-wrk": [("peer", ">=", 5)],
               "push-large": [("limit", ">=", 0.90)], "pull-large": [("limit", ">=", 0.90)]}
    for rid, label, unit, metric, limit, _ in rows(z):
        if rid in ("push-large", "pull-large") and unit == "MiB/s":
            limit = ("rgw", rid, res("mib_per_s"))
        elif rid in ("push-large", "pull-large"):
            continue  # CPU per GiB: RGW's own daemons are not comparable with a registry
        elif limit and limit[0] == "limit":
            limit = None  # the fs tier's write+fsync limit says nothing about RGW
        out.append((rid, label, unit, metric, limit, targets.get(rid, [])))
    return out


def large_cpu_table(recs):
    """Tier s3: CPU seconds per GiB moved in the large rows, Meridian's own and the Ceph
    daemons' (radosgw, OSD, monitor), against RGW alone moving the same bytes."""
    rows_out = []
    for row in ("push-large", "pull-large"):
        def per_gib(server, key):
            vals = []
            for r in recs:
                if r["server"] != server or r["row"] != row or r["result"].get("failed"):
                    continue
                d = r["result"]
                moved = d.get("bytes_down", 0) + d.get("bytes_up", 0)
                v = r.get(key)
                if moved and v is not None:
                    vals.append(v / (moved / GIB))
            return med(vals)
        m_own, m_ceph = per_gib("meridian", "cpu_s"), per_gib("meridian", "rgw_cpu_s")
        rgw = per_gib("rgw", "cpu_s")
        if rgw is None or m_own is None:
            continue
        rows_out.append("| %s | %s | %s | %s | %s |" % (
            row, fmt(m_own, "ms"), fmt(m_ceph, "ms"),
            fmt(None if m_ceph is None else m_own + m_ceph, "ms"), fmt(rgw, "ms")))
    if not rows_out:
        return
    print("CPU seconds per GiB moved (large rows; medians): Meridian's own, the Ceph daemons' "
          "while serving Meridian, and the Ceph daemons' for RGW alone (curl's own CPU not "
          "counted, nor the loadgen's).")
    print()
    print("| row | Meridian | Ceph, for Meridian | together | Ceph, RGW alone |")
    print("|---|---:|---:|---:|---:|")
    for line in rows_out:
        print(line)
    print()


def nodes_table(recs):
    """Tier s3: one node of the region against two on manifest GET, and where the CPU went."""
    one = [r for r in recs if r["row"] == "nodes-1" and not r["result"].get("failed")]
    two = [r for r in recs if r["row"] == "nodes-2" and not r["result"].get("failed")]
    if not one or not two:
        return
    print("Manifest GET by tag, 32 connections: one node of the region (one wrk, 2 threads) "
          "against two nodes on the same PostgreSQL (one wrk of 16 connections per node, at "
          "once). CPU in ms per request (all cores; medians over the runs).")
    print()
    print("| nodes | req/s | per node | Meridian ms/req | PostgreSQL ms/req | wrk ms/req "
          "| other processes ms/req | machine busy | PG backends seen active: on CPU, waiting "
          "on a lock, other waits (samples) |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---|")
    for label, rs in (("1", one), ("2", two)):
        rps = med([r["result"]["ops_per_s"] for r in rs])
        ms = {}
        for key in ("node", "pg", "wrk", "other"):
            vals = []
            for r in rs:
                d = r["result"]
                reqs = d["ops_per_s"] * d["seconds"] if d.get("seconds") else None
                c = d["cpu_s"]
                cpu = (c.get("meridian", 0) + c.get("meridian2", 0) if key == "node"
                       else d["machine_busy_s"] - sum(c.values()) if key == "other"
                       else c.get(key, 0))
                if reqs:
                    vals.append(cpu * 1000 / reqs)
            ms[key] = med(vals)
        busy = med([r["result"]["machine_busy_s"] / r["result"]["machine_s"] for r in rs])
        waits = [(k, v) for r in rs for k, v in r["result"].get("pg_waits", {}).items()]
        samples = sum(v for k, v in waits if k == "sample")
        on_cpu = sum(v for k, v in waits if k.startswith("CPU:"))
        locks = sum(v for k, v in waits if k.startswith(("Lock:", "LWLock:")))
        other = sum(v for k, v in waits if k != "sample") - on_cpu - locks
        mid = sorted(rs, key=lambda r: r["result"]["ops_per_s"])[len(rs) // 2]
        per = " + ".join(fmt(v) for v in mid["result"].get("per_node", []))
        print("| %s | %s | %s | %s | %s | %s | %s | %d %% | %d, %d, %d (%d) |" % (
            label, fmt(rps), per, fmt(ms["node"], "ms"), fmt(ms["pg"], "ms"),
            fmt(ms["wrk"], "ms"), fmt(ms["other"], "ms"), round(busy * 100), on_cpu, locks,
            other, samples))
    r1 = med([r["result"]["ops_per_s"] for r in one])
    r2 = med([r["result"]["ops_per_s"] for r in two])
    x = ratio(r2, r1)
    print()
    print("Two nodes / one node: %sx (target >= 1.7x: %s)." % (
        fmt(x, "x"), "n/a" if x is None else "met" if x >= 1.7 else "not met"))
    print()


def rows(z):
    """The table's rows for the sizes in meta z (the issue's sizes unless --quick)."""
    z = dict(z)
    for k in ("small_layer", "large_layer", "big_size", "chunk"):
        z[k] = pretty(z[k])
    small = "%s small images (%s x %s)" % (z["small_images"], z["small_layers"], z["small_layer"])
    large = "%s x %s layers" % (z["large_images"], z["large_layer"])
    return [
        ("push-small", "push %s, %s clients" % (small, z["small_clients"]), "images/s",
         res("ops_per_s"), ("limit", "push-small", res("ops_per_s")), [("peer", ">=", 5)]),
        ("push-large", "push %s, %s clients" % (large, z["large_clients"]), "MiB/s",
         res("mib_per_s"), ("limit", "push-large", res("mib_per_s")),
         [("peer", ">=", 2), ("limit", ">=", 0.70)]),
        ("push-1g-mono", "push %s monolithic (POST, PUT)" % z["big_size"], "MiB/s",
         res("mib_per_s"), ("limit", "push-1g-mono", res("mib_per_s")),
         [("peer", ">=", 2), ("limit", ">=", 0.70)]),
        ("push-1g-chunked", "push %s in %s PATCHes" % (z["big_size"], z["chunk"]), "MiB/s",
         res("mib_per_s"), ("limit", "push-1g-mono", res("mib_per_s")),
         [("peer", ">=", 2), ("limit", ">=", 0.70)]),
        ("pull-small", "pull the %s, %s clients" % (small, z["small_clients"]), "images/s",
         res("ops_per_s"), ("nginx", "pull-small", res("ops_per_s")),
         [("peer", ">=", 8), ("limit", ">=", 0.50)]),
        ("pull-large", "pull the %s, %s clients" % (large, z["large_clients"]), "MiB/s",
         res("mib_per_s"), ("nginx", "pull-large", res("mib_per_s")), [("limit", ">=", 0.95)]),
        ("pull-large", "&nbsp;&nbsp;server CPU per GiB pulled", "CPU s/GiB", cpu_per_gib,
         ("nginx", "pull-large", cpu_per_gib), [("limit", "<=", 1.5)]),
        ("manifest", "manifest GET by tag, %s conns (loadgen)" % z["manifest_conns"], "req/s",
         res("ops_per_s"), ("nginx", "manifest", res("ops_per_s")),
         [("peer", ">=", 15), ("limit", ">=", 0.30)]),
        ("manifest-wrk", "manifest GET by tag, %s conns (wrk)" % z["manifest_conns"], "req/s",
         res("ops_per_s"), ("nginx", "manifest-wrk", res("ops_per_s")),
         [("peer", ">=", 15), ("limit", ">=", 0.30)]),
        ("conn-new", "new connection per request (Connection: close), %s conns (wrk)"
         % z["manifest_conns"], "req/s", res("ops_per_s"), ("nginx", "conn-new", res("ops_per_s")),
         [("peer", ">=", 5), ("limit", ">=", 0.80)]),
        ("mixed", "mixed 1 push : 4 pulls : 15 GETs, %s clients" % z["small_clients"], "ops/s",
         res("ops_per_s"), None, [("peer", ">=", 5)]),
        ("hot-low", "hot manifest+layer pull, %s conns: p99" % z["hot_conns"][0], "ms", p99,
         None, []),
        ("hot-high", "hot manifest+layer pull, %s conns: p99" % z["hot_conns"][1], "ms", p99,
         None, [("hot", "<", 5)]),
    ]


DEFAULT_SIZES = {
    "small_images": 200, "small_layers": 3, "small_layer": "64K", "small_clients": 8,
    "large_images": 8, "large_layer": "256M", "large_clients": 2, "big_size": "1G",
    "chunk": "64M", "manifest_conns": 32, "hot_conns": [32, 1000],
}



def fmt(v, unit=""):
    if v is None:
        return "-"
    if unit == "x" and 0 < abs(v) < 0.1:
        return "%.2g" % v
    if unit in ("ms", "CPU s/GiB", "x") or abs(v) < 10:
        return "%.2f" % v
    if abs(v) < 1000:
        return "%.1f" % v
    return "%.0f" % v


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def check(op, v, x):
    if v is None:
        return None
    return v >= x if op == ">=" else v <= x if op == "<=" else v < x


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    recs = load(sys.argv[1])
    meta = {}
    if len(sys.argv) > 2:
        with open(sys.argv[2]) as f:
            meta = json.load(f)
    has_m = any(r["server"] == "meridian" for r in recs)
    z = dict(DEFAULT_SIZES)
    z.update(meta.get("sizes", {}))
    hot_conns = z["hot_conns"]
    tier = meta.get("tier", "fs")
    ROWS = rows_s3(z) if tier == "s3" else rows(z)

    if meta:
        print("Run: %s; %s; %s. Medians of %s runs%s; timed rows run %s s each after %s s of "
              "warm-up; hot rows offer %s pulls/s in total." % (
                  meta.get("date"), meta.get("machine"), meta.get("disk"), meta.get("reps"),
                  " (--quick: sizes are tiny, speed means nothing)" if meta.get("quick") else "",
                  meta.get("duration"), meta.get("warmup"), meta.get("hot_rate")))
        print("Load average (1, 5, 15 min): %s." % meta.get("load"))
        if meta.get("tls"):
            print("Every server over HTTPS (TLS 1.2/1.3) with one self-signed %s certificate; "
                  "no kernel TLS on this machine." % meta["tls"])
        print("Peer: %s; %s; %s; Meridian %s." % (
            meta.get("peer"), meta.get("nginx"), meta.get("curl"),
            meta.get("meridian_rev") if meta.get("meridian") else "not serving /v2/ yet"))
        print()

    print("| scenario | unit | Meridian | peer | limit | M/peer | M/limit | target | met |")
    print("|---|---|---:|---:|---:|---:|---:|---|---|")
    met_count = [0, 0]
    for rid, label, unit, metric, limit, targets in ROWS:
        m = med(values(recs, "meridian", rid, metric))
        p = med(values(recs, "peer", rid, metric))
        lim = med(values(recs, limit[0], limit[1], limit[2])) if limit else None
        if m is None and p is None and lim is None:
            continue
        rp, rl = ratio(m, p), ratio(m, lim)
        texts, oks = [], []
        for vs, op, x in targets:
            if vs == "peer":
                texts.append("%s %sx peer" % (op, fmt(x, "x")))
                oks.append(check(op, rp, x))
            elif vs == "limit":
                name = {"nginx": "nginx", "rgw": "RGW alone"}.get(limit[0] if limit else "",
                                                                   "limit")
                texts.append("%s %d%% %s" % (op, round(x * 100), name) if x < 1.0 or op == ">="
                             else "%s %sx %s" % (op, fmt(x, "x"), name))
                oks.append(check(op, rl, x))
            elif vs == "hot":
                low = med(values(recs, "meridian", "hot-low", p99))
                growth = ratio(m, low)
                errs = errors(recs, "meridian", rid)
                texts.append("0 errors, p99 < 5x p99 at %d conns (is %sx, %d errors)"
                             % (hot_conns[0], fmt(growth, "x"), errs))
                ok = check("<", growth, x)
                oks.append(None if ok is None else ok and errs == 0)
        met = "-" if not oks else ("n/a" if any(o is None for o in oks)
                                    else ("yes" if all(oks) else "no"))
        if met in ("yes", "no"):
            met_count[0 if met == "yes" else 1] += 1
        print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, unit, fmt(m, unit), fmt(p, unit), fmt(lim, unit), fmt(rp, "x"), fmt(rl, "x"),
            "; ".join(texts) or "-", met))

    # Memory: idle after start; peak = highest VmHWM over the scenarios (reset before each).
    idle_m = med(values(recs, "meridian", "idle", res("rss_kib")))
    idle_p = med(values(recs, "peer", "idle", res("rss_kib")))
    ok = None if idle_m is None else mib(idle_m) <= 8
    print("| memory idle (VmRSS) | MiB | %s | %s | - | %s | - | <= 8 MiB | %s |" % (
        fmt(mib(idle_m)), fmt(mib(idle_p)), fmt(ratio(idle_m, idle_p), "x"),
        "n/a" if ok is None else "yes" if ok else "no"))
    if ok is not None:
        met_count[0 if ok else 1] += 1
    for key, what in (("anon_kib", "anonymous (RssAnon)"), ("uss_kib", "private (USS)"),
                      ("pss_kib", "proportional (PSS)")):
        im = med(values(recs, "meridian", "idle", res(key)))
        ip = med(values(recs, "peer", "idle", res(key)))
        if im is not None or ip is not None:
            print("| &nbsp;&nbsp;idle, %s | MiB | %s | %s | - | %s | - | - | - |" % (
                what, fmt(mib(im)), fmt(mib(ip)), fmt(ratio(im, ip), "x")))

    # Peak: the highest VmHWM of each scenario (reset before each run), compared row by
    # row ("peak <= half the peer's in every scenario"); the table shows the worst row.
    def peak(server, row):
        ks = [r["peak_kib"] for r in recs if r["server"] == server and r["row"] == row
              and r.get("peak_kib")]
        return max(ks) if ks else None

    peak_rows = sorted({r["row"] for r in recs} - {"idle", "final"})
    worst = None
    for row in peak_rows:
        rp = ratio(peak("meridian", row), peak("peer", row))
        if rp is not None and (worst is None or rp > worst[1]):
            worst = (row, rp)
    ok = None if worst is None else worst[1] <= 0.5
    print("| memory peak (VmHWM), worst scenario%s | MiB | %s | %s | - | %s | - | "
          "<= 0.50x peer in every scenario | %s |" % (
              "" if worst is None else ": " + worst[0],
              fmt(mib(peak("meridian", worst[0]))) if worst else "-",
              fmt(mib(peak("peer", worst[0]))) if worst else "-",
              fmt(worst[1], "x") if worst else "-",
              "n/a" if ok is None else "yes" if ok else "no"))
    if ok is not None:
        met_count[0 if ok else 1] += 1
    sha = med(values(recs, "limit", "limit-sha256", res("mib_per_s")))
    print("| limit: OpenSSL SHA-256, one thread | MiB/s | - | - | %s | - | - | - | - |"
          % fmt(sha))
    # Reference only (the targets use the buffered limit above): writing past the page
    # cache with O_DIRECT, then fsync, as Meridian writes large uploads.
    for row, label in (("push-large-direct", "8 x 256 MiB, 2 threads"),
                       ("push-1g-direct", "1 GiB, 1 thread")):
        d = med(values(recs, "limit", row, res("mib_per_s")))
        if d is not None:
            print("| limit: write with O_DIRECT + fsync, %s | MiB/s | - | - | %s | - | - | - "
                  "| - |" % (label, fmt(d)))
    print()
    if tier == "s3":
        large_cpu_table(recs)
        nodes_table(recs)
    if has_m:
        print("Targets met: %d of %d." % (met_count[0], met_count[0] + met_count[1]))
    else:
        print("Meridian was not measured: its columns, ratios and targets are empty.")
    print()

    # Detail: every server's median, spread, errors, CPU and peak memory per row.
    print("| row | server | median | min | max | errors | CPU s | peak MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    seen = []
    for r in recs:
        key = (r["row"], r["server"])
        if key not in seen and r["row"] not in ("idle", "final"):
            seen.append(key)
    for row, server in seen:
        spec = next((x for x in ROWS if x[0] == row), None)
        unit = spec[2] if spec else "MiB/s"
        metric = spec[3] if spec else res("mib_per_s")
        if row.startswith("nodes-"):
            metric, unit = res("ops_per_s"), "req/s"
        elif server == "limit" and row == "push-small":
            metric, unit = res("ops_per_s"), "images/s"
        elif server == "limit":
            metric, unit = res("mib_per_s"), "MiB/s"
        vals = values(recs, server, row, metric)
        cpus = [r["cpu_s"] for r in recs if r["server"] == server and r["row"] == row]
        pks = [r["peak_kib"] for r in recs if r["server"] == server and r["row"] == row]
        print("| %s | %s | %s %s | %s | %s | %d | %s | %s |" % (
            row, server, fmt(med(vals), unit), unit, fmt(min(vals) if vals else None, unit),
            fmt(max(vals) if vals else None, unit), errors(recs, server, row),
            fmt(med(cpus), "ms") if server != "limit" else "-",
            fmt(mib(max(pks))) if pks and server != "limit" else "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
