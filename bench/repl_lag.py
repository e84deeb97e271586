#!/usr/bin/python3
"""Replication lag between regions over an emulated wide-area link.

Starts two, then three `meridian serve` regions on 127.0.1.N, each behind the test suite's
fault-injecting proxy (tests/e2e/faultproxy.py) with added latency on every link, joins
them, then for a small image (3 x 64 KiB layers) and for one 256 MiB layer measures:
  lag       time from the manifest PUT's 201 in region A to `Completed` in every other
            region, each as it reports itself (polled on its image-version API every 10 ms);
  at A      time until A itself reports every region `Completed` (the status events' trip
            back included);
  raw       time the same link needs to move the same bytes: GETs of the same manifest
            and blobs from A through the same proxy, one after another;
  raw x N   the same, once per other region, all at once (what A's link carries when
            every other region copies from it).
Prints a table of medians. Usage: bench/repl_lag.py [--latency-ms 50] [--reps 3]
  [--large-mib 256] [--regions 2,3] [--cases small,large] [--meridian build/meridian]
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
        os.makedirs(work, exist_ok=True)
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


def completed_rows(region, repo, tag):
    r = requests.get("%s/_meridian/v1/image-versions" % region.url,
                     params={"repository": repo, "reference": tag})
    if r.status_code != 200:
        return {}
    return {e["region"]: e["state"] for e in r.json()["replicationStatus"]["summary"]}


def wait_completed(origin, others, repo, tag, timeout_s=600):
    """(time every other region reported itself Completed, time origin reported all)."""
    deadline = time.monotonic() + timeout_s
    done = {}
    t_origin = None
    while time.monotonic() < deadline:
        for region in others:
            if region.name not in done and \
                    completed_rows(region, repo, tag).get(region.name) == "Completed":
                done[region.name] = time.monotonic()
        if t_origin is None:
            rows = completed_rows(origin, repo, tag)
            if rows and all(v == "Completed" for v in rows.values()) and \
                    len(rows) == len(others) + 1:
                t_origin = time.monotonic()
        if len(done) == len(others) and t_origin is not None:
            return max(done.values()), t_origin
        time.sleep(0.01)
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


NAMES = ["east", "west", "north"]


def run(args, n_regions, work):
    """Rows (label, lag, lag at origin, raw) for a registry of n_regions."""
    regions = []
    rows = []
    try:
        for i in range(n_regions):
            regions.append(Region(args.meridian, NAMES[i], i + 1, os.path.join(work,
                                                                              str(n_regions))))
        for region in regions:
            region.proxy.latency(args.latency_ms)
        a = regions[0]
        for region in regions[1:]:
            subprocess.run([args.meridian, "replication", "create", "--location", region.name,
                            "--endpoint", region.proxy.url, "--registry", a.url], check=True,
                           stdout=subprocess.DEVNULL)
        time.sleep(3)  # let every region meet every other and the first long polls settle
        cases = [("small", "small image (3 x 64 KiB layers)",
                  lambda: [os.urandom(64 << 10) for _ in range(3)]),
                 ("large", "one %d MiB layer" % args.large_mib,
                  lambda: [os.urandom(args.large_mib << 20)])]
        for case, (name, label, make) in enumerate(cases):
            if name not in args.cases.split(","):
                continue
            lags, at_origin, raws, fanouts = [], [], [], []
            for rep in range(args.reps):
                repo = "bench/lag-%d-%d" % (case, rep)
                layers = make()
                t_pushed, descs, digest = push_image(a, repo, "v%d" % rep, layers)
                t_all, t_origin = wait_completed(a, regions[1:], repo, "v%d" % rep)
                lags.append(t_all - t_pushed)
                at_origin.append(t_origin - t_pushed)
                raws.append(raw_copy(a, repo, descs, digest))
                fanouts.append(raw_copies(a, repo, descs, digest, n_regions - 1))
                del layers
            rows.append((label, statistics.median(lags), statistics.median(at_origin),
                         statistics.median(raws), statistics.median(fanouts)))
    finally:
        for region in reversed(regions):
            region.stop()
    return rows


def raw_copies(src, repo, descs, digest, n):
    """n raw copies at once; the time until the last ends."""
    import threading
    t0 = time.monotonic()
    threads = [threading.Thread(target=raw_copy, args=(src, repo, descs, digest))
               for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--large-mib", type=int, default=256)
    ap.add_argument("--regions", default="2,3", help="registry sizes to run, e.g. 2,3")
    ap.add_argument("--cases", default="small,large", help="small, large or both")
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="meridian-repl-lag-", dir="/var/tmp")
    try:
        results = [(int(n), run(args, int(n), work)) for n in args.regions.split(",")]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\nreplication over links with %d ms added latency each way (medians of %d)\n"
          % (args.latency_ms, args.reps))
    print("| regions | content | push 201 -> `Completed` in every other region | "
          "-> every region `Completed` as the origin reports it | raw link, same bytes | "
          "ratio (lag / raw) | raw, one copy per other region at once |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for n, rows in results:
        for label, lag, at_origin, raw, fanout in rows:
            print("| %d | %s | %.3f s | %.3f s | %.3f s | %.2f | %.3f s |"
                  % (n, label, lag, at_origin, raw, lag / raw, fanout))


if __name__ == "__main__":
    main()
