#!/usr/bin/python3
"""What mutual TLS between regions costs replication (docs/governance.md).

Starts two regions on 127.0.1.1-2 (loopback, no added latency: the cost is CPU), joined,
in each of these modes:
  http-secret    plain HTTP, the peer secret
  https-secret   HTTPS (--tls-cert), the peer secret (--peer-auth secret: the peer CA
                 only makes calls trust the peers' server certificates)
  https-mtls     HTTPS, region certificates alone (--peer-ca, --peer-tls-cert/key)
  https-both     HTTPS, region certificates and the peer secret
then measures, with certificates made by `openssl`:
  small   N images (one 1 KiB layer each) pushed to r1 before r2 joins, then the time
          from the join to r2 listing every tag: the backfill (events in batches, then per
          image two blobs and a manifest fetched, each call a new connection, so a new
          TLS handshake with a client certificate under mTLS);
  large   then one image with a LARGE_MIB layer pushed to r1, the time from its manifest
          PUT to r2 listing it.
Prints, per mode, images/s and MB/s (wall clock) and the CPU the two regions used (from
/proc: on a shared machine the wall clock is noisy, the CPU much less), medians of --reps.
Usage: bench/repl_mtls.py [--images 200] [--large-mib 64] [--reps 3] [--modes ...]
"""

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODES = ["http-secret", "https-secret", "https-mtls", "https-both"]


def free_port(host):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_pki(root):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench-ca", "-days", "2",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)
    for n in (1, 2):
        name = "r%d" % n
        with open(os.path.join(root, name + ".ext"), "w") as f:
            f.write("subjectAltName=DNS:%s,IP:127.0.1.%d\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n" % (name, n))
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
                "-subj", "/CN=" + name, cwd=root)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2",
                "-extfile", name + ".ext", cwd=root)


class Region:
    def __init__(self, binary, n, work, pki, mode):
        self.name = "r%d" % n
        self.host = "127.0.1.%d" % n
        self.port = free_port(self.host)
        scheme = "http" if mode == "http-secret" else "https"
        self.url = "%s://%s:%d" % (scheme, self.host, self.port)
        data = os.path.join(work, self.name)
        os.makedirs(data, exist_ok=True)
        argv = [binary, "serve", "--region", self.name,
                "--listen", "%s:%d" % (self.host, self.port), "--data", data,
                "--advertise", self.url, "--sync-interval", "2s", "--log-level", "warn",
                "--no-access-log"]
        if mode != "https-mtls":
            argv += ["--peer-secret", "bench-secret"]
        if scheme == "https":
            # One certificate per region, served and presented to peers (CN and SAN name
            # the region, SAN the address).
            cert, key = os.path.join(pki, self.name + ".pem"), os.path.join(pki, self.name + ".key")
            argv += ["--tls-cert", cert, "--tls-key", key]
            argv += ["--peer-ca", os.path.join(pki, "ca.pem")]
            if mode == "https-secret":
                # The CA only makes our calls trust the peers' server certificates.
                argv += ["--peer-auth", "secret"]
            else:
                argv += ["--peer-tls-cert", cert, "--peer-tls-key", key]
        self.log = open(os.path.join(work, self.name + ".log"), "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, verify):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/readyz", timeout=1, verify=verify).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready" % self.name)

    def cpu_s(self):
        """User + system CPU seconds the process has used."""
        with open("/proc/%d/stat" % self.proc.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def push_blob(s, base, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    r = s.post("%s/v2/%s/blobs/uploads/" % (base, repo))
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    r = s.put(loc + ("&" if "?" in loc else "?") + "digest=" + d, data=data,
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return d


def push_image(s, base, repo, tag, layer):
    ld = push_blob(s, base, repo, layer)
    config = json.dumps({"architecture": "amd64", "os": "linux", "tag": tag}).encode()
    cd = push_blob(s, base, repo, config)
    m = json.dumps({"schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": cd, "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": ld, "size": len(layer)}]}).encode()
    r = s.put("%s/v2/%s/manifests/%s" % (base, repo, tag), data=m,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text


def tags_at(s, base, repo):
    r = s.get("%s/v2/%s/tags/list?n=100000" % (base, repo))
    return set(r.json().get("tags") or []) if r.status_code == 200 else set()


def wait_tags(s, base, repo, n, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while len(tags_at(s, base, repo)) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for %d tags of %s" % (n, repo))
        time.sleep(0.05)  # the polls cost the region CPU too: few of them
    return time.monotonic()


def run_once(binary, mode, pki, args):
    """One fresh pair of regions: N small images pushed to r1 before r2 joins, then the
    time from the join to r2 listing every tag (the backfill: events, blobs, manifests);
    then one large image pushed to r1, the time until r2 lists it."""
    work = tempfile.mkdtemp(prefix="repl-mtls-")
    verify = os.path.join(pki, "ca.pem") if mode != "http-secret" else True
    r1 = Region(binary, 1, work, pki, mode)
    r2 = Region(binary, 2, work, pki, mode)
    try:
        for r in (r1, r2):
            r.wait_ready(verify)
        s = requests.Session()
        s.trust_env = False  # REQUESTS_CA_BUNDLE would override s.verify
        s.verify = verify
        for i in range(args.images):
            push_image(s, r1.url, "bench/small", "t%d" % i, os.urandom(1024))
        def cpu():
            return r1.cpu_s() + r2.cpu_s()
        t0, c0 = time.monotonic(), cpu()
        r = s.post(r1.url + "/_meridian/v1/replications",
                   json={"location": "r2", "endpoint": r2.url})
        assert r.status_code == 201, r.text
        t1 = wait_tags(s, r2.url, "bench/small", args.images)
        small = (args.images / (t1 - t0), (cpu() - c0) * 1000 / args.images)
        layer = os.urandom(args.large_mib << 20)
        push_blob(s, r1.url, "bench/large", layer)
        t0, c0 = time.monotonic(), cpu()
        push_image(s, r1.url, "bench/large", "big", layer)  # the layer is there: cheap
        t1 = wait_tags(s, r2.url, "bench/large", 1)
        large = (args.large_mib * 1.048576 / (t1 - t0), (cpu() - c0) / (args.large_mib / 1024))
        return small, large
    finally:
        for r in (r1, r2):
            r.stop()
        shutil.rmtree(work, ignore_errors=True)


def run_mode(binary, mode, pki, args):
    out = {"small": [], "large": []}
    for _ in range(args.reps):
        small, large = run_once(binary, mode, pki, args)
        out["small"].append(small)
        out["large"].append(large)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--large-mib", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    args = ap.parse_args()
    pki = tempfile.mkdtemp(prefix="repl-mtls-pki-")
    make_pki(pki)
    print("| mode | small: images/s | small: CPU ms per image (both regions) "
          "| large: MB/s | large: CPU s per GiB (both regions) |")
    print("|---|---|---|---|---|")

    def cell(xs):
        return "%.1f (%s)" % (statistics.median(xs), ", ".join("%.1f" % x for x in xs))
    for mode in args.modes.split(","):
        out = run_mode(args.meridian, mode, pki, args)
        print("| %s | %s | %s | %s | %s |" % (
            mode, cell([x[0] for x in out["small"]]), cell([x[1] for x in out["small"]]),
            cell([x[0] for x in out["large"]]), cell([x[1] for x in out["large"]])),
            flush=True)
    print("(%d images of one 1 KiB layer replicated by backfill; one %d MiB layer; "
          "medians of %d runs, each run in brackets)" % (args.images, args.large_mib,
                                                          args.reps))
    shutil.rmtree(pki, ignore_errors=True)


if __name__ == "__main__":
    main()
