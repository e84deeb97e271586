#!/usr/bin/python3
"""Untagged-manifest GC: how long a pass over --manifests untagged manifests takes, and
its effect on pushes and pulls, side by side.

Starts one `meridian serve` (embedded default unless --metastore, --gc-untagged-after
1s, blob grace 1h so that only manifests are collected, ticks off), pushes --manifests
untagged manifests (one shared config and layer, each manifest made unique by an
annotation; 4 threads), waits past the grace, then measures for the same time with
--clients threads pushing (blob + tagged manifest) and as many pulling:
  baseline  the collector idle;
  during    one `gc run` deleting every untagged manifest (timed: manifests/s).
Usage: bench/gc_untagged.py [--manifests 10000] [--clients 2] [--meridian build/meridian]
"""

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from gc_throughput import REPO, measure  # noqa: E402
from conftest import OCI, MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, canonical_json, \
    digest_of, random_bytes  # noqa: E402


def start(binary, data, extra):
    # as gc_throughput.start, with this benchmark's flags
    import re
    import subprocess
    log = open(os.path.join(data, "log"), "wb")
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data", data,
                          "--gc-grace", "1h", "--gc-untagged-after", "1s", "--gc-interval", "1h",
                          "--no-access-log"] + extra, stdout=log, stderr=log)
    for _ in range(1000):
        text = open(os.path.join(data, "log"), "rb").read()
        m = re.search(rb"listening on http://([0-9.]+):(\d+)", text)
        if m:
            url = "http://127.0.0.1:%d" % int(m.group(2))
            for _ in range(500):
                try:
                    if requests.get(url + "/readyz", timeout=1).status_code == 200:
                        return p, url
                except requests.RequestException:
                    pass
                time.sleep(0.02)
        time.sleep(0.02)
    p.kill()
    raise SystemExit("server did not start")


def fill(url, n, threads=4):
    oci = OCI(url)
    config, layer = canonical_json({"architecture": "amd64", "os": "linux"}), random_bytes(4096)
    for repo_i in range(10):
        oci.push_blob("bench/untagged-%d" % repo_i, config)
        oci.push_blob("bench/untagged-%d" % repo_i, layer)

    def worker(k):
        o = OCI(url)
        for i in range(k, n, threads):
            m = {"schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
                 "config": {"mediaType": MT_OCI_CONFIG, "digest": digest_of(config),
                            "size": len(config)},
                 "layers": [{"mediaType": MT_OCI_LAYER, "digest": digest_of(layer),
                             "size": len(layer)}],
                 "annotations": {"n": str(i)}}
            body = canonical_json(m)
            o.push_manifest("bench/untagged-%d" % (i % 10), digest_of(body), body)
    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifests", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    ap.add_argument("--metastore", default=None, help="a --metastore spec (PostgreSQL)")
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="gc-untagged-bench-")
    extra = ["--metastore", a.metastore] if a.metastore else []
    proc, url = start(a.meridian, data, extra)
    try:
        t0 = time.monotonic()
        fill(url, a.manifests)
        fill_s = time.monotonic() - t0
        time.sleep(1.5)

        def gc_run():
            r = requests.post(url + "/_meridian/v1/gc/run", timeout=3600)
            r.raise_for_status()
            return r.json()
        during, gc_s, out = measure(url, 4, a.clients, during=gc_run)
        baseline, _, _ = measure(url, 4, a.clients, seconds=max(gc_s, 3.0))
        n = out["manifests_deleted"]
        print("%d untagged manifests (pushed in %.1f s); %d client threads pushing, %d pulling"
              % (a.manifests, fill_s, a.clients, a.clients))
        print("| | pushes/s | pulls/s | GC manifests/s |")
        print("|---|---:|---:|---:|")
        print("| collector idle | %.1f | %.1f | - |" % (baseline["push"], baseline["pull"]))
        print("| during `gc run` | %.1f | %.1f | %.0f (%d manifests in %.2f s) |"
              % (during["push"], during["pull"], n / gc_s, n, gc_s))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
