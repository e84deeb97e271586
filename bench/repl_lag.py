#!/usr/bin/python3
"""Replication lag between two regions over an emulated wide-area link.

Starts two `meridian serve` regions on 127.0.1.1 and 127.0.1.2, each behind the test
suite's fault-injecting proxy (tests/e2e/faultproxy.py) with added latency, joins them,
then for a small image (3 x 64 KiB layers) and for one 256 MiB layer measures:
  lag   time from the manifest PUT's 201 in region A to `Completed` in region B
        (polled on B's image-version API every 20 ms);
  raw   time the same link needs to move the same bytes: GETs of the same blobs and
        manifest from A through the same proxy, one after another, as B's fetch does.
Prints a table of medians. Usage: bench/repl_lag.py [--latency-ms 50] [--reps 3]
  [--large-mib 256] [--meridian build/meridian]
"""

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from faultproxy import FaultProxy  # noqa: E402

SECRET = "bench-secret"


def free_port(host):
    import socket
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Region:
    def __init__(self, binary, name, n, work):
        self.name = name
        self.host = "127.0.1.%d" % n
        self.port = free_port(self.host)
        self.url = "http://%s:%d" % (self.host, self.port)
        self.proxy = FaultProxy(listen=("127.0.2.%d" % n, 0), upstream=(self.host, self.port),
                                name=name)
        self.proxy.start()
        self.data = os.path.join(work, name)
        self.log = open(os.path.join(work, name + ".log"), "w")
        self.proc = subprocess.Popen(
            [binary, "serve", "--region", name, "--listen", "%s:%d" % (self.host, self.port),
             "--data", self.data, "--advertise", self.proxy.url, "--peer-secret", SECRET,
             "--no-access-log", "--no-auth"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s did not start" % name)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.proxy.close()
        self.log.close()


def push_blob(region, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = requests.post("%s/v2/%s/blobs/uploads/?digest=%s" % (region.url, repo, d), data=data)
    assert r.status_code == 201, r.text
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d,
            "size": len(data)}


def push_image(region, repo, tag, layers):
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "n": os.urandom(8).hex()})
    cfg_desc = push_blob(region, repo, cfg.encode())
    cfg_desc["mediaType"] = "application/vnd.oci.image.config.v1+json"
    descs = [push_blob(region, repo, data) for data in layers]
    body = json.dumps({"schemaVersion": 2,
                       "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": cfg_desc, "layers": descs}).encode()
    r = requests.put("%s/v2/%s/manifests/%s" % (region.url, repo, tag), data=body,
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    return time.monotonic(), [cfg_desc] + descs, r.headers["Docker-Content-Digest"]


def wait_completed(region, repo, tag, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = requests.get("%s/_meridian/v1/image-versions" % region.url,
                         params={"repository": repo, "reference": tag})
        if r.status_code == 200:
            rows = {e["region"]: e["state"] for e in r.json()["replicationStatus"]["summary"]}
            if rows.get(region.name) == "Completed":
                return time.monotonic()
        time.sleep(0.02)
    raise RuntimeError("replication of %s:%s did not complete" % (repo, tag))


def raw_copy(src, repo, descs, digest):
    """The same bytes over the same link, fetched one after another."""
    t0 = time.monotonic()
    auth = ("peer", SECRET)
    base = src.proxy.url
    requests.get("%s/v2/%s/manifests/%s" % (base, repo, digest), auth=auth).raise_for_status()
    for d in descs:
        with requests.get("%s/v2/%s/blobs/%s" % (base, repo, d["digest"]), auth=auth,
                          stream=True) as r:
            r.raise_for_status()
            for _ in r.iter_content(1 << 20):
                pass
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=256)
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="meridian-repl-lag-", dir="/var/tmp")
    a = b = None
    rows = []
    try:
        a = Region(args.meridian, "east", 1, work)
        b = Region(args.meridian, "west", 2, work)
        for region in (a, b):
            region.proxy.latency(args.latency_ms)
        subprocess.run([args.meridian, "replication", "create", "--location", "west",
                        "--endpoint", b.proxy.url, "--registry", a.url], check=True,
                       stdout=subprocess.DEVNULL)
        time.sleep(1.5)  # let the first long polls settle before timing
        cases = [("small image (3 x 64 KiB layers)", lambda: [os.urandom(64 << 10)
                                                                 for _ in range(3)]),
                 ("one %d MiB layer" % args.large_mib,
                  lambda: [os.urandom(args.large_mib << 20)])]
        for case, (label, make) in enumerate(cases):
            lags, raws = [], []
            for rep in range(args.reps):
                repo = "bench/lag-%d-%d" % (case, rep)
                layers = make()
                t_pushed, descs, digest = push_image(a, repo, "v%d" % rep, layers)
                lags.append(wait_completed(b, repo, "v%d" % rep) - t_pushed)
                raws.append(raw_copy(a, repo, descs, digest))
                del layers
            rows.append((label, statistics.median(lags), statistics.median(raws)))
        print("\nreplication over a link with %d ms added latency each way (medians of %d)\n"
              % (args.latency_ms, args.reps))
        print("| content | replication lag (push 201 -> Completed) | raw link, same bytes | ratio |")
        print("|---|---:|---:|---:|")
        for label, lag, raw in rows:
            print("| %s | %.3f s | %.3f s | %.2f |" % (label, lag, raw, lag / raw))
    finally:
        for region in (b, a):
            if region:
                region.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
