#!/usr/bin/python3
"""GC throughput and its effect on pushes and pulls, side by side.

Starts one `meridian serve` (embedded default, --gc-grace 1s, ticks off), pushes
--garbage small images (config + 2 layers of --blob-kib KiB each) and deletes them, so
that 3 x --garbage blobs are garbage once the grace passes. Then measures, for --seconds
each, with --clients client threads pushing (blob + manifest) and as many pulling (a
manifest and its blobs):
  baseline  push and pull rates with the collector idle;
  during    the same while one `gc run` reclaims every garbage blob (timed: blobs/s).
Prints a table. Usage: bench/gc_throughput.py [--garbage 1000] [--blob-kib 4]
  [--clients 2] [--meridian build/meridian]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from conftest import OCI, random_bytes  # noqa: E402


def start(binary, data):
    log = open(os.path.join(data, "log"), "wb")
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data", data,
                          "--gc-grace", "1s", "--gc-interval", "1h", "--no-access-log"],
                         stdout=log, stderr=log)
    for _ in range(500):
        text = open(os.path.join(data, "log"), "rb").read()
        m = re.search(rb"listening on http://([0-9.]+):(\d+)", text)
        if m:
            url = "http://127.0.0.1:%d" % int(m.group(2))
            for _ in range(200):
                try:
                    if requests.get(url + "/readyz", timeout=1).status_code == 200:
                        return p, url
                except requests.RequestException:
                    pass
                time.sleep(0.02)
        time.sleep(0.02)
    p.kill()
    raise SystemExit("server did not start")


def load(url, stop, counts, kib, clients):
    def pusher(n):
        oci = OCI(url)
        while not stop.is_set():
            oci.push_image("bench/push-%d" % n, tag="t", layers=1, layer_size=kib * 1024)
            counts["push"] += 1

    def puller(n):
        oci = OCI(url)
        img = oci.push_image("bench/pull-%d" % n, tag="t", layers=2, layer_size=kib * 1024)
        while not stop.is_set():
            assert oci.get_manifest(img.repo, "t").status_code == 200
            for d in img.blobs:
                oci.get_blob(img.repo, d)
            counts["pull"] += 1
    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(clients)]
    threads += [threading.Thread(target=puller, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    return threads


def measure(url, kib, clients, seconds=None, during=None):
    counts = {"push": 0, "pull": 0}
    stop = threading.Event()
    threads = load(url, stop, counts, kib, clients)
    time.sleep(0.5)  # warm up
    base = dict(counts)
    t0 = time.monotonic()
    extra = during() if during else time.sleep(seconds)
    elapsed = time.monotonic() - t0
    got = {k: (counts[k] - base[k]) / elapsed for k in counts}
    stop.set()
    for t in threads:
        t.join()
    return got, elapsed, extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--garbage", type=int, default=1000)
    ap.add_argument("--blob-kib", type=int, default=4)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="gc-bench-")
    proc, url = start(a.meridian, data)
    try:
        oci = OCI(url)
        for i in range(a.garbage):
            img = oci.push_image("bench/garbage-%d" % (i % 10), layers=2,
                                 layer_size=a.blob_kib * 1024, by_digest=True)
            assert oci.delete(oci.manifest_path(img.repo, img.digest)).status_code == 202
        time.sleep(1.2)

        def gc_run():
            r = requests.post(url + "/_meridian/v1/gc/run", timeout=3600)
            r.raise_for_status()
            return r.json()
        during, gc_s, out = measure(url, a.blob_kib, a.clients, during=gc_run)
        baseline, _, _ = measure(url, a.blob_kib, a.clients, seconds=max(gc_s, 3.0))
        n = out["blobs_reclaimed"]
        print("garbage: %d blobs of ~%d KiB; %d client threads pushing, %d pulling"
              % (3 * a.garbage, a.blob_kib, a.clients, a.clients))
        print("| | pushes/s | pulls/s | GC blobs/s |")
        print("|---|---:|---:|---:|")
        print("| collector idle | %.1f | %.1f | - |" % (baseline["push"], baseline["pull"]))
        print("| during `gc run` | %.1f | %.1f | %.0f (%d blobs in %.2f s) |"
              % (during["push"], during["pull"], n / gc_s, n, gc_s))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
