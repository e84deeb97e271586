"""What the GC benchmarks share (gc_throughput.py, gc_untagged.py; compact_steady.py starts
its server here too): start one `meridian serve`, run client load (pushers and pullers)
while something happens, and print the collector-idle / during-`gc run` table."""

import contextlib
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
from conftest import OCI  # noqa: E402


def start(binary, data, flags=()):
    """A `meridian serve` on a free loopback port with its data in `data` (log in
    data/log), ticks as `flags` say; returns (process, url) once /readyz answers 200."""
    log = open(os.path.join(data, "log"), "wb")
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data", data,
                          "--no-access-log"] + list(flags), stdout=log, stderr=log)
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


@contextlib.contextmanager
def server(binary, flags, prefix):
    """start() on a fresh temporary data directory; yields the url, then stops the server
    and removes the directory."""
    data = tempfile.mkdtemp(prefix=prefix)
    proc, url = start(binary, data, flags)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


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
    """Pushes and pulls per second by `clients` threads each, for `seconds` or while
    during() runs; returns (rates, elapsed seconds, what during() returned)."""
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


def gc_run(url):
    r = requests.post(url + "/_meridian/v1/gc/run", timeout=3600)
    r.raise_for_status()
    return r.json()


def gc_table(url, kib, clients, what, counted):
    """Measures load during one `gc run`, then idle for as long, and prints the table;
    `counted` is the key of the run's answer that counts `what` (e.g. "blobs")."""
    during, gc_s, out = measure(url, kib, clients, during=lambda: gc_run(url))
    baseline, _, _ = measure(url, kib, clients, seconds=max(gc_s, 3.0))
    n = out[counted]
    print("| | pushes/s | pulls/s | GC %s/s |" % what)
    print("|---|---:|---:|---:|")
    print("| collector idle | %.1f | %.1f | - |" % (baseline["push"], baseline["pull"]))
    print("| during `gc run` | %.1f | %.1f | %.0f (%d %s in %.2f s) |"
          % (during["push"], during["pull"], n / gc_s, n, what, gc_s))
