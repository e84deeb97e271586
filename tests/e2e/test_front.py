"""`meridian front` (docs/front.md): one registry name in front of the regions. Clients are
routed to their region by a map of client networks, fall back to the nearest healthy region,
uploads stay in the region that started them, and every response names its region.

Harness: regions.py (regions on 127.0.1.N). The front listens on 127.0.4.1:0. Test clients
pick their source address to look like clients of different networks: 127.0.5.1 is in
127.0.5.0/24 (routed to r1), 127.0.6.1 in 127.0.6.0/24 (routed to r2); skopeo connects from
127.0.0.1, which no route names, so it goes to the healthy region with the lowest RTT.
"""

import hashlib
import http.client
import http.server
import json
import os
import re
import secrets
import signal
import subprocess
import threading
import time

import pytest

import tier
from clients_helpers import OciLayout, assert_same_closure, clients, tool_missing  # noqa: F401
from regions import (MANIFEST_ACCEPT, MT_OCI_CONFIG, MT_OCI_LAYER, MT_OCI_MANIFEST,
                     canonical_json, hermetic_env, sha256_digest, unique_repo, wait_for,
                     wait_converged)

pytest_plugins = ["geo_plugin"]

NET_R1 = "127.0.5.1"
NET_R2 = "127.0.6.1"
FRONT_HOST = "127.0.4.1"


class Front:
    """A `meridian front` process on 127.0.4.1:0, stopped (SIGTERM, exit 0) at teardown."""

    LISTEN_RE = re.compile(r"listening on http://127\.0\.4\.1:(\d+)")

    def __init__(self, binary, root, regions, routes=(), extra=()):
        self.log_path = os.path.join(str(root), "front.log")
        argv = [binary, "front", "--listen", FRONT_HOST + ":0", "--log-level", "debug"]
        for r in regions:
            argv += ["--region", "%s=%s" % (r.name, r.url)]
        for cidr, name in routes:
            argv += ["--route", "%s=%s" % (cidr, name)]
        argv += list(extra)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=hermetic_env())
        self.port = None

        def listening():
            assert self.proc.poll() is None, "front exited:\n" + self.log_tail()
            with open(self.log_path, errors="replace") as f:
                m = self.LISTEN_RE.search(f.read())
            if m:
                self.port = int(m.group(1))
            return self.port
        wait_for(listening, 20, "front listening")

    @property
    def hostport(self):
        return "%s:%d" % (FRONT_HOST, self.port)

    @property
    def url(self):
        return "http://" + self.hostport

    def log_tail(self, n=60):
        with open(self.log_path, errors="replace") as f:
            return "".join(f.readlines()[-n:])

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("front did not stop on SIGTERM:\n" + self.log_tail())
        self._log.close()
        assert self.proc.returncode == 0, "front exited %s:\n%s" % (self.proc.returncode,
                                                                   self.log_tail())


@pytest.fixture
def front(geo_bin, tmp_path):
    fronts = []

    def make(regions, routes=(), extra=()):
        f = Front(geo_bin, tmp_path, regions, routes, extra)
        fronts.append(f)
        return f
    yield make
    for f in fronts:
        f.close()


