#!/usr/bin/python3
"""Event-log compaction under a steady load: rows stay bounded.

Starts one `meridian serve` (embedded default, --compact-interval 2s,
--tombstone-retention 1s) and runs --moves operations from --clients threads on one
repository: each moves tag `t<k % --tags>` to a new small manifest (a push of an existing
layer under a new config) and, every --delete-every operations, deletes the manifest the
tag named before (a tombstone and a deleted tag register). Every --report operations it
prints the rows of the event log and the tombstones held (GET /_meridian/v1/compaction);
at the end it runs a pass and prints the final counts. Without compaction the log grows by
about three rows per operation.
Usage: bench/compact_steady.py [--moves 20000] [--tags 100] [--clients 4]
  [--delete-every 4] [--report 5000] [--meridian build/meridian]
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
sys.path.insert(0, HERE)
from conftest import OCI  # noqa: E402
from gc_bench import start  # noqa: E402

MT = "application/vnd.oci.image.manifest.v1+json"


def status(url):
    return requests.get(url + "/_meridian/v1/compaction", timeout=30).json()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=20000)
    ap.add_argument("--tags", type=int, default=100)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--delete-every", type=int, default=4)
    ap.add_argument("--report", type=int, default=5000)
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="compact-bench-")
    os.environ["MERIDIAN_COMPACT_INTERVAL"] = "2s"
    os.environ["MERIDIAN_TOMBSTONE_RETENTION"] = "1s"
    proc, url = start(a.meridian, data, ["--gc-grace", "1s", "--gc-interval", "1h"])
    try:
        oci = OCI(url)
        base = oci.push_image("bench/steady", tag="base", layers=1, layer_size=256)
        doc = json.loads(base.body)
        layer = doc["layers"][0]
        config = doc["config"]
        done = [0]
        lock = threading.Lock()
        t0 = time.monotonic()

        def worker(n):
            c = OCI(url)
            while True:
                with lock:
                    k = done[0]
                    if k >= a.moves:
                        return
                    done[0] += 1
                tag = "t%d" % (k % a.tags)
                body = json.dumps({"schemaVersion": 2, "mediaType": MT, "config": config,
                                   "layers": [layer], "annotations": {"n": str(k)}},
                                  separators=(",", ":")).encode()
                old = c.head("/v2/bench/steady/manifests/%s" % tag,
                              headers={"Accept": MT}).headers.get("Docker-Content-Digest")
                c.push_manifest("bench/steady", tag, body, MT)
                if old and k % a.delete_every == 0:
                    c.delete("/v2/bench/steady/manifests/%s" % old)
                if (k + 1) % a.report == 0:
                    s = status(url)
                    print("%7d operations %6.0f s: log rows %7d, tombstones %6d, dropped %8d"
                          % (k + 1, time.monotonic() - t0, s["log_events"], s["tombstones"],
                             s["events_dropped"]), flush=True)
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(a.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        requests.post(url + "/_meridian/v1/compaction/run", timeout=300)
        s = status(url)
        print("end: %d operations in %.0f s: log rows %d, tombstones %d, events dropped %d, "
              "tombstones removed %d" % (a.moves, time.monotonic() - t0, s["log_events"],
                                         s["tombstones"], s["events_dropped"],
                                         s["tombstones_removed"]))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
