#!/usr/bin/python3
"""The front door's figures (issue 14, item 4; docs/front.md, docs/performance.md).

Starts two regions (r1, r2) of one registry on 127.0.1.N, each behind the test suite's
fault proxy with --latency-ms added to every chunk in each direction of the links between
them, and `meridian front` on 127.0.4.1 routing clients from 127.0.5.0/24 to r1 and from
127.0.6.0/24 to r2 (tests/e2e harness). Then:

  consistency  --trials times: push a small image (config, a 4 KiB layer, a manifest under a
               new tag) through the front as an r1 client, then at once pull it through the
               front as an r2 client (manifest by tag, then both blobs): success % and the
               pull's time (the region looks the tag up in its peer and copies the image).
  failover     an r2 client pulls a replicated image in a loop (manifest and a 256 KiB blob,
               kept-alive connection per pull); r2 is killed (-9) in the middle: time from the
               kill to the first successful pull after it, failed pulls, and which region
               served it (r1, the nearest healthy one).
  overhead     manifest GET by one kept-alive client, --rounds rounds of --requests requests
               alternating between r1 directly and the front (routed to r1), same run:
               median per request each way and the front's overhead; on loopback, and with
               --client-latency-ms (default 1) added each way between the client and both
               (a fault proxy in front of each, so both paths carry the proxy's own cost).
               nginx as a plain reverse proxy (upstream keepalive) in front of r1 is a third
               path in the same rounds: a well-tuned proxy's overhead on the same hop.
  stream       one --stream-mib blob pushed to r1 through the front and pulled back through
               it (streamed both ways): MiB/s each way and the front's peak RSS.

Usage: bench/front.py [--latency-ms 50] [--trials 1000] [--rounds 5] [--requests 400]
  [--cases consistency,failover,overhead,stream] [--stream-mib 256] [--no-nginx]
  [--meridian build/meridian]
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "e2e"))
from faultproxy import FaultProxy  # noqa: E402
from regions import Cluster, canonical_json  # noqa: E402
from test_front import FRONT_HOST, Front  # noqa: E402

NET_R1 = "127.0.5.1"
NET_R2 = "127.0.6.1"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = MT_MANIFEST + ", application/vnd.oci.image.index.v1+json"


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    """One kept-alive HTTP/1.1 connection from a given source address."""

    def __init__(self, host, port, source=None):
        self.host, self.port, self.source = host, port, source
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    self.host, self.port, timeout=30,
                    source_address=(self.source, 0) if self.source else None)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1 or body is not None:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def push_blob(c, repo, data):
    status, h, body = c.request("POST", "/v2/%s/blobs/uploads/" % repo)
    assert status == 202, (status, body)
    loc = h["location"]
    sep = "&" if "?" in loc else "?"
    status, h, body = c.request("PUT", loc + sep + "digest=" + digest(data), body=data,
                                headers={"Content-Type": "application/octet-stream"})
    assert status == 201, (status, body)
    return h.get("meridian-region")


def push_image(c, repo, tag, layer):
    push_blob(c, repo, layer)
    config = canonical_json({"architecture": "amd64", "os": "linux", "tag": tag,
                             "rootfs": {"type": "layers", "diff_ids": [digest(layer)]}})
    push_blob(c, repo, config)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(layer), "size": len(layer)}]})
    status, h, body = c.request("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=manifest,
                                headers={"Content-Type": MT_MANIFEST})
    assert status == 201, (status, body)
    return manifest, [digest(config), digest(layer)], h.get("meridian-region")


def pull(c, repo, ref, want_manifest=None):
    """True when the manifest and every blob it names come back whole."""
    status, h, body = c.request("GET", "/v2/%s/manifests/%s" % (repo, ref),
                                headers={"Accept": ACCEPT})
    if status != 200 or (want_manifest is not None and body != want_manifest):
        return False, h.get("meridian-region"), status
    m = json.loads(body)
    for d in [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]:
        status, _, blob = c.request("GET", "/v2/%s/blobs/%s" % (repo, d))
        if status != 200 or digest(blob) != d:
            return False, h.get("meridian-region"), status
    return True, h.get("meridian-region"), 200


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def consistency(front, trials):
    pusher = Client(FRONT_HOST, front.port, NET_R1)
    puller = Client(FRONT_HOST, front.port, NET_R2)
    repo = "bench/consistency-%d" % os.getpid()
    ok, times, regions, failures = 0, [], set(), []
    for i in range(trials):
        manifest, _, pushed_to = push_image(pusher, repo, "t%d" % i, os.urandom(4096))
        assert pushed_to == "r1", pushed_to
        t0 = time.monotonic()
        good, region, status = pull(puller, repo, "t%d" % i, manifest)
        times.append(time.monotonic() - t0)
        regions.add(region)
        ok += good
        if not good:
            failures.append((i, status))
    print("consistency: push to r1, immediate pull routed to r2: %d/%d succeeded (%.1f %%); "
          "pull time p50 %.0f ms, p99 %.0f ms, max %.0f ms; served by %s; failures: %s"
          % (ok, trials, 100.0 * ok / trials, 1000 * pct(times, 0.5), 1000 * pct(times, 0.99),
             1000 * max(times), sorted(regions), failures[:10]))


def failover(front, cluster):
    r1, r2 = cluster["r1"], cluster["r2"]
    c = Client(FRONT_HOST, front.port, NET_R1)
    repo = "bench/failover-%d" % os.getpid()
    _, _, _ = push_image(c, repo, "v1", os.urandom(256 << 10))
    deadline = time.monotonic() + 60
    while True:
        with_r2 = Client(r2.hostport.split(":")[0], int(r2.hostport.split(":")[1]))
        if pull(with_r2, repo, "v1")[0]:
            break
        assert time.monotonic() < deadline, "image never replicated to r2"
        time.sleep(0.1)
    puller = Client(FRONT_HOST, front.port, NET_R2)
    results = []       # (time, ok, region)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                good, region, _ = pull(puller, repo, "v1")
            except (OSError, http.client.HTTPException):
                good, region = False, None
                puller.close()
            results.append((time.monotonic(), good, region))
    t = threading.Thread(target=loop)
    t.start()
    time.sleep(2)
    assert results and all(ok and region == "r2" for _, ok, region in results[-5:]), results[-5:]
    killed_at = time.monotonic()
    r2.kill9()
    time.sleep(5)
    stop.set()
    t.join()
    after = [(at, ok, region) for at, ok, region in results if at > killed_at]
    first_ok = next((at for at, ok, _ in after if ok), None)
    failed = sum(1 for _, ok, _ in after if not ok)
    print("failover: r2 killed under an r2 client's pull loop: first successful pull %.3f s "
          "after the kill (target <= 3 s), %d failed pulls, %d pulls after, served by %s"
          % ((first_ok - killed_at) if first_ok else float("nan"), failed, len(after),
             sorted({region for _, ok, region in after if ok})))
    r2.start()


NGINX_HOST = "127.0.4.2"


class Nginx:
    """nginx as a plain reverse proxy in front of one region: the floor for the front's own
    overhead (a well-tuned proxy on the same hop). One worker, upstream connections kept
    alive, tcp_nodelay (nginx's default), no access log, responses buffered (the default;
    a manifest fits nginx's buffers)."""

    def __init__(self, root, upstream):
        self.dir = os.path.join(root, "nginx")
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        s = socket.socket()
        s.bind((NGINX_HOST, 0))
        self.port = s.getsockname()[1]
        s.close()
        conf = os.path.join(self.dir, "nginx.conf")
        tmp = os.path.join(self.dir, "tmp")
        with open(conf, "w") as f:
            f.write("""worker_processes 1;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log error;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path %(tmp)s;
    proxy_temp_path %(tmp)s;
    fastcgi_temp_path %(tmp)s;
    uwsgi_temp_path %(tmp)s;
    scgi_temp_path %(tmp)s;
    upstream region { server %(upstream)s; keepalive 16; }
    server {
        listen %(host)s:%(port)d;
        location / {
            proxy_pass http://region;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }
    }
}
""" % {"dir": self.dir, "tmp": tmp, "upstream": upstream, "host": NGINX_HOST,
                   "port": self.port})
        self.proc = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf,
                                      "-e", os.path.join(self.dir, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((NGINX_HOST, self.port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None, "nginx exited; see %s/error.log" % self.dir
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


def overhead(front, cluster, rounds, n, client_latency_ms=0, nginx=None):
    """Manifest GET medians through r1 directly, the front and (when given) nginx, in
    alternating rounds of the same run."""
    r1 = cluster["r1"]
    c = Client(FRONT_HOST, front.port, NET_R1)
    repo = "bench/overhead-%d" % os.getpid()
    push_image(c, repo, "v1", os.urandom(4096))
    host, port = r1.hostport.split(":")
    targets = [("direct", (host, int(port)), None), ("front", (FRONT_HOST, front.port), NET_R1)]
    if nginx is not None:
        targets.append(("nginx", (NGINX_HOST, nginx.port), None))
    proxies = []
    clients = []
    for name, upstream, source in targets:
        if client_latency_ms:
            # Clients some way off: the same added latency to each. The front sees the
            # proxy's 127.0.0.1, routed to r1.
            p = FaultProxy(("127.0.0.1", 0), upstream, name="client").start()
            p.latency(client_latency_ms)
            proxies.append(p)
            clients.append((name, Client(p.host, p.port)))
        else:
            clients.append((name, Client(upstream[0], upstream[1], source)))
    path = "/v2/%s/manifests/v1" % repo
    medians = {name: [] for name, _ in clients}
    for _ in range(50):  # warm-up
        for _, client in clients:
            client.request("GET", path, headers={"Accept": ACCEPT})
    # CPU time of the proxies themselves (every thread; nginx: master and worker): what
    # each costs per request, less sensitive to the machine's load than latency is.
    pids = {"front": [front.proc.pid]}
    if nginx is not None:
        pids["nginx"] = [nginx.proc.pid] + children(nginx.proc.pid)
    cpu0 = {name: cpu_ns(p) for name, p in pids.items()}
    for _ in range(rounds):
        times = {name: [] for name, _ in clients}
        # Request by request in turn, so that load swings hit every path alike.
        for _ in range(n):
            for name, client in clients:
                t0 = time.perf_counter()
                status, h, _ = client.request("GET", path, headers={"Accept": ACCEPT})
                times[name].append(time.perf_counter() - t0)
                assert status == 200
                assert name != "front" or h["meridian-region"] == "r1"
        for name in times:
            medians[name].append(statistics.median(times[name]))
    cpu = {name: (cpu_ns(p) - cpu0[name]) / (rounds * n) / 1e6 for name, p in pids.items()}
    for p in proxies:
        p.close()
    d = statistics.median(medians["direct"])
    parts = []
    for name in medians:
        if name == "direct":
            continue
        m = statistics.median(medians[name])
        parts.append("%s %.3f ms: +%.3f ms (%+.0f %%), its CPU %.3f ms per request"
                     % (name, 1000 * m, 1000 * (m - d), 100 * (m - d) / d, cpu[name]))
    print("overhead: manifest GET, one kept-alive client %s, %d x %d requests each, "
          "alternating; load average %s: median direct %.3f ms; %s; per round %s"
          % ("on loopback" if not client_latency_ms else
             "%d ms away (each way)" % client_latency_ms, rounds, n, load_average(),
             1000 * d, "; ".join(parts),
             {name: ["%.3f" % (1000 * x) for x in v] for name, v in medians.items()}))


def children(pid):
    out = []
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
            out += [int(x) for x in f.read().split()]
    return out


def cpu_ns(pids):
    """CPU time on the processor so far of every thread of pids, in ns (schedstat)."""
    total = 0
    for pid in pids:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                    total += int(f.read().split()[0])
            except FileNotFoundError:
                pass
    return total


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def stream(front, cluster, mib):
    repo = "bench/stream-%d" % os.getpid()
    size = mib << 20
    chunk = os.urandom(1 << 20)
    h = hashlib.sha256()
    for _ in range(mib):
        h.update(chunk)
    d = "sha256:" + h.hexdigest()
    c = Client(FRONT_HOST, front.port, NET_R1)
    status, hd, _ = c.request("POST", "/v2/%s/blobs/uploads/" % repo)
    assert status == 202
    loc = hd["location"] + ("&" if "?" in hd["location"] else "?") + "digest=" + d
    conn = http.client.HTTPConnection(FRONT_HOST, front.port, timeout=300,
                                      source_address=(NET_R1, 0))
    t0 = time.monotonic()
    conn.putrequest("PUT", loc)
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    for _ in range(mib):
        conn.send(chunk)
    resp = conn.getresponse()
    resp.read()
    up_s = time.monotonic() - t0
    assert resp.status == 201, resp.status
    conn.close()

    def download(host, port, source):
        conn = http.client.HTTPConnection(host, port, timeout=300,
                                          source_address=(source, 0) if source else None)
        t0 = time.monotonic()
        conn.request("GET", "/v2/%s/blobs/%s" % (repo, d))
        resp = conn.getresponse()
        got = hashlib.sha256()
        n = 0
        while True:
            b = resp.read(1 << 20)
            if not b:
                break
            got.update(b)
            n += len(b)
        conn.close()
        assert resp.status == 200 and n == size and "sha256:" + got.hexdigest() == d
        return time.monotonic() - t0
    r1_host, r1_port = cluster["r1"].hostport.split(":")
    download(r1_host, int(r1_port), None)  # warm-up: r1 wrote the blob past the page cache
    down, direct = [], []
    for _ in range(3):
        down.append(download(FRONT_HOST, front.port, NET_R1))
        direct.append(download(r1_host, int(r1_port), None))
    print("stream: %d MiB through the front: %.0f MiB/s up; down %s MiB/s (r1 directly, same "
          "run: %s MiB/s); front peak RSS %.1f MiB"
          % (mib, mib / up_s, "/".join("%.0f" % (mib / t) for t in down),
             "/".join("%.0f" % (mib / t) for t in direct), vm_hwm_kib(front.proc.pid) / 1024.0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--client-latency-ms", type=int, default=1)
    ap.add_argument("--stream-mib", type=int, default=256)
    ap.add_argument("--cases", default="consistency,failover,overhead,stream")
    ap.add_argument("--no-nginx", dest="nginx", action="store_false",
                    help="leave nginx (the reverse-proxy floor) out of the overhead case")
    ap.add_argument("--meridian", default=os.path.join(REPO, "build", "meridian"))
    args = ap.parse_args()
    cases = args.cases.split(",")
    root = tempfile.mkdtemp(prefix="meridian-bench-front-")
    cluster = Cluster(os.path.abspath(args.meridian), root,
                      extra_args=["--no-access-log", "--conn-limit-per-ip", "0"])
    front = None
    try:
        cluster.start(2)
        for r in cluster:
            r.proxy.latency(args.latency_ms)
        front = Front(os.path.abspath(args.meridian), root, list(cluster),
                      routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2"),
                              ("127.0.0.1/32", "r1")],
                      extra=["--no-access-log", "--log-level", "info"])
        print("two regions, %d ms added each way between them; front on %s"
              % (args.latency_ms, front.hostport))
        if "overhead" in cases:
            nginx = Nginx(root, cluster["r1"].hostport) if args.nginx else None
            try:
                overhead(front, cluster, args.rounds, args.requests, nginx=nginx)
                if args.client_latency_ms:
                    overhead(front, cluster, args.rounds, max(50, args.requests // 8),
                             args.client_latency_ms, nginx=nginx)
            finally:
                if nginx is not None:
                    nginx.close()
        if "stream" in cases:
            stream(front, cluster, args.stream_mib)
        if "consistency" in cases:
            consistency(front, args.trials)
        if "failover" in cases:
            failover(front, cluster)
    finally:
        if front is not None:
            front.close()
        cluster.close()


if __name__ == "__main__":
    main()
