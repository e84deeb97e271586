#!/usr/bin/env python3
"""What the access-control check costs per request, two ways:

1. callgrind: instructions executed inside authz_check (and the whole request) for N
   manifest GETs with a Bearer token, with HTTP Basic (verified-credential cache warm),
   and with access control off; one worker thread, deterministic counts.
2. wrk: requests/s of the same manifest GET with access control off, with a Bearer token
   and with Basic, on loopback (noisy on a shared 2-core machine: read the callgrind
   figures first).

usage: bench/auth_cost.py [--bin build/meridian] [--requests 2000] [--wrk-seconds 10]
"""

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ADMIN_PW = "bench-admin-password"
MT = "application/vnd.oci.image.manifest.v1+json"


def req(url, method="GET", data=None, headers=None):
    r = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def basic():
    return "Basic " + base64.b64encode(("admin:" + ADMIN_PW).encode()).decode()


def start(cmd, log):
    p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", open(log.name).read())
        if m:
            url = "http://127.0.0.1:" + m.group(1)
            while time.time() < deadline:
                try:
                    if req(url + "/readyz")[0] == 200:
                        return p, url
                except OSError:
                    pass
                time.sleep(0.1)
        time.sleep(0.1)
    p.kill()
    sys.exit("server did not start:\n" + open(log.name).read()[-2000:])


def push(url, auth_header):
    h = {"Authorization": auth_header} if auth_header else {}
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    layer = os.urandom(1024)
    for blob in (config, layer):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        st, hd, _ = req(url + "/v2/bench/app/blobs/uploads/", "POST", b"", h)
        assert st == 202, st
        st, _, body = req(url + hd["Location"] + "?digest=" + d, "PUT", blob,
                          dict(h, **{"Content-Type": "application/octet-stream"}))
        assert st == 201, (st, body)
    m = json.dumps({"schemaVersion": 2, "mediaType": MT,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                               "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                                "size": len(layer)}]}).encode()
    st, _, body = req(url + "/v2/bench/app/manifests/v1", "PUT", m, dict(h, **{"Content-Type": MT}))
    assert st == 201, (st, body)


def token(url):
    st, _, body = req(url + "/_meridian/v1/token?service=meridian&scope=repository:bench/app:pull",
                      headers={"Authorization": basic()})
    assert st == 200, st
    return json.loads(body)["token"]


def hammer(url, auth_header, n):
    h = {"Accept": MT}
    if auth_header:
        h["Authorization"] = auth_header
    for _ in range(n):
        st, _, _ = req(url + "/v2/bench/app/manifests/v1", headers=h)
        assert st == 200, st


def callgrind(binary, mode, n, workdir):
    data = os.path.join(workdir, "data-" + mode)
    out = os.path.join(workdir, "callgrind-" + mode)
    log = open(os.path.join(workdir, "log-" + mode), "w")
    auth = ["--auth", "--admin-password", ADMIN_PW] if mode != "off" else ["--no-auth"]
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, binary, "serve",
           "--listen", "127.0.0.1:0", "--data", data, "--threads", "1", "--no-access-log"] + auth
    p, url = start(cmd, log)
    push(url, basic() if mode != "off" else None)
    cred = {"off": None, "basic": basic()}.get(mode)
    if mode == "bearer":
        cred = "Bearer " + token(url)
    hammer(url, cred, 50)  # warm up: caches, prepared statements
    subprocess.run(["callgrind_control", "--zero", str(p.pid)], capture_output=True)
    hammer(url, cred, n)
    subprocess.run(["callgrind_control", "--dump", str(p.pid)], capture_output=True)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=120)
    dumps = sorted(f for f in os.listdir(workdir) if f.startswith("callgrind-" + mode + "."))
    dump = os.path.join(workdir, dumps[0]) if dumps else out
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                         capture_output=True, text=True).stdout

    def ir(fn):
        for line in ann.splitlines():
            if re.search(r"\b%s\b" % re.escape(fn), line) and "[" in line:
                return int(line.split()[0].replace(",", ""))
        return 0
    return {"authz_check": ir("authz_check") / n, "on_request": ir("on_request") / n,
            "on_completed": ir("on_completed") / n}


def wrk(binary, mode, seconds, workdir):
    data = os.path.join(workdir, "wrk-data-" + mode)
    log = open(os.path.join(workdir, "wrk-log-" + mode), "w")
    auth = ["--auth", "--admin-password", ADMIN_PW] if mode != "off" else ["--no-auth"]
    p, url = start([binary, "serve", "--listen", "127.0.0.1:0", "--data", data,
                    "--no-access-log", "--threads", "2"] + auth, log)
    try:
        push(url, basic() if mode != "off" else None)
        cmd = ["wrk", "-t2", "-c16", "-d%ds" % seconds, "-H", "Accept: " + MT]
        if mode == "basic":
            cmd += ["-H", "Authorization: " + basic()]
        elif mode == "bearer":
            cmd += ["-H", "Authorization: Bearer " + token(url)]
        out = subprocess.run(cmd + [url + "/v2/bench/app/manifests/v1"], capture_output=True,
                             text=True).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        lat = re.search(r"Latency\s+(\S+)", out)
        return float(m.group(1)) if m else 0.0, lat.group(1) if lat else "?"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/meridian")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--wrk-seconds", type=int, default=10)
    ap.add_argument("--no-wrk", action="store_true")
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="meridian-authcost-")
    try:
        print("callgrind, instructions per manifest GET (%d requests, 1 thread):" % a.requests)
        for mode in ("off", "bearer", "basic"):
            r = callgrind(os.path.abspath(a.bin), mode, a.requests, workdir)
            print("  %-7s authz_check %8.0f   whole request (on_request + on_completed) %9.0f"
                  % (mode, r["authz_check"], r["on_request"] + r["on_completed"]))
        if shutil.which("wrk") and not a.no_wrk:
            print("wrk -t2 -c16, manifest GET, server with 2 threads:")
            for mode in ("off", "bearer", "basic"):
                rps, lat = wrk(os.path.abspath(a.bin), mode, a.wrk_seconds, workdir)
                print("  %-7s %9.0f req/s   mean latency %s" % (mode, rps, lat))
    finally:
        if os.environ.get("KEEP"):
            print("kept", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
