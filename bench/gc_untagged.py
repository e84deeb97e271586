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
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gc_bench import OCI, REPO, gc_table, server  # noqa: E402
from conftest import MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST, canonical_json, \
    digest_of, random_bytes  # noqa: E402


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
    extra = ["--metastore", a.metastore] if a.metastore else []
    flags = ["--gc-grace", "1h", "--gc-untagged-after", "1s", "--gc-interval", "1h"] + extra
    with server(a.meridian, flags, "gc-untagged-bench-") as url:
        t0 = time.monotonic()
        fill(url, a.manifests)
        fill_s = time.monotonic() - t0
        time.sleep(1.5)
        print("%d untagged manifests (pushed in %.1f s); %d client threads pushing, %d pulling"
              % (a.manifests, fill_s, a.clients, a.clients))
        gc_table(url, 4, a.clients, "manifests", "manifests_deleted")

if __name__ == "__main__":
    main()
