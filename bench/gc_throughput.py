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
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gc_bench import OCI, REPO, gc_table, server  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--garbage", type=int, default=1000)
    ap.add_argument("--blob-kib", type=int, default=4)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    a = ap.parse_args()
    with server(a.meridian, ["--gc-grace", "1s", "--gc-interval", "1h"], "gc-bench-") as url:
        oci = OCI(url)
        for i in range(a.garbage):
            img = oci.push_image("bench/garbage-%d" % (i % 10), layers=2,
                                 layer_size=a.blob_kib * 1024, by_digest=True)
            assert oci.delete(oci.manifest_path(img.repo, img.digest)).status_code == 202
        time.sleep(1.2)
        print("garbage: %d blobs of ~%d KiB; %d client threads pushing, %d pulling"
              % (3 * a.garbage, a.blob_kib, a.clients, a.clients))
        gc_table(url, a.blob_kib, a.clients, "blobs", "blobs_reclaimed")

if __name__ == "__main__":
    main()