def request(front, method, path, source=NET_R1, body=None, headers=None, timeout_s=30):
    """(status, headers dict with lower-case names, body) of one request to the front from
    the source address given (the client's network)."""
    conn = http.client.HTTPConnection(FRONT_HOST, front.port, timeout=timeout_s,
                                      source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


def config_and_manifest(layer_digest, layer_size):
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
                             "author": secrets.token_hex(8)})
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MT_OCI_MANIFEST,
        "config": {"mediaType": MT_OCI_CONFIG, "digest": sha256_digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": MT_OCI_LAYER, "digest": layer_digest, "size": layer_size}]})
    return config, manifest


def push_blob(front, repo, data, source):
    status, h, body = request(front, "POST", "/v2/%s/blobs/uploads/" % repo, source=source)
    assert status == 202, (status, body)
    loc = h["location"]
    sep = "&" if "?" in loc else "?"
    status, h, body = request(front, "PUT", loc + sep + "digest=" + sha256_digest(data),
                              source=source, body=data,
                              headers={"Content-Type": "application/octet-stream"})
    assert status == 201, (status, body)
    return h["meridian-region"]


# ---------------------------------------------------------------------------------------------


def test_route_by_client_network_and_region_header(geo, front):
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    for source, want in ((NET_R1, "r1"), (NET_R2, "r2")):
        status, h, _ = request(f, "GET", "/v2/", source=source)
        assert status == 200
        assert h["meridian-region"] == want
        assert h["docker-distribution-api-version"] == "registry/2.0"
    # Errors from the region are passed on with their OCI body and the region named.
    status, h, body = request(f, "GET", "/v2/no/such/manifests/latest", source=NET_R2)
    assert status == 404 and h["meridian-region"] == "r2"
    assert json.loads(body)["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    # The management API goes through too.
    status, h, body = request(f, "GET", "/_meridian/v1/replications", source=NET_R1)
    assert h["meridian-region"] == "r1", (status, body[:300])
    # Paths that are not the registry's are not forwarded.
    status, h, body = request(f, "GET", "/etc/passwd", source=NET_R1)
    assert status == 404


def test_skopeo_push_and_pull_through_the_front(geo, front, clients, tmp_path):  # noqa: F811
    if tool_missing("skopeo"):
        pytest.skip("skopeo is not installed")
    cluster = geo(2)
    f = front(list(cluster))
    repo = unique_repo("front")
    src = OciLayout(tmp_path / "src")
    layers = [{"a/data.bin": os.urandom(3 << 20), "a/hello.txt": b"front\n"},
              {"b/data.bin": os.urandom(200_000)}]
    desc, _ = src.add_image(layers)
    src.tag(desc, "v1")
    clients.skopeo("copy", "--preserve-digests", "--dest-tls-verify=false", src.ref("v1"),
                   "docker://%s/%s:v1" % (f.hostport, repo))
    dst = OciLayout(tmp_path / "dst")
    clients.skopeo("copy", "--preserve-digests", "--src-tls-verify=false",
                   "docker://%s/%s:v1" % (f.hostport, repo), dst.ref("v1"))
    assert_same_closure(src, dst, desc["digest"], "v1")
    # The uploads went through the front's pin: its log shows them pinned.
    with open(f.log_path, errors="replace") as log:
        assert "upload pinned to region=" in log.read()


def test_push_with_routing_switched_mid_push_completes(geo, front):
    """The upload starts in r1 (client in r1's network); its PATCH and PUT then come from a
    client routed to r2 (as after a routing change): they still go to r1, the session's
    region, and the push completes; the manifest PUT that follows lands in r2 and is
    accepted there (the blobs are fetched from r1), and the image pulls from both."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("switch")
    layer = os.urandom(1 << 20)
    layer_digest = sha256_digest(layer)

    status, h, body = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1)
    assert status == 202 and h["meridian-region"] == "r1", (status, body)
    loc = h["location"]
    assert "_region=r1" in loc
    # Routing switched: this client's network goes to r2 now.
    status, h, body = request(f, "PATCH", loc, source=NET_R2, body=layer[:600_000],
                              headers={"Content-Type": "application/octet-stream",
                                       "Content-Range": "0-%d" % (600_000 - 1)})
    assert status == 202, (status, body)
    assert h["meridian-region"] == "r1"
    loc = h["location"]
    assert "_region=r1" in loc
    sep = "&" if "?" in loc else "?"
    status, h, body = request(f, "PUT", loc + sep + "digest=" + layer_digest, source=NET_R2,
                              body=layer[600_000:],
                              headers={"Content-Type": "application/octet-stream"})
    assert status == 201, (status, body)
    assert h["meridian-region"] == "r1"

    config, manifest = config_and_manifest(layer_digest, len(layer))
    assert push_blob(f, repo, config, NET_R1) == "r1"
    status, h, body = request(f, "PUT", "/v2/%s/manifests/v1" % repo, source=NET_R2,
                              body=manifest, headers={"Content-Type": MT_OCI_MANIFEST})
    assert status == 201, (status, body)
    assert h["meridian-region"] == "r2"
    # r2 serves it at once; r1 once the manifest has replicated back.
    for source, region in ((NET_R2, "r2"), (NET_R1, "r1")):
        if region == "r1":
            wait_converged([r1, r2], repos=[repo],
                           expect={repo: {"v1": sha256_digest(manifest)}})
        status, h, body = request(f, "GET", "/v2/%s/manifests/v1" % repo, source=source,
                                  headers={"Accept": MANIFEST_ACCEPT})
        assert status == 200 and h["meridian-region"] == region
        assert body == manifest
        status, h, body = request(f, "GET", "/v2/%s/blobs/%s" % (repo, layer_digest),
                                  source=source)
        assert status == 200 and h["meridian-region"] == region
        assert hashlib.sha256(body).hexdigest() == layer_digest.split(":")[1]


def test_upload_pin_survives_its_region_going_out_of_rotation(geo, front):
    """A pinned upload is never sent to another region (which does not know the session):
    with r1 down, its PATCH gets 404 BLOB_UPLOAD_UNKNOWN from the front itself (no region
    named), so the client starts the upload again (test_front_faults.py has more)."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1")])
    repo = unique_repo("pin")
    status, h, _ = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1)
    assert status == 202 and h["meridian-region"] == "r1"
    loc = h["location"]
    r1.kill9()
    # Unpinned requests of the same client go to r2 now.
    status, h, _ = request(f, "GET", "/v2/", source=NET_R1)
    assert status == 200 and h["meridian-region"] == "r2"
    status, h, body = request(f, "PATCH", loc, source=NET_R1, body=b"x" * 1000,
                              headers={"Content-Type": "application/octet-stream"})
    assert status == 404 and "meridian-region" not in h, (status, h, body)
    assert json.loads(body)["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN"
    r1.start()


def test_upload_locations_of_status_and_416_answers_stay_pinned(geo, front):
    """distribution-spec: after a 416 the client asks the session's status (GET, 204) and
    SHOULD send its next chunk to the Location given there (or in the 416). Those Locations
    keep the pin: a client routed to r2 meanwhile resumes in r1, the session's region,
    instead of getting BLOB_UPLOAD_UNKNOWN from r2."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("pin416")
    data = os.urandom(200_000)
    octet = {"Content-Type": "application/octet-stream"}
    status, h, body = request(f, "POST", "/v2/%s/blobs/uploads/" % repo, source=NET_R1)
    assert status == 202 and h["meridian-region"] == "r1", (status, body)
    status, h, body = request(f, "PATCH", h["location"], source=NET_R1, body=data[:100_000],
                              headers=dict(octet, **{"Content-Range": "0-99999"}))
    assert status == 202, (status, body)
    loc = h["location"]
    # A chunk out of order: 416, with a Location to go on with.
    status, h, body = request(f, "PATCH", loc, source=NET_R1, body=data[150_000:],
                              headers=dict(octet, **{"Content-Range": "150000-199999"}))
    assert status == 416, (status, body)
    assert "_region=r1" in h["location"], h
    loc_416 = h["location"]
    # The status, asked at that Location by a client now routed to r2.
    status, h, body = request(f, "GET", loc_416, source=NET_R2)
    assert status == 204 and h["meridian-region"] == "r1", (status, body)
    assert h["range"] == "0-99999"
    assert "_region=r1" in h["location"], h
    # Resumed at the Location the status gave: the session's region takes it.
    status, h, body = request(f, "PATCH", h["location"], source=NET_R2,
                              body=data[100_000:150_000],
                              headers=dict(octet, **{"Content-Range": "100000-149999"}))
    assert status == 202 and h["meridian-region"] == "r1", (status, body)
    loc = h["location"]
    sep = "&" if "?" in loc else "?"
    status, h, body = request(f, "PUT", loc + sep + "digest=" + sha256_digest(data),
                              source=NET_R2, body=data[150_000:],
                              headers=dict(octet, **{"Content-Range": "150000-199999"}))
    assert status == 201 and h["meridian-region"] == "r1", (status, body)


def test_region_killed_under_a_pull_loop_is_out_of_rotation_within_3s(geo, front):
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1")])
    repo = unique_repo("failover")
    layer = os.urandom(256 << 10)
    layer_digest = sha256_digest(layer)
    assert push_blob(f, repo, layer, NET_R1) == "r1"
    config, manifest = config_and_manifest(layer_digest, len(layer))
    assert push_blob(f, repo, config, NET_R1) == "r1"
    status, _, body = request(f, "PUT", "/v2/%s/manifests/v1" % repo, source=NET_R1,
                              body=manifest, headers={"Content-Type": MT_OCI_MANIFEST})
    assert status == 201, body
    wait_converged([r1, r2], repos=[repo], expect={repo: {"v1": sha256_digest(manifest)}})
    # r2 holds the blobs once the manifest is visible there (visible means pullable).

    results = []          # (time, ok, region)
    stop = threading.Event()

    def pull_loop():
        while not stop.is_set():
            t = time.monotonic()
            try:
                s1, h1, b1 = request(f, "GET", "/v2/%s/manifests/v1" % repo, source=NET_R1,
                                     headers={"Accept": MANIFEST_ACCEPT}, timeout_s=10)
                s2, h2, b2 = request(f, "GET", "/v2/%s/blobs/%s" % (repo, layer_digest),
                                     source=NET_R1, timeout_s=10)
                ok = s1 == 200 and b1 == manifest and s2 == 200 and sha256_digest(b2) == \
                    layer_digest and h1["meridian-region"] == h2["meridian-region"]
                results.append((t, ok, h2.get("meridian-region")))
            except (OSError, http.client.HTTPException):
                results.append((t, False, None))
            time.sleep(0.02)

    th = threading.Thread(target=pull_loop)
    th.start()
    try:
        wait_for(lambda: len(results) >= 5, 30, "pulls before the kill")
        assert all(ok and region == "r1" for _, ok, region in results), results
        killed_at = time.monotonic()
        r1.kill9()
        wait_for(lambda: any(t > killed_at + 1 and ok for t, ok, _ in results), 30,
                 "pulls after the kill")
        after = [(t - killed_at, ok, region) for t, ok, region in results if t >= killed_at]
        recovered = next(t for t, ok, region in after if ok and region == "r2")
        assert recovered <= 3.0, after
        # Once recovered, every pull succeeds (served by r2).
        assert all(ok for t, ok, _ in after if t > recovered), after
        # Restarted, r1 is back in rotation after a good probe.
        r1.start()
        wait_for(lambda: results[-1][2] == "r1" and results[-1][1], 15, "r1 back in rotation")
    finally:
        stop.set()
        th.join()
    failures = [(t, region) for t, ok, region in after if not ok]
    print("failover: first success on r2 %.3fs after the kill; %d failed pulls"
          % (recovered, len(failures)))


def test_front_readyz_and_no_healthy_region(geo, front):
    cluster = geo(1, join=False)
    (r1,) = cluster
    f = front([r1], extra=["--probe-interval", "300"])
    status, _, _ = request(f, "GET", "/readyz")
    assert status == 200
    r1.kill9()
    # The failed request itself takes r1 out (passive); the front says so, OCI-style.
    status, h, body = request(f, "GET", "/v2/")
    assert status == 503, (status, body)
    assert json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
    wait_for(lambda: request(f, "GET", "/readyz")[0] == 503, 5, "front not ready")
    r1.start()
    wait_for(lambda: request(f, "GET", "/v2/")[0] == 200, 5, "r1 back")


def test_pull_of_a_blob_pushed_in_another_region_never_misses(geo, front):
    """A blob pushed to r1 a moment ago (no manifest yet, so replication does not copy it)
    is served by r2 to its clients: r2 fetches it from r1 once however many clients ask
    at the same time, verifies it and keeps it. HEAD stays a fast 404 (clients probe with
    HEAD before uploading) and a blob no region holds is still a 404."""
    cluster = geo(2)
    r1, r2 = cluster
    f = front([r1, r2], routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")])
    repo = unique_repo("miss")
    blob = os.urandom(2 << 20)
    digest = sha256_digest(blob)
    assert push_blob(f, repo, blob, NET_R1) == "r1"
    path = "/v2/%s/blobs/%s" % (repo, digest)
    status, h, _ = request(f, "HEAD", path, source=NET_R2)
    assert status == 404 and h["meridian-region"] == "r2"

    results = []

    def pull():
        results.append(request(f, "GET", path, source=NET_R2, timeout_s=60))
    threads = [threading.Thread(target=pull) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 40
    for status, h, body in results:
        assert status == 200, (status, body[:300])
        assert h["meridian-region"] == "r2"
        assert sha256_digest(body) == digest
    # One fetch from r1 for the forty misses: r1 served the blob once.
    served = r1.log_text().count("method=GET path=%s status=200" % path)
    assert served == 1, served
    # r2 keeps it: a HEAD answers 200 now, without asking r1.
    status, h, _ = request(f, "HEAD", path, source=NET_R2)
    assert status == 200 and h["meridian-region"] == "r2"
    missing = "/v2/%s/blobs/%s" % (repo, sha256_digest(b"nowhere"))
    for _ in range(3):
        status, h, body = request(f, "GET", missing, source=NET_R2)
        assert status == 404 and json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN"
    # Misses leave nothing behind (no upload session, no file or object per digest asked).
    assert tier.upload_entries(r2.data_dir) == []



class SlowReadyz:
    """A small HTTP proxy in front of one region that forwards every request as it is, except
    /readyz while `slow` is set: that answer is held for hold_s (past the front's probe
    timeout), as when a region is too loaded to answer its probe in time but still serves."""

    def __init__(self, region, hold_s=1.5):
        self.name = region.name
        self.upstream = region.hostport
        self.hold_s = hold_s
        self.slow = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                if self.path == "/readyz" and outer.slow.is_set():
                    time.sleep(outer.hold_s)
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                host, port = outer.upstream.split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in ("connection", "content-length")}
                    if body is not None or self.command in ("POST", "PUT", "PATCH"):
                        headers["Content-Length"] = str(n)
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response_only(resp.status)
                    for k, v in resp.getheaders():
                        if k.lower() not in ("connection", "content-length",
                                             "transfer-encoding"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer((FRONT_HOST, 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://%s:%d" % (FRONT_HOST, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_requests_succeed_while_every_probe_times_out(geo, front):
    """Both regions answer their /readyz probes too late (a load spike) but still serve: the
    front has no region in rotation, yet it tries the regions anyway, in routing order, and
    the clients' requests succeed (a whole push and pull, bodies included), each in the
    region its network is routed to. With every region truly down, the front answers 503
    UNAVAILABLE at once."""
    cluster = geo(2)
    r1, r2 = cluster
    slow = [SlowReadyz(r) for r in (r1, r2)]
    try:
        f = front(slow, routes=[("127.0.5.0/24", "r1"), ("127.0.6.0/24", "r2")],
                  extra=["--probe-interval", "300"])
        assert request(f, "GET", "/readyz")[0] == 200
        for s in slow:
            s.slow.set()
        wait_for(lambda: request(f, "GET", "/readyz")[0] == 503, 10,
                 "every region out of rotation")
        for source, want in ((NET_R1, "r1"), (NET_R2, "r2")):
            status, h, body = request(f, "GET", "/v2/", source=source)
            assert status == 200 and h["meridian-region"] == want, (status, body)
        # A whole push (the manifest PUT has a body and is not pinned) and the pull back.
        repo = unique_repo("slowprobes")
        layer = os.urandom(100_000)
        assert push_blob(f, repo, layer, NET_R1) == "r1"
        config, manifest = config_and_manifest(sha256_digest(layer), len(layer))
        assert push_blob(f, repo, config, NET_R1) == "r1"
        status, h, body = request(f, "PUT", "/v2/%s/manifests/v1" % repo, source=NET_R1,
                                  body=manifest, headers={"Content-Type": MT_OCI_MANIFEST})
        assert status == 201 and h["meridian-region"] == "r1", (status, body)
        status, h, body = request(f, "GET", "/v2/%s/manifests/v1" % repo, source=NET_R1,
                                  headers={"Accept": MANIFEST_ACCEPT})
        assert status == 200 and body == manifest and h["meridian-region"] == "r1"
        status, h, body = request(f, "GET", "/v2/%s/blobs/%s" % (repo, sha256_digest(layer)),
                                  source=NET_R1)
        assert status == 200 and body == layer
        # Still none in rotation: the requests above were the front's fallback.
        assert request(f, "GET", "/readyz")[0] == 503
    finally:
        for s in slow:
            s.close()

    # Every region down for real: refused at once, so a prompt 503, body or not.
    g = front([r1, r2], routes=[("127.0.5.0/24", "r1")], extra=["--probe-interval", "300"])
    r1.kill9()
    r2.kill9()
    wait_for(lambda: request(g, "GET", "/readyz")[0] == 503, 10, "every region out")
    for method, body in (("GET", None), ("PUT", b"{}")):
        t0 = time.monotonic()
        status, h, data = request(g, method, "/v2/%s/manifests/v2" % repo, body=body,
                                  headers={"Content-Type": MT_OCI_MANIFEST})
        took = time.monotonic() - t0
        assert status == 503, (status, data)
        assert json.loads(data)["errors"][0]["code"] == "UNAVAILABLE"
        assert "meridian-region" not in h
        assert took < 1.0, took


class FramingRegion:
    """A stand-in region (raw sockets, one thread per connection) whose answers use every
    HTTP/1.1 body framing the front must relay: Content-Length, chunked (several chunks,
    an extension, a trailer), a body ended by closing the connection, a 100 Continue
    before the final answer, and a HEAD. It counts connections, so keep-alive reuse shows,
    and can close its kept-alive connections (as a region restarting does)."""

    CHUNKS = [os.urandom(5000), b"x", os.urandom(70_000)]

    def __init__(self, name="fake"):
        import socket
        self.sock = socket.socket()
        self.sock.bind((FRONT_HOST, 0))
        self.sock.listen(64)
        self.name = name
        self.url = "http://%s:%d" % (FRONT_HOST, self.sock.getsockname()[1])
        self.connections = 0
        self.data_connections = 0   # connections that carried more than probes
        self.conns = []
        self.body = os.urandom(100_000)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.conns.append(conn)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def drop_connections(self):
        for c in self.conns:
            try:
                c.shutdown(2)
            except OSError:
                pass
        self.conns = []

    def serve(self, conn):
        buf = b""
        is_counted = False
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                head, buf = buf.split(b"\r\n\r\n", 1)
                method, target = head.split(b"\r\n")[0].split(b" ")[:2]
                if target != b"/readyz" and not is_counted:
                    self.data_connections += 1
                    is_counted = True
                if not self.answer(conn, method.decode(), target.decode()):
                    conn.close()
                    return
        except OSError:
            return

    def answer(self, conn, method, target):
        """Sends the answer; False when it ended by closing the connection."""
        if target == "/readyz":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        elif target == "/v2/length":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Kind: length\r\n\r\n"
                         % len(self.body) + (self.body if method != "HEAD" else b""))
        elif target == "/v2/chunked":
            out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: chunked\r\n\r\n"
            for i, c in enumerate(self.CHUNKS):
                out += b"%x%s\r\n" % (len(c), b";ext=1" if i == 1 else b"") + c + b"\r\n"
            conn.sendall(out[:1000])
            time.sleep(0.05)  # the framing split across reads
            conn.sendall(out[1000:] + b"0\r\nX-Trailer: t\r\n\r\n")
        elif target == "/v2/continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        elif target == "/v2/hangup" and self.name == "hangs-up":
            return False  # read the request, closed without a word
        elif target == "/v2/close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + self.body)
            return False
        else:
            conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        return True

    def close(self):
        self.sock.close()
        self.drop_connections()


def test_bodiless_requests_relay_every_body_framing_and_reuse_connections(front):
    """GET and HEAD go to a plain-HTTP region over the front's own kept-alive sockets
    (src/front/upstream.c), not libcurl: every framing a region may use comes back whole
    with its headers, connections are reused, and a kept-alive connection the region
    closed is replaced without the client seeing it."""
    region = FramingRegion()
    try:
        f = front([region])
        conn = http.client.HTTPConnection(FRONT_HOST, f.port, timeout=30,
                                          source_address=(NET_R1, 0))

        def get(method, path):
            conn.request(method, path)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        for _ in range(2):
            status, h, body = get("GET", "/v2/length")
            assert status == 200 and body == region.body and h["x-kind"] == "length"
            assert h["meridian-region"] == "fake"
            status, h, body = get("GET", "/v2/chunked")
            assert status == 200 and h["x-kind"] == "chunked"
            assert body == b"".join(FramingRegion.CHUNKS)
            status, h, body = get("HEAD", "/v2/length")
            assert status == 200 and body == b"" and h["content-length"] == str(len(region.body))
            status, h, body = get("GET", "/v2/continue")
            assert status == 404 and body == b"{}"
        # One connection from the front carried all of them (the probes have their own).
        assert region.data_connections == 1, region.data_connections
        status, h, body = get("GET", "/v2/close")
        assert status == 200 and body == region.body
        # The region drops its kept-alive connections: the next request goes on a new one.
        region.drop_connections()
        before = region.data_connections
        status, h, body = get("GET", "/v2/length")
        assert status == 200 and body == region.body
        assert region.data_connections == before + 1
        conn.close()
    finally:
        region.close()


def test_get_that_breaks_before_its_answer_moves_on_to_the_next_region(front):
    """A region that takes a GET and closes the connection without answering (it crashed
    mid-request) fails that request only: a GET is safe to repeat, so the front asks the
    next region rather than answering 503. A request that is not safe to repeat (DELETE)
    is not sent twice."""
    broken, good = FramingRegion("hangs-up"), FramingRegion("good")
    try:
        f = front([broken, good], routes=[("127.0.5.0/24", "hangs-up")])
        status, h, body = request(f, "GET", "/v2/hangup")
        assert status == 404 and h["meridian-region"] == "good", (status, h, body)
        # Back in rotation at its next good probe; then a DELETE that it hangs up on.
        wait_for(lambda: request(f, "GET", "/v2/length")[1]["meridian-region"] == "hangs-up",
                 10, "hangs-up back in rotation")
        before = good.data_connections
        status, h, body = request(f, "DELETE", "/v2/hangup")
        assert status == 503 and json.loads(body)["errors"][0]["code"] == "UNAVAILABLE"
        assert good.data_connections == before
    finally:
        broken.close()
        good.close()


class RecordingRegion(FramingRegion):
    """A stand-in region that keeps the head of every request it gets (bodies are read by
    their Content-Length) and answers each with 200 {}."""

    def __init__(self):
        self.heads = []
        super().__init__("rec")

    def serve(self, conn):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                head, buf = buf.split(b"\r\n\r\n", 1)
                n = 0
                for line in head.split(b"\r\n")[1:]:
                    if line.lower().startswith(b"content-length:"):
                        n = int(line.split(b":", 1)[1])
                while len(buf) < n:
                    got = conn.recv(65536)
                    if not got:
                        return
                    buf += got
                buf = buf[n:]
                text = head.decode("latin-1")
                if not text.startswith("GET /readyz") and not text.startswith("GET /healthz"):
                    self.heads.append(text)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\n\r\n{}")
        except OSError:
            return


def test_front_passes_on_exactly_the_target_and_headers_it_checked(front):
    """What the front routes and logs is what the region acts on: a target with a
    dot-segment or a fragment (a client library resolves or drops them on the way, so a
    DELETE of one repository's manifest reached another's, and /v2/../metrics reached a
    region's metrics) is refused with 400; headers the Connection header names, and the
    regions' own Meridian-* headers, are not passed on; more header fields than the front
    relays get 431 rather than a request that lost some."""
    region = RecordingRegion()
    try:
        f = front([region])
        for method, target in (("DELETE", "/v2/a/app/manifests/../../other/manifests/v1"),
                               ("GET", "/v2/../metrics"),
                               ("DELETE", "/v2/a/app/manifests/v1#/../../zzz"),
                               ("PUT", "/v2/a/app/manifests/%2e%2e/x"),
                               ("POST", "/v2/./a/blobs/uploads/")):
            status, _h, body = request(f, method, target, body=b"x")
            assert status == 400, (method, target, status, body)
            assert b"dot-segment" in body, body
        assert region.heads == [], region.heads
        status, _h, body = request(f, "PUT", "/v2/a/app/manifests/v1", body=b"{}", headers={
            "Connection": "keep-alive, X-Secret", "X-Secret": "s", "X-Kept": "k",
            "Meridian-Peer-Fetch": "r1", "meridian-region": "r2",
            "Content-Type": "application/json"})
        assert status == 200, (status, body)
        head = region.heads[-1].lower()
        assert head.startswith("put /v2/a/app/manifests/v1 "), head
        assert "x-kept: k" in head and "content-type: application/json" in head, head
        assert "x-secret" not in head and "meridian-" not in head, head
        many = {"X-H%d" % i: "v" for i in range(130)}
        n_before = len(region.heads)
        status, _h, body = request(f, "PUT", "/v2/a/app/manifests/v2", body=b"{}", headers=many)
        assert status == 431, (status, body)
        assert len(region.heads) == n_before
    finally:
        region.close()
