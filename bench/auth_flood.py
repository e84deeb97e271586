#!/usr/bin/env python3
"""Hostile login traffic against one server with access control on (issue 9, item 2):

1. bad Authorization headers from 4 threads for --seconds: requests/s, audit entries
   written, and how much meta.db (+ WAL) grew;
2. wrong passwords for one user from one address for --seconds: answers/s, and how many
   were 401 (a password hash each) and how many 429 (refused before any hash).

usage: bench/auth_flood.py [--bin build/meridian] [--seconds 10]
"""

import argparse
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests

ADMIN_PW = "bench-admin-password"


def db_bytes(data):
    return sum(os.path.getsize(os.path.join(data, f)) for f in ("meta.db", "meta.db-wal")
               if os.path.exists(os.path.join(data, f)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/meridian")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="meridian-flood-")
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "log"), "wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERIDIAN_")}
    proc = subprocess.Popen([args.bin, "serve", "--auth", "--admin-password", ADMIN_PW,
                             "--listen", "127.0.0.1:0", "--data", data, "--no-access-log"],
                            stdout=log, stderr=log, env=env)
    try:
        url = None
        for _ in range(300):
            m = re.search(rb"listening on (http://[0-9.:]+)", open(log.name, "rb").read())
            if m:
                url = m.group(1).decode()
                break
            time.sleep(0.05)
        if url is None:
            sys.exit("server did not start")
        admin = ("admin", ADMIN_PW)
        r = requests.post(url + "/_meridian/v1/users", auth=admin,
                          json={"name": "alice", "password": "alice-password-1"})
        assert r.status_code == 201, r.text

        before = db_bytes(data)
        counts = [0] * 4
        stop = time.monotonic() + args.seconds

        def flood(i):
            s = requests.Session()
            hv = "Basic " + base64.b64encode(b"nobody").decode()  # no colon: malformed
            while time.monotonic() < stop:
                s.get(url + "/v2/", headers={"Authorization": hv})
                counts[i] += 1

        threads = [threading.Thread(target=flood, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        entries = requests.get(url + "/_meridian/v1/audit", auth=admin,
                               params={"limit": 10000, "action": "auth.failed"}).json()
        total = sum(counts)
        print("bad headers: %d in %.0f s (%.0f/s); audit entries %d (counts sum %s); "
              "meta.db+wal +%.1f MB" % (total, args.seconds, total / args.seconds, len(entries),
                                         sum(e.get("count", 1) for e in entries),
                                         (db_bytes(data) - before) / 1e6))

        s = requests.Session()
        by_status = {}
        stop = time.monotonic() + args.seconds
        while time.monotonic() < stop:
            r = s.get(url + "/v2/", auth=("alice", "wrong-password"))
            by_status[r.status_code] = by_status.get(r.status_code, 0) + 1
        n = sum(by_status.values())
        print("wrong passwords: %d answers in %.0f s (%.0f/s): %s" % (
            n, args.seconds, n / args.seconds,
            ", ".join("%d x %d" % (c, st) for st, c in sorted(by_status.items()))))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
